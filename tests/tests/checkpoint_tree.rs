//! Checkpoint and restore of a process tree: the `ckpt_tree` guest (init,
//! a worker child answering through a pipe that holds unread lines, a
//! zombie, a stopped child, an armed interval timer, an epoll set) is
//! checkpointed mid-run, the image moved, and restored twice; each restored
//! sandbox carries on with the same pids and prints what an uninterrupted
//! run prints. A fork bomb (an unprivileged user under RLIMIT_NPROC) ends
//! with EAGAIN inside the sandbox and leaves no stub process behind.

use std::time::Duration;

use cryo_tests::sandbox::{checkpoint, run_then_checkpoint, CheckpointedRun, Sandbox, Scratch};
use cryo_tests::{guest, run_cryo_cli, Libc};

const TICKS: &str = "16";
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(30);

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

#[test]
fn process_tree_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-tree-");
    let bin = guest("ckpt_tree", Libc::Glibc);

    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &[TICKS], 4, &img, (START, EXIT));
    assert_eq!(reference.len(), 16 + 3, "{reference:?}");

    let last = before
        .iter()
        .filter_map(|l| tick_of(l))
        .max()
        .expect("ticks");

    let moved = s.path("elsewhere/img");
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    std::fs::rename(&img, &moved).unwrap();
    let shown = run_cryo_cli(&[
        std::ffi::OsStr::new("inspect"),
        moved.join(cryo_tests::sandbox::STATEFILE).as_os_str(),
    ]);
    let groups = shown
        .stdout_str()
        .lines()
        .filter(|l| l.trim_start().starts_with("kernel.ThreadGroup ") && l.contains('#'))
        .count();
    assert_eq!(
        groups,
        4,
        "init, worker, zombie, stopped child:\n{}",
        shown.stdout_str()
    );

    for id in ["B", "C"] {
        let mut b = Sandbox::restore(&s.root(), &moved, id);
        assert_eq!(b.wait_exit(EXIT), 0, "restore {id}: {}", b.stderr_str());
        let after = b.lines();
        let from = reference
            .iter()
            .position(|l| tick_of(l) == Some(last + 1))
            .expect("the reference goes on");
        assert_eq!(after, &reference[from..], "restored sandbox {id}");
    }
}

/// Ten processes sharing 16 MiB copy-on-write (tests/guests/ckpt_counter.c
/// with procs=10, each child writing one page of its own): checkpointed,
/// restored, all ten go on, and the statefile holds the shared memory once
/// (ten copies would be 160 MiB of incompressible pattern).
#[test]
fn ten_processes_sharing_memory_checkpointed_once() {
    let s = Scratch::new("cryo-ten-");
    let bin = guest("ckpt_counter", Libc::Glibc);
    let args = ["16", "/etc/passwd", "12", "10"];
    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &args, 3, &img, (START, EXIT));
    assert_eq!(reference.len(), 12, "{reference:?}");
    assert!(
        reference.iter().all(|l| l.ends_with(" alive=9")),
        "{reference:?}"
    );

    let bytes: u64 = std::fs::read_dir(&img)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        bytes < 32 << 20,
        "the statefile is {bytes} bytes: the shared 16 MiB stored more than once?"
    );

    let mut b = Sandbox::restore(&s.root(), &img, "B");
    assert_eq!(b.wait_exit(EXIT), 0, "restore: {}", b.stderr_str());
    assert_eq!(b.lines(), &reference[before.len()..], "restored tree");
}

/// A real shell's job tree: `sh -c` with a background pipeline whose pipe
/// holds a line nobody has read yet (its reader waits for the shell's word,
/// a file, not for a time: a loaded machine must not reorder the output), a background sleeper, a child that
/// has exited (a zombie until the shell waits), and the shell's own loop
/// forking `sleep` every tick. Checkpointed mid-loop and restored twice
/// from the moved statefile, each prints what an uninterrupted run prints
/// from there, exit statuses included.
#[test]
fn shell_job_tree_checkpointed_and_restored() {
    const SCRIPT: &str = r#"
{ echo held-in-pipe; sleep 1; } | { until [ -e /tmp/shtree-go ]; do sleep 0.1; done; read line; echo "reader got: $line"; } &
reader=$!
sleep 30 &
sleeper=$!
( exit 7 ) &
zombie=$!
i=0
while [ $i -lt 15 ]; do
  i=$((i+1)); echo "tick $i"; sleep 0.1
done
wait $zombie || echo "zombie status $?"
: > /tmp/shtree-go
wait $reader
kill $sleeper
wait $sleeper || echo "sleeper status $?"
echo done
"#;
    let s = Scratch::new("cryo-shtree-");
    let sh = std::path::Path::new("/bin/sh");
    let args = ["-c", SCRIPT];
    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), sh, &args, 4, &img, (START, EXIT));
    assert_eq!(
        reference.last().map(String::as_str),
        Some("done"),
        "{reference:?}"
    );
    assert_eq!(reference.len(), 15 + 4, "{reference:?}");

    let moved = s.path("elsewhere");
    std::fs::rename(&img, &moved).unwrap();
    for id in ["B", "C"] {
        let mut b = Sandbox::restore(&s.root(), &moved, id);
        assert_eq!(b.wait_exit(EXIT), 0, "restore {id}: {}", b.stderr_str());
        assert_eq!(b.lines(), &reference[before.len()..], "restored shell {id}");
    }
}

