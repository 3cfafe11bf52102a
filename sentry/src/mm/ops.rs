//! The memory syscalls' semantics: mmap, munmap, mprotect, mremap, brk,
//! madvise, msync. Arguments arrive raw, as the application passed them;
//! every one is validated here, and every error is Linux's.

use std::sync::Arc;

use platform::Prot;

use super::file::MappableFile;
use super::manager::{platform_errno, MemoryManager};
use super::vma::{Vma, VmaKind};
use super::vma_set::{mergeable, MAX_MAP_COUNT};
use crate::errno::Errno;

/// The file argument of [`MemoryManager::mmap`].
#[derive(Clone)]
pub struct MmapFile {
    pub file: Arc<dyn MappableFile>,
    /// The file offset (mmap's last argument, in bytes).
    pub offset: u64,
    /// Whether the file descriptor was opened for writing: a shared mapping
    /// of a read-only descriptor may never become writable (EACCES). The
    /// caller checks readability (EACCES for a write-only fd) itself.
    pub writable: bool,
}

const PROT_KNOWN: u64 = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
const PROT_GROWSDOWN: u64 = libc::PROT_GROWSDOWN as u64;
const PROT_GROWSUP: u64 = libc::PROT_GROWSUP as u64;

const MAP_TYPE: u64 = 0x0f;
const MAP_SHARED: u64 = libc::MAP_SHARED as u64;
const MAP_PRIVATE: u64 = libc::MAP_PRIVATE as u64;
const MAP_SHARED_VALIDATE: u64 = libc::MAP_SHARED_VALIDATE as u64;
const MAP_FIXED: u64 = libc::MAP_FIXED as u64;
const MAP_ANONYMOUS: u64 = libc::MAP_ANONYMOUS as u64;
const MAP_GROWSDOWN: u64 = libc::MAP_GROWSDOWN as u64;
const MAP_HUGETLB: u64 = libc::MAP_HUGETLB as u64;
const MAP_FIXED_NOREPLACE: u64 = libc::MAP_FIXED_NOREPLACE as u64;
const MAP_32BIT: u64 = libc::MAP_32BIT as u64;
/// Flags MAP_SHARED_VALIDATE accepts (Linux's LEGACY_MAP_MASK plus
/// FIXED_NOREPLACE); MAP_SYNC is not supported (no DAX here).
const MAP_VALIDATE_KNOWN: u64 = MAP_TYPE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_GROWSDOWN
    | MAP_32BIT
    | (libc::MAP_DENYWRITE
        | libc::MAP_EXECUTABLE
        | libc::MAP_LOCKED
        | libc::MAP_NORESERVE
        | libc::MAP_POPULATE
        | libc::MAP_NONBLOCK
        | libc::MAP_STACK
        | libc::MAP_HUGETLB) as u64
    | MAP_FIXED_NOREPLACE;

const MREMAP_MAYMOVE: u64 = libc::MREMAP_MAYMOVE as u64;
const MREMAP_FIXED: u64 = libc::MREMAP_FIXED as u64;
const MREMAP_DONTUNMAP: u64 = 4;

const MS_ASYNC: u64 = libc::MS_ASYNC as u64;
const MS_INVALIDATE: u64 = libc::MS_INVALIDATE as u64;
const MS_SYNC: u64 = libc::MS_SYNC as u64;

fn prot_from(bits: u64) -> Result<Prot, Errno> {
    if bits & !PROT_KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Prot::from_bits(bits))
}

fn prot_allows(max: Prot, p: Prot) -> bool {
    (!p.read || max.read) && (!p.write || max.write) && (!p.exec || max.exec)
}

