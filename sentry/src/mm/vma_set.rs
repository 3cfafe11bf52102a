//! The VMA set of an address space, with what Linux keeps beside its VMA
//! tree so that no operation has to walk every mapping: the number of
//! mappings as Linux counts them (`map_count`, for vm.max_map_count), the
//! mapped and data bytes (RLIMIT_AS and RLIMIT_DATA), and the free gaps
//! between mappings indexed by size (Linux's augmented gap tree), so that
//! placing a new mapping does not look at every mapping below the top.
//!
//! Reads go through `Deref` to the map by start address; every change
//! goes through [`VmaSet::insert`], [`VmaSet::remove`] or
//! [`VmaSet::modify`], which keep the rest in step.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use super::manager::STACK_GUARD_GAP;
use super::vma::Vma;

/// How many mappings an address space may have (vm.max_map_count, shown
/// as /proc/sys/vm/max_map_count): Linux's default (DEFAULT_MAX_MAP_COUNT,
/// 65530) less room for the platform. Each mapping is at least one host
/// mapping of the stub process, which also has its own and is limited by
/// the host's vm.max_map_count (65530 by default): the host must never
/// be the one to refuse, as its refusing an unmap or protect kills the
/// stub (see the platforms).
pub const MAX_MAP_COUNT: u64 = 65530 - HOST_HEADROOM;

/// Host mappings left to the stub's own and to VMAs whose backing is
/// more than one host mapping (copy-on-write pieces after fork).
const HOST_HEADROOM: u64 = 1024;

/// Size classes of free gaps: exact page counts up to `EXACT_PAGES`, then
/// powers of two.
const EXACT_PAGES: u64 = 64;
const PAGE: u64 = 4096;
const CLASSES: usize = EXACT_PAGES as usize + 64;

fn class_of(len: u64) -> usize {
    let pages = len / PAGE;
    if pages <= EXACT_PAGES {
        pages as usize
    } else {
        EXACT_PAGES as usize + (63 - pages.leading_zeros() as usize)
    }
}

/// Whether `b`, starting where `a` ends, is the same mapping as far as the
/// application can tell (Linux would have one VMA for both).
pub(super) fn mergeable(a: &Vma, b: &Vma) -> bool {
    let same_file = match (&a.file, &b.file) {
        (None, None) => true,
        (Some(fa), Some(fb)) => {
            std::sync::Arc::ptr_eq(&fa.file, &fb.file)
                && fa.offset.checked_add(a.len()) == Some(fb.offset)
        }
        _ => false,
    };
    // `ever_writable` of a private mapping is Linux's VM_ACCOUNT, which
    // keeps a RELRO segment apart from the read-only one below it.
    a.end == b.start
        && a.prot == b.prot
        && a.max_prot == b.max_prot
        && a.shared == b.shared
        && a.growsdown == b.growsdown
        && (a.shared || a.ever_writable == b.ever_writable)
        && a.kind == b.kind
        && a.dontfork == b.dontfork
        && a.wipeonfork == b.wipeonfork
        && same_file
}

/// Whether a mapping counts as data for RLIMIT_DATA (is_data_mapping).
pub(super) fn is_data(v: &Vma) -> bool {
    v.prot.write && !v.shared && !v.growsdown
}

/// VMAs by start address (they never overlap), with their counts and gaps.
#[derive(Clone)]
pub struct VmaSet {
    map: BTreeMap<u64, Vma>,
    /// Mappings as Linux counts them: runs of mergeable VMAs count once
    /// (cryo does not merge VMAs; Linux would have one for each run).
    map_count: u64,
    total_bytes: u64,
    data_bytes: u64,
    /// Free gaps below each VMA and above the last, `end -> start`: where
    /// a new mapping may go (below a growsdown VMA, not within its guard gap).
    gaps: BTreeMap<u64, u64>,
    /// The same gaps by size class, `end -> start` in each.
    by_class: Vec<BTreeMap<u64, u64>>,
    /// Starts of the growsdown VMAs, whose guard gaps shorten gaps below.
    growsdown: BTreeSet<u64>,
}

