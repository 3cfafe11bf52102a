//! The stub code page and stub processes.
//!
//! The code is hand-written, position-independent x86_64 (only
//! rip-relative references inside the blob), copied into one page mapped in
//! the Sentry at the stub address, so every stub forked from the Sentry
//! inherits it there. It has three parts:
//!
//! * the **leader**: the stub's first thread. It unmaps everything but the
//!   code page, maps the shared memory, seals the stub region (mseal),
//!   installs the leader filter, then serves the Sentry's requests from the
//!   read-only control page: one syscall each (mmap, munmap, mprotect,
//!   clone). It uses registers only (no stack an application could
//!   scribble on) and never runs application code.
//! * the **new thread** entry (the child side of the leader's clone): sets
//!   its signal stack, unblocks the fault signals, installs the application
//!   filter and stops in an `int3`, the first event the Sentry sees.
//! * the **handler** of SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and
//!   the interrupt signal: copies the signal frame's registers into the
//!   thread's slot, posts the event (state word + futex wake if the Sentry
//!   sleeps), waits for the Sentry (a short spin, then futex), does what it
//!   is told (copy FP state out or in, exit) and finally loads the Sentry's
//!   registers into the frame and `rt_sigreturn`s into the application.

use std::os::fd::RawFd;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;

use super::shared::*;
use crate::{Layout, PlatformError};

/// The signal an interrupter sends to a running stub thread.
pub const INTERRUPT_SIGNAL: i32 = libc::SIGUSR2;

/// Signals the handler takes.
pub(crate) const HANDLED: [i32; 7] = [
    libc::SIGSYS,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    INTERRUPT_SIGNAL,
];

/// The signal mask of a new application thread until its first return into
/// the application: everything blocked but the synchronous signals (a
/// blocked SIGSYS or SIGSEGV would kill the stub).
const NEW_THREAD_MASK: u64 = !((1u64 << (libc::SIGSYS - 1))
    | (1 << (libc::SIGSEGV - 1))
    | (1 << (libc::SIGBUS - 1))
    | (1 << (libc::SIGFPE - 1))
    | (1 << (libc::SIGILL - 1))
    | (1 << (libc::SIGTRAP - 1)));

const SLOT_MASK: u64 = !(SLOT_SIZE - 1);
const SLOTS_LEN: u64 = MAX_SLOTS * SLOT_SIZE;
const STACK_LEN: u64 = SLOT_SIZE - SL_STACK;
/// `SA_RESTORER` (not exported by the libc crate).
const SA_RESTORER: i32 = 0x0400_0000;

