//! The ptrace platform running real machine code in stubs. Needs root or
//! ptrace permission over our own children (the default).

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use platform::ptrace::{PtraceAddressSpace, PtracePlatform};
use platform::{
    Access, AddressSpace, CpuState, Event, FpState, Platform, PlatformError, Prot, Registers,
};

const SYS_WRITE: u64 = 1;
const SYS_GETPID: u64 = 39;
const SYS_EXIT: u64 = 60;
const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;

#[test]
fn getpid_then_exit() {
    let code = Asm::new()
        .mov_eax(39)
        .syscall()
        .mov_edi_eax()
        .mov_eax(60)
        .syscall()
        .int3();
    let mut f = Fixture::new(&code);
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
    assert_eq!(
        f.state.regs.syscall_args()[0],
        1234,
        "rax set by the Sentry reached the application"
    );
    // Running on past the exit hits the int3.
    match f.switch() {
        Event::Fault {
            signo: libc::SIGTRAP,
            ..
        } => {}
        e => panic!("expected SIGTRAP, got {e:?}"),
    }
}

#[test]
fn write_from_mapped_buffer() {
    let msg = u32::from_le_bytes(*b"cryo");
    let code = Asm::new()
        .mov_rsi64(DATA + 16)
        .store_rsi(msg)
        .mov_eax(1)
        .mov_edi(1)
        .mov_edx(4)
        .syscall()
        .mov_eax(60)
        .syscall();
    let mut f = Fixture::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    let [fd, buf, len, ..] = f.state.regs.syscall_args();
    assert_eq!(
        (f.state.regs.syscall_nr(), fd, buf, len),
        (SYS_WRITE, 1, DATA + 16, 4)
    );
    // The Sentry reads the buffer through the memory file.
    assert_eq!(
        read_at(&f.mem, DATA_OFF + (buf - DATA), len as usize),
        b"cryo"
    );
    f.state.regs.set_return(4);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_EXIT);
}

#[test]
fn store_to_unmapped_address_faults() {
    let target = 0x7000_1234_5678u64;
    let code = Asm::new()
        .mov_rax64(target)
        .store_rax(1)
        .mov_eax(60)
        .syscall();
    let mut f = Fixture::new(&code);
    match f.switch() {
        Event::Fault {
            signo, code, addr, ..
        } => {
            assert_eq!(signo, libc::SIGSEGV);
            assert_eq!(code, SEGV_MAPERR);
            assert_eq!(addr, target);
        }
        e => panic!("expected a fault, got {e:?}"),
    }
    assert_eq!(f.state.regs.rip, CODE + 10, "stopped at the faulting store");
    // Execution faults say so.
    f.state.regs.rip = 0x1000_0000;
    match f.switch() {
        Event::Fault {
            signo: libc::SIGSEGV,
            addr: 0x1000_0000,
            access: Access::Exec,
            ..
        } => {}
        e => panic!("expected an exec fault, got {e:?}"),
    }
}

#[test]
fn readonly_page_fault_resolved_by_protect() {
    let ro = DATA + 2 * PAGE;
    let ro_off = DATA_OFF + 2 * PAGE;
    let code = Asm::new()
        .mov_rax64(ro + 8)
        .store_rax(0xabcd)
        .mov_eax(60)
        .syscall();
    let mut f = Fixture::new(&code);
    f.aspace.map(ro, PAGE, ro_off, Prot::READ).unwrap();
    match f.switch() {
        Event::Fault {
            signo: libc::SIGSEGV,
            code,
            addr,
            ..
        } => {
            assert_eq!(code, SEGV_ACCERR);
            assert_eq!(addr, ro + 8);
        }
        e => panic!("expected a fault, got {e:?}"),
    }
    // The Sentry resolves the fault and resumes: the store is retried.
    f.aspace.protect(ro, PAGE, Prot::READ_WRITE).unwrap();
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_EXIT);
    assert_eq!(read_at(&f.mem, ro_off + 8, 4), 0xabcdu32.to_le_bytes());
}

#[test]
fn unmap_then_access_faults() {
    let code = Asm::new()
        .mov_rax64(DATA)
        .load_rax()
        .mov_eax(60)
        .syscall()
        .mov_rax64(DATA)
        .load_rax()
        .int3();
    let mut f = Fixture::new(&code);
    write_at(&f.mem, DATA_OFF, &60u32.to_le_bytes());
    assert_eq!(f.switch(), Event::Syscall);
    f.aspace.unmap(DATA, PAGE).unwrap();
    match f.switch() {
        Event::Fault {
            signo: libc::SIGSEGV,
            code: SEGV_MAPERR,
            addr: DATA,
            ..
        } => {}
        e => panic!("expected a fault, got {e:?}"),
    }
}

