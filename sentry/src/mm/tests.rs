//! Memory manager tests against a fake address space that keeps a page table,
//! so every test can check that the host side mirrors the VMAs exactly.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use platform::{Access, AddressSpace, Layout, PlatformError, Prot};

use super::*;
use crate::errno::Errno;

const P: u64 = 4096;
const TOP_PAGE: u64 = !(P - 1);

/// Page address -> (memory-file offset, prot), as a stub would have it.
pub(crate) type Pages = Arc<Mutex<BTreeMap<u64, (u64, Prot)>>>;

pub(crate) struct FakeAddressSpace {
    pub pages: Pages,
    pub calls: Arc<Mutex<Vec<String>>>,
}

impl AddressSpace for FakeAddressSpace {
    fn map(&self, addr: u64, len: u64, offset: u64, prot: Prot) -> Result<(), PlatformError> {
        assert!((addr | len | offset) & (P - 1) == 0 && len > 0);
        self.calls
            .lock()
            .unwrap()
            .push(format!("map {addr:#x} {len:#x} {offset:#x}"));
        let mut pages = self.pages.lock().unwrap();
        for i in 0..len / P {
            pages.insert(addr + i * P, (offset + i * P, prot));
        }
        Ok(())
    }
    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("unmap {addr:#x} {len:#x}"));
        let mut pages = self.pages.lock().unwrap();
        for i in 0..len / P {
            pages.remove(&(addr + i * P));
        }
        Ok(())
    }
    fn protect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("protect {addr:#x} {len:#x}"));
        let mut pages = self.pages.lock().unwrap();
        for i in 0..len / P {
            let p = pages
                .get_mut(&(addr + i * P))
                .expect("protect of an unmapped page");
            p.1 = prot;
        }
        Ok(())
    }
    fn new_thread(&self) -> Result<Box<dyn platform::Context>, PlatformError> {
        Err(PlatformError::ForeignAddressSpace)
    }
    fn exit_thread(&self) -> Result<(), PlatformError> {
        Ok(())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A file in memory.
pub(crate) struct MemFile {
    pub name: String,
    pub data: Mutex<Vec<u8>>,
    /// What `contents_fixed` says (a host file on a read-only mount).
    pub fixed: bool,
}

impl MemFile {
    pub fn new(name: &str, data: Vec<u8>) -> Arc<MemFile> {
        Arc::new(MemFile {
            name: name.to_string(),
            data: Mutex::new(data),
            fixed: false,
        })
    }

    /// A file whose bytes nothing in the sandbox can change.
    pub fn fixed(name: &str, data: Vec<u8>) -> Arc<MemFile> {
        Arc::new(MemFile {
            name: name.to_string(),
            data: Mutex::new(data),
            fixed: true,
        })
    }
}

impl MappableFile for MemFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let d = self.data.lock().unwrap();
        let off = (offset as usize).min(d.len());
        let n = buf.len().min(d.len() - off);
        buf[..n].copy_from_slice(&d[off..off + n]);
        Ok(n)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        let mut d = self.data.lock().unwrap();
        let end = offset as usize + buf.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[offset as usize..end].copy_from_slice(buf);
        Ok(buf.len())
    }
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.data.lock().unwrap().len() as u64)
    }
    fn mapping_name(&self) -> String {
        self.name.clone()
    }

    fn identity(&self) -> usize {
        self as *const Self as *const () as usize
    }

    fn contents_fixed(&self) -> bool {
        self.fixed
    }
}

pub(crate) fn layout() -> Layout {
    Layout::for_va_bits(47, P).unwrap()
}

pub(crate) fn new_mm() -> (MemoryManager, Pages) {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    new_mm_with(mf)
}

pub(crate) fn new_mm_with(mf: Arc<MemoryFile>) -> (MemoryManager, Pages) {
    let pages: Pages = Arc::default();
    let aspace = FakeAddressSpace {
        pages: pages.clone(),
        calls: Arc::default(),
    };
    (
        MemoryManager::new(layout(), mf, Arc::new(aspace)).unwrap(),
        pages,
    )
}

/// The host page table matches the VMAs page for page, and VMA backings
/// are allocated and disjoint, and nothing else is allocated: `mm` alone
/// uses the memory file.
pub(crate) fn check_consistent(mm: &MemoryManager, pages: &Pages) {
    let backing = check_mapped(mm, pages);
    let allocated: u64 = mm.memory_file().allocated_bytes();
    assert_eq!(
        allocated,
        backing.len() as u64 * P,
        "memory file leaks or double-counts"
    );
}

/// The host page table matches the VMAs and their backing page for page
/// (copy-on-write pages without write permission, and every private
/// writable page others share is copy-on-write), every non-direct VMA
/// page is backed and nothing else is, and no page backs two addresses of
/// `mm`. Returns the pages `mm` uses: memory-file offset -> address.
pub(crate) fn check_mapped(mm: &MemoryManager, pages: &Pages) -> BTreeMap<u64, u64> {
    let pages = pages.lock().unwrap();
    let mf = mm.memory_file();
    let mut expect = BTreeMap::new();
    let mut backing = BTreeMap::new();
    let mut non_direct = 0;
    for v in mm.vmas() {
        assert!(
            v.start < v.end && v.start % P == 0 && v.end % P == 0,
            "{v:?}"
        );
        if !v.direct {
            non_direct += v.len();
        }
        let pieces = mm.backing_of(v, v.start, v.end);
        let mut pos = v.start;
        for p in pieces {
            assert_eq!(p.start, pos, "a hole in the backing of {v:?}");
            pos = p.end;
            assert!(mf.is_allocated(p.off, p.len()), "{v:?} {p:?}");
            for a in (p.start..p.end).step_by(P as usize) {
                let off = p.off_of(a);
                if !v.shared && v.prot.write && mf.refcount(off) > 1 {
                    assert!(p.cow, "shared private page {a:#x} writable: {v:?}");
                }
                let mut prot = MemoryManager::host_prot(v, &p);
                // A freeze keeps the pages it holds read-only.
                prot.write &= !mm.frozen.contains(off);
                expect.insert(a, (off, prot));
                assert!(
                    backing.insert(off, a).is_none(),
                    "backing used twice: {v:?}"
                );
            }
        }
        assert_eq!(pos, v.end, "backing short of {v:?}");
    }
    let backed: u64 = mm.pmas.iter().map(|p| p.len()).sum();
    assert_eq!(backed, non_direct, "backing outside the VMAs");
    assert_eq!(*pages, expect);
    backing
}

const RW: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
const R: u64 = libc::PROT_READ as u64;
const PRIV_ANON: u64 = c::MAP_PRIVATE | c::MAP_ANONYMOUS;

/// The libc flags as the u64 syscall arguments they arrive as.
mod c {
    pub const MAP_PRIVATE: u64 = libc::MAP_PRIVATE as u64;
    pub const MAP_SHARED: u64 = libc::MAP_SHARED as u64;
    pub const MAP_SHARED_VALIDATE: u64 = libc::MAP_SHARED_VALIDATE as u64;
    pub const MAP_ANONYMOUS: u64 = libc::MAP_ANONYMOUS as u64;
    pub const MAP_FIXED: u64 = libc::MAP_FIXED as u64;
    pub const MAP_FIXED_NOREPLACE: u64 = libc::MAP_FIXED_NOREPLACE as u64;
    pub const MAP_GROWSDOWN: u64 = libc::MAP_GROWSDOWN as u64;
    pub const MAP_HUGETLB: u64 = libc::MAP_HUGETLB as u64;
    pub const MAP_32BIT: u64 = libc::MAP_32BIT as u64;
    pub const MREMAP_MAYMOVE: u64 = libc::MREMAP_MAYMOVE as u64;
    pub const MREMAP_FIXED: u64 = libc::MREMAP_FIXED as u64;
    pub const MS_SYNC: u64 = libc::MS_SYNC as u64;
    pub const MS_ASYNC: u64 = libc::MS_ASYNC as u64;
}

fn mfile(f: Arc<dyn MappableFile>, offset: u64) -> Option<MmapFile> {
    Some(MmapFile {
        file: f,
        offset,
        writable: true,
    })
}

fn anon(mm: &mut MemoryManager, len: u64) -> u64 {
    mm.mmap(0, len, RW, PRIV_ANON, None).unwrap()
}

#[test]
fn mmap_anonymous_top_down_and_hint() {
    let (mut mm, pages) = new_mm();
    let a = anon(&mut mm, 3 * P);
    assert_eq!(a, mm.layout().mmap_base - 3 * P);
    let b = anon(&mut mm, 1);
    assert_eq!(b, a - P);
    // A free hint is used (rounded up to a page).
    let hint = 0x1000_0000_0001;
    let c = mm.mmap(hint, P, RW, PRIV_ANON, None).unwrap();
    assert_eq!(c, 0x1000_0000_1000);
    // A taken hint falls back to the search.
    let d = mm.mmap(a, P, RW, PRIV_ANON, None).unwrap();
    assert_eq!(d, b - P);
    check_consistent(&mm, &pages);
    assert_eq!(mm.vsize(), 6 * P);
}

