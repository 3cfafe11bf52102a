//! Checkpoint and restore of OCI containers: `cryo checkpoint` of a
//! container, then `cryo restore --bundle B --detach --pid-file F ID` (the
//! command line conmon uses for `podman container restore`) into a copied
//! bundle in another directory under a new id; programs (busybox sh,
//! python3, sqlite3) checkpointed and restored as containers; podman's
//! checkpoint and restore (in place, --leave-running, --export/--import);
//! and the restores that must be refused, leaving nothing behind.
//!
//! The test process is a child subreaper, as conmon is: a restored
//! container's sandbox outlives `restore --detach` and is reaped here.
//! podman, conmon and criu (which podman insists on) are installed by
//! tests/scripts/deps.sh; a test fails when one is missing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cryo_tests::sandbox::cryo_command;
use cryo_tests::{cryo_bin, guest, Libc, Output};

mod lazy_support;

/// What one command, or a container's progress, may take.
const TIMEOUT: Duration = Duration::from_secs(90);

fn become_subreaper() {
    // SAFETY: prctl with integer arguments only changes this process's
    // subreaper attribute.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Reaps sandbox `pid` if it is this process's child and ends soon (not
/// `waitpid(-1)`: the other tests' threads wait for children of their own).
fn reap(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host pid's exit status, waited for as its (sub)reaper.
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
            "waitpid({pid}): {}",
            std::io::Error::last_os_error()
        );
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "mv", "wc", "true", "rm", "kill",
];

/// A scratch directory: `--root`, bundles, images, output files.
struct Env {
    dir: tempfile::TempDir,
    n: AtomicU64,
}

impl Env {
    fn new() -> Env {
        become_subreaper();
        Env {
            dir: tempfile::tempdir().unwrap(),
            n: AtomicU64::new(0),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self) -> PathBuf {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("out.{n}"))
    }

    /// A bundle `name` whose config.json (`cryo spec`, root writable)
    /// runs `args`, `edit`ed; its root is a busybox root file system with
    /// the ckpt_container guest in /bin, or the host's `/` when `host_root`.
    fn bundle(
        &self,
        name: &str,
        args: &[&str],
        host_root: bool,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> PathBuf {
        let bundle = self.path(name);
        std::fs::create_dir_all(&bundle).unwrap();
        if !host_root {
            let rootfs = bundle.join("rootfs");
            for d in ["bin", "etc", "tmp"] {
                std::fs::create_dir_all(rootfs.join(d)).unwrap();
            }
            std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
                .expect("busybox-static is installed (tests/scripts/deps.sh)");
            for a in APPLETS {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
            }
            std::fs::copy(
                guest("ckpt_container", Libc::Glibc),
                rootfs.join("bin/ckpt_container"),
            )
            .unwrap();
        }
        let o = self.cryo(&["spec", "--bundle", bundle.to_str().unwrap()]);
        assert_eq!(o.code, 0, "spec: {}", o.stderr_str());
        let path = bundle.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["root"]["readonly"] = false.into();
        if host_root {
            v["root"]["path"] = "/".into();
        }
        v["process"]["args"] = args.iter().map(|a| a.to_string()).collect();
        v["process"]["env"] = serde_json::json!([
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "HOME=/tmp",
            "LANG=C.UTF-8"
        ]);
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
        bundle
    }

    /// `cryo --root ROOT ARGS` to completion, stdout in `out` (a sandbox
    /// the command leaves running keeps writing there).
    fn cryo_to<S: AsRef<OsStr>>(&self, args: &[S], out: &Path) -> Output {
        let err = self.file();
        let mut cmd = cryo_command(&self.root());
        cmd.args(args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        run_to_files(cmd, out, &err, &format!("cryo {}", shown.join(" ")))
    }

    fn cryo<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.file();
        self.cryo_to(args, &out)
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let o = self.cryo(&["state", id]);
        assert_eq!(o.code, 0, "state {id}: {}", o.stderr_str());
        serde_json::from_slice(&o.stdout).expect("state prints JSON")
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.root())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// `run --detach`: the container's pid; its output goes to `out`.
    fn run_detached(&self, bundle: &Path, id: &str, out: &Path) -> i32 {
        let o = self.cryo_to(
            &[
                OsStr::new("run"),
                OsStr::new("--detach"),
                OsStr::new("--bundle"),
                bundle.as_os_str(),
                OsStr::new(id),
            ],
            out,
        );
        assert_eq!(o.code, 0, "run -d {id}: {}", o.stderr_str());
        self.state(id)["pid"].as_i64().unwrap() as i32
    }

    /// `checkpoint --image-path IMG --work-path WORK FLAGS ID`.
    fn checkpoint(&self, id: &str, img: &Path, flags: &[&str]) -> Output {
        let work = self.path("work");
        std::fs::create_dir_all(&work).unwrap();
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("checkpoint"),
            OsStr::new("--image-path"),
            img.as_os_str(),
            OsStr::new("--work-path"),
            work.as_os_str(),
        ];
        args.extend(flags.iter().map(OsStr::new));
        args.push(OsStr::new(id));
        self.cryo(&args)
    }

    /// conmon's restore: `restore --bundle B --detach --pid-file F
    /// --image-path IMG --work-path W ID`, output to `out`.
    fn restore(&self, bundle: &Path, img: &Path, id: &str, out: &Path) -> Output {
        self.cryo_to(&self.restore_args(bundle, img, id, &[]), out)
    }

    fn restore_args(
        &self,
        bundle: &Path,
        img: &Path,
        id: &str,
        flags: &[&str],
    ) -> Vec<std::ffi::OsString> {
        let work = self.path("work");
        std::fs::create_dir_all(&work).unwrap();
        let pid_file = self.path(&format!("{id}.pid"));
        let mut args: Vec<std::ffi::OsString> = vec![
            "restore".into(),
            "--bundle".into(),
            bundle.into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.into(),
            "--image-path".into(),
            img.into(),
            "--work-path".into(),
            work.into(),
        ];
        args.extend(flags.iter().map(Into::into));
        args.push(id.into());
        args
    }

