//! How a process ends (gVisor's task_exit.go): its last thread leaves, it
//! lets go of its memory, its children go to a new parent, its parent gets
//! its exit signal, and it stays a zombie until waited for.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::signal::{SigInfo, SA_NOCLDSTOP, SA_NOCLDWAIT};
use super::task::ExitStatus;
use super::thread_group::{lock, ThreadGroup};
use super::Kernel;

/// si_code values of SIGCHLD.
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_STOPPED: i32 = 5;
pub const CLD_CONTINUED: i32 = 6;

/// What a stopped or continued process has to tell its parent's wait
/// (WUNTRACED / WCONTINUED), once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobReport {
    Stopped(i32),
    Continued,
}
statefile::versioned!(JobReport, "kernel.JobReport", 1);

/// Job control: whether the process is stopped (SIGSTOP, SIGTSTP, ...) and
/// what its parent has not been told yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub stopped: bool,
    pub report: Option<JobReport>,
}
statefile::versioned!(JobState, "kernel.JobState", 1, [JobReport]);

/// A vfork parent waits on this until its child execs or exits.
#[derive(Default)]
pub struct VforkDone {
    done: Mutex<bool>,
    cv: Condvar,
}

impl VforkDone {
    pub fn new() -> Arc<VforkDone> {
        Arc::new(VforkDone::default())
    }

    pub fn release(&self) {
        *lock(&self.done) = true;
        self.cv.notify_all();
    }

    /// Waits up to `d`; whether the child has let go.
    pub fn wait(&self, d: Duration) -> bool {
        let g = lock(&self.done);
        let (g, _) = self
            .cv
            .wait_timeout_while(g, d, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

/// A process's place in the process tree beyond its links.
#[derive(Default)]
pub struct Life {
    /// Its end has been processed: a zombie until reaped.
    pub exited: bool,
    /// It has called execve since fork (setpgid refuses it then: EACCES).
    pub did_exec: bool,
    pub job: JobState,
    /// The real uid of its last thread (si_uid of its SIGCHLD).
    pub uid: u32,
    /// Set while a vfork parent waits for this (child) process.
    pub vfork: Option<Arc<VforkDone>>,
    /// Reaped: its pid is free (the object may outlive that a moment, held
    /// by its last thread's teardown).
    pub reaped: bool,
}

impl ThreadGroup {
    pub(super) fn life(&self) -> std::sync::MutexGuard<'_, Life> {
        lock(&self.life)
    }

    /// Whether the process has ended and waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.life().exited
    }

    /// Whether it was reaped (a pidfd of it then names nothing).
    pub fn is_reaped(&self) -> bool {
        self.life().reaped
    }

    pub fn did_exec(&self) -> bool {
        self.life().did_exec
    }

    pub fn job(&self) -> JobState {
        self.life().job
    }

    /// A thread left as `uid` (the process's CPU time is its attributes').
    pub(super) fn note_exited_thread(&self, uid: u32) {
        self.life().uid = uid;
    }

    pub fn exited_uid(&self) -> u32 {
        self.life().uid
    }

    /// The vfork parent waiting for this process may go on (exec or exit).
    pub fn release_vfork(&self) {
        if let Some(v) = self.life().vfork.take() {
            v.release();
        }
    }

    /// A forked process's start: its uid and the vfork parent waiting.
    pub(crate) fn init_life(&self, uid: u32, vfork: Option<Arc<VforkDone>>) {
        let mut l = self.life();
        l.uid = uid;
        l.vfork = vfork;
    }

    /// The uid it counts against RLIMIT_NPROC.
    pub fn leader_uid(&self) -> u32 {
        self.life().uid
    }
}

/// How a process's end is told in SIGCHLD's si_code and si_status.
pub fn chld_code(status: ExitStatus) -> (i32, i32) {
    match status {
        ExitStatus::Exited(code) => (CLD_EXITED, code & 0xff),
        ExitStatus::Signaled(sig) => (CLD_KILLED, sig),
    }
}

impl Kernel {
    /// The last thread of `tg` has left. Its memory goes, its children are
    /// given to a subreaper or init, its parent gets its exit signal, and it
    /// stays a zombie for its parent's wait, unless the parent said it
    /// never waits (SIGCHLD ignored, SA_NOCLDWAIT): then it is reaped now.
    pub(crate) fn process_exited(&self, tg: &Arc<ThreadGroup>) {
        self.session_leader_exited(tg);
        let orphaned_groups = self.newly_orphaned_groups(tg);
        // Dropping an address space writes shared file mappings back and
        // ends the stub process: outside the tree lock.
        drop(tg.release_mm());
        tg.release_vfork();
        let status = tg.exit_status().unwrap_or(ExitStatus::Exited(0));
        self.proc_log()
            .ended(tg.tgid(), status, self.clocks.monotonic());
        let tree = lock(&self.tree);
        let tgid = tg.tgid();
        tg.life().exited = true;
        tg.life().job = JobState::default();
        let reaper = self.reaper_for(tg);
        let mut orphaned = Vec::new();
        for child in self.pids.thread_groups() {
            if child.links().parent != tgid || child.tgid() == tgid {
                continue;
            }
            child.set_parent(reaper);
            if child.is_zombie() {
                self.notify_parent_locked(&child);
                continue;
            }
            // PR_SET_PDEATHSIG: the orphan's threads asked to hear of it.
            // (Linux sends it when the parent thread exits; cryo's parent
            // is a process, so it is sent when the whole process has.)
            for signo in child.attrs().death_signals() {
                orphaned.push((child.clone(), signo));
            }
        }
        self.notify_parent_locked(tg);
        drop(tree);
        // Sent outside the tree lock: a SIGCONT reports to its parent.
        for (child, signo) in orphaned {
            let info = SigInfo {
                signo,
                code: super::signal::SI_USER,
                addr: 0,
                pid: tgid,
                uid: tg.exited_uid(),
            };
            self.send_to_process(&child, info);
        }
        self.hang_up_orphaned_groups(&orphaned_groups);
        tracing::debug!(tgid, ?status, "process exited");
        self.child_event.notify_all();
        tg.exit_queue()
            .notify(crate::vfs::poll::EPOLLIN | crate::vfs::poll::EPOLLRDNORM);
    }