impl MemoryManager {
    /// mmap(2), with the application's raw `prot` and `flags`. `file` is
    /// ignored with MAP_ANONYMOUS and required without (EBADF).
    ///
    /// Memory is backed eagerly: a memory-file range of the full length is
    /// allocated (sparse: untouched pages cost nothing) and mapped at once.
    /// A file mapping copies the file's bytes (up to EOF; the rest reads as
    /// zero); a shared one writes its bytes back on msync, munmap and exit,
    /// and write(2) is reflected in it ([`MemoryManager::file_written`]).
    /// A shared mapping of a tmpfs file within its size maps the file's own
    /// memory-file pages instead (a `direct` VMA): mapping, read(2) and
    /// write(2) are then one set of bytes, as with Linux's page cache.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        file: Option<MmapFile>,
    ) -> Result<u64, Errno> {
        let prot = prot_from(prot)?;
        let shared = match flags & MAP_TYPE {
            MAP_PRIVATE => false,
            MAP_SHARED => true,
            MAP_SHARED_VALIDATE => {
                if flags & !MAP_VALIDATE_KNOWN != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                true
            }
            _ => return Err(Errno::EINVAL),
        };
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = self.page_align_up(len).ok_or(Errno::ENOMEM)?;
        let anonymous = flags & MAP_ANONYMOUS != 0;
        let file = if anonymous {
            None
        } else {
            Some(file.ok_or(Errno::EBADF)?)
        };
        if let Some(f) = &file {
            if !self.is_aligned(f.offset) {
                return Err(Errno::EINVAL);
            }
            if f.offset.checked_add(len).is_none() {
                return Err(Errno::EOVERFLOW);
            }
        }
        if flags & MAP_HUGETLB != 0 {
            // No huge pages are configured, as on a default Linux.
            return Err(Errno::ENOMEM);
        }
        // Too many mappings (Linux's do_mmap: `map_count >
        // sysctl_max_map_count`, so the count may reach one past it).
        if self.map_count() > MAX_MAP_COUNT {
            return Err(Errno::ENOMEM);
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if !self.is_aligned(addr) {
                return Err(Errno::EINVAL);
            }
            let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > self.top {
                return Err(Errno::ENOMEM);
            }
            if addr < self.min_addr {
                return Err(Errno::EPERM);
            }
            if flags & MAP_FIXED_NOREPLACE != 0 && !self.is_free(addr, len) {
                return Err(Errno::EEXIST);
            }
            // Replacing the middle of a mapping splits it first.
            self.check_unmap_split(addr, end)?;
            addr
        } else {
            self.find_unmapped(addr, len, flags & MAP_32BIT != 0)?
        };
        let end = start + len;
        let mut vma = match &file {
            Some(f) => {
                let mut v = Self::file_vma(start, end, prot, f.file.clone(), f.offset);
                if shared && !f.writable {
                    v.max_prot.write = false;
                }
                v
            }
            None => Self::anon_vma(start, end, prot, VmaKind::Normal),
        };
        if prot.write && !vma.max_prot.write {
            return Err(Errno::EACCES);
        }
        vma.shared = shared;
        // Only anonymous memory grows: a file VMA's offsets would not follow.
        vma.growsdown = flags & MAP_GROWSDOWN != 0 && file.is_none();
        self.install(vma)
    }

    /// munmap(2).
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        if !self.is_aligned(addr) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = self.page_align_up(len).ok_or(Errno::EINVAL)?;
        match addr.checked_add(len) {
            Some(end) if end <= self.layout.max_user_addr => {
                self.check_unmap_split(addr, end)?;
            }
            _ => return Err(Errno::EINVAL),
        }
        self.unmap_range(addr, len);
        Ok(())
    }

    /// ENOMEM if unmapping `[addr, end)` would cut one mapping in two while
    /// the address space has as many as vm.max_map_count allows (Linux's
    /// do_vmi_align_munmap; the count may go above it otherwise, so that
    /// unmapping frees resources).
    fn check_unmap_split(&self, addr: u64, end: u64) -> Result<(), Errno> {
        if self.map_count() >= MAX_MAP_COUNT && self.inside_one_mapping(addr, end) {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// Whether `[addr, end)` lies strictly inside one mapping as Linux
    /// sees it (a run of mergeable VMAs), with some of it on either side.
    fn inside_one_mapping(&self, addr: u64, end: u64) -> bool {
        let Some(mut cur) = self.vma_at(addr) else {
            return false;
        };
        if cur.start == addr && !self.merges_with_previous(cur) {
            return false;
        }
        while cur.end < end {
            match self.vmas.get(&cur.end) {
                Some(next) if mergeable(cur, next) => cur = next,
                _ => return false,
            }
        }
        cur.end > end || self.vmas.get(&cur.end).is_some_and(|n| mergeable(cur, n))
    }

    fn merges_with_previous(&self, v: &Vma) -> bool {
        v.start > 0 && self.vma_at(v.start - 1).is_some_and(|p| mergeable(p, v))
    }

    /// How many more mappings (as Linux counts them) changing the VMAs of
    /// `[addr, end)` with `f` makes at the range's two ends: each end
    /// strictly inside a mapping that the change makes differ on either
    /// side is a split.
    fn splits_for_change(&self, addr: u64, end: u64, f: impl Fn(&mut Vma)) -> u64 {
        let mut splits = 0;
        for (x, inner_above) in [(addr, true), (end, false)] {
            let (Some(below), Some(above)) = (
                x.checked_sub(1).and_then(|b| self.vma_at(b)),
                self.vma_at(x),
            ) else {
                continue;
            };
            let low = if below.end > x {
                below.split(x).0
            } else {
                below.clone()
            };
            let high = if above.start < x {
                above.split(x).1
            } else {
                above.clone()
            };
            if !mergeable(&low, &high) {
                continue; // already two mappings here
            }
            let (mut low2, mut high2) = (low, high);
            if inner_above {
                f(&mut high2);
            } else {
                f(&mut low2);
            }
            if !mergeable(&low2, &high2) {
                splits += 1;
            }
        }
        splits
    }

    /// ENOMEM if changing `[addr, end)` with `f` would split mappings
    /// past vm.max_map_count (Linux's split_vma: `map_count >=
    /// sysctl_max_map_count` refuses each split).
    fn check_change_splits(&self, addr: u64, end: u64, f: impl Fn(&mut Vma)) -> Result<(), Errno> {
        let splits = self.splits_for_change(addr, end, f);
        if splits > 0 && self.map_count() + splits > MAX_MAP_COUNT {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// mprotect(2), with the application's raw `prot`. PROT_GROWSDOWN is
    /// accepted and has no effect.
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
        if prot & PROT_GROWSDOWN != 0 && prot & PROT_GROWSUP != 0 {
            return Err(Errno::EINVAL);
        }
        let prot = prot_from(prot & !(PROT_GROWSDOWN | PROT_GROWSUP))?;
        if !self.is_aligned(addr) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = self.page_align_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if !self.is_fully_mapped(addr, len) {
            return Err(Errno::ENOMEM);
        }
        let mut pos = addr;
        while pos < end {
            let v = self.vma_at(pos).ok_or(Errno::ENOMEM)?;
            if !prot_allows(v.max_prot, prot) {
                return Err(Errno::EACCES);
            }
            pos = v.end;
        }
        self.check_change_splits(addr, end, |v| {
            v.prot = prot;
            v.ever_writable |= prot.write;
        })?;
        for start in self.isolate(addr, end) {
            let Some((s, e)) = self
                .vmas
                .get(&start)
                .filter(|v| v.prot != prot)
                .map(|v| (v.start, v.end))
            else {
                continue;
            };
            self.vmas.modify(start, |v| {
                v.prot = prot;
                v.ever_writable |= prot.write;
            });
            // Copy-on-write pages stay read-only on the host.
            self.sync_host(s, s, e, false, false)?;
        }
        Ok(())
    }

    /// mremap(2). Moving is copy-free: the same memory-file range is mapped
    /// at the new address. MREMAP_DONTUNMAP and old_size 0 (duplicating a
    /// shared mapping) are not supported (EINVAL).
    pub fn mremap(
        &mut self,
        old_addr: u64,
        old_size: u64,
        new_size: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
            || flags & MREMAP_DONTUNMAP != 0
        {
            return Err(Errno::EINVAL);
        }
        let fixed = flags & MREMAP_FIXED != 0;
        if fixed && flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        if !self.is_aligned(old_addr) {
            return Err(Errno::EINVAL);
        }
        let old_size = self.page_align_up(old_size).ok_or(Errno::EINVAL)?;
        let new_size = self.page_align_up(new_size).ok_or(Errno::EINVAL)?;
        if new_size == 0 || old_size == 0 {
            return Err(Errno::EINVAL);
        }
        let old_end = old_addr.checked_add(old_size).ok_or(Errno::EFAULT)?;
        if fixed {
            if !self.is_aligned(new_addr) {
                return Err(Errno::EINVAL);
            }
            let new_end = new_addr.checked_add(new_size).ok_or(Errno::EINVAL)?;
            if new_end > self.top || new_addr < self.min_addr {
                return Err(Errno::EINVAL);
            }
            if new_addr < old_end && old_addr < new_end {
                return Err(Errno::EINVAL);
            }
            // Linux's check_mremap_params: unmapping at the destination and
            // the source may each split a mapping in three.
            if self.map_count() + 2 >= MAX_MAP_COUNT - 3 {
                return Err(Errno::ENOMEM);
            }
        }
        // The old range must be one mapping. VMAs are never merged here, so
        // accept a run of contiguous VMAs Linux would have merged into one.
        let run_end = self.mergeable_run_end(old_addr).ok_or(Errno::EFAULT)?;
        if old_end > run_end {
            return Err(Errno::EFAULT);
        }
        if fixed {
            self.check_move()?;
            self.unmap_range(new_addr, new_size);
            let moved = old_size.min(new_size);
            if new_size < old_size {
                self.unmap_range(old_addr + new_size, old_size - new_size);
            }
            return self.move_mapping(old_addr, moved, new_addr, new_size);
        }
        if new_size <= old_size {
            self.check_unmap_split(old_addr + new_size, old_end)?;
            self.unmap_range(old_addr + new_size, old_size - new_size);
            return Ok(old_addr);
        }
        let delta = new_size - old_size;
        let fits_in_place = old_end == run_end
            && old_end.checked_add(delta).is_some_and(|e| e <= self.top)
            && self.is_free(old_end, delta);
        if fits_in_place {
            let last = self
                .isolate(old_addr, old_end)
                .last()
                .copied()
                .ok_or(Errno::EFAULT)?;
            self.extend_up(last, delta)?;
            return Ok(old_addr);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
        self.check_move()?;
        let dest = self.find_unmapped(0, new_size, false)?;
        self.move_mapping(old_addr, old_size, dest, new_size)
    }

    /// Linux's prep_move_vma: a move may split the source in three and
    /// make a mapping at the destination, so it needs room for that.
    fn check_move(&self) -> Result<(), Errno> {
        if self.map_count() >= MAX_MAP_COUNT - 3 {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// The end of the run of contiguous, mergeable VMAs containing `addr`.
    fn mergeable_run_end(&self, addr: u64) -> Option<u64> {
        let mut cur = self.vma_at(addr)?;
        while let Some(next) = self.vmas.get(&cur.end) {
            if !mergeable(cur, next) {
                break;
            }
            cur = next;
        }
        Some(cur.end)
    }

    /// Moves `[old, old + size)` (mapped) to `new` (free), then grows it to
    /// `new_size`. Copy-free: each VMA's backing is mapped at its new address.
    fn move_mapping(&mut self, old: u64, size: u64, new: u64, new_size: u64) -> Result<u64, Errno> {
        let end = old.checked_add(size).ok_or(Errno::EFAULT)?;
        let mut last = new;
        for start in self.isolate(old, end) {
            let Some(mut v) = self.vmas.get(&start).cloned() else {
                continue;
            };
            let to = new + (v.start - old);
            // The same pages at the new address, copy-on-write ones still
            // read-only.
            // (and frozen ones too, during a freeze).
            for p in self.backing_of(&v, v.start, v.end) {
                for (q, prot) in self.host_parts(&v, &p) {
                    let at = to + (q.start - v.start);
                    if let Err(e) = self.aspace.map(at, q.len(), q.off, prot) {
                        let _ = self.aspace.unmap(to, v.len());
                        return Err(platform_errno("map", e));
                    }
                }
            }
            if let Err(e) = self.aspace.unmap(v.start, v.len()) {
                tracing::warn!("address space unmap failed: {e}");
            }
            self.vmas.remove(start);
            if !v.direct {
                self.pmas.shift(v.start, v.len(), to);
            }
            v.end = to + v.len();
            v.start = to;
            last = to;
            self.vmas.insert(v);
        }
        if new_size > size {
            self.extend_up(last, new_size - size)?;
        }
        Ok(new)
    }

    /// Where a non-fixed mapping of `len` bytes (page-aligned) would go:
    /// for the loader, which places a whole ELF image at once.
    pub fn unmapped_area(&self, hint: u64, len: u64) -> Result<u64, Errno> {
        let len = self
            .page_align_up(len)
            .filter(|l| *l > 0)
            .ok_or(Errno::ENOMEM)?;
        self.find_unmapped(hint, len, false)
    }

    /// Maps the initial stack: `size` bytes of private anonymous memory
    /// below `top`, named `[stack]`, growing down on faults up to the stack
    /// limit. Returns its lowest address.
    pub fn map_stack(&mut self, top: u64, size: u64, prot: Prot) -> Result<u64, Errno> {
        let size = self
            .page_align_up(size)
            .filter(|s| *s > 0)
            .ok_or(Errno::EINVAL)?;
        if !self.is_aligned(top) {
            return Err(Errno::EINVAL);
        }
        let start = top
            .checked_sub(size)
            .filter(|s| *s >= self.min_addr)
            .ok_or(Errno::ENOMEM)?;
        if top > self.top || !self.is_free(start, size) {
            return Err(Errno::ENOMEM);
        }
        let mut v = Self::anon_vma(start, top, prot, VmaKind::Stack);
        v.growsdown = true;
        self.install(v)
    }

    /// Where the loader ends the executable: brk starts at the next page.
    pub fn set_brk_start(&mut self, addr: u64) -> Result<(), Errno> {
        let start = self.page_align_up(addr).ok_or(Errno::ENOMEM)?;
        if start > self.top {
            return Err(Errno::ENOMEM);
        }
        self.brk_start = start;
        self.brk = start;
        Ok(())
    }

    /// The (start, current) program break.
    pub fn brk_range(&self) -> (u64, u64) {
        (self.brk_start, self.brk)
    }

    /// brk(2): moves the break to `addr` and returns the new break, or the
    /// unchanged one when `addr` is 0, below the heap start, or cannot be
    /// satisfied (Linux's raw syscall never returns an error).
    pub fn brk(&mut self, addr: u64) -> u64 {
        if addr < self.brk_start || self.brk_start == 0 {
            return self.brk;
        }
        let (Some(old_end), Some(new_end)) =
            (self.page_align_up(self.brk), self.page_align_up(addr))
        else {
            return self.brk;
        };
        if new_end > self.top {
            return self.brk;
        }
        if new_end > old_end {
            let delta = new_end - old_end;
            // Linux's do_brk_flags, even when the heap just grows.
            if self.map_count() > MAX_MAP_COUNT {
                return self.brk;
            }
            if !self.is_free(old_end, delta) {
                return self.brk;
            }
            let heap = self
                .vma_at(old_end - 1)
                .filter(|v| v.kind == VmaKind::Heap && v.end == old_end && old_end > self.brk_start)
                .map(|v| v.start);
            let grown = match heap {
                Some(start) => self.extend_up(start, delta).map(|_| ()),
                None => self
                    .install(Self::anon_vma(
                        old_end,
                        new_end,
                        Prot::READ_WRITE,
                        VmaKind::Heap,
                    ))
                    .map(|_| ()),
            };
            if grown.is_err() {
                return self.brk;
            }
        } else if new_end < old_end {
            self.unmap_range(new_end, old_end - new_end);
        }
        self.brk = addr;
        addr
    }

    /// madvise(2). MADV_DONTNEED drops private pages (anonymous ones read
    /// back as zero, file ones as the file's bytes); MADV_REMOVE zeroes
    /// shared anonymous memory; MADV_DONTFORK/DOFORK and
    /// MADV_WIPEONFORK/KEEPONFORK (private anonymous memory only, else
    /// EINVAL) set what fork does with the range; the other Linux advice
    /// values are accepted and ignored (they are hints); unknown ones are
    /// EINVAL.
    pub fn madvise(&mut self, addr: u64, len: u64, advice: i32) -> Result<(), Errno> {
        if !self.is_aligned(addr) {
            return Err(Errno::EINVAL);
        }
        match advice {
            libc::MADV_NORMAL
            | libc::MADV_RANDOM
            | libc::MADV_SEQUENTIAL
            | libc::MADV_WILLNEED
            | libc::MADV_FREE
            | libc::MADV_DONTFORK
            | libc::MADV_DOFORK
            | libc::MADV_MERGEABLE
            | libc::MADV_UNMERGEABLE
            | libc::MADV_HUGEPAGE
            | libc::MADV_NOHUGEPAGE
            | libc::MADV_DONTDUMP
            | libc::MADV_DODUMP
            | libc::MADV_WIPEONFORK
            | libc::MADV_KEEPONFORK
            | libc::MADV_COLD
            | libc::MADV_PAGEOUT
            | libc::MADV_POPULATE_READ
            | libc::MADV_POPULATE_WRITE
            | libc::MADV_DONTNEED
            | libc::MADV_REMOVE => {}
            _ => return Err(Errno::EINVAL),
        }
        let len = self.page_align_up(len).ok_or(Errno::EINVAL)?;
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        let fully_mapped = self.is_fully_mapped(addr, len);
        if matches!(
            advice,
            libc::MADV_DONTFORK | libc::MADV_DOFORK | libc::MADV_WIPEONFORK | libc::MADV_KEEPONFORK
        ) {
            if advice == libc::MADV_WIPEONFORK {
                let first = self.vma_at(addr).map_or(addr, |v| v.start);
                if self
                    .vmas
                    .range(first..end)
                    .any(|(_, v)| v.shared || v.file.is_some())
                {
                    return Err(Errno::EINVAL);
                }
            }
            let change = |v: &mut Vma| match advice {
                libc::MADV_DONTFORK => v.dontfork = true,
                libc::MADV_DOFORK => v.dontfork = false,
                libc::MADV_WIPEONFORK => v.wipeonfork = true,
                _ => v.wipeonfork = false,
            };
            if fully_mapped {
                self.check_change_splits(addr, end, change)?;
            }
            for start in self.isolate(addr, end) {
                self.vmas.modify(start, |v| match advice {
                    libc::MADV_DONTFORK => v.dontfork = true,
                    libc::MADV_DOFORK => v.dontfork = false,
                    libc::MADV_WIPEONFORK => v.wipeonfork = true,
                    _ => v.wipeonfork = false,
                });
            }
        }
        if advice == libc::MADV_REMOVE {
            let mut pos = addr;
            while let Some(v) = self.vma_at(pos) {
                if !v.shared {
                    return Err(Errno::EINVAL);
                }
                pos = v.end;
                if pos >= end {
                    break;
                }
            }
        }
        if advice == libc::MADV_DONTNEED || advice == libc::MADV_REMOVE {
            let mut pos = addr;
            while pos < end {
                let next = match self.vma_at(pos) {
                    Some(v) => {
                        let to = v.end.min(end);
                        self.drop_pages(pos, to, advice)?;
                        to
                    }
                    None => match self.vmas.range(pos..end).next() {
                        Some((s, _)) => *s,
                        None => end,
                    },
                };
                pos = next;
            }
        }
        if fully_mapped {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// MADV_DONTNEED / MADV_REMOVE of `[from, to)` within one VMA.
    fn drop_pages(&mut self, from: u64, to: u64, advice: i32) -> Result<(), Errno> {
        let v = self.vma_at(from).ok_or(Errno::ENOMEM)?.clone();
        // Shared memory keeps its contents on DONTNEED: the pages are only
        // unmapped from this process in Linux, and read back the same.
        if v.shared && advice == libc::MADV_DONTNEED {
            return Ok(());
        }
        if v.shared {
            // Zeroes what every sharer sees: MADV_REMOVE on a shared file
            // mapping would punch the file; zero our copy and write the
            // zeros through (a direct mapping's pages are the file's).
            for p in self.backing_of(&v, from, to) {
                self.mf.decommit(p.off, p.len())?;
            }
            return self.write_back(&v, from, to);
        }
        for p in self.pmas.pieces(from, to) {
            // Pages others share (copy-on-write) are left to them: this
            // address space gets fresh ones. Its own are punched.
            let mut segs = Vec::new();
            let mut pos = p.start;
            for r in self.mf.shared_ranges(p.off, p.len()) {
                let (s, e) = (p.start + (r.start - p.off), p.start + (r.end - p.off));
                if s > pos {
                    segs.push((pos, s, false));
                }
                segs.push((s, e, true));
                pos = e;
            }
            if pos < p.end {
                segs.push((pos, p.end, false));
            }
            for (s, e, shared) in segs {
                let len = e - s;
                let off = if shared {
                    self.mf.allocate(len)?
                } else {
                    let off = p.off_of(s);
                    self.mf.decommit(off, len)?;
                    off
                };
                if let Some(fb) = &v.file {
                    let file_off = v.file_offset_of(s).unwrap_or(fb.offset);
                    if let Err(e) = self.fill_from_file(fb.file.as_ref(), file_off, off, len) {
                        if shared {
                            let _ = self.mf.free(off, len);
                        }
                        return Err(e);
                    }
                }
                if shared {
                    if let Err(e) = self.aspace.map(s, len, off, v.prot) {
                        let _ = self.mf.free(off, len);
                        return Err(platform_errno("map", e));
                    }
                    self.pmas.take(s, e);
                    self.pmas.insert(super::pma::Piece {
                        start: s,
                        end: e,
                        off,
                        cow: false,
                    });
                    if let Err(e) = self.mf.free(p.off_of(s), len) {
                        tracing::error!("memory file free failed: {e}");
                    }
                }
            }
        }
        Ok(())
    }

    /// msync(2): writes shared file mappings in the range back to their files.
    pub fn msync(&mut self, addr: u64, len: u64, flags: u64) -> Result<(), Errno> {
        if !self.is_aligned(addr) || flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MS_ASYNC != 0 && flags & MS_SYNC != 0 {
            return Err(Errno::EINVAL);
        }
        let len = self.page_align_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        let mut pos = addr;
        let mut unmapped = false;
        while pos < end {
            match self.vma_at(pos) {
                Some(v) => {
                    let to = v.end.min(end);
                    self.write_back(v, pos, to)?;
                    pos = to;
                }
                None => {
                    unmapped = true;
                    pos = match self.vmas.range(pos..end).next() {
                        Some((s, _)) => *s,
                        None => end,
                    };
                }
            }
        }
        if unmapped {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }
}