#[test]
fn mmap_errors() {
    let (mut mm, _) = new_mm();
    assert_eq!(mm.mmap(0, 0, RW, PRIV_ANON, None), Err(Errno::EINVAL));
    assert_eq!(
        mm.mmap(0, P, RW, c::MAP_ANONYMOUS, None),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mm.mmap(0, P, RW, c::MAP_ANONYMOUS | 0x0f, None),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mm.mmap(0, u64::MAX - 10, RW, PRIV_ANON, None),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        mm.mmap(0x10001, P, RW, PRIV_ANON | c::MAP_FIXED, None),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mm.mmap(0x1000, P, RW, PRIV_ANON | c::MAP_FIXED, None),
        Err(Errno::EPERM)
    );
    let top = mm.layout().max_user_addr;
    assert_eq!(
        mm.mmap(top, P, RW, PRIV_ANON | c::MAP_FIXED, None),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        mm.mmap(mm.layout().stub_addr, P, RW, PRIV_ANON | c::MAP_FIXED, None),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm.mmap(0, P, RW, c::MAP_PRIVATE, None), Err(Errno::EBADF));
    let f: Arc<dyn MappableFile> = MemFile::new("/f", vec![1; 10]);
    assert_eq!(
        mm.mmap(0, P, RW, c::MAP_PRIVATE, mfile(f.clone(), 100)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        mm.mmap(0, P, RW, c::MAP_PRIVATE, mfile(f, TOP_PAGE)),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        mm.mmap(
            0,
            P,
            RW,
            c::MAP_SHARED_VALIDATE | c::MAP_ANONYMOUS | 0x0400_0000,
            None
        ),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        mm.mmap(0, P, RW, PRIV_ANON | c::MAP_HUGETLB, None),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm.vsize(), 0);
}

#[test]
fn mmap_fixed_replaces_and_noreplace_refuses() {
    let (mut mm, pages) = new_mm();
    let a = 0x2000_0000;
    mm.mmap(a, 4 * P, RW, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    mm.copy_out(a, &[7u8; 4 * P as usize]).unwrap();
    assert_eq!(
        mm.mmap(a + P, P, RW, PRIV_ANON | c::MAP_FIXED_NOREPLACE, None),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        mm.mmap(a + P, P, R, PRIV_ANON | c::MAP_FIXED, None),
        Ok(a + P)
    );
    assert_eq!(mm.vmas().count(), 3);
    assert_eq!(mm.read_bytes::<1>(a + P).unwrap(), [0]);
    assert_eq!(mm.read_bytes::<1>(a).unwrap(), [7]);
    assert_eq!(mm.read_bytes::<1>(a + 2 * P).unwrap(), [7]);
    check_consistent(&mm, &pages);
    assert_eq!(
        mm.mmap(a + 8 * P, P, RW, PRIV_ANON | c::MAP_FIXED_NOREPLACE, None),
        Ok(a + 8 * P)
    );
}

#[test]
fn mmap_32bit_is_low() {
    let (mut mm, _) = new_mm();
    let a = mm.mmap(0, P, RW, PRIV_ANON | c::MAP_32BIT, None).unwrap();
    assert!((0x4000_0000..0x8000_0000).contains(&a), "{a:#x}");
}

#[test]
fn munmap_splits_and_frees() {
    let (mut mm, pages) = new_mm();
    let a = anon(&mut mm, 5 * P);
    mm.copy_out(a + 3 * P, b"keep").unwrap();
    mm.munmap(a + P, 2 * P).unwrap();
    let v: Vec<_> = mm.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(v, vec![(a, a + P), (a + 3 * P, a + 5 * P)]);
    assert_eq!(mm.read_bytes::<4>(a + 3 * P).unwrap(), *b"keep");
    check_consistent(&mm, &pages);
    assert_eq!(mm.munmap(a + 1, P), Err(Errno::EINVAL));
    assert_eq!(mm.munmap(a, 0), Err(Errno::EINVAL));
    assert_eq!(mm.munmap(TOP_PAGE, P), Err(Errno::EINVAL));
    // Unmapping nothing is fine.
    mm.munmap(0x10000, P).unwrap();
    mm.munmap(a, 5 * P).unwrap();
    assert_eq!(mm.vsize(), 0);
    check_consistent(&mm, &pages);
}

#[test]
fn mprotect_splits_and_checks() {
    let (mut mm, pages) = new_mm();
    let a = anon(&mut mm, 4 * P);
    mm.mprotect(a + P, P, R).unwrap();
    assert_eq!(mm.vmas().count(), 3);
    check_consistent(&mm, &pages);
    assert_eq!(mm.copy_out(a + P, b"x"), Err(Errno::EFAULT));
    assert!(mm.copy_out(a, b"x").is_ok());
    assert_eq!(mm.mprotect(a + 1, P, R), Err(Errno::EINVAL));
    assert_eq!(mm.mprotect(a, 8 * P, R), Err(Errno::ENOMEM));
    assert_eq!(mm.mprotect(a, 0, R), Ok(()));
    // A failed mprotect changed nothing.
    assert!(mm.copy_out(a, b"x").is_ok());
    mm.mprotect(a, 4 * P, 0).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(mm.copy_in(a, &mut b), Err(Errno::EFAULT));
    // Forced access (loader, ptrace) still works.
    mm.copy_in_force(a, &mut b).unwrap();
    assert_eq!(b, *b"x");
    check_consistent(&mm, &pages);
}

#[test]
fn copy_across_vmas_and_holes() {
    let (mut mm, _) = new_mm();
    let a = 0x3000_0000;
    mm.mmap(a, P, RW, PRIV_ANON | c::MAP_FIXED, None).unwrap();
    mm.mmap(a + P, P, RW, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    assert_eq!(mm.vmas().count(), 2);
    let data: Vec<u8> = (0..100u8).collect();
    mm.copy_out(a + P - 50, &data).unwrap();
    let mut back = vec![0u8; 100];
    mm.copy_in(a + P - 50, &mut back).unwrap();
    assert_eq!(back, data);
    // Running into the hole after a + 2P faults.
    assert_eq!(mm.copy_out(a + 2 * P - 10, &data), Err(Errno::EFAULT));
    assert_eq!(mm.copy_in(u64::MAX - 5, &mut back), Err(Errno::EFAULT));
    mm.write_u64(a + 8, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(mm.read_u64(a + 8).unwrap(), 0x1122_3344_5566_7788);
    mm.write_u32(a + 4, 0xdead_beef).unwrap();
    assert_eq!(mm.read_u32(a + 4).unwrap(), 0xdead_beef);
    mm.zero_out(a, 16, false).unwrap();
    assert_eq!(mm.read_u64(a + 8).unwrap(), 0);
}

#[test]
fn c_strings_and_iovecs() {
    let (mut mm, _) = new_mm();
    let a = 0x3000_0000;
    mm.mmap(a, 2 * P, RW, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    // A string ending exactly at the end of the mapping.
    let s = a + 2 * P - 6;
    mm.copy_out(s, b"hello\0").unwrap();
    assert_eq!(mm.read_c_string(s, 4096).unwrap(), b"hello");
    assert_eq!(mm.read_c_string(s, 5), Err(Errno::ENAMETOOLONG));
    assert_eq!(mm.read_c_string(s, 6).unwrap(), b"hello");
    mm.copy_out(a + 2 * P - 3, b"abc").unwrap();
    assert_eq!(mm.read_c_string(a + 2 * P - 3, 4096), Err(Errno::EFAULT));
    mm.copy_out(s, b"hello\0").unwrap();
    // argv-style arrays.
    mm.write_u64(a, s).unwrap();
    mm.write_u64(a + 8, s + 1).unwrap();
    mm.write_u64(a + 16, 0).unwrap();
    assert_eq!(
        mm.read_string_array(a, 10, 100).unwrap(),
        vec![b"hello".to_vec(), b"ello".to_vec()]
    );
    assert_eq!(mm.read_string_array(a, 1, 100), Err(Errno::E2BIG));
    // iovecs.
    let iov = a + 100;
    mm.write_u64(iov, a + 1000).unwrap();
    mm.write_u64(iov + 8, 3).unwrap();
    mm.write_u64(iov + 16, a + 2000).unwrap();
    mm.write_u64(iov + 24, 10).unwrap();
    let iovs = mm.read_iovecs(iov, 2).unwrap();
    assert_eq!(
        iovs,
        vec![
            IoVec {
                base: a + 1000,
                len: 3
            },
            IoVec {
                base: a + 2000,
                len: 10
            }
        ]
    );
    assert_eq!(mm.copy_out_iovecs(&iovs, b"abcdefg").unwrap(), 7);
    assert_eq!(
        mm.copy_in_iovecs(&iovs, 100).unwrap(),
        b"abcdefg\0\0\0\0\0\0"
    );
    assert_eq!(mm.read_iovecs(iov, 1025), Err(Errno::EINVAL));
    mm.write_u64(iov + 8, u64::MAX).unwrap();
    assert_eq!(mm.read_iovecs(iov, 2), Err(Errno::EINVAL));
}

#[test]
fn brk_grows_and_shrinks() {
    let (mut mm, pages) = new_mm();
    assert_eq!(mm.brk(0), 0);
    mm.set_brk_start(0x55_0000_0123).unwrap();
    let start = 0x55_0000_1000;
    assert_eq!(mm.brk_range(), (start, start));
    assert_eq!(mm.brk(0), start);
    assert_eq!(mm.brk(start + 10), start + 10);
    mm.write_u64(start, 42).unwrap();
    assert_eq!(mm.brk(start + 3 * P + 1), start + 3 * P + 1);
    assert_eq!(mm.vmas().count(), 1, "heap grown in place");
    assert!(mm.maps_text().contains("[heap]"));
    assert_eq!(mm.read_u64(start).unwrap(), 42);
    mm.write_u64(start + 3 * P, 1).unwrap();
    assert_eq!(mm.brk(start + P), start + P);
    assert_eq!(mm.read_u64(start + 3 * P), Err(Errno::EFAULT));
    // Below the start: unchanged.
    assert_eq!(mm.brk(start - P), start + P);
    // Something in the way: unchanged.
    mm.mmap(start + 10 * P, P, RW, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    assert_eq!(mm.brk(start + 20 * P), start + P);
    // Regrowing reads zeros.
    assert_eq!(mm.brk(start + 4 * P), start + 4 * P);
    assert_eq!(mm.read_u64(start + 3 * P).unwrap(), 0);
    assert_eq!(mm.brk(u64::MAX), start + 4 * P);
    check_consistent(&mm, &pages);
}

#[test]
fn mremap_shrink_grow_move() {
    let (mut mm, pages) = new_mm();
    let a = 0x4000_0000;
    mm.mmap(a, 4 * P, RW, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    mm.copy_out(a, b"data").unwrap();
    // Shrink.
    assert_eq!(mm.mremap(a, 4 * P, 2 * P, 0, 0), Ok(a));
    check_consistent(&mm, &pages);
    // Grow in place.
    assert_eq!(mm.mremap(a, 2 * P, 6 * P, 0, 0), Ok(a));
    assert_eq!(mm.vsize(), 6 * P);
    check_consistent(&mm, &pages);
    // Blocked: ENOMEM without MAYMOVE, moved with it (same content, no copy).
    mm.mmap(a + 6 * P, P, RW, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    assert_eq!(mm.mremap(a, 6 * P, 8 * P, 0, 0), Err(Errno::ENOMEM));
    let backing = mm.vma_at(a).unwrap().mf_offset;
    let b = mm.mremap(a, 6 * P, 8 * P, c::MREMAP_MAYMOVE, 0).unwrap();
    assert_ne!(b, a);
    assert_eq!(mm.read_bytes::<4>(b).unwrap(), *b"data");
    assert_eq!(mm.vma_at(b).unwrap().mf_offset, backing);
    assert!(mm.vma_at(a).is_none());
    mm.write_u64(b + 7 * P, 5).unwrap();
    check_consistent(&mm, &pages);
    // MREMAP_FIXED.
    let c = 0x5000_0000;
    mm.mmap(c, P, RW, PRIV_ANON | c::MAP_FIXED, None).unwrap();
    assert_eq!(mm.mremap(b, P, P, c::MREMAP_FIXED, c), Err(Errno::EINVAL));
    assert_eq!(
        mm.mremap(b, 8 * P, 2 * P, c::MREMAP_FIXED | c::MREMAP_MAYMOVE, c),
        Ok(c)
    );
    assert_eq!(mm.read_bytes::<4>(c).unwrap(), *b"data");
    check_consistent(&mm, &pages);
    // Errors.
    assert_eq!(mm.mremap(c + 1, P, P, 0, 0), Err(Errno::EINVAL));
    assert_eq!(mm.mremap(c, P, 0, 0, 0), Err(Errno::EINVAL));
    assert_eq!(
        mm.mremap(c, 4 * P, 8 * P, c::MREMAP_MAYMOVE, 0),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        mm.mremap(0x7000_0000, P, 2 * P, c::MREMAP_MAYMOVE, 0),
        Err(Errno::EFAULT)
    );
    assert_eq!(mm.mremap(c, P, P, 0x100, 0), Err(Errno::EINVAL));
    assert_eq!(
        mm.mremap(c, P, 2 * P, c::MREMAP_MAYMOVE | c::MREMAP_FIXED, c),
        Err(Errno::EINVAL)
    );
    check_consistent(&mm, &pages);
}

#[test]
fn madvise_dontneed_zeroes_private() {
    let (mut mm, pages) = new_mm();
    let a = anon(&mut mm, 2 * P);
    mm.copy_out(a, b"gone").unwrap();
    mm.copy_out(a + P, b"gone").unwrap();
    mm.madvise(a, P, libc::MADV_DONTNEED).unwrap();
    assert_eq!(mm.read_bytes::<4>(a).unwrap(), [0; 4]);
    assert_eq!(mm.read_bytes::<4>(a + P).unwrap(), *b"gone");
    // Shared memory keeps its contents.
    let s = mm
        .mmap(0, P, RW, c::MAP_SHARED | c::MAP_ANONYMOUS, None)
        .unwrap();
    mm.copy_out(s, b"stay").unwrap();
    mm.madvise(s, P, libc::MADV_DONTNEED).unwrap();
    assert_eq!(mm.read_bytes::<4>(s).unwrap(), *b"stay");
    mm.madvise(s, P, libc::MADV_REMOVE).unwrap();
    assert_eq!(mm.read_bytes::<4>(s).unwrap(), [0; 4]);
    assert_eq!(mm.madvise(a, P, libc::MADV_REMOVE), Err(Errno::EINVAL));
    // Private file mappings go back to the file's bytes.
    let f: Arc<dyn MappableFile> = MemFile::new("/lib/x", b"file".to_vec());
    let m = mm.mmap(0, P, RW, c::MAP_PRIVATE, mfile(f, 0)).unwrap();
    mm.copy_out(m, b"FILE").unwrap();
    mm.madvise(m, P, libc::MADV_DONTNEED).unwrap();
    assert_eq!(mm.read_bytes::<4>(m).unwrap(), *b"file");
    // Hints, errors.
    mm.madvise(a, 2 * P, libc::MADV_WILLNEED).unwrap();
    assert_eq!(mm.madvise(a, P, 9999), Err(Errno::EINVAL));
    assert_eq!(mm.madvise(a + 1, P, libc::MADV_NORMAL), Err(Errno::EINVAL));
    assert_eq!(mm.madvise(a, 3 * P, libc::MADV_NORMAL), Err(Errno::ENOMEM));
    check_consistent(&mm, &pages);
}

#[test]
fn private_file_mapping_copies_and_never_writes_back() {
    let (mut mm, pages) = new_mm();
    let mut content = vec![0u8; (P + 100) as usize];
    content[..5].copy_from_slice(b"hello");
    content[P as usize..P as usize + 5].copy_from_slice(b"page2");
    let file = MemFile::new("/bin/prog", content.clone());
    let f: Arc<dyn MappableFile> = file.clone();
    let a = mm
        .mmap(0, 3 * P, RW, c::MAP_PRIVATE, mfile(f.clone(), 0))
        .unwrap();
    assert_eq!(mm.read_bytes::<5>(a).unwrap(), *b"hello");
    assert_eq!(mm.read_bytes::<5>(a + P).unwrap(), *b"page2");
    // Past EOF reads zero.
    assert_eq!(mm.read_bytes::<4>(a + P + 100).unwrap(), [0; 4]);
    mm.copy_out(a, b"HELLO").unwrap();
    mm.msync(a, 3 * P, c::MS_SYNC).unwrap();
    mm.munmap(a, 3 * P).unwrap();
    assert_eq!(*file.data.lock().unwrap(), content);
    // With an offset.
    let b = mm.mmap(0, P, R, c::MAP_PRIVATE, mfile(f, P)).unwrap();
    assert_eq!(mm.read_bytes::<5>(b).unwrap(), *b"page2");
    assert!(mm.maps_text().contains("00001000 00:00 0"));
    assert!(mm.maps_text().contains("/bin/prog"));
    check_consistent(&mm, &pages);
}

/// ld.so's way of mapping a library (the whole file read-only, then each
/// segment over it at its own offset) reuses the first copy for a file the
/// sandbox cannot change; a writable segment's pages that a forked child
/// shares stay copy-on-write, and a file that can change is copied again.
#[test]
fn private_segment_over_whole_file_mapping_reuses_its_copy() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut mm, pages) = new_mm_with(mf.clone());
    let content: Vec<u8> = (0..4 * P).map(|i| (i / P) as u8 + b'a').collect();
    let f: Arc<dyn MappableFile> = MemFile::fixed("/lib/libx.so", content.clone());
    let a = mm
        .mmap(0, 4 * P, R, c::MAP_PRIVATE, mfile(f.clone(), 0))
        .unwrap();
    let (child, cpages) = fork_child(&mut mm);
    let first = host_off(&pages, a + 2 * P);
    let fixed = c::MAP_PRIVATE | c::MAP_FIXED;
    mm.mmap(a + P, 2 * P, RW, fixed, mfile(f.clone(), P))
        .unwrap();
    assert_eq!(host_off(&pages, a + 2 * P), first, "copied the file again");
    assert_eq!(mf.refcount(first), 2, "still shared with the child");
    assert_eq!(mm.read_bytes::<1>(a + 2 * P).unwrap(), *b"c");
    assert!(
        mm.maps_text().contains("rw-p 00001000"),
        "{}",
        mm.maps_text()
    );
    // Shared with the child: the first write copies.
    assert!(!host_prot(&pages, a + P).write);
    app_write(&mut mm, &pages, a + P, b"PARENT").unwrap();
    assert_eq!(mm.read_bytes::<6>(a + P).unwrap(), *b"PARENT");
    assert_eq!(child.read_bytes::<1>(a + P).unwrap(), *b"b");
    check_mapped(&mm, &pages);
    check_mapped(&child, &cpages);
    drop(child);
    check_consistent(&mm, &pages);
    // Written, or at another offset: a copy of the file's bytes again.
    mm.mmap(a + P, P, R, fixed, mfile(f.clone(), P)).unwrap();
    assert_eq!(mm.read_bytes::<1>(a + P).unwrap(), *b"b");
    let before = host_off(&pages, a + 3 * P);
    mm.mmap(a + 3 * P, P, R, fixed, mfile(f, 0)).unwrap();
    assert_eq!(mm.read_bytes::<1>(a + 3 * P).unwrap(), *b"a");
    assert_ne!(host_off(&pages, a + 3 * P), before);
    // A file the sandbox can change is copied at each mapping.
    let g: Arc<dyn MappableFile> = MemFile::new("/tmp/lib", content);
    let b = mm
        .mmap(0, 4 * P, R, c::MAP_PRIVATE, mfile(g.clone(), 0))
        .unwrap();
    let before = host_off(&pages, b + P);
    mm.mmap(b + P, P, R, fixed, mfile(g, P)).unwrap();
    assert_ne!(host_off(&pages, b + P), before);
    check_consistent(&mm, &pages);
}

#[test]
fn shared_file_mapping_writes_back() {
    let (mut mm, pages) = new_mm();
    let file = MemFile::new("/data", vec![b'.'; 10]);
    let f: Arc<dyn MappableFile> = file.clone();
    let a = mm
        .mmap(0, P, RW, c::MAP_SHARED, mfile(f.clone(), 0))
        .unwrap();
    mm.copy_out(a, b"shared").unwrap();
    mm.msync(a, P, c::MS_SYNC).unwrap();
    // Written up to the file size only: a mapping never extends a file.
    assert_eq!(*file.data.lock().unwrap(), b"shared....");
    mm.copy_out(a + 6, b"!!").unwrap();
    mm.munmap(a, P).unwrap();
    assert_eq!(*file.data.lock().unwrap(), b"shared!!..");
    assert_eq!(mm.msync(a, P, c::MS_SYNC), Err(Errno::ENOMEM));
    assert_eq!(mm.msync(a, P, c::MS_SYNC | c::MS_ASYNC), Err(Errno::EINVAL));
    assert_eq!(mm.msync(a + 1, P, c::MS_SYNC), Err(Errno::EINVAL));
    // Read-only shared mappings never write back.
    let b = mm.mmap(0, P, R, c::MAP_SHARED, mfile(f, 0)).unwrap();
    file.data.lock().unwrap()[0] = b'S';
    mm.munmap(b, P).unwrap();
    assert_eq!(file.data.lock().unwrap()[0], b'S');
    // Exit writes back too.
    let f: Arc<dyn MappableFile> = file.clone();
    let c = mm.mmap(0, P, RW, c::MAP_SHARED, mfile(f, 0)).unwrap();
    mm.copy_out(c, b"bye").unwrap();
    check_consistent(&mm, &pages);
    drop(mm);
    assert_eq!(*file.data.lock().unwrap(), b"byered!!..");
}

#[test]
fn stack_grows_on_fault_within_limit() {
    let (mut mm, pages) = new_mm();
    let top = mm.layout().stack_top;
    let s = top - 4 * P;
    mm.mmap(
        s,
        4 * P,
        RW,
        PRIV_ANON | c::MAP_FIXED | c::MAP_GROWSDOWN,
        None,
    )
    .unwrap();
    // Just below: grows.
    mm.handle_fault(s - 8, Access::Write).unwrap();
    let v = mm.vma_at(s - 8).unwrap();
    assert!(v.growsdown && v.start <= s - P);
    check_consistent(&mm, &pages);
    // Copy-out below the stack grows it too (as a kernel fault would).
    mm.copy_out(s - 200 * 1024, b"deep").unwrap();
    assert_eq!(mm.read_bytes::<4>(s - 200 * 1024).unwrap(), *b"deep");
    // Beyond the limit: no.
    assert_eq!(
        mm.handle_fault(top - 9 * 1024 * 1024, Access::Write),
        Err(Errno::EFAULT)
    );
    // Mapped but not allowed: EACCES.
    let ro = mm.mmap(0, P, R, PRIV_ANON, None).unwrap();
    assert_eq!(mm.handle_fault(ro, Access::Write), Err(Errno::EACCES));
    // Below an ordinary mapping: no.
    assert_eq!(mm.handle_fault(ro - 8, Access::Read), Err(Errno::EFAULT));
    // Content survives growth.
    mm.copy_out(top - 8, b"topmost!").unwrap();
    let low = mm.vmas().find(|v| v.growsdown).unwrap().start;
    mm.handle_fault(low - 1, Access::Write).unwrap();
    assert_eq!(mm.read_bytes::<8>(top - 8).unwrap(), *b"topmost!");
    check_consistent(&mm, &pages);
    // Growth stops at the guard gap above another mapping.
    let low = mm.vmas().find(|v| v.growsdown).unwrap().start;
    mm.mmap(
        low - STACK_GUARD_GAP - P,
        P,
        RW,
        PRIV_ANON | c::MAP_FIXED,
        None,
    )
    .unwrap();
    assert_eq!(mm.handle_fault(low - 8, Access::Write), Err(Errno::EFAULT));
}

#[test]
fn maps_text_format() {
    let (mut mm, _) = new_mm();
    mm.mmap(0x40_0000, P, 5, PRIV_ANON | c::MAP_FIXED, None)
        .unwrap();
    let text = mm.maps_text();
    assert_eq!(text, "00400000-00401000 r-xp 00000000 00:00 0\n");
    assert_eq!(mm.highest_address(), 0x40_1000);
    mm.copy_out_force(0x40_0000, b"x").unwrap();
    assert_eq!(mm.rss(), P);
}

#[test]
fn snapshot_round_trip() {
    let (mut mm, pages) = new_mm();
    let file = MemFile::new("/lib/libc.so", vec![9u8; 2 * P as usize]);
    let f: Arc<dyn MappableFile> = file.clone();
    let a = anon(&mut mm, 3 * P);
    mm.copy_out(a + P, b"anon").unwrap();
    let b = mm
        .mmap(0, 2 * P, R, c::MAP_PRIVATE, mfile(f.clone(), 0))
        .unwrap();
    let c = mm.mmap(0, P, RW, c::MAP_SHARED, mfile(f, P)).unwrap();
    mm.set_brk_start(0x56_0000_0000).unwrap();
    mm.brk(0x56_0000_2000);
    mm.mprotect(a, P, R).unwrap();
    check_consistent(&mm, &pages);
    let state = mm.snapshot();
    // Through serde, as a statefile would.
    let json = serde_json_like(&state);
    assert_eq!(json, state);

    // "Save" the memory file and load it into a new one.
    let old = mm.memory_file().clone();
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    mf.restore_allocations(&old.allocated_ranges()).unwrap();
    for r in old.allocated_ranges() {
        for d in old.data_ranges(r.start, r.len()).unwrap() {
            let mut buf = vec![0u8; d.len() as usize];
            old.read_at(d.start, &mut buf).unwrap();
            mf.write_at(d.start, &buf).unwrap();
        }
    }
    let opened = Mutex::new(Vec::new());
    let reopen = |name: &str| -> Result<Arc<dyn MappableFile>, Errno> {
        opened.lock().unwrap().push(name.to_string());
        Ok(file.clone())
    };
    let pages2: Pages = Arc::default();
    let aspace = FakeAddressSpace {
        pages: pages2.clone(),
        calls: Arc::default(),
    };
    let mut mm2 =
        MemoryManager::from_snapshot(&state, layout(), mf, Arc::new(aspace), &reopen).unwrap();
    assert_eq!(
        *opened.lock().unwrap(),
        vec!["/lib/libc.so".to_string()],
        "each file re-opened once"
    );
    check_consistent(&mm2, &pages2);
    assert_eq!(mm2.maps_text(), mm.maps_text());
    assert_eq!(mm2.read_bytes::<4>(a + P).unwrap(), *b"anon");
    assert_eq!(mm2.read_bytes::<1>(b).unwrap(), [9]);
    assert_eq!(mm2.brk_range(), (0x56_0000_0000, 0x56_0000_2000));
    mm2.copy_out(c, b"w").unwrap();
    mm2.msync(c, P, c::MS_SYNC).unwrap();
    assert_eq!(file.data.lock().unwrap()[P as usize], b'w');
    assert_eq!(mm2.snapshot(), state.clone_with_highest(&mm2));
}

impl MmState {
    fn clone_with_highest(&self, mm: &MemoryManager) -> MmState {
        MmState {
            highest_address: mm.highest_address(),
            ..self.clone()
        }
    }
}

/// Through serde, as a statefile would carry it.
fn serde_json_like(state: &MmState) -> MmState {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

fn restore(state: &MmState, mf: Arc<MemoryFile>) -> Result<MemoryManager, MmRestoreError> {
    let aspace = FakeAddressSpace {
        pages: Arc::default(),
        calls: Arc::default(),
    };
    let reopen = |name: &str| -> Result<Arc<dyn MappableFile>, Errno> {
        if name == "/missing" {
            Err(Errno::ENOENT)
        } else {
            Ok(MemFile::new(name, vec![]) as Arc<dyn MappableFile>)
        }
    };
    MemoryManager::from_snapshot(state, layout(), mf, Arc::new(aspace), &reopen)
}

#[test]
fn hostile_snapshots_are_refused() {
    let good_vma = VmaState {
        direct: false,
        start: 0x1000_0000,
        end: 0x1000_0000 + 2 * P,
        prot: Prot::READ_WRITE,
        max_prot: Prot::ALL,
        shared: false,
        growsdown: false,
        ever_writable: true,
        file: None,
        mf_offset: 0,
        kind: VmaKind::Normal,
        dontfork: false,
        wipeonfork: false,
    };
    let base = MmState {
        page_size: P,
        highest_address: good_vma.end,
        vmas: vec![good_vma.clone()],
        backing: vec![BackingState {
            start: good_vma.start,
            end: good_vma.end,
            mf_offset: 0,
        }],
        brk_start: 0,
        brk: 0,
        stack_limit: DEFAULT_STACK_LIMIT,
    };
    let mf = || {
        let mf = Arc::new(MemoryFile::new(1 << 30).unwrap());
        mf.restore_allocations(&[FileRange {
            start: 0,
            end: 4 * P,
        }])
        .unwrap();
        mf
    };
    assert!(restore(&base, mf()).is_ok());
    type Mutation = Box<dyn Fn(&mut MmState)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("page size", Box::new(|s| s.page_size = 65536)),
        ("unaligned", Box::new(|s| s.vmas[0].start += 1)),
        (
            "reversed",
            Box::new(|s| s.vmas[0].end = s.vmas[0].start - P),
        ),
        ("empty", Box::new(|s| s.vmas[0].end = s.vmas[0].start)),
        (
            "beyond top",
            Box::new(|s| {
                s.vmas[0].start = 0x7fff_ffff_0000;
                s.vmas[0].end = TOP_PAGE;
            }),
        ),
        ("highest", Box::new(|s| s.highest_address = 1 << 60)),
        (
            "below min",
            Box::new(|s| {
                s.vmas[0].start = 0;
                s.vmas[0].end = 2 * P;
            }),
        ),
        ("mf unaligned", Box::new(|s| s.backing[0].mf_offset = 5)),
        (
            "mf not allocated",
            Box::new(|s| s.backing[0].mf_offset = 8 * P),
        ),
        (
            "mf overflow",
            Box::new(|s| s.backing[0].mf_offset = TOP_PAGE),
        ),
        (
            "overlap",
            Box::new(|s| {
                let mut v = s.vmas[0].clone();
                v.start += P;
                v.end += P;
                s.vmas.push(v);
                s.backing.push(BackingState {
                    start: s.vmas[0].start + P,
                    end: s.vmas[0].end + P,
                    mf_offset: 2 * P,
                });
            }),
        ),
        (
            "shared backing",
            Box::new(|s| {
                let mut v = s.vmas[0].clone();
                v.start += 4 * P;
                v.end += 4 * P;
                s.backing.push(BackingState {
                    start: v.start,
                    end: v.end,
                    mf_offset: P,
                });
                s.vmas.push(v);
            }),
        ),
        ("no backing", Box::new(|s| s.backing.clear())),
        ("backing short", Box::new(|s| s.backing[0].end -= P)),
        (
            "backing beyond the mapping",
            Box::new(|s| {
                s.backing[0].end += P;
            }),
        ),
        (
            "backing reversed",
            Box::new(|s| {
                s.backing[0].end = s.backing[0].start;
            }),
        ),
        (
            "backing out of order",
            Box::new(|s| {
                let b = s.backing[0];
                s.backing = vec![
                    BackingState {
                        start: b.start + P,
                        end: b.end,
                        mf_offset: P,
                    },
                    BackingState {
                        start: b.start,
                        end: b.start + P,
                        mf_offset: 0,
                    },
                ];
            }),
        ),
        (
            "offset on a non-direct mapping",
            Box::new(|s| s.vmas[0].mf_offset = P),
        ),
        (
            "wipe-on-fork shared",
            Box::new(|s| {
                s.vmas[0].shared = true;
                s.vmas[0].wipeonfork = true;
            }),
        ),
        (
            "prot over max",
            Box::new(|s| s.vmas[0].max_prot = Prot::READ),
        ),
        (
            "missing file",
            Box::new(|s| {
                s.vmas[0].file = Some(FileState {
                    name: "/missing".into(),
                    offset: 0,
                })
            }),
        ),
        (
            "file offset",
            Box::new(|s| {
                s.vmas[0].file = Some(FileState {
                    name: "/f".into(),
                    offset: TOP_PAGE,
                })
            }),
        ),
        (
            "brk reversed",
            Box::new(|s| {
                s.brk_start = 0x2000_0000;
                s.brk = 0x1000_0000;
            }),
        ),
        (
            "brk beyond",
            Box::new(|s| {
                s.brk_start = 0x2000_0000;
                s.brk = u64::MAX;
            }),
        ),
    ];
    for (what, mutate) in cases {
        let mut s = base.clone();
        mutate(&mut s);
        let mf = mf();
        let before = mf.allocated_ranges();
        let err = restore(&s, mf.clone()).err();
        assert!(err.is_some(), "{what}: accepted");
        assert_eq!(
            mf.allocated_ranges(),
            before,
            "{what}: a refused restore freed memory"
        );
        eprintln!("{what}: {}", err.unwrap());
    }
    // A smaller host says so plainly.
    let mut s = base.clone();
    s.vmas[0].start = 0x100_0000_0000;
    s.vmas[0].end = 0x100_0000_2000;
    s.highest_address = s.vmas[0].end;
    let small = Layout::for_va_bits(39, P).unwrap();
    let aspace = FakeAddressSpace {
        pages: Arc::default(),
        calls: Arc::default(),
    };
    let reopen = |_: &str| -> Result<Arc<dyn MappableFile>, Errno> { Err(Errno::ENOENT) };
    let err = MemoryManager::from_snapshot(&s, small, mf(), Arc::new(aspace), &reopen)
        .err()
        .unwrap();
    assert!(err.to_string().contains("39-bit"), "{err}");
}

#[test]
fn dropping_the_manager_frees_memory() {
    let mf = Arc::new(MemoryFile::new(1 << 30).unwrap());
    let (mut mm, _) = new_mm_with(mf.clone());
    anon(&mut mm, 10 * P);
    assert_eq!(mf.allocated_bytes(), 10 * P);
    drop(mm);
    assert_eq!(mf.allocated_bytes(), 0);
}

#[test]
fn shared_mapping_of_read_only_fd_never_becomes_writable() {
    let (mut mm, _) = new_mm();
    let f: Arc<dyn MappableFile> = MemFile::new("/ro", vec![1; 10]);
    let ro = |f: &Arc<dyn MappableFile>| {
        Some(MmapFile {
            file: f.clone(),
            offset: 0,
            writable: false,
        })
    };
    assert_eq!(mm.mmap(0, P, RW, c::MAP_SHARED, ro(&f)), Err(Errno::EACCES));
    let a = mm.mmap(0, P, R, c::MAP_SHARED, ro(&f)).unwrap();
    assert_eq!(mm.mprotect(a, P, RW), Err(Errno::EACCES));
    // A private mapping of the same fd may be written (copy-on-write).
    let b = mm.mmap(0, P, R, c::MAP_PRIVATE, ro(&f)).unwrap();
    mm.mprotect(b, P, RW).unwrap();
    assert_eq!(mm.mprotect(b, P, 0x100), Err(Errno::EINVAL));
    assert_eq!(
        mm.mprotect(
            b,
            P,
            RW | libc::PROT_GROWSDOWN as u64 | libc::PROT_GROWSUP as u64
        ),
        Err(Errno::EINVAL)
    );
}

// ---- fork and copy-on-write ----

/// A fresh memory file loaded with what `old` holds, as a restore loads
/// the memory section (its restore bookkeeping started).
fn clone_mf(old: &MemoryFile) -> Arc<MemoryFile> {
    let mf = Arc::new(MemoryFile::new(old.capacity()).unwrap());
    mf.restore_allocations(&old.allocated_ranges()).unwrap();
    for r in old.allocated_ranges() {
        for d in old.data_ranges(r.start, r.len()).unwrap() {
            let mut buf = vec![0u8; d.len() as usize];
            old.read_at(d.start, &mut buf).unwrap();
            mf.write_at(d.start, &buf).unwrap();
        }
    }
    mf
}

fn fake_aspace() -> (Arc<dyn AddressSpace>, Pages, Arc<Mutex<Vec<String>>>) {
    let pages: Pages = Arc::default();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let aspace = FakeAddressSpace {
        pages: pages.clone(),
        calls: calls.clone(),
    };
    (Arc::new(aspace), pages, calls)
}

/// The child of `parent`, in an address space of its own.
fn fork_child(parent: &mut MemoryManager) -> (MemoryManager, Pages) {
    let forked = parent.fork().unwrap();
    let (aspace, pages, _) = fake_aspace();
    (MemoryManager::from_fork(forked, aspace).unwrap(), pages)
}

/// A write by the application itself: through the host mapping, as the
/// CPU would do it, taking the fault (Access::Unknown, as ptrace reports
/// it) that a read-only host page raises first.
fn app_write(mm: &mut MemoryManager, pages: &Pages, addr: u64, data: &[u8]) -> Result<(), Errno> {
    let page = addr & !(P - 1);
    // A frozen copy-on-write page faults twice: the freeze's thaw, then
    // the copy-on-write break.
    for attempt in 0..3 {
        let entry = pages.lock().unwrap().get(&page).copied();
        match entry {
            Some((off, prot)) if prot.write => {
                // Straight into the memfd, as the stub's mapping would:
                // not through the Sentry's write path (and its freeze check).
                let at = i64::try_from(off + (addr - page)).unwrap();
                let n = nix::sys::uio::pwrite(mm.memory_file().fd(), data, at)?;
                assert_eq!(n, data.len());
                return Ok(());
            }
            _ if attempt < 2 => mm.handle_fault(addr, Access::Unknown)?,
            _ => panic!("a resolved fault at {addr:#x} left the page unwritable"),
        }
    }
    unreachable!()
}

fn host_prot(pages: &Pages, addr: u64) -> Prot {
    pages.lock().unwrap()[&(addr & !(P - 1))].1
}

fn host_off(pages: &Pages, addr: u64) -> u64 {
    pages.lock().unwrap()[&(addr & !(P - 1))].0
}

#[test]
fn fork_shares_pages_copy_on_write() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let a = anon(&mut parent, 4 * P);
    for i in 0..4 {
        parent
            .copy_out(a + i * P, format!("page{i}").as_bytes())
            .unwrap();
    }
    let ro = anon(&mut parent, P);
    parent.copy_out(ro, b"ro").unwrap();
    parent.mprotect(ro, P, R).unwrap();
    let base = mf.allocated_bytes();
    assert_eq!(base, 5 * P);
    let (mut child, cpages) = fork_child(&mut parent);
    assert_eq!(mf.allocated_bytes(), base, "fork copies nothing");
    check_mapped(&parent, &ppages);
    check_mapped(&child, &cpages);
    assert_eq!(child.maps_text(), parent.maps_text());
    for i in 0..4 {
        let at = a + i * P;
        assert!(!host_prot(&ppages, at).write, "parent page {i} writable");
        assert!(!host_prot(&cpages, at).write, "child page {i} writable");
        assert_eq!(host_off(&ppages, at), host_off(&cpages, at));
        assert_eq!(mf.refcount(host_off(&ppages, at)), 2);
    }
    assert_eq!(child.read_bytes::<5>(a + 2 * P).unwrap(), *b"page2");

    // The parent writes page 0: it gets a copy, the child keeps the old bytes.
    app_write(&mut parent, &ppages, a, b"PARENT").unwrap();
    assert_eq!(mf.allocated_bytes(), base + P);
    assert_eq!(parent.read_bytes::<6>(a).unwrap(), *b"PARENT");
    assert_eq!(child.read_bytes::<5>(a).unwrap(), *b"page0");
    assert_ne!(host_off(&ppages, a), host_off(&cpages, a));
    // The child writes page 1: its copy; then the parent's page 1 is its
    // own again and is reused, not copied.
    app_write(&mut child, &cpages, a + P, b"CHILD").unwrap();
    assert_eq!(mf.allocated_bytes(), base + 2 * P);
    let before = host_off(&ppages, a + P);
    app_write(&mut parent, &ppages, a + P + 8, b"!").unwrap();
    assert_eq!(host_off(&ppages, a + P), before, "reused in place");
    assert_eq!(mf.allocated_bytes(), base + 2 * P);
    assert_eq!(parent.read_bytes::<6>(a + P + 3).unwrap(), *b"e1\0\0\0!");
    assert_eq!(child.read_bytes::<5>(a + P).unwrap(), *b"CHILD");
    // copy_out (the Sentry writing for a syscall) breaks sharing too.
    child.copy_out(a + 3 * P, b"read()").unwrap();
    assert_eq!(parent.read_bytes::<5>(a + 3 * P).unwrap(), *b"page3");
    assert_eq!(child.read_bytes::<6>(a + 3 * P).unwrap(), *b"read()");
    assert!(host_prot(&cpages, a + 3 * P).write);
    // A write to a read-only mapping is still refused, shared or not.
    assert_eq!(child.handle_fault(ro, Access::Unknown), Err(Errno::EACCES));
    // A second thread's fault on a page just resolved retries; a fault on
    // a page that was never copy-on-write is a protection error.
    assert_eq!(
        child.handle_fault(a + 3 * P + 3, Access::Unknown),
        Err(Errno::EACCES)
    );
    assert_eq!(child.handle_fault(a + P + 9, Access::Unknown), Ok(()));
    assert_eq!(child.handle_fault(a + P, Access::Exec), Err(Errno::EACCES));
    // Page 2 is untouched: still one page for both.
    assert_eq!(host_off(&ppages, a + 2 * P), host_off(&cpages, a + 2 * P));
    check_mapped(&parent, &ppages);
    check_mapped(&child, &cpages);
    drop(child);
    check_consistent(&parent, &ppages);
    drop(parent);
    assert_eq!(mf.allocated_bytes(), 0);
}

/// Two threads fault on two pages of one copy-on-write run that nobody
/// shares any more (after a restore every writable private page is such a
/// run): the first fault makes the whole run writable, so the second,
/// which reaches the memory manager after it, must retry, not become a
/// SIGSEGV. A restored four-thread program on ptrace crashed this way.
#[test]
fn a_fault_racing_a_reused_run_retries() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let a = anon(&mut parent, 4 * P);
    for i in 0..4 {
        parent.copy_out(a + i * P, b"x").unwrap();
    }
    let (child, _) = fork_child(&mut parent);
    drop(child);
    assert!(!host_prot(&ppages, a + 2 * P).write);
    // The first thread's fault reuses the run in place: all four pages.
    parent.handle_fault(a + 5, Access::Unknown).unwrap();
    for i in 0..4 {
        assert!(
            host_prot(&ppages, a + i * P).write,
            "page {i} still read-only"
        );
    }
    // The second thread faulted on page 2 before that and arrives now.
    assert_eq!(parent.handle_fault(a + 2 * P + 8, Access::Unknown), Ok(()));
    check_consistent(&parent, &ppages);
}

#[test]
fn fork_shares_map_shared_memory_truly() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let s = parent
        .mmap(0, 2 * P, RW, c::MAP_SHARED | c::MAP_ANONYMOUS, None)
        .unwrap();
    parent.copy_out(s, b"before").unwrap();
    let (mut child, cpages) = fork_child(&mut parent);
    assert!(host_prot(&ppages, s).write && host_prot(&cpages, s).write);
    app_write(&mut child, &cpages, s, b"child!").unwrap();
    assert_eq!(parent.read_bytes::<6>(s).unwrap(), *b"child!");
    parent.copy_out(s + P, b"parent").unwrap();
    assert_eq!(child.read_bytes::<6>(s + P).unwrap(), *b"parent");
    assert_eq!(mf.allocated_bytes(), 2 * P);
    // MADV_REMOVE zeroes it for both.
    child.madvise(s, P, libc::MADV_REMOVE).unwrap();
    assert_eq!(parent.read_bytes::<6>(s).unwrap(), [0; 6]);
    drop(parent);
    assert_eq!(child.read_bytes::<6>(s + P).unwrap(), *b"parent");
    check_consistent(&child, &cpages);
    drop(child);
    assert_eq!(mf.allocated_bytes(), 0);
}

#[test]
fn fork_advice_dontfork_and_wipeonfork() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let a = anon(&mut parent, 3 * P);
    for i in 0..3 {
        parent.copy_out(a + i * P, b"data").unwrap();
    }
    parent.madvise(a, P, libc::MADV_DONTFORK).unwrap();
    parent.madvise(a + 2 * P, P, libc::MADV_WIPEONFORK).unwrap();
    let shared = parent
        .mmap(0, P, RW, c::MAP_SHARED | c::MAP_ANONYMOUS, None)
        .unwrap();
    assert_eq!(
        parent.madvise(shared, P, libc::MADV_WIPEONFORK),
        Err(Errno::EINVAL)
    );
    let state = parent.snapshot();
    let flags: Vec<(bool, bool)> = state
        .vmas
        .iter()
        .map(|v| (v.dontfork, v.wipeonfork))
        .collect();
    assert!(flags.contains(&(true, false)) && flags.contains(&(false, true)));
    let (mut child, cpages) = fork_child(&mut parent);
    assert!(child.vma_at(a).is_none(), "MADV_DONTFORK left out");
    assert!(child.vma_at(a + P).is_some());
    assert_eq!(child.read_bytes::<4>(a + P).unwrap(), *b"data");
    assert_eq!(child.read_bytes::<4>(a + 2 * P).unwrap(), [0; 4], "wiped");
    assert_eq!(parent.read_bytes::<4>(a + 2 * P).unwrap(), *b"data");
    assert!(child.vma_at(a + 2 * P).unwrap().wipeonfork, "inherited");
    // The parent's DONTFORK page is its own: no copy-on-write there.
    assert!(host_prot(&ppages, a).write);
    check_mapped(&parent, &ppages);
    check_mapped(&child, &cpages);
    // MADV_DOFORK / KEEPONFORK undo them.
    parent.madvise(a, 3 * P, libc::MADV_DOFORK).unwrap();
    parent.madvise(a, 3 * P, libc::MADV_KEEPONFORK).unwrap();
    assert!(parent.vmas().all(|v| !v.dontfork && !v.wipeonfork));
    let (grandchild, gpages) = fork_child(&mut child);
    check_mapped(&grandchild, &gpages);
    let (mut second, spages) = fork_child(&mut parent);
    assert_eq!(second.read_bytes::<4>(a).unwrap(), *b"data");
    assert_eq!(second.read_bytes::<4>(a + 2 * P).unwrap(), *b"data");
    app_write(&mut second, &spages, a, b"x").unwrap();
    drop((grandchild, second, child));
    check_consistent(&parent, &ppages);
    drop(parent);
    assert_eq!(mf.allocated_bytes(), 0);
}

#[test]
fn cow_ranges_under_mprotect_mremap_munmap_madvise() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let a = anon(&mut parent, 4 * P);
    for i in 0..4 {
        parent.copy_out(a + i * P, &[b'a' + i as u8; 8]).unwrap();
    }
    let (mut child, cpages) = fork_child(&mut parent);
    // mprotect away and back: shared pages stay read-only on the host.
    parent.mprotect(a, 4 * P, R).unwrap();
    parent.mprotect(a, 4 * P, RW).unwrap();
    for i in 0..4 {
        assert!(!host_prot(&ppages, a + i * P).write);
    }
    check_mapped(&parent, &ppages);
    // mremap (move and grow): the same shared pages at the new place, still
    // copy-on-write; the growth is fresh.
    let moved = parent
        .mremap(
            a,
            4 * P,
            8 * P,
            c::MREMAP_MAYMOVE | c::MREMAP_FIXED,
            0x2000_0000_0000,
        )
        .unwrap();
    assert_eq!(moved, 0x2000_0000_0000);
    assert!(parent.vma_at(a).is_none());
    assert_eq!(host_off(&ppages, moved + P), host_off(&cpages, a + P));
    assert!(!host_prot(&ppages, moved + P).write);
    assert!(host_prot(&ppages, moved + 5 * P).write);
    check_mapped(&parent, &ppages);
    app_write(&mut parent, &ppages, moved + P, b"Z").unwrap();
    assert_eq!(child.read_bytes::<1>(a + P).unwrap(), *b"b");
    assert_eq!(parent.read_bytes::<2>(moved + P).unwrap(), *b"Zb");
    // MADV_DONTNEED on a shared page: zero for the caller only.
    parent
        .madvise(moved + 2 * P, P, libc::MADV_DONTNEED)
        .unwrap();
    assert_eq!(parent.read_bytes::<1>(moved + 2 * P).unwrap(), [0]);
    assert_eq!(child.read_bytes::<1>(a + 2 * P).unwrap(), *b"c");
    // munmap in the parent: the child's pages are its own again, and a
    // write there reuses them without copying.
    parent.munmap(moved + 3 * P, P).unwrap();
    let before = mf.allocated_bytes();
    let off = host_off(&cpages, a + 3 * P);
    assert_eq!(mf.refcount(off), 1);
    app_write(&mut child, &cpages, a + 3 * P, b"D").unwrap();
    assert_eq!(host_off(&cpages, a + 3 * P), off);
    assert_eq!(mf.allocated_bytes(), before);
    // mremap shrink of the child's copy-on-write range.
    child.mremap(a, 4 * P, P, 0, 0).unwrap();
    assert_eq!(parent.read_bytes::<1>(moved).unwrap(), *b"a");
    check_mapped(&parent, &ppages);
    check_mapped(&child, &cpages);
    drop(child);
    check_consistent(&parent, &ppages);
    drop(parent);
    assert_eq!(mf.allocated_bytes(), 0);
}

#[test]
fn cow_brk_and_stack() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    parent.set_brk_start(0x56_0000_0000).unwrap();
    parent.brk(0x56_0000_2000);
    parent.copy_out(0x56_0000_1000, b"heap").unwrap();
    let top = 0x7000_0000_0000;
    let low = parent.map_stack(top, 2 * P, Prot::READ_WRITE).unwrap();
    parent.copy_out(top - 8, b"stacktop").unwrap();
    let (mut child, cpages) = fork_child(&mut parent);
    // brk shrinks and grows again in the parent: a fresh zero page; the
    // child keeps its heap.
    parent.brk(0x56_0000_1000);
    parent.brk(0x56_0000_2000);
    assert_eq!(parent.read_bytes::<4>(0x56_0000_1000).unwrap(), [0; 4]);
    assert_eq!(child.read_bytes::<4>(0x56_0000_1000).unwrap(), *b"heap");
    // The child grows its heap and stack; the shared parts stay shared.
    child.brk(0x56_0000_4000);
    child.copy_out(0x56_0000_3000, b"more").unwrap();
    child.handle_fault(low - 8, Access::Write).unwrap();
    app_write(&mut child, &cpages, low - 8, b"deeper").unwrap();
    assert_eq!(child.read_bytes::<8>(top - 8).unwrap(), *b"stacktop");
    assert_eq!(host_off(&ppages, top - P), host_off(&cpages, top - P));
    app_write(&mut child, &cpages, top - 8, b"CHILDTOP").unwrap();
    assert_eq!(parent.read_bytes::<8>(top - 8).unwrap(), *b"stacktop");
    check_mapped(&parent, &ppages);
    check_mapped(&child, &cpages);
    drop(parent);
    check_consistent(&child, &cpages);
    drop(child);
    assert_eq!(mf.allocated_bytes(), 0);
}

