//! The mount namespace and the path-based operations the syscalls call
//! (gVisor's vfs.VirtualFilesystem).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::dentry::{lock, Dentry, Mount};
use super::file::{OpenFile, PathOps};
use super::inode::Inode;
use super::inotify::{self, IN_ATTRIB, IN_CREATE, IN_DELETE, IN_MODIFY, IN_MOVE_SELF};
use super::perm;
use super::resolve::ParentAndName;
use super::stat::{makedev, Stat};
use crate::errno::Errno;

/// Options of a mount.
#[derive(Clone, Copy, Debug)]
pub struct MountOpts {
    pub fs_type: &'static str,
    pub read_only: bool,
}

impl MountOpts {
    pub(crate) fn flags(&self) -> u64 {
        if self.read_only {
            libc::MS_RDONLY
        } else {
            0
        }
    }
}

pub struct Vfs {
    /// The namespace boot made; a task's own may be a copy of it
    /// (vfs/mount_ns.rs).
    pub(crate) init_ns: Arc<super::mount_ns::MountNamespace>,
    /// Every namespace made (the live ones upgrade), for finding the one a
    /// file's names lead to.
    pub(crate) namespaces: Mutex<Vec<std::sync::Weak<super::mount_ns::MountNamespace>>>,
    pub(crate) next_mount: AtomicU64,
    /// Serialises renames, so that two renames never lock two directories
    /// in opposite orders and the ancestor check stays true until done.
    rename_lock: Mutex<()>,
    pub(crate) parts: Mutex<super::state::SandboxParts>,
    /// The root of the internal mount memfds are named under (Linux's
    /// shm_mnt): /dev/shm's tmpfs mounted nowhere, so a memfd's path is
    /// "/memfd:NAME" and no lookup finds it. Made on first use.
    memfd_root: Mutex<Option<Arc<Dentry>>>,
}

/// Linux's MFD_NAME_MAX_LEN: NAME_MAX minus the "memfd:" prefix.
pub const MEMFD_NAME_MAX: usize = 255 - 6;

/// The anonymous device major Linux gives virtual file systems.
const ANON_MAJOR: u32 = 0;

/// The device number of mount `id`'s file system.
pub(crate) fn anon_dev(id: u64) -> u64 {
    makedev(ANON_MAJOR, u32::try_from(id).unwrap_or(u32::MAX))
}

impl Vfs {
    /// A namespace whose root is `root` of a file system of type `opts`.
    pub fn new(root: Arc<dyn Inode>, opts: MountOpts) -> Vfs {
        let mount = Arc::new(Mount::new(
            1,
            opts.fs_type,
            opts.flags(),
            makedev(ANON_MAJOR, 1),
        ));
        let root = Dentry::new_root(root, mount.clone());
        let first = super::mount_tree::MountEntry::boot(mount, root.clone(), b"/".to_vec());
        let init_ns = super::mount_ns::MountNamespace::new(root, vec![first]);
        Vfs {
            namespaces: Mutex::new(vec![Arc::downgrade(&init_ns)]),
            init_ns,
            next_mount: AtomicU64::new(2),
            rename_lock: Mutex::new(()),
            parts: Mutex::new(Default::default()),
            memfd_root: Mutex::new(None),
        }
    }

    /// The root dentry memfds are named under (see `memfd_root`), over
    /// the sandbox's /dev/shm tmpfs; ENOSYS for a namespace without one.
    pub(crate) fn memfd_root(&self) -> Result<Arc<Dentry>, Errno> {
        let mut slot = lock(&self.memfd_root);
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let shm = lock(&self.parts).shm.clone().ok_or(Errno::ENOSYS)?;
        let id = self.next_mount.fetch_add(1, Ordering::Relaxed);
        let mount = Arc::new(Mount::new(id, "tmpfs", 0, anon_dev(id)));
        let root = Dentry::new_root(shm.root(), mount);
        *slot = Some(root.clone());
        Ok(root)
    }

    /// The memfd mount's id, once a memfd was made.
    pub(crate) fn memfd_mount_id(&self) -> Option<u64> {
        lock(&self.memfd_root).as_ref().map(|d| d.mount().id)
    }

