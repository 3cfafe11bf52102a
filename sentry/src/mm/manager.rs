//! The memory manager: one application address space (gVisor's mm.MemoryManager).
//!
//! It owns the VMA set, the platform address space that mirrors it, and the
//! brk state, and shares the memory file with every other address space.
//! The syscall-facing operations live in `ops.rs`, faults in `fault.rs`,
//! copy-in/out in `io.rs`, checkpoint in `state.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use platform::{AddressSpace, Layout, PlatformError, Prot};

use super::file::MappableFile;
use super::memory_file::{MemoryFile, MF_PAGE_SIZE};
use super::vma::{FileBacking, Vma, VmaKind};
use crate::errno::Errno;

/// The lowest address an application may map (Linux's default
/// vm.mmap_min_addr): keeps NULL-pointer dereferences faulting.
pub const MMAP_MIN_ADDR: u64 = 0x10000;

/// The default stack size limit (RLIMIT_STACK), how far the stack may grow.
pub const DEFAULT_STACK_LIMIT: u64 = 8 << 20;

/// Linux's stack_guard_gap (256 pages): no mapping is placed, nor a stack
/// grown, closer than this below/above a growsdown VMA.
pub const STACK_GUARD_GAP: u64 = 256 * 4096;

/// One application address space.
pub struct MemoryManager {
    pub(super) layout: Layout,
    pub(super) mf: Arc<MemoryFile>,
    pub(super) aspace: Arc<dyn AddressSpace>,
    /// VMAs by start address; they never overlap.
    pub(super) vmas: BTreeMap<u64, Vma>,
    /// Where the heap starts (set by the loader) and the current break.
    pub(super) brk_start: u64,
    pub(super) brk: u64,
    pub(super) stack_limit: u64,
    /// The lowest and one past the highest address the application may map.
    pub(super) min_addr: u64,
    pub(super) top: u64,
}

/// The address range applications may use under `layout`: from
/// [`MMAP_MIN_ADDR`] to the lower of the top of user space and the
/// platform's stub region when that lies above the stack.
pub fn usable_range(layout: &Layout) -> (u64, u64) {
    let mut top = layout.max_user_addr;
    if layout.stub_addr >= layout.stack_top && layout.stub_addr < top {
        top = layout.stub_addr;
    }
    let page = layout.page_size.max(MF_PAGE_SIZE);
    (MMAP_MIN_ADDR.next_multiple_of(page), top & !(page - 1))
}

pub(super) fn platform_errno(op: &str, e: PlatformError) -> Errno {
    tracing::warn!("address space {op} failed: {e}");
    Errno::ENOMEM
}

