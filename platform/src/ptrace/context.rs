//! Contexts: running application code in a stub thread until the next event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::unistd::Pid;

use super::address_space::PtraceAddressSpace;
use super::regs::{get_fp, get_regs, initial_fp, padded, set_fp, set_regs, xsave_size};
use super::stub::{wait_stop, FpOwner, Stop, StubThread};
use crate::{Access, AddressSpace, Context, CpuState, Event, FpState, Interrupter, PlatformError};

/// The signal [`PtraceInterrupter`] sends to a running stub thread. SIGSTOP
/// cannot be blocked or handled, so it always produces a signal-delivery-stop.
pub const INTERRUPT_SIGNAL: i32 = libc::SIGSTOP;

/// `WSTOPSIG` of a syscall stop with `PTRACE_O_TRACESYSGOOD`.
const SYSCALL_STOP: i32 = libc::SIGTRAP | 0x80;

static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A ptrace context. Its FP state lives in the stub thread it last ran in; if
/// another context runs in that thread meanwhile, the state is saved into this
/// context and restored when it returns. A context entering an address space
/// for the first time starts with the initial FP state (or the one given to
/// [`Context::set_fp_state`]): the state does not follow a context into
/// another address space by itself (execve resets it; fork copies it with
/// `fp_state`/`set_fp_state`).
///
/// A context from [`AddressSpace::new_thread`] carries a parked stub thread
/// (stub `pid`, thread `tid`) that no host thread traces yet: the first
/// request on the context (`switch`, `fp_state`, `set_fp_state`) adopts it
/// for the calling host thread, so the Sentry never sees the hand-over.
pub struct PtraceContext {
    id: u64,
    /// This context's FP state while it is not loaded in a stub thread.
    fp: Arc<Mutex<Option<FpState>>>,
    interrupter: Arc<PtraceInterrupter>,
    /// `(pid, tid)` of the new stub thread this context must adopt first.
    unadopted: Option<(i32, i32)>,
}

/// Stops a running [`PtraceContext`] from any thread, by sending
/// [`INTERRUPT_SIGNAL`] to the stub thread it runs in.
#[derive(Debug, Default)]
pub struct PtraceInterrupter {
    /// `tgid << 32 | tid` of the stub thread while a switch runs, else 0.
    running: AtomicU64,
    /// An interrupt was requested and not yet reported.
    pending: AtomicBool,
}

impl Interrupter for PtraceInterrupter {
    fn interrupt(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let running = self.running.load(Ordering::SeqCst);
        if running != 0 {
            let (tgid, tid) = ((running >> 32) as i32, running as u32 as i32);
            // SAFETY: tgkill(2) with plain integers. If the stub thread has
            // just stopped, the signal stays pending and is discarded by the
            // next switch (`pending` was already consumed).
            unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, INTERRUPT_SIGNAL) };
        }
    }
}

impl Default for PtraceContext {
    fn default() -> Self {
        Self::new()
    }
}

impl PtraceContext {
    pub fn new() -> Self {
        PtraceContext {
            id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
            fp: Arc::new(Mutex::new(None)),
            interrupter: Arc::new(PtraceInterrupter::default()),
            unadopted: None,
        }
    }

    /// The context of the new stub thread `tid` of stub `pid`, adopted on
    /// first use.
    pub(crate) fn for_new_thread(pid: i32, tid: i32) -> Self {
        PtraceContext {
            unadopted: Some((pid, tid)),
            ..Self::new()
        }
    }

