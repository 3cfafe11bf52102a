//! OCI container state under `--root`: `ROOT/ID/state.json`, guarded by an
//! flock on `ROOT/ID/lock` so that two commands on one id never interleave
//! their read-modify-write, and the status a sandbox's liveness implies (a
//! sandbox whose process is gone, a zombie, or a new process with a
//! recycled pid, is stopped).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The OCI spec version cryo's state and features report.
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("{0}")]
    BadId(String),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is corrupt: {error}")]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |error| StateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The lifecycle of the OCI runtime spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What `state.json` records of a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The status last recorded; [`Record::status`] corrects it by the
    /// sandbox's liveness.
    pub status: Status,
    /// The sandbox process's host pid (0 while creating).
    pub pid: i32,
    /// Its start time in clock ticks since boot (/proc/PID/stat field
    /// 22), so a recycled pid is not taken for the sandbox.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, as runc's `created`.
    pub created: String,
    pub annotations: HashMap<String, String>,
    /// Read from a `cryo do --id` sandbox's record: no bundle, no OCI
    /// identity (never written).
    #[serde(skip)]
    pub do_sandbox: bool,
}

/// A host process's state letter and start time, None when it is gone.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: fields are
    // counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl Record {
    /// The record of a `cryo do` sandbox: running while its process is,
    /// with no bundle.
    fn of_do_sandbox(d: crate::container::ContainerState) -> Record {
        Record {
            start_time: proc_stat(d.pid).map_or(0, |(_, t)| t),
            id: d.id,
            status: Status::Running,
            pid: d.pid,
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            created: rfc3339(i64::try_from(d.created).unwrap_or(0), 0),
            annotations: HashMap::new(),
            do_sandbox: true,
        }
    }

    /// Whether the recorded sandbox process still runs (not a zombie
    /// waiting for its reaper, not another process with its pid).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((s, t)) if s != 'Z' && s != 'X' && t == self.start_time)
    }

    pub fn status(&self) -> Status {
        match self.status {
            Status::Creating | Status::Stopped => self.status,
            _ if !self.alive() => Status::Stopped,
            s => s,
        }
    }

    /// The state JSON of the OCI runtime spec (`cryo state`), with runc's
    /// extra fields that clients read (rootfs, created, owner).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if matches!(status, Status::Stopped) {
            0
        } else {
            self.pid
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// Ids are file names under --root (see `container::validate_id`).
pub fn check_id(id: &str) -> Result<(), StateError> {
    crate::container::validate_id(id).map_err(|e| StateError::BadId(e.to_string()))
}

/// A container's directory with its lock held (released on drop).
pub struct Locked {
    pub dir: PathBuf,
    pub id: String,
    _lock: nix::fcntl::Flock<File>,
}

fn lock_file(dir: &Path) -> Result<nix::fcntl::Flock<File>, StateError> {
    let path = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io(&path)(e.into()))
}

impl Locked {
    /// Locks an existing container.
    pub fn open(root: &Path, id: &str) -> Result<Locked, StateError> {
        check_id(id)?;
        let dir = root.join(id);
        let lock = match lock_file(&dir) {
            Err(StateError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.into()))
            }
            other => other?,
        };
        // Deleted while this command waited for the lock.
        if !dir.join("state.json").exists() {
            return Err(StateError::NotFound(id.into()));
        }
        Ok(Locked {
            dir,
            id: id.into(),
            _lock: lock,
        })
    }

    /// Claims a new id (its directory is created, so a second `create` of
    /// the same id fails even before the first has written its state).
    pub fn create(root: &Path, id: &str) -> Result<Locked, StateError> {
        check_id(id)?;
        fs::create_dir_all(root).map_err(io(root))?;
        let dir = root.join(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.into()))
            }
            Err(e) => return Err(io(&dir)(e)),
        }
        let lock = lock_file(&dir)?;
        Ok(Locked {
            dir,
            id: id.into(),
            _lock: lock,
        })
    }

    pub fn load(&self) -> Result<Record, StateError> {
        read_record(&self.dir.join("state.json"), &self.id)
    }

    /// Writes the record atomically (a rename), so a reader without the
    /// lock sees the old or the new record, never half of one.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let tmp = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(record).map_err(|error| StateError::Corrupt {
            path: tmp.clone(),
            error,
        })?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        let path = self.dir.join("state.json");
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Removes the container's directory (its state, socket and lock).
    pub fn remove(self) -> Result<(), StateError> {
        fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }

    /// Opens what removing this record later takes (its lock file, its
    /// directory and their parent), for a sandbox that removes its own
    /// record when it ends but is confined by then (see crate::confine:
    /// every open is refused).
    pub fn hold(&self) -> Result<HeldRecord, StateError> {
        let lock_path = self.dir.join("lock");
        let lock = File::open(&lock_path).map_err(io(&lock_path))?;
        let dir = File::open(&self.dir).map_err(io(&self.dir))?;
        let parent_path = self.dir.parent().unwrap_or(Path::new("/"));
        let parent = File::open(parent_path).map_err(io(parent_path))?;
        Ok(HeldRecord {
            path: self.dir.clone(),
            lock,
            dir,
            parent,
        })
    }
}