    /// conmon's restore with `--lazy`, the background loader held
    /// (`CRYO_TEST_LAZY_HOLD=1`: only what the container touches loads);
    /// the container's stdout in `out`, and its sandbox's stderr (written
    /// after the restore returns too) in `err`.
    fn restore_lazy(&self, bundle: &Path, img: &Path, id: &str, out: &Path, err: &Path) -> Output {
        let mut cmd = cryo_command(&self.root());
        cmd.env("CRYO_TEST_LAZY_HOLD", "1");
        cmd.args(self.restore_args(bundle, img, id, &["--lazy"]));
        run_to_files(cmd, out, err, &format!("cryo restore --lazy {id}"))
    }

    /// A restore that must succeed: the container's pid, checked against
    /// the pid file and its state.
    fn restored(&self, bundle: &Path, img: &Path, id: &str, out: &Path) -> i32 {
        let o = self.restore(bundle, img, id, out);
        assert_eq!(o.code, 0, "restore {id}: {}", o.stderr_str());
        let st = self.state(id);
        assert_eq!(st["status"], "running", "{st}");
        let pid = st["pid"].as_i64().unwrap() as i32;
        let from_file: i32 = std::fs::read_to_string(self.path(&format!("{id}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, from_file, "--pid-file and state disagree");
        assert!(alive(pid), "restored sandbox {pid} is not running");
        pid
    }
}

impl Drop for Env {
    /// A failing test leaves no sandbox running.
    fn drop(&mut self) {
        for id in self.ids() {
            let pid = std::fs::read(self.root().join(&id).join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["pid"].as_i64());
            let mut cmd = cryo_command(&self.root());
            cmd.args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
            if let Some(pid) = pid.filter(|&p| p > 0) {
                reap(pid as i32);
            }
        }
        cryo_tests::unmount_under(self.dir.path());
    }
}

fn run_to_files(mut cmd: Command, out: &Path, err: &Path, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap());
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
                "{what}: still running after {TIMEOUT:?}; stderr: {}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code,
        stdout: std::fs::read(out).unwrap_or_default(),
        stderr: std::fs::read(err).unwrap_or_default(),
    }
}

/// The lines of `path` once `done` holds for them.
fn wait_lines(path: &Path, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if done(&lines) {
            return lines;
        }
        assert!(
            !lines.iter().any(|l| l.starts_with("CHECK FAILED")),
            "{what}: {lines:?}"
        );
        assert!(Instant::now() < deadline, "{what}: only {lines:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `key=value` fields of a guest line.
fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ticks(lines: &[String]) -> Vec<HashMap<String, String>> {
    lines
        .iter()
        .filter(|l| l.starts_with("tick="))
        .map(|l| fields(l))
        .collect()
}

fn num(f: &HashMap<String, String>, key: &str) -> i64 {
    f.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key} in {f:?}"))
}

/// `cp -a`: bundles hold symlinks (busybox's applets).
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// What a restored ckpt_container prints shows everything survived: its
/// ticks go on from `last` (the last tick its checkpointed run printed),
/// with the same memory, pipe, offset, file, shell, and counters and
/// clocks that never went back.
fn check_continues(
    lines: &[String],
    ready: &HashMap<String, String>,
    last: &HashMap<String, String>,
) -> HashMap<String, String> {
    let t = ticks(lines);
    assert!(
        !lines.iter().any(|l| l.starts_with("ready")),
        "the restored container started over: {lines:?}"
    );
    let first = &t[0];
    assert_eq!(
        num(first, "tick"),
        num(last, "tick") + 1,
        "the restored run does not go on from the checkpointed one: {lines:?}"
    );
    for f in &t {
        assert_eq!(f["mem"], ready["mem"], "memory changed: {f:?}");
        assert_eq!(f["file"], ready["file"], "/tmp/ckpt-data changed: {f:?}");
        assert_eq!(f["pipe"], "ok");
        assert_eq!(f["off"], "4096", "the open file's offset moved");
        assert_eq!(f["sh"], "alive");
        assert_eq!(f["sleep"], "alive");
    }
    // The timer goes on firing the handler, the alarm is still pending,
    // and the monotonic clock did not go back.
    let lastf = t.last().unwrap();
    assert!(
        num(first, "usr1") >= num(last, "usr1"),
        "{first:?} {last:?}"
    );
    assert!(
        num(lastf, "usr1") > num(first, "usr1"),
        "the timer's handler stopped: {t:?}"
    );
    assert!(num(first, "alarm_s") <= num(last, "alarm_s"));
    assert!(num(first, "alarm_s") > 3000);
    assert!(
        num(first, "mono_ms") >= num(last, "mono_ms"),
        "CLOCK_MONOTONIC went back: {last:?} then {first:?}"
    );
    lastf.clone()
}

#[test]
fn container_state_survives_checkpoint_and_restore() {
    let env = Env::new();
    let bundle = env.bundle("bundle", &["/bin/ckpt_container", "256"], false, |_| {});
    let out = env.path("a.out");
    let pid = env.run_detached(&bundle, "a", &out);
    let lines = wait_lines(&out, "container a", |l| ticks(l).len() >= 3);
    let ready = fields(&lines[0]);
    assert_eq!(ready["pid"], "1", "{lines:?}");
    assert_eq!(ready["mib"], "256");

    // Checkpointed mid-run: the container stops, podman-style.
    let img = env.path("img");
    let o = env.checkpoint("a", &img, &[]);
    assert_eq!(o.code, 0, "checkpoint: {}", o.stderr_str());
    assert_eq!(wait_pid(pid, TIMEOUT), Some(0));
    assert_eq!(env.state("a")["status"], "stopped");
    assert!(img.join("checkpoint.cryo").is_file());
    assert!(img.join("inventory.img").is_file());
    let inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("inventory.img")).unwrap()).unwrap();
    assert_eq!(inv["format"], "cryo-image-inventory");
    assert_eq!(inv["container_id"], "a");
    assert!(
        inv["memory_bytes"].as_u64().unwrap() >= 256 << 20,
        "the 256 MiB are not in the statefile: {inv}"
    );
    assert_eq!(
        inv["files"][0]["bytes"].as_u64().unwrap(),
        std::fs::metadata(img.join("checkpoint.cryo"))
            .unwrap()
            .len()
    );
    let log = std::fs::read_to_string(env.path("work/dump.log")).unwrap();
    assert!(log.contains("checkpoint succeeded"), "{log}");
    let last = ticks(
        &std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .pop()
    .unwrap();
    assert_eq!(env.cryo(&["delete", "a"]).code, 0);

    // Restored from copies of the image and the bundle, in another
    // directory, under a new id.
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    copy_tree(&img, &elsewhere.join("img"));
    copy_tree(&bundle, &elsewhere.join("bundle"));
    std::fs::remove_dir_all(&img).unwrap();
    let (img, bundle) = (elsewhere.join("img"), elsewhere.join("bundle"));
    let bout = env.path("b.out");
    let bpid = env.restored(&bundle, &img, "b", &bout);
    let log = std::fs::read_to_string(env.path("work/restore.log")).unwrap();
    assert!(log.contains("restore succeeded"), "{log}");
    let blines = wait_lines(&bout, "restored b", |l| ticks(l).len() >= 4);
    let blast = check_continues(&blines, &ready, &last);

    // Every OCI command works on the restored container.
    let o = env.cryo(&["ps", "--format", "json", "b"]);
    assert_eq!(o.code, 0, "ps: {}", o.stderr_str());
    let pids: Vec<i64> = serde_json::from_slice(&o.stdout).unwrap();
    for want in [
        1,
        num(&ready, "sh"),
        num(&ready, "sleep1"),
        num(&ready, "sleep2"),
    ] {
        assert!(pids.contains(&want), "pid {want} not in {pids:?}");
    }
    let o = env.cryo(&["exec", "b", "/bin/sh", "-c", "wc -c < /tmp/ckpt-data"]);
    assert_eq!(o.code, 0, "exec: {}", o.stderr_str());
    assert_eq!(o.stdout_str().trim(), "8192");
    assert_eq!(env.cryo(&["pause", "b"]).code, 0);
    assert_eq!(env.state("b")["status"], "paused");
    assert_eq!(env.cryo(&["resume", "b"]).code, 0);
    assert_eq!(env.state("b")["status"], "running");

    // The same image restored again: a second, independent container.
    let cout = env.path("c.out");
    let cpid = env.restored(&bundle, &img, "c", &cout);
    let clines = wait_lines(&cout, "restored c", |l| ticks(l).len() >= 3);
    check_continues(&clines, &ready, &last);
    assert_eq!(env.cryo(&["kill", "c", "KILL"]).code, 0);
    assert_eq!(wait_pid(cpid, TIMEOUT), Some(137));
    assert_eq!(env.state("c")["status"], "stopped");
    assert_eq!(env.cryo(&["delete", "c"]).code, 0);
    let n = ticks(
        &std::fs::read_to_string(&bout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .len();
    wait_lines(&bout, "b after c's end", |l| ticks(l).len() > n + 2);
    assert!(alive(bpid), "killing c ended b");

    // Checkpoint the restored container again and restore that; the
    // image directory is deleted once it is restored (as podman does).
    let img2 = env.path("img2");
    let o = env.checkpoint("b", &img2, &[]);
    assert_eq!(o.code, 0, "second checkpoint: {}", o.stderr_str());
    assert_eq!(wait_pid(bpid, TIMEOUT), Some(0));
    let blines: Vec<String> = std::fs::read_to_string(&bout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let blast2 = ticks(&blines).pop().unwrap();
    assert!(num(&blast2, "tick") >= num(&blast, "tick"));
    assert_eq!(env.cryo(&["delete", "--force", "b"]).code, 0);
    let dout = env.path("d.out");
    let dpid = env.restored(&bundle, &img2, "d", &dout);
    std::fs::remove_dir_all(&img2).unwrap();
    let dlines = wait_lines(&dout, "restored d", |l| ticks(l).len() >= 3);
    check_continues(&dlines, &ready, &blast2);
    assert_eq!(env.cryo(&["kill", "d", "KILL"]).code, 0);
    assert_eq!(wait_pid(dpid, TIMEOUT), Some(137));
    assert_eq!(env.cryo(&["delete", "d"]).code, 0);
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}

/// A program checkpointed and restored as a container: `args` in a bundle
/// (the host's root when `host_root`), each line's first number a counter
/// that the restored run continues.
fn program_survives(what: &str, args: &[&str], host_root: bool, first_lines: usize) {
    let env = Env::new();
    let bundle = env.bundle("bundle", args, host_root, |_| {});
    let out = env.path("a.out");
    let counter = |l: &str| -> Option<u64> {
        l.split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
    };
    let counted = |l: &[String]| l.iter().filter(|l| counter(l).is_some()).count();
    let pid = env.run_detached(&bundle, "a", &out);
    wait_lines(&out, what, |l| counted(l) >= first_lines);
    let img = env.path("img");
    let o = env.checkpoint("a", &img, &[]);
    assert_eq!(o.code, 0, "{what}: checkpoint: {}", o.stderr_str());
    assert_eq!(wait_pid(pid, TIMEOUT), Some(0), "{what}");
    let before = std::fs::read_to_string(&out).unwrap();
    let last = before.lines().rev().find_map(counter).unwrap();
    assert_eq!(env.cryo(&["delete", "a"]).code, 0);

    let moved = env.path("moved");
    std::fs::create_dir(&moved).unwrap();
    copy_tree(&bundle, &moved.join("bundle"));
    let bout = env.path("b.out");
    let bpid = env.restored(&moved.join("bundle"), &img, "b", &bout);
    let after = wait_lines(&bout, what, |l| counted(l) >= 3);
    let first = after.iter().find_map(|l| counter(l)).unwrap();
    assert_eq!(
        first,
        last + 1,
        "{what}: restored output {after:?} after {before:?}"
    );
    assert_eq!(env.cryo(&["delete", "--force", "b"]).code, 0);
    wait_pid(bpid, TIMEOUT);
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}

/// Issue 15: a bundle's tmpfs mount (/scratch) keeps its files and an fd
/// open on one of them across `cryo checkpoint` and `cryo restore
/// --bundle`: the restored shell goes on appending through the same fd,
/// and the file's line count follows its counter.
#[test]
fn a_bundles_tmpfs_mount_keeps_its_files_across_restore() {
    let env = Env::new();
    let script = "echo saved > /scratch/f; exec 3>>/scratch/log; i=0; \
        while true; do i=$((i+1)); echo $i >&3; \
        echo \"tick=$i f=$(cat /scratch/f) log=$(wc -l < /scratch/log)\"; sleep 0.05; done";
    let bundle = env.bundle("bundle", &["/bin/sh", "-c", script], false, |v| {
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
            "options": ["mode=1777"]
        }));
    });
    let out = env.path("a.out");
    let pid = env.run_detached(&bundle, "a", &out);
    wait_lines(&out, "tmpfs container", |l| ticks(l).len() >= 3);
    let img = env.path("img");
    let o = env.checkpoint("a", &img, &[]);
    assert_eq!(o.code, 0, "checkpoint: {}", o.stderr_str());
    assert_eq!(wait_pid(pid, TIMEOUT), Some(0));
    let before: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last = num(ticks(&before).last().unwrap(), "tick");
    assert_eq!(env.cryo(&["delete", "a"]).code, 0);

    let bout = env.path("b.out");
    let bpid = env.restored(&bundle, &img, "b", &bout);
    let after = wait_lines(&bout, "restored tmpfs container", |l| ticks(l).len() >= 3);
    let t = ticks(&after);
    assert_eq!(num(&t[0], "tick"), last + 1, "{after:?} after {before:?}");
    for f in &t {
        assert_eq!(f["f"], "saved", "{after:?}");
        assert_eq!(num(f, "log"), num(f, "tick"), "{after:?}");
    }
    assert_eq!(env.cryo(&["delete", "--force", "b"]).code, 0);
    wait_pid(bpid, TIMEOUT);
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}

#[test]
fn busybox_sh_loop_restores_as_a_container() {
    program_survives(
        "busybox sh",
        &[
            "/bin/sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
        ],
        false,
        5,
    );
}

#[test]
fn restore_without_detach_stays_in_the_foreground() {
    let env = Env::new();
    let args = [
        "/bin/sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
    ];
    let bundle = env.bundle("bundle", &args, false, |_| {});
    let out = env.path("a.out");
    env.run_detached(&bundle, "a", &out);
    wait_lines(&out, "a", |l| l.len() >= 3);
    let last = || -> u64 {
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    // `a` runs on: the checkpoint is of a moment between these two.
    let before = last();
    let img = env.path("img");
    let o = env.checkpoint("a", &img, &["--leave-running"]);
    assert_eq!(o.code, 0, "checkpoint: {}", o.stderr_str());
    let after = last();
    // The restore command itself stands for the container, its stdio the
    // container's, and ends with it.
    let fout = env.path("f.out");
    let ferr = env.file();
    let mut cmd = cryo_command(&env.root());
    cmd.arg("restore")
        .arg("--bundle")
        .arg(&bundle)
        .arg("--image-path")
        .arg(&img)
        .arg("f")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&fout).unwrap())
        .stderr(std::fs::File::create(&ferr).unwrap());
    let mut child = cmd.spawn().unwrap();
    let lines = wait_lines(&fout, "restored f", |l| l.len() >= 3);
    let first: u64 = lines[0].parse().unwrap();
    assert!(
        first > before && first <= after + 1,
        "f does not go on from the checkpoint between {before} and {after}: {lines:?}"
    );
    assert_eq!(env.state("f")["status"], "running");
    assert!(child.try_wait().unwrap().is_none(), "restore returned");
    let k = env.cryo(&["kill", "f", "KILL"]);
    assert_eq!(k.code, 0, "cryo kill f KILL: {}", k.stderr_str());
    let deadline = Instant::now() + TIMEOUT;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break cryo_tests::exit_code(st);
        }
        assert!(Instant::now() < deadline, "restore did not end with f");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 137, "{}", std::fs::read_to_string(&ferr).unwrap());
    // As `run` in the foreground, the ended container is removed.
    assert_eq!(env.ids(), ["a"]);
    assert_eq!(env.cryo(&["delete", "--force", "a"]).code, 0);
}

