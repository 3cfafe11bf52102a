//! devfs at /dev: the character devices every program expects (null, zero,
//! full, random, urandom), the stdio links, /dev/tty and a devpts at
//! /dev/pts with /dev/ptmx linking to its ptmx (gVisor's fsimpl/dev).

use std::any::Any;
use std::sync::Arc;

use super::file::{FileKind, FileOps, IoCtx, SaveAs, SeekMode};
use super::inode::{DirEntry, Inode};
use super::stat::{dirent_type, makedev, Stat, Timespec};
use crate::errno::Errno;

/// A directory whose entries are fixed when it is made.
pub struct StaticDir {
    pub(crate) ino: u64,
    pub(crate) mode: u32,
    pub(crate) entries: Vec<(Vec<u8>, Arc<dyn Inode>)>,
    pub(crate) time: Timespec,
}

impl Inode for StaticDir {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFDIR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        let subdirs = self.entries.iter().filter(|(_, i)| i.is_dir()).count() as u64;
        Ok(Stat {
            ino: self.ino,
            mode: libc::S_IFDIR | self.mode,
            nlink: 2 + subdirs,
            blksize: 4096,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            ..Stat::default()
        })
    }
    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i.clone())
            .ok_or(Errno::ENOENT)
    }
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        self.entries
            .iter()
            .map(|(n, i)| {
                Ok(DirEntry {
                    name: n.clone(),
                    ino: i.stat()?.ino,
                    dtype: dirent_type(i.file_type()),
                })
            })
            .collect()
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(super::file::DirOps))
    }
}

/// A symlink with fixed text.
pub struct StaticSymlink {
    pub(crate) ino: u64,
    pub(crate) target: Vec<u8>,
    pub(crate) time: Timespec,
}

impl Inode for StaticSymlink {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFLNK
    }
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            ino: self.ino,
            mode: libc::S_IFLNK | 0o777,
            nlink: 1,
            size: self.target.len() as u64,
            blksize: 4096,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            ..Stat::default()
        })
    }
    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        Ok(self.target.clone())
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::ELOOP)
    }
}

/// The memory devices (major 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Null,
    Zero,
    Full,
    Random,
    Urandom,
}

impl Device {
    fn minor(self) -> u32 {
        match self {
            Device::Null => 3,
            Device::Zero => 5,
            Device::Full => 7,
            Device::Random => 8,
            Device::Urandom => 9,
        }
    }
}

pub struct DevInode {
    ino: u64,
    dev: Device,
    time: Timespec,
}

impl Inode for DevInode {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFCHR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            ino: self.ino,
            mode: libc::S_IFCHR | 0o666,
            nlink: 1,
            rdev: makedev(1, self.dev.minor()),
            blksize: 4096,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            ..Stat::default()
        })
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(DevOps(self.dev)))
    }
    // Writes to a device node's attributes are accepted and forgotten, as
    // on a devtmpfs that is recreated at each boot.
    fn set_times(&self, _: Option<Timespec>, _: Option<Timespec>) -> Result<(), Errno> {
        Ok(())
    }
    fn set_size(&self, _: u64) -> Result<(), Errno> {
        Ok(())
    }
}

/// Open-file ops of a memory device.
pub struct DevOps(pub Device);

impl FileOps for DevOps {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        FileKind::CharDevice
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }
    fn seek_mode(&self) -> SeekMode {
        SeekMode::Ignored
    }
    fn read(&self, _io: &IoCtx<'_>, buf: &mut [u8], _off: Option<u64>) -> Result<usize, Errno> {
        match self.0 {
            Device::Null => Ok(0),
            Device::Zero | Device::Full => {
                buf.fill(0);
                Ok(buf.len())
            }
            Device::Random | Device::Urandom => {
                getrandom::fill(buf).map_err(|_| Errno::EIO)?;
                Ok(buf.len())
            }
        }
    }
    fn write(&self, _io: &IoCtx<'_>, buf: &[u8], _off: Option<u64>) -> Result<usize, Errno> {
        match self.0 {
            Device::Full => Err(Errno::ENOSPC),
            // Writing to random "adds entropy": accepted and ignored.
            _ => Ok(buf.len()),
        }
    }
}

