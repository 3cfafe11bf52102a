//! The file-system side of a file (gVisor's fsimpl inode / dentry impl).
//!
//! File systems implement [`Inode`]; the [`super::Vfs`] owns names, paths,
//! mounts and the checks common to every file system (read-only mounts,
//! `.`/`..`, existing targets), so an inode only handles single names.

use std::any::Any;
use std::sync::Arc;

use super::file::{FileOps, OpenFile};
use super::stat::{Stat, Timespec};
use crate::errno::Errno;

/// One entry of a directory listing (without `.` and `..`, which the VFS
/// adds from its dentry tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// `DT_*`.
    pub dtype: u8,
}

/// Identity and version of a host file, kept in a statefile so a restore can
/// refuse a file that changed while the sandbox was frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    pub mtime: Timespec,
}
statefile::versioned!(Fingerprint, "vfs.Fingerprint", 1, [Timespec]);
// Timespec is declared here, beside its one saved user outside vfs::state.
statefile::versioned!(Timespec, "vfs.Timespec", 1);

impl Fingerprint {
    pub fn of(st: &Stat) -> Fingerprint {
        Fingerprint {
            ino: st.ino,
            size: st.size,
            mtime: st.mtime,
        }
    }
}

/// A file in some file system. Every operation has a default that refuses
/// it the way Linux does for a file system that lacks it; mutations default
/// to `EPERM` (read-only file systems answer `EROFS` instead).
pub trait Inode: Send + Sync + Any {
    fn as_any(&self) -> &dyn Any;

    fn stat(&self) -> Result<Stat, Errno>;

    /// The `S_IFMT` bits, which never change for an inode.
    fn file_type(&self) -> u32;

    fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    /// The child called `name` (never `.` or `..`).
    fn lookup(&self, _name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::ENOTDIR)
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        Err(Errno::ENOTDIR)
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        Err(Errno::EINVAL)
    }

    /// The file operations of a new open file. `flags` are open(2)'s; the VFS
    /// has already checked O_DIRECTORY, access to directories and read-only
    /// mounts, and truncated for O_TRUNC.
    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno>;

    /// Creates a regular file; `mode` holds only permission bits.
    fn create(&self, _name: &[u8], _mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EPERM)
    }

    fn mkdir(&self, _name: &[u8], _mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EPERM)
    }

    fn symlink(&self, _name: &[u8], _target: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EPERM)
    }

    /// Removes a non-directory child.
    fn unlink(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// Removes an empty directory child.
    fn rmdir(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// Moves child `old_name` to `new_dir`/`new_name` (same file system),
    /// replacing a compatible existing target. The VFS has checked types,
    /// mounts and that a directory is not moved below itself.
    fn rename(
        &self,
        _old_name: &[u8],
        _new_dir: &dyn Inode,
        _new_name: &[u8],
    ) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// truncate(2)/ftruncate(2) of a regular file.
    fn set_size(&self, _size: u64) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// utimensat(2); `None` leaves a time unchanged.
    fn set_times(&self, _atime: Option<Timespec>, _mtime: Option<Timespec>) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// chmod(2): permission bits only.
    fn chmod(&self, _mode: u32) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    fn chown(&self, _uid: Option<u32>, _gid: Option<u32>) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// For a /proc/<pid>/fd/N link: the open file it names (a "magic link",
    /// followed to the file itself rather than through its text).
    fn magic_target(&self) -> Option<Arc<OpenFile>> {
        None
    }

    /// The host file's fingerprint when this file's contents still come
    /// from the host (a gofer file, or an overlay file not copied up).
    fn fingerprint(&self) -> Option<Fingerprint> {
        None
    }
}
