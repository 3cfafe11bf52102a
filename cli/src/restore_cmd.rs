//! `cryo restore`: thaw a statefile into a new sandbox, in the foreground.

use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// Directory holding the statefile.
    #[arg(long)]
    image_path: PathBuf,
    /// The new sandbox's id (generated if not given).
    #[arg(long)]
    id: Option<String>,
    /// Print every system call with its arguments and result.
    #[arg(long)]
    strace: bool,
}

pub fn run(args: RestoreArgs, root: &Path, platform: Option<&str>) -> anyhow::Result<i32> {
    let id = match args.id {
        Some(id) => {
            crate::container::validate_id(&id)?;
            id
        }
        None => crate::container::generate_id(),
    };
    let (gofer_sock, mut gofer) = crate::do_cmd::start_gofer()?;
    let result = sentry::state::restore(&args.image_path, gofer_sock, args.strace, platform)
        .map_err(anyhow::Error::new)
        .and_then(|mut task| {
            let argv: Vec<String> = task
                .tg
                .image()
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            crate::sandbox::run(&mut task, root, &id, &argv)
        });
    let _ = gofer.wait();
    result
}
