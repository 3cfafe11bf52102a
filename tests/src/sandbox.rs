//! Long-running sandboxes for the checkpoint/restore tests: `cryo do` and
//! `cryo restore` started in a process group of their own, their stdout
//! read line by line while the test acts on them (`cryo checkpoint`, a
//! signal, a kill), plus the scratch directories and the assertions those
//! tests share (the refusal contract, an image directory holding only its
//! statefile).
//!
//! Every wait has a timeout after which the test fails with what the
//! sandbox printed and its stderr; a dropped [`Sandbox`] kills its whole
//! process group, so a failing test leaves nothing running.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    cryo_bin, drain, exit_code, kill_group, run_cryo_cli, spawn_isolated, Output, BASE_ENV,
    CRYO_PASSTHROUGH,
};

/// The statefile's name inside an image directory.
pub const STATEFILE: &str = "checkpoint.cryo";

/// The exit status of every refusal of the CLI.
pub const REFUSED: i32 = 125;

/// The arguments of a program run without any (for [`Sandbox::run`]).
pub const NO_ARGS: &[&str] = &[];

/// The platform the tests run cryo on: `CRYO_TEST_PLATFORM` (e.g.
/// `systrap`), or cryo's own default when unset or empty.
pub fn test_platform() -> Option<String> {
    std::env::var("CRYO_TEST_PLATFORM")
        .ok()
        .filter(|p| !p.is_empty())
}

/// `--platform P` for [`test_platform`], or nothing.
pub fn platform_args() -> Vec<String> {
    test_platform()
        .map(|p| vec!["--platform".to_string(), p])
        .unwrap_or_default()
}

/// `cryo --root ROOT` with the base environment (plus the Sentry's logging
/// knob, `CRYO_LOG`, if set) and cwd `/`. [`Sandbox::spawn`] puts it in a
/// process group of its own; a caller that spawns it itself calls
/// [`crate::isolate`] first.
pub fn cryo_command(root: &Path) -> Command {
    cryo_command_under(&[], root)
}

/// Like [`cryo_command`], but `cryo` is started by `wrapper` (a program and
/// its arguments, e.g. `setpriv … --`) rather than directly.
pub fn cryo_command_under(wrapper: &[&str], root: &Path) -> Command {
    let mut cmd = base_command(wrapper, root);
    cmd.args(platform_args());
    cmd
}

/// `cryo --root ROOT --platform PLATFORM`, whatever `CRYO_TEST_PLATFORM`
/// says (for tests that move a sandbox between platforms).
pub fn cryo_command_on(root: &Path, platform: &str) -> Command {
    let mut cmd = base_command(&[], root);
    cmd.args(["--platform", platform]);
    cmd
}

fn base_command(wrapper: &[&str], root: &Path) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(cryo_bin());
            c
        }
        None => Command::new(cryo_bin()),
    };
    cmd.arg("--root").arg(root);
    cmd.env_clear()
        .envs(BASE_ENV.iter().copied())
        .current_dir("/");
    for key in CRYO_PASSTHROUGH {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd
}

/// `cryo --root ROOT ARGS…` to completion (with the harness's timeout).
pub fn cryo_cli<S: AsRef<OsStr>>(root: &Path, args: &[S]) -> Output {
    let mut all: Vec<OsString> = vec!["--root".into(), root.into()];
    // A command that names its platform keeps it.
    if !args.iter().any(|a| a.as_ref() == "--platform") {
        all.extend(platform_args().into_iter().map(OsString::from));
    }
    all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    run_cryo_cli(&all)
}

/// `cryo --root ROOT checkpoint --image-path IMG FLAGS… ID` to completion.
pub fn checkpoint(root: &Path, img: &Path, id: &str, flags: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("checkpoint"),
        OsStr::new("--image-path"),
        img.as_os_str(),
    ];
    args.extend(flags.iter().map(OsStr::new));
    args.push(OsStr::new(id));
    cryo_cli(root, &args)
}

