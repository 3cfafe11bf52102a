//! Mount namespaces (Linux's struct mnt_namespace and copy_mnt_ns): each
//! holds its own mount tree. A copy gets a new mount for each of the
//! original's, over the same file systems (a bind mount's way: a second
//! dentry tree over the same inodes), hung where the original hangs; so a
//! mount or umount in one is not seen in the other. Propagation is
//! private: a copy has no peers and receives nothing from the original.
//!
//! A task's namespace is in its fs context; the Sentry thread running a
//! task's call notes it ([`note_current`]), and the VFS's mount
//! operations act on the noted namespace (the first one outside a call).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::dentry::{lock, Dentry};
use super::mount_tree::{
    bind_root_path, mount_depth, mount_root_of, BindBase, MountEntry, MountKind,
};
use super::vfs::Vfs;

pub struct MountNamespace {
    /// The namespace's number (the first is 1), as /proc/PID/ns/mnt would
    /// show it.
    pub id: u64,
    /// The top of its mount tree (a pivot_root changes it).
    pub(crate) root: Mutex<Arc<Dentry>>,
    /// Every attached mount, in the order they were made.
    pub(crate) mounts: Mutex<Vec<MountEntry>>,
    /// Where boot had put the boot mounts umount2(2) took away, in the
    /// order they went (a restore unmounts the new boot's at those places).
    pub(crate) unmounted_boot: Mutex<Vec<Vec<u8>>>,
}

static NEXT_NS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The namespace of the task whose call this host thread runs. Weak,
    /// so that a host thread never keeps a namespace alive.
    static CURRENT: RefCell<Weak<MountNamespace>> = const { RefCell::new(Weak::new()) };
}

/// Notes the namespace of the task whose calls this host thread makes.
pub fn note_current(ns: &Arc<MountNamespace>) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        if !std::ptr::eq(c.as_ptr(), Arc::as_ptr(ns)) {
            *c = Arc::downgrade(ns);
        }
    });
}

/// The noted namespace, if any.
pub(crate) fn current() -> Option<Arc<MountNamespace>> {
    CURRENT.with(|c| c.borrow().upgrade())
}

impl MountNamespace {
    pub(crate) fn new(root: Arc<Dentry>, mounts: Vec<MountEntry>) -> Arc<MountNamespace> {
        Arc::new(MountNamespace {
            id: NEXT_NS.fetch_add(1, Ordering::Relaxed),
            root: Mutex::new(root),
            mounts: Mutex::new(mounts),
            unmounted_boot: Mutex::new(Vec::new()),
        })
    }

    pub fn root(&self) -> Arc<Dentry> {
        lock(&self.root).clone()
    }
}

/// A copy of a namespace and the way from the original's dentries to the
/// copy's.
pub struct NamespaceCopy {
    pub ns: Arc<MountNamespace>,
    /// (original mount's root, the copy's root).
    pairs: Vec<(Arc<Dentry>, Arc<Dentry>)>,
}

impl NamespaceCopy {
    /// The copy's dentry for `d` (a root or cwd): the same name below the
    /// copy of its mount. None when `d` is on no mount of the original, or
    /// its name leads nowhere (unlinked).
    pub fn map(&self, d: &Arc<Dentry>) -> Option<Arc<Dentry>> {
        let top = mount_root_of(d);
        let (_, copy) = self.pairs.iter().find(|(o, _)| Arc::ptr_eq(o, &top))?;
        if d.is_unlinked() {
            return None;
        }
        walk_names(copy, &bind_root_path(d)).ok()
    }
}

/// What a copy of a mount serves: the same, a bind's base being the copy
/// of its base (its source dentry is the original namespace's: the copy
/// finds its file by base and path).
fn copied_kind(kind: &MountKind, ids: &[(u64, u64)]) -> MountKind {
    match kind {
        MountKind::Bind { base, within, .. } => MountKind::Bind {
            source: Weak::new(),
            base: match base {
                BindBase::Made { id } => BindBase::Made {
                    id: ids
                        .iter()
                        .find(|(old, _)| old == id)
                        .map_or(*id, |(_, new)| *new),
                },
                boot => boot.clone(),
            },
            within: within.clone(),
        },
        other => other.clone(),
    }
}

