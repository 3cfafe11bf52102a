//! The memory file: one memfd that holds every byte of application memory
//! (invariant 1 of DESIGN.md), gVisor's pgalloc.MemoryFile.
//!
//! The memfd is sized to its full capacity once, at creation: a memfd is
//! sparse, so pages cost nothing until touched, and a fixed size means no
//! mapping (the Sentry's or a stub's) can ever point past EOF and SIGBUS.
//! The Sentry maps the whole file once, shared, and reads and writes
//! application memory through that mapping. Offsets are handed out by a
//! first-fit allocator over page-aligned ranges; freeing a range punches a
//! hole so that freed memory reads back as zero and costs nothing.
//!
//! Pages are reference-counted (gVisor's pgalloc does the same): an
//! allocation holds one reference, [`MemoryFile::incref`] adds one (fork
//! sharing a page between two address spaces), and [`MemoryFile::free`]
//! drops one, really freeing a page only when its last reference goes.
//! Only the extra references are stored, in a sparse range map, so memory
//! nobody shares costs nothing more than before.
//!
//! Together with nothing else in the Sentry, this file holds `unsafe` code:
//! the Sentry's own mapping of the file.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::{fallocate, FallocateFlags};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::unistd::{ftruncate, lseek, Whence};

use super::freeze::FreezeSlot;
use crate::errno::Errno;

/// The page size the memory file allocates in. Every offset and length it
/// hands out or accepts is a multiple of it.
pub const MF_PAGE_SIZE: u64 = 4096;

/// The largest memory file cryo creates (1 TiB of offsets; only touched
/// pages use memory).
pub const MAX_CAPACITY: u64 = 1 << 40;

/// A page-aligned range of the memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileRange {
    pub start: u64,
    pub end: u64,
}

impl FileRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Why an allocation-map operation on the memory file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryFileError {
    #[error("memory file range {start:#x}+{len:#x} is not page-aligned")]
    Unaligned { start: u64, len: u64 },
    #[error("memory file range {start:#x}+{len:#x} lies outside the file's {capacity:#x} bytes")]
    OutOfBounds { start: u64, len: u64, capacity: u64 },
    #[error("memory file range {start:#x}+{len:#x} overlaps memory already allocated")]
    Overlap { start: u64, len: u64 },
    #[error("memory file range {start:#x}+{len:#x} is not allocated")]
    NotAllocated { start: u64, len: u64 },
    #[error("memory file: {0}")]
    Host(Errno),
}

impl MemoryFileError {
    /// The errno an application sees when this stops one of its syscalls.
    pub fn errno(&self) -> Errno {
        match self {
            MemoryFileError::Host(e) => *e,
            MemoryFileError::OutOfBounds { .. } => Errno::EFAULT,
            _ => Errno::EINVAL,
        }
    }
}

/// The Sentry's memory file.
pub struct MemoryFile {
    fd: OwnedFd,
    /// The Sentry's shared mapping of the whole file.
    base: NonNull<u8>,
    capacity: u64,
    /// Free ranges, start -> end, coalesced (no two touch).
    free: Mutex<BTreeMap<u64, u64>>,
    /// Extra references (beyond the allocation's one) on allocated ranges.
    refs: Mutex<RefMap>,
    /// During a restore: which owners the restored memory was given to.
    /// `None` otherwise.
    restore_claims: Mutex<Option<RestoreClaims>>,
    /// The snapshot being written out while the application runs, if any
    /// (`freeze.rs`); `frozen` says so without the lock, and `freeze_gen`
    /// counts every begin and end of a freeze, so address spaces know when
    /// to protect or unprotect their mappings.
    freeze: Mutex<FreezeSlot>,
    frozen: AtomicBool,
    freeze_gen: AtomicU64,
    /// The memory limit in bytes, 0 for none (see `set_limit`).
    limit: AtomicU64,
    /// The kernel's time data page (the vDSO's `[vvar]`), if it has one:
    /// every address space maps it, and it is never saved (a restore
    /// rebuilds it for the new host), so it is left out of
    /// [`MemoryFile::allocated_ranges`].
    vvar: std::sync::OnceLock<u64>,
    /// The statefile chunks a lazy restore has still to load (`lazy.rs`):
    /// every access below loads what it touches first.
    lazy: std::sync::OnceLock<Arc<super::lazy::LazyMemory>>,
}

/// Disjoint ranges, start -> end, coalesced (no two touch).
#[derive(Default, Debug)]
struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.0
            .range(..end)
            .next_back()
            .is_some_and(|(_, e)| *e > start)
    }

    /// The parts of `[start, end)` in the set.
    fn intersections(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let first = self
            .0
            .range(..=start)
            .next_back()
            .map_or(start, |(s, _)| *s);
        self.0
            .range(first..end)
            .filter(|(_, e)| **e > start)
            .map(|(s, e)| ((*s).max(start), (*e).min(end)))
            .collect()
    }

    /// Adds `[start, end)`, merging whatever it overlaps or touches.
    fn insert(&mut self, start: u64, end: u64) {
        let (mut lo, mut hi) = (start, end);
        let first = self
            .0
            .range(..=start)
            .next_back()
            .filter(|(_, e)| **e >= start)
            .map_or(start, |(s, _)| *s);
        let hit: Vec<(u64, u64)> = self.0.range(first..=end).map(|(s, e)| (*s, *e)).collect();
        for (s, e) in hit {
            self.0.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.0.insert(lo, hi);
    }
}

/// Extra reference counts by range: start -> (end, extra), disjoint,
/// each extra > 0; a range not in it has no extra reference.
#[derive(Default, Debug)]
struct RefMap(BTreeMap<u64, (u64, u32)>);

impl RefMap {
    /// `[start, end)` cut into pieces of one count each, gaps (count 0)
    /// included, in order.
    fn pieces(&self, start: u64, end: u64) -> Vec<(u64, u64, u32)> {
        let mut out = Vec::new();
        let first = self
            .0
            .range(..=start)
            .next_back()
            .map_or(start, |(s, _)| *s);
        let mut pos = start;
        for (s, (e, c)) in self.0.range(first..end) {
            if *e <= pos {
                continue;
            }
            let s = (*s).max(pos);
            if s > pos {
                out.push((pos, s, 0));
            }
            let e = (*e).min(end);
            out.push((s, e, *c));
            pos = e;
        }
        if pos < end {
            out.push((pos, end, 0));
        }
        out
    }