#[test]
fn forked_mm_is_send() {
    // It travels from the parent's host thread to the child's.
    fn send<T: Send>() {}
    send::<ForkedMm>();
}

#[test]
fn forked_mm_dropped_unused_gives_references_back() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let a = anon(&mut parent, 2 * P);
    parent.copy_out(a, b"x").unwrap();
    let forked = parent.fork().unwrap();
    assert_eq!(mf.refcount(host_off(&ppages, a)), 2);
    assert_eq!(forked.vmas().count(), 1);
    drop(forked);
    assert_eq!(mf.refcount(host_off(&ppages, a)), 1);
    // The parent's first write reprotects its page without copying.
    let off = host_off(&ppages, a);
    app_write(&mut parent, &ppages, a, b"y").unwrap();
    assert_eq!(host_off(&ppages, a), off);
    assert!(host_prot(&ppages, a + P).write, "the whole run was reused");
    check_consistent(&parent, &ppages);
}

#[test]
fn save_restore_of_two_mms_sharing_pages() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut parent, _ppages) = new_mm_with(mf.clone());
    let a = anon(&mut parent, 3 * P);
    for i in 0..3 {
        parent.copy_out(a + i * P, b"shared").unwrap();
    }
    let (mut child, cpages) = fork_child(&mut parent);
    app_write(&mut child, &cpages, a, b"CHILD!").unwrap();
    let (ps, cs) = (parent.snapshot(), child.snapshot());
    let ranges = mf.allocated_ranges();
    let saved: u64 = ranges.iter().map(|r| r.len()).sum();
    assert_eq!(saved, 4 * P, "three shared pages stored once, one copy");
    // The two records name the same offsets for the pages they share.
    let off_at = |s: &MmState, addr: u64| {
        let b = s
            .backing
            .iter()
            .find(|b| b.start <= addr && addr < b.end)
            .unwrap();
        b.mf_offset + (addr - b.start)
    };
    assert_eq!(off_at(&ps, a + P), off_at(&cs, a + P));
    assert_eq!(off_at(&ps, a + 2 * P), off_at(&cs, a + 2 * P));
    assert_ne!(off_at(&ps, a), off_at(&cs, a));

    let mf2 = clone_mf(&mf);
    let reopen = |_: &str| -> Result<Arc<dyn MappableFile>, Errno> { Err(Errno::ENOENT) };
    let (pa, ppages2, _) = fake_aspace();
    let (ca, cpages2, _) = fake_aspace();
    let mut parent2 =
        MemoryManager::from_snapshot(&ps, layout(), mf2.clone(), pa, &reopen).unwrap();
    let mut child2 = MemoryManager::from_snapshot(&cs, layout(), mf2.clone(), ca, &reopen).unwrap();
    mf2.finish_restore();
    assert_eq!(mf2.allocated_bytes(), 4 * P);
    assert_eq!(mf2.refcount(host_off(&ppages2, a + P)), 2);
    assert_eq!(mf2.refcount(host_off(&ppages2, a)), 1);
    assert_eq!(mf2.refcount(host_off(&cpages2, a)), 1);
    check_mapped(&parent2, &ppages2);
    check_mapped(&child2, &cpages2);
    assert_eq!(child2.read_bytes::<6>(a).unwrap(), *b"CHILD!");
    assert_eq!(parent2.read_bytes::<6>(a).unwrap(), *b"shared");
    // Copy-on-write still holds: the child's write to a shared page copies.
    app_write(&mut child2, &cpages2, a + P, b"mine").unwrap();
    assert_eq!(parent2.read_bytes::<6>(a + P).unwrap(), *b"shared");
    assert_eq!(mf2.allocated_bytes(), 5 * P);
    // The parent's unshared page is reused in place on its first write.
    let off = host_off(&ppages2, a);
    app_write(&mut parent2, &ppages2, a, b"P").unwrap();
    assert_eq!(host_off(&ppages2, a), off);
    drop(parent2);
    drop(child2);
    assert_eq!(mf2.allocated_bytes(), 0, "every reference given back");
    drop((parent, child));
    assert_eq!(mf.allocated_bytes(), 0);
}

