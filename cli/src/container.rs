//! The container registry under `--root`: one directory per sandbox holding
//! its state (`state.json`) and its control socket, so other `cryo`
//! commands can find a running sandbox by id.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// What `cryo` records about a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// The host pid of the sandbox (Sentry) process.
    pub pid: i32,
    pub status: String,
    pub argv: Vec<String>,
    /// Seconds since the epoch when the sandbox was created.
    pub created: u64,
}

/// How much of a sandbox's argv `state.json` records. It is there to name
/// the sandbox to people and tools; a restored sandbox's argv comes from
/// its statefile, which may be hostile or just huge (Linux allows 128 KiB
/// per argument and thousands of them), and must not grow `--root`.
const MAX_RECORDED_ARGV_BYTES: usize = 4096;
const MAX_RECORDED_ARGS: usize = 64;

/// The argv as `state.json` records it: at most [`MAX_RECORDED_ARGS`]
/// arguments and [`MAX_RECORDED_ARGV_BYTES`] bytes of them, a clipped
/// argument ending in `…`, and a last entry saying how many were left out.
pub fn recorded_argv<'a>(argv: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut out = Vec::new();
    let mut budget = MAX_RECORDED_ARGV_BYTES;
    let mut rest = argv.into_iter();
    let mut omitted = 0usize;
    for arg in rest.by_ref() {
        if out.len() == MAX_RECORDED_ARGS || budget == 0 {
            omitted = 1;
            break;
        }
        let n = arg.len().min(budget);
        let mut s = String::from_utf8_lossy(&arg[..n]).into_owned();
        if n < arg.len() {
            s.push('…');
        }
        budget -= n;
        out.push(s);
    }
    omitted += rest.count();
    if omitted > 0 {
        out.push(format!("… ({omitted} more arguments)"));
    }
    out
}

/// A container's directory, held while the sandbox runs; removed on drop.
pub struct ContainerDir {
    dir: PathBuf,
    /// The directory and its parent, opened at creation: a confined
    /// sandbox (see crate::confine) sees no host path by the time it
    /// removes its entry, and opens nothing then.
    fds: Option<(fs::File, fs::File)>,
}

/// Ids are file names under --root: keep them short and plain so no id can
/// reach outside it.
pub fn validate_id(id: &str) -> anyhow::Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid container id {id:?}: use 1-128 characters [A-Za-z0-9_.-], starting with a letter or digit");
    }
    Ok(())
}

/// A fresh id: time and pid make it unique on this host.
pub fn generate_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "cryo-{:x}{:05x}",
        now.as_secs(),
        std::process::id() & 0xfffff
    )
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

pub fn control_socket(root: &Path, id: &str) -> PathBuf {
    container_dir(root, id).join("control.sock")
}

/// Reads a container's state; an unknown id is an error naming it.
pub fn load(root: &Path, id: &str) -> anyhow::Result<ContainerState> {
    validate_id(id)?;
    let path = container_dir(root, id).join("state.json");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no sandbox with id {id:?} under {}", root.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state: ContainerState = match serde_json::from_str(&text) {
        Ok(s) => s,
        // An OCI container (`cryo create`) keeps its own record there; its
        // sandbox answers a checkpoint on the same control socket.
        Err(e) => match crate::oci::state::peek(root, id) {
            Ok(r) if r.status() == crate::oci::state::Status::Running => ContainerState {
                id: r.id,
                pid: r.pid,
                status: "running".into(),
                argv: Vec::new(),
                created: 0,
            },
            Ok(r) => bail!("container {id:?} is {}, not running", r.status().as_str()),
            Err(_) => {
                return Err(e).with_context(|| format!("{} is corrupt", path.display()));
            }
        },
    };
    if !pid_alive(state.pid) {
        bail!(
            "sandbox {id:?} is not running (its process {} is gone)",
            state.pid
        );
    }
    Ok(state)
}