    /// Replaces the counts of `[start, end)` by `f(count)`.
    fn apply(&mut self, start: u64, end: u64, f: impl Fn(u32) -> u32) {
        let pieces = self.pieces(start, end);
        // Cut the entries straddling either end, then drop everything inside.
        for at in [start, end] {
            if let Some((s, (e, c))) = self.0.range(..at).next_back().map(|(s, v)| (*s, *v)) {
                if e > at {
                    self.0.insert(s, (at, c));
                    self.0.insert(at, (e, c));
                }
            }
        }
        let inside: Vec<u64> = self.0.range(start..end).map(|(s, _)| *s).collect();
        for s in inside {
            self.0.remove(&s);
        }
        for (s, e, c) in pieces {
            let n = f(c);
            if n > 0 {
                self.0.insert(s, (e, n));
            }
        }
        self.coalesce(start, end);
    }

    /// Merges neighbours of equal count around and inside `[start, end)`.
    fn coalesce(&mut self, start: u64, end: u64) {
        let first = self.0.range(..start).next_back().map_or(start, |(s, _)| *s);
        let keys: Vec<u64> = self.0.range(first..=end).map(|(s, _)| *s).collect();
        let mut cur: Option<u64> = None;
        for k in keys {
            let Some((ke, kc)) = self.0.get(&k).copied() else {
                continue;
            };
            if let Some(c) = cur {
                if let Some((ce, cc)) = self.0.get(&c).copied() {
                    if ce == k && cc == kc {
                        self.0.remove(&k);
                        self.0.insert(c, (ke, cc));
                        continue;
                    }
                }
            }
            cur = Some(k);
        }
    }
}

/// Who restored memory was given to, so that a statefile giving one page
/// to two owners that may not share it is refused.
#[derive(Default, Debug)]
struct RestoreClaims {
    /// Pages with one owner only: tmpfs file pages, a mapping's orphaned
    /// pages ([`MemoryFile::claim_restored`]).
    owned: RangeSet,
    /// Pages some address space's backing references (fork shares these
    /// between address spaces: [`MemoryFile::share_restored`]).
    mapped: RangeSet,
}

// SAFETY: `base` points at a shared mapping owned by this object for its
// whole life; all access to it goes through `read_at`/`write_at`/`zero`,
// which copy bytes without creating references into the mapping. The free
// list is behind a mutex.
unsafe impl Send for MemoryFile {}
// SAFETY: as for Send: concurrent copies into the mapping are byte copies of
// shared memory (like the application's own threads racing), never references.
unsafe impl Sync for MemoryFile {}

/// Reads of at least this many bytes use pread(2) (see `read_at`).
const PREAD_MIN: usize = 16 * 1024;

