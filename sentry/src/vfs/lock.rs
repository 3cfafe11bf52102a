//! Advisory file locks (Linux's fs/locks.c): POSIX record locks (fcntl
//! F_SETLK/F_SETLKW/F_GETLK, owned by a process), open file description
//! locks (F_OFD_*, owned by an open file description) and flock(2) locks
//! (whole-file, owned by an open file description).
//!
//! Locks belong to a file, not to an open file: two descriptions of one
//! file see each other's locks. A file is keyed by its (st_dev, st_ino), so
//! it does not matter through which dentry or mount it was opened. Record
//! locks of both kinds live in one list per file and conflict with each
//! other whenever their owners differ (an OFD lock conflicts with a POSIX
//! lock of the same process, as on Linux); flock locks are a separate list
//! and never conflict with record locks.
//!
//! Ranges are inclusive byte ranges `start..=end`, `end` at most
//! [`OFFSET_MAX`] (a lock "to EOF" reaches it, however the file grows).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// The largest offset a lock reaches (Linux's OFFSET_MAX).
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// How many hops the deadlock walk follows (Linux's MAX_DEADLK_ITERATIONS).
const MAX_DEADLOCK_HOPS: usize = 10;

/// How often a blocked F_SETLKW or flock looks at its interrupt.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// A file, as locks know it: (st_dev, st_ino).
pub type FileKey = (u64, u64);

/// Who holds a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockOwner {
    /// A POSIX lock: the process (its tgid).
    Process(i32),
    /// An OFD or flock lock: the open file description (its sandbox id).
    Description(u64),
}
statefile::versioned!(LockOwner, "vfs.LockOwner", 1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// Shared: F_RDLCK, LOCK_SH.
    Read,
    /// Exclusive: F_WRLCK, LOCK_EX.
    Write,
}
statefile::versioned!(LockKind, "vfs.LockKind", 1);

/// One record lock: `start..=end` of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLock {
    pub owner: LockOwner,
    pub kind: LockKind,
    pub start: u64,
    pub end: u64,
}
statefile::versioned!(RecordLock, "vfs.RecordLock", 1, [LockOwner, LockKind]);

impl RecordLock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    fn conflicts(&self, owner: LockOwner, kind: LockKind, start: u64, end: u64) -> bool {
        self.owner != owner
            && self.overlaps(start, end)
            && (self.kind == LockKind::Write || kind == LockKind::Write)
    }
}

/// A file's locks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLockState {
    /// Record locks, POSIX and OFD: per owner, disjoint and merged.
    pub records: Vec<RecordLock>,
    /// flock(2) locks: (open file description, kind).
    pub flocks: Vec<(u64, LockKind)>,
}
statefile::versioned!(FileLockState, "vfs.FileLocks", 1, [RecordLock, LockKind]);

impl FileLockState {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.flocks.is_empty()
    }

    fn conflict(
        &self,
        owner: LockOwner,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<RecordLock> {
        self.records
            .iter()
            .find(|l| l.conflicts(owner, kind, start, end))
            .copied()
    }

    /// Makes `owner`'s locks over `start..=end` be `kind` (None: none),
    /// splitting what sticks out and merging adjacent same-kind ranges, as
    /// POSIX requires of one owner's locks.
    fn apply(&mut self, owner: LockOwner, kind: Option<LockKind>, start: u64, end: u64) {
        let mut mine: Vec<RecordLock> = Vec::new();
        self.records.retain(|l| {
            if l.owner == owner {
                mine.push(*l);
                false
            } else {
                true
            }
        });
        let mut kept: Vec<RecordLock> = Vec::new();
        for l in mine {
            if !l.overlaps(start, end) {
                kept.push(l);
                continue;
            }
            if l.start < start {
                kept.push(RecordLock {
                    end: start - 1,
                    ..l
                });
            }
            if l.end > end {
                kept.push(RecordLock {
                    start: end + 1,
                    ..l
                });
            }
        }
        if let Some(kind) = kind {
            kept.push(RecordLock {
                owner,
                kind,
                start,
                end,
            });
        }
        kept.sort_by_key(|l| l.start);
        let mut merged: Vec<RecordLock> = Vec::new();
        for l in kept {
            match merged.last_mut() {
                Some(prev) if prev.kind == l.kind && prev.end.saturating_add(1) >= l.start => {
                    prev.end = prev.end.max(l.end);
                }
                _ => merged.push(l),
            }
        }
        self.records.extend(merged);
    }
}

