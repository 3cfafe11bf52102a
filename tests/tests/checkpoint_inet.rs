//! Checkpoint and restore of inet sockets: the `ckpt_inet` guest (a TCP
//! listener with two connections not accepted yet, one with data queued;
//! an established connection with data queued both ways; a writer child
//! blocked in send with more bytes than the receiver's buffer takes, so
//! bytes sit in its send buffer; a half-closed connection on ::1; a UDP
//! socket with a datagram queued; a netlink socket with a link dump
//! unread; a worker child blocked in recv on a TCP connection) is checkpointed mid-run and restored twice; each
//! restored sandbox carries on and prints what an uninterrupted run
//! prints: the queued connections accepted with their data, every byte
//! of the transfer in order, the half-close, the datagram, and the
//! listener and UDP port still bound.

use std::time::Duration;

use cryo_tests::sandbox::{run_then_checkpoint, saved_objects, CheckpointedRun, Scratch};
use cryo_tests::{guest, Libc};
use sentry::net::inet::state::{
    InetSocketRecord, SavedInetAddr, SavedInetKind, SavedTcp, SavedUdp,
};
use sentry::state::hostile::{restore_validate, ObjectTable};
use sentry::state::validate::LoadError;

const TICKS: &str = "14";
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(30);

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

#[test]
fn inet_sockets_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-inet-");
    let bin = guest("ckpt_inet", Libc::Glibc);

    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &[TICKS], 4, &img, (START, EXIT));
    assert_eq!(reference.len(), 1 + 14 + 12, "{reference:?}");

    // The worker's two ends; the listener, its two clients and their
    // unaccepted server ends; the two-way pair; the transfer's two ends;
    // the half-closed pair; the two UDP sockets.
    assert_eq!(
        saved_objects(&img, "net.InetSocket"),
        15,
        "inet sockets saved"
    );
    assert_eq!(
        saved_objects(&img, "net.NetlinkSocket"),
        1,
        "the netlink socket"
    );
    let run = CheckpointedRun { reference, before };
    run.restores_go_on(&s.root(), &img, &["B", "C"], tick_of, EXIT);

    let file = std::fs::read(img.join(cryo_tests::sandbox::STATEFILE)).expect("the statefile");
    hostile_records_are_refused(&file);
}

fn inet_records(t: &ObjectTable) -> Vec<InetSocketRecord> {
    t.entries
        .iter()
        .filter(|e| e.type_name == "net.InetSocket")
        .map(|e| {
            t.get::<InetSocketRecord>(e.id)
                .expect("an inet socket record")
        })
        .collect()
}

/// Restore's validation of the real statefile with one inet record made
/// hostile: refused, naming the record, its id and the field.
fn hostile_records_are_refused(file: &[u8]) {
    let base = ObjectTable::from_statefile(file).expect("the object table");
    restore_validate(&base.to_statefile_like(file).expect("re-assembled"))
        .expect("the statefile as saved validates");
    let recs = inet_records(&base);
    let pick = |pred: &dyn Fn(&InetSocketRecord) -> bool| {
        recs.iter()
            .find(|r| pred(r))
            .map(|r| r.id)
            .expect("the statefile has such a socket")
    };
    let listener = pick(
        &|r| matches!(&r.kind, SavedInetKind::Tcp(SavedTcp::Listen { pending, .. }) if pending.len() == 2),
    );
    let connected = pick(
        &|r| matches!(&r.kind, SavedInetKind::Tcp(SavedTcp::Established(c)) if c.peer != 0 && !c.tx.is_empty()),
    );
    let udp = pick(&|r| matches!(&r.kind, SavedInetKind::Udp(u) if !u.rx.is_empty()));
    type Edit = Box<dyn Fn(&mut InetSocketRecord)>;
    let cases: Vec<(u64, &str, Edit)> = vec![
        (
            listener,
            "local",
            Box::new(|r| {
                r.local = Some(SavedInetAddr::V4 {
                    ip: [127, 0, 0, 1],
                    port: 0,
                })
            }),
        ),
        (
            listener,
            "local",
            Box::new(|r| {
                r.local = Some(SavedInetAddr::V4 {
                    ip: [10, 1, 2, 3],
                    port: 80,
                })
            }),
        ),
        (listener, "family", Box::new(|r| r.family = 99)),
        (listener, "sndbuf", Box::new(|r| r.sndbuf = 1 << 40)),
        (
            listener,
            "int_opts",
            Box::new(|r| r.int_opts.push((6, 9999, 1))),
        ),
        (
            listener,
            "int_opts",
            Box::new(|r| r.int_opts.push((6, libc::TCP_KEEPCNT, 1000))),
        ),
        (listener, "error", Box::new(|r| r.error = -5)),
        (
            listener,
            "pending",
            Box::new(|r| {
                if let SavedInetKind::Tcp(SavedTcp::Listen { backlog, .. }) = &mut r.kind {
                    *backlog = 0;
                }
            }),
        ),
        (
            listener,
            "backlog",
            Box::new(|r| {
                if let SavedInetKind::Tcp(SavedTcp::Listen { backlog, .. }) = &mut r.kind {
                    *backlog = 1 << 20;
                }
            }),
        ),
        (
            connected,
            "peer",
            Box::new(|r| {
                if let SavedInetKind::Tcp(SavedTcp::Established(c)) = &mut r.kind {
                    c.peer = r.id;
                }
            }),
        ),
        (
            connected,
            "tx",
            Box::new(|r| {
                if let SavedInetKind::Tcp(SavedTcp::Established(c)) = &mut r.kind {
                    c.tx = vec![0; 4 << 20];
                }
            }),
        ),
        (
            connected,
            "remote",
            Box::new(|r| {
                if let SavedInetKind::Tcp(SavedTcp::Established(c)) = &mut r.kind {
                    c.remote = None;
                }
            }),
        ),
        (
            udp,
            "rx.data",
            Box::new(|r| {
                if let SavedInetKind::Udp(SavedUdp { rx, .. }) = &mut r.kind {
                    rx[0].data = vec![0; 70000];
                }
            }),
        ),
        (
            udp,
            "rx.from",
            Box::new(|r| {
                if let SavedInetKind::Udp(SavedUdp { rx, .. }) = &mut r.kind {
                    rx[0].from = SavedInetAddr::V4 {
                        ip: [8, 8, 8, 8],
                        port: 53,
                    };
                }
            }),
        ),
    ];
    for (id, field, f) in cases {
        let mut t = base.clone();
        t.edit::<InetSocketRecord>(id, |r| f(r)).expect("edit");
        let bytes = t.to_statefile_like(file).expect("re-assembled");
        match restore_validate(&bytes) {
            Err(LoadError::Invalid(r)) => assert_eq!(
                (r.record, r.id, r.field.as_ref()),
                ("net.InetSocket", id, field),
                "wrong record or field: {r}"
            ),
            Err(other) => panic!("{field}: refused, but not as an invalid record: {other}"),
            Ok(_) => panic!("{field}: a hostile record was accepted"),
        }
    }
}
