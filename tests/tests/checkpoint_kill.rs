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

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cryo_tests::sandbox::{
    assert_ok, checkpoint, cryo_command, cryo_command_under, Sandbox, Scratch, STATEFILE,
};
use cryo_tests::{exit_code, guest, isolate, run_cryo_cli, Libc};

const MIB: u32 = 256;
/// Boot (the guest fills its memory first), restore, exit: generous bounds
/// for a loaded 2-core machine; the usual times are about a second.
const START: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(15);
/// How long a checkpoint may hold the image directory after a kill.
const SETTLE: Duration = Duration::from_secs(30);

/// `cryo do --id ID -- ckpt_big 256`, once it has filled its memory.
/// `no_dac_read_search`: without CAP_DAC_READ_SEARCH (via setpriv), so
/// the sandbox must link its statefile in through /proc/self/fd rather
/// than with AT_EMPTY_PATH. A `CHECK` line (a page of its memory changed)
/// fails the test.
fn boot(root: &Path, id: &str, no_dac_read_search: bool) -> Sandbox {
    let program = guest("ckpt_big", Libc::Glibc);
    let cmd = if no_dac_read_search {
        cryo_command_under(
            &["setpriv", "--bounding-set", "-dac_read_search", "--"],
            root,
        )
    } else {
        cryo_command(root)
    };
    let mut sb = Sandbox::run_with(cmd, id, &program, &[MIB.to_string()]).failing_on("CHECK");
    sb.wait_ticks(1, START);
    assert!(
        sb.lines()[0].starts_with(&format!("ready mib={MIB} ")),
        "{}: first line {:?}",
        sb.what(),
        sb.lines()[0]
    );
    sb
}

/// `cryo restore` of a `ckpt_big` statefile; a `CHECK` line fails the test.
fn restore(root: &Path, img: &Path, id: &str) -> Sandbox {
    Sandbox::restore(root, img, id).failing_on("CHECK")
}

/// The `tick=` lines of a sandbox running `ckpt_big`.
trait Ticks {
    fn ticks(&self) -> usize;
    /// Waits until `n` more `tick=` lines than now have arrived (the guest
    /// checks one page of its memory before each).
    fn wait_ticks(&mut self, n: usize, timeout: Duration);
}

impl Ticks for Sandbox {
    fn ticks(&self) -> usize {
        count_ticks(self.lines())
    }

    fn wait_ticks(&mut self, n: usize, timeout: Duration) {
        let want = self.ticks() + n;
        self.wait_for(timeout, &format!("{n} more ticks"), |l| {
            count_ticks(l) >= want
        });
    }
}

fn count_ticks(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.starts_with("tick=")).count()
}

/// `cryo checkpoint --image-path IMG FLAGS ID`, not yet waited for.
fn start_checkpoint(root: &Path, img: &Path, id: &str, flags: &[&str]) -> Child {
    let mut cmd = cryo_command(root);
    cmd.arg("checkpoint").arg("--image-path").arg(img);
    cmd.args(flags).arg(id);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    isolate(&mut cmd);
    cmd.spawn().expect("spawning cryo checkpoint")
}

/// A whole checkpoint: its duration, after asserting it succeeded.
fn full_checkpoint(root: &Path, img: &Path, id: &str, flags: &[&str]) -> Duration {
    let t = Instant::now();
    let out = checkpoint(root, img, id, flags);
    let d = t.elapsed();
    assert_ok(
        &out,
        &format!("cryo checkpoint {flags:?} {id} into {}", img.display()),
    );
    d
}