/// What [`run_then_checkpoint`] gives: the output of a run to the end, and
/// what the checkpointed run printed before its checkpoint (the same start).
pub struct CheckpointedRun {
    pub reference: Vec<String>,
    pub before: Vec<String>,
}

/// Runs `program ARGS` in a sandbox to its end (`whole`: the reference),
/// then again as sandbox `A`, checkpointed into `img` once it has printed
/// `lines` lines (waiting up to `start` for them, `exit` for each end); checks that both exit 0 and that what `A` printed before
/// its checkpoint is the reference's beginning.
pub fn run_then_checkpoint<A: AsRef<OsStr>>(
    root: &Path,
    program: &Path,
    args: &[A],
    lines: usize,
    img: &Path,
    (start, exit): (Duration, Duration),
) -> CheckpointedRun {
    let mut whole = Sandbox::run(root, "whole", program, args);
    assert_eq!(whole.wait_exit(exit), 0, "{}", whole.stderr_str());
    let reference = whole.lines().to_vec();
    let mut a = Sandbox::run(root, "A", program, args);
    a.wait_lines(lines, start);
    assert_ok(&checkpoint(root, img, "A", &[]), "cryo checkpoint A");
    assert_eq!(a.wait_exit(exit), 0, "{}", a.stderr_str());
    let before = a.lines().to_vec();
    assert_eq!(
        before[..],
        reference[..before.len()],
        "before the checkpoint"
    );
    CheckpointedRun { reference, before }
}

/// The usual checkpoint test of a guest that prints `tick N` lines and
/// `done`: run to its end as the reference, run again as A and
/// checkpointed into `img` after `lines` lines, then restored twice (B,
/// C), each printing what the reference printed after A's last tick.
pub fn ticking_guest_restores_twice<A: AsRef<OsStr>>(
    root: &Path,
    program: &Path,
    args: &[A],
    lines: usize,
    img: &Path,
) {
    const START: Duration = Duration::from_secs(20);
    const EXIT: Duration = Duration::from_secs(30);
    let run = run_then_checkpoint(root, program, args, lines, img, (START, EXIT));
    assert_eq!(
        run.reference.last().map(String::as_str),
        Some("done"),
        "the reference run: {:?}",
        run.reference
    );
    let tick_of = |line: &str| line.strip_prefix("tick ")?.parse().ok();
    run.restores_go_on(root, img, &["B", "C"], tick_of, EXIT);
}

/// How many objects of saved type `type_name` (`net.UnixSocket`, ...) the
/// statefile in `img` holds, as `cryo inspect` lists them.
pub fn saved_objects(img: &Path, type_name: &str) -> usize {
    let shown = crate::run_cryo_cli(&[OsStr::new("inspect"), img.join(STATEFILE).as_os_str()]);
    assert_eq!(shown.code, 0, "cryo inspect: {}", shown.stderr_str());
    let prefix = format!("{type_name} ");
    shown
        .stdout_str()
        .lines()
        .filter(|l| l.trim_start().starts_with(&prefix) && l.contains('#'))
        .count()
}

impl CheckpointedRun {
    /// Restores `img` as sandboxes `ids` one after the other; each must
    /// exit 0 having printed exactly what the reference printed after the
    /// last tick the checkpointed run printed (`tick_of` reads a line's
    /// tick).
    pub fn restores_go_on(
        &self,
        root: &Path,
        img: &Path,
        ids: &[&str],
        tick_of: impl Fn(&str) -> Option<u64>,
        exit: Duration,
    ) {
        let last = self
            .before
            .iter()
            .filter_map(|l| tick_of(l))
            .max()
            .expect("ticks before the checkpoint");
        let from = self
            .reference
            .iter()
            .position(|l| tick_of(l) == Some(last + 1))
            .expect("the reference goes on after the checkpoint");
        for id in ids {
            let mut b = Sandbox::restore(root, img, id);
            assert_eq!(b.wait_exit(exit), 0, "restore {id}: {}", b.stderr_str());
            assert_eq!(b.lines(), &self.reference[from..], "restored sandbox {id}");
        }
    }
}

