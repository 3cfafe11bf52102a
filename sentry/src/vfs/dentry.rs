//! Dentries: the VFS's tree of names (gVisor's vfs.Dentry plus the
//! mount-point bookkeeping of vfs.Mount).
//!
//! A dentry holds its children strongly and its parent weakly, so the cache
//! has no reference cycles: a linked dentry is kept alive by its parent, an
//! unlinked one only by whoever still uses it (an open file, a cwd).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::inode::Inode;
use super::stat::Stat;
use crate::errno::Errno;

/// Per-mount flags (Linux's MNT_* as mount(2) takes them: MS_RDONLY,
/// MS_NOSUID, MS_NODEV, MS_NOEXEC and the atime bits).
pub const MOUNT_FLAG_MASK: u64 = libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME;

/// One mounted file system (Linux's struct mount: a bind mount is another
/// `Mount` over the same inodes).
#[derive(Debug)]
pub struct Mount {
    /// Sandbox-wide mount id.
    pub id: u64,
    /// The file system's type, for /proc/mounts.
    pub fs_type: &'static str,
    /// MOUNT_FLAG_MASK bits; a remount changes them in place, so every
    /// dentry of the mount sees the change at once.
    flags: AtomicU64,
    /// `st_dev` of every file on this mount (the sandbox's, not the host's).
    pub dev: u64,
    /// Set once the file system is mounted more than once (a bind mount):
    /// its dentries are then revalidated on lookup, because a change made
    /// through one mount's dentry tree is not seen by another's cache.
    aliased: Arc<AtomicBool>,
}

impl Mount {
    pub fn new(id: u64, fs_type: &'static str, flags: u64, dev: u64) -> Mount {
        Mount {
            id,
            fs_type,
            flags: AtomicU64::new(flags & MOUNT_FLAG_MASK),
            dev,
            aliased: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Another mount of the same file system (MS_BIND): same device, its
    /// own flags, and both marked aliased.
    pub fn bind(&self, id: u64, flags: u64) -> Mount {
        self.aliased.store(true, Ordering::Relaxed);
        Mount {
            id,
            fs_type: self.fs_type,
            flags: AtomicU64::new(flags & MOUNT_FLAG_MASK),
            dev: self.dev,
            aliased: self.aliased.clone(),
        }
    }

    /// [`Mount::bind`] without marking the file system aliased yet: for a
    /// copy kept aside, unused until a real copy is made from it (which
    /// marks both).
    pub(crate) fn twin(&self, id: u64, flags: u64) -> Mount {
        Mount {
            id,
            fs_type: self.fs_type,
            flags: AtomicU64::new(flags & MOUNT_FLAG_MASK),
            dev: self.dev,
            aliased: self.aliased.clone(),
        }
    }

    pub fn flags(&self) -> u64 {
        self.flags.load(Ordering::Relaxed)
    }

    pub fn set_flags(&self, flags: u64) {
        self.flags.store(flags & MOUNT_FLAG_MASK, Ordering::Relaxed);
    }

    pub fn read_only(&self) -> bool {
        self.flags() & libc::MS_RDONLY != 0
    }

    pub fn noexec(&self) -> bool {
        self.flags() & libc::MS_NOEXEC != 0
    }

    pub fn nosuid(&self) -> bool {
        self.flags() & libc::MS_NOSUID != 0
    }

    pub fn nodev(&self) -> bool {
        self.flags() & libc::MS_NODEV != 0
    }

    fn aliased(&self) -> bool {
        self.aliased.load(Ordering::Relaxed)
    }
}

pub struct Dentry {
    name: Mutex<Vec<u8>>,
    parent: Mutex<Weak<Dentry>>,
    inode: Arc<dyn Inode>,
    file_type: u32,
    mount: Arc<Mount>,
    children: Mutex<HashMap<Vec<u8>, Arc<Dentry>>>,
    /// The root of a file system mounted on this dentry.
    mounted: Mutex<Option<Arc<Dentry>>>,
    /// For the root of a mount: the dentry it covers.
    mountpoint: Mutex<Weak<Dentry>>,
    unlinked: AtomicBool,
    /// An O_TMPFILE file opened without O_EXCL: linkat(2) may give it a
    /// name once (Linux's I_LINKABLE).
    linkable: AtomicBool,
}

impl Drop for Dentry {
    /// Takes a subtree apart without recursion: a guest can build a
    /// directory chain far deeper than the Sentry's stack could unwind one
    /// frame per level. Children this dentry held the last reference to are
    /// emptied one at a time.
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut pending: Vec<Arc<Dentry>> = std::mem::take(children).into_values().collect();
        while let Some(child) = pending.pop() {
            if let Some(mut d) = Arc::into_inner(child) {
                let grandchildren = d.children.get_mut().unwrap_or_else(|e| e.into_inner());
                pending.extend(std::mem::take(grandchildren).into_values());
            }
        }
    }
}

/// Locks a mutex, taking the data even if a thread panicked while holding
/// it: a panic elsewhere must not take the whole file system down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dentry {
    /// The root dentry of a file system on `mount`.
    pub fn new_root(inode: Arc<dyn Inode>, mount: Arc<Mount>) -> Arc<Dentry> {
        Self::new(Vec::new(), Weak::new(), inode, mount)
    }

