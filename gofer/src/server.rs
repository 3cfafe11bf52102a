//! The gofer's side: serves one Sentry connection over a root directory.
//!
//! Each handle is an `O_PATH` fd opened beneath the root with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS` and
//! `O_NOFOLLOW`, one name at a time, from the fd of a handle that was itself
//! opened that way: so every handle is the root or lies beneath it, and a
//! symlink (a /proc magic link included) is only ever held, never followed.
//! `..` names are refused; the Sentry resolves `..` from its own dentries.
//!
//! Opening a handle for I/O reopens it from its parent's fd and its name
//! (a directory reopens as `.` from itself), with the same resolution flags,
//! and checks that the result is the same inode (`ESTALE` otherwise): an
//! `O_PATH` fd cannot be upgraded in place except through /proc/self/fd,
//! which is the magic link the gofer refuses to follow.
//!
//! Known limit, shared with gVisor's gofer: a directory that the *host*
//! moves out of the root after the Sentry walked to it stays reachable
//! through its handle. Nothing the sandbox asks for can move it.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt, SockType};
use tracing::{debug, warn};

use crate::error::GoferError;
use crate::host;
use crate::protocol::{
    self, Access, DirEntry, FileType, Handle, OpenFlags, Request, Response, SetAttr, SetTime, Walk,
    WalkStats, WalkStatus, WalkedNode, MAX_MESSAGE, MAX_WALK_NAMES, PROTOCOL_VERSION,
};
use crate::wire::{self, Received};

/// The most handles one connection may hold at once.
const MAX_HANDLES: usize = 1 << 18;

/// The most directory snapshots kept for paged `ReadDir`s at once. Past
/// this the oldest is dropped, and its next page is read from a fresh
/// snapshot: a listing that changed meanwhile may then repeat or miss
/// entries, as a host `getdents` over a changing directory may.
const MAX_LISTINGS: usize = 64;

