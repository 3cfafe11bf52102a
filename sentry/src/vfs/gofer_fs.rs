//! gofer_fs: the host's files, reached only through the gofer (gVisor's
//! fsimpl/gofer). The Sentry resolves `..` and symlinks itself; the gofer
//! only walks plain names, several in one round trip: a cold lookup of
//! `/usr/share/doc/x/y` is one request (see [`Inode::lookup_path`]). An
//! opened file is a host fd passed by the gofer, read with pread (gVisor's
//! host-fd donation).
//!
//! On a read-only mount (the host root under the overlay) an inode holds no
//! gofer handle until it needs one: a lookup asks for stats only
//! (`WalkStat`), a read-only open of a regular file walks and opens in one
//! request (`WalkOpen`), and only listing a directory, reading a link or
//! walking on from a directory not reached before makes handles. So `stat`
//! of every file of a tree (`du`) costs the gofer no fd per file. A listing
//! also brings every entry's stat, kept until the entry is looked up, and a
//! name the listing lacks (or a walk just missed) is ENOENT at once for a
//! second ([`KNOWN_FOR`]), so a file the host adds later is still found. On a
//! writable mount (a container's rw bind) every inode has its handle from
//! the start, so renames and unlinks of the sandbox never leave an inode
//! that would have to be found again by a name that moved.
//!
//! Everything gofer-specific sits behind [`HostFs`], so the rest of the VFS
//! (and its tests) never depends on the wire protocol.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::dentry::lock;
use super::file::{DirOps, FileKind, FileOps, IoCtx, SaveAs};
use super::inode::{DirEntry, Fingerprint, Inode};
use super::stat::{Stat, Timespec};
use crate::errno::Errno;

/// A host file as the [`HostFs`] that produced it names it (a gofer handle
/// id). Host-specific: never saved.
pub type HostNode = u64;

/// What a walk of several names reached: a node and stat per name, in
/// order, and the errno of the name after the last one when that one could
/// not be reached (`None`: every name was, or the walk stopped after a
/// symlink with names behind it).
pub type WalkMany = (Vec<(HostNode, Stat)>, Option<Errno>);

/// [`WalkMany`] without nodes.
pub type WalkStats = (Vec<Stat>, Option<Errno>);

/// A directory's stat and its entries, each with its stat if the host gave
/// one.
pub type Listed = (Stat, Vec<(DirEntry, Option<Stat>)>);

fn dir_entries(entries: Vec<gofer::DirEntry>) -> Vec<(DirEntry, Option<Stat>)> {
    entries
        .into_iter()
        .map(|e| {
            let st = e.stat.as_ref().map(stat_from_gofer);
            (
                DirEntry {
                    dtype: e.file_type.dirent_type(),
                    name: e.name,
                    ino: e.ino,
                },
                st,
            )
        })
        .collect()
}

/// The attributes a setattr changes; `None` leaves one as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<Timespec>,
    pub mtime: Option<Timespec>,
}

/// What the VFS needs of the host's file tree. No call follows a symlink
/// or accepts `..`.
pub trait HostFs: Send + Sync {
    fn root(&self) -> Result<(HostNode, Stat), Errno>;
    /// The child `name` of directory `dir`.
    fn walk(&self, dir: HostNode, name: &[u8]) -> Result<(HostNode, Stat), Errno>;
    /// `names` down from `dir`, stopping after a symlink that has names
    /// behind it, or at a name that cannot be reached. The default walks
    /// one name at a time.
    fn walk_many(&self, dir: HostNode, names: &[&[u8]]) -> Result<WalkMany, Errno> {
        let mut out = Vec::with_capacity(names.len());
        let mut cur = dir;
        for (i, name) in names.iter().enumerate() {
            match self.walk(cur, name) {
                Ok((n, st)) => {
                    let stop = st.is_symlink() && i + 1 < names.len();
                    cur = n;
                    out.push((n, st));
                    if stop {
                        break;
                    }
                }
                Err(e) => return Ok((out, Some(e))),
            }
        }
        Ok((out, None))
    }
    /// [`HostFs::walk_many`]'s stats, leaving no node behind.
    fn walk_stat(&self, dir: HostNode, names: &[&[u8]]) -> Result<WalkStats, Errno> {
        let (nodes, err) = self.walk_many(dir, names)?;
        let mut stats = Vec::with_capacity(nodes.len());
        for (n, st) in nodes {
            self.close(n);
            stats.push(st);
        }
        Ok((stats, err))
    }
    fn stat(&self, node: HostNode) -> Result<Stat, Errno>;
    /// The entries of a directory, without `.` and `..`.
    fn readdir(&self, node: HostNode) -> Result<Vec<DirEntry>, Errno>;
    /// [`HostFs::readdir`] with each entry's stat where the host gives it.
    fn readdir_stat(&self, node: HostNode) -> Result<Vec<(DirEntry, Option<Stat>)>, Errno> {
        Ok(self.readdir(node)?.into_iter().map(|e| (e, None)).collect())
    }
    /// The directory `names` below `dir` listed without making a node: its
    /// stat and entries with theirs, or `None` when the host cannot (a
    /// listing too long for one gofer reply): list it through its node.
    fn readdir_at(&self, _dir: HostNode, _names: &[&[u8]]) -> Result<Option<Listed>, Errno> {
        Ok(None)
    }
    fn readlink(&self, node: HostNode) -> Result<Vec<u8>, Errno>;
    /// A read-only host fd of a regular file.
    fn open(&self, node: HostNode) -> Result<OwnedFd, Errno>;
    /// A read-only host fd of the regular file `names` below `dir` (no
    /// symlink on the way), and its stat, making no node.
    fn open_path(&self, dir: HostNode, names: &[&[u8]]) -> Result<(OwnedFd, Stat), Errno> {
        let (nodes, err) = self.walk_many(dir, names)?;
        let last = match (err, nodes.last()) {
            (None, Some((n, st))) if nodes.len() == names.len() => Ok((*n, st.clone())),
            (Some(e), _) => Err(e),
            _ => Err(Errno::ELOOP),
        };
        let opened = last.and_then(|(n, st)| Ok((self.open(n)?, st)));
        for (n, _) in nodes {
            self.close(n);
        }
        opened
    }
    /// Forgets a node.
    fn close(&self, node: HostNode);
    /// Whether writes reach the host (a rw bind mount of a container);
    /// otherwise every change is EROFS.
    fn writable(&self) -> bool {
        false
    }
    /// A host fd of a regular file open for writing (`flags`: O_WRONLY or
    /// O_RDWR, O_TRUNC, O_APPEND).
    fn open_write(&self, _node: HostNode, _flags: i32) -> Result<OwnedFd, Errno> {
        Err(Errno::EROFS)
    }
    /// Makes the regular file `name` in directory `dir`.
    fn create(&self, _dir: HostNode, _name: &[u8], _mode: u32) -> Result<(HostNode, Stat), Errno> {
        Err(Errno::EROFS)
    }
    /// Makes the directory `name` in directory `dir`.
    fn mkdir(&self, _dir: HostNode, _name: &[u8], _mode: u32) -> Result<(HostNode, Stat), Errno> {
        Err(Errno::EROFS)
    }
    /// Makes the symlink `name` in directory `dir`.
    fn symlink(
        &self,
        _dir: HostNode,
        _name: &[u8],
        _target: &[u8],
    ) -> Result<(HostNode, Stat), Errno> {
        Err(Errno::EROFS)
    }
    /// Removes `name` from directory `dir` (an empty directory: `rmdir`).
    fn unlink(&self, _dir: HostNode, _name: &[u8], _rmdir: bool) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    /// Moves `old` (directory, name) to `new`.
    fn rename(&self, _old: (HostNode, &[u8]), _new: (HostNode, &[u8])) -> Result<(), Errno> {
        Err(Errno::EROFS)
    }
    /// Changes the node's mode, owner, size or times on the host and
    /// returns its new stat.
    fn setattr(&self, _node: HostNode, _attrs: &SetAttrs) -> Result<Stat, Errno> {
        Err(Errno::EROFS)
    }
}

