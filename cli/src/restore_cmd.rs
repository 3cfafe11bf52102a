//! `cryo restore`: thaw a statefile into a new sandbox. Two forms:
//! - `restore --image-path DIR [--id X]`: in the foreground, as a `cryo do`
//!   sandbox over the host's root;
//! - `restore --image-path DIR --bundle B [--detach] [--pid-file F] ID`:
//!   runc's form, which conmon uses for `podman container restore`: the
//!   checkpointed OCI container becomes container ID from bundle B (see
//!   `oci::restore`).

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::oci::commands::Globals;
use crate::oci::inventory::{Inventory, InventoryError};
use crate::oci::worklog::WorkLog;

#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct RestoreArgs {
    /// Directory holding the statefile (and its inventory.img).
    #[arg(long)]
    image_path: PathBuf,
    /// Directory for the operation's log, restore.log (runc's).
    #[arg(long)]
    work_path: Option<PathBuf>,
    /// The OCI bundle to restore the container into (runc's form; the
    /// container's id is then the positional argument).
    #[arg(long, short = 'b')]
    bundle: Option<PathBuf>,
    /// With --bundle: return once the container runs, leaving it in the
    /// background (its sandbox process is in --pid-file).
    #[arg(long, short = 'd')]
    detach: bool,
    /// With --bundle: write the sandbox process's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// With --bundle: where a terminal's master would go. Accepted; a
    /// container checkpointed with a terminal is refused (no
    /// pseudo-terminals in OCI containers yet).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Resume before the memory is loaded: each 1 MiB chunk of it loads
    /// when first touched, the rest in the background (a working set
    /// recorded in the image directory by an earlier lazy restore is
    /// loaded first); with --bundle too.
    #[arg(long)]
    lazy: bool,
    /// runc's: restore established TCP connections. Refused: the sandbox
    /// has no TCP sockets yet.
    #[arg(long)]
    tcp_established: bool,
    /// runc's: restore file locks. Accepted: cryo always restores the
    /// locks a statefile holds.
    #[arg(long)]
    file_locks: bool,
    /// Accepted for runc compatibility: cryo's root is the gofer's.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility: the sandbox has no host keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// The new sandbox's id, in the `cryo do` form (generated if not
    /// given).
    #[arg(long = "id", value_name = "ID")]
    id: Option<String>,
    /// Print every system call with its arguments and result (`cryo do`
    /// form).
    #[arg(long)]
    strace: bool,
    /// The container's id (with --bundle).
    #[arg(value_name = "CONTAINER")]
    container: Option<String>,
}

impl RestoreArgs {
    /// Whether the sandbox runs in this process (the `cryo do` form); the
    /// OCI form starts a sandbox process.
    pub fn in_foreground(&self) -> bool {
        self.bundle.is_none()
    }
}

/// The flags runc takes that cryo cannot honour, each refused by name.
fn refuse_unsupported(args: &RestoreArgs) -> anyhow::Result<()> {
    if args.tcp_established {
        bail!("--tcp-established: the sandbox has no TCP sockets yet, so none can be restored: restore without it");
    }
    let oci_only = [
        ("--detach", args.detach),
        ("--pid-file", args.pid_file.is_some()),
        ("--console-socket", args.console_socket.is_some()),
    ];
    if args.bundle.is_none() {
        if let Some((flag, _)) = oci_only.iter().find(|(_, given)| *given) {
            bail!("{flag} is for an OCI restore: give --bundle and the container's id");
        }
        if let Some(c) = &args.container {
            bail!("container id {c:?} without --bundle: give --bundle for an OCI restore, or --id for a restore in the foreground");
        }
    } else if args.strace {
        bail!("--strace is for a restore without --bundle");
    }
    Ok(())
}

pub fn run(args: RestoreArgs, g: &Globals) -> anyhow::Result<i32> {
    let mut log = WorkLog::open(args.work_path.as_deref(), "restore.log")?;
    log.line(&format!(
        "restore of {} ({})",
        args.image_path.display(),
        match &args.bundle {
            Some(b) => format!("bundle {}", b.display()),
            None => "in the foreground".into(),
        }
    ));
    let result = restore(args, g);
    log.outcome("restore", &result);
    result
}

fn restore(args: RestoreArgs, g: &Globals) -> anyhow::Result<i32> {
    refuse_unsupported(&args)?;
    if let Some(bundle) = args.bundle {
        let id = match (args.container, args.id) {
            (Some(c), Some(i)) if c != i => {
                bail!("two container ids: {c:?} and --id {i:?}")
            }
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => bail!("restore --bundle: give the container's id"),
        };
        return crate::oci::restore::restore(
            g,
            crate::oci::restore::OciRestore {
                image: args.image_path,
                bundle,
                id,
                detach: args.detach,
                pid_file: args.pid_file,
                console_socket: args.console_socket,
                work_path: args.work_path,
                lazy: args.lazy,
            },
        );
    }
    foreground(
        &args.image_path,
        args.id,
        args.strace,
        args.lazy,
        &g.root,
        g.platform.as_deref(),
    )
}

/// The `cryo do` form: the sandbox runs here until it ends.
fn foreground(
    image: &Path,
    id: Option<String>,
    strace: bool,
    lazy: bool,
    root: &Path,
    platform: Option<&str>,
) -> anyhow::Result<i32> {
    let id = match id {
        Some(id) => {
            crate::container::validate_id(&id)?;
            id
        }
        None => crate::container::generate_id(),
    };
    // An inventory is not needed (statefiles older than it have none),
    // but one another tool wrote means the directory is not cryo's.
    match Inventory::read(image) {
        Ok(_) | Err(InventoryError::Missing(_) | InventoryError::NoImageDir(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let (gofer_sock, mut gofer) = crate::do_cmd::start_gofer()?;
    let container = sentry::state::ContainerRestore {
        lazy,
        ..Default::default()
    };
    let result = sentry::state::restore_container(image, gofer_sock, container, strace, platform)
        .map_err(anyhow::Error::new)
        .and_then(|mut task| {
            // The argv comes from the statefile: only a bounded part of it
            // is copied into --root.
            let argv = {
                let image = task.tg().image();
                crate::container::recorded_argv(image.argv.iter().map(Vec::as_slice))
            };
            crate::supervisor::run(&mut task, root, &id, &argv)
        });
    let _ = gofer.wait();
    result
}
