//! Application page faults. Every VMA is mapped eagerly, so the memory
//! manager resolves two faults: a write to a copy-on-write page (mapped
//! read-only on the host after fork), and stack growth: an access just
//! below a growsdown VMA.

use std::time::{Duration, Instant};

use platform::Access;

use super::manager::{MemoryManager, STACK_GUARD_GAP};
use super::pma::Piece;
use super::vma::Vma;
use crate::errno::Errno;

/// How far below a faulting address the stack grows at once beyond the
/// page needed: each fault is a round trip through the platform.
const STACK_GROW_AHEAD: u64 = 64 * 1024;

/// How long a resolved copy-on-write fault lets other threads' faults on
/// the same page retry: they faulted before it was resolved and reach the
/// memory manager after (each waits for the lock). Bounded, so a platform
/// that reports faults on a writable page cannot spin a task for ever.
const RECENT_COW: Duration = Duration::from_secs(1);
/// At most this many recently resolved ranges are remembered.
const RECENT_COW_PAGES: usize = 64;

impl MemoryManager {
    /// Resolves a fault at `addr`. `Ok` means the access can be retried.
    /// `Err(EACCES)` means the address is mapped but `access` is not allowed
    /// (SIGSEGV with SEGV_ACCERR); `Err(EFAULT)` means nothing is mapped there
    /// (SEGV_MAPERR); `Err(EIO)` means a file mapping's page has no page of
    /// the file behind it (past its end, or its file system is full): SIGBUS
    /// with BUS_ADRERR.
    pub fn handle_fault(&mut self, addr: u64, access: Access) -> Result<(), Errno> {
        if !self.unloaded.is_empty() && self.reveal_loaded(addr)? {
            return Ok(());
        }
        if self.resolve_nopage(addr)? {
            return Ok(());
        }
        if let Some(v) = self.vma_at(addr) {
            // A write to a page a freeze made read-only (any writable VMA,
            // shared or private) thaws its block first; if the page is
            // also copy-on-write, the retried write faults again and
            // breaks that below.
            let writing = v.prot.write && matches!(access, Access::Write | Access::Unknown);
            if writing && !self.frozen.is_empty() {
                let v = v.clone();
                if self.thaw(&v, addr)? {
                    return Ok(());
                }
            }
            let Some(v) = self.vma_at(addr) else {
                return Err(Errno::EFAULT);
            };
            // Every VMA is mapped eagerly with its protections, except that
            // copy-on-write pages of a writable private VMA are read-only on
            // the host. A write there (ptrace reports non-exec faults as
            // Unknown: on a page mapped readable only a write faults; on x86
            // a writable page is readable too) is resolved;
            // anything else is a protection violation. Only pages this
            // address space marked `cow` are "repaired", and the repair
            // clears the mark, so a platform that keeps faulting cannot
            // spin the task.
            let write = !v.shared
                && !v.direct
                && v.prot.write
                && matches!(access, Access::Write | Access::Unknown);
            let page = self.page_align_down(addr);
            let cow = self.pmas.get(addr).filter(|p| write && p.cow).is_some();
            if !cow {
                // Another thread's fault on this page was resolved (or a
                // freeze's end made it writable) while this one waited:
                // retry.
                return if writing && self.recently_resolved(page, Instant::now()) {
                    Ok(())
                } else {
                    Err(Errno::EACCES)
                };
            }
            let v = v.clone();
            // Other threads may have faulted anywhere in what this made
            // writable (a reused run is more than the page), not only here.
            let (start, end) = self.resolve_cow(&v, addr)?;
            self.remember_resolved(start, end);
            return Ok(());
        }
        self.grow_stack(addr)
    }

    /// A fault on a page a lazy restore had not loaded when this address
    /// space was mapped: loads its chunk (or waits for whoever is loading
    /// it), then gives this address space access to every page of the
    /// chunk it maps. Whether that was the fault's cause.
    fn reveal_loaded(&mut self, addr: u64) -> Result<bool, Errno> {
        let page = self.page_align_down(addr);
        let Some(v) = self.vma_at(page).cloned() else {
            return Ok(false);
        };
        let off = match self
            .backing_of(&v, page, page + self.layout.page_size)
            .first()
        {
            Some(p) => p.off_of(page),
            None => return Ok(false),
        };
        if !self.unloaded.contains(off) {
            // Another thread of this address space revealed it meanwhile.
            return Ok(self.recently_resolved_lazy(page));
        }
        let (start, end) = match self
            .mf
            .lazy()
            .and_then(|l| l.chunk_at(off).and_then(|n| l.span(n)))
        {
            Some(span) => span,
            // Loaded since this address space was made.
            None => (
                off & !(super::MF_PAGE_SIZE - 1),
                (off & !(super::MF_PAGE_SIZE - 1)) + super::MF_PAGE_SIZE,
            ),
        };
        self.mf
            .await_loaded_as(start, end - start, super::lazy::Demand::Fault);
        self.unloaded.remove(start, end);
        let vmas: Vec<Vma> = self.vmas.values().cloned().collect();
        for v in &vmas {
            for p in self.backing_of(v, v.start, v.end) {
                let (s, e) = (p.off.max(start), (p.off + p.len()).min(end));
                if s >= e {
                    continue;
                }
                let q = p.clip(p.start + (s - p.off), p.start + (e - p.off));
                for (part, prot) in self.host_parts(v, &q) {
                    self.aspace
                        .protect(part.start, part.len(), prot)
                        .map_err(|e| super::manager::platform_errno("protect", e))?;
                }
                self.remember_resolved(q.start, q.end);
            }
        }
        Ok(true)
    }

