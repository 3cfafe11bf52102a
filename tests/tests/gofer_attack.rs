//! An attack client against the real gofer process: `cryo gofer` started
//! as the Sentry starts it (its socket inherited, stdin and stdout null),
//! so confined as it really runs (its own mount namespace, chrooted into
//! its root, file capabilities only, its seccomp allow-list, where any
//! other syscall kills it). Over the protocol itself it gets a seeded
//! mutation fuzz of valid requests of every kind, out-of-order sequences,
//! escape attempts, descriptor exhaustion, oversized and empty messages
//! and messages with fds attached. After every batch the process must be
//! alive (a seccomp kill or a panic shows as its death), every reply must
//! decode, a legitimate request must be answered right, every fd it
//! passed must be a file beneath the root, and nothing may have appeared
//! beside the root.
//!
//! The gofer does not depend on the platform: this runs the same under
//! either `CRYO_TEST_PLATFORM`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cryo_tests::confined::{ns_link, status_field};
use cryo_tests::cryo_bin;
use gofer::protocol::{
    self, Request, Response, MAX_MESSAGE, MAX_NAME, MAX_PATH, MAX_WALK_NAMES, PROTOCOL_VERSION,
};
use gofer::wire::{self, Received};
use gofer::{Access, Handle, OpenFlags, SetAttr, SetTime, WalkStatus};
use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags};

/// The fuzz's seed: a failure names the message number, and the same seed
/// sends the same messages again. `CRYO_GOFER_FUZZ_SEED` (hex or decimal)
/// tries another.
const SEED: u64 = 0x5eed_c0ff_ee00_0001;

fn seed() -> u64 {
    let Ok(s) = std::env::var("CRYO_GOFER_FUZZ_SEED") else {
        return SEED;
    };
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    // xorshift never leaves 0.
    match parsed {
        Ok(v) if v != 0 => v,
        _ => panic!("CRYO_GOFER_FUZZ_SEED={s:?}: not a nonzero number"),
    }
}
/// Mutated messages, checked every [`BATCH`].
const FUZZ_MESSAGES: usize = 20_000;
const BATCH: usize = 1000;

const LEGIT_DIR: &str = "legit-directory-the-fuzz-never-names";
const LEGIT_FILE: &str = "legit-file-the-fuzz-never-names.txt";
const LEGIT_TEXT: &[u8] = b"served through the confined gofer\n";
/// How deep the `deep/deep/...` chain is: one walk of it makes the most
/// handles one request can.
const DEEP: usize = MAX_WALK_NAMES;

/// A tiny deterministic generator (xorshift64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A handle by id: no API makes one, but the wire format is public.
fn handle(id: u64) -> Handle {
    protocol::decode(&protocol::encode(&id).expect("encoding an id")).expect("an id decodes")
}

/// The served root, a sentinel directory beside it that must stay empty,
/// and a secret file beside it that nothing passed may be.
struct Layout {
    /// Holds the area and the gofers' stderr.
    tmp: tempfile::TempDir,
    parent: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    secret: PathBuf,
    parent_names: BTreeSet<OsString>,
}

impl Layout {
    fn new() -> Layout {
        let tmp = tempfile::Builder::new()
            .prefix("cryo-gofer-attack-")
            .tempdir()
            .expect("a scratch directory");
        // The gofers' stderr files go in the scratch directory, beside
        // the area whose every change is checked.
        let parent = tmp
            .path()
            .canonicalize()
            .expect("canonical scratch path")
            .join("area");
        let root = parent.join("root");
        let outside = parent.join("outside");
        let secret = parent.join("secret.txt");
        std::fs::create_dir_all(root.join(LEGIT_DIR)).expect("mkdir");
        std::fs::write(root.join(LEGIT_DIR).join(LEGIT_FILE), LEGIT_TEXT).expect("legit file");
        std::fs::create_dir_all(root.join("dir")).expect("mkdir dir");
        std::fs::write(root.join("dir/inner"), b"inner").expect("inner");
        std::fs::write(root.join("file"), b"data").expect("file");
        std::fs::create_dir_all(root.join("w")).expect("mkdir w");
        let deep: PathBuf = std::iter::repeat_n("deep", DEEP).collect();
        std::fs::create_dir_all(root.join(deep)).expect("the deep chain");
        for (name, target) in [
            ("abs", "/"),
            ("up", "../outside"),
            ("upsecret", "../secret.txt"),
            ("proc", "/proc/self/root"),
            ("etc", "/etc/passwd"),
            ("loop", "loop"),
        ] {
            std::os::unix::fs::symlink(target, root.join(name)).expect("symlink");
        }
        nix::unistd::mkfifo(
            &root.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .expect("mkfifo");
        std::fs::create_dir_all(&outside).expect("the sentinel");
        std::fs::write(&secret, b"secret").expect("secret");
        let parent_names = names(&parent);
        Layout {
            tmp,
            parent,
            root,
            outside,
            secret,
            parent_names,
        }
    }

    /// Nothing appeared beside the root, nothing in the sentinel, the
    /// secret is as it was.
    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            names(&self.parent),
            self.parent_names,
            "{what}: the root's parent changed"
        );
        assert!(
            names(&self.outside).is_empty(),
            "{what}: the sentinel beside the root holds {:?}",
            names(&self.outside)
        );
        assert_eq!(
            std::fs::read(&self.secret).expect("the secret"),
            b"secret",
            "{what}: the file beside the root changed"
        );
    }
}

