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
    /// Whether writes reach the host (a rw bind mount of a container);
    /// otherwise every change is EROFS.
    fn writable(&self) -> bool {
        false
    }
    /// A host fd of a regular file open for writing (`flags`: O_WRONLY or
    /// O_RDWR, O_TRUNC, O_APPEND).
    fn open_write(&self, _node: HostNode, _flags: i32) -> Result<OwnedFd, Errno> {
        Err(Errno::EROFS)
    }
    /// Makes the regular file `name` in directory `dir`.
    fn create(&self, _dir: HostNode, _name: &[u8], _mode: u32) -> Result<(HostNode, Stat), Errno> {
        Err(Errno::EROFS)
    }
    /// Makes the directory `name` in directory `dir`.
    fn mkdir(&self, _dir: HostNode, _name: &[u8], _mode: u32) -> Result<(HostNode, Stat), Errno> {
        Err(Errno::EROFS)
    }
    /// Makes the symlink `name` in directory `dir`.
    fn symlink(
        &self,
        _dir: HostNode,
        _name: &[u8],
        _target: &[u8],
    ) -> Result<(HostNode, Stat), Errno> {
        Err(Errno::EROFS)
    }
    /// Removes `name` from directory `dir` (an empty directory: `rmdir`).
    fn unlink(&self, _dir: HostNode, _name: &[u8], _rmdir: bool) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    /// Moves `old` (directory, name) to `new`.
    fn rename(&self, _old: (HostNode, &[u8]), _new: (HostNode, &[u8])) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
}

/// [`HostFs`] over a gofer connection.
pub struct GoferHostFs {
    client: gofer::Client,
    handles: Mutex<HashMap<HostNode, gofer::Handle>>,
    writable: bool,
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
            writable: false,
        }
    }

    /// Over a gofer that takes writes (a container's rw bind mount): opens
    /// for writing and new files reach the host.
    pub fn new_writable(client: gofer::Client) -> GoferHostFs {
        GoferHostFs {
            writable: true,
            ..GoferHostFs::new(client)
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

    fn writable(&self) -> bool {
        self.writable
    }

    fn open_write(&self, node: HostNode, flags: i32) -> Result<OwnedFd, Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(node)?;
        let mut how = match flags & libc::O_ACCMODE {
            libc::O_RDWR => gofer::OpenFlags::READ_WRITE,
            libc::O_WRONLY => gofer::OpenFlags::WRITE_ONLY,
            _ => gofer::OpenFlags::READ_ONLY,
        };
        how.truncate = flags & libc::O_TRUNC != 0;
        how.append = flags & libc::O_APPEND != 0;
        self.client.open(&h, how).map_err(gofer_errno)
    }

    fn create(&self, dir: HostNode, name: &[u8], mode: u32) -> Result<(HostNode, Stat), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        let n = self.client.create(&h, name, mode).map_err(gofer_errno)?;
        Ok((self.remember(n.handle), stat_from_gofer(&n.stat)))
    }

    fn mkdir(&self, dir: HostNode, name: &[u8], mode: u32) -> Result<(HostNode, Stat), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        let n = self.client.mkdir(&h, name, mode).map_err(gofer_errno)?;
        Ok((self.remember(n.handle), stat_from_gofer(&n.stat)))
    }

    fn symlink(
        &self,
        dir: HostNode,
        name: &[u8],
        target: &[u8],
    ) -> Result<(HostNode, Stat), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        let n = self.client.symlink(&h, name, target).map_err(gofer_errno)?;
        Ok((self.remember(n.handle), stat_from_gofer(&n.stat)))
    }

    fn unlink(&self, dir: HostNode, name: &[u8], rmdir: bool) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        self.client.unlink(&h, name, rmdir).map_err(gofer_errno)
    }

    fn rename(&self, old: (HostNode, &[u8]), new: (HostNode, &[u8])) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let (from, to) = (self.handle(old.0)?, self.handle(new.0)?);
        // The VFS checked RENAME_NOREPLACE already, under its rename lock.
        self.client
            .rename((&from, old.1), (&to, new.1), false)
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
    /// running sandbox, and the application sees the size first seen.
    stat: Stat,
    /// The host fd of a regular file, asked of the gofer on the first open
    /// and shared by every later one: reads are positional (pread), so open
    /// files need no fd of their own, and an open costs no gofer round trip.
    host_fd: OnceLock<Arc<OwnedFd>>,
    /// The content's fingerprint, computed on the first checkpoint that
    /// needs it (hashing reads the whole file) and kept, like `stat`.
    fingerprint: OnceLock<Fingerprint>,
}

impl GoferInode {
    /// The inode of a node found or made below this directory.
    fn child(&self, (node, stat): (HostNode, Stat)) -> Arc<dyn Inode> {
        Arc::new(GoferInode {
            fs: self.fs.clone(),
            node,
            stat,
            host_fd: OnceLock::new(),
            fingerprint: OnceLock::new(),
        })
    }

