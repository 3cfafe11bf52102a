//! The stub code page and stub processes.
//!
//! The code is hand-written, position-independent x86_64 (only
//! rip-relative references inside the blob), copied into one page mapped in
//! the Sentry at the stub address, so the zygote forked from the Sentry
//! (and every stub it clones) inherits it there. It has four parts:
//!
//! * the **zygote**: unmaps everything but the code page, maps one scratch
//!   page, and then clones a stub (CLONE_PARENT) for each request that
//!   comes on its socket with the new stub's fds; the child moves the fds
//!   to the numbers asked for and jumps into the leader.
//! * the **leader**: the stub's first thread. It unmaps everything but the
//!   code page, maps the shared memory, seals the stub region (mseal),
//!   installs the leader filter, then serves the Sentry's requests from the
//!   read-only control page: a queue of syscalls each (mmap, munmap,
//!   mprotect, clone), results into the status page. It uses registers only (no stack an application could
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

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
// The zygote's scratch page: msghdr, iovec, cmsg buffer (64 bytes), the
// request's four u32, the answer.
const Z_MSG: u64 = 0;
const Z_IOV: u64 = 64;
const Z_CMSG: u64 = 128;
const Z_DATA: u64 = 256;
const Z_REPLY: u64 = 272;
// The leader finds queue entry i at i << 6.
const _: () = assert!(QUEUE_ENTRY == 64);
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
    // mmap(ctl, ctl len, PROT_READ, MAP_SHARED | MAP_FIXED, shm, 0)
    "lea rdi, [rbx + {ctl}]",
    "mov esi, {ctl_len}",
    "mov edx, 1",
    "mov r10d, 0x11",
    "mov r8, r12",
    "xor r9d, r9d",
    "mov eax, 9",
    "syscall",
    "lea rdi, [rbx + {ctl}]",
    "cmp rax, rdi",
    "jne 92f",
    // mmap(status, len - ctl len, RW, MAP_SHARED | MAP_FIXED, shm, ctl len)
    "lea rdi, [rbx + {status}]",
    "lea rsi, [r14 - {ctl_len}]",
    "mov edx, 3",
    "mov r10d, 0x11",
    "mov r8, r12",
    "mov r9d, {ctl_len}",
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
    // The budget is in TSC ticks (see `spin`).
    "12:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r8, rax",
    "mov ecx, [rbx + {ctl} + {ctl_leader_spin}]",
    "13:",
    "mov eax, [rbx + {ctl} + {req_seq}]",
    "cmp eax, r15d",
    "jne 20f",
    "pause",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r8",
    "cmp rax, rcx",
    "jb 13b",
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
    // Request r15: run the queue's entries in order, each result into
    // the status page, stopping after the first that fails (a result in
    // -4095..-1). r12 counts the entries run.
    "20:",
    "mov r15d, eax",
    "xor r12d, r12d",
    "21:",
    "cmp r12d, [rbx + {ctl} + {ctl_count}]",
    "jae 30f",
    "cmp r12d, {queue_max}",
    "jae 30f",
    "mov r13, r12",
    "shl r13, 6",
    "lea r13, [rbx + r13 + {ctl} + {queue}]",
    "mov rax, [r13]",
    "mov rdi, [r13 + 8]",
    "mov rsi, [r13 + 16]",
    "mov rdx, [r13 + 24]",
    "mov r10, [r13 + 32]",
    "mov r8, [r13 + 40]",
    "mov r9, [r13 + 48]",
    "cmp rax, 56",
    "je 40f",
    "syscall",
    "22:",
    "mov [rbx + r12 * 8 + {status} + {st_results}], rax",
    "inc r12d",
    "cmp rax, -4095",
    "jb 21b",
    // Report: how many ran and the sequence number in the status page,
    // then the completion itself as a write to the eventfd, which only the
    // leader's filter allows (an application thread can forge the status
    // page, not this).
    "30:",
    "mov [rbx + {status} + {st_done_count}], r12",
    "mov eax, r15d",
    "xchg [rbx + {status} + {st_done}], eax",
    "mov rdi, rbp",
    "lea rsi, [rbx + {ctl} + {ctl_one}]",
    "mov edx, 8",
    "mov eax, 1",
    "syscall",
    "jmp 12b",
    // clone: the parent records the tid and goes on, the child is a new
    // thread whose stack pointer is the top of its slot.
    "40:",
    "syscall",
    "test rax, rax",
    "jnz 22b",
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
    // ---- the zygote: the process every stub is cloned from (small, so a
    // clone is cheap: no copy of the Sentry's page tables, nothing to
    // unmap). rdi = its socket to the Sentry, rsi = end of user space,
    // rdx = the Sentry's pid. It keeps only the code page and one scratch
    // page (Z, at S + page) and no stack: it never takes a signal (all
    // blocked). Each request is one message of four u32 (the fd numbers
    // the stub must have its shared memory, eventfd and memory file at,
    // and a free number above them) with those three fds; the answer is
    // the new stub's pid (or -errno) as an i32.
    ".balign 16",
    ".globl cryo_systrap_zygote",
    "cryo_systrap_zygote:",
    "mov rbp, rdi",
    "mov r12, rsi",
    "mov r13, rdx",
    "lea rbx, [rip + cryo_systrap_start]",
    // munmap(0, S); munmap(S + page, end - (S + page))
    "xor edi, edi",
    "mov rsi, rbx",
    "mov eax, 11",
    "syscall",
    "test rax, rax",
    "jnz 190f",
    "lea rdi, [rbx + {page}]",
    "mov rsi, r12",
    "sub rsi, rdi",
    "mov eax, 11",
    "syscall",
    "test rax, rax",
    "jnz 190f",
    // mmap(Z, page, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    "lea rdi, [rbx + {page}]",
    "mov esi, {page}",
    "mov edx, 3",
    "mov r10d, 0x32",
    "mov r8, -1",
    "xor r9d, r9d",
    "mov eax, 9",
    "syscall",
    "lea rdi, [rbx + {page}]",
    "cmp rax, rdi",
    "jne 190f",
    // Wait for a request: recvmsg(sock, &msg, 0), msg rebuilt each time
    // (the kernel rewrites its lengths).
    "150:",
    "lea rdi, [rbx + {page}]",
    "xor eax, eax",
    "mov [rdi + {z_msg}], rax",
    "mov [rdi + {z_msg} + 8], rax",
    "lea rax, [rdi + {z_iov}]",
    "mov [rdi + {z_msg} + 16], rax",
    "mov qword ptr [rdi + {z_msg} + 24], 1",
    "lea rax, [rdi + {z_cmsg}]",
    "mov [rdi + {z_msg} + 32], rax",
    "mov qword ptr [rdi + {z_msg} + 40], 64",
    "mov qword ptr [rdi + {z_msg} + 48], 0",
    "lea rax, [rdi + {z_data}]",
    "mov [rdi + {z_iov}], rax",
    "mov qword ptr [rdi + {z_iov} + 8], 16",
    "mov qword ptr [rdi + {z_cmsg}], 0",
    "lea rsi, [rdi + {z_msg}]",
    "mov rdi, rbp",
    "xor edx, edx",
    "mov eax, 47",
    "syscall",
    // The Sentry closed its end (or went away): done.
    "cmp rax, 16",
    "jne 199f",
    // One SCM_RIGHTS message of three fds.
    "lea rsi, [rbx + {page} + {z_cmsg}]",
    "cmp qword ptr [rsi], 28",
    "jne 191f",
    "cmp dword ptr [rsi + 8], 1",
    "jne 191f",
    "cmp dword ptr [rsi + 12], 1",
    "jne 191f",
    // clone(CLONE_PARENT | SIGCHLD): the stub is the Sentry's child (it
    // reaps it) and its parent-death signal follows the forker thread.
    "mov edi, 0x8011",
    "xor esi, esi",
    "xor edx, edx",
    "xor r10d, r10d",
    "xor r8d, r8d",
    "mov eax, 56",
    "syscall",
    "test rax, rax",
    "jz 160f",
    // Parent: drop the fds, answer.
    "mov [rbx + {page} + {z_reply}], eax",
    "mov edi, [rbx + {page} + {z_cmsg} + 16]",
    "mov eax, 3",
    "syscall",
    "mov edi, [rbx + {page} + {z_cmsg} + 20]",
    "mov eax, 3",
    "syscall",
    "mov edi, [rbx + {page} + {z_cmsg} + 24]",
    "mov eax, 3",
    "syscall",
    "mov rdi, rbp",
    "lea rsi, [rbx + {page} + {z_reply}]",
    "mov edx, 4",
    "mov eax, 1",
    "syscall",
    "cmp rax, 4",
    "jne 199f",
    "jmp 150b",
    // Child: die with the forker thread, as a stub forked from it did.
    "160:",
    "mov edi, 1",
    "mov esi, 9",
    "xor edx, edx",
    "xor r10d, r10d",
    "xor r8d, r8d",
    "mov eax, 157",
    "syscall",
    "test rax, rax",
    "jnz 192f",
    // The Sentry may have died before that took effect.
    "mov eax, 110",
    "syscall",
    "cmp rax, r13",
    "jne 193f",
    "mov rdi, rbp",
    "mov eax, 3",
    "syscall",
    // The received fds to the numbers asked for, through temporaries
    // above them all (a received fd may sit at a wanted number).
    "lea r14, [rbx + {page}]",
    "xor r15d, r15d",
    "170:",
    "mov edi, [r14 + r15 * 4 + {z_cmsg} + 16]",
    "mov esi, [r14 + {z_data} + 12]",
    "add esi, r15d",
    "xor edx, edx",
    "mov eax, 292",
    "syscall",
    "test rax, rax",
    "js 194f",
    "mov edi, [r14 + r15 * 4 + {z_cmsg} + 16]",
    "mov eax, 3",
    "syscall",
    "inc r15d",
    "cmp r15d, 3",
    "jb 170b",
    "xor r15d, r15d",
    "171:",
    "mov edi, [r14 + {z_data} + 12]",
    "add edi, r15d",
    "mov esi, [r14 + r15 * 4 + {z_data}]",
    "xor edx, edx",
    "mov eax, 292",
    "syscall",
    "test rax, rax",
    "js 195f",
    "mov edi, [r14 + {z_data} + 12]",
    "add edi, r15d",
    "mov eax, 3",
    "syscall",
    "inc r15d",
    "cmp r15d, 3",
    "jb 171b",
    // Become the leader: rdi = shm fd, rsi = end of user space, rdx = shm
    // len, rcx = the completion eventfd.
    "mov edi, [r14 + {z_data}]",
    "mov rsi, r12",
    "mov rdx, {shm_len}",
    "mov ecx, [r14 + {z_data} + 4]",
    "jmp cryo_systrap_leader",
    "190:", "mov edi, 120", "jmp 99b",
    "191:", "mov edi, 121", "jmp 99b",
    "192:", "mov edi, 122", "jmp 99b",
    "193:", "mov edi, 123", "jmp 99b",
    "194:", "mov edi, 124", "jmp 99b",
    "195:", "mov edi, 125", "jmp 99b",
    "199:", "xor edi, edi", "jmp 99b",
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
    // Wait for the Sentry: poll for at most the slot's budget of TSC
    // ticks (see `spin`), or not at all once the Sentry says it will take
    // long, then sleep.
    "61:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r8, rax",
    "mov ecx, [r14 + {sl_spin}]",
    "62:",
    "cmp dword ptr [r14 + {state}], {event}",
    "jne 70f",
    "cmp dword ptr [r14 + {sl_nap}], 0",
    "jne 64f",
    "pause",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r8",
    "cmp rax, rcx",
    "jb 62b",
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
    // Read once: the set-FP copy branches on it again (r15's signal
    // number is stored already).
    "mov r15d, eax",
    "cmp eax, {cmd_resume}",
    "je 75f",
    "cmp eax, {cmd_get_fp}",
    "je 71f",
    "cmp eax, {cmd_set_fp}",
    "je 72f",
    "cmp eax, {cmd_set_fp_resume}",
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
    "cmp r15d, {cmd_set_fp_resume}",
    "je 75f",
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
    st_done_count = const ST_DONE_COUNT,
    st_results = const ST_RESULTS,
    ctl_len = const CTL_LEN,
    shm_len = const SHM_LEN,
    z_msg = const Z_MSG,
    z_iov = const Z_IOV,
    z_cmsg = const Z_CMSG,
    z_data = const Z_DATA,
    z_reply = const Z_REPLY,
    ctl_count = const CTL_COUNT,
    queue = const CTL_QUEUE,
    queue_max = const QUEUE_MAX,
    st_done = const ST_DONE_SEQ,
    ctl_one = const CTL_ONE,
    st_leader_sleeping = const ST_LEADER_SLEEPING,
    ctl_leader_spin = const CTL_LEADER_SPIN,
    fprog_leader = const CTL_FPROG_LEADER,
    fprog_app = const CTL_FPROG_APP,
    req_seq = const CTL_REQ_SEQ,
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
    cmd_set_fp_resume = const CMD_SET_FP_RESUME,
    cmd_exit = const CMD_EXIT,
);