/// A `cryo do` / `cryo restore` running in its own process group, its stdout
/// read line by line by a thread and its stderr collected by another.
/// Dropping it kills the whole group.
pub struct Sandbox {
    what: String,
    child: Child,
    rx: Receiver<String>,
    /// Every stdout line received so far (without its newline).
    lines: Vec<String>,
    stdout_eof: bool,
    /// stdout ended in a line without a newline (the last of `lines`).
    unterminated: bool,
    /// A line starting with this fails the test as soon as it arrives.
    broken: Option<&'static str>,
    stderr: RefCell<Option<Receiver<Vec<u8>>>>,
    stderr_data: RefCell<Vec<u8>>,
    status: Option<i32>,
}

impl Sandbox {
    /// Spawns `cmd` (a `cryo` command, perhaps under a wrapper) in its own
    /// process group with stdin from /dev/null and stdout and stderr piped.
    /// `what` names it in failure messages.
    pub fn spawn(cmd: Command, what: impl Into<String>) -> Sandbox {
        let what = what.into();
        let mut child = spawn_isolated(cmd, Stdio::null(), &what);
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Each line is sent with its newline (if it has one), so the
            // text can be told apart from a last line cut short.
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = drain(child.stderr.take().expect("stderr was piped"));
        Sandbox {
            what,
            child,
            rx,
            lines: Vec::new(),
            stdout_eof: false,
            unterminated: false,
            broken: None,
            stderr: RefCell::new(Some(stderr)),
            stderr_data: RefCell::new(Vec::new()),
            status: None,
        }
    }

    /// `cryo --root ROOT do --id ID --cwd / --env K=V… -- PROGRAM ARGS…`
    /// with the base environment.
    pub fn run<A: AsRef<OsStr>>(root: &Path, id: &str, program: &Path, args: &[A]) -> Sandbox {
        Sandbox::run_with(cryo_command(root), id, program, args)
    }

