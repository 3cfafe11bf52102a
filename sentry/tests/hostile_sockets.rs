//! Hostile unix-socket records: each test takes the object table of a
//! real checkpoint of ckpt_unix (sentry/fuzz/seeds/sockets.cryo: socket
//! pairs with queued bytes and records, path and abstract listeners with
//! connections not yet accepted, a pipe in flight), makes one socket field
//! hostile, and asserts that restore's validation refuses it naming the
//! record, its id and the field — or, for a record nothing reaches, as an
//! unreferenced object.

use sentry::net::state::{SavedAddr, SavedConn, UnixSocketRecord};
use sentry::state::hostile::{restore_validate, ObjectTable};
use sentry::state::validate::{LoadError, SavedKernel};
use sentry::vfs::state::{FileStateKind, OpenFileState};
use statefile::StatefileError;

const SOCKETS: &[u8] = include_bytes!("../fuzz/seeds/sockets.cryo");

fn seed() -> ObjectTable {
    ObjectTable::from_statefile(SOCKETS).expect("the sockets seed")
}

fn validate(t: &ObjectTable) -> Result<SavedKernel, LoadError> {
    restore_validate(&t.to_statefile().expect("re-assembled"))
}

fn sockets(t: &ObjectTable) -> Vec<UnixSocketRecord> {
    t.entries
        .iter()
        .filter(|e| e.type_name == "net.UnixSocket")
        .map(|e| t.get::<UnixSocketRecord>(e.id).expect("a socket record"))
        .collect()
}

/// The first socket record `pred` picks.
fn pick(t: &ObjectTable, pred: impl Fn(&UnixSocketRecord) -> bool) -> u64 {
    sockets(t)
        .into_iter()
        .find(|r| pred(r))
        .map(|r| r.id)
        .expect("the seed has such a socket")
}

fn edit(t: &mut ObjectTable, id: u64, f: impl FnOnce(&mut UnixSocketRecord)) {
    t.edit::<UnixSocketRecord>(id, f).expect("socket record");
}

