//! Contexts: running application code in a stub thread until the next event.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::address_space::{lock, FpOwner, Seen, Slot, SystrapAddressSpace};
use super::shared::*;
use super::stub::INTERRUPT_SIGNAL;
use crate::{Access, AddressSpace, Context, CpuState, Event, FpState, Interrupter, PlatformError};

static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A systrap context. Like a ptrace context, its FP state lives in the stub
/// thread it last ran in (in the thread's signal frame while the Sentry
/// holds it); another context taking that thread saves it here first.
pub struct SystrapContext {
    id: u64,
    fp: Arc<Mutex<Option<FpState>>>,
    interrupter: Arc<SystrapInterrupter>,
    /// The new thread this context adopts on first use: (stub pid, slot).
    unadopted: Option<(i32, Arc<Mutex<Slot>>)>,
}

/// Stops a running [`SystrapContext`] by sending [`INTERRUPT_SIGNAL`] to the
/// stub thread it runs in; the handler reports `Event::Interrupted`.
#[derive(Debug, Default)]
pub struct SystrapInterrupter {
    /// `pid << 32 | tid` of the stub thread while a switch runs, else 0.
    running: AtomicU64,
    pending: AtomicBool,
}

impl SystrapInterrupter {
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }
}

impl Interrupter for SystrapInterrupter {
    fn interrupt(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let running = self.running.load(Ordering::SeqCst);
        if running != 0 {
            let (pid, tid) = ((running >> 32) as i32, running as u32 as i32);
            // SAFETY: tgkill(2) with plain integers; a signal that arrives
            // after the switch ended is a stale interrupt the next switch
            // absorbs.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, INTERRUPT_SIGNAL) };
        }
    }
}

impl Default for SystrapContext {
    fn default() -> Self {
        Self::new()
    }
}

/// The FP state of a fresh thread: x87 control word 0x37f, MXCSR 0x1f80,
/// x87 and SSE present in XSTATE_BV, every other component initial.
fn initial_fp(size: usize) -> FpState {
    let mut xsave = vec![0u8; size.max(576)];
    xsave[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
    xsave[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    xsave[512..520].copy_from_slice(&3u64.to_le_bytes());
    FpState { xsave }
}

/// This CPU's XSAVE area size for the features the OS enabled (CPUID 0xD.0
/// EBX), what the kernel's signal frames and ptrace use.
pub(crate) fn xsave_size() -> usize {
    let leaf = std::arch::x86_64::__cpuid_count(0xd, 0);
    (leaf.ebx as usize).clamp(576, SL_FP_CAP as usize)
}

/// Refuses what PTRACE_SETREGS would refuse (so both platforms fail the
/// same way) and what would make the stub's own wrfsbase or rt_sigreturn
/// fault (which would kill the stub instead of failing the request):
/// selectors without user privilege, fs/gs base beyond user space.
fn check_regs(aspace: &SystrapAddressSpace, r: &crate::Registers) -> Result<(), PlatformError> {
    let top = aspace.layout().max_user_addr;
    let why = if r.cs & 3 != 3 || r.cs > 0xffff {
        Some(format!("cs {:#x} is not a user selector", r.cs))
    } else if r.ss & 3 != 3 || r.ss > 0xffff {
        Some(format!("ss {:#x} is not a user selector", r.ss))
    } else if r.fs_base > top || r.gs_base > top {
        Some(format!(
            "fs_base {:#x} / gs_base {:#x} beyond user space",
            r.fs_base, r.gs_base
        ))
    } else {
        None
    };
    match why {
        Some(what) => Err(PlatformError::Systrap {
            pid: aspace.stub_pid(),
            what: format!("refused registers: {what}"),
        }),
        None => Ok(()),
    }
}

fn downcast(aspace: &dyn AddressSpace) -> Result<&SystrapAddressSpace, PlatformError> {
    aspace
        .as_any()
        .downcast_ref::<SystrapAddressSpace>()
        .ok_or(PlatformError::ForeignAddressSpace)
}

impl SystrapContext {
    pub fn new() -> Self {
        SystrapContext {
            id: NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed),
            fp: Arc::new(Mutex::new(None)),
            interrupter: Arc::new(SystrapInterrupter::default()),
            unadopted: None,
        }
    }

    pub(crate) fn for_new_thread(pid: i32, slot: Arc<Mutex<Slot>>) -> Self {
        SystrapContext {
            unadopted: Some((pid, slot)),
            ..Self::new()
        }
    }

    fn adopt_if_new(&mut self, aspace: &SystrapAddressSpace) -> Result<(), PlatformError> {
        match self.unadopted.take() {
            Some((pid, slot)) => aspace.adopt(pid, slot),
            None => Ok(()),
        }
    }

    fn saved(&self) -> MutexGuard<'_, Option<FpState>> {
        lock(&self.fp)
    }

    fn owns(&self, slot: &Slot) -> bool {
        slot.fp_owner.as_ref().is_some_and(|o| o.ctx == self.id)
    }

    /// Makes `slot`'s thread hold this context's FP state, saving the
    /// previous owner's.
    fn claim(&self, aspace: &SystrapAddressSpace, slot: &mut Slot) -> Result<(), PlatformError> {
        if self.owns(slot) {
            return Ok(());
        }
        if let Some(prev) = slot.fp_owner.take() {
            if let Some(saved) = prev.slot.upgrade() {
                let fp = aspace.get_fp(slot)?;
                *lock(&saved) = Some(fp);
            }
        }
        let mine = self.saved().take();
        let fp = mine.unwrap_or_else(|| initial_fp(xsave_size()));
        // Loaded by the resume that follows (a switch claims right before
        // it runs), not by a hand-over of its own.
        aspace.stage_fp(slot, &fp)?;
        slot.fp_owner = Some(FpOwner {
            ctx: self.id,
            slot: Arc::downgrade(&self.fp),
        });
        Ok(())
    }

    fn run(
        &self,
        aspace: &SystrapAddressSpace,
        slot: &mut Slot,
        state: &mut CpuState,
    ) -> Result<Event, PlatformError> {
        let shm = aspace.shm();
        let i = slot.index;
        check_regs(aspace, &state.regs)?;
        // Counted before the queue runs: a request queued after this
        // point runs now, one queued before runs here (see `parked`).
        aspace.enter_app();
        // What was queued since the last switch runs before application
        // code.
        if let Err(e) = aspace.flush() {
            aspace.leave_app();
            return Err(e);
        }
        aspace.write_regs(slot, &state.regs);
        let event = loop {
            match aspace.resume(slot, &self.interrupter)? {
                Seen::Event => {}
                Seen::Dead => return Err(aspace.thread_died(slot.tid)),
            }
            // Each field once, into locals, then checked.
            let kind = shm.read_u32(slot_off(i, SL_KIND)) as i32;
            let code = shm.read_u32(slot_off(i, SL_CODE)) as i32;
            let addr = shm.read_u64(slot_off(i, SL_ADDR));
            match kind {
                libc::SIGSYS if code > 0 => break Event::Syscall,
                INTERRUPT_SIGNAL => {
                    if self.interrupter.pending.swap(false, Ordering::SeqCst) {
                        break Event::Interrupted;
                    }
                    tracing::trace!(pid = aspace.stub_pid(), "stale interrupt absorbed");
                }
                libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
                    if code > 0 =>
                {
                    break Event::Fault {
                        signo: kind,
                        code,
                        addr,
                        access: Access::Unknown,
                    };
                }
                // Sent by kill(2) and the like, not raised by the CPU or
                // seccomp: never delivered.
                libc::SIGSYS
                | libc::SIGSEGV
                | libc::SIGBUS
                | libc::SIGILL
                | libc::SIGFPE
                | libc::SIGTRAP => {
                    tracing::trace!(pid = aspace.stub_pid(), kind, "user-sent signal suppressed");
                }
                other => {
                    return Err(aspace.corrupt(format!(
                        "thread {}: event of signal {other} in its context",
                        slot.tid
                    )));
                }
            }
            // Resume with the registers as the handler saved them.
        };
        let regs = aspace.read_regs(slot);
        state.regs = regs;
        let event = match event {
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
            pid = aspace.stub_pid(),
            ?event,
            rip = format_args!("{:#x}", regs.rip),
            nr = regs.orig_rax as i64,
            "systrap stop"
        );
        // The thread is parked in its handler again. (After an error it
        // may still run: it stays counted.)
        aspace.leave_app();
        Ok(event)
    }
}