    /// The shared host fd of a regular file (see `host_fd`).
    fn host_fd(&self) -> Result<Arc<OwnedFd>, Errno> {
        if let Some(fd) = self.host_fd.get() {
            return Ok(fd.clone());
        }
        let fd = Arc::new(self.fs.open(self.node)?);
        // A racing open may have won; either fd reads the same file.
        Ok(self.host_fd.get_or_init(|| fd).clone())
    }

    /// What the application reads of this file, hashed.
    fn compute_fingerprint(&self) -> Result<Fingerprint, Errno> {
        match self.stat.file_type() {
            libc::S_IFREG => {
                let fd = self.host_fd()?;
                Fingerprint::of_contents(self.stat.size, |off, buf| {
                    let off = i64::try_from(off).map_err(|_| Errno::EOVERFLOW)?;
                    loop {
                        match nix::sys::uio::pread(fd.as_ref(), buf, off) {
                            Err(nix::errno::Errno::EINTR) => continue,
                            r => return r.map_err(Errno::from),
                        }
                    }
                })
            }
            libc::S_IFDIR => Ok(Fingerprint::of_dir(&self.fs.readdir(self.node)?)),
            libc::S_IFLNK => Ok(Fingerprint::of_symlink(&self.fs.readlink(self.node)?)),
            // Nothing else is reachable through the gofer (see `open`).
            _ => Err(Errno::ENXIO),
        }
    }
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
            fingerprint: OnceLock::new(),
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
        if self.fs.writable() {
            // The sandbox's own writes change it.
            return self.fs.stat(self.node);
        }
        Ok(self.stat.clone())
    }

    fn file_type(&self) -> u32 {
        self.stat.file_type()
    }

    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let found = self.fs.walk(self.node, name)?;
        Ok(self.child(found))
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
            if !self.fs.writable() {
                return Err(Errno::EROFS);
            }
            return match self.stat.file_type() {
                libc::S_IFDIR => Err(Errno::EISDIR),
                // A writer has an fd of its own: the shared one is read-only.
                libc::S_IFREG => Ok(Arc::new(HostFileOps {
                    fd: Arc::new(self.fs.open_write(self.node, flags)?),
                    size: self.stat.size,
                    writable: true,
                })),
                _ => Err(Errno::ENXIO),
            };
        }
        match self.stat.file_type() {
            libc::S_IFDIR => Ok(Arc::new(DirOps)),
            libc::S_IFREG => {
                let fd = self.host_fd()?;
                Ok(Arc::new(HostFileOps {
                    fd,
                    size: self.stat.size,
                    writable: false,
                }))
            }
            // Host devices, fifos and sockets are not reachable through the
            // gofer.
            _ => Err(Errno::ENXIO),
        }
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let made = self.fs.create(self.node, name, mode)?;
        Ok(self.child(made))
    }
    fn mkdir(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let made = self.fs.mkdir(self.node, name, mode)?;
        Ok(self.child(made))
    }
    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let made = self.fs.symlink(self.node, name, target)?;
        Ok(self.child(made))
    }
    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        self.fs.unlink(self.node, name, false)
    }
    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        self.fs.unlink(self.node, name, true)
    }
    /// Within one host mount (EXDEV across two).
    fn rename(&self, old_name: &[u8], new_dir: &dyn Inode, new_name: &[u8]) -> Result<(), Errno> {
        let to = new_dir
            .as_any()
            .downcast_ref::<GoferInode>()
            .filter(|d| std::ptr::addr_eq(Arc::as_ptr(&d.fs), Arc::as_ptr(&self.fs)))
            .ok_or(Errno::EXDEV)?;
        self.fs.rename((self.node, old_name), (to.node, new_name))
    }
    fn set_size(&self, size: u64) -> Result<(), Errno> {
        if !self.fs.writable() {
            return Err(Errno::EROFS);
        }
        if self.stat.file_type() != libc::S_IFREG {
            return Err(Errno::EINVAL);
        }
        let fd = self.fs.open_write(self.node, libc::O_WRONLY)?;
        let size = i64::try_from(size).map_err(|_| Errno::EFBIG)?;
        nix::unistd::ftruncate(&fd, size).map_err(Errno::from)
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
        if let Some(f) = self.fingerprint.get() {
            return Some(*f);
        }
        match self.compute_fingerprint() {
            Ok(f) => Some(*self.fingerprint.get_or_init(|| f)),
            // Not kept: a later try may read it. The saved fingerprint
            // matches nothing, so a restore refuses the file, saying so.
            Err(errno) => {
                tracing::warn!(?errno, "cannot read a host file to fingerprint it");
                Some(Fingerprint::unreadable(self.stat.size))
            }
        }
    }
}

/// A host regular file opened read-only through the gofer.
pub struct HostFileOps {
    fd: Arc<OwnedFd>,
    size: u64,
    /// Opened for writing on a writable gofer (a rw bind mount).
    writable: bool,
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