/// A blocked F_SETLKW: which process waits, on a lock of which owner.
struct Blocked {
    waiter: u64,
    owner: i32,
    blocker: LockOwner,
}

#[derive(Default)]
struct State {
    files: HashMap<FileKey, FileLockState>,
    blocked: Vec<Blocked>,
    next_waiter: u64,
}

impl State {
    /// Whether `owner` waiting for `blocker` closes a cycle of POSIX
    /// owners each waiting for the next (Linux's posix_locks_deadlock).
    fn deadlocks(&self, owner: i32, mut blocker: LockOwner) -> bool {
        for _ in 0..MAX_DEADLOCK_HOPS {
            let LockOwner::Process(b) = blocker else {
                return false;
            };
            if b == owner {
                return true;
            }
            match self.blocked.iter().find(|w| w.owner == b) {
                Some(w) => blocker = w.blocker,
                None => return false,
            }
        }
        false
    }

    fn tidy(&mut self, key: FileKey) {
        if self.files.get(&key).is_some_and(FileLockState::is_empty) {
            self.files.remove(&key);
        }
    }
}

/// What a blocking lock request asks of its caller while it waits: Err
/// (EINTR, a restart) ends the wait.
pub type WaitCheck<'a> = &'a dyn Fn() -> Result<(), Errno>;

/// Every lock of the sandbox.
#[derive(Default)]
pub struct FileLocks {
    state: Mutex<State>,
    changed: Condvar,
}

