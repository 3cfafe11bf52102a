//! Checkpoint and restore of a process tree: the `ckpt_tree` guest (init,
//! a worker child answering through a pipe that holds unread lines, a
//! zombie, a stopped child, an armed interval timer, an epoll set) is
//! checkpointed mid-run, the image moved, and restored twice; each restored
//! sandbox carries on with the same pids and prints what an uninterrupted
//! run prints. A fork bomb (an unprivileged user under RLIMIT_NPROC) ends
//! with EAGAIN inside the sandbox and leaves no stub process behind.

use std::time::Duration;

use cryo_tests::host_procs::HostTree;
use cryo_tests::sandbox::{cryo_cli, run_then_checkpoint, CheckpointedRun, Sandbox, Scratch};
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

/// Files of /proc/PID held open across a checkpoint (redis keeps
/// /proc/self/stat open while it reads its RSS): re-opened once the
/// process they name is back, they read that process after the restore.
#[test]
fn open_proc_pid_files_survive_a_restore() {
    const SCRIPT: &str = r#"
sleep 30 &
child=$!
until grep -q '^[0-9]* (sleep) S' /proc/$child/stat; do sleep 0.01; done
exec 3</proc/$child/stat 4</proc/self/stat 5</proc/$child/cmdline
i=0
while [ $i -lt 10 ]; do
  i=$((i+1)); echo "tick $i"; sleep 0.1
done
read -r pid comm state rest <&3
[ "$pid" = "$child" ] && echo "child stat: $comm $state"
read -r pid comm rest <&4
echo "self stat: $pid $comm"
tr '\0' ' ' <&5; echo
kill $child
wait $child || echo "child status $?"
echo done
"#;
    let s = Scratch::new("cryo-procfds-");
    let sh = std::path::Path::new("/bin/sh");
    let args = ["-c", SCRIPT];
    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), sh, &args, 3, &img, (START, EXIT));
    assert_eq!(
        reference[10..],
        [
            "child stat: (sleep) S",
            "self stat: 1 (sh)",
            "sleep 30 ",
            "child status 143",
            "done"
        ],
        "{reference:?}"
    );
    let mut b = Sandbox::restore(&s.root(), &img, "B");
    assert_eq!(b.wait_exit(EXIT), 0, "restore: {}", b.stderr_str());
    assert_eq!(b.lines(), &reference[before.len()..]);
}

