//! `cryo checkpoint`: freeze a running sandbox into a statefile.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::container;
use crate::control::{self, Reply, Request};

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
    // Refuse bad input before touching the sandbox.
    crate::sandbox::parse_compression(&args.compression)?;
    container::load(root, &args.id)?;
    let image = std::path::absolute(&args.image_path)?;
    let req = Request::Checkpoint {
        image_path: image.display().to_string(),
        leave_running: args.leave_running,
        compression: args.compression,
        force: args.force,
    };
    match control::call(&container::control_socket(root, &args.id), &req)? {
        Reply::Checkpointed { .. } => Ok(0),
        Reply::Error(e) => bail!("checkpoint of {:?} failed: {e}", args.id),
    }
}