std::arch::global_asm!(
    ".pushsection .text.cryo_systrap,\"ax\",@progbits",
    ".balign 4096",
    ".globl cryo_systrap_start",
    "cryo_systrap_start:",
    // ---- rt_sigaction's sa_restorer (the handler returns by itself).
    ".globl cryo_systrap_restorer",
    "cryo_systrap_restorer:",
    "mov eax, 15",
    "syscall",
    "ud2",
    // ---- the leader. rdi = shm fd, rsi = end of user space, rdx = shm len,
    // rcx = the completion eventfd.
    ".balign 16",
    ".globl cryo_systrap_leader",
    "cryo_systrap_leader:",
    "mov rbp, rcx",
    "mov r12, rdi",
    "mov r13, rsi",
    "mov r14, rdx",
    "lea rbx, [rip + cryo_systrap_start]",
    // munmap(0, S)
    "xor edi, edi",
    "mov rsi, rbx",
    "mov eax, 11",
    "syscall",
    "test rax, rax",
    "jnz 90f",
    // munmap(S + page, end - (S + page))
    "lea rdi, [rbx + {page}]",
    "mov rsi, r13",
    "sub rsi, rdi",
    "mov eax, 11",
    "syscall",
    "test rax, rax",
    "jnz 91f",
    // mmap(ctl, page, PROT_READ, MAP_SHARED | MAP_FIXED, shm, 0)
    "lea rdi, [rbx + {ctl}]",
    "mov esi, {page}",
    "mov edx, 1",
    "mov r10d, 0x11",
    "mov r8, r12",
    "xor r9d, r9d",
    "mov eax, 9",
    "syscall",
    "lea rdi, [rbx + {ctl}]",
    "cmp rax, rdi",
    "jne 92f",
    // mmap(status, len - page, RW, MAP_SHARED | MAP_FIXED, shm, page)
    "lea rdi, [rbx + {status}]",
    "lea rsi, [r14 - {page}]",
    "mov edx, 3",
    "mov r10d, 0x11",
    "mov r8, r12",
    "mov r9d, {page}",
    "mov eax, 9",
    "syscall",
    "lea rdi, [rbx + {status}]",
    "cmp rax, rdi",
    "jne 93f",
    // close(shm)
    "mov rdi, r12",
    "mov eax, 3",
    "syscall",
    // mseal(S, page + len, 0): the application can never remap the stub.
    "mov rdi, rbx",
    "lea rsi, [r14 + {page}]",
    "xor edx, edx",
    "mov eax, 462",
    "syscall",
    "mov [rbx + {status} + {st_mseal}], rax",
    // seccomp(SECCOMP_SET_MODE_FILTER, 0, &leader filter)
    "mov edi, 1",
    "xor esi, esi",
    "lea rdx, [rbx + {ctl} + {fprog_leader}]",
    "mov eax, 317",
    "syscall",
    "test rax, rax",
    "jnz 94f",
    "xor r15d, r15d",
    // Wait for request r15 + 1.
    // Requests come in bursts (a fault, its mmap, the next fault): poll a
    // while before sleeping.
    "12:",
    "mov ecx, [rbx + {ctl} + {ctl_leader_spin}]",
    "13:",
    "mov eax, [rbx + {ctl} + {req_seq}]",
    "cmp eax, r15d",
    "jne 20f",
    "test ecx, ecx",
    "jz 14f",
    "pause",
    "dec ecx",
    "jmp 13b",
    "14:",
    "mov eax, 1",
    "xchg [rbx + {status} + {st_leader_sleeping}], eax",
    "mov eax, [rbx + {ctl} + {req_seq}]",
    "cmp eax, r15d",
    "jne 15f",
    "lea rdi, [rbx + {ctl} + {req_seq}]",
    "xor esi, esi",
    "mov edx, r15d",
    "xor r10d, r10d",
    "mov eax, 202",
    "syscall",
    "15:",
    "mov dword ptr [rbx + {status} + {st_leader_sleeping}], 0",
    "jmp 12b",
    "20:",
    "mov r15d, eax",
    "mov rax, [rbx + {ctl} + {nr}]",
    "mov rdi, [rbx + {ctl} + {args}]",
    "mov rsi, [rbx + {ctl} + {args} + 8]",
    "mov rdx, [rbx + {ctl} + {args} + 16]",
    "mov r10, [rbx + {ctl} + {args} + 24]",
    "mov r8, [rbx + {ctl} + {args} + 32]",
    "mov r9, [rbx + {ctl} + {args} + 40]",
    "cmp rax, 56",
    "je 40f",
    "syscall",
    // Report: result, then the sequence number, then a wake if needed.
    // Report: the result and sequence number in the status page, then the
    // completion itself as a write to the eventfd, which only the leader's
    // filter allows (an application thread can forge the status page, not
    // this).
    "30:",
    "mov [rbx + {status} + {st_result}], rax",
    "mov eax, r15d",
    "xchg [rbx + {status} + {st_done}], eax",
    "mov rdi, rbp",
    "lea rsi, [rbx + {ctl} + {ctl_one}]",
    "mov edx, 8",
    "mov eax, 1",
    "syscall",
    "jmp 12b",
    // clone: the parent reports the tid, the child is a new thread whose
    // stack pointer is the top of its slot.
    "40:",
    "syscall",
    "test rax, rax",
    "jnz 30b",
    "mov r14, rsp",
    "sub r14, {slot}",
    "sub rsp, 64",
    // sigaltstack({slot + stack, 0, stack len}, NULL)
    "lea rax, [r14 + {sl_stack}]",
    "mov [rsp], rax",
    "mov qword ptr [rsp + 8], 0",
    "mov qword ptr [rsp + 16], {stack_len}",
    "mov rdi, rsp",
    "xor esi, esi",
    "mov eax, 131",
    "syscall",
    "test rax, rax",
    "jnz 59f",
    // rt_sigprocmask(SIG_SETMASK, &mask, NULL, 8)
    "mov rax, {new_mask}",
    "mov [rsp + 32], rax",
    "mov edi, 2",
    "lea rsi, [rsp + 32]",
    "xor edx, edx",
    "mov r10d, 8",
    "mov eax, 14",
    "syscall",
    "test rax, rax",
    "jnz 59f",
    // seccomp(SECCOMP_SET_MODE_FILTER, 0, &application filter)
    "mov edi, 1",
    "xor esi, esi",
    "lea rdx, [rbx + {ctl} + {fprog_app}]",
    "mov eax, 317",
    "syscall",
    "test rax, rax",
    "jnz 59f",
    // The first event: the handler reports it and waits for the Sentry.
    "int3",
    ".globl cryo_systrap_first_trap",
    "cryo_systrap_first_trap:",
    "ud2",
    "59:",
    "mov edi, 1",
    "mov eax, 60",
    "syscall",
    "ud2",
    "90:", "mov edi, 90", "jmp 99f",
    "91:", "mov edi, 91", "jmp 99f",
    "92:", "mov edi, 92", "jmp 99f",
    "93:", "mov edi, 93", "jmp 99f",
    "94:", "mov edi, 94", "jmp 99f",
    "99:",
    "mov eax, 231",
    "syscall",
    "ud2",
    // ---- the handler: rdi = signo, rsi = siginfo, rdx = ucontext.
    ".balign 16",
    ".globl cryo_systrap_handler",
    "cryo_systrap_handler:",
    "mov r12, rdx",
    "mov r13, rsi",
    "mov r15d, edi",
    "lea rbx, [rip + cryo_systrap_start]",
    // The slot from the stack pointer (the handler runs on its slot's
    // signal stack), checked to be a slot.
    "lea r14, [rbx + {slots}]",
    "mov rax, rsp",
    "sub rax, r14",
    "jb 80f",
    "cmp rax, {slots_len}",
    "jae 80f",
    "and rax, {slot_mask}",
    "add r14, rax",
    // Registers, in `Registers` order.
    "mov rax, [r12 + 96]", "mov [r14 + {regs} + 0], rax",
    "mov rax, [r12 + 88]", "mov [r14 + {regs} + 8], rax",
    "mov rax, [r12 + 80]", "mov [r14 + {regs} + 16], rax",
    "mov rax, [r12 + 72]", "mov [r14 + {regs} + 24], rax",
    "mov rax, [r12 + 120]", "mov [r14 + {regs} + 32], rax",
    "mov rax, [r12 + 128]", "mov [r14 + {regs} + 40], rax",
    "mov rax, [r12 + 64]", "mov [r14 + {regs} + 48], rax",
    "mov rax, [r12 + 56]", "mov [r14 + {regs} + 56], rax",
    "mov rax, [r12 + 48]", "mov [r14 + {regs} + 64], rax",
    "mov rax, [r12 + 40]", "mov [r14 + {regs} + 72], rax",
    "mov rax, [r12 + 144]", "mov [r14 + {regs} + 80], rax",
    "mov rax, [r12 + 152]", "mov [r14 + {regs} + 88], rax",
    "mov rax, [r12 + 136]", "mov [r14 + {regs} + 96], rax",
    "mov rax, [r12 + 112]", "mov [r14 + {regs} + 104], rax",
    "mov rax, [r12 + 104]", "mov [r14 + {regs} + 112], rax",
    // orig_rax: the syscall number for SIGSYS, else -1.
    "mov rax, -1",
    "cmp r15d, 31",
    "jne 3f",
    "movsxd rax, dword ptr [r13 + 24]",
    "3:",
    "mov [r14 + {regs} + 120], rax",
    "mov rax, [r12 + 168]", "mov [r14 + {regs} + 128], rax",
    "movzx eax, word ptr [r12 + 184]", "mov [r14 + {regs} + 136], rax",
    "mov rax, [r12 + 176]", "mov [r14 + {regs} + 144], rax",
    "mov rax, [r12 + 160]", "mov [r14 + {regs} + 152], rax",
    "movzx eax, word ptr [r12 + 190]", "mov [r14 + {regs} + 160], rax",
    "rdfsbase rax", "mov [r14 + {regs} + 168], rax",
    "rdgsbase rax", "mov [r14 + {regs} + 176], rax",
    "xor eax, eax",
    "mov [r14 + {regs} + 184], rax",
    "mov [r14 + {regs} + 192], rax",
    "mov [r14 + {regs} + 200], rax",
    "mov [r14 + {regs} + 208], rax",
    // The event.
    "mov [r14 + {kind}], r15d",
    "mov eax, [r13 + 8]",
    "mov [r14 + {code}], eax",
    "mov rax, [r13 + 16]",
    "mov [r14 + {addr}], rax",
    // Post: state = EVENT, wake the Sentry if it sleeps.
    "60:",
    "mov eax, {event}",
    "xchg [r14 + {state}], eax",
    "cmp dword ptr [r14 + {sentry_sleeping}], 0",
    "je 61f",
    "lea rdi, [r14 + {state}]",
    "mov esi, 1",
    "mov edx, 1",
    "mov eax, 202",
    "syscall",
    // Wait for the Sentry: spin, then sleep.
    "61:",
    "mov ecx, [r14 + {sl_spin}]",
    "62:",
    "cmp dword ptr [r14 + {state}], {event}",
    "jne 70f",
    "test ecx, ecx",
    "jz 64f",
    "cmp dword ptr [r14 + {sl_nap}], 0",
    "jne 64f",
    "pause",
    "dec ecx",
    "jmp 62b",
    "64:",
    "mov eax, 1",
    "xchg [r14 + {stub_sleeping}], eax",
    "cmp dword ptr [r14 + {state}], {event}",
    "jne 63f",
    "lea rdi, [r14 + {state}]",
    "xor esi, esi",
    "mov edx, {event}",
    "xor r10d, r10d",
    "mov eax, 202",
    "syscall",
    "63:",
    "mov dword ptr [r14 + {stub_sleeping}], 0",
    "jmp 61b",
    // The Sentry's command.
    "70:",
    "mov eax, [r14 + {command}]",
    "cmp eax, {cmd_resume}",
    "je 75f",
    "cmp eax, {cmd_get_fp}",
    "je 71f",
    "cmp eax, {cmd_set_fp}",
    "je 72f",
    "cmp eax, {cmd_exit}",
    "je 74f",
    "jmp 80f",
    // Copy the frame's XSAVE area (its size is the kernel's xstate_size in
    // the software-reserved bytes) into the FP buffer.
    "71:",
    "mov rsi, [r12 + 224]",
    "mov ecx, [rsi + 480]",
    "cmp rcx, {fp_cap}",
    "ja 80f",
    "cmp rcx, 576",
    "jb 80f",
    "mov [r14 + {fp_len}], ecx",
    "lea rdi, [r14 + {fp}]",
    "rep movsb",
    "jmp 60b",
    // Copy the FP buffer into the frame, but for the kernel's
    // software-reserved bytes 464..512 (magic and sizes).
    "72:",
    "mov rdi, [r12 + 224]",
    "mov ecx, [rdi + 480]",
    "mov eax, [r14 + {fp_len}]",
    "cmp rcx, rax",
    "cmova rcx, rax",
    "cmp rcx, 576",
    "jb 80f",
    "cmp rcx, {fp_cap}",
    "ja 80f",
    "sub rcx, 512",
    "mov rdx, rcx",
    "lea rsi, [r14 + {fp}]",
    "mov ecx, 464",
    "rep movsb",
    "add rsi, 48",
    "add rdi, 48",
    "mov rcx, rdx",
    "rep movsb",
    "jmp 60b",
    "74:",
    "xor edi, edi",
    "mov eax, 60",
    "syscall",
    "ud2",
    // Resume: the Sentry's registers into the frame, nothing blocked after
    // the return, then rt_sigreturn straight from here (not through the
    // frame's return address, which the application could overwrite).
    "75:",
    "mov rax, [r14 + {regs} + 0]", "mov [r12 + 96], rax",
    "mov rax, [r14 + {regs} + 8]", "mov [r12 + 88], rax",
    "mov rax, [r14 + {regs} + 16]", "mov [r12 + 80], rax",
    "mov rax, [r14 + {regs} + 24]", "mov [r12 + 72], rax",
    "mov rax, [r14 + {regs} + 32]", "mov [r12 + 120], rax",
    "mov rax, [r14 + {regs} + 40]", "mov [r12 + 128], rax",
    "mov rax, [r14 + {regs} + 48]", "mov [r12 + 64], rax",
    "mov rax, [r14 + {regs} + 56]", "mov [r12 + 56], rax",
    "mov rax, [r14 + {regs} + 64]", "mov [r12 + 48], rax",
    "mov rax, [r14 + {regs} + 72]", "mov [r12 + 40], rax",
    "mov rax, [r14 + {regs} + 80]", "mov [r12 + 144], rax",
    "mov rax, [r14 + {regs} + 88]", "mov [r12 + 152], rax",
    "mov rax, [r14 + {regs} + 96]", "mov [r12 + 136], rax",
    "mov rax, [r14 + {regs} + 104]", "mov [r12 + 112], rax",
    "mov rax, [r14 + {regs} + 112]", "mov [r12 + 104], rax",
    "mov rax, [r14 + {regs} + 128]", "mov [r12 + 168], rax",
    "mov rax, [r14 + {regs} + 136]", "mov [r12 + 184], ax",
    "mov rax, [r14 + {regs} + 144]", "mov [r12 + 176], rax",
    "mov rax, [r14 + {regs} + 152]", "mov [r12 + 160], rax",
    "mov rax, [r14 + {regs} + 160]", "mov [r12 + 190], ax",
    "mov rax, [r14 + {regs} + 168]", "wrfsbase rax",
    "mov rax, [r14 + {regs} + 176]", "wrgsbase rax",
    "mov qword ptr [r12 + 296], 0",
    "mov rsp, r12",
    "mov eax, 15",
    "syscall",
    // Anything unexpected: a fault inside the handler (its signals are
    // blocked), which kills the stub.
    "80:",
    "ud2",
    ".globl cryo_systrap_end",
    "cryo_systrap_end:",
    ".popsection",
    page = const PAGE,
    ctl = const CTL_STUB_OFF,
    status = const STATUS_STUB_OFF,
    slots = const SLOTS_STUB_OFF,
    slot = const SLOT_SIZE,
    slots_len = const SLOTS_LEN,
    slot_mask = const SLOT_MASK as i64,
    st_mseal = const ST_MSEAL,
    st_result = const ST_RESULT,
    st_done = const ST_DONE_SEQ,
    ctl_one = const CTL_ONE,
    st_leader_sleeping = const ST_LEADER_SLEEPING,
    ctl_leader_spin = const CTL_LEADER_SPIN,
    fprog_leader = const CTL_FPROG_LEADER,
    fprog_app = const CTL_FPROG_APP,
    req_seq = const CTL_REQ_SEQ,
    nr = const CTL_NR,
    args = const CTL_ARGS,
    sl_stack = const SL_STACK,
    stack_len = const STACK_LEN,
    new_mask = const NEW_THREAD_MASK as i64,
    regs = const SL_REGS,
    kind = const SL_KIND,
    code = const SL_CODE,
    addr = const SL_ADDR,
    state = const SL_STATE,
    stub_sleeping = const SL_STUB_SLEEPING,
    sentry_sleeping = const SL_SENTRY_SLEEPING,
    command = const SL_COMMAND,
    fp_len = const SL_FP_LEN,
    fp = const SL_FP,
    fp_cap = const SL_FP_CAP,
    event = const STATE_EVENT,
    sl_spin = const SL_SPIN,
    sl_nap = const SL_NAP,
    cmd_resume = const CMD_RESUME,
    cmd_get_fp = const CMD_GET_FP,
    cmd_set_fp = const CMD_SET_FP,
    cmd_exit = const CMD_EXIT,
);

