//! `cryo checkpoint --leave-running` with a near-zero stall (issue 15): the
//! program stops only while the kernel state is captured and its memory
//! frozen copy-on-write, and runs while its memory is written out. The
//! `ckpt_freeze` guest rewrites all of its 64 MiB continuously (by its own
//! stores, by read(2) from a pipe, and a tmpfs file by pwrite(2) and through
//! a MAP_SHARED mapping) and checks everything each pass; its restored
//! copy notices it was restored (its real-time clock jumped) and checks
//! its memory and file at once against what they held at the freeze,
//! which it knows from where it was frozen. So a statefile holding any
//! page as it was after the freeze rather than at it fails here, and so
//! does an original that the freeze disturbed.
//!
//! A save that fails halfway (the image directory fills up) while the
//! program runs leaves no statefile and the program running, unharmed.
//!
//! Runs on the platform `CRYO_TEST_PLATFORM` names, like every e2e test
//! (tests/scripts/test.sh runs them on both).

use std::ffi::CString;
use std::path::Path;
use std::thread;
use std::time::Duration;

use cryo_tests::sandbox::{
    assert_ok, assert_only_statefile, assert_refused, checkpoint, files_under, Sandbox, Scratch,
};
use cryo_tests::{guest, Libc};

/// The guest fills 64 MiB before its first line; a pass is slow on ptrace.
const START: Duration = Duration::from_secs(60);
const PASSES: Duration = Duration::from_secs(60);

/// A field `name=value` of a guest line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in guest line {line:?}"))
}

fn pass_of(line: &str) -> u64 {
    field(line, "pass")
        .parse()
        .unwrap_or_else(|_| panic!("bad pass in {line:?}"))
}

/// The last pass the sandbox has reported.
fn last_pass(s: &Sandbox) -> u64 {
    s.lines()
        .iter()
        .rev()
        .find(|l| l.starts_with("pass="))
        .map_or(0, |l| pass_of(l))
}

#[test]
fn leave_running_saves_memory_as_frozen_while_the_program_writes() {
    let s = Scratch::new("freeze");
    let program = guest("ckpt_freeze", Libc::Glibc);
    let mut a = Sandbox::run(&s.root(), "A", &program, &["64"]).failing_on("BAD");
    // Two passes: the program is in its steady loop, rewriting everything.
    a.wait_lines(2, START);
    a.drain();
    let before = last_pass(&a);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "A", &["--leave-running"]);
    assert_ok(&out, "cryo checkpoint --leave-running A");
    assert_only_statefile(&img);
    a.drain();
    let at_return = last_pass(&a);

    // The original carries on, each pass checked by the program itself,
    // across the save and after its protections are gone.
    a.wait_for(
        PASSES,
        "the original to pass the checkpoint by 2 passes",
        |l| {
            l.last()
                .is_some_and(|l| l.starts_with("pass=") && pass_of(l) >= at_return + 2)
        },
    );
    assert!(a.is_running(), "the original stopped: {}", a.stderr_str());

    // More than the guest's 700 ms since the freeze: the restored copy
    // sees its real-time clock jump and checks itself at once.
    thread::sleep(Duration::from_millis(1500));
    let mut b = Sandbox::restore(&s.root(), &img, "B").failing_on("BAD");
    b.wait_for(
        START,
        "the restored copy's check and two passes after it",
        |l| {
            l.iter()
                .position(|l| l.starts_with("restored "))
                .is_some_and(|i| l[i..].iter().filter(|l| l.starts_with("pass=")).count() >= 2)
        },
    );
    // Its first line is its check — or, if it was frozen in the write(2)
    // of a pass's line (which it then makes again), that line, then the
    // check.
    let at = b
        .lines()
        .iter()
        .position(|l| l.starts_with("restored "))
        .unwrap_or(usize::MAX);
    assert!(
        at <= 1,
        "the restored copy printed {:?} before its check at the freeze",
        &b.lines()[..at.min(b.lines().len())]
    );
    let restored = b.lines()[at].clone();
    let frozen_pass = pass_of(&restored);
    assert!(
        before < frozen_pass && frozen_pass <= at_return + 1,
        "frozen in pass {frozen_pass}, but the checkpoint ran between passes {before} and {at_return}"
    );
    assert_eq!(
        field(&restored, "mem"),
        field(&restored, "expect"),
        "the restored memory is not what the program held at the freeze: {restored}"
    );
    assert_eq!(
        field(&restored, "file"),
        field(&restored, "fexpect"),
        "the restored tmpfs file is not what it held at the freeze: {restored}"
    );
    // Then it goes on exactly as the original did: the same checked
    // memory and file at the end of each pass.
    let b_passes: Vec<String> = b.lines()[..at + 3]
        .iter()
        .filter(|l| l.starts_with("pass="))
        .cloned()
        .collect();
    assert_eq!(pass_of(&b_passes[at]), frozen_pass, "{b_passes:?}");
    let want = pass_of(b_passes.last().expect("two passes"));
    a.wait_for(PASSES, "the original to reach the restored passes", |l| {
        l.last()
            .is_some_and(|l| l.starts_with("pass=") && pass_of(l) >= want)
    });
    for line in &b_passes {
        let p = pass_of(line);
        let original = a
            .lines()
            .iter()
            .find(|l| l.starts_with("pass=") && pass_of(l) == p)
            .unwrap_or_else(|| panic!("the original printed no pass {p}: {:?}", a.lines()));
        assert_eq!(
            line, original,
            "pass {p}: restored copy and original differ"
        );
    }
    assert!(
        !a.lines().iter().any(|l| l.starts_with("restored")),
        "the original saw its clock jump (a long stall?): {:?}",
        a.lines()
    );

    // A second --leave-running checkpoint of the same program (the first
    // one's freeze ended) works as well, and the original still checks out.
    let again = s.path("again");
    assert_ok(
        &checkpoint(&s.root(), &again, "A", &["--leave-running"]),
        "a second cryo checkpoint --leave-running A",
    );
    a.drain();
    let second = last_pass(&a);
    a.wait_for(PASSES, "the original to pass the second checkpoint", |l| {
        l.last()
            .is_some_and(|l| l.starts_with("pass=") && pass_of(l) > second)
    });
    assert!(a.is_running(), "the original stopped: {}", a.stderr_str());
}