/// The dentry at `path` below `root` in its own dentry tree (no mount
/// crossed, no symlink followed).
pub(crate) fn walk_names(
    root: &Arc<Dentry>,
    path: &[u8],
) -> Result<Arc<Dentry>, crate::errno::Errno> {
    let mut d = root.clone();
    for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        if !d.is_dir() {
            return Err(crate::errno::Errno::ENOTDIR);
        }
        d = d.child(name)?;
    }
    Ok(d)
}

impl Vfs {
    /// The namespace the calling task is in (the first outside a call).
    pub fn ns(&self) -> Arc<MountNamespace> {
        current().unwrap_or_else(|| self.init_ns.clone())
    }

    /// The namespace boot made.
    pub fn init_ns(&self) -> &Arc<MountNamespace> {
        &self.init_ns
    }

    /// The live namespace whose tree's top is `top`.
    pub fn ns_with_top(&self, top: &Arc<Dentry>) -> Option<Arc<MountNamespace>> {
        lock(&self.namespaces)
            .iter()
            .filter_map(Weak::upgrade)
            .find(|ns| Arc::ptr_eq(&ns.root(), top))
    }

    /// Runs `f` with `ns` as the current namespace on this thread (the
    /// one before is noted again after).
    pub fn in_ns<R>(&self, ns: &Arc<MountNamespace>, f: impl FnOnce() -> R) -> R {
        let before = CURRENT.with(|c| c.replace(Arc::downgrade(ns)));
        let r = f();
        CURRENT.with(|c| *c.borrow_mut() = before);
        r
    }

    /// copy_mnt_ns: a new namespace with a copy of every mount of `ns`'s
    /// tree, each with a new id, its flags and what it serves; parents are
    /// copied before their children, each hung at the same name below its
    /// parent's copy.
    pub fn copy_ns(&self, ns: &Arc<MountNamespace>) -> NamespaceCopy {
        self.copy_ns_as(ns, true)
    }