    /// memfd_create(2) (flags checked by the caller): a regular file with
    /// no name, its pages in the memory file like any tmpfs file's (it is
    /// a node of /dev/shm's tmpfs named nowhere), shown as
    /// "/memfd:NAME (deleted)". `seals` are its first seals (F_SEAL_SEAL
    /// without MFD_ALLOW_SEALING); `exec` says whether it is executable
    /// (mode 0777, else 0666: MFD_NOEXEC_SEAL).
    pub fn memfd_create(
        &self,
        name: &[u8],
        seals: u32,
        exec: bool,
    ) -> Result<Arc<OpenFile>, Errno> {
        if name.len() > MEMFD_NAME_MAX {
            return Err(Errno::EINVAL);
        }
        let root = self.memfd_root()?;
        let dir = root
            .inode()
            .as_any()
            .downcast_ref::<super::tmpfs::TmpfsInode>()
            .ok_or(Errno::ENOSYS)?;
        let inode = dir.new_memfd(if exec { 0o777 } else { 0o666 }, seals)?;
        let mut dname = b"memfd:".to_vec();
        dname.extend_from_slice(name);
        let inode: Arc<dyn Inode> = inode;
        let d = root.new_child(&dname, inode.clone());
        d.mark_unlinked();
        let ops = inode.open(libc::O_RDWR)?;
        // As Linux's alloc_file_pseudo for shmem: O_RDWR | O_LARGEFILE.
        let flags = libc::O_RDWR | super::file::KERNEL_O_LARGEFILE;
        Ok(OpenFile::new(Some(d), inode, ops, flags))
    }

    /// The top of the current namespace's mount tree (a task's own root
    /// may be below it).
    pub fn root(&self) -> Arc<Dentry> {
        self.ns().root()
    }

    pub(crate) fn set_root(&self, root: Arc<Dentry>) {
        *lock(&self.ns().root) = root;
    }

    /// Mounts the file system rooted at `inode` on the directory `path`
    /// (absolute), returning the new mount's root dentry.
    pub fn mount(
        &self,
        path: &[u8],
        inode: Arc<dyn Inode>,
        opts: MountOpts,
    ) -> Result<Arc<Dentry>, Errno> {
        let at = self.resolve(&self.root(), path, true)?;
        let id = self.new_mount_id();
        let mount = Arc::new(Mount::new(id, opts.fs_type, opts.flags(), anon_dev(id)));
        let root = Dentry::new_root(inode, mount.clone());
        let origin = path_bytes(&at);
        self.attach(
            &at,
            super::mount_tree::MountEntry::boot(mount, root.clone(), origin),
        )?;
        Ok(root)
    }

    pub(crate) fn new_mount_id(&self) -> u64 {
        self.next_mount.fetch_add(1, Ordering::Relaxed)
    }

    /// open(2)/openat(2). O_CLOEXEC is the caller's (it belongs to the
    /// descriptor, not the open file).
    pub fn open_at(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        flags: i32,
        mode: u32,
    ) -> Result<Arc<OpenFile>, Errno> {
        let f = self.open_inner(start, path, flags, mode, 0)?;
        if !f.is_path() {
            if let Some(d) = f.dentry() {
                inotify::notify(d, inotify::IN_OPEN);
            }
        }
        Ok(f)
    }

