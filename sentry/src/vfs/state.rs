//! Checkpoint state of the VFS (invariant 2: no host fd, pointer or host
//! inode number in it, except a host file's fingerprint kept only to be
//! compared). Plain serde structs until the statefile crate's `Savable`
//! takes them over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::epoll::{epoll_arc, Epoll};
use super::eventfd::EventFd;
use super::fasync::FasyncState;
use super::file::{FileKind, OpenFile, SaveAs};
use super::inode::Fingerprint;
use super::inotify::{Inotify, InotifyRecord};
use super::pipe::{is_fifo_end, pipe_of, Pipe};
use super::pty::{pty_of, PtySnapshot, Terminal};
use super::resolve::{NAME_MAX, PATH_MAX};
use super::signalfd::SignalFd;
use super::stat::{Clock, Timespec};
use super::timerfd::{TimerFd, TimerFdRecord};
use super::tmpfs::{
    DirData, FileData, Kind, Node, Tmpfs, TmpfsInode, TmpfsLimits, TmpfsShared, TmpfsUsage,
    MAX_FILE_SIZE, PAGE,
};
use super::vfs::Vfs;
use crate::errno::Errno;
use crate::kernel::pidfd::PidFdRecord;
use crate::mm::MemoryFile;

/// The parts of a sandbox's namespace that hold state.
#[derive(Default)]
pub(crate) struct SandboxParts {
    pub(crate) upper: Option<Arc<Tmpfs>>,
    pub(crate) shm: Option<Arc<Tmpfs>>,
    /// What mount(2) needs to make a new file system.
    pub(crate) mount_ctx: Option<MountCtx>,
    /// A bundle's tmpfs mounts, in its config's order (saved with their
    /// contents), each with where boot mounted it.
    pub(crate) bundle_tmpfs: Vec<(Vec<u8>, Arc<Tmpfs>)>,
    /// During a restore, a copy of boot's tree as built: the saved mount
    /// namespaces beyond the first start from copies of it.
    pub(crate) boot_tree: Option<Arc<super::mount_ns::MountNamespace>>,
    /// During a restore, the saved namespaces beyond the first, restored.
    pub(crate) restored_ns: Vec<Arc<super::mount_ns::MountNamespace>>,
}

/// The clock, memory file and process table a new tmpfs, procfs or sysfs
/// made by mount(2) is built on.
pub(crate) struct MountCtx {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) mf: Arc<MemoryFile>,
    pub(crate) procs: Arc<dyn super::procfs::ProcessTable>,
}

/// A whole tmpfs (the overlay's upper layer or /dev/shm) as a flat table of
/// nodes keyed by inode number. Directories name their children by inode
/// number, so a file named twice (a hard link) is one record, and nothing
/// nests: saving, encoding, decoding and validating never recurse, however
/// deep the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsSnapshot {
    pub next_ino: u64,
    /// The root directory's inode number.
    pub root: u64,
    pub nodes: Vec<TmpfsNodeRecord>,
    /// The instance's limits in pages and inodes, 0 for none (since v3).
    /// `None` (a statefile from before limits) is Linux's default for the
    /// restoring sandbox's memory. What is used is never saved: a restore
    /// counts it from the nodes.
    pub max_blocks: Option<u64>,
    pub max_inodes: Option<u64>,
}
statefile::versioned!(TmpfsSnapshot, "vfs.Tmpfs", 3, [TmpfsNodeRecord]);

/// Version 2 of [`TmpfsSnapshot`] with v3 nodes: before limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsSnapshotV2N3 {
    pub next_ino: u64,
    pub root: u64,
    pub nodes: Vec<TmpfsNodeRecord>,
}
statefile::versioned!(TmpfsSnapshotV2N3, "vfs.Tmpfs", 2, [TmpfsNodeRecord]);

impl From<TmpfsSnapshotV2N3> for TmpfsSnapshot {
    fn from(s: TmpfsSnapshotV2N3) -> TmpfsSnapshot {
        TmpfsSnapshot {
            next_ino: s.next_ino,
            root: s.root,
            nodes: s.nodes,
            max_blocks: None,
            max_inodes: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsNodeRecord {
    pub ino: u64,
    /// How many directory entries name this node (0 for the root, 1 for any
    /// other directory).
    pub nlink: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub kind: TmpfsNodeKind,
    /// A regular file's memfd seals, `F_SEAL_*` (since v3; a v2 node has
    /// F_SEAL_SEAL alone, as every tmpfs file then).
    pub seals: u32,
    /// Extended attributes, by name in order (since v3; none before).
    pub xattrs: Vec<TmpfsXattr>,
}
statefile::versioned!(
    TmpfsNodeRecord,
    "vfs.TmpfsNode",
    3,
    [Timespec, TmpfsNodeKind, TmpfsXattr]
);

/// One extended attribute of a tmpfs node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsXattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}
statefile::versioned!(TmpfsXattr, "vfs.TmpfsXattr", 1);

/// Version 2 of [`TmpfsNodeRecord`], before seals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsNodeRecordV2 {
    pub ino: u64,
    pub nlink: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub kind: TmpfsNodeKind,
}
statefile::versioned!(
    TmpfsNodeRecordV2,
    "vfs.TmpfsNode",
    2,
    [Timespec, TmpfsNodeKind]
);

impl From<TmpfsNodeRecordV2> for TmpfsNodeRecord {
    fn from(n: TmpfsNodeRecordV2) -> TmpfsNodeRecord {
        TmpfsNodeRecord {
            ino: n.ino,
            nlink: n.nlink,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            kind: n.kind,
            seals: super::tmpfs::SEAL_SEAL,
            xattrs: Vec::new(),
        }
    }
}

/// A [`TmpfsSnapshot`] whose nodes are v2 (its own shape is unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsSnapshotV2 {
    pub next_ino: u64,
    pub root: u64,
    pub nodes: Vec<TmpfsNodeRecordV2>,
}
statefile::versioned!(TmpfsSnapshotV2, "vfs.Tmpfs", 2, [TmpfsNodeRecordV2]);

impl From<TmpfsSnapshotV2> for TmpfsSnapshot {
    fn from(s: TmpfsSnapshotV2) -> TmpfsSnapshot {
        TmpfsSnapshot {
            next_ino: s.next_ino,
            root: s.root,
            nodes: s.nodes.into_iter().map(Into::into).collect(),
            max_blocks: None,
            max_inodes: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TmpfsNodeKind {
    Dir {
        entries: Vec<TmpfsDirEntry>,
        /// Overlay whiteouts.
        whiteouts: Vec<Vec<u8>>,
        opaque: bool,
    },
    /// The file's pages stay in the memory file; only where they are is
    /// saved, and the statefile's memory section carries their bytes.
    File {
        size: u64,
        pages: Vec<TmpfsPage>,
    },
    Symlink {
        target: Vec<u8>,
    },
}
statefile::versioned!(
    TmpfsNodeKind,
    "vfs.TmpfsNodeKind",
    2,
    [TmpfsDirEntry, TmpfsPage]
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsDirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
}
statefile::versioned!(TmpfsDirEntry, "vfs.TmpfsDirEntry", 1);

/// One page of a file: page `index` of the file is the memory-file page at
/// `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsPage {
    pub index: u64,
    pub offset: u64,
}
statefile::versioned!(TmpfsPage, "vfs.TmpfsPage", 1);

/// The namespace of a `cryo do` sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsState {
    pub upper: TmpfsSnapshot,
    pub shm: TmpfsSnapshot,
    /// A bundle's tmpfs mounts, in its config's order (since v2).
    pub bundle_tmpfs: Vec<TmpfsSnapshot>,
    /// The mount tree as mount(2) and umount2(2) left it (since v2).
    pub mounts: MountTreeRecord,
}
statefile::versioned!(
    VfsState,
    "vfs.MountNamespace",
    2,
    [TmpfsSnapshot, MountTreeRecord]
);

/// A [`VfsState`] as statefiles with `vfs.TmpfsNode` v2 hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsStateV1 {
    pub upper: TmpfsSnapshotV2,
    pub shm: TmpfsSnapshotV2,
}
statefile::versioned!(VfsStateV1, "vfs.MountNamespace", 1, [TmpfsSnapshotV2]);

/// A [`VfsState`] as statefiles with `vfs.Tmpfs` v2 and `vfs.TmpfsNode` v3
/// hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsStateV1N3 {
    pub upper: TmpfsSnapshotV2N3,
    pub shm: TmpfsSnapshotV2N3,
}
statefile::versioned!(VfsStateV1N3, "vfs.MountNamespace", 1, [TmpfsSnapshotV2N3]);

/// A [`VfsState`] as statefiles with `vfs.MountTree` v1 hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsStateV2M1 {
    pub upper: TmpfsSnapshot,
    pub shm: TmpfsSnapshot,
    pub bundle_tmpfs: Vec<TmpfsSnapshot>,
    pub mounts: MountTreeRecordV1,
}
statefile::versioned!(
    VfsStateV2M1,
    "vfs.MountNamespace",
    2,
    [TmpfsSnapshot, MountTreeRecordV1]
);

/// A [`VfsState`] as statefiles with `vfs.MountTree` v2 (and
/// `vfs.MountKind` v1) hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsStateV2M2 {
    pub upper: TmpfsSnapshot,
    pub shm: TmpfsSnapshot,
    pub bundle_tmpfs: Vec<TmpfsSnapshot>,
    pub mounts: MountTreeRecordV2,
}
statefile::versioned!(
    VfsStateV2M2,
    "vfs.MountNamespace",
    2,
    [TmpfsSnapshot, MountTreeRecordV2]
);

impl VfsState {
    /// A v1 namespace had only boot's mounts, none of them changed, and
    /// its bundle tmpfs mounts (if any) were not saved: they restore
    /// empty, as they did.
    fn from_v1(upper: TmpfsSnapshot, shm: TmpfsSnapshot) -> VfsState {
        VfsState {
            upper,
            shm,
            bundle_tmpfs: Vec::new(),
            mounts: MountTreeRecord::unchanged(),
        }
    }
}

impl statefile::Savable for VfsState {
    const TYPE_NAME: &'static str = "vfs.MountNamespace";
    const VERSION: u32 = 2;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    /// Nodes saved at `vfs.TmpfsNode` v2 are decoded in that layout and
    /// migrated (F_SEAL_SEAL, what every tmpfs file then had); tables
    /// saved at `vfs.Tmpfs` v2 get the default limits; a v1 namespace gets
    /// boot's mount tree; a v1 mount tree names boot's mounts by id; a v2
    /// one is boot's root at the top, its mounts placed in saved order.
    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 1 && dec.types().get("vfs.TmpfsNode") == Some(2) {
            statefile::check_saved_versions::<VfsStateV1>(dec.types())?;
            let v1: VfsStateV1 = dec.serde()?;
            return Ok(VfsState::from_v1(v1.upper.into(), v1.shm.into()));
        }
        if version == 1 {
            statefile::check_saved_versions::<VfsStateV1N3>(dec.types())?;
            let v1: VfsStateV1N3 = dec.serde()?;
            return Ok(VfsState::from_v1(v1.upper.into(), v1.shm.into()));
        }
        if dec.types().get("vfs.MountTree") == Some(1) {
            statefile::check_saved_versions::<VfsStateV2M1>(dec.types())?;
            let v: VfsStateV2M1 = dec.serde()?;
            return Ok(VfsState {
                upper: v.upper,
                shm: v.shm,
                bundle_tmpfs: v.bundle_tmpfs,
                mounts: v.mounts.into(),
            });
        }
        if dec.types().get("vfs.MountTree") == Some(2) {
            statefile::check_saved_versions::<VfsStateV2M2>(dec.types())?;
            let v: VfsStateV2M2 = dec.serde()?;
            return Ok(VfsState {
                upper: v.upper,
                shm: v.shm,
                bundle_tmpfs: v.bundle_tmpfs,
                mounts: v.mounts.into(),
            });
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

/// The mount tree: what happened to boot's mounts, and every mount made
/// since (records name places by path or by index into these lists, never
/// by reference, so no cycle can be written).
///
/// Boot's mounts are named by where boot put them (`origin`), not by id: a
/// restore's bundle may list the same mounts in another order (podman's
/// `restore --import` writes a new config), so its ids differ.
///
/// A restore makes `root` the top of the tree (pivot_root(2) may have put
/// a mount other than boot's root there), then puts every other mount at
/// its path in the order `places` gives, in which a mount's parent always
/// comes before it (since v3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTreeRecord {
    /// Boot's mounts still mounted, with where they are and their flags
    /// now.
    pub boot: Vec<BootMountRecord>,
    pub made: Vec<MountRecord>,
    /// Whether `boot` is meaningful (false: a v1 statefile, boot's tree
    /// as it was made).
    pub recorded: bool,
    /// Where boot had put the mounts umount2(2) took away (since v2).
    pub unmounted: Vec<Vec<u8>>,
    /// Where boot mounted each of `VfsState::bundle_tmpfs`, in its order
    /// (since v2).
    pub bundle_tmpfs_at: Vec<Vec<u8>>,
    /// Whether boot's mounts are named by origin (false: a v1 record,
    /// whose mounts are named by id and whose missing ones were unmounted).
    pub by_origin: bool,
    /// The mount at the top of the tree (since v3).
    pub root: MountRootRecord,
    /// Every mount of `boot` and `made` but the top, parents first (since
    /// v3).
    pub places: Vec<MountPlace>,
}
statefile::versioned!(
    MountTreeRecord,
    "vfs.MountTree",
    3,
    [BootMountRecord, MountRecord, MountRootRecord, MountPlace]
);

/// Which mount is the top of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountRootRecord {
    /// Boot's root, as boot made it (no pivot_root, or one undone).
    BootRoot,
    /// `boot[i]`: one of boot's other mounts, pivot_root(2)ed into.
    Boot(u32),
    /// `made[i]`: a mount made since, pivot_root(2)ed into.
    Made(u32),
}
statefile::versioned!(MountRootRecord, "vfs.MountRoot", 1);

/// One mount of the record, by its index in `boot` or `made`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountPlace {
    Boot(u32),
    Made(u32),
}
statefile::versioned!(MountPlace, "vfs.MountPlace", 1);

/// A [`MountTreeRecord`] as `vfs.MountTree` v2 held it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTreeRecordV2 {
    pub boot: Vec<BootMountRecord>,
    pub made: Vec<MountRecordV1>,
    pub recorded: bool,
    pub unmounted: Vec<Vec<u8>>,
    pub bundle_tmpfs_at: Vec<Vec<u8>>,
    pub by_origin: bool,
}
statefile::versioned!(
    MountTreeRecordV2,
    "vfs.MountTree",
    2,
    [BootMountRecord, MountRecordV1]
);

/// A [`MountTreeRecord`] as `vfs.MountTree` v1 held it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTreeRecordV1 {
    pub boot: Vec<BootMountRecordV1>,
    pub made: Vec<MountRecordV1>,
    pub recorded: bool,
}
statefile::versioned!(
    MountTreeRecordV1,
    "vfs.MountTree",
    1,
    [BootMountRecordV1, MountRecordV1]
);

/// Where a v1 or v2 record's mounts go: boot's root on top, boot's other
/// mounts moved first, then the made ones in the order they were made, as
/// those versions were restored.
fn places_in_order(boot: &[BootMountRecord], made: usize) -> Vec<MountPlace> {
    let boot_places = (0..boot.len())
        .filter(|&i| boot[i].origin != b"/" || boot[i].path != b"/")
        .map(|i| MountPlace::Boot(i as u32));
    boot_places
        .chain((0..made).map(|i| MountPlace::Made(i as u32)))
        .collect()
}

impl From<MountTreeRecordV2> for MountTreeRecord {
    fn from(v2: MountTreeRecordV2) -> MountTreeRecord {
        let places = places_in_order(&v2.boot, v2.made.len());
        MountTreeRecord {
            boot: v2.boot,
            made: v2.made.into_iter().map(MountRecord::from).collect(),
            recorded: v2.recorded,
            unmounted: v2.unmounted,
            bundle_tmpfs_at: v2.bundle_tmpfs_at,
            by_origin: v2.by_origin,
            root: MountRootRecord::BootRoot,
            places,
        }
    }
}

