//! Pipes (gVisor's kernel/pipe): a 64 KiB buffer with a read end and a
//! write end, each an [`OpenFile`]. A FIFO (a named pipe, mknod S_IFIFO)
//! is the same buffer reached through a file-system node: its ends are
//! opened by path, an O_RDWR open is both ends in one file, and an open
//! of one end waits for the other (fifo_open in Linux).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::dentry::lock;
use super::file::{
    FileKind, FileOps, IoCtx, IoctlReply, OpenFile, SaveAs, SeekMode, INTERRUPT_POLL,
};
use super::inode::Inode;
use super::poll::{WaitQueue, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDNORM, EPOLLWRNORM};
use super::stat::{Stat, Timespec};
use crate::errno::Errno;

/// The buffer size (Linux's default pipe size).
pub const PIPE_SIZE: usize = 64 * 1024;
/// Writes up to this size are atomic (POSIX PIPE_BUF).
pub const PIPE_BUF: usize = 4096;

/// Pipe ids are sandbox ids (checkpoint names pipes by them); they also
/// serve as the pipefs inode numbers.
static NEXT_PIPE: AtomicU64 = AtomicU64::new(1);

struct PipeState {
    buf: VecDeque<u8>,
    readers: usize,
    writers: usize,
    /// Opens of each end so far: a FIFO open waiting for the other end
    /// wakes for one that came and went meanwhile, as Linux's
    /// r_counter/w_counter make it.
    read_opens: u64,
    write_opens: u64,
    /// Bytes at the front that a splice or tee has copied out and not yet
    /// released: readers wait for them.
    reserved: usize,
}

pub struct Pipe {
    id: u64,
    created: Timespec,
    state: Mutex<PipeState>,
    cond: Condvar,
    /// Pollers of either end: told of data (IN), room (OUT) and a closed
    /// end (HUP/ERR).
    queue: Arc<WaitQueue>,
}

