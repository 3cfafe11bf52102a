//! tmpfs across checkpoint and restore, end to end: the `tmpfs_state` guest
//! fills the sandbox's /tmp (the overlay's tmpfs upper layer), `cryo
//! checkpoint` freezes it, `cryo restore` continues it, and the restored
//! guest re-reads what it wrote.
//!
//! The sizes prove where file contents travel: tmpfs pages live in the
//! memory file, so they go through the memory section (zero pages skipped,
//! zstd-compressed) rather than as raw bytes in the kernel section. A 64 MiB
//! file of zeros makes a statefile of well under 2 MiB; 64 MiB of text one
//! far under 64 MiB. A directory chain 20,000 deep is saved and restored
//! (the saved tree is a flat table, so neither side recurses). A shared
//! mapping of a /dev/shm file is the file's own pages, before and after a
//! restore: what the mapping writes read(2) sees at once, and the reverse.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use cryo_tests::{cryo_bin, exit_code, guest, isolate, run_cryo_cli, Libc, Output, BASE_ENV};

const STATEFILE: &str = "checkpoint.cryo";
/// Writing 64 MiB (or 20,000 directories) under ptrace on a busy machine.
const START: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(60);

/// A `cryo do` / `cryo restore` in its own process group, stdout read line
/// by line by a thread; dropping it kills the group.
struct Sandbox {
    what: String,
    child: Child,
    pgid: libc::pid_t,
    rx: Receiver<String>,
    lines: Vec<String>,
    stderr: Option<Receiver<Vec<u8>>>,
}

impl Sandbox {
    fn spawn(mut cmd: Command, what: String) -> Sandbox {
        cmd.env_clear()
            .envs(BASE_ENV.iter().copied())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(v) = std::env::var_os("CRYO_LOG") {
            cmd.env("CRYO_LOG", v);
        }
        isolate(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot spawn: {e}"));
        let pgid = child.id() as libc::pid_t;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let (etx, erx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            let _ = etx.send(buf);
        });
        Sandbox {
            what,
            child,
            pgid,
            rx,
            lines: Vec::new(),
            stderr: Some(erx),
        }
    }