/// [`HostFs`] over a gofer connection.
pub struct GoferHostFs {
    client: gofer::Client,
    handles: Mutex<HashMap<HostNode, gofer::Handle>>,
    writable: bool,
}

fn gofer_errno(e: gofer::GoferError) -> Errno {
    Errno(e.errno())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec { sec, nsec }
}

/// A gofer stat as the VFS's.
pub fn stat_from_gofer(s: &gofer::FileStat) -> Stat {
    Stat {
        dev: s.dev,
        ino: s.ino,
        mode: s.mode,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        rdev: s.rdev,
        size: u64::try_from(s.size).unwrap_or(0),
        blksize: u32::try_from(s.blksize).unwrap_or(4096),
        blocks: u64::try_from(s.blocks).unwrap_or(0),
        atime: ts(s.atime_sec, s.atime_nsec),
        mtime: ts(s.mtime_sec, s.mtime_nsec),
        ctime: ts(s.ctime_sec, s.ctime_nsec),
    }
}

fn walk_errno(status: gofer::WalkStatus) -> Option<Errno> {
    match status {
        gofer::WalkStatus::Failed { errno } => Some(Errno(errno)),
        _ => None,
    }
}

impl GoferHostFs {
    pub fn new(client: gofer::Client) -> GoferHostFs {
        GoferHostFs {
            client,
            handles: Mutex::new(HashMap::new()),
            writable: false,
        }
    }

    /// Over a gofer that takes writes (a container's rw bind mount): opens
    /// for writing and new files reach the host.
    pub fn new_writable(client: gofer::Client) -> GoferHostFs {
        GoferHostFs {
            writable: true,
            ..GoferHostFs::new(client)
        }
    }

    fn handle(&self, node: HostNode) -> Result<gofer::Handle, Errno> {
        lock(&self.handles).get(&node).copied().ok_or(Errno::EBADF)
    }

    fn remember(&self, h: gofer::Handle) -> HostNode {
        lock(&self.handles).insert(h.id(), h);
        h.id()
    }
}

impl HostFs for GoferHostFs {
    fn root(&self) -> Result<(HostNode, Stat), Errno> {
        let h = self.client.attach().map_err(gofer_errno)?;
        let st = self.client.stat(&h).map_err(gofer_errno)?;
        Ok((self.remember(h), stat_from_gofer(&st)))
    }

    fn walk(&self, dir: HostNode, name: &[u8]) -> Result<(HostNode, Stat), Errno> {
        let (mut nodes, err) = self.walk_many(dir, &[name])?;
        match nodes.pop() {
            Some(n) => Ok(n),
            None => Err(err.unwrap_or(Errno::EIO)),
        }
    }

    fn walk_many(&self, dir: HostNode, names: &[&[u8]]) -> Result<WalkMany, Errno> {
        let h = self.handle(dir)?;
        let walk = self.client.walk(&h, names).map_err(gofer_errno)?;
        let nodes = walk
            .nodes
            .into_iter()
            .map(|n| (self.remember(n.handle), stat_from_gofer(&n.stat)))
            .collect();
        Ok((nodes, walk_errno(walk.status)))
    }

    fn walk_stat(&self, dir: HostNode, names: &[&[u8]]) -> Result<WalkStats, Errno> {
        let h = self.handle(dir)?;
        let walk = self.client.walk_stat(&h, names).map_err(gofer_errno)?;
        let stats = walk.stats.iter().map(stat_from_gofer).collect();
        Ok((stats, walk_errno(walk.status)))
    }

    fn stat(&self, node: HostNode) -> Result<Stat, Errno> {
        let h = self.handle(node)?;
        Ok(stat_from_gofer(&self.client.stat(&h).map_err(gofer_errno)?))
    }

