//! `cryo checkpoint` SIGKILLed at any instant keeps its promise (DESIGN.md,
//! "Checkpoint and restore"; cli/src/checkpoint_cmd.rs): afterwards either
//! (a) there is no new statefile — nothing at all in the image directory,
//!     or the older `checkpoint.cryo` untouched (same inode) — and the
//!     sandbox is still running (and can still be checkpointed), or
//! (b) `checkpoint.cryo` is new, complete and valid (`cryo inspect` checks
//!     every checksum), and the sandbox is gone — or, with
//!     `--leave-running`, still running;
//! with no temporary file left in the image directory either way.
//!
//! A `ckpt_big` guest holds 256 MiB of incompressible memory, so a
//! checkpoint takes a measurable time. Its duration D is measured first;
//! then the command is killed after a sweep of delays from 0 ms (before it
//! even runs) through its start-up to past D, once writing into an empty
//! directory without `--leave-running` and once with `--leave-running
//! --force` over an older statefile. After each kill the test waits until
//! the outcome has settled — the image directory's lock is free (a
//! checkpoint in progress holds it, through the command, the request in
//! flight and the sandbox alike) — and asserts (a) or (b) exactly. Each
//! sweep must see both outcomes, and at least one (b) whose command was
//! killed before it finished. One statefile written after its command was
//! killed is restored and must run on with intact memory. Every other
//! sandbox of the first sweep runs without CAP_DAC_READ_SEARCH, so both
//! ways a sandbox links its unnamed statefile in (AT_EMPTY_PATH, and
//! /proc/self/fd when that is refused) are killed around.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use cryo_tests::{cryo_bin, exit_code, guest, isolate, Libc, BASE_ENV};

const STATEFILE: &str = "checkpoint.cryo";
const MIB: u32 = 256;
/// Boot (the guest fills its memory first), restore, exit: generous bounds
/// for a loaded 2-core machine; the usual times are about a second.
const START: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(15);
/// How long a checkpoint may hold the image directory after a kill.
const SETTLE: Duration = Duration::from_secs(30);

fn cryo(root: &Path) -> Command {
    let mut cmd = Command::new(cryo_bin());
    cmd.arg("--root").arg(root);
    cmd.env_clear()
        .envs(BASE_ENV.iter().copied())
        .current_dir("/");
    if let Some(v) = std::env::var_os("CRYO_LOG") {
        cmd.env("CRYO_LOG", v);
    }
    isolate(&mut cmd);
    cmd
}

/// A `cryo do` / `cryo restore` of `ckpt_big`, its stdout read by a thread;
/// the whole process group is killed on drop.
struct Sandbox {
    what: String,
    child: Child,
    rx: Receiver<String>,
    lines: Vec<String>,
    status: Option<i32>,
}

impl Sandbox {
    fn spawn(mut cmd: Command, what: String) -> Sandbox {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot spawn: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sandbox {
            what,
            child,
            rx,
            lines: Vec::new(),
            status: None,
        }
    }

