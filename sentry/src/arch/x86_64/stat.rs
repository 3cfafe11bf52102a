//! x86_64's `struct stat` (144 bytes), what `stat`, `fstat`, `lstat` and
//! `newfstatat` return. (`statx` and `linux_dirent64` are the same on every
//! architecture and live in the VFS.) Encoded field by field, little-endian,
//! so no layout depends on Rust's.

use crate::vfs::{Stat, Timespec};

/// `sizeof(struct stat)`.
pub const STAT_SIZE: usize = 144;

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The bytes of `struct stat` for `st`.
pub fn encode_stat(st: &Stat) -> [u8; STAT_SIZE] {
    let mut b = [0u8; STAT_SIZE];
    let mut put = |off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &st.dev.to_le_bytes());
    put(8, &st.ino.to_le_bytes());
    put(16, &st.nlink.to_le_bytes());
    put(24, &st.mode.to_le_bytes());
    put(28, &st.uid.to_le_bytes());
    put(32, &st.gid.to_le_bytes());
    // 36: __pad0
    put(40, &st.rdev.to_le_bytes());
    put(48, &clamp_i64(st.size).to_le_bytes());
    put(56, &i64::from(st.blksize).to_le_bytes());
    put(64, &clamp_i64(st.blocks).to_le_bytes());
    let times: [(usize, Timespec); 3] = [(72, st.atime), (88, st.mtime), (104, st.ctime)];
    for (off, t) in times {
        put(off, &t.sec.to_le_bytes());
        put(off + 8, &t.nsec.to_le_bytes());
    }
    // 120..144: __unused[3]
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn stat_layout_matches_the_host_struct() {
        assert_eq!(STAT_SIZE, std::mem::size_of::<libc::stat>());
        let st = Stat::sample();
        let b = encode_stat(&st);
        // The offsets of libc's own struct stat, so the two cannot drift.
        assert_eq!(
            u64_at(&b, std::mem::offset_of!(libc::stat, st_dev)),
            libc::makedev(0, 42)
        );
        assert_eq!(u64_at(&b, std::mem::offset_of!(libc::stat, st_ino)), 7);
        assert_eq!(u64_at(&b, std::mem::offset_of!(libc::stat, st_nlink)), 1);
        assert_eq!(
            u32_at(&b, std::mem::offset_of!(libc::stat, st_mode)),
            libc::S_IFREG | 0o644
        );
        assert_eq!(u32_at(&b, std::mem::offset_of!(libc::stat, st_uid)), 1);
        assert_eq!(u32_at(&b, std::mem::offset_of!(libc::stat, st_gid)), 2);
        assert_eq!(
            u64_at(&b, std::mem::offset_of!(libc::stat, st_rdev)),
            libc::makedev(1, 3)
        );
        assert_eq!(u64_at(&b, std::mem::offset_of!(libc::stat, st_size)), 5000);
        assert_eq!(
            u64_at(&b, std::mem::offset_of!(libc::stat, st_blksize)),
            4096
        );
        assert_eq!(u64_at(&b, std::mem::offset_of!(libc::stat, st_blocks)), 16);
        assert_eq!(u64_at(&b, std::mem::offset_of!(libc::stat, st_atime)), 10);
        assert_eq!(
            u64_at(&b, std::mem::offset_of!(libc::stat, st_mtime_nsec)),
            21
        );
        assert_eq!(u64_at(&b, std::mem::offset_of!(libc::stat, st_ctime)), 30);
        assert_eq!(
            u64_at(&b, std::mem::offset_of!(libc::stat, st_ctime_nsec)),
            31
        );
    }
}
