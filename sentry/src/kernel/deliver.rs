//! Signal generation and delivery to a task (gVisor's task_signals.go):
//! signals are queued, then delivered when the task is about to return to
//! application code, either by their default action or by building a
//! signal frame and entering the handler.

use super::signal::{
    default_action, DefaultAction, SigInfo, SigSet, SA_NODEFER, SA_ONSTACK, SA_RESETHAND,
};
use super::task::Task;
use crate::arch::signal_frame::{
    encode_fpstate, encode_ucontext, handler_entry, FrameLayout, RED_ZONE,
};
use crate::arch::UserRegs;

/// sigaltstack's SS_ONSTACK / SS_DISABLE.
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;

impl Task {
    /// Queues a signal. One its thread would ignore is discarded at once,
    /// as Linux does (`ignored_at_send`); a standard signal already pending
    /// is not queued twice.
    pub fn send_signal(&mut self, info: SigInfo) {
        if self.handlers().get(info.signo).is_err() {
            return;
        }
        let blocked = self.signal_mask().contains(info.signo);
        if super::signal::ignored_at_send(&self.handlers(), info.signo, blocked) {
            return;
        }
        super::signal::enqueue(&mut self.pending(), info);
    }

    /// Whether a pending signal is not blocked and not ignored: an
    /// interrupted blocking syscall then returns EINTR (its handler runs,
    /// or the process ends) instead of restarting. An ignored one (the
    /// default SIGCHLD, say) never interrupts a call.
    pub fn has_deliverable_signal(&self) -> bool {
        let mask = self.signal_mask();
        let handlers = self.handlers().clone();
        self.any_pending(|p| {
            let unblocked = !mask.contains(p.signo) || p.signo == libc::SIGKILL;
            let ignored_by_default = matches!(
                default_action(p.signo),
                DefaultAction::Ignore | DefaultAction::Continue
            );
            let acts = handlers
                .get(p.signo)
                .is_ok_and(|a| !a.is_ignored() && (!a.is_default() || !ignored_by_default));
            unblocked && (acts || p.signo == libc::SIGKILL)
        })
    }

    /// Whether SIGKILL is pending: it wakes even a stopped process.
    pub fn sigkill_pending(&self) -> bool {
        self.any_pending(|p| p.signo == libc::SIGKILL)
    }

    /// The flags of the handler the next delivery will run, if a pending
    /// unblocked signal has one (an interrupted syscall then returns EINTR
    /// or, with SA_RESTART, restarts); None when no handler will run (the
    /// syscall restarts).
    pub fn handler_to_run(&self) -> Option<u64> {
        let mask = self.signal_mask();
        // The pending list and the dispositions are never locked together.
        let deliverable: Vec<i32> = self
            .all_pending()
            .iter()
            .filter(|p| !mask.contains(p.signo) || p.signo == libc::SIGKILL)
            .map(|p| p.signo)
            .collect();
        let handlers = self.handlers();
        deliverable
            .into_iter()
            .filter_map(|signo| handlers.get(signo).ok())
            .find(|a| !a.is_default() && !a.is_ignored())
            .map(|a| a.flags)
    }

    /// A fault of the instruction at rip: if the program blocks or ignores
    /// the signal it cannot make progress, so (like Linux's force_sig) the
    /// disposition is reset to the default and the signal unblocked.
    pub fn force_fault(&mut self, signo: i32, code: i32, addr: u64) {
        let blocked = self.signal_mask().contains(signo);
        let ignored = self
            .handlers()
            .get(signo)
            .map(|a| a.is_ignored())
            .unwrap_or(true);
        if blocked || ignored {
            let _ = self.handlers().set(signo, Default::default());
            self.set_signal_mask(SigSet(self.signal_mask().0 & !SigSet::bit(signo)));
        }
        self.send_signal(SigInfo {
            signo,
            code,
            addr,
            pid: 0,
            uid: 0,
        });
    }

    /// Blocks `mask` for the rest of this syscall (rt_sigsuspend, ppoll,
    /// pselect6, epoll_pwait): the current mask comes back when the task
    /// returns to the application, or from the frame of the handler that
    /// the wait was interrupted for, after it returns.
    pub fn set_temporary_mask(&mut self, mask: SigSet) {
        if self.saved_mask.is_none() {
            self.saved_mask = Some(self.signal_mask());
        }
        self.set_signal_mask(mask);
    }

    /// Ends a temporary mask now (the wait it was for did not block).
    pub fn restore_temporary_mask(&mut self) {
        if let Some(m) = self.saved_mask.take() {
            self.set_signal_mask(m);
        }
    }