    /// Where `tg`'s children go: the nearest live subreaper among its
    /// ancestors, else init (pid 1); 0 when init itself is ending.
    fn reaper_for(&self, tg: &ThreadGroup) -> i32 {
        let mut ancestor = tg.links().parent;
        let mut hops = 0;
        while ancestor > 1 && hops < super::pid_namespace::PID_MAX {
            match self.pids.thread_group(ancestor) {
                Some(a) if !a.is_zombie() && a.attrs().with(|p| p.child_subreaper) => {
                    return ancestor
                }
                Some(a) => ancestor = a.links().parent,
                None => break,
            }
            hops += 1;
        }
        if tg.tgid() == 1 {
            0
        } else {
            1
        }
    }

    /// Tells `child`'s parent it has ended (tree lock held): the exit
    /// signal with CLD_* siginfo, or an immediate reap when the parent
    /// never waits. A process without a parent in the sandbox (init) is
    /// not reaped here: the sandbox reports its status.
    fn notify_parent_locked(&self, child: &Arc<ThreadGroup>) {
        let parent = self
            .pids
            .thread_group(child.links().parent)
            .filter(|p| !p.is_zombie());
        let Some(parent) = parent else {
            if child.tgid() != 1 && child.links().parent != 0 {
                self.pids.reap(child.tgid());
            }
            return;
        };
        let signo = child.exit_signal();
        let action = parent.handlers().get(libc::SIGCHLD).unwrap_or_default();
        let never_waits =
            signo == libc::SIGCHLD && (action.is_ignored() || action.flags & SA_NOCLDWAIT != 0);
        if signo != 0 {
            let (code, value) = chld_code(child.exit_status().unwrap_or(ExitStatus::Exited(0)));
            parent.signal_process(SigInfo::child(
                signo,
                code,
                child.tgid(),
                child.exited_uid(),
                value,
            ));
        }
        if never_waits {
            self.pids.reap(child.tgid());
        }
    }

    /// Tells `tg`'s parent it stopped or continued (SIGCHLD with
    /// CLD_STOPPED / CLD_CONTINUED unless the parent set SA_NOCLDSTOP) and
    /// wakes its waits.
    pub(crate) fn notify_job_change(&self, tg: &ThreadGroup, report: JobReport) {
        {
            let _tree = lock(&self.tree);
            if let Some(parent) = self.pids.thread_group(tg.links().parent) {
                let action = parent.handlers().get(libc::SIGCHLD).unwrap_or_default();
                if action.flags & SA_NOCLDSTOP == 0 && !parent.is_zombie() {
                    let (code, value) = match report {
                        JobReport::Stopped(sig) => (CLD_STOPPED, sig),
                        JobReport::Continued => (CLD_CONTINUED, libc::SIGCONT),
                    };
                    parent.signal_process(SigInfo::child(libc::SIGCHLD, code, tg.tgid(), 0, value));
                }
            }
        }
        self.child_event.notify_all();
    }

    /// init has ended: like Linux's zap_pid_ns_processes, the namespace
    /// takes no new process (a fork racing with the end fails, so nothing
    /// born meanwhile escapes the kill), every other process is killed,
    /// and their ends waited for (up to `timeout`) so no stub process
    /// outlives the sandbox.
    pub fn end_namespace(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let all = self.pids.close();
        for tg in &all {
            if tg.tgid() != 1 && !tg.is_zombie() {
                tg.begin_exit(ExitStatus::Signaled(libc::SIGKILL), 0);
                tg.continue_job();
            }
        }
        for tg in all {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if tg.wait(left).is_none() {
                tracing::warn!(tgid = tg.tgid(), "process did not end with the sandbox");
            }
        }
    }
}