/// Serves the Sentry on `sock` (a `SOCK_SEQPACKET` socket) until it closes
/// the connection, confining every file operation to `root`.
///
/// With `read_only`, every open that could change a file fails with
/// `EROFS`: the host root is shared read-only and writes go to the Sentry's
/// own upper layer.
pub fn serve(root: &Path, sock: OwnedFd, read_only: bool) -> Result<(), GoferError> {
    if getsockopt(&sock, sockopt::SockType).map_err(|e| GoferError::Io(e.into()))?
        != SockType::SeqPacket
    {
        return Err(GoferError::Protocol(
            "the gofer socket must be SOCK_SEQPACKET".into(),
        ));
    }
    let root_fd: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?
        .into();
    let mut session = Session::new(root_fd, read_only)?;
    debug!(root = %root.display(), read_only, "gofer serving");

    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (reply, fd) = match wire::recv(sock.as_fd(), &mut buf)? {
            Received::Eof => {
                debug!("gofer connection closed");
                return Ok(());
            }
            Received::Truncated => {
                debug!("request longer than {MAX_MESSAGE} bytes");
                (error(Errno::EMSGSIZE), None)
            }
            Received::Message { len, fds } => {
                if !fds.is_empty() {
                    debug!(count = fds.len(), "closing fds sent to the gofer");
                }
                drop(fds);
                match protocol::decode::<Request>(&buf[..len]) {
                    Ok(req) => session.dispatch(req),
                    Err(e) => {
                        debug!(error = %e, "malformed request");
                        (error(Errno::EINVAL), None)
                    }
                }
            }
        };
        let bytes = match protocol::encode(&reply) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "reply could not be encoded");
                protocol::encode(&error(Errno::EOVERFLOW))?
            }
        };
        match wire::send(sock.as_fd(), &bytes, fd.as_ref().map(|f| f.as_fd())) {
            Ok(()) => {}
            Err(GoferError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn error(e: Errno) -> Response {
    Response::Error { errno: e as i32 }
}

/// What the server knows of one handle.
struct Node {
    /// `O_PATH | O_NOFOLLOW`, beneath the root.
    fd: Arc<OwnedFd>,
    /// Where the node was reached from, to reopen it for I/O; `None` for the
    /// root.
    parent: Option<(Arc<OwnedFd>, CString)>,
    kind: FileType,
    dev: u64,
    ino: u64,
    /// The snapshot a paged `ReadDir` is reading.
    listing: Option<Listing>,
}

/// A directory's entries as one `ReadDir` snapshot saw them.
struct Listing {
    /// Taken with each entry's stat.
    stats: bool,
    entries: Vec<DirEntry>,
}

struct Session {
    root: Arc<OwnedFd>,
    read_only: bool,
    nodes: HashMap<u64, Node>,
    next_id: u64,
    /// Handles holding a listing, oldest first.
    listings: VecDeque<u64>,
}

type Reply = (Response, Option<OwnedFd>);

impl Session {
    fn new(root: OwnedFd, read_only: bool) -> Result<Session, GoferError> {
        Ok(Session {
            root: Arc::new(root),
            read_only,
            nodes: HashMap::new(),
            next_id: 1,
            listings: VecDeque::new(),
        })
    }

    fn dispatch(&mut self, req: Request) -> Reply {
        debug!(request = ?req, "gofer request");
        match self.handle(req) {
            Ok(reply) => reply,
            Err(e) => {
                debug!(errno = %e, "gofer request failed");
                (error(e), None)
            }
        }
    }

    fn handle(&mut self, req: Request) -> Result<Reply, Errno> {
        Ok(match req {
            Request::Attach { version } => (self.attach(version)?, None),
            Request::Walk { dir, names } => (Response::Walked(self.walk(dir, &names)?), None),
            Request::WalkStat { dir, names } => {
                (Response::WalkedStat(self.walk_stat(dir, &names)?), None)
            }
            Request::SetAttr { handle, attr } => (self.set_attr(handle, &attr)?, None),
            Request::Open { handle, flags } => {
                let (resp, fd) = self.open(handle, flags)?;
                (resp, Some(fd))
            }
            Request::WalkOpen { dir, path, flags } => {
                let (resp, fd) = self.walk_open(dir, &path, flags)?;
                (resp, Some(fd))
            }
            Request::Stat { handle } => {
                let node = self.node(handle)?;
                let stat = host::fstat(node.fd.as_fd())?;
                (Response::Stat { stat }, None)
            }
            Request::ReadDir {
                handle,
                offset,
                stats,
            } => (self.read_dir(handle, offset, stats)?, None),
            Request::ReadDirAt { dir, names, stats } => {
                (self.read_dir_at(dir, &names, stats)?, None)
            }
            Request::ReadLink { handle } => {
                let node = self.node(handle)?;
                if node.kind != FileType::Symlink {
                    return Err(Errno::EINVAL);
                }
                let target = host::read_link(node.fd.as_fd())?;
                (Response::Link { target }, None)
            }
            Request::Close { handle } => {
                self.nodes.remove(&handle.0).ok_or(Errno::EBADF)?;
                (Response::Closed, None)
            }
            Request::Create { dir, name, mode } => {
                (Response::Walked(self.create(dir, &name, mode)?), None)
            }
            Request::Mkdir { dir, name, mode } => {
                let d = self.writable_dir(dir)?;
                nix::sys::stat::mkdirat(
                    Some(d.as_raw_fd()),
                    host::component(&name)?.as_c_str(),
                    nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
                )?;
                (Response::Walked(self.walk_one(dir, &name)?), None)
            }
            Request::Symlink { dir, name, target } => {
                let d = self.writable_dir(dir)?;
                let target = host::link_target(&target)?;
                nix::unistd::symlinkat(
                    target.as_c_str(),
                    Some(d.as_raw_fd()),
                    host::component(&name)?.as_c_str(),
                )?;
                (Response::Walked(self.walk_one(dir, &name)?), None)
            }
            Request::Unlink { dir, name, rmdir } => {
                let d = self.writable_dir(dir)?;
                let how = if rmdir {
                    nix::unistd::UnlinkatFlags::RemoveDir
                } else {
                    nix::unistd::UnlinkatFlags::NoRemoveDir
                };
                nix::unistd::unlinkat(
                    Some(d.as_raw_fd()),
                    host::component(&name)?.as_c_str(),
                    how,
                )?;
                (Response::Done, None)
            }
            Request::Rename {
                old_dir,
                old_name,
                new_dir,
                new_name,
                noreplace,
            } => {
                let from = self.writable_dir(old_dir)?;
                let to = self.writable_dir(new_dir)?;
                let flags = if noreplace {
                    nix::fcntl::RenameFlags::RENAME_NOREPLACE
                } else {
                    nix::fcntl::RenameFlags::empty()
                };
                let (old_c, new_c) = (host::component(&old_name)?, host::component(&new_name)?);
                nix::fcntl::renameat2(
                    Some(from.as_raw_fd()),
                    old_c.as_c_str(),
                    Some(to.as_raw_fd()),
                    new_c.as_c_str(),
                    flags,
                )?;
                self.moved(&from, &old_c, &to, &new_c);
                (Response::Done, None)
            }
        })
    }

    /// The fd of directory handle `dir` for a change in it: `EROFS` from a
    /// read-only gofer. Names given with it are single components
    /// ([`host::component`]), so a change never reaches outside the
    /// directory, and none of the *at calls follows the name's symlink.
    fn writable_dir(&self, dir: Handle) -> Result<Arc<OwnedFd>, Errno> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let node = self.node(dir)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(node.fd.clone())
    }

    /// After a rename: the handles of what moved reopen it for I/O from its
    /// new directory and name (a handle is reopened from where it was
    /// reached, and checked to be the same inode).
    fn moved(&mut self, from: &OwnedFd, old: &CString, to: &Arc<OwnedFd>, new: &CString) {
        let Ok(dir) = host::fstat(from.as_fd()) else {
            return;
        };
        for node in self.nodes.values_mut() {
            let Some((parent, name)) = &node.parent else {
                continue;
            };
            if name != old {
                continue;
            }
            let same_dir =
                host::fstat(parent.as_fd()).is_ok_and(|p| p.dev == dir.dev && p.ino == dir.ino);
            if same_dir {
                node.parent = Some((to.clone(), new.clone()));
            }
        }
    }

    /// The node of `name` in `dir`, just made.
    fn walk_one(&mut self, dir: Handle, name: &[u8]) -> Result<Walk, Errno> {
        let walk = self.walk(dir, &[name.to_vec()])?;
        match walk.status {
            WalkStatus::Complete => Ok(walk),
            WalkStatus::Failed { errno } => Err(Errno::from_raw(errno)),
            WalkStatus::Symlink => Ok(walk),
        }
    }

    /// Makes a new regular file below `dir` (confined like every open),
    /// then walks to it so the Sentry gets a handle.
    fn create(&mut self, dir: Handle, name: &[u8], mode: u32) -> Result<Walk, Errno> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let cname = host::component(name)?;
        let node = self.node(dir)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        // O_PATH nodes cannot be written through: the new file is opened
        // for writing on its own, then closed.
        let dirfd = host::openat2(node.fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
        drop(host::openat2_mode(
            dirfd.as_fd(),
            &cname,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            mode,
        )?);
        let walk = self.walk(dir, &[name.to_vec()])?;
        match walk.status {
            WalkStatus::Complete => Ok(walk),
            WalkStatus::Failed { errno } => Err(Errno::from_raw(errno)),
            WalkStatus::Symlink => Err(Errno::ELOOP),
        }
    }

    fn node(&self, h: Handle) -> Result<&Node, Errno> {
        self.nodes.get(&h.0).ok_or(Errno::EBADF)
    }

    fn insert(&mut self, node: Node) -> Result<Handle, Errno> {
        if self.nodes.len() >= MAX_HANDLES {
            return Err(Errno::EMFILE);
        }
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).ok_or(Errno::EMFILE)?;
        self.nodes.insert(id, node);
        Ok(Handle(id))
    }

    fn attach(&mut self, version: u32) -> Result<Response, Errno> {
        if version != PROTOCOL_VERSION {
            return Err(Errno::EPROTO);
        }
        let stat = host::fstat(self.root.as_fd())?;
        let root = self.insert(Node {
            fd: self.root.clone(),
            parent: None,
            kind: stat.file_type(),
            dev: stat.dev,
            ino: stat.ino,
            listing: None,
        })?;
        Ok(Response::Attached { root })
    }

    /// Checks every name of a walk before walking any, so that a refused
    /// request makes no handles.
    fn walk_names(names: &[Vec<u8>]) -> Result<Vec<CString>, Errno> {
        if names.len() > MAX_WALK_NAMES {
            return Err(Errno::E2BIG);
        }
        names.iter().map(|n| host::component(n)).collect()
    }

    /// `Walk`'s walk without its handles: each step is the same confined
    /// single-name `openat2` (no symlink, no `..`, no magic link followed),
    /// and each fd is closed as soon as the next one is open.
    fn walk_stat(&self, dir: Handle, names: &[Vec<u8>]) -> Result<WalkStats, Errno> {
        let names = Self::walk_names(names)?;
        let mut cur = self.node(dir)?.fd.clone();
        let mut stats = Vec::with_capacity(names.len());
        let mut status = WalkStatus::Complete;
        let last = names.len().saturating_sub(1);
        for (i, name) in names.iter().enumerate() {
            let step = host::openat2(cur.as_fd(), name, libc::O_PATH)
                .and_then(|fd| host::fstat(fd.as_fd()).map(|st| (fd, st)));
            let (fd, stat) = match step {
                Ok(x) => x,
                Err(e) => {
                    status = WalkStatus::Failed { errno: e as i32 };
                    break;
                }
            };
            let kind = stat.file_type();
            stats.push(stat);
            if kind == FileType::Symlink && i < last {
                status = WalkStatus::Symlink;
                break;
            }
            cur = Arc::new(fd);
        }
        Ok(WalkStats { stats, status })
    }

    /// `SetAttr`: see the request's docs. Each change is made on the
    /// handle's own `O_PATH` fd, which holds the inode and not a name.
    fn set_attr(&self, h: Handle, attr: &SetAttr) -> Result<Response, Errno> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let node = self.node(h)?;
        if let Some(size) = attr.size {
            if node.kind == FileType::Directory {
                return Err(Errno::EISDIR);
            }
            if node.kind != FileType::Regular {
                return Err(Errno::EINVAL);
            }
            let size = i64::try_from(size).map_err(|_| Errno::EFBIG)?;
            // ftruncate needs an fd open for writing: a reopen, checked to
            // be this very inode.
            let fd = self.reopen(node, libc::O_WRONLY)?;
            nix::unistd::ftruncate(&fd, size)?;
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            host::chown_fd(node.fd.as_fd(), attr.uid, attr.gid)?;
        }
        if let Some(mode) = attr.mode {
            match host::chmod_fd(node.fd.as_fd(), mode) {
                // Before Linux 6.6: fchmod on a reopen checked to be this
                // inode (files and directories only; a symlink has no mode
                // of its own to set).
                Err(Errno::ENOSYS) => {
                    host::openable(node.kind)?;
                    let flags = if node.kind == FileType::Directory {
                        libc::O_RDONLY | libc::O_DIRECTORY
                    } else {
                        libc::O_RDONLY
                    };
                    let fd = self.reopen(node, flags)?;
                    nix::sys::stat::fchmod(
                        fd.as_raw_fd(),
                        nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
                    )?;
                }
                r => r?,
            }
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            let t = |t: Option<SetTime>| t.map(|t| (t.sec, t.nsec));
            host::set_times_fd(node.fd.as_fd(), t(attr.atime), t(attr.mtime))?;
        }
        let stat = host::fstat(node.fd.as_fd())?;
        Ok(Response::Stat { stat })
    }

    fn walk(&mut self, dir: Handle, names: &[Vec<u8>]) -> Result<Walk, Errno> {
        let names = Self::walk_names(names)?;
        let mut cur = self.node(dir)?.fd.clone();
        let mut nodes = Vec::with_capacity(names.len());
        let mut status = WalkStatus::Complete;
        let last = names.len().saturating_sub(1);
        for (i, name) in names.into_iter().enumerate() {
            let step = host::openat2(cur.as_fd(), &name, libc::O_PATH)
                .and_then(|fd| host::fstat(fd.as_fd()).map(|st| (fd, st)));
            let (fd, stat) = match step {
                Ok(x) => x,
                Err(e) => {
                    status = WalkStatus::Failed { errno: e as i32 };
                    break;
                }
            };
            let fd = Arc::new(fd);
            let kind = stat.file_type();
            let handle = match self.insert(Node {
                fd: fd.clone(),
                parent: Some((cur, name)),
                kind,
                dev: stat.dev,
                ino: stat.ino,
                listing: None,
            }) {
                Ok(h) => h,
                Err(e) => {
                    status = WalkStatus::Failed { errno: e as i32 };
                    break;
                }
            };
            nodes.push(WalkedNode { handle, stat });
            if kind == FileType::Symlink && i < last {
                status = WalkStatus::Symlink;
                break;
            }
            cur = fd;
        }
        Ok(Walk { nodes, status })
    }

    /// The `open` flags for `flags` on a file of type `kind`, or why not.
    fn open_flags(&self, flags: OpenFlags, kind: FileType) -> Result<libc::c_int, Errno> {
        host::openable(kind)?;
        if flags.modifies() {
            if kind == FileType::Directory {
                return Err(Errno::EISDIR);
            }
            if self.read_only {
                return Err(Errno::EROFS);
            }
        }
        let mut o = match flags.access {
            Access::ReadOnly => libc::O_RDONLY,
            Access::WriteOnly => libc::O_WRONLY,
            Access::ReadWrite => libc::O_RDWR,
        };
        if flags.truncate {
            o |= libc::O_TRUNC;
        }
        if flags.append {
            o |= libc::O_APPEND;
        }
        if kind == FileType::Directory {
            o |= libc::O_DIRECTORY;
        }
        Ok(o)
    }

    /// Opens a node for I/O; see the module docs for why from its parent.
    fn reopen(&self, node: &Node, oflags: libc::c_int) -> Result<OwnedFd, Errno> {
        match (&node.parent, node.kind) {
            (Some((parent, name)), kind) if kind != FileType::Directory => {
                host::open_verified(parent.as_fd(), name, oflags, node.dev, node.ino)
            }
            _ => host::open_verified(node.fd.as_fd(), c".", oflags, node.dev, node.ino),
        }
    }

    fn open(&self, h: Handle, flags: OpenFlags) -> Result<(Response, OwnedFd), Errno> {
        let node = self.node(h)?;
        let oflags = self.open_flags(flags, node.kind)?;
        let fd = self.reopen(node, oflags)?;
        let stat = host::fstat(fd.as_fd())?;
        Ok((Response::Opened { stat }, fd))
    }

    fn walk_open(
        &self,
        dir: Handle,
        path: &[u8],
        flags: OpenFlags,
    ) -> Result<(Response, OwnedFd), Errno> {
        let path = host::relative_path(path)?;
        let dir = self.node(dir)?;
        // Look before opening, so that no device or FIFO is ever opened.
        let probe = host::openat2(dir.fd.as_fd(), &path, libc::O_PATH)?;
        let seen = host::fstat(probe.as_fd())?;
        let oflags = self.open_flags(flags, seen.file_type())?;
        let fd = host::open_verified(dir.fd.as_fd(), &path, oflags, seen.dev, seen.ino)?;
        let stat = host::fstat(fd.as_fd())?;
        Ok((Response::Opened { stat }, fd))
    }

    /// `ReadDirAt`: the confined single-name steps of `WalkStat` to the
    /// directory, a reopen of it checked to be the same inode, one snapshot,
    /// its first page; nothing is kept.
    fn read_dir_at(&self, dir: Handle, names: &[Vec<u8>], stats: bool) -> Result<Response, Errno> {
        let names = Self::walk_names(names)?;
        let mut cur = self.node(dir)?.fd.clone();
        for name in &names {
            // A symlink is opened as itself (O_NOFOLLOW): the next step
            // from it, or the directory check below, fails.
            cur = Arc::new(host::openat2(cur.as_fd(), name, libc::O_PATH)?);
        }
        let stat = host::fstat(cur.as_fd())?;
        if !stat.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let fd = host::open_verified(
            cur.as_fd(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            stat.dev,
            stat.ino,
        )?;
        let listing = host::read_dir(fd, stats)?;
        // Room for the directory's own stat too.
        let (entries, end) = page(&listing, 0, stats, MAX_MESSAGE - 64 - STAT_COST);
        Ok(Response::DirEntriesAt {
            stat,
            entries,
            complete: end == listing.len(),
        })
    }

    fn read_dir(&mut self, h: Handle, offset: u64, stats: bool) -> Result<Response, Errno> {
        let node = self.node(h)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        // A snapshot taken without stats cannot answer a page asked with
        // them: a new one is taken (the entries of an unchanged directory
        // come in the same order).
        let stale = match &node.listing {
            None => true,
            Some(l) => stats && !l.stats,
        };
        let fresh = if offset == 0 || stale {
            let fd = self.reopen(node, libc::O_RDONLY | libc::O_DIRECTORY)?;
            Some(Listing {
                stats,
                entries: host::read_dir(fd, stats)?,
            })
        } else {
            None
        };
        if fresh.is_some() {
            self.listings.retain(|id| *id != h.0);
            while self.listings.len() >= MAX_LISTINGS {
                if let Some(old) = self.listings.pop_front() {
                    if let Some(n) = self.nodes.get_mut(&old) {
                        n.listing = None;
                    }
                }
            }
            self.listings.push_back(h.0);
        }
        let node = self.nodes.get_mut(&h.0).ok_or(Errno::EBADF)?;
        if let Some(l) = fresh {
            node.listing = Some(l);
        }
        let listing = node.listing.as_ref().map_or(&[][..], |l| &l.entries[..]);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(listing.len());
        // Leave room for the enum tag, the vector length and `next`.
        let (entries, end) = page(listing, start, stats, MAX_MESSAGE - 64);
        let next = if end < listing.len() {
            Some(end as u64)
        } else {
            node.listing = None;
            self.listings.retain(|id| *id != h.0);
            None
        };
        Ok(Response::DirEntries { entries, next })
    }
}

