//! Running a sandbox's init task with its control channel: the task loop
//! handles queued control requests (checkpoint) whenever it is interrupted.

use std::sync::mpsc::Receiver;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use sentry::kernel::run::Interruption;
use sentry::kernel::signal::{SigInfo, SI_USER};
use sentry::kernel::{ExitStatus, Task};
use sentry::state::{checkpoint, CheckpointOptions, CheckpointStats};
use statefile::Compression;

use crate::container::{self, ContainerDir};
use crate::control::{self, Pending, Reply, Request};

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

/// Handles one control request on the task's thread. Returns whether the
/// sandbox should stop.
fn handle(task: &mut Task, id: &str, pending: Pending) -> bool {
    let Pending {
        request,
        file,
        reply,
        commit,
    } = pending;
    match request {
        Request::Checkpoint {
            leave_running,
            compression,
        } => {
            // The sandbox stops only once the command has the statefile
            // durably in place (its commit); without it the sandbox carries
            // on. The kernel releases the stopped tasks either way.
            let mut commit_and_stop = |stats: &CheckpointStats| {
                let _ = reply.send(Reply::Written {
                    file_bytes: stats.file_bytes,
                    memory_bytes: stats.memory_bytes,
                });
                let committed = commit.recv().unwrap_or(false);
                if !committed {
                    tracing::warn!(
                        "checkpoint not committed by the command: the sandbox keeps running"
                    );
                }
                committed && !leave_running
            };
            let result = parse_compression(&compression).and_then(|compression| {
                let file = file.context("no statefile was passed with the checkpoint request")?;
                let opts = CheckpointOptions {
                    compression,
                    container_id: id.to_string(),
                };
                checkpoint(task, std::fs::File::from(file), &opts, &mut commit_and_stop)
                    .map_err(anyhow::Error::new)
            });
            match result {
                Ok(outcome) => outcome.exit,
                Err(e) => {
                    // A failed checkpoint leaves the sandbox running.
                    let _ = reply.send(Reply::Error(crate::one_line(&e)));
                    false
                }
            }
        }
    }
}

fn drain(task: &mut Task, id: &str, queue: &Receiver<Pending>) -> Interruption {
    let mut stop = false;
    while let Ok(pending) = queue.try_recv() {
        stop |= handle(task, id, pending);
    }
    task.interrupt.clear();
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
    let queue =
        control::start_server(&container::control_socket(root, id), task.interrupt.clone())?;
    forward_signals(std::sync::Arc::downgrade(&task.tg))?;
    let status = task
        .run(&mut |t| drain(t, id, &queue))
        .map_err(anyhow::Error::new)?;
    drop(dir);
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
