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

/// What a host file holds, kept in a statefile so a restore can refuse a
/// file that is not the one the application was reading: changed while the
/// sandbox was frozen, or a different file on the host it is restored on.
///
/// Only what the application reads through the file is compared: its size
/// and a crc32 of its bytes (read through the gofer's fd, the path the
/// application's own reads take). No inode number, device or mtime: they
/// are the host's (invariant 2) and differ for an identical copy (a fresh
/// checkout, an image unpacked on another machine), which the restored
/// application cannot tell from the original. Version 1 held ino, size and
/// mtime; a version-1 statefile is refused by name (nothing but the same
/// inode on the same host could satisfy it, and no content to check is in
/// it), see golden/README.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// A regular file's length in bytes; a directory's number of entries;
    /// a symlink target's length.
    pub size: u64,
    /// crc32 (IEEE) of a regular file's bytes, of a directory's entries
    /// (sorted by name, each `name NUL dtype`), of a symlink's target.
    /// `None`: the content could not be read when it was saved, so nothing
    /// can match it (a restore refuses it, saying so).
    pub crc32: Option<u32>,
}
statefile::versioned!(Fingerprint, "vfs.Fingerprint", 2);
// Timespec (saved with tmpfs nodes) is declared here, where its first saved
// user was.
statefile::versioned!(Timespec, "vfs.Timespec", 1);

/// How much of a file a fingerprint reads at once.
const FINGERPRINT_CHUNK: usize = 256 * 1024;

impl Fingerprint {
    /// The fingerprint of a regular file of `size` bytes that `read_at`
    /// reads (`read_at(offset, buf)`, short reads allowed). A file that
    /// ends before `size` or goes on after it is not the file of that size:
    /// `ESTALE`.
    pub fn of_contents(
        size: u64,
        mut read_at: impl FnMut(u64, &mut [u8]) -> Result<usize, Errno>,
    ) -> Result<Fingerprint, Errno> {
        let mut crc = crc32fast::Hasher::new();
        let mut buf = vec![0u8; FINGERPRINT_CHUNK];
        let mut off = 0u64;
        while off < size {
            let want = usize::try_from(size - off).map_or(buf.len(), |left| left.min(buf.len()));
            let n = read_at(off, &mut buf[..want])?;
            if n == 0 {
                return Err(Errno::ESTALE);
            }
            let n = n.min(want);
            crc.update(&buf[..n]);
            off += n as u64;
        }
        if read_at(off, &mut buf[..1])? != 0 {
            return Err(Errno::ESTALE);
        }
        Ok(Fingerprint {
            size,
            crc32: Some(crc.finalize()),
        })
    }

    /// The fingerprint of a directory listing (in any order; inode numbers
    /// are the host's and left out).
    pub fn of_dir(entries: &[DirEntry]) -> Fingerprint {
        let mut sorted: Vec<&DirEntry> = entries.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut crc = crc32fast::Hasher::new();
        for e in &sorted {
            crc.update(&e.name);
            crc.update(&[0, e.dtype]);
        }
        Fingerprint {
            size: sorted.len() as u64,
            crc32: Some(crc.finalize()),
        }
    }

    /// The fingerprint of a symlink with this target.
    pub fn of_symlink(target: &[u8]) -> Fingerprint {
        Fingerprint {
            size: target.len() as u64,
            crc32: Some(crc32fast::hash(target)),
        }
    }