    fn run(root: &Path, id: &str, program: &Path, args: &[&str]) -> Sandbox {
        let mut cmd = Command::new(cryo_bin());
        cmd.arg("--root")
            .arg(root)
            .args(["do", "--id", id, "--cwd", "/"]);
        for (k, v) in BASE_ENV {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--").arg(program).args(args);
        Sandbox::spawn(cmd, format!("cryo do --id {id} -- tmpfs_state {args:?}"))
    }

    fn restore(root: &Path, img: &Path, id: &str) -> Sandbox {
        let mut cmd = Command::new(cryo_bin());
        cmd.arg("--root")
            .arg(root)
            .arg("restore")
            .arg("--image-path")
            .arg(img)
            .args(["--id", id]);
        Sandbox::spawn(cmd, format!("cryo restore --id {id}"))
    }

    fn stderr_text(&mut self) -> String {
        let buf = self
            .stderr
            .take()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) of the process group this test created.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The next stdout line, failing the test after `timeout` or at EOF.
    fn next_line(&mut self, timeout: Duration) -> String {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => {
                assert!(
                    !l.starts_with("CHECK FAILED"),
                    "{}: guest failed: {l}",
                    self.what
                );
                self.lines.push(l.clone());
                l
            }
            Err(e) => {
                let status = self.child.try_wait().ok().flatten().map(exit_code);
                self.kill();
                let stderr = self.stderr_text();
                panic!(
                    "{}: no line ({e:?}) after {timeout:?}; exit status {status:?}; lines {:?}; stderr:\n{stderr}",
                    self.what, self.lines,
                );
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return exit_code(s);
            }
            if Instant::now() >= deadline {
                self.kill();
                let stderr = self.stderr_text();
                panic!(
                    "{}: still running after {timeout:?}; stderr:\n{stderr}",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("cryo-tmpfs-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn root(&self) -> PathBuf {
        let root = self.dir.path().join("root");
        std::fs::create_dir_all(&root).expect("root dir");
        root
    }

    fn img(&self) -> PathBuf {
        self.dir.path().join("img")
    }
}

fn checkpoint(root: &Path, img: &Path, id: &str) -> Output {
    let args: Vec<OsString> = vec![
        "--root".into(),
        root.into(),
        "checkpoint".into(),
        "--image-path".into(),
        img.into(),
        id.into(),
    ];
    run_cryo_cli(&args)
}

fn tmpfs_guest() -> PathBuf {
    guest("tmpfs_state", Libc::Glibc)
}

/// The value of `key=` in a report line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// What `cryo inspect` says of a statefile: where the bytes went.
#[derive(Debug)]
struct Layout {
    /// The kernel section's uncompressed length (the tmpfs table is in it).
    kernel_bytes: u64,
    /// The memory image's length and its non-zero pages.
    memory_bytes: u64,
    present_pages: u64,
}

fn inspect(statefile: &Path) -> Layout {
    let out = run_cryo_cli(&[OsString::from("inspect"), statefile.into()]);
    assert_eq!(out.code, 0, "cryo inspect: {}", out.stderr_str());
    let text = out.stdout_str();
    let kernel_bytes = text
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // "kernel" or "kernel/<name>": the kernel-state section.
            let kernel = w
                .first()
                .is_some_and(|n| *n == "kernel" || n.starts_with("kernel/"));
            (kernel && w.len() >= 4).then(|| w[3].parse().ok())?
        })
        .unwrap_or_else(|| panic!("no kernel section in:\n{text}"));
    // "memory/memory-file: N bytes, P pages of 4096: X present, Y zero ..."
    let mem = text
        .lines()
        .find(|l| l.starts_with("memory/memory-file:"))
        .unwrap_or_else(|| panic!("no memory summary in:\n{text}"));
    let words: Vec<&str> = mem.split_whitespace().collect();
    let before = |word: &str| -> u64 {
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("no {word:?} in {mem:?}"));
        words[i - 1]
            .parse()
            .unwrap_or_else(|_| panic!("bad number in {mem:?}"))
    };
    Layout {
        kernel_bytes,
        memory_bytes: before("bytes"),
        present_pages: before("present"),
    }
}

/// Runs the guest in `mode` until its first report, checkpoints it (the
/// sandbox exits 0), restores it under a new id and returns (first report,
/// first report after the restore, statefile size, where the bytes went).
fn round_trip(mode: &str) -> (String, String, u64, Layout) {
    let s = Scratch::new();
    let root = s.root();
    let img = s.img();
    let prog = tmpfs_guest();
    let mut sb = Sandbox::run(&root, "T", &prog, &[mode]);
    let before = sb.next_line(START);
    // The guest sleeps a second between reports: checkpoint it now, while
    // it is asleep (for the chain: with no directory of it open).
    let out = checkpoint(&root, &img, "T");
    assert_eq!(
        out.code,
        0,
        "cryo checkpoint ({mode}): stderr {}",
        out.stderr_str()
    );
    let code = sb.wait_exit(EXIT);
    assert_eq!(
        code,
        0,
        "cryo do ({mode}) after checkpoint: stderr {}",
        sb.stderr_text()
    );
    let size = std::fs::metadata(img.join(STATEFILE))
        .unwrap_or_else(|e| panic!("statefile of {mode}: {e}"))
        .len();
    let layout = inspect(&img.join(STATEFILE));
    let mut restored = Sandbox::restore(&root, &img, "T2");
    // A report that was under way at the checkpoint may finish first; every
    // report re-reads the state, so any of them tells.
    let after = restored.next_line(START);
    (before, after, size, layout)
}

#[test]
fn zero_file_costs_no_statefile_space() {
    let (before, after, size, layout) = round_trip("zeros");
    assert_eq!(field(&before, "size"), (64u64 << 20).to_string());
    // FNV-1a of 64 MiB of zeros, as the guest computes it natively too.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..(64u64 << 20) {
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let zeros_sum = format!("{h:016x}");
    assert_eq!(field(&before, "sum"), zeros_sum, "{before}");
    assert!(
        size < 2 << 20,
        "a 64 MiB file of zeros in /tmp made a {size}-byte statefile (want < 2 MiB)"
    );
    // The file's pages are memory-file pages (all zero, so skipped), not
    // bytes in the kernel section.
    assert!(layout.kernel_bytes < 1 << 20, "{layout:?}");
    assert!(layout.memory_bytes >= 64 << 20, "{layout:?}");
    assert!(layout.present_pages < 1024, "{layout:?}");
    assert_eq!(field(&after, "sum"), zeros_sum, "after restore: {after}");
    assert_eq!(field(&after, "size"), field(&before, "size"));
}

#[test]
fn text_file_is_compressed_and_survives() {
    let (before, after, size, layout) = round_trip("text");
    assert_eq!(field(&before, "size"), (64u64 << 20).to_string());
    assert!(
        size < 16 << 20,
        "64 MiB of text in /tmp made a {size}-byte statefile (want < 16 MiB: compressed like memory)"
    );
    // The text travelled as memory pages, the kernel section holds only
    // where they are.
    assert!(layout.kernel_bytes < 1 << 20, "{layout:?}");
    assert!(layout.present_pages >= 16384, "{layout:?}");
    assert_eq!(
        field(&after, "sum"),
        field(&before, "sum"),
        "checksum changed across restore: before {before:?}, after {after:?}"
    );
    assert_eq!(field(&after, "size"), field(&before, "size"));
}

#[test]
fn shared_mapping_of_shm_file_stays_coherent() {
    let (before, after, _, _) = round_trip("shm");
    for (when, line) in [("before", &before), ("after restore", &after)] {
        assert_eq!(field(line, "map"), "mapped", "{when}: {line}");
        assert_eq!(
            field(line, "file"),
            "mapped",
            "{when}: read(2) does not see the mapping's write: {line}"
        );
        assert_eq!(field(line, "mapsees"), "wrote", "{when}: {line}");
        assert_eq!(field(line, "coherent"), "1", "{when}: {line}");
    }
}

#[test]
fn deep_directory_chain_survives() {
    let (before, after, _, layout) = round_trip("deep");
    // 20,000 small records, no contents.
    assert!(layout.kernel_bytes < 4 << 20, "{layout:?}");
    assert_eq!(field(&before, "depth"), "20000", "{before}");
    assert_eq!(field(&before, "marker"), "bottom", "{before}");
    assert_eq!(field(&after, "depth"), "20000", "after restore: {after}");
    assert_eq!(field(&after, "marker"), "bottom", "after restore: {after}");
}
