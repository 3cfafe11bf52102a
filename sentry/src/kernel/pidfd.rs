//! pidfds (gVisor's kernel/pidfd.go, Linux's pidfd_open(2)): a descriptor
//! that names one process; it polls readable once the process has ended,
//! signals go to it with pidfd_send_signal, and waitid(P_PIDFD) waits for
//! it. It keeps naming that process, never one that reuses its pid.
//!
//! Saved form: inline in the open file's record (`FileStateKind::PidFd`),
//! the process by its pid (pids are kept across restore) and whether it
//! had been reaped; O_NONBLOCK is the open file's, close-on-exec the
//! descriptor table's. A restored pidfd is re-bound to its process once
//! the process tree is back ([`bind_restored`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use serde::{Deserialize, Serialize};

use super::pid_namespace::PID_MAX;
use super::thread_group::{Member, ThreadGroup};
use crate::errno::Errno;
use crate::vfs::poll::{WaitQueue, EPOLLIN, EPOLLRDNORM};
use crate::vfs::state::FileStateKind;
use crate::vfs::{FileKind, FileOps, OpenFile, SaveAs, SeekMode};

/// prctl(PR_GET_DUMPABLE)'s value for a process others may attach to.
const SUID_DUMP_USER: u32 = 1;

/// A pidfd's saved form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidFdRecord {
    /// The process's pid.
    pub pid: i32,
    /// The process was reaped before the checkpoint: the pidfd names a
    /// process that is gone (whatever now has its pid).
    pub reaped: bool,
}
statefile::versioned!(PidFdRecord, "kernel.PidFd", 1);

impl PidFdRecord {
    /// Why the record cannot be a pidfd, by field (whether a live pid
    /// names a saved process is checked against the process list).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=PID_MAX).contains(&self.pid) {
            return Err(("pid", format!("{} is outside 1..={PID_MAX}", self.pid)));
        }
        Ok(())
    }
}

/// pidfd_open's flag for a pidfd of one thread (Linux 6.9), O_EXCL's bit,
/// which F_GETFL shows.
pub const PIDFD_THREAD: i32 = libc::O_EXCL;

/// The thread a PIDFD_THREAD pidfd names: its tid, and its entry in the
/// process, so a later thread given the same tid is not taken for it.
struct PidFdThread {
    tid: i32,
    member: Weak<Member>,
}

pub struct PidFd {
    tgid: i32,
    /// Weak: a pidfd does not keep its process's zombie alive. Unset only
    /// between a restore re-opening the file and the process tree coming
    /// back.
    tg: OnceLock<Weak<ThreadGroup>>,
    /// Set for a PIDFD_THREAD pidfd.
    thread: Option<PidFdThread>,
}

/// Whom pidfd_send_signal's signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalScope {
    /// The thread (PIDFD_SIGNAL_THREAD; a process pidfd's: its leader).
    Thread,
    /// The process (PIDFD_SIGNAL_THREAD_GROUP).
    Process,
    /// The process's group (PIDFD_SIGNAL_PROCESS_GROUP).
    ProcessGroup,
}

impl SignalScope {
    /// From pidfd_send_signal's flags (at most one scope; EINVAL for more
    /// or unknown bits); none given: the pidfd's own kind's.
    pub fn from_flags(flags: u64, pidfd: &PidFd) -> Result<SignalScope, Errno> {
        match flags {
            0 if pidfd.thread.is_some() => Ok(SignalScope::Thread),
            0 => Ok(SignalScope::Process),
            1 => Ok(SignalScope::Thread),
            2 => Ok(SignalScope::Process),
            4 => Ok(SignalScope::ProcessGroup),
            _ => Err(Errno::EINVAL),
        }
    }
}

impl PidFd {
    /// An open pidfd of `tg`; `nonblock` is PIDFD_NONBLOCK.
    pub fn open(tg: &Arc<ThreadGroup>, nonblock: bool) -> Arc<OpenFile> {
        let ops = Arc::new(PidFd {
            tgid: tg.tgid(),
            tg: OnceLock::from(Arc::downgrade(tg)),
            thread: None,
        });
        let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
        crate::vfs::eventfd::anon_file(ops, flags)
    }

    /// A PIDFD_THREAD pidfd of thread `tid` of `tg` (ESRCH once it has
    /// ended): it polls readable when that thread ends, and signals go to
    /// that thread.
    pub fn open_thread(
        tg: &Arc<ThreadGroup>,
        tid: i32,
        nonblock: bool,
    ) -> Result<Arc<OpenFile>, Errno> {
        let member = tg.member(tid).ok_or(Errno::ESRCH)?;
        let ops = Arc::new(PidFd {
            tgid: tg.tgid(),
            tg: OnceLock::from(Arc::downgrade(tg)),
            thread: Some(PidFdThread {
                tid,
                member: Arc::downgrade(&member),
            }),
        });
        let flags = libc::O_RDWR | PIDFD_THREAD | if nonblock { libc::O_NONBLOCK } else { 0 };
        Ok(crate::vfs::eventfd::anon_file(ops, flags))
    }

    /// The thread a signal of `scope` goes to, while it runs: this pidfd's
    /// thread, or the process's leader (ESRCH once it has ended).
    pub fn signal_thread(&self) -> Result<(Arc<ThreadGroup>, Arc<Member>), Errno> {
        let tg = self.process()?;
        let member = match &self.thread {
            Some(_) => self.live_thread(&tg),
            None => tg.member(tg.tgid()),
        };
        member.map(|m| (tg, m)).ok_or(Errno::ESRCH)
    }