impl Context for SystrapContext {
    fn switch(
        &mut self,
        aspace: &dyn AddressSpace,
        state: &mut CpuState,
    ) -> Result<Event, PlatformError> {
        let aspace = downcast(aspace)?;
        self.adopt_if_new(aspace)?;
        let slot = aspace.my_slot()?;
        let mut slot = lock(&slot);
        self.claim(aspace, &mut slot)?;
        let running = (aspace.stub_pid() as u32 as u64) << 32 | slot.tid as u32 as u64;
        self.interrupter.running.store(running, Ordering::SeqCst);
        if self.interrupter.pending.swap(false, Ordering::SeqCst) {
            self.interrupter.running.store(0, Ordering::SeqCst);
            return Ok(Event::Interrupted);
        }
        let r = self.run(aspace, &mut slot, state);
        self.interrupter.running.store(0, Ordering::SeqCst);
        r
    }

    fn fp_state(&mut self, aspace: &dyn AddressSpace) -> Result<FpState, PlatformError> {
        let aspace = downcast(aspace)?;
        self.adopt_if_new(aspace)?;
        let slot = aspace.my_slot()?;
        let mut slot = lock(&slot);
        if self.owns(&slot) {
            aspace.get_fp(&mut slot)
        } else {
            Ok(self
                .saved()
                .clone()
                .unwrap_or_else(|| initial_fp(xsave_size())))
        }
    }

    fn set_fp_state(
        &mut self,
        aspace: &dyn AddressSpace,
        fp: &FpState,
    ) -> Result<(), PlatformError> {
        let aspace = downcast(aspace)?;
        self.adopt_if_new(aspace)?;
        let slot = aspace.my_slot()?;
        let mut slot = lock(&slot);
        let fp = &*fp.loadable_in(xsave_size())?;
        aspace.check_fp(fp)?;
        if fp.xsave.len() > xsave_size().max(576) {
            return Err(PlatformError::FpStateSize {
                got: fp.xsave.len(),
                want: xsave_size(),
            });
        }
        if self.owns(&slot) {
            aspace.stage_fp(&mut slot, fp)
        } else {
            *self.saved() = Some(fp.clone());
            Ok(())
        }
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }
}