fn names(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("an entry").file_name())
        .collect()
}

/// The real gofer process and the Sentry's end of its socket.
struct Gofer {
    child: Child,
    sock: OwnedFd,
    stderr: PathBuf,
    root: PathBuf,
}

impl Gofer {
    /// `cryo gofer` as the Sentry starts it (do_cmd::start_gofer,
    /// oci::sandbox::start_gofer): the socket's end inherited as --fd,
    /// stdin and stdout null; stderr kept to show a panic's message. Its
    /// descriptors are capped as the Sentry caps its own (65536), which
    /// its gofers inherit.
    fn start(layout: &Layout, read_only: bool, name: &str) -> Gofer {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, soft.min(65536), hard).expect("setrlimit");
        let (sock, theirs) = gofer::socketpair().expect("a socketpair");
        nix::fcntl::fcntl(
            theirs.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .expect("clearing close-on-exec");
        let stderr = layout.tmp.path().join(format!("{name}.stderr"));
        let mut cmd = Command::new(cryo_bin());
        cmd.arg("gofer")
            .arg("--root")
            .arg(&layout.root)
            .arg("--fd")
            .arg(theirs.as_raw_fd().to_string());
        if read_only {
            cmd.arg("--read-only");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("the gofer's stderr"))
            .spawn()
            .expect("starting cryo gofer");
        drop(theirs);
        // A gofer that hangs fails the test rather than blocking it.
        setsockopt(
            &sock,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(30, 0),
        )
        .expect("SO_RCVTIMEO");
        Gofer {
            child,
            sock,
            stderr,
            root: layout.root.clone(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the gofer is gone, for a failure's message.
    fn death(&mut self) -> String {
        let mut err = String::new();
        let _ = std::fs::File::open(&self.stderr).and_then(|mut f| f.read_to_string(&mut err));
        let status = match self.child.try_wait() {
            Ok(Some(s)) => match s.signal() {
                Some(libc::SIGSYS) => format!("killed by SIGSYS (its seccomp filter): {s:?}"),
                Some(sig) => format!("killed by signal {sig}: {s:?}"),
                None => format!("exited: {s:?}"),
            },
            Ok(None) => "still running".to_string(),
            Err(e) => format!("cannot wait: {e}"),
        };
        format!("the gofer {status}; its stderr:\n{err}")
    }

    /// The gofer process is alive: not exited, not killed, not a zombie.
    fn assert_alive(&mut self, what: &str) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            let why = self.death();
            panic!("{what}: {why}");
        }
        let state = status_field(self.pid(), "State").unwrap_or_default();
        assert!(
            !state.starts_with('Z') && !state.starts_with('X'),
            "{what}: the gofer is {state}"
        );
    }

    fn send(&mut self, bytes: &[u8], fd: Option<BorrowedFd<'_>>, what: &str) {
        if let Err(e) = wire::send(self.sock.as_fd(), bytes, fd) {
            let why = self.death();
            panic!("{what}: sending {} bytes: {e}; {why}", bytes.len());
        }
    }

    /// The one reply to what was sent: it must come and decode; an fd it
    /// carries must be a file beneath the root.
    fn reply(&mut self, what: &str) -> Response {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let got = wire::recv(self.sock.as_fd(), &mut buf);
        let (len, fds) = match got {
            Ok(Received::Message { len, fds }) => (len, fds),
            Ok(Received::Truncated) => panic!("{what}: a reply longer than {MAX_MESSAGE} bytes"),
            Ok(Received::Eof) | Err(_) => {
                // Give a dying process the moment to be reaped.
                let deadline = Instant::now() + Duration::from_secs(5);
                while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let why = self.death();
                panic!(
                    "{what}: no reply ({}); {why}",
                    got.err().map_or("end of stream".into(), |e| e.to_string())
                );
            }
        };
        let reply: Response = protocol::decode(&buf[..len])
            .unwrap_or_else(|e| panic!("{what}: the reply does not decode: {e}"));
        for fd in &fds {
            self.assert_beneath_root(fd.as_fd(), what);
        }
        match (&reply, fds.len()) {
            (Response::Opened { .. }, 1) | (_, 0) => {}
            (r, n) => panic!("{what}: {n} fds with {r:?}"),
        }
        reply
    }

    fn assert_beneath_root(&self, fd: BorrowedFd<'_>, what: &str) {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .expect("a passed fd's path");
        assert!(
            path.starts_with(&self.root),
            "{what}: the gofer passed {}, outside its root {}",
            path.display(),
            self.root.display()
        );
    }

    fn call(&mut self, req: &Request, what: &str) -> Response {
        let bytes = protocol::encode(req).expect("a request encodes");
        self.send(&bytes, None, what);
        self.reply(what)
    }

    fn raw(&mut self, bytes: &[u8], what: &str) -> Response {
        self.send(bytes, None, what);
        self.reply(what)
    }

    fn attach(&mut self) -> Handle {
        match self.call(
            &Request::Attach {
                version: PROTOCOL_VERSION,
            },
            "attach",
        ) {
            Response::Attached { root } => root,
            other => panic!("attach: {other:?}"),
        }
    }

    /// The handles of a complete walk of `names` from `dir`.
    fn walk(&mut self, dir: Handle, names: &[&str]) -> Vec<Handle> {
        let req = Request::Walk {
            dir,
            names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
        };
        match self.call(&req, &format!("walk {names:?}")) {
            Response::Walked(w) if w.status == WalkStatus::Complete => {
                w.nodes.iter().map(|n| n.handle).collect()
            }
            other => panic!("walk {names:?}: {other:?}"),
        }
    }

    fn close(&mut self, h: Handle) {
        match self.call(&Request::Close { handle: h }, "close") {
            Response::Closed => {}
            other => panic!("close {}: {other:?}", h.id()),
        }
    }

    /// Alive, and a legitimate session works: attach, walk, open, read the
    /// file's text through the passed fd, close; nothing beside the root.
    fn assert_healthy(&mut self, layout: &Layout, what: &str) {
        self.assert_alive(what);
        let root = self.attach();
        let hs = self.walk(root, &[LEGIT_DIR, LEGIT_FILE]);
        let open = Request::Open {
            handle: hs[1],
            flags: OpenFlags::READ_ONLY,
        };
        let bytes = protocol::encode(&open).expect("encode");
        self.send(&bytes, None, what);
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (len, mut fds) = match wire::recv(self.sock.as_fd(), &mut buf) {
            Ok(Received::Message { len, fds }) => (len, fds),
            _ => {
                let why = self.death();
                panic!("{what}: no reply to a legitimate open; {why}")
            }
        };
        match protocol::decode::<Response>(&buf[..len]) {
            Ok(Response::Opened { stat }) => assert_eq!(stat.size, LEGIT_TEXT.len() as i64),
            other => panic!("{what}: a legitimate open: {other:?}"),
        }
        let fd = fds.pop().expect("the opened fd");
        self.assert_beneath_root(fd.as_fd(), what);
        let mut text = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut text)
            .expect("reading the passed fd");
        assert_eq!(text, LEGIT_TEXT, "{what}: the legitimate file's text");
        for h in hs.into_iter().chain([root]) {
            self.close(h);
        }
        layout.assert_untouched(what);
    }

