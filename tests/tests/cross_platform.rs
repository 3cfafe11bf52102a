//! A sandbox checkpointed on one platform restores on the other: the
//! statefile records the platform only as information. ckpt_threads (two
//! tasks: the leader in a futex wait, the worker in nanosleep, a pipe with
//! unread bytes, an open tmpfs file) is saved on ptrace and restored on
//! systrap, and the reverse, and keeps counting where it stopped.

use std::ffi::OsStr;
use std::time::Duration;

use cryo_tests::sandbox::{
    assert_ok, assert_only_statefile, checkpoint, cryo_command_on, platform_runs_here, Sandbox,
    Scratch, STATEFILE,
};
use cryo_tests::{guest, run_cryo_cli, Libc};

const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(10);

fn tick(line: &str) -> u64 {
    line.strip_prefix("tick=")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a tick line: {line:?}"))
}

fn move_between(from: &str, to: &str) {
    if !platform_runs_here(from) || !platform_runs_here(to) {
        return;
    }
    let s = Scratch::new("cryo-xplat-");
    let program = guest("ckpt_threads", Libc::Glibc);
    let id = format!("x-{from}");
    let mut a = Sandbox::run_with(cryo_command_on(&s.root(), from), &id, &program, &["1000"]);
    a.wait_lines(3, START);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, &id, &[]);
    assert_ok(&out, &format!("cryo checkpoint on {from}"));
    let code = a.wait_exit(EXIT);
    assert_eq!(
        code,
        0,
        "{from}: exit after checkpoint; stderr: {}",
        a.stderr_str()
    );
    assert_only_statefile(&img);
    // The statefile says where it was saved (as information only).
    let inspect = run_cryo_cli(&[OsStr::new("inspect"), img.join(STATEFILE).as_os_str()]);
    assert_ok(&inspect, "cryo inspect");
    assert!(
        inspect.stdout_str().contains(&format!("platform: {from}")),
        "saved on {from}: {}",
        inspect.stdout_str()
    );
    let before: Vec<u64> = a.lines().iter().map(|l| tick(l)).collect();
    let last = *before.last().expect("lines before the checkpoint");
    assert!(
        before.iter().enumerate().all(|(i, t)| *t == i as u64),
        "{from}: ticks {before:?}"
    );
    assert!(a.lines().iter().all(|l| l.ends_with("tid_differs=1")));

    let mut cmd = cryo_command_on(&s.root(), to);
    cmd.arg("restore")
        .arg("--image-path")
        .arg(&img)
        .args(["--id", &format!("x-{to}")]);
    let mut b = Sandbox::spawn(
        cmd,
        format!("cryo --platform {to} restore (saved on {from})"),
    );
    b.wait_lines(3, START);
    let after: Vec<u64> = b.lines().iter().map(|l| tick(l)).collect();
    assert_eq!(
        after[..3],
        [last + 1, last + 2, last + 3],
        "saved on {from}, restored on {to}: the worker continues; stderr: {}",
        b.stderr_str()
    );
    assert!(b.lines().iter().all(|l| l.ends_with("tid_differs=1")));
    assert!(b.is_running(), "the restored guest stopped early");
    b.kill();
}

#[test]
fn checkpoint_on_ptrace_restore_on_systrap() {
    move_between("ptrace", "systrap");
}

#[test]
fn checkpoint_on_systrap_restore_on_ptrace() {
    move_between("systrap", "ptrace");
}

/// `cryo doctor` tries every platform and says which run here and which is
/// the default.
#[test]
fn doctor_names_every_platform() {
    let out = run_cryo_cli(&["doctor"]);
    let text = out.stdout_str();
    for p in ["systrap", "ptrace"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("platform {p} ")))
            .unwrap_or_else(|| panic!("no line for {p}: {text}"));
        assert!(
            line.starts_with("ok ") || line.starts_with("no ") || line.starts_with("FAIL "),
            "{line}"
        );
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.ends_with(", the default"))
            .count(),
        usize::from(out.code == 0),
        "one default when cryo can run: {text}"
    );
}
