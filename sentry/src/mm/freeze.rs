//! A near-zero freeze: memory saved while the application runs again
//! (`cryo checkpoint --leave-running`, issue 15).
//!
//! At the freeze every task is stopped; the memory file's allocated pages
//! become a [`Snapshot`] and the tasks go on. From then on, until the
//! snapshot's last page has been handed to the statefile writer, a page is
//! copied aside before anything changes it, so that the statefile holds
//! memory exactly as it was at the freeze:
//!
//! * the Sentry's own writes (copy-out, tmpfs, futex words, signal frames,
//!   hole punching when a page is freed or zeroed) all go through
//!   [`MemoryFile`]'s write methods, which call [`MemoryFile::preserve`]
//!   first — one check, in one file;
//! * the application's writes go through the stubs' host mappings, which
//!   each address space makes read-only for the freeze before its threads
//!   run again ([`sync_freeze`]); the first write fault on a frozen block
//!   copies its pages aside and makes the block writable again
//!   ([`MemoryManager::thaw`]).
//!
//! Why mprotect rather than userfaultfd write-protection: a userfaultfd
//! belongs to one mm, so each stub would have to create one (a new
//! injected syscall, allowed by its seccomp filter, on both platforms) and
//! register every mapping it gains during the save, and the fault would be
//! resolved on a handler thread instead of the faulting task's, where the
//! memory manager already resolves copy-on-write faults the same way. The
//! mprotect path reuses exactly that machinery, needs nothing new from the
//! platforms, and the Sentry's own writes need a check anyway (hole
//! punching goes through the fd, not a mapping).
//!
//! A block of [`FREEZE_BLOCK`] bytes is thawed per fault: copying 64 KiB
//! costs about what a fault's round trip through the platform does, so a
//! program that writes all of its memory pays a sixteenth of the faults at
//! the price of copying a few pages it may not write.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use platform::Prot;

use super::manager::{platform_errno, MemoryManager};
use super::memory_file::{MemoryFile, MF_PAGE_SIZE};
use super::pma::Piece;
use super::vma::Vma;
use crate::errno::Errno;

/// How much of a frozen mapping one write fault thaws (see the module).
pub const FREEZE_BLOCK: u64 = 64 * 1024;

/// The memory file as it was at a freeze, while it is being written out.
///
/// Each page of `[0, len)` is in one of three states: *pending* (the memory
/// file still holds it as it was at the freeze and the writer has not read
/// it), *copied* (something was about to change it: its frozen contents are
/// in the side buffer), or *done* (handed to the writer, or not allocated
/// at the freeze: it reads as zero and nothing needs keeping).
pub struct Snapshot {
    len: u64,
    pages: Mutex<SnapshotPages>,
}

#[derive(Default)]
struct SnapshotPages {
    /// One bit per page of `[0, len)`: set while the page is pending.
    pending: Vec<u64>,
    /// One bit per page: set while the writer reads the page from the
    /// memory file without the lock (see [`Snapshot::read_into`]).
    in_flight: Vec<u64>,
    /// Frozen contents of copied pages not yet read by the writer, by
    /// page offset; `None` for a page that was all zeros.
    copies: HashMap<u64, Option<Box<[u8]>>>,
    /// Bytes held in `copies` now, and the most ever (for the log).
    held: u64,
    peak: u64,
    copied_pages: u64,
    /// Set when a page could not be copied: the snapshot is incomplete and
    /// the checkpoint must fail.
    failed: Option<Errno>,
}

fn bit(map: &[u64], page: u64) -> bool {
    let i = (page / MF_PAGE_SIZE) as usize;
    map.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(map: &mut [u64], page: u64, on: bool) {
    let i = (page / MF_PAGE_SIZE) as usize;
    if let Some(w) = map.get_mut(i / 64) {
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }
}

impl SnapshotPages {
    fn is_pending(&self, page: u64) -> bool {
        bit(&self.pending, page)
    }

    fn clear_pending(&mut self, page: u64) {
        set_bit(&mut self.pending, page, false);
    }

    /// Whether `page` still holds its frozen contents in the memory file
    /// and someone will read them: pending, or being read by the writer
    /// and not copied aside yet.
    fn needs_copy(&self, page: u64) -> bool {
        self.is_pending(page) || (bit(&self.in_flight, page) && !self.copies.contains_key(&page))
    }
}

/// What a finished snapshot did, for the log and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Pages copied aside because something wrote (or freed) them first.
    pub copied_pages: u64,
    /// The most bytes the side buffer held at once.
    pub peak_bytes: u64,
}

