//! Job control (gVisor's task_stop.go / thread_group group stops): a stop
//! signal's default action stops every thread of the process until SIGCONT;
//! the parent's wait sees WUNTRACED / WCONTINUED reports.
//!
//! SIGCONT acts when it is sent, not when delivered: it resumes a stopped
//! process even if blocked or caught, and discards pending stop signals;
//! sending a stop signal discards a pending SIGCONT (Linux's prepare_signal).

use std::time::Duration;

use super::exit::JobReport;
use super::interrupt::TaskInterrupt;
use super::signal::SigInfo;
use super::thread_group::{ThreadGroup, TG_STOP_SIGNALS};
use super::Kernel;

/// How often a stopped task looks whether it must park for a checkpoint
/// or die.
const STOPPED_POLL: Duration = Duration::from_millis(20);

impl ThreadGroup {
    /// A stop signal's default action was taken by one of its threads:
    /// every thread stops at its next boundary. The report for the
    /// parent's wait, when this stopped the process.
    pub(crate) fn stop_job(&self, signo: i32) -> Option<JobReport> {
        let report = {
            let mut l = self.life();
            if l.job.stopped || l.exited {
                return None;
            }
            l.job.stopped = true;
            l.job.report = Some(JobReport::Stopped(signo));
            JobReport::Stopped(signo)
        };
        self.interrupt_members();
        Some(report)
    }

    /// SIGCONT was sent: a stopped process resumes. Whether it was stopped.
    pub fn continue_job(&self) -> bool {
        let was = {
            let mut l = self.life();
            let was = l.job.stopped;
            if was {
                l.job.stopped = false;
                l.job.report = Some(JobReport::Continued);
            }
            was
        };
        self.life_cv.notify_all();
        was
    }

    pub fn is_job_stopped(&self) -> bool {
        self.life().job.stopped
    }

    /// Takes (or with `keep`, reads) the report a wait with WUNTRACED or
    /// WCONTINUED may see.
    pub(crate) fn take_job_report(
        &self,
        want: impl Fn(JobReport) -> bool,
        keep: bool,
    ) -> Option<JobReport> {
        let mut l = self.life();
        let r = l.job.report.filter(|r| want(*r))?;
        if !keep {
            l.job.report = None;
        }
        Some(r)
    }

    /// Blocks a task of this process while it is stopped, until SIGCONT,
    /// the process's end, or an interrupt (a checkpoint, SIGKILL) that the
    /// task must look at.
    pub(crate) fn wait_while_stopped(&self, interrupt: &TaskInterrupt) {
        let mut l = self.life();
        while l.job.stopped && !interrupt.is_pending() && self.exit_status().is_none() {
            l = self
                .life_cv
                .wait_timeout(l, STOPPED_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Kernel {
    /// Sends a process-directed signal to `tg` with the side effects Linux
    /// gives its generation: SIGCONT resumes, stop signals and SIGCONT
    /// cancel each other's pending instances, SIGKILL wakes a stopped
    /// process to die. False when the process has no thread to take it.
    pub fn send_to_process(&self, tg: &ThreadGroup, info: SigInfo) -> bool {
        self.on_generate(tg, info.signo);
        tg.signal_process(info)
    }

    /// The effects of generating `signo` for a thread or process of `tg`.
    pub(crate) fn on_generate(&self, tg: &ThreadGroup, signo: i32) {
        if signo == libc::SIGCONT {
            tg.discard_pending(TG_STOP_SIGNALS);
            if tg.continue_job() {
                self.notify_job_change(tg, JobReport::Continued);
            }
        } else if TG_STOP_SIGNALS.contains(&signo) {
            tg.discard_pending(&[libc::SIGCONT]);
        } else if signo == libc::SIGKILL {
            tg.life_cv.notify_all();
        }
    }
}

impl Kernel {
    /// Whether process group `pgid` is orphaned: no member has a parent in
    /// another group of the same session (will_become_orphaned_pgrp). A
    /// group with no live member is orphaned.
    pub fn is_orphaned_pgrp(&self, pgid: i32) -> bool {
        !self.process_group(pgid).iter().any(|p| {
            let l = p.links();
            self.process(l.parent)
                .filter(|parent| !parent.is_zombie())
                .is_some_and(|parent| {
                    let pl = parent.links();
                    pl.pgid != pgid && pl.sid == l.sid
                })
        })
    }

    fn has_stopped_jobs(&self, pgid: i32) -> bool {
        self.process_group(pgid).iter().any(|p| p.is_job_stopped())
    }

    /// The groups `tg`'s end may orphan (kill_orphaned_pgrp's candidates),
    /// taken before its children are reparented: its own group when its
    /// parent was its group's link to the session, and its children's
    /// groups when it was theirs.
    pub(crate) fn newly_orphaned_groups(&self, tg: &ThreadGroup) -> Vec<i32> {
        let l = tg.links();
        let mut out = Vec::new();
        if let Some(parent) = self.process(l.parent) {
            let pl = parent.links();
            if pl.pgid != l.pgid && pl.sid == l.sid {
                out.push(l.pgid);
            }
        }
        for child in self.pids.thread_groups() {
            let cl = child.links();
            if cl.parent == tg.tgid()
                && child.tgid() != tg.tgid()
                && cl.pgid != l.pgid
                && cl.sid == l.sid
                && !out.contains(&cl.pgid)
            {
                out.push(cl.pgid);
            }
        }
        out
    }

    /// After a process ended: each candidate group that is now orphaned
    /// and has a stopped member gets SIGHUP then SIGCONT (POSIX's rule, so
    /// that no stopped job is left that nobody can continue).
    pub(crate) fn hang_up_orphaned_groups(&self, candidates: &[i32]) {
        for &pgid in candidates {
            if self.is_orphaned_pgrp(pgid) && self.has_stopped_jobs(pgid) {
                use crate::vfs::pty::JobSignals;
                self.signal_group(pgid, libc::SIGHUP);
                self.signal_group(pgid, libc::SIGCONT);
            }
        }
    }
}
