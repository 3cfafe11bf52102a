//! The task loop: switch into application code, handle what stopped it.

use std::time::{Duration, Instant};

use platform::{Event, PlatformError};

use super::signal::{default_action, DefaultAction};
use super::task::{ExitStatus, Task};
use super::thread_group::Release;
use crate::arch::UserRegs;
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
    /// Runs the task until it exits (or `on_interrupt` says stop). The init
    /// task then waits for the rest of its thread group and returns the
    /// group's status; None when stopped from outside.
    pub fn run(
        &mut self,
        on_interrupt: &mut dyn FnMut(&mut Task) -> Interruption,
    ) -> Result<Option<ExitStatus>, RunError> {
        super::proc::set_current(self.tgid());
        let status = match self.run_until_exit(on_interrupt) {
            Ok(Some(status)) => status,
            other => return other,
        };
        self.exit_thread(status);
        if self.tid != self.tgid() {
            return Ok(Some(status));
        }
        // The leader's host thread stays until the whole group is gone,
        // still answering control requests (which refuse: it has exited).
        loop {
            if let Some(group) = self.tg.wait(std::time::Duration::from_millis(50)) {
                if self.tgid() == 1 {
                    // The sandbox ends with its init, as a pid namespace.
                    self.kernel
                        .end_namespace(std::time::Duration::from_secs(10));
                }
                return Ok(Some(group));
            }
            if self.interrupt.is_pending() {
                self.interrupt.clear();
                let _ = on_interrupt(self);
            }
        }
    }

    fn run_until_exit(
        &mut self,
        on_interrupt: &mut dyn FnMut(&mut Task) -> Interruption,
    ) -> Result<Option<ExitStatus>, RunError> {
        let mut sys_clock = SysClock::new();
        loop {
            if let Some(status) = self.exit {
                return Ok(Some(status));
            }
            if let Some(group) = self.tg.exit_status() {
                // Another thread ended the group (exit_group, fatal signal).
                self.exit = Some(group);
                continue;
            }
            if self.tg.must_end_for_exec(self.tid) {
                self.exit = Some(ExitStatus::Exited(0));
                continue;
            }
            if self.tg.must_park(self.tid) {
                self.park();
                continue;
            }
            if self.tg.is_job_stopped() {
                self.stay_stopped();
                continue;
            }
            // An interrupt that arrived while the task was in the Sentry
            // (a signal ending a sleep): it is answered here, or it would
            // stay raised and cut short the task's next blocking call.
            if self.interrupt.is_pending() {
                if let Interruption::Stop = self.answer_interrupt(on_interrupt) {
                    return Ok(None);
                }
                continue;
            }
            // A checkpoint's freeze began or ended since this thread last
            // ran: its address space's mappings follow first (mm/freeze.rs).
            crate::mm::sync_freeze(&self.mm, &self.kernel.memory_file);
            let started = Instant::now();
            // The interval timers' thread interrupts the tasks it finds in
            // application code when a CPU timer may have run out.
            let itimers = self.tg.itimers().clone();
            itimers.enter_user(self.tid);
            let event = self.context.switch(&*self.aspace, &mut self.cpu);
            itimers.leave_user(self.tid);
            let event = event?;
            let switched = Instant::now();
            let user = switched.duration_since(started);
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
                    let (mut signo, mut code) = (signo, code);
                    let resolved = signo == libc::SIGSEGV
                        && (self.emulate_cpuid(code)
                            || match self.mm().handle_fault(addr, access) {
                                Ok(()) => true,
                                // A file mapping's page with no file page.
                                Err(crate::errno::Errno::EIO) => {
                                    (signo, code) = (libc::SIGBUS, libc::BUS_ADRERR);
                                    false
                                }
                                Err(_) => false,
                            });
                    // Otherwise the fault becomes a signal; a resolved one
                    // (stack growth) runs the instruction again.
                    if !resolved {
                        tracing::debug!(
                            tid = self.tid,
                            signo,
                            code,
                            addr = format_args!("{addr:#x}"),
                            ip = format_args!("{:#x}", self.cpu.regs.instruction_pointer()),
                            "fault"
                        );
                        self.force_fault(signo, code, addr);
                        self.deliver_signals();
                    }
                }
                Event::Interrupted => {
                    if self.tg.must_park(self.tid) {
                        self.park();
                    } else if self.tg.exit_status().is_none() {
                        if let Interruption::Stop = self.answer_interrupt(on_interrupt) {
                            return Ok(None);
                        }
                    }
                }
            }
            let sys = sys_clock.charge(switched.elapsed());
            let total = self.charge_cpu(user, sys);
            let fired = itimers.charge(user, total);
            if !fired.is_empty() {
                for signo in fired {
                    self.send_signal(super::signal::SigInfo {
                        signo,
                        code: 0x80, // SI_KERNEL
                        addr: 0,
                        pid: 0,
                        uid: 0,
                    });
                }
                self.deliver_signals();
            }
        }
    }

    /// A general-protection fault (SIGSEGV, SI_KERNEL) on a `cpuid` while
    /// the sandbox's cpuid is emulated: answered from the kernel's CPU
    /// features and the task resumes after the instruction. Anything else
    /// (another faulting instruction, unreadable code) stays a fault.
    fn emulate_cpuid(&mut self, code: i32) -> bool {
        const SI_KERNEL: i32 = 0x80;
        if code != SI_KERNEL || !self.kernel.cpu.emulated {
            return false;
        }
        let mut insn = [0u8; 2];
        let rip = self.cpu.regs.rip;
        if self.mm().copy_in_force(rip, &mut insn).is_err()
            || insn != crate::arch::cpuid::CPUID_INSN
        {
            return false;
        }
        crate::arch::cpuid::emulate(&self.kernel.cpu, &mut self.cpu.regs);
        true
    }

    /// Lowers the interrupt, then lets the control path see why it was
    /// raised and delivers what signals came with it. Lowered first, so
    /// that whatever raises it again meanwhile is seen on the next round.
    fn answer_interrupt(
        &mut self,
        on_interrupt: &mut dyn FnMut(&mut Task) -> Interruption,
    ) -> Interruption {
        self.interrupt.clear();
        let answer = on_interrupt(self);
        if let Interruption::Continue = answer {
            // A signal from another thread may be why.
            self.deliver_signals();
        }
        answer
    }

    /// Another thread is checkpointing: save this thread's own state (its
    /// FP registers can only be read on its own host thread) and wait.
    fn park(&mut self) {
        let record = self.save_record().map_err(|e| e.to_string());
        match self.tg.park(self.tid, record) {
            Release::Continue => self.interrupt.clear(),
            Release::Exit => self.exit = Some(ExitStatus::Exited(0)),
        }
    }

    /// The process is stopped (job control): wait for SIGCONT, unless
    /// SIGKILL is pending (only it wakes a stopped process; others wait
    /// for SIGCONT) or a checkpoint wants it parked.
    fn stay_stopped(&mut self) {
        if self.sigkill_pending() {
            self.deliver_signals();
            return;
        }
        self.tg.wait_while_stopped(&self.interrupt);
        let still = self.tg.is_job_stopped() && self.tg.exit_status().is_none();
        if still && !self.tg.must_park(self.tid) && !self.sigkill_pending() {
            // Woken for nothing it acts on while stopped (a caught signal
            // waits for SIGCONT).
            self.interrupt.clear();
        } else if !self.tg.is_job_stopped() {
            // Continued: what was sent while stopped is delivered before
            // the application runs again, whether or not SIGCONT itself
            // interrupted this task (it may be blocked or ignored).
            self.deliver_signals();
        }
    }

    /// A thread's end: clear_child_tid is zeroed and woken (pthread_join
    /// waits on it), its stub thread goes, and the group learns of it.
    pub(super) fn exit_thread(&mut self, status: ExitStatus) {
        self.release_robust_list();
        self.account_exit();
        let others = self.aspace_shared();
        if self.clear_child_tid != 0 && others {
            let addr = self.clear_child_tid;
            if self.mm().write_u32(addr, 0).is_ok() {
                self.kernel.futexes.wake(addr, u32::MAX, 1);
            }
        }
        if others {
            // The stub process lives on for the other threads (of this
            // process, or of one sharing its memory).
            if let Err(e) = self.aspace.exit_thread() {
                tracing::warn!(tid = self.tid, error = %e, "stub thread did not exit cleanly");
            }
        }
        self.leave(status);
    }

    /// The task leaves its thread group and the pid namespace; the last
    /// one ends the process.
    pub(crate) fn leave(&self, status: ExitStatus) {
        self.tg.note_exited_thread(self.creds.uid);
        let last = self.tg.remove(self.tid, status);
        self.kernel.pids.remove_task(self.tid);
        if last {
            // Like Linux's exit_files: an exited process holds no files (a
            // pipe's reader sees EOF, the gofer's files are released).
            // A table shared with another process (CLONE_FILES) stays
            // with it; this process only lets go of its reference.
            let fds = self.tg.fds_ref();
            self.tg.set_fds(std::sync::Arc::new(std::sync::Mutex::new(
                Default::default(),
            )));
            if std::sync::Arc::strong_count(&fds) == 1 {
                super::thread_group::lock(&fds).clear();
            }
            drop(fds);
            self.kernel.file_locks.release_process(self.tgid());
            self.kernel.process_exited(&self.tg);
        }
    }

    /// A signal's default action that ends the process: the whole thread
    /// group goes.
    pub fn exit_by_signal(&mut self, signo: i32) {
        match default_action(signo) {
            DefaultAction::Ignore | DefaultAction::Continue => {}
            DefaultAction::Stop => {
                if let Some(report) = self.tg.stop_job(signo) {
                    self.kernel.notify_job_change(&self.tg, report);
                }
            }
            DefaultAction::Terminate | DefaultAction::CoreDump => {
                let status = ExitStatus::Signaled(signo);
                self.tg.begin_exit(status, self.tid);
                self.exit = Some(status);
            }
        }
    }
}

