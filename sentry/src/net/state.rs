//! The saved form of unix sockets. A socket is saved once, by its sandbox
//! id, with its type, state, names, options, its peer and its listen
//! queue (as socket ids) and its queued messages; files in flight in
//! SCM_RIGHTS messages are ids into the statefile's open files, so a file
//! both in a descriptor table and in flight stays one file.
//!
//! Restore goes in three steps: [`create`] makes every socket (no links),
//! the open files are re-opened (a socket's file finds its socket), then
//! [`link`] restores peers, listen queues, messages and names.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::unix::{
    Conn, Message, SockType, UCred, UnixAddr, UnixNamespace, UnixSocket, MAX_BUF, MIN_RCVBUF,
    MIN_SNDBUF, SCM_MAX_FD, SHUTDOWN_MASK, SOMAXCONN,
};
use super::NetError;
use crate::vfs::{OpenFile, Vfs};

/// A bound name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedAddr {
    Path(Vec<u8>),
    Abstract(Vec<u8>),
}
statefile::versioned!(SavedAddr, "net.UnixAddress", 1);

/// `struct ucred`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}
statefile::versioned!(SavedCred, "net.UCred", 1);

/// One queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixMessageRecord {
    pub data: Vec<u8>,
    /// A stream message's bytes already read.
    pub read: u64,
    /// Files in flight: saved open-file ids.
    pub rights: Vec<u64>,
    pub cred: SavedCred,
    pub from: Option<SavedAddr>,
    /// The sending socket (whose send buffer the message fills), 0 for
    /// one that is gone.
    pub sender: u64,
}
statefile::versioned!(
    UnixMessageRecord,
    "net.UnixMessage",
    1,
    [SavedCred, SavedAddr]
);

/// What a socket is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedConn {
    Unconnected,
    Listening,
    Connected,
}
statefile::versioned!(SavedConn, "net.UnixConn", 1);

/// A unix socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocketRecord {
    pub id: u64,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub ty: i32,
    pub addr: Option<SavedAddr>,
    /// The socket holds its abstract name in the namespace (an accepted
    /// socket only shows its listener's).
    pub owns_name: bool,
    /// A path-bound socket's absolute path, re-registered on restore.
    pub bound_path: Option<Vec<u8>>,
    pub conn: SavedConn,
    pub backlog: u64,
    /// A listener's connections not yet accepted (socket ids).
    pub pending: Vec<u64>,
    /// The peer (connection-based) or default destination (datagram); 0:
    /// none.
    pub peer: u64,
    pub peer_cred: Option<SavedCred>,
    pub messages: Vec<UnixMessageRecord>,
    pub shutdown: u8,
    pub error: i32,
    /// Released (its last file went) but still some socket's peer.
    pub closed: bool,
    pub passcred: bool,
    pub sndbuf: u64,
    pub rcvbuf: u64,
    pub rcvtimeo_ns: Option<u64>,
    pub sndtimeo_ns: Option<u64>,
}
statefile::savable_serde!(
    UnixSocketRecord,
    "net.UnixSocket",
    1,
    [SavedAddr, SavedConn, SavedCred, UnixMessageRecord]
);

/// Most bytes one restored socket may hold queued (a stream's senders are
/// bounded by their send buffers, a datagram receiver by its queue).
pub const MAX_QUEUED_BYTES: usize = 64 * MAX_BUF;
/// Most messages one restored socket may hold queued.
pub const MAX_QUEUED_MESSAGES: usize = 1 << 16;
/// The longest saved timeout (a year).
const MAX_TIMEOUT_NS: u64 = 365 * 24 * 3600 * 1_000_000_000;

fn saved_addr(a: &UnixAddr) -> SavedAddr {
    match a {
        UnixAddr::Path(p) => SavedAddr::Path(p.clone()),
        UnixAddr::Abstract(n) => SavedAddr::Abstract(n.clone()),
    }
}

fn live_addr(a: &SavedAddr) -> UnixAddr {
    match a {
        SavedAddr::Path(p) => UnixAddr::Path(p.clone()),
        SavedAddr::Abstract(n) => UnixAddr::Abstract(n.clone()),
    }
}

fn saved_cred(c: UCred) -> SavedCred {
    SavedCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    }
}

fn live_cred(c: SavedCred) -> UCred {
    UCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    }
}

