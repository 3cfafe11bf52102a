//! cryo as an OCI runtime, through its command line and through real
//! clients: the lifecycle (spec, create, state, start, exec, ps, pause,
//! resume, kill, delete; run), its errors, a busybox root with mounts,
//! then podman and containerd driving cryo. A client that is not installed
//! or cannot run here prints "SKIPPED: <reason>".
//!
//! The test process makes itself a child subreaper, so a sandbox whose
//! `create` exited becomes its child and its exit status (the container's)
//! can be waited for, as conmon and containerd's shim do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cryo_tests::sandbox::cryo_command;
use cryo_tests::{cryo_bin, Output};

/// What one command may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

fn become_subreaper() {
    // SAFETY: prctl with integer arguments only changes this process's
    // subreaper attribute.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// The host pid's exit status (as a shell gives it), waited for as its
/// (sub)reaper, or None on timeout.
fn wait_pid(pid: i32, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Some(libc::WEXITSTATUS(status));
            }
            return Some(128 + libc::WTERMSIG(status));
        }
        assert!(
            r == 0,
            "waitpid({pid}) failed: {}",
            std::io::Error::last_os_error()
        );
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory: the container root (`--root`), a bundle with a
/// busybox root file system, and files for commands' output.
struct Env {
    dir: tempfile::TempDir,
    n: AtomicU64,
}

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "id", "hostname", "touch", "mkdir", "true", "false", "wc",
    "env", "pwd", "rm", "mv", "rmdir", "ln", "readlink", "grep", "chown",
];

/// A busybox root file system: /bin/busybox and its applet links.
fn busybox_rootfs(rootfs: &Path) {
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox-static is installed (tests/scripts/deps.sh)");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::write(rootfs.join("etc/motd"), "busybox root\n").unwrap();
}

impl Env {
    fn new() -> Env {
        become_subreaper();
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            dir,
            n: AtomicU64::new(0),
        };
        std::fs::create_dir(env.bundle()).unwrap();
        busybox_rootfs(&env.rootfs());
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

    /// `cryo spec`, then `edit` on its JSON.
    fn spec(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let _ = std::fs::remove_file(self.bundle().join("config.json"));
        let out = self.cryo(&["spec", "--bundle", self.bundle().to_str().unwrap()]);
        assert_eq!(out.code, 0, "spec: {}", out.stderr_str());
        let path = self.bundle().join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["root"]["readonly"] = false.into();
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    }

    fn files(&self) -> (PathBuf, PathBuf) {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        (
            self.dir.path().join(format!("out.{n}")),
            self.dir.path().join(format!("err.{n}")),
        )
    }

    /// Runs `cryo --root ROOT ARGS` with stdout and stderr in files (a
    /// sandbox that `create` leaves keeps them), to completion.
    fn cryo(&self, args: &[&str]) -> Output {
        let (out, err) = self.files();
        let mut cmd = cryo_command(&self.root());
        cmd.args(args);
        run_to_files(cmd, &out, &err, &format!("cryo {}", args.join(" ")))
    }

    /// The OCI state of `id`, parsed.
    fn state(&self, id: &str) -> serde_json::Value {
        let out = self.cryo(&["state", id]);
        assert_eq!(out.code, 0, "state {id}: {}", out.stderr_str());
        serde_json::from_slice(&out.stdout).expect("state prints JSON")
    }
}

