//! Golden-state testing with `cryo diff` on itself: `data/diff-v1.cryo`
//! (a `cryo do` sandbox of the static guest `guests/diff_idle.c`, which
//! made a directory of two files and sleeps) is restored, told by SIGUSR1
//! to run its one command (a child that creates a file, removes one and
//! appends to the third), and `cryo diff` of the committed statefile
//! against the running sandbox must print exactly `data/diff-v1.expect`:
//! the committed change set (after its two header lines, which name the
//! sides).
//!
//! Like the real guest's, the statefile maps its executable, which comes
//! with it (`data/diff-v1.diff_idle`, placed where the manifest says). A
//! new one: `CRYO_NEW_DIFF_GOLDEN=1 cargo test -p cryo-golden --test
//! diff_golden -- --ignored regenerate_diff_golden` (refuses to replace
//! the committed files; review the `.expect` it writes before committing).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cryo_golden::data_dir;
use cryo_tests::sandbox::{
    assert_ok, checkpoint, cryo_cli, cryo_command, Sandbox, Scratch, STATEFILE,
};

const START: Duration = Duration::from_secs(30);
/// Where the executable must be (the statefile's mappings name it).
const EXE: &str = "/tmp/cryo-golden/diff-v1/diff_idle";
/// The guest's directory in the sandbox: the overlay's upper layer.
const DIR: &str = "/tmp/cryo-golden-diff-v1";
const ID: &str = "golden-diff-v1";

fn data(ext: &str) -> PathBuf {
    data_dir().join(format!("diff-v1.{ext}"))
}

/// Puts a copy of `from` at `to` (mode 0755), atomically; an identical
/// file already there is kept.
fn place(to: &Path, from: &Path) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() == Some(&bytes[..]) {
        return;
    }
    let dir = to.parent().expect("an absolute path has a parent");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tmp = tempfile::Builder::new()
        .prefix(".place-")
        .tempfile_in(dir)
        .unwrap_or_else(|e| panic!("a temporary file in {}: {e}", dir.display()));
    std::fs::write(tmp.path(), &bytes).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp.persist(to)
        .unwrap_or_else(|e| panic!("renaming into {}: {e}", to.display()));
}

/// Restores `statefile`, signals the guest once, and returns what `cryo
/// diff STATEFILE SANDBOX` printed after its header, with its exit code.
fn restored_change_set(statefile: &Path) -> (i32, Vec<String>) {
    let scratch = Scratch::new("cryo-golden-diff-");
    let root = scratch.root();
    let img = scratch.path("img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::copy(statefile, img.join(STATEFILE))
        .unwrap_or_else(|e| panic!("{}: {e}", statefile.display()));
    let mut r = Sandbox::restore(&root, &img, ID);
    // Once: a second signal would be a second change of the guest's memory.
    // Until the restored sandbox answers, the kill is refused (not sent).
    let mut sent = false;
    for _ in 0..300 {
        if cryo_cli(&root, &["kill", ID, "USR1"]).code == 0 {
            sent = true;
            break;
        }
        if !r.is_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        sent,
        "the restored sandbox never took SIGUSR1; stderr:\n{}",
        r.kill_and_stderr()
    );
    r.wait_for(START, "the guest's change", |l| {
        l.iter().any(|l| l.starts_with("changed "))
    });
    assert_eq!(
        r.lines().last().map(String::as_str),
        Some("changed 0"),
        "the guest's child failed"
    );
    let out = cryo_cli(&root, &["diff", statefile.to_str().unwrap(), ID]);
    let stderr = out.stderr_str();
    r.kill();
    let lines: Vec<String> = out
        .stdout_str()
        .lines()
        .skip(2)
        .map(str::to_string)
        .collect();
    assert!(
        out.code == 0 || out.code == 1,
        "cryo diff: exit {}; stderr: {stderr}",
        out.code
    );
    (out.code, lines)
}

#[test]
fn diff_of_a_restored_golden_statefile_is_the_committed_change_set() {
    place(Path::new(EXE), &data("diff_idle"));
    let expect: Vec<String> = std::fs::read_to_string(data("expect"))
        .expect("data/diff-v1.expect")
        .lines()
        .map(str::to_string)
        .collect();
    // The expectation itself names the command's changes (an .expect that
    // lost them would make the test weaker without failing it).
    for needle in [
        "processes:",
        &format!("  + pid 2 (ppid 1) {EXE} change {DIR}: started and ended, exit 0"),
        &format!("  + {DIR}/x (file, 0 bytes)"),
        &format!("  - {DIR}/gone (file, 4 bytes)"),
        &format!("  ~ {DIR}/keep (file, 11 -> 17 bytes): size, content"),
        "    +gamma",
    ] {
        assert!(
            expect.iter().any(|l| l == needle),
            "{needle:?} is not in data/diff-v1.expect"
        );
    }
    let (code, got) = restored_change_set(&data("cryo"));
    assert_eq!(code, 1, "changes: exit 1");
    assert_eq!(
        got,
        expect,
        "cryo diff differs from data/diff-v1.expect (- expected, + got):\n{}",
        cryo_tests::diff(expect.join("\n").as_bytes(), got.join("\n").as_bytes())
    );
    // And nothing between the committed statefile and itself.
    let out = cryo_cli(
        Path::new("/nonexistent-root"),
        &[
            "diff",
            data("cryo").to_str().unwrap(),
            data("cryo").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr_str());
}

#[test]
#[ignore = "writes golden/data/diff-v1.*: CRYO_NEW_DIFF_GOLDEN=1"]
fn regenerate_diff_golden() {
    if std::env::var_os("CRYO_NEW_DIFF_GOLDEN").is_none() {
        eprintln!("SKIPPED: set CRYO_NEW_DIFF_GOLDEN=1 to write golden/data/diff-v1.*");
        return;
    }
    for ext in ["cryo", "expect", "diff_idle"] {
        assert!(
            !data(ext).exists(),
            "{} exists: golden files are never replaced",
            data(ext).display()
        );
    }
    let scratch = Scratch::new("cryo-golden-diff-gen-");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/diff_idle.c");
    let built = scratch.path("diff_idle");
    let cc = Command::new("musl-gcc")
        .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&built)
        .arg(&src)
        .output()
        .expect("musl-gcc (tests/scripts/deps.sh installs musl-tools)");
    assert!(
        cc.status.success(),
        "musl-gcc failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    place(Path::new(EXE), &built);
    let root = scratch.root();
    // The baseline x86-64 CPU: the statefile restores on any x86-64 host.
    let mut cmd = cryo_command(&root);
    cmd.args(["--cpu-features", "x86-64"]);
    let mut run = Sandbox::run_with(cmd, "golden-diff-gen", Path::new(EXE), &["serve", DIR]);
    run.wait_for(START, "ready", |l| l.iter().any(|l| l == "ready"));
    let img = scratch.path("img");
    assert_ok(
        &checkpoint(&root, &img, "golden-diff-gen", &[]),
        "cryo checkpoint",
    );
    run.wait_exit(Duration::from_secs(10));
    let statefile = img.join(STATEFILE);
    let (code, lines) = restored_change_set(&statefile);
    assert_eq!(code, 1, "the generated statefile's diff names changes");
    std::fs::copy(&statefile, data("cryo")).unwrap();
    std::fs::copy(&built, data("diff_idle")).unwrap();
    std::fs::write(data("expect"), lines.join("\n") + "\n").unwrap();
    eprintln!(
        "wrote {}, {} and {}: review the expected change set before committing",
        data("cryo").display(),
        data("diff_idle").display(),
        data("expect").display()
    );
}