/// A handling of an event shorter than this is charged its wall time as
/// system time; a longer one (it blocked, or the host preempted the
/// Sentry thread) reads the thread's CPU clock.
const SYS_SAMPLE_AFTER: Duration = Duration::from_micros(20);

/// The system time a task's events cost, without a host syscall per event.
///
/// The Sentry thread's CPU clock is not in the vDSO: reading it is a host
/// syscall (~0.6 µs here, and it runs through the Sentry's seccomp
/// filter), twice per event before, more than a quick syscall's whole
/// handling. A short handling cannot have used more CPU than its wall time
/// and rarely less (no preemption fits in 20 µs), so it is charged that; at
/// a long one the clock is read and the charge made up to what the thread
/// really used since the last reading, never more than the handling's wall
/// time (the rest was sleeping). The time the thread spends polling for
/// the application inside a switch is not charged until such a reading.
struct SysClock {
    /// The thread's CPU clock at the last reading.
    mark: Duration,
    /// System time charged since that reading.
    charged: Duration,
}

impl SysClock {
    fn new() -> Self {
        SysClock {
            mark: super::attrs::sentry_thread_cpu_time(),
            charged: Duration::ZERO,
        }
    }

    /// The system time of a handling that took `wall`.
    fn charge(&mut self, wall: Duration) -> Duration {
        if wall < SYS_SAMPLE_AFTER {
            self.charged += wall;
            return wall;
        }
        let now = super::attrs::sentry_thread_cpu_time();
        let used = now.saturating_sub(self.mark).saturating_sub(self.charged);
        self.mark = now;
        self.charged = Duration::ZERO;
        used.min(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_handlings_are_charged_their_wall_time() {
        let mut c = SysClock::new();
        assert_eq!(c.charge(Duration::from_micros(3)), Duration::from_micros(3));
        assert_eq!(c.charged, Duration::from_micros(3));
    }

    #[test]
    fn a_long_handling_is_charged_what_the_thread_used_at_most_its_wall_time() {
        let mut c = SysClock::new();
        // Blocked: a long wall time, little CPU.
        std::thread::sleep(Duration::from_millis(30));
        let blocked = c.charge(Duration::from_millis(30));
        assert!(blocked < Duration::from_millis(10), "{blocked:?}");
        // Computing: charged about what it burnt, never over the wall time.
        let cpu0 = crate::kernel::attrs::sentry_thread_cpu_time();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(0u64);
        }
        let wall = t.elapsed();
        let burnt = crate::kernel::attrs::sentry_thread_cpu_time().saturating_sub(cpu0);
        let busy = c.charge(wall);
        assert!(busy <= wall, "{busy:?} > {wall:?}");
        assert!(busy >= burnt.min(wall), "{busy:?} < {burnt:?}");
        assert!(busy > Duration::ZERO);
        assert_eq!(c.charged, Duration::ZERO);
    }
}