impl Default for VmaSet {
    /// No VMAs: one gap, everything.
    fn default() -> VmaSet {
        let mut s = VmaSet {
            map: BTreeMap::new(),
            map_count: 0,
            total_bytes: 0,
            data_bytes: 0,
            gaps: BTreeMap::new(),
            by_class: vec![BTreeMap::new(); CLASSES],
            growsdown: BTreeSet::new(),
        };
        s.add_gap_owned_by(None);
        s
    }
}

impl Deref for VmaSet {
    type Target = BTreeMap<u64, Vma>;

    fn deref(&self) -> &BTreeMap<u64, Vma> {
        &self.map
    }
}

impl std::fmt::Debug for VmaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl FromIterator<Vma> for VmaSet {
    fn from_iter<I: IntoIterator<Item = Vma>>(iter: I) -> VmaSet {
        let mut s = VmaSet::default();
        for v in iter {
            s.insert(v);
        }
        s
    }
}

impl VmaSet {
    /// The number of mappings Linux would count (`mm->map_count`).
    pub fn map_count(&self) -> u64 {
        self.map_count
    }

    /// Mapped bytes, and of them data bytes (`total_vm`, `data_vm`).
    pub fn bytes(&self) -> (u64, u64) {
        (self.total_bytes, self.data_bytes)
    }

    /// Takes every VMA out, leaving the set empty.
    pub fn take(&mut self) -> BTreeMap<u64, Vma> {
        std::mem::take(self).map
    }

    /// Adds `v`, whose range must be free.
    pub fn insert(&mut self, v: Vma) {
        debug_assert!(v.start < v.end);
        let (start, end) = (v.start, v.end);
        let next = self.next_start(end);
        self.map_count -= next.map_or(0, |n| self.run_start(n));
        self.drop_gap_owned_by(next);
        self.total_bytes += v.len();
        if is_data(&v) {
            self.data_bytes += v.len();
        }
        if v.growsdown {
            self.growsdown.insert(start);
        }
        self.map.insert(start, v);
        self.map_count += self.run_start(start) + next.map_or(0, |n| self.run_start(n));
        self.add_gap_owned_by(Some(start));
        self.add_gap_owned_by(next);
        if self.growsdown.contains(&start) {
            self.refresh_guarded_below(start);
        }
    }

    /// Removes the VMA starting at `start`.
    pub fn remove(&mut self, start: u64) -> Option<Vma> {
        let end = self.map.get(&start)?.end;
        let next = self.next_start(end);
        self.map_count -= self.run_start(start) + next.map_or(0, |n| self.run_start(n));
        self.drop_gap_owned_by(Some(start));
        self.drop_gap_owned_by(next);
        let v = self.map.remove(&start)?;
        self.total_bytes -= v.len();
        if is_data(&v) {
            self.data_bytes -= v.len();
        }
        self.map_count += next.map_or(0, |n| self.run_start(n));
        self.add_gap_owned_by(next);
        if self.growsdown.remove(&start) {
            self.refresh_guarded_below(start);
        }
        Some(v)
    }

    /// Changes the VMA starting at `start` with `f` (which may move or
    /// resize it into free space).
    pub fn modify<R>(&mut self, start: u64, f: impl FnOnce(&mut Vma) -> R) -> Option<R> {
        let mut v = self.remove(start)?;
        let r = f(&mut v);
        self.insert(v);
        Some(r)
    }

