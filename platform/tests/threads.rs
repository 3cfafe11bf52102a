//! Application threads: one stub thread per application thread, each traced
//! by its own host thread.

mod common;

use std::os::fd::AsFd;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use platform::ptrace::{PtraceAddressSpace, PtracePlatform};
use platform::{AddressSpace, CpuState, Event, FpState, Platform, PlatformError, Prot, Registers};

const SYS_GETPID: u64 = 39;
const MARK: u32 = 1000;

/// Where each piece of test code starts in the code page.
const A_LOOP: usize = 0;
const B_CODE: usize = 0x100;
const SPIN: usize = 0x200;
const GETPID_LOOP: usize = 0x280;
const STORE_NEW: usize = 0x300;
const LOAD_NEW: usize = 0x380;

/// A second data page mapped by a thread other than the creator.
const NEW_PAGE: u64 = DATA + 4 * PAGE;
const NEW_OFF: u64 = DATA_OFF + 4 * PAGE;

fn code() -> Asm {
    Asm::new()
        // A: store 0xa0a at DATA+16, then forever: getpid(rdi = [DATA+8]).
        .mov_rsi64(DATA + 16)
        .store_rsi(0xa0a)
        .pad_to(A_LOOP + 0x20)
        .mov_rax64(DATA + 8)
        .load_rax()
        .mov_edi_eax()
        .mov_eax(SYS_GETPID as u32)
        .syscall()
        .jmp_to(A_LOOP + 0x20)
        // B: getpid(rdi = [DATA+16]); store 0xb0b at DATA+8; MARK(); int3.
        .pad_to(B_CODE)
        .mov_rax64(DATA + 16)
        .load_rax()
        .mov_edi_eax()
        .mov_eax(SYS_GETPID as u32)
        .syscall()
        .mov_rsi64(DATA + 8)
        .store_rsi(0xb0b)
        .mov_eax(MARK)
        .syscall()
        .int3()
        .pad_to(SPIN)
        .jmp_self()
        .pad_to(GETPID_LOOP)
        .mov_eax(SYS_GETPID as u32)
        .syscall()
        .jmp_to(GETPID_LOOP)
        .pad_to(STORE_NEW)
        .mov_rsi64(NEW_PAGE)
        .store_rsi(0x5151)
        .mov_eax(MARK)
        .syscall()
        .pad_to(LOAD_NEW)
        .mov_rax64(NEW_PAGE)
        .load_rax()
        .int3()
}

fn regs_at(offset: usize, stack_slot: u64) -> CpuState {
    CpuState {
        regs: Registers::new_user(CODE + offset as u64, DATA + PAGE - stack_slot * 256),
    }
}

fn ptrace_aspace(aspace: &dyn AddressSpace) -> &PtraceAddressSpace {
    aspace
        .as_any()
        .downcast_ref()
        .expect("ptrace address space")
}