/// A restore runs the restore bundle's prestart and createRuntime hooks
/// (as runc's), with the new container's state, before its processes go
/// on; a failing one fails the restore and leaves nothing.
#[test]
fn restore_runs_prestart_and_create_runtime_hooks() {
    let env = Env::new();
    let args = [
        "/bin/sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
    ];
    let bundle = env.bundle("bundle", &args, false, |_| {});
    let out = env.path("a.out");
    env.run_detached(&bundle, "a", &out);
    wait_lines(&out, "a", |l| l.len() >= 2);
    let img = env.path("img");
    let o = env.checkpoint("a", &img, &[]);
    assert_eq!(o.code, 0, "checkpoint: {}", o.stderr_str());
    assert_eq!(env.cryo(&["delete", "--force", "a"]).code, 0);

    let marks = env.path("marks");
    std::fs::create_dir(&marks).unwrap();
    let hook = |stage: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}/{stage}.json", marks.display())],
        })
    };
    // Hooks are the host's business, not the application's: a bundle
    // with them is the same container.
    let hooked = env.bundle("hooked", &args, false, |v| {
        v["hooks"] = serde_json::json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "startContainer": [hook("startContainer")],
        });
    });
    let rout = env.path("r.out");
    let pid = env.restored(&hooked, &img, "r", &rout);
    for stage in ["prestart", "createRuntime"] {
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(marks.join(format!("{stage}.json"))).unwrap())
                .unwrap();
        assert_eq!(st["id"], "r", "{stage}: {st}");
        assert_eq!(st["status"], "creating", "{stage}: {st}");
        assert_eq!(st["pid"], pid, "{stage} sees the sandbox's pid");
    }
    assert!(
        !marks.join("startContainer.json").exists(),
        "a restore starts no container"
    );
    wait_lines(&rout, "r", |l| l.len() >= 2);
    assert_eq!(env.cryo(&["delete", "--force", "r"]).code, 0);
    wait_pid(pid, TIMEOUT);

    let failing = env.bundle("failing", &args, false, |v| {
        v["hooks"] = serde_json::json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
        });
    });
    let o = env.restore(&failing, &img, "f", &env.file());
    assert_eq!(o.code, 125, "a failing hook: {}", o.stderr_str());
    assert!(
        o.stderr_str().contains("createRuntime"),
        "{}",
        o.stderr_str()
    );
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}