    /// Like [`Sandbox::run`] with `cmd` as the `cryo --root ROOT` command
    /// (from [`cryo_command_under`], say).
    pub fn run_with<A: AsRef<OsStr>>(
        mut cmd: Command,
        id: &str,
        program: &Path,
        args: &[A],
    ) -> Sandbox {
        cmd.args(["do", "--id", id, "--cwd", "/"]);
        for (k, v) in BASE_ENV {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--").arg(program).args(args);
        let mut what = format!("cryo do --id {id} -- {}", program.display());
        for a in args {
            what.push(' ');
            what.push_str(&a.as_ref().to_string_lossy());
        }
        Sandbox::spawn(cmd, what)
    }

    /// `cryo --root ROOT restore --image-path IMG --id ID`
    pub fn restore(root: &Path, img: &Path, id: &str) -> Sandbox {
        let mut cmd = cryo_command(root);
        cmd.arg("restore")
            .arg("--image-path")
            .arg(img)
            .args(["--id", id]);
        Sandbox::spawn(
            cmd,
            format!("cryo restore --image-path {} --id {id}", img.display()),
        )
    }

    /// From now on, a stdout line starting with `prefix` (the guest reports
    /// a failed check of its own) fails the test as soon as it arrives.
    pub fn failing_on(mut self, prefix: &'static str) -> Sandbox {
        self.broken = Some(prefix);
        self
    }

    /// What this sandbox is, for messages.
    /// The host pid of the `cryo` process (the Sentry).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// Every stdout line received so far, without newlines.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// stdout received so far as text: the lines with their newlines (the
    /// last one without, if stdout ended in the middle of a line).
    pub fn stdout_text(&self) -> String {
        let mut text = self.lines.join("\n");
        if !self.lines.is_empty() && !self.unterminated {
            text.push('\n');
        }
        text
    }

    fn push(&mut self, mut line: String) {
        if line.ends_with('\n') {
            line.pop();
        } else {
            self.unterminated = true;
        }
        if let Some(prefix) = self.broken {
            if line.starts_with(prefix) {
                self.kill();
                panic!("{}: {line}; stderr:\n{}", self.what, self.final_stderr());
            }
        }
        self.lines.push(line);
    }

    /// Moves lines from the reader thread into `lines`, waiting until
    /// `deadline` for the first one. Returns false once stdout is closed
    /// and drained.
    fn pump(&mut self, deadline: Instant) -> bool {
        if self.stdout_eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(l) => self.push(l),
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_eof = true;
                return false;
            }
        }
        loop {
            match self.rx.try_recv() {
                Ok(l) => self.push(l),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    self.stdout_eof = true;
                    return false;
                }
            }
        }
    }

    /// Takes whatever lines have arrived, without waiting.
    pub fn drain(&mut self) {
        self.pump(Instant::now());
    }

    /// Waits until `done(lines)` holds, stdout closes or `timeout` passes;
    /// returns whether `done` holds.
    pub fn try_wait_for(&mut self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.lines) && !self.stdout_eof {
            if Instant::now() >= deadline {
                break;
            }
            self.pump(deadline);
        }
        done(&self.lines)
    }

    /// Waits until `done(lines)` holds; fails the test (naming `why`) after
    /// `timeout` or once stdout is closed without it.
    pub fn wait_for(&mut self, timeout: Duration, why: &str, done: impl Fn(&[String]) -> bool) {
        if !self.try_wait_for(timeout, done) {
            let status = self.try_status();
            self.kill();
            panic!(
                "{}: waited {timeout:?} for {why}; exit status {status:?}; {} lines, last {:?}; stderr:\n{}",
                self.what,
                self.lines.len(),
                &self.lines[self.lines.len().saturating_sub(3)..],
                self.final_stderr()
            );
        }
    }

    /// Waits until `n` lines have arrived in all.
    pub fn wait_lines(&mut self, n: usize, timeout: Duration) {
        self.wait_for(timeout, &format!("{n} lines"), |l| l.len() >= n);
    }

    /// Waits for the process to exit and its stdout and stderr to close;
    /// returns the exit code (death by signal N as 128+N). Fails the test
    /// after `timeout`, or if a descendant keeps stdout open.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if let Some(code) = self.status {
            return code;
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{}: still running after {timeout:?}; last line {:?}; stderr:\n{}",
                    self.what,
                    self.lines.last(),
                    self.final_stderr()
                );
            }
            self.pump((Instant::now() + Duration::from_millis(20)).min(deadline));
        };
        let code = exit_code(status);
        self.status = Some(code);
        // The pipes close once the last holder exits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pump(deadline) {
            assert!(
                Instant::now() < deadline,
                "{}: exited but its stdout stayed open",
                self.what
            );
        }
        self.collect_stderr(deadline);
        code
    }

    fn collect_stderr(&self, deadline: Instant) {
        let rx = self.stderr.borrow_mut().take();
        if let Some(rx) = rx {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(buf) => *self.stderr_data.borrow_mut() = buf,
                Err(_) => panic!("{}: exited but its stderr stayed open", self.what),
            }
        }
    }

    /// All of stderr once the process is dead (waits briefly for it).
    fn final_stderr(&self) -> String {
        let rx = self.stderr.borrow_mut().take();
        if let Some(rx) = rx {
            if let Ok(buf) = rx.recv_timeout(Duration::from_secs(3)) {
                *self.stderr_data.borrow_mut() = buf;
            }
        }
        self.stderr_str()
    }

    /// stderr so far: all of it once the process has exited, else whatever
    /// is known (the reader hands it over only at EOF).
    pub fn stderr_str(&self) -> String {
        let mut slot = self.stderr.borrow_mut();
        if let Some(rx) = slot.as_ref() {
            if let Ok(buf) = rx.try_recv() {
                *self.stderr_data.borrow_mut() = buf;
                *slot = None;
            }
        }
        String::from_utf8_lossy(&self.stderr_data.borrow()).into_owned()
    }

    /// The exit code if the process has exited, without waiting.
    pub fn try_status(&mut self) -> Option<i32> {
        self.status
            .or_else(|| self.child.try_wait().ok().flatten().map(exit_code))
    }

    pub fn is_running(&mut self) -> bool {
        self.status.is_none() && self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signo` to the `cryo` process itself (not its group).
    pub fn signal(&self, signo: libc::c_int) {
        // SAFETY: kill(2) of the child this harness started; it touches no
        // memory of this process.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, signo) };
        assert_eq!(
            r,
            0,
            "{}: kill({signo}): {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILLs the whole process group and reaps the child.
    pub fn kill(&mut self) {
        if let Some(s) = kill_group(&mut self.child) {
            self.status.get_or_insert(exit_code(s));
        }
    }

    /// Kills the whole group and returns all of its stderr (for a failure
    /// message).
    pub fn kill_and_stderr(&mut self) -> String {
        self.kill();
        self.final_stderr()
    }

    /// Waits until the process group is gone (cryo, its gofer, anything
    /// else it started in its group).
    pub fn assert_group_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            // SAFETY: signal 0 only checks for existence.
            let r = unsafe { libc::kill(-(self.child.id() as libc::pid_t), 0) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: processes of its group are still running after it exited",
                self.what
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A temporary directory for a test's `--root`, image directories and host
/// files; removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new directory under the host's temporary directory, its name
    /// starting with `prefix`.
    pub fn new(prefix: &str) -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .unwrap_or_else(|e| panic!("a scratch directory {prefix}…: {e}")),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` inside the scratch directory (not created).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `root/`, created: the `--root` of the test's sandboxes.
    pub fn root(&self) -> PathBuf {
        let root = self.path("root");
        std::fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        root
    }
}

