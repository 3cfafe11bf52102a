//! linux.cgroupsPath: the sandbox's host processes (the Sentry, its gofers
//! and stubs, all started after it joins) are put into that cgroup of the
//! host's cgroup v2 hierarchy, as runc puts a container's, so that the
//! host's own accounting and limits see the container. The limits
//! themselves are the sandbox's (kernel/oom.rs, the task limit): nothing is
//! written into the cgroup's controller files.
//!
//! Only where it can be done as runc does it: a cgroup v2 hierarchy is
//! mounted, cryo runs as root and the path is a cgroupfs path (not
//! systemd's `slice:prefix:name`). Otherwise the reason is logged and the
//! processes stay in the caller's cgroup.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The cgroup a sandbox joined; dropped, it leaves it and removes it. The
/// files it needs for that are opened when it joins: a confined Sentry
/// opens no host file and sees no host path by the time it ends.
#[derive(Debug)]
pub struct HostCgroup {
    dir: PathBuf,
    /// The cgroup it came from's `cgroup.procs`, to go back.
    parent_procs: Option<std::fs::File>,
    /// The directory holding `dir`, and `dir`'s name in it, to remove it.
    holder: Option<(std::fs::File, std::ffi::OsString)>,
}

/// The cgroup v2 hierarchy's mount point (the unified one in a hybrid
/// v1/v2 setup), from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        let point = pre.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(point))
    })
}

/// This process's cgroup in the v2 hierarchy (its `0::` line).
fn own_cgroup() -> Option<PathBuf> {
    let s = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim()))
}

/// Why `path` cannot be joined, if it cannot.
fn unusable(path: &str) -> Option<&'static str> {
    if path.contains(':') {
        return Some("a systemd cgroup path (slice:prefix:name), which cryo does not manage");
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Some("a path with '..'");
    }
    None
}

fn strip(p: &Path) -> PathBuf {
    p.strip_prefix("/")
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The directory of `cgroups_path` (absolute: from the hierarchy's root;
/// relative: under this process's own cgroup) and of this process's own
/// cgroup, or why there is none.
fn dirs(cgroups_path: &str) -> Result<(PathBuf, PathBuf), String> {
    if let Some(why) = unusable(cgroups_path) {
        return Err(why.into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("cryo is not running as root".into());
    }
    let mount = cgroup2_mount().ok_or("the host has no cgroup v2 hierarchy")?;
    let own = mount.join(strip(&own_cgroup().unwrap_or_default()));
    let rel = Path::new(cgroups_path);
    let dir = if rel.is_absolute() {
        mount.join(strip(rel))
    } else {
        own.join(rel)
    };
    Ok((dir, own))
}

/// Joins `cgroups_path`, creating it. None, with the reason logged, when
/// it cannot.
pub fn join(cgroups_path: &str) -> Option<HostCgroup> {
    let skip = |why: &str| {
        tracing::warn!("linux.cgroupsPath {cgroups_path:?}: {why}; the sandbox's host processes stay in their cgroup");
        None
    };
    let (dir, parent) = match dirs(cgroups_path) {
        Ok(d) => d,
        Err(why) => return skip(&why),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return skip(&format!("cannot create {}: {e}", dir.display()));
    }
    // Writing 0 moves the writing process, every thread of it.
    if let Err(e) = std::fs::write(dir.join("cgroup.procs"), "0") {
        let _ = std::fs::remove_dir(&dir);
        return skip(&format!("cannot join {}: {e}", dir.display()));
    }
    tracing::debug!(cgroup = %dir.display(), "joined linux.cgroupsPath");
    let parent_procs = std::fs::OpenOptions::new()
        .write(true)
        .open(parent.join("cgroup.procs"))
        .map_err(|e| tracing::debug!(error = %e, "opening {}", parent.display()))
        .ok();
    let holder = dir.parent().zip(dir.file_name()).and_then(|(up, name)| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(up)
            .map(|fd| (fd, name.to_os_string()))
            .map_err(|e| tracing::debug!(error = %e, "opening {}", up.display()))
            .ok()
    });
    Some(HostCgroup {
        dir,
        parent_procs,
        holder,
    })
}

impl Drop for HostCgroup {
    /// Back to the cgroup it came from, then the cgroup goes if nothing
    /// else is left in it. One try: the platform's own processes (the
    /// systrap zygote) end only with this process, and waiting for them
    /// here would hold the container's end back (a second, under podman);
    /// `delete`, which every engine calls, removes what is left.
    fn drop(&mut self) {
        use std::io::Write;
        if let Some(procs) = &mut self.parent_procs {
            if let Err(e) = procs.write_all(b"0") {
                tracing::debug!(error = %e, "leaving {}", self.dir.display());
            }
        }
        if let Some((up, name)) = &self.holder {
            let removed = nix::unistd::unlinkat(
                Some(up.as_raw_fd()),
                name.as_os_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            );
            match removed {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => tracing::debug!(error = %e, "{} left for delete", self.dir.display()),
            }
        }
    }
}

/// Removes a cgroup once its last process is gone (stubs end a moment
/// after the sandbox lets them go): a few tries, then it is left.
fn remove_dir(dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                tracing::debug!(error = %e, "removing {}", dir.display());
                return;
            }
        }
    }
    tracing::warn!("{} still has processes; left in place", dir.display());
}

/// `delete`: the cgroup of a container whose sandbox did not remove it
/// (it was killed), if it is empty.
pub fn remove(cgroups_path: &str) {
    if let Ok((dir, _)) = dirs(cgroups_path) {
        if dir.is_dir() {
            remove_dir(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_and_escaping_paths_are_not_joined() {
        assert!(unusable("system.slice:cryo:abc").is_some());
        assert!(unusable("/a/../../b").is_some());
        assert!(unusable("/default/abc").is_none());
        assert!(unusable("relative/abc").is_none());
    }
}
