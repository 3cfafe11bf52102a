//! An inet socket as an open file: read and write are recv and send
//! without flags, poll asks the socket, ioctl answers FIONREAD/SIOCINQ and
//! SIOCOUTQ, fstat shows a sockfs inode, and checkpoint saves the socket
//! by its id (the stack's record holds its state).

use std::any::Any;
use std::sync::Arc;

use super::stack::InetSocket;
use crate::errno::Errno;
use crate::vfs::file::{FileKind, FileOps, IoCtx, IoctlReply, SaveAs, SeekMode};
use crate::vfs::inode::Inode;
use crate::vfs::poll::WaitQueue;
use crate::vfs::stat::{makedev, Stat};
use crate::vfs::OpenFile;

/// sockfs's device number.
const SOCKFS_DEV: (u32, u32) = (0, 8);

/// The open file of an inet socket; dropping it releases the socket.
pub struct InetFile {
    sock: Arc<InetSocket>,
}

impl Drop for InetFile {
    fn drop(&mut self) {
        self.sock.release();
    }
}

impl InetFile {
    /// The open file of `sock`, with status flags `flags` (O_NONBLOCK).
    pub fn open(sock: Arc<InetSocket>, flags: i32) -> Arc<OpenFile> {
        let inode: Arc<dyn Inode> = Arc::new(InetInode { sock: sock.clone() });
        let ops: Arc<dyn FileOps> = Arc::new(InetFile { sock });
        OpenFile::new_anonymous(inode, ops, (flags & libc::O_NONBLOCK) | libc::O_RDWR)
    }
}

/// The inet socket behind an open file, if it is one.
pub fn inet_of(file: &OpenFile) -> Option<Arc<InetSocket>> {
    file.ops()
        .as_any()
        .downcast_ref::<InetFile>()
        .map(|f| f.sock.clone())
}

impl FileOps for InetFile {
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
        self.sock.recv(io, buf, false, false).map(|r| r.copied)
    }

    fn write(&self, io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        self.sock.send(io, buf, None)
    }

    fn ioctl(&self, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        let n = match cmd {
            libc::FIONREAD => self.sock.inq()?,
            libc::TIOCOUTQ => self.sock.outq()?,
            _ => return super::procnet::inet_if_ioctl(cmd, input),
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

/// sockfs's inode of an inet socket.
struct InetInode {
    sock: Arc<InetSocket>,
}

impl Inode for InetInode {
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
        Err(Errno::ENXIO)
    }
}