impl FileLocks {
    pub fn new() -> Arc<FileLocks> {
        Arc::new(FileLocks::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// F_GETLK: the first lock that would keep `owner` from locking
    /// `start..=end` as `kind`.
    pub fn test(
        &self,
        key: FileKey,
        owner: LockOwner,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<RecordLock> {
        self.state()
            .files
            .get(&key)
            .and_then(|f| f.conflict(owner, kind, start, end))
    }

    /// F_SETLK (`wait` None) and F_SETLKW: locks `start..=end` as `kind`
    /// for `owner`, or unlocks it (`kind` None, which never waits). A
    /// conflict is EAGAIN without `wait`; with it the caller sleeps until
    /// the conflict is gone or `wait` says stop, and gets EDEADLK instead
    /// if the owner it waits for (transitively) waits for it.
    pub fn set(
        &self,
        key: FileKey,
        owner: LockOwner,
        kind: Option<LockKind>,
        start: u64,
        end: u64,
        wait: Option<WaitCheck<'_>>,
    ) -> Result<(), Errno> {
        if start > end || end > OFFSET_MAX {
            return Err(Errno::EINVAL);
        }
        let mut st = self.state();
        let mut waiter = None;
        let result = loop {
            let conflict = match kind {
                Some(k) => st
                    .files
                    .get(&key)
                    .and_then(|f| f.conflict(owner, k, start, end)),
                None => None,
            };
            let Some(conflict) = conflict else {
                st.files
                    .entry(key)
                    .or_default()
                    .apply(owner, kind, start, end);
                st.tidy(key);
                break Ok(());
            };
            let Some(check) = wait else {
                break Err(Errno::EAGAIN);
            };
            if let LockOwner::Process(me) = owner {
                // Re-checked on every wake-up: the chain may have formed
                // while this request slept.
                if st.deadlocks(me, conflict.owner) {
                    break Err(Errno::EDEADLK);
                }
                let id = match waiter {
                    Some(id) => id,
                    None => {
                        st.next_waiter += 1;
                        let id = st.next_waiter;
                        waiter = Some(id);
                        id
                    }
                };
                st.blocked.retain(|w| w.waiter != id);
                st.blocked.push(Blocked {
                    waiter: id,
                    owner: me,
                    blocker: conflict.owner,
                });
            }
            if let Err(e) = check() {
                break Err(e);
            }
            st = self
                .changed
                .wait_timeout(st, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        if let Some(id) = waiter {
            st.blocked.retain(|w| w.waiter != id);
        }
        drop(st);
        if result.is_ok() {
            self.changed.notify_all();
        }
        result
    }

    /// flock(2) for open file description `desc`: LOCK_SH/LOCK_EX (`kind`)
    /// or LOCK_UN (None). Converting a held lock drops it first, as Linux
    /// does, so a conversion that must wait holds nothing meanwhile.
    pub fn flock(
        &self,
        key: FileKey,
        desc: u64,
        kind: Option<LockKind>,
        wait: Option<WaitCheck<'_>>,
    ) -> Result<(), Errno> {
        let mut st = self.state();
        let had = {
            let f = st.files.entry(key).or_default();
            let had = f.flocks.iter().find(|(d, _)| *d == desc).map(|(_, k)| *k);
            if had == kind {
                return Ok(());
            }
            f.flocks.retain(|(d, _)| *d != desc);
            had
        };
        if had.is_some() {
            self.changed.notify_all();
        }
        let Some(kind) = kind else {
            st.tidy(key);
            return Ok(());
        };
        let result = loop {
            let f = st.files.entry(key).or_default();
            let busy = f
                .flocks
                .iter()
                .any(|(_, k)| *k == LockKind::Write || kind == LockKind::Write);
            if !busy {
                f.flocks.push((desc, kind));
                break Ok(());
            }
            let Some(check) = wait else {
                break Err(Errno::EAGAIN);
            };
            if let Err(e) = check() {
                break Err(e);
            }
            st = self
                .changed
                .wait_timeout(st, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        st.tidy(key);
        result
    }

    /// Whether `owner` holds any record lock (closing a descriptor need not
    /// look the file up otherwise).
    pub fn holds_any(&self, owner: LockOwner) -> bool {
        self.state()
            .files
            .values()
            .any(|f| f.records.iter().any(|l| l.owner == owner))
    }

    /// A process closed a descriptor of `key`: its POSIX locks on the file
    /// go, whichever descriptor took them (POSIX's rule).
    pub fn release_process_file(&self, key: FileKey, tgid: i32) {
        let mut st = self.state();
        let Some(f) = st.files.get_mut(&key) else {
            return;
        };
        let before = f.records.len();
        f.records.retain(|l| l.owner != LockOwner::Process(tgid));
        let changed = f.records.len() != before;
        st.tidy(key);
        drop(st);
        if changed {
            self.changed.notify_all();
        }
    }

    /// A process exited: every POSIX lock it held goes.
    pub fn release_process(&self, tgid: i32) {
        let mut st = self.state();
        for f in st.files.values_mut() {
            f.records.retain(|l| l.owner != LockOwner::Process(tgid));
        }
        st.files.retain(|_, f| !f.is_empty());
        st.blocked.retain(|w| w.owner != tgid);
        drop(st);
        self.changed.notify_all();
    }

    /// The last descriptor of open file description `desc` closed: its OFD
    /// and flock locks go.
    pub fn release_description(&self, key: FileKey, desc: u64) {
        let mut st = self.state();
        let Some(f) = st.files.get_mut(&key) else {
            return;
        };
        f.records
            .retain(|l| l.owner != LockOwner::Description(desc));
        f.flocks.retain(|(d, _)| *d != desc);
        st.tidy(key);
        drop(st);
        self.changed.notify_all();
    }

    /// The locks of every file, for a checkpoint.
    pub fn snapshot(&self) -> Vec<(FileKey, FileLockState)> {
        let mut v: Vec<_> = self
            .state()
            .files
            .iter()
            .map(|(k, f)| (*k, f.clone()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Installs restored locks on `key` (a validated record's).
    pub fn install(&self, key: FileKey, locks: &FileLockState) {
        let mut st = self.state();
        let f = st.files.entry(key).or_default();
        for l in &locks.records {
            f.apply(l.owner, Some(l.kind), l.start, l.end);
        }
        for &(d, k) in &locks.flocks {
            if !f.flocks.iter().any(|(x, _)| *x == d) {
                f.flocks.push((d, k));
            }
        }
        st.tidy(key);
    }
}

/// Process `tgid` closed a descriptor of `f`: its POSIX locks on the file
/// go, whichever descriptor took them (POSIX's rule, Linux's
/// locks_remove_posix). Cheap when the process holds no lock.
pub fn closed_by(locks: &FileLocks, tgid: i32, f: &super::OpenFile) {
    if locks.holds_any(LockOwner::Process(tgid)) {
        if let Ok(key) = f.lock_key() {
            locks.release_process_file(key, tgid);
        }
    }
}

/// One file's locks as a statefile holds them, keyed by the id of an open
/// file description of the file (`file`): the file is found again by
/// re-opening that description, and OFD and flock owners name saved open
/// file descriptions too (POSIX owners are pids, which restore keeps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLocksRecord {
    pub file: u64,
    pub locks: FileLockState,
}
statefile::savable_serde!(FileLocksRecord, "vfs.FileLocksOf", 1, [FileLockState]);

impl FileLockState {
    /// The same locks with every open file description owner renamed by
    /// `rename` (None: that owner's locks are dropped).
    pub fn rename_descriptions(&self, rename: &dyn Fn(u64) -> Option<u64>) -> FileLockState {
        let records = self
            .records
            .iter()
            .filter_map(|l| match l.owner {
                LockOwner::Description(d) => rename(d).map(|d| RecordLock {
                    owner: LockOwner::Description(d),
                    ..*l
                }),
                LockOwner::Process(_) => Some(*l),
            })
            .collect();
        let flocks = self
            .flocks
            .iter()
            .filter_map(|&(d, k)| rename(d).map(|d| (d, k)))
            .collect();
        FileLockState { records, flocks }
    }

    /// Every open file description that owns a lock here.
    pub fn descriptions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .records
            .iter()
            .filter_map(|l| match l.owner {
                LockOwner::Description(d) => Some(d),
                LockOwner::Process(_) => None,
            })
            .chain(self.flocks.iter().map(|(d, _)| *d))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every process that owns a POSIX lock here.
    pub fn processes(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .records
            .iter()
            .filter_map(|l| match l.owner {
                LockOwner::Process(p) => Some(p),
                LockOwner::Description(_) => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Why a saved lock table was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockRecordError {
    #[error("lock {index}: range {start}..={end} is empty or beyond OFFSET_MAX")]
    Range { index: usize, start: u64, end: u64 },
    #[error("lock {index}: overlaps another lock of the same owner")]
    Overlap { index: usize },
    #[error("lock {index}: conflicts with another owner's lock")]
    Conflict { index: usize },
    #[error("flock {index}: a second flock lock of one description, or a conflicting one")]
    Flock { index: usize },
}

impl FileLockState {
    /// A loaded lock list must be one the kernel could have built: ranges in
    /// bounds, one owner's ranges disjoint, no two owners in conflict.
    pub fn validate(&self) -> Result<(), LockRecordError> {
        for (index, l) in self.records.iter().enumerate() {
            if l.start > l.end || l.end > OFFSET_MAX {
                return Err(LockRecordError::Range {
                    index,
                    start: l.start,
                    end: l.end,
                });
            }
            for other in &self.records[..index] {
                if other.owner == l.owner && other.overlaps(l.start, l.end) {
                    return Err(LockRecordError::Overlap { index });
                }
                if other.conflicts(l.owner, l.kind, l.start, l.end) {
                    return Err(LockRecordError::Conflict { index });
                }
            }
        }
        for (index, (d, k)) in self.flocks.iter().enumerate() {
            let bad = self.flocks[..index]
                .iter()
                .any(|(x, xk)| x == d || *xk == LockKind::Write || *k == LockKind::Write);
            if bad {
                return Err(LockRecordError::Flock { index });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockKind::{Read, Write};
    use LockOwner::{Description, Process};

    const F: FileKey = (1, 2);

    fn ranges(l: &FileLocks, owner: LockOwner) -> Vec<(LockKind, u64, u64)> {
        let snap = l.snapshot();
        let mut v: Vec<_> = snap
            .iter()
            .flat_map(|(_, f)| f.records.iter())
            .filter(|r| r.owner == owner)
            .map(|r| (r.kind, r.start, r.end))
            .collect();
        v.sort_by_key(|r| r.1);
        v
    }

    #[test]
    fn one_owner_splits_and_merges() {
        let l = FileLocks::default();
        l.set(F, Process(1), Some(Write), 0, 99, None).unwrap();
        l.set(F, Process(1), Some(Read), 10, 19, None).unwrap();
        assert_eq!(
            ranges(&l, Process(1)),
            vec![(Write, 0, 9), (Read, 10, 19), (Write, 20, 99)]
        );
        l.set(F, Process(1), Some(Write), 10, 19, None).unwrap();
        assert_eq!(ranges(&l, Process(1)), vec![(Write, 0, 99)]);
        l.set(F, Process(1), None, 50, OFFSET_MAX, None).unwrap();
        assert_eq!(ranges(&l, Process(1)), vec![(Write, 0, 49)]);
        // Adjacent same-kind ranges become one.
        l.set(F, Process(1), Some(Write), 50, 60, None).unwrap();
        assert_eq!(ranges(&l, Process(1)), vec![(Write, 0, 60)]);
        l.set(F, Process(1), None, 0, OFFSET_MAX, None).unwrap();
        assert!(l.snapshot().is_empty(), "an unlocked file leaves no entry");
    }

    #[test]
    fn owners_conflict_on_writes_only() {
        let l = FileLocks::default();
        l.set(F, Process(1), Some(Read), 0, 9, None).unwrap();
        l.set(F, Process(2), Some(Read), 5, 15, None).unwrap();
        assert_eq!(
            l.set(F, Process(2), Some(Write), 5, 15, None),
            Err(Errno::EAGAIN)
        );
        // An OFD lock conflicts with the same process's POSIX lock.
        assert_eq!(
            l.set(F, Description(7), Some(Write), 0, 0, None),
            Err(Errno::EAGAIN)
        );
        let c = l.test(F, Process(3), Write, 9, 9).unwrap();
        assert_eq!(c.owner, Process(1));
        assert_eq!(l.test(F, Process(1), Write, 0, 4), None);
        assert_eq!(l.test(F, Process(3), Write, 16, 100), None);
        l.release_process(1);
        l.release_process_file(F, 2);
        assert!(l.snapshot().is_empty());
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_is_released_and_deadlocks_are_found() {
        let l = Arc::new(FileLocks::default());
        l.set(F, Process(1), Some(Write), 0, 0, None).unwrap();
        l.set(F, Process(2), Some(Write), 1, 1, None).unwrap();
        let l2 = l.clone();
        let ok = || Ok(());
        let h = std::thread::spawn(move || {
            let ok = || Ok(());
            // 2 waits for 1's byte 0.
            l2.set(F, Process(2), Some(Write), 0, 0, Some(&ok))
        });
        // Give 2 time to block, then 1 asks for 2's byte 1: a cycle.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while l.state().blocked.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            l.set(F, Process(1), Some(Write), 1, 1, Some(&ok)),
            Err(Errno::EDEADLK)
        );
        l.set(F, Process(1), None, 0, OFFSET_MAX, None).unwrap();
        assert_eq!(h.join().unwrap(), Ok(()));
        assert_eq!(ranges(&l, Process(2)), vec![(Write, 0, 1)]);
    }

    #[test]
    fn a_wait_ends_when_the_check_says_so() {
        let l = FileLocks::default();
        l.set(F, Process(1), Some(Write), 0, 0, None).unwrap();
        let intr = || Err(Errno::EINTR);
        assert_eq!(
            l.set(F, Process(2), Some(Read), 0, 0, Some(&intr)),
            Err(Errno::EINTR)
        );
        assert!(l.state().blocked.is_empty());
    }

    #[test]
    fn flock_is_per_description_and_apart_from_record_locks() {
        let l = FileLocks::default();
        l.set(F, Process(1), Some(Write), 0, OFFSET_MAX, None)
            .unwrap();
        l.flock(F, 10, Some(Read), None).unwrap();
        l.flock(F, 11, Some(Read), None).unwrap();
        assert_eq!(l.flock(F, 12, Some(Write), None), Err(Errno::EAGAIN));
        // 10 converting to exclusive while 11 shares: refused, and 10's
        // shared lock is gone (Linux drops it before trying).
        assert_eq!(l.flock(F, 10, Some(Write), None), Err(Errno::EAGAIN));
        l.release_description(F, 11);
        l.flock(F, 12, Some(Write), None).unwrap();
        l.flock(F, 12, None, None).unwrap();
        l.release_process(1);
        assert!(l.snapshot().is_empty());
    }

    #[test]
    fn saved_tables_are_validated_and_reinstalled() {
        let l = FileLocks::default();
        l.set(F, Process(1), Some(Write), 0, 9, None).unwrap();
        l.set(F, Description(4), Some(Read), 20, OFFSET_MAX, None)
            .unwrap();
        l.flock(F, 4, Some(Read), None).unwrap();
        let snap = l.snapshot();
        for (_, f) in &snap {
            f.validate().unwrap();
        }
        let back = FileLocks::default();
        for (k, f) in &snap {
            back.install(*k, f);
        }
        assert_eq!(back.snapshot(), snap);

        let mut bad = snap[0].1.clone();
        bad.records.push(RecordLock {
            owner: Process(2),
            kind: Write,
            start: 5,
            end: 5,
        });
        assert_eq!(bad.validate(), Err(LockRecordError::Conflict { index: 2 }));
        let mut bad = snap[0].1.clone();
        bad.records[0].end = OFFSET_MAX + 1;
        assert!(matches!(bad.validate(), Err(LockRecordError::Range { .. })));
        let mut bad = snap[0].1.clone();
        bad.flocks.push((5, Write));
        assert_eq!(bad.validate(), Err(LockRecordError::Flock { index: 1 }));
    }
}
