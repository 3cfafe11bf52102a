//! Checkpoint state of the VFS (invariant 2: no host fd, pointer or host
//! inode number in it, except a host file's fingerprint kept only to be
//! compared). Plain serde structs until the statefile crate's `Savable`
//! takes them over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::file::{FileKind, OpenFile};
use super::inode::Fingerprint;
use super::pipe::{pipe_of, Pipe};
use super::resolve::{NAME_MAX, PATH_MAX};
use super::stat::{Clock, Timespec};
use super::tmpfs::{DirData, FileData, Kind, Node, Tmpfs, TmpfsInode, TmpfsShared, PAGE};
use super::vfs::Vfs;
use crate::errno::Errno;

/// The format version of these structs.
pub const VFS_STATE_VERSION: u32 = 1;

/// Deepest directory tree a snapshot may hold, so that restoring (which
/// recurses) cannot overflow a thread's stack on hostile input.
/// TODO: make validate/build iterative and raise this to PATH_MAX / 2.
const MAX_DEPTH: usize = 256;

/// The parts of a sandbox's namespace that hold state.
#[derive(Default)]
pub(crate) struct SandboxParts {
    pub(crate) upper: Option<Arc<Tmpfs>>,
    pub(crate) shm: Option<Arc<Tmpfs>>,
}

/// A whole tmpfs: the overlay's upper layer or /dev/shm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsSnapshot {
    pub next_ino: u64,
    pub root: NodeSnapshot,
}
statefile::versioned!(TmpfsSnapshot, "vfs.Tmpfs", 1, [NodeSnapshot]);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub kind: NodeKindSnapshot,
}
statefile::versioned!(
    NodeSnapshot,
    "vfs.TmpfsNode",
    1,
    [Timespec, NodeKindSnapshot]
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKindSnapshot {
    Dir {
        children: Vec<(Vec<u8>, NodeSnapshot)>,
        whiteouts: Vec<Vec<u8>>,
        opaque: bool,
    },
    /// Only the pages that were written: (page index, PAGE bytes).
    File {
        size: u64,
        pages: Vec<(u64, Vec<u8>)>,
    },
    Symlink {
        target: Vec<u8>,
    },
}
statefile::versioned!(NodeKindSnapshot, "vfs.TmpfsNodeKind", 1, [NodeSnapshot]);

/// The namespace of a `cryo do` sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsState {
    pub version: u32,
    pub upper: TmpfsSnapshot,
    pub shm: TmpfsSnapshot,
}
statefile::savable_serde!(VfsState, "vfs.MountNamespace", 1, [TmpfsSnapshot]);

/// What an open file is, for re-opening it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKind {
    Regular,
    Directory,
    /// An O_PATH file naming a symlink.
    Symlink,
    Device,
    /// A procfs file: regenerated on restore.
    Synthetic,
    PipeRead {
        pipe: u64,
    },
    PipeWrite {
        pipe: u64,
    },
    /// The CLI's stdio fd number `index`.
    HostStdio {
        index: u32,
    },
}
statefile::versioned!(FileStateKind, "vfs.FileKind", 1);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileState {
    /// The path in the container (empty for pipes and stdio).
    pub path: Vec<u8>,
    /// Access mode and status flags (F_GETFL plus O_PATH).
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKind,
    /// For a file still read from the host: what it was.
    pub fingerprint: Option<Fingerprint>,
}
statefile::savable_serde!(
    OpenFileState,
    "vfs.OpenFile",
    1,
    [FileStateKind, Fingerprint]
);

/// A pipe's buffered bytes, saved once for all its ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeSnapshot {
    pub id: u64,
    pub data: Vec<u8>,
}
statefile::savable_serde!(PipeSnapshot, "vfs.Pipe", 1);

/// Collects what open files share (pipes) while saving.
#[derive(Default)]
pub struct SaveCtx {
    pub pipes: BTreeMap<u64, PipeSnapshot>,
}