    fn readdir(&self, node: HostNode) -> Result<Vec<DirEntry>, Errno> {
        Ok(self
            .readdir_stat(node)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    fn readdir_stat(&self, node: HostNode) -> Result<Vec<(DirEntry, Option<Stat>)>, Errno> {
        let h = self.handle(node)?;
        let entries = self.client.readdir_stat(&h).map_err(gofer_errno)?;
        Ok(dir_entries(entries))
    }

    fn readdir_at(&self, dir: HostNode, names: &[&[u8]]) -> Result<Option<Listed>, Errno> {
        let h = self.handle(dir)?;
        let got = self
            .client
            .readdir_at(&h, names, true)
            .map_err(gofer_errno)?;
        Ok(got.map(|(st, entries)| (stat_from_gofer(&st), dir_entries(entries))))
    }

    fn readlink(&self, node: HostNode) -> Result<Vec<u8>, Errno> {
        let h = self.handle(node)?;
        self.client.readlink(&h).map_err(gofer_errno)
    }

    fn open(&self, node: HostNode) -> Result<OwnedFd, Errno> {
        let h = self.handle(node)?;
        self.client
            .open(&h, gofer::OpenFlags::READ_ONLY)
            .map_err(gofer_errno)
    }

    fn open_path(&self, dir: HostNode, names: &[&[u8]]) -> Result<(OwnedFd, Stat), Errno> {
        let h = self.handle(dir)?;
        let path = names.join(&b'/');
        let (fd, st) = self
            .client
            .walk_open(&h, path, gofer::OpenFlags::READ_ONLY)
            .map_err(gofer_errno)?;
        Ok((fd, stat_from_gofer(&st)))
    }

    fn writable(&self) -> bool {
        self.writable
    }

    fn open_write(&self, node: HostNode, flags: i32) -> Result<OwnedFd, Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(node)?;
        let mut how = match flags & libc::O_ACCMODE {
            libc::O_RDWR => gofer::OpenFlags::READ_WRITE,
            libc::O_WRONLY => gofer::OpenFlags::WRITE_ONLY,
            _ => gofer::OpenFlags::READ_ONLY,
        };
        how.truncate = flags & libc::O_TRUNC != 0;
        how.append = flags & libc::O_APPEND != 0;
        self.client.open(&h, how).map_err(gofer_errno)
    }

    fn create(&self, dir: HostNode, name: &[u8], mode: u32) -> Result<(HostNode, Stat), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        let n = self.client.create(&h, name, mode).map_err(gofer_errno)?;
        Ok((self.remember(n.handle), stat_from_gofer(&n.stat)))
    }

    fn mkdir(&self, dir: HostNode, name: &[u8], mode: u32) -> Result<(HostNode, Stat), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        let n = self.client.mkdir(&h, name, mode).map_err(gofer_errno)?;
        Ok((self.remember(n.handle), stat_from_gofer(&n.stat)))
    }

    fn symlink(
        &self,
        dir: HostNode,
        name: &[u8],
        target: &[u8],
    ) -> Result<(HostNode, Stat), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        let n = self.client.symlink(&h, name, target).map_err(gofer_errno)?;
        Ok((self.remember(n.handle), stat_from_gofer(&n.stat)))
    }

    fn unlink(&self, dir: HostNode, name: &[u8], rmdir: bool) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(dir)?;
        self.client.unlink(&h, name, rmdir).map_err(gofer_errno)
    }

    fn rename(&self, old: (HostNode, &[u8]), new: (HostNode, &[u8])) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let (from, to) = (self.handle(old.0)?, self.handle(new.0)?);
        // The VFS checked RENAME_NOREPLACE already, under its rename lock.
        self.client
            .rename((&from, old.1), (&to, new.1), false)
            .map_err(gofer_errno)
    }

    fn setattr(&self, node: HostNode, a: &SetAttrs) -> Result<Stat, Errno> {
        if !self.writable {
            return Err(Errno::EROFS);
        }
        let h = self.handle(node)?;
        let t = |t: Option<Timespec>| {
            t.map(|t| gofer::SetTime {
                sec: t.sec,
                nsec: t.nsec,
            })
        };
        let attr = gofer::SetAttr {
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            atime: t(a.atime),
            mtime: t(a.mtime),
        };
        let st = self.client.setattr(&h, attr).map_err(gofer_errno)?;
        Ok(stat_from_gofer(&st))
    }

    fn close(&self, node: HostNode) {
        let h = lock(&self.handles).remove(&node);
        if let Some(h) = h {
            // A failed close leaks one server-side fd at worst.
            let _ = self.client.close(h);
        }
    }
}

/// The most names one lookup sends ahead of the one asked for, and the
/// longest run of handle-less ancestors a walk starts above: past it the
/// directory gets a handle of its own, so requests stay small.
const MAX_AHEAD: usize = 32;

/// The most entries of one listing kept with their stats (a larger
/// directory is listed, but its lookups each ask the gofer).
const MAX_KEPT_LISTING: usize = 16 * 1024;

/// The most names a directory remembers as missing.
const MAX_MISSING: usize = 256;

/// How long what a listing or a missed walk said of a read-only directory
/// answers lookups: the host may add files to the root a sandbox reads
/// (a name it looked up and found stays cached, as before), so a name is
/// only taken as missing without asking for this long (like FUSE's
/// entry timeout). Long enough for `du`/`ls -l`, which look entries up
/// right after listing them.
const KNOWN_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// What a read-only directory knows of its entries without asking.
#[derive(Default)]
struct Known {
    /// When `listing` or the first of `missing` was learnt (host
    /// monotonic time, never saved).
    since: Option<std::time::Instant>,
    /// From the last listing: every entry, with its stat until a lookup
    /// takes it. A name not in it does not exist.
    listing: Option<HashMap<Vec<u8>, Option<Stat>>>,
    /// Names a walk found missing.
    missing: HashSet<Vec<u8>>,
}

/// A host file.
pub struct GoferInode {
    me: Weak<GoferInode>,
    fs: Arc<dyn HostFs>,
    /// The host node: set from the start on a writable mount and for the
    /// root, on a read-only one when first needed (see the module docs).
    node: OnceLock<HostNode>,
    /// The directory this file was found in and its name there, to walk
    /// to it when it needs a node (None for a mount's root, and on a
    /// writable mount, where the node is always there).
    origin: Option<(Arc<GoferInode>, Vec<u8>)>,
    /// The stat from the walk: the lower layer does not change under a
    /// running sandbox, and the application sees the size first seen.
    stat: Stat,
    /// The host fd of a regular file, asked of the gofer on the first open
    /// and shared by every later one: reads are positional (pread), so open
    /// files need no fd of their own, and an open costs no gofer round trip.
    host_fd: OnceLock<Arc<OwnedFd>>,
    /// The content's fingerprint, computed on the first checkpoint that
    /// needs it (hashing reads the whole file) and kept, like `stat`.
    fingerprint: OnceLock<Fingerprint>,
    /// A read-only symlink's target, read once.
    target: OnceLock<Vec<u8>>,
    /// A read-only directory's entries as last listed.
    known: Mutex<Known>,
}

/// Whether two stats are of one file.
fn same_file(a: &Stat, b: &Stat) -> bool {
    a.dev == b.dev && a.ino == b.ino && a.file_type() == b.file_type()
}

impl GoferInode {
    fn new(
        fs: Arc<dyn HostFs>,
        node: Option<HostNode>,
        origin: Option<(Arc<GoferInode>, Vec<u8>)>,
        stat: Stat,
    ) -> Arc<GoferInode> {
        let cell = OnceLock::new();
        if let Some(n) = node {
            let _ = cell.set(n);
        }
        Arc::new_cyclic(|me| GoferInode {
            me: me.clone(),
            fs,
            node: cell,
            origin,
            stat,
            host_fd: OnceLock::new(),
            fingerprint: OnceLock::new(),
            target: OnceLock::new(),
            known: Mutex::new(Known::default()),
        })
    }