/// The /dev directory. `shm` is an empty directory the sandbox mounts a
/// tmpfs on.
pub fn new_devfs(now: Timespec) -> Arc<StaticDir> {
    let mut ino = 1u64;
    let mut next = || {
        ino += 1;
        ino
    };
    let mut entries: Vec<(Vec<u8>, Arc<dyn Inode>)> = Vec::new();
    for (name, dev) in [
        ("full", Device::Full),
        ("null", Device::Null),
        ("random", Device::Random),
        ("urandom", Device::Urandom),
        ("zero", Device::Zero),
    ] {
        entries.push((
            name.into(),
            Arc::new(DevInode {
                ino: next(),
                dev,
                time: now,
            }),
        ));
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        entries.push((
            name.into(),
            Arc::new(StaticSymlink {
                ino: next(),
                target: target.into(),
                time: now,
            }),
        ));
    }
    // devpts is mounted here (namespace.rs).
    entries.push((
        b"pts".to_vec(),
        Arc::new(StaticDir {
            ino: next(),
            mode: 0o755,
            entries: Vec::new(),
            time: now,
        }),
    ));
    entries.push((
        b"tty".to_vec(),
        Arc::new(super::pty::DevTtyInode {
            ino: next(),
            time: now,
        }),
    ));
    entries.push((
        b"shm".to_vec(),
        Arc::new(StaticDir {
            ino: next(),
            mode: 0o1777,
            entries: Vec::new(),
            time: now,
        }),
    ));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Arc::new(StaticDir {
        ino: 1,
        mode: 0o755,
        entries,
        time: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::vfs::{MountOpts, Vfs};

    #[test]
    fn null_zero_full_random() {
        let vfs = Vfs::new(
            new_devfs(Timespec::default()),
            MountOpts {
                fs_type: "devtmpfs",
                read_only: false,
            },
        );
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let null = vfs.open_at(&r, b"/null", libc::O_RDWR, 0).unwrap();
        let mut buf = [7u8; 16];
        assert_eq!(null.read(&mut buf, &intr), Ok(0));
        assert_eq!(null.write(b"gone", &intr), Ok(4));
        assert_eq!(null.lseek(100, libc::SEEK_SET), Ok(0));
        let st = null.stat().unwrap();
        assert_eq!(st.mode, libc::S_IFCHR | 0o666);
        assert_eq!((libc::major(st.rdev), libc::minor(st.rdev)), (1, 3));
        let zero = vfs.open_at(&r, b"/zero", libc::O_RDONLY, 0).unwrap();
        assert_eq!(zero.read(&mut buf, &intr), Ok(16));
        assert_eq!(buf, [0u8; 16]);
        assert_eq!(zero.pread(&mut buf, 5, &intr), Ok(16));
        let full = vfs
            .open_at(&r, b"/full", libc::O_WRONLY | libc::O_TRUNC, 0)
            .unwrap();
        assert_eq!(full.write(b"x", &intr), Err(Errno::ENOSPC));
        let rnd = vfs.open_at(&r, b"/urandom", libc::O_RDONLY, 0).unwrap();
        let mut a = [0u8; 32];
        assert_eq!(rnd.read(&mut a, &intr), Ok(32));
        assert_ne!(a, [0u8; 32]);
        for (name, minor) in [("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)] {
            let st = vfs.stat_at(&r, name.as_bytes(), true).unwrap();
            assert_eq!(libc::minor(st.rdev), minor);
        }
        assert_eq!(vfs.readlink_at(&r, b"/stdout").unwrap(), b"/proc/self/fd/1");
        assert_eq!(vfs.mkdir_at(&r, b"/x", 0o755), Err(Errno::EPERM));
    }
}