extern "C" {
    static cryo_systrap_start: u8;
    static cryo_systrap_end: u8;
    static cryo_systrap_restorer: u8;
    static cryo_systrap_zygote: u8;
    static cryo_systrap_handler: u8;
    static cryo_systrap_first_trap: u8;
}

/// Offsets of the stub code's entry points in the code page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entries {
    pub restorer: u64,
    pub zygote: u64,
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
                zygote: off(&raw const cryo_systrap_zygote),
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

/// What the forker thread needs to fork the zygote.
struct ForkRequest {
    sock: RawFd,
    /// The zygote's seccomp program (`filter::zygote_program`), built here
    /// so that the forked child only points the kernel at its copy.
    filter: Vec<u8>,
    filter_len: u16,
    user_end: u64,
    page: StubPage,
    /// Make `cpuid` fault in the zygote and every stub it clones.
    no_cpuid: bool,
    reply: mpsc::Sender<Result<i32, PlatformError>>,
}

static FORKER: OnceLock<Mutex<mpsc::Sender<ForkRequest>>> = OnceLock::new();

/// The zygote: a stub-sized process, forked once from the forker thread,
/// that clones every stub (see the stub code). Forking the Sentry for each
/// stub copied its page tables (and made its heap copy-on-write, with the
/// TLB shoot-downs that brings) only for the child to unmap it all again.
struct Zygote {
    pid: i32,
    sock: OwnedFd,
}