    fn new(
        name: Vec<u8>,
        parent: Weak<Dentry>,
        inode: Arc<dyn Inode>,
        mount: Arc<Mount>,
    ) -> Arc<Dentry> {
        let file_type = inode.file_type();
        Arc::new(Dentry {
            name: Mutex::new(name),
            parent: Mutex::new(parent),
            inode,
            file_type,
            mount,
            children: Mutex::new(HashMap::new()),
            mounted: Mutex::new(None),
            mountpoint: Mutex::new(Weak::new()),
            unlinked: AtomicBool::new(false),
            linkable: AtomicBool::new(false),
        })
    }

    pub fn inode(&self) -> &Arc<dyn Inode> {
        &self.inode
    }

    pub fn mount(&self) -> &Arc<Mount> {
        &self.mount
    }

    pub fn name(&self) -> Vec<u8> {
        lock(&self.name).clone()
    }

    pub fn file_type(&self) -> u32 {
        self.file_type
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type == libc::S_IFLNK
    }

    pub fn is_unlinked(&self) -> bool {
        self.unlinked.load(Ordering::Relaxed)
    }

    /// The parent within this file system (`None` at a file system's root
    /// or once the parent is gone).
    pub fn parent(&self) -> Option<Arc<Dentry>> {
        lock(&self.parent).upgrade()
    }

    /// The dentry this mount root covers, if this is a mounted root.
    pub fn mountpoint(&self) -> Option<Arc<Dentry>> {
        lock(&self.mountpoint).upgrade()
    }

    /// The root of the file system mounted here, if any.
    pub fn mounted(&self) -> Option<Arc<Dentry>> {
        lock(&self.mounted).clone()
    }

    /// Unhooks what is mounted here (umount, MS_MOVE, pivot_root).
    pub(crate) fn take_mounted(&self) -> Option<Arc<Dentry>> {
        lock(&self.mounted).take()
    }

    /// A detached mount root covers nothing any more.
    pub(crate) fn clear_mountpoint(&self) {
        *lock(&self.mountpoint) = Weak::new();
    }

    /// The cached children (umount's busy check walks them).
    pub(crate) fn cached_children(&self) -> Vec<Arc<Dentry>> {
        lock(&self.children).values().cloned().collect()
    }

    pub(crate) fn set_mounted(self: &Arc<Self>, root: &Arc<Dentry>) {
        *lock(&root.mountpoint) = Arc::downgrade(self);
        *lock(&self.mounted) = Some(root.clone());
    }

    /// The inode's attributes, with this mount's device number.
    pub fn stat(&self) -> Result<Stat, Errno> {
        let mut st = self.inode.stat()?;
        st.dev = self.mount.dev;
        Ok(st)
    }