#[test]
fn python_with_a_large_dict_restores_as_a_container() {
    assert!(
        Path::new("/usr/bin/python3").is_file(),
        "python3 is installed (tests/scripts/deps.sh)"
    );
    // (Lines joined by hand: a `\` continuation would eat the indentation.)
    let script = [
        "import time",
        "d = {i: i * i for i in range(1000000)}",
        "n = 0",
        "while True:",
        "    n += 1",
        "    k = (n * 7919) % 1000000",
        "    assert d[k] == k * k",
        "    print(n, len(d), flush=True)",
        "    time.sleep(0.05)",
    ]
    .join("\n");
    program_survives("python3", &["/usr/bin/python3", "-c", &script], true, 5);
}

#[test]
fn sqlite_mid_session_restores_as_a_container() {
    assert!(
        Path::new("/usr/bin/sqlite3").is_file(),
        "sqlite3 is installed (tests/scripts/deps.sh)"
    );
    // One sqlite3 session fed through a pipe: each row inserted, then the
    // count and the sum of all rows, so a lost or repeated row shows.
    let script = "rm -f /tmp/db; (echo 'create table t(x integer);'; i=0; \
while true; do i=$((i+1)); echo \"insert into t values($i); select count(*), sum(x) = count(*) * (count(*) + 1) / 2 from t;\"; sleep 0.05; done) \
| sqlite3 /tmp/db";
    program_survives("sqlite3", &["/bin/sh", "-c", script], true, 5);
}

