//! End-to-end tests: guests run natively and under cryo, outputs compared.
//!
//! The harness in this crate:
//! - finds the `cryo` binary ([`cryo_bin`]): `$CRYO_BIN` if set, otherwise the
//!   newest of `{$CARGO_TARGET_DIR,<workspace>/target}/{release,debug}/cryo`;
//! - compiles the C guests in `tests/guests/` at test time ([`guest`]) with
//!   `gcc -static` or `musl-gcc -static` into `<target>/guests/`, rebuilding a
//!   guest only when its source (or `common.h`) is newer than the binary (a
//!   missing compiler fails the test: the setup is broken);
//! - runs a program natively ([`run_native`]) or under `cryo do`
//!   ([`run_cryo`]) with the same arguments, environment, working directory
//!   and stdin, each with a timeout after which the child's process group is
//!   killed and the test fails;
//! - compares the two runs ([`assert_same`]) and prints a line diff;
//! - keeps sandboxes running while a test checkpoints, restores, signals or
//!   kills them ([`sandbox`]).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub mod confined;
pub mod host_procs;
pub mod sandbox;

/// How long any single run (native or cryo) may take before it is killed,
/// unless `$CRYO_TEST_TIMEOUT` (seconds) says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(60);

fn timeout() -> Duration {
    static T: OnceLock<Duration> = OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("CRYO_TEST_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(TIMEOUT)
    })
}

/// The environment every program gets, natively and in the sandbox (plus
/// whatever a test adds). Fixed so that outputs do not depend on the
/// developer's shell: `LC_ALL=C` pins sorting and message language.
pub const BASE_ENV: &[(&str, &str)] = &[("PATH", "/usr/local/bin:/usr/bin:/bin"), ("LC_ALL", "C")];

/// Host variables passed to the `cryo` process itself: the Sentry's logging
/// knob. `cryo do` hands its own environment to the guest, as `runsc do`
/// does, so only a variable a developer sets on purpose belongs here (cargo
/// sets RUST_BACKTRACE for tests, which would leak into every guest).
pub(crate) const CRYO_PASSTHROUGH: &[&str] = &["CRYO_LOG"];

/// Which C library a guest is linked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libc {
    Glibc,
    Musl,
}

/// The result of one run. `code` folds a death by signal N into 128+N, the
/// convention `cryo do` uses for its own exit status, so native and cryo
/// runs compare directly.
#[derive(Clone, Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What to run: a program, its arguments, environment, working directory
/// and stdin. The same `Invocation` is given to [`Invocation::native`] and
/// [`Invocation::cryo`].
#[derive(Clone, Debug)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Sorted, so the native environment (which `std::process::Command`
    /// also keeps sorted) and cryo's `--env` list are in the same order.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub stdin: Vec<u8>,
}

impl Invocation {
    pub fn new(program: impl AsRef<Path>) -> Self {
        Invocation {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: BASE_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: PathBuf::from("/"),
            stdin: Vec::new(),
        }
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Replaces the whole environment (the base one included).
    pub fn env_exact(mut self, vars: &[(&str, &str)]) -> Self {
        self.env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().to_path_buf();
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = data.into();
        self
    }

    /// Runs the program directly on the host.
    pub fn native(&self) -> Output {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd);
        run_command(cmd, &self.stdin, &format!("native {}", self.describe()))
    }

    /// Runs the program on the host in a mount namespace of its own with
    /// private propagation (`unshare -m --propagation private`), so the
    /// mounts it makes go when it ends and never reach the host's tree.
    pub fn native_in_private_mount_ns(&self) -> Output {
        self.native_under(
            &["unshare", "-m", "--propagation", "private", "--"],
            "private mount namespace",
        )
    }