impl MemoryFile {
    /// A new, empty memory file able to hold `capacity` bytes (rounded down to
    /// pages, at most [`MAX_CAPACITY`]).
    pub fn new(capacity: u64) -> Result<MemoryFile, Errno> {
        let capacity = capacity.min(MAX_CAPACITY) & !(MF_PAGE_SIZE - 1);
        if capacity == 0 {
            return Err(Errno::EINVAL);
        }
        super::freeze::note_boot_affinity();
        let name: &CStr = c"cryo-memory";
        // CLOEXEC: the platform dup()s the fd into stubs it forks; stubs never exec.
        let fd = memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC)?;
        ftruncate(&fd, i64::try_from(capacity).map_err(|_| Errno::EINVAL)?)?;
        let len = usize::try_from(capacity).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no MAP_FIXED),
        // so it cannot clobber any existing memory; the fd is valid and the
        // file is exactly `len` bytes long, so every mapped page is backed.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::from_host(std::io::Error::last_os_error()));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::ENOMEM)?;
        let mut free = BTreeMap::new();
        free.insert(0, capacity);
        Ok(MemoryFile {
            fd,
            base,
            capacity,
            free: Mutex::new(free),
            refs: Mutex::new(RefMap::default()),
            restore_claims: Mutex::new(None),
            freeze: Mutex::new(FreezeSlot::default()),
            frozen: AtomicBool::new(false),
            freeze_gen: AtomicU64::new(0),
            limit: AtomicU64::new(0),
            vvar: std::sync::OnceLock::new(),
            lazy: std::sync::OnceLock::new(),
        })
    }

    /// A capacity suited to a host whose user address space has `va_bits`
    /// bits: an eighth of it, so the Sentry's own mapping of the file never
    /// crowds a small (e.g. 39-bit) address space, and at most 1 TiB.
    pub fn capacity_for_va_bits(va_bits: u32) -> u64 {
        let va = 1u64.checked_shl(va_bits).unwrap_or(u64::MAX);
        (va / 8).clamp(MF_PAGE_SIZE, MAX_CAPACITY)
    }

    /// The memfd, for the platform to map ranges of into stubs.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(super) fn freeze_slot(&self) -> MutexGuard<'_, FreezeSlot> {
        self.freeze.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a freeze is under way (see `freeze.rs`).
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// Changes at every begin and end of a freeze.
    pub fn freeze_generation(&self) -> u64 {
        self.freeze_gen.load(Ordering::Acquire)
    }

    /// `frozen` first, then the generation: whoever sees the new generation
    /// sees the new state too.
    pub(super) fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Release);
        self.freeze_gen.fetch_add(1, Ordering::AcqRel);
    }

    fn free_list(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        // A panic elsewhere while holding the lock cannot leave the map
        // half-updated (every update is a few inserts/removes), so go on.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_range(&self, start: u64, len: u64) -> Result<u64, MemoryFileError> {
        if (start | len) & (MF_PAGE_SIZE - 1) != 0 {
            return Err(MemoryFileError::Unaligned { start, len });
        }
        match start.checked_add(len) {
            Some(end) if end <= self.capacity => Ok(end),
            _ => Err(MemoryFileError::OutOfBounds {
                start,
                len,
                capacity: self.capacity,
            }),
        }
    }

    /// Allocates `len` bytes (a positive multiple of the page size),
    /// first fit from the start of the file. ENOMEM when full.
    pub fn allocate(&self, len: u64) -> Result<u64, Errno> {
        if len == 0 || len & (MF_PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let mut free = self.free_list();
        let (start, end) = free
            .iter()
            .find(|(s, e)| *e - *s >= len)
            .map(|(s, e)| (*s, *e))
            .ok_or(Errno::ENOMEM)?;
        free.remove(&start);
        if end - start > len {
            free.insert(start + len, end);
        }
        Ok(start)
    }

    /// Allocates exactly `[start, start + len)` if all of it is free; used to
    /// grow a mapping's backing in place (stack growth, mremap).
    pub fn allocate_at(&self, start: u64, len: u64) -> Result<(), MemoryFileError> {
        let end = self.check_range(start, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut free = self.free_list();
        let (fs, fe) = match free.range(..=start).next_back() {
            Some((s, e)) if *e >= end => (*s, *e),
            _ => return Err(MemoryFileError::Overlap { start, len }),
        };
        free.remove(&fs);
        if fs < start {
            free.insert(fs, start);
        }
        if end < fe {
            free.insert(end, fe);
        }
        Ok(())
    }

    /// Whether all of `[start, start + len)` is allocated.
    pub fn is_allocated(&self, start: u64, len: u64) -> bool {
        let Ok(end) = self.check_range(start, len) else {
            return false;
        };
        let free = self.free_list();
        // Free ranges are disjoint and ordered: only the last one starting
        // before `end` can reach past `start`.
        free.range(..end)
            .next_back()
            .is_none_or(|(_, fe)| *fe <= start)
    }

    /// Drops one reference on every page of `[start, start + len)`, which
    /// must be allocated; a page whose last reference this was is freed and
    /// punched out of the file, so it reads back as zero when allocated again.
    pub fn free(&self, start: u64, len: u64) -> Result<(), MemoryFileError> {
        let end = self.check_range(start, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut refs = self.refs_map();
        let mut free = self.free_list();
        if free
            .range(..end)
            .next_back()
            .is_some_and(|(_, fe)| *fe > start)
        {
            return Err(MemoryFileError::NotAllocated { start, len });
        }
        let pieces = refs.pieces(start, end);
        refs.apply(start, end, |c| c.saturating_sub(1));
        for (s, e, c) in pieces {
            if c == 0 {
                self.release(&mut free, s, e)?;
            }
        }
        Ok(())
    }

    /// Returns `[start, end)`, allocated and unreferenced, to the free list.
    fn release(
        &self,
        free: &mut BTreeMap<u64, u64>,
        start: u64,
        end: u64,
    ) -> Result<(), MemoryFileError> {
        self.decommit(start, end - start)
            .map_err(MemoryFileError::Host)?;
        let mut new_start = start;
        let mut new_end = end;
        if let Some((ps, pe)) = free.range(..start).next_back().map(|(s, e)| (*s, *e)) {
            if pe == start {
                free.remove(&ps);
                new_start = ps;
            }
        }
        if let Some(ne) = free.get(&end).copied() {
            free.remove(&end);
            new_end = ne;
        }
        free.insert(new_start, new_end);
        Ok(())
    }

    fn refs_map(&self) -> MutexGuard<'_, RefMap> {
        // As for the free list: every update leaves the map consistent.
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one reference to every page of `[start, start + len)`, which
    /// must be allocated: the range is now shared by one more owner, and
    /// each page is freed only when every owner has freed it.
    pub fn incref(&self, start: u64, len: u64) -> Result<(), MemoryFileError> {
        let end = self.check_range(start, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut refs = self.refs_map();
        if !self.is_allocated(start, len) {
            return Err(MemoryFileError::NotAllocated { start, len });
        }
        refs.apply(start, end, |c| c.saturating_add(1));
        Ok(())
    }

    /// Whether any page has more than one owner (no fork has shared one, or
    /// every sharing has been broken since): lets writers skip looking.
    pub fn any_shared(&self) -> bool {
        !self.refs_map().0.is_empty()
    }

    /// How many owners hold the page at `offset` (0 if it is free).
    pub fn refcount(&self, offset: u64) -> u32 {
        let page = offset & !(MF_PAGE_SIZE - 1);
        let refs = self.refs_map();
        if !self.is_allocated(page, MF_PAGE_SIZE) {
            return 0;
        }
        refs.pieces(page, page + MF_PAGE_SIZE)
            .first()
            .map_or(1, |p| 1 + p.2)
    }

    /// The parts of `[start, start + len)` that more than one owner holds,
    /// in order (empty when nothing is shared: the common case).
    pub fn shared_ranges(&self, start: u64, len: u64) -> Vec<FileRange> {
        let Some(end) = start.checked_add(len) else {
            return Vec::new();
        };
        let refs = self.refs_map();
        let mut out: Vec<FileRange> = Vec::new();
        for (s, e, _) in refs.pieces(start, end).into_iter().filter(|p| p.2 > 0) {
            match out.last_mut() {
                Some(last) if last.end == s => last.end = e,
                _ => out.push(FileRange { start: s, end: e }),
            }
        }
        out
    }

    /// Copies `len` bytes from `src` to `dst` within the file (breaking a
    /// copy-on-write share). Only the parts of `src` holding data are
    /// copied: `dst` must read as zero (freshly allocated).
    pub fn copy_within(&self, src: u64, dst: u64, len: u64) -> Result<(), Errno> {
        let n = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        self.check_io(src, n)?;
        self.check_io(dst, n)?;
        if src < dst.saturating_add(len) && dst < src.saturating_add(len) {
            return Err(Errno::EINVAL);
        }
        self.preserve(dst, len);
        for d in self.data_ranges(
            src & !(MF_PAGE_SIZE - 1),
            len.next_multiple_of(MF_PAGE_SIZE),
        )? {
            let from = d.start.max(src);
            let to = d.end.min(src + len);
            if from >= to {
                continue;
            }
            let (s, t, l) = (
                usize::try_from(from).map_err(|_| Errno::EFAULT)?,
                usize::try_from(dst + (from - src)).map_err(|_| Errno::EFAULT)?,
                usize::try_from(to - from).map_err(|_| Errno::EFAULT)?,
            );
            // SAFETY: `check_io` proved both `[src, src + len)` and
            // `[dst, dst + len)` lie within the mapping of `capacity` bytes
            // at `base`, and they do not overlap (checked above); the bytes
            // are copied without creating references into the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.as_ptr().add(s),
                    self.base.as_ptr().add(t),
                    l,
                );
            }
        }
        Ok(())
    }

    /// Drops the contents of `[start, start + len)`: the pages read back as
    /// zero and stop using memory (fallocate PUNCH_HOLE).
    pub fn decommit(&self, start: u64, len: u64) -> Result<(), Errno> {
        self.check_range(start, len).map_err(|e| e.errno())?;
        if len == 0 {
            return Ok(());
        }
        // A chunk loaded after the punch would bring the pages back.
        self.await_loaded(start, len);
        // Freed or zeroed pages are kept for a snapshot as well.
        self.preserve(start, len);
        fallocate(
            self.fd.as_raw_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            i64::try_from(start).map_err(|_| Errno::EINVAL)?,
            i64::try_from(len).map_err(|_| Errno::EINVAL)?,
        )?;
        Ok(())
    }

    /// The allocated ranges, in order (what a checkpoint saves), without
    /// the time data page ([`MemoryFile::set_vvar`]).
    pub fn allocated_ranges(&self) -> Vec<FileRange> {
        let free = self.free_list();
        let mut out = Vec::new();
        let mut pos = 0;
        let vvar = self.vvar.get().copied();
        let mut push = |start: u64, end: u64| match vvar {
            Some(v) if start <= v && v < end => {
                if start < v {
                    out.push(FileRange { start, end: v });
                }
                if v + MF_PAGE_SIZE < end {
                    out.push(FileRange {
                        start: v + MF_PAGE_SIZE,
                        end,
                    });
                }
            }
            _ => out.push(FileRange { start, end }),
        };
        for (s, e) in free.iter() {
            if *s > pos {
                push(pos, *s);
            }
            pos = *e;
        }
        if pos < self.capacity {
            push(pos, self.capacity);
        }
        out
    }

    /// Records `offset` (an allocated page, which stays allocated for the
    /// file's life) as the kernel's time data page: shared by every address
    /// space, written with [`MemoryFile::store_u64`], never saved. Once.
    pub fn set_vvar(&self, offset: u64) -> Result<(), Errno> {
        if !self.is_allocated(offset, MF_PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        self.vvar.set(offset).map_err(|_| Errno::EEXIST)
    }

    /// The time data page's offset, if the kernel has one.
    pub fn vvar(&self) -> Option<u64> {
        self.vvar.get().copied()
    }

    /// Stores `value` at `offset` (8-aligned) with one atomic, sequentially
    /// consistent store: how the Sentry writes the seqcount-protected words
    /// of the time data page that applications read concurrently.
    pub fn store_u64(&self, offset: u64, value: u64) -> Result<(), Errno> {
        if !offset.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        let off = self.check_io(offset, 8)?;
        // SAFETY: `check_io` proved the 8 bytes lie within the mapping at
        // `base` (page-aligned, so the 8-aligned `off` makes the pointer
        // aligned for an AtomicU64), which lives as long as `self`. The
        // memory is shared with applications, which only read it with
        // their own instructions, never through Rust references; the
        // AtomicU64 reference does not outlive this call.
        let word = unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast::<u64>()) };
        word.store(value, Ordering::SeqCst);
        Ok(())
    }

    /// Bytes of host memory the file holds now (pages written at least
    /// once and not decommitted), from its block count.
    pub fn resident_bytes(&self) -> u64 {
        nix::sys::stat::fstat(self.fd.as_raw_fd())
            .map(|st| u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512))
            .unwrap_or(0)
    }

    /// Sets the sandbox's memory limit (linux.resources.memory.limit,
    /// `cryo do --memory`): what a memory cgroup would charge, the
    /// committed pages ([`MemoryFile::resident_bytes`]), may not pass it.
    /// None: no limit.
    pub fn set_limit(&self, limit: Option<u64>) {
        // 0 stands for no limit; a limit of 0 bytes is one of a byte.
        self.limit
            .store(limit.map_or(0, |l| l.max(1)), Ordering::Release);
    }

    pub fn limit(&self) -> Option<u64> {
        match self.limit.load(Ordering::Acquire) {
            0 => None,
            l => Some(l),
        }
    }

    /// Committed bytes: what the limit is checked against (anonymous
    /// memory the application touched, tmpfs, shm and memfd data).
    pub fn committed_bytes(&self) -> u64 {
        self.resident_bytes()
    }

    /// [`MemoryFile::allocate`] of pages the Sentry commits at once (a
    /// tmpfs file's data): ENOMEM when they would take the committed
    /// bytes past the limit, as a memory cgroup's charge fails.
    pub fn allocate_charged(&self, len: u64) -> Result<u64, Errno> {
        if let Some(limit) = self.limit() {
            if self.committed_bytes().saturating_add(len) > limit {
                return Err(Errno::ENOMEM);
            }
        }
        self.allocate(len)
    }

    /// Bytes allocated.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated_ranges().iter().map(FileRange::len).sum()
    }

    /// Records that `[start, start + len)` of the restored memory belongs to
    /// one owner alone (a tmpfs file's pages, a mapping's orphaned pages):
    /// a statefile that gives such a page to a second owner (another file,
    /// any address space's backing) is refused (`Overlap`) instead of
    /// leaving two objects writing, and later freeing, the same page. The
    /// range must be allocated. Outside a restore (before
    /// [`MemoryFile::restore_allocations`] or after
    /// [`MemoryFile::finish_restore`]) nothing is tracked.
    pub fn claim_restored(&self, start: u64, len: u64) -> Result<(), MemoryFileError> {
        let end = self.check_range(start, len)?;
        if len == 0 {
            return Ok(());
        }
        if !self.is_allocated(start, len) {
            return Err(MemoryFileError::NotAllocated { start, len });
        }
        let mut guard = self
            .restore_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(claims) = guard.as_mut() else {
            return Ok(());
        };
        if claims.owned.overlaps(start, end) || claims.mapped.overlaps(start, end) {
            return Err(MemoryFileError::Overlap { start, len });
        }
        claims.owned.insert(start, end);
        Ok(())
    }

    /// Records that an address space's backing references `[start, start +
    /// len)` of the restored memory. Address spaces may share pages (after
    /// fork): the first reference is the allocation's own, every further
    /// one adds a reference ([`MemoryFile::incref`]), so each page ends
    /// with one reference per address space that maps it. A page owned
    /// alone ([`MemoryFile::claim_restored`]) is refused (`Overlap`). The
    /// range must be allocated; outside a restore this is `incref`.
    pub fn share_restored(&self, start: u64, len: u64) -> Result<(), MemoryFileError> {
        let end = self.check_range(start, len)?;
        if len == 0 {
            return Ok(());
        }
        if !self.is_allocated(start, len) {
            return Err(MemoryFileError::NotAllocated { start, len });
        }
        let again = {
            let mut guard = self
                .restore_claims
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(claims) = guard.as_mut() else {
                drop(guard);
                return self.incref(start, len);
            };
            if claims.owned.overlaps(start, end) {
                return Err(MemoryFileError::Overlap { start, len });
            }
            let again = claims.mapped.intersections(start, end);
            claims.mapped.insert(start, end);
            again
        };
        for (s, e) in again {
            self.incref(s, e - s)?;
        }
        Ok(())
    }

    /// Ends the restore's ownership bookkeeping ([`MemoryFile::claim_restored`]).
    pub fn finish_restore(&self) {
        *self
            .restore_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Marks `ranges` allocated in a fresh memory file, for restore. Every
    /// range is validated (aligned, within the file, not overlapping another);
    /// on error nothing is allocated. Starts the restore's ownership
    /// bookkeeping ([`MemoryFile::claim_restored`]).
    pub fn restore_allocations(&self, ranges: &[FileRange]) -> Result<(), MemoryFileError> {
        *self
            .restore_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(RestoreClaims::default());
        let mut done: Vec<FileRange> = Vec::new();
        for r in ranges {
            let len = r
                .end
                .checked_sub(r.start)
                .ok_or(MemoryFileError::OutOfBounds {
                    start: r.start,
                    len: 0,
                    capacity: self.capacity,
                })?;
            if let Err(e) = self.allocate_at(r.start, len) {
                for d in &done {
                    // These were allocated just above, so freeing them succeeds.
                    let _ = self.free(d.start, d.len());
                }
                return Err(e);
            }
            done.push(*r);
        }
        Ok(())
    }

    /// The parts of `[start, start + len)` that hold data (not holes), found
    /// with SEEK_DATA/SEEK_HOLE: a checkpoint saves only these. Pages that
    /// were touched but hold zeros are still reported; the saver may skip them.
    pub fn data_ranges(&self, start: u64, len: u64) -> Result<Vec<FileRange>, Errno> {
        let end = self.check_range(start, len).map_err(|e| e.errno())?;
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let data = match lseek(self.fd.as_raw_fd(), pos as i64, Whence::SeekData) {
                Ok(d) => d as u64,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(e.into()),
            };
            if data >= end {
                break;
            }
            let hole = match lseek(self.fd.as_raw_fd(), data as i64, Whence::SeekHole) {
                Ok(h) => (h as u64).min(end),
                Err(nix::errno::Errno::ENXIO) => end,
                Err(e) => return Err(e.into()),
            };
            if hole <= data {
                break;
            }
            out.push(FileRange {
                start: data,
                end: hole,
            });
            pos = hole;
        }
        Ok(out)
    }

    /// The number of bytes of `[start, start + len)` that hold data.
    pub fn data_bytes(&self, start: u64, len: u64) -> u64 {
        self.data_ranges(start, len)
            .map(|rs| rs.iter().map(FileRange::len).sum())
            .unwrap_or(0)
    }

    fn check_io(&self, offset: u64, len: usize) -> Result<usize, Errno> {
        let len64 = u64::try_from(len).map_err(|_| Errno::EFAULT)?;
        match offset.checked_add(len64) {
            Some(end) if end <= self.capacity => {
                self.await_loaded(offset, len64);
                usize::try_from(offset).map_err(|_| Errno::EFAULT)
            }
            _ => Err(Errno::EFAULT),
        }
    }

    /// Makes this file load the rest of a lazy restore's memory from
    /// `lazy` on demand; once only.
    pub fn set_lazy(&self, lazy: Arc<super::lazy::LazyMemory>) -> Result<(), Errno> {
        self.lazy.set(lazy).map_err(|_| Errno::EBUSY)
    }

    /// The progress of the lazy restore this file was made by, if it was.
    pub fn lazy_progress(&self) -> Option<super::lazy::LazyProgress> {
        self.lazy.get().map(|l| l.progress())
    }

    /// The lazy restore this file was made by, if it was, loaded or not.
    pub fn lazy_restore(&self) -> Option<&Arc<super::lazy::LazyMemory>> {
        self.lazy.get()
    }

    /// The lazy restore still loading into this file, if any.
    pub fn lazy(&self) -> Option<&Arc<super::lazy::LazyMemory>> {
        self.lazy.get().filter(|l| !l.all_loaded())
    }

    /// Loads whatever chunks of a lazy restore `[offset, offset + len)`
    /// touches; a damaged one stops the sandbox (no access may see the
    /// hole it would leave).
    pub fn await_loaded(&self, offset: u64, len: u64) {
        self.await_loaded_as(offset, len, super::lazy::Demand::Fault);
    }

    pub(super) fn await_loaded_as(&self, offset: u64, len: u64, demand: super::lazy::Demand) {
        if let Some(l) = self.lazy() {
            if let Err(e) = l.ensure_range(self, offset, len, demand) {
                l.die(&e);
            }
        }
    }

    /// Loads every chunk a lazy restore has not loaded yet (a checkpoint
    /// saves the whole memory file).
    pub fn await_all_loaded(&self) {
        if let Some(l) = self.lazy() {
            l.release_hold();
            if let Err(e) = l.load_rest(self) {
                l.die(&e);
            }
        }
    }

    /// A lazy restore's loader writing restored pages in, past the checks
    /// that would wait for the very chunk being loaded.
    pub(super) fn fill_restored(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let len = u64::try_from(data.len()).map_err(|_| Errno::EFAULT)?;
        if offset.checked_add(len).is_none_or(|e| e > self.capacity) {
            return Err(Errno::EFAULT);
        }
        let mut done = 0usize;
        while done < data.len() {
            let n = nix::sys::uio::pwrite(self.fd(), &data[done..], (offset + done as u64) as i64)?;
            if n == 0 {
                return Err(Errno::EIO);
            }
            done += n;
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` out of the file.
    ///
    /// Large reads go through pread(2): a page the application never
    /// touched is a hole in the memfd, which pread reads as zeros while a
    /// load through the Sentry's mapping would allocate it (a write(2) of
    /// an untouched 1 GiB buffer would cost 1 GiB of memory, natively
    /// nothing). Small reads (syscall arguments) copy from the mapping.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let off = self.check_io(offset, buf.len())?;
        if buf.len() >= PREAD_MIN {
            let mut done = 0;
            while done < buf.len() {
                let at = libc::off_t::try_from(off + done).map_err(|_| Errno::EFAULT)?;
                let rest = &mut buf[done..];
                // SAFETY: pread(2) writes at most `rest.len()` bytes into
                // `rest`, a live, exclusively borrowed buffer.
                let n = unsafe {
                    libc::pread(
                        self.fd.as_raw_fd(),
                        rest.as_mut_ptr().cast(),
                        rest.len(),
                        at,
                    )
                };
                match n {
                    n if n > 0 => done += n as usize,
                    0 => return Err(Errno::EFAULT),
                    _ => match nix::errno::Errno::last() {
                        nix::errno::Errno::EINTR => {}
                        e => return Err(Errno(e as i32)),
                    },
                }
            }
            return Ok(());
        }
        // SAFETY: `check_io` proved `[off, off + len)` lies within the mapping
        // of `capacity` bytes at `base`, which lives as long as `self`. The
        // source is shared memory an application may be writing concurrently;
        // a byte copy of it yields some mix of old and new bytes, as on Linux,
        // and no reference into the mapping outlives the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }

    /// Copies `data` into the file at `offset`.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let off = self.check_io(offset, data.len())?;
        self.preserve(offset, data.len() as u64);
        // SAFETY: as in `read_at`: the destination is within the mapping, and
        // `data` cannot alias it (it is a Rust slice, never a reference into
        // the mapping, since none is ever handed out).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(off), data.len());
        }
        Ok(())
    }

    /// Copies `data` into the file at `offset` with pwrite(2), for bulk
    /// fills of fresh backing (a file mapping's bytes): the host allocates
    /// the pages in the write itself, where a copy through the Sentry's
    /// mapping takes one page fault per page and leaves Sentry page-table
    /// entries that freeing the pages must zap again.
    pub fn write_bulk(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let off = self.check_io(offset, data.len())?;
        self.preserve(offset, data.len() as u64);
        let mut done = 0;
        while done < data.len() {
            let at = libc::off_t::try_from(off + done).map_err(|_| Errno::EFAULT)?;
            match nix::sys::uio::pwrite(self.fd(), &data[done..], at) {
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => done += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Errno(e as i32)),
            }
        }
        Ok(())
    }

    /// Reads up to `len` bytes of the host file `fd` at `at` straight into
    /// the file at `offset`: a read(2) of a host file then touches each byte
    /// once, as Linux's copy into the page cache's pages does, rather than
    /// through a Sentry buffer. The count read (short at the host file's end).
    pub fn fill_from_fd(
        &self,
        offset: u64,
        len: usize,
        fd: BorrowedFd<'_>,
        at: u64,
    ) -> Result<usize, Errno> {
        let off = self.check_io(offset, len)?;
        let at = libc::off_t::try_from(at).map_err(|_| Errno::EINVAL)?;
        self.preserve(offset, len as u64);
        loop {
            // SAFETY: `check_io` proved `[off, off + len)` lies within the
            // mapping at `base`, which lives as long as `self`; the host
            // kernel writes at most `len` bytes there. The bytes are the
            // application's memory, which it may read meanwhile, as a native
            // read(2) into its buffer allows; no Rust reference to them exists.
            let n =
                unsafe { libc::pread(fd.as_raw_fd(), self.base.as_ptr().add(off).cast(), len, at) };
            if n >= 0 {
                return Ok(n as usize);
            }
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => {}
                e => return Err(Errno(e as i32)),
            }
        }
    }

    /// Atomically replaces the u32 at `offset` (4-aligned) with `new` if it
    /// holds `current`; the value found either way. Futex operations use
    /// this on words the application changes concurrently with its own
    /// atomic instructions (Linux's futex_atomic_cmpxchg_inatomic).
    pub fn compare_exchange_u32(&self, offset: u64, current: u32, new: u32) -> Result<u32, Errno> {
        if !offset.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        let off = self.check_io(offset, 4)?;
        self.preserve(offset, 4);
        // SAFETY: `check_io` proved the 4 bytes lie within the mapping at
        // `base` (page-aligned, so the 4-aligned `off` makes the pointer
        // aligned for an AtomicU32), which lives as long as `self`. The
        // memory is shared with the application, which accesses it only
        // with its own (atomic or plain) instructions, never through Rust
        // references; the AtomicU32 reference does not outlive this call.
        let word = unsafe {
            std::sync::atomic::AtomicU32::from_ptr(self.base.as_ptr().add(off).cast::<u32>())
        };
        let found = word.compare_exchange(
            current,
            new,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
        Ok(found.unwrap_or_else(|v| v))
    }

    /// Copies `data` into the file at `offset` with pwrite(2) rather than
    /// through the Sentry's mapping: filling fresh pages this way skips one
    /// page fault per page (restore loads whole images like this).
    pub fn pwrite_at(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.check_io(offset, data.len())?;
        self.preserve(offset, data.len() as u64);
        let mut done = 0usize;
        while done < data.len() {
            let n = nix::sys::uio::pwrite(self.fd(), &data[done..], (offset + done as u64) as i64)?;
            if n == 0 {
                return Err(Errno::EIO);
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `len` zero bytes at `offset`. Whole pages are punched instead,
    /// so zeroing large ranges costs no memory.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), Errno> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.capacity)
            .ok_or(Errno::EFAULT)?;
        let first_full = offset.next_multiple_of(MF_PAGE_SIZE).min(end);
        let last_full = (end & !(MF_PAGE_SIZE - 1)).max(first_full);
        self.fill_zero(offset, first_full - offset)?;
        if last_full > first_full {
            self.decommit(first_full, last_full - first_full)?;
        }
        self.fill_zero(last_full, end - last_full)
    }

    fn fill_zero(&self, offset: u64, len: u64) -> Result<(), Errno> {
        let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        let off = self.check_io(offset, len)?;
        self.preserve(offset, len as u64);
        // SAFETY: `check_io` proved the range lies within the mapping.
        unsafe {
            std::ptr::write_bytes(self.base.as_ptr().add(off), 0, len);
        }
        Ok(())
    }
}

impl Drop for MemoryFile {
    fn drop(&mut self) {
        // SAFETY: `base`/`capacity` describe the mapping made in `new`, which
        // nothing else unmaps; no reference into it exists (none is handed out).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.capacity as usize);
        }
    }
}

impl std::fmt::Debug for MemoryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryFile")
            .field("capacity", &self.capacity)
            .field("allocated", &self.allocated_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = MF_PAGE_SIZE;

    #[test]
    fn charged_allocations_stop_at_the_limit_of_committed_pages() {
        let mf = MemoryFile::new(64 * P).unwrap();
        assert_eq!(mf.limit(), None);
        mf.set_limit(Some(4 * P));
        // Allocated but untouched pages are not committed.
        let big = mf.allocate(16 * P).unwrap();
        let a = mf.allocate_charged(4 * P).unwrap();
        mf.write_at(a, &[1u8; 4 * P as usize]).unwrap();
        assert_eq!(mf.committed_bytes(), 4 * P);
        assert_eq!(mf.allocate_charged(P), Err(Errno::ENOMEM));
        mf.free(a, 4 * P).unwrap();
        assert_eq!(mf.committed_bytes(), 0);
        assert!(mf.allocate_charged(P).is_ok());
        mf.set_limit(None);
        assert!(mf.allocate_charged(8 * P).is_ok());
        mf.free(big, 16 * P).unwrap();
    }

    #[test]
    fn allocate_free_coalesce() {
        let mf = MemoryFile::new(64 * P).unwrap();
        let a = mf.allocate(2 * P).unwrap();
        let b = mf.allocate(3 * P).unwrap();
        assert_eq!((a, b), (0, 2 * P));
        assert_eq!(
            mf.allocated_ranges(),
            vec![FileRange {
                start: 0,
                end: 5 * P
            }]
        );
        mf.free(a, P).unwrap();
        assert!(!mf.is_allocated(0, P));
        assert!(mf.is_allocated(P, 4 * P));
        // Double free is refused.
        assert!(matches!(
            mf.free(0, P),
            Err(MemoryFileError::NotAllocated { .. })
        ));
        mf.free(P, 4 * P).unwrap();
        assert!(mf.allocated_ranges().is_empty());
        // Fully coalesced again: one allocation of everything succeeds.
        assert_eq!(mf.allocate(64 * P).unwrap(), 0);
        assert_eq!(mf.allocate(P), Err(Errno::ENOMEM));
        assert_eq!(mf.allocate(0), Err(Errno::EINVAL));
        assert_eq!(mf.allocate(100), Err(Errno::EINVAL));
    }

    #[test]
    fn allocate_at_and_restore() {
        let mf = MemoryFile::new(16 * P).unwrap();
        mf.allocate_at(4 * P, 2 * P).unwrap();
        assert!(mf.allocate_at(5 * P, 2 * P).is_err());
        assert!(mf.allocate_at(15 * P, 2 * P).is_err());
        assert_eq!(mf.allocate(4 * P).unwrap(), 0);
        let mf2 = MemoryFile::new(16 * P).unwrap();
        let ranges = [
            FileRange { start: 0, end: P },
            FileRange {
                start: 3 * P,
                end: 5 * P,
            },
        ];
        mf2.restore_allocations(&ranges).unwrap();
        assert_eq!(mf2.allocated_ranges(), ranges.to_vec());
        let mf3 = MemoryFile::new(16 * P).unwrap();
        let bad = [
            FileRange {
                start: 0,
                end: 2 * P,
            },
            FileRange {
                start: P,
                end: 3 * P,
            },
        ];
        assert!(mf3.restore_allocations(&bad).is_err());
        assert!(mf3.allocated_ranges().is_empty());
        let reversed = [FileRange {
            start: 2 * P,
            end: P,
        }];
        assert!(mf3.restore_allocations(&reversed).is_err());
        let huge = [FileRange {
            start: u64::MAX - P + 1,
            end: u64::MAX,
        }];
        assert!(mf3.restore_allocations(&huge).is_err());
    }

    #[test]
    fn read_write_zero_and_data_ranges() {
        let mf = MemoryFile::new(16 * P).unwrap();
        let off = mf.allocate(4 * P).unwrap();
        mf.write_at(off + 10, b"hello").unwrap();
        mf.write_at(off + 2 * P, b"x").unwrap();
        let mut buf = [0u8; 5];
        mf.read_at(off + 10, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(
            mf.data_ranges(off, 4 * P).unwrap(),
            vec![
                FileRange { start: 0, end: P },
                FileRange {
                    start: 2 * P,
                    end: 3 * P
                }
            ]
        );
        mf.zero(off + 11, 2).unwrap();
        mf.read_at(off + 10, &mut buf).unwrap();
        assert_eq!(&buf, b"h\0\0lo");
        mf.zero(off, 4 * P).unwrap();
        assert!(mf.data_ranges(off, 4 * P).unwrap().is_empty());
        mf.write_at(off + P, b"y").unwrap();
        mf.free(off, 4 * P).unwrap();
        let again = mf.allocate(4 * P).unwrap();
        let mut one = [1u8; 1];
        mf.read_at(again + P, &mut one).unwrap();
        assert_eq!(one, [0]);
        assert_eq!(mf.read_at(16 * P - 1, &mut buf), Err(Errno::EFAULT));
        assert_eq!(mf.write_at(u64::MAX, b"a"), Err(Errno::EFAULT));
    }

    #[test]
    fn restore_claims_refuse_a_page_given_twice() {
        let mf = MemoryFile::new(16 * P).unwrap();
        // Outside a restore nothing is tracked.
        mf.allocate_at(0, 2 * P).unwrap();
        mf.claim_restored(0, P).unwrap();
        mf.claim_restored(0, P).unwrap();
        let mf = MemoryFile::new(16 * P).unwrap();
        mf.restore_allocations(&[FileRange {
            start: 0,
            end: 8 * P,
        }])
        .unwrap();
        mf.claim_restored(P, P).unwrap();
        mf.claim_restored(3 * P, P).unwrap();
        mf.claim_restored(2 * P, P).unwrap(); // Joins both neighbours.
        mf.claim_restored(0, P).unwrap();
        for (s, l) in [(0, P), (2 * P, 2 * P), (3 * P, 2 * P), (0, 8 * P)] {
            assert!(
                matches!(
                    mf.claim_restored(s, l),
                    Err(MemoryFileError::Overlap { .. })
                ),
                "{s:#x}+{l:#x}"
            );
        }
        mf.claim_restored(4 * P, 4 * P).unwrap();
        assert!(matches!(
            mf.claim_restored(8 * P, P),
            Err(MemoryFileError::NotAllocated { .. })
        ));
        assert!(matches!(
            mf.claim_restored(P + 1, P),
            Err(MemoryFileError::Unaligned { .. })
        ));
        mf.finish_restore();
        mf.claim_restored(0, P).unwrap();
    }

    #[test]
    fn refcounts_free_at_the_last_reference() {
        let mf = MemoryFile::new(64 * P).unwrap();
        let a = mf.allocate(4 * P).unwrap();
        mf.write_at(a, b"keep").unwrap();
        assert_eq!(mf.refcount(a), 1);
        assert!(mf.shared_ranges(a, 4 * P).is_empty());
        mf.incref(a + P, 2 * P).unwrap();
        mf.incref(a + 2 * P, 2 * P).unwrap();
        let counts: Vec<u32> = (0..4).map(|i| mf.refcount(a + i * P)).collect();
        assert_eq!(counts, vec![1, 2, 3, 2]);
        assert_eq!(
            mf.shared_ranges(a, 4 * P),
            vec![FileRange {
                start: a + P,
                end: a + 4 * P
            }]
        );
        // One reference dropped everywhere: only page 0 is really freed.
        mf.free(a, 4 * P).unwrap();
        assert_eq!(mf.allocated_bytes(), 3 * P);
        assert_eq!(mf.refcount(a), 0);
        let counts: Vec<u32> = (1..4).map(|i| mf.refcount(a + i * P)).collect();
        assert_eq!(counts, vec![1, 2, 1]);
        mf.write_at(a + 2 * P, b"shared").unwrap();
        mf.free(a + 2 * P, P).unwrap();
        let mut buf = [0u8; 6];
        mf.read_at(a + 2 * P, &mut buf).unwrap();
        assert_eq!(&buf, b"shared", "freed only at the last reference");
        mf.free(a + P, 3 * P).unwrap();
        assert_eq!(mf.allocated_bytes(), 0);
        assert!(mf.refs_map().0.is_empty(), "no reference left behind");
        assert!(matches!(
            mf.incref(a, P),
            Err(MemoryFileError::NotAllocated { .. })
        ));
        // copy_within copies data, leaves holes as holes.
        let b = mf.allocate(2 * P).unwrap();
        let c = mf.allocate(2 * P).unwrap();
        mf.write_at(b + P + 5, b"xy").unwrap();
        mf.copy_within(b, c, 2 * P).unwrap();
        mf.read_at(c + P + 5, &mut buf[..2]).unwrap();
        assert_eq!(&buf[..2], b"xy");
        assert_eq!(mf.data_bytes(c, 2 * P), P);
        assert_eq!(mf.copy_within(b, b + P, 2 * P), Err(Errno::EINVAL));
    }

    #[test]
    fn restore_shares_count_every_address_space() {
        let mf = MemoryFile::new(16 * P).unwrap();
        mf.restore_allocations(&[FileRange {
            start: 0,
            end: 8 * P,
        }])
        .unwrap();
        mf.claim_restored(0, P).unwrap(); // A file's page.
        mf.share_restored(P, 3 * P).unwrap();
        mf.share_restored(2 * P, 4 * P).unwrap();
        mf.share_restored(3 * P, P).unwrap();
        let counts: Vec<u32> = (0..7).map(|i| mf.refcount(i * P)).collect();
        assert_eq!(counts, vec![1, 1, 2, 3, 1, 1, 1]);
        for (s, l) in [(0, P), (0, 2 * P)] {
            assert!(matches!(
                mf.share_restored(s, l),
                Err(MemoryFileError::Overlap { .. })
            ));
        }
        assert!(matches!(
            mf.claim_restored(5 * P, 2 * P),
            Err(MemoryFileError::Overlap { .. })
        ));
        mf.finish_restore();
        // Outside a restore, sharing is a plain reference.
        mf.share_restored(6 * P, P).unwrap();
        assert_eq!(mf.refcount(6 * P), 2);
    }

    #[test]
    fn capacity_for_small_hosts() {
        assert_eq!(MemoryFile::capacity_for_va_bits(39), 1 << 36);
        assert_eq!(MemoryFile::capacity_for_va_bits(47), MAX_CAPACITY);
        assert_eq!(MemoryFile::capacity_for_va_bits(64), MAX_CAPACITY);
    }
}
