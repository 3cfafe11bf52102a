//! Hostile pseudo-terminal records: each field of a saved `vfs.Pty` (and
//! the open files naming its ends) that a statefile could carry wrong is
//! refused by name before anything is restored. The base is the object
//! table of a checkpoint of `ckpt_pty` (sentry/fuzz/seeds/pty.cryo: init
//! holding the master, a session with the replica as its controlling
//! terminal, a foreground job, unread input).

use sentry::state::hostile::{restore_validate, ObjectTable};
use sentry::state::validate::{InvalidRecord, LoadError};
use sentry::vfs::pty::PtySnapshot;
use sentry::vfs::state::{FileStateKind, OpenFileState};
use statefile::StatefileError;

const PTY: &[u8] = include_bytes!("../fuzz/seeds/pty.cryo");

fn seed() -> ObjectTable {
    ObjectTable::from_statefile(PTY).expect("the pty seed")
}

fn refusal(t: &ObjectTable) -> Result<InvalidRecord, String> {
    match restore_validate(&t.to_statefile().expect("re-assembled")) {
        Err(LoadError::Invalid(r)) => Ok(r),
        Err(other) => Err(format!("refused, not as an invalid record: {other}")),
        Ok(_) => Err("accepted".into()),
    }
}

fn assert_refused(t: &ObjectTable, record: &str, id: u64, field: &str, why: &str) {
    let r = refusal(t).unwrap_or_else(|e| panic!("{field}: {e}"));
    assert_eq!(
        (r.record, r.id, r.field.as_ref()),
        (record, id, field),
        "wrong record or field: {r}"
    );
    assert!(r.why.contains(why), "reason should say {why:?}: {r}");
}

/// The seed's one terminal.
fn pty_id(t: &ObjectTable) -> u64 {
    let ids: Vec<u64> = t
        .entries
        .iter()
        .filter(|e| e.type_name == "vfs.Pty")
        .map(|e| e.id)
        .collect();
    assert_eq!(ids.len(), 1, "the seed holds one pty");
    ids[0]
}

/// The open files naming an end of the terminal: (id, master).
fn ends(t: &ObjectTable) -> Vec<(u64, bool)> {
    t.entries
        .iter()
        .filter(|e| e.type_name == "vfs.OpenFile")
        .filter_map(|e| {
            let f: OpenFileState = t.get(e.id).ok()?;
            match f.kind {
                FileStateKind::Pty { master, .. } => Some((e.id, master)),
                _ => None,
            }
        })
        .collect()
}

fn edit_pty(t: &mut ObjectTable, f: impl FnOnce(&mut PtySnapshot)) {
    let id = pty_id(t);
    t.edit::<PtySnapshot>(id, f).expect("the pty record");
}

#[test]
fn the_seed_holds_a_session_a_foreground_job_and_unread_input() {
    let t = seed();
    let k = restore_validate(PTY).expect("the seed validates");
    assert_eq!(k.ptys.len(), 1);
    let p = &k.ptys[0];
    assert!(p.state.session > 1, "a session other than init's: {p:?}");
    assert!(
        p.state.pgrp > p.state.session,
        "the job's group leads: {p:?}"
    );
    assert!(!p.state.ld.lines.is_empty(), "unread lines");
    assert!(!p.state.ld.edit.is_empty(), "a line being edited");
    assert!(!p.state.hung_up && !p.state.locked);
    let e = ends(&t);
    assert_eq!(e.iter().filter(|(_, m)| *m).count(), 1, "{e:?}");
    assert!(e.iter().any(|(_, m)| !*m), "{e:?}");
}

#[test]
fn an_index_other_than_the_records_or_out_of_range_is_refused() {
    let mut t = seed();
    let id = pty_id(&t);
    edit_pty(&mut t, |p| p.index += 1);
    assert_refused(&t, "vfs.Pty", id, "index", "differs");

    // Re-keyed consistently but beyond the limit: the record and its
    // files all say 5000.
    let mut t = seed();
    edit_pty(&mut t, |p| p.index = 5000);
    for e in t.entries.iter_mut().filter(|e| e.type_name == "vfs.Pty") {
        e.id = 5000;
    }
    for (f, _) in ends(&t) {
        t.edit::<OpenFileState>(f, |s| {
            if let FileStateKind::Pty { index, .. } = &mut s.kind {
                *index = 5000;
            }
        })
        .unwrap();
    }
    assert_refused(&t, "vfs.Pty", 5000, "index", "5000");
}

