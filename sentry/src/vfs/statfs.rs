//! statfs(2)/fstatfs(2): what a file system says about itself (Linux's
//! `struct statfs`), from the mount a file is on.

use super::dentry::{Dentry, Mount};
use super::file::OpenFile;
use super::inode::Inode;
use super::overlay::OverlayInode;
use super::tmpfs::TmpfsInode;

const TMPFS_MAGIC: u64 = 0x0102_1994;
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
const SYSFS_MAGIC: u64 = 0x6265_6572;
const DEVPTS_SUPER_MAGIC: u64 = 0x1cd1;
const MQUEUE_MAGIC: u64 = 0x1980_0202;
/// What gVisor reports for host files served by its gofer.
const V9FS_MAGIC: u64 = 0x0102_1997;
const PIPEFS_MAGIC: u64 = 0x5049_5045;
const SOCKFS_MAGIC: u64 = 0x534f_434b;
const ANON_INODE_FS_MAGIC: u64 = 0x0904_1934;

/// `f_flags`: the fields are valid (ST_VALID), and the mount's options.
const ST_VALID: u64 = 0x20;
const ST_RDONLY: u64 = 0x1;

const PAGE: u64 = 4096;
const NAME_MAX: u64 = 255;

/// Linux's `struct statfs` on x86_64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub fs_type: u64,
    pub block_size: u64,
    /// Total, free and available blocks and inodes. Zero for file systems
    /// without a limit, as Linux's tmpfs without `size=` and procfs say.
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub fsid: [u32; 2],
    pub name_max: u64,
    pub flags: u64,
}

impl StatFs {
    /// The statfs of the file system mounted as `mount`.
    pub fn of_mount(mount: &Mount) -> StatFs {
        let fs_type = match mount.fs_type {
            "tmpfs" | "devtmpfs" => TMPFS_MAGIC,
            "proc" => PROC_SUPER_MAGIC,
            "overlay" => OVERLAYFS_SUPER_MAGIC,
            "sysfs" => SYSFS_MAGIC,
            "devpts" => DEVPTS_SUPER_MAGIC,
            "mqueue" => MQUEUE_MAGIC,
            // Every other mount is host files through the gofer.
            _ => V9FS_MAGIC,
        };
        let mut flags = ST_VALID | if mount.read_only() { ST_RDONLY } else { 0 };
        // f_flags' ST_NOSUID (2), ST_NODEV (4) and ST_NOEXEC (8).
        for (on, bit) in [(mount.nosuid(), 2), (mount.nodev(), 4), (mount.noexec(), 8)] {
            if on {
                flags |= bit;
            }
        }
        StatFs::unlimited(fs_type, mount.dev, flags)
    }

    /// The statfs of the file system `d` is on: its mount's, with a
    /// tmpfs's (or the overlay's upper layer's) limits and what is used.
    pub fn of_dentry(d: &Dentry) -> StatFs {
        let mut st = StatFs::of_mount(d.mount());
        if let Some(fs) = tmpfs_of(d.inode().as_ref()) {
            let (limits, blocks, inodes) = fs.usage();
            // Linux's shmem_statfs: a limit's totals and what is left;
            // without one, zeros.
            if let Some(max) = limits.max_blocks {
                st.blocks = max;
                st.blocks_free = max.saturating_sub(blocks);
                st.blocks_avail = st.blocks_free;
            }
            if let Some(max) = limits.max_inodes {
                st.files = max;
                st.files_free = max.saturating_sub(inodes);
            }
        }
        st
    }

    /// The statfs of the file `file` is on: its mount's, or for a file
    /// with no name (a pipe, a socket, an eventfd) its pseudo file system's.
    pub fn of_file(file: &OpenFile) -> StatFs {
        if let Some(d) = file.dentry() {
            return StatFs::of_dentry(d);
        }
        let fs_type = match file.inode().file_type() {
            libc::S_IFIFO => PIPEFS_MAGIC,
            libc::S_IFSOCK => SOCKFS_MAGIC,
            _ => ANON_INODE_FS_MAGIC,
        };
        StatFs::unlimited(fs_type, 0, ST_VALID)
    }

    /// No size or inode limit (tmpfs's are filled in by `of_dentry`):
    /// zeros, as an unlimited tmpfs and procfs say on Linux.
    fn unlimited(fs_type: u64, dev: u64, flags: u64) -> StatFs {
        StatFs {
            fs_type,
            block_size: PAGE,
            blocks: 0,
            blocks_free: 0,
            blocks_avail: 0,
            files: 0,
            files_free: 0,
            fsid: [dev as u32, (dev >> 32) as u32],
            name_max: NAME_MAX,
            flags,
        }
    }

    /// The 120 bytes of `struct statfs`; f_frsize is the block size.
    pub fn to_bytes(&self) -> [u8; 120] {
        let mut b = [0u8; 120];
        let words = [
            self.fs_type,
            self.block_size,
            self.blocks,
            self.blocks_free,
            self.blocks_avail,
            self.files,
            self.files_free,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b[56..60].copy_from_slice(&self.fsid[0].to_le_bytes());
        b[60..64].copy_from_slice(&self.fsid[1].to_le_bytes());
        for (i, w) in [self.name_max, self.block_size, self.flags]
            .iter()
            .enumerate()
        {
            b[64 + i * 8..72 + i * 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

/// The tmpfs instance a file lives in: its own for a tmpfs file, the
/// upper layer for an overlay file (where its writes would go).
fn tmpfs_of(inode: &dyn Inode) -> Option<TmpfsStatSource> {
    let any = inode.as_any();
    if let Some(t) = any.downcast_ref::<TmpfsInode>() {
        return Some(TmpfsStatSource(t.fs.usage.clone()));
    }
    any.downcast_ref::<OverlayInode>()
        .and_then(OverlayInode::upper_fs_usage)
        .map(TmpfsStatSource)
}

struct TmpfsStatSource(std::sync::Arc<super::tmpfs::TmpfsUsage>);

impl TmpfsStatSource {
    fn usage(&self) -> (super::tmpfs::TmpfsLimits, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.0.limits(),
            self.0.blocks.load(Relaxed),
            self.0.inodes.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_struct_statfs() {
        let mount = Mount::new(3, "proc", libc::MS_RDONLY, 0x1_0000_0002);
        let b = StatFs::of_mount(&mount).to_bytes();
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(word(0), PROC_SUPER_MAGIC);
        assert_eq!(word(1), 4096);
        assert_eq!(word(7), 0x1_0000_0002, "f_fsid holds the device");
        assert_eq!(word(8), 255, "f_namelen");
        assert_eq!(word(9), 4096, "f_frsize");
        assert_eq!(word(10), ST_VALID | ST_RDONLY);
        assert!(b[88..].iter().all(|&x| x == 0), "f_spare");
    }
}