/// Why the VFS could not be saved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaveError {
    #[error("open file {0:?} was deleted; saving deleted files is not supported")]
    Deleted(String),
    #[error("cannot save an open file of kind {0:?}")]
    Unsupported(FileKind),
    #[error("the namespace has no saved parts (not built by build_sandbox_vfs)")]
    NotASandbox,
}

/// Why a restore was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error("{path}: {errno}")]
    Missing { path: String, errno: Errno },
    #[error("{path} changed since the checkpoint: {what}")]
    Changed { path: String, what: String },
    #[error("{path} is a {found}, the checkpoint has a {expected}")]
    KindMismatch {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("invalid state: {0}")]
    Invalid(String),
    #[error("unsupported state version {0}")]
    Version(u32),
}

fn invalid(s: impl Into<String>) -> RestoreError {
    RestoreError::Invalid(s.into())
}

impl Tmpfs {
    /// The whole tree, contents included.
    pub fn snapshot(&self) -> TmpfsSnapshot {
        TmpfsSnapshot {
            next_ino: self
                .shared
                .next_ino
                .load(std::sync::atomic::Ordering::Relaxed),
            root: snap_node(&self.root()),
        }
    }

    /// A tmpfs holding `snap`, validated first: a hostile snapshot is
    /// refused, never trusted.
    pub fn restore(
        snap: &TmpfsSnapshot,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Tmpfs>, RestoreError> {
        let mut inos = HashSet::new();
        validate(&snap.root, 0, &mut inos)?;
        if snap.root.mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(invalid("tmpfs root is not a directory"));
        }
        let max = inos.iter().copied().max().unwrap_or(0);
        let shared = Arc::new(TmpfsShared {
            next_ino: std::sync::atomic::AtomicU64::new(snap.next_ino.max(max.saturating_add(1))),
            clock,
        });
        let root = build(&shared, &snap.root);
        Ok(Arc::new(Tmpfs {
            shared,
            root: std::sync::Mutex::new(root),
        }))
    }
}

fn snap_node(n: &Arc<TmpfsInode>) -> NodeSnapshot {
    let node = n.lock();
    let kind = match &node.kind {
        Kind::Dir(d) => NodeKindSnapshot::Dir {
            children: d
                .children
                .iter()
                .map(|(k, c)| (k.clone(), snap_node(c)))
                .collect(),
            whiteouts: d.whiteouts.iter().cloned().collect(),
            opaque: d.opaque,
        },
        Kind::File(f) => NodeKindSnapshot::File {
            size: f.size,
            pages: f.pages.iter().map(|(i, p)| (*i, p.to_vec())).collect(),
        },
        Kind::Symlink(t) => NodeKindSnapshot::Symlink { target: t.clone() },
    };
    NodeSnapshot {
        ino: n.ino,
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        atime: node.atime,
        mtime: node.mtime,
        ctime: node.ctime,
        kind,
    }
}

fn valid_name(n: &[u8]) -> bool {
    !n.is_empty()
        && n.len() <= NAME_MAX
        && n != b"."
        && n != b".."
        && !n.contains(&b'/')
        && !n.contains(&0)
}

fn validate(n: &NodeSnapshot, depth: usize, inos: &mut HashSet<u64>) -> Result<(), RestoreError> {
    if depth > MAX_DEPTH {
        return Err(invalid("tmpfs tree too deep"));
    }
    if !inos.insert(n.ino) || n.ino == 0 {
        return Err(invalid(format!("bad or duplicate inode number {}", n.ino)));
    }
    let want = match &n.kind {
        NodeKindSnapshot::Dir {
            children,
            whiteouts,
            ..
        } => {
            let mut seen = HashSet::new();
            for (name, c) in children {
                if !valid_name(name) || !seen.insert(name) {
                    return Err(invalid(format!(
                        "bad name {:?}",
                        String::from_utf8_lossy(name)
                    )));
                }
                validate(c, depth + 1, inos)?;
            }
            if whiteouts.iter().any(|w| !valid_name(w)) {
                return Err(invalid("bad whiteout name"));
            }
            libc::S_IFDIR
        }
        NodeKindSnapshot::File { size, pages } => {
            if *size > i64::MAX as u64 {
                return Err(invalid("file too large"));
            }
            let mut seen = HashSet::new();
            for (i, p) in pages {
                let in_range = i
                    .checked_mul(PAGE as u64)
                    .is_some_and(|start| start < *size);
                if p.len() != PAGE || !in_range || !seen.insert(i) {
                    return Err(invalid(format!("bad file page {i}")));
                }
            }
            libc::S_IFREG
        }
        NodeKindSnapshot::Symlink { target } => {
            if target.is_empty() || target.len() >= PATH_MAX {
                return Err(invalid("bad symlink target"));
            }
            libc::S_IFLNK
        }
    };
    if n.mode & libc::S_IFMT != want || n.mode & !(libc::S_IFMT | 0o7777) != 0 {
        return Err(invalid(format!("mode {:o} does not fit the node", n.mode)));
    }
    Ok(())
}