#[test]
fn sessions_groups_and_detached_pids_out_of_range_are_refused() {
    for (field, edit) in [
        (
            "state.session",
            Box::new(|p: &mut PtySnapshot| p.state.session = -3) as Box<dyn Fn(&mut PtySnapshot)>,
        ),
        ("state.session", Box::new(|p| p.state.pgrp = i32::MAX)),
        ("state.session", Box::new(|p| p.state.session = 1 << 30)),
        (
            "state.pgrp",
            Box::new(|p| {
                p.state.session = 0;
                p.state.pgrp = 7;
            }),
        ),
        (
            "state.detached",
            Box::new(|p| {
                p.state.detached.insert(0);
            }),
        ),
        (
            "state.detached",
            Box::new(|p| {
                p.state.detached.insert(-9);
            }),
        ),
    ] {
        let mut t = seed();
        let id = pty_id(&t);
        edit_pty(&mut t, edit);
        let r = refusal(&t).unwrap_or_else(|e| panic!("{field}: {e}"));
        assert_eq!(
            (r.record, r.id, r.field.as_ref()),
            ("vfs.Pty", id, field),
            "{r}"
        );
    }
}

#[test]
fn queues_beyond_the_line_disciplines_limits_are_refused() {
    let id = pty_id(&seed());
    let mut t = seed();
    edit_pty(&mut t, |p| p.state.ld.edit = vec![b'a'; 5000]);
    assert_refused(&t, "vfs.Pty", id, "state.ld", "queued");
    let mut t = seed();
    edit_pty(&mut t, |p| p.state.ld.out = vec![b'x'; 1 << 20].into());
    assert_refused(&t, "vfs.Pty", id, "state.ld", "queued");
    let mut t = seed();
    edit_pty(&mut t, |p| {
        p.state.ld.raw = b"both".iter().copied().collect()
    });
    assert_refused(&t, "vfs.Pty", id, "state.ld", "both");
}

#[test]
fn open_and_closed_flags_must_agree_with_the_files() {
    let id = pty_id(&seed());
    let mut t = seed();
    edit_pty(&mut t, |p| p.state.hung_up = true);
    assert_refused(&t, "vfs.Pty", id, "state.hung_up", "1 master");
    let mut t = seed();
    edit_pty(&mut t, |p| p.state.replica_closed = true);
    assert_refused(&t, "vfs.Pty", id, "state.replica_closed", "replica");
    // A replica saved as a second master.
    let mut t = seed();
    let (replica, _) = *ends(&t).iter().find(|(_, m)| !*m).unwrap();
    t.edit::<OpenFileState>(replica, |s| {
        if let FileStateKind::Pty { master, .. } = &mut s.kind {
            *master = true;
        }
    })
    .unwrap();
    assert_refused(&t, "vfs.Pty", id, "index", "2 master");
}

#[test]
fn a_file_naming_a_missing_pty_and_a_pty_no_file_names_are_refused() {
    let mut t = seed();
    let id = pty_id(&t);
    let (f, _) = ends(&t)[0];
    t.edit::<OpenFileState>(f, |s| {
        if let FileStateKind::Pty { index, .. } = &mut s.kind {
            *index = 77;
        }
    })
    .unwrap();
    assert_refused(&t, "vfs.OpenFile", f, "kind", "pty #77");

    let mut t = seed();
    let mut p: PtySnapshot = t.get(id).unwrap();
    p.index = 9;
    t.push(9, &p).unwrap();
    match restore_validate(&t.to_statefile().unwrap()) {
        Err(LoadError::Statefile(StatefileError::UnreferencedObject { type_name, id })) => {
            assert_eq!((type_name.as_str(), id), ("vfs.Pty", 9));
        }
        other => panic!("an unreferenced pty: {other:?}"),
    }

    let mut t = seed();
    t.edit::<OpenFileState>(f, |s| s.path = b"relative/0".to_vec())
        .unwrap();
    assert_refused(&t, "vfs.OpenFile", f, "path", "not absolute");
}

/// Random mutation programs (the fuzz target's input, from a fixed
/// generator) over the pty seed: every one is accepted or refused, none
/// panics, and an accepted one still holds a terminal that passes its
/// checks.
#[test]
fn random_mutations_of_the_pty_seed_never_panic() {
    let t = seed();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..400 {
        let len = (next() % 64) as usize;
        let program: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match sentry::state::hostile::run_case(&t, &program) {
            Ok(k) => {
                for p in &k.ptys {
                    assert_eq!(p.check(), Ok(()), "an accepted pty passes its checks");
                }
                accepted += 1;
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}