    /// A node found (with its handle) below this directory.
    fn child(&self, (node, stat): (HostNode, Stat)) -> Arc<GoferInode> {
        GoferInode::new(self.fs.clone(), Some(node), None, stat)
    }

    /// A file seen below this directory, with no handle yet.
    fn lazy_child(&self, name: &[u8], stat: Stat) -> Result<Arc<GoferInode>, Errno> {
        let me = self.me.upgrade().ok_or(Errno::ENOENT)?;
        Ok(GoferInode::new(
            self.fs.clone(),
            None,
            Some((me, name.to_vec())),
            stat,
        ))
    }

    /// The nearest inode at or above this one that has a node, and the
    /// names from it down to this one.
    fn base(&self) -> Result<(HostNode, Vec<&[u8]>), Errno> {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut cur = self;
        loop {
            if let Some(n) = cur.node.get() {
                names.reverse();
                return Ok((*n, names));
            }
            if names.len() >= MAX_AHEAD {
                // A long run of handle-less directories: this one gets a
                // handle, and later walks start from it.
                return Ok((self.node()?, Vec::new()));
            }
            let (parent, name) = cur.origin.as_ref().ok_or(Errno::EIO)?;
            names.push(name);
            cur = parent;
        }
    }

    /// This file's node, walking to it (and giving every handle-less
    /// directory on the way its own) if it has none yet. A file that is
    /// not the one first seen at that path is ESTALE.
    fn node(&self) -> Result<HostNode, Errno> {
        if let Some(n) = self.node.get() {
            return Ok(*n);
        }
        let mut chain: Vec<&GoferInode> = vec![self];
        let mut cur = self;
        let base = loop {
            let (parent, _) = cur.origin.as_ref().ok_or(Errno::EIO)?;
            if let Some(n) = parent.node.get() {
                break *n;
            }
            chain.push(parent);
            cur = parent;
        };
        chain.reverse();
        let names: Vec<&[u8]> = chain
            .iter()
            .map(|i| i.origin.as_ref().map_or(&b""[..], |(_, n)| n.as_slice()))
            .collect();
        let (nodes, err) = self.fs.walk_many(base, &names)?;
        let reached = nodes.len();
        let mut ok = true;
        for (inode, (n, st)) in chain.iter().zip(nodes) {
            ok = ok && same_file(&inode.stat, &st);
            if !ok || inode.node.set(n).is_err() {
                self.fs.close(n);
            }
        }
        match self.node.get() {
            Some(n) => Ok(*n),
            None if ok && reached < names.len() => Err(err.unwrap_or(Errno::ESTALE)),
            None => Err(Errno::ESTALE),
        }
    }

    /// The shared host fd of a regular file (see `host_fd`).
    fn host_fd(&self) -> Result<Arc<OwnedFd>, Errno> {
        if let Some(fd) = self.host_fd.get() {
            return Ok(fd.clone());
        }
        let fd = match self.node.get() {
            Some(n) => self.fs.open(*n)?,
            None => {
                let (base, names) = self.base()?;
                let (fd, st) = self.fs.open_path(base, &names)?;
                if !same_file(&st, &self.stat) {
                    return Err(Errno::ESTALE);
                }
                fd
            }
        };
        // A racing open may have won; either fd reads the same file.
        Ok(self.host_fd.get_or_init(|| Arc::new(fd)).clone())
    }

    /// What the application reads of this file, hashed.
    fn compute_fingerprint(&self) -> Result<Fingerprint, Errno> {
        match self.stat.file_type() {
            libc::S_IFREG => {
                let fd = self.host_fd()?;
                Fingerprint::of_contents(self.stat.size, |off, buf| {
                    let off = i64::try_from(off).map_err(|_| Errno::EOVERFLOW)?;
                    loop {
                        match nix::sys::uio::pread(fd.as_ref(), buf, off) {
                            Err(nix::errno::Errno::EINTR) => continue,
                            r => return r.map_err(Errno::from),
                        }
                    }
                })
            }
            libc::S_IFDIR => Ok(Fingerprint::of_dir(&self.readdir()?)),
            libc::S_IFLNK => Ok(Fingerprint::of_symlink(&self.readlink()?)),
            // Nothing else is reachable through the gofer (see `open`).
            _ => Err(Errno::ENXIO),
        }
    }

    /// The root of the host tree.
    pub fn root(fs: Arc<dyn HostFs>) -> Result<Arc<GoferInode>, Errno> {
        let (node, stat) = fs.root()?;
        if !stat.is_dir() {
            fs.close(node);
            return Err(Errno::ENOTDIR);
        }
        Ok(GoferInode::new(fs, Some(node), None, stat))
    }

    /// What this read-only directory already knows of `name`: `Some(Ok)`
    /// a stat to make its inode from, `Some(Err)` that it is missing,
    /// `None` that the gofer must be asked.
    fn known_child(&self, name: &[u8]) -> Option<Result<Stat, Errno>> {
        let mut known = lock(&self.known);
        if known.since.is_some_and(|t| t.elapsed() > KNOWN_FOR) {
            *known = Known::default();
        }
        if known.missing.contains(name) {
            return Some(Err(Errno::ENOENT));
        }
        match known.listing.as_mut().map(|l| l.get_mut(name)) {
            None => None,
            Some(None) => Some(Err(Errno::ENOENT)),
            // Taken: the dentry cache holds the inode from now on, and
            // one made again later is walked to afresh.
            Some(Some(st)) => st.take().map(Ok),
        }
    }

    fn note_missing(&self, name: &[u8]) {
        let mut known = lock(&self.known);
        if known.since.is_some_and(|t| t.elapsed() > KNOWN_FOR) {
            *known = Known::default();
        }
        if known.since.is_none() {
            known.since = Some(std::time::Instant::now());
        }
        if known.missing.len() < MAX_MISSING {
            known.missing.insert(name.to_vec());
        }
    }

    /// `lookup_path` on a writable mount: one walk that makes handles.
    fn lookup_path_writable(&self, names: &[&[u8]]) -> Result<Vec<Arc<dyn Inode>>, Errno> {
        let (nodes, err) = self.fs.walk_many(self.node()?, names)?;
        if nodes.is_empty() {
            return Err(err.unwrap_or(Errno::EIO));
        }
        Ok(nodes
            .into_iter()
            .map(|n| self.child(n) as Arc<dyn Inode>)
            .collect())
    }
}

