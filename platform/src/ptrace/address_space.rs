//! An address space: one stub process, one stub thread per application
//! thread.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::ptrace::Options;
use nix::unistd::Pid;

use super::context::PtraceContext;
use super::current_tid;
use super::inject::{gone_or, inject, inject_at, inject_exit};
use super::stub::{
    fork_stub, kill_and_reap_threads, wait_stop, Stop, StubThread, CLONE_OFFSET, CLONE_TRAP_OFFSET,
    SIGMASK_EMPTY_OFFSET, SIGMASK_FULL_OFFSET,
};
use crate::{AddressSpace, Context, Layout, PlatformError, Prot};

/// `WSTOPSIG | event << 8` of the stop `PTRACE_INTERRUPT` causes.
const INTERRUPT_STOP: i32 = libc::SIGTRAP | (libc::PTRACE_EVENT_STOP << 8);

/// The clone flags of a new stub thread: a plain thread of the stub.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// One application address space, backed by a stub process. See the
/// [module documentation](super) for the thread-affinity rules.
pub struct PtraceAddressSpace {
    layout: Layout,
    /// The memory file's fd number inside the stub.
    memory_fd: i32,
    /// The stub process (thread group) id, also its first thread's tid.
    pid: i32,
    /// The stub's traced threads, one per tracer thread. The list lock is
    /// only held to look a thread up or change the list; each thread's own
    /// lock is only ever taken by its tracer, and is held across its waits.
    threads: Mutex<Vec<Entry>>,
    /// A stub thread died: the address space is unusable.
    dead: AtomicBool,
    /// The thread group leader has been reaped: `pid` may be reused and must
    /// never be signalled or waited for again.
    leader_reaped: AtomicBool,
}

/// A listed stub thread. Looking a thread up never takes a thread's own lock
/// (held by its tracer across a whole switch).
struct Entry {
    /// The Sentry thread that traces it; only it may issue ptrace requests.
    tracer: i32,
    tid: i32,
    thread: Arc<Mutex<StubThread>>,
}

impl Entry {
    fn new(tracer: i32, tid: i32) -> Self {
        Entry {
            tracer,
            tid,
            thread: Arc::new(Mutex::new(StubThread::new(tid))),
        }
    }
}

