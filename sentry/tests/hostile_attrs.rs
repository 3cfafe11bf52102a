//! The records issue 9's fixes added to statefiles (kernel.TaskAttrs,
//! kernel.ProcessAttrs, vfs.FileLocksOf), hostile: each is pushed into the
//! object table of a real checkpoint written before they existed
//! (sentry/fuzz/seeds), and restore's validation must refuse it naming the
//! record, its id and the field. The seeds themselves, which hold none of
//! them, must still load (the defaults stand in: the migration).

use sentry::kernel::attrs::{ProcessAttrsRecord, TaskAttrs};
use sentry::kernel::thread_group::ThreadGroupRecord;
use sentry::kernel::KernelRecord;
use sentry::state::hostile::{restore_validate, ObjectTable};
use sentry::state::validate::{LoadError, SavedKernel};
use sentry::vfs::lock::{FileLockState, FileLocksRecord, LockKind, LockOwner, RecordLock};

const THREADS: &[u8] = include_bytes!("../fuzz/seeds/threads.cryo");

/// The seed without the records this file adds (the seeds are written by
/// today's cryo, which saves them): a statefile from before them.
fn seed() -> ObjectTable {
    let mut t = ObjectTable::from_statefile(THREADS).expect("a seed statefile");
    let k: KernelRecord = t.get(0).expect("kernel record");
    for tgid in k.thread_groups {
        let tg: ThreadGroupRecord = t.get(tgid as u64).expect("thread group");
        let _ = t.remove::<ProcessAttrsRecord>(tgid as u64);
        for tid in tg.tasks {
            let _ = t.remove::<TaskAttrs>(tid as u64);
        }
    }
    t
}

fn validate(t: &ObjectTable) -> Result<SavedKernel, LoadError> {
    restore_validate(&t.to_statefile().expect("re-assembled"))
}

/// The process's tgid and tids, and a saved open file's id.
fn ids(t: &ObjectTable) -> (i32, Vec<i32>, u64) {
    let k: KernelRecord = t.get(0).expect("kernel record");
    let tg: ThreadGroupRecord = t.get(k.thread_groups[0] as u64).expect("thread group");
    let saved = validate(t).expect("the seed validates");
    let file = *saved.files.keys().next().expect("an open file");
    (tg.tgid, tg.tasks.clone(), file)
}

fn assert_refused(t: &ObjectTable, record: &str, id: u64, field: &str, why: &str) {
    match validate(t) {
        Err(LoadError::Invalid(r)) => {
            assert_eq!(
                (r.record, r.id, r.field.as_ref()),
                (record, id, field),
                "{r}"
            );
            assert!(r.why.contains(why), "reason should say {why:?}: {r}");
        }
        Err(other) => panic!("refused, but not as an invalid record: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn a_statefile_without_the_new_records_loads_with_the_defaults() {
    let saved = validate(&seed()).expect("the seed validates");
    assert!(saved.processes[0].process_attrs.is_none());
    assert!(saved.processes[0].task_attrs.is_empty() && saved.file_locks.is_empty());
}

#[test]
fn good_new_records_load() {
    let mut t = seed();
    let (tgid, tids, file) = ids(&t);
    t.push(tgid as u64, &ProcessAttrsRecord::default()).unwrap();
    t.push(tids[0] as u64, &TaskAttrs::for_exe("/bin/x"))
        .unwrap();
    let locks = FileLockState {
        records: vec![RecordLock {
            owner: LockOwner::Process(tgid),
            kind: LockKind::Write,
            start: 0,
            end: 9,
        }],
        flocks: vec![(file, LockKind::Read)],
    };
    t.push(file, &FileLocksRecord { file, locks }).unwrap();
    let saved = validate(&t).expect("accepted");
    assert_eq!(saved.file_locks.len(), 1);
    assert_eq!(saved.processes[0].task_attrs.len(), 1);
}

#[test]
fn hostile_task_attributes_are_refused() {
    let mut t = seed();
    let (_, tids, _) = ids(&t);
    let mut a = TaskAttrs::for_exe("/bin/x");
    a.comm = b"sixteen-bytes-xx".to_vec();
    t.push(tids[0] as u64, &a).unwrap();
    assert_refused(&t, "kernel.TaskAttrs", tids[0] as u64, "attrs", "comm");

    let mut t = seed();
    t.push(4242, &TaskAttrs::for_exe("/bin/x")).unwrap();
    assert_refused(&t, "kernel.TaskAttrs", 4242, "id", "not a saved task");

    let mut t = seed();
    let mut a = TaskAttrs::for_exe("/bin/x");
    a.user_ns = u64::MAX;
    t.push(tids[0] as u64, &a).unwrap();
    assert_refused(&t, "kernel.TaskAttrs", tids[0] as u64, "attrs", "CPU time");
}

#[test]
fn hostile_process_attributes_are_refused() {
    let mut t = seed();
    let (tgid, _, _) = ids(&t);
    let p = ProcessAttrsRecord {
        nice: 99,
        ..ProcessAttrsRecord::default()
    };
    t.push(tgid as u64, &p).unwrap();
    assert_refused(&t, "kernel.ProcessAttrs", tgid as u64, "attrs", "nice");

    let mut t = seed();
    t.push(77, &ProcessAttrsRecord::default()).unwrap();
    assert_refused(&t, "kernel.ProcessAttrs", 77, "id", "not the saved process");
}

#[test]
fn hostile_lock_records_are_refused() {
    let (tgid, _, file) = ids(&seed());
    let write = |owner, start, end| RecordLock {
        owner,
        kind: LockKind::Write,
        start,
        end,
    };
    let push = |locks: FileLockState, id: u64, named: u64| {
        let mut t = seed();
        t.push(id, &FileLocksRecord { file: named, locks }).unwrap();
        t
    };
    // A file no saved description is.
    let t = push(FileLockState::default(), 999, 999);
    assert_refused(&t, "vfs.FileLocksOf", 999, "file", "not a saved open file");
    // Keyed by one file, naming another.
    let t = push(FileLockState::default(), file, file + 1000);
    assert_refused(&t, "vfs.FileLocksOf", file, "file", "not a saved open file");
    // An owner that is not saved.
    let t = push(
        FileLockState {
            records: vec![write(LockOwner::Description(555), 0, 0)],
            flocks: vec![],
        },
        file,
        file,
    );
    assert_refused(&t, "vfs.FileLocksOf", file, "owner", "open file #555");
    let t = push(
        FileLockState {
            records: vec![write(LockOwner::Process(tgid + 1), 0, 0)],
            flocks: vec![],
        },
        file,
        file,
    );
    assert_refused(&t, "vfs.FileLocksOf", file, "owner", "is not saved");
    // Locks the kernel could not have granted.
    let t = push(
        FileLockState {
            records: vec![
                write(LockOwner::Process(tgid), 0, 9),
                write(LockOwner::Description(file), 5, 5),
            ],
            flocks: vec![],
        },
        file,
        file,
    );
    assert_refused(&t, "vfs.FileLocksOf", file, "locks", "conflicts");
    let t = push(
        FileLockState {
            records: vec![write(LockOwner::Process(tgid), 9, 3)],
            flocks: vec![],
        },
        file,
        file,
    );
    assert_refused(&t, "vfs.FileLocksOf", file, "locks", "range");
    let t = push(
        FileLockState {
            records: vec![],
            flocks: vec![(file, LockKind::Write), (file, LockKind::Read)],
        },
        file,
        file,
    );
    assert_refused(&t, "vfs.FileLocksOf", file, "locks", "flock");
}