    fn open_inner(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        flags: i32,
        mode: u32,
        depth: u32,
    ) -> Result<Arc<OpenFile>, Errno> {
        let path_only = flags & libc::O_PATH != 0;
        let nofollow = flags & libc::O_NOFOLLOW != 0;
        if flags & libc::O_TMPFILE & !libc::O_DIRECTORY != 0 {
            return self.open_tmpfile(start, path, flags, mode);
        }
        let dentry = if flags & libc::O_CREAT != 0 && !path_only {
            let pn = self.resolve_parent(start, path)?;
            if pn.is_special() {
                return Err(Errno::EISDIR);
            }
            match pn.parent.child(&pn.name) {
                Ok(d) => {
                    if flags & libc::O_EXCL != 0 {
                        return Err(Errno::EEXIST);
                    }
                    if d.is_symlink() && !nofollow {
                        // Following a link with O_CREAT may create its
                        // target (a dangling link), so open the target.
                        if depth >= super::resolve::MAX_SYMLINKS {
                            return Err(Errno::ELOOP);
                        }
                        if d.inode().magic_target().is_none() {
                            let target = d.inode().readlink()?;
                            return self.open_inner(&pn.parent, &target, flags, mode, depth + 1);
                        }
                        self.resolve(start, path, true)?
                    } else {
                        if let Some(root) = d.mounted() {
                            return self.finish_open(root, flags);
                        }
                        if pn.trailing_slash && !d.is_dir() {
                            return Err(Errno::ENOTDIR);
                        }
                        d
                    }
                }
                Err(Errno::ENOENT) => {
                    if pn.trailing_slash {
                        return Err(Errno::EISDIR);
                    }
                    let d = self.create_child(&pn, |dir| dir.create(&pn.name, mode & 0o7777))?;
                    let ops = d.inode().open(flags)?;
                    return Ok(OpenFile::new(
                        Some(d.clone()),
                        d.inode().clone(),
                        ops,
                        flags,
                    ));
                }
                Err(e) => return Err(e),
            }
        } else {
            self.resolve(start, path, !nofollow)?
        };
        self.finish_open(dentry, flags)
    }