    /// Adopts this context's new stub thread for the calling host thread, on
    /// the first request. Tried once: a failed adoption is not retried (the
    /// thread may be half seized), and the thread is reaped with its address
    /// space.
    fn adopt_if_new(&mut self, aspace: &PtraceAddressSpace) -> Result<(), PlatformError> {
        match self.unadopted.take() {
            Some((pid, tid)) => aspace.adopt_thread(pid, tid),
            None => Ok(()),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<FpState>> {
        self.fp.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn owns(&self, thread: &StubThread) -> bool {
        thread.fp_owner.as_ref().is_some_and(|o| o.ctx == self.id)
    }

    /// Makes `thread` hold this context's FP state, saving the previous
    /// owner's.
    fn claim(&self, thread: &mut StubThread) -> Result<(), PlatformError> {
        if self.owns(thread) {
            return Ok(());
        }
        if let Some(prev) = thread.fp_owner.take() {
            if let Some(slot) = prev.slot.upgrade() {
                let fp = get_fp(thread.tid)?;
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(fp);
            }
        }
        let mine = self.slot().take();
        let fp = match mine {
            Some(fp) => fp,
            None => initial_fp(xsave_size(thread.tid)?),
        };
        set_fp(thread.tid, &fp)?;
        thread.fp_owner = Some(FpOwner {
            ctx: self.id,
            slot: Arc::downgrade(&self.fp),
        });
        // Another context's registers may be loaded.
        thread.regs = None;
        Ok(())
    }

    fn run(
        &self,
        pid: i32,
        thread: &mut StubThread,
        state: &mut CpuState,
    ) -> Result<Event, PlatformError> {
        let tid = thread.tid;
        if thread.regs != Some(state.regs) {
            thread.regs = None;
            set_regs(tid, &state.regs)?;
        }
        let mut trapped = None;
        let event = loop {
            if let Err(source) = nix::sys::ptrace::sysemu(Pid::from_raw(tid), None) {
                return Err(PlatformError::Host {
                    op: "PTRACE_SYSEMU",
                    source,
                });
            }
            match wait_stop(tid)? {
                Stop::Gone(how) => return Err(PlatformError::StubDied { pid, how }),
                Stop::Signal(SYSCALL_STOP) => break Event::Syscall,
                Stop::Signal(INTERRUPT_SIGNAL) => {
                    if self.interrupter.pending.swap(false, Ordering::SeqCst) {
                        break Event::Interrupted;
                    }
                    // A stale interrupt (its request was already reported) or
                    // someone else's SIGSTOP: suppressed.
                    tracing::trace!(pid, "stale stop signal suppressed");
                }
                Stop::Signal(
                    signo @ (libc::SIGSEGV
                    | libc::SIGBUS
                    | libc::SIGILL
                    | libc::SIGFPE
                    | libc::SIGTRAP),
                ) => {
                    let info =
                        nix::sys::ptrace::getsiginfo(Pid::from_raw(tid)).map_err(|source| {
                            PlatformError::Host {
                                op: "PTRACE_GETSIGINFO",
                                source,
                            }
                        })?;
                    if info.si_code <= 0 {
                        // Sent by kill/tgkill/sigqueue, not raised by the CPU.
                        tracing::trace!(pid, signo, "user-sent fault signal suppressed");
                        continue;
                    }
                    // SAFETY: for these signals raised by the kernel, si_addr
                    // is the member of the union the kernel filled in.
                    let addr = unsafe { info.si_addr() } as u64;
                    break Event::Fault {
                        signo,
                        code: info.si_code,
                        addr,
                        access: Access::Unknown,
                    };
                }
                Stop::Signal(libc::SIGSYS) => {
                    let info =
                        nix::sys::ptrace::getsiginfo(Pid::from_raw(tid)).map_err(|source| {
                            PlatformError::Host {
                                op: "PTRACE_GETSIGINFO",
                                source,
                            }
                        })?;
                    match trapped_syscall(&info) {
                        // The stub's filter trapped a syscall SYSEMU did not
                        // stop (a vsyscall): the kernel left rip where the
                        // application resumes; the Sentry runs it.
                        Some(nr) => {
                            trapped = Some(nr);
                            break Event::Syscall;
                        }
                        None => tracing::trace!(pid, "user-sent SIGSYS suppressed"),
                    }
                }
                // Any other signal (SIGCHLD, SIGWINCH, ... sent to the stub)
                // is never delivered.
                Stop::Signal(sig) => tracing::trace!(pid, sig, "signal suppressed"),
            }
        };
        let mut regs = get_regs(tid)?;
        if let Some(nr) = trapped {
            regs.orig_rax = nr;
        }
        state.regs = regs;
        thread.regs = Some(regs);
        let event = match event {
            // Executing from an address that faults is an exec access.
            Event::Fault {
                signo: libc::SIGSEGV,
                code,
                addr,
                ..
            } if addr == regs.rip => Event::Fault {
                signo: libc::SIGSEGV,
                code,
                addr,
                access: Access::Exec,
            },
            e => e,
        };
        tracing::trace!(
            pid,
            ?event,
            rip = format_args!("{:#x}", regs.rip),
            nr = regs.orig_rax as i64,
            "stub stopped"
        );
        Ok(event)
    }
}

/// The syscall number of a SIGSYS raised by a seccomp filter's
/// SECCOMP_RET_TRAP (si_code SYS_SECCOMP); None for one sent by a process.
fn trapped_syscall(info: &libc::siginfo_t) -> Option<u64> {
    const SYS_SECCOMP: i32 = 1;
    if info.si_signo != libc::SIGSYS || info.si_code != SYS_SECCOMP {
        return None;
    }
    // SAFETY: `info` is a whole siginfo_t (128 bytes); for a seccomp SIGSYS
    // the kernel fills the `_sigsys` member of its union: `_call_addr` at
    // byte 16, `_syscall` (an int) at byte 24. Reading 4 bytes at 24 stays
    // inside the struct, and any bit pattern is a valid i32.
    let nr = unsafe {
        (info as *const libc::siginfo_t)
            .cast::<u8>()
            .add(24)
            .cast::<i32>()
            .read_unaligned()
    };
    u64::try_from(nr).ok()
}

fn downcast(aspace: &dyn AddressSpace) -> Result<&PtraceAddressSpace, PlatformError> {
    aspace
        .as_any()
        .downcast_ref::<PtraceAddressSpace>()
        .ok_or(PlatformError::ForeignAddressSpace)
}

impl Context for PtraceContext {
    fn switch(
        &mut self,
        aspace: &dyn AddressSpace,
        state: &mut CpuState,
    ) -> Result<Event, PlatformError> {
        let aspace = downcast(aspace)?;
        self.adopt_if_new(aspace)?;
        let pid = aspace.stub_pid();
        aspace.with_thread(|thread| {
            self.claim(thread)?;
            let running = (pid as u32 as u64) << 32 | thread.tid as u32 as u64;
            self.interrupter.running.store(running, Ordering::SeqCst);
            if self.interrupter.pending.swap(false, Ordering::SeqCst) {
                self.interrupter.running.store(0, Ordering::SeqCst);
                return Ok(Event::Interrupted);
            }
            thread.bind_to_tracer_cpu();
            let r = self.run(pid, thread, state);
            self.interrupter.running.store(0, Ordering::SeqCst);
            r
        })
    }

    fn fp_state(&mut self, aspace: &dyn AddressSpace) -> Result<FpState, PlatformError> {
        let aspace = downcast(aspace)?;
        self.adopt_if_new(aspace)?;
        aspace.with_thread(|thread| {
            if self.owns(thread) {
                get_fp(thread.tid)
            } else {
                match self.slot().clone() {
                    Some(fp) => Ok(fp),
                    None => xsave_size(thread.tid).map(initial_fp),
                }
            }
        })
    }

    fn set_fp_state(
        &mut self,
        aspace: &dyn AddressSpace,
        fp: &FpState,
    ) -> Result<(), PlatformError> {
        let aspace = downcast(aspace)?;
        self.adopt_if_new(aspace)?;
        aspace.with_thread(|thread| {
            // Check the size now, not at the next switch.
            let size = xsave_size(thread.tid)?;
            padded(&*fp.loadable_in(size)?, size)?;
            if self.owns(thread) {
                set_fp(thread.tid, fp)
            } else {
                *self.slot() = Some(fp.clone());
                Ok(())
            }
        })
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }
}