impl From<MountTreeRecordV1> for MountTreeRecord {
    /// v1 was only ever restored into the bundle it was saved from, where
    /// ids name the same mounts; its mounts keep being matched by id.
    fn from(v1: MountTreeRecordV1) -> MountTreeRecord {
        let boot: Vec<BootMountRecord> = v1
            .boot
            .into_iter()
            .map(|b| BootMountRecord {
                id: b.id,
                origin: b.path.clone(),
                path: b.path,
                flags: b.flags,
            })
            .collect();
        let places = places_in_order(&boot, v1.made.len());
        MountTreeRecord {
            boot,
            made: v1.made.into_iter().map(MountRecord::from).collect(),
            recorded: v1.recorded,
            unmounted: Vec::new(),
            bundle_tmpfs_at: Vec::new(),
            by_origin: false,
            root: MountRootRecord::BootRoot,
            places,
        }
    }
}

impl MountTreeRecord {
    pub fn unchanged() -> MountTreeRecord {
        MountTreeRecord {
            boot: Vec::new(),
            made: Vec::new(),
            recorded: false,
            unmounted: Vec::new(),
            bundle_tmpfs_at: Vec::new(),
            by_origin: true,
            root: MountRootRecord::BootRoot,
            places: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMountRecord {
    /// Its id when saved; the restored mount takes the new boot's id.
    pub id: u64,
    /// Where boot mounted it (since v2).
    pub origin: Vec<u8>,
    /// Its mount point now, absolute in the namespace.
    pub path: Vec<u8>,
    /// MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, atime bits.
    pub flags: u64,
}
statefile::versioned!(BootMountRecord, "vfs.BootMount", 2);

/// A [`BootMountRecord`] as `vfs.BootMount` v1 held it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMountRecordV1 {
    pub id: u64,
    pub path: Vec<u8>,
    pub flags: u64,
}
statefile::versioned!(BootMountRecordV1, "vfs.BootMount", 1);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub id: u64,
    /// Its mount point, absolute in the namespace ("/" for the top).
    pub path: Vec<u8>,
    pub flags: u64,
    pub kind: MountRecordKind,
}
statefile::versioned!(MountRecord, "vfs.Mount", 1, [MountRecordKind]);

/// A [`MountRecord`] whose kind is `vfs.MountKind` v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecordV1 {
    pub id: u64,
    pub path: Vec<u8>,
    pub flags: u64,
    pub kind: MountRecordKindV1,
}
statefile::versioned!(MountRecordV1, "vfs.Mount", 1, [MountRecordKindV1]);

impl From<MountRecordV1> for MountRecord {
    fn from(m: MountRecordV1) -> MountRecord {
        MountRecord {
            id: m.id,
            path: m.path,
            flags: m.flags,
            kind: match m.kind {
                MountRecordKindV1::Tmpfs(t) => MountRecordKind::Tmpfs(t),
                MountRecordKindV1::Proc => MountRecordKind::Proc,
                MountRecordKindV1::Sysfs => MountRecordKind::Sysfs,
                MountRecordKindV1::Bind { source } => MountRecordKind::Bind { source },
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountRecordKind {
    /// A tmpfs with its contents (pages in the memory section).
    Tmpfs(TmpfsSnapshot),
    Proc,
    Sysfs,
    /// A bind mount of the file or directory at `source` (absolute in the
    /// namespace as it was when saved), made when its place comes; only
    /// v1 records hold it.
    Bind {
        source: Vec<u8>,
    },
    /// A bind mount of the file or directory at `within` (absolute, below
    /// the root of `base`'s own dentry tree, crossing no mount): found
    /// whether or not `base` is still mounted anywhere (since v2).
    BindIn {
        base: BindBaseRecord,
        within: Vec<u8>,
    },
}
statefile::versioned!(
    MountRecordKind,
    "vfs.MountKind",
    2,
    [TmpfsSnapshot, BindBaseRecord]
);

/// The mount a bind mount's file lies on: never itself a bind mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindBaseRecord {
    /// The mount boot put at `origin`.
    Boot { origin: Vec<u8> },
    /// `made[index]`.
    Made { index: u32 },
}
statefile::versioned!(BindBaseRecord, "vfs.BindBase", 1);

/// A [`MountRecordKind`] as `vfs.MountKind` v1 held it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountRecordKindV1 {
    Tmpfs(TmpfsSnapshot),
    Proc,
    Sysfs,
    Bind { source: Vec<u8> },
}
statefile::versioned!(MountRecordKindV1, "vfs.MountKind", 1, [TmpfsSnapshot]);

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
    /// An eventfd: its counter (since v2).
    EventFd {
        count: u64,
        semaphore: bool,
    },
    /// A timerfd: its setting and unread expirations (since v2).
    TimerFd(TimerFdRecord),
    /// A signalfd: its mask (since v2).
    SignalFd {
        mask: u64,
    },
    /// An epoll instance: its interest list is the `vfs.Epoll` record `id`
    /// (since v2).
    Epoll {
        id: u64,
    },
    /// A socket: the `net.UnixSocket` record `id` (since v3).
    Socket {
        id: u64,
    },
    /// An end of pseudo-terminal `index`, the `vfs.Pty` record `index`
    /// (since v4).
    Pty {
        index: u32,
        master: bool,
    },
    /// A regular file of a tmpfs with no name left (unlinked while open,
    /// or O_TMPFILE): node `ino` of the root's upper layer (`fs` 0) or of
    /// /dev/shm (1), which the tmpfs table holds named nowhere; the path is
    /// the name it had, for /proc/self/fd (since v5). `fs` 2 is a memfd:
    /// a node of /dev/shm's table too, named under the internal memfd
    /// mount ("/memfd:NAME").
    Unlinked {
        fs: u8,
        ino: u64,
    },
    /// An inotify instance: its watches (by path) and queued events
    /// (since v6).
    Inotify(InotifyRecord),
    /// A pidfd: the process it names (since v7).
    PidFd(PidFdRecord),
}
statefile::versioned!(
    FileStateKind,
    "vfs.FileKind",
    7,
    [TimerFdRecord, InotifyRecord, PidFdRecord]
);

/// Version 6 of [`FileStateKind`], as statefiles before pidfds hold it:
/// the same variants in the same order but the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKindV6 {
    Regular,
    Directory,
    Symlink,
    Device,
    Synthetic,
    PipeRead { pipe: u64 },
    PipeWrite { pipe: u64 },
    HostStdio { index: u32 },
    EventFd { count: u64, semaphore: bool },
    TimerFd(TimerFdRecord),
    SignalFd { mask: u64 },
    Epoll { id: u64 },
    Socket { id: u64 },
    Pty { index: u32, master: bool },
    Unlinked { fs: u8, ino: u64 },
    Inotify(InotifyRecord),
}
statefile::versioned!(
    FileStateKindV6,
    "vfs.FileKind",
    6,
    [TimerFdRecord, InotifyRecord]
);

impl From<FileStateKindV6> for FileStateKind {
    fn from(k: FileStateKindV6) -> FileStateKind {
        use FileStateKindV6 as V;
        match k {
            V::Regular => FileStateKind::Regular,
            V::Directory => FileStateKind::Directory,
            V::Symlink => FileStateKind::Symlink,
            V::Device => FileStateKind::Device,
            V::Synthetic => FileStateKind::Synthetic,
            V::PipeRead { pipe } => FileStateKind::PipeRead { pipe },
            V::PipeWrite { pipe } => FileStateKind::PipeWrite { pipe },
            V::HostStdio { index } => FileStateKind::HostStdio { index },
            V::EventFd { count, semaphore } => FileStateKind::EventFd { count, semaphore },
            V::TimerFd(r) => FileStateKind::TimerFd(r),
            V::SignalFd { mask } => FileStateKind::SignalFd { mask },
            V::Epoll { id } => FileStateKind::Epoll { id },
            V::Socket { id } => FileStateKind::Socket { id },
            V::Pty { index, master } => FileStateKind::Pty { index, master },
            V::Unlinked { fs, ino } => FileStateKind::Unlinked { fs, ino },
            V::Inotify(r) => FileStateKind::Inotify(r),
        }
    }
}

/// Version 5 of [`FileStateKind`], as statefiles before inotify hold it:
/// the same variants in the same order but the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKindV5 {
    Regular,
    Directory,
    Symlink,
    Device,
    Synthetic,
    PipeRead { pipe: u64 },
    PipeWrite { pipe: u64 },
    HostStdio { index: u32 },
    EventFd { count: u64, semaphore: bool },
    TimerFd(TimerFdRecord),
    SignalFd { mask: u64 },
    Epoll { id: u64 },
    Socket { id: u64 },
    Pty { index: u32, master: bool },
    Unlinked { fs: u8, ino: u64 },
}
statefile::versioned!(FileStateKindV5, "vfs.FileKind", 5, [TimerFdRecord]);

impl From<FileStateKindV5> for FileStateKind {
    fn from(k: FileStateKindV5) -> FileStateKind {
        use FileStateKindV5 as V;
        match k {
            V::Unlinked { fs, ino } => FileStateKind::Unlinked { fs, ino },
            V::Pty { index, master } => FileStateKind::Pty { index, master },
            V::Regular => FileStateKind::Regular,
            V::Directory => FileStateKind::Directory,
            V::Symlink => FileStateKind::Symlink,
            V::Device => FileStateKind::Device,
            V::Synthetic => FileStateKind::Synthetic,
            V::PipeRead { pipe } => FileStateKind::PipeRead { pipe },
            V::PipeWrite { pipe } => FileStateKind::PipeWrite { pipe },
            V::HostStdio { index } => FileStateKind::HostStdio { index },
            V::EventFd { count, semaphore } => FileStateKind::EventFd { count, semaphore },
            V::TimerFd(r) => FileStateKind::TimerFd(r),
            V::SignalFd { mask } => FileStateKind::SignalFd { mask },
            V::Epoll { id } => FileStateKind::Epoll { id },
            V::Socket { id } => FileStateKind::Socket { id },
        }
    }
}

/// Version 4 of [`FileStateKind`], as statefiles before unlinked files
/// hold it: the same variants in the same order but the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKindV4 {
    Regular,
    Directory,
    Symlink,
    Device,
    Synthetic,
    PipeRead { pipe: u64 },
    PipeWrite { pipe: u64 },
    HostStdio { index: u32 },
    EventFd { count: u64, semaphore: bool },
    TimerFd(TimerFdRecord),
    SignalFd { mask: u64 },
    Epoll { id: u64 },
    Socket { id: u64 },
    Pty { index: u32, master: bool },
}
statefile::versioned!(FileStateKindV4, "vfs.FileKind", 4, [TimerFdRecord]);

impl From<FileStateKindV4> for FileStateKind {
    fn from(k: FileStateKindV4) -> FileStateKind {
        use FileStateKindV4 as V;
        match k {
            V::Pty { index, master } => FileStateKind::Pty { index, master },
            V::Regular => FileStateKind::Regular,
            V::Directory => FileStateKind::Directory,
            V::Symlink => FileStateKind::Symlink,
            V::Device => FileStateKind::Device,
            V::Synthetic => FileStateKind::Synthetic,
            V::PipeRead { pipe } => FileStateKind::PipeRead { pipe },
            V::PipeWrite { pipe } => FileStateKind::PipeWrite { pipe },
            V::HostStdio { index } => FileStateKind::HostStdio { index },
            V::EventFd { count, semaphore } => FileStateKind::EventFd { count, semaphore },
            V::TimerFd(r) => FileStateKind::TimerFd(r),
            V::SignalFd { mask } => FileStateKind::SignalFd { mask },
            V::Epoll { id } => FileStateKind::Epoll { id },
            V::Socket { id } => FileStateKind::Socket { id },
        }
    }
}

/// Version 3 of [`FileStateKind`], as statefiles before ptys hold it: the
/// same variants in the same order but the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKindV3 {
    Regular,
    Directory,
    Symlink,
    Device,
    Synthetic,
    PipeRead { pipe: u64 },
    PipeWrite { pipe: u64 },
    HostStdio { index: u32 },
    EventFd { count: u64, semaphore: bool },
    TimerFd(TimerFdRecord),
    SignalFd { mask: u64 },
    Epoll { id: u64 },
    Socket { id: u64 },
}
statefile::versioned!(FileStateKindV3, "vfs.FileKind", 3, [TimerFdRecord]);

impl From<FileStateKindV3> for FileStateKind {
    fn from(k: FileStateKindV3) -> FileStateKind {
        use FileStateKindV3 as V;
        match k {
            V::Regular => FileStateKind::Regular,
            V::Directory => FileStateKind::Directory,
            V::Symlink => FileStateKind::Symlink,
            V::Device => FileStateKind::Device,
            V::Synthetic => FileStateKind::Synthetic,
            V::PipeRead { pipe } => FileStateKind::PipeRead { pipe },
            V::PipeWrite { pipe } => FileStateKind::PipeWrite { pipe },
            V::HostStdio { index } => FileStateKind::HostStdio { index },
            V::EventFd { count, semaphore } => FileStateKind::EventFd { count, semaphore },
            V::TimerFd(r) => FileStateKind::TimerFd(r),
            V::SignalFd { mask } => FileStateKind::SignalFd { mask },
            V::Epoll { id } => FileStateKind::Epoll { id },
            V::Socket { id } => FileStateKind::Socket { id },
        }
    }
}

/// Version 2 of [`FileStateKind`], as statefiles before sockets hold it:
/// the same variants in the same order but the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKindV2 {
    Regular,
    Directory,
    Symlink,
    Device,
    Synthetic,
    PipeRead { pipe: u64 },
    PipeWrite { pipe: u64 },
    HostStdio { index: u32 },
    EventFd { count: u64, semaphore: bool },
    TimerFd(TimerFdRecord),
    SignalFd { mask: u64 },
    Epoll { id: u64 },
}
statefile::versioned!(FileStateKindV2, "vfs.FileKind", 2, [TimerFdRecord]);

impl From<FileStateKindV2> for FileStateKind {
    fn from(k: FileStateKindV2) -> FileStateKind {
        use FileStateKindV2 as V;
        match k {
            V::Regular => FileStateKind::Regular,
            V::Directory => FileStateKind::Directory,
            V::Symlink => FileStateKind::Symlink,
            V::Device => FileStateKind::Device,
            V::Synthetic => FileStateKind::Synthetic,
            V::PipeRead { pipe } => FileStateKind::PipeRead { pipe },
            V::PipeWrite { pipe } => FileStateKind::PipeWrite { pipe },
            V::HostStdio { index } => FileStateKind::HostStdio { index },
            V::EventFd { count, semaphore } => FileStateKind::EventFd { count, semaphore },
            V::TimerFd(r) => FileStateKind::TimerFd(r),
            V::SignalFd { mask } => FileStateKind::SignalFd { mask },
            V::Epoll { id } => FileStateKind::Epoll { id },
        }
    }
}

/// Version 1 of [`FileStateKind`], as statefiles before eventfd, timerfd,
/// signalfd and epoll hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStateKindV1 {
    Regular,
    Directory,
    Symlink,
    Device,
    Synthetic,
    PipeRead { pipe: u64 },
    PipeWrite { pipe: u64 },
    HostStdio { index: u32 },
}
statefile::versioned!(FileStateKindV1, "vfs.FileKind", 1);

impl From<FileStateKindV1> for FileStateKind {
    fn from(k: FileStateKindV1) -> FileStateKind {
        match k {
            FileStateKindV1::Regular => FileStateKind::Regular,
            FileStateKindV1::Directory => FileStateKind::Directory,
            FileStateKindV1::Symlink => FileStateKind::Symlink,
            FileStateKindV1::Device => FileStateKind::Device,
            FileStateKindV1::Synthetic => FileStateKind::Synthetic,
            FileStateKindV1::PipeRead { pipe } => FileStateKind::PipeRead { pipe },
            FileStateKindV1::PipeWrite { pipe } => FileStateKind::PipeWrite { pipe },
            FileStateKindV1::HostStdio { index } => FileStateKind::HostStdio { index },
        }
    }
}

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
    /// Signal-driven I/O's owner and signal (since v2).
    pub fasync: FasyncState,
}
statefile::versioned!(
    OpenFileState,
    "vfs.OpenFile",
    2,
    [FileStateKind, Fingerprint, FasyncState]
);