    /// The number of fds the gofer process holds.
    fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the gofer's fds")
            .count()
    }

    /// Ends the session with a zero-length message (the end of the
    /// stream, as the protocol says): the gofer exits 0, not by a signal.
    fn finish_with_empty_message(mut self) {
        self.send(&[], None, "an empty message");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the gofer did not end at an empty message"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        if !status.success() {
            let why = self.death();
            panic!("the gofer's end: {why}");
        }
    }
}

impl Drop for Gofer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn errno_of(r: Response, what: &str) -> i32 {
    match r {
        Response::Error { errno } => errno,
        other => panic!("{what}: expected an error, got {other:?}"),
    }
}

/// The handles the fuzz's requests name, made fresh for each batch.
struct Known {
    root: Handle,
    dir: Handle,
    file: Handle,
    link: Handle,
    w: Handle,
    /// One past the largest id seen, so random ids land near real ones.
    high: u64,
    /// Handles the fuzz's own requests got back (the files and links it
    /// made, what it walked to), the latest [`SEEN`].
    seen: Vec<Handle>,
}

const SEEN: usize = 256;

impl Known {
    /// The fuzz may have moved or removed any of them: the root stands in
    /// for one that is gone.
    fn make(g: &mut Gofer) -> Known {
        let root = g.attach();
        let mut one = |name: &str| {
            let req = Request::Walk {
                dir: root,
                names: vec![name.as_bytes().to_vec()],
            };
            match g.call(&req, name) {
                Response::Walked(w) if w.status == WalkStatus::Complete => w.nodes[0].handle,
                _ => root,
            }
        };
        let (dir, file, link, w) = (one("dir"), one("file"), one("abs"), one("w"));
        Known {
            root,
            dir,
            file,
            link,
            w,
            high: w.id() + 1,
            seen: Vec::new(),
        }
    }

    /// Keeps the handles a reply made for later requests.
    fn learn(&mut self, r: &Response) {
        let made: Vec<Handle> = match r {
            Response::Attached { root } => vec![*root],
            Response::Walked(w) => w.nodes.iter().map(|n| n.handle).collect(),
            _ => return,
        };
        for h in made {
            self.high = self.high.max(h.id() + 1);
            if self.seen.len() == SEEN {
                self.seen.remove(0);
            }
            self.seen.push(h);
        }
    }

    /// A known handle, a closed or never-made one, or a wild id.
    fn pick(&self, rng: &mut Rng) -> Handle {
        match rng.below(12) {
            10 | 11 if !self.seen.is_empty() => self.seen[rng.below(self.seen.len())],
            0 => handle(rng.next()),
            1 => handle(u64::MAX - rng.below(2) as u64),
            2 => handle(rng.below(self.high as usize + 8) as u64),
            3 => self.root,
            4 => self.dir,
            5 => self.file,
            6 => self.link,
            _ => self.w,
        }
    }
}

/// Names the fuzz uses: real ones, escapes, and every kind of bad one.
fn a_name(rng: &mut Rng) -> Vec<u8> {
    let pool: &[&[u8]] = &[
        b"file",
        b"dir",
        b"inner",
        b"w",
        b"w1",
        b"w2",
        b"abs",
        b"up",
        b"upsecret",
        b"proc",
        b"etc",
        b"loop",
        b"pipe",
        b"deep",
        b"nope",
        b"..",
        b".",
        b"",
        b"/",
        b"a/b",
        b"a\0b",
        b"../outside",
        b"\xff\xfe",
    ];
    match rng.below(pool.len() + 3) {
        i if i < pool.len() => pool[i].to_vec(),
        i if i == pool.len() => vec![b'x'; MAX_NAME],
        i if i == pool.len() + 1 => vec![b'y'; MAX_NAME + 1],
        _ => {
            let n = 1 + rng.below(12);
            rng.bytes(n)
        }
    }
}