    fn write(&self, _io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        let off = i64::try_from(offset.unwrap_or(0)).map_err(|_| Errno::EINVAL)?;
        loop {
            match nix::sys::uio::pwrite(self.fd.as_ref(), buf, off) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map_err(Errno::from),
            }
        }
    }

    fn size(&self) -> Result<u64, Errno> {
        if self.writable {
            // Writes move it: the host's size, not the walk's.
            let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(self.fd.as_ref()))?;
            return Ok(u64::try_from(st.st_size).unwrap_or(0));
        }
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::procfs::tests::OneProc;
    use crate::vfs::testing::FixedClock;

    /// The sandbox's namespace over `root`, served by a real gofer thread.
    fn vfs_through_a_gofer(root: &std::path::Path) -> crate::vfs::Vfs {
        let (sentry_end, gofer_end) = gofer::socketpair().unwrap();
        let root = root.to_path_buf();
        std::thread::spawn(move || gofer::serve(&root, gofer_end, true));
        super::super::namespace::build_sandbox_vfs(
            gofer::Client::new(sentry_end),
            Arc::new(FixedClock(1)),
            Arc::new(OneProc),
            crate::vfs::testing::test_memory_file(),
        )
        .unwrap()
    }

    #[test]
    fn through_a_real_gofer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), b"host\n").unwrap();
        std::os::unix::fs::symlink("../../../etc/hostname", dir.path().join("up")).unwrap();
        let vfs = vfs_through_a_gofer(dir.path());
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

    /// A writable gofer (a container's rw bind mount): new files, writes
    /// and truncation reach the host; a read-only one refuses them all.
    #[test]
    fn writes_through_a_writable_gofer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"old content\n").unwrap();
        for writable in [true, false] {
            let (sentry_end, gofer_end) = gofer::socketpair().unwrap();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || gofer::serve(&root, gofer_end, !writable));
            let client = gofer::Client::new(sentry_end);
            let fs: Arc<dyn HostFs> = if writable {
                Arc::new(GoferHostFs::new_writable(client))
            } else {
                Arc::new(GoferHostFs::new(client))
            };
            let root = GoferInode::root(fs).unwrap();
            let intr = Interrupt::new();
            let io = IoCtx {
                interrupt: &intr,
                nonblock: false,
            };
            if !writable {
                assert_eq!(root.create(b"new2", 0o644).err(), Some(Errno::EROFS));
                let old = root.lookup(b"old").unwrap();
                assert_eq!(old.open(libc::O_WRONLY).err(), Some(Errno::EROFS));
                assert_eq!(old.set_size(0).err(), Some(Errno::EROFS));
                continue;
            }
            let new = root.create(b"new", 0o640).unwrap();
            assert_eq!(root.create(b"new", 0o640).err(), Some(Errno::EEXIST));
            let f = new.open(libc::O_WRONLY).unwrap();
            assert_eq!(f.write(&io, b"fresh", Some(0)), Ok(5));
            assert_eq!(f.size(), Ok(5));
            assert_eq!(new.stat().unwrap().size, 5);
            let old = root.lookup(b"old").unwrap();
            old.set_size(0).unwrap();
            let f = old.open(libc::O_RDWR).unwrap();
            assert_eq!(f.write(&io, b"x", Some(2)), Ok(1));
            assert_eq!(std::fs::read(dir.path().join("new")).unwrap(), b"fresh");
            assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), b"\0\0x");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("new"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        assert!(!dir.path().join("new2").exists());
    }

    /// A copy of a file (another inode, another mtime) has the same
    /// fingerprint, so a statefile restores against a copy on another
    /// host; a same-size edit, another length or another listing does not.
    #[test]
    fn fingerprints_follow_content_not_inode_or_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + 1) as u8).collect();
        for sub in ["a", "b", "c", "d"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("a/f"), &bytes).unwrap();
        std::fs::write(dir.path().join("b/f"), &bytes).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("b/f"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut edited = bytes.clone();
        edited[123_456] ^= 0x40;
        std::fs::write(dir.path().join("c/f"), &edited).unwrap();
        std::fs::write(dir.path().join("d/f"), &bytes[..bytes.len() - 1]).unwrap();
        std::fs::write(dir.path().join("d/g"), b"").unwrap();

        let vfs = vfs_through_a_gofer(dir.path());
        let r = vfs.root().clone();
        let fp = |path: &[u8]| {
            vfs.resolve(&r, path, false)
                .unwrap()
                .inode()
                .fingerprint()
                .unwrap()
        };
        let a = fp(b"/a/f");
        assert_eq!(a.size, bytes.len() as u64);
        assert_eq!(a.crc32, Some(crc32fast::hash(&bytes)));
        assert_eq!(fp(b"/b/f"), a, "a copy with another inode and mtime");
        assert_ne!(fp(b"/c/f"), a, "one bit changed");
        assert_ne!(fp(b"/d/f"), a, "one byte shorter");
        assert_eq!(fp(b"/a"), fp(b"/b"), "same listing");
        assert_ne!(fp(b"/a"), fp(b"/d"), "another listing");
    }
}