impl std::fmt::Debug for PtraceAddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtraceAddressSpace")
            .field("pid", &self.pid)
            .field("dead", &self.dead)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PtraceAddressSpace {
    /// Forks a stub traced by the calling thread and cleans it: every fd but
    /// `memory_fd` closed, everything but the stub page unmapped.
    pub(crate) fn new(layout: Layout, memory_fd: i32) -> Result<Self, PlatformError> {
        // Built before the fork, so that the stub's copy has it too.
        let filter = super::seccomp::stub_filter(layout.stub_addr, layout.page_size)?;
        let pid = fork_stub()?;
        let tracer = current_tid();
        let aspace = PtraceAddressSpace {
            layout,
            memory_fd,
            pid,
            threads: Mutex::new(vec![Entry::new(tracer, pid)]),
            dead: AtomicBool::new(false),
            leader_reaped: AtomicBool::new(false),
        };
        aspace.with_thread(|t| {
            aspace.confine(t, filter.fprog_addr())?;
            aspace.clean(t)
        })?;
        tracing::debug!(pid, tracer, "stub process ready");
        Ok(aspace)
    }

    /// No new privileges, and the stub's seccomp filter (at `fprog` in the
    /// stub's copy of the Sentry's memory, so before `clean` unmaps it).
    fn confine(&self, t: &mut StubThread, fprog: u64) -> Result<(), PlatformError> {
        const SECCOMP_SET_MODE_FILTER: u64 = 1;
        self.inject(
            t,
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0],
        )?;
        self.inject(
            t,
            "seccomp(SECCOMP_SET_MODE_FILTER)",
            libc::SYS_seccomp,
            &[SECCOMP_SET_MODE_FILTER, 0, fprog],
        )?;
        Ok(())
    }

    fn clean(&self, t: &mut StubThread) -> Result<(), PlatformError> {
        self.disable_rseq(t)?;
        let fd = self.memory_fd as u64;
        if fd > 0 {
            self.inject(t, "close_range", libc::SYS_close_range, &[0, fd - 1, 0])?;
        }
        self.inject(
            t,
            "close_range",
            libc::SYS_close_range,
            &[fd + 1, u32::MAX as u64, 0],
        )?;
        let stub = self.layout.stub_addr;
        let stub_end = self.layout.stub_end();
        self.inject(t, "munmap", libc::SYS_munmap, &[0, stub])?;
        // Up to the end of the whole address space, not only the usable part
        // we probed: the forked Sentry may have mappings up there too.
        // (x86_64 refuses that page with EINVAL; arm64 does not.)
        let top = 1u64 << self.layout.va_bits;
        match self.inject(t, "munmap", libc::SYS_munmap, &[stub_end, top - stub_end]) {
            Err(PlatformError::Injected {
                errno: libc::EINVAL,
                ..
            }) => {
                let max = self.layout.max_user_addr;
                self.inject(t, "munmap", libc::SYS_munmap, &[stub_end, max - stub_end])?;
            }
            r => {
                r?;
            }
        }
        Ok(())
    }

    /// glibc registers an rseq area for every thread and fork keeps the
    /// registration; with the area unmapped, the kernel would SIGSEGV the stub
    /// the next time it is preempted. Unregister it (its parameters come from
    /// PTRACE_GET_RSEQ_CONFIGURATION, Linux >= 5.13).
    fn disable_rseq(&self, t: &mut StubThread) -> Result<(), PlatformError> {
        #[repr(C)]
        #[derive(Default)]
        struct RseqConfig {
            rseq_abi_pointer: u64,
            rseq_abi_size: u32,
            signature: u32,
            flags: u32,
            pad: u32,
        }
        const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
        const RSEQ_FLAG_UNREGISTER: u64 = 1;
        let mut config = RseqConfig::default();
        // SAFETY: the kernel writes at most `addr` (the size we pass) bytes
        // into `config`, a live, exclusively borrowed local.
        let r = unsafe {
            libc::ptrace(
                PTRACE_GET_RSEQ_CONFIGURATION,
                t.tid,
                std::mem::size_of::<RseqConfig>() as *mut libc::c_void,
                &mut config as *mut RseqConfig,
            )
        };
        if r < 0 {
            tracing::debug!(errno = %nix::errno::Errno::last(), "no rseq configuration (old kernel?)");
            return Ok(());
        }
        if config.rseq_abi_pointer == 0 {
            return Ok(());
        }
        self.inject(
            t,
            "rseq(RSEQ_FLAG_UNREGISTER)",
            libc::SYS_rseq,
            &[
                config.rseq_abi_pointer,
                config.rseq_abi_size as u64,
                RSEQ_FLAG_UNREGISTER,
                config.signature as u64,
            ],
        )?;
        Ok(())
    }

    /// The stub process's host pid.
    pub fn stub_pid(&self) -> i32 {
        self.pid
    }

    /// The layout this address space was created with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn check_alive(&self) -> Result<(), PlatformError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(PlatformError::StubDied {
                pid: self.pid,
                how: "died earlier".into(),
            });
        }
        Ok(())
    }

    /// The stub thread traced by the calling thread.
    fn my_thread(&self) -> Result<Arc<Mutex<StubThread>>, PlatformError> {
        self.check_alive()?;
        let caller = current_tid();
        let threads = lock(&self.threads);
        if let Some(e) = threads.iter().find(|e| e.tracer == caller) {
            return Ok(e.thread.clone());
        }
        Err(PlatformError::WrongThread {
            stub: self.pid,
            tracer: threads.first().map_or(0, |e| e.tracer),
            caller,
        })
    }

    /// Runs `f` on the stub thread traced by the calling thread; every
    /// ptrace operation goes through here. No lock but the thread's own is
    /// held while `f` runs (and waits).
    pub(crate) fn with_thread<T>(
        &self,
        f: impl FnOnce(&mut StubThread) -> Result<T, PlatformError>,
    ) -> Result<T, PlatformError> {
        let thread = self.my_thread()?;
        let mut thread = lock(&thread);
        let r = f(&mut thread);
        self.note(&mut thread, r)
    }

    /// Every result of a ptrace operation on `thread` passes through here: a
    /// request that failed with ESRCH on a stub that was killed becomes
    /// `StubDied`, and a dead stub is recorded so it is neither used nor
    /// signalled again.
    fn note<T>(
        &self,
        thread: &mut StubThread,
        r: Result<T, PlatformError>,
    ) -> Result<T, PlatformError> {
        let r = r.map_err(|e| gone_or(self.pid, thread.tid, e));
        if let Err(PlatformError::StubDied { .. }) = &r {
            // Every StubDied from a thread operation comes from a wait that
            // reaped the thread.
            thread.gone = true;
            if thread.tid == self.pid {
                self.leader_reaped.store(true, Ordering::SeqCst);
            }
            self.dead.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Injects a syscall through stub thread `t` (traced by the caller).
    fn inject(
        &self,
        t: &StubThread,
        name: &'static str,
        nr: libc::c_long,
        args: &[u64],
    ) -> Result<u64, PlatformError> {
        inject(self.pid, t.tid, self.layout.stub_addr, name, nr, args)
    }

    /// Injects a syscall through the stub thread the calling thread traces.
    fn syscall(
        &self,
        name: &'static str,
        nr: libc::c_long,
        args: &[u64],
    ) -> Result<u64, PlatformError> {
        self.with_thread(|t| self.inject(t, name, nr, args))
    }

    /// The host tids of the stub threads with a tracer (for tests and
    /// diagnostics).
    pub fn thread_tids(&self) -> Vec<i32> {
        lock(&self.threads).iter().map(|e| e.tid).collect()
    }

    /// Clones a new stub thread through `t`. It starts with every signal
    /// blocked (so nothing sent to the stub reaches it while it has no
    /// tracer) and parks in the clone entry's pause loop.
    fn clone_thread(&self, t: &StubThread) -> Result<i32, PlatformError> {
        let stub = self.layout.stub_addr;
        let set_mask = |offset: u64| {
            self.inject(
                t,
                "rt_sigprocmask",
                libc::SYS_rt_sigprocmask,
                &[libc::SIG_SETMASK as u64, stub + offset, 0, 8],
            )
        };
        set_mask(SIGMASK_FULL_OFFSET)?;
        let cloned = inject_at(
            self.pid,
            t.tid,
            stub + CLONE_OFFSET,
            stub + CLONE_TRAP_OFFSET,
            "clone",
            libc::SYS_clone,
            &[THREAD_FLAGS, 0, 0, 0, 0],
        );
        let restored = set_mask(SIGMASK_EMPTY_OFFSET);
        let tid = cloned?;
        restored?;
        Ok(tid as i32)
    }

    /// Seizes the parked stub thread `tid` for the calling thread and waits
    /// until it is in a ptrace stop.
    fn seize(&self, tid: i32) -> Result<(), PlatformError> {
        let options = Options::PTRACE_O_TRACESYSGOOD | Options::PTRACE_O_EXITKILL;
        nix::sys::ptrace::seize(Pid::from_raw(tid), options).map_err(|source| {
            PlatformError::Host {
                op: "PTRACE_SEIZE",
                source,
            }
        })?;
        nix::sys::ptrace::interrupt(Pid::from_raw(tid)).map_err(|source| PlatformError::Host {
            op: "PTRACE_INTERRUPT",
            source,
        })?;
        loop {
            match wait_stop(tid)? {
                Stop::Signal(INTERRUPT_STOP) => return Ok(()),
                Stop::Gone(how) => {
                    self.dead.store(true, Ordering::SeqCst);
                    return Err(PlatformError::StubDied { pid: self.pid, how });
                }
                // Only an unblockable signal can come first: suppress it; the
                // interrupt stop follows.
                Stop::Signal(sig) => {
                    tracing::trace!(pid = self.pid, tid, sig, "signal suppressed at adoption");
                    nix::sys::ptrace::cont(Pid::from_raw(tid), None).map_err(|source| {
                        PlatformError::Host {
                            op: "PTRACE_CONT(adopt)",
                            source,
                        }
                    })?;
                }
            }
        }
    }

    /// Makes the calling thread the tracer of the parked stub thread `tid`
    /// (from [`AddressSpace::new_thread`]) of stub `pid`: `PTRACE_SEIZE`,
    /// then its signals unblocked. The first use of the new thread's
    /// context does this.
    pub(crate) fn adopt_thread(&self, pid: i32, tid: i32) -> Result<(), PlatformError> {
        if pid != self.pid || tid <= 0 {
            return Err(PlatformError::Thread(
                "the context's new thread belongs to another address space",
            ));
        }
        self.check_alive()?;
        let caller = current_tid();
        if lock(&self.threads).iter().any(|e| e.tracer == caller) {
            return Err(PlatformError::Thread(
                "the calling thread already has a thread in this address space",
            ));
        }
        self.seize(tid)?;
        lock(&self.threads).push(Entry::new(caller, tid));
        // Let signals reach (and stop) the thread as they do its siblings.
        self.syscall(
            "rt_sigprocmask",
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as u64,
                self.layout.stub_addr + SIGMASK_EMPTY_OFFSET,
                0,
                8,
            ],
        )?;
        tracing::debug!(pid, tid, tracer = caller, "stub thread adopted");
        Ok(())
    }

    /// `[addr, addr + len)` minus the stub page, as up to two ranges.
    fn around_stub(&self, addr: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
        let (stub, stub_end, end) = (self.layout.stub_addr, self.layout.stub_end(), addr + len);
        let below = (addr, end.min(stub));
        let above = (addr.max(stub_end), end);
        [below, above]
            .into_iter()
            .filter(|(a, e)| a < e)
            .map(|(a, e)| (a, e - a))
    }
}

