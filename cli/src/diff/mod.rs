//! `cryo diff A B`: what changed between two states of a sandbox, for a
//! person (text) and a script (`--json`). A and B are statefiles (or image
//! directories holding one), or ids of running sandboxes, which are
//! checkpointed with `--leave-running` into a temporary directory under
//! `--root` for the purpose (removed afterwards).
//!
//! Both sides are decoded through the validation a restore does (a
//! damaged statefile is refused with its damage named); nothing is
//! restored. The exit status is diff(1)'s: 0 when nothing changed, 1 when
//! something did; an error is cryo's 125.

mod changes;
mod load;
mod render;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Machine-readable output (one JSON object).
    #[arg(long)]
    json: bool,
    /// The host directory the root's lower layer comes from, to tell a
    /// file copied up and changed from a new one (default: `/` for a
    /// `cryo do` sandbox, whose root is the host's; a running OCI
    /// container's bundle rootfs; none for an OCI container's statefile
    /// alone). `--lower none`: treat every file new to the upper layer as
    /// added.
    #[arg(long, value_name = "DIR")]
    lower: Option<String>,
    /// The earlier state: a statefile, an image directory or a sandbox id.
    a: String,
    /// The later state: a statefile, an image directory or a sandbox id.
    b: String,
}

/// A side's statefile, and the temporary directory holding it when it was
/// checkpointed for the diff (removed on drop).
struct Source {
    path: PathBuf,
    label: String,
    /// A running OCI container's root file system (its bundle's), the
    /// lower layer of its root.
    lower: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

/// `arg` as a statefile: a file, an image directory's statefile, or a
/// running sandbox's checkpoint.
fn source(arg: &str, root: &Path) -> anyhow::Result<Source> {
    let p = Path::new(arg);
    if p.is_dir() {
        let f = sentry::state::statefile_path(p);
        if !f.exists() {
            bail!(
                "{}: an image directory without a statefile ({} is missing)",
                p.display(),
                f.display()
            );
        }
        return Ok(Source {
            path: f,
            label: arg.to_string(),
            lower: None,
            _temp: None,
        });
    }
    if p.exists() || arg.contains('/') || crate::container::validate_id(arg).is_err() {
        // A path (a missing one is refused when it is opened, by name).
        return Ok(Source {
            path: p.to_path_buf(),
            label: arg.to_string(),
            lower: None,
            _temp: None,
        });
    }
    if !crate::container::container_dir(root, arg)
        .join("state.json")
        .exists()
    {
        bail!(
            "{arg:?} is neither a statefile nor the id of a sandbox under {}",
            root.display()
        );
    }
    checkpoint_running(arg, root)
}

/// Checkpoints sandbox `id` with --leave-running into a fresh temporary
/// directory under `root`, through the `cryo checkpoint` command itself
/// (its locking and commit included).
fn checkpoint_running(id: &str, root: &Path) -> anyhow::Result<Source> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".diff-")
        .tempdir_in(root)
        .with_context(|| format!("a temporary directory under {}", root.display()))?;
    let exe = std::env::current_exe().context("finding the cryo binary")?;
    let out = Command::new(exe)
        .arg("--root")
        .arg(root)
        .arg("checkpoint")
        .arg("--image-path")
        .arg(temp.path())
        .arg("--leave-running")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running cryo checkpoint")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim().trim_start_matches("cryo: ");
        bail!("cannot checkpoint sandbox {id:?} for the diff: {err}");
    }
    Ok(Source {
        path: sentry::state::statefile_path(temp.path()),
        label: format!("sandbox {id}"),
        lower: container_rootfs(id, root),
        _temp: Some(temp),
    })
}

/// An OCI container's root file system, from its bundle (none for a
/// `cryo do` sandbox, whose lower layer is the host's root).
fn container_rootfs(id: &str, root: &Path) -> Option<PathBuf> {
    let record = crate::oci::state::peek(root, id)
        .ok()
        .filter(|r| !r.do_sandbox)?;
    let spec = crate::oci::bundle::load_spec(&record.bundle).ok()?;
    let path = spec.root().as_ref()?.path().clone();
    Some(if path.is_absolute() {
        path
    } else {
        record.bundle.join(path)
    })
}

pub fn run(args: DiffArgs, root: &Path) -> anyhow::Result<i32> {
    let sa = source(&args.a, root)?;
    let sb = source(&args.b, root)?;
    let a = load::Side::open(&sa.path, sa.label.clone())?;
    let b = load::Side::open(&sb.path, sb.label.clone())?;
    let lower = match args.lower.as_deref() {
        Some("none") => changes::Lower(None),
        Some(dir) => changes::Lower(Some(PathBuf::from(dir))),
        None => match sb.lower.clone().or_else(|| sa.lower.clone()) {
            Some(rootfs) => changes::Lower(Some(rootfs)),
            None => changes::default_lower(&b.header),
        },
    };
    let set = changes::compare(&a, &b, &lower);
    let mut out = std::io::stdout().lock();
    if args.json {
        render::json(&mut out, &a, &b, &lower, &set)?;
    } else {
        render::text(&mut out, &a, &b, &set)?;
    }
    Ok(if set.is_empty() { 0 } else { 1 })
}