    /// The fingerprint of a file whose content could not be read: it
    /// matches nothing.
    pub fn unreadable(size: u64) -> Fingerprint {
        Fingerprint { size, crc32: None }
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.crc32 {
            Some(crc) => write!(f, "size {} crc32 {crc:08x}", self.size),
            None => write!(f, "size {}, content unreadable", self.size),
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

    /// Looks up `names` (plain names, at least one), each in the one
    /// before, in one go where the file system can (a gofer walks them in
    /// one round trip): the inodes reached, in order. It may stop early
    /// (a symlink, a non-directory, a missing name after the first); the
    /// path walk looks the rest up one at a time. An error is the first
    /// name's. The default looks up the first name only.
    fn lookup_path(&self, names: &[&[u8]]) -> Result<Vec<Arc<dyn Inode>>, Errno> {
        match names.first() {
            Some(name) => Ok(vec![self.lookup(name)?]),
            None => Ok(Vec::new()),
        }
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

    /// mknod(2): a regular file, a FIFO or a socket node (a bound unix
    /// socket's); `mode` holds the file type and permission bits.
    fn mknod(&self, _name: &[u8], _mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EPERM)
    }

    /// open(2) with O_TMPFILE in this directory: a regular file with no
    /// name (`mode`: permission bits). EOPNOTSUPP where the file system
    /// has none (host files).
    fn tmpfile(&self, _mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Restore: makes `pipe` this FIFO's buffer, which its saved open ends
    /// share. EBUSY when the FIFO already has another.
    fn attach_fifo(&self, _pipe: &Arc<super::pipe::Pipe>) -> Result<(), Errno> {
        Err(Errno::ENXIO)
    }

    /// Removes a non-directory child.
    fn unlink(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// Removes an empty directory child.
    fn rmdir(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// Names `target` (a non-directory of the same file system) `name` in
    /// this directory too: a hard link. File systems without hard links
    /// refuse with EPERM, as Linux does.
    fn link(&self, _name: &[u8], _target: &dyn Inode) -> Result<(), Errno> {
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

    /// fcntl(F_GET_SEALS): the file's memfd seals. Only shmem files
    /// (tmpfs, memfd) have them; any other file is EINVAL.
    fn seals(&self) -> Result<u32, Errno> {
        Err(Errno::EINVAL)
    }

    /// fcntl(F_ADD_SEALS) (the caller has checked the open file is
    /// writable).
    fn add_seals(&self, _seals: u32) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    /// getxattr(2) of `name` (the VFS has checked the name and access):
    /// ENODATA when the file has none by that name, EOPNOTSUPP where the
    /// file system stores none.
    fn get_xattr(&self, _name: &[u8]) -> Result<Vec<u8>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// setxattr(2): `flags` are XATTR_CREATE (EEXIST if it exists) and
    /// XATTR_REPLACE (ENODATA if it does not).
    fn set_xattr(&self, _name: &[u8], _value: &[u8], _flags: i32) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// listxattr(2): every name, in order.
    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// removexattr(2): ENODATA when there is none by that name.
    fn remove_xattr(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `read_at` over `data`, returning at most `max` bytes per call.
    fn reader(data: &[u8], max: usize) -> impl FnMut(u64, &mut [u8]) -> Result<usize, Errno> + '_ {
        move |off, buf| {
            let off = off as usize;
            let n = buf.len().min(max).min(data.len().saturating_sub(off));
            buf[..n].copy_from_slice(&data[off..off + n]);
            Ok(n)
        }
    }

    #[test]
    fn contents_hash_is_the_crc32_of_the_bytes_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..(FINGERPRINT_CHUNK as u32 * 2 + 77))
            .map(|i| (i * 31 + 7) as u8)
            .collect();
        let whole = Fingerprint::of_contents(data.len() as u64, reader(&data, usize::MAX)).unwrap();
        assert_eq!(whole.size, data.len() as u64);
        assert_eq!(whole.crc32, Some(crc32fast::hash(&data)));
        let short_reads = Fingerprint::of_contents(data.len() as u64, reader(&data, 1000)).unwrap();
        assert_eq!(short_reads, whole);
        let empty = Fingerprint::of_contents(0, reader(&[], usize::MAX)).unwrap();
        assert_eq!(empty.crc32, Some(crc32fast::hash(&[])));
    }

    #[test]
    fn a_same_size_edit_changes_the_fingerprint() {
        let a = vec![7u8; 4096];
        let mut b = a.clone();
        b[4000] ^= 1;
        let fa = Fingerprint::of_contents(4096, reader(&a, usize::MAX)).unwrap();
        let fb = Fingerprint::of_contents(4096, reader(&b, usize::MAX)).unwrap();
        assert_eq!(fa.size, fb.size);
        assert_ne!(fa, fb);
    }

    #[test]
    fn a_file_shorter_or_longer_than_its_size_is_stale() {
        let data = vec![1u8; 100];
        assert_eq!(
            Fingerprint::of_contents(101, reader(&data, usize::MAX)),
            Err(Errno::ESTALE)
        );
        assert_eq!(
            Fingerprint::of_contents(99, reader(&data, usize::MAX)),
            Err(Errno::ESTALE)
        );
        let failing = |_: u64, _: &mut [u8]| Err(Errno::EIO);
        assert_eq!(Fingerprint::of_contents(10, failing), Err(Errno::EIO));
    }

    #[test]
    fn directory_fingerprint_ignores_order_and_inode_numbers() {
        let e = |name: &[u8], ino, dtype| DirEntry {
            name: name.to_vec(),
            ino,
            dtype,
        };
        let a = Fingerprint::of_dir(&[e(b"x", 1, 8), e(b"y", 2, 4)]);
        let b = Fingerprint::of_dir(&[e(b"y", 20, 4), e(b"x", 10, 8)]);
        assert_eq!(a, b);
        assert_eq!(a.size, 2);
        assert_ne!(a, Fingerprint::of_dir(&[e(b"x", 1, 8), e(b"z", 2, 4)]));
        assert_ne!(a, Fingerprint::of_dir(&[e(b"x", 1, 8), e(b"y", 2, 8)]));
        assert_ne!(a, Fingerprint::of_dir(&[e(b"x", 1, 8)]));
    }

    #[test]
    fn an_unreadable_fingerprint_matches_no_content() {
        let u = Fingerprint::unreadable(0);
        assert_ne!(u, Fingerprint::of_contents(0, reader(&[], 1)).unwrap());
        assert_eq!(u.to_string(), "size 0, content unreadable");
        assert_eq!(
            Fingerprint::of_symlink(b"abc").to_string(),
            format!("size 3 crc32 {:08x}", crc32fast::hash(b"abc"))
        );
    }
}
