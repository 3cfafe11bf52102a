//! Pages of file mappings with no file page behind them: wholly past the
//! file's end, or (in a shared mapping of a file that allocates its pages,
//! as tmpfs) a hole the file has not given a page yet. Linux finds out at
//! the fault: SIGBUS (BUS_ADRERR) past the end, and past a full tmpfs's
//! limit. Every mapping here is backed eagerly, so such pages are mapped
//! without access on the host: the first touch faults, and the fault either
//! finds a page now (the file grew, the file system had room) and maps it
//! with the VMA's protections, or is SIGBUS.

use std::collections::BTreeMap;

use platform::Prot;

use super::manager::{platform_errno, MemoryManager};
use super::pma::Piece;
use super::vma::Vma;
use crate::errno::Errno;

/// A run of pages without a file page, by its start address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NoPage {
    pub(super) end: u64,
    /// The memory-file offset the run's first page was mapped at: an entry
    /// holds only while the address is still backed there (a page moved
    /// since, by mremap or a copy, is an ordinary page).
    pub(super) off: u64,
    /// Wholly past the file's end when mapped (else a hole of a shared
    /// mapping): its bytes are read from the file at the first fault that
    /// finds the file grown.
    pub(super) past_eof: bool,
}

/// Address runs without a file page, disjoint.
#[derive(Clone, Debug, Default)]
pub(super) struct NoPages(BTreeMap<u64, NoPage>);

impl NoPages {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The runs overlapping `[start, end)`, clipped to it, with the
    /// memory-file offset of each clipped start.
    fn overlapping(&self, start: u64, end: u64) -> Vec<(u64, NoPage)> {
        let first = self
            .0
            .range(..=start)
            .next_back()
            .filter(|(_, n)| n.end > start)
            .map_or(start, |(s, _)| *s);
        self.0
            .range(first..end)
            .map(|(&s, n)| {
                let at = s.max(start);
                (
                    at,
                    NoPage {
                        end: n.end.min(end),
                        off: n.off + (at - s),
                        past_eof: n.past_eof,
                    },
                )
            })
            .collect()
    }

    pub(super) fn insert(&mut self, start: u64, n: NoPage) {
        if start < n.end {
            self.remove(start, n.end);
            self.0.insert(start, n);
        }
    }

    /// Forgets `[start, end)`.
    pub(super) fn remove(&mut self, start: u64, end: u64) {
        for (at, _) in self.overlapping(start, end) {
            let Some((&s, &n)) = self.0.range(..=at).next_back() else {
                continue;
            };
            self.0.remove(&s);
            if s < start {
                self.0.insert(s, NoPage { end: start, ..n });
            }
            if end < n.end {
                self.0.insert(
                    end,
                    NoPage {
                        off: n.off + (end - s),
                        ..n
                    },
                );
            }
        }
    }

    /// The run of piece `p` that holds: where its offset is the piece's.
    fn of_piece(&self, p: &Piece) -> Vec<(u64, NoPage)> {
        self.overlapping(p.start, p.end)
            .into_iter()
            .filter(|(at, n)| p.off_of(*at) == n.off)
            .collect()
    }
}

impl MemoryManager {
    /// `parts` (pieces of one VMA with host protections) with every page
    /// without a file page mapped without access.
    pub(super) fn nopage_parts(&self, parts: Vec<(Piece, Prot)>) -> Vec<(Piece, Prot)> {
        if self.nopage.is_empty() {
            return parts;
        }
        let mut out = Vec::new();
        for (q, prot) in parts {
            let mut pos = q.start;
            for (a, n) in self.nopage.of_piece(&q) {
                if a > pos {
                    out.push((q.clip(pos, a), prot));
                }
                out.push((q.clip(a, n.end), Prot::NONE));
                pos = n.end;
            }
            if pos < q.end {
                out.push((q.clip(pos, q.end), prot));
            }
        }
        out
    }

    /// The address runs of `[from, to)` without a file page, in order.
    pub(super) fn nopage_ranges(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        if self.nopage.is_empty() {
            return Vec::new();
        }
        self.pmas
            .pieces(from, to)
            .iter()
            .flat_map(|p| self.nopage.of_piece(p))
            .map(|(at, n)| (at, n.end))
            .collect()
    }