impl PtraceAddressSpace {
    /// An unmap or protect the host refused (ENOMEM at the host's own
    /// vm.max_map_count, splitting a mapping): the stub would keep pages
    /// the Sentry may give to another address space, or write access to
    /// pages it shares copy-on-write, so it must not run on: it is killed.
    fn must_not_fail(&self, e: PlatformError) -> PlatformError {
        if matches!(e, PlatformError::Injected { .. }) {
            tracing::warn!(
                pid = self.pid,
                "killing a ptrace stub the host refused a change to: {e}"
            );
            self.dead.store(true, Ordering::SeqCst);
            // SAFETY: kill(2) of our traced child, not reaped yet (the
            // address space is alive): its pid cannot be reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        e
    }
}

impl AddressSpace for PtraceAddressSpace {
    fn map(&self, addr: u64, len: u64, offset: u64, prot: Prot) -> Result<(), PlatformError> {
        self.layout.check_range(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        if !self.layout.is_app_range(addr, len) {
            return Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "overlaps the stub page",
            });
        }
        if offset & (self.layout.page_size - 1) != 0
            || !matches!(offset.checked_add(len), Some(e) if e <= i64::MAX as u64)
        {
            return Err(PlatformError::InvalidRange {
                addr: offset,
                len,
                why: "bad memory file offset",
            });
        }
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let args = [
            addr,
            len,
            prot.to_bits() as u64,
            flags,
            self.memory_fd as u64,
            offset,
        ];
        let got = self.syscall("mmap", libc::SYS_mmap, &args)?;
        if got != addr {
            return Err(PlatformError::UnexpectedStop {
                pid: self.pid,
                what: format!("injected mmap at {addr:#x} mapped at {got:#x}"),
            });
        }
        Ok(())
    }

    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.layout.check_range(addr, len)?;
        let ranges: Vec<_> = self.around_stub(addr, len).collect();
        for (a, l) in ranges {
            self.syscall("munmap", libc::SYS_munmap, &[a, l])
                .map_err(|e| self.must_not_fail(e))?;
        }
        Ok(())
    }

    fn protect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.layout.check_range(addr, len)?;
        let ranges: Vec<_> = self.around_stub(addr, len).collect();
        for (a, l) in ranges {
            self.syscall(
                "mprotect",
                libc::SYS_mprotect,
                &[a, l, prot.to_bits() as u64],
            )
            .map_err(|e| self.must_not_fail(e))?;
        }
        Ok(())
    }

    fn new_thread(&self) -> Result<Box<dyn Context>, PlatformError> {
        let tid = self.with_thread(|t| self.clone_thread(t))?;
        tracing::debug!(pid = self.pid, tid, "stub thread created");
        Ok(Box::new(PtraceContext::for_new_thread(self.pid, tid)))
    }

    fn exit_thread(&self) -> Result<(), PlatformError> {
        let thread = self.my_thread()?;
        let mut t = lock(&thread);
        let r = if t.tid != self.pid {
            inject_exit(self.pid, t.tid, self.layout.stub_addr, true)
        } else {
            // The leader: its exit is not reported while other threads live,
            // so it is not reaped here (but when the address space is
            // dropped). Neither the death of the thread that forked it
            // (PR_SET_PDEATHSIG) nor of its tracer (PTRACE_O_EXITKILL) may
            // take the other threads down with it any more.
            (|| {
                self.inject(
                    &t,
                    "prctl",
                    libc::SYS_prctl,
                    &[libc::PR_SET_PDEATHSIG as u64, 0],
                )?;
                nix::sys::ptrace::setoptions(Pid::from_raw(t.tid), Options::PTRACE_O_TRACESYSGOOD)
                    .map_err(|source| PlatformError::Host {
                        op: "PTRACE_SETOPTIONS",
                        source,
                    })?;
                inject_exit(self.pid, t.tid, self.layout.stub_addr, false)
            })()
        };
        t.release_tracer();
        let r = self.note(&mut t, r);
        if r.is_ok() && t.tid != self.pid {
            t.gone = true;
        }
        // A thread that failed to exit stays listed (and traced), so that
        // dropping the address space reaps it.
        let (tid, remove) = (t.tid, r.is_ok() || t.gone);
        drop(t);
        if remove {
            lock(&self.threads).retain(|e| !Arc::ptr_eq(&e.thread, &thread));
            tracing::debug!(pid = self.pid, tid, "stub thread exited");
        }
        r
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for PtraceAddressSpace {
    fn drop(&mut self) {
        if self.leader_reaped.load(Ordering::SeqCst) {
            return;
        }
        let others: Vec<i32> = lock(&self.threads)
            .iter()
            .filter(|e| e.tid != self.pid && !lock(&e.thread).gone)
            .map(|e| e.tid)
            .collect();
        kill_and_reap_threads(self.pid, &others);
        self.leader_reaped.store(true, Ordering::SeqCst);
        self.dead.store(true, Ordering::SeqCst);
    }
}
