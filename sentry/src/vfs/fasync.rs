//! Signal-driven I/O (Linux's fs/fcntl.c fasync and f_owner): a file with
//! O_ASYNC set (F_SETFL or FIOASYNC) sends its owner (F_SETOWN,
//! F_SETOWN_EX) a signal, SIGIO or the one F_SETSIG chose, each time it
//! becomes readable or writable. nginx's master process, for one, asks
//! for it on the channels to its workers.
//!
//! The file's wait queue tells a listener of every change; the listener
//! keeps only the events the file is ready for now and hands them to the
//! kernel ([`IoSignals`]), which finds the owner and checks that the
//! setter may signal it. A file with no wait queue (a regular file) never
//! changes readiness, so it sends nothing, as on Linux where such files
//! have no fasync operation.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::{Deserialize, Serialize};

use super::file::FileOps;
use super::poll::{
    Listener, Registration, WaitQueue, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI,
    EPOLLRDNORM, EPOLLWRNORM,
};
use crate::errno::Errno;

/// `struct f_owner_ex`'s types.
pub const F_OWNER_TID: i32 = 0;
pub const F_OWNER_PID: i32 = 1;
pub const F_OWNER_PGRP: i32 = 2;

/// si_code values of a SIGIO-style signal (the POLL_* reasons).
pub const POLL_IN: i32 = 1;
pub const POLL_OUT: i32 = 2;
pub const POLL_ERR: i32 = 4;
pub const POLL_PRI: i32 = 5;
pub const POLL_HUP: i32 = 6;

/// Who receives a file's signals: one thread, one process or a process
/// group, with the ids of whoever set it (Linux's sigio_perm checks them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOwner {
    /// F_OWNER_TID, F_OWNER_PID or F_OWNER_PGRP.
    pub kind: i32,
    pub id: i32,
    pub uid: u32,
    pub euid: u32,
}

statefile::versioned!(FileOwner, "vfs.FileOwner", 1);

impl FileOwner {
    /// F_GETOWN's answer: a process group is negative.
    pub fn getown(&self) -> i32 {
        if self.kind == F_OWNER_PGRP {
            -self.id
        } else {
            self.id
        }
    }
}

/// Delivers a file's signals: the kernel.
pub trait IoSignals: Send + Sync {
    /// Sends `signo` (0: plain SIGIO) for `reason` (a POLL_* code) on
    /// descriptor `fd` to `owner`'s tasks that its setter may signal.
    fn send_io_signal(&self, owner: &FileOwner, signo: i32, reason: i32, fd: i32);
}

/// si_band for a POLL_* reason (Linux's band_table).
pub fn band_of(reason: i32) -> i64 {
    let bits = match reason {
        POLL_IN => EPOLLIN | EPOLLRDNORM,
        POLL_OUT => EPOLLOUT | EPOLLWRNORM | super::poll::EPOLLWRBAND,
        POLL_ERR => EPOLLERR,
        POLL_PRI => EPOLLPRI | super::poll::EPOLLRDBAND,
        POLL_HUP => EPOLLHUP | EPOLLERR,
        _ => 0,
    };
    i64::from(bits)
}

/// What an open file description holds for signal-driven I/O.
#[derive(Default)]
pub struct Fasync {
    target: Arc<Mutex<Target>>,
    /// While O_ASYNC is set on a file with a wait queue: the listener's
    /// place on it.
    armed: Mutex<Option<Armed>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Target {
    owner: Option<FileOwner>,
    /// F_SETSIG's signal; 0 is SIGIO without siginfo details.
    signo: i32,
    /// The descriptor O_ASYNC was set through (si_fd).
    fd: i32,
}

struct Armed {
    _registration: Registration,
    _listener: Arc<SigioListener>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a saved open file keeps of its signal-driven I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FasyncState {
    pub owner: Option<FileOwner>,
    pub signo: i32,
    pub fd: i32,
}
statefile::versioned!(FasyncState, "vfs.Fasync", 1, [FileOwner]);

impl Fasync {
    pub fn owner(&self) -> Option<FileOwner> {
        lock(&self.target).owner
    }

    /// F_SETOWN/F_SETOWN_EX (`None`: F_SETOWN 0, no owner).
    pub fn set_owner(&self, owner: Option<FileOwner>) {
        lock(&self.target).owner = owner;
    }

    pub fn signal(&self) -> i32 {
        lock(&self.target).signo
    }

    /// F_SETSIG: 0 or a valid signal number.
    pub fn set_signal(&self, signo: i32) -> Result<(), Errno> {
        if !(0..=crate::kernel::signal::NSIG as i32).contains(&signo) {
            return Err(Errno::EINVAL);
        }
        lock(&self.target).signo = signo;
        Ok(())
    }

