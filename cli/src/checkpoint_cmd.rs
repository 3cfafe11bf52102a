//! `cryo checkpoint`: freeze a running sandbox into a statefile.
//!
//! The command creates a temporary file beside the target and passes it to
//! the sandbox, which writes the statefile into it; the command then fsyncs
//! it, renames it into place and fsyncs the directory before telling the
//! sandbox to go on (or exit). A checkpoint that fails or is killed halfway
//! leaves no statefile, an older one untouched, and the sandbox running.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::container;
use crate::control::{Connection, Reply, Request};

#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    /// Directory to write the statefile into (created if missing).
    #[arg(long)]
    image_path: PathBuf,
    /// Keep the sandbox running after the checkpoint.
    #[arg(long)]
    leave_running: bool,
    /// `none` or `zstd[:LEVEL]` (default zstd:1).
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// Replace a statefile already in the image directory.
    #[arg(long)]
    force: bool,
    /// The sandbox's id.
    id: String,
}

pub fn run(args: CheckpointArgs, root: &Path) -> anyhow::Result<i32> {
    // Refuse bad input before touching the sandbox or the file system.
    crate::sandbox::parse_compression(&args.compression)?;
    container::load(root, &args.id)?;
    let dir = std::path::absolute(&args.image_path)?;
    let target = sentry::state::statefile_path(&dir);
    if target.exists() && !args.force {
        bail!(
            "{} already holds a statefile (use --force to replace it)",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create image directory {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint.cryo.")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a statefile in {}", dir.display()))?;

    let mut conn = Connection::open(&container::control_socket(root, &args.id))?;
    let req = Request::Checkpoint {
        leave_running: args.leave_running,
        compression: args.compression,
    };
    match conn.call(&req, Some(tmp.as_file().as_fd()))? {
        Reply::Written { .. } => {}
        Reply::Error(e) => bail!("checkpoint of {:?} failed: {e}", args.id),
    }
    // Durable and in place before the sandbox may exit. A failure here
    // drops the connection uncommitted: the sandbox keeps running, and the
    // temporary file is removed.
    tmp.as_file().sync_all().context("syncing the statefile")?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the statefile to {}", target.display()))?;
    File::open(&dir)?
        .sync_all()
        .with_context(|| format!("syncing {}", dir.display()))?;
    conn.commit()?;
    Ok(0)
}
