//! `cryo checkpoint`: freeze a running sandbox into a statefile.
//!
//! The promise: whenever this command dies (SIGKILL at any instant
//! included), either (a) there is no new statefile — no temporary file in
//! the image directory, an older `checkpoint.cryo` untouched — and the
//! sandbox is still running, or (b) `checkpoint.cryo` is complete and valid
//! and the sandbox is gone (still running with `--leave-running`).
//!
//! How it is kept: the command only prepares and waits; the sandbox
//! commits. The command
//! 1. opens the image directory and takes an exclusive `flock` on it (one
//!    checkpoint per directory at a time; the lock lives as long as the
//!    directory's open file, which the sandbox holds until it is done);
//! 2. removes leftovers of earlier checkpoints (names starting with
//!    `.checkpoint.cryo.`: only a sandbox killed between its two final
//!    steps under `--force`, or an older cryo, leaves one);
//! 3. creates the statefile unnamed, with `O_TMPFILE` in the directory —
//!    whoever dies holding it, the kernel frees it and no name is left;
//! 4. passes that file and the directory over the control socket.
//!
//! The sandbox writes the statefile, fsyncs it, and links it in with
//! `linkat` (without `--force`: straight to `checkpoint.cryo`, which fails
//! if one appeared meanwhile; with `--force`: to a unique temporary name,
//! then `renameat` over `checkpoint.cryo`). That one atomic step is the
//! commit point. It fsyncs the directory, answers, and exits or resumes.
//! Once the request is sent (its fds are in flight in the socket, owned by
//! the kernel), the command's death changes nothing: the sandbox carries
//! the checkpoint through alone. Before that, nothing named exists and the
//! sandbox never heard of the checkpoint.
//!
//! An image directory on a file system without `O_TMPFILE` is refused: a
//! named temporary file would break (a) for a killed command.
//!
//! An OCI container's checkpoint (runc's command line, as podman calls it)
//! adds two things: the container's identity in the statefile's header
//! (`oci::identity`), and, once the statefile is committed, its index
//! `inventory.img` (`oci::inventory`), written by this command under the
//! directory's lock with a temporary name and a rename. A command killed
//! after the commit may leave the statefile without its index (a restore
//! through an engine then refuses it as incomplete) or a temporary file
//! with [`TEMP_PREFIX`], which the next checkpoint removes.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::container;
use crate::control::{Connection, Reply, Request, TEMP_PREFIX};
use crate::oci;
use crate::oci::inventory::Inventory;
use crate::oci::worklog::WorkLog;

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct CheckpointArgs {
    /// Directory to write the statefile (checkpoint.cryo) into, and for an
    /// OCI container its index (inventory.img) (created if missing).
    #[arg(long)]
    image_path: PathBuf,
    /// Directory for the operation's log, dump.log (runc's; podman reads
    /// it when a checkpoint fails).
    #[arg(long)]
    work_path: Option<PathBuf>,
    /// Keep the sandbox running after the checkpoint.
    #[arg(long)]
    leave_running: bool,
    /// `none` or `zstd[:LEVEL]` (default zstd:1).
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// Replace a statefile already in the image directory.
    #[arg(long)]
    force: bool,
    /// runc's: keep established TCP connections. Refused: the sandbox has
    /// no TCP sockets yet.
    #[arg(long)]
    tcp_established: bool,
    /// runc's: checkpoint file locks. Accepted: cryo always saves the
    /// sandbox's flock and fcntl locks with the files they are on.
    #[arg(long)]
    file_locks: bool,
    /// runc's: an incremental pre-dump. Refused: every cryo checkpoint
    /// is whole.
    #[arg(long)]
    pre_dump: bool,
    /// runc's: the pre-dump an incremental checkpoint builds on. Refused.
    #[arg(long, value_name = "PATH")]
    parent_path: Option<PathBuf>,
    /// The sandbox's id.
    id: String,
}

/// The flags runc takes that cryo cannot honour, each refused by name.
fn refuse_unsupported(args: &CheckpointArgs) -> anyhow::Result<()> {
    if args.pre_dump {
        bail!("--pre-dump: cryo has no incremental checkpoints (every statefile is whole): checkpoint without it");
    }
    if let Some(p) = &args.parent_path {
        bail!(
            "--parent-path {}: cryo has no incremental checkpoints (every statefile is whole): checkpoint without it",
            p.display()
        );
    }
    if args.tcp_established {
        bail!("--tcp-established: the sandbox has no TCP sockets yet, so none can be kept established: checkpoint without it");
    }
    Ok(())
}

/// What the header records of an OCI container (its identity, which a
/// restore checks the new bundle against); nothing for a `cryo do`
/// sandbox. A bundle's tmpfs mounts are saved with their files in the
/// namespace record (vfs.MountNamespace v2), in the bundle's order.
fn oci_metadata(root: &Path, id: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Some(record) = oci::state::peek(root, id).ok().filter(|r| !r.do_sandbox) else {
        return Ok(Vec::new());
    };
    let identity = oci::identity::load_from(&container::container_dir(root, id), &record.bundle)?;
    Ok(vec![(
        oci::identity::METADATA_KEY.to_string(),
        identity.encode()?,
    )])
}