    /// Runs the program on the host in a network namespace of its own with
    /// only `lo`, up (`unshare -n`, then `ip link set lo up`), so its
    /// ephemeral ports and /proc/net are its own and never meet another
    /// test's running beside it on the host's loopback.
    pub fn native_in_private_net_ns(&self) -> Output {
        self.native_under(
            &[
                "unshare",
                "-n",
                "--",
                "sh",
                "-c",
                "PATH=/usr/sbin:/sbin:$PATH ip link set lo up && exec \"$0\" \"$@\"",
            ],
            "network namespace of its own",
        )
    }

    /// Runs the program on the host under `wrapper` (a command that ends by
    /// executing its arguments).
    fn native_under(&self, wrapper: &[&str], what: &str) -> Output {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd);
        run_command(
            cmd,
            &self.stdin,
            &format!("native ({what}) {}", self.describe()),
        )
    }

    /// Runs the program under `cryo do --cwd DIR --env K=V… -- PROGRAM ARGS…`.
    ///
    /// The `cryo` process itself gets the same environment as the guest
    /// (plus [`CRYO_PASSTHROUGH`] logging variables), so the guest sees the
    /// same variables whether cryo passes only `--env` or also its own.
    pub fn cryo(&self) -> Output {
        let mut cmd = Command::new(cryo_bin());
        cmd.args(sandbox::platform_args());
        cmd.arg("do").arg("--cwd").arg(&self.cwd);
        for (k, v) in &self.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg("--").arg(&self.program).args(&self.args);
        cmd.env_clear().envs(&self.env);
        for key in CRYO_PASSTHROUGH {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        run_command(cmd, &self.stdin, &format!("cryo do {}", self.describe()))
    }

    fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// Runs `cmd args` natively with the base environment, cwd `/` and `stdin`.
pub fn run_native(cmd: impl AsRef<Path>, args: &[&str], stdin: &[u8]) -> Output {
    Invocation::new(cmd).args(args).stdin(stdin).native()
}

/// Runs `cryo do -- cmd args` with the base environment, cwd `/` and `stdin`.
pub fn run_cryo(cmd: impl AsRef<Path>, args: &[&str], stdin: &[u8]) -> Output {
    Invocation::new(cmd).args(args).stdin(stdin).cryo()
}

/// Runs the `cryo` binary itself with raw command-line arguments (for the
/// CLI's own error paths), with the base environment and empty stdin.
pub fn run_cryo_cli<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let mut cmd = Command::new(cryo_bin());
    cmd.args(args)
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .current_dir("/");
    let shown: Vec<_> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    run_command(cmd, b"", &format!("cryo {}", shown.join(" ")))
}

/// Makes `cmd` start in a process group of its own (so a hung run can be
/// killed whole) with only fds 0, 1 and 2.
pub fn isolate(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: the closure only makes a raw syscall, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Fds the test runner may have leaked (e.g. a jobserver) are
            // marked close-on-exec so that every run starts with exactly
            // 0, 1 and 2, as in the sandbox. Failure (old kernel) is harmless.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
}

/// Spawns `cmd` in its own process group with piped stdio, feeds `stdin`,
/// collects stdout/stderr, and kills the whole group if it outlives
/// the timeout (a hang is a test failure, not a stuck suite).
fn run_command(cmd: Command, stdin: &[u8], what: &str) -> Output {
    let mut child = spawn_isolated(cmd, Stdio::piped(), what);

    let stdin_data = stdin.to_vec();
    let mut child_stdin = child.stdin.take().expect("stdin was piped");
    // A program that does not read its stdin closes the pipe: EPIPE is fine.
    thread::spawn(move || {
        let _ = child_stdin.write_all(&stdin_data);
    });
    let stdout_rx = drain(child.stdout.take().expect("stdout was piped"));
    let stderr_rx = drain(child.stderr.take().expect("stderr was piped"));

    let deadline = Instant::now() + timeout();
    let status = wait_until(&mut child, deadline).unwrap_or_else(|| {
        kill_group(&mut child);
        panic!(
            "{what}: timed out after {} s; the process group was killed",
            timeout().as_secs()
        )
    });
    // The pipes close when the last holder exits; if a stray descendant
    // keeps them open, give up at the deadline rather than hang.
    let mut collect = |rx: mpsc::Receiver<Vec<u8>>, name: &str| {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        rx.recv_timeout(left).unwrap_or_else(|_| {
            kill_group(&mut child);
            panic!("{what}: exited but its {name} stayed open (a descendant still holds it)")
        })
    };
    let stdout = collect(stdout_rx, "stdout");
    let stderr = collect(stderr_rx, "stderr");
    Output {
        code: exit_code(status),
        stdout,
        stderr,
    }
}