    /// The highest free, `align`-aligned `len` bytes within `[lo, hi)`.
    pub fn find_top_down(&self, len: u64, lo: u64, hi: u64, align: u64) -> Option<u64> {
        if len == 0 || hi < lo || hi - lo < len {
            return None;
        }
        let fit = |s: u64, e: u64| -> Option<u64> {
            let (s, e) = (s.max(lo), e.min(hi));
            if e < s || e - s < len {
                return None;
            }
            Some((e - len) & !(align - 1)).filter(|a| *a >= s)
        };
        let mut best: Option<u64> = None;
        // The gap reaching over `hi`, clipped to it: the highest candidate.
        if let Some((&e, &s)) = self.gaps.range(hi..).next() {
            if s < hi {
                if let Some(a) = fit(s, e) {
                    return Some(a);
                }
            }
        }
        let want = class_of(len);
        for class in want..CLASSES {
            let Some(gaps) = self.by_class.get(class) else {
                break;
            };
            if gaps.is_empty() {
                continue;
            }
            // The highest gap of each class that fits: in a class above the
            // wanted one every gap is big enough, so only `lo` (or an
            // alignment above a page) makes one fail.
            for (&e, &s) in gaps.range(..hi).rev() {
                if best.is_some_and(|b| e <= b) || e <= lo {
                    break;
                }
                if let Some(a) = fit(s, e) {
                    best = Some(best.map_or(a, |b| b.max(a)));
                    break;
                }
                if s <= lo {
                    // Cut short by `lo`: every gap below is lower still.
                    break;
                }
            }
        }
        best
    }

    // ---- bookkeeping ----

    /// The start of the first VMA at or above `addr`.
    fn next_start(&self, addr: u64) -> Option<u64> {
        self.map.range(addr..).next().map(|(s, _)| *s)
    }

    /// 1 if the VMA at `start` begins a run of mergeable VMAs, else 0.
    fn run_start(&self, start: u64) -> u64 {
        let Some(v) = self.map.get(&start) else {
            return 0;
        };
        match self.map.range(..start).next_back() {
            Some((_, prev)) if mergeable(prev, v) => 0,
            _ => 1,
        }
    }

    /// The free gap just below the VMA at `owner` (or, for `None`, above
    /// the last VMA), ending where a new mapping may end: at the VMA's
    /// start, or below the guard gap of a growsdown VMA that reaches it.
    fn gap_owned_by(&self, owner: Option<u64>) -> Option<(u64, u64)> {
        let (below, mut end) = match owner {
            Some(o) => (o, o),
            None => (u64::MAX, u64::MAX),
        };
        let start = self
            .map
            .range(..below)
            .next_back()
            .map_or(0, |(_, v)| v.end);
        if let Some(o) = owner {
            let reach = o.saturating_add(STACK_GUARD_GAP);
            if let Some(g) = self.growsdown.range(o..=reach).next() {
                end = end.min(g.saturating_sub(STACK_GUARD_GAP));
            }
        }
        (end > start).then_some((start, end))
    }

    fn drop_gap_owned_by(&mut self, owner: Option<u64>) {
        if let Some((s, e)) = self.gap_owned_by(owner) {
            self.gaps.remove(&e);
            if let Some(c) = self.by_class.get_mut(class_of(e - s)) {
                c.remove(&e);
            }
        }
    }

    fn add_gap_owned_by(&mut self, owner: Option<u64>) {
        if let Some((s, e)) = self.gap_owned_by(owner) {
            self.gaps.insert(e, s);
            if let Some(c) = self.by_class.get_mut(class_of(e - s)) {
                c.insert(e, s);
            }
        }
    }