#[test]
fn leave_running_freezes_every_thread_of_the_program() {
    // Three more threads rewrite 8 MiB each while the main one does its
    // 64 MiB, pipe and file: every thread is stopped at the freeze, and
    // every thread of the restored copy finds its memory as it was then.
    const THREADS: usize = 4;
    let s = Scratch::new("freeze-threads");
    let program = guest("ckpt_freeze", Libc::Glibc);
    let mut a = Sandbox::run(&s.root(), "A", &program, &["64", "-1", "4"]).failing_on("BAD");
    a.wait_lines(2, START);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "A", &["--leave-running"]);
    assert_ok(&out, "cryo checkpoint --leave-running A");
    a.drain();
    let at_return = last_pass(&a);
    a.wait_for(PASSES, "the original to go on by 2 passes", |l| {
        l.last()
            .is_some_and(|l| l.starts_with("pass=") && pass_of(l) >= at_return + 2)
    });
    thread::sleep(Duration::from_millis(1500));
    let mut b = Sandbox::restore(&s.root(), &img, "B").failing_on("BAD");
    b.wait_for(START, "every thread's check and two passes", |l| {
        l.iter().filter(|l| l.starts_with("restored")).count() == THREADS
            && l.iter().filter(|l| l.starts_with("pass=")).count() >= 2
    });
    for line in b.lines().iter().filter(|l| l.starts_with("restored")) {
        assert_eq!(
            field(line, "mem"),
            field(line, "expect"),
            "a restored thread's memory is not what it held at the freeze: {line}"
        );
        if !line.contains("thread=") {
            assert_eq!(field(line, "file"), field(line, "fexpect"), "{line}");
        }
    }
    assert!(
        !a.lines().iter().any(|l| l.starts_with("restored")),
        "the original saw its clock jump: {:?}",
        a.lines()
    );
    assert!(a.is_running(), "the original stopped: {}", a.stderr_str());
}

#[test]
fn leave_running_failing_halfway_leaves_nothing_and_the_program_running() {
    // The image directory is on a 2 MiB tmpfs: the statefile of 64 MiB of
    // memory the guest keeps rewriting (hardly compressible) runs out of
    // space while it is written in the background, the program running.
    let s = Scratch::new("freeze-full");
    let small = s.path("small");
    std::fs::create_dir_all(&small).unwrap();
    // The tests run as root (cryo itself needs it): a refused mount is a
    // broken setup, not a reason to pass.
    let _tmpfs = SmallTmpfs::mount(&small)
        .unwrap_or_else(|e| panic!("cannot mount a tmpfs on {}: {e}", small.display()));
    let program = guest("ckpt_freeze", Libc::Glibc);
    let mut a = Sandbox::run(&s.root(), "A", &program, &["64"]).failing_on("BAD");
    a.wait_lines(1, START);
    let img = small.join("img");
    let out = checkpoint(&s.root(), &img, "A", &["--leave-running"]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint --leave-running onto a full tmpfs",
        &["No space left on device"],
    );
    let left = files_under(&small);
    assert!(left.is_empty(), "the failed checkpoint left {left:?}");
    a.drain();
    let at = a.lines().len();
    a.wait_for(PASSES, "the original to go on checking itself", |l| {
        l.len() >= at + 2
    });
    assert!(a.is_running(), "the original stopped: {}", a.stderr_str());
    // The freeze is over: a checkpoint that fits works afterwards.
    let good = s.path("good");
    assert_ok(
        &checkpoint(&s.root(), &good, "A", &["--leave-running"]),
        "a checkpoint after the failed one",
    );
    assert_only_statefile(&good);
}

/// A small tmpfs mounted over a directory of the test's own, unmounted on
/// drop.
struct SmallTmpfs(CString);

impl SmallTmpfs {
    fn mount(dir: &Path) -> std::io::Result<SmallTmpfs> {
        let target = CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: mount(2) with valid NUL-terminated strings; it touches no
        // memory of this process.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=2m".as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SmallTmpfs(target))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        // SAFETY: umount2(2) of the mount made above.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}