impl Pipe {
    /// A pipe holding `data` (restore) and no ends yet.
    pub fn new(id: Option<u64>, data: &[u8], now: Timespec) -> Arc<Pipe> {
        let id = match id {
            Some(id) => {
                NEXT_PIPE.fetch_max(id.saturating_add(1), Ordering::Relaxed);
                id
            }
            None => NEXT_PIPE.fetch_add(1, Ordering::Relaxed),
        };
        let keep = data.len().min(PIPE_SIZE);
        Arc::new(Pipe {
            id,
            created: now,
            state: Mutex::new(PipeState {
                buf: data[..keep].iter().copied().collect(),
                readers: 0,
                writers: 0,
                read_opens: 0,
                write_opens: 0,
                reserved: 0,
            }),
            cond: Condvar::new(),
            queue: WaitQueue::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The bytes buffered now (for checkpointing).
    pub fn contents(&self) -> Vec<u8> {
        lock(&self.state).buf.iter().copied().collect()
    }

    /// Opens one end of an anonymous pipe; `flags` carries O_NONBLOCK (and
    /// is the open file's status flags).
    pub fn open_end(self: &Arc<Self>, read: bool, flags: i32) -> Arc<OpenFile> {
        let acc = if read { libc::O_RDONLY } else { libc::O_WRONLY };
        let inode: Arc<dyn Inode> = Arc::new(PipeInode { pipe: self.clone() });
        let ops = self.end_ops(acc, false);
        OpenFile::new(None, inode, ops, (flags & !libc::O_ACCMODE) | acc)
    }

    /// The ops of an end opened with access mode `acc` (O_RDWR: both
    /// ends, only FIFOs allow it), counted as open from now on. A FIFO
    /// end waits for its peer in [`FileOps::wait_open`].
    pub(crate) fn end_ops(self: &Arc<Self>, acc: i32, fifo: bool) -> Arc<dyn FileOps> {
        let readable = acc != libc::O_WRONLY;
        let writable = acc != libc::O_RDONLY;
        let (opened, peer_at_open) = {
            let mut st = lock(&self.state);
            // Whether the other end is open now, in the same step as this
            // end is counted (fifo_open decides under the pipe's lock: a
            // peer that leaves before this open waits would otherwise be
            // missed).
            let peer = if readable {
                st.writers > 0
            } else {
                st.readers > 0
            };
            if readable {
                st.readers += 1;
                st.read_opens += 1;
            }
            if writable {
                st.writers += 1;
                st.write_opens += 1;
            }
            ((st.read_opens, st.write_opens), peer)
        };
        self.cond.notify_all();
        // A poller of the other end sees the peer arrive.
        self.queue.notify(EPOLLIN | EPOLLOUT);
        Arc::new(PipeEnd {
            pipe: self.clone(),
            readable,
            writable,
            fifo,
            opened,
            peer_at_open,
        })
    }

    fn wait<'a>(
        &self,
        g: std::sync::MutexGuard<'a, PipeState>,
    ) -> std::sync::MutexGuard<'a, PipeState> {
        match self.cond.wait_timeout(g, INTERRUPT_POLL) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.take(io, buf, false)
    }

    /// Copies out buffered bytes and reserves them: no reader takes them
    /// until [`Pipe::release`] says how many were used (splice, tee), so a
    /// short write on the other side loses nothing and no byte is read
    /// twice. Waits as read(2) does while the pipe is empty with a writer.
    pub(crate) fn peek(&self, io: &IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.take(io, buf, true)
    }

    fn take(&self, io: &IoCtx<'_>, buf: &mut [u8], reserve: bool) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = lock(&self.state);
        loop {
            if st.reserved == 0 && !st.buf.is_empty() {
                let n = buf.len().min(st.buf.len());
                for (dst, src) in buf.iter_mut().zip(st.buf.iter()) {
                    *dst = *src;
                }
                if reserve {
                    st.reserved = n;
                    return Ok(n);
                }
                st.buf.drain(..n);
                self.cond.notify_all();
                drop(st);
                self.queue.notify(EPOLLOUT | EPOLLWRNORM);
                return Ok(n);
            }
            if st.writers == 0 && st.reserved == 0 {
                return Ok(0);
            }
            if io.nonblock {
                return Err(Errno::EAGAIN);
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            st = self.wait(st);
        }
    }

    /// Ends a reservation of [`Pipe::peek`]: the first `used` of the
    /// reserved bytes leave the pipe, the rest stay for the next reader.
    pub(crate) fn release(&self, used: usize) {
        let mut st = lock(&self.state);
        let n = used.min(st.reserved).min(st.buf.len());
        st.buf.drain(..n);
        st.reserved = 0;
        self.cond.notify_all();
        drop(st);
        self.queue
            .notify(EPOLLOUT | EPOLLWRNORM | EPOLLIN | EPOLLRDNORM);
    }

    /// vmsplice(2) of user pages into the pipe: waits (by `io`'s rules)
    /// until there is room, then puts in what fits and returns, as
    /// Linux's iter_to_pipe does, rather than waiting for all of `buf`.
    pub(crate) fn write_some(&self, io: &IoCtx<'_>, buf: &[u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = lock(&self.state);
        loop {
            if st.readers == 0 {
                return Err(Errno::EPIPE);
            }
            let room = PIPE_SIZE - st.buf.len();
            if room > 0 {
                let n = room.min(buf.len());
                st.buf.extend(&buf[..n]);
                self.cond.notify_all();
                drop(st);
                self.queue.notify(EPOLLIN | EPOLLRDNORM);
                return Ok(n);
            }
            if io.nonblock {
                return Err(Errno::EAGAIN);
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            st = self.wait(st);
        }
    }

    /// read(2) from the pipe with `io`'s waiting rules (vmsplice to user
    /// pages, whose SPLICE_F_NONBLOCK may differ from the end's flag).
    pub(crate) fn read_into(&self, io: &IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        self.read(io, buf)
    }

    /// write(2) into the pipe with `io`'s waiting rules (splice's
    /// SPLICE_F_NONBLOCK may differ from the end's O_NONBLOCK).
    pub(crate) fn write_from(&self, io: &IoCtx<'_>, buf: &[u8]) -> Result<usize, Errno> {
        self.write(io, buf)
    }

    fn write(&self, io: &IoCtx<'_>, buf: &[u8]) -> Result<usize, Errno> {
        let mut st = lock(&self.state);
        let mut done = 0;
        loop {
            if st.readers == 0 {
                // The kernel raises SIGPIPE on EPIPE.
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EPIPE)
                };
            }
            let room = PIPE_SIZE - st.buf.len();
            let left = buf.len() - done;
            // A write of at most PIPE_BUF bytes goes in whole or waits.
            let atomic = buf.len() <= PIPE_BUF;
            if room > 0 && (!atomic || room >= left) {
                let n = room.min(left);
                st.buf.extend(&buf[done..done + n]);
                done += n;
                self.cond.notify_all();
                // Told without the pipe's lock: a listener (an epoll set)
                // may be polling this pipe from under its own lock.
                drop(st);
                self.queue.notify(EPOLLIN | EPOLLRDNORM);
                if done == buf.len() {
                    return Ok(done);
                }
                st = lock(&self.state);
                continue;
            }
            if io.nonblock {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EAGAIN)
                };
            }
            if io.interrupt.is_set() {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EINTR)
                };
            }
            st = self.wait(st);
        }
    }
}