    /// open(2) with O_TMPFILE: a new regular file with no name in the
    /// directory at `path` (build_open_flags' and do_tmpfile's checks).
    fn open_tmpfile(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        flags: i32,
        mode: u32,
    ) -> Result<Arc<OpenFile>, Errno> {
        let acc = flags & libc::O_ACCMODE;
        if flags & libc::O_DIRECTORY == 0
            || flags & (libc::O_CREAT | libc::O_PATH) != 0
            || !(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        {
            return Err(Errno::EINVAL);
        }
        let dir = self.resolve(start, path, flags & libc::O_NOFOLLOW == 0)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        perm::check(dir.inode().as_ref(), perm::MAY_WRITE | perm::MAY_EXEC)?;
        if dir.mount().read_only() {
            return Err(Errno::EROFS);
        }
        let inode = dir.inode().tmpfile(mode & 0o7777)?;
        let ino = inode.stat()?.ino;
        let d = dir.new_child(format!("#{ino}").as_bytes(), inode.clone());
        d.mark_unlinked();
        // Without O_EXCL, linkat(2) may name it (Linux's I_LINKABLE).
        d.set_linkable(flags & libc::O_EXCL == 0);
        let ops = inode.open(flags & !libc::O_DIRECTORY)?;
        // F_GETFL shows O_TMPFILE, as Linux keeps it in f_flags.
        Ok(OpenFile::new(Some(d), inode, ops, flags))
    }

    pub(crate) fn finish_open(&self, d: Arc<Dentry>, flags: i32) -> Result<Arc<OpenFile>, Errno> {
        let inode = d.inode().clone();
        let acc = flags & libc::O_ACCMODE;
        if flags & libc::O_DIRECTORY != 0 && !d.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if flags & libc::O_PATH != 0 {
            let kind = kind_of(d.file_type());
            return Ok(OpenFile::new(
                Some(d),
                inode,
                Arc::new(PathOps(kind)),
                flags,
            ));
        }
        if d.is_symlink() {
            if let Some(file) = inode.magic_target() {
                return Ok(file);
            }
            // Reached only with O_NOFOLLOW.
            return Err(Errno::ELOOP);
        }
        // A device node on a nodev mount does not open (may_open).
        if matches!(d.file_type(), libc::S_IFCHR | libc::S_IFBLK) && d.mount().nodev() {
            return Err(Errno::EACCES);
        }
        let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        if d.is_dir() && (writes || flags & libc::O_CREAT != 0) {
            return Err(Errno::EISDIR);
        }
        let regular = d.file_type() == libc::S_IFREG;
        if regular && d.mount().read_only() && (writes || flags & libc::O_TRUNC != 0) {
            return Err(Errno::EROFS);
        }
        if writes && d.mount().read_only() && d.is_dir() {
            return Err(Errno::EROFS);
        }
        let mut want = 0;
        if acc == libc::O_RDONLY || acc == libc::O_RDWR {
            want |= perm::MAY_READ;
        }
        if writes || flags & libc::O_TRUNC != 0 {
            want |= perm::MAY_WRITE;
        }
        perm::check(inode.as_ref(), want)?;
        if flags & libc::O_TRUNC != 0 && regular {
            inode.set_size(0)?;
        }
        let ops = inode.open(flags)?;
        Ok(OpenFile::new(Some(d), inode, ops, flags))
    }

    /// Creates a child of `pn.parent` with `make`, refusing an existing
    /// name, and caches its dentry.
    fn create_child(
        &self,
        pn: &ParentAndName,
        make: impl FnOnce(&dyn Inode) -> Result<Arc<dyn Inode>, Errno>,
    ) -> Result<Arc<Dentry>, Errno> {
        if pn.parent.is_unlinked() {
            return Err(Errno::ENOENT);
        }
        if pn.parent.mount().read_only() {
            return Err(Errno::EROFS);
        }
        if pn.parent.has_child(&pn.name)? {
            return Err(Errno::EEXIST);
        }
        perm::check(pn.parent.inode().as_ref(), perm::MAY_WRITE | perm::MAY_EXEC)?;
        let parent = pn.parent.clone();
        let d = parent.with_children(|children| {
            let inode = make(parent.inode().as_ref())?;
            let d = parent.new_child(&pn.name, inode);
            children.insert(pn.name.clone(), d.clone());
            Ok::<_, Errno>(d)
        })?;
        inotify::notify_child(&parent, &pn.name, IN_CREATE, d.is_dir(), 0);
        Ok(d)
    }

    /// mkdir(2)/mkdirat(2).
    pub fn mkdir_at(&self, start: &Arc<Dentry>, path: &[u8], mode: u32) -> Result<(), Errno> {
        let pn = self.resolve_parent(start, path)?;
        if pn.is_special() {
            return Err(Errno::EEXIST);
        }
        self.create_child(&pn, |dir| dir.mkdir(&pn.name, mode & 0o7777))
            .map(|_| ())
    }

    /// mknod(2) of a regular file, FIFO or socket node (bind(2) of a unix
    /// socket to a path too); `mode` holds the file type and permissions.
    pub fn mknod_at(&self, start: &Arc<Dentry>, path: &[u8], mode: u32) -> Result<(), Errno> {
        let pn = self.resolve_parent(start, path)?;
        if pn.is_special() || pn.trailing_slash {
            return Err(Errno::EEXIST);
        }
        self.create_child(&pn, |dir| dir.mknod(&pn.name, mode))
            .map(|_| ())
    }

    /// symlink(2)/symlinkat(2): a link at `path` whose text is `target`.
    pub fn symlink_at(&self, target: &[u8], start: &Arc<Dentry>, path: &[u8]) -> Result<(), Errno> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= super::resolve::PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let pn = self.resolve_parent(start, path)?;
        if pn.is_special() || pn.trailing_slash {
            return Err(Errno::EEXIST);
        }
        self.create_child(&pn, |dir| dir.symlink(&pn.name, target))
            .map(|_| ())
    }