#[test]
fn interrupt_infinite_loop() {
    let code = Asm::new().jmp_self().mov_eax(39).syscall().int3();
    let mut f = Fixture::new(&code);
    let intr = f.ctx.interrupter();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        intr.interrupt();
    });
    assert_eq!(f.switch(), Event::Interrupted);
    t.join().unwrap();
    assert_eq!(f.state.regs.rip, CODE, "interrupted in the loop");
    // No second, spurious interrupt: skip the loop and reach the syscall.
    f.state.regs.rip = CODE + 2;
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
}

#[test]
fn interrupt_before_switch_returns_at_once() {
    let code = Asm::new().mov_eax(39).syscall().int3();
    let mut f = Fixture::new(&code);
    let intr = f.ctx.interrupter();
    intr.interrupt();
    intr.interrupt(); // idempotent while pending
    let before = f.state.clone();
    assert_eq!(f.switch(), Event::Interrupted);
    assert_eq!(f.state, before, "nothing ran");
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
}

#[test]
fn interrupts_racing_with_syscalls() {
    // 2000 getpids while another thread interrupts as fast as it can: every
    // switch returns Syscall or Interrupted, and the program completes.
    let code = Asm::new()
        .mov_ebx(2000)
        .mov_eax(39)
        .syscall()
        .dec_ebx()
        .jnz_to(5)
        .mov_eax(60)
        .syscall()
        .int3();
    let mut f = Fixture::new(&code);
    let intr = f.ctx.interrupter();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let (started, first_sent) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            intr.interrupt();
            n += 1;
            if n == 1 {
                let _ = started.send(());
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        n
    });
    // At least one request is made before the program runs, however the
    // threads are scheduled (on a loaded machine the 2000 calls may finish
    // before the interrupter first runs).
    first_sent.recv().unwrap();
    let (mut syscalls, mut interrupts) = (0, 0);
    loop {
        match f.switch() {
            Event::Syscall if f.state.regs.syscall_nr() == SYS_GETPID => syscalls += 1,
            Event::Syscall if f.state.regs.syscall_nr() == SYS_EXIT => break,
            Event::Interrupted => interrupts += 1,
            e => panic!("unexpected {e:?} at {:#x}", f.state.regs.rip),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = t.join().unwrap();
    assert_eq!(syscalls, 2000);
    assert!(
        interrupts >= 1 && interrupts <= sent,
        "{interrupts} interrupts for {sent} requests"
    );
    // A request after the program ended is still reported exactly once.
    f.ctx.interrupter().interrupt();
    assert_eq!(f.switch(), Event::Interrupted);
    match f.switch() {
        Event::Fault {
            signo: libc::SIGTRAP,
            ..
        } => {}
        e => panic!("expected the final int3, got {e:?}"),
    }
}

#[test]
fn external_signals_are_suppressed() {
    let code = Asm::new().jmp_self().int3();
    let mut f = Fixture::new(&code);
    let pid = f.stub_pid();
    let intr = f.ctx.interrupter();
    let t = std::thread::spawn(move || {
        for sig in [
            libc::SIGCHLD,
            libc::SIGWINCH,
            libc::SIGSEGV,
            libc::SIGUSR1,
            libc::SIGINT,
            libc::SIGTERM,
        ] {
            std::thread::sleep(Duration::from_millis(10));
            // SAFETY: kill(2) of the stub with plain integers.
            assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        }
        std::thread::sleep(Duration::from_millis(30));
        intr.interrupt();
    });
    assert_eq!(f.switch(), Event::Interrupted);
    t.join().unwrap();
    assert_eq!(f.state.regs.rip, CODE);
}

#[test]
fn fp_state_round_trip() {
    const V: u64 = 0x1122_3344_5566_7788;
    let code = Asm::new()
        .movq_rax_xmm0()
        .mov_rdi_rax()
        .mov_eax(60)
        .syscall()
        .int3();
    let mut f = Fixture::new(&code);
    let mut fp = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert!(
        fp.xsave.len() >= 576,
        "XSAVE area of {} bytes",
        fp.xsave.len()
    );
    // XMM0 is at byte 160 of the legacy area; SSE must be in XSTATE_BV.
    fp.xsave[160..168].copy_from_slice(&V.to_le_bytes());
    let bv = fp.xstate_bv() | 2;
    fp.xsave[512..520].copy_from_slice(&bv.to_le_bytes());
    f.ctx.set_fp_state(f.aspace.as_ref(), &fp).unwrap();
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.rdi, V);
    let back = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(back.xsave[160..168], V.to_le_bytes());

    // A component no CPU has (from another host's statefile) loads in its
    // initial state instead of making the kernel refuse the whole state.
    let mut foreign = back.clone();
    let bv = foreign.xstate_bv() | 1 << 62;
    foreign.xsave[512..520].copy_from_slice(&bv.to_le_bytes());
    f.ctx.set_fp_state(f.aspace.as_ref(), &foreign).unwrap();
    let back = f.ctx.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(back.xstate_bv() & 1 << 62, 0);
    assert_eq!(back.xsave[160..168], V.to_le_bytes());

    // Too big for this host.
    let huge = FpState {
        xsave: vec![0; 1 << 20],
    };
    assert!(matches!(
        f.ctx.set_fp_state(f.aspace.as_ref(), &huge),
        Err(PlatformError::FpStateSize { .. })
    ));
}

