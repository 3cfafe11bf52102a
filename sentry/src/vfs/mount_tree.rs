//! The mount tree of the calling task's mount namespace and what
//! mount(2), umount2(2) and pivot_root(2) do to it (Linux's
//! fs/namespace.c, gVisor's vfs/mount.go).
//!
//! A mount is a [`Mount`] plus the root dentry of its own dentry tree; it
//! hangs on the dentry it covers (`Dentry::mounted`/`mountpoint`). A bind
//! mount is a second dentry tree over the same inodes, its `Mount` marked
//! aliased so that both trees revalidate what they cached.

use std::sync::{Arc, Weak};

use super::dentry::{lock, Dentry, Mount, MOUNT_FLAG_MASK};
use super::inode::Inode;
use super::tmpfs::{Tmpfs, TmpfsLimits};
use super::vfs::{anon_dev, Vfs};
use crate::errno::Errno;

/// What a mount serves, for /proc/mounts and for checkpointing it.
#[derive(Clone)]
pub enum MountKind {
    /// Made when the sandbox booted (the root, /dev, /proc, a bundle's
    /// mounts) at `origin`: re-made by the restore's own boot, and found
    /// there by that path.
    Boot { origin: Vec<u8> },
    /// A tmpfs mount(2) made; its contents are saved.
    Tmpfs(Arc<Tmpfs>),
    /// A procfs mount(2) made.
    Proc,
    /// A sysfs mount(2) made.
    Sysfs,
    /// A bind mount of `source` (a dentry of another mount's tree, held
    /// weakly: a bind does not keep the mount it came from busy). `base`
    /// and `within` say where that file lies as of the bind, for when
    /// `source` is gone (its mount detached): a restore finds it there.
    Bind {
        source: Weak<Dentry>,
        base: BindBase,
        within: Vec<u8>,
    },
}

/// The mount a bind mount's file lies on, never a bind mount itself: a
/// bind of a bind is a bind of the same base further down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindBase {
    /// The mount boot put at `origin`.
    Boot { origin: Vec<u8> },
    /// A tmpfs, procfs or sysfs mount(2) made: the mount's id.
    Made { id: u64 },
}

#[derive(Clone)]
pub struct MountEntry {
    pub mount: Arc<Mount>,
    pub root: Arc<Dentry>,
    pub kind: MountKind,
}

impl MountEntry {
    pub(crate) fn boot(mount: Arc<Mount>, root: Arc<Dentry>, origin: Vec<u8>) -> MountEntry {
        MountEntry {
            mount,
            root,
            kind: MountKind::Boot { origin },
        }
    }

    /// Where boot put it, for one of boot's mounts.
    pub(crate) fn origin(&self) -> Option<&[u8]> {
        match &self.kind {
            MountKind::Boot { origin } => Some(origin),
            _ => None,
        }
    }
}