impl ContainerDir {
    /// Claims `id` under `root`. Two sandboxes cannot share an id; the
    /// directory of one whose process died is reclaimed.
    pub fn create(root: &Path, id: &str, argv: &[String]) -> anyhow::Result<ContainerDir> {
        validate_id(id)?;
        fs::create_dir_all(root).with_context(|| format!("creating --root {}", root.display()))?;
        let dir = container_dir(root, id);
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e).with_context(|| format!("creating {}", dir.display()));
            }
            let stale = fs::read_to_string(dir.join("state.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<ContainerState>(&t).ok())
                .is_none_or(|s| !pid_alive(s.pid));
            if !stale {
                bail!("a sandbox with id {id:?} already exists");
            }
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let state = ContainerState {
            id: id.to_string(),
            pid: std::process::id() as i32,
            status: "running".into(),
            argv: recorded_argv(argv.iter().map(|a| a.as_bytes())),
            created,
        };
        let fds = fs::File::open(&dir)
            .and_then(|d| Ok((d, fs::File::open(dir.parent().unwrap_or(root))?)))
            .ok();
        let cd = ContainerDir { dir, fds };
        cd.write_state(&state)?;
        Ok(cd)
    }

    fn write_state(&self, state: &ContainerState) -> anyhow::Result<()> {
        let tmp = self.dir.join("state.json.tmp");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join("state.json"))?;
        Ok(())
    }
}

impl Drop for ContainerDir {
    fn drop(&mut self) {
        if let Some((dir, parent)) = &self.fds {
            if remove_at(dir, parent, &self.dir).is_ok() {
                return;
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the flat directory `dir` (the entries the sandbox made:
/// state.json, control.sock; an OCI record's lock and identity too) through
/// its descriptor and its parent's.
pub(crate) fn remove_at(dir: &fs::File, parent: &fs::File, path: &Path) -> nix::Result<()> {
    use nix::unistd::{unlinkat, UnlinkatFlags};
    use std::os::fd::AsRawFd;
    let Some(name) = path.file_name() else {
        return Err(nix::errno::Errno::EINVAL);
    };
    let mut entries = nix::dir::Dir::from_fd(nix::unistd::dup(dir.as_raw_fd())?)?;
    let names: Vec<std::ffi::CString> = entries
        .iter()
        .flatten()
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for n in &names {
        unlinkat(
            Some(dir.as_raw_fd()),
            n.as_c_str(),
            UnlinkatFlags::NoRemoveDir,
        )?;
    }
    unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("abc-1.2_3").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recorded_argv_is_bounded() {
        let short = ["prog".to_string(), "-x".to_string()];
        assert_eq!(recorded_argv(short.iter().map(|a| a.as_bytes())), short);

        // What a hostile or huge statefile's argv may be: 100k arguments of
        // 128 KiB (not materialised: the same slice repeated).
        let big = vec![b'a'; 128 << 10];
        let argv = recorded_argv(std::iter::repeat_n(big.as_slice(), 100_000));
        assert_eq!(argv.len(), 2);
        assert_eq!(argv[0].len(), MAX_RECORDED_ARGV_BYTES + '…'.len_utf8());
        assert_eq!(argv[1], "… (99999 more arguments)");

        let many: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let argv = recorded_argv(many.iter().map(|a| a.as_bytes()));
        assert_eq!(argv.len(), MAX_RECORDED_ARGS + 1);
        assert_eq!(argv[MAX_RECORDED_ARGS], "… (936 more arguments)");

        // Clipping inside a UTF-8 sequence still gives valid text.
        let wide = "é".repeat(MAX_RECORDED_ARGV_BYTES);
        let argv = recorded_argv([wide.as_bytes()]);
        assert!(argv[0].ends_with('…'));

        // And state.json stays small.
        let root = tempfile::tempdir().unwrap();
        let huge: Vec<String> = (0..2000).map(|_| "b".repeat(64 << 10)).collect();
        let _dir = ContainerDir::create(root.path(), "big", &huge).unwrap();
        let len = fs::metadata(root.path().join("big").join("state.json"))
            .unwrap()
            .len();
        assert!(len < 16 << 10, "state.json is {len} bytes");
        assert_eq!(load(root.path(), "big").unwrap().argv.len(), 2);
    }

    #[test]
    fn two_sandboxes_cannot_share_an_id() {
        let root = tempfile::tempdir().unwrap();
        let a = ContainerDir::create(root.path(), "one", &[]).unwrap();
        let err = ContainerDir::create(root.path(), "one", &[]).err().unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(load(root.path(), "one").unwrap().id, "one");
        drop(a);
        assert!(load(root.path(), "one").is_err());
        assert!(ContainerDir::create(root.path(), "one", &[]).is_ok());
    }
}