fn assert_refused(t: &ObjectTable, record: &str, id: u64, field: &str, why: &str) {
    match validate(t) {
        Err(LoadError::Invalid(r)) => {
            assert_eq!(
                (r.record, r.id, r.field.as_ref()),
                (record, id, field),
                "wrong record or field: {r}"
            );
            assert!(r.why.contains(why), "reason should say {why:?}: {r}");
        }
        Err(other) => panic!("refused, but not as an invalid record: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn the_seed_holds_every_kind_of_socket_state_and_validates() {
    let t = seed();
    let k = validate(&t).expect("the seed validates");
    assert_eq!(k.sockets.len(), sockets(&t).len());
    let all = sockets(&t);
    assert!(all
        .iter()
        .any(|r| r.conn == SavedConn::Listening && !r.pending.is_empty()));
    assert!(all
        .iter()
        .any(|r| r.messages.iter().any(|m| !m.rights.is_empty())));
    assert!(all.iter().any(|r| r.bound_path.is_some()));
    assert!(all.iter().any(|r| r.owns_name));
    assert!(all
        .iter()
        .any(|r| r.messages.iter().any(|m| !m.data.is_empty())));
}

/// A hostile change to one record.
type Edit = Box<dyn Fn(&mut UnixSocketRecord)>;

#[test]
fn a_bad_type_or_state_field_is_refused() {
    let t0 = seed();
    let id = pick(&t0, |r| r.peer != 0);
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("ty", "not a unix socket type", Box::new(|r| r.ty = 99)),
        ("shutdown", "0x9", Box::new(|r| r.shutdown = 9)),
        ("error", "-1", Box::new(|r| r.error = -1)),
        ("sndbuf", "0", Box::new(|r| r.sndbuf = 0)),
        (
            "rcvbuf",
            "18446744073709551615",
            Box::new(|r| r.rcvbuf = u64::MAX),
        ),
        (
            "rcvtimeo_ns",
            "Some(0)",
            Box::new(|r| r.rcvtimeo_ns = Some(0)),
        ),
        (
            "sndtimeo_ns",
            "Some",
            Box::new(|r| r.sndtimeo_ns = Some(u64::MAX)),
        ),
        ("id", "differs", Box::new(|r| r.id += 1000)),
        ("peer", "not saved", Box::new(|r| r.peer = 987_654)),
        (
            "addr",
            "not a sockaddr_un",
            Box::new(|r| r.addr = Some(SavedAddr::Path(b"a\0b".to_vec()))),
        ),
        (
            "addr",
            "not a sockaddr_un",
            Box::new(|r| r.addr = Some(SavedAddr::Abstract(vec![1; 200]))),
        ),
        (
            "owns_name",
            "no abstract name",
            Box::new(|r| {
                r.addr = None;
                r.owns_name = true;
            }),
        ),
        (
            "pending",
            "not listening",
            Box::new(|r| r.pending = vec![1]),
        ),
    ];
    for (field, why, f) in cases {
        let mut t = seed();
        edit(&mut t, id, |r| f(r));
        assert_refused(&t, "net.UnixSocket", id, field, why);
    }
}

#[test]
fn hostile_listen_queues_are_refused() {
    let t0 = seed();
    let l = pick(&t0, |r| {
        r.conn == SavedConn::Listening && !r.pending.is_empty()
    });
    let mut t = seed();
    edit(&mut t, l, |r| r.pending.push(r.id));
    assert_refused(&t, "net.UnixSocket", l, "pending", "socket #");
    let mut t = seed();
    edit(&mut t, l, |r| r.backlog = 1 << 40);
    assert_refused(&t, "net.UnixSocket", l, "backlog", "> 4096");
    let mut t = seed();
    edit(&mut t, l, |r| {
        r.backlog = 0;
        r.pending = vec![r.pending[0]; 1];
        r.pending.push(r.pending[0]);
    });
    assert_refused(&t, "net.UnixSocket", l, "pending", "");
    // A connection queued at two listeners.
    let other = pick(&t0, |r| r.conn == SavedConn::Listening && r.id != l);
    let queued = sockets(&t0)
        .into_iter()
        .find(|r| r.id == l)
        .unwrap()
        .pending[0];
    let mut t = seed();
    edit(&mut t, other, |r| r.pending.push(queued));
    assert!(
        validate(&t).is_err(),
        "a connection pending at two listeners"
    );
    // A pending connection that has a file of its own.
    let mut t = seed();
    let file = t
        .entries
        .iter()
        .find(|e| {
            e.type_name == "vfs.OpenFile"
                && matches!(
                    t.get::<OpenFileState>(e.id).map(|f| f.kind),
                    Ok(FileStateKind::Socket { .. })
                )
        })
        .map(|e| e.id)
        .expect("a socket file");
    t.edit::<OpenFileState>(file, |f| f.kind = FileStateKind::Socket { id: queued })
        .unwrap();
    assert!(
        validate(&t).is_err(),
        "an unaccepted connection with a file"
    );
}

#[test]
fn hostile_messages_are_refused() {
    let t0 = seed();
    let with_rights = pick(&t0, |r| r.messages.iter().any(|m| !m.rights.is_empty()));
    let mut t = seed();
    edit(&mut t, with_rights, |r| {
        r.messages[0].rights = vec![424_242]
    });
    assert_refused(
        &t,
        "net.UnixSocket",
        with_rights,
        "messages.rights",
        "not saved",
    );
    let mut t = seed();
    edit(&mut t, with_rights, |r| {
        r.messages[0].rights = vec![r.messages[0].rights[0]; 254]
    });
    assert_refused(
        &t,
        "net.UnixSocket",
        with_rights,
        "messages.rights",
        "254 files",
    );
    let mut t = seed();
    edit(&mut t, with_rights, |r| r.messages[0].read = 3);
    assert_refused(&t, "net.UnixSocket", with_rights, "messages.read", "of");
    let mut t = seed();
    edit(&mut t, with_rights, |r| r.messages[0].sender = 99_999);
    assert_refused(
        &t,
        "net.UnixSocket",
        with_rights,
        "messages.sender",
        "#99999",
    );
    let mut t = seed();
    edit(&mut t, with_rights, |r| {
        r.messages[0].from = Some(SavedAddr::Path(Vec::new()))
    });
    assert_refused(
        &t,
        "net.UnixSocket",
        with_rights,
        "messages.from",
        "sockaddr_un",
    );
    let mut t = seed();
    edit(&mut t, with_rights, |r| {
        let m = r.messages[0].clone();
        r.messages = vec![m; (1 << 16) + 1];
    });
    assert_refused(
        &t,
        "net.UnixSocket",
        with_rights,
        "messages",
        "65537 messages",
    );
    let mut t = seed();
    edit(&mut t, with_rights, |r| r.closed = true);
    assert_refused(&t, "net.UnixSocket", with_rights, "messages", "released");
    let mut t = seed();
    edit(&mut t, with_rights, |r| {
        r.messages[0].data = vec![0; 8 << 20];
        r.messages[0].read = 0;
        let m = r.messages[0].clone();
        r.messages = vec![m; 4];
    });
    assert_refused(
        &t,
        "net.UnixSocket",
        with_rights,
        "messages",
        "bytes queued",
    );
}

#[test]
fn names_and_files_that_do_not_fit_are_refused() {
    let t0 = seed();
    let bound = pick(&t0, |r| r.bound_path.is_some());
    let mut t = seed();
    edit(&mut t, bound, |r| r.bound_path = Some(b"relative".to_vec()));
    assert_refused(&t, "net.UnixSocket", bound, "bound_path", "absolute");
    let unbound = pick(&t0, |r| r.addr.is_none());
    let mut t = seed();
    edit(&mut t, unbound, |r| r.bound_path = Some(b"/tmp/x".to_vec()));
    assert_refused(&t, "net.UnixSocket", unbound, "bound_path", "not bound");
    // A socket file naming a socket the statefile does not have.
    let mut t = seed();
    let file = t
        .entries
        .iter()
        .find(|e| {
            e.type_name == "vfs.OpenFile"
                && matches!(
                    t.get::<OpenFileState>(e.id).map(|f| f.kind),
                    Ok(FileStateKind::Socket { .. })
                )
        })
        .map(|e| e.id)
        .expect("a socket file");
    t.edit::<OpenFileState>(file, |f| f.kind = FileStateKind::Socket { id: 777_777 })
        .unwrap();
    assert_refused(&t, "vfs.OpenFile", file, "kind", "socket #777777");
    // A socket record nothing reaches.
    let mut t = seed();
    let mut lone: UnixSocketRecord = t.get(unbound).unwrap();
    lone.id = 555_555;
    lone.peer = 0;
    lone.conn = SavedConn::Unconnected;
    lone.messages.clear();
    lone.pending.clear();
    t.push(555_555, &lone).unwrap();
    match validate(&t) {
        Err(LoadError::Statefile(StatefileError::UnreferencedObject { type_name, id })) => {
            assert_eq!((type_name.as_str(), id), ("net.UnixSocket", 555_555));
        }
        other => panic!("expected an unreferenced socket, got {other:?}"),
    }
}