/// One end of a pipe (both, for a FIFO opened O_RDWR); dropping it (the
/// last reference to its open file) closes the end.
struct PipeEnd {
    pipe: Arc<Pipe>,
    readable: bool,
    writable: bool,
    /// Opened through a FIFO's node (saved with its path).
    fifo: bool,
    /// The pipe's (read_opens, write_opens) once this end was counted.
    opened: (u64, u64),
    /// Whether the other end was open when this one was counted.
    peer_at_open: bool,
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let mut st = lock(&self.pipe.state);
        if self.readable {
            st.readers = st.readers.saturating_sub(1);
        }
        if self.writable {
            st.writers = st.writers.saturating_sub(1);
        }
        self.pipe.cond.notify_all();
        drop(st);
        // A reader sees HUP when the last writer goes, a writer ERR when
        // the last reader goes.
        let mut events = 0;
        if self.readable {
            events |= EPOLLERR;
        }
        if self.writable {
            events |= EPOLLHUP | EPOLLIN;
        }
        self.pipe.queue.notify(events);
    }
}

impl FileOps for PipeEnd {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        if self.readable {
            FileKind::PipeRead
        } else {
            FileKind::PipeWrite
        }
    }
    /// An O_RDWR FIFO end saves as its read end: the open file's access
    /// mode says it is both.
    fn save_as(&self) -> SaveAs {
        SaveAs::PipeEnd {
            pipe: self.pipe.id(),
            read: self.readable,
        }
    }

    /// fifo_open: a reader waits for a writer and a writer for a reader,
    /// unless O_NONBLOCK (a reader then goes on at once, a writer without
    /// a reader fails ENXIO) or O_RDWR (it is both).
    fn wait_open(&self, io: &IoCtx<'_>) -> Result<(), Errno> {
        if !self.fifo || (self.readable && self.writable) || self.peer_at_open {
            return Ok(());
        }
        if io.nonblock {
            return if self.readable {
                Ok(())
            } else {
                Err(Errno::ENXIO)
            };
        }
        // wait_for_partner: until an end of the other kind has opened since
        // (it may have closed again meanwhile).
        let mut st = lock(&self.pipe.state);
        let partner_opened = |st: &PipeState| {
            if self.readable {
                st.write_opens != self.opened.1
            } else {
                st.read_opens != self.opened.0
            }
        };
        while !partner_opened(&st) {
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            st = self.pipe.wait(st);
        }
        Ok(())
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        if !self.readable {
            return Err(Errno::EBADF);
        }
        self.pipe.read(io, buf)
    }

    fn write(&self, io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        if !self.writable {
            return Err(Errno::EBADF);
        }
        self.pipe.write(io, buf)
    }

    fn ioctl(&self, cmd: u64, _input: &[u8]) -> Result<IoctlReply, Errno> {
        if cmd == libc::FIONREAD {
            let n = lock(&self.pipe.state).buf.len() as i32;
            return Ok(IoctlReply {
                ret: 0,
                out: n.to_le_bytes().to_vec(),
            });
        }
        Err(Errno::ENOTTY)
    }

    fn readiness(&self) -> u32 {
        let st = lock(&self.pipe.state);
        let mut r = 0;
        if self.readable {
            if !st.buf.is_empty() {
                r |= EPOLLIN | EPOLLRDNORM;
            }
            // A FIFO's reader that has not yet had a writer is not hung
            // up (Linux: pipe_poll against r_counter).
            let had_writer = !self.fifo || st.write_opens != self.opened.1;
            if st.writers == 0 && had_writer {
                r |= EPOLLHUP;
            }
        }
        if self.writable {
            if st.buf.len() < PIPE_SIZE {
                r |= EPOLLOUT | EPOLLWRNORM;
            }
            if st.readers == 0 {
                r |= EPOLLERR;
            }
        }
        r
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.pipe.queue.clone())
    }
}

