//! Process groups and sessions (gVisor's kernel/sessions.go): setpgid,
//! setsid, and the groups kill(2) addresses.

use std::sync::Arc;

use super::signal::SigInfo;
use super::task::Task;
use super::thread_group::{lock, ThreadGroup};
use super::Kernel;
use crate::errno::Errno;

impl Kernel {
    /// The live processes of process group `pgid`.
    pub fn process_group(&self, pgid: i32) -> Vec<Arc<ThreadGroup>> {
        self.pids
            .thread_groups()
            .into_iter()
            .filter(|tg| !tg.is_zombie() && tg.links().pgid == pgid)
            .collect()
    }

    /// A live or zombie process by pid.
    pub fn process(&self, pid: i32) -> Option<Arc<ThreadGroup>> {
        self.pids.thread_group(pid)
    }
}

impl Task {
    /// setpgid(pid, pgid) with Linux's rules: `pid` is the caller or a
    /// child of it that has not exec'd (EACCES) in the same session
    /// (EPERM); a session leader cannot move (EPERM); the group joined
    /// must exist in the caller's session unless it is `pid`'s own.
    pub fn setpgid(&self, pid: i32, pgid: i32) -> Result<(), Errno> {
        if pgid < 0 {
            return Err(Errno::EINVAL);
        }
        let kernel = self.kernel.clone();
        let _tree = lock(&kernel.tree);
        let me = self.tgid();
        let pid = if pid == 0 { me } else { pid };
        let pgid = if pgid == 0 { pid } else { pgid };
        let target = kernel
            .process(pid)
            .filter(|t| !t.is_zombie())
            .ok_or(Errno::ESRCH)?;
        let mine = self.tg.links();
        let theirs = target.links();
        if pid != me {
            if theirs.parent != me {
                return Err(Errno::ESRCH);
            }
            if theirs.sid != mine.sid {
                return Err(Errno::EPERM);
            }
            if target.did_exec() {
                return Err(Errno::EACCES);
            }
        }
        if theirs.sid == pid {
            return Err(Errno::EPERM);
        }
        if pgid != pid {
            let exists = kernel
                .pids
                .thread_groups()
                .iter()
                .any(|tg| tg.links().pgid == pgid && tg.links().sid == mine.sid);
            if !exists {
                return Err(Errno::EPERM);
            }
        }
        target.set_pgid_sid(pgid, theirs.sid);
        Ok(())
    }

    /// setsid: a new session and group led by the caller; EPERM when it
    /// already leads a process group.
    pub fn setsid(&self) -> Result<i32, Errno> {
        let kernel = self.kernel.clone();
        let _tree = lock(&kernel.tree);
        let me = self.tgid();
        let leads = kernel
            .pids
            .thread_groups()
            .iter()
            .any(|tg| tg.links().pgid == me);
        if leads {
            return Err(Errno::EPERM);
        }
        self.tg.set_pgid_sid(me, me);
        Ok(me)
    }

    /// getpgid / getsid of `pid` (0: the caller): (pgid, sid).
    pub fn pgid_sid_of(&self, pid: i32) -> Result<(i32, i32), Errno> {
        if pid == 0 {
            let l = self.tg.links();
            return Ok((l.pgid, l.sid));
        }
        let tg = self.kernel.process(pid).ok_or(Errno::ESRCH)?;
        let l = tg.links();
        Ok((l.pgid, l.sid))
    }

    /// kill(2)'s targets: pid > 0 one process, 0 the caller's group, -1
    /// every process but init and the caller, < -1 group -pid. ESRCH when
    /// there is none. Signal 0 only checks.
    pub fn kill_targets(&self, pid: i32) -> Result<Vec<Arc<ThreadGroup>>, Errno> {
        let targets: Vec<Arc<ThreadGroup>> = match pid {
            p if p > 0 => self.kernel.process(p).into_iter().collect(),
            0 => self.kernel.process_group(self.tg.links().pgid),
            -1 => self
                .kernel
                .pids
                .thread_groups()
                .into_iter()
                .filter(|tg| tg.tgid() != 1 && tg.tgid() != self.tgid() && !tg.is_zombie())
                .collect(),
            p => self
                .kernel
                .process_group(p.checked_neg().ok_or(Errno::ESRCH)?),
        };
        if targets.is_empty() {
            return Err(Errno::ESRCH);
        }
        Ok(targets)
    }

    /// Whether this task may send `signo` to process `tg` (Linux's
    /// check_kill_permission): its own process always; otherwise its real
    /// or effective uid must be the target's real or saved uid, or it must
    /// hold CAP_KILL, except that
    /// SIGCONT may go anywhere in its session (job control).
    pub fn may_signal(&self, tg: &ThreadGroup, signo: i32) -> bool {
        if tg.tgid() == self.tgid() {
            return true;
        }
        let c = self.creds();
        let (uid, suid) = tg.signal_ids();
        if c.capable(super::creds::CAP_KILL)
            || [c.uid, c.euid].iter().any(|s| *s == uid || *s == suid)
        {
            return true;
        }
        signo == libc::SIGCONT && tg.links().sid == self.tg.links().sid
    }