fn some_names(rng: &mut Rng) -> Vec<Vec<u8>> {
    let n = match rng.below(20) {
        0 => 0,
        1 => MAX_WALK_NAMES + 1,
        _ => 1 + rng.below(4),
    };
    (0..n).map(|_| a_name(rng)).collect()
}

fn some_path(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => b"dir/inner".to_vec(),
        1 => b"abs/etc/passwd".to_vec(),
        2 => b"../secret.txt".to_vec(),
        3 => b"/etc/passwd".to_vec(),
        4 => vec![b'a'; MAX_PATH + 1],
        5 => b"dir/./../../outside".to_vec(),
        _ => some_names(rng).join(&b'/'),
    }
}

fn some_flags(rng: &mut Rng) -> OpenFlags {
    OpenFlags {
        access: [Access::ReadOnly, Access::WriteOnly, Access::ReadWrite][rng.below(3)],
        truncate: rng.below(4) == 0,
        append: rng.below(2) == 0,
    }
}

fn some_time(rng: &mut Rng) -> Option<SetTime> {
    match rng.below(4) {
        0 => None,
        1 => Some(SetTime {
            sec: rng.next() as i64,
            nsec: rng.next() as i64,
        }),
        _ => Some(SetTime {
            sec: rng.below(1 << 30) as i64,
            nsec: rng.below(1_000_000_000) as i64,
        }),
    }
}

/// A valid encodable request of kind `kind` (every kind of the protocol).
fn request(kind: usize, rng: &mut Rng, k: &Known) -> Request {
    match kind {
        0 => Request::Attach {
            version: if rng.below(4) == 0 {
                rng.next() as u32
            } else {
                PROTOCOL_VERSION
            },
        },
        1 => Request::Walk {
            dir: k.pick(rng),
            names: some_names(rng),
        },
        2 => Request::WalkStat {
            dir: k.pick(rng),
            names: some_names(rng),
        },
        3 => Request::Open {
            handle: k.pick(rng),
            flags: some_flags(rng),
        },
        4 => Request::WalkOpen {
            dir: k.pick(rng),
            path: some_path(rng),
            flags: some_flags(rng),
        },
        5 => Request::Stat {
            handle: k.pick(rng),
        },
        6 => Request::ReadDir {
            handle: k.pick(rng),
            offset: [0, 1, 2, u64::MAX, rng.next()][rng.below(5)],
            stats: rng.below(2) == 0,
        },
        7 => Request::ReadDirAt {
            dir: k.pick(rng),
            names: some_names(rng),
            stats: rng.below(2) == 0,
        },
        8 => Request::ReadLink {
            handle: k.pick(rng),
        },
        9 => Request::Close {
            handle: k.pick(rng),
        },
        10 => Request::Create {
            dir: k.pick(rng),
            name: a_name(rng),
            mode: rng.next() as u32,
        },
        11 => Request::Mkdir {
            dir: k.pick(rng),
            name: a_name(rng),
            mode: rng.next() as u32,
        },
        12 => Request::Symlink {
            dir: k.pick(rng),
            name: a_name(rng),
            target: match rng.below(4) {
                0 => b"/".to_vec(),
                1 => b"../../outside".to_vec(),
                2 => vec![b't'; MAX_PATH + 1],
                _ => some_path(rng),
            },
        },
        13 => Request::Unlink {
            dir: k.pick(rng),
            name: a_name(rng),
            rmdir: rng.below(2) == 0,
        },
        14 => Request::Rename {
            old_dir: k.pick(rng),
            old_name: a_name(rng),
            new_dir: k.pick(rng),
            new_name: a_name(rng),
            noreplace: rng.below(2) == 0,
        },
        _ => Request::SetAttr {
            handle: k.pick(rng),
            attr: SetAttr {
                mode: (rng.below(2) == 0).then(|| rng.next() as u32),
                uid: (rng.below(3) == 0).then(|| rng.below(70_000) as u32),
                gid: (rng.below(3) == 0).then(|| rng.below(70_000) as u32),
                size: match rng.below(4) {
                    0 => Some(rng.below(100) as u64),
                    1 => Some(u64::MAX - rng.below(2) as u64),
                    _ => None,
                },
                atime: some_time(rng),
                mtime: some_time(rng),
            },
        },
    }
}

const KINDS: usize = 16;

