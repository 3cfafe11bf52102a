//! signalfd(2) (gVisor's fsimpl/signalfd): reading takes the calling
//! thread's pending signals that are in the file's mask, as
//! `struct signalfd_siginfo` records.
//!
//! As in Linux, what a signalfd shows depends on who looks: the thread
//! reading or polling it. Each application thread runs on a host thread of
//! its own, so the syscall layer tells this module whose signals the host
//! thread's calls see ([`set_current`]).
//!
//! Saved form (`FileStateKind::SignalFd`): the mask. The signals themselves
//! are the tasks' pending signals, saved with the tasks.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use super::dentry::lock;
use super::eventfd::anon_file;
use super::file::{FileKind, FileOps, IoCtx, OpenFile, SaveAs, SeekMode};
use super::poll::{Waiter, EPOLLIN, EPOLLRDNORM};
use super::state::FileStateKind;
use crate::errno::Errno;
use crate::kernel::signal::{SigInfo, SigSet};

/// `sizeof(struct signalfd_siginfo)`.
pub const SIGINFO_SIZE: usize = 128;

/// The pending signals a task may take: its own (what its thread group's
/// Member holds) and its process's.
#[derive(Clone)]
pub struct PendingSignals {
    pub own: Arc<Mutex<Vec<SigInfo>>>,
    pub process: Arc<Mutex<Vec<SigInfo>>>,
}

impl PendingSignals {
    /// Takes the lowest-numbered signal of `set`, from the thread's own
    /// queue first, then the process's (Linux's dequeue_signal).
    pub fn take(&self, set: SigSet) -> Option<SigInfo> {
        if let Some(info) = take_signal(&mut lock(&self.own), set) {
            return Some(info);
        }
        take_signal(&mut lock(&self.process), set)
    }

    /// Whether a signal of `set` is pending for the thread.
    pub fn any(&self, set: SigSet) -> bool {
        lock(&self.own).iter().any(|s| set.contains(s.signo))
            || lock(&self.process).iter().any(|s| set.contains(s.signo))
    }
}

thread_local! {
    /// The task this host thread runs: its tid and pending signals.
    static CURRENT: RefCell<Option<(i32, PendingSignals)>> = const { RefCell::new(None) };
}

/// Makes task `tid`'s pending signals those this host thread's signalfd
/// calls see; `pending` is asked for only when the task changes.
pub fn set_current(tid: i32, pending: impl FnOnce() -> PendingSignals) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(t, _)| *t) != Some(tid) {
            *c = Some((tid, pending()));
        }
    });
}

fn current() -> Option<PendingSignals> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(_, p)| p.clone()))
}

pub struct SignalFd {
    mask: Mutex<SigSet>,
}

impl SignalFd {
    /// signalfd4's new file. SIGKILL and SIGSTOP are never read through
    /// one (Linux drops them from the mask).
    pub fn open(mask: SigSet, flags: i32) -> Arc<OpenFile> {
        let ops = Arc::new(SignalFd {
            mask: Mutex::new(mask.without_unblockable()),
        });
        anon_file(ops, libc::O_RDWR | (flags & libc::O_NONBLOCK))
    }

    pub fn mask(&self) -> SigSet {
        *lock(&self.mask)
    }

    /// signalfd4 on an existing signalfd: a new mask.
    pub fn set_mask(&self, mask: SigSet) {
        *lock(&self.mask) = mask.without_unblockable();
    }

    /// Takes the next pending signal in the mask: the lowest-numbered
    /// one, the oldest instance of it (Linux's next_signal order).
    fn dequeue(&self, pending: &PendingSignals) -> Option<SigInfo> {
        pending.take(self.mask())
    }
}

/// Removes and returns the lowest-numbered pending signal in `set`, its
/// oldest instance (also rt_sigtimedwait's order).
pub fn take_signal(pending: &mut Vec<SigInfo>, set: SigSet) -> Option<SigInfo> {
    let i = pending
        .iter()
        .enumerate()
        .filter(|(_, p)| set.contains(p.signo))
        .min_by_key(|(i, p)| (p.signo, *i))
        .map(|(i, _)| i)?;
    Some(pending.remove(i))
}

/// The signalfd behind an open file.
pub fn signalfd_of(file: &OpenFile) -> Option<&SignalFd> {
    file.ops().as_any().downcast_ref::<SignalFd>()
}

