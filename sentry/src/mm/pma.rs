//! The backing map: which memory-file pages back which addresses (gVisor's
//! mm/pma.go). VMAs say what is mapped and how; this map says where its
//! bytes live. It is kept eager: every page of every VMA is backed (except
//! `direct` VMAs, which map their file's own pages through `Vma.mf_offset`),
//! so copy-in/out never allocates.
//!
//! Backing is per address, not per VMA, because after fork and a
//! copy-on-write break one VMA's pages lie in several memory-file runs.
//! Whether a page is shared is the memory file's reference count; `cow`
//! records only what this address space told the host: that the range is
//! mapped without write permission although its VMA allows writing, so a
//! write fault there is a copy-on-write break and not a protection error.

use std::collections::BTreeMap;

/// One run of addresses backed by one run of the memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub end: u64,
    /// The memory-file offset of `start`.
    pub off: u64,
    /// Mapped read-only on the host to catch the first write (see the module).
    pub cow: bool,
}

impl Piece {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The memory-file offset of `addr`, which must be inside.
    pub fn off_of(&self, addr: u64) -> u64 {
        self.off + (addr - self.start)
    }

    /// The part within `[start, end)` (which must overlap it).
    pub fn clip(&self, start: u64, end: u64) -> Piece {
        let s = self.start.max(start);
        Piece {
            start: s,
            end: self.end.min(end),
            off: self.off_of(s),
            cow: self.cow,
        }
    }
}

/// Backing pieces by start address; disjoint.
#[derive(Clone, Debug, Default)]
pub struct Pmas {
    map: BTreeMap<u64, Piece>,
}

impl Pmas {
    /// Every piece, in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Piece> {
        self.map.values()
    }

    /// The piece containing `addr`.
    pub fn get(&self, addr: u64) -> Option<Piece> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(_, p)| *p)
            .filter(|p| p.end > addr)
    }

    /// The pieces overlapping `[start, end)`, clipped to it, in order.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<Piece> {
        let first = self
            .map
            .range(..=start)
            .next_back()
            .map_or(start, |(s, _)| *s);
        self.map
            .range(first..end)
            .filter(|(_, p)| p.end > start)
            .map(|(_, p)| p.clip(start, end))
            .collect()
    }

    fn split_at(&mut self, at: u64) {
        if let Some(p) = self.get(at).filter(|p| p.start < at) {
            self.map.insert(p.start, p.clip(p.start, at));
            self.map.insert(at, p.clip(at, p.end));
        }
    }

    /// Removes and returns the pieces of `[start, end)`, cut at its ends.
    pub fn take(&mut self, start: u64, end: u64) -> Vec<Piece> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.map.range(start..end).map(|(s, _)| *s).collect();
        keys.into_iter()
            .filter_map(|k| self.map.remove(&k))
            .collect()
    }

    /// Adds `p`, whose addresses must be unbacked, merging it with
    /// neighbours it continues (in addresses and offsets, same `cow`).
    pub fn insert(&mut self, p: Piece) {
        debug_assert!(p.start < p.end && self.pieces(p.start, p.end).is_empty());
        let mut p = p;
        if let Some(prev) = self.get(p.start.wrapping_sub(1)).filter(|q| {
            p.start > 0 && q.end == p.start && q.off + q.len() == p.off && q.cow == p.cow
        }) {
            self.map.remove(&prev.start);
            p.start = prev.start;
            p.off = prev.off;
        }
        if let Some(next) = self
            .map
            .get(&p.end)
            .copied()
            .filter(|q| p.off + p.len() == q.off && q.cow == p.cow)
        {
            self.map.remove(&next.start);
            p.end = next.end;
        }
        self.map.insert(p.start, p);
    }

    /// Moves the pieces of `[from, from + len)` to start at `to` (whose
    /// range must be unbacked, apart from the source itself).
    pub fn shift(&mut self, from: u64, len: u64, to: u64) {
        for p in self.take(from, from + len) {
            self.insert(Piece {
                start: to + (p.start - from),
                end: to + (p.end - from),
                ..p
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    fn piece(start: u64, end: u64, off: u64) -> Piece {
        Piece {
            start,
            end,
            off,
            cow: false,
        }
    }

    #[test]
    fn insert_merges_take_splits() {
        let mut m = Pmas::default();
        m.insert(piece(0x10 * P, 0x12 * P, 0));
        m.insert(piece(0x12 * P, 0x13 * P, 2 * P));
        assert_eq!(m.iter().count(), 1, "continuing pieces merge");
        m.insert(piece(0x13 * P, 0x14 * P, 9 * P));
        assert_eq!(m.iter().count(), 2, "a jump in offsets does not");
        let got = m.take(0x11 * P, 0x13 * P + P / P * P);
        assert_eq!(
            got,
            vec![
                piece(0x11 * P, 0x13 * P, P),
                piece(0x13 * P, 0x14 * P, 9 * P)
            ]
        );
        assert_eq!(m.pieces(0, u64::MAX), vec![piece(0x10 * P, 0x11 * P, 0)]);
        m.insert(piece(0x20 * P, 0x22 * P, 5 * P));
        m.shift(0x20 * P, 2 * P, 0x30 * P);
        assert_eq!(m.get(0x30 * P + 5), Some(piece(0x30 * P, 0x32 * P, 5 * P)));
        assert_eq!(m.get(0x20 * P), None);
        let mut c = piece(0x40 * P, 0x41 * P, 7 * P);
        c.cow = true;
        m.insert(c);
        m.insert(piece(0x41 * P, 0x42 * P, 8 * P));
        assert_eq!(m.pieces(0x40 * P, 0x42 * P).len(), 2, "cow differs");
    }
}
