//! `cryo gofer`: the file proxy process, started by the sandbox.

use std::os::fd::{FromRawFd, OwnedFd};
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
    if args.fd < 3 {
        anyhow::bail!("gofer: --fd {} is not an inherited socket", args.fd);
    }
    nix::sys::stat::fstat(args.fd).with_context(|| format!("gofer: --fd {} is not open", args.fd))?;
    // SAFETY: the fd was checked open above and is handed to this process by
    // its parent for this purpose alone; nothing else in the process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(args.fd) };
    gofer::harden(&sock).context("gofer: hardening failed")?;
    gofer::serve(&args.root, sock, args.read_only).context("gofer: serving failed")?;
    Ok(0)
}