fn build(shared: &Arc<TmpfsShared>, n: &NodeSnapshot) -> Arc<TmpfsInode> {
    let kind = match &n.kind {
        NodeKindSnapshot::Dir {
            children,
            whiteouts,
            opaque,
        } => Kind::Dir(DirData {
            children: children
                .iter()
                .map(|(k, c)| (k.clone(), build(shared, c)))
                .collect(),
            whiteouts: whiteouts.iter().cloned().collect(),
            opaque: *opaque,
        }),
        NodeKindSnapshot::File { size, pages } => Kind::File(FileData {
            size: *size,
            pages: pages
                .iter()
                .map(|(i, p)| (*i, p.clone().into_boxed_slice()))
                .collect(),
        }),
        NodeKindSnapshot::Symlink { target } => Kind::Symlink(target.clone()),
    };
    let node = Node {
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        atime: n.atime,
        mtime: n.mtime,
        ctime: n.ctime,
        kind,
    };
    TmpfsInode::with_ino(shared, node, n.ino)
}

fn kind_name(ft: u32) -> &'static str {
    match ft {
        libc::S_IFDIR => "directory",
        libc::S_IFREG => "regular file",
        libc::S_IFLNK => "symlink",
        libc::S_IFCHR => "character device",
        libc::S_IFIFO => "fifo",
        _ => "special file",
    }
}

impl OpenFile {
    /// The state to re-open this file after a restore.
    pub fn save(&self, ctx: &mut SaveCtx) -> Result<OpenFileState, SaveError> {
        let flags = self.status_flags() | if self.is_path() { libc::O_PATH } else { 0 };
        if let Some((pipe, read)) = pipe_of(self) {
            ctx.pipes.entry(pipe.id()).or_insert_with(|| PipeSnapshot {
                id: pipe.id(),
                data: pipe.contents(),
            });
            let kind = if read {
                FileStateKind::PipeRead { pipe: pipe.id() }
            } else {
                FileStateKind::PipeWrite { pipe: pipe.id() }
            };
            return Ok(OpenFileState {
                path: Vec::new(),
                flags,
                offset: 0,
                kind,
                fingerprint: None,
            });
        }
        if let Some(index) = super::host::host_fd_index(self) {
            return Ok(OpenFileState {
                path: Vec::new(),
                flags,
                offset: 0,
                kind: FileStateKind::HostStdio { index },
                fingerprint: None,
            });
        }
        let d = self.dentry().ok_or(SaveError::Unsupported(self.kind()))?;
        if d.is_unlinked() {
            return Err(SaveError::Deleted(super::vfs::path_of(d)));
        }
        let kind = match (self.kind(), d.file_type()) {
            (_, libc::S_IFDIR) => FileStateKind::Directory,
            (_, libc::S_IFLNK) => FileStateKind::Symlink,
            (_, libc::S_IFCHR) => FileStateKind::Device,
            (FileKind::Synthetic, _) => FileStateKind::Synthetic,
            (_, libc::S_IFREG) => FileStateKind::Regular,
            (k, _) => return Err(SaveError::Unsupported(k)),
        };
        Ok(OpenFileState {
            path: super::vfs::path_bytes(d),
            flags,
            offset: self.offset(),
            kind,
            fingerprint: d.inode().fingerprint(),
        })
    }
}

