//! A container's terminal (process.terminal, `exec --tty`): the process's
//! controlling terminal is a pty of the sandbox, its host side a host pty
//! whose master goes over `--console-socket`. python3 plays conmon (listens,
//! receives the master, types, resizes, reads); podman drives cryo through
//! a real terminal; and the errors of a terminal with nowhere to go.
//! A client that is not installed prints "SKIPPED: <reason>".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cryo_tests::sandbox::cryo_command;
use cryo_tests::{cryo_bin, Output};

/// What one command may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(90);

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "tty", "stty", "true", "test", "[", "id", "ls",
];

/// A scratch directory: `--root`, a bundle with a busybox root.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = Env { dir };
        let rootfs = env.rootfs();
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static is installed (tests/scripts/deps.sh)");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }

    /// A config.json: `cryo spec`, the root writable, then `edit`.
    fn spec(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.bundle().join("config.json");
        let _ = std::fs::remove_file(&path);
        let out = self.cryo(&["spec", "--bundle", self.bundle().to_str().unwrap()]);
        assert_eq!(out.code, 0, "spec: {}", out.stderr_str());
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["root"]["readonly"] = false.into();
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    }

    /// `cryo --root ROOT ARGS` to completion.
    fn cryo(&self, args: &[&str]) -> Output {
        let mut cmd = cryo_command(&self.root());
        cmd.args(args);
        run(cmd, &format!("cryo {}", args.join(" ")))
    }

    /// What is left under --root (nothing after a failed create).
    fn left_under_root(&self) -> Vec<String> {
        std::fs::read_dir(self.root())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Env {
    /// A failing test leaves no sandbox running.
    fn drop(&mut self) {
        for id in self.left_under_root() {
            let mut cmd = cryo_command(&self.root());
            cmd.args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
        cryo_tests::unmount_under(self.dir.path());
    }
}

/// Runs `cmd` with its output captured, failing the test after TIMEOUT.
fn run(mut cmd: Command, what: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = Instant::now() + TIMEOUT;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break cryo_tests::exit_code(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {TIMEOUT:?}; stdout {:?} stderr {:?}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        .to_str()
        .unwrap_or("")
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// conmon's part: listens on argv[1], starts argv[2:] (a cryo command
/// given `--console-socket argv[1]`), receives the master (runc's
/// protocol: one SCM_RIGHTS fd, the name as the message), then plays the
/// steps $STEPS names through it and prints the transcript and the status.
const CONSOLE_PEER: &str = r#"
import array, fcntl, json, os, select, socket, struct, subprocess, sys, termios, time

path, cmd = sys.argv[1], sys.argv[2:]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(1)
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
listener.settimeout(60)
conn, _ = listener.accept()
msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
fds = array.array("i")
for level, kind, data in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(data[: len(data) - len(data) % 4])
print("fds", len(fds), "name", msg.decode())
m = fds[0]
seen = b""

def fail(why):
    print("FAILED", why, "transcript", repr(seen))
    proc.kill()
    sys.exit(1)

def until(marker, every=None, limit=60.0):
    # Reads the master until `marker`; `every`: keys sent again each half
    # second meanwhile (a ^C that must find the command started).
    global seen
    deadline = time.time() + limit
    resend = 0.0
    while marker not in seen:
        now = time.time()
        if now > deadline:
            fail("waiting for %r" % marker)
        if every is not None and now >= resend:
            os.write(m, every)
            resend = now + 0.5
        r, _, _ = select.select([m], [], [], 0.5)
        if r:
            try:
                chunk = os.read(m, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                fail("hangup waiting for %r" % marker)
            seen += chunk

def to_the_end():
    # The container's end: the master reads EIO once it has exited.
    global seen
    while True:
        r, _, _ = select.select([m], [], [], 60)
        if not r:
            fail("no hangup")
        try:
            chunk = os.read(m, 4096)
        except OSError as e:
            return os.strerror(e.errno)
        if not chunk:
            return "eof"
        seen += chunk

steps = os.environ["STEPS"]
if steps == "dialog":
    until(b"ready\r\n")
    fcntl.ioctl(m, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    until(b"WINCH 30 100\r\n")
    until(b"type:")
    os.write(m, b"hello\r")
    until(b"got <hello>\r\n")
    until(b"sleeping\r\n")
    until(b"sleep status 130\r\n", every=b"\x03")
    print("hangup", to_the_end())
elif steps == "close":
    # The master's owner goes away: the sandbox's terminal hangs up.
    until(b"ready\r\n")
    os.close(m)
elif steps == "restored":
    # A restored container's terminal, on the new master: it goes on
    # counting; ^C ends it (its trap's status).
    deadline = time.time() + 60
    while seen.count(b"\r\n") < 6:
        if time.time() > deadline:
            fail("the restored container does not count on")
        r, _, _ = select.select([m], [], [], 1.0)
        if r:
            seen += os.read(m, 4096)
    os.write(m, b"\x03")
    print("hangup", to_the_end())
elif steps == "checkpoint":
    until(b"\r\n3\r\n")
    ck = subprocess.run(json.loads(os.environ["CHECKPOINT"]), capture_output=True)
    print("checkpoint", ck.returncode, ck.stderr.decode())
    print("hangup", to_the_end())
print("status", proc.wait(timeout=60))
print("transcript", repr(seen))
"#;

/// `python3` as conmon for `cryo SUBCOMMAND --console-socket SOCK REST`,
/// playing `steps`.
fn with_console_peer(env: &Env, steps: &str, args: &[&str], extra: &[(&str, String)]) -> String {
    let sock = env.dir.path().join(format!("{steps}.sock"));
    let cryo = cryo_command(&env.root());
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(CONSOLE_PEER)
        .arg(&sock)
        .arg(cryo.get_program());
    cmd.args(cryo.get_args());
    // The console socket goes right after the subcommand.
    let (sub, rest) = args.split_first().unwrap();
    cmd.arg(sub).arg("--console-socket").arg(&sock).args(rest);
    cmd.env("STEPS", steps);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let o = run(cmd, &format!("python3 as conmon, cryo {}", args.join(" ")));
    let out = o.stdout_str();
    assert_eq!(o.code, 0, "{out}\n{}", o.stderr_str());
    assert!(out.contains("fds 1 name /dev/ptmx"), "{out}");
    out
}

const DIALOG: &str = r#"tty; stty size
trap 'w=1; echo WINCH $(stty size)' WINCH
echo ready
i=0; while [ -z "$w" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo type:; read a; echo "got <$a>"
trap 'echo INT' INT
echo sleeping; sleep 100; echo "sleep status $?"
exit 5"#;

#[test]
fn run_with_a_console_socket() {
    let env = Env::new();
    env.spec(|v| {
        v["process"]["terminal"] = true.into();
        v["process"]["consoleSize"] = serde_json::json!({"height": 25, "width": 80});
        v["process"]["args"] = serde_json::json!(["sh", "-c", DIALOG]);
    });
    let bundle = env.bundle();
    let out = with_console_peer(
        &env,
        "dialog",
        &["run", "--bundle", bundle.to_str().unwrap(), "t1"],
        &[],
    );
    // tty names the sandbox's replica; stty size is consoleSize.
    assert!(out.contains(r"/dev/pts/0\r\n25 80\r\n"), "{out}");
    // Typed keys are echoed by the sandbox's line discipline (once: the
    // host replica is raw) and ^C is its ISIG.
    assert!(out.contains(r"hello\r\ngot <hello>"), "{out}");
    assert!(!out.contains(r"hello\r\nhello"), "echoed twice: {out}");
    assert!(out.contains(r"^CINT\r\nsleep status 130"), "{out}");
    assert!(out.contains("hangup Input/output error"), "{out}");
    assert!(out.contains("status 5\n"), "{out}");
    assert!(env.left_under_root().is_empty());
}

/// The host master's close hangs the sandbox's terminal up: SIGHUP to
/// the session's leader (init, which has a handler, so it is not
/// protected), as Linux's pty_close does.
#[test]
fn the_consoles_close_hangs_the_terminal_up() {
    let env = Env::new();
    env.spec(|v| {
        v["process"]["terminal"] = true.into();
        v["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "trap 'exit 7' HUP; echo ready; while true; do sleep 0.1; done"
        ]);
    });
    let bundle = env.bundle();
    let out = with_console_peer(
        &env,
        "close",
        &["run", "--bundle", bundle.to_str().unwrap(), "t2"],
        &[],
    );
    assert!(out.contains("status 7\n"), "{out}");
}

/// A container with a terminal checkpoints: the sandbox's pty is saved
/// (its master was the console's, outside the sandbox's files) and the
/// statefile restores.
#[test]
fn a_container_with_a_terminal_checkpoints() {
    let env = Env::new();
    env.spec(|v| {
        v["process"]["terminal"] = true.into();
        v["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "trap 'exit 9' INT; i=0; while true; do i=$((i+1)); echo; echo $i; sleep 0.05; done"
        ]);
    });
    let img = env.dir.path().join("img");
    std::fs::create_dir(&img).unwrap();
    let cryo = cryo_command(&env.root());
    let checkpoint: Vec<String> = std::iter::once(cryo.get_program())
        .chain(cryo.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .chain(
            ["checkpoint", "--image-path", img.to_str().unwrap(), "ck"]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    let bundle = env.bundle();
    let out = with_console_peer(
        &env,
        "checkpoint",
        &["run", "--bundle", bundle.to_str().unwrap(), "ck"],
        &[("CHECKPOINT", serde_json::to_string(&checkpoint).unwrap())],
    );
    assert!(out.contains("checkpoint 0 \n"), "{out}");
    assert!(out.contains("status 0\n"), "{out}");
    let statefile = img.join("checkpoint.cryo");
    let o = env.cryo(&["inspect", statefile.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert!(o.stdout_str().contains("vfs.Pty"), "{}", o.stdout_str());

    // The statefile restores (its terminal left without a host side, as
    // no console is given): the restored sandbox comes up and serves its
    // control socket.
    let mut cmd = cryo_command(&env.root());
    cmd.args([
        "restore",
        "--image-path",
        img.to_str().unwrap(),
        "--id",
        "ck2",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(env.dir.path().join("restore.err")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let up = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Err(st);
        }
        if env.root().join("ck2").join("control.sock").exists() {
            break Ok(());
        }
        assert!(Instant::now() < deadline, "the restore never came up");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let err = std::fs::read_to_string(env.dir.path().join("restore.err")).unwrap_or_default();
    assert!(up.is_ok(), "restore ended: {up:?}: {err}");

    // `cryo restore --bundle --console-socket` (conmon's call) gives the
    // restored terminal a new host side: the count goes on from where it
    // stopped, and ^C typed on the new master reaches the shell.
    let last_before = counts(&out).last().copied().expect("counted before");
    let out = with_console_peer(
        &env,
        "restored",
        &[
            "restore",
            "--image-path",
            img.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "ck3",
        ],
        &[],
    );
    let after = counts(&out);
    assert!(
        after.first().is_some_and(|&n| n > last_before.min(3))
            && after.windows(2).all(|w| w[1] == w[0] + 1),
        "restored counts {after:?} after {last_before}: {out}"
    );
    assert!(out.contains("status 9\n"), "{out}");
    // (ck2, the killed foreground restore above, may be left.)
    let left = env.left_under_root();
    assert!(!left.iter().any(|id| id == "ck3"), "{left:?}");
}

/// The numbers a counting container printed, from the peer's transcript.
fn counts(out: &str) -> Vec<u64> {
    let t = out
        .lines()
        .find_map(|l| l.strip_prefix("transcript "))
        .unwrap_or("");
    t.split("\\r\\n")
        .filter_map(|w| w.trim().parse().ok())
        .collect()
}

#[test]
fn terminal_errors_name_their_cause() {
    let env = Env::new();
    let bundle = env.bundle();
    let bundle = bundle.to_str().unwrap();

    // A terminal with no console socket to send it to.
    env.spec(|v| v["process"]["terminal"] = true.into());
    for args in [
        &["create", "--bundle", bundle, "x"][..],
        &["run", "--detach", "--bundle", bundle, "x"][..],
    ] {
        let o = env.cryo(args);
        assert_ne!(o.code, 0, "{args:?}");
        assert!(
            o.stderr_str().contains("process.terminal")
                && o.stderr_str().contains("--console-socket"),
            "{args:?}: {}",
            o.stderr_str()
        );
        assert!(env.left_under_root().is_empty(), "{args:?}");
    }

    // A console socket that is not there.
    let missing = env.dir.path().join("no-such.sock");
    let o = env.cryo(&[
        "create",
        "--bundle",
        bundle,
        "--console-socket",
        missing.to_str().unwrap(),
        "x",
    ]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("no-such.sock")
            && o.stderr_str().contains("No such file or directory"),
        "{}",
        o.stderr_str()
    );
    assert!(env.left_under_root().is_empty());

    // A console socket without a terminal.
    env.spec(|v| v["process"]["args"] = serde_json::json!(["sleep", "100"]));
    let o = env.cryo(&[
        "create",
        "--bundle",
        bundle,
        "--console-socket",
        missing.to_str().unwrap(),
        "x",
    ]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("--console-socket") && o.stderr_str().contains("no terminal"),
        "{}",
        o.stderr_str()
    );
    assert!(env.left_under_root().is_empty());

    // exec: --tty detached without a console socket, and a missing one.
    let o = env.cryo(&["run", "--detach", "--bundle", bundle, "c"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let o = env.cryo(&["exec", "--detach", "--tty", "c", "true"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("--console-socket"),
        "{}",
        o.stderr_str()
    );
    let o = env.cryo(&[
        "exec",
        "--detach",
        "--tty",
        "--console-socket",
        missing.to_str().unwrap(),
        "c",
        "true",
    ]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("no-such.sock"),
        "{}",
        o.stderr_str()
    );
    let o = env.cryo(&["delete", "--force", "c"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
}

// ---- podman -----------------------------------------------------------

/// A person at a terminal: runs argv[1:] on a new pty, waits for the
/// shell's prompt, types $KEYS, reads to the end and prints what the
/// terminal showed and the status.
const AT_A_TERMINAL: &str = r##"
import os, pty, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b""
deadline = time.time() + 60
typed = False
while True:
    if not typed and b"# " in seen:
        os.write(fd, os.environ["KEYS"].encode())
        typed = True
    if time.time() > deadline:
        print("TIMEOUT", repr(seen))
        os.kill(pid, 9)
        break
    r, _, _ = select.select([fd], [], [], 0.5)
    if not r:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, st = os.waitpid(pid, 0)
print("transcript", repr(seen))
print("status", os.waitstatus_to_exitcode(st))
"##;

/// The cryo binary as podman calls it: with the test's platform.
fn runtime_path(env: &Env) -> PathBuf {
    match cryo_tests::sandbox::test_platform() {
        None => cryo_bin().to_path_buf(),
        Some(p) => {
            let path = env.dir.path().join("cryo-runtime");
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nexec {} --platform {p} \"$@\"\n",
                    cryo_bin().display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        }
    }
}

/// podman with its own storage, run root and config in the test's
/// directory, so the host's containers are not touched.
fn podman(env: &Env, podman: &Path, runtime: &Path) -> Command {
    let d = env.dir.path();
    let mut cmd = Command::new(podman);
    cmd.arg("--root")
        .arg(d.join("podman-storage"))
        .arg("--runroot")
        .arg(d.join("podman-run"))
        .arg("--tmpdir")
        .arg(d.join("podman-tmp"))
        .arg("--runtime")
        .arg(runtime)
        .arg("--cgroup-manager")
        .arg("cgroupfs")
        .arg("--events-backend")
        .arg("file");
    cmd
}

/// `cmd` on a terminal of its own, typing `keys` at the first prompt.
fn at_a_terminal(cmd: &Command, keys: &str, what: &str) -> (i32, String) {
    let mut py = Command::new("python3");
    py.arg("-c")
        .arg(AT_A_TERMINAL)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("KEYS", keys);
    let o = run(py, what);
    let out = o.stdout_str();
    assert_eq!(o.code, 0, "{what}: {out} {}", o.stderr_str());
    let status = out
        .lines()
        .find_map(|l| l.strip_prefix("status "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: no status in {out}"));
    (status, out)
}

#[test]
fn podman_run_it_and_exec_it() {
    let Some(bin) = which("podman") else {
        println!("SKIPPED: podman is not installed (tests/scripts/deps.sh installs it)");
        return;
    };
    if which("conmon").is_none() {
        println!("SKIPPED: conmon is not installed");
        return;
    }
    let env = Env::new();
    let runtime = runtime_path(&env);
    let rootfs = env.rootfs();
    let rootfs = rootfs.to_str().unwrap();

    let mut cmd = podman(&env, &bin, &runtime);
    cmd.args([
        "run",
        "-it",
        "--rm",
        "--network",
        "none",
        "--rootfs",
        rootfs,
        "sh",
    ]);
    let (status, out) = at_a_terminal(&cmd, "echo h''i; exit 3\r", "podman run -it");
    // The command's echo, then its output on a line of its own.
    assert!(out.contains(r"\r\nhi\r\n"), "{out}");
    assert_eq!(status, 3, "{out}");

    let mut cmd = podman(&env, &bin, &runtime);
    cmd.args([
        "run",
        "-d",
        "--name",
        "pd",
        "--network",
        "none",
        "--rootfs",
        rootfs,
        "sh",
        "-c",
        "while true; do sleep 1; done",
    ]);
    let o = run(cmd, "podman run -d");
    assert_eq!(o.code, 0, "podman run -d: {}", o.stderr_str());
    let mut cmd = podman(&env, &bin, &runtime);
    cmd.args(["exec", "-it", "pd", "sh"]);
    let (status, out) = at_a_terminal(&cmd, "tty; echo in e''xec; exit 6\r", "podman exec -it");
    assert!(out.contains(r"/dev/pts/"), "{out}");
    assert!(out.contains(r"\r\nin exec\r\n"), "{out}");
    assert_eq!(status, 6, "{out}");

    let mut cmd = podman(&env, &bin, &runtime);
    cmd.args(["rm", "-f", "-t", "1", "pd"]);
    let o = run(cmd, "podman rm -f");
    assert_eq!(o.code, 0, "podman rm: {}", o.stderr_str());
}

/// `cryo run` in the foreground with a terminal and no console socket:
/// its own terminal is the container's (raw while it runs, as runc does).
#[test]
fn run_in_the_foreground_on_its_own_terminal() {
    let env = Env::new();
    env.spec(|v| {
        v["process"]["terminal"] = true.into();
        v["process"]["args"] = serde_json::json!(["sh"]);
    });
    let mut cmd = cryo_command(&env.root());
    cmd.args(["run", "--bundle", env.bundle().to_str().unwrap(), "fg"]);
    let (status, out) = at_a_terminal(&cmd, "tty; echo h''i; exit 4\r", "cryo run on a terminal");
    assert!(out.contains(r"/dev/pts/0\r\nhi\r\n"), "{out}");
    // Echoed once, by the sandbox: the caller's terminal was raw.
    assert_eq!(out.matches("echo h''i").count(), 1, "{out}");
    assert_eq!(status, 4, "{out}");
}

/// `exec --tty --console-socket` into a running container: the exec'd
/// process leads a session of its own with a new sandbox terminal.
#[test]
fn exec_with_a_console_socket() {
    let env = Env::new();
    env.spec(|v| {
        v["process"]["consoleSize"] = serde_json::json!({"height": 25, "width": 80});
        v["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    });
    let o = env.cryo(&[
        "run",
        "--detach",
        "--bundle",
        env.bundle().to_str().unwrap(),
        "c",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let out = with_console_peer(
        &env,
        "dialog",
        &["exec", "--tty", "c", "sh", "-c", DIALOG],
        &[],
    );
    assert!(out.contains(r"/dev/pts/0\r\n25 80\r\n"), "{out}");
    assert!(out.contains(r"hello\r\ngot <hello>"), "{out}");
    assert!(out.contains(r"^CINT\r\nsleep status 130"), "{out}");
    assert!(out.contains("hangup Input/output error"), "{out}");
    assert!(out.contains("status 5\n"), "{out}");
    let o = env.cryo(&["delete", "--force", "c"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
}
