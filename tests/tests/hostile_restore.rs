//! A hostile statefile end to end: a real two-thread guest (ckpt_threads)
//! is checkpointed, the second thread's registers in the statefile are
//! rewritten to a kernel code segment (every checksum recomputed, so only
//! the record validation can catch it), and `cryo restore` must refuse
//! within seconds, naming the task and "cs", with nothing left running.
//!
//! Also here, ignored: `regenerate_fuzz_seeds`, which checkpoints
//! ckpt_counter, ckpt_threads and wait_ckpt and writes their object tables to
//! sentry/fuzz/seeds/ (the fuzz target's seeds and the regression tests'
//! base statefiles). Run it with
//! `cargo test -p cryo-tests --test hostile_restore -- --ignored`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use cryo_tests::{cryo_bin, exit_code, guest, isolate, workspace_dir, Libc, BASE_ENV};
use sentry::kernel::task::TaskRecord;
use sentry::kernel::thread_group::ThreadGroupRecord;
use sentry::kernel::KernelRecord;
use sentry::state::hostile::ObjectTable;

const STATEFILE: &str = "checkpoint.cryo";

fn cryo(root: &Path) -> Command {
    let mut cmd = Command::new(cryo_bin());
    cmd.arg("--root").arg(root);
    cmd.env_clear()
        .envs(BASE_ENV.iter().copied())
        .current_dir("/");
    if let Some(v) = std::env::var_os("CRYO_LOG") {
        cmd.env("CRYO_LOG", v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isolate(&mut cmd);
    cmd
}

/// A process in its own group, its stdout read line by line; dropping it
/// kills the group.
struct Running {
    what: String,
    child: Child,
    pgid: libc::pid_t,
    lines: Receiver<String>,
    stderr: Receiver<Vec<u8>>,
}

impl Running {
    fn start(mut cmd: Command, what: &str) -> Running {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot spawn: {e}"));
        let pgid = child.id() as libc::pid_t;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let (etx, stderr) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = etx.send(buf);
        });
        Running {
            what: what.to_string(),
            child,
            pgid,
            lines,
            stderr,
        }
    }

    fn wait_lines(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => panic!(
                    "{}: {} of {n} lines after {timeout:?}: {got:?}; stderr: {}",
                    self.what,
                    got.len(),
                    self.stderr_now()
                ),
            }
        }
        got
    }

    /// The exit code, or None if it is still running at `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for a child") {
                return Some(exit_code(status));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_now(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_secs(2))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether any process of the group is still alive.
    fn group_alive(&self) -> bool {
        // SAFETY: kill(2) with signal 0 only checks for the group's existence.
        unsafe { libc::kill(-self.pgid, 0) == 0 }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: SIGKILL to the process group this test created.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Runs `guest ARGS` as sandbox `id`, waits for `lines` lines, checkpoints
/// it into `img` (the sandbox then exits) and returns the statefile's bytes.
fn checkpoint_guest(root: &Path, img: &Path, id: &str, guest: &Path, args: &[&str]) -> Vec<u8> {
    let mut cmd = cryo(root);
    cmd.args(["do", "--id", id, "--cwd", "/"]);
    for (k, v) in BASE_ENV {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg("--").arg(guest).args(args);
    let mut sandbox = Running::start(cmd, &format!("cryo do {}", guest.display()));
    sandbox.wait_lines(3, Duration::from_secs(20));
    let mut ck = cryo(root);
    ck.arg("checkpoint")
        .arg("--image-path")
        .arg(img)
        .arg(OsStr::new(id));
    let mut ck = Running::start(ck, "cryo checkpoint");
    let code = ck.wait_exit(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "cryo checkpoint {id}: stderr: {}",
        ck.stderr_now()
    );
    assert_eq!(
        sandbox.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{} after its checkpoint: {}",
        sandbox.what,
        sandbox.stderr_now()
    );
    std::fs::read(img.join(STATEFILE)).expect("the checkpoint wrote a statefile")
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cryo-hostile-")
        .tempdir()
        .expect("a scratch directory")
}

/// The tids of the only process in `table`, the leader first.
fn tids(table: &ObjectTable) -> Vec<i32> {
    let kernel: KernelRecord = table.get(0).expect("kernel record");
    let tg: ThreadGroupRecord = table
        .get(kernel.thread_groups[0] as u64)
        .expect("thread group record");
    tg.tasks
}

#[test]
fn restore_refuses_a_kernel_cs_in_the_second_thread() {
    let dir = scratch();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let img = dir.path().join("img");
    let threads = guest("ckpt_threads", Libc::Glibc);
    let file = checkpoint_guest(&root, &img, "H", &threads, &[]);

    let mut table = ObjectTable::from_statefile(&file).expect("the checkpoint's object table");
    let tids = tids(&table);
    assert_eq!(tids.len(), 2, "ckpt_threads was saved with two tasks");
    let second = tids[1];
    table
        .edit::<TaskRecord>(second as u64, |t| t.regs.cs = 0x10)
        .expect("the second task's record");
    let hostile = table.to_statefile_like(&file).expect("re-assembled");
    let bad_img = dir.path().join("bad");
    std::fs::create_dir_all(&bad_img).unwrap();
    std::fs::write(bad_img.join(STATEFILE), hostile).unwrap();

    let mut cmd = cryo(&root);
    cmd.arg("restore")
        .arg("--image-path")
        .arg(&bad_img)
        .args(["--id", "H2"]);
    let started = Instant::now();
    let mut restore = Running::start(cmd, "cryo restore of the hostile statefile");
    let code = restore.wait_exit(Duration::from_secs(5));
    let stderr = restore.stderr_now();
    assert!(
        code.is_some(),
        "cryo restore still running after 5 s; stderr so far: {stderr}"
    );
    let code = code.unwrap_or(0);
    assert_ne!(code, 0, "cryo restore accepted cs = 0x10; stderr: {stderr}");
    let task = format!("kernel.Task #{second}");
    assert!(
        stderr.contains(&task) && stderr.contains("cs"),
        "the refusal should name {task:?} and \"cs\": {stderr}"
    );
    // Nothing of the refused sandbox is left: its process group empties,
    // no process anywhere names the scratch directory, and no sandbox is
    // recorded under the id.
    let deadline = Instant::now() + Duration::from_secs(3);
    while restore.group_alive() {
        assert!(
            Instant::now() < deadline,
            "a process of the refused restore is still running"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let leftovers = processes_naming(dir.path());
    assert!(
        leftovers.is_empty(),
        "processes still name {}: {leftovers:?}",
        dir.path().display()
    );
    assert!(
        !root.join("H2").exists(),
        "the refused sandbox H2 is still recorded under {}",
        root.display()
    );
    eprintln!(
        "refused in {:?} with exit {code}: {}",
        started.elapsed(),
        stderr.trim_end()
    );
}

/// The pids and command lines of every process whose command line
/// mentions `path`.
fn processes_naming(path: &Path) -> Vec<(u32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        // A process may exit while it is looked at.
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Writes the fuzz seeds: the object tables of real checkpoints of
/// ckpt_counter (1 MiB) and ckpt_threads, each re-assembled with a
/// one-page memory section (the records are what the fuzzer mutates; the
/// application's memory would only make the seeds large).
#[test]
#[ignore = "regenerates sentry/fuzz/seeds; run on purpose"]
fn regenerate_fuzz_seeds() {
    let dir = scratch();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let seeds: PathBuf = workspace_dir().join("sentry/fuzz/seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    let counter = guest("ckpt_counter", Libc::Glibc);
    let threads = guest("ckpt_threads", Libc::Glibc);
    let waiting = guest("wait_ckpt", Libc::Glibc);
    let pty = guest("ckpt_pty", Libc::Glibc);
    // CRYO_SEEDS=name,name regenerates only those.
    let only = std::env::var("CRYO_SEEDS").ok();
    for (name, program, args) in [
        ("counter", &counter, &["1", "/etc/hostname"][..]),
        ("threads", &threads, &[][..]),
        // Epoll sets, a timerfd, an eventfd, a signalfd, a POSIX timer.
        ("waiting", &waiting, &[][..]),
        // A pty with unread input, a session and a foreground job.
        ("pty", &pty, &[][..]),
    ] {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|n| n == name))
        {
            continue;
        }
        let img = dir.path().join(name);
        let file = checkpoint_guest(&root, &img, name, program, args);
        let table = ObjectTable::from_statefile(&file).expect("the checkpoint's object table");
        let seed = table.to_statefile().expect("re-assembled");
        sentry::state::hostile::restore_validate(&seed)
            .unwrap_or_else(|e| panic!("seed {name} does not validate: {e}"));
        let path = seeds.join(format!("{name}.cryo"));
        std::fs::write(&path, &seed).unwrap();
        eprintln!(
            "{}: {} bytes ({} records) from a {}-byte statefile",
            path.display(),
            seed.len(),
            table.entries.len(),
            file.len()
        );
    }
}