/// A restore that must be refused: its error names `want`; nothing new is
/// left under --root and the running container `keep` is untouched.
fn refused(env: &Env, o: &Output, want: &str, keep: i32) {
    assert_eq!(o.code, 125, "not refused: {}", o.stderr_str());
    assert!(
        o.stderr_str().contains(want),
        "the error does not say {want:?}: {}",
        o.stderr_str()
    );
    assert_eq!(env.ids(), ["keep"], "left under --root");
    assert!(alive(keep), "the running container was killed");
    assert_eq!(env.state("keep")["status"], "running");
}

#[test]
fn bad_restores_are_refused_and_leave_nothing() {
    let env = Env::new();
    let args = [
        "/bin/sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done",
    ];
    let bundle = env.bundle("bundle", &args, false, |_| {});
    let kout = env.path("keep.out");
    let keep = env.run_detached(&bundle, "keep", &kout);
    let img = env.path("img");
    let o = env.checkpoint("keep", &img, &["--leave-running", "--leave-running"]);
    assert_eq!(o.code, 0, "checkpoint --leave-running: {}", o.stderr_str());
    assert!(alive(keep));
    let first_inventory = std::fs::read(img.join("inventory.img")).unwrap();
    // Again into the same directory, as podman does after --leave-running:
    // this container's own earlier checkpoint is replaced.
    let o = env.checkpoint("keep", &img, &["--leave-running"]);
    assert_eq!(o.code, 0, "checkpoint again: {}", o.stderr_str());

    // podman asks whether the runtime checkpoints with `checkpoint --help`.
    for cmd in ["checkpoint", "restore"] {
        let o = env.cryo(&[cmd, "--help"]);
        assert_eq!(o.code, 0, "{cmd} --help");
        assert!(
            o.stdout_str().contains("--image-path"),
            "{}",
            o.stdout_str()
        );
    }

    // Flags cryo cannot honour are named.
    for (flags, want) in [
        (&["--pre-dump"][..], "--pre-dump"),
        (&["--parent-path", "../pre"][..], "--parent-path"),
        (&["--tcp-established"][..], "--tcp-established"),
    ] {
        let o = env.checkpoint("keep", &env.path("never"), flags);
        assert_eq!(o.code, 125, "{flags:?}");
        assert!(o.stderr_str().contains(want), "{}", o.stderr_str());
    }
    // An id that exists.
    let o = env.restore(&bundle, &img, "keep", &env.file());
    refused(&env, &o, "already exists", keep);

    // A missing image directory.
    let o = env.restore(&bundle, &env.path("nowhere"), "x", &env.file());
    refused(&env, &o, "does not exist", keep);

    // A bundle whose root and mounts differ from the checkpointed one's.
    let data = env.path("data");
    std::fs::create_dir(&data).unwrap();
    let other = env.bundle("other", &args, false, |v| {
        v["root"]["readonly"] = true.into();
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "type": "bind",
            "source": data, "options": ["bind", "ro"]
        }));
    });
    let o = env.restore(&other, &img, "x", &env.file());
    refused(&env, &o, "root.readonly was false", keep);
    assert!(o.stderr_str().contains("/data"), "{}", o.stderr_str());

    // An image directory another tool wrote: CRIU's inventory.img is a
    // protobuf image behind a binary magic.
    let criu = env.path("criu-img");
    copy_tree(&img, &criu);
    std::fs::write(
        criu.join("inventory.img"),
        [0x54, 0x56, 0x19, 0x58, 0x08, 0x02],
    )
    .unwrap();
    let o = env.restore(&bundle, &criu, "x", &env.file());
    refused(&env, &o, "not written by cryo", keep);

    // The first checkpoint's inventory beside the second's statefile.
    std::fs::write(criu.join("inventory.img"), &first_inventory).unwrap();
    let o = env.restore(&bundle, &criu, "x", &env.file());
    refused(&env, &o, "changed after its checkpoint", keep);

    // No inventory.img at all.
    std::fs::remove_file(criu.join("inventory.img")).unwrap();
    let o = env.restore(&bundle, &criu, "x", &env.file());
    refused(&env, &o, "has no inventory.img", keep);

    // A statefile damaged after its checkpoint (same size, one byte
    // flipped in its memory): the sandbox's validation refuses it.
    let bad = env.path("bad-img");
    copy_tree(&img, &bad);
    let sf = bad.join("checkpoint.cryo");
    let mut bytes = std::fs::read(&sf).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&sf, &bytes).unwrap();
    let o = env.restore(&bundle, &bad, "x", &env.file());
    refused(&env, &o, "checkpoint.cryo", keep);

    // And the good image still restores.
    let xout = env.path("x.out");
    let xpid = env.restored(&bundle, &img, "x", &xout);
    wait_lines(&xout, "x", |l| l.len() >= 2);
    assert_eq!(env.cryo(&["delete", "--force", "x"]).code, 0);
    wait_pid(xpid, TIMEOUT);
    assert_eq!(env.cryo(&["delete", "--force", "keep"]).code, 0);
    wait_pid(keep, TIMEOUT);
}

