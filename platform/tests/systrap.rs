//! The systrap platform running real machine code in stubs.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use platform::systrap::{SystrapAddressSpace, SystrapPlatform};
use platform::{
    Access, AddressSpace, Context, CpuState, Event, Platform, PlatformError, Prot, Registers,
};

const SYS_WRITE: u64 = 1;
const SYS_GETPID: u64 = 39;
const SYS_EXIT: u64 = 60;
const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;

struct Fx {
    mem: OwnedFd,
    platform: SystrapPlatform,
    aspace: Arc<dyn AddressSpace>,
    ctx: Box<dyn Context>,
    state: CpuState,
}

impl Fx {
    fn new(code: &Asm) -> Fx {
        let mem = memfd(16 * PAGE);
        write_at(&mem, CODE_OFF, &code.0);
        let platform = SystrapPlatform::new(mem.as_fd()).expect("platform");
        let aspace = platform.new_address_space().expect("address space");
        aspace
            .map(CODE, PAGE, CODE_OFF, Prot::READ_EXEC)
            .expect("map code");
        aspace
            .map(DATA, PAGE, DATA_OFF, Prot::READ_WRITE)
            .expect("map data");
        let ctx = platform.new_context().expect("context");
        let state = CpuState {
            regs: Registers::new_user(CODE, DATA + PAGE),
        };
        Fx {
            mem,
            platform,
            aspace,
            ctx,
            state,
        }
    }

    fn switch(&mut self) -> Event {
        self.ctx
            .switch(self.aspace.as_ref(), &mut self.state)
            .expect("switch")
    }

    fn sys(&self) -> &SystrapAddressSpace {
        self.aspace.as_any().downcast_ref().expect("systrap")
    }
}

#[test]
fn getpid_then_exit() {
    let code = Asm::new()
        .mov_eax(39)
        .syscall()
        .mov_edi_eax()
        .mov_eax(60)
        .syscall()
        .int3();
    let mut f = Fx::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
    assert_eq!(
        f.state.regs.rip,
        CODE + 7,
        "rip after the syscall instruction"
    );
    f.state.regs.set_return(1234);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_EXIT);
    assert_eq!(f.state.regs.syscall_args()[0], 1234);
    match f.switch() {
        Event::Fault {
            signo: libc::SIGTRAP,
            ..
        } => {}
        e => panic!("expected SIGTRAP, got {e:?}"),
    }
}

fn raw(mut a: Asm, bytes: &[u8]) -> Asm {
    a.0.extend_from_slice(bytes);
    a
}

/// mov rax, imm64; jmp rax
fn jmp_abs(a: Asm, target: u64) -> Asm {
    raw(a.mov_rax64(target), &[0xff, 0xe0])
}

#[test]
fn write_from_mapped_buffer() {
    let msg = u32::from_le_bytes(*b"cryo");
    let code = Asm::new()
        .mov_rsi64(DATA + 16)
        .store_rsi(msg)
        .mov_edi(1)
        .mov_edx(4)
        .mov_eax(1)
        .syscall()
        .int3();
    let mut f = Fx::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_WRITE);
    assert_eq!(f.state.regs.syscall_args()[..3], [1, DATA + 16, 4]);
    assert_eq!(read_at(&f.mem, DATA_OFF + 16, 4), b"cryo");
    let _ = &f.platform;
}