    /// link(2)/linkat(2): the file `old` (already resolved) also named
    /// `new_path`. Errors come in Linux's order: the new name (ENOENT,
    /// EEXIST), then the mount (EROFS, EXDEV), then the file (EPERM for a
    /// directory, ENOENT for a file no longer linked anywhere).
    pub fn link_at(
        &self,
        old: &Arc<Dentry>,
        new_start: &Arc<Dentry>,
        new_path: &[u8],
    ) -> Result<(), Errno> {
        let pn = self.resolve_parent(new_start, new_path)?;
        if pn.is_special() {
            return Err(Errno::EEXIST);
        }
        if pn.parent.has_child(&pn.name)? {
            return Err(Errno::EEXIST);
        }
        if pn.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if pn.parent.mount().read_only() {
            return Err(Errno::EROFS);
        }
        if old.mount().id != pn.parent.mount().id {
            return Err(Errno::EXDEV);
        }
        if old.is_dir() {
            return Err(Errno::EPERM);
        }
        // A file no name is left to is ENOENT, unless it is an O_TMPFILE
        // file opened without O_EXCL, which may be named once (vfs_link's
        // I_LINKABLE); one with names left may get more, through any of
        // its dentries.
        let named = old.inode().stat().is_ok_and(|st| st.nlink > 0);
        let tmpfile = !named && old.take_linkable();
        if !named && !tmpfile {
            return Err(Errno::ENOENT);
        }
        if let Err(e) = perm::may_link(old.inode().as_ref()) {
            old.set_linkable(tmpfile);
            return Err(e);
        }
        let target = old.inode().clone();
        let made = self.create_child(&pn, |dir| {
            dir.link(&pn.name, target.as_ref())?;
            // Its link count changed (before the directory's IN_CREATE).
            inotify::notify_self(old, IN_ATTRIB);
            dir.lookup(&pn.name)
        });
        if made.is_err() && tmpfile {
            old.set_linkable(true);
        }
        made.map(|_| ())
    }

    /// unlink(2)/unlinkat(2); `flags` may hold AT_REMOVEDIR.
    pub fn unlink_at(&self, start: &Arc<Dentry>, path: &[u8], flags: i32) -> Result<(), Errno> {
        if flags & !libc::AT_REMOVEDIR != 0 {
            return Err(Errno::EINVAL);
        }
        let rmdir = flags & libc::AT_REMOVEDIR != 0;
        let pn = self.resolve_parent(start, path)?;
        match (rmdir, pn.name.as_slice()) {
            (true, b".") => return Err(Errno::EINVAL),
            (true, b"..") => return Err(Errno::ENOTEMPTY),
            (true, b"") => return Err(Errno::EBUSY),
            (false, b"" | b"." | b"..") => return Err(Errno::EISDIR),
            _ => {}
        }
        let child = pn.parent.child(&pn.name)?;
        if rmdir && !child.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !rmdir && child.is_dir() {
            return Err(Errno::EISDIR);
        }
        if !rmdir && pn.trailing_slash {
            return Err(Errno::ENOTDIR);
        }
        if child.mounted().is_some() {
            return Err(Errno::EBUSY);
        }
        if pn.parent.mount().read_only() {
            return Err(Errno::EROFS);
        }
        perm::may_delete(pn.parent.inode().as_ref(), child.inode().as_ref())?;
        let parent = pn.parent.clone();
        parent.with_children(|children| {
            if rmdir {
                parent.inode().rmdir(&pn.name)?;
            } else {
                parent.inode().unlink(&pn.name)?;
            }
            if let Some(d) = children.remove(&pn.name) {
                d.mark_unlinked();
            }
            Ok::<_, Errno>(())
        })?;
        // Linux's order: the file's link count, the file gone (once no
        // name is left), then the directory's entry.
        if !rmdir {
            inotify::notify_self(&child, IN_ATTRIB);
        }
        inotify::name_removed(&child);
        inotify::notify_child(&parent, &pn.name, IN_DELETE, rmdir, 0);
        Ok(())
    }

    /// readlink(2)/readlinkat(2): the link's text.
    pub fn readlink_at(&self, start: &Arc<Dentry>, path: &[u8]) -> Result<Vec<u8>, Errno> {
        let d = self.resolve(start, path, false)?;
        if !d.is_symlink() {
            return Err(Errno::EINVAL);
        }
        d.inode().readlink()
    }

