//! A socket as an open file (Linux's socket_file_ops): read and write are
//! recv and send without flags, poll asks the socket, fstat shows a sockfs
//! inode (S_IFSOCK), and checkpoint saves the socket by its id.

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

use super::unix::{Outgoing, UCred, UnixSocket};
use crate::errno::Errno;
use crate::vfs::file::{FileKind, FileOps, IoCtx, IoctlReply, SaveAs, SeekMode};
use crate::vfs::inode::Inode;
use crate::vfs::poll::WaitQueue;
use crate::vfs::stat::{makedev, Stat};
use crate::vfs::OpenFile;

thread_local! {
    /// The credentials of the task this host thread runs (the sender of a
    /// write(2) on a socket, which has no other way to know it).
    static CURRENT_CRED: Cell<UCred> = const { Cell::new(UCred { pid: 0, uid: 0, gid: 0 }) };
}

/// Notes whose calls this host thread makes (at each syscall).
pub fn note_current(cred: UCred) {
    CURRENT_CRED.with(|c| c.set(cred));
}

/// The credentials of the task making the current call.
pub fn current_cred() -> UCred {
    CURRENT_CRED.with(|c| c.get())
}

/// sockfs's device number (Linux shows an anonymous device).
const SOCKFS_DEV: (u32, u32) = (0, 8);

/// The open-file side of a socket: one per socket, made by socket(2),
/// socketpair(2) or accept(2). Dropping it (the last descriptor and the
/// last file in flight went) releases the socket.
pub struct SocketFile {
    sock: Arc<UnixSocket>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.sock.release();
    }
}

impl SocketFile {
    /// The open file of `sock`, with status flags `flags` (O_NONBLOCK).
    pub fn open(sock: Arc<UnixSocket>, flags: i32) -> Arc<OpenFile> {
        let inode: Arc<dyn Inode> = Arc::new(SocketInode { sock: sock.clone() });
        let ops: Arc<dyn FileOps> = Arc::new(SocketFile { sock });
        OpenFile::new_anonymous(inode, ops, (flags & libc::O_NONBLOCK) | libc::O_RDWR)
    }

    pub fn socket(&self) -> &Arc<UnixSocket> {
        &self.sock
    }
}

/// Whether EPIPE from a write to `file` comes with SIGPIPE: for every
/// file but datagram and seqpacket sockets (Linux raises it only in
/// unix_stream_sendmsg among unix sockets, and for TCP among inet ones).
pub fn write_raises_sigpipe(file: &OpenFile) -> bool {
    if let Some(s) = super::inet::inet_of(file) {
        // TCP's tcp_sendmsg raises it, UDP's send does not.
        return s.proto() == super::inet::Proto::Tcp;
    }
    socket_of(file).map_or(true, |s| s.ty() == super::SockType::Stream)
}

/// The socket behind an open file, or ENOTSOCK.
pub fn socket_of(file: &OpenFile) -> Result<Arc<UnixSocket>, Errno> {
    file.ops()
        .as_any()
        .downcast_ref::<SocketFile>()
        .map(|s| s.sock.clone())
        .ok_or(Errno::ENOTSOCK)
}

impl FileOps for SocketFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Socket
    }

    fn save_as(&self) -> SaveAs {
        SaveAs::Socket { id: self.sock.id() }
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        // Files a plain read finds in flight are dropped (closed), as
        // Linux's read on a socket does.
        self.sock.recv(io, buf, false, false).map(|r| r.copied)
    }

    fn write(&self, io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        let msg = Outgoing {
            data: buf.to_vec(),
            rights: Vec::new(),
            cred: current_cred(),
        };
        self.sock.send(io, msg, None)
    }

    fn ioctl(&self, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        let n = match cmd {
            libc::FIONREAD => self.sock.inq()?,
            libc::TIOCOUTQ => self.sock.outq(),
            // Interface ioctls work on a socket of any family (sock_ioctl).
            _ => return super::inet::procnet::if_ioctl(cmd, input),
        };
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        Ok(IoctlReply {
            ret: 0,
            out: n.to_le_bytes().to_vec(),
        })
    }

    fn readiness(&self) -> u32 {
        self.sock.readiness()
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.sock.wait_queue().clone())
    }
}

/// sockfs's inode of a socket: what fstat says.
struct SocketInode {
    sock: Arc<UnixSocket>,
}

impl Inode for SocketInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        libc::S_IFSOCK
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = self.sock.created();
        Ok(Stat {
            dev: makedev(SOCKFS_DEV.0, SOCKFS_DEV.1),
            ino: self.sock.id(),
            mode: libc::S_IFSOCK | 0o777,
            nlink: 1,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        // open("/proc/self/fd/N") of a socket: Linux's sockfs refuses it.
        Err(Errno::ENXIO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::unix::{SockType, UnixNamespace};
    use crate::vfs::file::Interrupt;

    #[test]
    fn a_socket_file_reads_writes_stats_and_releases() {
        let ns = UnixNamespace::new();
        let (a, b) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        let fa = SocketFile::open(a, libc::O_NONBLOCK);
        let fb = SocketFile::open(b.clone(), 0);
        let intr = Interrupt::new();
        assert_eq!(fa.write(b"abc", &intr), Ok(3));
        assert_eq!(
            fb.ioctl(libc::FIONREAD, &[]).unwrap().out,
            3i32.to_le_bytes()
        );
        let mut buf = [0u8; 8];
        assert_eq!(fb.read(&mut buf, &intr), Ok(3));
        assert_eq!(fa.read(&mut buf, &intr), Err(Errno::EAGAIN));
        assert_eq!(fa.stat().unwrap().mode & libc::S_IFMT, libc::S_IFSOCK);
        assert_eq!(fa.lseek(0, libc::SEEK_SET), Err(Errno::ESPIPE));
        assert!(socket_of(&fa).is_ok());
        drop(fa);
        // The peer's file went: EOF.
        assert_eq!(fb.read(&mut buf, &intr), Ok(0));
        assert_eq!(b.peer_cred(), UCred::default());
    }
}