extern "C" {
    static cryo_systrap_start: u8;
    static cryo_systrap_end: u8;
    static cryo_systrap_restorer: u8;
    static cryo_systrap_leader: u8;
    static cryo_systrap_handler: u8;
    static cryo_systrap_first_trap: u8;
}

/// Offsets of the stub code's entry points in the code page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entries {
    pub restorer: u64,
    pub leader: u64,
    pub handler: u64,
    pub first_trap: u64,
    pub len: u64,
}

fn code() -> (&'static [u8], Entries) {
    // SAFETY: the symbols are defined by the global_asm! above, in one
    // section, start <= every label <= end; the bytes between are code.
    unsafe {
        let start = &raw const cryo_systrap_start as usize;
        let end = &raw const cryo_systrap_end as usize;
        let off = |p: *const u8| (p as usize - start) as u64;
        let bytes = std::slice::from_raw_parts(start as *const u8, end - start);
        (
            bytes,
            Entries {
                restorer: off(&raw const cryo_systrap_restorer),
                leader: off(&raw const cryo_systrap_leader),
                handler: off(&raw const cryo_systrap_handler),
                first_trap: off(&raw const cryo_systrap_first_trap),
                len: (end - start) as u64,
            },
        )
    }
}

/// The stub code page of this process: its address and entry points.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StubPage {
    pub addr: u64,
    pub entries: Entries,
}