// ---- podman -----------------------------------------------------------

fn which(program: &str) -> PathBuf {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(program))
    .find(|p| p.is_file())
    .unwrap_or_else(|| panic!("{program} is not installed: run tests/scripts/deps.sh"))
}

/// The cryo binary as podman calls it: with the test's platform, through
/// a wrapper script when one is asked for.
fn runtime_path(env: &Env) -> PathBuf {
    match cryo_tests::sandbox::test_platform() {
        None => cryo_bin().to_path_buf(),
        Some(p) => {
            let path = env.path("cryo-runtime");
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

/// podman with its own storage, run root and tmp dir in the test's
/// directory, cryo as its runtime.
fn podman(env: &Env, args: &[&str]) -> Output {
    let mut cmd = Command::new(which("podman"));
    cmd.arg("--root")
        .arg(env.path("podman-storage"))
        .arg("--runroot")
        .arg(env.path("podman-run"))
        .arg("--tmpdir")
        .arg(env.path("podman-tmp"))
        .arg("--runtime")
        .arg(runtime_path(env))
        .arg("--cgroup-manager")
        .arg("cgroupfs")
        .arg("--events-backend")
        .arg("file")
        .args(args);
    let out = env.file();
    let err = env.file();
    run_to_files(cmd, &out, &err, &format!("podman {}", args.join(" ")))
}

fn podman_ok(env: &Env, args: &[&str]) -> Output {
    let o = podman(env, args);
    assert_eq!(o.code, 0, "podman {}: {}", args.join(" "), o.stderr_str());
    o
}

fn status(env: &Env, name: &str) -> String {
    podman_ok(env, &["inspect", "--format", "{{.State.Status}}", name])
        .stdout_str()
        .trim()
        .to_string()
}

/// The numbers a container has printed so far (`podman logs`).
fn logged(env: &Env, name: &str) -> Vec<u64> {
    podman_ok(env, &["logs", name])
        .stdout_str()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn wait_logged(env: &Env, name: &str, more_than: u64) -> Vec<u64> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = logged(env, name);
        if n.last().is_some_and(|&l| l > more_than) {
            return n;
        }
        assert!(Instant::now() < deadline, "{name} logged only {n:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The counter's numbers go on without a gap or a restart: each is the
/// one before plus one.
fn counts_on(n: &[u64]) {
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "the counter restarted or skipped: {n:?}"
    );
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done";

#[test]
fn podman_checkpoints_and_restores_cryo_containers() {
    // podman insists on a criu that answers its version query.
    let criu = which("criu");
    let o = Command::new(&criu).arg("--version").output().unwrap();
    assert!(o.status.success(), "criu --version");
    which("conmon");
    let env = Env::new();
    let bundle = env.bundle("bundle", &["true"], false, |_| {});
    let rootfs = bundle.join("rootfs");
    let rootfs = rootfs.to_str().unwrap();

    // In place: checkpoint, then restore the same container.
    podman_ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "pc",
            "--network",
            "none",
            "--rootfs",
            rootfs,
            "sh",
            "-c",
            COUNTER,
        ],
    );
    let before = wait_logged(&env, "pc", 3);
    podman_ok(&env, &["container", "checkpoint", "pc"]);
    assert_eq!(status(&env, "pc"), "exited");
    let stopped = logged(&env, "pc");
    assert!(stopped.len() >= before.len());
    podman_ok(&env, &["container", "restore", "pc"]);
    assert_eq!(status(&env, "pc"), "running");
    let after = wait_logged(&env, "pc", *stopped.last().unwrap() + 2);
    counts_on(&after);

    // --leave-running: the container goes on; checkpointed twice.
    podman_ok(&env, &["container", "checkpoint", "--leave-running", "pc"]);
    podman_ok(&env, &["container", "checkpoint", "--leave-running", "pc"]);
    assert_eq!(status(&env, "pc"), "running");
    let n = logged(&env, "pc");
    let n = wait_logged(&env, "pc", *n.last().unwrap() + 2);
    counts_on(&n);
    podman_ok(&env, &["rm", "-f", "pc"]);

    // --export, rm, --import (and --name for a second copy). podman's
    // import pulls the container's image first (libimage's Pull of its
    // RootfsImageName, before any runtime is called), which a --rootfs
    // container lacks ("repository name must have at least one
    // component"), so the busybox root becomes a local image.
    let tar = env.path("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    podman_ok(
        &env,
        &["import", tar.to_str().unwrap(), "localhost/cryo-busybox"],
    );
    podman_ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "pe",
            "--network",
            "none",
            "localhost/cryo-busybox",
            "sh",
            "-c",
            COUNTER,
        ],
    );
    wait_logged(&env, "pe", 3);
    let export = env.path("pe.tar.gz");
    let export = export.to_str().unwrap();
    podman_ok(
        &env,
        &[
            "container",
            "checkpoint",
            &format!("--export={export}"),
            "pe",
        ],
    );
    let at_export = logged(&env, "pe");
    podman_ok(&env, &["rm", "pe"]);
    podman_ok(
        &env,
        &["container", "restore", &format!("--import={export}")],
    );
    podman_ok(
        &env,
        &[
            "container",
            "restore",
            &format!("--import={export}"),
            "--name",
            "pe2",
        ],
    );
    let last = *at_export.last().unwrap();
    for name in ["pe", "pe2"] {
        let n = wait_logged(&env, name, last + 2);
        counts_on(&n);
    }
    podman_ok(&env, &["stop", "-t", "1", "pe2"]);
    // conmon reaped the restored sandbox and took its status for pe2's.
    let code = podman_ok(&env, &["inspect", "--format", "{{.State.ExitCode}}", "pe2"]);
    let code = code.stdout_str();
    assert!(
        ["137", "143"].contains(&code.trim()),
        "pe2's exit status: {code:?}"
    );
    let o = podman_ok(&env, &["ps", "--format", "{{.Names}}"]);
    assert_eq!(o.stdout_str().trim(), "pe", "pe2's stop ended pe");
    podman_ok(&env, &["rm", "-f", "pe", "pe2"]);
}

/// `--print-stats` shows what the checkpoint and the restore cost: podman
/// reads CRIU's `stats-dump` and `stats-restore` from the work path, which
/// cryo writes in CRIU's format from its own measurements (without them,
/// podman fails the command: "displaying checkpointing statistics not
/// possible").
#[test]
fn podman_prints_checkpoint_and_restore_statistics() {
    which("criu");
    which("conmon");
    let env = Env::new();
    let bundle = env.bundle("bundle", &["true"], false, |_| {});
    let rootfs = bundle.join("rootfs");
    podman_ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "ps",
            "--network",
            "none",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "sh",
            "-c",
            COUNTER,
        ],
    );
    wait_logged(&env, "ps", 3);
    let stats = |args: &[&str]| -> serde_json::Value {
        let o = podman_ok(&env, args);
        let out = o.stdout_str();
        eprintln!("{args:?}: {out}");
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"));
        v["container_statistics"][0]["criu_statistics"].clone()
    };
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let dump = stats(&["container", "checkpoint", "--print-stats", "ps"]);
    assert_eq!(status(&env, "ps"), "exited");
    // A shell's memory: thousands of pages looked at, some stored, the
    // tasks frozen while it was written.
    assert!(n(&dump, "pages_scanned") > 0, "{dump}");
    assert!(n(&dump, "pages_written") > 0, "{dump}");
    assert!(
        n(&dump, "pages_written") <= n(&dump, "pages_scanned"),
        "{dump}"
    );
    assert!(
        n(&dump, "frozen_time") >= n(&dump, "freezing_time"),
        "{dump}"
    );
    assert!(n(&dump, "frozen_time") > 0, "{dump}");
    let restore = stats(&["container", "restore", "--print-stats", "ps"]);
    assert_eq!(status(&env, "ps"), "running");
    assert_eq!(
        n(&restore, "pages_restored"),
        n(&dump, "pages_written"),
        "{restore}"
    );
    assert!(
        n(&restore, "restore_time") >= n(&restore, "forking_time"),
        "{restore}"
    );
    assert!(n(&restore, "forking_time") > 0, "{restore}");
    let before = logged(&env, "ps");
    counts_on(&wait_logged(&env, "ps", *before.last().unwrap() + 2));
    podman_ok(&env, &["rm", "-f", "ps"]);
}

