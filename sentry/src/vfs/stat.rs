//! The attributes of a file (Linux's `struct kstat`) and the clock that
//! stamps them.

use serde::{Deserialize, Serialize};

/// A point in time, seconds and nanoseconds since the epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// Where file systems get the time for atime/mtime/ctime. A trait rather
/// than a direct host call so the kernel can hand in its virtual realtime.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timespec;
}

/// CLOCK_REALTIME of the host (the sandbox's realtime follows the host).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostClock;

impl Clock for HostClock {
    fn now(&self) -> Timespec {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timespec {
            sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nsec: i64::from(d.subsec_nanos()),
        }
    }
}

/// What `stat` reports. Device numbers are Linux-encoded (`makedev`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

impl Stat {
    /// A stat with a distinct value in every field, for the ABI encoders'
    /// tests.
    #[cfg(test)]
    pub(crate) fn sample() -> Stat {
        Stat {
            dev: libc::makedev(0, 42),
            ino: 7,
            mode: libc::S_IFREG | 0o644,
            nlink: 1,
            uid: 1,
            gid: 2,
            rdev: libc::makedev(1, 3),
            size: 5000,
            blksize: 4096,
            blocks: 16,
            atime: Timespec { sec: 10, nsec: 11 },
            mtime: Timespec { sec: 20, nsec: 21 },
            ctime: Timespec { sec: 30, nsec: 31 },
        }
    }

    /// The `S_IFMT` bits.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == libc::S_IFLNK
    }

    pub fn is_regular(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }

    /// `st_blocks` (512-byte units) of a file of `size` bytes held in pages.
    pub fn blocks_for(size: u64) -> u64 {
        size.div_ceil(4096) * 8
    }
}

/// `makedev(major, minor)` as Linux encodes it in `st_dev`/`st_rdev`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// The `DT_*` value of a mode's file type, for `getdents64`.
pub fn dirent_type(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_UNKNOWN,
    }
}