/// Processes sharing one fs context (clone(CLONE_FS)) still share it
/// after a restore: the child's chdir and umask are the parent's, as in
/// an uninterrupted run, and natively.
#[test]
fn clone_fs_sharing_survives_a_restore() {
    let s = Scratch::new("cryo-clonefs-");
    let bin = guest("ckpt_clone_fs", Libc::Glibc);
    let native = cryo_tests::Invocation::new(&bin).args(["6"]).native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    let out = native.stdout_str();
    assert!(
        out.contains("after the CLONE_FS child moved: cwd=/tmp umask=007")
            && out.contains("after the other child moved: cwd=/tmp umask=007"),
        "{out}"
    );
    let cryo = cryo_tests::Invocation::new(&bin).args(["6"]).cryo();
    cryo_tests::assert_same(&native, &cryo);
    cryo_tests::sandbox::ticking_guest_restores_twice(&s.root(), &bin, &["6"], 3, &s.path("img"));
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
    // The stubs do not carry cryo's command line: record the sandbox's
    // host processes by parentage while it runs.
    let mut tree = HostTree::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while sb.is_running() && std::time::Instant::now() < deadline {
        tree.record(sb.pid());
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = sb.wait_exit(Duration::from_secs(1));
    let out = sb.stdout_text();
    assert_eq!(code, 0, "{out} {}", sb.stderr_str());
    assert!(out.contains("fork failed with EAGAIN"), "{out}");
    assert!(
        out.contains("all reaped: ECHILD, more than 10 processes: 1"),
        "{out}"
    );
    assert!(
        tree.recorded().len() > 10,
        "only {} host processes seen: {:#?}",
        tree.recorded().len(),
        tree.recorded()
    );
    tree.assert_all_gone(Duration::from_secs(10), "after the fork bomb");
    let left = processes_of(&s.root());
    assert!(left.is_empty(), "host processes left behind: {left:?}");
}

/// `cryo kill` ends a sandbox in the middle of a fork storm (every process
/// forks without end, each fork past RLIMIT_NPROC fails with EAGAIN and is
/// retried at once, workers exit and are replaced), and every host process
/// the sandbox was seen with while it ran (the Sentry, the gofer, the
/// stubs, found by parentage from the Sentry, not by command line) is gone
/// afterwards, as is the sandbox's record.
#[test]
fn cryo_kill_ends_a_fork_storm_and_leaves_no_host_process() {
    let s = Scratch::new("cryo-storm-");
    let root = s.root();
    // Never run natively: it would bomb the host.
    let bin = guest("fork_storm", Libc::Glibc);
    let mut sb = Sandbox::run(&root, "storm", &bin, cryo_tests::sandbox::NO_ARGS);
    let mut tree = HostTree::new();
    tree.record(sb.pid());
    sb.wait_for(Duration::from_secs(120), "the storm to hit EAGAIN", |l| {
        !l.is_empty()
    });
    assert_eq!(sb.lines(), ["saturated: EAGAIN"], "{}", sb.stderr_str());
    // Processes come and go all the time: record them over a while, so
    // that stubs of processes born late are in the set too.
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(tree.record(sb.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sb.is_running(),
        "the storm ended by itself: {}",
        sb.stderr_str()
    );
    // One host process per address space: a full sandbox has dozens.
    assert!(
        most > 20,
        "only {most} host processes at once under the storm: {:#?}",
        tree.recorded()
    );
    let k = cryo_cli(&root, &["kill", "storm", "KILL"]);
    assert_eq!(k.code, 0, "cryo kill during the storm: {}", k.stderr_str());
    assert_eq!(sb.wait_exit(Duration::from_secs(60)), 128 + libc::SIGKILL);
    tree.assert_all_gone(Duration::from_secs(10), "after cryo kill of the storm");
    cryo_tests::sandbox::assert_no_record(&root, "storm");
}

/// A checkpoint stops every process, those forked while the stop went
/// round included: with a walk of processes each forking its successor and
/// exiting, the stop once missed the newest ("task N did not stop") or let
/// it run on (3 checkpoints in 15 failed). Ten checkpoints in a row succeed,
/// and the last restores into walks that go on until killed.
#[test]
fn a_checkpoint_stops_processes_forked_during_the_stop() {
    let s = Scratch::new("cryo-walk-");
    let root = s.root();
    // Never run natively: it would walk through the host's pids.
    let bin = guest("fork_walk", Libc::Glibc);
    let mut sb = Sandbox::run(&root, "walk", &bin, cryo_tests::sandbox::NO_ARGS);
    sb.wait_for(Duration::from_secs(120), "the walks to start", |l| {
        !l.is_empty()
    });
    assert_eq!(sb.lines()[0], "reaped 1000", "{}", sb.stderr_str());
    let img = |round: usize| s.path(&format!("img{round}"));
    for round in 0..10 {
        let out = cryo_tests::sandbox::checkpoint(&root, &img(round), "walk", &["--leave-running"]);
        assert_eq!(
            out.code,
            0,
            "checkpoint {round} during the walks: {}",
            out.stderr_str()
        );
        assert!(
            sb.is_running(),
            "the walks ended at checkpoint {round}: {}",
            sb.stderr_str()
        );
    }
    let k = cryo_cli(&root, &["kill", "walk", "KILL"]);
    assert_eq!(k.code, 0, "cryo kill: {}", k.stderr_str());
    assert_eq!(sb.wait_exit(Duration::from_secs(60)), 128 + libc::SIGKILL);
    let mut back = Sandbox::restore(&root, &img(9), "walk2");
    back.wait_for(
        Duration::from_secs(120),
        "the restored walks to go on",
        |l| !l.is_empty(),
    );
    assert!(
        back.lines()[0].starts_with("reaped "),
        "{}",
        back.stderr_str()
    );
    let k = cryo_cli(&root, &["kill", "walk2", "KILL"]);
    assert_eq!(
        k.code,
        0,
        "cryo kill of the restored walk: {}",
        k.stderr_str()
    );
    assert_eq!(back.wait_exit(Duration::from_secs(60)), 128 + libc::SIGKILL);
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

/// Pidfds across a checkpoint (tests/guests/ckpt_pidfd.c): one of a child
/// still running (from CLONE_PIDFD, close-on-exec, in an epoll set, and a
/// second one PIDFD_NONBLOCK), one of a zombie and one of a reaped child.
/// Checkpointed mid-run, the statefile moved, restored twice: each restored
/// sandbox prints what an uninterrupted native run prints from there
/// (poll and epoll readable at the child's end, waitid(P_PIDFD) reaps it,
/// EAGAIN from the non-blocking one, pidfd_send_signal kills, ESRCH and
/// ECHILD once reaped).
#[test]
fn pidfds_of_running_zombie_and_reaped_children_restored() {
    let s = Scratch::new("cryo-pidfd-");
    let bin = guest("ckpt_pidfd", Libc::Glibc);
    let native = cryo_tests::Invocation::new(&bin).native();
    assert_eq!(native.code, 0, "native: {}", native.stderr_str());
    let native: Vec<String> = native.stdout_str().lines().map(String::from).collect();
    assert_eq!(
        native.last().map(String::as_str),
        Some("done"),
        "{native:?}"
    );

    let img = s.path("img");
    let run = run_then_checkpoint(&s.root(), &bin, &[] as &[&str], 3, &img, (START, EXIT));
    assert_eq!(run.reference, native, "uninterrupted in cryo vs native");

    let moved = s.path("elsewhere/img");
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    std::fs::rename(&img, &moved).unwrap();
    run.restores_go_on(&s.root(), &moved, &["B", "C"], tick_of, EXIT);
}

/// A signal pending on a process (tests/guests/shared_pending.c "ticks":
/// kill() from another process while all five threads block it) across a
/// checkpoint: restored twice from the moved statefile, every thread's
/// sigpending shows it, the first thread to unblock it runs the handler,
/// once, and nothing is left pending: what an uninterrupted native run
/// prints from there.
#[test]
fn a_signal_pending_on_the_process_is_restored_and_delivered_once() {
    let s = Scratch::new("cryo-shared-pending-");
    let bin = guest("shared_pending", Libc::Glibc);
    let native = cryo_tests::Invocation::new(&bin).args(["ticks"]).native();
    assert_eq!(native.code, 0, "native: {}", native.stderr_str());
    let native: Vec<String> = native.stdout_str().lines().map(String::from).collect();
    assert!(
        native.contains(&"handler ran 1 times".to_string()),
        "{native:?}"
    );

    let img = s.path("img");
    // Round 1's 13 lines, "round 2", then two ticks.
    let run = run_then_checkpoint(&s.root(), &bin, &["ticks"], 16, &img, (START, EXIT));
    assert_eq!(run.reference, native, "uninterrupted in cryo vs native");
    // The checkpoint came while the signal was pending: after "round 2"
    // only ticks had been printed.
    let round2 = run
        .before
        .iter()
        .position(|l| l == "round 2")
        .expect("round 2");
    assert!(
        run.before[round2 + 1..]
            .iter()
            .all(|l| tick_of(l).is_some())
            && run.before.last().and_then(|l| tick_of(l)) < Some(20),
        "the checkpoint came too late: {:?}",
        run.before
    );

    let moved = s.path("elsewhere/img");
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    std::fs::rename(&img, &moved).unwrap();
    run.restores_go_on(&s.root(), &moved, &["B", "C"], tick_of, EXIT);
}

/// A pidfd of one thread (PIDFD_THREAD) is not saved yet: the checkpoint
/// is refused naming it, no statefile is left and the program goes on.
#[test]
fn a_thread_pidfd_refuses_the_checkpoint_by_name() {
    let s = Scratch::new("cryo-thread-pidfd-");
    let prog = r#"
import os, threading, time
t = threading.Thread(target=lambda: time.sleep(600), daemon=True)
t.start()
fd = os.pidfd_open(t.native_id, os.O_EXCL)
for i in range(600):
    print("tick", i, flush=True)
    time.sleep(0.1)
"#;
    let mut a = Sandbox::run(
        &s.root(),
        "A",
        std::path::Path::new("/usr/bin/python3"),
        &["-c", prog],
    );
    a.wait_lines(2, Duration::from_secs(20));
    let img = s.path("img");
    let out = cryo_tests::sandbox::checkpoint(&s.root(), &img, "A", &[]);
    assert_ne!(out.code, 0, "the checkpoint was taken");
    let err = out.stderr_str();
    assert!(err.contains("PIDFD_THREAD"), "{err}");
    assert!(
        !img.join(cryo_tests::sandbox::STATEFILE).exists(),
        "a statefile was left"
    );
    let had = a.lines().len();
    a.wait_lines(had + 2, Duration::from_secs(20));
    assert!(a.is_running(), "the program did not go on");
}