fn tasks(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn alive(pid: i32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}

#[test]
fn two_threads_run_concurrently_in_one_address_space() {
    let mut f = Fixture::new(&code());
    let pid = f.stub_pid();
    // A stops at its first getpid: [DATA+8] is still 0.
    assert_eq!(f.switch(), Event::Syscall);
    assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
    assert_eq!(f.state.regs.rdi, 0);
    let mut ctx = f.aspace.new_thread().unwrap();
    assert_eq!(tasks(pid).len(), 2, "the new stub thread exists");

    let aspace = f.aspace.clone();
    let (b_tid, b_pid_seen) = std::thread::scope(|s| {
        let b = s.spawn(move || {
            // The first switch adopts the new thread for this host thread.
            let mut st = regs_at(B_CODE, 1);
            assert_eq!(
                ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                Event::Syscall
            );
            assert_eq!(st.regs.syscall_nr(), SYS_GETPID);
            // B sees A's store.
            assert_eq!(st.regs.rdi, 0xa0a);
            // The parked pause was not restarted: B is right after its syscall.
            assert_eq!(st.regs.rip, CODE + B_CODE as u64 + 10 + 2 + 2 + 5 + 2);
            st.regs.set_return(4242);
            assert_eq!(
                ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                Event::Syscall
            );
            assert_eq!(st.regs.syscall_nr(), MARK as u64);
            let tids = ptrace_aspace(aspace.as_ref()).thread_tids();
            aspace.exit_thread().unwrap();
            // After exit_thread the caller has no thread any more.
            assert!(matches!(
                ctx.switch(aspace.as_ref(), &mut st),
                Err(PlatformError::WrongThread { .. })
            ));
            (tids[1], st.regs.rdi)
        });
        // A keeps running its loop meanwhile until it sees B's store.
        let mut seen = false;
        for _ in 0..1_000_000 {
            f.state.regs.set_return(1);
            assert_eq!(f.switch(), Event::Syscall);
            assert_eq!(f.state.regs.syscall_nr(), SYS_GETPID);
            if f.state.regs.rdi == 0xb0b {
                seen = true;
                break;
            }
        }
        assert!(seen, "A never saw B's store");
        b.join().unwrap()
    });
    assert_eq!(b_pid_seen, 0xa0a);
    assert_ne!(b_tid, pid);
    assert_eq!(read_at(&f.mem, DATA_OFF + 8, 4), 0xb0bu32.to_le_bytes());
    // B's stub thread is gone, the stub and A live on.
    assert_eq!(tasks(pid), vec![pid]);
    for _ in 0..10 {
        assert_eq!(f.switch(), Event::Syscall);
        assert_eq!(f.state.regs.rdi, 0xb0b);
    }
    f.aspace.map(NEW_PAGE, PAGE, NEW_OFF, Prot::READ).unwrap();
}

#[test]
fn map_from_a_second_thread_while_the_first_spins() {
    let mut f = Fixture::new(&code());
    let pid = f.stub_pid();
    assert_eq!(f.switch(), Event::Syscall);
    let mut ctx = f.aspace.new_thread().unwrap();
    let a_interrupter = f.ctx.interrupter();
    let aspace = f.aspace.clone();
    std::thread::scope(|s| {
        let b = s.spawn(move || {
            // Before its context's first request, this host thread has no
            // thread in the address space.
            assert!(matches!(
                aspace.map(NEW_PAGE, PAGE, NEW_OFF, Prot::READ_WRITE),
                Err(PlatformError::WrongThread { .. })
            ));
            // The first request (here reading the FP state) adopts it.
            ctx.fp_state(aspace.as_ref()).unwrap();
            // Let A get into its loop.
            std::thread::sleep(Duration::from_millis(50));
            aspace
                .map(NEW_PAGE, PAGE, NEW_OFF, Prot::READ_WRITE)
                .unwrap();
            let mut st = regs_at(STORE_NEW, 1);
            assert_eq!(
                ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                Event::Syscall
            );
            assert_eq!(st.regs.syscall_nr(), MARK as u64);
            aspace.protect(NEW_PAGE, PAGE, Prot::READ).unwrap();
            aspace.unmap(NEW_PAGE, PAGE).unwrap();
            a_interrupter.interrupt();
            aspace.exit_thread().unwrap();
        });
        f.state.regs.rip = CODE + SPIN as u64;
        assert_eq!(f.switch(), Event::Interrupted);
        b.join().unwrap();
    });
    assert_eq!(f.state.regs.rip, CODE + SPIN as u64);
    assert_eq!(read_at(&f.mem, NEW_OFF, 4), 0x5151u32.to_le_bytes());
    // A sees the unmap.
    f.state.regs.rip = CODE + LOAD_NEW as u64;
    assert!(matches!(
        f.switch(),
        Event::Fault {
            signo: libc::SIGSEGV,
            addr: NEW_PAGE,
            ..
        }
    ));
    assert_eq!(tasks(pid), vec![pid]);
}

#[test]
fn second_context_is_interruptible() {
    let mut f = Fixture::new(&code());
    assert_eq!(f.switch(), Event::Syscall);
    let mut ctx = f.aspace.new_thread().unwrap();
    let aspace = f.aspace.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let b = s.spawn(move || {
            tx.send(ctx.interrupter()).unwrap();
            let mut st = regs_at(SPIN, 1);
            let e = ctx.switch(aspace.as_ref(), &mut st).unwrap();
            assert_eq!(st.regs.rip, CODE + SPIN as u64);
            // And again, while A runs too.
            let e2 = ctx.switch(aspace.as_ref(), &mut st).unwrap();
            aspace.exit_thread().unwrap();
            (e, e2)
        });
        let interrupter = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        interrupter.interrupt();
        std::thread::sleep(Duration::from_millis(30));
        interrupter.interrupt();
        // A still runs syscalls undisturbed.
        for _ in 0..100 {
            assert_eq!(f.switch(), Event::Syscall);
        }
        let (e, e2) = b.join().unwrap();
        assert_eq!(e, Event::Interrupted);
        assert_eq!(e2, Event::Interrupted);
    });
}

