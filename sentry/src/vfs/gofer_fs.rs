//! gofer_fs: the host's files, read-only, reached only through the gofer
//! (gVisor's fsimpl/gofer). Lookups walk one name at a time (the Sentry
//! resolves `..` and symlinks itself); an opened file is a host fd passed by
//! the gofer, read with pread (gVisor's host-fd donation).
//!
//! Everything gofer-specific sits behind [`HostFs`], so the rest of the VFS
//! (and its tests) never depends on the wire protocol.

use std::any::Any;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};

use super::dentry::lock;
use super::file::{DirOps, FileKind, FileOps, IoCtx, SaveAs};
use super::inode::{DirEntry, Fingerprint, Inode};
use super::stat::{Stat, Timespec};
use crate::errno::Errno;

/// A host file as the [`HostFs`] that produced it names it (a gofer handle
/// id). Host-specific: never saved.
pub type HostNode = u64;

/// What the VFS needs of the host's file tree. No call follows a symlink
/// or accepts `..`.
pub trait HostFs: Send + Sync {
    fn root(&self) -> Result<(HostNode, Stat), Errno>;
    /// The child `name` of directory `dir`.
    fn walk(&self, dir: HostNode, name: &[u8]) -> Result<(HostNode, Stat), Errno>;
    fn stat(&self, node: HostNode) -> Result<Stat, Errno>;
    /// The entries of a directory, without `.` and `..`.
    fn readdir(&self, node: HostNode) -> Result<Vec<DirEntry>, Errno>;
    fn readlink(&self, node: HostNode) -> Result<Vec<u8>, Errno>;
    /// A read-only host fd of a regular file.
    fn open(&self, node: HostNode) -> Result<OwnedFd, Errno>;
    /// Forgets a node.
    fn close(&self, node: HostNode);
}

/// [`HostFs`] over a gofer connection.
pub struct GoferHostFs {
    client: gofer::Client,
    handles: Mutex<HashMap<HostNode, gofer::Handle>>,
}

fn gofer_errno(e: gofer::GoferError) -> Errno {
    Errno(e.errno())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec { sec, nsec }
}

/// A gofer stat as the VFS's.
pub fn stat_from_gofer(s: &gofer::FileStat) -> Stat {
    Stat {
        dev: s.dev,
        ino: s.ino,
        mode: s.mode,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        rdev: s.rdev,
        size: u64::try_from(s.size).unwrap_or(0),
        blksize: u32::try_from(s.blksize).unwrap_or(4096),
        blocks: u64::try_from(s.blocks).unwrap_or(0),
        atime: ts(s.atime_sec, s.atime_nsec),
        mtime: ts(s.mtime_sec, s.mtime_nsec),
        ctime: ts(s.ctime_sec, s.ctime_nsec),
    }
}

impl GoferHostFs {
    pub fn new(client: gofer::Client) -> GoferHostFs {
        GoferHostFs {
            client,
            handles: Mutex::new(HashMap::new()),
        }
    }

    fn handle(&self, node: HostNode) -> Result<gofer::Handle, Errno> {
        lock(&self.handles).get(&node).copied().ok_or(Errno::EBADF)
    }

    fn remember(&self, h: gofer::Handle) -> HostNode {
        lock(&self.handles).insert(h.id(), h);
        h.id()
    }
}

impl HostFs for GoferHostFs {
    fn root(&self) -> Result<(HostNode, Stat), Errno> {
        let h = self.client.attach().map_err(gofer_errno)?;
        let st = self.client.stat(&h).map_err(gofer_errno)?;
        Ok((self.remember(h), stat_from_gofer(&st)))
    }

    fn walk(&self, dir: HostNode, name: &[u8]) -> Result<(HostNode, Stat), Errno> {
        let h = self.handle(dir)?;
        let walk = self.client.walk(&h, &[name]).map_err(gofer_errno)?;
        if let Some(n) = walk.nodes.into_iter().next() {
            return Ok((self.remember(n.handle), stat_from_gofer(&n.stat)));
        }
        match walk.status {
            gofer::WalkStatus::Failed { errno } => Err(Errno(errno)),
            _ => Err(Errno::EIO),
        }
    }

    fn stat(&self, node: HostNode) -> Result<Stat, Errno> {
        let h = self.handle(node)?;
        Ok(stat_from_gofer(&self.client.stat(&h).map_err(gofer_errno)?))
    }

    fn readdir(&self, node: HostNode) -> Result<Vec<DirEntry>, Errno> {
        let h = self.handle(node)?;
        let entries = self.client.readdir(&h).map_err(gofer_errno)?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                dtype: e.file_type.dirent_type(),
                name: e.name,
                ino: e.ino,
            })
            .collect())
    }

    fn readlink(&self, node: HostNode) -> Result<Vec<u8>, Errno> {
        let h = self.handle(node)?;
        self.client.readlink(&h).map_err(gofer_errno)
    }

    fn open(&self, node: HostNode) -> Result<OwnedFd, Errno> {
        let h = self.handle(node)?;
        self.client
            .open(&h, gofer::OpenFlags::READ_ONLY)
            .map_err(gofer_errno)
    }

    fn close(&self, node: HostNode) {
        let h = lock(&self.handles).remove(&node);
        if let Some(h) = h {
            // A failed close leaks one server-side fd at worst.
            let _ = self.client.close(h);
        }
    }
}