static ZYGOTE: Mutex<Option<Zygote>> = Mutex::new(None);

impl Drop for Zygote {
    fn drop(&mut self) {
        // SAFETY: kill(2) and waitpid(2) of our own unreaped child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), libc::__WALL);
        }
    }
}

fn host_err(op: &'static str) -> PlatformError {
    PlatformError::Host {
        op,
        source: Errno::last(),
    }
}

/// Creates a stub process: the zygote clones it, and it becomes the leader
/// of an address space whose shared memory is `shm_fd` and completion
/// eventfd `event_fd`, with the memory file at `memory_fd` (each at the
/// same number as in this process). The stub is this process's child.
pub(crate) fn fork_stub(
    shm_fd: RawFd,
    event_fd: RawFd,
    memory_fd: RawFd,
    user_end: u64,
    page: StubPage,
) -> Result<i32, PlatformError> {
    let mut zygote = ZYGOTE.lock().unwrap_or_else(|e| e.into_inner());
    if zygote.is_none() {
        *zygote = Some(start_zygote(user_end, page)?);
    }
    let Some(z) = zygote.as_ref() else {
        return Err(PlatformError::StubPage("no systrap zygote".into()));
    };
    let r = ask_zygote(z, [shm_fd, event_fd, memory_fd]);
    if r.is_err() {
        // A zygote that failed once is replaced by the next request.
        *zygote = None;
    }
    r
}