/// An open file as statefiles with `vfs.FileKind` v1 hold it (its own
/// shape is unchanged; only the kind it nests grew).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileStateV1 {
    pub path: Vec<u8>,
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKindV1,
    pub fingerprint: Option<Fingerprint>,
}
statefile::versioned!(
    OpenFileStateV1,
    "vfs.OpenFile",
    1,
    [FileStateKindV1, Fingerprint]
);

/// An open file as statefiles with `vfs.FileKind` v2 hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileStateV2 {
    pub path: Vec<u8>,
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKindV2,
    pub fingerprint: Option<Fingerprint>,
}
statefile::versioned!(
    OpenFileStateV2,
    "vfs.OpenFile",
    1,
    [FileStateKindV2, Fingerprint]
);

/// An open file as statefiles with `vfs.FileKind` v3 hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileStateV3 {
    pub path: Vec<u8>,
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKindV3,
    pub fingerprint: Option<Fingerprint>,
}
statefile::versioned!(
    OpenFileStateV3,
    "vfs.OpenFile",
    1,
    [FileStateKindV3, Fingerprint]
);

/// An open file as statefiles with `vfs.FileKind` v4 hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileStateV4 {
    pub path: Vec<u8>,
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKindV4,
    pub fingerprint: Option<Fingerprint>,
}
statefile::versioned!(
    OpenFileStateV4,
    "vfs.OpenFile",
    1,
    [FileStateKindV4, Fingerprint]
);

/// An open file as statefiles with `vfs.FileKind` v5 hold it (the last
/// `vfs.OpenFile` v1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileStateV5 {
    pub path: Vec<u8>,
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKindV5,
    pub fingerprint: Option<Fingerprint>,
}
statefile::versioned!(
    OpenFileStateV5,
    "vfs.OpenFile",
    1,
    [FileStateKindV5, Fingerprint]
);

/// An open file as statefiles with `vfs.FileKind` v6 hold it (the first
/// `vfs.OpenFile` v2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFileStateV6 {
    pub path: Vec<u8>,
    pub flags: i32,
    pub offset: u64,
    pub kind: FileStateKindV6,
    pub fingerprint: Option<Fingerprint>,
    pub fasync: FasyncState,
}
statefile::versioned!(
    OpenFileStateV6,
    "vfs.OpenFile",
    2,
    [FileStateKindV6, Fingerprint, FasyncState]
);

impl statefile::Savable for OpenFileState {
    const TYPE_NAME: &'static str = "vfs.OpenFile";
    const VERSION: u32 = 2;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    /// A file whose kind was saved at v1 is decoded in that layout (its
    /// nested types checked at the versions it was written with) and
    /// migrated: every v1 kind is a v2 kind.
    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version >= 2 && dec.types().get("vfs.FileKind") == Some(6) {
            statefile::check_saved_versions::<OpenFileStateV6>(dec.types())?;
            let v6: OpenFileStateV6 = dec.serde()?;
            return Ok(OpenFileState {
                path: v6.path,
                flags: v6.flags,
                offset: v6.offset,
                kind: v6.kind.into(),
                fingerprint: v6.fingerprint,
                fasync: v6.fasync,
            });
        }
        if version >= 2 {
            statefile::check_saved_versions::<Self>(dec.types())?;
            return dec.serde();
        }
        if dec.types().get("vfs.FileKind") == Some(1) {
            statefile::check_saved_versions::<OpenFileStateV1>(dec.types())?;
            let v1: OpenFileStateV1 = dec.serde()?;
            return Ok(OpenFileState {
                path: v1.path,
                flags: v1.flags,
                offset: v1.offset,
                kind: v1.kind.into(),
                fingerprint: v1.fingerprint,
                fasync: FasyncState::default(),
            });
        }
        if dec.types().get("vfs.FileKind") == Some(2) {
            statefile::check_saved_versions::<OpenFileStateV2>(dec.types())?;
            let v2: OpenFileStateV2 = dec.serde()?;
            return Ok(OpenFileState {
                path: v2.path,
                flags: v2.flags,
                offset: v2.offset,
                kind: v2.kind.into(),
                fingerprint: v2.fingerprint,
                fasync: FasyncState::default(),
            });
        }
        if dec.types().get("vfs.FileKind") == Some(3) {
            statefile::check_saved_versions::<OpenFileStateV3>(dec.types())?;
            let v3: OpenFileStateV3 = dec.serde()?;
            return Ok(OpenFileState {
                path: v3.path,
                flags: v3.flags,
                offset: v3.offset,
                kind: v3.kind.into(),
                fingerprint: v3.fingerprint,
                fasync: FasyncState::default(),
            });
        }
        if dec.types().get("vfs.FileKind") == Some(4) {
            statefile::check_saved_versions::<OpenFileStateV4>(dec.types())?;
            let v4: OpenFileStateV4 = dec.serde()?;
            return Ok(OpenFileState {
                path: v4.path,
                flags: v4.flags,
                offset: v4.offset,
                kind: v4.kind.into(),
                fingerprint: v4.fingerprint,
                fasync: FasyncState::default(),
            });
        }
        // The last layout of v1, before signal-driven I/O: vfs.FileKind v5
        // (inotify came with OpenFile v2).
        statefile::check_saved_versions::<OpenFileStateV5>(dec.types())?;
        let v5: OpenFileStateV5 = dec.serde()?;
        Ok(OpenFileState {
            path: v5.path,
            flags: v5.flags,
            offset: v5.offset,
            kind: v5.kind.into(),
            fingerprint: v5.fingerprint,
            fasync: FasyncState::default(),
        })
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

/// A pipe's buffered bytes, saved once for all its ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipeSnapshot {
    pub id: u64,
    pub data: Vec<u8>,
}
statefile::savable_serde!(PipeSnapshot, "vfs.Pipe", 1);

/// Collects what open files share (pipes, epoll sets) while saving.
#[derive(Default)]
pub struct SaveCtx {
    pub pipes: BTreeMap<u64, PipeSnapshot>,
    /// The epoll sets met, by id: their interest lists are saved once
    /// every open file has its id.
    pub epolls: BTreeMap<u64, Arc<Epoll>>,
    /// The sockets met, by id: saved with their links once every open
    /// file reached from a descriptor table has its id.
    pub sockets: BTreeMap<u64, Arc<crate::net::UnixSocket>>,
    /// The netlink sockets met, by id.
    pub netlink: BTreeMap<u64, Arc<crate::net::netlink::NetlinkSocket>>,
    /// The pseudo-terminals met, by index.
    pub ptys: BTreeMap<u32, PtySnapshot>,
    /// The sandbox's tmpfs instances by their tag in a
    /// [`FileStateKind::Unlinked`] (the root's upper layer 0, /dev/shm 1).
    pub(crate) tmpfs: Vec<(u8, Arc<super::tmpfs::TmpfsShared>)>,
    /// The internal mount memfds are named under, if one was made.
    pub(crate) memfd_mount: Option<u64>,
    /// The tops of the saved namespaces' trees: a file whose names lead
    /// to another top is on a detached mount (unchecked when empty).
    pub(crate) tops: Vec<Arc<super::dentry::Dentry>>,
}

/// The [`FileStateKind::Unlinked`] tag of a memfd.
const MEMFD_TAG: u8 = 2;

impl SaveCtx {
    /// The tag and inode number of a regular tmpfs file with no name left.
    fn orphan_of(&self, inode: &Arc<dyn super::inode::Inode>) -> Option<(u8, u64)> {
        let any = inode.as_any();
        let t = match any.downcast_ref::<super::overlay::OverlayInode>() {
            Some(o) => o.upper()?,
            None => {
                let t = any.downcast_ref::<TmpfsInode>()?;
                t.arc()?
            }
        };
        let (tag, _) = self.tmpfs.iter().find(|(_, s)| Arc::ptr_eq(s, &t.fs))?;
        Some((*tag, t.ino))
    }
}

/// Why the VFS could not be saved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaveError {
    #[error("open file {0:?} was deleted; saving deleted files is not supported")]
    Deleted(String),
    #[error("cannot save an open file of kind {0:?}")]
    Unsupported(FileKind),
    #[error("open file {file} cannot be checkpointed: {why}")]
    NotCheckpointable { file: String, why: &'static str },
    #[error(
        "an open file's path is {len} bytes (…{tail}), longer than PATH_MAX: a restore could not re-open it"
    )]
    PathTooLong { len: usize, tail: String },
    #[error("the namespace has no saved parts (not built by build_sandbox_vfs)")]
    NotASandbox,
    #[error("the mount tree cannot be checkpointed: {0}")]
    MountTree(String),
}

/// Why a restore was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VfsRestoreError {
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
    #[error("invalid tmpfs state: {field}: {why}")]
    Tmpfs { field: String, why: String },
}

fn invalid(s: impl Into<String>) -> VfsRestoreError {
    VfsRestoreError::Invalid(s.into())
}