/// A host file.
pub struct GoferInode {
    fs: Arc<dyn HostFs>,
    node: HostNode,
    /// The stat from the walk: the lower layer does not change under a
    /// running sandbox, and the fingerprint must be the one first seen.
    stat: Stat,
    /// The host fd of a regular file, asked of the gofer on the first open
    /// and shared by every later one: reads are positional (pread), so open
    /// files need no fd of their own, and an open costs no gofer round trip.
    host_fd: OnceLock<Arc<OwnedFd>>,
}

impl GoferInode {
    /// The root of the host tree.
    pub fn root(fs: Arc<dyn HostFs>) -> Result<Arc<GoferInode>, Errno> {
        let (node, stat) = fs.root()?;
        if !stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(Arc::new(GoferInode {
            fs,
            node,
            stat,
            host_fd: OnceLock::new(),
        }))
    }
}

impl Drop for GoferInode {
    fn drop(&mut self) {
        self.fs.close(self.node);
    }
}

impl Inode for GoferInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(self.stat.clone())
    }

    fn file_type(&self) -> u32 {
        self.stat.file_type()
    }

    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let (node, stat) = self.fs.walk(self.node, name)?;
        Ok(Arc::new(GoferInode {
            fs: self.fs.clone(),
            node,
            stat,
            host_fd: OnceLock::new(),
        }))
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.fs.readdir(self.node)
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        if !self.stat.is_symlink() {
            return Err(Errno::EINVAL);
        }
        self.fs.readlink(self.node)
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(Errno::EROFS);
        }
        match self.stat.file_type() {
            libc::S_IFDIR => Ok(Arc::new(DirOps)),
            libc::S_IFREG => {
                let fd = match self.host_fd.get() {
                    Some(fd) => fd.clone(),
                    None => {
                        let fd = Arc::new(self.fs.open(self.node)?);
                        // A racing open may have won; either fd reads the same file.
                        self.host_fd.get_or_init(|| fd).clone()
                    }
                };
                Ok(Arc::new(HostFileOps {
                    fd,
                    size: self.stat.size,
                }))
            }
            // Host devices, fifos and sockets are not reachable through the
            // gofer.
            _ => Err(Errno::ENXIO),
        }
    }

    fn create(&self, _: &[u8], _: u32) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EROFS)
    }
    fn mkdir(&self, _: &[u8], _: u32) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EROFS)
    }
    fn symlink(&self, _: &[u8], _: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EROFS)
    }
    fn unlink(&self, _: &[u8]) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    fn rmdir(&self, _: &[u8]) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    fn rename(&self, _: &[u8], _: &dyn Inode, _: &[u8]) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    fn set_size(&self, _: u64) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    fn set_times(&self, _: Option<Timespec>, _: Option<Timespec>) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    fn chmod(&self, _: u32) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    fn chown(&self, _: Option<u32>, _: Option<u32>) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        Some(Fingerprint::of(&self.stat))
    }
}

/// A host regular file opened read-only through the gofer.
pub struct HostFileOps {
    fd: Arc<OwnedFd>,
    size: u64,
}

impl FileOps for HostFileOps {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Regular
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }

    fn read(&self, _io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        let off = i64::try_from(offset.unwrap_or(0)).map_err(|_| Errno::EINVAL)?;
        loop {
            match nix::sys::uio::pread(self.fd.as_ref(), buf, off) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map_err(Errno::from),
            }
        }
    }

    fn write(&self, _io: &IoCtx<'_>, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }

    fn size(&self) -> Result<u64, Errno> {
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::procfs::tests::OneProc;
    use crate::vfs::testing::FixedClock;

    #[test]
    fn through_a_real_gofer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), b"host\n").unwrap();
        std::os::unix::fs::symlink("../../../etc/hostname", dir.path().join("up")).unwrap();
        let (sentry_end, gofer_end) = gofer::socketpair().unwrap();
        let root = dir.path().to_path_buf();
        std::thread::spawn(move || gofer::serve(&root, gofer_end, true));
        let vfs = super::super::sandbox::build_sandbox_vfs(
            gofer::Client::new(sentry_end),
            Arc::new(FixedClock(1)),
            Arc::new(OneProc),
            crate::vfs::testing::test_memory_file(),
        )
        .unwrap();
        let r = vfs.root().clone();
        let f = vfs.open_at(&r, b"/up", libc::O_RDWR, 0).unwrap();
        let intr = Interrupt::new();
        let mut buf = [0u8; 16];
        assert_eq!(f.read(&mut buf, &intr), Ok(5));
        assert_eq!(&buf[..5], b"host\n");
        assert_eq!(f.pwrite(b"H", 0, &intr), Ok(1));
        assert_eq!(
            std::fs::read(dir.path().join("etc/hostname")).unwrap(),
            b"host\n"
        );
        let d = vfs
            .open_at(&r, b"/etc", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        assert!(!d.getdents64(4096).unwrap().is_empty());
        assert_eq!(vfs.stat_at(&r, b"/nope", true).err(), Some(Errno::ENOENT));
    }
}