    /// Delivers the first pending unblocked signal, if any: its default
    /// action, or its handler. Called before the task returns to the
    /// application; a temporary mask ends here.
    pub fn deliver_signals(&mut self) {
        if self.deliver_signals_masked() {
            self.restore_temporary_mask();
        }
    }

    /// False when the process is stopped first: the signals wait, and a
    /// temporary mask with them, until SIGCONT.
    fn deliver_signals_masked(&mut self) -> bool {
        while self.exit.is_none() {
            // Linux's get_signal takes a group stop before it dequeues: a
            // stopped process leaves every signal but SIGKILL pending, so
            // a SIGTERM sent right after the parent saw the stop waits
            // for SIGCONT as it does when the task is already asleep.
            if self.tg.is_job_stopped() && !self.sigkill_pending() {
                return false;
            }
            let mask = self.signal_mask();
            let Some(mut info) = self.take_pending(|p| {
                !mask.contains(p.signo) || p.signo == libc::SIGKILL || p.signo == libc::SIGSTOP
            }) else {
                return true;
            };
            if info.code == super::signal::SI_TIMER {
                // A POSIX timer's signal: its overrun count is settled now.
                info.uid = self.tg.itimers().posix_delivered(info.pid, info.uid);
            }
            let Ok(action) = self.handlers().get(info.signo) else {
                continue;
            };
            if action.is_ignored() {
                continue;
            }
            if action.is_default() {
                match default_action(info.signo) {
                    DefaultAction::Terminate | DefaultAction::CoreDump | DefaultAction::Stop => {
                        self.exit_by_signal(info.signo)
                    }
                    // SIGCONT acted when it was sent.
                    DefaultAction::Ignore | DefaultAction::Continue => {}
                }
                continue;
            }
            if let Err(what) = self.enter_handler(&info) {
                // The frame cannot be written: Linux kills with SIGSEGV.
                tracing::debug!(signo = info.signo, what, "cannot deliver signal: SIGSEGV");
                self.exit_by_signal(libc::SIGSEGV);
            }
            // One handler frame per return to the application.
            return true;
        }
        true
    }

    fn on_alt_stack(&self, sp: u64) -> bool {
        let (base, _, size) = self.alt_stack;
        size != 0 && sp > base && sp - base <= size
    }

    /// Builds the signal frame for `info` and points the registers at the
    /// handler.
    fn enter_handler(&mut self, info: &SigInfo) -> Result<(), &'static str> {
        let action = self.handlers().get(info.signo).map_err(|_| "bad signal")?;
        let regs = self.cpu.regs;
        let (alt_base, alt_flags, alt_size) = self.alt_stack;
        let use_alt = action.flags & SA_ONSTACK != 0
            && alt_size != 0
            && alt_flags & SS_DISABLE == 0
            && !self.on_alt_stack(regs.stack_pointer());
        let sp = if use_alt {
            alt_base.wrapping_add(alt_size)
        } else {
            regs.stack_pointer().wrapping_sub(RED_ZONE)
        };
        let fp = self
            .context
            .fp_state(&*self.aspace)
            .map_err(|_| "cannot read FP state")?;
        let fp_bytes = encode_fpstate(&fp);
        let layout = FrameLayout::below(sp, fp.xsave.len()).ok_or("stack pointer too low")?;
        let alt_state = if self.on_alt_stack(regs.stack_pointer()) {
            SS_ONSTACK
        } else {
            alt_flags
        };
        // After a temporary mask, the handler returns to the mask from
        // before the wait.
        let uc_mask = self.saved_mask.take().unwrap_or(self.signal_mask());
        let uc = encode_ucontext(
            &regs,
            uc_mask.0,
            (alt_base, alt_state, alt_size),
            layout.fpstate,
        );
        self.mm()
            .copy_out(layout.fpstate, &fp_bytes)
            .map_err(|_| "cannot write the FP state")?;
        self.mm()
            .copy_out(layout.siginfo(), &info.to_bytes())
            .map_err(|_| "cannot write siginfo")?;
        self.mm()
            .copy_out(layout.ucontext(), &uc)
            .map_err(|_| "cannot write the ucontext")?;
        self.mm()
            .copy_out(layout.frame, &action.restorer.to_le_bytes())
            .map_err(|_| "cannot write the frame")?;

        self.cpu.regs = handler_entry(&regs, action.handler, &layout, info.signo);

        let mut blocked = self.signal_mask().0 | action.mask.0;
        if action.flags & SA_NODEFER == 0 {
            blocked |= SigSet::bit(info.signo);
        }
        self.set_signal_mask(SigSet(blocked));
        if action.flags & SA_RESETHAND != 0 {
            let _ = self.handlers().set(info.signo, Default::default());
        }
        Ok(())
    }
}
