//! The Sentry's side: a blocking client for one gofer connection.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use crate::error::GoferError;
use crate::protocol::{
    self, DirEntry, FileStat, Handle, OpenFlags, Request, Response, SetAttr, Walk, WalkStats,
    WalkStatus, MAX_DIR_ENTRIES, MAX_MESSAGE, MAX_WALK_NAMES, PROTOCOL_VERSION,
};
use crate::wire::{self, Received};

/// A connection to a gofer. Calls are blocking and one at a time: the mutex
/// keeps each request paired with its reply when several threads share the
/// client.
pub struct Client {
    conn: Mutex<Conn>,
}

struct Conn {
    sock: OwnedFd,
    buf: Vec<u8>,
}

impl Client {
    /// A client over a connected `SOCK_SEQPACKET` socket (see
    /// [`crate::socketpair`]).
    pub fn new(sock: OwnedFd) -> Client {
        Client {
            conn: Mutex::new(Conn {
                sock,
                buf: vec![0u8; MAX_MESSAGE],
            }),
        }
    }

    /// Starts the session and returns the root's handle.
    pub fn attach(&self) -> Result<Handle, GoferError> {
        match self.call(&Request::Attach {
            version: PROTOCOL_VERSION,
        })? {
            (Response::Attached { root }, None) => Ok(root),
            _ => Err(GoferError::UnexpectedReply("attach")),
        }
    }