/// A container running `lazy_mem ARGS` (from the host's root),
/// checkpointed into `img` and deleted: its bundle and its checksum.
fn lazy_mem_checkpointed(env: &Env, args: &[&str], img: &Path) -> (PathBuf, String) {
    let program = guest("lazy_mem", Libc::Glibc);
    let mut argv = vec![program.to_str().unwrap()];
    argv.extend_from_slice(args);
    let bundle = env.bundle("bundle", &argv, true, |_| {});
    let out = env.path("a.out");
    let pid = env.run_detached(&bundle, "a", &out);
    let ready = wait_lines(&out, "lazy_mem", |l| !l.is_empty())[0].clone();
    assert!(ready.starts_with("ready "), "{ready:?}");
    let o = env.checkpoint("a", img, &[]);
    assert_eq!(o.code, 0, "checkpoint: {}", o.stderr_str());
    assert_eq!(wait_pid(pid, TIMEOUT), Some(0));
    assert_eq!(env.cryo(&["delete", "a"]).code, 0);
    (bundle, lazy_support::checksum_of(&ready))
}

/// Restores container `id` lazily from `img` (deleted as soon as the
/// restore returns when `delete_img`, as podman does); it must be running
/// at once, answer, check its memory out against `sum` and exit 0. Its
/// first answer.
fn lazy_container_checks_out(
    env: &Env,
    (bundle, img, sum): (&Path, &Path, &str),
    id: &str,
    delete_img: bool,
) -> lazy_support::Progress {
    let (out, err) = (
        env.path(&format!("{id}.out")),
        env.path(&format!("{id}.err")),
    );
    let o = env.restore_lazy(bundle, img, id, &out, &err);
    assert_eq!(o.code, 0, "restore --lazy {id}: {}", o.stderr_str());
    if delete_img {
        std::fs::remove_dir_all(img).unwrap();
    }
    let st = env.state(id);
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    let lines = wait_lines(&out, id, |l| l.len() >= 2);
    let first = lazy_support::progress(&lines[0]);
    assert!(lines[1].starts_with("verified "), "{lines:?}");
    assert_eq!(
        lazy_support::checksum_of(&lines[1]),
        sum,
        "memory after a lazy restore"
    );
    assert_eq!(
        wait_pid(pid, TIMEOUT),
        Some(0),
        "{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let err = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(!err.contains("working-set.cryo"), "{err}");
    assert_eq!(env.state(id)["status"], "stopped");
    assert_eq!(env.cryo(&["delete", id]).code, 0);
    first
}

/// Issue 15: `restore --bundle --lazy` of a container: it runs before its
/// memory is loaded (the held loader leaves all but what it touches), its
/// memory checks out, and it records its working set in the image
/// directory; a second lazy restore prefetches exactly that before the
/// container goes on (its first answer demands nothing more), and goes on
/// loading the rest from the statefile it holds open after the image
/// directory is deleted, as podman deletes it.
#[test]
fn a_lazily_restored_container_answers_first_and_a_second_prefetches_its_working_set() {
    let env = Env::new();
    let img = env.path("img");
    let (bundle, sum) = lazy_mem_checkpointed(&env, &["64", "8"], &img);
    let first = lazy_container_checks_out(&env, (&bundle, &img, &sum), "b", false);
    assert!(
        first.prefetched == 0 && first.loaded == first.demanded && first.loaded < first.chunks / 2,
        "the container's first answer came with {first:?}"
    );
    let (_, ws) = lazy_support::working_set(&img);
    assert_eq!(ws.len(), sentry::state::working_set::limit(first.chunks));
    let second = lazy_container_checks_out(&env, (&bundle, &img, &sum), "c", true);
    assert_eq!(
        (second.prefetched, second.loaded, second.demanded),
        (ws.len(), ws.len(), 0),
        "the second lazy restore did not prefetch the recorded working set"
    );
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}

/// Issue 15: a lazily restored container whose statefile has a damaged
/// late chunk runs, answers, and ends with exit status 125 and a message
/// naming the chunk when it reaches it, never seeing the damaged memory;
/// its state is then stopped.
#[test]
fn a_damaged_late_chunk_ends_a_lazily_restored_container_with_a_clear_message() {
    let env = Env::new();
    let img = env.path("img");
    let (bundle, _) = lazy_mem_checkpointed(&env, &["64"], &img);
    let copy = env.path("damaged");
    let n = lazy_support::damage_late_chunk(&img, &copy);
    let (out, err) = (env.path("b.out"), env.path("b.err"));
    let o = env.restore_lazy(&bundle, &copy, "b", &out, &err);
    assert_eq!(o.code, 0, "restore --lazy: {}", o.stderr_str());
    let pid = env.state("b")["pid"].as_i64().unwrap() as i32;
    assert_eq!(wait_pid(pid, TIMEOUT), Some(125));
    let lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("lazy: loaded ")),
        "the container did not answer first: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("verified")),
        "the container saw damaged memory as good: {lines:?}"
    );
    let err = std::fs::read_to_string(&err).unwrap();
    assert!(
        err.contains(&format!("memory chunk {n} "))
            && err.contains("checksum mismatch")
            && err.contains("the sandbox is stopped"),
        "stderr: {err}"
    );
    assert_eq!(env.state("b")["status"], "stopped");
    assert_eq!(env.cryo(&["delete", "b"]).code, 0);
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}