/// `cryo inspect` verifies the header, the index and every section and
/// memory chunk checksum.
fn assert_valid(statefile: &Path, what: &str) {
    let out = run_cryo_cli(&[OsStr::new("inspect"), statefile.as_os_str()]);
    let stdout = out.stdout_str();
    assert!(
        out.code == 0 && stdout.contains("status: ok"),
        "{what}: {} is not a valid statefile: exit {}\n{}\n{}",
        statefile.display(),
        out.code,
        stdout,
        out.stderr_str()
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

impl Tally {
    /// A sweep saw (a), and (b) with the command killed before it finished.
    fn assert_both_outcomes(&self, sweep: &str) {
        eprintln!("{sweep}: {self:?}");
        assert!(
            self.untouched > 0,
            "{sweep}: no kill landed before the request: {self:?}"
        );
        assert!(
            self.saved_after_kill > 0,
            "{sweep}: no kill landed during a checkpoint: {self:?}"
        );
    }
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

fn scratch() -> Scratch {
    Scratch::new("cryo-ckpt-kill-")
}

#[test]
fn killed_checkpoint_without_leave_running() {
    let t0 = Instant::now();
    let s = scratch();
    let root = s.root();
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
    let mut sb = boot(&root, &id, false);
    let d = full_checkpoint(&root, &s.dir().join("measure"), &id, &["--leave-running"]);
    eprintln!("a whole checkpoint of {MIB} MiB takes {d:?}");
    std::fs::remove_dir_all(s.dir().join("measure")).unwrap();

    let mut tally = Tally::default();
    let mut restorable: Option<PathBuf> = None;
    for (i, delay) in delays(d).into_iter().enumerate() {
        let img = s.dir().join(format!("img{i}"));
        std::fs::create_dir_all(&img).unwrap();
        let what = format!("kill after {delay:?} (sandbox {id})");
        let finished = kill_after(start_checkpoint(&root, &img, &id, &[]), delay);
        wait_unlocked(&img, &what);
        let files = names(&img);
        if files.is_empty() {
            // (a): nothing written, nothing left, the sandbox runs on.
            assert_ne!(finished, Some(0), "{what}: exited 0 but wrote nothing");
            assert!(
                sb.is_running(),
                "{what}: no statefile, yet the sandbox is gone"
            );
            sb.wait_ticks(2, START);
            // A checkpoint that is not interrupted still works.
            let again = s.dir().join(format!("again{i}"));
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
            sb = boot(&root, &id, setpriv && boots % 2 == 0);
        }
        eprintln!("{what}: {}", if files.is_empty() { "(a)" } else { "(b)" });
    }
    tally.assert_both_outcomes("without --leave-running");

    // A statefile whose command was killed restores, and the guest's memory
    // checks pass.
    drop(sb);
    let img = restorable.expect("a statefile written after its command died");
    let mut r = restore(&root, &img, "R");
    r.wait_ticks(3, START);
    assert!(r.is_running(), "{}: exited", r.what());
    eprintln!("total {:?}", t0.elapsed());
}

#[test]
fn killed_checkpoint_with_leave_running_over_an_older_statefile() {
    let t0 = Instant::now();
    let s = scratch();
    let root = s.root();
    let mut sb = boot(&root, "L", false);
    // The older statefile every kill point starts from (hard-linked in, so
    // an untouched one keeps its inode and a replaced one gets a new one).
    let older_dir = s.dir().join("older");
    std::fs::create_dir_all(&older_dir).unwrap();
    // While a checkpoint holds the directory, another is refused at once.
    let held = File::open(&older_dir).unwrap();
    held.lock().unwrap();
    let out = checkpoint(&root, &older_dir, "L", &[]);
    let err = out.stderr_str();
    assert!(
        out.code == 125 && err.contains("in progress"),
        "checkpoint into a locked directory: exit {} {err}",
        out.code
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
        let img = s.dir().join(format!("img{i}"));
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
        assert!(sb.is_running(), "{what}: the sandbox is gone");
        sb.wait_ticks(2, START);
        if ino == older_ino {
            // (a): the older statefile is untouched.
            assert_ne!(finished, Some(0), "{what}: exited 0 but replaced nothing");
            let again = s.dir().join(format!("again{i}"));
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
    tally.assert_both_outcomes("with --leave-running");
    // The older statefile itself was never written to.
    assert_valid(&older, "the older statefile");
    assert!(sb.is_running(), "sandbox L exited");
    eprintln!("total {:?}", t0.elapsed());
}