#[test]
fn contexts_sharing_a_stub_keep_their_fp_state() {
    // ctx1 loads xmm0 from rax and makes a syscall; ctx2 (a second thread in
    // the same address space) clobbers xmm0; ctx1 must see its own value.
    let code = Asm::new()
        .movq_xmm0_rax()
        .mov_eax(39)
        .syscall()
        .movq_rax_xmm0()
        .mov_rdi_rax()
        .mov_eax(60)
        .syscall()
        .int3();
    let mut f = Fixture::new(&code);
    let mut ctx2 = f.platform.new_context().unwrap();
    f.state.regs.rax = 111;
    assert_eq!(f.switch(), Event::Syscall);
    let mut s2 = CpuState {
        regs: Registers::new_user(CODE, DATA + PAGE),
    };
    s2.regs.rax = 222;
    assert_eq!(
        ctx2.switch(f.aspace.as_ref(), &mut s2).unwrap(),
        Event::Syscall
    );
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(
        (f.state.regs.syscall_nr(), f.state.regs.rdi),
        (SYS_EXIT, 111)
    );
    assert_eq!(
        ctx2.switch(f.aspace.as_ref(), &mut s2).unwrap(),
        Event::Syscall
    );
    assert_eq!((s2.regs.syscall_nr(), s2.regs.rdi), (SYS_EXIT, 222));
    // A fresh context starts with the initial state, not a neighbour's.
    let mut ctx3 = f.platform.new_context().unwrap();
    let fp = ctx3.fp_state(f.aspace.as_ref()).unwrap();
    assert_eq!(fp.xsave[160..168], [0; 8]);
    assert_eq!(fp.xsave[24..28], 0x1f80u32.to_le_bytes());
}

#[test]
fn fs_base_is_a_register() {
    let code = Asm::new().load_fs0().mov_edi_eax().mov_eax(60).syscall();
    let mut f = Fixture::new(&code);
    write_at(&f.mem, DATA_OFF + 64, &0x5eed_u32.to_le_bytes());
    f.state.regs.fs_base = DATA + 64;
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.rdi, 0x5eed);
    assert_eq!(f.state.regs.fs_base, DATA + 64);
}

fn maps(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn stub_holds_nothing_but_the_stub_page_and_the_memory_file() {
    let code = Asm::new().int3();
    let f = Fixture::new(&code);
    let pid = f.stub_pid();
    let layout = *f.platform.layout();
    let stub = format!("{:x}-{:x} r-xp", layout.stub_addr, layout.stub_end());
    let maps = maps(pid);
    for line in &maps {
        let ok = line.starts_with(&stub)
            || line.contains("memfd:cryo-test")
            || line.contains("[vsyscall]");
        assert!(ok, "unexpected mapping in the stub: {line}\n{maps:#?}");
    }
    assert!(
        maps.iter().any(|l| l.starts_with(&stub)),
        "no stub page: {maps:#?}"
    );
    assert_eq!(
        maps.iter()
            .filter(|l| l.contains("memfd:cryo-test"))
            .count(),
        2,
        "{maps:#?}"
    );

    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(fds, [f.platform.memory_fd().to_string()]);
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{}", f.platform.memory_fd())).unwrap();
    assert!(
        target.to_string_lossy().contains("memfd:cryo-test"),
        "{target:?}"
    );

    // Not in our process group or session.
    // SAFETY: getpgid/getsid with plain integers.
    let (pgid, sid) = unsafe { (libc::getpgid(pid), libc::getsid(pid)) };
    assert_eq!((pgid, sid), (pid, pid));
}

#[test]
fn dropping_the_address_space_kills_the_stub() {
    let f = Fixture::new(&Asm::new().jmp_self());
    let pid = f.stub_pid();
    drop(f.aspace);
    // SAFETY: kill with signal 0 only checks existence.
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ESRCH)
    );
}