    /// After a growsdown VMA at `g` came or went: the gaps whose end its
    /// guard gap decides, those of the VMAs within it below `g`, are
    /// found again. Gaps are keyed by end, which is what changed, so the
    /// stale ones are found by the owners' ranges.
    fn refresh_guarded_below(&mut self, g: u64) {
        let from = g.saturating_sub(STACK_GUARD_GAP);
        let owners: Vec<u64> = self.map.range(from..=g).map(|(s, _)| *s).collect();
        for o in owners {
            let start = self.map.range(..o).next_back().map_or(0, |(_, v)| v.end);
            if start >= o {
                continue; // no gap below it, then or now
            }
            // Whatever gap this owner had ends in `(start, o]`.
            let stale: Vec<u64> = self
                .gaps
                .range(start.saturating_add(1)..=o)
                .map(|(e, _)| *e)
                .collect();
            for e in stale {
                if let Some(s) = self.gaps.remove(&e) {
                    if let Some(c) = self.by_class.get_mut(class_of(e - s)) {
                        c.remove(&e);
                    }
                }
            }
            self.add_gap_owned_by(Some(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::manager::MemoryManager;
    use crate::mm::vma::VmaKind;
    use platform::Prot;

    fn anon(start: u64, pages: u64, prot: Prot) -> Vma {
        MemoryManager::anon_vma(start, start + pages * PAGE, prot, VmaKind::Normal)
    }

    /// The gaps the set keeps are exactly those a walk of every VMA finds.
    fn check(s: &VmaSet) {
        let mut want = BTreeMap::new();
        let mut prev_end = 0;
        let vmas: Vec<&Vma> = s.map.values().collect();
        for (i, v) in vmas.iter().enumerate() {
            let mut end = v.start;
            for w in &vmas[i..] {
                if w.start > v.start.saturating_add(STACK_GUARD_GAP) {
                    break;
                }
                if w.growsdown {
                    end = end.min(w.start.saturating_sub(STACK_GUARD_GAP));
                    break;
                }
            }
            if end > prev_end {
                want.insert(end, prev_end);
            }
            prev_end = v.end;
        }
        if prev_end < u64::MAX {
            want.insert(u64::MAX, prev_end);
        }
        assert_eq!(s.gaps, want);
        let classes: usize = s.by_class.iter().map(BTreeMap::len).sum();
        assert_eq!(classes, want.len());
        let mut runs = 0;
        let mut prev: Option<&Vma> = None;
        for v in s.map.values() {
            if !prev.is_some_and(|p| mergeable(p, v)) {
                runs += 1;
            }
            prev = Some(v);
        }
        assert_eq!(s.map_count, runs);
    }

    #[test]
    fn counts_runs_and_keeps_gaps() {
        let mut s = VmaSet::default();
        let base = 0x10_0000_0000u64;
        for i in 0..40 {
            let prot = if i % 3 == 0 {
                Prot::READ
            } else {
                Prot::READ_WRITE
            };
            s.insert(anon(base + i * 2 * PAGE, 1 + i % 2, prot));
            check(&s);
        }
        let mut stack = anon(base + 100 * PAGE, 4, Prot::READ_WRITE);
        stack.growsdown = true;
        s.insert(stack);
        check(&s);
        s.modify(base + 4 * PAGE, |v| v.prot = Prot::READ);
        check(&s);
        for i in (0..40).step_by(3) {
            s.remove(base + i * 2 * PAGE);
            check(&s);
        }
        s.remove(base + 100 * PAGE);
        check(&s);
    }

    #[test]
    fn finds_the_highest_gap_that_fits() {
        let mut s = VmaSet::default();
        let base = 0x10_0000_0000u64;
        // Gaps of 1, 2, 3 pages (from the top down) between one-page VMAs.
        s.insert(anon(base, 1, Prot::READ));
        s.insert(anon(base + 4 * PAGE, 1, Prot::READ));
        s.insert(anon(base + 7 * PAGE, 1, Prot::READ));
        s.insert(anon(base + 9 * PAGE, 1, Prot::READ));
        let hi = base + 9 * PAGE;
        assert_eq!(s.find_top_down(PAGE, base, hi, PAGE), Some(base + 8 * PAGE));
        assert_eq!(
            s.find_top_down(2 * PAGE, base, hi, PAGE),
            Some(base + 5 * PAGE)
        );
        assert_eq!(s.find_top_down(3 * PAGE, base, hi, PAGE), Some(base + PAGE));
        assert_eq!(s.find_top_down(4 * PAGE, base, hi, PAGE), None);
        // Clipped by `lo` and by `hi`.
        assert_eq!(
            s.find_top_down(2 * PAGE, base + 2 * PAGE, base + 3 * PAGE, PAGE),
            None
        );
        assert_eq!(
            s.find_top_down(PAGE, base, base + 2 * PAGE, PAGE),
            Some(base + PAGE)
        );
    }
}
