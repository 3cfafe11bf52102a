//! The supervisor of a sandbox process: runs its init task with its control
//! channel (the task loop handles queued control requests, checkpoint,
//! whenever it is interrupted) and forwards signals to the program. A
//! checkpoint is committed here, by the sandbox, with the fds the command
//! passed (see `checkpoint_cmd` for the protocol and what it guarantees).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{renameat, AtFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};
use sentry::kernel::run::Interruption;
use sentry::kernel::signal::{SigInfo, SI_USER};
use sentry::kernel::{ExitStatus, Task};
use sentry::state::{
    checkpoint, checkpoint_leave_running, CheckpointOptions, CheckpointOutcome, STATEFILE_NAME,
};
use statefile::Compression;

use crate::container::{self, ContainerDir};
use crate::control::{self, Pending, Reply, Request, TEMP_PREFIX};

/// Parses `none` or `zstd[:LEVEL]`.
pub fn parse_compression(s: &str) -> anyhow::Result<Compression> {
    match s.split_once(':') {
        None if s == "none" => Ok(Compression::None),
        None if s == "zstd" => Ok(Compression::default()),
        Some(("zstd", level)) => {
            let level: i32 = level
                .parse()
                .with_context(|| format!("--compression {s}: bad zstd level"))?;
            if !(1..=22).contains(&level) {
                anyhow::bail!("--compression {s}: zstd level must be 1..=22");
            }
            Ok(Compression::Zstd(level))
        }
        _ => anyhow::bail!("--compression {s}: expected none or zstd[:LEVEL]"),
    }
}

/// How long a sandbox about to exit waits for its reply to leave.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handles one control request on the task's thread. Returns whether the
/// sandbox should stop.
fn handle(task: &mut Task, id: &str, pending: Pending, queue: &Receiver<Pending>) -> bool {
    let Pending {
        request,
        files,
        reply,
        delivered,
    } = pending;
    match request {
        Request::Checkpoint {
            leave_running,
            compression,
            force,
            metadata,
        } if leave_running => {
            // The reply goes from the thread that writes the statefile,
            // once it is committed (or failed); the program runs meanwhile.
            let failed = reply.clone();
            let done: sentry::state::BackgroundDone = Box::new(move |result| {
                let _ = reply.send(match result {
                    Ok(stats) => Reply::Saved(stats),
                    Err(e) => Reply::Error(crate::one_line(&anyhow::Error::new(e))),
                });
            });
            let save = Save {
                compression: &compression,
                force,
                metadata,
            };
            if let Err(e) = checkpoint_running(task, id, save, files, done) {
                let _ = failed.send(Reply::Error(crate::one_line(&e)));
            }
            false
        }
        Request::Checkpoint {
            leave_running,
            compression,
            force,
            metadata,
        } => {
            let result = checkpoint_into(
                task,
                id,
                &compression,
                force,
                leave_running,
                metadata,
                files,
            );
            let exit = result.as_ref().is_ok_and(|o| o.exit);
            let answer = match result {
                Ok(o) => Reply::Saved(o.stats),
                // A failed checkpoint leaves the sandbox running.
                Err(e) => Reply::Error(crate::one_line(&e)),
            };
            if reply.send(answer).is_ok() && exit {
                // The statefile is in place whatever happens to the reply;
                // waiting only lets a live command hear of it.
                let _ = delivered.recv_timeout(DELIVERY_TIMEOUT);
            }
            exit
        }
        other => {
            // A kill may end the sandbox as soon as this returns (SIGKILL
            // to init): its answer leaves first, or the command would see
            // the connection close unanswered.
            let may_end = matches!(other, Request::Kill { .. });
            crate::oci::sandbox::handle_running(task, other, files, reply, queue);
            if may_end {
                let _ = delivered.recv_timeout(DELIVERY_TIMEOUT);
            }
            false
        }
    }
}

