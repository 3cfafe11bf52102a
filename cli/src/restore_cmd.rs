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
            // The argv comes from the statefile: only a bounded part of it
            // is copied into --root.
            let argv = {
                let image = task.tg.image();
                crate::container::recorded_argv(image.argv.iter().map(Vec::as_slice))
            };
            crate::sandbox::run(&mut task, root, &id, &argv)
        });
    let _ = gofer.wait();
    result
}
