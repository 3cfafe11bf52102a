//! The task loop: switch into application code, handle what stopped it.

use std::time::Instant;

use platform::{Event, PlatformError};

use super::signal::{default_action, DefaultAction};
use super::task::{ExitStatus, Task};
use crate::syscalls;

/// Why a task's loop stopped other than by the application exiting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("platform: {0}")]
    Platform(#[from] PlatformError),
}

/// What the loop does when the platform reports `Event::Interrupted`: the
/// kernel's control path (checkpoint) decides whether the task goes on.
pub enum Interruption {
    Continue,
    Stop,
}

impl Task {
    /// Runs the task until it exits (or `on_interrupt` says stop), returning
    /// its exit status (None when stopped from outside).
    pub fn run(
        &mut self,
        on_interrupt: &mut dyn FnMut(&mut Task) -> Interruption,
    ) -> Result<Option<ExitStatus>, RunError> {
        loop {
            if let Some(status) = self.exit {
                return Ok(Some(status));
            }
            let started = Instant::now();
            let event = self
                .context
                .switch(self.mm.address_space(), &mut self.cpu)?;
            match event {
                Event::Syscall => {
                    syscalls::dispatch(self);
                    self.deliver_signals();
                }
                Event::Fault {
                    signo,
                    addr,
                    access,
                    code,
                } => {
                    if signo == libc::SIGSEGV && self.mm.handle_fault(addr, access).is_ok() {
                        // A stack growth or similar fault the Sentry resolved:
                        // the faulting instruction runs again.
                    } else {
                        tracing::debug!(
                            tid = self.tid,
                            signo,
                            code,
                            addr = format_args!("{addr:#x}"),
                            rip = format_args!("{:#x}", self.cpu.regs.rip),
                            "fault"
                        );
                        self.force_fault(signo, code, addr);
                        self.deliver_signals();
                    }
                }
                Event::Interrupted => {
                    if let Interruption::Stop = on_interrupt(self) {
                        return Ok(None);
                    }
                }
            }
            self.cpu_time += started.elapsed();
        }
    }

    /// Applies a signal's default action for a terminating signal.
    pub fn exit_by_signal(&mut self, signo: i32) {
        match default_action(signo) {
            DefaultAction::Ignore | DefaultAction::Continue | DefaultAction::Stop => {}
            DefaultAction::Terminate | DefaultAction::CoreDump => {
                self.exit = Some(ExitStatus::Signaled(signo));
            }
        }
    }
}