/// What re-opened files share: pipes by id, and the new host stdio.
pub struct RestoreCtx {
    pipes: HashMap<u64, (Arc<Pipe>, bool)>,
    stdio: HashMap<u32, Arc<OpenFile>>,
}

impl RestoreCtx {
    /// `stdio` holds the open files the kernel made from the new CLI's
    /// donated fds, by stdio number.
    pub fn new(
        pipes: &[PipeSnapshot],
        stdio: HashMap<u32, Arc<OpenFile>>,
        now: Timespec,
    ) -> RestoreCtx {
        RestoreCtx {
            pipes: pipes
                .iter()
                .map(|p| (p.id, (Pipe::new(Some(p.id), &p.data, now), false)))
                .collect(),
            stdio,
        }
    }
}

impl Vfs {
    /// The sandbox namespace's state.
    pub fn save_state(&self) -> Result<VfsState, SaveError> {
        let parts = super::dentry::lock(&self.parts);
        let upper = parts.upper.as_ref().ok_or(SaveError::NotASandbox)?;
        let shm = parts.shm.as_ref().ok_or(SaveError::NotASandbox)?;
        Ok(VfsState {
            version: VFS_STATE_VERSION,
            upper: upper.snapshot(),
            shm: shm.snapshot(),
        })
    }

    /// Re-opens a saved open file, checking that a host file is still the
    /// one the checkpoint saw.
    pub fn reopen(
        &self,
        st: &OpenFileState,
        ctx: &mut RestoreCtx,
    ) -> Result<Arc<OpenFile>, RestoreError> {
        let status = st.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        match &st.kind {
            FileStateKind::PipeRead { pipe } | FileStateKind::PipeWrite { pipe } => {
                let (p, _) = ctx
                    .pipes
                    .get(pipe)
                    .ok_or_else(|| invalid(format!("unknown pipe {pipe}")))?;
                let read = matches!(st.kind, FileStateKind::PipeRead { .. });
                return Ok(p.open_end(read, status & libc::O_NONBLOCK));
            }
            FileStateKind::HostStdio { index } => {
                return ctx
                    .stdio
                    .get(index)
                    .cloned()
                    .ok_or_else(|| invalid(format!("no host stdio {index} given to restore")));
            }
            _ => {}
        }
        let path = String::from_utf8_lossy(&st.path).into_owned();
        if !st.path.starts_with(b"/") {
            return Err(invalid(format!("relative path {path:?}")));
        }
        let root = self.root().clone();
        let d = self
            .resolve(&root, &st.path, false)
            .map_err(|errno| RestoreError::Missing {
                path: path.clone(),
                errno,
            })?;
        let expected = match st.kind {
            FileStateKind::Directory => libc::S_IFDIR,
            FileStateKind::Symlink => libc::S_IFLNK,
            FileStateKind::Device => libc::S_IFCHR,
            _ => libc::S_IFREG,
        };
        if d.file_type() != expected {
            return Err(RestoreError::KindMismatch {
                path,
                expected: kind_name(expected),
                found: kind_name(d.file_type()),
            });
        }
        if let Some(saved) = st.fingerprint {
            match d.inode().fingerprint() {
                Some(_) if saved.crc32.is_none() => {
                    return Err(RestoreError::Changed {
                        path,
                        what: "its content could not be read when it was checkpointed".into(),
                    })
                }
                Some(now) if now == saved => {}
                Some(now) => {
                    return Err(RestoreError::Changed {
                        path,
                        what: format!("was {saved}, now {now}"),
                    })
                }
                // It was copied up since: restored from the upper layer,
                // which does not match a host file any more.
                None => {
                    return Err(RestoreError::Changed {
                        path,
                        what: "no longer the host's file".into(),
                    })
                }
            }
        }
        let file = self
            .finish_open(d, status)
            .map_err(|errno| RestoreError::Missing { path, errno })?;
        file.set_offset(st.offset);
        Ok(file)
    }
}