impl Drop for GoferInode {
    /// Closes the node, and lets go of the chain of directories it was
    /// found in without recursion (a guest can build one deeper than the
    /// Sentry's stack).
    fn drop(&mut self) {
        if let Some(n) = self.node.get() {
            self.fs.close(*n);
        }
        let mut next = self.origin.take();
        while let Some((parent, _)) = next {
            next = match Arc::into_inner(parent) {
                Some(mut p) => {
                    // `p` is dropped at the end of this iteration; its
                    // origin goes on in the loop instead of in its Drop.
                    let o = p.origin.take();
                    drop(p);
                    o
                }
                None => None,
            };
        }
    }
}

impl Inode for GoferInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn stat(&self) -> Result<Stat, Errno> {
        if self.fs.writable() {
            // The sandbox's own writes change it.
            return self.fs.stat(self.node()?);
        }
        Ok(self.stat.clone())
    }

    fn file_type(&self) -> u32 {
        self.stat.file_type()
    }

    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        self.lookup_path(&[name])?
            .into_iter()
            .next()
            .ok_or(Errno::EIO)
    }

    /// One gofer round trip for the whole run of names (none when a listing
    /// of this directory already answers the first).
    fn lookup_path(&self, names: &[&[u8]]) -> Result<Vec<Arc<dyn Inode>>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let Some(first) = names.first() else {
            return Ok(Vec::new());
        };
        if self.fs.writable() {
            return self.lookup_path_writable(names);
        }
        match self.known_child(first) {
            Some(Ok(st)) => return Ok(vec![self.lazy_child(first, st)?]),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let names = &names[..names.len().min(MAX_AHEAD)];
        let (base, prefix) = self.base()?;
        let mut all: Vec<&[u8]> = prefix.clone();
        all.extend_from_slice(names);
        let (stats, err) = self.fs.walk_stat(base, &all)?;
        // The part of the walk down to this directory must still reach
        // the files this chain of inodes was made from.
        if stats.len() < prefix.len() {
            return Err(err.unwrap_or(Errno::ESTALE));
        }
        let mut check: Option<&GoferInode> = Some(self);
        for st in stats[..prefix.len()].iter().rev() {
            let i = check.ok_or(Errno::ESTALE)?;
            if !same_file(&i.stat, st) {
                return Err(Errno::ESTALE);
            }
            check = i.origin.as_ref().map(|(p, _)| p.as_ref());
        }
        let found = &stats[prefix.len()..];
        let mut out: Vec<Arc<dyn Inode>> = Vec::with_capacity(found.len());
        let mut dir: Arc<GoferInode> = self.me.upgrade().ok_or(Errno::ENOENT)?;
        for (name, st) in names.iter().zip(found) {
            let c = dir.lazy_child(name, st.clone())?;
            out.push(c.clone());
            dir = c;
        }
        if found.len() < names.len() && err == Some(Errno::ENOENT) {
            dir.note_missing(names[found.len()]);
        }
        if out.is_empty() {
            return Err(err.unwrap_or(Errno::EIO));
        }
        Ok(out)
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if self.fs.writable() {
            return self.fs.readdir(self.node()?);
        }
        // A directory not reached before is listed from the nearest one
        // with a handle, making none for it: so listing a whole tree
        // (`find /`) costs the gofer no fd per directory.
        let listed = match self.node.get() {
            Some(n) => self.fs.readdir_stat(*n)?,
            None => {
                let (base, names) = self.base()?;
                match self.fs.readdir_at(base, &names)? {
                    Some((st, listed)) if same_file(&st, &self.stat) => listed,
                    Some(_) => return Err(Errno::ESTALE),
                    None => self.fs.readdir_stat(self.node()?)?,
                }
            }
        };
        let keep = listed.len() <= MAX_KEPT_LISTING && listed.iter().all(|(_, st)| st.is_some());
        let mut entries = Vec::with_capacity(listed.len());
        let mut known = HashMap::new();
        for (e, st) in listed {
            if keep {
                known.insert(e.name.clone(), st);
            }
            entries.push(e);
        }
        *lock(&self.known) = Known {
            since: Some(std::time::Instant::now()),
            listing: keep.then_some(known),
            missing: HashSet::new(),
        };
        Ok(entries)
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        if !self.stat.is_symlink() {
            return Err(Errno::EINVAL);
        }
        if self.fs.writable() {
            return self.fs.readlink(self.node()?);
        }
        if let Some(t) = self.target.get() {
            return Ok(t.clone());
        }
        let t = self.fs.readlink(self.node()?)?;
        Ok(self.target.get_or_init(|| t).clone())
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            if !self.fs.writable() {
                return Err(Errno::EROFS);
            }
            return match self.stat.file_type() {
                libc::S_IFDIR => Err(Errno::EISDIR),
                // A writer has an fd of its own: the shared one is read-only.
                libc::S_IFREG => Ok(Arc::new(HostFileOps {
                    fd: Arc::new(self.fs.open_write(self.node()?, flags)?),
                    size: self.stat.size,
                    writable: true,
                    fixed: false,
                })),
                _ => Err(Errno::ENXIO),
            };
        }
        match self.stat.file_type() {
            libc::S_IFDIR => Ok(Arc::new(DirOps)),
            libc::S_IFREG => {
                let fd = self.host_fd()?;
                Ok(Arc::new(HostFileOps {
                    fd,
                    size: self.stat.size,
                    writable: false,
                    fixed: !self.fs.writable(),
                }))
            }
            // Host devices, fifos and sockets are not reachable through the
            // gofer.
            _ => Err(Errno::ENXIO),
        }
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let made = self.fs.create(self.node()?, name, mode)?;
        Ok(self.child(made))
    }
    fn mkdir(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let made = self.fs.mkdir(self.node()?, name, mode)?;
        Ok(self.child(made))
    }
    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        if !self.stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let made = self.fs.symlink(self.node()?, name, target)?;
        Ok(self.child(made))
    }
    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        if !self.fs.writable() {
            return Err(Errno::EROFS);
        }
        self.fs.unlink(self.node()?, name, false)
    }
    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        if !self.fs.writable() {
            return Err(Errno::EROFS);
        }
        self.fs.unlink(self.node()?, name, true)
    }
    /// Within one host mount (EXDEV across two).
    fn rename(&self, old_name: &[u8], new_dir: &dyn Inode, new_name: &[u8]) -> Result<(), Errno> {
        let to = new_dir
            .as_any()
            .downcast_ref::<GoferInode>()
            .filter(|d| std::ptr::addr_eq(Arc::as_ptr(&d.fs), Arc::as_ptr(&self.fs)))
            .ok_or(Errno::EXDEV)?;
        if !self.fs.writable() {
            return Err(Errno::EROFS);
        }
        self.fs
            .rename((self.node()?, old_name), (to.node()?, new_name))
    }
    fn set_size(&self, size: u64) -> Result<(), Errno> {
        if !self.fs.writable() {
            return Err(Errno::EROFS);
        }
        match self.stat.file_type() {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        self.setattr(SetAttrs {
            size: Some(size),
            ..SetAttrs::default()
        })
    }
    fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>) -> Result<(), Errno> {
        if atime.is_none() && mtime.is_none() {
            return if self.fs.writable() {
                Ok(())
            } else {
                Err(Errno::EROFS)
            };
        }
        self.setattr(SetAttrs {
            atime,
            mtime,
            ..SetAttrs::default()
        })
    }
    fn chmod(&self, mode: u32) -> Result<(), Errno> {
        self.setattr(SetAttrs {
            mode: Some(mode & 0o7777),
            ..SetAttrs::default()
        })
    }
    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        self.setattr(SetAttrs {
            uid,
            gid,
            ..SetAttrs::default()
        })
    }

    fn fingerprint(&self) -> Option<Fingerprint> {
        if let Some(f) = self.fingerprint.get() {
            return Some(*f);
        }
        match self.compute_fingerprint() {
            Ok(f) => Some(*self.fingerprint.get_or_init(|| f)),
            // Not kept: a later try may read it. The saved fingerprint
            // matches nothing, so a restore refuses the file, saying so.
            Err(errno) => {
                tracing::warn!(?errno, "cannot read a host file to fingerprint it");
                Some(Fingerprint::unreadable(self.stat.size))
            }
        }
    }
}