/// A container's record held open by [`Locked::hold`].
pub struct HeldRecord {
    path: PathBuf,
    lock: File,
    dir: File,
    parent: File,
}

impl HeldRecord {
    /// Removes the record as [`Locked::remove`] does, under its lock, but
    /// through the descriptors held, opening nothing; a record another
    /// command removed meanwhile (its state.json gone from the directory
    /// held) is left alone, whatever has its id now.
    pub fn remove(self) -> Result<(), StateError> {
        let errno = |e: nix::errno::Errno| io(&self.path)(e.into());
        let _lock = nix::fcntl::Flock::lock(self.lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| errno(e))?;
        match nix::sys::stat::fstatat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&self.dir)),
            "state.json",
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => {}
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(errno(e)),
        }
        crate::container::remove_at(&self.dir, &self.parent, &self.path).map_err(errno)
    }
}

/// Every container id under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(root)(e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| check_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads a record without the lock (list, state): the rename in
/// [`Locked::save`] makes that safe.
pub fn peek(root: &Path, id: &str) -> Result<Record, StateError> {
    check_id(id)?;
    read_record(&root.join(id).join("state.json"), id)
}

/// The record at `path` (container `id`'s). A `cryo do --id` sandbox keeps
/// cryo's own record there; its sandbox answers the same control requests
/// (kill, ps, pause, events), so it reads as a running container.
fn read_record(path: &Path, id: &str) -> Result<Record, StateError> {
    let text = fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StateError::NotFound(id.into())
        } else {
            io(path)(e)
        }
    })?;
    serde_json::from_str(&text).or_else(|error| {
        match serde_json::from_str::<crate::container::ContainerState>(&text) {
            Ok(d) => Ok(Record::of_do_sandbox(d)),
            Err(_) => Err(StateError::Corrupt {
                path: path.to_path_buf(),
                error,
            }),
        }
    })
}

/// Now as RFC 3339 in UTC with nanoseconds (what Go's time.Time parses).
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_798_761_599, 0), "2026-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn lifecycle_of_a_record() {
        let root = tempfile::tempdir().unwrap();
        let l = Locked::create(root.path(), "c1").unwrap();
        assert!(matches!(
            Locked::create(root.path(), "c1"),
            Err(StateError::Exists(_))
        ));
        let (_, start) = proc_stat(std::process::id() as i32).unwrap();
        let mut r = Record {
            id: "c1".into(),
            status: Status::Created,
            pid: std::process::id() as i32,
            start_time: start,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339_now(),
            annotations: HashMap::new(),
            do_sandbox: false,
        };
        l.save(&r).unwrap();
        assert_eq!(peek(root.path(), "c1").unwrap().status(), Status::Created);
        // A recycled pid is not the sandbox.
        r.start_time += 1;
        assert_eq!(r.status(), Status::Stopped);
        assert_eq!(r.oci_state()["pid"], 0);
        assert_eq!(list_ids(root.path()).unwrap(), ["c1"]);
        l.remove().unwrap();
        assert!(matches!(
            Locked::open(root.path(), "c1"),
            Err(StateError::NotFound(_))
        ));
    }

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            status: Status::Running,
            pid: std::process::id() as i32,
            start_time: 0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339_now(),
            annotations: HashMap::new(),
            do_sandbox: false,
        }
    }

    #[test]
    fn a_held_record_is_removed_through_its_descriptors() {
        let root = tempfile::tempdir().unwrap();
        let l = Locked::create(root.path(), "c1").unwrap();
        l.save(&record("c1")).unwrap();
        std::fs::write(l.dir.join("identity.json"), b"{}").unwrap();
        let held = l.hold().unwrap();
        drop(l);
        held.remove().unwrap();
        assert!(!root.path().join("c1").exists());
        assert!(list_ids(root.path()).unwrap().is_empty());
    }

    #[test]
    fn a_held_record_deleted_meanwhile_leaves_its_successor_alone() {
        let root = tempfile::tempdir().unwrap();
        let l = Locked::create(root.path(), "c1").unwrap();
        l.save(&record("c1")).unwrap();
        let held = l.hold().unwrap();
        // `cryo delete`, then a new container of the same id.
        l.remove().unwrap();
        let again = Locked::create(root.path(), "c1").unwrap();
        again.save(&record("c1")).unwrap();
        drop(again);
        held.remove().unwrap();
        assert_eq!(list_ids(root.path()).unwrap(), ["c1"]);
    }
}