#[test]
fn restore_refuses_a_backing_shared_with_a_file() {
    let mf = Arc::new(MemoryFile::new(1 << 30).unwrap());
    mf.restore_allocations(&[FileRange {
        start: 0,
        end: 4 * P,
    }])
    .unwrap();
    // A tmpfs file owns page 1.
    mf.claim_restored(P, P).unwrap();
    let v = MemoryManager::anon_vma(
        0x1000_0000,
        0x1000_0000 + 2 * P,
        Prot::READ_WRITE,
        VmaKind::Normal,
    );
    let state = MmState {
        page_size: P,
        highest_address: v.end,
        vmas: vec![v.state()],
        backing: vec![BackingState {
            start: v.start,
            end: v.end,
            mf_offset: 0,
        }],
        brk_start: 0,
        brk: 0,
        stack_limit: DEFAULT_STACK_LIMIT,
    };
    let Err(err) = restore(&state, mf.clone()) else {
        panic!("a backing run on a file's page was accepted");
    };
    assert!(err.to_string().contains("belongs to a file"), "{err}");
}

/// A file whose pages are memory-file pages (like tmpfs): shared
/// mappings map them directly, pinned.
struct PagedFile {
    mf: Arc<MemoryFile>,
    off: u64,
    len: u64,
    pins: Mutex<u32>,
}