    /// rename(2)/renameat2(2) with flags 0 or RENAME_NOREPLACE.
    pub fn rename_at(
        &self,
        old_start: &Arc<Dentry>,
        old_path: &[u8],
        new_start: &Arc<Dentry>,
        new_path: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        let _guard = lock(&self.rename_lock);
        let old = self.resolve_parent(old_start, old_path)?;
        let new = self.resolve_parent(new_start, new_path)?;
        if old.is_special() || new.is_special() {
            return Err(Errno::EBUSY);
        }
        let src = old.parent.child(&old.name)?;
        if (old.trailing_slash || new.trailing_slash) && !src.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if old.parent.mount().id != new.parent.mount().id {
            return Err(Errno::EXDEV);
        }
        if src.mounted().is_some() {
            return Err(Errno::EBUSY);
        }
        if old.parent.mount().read_only() {
            return Err(Errno::EROFS);
        }
        perm::may_delete(old.parent.inode().as_ref(), src.inode().as_ref())?;
        let mut replaced = None;
        match new.parent.child(&new.name) {
            Ok(dst) => {
                if Arc::ptr_eq(&dst, &src) {
                    return Ok(());
                }
                replaced = Some(dst.clone());
                perm::may_delete(new.parent.inode().as_ref(), dst.inode().as_ref())?;
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                if dst.mounted().is_some() {
                    return Err(Errno::EBUSY);
                }
                match (src.is_dir(), dst.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
            }
            Err(Errno::ENOENT) => {
                perm::check(
                    new.parent.inode().as_ref(),
                    perm::MAY_WRITE | perm::MAY_EXEC,
                )?;
            }
            Err(e) => return Err(e),
        }
        // A directory moving to another parent changes its "..".
        if src.is_dir() && !Arc::ptr_eq(&old.parent, &new.parent) {
            perm::check(src.inode().as_ref(), perm::MAY_WRITE)?;
        }
        // A directory cannot move below itself.
        if src.is_dir() {
            let mut p = Some(new.parent.clone());
            while let Some(d) = p {
                if Arc::ptr_eq(&d, &src) {
                    return Err(Errno::EINVAL);
                }
                p = d.parent();
            }
        }
        old.parent
            .inode()
            .rename(&old.name, new.parent.inode().as_ref(), &new.name)?;
        let moved = old.parent.with_children(|c| c.remove(&old.name));
        let moved = moved.unwrap_or(src);
        new.parent.with_children(|c| {
            if let Some(replaced) = c.insert(new.name.clone(), moved.clone()) {
                replaced.mark_unlinked();
            }
        });
        moved.set_parent(&new.parent, &new.name);
        drop(_guard);
        // fsnotify_move's order; a replaced file goes last.
        let cookie = inotify::new_cookie();
        let is_dir = moved.is_dir();
        inotify::notify_child(
            &old.parent,
            &old.name,
            inotify::IN_MOVED_FROM,
            is_dir,
            cookie,
        );
        inotify::notify_child(&new.parent, &new.name, inotify::IN_MOVED_TO, is_dir, cookie);
        if let Some(r) = &replaced {
            inotify::notify_self(r, IN_ATTRIB);
        }
        inotify::notify_self(&moved, IN_MOVE_SELF);
        if let Some(r) = replaced {
            inotify::name_removed(&r);
        }
        Ok(())
    }

    /// stat(2)/lstat(2)/newfstatat(2).
    pub fn stat_at(&self, start: &Arc<Dentry>, path: &[u8], follow: bool) -> Result<Stat, Errno> {
        self.resolve(start, path, follow)?.stat()
    }

    /// access(2)/faccessat(2): checked, path walk included, as `creds`
    /// (the real ids, or the effective ones with AT_EACCESS). A write to a
    /// read-only mount is EROFS.
    pub fn access_at(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        mode: i32,
        follow: bool,
        creds: perm::FsCreds,
    ) -> Result<(), Errno> {
        if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
            return Err(Errno::EINVAL);
        }
        perm::as_creds(creds, || {
            let d = self.resolve(start, path, follow)?;
            if mode & libc::W_OK != 0 && d.mount().read_only() {
                return Err(Errno::EROFS);
            }
            // R_OK, W_OK and X_OK are MAY_READ, MAY_WRITE and MAY_EXEC.
            perm::check(d.inode().as_ref(), mode as u32)
        })
    }

    /// truncate(2).
    pub fn truncate(&self, start: &Arc<Dentry>, path: &[u8], len: i64) -> Result<(), Errno> {
        let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
        let d = self.resolve(start, path, true)?;
        if d.is_dir() {
            return Err(Errno::EISDIR);
        }
        if d.file_type() != libc::S_IFREG {
            return Err(Errno::EINVAL);
        }
        if d.mount().read_only() {
            return Err(Errno::EROFS);
        }
        perm::check(d.inode().as_ref(), perm::MAY_WRITE)?;
        d.inode().set_size(len)?;
        inotify::notify(&d, IN_MODIFY);
        Ok(())
    }