/// One mutation of an encoded request: bit flips, a truncation, bytes
/// appended, a byte overwritten, a huge length prefix spliced in, or (for
/// more than half) none: the random request as it is, so that the fuzz
/// reaches the operations' states and not only the decoder. Never empty: an empty message ends the
/// session, which is tested on its own.
fn mutate(mut bytes: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    match rng.below(12) {
        0 => {
            for _ in 0..1 + rng.below(3) {
                let bit = rng.below(bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
        }
        1 if bytes.len() > 1 => bytes.truncate(1 + rng.below(bytes.len() - 1)),
        2 => {
            let n = 1 + rng.below(16);
            bytes.extend(rng.bytes(n));
        }
        3 => {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        4 => {
            // bincode's varint markers for u32 and u64 lengths.
            let at = rng.below(bytes.len());
            let mut huge = if rng.below(2) == 0 {
                vec![0xfc]
            } else {
                vec![0xfd]
            };
            huge.extend(rng.bytes(if huge[0] == 0xfc { 4 } else { 8 }));
            bytes.splice(at..at, huge);
        }
        _ => {}
    }
    bytes
}

/// The gofer under the attack is the confined one: a filter, no new
/// privileges, file capabilities only, its own mount namespace.
fn assert_confined(g: &Gofer) {
    let pid = g.pid();
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"));
    assert_eq!(status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(
        status_field(pid, "CapEff").as_deref(),
        Some("000000000000001f")
    );
    assert_ne!(ns_link(&pid.to_string(), "mnt"), ns_link("self", "mnt"));
}

/// `messages` requests of every kind, valid and mutated, from `seed`;
/// after each batch the gofer lives, serves and made nothing outside its
/// root.
fn fuzz(read_only: bool, seed: u64, messages: usize) {
    let layout = Layout::new();
    let mut g = Gofer::start(&layout, read_only, "fuzz");
    let mut k = Known::make(&mut g);
    assert_confined(&g);
    let mut rng = Rng(seed);
    let mut answered = [0usize; 2];
    for i in 0..messages {
        let kind = i % KINDS;
        let req = request(kind, &mut rng, &k);
        let bytes = protocol::encode(&req).expect("a valid request encodes");
        let bytes = mutate(bytes, &mut rng);
        let what = format!("fuzz message {i} (seed {seed:#x}, kind {kind}, read-only {read_only})");
        let r = g.raw(&bytes, &what);
        answered[usize::from(!matches!(r, Response::Error { .. }))] += 1;
        k.learn(&r);
        if (i + 1) % BATCH == 0 {
            g.assert_healthy(&layout, &format!("after fuzz message {i}"));
        }
        // The fuzz closes handles it knows too: fresh ones now and then.
        if (i + 1) % 64 == 0 {
            let seen = std::mem::take(&mut k.seen);
            k = Known::make(&mut g);
            k.seen = seen;
        }
    }
    // The fuzz reached the operations, not only the decoder.
    assert!(
        answered[1] > messages / 10,
        "errors {}, successes {}",
        answered[0],
        answered[1]
    );
    g.assert_healthy(&layout, "after the fuzz");
    g.finish_with_empty_message();
    layout.assert_untouched("after the fuzz's gofer ended");
}

/// (a) The mutation fuzz on a writable gofer (an OCI bind mount's).
#[test]
fn a_mutation_fuzz_finds_no_crash_and_no_escape() {
    fuzz(false, seed(), FUZZ_MESSAGES);
}

/// The same on a read-only gofer (every root's, `cryo do`'s and a
/// container's), another seed.
#[test]
fn a_mutation_fuzz_of_a_read_only_gofer() {
    fuzz(true, seed() ^ 0x00ff_00ff_00ff_00ff, FUZZ_MESSAGES / 2);
}

/// (b) Out-of-order sequences and escape attempts, each answered with the
/// errno Linux semantics give, on a writable gofer.
#[test]
fn out_of_order_requests_and_escapes_get_errors() {
    let layout = Layout::new();
    let mut g = Gofer::start(&layout, false, "order");
    // Before any attach: no handle exists.
    for id in [0, 1, 2, u64::MAX] {
        let r = g.call(&Request::Stat { handle: handle(id) }, "stat before attach");
        assert_eq!(errno_of(r, "stat before attach"), libc::EBADF);
    }
    let r = g.call(&Request::Attach { version: 0 }, "attach v0");
    assert_eq!(errno_of(r, "attach v0"), libc::EPROTO);
    let root = g.attach();
    assert_confined(&g);

    // A handle after its close.
    let file = g.walk(root, &["file"])[0];
    g.close(file);
    for (req, what) in [
        (Request::Stat { handle: file }, "stat after close"),
        (
            Request::Open {
                handle: file,
                flags: OpenFlags::READ_ONLY,
            },
            "open after close",
        ),
        (Request::Close { handle: file }, "a second close"),
        (
            Request::Walk {
                dir: file,
                names: vec![b"x".to_vec()],
            },
            "walk from a closed handle",
        ),
        (
            Request::SetAttr {
                handle: file,
                attr: SetAttr {
                    mode: Some(0o777),
                    ..SetAttr::default()
                },
            },
            "setattr after close",
        ),
    ] {
        assert_eq!(errno_of(g.call(&req, what), what), libc::EBADF, "{what}");
    }

    // A file used as a directory.
    let file = g.walk(root, &["file"])[0];
    let r = g.call(
        &Request::Walk {
            dir: file,
            names: vec![b"x".to_vec()],
        },
        "walk below a file",
    );
    match r {
        Response::Walked(w) => {
            assert!(w.nodes.is_empty(), "{w:?}");
            assert_eq!(
                w.status,
                WalkStatus::Failed {
                    errno: libc::ENOTDIR
                }
            );
        }
        other => panic!("walk below a file: {other:?}"),
    }
    for (req, what) in [
        (
            Request::ReadDir {
                handle: file,
                offset: 0,
                stats: true,
            },
            "readdir of a file",
        ),
        (
            Request::ReadDirAt {
                dir: file,
                names: vec![],
                stats: false,
            },
            "readdirat of a file",
        ),
        (
            Request::Create {
                dir: file,
                name: b"x".to_vec(),
                mode: 0o644,
            },
            "create in a file",
        ),
        (
            Request::Mkdir {
                dir: file,
                name: b"x".to_vec(),
                mode: 0o755,
            },
            "mkdir in a file",
        ),
        (
            Request::Unlink {
                dir: file,
                name: b"x".to_vec(),
                rmdir: false,
            },
            "unlink in a file",
        ),
    ] {
        assert_eq!(errno_of(g.call(&req, what), what), libc::ENOTDIR, "{what}");
    }
    let r = g.call(
        &Request::ReadLink { handle: file },
        "readlink of a regular file",
    );
    assert_eq!(errno_of(r, "readlink of a file"), libc::EINVAL);

    // A directory used as a file.
    let dir = g.walk(root, &["dir"])[0];
    let r = g.call(
        &Request::Open {
            handle: dir,
            flags: OpenFlags::READ_WRITE,
        },
        "open a directory for writing",
    );
    assert_eq!(errno_of(r, "open a directory rw"), libc::EISDIR);
    let r = g.call(
        &Request::SetAttr {
            handle: dir,
            attr: SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
        },
        "truncate a directory",
    );
    assert_eq!(errno_of(r, "truncate a directory"), libc::EISDIR);
    let r = g.call(
        &Request::ReadLink { handle: dir },
        "readlink of a directory",
    );
    assert_eq!(errno_of(r, "readlink of a directory"), libc::EINVAL);

    // Past the limits.
    let r = g.call(
        &Request::ReadDir {
            handle: root,
            offset: u64::MAX,
            stats: false,
        },
        "readdir past the end",
    );
    match r {
        Response::DirEntries { entries, next } => {
            assert!(entries.is_empty() && next.is_none(), "{entries:?} {next:?}")
        }
        other => panic!("readdir past the end: {other:?}"),
    }
    let too_many = vec![b"deep".to_vec(); MAX_WALK_NAMES + 1];
    let r = g.call(
        &Request::Walk {
            dir: root,
            names: too_many,
        },
        "a walk of too many names",
    );
    assert_eq!(errno_of(r, "too many names"), libc::E2BIG);
    let file = g.walk(root, &["file"])[0];
    let r = g.call(
        &Request::SetAttr {
            handle: file,
            attr: SetAttr {
                size: Some(u64::MAX),
                ..SetAttr::default()
            },
        },
        "a size past i64",
    );
    assert_eq!(errno_of(r, "a size past i64"), libc::EFBIG);
    let r = g.call(
        &Request::SetAttr {
            handle: file,
            attr: SetAttr {
                mtime: Some(SetTime {
                    sec: 0,
                    nsec: 1_000_000_000,
                }),
                ..SetAttr::default()
            },
        },
        "a time's nanoseconds past a second",
    );
    assert_eq!(errno_of(r, "bad nsec"), libc::EINVAL);
    let r = g.call(
        &Request::Symlink {
            dir: root,
            name: b"long".to_vec(),
            target: vec![b't'; MAX_PATH + 1],
        },
        "a symlink target past PATH_MAX",
    );
    assert_eq!(errno_of(r, "long target"), libc::ENAMETOOLONG);
    let r = g.call(
        &Request::WalkOpen {
            dir: root,
            path: vec![b'a'; MAX_PATH + 1],
            flags: OpenFlags::READ_ONLY,
        },
        "a path past PATH_MAX",
    );
    assert_eq!(errno_of(r, "long path"), libc::ENAMETOOLONG);
    // A FIFO is never opened (an open would block the gofer).
    for (req, what) in [
        (
            Request::WalkOpen {
                dir: root,
                path: b"pipe".to_vec(),
                flags: OpenFlags::READ_ONLY,
            },
            "walkopen of a fifo",
        ),
        (
            Request::Open {
                handle: g.walk(root, &["pipe"])[0],
                flags: OpenFlags::WRITE_ONLY,
            },
            "open of a fifo",
        ),
    ] {
        assert_eq!(errno_of(g.call(&req, what), what), libc::EPERM, "{what}");
    }

    // Bad names, in every request that takes one.
    let bad: Vec<(Vec<u8>, i32)> = vec![
        (b"".to_vec(), libc::EINVAL),
        (b".".to_vec(), libc::EINVAL),
        (b"..".to_vec(), libc::EINVAL),
        (b"/".to_vec(), libc::EINVAL),
        (b"dir/inner".to_vec(), libc::EINVAL),
        (b"../outside".to_vec(), libc::EINVAL),
        (b"fi\0le".to_vec(), libc::EINVAL),
        (vec![b'n'; MAX_NAME + 1], libc::ENAMETOOLONG),
    ];
    for (name, want) in &bad {
        let what = format!("the name {:?}", String::from_utf8_lossy(name));
        let w = g.walk(root, &["w"])[0];
        for req in [
            Request::Walk {
                dir: root,
                names: vec![name.clone()],
            },
            Request::WalkStat {
                dir: root,
                names: vec![b"dir".to_vec(), name.clone()],
            },
            Request::ReadDirAt {
                dir: root,
                names: vec![name.clone()],
                stats: true,
            },
            Request::Create {
                dir: w,
                name: name.clone(),
                mode: 0o644,
            },
            Request::Mkdir {
                dir: w,
                name: name.clone(),
                mode: 0o755,
            },
            Request::Symlink {
                dir: w,
                name: name.clone(),
                target: b"/".to_vec(),
            },
            Request::Unlink {
                dir: root,
                name: name.clone(),
                rmdir: true,
            },
            Request::Rename {
                old_dir: w,
                old_name: b"nope".to_vec(),
                new_dir: root,
                new_name: name.clone(),
                noreplace: false,
            },
            Request::Rename {
                old_dir: root,
                old_name: name.clone(),
                new_dir: w,
                new_name: b"moved".to_vec(),
                noreplace: false,
            },
        ] {
            assert_eq!(
                errno_of(g.call(&req, &what), &what),
                *want,
                "{what}: {req:?}"
            );
        }
        g.close(w);
    }
    for path in [
        &b"/etc/passwd"[..],
        b"../secret.txt",
        b"dir/../../secret.txt",
        b"dir/inner\0",
    ] {
        let what = format!("walkopen {:?}", String::from_utf8_lossy(path));
        let r = g.call(
            &Request::WalkOpen {
                dir: root,
                path: path.to_vec(),
                flags: OpenFlags::READ_ONLY,
            },
            &what,
        );
        assert_eq!(errno_of(r, &what), libc::EINVAL, "{what}");
    }

    // Symlink escapes: a walk stops at the link, an open of it or through
    // it is ELOOP, a listing through it ENOTDIR; none reaches outside.
    for link in ["abs", "up", "upsecret", "proc", "etc", "loop"] {
        let r = g.call(
            &Request::Walk {
                dir: root,
                names: vec![link.as_bytes().to_vec(), b"x".to_vec()],
            },
            link,
        );
        match r {
            Response::Walked(w) => {
                assert_eq!(w.status, WalkStatus::Symlink, "{link}: {w:?}");
                assert_eq!(w.nodes.len(), 1, "{link}");
                assert!(w.nodes[0].stat.is_symlink(), "{link}");
                let h = w.nodes[0].handle;
                let r = g.call(
                    &Request::Open {
                        handle: h,
                        flags: OpenFlags::READ_ONLY,
                    },
                    link,
                );
                assert_eq!(errno_of(r, link), libc::ELOOP, "open of {link}");
                // Its children through it: refused as not a directory.
                let r = g.call(
                    &Request::ReadDirAt {
                        dir: h,
                        names: vec![],
                        stats: false,
                    },
                    link,
                );
                assert_eq!(errno_of(r, link), libc::ENOTDIR, "listing {link}");
                let r = g.call(
                    &Request::Create {
                        dir: h,
                        name: b"planted".to_vec(),
                        mode: 0o644,
                    },
                    link,
                );
                assert_eq!(errno_of(r, link), libc::ENOTDIR, "create through {link}");
                g.close(h);
            }
            other => panic!("{link}: {other:?}"),
        }
        let r = g.call(
            &Request::WalkOpen {
                dir: root,
                path: format!("{link}/x").into_bytes(),
                flags: OpenFlags::READ_ONLY,
            },
            link,
        );
        assert!(
            matches!(r, Response::Error { errno } if errno == libc::ELOOP || errno == libc::ENOTDIR),
            "walkopen through {link}: {r:?}"
        );
    }
    // A symlink the attacker plants, then a move of a directory under it,
    // then writes through both: all stay in the root.
    let w = g.walk(root, &["w"])[0];
    let r = g.call(
        &Request::Symlink {
            dir: w,
            name: b"planted".to_vec(),
            target: b"../../outside".to_vec(),
        },
        "planting a symlink",
    );
    assert!(matches!(r, Response::Walked(_)), "planting: {r:?}");
    for name in [&b"planted"[..], b"x"] {
        let r = g.call(
            &Request::WalkOpen {
                dir: w,
                path: [name, b"/new"].concat(),
                flags: OpenFlags::WRITE_ONLY,
            },
            "a write through the planted link",
        );
        assert!(matches!(r, Response::Error { .. }), "{r:?}");
    }
    // A directory cannot replace the link (ENOTDIR, as Linux); moved
    // beside it, a handle taken before the move follows it.
    let inner = g.walk(root, &["dir", "inner"]);
    let r = g.call(
        &Request::Rename {
            old_dir: root,
            old_name: b"dir".to_vec(),
            new_dir: w,
            new_name: b"planted".to_vec(),
            noreplace: false,
        },
        "a directory moved over the planted link",
    );
    assert_eq!(errno_of(r, "dir over a link"), libc::ENOTDIR);
    let r = g.call(
        &Request::Rename {
            old_dir: root,
            old_name: b"dir".to_vec(),
            new_dir: w,
            new_name: b"moved".to_vec(),
            noreplace: true,
        },
        "a directory moved into w",
    );
    assert_eq!(r, Response::Done);
    let r = g.call(
        &Request::SetAttr {
            handle: inner[1],
            attr: SetAttr {
                size: Some(3),
                ..SetAttr::default()
            },
        },
        "a truncate of a moved file",
    );
    assert!(matches!(r, Response::Stat { .. }), "{r:?}");
    assert_eq!(
        std::fs::read(layout.root.join("w/moved/inner")).expect("the moved file"),
        b"inn"
    );
    g.assert_healthy(&layout, "after the out-of-order sequences");

    // Descriptor exhaustion: walks of the deep chain until the gofer is
    // out of fds; it answers errors, then serves again once some close.
    let mut held: Vec<Handle> = Vec::new();
    let deep = vec![b"deep".to_vec(); DEEP];
    let mut exhausted = false;
    for _ in 0..(70_000 / DEEP) {
        let r = g.call(
            &Request::Walk {
                dir: root,
                names: deep.clone(),
            },
            "a deep walk",
        );
        match r {
            Response::Walked(w) => {
                held.extend(w.nodes.iter().map(|n| n.handle));
                if let WalkStatus::Failed { errno } = w.status {
                    assert_eq!(errno, libc::EMFILE, "a deep walk");
                    exhausted = true;
                    break;
                }
            }
            other => panic!("a deep walk: {other:?}"),
        }
    }
    assert!(exhausted, "{} handles and still fds left", held.len());
    g.assert_alive("out of fds");
    let r = g.call(&Request::Stat { handle: root }, "a stat out of fds");
    assert!(matches!(r, Response::Stat { .. }), "{r:?}");
    for h in held.drain(..) {
        g.close(h);
    }
    g.assert_healthy(&layout, "after the fds were exhausted and released");
    g.finish_with_empty_message();
    layout.assert_untouched("after the gofer ended");
}

/// (c) Oversized, zero-length and fd-carrying messages: EMSGSIZE, EINVAL,
/// every fd sent closed unread; and a read-only gofer refuses every write.
#[test]
fn oversized_empty_and_fd_carrying_messages() {
    let layout = Layout::new();
    let mut g = Gofer::start(&layout, true, "sizes");
    let root = g.attach();
    assert_confined(&g);
    // One past the largest message: EMSGSIZE, and the session goes on.
    let big = vec![0u8; MAX_MESSAGE + 1];
    assert_eq!(
        errno_of(g.raw(&big, "a message one past the limit"), "big"),
        libc::EMSGSIZE
    );
    let mut valid_then_junk = protocol::encode(&Request::Stat { handle: root }).expect("encode");
    valid_then_junk.resize(MAX_MESSAGE + 1, 0xff);
    assert_eq!(
        errno_of(g.raw(&valid_then_junk, "a valid head, a long tail"), "tail"),
        libc::EMSGSIZE
    );
    let mut exact = protocol::encode(&Request::Stat { handle: root }).expect("encode");
    exact.resize(MAX_MESSAGE, 0);
    assert_eq!(
        errno_of(g.raw(&exact, "trailing bytes up to the limit"), "exact"),
        libc::EINVAL
    );
    // Far larger: the socket itself may refuse it; if it goes, EMSGSIZE.
    let huge = vec![0x41u8; 4 * MAX_MESSAGE];
    if wire::send(g.sock.as_fd(), &huge, None).is_ok() {
        assert_eq!(
            errno_of(g.reply("a message four times the limit"), "huge"),
            libc::EMSGSIZE
        );
    }
    g.assert_healthy(&layout, "after oversized messages");

    // Fds attached: to a valid request (answered as without), to garbage,
    // to an empty message (EINVAL, not the end); all closed by the gofer.
    let before = g.fd_count();
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let stat = protocol::encode(&Request::Stat { handle: root }).expect("encode");
    for i in 0..100 {
        g.send(&stat, Some(null.as_fd()), "a stat with an fd");
        let r = g.reply("a stat with an fd");
        assert!(matches!(r, Response::Stat { .. }), "{i}: {r:?}");
        g.send(&[0xff; 9], Some(null.as_fd()), "garbage with an fd");
        assert_eq!(errno_of(g.reply("garbage with an fd"), "g"), libc::EINVAL);
        g.send(&[], Some(null.as_fd()), "an empty message with an fd");
        assert_eq!(
            errno_of(g.reply("an empty message with an fd"), "e"),
            libc::EINVAL
        );
    }
    // The most fds one message carries (SCM_MAX_FD), the gofer's own
    // socket's other end among them.
    let many: Vec<RawFd> = std::iter::repeat_n(null.as_raw_fd(), 252)
        .chain([g.sock.as_raw_fd()])
        .collect();
    let rights = [ControlMessage::ScmRights(&many)];
    let iov = [std::io::IoSlice::new(&stat)];
    sendmsg::<()>(g.sock.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None)
        .expect("a message with 253 fds");
    let r = g.reply("a stat with 253 fds");
    assert!(matches!(r, Response::Stat { .. }), "{r:?}");
    g.assert_alive("after fds were sent");
    assert_eq!(g.fd_count(), before, "the gofer kept fds it was sent");

    // Read-only: every change is EROFS, whatever names it carries.
    let w = g.walk(root, &["w"])[0];
    let file = g.walk(root, &["file"])[0];
    for req in [
        Request::Create {
            dir: w,
            name: b"x".to_vec(),
            mode: 0o644,
        },
        Request::Mkdir {
            dir: w,
            name: b"..".to_vec(),
            mode: 0o755,
        },
        Request::Symlink {
            dir: w,
            name: b"s".to_vec(),
            target: b"/".to_vec(),
        },
        Request::Unlink {
            dir: root,
            name: b"file".to_vec(),
            rmdir: false,
        },
        Request::Rename {
            old_dir: root,
            old_name: b"file".to_vec(),
            new_dir: w,
            new_name: b"f".to_vec(),
            noreplace: true,
        },
        Request::SetAttr {
            handle: file,
            attr: SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
        },
        Request::Open {
            handle: file,
            flags: OpenFlags {
                access: Access::ReadOnly,
                truncate: true,
                append: false,
            },
        },
    ] {
        let what = format!("{req:?} on a read-only gofer");
        assert_eq!(errno_of(g.call(&req, &what), &what), libc::EROFS, "{what}");
    }
    assert_eq!(
        std::fs::read(layout.root.join("file")).expect("file"),
        b"data"
    );
    g.assert_healthy(&layout, "after fd-carrying messages");
    g.finish_with_empty_message();
    layout.assert_untouched("after the read-only gofer ended");
}
