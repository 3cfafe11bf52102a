//! The memory manager: one application address space (gVisor's mm.MemoryManager).
//!
//! It owns the VMA set, the platform address space that mirrors it, and the
//! brk state, and shares the memory file with every other address space.
//! The syscall-facing operations live in `ops.rs`, faults in `fault.rs`,
//! copy-in/out in `io.rs`, checkpoint in `state.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use platform::{AddressSpace, Layout, PlatformError, Prot};

use super::file::MappableFile;
use super::freeze::OffsetSet;
use super::memory_file::{MemoryFile, MF_PAGE_SIZE};
use super::pma::{Piece, Pmas};
use super::vma::{FileBacking, Vma, VmaKind};
use super::vma_set::VmaSet;
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
    pub(super) vmas: VmaSet,
    /// Where every non-direct VMA's pages live (`pma.rs`): exactly the
    /// addresses of those VMAs are backed.
    pub(super) pmas: Pmas,
    /// Pages whose copy-on-write fault was resolved lately, and when: a
    /// thread that faulted on the same page meanwhile finds it resolved
    /// and retries (see `fault.rs`).
    pub(super) recent_cow: VecDeque<(u64, u64, Instant)>,
    /// Memory-file offsets this address space maps read-only on the host
    /// for a freeze (`freeze.rs`), and the freeze generation its host
    /// mappings follow; when a freeze's end last made them writable.
    pub(super) frozen: OffsetSet,
    pub(super) freeze_gen: u64,
    pub(super) thawed_at: Option<Instant>,
    /// Memory-file offsets of a lazy restore's chunks not loaded when this
    /// address space last looked (`lazy.rs`): mapped without access on the
    /// host, so the application's first touch faults and loads them.
    pub(super) unloaded: OffsetSet,
    /// Pages of copied file mappings with no file page behind them, mapped
    /// without access on the host (`nopage.rs`): SIGBUS at the fault
    /// unless the file has one by then.
    pub(super) nopage: super::nopage::NoPages,
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
        let mut unloaded = OffsetSet::default();
        for (s, e) in mf.lazy().map(|l| l.unloaded_spans()).unwrap_or_default() {
            unloaded.insert(s, e);
        }
        Ok(MemoryManager {
            unloaded,
            layout,
            freeze_gen: mf.freeze_generation(),
            mf,
            aspace,
            vmas: VmaSet::default(),
            pmas: Pmas::default(),
            recent_cow: VecDeque::new(),
            frozen: OffsetSet::default(),
            nopage: Default::default(),
            // `freeze_gen` above: born in step with the memory file, as it
            // maps nothing yet, and what it maps of existing pages during
            // a freeze is frozen as it is mapped (`freeze_new_mapping`).
            thawed_at: None,
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
        self.vmas.bytes().0
    }

    /// How many mappings Linux would count (`mm->map_count`, what
    /// vm.max_map_count limits): runs of VMAs Linux would merge count once.
    pub fn map_count(&self) -> u64 {
        self.vmas.map_count()
    }

    /// Mapped bytes and data bytes (for RLIMIT_AS and RLIMIT_DATA)
    /// outside `[start, end)`.
    pub fn vm_use_outside(&self, start: u64, end: u64) -> (u64, u64) {
        let (mut total, mut data) = self.vmas.bytes();
        if start < end {
            let first = self.vma_at(start).map_or(start, |v| v.start);
            for v in self.vmas.range(first..end).map(|(_, v)| v) {
                let inside = v.end.min(end).saturating_sub(v.start.max(start));
                total -= inside;
                if super::vma_set::is_data(v) {
                    data -= inside;
                }
            }
        }
        (total, data)
    }

    /// Bytes of mapped memory that hold data in the memory file (≈ VmRSS).
    pub fn rss(&self) -> u64 {
        self.vmas
            .values()
            .flat_map(|v| self.backing_of(v, v.start, v.end))
            .map(|p| self.mf.data_bytes(p.off, p.len()))
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

    /// The backing of `[from, to)` clipped to VMA `v`, in address order.
    pub(super) fn backing_of(&self, v: &Vma, from: u64, to: u64) -> Vec<Piece> {
        let (from, to) = (from.max(v.start), to.min(v.end));
        if from >= to {
            return Vec::new();
        }
        if v.direct {
            return vec![Piece {
                start: from,
                end: to,
                off: v.mf_offset_of(from),
                cow: false,
            }];
        }
        self.pmas.pieces(from, to)
    }

    /// Reads `buf.len()` bytes of VMA `v` at `addr` from its backing.
    pub(super) fn read_backed(&self, v: &Vma, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let end = addr.checked_add(buf.len() as u64).ok_or(Errno::EFAULT)?;
        for p in self.backing_of(v, addr, end) {
            let at = usize::try_from(p.start - addr).map_err(|_| Errno::EFAULT)?;
            let n = usize::try_from(p.len()).map_err(|_| Errno::EFAULT)?;
            self.mf.read_at(p.off, &mut buf[at..at + n])?;
        }
        Ok(())
    }

    /// Writes `data` into VMA `v` at `addr` through its backing, as it is
    /// (shared pages stay shared: for shared mappings only).
    pub(super) fn write_backed(&self, v: &Vma, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let end = addr.checked_add(data.len() as u64).ok_or(Errno::EFAULT)?;
        for p in self.backing_of(v, addr, end) {
            let at = usize::try_from(p.start - addr).map_err(|_| Errno::EFAULT)?;
            let n = usize::try_from(p.len()).map_err(|_| Errno::EFAULT)?;
            self.mf.write_at(p.off, &data[at..at + n])?;
        }
        Ok(())
    }

    /// The host protections of a piece of `v`: a copy-on-write piece is
    /// never writable on the host.
    pub(super) fn host_prot(v: &Vma, p: &Piece) -> Prot {
        if p.cow {
            Prot {
                write: false,
                ..v.prot
            }
        } else {
            v.prot
        }
    }

    /// Tells the host how `[from, to)` of the VMA starting at `vstart` is to
    /// be mapped (`map`: into an address space that lacks it) or protected:
    /// with the VMA's protections, except that the pages of a private
    /// writable VMA that other owners share (refcount > 1) become
    /// copy-on-write, read-only on the host. With `all_cow` every page of a
    /// private writable VMA does (restore: the other address spaces that
    /// share pages with this one may not be restored yet; the first write
    /// fault re-protects a page nobody shares).
    pub(super) fn sync_host(
        &mut self,
        vstart: u64,
        from: u64,
        to: u64,
        map: bool,
        all_cow: bool,
    ) -> Result<(), Errno> {
        let Some(v) = self.vmas.get(&vstart).cloned() else {
            return Ok(());
        };
        let (from, to) = (from.max(v.start), to.min(v.end));
        if from >= to {
            return Ok(());
        }
        let host = |aspace: &dyn AddressSpace, p: &Piece, prot: Prot| {
            if map {
                aspace.map(p.start, p.len(), p.off, prot)
            } else {
                aspace.protect(p.start, p.len(), prot)
            }
        };
        if v.direct {
            for p in &self.backing_of(&v, from, to) {
                for (q, prot) in self.host_parts(&v, p) {
                    host(self.aspace.as_ref(), &q, prot).map_err(|e| platform_errno("map", e))?;
                }
            }
            return Ok(());
        }
        let may_cow = !v.shared && v.prot.write;
        let mut out = Vec::new();
        for p in self.pmas.take(from, to) {
            if !may_cow || all_cow {
                out.push(Piece { cow: may_cow, ..p });
                continue;
            }
            let mut pos = p.start;
            for r in self.mf.shared_ranges(p.off, p.len()) {
                let (s, e) = (p.start + (r.start - p.off), p.start + (r.end - p.off));
                if s > pos {
                    out.push(Piece {
                        cow: false,
                        ..p.clip(pos, s)
                    });
                }
                out.push(Piece {
                    cow: true,
                    ..p.clip(s, e)
                });
                pos = e;
            }
            if pos < p.end {
                out.push(Piece {
                    cow: false,
                    ..p.clip(pos, p.end)
                });
            }
        }
        let mut result = Ok(());
        for p in &out {
            for (q, prot) in self.host_parts(&v, p) {
                if result.is_ok() {
                    if let Err(e) = host(self.aspace.as_ref(), &q, prot) {
                        result = Err(platform_errno(if map { "map" } else { "protect" }, e));
                    }
                }
            }
        }
        for p in out {
            self.pmas.insert(p);
        }
        result
    }

    /// Gives private pages of `[from, to)` (page-aligned, inside VMA `v`)
    /// that other owners share a copy of their own: fresh pages with the
    /// same bytes, mapped with the VMA's protections; the shared pages
    /// lose one reference. Whether anything was copied.
    pub(super) fn break_cow(&mut self, v: &Vma, from: u64, to: u64) -> Result<bool, Errno> {
        if v.shared || v.direct {
            return Ok(false);
        }
        let mut copied = false;
        for p in self.pmas.pieces(from.max(v.start), to.min(v.end)) {
            for r in self.mf.shared_ranges(p.off, p.len()) {
                let at = p.start + (r.start - p.off);
                let len = r.len();
                let fresh = self.mf.allocate(len)?;
                let placed = self.mf.copy_within(r.start, fresh, len).and_then(|_| {
                    self.aspace
                        .map(at, len, fresh, v.prot)
                        .map_err(|e| platform_errno("map", e))
                });
                if let Err(e) = placed {
                    let _ = self.mf.free(fresh, len);
                    return Err(e);
                }
                self.pmas.take(at, at + len);
                self.pmas.insert(Piece {
                    start: at,
                    end: at + len,
                    off: fresh,
                    cow: false,
                });
                if let Err(e) = self.mf.free(r.start, len) {
                    tracing::error!("memory file free failed: {e}");
                }
                copied = true;
            }
        }
        Ok(copied)
    }

    /// Breaks copy-on-write sharing of every private page in `[from, to)`
    /// before the Sentry writes there (copy_out). Whether anything moved.
    pub(super) fn break_cow_range(&mut self, from: u64, to: u64) -> Result<bool, Errno> {
        if !self.mf.any_shared() {
            // The common case: no page of the memory file is shared.
            return Ok(false);
        }
        let from = self.page_align_down(from);
        let to = self.page_align_up(to).ok_or(Errno::EFAULT)?;
        let vmas: Vec<Vma> = self
            .vmas
            .range(..to)
            .rev()
            .take_while(|(_, v)| v.end > from)
            .map(|(_, v)| v.clone())
            .collect();
        let mut copied = false;
        for v in vmas {
            copied |= self.break_cow(&v, from, to)?;
        }
        Ok(copied)
    }

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
        if let Some(v) = self.vmas.remove(start) {
            let (low, high) = v.split(addr);
            self.vmas.insert(low);
            self.vmas.insert(high);
        }
    }

    /// The start of the VMAs overlapping `[addr, end)` after splitting at both ends.
    pub(super) fn isolate(&mut self, addr: u64, end: u64) -> Vec<u64> {
        self.split_at(addr);
        self.split_at(end);
        self.vmas.range(addr..end).map(|(s, _)| *s).collect()
    }

    /// The highest free, page-aligned `len` bytes within `[lo, hi)`, not
    /// within the guard gap below a growsdown VMA.
    pub(super) fn find_top_down(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        self.vmas.find_top_down(len, lo, hi, self.layout.page_size)
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
            self.mf.write_bulk(mf_off + done, &buf[..n])?;
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
        // Pages never touched since the file had none there have no bytes
        // to give it (writing them would fill its holes).
        let mut pos = from;
        for (s, e) in self.nopage_ranges(from, to) {
            if s > pos {
                self.write_back_all(v, fb, pos, s)?;
            }
            pos = e;
        }
        if pos < to {
            self.write_back_all(v, fb, pos, to)?;
        }
        Ok(())
    }

    /// [`MemoryManager::write_back`] of every page of `[from, to)`.
    fn write_back_all(&self, v: &Vma, fb: &FileBacking, from: u64, to: u64) -> Result<(), Errno> {
        let size = fb.file.size()?;
        let file_off = fb.offset + (from - v.start);
        let len = size.saturating_sub(file_off).min(to - from);
        let mut buf = vec![0u8; usize::try_from(len.min(64 * 1024)).unwrap_or(0)];
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(0);
            self.read_backed(v, from + done, &mut buf[..n])?;
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
            let Some(v) = self.vmas.remove(start) else {
                continue;
            };
            if let Err(e) = self.write_back(&v, v.start, v.end) {
                // munmap cannot report this; Linux loses such errors too.
                tracing::warn!("write-back of {:?} on unmap failed: {e}", v.file);
            }
            if let Err(e) = self.aspace.unmap(v.start, v.len()) {
                tracing::warn!("address space unmap failed: {e}");
            }
            self.nopage.remove(v.start, v.end);
            self.release_backing(&v);
        }
    }

    /// Gives a removed VMA's backing back: its references to the memory
    /// file, or for a direct mapping, its pins to the file that owns the pages.
    pub(super) fn release_backing(&mut self, v: &Vma) {
        release(&self.mf, &mut self.pmas, v);
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
                let prot = self.freeze_new_mapping(mf_off, len, v.prot);
                if let Err(e) = self.aspace.map(v.start, len, mf_off, prot) {
                    fb.file.unmap_shared(fb.offset, mf_off, len);
                    return Err(platform_errno("map", e));
                }
                v.mf_offset = mf_off;
                v.direct = true;
                let start = v.start;
                self.vmas.insert(v);
                return Ok(start);
            }
        }
        if self.reuse_file_copy(&v)? {
            let start = v.start;
            self.vmas.insert(v);
            self.sync_host(start, start, start + len, false, false)?;
            return Ok(start);
        }
        let mf_off = self.mf.allocate(len)?;
        if let Some(fb) = &v.file {
            if let Err(e) = self.fill_from_file(fb.file.as_ref(), fb.offset, mf_off, len) {
                let _ = self.mf.free(mf_off, len);
                return Err(e);
            }
        }
        v.mf_offset = 0;
        v.direct = false;
        self.unmap_range(v.start, len);
        if let Err(e) = self.aspace.map(v.start, len, mf_off, v.prot) {
            let _ = self.mf.free(mf_off, len);
            return Err(platform_errno("map", e));
        }
        let start = v.start;
        self.pmas.insert(Piece {
            start,
            end: start + len,
            off: mf_off,
            cow: false,
        });
        let marked = self.mark_nopages(&v, mf_off);
        self.vmas.insert(v);
        // Inserted first, so that on error unmapping gives the backing back.
        if let Err(e) = marked {
            self.unmap_range(start, len);
            return Err(e);
        }
        Ok(start)
    }

    /// Whether the private file mapping `v` can take over the backing of
    /// the mappings it replaces instead of a fresh copy of the file: they
    /// are private mappings of the same file at the same offsets, never
    /// writable (so their pages are still the file's bytes), of a file the
    /// sandbox cannot change. This is how ld.so maps a library: the whole
    /// file read-only first, then each segment over it with MAP_FIXED at
    /// its own offset; without this each segment copied the file again.
    /// When it can, the old VMAs are removed (their pieces stay, with any
    /// pages past the file's end still without access) and the caller
    /// inserts `v` and sets the host protections; pages shared with a
    /// forked child become copy-on-write there if `v` is writable.
    fn reuse_file_copy(&mut self, v: &Vma) -> Result<bool, Errno> {
        let Some(fb) = v.file.as_ref() else {
            return Ok(false);
        };
        if v.shared
            || !fb.file.contents_fixed()
            || !self.unloaded.is_empty()
            || !self.frozen.is_empty()
        {
            return Ok(false);
        }
        let id = fb.file.identity();
        let mut pos = v.start;
        while pos < v.end {
            let Some(old) = self.vma_at(pos) else {
                return Ok(false);
            };
            let same = !old.shared
                && !old.direct
                && !old.ever_writable
                && !old.growsdown
                && old.kind == VmaKind::Normal
                && old.file_offset_of(pos) == v.file_offset_of(pos)
                && old
                    .file
                    .as_ref()
                    .is_some_and(|f| f.file.identity() == id && f.file.contents_fixed());
            if !same {
                return Ok(false);
            }
            pos = old.end;
        }
        if self
            .pmas
            .pieces(v.start, v.end)
            .iter()
            .map(Piece::len)
            .sum::<u64>()
            != v.len()
        {
            return Ok(false);
        }
        for start in self.isolate(v.start, v.end) {
            self.vmas.remove(start);
        }
        Ok(true)
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
        // Continue the backing in the memory file where that is free (one
        // run instead of two); anywhere else will do.
        let adjacent = self
            .pmas
            .get(old_end - 1)
            .filter(|p| p.end == old_end)
            .and_then(|p| p.off.checked_add(p.len()))
            .filter(|off| self.mf.allocate_at(*off, delta).is_ok());
        let mf_off = match adjacent {
            Some(off) => off,
            None => self.mf.allocate(delta)?,
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
        self.vmas.modify(start, |v| v.end = new_end);
        self.pmas.insert(Piece {
            start: old_end,
            end: new_end,
            off: mf_off,
            cow: false,
        });
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
            dontfork: false,
            wipeonfork: false,
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

/// Gives `v`'s backing back (see [`MemoryManager::release_backing`]).
pub(super) fn release(mf: &MemoryFile, pmas: &mut Pmas, v: &Vma) {
    match (&v.file, v.direct) {
        (Some(fb), true) => fb.file.unmap_shared(fb.offset, v.mf_offset, v.len()),
        _ => {
            for p in pmas.take(v.start, v.end) {
                if let Err(e) = mf.free(p.off, p.len()) {
                    tracing::error!("memory file free failed: {e}");
                }
            }
        }
    }
}

impl Drop for MemoryManager {
    /// Gives the backing of every VMA back to the memory file (the address
    /// space goes away with `aspace`). Shared file data is written back, as
    /// on exit in Linux.
    fn drop(&mut self) {
        let vmas = self.vmas.take();
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
