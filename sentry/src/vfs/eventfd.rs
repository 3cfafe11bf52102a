//! eventfd(2) (gVisor's fsimpl/eventfd): a 64-bit counter that writes add
//! to and reads take, with EFD_SEMAPHORE reading one at a time.
//!
//! Saved form: the counter and the semaphore flag, inline in the open
//! file's record (`FileStateKind::EventFd`); O_NONBLOCK is the open file's
//! status flag.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::dentry::lock;
use super::file::{FileKind, FileOps, IoCtx, OpenFile, SaveAs, SeekMode};
use super::inode::Inode;
use super::poll::{block_on, WaitQueue, EPOLLERR, EPOLLIN, EPOLLOUT, EPOLLRDNORM, EPOLLWRNORM};
use super::stat::Stat;
use super::state::FileStateKind;
use crate::errno::Errno;

/// The counter's largest value: a write that would pass it blocks.
pub const EVENTFD_MAX: u64 = u64::MAX - 1;

pub const EFD_SEMAPHORE: i32 = 1;

/// Inode numbers of anonymous files (anon_inodefs has one inode; giving
/// each file its own keeps fstat useful and says nothing of the host).
static NEXT_ANON_INO: AtomicU64 = AtomicU64::new(1);

/// The inode of an anonymous file: what fstat shows (mode 0600, no file
/// type, as Linux's anon_inodefs).
pub(crate) struct AnonInode {
    ino: u64,
}

impl Inode for AnonInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        0
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            dev: super::stat::makedev(0, 13),
            ino: self.ino,
            mode: 0o600,
            nlink: 1,
            blksize: 4096,
            ..Stat::default()
        })
    }

    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::ENXIO)
    }
}

/// An open anonymous file over `ops`, with open(2)-style `flags`
/// (O_RDWR plus O_NONBLOCK, say).
pub(crate) fn anon_file(ops: Arc<dyn FileOps>, flags: i32) -> Arc<OpenFile> {
    let inode: Arc<dyn Inode> = Arc::new(AnonInode {
        ino: NEXT_ANON_INO.fetch_add(1, Ordering::Relaxed),
    });
    OpenFile::new_anonymous(inode, ops, flags)
}

pub struct EventFd {
    count: Mutex<u64>,
    semaphore: bool,
    queue: Arc<WaitQueue>,
}

impl EventFd {
    /// eventfd2's file: `flags` are EFD_SEMAPHORE, EFD_NONBLOCK
    /// (O_NONBLOCK) and EFD_CLOEXEC (the caller's).
    pub fn open(initval: u64, semaphore: bool, nonblock: bool) -> Arc<OpenFile> {
        let ops = Arc::new(EventFd {
            count: Mutex::new(initval),
            semaphore,
            queue: WaitQueue::new(),
        });
        let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
        anon_file(ops, flags)
    }

    /// The counter and the semaphore flag (for checkpointing).
    pub fn state(&self) -> (u64, bool) {
        (*lock(&self.count), self.semaphore)
    }
}

/// The eventfd behind an open file.
pub fn eventfd_of(file: &OpenFile) -> Option<&EventFd> {
    file.ops().as_any().downcast_ref::<EventFd>()
}

impl FileOps for EventFd {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Anonymous
    }

    fn fdinfo(&self) -> String {
        let (count, semaphore) = self.state();
        // Linux adds an eventfd-id, an arbitrary number per file: not kept.
        format!(
            "eventfd-count: {count:16x}\neventfd-semaphore: {}\n",
            u8::from(semaphore)
        )
    }

    fn save_as(&self) -> SaveAs {
        let (count, semaphore) = self.state();
        SaveAs::Anonymous(FileStateKind::EventFd { count, semaphore })
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let take = || -> Result<Option<u64>, Errno> {
            let mut c = lock(&self.count);
            if *c == 0 {
                return if io.nonblock {
                    Err(Errno::EAGAIN)
                } else {
                    Ok(None)
                };
            }
            let v = if self.semaphore { 1 } else { *c };
            *c -= v;
            Ok(Some(v))
        };
        let v = block_on(&self.queue, EPOLLIN, io.interrupt, take)?;
        self.queue.notify(EPOLLOUT | EPOLLWRNORM);
        buf[..8].copy_from_slice(&v.to_ne_bytes());
        Ok(8)
    }

    fn write(&self, io: &IoCtx<'_>, buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        let Some(bytes) = buf.get(..8) else {
            return Err(Errno::EINVAL);
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        let v = u64::from_ne_bytes(word);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let add = || -> Result<Option<()>, Errno> {
            let mut c = lock(&self.count);
            if EVENTFD_MAX - *c < v {
                return if io.nonblock {
                    Err(Errno::EAGAIN)
                } else {
                    Ok(None)
                };
            }
            *c += v;
            Ok(Some(()))
        };
        block_on(&self.queue, EPOLLOUT, io.interrupt, add)?;
        if v > 0 {
            self.queue.notify(EPOLLIN | EPOLLRDNORM);
        }
        Ok(8)
    }

    fn readiness(&self) -> u32 {
        let c = *lock(&self.count);
        let mut r = 0;
        if c > 0 {
            r |= EPOLLIN | EPOLLRDNORM;
        }
        if c < EVENTFD_MAX {
            r |= EPOLLOUT | EPOLLWRNORM;
        }
        if c == u64::MAX {
            r |= EPOLLERR;
        }
        r
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.queue.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::Interrupt;

    fn read(f: &OpenFile) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        f.read(&mut b, &Interrupt::new())?;
        Ok(u64::from_ne_bytes(b))
    }

    fn write(f: &OpenFile, v: u64) -> Result<usize, Errno> {
        f.write(&v.to_ne_bytes(), &Interrupt::new())
    }

    #[test]
    fn counter_and_semaphore() {
        let f = EventFd::open(3, false, true);
        assert_eq!(read(&f), Ok(3));
        assert_eq!(read(&f), Err(Errno::EAGAIN));
        assert_eq!(write(&f, 5), Ok(8));
        assert_eq!(write(&f, u64::MAX), Err(Errno::EINVAL));
        assert_eq!(f.readiness() & EPOLLIN, EPOLLIN);
        assert_eq!(read(&f), Ok(5));
        let s = EventFd::open(2, true, true);
        assert_eq!(read(&s), Ok(1));
        assert_eq!(read(&s), Ok(1));
        assert_eq!(read(&s), Err(Errno::EAGAIN));
        assert_eq!(s.read(&mut [0u8; 4], &Interrupt::new()), Err(Errno::EINVAL));
        // Full: a write that would pass the maximum waits (or EAGAIN).
        let full = EventFd::open(EVENTFD_MAX, false, true);
        assert_eq!(write(&full, 1), Err(Errno::EAGAIN));
        assert_eq!(full.readiness() & EPOLLOUT, 0);
    }

    #[test]
    fn a_blocked_read_wakes_on_write_and_on_interrupt() {
        let f = EventFd::open(0, false, false);
        let g = f.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            write(&g, 7)
        });
        assert_eq!(read(&f), Ok(7));
        t.join().unwrap().unwrap();
        let intr = Interrupt::new();
        let i2 = intr.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            i2.interrupt();
        });
        assert_eq!(f.read(&mut [0u8; 8], &intr), Err(Errno::EINTR));
        t.join().unwrap();
    }
}
