//! Donated host fds (gVisor's fsimpl/host): the sandbox's stdin, stdout and
//! stderr, handed over by the CLI. Reads and writes go to the host fd; a
//! host tty answers the terminal ioctls. This is the only way the sandbox's
//! stdio reaches the caller.

use std::any::Any;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::file::{
    FileKind, FileOps, IoCtx, IoctlReply, OpenFile, SaveAs, SeekMode, INTERRUPT_POLL,
    KERNEL_TERMIOS_SIZE,
};
use super::inode::Inode;
use super::stat::{Stat, Timespec};
use crate::errno::Errno;

/// One donated fd.
pub struct DonatedFd {
    fd: OwnedFd,
    /// Which of the CLI's stdio fds this is (0, 1, 2): what a checkpoint
    /// saves instead of the host fd number.
    index: u32,
    /// What the host fd is (set again when a pool take rebinds it).
    is_tty: AtomicBool,
    regular: AtomicBool,
}

/// Wraps the donated `fd`, stdio number `index`, as an open file with the
/// given access mode flags (O_RDONLY for stdin, O_WRONLY for stdout/err).
pub fn open_donated_fd(fd: OwnedFd, index: u32, flags: i32) -> Result<Arc<OpenFile>, Errno> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    let is_tty = nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false);
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let host = Arc::new(DonatedFd {
        fd,
        index,
        is_tty: AtomicBool::new(is_tty),
        regular: AtomicBool::new(regular),
    });
    let inode: Arc<dyn Inode> = Arc::new(HostInode(host.clone()));
    Ok(OpenFile::new(
        None,
        inode,
        Arc::new(DonatedFdOps(host)),
        flags,
    ))
}

/// The stdio number of a donated-fd open file, for checkpointing.
pub fn donated_index(file: &OpenFile) -> Option<u32> {
    file.ops()
        .as_any()
        .downcast_ref::<DonatedFdOps>()
        .map(|o| o.0.index)
}

/// Makes the donated-fd open file `file` stand for host fd `fd` from now
/// on: a warm pool's sandbox is restored before anyone has taken it, with
/// placeholders for its stdio, and its taker's stdio replaces them. The new
/// fd takes the old one's number (dup2), so every user of the old number
/// sees the new file at once; no task may run meanwhile.
pub fn rebind_donated(file: &OpenFile, fd: OwnedFd) -> Result<(), Errno> {
    let Some(ops) = file.ops().as_any().downcast_ref::<DonatedFdOps>() else {
        return Err(Errno::EINVAL);
    };
    let host = &ops.0;
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    let is_tty = nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false);
    // dup3 keeps it close-on-exec, as every fd of the Sentry is.
    nix::unistd::dup3(
        fd.as_raw_fd(),
        host.fd.as_raw_fd(),
        nix::fcntl::OFlag::O_CLOEXEC,
    )?;
    host.is_tty.store(is_tty, Ordering::SeqCst);
    host.regular
        .store(st.st_mode & libc::S_IFMT == libc::S_IFREG, Ordering::SeqCst);
    Ok(())
}

impl DonatedFd {
    fn regular(&self) -> bool {
        self.regular.load(Ordering::Relaxed)
    }

    /// Waits until the fd is ready for `events`, checking the interrupt
    /// between short polls so that a checkpoint can stop a blocked read.
    fn wait(&self, io: &IoCtx<'_>, events: PollFlags) -> Result<(), Errno> {
        if self.regular() {
            return Ok(());
        }
        loop {
            let mut fds = [PollFd::new(self.fd.as_fd(), events)];
            let timeout = if io.nonblock {
                PollTimeout::ZERO
            } else {
                PollTimeout::try_from(INTERRUPT_POLL).unwrap_or(PollTimeout::ZERO)
            };
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) => {}
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if io.nonblock {
                return Err(Errno::EAGAIN);
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
        }
    }
}

struct DonatedFdOps(Arc<DonatedFd>);

