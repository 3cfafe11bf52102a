//! overlay: a writable tmpfs upper layer over a read-only lower layer (the
//! host root through the gofer), like Linux's overlayfs and gVisor's
//! fsimpl/overlay. The root of `cryo do`.
//!
//! Reads come from the lower layer until a file is changed; a change (open
//! for writing, truncate, chmod, utimes, create or delete in a directory)
//! first copies the file, and the directories above it, up into the upper
//! layer. Deleting a name that exists below leaves a whiteout in the upper
//! directory; a directory made where a whiteout was is opaque (hides the
//! lower directory of that name). The host never sees a write.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use super::dentry::lock;
use super::file::{DirOps, FileOps, Interrupt, IoCtx};
use super::inode::{DirEntry, Fingerprint, Inode};
use super::stat::{Stat, Timespec};
use super::tmpfs::{DirData, FileData, Kind, Tmpfs, TmpfsInode, TmpfsShared};
use crate::errno::Errno;

pub struct OverlayInode {
    me: Weak<OverlayInode>,
    /// Where this file sits, for copying its parents up (None at the root).
    parent: Mutex<Option<(Arc<OverlayInode>, Vec<u8>)>>,
    upper: Mutex<Option<Arc<TmpfsInode>>>,
    /// The lower file: the source of a copy-up, the lower half of a merged
    /// directory, and the origin whose inode number a copied-up file keeps.
    lower: Option<Arc<dyn Inode>>,
    file_type: u32,
    /// Children handed out and still alive: one object per file, so that a
    /// copy-up through any path is seen by every user of the file.
    children: Mutex<HashMap<Vec<u8>, Weak<OverlayInode>>>,
}

impl Drop for OverlayInode {
    /// Lets go of the parent chain without recursion: the last user of a
    /// file 20,000 directories deep would otherwise drop every ancestor one
    /// stack frame inside the next.
    fn drop(&mut self) {
        let mut next = self
            .parent
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        while let Some((parent, _)) = next {
            next = match Arc::into_inner(parent) {
                Some(mut p) => p.parent.get_mut().unwrap_or_else(|e| e.into_inner()).take(),
                None => None,
            };
        }
    }
}

/// The overlay's root over `lower` with the upper layer `upper`.
pub fn new_root(upper: &Arc<Tmpfs>, lower: Option<Arc<dyn Inode>>) -> Arc<OverlayInode> {
    OverlayInode::new(None, Some(upper.root()), lower, libc::S_IFDIR)
}