impl Tmpfs {
    /// The whole tree as a flat table, root first. Call with the
    /// application stopped. File contents are not copied: the records name
    /// their memory-file pages.
    pub fn snapshot(&self) -> TmpfsSnapshot {
        let root = self.root();
        let limits = self.shared.usage.limits();
        let mut nodes: Vec<TmpfsNodeRecord> = Vec::new();
        // Inode number -> (index in `nodes`, names seen so far).
        let mut seen: HashMap<u64, (usize, u32)> = HashMap::new();
        let mut pending: Vec<Arc<TmpfsInode>> = vec![root.clone()];
        seen.insert(root.ino, (0, 0));
        // Files with no name that are still alive (open, or mapped) come
        // last, named nowhere: the tree walk reaches the rest.
        let mut orphans: Vec<Arc<TmpfsInode>> = self.shared.live_orphans();
        orphans.reverse();
        loop {
            let inode = match pending.pop() {
                Some(i) => i,
                None => match orphans.pop() {
                    Some(o)
                        if !seen.contains_key(&o.ino)
                            && o.lock().mode & libc::S_IFMT == libc::S_IFREG =>
                    {
                        seen.insert(o.ino, (usize::MAX, 0));
                        o
                    }
                    Some(_) => continue,
                    None => break,
                },
            };
            let index = nodes.len();
            if let Some(entry) = seen.get_mut(&inode.ino) {
                entry.0 = index;
            }
            let node = inode.lock();
            let kind = match &node.kind {
                Kind::Dir(d) => {
                    let mut entries = Vec::with_capacity(d.children.len());
                    for (name, child) in &d.children {
                        entries.push(TmpfsDirEntry {
                            name: name.clone(),
                            ino: child.ino,
                        });
                        match seen.get_mut(&child.ino) {
                            Some(entry) => entry.1 += 1,
                            None => {
                                seen.insert(child.ino, (usize::MAX, 1));
                                pending.push(child.clone());
                            }
                        }
                    }
                    TmpfsNodeKind::Dir {
                        entries,
                        whiteouts: d.whiteouts.iter().cloned().collect(),
                        opaque: d.opaque,
                    }
                }
                Kind::File(f) => TmpfsNodeKind::File {
                    size: f.size,
                    pages: f
                        .pages
                        .iter()
                        .map(|(index, offset)| TmpfsPage {
                            index: *index,
                            offset: *offset,
                        })
                        .collect(),
                },
                Kind::Symlink(t) => TmpfsNodeKind::Symlink { target: t.clone() },
            };
            nodes.push(TmpfsNodeRecord {
                ino: inode.ino,
                nlink: 0,
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                atime: node.atime,
                mtime: node.mtime,
                ctime: node.ctime,
                kind,
                seals: node.seals,
                xattrs: node
                    .xattrs
                    .iter()
                    .map(|(name, value)| TmpfsXattr {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            });
        }
        // Link counts are those of the saved graph, whatever the live
        // counters say, so a restore's consistency check holds by design.
        for (index, names) in seen.into_values() {
            if let Some(n) = nodes.get_mut(index) {
                n.nlink = names;
            }
        }
        TmpfsSnapshot {
            next_ino: self
                .shared
                .next_ino
                .load(std::sync::atomic::Ordering::Relaxed),
            root: root.ino,
            nodes,
            max_blocks: Some(limits.max_blocks.unwrap_or(0)),
            max_inodes: Some(limits.max_inodes.unwrap_or(0)),
        }
    }

    /// A tmpfs holding `snap`, its files re-attached to their pages in `mf`,
    /// which must already hold the restored memory. The whole table is
    /// validated first (and nothing is built from a hostile one): unique
    /// inode numbers, one root directory, every named child present, every
    /// node reachable from the root exactly as often as its link count
    /// says (so no cycles and no shared directories), valid names and
    /// targets, and file pages page-aligned, inside the memory file's
    /// restored allocations and given to no other owner ([`check_table`];
    /// each page is claimed with [`MemoryFile::claim_restored`], which
    /// every other owner of restored memory, tmpfs or mapping, goes through
    /// too). Restore ran the same check on the records before loading any
    /// memory (`state::validate`); this second run, against the live
    /// memory file, is what makes the pages this tmpfs's.
    /// The limits come from the record (Linux's default for the
    /// sandbox's memory where it has none); what is used is counted
    /// from the nodes, and a table that uses more than its limits is
    /// refused.
    pub fn restore(
        snap: &TmpfsSnapshot,
        clock: Arc<dyn Clock>,
        mf: Arc<MemoryFile>,
    ) -> Result<Arc<Tmpfs>, VfsRestoreError> {
        let index = validate_table(snap, &mf)?;
        let limits = snapshot_limits(snap, super::tmpfs::sandbox_memory_bytes(&mf));
        let max_ino = snap.nodes.iter().map(|n| n.ino).max().unwrap_or(0);
        let shared = Arc::new(TmpfsShared {
            next_ino: std::sync::atomic::AtomicU64::new(
                snap.next_ino.max(max_ino.saturating_add(1)),
            ),
            clock,
            mf,
            mapped_pages: std::sync::atomic::AtomicU64::new(0),
            mapped_limit: std::sync::atomic::AtomicU64::new(super::tmpfs::MAX_MAPPED_PAGES),
            orphans: std::sync::Mutex::new(Vec::new()),
            usage: Arc::new(TmpfsUsage::new(limits)),
        });
        let inodes: Vec<Arc<TmpfsInode>> = snap
            .nodes
            .iter()
            .map(|n| {
                let kind = match &n.kind {
                    TmpfsNodeKind::Dir {
                        whiteouts, opaque, ..
                    } => Kind::Dir(DirData {
                        children: BTreeMap::new(),
                        whiteouts: whiteouts.iter().cloned().collect(),
                        opaque: *opaque,
                    }),
                    TmpfsNodeKind::File { size, pages } => {
                        let mut data = FileData::new(&shared);
                        data.size = *size;
                        data.pages = pages.iter().map(|p| (p.index, p.offset)).collect();
                        data.usage.blocks.fetch_add(
                            data.pages.len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        Kind::File(data)
                    }
                    TmpfsNodeKind::Symlink { target } => Kind::Symlink(target.clone()),
                };
                let node = Node {
                    links: n.nlink,
                    mode: n.mode,
                    uid: n.uid,
                    gid: n.gid,
                    atime: n.atime,
                    mtime: n.mtime,
                    ctime: n.ctime,
                    seals: n.seals,
                    xattrs: n
                        .xattrs
                        .iter()
                        .map(|x| (x.name.clone(), x.value.clone()))
                        .collect(),
                    kind,
                };
                // A name beyond a node's first takes an inode (shmem_link).
                if n.nlink > 1 && n.mode & libc::S_IFMT != libc::S_IFDIR {
                    shared
                        .usage
                        .inodes
                        .fetch_add(u64::from(n.nlink - 1), std::sync::atomic::Ordering::Relaxed);
                }
                TmpfsInode::with_ino(&shared, node, n.ino)
            })
            .collect();
        // Files no directory names (memfds among them, which Linux keeps
        // on a mount without limits, and files unlinked while open) are
        // left out of the check: a statefile is never refused for them.
        let nameless: u64 = snap
            .nodes
            .iter()
            .filter(|n| is_orphan(n))
            .map(|n| match &n.kind {
                TmpfsNodeKind::File { pages, .. } => pages.len() as u64,
                _ => 0,
            })
            .sum();
        let nameless_inodes = snap.nodes.iter().filter(|n| is_orphan(n)).count() as u64;
        let (used_blocks, used_inodes) = (
            shared
                .usage
                .blocks
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(nameless),
            shared
                .usage
                .inodes
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(nameless_inodes),
        );
        // A statefile from before limits is never refused for them: its
        // default grows to what it holds (as if mounted with that size).
        if snap.max_blocks.is_none() && limits.max_blocks.is_some_and(|m| used_blocks > m) {
            shared
                .usage
                .max_blocks
                .store(used_blocks, std::sync::atomic::Ordering::Relaxed);
        } else if limits.max_blocks.is_some_and(|m| used_blocks > m) {
            return Err(bad_field(
                "max_blocks",
                format!(
                    "the files hold {used_blocks} pages, more than the limit of {:?}",
                    limits.max_blocks
                ),
            )
            .into());
        }
        if snap.max_inodes.is_none() && limits.max_inodes.is_some_and(|m| used_inodes > m) {
            shared
                .usage
                .max_inodes
                .store(used_inodes, std::sync::atomic::Ordering::Relaxed);
        } else if limits.max_inodes.is_some_and(|m| used_inodes > m) {
            return Err(bad_field(
                "max_inodes",
                format!(
                    "the table holds {used_inodes} inodes, more than the limit of {:?}",
                    limits.max_inodes
                ),
            )
            .into());
        }
        for (n, inode) in snap.nodes.iter().zip(&inodes) {
            let TmpfsNodeKind::Dir { entries, .. } = &n.kind else {
                continue;
            };
            let mut node = inode.lock();
            if let Kind::Dir(d) = &mut node.kind {
                for e in entries {
                    // Every entry's inode was found by `validate_table`.
                    if let Some(child) = index.get(&e.ino).and_then(|i| inodes.get(*i)) {
                        d.children.insert(e.name.clone(), child.clone());
                    }
                }
            }
        }
        let root = index
            .get(&snap.root)
            .and_then(|i| inodes.get(*i))
            .cloned()
            .ok_or_else(|| bad_field("root", "no such node"))?;
        let mut orphans = HashMap::new();
        for (n, inode) in snap.nodes.iter().zip(&inodes) {
            if is_orphan(n) {
                shared.orphaned(inode);
                orphans.insert(n.ino, inode.clone());
            } else if n.mode & libc::S_IFMT == libc::S_IFREG {
                // An O_TMPFILE file named by linkat(2) since: its open
                // file, saved as unlinked, finds it by inode too.
                orphans.insert(n.ino, inode.clone());
            }
        }
        Ok(Arc::new(Tmpfs {
            shared,
            root: std::sync::Mutex::new(root),
            restored_orphans: std::sync::Mutex::new(orphans),
        }))
    }
}

/// A table's limits: its own, or for a statefile from before limits,
/// Linux's default for `mem_bytes` of memory (0 saved is none).
pub(crate) fn snapshot_limits(snap: &TmpfsSnapshot, mem_bytes: u64) -> TmpfsLimits {
    let def = TmpfsLimits::default_for(mem_bytes);
    let pick = |saved: Option<u64>, def: Option<u64>| match saved {
        None => def,
        Some(0) => None,
        Some(n) => Some(n),
    };
    TmpfsLimits {
        max_blocks: pick(snap.max_blocks, def.max_blocks),
        max_inodes: pick(snap.max_inodes, def.max_inodes),
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

/// Why a tmpfs table was refused: the field, named from the table
/// (`nodes[3].pages[0].offset`, `root`), and what is wrong with it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {why}")]
pub struct TmpfsTableError {
    pub field: String,
    pub why: String,
}

impl From<TmpfsTableError> for VfsRestoreError {
    fn from(e: TmpfsTableError) -> VfsRestoreError {
        VfsRestoreError::Tmpfs {
            field: e.field,
            why: e.why,
        }
    }
}

fn bad_field(field: impl Into<String>, why: impl Into<String>) -> TmpfsTableError {
    TmpfsTableError {
        field: field.into(),
        why: why.into(),
    }
}

/// The memory a tmpfs table's file pages are judged against: the only part
/// of [`check_table`] that depends on anything beyond the table. Restore's
/// record validation implements it over the saved ranges and mappings
/// (nothing host-side exists yet); [`Tmpfs::restore`] over the live memory
/// file, whose claims then make the pages the file's.
pub trait TablePages {
    /// Whether the page at `offset` (page-aligned) is restored memory.
    fn allocated(&self, offset: u64) -> bool;
    /// Gives the page at `offset` to a tmpfs file, or says why it belongs
    /// to another owner already.
    fn claim(&mut self, offset: u64) -> Result<(), String>;
}

/// The live memory file during a restore (after
/// [`MemoryFile::restore_allocations`]).
struct LiveMemory<'a>(&'a MemoryFile);

impl TablePages for LiveMemory<'_> {
    fn allocated(&self, offset: u64) -> bool {
        self.0.is_allocated(offset, PAGE as u64)
    }
    fn claim(&mut self, offset: u64) -> Result<(), String> {
        // Tmpfs files are the first owners a restore re-attaches, so a
        // page claimed already is another tmpfs page.
        self.0
            .claim_restored(offset, PAGE as u64)
            .map_err(|_| format!("memory page {offset:#x} used twice"))
    }
}

fn validate_table(
    snap: &TmpfsSnapshot,
    mf: &MemoryFile,
) -> Result<HashMap<u64, usize>, VfsRestoreError> {
    Ok(check_table(snap, &mut LiveMemory(mf))?)
}

/// Checks a tmpfs table (see [`Tmpfs::restore`]) without recursion, its
/// file pages against `memory`, and returns the index of each inode number
/// in it. A refused table may have claimed some of its pages: the restore
/// is abandoned then anyway.
pub fn check_table(
    snap: &TmpfsSnapshot,
    memory: &mut dyn TablePages,
) -> Result<HashMap<u64, usize>, TmpfsTableError> {
    let mut index: HashMap<u64, usize> = HashMap::with_capacity(snap.nodes.len());
    for (i, n) in snap.nodes.iter().enumerate() {
        if n.ino == 0 {
            return Err(bad_field(format!("nodes[{i}].ino"), "inode number 0"));
        }
        if index.insert(n.ino, i).is_some() {
            return Err(bad_field(
                format!("nodes[{i}].ino"),
                format!("inode number {} used twice", n.ino),
            ));
        }
    }
    let root = *index
        .get(&snap.root)
        .ok_or_else(|| bad_field("root", format!("no node has inode number {}", snap.root)))?;
    let mut names = vec![0u32; snap.nodes.len()];
    for (i, n) in snap.nodes.iter().enumerate() {
        let want = match &n.kind {
            TmpfsNodeKind::Dir {
                entries, whiteouts, ..
            } => {
                let mut seen = HashSet::with_capacity(entries.len());
                for (j, e) in entries.iter().enumerate() {
                    if !valid_name(&e.name) {
                        return Err(bad_field(
                            format!("nodes[{i}].entries[{j}].name"),
                            format!("invalid name {:?}", String::from_utf8_lossy(&e.name)),
                        ));
                    }
                    if !seen.insert(&e.name) {
                        return Err(bad_field(
                            format!("nodes[{i}].entries[{j}].name"),
                            "name listed twice",
                        ));
                    }
                    let child = *index.get(&e.ino).ok_or_else(|| {
                        bad_field(
                            format!("nodes[{i}].entries[{j}].ino"),
                            format!("no node has inode number {}", e.ino),
                        )
                    })?;
                    names[child] = names[child].saturating_add(1);
                }
                if let Some(k) = whiteouts.iter().position(|w| !valid_name(w)) {
                    return Err(bad_field(
                        format!("nodes[{i}].whiteouts[{k}]"),
                        "invalid name",
                    ));
                }
                libc::S_IFDIR
            }
            TmpfsNodeKind::File { size, pages } => {
                if *size > MAX_FILE_SIZE {
                    return Err(bad_field(format!("nodes[{i}].size"), "file too large"));
                }
                let mut indices = HashSet::with_capacity(pages.len());
                for (k, p) in pages.iter().enumerate() {
                    let in_file = p
                        .index
                        .checked_mul(PAGE as u64)
                        .is_some_and(|start| start < *size);
                    if !in_file || !indices.insert(p.index) {
                        return Err(bad_field(
                            format!("nodes[{i}].pages[{k}].index"),
                            format!("page {} is past the end or listed twice", p.index),
                        ));
                    }
                    let field = || format!("nodes[{i}].pages[{k}].offset");
                    if !p.offset.is_multiple_of(PAGE as u64) {
                        return Err(bad_field(
                            field(),
                            format!("{:#x} is not page-aligned", p.offset),
                        ));
                    }
                    if !memory.allocated(p.offset) {
                        return Err(bad_field(
                            field(),
                            format!("{:#x} is not inside the restored memory", p.offset),
                        ));
                    }
                    memory
                        .claim(p.offset)
                        .map_err(|why| bad_field(field(), why))?;
                }
                // A bound unix socket's node and a FIFO are empty files.
                let special = matches!(n.mode & libc::S_IFMT, libc::S_IFSOCK | libc::S_IFIFO);
                if special && *size == 0 && pages.is_empty() {
                    n.mode & libc::S_IFMT
                } else {
                    libc::S_IFREG
                }
            }
            TmpfsNodeKind::Symlink { target } => {
                if target.is_empty() || target.len() >= PATH_MAX || target.contains(&0) {
                    return Err(bad_field(
                        format!("nodes[{i}].target"),
                        "invalid symlink target",
                    ));
                }
                libc::S_IFLNK
            }
        };
        if n.xattrs.len() > super::tmpfs::MAX_XATTRS {
            return Err(bad_field(format!("nodes[{i}].xattrs"), "too many"));
        }
        for (k, x) in n.xattrs.iter().enumerate() {
            if !super::xattr::valid_name(&x.name) {
                return Err(bad_field(
                    format!("nodes[{i}].xattrs[{k}].name"),
                    "invalid name",
                ));
            }
            if x.value.len() > super::xattr::XATTR_SIZE_MAX {
                return Err(bad_field(
                    format!("nodes[{i}].xattrs[{k}].value"),
                    "longer than XATTR_SIZE_MAX",
                ));
            }
            if k > 0 && n.xattrs[k - 1].name >= x.name {
                return Err(bad_field(
                    format!("nodes[{i}].xattrs[{k}].name"),
                    "names out of order or listed twice",
                ));
            }
        }
        if n.seals & !super::tmpfs::SEALS_KNOWN != 0 {
            return Err(bad_field(
                format!("nodes[{i}].seals"),
                format!("unknown seals {:#x}", n.seals),
            ));
        }
        if n.mode & libc::S_IFMT != want || n.mode & !(libc::S_IFMT | 0o7777) != 0 {
            return Err(bad_field(
                format!("nodes[{i}].mode"),
                format!("mode {:o} does not fit the node", n.mode),
            ));
        }
    }
    if snap.nodes[root].mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(bad_field("root", "the root is not a directory"));
    }
    for (i, n) in snap.nodes.iter().enumerate() {
        let is_dir = n.mode & libc::S_IFMT == libc::S_IFDIR;
        let expected = if i == root {
            0
        } else if is_dir {
            1
        } else if is_orphan(n) {
            // A regular file with no name left, which an open file holds.
            0
        } else {
            n.nlink.max(1)
        };
        if names[i] != expected || n.nlink != names[i] {
            return Err(bad_field(
                format!("nodes[{i}].nlink"),
                format!(
                    "inode {} has link count {} but is named {} times",
                    n.ino, n.nlink, names[i]
                ),
            ));
        }
    }
    // Every node named as often as it should be, with directories named
    // once and the root never: then the nodes reachable from the root are
    // all of them exactly when there is no cycle (a cycle would be a set of
    // directories naming each other, out of the root's reach).
    let mut reached = vec![false; snap.nodes.len()];
    reached[root] = true;
    let mut pending = vec![root];
    let mut count = 1usize;
    while let Some(i) = pending.pop() {
        if let TmpfsNodeKind::Dir { entries, .. } = &snap.nodes[i].kind {
            for e in entries {
                if let Some(&c) = index.get(&e.ino) {
                    if !reached[c] {
                        reached[c] = true;
                        count += 1;
                        pending.push(c);
                    }
                }
            }
        }
    }
    let orphans = snap.nodes.iter().filter(|n| is_orphan(n)).count();
    if count + orphans != snap.nodes.len() {
        let i = reached
            .iter()
            .zip(&snap.nodes)
            .position(|(r, n)| !r && !is_orphan(n))
            .unwrap_or(0);
        return Err(bad_field(
            format!("nodes[{i}]"),
            "not reachable from the root (a directory cycle or a detached subtree)",
        ));
    }
    Ok(index)
}

/// A node no directory names: a regular file unlinked while open, or made
/// with O_TMPFILE.
fn is_orphan(n: &TmpfsNodeRecord) -> bool {
    n.nlink == 0 && n.mode & libc::S_IFMT == libc::S_IFREG
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

/// The path a file opened by name is re-opened by. Restore re-opens files
/// by path, so a deleted file, or a path no restore could open, refuses
/// the checkpoint now and keeps the sandbox running rather than writing a
/// statefile no restore could load.
fn saved_path(d: &Arc<super::dentry::Dentry>, ctx: &SaveCtx) -> Result<Vec<u8>, SaveError> {
    if d.is_unlinked() {
        return Err(SaveError::Deleted(super::vfs::path_of(d)));
    }
    if !ctx.tops.is_empty() && super::mount_tree::on_detached_mount(d, &ctx.tops) {
        return Err(SaveError::NotCheckpointable {
            file: super::vfs::path_of(d),
            why: "its mount was detached (umount2 with MNT_DETACH) or is another mount namespace's: no path reaches it",
        });
    }
    let path = super::vfs::path_bytes(d);
    if path.len() >= PATH_MAX {
        let shown = String::from_utf8_lossy(&path[path.len() - 64..]).into_owned();
        return Err(SaveError::PathTooLong {
            len: path.len(),
            tail: shown,
        });
    }
    Ok(path)
}

impl OpenFile {
    /// The state to re-open this file after a restore.
    pub fn save(&self, ctx: &mut SaveCtx) -> Result<OpenFileState, SaveError> {
        let mut st = self.save_kind(ctx)?;
        st.fasync = self.fasync().save();
        Ok(st)
    }

    /// The state of this file but for its signal-driven I/O.
    fn save_kind(&self, ctx: &mut SaveCtx) -> Result<OpenFileState, SaveError> {
        let flags = self.status_flags() | if self.is_path() { libc::O_PATH } else { 0 };
        let stream = |kind| OpenFileState {
            path: Vec::new(),
            flags,
            offset: 0,
            kind,
            fingerprint: None,
            fasync: FasyncState::default(),
        };
        match self.ops().save_as() {
            SaveAs::PipeEnd { pipe, read } => {
                if let Some((p, _)) = pipe_of(self) {
                    ctx.pipes.entry(pipe).or_insert_with(|| PipeSnapshot {
                        id: pipe,
                        data: p.contents(),
                    });
                }
                let kind = if read {
                    FileStateKind::PipeRead { pipe }
                } else {
                    FileStateKind::PipeWrite { pipe }
                };
                if !is_fifo_end(self) {
                    return Ok(stream(kind));
                }
                // A FIFO's end: its path finds the node again, and its
                // access mode (O_RDWR for both ends) is in `flags`.
                let d = self.dentry().ok_or(SaveError::Unsupported(self.kind()))?;
                return Ok(OpenFileState {
                    path: saved_path(d, ctx)?,
                    ..stream(kind)
                });
            }
            SaveAs::HostStdio(index) => return Ok(stream(FileStateKind::HostStdio { index })),
            SaveAs::Anonymous(kind) => return Ok(stream(kind)),
            SaveAs::Epoll { id } => {
                if let Some(ep) = epoll_arc(self) {
                    ctx.epolls.entry(id).or_insert(ep);
                }
                return Ok(stream(FileStateKind::Epoll { id }));
            }
            SaveAs::Pty { index, master } => {
                if let Some(end) = pty_of(self.ops().as_ref()) {
                    ctx.ptys
                        .entry(index)
                        .or_insert_with(|| end.terminal().snapshot());
                }
                // Its name (/dev/pts/N, /dev/pts/ptmx, /dev/tty) comes back
                // as the restored file's.
                let path = self
                    .dentry()
                    .map(super::vfs::path_bytes)
                    .unwrap_or_default();
                return Ok(OpenFileState {
                    path,
                    flags,
                    offset: 0,
                    kind: FileStateKind::Pty { index, master },
                    fingerprint: None,
                    fasync: FasyncState::default(),
                });
            }
            SaveAs::Socket { id } => {
                if let Ok(sock) = crate::net::socket_of(self) {
                    ctx.sockets.entry(id).or_insert(sock);
                } else if let Some(nl) = crate::net::netlink::netlink_of(self) {
                    ctx.netlink.entry(id).or_insert(nl);
                }
                return Ok(stream(FileStateKind::Socket { id }));
            }
            SaveAs::Refuse(why) => {
                let name = self
                    .dentry()
                    .map(super::vfs::path_of)
                    .unwrap_or_else(|| format!("{:?}", self.kind()));
                return Err(SaveError::NotCheckpointable { file: name, why });
            }
            SaveAs::Path => {}
        }
        let d = self.dentry().ok_or(SaveError::Unsupported(self.kind()))?;
        if d.is_unlinked() && d.file_type() == libc::S_IFREG {
            if let Some((mut fs, ino)) = ctx.orphan_of(self.inode()) {
                if fs == 1 && ctx.memfd_mount == Some(d.mount().id) {
                    fs = MEMFD_TAG;
                }
                // Its node is in the tmpfs table, named nowhere.
                let mut path = super::vfs::path_bytes(d);
                path.truncate(PATH_MAX - 1);
                return Ok(OpenFileState {
                    path,
                    flags,
                    offset: self.offset(),
                    kind: FileStateKind::Unlinked { fs, ino },
                    fingerprint: None,
                    fasync: FasyncState::default(),
                });
            }
        }
        let path = saved_path(d, ctx)?;
        let kind = match (self.kind(), d.file_type()) {
            (_, libc::S_IFDIR) => FileStateKind::Directory,
            (_, libc::S_IFLNK) => FileStateKind::Symlink,
            (_, libc::S_IFCHR) => FileStateKind::Device,
            (FileKind::Synthetic, _) => FileStateKind::Synthetic,
            (_, libc::S_IFREG) => FileStateKind::Regular,
            (k, _) => return Err(SaveError::Unsupported(k)),
        };
        Ok(OpenFileState {
            path,
            flags,
            offset: self.offset(),
            kind,
            fingerprint: d.inode().fingerprint(),
            fasync: FasyncState::default(),
        })
    }
}

/// What re-opened files share: pipes by id, and the new host stdio.
pub struct RestoreCtx {
    pipes: HashMap<u64, (Arc<Pipe>, bool)>,
    stdio: HashMap<u32, Arc<OpenFile>>,
    /// The epoll sets re-created, by id: their items are loaded once
    /// every open file is back ([`RestoreCtx::epolls`]).
    epolls: BTreeMap<u64, Arc<Epoll>>,
    /// The clocks restored timerfds run on.
    clocks: Option<crate::kernel::time::Clocks>,
    /// The sockets re-created (not linked yet), by id, and those given a
    /// file.
    sockets: HashMap<u64, Arc<crate::net::UnixSocket>>,
    socket_files: std::collections::HashSet<u64>,
    /// The inet sockets restored in the stack that a file may claim (each
    /// once).
    inet_sockets: HashMap<u64, Arc<crate::net::inet::InetSocket>>,
    /// The netlink sockets restored, each claimed by its one file.
    netlink: HashMap<u64, Arc<crate::net::netlink::NetlinkSocket>>,
    /// The restored pseudo-terminals, by index.
    ptys: HashMap<u32, Arc<Terminal>>,
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
            epolls: BTreeMap::new(),
            clocks: None,
            sockets: HashMap::new(),
            socket_files: Default::default(),
            inet_sockets: HashMap::new(),
            netlink: HashMap::new(),
            ptys: HashMap::new(),
        }
    }

    /// The terminals the restored kernel's devpts holds again.
    pub fn with_ptys(mut self, ptys: impl IntoIterator<Item = Arc<Terminal>>) -> RestoreCtx {
        self.ptys = ptys.into_iter().map(|t| (t.index(), t)).collect();
        self
    }

    /// The sockets re-created from the statefile, which socket files
    /// are re-opened onto.
    /// The inet sockets put back in the stack, which their files claim.
    pub fn with_inet_sockets(
        mut self,
        sockets: HashMap<u64, Arc<crate::net::inet::InetSocket>>,
    ) -> Self {
        self.inet_sockets = sockets;
        self
    }

    /// The netlink sockets restored, which their files claim.
    pub fn with_netlink(
        mut self,
        sockets: HashMap<u64, Arc<crate::net::netlink::NetlinkSocket>>,
    ) -> Self {
        self.netlink = sockets;
        self
    }

    /// Releases the inet sockets no file claimed.
    pub fn release_unclaimed_inet(&mut self) {
        for (_, s) in self.inet_sockets.drain() {
            s.release();
        }
    }

    pub fn with_sockets(mut self, sockets: HashMap<u64, Arc<crate::net::UnixSocket>>) -> Self {
        self.sockets = sockets;
        self
    }

    /// The clocks of the restored kernel, which timerfds run on.
    pub fn with_clocks(mut self, clocks: crate::kernel::time::Clocks) -> RestoreCtx {
        self.clocks = Some(clocks);
        self
    }

    /// The epoll sets re-created so far, by id.
    pub fn epolls(&self) -> &BTreeMap<u64, Arc<Epoll>> {
        &self.epolls
    }
}

impl Vfs {
    /// What saving this namespace's open files needs to know of it.
    pub fn save_ctx(&self) -> SaveCtx {
        let parts = super::dentry::lock(&self.parts);
        let mut tmpfs = Vec::new();
        for (tag, fs) in [(0u8, &parts.upper), (1u8, &parts.shm)] {
            if let Some(fs) = fs {
                tmpfs.push((tag, fs.shared.clone()));
            }
        }
        drop(parts);
        SaveCtx {
            tmpfs,
            memfd_mount: self.memfd_mount_id(),
            tops: vec![self.root()],
            ..SaveCtx::default()
        }
    }