/// Exit 0, or the test fails with the command's stderr.
pub fn assert_ok(out: &Output, what: &str) {
    assert_eq!(
        out.code,
        0,
        "{what}: exit {}; stderr: {}",
        out.code,
        out.stderr_str()
    );
}

/// Exit 125, exactly one line on stderr, starting with `cryo` and
/// containing every one of `needles` (at least one: a refusal for the wrong
/// reason must not pass).
pub fn assert_refused(code: i32, stderr: &str, what: &str, needles: &[&str]) {
    assert!(
        !needles.is_empty(),
        "{what}: say what the refusal must name"
    );
    assert_eq!(
        code, REFUSED,
        "{what}: expected exit {REFUSED}, got {code}; stderr: {stderr}"
    );
    let trimmed = stderr.trim_end();
    assert_eq!(
        trimmed.lines().count(),
        1,
        "{what}: expected a one-line error, got:\n{stderr}"
    );
    assert!(
        trimmed.starts_with("cryo"),
        "{what}: error does not start with `cryo`: {trimmed}"
    );
    for n in needles {
        assert!(
            trimmed.contains(n),
            "{what}: error should mention {n:?}: {trimmed}"
        );
    }
    eprintln!("{what}: refused as expected: {trimmed}");
}

/// Runs `cryo restore` of `img` as sandbox `R`, expected to be refused:
/// exit 125 with one line mentioning `needles`, nothing printed, its
/// process group gone, no record left under `root`.
pub fn assert_restore_refused(root: &Path, img: &Path, what: &str, needles: &[&str]) {
    let mut r = Sandbox::restore(root, img, "R");
    let code = r.wait_exit(Duration::from_secs(20));
    let err = r.stderr_str();
    assert_refused(code, &err, what, needles);
    assert!(
        r.lines().is_empty(),
        "{what}: the refused restore printed {:?}",
        r.lines()
    );
    r.assert_group_gone();
    assert_no_record(root, "R");
}