pub fn run(args: CheckpointArgs, root: &Path) -> anyhow::Result<i32> {
    let mut log = WorkLog::open(args.work_path.as_deref(), "dump.log")?;
    log.line(&format!(
        "checkpoint of {:?} into {} (leave running: {}, compression: {})",
        args.id,
        args.image_path.display(),
        args.leave_running,
        args.compression
    ));
    let result = checkpoint(args, root, &mut log);
    log.outcome("checkpoint", &result);
    result
}

fn checkpoint(args: CheckpointArgs, root: &Path, log: &mut WorkLog) -> anyhow::Result<i32> {
    // Refuse bad input before touching the sandbox or the file system.
    refuse_unsupported(&args)?;
    if args.file_locks {
        log.line("--file-locks: locks are saved with every checkpoint");
    }
    crate::supervisor::parse_compression(&args.compression)?;
    container::load(root, &args.id)?;
    let oci = oci::state::peek(root, &args.id).is_ok_and(|r| !r.do_sandbox);
    let metadata = if oci {
        oci_metadata(root, &args.id)?
    } else {
        Vec::new()
    };
    let dir = std::path::absolute(&args.image_path)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create image directory {}", dir.display()))?;
    let dir_file = File::open(&dir)
        .with_context(|| format!("cannot open image directory {}", dir.display()))?;
    if !dir_file.metadata()?.is_dir() {
        bail!("image path {} is not a directory", dir.display());
    }
    match dir_file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            bail!("another checkpoint into {} is in progress", dir.display())
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", dir.display()))
        }
    }
    remove_leftovers(&dir_file, &dir);
    let target = sentry::state::statefile_path(&dir);
    // runc's checkpoint (which engines call) has no --force: it replaces
    // what the image directory holds, and podman checkpoints a container
    // kept running into the same directory again. So a statefile that
    // the directory's inventory says is this container's own earlier
    // checkpoint is replaced; anything else still needs --force.
    let force = args.force || (oci && earlier_checkpoint_of(&dir, &args.id));
    if force && !args.force {
        log.line("replacing this container's earlier checkpoint in the image directory");
    }
    if target.exists() && !force {
        bail!(
            "{} already holds a statefile (use --force to replace it)",
            dir.display()
        );
    }
    let file = create_unnamed(&dir)?;

    let mut conn = Connection::open(&container::control_socket(root, &args.id))?;
    let req = Request::Checkpoint {
        leave_running: args.leave_running,
        compression: args.compression,
        force,
        metadata,
    };
    let stats = match conn.call(&req, &[file.as_fd(), dir_file.as_fd()])? {
        Reply::Saved(stats) => {
            log.line(&format!(
                "statefile {} committed: {} bytes, {} bytes of memory; frozen {} µs",
                target.display(),
                stats.file_bytes,
                stats.memory_bytes,
                stats.frozen_us
            ));
            stats
        }
        Reply::Error(e) => bail!("checkpoint of {:?} failed: {e}", args.id),
        other => bail!("checkpoint of {:?}: unexpected answer {other:?}", args.id),
    };
    // CRIU's statistics for engines, beside their dump.log. The statefile
    // is committed: a failure here is only reported.
    if let Some(work) = &args.work_path {
        if let Err(e) = crate::oci::criu_stats::write_dump(work, &stats) {
            log.line(&format!("no {}: {e:#}", crate::oci::criu_stats::DUMP_FILE));
            tracing::warn!("{e:#}");
        }
    }
    // The statefile is the commit; an OCI container's index follows (an
    // engine looks for it before it restores; the directory is still
    // locked). A `cryo do` image directory holds the statefile alone.
    if !oci {
        return Ok(0);
    }
    Inventory::of_statefile(&dir, &args.id, args.leave_running, stats.memory_bytes)
        .and_then(|inv| inv.write(&dir))
        .with_context(|| {
            format!(
                "the statefile {} is complete, but its index is not",
                target.display()
            )
        })?;
    Ok(0)
}

/// Whether `dir`'s inventory lists a statefile of container `id` (an
/// earlier checkpoint of this same container).
fn earlier_checkpoint_of(dir: &Path, id: &str) -> bool {
    Inventory::read(dir).is_ok_and(|inv| inv.container_id == id)
}

/// Removes what earlier checkpoints into `dir` may have left. Called with
/// the directory locked, so no live checkpoint owns any of these names.
fn remove_leftovers(dir_file: &File, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let is_leftover = name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX))
            && e.file_type().is_ok_and(|t| t.is_file());
        if !is_leftover {
            continue;
        }
        match unlinkat(
            Some(dir_file.as_raw_fd()),
            name.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) => tracing::info!(name = ?name, "removed a leftover of an earlier checkpoint"),
            Err(e) => {
                tracing::warn!(name = ?name, error = %e, "cannot remove a checkpoint leftover")
            }
        }
    }
}

/// The statefile-to-be: a file in `dir` without a name.
pub(crate) fn create_unnamed(dir: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::EISDIR) => anyhow::anyhow!(
                "the file system of {} cannot create unnamed files (O_TMPFILE), which an atomic checkpoint needs",
                dir.display()
            ),
            _ => anyhow::Error::new(e)
                .context(format!("cannot create a statefile in {}", dir.display())),
        })
}
