//! The mount tree's checkpoint: what `vfs.MountTree` records of it, the
//! judging of a saved record, and the restore that brings boot's tree to
//! the saved one (pivot_root(2)'s new top included).

use std::sync::Arc;

use super::dentry::{lock, Dentry, Mount, MOUNT_FLAG_MASK};
use super::inode::Inode;
use super::mount_tree::{bind_entry, mount_depth, BindBase, MountEntry, MountKind, MNT_DETACH};
use super::state::{
    BindBaseRecord, BootMountRecord, MountPlace, MountRecord, MountRecordKind, MountRootRecord,
    MountTreeRecord, SaveError, TmpfsSnapshot, VfsRestoreError,
};
use super::tmpfs::Tmpfs;
use super::vfs::{anon_dev, Vfs};
use crate::errno::Errno;

/// Whether `path` is an absolute, plain path a record may hold: no `.`,
/// `..` or empty names, no NUL, shorter than PATH_MAX.
fn plain_path(path: &[u8]) -> Result<(), String> {
    if !path.starts_with(b"/") {
        return Err("not absolute".into());
    }
    if path.len() >= super::resolve::PATH_MAX {
        return Err(format!("{} bytes, PATH_MAX or more", path.len()));
    }
    if path.contains(&0) {
        return Err("holds a NUL byte".into());
    }
    if path.len() > 1
        && path[1..]
            .split(|&b| b == b'/')
            .any(|n| n.is_empty() || n == b"." || n == b".." || n.len() > super::resolve::NAME_MAX)
    {
        return Err("holds an empty, `.`, `..` or over-long name".into());
    }
    Ok(())
}