#[test]
fn many_threads_each_on_its_own_host_thread() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 200;
    let mut f = Fixture::new(&code());
    let pid = f.stub_pid();
    assert_eq!(f.switch(), Event::Syscall);
    let contexts: Vec<_> = (0..THREADS)
        .map(|_| f.aspace.new_thread().unwrap())
        .collect();
    assert_eq!(tasks(pid).len(), THREADS + 1);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, mut ctx) in contexts.into_iter().enumerate() {
            let aspace = f.aspace.clone();
            handles.push(s.spawn(move || {
                let mut st = regs_at(GETPID_LOOP, i as u64 + 1);
                st.regs.rbx = i as u64;
                // The first switch adopts the thread.
                assert_eq!(
                    ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                    Event::Syscall
                );
                // Concurrent requests from several threads: a page each,
                // and a further thread each, run by a nested host thread.
                let page = NEW_PAGE + (i as u64 + 1) * PAGE;
                aspace
                    .map(
                        page,
                        PAGE,
                        NEW_OFF + (i as u64 + 1) * PAGE,
                        Prot::READ_WRITE,
                    )
                    .unwrap();
                let mut nested = aspace.new_thread().unwrap();
                let inner = aspace.clone();
                let grandchild = std::thread::spawn(move || {
                    let ctx = &mut nested;
                    let mut st = regs_at(GETPID_LOOP, 0);
                    for _ in 0..ROUNDS / 4 {
                        assert_eq!(ctx.switch(inner.as_ref(), &mut st).unwrap(), Event::Syscall);
                        assert_eq!(st.regs.syscall_nr(), SYS_GETPID);
                    }
                    inner.exit_thread().unwrap();
                });
                for n in 0..ROUNDS {
                    st.regs.set_return(n as u64);
                    st.regs.r12 = n as u64;
                    assert_eq!(
                        ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                        Event::Syscall
                    );
                    assert_eq!(st.regs.syscall_nr(), SYS_GETPID);
                    assert_eq!(st.regs.rbx, i as u64, "registers stay per thread");
                    assert_eq!(st.regs.r12, n as u64);
                }
                grandchild.join().unwrap();
                aspace.unmap(page, PAGE).unwrap();
                aspace.exit_thread().unwrap();
            }));
        }
        // The creator keeps running too.
        for _ in 0..ROUNDS {
            assert_eq!(f.switch(), Event::Syscall);
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(tasks(pid), vec![pid], "stray stub threads");
    assert_eq!(ptrace_aspace(f.aspace.as_ref()).thread_tids(), vec![pid]);
    assert_eq!(f.switch(), Event::Syscall);
    drop(f.aspace);
    assert!(!alive(pid));
}

/// A context from a platform of its own (contexts do not depend on the
/// platform instance).
fn platform_context() -> Box<dyn platform::Context> {
    Box::new(platform::ptrace::PtraceContext::new())
}

#[test]
fn creator_thread_may_exit_first() {
    let mem = memfd(16 * PAGE);
    write_at(&mem, CODE_OFF, &code().0);
    let platform = PtracePlatform::new(mem.as_fd()).unwrap();
    // The creator (stub leader's tracer and the stub's forking thread) runs a
    // little, makes a thread, exits its own and ends.
    let (aspace, mut ctx) = std::thread::scope(|s| {
        s.spawn(|| {
            let aspace: Arc<dyn AddressSpace> = platform.new_address_space().unwrap();
            aspace.map(CODE, PAGE, CODE_OFF, Prot::READ_EXEC).unwrap();
            aspace.map(DATA, PAGE, DATA_OFF, Prot::READ_WRITE).unwrap();
            let mut ctx = platform_context();
            let mut st = regs_at(A_LOOP, 0);
            assert_eq!(
                ctx.switch(aspace.as_ref(), &mut st).unwrap(),
                Event::Syscall
            );
            let new = aspace.new_thread().unwrap();
            aspace.exit_thread().unwrap();
            (aspace, new)
        })
        .join()
        .unwrap()
    });
    let pid = ptrace_aspace(aspace.as_ref()).stub_pid();
    // Give PR_SET_PDEATHSIG / PTRACE_O_EXITKILL a chance to (wrongly) act.
    std::thread::sleep(Duration::from_millis(50));
    assert!(alive(pid));
    let mut st = regs_at(B_CODE, 1);
    assert_eq!(
        ctx.switch(aspace.as_ref(), &mut st).unwrap(),
        Event::Syscall
    );
    assert_eq!(st.regs.rdi, 0xa0a);
    assert_eq!(
        ctx.switch(aspace.as_ref(), &mut st).unwrap(),
        Event::Syscall
    );
    assert_eq!(st.regs.syscall_nr(), MARK as u64);
    aspace
        .map(NEW_PAGE, PAGE, NEW_OFF, Prot::READ_WRITE)
        .unwrap();
    let never_used = aspace.new_thread().unwrap();
    drop(never_used); // its parked thread is killed with the stub
    assert_eq!(read_at(&mem, DATA_OFF + 8, 4), 0xb0bu32.to_le_bytes());
    drop(aspace);
    assert!(!alive(pid), "stub survived its address space");
}

#[test]
fn new_thread_contexts_are_refused_where_they_do_not_belong() {
    let mut f = Fixture::new(&code());
    assert_eq!(f.switch(), Event::Syscall);
    let g = Fixture::new(&code());
    let mut st = regs_at(GETPID_LOOP, 1);
    // Used with another address space.
    let mut ctx = f.aspace.new_thread().unwrap();
    assert!(matches!(
        ctx.switch(g.aspace.as_ref(), &mut st),
        Err(PlatformError::Thread(_))
    ));
    // By a host thread that already has a stub thread here.
    let mut ctx = f.aspace.new_thread().unwrap();
    assert!(matches!(
        ctx.set_fp_state(f.aspace.as_ref(), &FpState::default()),
        Err(PlatformError::Thread(_))
    ));
    // A thread with no stub thread here cannot make one.
    let aspace = f.aspace.clone();
    let r = std::thread::spawn(move || aspace.new_thread().map(|_| ()))
        .join()
        .unwrap();
    assert!(matches!(r, Err(PlatformError::WrongThread { .. })), "{r:?}");
    assert_eq!(f.switch(), Event::Syscall);
}