fn lookup_opt(dir: &dyn Inode, name: &[u8]) -> Result<Option<Arc<dyn Inode>>, Errno> {
    match dir.lookup(name) {
        Ok(i) => Ok(Some(i)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

impl OverlayInode {
    /// The usage of the upper layer this file's writes go to: its own
    /// upper file's, or its nearest ancestor's that has one (the root
    /// always does).
    pub(crate) fn upper_fs_usage(&self) -> Option<Arc<super::tmpfs::TmpfsUsage>> {
        if let Some(u) = lock(&self.upper).as_ref() {
            return Some(u.fs.usage.clone());
        }
        let mut next = lock(&self.parent).as_ref().map(|(p, _)| p.clone());
        while let Some(p) = next {
            if let Some(u) = lock(&p.upper).as_ref() {
                return Some(u.fs.usage.clone());
            }
            next = lock(&p.parent).as_ref().map(|(p, _)| p.clone());
        }
        None
    }

    fn new(
        parent: Option<(Arc<OverlayInode>, Vec<u8>)>,
        upper: Option<Arc<TmpfsInode>>,
        lower: Option<Arc<dyn Inode>>,
        file_type: u32,
    ) -> Arc<OverlayInode> {
        Arc::new_cyclic(|me| OverlayInode {
            me: me.clone(),
            parent: Mutex::new(parent),
            upper: Mutex::new(upper),
            lower,
            file_type,
            children: Mutex::new(HashMap::new()),
        })
    }

    /// The child `name` (the live object if there is one).
    fn get_child(&self, name: &[u8]) -> Result<Option<Arc<OverlayInode>>, Errno> {
        if !self.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let mut children = lock(&self.children);
        if let Some(c) = children.get(name).and_then(|w| w.upgrade()) {
            return Ok(Some(c));
        }
        let upper = self.upper();
        let up_child = upper.as_ref().and_then(|u| u.child(name));
        let low_child = self.lower_child(upper.as_ref(), name)?;
        let me = self.arc()?;
        let child = match (up_child, low_child) {
            (None, None) => {
                children.remove(name);
                return Ok(None);
            }
            (Some(u), low) => {
                let ft = u.file_type();
                let low = low.filter(|l| l.file_type() == ft);
                OverlayInode::new(Some((me, name.to_vec())), Some(u), low, ft)
            }
            (None, Some(l)) => {
                let ft = l.file_type();
                OverlayInode::new(Some((me, name.to_vec())), None, Some(l), ft)
            }
        };
        children.insert(name.to_vec(), Arc::downgrade(&child));
        Ok(Some(child))
    }

    fn forget_child(&self, name: &[u8]) {
        lock(&self.children).remove(name);
    }

    fn arc(&self) -> Result<Arc<OverlayInode>, Errno> {
        self.me.upgrade().ok_or(Errno::ENOENT)
    }

    pub fn upper(&self) -> Option<Arc<TmpfsInode>> {
        lock(&self.upper).clone()
    }

    /// The lower directory still visible under this one (none once the
    /// upper directory is opaque).
    fn visible_lower(&self, upper: Option<&Arc<TmpfsInode>>) -> Option<&Arc<dyn Inode>> {
        if upper.is_some_and(|u| u.is_opaque()) {
            return None;
        }
        self.lower.as_ref().filter(|l| l.is_dir())
    }

    /// The lower entry `name` if it shows through (no upper entry hides it).
    fn lower_child(
        &self,
        upper: Option<&Arc<TmpfsInode>>,
        name: &[u8],
    ) -> Result<Option<Arc<dyn Inode>>, Errno> {
        if upper.is_some_and(|u| u.has_whiteout(name)) {
            return Ok(None);
        }
        match self.visible_lower(upper) {
            Some(l) => lookup_opt(l.as_ref(), name),
            None => Ok(None),
        }
    }

    /// Copies this file (and its ancestors) into the upper layer, returning
    /// the upper file.
    pub fn copy_up(&self) -> Result<Arc<TmpfsInode>, Errno> {
        // Holding our own lock through the copy makes concurrent copy-ups
        // of one file wait for the first; locks are taken child before
        // parent, never the other way.
        let mut upper = lock(&self.upper);
        if let Some(u) = upper.as_ref() {
            return Ok(u.clone());
        }
        let (parent, name) = lock(&self.parent).clone().ok_or(Errno::EIO)?;
        let parent_upper = parent.copy_up()?;
        let lower = self.lower.as_ref().ok_or(Errno::EIO)?;
        let st = lower.stat()?;
        let kind = match self.file_type {
            libc::S_IFDIR => Kind::Dir(DirData::default()),
            libc::S_IFLNK => Kind::Symlink(lower.readlink()?),
            libc::S_IFREG => Kind::File(copy_data(lower.as_ref(), &parent_upper.fs)?),
            // A host FIFO becomes a FIFO of the sandbox: its buffer was
            // never part of the file, and the host's is never opened.
            libc::S_IFIFO => Kind::File(FileData::new(&parent_upper.fs)),
            // Devices and sockets of the host are not copied.
            _ => return Err(Errno::EPERM),
        };
        let u = parent_upper.insert_copy(&name, &st, kind)?;
        *upper = Some(u.clone());
        Ok(u)
    }

    /// Creates child `name` in the upper layer with `make`.
    fn create_upper(
        &self,
        name: &[u8],
        make: impl FnOnce(&TmpfsInode) -> Result<Arc<dyn Inode>, Errno>,
    ) -> Result<Arc<dyn Inode>, Errno> {
        if self.get_child(name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let dir = self.copy_up()?;
        make(&dir)?;
        let child = dir.child(name).ok_or(Errno::EIO)?;
        if dir.remove_whiteout(name) && child.is_dir() {
            // A directory replacing a deleted one must not show the old
            // directory's lower contents.
            child.set_opaque();
        }
        self.forget_child(name);
        match self.get_child(name)? {
            Some(c) => Ok(c),
            None => Err(Errno::EIO),
        }
    }

    /// Removes child `name`, leaving a whiteout if the lower layer has it.
    fn remove(&self, name: &[u8], dir: bool) -> Result<(), Errno> {
        let child = self.get_child(name)?.ok_or(Errno::ENOENT)?;
        if dir && !child.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !dir && child.is_dir() {
            return Err(Errno::EISDIR);
        }
        if dir && !child.readdir()?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        let upper = self.copy_up()?;
        let in_lower = self.lower_child(Some(&upper), name)?.is_some();
        if upper.child(name).is_some() {
            if dir {
                // Only whiteouts can be left in it (the merged view is
                // empty); they go with it.
                if let Some(c) = upper.child(name) {
                    if let Kind::Dir(d) = &mut c.lock().kind {
                        d.whiteouts.clear();
                    }
                }
                upper.rmdir(name)?;
            } else {
                upper.unlink(name)?;
            }
        }
        if in_lower {
            upper.add_whiteout(name)?;
        }
        self.forget_child(name);
        Ok(())
    }
}

/// The whole contents of a lower regular file, in pages of `mf`.
fn copy_data(lower: &dyn Inode, fs: &TmpfsShared) -> Result<FileData, Errno> {
    let ops = lower.open(libc::O_RDONLY)?;
    let intr = Interrupt::new();
    let io = IoCtx {
        interrupt: &intr,
        nonblock: false,
    };
    let mut data = FileData::new(fs);
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = ops.read(&io, &mut buf, Some(off))?;
        if n == 0 {
            break;
        }
        data.write_bytes(off, &buf[..n])?;
        off += n as u64;
    }
    Ok(data)
}

impl Inode for OverlayInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        self.file_type
    }

    fn stat(&self) -> Result<Stat, Errno> {
        match (self.upper(), &self.lower) {
            (Some(u), Some(l)) => {
                let mut st = u.stat()?;
                // A copied-up file keeps its inode number, as overlayfs
                // does, so that it stays the same file to the application;
                // once hard-linked in the upper layer it takes the upper
                // file's number, which every one of its names reports.
                if l.file_type() == self.file_type && (self.is_dir() || st.nlink <= 1) {
                    st.ino = l.stat()?.ino;
                }
                Ok(st)
            }
            (Some(u), None) => u.stat(),
            (None, Some(l)) => l.stat(),
            (None, None) => Err(Errno::ENOENT),
        }
    }

    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        match self.get_child(name)? {
            Some(c) => Ok(c),
            None => Err(Errno::ENOENT),
        }
    }

    /// Where the upper layer has nothing of the first name (no entry, no
    /// whiteout), nothing below it has an upper either: the whole run is
    /// the lower layer's, looked up there in one go (one gofer round trip
    /// for a host path) and wrapped as lower-only overlay files.
    fn lookup_path(&self, names: &[&[u8]]) -> Result<Vec<Arc<dyn Inode>>, Errno> {
        let Some(first) = names.first() else {
            return Ok(Vec::new());
        };
        if names.len() == 1 || !self.is_dir() {
            return Ok(vec![self.lookup(first)?]);
        }
        let mut children = lock(&self.children);
        let upper = self.upper();
        let live = children.get(*first).and_then(|w| w.upgrade());
        let upper_has = upper
            .as_ref()
            .is_some_and(|u| u.child(first).is_some() || u.has_whiteout(first));
        let lower = match (live, upper_has, self.visible_lower(upper.as_ref())) {
            (None, false, Some(l)) => l.clone(),
            _ => {
                drop(children);
                return Ok(vec![self.lookup(first)?]);
            }
        };
        let lows = lower.lookup_path(names)?;
        let mut out: Vec<Arc<dyn Inode>> = Vec::with_capacity(lows.len());
        let mut parent = self.arc()?;
        for (i, (l, name)) in lows.into_iter().zip(names).enumerate() {
            let ft = l.file_type();
            let child = OverlayInode::new(Some((parent.clone(), name.to_vec())), None, Some(l), ft);
            if i == 0 {
                children.insert(name.to_vec(), Arc::downgrade(&child));
            } else {
                // A directory made just now: nobody else has seen it.
                lock(&parent.children).insert(name.to_vec(), Arc::downgrade(&child));
            }
            out.push(child.clone());
            parent = child;
        }
        Ok(out)
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        if !self.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let upper = self.upper();
        let mut merged: BTreeMap<Vec<u8>, DirEntry> = BTreeMap::new();
        if let Some(l) = self.visible_lower(upper.as_ref()) {
            for e in l.readdir()? {
                merged.insert(e.name.clone(), e);
            }
        }
        if let Some(u) = &upper {
            for w in u.whiteouts() {
                merged.remove(&w);
            }
            for mut e in u.readdir()? {
                if let Some(low) = merged.get(&e.name) {
                    if low.dtype == e.dtype {
                        e.ino = low.ino;
                    }
                }
                merged.insert(e.name.clone(), e);
            }
        }
        Ok(merged.into_values().collect())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        match (self.upper(), &self.lower) {
            (Some(u), _) => u.readlink(),
            (None, Some(l)) => l.readlink(),
            (None, None) => Err(Errno::ENOENT),
        }
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        if self.is_dir() {
            return Ok(Arc::new(DirOps));
        }
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if let Some(u) = self.upper() {
            return u.open(flags);
        }
        if writes || self.file_type == libc::S_IFIFO {
            return self.copy_up()?.open(flags);
        }
        match &self.lower {
            Some(l) => l.open(flags),
            None => Err(Errno::ENOENT),
        }
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        self.create_upper(name, |d| d.create(name, mode))
    }

    fn mkdir(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        self.create_upper(name, |d| d.mkdir(name, mode))
    }

    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        self.create_upper(name, |d| d.symlink(name, target))
    }

    fn mknod(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        self.create_upper(name, |d| d.mknod(name, mode))
    }

    /// In the upper layer: the file never has a lower one.
    fn tmpfile(&self, mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        Ok(self.copy_up()?.new_tmpfile(mode)?)
    }

    fn attach_fifo(&self, pipe: &Arc<super::pipe::Pipe>) -> Result<(), Errno> {
        match self.upper() {
            Some(u) => u.attach_fifo(pipe),
            None => Err(Errno::ENXIO),
        }
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        self.remove(name, false)
    }

    /// A hard link in the upper layer: a lower file is copied up first, and
    /// both names then share the upper file.
    fn link(&self, name: &[u8], target: &dyn Inode) -> Result<(), Errno> {
        // An overlay file, or an O_TMPFILE file of the upper layer (which
        // `tmpfile` made there directly).
        let target_upper = match target.as_any().downcast_ref::<OverlayInode>() {
            Some(o) => o.copy_up()?,
            None => target
                .as_any()
                .downcast_ref::<TmpfsInode>()
                .and_then(TmpfsInode::arc)
                .ok_or(Errno::EXDEV)?,
        };
        self.create_upper(name, |dir| {
            dir.add_link(name, &target_upper)?;
            Ok(target_upper.clone() as Arc<dyn Inode>)
        })
        .map(|_| ())
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        self.remove(name, true)
    }

    fn rename(&self, old_name: &[u8], new_dir: &dyn Inode, new_name: &[u8]) -> Result<(), Errno> {
        let new_dir = new_dir
            .as_any()
            .downcast_ref::<OverlayInode>()
            .ok_or(Errno::EXDEV)?;
        let src = self.get_child(old_name)?.ok_or(Errno::ENOENT)?;
        if src.is_dir() && src.visible_lower(src.upper().as_ref()).is_some() {
            // Like overlayfs without redirect_dir: a directory with lower
            // contents cannot move; mv falls back to copy and delete.
            return Err(Errno::EXDEV);
        }
        let old_upper_dir = self.copy_up()?;
        let src_upper = src.copy_up()?;
        let new_upper_dir = new_dir.copy_up()?;
        if let Some(dst) = new_dir.get_child(new_name)? {
            if dst.is_dir() && !dst.readdir()?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
        }
        let src_in_lower = self.lower_child(Some(&old_upper_dir), old_name)?.is_some();
        let dst_in_lower = new_dir
            .lower_child(Some(&new_upper_dir), new_name)?
            .is_some();
        super::tmpfs::rename(&old_upper_dir, old_name, &new_upper_dir, new_name)?;
        if src_in_lower {
            old_upper_dir.add_whiteout(old_name)?;
        }
        if dst_in_lower && src_upper.is_dir() {
            src_upper.set_opaque();
        }
        let new_parent = new_dir.arc()?;
        *lock(&src.parent) = Some((new_parent, new_name.to_vec()));
        self.forget_child(old_name);
        lock(&new_dir.children).insert(new_name.to_vec(), Arc::downgrade(&src));
        Ok(())
    }

    fn set_size(&self, size: u64) -> Result<(), Errno> {
        self.copy_up()?.set_size(size)
    }

    fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>) -> Result<(), Errno> {
        self.copy_up()?.set_times(atime, mtime)
    }

    fn chmod(&self, mode: u32) -> Result<(), Errno> {
        self.copy_up()?.chmod(mode)
    }

    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        self.copy_up()?.chown(uid, gid)
    }

    /// The upper layer's attributes once copied up; a file still only on
    /// the lower layer has none (the gofer serves no xattrs: its EOPNOTSUPP
    /// reads as an empty set), and setting one copies it up.
    fn get_xattr(&self, name: &[u8]) -> Result<Vec<u8>, Errno> {
        match self.upper() {
            Some(u) => u.get_xattr(name),
            None => Err(Errno::ENODATA),
        }
    }

    fn set_xattr(&self, name: &[u8], value: &[u8], flags: i32) -> Result<(), Errno> {
        if self.upper().is_none() && flags & libc::XATTR_REPLACE != 0 {
            return Err(Errno::ENODATA);
        }
        self.copy_up()?.set_xattr(name, value, flags)
    }

    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        match self.upper() {
            Some(u) => u.list_xattr(),
            None => Ok(Vec::new()),
        }
    }

    fn remove_xattr(&self, name: &[u8]) -> Result<(), Errno> {
        match self.upper() {
            Some(u) => u.remove_xattr(name),
            None => Err(Errno::ENODATA),
        }
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        if self.upper().is_some() {
            return None;
        }
        self.lower.as_ref().and_then(|l| l.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::gofer_fs::GoferInode;
    use crate::vfs::testing::{FixedClock, LocalDirFs};
    use crate::vfs::tmpfs::tests::parse_dirents;
    use crate::vfs::vfs::{MountOpts, Vfs};

    fn host_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("etc/sub")).unwrap();
        std::fs::write(p.join("etc/hostname"), b"host\n").unwrap();
        std::fs::write(p.join("etc/sub/deep"), b"deep").unwrap();
        std::fs::write(p.join("etc/other"), b"other").unwrap();
        std::os::unix::fs::symlink("hostname", p.join("etc/link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", p.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", p.join("etc/sub/esc")).unwrap();
        dir
    }

    fn overlay_vfs(dir: &std::path::Path) -> (Vfs, Arc<Tmpfs>) {
        let host = LocalDirFs::new(dir);
        let lower = GoferInode::root(host).unwrap();
        let upper = Tmpfs::new(Arc::new(FixedClock(7)), 0o755);
        let root = new_root(&upper, Some(lower));
        let vfs = Vfs::new(
            root,
            MountOpts {
                fs_type: "overlay",
                read_only: false,
            },
        );
        (vfs, upper)
    }

    fn read_all(vfs: &Vfs, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let f = vfs.open_at(&vfs.root(), p, libc::O_RDONLY, 0)?;
        let mut out = vec![0u8; 4096];
        let n = f.read(&mut out, &Interrupt::new())?;
        out.truncate(n);
        Ok(out)
    }

    fn list(vfs: &Vfs, p: &[u8]) -> Vec<String> {
        let f = vfs
            .open_at(&vfs.root(), p, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        parse_dirents(&f.getdents64(1 << 16).unwrap())
            .into_iter()
            .map(|e| e.3)
            .skip(2)
            .collect()
    }

    #[test]
    fn reads_and_symlinks_come_from_lower() {
        let dir = host_tree();
        let (vfs, _) = overlay_vfs(dir.path());
        assert_eq!(read_all(&vfs, b"/etc/hostname").unwrap(), b"host\n");
        assert_eq!(read_all(&vfs, b"/etc/link").unwrap(), b"host\n");
        assert_eq!(read_all(&vfs, b"/abs").unwrap(), b"host\n");
        // `..` through a host symlink stays inside the sandbox's root.
        assert_eq!(read_all(&vfs, b"/etc/sub/esc/hostname").unwrap(), b"host\n");
        let r = vfs.root().clone();
        let f = vfs
            .open_at(&r, b"/etc/hostname", libc::O_RDONLY, 0)
            .unwrap();
        assert!(f.inode().fingerprint().is_some());
        let m = f.as_mappable().unwrap();
        let mut b = [0u8; 4];
        assert_eq!(m.read_at(0, &mut b), Ok(4));
        assert_eq!(&b, b"host");
        assert_eq!(m.mapping_name(), "/etc/hostname");
    }

    #[test]
    fn hard_link_of_a_lower_file_copies_it_up_once() {
        let dir = host_tree();
        let (vfs, _) = overlay_vfs(dir.path());
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let old = vfs.resolve(&r, b"/etc/sub/deep", false).unwrap();
        vfs.link_at(&old, &r, b"/etc/twin").unwrap();
        let a = vfs.stat_at(&r, b"/etc/sub/deep", false).unwrap();
        let b = vfs.stat_at(&r, b"/etc/twin", false).unwrap();
        assert_eq!((a.ino, a.nlink), (b.ino, 2), "one file, two names");
        let f = vfs.open_at(&r, b"/etc/twin", libc::O_RDWR, 0).unwrap();
        assert_eq!(f.pwrite(b"DEEP", 0, &intr), Ok(4));
        assert_eq!(read_all(&vfs, b"/etc/sub/deep").unwrap(), b"DEEP");
        vfs.unlink_at(&r, b"/etc/sub/deep", 0).unwrap();
        assert_eq!(vfs.stat_at(&r, b"/etc/twin", false).unwrap().nlink, 1);
        assert_eq!(read_all(&vfs, b"/etc/twin").unwrap(), b"DEEP");
        // A deleted lower name stays hidden, the host untouched.
        assert_eq!(read_all(&vfs, b"/etc/sub/deep").err(), Some(Errno::ENOENT));
        assert_eq!(
            std::fs::read(dir.path().join("etc/sub/deep")).unwrap(),
            b"deep"
        );
        assert!(!dir.path().join("etc/twin").exists());
        let sub = vfs.resolve(&r, b"/etc/sub", false).unwrap();
        assert_eq!(
            vfs.link_at(&sub, &r, b"/etc/sub2").err(),
            Some(Errno::EPERM)
        );
    }

    #[test]
    fn copy_up_leaves_host_untouched() {
        let dir = host_tree();
        let (vfs, upper) = overlay_vfs(dir.path());
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let ino = vfs.stat_at(&r, b"/etc/sub/deep", true).unwrap().ino;
        let f = vfs.open_at(&r, b"/etc/sub/deep", libc::O_RDWR, 0).unwrap();
        assert_eq!(f.pwrite(b"DEEP!", 0, &intr), Ok(5));
        assert_eq!(read_all(&vfs, b"/etc/sub/deep").unwrap(), b"DEEP!");
        assert_eq!(
            vfs.stat_at(&r, b"/etc/sub/deep", true).unwrap().ino,
            ino,
            "copy-up keeps the inode number"
        );
        assert!(f.inode().fingerprint().is_none());
        vfs.truncate(&r, b"/etc/hostname", 2).unwrap();
        assert_eq!(read_all(&vfs, b"/etc/hostname").unwrap(), b"ho");
        let g = vfs
            .open_at(&r, b"/etc/new", libc::O_CREAT | libc::O_WRONLY, 0o600)
            .unwrap();
        g.write(b"n", &intr).unwrap();
        vfs.mkdir_at(&r, b"/etc/sub/newdir", 0o755).unwrap();
        vfs.chmod_at(&r, b"/etc/other", 0o600, true).unwrap();
        vfs.rename_at(&r, b"/etc/other", &r, b"/etc/moved", 0)
            .unwrap();
        assert_eq!(read_all(&vfs, b"/etc/moved").unwrap(), b"other");
        assert_eq!(read_all(&vfs, b"/etc/other").err(), Some(Errno::ENOENT));
        // The host is unchanged.
        let p = dir.path();
        assert_eq!(std::fs::read(p.join("etc/sub/deep")).unwrap(), b"deep");
        assert_eq!(std::fs::read(p.join("etc/hostname")).unwrap(), b"host\n");
        assert_eq!(std::fs::read(p.join("etc/other")).unwrap(), b"other");
        assert!(
            !p.join("etc/new").exists()
                && !p.join("etc/sub/newdir").exists()
                && !p.join("etc/moved").exists()
        );
        // The upper layer holds exactly the copies.
        let up_etc = upper.root().child(b"etc").unwrap();
        assert!(up_etc.child(b"sub").unwrap().child(b"deep").is_some());
        assert!(up_etc.child(b"link").is_none());
        assert!(up_etc.has_whiteout(b"other"));
    }

    #[test]
    fn whiteouts_and_merged_readdir() {
        let dir = host_tree();
        let (vfs, _) = overlay_vfs(dir.path());
        let r = vfs.root().clone();
        assert_eq!(list(&vfs, b"/etc"), ["hostname", "link", "other", "sub"]);
        vfs.unlink_at(&r, b"/etc/hostname", 0).unwrap();
        vfs.open_at(&r, b"/etc/zzz", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        assert_eq!(list(&vfs, b"/etc"), ["link", "other", "sub", "zzz"]);
        assert_eq!(read_all(&vfs, b"/etc/hostname").err(), Some(Errno::ENOENT));
        assert_eq!(
            read_all(&vfs, b"/etc/link").err(),
            Some(Errno::ENOENT),
            "dangling now"
        );
        assert!(dir.path().join("etc/hostname").exists());
        // Re-creating a deleted name shows only the new file.
        let f = vfs
            .open_at(&r, b"/etc/hostname", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        f.write(b"sandbox", &Interrupt::new()).unwrap();
        assert_eq!(read_all(&vfs, b"/etc/link").unwrap(), b"sandbox");
        // rmdir of a non-empty lower directory, then of an emptied one.
        assert_eq!(
            vfs.unlink_at(&r, b"/etc/sub", libc::AT_REMOVEDIR),
            Err(Errno::ENOTEMPTY)
        );
        vfs.unlink_at(&r, b"/etc/sub/deep", 0).unwrap();
        vfs.unlink_at(&r, b"/etc/sub/esc", 0).unwrap();
        assert!(list(&vfs, b"/etc/sub").is_empty());
        vfs.unlink_at(&r, b"/etc/sub", libc::AT_REMOVEDIR).unwrap();
        assert!(!list(&vfs, b"/etc").contains(&"sub".to_string()));
        // A new directory of the same name is opaque: empty.
        vfs.mkdir_at(&r, b"/etc/sub", 0o755).unwrap();
        assert!(list(&vfs, b"/etc/sub").is_empty());
        assert_eq!(read_all(&vfs, b"/etc/sub/deep").err(), Some(Errno::ENOENT));
        // A lower directory with contents cannot be renamed (EXDEV).
        assert_eq!(
            vfs.rename_at(&r, b"/etc", &r, b"/etc2", 0),
            Err(Errno::EXDEV)
        );
        assert!(dir.path().join("etc/sub/deep").exists());
    }
}