fn ns_of(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl UnixSocket {
    /// The socket's record, naming files in flight through `file_id`, and
    /// the sockets it links to (to be saved too).
    pub fn record(
        &self,
        file_id: &mut dyn FnMut(&Arc<OpenFile>) -> u64,
    ) -> (UnixSocketRecord, Vec<Arc<UnixSocket>>) {
        // Whether the namespace names us, asked before our lock is taken
        // (binding takes the namespace's lock, then a socket's).
        let owns_name = match self.local_addr() {
            Some(UnixAddr::Abstract(n)) => self
                .namespace()
                .find_abstract(&n)
                .is_some_and(|o| std::ptr::eq(o.as_ref(), self)),
            _ => false,
        };
        let st = self.state();
        let mut linked = Vec::new();
        let (conn, backlog, pending) = match &st.conn {
            Conn::Unconnected => (SavedConn::Unconnected, 0, Vec::new()),
            Conn::Listening { backlog, pending } => {
                linked.extend(pending.iter().cloned());
                (
                    SavedConn::Listening,
                    *backlog as u64,
                    pending.iter().map(|s| s.id()).collect(),
                )
            }
            Conn::Connected => (SavedConn::Connected, 0, Vec::new()),
        };
        let peer = match &st.peer {
            Some(p) => {
                linked.push(p.clone());
                p.id()
            }
            None => 0,
        };
        let messages = st
            .rx
            .iter()
            .map(|m| {
                let sender = match m.sender.upgrade() {
                    Some(s) => {
                        let id = s.id();
                        linked.push(s);
                        id
                    }
                    None => 0,
                };
                UnixMessageRecord {
                    data: m.data.clone(),
                    read: m.read as u64,
                    rights: m.rights.iter().map(&mut *file_id).collect(),
                    cred: saved_cred(m.cred),
                    from: m.from.as_ref().map(saved_addr),
                    sender,
                }
            })
            .collect();
        let rec = UnixSocketRecord {
            id: self.id(),
            ty: self.ty().raw(),
            addr: st.addr.as_ref().map(saved_addr),
            owns_name,
            bound_path: st.bound_path.as_ref().map(|(p, _)| p.clone()),
            conn,
            backlog,
            pending,
            peer,
            peer_cred: st.peer_cred.map(saved_cred),
            messages,
            shutdown: st.shutdown,
            error: st.error,
            closed: st.closed,
            passcred: st.passcred,
            sndbuf: st.sndbuf as u64,
            rcvbuf: st.rcvbuf as u64,
            rcvtimeo_ns: ns_of(st.rcvtimeo),
            sndtimeo_ns: ns_of(st.sndtimeo),
        };
        (rec, linked)
    }
}

impl UnixSocketRecord {
    /// Checks the record alone, and its links against the ids of the
    /// saved sockets and open files. Errors name the field.
    pub fn check(
        &self,
        id: u64,
        sockets: &BTreeSet<u64>,
        files: &BTreeSet<u64>,
    ) -> Result<(), NetError> {
        let bad = |field: &'static str, why: String| NetError::Invalid { id, field, why };
        if self.id != id {
            return Err(bad(
                "id",
                format!("{} differs from the record's id", self.id),
            ));
        }
        let Some(ty) = SockType::from_raw(self.ty) else {
            return Err(bad("ty", format!("{} is not a unix socket type", self.ty)));
        };
        if let Some(a) = &self.addr {
            if !live_addr(a).valid() {
                return Err(bad("addr", "not a sockaddr_un name".into()));
            }
        }
        if self.owns_name && !matches!(self.addr, Some(SavedAddr::Abstract(_))) {
            return Err(bad("owns_name", "no abstract name to own".into()));
        }
        match (&self.bound_path, &self.addr) {
            (None, _) => {}
            (Some(p), Some(SavedAddr::Path(_))) => {
                if !p.starts_with(b"/") || p.len() >= 4096 || p.contains(&0) {
                    return Err(bad("bound_path", "not an absolute path".into()));
                }
            }
            (Some(_), _) => {
                return Err(bad("bound_path", "a socket not bound to a path".into()));
            }
        }
        if self.conn != SavedConn::Listening && (self.backlog != 0 || !self.pending.is_empty()) {
            return Err(bad("pending", "a socket that is not listening".into()));
        }
        if self.conn == SavedConn::Listening {
            if !ty.connection_based() {
                return Err(bad("conn", "a listening datagram socket".into()));
            }
            if self.backlog > SOMAXCONN as u64 {
                return Err(bad("backlog", format!("{} > {SOMAXCONN}", self.backlog)));
            }
            if self.pending.len() as u64 > self.backlog + 1 {
                return Err(bad("pending", "more connections than the backlog".into()));
            }
            if self.addr.is_none() {
                return Err(bad("addr", "a listening socket with no name".into()));
            }
        }
        let mut seen = BTreeSet::new();
        for p in &self.pending {
            if !sockets.contains(p) || *p == id || !seen.insert(*p) {
                return Err(bad("pending", format!("socket #{p}")));
            }
        }
        if self.peer != 0 {
            if self.conn != SavedConn::Connected {
                return Err(bad("peer", "a socket that is not connected".into()));
            }
            if !sockets.contains(&self.peer) {
                return Err(bad("peer", format!("socket #{} is not saved", self.peer)));
            }
            if ty.connection_based() && self.peer == id {
                return Err(bad("peer", "connected to itself".into()));
            }
        } else if self.conn == SavedConn::Connected && ty.connection_based() && !self.closed {
            return Err(bad("peer", "a connected socket with no peer".into()));
        }
        if self.shutdown > SHUTDOWN_MASK {
            return Err(bad("shutdown", format!("{:#x}", self.shutdown)));
        }
        if !(0..4096).contains(&self.error) {
            return Err(bad("error", format!("{}", self.error)));
        }
        if !(MIN_SNDBUF as u64..=MAX_BUF as u64).contains(&self.sndbuf) {
            return Err(bad("sndbuf", format!("{}", self.sndbuf)));
        }
        if !(MIN_RCVBUF as u64..=MAX_BUF as u64).contains(&self.rcvbuf) {
            return Err(bad("rcvbuf", format!("{}", self.rcvbuf)));
        }
        for (f, t) in [
            ("rcvtimeo_ns", self.rcvtimeo_ns),
            ("sndtimeo_ns", self.sndtimeo_ns),
        ] {
            if t.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_NS) {
                return Err(bad(f, format!("{t:?}")));
            }
        }
        if self.messages.len() > MAX_QUEUED_MESSAGES {
            return Err(bad("messages", format!("{} messages", self.messages.len())));
        }
        if self.closed && !self.messages.is_empty() {
            return Err(bad("messages", "a released socket with queued data".into()));
        }
        if self.conn == SavedConn::Listening && !self.messages.is_empty() {
            return Err(bad(
                "messages",
                "a listening socket with queued data".into(),
            ));
        }
        let mut total = 0usize;
        for m in &self.messages {
            total = total.saturating_add(m.data.len());
            let partial_ok = ty == SockType::Stream && (m.read as usize) < m.data.len();
            if m.read != 0 && !partial_ok {
                return Err(bad(
                    "messages.read",
                    format!("{} of {}", m.read, m.data.len()),
                ));
            }
            if m.rights.len() > SCM_MAX_FD {
                return Err(bad("messages.rights", format!("{} files", m.rights.len())));
            }
            if let Some(f) = m.rights.iter().find(|f| !files.contains(f)) {
                return Err(bad(
                    "messages.rights",
                    format!("open file #{f} is not saved"),
                ));
            }
            if m.sender != 0 && !sockets.contains(&m.sender) {
                return Err(bad("messages.sender", format!("socket #{}", m.sender)));
            }
            if let Some(a) = &m.from {
                if !live_addr(a).valid() {
                    return Err(bad("messages.from", "not a sockaddr_un name".into()));
                }
            }
        }
        if total > MAX_QUEUED_BYTES {
            return Err(bad("messages", format!("{total} bytes queued")));
        }
        Ok(())
    }
}