/// Judges a saved mount tree before anything is built from it, naming the
/// refused field (`made[2].path`).
pub fn check_mount_tree(r: &MountTreeRecord) -> Result<(), (String, String)> {
    let mut ids = std::collections::HashSet::new();
    for (i, b) in r.boot.iter().enumerate() {
        plain_path(&b.path).map_err(|w| (format!("boot[{i}].path"), w))?;
        plain_path(&b.origin).map_err(|w| (format!("boot[{i}].origin"), w))?;
        if b.flags & !MOUNT_FLAG_MASK != 0 {
            return Err((format!("boot[{i}].flags"), format!("{:#x}", b.flags)));
        }
        if b.id == 0 || !ids.insert(b.id) {
            return Err((
                format!("boot[{i}].id"),
                format!("{} zero or used twice", b.id),
            ));
        }
    }
    for (i, p) in r.unmounted.iter().enumerate() {
        plain_path(p).map_err(|w| (format!("unmounted[{i}]"), w))?;
    }
    for (i, p) in r.bundle_tmpfs_at.iter().enumerate() {
        plain_path(p).map_err(|w| (format!("bundle_tmpfs_at[{i}]"), w))?;
    }
    let is_bind = |m: &MountRecord| {
        matches!(
            m.kind,
            MountRecordKind::Bind { .. } | MountRecordKind::BindIn { .. }
        )
    };
    for (i, m) in r.made.iter().enumerate() {
        plain_path(&m.path).map_err(|w| (format!("made[{i}].path"), w))?;
        if m.flags & !MOUNT_FLAG_MASK != 0 {
            return Err((format!("made[{i}].flags"), format!("{:#x}", m.flags)));
        }
        if m.id == 0 || m.id > u64::from(u32::MAX) || !ids.insert(m.id) {
            return Err((
                format!("made[{i}].id"),
                format!("{} zero, too large or used twice", m.id),
            ));
        }
        match &m.kind {
            MountRecordKind::Bind { source } => {
                plain_path(source).map_err(|w| (format!("made[{i}].source"), w))?;
            }
            MountRecordKind::BindIn { base, within } => {
                plain_path(within).map_err(|w| (format!("made[{i}].within"), w))?;
                match base {
                    BindBaseRecord::Boot { origin } => {
                        plain_path(origin).map_err(|w| (format!("made[{i}].base"), w))?;
                    }
                    BindBaseRecord::Made { index } => {
                        let b = r.made.get(*index as usize).filter(|b| !is_bind(b));
                        if b.is_none() {
                            return Err((
                                format!("made[{i}].base"),
                                format!("made[{index}] is no tmpfs, proc or sysfs mount"),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    check_root_and_places(r)
}

/// The top must be a mount of the record at "/", and `places` must name
/// every made mount but the top once (boot's at most once).
fn check_root_and_places(r: &MountTreeRecord) -> Result<(), (String, String)> {
    let top = match r.root {
        MountRootRecord::BootRoot => None,
        MountRootRecord::Boot(i) => {
            let b = r
                .boot
                .get(i as usize)
                .ok_or_else(|| ("root".to_string(), format!("boot[{i}]: no such boot mount")))?;
            if b.path != b"/" {
                return Err(("root".into(), format!("boot[{i}] is not at /")));
            }
            Some(MountPlace::Boot(i))
        }
        MountRootRecord::Made(i) => {
            let m = r
                .made
                .get(i as usize)
                .ok_or_else(|| ("root".to_string(), format!("made[{i}]: no such mount")))?;
            if m.path != b"/" || matches!(m.kind, MountRecordKind::Bind { .. }) {
                return Err((
                    "root".into(),
                    format!("made[{i}] is not at / or is a v1 bind mount"),
                ));
            }
            Some(MountPlace::Made(i))
        }
    };
    let mut boot_seen = vec![false; r.boot.len()];
    let mut made_seen = vec![false; r.made.len()];
    for (k, p) in r.places.iter().enumerate() {
        let (seen, i) = match *p {
            MountPlace::Boot(i) => (boot_seen.get_mut(i as usize), i),
            MountPlace::Made(i) => (made_seen.get_mut(i as usize), i),
        };
        let Some(seen) = seen else {
            return Err((format!("places[{k}]"), format!("no mount {i}")));
        };
        if *seen || Some(*p) == top {
            return Err((
                format!("places[{k}]"),
                "the top or a mount placed twice".into(),
            ));
        }
        *seen = true;
    }
    if let Some(i) =
        (0..r.made.len()).find(|&i| !made_seen[i] && Some(MountPlace::Made(i as u32)) != top)
    {
        return Err(("places".into(), format!("made[{i}] is placed nowhere")));
    }
    Ok(())
}

impl Vfs {
    /// The mount tree's saved form: which mount is the top, boot's mounts
    /// as they are now and the ones made since, each by path, with the
    /// order a restore puts them in (a parent before its children).
    pub(crate) fn save_mount_tree(&self) -> Result<MountTreeRecord, SaveError> {
        let top = self.root();
        let path = |d: &Arc<Dentry>, what: &str| -> Result<Vec<u8>, SaveError> {
            if !super::mount_tree::is_under(d, &top) {
                return Err(SaveError::MountTree(format!(
                    "{what} is not reachable from the root"
                )));
            }
            let p = super::vfs::path_bytes(d);
            plain_path(&p).map_err(|w| {
                SaveError::MountTree(format!("{what} {:?}: {w}", String::from_utf8_lossy(&p)))
            })?;
            Ok(p)
        };
        let entries = self.mount_entries();
        let top_entry = entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.root, &top))
            .ok_or_else(|| SaveError::MountTree("the root is on no mount of the tree".into()))?;
        // Each entry's index in `boot` or `made`.
        let mut index = Vec::with_capacity(entries.len());
        let (mut boot_n, mut made_n) = (0u32, 0u32);
        for e in &entries {
            if e.origin().is_some() {
                index.push(MountPlace::Boot(boot_n));
                boot_n += 1;
            } else {
                index.push(MountPlace::Made(made_n));
                made_n += 1;
            }
        }
        let made_index = |id: u64| {
            entries.iter().zip(&index).find_map(|(e, p)| match p {
                MountPlace::Made(i) if e.mount.id == id => Some(*i),
                _ => None,
            })
        };
        let mut r = MountTreeRecord {
            boot: Vec::new(),
            made: Vec::new(),
            recorded: true,
            unmounted: lock(&self.ns().unmounted_boot).clone(),
            bundle_tmpfs_at: Vec::new(),
            by_origin: true,
            root: match (index[top_entry], entries[top_entry].origin()) {
                (MountPlace::Boot(_), Some(b"/")) => MountRootRecord::BootRoot,
                (MountPlace::Boot(i), _) => MountRootRecord::Boot(i),
                (MountPlace::Made(i), _) => MountRootRecord::Made(i),
            },
            places: Vec::new(),
        };
        for e in &entries {
            let at = path(&e.root, &format!("mount {}", e.mount.id))?;
            let flags = e.mount.flags();
            let kind = match &e.kind {
                MountKind::Boot { origin } => {
                    r.boot.push(BootMountRecord {
                        id: e.mount.id,
                        origin: origin.clone(),
                        path: at,
                        flags,
                    });
                    continue;
                }
                MountKind::Tmpfs(t) => MountRecordKind::Tmpfs(t.snapshot()),
                MountKind::Proc => MountRecordKind::Proc,
                MountKind::Sysfs => MountRecordKind::Sysfs,
                MountKind::Bind { .. } => {
                    let (base, within) = self.bind_origin(e);
                    let base = match base {
                        BindBase::Boot { origin } => BindBaseRecord::Boot { origin },
                        BindBase::Made { id } => BindBaseRecord::Made {
                            index: made_index(id).ok_or_else(|| {
                                SaveError::MountTree(format!(
                                    "the source of bind mount {} is on mount {id}, which is no longer mounted",
                                    e.mount.id
                                ))
                            })?,
                        },
                    };
                    plain_path(&within).map_err(|w| {
                        SaveError::MountTree(format!(
                            "the source of bind mount {}: {w}",
                            e.mount.id
                        ))
                    })?;
                    MountRecordKind::BindIn { base, within }
                }
            };
            r.made.push(MountRecord {
                id: e.mount.id,
                path: at,
                flags,
                kind,
            });
        }
        // Parents first: a mount hangs below fewer mounts than any mount
        // below it; mounts as deep keep the order they were made in.
        let mut order: Vec<usize> = (0..entries.len()).filter(|&k| k != top_entry).collect();
        order.sort_by_key(|&k| mount_depth(&entries[k].root));
        r.places = order.into_iter().map(|k| index[k]).collect();
        Ok(r)
    }

    /// Brings boot's tree (just built) to the saved one: boot's mounts
    /// unmounted as saved, the saved top put at the top (boot's root then
    /// going where pivot_root(2) put it, or nowhere), then every other
    /// mount put at its path in `places`' order, the made ones made again
    /// with their ids. `tmpfs` restores a saved tmpfs.
    pub(crate) fn restore_mount_tree(
        &self,
        r: &MountTreeRecord,
        tmpfs: &dyn Fn(&TmpfsSnapshot) -> Result<Arc<Tmpfs>, VfsRestoreError>,
    ) -> Result<(), VfsRestoreError> {
        if !r.recorded {
            return Ok(());
        }
        check_mount_tree(r).map_err(|(field, why)| bad(field, why))?;
        let boot = self.mount_entries();
        let pivoted = r.root != MountRootRecord::BootRoot;
        let matched = if r.by_origin {
            self.unmount_as_saved(r, &boot, pivoted)?
        } else {
            self.unmount_by_id(r, &boot)?
        };
        for (b, e) in r.boot.iter().zip(&matched) {
            e.mount.set_flags(b.flags);
        }
        // A new bundle with more mounts than the saved one may have given
        // a made mount's id to one of boot's: the made one takes a new id
        // (two mounts with one id would share a device number).
        let mut highest = boot
            .iter()
            .map(|e| e.mount.id)
            .chain(r.made.iter().map(|m| m.id))
            .max()
            .unwrap_or(1);
        let boot_ids: Vec<u64> = self.mount_entries().iter().map(|e| e.mount.id).collect();
        let ids: Vec<u64> = r
            .made
            .iter()
            .map(|m| {
                if boot_ids.contains(&m.id) {
                    highest += 1;
                    highest
                } else {
                    m.id
                }
            })
            .collect();
        let mut made = MadeMounts {
            vfs: self,
            r,
            boot: &boot,
            ids: &ids,
            tmpfs,
            entries: vec![None; r.made.len()],
        };
        let top = match r.root {
            MountRootRecord::BootRoot => self.root(),
            MountRootRecord::Boot(i) => self.pivot_to(matched[i as usize].clone(), &boot[0], r)?,
            MountRootRecord::Made(i) => {
                let e = made.entry(i as usize)?;
                lock(&self.ns().mounts).push(e.clone());
                self.pivot_to(e, &boot[0], r)?
            }
        };
        for (k, p) in r.places.iter().enumerate() {
            match *p {
                MountPlace::Boot(i) => {
                    let (b, e) = (&r.boot[i as usize], &matched[i as usize]);
                    // Boot's root before it is put anywhere has no mount
                    // point, and "/" for a path.
                    let unplaced = !Arc::ptr_eq(&e.root, &top) && e.root.mountpoint().is_none();
                    if unplaced || super::vfs::path_bytes(&e.root) != b.path {
                        let at = self
                            .mount_point(&top, &b.path)
                            .map_err(|errno| bad(format!("boot[{i}].path"), errno.to_string()))?;
                        self.place(e, &at)
                            .map_err(|errno| bad(format!("places[{k}]"), errno.to_string()))?;
                    }
                }
                MountPlace::Made(i) => {
                    let m = &r.made[i as usize];
                    let at = self
                        .mount_point(&top, &m.path)
                        .map_err(|errno| bad(format!("made[{i}].path"), errno.to_string()))?;
                    let e = made.entry(i as usize)?;
                    self.attach(&at, e)
                        .map_err(|errno| bad(format!("made[{i}].path"), errno.to_string()))?;
                }
            }
        }
        // mountinfo lists mounts in the order they were made: the top,
        // boot's, then the made ones as saved.
        let rank = |e: &MountEntry| {
            if Arc::ptr_eq(&e.root, &top) {
                (0, 0)
            } else if e.origin().is_some() {
                (1, 0)
            } else {
                (
                    2,
                    ids.iter()
                        .position(|&id| id == e.mount.id)
                        .unwrap_or(usize::MAX),
                )
            }
        };
        lock(&self.ns().mounts).sort_by_key(rank);
        let next = &self.next_mount;
        next.fetch_max(highest + 1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Makes `new_top` (not yet anywhere, or one of boot's mounts) the
    /// top of the tree, as pivot_root(2) left it. Boot's root (`old`) is
    /// put back at its saved path by `places` if the record has it; if
    /// the application had detached it, it and boot's mounts below it
    /// that the record does not keep leave the tree.
    fn pivot_to(
        &self,
        new_top: MountEntry,
        old: &MountEntry,
        r: &MountTreeRecord,
    ) -> Result<Arc<Dentry>, VfsRestoreError> {
        if let Some(mp) = new_top.root.mountpoint() {
            mp.take_mounted();
            new_top.root.clear_mountpoint();
        }
        let kept: Vec<&[u8]> = r.boot.iter().map(|b| &b.origin[..]).collect();
        if !kept.contains(&&b"/"[..]) {
            let gone: Vec<MountEntry> = self
                .mount_entries()
                .into_iter()
                .filter(|e| {
                    !Arc::ptr_eq(&e.root, &new_top.root)
                        && super::mount_tree::is_under(&e.root, &old.root)
                        && !e.origin().is_some_and(|o| o != b"/" && kept.contains(&o))
                })
                .collect();
            lock(&self.ns().unmounted_boot)
                .extend(gone.iter().filter_map(|e| e.origin().map(<[u8]>::to_vec)));
            lock(&self.ns().mounts).retain(|e| !gone.iter().any(|g| Arc::ptr_eq(&g.root, &e.root)));
        }
        self.set_root(new_top.root.clone());
        let ns = self.ns();
        let mut mounts = lock(&ns.mounts);
        if let Some(i) = mounts
            .iter()
            .position(|x| Arc::ptr_eq(&x.root, &new_top.root))
        {
            let e = mounts.remove(i);
            mounts.insert(0, e);
        }
        Ok(new_top.root)
    }

    /// Hangs the mount `e` on `at`, from wherever it hung (MS_MOVE; boot's
    /// root after a pivot hangs nowhere yet).
    fn place(&self, e: &MountEntry, at: &Arc<Dentry>) -> Result<(), Errno> {
        if super::mount_tree::is_under(at, &e.root) {
            return Err(Errno::ELOOP);
        }
        if at.is_dir() != e.root.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if let Some(mp) = e.root.mountpoint() {
            mp.take_mounted();
            e.root.clear_mountpoint();
        }
        at.set_mounted(&e.root);
        Ok(())
    }

    /// Unmounts the boot mounts the application had unmounted, found by
    /// where boot put them (one the new bundle lacks is simply not
    /// there), and pairs each saved boot mount with the new boot's mount
    /// at its origin. Boot mounts of the new bundle the record does not
    /// name stay: the new container's config asks for them. Boot's root
    /// is unmounted only in a pivoted tree, by [`Vfs::pivot_to`].
    fn unmount_as_saved(
        &self,
        r: &MountTreeRecord,
        boot: &[MountEntry],
        pivoted: bool,
    ) -> Result<Vec<MountEntry>, VfsRestoreError> {
        let mounted = |e: &&MountEntry| self.entry_of(&e.root).is_some();
        for (i, o) in r.unmounted.iter().enumerate().rev() {
            // umount2(2) takes the topmost of mounts stacked at one place;
            // one already gone went with a mount above it (MNT_DETACH).
            let Some(e) = boot
                .iter()
                .rev()
                .filter(mounted)
                .find(|e| e.origin() == Some(o))
            else {
                continue;
            };
            if e.origin() == Some(b"/") {
                if pivoted {
                    continue;
                }
                return Err(bad(
                    format!("unmounted[{i}]"),
                    "the root cannot be unmounted".into(),
                ));
            }
            self.umount(&e.root, MNT_DETACH, &|_| false)
                .map_err(|errno| bad(format!("unmounted[{i}]"), errno.to_string()))?;
        }
        let mut taken = vec![false; boot.len()];
        let mut matched = Vec::with_capacity(r.boot.len());
        for (i, b) in r.boot.iter().enumerate() {
            let k = (0..boot.len())
                .find(|&k| {
                    !taken[k] && boot[k].origin() == Some(&b.origin[..]) && mounted(&&boot[k])
                })
                .ok_or_else(|| {
                    bad(
                        format!("boot[{i}].origin"),
                        format!(
                            "the checkpoint had a mount at {}, the bundle mounts none there",
                            String::from_utf8_lossy(&b.origin)
                        ),
                    )
                })?;
            taken[k] = true;
            matched.push(boot[k].clone());
        }
        Ok(matched)
    }

    /// A v1 record's way: boot's mounts named by id (it was restored only
    /// into the bundle it was saved from), those it lacks unmounted.
    fn unmount_by_id(
        &self,
        r: &MountTreeRecord,
        boot: &[MountEntry],
    ) -> Result<Vec<MountEntry>, VfsRestoreError> {
        for e in boot.iter().rev() {
            if e.mount.id != 1 && !r.boot.iter().any(|b| b.id == e.mount.id) {
                self.umount(&e.root, MNT_DETACH, &|_| false)
                    .map_err(|errno| {
                        VfsRestoreError::Invalid(format!(
                            "mount tree boot mount {}: {errno}",
                            e.mount.id
                        ))
                    })?;
            }
        }
        r.boot
            .iter()
            .enumerate()
            .map(|(i, b)| {
                boot.iter()
                    .find(|e| e.mount.id == b.id)
                    .cloned()
                    .ok_or_else(|| bad(format!("boot[{i}].id"), format!("no boot mount {}", b.id)))
            })
            .collect()
    }

    /// The topmost dentry at `path` (a directory or file to mount on).
    pub(crate) fn mount_point(&self, top: &Arc<Dentry>, path: &[u8]) -> Result<Arc<Dentry>, Errno> {
        let mut d = self.resolve(top, path, false)?;
        while let Some(r) = d.mounted() {
            d = r;
        }
        Ok(d)
    }

    fn mount_procs(&self) -> Option<Arc<dyn super::procfs::ProcessTable>> {
        lock(&self.parts)
            .mount_ctx
            .as_ref()
            .map(|c| c.procs.clone())
    }
}

fn bad(field: String, why: String) -> VfsRestoreError {
    VfsRestoreError::Invalid(format!("mount tree {field}: {why}"))
}

/// The made mounts of a record, each made once when first needed: as a
/// bind's base (which may come later in `places`, or be the top) or at
/// its place.
struct MadeMounts<'a> {
    vfs: &'a Vfs,
    r: &'a MountTreeRecord,
    /// Boot's mounts as boot made them (those since unmounted included:
    /// a bind may be of a file on one).
    boot: &'a [MountEntry],
    ids: &'a [u64],
    tmpfs: &'a dyn Fn(&TmpfsSnapshot) -> Result<Arc<Tmpfs>, VfsRestoreError>,
    entries: Vec<Option<MountEntry>>,
}

impl MadeMounts<'_> {
    fn entry(&mut self, i: usize) -> Result<MountEntry, VfsRestoreError> {
        if let Some(e) = &self.entries[i] {
            return Ok(e.clone());
        }
        let m = &self.r.made[i];
        let id = self.ids[i];
        let new = |inode: Arc<dyn Inode>, kind, fs_type| {
            let mount = Arc::new(Mount::new(id, fs_type, m.flags, anon_dev(id)));
            let root = Dentry::new_root(inode, mount.clone());
            MountEntry { mount, root, kind }
        };
        let procs = || {
            self.vfs
                .mount_procs()
                .ok_or_else(|| bad(format!("made[{i}]"), "no process table to mount".into()))
        };
        let e = match &m.kind {
            MountRecordKind::Tmpfs(snap) => {
                let t = (self.tmpfs)(snap).map_err(|e| match e {
                    VfsRestoreError::Tmpfs { field, why } => VfsRestoreError::Tmpfs {
                        field: format!("mounts.made[{i}].{field}"),
                        why,
                    },
                    other => other,
                })?;
                new(t.root(), MountKind::Tmpfs(t.clone()), "tmpfs")
            }
            MountRecordKind::Proc => new(
                super::procfs::new_procfs(procs()?, String::new()),
                MountKind::Proc,
                "proc",
            ),
            MountRecordKind::Sysfs => new(
                super::sysfs::new_sysfs(procs()?.cpus() as u32),
                MountKind::Sysfs,
                "sysfs",
            ),
            // A v1 record's bind: its source resolved in the tree as far as
            // it is made (its place comes after its source's mount).
            MountRecordKind::Bind { source } => {
                let top = self.vfs.root();
                let src = self
                    .vfs
                    .resolve(&top, source, false)
                    .map_err(|errno| bad(format!("made[{i}].source"), errno.to_string()))?;
                let (base, within) = self.vfs.bind_base(&src).ok_or_else(|| {
                    bad(format!("made[{i}].source"), "outside every mount".into())
                })?;
                bind_entry(&src, id, m.flags, base, within)
            }
            MountRecordKind::BindIn { base, within } => {
                let (root, base) = match base {
                    BindBaseRecord::Boot { origin } => {
                        let e = self
                            .boot
                            .iter()
                            .rev()
                            .find(|e| e.origin() == Some(&origin[..]))
                            .ok_or_else(|| {
                                bad(
                                    format!("made[{i}].base"),
                                    format!(
                                        "the bundle mounts nothing at {}",
                                        String::from_utf8_lossy(origin)
                                    ),
                                )
                            })?;
                        (
                            e.root.clone(),
                            BindBase::Boot {
                                origin: origin.clone(),
                            },
                        )
                    }
                    BindBaseRecord::Made { index } => {
                        let b = self.entry(*index as usize)?;
                        (
                            b.root,
                            BindBase::Made {
                                id: self.ids[*index as usize],
                            },
                        )
                    }
                };
                let src = walk_within(&root, within)
                    .map_err(|errno| bad(format!("made[{i}].within"), errno.to_string()))?;
                bind_entry(&src, id, m.flags, base, within.clone())
            }
        };
        self.entries[i] = Some(e.clone());
        Ok(e)
    }
}

/// The dentry at `path` below `root` in its own dentry tree: plain names
/// (the record's), directories on the way, no symlink followed and no
/// mount crossed.
fn walk_within(root: &Arc<Dentry>, path: &[u8]) -> Result<Arc<Dentry>, Errno> {
    let mut d = root.clone();
    for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        if !d.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        d = d.child(name)?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::mount_tree::NewFs;
    use crate::vfs::namespace::tests::{build_in, get, host, put, tmpfs_of_mode};
    use crate::vfs::state::{MountPlace, VfsState};
    use crate::vfs::testing::{clone_memory, test_memory_file};

    fn tmpfs() -> NewFs {
        tmpfs_of_mode(0o755)
    }

    /// The dentry a mount(2) or umount2(2) of `path` acts on.
    fn at(vfs: &Vfs, path: &[u8]) -> Arc<Dentry> {
        vfs.mount_point(&vfs.root(), path).unwrap()
    }

    /// What a container runtime does: a tmpfs at /new, /etc bound and /dev
    /// bound recursively into it, a proc mounted in it, pivot_root(2)
    /// into it with the old root at /new/old; `detach` then unmounts the
    /// old root with MNT_DETACH.
    fn pivoted(d: &std::path::Path, mf: Arc<crate::mm::MemoryFile>, detach: bool) -> Vfs {
        let vfs = build_in(d, mf, None).unwrap();
        let r = vfs.root();
        vfs.mkdir_at(&r, b"/new", 0o755).unwrap();
        vfs.mount_new(&at(&vfs, b"/new"), tmpfs(), 0).unwrap();
        for dir in [&b"/new/old"[..], b"/new/etc", b"/new/dev", b"/new/proc"] {
            vfs.mkdir_at(&r, dir, 0o755).unwrap();
        }
        put(&vfs, b"/new/f", b"in new");
        let etc = vfs.resolve(&r, b"/etc", true).unwrap();
        vfs.bind_mount(&etc, &at(&vfs, b"/new/etc"), false, 0)
            .unwrap();
        let dev = vfs.resolve(&r, b"/dev", true).unwrap();
        vfs.bind_mount(&dev, &at(&vfs, b"/new/dev"), true, 0)
            .unwrap();
        vfs.mount_new(&at(&vfs, b"/new/proc"), NewFs::Proc, 0)
            .unwrap();
        put(&vfs, b"/dev/shm/seg", b"shared");
        let new = vfs.resolve(&r, b"/new", true).unwrap();
        let old = vfs.resolve(&r, b"/new/old", true).unwrap();
        vfs.pivot_root(&r, &new, &old).unwrap();
        if detach {
            vfs.umount(&at(&vfs, b"/old"), MNT_DETACH, &|_| false)
                .unwrap();
        }
        vfs
    }

    fn restored(d: &std::path::Path, mf: &crate::mm::MemoryFile, s: &VfsState) -> Vfs {
        build_in(d, clone_memory(mf), Some(s)).unwrap()
    }

    #[test]
    fn a_pivoted_tree_with_its_old_root_detached_round_trips() {
        let d = host();
        let mf = test_memory_file();
        let vfs = pivoted(d.path(), mf.clone(), true);
        let info = vfs.mountinfo_text(&vfs.root());
        assert!(info.contains(" / / rw"), "{info}");
        assert!(info.contains(" /etc /etc "), "{info}");
        assert!(!info.contains("/old"), "{info}");
        let state = vfs.save_state().unwrap();
        assert!(matches!(state.mounts.root, MountRootRecord::Made(0)));
        for v in [restored(d.path(), &mf, &state), {
            // And a checkpoint of the restored tree restores too.
            let again = restored(d.path(), &mf, &state).save_state().unwrap();
            assert_eq!(again.mounts.made, state.mounts.made);
            restored(d.path(), &mf, &again)
        }] {
            assert_eq!(v.mountinfo_text(&v.root()), info);
            assert_eq!(get(&v, b"/f").unwrap(), b"in new");
            assert_eq!(get(&v, b"/etc/hosts").unwrap(), b"127.0.0.1 localhost\n");
            assert_eq!(get(&v, b"/dev/shm/seg").unwrap(), b"shared");
            assert!(v.resolve(&v.root(), b"/proc/self", false).is_ok());
            assert_eq!(v.stat_at(&v.root(), b"/old/etc", true), Err(Errno::ENOENT));
            // `..` of the top stays there.
            let up = v.resolve(&v.root(), b"/..", true).unwrap();
            assert!(Arc::ptr_eq(&up, &v.root()));
        }
    }

    #[test]
    fn a_pivoted_tree_with_its_old_root_kept_round_trips() {
        let d = host();
        let mf = test_memory_file();
        let vfs = pivoted(d.path(), mf.clone(), false);
        let info = vfs.mountinfo_text(&vfs.root());
        assert!(info.contains(" / /old rw"), "{info}");
        assert!(info.contains(" /old/dev/shm "), "{info}");
        let state = vfs.save_state().unwrap();
        let v = restored(d.path(), &mf, &state);
        assert_eq!(v.mountinfo_text(&v.root()), info);
        assert_eq!(get(&v, b"/old/etc/motd").unwrap(), b"hello");
        // Where the new root was is the old root's empty directory again.
        assert_eq!(get(&v, b"/old/new/f"), Err(Errno::ENOENT));
        assert!(v.lookup_dir(&v.root(), b"/old/new").is_ok());
        assert_eq!(get(&v, b"/old/dev/shm/seg").unwrap(), b"shared");
    }

    /// pivot_root(".", "."): the old root stacked on the new one, then
    /// detached from there.
    #[test]
    fn pivot_root_dot_dot_round_trips() {
        let d = host();
        let mf = test_memory_file();
        for detach in [false, true] {
            let vfs = build_in(d.path(), mf.clone(), None).unwrap();
            let r = vfs.root();
            vfs.mkdir_at(&r, b"/new", 0o755).unwrap();
            vfs.mount_new(&at(&vfs, b"/new"), tmpfs(), 0).unwrap();
            put(&vfs, b"/new/f", b"top");
            let new = vfs.resolve(&r, b"/new", true).unwrap();
            vfs.pivot_root(&r, &new, &new).unwrap();
            if detach {
                vfs.umount(&at(&vfs, b"/"), MNT_DETACH, &|_| false).unwrap();
            }
            let info = vfs.mountinfo_text(&vfs.root());
            let state = vfs.save_state().unwrap();
            let v = restored(d.path(), &mf, &state);
            assert_eq!(v.mountinfo_text(&v.root()), info, "detach {detach}");
            // The root's names are the new root's, the old one stacked on
            // it or not (a walk does not climb the mounts on its start).
            for p in [&b"/f"[..], b"/etc/motd"] {
                assert_eq!(get(&v, p), get(&vfs, p), "detach {detach}");
            }
            assert_eq!(get(&v, b"/f").unwrap(), b"top");
        }
    }

    #[test]
    fn hostile_pivoted_trees_are_refused_naming_the_field() {
        let d = host();
        let mf = test_memory_file();
        let vfs = pivoted(d.path(), mf.clone(), true);
        let good = vfs.save_state().unwrap();
        let refused = |edit: &dyn Fn(&mut MountTreeRecord), want: &str| {
            let mut s = good.clone();
            edit(&mut s.mounts);
            match build_in(d.path(), clone_memory(&mf), Some(&s)) {
                Err(VfsRestoreError::Invalid(why)) => assert!(why.contains(want), "{want}: {why}"),
                other => panic!("{want}: {:?}", other.map(|_| ())),
            }
        };
        refused(&|r| r.root = MountRootRecord::Made(99), "root");
        // The top must be at "/": made[1] is /etc's bind.
        refused(&|r| r.root = MountRootRecord::Made(1), "root");
        refused(&|r| r.places.push(MountPlace::Made(0)), "places[");
        refused(&|r| r.places.push(MountPlace::Made(1)), "places[");
        refused(
            &|r| r.places.retain(|p| *p != MountPlace::Made(1)),
            "places",
        );
        refused(
            &|r| {
                r.made[1].kind = MountRecordKind::BindIn {
                    base: BindBaseRecord::Made { index: 1 },
                    within: b"/".to_vec(),
                }
            },
            "made[1].base",
        );
        refused(
            &|r| {
                r.made[1].kind = MountRecordKind::BindIn {
                    base: BindBaseRecord::Boot {
                        origin: b"/nowhere".to_vec(),
                    },
                    within: b"/".to_vec(),
                }
            },
            "made[1].base",
        );
        refused(
            &|r| {
                r.made[1].kind = MountRecordKind::BindIn {
                    base: BindBaseRecord::Boot {
                        origin: b"/".to_vec(),
                    },
                    within: b"/etc/../x".to_vec(),
                }
            },
            "made[1].within",
        );
        refused(
            &|r| {
                r.made[1].kind = MountRecordKind::BindIn {
                    base: BindBaseRecord::Boot {
                        origin: b"/".to_vec(),
                    },
                    within: b"/absent".to_vec(),
                }
            },
            "made[1].within",
        );
        // A directory bound where a file was.
        refused(&|r| r.made[1].path = b"/f".to_vec(), "made[1].path");
        // Boot's root unmounted in a tree never pivoted.
        let plain_vfs = build_in(d.path(), mf.clone(), None).unwrap();
        let mut plain = plain_vfs.save_state().unwrap();
        plain.mounts.unmounted.push(b"/".to_vec());
        match build_in(d.path(), clone_memory(&mf), Some(&plain)) {
            Err(VfsRestoreError::Invalid(why)) => assert!(why.contains("unmounted[0]"), "{why}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
