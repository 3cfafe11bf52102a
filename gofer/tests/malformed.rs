//! Hostile bytes on the socket, and the hardening of the gofer process.

mod common;

use std::io::IoSlice;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use gofer::protocol::{self, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION};
use gofer::{Client, GoferError, OpenFlags};
use nix::sys::socket::{recv, send, sendmsg, ControlMessage, MsgFlags};

/// A server over a raw socket, for sending what no `Client` would.
fn raw_server(
    root: &std::path::Path,
) -> (OwnedFd, std::thread::JoinHandle<Result<(), GoferError>>) {
    let (a, b) = gofer::socketpair().unwrap();
    let root = root.to_path_buf();
    (a, std::thread::spawn(move || gofer::serve(&root, b, true)))
}

fn exchange(sock: &OwnedFd, bytes: &[u8]) -> Response {
    send(sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL).unwrap();
    reply(sock)
}

fn reply(sock: &OwnedFd) -> Response {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    protocol::decode(&buf[..n]).expect("the server's reply decodes")
}

/// A handle by id: no API makes one, but the wire format is public.
fn handle(id: u64) -> gofer::Handle {
    protocol::decode(&protocol::encode(&id).unwrap()).unwrap()
}

fn errno_of(r: Response) -> i32 {
    match r {
        Response::Error { errno } => errno,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// A tiny deterministic generator; the test must not depend on luck.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_gets_an_error_and_the_connection_lives_on() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"ok").unwrap();
    let (sock, server) = raw_server(t.path());
    assert_eq!(errno_of(exchange(&sock, &[0xff; 40])), libc::EINVAL);
    assert_eq!(
        errno_of(exchange(&sock, b"GET / HTTP/1.1\r\n\r\n")),
        libc::EINVAL
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = 1 + (rng.next() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Garbage may happen to decode; whatever it is, a reply comes.
        let _ = exchange(&sock, &bytes);
    }
    // Valid requests with bits flipped.
    let valid = [
        Request::Attach {
            version: PROTOCOL_VERSION,
        },
        Request::Walk {
            dir: handle(1),
            names: vec![b"f".to_vec()],
        },
        Request::WalkOpen {
            dir: handle(1),
            path: b"f".to_vec(),
            flags: OpenFlags::READ_ONLY,
        },
    ];
    for req in &valid {
        let bytes = protocol::encode(req).unwrap();
        for _ in 0..500 {
            let mut b = bytes.clone();
            let i = (rng.next() as usize) % b.len();
            b[i] ^= 1 << (rng.next() % 8);
            // A flipped WalkOpen may still open a file; `recv` without room
            // for control data lets the kernel drop that fd.
            let _ = exchange(&sock, &b);
        }
    }
    // The connection still serves a real client.
    let client = Client::new(sock);
    let root = client.attach().unwrap();
    let w = client.walk(&root, &["f"]).unwrap();
    assert_eq!(w.nodes.len(), 1);
    drop(client);
    server.join().unwrap().unwrap();
}

#[test]
fn oversized_message_gets_emsgsize() {
    let t = tempfile::tempdir().unwrap();
    let (sock, server) = raw_server(t.path());
    let big = vec![0u8; MAX_MESSAGE + 100];
    assert_eq!(errno_of(exchange(&sock, &big)), libc::EMSGSIZE);
    // Exactly the limit is read whole (and is garbage).
    let max = vec![0xffu8; MAX_MESSAGE];
    assert_eq!(errno_of(exchange(&sock, &max)), libc::EINVAL);
    drop(sock);
    server.join().unwrap().unwrap();
}

#[test]
fn wrong_version_is_eproto() {
    let t = tempfile::tempdir().unwrap();
    let (sock, server) = raw_server(t.path());
    let req = protocol::encode(&Request::Attach { version: 999 }).unwrap();
    assert_eq!(errno_of(exchange(&sock, &req)), libc::EPROTO);
    drop(sock);
    server.join().unwrap().unwrap();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn fds_sent_to_the_server_are_closed() {
    let t = tempfile::tempdir().unwrap();
    let (sock, server) = raw_server(t.path());
    let files: Vec<std::fs::File> = (0..200)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    let req = protocol::encode(&Request::Attach {
        version: PROTOCOL_VERSION,
    })
    .unwrap();
    let before = open_fds();
    for _ in 0..10 {
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&req)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(matches!(reply(&sock), Response::Attached { .. }));
    }
    // 2000 fds went over; a leak would show. Other tests in this binary
    // open a few fds meanwhile, hence the slack.
    let after = open_fds();
    assert!(after < before + 100, "{before} fds before, {after} after");
    drop(sock);
    server.join().unwrap().unwrap();
}

#[test]
fn empty_message_ends_the_session_quietly() {
    let t = tempfile::tempdir().unwrap();
    let (sock, server) = raw_server(t.path());
    send(sock.as_raw_fd(), &[], MsgFlags::MSG_NOSIGNAL).unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn serve_refuses_a_stream_socket() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let err = gofer::serve("/".as_ref(), a.into(), true).unwrap_err();
    assert!(matches!(err, GoferError::Protocol(_)), "{err}");
}

#[test]
fn client_reports_a_closed_server() {
    let (a, b) = gofer::socketpair().unwrap();
    drop(b);
    let c = Client::new(a);
    let e = c.attach().unwrap_err();
    assert!(matches!(e, GoferError::Closed), "{e}");
    assert_eq!(e.errno(), libc::EIO);
}

const HARDEN_CHILD: &str = "GOFER_TEST_HARDEN_CHILD";

#[test]
fn harden_closes_fds_and_sets_no_new_privs() {
    if std::env::var_os(HARDEN_CHILD).is_some() {
        harden_child();
    }
    // harden closes every fd of the process, so it runs in a child: this
    // same test binary, running only this test.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "harden_closes_fds_and_sets_no_new_privs",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(HARDEN_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("HARDEN-OK"),
        "child failed: {out:?}"
    );
}

fn harden_child() -> ! {
    use nix::fcntl::{fcntl, FcntlArg};
    let leaked: Vec<RawFd> = (0..5)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into_raw_fd())
        .collect();
    let (keep, other) = gofer::socketpair().unwrap();
    let other = other.into_raw_fd();
    // SAFETY: every fd above 2 but `keep` is one of ours, leaked above and
    // never used again, or the test harness's, which exits right after.
    unsafe { gofer::harden(std::os::fd::AsFd::as_fd(&keep)) }.unwrap();
    for fd in leaked.iter().chain([&other]) {
        assert!(fcntl(*fd, FcntlArg::F_GETFD).is_err(), "fd {fd} still open");
    }
    assert!(fcntl(keep.as_raw_fd(), FcntlArg::F_GETFD).is_ok());
    for fd in 0..3 {
        assert!(fcntl(fd, FcntlArg::F_GETFD).is_ok(), "stdio {fd} closed");
    }
    assert!(nix::sys::prctl::get_no_new_privs().unwrap());
    assert!(!nix::sys::prctl::get_dumpable().unwrap());
    println!("HARDEN-OK");
    std::process::exit(0);
}