/// Writes the statefile into the passed unnamed file and publishes it in
/// the passed directory (see `checkpoint_cmd` for why the sandbox, not the
/// command, commits). On success the other threads are still parked and
/// the caller's reply decides their fate; on failure they run again.
fn checkpoint_into(
    task: &mut Task,
    id: &str,
    compression: &str,
    force: bool,
    leave_running: bool,
    metadata: Vec<(String, String)>,
    files: Vec<OwnedFd>,
) -> anyhow::Result<CheckpointOutcome> {
    let compression = parse_compression(compression)?;
    let [file, dir]: [OwnedFd; 2] = files.try_into().map_err(|f: Vec<OwnedFd>| {
        anyhow::anyhow!(
            "a checkpoint request passes a statefile and its directory, not {} files",
            f.len()
        )
    })?;
    let file = File::from(file);
    let dir = File::from(dir);
    let opts = CheckpointOptions {
        compression,
        container_id: id.to_string(),
        metadata,
    };
    let writer = file.try_clone().context("duplicating the statefile's fd")?;
    // The kernel calls this once the statefile is written, with every task
    // stopped, and releases them (to go on, or to end) by its answer.
    let mut commit = |_: &sentry::state::CheckpointStats| {
        publish(&file, &dir, force)
            .map(|()| !leave_running)
            .map_err(|e| crate::one_line(&e))
    };
    checkpoint(task, writer, &opts, &mut commit).map_err(anyhow::Error::new)
}

/// What a checkpoint request asks of the save.
struct Save<'a> {
    compression: &'a str,
    force: bool,
    /// Header entries the caller adds (an OCI container's identity).
    metadata: Vec<(String, String)>,
}

/// `checkpoint_into` with --leave-running: the tasks stop only for the
/// freeze, the statefile is written and published in the background, and
/// `done` hears the outcome there. An error here (nothing frozen) is not
/// passed to `done`.
fn checkpoint_running(
    task: &mut Task,
    id: &str,
    save: Save<'_>,
    files: Vec<OwnedFd>,
    done: sentry::state::BackgroundDone,
) -> anyhow::Result<()> {
    let Save {
        compression,
        force,
        metadata,
    } = save;
    let compression = parse_compression(compression)?;
    let [file, dir]: [OwnedFd; 2] = files.try_into().map_err(|f: Vec<OwnedFd>| {
        anyhow::anyhow!(
            "a checkpoint request passes a statefile and its directory, not {} files",
            f.len()
        )
    })?;
    let file = File::from(file);
    let dir = File::from(dir);
    let opts = CheckpointOptions {
        compression,
        container_id: id.to_string(),
        metadata,
    };
    let writer = file.try_clone().context("duplicating the statefile's fd")?;
    let commit: sentry::state::BackgroundCommit =
        Box::new(move |_| publish(&file, &dir, force).map_err(|e| crate::one_line(&e)));
    checkpoint_leave_running(task, writer, &opts, commit, done).map_err(anyhow::Error::new)
}

/// Makes the written statefile durable and gives it its name: the commit
/// point of a checkpoint is the one `linkat` (or, with `force`, `renameat`)
/// that makes `checkpoint.cryo` appear complete. Uses only the passed fds.
fn publish(file: &File, dir: &File, force: bool) -> anyhow::Result<()> {
    file.sync_all().context("syncing the statefile")?;
    let dirfd = dir.as_raw_fd();
    if force {
        let temp = format!(
            "{TEMP_PREFIX}{}.{}.link",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        link_unnamed(file, dirfd, &temp)?;
        if let Err(e) = renameat(Some(dirfd), temp.as_str(), Some(dirfd), STATEFILE_NAME) {
            let _ = unlinkat(Some(dirfd), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e).context(format!("renaming the statefile to {STATEFILE_NAME}"));
        }
    } else {
        link_unnamed(file, dirfd, STATEFILE_NAME).map_err(|e| {
            if e.downcast_ref::<Errno>() == Some(&Errno::EEXIST) {
                anyhow::anyhow!(
                    "the image directory already holds a statefile (use --force to replace it)"
                )
            } else {
                e
            }
        })?;
    }
    dir.sync_all().context("syncing the image directory")?;
    Ok(())
}

/// Gives the unnamed file `file` the name `name` in directory `dirfd`.
fn link_unnamed(file: &File, dirfd: RawFd, name: &str) -> anyhow::Result<()> {
    let fd = file.as_raw_fd();
    let first = match linkat(Some(fd), "", Some(dirfd), name, AtFlags::AT_EMPTY_PATH) {
        Ok(()) => return Ok(()),
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc form does not
        // (it names this process's own fd, not a host file), but a
        // confined sandbox has no /proc (see confine).
        Err(e @ (Errno::EPERM | Errno::ENOENT)) => {
            tracing::debug!(error = %e, "linkat AT_EMPTY_PATH refused; linking through /proc/self/fd");
            e
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("linking {name}"))),
    };
    let proc_path = format!("/proc/self/fd/{fd}");
    linkat(
        None,
        proc_path.as_str(),
        Some(dirfd),
        name,
        AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "linking {name} (linkat AT_EMPTY_PATH: {first}; through /proc)"
        ))
    })
}