    /// Lets go of restored files with no name that no open file took (and
    /// of the restore's list of namespaces).
    pub fn release_restored_orphans(&self) {
        let mut parts = super::dentry::lock(&self.parts);
        parts.restored_ns.clear();
        for fs in [&parts.upper, &parts.shm].into_iter().flatten() {
            fs.take_restored_orphans();
        }
    }

    /// A regular tmpfs file with no name, re-opened from its node in the
    /// restored table, under the name it had, marked deleted.
    fn reopen_unlinked(
        &self,
        st: &OpenFileState,
        fs: u8,
        ino: u64,
        status: i32,
    ) -> Result<Arc<OpenFile>, VfsRestoreError> {
        let tmpfs = {
            let parts = super::dentry::lock(&self.parts);
            match fs {
                0 => parts.upper.clone(),
                1 | MEMFD_TAG => parts.shm.clone(),
                _ => None,
            }
        }
        .ok_or_else(|| invalid(format!("unlinked file of unknown tmpfs {fs}")))?;
        let inode = tmpfs
            .restored_orphan(ino)
            .ok_or_else(|| invalid(format!("unlinked file {ino}: no such node with no name")))?;
        if st.flags & libc::O_PATH != 0 {
            return Err(invalid(format!("unlinked file {ino} saved as O_PATH")));
        }
        // Named as it was, under its old directory if that is still there.
        let (dir, name) = match st.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&st.path[..i.max(1)], &st.path[i + 1..]),
            None => (&b"/"[..], &st.path[..]),
        };
        let mut name = if valid_name(name) { name } else { b"deleted" };
        let root = self.root().clone();
        let parent = if fs == MEMFD_TAG {
            // A memfd's name may hold any byte but NUL, '/' included.
            name = match st.path.strip_prefix(b"/") {
                Some(n) if n.starts_with(b"memfd:") && n.len() <= NAME_MAX && !n.contains(&0) => n,
                _ => b"memfd:",
            };
            self.memfd_root()
                .map_err(|errno| VfsRestoreError::Missing {
                    path: "the memfd mount".into(),
                    errno,
                })?
        } else {
            self.resolve(&root, dir, true)
                .ok()
                .filter(|d| d.is_dir())
                .unwrap_or(root)
        };
        let inode: Arc<dyn super::inode::Inode> = inode;
        let d = parent.new_child(name, inode.clone());
        d.mark_unlinked();
        let ops = inode
            .open(status)
            .map_err(|errno| VfsRestoreError::Missing {
                path: String::from_utf8_lossy(&st.path).into_owned(),
                errno,
            })?;
        let file = OpenFile::new(Some(d), inode, ops, status);
        file.set_offset(st.offset);
        Ok(file)
    }

    /// The sandbox namespace's state.
    pub fn save_state(&self) -> Result<VfsState, SaveError> {
        let parts = super::dentry::lock(&self.parts);
        let upper = parts.upper.as_ref().ok_or(SaveError::NotASandbox)?;
        let shm = parts.shm.as_ref().ok_or(SaveError::NotASandbox)?;
        let bundle_tmpfs = parts
            .bundle_tmpfs
            .iter()
            .map(|(_, t)| t.snapshot())
            .collect();
        let at = parts
            .bundle_tmpfs
            .iter()
            .map(|(at, _)| at.clone())
            .collect();
        let (upper, shm) = (upper.snapshot(), shm.snapshot());
        drop(parts);
        let mut mounts = self.save_mount_tree()?;
        mounts.bundle_tmpfs_at = at;
        Ok(VfsState {
            upper,
            shm,
            bundle_tmpfs,
            mounts,
        })
    }

    /// Re-opens a saved open file, checking that a host file is still the
    /// one the checkpoint saw.
    pub fn reopen(
        &self,
        st: &OpenFileState,
        ctx: &mut RestoreCtx,
    ) -> Result<Arc<OpenFile>, VfsRestoreError> {
        let status = st.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        match &st.kind {
            FileStateKind::PipeRead { pipe } | FileStateKind::PipeWrite { pipe } => {
                let (p, _) = ctx
                    .pipes
                    .get(pipe)
                    .ok_or_else(|| invalid(format!("unknown pipe {pipe}")))?;
                let read = matches!(st.kind, FileStateKind::PipeRead { .. });
                if st.path.is_empty() {
                    return Ok(p.open_end(read, status & libc::O_NONBLOCK));
                }
                return self.reopen_fifo(st, &p.clone(), read, status);
            }
            FileStateKind::HostStdio { index } => {
                return ctx
                    .stdio
                    .get(index)
                    .cloned()
                    .ok_or_else(|| invalid(format!("no host stdio {index} given to restore")));
            }
            FileStateKind::EventFd { count, semaphore } => {
                if *count > super::eventfd::EVENTFD_MAX {
                    return Err(invalid(format!("eventfd counter {count}")));
                }
                return Ok(EventFd::open(
                    *count,
                    *semaphore,
                    status & libc::O_NONBLOCK != 0,
                ));
            }
            FileStateKind::TimerFd(r) => {
                r.check()
                    .map_err(|(field, why)| invalid(format!("timerfd {field}: {why}")))?;
                let clocks = ctx
                    .clocks
                    .ok_or_else(|| invalid("a timerfd restored without the kernel's clocks"))?;
                return Ok(TimerFd::restore(r, clocks, status));
            }
            FileStateKind::SignalFd { mask } => {
                return Ok(SignalFd::open(
                    crate::kernel::signal::SigSet(*mask),
                    status & libc::O_NONBLOCK,
                ));
            }
            FileStateKind::Pty { index, master } => {
                let tty = ctx
                    .ptys
                    .get(index)
                    .cloned()
                    .ok_or_else(|| invalid(format!("unknown pty {index}")))?;
                return self.reopen_pty(st, &tty, *master, status);
            }
            FileStateKind::Socket { id } if ctx.netlink.contains_key(id) => {
                let sock = ctx
                    .netlink
                    .remove(id)
                    .ok_or_else(|| invalid(format!("unknown socket {id}")))?;
                return Ok(crate::net::netlink::NetlinkFile::open(
                    sock,
                    status & libc::O_NONBLOCK,
                ));
            }
            FileStateKind::Socket { id } if !ctx.sockets.contains_key(id) => {
                let sock = ctx
                    .inet_sockets
                    .remove(id)
                    .ok_or_else(|| invalid(format!("unknown socket {id}")))?;
                return Ok(crate::net::inet::InetFile::open(
                    sock,
                    status & libc::O_NONBLOCK,
                ));
            }
            FileStateKind::Socket { id } => {
                let sock = ctx
                    .sockets
                    .get(id)
                    .cloned()
                    .ok_or_else(|| invalid(format!("unknown socket {id}")))?;
                if !ctx.socket_files.insert(*id) {
                    return Err(invalid(format!("socket {id} saved as two open files")));
                }
                return Ok(crate::net::SocketFile::open(
                    sock,
                    status & libc::O_NONBLOCK,
                ));
            }
            FileStateKind::Unlinked { fs, ino } => {
                return self.reopen_unlinked(st, *fs, *ino, status);
            }
            FileStateKind::Inotify(r) => {
                let root = self.root().clone();
                return Inotify::restore(r, status, |path| self.resolve(&root, path, false))
                    .map_err(invalid);
            }
            FileStateKind::PidFd(r) => {
                r.check()
                    .map_err(|(field, why)| invalid(format!("pidfd {field}: {why}")))?;
                return Ok(crate::kernel::pidfd::PidFd::restore(r, status));
            }
            FileStateKind::Epoll { id } => {
                if ctx.epolls.contains_key(id) {
                    return Err(invalid(format!("epoll set {id} saved as two open files")));
                }
                let (ep, file) = Epoll::open(Some(*id), status & libc::O_NONBLOCK);
                ctx.epolls.insert(*id, ep);
                return Ok(file);
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
            .map_err(|errno| VfsRestoreError::Missing {
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
            return Err(VfsRestoreError::KindMismatch {
                path,
                expected: kind_name(expected),
                found: kind_name(d.file_type()),
            });
        }
        if let Some(saved) = st.fingerprint {
            match d.inode().fingerprint() {
                Some(_) if saved.crc32.is_none() => {
                    return Err(VfsRestoreError::Changed {
                        path,
                        what: "its content could not be read when it was checkpointed".into(),
                    })
                }
                Some(now) if now == saved => {}
                Some(now) => {
                    return Err(VfsRestoreError::Changed {
                        path,
                        what: format!("was {saved}, now {now}"),
                    })
                }
                // It was copied up since: restored from the upper layer,
                // which does not match a host file any more.
                None => {
                    return Err(VfsRestoreError::Changed {
                        path,
                        what: "no longer the host's file".into(),
                    })
                }
            }
        }
        let file = self
            .finish_open(d, status)
            .map_err(|errno| VfsRestoreError::Missing { path, errno })?;
        file.set_offset(st.offset);
        Ok(file)
    }
}

impl Vfs {
    /// A FIFO's end again: its node found by path and given the restored
    /// pipe, which every saved end of that FIFO shares.
    fn reopen_fifo(
        &self,
        st: &OpenFileState,
        pipe: &Arc<Pipe>,
        read: bool,
        status: i32,
    ) -> Result<Arc<OpenFile>, VfsRestoreError> {
        let path = String::from_utf8_lossy(&st.path).into_owned();
        let acc = st.flags & libc::O_ACCMODE;
        let fits = if read {
            acc == libc::O_RDONLY || acc == libc::O_RDWR
        } else {
            acc == libc::O_WRONLY
        };
        if !fits || st.flags & libc::O_PATH != 0 {
            return Err(invalid(format!(
                "fifo {path:?} saved as a {} end with flags {:#o}",
                if read { "read" } else { "write" },
                st.flags
            )));
        }
        if !st.path.starts_with(b"/") {
            return Err(invalid(format!("relative path {path:?}")));
        }
        let root = self.root().clone();
        let d = self
            .resolve(&root, &st.path, false)
            .map_err(|errno| VfsRestoreError::Missing {
                path: path.clone(),
                errno,
            })?;
        if d.file_type() != libc::S_IFIFO {
            return Err(VfsRestoreError::KindMismatch {
                path,
                expected: kind_name(libc::S_IFIFO),
                found: kind_name(d.file_type()),
            });
        }
        d.inode()
            .attach_fifo(pipe)
            .map_err(|_| invalid(format!("fifo {path:?} holds two saved pipes")))?;
        let ops = pipe.end_ops(acc, true);
        Ok(OpenFile::new(
            Some(d.clone()),
            d.inode().clone(),
            ops,
            status,
        ))
    }

    /// A pty end again, under its saved name: found by path while the
    /// terminal's master is open, else (a hung-up replica) named under
    /// /dev/pts as it was.
    fn reopen_pty(
        &self,
        st: &OpenFileState,
        tty: &Arc<Terminal>,
        master: bool,
        status: i32,
    ) -> Result<Arc<OpenFile>, VfsRestoreError> {
        let path = String::from_utf8_lossy(&st.path).into_owned();
        let root = self.root().clone();
        let found = if st.path.starts_with(b"/") {
            self.resolve(&root, &st.path, false).ok()
        } else {
            None
        };
        let d = match found {
            Some(d) => d,
            None if !master => {
                let pts = self.lookup_dir(&root, b"/dev/pts").map_err(|errno| {
                    VfsRestoreError::Missing {
                        path: "/dev/pts".into(),
                        errno,
                    }
                })?;
                super::pty::replica_dentry(&pts, tty.index())
                    .ok_or_else(|| invalid("/dev/pts is not a devpts"))?
            }
            None => {
                return Err(VfsRestoreError::Missing {
                    path,
                    errno: Errno::ENOENT,
                })
            }
        };
        if d.file_type() != libc::S_IFCHR {
            return Err(VfsRestoreError::KindMismatch {
                path,
                expected: kind_name(libc::S_IFCHR),
                found: kind_name(d.file_type()),
            });
        }
        let ops = tty.reopen_end(master);
        Ok(OpenFile::new(
            Some(d.clone()),
            d.inode().clone(),
            ops,
            status,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::{MappableFile, MmapFile, MF_PAGE_SIZE};
    use crate::vfs::file::Interrupt;
    use crate::vfs::inode::Inode;
    use crate::vfs::testing::{clone_memory, test_memory_file, FixedClock};
    use crate::vfs::vfs::MountOpts;

    const P: u64 = MF_PAGE_SIZE;
    /// The page size as the file-offset arguments of the VFS take it.
    const PI: i64 = MF_PAGE_SIZE as i64;

    fn clock() -> Arc<dyn Clock> {
        Arc::new(FixedClock(3))
    }

    fn new_file(dir: &Arc<TmpfsInode>, name: &[u8]) -> Arc<TmpfsInode> {
        dir.create(name, 0o644).unwrap();
        dir.child(name).unwrap()
    }

    fn new_dir(dir: &Arc<TmpfsInode>, name: &[u8]) -> Arc<TmpfsInode> {
        dir.mkdir(name, 0o755).unwrap();
        dir.child(name).unwrap()
    }

    fn read(f: &TmpfsInode, off: u64, n: usize) -> Vec<u8> {
        let mut buf = vec![0xaa; n];
        let got = f.read_at(off, &mut buf).unwrap();
        buf.truncate(got);
        buf
    }

    fn page_offsets(f: &TmpfsInode) -> Vec<(u64, u64)> {
        match &f.lock().kind {
            Kind::File(d) => d.pages.iter().map(|(i, o)| (*i, *o)).collect(),
            _ => panic!("not a file"),
        }
    }

    /// A punched hole's whole pages go back to the memory file; its
    /// partial pages are zeroed in place.
    #[test]
    fn a_punched_hole_gives_its_pages_back() {
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        let f = new_file(&fs.root(), b"f");
        f.write_at(0, &vec![7u8; 3 * P as usize]).unwrap();
        let before = mf.allocated_bytes();
        f.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            P - 1,
            P + 2,
        )
        .unwrap();
        assert_eq!(mf.allocated_bytes(), before - P, "the middle page is freed");
        assert_eq!(page_offsets(&f).len(), 2);
        assert_eq!(read(&f, P - 2, 2), [7, 0]);
        assert_eq!(read(&f, 2 * P, 2), [0, 7]);
        assert_eq!(f.size(), 3 * P);
        assert_eq!(
            f.fallocate(libc::FALLOC_FL_ZERO_RANGE, 0, 1),
            Err(Errno::EOPNOTSUPP)
        );
    }

    #[test]
    fn file_bytes_live_in_the_memory_file() {
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        let f = new_file(&fs.root(), b"f");
        assert_eq!(mf.allocated_bytes(), 0, "an empty file holds no page");
        assert_eq!(f.write_at(10, b"0123456789").unwrap(), 10);
        assert_eq!(mf.allocated_bytes(), P);
        // The bytes are in the memory file, at the page the map names.
        let [(0, off)] = page_offsets(&f)[..] else {
            panic!("{:?}", page_offsets(&f))
        };
        let mut raw = [0u8; 10];
        mf.read_at(off + 10, &mut raw).unwrap();
        assert_eq!(&raw, b"0123456789");
        // And the memory file's bytes are the file's.
        mf.write_at(off + 12, b"AB").unwrap();
        assert_eq!(read(&f, 10, 10), b"01AB456789");
        assert_eq!(read(&f, 0, 4), [0, 0, 0, 0]);

        // Sparse: a write far out takes only the pages it touches.
        let big = vec![7u8; 3 * P as usize];
        f.write_at((1 << 30) + 100, &big).unwrap();
        assert_eq!(mf.allocated_bytes(), 5 * P);
        assert_eq!(f.stat().unwrap().blocks, 5 * P / 512);
        assert_eq!(read(&f, 1 << 20, 3), [0, 0, 0]);
        assert_eq!(read(&f, (1 << 30) + 99, 3), [0, 7, 7]);

        // Truncate gives pages back and zeroes the tail of the last one, so
        // growing again reads zeros, not the old bytes.
        f.set_size(14).unwrap();
        assert_eq!(mf.allocated_bytes(), P);
        f.set_size(30).unwrap();
        assert_eq!(read(&f, 10, 20), b"01AB\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        f.set_size(0).unwrap();
        assert_eq!(mf.allocated_bytes(), 0);

        // Unlinked but still held: pages stay until the last user goes.
        f.write_at(0, b"still here").unwrap();
        fs.root().unlink(b"f").unwrap();
        assert_eq!(f.stat().unwrap().nlink, 0);
        assert_eq!(read(&f, 0, 10), b"still here");
        assert_eq!(mf.allocated_bytes(), P);
        drop(f);
        assert_eq!(mf.allocated_bytes(), 0);
    }

    #[test]
    fn full_memory_file_writes_what_fits_then_enospc() {
        let mf = Arc::new(MemoryFile::new(4 * P).unwrap());
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        let f = new_file(&fs.root(), b"f");
        f.write_at(0, b"x").unwrap();
        let big = vec![1u8; 5 * P as usize];
        // Linux's generic_perform_write: the pages that fit, a short count.
        assert_eq!(f.write_at(P, &big), Ok(3 * P as usize));
        assert_eq!(f.size(), 4 * P);
        assert_eq!(f.write_at(4 * P, &big), Err(Errno::ENOSPC));
        assert_eq!(f.size(), 4 * P, "a failed write changes nothing");
        assert_eq!(fs.usage().1, 4);
        assert_eq!(mf.allocated_bytes(), 4 * P);
    }

    fn tmpfs_vfs_in(fs: &Arc<Tmpfs>) -> Vfs {
        Vfs::new(
            fs.root(),
            MountOpts {
                fs_type: "tmpfs",
                read_only: false,
            },
        )
    }

    /// A tmpfs over a fresh memory file, seen through a VFS, with `path`
    /// created (mode `mode`) and open read-write.
    fn tmpfs_with_file(
        path: &[u8],
        mode: u32,
    ) -> (
        Arc<MemoryFile>,
        Arc<Tmpfs>,
        Vfs,
        Arc<crate::vfs::Dentry>,
        Arc<OpenFile>,
    ) {
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        let vfs = tmpfs_vfs_in(&fs);
        let r = vfs.root().clone();
        let f = vfs
            .open_at(&r, path, libc::O_CREAT | libc::O_RDWR, mode)
            .unwrap();
        (mf, fs, vfs, r, f)
    }

    fn map_shared(
        mm: &mut crate::mm::MemoryManager,
        m: &Arc<dyn MappableFile>,
        off: u64,
        len: u64,
    ) -> u64 {
        mm.mmap(
            0,
            len,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            libc::MAP_SHARED as u64,
            Some(MmapFile {
                file: m.clone(),
                offset: off,
                writable: true,
            }),
        )
        .unwrap()
    }

    #[test]
    fn shared_mapping_maps_the_file_pages() {
        let (mf, _fs, vfs, r, f) = tmpfs_with_file(b"/m", 0o644);
        let intr = Interrupt::new();
        f.write(b"hello", &intr).unwrap();
        let m = f.as_mappable().unwrap();
        let (mut mm, _pages) = crate::mm::tests::new_mm_with(mf.clone());
        let addr = map_shared(&mut mm, &m, 0, P);
        assert!(mm.vma_at(addr).unwrap().direct);
        assert_eq!(
            mf.allocated_bytes(),
            P,
            "the mapping is the file's page, no copy"
        );
        let mut buf = [0u8; 5];
        mm.copy_in(addr, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // Through the mapping: read(2) sees it at once, no msync.
        mm.copy_out(addr + 1, b"E").unwrap();
        assert_eq!(f.pread(&mut buf, 0, &intr), Ok(5));
        assert_eq!(&buf, b"hEllo");
        // write(2): the mapping sees it at once, without file_written.
        f.pwrite(b"L", 2, &intr).unwrap();
        mm.copy_in(addr, &mut buf).unwrap();
        assert_eq!(&buf, b"hELlo");
        // The write syscall's reflection into copying mappings leaves a
        // direct one alone (the bytes are already there).
        mm.file_written(m.as_ref(), 0, b"XXXXX");
        mm.copy_in(addr, &mut buf).unwrap();
        assert_eq!(&buf, b"hELlo");
        // A second mapping of the same page shares it too.
        let addr2 = map_shared(&mut mm, &m, 0, P);
        mm.copy_out(addr2, b"H").unwrap();
        mm.copy_in(addr, &mut buf).unwrap();
        assert_eq!(&buf, b"HELlo");
        assert_eq!(mf.allocated_bytes(), P);
        mm.munmap(addr2, P).unwrap();
        // Truncated while mapped: the page stays (an orphan) until unmapped.
        vfs.truncate(&r, b"/m", 0).unwrap();
        mm.copy_in(addr, &mut buf).unwrap();
        assert_eq!(&buf, b"HELlo");
        assert_eq!(mf.allocated_bytes(), P);
        mm.munmap(addr, P).unwrap();
        assert_eq!(mf.allocated_bytes(), 0);

        // A sparse file's pages are gathered into one run; bytes move along.
        vfs.truncate(&r, b"/m", 3 * PI).unwrap();
        f.pwrite(b"mid", PI + 7, &intr).unwrap();
        f.pwrite(b"end", 2 * PI, &intr).unwrap();
        assert_eq!(mf.allocated_bytes(), 2 * P);
        let addr = map_shared(&mut mm, &m, 0, 3 * P);
        assert!(mm.vma_at(addr).unwrap().direct);
        assert_eq!(
            mf.allocated_bytes(),
            3 * P,
            "old pages freed, one run of three"
        );
        let mut three = [0u8; 3];
        mm.copy_in(addr + P + 7, &mut three).unwrap();
        assert_eq!(&three, b"mid");
        mm.copy_in(addr + 2 * P, &mut three).unwrap();
        assert_eq!(&three, b"end");
        // A partial munmap unpins only its part; the rest stays coherent.
        // The unpinned page was never touched: the file gives it back.
        mm.munmap(addr, P).unwrap();
        assert_eq!(mf.allocated_bytes(), 2 * P);
        // Past the end of the file: the mapping copies instead.
        let beyond = map_shared(&mut mm, &m, 0, 4 * P);
        assert!(!mm.vma_at(beyond).unwrap().direct);
        assert_eq!(mf.allocated_bytes(), 6 * P);
        // Its page past the end has no file page: SIGBUS at the fault, as
        // long as the file does not reach it.
        let read = platform::Access::Read;
        assert_eq!(mm.handle_fault(beyond + 3 * P + 8, read), Err(Errno::EIO));
        assert_eq!(mm.handle_fault(beyond + 3 * P, read), Err(Errno::EIO));
        // The copying mapping writes back what it may have touched (up to
        // EOF): page 0, a hole it never touched, stays a hole (Linux gives
        // a shared mapping's page at its first fault).
        mm.munmap(beyond, 4 * P).unwrap();
        assert_eq!(mf.allocated_bytes(), 2 * P);
        f.pwrite(b"END", 2 * PI, &intr).unwrap();
        mm.copy_in(addr + 2 * P, &mut three).unwrap();
        assert_eq!(&three, b"END");
        drop(mm);
        assert_eq!(mf.allocated_bytes(), 2 * P, "the file keeps its used pages");
        assert_eq!(f.pread(&mut three, PI + 7, &intr), Ok(3));
        assert_eq!(&three, b"mid");
    }

    #[test]
    fn pinned_pages_are_bounded() {
        let (mf, fs, vfs, r, f) = tmpfs_with_file(b"/big", 0o644);
        fs.set_mapped_limit(4);
        vfs.truncate(&r, b"/big", 8 * PI).unwrap();
        let m = f.as_mappable().unwrap();
        let (mut mm, _pages) = crate::mm::tests::new_mm_with(mf.clone());
        let a = map_shared(&mut mm, &m, 0, 3 * P);
        assert!(mm.vma_at(a).unwrap().direct);
        let b = map_shared(&mut mm, &m, 4 * P, 2 * P);
        assert!(!mm.vma_at(b).unwrap().direct, "over the limit: copied");
        mm.munmap(a, 3 * P).unwrap();
        // Untouched pages went back with the mapping: nothing is left but
        // the copying mapping's own backing.
        assert_eq!(mf.allocated_bytes(), 2 * P);
        let c = map_shared(&mut mm, &m, 4 * P, 4 * P);
        assert!(mm.vma_at(c).unwrap().direct);
    }

    #[test]
    fn direct_mapping_survives_checkpoint() {
        let (mf, fs, vfs, r, f) = tmpfs_with_file(b"/shm", 0o600);
        let intr = Interrupt::new();
        vfs.truncate(&r, b"/shm", 2 * PI).unwrap();
        let m = f.as_mappable().unwrap();
        let (mut mm, _pages) = crate::mm::tests::new_mm_with(mf.clone());
        let addr = map_shared(&mut mm, &m, 0, 2 * P);
        let addr2 = map_shared(&mut mm, &m, P, P);
        mm.copy_out(addr + P + 1, b"shared").unwrap();
        let fs_snap = fs.snapshot();
        let mm_snap = mm.snapshot();
        assert!(mm_snap.vmas.iter().all(|v| v.direct));

        let mf2 = clone_memory(&mf);
        let fs2 = Tmpfs::restore(&fs_snap, clock(), mf2.clone()).unwrap();
        let vfs2 = tmpfs_vfs_in(&fs2);
        let (scratch, _) = crate::mm::tests::new_mm_with(mf2.clone());
        let aspace = scratch.address_space_arc();
        drop(scratch);
        let reopen = |name: &str| -> Result<Arc<dyn MappableFile>, Errno> {
            let root = vfs2.root().clone();
            let file = vfs2.open_at(&root, name.as_bytes(), libc::O_RDWR, 0)?;
            file.as_mappable().ok_or(Errno::ENODEV)
        };
        let mut mm2 = crate::mm::MemoryManager::from_snapshot(
            &mm_snap,
            crate::mm::tests::layout(),
            mf2.clone(),
            aspace,
            &reopen,
        )
        .unwrap();
        assert!(mm2.vma_at(addr).unwrap().direct && mm2.vma_at(addr2).unwrap().direct);
        assert_eq!(mf2.allocated_bytes(), 2 * P, "still one copy of the pages");
        let g = vfs2
            .open_at(&vfs2.root(), b"/shm", libc::O_RDWR, 0)
            .unwrap();
        let mut buf = [0u8; 6];
        assert_eq!(g.pread(&mut buf, PI + 1, &intr), Ok(6));
        assert_eq!(&buf, b"shared");
        mm2.copy_out(addr2 + 1, b"SHARED").unwrap();
        assert_eq!(g.pread(&mut buf, PI + 1, &intr), Ok(6));
        assert_eq!(&buf, b"SHARED");
        mm2.copy_in(addr + P + 1, &mut buf).unwrap();
        assert_eq!(&buf, b"SHARED");
        // The pins were re-taken: the file keeps the pages when truncated.
        vfs2.truncate(&vfs2.root(), b"/shm", 0).unwrap();
        mm2.copy_in(addr2 + 1, &mut buf).unwrap();
        assert_eq!(&buf, b"SHARED");
        drop(mm2);
        assert_eq!(mf2.allocated_bytes(), 0);

        // A direct mapping whose pages the restored file does not hold is
        // refused if they belong to another mapping.
        // The one-page mapping (of file page 1) claims to be file page 0.
        let mut hostile = mm_snap.clone();
        let (one, two) = if hostile.vmas[0].end - hostile.vmas[0].start == P {
            (0, 1)
        } else {
            (1, 0)
        };
        hostile.vmas[one].mf_offset = hostile.vmas[two].mf_offset;
        let mf3 = clone_memory(&mf);
        let fs3 = Tmpfs::restore(&fs_snap, clock(), mf3.clone()).unwrap();
        let vfs3 = tmpfs_vfs_in(&fs3);
        let (scratch, _) = crate::mm::tests::new_mm_with(mf3.clone());
        let aspace = scratch.address_space_arc();
        drop(scratch);
        let reopen3 = |name: &str| -> Result<Arc<dyn MappableFile>, Errno> {
            let root = vfs3.root().clone();
            let file = vfs3.open_at(&root, name.as_bytes(), libc::O_RDWR, 0)?;
            file.as_mappable().ok_or(Errno::ENODEV)
        };
        // Not where the file holds page 1, so not re-pinned; and not the
        // mapping's own to keep either: the other mapping maps it.
        let got = crate::mm::MemoryManager::from_snapshot(
            &hostile,
            crate::mm::tests::layout(),
            mf3.clone(),
            aspace,
            &reopen3,
        );
        match got {
            Err(crate::mm::MmRestoreError::BadVma { why, .. }) => {
                assert_eq!(why, "memory range shared with another mapping")
            }
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a direct mapping onto pages it does not own was accepted"),
        }
        let _ = fs3;
    }

    const DEPTH: usize = 20_000;

    fn encode_decode(snap: &TmpfsSnapshot) -> TmpfsSnapshot {
        let bytes = bincode::serde::encode_to_vec(snap, bincode::config::standard()).unwrap();
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .unwrap()
            .0
    }

    #[test]
    fn seals_and_xattrs_survive_a_round_trip() {
        use crate::vfs::inode::Inode;
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o1777, mf.clone());
        let root = fs.root();
        let plain = new_file(&root, b"plain");
        assert_eq!(plain.seals(), Ok(libc::F_SEAL_SEAL as u32));
        assert_eq!(
            plain.add_seals(libc::F_SEAL_WRITE as u32),
            Err(Errno::EPERM)
        );
        plain.set_xattr(b"user.k", b"value", 0).unwrap();
        plain.set_xattr(b"trusted.t", b"", 0).unwrap();
        assert_eq!(
            plain.set_xattr(b"user.k", b"v", libc::XATTR_CREATE),
            Err(Errno::EEXIST)
        );
        let m = root.new_memfd(0o777, 0).unwrap();
        m.write_at(0, b"0123456789").unwrap();
        let seals = (libc::F_SEAL_GROW | libc::F_SEAL_SHRINK) as u32;
        m.add_seals(seals).unwrap();
        assert_eq!(m.add_seals(0x1000), Err(Errno::EINVAL));
        assert_eq!(m.set_size(5), Err(Errno::EPERM));
        assert_eq!(m.set_size(20), Err(Errno::EPERM));
        // With F_SEAL_GROW a write goes page by page, as Linux copies, and
        // stops at the first page chunk that would end past the size.
        assert_eq!(m.write_at(8, b"abcd"), Err(Errno::EPERM));
        assert_eq!(m.write_at(8, b"ab"), Ok(2));
        assert_eq!(m.write_at(10, b"x"), Err(Errno::EPERM));
        assert_eq!(m.write_at(10, b""), Ok(0));
        let ino = m.ino;

        let snap = encode_decode(&fs.snapshot());
        let rec = snap.nodes.iter().find(|n| n.ino == ino).unwrap();
        assert_eq!(
            (rec.nlink, rec.seals),
            (0, seals),
            "an orphan with its seals"
        );
        let back = Tmpfs::restore(&snap, clock(), clone_memory(&mf)).unwrap();
        let m2 = back.restored_orphan(ino).unwrap();
        assert_eq!(m2.seals(), Ok(seals));
        assert_eq!(read(&m2, 0, 10), b"01234567ab");
        assert_eq!(m2.set_size(1), Err(Errno::EPERM));
        m2.add_seals(libc::F_SEAL_WRITE as u32).unwrap();
        assert_eq!(m2.write_at(0, b"y"), Err(Errno::EPERM));
        let p2 = back.root().child(b"plain").unwrap();
        assert_eq!(p2.seals(), Ok(libc::F_SEAL_SEAL as u32));
        assert_eq!(p2.get_xattr(b"user.k"), Ok(b"value".to_vec()));
        assert_eq!(
            p2.list_xattr(),
            Ok(vec![b"trusted.t".to_vec(), b"user.k".to_vec()])
        );
        assert_eq!(p2.get_xattr(b"user.none"), Err(Errno::ENODATA));

        // A hostile attribute name is refused, naming the field.
        let mut bad = snap.clone();
        let p = bad.nodes.iter().position(|n| !n.xattrs.is_empty()).unwrap();
        bad.nodes[p].xattrs[0].name = b"nonamespace".to_vec();
        let err = Tmpfs::restore(&bad, clock(), clone_memory(&mf))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains(&format!("nodes[{p}].xattrs[0].name")),
            "{err}"
        );
        // Unknown seal bits in a statefile are refused, naming the field.
        let mut bad = snap.clone();
        let i = bad.nodes.iter().position(|n| n.ino == ino).unwrap();
        bad.nodes[i].seals = 0x4000;
        let err = Tmpfs::restore(&bad, clock(), clone_memory(&mf))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains(&format!("nodes[{i}].seals")),
            "{err}"
        );
    }

    /// An open file of a statefile from before pidfds (`vfs.OpenFile` v2
    /// nesting `vfs.FileKind` v6) loads as today's, its kind and signal
    /// owner kept.
    #[test]
    fn open_files_with_file_kind_v6_migrate() {
        struct Old(OpenFileStateV6);
        impl statefile::Savable for Old {
            const TYPE_NAME: &'static str = "vfs.OpenFile";
            const VERSION: u32 = 2;
            fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
                enc.serde(&self.0)
            }
            fn load(_: &mut statefile::Decoder<'_>, _: u32) -> statefile::Result<Self> {
                unreachable!("only saved")
            }
            fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
                statefile::register_versioned::<OpenFileStateV6>(types)
            }
        }
        let old = OpenFileStateV6 {
            path: Vec::new(),
            flags: libc::O_RDWR | libc::O_NONBLOCK,
            offset: 0,
            kind: FileStateKindV6::EventFd {
                count: 3,
                semaphore: true,
            },
            fingerprint: None,
            fasync: FasyncState {
                signo: libc::SIGUSR1,
                ..FasyncState::default()
            },
        };
        let bytes = statefile::to_bytes(&Old(old.clone())).unwrap();
        let now: OpenFileState = statefile::from_bytes(&bytes).unwrap();
        assert_eq!(
            now.kind,
            FileStateKind::EventFd {
                count: 3,
                semaphore: true
            }
        );
        assert_eq!((now.flags, now.fasync), (old.flags, old.fasync));
        // And today's layout, with the new kind, round-trips.
        let pidfd = OpenFileState {
            kind: FileStateKind::PidFd(PidFdRecord {
                pid: 7,
                reaped: false,
            }),
            ..now
        };
        let back: OpenFileState =
            statefile::from_bytes(&statefile::to_bytes(&pidfd).unwrap()).unwrap();
        assert_eq!(back, pidfd);
    }

    #[test]
    fn v2_tmpfs_nodes_migrate_with_the_seal_every_tmpfs_file_had() {
        let v2 = VfsStateV1 {
            upper: TmpfsSnapshotV2 {
                next_ino: 3,
                root: 1,
                nodes: vec![TmpfsNodeRecordV2 {
                    ino: 1,
                    nlink: 0,
                    mode: libc::S_IFDIR | 0o755,
                    uid: 0,
                    gid: 0,
                    atime: Timespec { sec: 1, nsec: 0 },
                    mtime: Timespec { sec: 1, nsec: 0 },
                    ctime: Timespec { sec: 1, nsec: 0 },
                    kind: TmpfsNodeKind::Dir {
                        entries: Vec::new(),
                        whiteouts: Vec::new(),
                        opaque: false,
                    },
                }],
            },
            shm: TmpfsSnapshotV2 {
                next_ino: 2,
                root: 1,
                nodes: Vec::new(),
            },
        };
        let now = VfsState::from_v1(v2.upper.clone().into(), v2.shm.clone().into());
        assert!(now.bundle_tmpfs.is_empty() && !now.mounts.recorded);
        assert_eq!(now.upper.nodes[0].seals, libc::F_SEAL_SEAL as u32);
        assert_eq!(now.upper.nodes[0].ino, 1);
        assert_eq!(now.upper.next_ino, 3);
    }

    fn limited_fs(mf: &Arc<MemoryFile>, blocks: u64, inodes: u64) -> Arc<Tmpfs> {
        Tmpfs::with_limits(
            clock(),
            0o1777,
            mf.clone(),
            TmpfsLimits {
                max_blocks: Some(blocks),
                max_inodes: Some(inodes),
            },
        )
    }

    #[test]
    fn limits_survive_a_restore_and_usage_is_counted_again() {
        let mf = test_memory_file();
        let fs = limited_fs(&mf, 3, 4);
        let root = fs.root();
        let f = new_file(&root, b"full");
        assert_eq!(
            f.write_at(0, &vec![9u8; 4 * P as usize]),
            Ok(3 * P as usize)
        );
        root.add_link(b"again", &f).unwrap();
        new_dir(&root, b"d");
        // root, full, its second name, d: no inode left.
        assert_eq!(fs.usage(), (fs.usage().0, 3, 4));
        drop(f);
        let snap = encode_decode(&fs.snapshot());
        assert_eq!((snap.max_blocks, snap.max_inodes), (Some(3), Some(4)));

        let back = Tmpfs::restore(&snap, clock(), clone_memory(&mf)).unwrap();
        back.take_restored_orphans();
        assert_eq!(back.usage(), (fs.usage().0, 3, 4));
        let r = back.root();
        let f = r.child(b"full").unwrap();
        // A full tmpfs stays full after restore...
        assert_eq!(f.write_at(3 * P, b"x"), Err(Errno::ENOSPC));
        assert_eq!(r.create(b"x", 0o644).err(), Some(Errno::ENOSPC));
        // ...and deleting frees.
        r.unlink(b"again").unwrap();
        r.unlink(b"full").unwrap();
        assert_eq!(f.write_at(3 * P, b"x"), Err(Errno::ENOSPC));
        drop(f);
        assert_eq!(back.usage().1, 0);
        assert!(r.create(b"x", 0o644).is_ok());

        // Hostile: limits below what the table holds are refused, naming
        // the field (usage is counted, never read from the record).
        for (blocks, inodes, field) in [
            (Some(2), Some(4), "max_blocks"),
            (Some(3), Some(3), "max_inodes"),
        ] {
            let mut bad = snap.clone();
            bad.max_blocks = blocks;
            bad.max_inodes = inodes;
            let err = Tmpfs::restore(&bad, clock(), clone_memory(&mf))
                .err()
                .unwrap();
            assert!(err.to_string().contains(field), "{err}");
        }
        // 0 is no limit.
        let mut open = snap.clone();
        open.max_blocks = Some(0);
        open.max_inodes = Some(0);
        let fs0 = Tmpfs::restore(&open, clock(), clone_memory(&mf)).unwrap();
        assert_eq!(fs0.usage().0, TmpfsLimits::UNLIMITED);
    }

    #[test]
    fn memfds_are_not_bound_by_the_limits_of_the_tmpfs_holding_them() {
        let mf = test_memory_file();
        let fs = limited_fs(&mf, 2, 2);
        let root = fs.root();
        let m = root.new_memfd(0o666, 0).unwrap();
        let m2 = root.new_memfd(0o666, 0).unwrap();
        assert_eq!(
            m.write_at(0, &vec![5u8; 4 * P as usize]),
            Ok(4 * P as usize)
        );
        assert_eq!(fs.usage().1, 0, "a memfd's pages are not the file system's");
        new_file(&root, b"named").write_at(0, b"x").unwrap();
        // A statefile whose nameless files hold more than the limits is
        // restored, not refused.
        let snap = encode_decode(&fs.snapshot());
        let back = Tmpfs::restore(&snap, clock(), clone_memory(&mf)).unwrap();
        assert!(back.restored_orphan(m.ino).is_some());
        drop((m, m2));
    }

    #[test]
    fn a_table_from_before_limits_gets_the_default_grown_to_fit() {
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        new_file(&fs.root(), b"f").write_at(0, b"x").unwrap();
        let s = fs.snapshot();
        let old = TmpfsSnapshotV2N3 {
            next_ino: s.next_ino,
            root: s.root,
            nodes: s.nodes.clone(),
        };
        let migrated: TmpfsSnapshot = old.into();
        assert_eq!((migrated.max_blocks, migrated.max_inodes), (None, None));
        let back = Tmpfs::restore(&migrated, clock(), clone_memory(&mf)).unwrap();
        let mem = super::super::tmpfs::sandbox_memory_bytes(&mf);
        assert_eq!(back.usage().0, TmpfsLimits::default_for(mem));
        assert_eq!((back.usage().1, back.usage().2), (1, 2));
        // A default smaller than what an old table holds grows to it
        // rather than refusing a statefile that was valid when written.
        let mut tiny = migrated.clone();
        tiny.max_blocks = None;
        let l = snapshot_limits(&tiny, 2 * P);
        assert_eq!(l.max_blocks, Some(1));
        assert_eq!(l.max_inodes, Some(1));
    }

    #[test]
    fn round_trip_keeps_hard_links_and_a_deep_chain() {
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        let root = fs.root();
        let a = new_dir(&root, b"a");
        let shared = new_file(&a, b"file");
        shared.write_at(0, b"shared bytes").unwrap();
        root.add_link(b"b", &shared).unwrap();
        assert_eq!(shared.stat().unwrap().nlink, 2);
        root.symlink(b"s", b"a/file").unwrap();
        a.add_whiteout(b"gone").unwrap();
        let mut cur = root.clone();
        for _ in 0..DEPTH {
            cur = new_dir(&cur, b"d");
        }
        new_file(&cur, b"bottom").write_at(5000, b"deep").unwrap();
        drop(cur);

        let snap = fs.snapshot();
        // root, a, a/file (also b), s, the chain, bottom.
        assert_eq!(snap.nodes.len(), 4 + DEPTH + 1);
        let shared_rec = snap.nodes.iter().find(|n| n.ino == shared.ino).unwrap();
        assert_eq!(shared_rec.nlink, 2);
        let decoded = encode_decode(&snap);
        assert_eq!(decoded, snap);

        // A restore: the memory file is loaded first, then tmpfs re-attached.
        let mf2 = clone_memory(&mf);
        let before = mf2.allocated_bytes();
        let fs2 = Tmpfs::restore(&decoded, clock(), mf2.clone()).unwrap();
        let root2 = fs2.root();
        let a2 = root2.child(b"a").unwrap();
        let f2 = a2.child(b"file").unwrap();
        let b2 = root2.child(b"b").unwrap();
        assert!(Arc::ptr_eq(&f2, &b2), "a hard link stays one inode");
        assert_eq!(f2.stat().unwrap().nlink, 2);
        assert_eq!(f2.ino, shared.ino);
        b2.write_at(0, b"SHARED").unwrap();
        assert_eq!(read(&f2, 0, 12), b"SHARED bytes");
        assert_eq!(
            read(&shared, 0, 12),
            b"shared bytes",
            "the original is untouched"
        );
        assert_eq!(root2.readlink().err(), Some(Errno::EINVAL));
        assert_eq!(root2.child(b"s").unwrap().readlink().unwrap(), b"a/file");
        assert!(a2.has_whiteout(b"gone"));
        let mut cur = root2.clone();
        for _ in 0..DEPTH {
            cur = cur.child(b"d").expect("chain level");
        }
        let bottom = cur.child(b"bottom").unwrap();
        assert_eq!(read(&bottom, 4998, 10), b"\0\0deep");
        assert_eq!(bottom.size(), 5004);
        // A new inode does not reuse a restored number.
        let fresh = new_file(&root2, b"new");
        assert!(fresh.ino > snap.nodes.iter().map(|n| n.ino).max().unwrap());
        // The restored files own their pages: dropping the tree (without
        // recursion, 20,000 levels deep) gives every one of them back.
        assert_eq!(mf2.allocated_bytes(), before);
        drop((root2, a2, f2, b2, cur, bottom, fresh));
        drop(fs2);
        assert_eq!(mf2.allocated_bytes(), 0);
    }

    /// A valid table to break: root, dir "d", file "d/f" with one page,
    /// file "g" with one page, in a memory file that holds those pages.
    fn base() -> (TmpfsSnapshot, Arc<MemoryFile>) {
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        let d = new_dir(&fs.root(), b"d");
        new_file(&d, b"f").write_at(0, b"f").unwrap();
        new_file(&fs.root(), b"g").write_at(0, b"g").unwrap();
        let snap = fs.snapshot();
        let copy = clone_memory(&mf);
        (snap, copy)
    }

    fn node_index(s: &TmpfsSnapshot, pred: impl Fn(&TmpfsNodeRecord) -> bool) -> usize {
        s.nodes.iter().position(pred).unwrap()
    }

    fn file_index(s: &TmpfsSnapshot, size: u64) -> Vec<usize> {
        s.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, TmpfsNodeKind::File { size: sz, .. } if sz == size))
            .map(|(i, _)| i)
            .collect()
    }

    fn pages_mut(n: &mut TmpfsNodeRecord) -> &mut Vec<TmpfsPage> {
        match &mut n.kind {
            TmpfsNodeKind::File { pages, .. } => pages,
            _ => panic!("not a file"),
        }
    }

    fn entries_mut(n: &mut TmpfsNodeRecord) -> &mut Vec<TmpfsDirEntry> {
        match &mut n.kind {
            TmpfsNodeKind::Dir { entries, .. } => entries,
            _ => panic!("not a dir"),
        }
    }

    /// Restores a mutated `base()`; returns the refused field and reason.
    fn refused(f: impl Fn(&mut TmpfsSnapshot)) -> (String, String) {
        let (mut s, mf) = base();
        f(&mut s);
        let s = encode_decode(&s);
        match Tmpfs::restore(&s, clock(), mf.clone()) {
            Err(VfsRestoreError::Tmpfs { field, why }) => (field, why),
            Err(e) => panic!("refused with a non-tmpfs error {e}"),
            Ok(_) => panic!("hostile table accepted"),
        }
    }

    /// A FIFO's node is an empty file: one holding bytes is refused, an
    /// empty one restores as a FIFO.
    #[test]
    fn fifo_nodes_are_empty_files() {
        let (field, why) = refused(|s| {
            let i = file_index(s, 1)[0];
            s.nodes[i].mode = libc::S_IFIFO | 0o600;
        });
        assert!(field.ends_with(".mode"), "{field}");
        assert!(why.contains("does not fit"), "{why}");
        let mf = test_memory_file();
        let fs = Tmpfs::with_memory(clock(), 0o755, mf.clone());
        fs.root().mknod(b"p", libc::S_IFIFO | 0o640).unwrap();
        let back = Tmpfs::restore(&encode_decode(&fs.snapshot()), clock(), clone_memory(&mf))
            .expect("an empty FIFO node restores");
        let p = back.root().lookup(b"p").unwrap();
        assert_eq!(p.file_type(), libc::S_IFIFO);
        assert_eq!(p.stat().unwrap().mode, libc::S_IFIFO | 0o640);
    }

    #[test]
    fn the_base_table_is_accepted() {
        let (s, mf) = base();
        let before = mf.allocated_bytes();
        let fs = Tmpfs::restore(&s, clock(), mf.clone()).unwrap();
        let f = fs.root().child(b"d").unwrap().child(b"f").unwrap();
        assert_eq!(read(&f, 0, 1), b"f");
        drop(f);
        drop(fs);
        assert_eq!(mf.allocated_bytes(), before - 2 * P);
    }

    #[test]
    fn hostile_tables_are_refused_naming_the_field() {
        // A cycle out of the root's reach: two directories naming each other.
        let (field, why) = refused(|s| {
            let d = node_index(s, |n| {
                n.mode & libc::S_IFMT == libc::S_IFDIR && n.ino != s.root
            });
            let root = node_index(s, |n| n.ino == s.root);
            entries_mut(&mut s.nodes[root]).retain(|e| e.name != b"d");
            let (e, ino) = (s.nodes[d].ino, 900);
            s.nodes.push(TmpfsNodeRecord {
                ino,
                kind: TmpfsNodeKind::Dir {
                    entries: vec![TmpfsDirEntry {
                        name: b"back".to_vec(),
                        ino: e,
                    }],
                    whiteouts: vec![],
                    opaque: false,
                },
                ..s.nodes[d].clone()
            });
            entries_mut(&mut s.nodes[d]).push(TmpfsDirEntry {
                name: b"loop".to_vec(),
                ino,
            });
        });
        assert!(field.starts_with("nodes["), "{field}");
        assert!(why.contains("not reachable"), "{why}");
        // A cycle through the root: a directory naming the root.
        let (field, why) = refused(|s| {
            let d = node_index(s, |n| {
                n.mode & libc::S_IFMT == libc::S_IFDIR && n.ino != s.root
            });
            let root_ino = s.root;
            entries_mut(&mut s.nodes[d]).push(TmpfsDirEntry {
                name: b"up".to_vec(),
                ino: root_ino,
            });
        });
        assert_eq!(field, "nodes[0].nlink", "{why}");
        // A directory named twice (a hard-linked directory).
        let (field, _) = refused(|s| {
            let d = node_index(s, |n| {
                n.mode & libc::S_IFMT == libc::S_IFDIR && n.ino != s.root
            });
            let ino = s.nodes[d].ino;
            s.nodes[d].nlink = 2;
            entries_mut(&mut s.nodes[0]).push(TmpfsDirEntry {
                name: b"again".to_vec(),
                ino,
            });
        });
        assert!(field.ends_with(".nlink"), "{field}");
        // A missing child.
        let (field, why) = refused(|s| {
            entries_mut(&mut s.nodes[0]).push(TmpfsDirEntry {
                name: b"ghost".to_vec(),
                ino: 4242,
            });
        });
        assert!(
            field.starts_with("nodes[0].entries[") && field.ends_with("].ino"),
            "{field}"
        );
        assert!(why.contains("4242"), "{why}");
        // A file named twice with a link count of one.
        let (field, _) = refused(|s| {
            let g = s.nodes[0].kind.clone();
            let TmpfsNodeKind::Dir { entries, .. } = g else {
                panic!()
            };
            let ino = entries.iter().find(|e| e.name == b"g").unwrap().ino;
            entries_mut(&mut s.nodes[0]).push(TmpfsDirEntry {
                name: b"h".to_vec(),
                ino,
            });
        });
        assert!(field.ends_with(".nlink"), "{field}");
        // A page outside the restored memory.
        let (field, why) = refused(|s| {
            let i = file_index(s, 1)[0];
            pages_mut(&mut s.nodes[i])[0].offset = 1 << 31;
        });
        assert!(
            field.starts_with("nodes[") && field.ends_with("].pages[0].offset"),
            "{field}"
        );
        assert!(why.contains("not inside the restored memory"), "{why}");
        // An unaligned page.
        let (field, why) = refused(|s| {
            let i = file_index(s, 1)[0];
            pages_mut(&mut s.nodes[i])[0].offset += 1;
        });
        assert!(field.ends_with("].pages[0].offset"), "{field}");
        assert!(why.contains("page-aligned"), "{why}");
        // One page used by two files.
        let (field, why) = refused(|s| {
            let files = file_index(s, 1);
            let off = pages_mut(&mut s.nodes[files[0]])[0].offset;
            pages_mut(&mut s.nodes[files[1]])[0].offset = off;
        });
        assert!(field.ends_with("].pages[0].offset"), "{field}");
        assert!(why.contains("used twice"), "{why}");
        // One page used twice by one file.
        let (field, why) = refused(|s| {
            let i = file_index(s, 1)[0];
            s.nodes[i].kind = TmpfsNodeKind::File {
                size: 2 * P,
                pages: vec![pages_mut(&mut s.nodes[i])[0]; 2],
            };
            if let TmpfsNodeKind::File { pages, .. } = &mut s.nodes[i].kind {
                pages[1].index = 1;
            }
        });
        assert!(field.ends_with("].pages[1].offset"), "{field}");
        assert!(why.contains("used twice"), "{why}");
        // A page past the end of its file.
        let (field, _) = refused(|s| {
            let i = file_index(s, 1)[0];
            pages_mut(&mut s.nodes[i])[0].index = 1;
        });
        assert!(field.ends_with("].pages[0].index"), "{field}");
        // Names: a slash, a NUL, one byte over NAME_MAX, a dot.
        for bad in [
            b"a/b".to_vec(),
            b"a\0b".to_vec(),
            vec![b'n'; NAME_MAX + 1],
            b"..".to_vec(),
        ] {
            let (field, _) = refused(|s| entries_mut(&mut s.nodes[0])[0].name = bad.clone());
            assert_eq!(field, "nodes[0].entries[0].name");
        }
        // A symlink target of PATH_MAX bytes.
        let (field, _) = refused(|s| {
            s.nodes.push(TmpfsNodeRecord {
                ino: 777,
                nlink: 1,
                mode: libc::S_IFLNK | 0o777,
                kind: TmpfsNodeKind::Symlink {
                    target: vec![b'x'; PATH_MAX],
                },
                ..s.nodes[0].clone()
            });
            entries_mut(&mut s.nodes[0]).push(TmpfsDirEntry {
                name: b"l".to_vec(),
                ino: 777,
            });
        });
        assert_eq!(field, "nodes[4].target");
        // Duplicate inode numbers, a missing root, a root that is a file.
        let (field, _) = refused(|s| {
            let n = s.nodes.len();
            s.nodes[n - 1].ino = s.nodes[0].ino;
        });
        assert!(field.ends_with(".ino"), "{field}");
        let (field, _) = refused(|s| s.root = 31337);
        assert_eq!(field, "root");
        let (field, _) = refused(|s| {
            let i = file_index(s, 1)[0];
            s.root = s.nodes[i].ino;
        });
        assert_eq!(field, "root");
        // A mode that does not fit the node.
        let (field, _) = refused(|s| s.nodes[0].mode = libc::S_IFREG | 0o755);
        assert_eq!(field, "nodes[0].mode");
    }

    #[test]
    fn an_open_file_deeper_than_path_max_refuses_the_checkpoint() {
        let fs = Tmpfs::with_memory(clock(), 0o755, test_memory_file());
        let vfs = tmpfs_vfs_in(&fs);
        let mut cur = vfs.root().clone();
        for _ in 0..2100 {
            vfs.mkdir_at(&cur, b"d", 0o755).unwrap();
            cur = vfs.lookup_dir(&cur, b"d").unwrap();
        }
        let shallow = vfs
            .open_at(&vfs.root(), b"d/d", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        let deep = vfs
            .open_at(&cur, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        let mut ctx = SaveCtx::default();
        assert!(shallow.save(&mut ctx).is_ok());
        match deep.save(&mut ctx) {
            Err(SaveError::PathTooLong { len, .. }) => assert_eq!(len, 2 * 2100),
            other => panic!("{other:?}"),
        }
    }

    /// A hostile statefile's deep chain decodes and validates without
    /// recursion: 5,000 levels are fine, and the same chain closed into a
    /// cycle is refused.
    #[test]
    fn a_deep_hostile_chain_decodes_and_is_judged() {
        let chain = |cycle: bool| {
            let (mut s, mf) = base();
            let template = s.nodes[0].clone();
            let first = 10_000u64;
            let depth = 5_000u64;
            for k in 0..depth {
                let ino = first + k;
                let child = if k + 1 < depth {
                    vec![TmpfsDirEntry {
                        name: b"d".to_vec(),
                        ino: ino + 1,
                    }]
                } else if cycle {
                    vec![TmpfsDirEntry {
                        name: b"d".to_vec(),
                        ino: first,
                    }]
                } else {
                    vec![]
                };
                s.nodes.push(TmpfsNodeRecord {
                    ino,
                    nlink: 1,
                    kind: TmpfsNodeKind::Dir {
                        entries: child,
                        whiteouts: vec![],
                        opaque: false,
                    },
                    ..template.clone()
                });
            }
            if !cycle {
                entries_mut(&mut s.nodes[0]).push(TmpfsDirEntry {
                    name: b"chain".to_vec(),
                    ino: first,
                });
            }
            (encode_decode(&s), mf)
        };
        let (ok, mf) = chain(false);
        let fs = Tmpfs::restore(&ok, clock(), mf.clone()).unwrap();
        let mut cur = fs.root().child(b"chain").unwrap();
        for _ in 1..5_000 {
            cur = cur.child(b"d").unwrap();
        }
        assert!(cur.child(b"d").is_none());
        drop((cur, fs));
        let (bad, mf) = chain(true);
        match Tmpfs::restore(&bad, clock(), mf) {
            Err(VfsRestoreError::Tmpfs { field, why }) => {
                assert!(field.starts_with("nodes["), "{field}");
                assert!(why.contains("not reachable"), "{why}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}

#[cfg(test)]
mod file_kind_tests {
    use std::any::Any;

    use super::*;
    use crate::vfs::file::FileOps;
    use crate::vfs::pipe::new_pipe;

    /// A file kind that declares it cannot be checkpointed.
    struct Unsavable;

    impl FileOps for Unsavable {
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn kind(&self) -> FileKind {
            FileKind::CharDevice
        }
        fn save_as(&self) -> SaveAs {
            SaveAs::Refuse("a test device keeps no saved form")
        }
    }

    #[test]
    fn a_file_kind_that_cannot_be_checkpointed_is_refused_with_its_reason() {
        let (read, _write) = new_pipe(0, Timespec::default());
        let file = OpenFile::new(
            None,
            read.inode().clone(),
            Arc::new(Unsavable),
            libc::O_RDWR,
        );
        let err = file.save(&mut SaveCtx::default()).unwrap_err();
        assert_eq!(
            err,
            SaveError::NotCheckpointable {
                file: "CharDevice".into(),
                why: "a test device keeps no saved form"
            }
        );
        assert!(err.to_string().contains("cannot be checkpointed"), "{err}");
    }

    #[test]
    fn pipe_ends_save_their_pipe_once() {
        let (read, write) = new_pipe(0, Timespec::default());
        let mut ctx = SaveCtx::default();
        let r = read.save(&mut ctx).unwrap();
        let w = write.save(&mut ctx).unwrap();
        let (FileStateKind::PipeRead { pipe: a }, FileStateKind::PipeWrite { pipe: b }) =
            (r.kind, w.kind)
        else {
            panic!("pipe ends saved as something else");
        };
        assert_eq!(a, b);
        assert_eq!(ctx.pipes.len(), 1);
    }
}