/// `rel` (absolute) below `prefix` (absolute): `/a` and `/b` give `/a/b`.
pub(crate) fn join_below(prefix: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if out.ends_with(b"/") {
        out.pop();
    }
    if rel != b"/" {
        out.extend_from_slice(rel);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The path of `d` below the root of its mount's own dentry tree (not
/// crossing mounts).
pub(crate) fn bind_root_path(d: &Arc<Dentry>) -> Vec<u8> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut cur = d.clone();
    for _ in 0..super::resolve::PATH_MAX {
        match cur.parent() {
            Some(p) => {
                names.push(cur.name());
                cur = p;
            }
            None => break,
        }
    }
    join_reversed(&names)
}

/// An absolute path from names collected leaf first (`/` for none).
fn join_reversed(names: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(n);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Whether `d` is `top` or below it, crossing mount points upwards.
pub(crate) fn is_under(d: &Arc<Dentry>, top: &Arc<Dentry>) -> bool {
    let mut cur = d.clone();
    for _ in 0..super::resolve::PATH_MAX {
        if Arc::ptr_eq(&cur, top) {
            return true;
        }
        cur = match cur.parent().or_else(|| cur.mountpoint()) {
            Some(p) => p,
            None => return false,
        };
    }
    false
}

/// Whether `d` is on a mount detached by umount2(MNT_DETACH) (its path
/// names nothing a restore could find): the top its names lead to is none
/// of `tops`, the saved namespaces' (after a pivot_root(2), boot's root
/// may be the detached one).
pub(crate) fn on_detached_mount(d: &Arc<Dentry>, tops: &[Arc<Dentry>]) -> bool {
    let cur = super::mount_ns_state::top_of(d);
    !tops.iter().any(|t| Arc::ptr_eq(&cur, t)) && !cur.is_unlinked() && !d.is_unlinked()
}

/// The root of the mount `d` is on (its own dentry tree's top).
pub(crate) fn mount_root_of(d: &Arc<Dentry>) -> Arc<Dentry> {
    let mut cur = d.clone();
    for _ in 0..super::resolve::PATH_MAX {
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    cur
}

/// How many mounts `root` (a mount's root) hangs below: 0 for the top or
/// a detached mount.
pub(crate) fn mount_depth(root: &Arc<Dentry>) -> usize {
    let mut n = 0;
    let mut cur = root.clone();
    while let Some(mp) = cur.mountpoint() {
        n += 1;
        if n >= super::resolve::PATH_MAX {
            break;
        }
        cur = mount_root_of(&mp);
    }
    n
}

/// The path of `d` as a process whose root is `root` sees it; None when
/// `d` is not below that root.
pub(crate) fn path_in_root(d: &Arc<Dentry>, root: &Arc<Dentry>) -> Option<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut cur = d.clone();
    for _ in 0..super::resolve::PATH_MAX {
        if Arc::ptr_eq(&cur, root) {
            return Some(join_reversed(&names));
        }
        if let Some(p) = cur.parent() {
            names.push(cur.name());
            cur = p;
        } else {
            cur = cur.mountpoint()?;
        }
    }
    None
}

/// The entry of a new bind mount of `source` with id `id`.
pub(crate) fn bind_entry(
    source: &Arc<Dentry>,
    id: u64,
    flags: u64,
    base: BindBase,
    within: Vec<u8>,
) -> MountEntry {
    let mount = Arc::new(source.mount().bind(id, flags));
    let root = Dentry::new_root(source.inode().clone(), mount.clone());
    MountEntry {
        mount,
        root,
        kind: MountKind::Bind {
            source: Arc::downgrade(source),
            base,
            within,
        },
    }
}

/// Flags of umount2(2).
pub const MNT_FORCE: i32 = 1;
pub const MNT_DETACH: i32 = 2;
pub const MNT_EXPIRE: i32 = 4;
pub const UMOUNT_NOFOLLOW: i32 = 8;

/// How a new mount's file system is made (mount(2)'s fstype and data).
pub enum NewFs {
    Tmpfs {
        mode: u32,
        uid: u32,
        gid: u32,
        limits: TmpfsLimits,
    },
    Proc,
    Sysfs,
}

impl Vfs {
    /// Hangs `entry` on `at` (the topmost dentry there: a mount on a
    /// mount point stacks on it).
    pub(crate) fn attach(&self, at: &Arc<Dentry>, entry: MountEntry) -> Result<(), Errno> {
        // A directory on a directory, or a file on a file (a container's
        // bind mount of one host file).
        // Linux's graft_tree: ENOTDIR either way.
        if at.is_dir() != entry.root.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if at.is_unlinked() {
            return Err(Errno::ENOENT);
        }
        at.set_mounted(&entry.root);
        lock(&self.ns().mounts).push(entry);
        Ok(())
    }

    /// The entry whose root is `d`, if `d` is a mount's root.
    pub(crate) fn entry_of(&self, d: &Arc<Dentry>) -> Option<MountEntry> {
        lock(&self.ns().mounts)
            .iter()
            .find(|e| Arc::ptr_eq(&e.root, d))
            .cloned()
    }

    /// The entry of the mount `d` is on (None for a detached one).
    pub(crate) fn entry_of_mount(&self, d: &Arc<Dentry>) -> Option<MountEntry> {
        lock(&self.ns().mounts)
            .iter()
            .find(|e| Arc::ptr_eq(&e.mount, d.mount()))
            .cloned()
    }

    /// mount(2) of a new file system on `at`.
    pub fn mount_new(&self, at: &Arc<Dentry>, fs: NewFs, flags: u64) -> Result<(), Errno> {
        let parts = lock(&self.parts);
        let ctx = parts.mount_ctx.as_ref().ok_or(Errno::ENODEV)?;
        let (inode, kind, fs_type): (Arc<dyn Inode>, _, _) = match fs {
            NewFs::Tmpfs {
                mode,
                uid,
                gid,
                limits,
            } => {
                let t = Tmpfs::with_limits(ctx.clock.clone(), mode, ctx.mf.clone(), limits);
                let root = t.root();
                root.chown(Some(uid), Some(gid))?;
                (root, MountKind::Tmpfs(t), "tmpfs")
            }
            NewFs::Proc => (
                super::procfs::new_procfs(ctx.procs.clone(), String::new()),
                MountKind::Proc,
                "proc",
            ),
            NewFs::Sysfs => (
                super::sysfs::new_sysfs(ctx.procs.cpus() as u32),
                MountKind::Sysfs,
                "sysfs",
            ),
        };
        drop(parts);
        let id = self.new_mount_id();
        let mount = Arc::new(Mount::new(id, fs_type, flags, anon_dev(id)));
        let root = Dentry::new_root(inode, mount.clone());
        self.attach(at, MountEntry { mount, root, kind })
    }

    /// mount(2) with MS_BIND: `source`'s file (or directory) also at
    /// `at`; with `rec`, the mounts below `source` too (MS_REC).
    pub fn bind_mount(
        &self,
        source: &Arc<Dentry>,
        at: &Arc<Dentry>,
        rec: bool,
        flags: u64,
    ) -> Result<(), Errno> {
        if self.entry_of_mount(source).is_none() {
            // A detached mount's files cannot be bound (Linux's
            // check_mnt: EINVAL).
            return Err(Errno::EINVAL);
        }
        if at.is_dir() != source.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        // The mounts to copy with MS_REC, found before attaching: a bind
        // onto a directory below its source must not copy itself.
        let below: Vec<MountEntry> = if rec {
            lock(&self.ns().mounts)
                .iter()
                .filter(|e| {
                    e.root
                        .mountpoint()
                        .is_some_and(|mp| is_under(&mp, source) && !Arc::ptr_eq(&e.root, source))
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let root = self.bind_one(source, at, flags)?;
        // Each copied mount goes where its mount point is in the copy, in
        // the order they were made (so a parent is there before its child).
        for e in below {
            let Some(mp) = e.root.mountpoint() else {
                continue;
            };
            let Some(rel) = path_in_root(&mp, source) else {
                continue;
            };
            let rel = rel.strip_prefix(b"/").unwrap_or(&rel).to_vec();
            let target = if rel.is_empty() {
                root.clone()
            } else {
                match self.resolve(&root, &rel, false) {
                    Ok(d) => d,
                    Err(_) => continue,
                }
            };
            self.bind_one(&e.root, &target, e.mount.flags())?;
        }
        Ok(())
    }

    fn bind_one(
        &self,
        source: &Arc<Dentry>,
        at: &Arc<Dentry>,
        flags: u64,
    ) -> Result<Arc<Dentry>, Errno> {
        let (base, within) = self.bind_base(source).ok_or(Errno::EINVAL)?;
        let id = self.new_mount_id();
        let entry = bind_entry(source, id, flags, base, within);
        let root = entry.root.clone();
        self.attach(at, entry)?;
        Ok(root)
    }

    /// Where `source` lies: the base mount (not a bind) and the path below
    /// its root. None when `source` is on no mount of the tree.
    pub(crate) fn bind_base(&self, source: &Arc<Dentry>) -> Option<(BindBase, Vec<u8>)> {
        let e = self.entry_of_mount(source)?;
        let rel = bind_root_path(source);
        Some(match &e.kind {
            MountKind::Boot { origin } => (
                BindBase::Boot {
                    origin: origin.clone(),
                },
                rel,
            ),
            MountKind::Tmpfs(_) | MountKind::Proc | MountKind::Sysfs => {
                (BindBase::Made { id: e.mount.id }, rel)
            }
            // A file of a bind mount lies that far below the bind's own
            // place in its base (as of the bind: no recursion).
            MountKind::Bind { base, within, .. } => (base.clone(), join_below(within, &rel)),
        })
    }

    /// A bind mount's base and path now: from its source if that is still
    /// on a mount of the tree (a rename since the bind shows), else as of
    /// the bind.
    pub(crate) fn bind_origin(&self, e: &MountEntry) -> (BindBase, Vec<u8>) {
        let MountKind::Bind {
            source,
            base,
            within,
        } = &e.kind
        else {
            return (BindBase::Made { id: e.mount.id }, b"/".to_vec());
        };
        source
            .upgrade()
            .and_then(|src| self.bind_base(&src))
            .unwrap_or_else(|| (base.clone(), within.clone()))
    }

    /// MS_REMOUNT: the mount whose root is `target` gets `flags`.
    pub fn remount(&self, target: &Arc<Dentry>, flags: u64) -> Result<(), Errno> {
        let e = self.entry_of(target).ok_or(Errno::EINVAL)?;
        e.mount.set_flags(flags & MOUNT_FLAG_MASK);
        Ok(())
    }

    /// MS_MOVE: the mount whose root is `source` moves onto `at`.
    pub fn move_mount(&self, source: &Arc<Dentry>, at: &Arc<Dentry>) -> Result<(), Errno> {
        let old_mp = source.mountpoint().ok_or(Errno::EINVAL)?;
        if self.entry_of(source).is_none() {
            return Err(Errno::EINVAL);
        }
        // Not below itself (Linux: ELOOP).
        if is_under(at, source) {
            return Err(Errno::ELOOP);
        }
        if at.is_dir() != source.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        // What was stacked on the moved mount stays with it.
        old_mp.take_mounted();
        source.clear_mountpoint();
        at.set_mounted(source);
        Ok(())
    }

    /// umount2(2) of the mount whose root is `target`. `pinned` says
    /// whether a dentry is some task's root or cwd (which makes it busy).
    pub fn umount(
        &self,
        target: &Arc<Dentry>,
        flags: i32,
        pinned: &dyn Fn(&Arc<Dentry>) -> bool,
    ) -> Result<(), Errno> {
        let e = self.entry_of(target).ok_or(Errno::EINVAL)?;
        let Some(mp) = target.mountpoint() else {
            // The namespace's root mount.
            return Err(Errno::EINVAL);
        };
        let detach = flags & MNT_DETACH != 0;
        let below: Vec<MountEntry> = lock(&self.ns().mounts)
            .iter()
            .filter(|x| {
                !Arc::ptr_eq(&x.root, target)
                    && x.root.mountpoint().is_some_and(|m| is_under(&m, target))
            })
            .cloned()
            .collect();
        if !detach && (!below.is_empty() || self.busy(&e, pinned)) {
            return Err(Errno::EBUSY);
        }
        // Whatever was stacked on this mount now hangs where it did.
        let above = target.take_mounted();
        mp.take_mounted();
        target.clear_mountpoint();
        if let Some(above) = above {
            mp.set_mounted(&above);
        }
        let ns = self.ns();
        let mut unmounted = lock(&ns.unmounted_boot);
        for x in std::iter::once(&e).chain(&below) {
            unmounted.extend(x.origin().map(<[u8]>::to_vec));
        }
        let ns = self.ns();
        let mut mounts = lock(&ns.mounts);
        mounts.retain(|x| {
            !Arc::ptr_eq(&x.root, target) && !below.iter().any(|b| Arc::ptr_eq(&b.root, &x.root))
        });
        Ok(())
    }

    /// Whether anything outside the mount's own dentry cache holds one of
    /// its dentries: an open file, a cwd or root, an unlinked file still
    /// open (Linux's propagate_mount_busy on mnt_count).
    fn busy(&self, e: &MountEntry, pinned: &dyn Fn(&Arc<Dentry>) -> bool) -> bool {
        let mut seen = 0usize;
        let mut stack = vec![e.root.clone()];
        while let Some(d) = stack.pop() {
            seen += 1;
            if pinned(&d) {
                return true;
            }
            // The root: held by the table, the covered dentry, `e`, the
            // caller's `target` and `d`; a child: by its parent's cache
            // and `d`.
            let expected = if Arc::ptr_eq(&d, &e.root) { 5 } else { 2 };
            if Arc::strong_count(&d) > expected {
                return true;
            }
            stack.extend(d.cached_children());
        }
        // Dentries of this mount not in its cache (unlinked, still open).
        // The entry's, our clone's and one per cached dentry.
        Arc::strong_count(&e.mount) > seen + 2
    }

    /// pivot_root(2): `new_root` (a mount's root, below `task_root`)
    /// becomes the root; the old root mount moves to `put_old` (at or
    /// below `new_root`). Returns the old root for the caller to move
    /// every task's root and cwd from it (chroot_fs_refs).
    pub fn pivot_root(
        &self,
        task_root: &Arc<Dentry>,
        new_root: &Arc<Dentry>,
        put_old: &Arc<Dentry>,
    ) -> Result<(), Errno> {
        if !new_root.is_dir() || !put_old.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        // Linux's order: ENOENT, EBUSY, then EINVAL. cryo's top mount has
        // no parent, which Linux would refuse (EINVAL): here it pivots.
        if put_old.is_unlinked() || new_root.is_unlinked() {
            return Err(Errno::ENOENT);
        }
        // new_root and put_old must not be on the current root's mount.
        if Arc::ptr_eq(new_root.mount(), task_root.mount())
            || Arc::ptr_eq(put_old.mount(), task_root.mount())
        {
            return Err(Errno::EBUSY);
        }
        if self.entry_of(task_root).is_none() || self.entry_of(new_root).is_none() {
            return Err(Errno::EINVAL);
        }
        let new_mp = new_root.mountpoint().ok_or(Errno::EINVAL)?;
        if !is_under(put_old, new_root) || !is_under(new_root, task_root) {
            return Err(Errno::EINVAL);
        }
        // new_root leaves its mount point; it takes the old root's place.
        new_mp.take_mounted();
        new_root.clear_mountpoint();
        match task_root.mountpoint() {
            Some(mp) => {
                mp.take_mounted();
                mp.set_mounted(new_root);
            }
            None => self.set_root(new_root.clone()),
        }
        task_root.clear_mountpoint();
        // put_old may be new_root itself (pivot_root(".", ".")): the old
        // root then stacks on the new one.
        let mut at = put_old.clone();
        while let Some(r) = at.mounted() {
            at = r;
        }
        at.set_mounted(task_root);
        // Keep the list in an order where a parent comes first.
        let ns = self.ns();
        let mut mounts = lock(&ns.mounts);
        if let Some(i) = mounts.iter().position(|x| Arc::ptr_eq(&x.root, new_root)) {
            let e = mounts.remove(i);
            mounts.insert(0, e);
        }
        Ok(())
    }

    /// The attached mounts a process whose root is `root` sees, in the
    /// order they were made: (entry, mount point path, parent mount id).
    fn visible(&self, root: &Arc<Dentry>) -> Vec<(MountEntry, Vec<u8>, u64)> {
        let mounts = lock(&self.ns().mounts).clone();
        let mut out = Vec::new();
        for e in mounts {
            let Some(path) = path_in_root(&e.root, root) else {
                continue;
            };
            let parent = e
                .root
                .mountpoint()
                .map(|mp| mp.mount().id)
                .unwrap_or(e.mount.id);
            out.push((e, path, parent));
        }
        out
    }

    /// /proc/mounts for a process whose root is `root`.
    pub fn mounts_text(&self, root: &Arc<Dentry>) -> String {
        let mut s = String::new();
        for (e, path, _) in self.visible(root) {
            s.push_str(&format!(
                "none {} {} {} 0 0\n",
                escape(&path),
                shown_type(&e),
                mount_opts(e.mount.flags())
            ));
        }
        s
    }

    /// /proc/<pid>/mountinfo for a process whose root is `root`.
    pub fn mountinfo_text(&self, root: &Arc<Dentry>) -> String {
        let mut s = String::new();
        for (e, path, parent) in self.visible(root) {
            let dev = e.mount.dev;
            s.push_str(&format!(
                "{} {} {}:{} {} {} {} - {} none {}\n",
                e.mount.id,
                parent,
                dev_major(dev),
                dev_minor(dev),
                escape(&self.fs_root(&e)),
                escape(&path),
                mount_opts(e.mount.flags()),
                e.mount.fs_type,
                if e.mount.read_only() { "ro" } else { "rw" },
            ));
        }
        s
    }

    /// mountinfo's fourth field: the path of the mount's root in its file
    /// system ("/" except for a bind mount of a subdirectory).
    fn fs_root(&self, e: &MountEntry) -> Vec<u8> {
        match &e.kind {
            MountKind::Bind { .. } => self.bind_origin(e).1,
            _ => b"/".to_vec(),
        }
    }

    /// Every mount's root (the ones boot made included), for checkpoint.
    pub(crate) fn mount_entries(&self) -> Vec<MountEntry> {
        lock(&self.ns().mounts).clone()
    }
}

/// The type /proc/mounts shows: a bind mount shows its file system's.
fn shown_type(e: &MountEntry) -> &'static str {
    e.mount.fs_type
}

/// /proc/mounts' per-mount options.
fn mount_opts(flags: u64) -> String {
    let mut s = String::from(if flags & libc::MS_RDONLY != 0 {
        "ro"
    } else {
        "rw"
    });
    for (bit, name) in [
        (libc::MS_NOSUID, "nosuid"),
        (libc::MS_NODEV, "nodev"),
        (libc::MS_NOEXEC, "noexec"),
        (libc::MS_NOATIME, "noatime"),
        (libc::MS_NODIRATIME, "nodiratime"),
    ] {
        if flags & bit != 0 {
            s.push(',');
            s.push_str(name);
        }
    }
    s
}

/// Linux's mangle(): space, tab, newline and backslash as octal escapes.
fn escape(path: &[u8]) -> String {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The major and minor numbers of a device made by `makedev`.
fn dev_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn dev_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}