/// Every non-directory under `dir` (recursively); empty if `dir` is absent.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Exactly `IMG/checkpoint.cryo` and nothing else (no temporary files).
pub fn assert_only_statefile(img: &Path) {
    let files = files_under(img);
    assert_eq!(
        files,
        vec![img.join(STATEFILE)],
        "image directory {} holds {files:?}",
        img.display()
    );
}

/// The sandbox's record is gone from `--root` (nothing half-registered).
pub fn assert_no_record(root: &Path, id: &str) {
    assert!(
        !root.join(id).exists(),
        "{} is still recorded under {}: {:?}",
        id,
        root.display(),
        files_under(&root.join(id))
    );
}

/// Whether this host runs platform `name` (as `cryo doctor` finds it). If
/// not, says "SKIPPED: <reason>" on stderr and records it in
/// `<target>/tmp/skipped.log` (which tests/scripts/test.sh reports), so a
/// test that cannot run is never mistaken for a pass.
pub fn platform_runs_here(name: &str) -> bool {
    let out = run_cryo_cli(&["doctor"]);
    let doctor = out.stdout_str();
    let line = doctor
        .lines()
        .find(|l| l.contains(&format!("platform {name} ")))
        .unwrap_or("cryo doctor does not know it")
        .to_string();
    if line.starts_with("ok ") {
        return true;
    }
    skip(&format!("needs the {name} platform: {}", line.trim()));
    false
}

/// Says "SKIPPED: <reason>" on stderr and records it in
/// `<target>/tmp/skipped.log`, which tests/scripts/test.sh reports at the
/// end of the suite.
pub fn skip(reason: &str) {
    let msg = format!("SKIPPED: {reason}");
    eprintln!("{msg}");
    let log = crate::target_dir().join("tmp").join("skipped.log");
    let _ = std::fs::create_dir_all(crate::target_dir().join("tmp"));
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{msg}"))
        .unwrap_or_else(|e| panic!("{msg} — and cannot record it in {}: {e}", log.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Sandbox {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        Sandbox::spawn(cmd, format!("sh -c {script:?}"))
    }

    #[test]
    fn lines_and_text_keep_a_last_line_without_newline_apart() {
        let mut sb = sh("printf 'one\\ntwo\\n'; printf 'three' >&2; exit 3");
        assert_eq!(sb.wait_exit(Duration::from_secs(10)), 3);
        assert_eq!(sb.lines(), ["one", "two"]);
        assert_eq!(sb.stdout_text(), "one\ntwo\n");
        assert_eq!(sb.stderr_str(), "three");

        let mut sb = sh("printf 'one\\ntwo'");
        assert_eq!(sb.wait_exit(Duration::from_secs(10)), 0);
        assert_eq!(sb.lines(), ["one", "two"]);
        assert_eq!(sb.stdout_text(), "one\ntwo");
    }

    #[test]
    fn a_killed_group_is_gone_and_reports_the_signal() {
        // The shell's child holds stdout too: the whole group must die.
        let mut sb = sh("echo up; sleep 60 & wait");
        sb.wait_lines(1, Duration::from_secs(10));
        assert!(sb.is_running());
        sb.kill();
        assert_eq!(sb.try_status(), Some(128 + libc::SIGKILL));
        sb.assert_group_gone();
    }

    #[test]
    fn try_wait_for_gives_up_at_eof() {
        let mut sb = sh("echo only");
        assert!(!sb.try_wait_for(Duration::from_secs(10), |l| l.len() >= 2));
        assert_eq!(sb.lines(), ["only"]);
    }

    #[test]
    #[should_panic(expected = "CHECK FAILED page 3")]
    fn a_broken_line_fails_at_once() {
        let mut sb = sh("echo ok; echo 'CHECK FAILED page 3'; sleep 60").failing_on("CHECK");
        sb.wait_lines(5, Duration::from_secs(10));
    }
}