impl PipeEnd {
    pub(crate) fn pipe(&self) -> &Arc<Pipe> {
        &self.pipe
    }
}

/// Returns the pipe and end of a pipe open file, for checkpointing.
pub fn pipe_of(file: &OpenFile) -> Option<(Arc<Pipe>, bool)> {
    let end = file.ops().as_any().downcast_ref::<PipeEnd>()?;
    Some((end.pipe().clone(), end.readable))
}

/// Whether `file` is an end of a FIFO opened through its node.
pub fn is_fifo_end(file: &OpenFile) -> bool {
    file.ops()
        .as_any()
        .downcast_ref::<PipeEnd>()
        .is_some_and(|e| e.fifo)
}

/// pipefs's inode: what fstat on a pipe reports.
struct PipeInode {
    pipe: Arc<Pipe>,
}

impl Inode for PipeInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        libc::S_IFIFO
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            dev: super::stat::makedev(0, 12),
            ino: self.pipe.id,
            mode: libc::S_IFIFO | 0o600,
            nlink: 1,
            blksize: PIPE_BUF as u32,
            atime: self.pipe.created,
            mtime: self.pipe.created,
            ctime: self.pipe.created,
            ..Stat::default()
        })
    }

    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::ENXIO)
    }
}

/// pipe2(2): a new pipe's read and write ends. `flags` may hold O_NONBLOCK
/// (O_CLOEXEC is the caller's).
pub fn new_pipe(flags: i32, now: Timespec) -> (Arc<OpenFile>, Arc<OpenFile>) {
    let pipe = Pipe::new(None, &[], now);
    let status = flags & libc::O_NONBLOCK;
    (pipe.open_end(true, status), pipe.open_end(false, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;

    #[test]
    fn eof_epipe_eagain() {
        let intr = Interrupt::new();
        let (r, w) = new_pipe(libc::O_NONBLOCK, Timespec::default());
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf, &intr), Err(Errno::EAGAIN));
        assert_eq!(w.write(b"abc", &intr), Ok(3));
        assert_eq!(r.read(&mut buf, &intr), Ok(3));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(r.lseek(0, libc::SEEK_SET), Err(Errno::ESPIPE));
        assert_eq!(r.pread(&mut buf, 0, &intr), Err(Errno::ESPIPE));
        assert_eq!(r.write(b"x", &intr), Err(Errno::EBADF));
        // Fill it: a non-blocking write then takes what fits.
        let big = vec![7u8; PIPE_SIZE + 10];
        assert_eq!(w.write(&big, &intr), Ok(PIPE_SIZE));
        assert_eq!(w.write(b"x", &intr), Err(Errno::EAGAIN));
        drop(w);
        let mut all = vec![0u8; PIPE_SIZE * 2];
        assert_eq!(r.read(&mut all, &intr), Ok(PIPE_SIZE));
        assert_eq!(r.read(&mut all, &intr), Ok(0), "EOF without writers");

        let (r, w) = new_pipe(0, Timespec::default());
        drop(r);
        assert_eq!(w.write(b"x", &intr), Err(Errno::EPIPE));
    }

    #[test]
    fn blocking_read_wakes_and_interrupts() {
        let (r, w) = new_pipe(0, Timespec::default());
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            w.write(b"hi", &Interrupt::new())
        });
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf, &Interrupt::new()), Ok(2));
        assert_eq!(t.join().unwrap(), Ok(2));

        let (r, _w) = new_pipe(0, Timespec::default());
        let intr = Interrupt::new();
        let i2 = intr.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            i2.interrupt();
        });
        assert_eq!(r.read(&mut buf, &intr), Err(Errno::EINTR));
        t.join().unwrap();
    }

    /// Bytes a splice copied out stay reserved: no reader takes them until
    /// the splice releases what it used, and the rest is read next.
    #[test]
    fn peeked_bytes_are_reserved_until_released() {
        let intr = Interrupt::new();
        let (r, w) = new_pipe(libc::O_NONBLOCK, Timespec::default());
        let (pipe, _) = pipe_of(&r).unwrap();
        w.write(b"abcde", &intr).unwrap();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: true,
        };
        let mut buf = [0u8; 8];
        assert_eq!(pipe.peek(&io, &mut buf), Ok(5));
        assert_eq!(r.read(&mut buf, &intr), Err(Errno::EAGAIN), "reserved");
        drop(w);
        assert_eq!(
            r.read(&mut buf, &intr),
            Err(Errno::EAGAIN),
            "no EOF while reserved"
        );
        pipe.release(2);
        assert_eq!(r.read(&mut buf, &intr), Ok(3));
        assert_eq!(&buf[..3], b"cde");
        assert_eq!(r.read(&mut buf, &intr), Ok(0));
    }

    /// A FIFO reader opened while a writer was there does not wait, even
    /// when that writer closed before the reader got to its wait (the race
    /// that hung a guest under load); one opened alone waits until a writer
    /// opens, even one that closes at once.
    #[test]
    fn fifo_open_decides_when_it_counts() {
        let pipe = Pipe::new(None, &[], Timespec::default());
        let writer = pipe.end_ops(libc::O_WRONLY, true);
        let reader = pipe.end_ops(libc::O_RDONLY, true);
        drop(writer);
        let intr = Interrupt::new();
        let i2 = intr.clone();
        // Were the reader to wait, this interrupt would end it with EINTR.
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            i2.interrupt();
        });
        let io = IoCtx {
            interrupt: &intr,
            nonblock: false,
        };
        assert_eq!(reader.wait_open(&io), Ok(()));
        t.join().unwrap();

        let lone = Pipe::new(None, &[], Timespec::default());
        let reader = lone.end_ops(libc::O_RDONLY, true);
        let l2 = lone.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(l2.end_ops(libc::O_WRONLY, true));
        });
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: false,
        };
        assert_eq!(reader.wait_open(&io), Ok(()), "a writer came and went");
        t.join().unwrap();
        let nb = IoCtx {
            interrupt: &intr,
            nonblock: true,
        };
        let alone = Pipe::new(None, &[], Timespec::default()).end_ops(libc::O_WRONLY, true);
        assert_eq!(alone.wait_open(&nb), Err(Errno::ENXIO));
    }

    #[test]
    fn fionread_and_stat() {
        let (r, w) = new_pipe(0, Timespec::default());
        w.write(b"12345", &Interrupt::new()).unwrap();
        let rep = r.ioctl(libc::FIONREAD, &[]).unwrap();
        assert_eq!(rep.out, 5i32.to_le_bytes());
        assert_eq!(r.stat().unwrap().mode & libc::S_IFMT, libc::S_IFIFO);
        assert_eq!(r.status_flags() & libc::O_ACCMODE, libc::O_RDONLY);
        assert_eq!(w.status_flags() & libc::O_ACCMODE, libc::O_WRONLY);
    }
}
