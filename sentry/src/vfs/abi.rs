//! The bytes of the Linux structures the VFS hands to the application that
//! are the same on every architecture: `struct statx` (256 bytes) and
//! `struct linux_dirent64`. (`struct stat` differs between architectures:
//! `crate::arch::encode_stat`.) Encoded field by field (little-endian, the
//! byte order of every architecture cryo runs on) so no layout depends on
//! Rust's.

use super::stat::{Stat, Timespec};

/// `sizeof(struct statx)`.
pub const STATX_SIZE: usize = 256;

pub const STATX_TYPE: u32 = 0x1;
pub const STATX_MODE: u32 = 0x2;
pub const STATX_NLINK: u32 = 0x4;
pub const STATX_UID: u32 = 0x8;
pub const STATX_GID: u32 = 0x10;
pub const STATX_ATIME: u32 = 0x20;
pub const STATX_MTIME: u32 = 0x40;
pub const STATX_CTIME: u32 = 0x80;
pub const STATX_INO: u32 = 0x100;
pub const STATX_SIZE_BIT: u32 = 0x200;
pub const STATX_BLOCKS: u32 = 0x400;
pub const STATX_BASIC_STATS: u32 = 0x7ff;
/// `STATX__RESERVED`: a mask with it set is refused with EINVAL.
pub const STATX_RESERVED: u32 = 0x8000_0000;

struct Writer<'a> {
    buf: &'a mut [u8],
}

impl Writer<'_> {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.buf[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn u16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_le_bytes());
    }
    fn u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_le_bytes());
    }
    fn u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_le_bytes());
    }
    fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes());
    }
}

fn statx_time(w: &mut Writer<'_>, off: usize, t: Timespec) {
    w.i64(off, t.sec);
    w.u32(off + 8, u32::try_from(t.nsec).unwrap_or(0));
}

/// `struct statx` for a request `mask`. Like Linux, every basic field is
/// filled whatever was asked (the mask is a hint), and `stx_mask` says which
/// are valid: all the basic ones (no birth time).
pub fn encode_statx(st: &Stat, _mask: u32) -> [u8; STATX_SIZE] {
    let mut buf = [0u8; STATX_SIZE];
    let mut w = Writer { buf: &mut buf };
    w.u32(0, STATX_BASIC_STATS);
    w.u32(4, st.blksize);
    // 8: stx_attributes = 0
    w.u32(16, u32::try_from(st.nlink).unwrap_or(u32::MAX));
    w.u32(20, st.uid);
    w.u32(24, st.gid);
    // The mode is 16 bits in statx; S_IFMT and permission bits fit.
    w.u16(28, (st.mode & 0xffff) as u16);
    w.u64(32, st.ino);
    w.u64(40, st.size);
    w.u64(48, st.blocks);
    // 56: stx_attributes_mask = 0
    statx_time(&mut w, 64, st.atime);
    // 80: stx_btime left zero (not in the mask)
    statx_time(&mut w, 96, st.ctime);
    statx_time(&mut w, 112, st.mtime);
    w.u32(128, libc::major(st.rdev));
    w.u32(132, libc::minor(st.rdev));
    w.u32(136, libc::major(st.dev));
    w.u32(140, libc::minor(st.dev));
    buf
}

/// The fixed part of `linux_dirent64`: d_ino, d_off, d_reclen, d_type.
const DIRENT_HEADER: usize = 8 + 8 + 2 + 1;

/// The record length of an entry with a `name_len`-byte name: header, name,
/// NUL, rounded up to 8.
pub fn dirent_reclen(name_len: usize) -> usize {
    (DIRENT_HEADER + name_len + 1).next_multiple_of(8)
}

/// Appends one `linux_dirent64` to `out` if it fits in `limit` bytes;
/// returns whether it did.
pub fn push_dirent(
    out: &mut Vec<u8>,
    limit: usize,
    ino: u64,
    off: i64,
    dtype: u8,
    name: &[u8],
) -> bool {
    let reclen = dirent_reclen(name.len());
    if out.len() + reclen > limit {
        return false;
    }
    let start = out.len();
    out.resize(start + reclen, 0);
    let mut w = Writer {
        buf: &mut out[start..],
    };
    w.u64(0, ino);
    w.i64(8, off);
    // reclen <= 8 + 19 + 256, well within u16.
    w.u16(16, reclen as u16);
    w.put(18, &[dtype]);
    w.put(19, name);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stat {
        Stat::sample()
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn statx_layout() {
        assert_eq!(STATX_SIZE, std::mem::size_of::<libc::statx>());
        let b = encode_statx(&sample(), STATX_BASIC_STATS);
        assert_eq!(u32_at(&b, 0), STATX_BASIC_STATS);
        assert_eq!(
            u16::from_le_bytes([b[28], b[29]]) as u32,
            libc::S_IFREG | 0o644
        );
        assert_eq!(u64_at(&b, 32), 7);
        assert_eq!(u64_at(&b, 40), 5000);
        assert_eq!(u64_at(&b, 112), 20);
        assert_eq!((u32_at(&b, 128), u32_at(&b, 132)), (1, 3));
        assert_eq!((u32_at(&b, 136), u32_at(&b, 140)), (0, 42));
    }

    #[test]
    fn dirent_records() {
        assert_eq!(dirent_reclen(1), 24);
        assert_eq!(dirent_reclen(5), 32);
        let mut out = Vec::new();
        assert!(push_dirent(&mut out, 64, 9, 1, libc::DT_REG, b"hello"));
        assert_eq!(out.len(), 32);
        assert_eq!(u64_at(&out, 0), 9);
        assert_eq!(u16::from_le_bytes([out[16], out[17]]), 32);
        assert_eq!(out[18], libc::DT_REG);
        assert_eq!(&out[19..25], b"hello\0");
        assert!(!push_dirent(&mut out, 63, 9, 2, libc::DT_REG, b"hello"));
    }
}