/// Spawns `cmd` in its own process group ([`isolate`]) with `stdin` and
/// piped stdout and stderr; a failure to start fails the test.
pub(crate) fn spawn_isolated(mut cmd: Command, stdin: Stdio, what: &str) -> Child {
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolate(&mut cmd);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn: {e}"))
}

pub(crate) fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs the process group `child` leads (see [`isolate`]) and reaps
/// the child; its exit status unless it was reaped before.
pub(crate) fn kill_group(child: &mut Child) -> Option<ExitStatus> {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) of the process group we created for this child.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.kill();
    child.wait().ok()
}

/// The exit code, with death by signal N reported as 128+N.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => panic!("exit status {status:?} has neither a code nor a signal"),
    }
}

/// Asserts that the two runs have the same exit status, stdout and stderr.
pub fn assert_same(native: &Output, cryo: &Output) {
    compare(native, cryo, true);
}

/// Like [`assert_same`] but ignores stderr (programs whose diagnostics
/// legitimately differ, e.g. mention a path or a kernel version).
pub fn assert_same_stdout(native: &Output, cryo: &Output) {
    compare(native, cryo, false);
}

fn compare(native: &Output, cryo: &Output, with_stderr: bool) {
    let mut report = String::new();
    if native.code != cryo.code {
        let _ = writeln!(
            report,
            "exit status differs: native {} vs cryo {}",
            native.code, cryo.code
        );
    }
    if native.stdout != cryo.stdout {
        let _ = writeln!(
            report,
            "stdout differs (- native, + cryo):\n{}",
            diff(&native.stdout, &cryo.stdout)
        );
    }
    if with_stderr && native.stderr != cryo.stderr {
        let _ = writeln!(
            report,
            "stderr differs (- native, + cryo):\n{}",
            diff(&native.stderr, &cryo.stderr)
        );
    } else if !report.is_empty() && !cryo.stderr.is_empty() {
        // cryo's stderr usually says why (an unimplemented syscall, a panic).
        let _ = writeln!(report, "cryo stderr:\n{}", clip(&cryo.stderr_str(), 4000));
    }
    assert!(report.is_empty(), "native and cryo runs differ\n{report}");
}