/// The worst case of an encoded stat: sixteen varints of at most nine
/// bytes each.
const STAT_COST: usize = 16 * 9;

/// The entries of `listing` from `start` that fit in `budget` bytes of a
/// reply (with their stats if `stats`), and where they end.
fn page(listing: &[DirEntry], start: usize, stats: bool, budget: usize) -> (Vec<DirEntry>, usize) {
    let mut budget = budget;
    let mut entries = Vec::new();
    for e in &listing[start..] {
        let mut e = e.clone();
        if !stats {
            e.stat = None;
        }
        // Each entry's own encoding: the reply is exactly their sum plus
        // the frame the caller left room for.
        let cost = protocol::encoded_len(&e);
        if cost > budget {
            break;
        }
        budget -= cost;
        entries.push(e);
    }
    let end = start + entries.len();
    (entries, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_root(path: &Path) -> OwnedFd {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(path)
            .unwrap()
            .into()
    }

    /// Pages through a listing with requests to the session.
    fn page(s: &mut Session, h: Handle, offset: u64) -> (Vec<DirEntry>, Option<u64>) {
        // Stats on some pages and not others: one snapshot serves both.
        match s.read_dir(h, offset, offset.is_multiple_of(2)).unwrap() {
            Response::DirEntries { entries, next } => (entries, next),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn many_interleaved_listings_stay_complete() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..1500 {
            std::fs::write(t.path().join(format!("{i:04}-{}", "y".repeat(90))), b"").unwrap();
        }
        let mut s = Session::new(open_root(t.path()), true).unwrap();
        let handles: Vec<Handle> = (0..MAX_LISTINGS + 6)
            .map(|_| match s.attach(PROTOCOL_VERSION).unwrap() {
                Response::Attached { root } => root,
                other => panic!("{other:?}"),
            })
            .collect();
        // Start every listing, then finish them all: the oldest snapshots
        // were dropped on the way and are read again.
        let mut got: Vec<(Vec<DirEntry>, Option<u64>)> =
            handles.iter().map(|h| page(&mut s, *h, 0)).collect();
        for (h, (entries, next)) in handles.iter().zip(got.iter_mut()) {
            while let Some(off) = *next {
                let (more, n) = page(&mut s, *h, off);
                entries.extend(more);
                *next = n;
            }
            assert_eq!(entries.len(), 1500);
        }
        assert!(s.listings.is_empty());
        assert!(s.nodes.values().all(|n| n.listing.is_none()));
    }
}
