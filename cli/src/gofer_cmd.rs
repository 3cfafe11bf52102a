//! `cryo gofer`: the file proxy process, started by the sandbox.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct GoferArgs {
    /// The directory served as the container's root.
    #[arg(long)]
    root: PathBuf,
    /// The inherited socket connected to the Sentry.
    #[arg(long)]
    fd: i32,
    /// Refuse every open for writing (EROFS).
    #[arg(long)]
    read_only: bool,
}

pub fn run(args: GoferArgs) -> anyhow::Result<i32> {
    gofer::serve_inherited(&args.root, args.fd, args.read_only)
        .with_context(|| format!("gofer for {} on fd {}", args.root.display(), args.fd))?;
    Ok(0)
}