/// A readable line diff: LCS for modest sizes, otherwise the first
/// difference with a few lines of context.
pub fn diff(a: &[u8], b: &[u8]) -> String {
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    let al: Vec<&str> = a.split_inclusive('\n').collect();
    let bl: Vec<&str> = b.split_inclusive('\n').collect();
    let show =
        |sign: char, line: &str| format!("{sign} {}\n", clip(line.trim_end_matches('\n'), 200));
    let mut out = String::new();
    if al.len() * bl.len() > 4_000_000 {
        let first = al
            .iter()
            .zip(&bl)
            .position(|(x, y)| x != y)
            .unwrap_or(al.len().min(bl.len()));
        let _ = writeln!(
            out,
            "(outputs too long for a full diff: {} vs {} lines; first difference at line {})",
            al.len(),
            bl.len(),
            first + 1
        );
        for line in &al[first.saturating_sub(3)..(first + 4).min(al.len())] {
            out += &show('-', line);
        }
        for line in &bl[first.saturating_sub(3)..(first + 4).min(bl.len())] {
            out += &show('+', line);
        }
        return out;
    }
    // lcs[i][j] = length of the LCS of al[i..] and bl[j..].
    let (n, m) = (al.len(), bl.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if al[i] == bl[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut shown) = (0, 0, 0);
    while (i < n || j < m) && shown < 200 {
        if i < n && j < m && al[i] == bl[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &show('+', bl[j]);
            j += 1;
            shown += 1;
        } else {
            out += &show('-', al[i]);
            i += 1;
            shown += 1;
        }
    }
    if shown == 200 {
        out += "(diff truncated)\n";
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The cargo target directory of this test run: `$CARGO_TARGET_DIR`, else
/// the one holding the running test binary (`<target>/<profile>/deps/…`),
/// else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_dir().join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// The `cryo` binary: `$CRYO_BIN` if set, else the most recently built of
/// `{$CARGO_TARGET_DIR, <workspace>/target}/{release,debug}/cryo`.
pub fn cryo_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CRYO_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "CRYO_BIN={} does not exist", bin.display());
            return bin;
        }
        let mut roots = Vec::new();
        if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
            roots.push(PathBuf::from(dir));
        }
        roots.push(workspace_dir().join("target"));
        let candidates: Vec<PathBuf> = roots
            .iter()
            .flat_map(|root| ["release", "debug"].map(|profile| root.join(profile).join("cryo")))
            .collect();
        candidates
            .iter()
            .filter_map(|path| Some((mtime(path)?, path)))
            .max_by_key(|(time, _)| *time)
            .map(|(_, path)| path.clone())
            .unwrap_or_else(|| {
                let looked: Vec<_> = candidates.iter().map(|p| p.display().to_string()).collect();
                panic!(
                    "cryo binary not found: run `cargo build -p cli` first (or set CRYO_BIN); looked at {}",
                    looked.join(", ")
                )
            })
    })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok())
}

/// Directory holding the guest sources.
pub fn guests_src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guests")
}

/// Compiles `tests/guests/<name>.c` statically against `libc` (once; again
/// only when the source or `common.h` is newer than the binary) and returns
/// the binary's path. A missing compiler (gcc, or musl-gcc from
/// musl-tools) is a broken test setup — `tests/scripts/deps.sh` installs
/// both — and fails the test, as do compiler errors (with the compiler's
/// output).
pub fn guest(name: &str, libc: Libc) -> PathBuf {
    let (compiler, suffix) = match libc {
        Libc::Glibc => ("gcc", ""),
        Libc::Musl => ("musl-gcc", ".musl"),
    };
    let src_dir = guests_src_dir();
    let src = src_dir.join(format!("{name}.c"));
    assert!(src.is_file(), "no guest source {}", src.display());
    let out_dir = target_dir().join("guests");
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", out_dir.display()));
    let out = out_dir.join(format!("{name}{suffix}"));

    let newest_input = [src.clone(), src_dir.join("common.h")]
        .iter()
        .filter_map(|p| mtime(p))
        .max();
    let fresh =
        || matches!((mtime(&out), newest_input), (Some(built), Some(input)) if built >= input);
    if fresh() {
        return out;
    }
    // One build at a time, across this process's threads and across test
    // processes: a guest rebuilt (a new inode) under a sandbox that runs it
    // would look like a changed file to a restore.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _in_process = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let lock_path = out_dir.join(".build.lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    if fresh() {
        return out;
    }
    // Build under a unique name and rename into place, so tests compiling
    // the same guest concurrently never see a half-written binary.
    let tmp = out_dir.join(format!(
        ".{name}{suffix}.{}.{:?}.tmp",
        std::process::id(),
        thread::current().id()
    ));
    let result = Command::new(compiler)
        .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {compiler}: {e} (a broken test setup: run tests/scripts/deps.sh)")
        });
    assert!(
        result.status.success(),
        "{compiler} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), out.display()));
    out
}

/// A unique path under the host's /tmp (not created).
pub fn unique_tmp_path(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    PathBuf::from(format!("/tmp/{prefix}-{}-{nanos}", std::process::id()))
}

/// Unmounts whatever is mounted at or below `dir` (deepest first): podman's
/// overlay driver bind-mounts its storage onto itself, which would outlive
/// a test's scratch directory.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(p)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
