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
    InetSocketRecord, SavedDatagram, SavedInetAddr, SavedInetKind, SavedTcp, SavedUdp,
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

/// A ping socket (bound identifier, connected address, SO_RCVBUF, one
/// echo reply queued unread), a written net.ipv4.ping_group_range and a
/// TCP port in TIME_WAIT are checkpointed; each of two restores reads
/// the queued reply from the address pinged, finds no other, pings
/// again, reads the range back, sees the same name, peer and option,
/// and still gets EADDRINUSE binding the TIME_WAIT port without
/// SO_REUSEADDR, as before the checkpoint.
#[test]
fn a_ping_socket_range_and_time_wait_port_restored_twice() {
    use cryo_tests::sandbox::{checkpoint, Sandbox, STATEFILE};
    let s = Scratch::new("cryo-ping-");
    let prog = r#"
import errno, signal, socket, struct
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
open("/proc/sys/net/ipv4/ping_group_range", "w").write("0 0")
p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
p.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
p.bind(("0.0.0.0", 4242))
p.connect(("127.0.0.2", 0))
def echo(seq, payload):
    p.send(struct.pack("!BBHHH", 8, 0, 0, 0, seq) + payload)
def reply():
    data, frm = p.recvfrom(100)
    typ, code, _, ident, seq = struct.unpack("!BBHHH", data[:8])
    return f"{typ} {code} {ident} {seq} {data[8:].decode()} {frm}"
def state():
    rcvbuf = p.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return f"name={p.getsockname()} peer={p.getpeername()} rcvbuf={rcvbuf}"
echo(1, b"before")
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
port = l.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port))
a, _ = l.accept()
a.close()
c.close()
l.close()
def try_bind():
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
        return "bound"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        t.close()
print("ready", try_bind(), state(), flush=True)
signal.sigwait({signal.SIGUSR1})
p.setblocking(False)
print("queued", reply())
try:
    p.recvfrom(100)
    print("another reply")
except BlockingIOError:
    print("no other reply")
echo(2, b"after")
print("again", reply())
print("range", open("/proc/sys/net/ipv4/ping_group_range").read().split())
print("time_wait", try_bind())
print("after", state(), flush=True)
"#;
    let mut sb = Sandbox::run(&s.root(), "P", "/usr/bin/python3".as_ref(), &["-c", prog]);
    sb.wait_lines(1, START);
    let ready = sb.lines()[0].clone();
    assert!(
        ready
            .starts_with("ready EADDRINUSE name=('127.0.0.1', 4242) peer=('127.0.0.2', 0) rcvbuf="),
        "{ready}"
    );
    let state = ready
        .strip_prefix("ready EADDRINUSE ")
        .expect("the state")
        .to_string();
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "P", &["--leave-running"]);
    assert_eq!(
        out.code,
        0,
        "checkpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(img.join(STATEFILE).exists(), "no statefile");
    sb.kill();
    assert_eq!(
        saved_objects(&img, "net.InetStack"),
        1,
        "the stack's record"
    );
    let want = [
        "queued 0 0 4242 1 before ('127.0.0.2', 0)".to_string(),
        "no other reply".to_string(),
        "again 0 0 4242 2 after ('127.0.0.2', 0)".to_string(),
        "range ['0', '0']".to_string(),
        "time_wait EADDRINUSE".to_string(),
        format!("after {state}"),
    ];
    for id in ["B", "C"] {
        let mut b = Sandbox::restore(&s.root(), &img, id);
        // The restored program waits in sigwait for SIGUSR1, which cryo
        // restore forwards; sent until the program answers, since one
        // sent before the program is back could be dropped.
        let answered = (0..200).any(|_| {
            if b.is_running() && blocks_sigusr1(b.pid()) {
                b.signal(libc::SIGUSR1);
            }
            b.try_wait_for(Duration::from_millis(100), |l| !l.is_empty())
        });
        if !answered {
            let code = b.wait_exit(EXIT);
            panic!("restore {id}: no answer (exit {code}): {}", b.stderr_str());
        }
        assert_eq!(b.wait_exit(EXIT), 0, "restore {id}: {}", b.stderr_str());
        assert_eq!(b.lines(), &want[..], "restored sandbox {id}");
    }

    let file = std::fs::read(img.join(STATEFILE)).expect("the statefile");
    hostile_ping_records_are_refused(&file);
}