    /// `cryo do --id ID -- ckpt_big 256`, once it has filled its memory.
    /// `no_dac_read_search`: without CAP_DAC_READ_SEARCH (via setpriv), so
    /// the sandbox must link its statefile in through /proc/self/fd rather
    /// than with AT_EMPTY_PATH.
    fn boot(root: &Path, id: &str, no_dac_read_search: bool) -> Sandbox {
        let program = guest("ckpt_big", Libc::Glibc);
        let mut cmd = if no_dac_read_search {
            let mut c = Command::new("setpriv");
            c.args(["--bounding-set", "-dac_read_search", "--"])
                .arg(cryo_bin())
                .arg("--root")
                .arg(root);
            c.env_clear()
                .envs(BASE_ENV.iter().copied())
                .current_dir("/");
            isolate(&mut c);
            c
        } else {
            cryo(root)
        };
        cmd.args(["do", "--id", id, "--cwd", "/"]);
        for (k, v) in BASE_ENV {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--").arg(&program).arg(MIB.to_string());
        let mut sb = Sandbox::spawn(cmd, format!("cryo do --id {id} -- ckpt_big {MIB}"));
        sb.wait_ticks(1, START);
        assert!(
            sb.lines[0].starts_with(&format!("ready mib={MIB} ")),
            "{}: first line {:?}",
            sb.what,
            sb.lines[0]
        );
        sb
    }

    fn restore(root: &Path, img: &Path, id: &str) -> Sandbox {
        let mut cmd = cryo(root);
        cmd.arg("restore").arg("--image-path").arg(img);
        cmd.args(["--id", id]);
        Sandbox::spawn(
            cmd,
            format!("cryo restore --image-path {} --id {id}", img.display()),
        )
    }

    fn ticks(&self) -> usize {
        self.lines.iter().filter(|l| l.starts_with("tick=")).count()
    }

    /// Waits until `n` more `tick=` lines than now have arrived (the guest
    /// checks one page of its memory before each).
    fn wait_ticks(&mut self, n: usize, timeout: Duration) {
        let want = self.ticks() + n;
        let deadline = Instant::now() + timeout;
        while self.ticks() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    assert!(!l.starts_with("CHECK"), "{}: {l}", self.what);
                    self.lines.push(l);
                }
                Err(e) => {
                    let status = self.child.try_wait().ok().flatten().map(exit_code);
                    panic!(
                        "{}: no tick within {timeout:?} ({}; exit status {status:?}); last lines {:?}",
                        self.what,
                        if e == RecvTimeoutError::Timeout {
                            "timed out"
                        } else {
                            "stdout closed"
                        },
                        &self.lines[self.lines.len().saturating_sub(3)..]
                    );
                }
            }
        }
    }

    fn alive(&mut self) -> bool {
        self.status.is_none() && self.child.try_wait().expect("try_wait").is_none()
    }

    fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.status {
                return code;
            }
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(exit_code(s));
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running {timeout:?} after its checkpoint",
                self.what
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) of the process group this test created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cryo checkpoint --image-path IMG FLAGS ID`, not yet waited for.
fn start_checkpoint(root: &Path, img: &Path, id: &str, flags: &[&str]) -> Child {
    let mut cmd = cryo(root);
    cmd.arg("checkpoint").arg("--image-path").arg(img);
    cmd.args(flags).arg(id);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("spawning cryo checkpoint")
}

/// A whole checkpoint: its duration, after asserting it succeeded.
fn full_checkpoint(root: &Path, img: &Path, id: &str, flags: &[&str]) -> Duration {
    let t = Instant::now();
    let mut cmd = cryo(root);
    cmd.arg("checkpoint").arg("--image-path").arg(img);
    let out = cmd
        .args(flags)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("running cryo checkpoint");
    assert!(
        out.status.success(),
        "cryo checkpoint {flags:?} {id} into {}: {:?}; stderr: {}",
        img.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// `cryo inspect` verifies the header, the index and every section and
/// memory chunk checksum.
fn assert_valid(statefile: &Path, what: &str) {
    let out = Command::new(cryo_bin())
        .arg("inspect")
        .arg(statefile)
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .output()
        .expect("running cryo inspect");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("status: ok"),
        "{what}: {} is not a valid statefile: {:?}\n{}\n{}",
        statefile.display(),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(statefile).expect("statefile").len();
    assert!(
        size > u64::from(MIB) << 20,
        "{what}: a statefile of {size} bytes cannot hold {MIB} MiB of incompressible memory"
    );
}

/// Every name in `dir`, dotfiles included, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// Waits until no checkpoint holds `dir` (its flock is free): from then on
/// nothing will appear in it.
fn wait_unlocked(dir: &Path, what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let f = File::open(dir).unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()));
        match f.try_lock() {
            Ok(()) => return,
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => panic!("locking {}: {e}", dir.display()),
        }
        drop(f);
        assert!(
            Instant::now() < deadline,
            "{what}: {} still locked {SETTLE:?} after the command was killed",
            dir.display()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Kill delays: dense through the command's start-up (where it connects
/// and sends its request), then spread over the checkpoint, then past it.
fn delays(d: Duration) -> Vec<Duration> {
    let mut v: Vec<Duration> = [0, 1, 2, 3, 4, 6, 10]
        .into_iter()
        .map(Duration::from_millis)
        .collect();
    for pct in [15, 35, 55, 75, 95, 130] {
        v.push(d * pct / 100);
    }
    v
}

#[derive(Debug, Default)]
struct Tally {
    /// (a): no new statefile, sandbox running.
    untouched: usize,
    /// (b) with the command killed before it exited.
    saved_after_kill: usize,
    /// (b) with the command already done when the kill came.
    saved_before_kill: usize,
}

/// Spawns the checkpoint, kills it after `delay`, reaps it. Returns whether
/// it had already exited (and its exit status then).
fn kill_after(mut cmd: Child, delay: Duration) -> Option<i32> {
    thread::sleep(delay);
    let finished = cmd.try_wait().expect("try_wait").map(exit_code);
    let _ = cmd.kill();
    let _ = cmd.wait();
    finished
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cryo-ckpt-kill-")
        .tempdir()
        .expect("scratch dir")
}

#[test]
fn killed_checkpoint_without_leave_running() {
    let t0 = Instant::now();
    let s = scratch();
    let root = s.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut boots = 1;

    // Half the sandboxes of this sweep run without CAP_DAC_READ_SEARCH, so
    // both ways the sandbox links its statefile in are killed around.
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !setpriv {
        eprintln!("setpriv not found: every sandbox links with AT_EMPTY_PATH");
    }
    let mut id = format!("K{boots}");
    let mut sb = Sandbox::boot(&root, &id, false);
    let d = full_checkpoint(&root, &s.path().join("measure"), &id, &["--leave-running"]);
    eprintln!("a whole checkpoint of {MIB} MiB takes {d:?}");
    std::fs::remove_dir_all(s.path().join("measure")).unwrap();

    let mut tally = Tally::default();
    let mut restorable: Option<PathBuf> = None;
    for (i, delay) in delays(d).into_iter().enumerate() {
        let img = s.path().join(format!("img{i}"));
        std::fs::create_dir_all(&img).unwrap();
        let what = format!("kill after {delay:?} (sandbox {id})");
        let finished = kill_after(start_checkpoint(&root, &img, &id, &[]), delay);
        wait_unlocked(&img, &what);
        let files = names(&img);
        if files.is_empty() {
            // (a): nothing written, nothing left, the sandbox runs on.
            assert_ne!(finished, Some(0), "{what}: exited 0 but wrote nothing");
            assert!(sb.alive(), "{what}: no statefile, yet the sandbox is gone");
            sb.wait_ticks(2, START);
            // A checkpoint that is not interrupted still works.
            let again = s.path().join(format!("again{i}"));
            full_checkpoint(&root, &again, &id, &["--leave-running"]);
            assert_eq!(names(&again), [STATEFILE], "{what}: after the retry");
            std::fs::remove_dir_all(&again).unwrap();
            sb.wait_ticks(1, START);
            assert!(
                names(&img).is_empty(),
                "{what}: {:?} appeared late",
                names(&img)
            );
            tally.untouched += 1;
        } else {
            // (b): exactly the statefile, valid; the sandbox exits.
            assert_eq!(
                files,
                [STATEFILE],
                "{what}: image directory holds {files:?}"
            );
            assert_valid(&img.join(STATEFILE), &what);
            let code = sb.wait_exit(EXIT);
            assert_eq!(code, 0, "{what}: the checkpointed sandbox exited {code}");
            assert!(
                !root.join(&id).exists(),
                "{what}: the sandbox's record is still under --root"
            );
            match finished {
                Some(code) => {
                    assert_eq!(code, 0, "{what}: the command finished with {code}");
                    tally.saved_before_kill += 1;
                }
                None => {
                    tally.saved_after_kill += 1;
                    restorable.get_or_insert(img.clone());
                }
            }
            boots += 1;
            id = format!("K{boots}");
            sb = Sandbox::boot(&root, &id, setpriv && boots % 2 == 0);
        }
        eprintln!("{what}: {}", if files.is_empty() { "(a)" } else { "(b)" });
    }
    eprintln!("without --leave-running: {tally:?}");
    assert!(
        tally.untouched > 0,
        "no kill landed before the request: {tally:?}"
    );
    assert!(
        tally.saved_after_kill > 0,
        "no kill landed during a checkpoint: {tally:?}"
    );

    // A statefile whose command was killed restores, and the guest's memory
    // checks pass.
    drop(sb);
    let img = restorable.expect("a statefile written after its command died");
    let mut r = Sandbox::restore(&root, &img, "R");
    r.wait_ticks(3, START);
    assert!(r.alive(), "{}: exited", r.what);
    eprintln!("total {:?}", t0.elapsed());
}

#[test]
fn killed_checkpoint_with_leave_running_over_an_older_statefile() {
    let t0 = Instant::now();
    let s = scratch();
    let root = s.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut sb = Sandbox::boot(&root, "L", false);
    // The older statefile every kill point starts from (hard-linked in, so
    // an untouched one keeps its inode and a replaced one gets a new one).
    let older_dir = s.path().join("older");
    std::fs::create_dir_all(&older_dir).unwrap();
    // While a checkpoint holds the directory, another is refused at once.
    let held = File::open(&older_dir).unwrap();
    held.lock().unwrap();
    let mut refused = cryo(&root);
    let out = refused
        .arg("checkpoint")
        .arg("--image-path")
        .arg(&older_dir)
        .arg("L")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(125) && err.contains("in progress"),
        "checkpoint into a locked directory: {:?} {err}",
        out.status
    );
    drop(held);
    // What an older cryo, or a sandbox killed between its link and its
    // rename, may leave is removed by the next checkpoint into the directory.
    std::fs::write(older_dir.join(".checkpoint.cryo.a1B2c3.tmp"), b"partial").unwrap();
    std::fs::write(older_dir.join(".checkpoint.cryo.42.17.link"), b"whole").unwrap();
    assert_eq!(names(&older_dir).len(), 2);
    let d = full_checkpoint(&root, &older_dir, "L", &["--leave-running"]);
    eprintln!("a whole checkpoint of {MIB} MiB takes {d:?}");
    assert_eq!(names(&older_dir), [STATEFILE], "leftovers were not removed");
    let older = older_dir.join(STATEFILE);
    let older_ino = std::fs::metadata(&older).unwrap().ino();

    let mut tally = Tally::default();
    let flags = ["--leave-running", "--force"];
    for (i, delay) in delays(d).into_iter().enumerate() {
        let img = s.path().join(format!("img{i}"));
        std::fs::create_dir_all(&img).unwrap();
        std::fs::hard_link(&older, img.join(STATEFILE)).unwrap();
        let what = format!("kill after {delay:?} (--leave-running --force)");
        let finished = kill_after(start_checkpoint(&root, &img, "L", &flags), delay);
        wait_unlocked(&img, &what);
        let files = names(&img);
        assert_eq!(
            files,
            [STATEFILE],
            "{what}: image directory holds {files:?}"
        );
        let ino = std::fs::metadata(img.join(STATEFILE)).unwrap().ino();
        // Either way the sandbox runs on.
        assert!(sb.alive(), "{what}: the sandbox is gone");
        sb.wait_ticks(2, START);
        if ino == older_ino {
            // (a): the older statefile is untouched.
            assert_ne!(finished, Some(0), "{what}: exited 0 but replaced nothing");
            let again = s.path().join(format!("again{i}"));
            full_checkpoint(&root, &again, "L", &["--leave-running"]);
            assert_eq!(names(&again), [STATEFILE], "{what}: after the retry");
            std::fs::remove_dir_all(&again).unwrap();
            let ino = std::fs::metadata(img.join(STATEFILE)).unwrap().ino();
            assert_eq!(ino, older_ino, "{what}: the statefile was replaced late");
            tally.untouched += 1;
        } else {
            // (b): a new, complete statefile replaced it.
            assert_valid(&img.join(STATEFILE), &what);
            match finished {
                Some(code) => {
                    assert_eq!(code, 0, "{what}: the command finished with {code}");
                    tally.saved_before_kill += 1;
                }
                None => tally.saved_after_kill += 1,
            }
        }
        assert_eq!(names(&img), [STATEFILE], "{what}: stray files appeared");
        std::fs::remove_dir_all(&img).unwrap();
        eprintln!("{what}: {}", if ino == older_ino { "(a)" } else { "(b)" });
    }
    eprintln!("with --leave-running: {tally:?}");
    assert!(
        tally.untouched > 0,
        "no kill landed before the request: {tally:?}"
    );
    assert!(
        tally.saved_after_kill > 0,
        "no kill landed during a checkpoint: {tally:?}"
    );
    // The older statefile itself was never written to.
    assert_valid(&older, "the older statefile");
    assert!(sb.alive(), "sandbox L exited");
    eprintln!("total {:?}", t0.elapsed());
}