#[test]
fn killed_stub_is_reported() {
    let mut f = Fixture::new(&Asm::new().jmp_self());
    let pid = f.stub_pid();
    // SAFETY: kill(2) of our stub.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let r = f.ctx.switch(f.aspace.as_ref(), &mut f.state);
    assert!(
        matches!(r, Err(PlatformError::StubDied { pid: p, .. }) if p == pid),
        "{r:?}"
    );
    // And it stays dead, without touching the (reaped) pid again.
    assert!(matches!(
        f.aspace.map(CODE, PAGE, 0, Prot::READ),
        Err(PlatformError::StubDied { .. })
    ));
}

#[test]
fn requests_from_another_thread_are_refused() {
    let mut f = Fixture::new(&Asm::new().int3());
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let a = f.ctx.switch(f.aspace.as_ref(), &mut f.state).map(|_| ());
            let b = f.aspace.unmap(DATA, PAGE);
            (a, b)
        })
        .join()
        .unwrap()
    });
    assert!(
        matches!(r.0, Err(PlatformError::WrongThread { .. })),
        "{:?}",
        r.0
    );
    assert!(
        matches!(r.1, Err(PlatformError::WrongThread { .. })),
        "{:?}",
        r.1
    );
    // Still usable from its own thread.
    assert!(matches!(
        f.switch(),
        Event::Fault {
            signo: libc::SIGTRAP,
            ..
        }
    ));
}

#[test]
fn foreign_address_space_is_refused() {
    struct Other;
    impl AddressSpace for Other {
        fn map(&self, _: u64, _: u64, _: u64, _: Prot) -> Result<(), PlatformError> {
            Ok(())
        }
        fn unmap(&self, _: u64, _: u64) -> Result<(), PlatformError> {
            Ok(())
        }
        fn protect(&self, _: u64, _: u64, _: Prot) -> Result<(), PlatformError> {
            Ok(())
        }
        fn new_thread(&self) -> Result<Box<dyn platform::Context>, PlatformError> {
            Err(PlatformError::Thread("no threads"))
        }
        fn exit_thread(&self) -> Result<(), PlatformError> {
            Err(PlatformError::Thread("no threads"))
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }
    let mem = memfd(PAGE);
    let platform = PtracePlatform::new(mem.as_fd()).unwrap();
    let mut ctx = platform.new_context().unwrap();
    let r = ctx.switch(&Other, &mut CpuState::default());
    assert!(
        matches!(r, Err(PlatformError::ForeignAddressSpace)),
        "{r:?}"
    );
}

#[test]
fn the_stub_page_is_protected_and_ranges_checked() {
    let mut f = Fixture::new(&Asm::new().mov_eax(39).syscall().int3());
    let layout = *f.platform.layout();
    let r = f.aspace.map(layout.stub_addr, PAGE, 0, Prot::READ_WRITE);
    assert!(
        matches!(r, Err(PlatformError::InvalidRange { .. })),
        "{r:?}"
    );
    assert!(f.aspace.map(CODE + 1, PAGE, 0, Prot::READ).is_err());
    assert!(f
        .aspace
        .map(layout.max_user_addr, PAGE, 0, Prot::READ)
        .is_err());
    // Unmapping everything around it leaves the stub working.
    f.aspace
        .unmap(layout.stub_addr - 16 * PAGE, 32 * PAGE)
        .unwrap();
    f.aspace
        .map(DATA + PAGE, PAGE, DATA_OFF, Prot::READ)
        .unwrap();
    assert_eq!(f.switch(), Event::Syscall);
    let pid = f.stub_pid();
    let stub = format!("{:x}-{:x} r-xp", layout.stub_addr, layout.stub_end());
    assert!(maps(pid).iter().any(|l| l.starts_with(&stub)));
}

#[test]
fn many_address_spaces_from_one_platform() {
    let code = Asm::new().mov_eax(39).syscall().int3();
    let mem = memfd(PAGE);
    write_at(&mem, 0, &code.0);
    let platform = PtracePlatform::new(mem.as_fd()).unwrap();
    drop(mem); // the platform keeps its own descriptor
    let mut spaces: Vec<PtraceAddressSpace> = (0..4)
        .map(|_| platform.new_ptrace_address_space().unwrap())
        .collect();
    let mut ctx = platform.new_context().unwrap();
    for a in &mut spaces {
        a.map(CODE, PAGE, 0, Prot::READ_EXEC).unwrap();
        let mut st = CpuState {
            regs: Registers::new_user(CODE, 0),
        };
        assert_eq!(ctx.switch(a, &mut st).unwrap(), Event::Syscall);
        assert_eq!(st.regs.syscall_nr(), SYS_GETPID);
    }
}

#[test]
fn stub_dies_with_its_tracer_thread() {
    let mem = memfd(PAGE);
    let platform = PtracePlatform::new(mem.as_fd()).unwrap();
    let pid = std::thread::scope(|s| {
        s.spawn(|| {
            let aspace = platform.new_ptrace_address_space().unwrap();
            let pid = aspace.stub_pid();
            std::mem::forget(aspace); // the Sentry thread "forgets" to drop it
            pid
        })
        .join()
        .unwrap()
    });
    // PTRACE_O_EXITKILL / PR_SET_PDEATHSIG killed it; reap the zombie.
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "status {status:#x}"
    );
}