    /// Whether `page` was revealed lately (another thread's fault on it
    /// raced the reveal, and retries).
    fn recently_resolved_lazy(&mut self, page: u64) -> bool {
        let now = Instant::now();
        self.recent_cow
            .retain(|(_, _, at)| now.duration_since(*at) < RECENT_COW);
        self.recent_cow
            .iter()
            .any(|(s, e, _)| (*s..*e).contains(&page))
    }

    /// Whether a fault on `page` may be one that raced a resolution: its
    /// page was resolved lately, or a freeze's end made every page
    /// writable lately.
    fn recently_resolved(&mut self, page: u64, now: Instant) -> bool {
        self.recent_cow
            .retain(|(_, _, at)| now.duration_since(*at) < RECENT_COW);
        if self
            .thawed_at
            .is_some_and(|at| now.duration_since(at) < RECENT_COW)
        {
            return true;
        }
        self.recent_cow
            .iter()
            .any(|(s, e, _)| (*s..*e).contains(&page))
    }

    /// Records that `[start, end)` was just made writable (see
    /// `recently_resolved`).
    pub(super) fn remember_resolved(&mut self, start: u64, end: u64) {
        if self.recent_cow.len() >= RECENT_COW_PAGES {
            self.recent_cow.pop_front();
        }
        self.recent_cow.push_back((start, end, Instant::now()));
    }

    /// A write fault on copy-on-write page `addr` of `v`: a page others
    /// still share is copied; one nobody else holds any more (the other
    /// owner copied it, exited or exec'd) is made writable again as it is,
    /// with every such page of its run, like Linux's reuse. Returns the
    /// addresses made writable.
    fn resolve_cow(&mut self, v: &Vma, addr: u64) -> Result<(u64, u64), Errno> {
        let page = self.page_align_down(addr);
        let page_end = page + self.layout.page_size;
        let Some(p) = self.pmas.get(page) else {
            return Err(Errno::EACCES);
        };
        if !self
            .mf
            .shared_ranges(p.off_of(page), page_end - page)
            .is_empty()
        {
            self.break_cow(v, page, page_end)?;
            return Ok((page, page_end));
        }
        // The run around `page`, within its piece and its VMA, that nobody
        // else holds.
        let (lo, hi) = (p.start.max(v.start), p.end.min(v.end));
        let (mut s, mut e) = (lo, hi);
        for r in self.mf.shared_ranges(p.off_of(lo), hi - lo) {
            let (rs, re) = (p.start + (r.start - p.off), p.start + (r.end - p.off));
            if re <= page {
                s = s.max(self.page_align_up(re).unwrap_or(re));
            } else if rs >= page_end {
                e = e.min(self.page_align_down(rs));
                break;
            }
        }
        for q in self.pmas.take(s, e) {
            self.pmas.insert(Piece { cow: false, ..q });
        }
        // Pages of the run a freeze still holds stay read-only.
        for q in self.pmas.pieces(s, e) {
            for (part, prot) in self.host_parts(v, &q) {
                self.aspace
                    .protect(part.start, part.len(), prot)
                    .map_err(|e| super::manager::platform_errno("protect", e))?;
            }
        }
        Ok((s, e))
    }

    /// Grows the growsdown VMA just above `addr` down to cover it, within
    /// the stack limit and never closer than the guard gap to the mapping
    /// below. EFAULT when `addr` is not a stack-growth access.
    pub fn grow_stack(&mut self, addr: u64) -> Result<(), Errno> {
        let (vstart, v) = match self.vmas.range(addr..).next() {
            Some((s, v)) if v.growsdown => (*s, v.clone()),
            _ => return Err(Errno::EFAULT),
        };
        let need = self.page_align_down(addr);
        // The stack's top: the end of the run of contiguous growsdown VMAs.
        let mut top = v.end;
        while let Some(next) = self.vmas.get(&top).filter(|n| n.growsdown) {
            top = next.end;
        }
        let lowest = top.saturating_sub(self.stack_limit);
        if need < lowest || need < self.min_addr {
            return Err(Errno::EFAULT);
        }
        let floor = match self.vmas.range(..vstart).next_back() {
            Some((_, prev)) => {
                let gap_floor = prev.end.checked_add(STACK_GUARD_GAP).ok_or(Errno::EFAULT)?;
                if need < gap_floor {
                    return Err(Errno::EFAULT);
                }
                gap_floor
            }
            None => self.min_addr,
        };
        let target = self
            .page_align_down(need.saturating_sub(STACK_GROW_AHEAD))
            .max(lowest.next_multiple_of(self.layout.page_size))
            .max(floor)
            .min(need);
        self.extend_down(vstart, &v, target)
    }

    /// Grows `v` (starting at `vstart`) down to `target`.
    fn extend_down(&mut self, vstart: u64, v: &Vma, target: u64) -> Result<(), Errno> {
        let delta = vstart - target;
        // Continue the backing downward in the memory file where that is free.
        let adjacent = self
            .pmas
            .get(vstart)
            .filter(|p| p.start == vstart)
            .and_then(|p| p.off.checked_sub(delta))
            .filter(|off| self.mf.allocate_at(*off, delta).is_ok());
        let mf_off = match adjacent {
            Some(off) => off,
            None => self.mf.allocate(delta)?,
        };
        if let Err(e) = self.aspace.map(target, delta, mf_off, v.prot) {
            let _ = self.mf.free(mf_off, delta);
            return Err(super::manager::platform_errno("map", e));
        }
        let mut grown = v.clone();
        grown.start = target;
        self.vmas.remove(vstart);
        self.vmas.insert(grown);
        self.pmas.insert(Piece {
            start: target,
            end: vstart,
            off: mf_off,
            cow: false,
        });
        Ok(())
    }
}
