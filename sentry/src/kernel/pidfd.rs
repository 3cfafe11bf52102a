//! pidfds (gVisor's kernel/pidfd.go, Linux's pidfd_open(2)): a descriptor
//! that names one process; it polls readable once the process has ended,
//! signals go to it with pidfd_send_signal, and waitid(P_PIDFD) waits for
//! it. It keeps naming that process, never one that reuses its pid.

use std::any::Any;
use std::sync::{Arc, Weak};

use super::thread_group::ThreadGroup;
use crate::errno::Errno;
use crate::vfs::poll::{WaitQueue, EPOLLIN, EPOLLRDNORM};
use crate::vfs::{FileKind, FileOps, OpenFile, SaveAs, SeekMode};

pub struct PidFd {
    tgid: i32,
    /// Weak: a pidfd does not keep its process's zombie alive.
    tg: Weak<ThreadGroup>,
}

impl PidFd {
    /// An open pidfd of `tg`; `nonblock` is PIDFD_NONBLOCK.
    pub fn open(tg: &Arc<ThreadGroup>, nonblock: bool) -> Arc<OpenFile> {
        let ops = Arc::new(PidFd {
            tgid: tg.tgid(),
            tg: Arc::downgrade(tg),
        });
        let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
        crate::vfs::eventfd::anon_file(ops, flags)
    }

    /// The process's pid.
    pub fn tgid(&self) -> i32 {
        self.tgid
    }

    /// The process, while it is live or a zombie (ESRCH once reaped).
    pub fn process(&self) -> Result<Arc<ThreadGroup>, Errno> {
        self.tg.upgrade().ok_or(Errno::ESRCH)
    }

    fn exited(&self) -> bool {
        self.tg.upgrade().is_none_or(|tg| tg.is_zombie())
    }
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

    fn save_as(&self) -> SaveAs {
        SaveAs::Refuse("a pidfd (checkpointing pidfds is not supported yet)")
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
        self.tg.upgrade().map(|tg| tg.exit_queue().clone())
    }
}