    /// Walks single-component `names` down from `dir`, returning a handle
    /// and stat for each name reached and why the walk stopped. Symlinks are
    /// not followed: the walk stops after one that has names behind it.
    /// Walks longer than [`MAX_WALK_NAMES`] take several round trips.
    pub fn walk<N: AsRef<[u8]>>(&self, dir: &Handle, names: &[N]) -> Result<Walk, GoferError> {
        let mut out = Walk {
            nodes: Vec::with_capacity(names.len()),
            status: WalkStatus::Complete,
        };
        let mut from = *dir;
        for chunk in names.chunks(MAX_WALK_NAMES) {
            let req = Request::Walk {
                dir: from,
                names: chunk.iter().map(|n| n.as_ref().to_vec()).collect(),
            };
            let walk = match self.call(&req)? {
                (Response::Walked(w), None) if w.nodes.len() <= chunk.len() => w,
                _ => return Err(GoferError::UnexpectedReply("walk")),
            };
            let full = walk.nodes.len() == chunk.len();
            out.nodes.extend(walk.nodes);
            out.status = walk.status;
            match (walk.status, out.nodes.last()) {
                (WalkStatus::Complete, Some(last)) if full => {
                    // A symlink ending this chunk has names behind it in the
                    // next one.
                    if last.stat.is_symlink() && out.nodes.len() < names.len() {
                        out.status = WalkStatus::Symlink;
                        break;
                    }
                    from = last.handle;
                }
                (WalkStatus::Complete, _) => {
                    return Err(GoferError::UnexpectedReply("walk"));
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// [`Client::walk`] without handles: the stat of each name reached, in
    /// the same one round trip (per [`MAX_WALK_NAMES`] names), and nothing
    /// to close afterwards.
    pub fn walk_stat<N: AsRef<[u8]>>(
        &self,
        dir: &Handle,
        names: &[N],
    ) -> Result<WalkStats, GoferError> {
        let mut out = WalkStats {
            stats: Vec::with_capacity(names.len()),
            status: WalkStatus::Complete,
        };
        // Past one request's names, the walk goes on from a handle to the
        // last directory reached, closed again afterwards.
        let mut from: Option<Handle> = None;
        let result = (|| {
            let mut done = 0usize;
            for chunk in names.chunks(MAX_WALK_NAMES) {
                let req = Request::WalkStat {
                    dir: from.unwrap_or(*dir),
                    names: chunk.iter().map(|n| n.as_ref().to_vec()).collect(),
                };
                let walk = match self.call(&req)? {
                    (Response::WalkedStat(w), None) if w.stats.len() <= chunk.len() => w,
                    _ => return Err(GoferError::UnexpectedReply("walk_stat")),
                };
                let full = walk.stats.len() == chunk.len();
                out.stats.extend(walk.stats);
                out.status = walk.status;
                done += chunk.len();
                match (walk.status, out.stats.last()) {
                    (WalkStatus::Complete, Some(last)) if full => {
                        if done == names.len() {
                            break;
                        }
                        if last.is_symlink() {
                            out.status = WalkStatus::Symlink;
                            break;
                        }
                        let w = self.walk(&from.unwrap_or(*dir), chunk)?;
                        let next = match (w.status, w.nodes.last()) {
                            (WalkStatus::Complete, Some(n)) if w.nodes.len() == chunk.len() => {
                                n.handle
                            }
                            _ => return Err(GoferError::Errno(libc::ESTALE)),
                        };
                        for n in &w.nodes[..w.nodes.len() - 1] {
                            self.close(n.handle)?;
                        }
                        if let Some(old) = from.replace(next) {
                            self.close(old)?;
                        }
                    }
                    (WalkStatus::Complete, _) => {
                        return Err(GoferError::UnexpectedReply("walk_stat"));
                    }
                    _ => break,
                }
            }
            Ok(())
        })();
        if let Some(h) = from {
            let _ = self.close(h);
        }
        result.map(|()| out)
    }

    /// Changes the file's attributes (a writable gofer only) and returns its
    /// new stat.
    pub fn setattr(&self, handle: &Handle, attr: SetAttr) -> Result<FileStat, GoferError> {
        match self.call(&Request::SetAttr {
            handle: *handle,
            attr,
        })? {
            (Response::Stat { stat }, None) => Ok(stat),
            _ => Err(GoferError::UnexpectedReply("setattr")),
        }
    }

    /// Opens the file for I/O and returns the host fd.
    pub fn open(&self, handle: &Handle, flags: OpenFlags) -> Result<OwnedFd, GoferError> {
        match self.call(&Request::Open {
            handle: *handle,
            flags,
        })? {
            (Response::Opened { .. }, Some(fd)) => Ok(fd),
            _ => Err(GoferError::UnexpectedReply("open")),
        }
    }

    /// Makes the regular file `name` in `dir` (a writable gofer only) and
    /// returns its node.
    pub fn create(
        &self,
        dir: &Handle,
        name: &[u8],
        mode: u32,
    ) -> Result<crate::WalkedNode, GoferError> {
        self.made(
            Request::Create {
                dir: *dir,
                name: name.to_vec(),
                mode,
            },
            "create",
        )
    }

    /// Makes the directory `name` in `dir` (a writable gofer only) and
    /// returns its node.
    pub fn mkdir(
        &self,
        dir: &Handle,
        name: &[u8],
        mode: u32,
    ) -> Result<crate::WalkedNode, GoferError> {
        self.made(
            Request::Mkdir {
                dir: *dir,
                name: name.to_vec(),
                mode,
            },
            "mkdir",
        )
    }

    /// Makes the symlink `name` in `dir` reading `target`; returns its node.
    pub fn symlink(
        &self,
        dir: &Handle,
        name: &[u8],
        target: &[u8],
    ) -> Result<crate::WalkedNode, GoferError> {
        self.made(
            Request::Symlink {
                dir: *dir,
                name: name.to_vec(),
                target: target.to_vec(),
            },
            "symlink",
        )
    }

    /// Removes `name` from `dir` (an empty directory with `rmdir`).
    pub fn unlink(&self, dir: &Handle, name: &[u8], rmdir: bool) -> Result<(), GoferError> {
        self.done(Request::Unlink {
            dir: *dir,
            name: name.to_vec(),
            rmdir,
        })
    }

    /// Moves `old_name` of `old_dir` to `new_name` of `new_dir`.
    pub fn rename(
        &self,
        (old_dir, old_name): (&Handle, &[u8]),
        (new_dir, new_name): (&Handle, &[u8]),
        noreplace: bool,
    ) -> Result<(), GoferError> {
        self.done(Request::Rename {
            old_dir: *old_dir,
            old_name: old_name.to_vec(),
            new_dir: *new_dir,
            new_name: new_name.to_vec(),
            noreplace,
        })
    }

    /// A request answered with the one node it made.
    fn made(&self, req: Request, what: &'static str) -> Result<crate::WalkedNode, GoferError> {
        match self.call(&req)? {
            (Response::Walked(w), None) => w
                .nodes
                .into_iter()
                .next()
                .ok_or(GoferError::UnexpectedReply(what)),
            _ => Err(GoferError::UnexpectedReply(what)),
        }
    }

    /// A request answered with `Done`.
    fn done(&self, req: Request) -> Result<(), GoferError> {
        match self.call(&req)? {
            (Response::Done, None) => Ok(()),
            _ => Err(GoferError::UnexpectedReply("a change")),
        }
    }

    /// Opens `path`, relative to `dir`, in one round trip and without making
    /// handles. Fails with `ELOOP` if any component is a symlink (fall back
    /// to [`Client::walk`]) and with `EINVAL` on a `..` component.
    pub fn walk_open(
        &self,
        dir: &Handle,
        path: impl AsRef<[u8]>,
        flags: OpenFlags,
    ) -> Result<(OwnedFd, FileStat), GoferError> {
        match self.call(&Request::WalkOpen {
            dir: *dir,
            path: path.as_ref().to_vec(),
            flags,
        })? {
            (Response::Opened { stat }, Some(fd)) => Ok((fd, stat)),
            _ => Err(GoferError::UnexpectedReply("walk_open")),
        }
    }

    /// The file's stat (of the link itself for a symlink).
    pub fn stat(&self, handle: &Handle) -> Result<FileStat, GoferError> {
        match self.call(&Request::Stat { handle: *handle })? {
            (Response::Stat { stat }, None) => Ok(stat),
            _ => Err(GoferError::UnexpectedReply("stat")),
        }
    }

    /// The directory's entries, without `.` and `..`, as one snapshot.
    pub fn readdir(&self, handle: &Handle) -> Result<Vec<DirEntry>, GoferError> {
        self.list(handle, false)
    }

    /// [`Client::readdir`] with each entry's own stat where the host gave
    /// one (an entry removed while it was listed has none).
    pub fn readdir_stat(&self, handle: &Handle) -> Result<Vec<DirEntry>, GoferError> {
        self.list(handle, true)
    }

    /// The directory `names` below `dir` listed without a handle to it (at
    /// most [`MAX_WALK_NAMES`] names): its stat and its entries, with their
    /// stats if `stats`, or `None` when they take more than one reply (list
    /// it through a handle then).
    pub fn readdir_at<N: AsRef<[u8]>>(
        &self,
        dir: &Handle,
        names: &[N],
        stats: bool,
    ) -> Result<Option<(FileStat, Vec<DirEntry>)>, GoferError> {
        if names.len() > MAX_WALK_NAMES {
            return Ok(None);
        }
        match self.call(&Request::ReadDirAt {
            dir: *dir,
            names: names.iter().map(|n| n.as_ref().to_vec()).collect(),
            stats,
        })? {
            (
                Response::DirEntriesAt {
                    stat,
                    entries,
                    complete,
                },
                None,
            ) => Ok(complete.then_some((stat, entries))),
            _ => Err(GoferError::UnexpectedReply("readdir_at")),
        }
    }

    fn list(&self, handle: &Handle, stats: bool) -> Result<Vec<DirEntry>, GoferError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let (entries, next) = match self.call(&Request::ReadDir {
                handle: *handle,
                offset,
                stats,
            })? {
                (Response::DirEntries { entries, next }, None) => (entries, next),
                _ => return Err(GoferError::UnexpectedReply("readdir")),
            };
            out.extend(entries);
            if out.len() > MAX_DIR_ENTRIES {
                return Err(GoferError::Errno(libc::EOVERFLOW));
            }
            match next {
                None => return Ok(out),
                // Insist on progress, so a confused server cannot loop us.
                Some(n) if n > offset && n == out.len() as u64 => offset = n,
                Some(_) => return Err(GoferError::UnexpectedReply("readdir")),
            }
        }
    }

    /// The symlink's target, as bytes.
    pub fn readlink(&self, handle: &Handle) -> Result<Vec<u8>, GoferError> {
        match self.call(&Request::ReadLink { handle: *handle })? {
            (Response::Link { target }, None) => Ok(target),
            _ => Err(GoferError::UnexpectedReply("readlink")),
        }
    }

    /// Forgets the handle on the server.
    pub fn close(&self, handle: Handle) -> Result<(), GoferError> {
        match self.call(&Request::Close { handle })? {
            (Response::Closed, None) => Ok(()),
            _ => Err(GoferError::UnexpectedReply("close")),
        }
    }

    /// One round trip. An error reply becomes `GoferError::Errno`; an fd that
    /// came with it is closed.
    fn call(&self, req: &Request) -> Result<(Response, Option<OwnedFd>), GoferError> {
        let bytes = protocol::encode(req)?;
        // A panic while holding the lock leaves nothing half-done that a
        // later call could trip on except a lost reply, and a request is only
        // sent after the previous reply was read, so carry on.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Conn { sock, buf } = &mut *conn;
        wire::send(sock.as_fd(), &bytes, None)?;
        let (len, mut fds) = match wire::recv(sock.as_fd(), buf)? {
            Received::Message { len, fds } => (len, fds),
            Received::Truncated => return Err(GoferError::TooLarge(buf.len() + 1)),
            Received::Eof => return Err(GoferError::Closed),
        };
        let resp: Response = protocol::decode(&buf[..len])?;
        if let Response::Error { errno } = resp {
            return Err(GoferError::Errno(errno));
        }
        if fds.len() > 1 {
            return Err(GoferError::UnexpectedReply("a request (too many fds)"));
        }
        Ok((resp, fds.pop()))
    }
}