fn drain(task: &mut Task, id: &str, queue: &Receiver<Pending>) -> Interruption {
    let mut stop = false;
    while let Ok(pending) = queue.try_recv() {
        stop |= handle(task, id, pending, queue);
    }
    if stop {
        Interruption::Stop
    } else {
        Interruption::Continue
    }
}

/// Runs `task` as container `id` under `root` until it exits or is
/// checkpointed without --leave-running; returns the status to exit with.
pub fn run(
    task: &mut Task,
    root: &std::path::Path,
    id: &str,
    argv: &[String],
) -> anyhow::Result<i32> {
    let dir = ContainerDir::create(root, id, argv)?;
    let listener = control::bind(&container::control_socket(root, id))?;
    // Every thread started from here on is confined from its start.
    crate::confine::lock_down()?;
    let queue = control::serve(listener, task.interrupt().clone())?;
    let code = run_started(task, id, &queue)?;
    drop(dir);
    Ok(code)
}

/// Runs `task` with its control queue already served (an OCI container's
/// init, once started); returns the status to exit with.
pub fn run_started(task: &mut Task, id: &str, queue: &Receiver<Pending>) -> anyhow::Result<i32> {
    forward_signals(std::sync::Arc::downgrade(task.tg()))?;
    let status = task.run(&mut |t| drain(t, id, queue));
    // A checkpoint accepted with --leave-running finishes (and answers)
    // before the sandbox ends, whatever ended it.
    sentry::state::wait_background_checkpoint();
    // A lazily restored sandbox that ends before its memory is all in
    // records what it demanded so far (sentry::state::working_set).
    if let Some(l) = task.kernel().memory_file.lazy_restore() {
        l.finish_recording();
    }
    let status = status.map_err(anyhow::Error::new)?;
    Ok(match status {
        Some(s) => s.shell_code(),
        // Checkpointed and asked to exit: the statefile holds the program.
        None => ExitStatus::Exited(0).shell_code(),
    })
}

/// The signals a `cryo do` or `cryo restore` passes on to the sandbox's
/// program instead of dying of them (like runsc): the terminal's and
/// `kill`'s usual ones.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set
}

/// Blocks the forwarded signals in the calling thread, so that every thread
/// started afterwards has them blocked too and only the forwarding thread
/// receives them. Called first thing in `main`.
pub fn block_forwarded_signals() -> anyhow::Result<()> {
    forwarded_signals()
        .thread_block()
        .context("blocking signals")?;
    Ok(())
}

/// Receives the forwarded signals and queues each on the sandbox's
/// process, as if sent with kill(2) from outside its pid namespace.
fn forward_signals(
    tg: std::sync::Weak<sentry::kernel::thread_group::ThreadGroup>,
) -> anyhow::Result<()> {
    let set = forwarded_signals();
    std::thread::Builder::new()
        .name("cryo-signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                let info = SigInfo {
                    signo: sig as i32,
                    code: SI_USER,
                    addr: 0,
                    pid: 0,
                    uid: 0,
                };
                tracing::debug!(signal = ?sig, "forwarding a signal to the sandbox");
                // The process is gone once nothing else holds it.
                let Some(tg) = tg.upgrade() else { return };
                if !tg.signal_process(info) {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn unnamed(dir: &std::path::Path, content: &[u8]) -> File {
        let mut f = crate::checkpoint_cmd::create_unnamed(dir).unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn publish_links_refuses_to_replace_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = File::open(tmp.path()).unwrap();
        let target = tmp.path().join(STATEFILE_NAME);

        let a = unnamed(tmp.path(), b"first");
        // Nothing is named until it is published.
        assert!(names(tmp.path()).is_empty());
        publish(&a, &dir, false).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"first");

        // Without force, an existing statefile is never replaced, even one
        // that appeared after the command looked.
        let b = unnamed(tmp.path(), b"second");
        let err = publish(&b, &dir, false).unwrap_err();
        assert!(
            crate::one_line(&err).contains("already holds a statefile"),
            "{err:#}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
        assert_eq!(names(tmp.path()), [STATEFILE_NAME]);

        // With force it is replaced in one rename, leaving no other name.
        let before = std::fs::metadata(&target).unwrap().ino();
        publish(&b, &dir, true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second");
        assert_ne!(std::fs::metadata(&target).unwrap().ino(), before);
        assert_eq!(names(tmp.path()), [STATEFILE_NAME]);
    }
}