static STUB_PAGE: OnceLock<Result<StubPage, String>> = OnceLock::new();

/// How far down from the preferred address the stub page may move when that
/// address (or the region above it the stubs use) is taken in the Sentry.
const STUB_SEARCH_STEP: u64 = 16 << 20;

/// Maps the stub code page in this process (once).
pub(crate) fn install_stub_page(layout: &Layout) -> Result<StubPage, PlatformError> {
    STUB_PAGE
        .get_or_init(|| map_stub_page(layout))
        .clone()
        .map_err(PlatformError::StubPage)
}

fn map_stub_page(layout: &Layout) -> Result<StubPage, String> {
    let (bytes, entries) = code();
    if entries.len > PAGE {
        return Err(format!(
            "stub code is {} bytes, more than a page",
            entries.len
        ));
    }
    if layout.page_size != PAGE {
        return Err(format!(
            "page size {} (systrap needs 4096)",
            layout.page_size
        ));
    }
    let region = PAGE + SHM_LEN;
    let lowest = layout.stack_top + layout.page_size;
    // Below the ptrace stub page's preferred spot if that one is used too.
    let mut addr = layout.stub_addr;
    while addr >= lowest {
        if addr + region > layout.max_user_addr || (addr >> 32) != ((addr + PAGE) >> 32) {
            addr -= STUB_SEARCH_STEP;
            continue;
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let ptr = unsafe {
            libc::mmap(
                addr as usize as *mut libc::c_void,
                PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let errno = Errno::last();
            if errno == Errno::EEXIST {
                addr -= STUB_SEARCH_STEP;
                continue;
            }
            return Err(format!("mmap at {addr:#x}: {errno}"));
        }
        if ptr as u64 != addr {
            // SAFETY: the page was just mapped by this call and is unused.
            unsafe { libc::munmap(ptr, PAGE as usize) };
            return Err("the kernel ignores MAP_FIXED_NOREPLACE (Linux >= 4.17 is needed)".into());
        }
        // SAFETY: `ptr` is a fresh writable page owned here; the code is at
        // most a page (checked above).
        unsafe {
            std::ptr::write_bytes(ptr as *mut u8, 0xcc, PAGE as usize);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr as *mut u8, bytes.len());
        }
        // SAFETY: changes the protection of the page mapped above only.
        if unsafe { libc::mprotect(ptr, PAGE as usize, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err(format!("mprotect of the stub page: {}", Errno::last()));
        }
        tracing::debug!(
            addr = format_args!("{addr:#x}"),
            "systrap stub code page mapped"
        );
        return Ok(StubPage { addr, entries });
    }
    Err(format!(
        "no free address for the stub region between {lowest:#x} and {:#x}",
        layout.stub_addr
    ))
}

/// What the forker thread needs to fork one stub.
struct ForkRequest {
    shm_fd: RawFd,
    event_fd: RawFd,
    memory_fd: RawFd,
    user_end: u64,
    page: StubPage,
    reply: mpsc::Sender<Result<i32, PlatformError>>,
}

static FORKER: OnceLock<Mutex<mpsc::Sender<ForkRequest>>> = OnceLock::new();

/// Forks a stub from the forker thread: a long-lived thread of the Sentry
/// that only forks, so the stubs' parent-death signal fires when the
/// Sentry dies and not when whichever thread created an address space ends.
pub(crate) fn fork_stub(
    shm_fd: RawFd,
    event_fd: RawFd,
    memory_fd: RawFd,
    user_end: u64,
    page: StubPage,
) -> Result<i32, PlatformError> {
    let forker = FORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<ForkRequest>();
        let spawned = std::thread::Builder::new()
            .name("cryo-systrap-forker".into())
            .spawn(move || {
                unregister_rseq();
                for req in rx {
                    let r = fork_one(&req);
                    let _ = req.reply.send(r);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the systrap forker thread");
        }
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    let req = ForkRequest {
        shm_fd,
        event_fd,
        memory_fd,
        user_end,
        page,
        reply,
    };
    let sent = forker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(req)
        .is_ok();
    if !sent {
        return Err(PlatformError::StubPage(
            "the systrap forker thread is gone".into(),
        ));
    }
    answer.recv().unwrap_or_else(|_| {
        Err(PlatformError::StubPage(
            "the systrap forker thread is gone".into(),
        ))
    })
}

/// glibc registers an rseq area for each thread; a forked stub would keep
/// the registration with the area unmapped and be killed at its next
/// preemption. The forker thread gives its own up once (it only forks).
fn unregister_rseq() {
    extern "C" {
        static __rseq_offset: isize;
        static __rseq_size: u32;
    }
    const RSEQ_SIG: u32 = 0x5305_3053;
    const RSEQ_FLAG_UNREGISTER: i32 = 1;
    // SAFETY: glibc (>= 2.35) defines both; they are constant after start.
    let (offset, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 {
        return;
    }
    let tp: usize;
    // SAFETY: reads the thread pointer (the TCB's self pointer at fs:0).
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly)) };
    let area = (tp as isize + offset) as usize;
    for len in [size, 32] {
        // SAFETY: rseq(2) unregistering the calling thread's own area.
        let r = unsafe { libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) };
        if r == 0 {
            tracing::debug!("systrap forker: rseq unregistered");
            return;
        }
    }
    tracing::warn!(errno = %Errno::last(), "systrap forker: cannot unregister rseq");
}

fn fork_one(req: &ForkRequest) -> Result<i32, PlatformError> {
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: the child runs only `stub_child`, which makes raw syscalls and
    // jumps into the stub code, never returning into Rust.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(PlatformError::Host {
            op: "fork(systrap stub)",
            source: Errno::last(),
        });
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { stub_child(parent, req) }
    }
    Ok(pid)
}