impl MappableFile for PagedFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.mf.read_at(self.off + offset, buf).map(|_| buf.len())
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        self.mf.write_at(self.off + offset, buf).map(|_| buf.len())
    }
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.len)
    }
    fn mapping_name(&self) -> String {
        "/dev/shm/paged".into()
    }
    fn identity(&self) -> usize {
        self as *const Self as *const () as usize
    }
    fn map_shared(&self, offset: u64, len: u64) -> Option<u64> {
        if offset + len > self.len {
            return None;
        }
        *self.pins.lock().unwrap() += 1;
        Some(self.off + offset)
    }
    fn unmap_shared(&self, _offset: u64, _mf_offset: u64, _len: u64) {
        *self.pins.lock().unwrap() -= 1;
    }
}

#[test]
fn fork_of_direct_and_file_mappings() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let off = mf.allocate(2 * P).unwrap();
    let paged = Arc::new(PagedFile {
        mf: mf.clone(),
        off,
        len: 2 * P,
        pins: Mutex::new(0),
    });
    let (mut parent, ppages) = new_mm_with(mf.clone());
    let d = parent
        .mmap(0, 2 * P, RW, c::MAP_SHARED, mfile(paged.clone(), 0))
        .unwrap();
    assert!(parent.vma_at(d).unwrap().direct);
    let disk = MemFile::new("/data", vec![7u8; 2 * P as usize]);
    let priv_f = parent
        .mmap(0, 2 * P, RW, c::MAP_PRIVATE, mfile(disk.clone(), 0))
        .unwrap();
    let shared_f = parent
        .mmap(0, P, RW, c::MAP_SHARED, mfile(disk.clone(), P))
        .unwrap();
    parent.copy_out(priv_f, b"private").unwrap();
    let (mut child, cpages) = fork_child(&mut parent);
    assert_eq!(
        *paged.pins.lock().unwrap(),
        2,
        "the child pins the file's pages too"
    );
    // The direct mapping is one set of bytes for both.
    app_write(&mut child, &cpages, d + P, b"direct").unwrap();
    assert_eq!(parent.read_bytes::<6>(d + P).unwrap(), *b"direct");
    // The private file mapping: DONTNEED in the child rereads the file,
    // the parent keeps its bytes.
    child.madvise(priv_f, P, libc::MADV_DONTNEED).unwrap();
    assert_eq!(child.read_bytes::<2>(priv_f).unwrap(), [7, 7]);
    assert_eq!(parent.read_bytes::<7>(priv_f).unwrap(), *b"private");
    // The shared file mapping is shared and written back by either.
    app_write(&mut child, &cpages, shared_f, b"S").unwrap();
    assert_eq!(parent.read_bytes::<1>(shared_f).unwrap(), *b"S");
    child.msync(shared_f, P, c::MS_SYNC).unwrap();
    assert_eq!(disk.data.lock().unwrap()[P as usize], b'S');
    check_mapped(&parent, &ppages);
    check_mapped(&child, &cpages);
    drop(child);
    assert_eq!(*paged.pins.lock().unwrap(), 1);
    drop(parent);
    assert_eq!(*paged.pins.lock().unwrap(), 0);
    mf.free(off, 2 * P).unwrap();
    assert_eq!(mf.allocated_bytes(), 0);
}