/// Issue 15: the OCI commands on a container whose lazy restore is still
/// loading (the held loader: only what it touched is in): `state` says
/// running, a checkpoint waits for the whole memory (the container restored
/// from it checks out), and `delete --force` ends one.
#[test]
fn a_container_still_loading_is_checkpointed_whole_and_deleted_by_force() {
    let env = Env::new();
    let img = env.path("img");
    let (bundle, sum) = lazy_mem_checkpointed(&env, &["64", "0", "wait"], &img);
    let (out, err) = (env.path("b.out"), env.path("b.err"));
    let o = env.restore_lazy(&bundle, &img, "b", &out, &err);
    assert_eq!(o.code, 0, "restore --lazy: {}", o.stderr_str());
    let first = lazy_support::progress(&wait_lines(&out, "b", |l| !l.is_empty())[0]);
    assert!(first.loaded < first.chunks / 2, "{first:?}");
    let st = env.state("b");
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;

    let img2 = env.path("img2");
    let o = env.checkpoint("b", &img2, &[]);
    assert_eq!(
        o.code,
        0,
        "checkpoint of a loading container: {}",
        o.stderr_str()
    );
    assert_eq!(
        wait_pid(pid, TIMEOUT),
        Some(0),
        "{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    assert_eq!(env.cryo(&["delete", "b"]).code, 0);
    let cout = env.path("c.out");
    let cpid = env.restored(&bundle, &img2, "c", &cout);
    assert_eq!(env.cryo(&["kill", "c", "USR1"]).code, 0);
    let lines = wait_lines(&cout, "c", |l| !l.is_empty());
    assert!(lines[0].starts_with("verified "), "{lines:?}");
    assert_eq!(
        lazy_support::checksum_of(&lines[0]),
        sum,
        "the memory a checkpoint of a loading container saved"
    );
    assert_eq!(wait_pid(cpid, TIMEOUT), Some(0));
    assert_eq!(env.cryo(&["delete", "c"]).code, 0);

    let (dout, derr) = (env.path("d.out"), env.path("d.err"));
    let o = env.restore_lazy(&bundle, &img, "d", &dout, &derr);
    assert_eq!(o.code, 0, "restore --lazy: {}", o.stderr_str());
    wait_lines(&dout, "d", |l| !l.is_empty());
    let dpid = env.state("d")["pid"].as_i64().unwrap() as i32;
    assert_eq!(env.cryo(&["delete", "--force", "d"]).code, 0);
    assert!(
        wait_pid(dpid, TIMEOUT).is_some(),
        "d outlived delete --force"
    );
    assert!(env.ids().is_empty(), "left under --root: {:?}", env.ids());
}