/// Checks what holds the records together: every pending connection
/// belongs to one listener, is of its type and connected; a
/// connection-based peer is of the same type; no socket has two open
/// files (`socket_files` lists the socket ids files name, one entry per
/// file); a released socket has no file and a pending one has none either.
pub fn check_graph(recs: &[UnixSocketRecord], socket_files: &[u64]) -> Result<(), NetError> {
    let by_id: BTreeMap<u64, &UnixSocketRecord> = recs.iter().map(|r| (r.id, r)).collect();
    let mut with_file = BTreeSet::new();
    for &s in socket_files {
        let bad = |why: String| NetError::Invalid {
            id: s,
            field: "file",
            why,
        };
        if !with_file.insert(s) {
            return Err(bad("the socket is two open files".into()));
        }
        match by_id.get(&s) {
            None => return Err(bad("no such socket".into())),
            Some(r) if r.closed => return Err(bad("a released socket has a file".into())),
            Some(_) => {}
        }
    }
    let mut owner = BTreeMap::new();
    for r in recs {
        for p in &r.pending {
            let bad = |why: String| NetError::Invalid {
                id: *p,
                field: "pending",
                why,
            };
            if owner.insert(*p, r.id).is_some() {
                return Err(bad("pending at two listeners".into()));
            }
            let Some(c) = by_id.get(p) else {
                return Err(bad("not saved".into()));
            };
            if c.ty != r.ty || c.conn != SavedConn::Connected || c.closed {
                return Err(bad("not a connection of the listener's type".into()));
            }
            if with_file.contains(p) {
                return Err(bad("an unaccepted connection has a file".into()));
            }
        }
        if r.peer != 0 && SockType::from_raw(r.ty).is_some_and(SockType::connection_based) {
            if let Some(p) = by_id.get(&r.peer) {
                if p.ty != r.ty {
                    return Err(NetError::Invalid {
                        id: r.id,
                        field: "peer",
                        why: format!("socket #{} is of another type", r.peer),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Step one of a restore: every socket, unlinked, by id.
pub fn create(recs: &[UnixSocketRecord], ns: &Arc<UnixNamespace>) -> HashMap<u64, Arc<UnixSocket>> {
    let mut out = HashMap::new();
    for r in recs {
        let Some(ty) = SockType::from_raw(r.ty) else {
            continue;
        };
        let s = UnixSocket::new(ns, ty, Some(r.id));
        {
            let mut st = s.state();
            st.addr = r.addr.as_ref().map(live_addr);
            st.peer_cred = r.peer_cred.map(live_cred);
            st.shutdown = r.shutdown;
            st.error = r.error;
            st.closed = r.closed;
            st.passcred = r.passcred;
            st.sndbuf = r.sndbuf as usize;
            st.rcvbuf = r.rcvbuf as usize;
            st.rcvtimeo = r.rcvtimeo_ns.map(Duration::from_nanos);
            st.sndtimeo = r.sndtimeo_ns.map(Duration::from_nanos);
        }
        out.insert(r.id, s);
    }
    out
}

/// Step three: links, listen queues, messages (their files found by id
/// through `file`) and names (a bound path is looked up again in `vfs`).
pub fn link(
    recs: &[UnixSocketRecord],
    sockets: &HashMap<u64, Arc<UnixSocket>>,
    file: &dyn Fn(u64) -> Option<Arc<OpenFile>>,
    vfs: &Vfs,
) -> Result<(), NetError> {
    for r in recs {
        let bad = |field: &'static str, why: String| NetError::Invalid {
            id: r.id,
            field,
            why,
        };
        let s = sockets
            .get(&r.id)
            .ok_or_else(|| bad("id", "not created".into()))?;
        let find = |id: u64, field: &'static str| {
            sockets
                .get(&id)
                .cloned()
                .ok_or_else(|| bad(field, format!("socket #{id}")))
        };
        let peer = if r.peer != 0 {
            Some(find(r.peer, "peer")?)
        } else {
            None
        };
        let mut pending = VecDeque::new();
        for &p in &r.pending {
            pending.push_back(find(p, "pending")?);
        }
        let mut rx = VecDeque::new();
        let mut rx_bytes = 0;
        for m in &r.messages {
            let mut rights = Vec::with_capacity(m.rights.len());
            for &f in &m.rights {
                rights.push(file(f).ok_or_else(|| bad("messages.rights", format!("#{f}")))?);
            }
            let sender = if m.sender != 0 {
                let snd = find(m.sender, "messages.sender")?;
                snd.add_wmem(m.data.len() - m.read as usize);
                Arc::downgrade(&snd)
            } else {
                std::sync::Weak::new()
            };
            rx_bytes += m.data.len() - m.read as usize;
            s.namespace().restore_inflight(rights.len());
            rx.push_back(Message {
                data: m.data.clone(),
                read: m.read as usize,
                rights,
                cred: live_cred(m.cred),
                from: m.from.as_ref().map(live_addr),
                sender,
            });
        }
        let key = r.bound_path.as_ref().and_then(|p| {
            let st = vfs.stat_at(&vfs.root(), p, false).ok()?;
            (st.mode & libc::S_IFMT == libc::S_IFSOCK).then_some((p.clone(), (st.dev, st.ino)))
        });
        {
            let mut st = s.state();
            st.conn = match r.conn {
                SavedConn::Unconnected => Conn::Unconnected,
                SavedConn::Listening => Conn::Listening {
                    backlog: r.backlog as usize,
                    pending,
                },
                SavedConn::Connected => Conn::Connected,
            };
            st.peer = peer;
            st.rx = rx;
            st.rx_bytes = rx_bytes;
            st.bound_path = key;
        }
        if !r.closed {
            s.namespace().restore_name(s, r.owns_name);
        }
    }
    Ok(())
}