/// Whether process `pid` has SIGUSR1 blocked (cryo blocks the signals it
/// forwards first thing: one sent sooner would kill it).
fn blocks_sigusr1(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (libc::SIGUSR1 - 1)) != 0)
}

/// The ping socket's and the stack's records made hostile: refused,
/// naming the record, its id and the field.
fn hostile_ping_records_are_refused(file: &[u8]) {
    use sentry::net::inet::state::InetStackRecord;
    let base = ObjectTable::from_statefile(file).expect("the object table");
    let ping = inet_records(&base)
        .into_iter()
        .find(|r| matches!(&r.kind, SavedInetKind::Icmp(_)))
        .map(|r| r.id)
        .expect("the ping socket's record");
    type Edit = Box<dyn Fn(&mut InetSocketRecord)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("family", Box::new(|r| r.family = libc::AF_INET6)),
        (
            "local",
            Box::new(|r| {
                r.local = Some(SavedInetAddr::V4 {
                    ip: [0; 4],
                    port: 0,
                })
            }),
        ),
        (
            "rx.data",
            Box::new(|r| {
                if let SavedInetKind::Icmp(SavedUdp { rx, .. }) = &mut r.kind {
                    rx.push(SavedDatagram {
                        from: SavedInetAddr::V4 {
                            ip: [127, 0, 0, 1],
                            port: 0,
                        },
                        data: vec![8, 0, 0, 0],
                    });
                }
            }),
        ),
        (
            "rx",
            Box::new(|r| {
                if let SavedInetKind::Icmp(SavedUdp { rx, .. }) = &mut r.kind {
                    let d = rx[0].clone();
                    rx.resize(70_000, d);
                }
            }),
        ),
    ];
    for (field, f) in cases {
        let mut t = base.clone();
        t.edit::<InetSocketRecord>(ping, |r| f(r)).expect("edit");
        let bytes = t.to_statefile_like(file).expect("re-assembled");
        match restore_validate(&bytes) {
            Err(LoadError::Invalid(r)) => assert_eq!(
                (r.record, r.id, r.field.as_ref()),
                ("net.InetSocket", ping, field),
                "wrong record or field: {r}"
            ),
            Err(other) => panic!("{field}: refused, but not as an invalid record: {other}"),
            Ok(_) => panic!("{field}: a hostile record was accepted"),
        }
    }
    type StackEdit = Box<dyn Fn(&mut InetStackRecord)>;
    let cases: Vec<(&str, StackEdit)> = vec![
        (
            "ping_group_range",
            Box::new(|r| r.ping_group_range = (5, 3)),
        ),
        (
            "ping_group_range",
            Box::new(|r| r.ping_group_range = (0, u32::MAX)),
        ),
        (
            "time_wait.left_ns",
            Box::new(|r| r.time_wait[0].left_ns = u64::MAX),
        ),
        ("time_wait", Box::new(|r| r.time_wait[0].port = 0)),
        (
            "time_wait",
            Box::new(|r| r.time_wait[0].v4 = Some(Some([10, 1, 2, 3]))),
        ),
    ];
    for (field, f) in cases {
        let mut t = base.clone();
        t.edit::<InetStackRecord>(0, |r| f(r)).expect("edit");
        let bytes = t.to_statefile_like(file).expect("re-assembled");
        match restore_validate(&bytes) {
            Err(LoadError::Invalid(r)) => assert_eq!(
                (r.record, r.id, r.field.as_ref()),
                ("net.InetStack", 0, field),
                "wrong record or field: {r}"
            ),
            Err(other) => panic!("{field}: refused, but not as an invalid record: {other}"),
            Ok(_) => panic!("{field}: a hostile record was accepted"),
        }
    }
}