/// The child side of a fork: everything that needs no stub memory, then a
/// jump into the leader code.
///
/// # Safety
///
/// Only in the child of a fork; never returns.
unsafe fn stub_child(parent: libc::pid_t, req: &ForkRequest) -> ! {
    let die = |code: libc::c_long| -> ! {
        loop {
            libc::syscall(libc::SYS_exit_group, code);
        }
    };
    if libc::syscall(
        libc::SYS_prctl,
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL,
        0,
        0,
        0,
    ) != 0
    {
        die(101);
    }
    if libc::syscall(libc::SYS_getppid) != parent as libc::c_long {
        die(102);
    }
    if libc::syscall(libc::SYS_setsid) < 0 {
        die(103);
    }
    let full: u64 = !0;
    if libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &full as *const u64,
        std::ptr::null_mut::<u64>(),
        8usize,
    ) != 0
    {
        die(104);
    }
    // No core files from a stub the filter kills.
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::syscall(
        libc::SYS_setrlimit,
        libc::RLIMIT_CORE,
        &zero as *const libc::rlimit,
    );
    // Every fd but the memory file, the shared memory and the eventfd.
    let mut keep = [req.memory_fd as u32, req.shm_fd as u32, req.event_fd as u32];
    keep.sort_unstable();
    let mut from = 0u32;
    for k in keep {
        if k > from {
            libc::syscall(libc::SYS_close_range, from, k - 1, 0u32);
        }
        from = k + 1;
    }
    libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32);
    // Signal dispositions: the handler for ours, ignore for the rest (the
    // Sentry's own handlers point into code the stub will not have).
    #[repr(C)]
    struct KSigaction {
        handler: u64,
        flags: u64,
        restorer: u64,
        mask: u64,
    }
    let base = req.page.addr;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let act = if HANDLED.contains(&sig) {
            KSigaction {
                handler: base + req.page.entries.handler,
                flags: (libc::SA_SIGINFO | libc::SA_ONSTACK | SA_RESTORER) as u64,
                restorer: base + req.page.entries.restorer,
                mask: !0,
            }
        } else {
            KSigaction {
                handler: libc::SIG_IGN as u64,
                flags: SA_RESTORER as u64,
                restorer: base + req.page.entries.restorer,
                mask: 0,
            }
        };
        if libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KSigaction,
            std::ptr::null_mut::<KSigaction>(),
            8usize,
        ) != 0
        {
            die(105);
        }
    }
    if libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        die(106);
    }
    let entry = base + req.page.entries.leader;
    std::arch::asm!(
        "jmp {entry}",
        entry = in(reg) entry,
        in("rdi") req.shm_fd as u64,
        in("rsi") req.user_end,
        in("rdx") SHM_LEN,
        in("rcx") req.event_fd as u64,
        options(noreturn)
    );
}