/// The whole image a snapshot holds, read as the statefile writer does.
fn read_snapshot(mf: &MemoryFile, snap: &Snapshot) -> Vec<u8> {
    let mut img = vec![0u8; snap.len() as usize];
    for (i, chunk) in img.chunks_mut(16 * P as usize).enumerate() {
        snap.read_into(mf, i as u64 * 16 * P, chunk).unwrap();
    }
    img
}

/// The bytes behind `[addr, addr + len)` in `img`, through the page table
/// `pages` had at the freeze (what the saved address space records).
fn image_bytes(img: &[u8], pages: &Pages, addr: u64, len: u64) -> Vec<u8> {
    (addr..addr + len)
        .map(|a| img[(host_off(pages, a) + (a & (P - 1))) as usize])
        .collect()
}

/// A copy of a page table as it is now.
fn table_now(pages: &Pages) -> Pages {
    Arc::new(Mutex::new(pages.lock().unwrap().clone()))
}

#[test]
fn freeze_keeps_memory_as_it_was_while_the_program_writes() {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let (mut mm, pages) = new_mm_with(mf.clone());
    let n = 40 * P;
    let private = mm.mmap(0, n, RW, PRIV_ANON, None).unwrap();
    let shared = mm
        .mmap(0, 4 * P, RW, c::MAP_SHARED | c::MAP_ANONYMOUS, None)
        .unwrap();
    let gone = mm.mmap(0, 4 * P, RW, PRIV_ANON, None).unwrap();
    let pattern = |gen: u8, len: u64| -> Vec<u8> {
        (0..len).map(|i| gen.wrapping_add((i / 7) as u8)).collect()
    };
    for (at, len) in [(private, n), (shared, 4 * P), (gone, 4 * P)] {
        mm.copy_out(at, &pattern(1, len)).unwrap();
    }
    // A fork child shares the private pages copy-on-write.
    let (mut child, child_pages) = fork_child(&mut mm);
    let before = |pages: &Pages, at, len| -> Vec<u8> {
        let mut v = vec![0u8; len as usize];
        for (i, b) in v.iter_mut().enumerate() {
            let a = at + i as u64;
            let mut one = [0u8];
            mf.read_at(host_off(pages, a) + (a & (P - 1)), &mut one)
                .unwrap();
            *b = one[0];
        }
        v
    };
    let frozen_private = before(&pages, private, n);
    assert!(host_prot(&child_pages, shared).write);
    let (at_freeze, child_at_freeze) = (table_now(&pages), table_now(&child_pages));

    let snap = mf.begin_freeze().unwrap();
    mm.sync_freeze().unwrap();
    child.sync_freeze().unwrap();
    for (m, pg, at) in [
        (&mm, &pages, private),
        (&mm, &pages, shared),
        (&child, &child_pages, private),
    ] {
        assert!(
            !host_prot(pg, at).write,
            "frozen mapping writable at {at:#x}"
        );
        check_mapped(m, pg);
    }
    // The program writes (faulting), the Sentry writes (copy_out), the
    // child writes its copy-on-write pages, a mapping is freed.
    app_write_span(&mut mm, &pages, private + 3 * P + 5, &pattern(9, 3 * P));
    app_write(&mut mm, &pages, shared + 10, b"shared-write").unwrap();
    app_write(&mut child, &child_pages, private + 20 * P, b"child").unwrap();
    mm.copy_out(private + 30 * P, &pattern(7, 2 * P)).unwrap();
    mm.munmap(gone, 4 * P).unwrap();
    // Mapped again at once: maybe the very pages just freed.
    let again = mm.mmap(0, 4 * P, RW, PRIV_ANON, None).unwrap();
    app_write_span(&mut mm, &pages, again, &pattern(5, 4 * P));
    // An mprotect round trip during the save keeps frozen pages read-only.
    mm.mprotect(private + 36 * P, 2 * P, R).unwrap();
    mm.mprotect(private + 36 * P, 2 * P, RW).unwrap();
    assert!(!host_prot(&pages, private + 36 * P).write);
    check_mapped(&mm, &pages);
    check_mapped(&child, &child_pages);
    // A thaw makes a block writable, not the whole mapping.
    assert!(host_prot(&pages, private + 3 * P).write);
    assert!(!host_prot(&pages, private + 39 * P).write);

    let img = read_snapshot(&mf, &snap);
    mf.end_freeze(&snap);
    assert!(snap.stats().copied_pages > 0);
    // (assert! rather than assert_eq!: the images are large.)
    assert!(
        image_bytes(&img, &at_freeze, private, n) == frozen_private,
        "private memory"
    );
    assert!(
        image_bytes(&img, &child_at_freeze, private, n) == frozen_private,
        "the child's copy-on-write pages"
    );
    assert!(
        image_bytes(&img, &at_freeze, shared, 4 * P) == pattern(1, 4 * P),
        "MAP_SHARED memory"
    );
    assert!(
        image_bytes(&img, &at_freeze, gone, 4 * P) == pattern(1, 4 * P),
        "a freed mapping"
    );

    // The live memory has every write.
    let mut live = vec![0u8; 3 * P as usize];
    mm.copy_in(private + 3 * P + 5, &mut live).unwrap();
    assert!(
        live == pattern(9, 3 * P),
        "the program's write is not in its memory"
    );
    let mut c5 = [0u8; 5];
    child.copy_in(private + 20 * P, &mut c5).unwrap();
    assert_eq!(&c5, b"child");
    mm.copy_in(private + 20 * P, &mut c5).unwrap();
    assert_eq!(c5.to_vec(), frozen_private[20 * P as usize..][..5].to_vec());

    // After the freeze, everything writable is writable again.
    mm.sync_freeze().unwrap();
    child.sync_freeze().unwrap();
    assert!(mm.frozen.is_empty() && child.frozen.is_empty());
    // (The parent's untouched private pages stay copy-on-write.)
    assert!(
        host_prot(&child_pages, shared).write,
        "still frozen after the freeze"
    );
    check_consistent_pair(&mm, &pages, &child, &child_pages);
}