#[test]
fn faults_are_reported_like_ptrace() {
    // A store to an unmapped page.
    let code = Asm::new().mov_rax64(0x7000_0000).store_rax(1).int3();
    let mut f = Fx::new(&code);
    match f.switch() {
        Event::Fault {
            signo: libc::SIGSEGV,
            code: SEGV_MAPERR,
            addr: 0x7000_0000,
            access: Access::Unknown,
        } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(f.state.regs.rip, CODE + 10, "rip at the faulting store");
    // Map it read-only: an access error; then writable: the store is redone.
    f.aspace
        .map(0x7000_0000, PAGE, 8 * PAGE, Prot::READ)
        .unwrap();
    match f.switch() {
        Event::Fault {
            signo: libc::SIGSEGV,
            code: SEGV_ACCERR,
            addr: 0x7000_0000,
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    f.aspace
        .protect(0x7000_0000, PAGE, Prot::READ_WRITE)
        .unwrap();
    match f.switch() {
        Event::Fault {
            signo: libc::SIGTRAP,
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(read_at(&f.mem, 8 * PAGE, 4), 1u32.to_le_bytes());
    // Unmapped again: faults again.
    f.aspace.unmap(0x7000_0000, PAGE).unwrap();
    f.state.regs.rip = CODE + 10;
    assert!(matches!(
        f.switch(),
        Event::Fault {
            signo: libc::SIGSEGV,
            code: SEGV_MAPERR,
            ..
        }
    ));
    // Executing an unmapped address is an exec access.
    f.state.regs.rip = 0x6000_0000;
    match f.switch() {
        Event::Fault {
            signo: libc::SIGSEGV,
            addr: 0x6000_0000,
            access: Access::Exec,
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    // ud2 and a divide by zero.
    let code = raw(Asm::new(), &[0x0f, 0x0b]);
    let mut f = Fx::new(&code);
    assert!(matches!(
        f.switch(),
        Event::Fault {
            signo: libc::SIGILL,
            ..
        }
    ));
    let code = raw(Asm::new().mov_eax(1), &[0x31, 0xc9, 0xf7, 0xf1]); // xor ecx,ecx; div ecx
    let mut f = Fx::new(&code);
    assert!(matches!(
        f.switch(),
        Event::Fault {
            signo: libc::SIGFPE,
            ..
        }
    ));
}

#[test]
fn interrupts() {
    let code = Asm::new().jmp_self();
    let mut f = Fx::new(&code);
    let i = f.ctx.interrupter();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        i.interrupt();
    });
    assert_eq!(f.switch(), Event::Interrupted);
    t.join().unwrap();
    assert_eq!(f.state.regs.rip, CODE, "stopped in the loop");
    // Pending before the switch: returns at once.
    f.ctx.interrupter().interrupt();
    assert_eq!(f.switch(), Event::Interrupted);
    // Many interrupts racing with syscalls: every switch ends in a syscall
    // or an interrupt, none is lost or reported twice.
    let code = Asm::new().mov_eax(39).syscall().jmp_to(0);
    let mut f = Fx::new(&code);
    let i = f.ctx.interrupter();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            i.interrupt();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let (mut sys, mut int) = (0, 0);
    // A hang guard, not a measurement: a loaded machine may starve the
    // interrupting thread for a while, never for a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sys < 2000 || int < 5 {
        match f.switch() {
            Event::Syscall => sys += 1,
            Event::Interrupted => int += 1,
            e => panic!("{e:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{int} interrupts in a minute of {sys} syscalls"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap();
}

#[test]
fn external_signals_are_suppressed() {
    let code = Asm::new().mov_eax(39).syscall().jmp_to(0);
    let mut f = Fx::new(&code);
    let pid = f.sys().stub_pid();
    for _ in 0..20 {
        for sig in [
            libc::SIGSEGV,
            libc::SIGSYS,
            libc::SIGUSR2,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGCHLD,
        ] {
            // SAFETY: kill(2) of our own stub.
            unsafe { libc::kill(pid, sig) };
        }
        assert_eq!(f.switch(), Event::Syscall);
        assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
    }
}

#[test]
fn a_set_fp_state_is_loaded_by_the_next_switch_or_read_back_first() {
    // movq rax, xmm0; syscall, twice: set_fp_state is staged in the slot
    // and loaded by the resume that follows; a read before that resume
    // sees the staged state, and a second context taking the thread
    // keeps it for its owner.
    let code = Asm::new().movq_rax_xmm0().syscall().jmp_to(0);
    let mut f = Fx::new(&code);
    let mut fp = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    let set =
        |fp: &mut platform::FpState, v: u64| fp.xsave[160..168].copy_from_slice(&v.to_le_bytes());
    set(&mut fp, 0x0101_0202_0303_0404);
    f.ctx.set_fp_state(f.aspace.as_ref(), &fp).unwrap();
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(
        f.state.regs.rax, 0x0101_0202_0303_0404,
        "loaded by the resume"
    );
    set(&mut fp, 0x0505_0606_0707_0808);
    f.ctx.set_fp_state(f.aspace.as_ref(), &fp).unwrap();
    let back = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(
        back.xsave[160..168],
        fp.xsave[160..168],
        "read before a switch"
    );
    set(&mut fp, 0x0909_0a0a_0b0b_0c0c);
    f.ctx.set_fp_state(f.aspace.as_ref(), &fp).unwrap();
    let mut other = f.platform.new_context().unwrap();
    let mut st = CpuState {
        regs: Registers::new_user(CODE, DATA + PAGE),
    };
    assert_eq!(
        other.switch(f.aspace.as_ref(), &mut st).unwrap(),
        Event::Syscall
    );
    assert_eq!(st.regs.rax, 0, "the other context's own (initial) state");
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(
        f.state.regs.rax, 0x0909_0a0a_0b0b_0c0c,
        "a staged state survives another context taking the thread"
    );
}

#[test]
fn fp_state_and_fs_base() {
    // movq rax, xmm0; syscall
    let code = Asm::new()
        .movq_rax_xmm0()
        .syscall()
        .load_fs0()
        .syscall()
        .int3();
    let mut f = Fx::new(&code);
    let mut fp = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert!(fp.xsave.len() >= 576);
    fp.xsave[160..168].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    f.ctx.set_fp_state(f.aspace.as_ref(), &fp).unwrap();
    f.state.regs.fs_base = DATA;
    write_at(&f.mem, DATA_OFF, &0xabcdu32.to_le_bytes());
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(
        f.state.regs.rax, 0x1122_3344_5566_7788,
        "xmm0 from set_fp_state"
    );
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(
        f.state.regs.rax & 0xffff_ffff,
        0xabcd,
        "fs:0 through fs_base"
    );
    assert_eq!(f.state.regs.fs_base, DATA);
    // The state read back is the one loaded.
    let back = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(back.xsave[160..168], fp.xsave[160..168]);
    // A component no CPU has (from another host's statefile) loads in its
    // initial state instead of killing the stub on XRSTOR.
    let mut foreign = back.clone();
    let bv = foreign.xstate_bv() | 1 << 62;
    foreign.xsave[512..520].copy_from_slice(&bv.to_le_bytes());
    f.ctx.set_fp_state(f.aspace.as_ref(), &foreign).unwrap();
    let again = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(again.xstate_bv() & 1 << 62, 0);
    assert_eq!(again.xsave[160..168], fp.xsave[160..168]);
    // A second context in the same thread keeps its own FP state.
    let mut other = f.platform.new_context().unwrap();
    let theirs = other.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(theirs.xsave[160..168], [0; 8], "initial state");
    let mut st = CpuState {
        regs: Registers::new_user(CODE, DATA + PAGE),
    };
    assert_eq!(
        other.switch(f.aspace.as_ref(), &mut st).unwrap(),
        Event::Syscall
    );
    assert_eq!(st.regs.rax, 0);
    assert_eq!(
        f.ctx.fp_state(f.aspace.as_ref()).unwrap().xsave[160..168],
        fp.xsave[160..168]
    );
    // A state the CPU cannot load is refused, not a dead stub.
    let mut bad = fp.clone();
    bad.xsave[520..528].copy_from_slice(&1u64.to_le_bytes());
    assert!(f.ctx.set_fp_state(f.aspace.as_ref(), &bad).is_err());
    assert!(
        matches!(
            f.switch(),
            Event::Fault {
                signo: libc::SIGTRAP,
                ..
            }
        ),
        "the stub lives on and runs into the int3"
    );
}

#[test]
fn threads_on_other_host_threads() {
    // Each thread: getpid in a loop, counting in rbx... simply: syscall, loop.
    let code = Asm::new().mov_eax(39).syscall().jmp_to(0);
    let mut f = Fx::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    let mut handles = Vec::new();
    for n in 0..4u64 {
        let mut ctx = f.aspace.new_thread().unwrap();
        let aspace = f.aspace.clone();
        handles.push(std::thread::spawn(move || {
            let mut st = CpuState {
                regs: Registers::new_user(CODE, DATA + PAGE - 64 * n),
            };
            for _ in 0..1000 {
                assert_eq!(
                    ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                    Event::Syscall
                );
            }
            aspace.exit_thread().unwrap();
            // Gone: no thread here any more.
            assert!(ctx.switch(aspace.as_ref(), &mut st).is_err());
        }));
    }
    for _ in 0..1000 {
        assert_eq!(f.switch(), Event::Syscall);
    }
    for h in handles {
        h.join().unwrap();
    }
    // Slots are reused.
    for _ in 0..8 {
        let mut ctx = f.aspace.new_thread().unwrap();
        let aspace = f.aspace.clone();
        std::thread::spawn(move || {
            let mut st = CpuState {
                regs: Registers::new_user(CODE, DATA + PAGE),
            };
            assert_eq!(
                ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                Event::Syscall
            );
            aspace.exit_thread().unwrap();
        })
        .join()
        .unwrap();
    }
    assert_eq!(f.switch(), Event::Syscall);
    // A thread with no stub thread here is refused.
    let aspace = f.aspace.clone();
    let r = std::thread::spawn(move || {
        let mut ctx = platform::systrap::SystrapContext::new();
        let mut st = CpuState::default();
        matches!(
            ctx.switch(aspace.as_ref(), &mut st),
            Err(PlatformError::WrongThread { .. })
        )
    })
    .join()
    .unwrap();
    assert!(r);
}

fn maps(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn stub_holds_only_its_region_the_memory_file_and_an_eventfd() {
    let code = Asm::new().mov_eax(39).syscall().int3();
    let mut f = Fx::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    let s = f.sys();
    let pid = s.stub_pid();
    let (start, len) = s.stub_region();
    for line in maps(pid) {
        let range = line.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let app = (a == CODE && b == CODE + PAGE) || (a == DATA && b == DATA + PAGE);
        if line.ends_with("[vsyscall]") {
            continue; // the kernel's, in no address space's user range
        }
        assert!(
            app || (a >= start && b <= start + len),
            "stray mapping in the stub: {line}"
        );
    }
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            std::fs::read_link(e.unwrap().path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    fds.sort();
    assert_eq!(
        fds.len(),
        2,
        "only the memory file and the leader's completion eventfd: {fds:?}"
    );
    assert!(fds[0].contains("memfd:cryo-test"), "{fds:?}");
    assert_eq!(fds[1], "anon_inode:[eventfd]", "{fds:?}");
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 10) {
        assert!(s.sealed(), "mseal of the stub region (Linux >= 6.10)");
    } else {
        skipped(&format!("mseal needs Linux 6.10, this is {release}"));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
}

#[test]
fn dropping_or_killing_the_stub() {
    let code = Asm::new().jmp_self();
    let mut f = Fx::new(&code);
    let pid = f.sys().stub_pid();
    // SAFETY: kill(2) of our own stub.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    match f.ctx.switch(f.aspace.as_ref(), &mut f.state) {
        Err(PlatformError::StubDied { .. }) => {}
        r => panic!("{r:?}"),
    }
    assert!(f.aspace.map(DATA, PAGE, DATA_OFF, Prot::READ).is_err());
    let f = Fx::new(&code);
    let pid = f.sys().stub_pid();
    drop(f);
    // Killed at once; reaped by the reaper thread when no switch ran.
    let start = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && start.elapsed() < std::time::Duration::from_secs(5)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "stub reaped"
    );
}

#[test]
fn the_stub_region_is_off_limits() {
    let f = Fx::new(&Asm::new().int3());
    let (start, len) = f.sys().stub_region();
    assert!(f.aspace.map(start, PAGE, 0, Prot::READ).is_err());
    assert!(f.aspace.map(start - PAGE, 2 * PAGE, 0, Prot::READ).is_err());
    assert!(f.aspace.map(start + len, PAGE, 0, Prot::READ).is_err());
    // unmap / protect skip it (the rest of the range is done).
    f.aspace.unmap(start - PAGE, 2 * PAGE).unwrap();
    f.aspace.protect(start, PAGE, Prot::READ_WRITE).unwrap();
    assert!(f.aspace.map(DATA, 3, 0, Prot::READ).is_err());
}

// ---- Hostile applications --------------------------------------------------

/// The application scribbles over its own context while the Sentry waits
/// for it: the Sentry gets an error naming the stub, the stub is killed.
#[test]
fn scribbling_over_the_context_kills_the_stub() {
    for (off, val) in [(0u64, 0x77u32), (0x10, 99)] {
        let f0 = Fx::new(&Asm::new().int3());
        let slot = f0.sys().slot_addr(0);
        drop(f0);
        // State word garbage, or EVENT with a bogus signal.
        let mut code = Asm::new().mov_rax64(slot + off).store_rax(val);
        if off == 0x10 {
            code = code.mov_rax64(slot).store_rax(1);
        }
        let mut f = Fx::new(&code.jmp_self());
        assert_eq!(f.sys().slot_addr(0), slot, "same layout in every stub");
        let pid = f.sys().stub_pid();
        match f.ctx.switch(f.aspace.as_ref(), &mut f.state) {
            Err(PlatformError::Systrap { pid: p, what }) => {
                assert_eq!(p, pid);
                assert!(!what.is_empty());
            }
            r => panic!("{r:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "stub killed: {state}"
        );
    }
}

/// Jumping into the stub's code to make a host syscall from there: the
/// seccomp filter kills the stub (mmap, getpid) and nothing runs.
#[test]
fn jumping_into_the_stub_code_is_no_host_syscall() {
    let f0 = Fx::new(&Asm::new().int3());
    let stub = f0.sys().stub_addr();
    drop(f0);
    // Every `syscall` instruction (0f 05) in the stub page, with getpid
    // and with mmap in rax.
    let bytes = {
        let mut b = vec![0u8; PAGE as usize];
        // SAFETY: the stub page is mapped readable in this process.
        unsafe { std::ptr::copy_nonoverlapping(stub as *const u8, b.as_mut_ptr(), b.len()) };
        b
    };
    let sites: Vec<u64> = (0..bytes.len() - 1)
        .filter(|&i| bytes[i] == 0x0f && bytes[i + 1] == 0x05)
        .map(|i| stub + i as u64)
        .collect();
    assert!(sites.len() > 5, "{sites:?}");
    for (n, &site) in sites.iter().enumerate().step_by(3) {
        let nr = if n % 2 == 0 { 39 } else { 9 };
        let code = jmp_abs(Asm::new().mov_eax(nr).mov_edi(0), site);
        let mut f = Fx::new(&code);
        match f.ctx.switch(f.aspace.as_ref(), &mut f.state) {
            Err(PlatformError::StubDied { how, .. }) => {
                assert!(
                    how.contains("signal 31"),
                    "killed by seccomp (SIGSYS): {how}"
                );
            }
            r => panic!("syscall {nr} at {site:#x}: {r:?}"),
        }
    }
}

/// rt_sigreturn through the stub's own code with a forged frame that blocks
/// every signal: the next syscall cannot be trapped and the kernel kills
/// the stub; the Sentry sees a dead stub.
#[test]
fn forged_sigreturn_frame() {
    let f0 = Fx::new(&Asm::new().int3());
    let stub = f0.sys().stub_addr();
    drop(f0);
    // The frame at DATA: a ucontext whose rip is CODE + 0x100 (a getpid),
    // rsp DATA + 0x800, cs/ss user, mask all ones.
    let mut frame = vec![0u8; 1024];
    let put =
        |f: &mut Vec<u8>, off: usize, v: u64| f[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut frame, 160, DATA + 0x800);
    put(&mut frame, 168, CODE + 0x100);
    put(&mut frame, 176, 0x202);
    frame[184..186].copy_from_slice(&0x33u16.to_le_bytes());
    frame[190..192].copy_from_slice(&0x2bu16.to_le_bytes());
    put(&mut frame, 296, !0);
    // rsp = DATA + 8 (the kernel reads the frame at rsp - 8), jump to the
    // restorer (mov eax, 15; syscall) at the start of the stub page.
    // mov rsi, DATA + 8; mov rsp, rsi; jmp stub
    let code = jmp_abs(
        raw(Asm::new().mov_rsi64(DATA + 8), &[0x48, 0x89, 0xf4]),
        stub,
    );
    let code = code.pad_to(0x100).mov_eax(39).syscall().int3();
    let mut f = Fx::new(&code);
    write_at(&f.mem, DATA_OFF + 8, &frame);
    match f.ctx.switch(f.aspace.as_ref(), &mut f.state) {
        Err(PlatformError::StubDied { .. }) => {}
        r => panic!("{r:?}"),
    }
}

/// A second application thread races the first one's handler, rewriting
/// its context while it makes syscalls: every switch ends in an event or a
/// clean error (never a panic or a hang), and once an error came the stub
/// is gone.
#[test]
fn a_second_thread_racing_the_handler() {
    let f0 = Fx::new(&Asm::new().int3());
    let slot0 = f0.sys().slot_addr(0);
    drop(f0);
    // Thread 0 at CODE: getpid in a loop. Thread 1 at CODE + 0x80: store
    // junk over thread 0's registers and event in a loop.
    let mut code = Asm::new().mov_eax(39).syscall().jmp_to(0).pad_to(0x80);
    let top = code.len();
    code = code
        .mov_rax64(slot0 + 0x10)
        .store_rax(31)
        .mov_rax64(slot0 + 0x40 + 16 * 8)
        .store_rax(0xdead_0000)
        .jmp_to(top);
    let mut f = Fx::new(&code);
    let mut ctx1 = f.aspace.new_thread().unwrap();
    let aspace = f.aspace.clone();
    let racer = std::thread::spawn(move || {
        let mut st = CpuState {
            regs: Registers::new_user(CODE + 0x80, DATA + PAGE),
        };
        // It never makes a syscall: it ends when the stub is killed or
        // interrupted, with an error or an event.
        let r = ctx1.switch(aspace.as_ref(), &mut st);
        let _ = aspace.exit_thread();
        r.map(|_| ()).map_err(|e| e.to_string())
    });
    let mut outcome = Ok(0);
    for n in 0..20_000 {
        match f.ctx.switch(f.aspace.as_ref(), &mut f.state) {
            Ok(Event::Syscall) => {
                // Junk registers from the racer are the application's own
                // doing: the Sentry just sees them.
                f.state.regs = Registers::new_user(CODE, DATA + PAGE);
            }
            Ok(e) => {
                f.state.regs = Registers::new_user(CODE, DATA + PAGE);
                let _ = e;
            }
            Err(e) => {
                outcome = Err((n, e.to_string()));
                break;
            }
        }
    }
    if let Err((_, e)) = &outcome {
        assert!(e.contains("stub"), "{e}");
        assert!(
            f.aspace.map(DATA, PAGE, DATA_OFF, Prot::READ).is_err(),
            "the stub is dead"
        );
    } else {
        // Still alive: stop the racer.
        let pid = f.sys().stub_pid();
        // SAFETY: kill(2) of our own stub.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let r = racer.join().expect("no panic in the racer's Sentry thread");
    assert!(r.is_err() || outcome.is_ok(), "{r:?}");
}

/// What fork does: the address space is created by the parent's host
/// thread, a new thread's context is handed to the child's host thread,
/// and the creator leaves the address space.
#[test]
fn the_first_thread_may_leave_to_another_host_thread() {
    let code = Asm::new().mov_eax(39).syscall().jmp_to(0);
    let f = Fx::new(&code);
    let mut child = f.aspace.new_thread().unwrap();
    f.aspace.exit_thread().unwrap();
    let aspace = f.aspace.clone();
    std::thread::spawn(move || {
        let mut st = CpuState {
            regs: Registers::new_user(CODE, DATA + PAGE),
        };
        for _ in 0..100 {
            assert_eq!(
                child.switch(aspace.as_ref(), &mut st).unwrap(),
                Event::Syscall
            );
        }
        aspace.map(0x7000_0000, PAGE, 0, Prot::READ).unwrap();
        aspace.exit_thread().unwrap();
    })
    .join()
    .unwrap();
}

/// The application scribbles over the leader's status page (sequence
/// number, result) while the Sentry maps and unmaps: each request still
/// waits for the leader's own completion (its eventfd write), and a forged
/// result is an error for that request or a killed stub, never a hang.
#[test]
fn forging_the_leaders_status_page() {
    let f0 = Fx::new(&Asm::new().int3());
    let status = f0.sys().status_addr();
    drop(f0);
    let top = 0;
    let code = Asm::new()
        .mov_rax64(status)
        .store_rax(7)
        .mov_rax64(status + 8)
        .store_rax(0x4000_0000)
        .jmp_to(top);
    let mut f = Fx::new(&code);
    let i = f.ctx.interrupter();
    let aspace = f.aspace.clone();
    let sentry = std::thread::spawn(move || {
        let mut outcomes = (0, 0);
        for n in 0..300u64 {
            let addr = 0x7000_0000 + (n % 8) * PAGE;
            match aspace.map(addr, PAGE, 8 * PAGE, Prot::READ_WRITE) {
                Ok(()) => outcomes.0 += 1,
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            PlatformError::Systrap { .. }
                                | PlatformError::Injected { .. }
                                | PlatformError::StubDied { .. }
                        ),
                        "{e}"
                    );
                    outcomes.1 += 1;
                    if !matches!(e, PlatformError::Injected { .. }) {
                        break;
                    }
                }
            }
        }
        i.interrupt();
        outcomes
    });
    // The application runs (scribbling) until the Sentry thread is done.
    let r = f.ctx.switch(f.aspace.as_ref(), &mut f.state);
    let (ok, failed) = sentry.join().expect("no panic");
    assert!(ok + failed > 0);
    assert!(
        matches!(r, Ok(Event::Interrupted) | Err(_)),
        "{r:?} after {ok} maps and {failed} refusals"
    );
}

/// Address spaces made from several threads at once (each asks the zygote,
/// or takes one from the pool) are each a working stub that is this
/// process's own child, and each maps its own memory: the queued maps run
/// before the first switch.
#[test]
fn many_address_spaces_from_many_threads() {
    let code = Asm::new().mov_eax(39).syscall().int3();
    let mem = memfd(16 * PAGE);
    write_at(&mem, CODE_OFF, &code.0);
    let platform = Arc::new(SystrapPlatform::new(mem.as_fd()).expect("platform"));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let platform = platform.clone();
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                for _ in 0..8 {
                    let aspace = platform.new_address_space().expect("address space");
                    aspace
                        .map(CODE, PAGE, CODE_OFF, Prot::READ_EXEC)
                        .expect("map code");
                    let mut ctx = platform.new_context().expect("context");
                    let mut state = CpuState {
                        regs: Registers::new_user(CODE, DATA + PAGE),
                    };
                    let ev = ctx.switch(aspace.as_ref(), &mut state).expect("switch");
                    assert_eq!(ev, Event::Syscall);
                    assert_eq!(state.regs.syscall_nr(), SYS_GETPID);
                    let s: &SystrapAddressSpace = aspace.as_any().downcast_ref().expect("systrap");
                    let pid = s.stub_pid();
                    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .expect("stat")
                        .rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().nth(1).map(str::to_owned))
                        .expect("ppid");
                    assert_eq!(
                        ppid,
                        std::process::id().to_string(),
                        "stub {pid} is the Sentry's child"
                    );
                    pids.push(pid);
                }
                pids
            })
        })
        .collect();
    let mut all: Vec<i32> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("no panic"))
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "every address space its own stub");
}