    /// Sends `info` to process `tg` from this task. The sandbox's init
    /// process is protected as Linux protects a pid namespace's init:
    /// a signal from inside it whose action is the default is dropped
    /// (init dies only of what it asks for, or from outside).
    pub fn signal_other_process(&self, tg: &ThreadGroup, info: SigInfo) {
        if tg.is_zombie() || info.signo == 0 || init_protected(tg, info.signo) {
            return;
        }
        self.kernel.send_to_process(tg, info);
    }

    /// kill(2)'s delivery to one target process `tg`, which may be the
    /// caller's own: then the calling thread takes it, delivered before
    /// the syscall returns.
    pub fn signal_process_from_here(&mut self, tg: &Arc<ThreadGroup>, info: SigInfo) {
        if tg.tgid() != self.tgid() {
            self.signal_other_process(tg, info);
            return;
        }
        if info.signo == 0 || init_protected(tg, info.signo) {
            return;
        }
        self.kernel.on_generate(tg, info.signo);
        tg.signal_process_from(info, self.tid());
    }
}

/// Whether a signal sent from inside the sandbox to `tg` is dropped because
/// `tg` is the sandbox's init and the signal's action is the default
/// (Linux's SIGNAL_UNKILLABLE for a pid namespace's init, which holds for
/// signals init sends itself too). A signal init's main thread blocks is
/// kept, as Linux's sig_ignored does: init may sigwait for it, or set a
/// handler before it unblocks it.
pub fn init_protected(tg: &ThreadGroup, signo: i32) -> bool {
    tg.tgid() == 1
        && tg
            .handlers()
            .get(signo)
            .map(|a| a.is_default())
            .unwrap_or(true)
        && !tg.member(tg.tgid()).is_some_and(|m| m.blocks(signo))
}

fn kernel_signal(signo: i32) -> SigInfo {
    SigInfo {
        signo,
        code: super::signal::SI_KERNEL,
        addr: 0,
        pid: 0,
        uid: 0,
    }
}

/// What terminals send: signals from the kernel to a group or a session
/// leader, with init's protection as for any signal from inside.
impl crate::vfs::pty::JobSignals for Kernel {
    fn signal_group(&self, pgid: i32, signo: i32) {
        for tg in self.process_group(pgid) {
            if !init_protected(&tg, signo) {
                self.send_to_process(&tg, kernel_signal(signo));
            }
        }
    }

    fn hangup_session(&self, sid: i32) {
        let Some(leader) = self
            .process(sid)
            .filter(|tg| !tg.is_zombie() && tg.links().sid == sid)
        else {
            return;
        };
        let signals: Vec<i32> = [libc::SIGHUP, libc::SIGCONT]
            .into_iter()
            .filter(|&s| !init_protected(&leader, s))
            .collect();
        for &signo in &signals {
            self.on_generate(&leader, signo);
        }
        // Both are queued before the leader can take either (Linux sends
        // them under one siglock): a handler of one never runs before the
        // other is pending.
        let infos: Vec<SigInfo> = signals.iter().map(|&s| kernel_signal(s)).collect();
        leader.signals_to_process(&infos, 0);
    }
}

impl Kernel {
    /// The sandbox's devpts (None when /dev is not the Sentry's devfs).
    pub fn devpts(&self) -> Option<Arc<crate::vfs::pty::DevPts>> {
        crate::vfs::pty::devpts_of(&self.vfs)
    }

    /// Whether `pid` names anything: a process, a thread, a group or a
    /// session (what find_vpid finds).
    pub fn pid_in_use(&self, pid: i32) -> bool {
        self.pids.thread_groups().iter().any(|tg| {
            let l = tg.links();
            tg.tgid() == pid || l.pgid == pid || l.sid == pid || tg.tids().contains(&pid)
        })
    }

    /// A session leader's end (disassociate_ctty(1) for a pty): its
    /// terminal's foreground group gets SIGHUP and the session loses the
    /// terminal.
    pub(crate) fn session_leader_exited(&self, tg: &ThreadGroup) {
        let links = tg.links();
        if links.sid != tg.tgid() {
            return;
        }
        let Some(tty) = self.devpts().and_then(|d| d.session_tty(links.sid)) else {
            return;
        };
        let pgrp = {
            let mut st = tty.state();
            let p = st.pgrp;
            st.clear_session();
            p
        };
        if pgrp > 0 {
            use crate::vfs::pty::JobSignals;
            self.signal_group(pgrp, libc::SIGHUP);
        }
    }
}