impl Snapshot {
    /// A snapshot of `mf`'s `allocated` ranges; pages beyond them read as
    /// zero (a free page of the memory file is a hole).
    pub(super) fn new(allocated: &[super::FileRange]) -> Snapshot {
        let len = allocated.iter().map(|r| r.end).max().unwrap_or(0);
        let pages = len / MF_PAGE_SIZE;
        let mut pending = vec![0u64; pages.div_ceil(64) as usize];
        for r in allocated {
            let (a, b) = (r.start / MF_PAGE_SIZE, r.end / MF_PAGE_SIZE);
            for i in a..b {
                pending[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
        Snapshot {
            len,
            pages: Mutex::new(SnapshotPages {
                in_flight: vec![0u64; pending.len()],
                pending,
                ..Default::default()
            }),
        }
    }

    /// Length of the image: one past the last page allocated at the freeze.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn lock(&self) -> MutexGuard<'_, SnapshotPages> {
        // Every update leaves the state consistent (bits cleared only once
        // the copy is in place).
        self.pages.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> SnapshotStats {
        let p = self.lock();
        SnapshotStats {
            copied_pages: p.copied_pages,
            peak_bytes: p.peak,
        }
    }

    /// Copies aside the pending pages of `[offset, offset + len)` of `mf`
    /// before they change. Runs of pending pages are read with one pread
    /// each (a mapping freed during the save may be large).
    fn preserve(&self, mf: &MemoryFile, offset: u64, len: u64) {
        /// The most read at once: bounds the buffer, not the work.
        const RUN: u64 = 256 * MF_PAGE_SIZE;
        let end = offset.saturating_add(len).min(self.len);
        let mut page = offset & !(MF_PAGE_SIZE - 1);
        if page >= end {
            return;
        }
        let mut p = self.lock();
        let mut buf = Vec::new();
        while page < end {
            if !p.needs_copy(page) {
                page += MF_PAGE_SIZE;
                continue;
            }
            let start = page;
            while page < end && page - start < RUN && p.needs_copy(page) {
                page += MF_PAGE_SIZE;
            }
            buf.resize((page - start) as usize, 0);
            if let Err(e) = pread_exact(mf, start, &mut buf) {
                tracing::error!(start, "cannot copy frozen pages aside: {e}");
                p.failed.get_or_insert(e);
                continue;
            }
            for (i, data) in buf.chunks(MF_PAGE_SIZE as usize).enumerate() {
                let at = start + i as u64 * MF_PAGE_SIZE;
                let copy = if data.iter().all(|b| *b == 0) {
                    None
                } else {
                    p.held += MF_PAGE_SIZE;
                    Some(data.to_vec().into_boxed_slice())
                };
                p.copies.insert(at, copy);
                p.copied_pages += 1;
                p.clear_pending(at);
            }
            p.peak = p.peak.max(p.held);
        }
    }

    /// Fills `buf` with the frozen image at `offset` (page-aligned): pending
    /// pages from the memory file, copied ones from the side buffer (which
    /// gives them up), the rest zeros. Each page is read once: afterwards
    /// it is done, and nothing keeps it any more.
    ///
    /// The memory file is read without the lock, so that a fault or a
    /// Sentry write meanwhile never waits for the read (nor for this thread,
    /// should it be preempted, to be scheduled again): the pages read
    /// are marked in flight, a `preserve` of one copies it aside as it
    /// would a pending page (it still holds its frozen contents: the write
    /// comes after), and that copy replaces whatever the read saw.
    pub fn read_into(&self, mf: &MemoryFile, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.len)
            .ok_or(Errno::EFAULT)?;
        if !offset.is_multiple_of(MF_PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let buf_len = buf.len();
        let slot = |page: u64| {
            let a = (page - offset) as usize;
            a..(a + MF_PAGE_SIZE as usize).min(buf_len)
        };
        let mut runs: Vec<(u64, u64)> = Vec::new();
        {
            let mut p = self.lock();
            if let Some(e) = p.failed {
                return Err(e);
            }
            let mut page = offset;
            while page < end {
                if p.is_pending(page) {
                    p.clear_pending(page);
                    set_bit(&mut p.in_flight, page, true);
                    match runs.last_mut() {
                        Some((_, e)) if *e == page => *e += MF_PAGE_SIZE,
                        _ => runs.push((page, page + MF_PAGE_SIZE)),
                    }
                } else {
                    let r = slot(page);
                    match p.copies.remove(&page) {
                        Some(Some(copy)) => {
                            p.held -= MF_PAGE_SIZE;
                            let n = r.len();
                            buf[r].copy_from_slice(&copy[..n]);
                        }
                        _ => buf[r].fill(0),
                    }
                }
                page += MF_PAGE_SIZE;
            }
        }
        let mut read = Ok(());
        for (s, e) in &runs {
            let (a, b) = (
                (s - offset) as usize,
                ((e - offset) as usize).min(buf.len()),
            );
            read = read.and_then(|()| pread_exact(mf, *s, &mut buf[a..b]));
        }
        let mut p = self.lock();
        for (s, e) in runs {
            for page in (s..e).step_by(MF_PAGE_SIZE as usize) {
                set_bit(&mut p.in_flight, page, false);
                let r = slot(page);
                match p.copies.remove(&page) {
                    Some(Some(copy)) => {
                        p.held -= MF_PAGE_SIZE;
                        let n = r.len();
                        buf[r].copy_from_slice(&copy[..n]);
                    }
                    Some(None) => buf[r].fill(0),
                    None => {}
                }
            }
        }
        if let Some(e) = p.failed {
            return Err(e);
        }
        read
    }
}

/// pread(2) of the memory file: a hole reads as zeros without allocating
/// the page, as a load through the mapping would.
fn pread_exact(mf: &MemoryFile, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let at = i64::try_from(offset + done as u64).map_err(|_| Errno::EFAULT)?;
        match nix::sys::uio::pread(mf.fd(), &mut buf[done..], at) {
            Ok(0) => return Err(Errno::EFAULT),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The CPUs the sandbox process may use, as they were when its memory file
/// was made (at boot, before a platform bound any thread to one CPU).
static BOOT_AFFINITY: std::sync::OnceLock<Option<nix::sched::CpuSet>> = std::sync::OnceLock::new();

pub(super) fn note_boot_affinity() {
    BOOT_AFFINITY.get_or_init(|| nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok());
}

/// Lets the calling thread run on every CPU of the sandbox again. A thread
/// inherits its creator's binding: the statefile's writer, started from a
/// task's thread that a platform may have bound to that task's CPU, would
/// otherwise compress on the very CPU the program runs on. Best effort.
pub fn unbind_thread() {
    if let Some(Some(all)) = BOOT_AFFINITY.get() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), all) {
            tracing::debug!("cannot unbind the checkpoint writer: {e}");
        }
    }
}

/// The freeze state a memory file carries.
#[derive(Default)]
pub(super) struct FreezeSlot {
    pub(super) snapshot: Option<Arc<Snapshot>>,
}

impl MemoryFile {
    /// Freezes the memory file: from now on, until [`MemoryFile::end_freeze`],
    /// every page allocated now is kept as it is now for the snapshot's
    /// reader. Called with every task stopped. EBUSY if a freeze is under way.
    pub fn begin_freeze(&self) -> Result<Arc<Snapshot>, Errno> {
        let mut slot = self.freeze_slot();
        if slot.snapshot.is_some() {
            return Err(Errno::EBUSY);
        }
        let snap = Arc::new(Snapshot::new(&self.allocated_ranges()));
        slot.snapshot = Some(snap.clone());
        self.set_frozen(true);
        Ok(snap)
    }

    /// Ends the freeze of `snap` (the writer has read it, or gave up): the
    /// side buffer goes, and address spaces make their frozen mappings
    /// writable again when their threads next run.
    pub fn end_freeze(&self, snap: &Arc<Snapshot>) {
        let mut slot = self.freeze_slot();
        if slot.snapshot.as_ref().is_some_and(|s| Arc::ptr_eq(s, snap)) {
            slot.snapshot = None;
            self.set_frozen(false);
        }
    }

    /// Keeps the frozen contents of `[offset, offset + len)` before the
    /// caller changes them (a no-op, one atomic load, outside a freeze).
    pub fn preserve(&self, offset: u64, len: u64) {
        if !self.is_frozen() || len == 0 {
            return;
        }
        let snap = self.freeze_slot().snapshot.clone();
        if let Some(s) = snap {
            s.preserve(self, offset, len);
        }
    }
}

/// Offsets of the memory file, as disjoint coalesced ranges start -> end.
#[derive(Clone, Debug, Default)]
pub(super) struct OffsetSet(BTreeMap<u64, u64>);

impl OffsetSet {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn contains(&self, off: u64) -> bool {
        self.0
            .range(..=off)
            .next_back()
            .is_some_and(|(_, e)| *e > off)
    }

    /// The parts of `[start, end)` in the set, in order.
    pub(super) fn intersections(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
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

    pub(super) fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
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

    pub(super) fn remove(&mut self, start: u64, end: u64) {
        for (s, e) in self.intersections(start, end) {
            // `s` lies in one stored range: cut it around `[s, e)`.
            let Some((rs, re)) = self.0.range(..=s).next_back().map(|(a, b)| (*a, *b)) else {
                continue;
            };
            self.0.remove(&rs);
            if rs < s {
                self.0.insert(rs, s);
            }
            if e < re {
                self.0.insert(e, re);
            }
        }
    }
}

thread_local! {
    /// The address space (by address) and freeze generation this host
    /// thread last ran application code under: lets [`sync_freeze`] skip
    /// the address space's lock on every switch.
    static SYNCED: Cell<(usize, u64)> = const { Cell::new((0, u64::MAX)) };
}

/// Brings `mm`'s host mappings in step with the memory file's freeze before
/// the calling task runs application code: made read-only when a freeze
/// began since, writable again when it ended. Every task calls this right
/// before switching into the application, so no application thread runs
/// on a mapping that a freeze has not protected yet. Costs one atomic load
/// when nothing changed.
pub fn sync_freeze(mm: &Mutex<MemoryManager>, mf: &MemoryFile) {
    let key = (
        mm as *const Mutex<MemoryManager> as usize,
        mf.freeze_generation(),
    );
    if SYNCED.get() == key {
        return;
    }
    let mut guard = mm.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = guard.sync_freeze() {
        // The address space could not be protected: the freeze cannot
        // promise this address space's memory any more.
        tracing::error!("freeze: cannot protect an address space: {e}");
        mf.fail_freeze(e);
    }
    SYNCED.set(key);
}

impl MemoryFile {
    /// Marks the current snapshot incomplete (see [`sync_freeze`]).
    pub(super) fn fail_freeze(&self, e: Errno) {
        if let Some(s) = self.freeze_slot().snapshot.clone() {
            s.lock().failed.get_or_insert(e);
        }
    }
}

impl MemoryManager {
    /// See [`sync_freeze`]; called with the address space's lock.
    pub(super) fn sync_freeze(&mut self) -> Result<(), Errno> {
        let gen = self.mf.freeze_generation();
        if gen == self.freeze_gen {
            return Ok(());
        }
        self.freeze_gen = gen;
        let started = Instant::now();
        let frozen = self.mf.is_frozen();
        let result = if frozen {
            self.freeze_all()
        } else {
            self.thaw_all()
        };
        tracing::debug!(
            frozen,
            us = started.elapsed().as_micros() as u64,
            "freeze: address space in step"
        );
        result
    }

    /// The freeze began: every page this address space maps (writable or
    /// not: an mprotect during the save must not make one writable) is
    /// frozen, and every writable mapping becomes read-only on the host, in
    /// as few protects as contiguous writable VMAs allow.
    fn freeze_all(&mut self) -> Result<(), Errno> {
        let vmas: Vec<Vma> = self.vmas.values().cloned().collect();
        for v in &vmas {
            for p in self.backing_of(v, v.start, v.end) {
                self.frozen.insert(p.off, p.off + p.len());
            }
        }
        // Runs of adjacent writable VMAs with the same protections.
        let mut run: Option<(u64, u64, Prot)> = None;
        let mut runs = Vec::new();
        for v in vmas.iter().filter(|v| v.prot.write) {
            let prot = Prot {
                write: false,
                ..v.prot
            };
            match &mut run {
                Some((_, e, p)) if *e == v.start && *p == prot => *e = v.end,
                _ => {
                    runs.extend(run.take());
                    run = Some((v.start, v.end, prot));
                }
            }
        }
        runs.extend(run);
        for (s, e, prot) in runs {
            self.aspace
                .protect(s, e - s, prot)
                .map_err(|e| platform_errno("protect", e))?;
        }
        Ok(())
    }

    /// The freeze ended: every frozen page of a writable mapping gets its
    /// usual host protections back (copy-on-write pages stay read-only).
    fn thaw_all(&mut self) -> Result<(), Errno> {
        if self.frozen.is_empty() {
            return Ok(());
        }
        let frozen = std::mem::take(&mut self.frozen);
        let vmas: Vec<Vma> = self
            .vmas
            .values()
            .filter(|v| v.prot.write)
            .cloned()
            .collect();
        let mut result = Ok(());
        for v in &vmas {
            for p in self.backing_of(v, v.start, v.end) {
                for (s, e) in frozen.intersections(p.off, p.off + p.len()) {
                    let at = p.start + (s - p.off);
                    if let Err(err) = self.aspace.protect(at, e - s, Self::host_prot(v, &p)) {
                        result = Err(platform_errno("protect", err));
                    }
                }
            }
        }
        // A thread that faulted on a frozen page before this ran retries.
        self.thawed_at = Some(Instant::now());
        result
    }

    /// The parts of piece `p` of `v` with the host protections each gets:
    /// [`MemoryManager::host_prot`], without write where frozen.
    /// Where a lazy restore has not loaded the pages yet, no access at all.
    pub(super) fn host_parts(&self, v: &Vma, p: &Piece) -> Vec<(Piece, Prot)> {
        let parts = self.nopage_parts(self.frozen_parts(v, p));
        if self.unloaded.is_empty() {
            return parts;
        }
        let mut out = Vec::new();
        for (q, prot) in parts {
            let mut pos = q.start;
            for (s, e) in self.unloaded.intersections(q.off, q.off + q.len()) {
                let (a, b) = (q.start + (s - q.off), q.start + (e - q.off));
                if a > pos {
                    out.push((q.clip(pos, a), prot));
                }
                out.push((q.clip(a, b), Prot::NONE));
                pos = b;
            }
            if pos < q.end {
                out.push((q.clip(pos, q.end), prot));
            }
        }
        out
    }

    fn frozen_parts(&self, v: &Vma, p: &Piece) -> Vec<(Piece, Prot)> {
        let prot = Self::host_prot(v, p);
        if !prot.write || self.frozen.is_empty() {
            return vec![(*p, prot)];
        }
        let ro = Prot {
            write: false,
            ..prot
        };
        let mut out = Vec::new();
        let mut pos = p.start;
        for (s, e) in self.frozen.intersections(p.off, p.off + p.len()) {
            let (a, b) = (p.start + (s - p.off), p.start + (e - p.off));
            if a > pos {
                out.push((p.clip(pos, a), prot));
            }
            out.push((p.clip(a, b), ro));
            pos = b;
        }
        if pos < p.end {
            out.push((p.clip(pos, p.end), prot));
        }
        out
    }

    /// A new mapping of existing pages (a tmpfs file's, `direct`) at
    /// `[start, start + len)` from memory-file offset `off`: during a
    /// freeze they are frozen here too. The protections to map them with.
    pub(super) fn freeze_new_mapping(&mut self, off: u64, len: u64, prot: Prot) -> Prot {
        if !self.mf.is_frozen() {
            return prot;
        }
        self.frozen.insert(off, off + len);
        Prot {
            write: false,
            ..prot
        }
    }

    /// A write fault at `addr` in writable VMA `v`: if the page is frozen,
    /// copies the pending pages of its block aside and makes the block
    /// writable again (still read-only where copy-on-write: the retried
    /// write then breaks that). Whether the fault was a frozen page's.
    pub(super) fn thaw(&mut self, v: &Vma, addr: u64) -> Result<bool, Errno> {
        if self.frozen.is_empty() {
            return Ok(false);
        }
        let page = self.page_align_down(addr);
        let Some(p) = self
            .backing_of(v, page, page + self.layout.page_size)
            .first()
            .copied()
        else {
            return Ok(false);
        };
        if !self.frozen.contains(p.off_of(page)) {
            return Ok(false);
        }
        let block = FREEZE_BLOCK.max(self.layout.page_size);
        let bs = (addr & !(block - 1)).max(v.start);
        let be = (addr & !(block - 1)).saturating_add(block).min(v.end);
        let mut thawed = Vec::new();
        for q in self.backing_of(v, bs, be) {
            for (s, e) in self.frozen.intersections(q.off, q.off + q.len()) {
                self.mf.preserve(s, e - s);
                thawed.push((s, e));
            }
        }
        for (s, e) in &thawed {
            self.frozen.remove(*s, *e);
        }
        // Every writable mapping of these pages here gets write back: the
        // faulting one, and (a tmpfs file mapped twice) other direct ones.
        let targets: Vec<Vma> = if v.direct {
            self.vmas
                .values()
                .filter(|w| w.direct && w.prot.write)
                .cloned()
                .collect()
        } else {
            vec![v.clone()]
        };
        for w in &targets {
            let (from, to) = if w.start == v.start {
                (bs, be)
            } else {
                (w.start, w.end)
            };
            for q in self.backing_of(w, from, to) {
                for (s, e) in &thawed {
                    let (s, e) = ((*s).max(q.off), (*e).min(q.off + q.len()));
                    if s >= e {
                        continue;
                    }
                    let at = q.start + (s - q.off);
                    self.aspace
                        .protect(at, e - s, Self::host_prot(w, &q))
                        .map_err(|e| platform_errno("protect", e))?;
                }
            }
        }
        self.remember_resolved(bs, be);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const P: u64 = MF_PAGE_SIZE;

    #[test]
    fn offset_set_insert_remove() {
        let mut s = OffsetSet::default();
        s.insert(0, 4 * P);
        s.insert(8 * P, 10 * P);
        s.insert(4 * P, 5 * P);
        assert_eq!(
            s.intersections(0, 20 * P),
            vec![(0, 5 * P), (8 * P, 10 * P)]
        );
        s.remove(2 * P, 9 * P);
        assert_eq!(
            s.intersections(0, 20 * P),
            vec![(0, 2 * P), (9 * P, 10 * P)]
        );
        assert!(s.contains(P) && !s.contains(2 * P) && s.contains(9 * P));
        s.remove(0, 20 * P);
        assert!(s.is_empty());
    }

    #[test]
    fn snapshot_reads_pages_as_they_were_at_the_freeze() {
        let mf = MemoryFile::new(64 * P).unwrap();
        let a = mf.allocate(8 * P).unwrap();
        for i in 0..8 {
            mf.write_at(a + i * P, &[b'a' + i as u8; 16]).unwrap();
        }
        let snap = mf.begin_freeze().unwrap();
        assert_eq!(mf.begin_freeze().err(), Some(Errno::EBUSY));
        assert_eq!(snap.len(), 8 * P);
        // Written during the save, by every kind of Sentry write.
        mf.write_at(a + 10, b"new").unwrap();
        mf.compare_exchange_u32(a + P, u32::from_ne_bytes([b'b'; 4]), 7)
            .unwrap();
        mf.zero(a + 2 * P + 4, 8).unwrap();
        mf.zero(a + 3 * P, P).unwrap();
        mf.pwrite_at(a + 4 * P, b"pw").unwrap();
        // A page freed (punched) during the save, and its offset reused.
        mf.free(a + 7 * P, P).unwrap();
        let again = mf.allocate(P).unwrap();
        assert_eq!(again, a + 7 * P);
        mf.write_at(again, b"reused").unwrap();
        // A page allocated after the freeze is not in the image.
        let late = mf.allocate(P).unwrap();
        mf.write_at(late, b"late").unwrap();

        let mut img = vec![0xffu8; snap.len() as usize];
        snap.read_into(&mf, 0, &mut img[..4 * P as usize]).unwrap();
        snap.read_into(&mf, 4 * P, &mut img[4 * P as usize..])
            .unwrap();
        for i in 0..8u64 {
            let page = &img[(i * P) as usize..][..P as usize];
            assert_eq!(&page[..16], &[b'a' + i as u8; 16], "page {i}");
            assert!(page[16..].iter().all(|b| *b == 0), "page {i}");
        }
        assert_eq!(snap.stats().copied_pages, 6);
        // Once read, writes go straight through and copy nothing.
        mf.write_at(a + 5 * P, b"after").unwrap();
        assert_eq!(snap.stats().copied_pages, 6);
        assert!(snap
            .read_into(&mf, 0, &mut vec![0; 9 * P as usize])
            .is_err());
        mf.end_freeze(&snap);
        assert!(!mf.is_frozen());
        // The live memory has every write.
        let mut b = [0u8; 6];
        mf.read_at(again, &mut b).unwrap();
        assert_eq!(&b, b"reused");
        mf.read_at(a + 10, &mut b[..3]).unwrap();
        assert_eq!(&b[..3], b"new");
    }

    #[test]
    fn a_page_written_after_the_writer_read_it_is_not_copied() {
        let mf = MemoryFile::new(16 * P).unwrap();
        assert_eq!(mf.allocate(4 * P).unwrap(), 0);
        mf.write_at(0, b"x").unwrap();
        let snap = mf.begin_freeze().unwrap();
        let mut buf = vec![0u8; 2 * P as usize];
        snap.read_into(&mf, 0, &mut buf).unwrap();
        mf.write_at(0, b"y").unwrap();
        mf.write_at(2 * P, b"z").unwrap();
        assert_eq!(snap.stats().copied_pages, 1, "only the unread page");
        let mut rest = vec![0u8; 2 * P as usize];
        snap.read_into(&mf, 2 * P, &mut rest).unwrap();
        assert_eq!(buf[0], b'x');
        assert_eq!(rest[0], 0, "the frozen page 2 was zero");
        mf.end_freeze(&snap);
        // A second freeze may begin once the first ended.
        let again = mf.begin_freeze().unwrap();
        mf.end_freeze(&again);
    }

    #[test]
    fn a_large_range_freed_during_the_save_is_kept() {
        let mf = MemoryFile::new(1024 * P).unwrap();
        let n = 600;
        let a = mf.allocate(n * P).unwrap();
        for i in (0..n).filter(|i| i % 3 != 0) {
            mf.write_at(a + i * P + 8, &i.to_le_bytes()).unwrap();
        }
        let snap = mf.begin_freeze().unwrap();
        mf.free(a, n * P).unwrap();
        assert!(mf.data_ranges(a, n * P).unwrap().is_empty(), "punched");
        let stats = snap.stats();
        assert_eq!(stats.copied_pages, n);
        // Zero pages take no room aside.
        assert_eq!(stats.peak_bytes, (n - n.div_ceil(3)) * P);
        let mut img = vec![0u8; snap.len() as usize];
        snap.read_into(&mf, 0, &mut img).unwrap();
        for i in 0..n {
            let mut want = [0u8; 8];
            if i % 3 != 0 {
                want = i.to_le_bytes();
            }
            assert_eq!(img[(i * P + 8) as usize..][..8], want, "page {i}");
        }
        mf.end_freeze(&snap);
    }

    #[test]
    fn writes_racing_the_writer_never_reach_the_image() {
        // Another thread writes every page (through the Sentry's write
        // path, last page first) the moment the image is read (first page
        // first, in one read without the lock): whether a page is read
        // before, during or after its write, the image has it as frozen.
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let mf = Arc::new(MemoryFile::new(4096 * P).unwrap());
        let n = 2048u64;
        let a = mf.allocate(n * P).unwrap();
        for i in 0..n {
            mf.write_at(a + i * P, &vec![(i % 100) as u8 + 1; P as usize])
                .unwrap();
        }
        for _ in 0..5 {
            let snap = mf.begin_freeze().unwrap();
            let go = Arc::new(AtomicBool::new(false));
            let writer = {
                let (mf, go) = (mf.clone(), go.clone());
                std::thread::spawn(move || {
                    while !go.load(SeqCst) {
                        std::hint::spin_loop();
                    }
                    for i in (0..n).rev() {
                        mf.write_at(a + i * P + 100, &[0xee; 64]).unwrap();
                    }
                })
            };
            std::thread::sleep(std::time::Duration::from_millis(5));
            let mut img = vec![0u8; snap.len() as usize];
            go.store(true, SeqCst);
            snap.read_into(&mf, 0, &mut img).unwrap();
            writer.join().unwrap();
            mf.end_freeze(&snap);
            for i in 0..n {
                let page = &img[(i * P) as usize..][..P as usize];
                assert!(
                    page.iter().all(|b| *b == (i % 100) as u8 + 1),
                    "page {i} changed after the freeze"
                );
            }
            // Back to the frozen contents for the next round.
            for i in 0..n {
                mf.write_at(a + i * P + 100, &[(i % 100) as u8 + 1; 64])
                    .unwrap();
            }
        }
    }
}