    /// [`Vfs::copy_ns`]; without `alias`, the file systems are not marked
    /// as mounted twice (a copy kept aside, that nothing looks up in).
    pub(crate) fn copy_ns_as(&self, ns: &Arc<MountNamespace>, alias: bool) -> NamespaceCopy {
        let top = ns.root();
        let mut entries: Vec<MountEntry> = lock(&ns.mounts)
            .iter()
            .filter(|e| super::mount_tree::is_under(&e.root, &top))
            .cloned()
            .collect();
        entries.sort_by_key(|e| mount_depth(&e.root));
        // Every copy's id first: a bind names its base mount by id. A copy
        // kept aside keeps the ids (it is never seen), so that it takes
        // none a restore gives out.
        let ids: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| {
                let id = if alias {
                    self.new_mount_id()
                } else {
                    e.mount.id
                };
                (e.mount.id, id)
            })
            .collect();
        let mut pairs: Vec<(Arc<Dentry>, Arc<Dentry>)> = Vec::with_capacity(entries.len());
        let mut copies = Vec::with_capacity(entries.len());
        let mut new_top = None;
        for (e, &(_, id)) in entries.into_iter().zip(&ids) {
            let mount = Arc::new(if alias {
                e.mount.bind(id, e.mount.flags())
            } else {
                e.mount.twin(id, e.mount.flags())
            });
            let root = Dentry::new_root(e.root.inode().clone(), mount.clone());
            if Arc::ptr_eq(&e.root, &top) {
                new_top = Some(root.clone());
            } else {
                let Some(mp) = e.root.mountpoint() else {
                    continue;
                };
                let parent = mount_root_of(&mp);
                let Some((_, parent_copy)) = pairs.iter().find(|(o, _)| Arc::ptr_eq(o, &parent))
                else {
                    continue;
                };
                // The covered dentry's copy; stacked mounts cover a
                // mount's root, whose copy is the parent copy itself.
                let Ok(at) = walk_names(parent_copy, &bind_root_path(&mp)) else {
                    continue;
                };
                at.set_mounted(&root);
            }
            pairs.push((e.root.clone(), root.clone()));
            copies.push(MountEntry {
                mount,
                root,
                kind: copied_kind(&e.kind, &ids),
            });
        }
        let new_top = new_top.unwrap_or(top);
        let copy = MountNamespace::new(new_top, copies);
        {
            let mut all = lock(&self.namespaces);
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&copy));
        }
        *lock(&copy.unmounted_boot) = lock(&ns.unmounted_boot).clone();
        NamespaceCopy { ns: copy, pairs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::vfs::mount_tree::NewFs;
    use crate::vfs::namespace::tests::{build_in, get, host, put, tmpfs_of_mode};
    use crate::vfs::testing::test_memory_file;

    fn tmpfs() -> NewFs {
        tmpfs_of_mode(0o755)
    }

    #[test]
    fn a_copy_sees_the_same_tree_and_its_own_changes_only() {
        let d = host();
        let vfs = build_in(d.path(), test_memory_file(), None).unwrap();
        let r = vfs.root();
        vfs.mkdir_at(&r, b"/m", 0o755).unwrap();
        vfs.mkdir_at(&r, b"/n", 0o755).unwrap();
        let m = vfs.resolve(&r, b"/m", true).unwrap();
        vfs.mount_new(&m, tmpfs(), 0).unwrap();
        put(&vfs, b"/m/f", b"shared");
        let cwd = vfs.resolve(&r, b"/etc", true).unwrap();
        let copy = vfs.copy_ns(vfs.init_ns());
        let cwd2 = copy.map(&cwd).unwrap();
        assert!(!Arc::ptr_eq(&cwd, &cwd2));
        let ns2 = copy.ns.clone();
        drop(copy);
        let before = vfs.mountinfo_text(&r);
        vfs.in_ns(&ns2, || {
            let r2 = vfs.root();
            assert!(!Arc::ptr_eq(&r, &r2));
            assert_eq!(get(&vfs, b"/m/f").unwrap(), b"shared");
            assert_eq!(get(&vfs, b"/etc/motd").unwrap(), b"hello");
            let hosts = vfs.open_at(&cwd2, b"hosts", libc::O_RDONLY, 0);
            assert!(hosts.is_ok());
            // The same mounts, each with a new id.
            let info = vfs.mountinfo_text(&r2);
            assert_eq!(info.lines().count(), before.lines().count(), "{info}");
            let n = vfs.resolve(&r2, b"/n", true).unwrap();
            vfs.mount_new(&n, tmpfs(), 0).unwrap();
            put(&vfs, b"/n/g", b"own");
            // A bind of the copied tmpfs names the copy as its base: the
            // copy's tree saves.
            {
                let m2 = vfs.mount_point(&r2, b"/m").unwrap();
                vfs.mkdir_at(&r2, b"/n/b", 0o755).unwrap();
                let b = vfs.mount_point(&r2, b"/n/b").unwrap();
                vfs.bind_mount(&m2, &b, false, 0).unwrap();
            }
            assert_eq!(get(&vfs, b"/n/b/f").unwrap(), b"shared");
            let saved = vfs.save_state().unwrap();
            assert_eq!(saved.mounts.made.len(), 3, "{:?}", saved.mounts.made);
            let b = vfs.mount_point(&r2, b"/n/b").unwrap();
            vfs.umount(&b, 0, &|_| false).unwrap();
            let m2 = vfs.mount_point(&r2, b"/m").unwrap();
            vfs.umount(&m2, 0, &|_| false).unwrap();
            assert_eq!(get(&vfs, b"/m/f"), Err(Errno::ENOENT));
        });
        // Neither change reached the first namespace; the tmpfs is shared.
        assert_eq!(get(&vfs, b"/m/f").unwrap(), b"shared");
        assert_eq!(get(&vfs, b"/n/g"), Err(Errno::ENOENT));
        assert_eq!(vfs.mountinfo_text(&r), before);
    }

    /// Stacked mounts, a bind of a directory and a root switched by
    /// pivot_root(2): the copy's mountinfo is the original's but for the
    /// ids, and its bind shows the same files.
    #[test]
    fn a_copy_keeps_stacks_binds_and_a_pivoted_top() {
        let d = host();
        let vfs = build_in(d.path(), test_memory_file(), None).unwrap();
        let r = vfs.root();
        vfs.mkdir_at(&r, b"/new", 0o755).unwrap();
        let new = vfs.resolve(&r, b"/new", true).unwrap();
        vfs.mount_new(&new, tmpfs(), 0).unwrap();
        for dir in [&b"/new/old"[..], b"/new/s", b"/new/etc"] {
            vfs.mkdir_at(&r, dir, 0o755).unwrap();
        }
        let s = vfs.mount_point(&r, b"/new/s").unwrap();
        vfs.mount_new(&s, tmpfs(), 0).unwrap();
        let s = vfs.mount_point(&r, b"/new/s").unwrap();
        vfs.mount_new(&s, tmpfs(), libc::MS_RDONLY).unwrap();
        let etc = vfs.resolve(&r, b"/etc", true).unwrap();
        let at = vfs.mount_point(&r, b"/new/etc").unwrap();
        vfs.bind_mount(&etc, &at, false, 0).unwrap();
        let new = vfs.resolve(&r, b"/new", true).unwrap();
        let old = vfs.resolve(&r, b"/new/old", true).unwrap();
        vfs.pivot_root(&r, &new, &old).unwrap();
        let ids = |info: &str| -> Vec<String> {
            info.lines()
                .map(|l| l.split(' ').skip(3).collect::<Vec<_>>().join(" "))
                .collect()
        };
        let top = vfs.root();
        let info = vfs.mountinfo_text(&top);
        let copy = vfs.copy_ns(vfs.init_ns());
        let ns2 = copy.ns.clone();
        drop(copy);
        vfs.in_ns(&ns2, || {
            let top2 = vfs.root();
            assert!(!Arc::ptr_eq(&top, &top2));
            let mut want = ids(&info);
            let mut got = ids(&vfs.mountinfo_text(&top2));
            want.sort();
            got.sort();
            assert_eq!(got, want);
            assert_eq!(get(&vfs, b"/etc/motd").unwrap(), b"hello");
            assert_eq!(get(&vfs, b"/old/etc/motd").unwrap(), b"hello");
            // The upper of the two stacked at /s is the one seen, read-only.
            assert_eq!(
                vfs.open_at(&top2, b"/s/x", libc::O_CREAT | libc::O_WRONLY, 0o644)
                    .err(),
                Some(Errno::EROFS)
            );
        });
    }

    /// A bind made before the copy names the copy of its base there: the
    /// copy's tree saves and restores with the bind's files.
    #[test]
    fn a_copied_bind_of_a_tmpfs_saves_in_the_copy() {
        let d = host();
        let mf = test_memory_file();
        let vfs = build_in(d.path(), mf.clone(), None).unwrap();
        let r = vfs.root();
        vfs.mkdir_at(&r, b"/m", 0o755).unwrap();
        vfs.mkdir_at(&r, b"/b", 0o755).unwrap();
        vfs.mount_new(&vfs.mount_point(&r, b"/m").unwrap(), tmpfs(), 0)
            .unwrap();
        vfs.mkdir_at(&r, b"/m/d", 0o755).unwrap();
        put(&vfs, b"/m/d/f", b"bound");
        let src = vfs.resolve(&r, b"/m/d", true).unwrap();
        vfs.bind_mount(&src, &vfs.mount_point(&r, b"/b").unwrap(), false, 0)
            .unwrap();
        let ns2 = vfs.copy_ns(vfs.init_ns()).ns;
        let saved = vfs.in_ns(&ns2, || vfs.save_state()).unwrap();
        use crate::vfs::state::{BindBaseRecord, MountRecordKind};
        assert!(matches!(
            saved.mounts.made[1].kind,
            MountRecordKind::BindIn {
                base: BindBaseRecord::Made { index: 0 },
                ..
            }
        ));
        let v = build_in(
            d.path(),
            crate::vfs::testing::clone_memory(&mf),
            Some(&saved),
        )
        .unwrap();
        assert_eq!(get(&v, b"/b/f").unwrap(), b"bound");
    }
}