/// Host processes whose command line names `root`: the sandbox's cryo
/// process and its stubs (forked from it, they keep its command line).
fn processes_of(root: &std::path::Path) -> Vec<String> {
    let needle = root.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{}: {cmdline}", e.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn fork_bomb_gets_eagain_and_leaves_no_stub() {
    let s = Scratch::new("cryo-bomb-");
    // Never run natively: it would bomb the host.
    let bin = guest("fork_bomb", Libc::Glibc);
    let mut sb = Sandbox::run(&s.root(), "bomb", &bin, cryo_tests::sandbox::NO_ARGS);
    let code = sb.wait_exit(Duration::from_secs(180));
    let out = sb.stdout_text();
    assert_eq!(code, 0, "{out} {}", sb.stderr_str());
    assert!(out.contains("fork failed with EAGAIN"), "{out}");
    assert!(
        out.contains("all reaped: ECHILD, more than 10 processes: 1"),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let left = processes_of(&s.root());
    assert!(left.is_empty(), "host processes left behind: {left:?}");
}

/// When init ends, every other process of the sandbox ends with it (a pid
/// namespace's rule): `cryo do` returns init's status at once, leaving no
/// host process behind.
#[test]
fn init_exit_ends_the_sandbox_and_its_children() {
    let s = Scratch::new("cryo-initexit-");
    let started = std::time::Instant::now();
    let mut sb = Sandbox::run(
        &s.root(),
        "initexit",
        std::path::Path::new("/bin/sh"),
        &["-c", "sleep 60 & sleep 60 & echo started; exit 3"],
    );
    assert_eq!(
        sb.wait_exit(Duration::from_secs(30)),
        3,
        "{}",
        sb.stderr_str()
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the children's sleeps held the sandbox"
    );
    std::thread::sleep(Duration::from_millis(300));
    let left = processes_of(&s.root());
    assert!(left.is_empty(), "host processes left behind: {left:?}");
}

/// The sandbox's init is protected as a pid namespace's init: a signal
/// from inside whose action is the default does not kill it.
#[test]
fn init_ignores_default_signals_from_inside() {
    let s = Scratch::new("cryo-initsig-");
    let mut sb = Sandbox::run(
        &s.root(),
        "initsig",
        std::path::Path::new("/bin/sh"),
        &["-c", "kill -TERM $$; kill -KILL $$; echo init alive"],
    );
    assert_eq!(
        sb.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        sb.stderr_str()
    );
    assert_eq!(sb.stdout_text(), "init alive\n");
}

/// A pidfd cannot be saved yet: the checkpoint is refused naming it, no
/// statefile appears, and the sandbox goes on.
#[test]
fn checkpoint_refuses_a_pidfd_and_the_sandbox_goes_on() {
    let s = Scratch::new("cryo-pidfd-");
    let script = "import os, time\n\
pid = os.fork()\n\
if pid == 0:\n    time.sleep(60); os._exit(0)\n\
fd = os.pidfd_open(pid)\n\
print('ready', flush=True)\n\
time.sleep(1.5)\n\
os.kill(pid, 9); os.waitpid(pid, 0)\n\
print('went on', flush=True)\n";
    let mut sb = Sandbox::run(
        &s.root(),
        "P",
        std::path::Path::new("/usr/bin/python3"),
        &["-c", script],
    );
    sb.wait_lines(1, START);
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "P", &[]);
    cryo_tests::sandbox::assert_refused(
        out.code,
        &out.stderr_str(),
        "checkpoint of a sandbox holding a pidfd",
        &["pidfd"],
    );
    assert!(
        !img.join(cryo_tests::sandbox::STATEFILE).exists(),
        "a refused checkpoint left a statefile"
    );
    assert_eq!(sb.wait_exit(EXIT), 0, "{}", sb.stderr_str());
    assert_eq!(sb.lines(), ["ready", "went on"]);
}