impl FileOps for DonatedFdOps {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::DonatedFd
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::HostStdio(self.0.index)
    }

    fn seek_mode(&self) -> SeekMode {
        if self.0.regular() {
            SeekMode::Delegated
        } else {
            SeekMode::Stream
        }
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if let Some(off) = offset {
            if !self.0.regular() {
                return Err(Errno::ESPIPE);
            }
            let off = i64::try_from(off).map_err(|_| Errno::EINVAL)?;
            return Ok(nix::sys::uio::pread(&self.0.fd, buf, off)?);
        }
        loop {
            self.0.wait(io, PollFlags::POLLIN)?;
            match nix::unistd::read(self.0.fd.as_raw_fd(), buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                // Another reader won the race for the data.
                Err(nix::errno::Errno::EAGAIN) if !io.nonblock => continue,
                r => return Ok(r?),
            }
        }
    }

    fn write(&self, io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if let Some(off) = offset {
            if !self.0.regular() {
                return Err(Errno::ESPIPE);
            }
            let off = i64::try_from(off).map_err(|_| Errno::EINVAL)?;
            return Ok(nix::sys::uio::pwrite(&self.0.fd, buf, off)?);
        }
        loop {
            self.0.wait(io, PollFlags::POLLOUT)?;
            match nix::unistd::write(&self.0.fd, buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) if !io.nonblock => continue,
                r => return Ok(r?),
            }
        }
    }

    fn seek(&self, offset: i64, whence: i32) -> Result<u64, Errno> {
        let whence = match whence {
            libc::SEEK_SET => nix::unistd::Whence::SeekSet,
            libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
            libc::SEEK_END => nix::unistd::Whence::SeekEnd,
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
            _ => return Err(Errno::EINVAL),
        };
        let r = nix::unistd::lseek(self.0.fd.as_raw_fd(), offset, whence)?;
        u64::try_from(r).map_err(|_| Errno::EINVAL)
    }

    fn size(&self) -> Result<u64, Errno> {
        let st = nix::sys::stat::fstat(self.0.fd.as_raw_fd())?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }

    fn ioctl(&self, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        if !self.0.is_tty.load(Ordering::Relaxed) {
            return Err(Errno::ENOTTY);
        }
        let fd = self.0.fd.as_fd();
        match cmd {
            libc::TCGETS => {
                let t: libc::termios = nix::sys::termios::tcgetattr(fd)?.into();
                Ok(IoctlReply {
                    ret: 0,
                    out: encode_termios(&t),
                })
            }
            libc::TCSETS | libc::TCSETSW | libc::TCSETSF => {
                let mut t: libc::termios = nix::sys::termios::tcgetattr(fd)?.into();
                decode_termios(input, &mut t)?;
                let how = match cmd {
                    libc::TCSETS => nix::sys::termios::SetArg::TCSANOW,
                    libc::TCSETSW => nix::sys::termios::SetArg::TCSADRAIN,
                    _ => nix::sys::termios::SetArg::TCSAFLUSH,
                };
                nix::sys::termios::tcsetattr(fd, how, &t.into())?;
                Ok(IoctlReply::default())
            }
            libc::TIOCGWINSZ => {
                let ws = rustix::termios::tcgetwinsize(fd).map_err(|e| Errno(e.raw_os_error()))?;
                let mut out = Vec::with_capacity(8);
                for v in [ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Ok(IoctlReply { ret: 0, out })
            }
            libc::TIOCGPGRP => {
                let pgrp = nix::unistd::tcgetpgrp(fd)?;
                Ok(IoctlReply {
                    ret: 0,
                    out: pgrp.as_raw().to_le_bytes().to_vec(),
                })
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn readiness(&self) -> u32 {
        if self.0.regular() {
            return super::poll::DEFAULT_POLLMASK;
        }
        let mut fds = [PollFd::new(
            self.0.fd.as_fd(),
            PollFlags::POLLIN | PollFlags::POLLOUT | PollFlags::POLLPRI,
        )];
        match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            // poll and epoll bits are the same values.
            Ok(_) => fds[0]
                .revents()
                .map(|r| r.bits() as u16 as u32)
                .unwrap_or(0),
            Err(_) => super::poll::EPOLLERR,
        }
    }

    /// A host tty or pipe is polled on the host (its readiness changes
    /// unannounced, so waiters re-check it); a host regular file is not,
    /// as Linux refuses epoll on regular files.
    fn pollable(&self) -> bool {
        !self.0.regular()
    }
}

/// The kernel's `struct termios` (what TCGETS copies out): four flag words,
/// the line discipline and 19 control characters.
fn encode_termios(t: &libc::termios) -> Vec<u8> {
    let mut out = Vec::with_capacity(KERNEL_TERMIOS_SIZE);
    for v in [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(t.c_line);
    out.extend(t.c_cc.iter().take(19));
    out.resize(KERNEL_TERMIOS_SIZE, 0);
    out
}

fn decode_termios(b: &[u8], t: &mut libc::termios) -> Result<(), Errno> {
    if b.len() < KERNEL_TERMIOS_SIZE {
        return Err(Errno::EFAULT);
    }
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    t.c_iflag = word(0);
    t.c_oflag = word(4);
    t.c_cflag = word(8);
    t.c_lflag = word(12);
    t.c_line = b[16];
    for (dst, src) in t.c_cc.iter_mut().zip(&b[17..KERNEL_TERMIOS_SIZE]) {
        *dst = *src;
    }
    Ok(())
}

/// What fstat on a donated fd reports: the host's answer, minus host
/// identity (device and inode numbers are the sandbox's).
struct HostInode(Arc<DonatedFd>);

impl Inode for HostInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        nix::sys::stat::fstat(self.0.fd.as_raw_fd())
            .map(|s| s.st_mode & libc::S_IFMT)
            .unwrap_or(libc::S_IFCHR)
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let s = nix::sys::stat::fstat(self.0.fd.as_raw_fd())?;
        let t = |sec: i64, nsec: i64| Timespec { sec, nsec };
        Ok(Stat {
            dev: super::stat::makedev(0, 13),
            ino: u64::from(self.0.index) + 1,
            mode: s.st_mode,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: s.st_rdev,
            size: u64::try_from(s.st_size).unwrap_or(0),
            blksize: u32::try_from(s.st_blksize).unwrap_or(4096),
            blocks: u64::try_from(s.st_blocks).unwrap_or(0),
            atime: t(s.st_atime, s.st_atime_nsec),
            mtime: t(s.st_mtime, s.st_mtime_nsec),
            ctime: t(s.st_ctime, s.st_ctime_nsec),
        })
    }

    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(DonatedFdOps(self.0.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;

    #[test]
    fn pipe_stdio_forwards() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let out = open_donated_fd(w, 1, libc::O_WRONLY).unwrap();
        let inp = open_donated_fd(r, 0, libc::O_RDONLY).unwrap();
        let intr = Interrupt::new();
        assert_eq!(out.write(b"hi", &intr), Ok(2));
        let mut buf = [0u8; 8];
        assert_eq!(inp.read(&mut buf, &intr), Ok(2));
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(inp.lseek(0, libc::SEEK_SET), Err(Errno::ESPIPE));
        assert_eq!(inp.ioctl(libc::TCGETS, &[]).err(), Some(Errno::ENOTTY));
        assert_eq!(inp.stat().unwrap().mode & libc::S_IFMT, libc::S_IFIFO);
        assert_eq!(donated_index(&out), Some(1));
        // Nothing to read: non-blocking says EAGAIN, blocking can be
        // interrupted.
        inp.set_status_flags(libc::O_NONBLOCK);
        assert_eq!(inp.read(&mut buf, &intr), Err(Errno::EAGAIN));
        inp.set_status_flags(0);
        intr.interrupt();
        assert_eq!(inp.read(&mut buf, &intr), Err(Errno::EINTR));
        let mut t: libc::termios = nix::sys::termios::tcgetattr(std::io::stdin())
            .map(Into::into)
            .unwrap_or(unsafe_free_termios());
        t.c_lflag = 0x1234;
        t.c_cc[3] = 9;
        let bytes = encode_termios(&t);
        let mut back = t;
        back.c_lflag = 0;
        back.c_cc[3] = 0;
        decode_termios(&bytes, &mut back).unwrap();
        assert_eq!((back.c_lflag, back.c_cc[3]), (0x1234, 9));
    }

    fn unsafe_free_termios() -> libc::termios {
        libc::termios {
            c_iflag: 0,
            c_oflag: 0,
            c_cflag: 0,
            c_lflag: 0,
            c_line: 0,
            c_cc: [0; libc::NCCS],
            c_ispeed: 0,
            c_ospeed: 0,
        }
    }
}