    /// The cached or looked-up child `name` (a real name, not `.`/`..`).
    pub fn child(self: &Arc<Self>, name: &[u8]) -> Result<Arc<Dentry>, Errno> {
        let mut children = lock(&self.children);
        if let Some(d) = children.get(name) {
            if !self.mount.aliased() || d.mounted().is_some() {
                return Ok(d.clone());
            }
            // Another mount of this file system may have changed the name.
            match self.inode.lookup(name) {
                Ok(inode) if same_inode(&inode, &d.inode) => return Ok(d.clone()),
                Ok(_) | Err(Errno::ENOENT) => {
                    if let Some(stale) = children.remove(name) {
                        stale.mark_unlinked();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let inode = self.inode.lookup(name)?;
        let d = Dentry::new(
            name.to_vec(),
            Arc::downgrade(self),
            inode,
            self.mount.clone(),
        );
        children.insert(name.to_vec(), d.clone());
        Ok(d)
    }

    /// [`Dentry::child`], and on a miss the names `ahead` of it in the
    /// path too, in one [`Inode::lookup_path`]: what that finds is cached
    /// as a chain of new dentries below this one, so the rest of the walk
    /// finds them there. `ahead` holds only plain names; a cached dentry
    /// (a mount point is one) is never looked up again, so a lookup ahead
    /// never crosses a mount.
    pub fn child_ahead(
        self: &Arc<Self>,
        name: &[u8],
        ahead: &[&[u8]],
    ) -> Result<Arc<Dentry>, Errno> {
        if ahead.is_empty() || self.mount.aliased() {
            return self.child(name);
        }
        let mut children = lock(&self.children);
        if let Some(d) = children.get(name) {
            return Ok(d.clone());
        }
        let mut names: Vec<&[u8]> = Vec::with_capacity(ahead.len() + 1);
        names.push(name);
        names.extend_from_slice(ahead);
        let mut found = self.inode.lookup_path(&names)?.into_iter();
        let inode = found.next().ok_or(Errno::EIO)?;
        let first = Dentry::new(
            name.to_vec(),
            Arc::downgrade(self),
            inode,
            self.mount.clone(),
        );
        children.insert(name.to_vec(), first.clone());
        drop(children);
        // The rest hang below `first`, which nobody else has seen yet.
        let mut parent = first.clone();
        for (inode, name) in found.zip(ahead) {
            let d = Dentry::new(
                name.to_vec(),
                Arc::downgrade(&parent),
                inode,
                self.mount.clone(),
            );
            lock(&parent.children).insert(name.to_vec(), d.clone());
            parent = d;
        }
        Ok(first)
    }

    /// Whether a child called `name` exists.
    pub fn has_child(self: &Arc<Self>, name: &[u8]) -> Result<bool, Errno> {
        match self.child(name) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs a mutation of this directory with the child cache locked, so
    /// that no lookup sees the file system and the cache disagree.
    pub(crate) fn with_children<R>(
        &self,
        f: impl FnOnce(&mut HashMap<Vec<u8>, Arc<Dentry>>) -> R,
    ) -> R {
        f(&mut lock(&self.children))
    }

    /// A dentry for an inode just created as child `name`.
    pub(crate) fn new_child(self: &Arc<Self>, name: &[u8], inode: Arc<dyn Inode>) -> Arc<Dentry> {
        Dentry::new(
            name.to_vec(),
            Arc::downgrade(self),
            inode,
            self.mount.clone(),
        )
    }

    pub(crate) fn set_linkable(&self, on: bool) {
        self.linkable.store(on, Ordering::Relaxed);
    }

    /// Takes the one linkat(2) an O_TMPFILE file allows.
    pub(crate) fn take_linkable(&self) -> bool {
        self.linkable.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn mark_unlinked(&self) {
        self.unlinked.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_parent(&self, parent: &Arc<Dentry>, name: &[u8]) {
        *lock(&self.parent) = Arc::downgrade(parent);
        *lock(&self.name) = name.to_vec();
    }
}

/// Whether two inodes are one file: by identity, else (a file system
/// whose lookups make a new object each time) by inode number.
fn same_inode(a: &Arc<dyn Inode>, b: &Arc<dyn Inode>) -> bool {
    if std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)) {
        return true;
    }
    match (a.stat(), b.stat()) {
        (Ok(x), Ok(y)) => x.ino == y.ino && a.file_type() == b.file_type(),
        _ => false,
    }
}

impl std::fmt::Debug for Dentry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dentry")
            .field("name", &String::from_utf8_lossy(&self.name()))
            .field("mount", &self.mount.fs_type)
            .finish()
    }
}