impl MemoryManager {
    /// An empty address space laid out by `layout`, backed by `mf`.
    ///
    /// The layout's page size must be a power of two and a multiple of the
    /// memory file's page size.
    pub fn new(
        layout: Layout,
        mf: Arc<MemoryFile>,
        aspace: Arc<dyn AddressSpace>,
    ) -> Result<MemoryManager, Errno> {
        if !layout.page_size.is_power_of_two() || layout.page_size < MF_PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        let (min_addr, top) = usable_range(&layout);
        if top <= min_addr {
            return Err(Errno::ENOMEM);
        }
        Ok(MemoryManager {
            layout,
            mf,
            aspace,
            vmas: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
            stack_limit: DEFAULT_STACK_LIMIT,
            min_addr,
            top,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn memory_file(&self) -> &Arc<MemoryFile> {
        &self.mf
    }

    /// The platform address space (for a context to run in).
    pub fn address_space(&self) -> &dyn AddressSpace {
        self.aspace.as_ref()
    }

    /// The platform address space, shared with the tasks that run in it.
    pub fn address_space_arc(&self) -> Arc<dyn AddressSpace> {
        self.aspace.clone()
    }

    pub fn page_size(&self) -> u64 {
        self.layout.page_size
    }

    /// The current RLIMIT_STACK used for stack growth.
    pub fn stack_limit(&self) -> u64 {
        self.stack_limit
    }

    pub fn set_stack_limit(&mut self, limit: u64) {
        self.stack_limit = limit;
    }

    /// The VMAs, in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The VMA containing `addr`.
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.contains(addr))
    }

    /// Total mapped bytes (VmSize).
    pub fn vsize(&self) -> u64 {
        self.vmas.values().map(Vma::len).sum()
    }

    /// Bytes of mapped memory that hold data in the memory file (≈ VmRSS).
    pub fn rss(&self) -> u64 {
        self.vmas
            .values()
            .map(|v| self.mf.data_bytes(v.mf_offset, v.len()))
            .sum()
    }

    /// One past the highest mapped address (0 if nothing is mapped): what a
    /// statefile records so a restore onto a smaller address space is refused.
    pub fn highest_address(&self) -> u64 {
        self.vmas.values().next_back().map_or(0, |v| v.end)
    }

    /// The contents of /proc/self/maps.
    pub fn maps_text(&self) -> String {
        let mut out = String::new();
        for v in self.vmas.values() {
            out.push_str(&v.maps_line());
            out.push('\n');
        }
        out
    }

    // ---- helpers shared by the operations ----

    pub(super) fn page_align_up(&self, x: u64) -> Option<u64> {
        let p = self.layout.page_size;
        x.checked_add(p - 1).map(|v| v & !(p - 1))
    }

    pub(super) fn page_align_down(&self, x: u64) -> u64 {
        x & !(self.layout.page_size - 1)
    }

    pub(super) fn is_aligned(&self, x: u64) -> bool {
        x & (self.layout.page_size - 1) == 0
    }

    /// Whether no VMA overlaps `[addr, addr + len)`.
    pub(super) fn is_free(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        if let Some((_, v)) = self.vmas.range(..addr).next_back() {
            if v.end > addr {
                return false;
            }
        }
        self.vmas.range(addr..end).next().is_none()
    }

    /// Whether `[addr, addr + len)` is entirely covered by VMAs.
    pub(super) fn is_fully_mapped(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        let mut pos = addr;
        while pos < end {
            match self.vma_at(pos) {
                Some(v) => pos = v.end,
                None => return false,
            }
        }
        true
    }

    /// Splits the VMA containing `addr` (if `addr` is strictly inside one)
    /// so that a VMA starts at `addr`.
    pub(super) fn split_at(&mut self, addr: u64) {
        let Some(start) = self.vma_at(addr).map(|v| v.start) else {
            return;
        };
        if start == addr {
            return;
        }
        if let Some(v) = self.vmas.remove(&start) {
            let (low, high) = v.split(addr);
            self.vmas.insert(low.start, low);
            self.vmas.insert(high.start, high);
        }
    }

    /// The start of the VMAs overlapping `[addr, end)` after splitting at both ends.
    pub(super) fn isolate(&mut self, addr: u64, end: u64) -> Vec<u64> {
        self.split_at(addr);
        self.split_at(end);
        self.vmas.range(addr..end).map(|(s, _)| *s).collect()
    }

    /// The lowest address a new mapping below `v` may end at.
    fn gap_end_below(v: &Vma) -> u64 {
        if v.growsdown {
            v.start.saturating_sub(STACK_GUARD_GAP)
        } else {
            v.start
        }
    }

    /// The highest free, page-aligned `len` bytes within `[lo, hi)`.
    pub(super) fn find_top_down(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut end = hi;
        for v in self.vmas.range(..hi).rev().map(|(_, v)| v) {
            if v.end <= end {
                let gap_start = v.end.max(lo);
                if end >= gap_start && end - gap_start >= len {
                    return Some(self.page_align_down(end - len)).filter(|a| *a >= gap_start);
                }
            }
            end = end.min(Self::gap_end_below(v));
            if end < lo {
                return None;
            }
        }
        if end >= lo && end - lo >= len {
            return Some(self.page_align_down(end - len)).filter(|a| *a >= lo);
        }
        None
    }

    /// Where a non-fixed mapping of `len` bytes goes: at `hint` if that is
    /// free, else top-down below the mmap base, else anywhere top-down.
    pub(super) fn find_unmapped(&self, hint: u64, len: u64, below_2g: bool) -> Result<u64, Errno> {
        let (lo, hi) = if below_2g {
            (self.min_addr.max(0x4000_0000), 0x8000_0000)
        } else {
            (self.min_addr, self.top)
        };
        if hint != 0 {
            if let Some(h) = self.page_align_up(hint) {
                if h >= lo && h.checked_add(len).is_some_and(|e| e <= hi) && self.is_free(h, len) {
                    return Ok(h);
                }
            }
        }
        let base = self.layout.mmap_base.clamp(lo, hi);
        self.find_top_down(len, lo, base)
            .or_else(|| self.find_top_down(len, lo, hi))
            .ok_or(Errno::ENOMEM)
    }

    /// Copies the bytes of `file` from `file_off` for `len` bytes (stopping
    /// at EOF) into the memory file at `mf_off`.
    pub(super) fn fill_from_file(
        &self,
        file: &dyn MappableFile,
        file_off: u64,
        mf_off: u64,
        len: u64,
    ) -> Result<(), Errno> {
        const CHUNK: usize = 64 * 1024;
        let size = file.size()?;
        let avail = size.saturating_sub(file_off).min(len);
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(avail).unwrap_or(CHUNK))];
        let mut done = 0u64;
        while done < avail {
            let want = usize::try_from((avail - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let n = file.read_at(file_off + done, &mut buf[..want])?;
            if n == 0 {
                break; // The file shrank under us: the rest stays zero.
            }
            let n = n.min(want);
            self.mf.write_at(mf_off + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes `[from, to)` of a shared, writable file mapping back to its file,
    /// up to the file's current size (Linux never extends a file through a
    /// mapping either).
    pub(super) fn write_back(&self, v: &Vma, from: u64, to: u64) -> Result<(), Errno> {
        // A direct mapping's bytes are the file's already.
        let Some(fb) = v
            .file
            .as_ref()
            .filter(|_| v.shared && v.ever_writable && !v.direct)
        else {
            return Ok(());
        };
        let (from, to) = (from.max(v.start), to.min(v.end));
        if from >= to {
            return Ok(());
        }
        let size = fb.file.size()?;
        let file_off = fb.offset + (from - v.start);
        let len = size.saturating_sub(file_off).min(to - from);
        let mut buf = vec![0u8; usize::try_from(len.min(64 * 1024)).unwrap_or(0)];
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(0);
            self.mf
                .read_at(v.mf_offset_of(from) + done, &mut buf[..n])?;
            let mut written = 0;
            while written < n {
                let w = fb
                    .file
                    .write_at(file_off + done + written as u64, &buf[written..n])?;
                if w == 0 {
                    return Err(Errno::EIO);
                }
                written += w;
            }
            done += n as u64;
        }
        Ok(())
    }

    /// Removes every mapping in `[addr, addr + len)` (both aligned, checked by
    /// the caller): writes shared file data back, frees the backing, unmaps.
    pub(super) fn unmap_range(&mut self, addr: u64, len: u64) {
        let Some(end) = addr.checked_add(len) else {
            return;
        };
        for start in self.isolate(addr, end) {
            let Some(v) = self.vmas.remove(&start) else {
                continue;
            };
            if let Err(e) = self.write_back(&v, v.start, v.end) {
                // munmap cannot report this; Linux loses such errors too.
                tracing::warn!("write-back of {:?} on unmap failed: {e}", v.file);
            }
            if let Err(e) = self.aspace.unmap(v.start, v.len()) {
                tracing::warn!("address space unmap failed: {e}");
            }
            self.release_backing(&v);
        }
    }

    /// Gives a removed VMA's backing back: to the memory file, or for a
    /// direct mapping, its pins to the file that owns the pages.
    pub(super) fn release_backing(&self, v: &Vma) {
        match (&v.file, v.direct) {
            (Some(fb), true) => fb.file.unmap_shared(fb.offset, v.mf_offset, v.len()),
            _ => {
                if let Err(e) = self.mf.free(v.mf_offset, v.len()) {
                    tracing::error!("memory file free failed: {e}");
                }
            }
        }
    }

    /// Backs and maps a new VMA at `[v.start, v.end)`, replacing whatever was
    /// there. `v.mf_offset` is ignored: fresh backing is allocated and, for a
    /// file mapping, filled from the file.
    pub(super) fn install(&mut self, mut v: Vma) -> Result<u64, Errno> {
        let len = v.len();
        if let Some(fb) = v.file.as_ref().filter(|_| v.shared) {
            if let Some(mf_off) = fb.file.map_shared(fb.offset, len) {
                // Pinned before the old mapping (maybe of the same pages) goes.
                self.unmap_range(v.start, len);
                if let Err(e) = self.aspace.map(v.start, len, mf_off, v.prot) {
                    fb.file.unmap_shared(fb.offset, mf_off, len);
                    return Err(platform_errno("map", e));
                }
                v.mf_offset = mf_off;
                v.direct = true;
                let start = v.start;
                self.vmas.insert(start, v);
                return Ok(start);
            }
        }
        let mf_off = self.mf.allocate(len)?;
        if let Some(fb) = &v.file {
            if let Err(e) = self.fill_from_file(fb.file.as_ref(), fb.offset, mf_off, len) {
                let _ = self.mf.free(mf_off, len);
                return Err(e);
            }
        }
        v.mf_offset = mf_off;
        self.unmap_range(v.start, len);
        if let Err(e) = self.aspace.map(v.start, len, mf_off, v.prot) {
            let _ = self.mf.free(mf_off, len);
            return Err(platform_errno("map", e));
        }
        let start = v.start;
        self.vmas.insert(start, v);
        Ok(start)
    }

    /// Grows the VMA starting at `start` upward by `delta` bytes (the range
    /// above it is free; checked by the caller). The backing is extended in
    /// place in the memory file when possible, else the growth becomes a VMA
    /// of its own with the same attributes.
    pub(super) fn extend_up(&mut self, start: u64, delta: u64) -> Result<(), Errno> {
        let v = self.vmas.get(&start).ok_or(Errno::EFAULT)?.clone();
        let old_end = v.end;
        let new_end = old_end.checked_add(delta).ok_or(Errno::ENOMEM)?;
        let file_off = v.file_offset_of(v.start).map(|o| o + v.len());
        if v.direct {
            // The growth maps more of the file's pages, as a VMA of its own
            // (they are a run of their own), or copies if the file cannot.
            let mut ext = v.clone();
            ext.start = old_end;
            ext.end = new_end;
            if let (Some(fb), Some(fo)) = (ext.file.as_mut(), file_off) {
                fb.offset = fo;
            }
            ext.direct = false;
            self.install(ext)?;
            return Ok(());
        }
        let adjacent = v
            .mf_offset
            .checked_add(v.len())
            .filter(|off| self.mf.allocate_at(*off, delta).is_ok());
        let (mf_off, in_place) = match adjacent {
            Some(off) => (off, true),
            None => (self.mf.allocate(delta)?, false),
        };
        if let (Some(fb), Some(fo)) = (&v.file, file_off) {
            if let Err(e) = self.fill_from_file(fb.file.as_ref(), fo, mf_off, delta) {
                let _ = self.mf.free(mf_off, delta);
                return Err(e);
            }
        }
        if let Err(e) = self.aspace.map(old_end, delta, mf_off, v.prot) {
            let _ = self.mf.free(mf_off, delta);
            return Err(platform_errno("map", e));
        }
        if in_place {
            if let Some(v) = self.vmas.get_mut(&start) {
                v.end = new_end;
            }
        } else {
            let mut ext = v.clone();
            ext.start = old_end;
            ext.end = new_end;
            ext.mf_offset = mf_off;
            if let (Some(fb), Some(fo)) = (ext.file.as_mut(), file_off) {
                fb.offset = fo;
            }
            self.vmas.insert(old_end, ext);
        }
        Ok(())
    }

    /// A fresh anonymous private VMA template.
    pub(super) fn anon_vma(start: u64, end: u64, prot: Prot, kind: VmaKind) -> Vma {
        Vma {
            start,
            end,
            prot,
            max_prot: Prot::ALL,
            shared: false,
            growsdown: false,
            ever_writable: prot.write,
            file: None,
            mf_offset: 0,
            kind,
            direct: false,
        }
    }

    /// A file VMA template.
    pub(super) fn file_vma(
        start: u64,
        end: u64,
        prot: Prot,
        file: Arc<dyn MappableFile>,
        offset: u64,
    ) -> Vma {
        Vma {
            file: Some(FileBacking { file, offset }),
            ..Self::anon_vma(start, end, prot, VmaKind::Normal)
        }
    }
}

impl Drop for MemoryManager {
    /// Gives the backing of every VMA back to the memory file (the address
    /// space goes away with `aspace`). Shared file data is written back, as
    /// on exit in Linux.
    fn drop(&mut self) {
        let vmas = std::mem::take(&mut self.vmas);
        for v in vmas.values() {
            if let Err(e) = self.write_back(v, v.start, v.end) {
                tracing::warn!("write-back on exit failed: {e}");
            }
            self.release_backing(v);
        }
    }
}

impl std::fmt::Debug for MemoryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryManager")
            .field("vmas", &self.vmas.len())
            .field(
                "brk",
                &format_args!("{:#x}..{:#x}", self.brk_start, self.brk),
            )
            .finish()
    }
}