/// `struct signalfd_siginfo` for `info`.
pub fn encode(info: &SigInfo) -> [u8; SIGINFO_SIZE] {
    let mut b = [0u8; SIGINFO_SIZE];
    b[0..4].copy_from_slice(&info.signo.to_le_bytes());
    b[8..12].copy_from_slice(&info.code.to_le_bytes());
    if crate::kernel::signal::is_fault(info.signo) && info.code > 0 {
        b[72..80].copy_from_slice(&info.addr.to_le_bytes());
        return b;
    }
    if info.signo == libc::SIGCHLD && info.code > 0 {
        // A child's: its pid, uid and status (ssi_status).
        b[12..16].copy_from_slice(&info.pid.to_le_bytes());
        b[16..20].copy_from_slice(&info.uid.to_le_bytes());
        b[40..44].copy_from_slice(&(info.addr as u32).to_le_bytes());
        return b;
    }
    if info.code == crate::kernel::signal::SI_TIMER {
        // A POSIX timer's: its id (ssi_tid) and overrun count.
        b[24..28].copy_from_slice(&info.pid.to_le_bytes());
        b[32..36].copy_from_slice(&info.uid.to_le_bytes());
    } else {
        b[12..16].copy_from_slice(&info.pid.to_le_bytes());
        b[16..20].copy_from_slice(&info.uid.to_le_bytes());
    }
    // sigval: ssi_int is its low half, ssi_ptr all of it.
    b[44..48].copy_from_slice(&(info.addr as u32).to_le_bytes());
    b[48..56].copy_from_slice(&info.addr.to_le_bytes());
    b
}

impl FileOps for SignalFd {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Anonymous
    }

    fn fdinfo(&self) -> String {
        format!("sigmask:\t{:016x}\n", self.mask().0)
    }

    fn save_as(&self) -> SaveAs {
        SaveAs::Anonymous(FileStateKind::SignalFd {
            mask: self.mask().0,
        })
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let room = buf.len() / SIGINFO_SIZE;
        if room == 0 {
            return Err(Errno::EINVAL);
        }
        let Some(pending) = current() else {
            // Only a task's own syscalls read a signalfd.
            return Err(Errno::EINVAL);
        };
        let waiter = Waiter::new();
        // A signal queued for the task interrupts it: that is the wake-up.
        let _on_interrupt = io.interrupt.register(&waiter);
        loop {
            waiter.reset();
            let mut n = 0;
            while n < room {
                let Some(info) = self.dequeue(&pending) else {
                    break;
                };
                buf[n * SIGINFO_SIZE..(n + 1) * SIGINFO_SIZE].copy_from_slice(&encode(&info));
                n += 1;
            }
            if n > 0 {
                return Ok(n * SIGINFO_SIZE);
            }
            if io.nonblock {
                return Err(Errno::EAGAIN);
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            waiter.wait(None, false);
        }
    }

    fn write(&self, _io: &IoCtx<'_>, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn readiness(&self) -> u32 {
        let mask = self.mask();
        match current() {
            Some(p) if p.any(mask) => EPOLLIN | EPOLLRDNORM,
            _ => 0,
        }
    }

    /// Signals reach the polling task by interrupting it, not through a
    /// queue: pollers re-check it.
    fn pollable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::Interrupt;

    fn sig(signo: i32) -> SigInfo {
        SigInfo {
            signo,
            code: 0,
            addr: 0,
            pid: 1,
            uid: 0,
        }
    }

    #[test]
    fn reads_the_pending_signals_in_its_mask_lowest_first() {
        let pending = PendingSignals {
            own: Arc::new(Mutex::new(vec![
                sig(libc::SIGUSR2),
                sig(libc::SIGINT),
                sig(libc::SIGUSR1),
            ])),
            process: Arc::new(Mutex::new(vec![sig(libc::SIGALRM)])),
        };
        let p = pending.clone();
        set_current(4242, move || p);
        let mask = SigSet(
            SigSet::bit(libc::SIGUSR1) | SigSet::bit(libc::SIGUSR2) | SigSet::bit(libc::SIGALRM),
        );
        let f = SignalFd::open(mask, libc::O_NONBLOCK);
        assert_eq!(f.readiness() & EPOLLIN, EPOLLIN);
        let mut buf = [0u8; SIGINFO_SIZE * 4];
        assert_eq!(f.read(&mut buf, &Interrupt::new()), Ok(3 * SIGINFO_SIZE));
        let signo = |n: usize| {
            u32::from_le_bytes(
                buf[n * SIGINFO_SIZE..n * SIGINFO_SIZE + 4]
                    .try_into()
                    .unwrap(),
            )
        };
        // The thread's own, lowest first, then the process's.
        assert_eq!((signo(0), signo(1), signo(2)), (10, 12, 14));
        assert_eq!(lock(&pending.own).len(), 1, "SIGINT is not in the mask");
        assert!(
            lock(&pending.process).is_empty(),
            "the process's SIGUSR1 read"
        );
        assert_eq!(f.read(&mut buf, &Interrupt::new()), Err(Errno::EAGAIN));
        assert_eq!(f.readiness(), 0);
        assert_eq!(
            f.read(&mut [0u8; 100], &Interrupt::new()),
            Err(Errno::EINVAL)
        );
    }
}