/// `app_write` of `data` page by page, as the CPU faults on each.
fn app_write_span(mm: &mut MemoryManager, pages: &Pages, addr: u64, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        let a = addr + done as u64;
        let n = ((P - (a & (P - 1))) as usize).min(data.len() - done);
        app_write(mm, pages, a, &data[done..done + n]).unwrap();
        done += n;
    }
}

/// Both address spaces mirror their VMAs (and together use exactly what is allocated).
fn check_consistent_pair(a: &MemoryManager, ap: &Pages, b: &MemoryManager, bp: &Pages) {
    let x = check_mapped(a, ap);
    let y = check_mapped(b, bp);
    let mut all: std::collections::BTreeSet<u64> = x.keys().copied().collect();
    all.extend(y.keys().copied());
    assert_eq!(a.memory_file().allocated_bytes(), all.len() as u64 * P);
}

/// vm.max_map_count: mappings Linux would merge count once; past the limit
/// mmap refuses, and so does what would cut one mapping in two, while
/// unmapping a whole one makes room again.
#[test]
fn map_count_limit() {
    let (mut mm, _) = new_mm();
    let ro = R;
    // Adjacent mappings of the same kind are one mapping.
    let first = anon(&mut mm, P);
    for _ in 0..99 {
        anon(&mut mm, P);
    }
    assert_eq!(mm.map_count(), 1);
    mm.munmap(first - 99 * P, 100 * P).unwrap();
    assert_eq!(mm.map_count(), 0);
    // A three-page mapping, then one-page ones in turn read-only and
    // read-write below it (top down): none merges.
    let big = anon(&mut mm, 3 * P);
    let mut made = 1;
    let mut last = big;
    while made <= MAX_MAP_COUNT + 10 {
        let prot = if made % 2 == 1 { ro } else { RW };
        match mm.mmap(0, P, prot, PRIV_ANON, None) {
            Ok(a) => {
                assert_eq!(a, last - P, "placed just below the last");
                last = a;
                made += 1;
            }
            Err(e) => {
                assert_eq!(e, Errno::ENOMEM);
                break;
            }
        }
    }
    assert_eq!(
        made,
        MAX_MAP_COUNT + 1,
        "Linux lets the count reach one past the limit"
    );
    assert_eq!(mm.map_count(), made);
    assert_eq!(
        mm.munmap(big + P, P),
        Err(Errno::ENOMEM),
        "munmap of a middle"
    );
    assert_eq!(
        mm.mprotect(big + P, P, ro),
        Err(Errno::ENOMEM),
        "mprotect of a middle"
    );
    assert_eq!(
        mm.mprotect(big, P, ro),
        Err(Errno::ENOMEM),
        "mprotect of an end"
    );
    assert_eq!(mm.mprotect(big, 3 * P, RW), Ok(()), "no change, no split");
    mm.set_brk_start(0x1000_0000).unwrap();
    assert_eq!(mm.brk(0x1000_0000 + P), 0x1000_0000, "brk does not grow");
    mm.munmap(big + 2 * P, P).unwrap();
    mm.munmap(last, P).unwrap();
    assert_eq!(mm.map_count(), MAX_MAP_COUNT);
    mm.mmap(0, P, ro, PRIV_ANON, None).unwrap();
    assert_eq!(mm.mmap(0, P, ro, PRIV_ANON, None), Err(Errno::ENOMEM));
}