    /// This PIDFD_THREAD pidfd's thread while it runs.
    fn live_thread(&self, tg: &ThreadGroup) -> Option<Arc<Member>> {
        let thread = self.thread.as_ref()?;
        let named = thread.member.upgrade()?;
        tg.member(thread.tid).filter(|now| Arc::ptr_eq(now, &named))
    }

    /// The pid a wait or /proc names: the thread's for a PIDFD_THREAD
    /// pidfd, else the process's.
    pub fn pid(&self) -> i32 {
        self.thread.as_ref().map_or(self.tgid, |t| t.tid)
    }

    /// A pidfd re-opened from its record (checked), with the saved status
    /// flags; one of a live process names it once [`bind_restored`] has
    /// run.
    pub fn restore(r: &PidFdRecord, status: i32) -> Arc<OpenFile> {
        let tg = OnceLock::new();
        if r.reaped {
            let _ = tg.set(Weak::new());
        }
        let ops = Arc::new(PidFd {
            tgid: r.pid,
            tg,
            thread: None,
        });
        crate::vfs::eventfd::anon_file(ops, libc::O_RDWR | (status & libc::O_NONBLOCK))
    }

    fn record(&self) -> PidFdRecord {
        PidFdRecord {
            pid: self.tgid,
            reaped: self.process().is_err(),
        }
    }

    /// The process's pid.
    pub fn tgid(&self) -> i32 {
        self.tgid
    }

    /// The process, while it is live or a zombie (ESRCH once reaped).
    pub fn process(&self) -> Result<Arc<ThreadGroup>, Errno> {
        self.tg
            .get()
            .and_then(Weak::upgrade)
            .filter(|tg| !tg.is_reaped())
            .ok_or(Errno::ESRCH)
    }

    /// pidfd_getfd: a new reference to the file that descriptor `fd` of
    /// this pidfd's process names, for `caller` (EPERM unless it may
    /// attach to the process; EBADF when the process, a zombie too, has
    /// no such descriptor).
    pub fn get_fd(&self, caller: &super::Task, fd: i32) -> Result<Arc<OpenFile>, Errno> {
        let tg = self.process()?;
        if !Arc::ptr_eq(&tg, caller.tg()) {
            let dumpable = tg.attrs().with(|p| p.dumpable) == SUID_DUMP_USER;
            let allowed = tg
                .creds()
                .is_some_and(|target| caller.creds.may_ptrace_attach(&target, dumpable));
            if !allowed {
                return Err(Errno::EPERM);
            }
        }
        let file = tg.fds().lock().file(fd)?;
        Ok(file)
    }

    fn exited(&self) -> bool {
        match (&self.thread, self.process()) {
            (_, Err(_)) => true,
            (None, Ok(tg)) => tg.is_zombie(),
            (Some(_), Ok(tg)) => self.live_thread(&tg).is_none(),
        }
    }
}

/// Binds every restored pidfd among `files` to its process in `groups`
/// (by pid); a pidfd of a process that is not there is named in the error.
pub fn bind_restored<'a>(
    files: impl IntoIterator<Item = &'a Arc<OpenFile>>,
    groups: &[Arc<ThreadGroup>],
) -> Result<(), String> {
    let by_pid: HashMap<i32, &Arc<ThreadGroup>> = groups.iter().map(|g| (g.tgid(), g)).collect();
    for f in files {
        let Ok(p) = pidfd_of(f) else { continue };
        if p.tg.get().is_some() {
            continue;
        }
        let tg = by_pid
            .get(&p.tgid)
            .ok_or_else(|| format!("a pidfd of pid {}, which names no process", p.tgid))?;
        let _ = p.tg.set(Arc::downgrade(tg));
    }
    Ok(())
}

/// The pidfd behind an open file (EBADF for any other kind, as Linux).
pub fn pidfd_of(file: &OpenFile) -> Result<&PidFd, Errno> {
    file.ops()
        .as_any()
        .downcast_ref::<PidFd>()
        .ok_or(Errno::EBADF)
}

impl FileOps for PidFd {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Anonymous
    }

    /// Its process's pid while it is live or a zombie, -1 once reaped;
    /// the sandbox has one pid namespace, so NSpid says the same.
    fn fdinfo(&self) -> String {
        // A thread's pid goes with the thread; a leader's stays while its
        // zombie does (Linux releases a thread at its end, a leader at
        // its reaping).
        let named = match (&self.thread, self.process()) {
            (_, Err(_)) => false,
            (None, Ok(_)) => true,
            (Some(t), Ok(tg)) => t.tid == self.tgid || self.live_thread(&tg).is_some(),
        };
        let pid = if named { self.pid() } else { -1 };
        format!("Pid:\t{pid}\nNSpid:\t{pid}\n")
    }

    fn save_as(&self) -> SaveAs {
        if self.thread.is_some() {
            return SaveAs::Refuse("a pidfd of one thread (PIDFD_THREAD) is not saved yet");
        }
        SaveAs::Anonymous(FileStateKind::PidFd(self.record()))
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(
        &self,
        _io: &crate::vfs::IoCtx<'_>,
        _buf: &mut [u8],
        _offset: Option<u64>,
    ) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn readiness(&self) -> u32 {
        if self.exited() {
            EPOLLIN | EPOLLRDNORM
        } else {
            0
        }
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        // A reaped process's queue is gone; readiness no longer changes.
        self.process().ok().map(|tg| match self.thread {
            Some(_) => tg.thread_exit_queue().clone(),
            None => tg.exit_queue().clone(),
        })
    }
}