    /// chmod(2)/fchmodat(2).
    pub fn chmod_at(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        mode: u32,
        follow: bool,
    ) -> Result<(), Errno> {
        let d = self.resolve(start, path, follow)?;
        if d.mount().read_only() {
            return Err(Errno::EROFS);
        }
        perm::chmod(d.inode().as_ref(), mode & 0o7777)?;
        inotify::notify(&d, IN_ATTRIB);
        Ok(())
    }

    /// utimensat(2) with a path; `None` leaves a time unchanged (UTIME_OMIT;
    /// the caller turns UTIME_NOW into the current time).
    pub fn utimes_at(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        times: perm::NewTimes,
        follow: bool,
    ) -> Result<(), Errno> {
        let d = self.resolve(start, path, follow)?;
        if d.mount().read_only() {
            return Err(Errno::EROFS);
        }
        perm::set_times(d.inode().as_ref(), times)?;
        inotify::notify(&d, IN_ATTRIB);
        Ok(())
    }

    /// chdir(2)/chroot helper: the directory at `path`.
    pub fn lookup_dir(&self, start: &Arc<Dentry>, path: &[u8]) -> Result<Arc<Dentry>, Errno> {
        let d = self.resolve(start, path, true)?;
        if !d.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        perm::check(d.inode().as_ref(), perm::MAY_EXEC)?;
        Ok(d)
    }

    /// The absolute path of `d` in this namespace (getcwd, /proc/self/fd,
    /// /proc/self/maps); " (deleted)" is appended for an unlinked file.
    pub fn dentry_path(&self, d: &Arc<Dentry>) -> String {
        let root = self.current_root();
        match super::mount_tree::path_in_root(d, &root) {
            Some(p) => {
                let mut s = String::from_utf8_lossy(&p).into_owned();
                if d.is_unlinked() {
                    s.push_str(" (deleted)");
                }
                s
            }
            None => path_of(d),
        }
    }

    /// getcwd(2)'s text: the path below the caller's root, or Linux's
    /// "(unreachable)" prefix for a directory outside it.
    pub fn cwd_path_bytes(&self, d: &Arc<Dentry>) -> Vec<u8> {
        let root = self.current_root();
        super::mount_tree::path_in_root(d, &root).unwrap_or_else(|| {
            let mut p = b"(unreachable)".to_vec();
            p.extend_from_slice(&path_bytes(d));
            p
        })
    }

    /// The raw bytes of [`Vfs::dentry_path`] (names need not be UTF-8).
    pub fn dentry_path_bytes(&self, d: &Arc<Dentry>) -> Vec<u8> {
        path_bytes(d)
    }
}

/// The absolute path of `d`, as a string.
pub(crate) fn path_of(d: &Arc<Dentry>) -> String {
    let mut s = String::from_utf8_lossy(&path_bytes(d)).into_owned();
    if d.is_unlinked() {
        s.push_str(" (deleted)");
    }
    s
}

/// The absolute path of `d`: its names up to the top, crossing mounts.
pub(crate) fn path_bytes(d: &Arc<Dentry>) -> Vec<u8> {
    let mut names = Vec::new();
    let mut cur = d.clone();
    // The depth bound guards against a cycle a bug could make.
    for _ in 0..super::resolve::PATH_MAX {
        if let Some(p) = cur.parent() {
            names.push(cur.name());
            cur = p;
        } else if let Some(mp) = cur.mountpoint() {
            cur = mp;
        } else {
            break;
        }
    }
    if names.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for n in names.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(n);
    }
    out
}

/// The open-file kind of an `S_IFMT` value.
pub(crate) fn kind_of(file_type: u32) -> super::file::FileKind {
    use super::file::FileKind;
    match file_type {
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFIFO => FileKind::PipeRead,
        _ => FileKind::Regular,
    }
}