#[test]
fn stub_has_no_rseq_registration() {
    #[repr(C)]
    #[derive(Default)]
    struct RseqConfig {
        pointer: u64,
        size: u32,
        signature: u32,
        flags: u32,
        pad: u32,
    }
    let f = Fixture::new(&Asm::new().int3());
    let pid = f.stub_pid();
    let mut config = RseqConfig::default();
    // SAFETY: the kernel writes at most size_of::<RseqConfig>() bytes into
    // `config`; we are the stub's tracer and it is stopped.
    let r = unsafe {
        libc::ptrace(
            0x420f,
            pid,
            std::mem::size_of::<RseqConfig>() as *mut libc::c_void,
            &mut config as *mut RseqConfig,
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        // PTRACE_GET_RSEQ_CONFIGURATION is Linux 5.13+; older kernels do
        // not know the request (EIO) and have no rseq to leave registered.
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EIO),
            "PTRACE_GET_RSEQ_CONFIGURATION failed: {err}"
        );
        skipped("stub_has_no_rseq_registration: the kernel has no PTRACE_GET_RSEQ_CONFIGURATION (older than 5.13)");
        return;
    }
    assert_eq!(config.pointer, 0, "rseq area still registered in the stub");
}

#[test]
fn mmap_emulated_at_a_syscall_stop() {
    let target = DATA + 3 * PAGE;
    let off = DATA_OFF + 3 * PAGE;
    let code = Asm::new()
        .mov_eax(9)
        .syscall()
        .store_rax(0x77)
        .mov_eax(60)
        .syscall();
    let mut f = Fixture::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), 9);
    // The Sentry implements mmap: it maps the memory file in the stub (an
    // injection at the syscall stop) and returns the address.
    f.aspace.map(target, PAGE, off, Prot::READ_WRITE).unwrap();
    f.state.regs.set_return(target);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_EXIT);
    assert_eq!(read_at(&f.mem, off, 4), 0x77u32.to_le_bytes());
}

#[test]
fn restart_errnos_are_not_rewritten_by_the_host() {
    // The Sentry returns -ERESTARTSYS (-512) while a signal is pending for the
    // stub: the host kernel must not "restart" the syscall by rewinding rip.
    let code = Asm::new()
        .mov_eax(39)
        .syscall()
        .mov_rdi_rax()
        .mov_eax(60)
        .syscall()
        .int3();
    let mut f = Fixture::new(&code);
    assert_eq!(f.switch(), Event::Syscall);
    let pid = f.stub_pid();
    // SAFETY: tgkill of our stopped stub; the signal stays pending.
    assert_eq!(
        unsafe { libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGWINCH) },
        0
    );
    f.state.regs.set_return(-512i64 as u64);
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(
        f.state.regs.syscall_nr(),
        SYS_EXIT,
        "the getpid was restarted"
    );
    assert_eq!(f.state.regs.rdi, -512i64 as u64);
}

/// Every registered platform is created by its name and answers to it; the
/// default is registered; an unknown name creates nothing.
#[test]
fn platforms_are_created_by_name() {
    let mem = memfd(PAGE);
    for entry in platform::PLATFORMS {
        let p = platform::by_name(entry.name, mem.as_fd()).unwrap();
        assert_eq!(p.name(), entry.name);
    }
    let p = platform::by_name(platform::DEFAULT_PLATFORM, mem.as_fd()).unwrap();
    assert_eq!(p.name(), platform::DEFAULT_PLATFORM);
    match platform::by_name("bogus", mem.as_fd()) {
        Err(PlatformError::UnknownPlatform { name, known }) => {
            assert_eq!(name, "bogus");
            assert!(known.contains("ptrace"), "{known}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(p) => panic!("created a platform {:?} for a bogus name", p.name()),
    }
}