    /// Marks the pages of the new copied file mapping `v` that have no file
    /// page and maps them without access. Its backing is one run at
    /// `mf_off`, filled from the file up to its end.
    pub(super) fn mark_nopages(&mut self, v: &Vma, mf_off: u64) -> Result<(), Errno> {
        self.nopage.remove(v.start, v.end);
        let whole = Piece {
            start: v.start,
            end: v.end,
            off: mf_off,
            cow: false,
        };
        for (start, n) in nopages_of(v, &[whole], self.layout.page_size)? {
            self.aspace
                .protect(start, n.end - start, Prot::NONE)
                .map_err(|e| platform_errno("protect", e))?;
            self.nopage.insert(start, n);
        }
        Ok(())
    }

    /// A fault at `addr` on a page without a file page: `Ok(true)` when the
    /// file has one now (mapped, the access can be retried), `Err(EIO)`
    /// when it still has none (SIGBUS), `Ok(false)` when `addr` is no such
    /// page.
    pub(super) fn resolve_nopage(&mut self, addr: u64) -> Result<bool, Errno> {
        if self.nopage.is_empty() {
            return Ok(false);
        }
        let page = self.page_align_down(addr);
        let Some(v) = self.vma_at(page).cloned() else {
            return Ok(false);
        };
        let Some(p) = self.pmas.get(page).filter(|_| !v.direct) else {
            return Ok(false);
        };
        let Some((_, n)) = self
            .nopage
            .of_piece(&p.clip(page, page + self.layout.page_size))
            .pop()
        else {
            return Ok(false);
        };
        let len = self.layout.page_size;
        if let Some(fb) = &v.file {
            let file_off = fb.offset + (page - v.start);
            if file_off >= fb.file.size()?.next_multiple_of(len) {
                return Err(Errno::EIO);
            }
            if v.shared {
                // The file's own page: charged now, as Linux's fault
                // allocates it (ENOSPC past a tmpfs's limit).
                fb.file.fault_in(file_off).map_err(|_| Errno::EIO)?;
            }
            if n.past_eof && !v.shared {
                // The file grew: the private copy starts as its bytes.
                // (A shared mapping already has them: write(2) reaches it.)
                self.fill_from_file(fb.file.as_ref(), file_off, n.off, len)?;
            }
        }
        self.nopage.remove(page, page + len);
        self.sync_host(v.start, page, page + len, false, false)?;
        Ok(true)
    }
}

/// The runs of copied file VMA `v`, backed by `pieces` (in address
/// order), that have no file page: wholly past the file's end, or holes of
/// a shared mapping. A restore finds them again this way: such a page was
/// never given to the application (its first touch would have been SIGBUS
/// or have given the file a page).
pub(super) fn nopages_of(
    v: &Vma,
    pieces: &[Piece],
    page: u64,
) -> Result<Vec<(u64, NoPage)>, Errno> {
    let mut runs: Vec<(u64, NoPage)> = Vec::new();
    let Some(fb) = v.file.as_ref().filter(|_| !v.direct) else {
        return Ok(runs);
    };
    let size = fb.file.size()?.next_multiple_of(page);
    for p in pieces {
        let mut at = p.start;
        while at < p.end {
            let file_off = fb.offset + (at - v.start);
            let past_eof = file_off >= size;
            if past_eof || (v.shared && !fb.file.holds_page(file_off)) {
                // Every page after the end is past it too.
                let end = if past_eof { p.end } else { at + page };
                match runs.last_mut() {
                    Some((s, n))
                        if n.end == at
                            && n.past_eof == past_eof
                            && n.off + (at - *s) == p.off_of(at) =>
                    {
                        n.end = end
                    }
                    _ => runs.push((
                        at,
                        NoPage {
                            end,
                            off: p.off_of(at),
                            past_eof,
                        },
                    )),
                }
                if past_eof {
                    break;
                }
            }
            at += page;
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn runs_split_and_clip() {
        let mut s = NoPages::default();
        s.insert(
            0,
            NoPage {
                end: 4 * P,
                off: 100 * P,
                past_eof: true,
            },
        );
        s.remove(P, 2 * P);
        assert_eq!(
            s.overlapping(0, 8 * P),
            vec![
                (
                    0,
                    NoPage {
                        end: P,
                        off: 100 * P,
                        past_eof: true
                    }
                ),
                (
                    2 * P,
                    NoPage {
                        end: 4 * P,
                        off: 102 * P,
                        past_eof: true
                    }
                ),
            ]
        );
        let moved = Piece {
            start: 2 * P,
            end: 4 * P,
            off: 7 * P,
            cow: false,
        };
        assert!(s.of_piece(&moved).is_empty(), "a page moved since holds");
        s.remove(0, 8 * P);
        assert!(s.is_empty());
    }
}