    /// O_ASYNC turned on (through descriptor `fd`) or off.
    pub fn set_armed(
        &self,
        on: bool,
        fd: i32,
        ops: &Arc<dyn FileOps>,
        signals: Weak<dyn IoSignals>,
    ) {
        let mut armed = lock(&self.armed);
        if !on {
            *armed = None;
            return;
        }
        lock(&self.target).fd = fd;
        let Some(queue) = ops.wait_queue() else {
            return;
        };
        if armed.is_none() {
            *armed = Some(arm(&queue, ops, &self.target, signals));
        }
    }

    pub fn save(&self) -> FasyncState {
        let t = *lock(&self.target);
        FasyncState {
            owner: t.owner,
            signo: t.signo,
            fd: t.fd,
        }
    }

    /// A restored file's owner, signal and descriptor (validated by
    /// [`FasyncState::check`]; arming follows from its O_ASYNC flag, by
    /// the caller).
    pub fn restore(&self, s: &FasyncState) {
        *lock(&self.target) = Target {
            owner: s.owner,
            signo: s.signo,
            fd: s.fd,
        };
    }
}

impl FasyncState {
    /// What a restore refuses: an owner of no known kind or outside the
    /// pid range, a signal Linux has not, a negative descriptor.
    pub fn check(&self) -> Result<(), String> {
        if let Some(o) = &self.owner {
            if !(F_OWNER_TID..=F_OWNER_PGRP).contains(&o.kind) {
                return Err(format!("owner kind {}", o.kind));
            }
            if !(1..=crate::kernel::pid_namespace::PID_MAX).contains(&o.id) {
                return Err(format!("owner id {}", o.id));
            }
        }
        if !(0..=crate::kernel::signal::NSIG as i32).contains(&self.signo) {
            return Err(format!("signal {}", self.signo));
        }
        if self.fd < 0 {
            return Err(format!("descriptor {}", self.fd));
        }
        Ok(())
    }
}

fn arm(
    queue: &Arc<WaitQueue>,
    ops: &Arc<dyn FileOps>,
    target: &Arc<Mutex<Target>>,
    signals: Weak<dyn IoSignals>,
) -> Armed {
    let listener = Arc::new(SigioListener {
        file: Arc::downgrade(ops),
        target: target.clone(),
        signals,
    });
    let as_listener: Arc<dyn Listener> = listener.clone();
    let registration = queue.register(
        EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLPRI,
        false,
        Arc::downgrade(&as_listener),
    );
    Armed {
        _registration: registration,
        _listener: listener,
    }
}

struct SigioListener {
    file: Weak<dyn FileOps>,
    target: Arc<Mutex<Target>>,
    signals: Weak<dyn IoSignals>,
}

impl Listener for SigioListener {
    fn notify(&self, events: u32) {
        let (Some(file), Some(signals)) = (self.file.upgrade(), self.signals.upgrade()) else {
            return;
        };
        let t = *lock(&self.target);
        let Some(owner) = t.owner else {
            return;
        };
        // Only what this file is ready for now: a pipe's read end hears of
        // its writer's room too, and says nothing for it.
        let ready = file.readiness() & events;
        for reason in reasons(ready) {
            signals.send_io_signal(&owner, t.signo, reason, t.fd);
        }
    }
}

/// The POLL_* reasons `ready` gives, as Linux's drivers send them: data
/// (POLL_IN, also for a hangup with data left), room (POLL_OUT), urgent
/// data, errors, and a bare hangup.
fn reasons(ready: u32) -> Vec<i32> {
    let mut out = Vec::new();
    if ready & (EPOLLIN | EPOLLRDNORM) != 0 {
        out.push(POLL_IN);
    } else if ready & EPOLLHUP != 0 {
        out.push(POLL_HUP);
    }
    if ready & (EPOLLOUT | EPOLLWRNORM) != 0 {
        out.push(POLL_OUT);
    }
    if ready & EPOLLPRI != 0 {
        out.push(POLL_PRI);
    }
    if ready & EPOLLERR != 0 {
        out.push(POLL_ERR);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_follow_readiness() {
        assert_eq!(reasons(EPOLLIN | EPOLLOUT), vec![POLL_IN, POLL_OUT]);
        assert_eq!(reasons(EPOLLHUP), vec![POLL_HUP]);
        assert_eq!(reasons(EPOLLIN | EPOLLHUP), vec![POLL_IN]);
        assert!(reasons(0).is_empty());
        assert_eq!(band_of(POLL_IN), 0x41);
        assert_eq!(band_of(POLL_OUT), 0x304);
    }

    #[test]
    fn f_setsig_takes_valid_signals_only() {
        let f = Fasync::default();
        assert_eq!(f.set_signal(65), Err(Errno::EINVAL));
        assert_eq!(f.set_signal(-1), Err(Errno::EINVAL));
        f.set_signal(libc::SIGRTMIN()).unwrap();
        assert_eq!(f.signal(), libc::SIGRTMIN());
    }
}