impl Drop for Env {
    /// A failing test leaves no sandbox running.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.root()) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
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

fn run_to_files(mut cmd: Command, out: &Path, err: &Path, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let code = wait_child(&mut child, TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!(
            "{what}: still running after {TIMEOUT:?}; stderr: {}",
            std::fs::read_to_string(err).unwrap_or_default()
        )
    });
    Output {
        code,
        stdout: std::fs::read(out).unwrap_or_default(),
        stderr: std::fs::read(err).unwrap_or_default(),
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(cryo_tests::exit_code(st));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` holds `want` (a container's output written by its
/// sandbox, which runs on after `create`).
fn wait_for_text(path: &Path, want: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never showed {want:?}: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_args(v: &mut serde_json::Value, script: &str) {
    v["process"]["args"] = serde_json::json!(["sh", "-c", script]);
}

#[test]
fn lifecycle_through_the_cli() {
    let env = Env::new();
    env.spec(|v| set_args(v, "echo init started; while true; do sleep 1; done"));
    let bundle = env.bundle();
    let pid_file = env.dir.path().join("pid");
    let (out, err) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["create", "--bundle"])
        .arg(&bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("c1");
    let created = run_to_files(cmd, &out, &err, "cryo create");
    assert_eq!(created.code, 0, "create: {}", created.stderr_str());

    let st = env.state("c1");
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], "c1");
    assert_eq!(st["ociVersion"], "1.0.2");
    assert_eq!(st["bundle"], bundle.to_str().unwrap());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"], pid);
    // Nothing ran yet.
    assert!(!std::fs::read_to_string(&out)
        .unwrap()
        .contains("init started"));

    let started = env.cryo(&["start", "c1"]);
    assert_eq!(started.code, 0, "start: {}", started.stderr_str());
    wait_for_text(&out, "init started");
    assert_eq!(env.state("c1")["status"], "running");
    // Started twice: refused.
    assert_ne!(env.cryo(&["start", "c1"]).code, 0);

    // exec: its own process, stdio and status.
    let ex = env.cryo(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo exec in $(hostname) as $$; exit 7",
    ]);
    assert_eq!(ex.code, 7, "exec: {}", ex.stderr_str());
    let said = ex.stdout_str();
    assert!(said.starts_with("exec in cryo as "), "{said:?}");
    assert_ne!(
        said.trim().rsplit(' ').next(),
        Some("1"),
        "exec'd process is not init"
    );
    let ex = env.cryo(&[
        "exec",
        "--cwd",
        "/etc",
        "--env",
        "GREETING=hi",
        "--user",
        "1000:1000",
        "c1",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(ex.code, 0, "{}", ex.stderr_str());
    assert_eq!(ex.stdout_str(), "hi /etc 1000:1000\n");
    let missing = env.cryo(&["exec", "c1", "no-such-program"]);
    assert_eq!(missing.code, 127, "{}", missing.stderr_str());

    // exec --detach: the pid file names a host process that lives as long
    // as the exec'd one and exits with its status.
    let exec_pid = env.dir.path().join("exec.pid");
    let ex = env.cryo(&[
        "exec",
        "--detach",
        "--pid-file",
        exec_pid.to_str().unwrap(),
        "c1",
        "sh",
        "-c",
        "sleep 0.3; exit 4",
    ]);
    assert_eq!(ex.code, 0, "exec --detach: {}", ex.stderr_str());
    let epid: i32 = std::fs::read_to_string(&exec_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(wait_pid(epid, TIMEOUT), Some(4));

    let ps = env.cryo(&["ps", "--format", "json", "c1"]);
    assert_eq!(ps.code, 0, "{}", ps.stderr_str());
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.contains(&1), "{pids:?}");
    let table = env.cryo(&["ps", "c1"]).stdout_str();
    assert!(table.starts_with("  PID"), "{table}");

    // pause: every task frozen; the output stops growing.
    assert_eq!(env.cryo(&["pause", "c1"]).code, 0);
    assert_eq!(env.state("c1")["status"], "paused");
    assert_ne!(
        env.cryo(&["exec", "c1", "true"]).code,
        0,
        "no exec while paused"
    );
    assert_eq!(env.cryo(&["resume", "c1"]).code, 0);
    assert_eq!(env.state("c1")["status"], "running");
    assert_ne!(env.cryo(&["resume", "c1"]).code, 0, "not paused");

    let list = env.cryo(&["list", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(all[0]["id"], "c1");
    assert_eq!(env.cryo(&["list", "-q"]).stdout_str(), "c1\n");

    // Deleting a running container needs --force.
    let del = env.cryo(&["delete", "c1"]);
    assert_ne!(del.code, 0);
    assert!(del.stderr_str().contains("running"), "{}", del.stderr_str());

    let k = env.cryo(&["kill", "c1", "KILL"]);
    assert_eq!(k.code, 0, "kill: {}", k.stderr_str());
    assert_eq!(wait_pid(pid, TIMEOUT), Some(128 + libc::SIGKILL));
    let st = env.state("c1");
    assert_eq!(st["status"], "stopped", "{st}");
    assert_ne!(env.cryo(&["kill", "c1"]).code, 0, "a stopped container");

    assert_eq!(env.cryo(&["delete", "c1"]).code, 0);
    let gone = env.cryo(&["state", "c1"]);
    assert_ne!(gone.code, 0);
    assert!(
        gone.stderr_str().contains("does not exist"),
        "{}",
        gone.stderr_str()
    );
    // --force of a container that is gone: success, as clients rely on.
    assert_eq!(env.cryo(&["delete", "--force", "c1"]).code, 0);
}

#[test]
fn run_detached_and_in_the_foreground() {
    let env = Env::new();
    env.spec(|v| set_args(v, "echo foreground; exit 5"));
    let fg = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "fg"]);
    assert_eq!(fg.code, 5, "{}", fg.stderr_str());
    assert_eq!(fg.stdout_str(), "foreground\n");

    env.spec(|v| set_args(v, "echo detached; kill -TERM $$; sleep 1000"));
    let (out, err) = env.files();
    let pid_file = env.dir.path().join("run.pid");
    let mut cmd = cryo_command(&env.root());
    cmd.args(["run", "--detach", "--bundle"])
        .arg(env.bundle())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("bg");
    let r = run_to_files(cmd, &out, &err, "cryo run --detach");
    assert_eq!(r.code, 0, "{}", r.stderr_str());
    wait_for_text(&out, "detached");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // init ignores a signal it has no handler for (Linux's rule for a pid
    // namespace's init), so it still runs; --all reaches it the same way.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(env.state("bg")["status"], "running");
    assert_eq!(env.cryo(&["kill", "--all", "bg", "9"]).code, 0);
    assert_eq!(wait_pid(pid, TIMEOUT), Some(137));
    assert_eq!(env.cryo(&["delete", "bg"]).code, 0);
}

/// config.json's hooks run at their stages with the container's state on
/// stdin (createRuntime sees it creating with the sandbox's pid, poststart
/// running, poststop stopped); a failing createRuntime hook fails create,
/// naming the hook, and leaves no container behind.
#[test]
fn hooks_run_at_their_stages() {
    let env = Env::new();
    let marks = env.dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let hook = |stage: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}/{stage}.json", marks.display())],
        })
    };
    env.spec(|v| {
        set_args(v, "sleep 1000");
        v["hooks"] = serde_json::json!({
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [hook("startContainer")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    let bundle = env.bundle();
    let created = env.cryo(&["create", "--bundle", bundle.to_str().unwrap(), "h"]);
    assert_eq!(created.code, 0, "{}", created.stderr_str());
    let read = |stage: &str| -> serde_json::Value {
        let text = std::fs::read(marks.join(format!("{stage}.json")))
            .unwrap_or_else(|e| panic!("{stage} hook did not run: {e}"));
        serde_json::from_slice(&text).unwrap()
    };
    let pid = env.state("h")["pid"].clone();
    let cr = read("createRuntime");
    assert_eq!(
        (cr["id"].as_str(), cr["status"].as_str()),
        (Some("h"), Some("creating"))
    );
    assert_eq!(cr["pid"], pid, "createRuntime sees the sandbox's pid");
    assert_eq!(read("createContainer")["status"], "creating");
    assert!(
        !marks.join("startContainer.json").exists(),
        "not before start"
    );
    assert_eq!(env.cryo(&["start", "h"]).code, 0);
    assert_eq!(read("startContainer")["status"], "created");
    assert_eq!(read("poststart")["status"], "running");
    assert!(!marks.join("poststop.json").exists(), "not before delete");
    assert_eq!(env.cryo(&["delete", "--force", "h"]).code, 0);
    assert_eq!(read("poststop")["status"], "stopped");

    env.spec(|v| {
        v["hooks"] = serde_json::json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
        });
    });
    let failed = env.cryo(&["create", "--bundle", bundle.to_str().unwrap(), "bad"]);
    assert_ne!(failed.code, 0);
    let err = failed.stderr_str();
    assert!(
        err.contains("createRuntime hook 0 (/bin/sh)") && err.contains("3"),
        "{err}"
    );
    let st = env.cryo(&["state", "bad"]);
    assert_ne!(st.code, 0, "no container is left: {}", st.stdout_str());
}

/// `events --stats` prints one runc stats event from the sandbox's own
/// accounting (its tasks, memory and CPU time); `--interval` repeats it;
/// a bad interval or id is an error naming it.
#[test]
fn events_report_the_sandbox() {
    let env = Env::new();
    env.spec(|v| set_args(v, "sleep 1000 & sleep 1000"));
    let bundle = env.bundle();
    assert_eq!(
        env.cryo(&[
            "run",
            "--detach",
            "--bundle",
            bundle.to_str().unwrap(),
            "ev"
        ])
        .code,
        0
    );
    // The shell may not have started its background sleep yet.
    let mut e = serde_json::Value::Null;
    for _ in 0..100 {
        let out = env.cryo(&["events", "--stats", "ev"]);
        assert_eq!(out.code, 0, "{}", out.stderr_str());
        e = serde_json::from_slice(&out.stdout).expect("one JSON event");
        if e["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (e["type"].as_str(), e["id"].as_str()),
        (Some("stats"), Some("ev"))
    );
    let pids = e["data"]["pids"]["current"].as_u64().unwrap_or(0);
    assert!(pids >= 2, "init and its background sleep at least: {e}");
    assert!(
        e["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{e}"
    );
    assert!(e["data"]["cpu"]["usage"]["total"].is_u64(), "{e}");

    let mut cmd = cryo_command(&env.root());
    cmd.args(["events", "--interval", "100ms", "ev"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    for _ in 0..2 {
        let line = lines.next().expect("an event every interval").unwrap();
        assert!(line.contains("\"type\":\"stats\""), "{line}");
    }
    let _ = child.kill();
    let _ = child.wait();

    let bad = env.cryo(&["events", "--interval", "5 parsecs", "ev"]);
    assert!(
        bad.code != 0 && bad.stderr_str().contains("--interval"),
        "{}",
        bad.stderr_str()
    );
    let missing = env.cryo(&["events", "--stats", "nope"]);
    assert!(
        missing.code != 0 && missing.stderr_str().contains("nope"),
        "{}",
        missing.stderr_str()
    );
    assert_eq!(env.cryo(&["delete", "--force", "ev"]).code, 0);
}

/// pause freezes every task (init and an exec'd process): their output
/// stops while paused and goes on after resume.
#[test]
fn pause_freezes_every_task() {
    let env = Env::new();
    env.spec(|v| set_args(v, "while true; do echo tick; sleep 0.02; done"));
    let (out, err) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["run", "--detach", "--bundle"])
        .arg(env.bundle())
        .arg("p");
    let r = run_to_files(cmd, &out, &err, "run --detach");
    assert_eq!(r.code, 0, "{}", r.stderr_str());
    let pid = env.state("p")["pid"].as_i64().unwrap() as i32;
    wait_for_text(&out, "tick\ntick\n");
    // A second writer, exec'd, detached.
    let exec_out = env.dir.path().join("exec-ticks");
    let (eo, ee) = (exec_out.clone(), env.dir.path().join("exec-err"));
    let mut cmd = cryo_command(&env.root());
    cmd.args([
        "exec",
        "--detach",
        "p",
        "sh",
        "-c",
        "while true; do echo tock; sleep 0.02; done",
    ]);
    let r = run_to_files(cmd, &eo, &ee, "exec --detach");
    assert_eq!(r.code, 0, "{}", r.stderr_str());
    wait_for_text(&exec_out, "tock\ntock\n");
    assert_eq!(env.cryo(&["pause", "p"]).code, 0);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let (a, b) = (size(&out), size(&exec_out));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(size(&out), a, "init ran while paused");
    assert_eq!(size(&exec_out), b, "the exec'd process ran while paused");
    let ps = env.cryo(&["ps", "--format", "json", "p"]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.len() >= 2, "ps answers while paused: {pids:?}");
    assert_eq!(env.cryo(&["resume", "p"]).code, 0);
    let deadline = Instant::now() + TIMEOUT;
    while size(&out) == a || size(&exec_out) == b {
        assert!(Instant::now() < deadline, "no output after resume");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A paused container dies of SIGKILL too.
    assert_eq!(env.cryo(&["pause", "p"]).code, 0);
    assert_eq!(env.cryo(&["kill", "p", "KILL"]).code, 0);
    assert_eq!(wait_pid(pid, TIMEOUT), Some(137));
    assert_eq!(env.cryo(&["delete", "p"]).code, 0);
}

#[test]
fn a_created_container_can_be_deleted_and_killed() {
    let env = Env::new();
    env.spec(|v| set_args(v, "echo never"));
    let (out, err) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["create", "--bundle"]).arg(env.bundle()).arg("c");
    assert_eq!(run_to_files(cmd, &out, &err, "create").code, 0);
    let pid = env.state("c")["pid"].as_i64().unwrap() as i32;
    assert_eq!(env.cryo(&["kill", "c", "TERM"]).code, 0);
    assert_eq!(wait_pid(pid, TIMEOUT), Some(128 + libc::SIGTERM));
    assert_eq!(env.state("c")["status"], "stopped");
    assert_eq!(env.cryo(&["delete", "c"]).code, 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");

    let (out, err) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["create", "--bundle"]).arg(env.bundle()).arg("d");
    assert_eq!(run_to_files(cmd, &out, &err, "create").code, 0);
    let pid = env.state("d")["pid"].as_i64().unwrap() as i32;
    assert_eq!(
        env.cryo(&["delete", "d"]).code,
        0,
        "runc deletes a created container"
    );
    assert!(wait_pid(pid, TIMEOUT).is_some());
}

#[test]
fn errors_name_their_cause() {
    let env = Env::new();
    let unknown = env.cryo(&["state", "nope"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr_str().contains("\"nope\" does not exist"),
        "{}",
        unknown.stderr_str()
    );
    for cmd in ["start", "kill", "pause", "resume", "ps", "delete"] {
        let o = env.cryo(&[cmd, "nope"]);
        assert_ne!(o.code, 0, "{cmd}");
        assert!(
            o.stderr_str().contains("does not exist"),
            "{cmd}: {}",
            o.stderr_str()
        );
    }

    // A bundle without config.json.
    let empty = env.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = env.cryo(&["create", "--bundle", empty.to_str().unwrap(), "x"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("no config.json"),
        "{}",
        o.stderr_str()
    );
    assert!(
        !env.root().join("x").exists(),
        "a failed create claims no id"
    );

    // A field of the wrong type is named.
    env.spec(|v| v["process"]["user"]["uid"] = "root".into());
    let o = env.cryo(&["create", "--bundle", env.bundle().to_str().unwrap(), "x"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("process.user.uid"),
        "{}",
        o.stderr_str()
    );
    env.spec(|v| v["process"]["cwd"] = "relative".into());
    let o = env.cryo(&["create", "--bundle", env.bundle().to_str().unwrap(), "x"]);
    assert!(o.stderr_str().contains("process.cwd"), "{}", o.stderr_str());
    // A terminal with nowhere to send it is refused, naming what is
    // missing (oci_tty.rs has the rest of the terminal's errors).
    env.spec(|v| v["process"]["terminal"] = true.into());
    let o = env.cryo(&["create", "--bundle", env.bundle().to_str().unwrap(), "x"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("--console-socket"),
        "{}",
        o.stderr_str()
    );

    // A duplicate id.
    env.spec(|v| set_args(v, "sleep 1000"));
    let (out, err) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["create", "--bundle"])
        .arg(env.bundle())
        .arg("dup");
    assert_eq!(run_to_files(cmd, &out, &err, "create").code, 0);
    let o = env.cryo(&["create", "--bundle", env.bundle().to_str().unwrap(), "dup"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("already exists"),
        "{}",
        o.stderr_str()
    );
    assert_eq!(
        env.state("dup")["status"],
        "created",
        "the first is untouched"
    );
    // Flags given twice are accepted (podman passes some twice).
    let o = env.cryo(&["delete", "--force", "--force", "dup"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());

    // An unknown flag: a clear error, not a crash.
    let o = env.cryo(&["create", "--no-such-flag", "x"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr_str().contains("--no-such-flag"),
        "{}",
        o.stderr_str()
    );
    // runc's global flags are accepted, and --log gets the error as JSON.
    let log = env.dir.path().join("log.json");
    let o = env.cryo(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--systemd-cgroup",
        "state",
        "nope",
    ]);
    assert_ne!(o.code, 0);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().unwrap().contains("does not exist"),
        "{line}"
    );

    let v = env.cryo(&["--version"]);
    assert!(v.stdout_str().contains("spec: 1.0.2"), "{}", v.stdout_str());
    let f = env.cryo(&["features"]);
    let f: serde_json::Value = serde_json::from_slice(&f.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
}

/// A rw bind mount takes tree changes too: mkdir, rename (a file, then a
/// directory holding it), unlink, rmdir and symlink reach the host, and
/// what was renamed opens under its new name.
#[test]
fn rw_bind_mount_tree_changes_reach_the_host() {
    let env = Env::new();
    let host = env.dir.path().join("host-tree");
    std::fs::create_dir_all(host.join("d")).unwrap();
    std::fs::write(host.join("a"), "the a file\n").unwrap();
    std::fs::write(host.join("d/keep"), "kept\n").unwrap();
    env.spec(|v| {
        set_args(
            v,
            "cat /mnt/t/a; \
             mkdir /mnt/t/new && echo n > /mnt/t/new/f; \
             mv /mnt/t/a /mnt/t/new/a2 && cat /mnt/t/new/a2; \
             rm /mnt/t/d/keep && rmdir /mnt/t/d; \
             ln -s target /mnt/t/link && readlink /mnt/t/link; \
             mv /mnt/t/new /mnt/t/renamed && cat /mnt/t/renamed/f /mnt/t/renamed/a2; \
             rmdir /mnt/t/renamed || echo not-empty; \
             ls /mnt/t",
        );
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/mnt/t", "type": "bind", "source": host, "options": ["rbind"]
        }));
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "t"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(
        o.stdout_str(),
        "the a file\nthe a file\ntarget\nn\nthe a file\nnot-empty\nlink\nrenamed\n",
        "{}",
        o.stderr_str()
    );
    assert_eq!(
        std::fs::read_to_string(host.join("renamed/f")).unwrap(),
        "n\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("renamed/a2")).unwrap(),
        "the a file\n"
    );
    assert!(!host.join("a").exists() && !host.join("d").exists() && !host.join("new").exists());
    assert_eq!(
        std::fs::read_link(host.join("link")).unwrap(),
        Path::new("target")
    );
}

/// chmod, chown, utimes and truncate on a rw bind mount's files reach the
/// host file; on a ro bind mount they are EROFS and the host file stays.
#[test]
fn rw_bind_mount_attribute_changes_reach_the_host() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let rw = env.dir.path().join("attr-rw");
    let ro = env.dir.path().join("attr-ro");
    for d in [&rw, &ro] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("f"), "twenty bytes of text").unwrap();
    }
    let before_ro = std::fs::metadata(ro.join("f")).unwrap();
    env.spec(|v| {
        set_args(
            v,
            "b=/bin/busybox; \
             $b chmod 0604 /mnt/rw/f && $b chown 1234:5678 /mnt/rw/f && \
             $b truncate -s 6 /mnt/rw/f && $b touch -d '2001-02-03 04:05:06' /mnt/rw/f && \
             $b stat -c '%a %u %g %s %Y' /mnt/rw/f; \
             $b chmod 0600 /mnt/ro/f 2>&1 || echo chmod-refused; \
             $b truncate -s 1 /mnt/ro/f 2>&1 || echo truncate-refused; \
             $b touch /mnt/ro/f 2>&1 || echo touch-refused",
        );
        // chown, and truncate and touch of a file root no longer owns,
        // need CAP_CHOWN, DAC_OVERRIDE and FOWNER, which runc's default set
        // lacks: without a capabilities field root holds them all.
        v["process"].as_object_mut().unwrap().remove("capabilities");
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({
            "destination": "/mnt/rw", "type": "bind", "source": rw, "options": ["rbind"]
        }));
        mounts.push(serde_json::json!({
            "destination": "/mnt/ro", "type": "bind", "source": ro, "options": ["rbind", "ro"]
        }));
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "attrs"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let m = std::fs::metadata(rw.join("f")).unwrap();
    let out = o.stdout_str();
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(format!("604 1234 5678 6 {}", m.mtime()).as_str()),
        "{out}"
    );
    assert_eq!(m.mode() & 0o7777, 0o604);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(std::fs::read(rw.join("f")).unwrap(), b"twenty");
    // busybox's touch -d takes local time; the sandbox's TZ is the same.
    assert!(
        (981_000_000..981_300_000).contains(&m.mtime()),
        "mtime {} is 2001-02-03",
        m.mtime()
    );
    let rest: Vec<&str> = lines.collect();
    for what in ["chmod-refused", "truncate-refused", "touch-refused"] {
        assert!(rest.contains(&what), "{what} in {out}");
    }
    assert!(out.contains("Read-only file system"), "{out}");
    let after_ro = std::fs::metadata(ro.join("f")).unwrap();
    assert_eq!(
        (
            after_ro.mode(),
            after_ro.size(),
            after_ro.mtime(),
            after_ro.mtime_nsec()
        ),
        (
            before_ro.mode(),
            before_ro.size(),
            before_ro.mtime(),
            before_ro.mtime_nsec()
        )
    );
}

#[test]
fn busybox_root_with_mounts() {
    let env = Env::new();
    let host_ro = env.dir.path().join("host-ro");
    std::fs::create_dir(&host_ro).unwrap();
    std::fs::write(host_ro.join("data"), "from the host\n").unwrap();
    let host_rw = env.dir.path().join("host-rw");
    std::fs::create_dir(&host_rw).unwrap();
    std::fs::write(host_rw.join("old"), "old content, longer\n").unwrap();
    let bind = |src: &Path, dest: &str, ro: bool| {
        let mut opts = vec!["rbind"];
        if ro {
            opts.push("ro");
        }
        serde_json::json!({"destination": dest, "type": "bind", "source": src, "options": opts})
    };
    let greeting = env.dir.path().join("greeting.txt");
    std::fs::write(&greeting, "a bound file\n").unwrap();
    let file_m = bind(&greeting, "/etc/greeting", true);
    let (ro_m, rw_m) = (
        bind(&host_ro, "/mnt/ro", true),
        bind(&host_rw, "/mnt/rw", false),
    );
    env.spec(|v| {
        set_args(
            v,
            "cat /mnt/ro/data; \
             echo x > /mnt/ro/new || echo ro-refused; \
             echo upper > /etc/written && cat /etc/written; \
             echo scratch > /scratch/f && cat /scratch/f; \
             cat /etc/motd; \
             echo reached > /mnt/rw/out || echo rw-refused; \
             echo more >> /mnt/rw/out; echo changed > /mnt/rw/old; cat /mnt/rw/old; \
             cat /etc/greeting; echo y > /etc/greeting || echo file-ro-refused",
        );
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .extend([
                ro_m,
                rw_m,
                file_m,
                serde_json::json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}),
            ]);
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "m"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let out = o.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        [
            "from the host",
            "ro-refused",
            "upper",
            "scratch",
            "busybox root"
        ],
        "{out}"
    );
    assert!(
        o.stderr_str().contains("Read-only file system"),
        "{}",
        o.stderr_str()
    );
    // Overlay writes stay in the sandbox.
    assert!(!env.rootfs().join("etc/written").exists());
    assert!(!host_ro.join("new").exists());
    assert!(
        !env.rootfs().join("scratch").exists(),
        "mount points are made in the overlay"
    );
    // A rw bind mount: new files and writes reach the host.
    assert_eq!(lines.get(5), Some(&"changed"), "{out}");
    assert_eq!(
        std::fs::read_to_string(host_rw.join("out")).unwrap(),
        "reached\nmore\n"
    );
    assert_eq!(
        std::fs::read_to_string(host_rw.join("old")).unwrap(),
        "changed\n"
    );
    // A bind mount of one file, read-only.
    assert_eq!(&lines[6..], ["a bound file", "file-ro-refused"], "{out}");
    assert_eq!(
        std::fs::read_to_string(&greeting).unwrap(),
        "a bound file\n"
    );
    assert!(!env.rootfs().join("etc/greeting").exists());

    // root.readonly: writes to the root fail with EROFS; tmpfs still works.
    env.spec(|v| {
        v["root"]["readonly"] = true.into();
        set_args(
            v,
            "touch /etc/x || echo root-refused; echo ok > /tmp2/f && cat /tmp2/f",
        );
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"destination": "/tmp2", "type": "tmpfs", "source": "tmpfs"}));
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "r"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(o.stdout_str(), "root-refused\nok\n", "{}", o.stderr_str());
    assert!(
        o.stderr_str().contains("Read-only file system"),
        "{}",
        o.stderr_str()
    );
}

// ---- podman -----------------------------------------------------------

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

fn run_host(cmd: &mut Command, what: &str, env: &Env) -> Output {
    let (out, err) = env.files();
    let cmd = std::mem::replace(cmd, Command::new("true"));
    run_to_files(cmd, &out, &err, what)
}

/// The cryo binary as podman and containerd call it: with the test's
/// platform, through a wrapper script when one is asked for.
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

#[test]
fn podman_runs_cryo() {
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

    let o = run_host(
        podman(&env, &bin, &runtime).args([
            "run",
            "--rm",
            "--network",
            "none",
            "--rootfs",
            rootfs,
            "sh",
            "-c",
            "echo hello from $(hostname -s 2>/dev/null || hostname); cat /etc/motd; exit 3",
        ]),
        "podman run --rm",
        &env,
    );
    assert_eq!(o.code, 3, "podman run: {}", o.stderr_str());
    let out = o.stdout_str();
    assert!(out.starts_with("hello from "), "{out:?} {}", o.stderr_str());
    assert!(out.ends_with("busybox root\n"), "{out:?}");

    let o = run_host(
        podman(&env, &bin, &runtime).args([
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
            "echo up; while true; do sleep 1; done",
        ]),
        "podman run -d",
        &env,
    );
    assert_eq!(o.code, 0, "podman run -d: {}", o.stderr_str());
    let o = run_host(
        podman(&env, &bin, &runtime).args(["exec", "pd", "sh", "-c", "echo in exec; exit 6"]),
        "podman exec",
        &env,
    );
    assert_eq!(o.code, 6, "podman exec: {}", o.stderr_str());
    assert_eq!(o.stdout_str(), "in exec\n");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let o = run_host(
            podman(&env, &bin, &runtime).args(["logs", "pd"]),
            "podman logs",
            &env,
        );
        if o.stdout_str().contains("up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "podman logs: {:?} {}",
            o.stdout_str(),
            o.stderr_str()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = run_host(
        podman(&env, &bin, &runtime).args(["stop", "-t", "1", "pd"]),
        "podman stop",
        &env,
    );
    assert_eq!(o.code, 0, "podman stop: {}", o.stderr_str());
    let o = run_host(
        podman(&env, &bin, &runtime).args(["rm", "pd"]),
        "podman rm",
        &env,
    );
    assert_eq!(o.code, 0, "podman rm: {}", o.stderr_str());

    // podman run -it and exec -it: oci_tty.rs.
}

/// podman's --cap-drop and --cap-add reach the container as its
/// capabilities (through process.capabilities): with every capability
/// dropped, root's chown is refused; with CAP_CHOWN added back it works
/// and is all the container holds. podman's --memory is enforced too.
#[test]
fn podman_capabilities_and_memory() {
    let Some(bin) = which("podman") else {
        println!("SKIPPED: podman is not installed (tests/scripts/deps.sh installs it)");
        return;
    };
    if which("conmon").is_none() {
        println!("SKIPPED: conmon is not installed");
        return;
    }
    let env = Env::new();
    let hog = cryo_tests::guest("memhog", cryo_tests::Libc::Glibc);
    std::fs::copy(&hog, env.rootfs().join("bin/memhog")).unwrap();
    let runtime = runtime_path(&env);
    let rootfs = env.rootfs();
    let rootfs = rootfs.to_str().unwrap();
    let script =
        "grep -e CapEff -e CapBnd /proc/self/status; touch /tmp/f; chown 1 /tmp/f; echo chown=$?";
    let run = |extra: &[&str], what: &str| {
        let mut cmd = podman(&env, &bin, &runtime);
        cmd.args(["run", "--rm", "--network", "none"])
            .args(extra)
            .args(["--rootfs", rootfs, "sh", "-c", script]);
        run_host(&mut cmd, what, &env)
    };
    let o = run(&["--cap-drop=all"], "podman run --cap-drop=all");
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(
        o.stdout_str(),
        "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nchown=1\n",
        "{}",
        o.stderr_str()
    );
    let o = run(
        &["--cap-drop=all", "--cap-add=CAP_CHOWN"],
        "podman run --cap-drop=all --cap-add=CAP_CHOWN",
    );
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(
        o.stdout_str(),
        "CapEff:\t0000000000000001\nCapBnd:\t0000000000000001\nchown=0\n",
        "{}",
        o.stderr_str()
    );

    let mut cmd = podman(&env, &bin, &runtime);
    cmd.args(["run", "--rm", "--network", "none", "--memory", "64m"])
        .args(["--rootfs", rootfs, "/bin/memhog", "200"]);
    let o = run_host(&mut cmd, "podman run --memory 64m memhog 200", &env);
    assert_eq!(o.code, 137, "{} {}", o.stdout_str(), o.stderr_str());
}

// ---- containerd -------------------------------------------------------

#[test]
fn containerd_runs_cryo() {
    let (Some(containerd), Some(ctr)) = (which("containerd"), which("ctr")) else {
        println!("SKIPPED: containerd is not installed (tests/scripts/deps.sh installs it)");
        return;
    };
    if which("containerd-shim-runc-v2").is_none() {
        println!("SKIPPED: containerd-shim-runc-v2 is not installed");
        return;
    }
    let env = Env::new();
    let runtime = runtime_path(&env);
    let d = env.dir.path();
    let sock = d.join("containerd.sock");
    let config = d.join("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n[grpc]\n  address = {:?}\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
            d.join("ctrd-root"),
            d.join("ctrd-state"),
            sock
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("containerd.log")).unwrap();
    let mut daemon = Command::new(&containerd)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    while !sock.exists() {
        if let Some(st) = daemon.try_wait().unwrap() {
            panic!(
                "containerd exited ({st}): {}",
                std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "containerd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _daemon = Kill(daemon);
    let o = run_host(
        Command::new(&ctr)
            .arg("--address")
            .arg(&sock)
            .args(["run", "--rm", "--runc-binary"])
            .arg(&runtime)
            .arg("--rootfs")
            .arg(env.rootfs())
            .args(["ctr1", "sh", "-c", "echo hello from containerd; exit 9"]),
        "ctr run",
        &env,
    );
    assert_eq!(
        o.stdout_str(),
        "hello from containerd\n",
        "ctr run: {}\ncontainerd log: {}",
        o.stderr_str(),
        std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
    );
    assert_eq!(o.code, 9, "ctr run: {}", o.stderr_str());
}

#[test]
fn concurrent_commands_on_one_id() {
    let env = Env::new();
    env.spec(|v| set_args(v, "while true; do sleep 1; done"));
    let bundle = env.bundle();
    // Six creates of one id at once: exactly one wins, the others are told.
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let (out, err) = env.files();
            let mut cmd = cryo_command(&env.root());
            cmd.args(["create", "--bundle"]).arg(&bundle).arg("same");
            std::thread::spawn(move || run_to_files(cmd, &out, &err, "create"))
        })
        .collect();
    let outs: Vec<Output> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    let won = outs.iter().filter(|o| o.code == 0).count();
    assert_eq!(
        won,
        1,
        "{:?}",
        outs.iter().map(Output::stderr_str).collect::<Vec<_>>()
    );
    for o in outs.iter().filter(|o| o.code != 0) {
        assert!(
            o.stderr_str().contains("already exists"),
            "{}",
            o.stderr_str()
        );
    }
    assert_eq!(env.cryo(&["start", "same"]).code, 0);
    let pid = env.state("same")["pid"].as_i64().unwrap() as i32;
    // Pauses, resumes and states at once leave a consistent record.
    let runs: Vec<_> = (0..6)
        .map(|i| {
            let (out, err) = env.files();
            let mut cmd = cryo_command(&env.root());
            cmd.arg(["pause", "resume", "state"][i % 3]).arg("same");
            std::thread::spawn(move || run_to_files(cmd, &out, &err, "pause/resume"))
        })
        .collect();
    for t in runs {
        t.join().unwrap();
    }
    let status = env.state("same")["status"].as_str().unwrap().to_string();
    assert!(status == "running" || status == "paused", "{status}");
    if status == "paused" {
        assert_eq!(env.cryo(&["resume", "same"]).code, 0);
    }
    let ex = env.cryo(&["exec", "same", "echo", "still alive"]);
    assert_eq!(ex.stdout_str(), "still alive\n", "{}", ex.stderr_str());
    // Four forced deletes at once: all succeed, the container is gone.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (out, err) = env.files();
            let mut cmd = cryo_command(&env.root());
            cmd.args(["delete", "--force", "same"]);
            std::thread::spawn(move || run_to_files(cmd, &out, &err, "delete --force"))
        })
        .collect();
    for t in runs {
        let o = t.join().unwrap();
        assert_eq!(o.code, 0, "{}", o.stderr_str());
    }
    assert_eq!(wait_pid(pid, TIMEOUT), Some(137));
    assert!(!env.root().join("same").exists());
}

/// linux.resources.pids.limit is the sandbox's task limit: a fork past it
/// fails (EAGAIN), as under a pids cgroup.
#[test]
fn pids_limit_is_enforced() {
    let env = Env::new();
    env.spec(|v| {
        set_args(
            v,
            "for i in 1 2 3 4 5 6; do sleep 1 & done; echo spawned; wait",
        );
        v["linux"]["resources"] = serde_json::json!({"pids": {"limit": 4}});
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "pl"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str()
            .contains("can't fork: Resource temporarily unavailable"),
        "{}",
        o.stderr_str()
    );
    env.spec(|v| {
        set_args(
            v,
            "for i in 1 2 3 4 5 6; do sleep 0.1 & done; wait; echo spawned",
        );
        v["linux"]["resources"] = serde_json::json!({"pids": {"limit": 8}});
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "pl"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(o.stdout_str(), "spawned\n");
}

/// The Cap* lines of this process's /proc/self/status whose value is
/// `field`'s (CapBnd: the bounding set a root container gets by default).
fn host_cap(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:\t")).map(str::to_string))
        .unwrap()
}

/// process.capabilities are the container's credentials: a reduced set
/// shows in /proc/self/status after the process's execve (root's
/// permitted and effective sets are its bounding set, as under runc) and
/// a chown needing CAP_CHOWN fails; a non-root user keeps only its
/// ambient set; no capabilities field is runc's default (root holds every
/// capability the runtime has); an unknown name is an error naming it.
#[test]
fn process_capabilities_are_the_credentials() {
    let env = Env::new();
    let caps = serde_json::json!(["CAP_KILL", "CAP_SETUID", "CAP_SETGID"]);
    let script = "grep Cap /proc/self/status; touch /tmp/x; chown 1000 /tmp/x; echo chown=$?";
    env.spec(|v| {
        set_args(v, script);
        v["process"]["capabilities"] = serde_json::json!({
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": [],
        });
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "caps1"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(
        o.stdout_str(),
        "CapInh:\t0000000000000000\nCapPrm:\t00000000000000e0\nCapEff:\t00000000000000e0\n\
         CapBnd:\t00000000000000e0\nCapAmb:\t0000000000000000\nchown=1\n"
    );
    assert!(
        o.stderr_str().contains("Operation not permitted"),
        "{}",
        o.stderr_str()
    );

    // A non-root user: only what is ambient survives its execve.
    env.spec(|v| {
        set_args(v, "grep Cap /proc/self/status");
        v["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        let nbs = serde_json::json!(["CAP_NET_BIND_SERVICE"]);
        v["process"]["capabilities"] = serde_json::json!({
            "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "inheritable": nbs, "ambient": nbs,
        });
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "caps2"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(
        o.stdout_str(),
        "CapInh:\t0000000000000400\nCapPrm:\t0000000000000400\nCapEff:\t0000000000000400\n\
         CapBnd:\t0000000000000420\nCapAmb:\t0000000000000400\n"
    );

    // No capabilities field: root holds the runtime's bounding set.
    env.spec(|v| {
        set_args(v, "grep -e CapEff -e CapBnd /proc/self/status");
        v["process"].as_object_mut().unwrap().remove("capabilities");
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "caps3"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let bnd = host_cap("CapBnd");
    assert_eq!(o.stdout_str(), format!("CapEff:\t{bnd}\nCapBnd:\t{bnd}\n"));

    // An unknown capability name fails the run, naming it.
    env.spec(|v| {
        set_args(v, "true");
        v["process"]["capabilities"] = serde_json::json!({"bounding": ["CAP_NOPE"]});
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "caps4"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("CAP_NOPE")
            && o.stderr_str().contains("process.capabilities.bounding"),
        "{}",
        o.stderr_str()
    );
    // Effective beyond permitted: capset would refuse it, so does run.
    env.spec(|v| {
        set_args(v, "true");
        v["process"]["capabilities"] = serde_json::json!({
            "bounding": ["CAP_KILL"], "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL"],
        });
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "caps5"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr_str().contains("process.capabilities.effective")
            && o.stderr_str().contains("CAP_CHOWN"),
        "{}",
        o.stderr_str()
    );
}

/// linux.resources.memory.limit is enforced by the sandbox as a memory
/// cgroup's: a container with a 64 MiB limit whose program touches 200 MiB
/// is OOM-killed (SIGKILL: `run` exits 137), one touching 32 MiB runs;
/// the container sees the limit as MemTotal; a swap limit, which cryo
/// does not enforce, is warned about, not refused.
#[test]
fn memory_limit_is_enforced() {
    let env = Env::new();
    let hog = cryo_tests::guest("memhog", cryo_tests::Libc::Glibc);
    std::fs::copy(&hog, env.rootfs().join("bin/memhog")).unwrap();
    let limited = |v: &mut serde_json::Value| {
        v["linux"]["resources"] =
            serde_json::json!({"memory": {"limit": 64 << 20, "swap": 64 << 20}});
    };
    env.spec(|v| {
        set_args(v, "exec /bin/memhog 200");
        limited(v);
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "m1"]);
    assert_eq!(o.code, 137, "{}", o.stderr_str());
    assert_eq!(o.stdout_str(), "");
    assert!(
        o.stderr_str().contains("swap") && o.stderr_str().contains("not enforced"),
        "{}",
        o.stderr_str()
    );
    env.spec(|v| {
        set_args(v, "grep MemTotal /proc/meminfo; /bin/memhog 32");
        limited(v);
    });
    let o = env.cryo(&["run", "--bundle", env.bundle().to_str().unwrap(), "m2"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(
        o.stdout_str(),
        "MemTotal:          65536 kB\ntouched 32 MiB\n"
    );
}

/// linux.cgroupsPath on a host with a cgroup v2 hierarchy: the sandbox
/// process (the container's pid) is in that cgroup while the container
/// runs, and the cgroup is gone after delete.
#[test]
fn host_processes_join_cgroups_path() {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(mount) = info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| PathBuf::from(pre.split_whitespace().nth(4).unwrap()))
    }) else {
        cryo_tests::sandbox::skip("the host has no cgroup v2 hierarchy");
        return;
    };
    let env = Env::new();
    let name = format!("cryo-test-{}", std::process::id());
    let cg = mount.join(&name);
    env.spec(|v| {
        set_args(v, "echo up; sleep 1000");
        v["linux"]["cgroupsPath"] = format!("/{name}").into();
    });
    let (out, err) = env.files();
    let pid_file = env.dir.path().join("cg.pid");
    let mut cmd = cryo_command(&env.root());
    cmd.args(["run", "--detach", "--bundle"])
        .arg(env.bundle())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("cg");
    let r = run_to_files(cmd, &out, &err, "cryo run --detach");
    assert_eq!(r.code, 0, "{}", r.stderr_str());
    wait_for_text(&out, "up");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid),
        "sandbox {pid} not in {}: {procs:?}",
        cg.display()
    );
    assert_eq!(env.cryo(&["kill", "cg", "9"]).code, 0);
    let pid: i32 = pid.parse().unwrap();
    assert_eq!(wait_pid(pid, TIMEOUT), Some(137));
    assert_eq!(env.cryo(&["delete", "cg"]).code, 0);
    assert!(!cg.exists(), "{} left behind", cg.display());
}

/// `cryo checkpoint` takes an OCI container's id: its sandbox answers on
/// the same control socket, writes the statefile and ends (stopped).
#[test]
fn checkpoint_of_an_oci_container() {
    let env = Env::new();
    env.spec(|v| {
        set_args(
            v,
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
        )
    });
    let (out, err) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["run", "--detach", "--bundle"])
        .arg(env.bundle())
        .arg("ck");
    assert_eq!(run_to_files(cmd, &out, &err, "run --detach").code, 0);
    let pid = env.state("ck")["pid"].as_i64().unwrap() as i32;
    wait_for_text(&out, "\n3\n");
    let img = env.dir.path().join("img");
    std::fs::create_dir(&img).unwrap();
    let o = env.cryo(&["checkpoint", "--image-path", img.to_str().unwrap(), "ck"]);
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    assert_eq!(wait_pid(pid, TIMEOUT), Some(0));
    assert_eq!(env.state("ck")["status"], "stopped");
    assert!(img.join("checkpoint.cryo").is_file());
    let last: u64 = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    // Restored (in the foreground, as `cryo restore` runs), it counts on.
    let (rout, rerr) = env.files();
    let mut cmd = cryo_command(&env.root());
    cmd.args(["restore", "--image-path"])
        .arg(&img)
        .args(["--id", "ck2"]);
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&rout).unwrap())
        .stderr(std::fs::File::create(&rerr).unwrap());
    let mut child = cmd.spawn().unwrap();
    let text = wait_for_text(&rout, "\n");
    let _ = child.kill();
    let _ = child.wait();
    let first: u64 = text.lines().next().unwrap().parse().unwrap();
    assert_eq!(first, last + 1, "restored output {text:?}");
    assert_eq!(env.cryo(&["delete", "ck"]).code, 0);
}