fn ask_zygote(z: &Zygote, fds: [RawFd; 3]) -> Result<i32, PlatformError> {
    let tmp = fds.iter().copied().max().unwrap_or(0) + 1;
    let mut data = [0u8; 16];
    for (i, v) in [fds[0], fds[1], fds[2], tmp].iter().enumerate() {
        data[4 * i..4 * i + 4].copy_from_slice(&(*v as u32).to_le_bytes());
    }
    let iov = [std::io::IoSlice::new(&data)];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    nix::sys::socket::sendmsg::<()>(
        z.sock.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|source| PlatformError::Host {
        op: "sendmsg(systrap zygote)",
        source,
    })?;
    let mut answer = [0u8; 4];
    loop {
        // SAFETY: read(2) into a live 4-byte buffer.
        let n = unsafe { libc::read(z.sock.as_raw_fd(), answer.as_mut_ptr().cast(), 4) };
        if n == 4 {
            break;
        }
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return Err(PlatformError::StubPage(format!(
            "the systrap zygote (pid {}) did not answer: {}",
            z.pid,
            if n == 0 {
                zygote_status(z.pid)
            } else {
                Errno::last().to_string()
            }
        )));
    }
    let pid = i32::from_le_bytes(answer);
    if pid <= 0 {
        return Err(PlatformError::Host {
            op: "clone(systrap stub)",
            source: Errno::from_raw(-pid),
        });
    }
    Ok(pid)
}