impl GoferInode {
    /// A change of attributes on the host (EROFS on a read-only mount).
    fn setattr(&self, attrs: SetAttrs) -> Result<(), Errno> {
        if !self.fs.writable() {
            return Err(Errno::EROFS);
        }
        self.fs.setattr(self.node()?, &attrs).map(drop)
    }
}

/// A host regular file opened through the gofer.
pub struct HostFileOps {
    fd: Arc<OwnedFd>,
    size: u64,
    /// Opened for writing on a writable gofer (a rw bind mount).
    writable: bool,
    /// On a read-only gofer: nothing in the sandbox can change its bytes.
    fixed: bool,
}

impl HostFileOps {
    /// Whether nothing in the sandbox can change the file's bytes.
    pub fn contents_fixed(&self) -> bool {
        self.fixed
    }
}

impl FileOps for HostFileOps {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Regular
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }

    fn read(&self, _io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        let off = i64::try_from(offset.unwrap_or(0)).map_err(|_| Errno::EINVAL)?;
        loop {
            match nix::sys::uio::pread(self.fd.as_ref(), buf, off) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map_err(Errno::from),
            }
        }
    }

    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.as_fd())
    }

    fn write(&self, _io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        let off = i64::try_from(offset.unwrap_or(0)).map_err(|_| Errno::EINVAL)?;
        loop {
            match nix::sys::uio::pwrite(self.fd.as_ref(), buf, off) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map_err(Errno::from),
            }
        }
    }

    /// The host file system's answer (lseek on the donated fd, which no
    /// read depends on the offset of: they are positional), within the
    /// size this file shows.
    fn seek_hole_data(&self, pos: u64, data: bool) -> Option<Result<u64, Errno>> {
        use nix::unistd::{lseek, Whence};
        let size = match self.size() {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let Ok(at) = i64::try_from(pos) else {
            return Some(Err(Errno::ENXIO));
        };
        let whence = if data {
            Whence::SeekData
        } else {
            Whence::SeekHole
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.fd.as_ref());
        Some(match lseek(fd, at, whence) {
            Ok(off) => {
                let off = u64::try_from(off).unwrap_or(u64::MAX);
                match (data, off >= size) {
                    (true, true) => Err(Errno::ENXIO),
                    (false, true) => Ok(size),
                    _ => Ok(off),
                }
            }
            // Past the host's end (it shrank since): as past ours.
            Err(nix::errno::Errno::ENXIO) if !data => Ok(size),
            Err(e) => Err(Errno::from(e)),
        })
    }

    fn size(&self) -> Result<u64, Errno> {
        if self.writable {
            // Writes move it: the host's size, not the walk's.
            let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(self.fd.as_ref()))?;
            return Ok(u64::try_from(st.st_size).unwrap_or(0));
        }
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::procfs::tests::OneProc;
    use crate::vfs::testing::FixedClock;

    /// The sandbox's namespace over `root`, served by a real gofer thread.
    fn vfs_through_a_gofer(root: &std::path::Path) -> crate::vfs::Vfs {
        let (sentry_end, gofer_end) = gofer::socketpair().unwrap();
        let root = root.to_path_buf();
        std::thread::spawn(move || gofer::serve(&root, gofer_end, true));
        super::super::namespace::build_sandbox_vfs(
            gofer::Client::new(sentry_end),
            Arc::new(FixedClock(1)),
            Arc::new(OneProc),
            crate::vfs::testing::test_memory_file(),
        )
        .unwrap()
    }

    #[test]
    fn through_a_real_gofer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), b"host\n").unwrap();
        std::os::unix::fs::symlink("../../../etc/hostname", dir.path().join("up")).unwrap();
        let vfs = vfs_through_a_gofer(dir.path());
        let r = vfs.root().clone();
        let f = vfs.open_at(&r, b"/up", libc::O_RDWR, 0).unwrap();
        let intr = Interrupt::new();
        let mut buf = [0u8; 16];
        assert_eq!(f.read(&mut buf, &intr), Ok(5));
        assert_eq!(&buf[..5], b"host\n");
        assert_eq!(f.pwrite(b"H", 0, &intr), Ok(1));
        assert_eq!(
            std::fs::read(dir.path().join("etc/hostname")).unwrap(),
            b"host\n"
        );
        let d = vfs
            .open_at(&r, b"/etc", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        assert!(!d.getdents64(4096).unwrap().is_empty());
        assert_eq!(vfs.stat_at(&r, b"/nope", true).err(), Some(Errno::ENOENT));
    }

    /// A writable gofer (a container's rw bind mount): new files, writes
    /// and truncation reach the host; a read-only one refuses them all.
    #[test]
    fn writes_through_a_writable_gofer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"old content\n").unwrap();
        for writable in [true, false] {
            let (sentry_end, gofer_end) = gofer::socketpair().unwrap();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || gofer::serve(&root, gofer_end, !writable));
            let client = gofer::Client::new(sentry_end);
            let fs: Arc<dyn HostFs> = if writable {
                Arc::new(GoferHostFs::new_writable(client))
            } else {
                Arc::new(GoferHostFs::new(client))
            };
            let root = GoferInode::root(fs).unwrap();
            let intr = Interrupt::new();
            let io = IoCtx {
                interrupt: &intr,
                nonblock: false,
            };
            if !writable {
                assert_eq!(root.create(b"new2", 0o644).err(), Some(Errno::EROFS));
                let old = root.lookup(b"old").unwrap();
                assert_eq!(old.open(libc::O_WRONLY).err(), Some(Errno::EROFS));
                assert_eq!(old.set_size(0).err(), Some(Errno::EROFS));
                continue;
            }
            let new = root.create(b"new", 0o640).unwrap();
            assert_eq!(root.create(b"new", 0o640).err(), Some(Errno::EEXIST));
            let f = new.open(libc::O_WRONLY).unwrap();
            assert_eq!(f.write(&io, b"fresh", Some(0)), Ok(5));
            assert_eq!(f.size(), Ok(5));
            assert_eq!(new.stat().unwrap().size, 5);
            let old = root.lookup(b"old").unwrap();
            old.set_size(0).unwrap();
            let f = old.open(libc::O_RDWR).unwrap();
            assert_eq!(f.write(&io, b"x", Some(2)), Ok(1));
            assert_eq!(std::fs::read(dir.path().join("new")).unwrap(), b"fresh");
            assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), b"\0\0x");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("new"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        assert!(!dir.path().join("new2").exists());
    }

    /// Counts the requests a [`GoferHostFs`] over a real gofer makes.
    struct Counting {
        inner: GoferHostFs,
        walks: std::sync::atomic::AtomicUsize,
        other: std::sync::atomic::AtomicUsize,
    }

    impl Counting {
        fn new(root: &std::path::Path, writable: bool) -> Arc<Counting> {
            let (sentry_end, gofer_end) = gofer::socketpair().unwrap();
            let root = root.to_path_buf();
            std::thread::spawn(move || gofer::serve(&root, gofer_end, !writable));
            let client = gofer::Client::new(sentry_end);
            Arc::new(Counting {
                inner: if writable {
                    GoferHostFs::new_writable(client)
                } else {
                    GoferHostFs::new(client)
                },
                walks: Default::default(),
                other: Default::default(),
            })
        }
        fn walks(&self) -> usize {
            self.walks.load(std::sync::atomic::Ordering::Relaxed)
        }
        fn requests(&self) -> usize {
            self.walks() + self.other.load(std::sync::atomic::Ordering::Relaxed)
        }
        fn handles(&self) -> usize {
            lock(&self.inner.handles).len()
        }
        fn walked(&self) {
            self.walks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn asked(&self) {
            self.other
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl HostFs for Counting {
        fn root(&self) -> Result<(HostNode, Stat), Errno> {
            self.asked();
            self.inner.root()
        }
        fn walk(&self, dir: HostNode, name: &[u8]) -> Result<(HostNode, Stat), Errno> {
            self.walked();
            self.inner.walk(dir, name)
        }
        fn walk_many(&self, dir: HostNode, names: &[&[u8]]) -> Result<WalkMany, Errno> {
            self.walked();
            self.inner.walk_many(dir, names)
        }
        fn walk_stat(&self, dir: HostNode, names: &[&[u8]]) -> Result<WalkStats, Errno> {
            self.walked();
            self.inner.walk_stat(dir, names)
        }
        fn stat(&self, node: HostNode) -> Result<Stat, Errno> {
            self.asked();
            self.inner.stat(node)
        }
        fn readdir(&self, node: HostNode) -> Result<Vec<DirEntry>, Errno> {
            self.asked();
            self.inner.readdir(node)
        }
        fn readdir_stat(&self, node: HostNode) -> Result<Vec<(DirEntry, Option<Stat>)>, Errno> {
            self.asked();
            self.inner.readdir_stat(node)
        }
        fn readdir_at(&self, dir: HostNode, names: &[&[u8]]) -> Result<Option<Listed>, Errno> {
            self.asked();
            self.inner.readdir_at(dir, names)
        }
        fn readlink(&self, node: HostNode) -> Result<Vec<u8>, Errno> {
            self.asked();
            self.inner.readlink(node)
        }
        fn open(&self, node: HostNode) -> Result<OwnedFd, Errno> {
            self.asked();
            self.inner.open(node)
        }
        fn open_path(&self, dir: HostNode, names: &[&[u8]]) -> Result<(OwnedFd, Stat), Errno> {
            self.asked();
            self.inner.open_path(dir, names)
        }
        fn close(&self, node: HostNode) {
            self.inner.close(node)
        }
        fn writable(&self) -> bool {
            self.inner.writable()
        }
        fn setattr(&self, node: HostNode, a: &SetAttrs) -> Result<Stat, Errno> {
            self.asked();
            self.inner.setattr(node, a)
        }
        fn open_write(&self, node: HostNode, flags: i32) -> Result<OwnedFd, Errno> {
            self.asked();
            self.inner.open_write(node, flags)
        }
    }

    fn vfs_over(fs: Arc<dyn HostFs>) -> crate::vfs::Vfs {
        super::super::namespace::build_with_host(
            fs,
            Arc::new(FixedClock(1)),
            Arc::new(OneProc),
            crate::vfs::testing::test_memory_file(),
            None,
        )
        .unwrap()
    }

    /// A cold deep path is one walk; a listing answers the lookups of its
    /// entries (and their absence); `stat`s of a whole tree make no
    /// handles, so no gofer fds.
    #[test]
    fn one_round_trip_per_path_and_no_handle_per_stat() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c/d/e/f/g");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("h"), b"eight deep").unwrap();
        std::fs::create_dir(dir.path().join("many")).unwrap();
        for i in 0..500 {
            std::fs::write(dir.path().join(format!("many/f{i}")), b"x").unwrap();
        }
        std::os::unix::fs::symlink("a/b/c", dir.path().join("abc")).unwrap();
        let fs = Counting::new(dir.path(), false);
        let vfs = vfs_over(fs.clone());
        let r = vfs.root().clone();
        let (walks, handles) = (fs.walks(), fs.handles());
        let st = vfs.stat_at(&r, b"/a/b/c/d/e/f/g/h", true).unwrap();
        assert_eq!(st.size, 10);
        assert_eq!(fs.walks() - walks, 1, "one request for eight names");
        assert_eq!(fs.handles(), handles, "and no handle");
        // Cached now: no more requests, even for a path through `..`.
        let n = fs.requests();
        vfs.stat_at(&r, b"/a/b/c/d/../d/e/f/g/h", true).unwrap();
        assert_eq!(fs.requests(), n);
        // A miss is remembered too.
        assert_eq!(
            vfs.stat_at(&r, b"/a/b/nope", true).err(),
            Some(Errno::ENOENT)
        );
        let n = fs.requests();
        assert_eq!(
            vfs.stat_at(&r, b"/a/b/nope", true).err(),
            Some(Errno::ENOENT)
        );
        assert_eq!(fs.requests(), n);
        // A symlink on the way: the Sentry follows it from the cache.
        let n = fs.requests();
        assert_eq!(vfs.stat_at(&r, b"/abc/d/e/f/g/h", true).unwrap().size, 10);
        assert_eq!(
            fs.requests() - n,
            3,
            "the link's stat walk, a walk for its handle, its readlink"
        );
        let n = fs.requests();
        assert_eq!(
            vfs.stat_at(&r, b"/abc/d", true).unwrap().mode & libc::S_IFMT,
            libc::S_IFDIR
        );
        assert_eq!(fs.requests(), n, "the target is kept");
        // du: list, then stat every entry: the listing answers them all.
        let (n, handles) = (fs.requests(), fs.handles());
        let d = vfs
            .open_at(&r, b"/many", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        assert!(!d.getdents64(1 << 16).unwrap().is_empty());
        assert_eq!(
            fs.requests() - n,
            2,
            "the lookup of /many, its listing (no walk for a handle)"
        );
        assert_eq!(fs.handles(), handles, "a listing makes no handle");
        let (n, handles) = (fs.requests(), fs.handles());
        for i in 0..500 {
            let p = format!("/many/f{i}");
            assert_eq!(vfs.stat_at(&r, p.as_bytes(), false).unwrap().size, 1);
        }
        assert_eq!(
            vfs.stat_at(&r, b"/many/absent", false).err(),
            Some(Errno::ENOENT)
        );
        assert_eq!(fs.requests(), n, "no request after the listing");
        assert_eq!(fs.handles(), handles);
        // What the host adds later is found once that knowledge is old.
        std::fs::write(dir.path().join("many/absent"), b"now here").unwrap();
        std::thread::sleep(KNOWN_FOR + std::time::Duration::from_millis(100));
        assert_eq!(
            vfs.stat_at(&r, b"/many/absent", false).unwrap().size,
            8,
            "a later host file"
        );
        // Reading a file found without a handle: one walk-and-open.
        let n = fs.requests();
        let f = vfs
            .open_at(&r, b"/a/b/c/d/e/f/g/h", libc::O_RDONLY, 0)
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(f.read(&mut buf, &Interrupt::new()), Ok(10));
        assert_eq!(&buf[..10], b"eight deep");
        assert_eq!(fs.requests() - n, 1);
    }

    /// chmod, chown, utimes and truncate of a file of a writable gofer
    /// reach the host; a read-only one refuses them, and the host file
    /// stays as it was.
    #[test]
    fn setattr_through_a_writable_gofer() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"some content").unwrap();
        for writable in [false, true] {
            let fs = Counting::new(dir.path(), writable);
            let root = GoferInode::root(fs.clone()).unwrap();
            let f = root.lookup(b"f").unwrap();
            let t = |sec| Some(Timespec { sec, nsec: 42 });
            let results = [
                f.chmod(0o640),
                f.chown(Some(77), Some(88)),
                f.set_times(t(1_000), t(2_000)),
                f.set_size(4),
            ];
            let m = std::fs::metadata(dir.path().join("f")).unwrap();
            if !writable {
                assert!(
                    results.iter().all(|r| *r == Err(Errno::EROFS)),
                    "{results:?}"
                );
                assert_eq!(m.size(), 12);
                assert_ne!(m.uid(), 77);
                continue;
            }
            assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
            assert_eq!(m.mode() & 0o7777, 0o640);
            assert_eq!((m.uid(), m.gid()), (77, 88));
            assert_eq!((m.atime(), m.atime_nsec()), (1_000, 42));
            assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"some");
            // The inode reports the host's new attributes.
            let st = f.stat().unwrap();
            assert_eq!(
                (st.mode & 0o7777, st.uid, st.gid, st.size),
                (0o640, 77, 88, 4)
            );
            assert_eq!(root.set_size(0), Err(Errno::EISDIR));
        }
    }

    /// A copy of a file (another inode, another mtime) has the same
    /// fingerprint, so a statefile restores against a copy on another
    /// host; a same-size edit, another length or another listing does not.
    #[test]
    fn fingerprints_follow_content_not_inode_or_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + 1) as u8).collect();
        for sub in ["a", "b", "c", "d"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("a/f"), &bytes).unwrap();
        std::fs::write(dir.path().join("b/f"), &bytes).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("b/f"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut edited = bytes.clone();
        edited[123_456] ^= 0x40;
        std::fs::write(dir.path().join("c/f"), &edited).unwrap();
        std::fs::write(dir.path().join("d/f"), &bytes[..bytes.len() - 1]).unwrap();
        std::fs::write(dir.path().join("d/g"), b"").unwrap();

        let vfs = vfs_through_a_gofer(dir.path());
        let r = vfs.root().clone();
        let fp = |path: &[u8]| {
            vfs.resolve(&r, path, false)
                .unwrap()
                .inode()
                .fingerprint()
                .unwrap()
        };
        let a = fp(b"/a/f");
        assert_eq!(a.size, bytes.len() as u64);
        assert_eq!(a.crc32, Some(crc32fast::hash(&bytes)));
        assert_eq!(fp(b"/b/f"), a, "a copy with another inode and mtime");
        assert_ne!(fp(b"/c/f"), a, "one bit changed");
        assert_ne!(fp(b"/d/f"), a, "one byte shorter");
        assert_eq!(fp(b"/a"), fp(b"/b"), "same listing");
        assert_ne!(fp(b"/a"), fp(b"/d"), "another listing");
    }
}
