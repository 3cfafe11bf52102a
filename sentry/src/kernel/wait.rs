//! wait4 and waitid (gVisor's task_exit.go Wait): a parent waits for a
//! child to end, stop or continue, and reaps a zombie.

use std::sync::Arc;
use std::time::Duration;

use super::attrs::CpuUsage;
use super::exit::JobReport;
use super::task::{ExitStatus, Task};
use super::thread_group::{lock, ThreadGroup};
use crate::errno::Errno;

/// Which children a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitTarget {
    /// P_ALL, wait4(-1).
    Any,
    /// P_PID, wait4(pid > 0).
    Pid(i32),
    /// P_PGID, wait4(-pgid) and wait4(0) (the caller's group).
    Pgid(i32),
}

/// What a wait reports and how (wait4's options, waitid's).
#[derive(Clone, Copy, Debug, Default)]
pub struct WaitOptions {
    /// WEXITED (always on for wait4).
    pub exited: bool,
    /// WUNTRACED / WSTOPPED.
    pub stopped: bool,
    /// WCONTINUED.
    pub continued: bool,
    /// WNOHANG.
    pub nohang: bool,
    /// WNOWAIT: report but leave the child waitable.
    pub nowait: bool,
    /// __WALL: every child; __WCLONE: only "clone" children (whose exit
    /// signal is not SIGCHLD); neither: only the others.
    pub all: bool,
    pub clone: bool,
}

/// What happened to the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEvent {
    Exited(ExitStatus),
    Stopped(i32),
    Continued,
}

/// One wait's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waited {
    pub pid: i32,
    pub uid: u32,
    pub event: ChildEvent,
    /// The child's CPU time with that of its own reaped children (what
    /// wait4's rusage reports and, once reaped, the parent's RUSAGE_CHILDREN
    /// counts).
    pub usage: CpuUsage,
}

impl Waited {
    /// The status word wait4 writes (WIFEXITED, WIFSIGNALED, ...).
    pub fn status_word(&self) -> i32 {
        match self.event {
            ChildEvent::Exited(ExitStatus::Exited(code)) => (code & 0xff) << 8,
            ChildEvent::Exited(ExitStatus::Signaled(sig)) => sig & 0x7f,
            ChildEvent::Stopped(sig) => ((sig & 0xff) << 8) | 0x7f,
            ChildEvent::Continued => 0xffff,
        }
    }

    /// waitid's si_code and si_status.
    pub fn code_and_status(&self) -> (i32, i32) {
        match self.event {
            ChildEvent::Exited(s) => super::exit::chld_code(s),
            ChildEvent::Stopped(sig) => (super::exit::CLD_STOPPED, sig),
            ChildEvent::Continued => (super::exit::CLD_CONTINUED, libc::SIGCONT),
        }
    }
}

/// How often a blocked wait looks for an interrupt (a signal, a
/// checkpoint); a child's change wakes it at once.
const WAIT_POLL: Duration = Duration::from_millis(20);

impl Task {
    /// Waits for a child of this task's process matching `target` and
    /// `opts`. `Ok(None)`: WNOHANG and nothing to report. ECHILD when no
    /// child matches; EINTR when interrupted.
    pub fn wait_child(
        &self,
        target: WaitTarget,
        opts: WaitOptions,
    ) -> Result<Option<Waited>, Errno> {
        let kernel = self.kernel.clone();
        let me = self.tgid();
        let mut tree = lock(&kernel.tree);
        loop {
            let children: Vec<Arc<ThreadGroup>> = kernel
                .pids
                .thread_groups()
                .into_iter()
                .filter(|c| c.tgid() != me && c.links().parent == me)
                .filter(|c| match target {
                    WaitTarget::Any => true,
                    WaitTarget::Pid(p) => c.tgid() == p,
                    WaitTarget::Pgid(g) => c.links().pgid == g,
                })
                .filter(|c| {
                    let clone_child = c.exit_signal() != libc::SIGCHLD;
                    opts.all || clone_child == opts.clone
                })
                .collect();
            if children.is_empty() {
                return Err(Errno::ECHILD);
            }
            for c in &children {
                if let Some(w) = self.poll_child(c, opts) {
                    return Ok(Some(w));
                }
            }
            if opts.nohang {
                return Ok(None);
            }
            if self.interrupt.is_pending() {
                return Err(Errno::EINTR);
            }
            tree = kernel
                .child_event
                .wait_timeout(tree, WAIT_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What `c` has to report to a wait with `opts`, reaping it when it is
    /// a zombie and the wait does not say WNOWAIT (tree lock held).
    fn poll_child(&self, c: &Arc<ThreadGroup>, opts: WaitOptions) -> Option<Waited> {
        let mut usage = c.attrs().usage();
        usage.add(c.attrs().children_usage());
        let waited = |event| Waited {
            pid: c.tgid(),
            uid: c.exited_uid(),
            event,
            usage,
        };
        if c.is_zombie() {
            if !opts.exited {
                return None;
            }
            let status = c.exit_status().unwrap_or(ExitStatus::Exited(0));
            if !opts.nowait {
                self.kernel.pids.reap(c.tgid());
                self.tg.attrs().add_child_usage(usage);
            }
            return Some(waited(ChildEvent::Exited(status)));
        }
        let want = |r: JobReport| match r {
            JobReport::Stopped(_) => opts.stopped,
            JobReport::Continued => opts.continued,
        };
        match c.take_job_report(want, opts.nowait)? {
            JobReport::Stopped(sig) => Some(waited(ChildEvent::Stopped(sig))),
            JobReport::Continued => Some(waited(ChildEvent::Continued)),
        }
    }
}