/// How the zygote ended (it exits with a status naming the step that
/// failed).
fn zygote_status(pid: i32) -> String {
    let mut status = 0;
    // SAFETY: waitpid(2) of our own child, into a live local.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    if r != pid {
        "it closed its socket".into()
    } else if libc::WIFEXITED(status) {
        format!("it exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("it was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status:#x}")
    }
}

/// Forks the zygote from the forker thread: a long-lived thread of the
/// Sentry that only forks, so that the zygote's (and, through
/// CLONE_PARENT, every stub's) parent-death signal fires when the Sentry
/// dies and not when whichever thread created an address space ends.
fn start_zygote(user_end: u64, page: StubPage) -> Result<Zygote, PlatformError> {
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
    let mut fds = [0i32; 2];
    // SAFETY: socketpair(2) writes two fds into `fds`.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(host_err("socketpair(systrap zygote)"));
    }
    // SAFETY: two fresh descriptors we own.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let prog = super::filter::zygote_program(page.addr, PAGE).map_err(PlatformError::StubPage)?;
    let filter_len = u16::try_from(prog.len())
        .map_err(|_| PlatformError::StubPage("zygote filter too long".into()))?;
    let filter: Vec<u8> = prog.iter().flat_map(|i| i.to_bytes()).collect();
    let (reply, answer) = mpsc::channel();
    let req = ForkRequest {
        sock: theirs.as_raw_fd(),
        filter,
        filter_len,
        user_end,
        page,
        no_cpuid: crate::arch::cpuid_faulting(),
        reply,
    };
    let gone = || PlatformError::StubPage("the systrap forker thread is gone".into());
    if forker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(req)
        .is_err()
    {
        return Err(gone());
    }
    let pid = answer.recv().unwrap_or_else(|_| Err(gone()))?;
    drop(theirs);
    tracing::debug!(pid, "systrap zygote started");
    Ok(Zygote { pid, sock: ours })
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
        return Err(host_err("fork(systrap zygote)"));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { stub_child(parent, req) }
    }
    Ok(pid)
}

/// The child side of the zygote's fork: everything every stub inherits
/// from it (session, signal mask and dispositions, no core files, no fds
/// but its socket, no new privileges), then a jump into the zygote code.
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
    // No capabilities, in the zygote and so in every stub: they run
    // application code. It also keeps their permitted set within the
    // Sentry's once it drops its own, which sched_setaffinity of a stub's
    // thread (binding it to its tracer's CPU) requires.
    let header: [u32; 2] = [0x2008_0522 /* _LINUX_CAPABILITY_VERSION_3 */, 0];
    let data = [0u32; 6];
    if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
        die(109);
    }
    // Every fd but the socket.
    let keep = req.sock as u32;
    if keep > 0 {
        libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32);
    }
    libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
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
    // cpuid faults in the zygote and so in every stub and thread it clones
    // (the Sentry emulates it), when the Sentry asked for that.
    if !crate::arch::stub_disable_cpuid(req.no_cpuid) {
        die(108);
    }
    // The zygote's filter, last: from here on only the stub code page may
    // make syscalls (the jump below makes none).
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    let fprog = SockFprog {
        len: req.filter_len,
        filter: req.filter.as_ptr(),
    };
    if libc::syscall(
        libc::SYS_seccomp,
        1u64, // SECCOMP_SET_MODE_FILTER
        0u64,
        &fprog as *const SockFprog,
    ) != 0
    {
        die(107);
    }
    let entry = base + req.page.entries.zygote;
    std::arch::asm!(
        "jmp {entry}",
        entry = in(reg) entry,
        in("rdi") req.sock as u64,
        in("rsi") req.user_end,
        in("rdx") parent as u64,
        options(noreturn)
    );
}
