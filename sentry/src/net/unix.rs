//! AF_UNIX sockets (Linux's net/unix/af_unix.c, gVisor's socket/unix):
//! stream, datagram and seqpacket sockets, the listen queue, connections,
//! queued messages with the files and credentials they carry, shutdown,
//! and the sandbox's namespaces of bound names (filesystem paths and
//! abstract names).
//!
//! Each socket has one lock; no code path holds two sockets' locks at
//! once (a send takes the sender's, lets it go, then takes the
//! receiver's), so no lock order is needed between sockets.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::vfs::file::{IoCtx, INTERRUPT_POLL};
use crate::vfs::poll::{
    WaitQueue, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLRDNORM, EPOLLWRBAND,
    EPOLLWRNORM,
};
use crate::vfs::{Dentry, OpenFile, Timespec, Vfs};

/// `sizeof(sun_path)`.
pub const UNIX_PATH_MAX: usize = 108;
/// `offsetof(struct sockaddr_un, sun_path)`.
pub const SUN_PATH_OFFSET: usize = 2;
/// Linux's SCM_MAX_FD: most descriptors one message may carry.
pub const SCM_MAX_FD: usize = 253;
/// net.core.wmem_default / rmem_default: a new socket's buffer sizes.
pub const DEFAULT_BUF: usize = 212_992;
/// Twice net.core.wmem_max: the most SO_SNDBUF/SO_RCVBUF can give.
pub const MAX_BUF: usize = 2 * 212_992;
/// SOCK_MIN_SNDBUF and SOCK_MIN_RCVBUF on x86_64.
pub const MIN_SNDBUF: usize = 4608;
pub const MIN_RCVBUF: usize = 2304;
/// net.core.somaxconn: listen's backlog is capped at it.
pub const SOMAXCONN: usize = 4096;
/// net.unix.max_dgram_qlen: a datagram receiver holds at most this many
/// more messages from senders it is not connected back to.
pub const MAX_DGRAM_QLEN: usize = 10;
/// Bytes a datagram may not exceed below the sender's buffer size
/// (Linux: `len > sk_sndbuf - 32` is EMSGSIZE).
const DGRAM_SLACK: usize = 32;

/// Shutdown bits (Linux's RCV_SHUTDOWN, SEND_SHUTDOWN).
pub const RCV_SHUTDOWN: u8 = 1;
pub const SEND_SHUTDOWN: u8 = 2;
pub const SHUTDOWN_MASK: u8 = 3;

/// The socket types AF_UNIX has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockType {
    Stream,
    Dgram,
    SeqPacket,
}

impl SockType {
    pub fn from_raw(t: i32) -> Option<SockType> {
        match t {
            libc::SOCK_STREAM => Some(SockType::Stream),
            libc::SOCK_DGRAM => Some(SockType::Dgram),
            libc::SOCK_SEQPACKET => Some(SockType::SeqPacket),
            _ => None,
        }
    }

    pub fn raw(self) -> i32 {
        match self {
            SockType::Stream => libc::SOCK_STREAM,
            SockType::Dgram => libc::SOCK_DGRAM,
            SockType::SeqPacket => libc::SOCK_SEQPACKET,
        }
    }

    /// Stream and seqpacket sockets connect through a listener.
    pub fn connection_based(self) -> bool {
        self != SockType::Dgram
    }
}

/// A bound name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnixAddr {
    /// A filesystem path, as the application gave it (getsockname shows
    /// it so, relative or not).
    Path(Vec<u8>),
    /// An abstract name: the bytes after the leading NUL, NULs included.
    Abstract(Vec<u8>),
}

impl UnixAddr {
    /// Parses a `sockaddr_un` of `len` bytes (bind, connect, sendto).
    /// `None` for an address of the family alone (autobind for bind).
    pub fn parse(raw: &[u8]) -> Result<Option<UnixAddr>, Errno> {
        if raw.len() < SUN_PATH_OFFSET {
            return Err(Errno::EINVAL);
        }
        let family = u16::from_ne_bytes([raw[0], raw[1]]);
        if family != libc::AF_UNIX as u16 {
            return Err(Errno::EINVAL);
        }
        if raw.len() == SUN_PATH_OFFSET {
            return Ok(None);
        }
        if raw.len() > SUN_PATH_OFFSET + UNIX_PATH_MAX {
            return Err(Errno::EINVAL);
        }
        let path = &raw[SUN_PATH_OFFSET..];
        if path[0] == 0 {
            return Ok(Some(UnixAddr::Abstract(path[1..].to_vec())));
        }
        // A path ends at its first NUL, or at the address's end.
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        Ok(Some(UnixAddr::Path(path[..end].to_vec())))
    }

    /// The `sockaddr_un` getsockname and friends return, with its length:
    /// a path's NUL counts, an abstract name's length is exact.
    pub fn to_sockaddr(&self) -> Vec<u8> {
        let mut out = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        match self {
            UnixAddr::Path(p) => {
                out.extend_from_slice(p);
                out.push(0);
            }
            UnixAddr::Abstract(n) => {
                out.push(0);
                out.extend_from_slice(n);
            }
        }
        out
    }

    /// Whether the name fits in a `sockaddr_un` (saved names are checked).
    pub fn valid(&self) -> bool {
        match self {
            UnixAddr::Path(p) => !p.is_empty() && p.len() < UNIX_PATH_MAX && !p.contains(&0),
            UnixAddr::Abstract(n) => n.len() < UNIX_PATH_MAX,
        }
    }
}

/// The `sockaddr_un` of an unbound socket: the family alone.
pub fn unnamed_sockaddr() -> Vec<u8> {
    (libc::AF_UNIX as u16).to_ne_bytes().to_vec()
}

/// A process's credentials as sockets pass them (`struct ucred`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl UCred {
    /// What SO_PEERCRED says of a socket with no peer.
    pub const NONE: UCred = UCred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };

    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.pid.to_ne_bytes());
        b[4..8].copy_from_slice(&self.uid.to_ne_bytes());
        b[8..].copy_from_slice(&self.gid.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 12]) -> UCred {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        UCred {
            pid: i32::from_ne_bytes(word(0)),
            uid: u32::from_ne_bytes(word(4)),
            gid: u32::from_ne_bytes(word(8)),
        }
    }
}

/// One queued message (a datagram, a seqpacket record or a stream
/// write's worth of bytes), with what it carries.
pub struct Message {
    pub data: Vec<u8>,
    /// A stream message's bytes already read.
    pub(crate) read: usize,
    /// SCM_RIGHTS: files in flight, held here until received.
    pub rights: Vec<Arc<OpenFile>>,
    /// The sender's credentials (or those it gave in SCM_CREDENTIALS).
    pub cred: UCred,
    /// The sender's name when it was sent (recvfrom's address).
    pub from: Option<UnixAddr>,
    /// Whose send buffer the message counts against.
    pub(crate) sender: Weak<UnixSocket>,
}

impl Message {
    fn unread(&self) -> usize {
        self.data.len() - self.read
    }
}

/// What a socket is doing.
pub enum Conn {
    Unconnected,
    Listening {
        backlog: usize,
        /// Connections made but not yet accepted: their server-side sockets.
        pending: VecDeque<Arc<UnixSocket>>,
    },
    /// Connected (a datagram socket: has a default destination) to the
    /// socket in `State::peer`.
    Connected,
}

/// A socket's mutable state.
pub struct State {
    pub addr: Option<UnixAddr>,
    /// A path-bound socket's absolute path and file identity (dev, ino).
    pub bound_path: Option<(Vec<u8>, (u64, u64))>,
    pub conn: Conn,
    pub peer: Option<Arc<UnixSocket>>,
    /// SO_PEERCRED: the peer's credentials when the connection was made
    /// (a listening socket: its own, from listen()).
    pub peer_cred: Option<UCred>,
    pub rx: VecDeque<Message>,
    /// Unread bytes in `rx`.
    pub rx_bytes: usize,
    pub shutdown: u8,
    /// SO_ERROR: a pending error (ECONNRESET when the peer closed with
    /// data unread), cleared when reported.
    pub error: i32,
    /// The socket's last open file went (or it was never accepted and its
    /// listener went).
    pub closed: bool,
    pub passcred: bool,
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub rcvtimeo: Option<Duration>,
    pub sndtimeo: Option<Duration>,
}

/// An AF_UNIX socket. Its id is a sandbox id (checkpoint names sockets by
/// it) and its inode number in sockfs.
pub struct UnixSocket {
    id: u64,
    ty: SockType,
    created: Timespec,
    ns: Arc<UnixNamespace>,
    st: Mutex<State>,
    /// Woken on every change readers, writers, acceptors or connectors
    /// wait for.
    cond: Condvar,
    /// Pollers of the socket.
    queue: Arc<WaitQueue>,
    /// Bytes this socket sent that their receivers have not read yet (the
    /// send buffer's use, Linux's sk_wmem_alloc).
    wmem: AtomicUsize,
}

/// Socket ids are sandbox ids: 0 is none.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// A socket id (unix and inet sockets share the space: an open file
/// names its socket by it): a fresh one, or `restored` kept and the
/// counter moved past it.
pub(crate) fn allocate_socket_id(restored: Option<u64>) -> u64 {
    match restored {
        Some(id) => {
            NEXT_SOCKET.fetch_max(id.saturating_add(1), Ordering::Relaxed);
            id
        }
        None => NEXT_SOCKET.fetch_add(1, Ordering::Relaxed),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sandbox's names for unix sockets: abstract names, and the file
/// identities of bound socket files. The entries are weak: a socket that
/// is gone holds no name.
#[derive(Default)]
pub struct UnixNamespace {
    abstract_names: Mutex<HashMap<Vec<u8>, Weak<UnixSocket>>>,
    paths: Mutex<HashMap<(u64, u64), Weak<UnixSocket>>>,
    next_auto: AtomicU32,
    /// Files in flight in SCM_RIGHTS messages, sandbox-wide, bounded:
    /// past [`MAX_INFLIGHT`] a send is ETOOMANYREFS, as Linux answers a
    /// user over its limit.
    inflight: AtomicUsize,
    /// Every socket made, for the collector of sockets that only files
    /// in flight hold ([`UnixNamespace::collect`]).
    all: Mutex<Vec<Weak<UnixSocket>>>,
    /// A collection is running (one at a time; the releases it causes do
    /// not start another).
    collecting: std::sync::atomic::AtomicBool,
}

/// The most files in flight the sandbox may have.
pub const MAX_INFLIGHT: usize = 65_536;

impl UnixNamespace {
    pub fn new() -> Arc<UnixNamespace> {
        Arc::new(UnixNamespace::default())
    }

    fn claim_abstract(&self, name: &[u8], s: &Arc<UnixSocket>) -> Result<(), Errno> {
        let mut names = lock(&self.abstract_names);
        if let Some(old) = names.get(name) {
            if old.upgrade().is_some_and(|o| !o.is_closed()) {
                return Err(Errno::EADDRINUSE);
            }
        }
        names.insert(name.to_vec(), Arc::downgrade(s));
        Ok(())
    }

    /// Autobind: a free abstract name of five hex digits, as Linux makes.
    fn autobind(&self, s: &Arc<UnixSocket>) -> Result<UnixAddr, Errno> {
        for _ in 0..0x100000 {
            let n = self.next_auto.fetch_add(1, Ordering::Relaxed) & 0xfffff;
            let name = format!("{n:05x}").into_bytes();
            if self.claim_abstract(&name, s).is_ok() {
                return Ok(UnixAddr::Abstract(name));
            }
        }
        Err(Errno::ENOSPC)
    }

    fn release(&self, s: &UnixSocket, addr: Option<&UnixAddr>, key: Option<(u64, u64)>) {
        let mine = |w: &Weak<UnixSocket>| std::ptr::eq(w.as_ptr(), s);
        if let Some(UnixAddr::Abstract(name)) = addr {
            let mut names = lock(&self.abstract_names);
            if names.get(name).is_some_and(mine) {
                names.remove(name);
            }
        }
        if let Some(key) = key {
            let mut paths = lock(&self.paths);
            if paths.get(&key).is_some_and(mine) {
                paths.remove(&key);
            }
        }
    }

    pub(crate) fn find_abstract(&self, name: &[u8]) -> Option<Arc<UnixSocket>> {
        lock(&self.abstract_names).get(name).and_then(Weak::upgrade)
    }

    fn find_path(&self, key: (u64, u64)) -> Option<Arc<UnixSocket>> {
        lock(&self.paths).get(&key).and_then(Weak::upgrade)
    }

    /// The socket bound to `addr` (connect, sendto): ENOENT for a path
    /// that is not there, EACCES for a socket file the caller may not
    /// write, ECONNREFUSED for a name nothing listens on or a file that is
    /// no socket, EPROTOTYPE for a socket of another type.
    pub fn lookup(
        &self,
        vfs: &Vfs,
        start: &Arc<Dentry>,
        addr: &UnixAddr,
        ty: SockType,
    ) -> Result<Arc<UnixSocket>, Errno> {
        let found = match addr {
            // Linux looks abstract names up by type too: another type's
            // socket is as good as none.
            UnixAddr::Abstract(name) => self.find_abstract(name).filter(|s| s.ty == ty),
            UnixAddr::Path(p) => {
                let st = vfs.stat_at(start, p, true)?;
                if st.mode & libc::S_IFMT != libc::S_IFSOCK {
                    return Err(Errno::ECONNREFUSED);
                }
                // Connecting writes to the socket file (unix_find_bsd).
                crate::vfs::perm::check_stat(&st, crate::vfs::perm::MAY_WRITE)?;
                self.find_path((st.dev, st.ino))
            }
        };
        let s = found
            .filter(|s| !s.is_closed())
            .ok_or(Errno::ECONNREFUSED)?;
        if s.ty != ty {
            return Err(Errno::EPROTOTYPE);
        }
        Ok(s)
    }

    /// Counts `n` more files in flight, or ETOOMANYREFS past the limit.
    fn take_inflight(&self, n: usize) -> Result<(), Errno> {
        if n == 0 {
            return Ok(());
        }
        if self.inflight() + n > MAX_INFLIGHT {
            // Unreachable files in flight may free room.
            self.collect();
        }
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                c.checked_add(n).filter(|&t| t <= MAX_INFLIGHT)
            })
            .map(|_| ())
            .map_err(|_| Errno::ETOOMANYREFS)
    }

    /// `n` files left flight (received, or dropped with their message).
    fn put_inflight(&self, n: usize) {
        let _ = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(n))
            });
    }

    fn register(&self, s: &Arc<UnixSocket>) {
        let mut all = lock(&self.all);
        // Dead entries go whenever the list doubles.
        if all.len() >= 64 && all.len().is_power_of_two() {
            all.retain(|w| w.strong_count() > 0);
        }
        all.push(Arc::downgrade(s));
    }

    /// Linux's unix_gc: frees sockets that only files in flight hold and
    /// that no socket a task can reach holds either — a socket sent over
    /// itself (or a ring of them) whose descriptors were all closed. A
    /// socket's file is a candidate when every reference to it is in a
    /// queue; the candidates reachable from the queue of a socket that is
    /// not one stay, the others' queues are dropped, which releases them.
    /// Nothing can take a candidate's file out of flight meanwhile: that
    /// takes a receive on a socket holding it, and the sockets a task can
    /// receive from are not candidates and mark what their queues hold.
    pub fn collect(&self) {
        use std::collections::{HashMap, HashSet};
        if self.inflight() == 0 || self.collecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let sockets: Vec<Arc<UnixSocket>> = {
            let mut all = lock(&self.all);
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        // Socket files in flight: one clone each, how many queue entries
        // name each, and which sockets' files each socket's queue holds.
        let mut files: HashMap<usize, (Arc<OpenFile>, u64, usize)> = HashMap::new();
        let mut edges: HashMap<u64, Vec<u64>> = HashMap::new();
        for s in &sockets {
            let st = lock(&s.st);
            for m in &st.rx {
                for f in &m.rights {
                    let Ok(target) = super::socket::socket_of(f) else {
                        continue;
                    };
                    let e = files
                        .entry(Arc::as_ptr(f) as usize)
                        .or_insert_with(|| (f.clone(), target.id(), 0));
                    e.2 += 1;
                    edges.entry(s.id).or_default().push(target.id());
                }
            }
        }
        let candidates: HashSet<u64> = files
            .values()
            .filter(|(f, _, n)| Arc::strong_count(f) == n + 1)
            .map(|(_, id, _)| *id)
            .collect();
        let mut reached: HashSet<u64> = HashSet::new();
        let mut todo: Vec<u64> = sockets
            .iter()
            .map(|s| s.id)
            .filter(|id| !candidates.contains(id))
            .collect();
        while let Some(id) = todo.pop() {
            for &t in edges.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                if reached.insert(t) {
                    todo.push(t);
                }
            }
        }
        let mut dropped = Vec::new();
        for s in &sockets {
            if candidates.contains(&s.id) && !reached.contains(&s.id) {
                let mut st = lock(&s.st);
                st.rx_bytes = 0;
                dropped.push(std::mem::take(&mut st.rx));
            }
        }
        drop(files);
        drop(sockets);
        for rx in dropped {
            drop_messages(self, rx);
        }
        self.collecting.store(false, Ordering::Release);
    }

    /// Files in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Counts restored files in flight (no limit: the statefile's counts
    /// are bounded by validation).
    pub(crate) fn restore_inflight(&self, n: usize) {
        self.inflight.fetch_add(n, Ordering::AcqRel);
    }

    /// Re-registers a restored socket's name.
    pub(crate) fn restore_name(&self, s: &Arc<UnixSocket>, owns_abstract: bool) {
        // Our lock is let go before the namespace's is taken (binding
        // takes them the other way round).
        let (addr, key) = {
            let st = lock(&s.st);
            (st.addr.clone(), st.bound_path.as_ref().map(|(_, k)| *k))
        };
        if let (Some(UnixAddr::Abstract(name)), true) = (addr, owns_abstract) {
            lock(&self.abstract_names).insert(name, Arc::downgrade(s));
        }
        if let Some(key) = key {
            lock(&self.paths).insert(key, Arc::downgrade(s));
        }
    }
}

/// What a send carries.
pub struct Outgoing {
    pub data: Vec<u8>,
    pub rights: Vec<Arc<OpenFile>>,
    pub cred: UCred,
}

/// What a receive got.
#[derive(Default)]
pub struct Incoming {
    /// Bytes copied into the buffer.
    pub copied: usize,
    /// A datagram or record's whole length (MSG_TRUNC returns it).
    pub full_len: usize,
    /// The message did not fit: the rest was dropped (MSG_TRUNC in
    /// msg_flags).
    pub truncated: bool,
    pub rights: Vec<Arc<OpenFile>>,
    pub cred: Option<UCred>,
    pub from: Option<UnixAddr>,
}

impl UnixSocket {
    /// A new unconnected socket. `id` is given on restore.
    pub fn new(ns: &Arc<UnixNamespace>, ty: SockType, id: Option<u64>) -> Arc<UnixSocket> {
        let id = allocate_socket_id(id);
        let s = Arc::new(UnixSocket {
            id,
            ty,
            created: crate::vfs::Clock::now(&crate::vfs::HostClock),
            ns: ns.clone(),
            st: Mutex::new(State {
                addr: None,
                bound_path: None,
                conn: Conn::Unconnected,
                peer: None,
                peer_cred: None,
                rx: VecDeque::new(),
                rx_bytes: 0,
                shutdown: 0,
                error: 0,
                closed: false,
                passcred: false,
                sndbuf: DEFAULT_BUF,
                rcvbuf: DEFAULT_BUF,
                rcvtimeo: None,
                sndtimeo: None,
            }),
            cond: Condvar::new(),
            queue: WaitQueue::new(),
            wmem: AtomicUsize::new(0),
        });
        ns.register(&s);
        s
    }

    /// socketpair(2): two sockets connected to each other, each knowing
    /// the other's credentials (`cred`, the caller's).
    pub fn pair(
        ns: &Arc<UnixNamespace>,
        ty: SockType,
        cred: UCred,
    ) -> (Arc<UnixSocket>, Arc<UnixSocket>) {
        let a = UnixSocket::new(ns, ty, None);
        let b = UnixSocket::new(ns, ty, None);
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut st = lock(&x.st);
            st.conn = Conn::Connected;
            st.peer = Some(y.clone());
            st.peer_cred = Some(cred);
        }
        (a, b)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn ty(&self) -> SockType {
        self.ty
    }

    pub fn created(&self) -> Timespec {
        self.created
    }

    pub fn wait_queue(&self) -> &Arc<WaitQueue> {
        &self.queue
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.st)
    }

    pub(crate) fn namespace(&self) -> &Arc<UnixNamespace> {
        &self.ns
    }

    fn is_closed(&self) -> bool {
        lock(&self.st).closed
    }

    /// Tells waiters and pollers of a change.
    fn wake(&self, events: u32) {
        self.cond.notify_all();
        self.queue.notify(events);
    }

    /// Waits on this socket's condition until `deadline`, waking at least
    /// every INTERRUPT_POLL to look at the interrupt. Err(EAGAIN) past the
    /// deadline (SO_RCVTIMEO/SO_SNDTIMEO), Err(EINTR) when interrupted.
    fn wait<'a>(
        &self,
        g: MutexGuard<'a, State>,
        io: &IoCtx<'_>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, State>, Errno> {
        if io.nonblock {
            return Err(Errno::EAGAIN);
        }
        if io.interrupt.is_set() {
            return Err(Errno::EINTR);
        }
        let mut step = INTERRUPT_POLL;
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                return Err(Errno::EAGAIN);
            }
            step = step.min(d - now);
        }
        Ok(match self.cond.wait_timeout(g, step) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        })
    }

    fn deadline(timeout: Option<Duration>) -> Option<Instant> {
        timeout.and_then(|t| Instant::now().checked_add(t))
    }

    // ---- names ----

    /// bind(2) to an abstract name, or autobind (`None`).
    pub fn bind_abstract(self: &Arc<Self>, name: Option<Vec<u8>>) -> Result<(), Errno> {
        if lock(&self.st).addr.is_some() {
            return Err(Errno::EINVAL);
        }
        let addr = match name {
            Some(n) => {
                self.ns.claim_abstract(&n, self)?;
                UnixAddr::Abstract(n)
            }
            None => self.ns.autobind(self)?,
        };
        let mut st = lock(&self.st);
        if st.addr.is_some() {
            drop(st);
            self.ns.release(self, Some(&addr), None);
            return Err(Errno::EINVAL);
        }
        st.addr = Some(addr);
        Ok(())
    }

    /// bind(2) to a path: creates the socket file (EADDRINUSE if the name
    /// exists), mode `mode` (already masked by the umask).
    pub fn bind_path(
        self: &Arc<Self>,
        vfs: &Vfs,
        start: &Arc<Dentry>,
        path: &[u8],
        mode: u32,
    ) -> Result<(), Errno> {
        // The name first (EADDRINUSE), then whether the socket has one
        // (EINVAL, the new node removed again), as Linux's unix_bind_bsd.
        vfs.mknod_at(start, path, libc::S_IFSOCK | (mode & 0o7777))
            .map_err(|e| {
                if e == Errno::EEXIST {
                    Errno::EADDRINUSE
                } else {
                    e
                }
            })?;
        if lock(&self.st).addr.is_some() {
            let _ = vfs.unlink_at(start, path, 0);
            return Err(Errno::EINVAL);
        }
        let st = vfs.stat_at(start, path, false)?;
        let key = (st.dev, st.ino);
        let abs = absolute_path(vfs, start, path);
        let mut s = lock(&self.st);
        if s.addr.is_some() {
            drop(s);
            let _ = vfs.unlink_at(start, path, 0);
            return Err(Errno::EINVAL);
        }
        s.addr = Some(UnixAddr::Path(path.to_vec()));
        s.bound_path = Some((abs, key));
        drop(s);
        lock(&self.ns.paths).insert(key, Arc::downgrade(self));
        Ok(())
    }

    /// getsockname(2).
    pub fn local_addr(&self) -> Option<UnixAddr> {
        lock(&self.st).addr.clone()
    }

    /// getpeername(2): ENOTCONN without a peer.
    pub fn peer_addr(&self) -> Result<Option<UnixAddr>, Errno> {
        let peer = {
            let st = lock(&self.st);
            match (&st.conn, &st.peer) {
                (Conn::Connected, Some(p)) => p.clone(),
                _ => return Err(Errno::ENOTCONN),
            }
        };
        let addr = lock(&peer.st).addr.clone();
        Ok(addr)
    }

    // ---- connections ----

    /// listen(2). `me`: the caller, whom connecting peers' SO_PEERCRED
    /// names.
    pub fn listen(&self, backlog: i32, me: UCred) -> Result<(), Errno> {
        if !self.ty.connection_based() {
            return Err(Errno::EOPNOTSUPP);
        }
        // A negative backlog is a huge unsigned one: capped.
        let backlog = (backlog as u32 as usize).min(SOMAXCONN);
        let mut st = lock(&self.st);
        if st.addr.is_none() {
            return Err(Errno::EINVAL);
        }
        match &mut st.conn {
            Conn::Connected => return Err(Errno::EINVAL),
            Conn::Listening { backlog: b, .. } => *b = backlog,
            Conn::Unconnected => {
                st.conn = Conn::Listening {
                    backlog,
                    pending: VecDeque::new(),
                };
            }
        }
        st.peer_cred = Some(me);
        drop(st);
        // Blocked connectors may fit in a bigger backlog.
        self.wake(EPOLLOUT);
        Ok(())
    }

    pub fn is_listening(&self) -> bool {
        matches!(lock(&self.st).conn, Conn::Listening { .. })
    }

    /// connect(2) of a stream or seqpacket socket to listener `to`.
    pub fn connect(
        self: &Arc<Self>,
        io: &IoCtx<'_>,
        to: &Arc<UnixSocket>,
        me: UCred,
    ) -> Result<(), Errno> {
        if !self.ty.connection_based() {
            return self.connect_dgram(Some(to));
        }
        let (passcred, sndtimeo) = {
            let st = lock(&self.st);
            match st.conn {
                Conn::Connected => return Err(Errno::EISCONN),
                Conn::Listening { .. } => return Err(Errno::EINVAL),
                Conn::Unconnected => {}
            }
            (st.passcred, st.sndtimeo)
        };
        if passcred && self.local_addr().is_none() {
            self.bind_abstract(None)?;
        }
        let deadline = Self::deadline(sndtimeo);
        let server = UnixSocket::new(&self.ns, self.ty, None);
        let mut lst = lock(&to.st);
        let (listener_cred, listener_addr, listener_passcred) = loop {
            if lst.closed {
                return Err(Errno::ECONNREFUSED);
            }
            let full = match &lst.conn {
                Conn::Listening { backlog, pending } => pending.len() > *backlog,
                _ => return Err(Errno::ECONNREFUSED),
            };
            if !full {
                break (
                    lst.peer_cred.unwrap_or(UCred::NONE),
                    lst.addr.clone(),
                    lst.passcred,
                );
            }
            lst = to.wait(lst, io, deadline)?;
        };
        {
            let mut s = lock(&server.st);
            s.conn = Conn::Connected;
            s.peer = Some(self.clone());
            s.peer_cred = Some(me);
            s.addr = listener_addr;
            s.passcred = listener_passcred;
        }
        if let Conn::Listening { pending, .. } = &mut lst.conn {
            pending.push_back(server.clone());
        }
        drop(lst);
        to.wake(EPOLLIN | EPOLLRDNORM);
        let mut st = lock(&self.st);
        st.conn = Conn::Connected;
        st.peer = Some(server);
        st.peer_cred = Some(listener_cred);
        drop(st);
        self.wake(EPOLLOUT | EPOLLWRNORM);
        Ok(())
    }

    /// connect(2) of a datagram socket: sets (or with `None`, AF_UNSPEC,
    /// clears) its default destination.
    pub fn connect_dgram(&self, to: Option<&Arc<UnixSocket>>) -> Result<(), Errno> {
        // A receiver connected elsewhere takes nothing from us (Linux's
        // unix_may_send).
        if let Some(to) = to {
            let tst = lock(&to.st);
            if let (Conn::Connected, Some(p)) = (&tst.conn, &tst.peer) {
                if !std::ptr::eq(p.as_ref(), self) {
                    return Err(Errno::EPERM);
                }
            }
        }
        let mut st = lock(&self.st);
        match to {
            Some(to) => {
                st.conn = Conn::Connected;
                st.peer = Some(to.clone());
            }
            None => {
                st.conn = Conn::Unconnected;
                st.peer = None;
            }
        }
        Ok(())
    }

    /// accept(2): the next connection's server-side socket.
    pub fn accept(&self, io: &IoCtx<'_>) -> Result<Arc<UnixSocket>, Errno> {
        if !self.ty.connection_based() {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = lock(&self.st);
        let deadline = Self::deadline(st.rcvtimeo);
        loop {
            let Conn::Listening { pending, .. } = &mut st.conn else {
                return Err(Errno::EINVAL);
            };
            if let Some(s) = pending.pop_front() {
                drop(st);
                // Room in the backlog for a blocked connector.
                self.wake(EPOLLOUT);
                return Ok(s);
            }
            st = self.wait(st, io, deadline)?;
        }
    }

    /// shutdown(2): `how` is SHUT_RD, SHUT_WR or SHUT_RDWR (checked by
    /// the caller). A connected stream or seqpacket peer sees the other
    /// half.
    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let mode = ((how + 1) as u8) & SHUTDOWN_MASK;
        let peer = {
            let mut st = lock(&self.st);
            st.shutdown |= mode;
            match st.conn {
                Conn::Connected if self.ty.connection_based() => st.peer.clone(),
                _ => None,
            }
        };
        self.wake(crate::vfs::poll::ALL_EVENTS);
        if let Some(p) = peer {
            let mut mirrored = 0;
            if mode & RCV_SHUTDOWN != 0 {
                mirrored |= SEND_SHUTDOWN;
            }
            if mode & SEND_SHUTDOWN != 0 {
                mirrored |= RCV_SHUTDOWN;
            }
            lock(&p.st).shutdown |= mirrored;
            p.wake(crate::vfs::poll::ALL_EVENTS);
        }
        Ok(())
    }

    /// The socket's last open file is gone (or, never accepted, its
    /// listener is): names are freed, a connected peer sees the
    /// connection end (ECONNRESET if this side left data unread), queued
    /// messages and unaccepted connections are dropped.
    pub fn release(&self) {
        let (peer, rx, pending, addr, key, unread) = {
            let mut st = lock(&self.st);
            if st.closed {
                return;
            }
            st.closed = true;
            st.shutdown = SHUTDOWN_MASK;
            let unread = !st.rx.is_empty();
            let rx = std::mem::take(&mut st.rx);
            st.rx_bytes = 0;
            let pending = match std::mem::replace(&mut st.conn, Conn::Unconnected) {
                Conn::Listening { pending, .. } => pending.into_iter().collect(),
                Conn::Connected => {
                    st.conn = Conn::Connected;
                    Vec::new()
                }
                Conn::Unconnected => Vec::new(),
            };
            (
                st.peer.take(),
                rx,
                pending,
                st.addr.clone(),
                st.bound_path.as_ref().map(|(_, k)| *k),
                unread,
            )
        };
        self.ns.release(self, addr.as_ref(), key);
        drop_messages(&self.ns, rx);
        for s in pending {
            s.release();
        }
        if let Some(p) = peer {
            if self.ty.connection_based() {
                let mut pst = lock(&p.st);
                pst.shutdown = SHUTDOWN_MASK;
                if unread {
                    pst.error = libc::ECONNRESET;
                }
                drop(pst);
                p.wake(crate::vfs::poll::ALL_EVENTS);
            } else {
                p.wake(EPOLLOUT);
            }
        }
        self.wake(crate::vfs::poll::ALL_EVENTS);
        // A release is when rings of sockets in flight may have become
        // unreachable (Linux's unix_release_sock schedules its gc).
        self.ns.collect();
    }

    // ---- data ----

    /// Whether a socket connected to `self` holds us as its peer (a
    /// datagram receiver limits the queue only of senders it does not
    /// talk back to).
    fn peer_is(&self, other: &UnixSocket) -> bool {
        lock(&self.st)
            .peer
            .as_ref()
            .is_some_and(|p| std::ptr::eq(p.as_ref(), other))
    }

    /// send/sendto/sendmsg/write. `to` is the destination a datagram
    /// names (else the connected peer). The caller raises SIGPIPE for
    /// EPIPE on a stream unless MSG_NOSIGNAL.
    pub fn send(
        self: &Arc<Self>,
        io: &IoCtx<'_>,
        msg: Outgoing,
        to: Option<Arc<UnixSocket>>,
    ) -> Result<usize, Errno> {
        match self.ty {
            SockType::Stream => self.send_stream(io, msg),
            _ => self.send_dgram(io, msg, to),
        }
    }

    fn send_stream(self: &Arc<Self>, io: &IoCtx<'_>, msg: Outgoing) -> Result<usize, Errno> {
        let (peer, sndbuf, sndtimeo, from) = {
            let st = lock(&self.st);
            if !matches!(st.conn, Conn::Connected) {
                return Err(Errno::ENOTCONN);
            }
            let peer = st.peer.clone().ok_or(Errno::ENOTCONN)?;
            if st.shutdown & SEND_SHUTDOWN != 0 {
                return Err(Errno::EPIPE);
            }
            (peer, st.sndbuf, st.sndtimeo, st.addr.clone())
        };
        let deadline = Self::deadline(sndtimeo);
        let Outgoing {
            data,
            mut rights,
            cred,
        } = msg;
        self.ns.take_inflight(rights.len())?;
        let counted = rights.len();
        let mut done = 0;
        let mut failed = None;
        'send: while done < data.len() {
            // Room in the send buffer: wait for the reader to drain it.
            while self.wmem.load(Ordering::Acquire) >= sndbuf {
                if lock_peer_closed(&peer) {
                    break;
                }
                let g = lock(&self.st);
                if self.wmem.load(Ordering::Acquire) < sndbuf {
                    break;
                }
                if let Err(e) = self.wait(g, io, deadline) {
                    failed = Some(e);
                    break 'send;
                }
            }
            let room = sndbuf
                .saturating_sub(self.wmem.load(Ordering::Acquire))
                .max(1);
            let n = room.min(data.len() - done);
            let mut pst = lock(&peer.st);
            if pst.closed || pst.shutdown & RCV_SHUTDOWN != 0 {
                failed = Some(Errno::EPIPE);
                break;
            }
            self.wmem.fetch_add(n, Ordering::AcqRel);
            pst.rx_bytes += n;
            pst.rx.push_back(Message {
                data: data[done..done + n].to_vec(),
                read: 0,
                rights: std::mem::take(&mut rights),
                cred,
                from: from.clone(),
                sender: Arc::downgrade(self),
            });
            drop(pst);
            peer.wake(EPOLLIN | EPOLLRDNORM);
            done += n;
        }
        if !rights.is_empty() {
            // Nothing was queued: the files never flew.
            self.ns.put_inflight(counted);
        }
        match failed {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    fn send_dgram(
        self: &Arc<Self>,
        io: &IoCtx<'_>,
        msg: Outgoing,
        to: Option<Arc<UnixSocket>>,
    ) -> Result<usize, Errno> {
        let (target, sndbuf, sndtimeo, passcred, unbound) = {
            let st = lock(&self.st);
            if self.ty == SockType::SeqPacket && !matches!(st.conn, Conn::Connected) {
                return Err(Errno::ENOTCONN);
            }
            if st.shutdown & SEND_SHUTDOWN != 0 {
                return Err(Errno::EPIPE);
            }
            let target = match (&to, self.ty) {
                (Some(t), SockType::Dgram) => t.clone(),
                _ => match (&st.conn, &st.peer) {
                    (Conn::Connected, Some(p)) => p.clone(),
                    _ => return Err(Errno::ENOTCONN),
                },
            };
            (
                target,
                st.sndbuf,
                st.sndtimeo,
                st.passcred,
                st.addr.is_none(),
            )
        };
        if msg.data.len() > sndbuf.saturating_sub(DGRAM_SLACK) {
            return Err(Errno::EMSGSIZE);
        }
        if passcred && unbound {
            self.bind_abstract(None)?;
        }
        let from = self.local_addr();
        let deadline = Self::deadline(sndtimeo);
        // Counted before any lock is held: going over the limit runs the
        // collector, which takes every socket's lock.
        let flying = msg.rights.len();
        self.ns.take_inflight(flying)?;
        let r = self.push_dgram(io, msg, &target, sndbuf, deadline, from);
        if r.is_err() {
            self.ns.put_inflight(flying);
        }
        r
    }

    /// A datagram (or record) into `target`'s queue, waiting for room.
    fn push_dgram(
        self: &Arc<Self>,
        io: &IoCtx<'_>,
        msg: Outgoing,
        target: &Arc<UnixSocket>,
        sndbuf: usize,
        deadline: Option<Instant>,
        from: Option<UnixAddr>,
    ) -> Result<usize, Errno> {
        let len = msg.data.len();
        let talks_back = target.peer_is(self);
        loop {
            // The sender's buffer, then the receiver's queue.
            if self.wmem.load(Ordering::Acquire) + len > sndbuf
                && self.wmem.load(Ordering::Acquire) > 0
            {
                let g = lock(&self.st);
                if self.wmem.load(Ordering::Acquire) + len > sndbuf
                    && self.wmem.load(Ordering::Acquire) > 0
                {
                    drop(self.wait(g, io, deadline)?);
                    continue;
                }
            }
            let mut tst = lock(&target.st);
            if tst.closed {
                drop(tst);
                if self.ty == SockType::SeqPacket {
                    return Err(Errno::EPIPE);
                }
                let mut st = lock(&self.st);
                if st.peer.as_ref().is_some_and(|p| Arc::ptr_eq(p, target)) {
                    st.peer = None;
                    st.conn = Conn::Unconnected;
                }
                return Err(Errno::ECONNREFUSED);
            }
            if tst.shutdown & RCV_SHUTDOWN != 0 {
                return Err(Errno::EPIPE);
            }
            if self.ty == SockType::Dgram {
                // A connected receiver only takes datagrams from its peer.
                if let (Conn::Connected, Some(p)) = (&tst.conn, &tst.peer) {
                    if !std::ptr::eq(p.as_ref(), self.as_ref()) {
                        return Err(Errno::EPERM);
                    }
                }
            }
            if !talks_back && tst.rx.len() > MAX_DGRAM_QLEN {
                drop(tst);
                // Wait for the receiver to read (it wakes its senders).
                let g = lock(&self.st);
                drop(self.wait(g, io, deadline)?);
                continue;
            }
            self.wmem.fetch_add(len, Ordering::AcqRel);
            tst.rx_bytes += len;
            tst.rx.push_back(Message {
                data: msg.data,
                read: 0,
                rights: msg.rights,
                cred: msg.cred,
                from,
                sender: Arc::downgrade(self),
            });
            drop(tst);
            target.wake(EPOLLIN | EPOLLRDNORM);
            return Ok(len);
        }
    }

    /// Gives back the send buffer a consumed message held and wakes its
    /// sender.
    fn consumed(sender: &Weak<UnixSocket>, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(s) = sender.upgrade() {
            let _ = s
                .wmem
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    Some(w.saturating_sub(n))
                });
            // Under its lock, so a sender between its check and its wait
            // does not miss this.
            drop(lock(&s.st));
            s.wake(EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND);
        }
    }

    /// recv/recvfrom/recvmsg/read into `buf`. `peek`: MSG_PEEK;
    /// `waitall`: MSG_WAITALL (streams).
    pub fn recv(
        &self,
        io: &IoCtx<'_>,
        buf: &mut [u8],
        peek: bool,
        waitall: bool,
    ) -> Result<Incoming, Errno> {
        match self.ty {
            SockType::Stream => self.recv_stream(io, buf, peek, waitall),
            _ => self.recv_dgram(io, buf, peek),
        }
    }

    fn recv_stream(
        &self,
        io: &IoCtx<'_>,
        buf: &mut [u8],
        peek: bool,
        waitall: bool,
    ) -> Result<Incoming, Errno> {
        let mut st = lock(&self.st);
        if !matches!(st.conn, Conn::Connected) {
            return Err(Errno::EINVAL);
        }
        let deadline = Self::deadline(st.rcvtimeo);
        let target = if waitall { buf.len() } else { 1.min(buf.len()) };
        let mut out = Incoming::default();
        let mut gave_back: Vec<(Weak<UnixSocket>, usize)> = Vec::new();
        let check_creds = st.passcred;
        loop {
            // Take what is there, message by message.
            let mut i = 0;
            while out.copied < buf.len() && i < st.rx.len() {
                let m = &st.rx[i];
                if check_creds && out.cred.is_some_and(|c| c != m.cred) {
                    break;
                }
                if out.cred.is_none() {
                    out.cred = Some(m.cred);
                    out.from = m.from.clone();
                }
                let n = m.unread().min(buf.len() - out.copied);
                buf[out.copied..out.copied + n].copy_from_slice(&m.data[m.read..m.read + n]);
                out.copied += n;
                let had_rights = !m.rights.is_empty();
                if peek {
                    out.rights.extend(m.rights.iter().cloned());
                    i += 1;
                } else {
                    let m = &mut st.rx[i];
                    self.ns.put_inflight(m.rights.len());
                    out.rights.append(&mut m.rights);
                    m.read += n;
                    gave_back.push((m.sender.clone(), n));
                    let done = m.unread() == 0;
                    st.rx_bytes -= n;
                    if done {
                        st.rx.pop_front();
                    } else {
                        break;
                    }
                }
                if had_rights {
                    break;
                }
            }
            if out.copied >= target && (out.copied > 0 || buf.is_empty()) {
                break;
            }
            if !out.rights.is_empty() {
                break;
            }
            // Nothing (more) to take.
            if st.error != 0 && out.copied == 0 {
                let e = std::mem::take(&mut st.error);
                return Err(Errno(e));
            }
            if st.shutdown & RCV_SHUTDOWN != 0 {
                break;
            }
            match self.wait(st, io, deadline) {
                Ok(g) => st = g,
                Err(e) => {
                    if out.copied > 0 {
                        st = lock(&self.st);
                        break;
                    }
                    drop_gave_back(gave_back);
                    return Err(e);
                }
            }
        }
        drop(st);
        drop_gave_back(gave_back);
        out.full_len = out.copied;
        Ok(out)
    }

    fn recv_dgram(&self, io: &IoCtx<'_>, buf: &mut [u8], peek: bool) -> Result<Incoming, Errno> {
        let mut st = lock(&self.st);
        if self.ty == SockType::SeqPacket && !matches!(st.conn, Conn::Connected) {
            return Err(Errno::ENOTCONN);
        }
        let deadline = Self::deadline(st.rcvtimeo);
        loop {
            if let Some(m) = st.rx.front() {
                let n = m.data.len().min(buf.len());
                buf[..n].copy_from_slice(&m.data[..n]);
                let mut out = Incoming {
                    copied: n,
                    full_len: m.data.len(),
                    truncated: n < m.data.len(),
                    rights: Vec::new(),
                    cred: Some(m.cred),
                    from: m.from.clone(),
                };
                if peek {
                    out.rights = m.rights.clone();
                    return Ok(out);
                }
                let Some(mut m) = st.rx.pop_front() else {
                    return Err(Errno::EAGAIN);
                };
                st.rx_bytes -= m.data.len();
                drop(st);
                out.rights = std::mem::take(&mut m.rights);
                self.ns.put_inflight(out.rights.len());
                Self::consumed(&m.sender, m.data.len());
                return Ok(out);
            }
            if st.error != 0 {
                let e = std::mem::take(&mut st.error);
                return Err(Errno(e));
            }
            if st.shutdown & RCV_SHUTDOWN != 0 {
                return Ok(Incoming::default());
            }
            st = self.wait(st, io, deadline)?;
        }
    }

    // ---- readiness and ioctls ----

    /// The poll bits, as Linux's unix_poll and unix_dgram_poll give them.
    pub fn readiness(&self) -> u32 {
        let st = lock(&self.st);
        let mut r = 0;
        if st.error != 0 {
            r |= EPOLLERR;
        }
        if st.shutdown == SHUTDOWN_MASK {
            r |= EPOLLHUP;
        }
        if st.shutdown & RCV_SHUTDOWN != 0 {
            r |= EPOLLRDHUP | EPOLLIN | EPOLLRDNORM;
        }
        let listening = matches!(st.conn, Conn::Listening { .. });
        let readable = match &st.conn {
            Conn::Listening { pending, .. } => !pending.is_empty(),
            _ => !st.rx.is_empty(),
        };
        if readable {
            r |= EPOLLIN | EPOLLRDNORM;
        }
        if self.ty.connection_based() && matches!(st.conn, Conn::Unconnected) {
            r |= EPOLLHUP;
        }
        let mut writable = !listening && self.wmem.load(Ordering::Acquire) * 4 <= st.sndbuf;
        if writable && self.ty == SockType::Dgram {
            if let (Conn::Connected, Some(p)) = (&st.conn, &st.peer) {
                let p = p.clone();
                drop(st);
                let pst = lock(&p.st);
                let back = pst
                    .peer
                    .as_ref()
                    .is_some_and(|q| std::ptr::eq(q.as_ref(), self));
                if !back && pst.rx.len() > MAX_DGRAM_QLEN {
                    writable = false;
                }
            }
        }
        if writable {
            r |= EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND;
        }
        r
    }

    /// FIONREAD/SIOCINQ: a stream's unread bytes, a datagram socket's next
    /// message's size. EINVAL on a listening socket.
    pub fn inq(&self) -> Result<usize, Errno> {
        let st = lock(&self.st);
        if matches!(st.conn, Conn::Listening { .. }) {
            return Err(Errno::EINVAL);
        }
        Ok(match self.ty {
            SockType::Dgram => st.rx.front().map_or(0, |m| m.data.len()),
            _ => st.rx_bytes,
        })
    }

    /// TIOCOUTQ/SIOCOUTQ: bytes sent and not read yet.
    pub fn outq(&self) -> usize {
        self.wmem.load(Ordering::Acquire)
    }

    /// SO_ERROR: the pending error, cleared.
    pub fn take_error(&self) -> i32 {
        std::mem::take(&mut lock(&self.st).error)
    }

    /// SO_PEERCRED.
    pub fn peer_cred(&self) -> UCred {
        lock(&self.st).peer_cred.unwrap_or(UCred::NONE)
    }

    /// Runs `f` on the options (SO_PASSCRED, buffers, timeouts).
    pub fn with_options<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut lock(&self.st));
        // A bigger send buffer may let writers on.
        self.wake(EPOLLOUT | EPOLLWRNORM);
        r
    }

    /// Recomputes the send-buffer use after a restore.
    pub(crate) fn add_wmem(&self, n: usize) {
        self.wmem.fetch_add(n, Ordering::AcqRel);
    }
}

fn lock_peer_closed(p: &UnixSocket) -> bool {
    let st = lock(&p.st);
    st.closed || st.shutdown & RCV_SHUTDOWN != 0
}

fn drop_gave_back(v: Vec<(Weak<UnixSocket>, usize)>) {
    for (s, n) in v {
        UnixSocket::consumed(&s, n);
    }
}

/// Drops messages outside any socket lock: a file in flight may be the
/// last reference to a socket whose release takes locks.
fn drop_messages(ns: &UnixNamespace, rx: VecDeque<Message>) {
    for m in rx {
        UnixSocket::consumed(&m.sender, m.unread());
        ns.put_inflight(m.rights.len());
        drop(m.rights);
    }
}

/// The absolute path of `path` from `start`, for re-registering a bound
/// socket on restore.
fn absolute_path(vfs: &Vfs, start: &Arc<Dentry>, path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return path.to_vec();
    }
    let mut p = vfs.dentry_path_bytes(start);
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(path);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;

    fn io(intr: &Interrupt, nonblock: bool) -> IoCtx<'_> {
        IoCtx {
            interrupt: intr,
            nonblock,
        }
    }

    fn out(data: &[u8]) -> Outgoing {
        Outgoing {
            data: data.to_vec(),
            rights: Vec::new(),
            cred: UCred::default(),
        }
    }

    #[test]
    fn addresses_parse_as_linux_reads_them() {
        let fam = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(UnixAddr::parse(&fam), Ok(None));
        assert_eq!(UnixAddr::parse(&[1]), Err(Errno::EINVAL));
        let mut a = fam.to_vec();
        a.extend_from_slice(b"/tmp/x\0junk");
        assert_eq!(
            UnixAddr::parse(&a),
            Ok(Some(UnixAddr::Path(b"/tmp/x".to_vec())))
        );
        let mut b = fam.to_vec();
        b.extend_from_slice(b"\0ab\0c");
        let ab = UnixAddr::parse(&b).unwrap().unwrap();
        assert_eq!(ab, UnixAddr::Abstract(b"ab\0c".to_vec()));
        assert_eq!(ab.to_sockaddr(), b);
        let mut long = fam.to_vec();
        long.extend_from_slice(&[b'a'; 109]);
        assert_eq!(UnixAddr::parse(&long), Err(Errno::EINVAL));
        assert_eq!(UnixAddr::parse(&[9, 0, b'a']), Err(Errno::EINVAL));
    }

    #[test]
    fn stream_pair_moves_bytes_and_sees_eof_and_epipe() {
        let ns = UnixNamespace::new();
        let intr = Interrupt::new();
        let (a, b) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        assert_eq!(a.send(&io(&intr, true), out(b"hello"), None), Ok(5));
        assert_eq!(b.inq(), Ok(5));
        assert_eq!(a.outq(), 5);
        let mut buf = [0u8; 3];
        let got = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!((got.copied, &buf), (3, b"hel"));
        let got = b.recv(&io(&intr, true), &mut buf, true, false).unwrap();
        assert_eq!(&buf[..got.copied], b"lo");
        let got = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!(&buf[..got.copied], b"lo");
        assert_eq!(a.outq(), 0);
        assert!(matches!(
            b.recv(&io(&intr, true), &mut buf, false, false),
            Err(Errno::EAGAIN)
        ));
        a.release();
        assert_eq!(
            b.recv(&io(&intr, true), &mut buf, false, false)
                .unwrap()
                .copied,
            0
        );
        assert!(b.readiness() & EPOLLHUP != 0);
        assert_eq!(b.send(&io(&intr, true), out(b"x"), None), Err(Errno::EPIPE));
    }

    #[test]
    fn full_stream_buffer_is_eagain_and_drains() {
        let ns = UnixNamespace::new();
        let intr = Interrupt::new();
        let (a, b) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        a.with_options(|o| o.sndbuf = MIN_SNDBUF);
        let big = vec![1u8; 3 * MIN_SNDBUF];
        assert_eq!(a.send(&io(&intr, true), out(&big), None), Ok(MIN_SNDBUF));
        assert_eq!(
            a.send(&io(&intr, true), out(b"x"), None),
            Err(Errno::EAGAIN)
        );
        assert_eq!(a.readiness() & EPOLLOUT, 0);
        let mut buf = vec![0u8; 2 * MIN_SNDBUF];
        assert_eq!(
            b.recv(&io(&intr, true), &mut buf, false, false)
                .unwrap()
                .copied,
            MIN_SNDBUF
        );
        assert!(a.readiness() & EPOLLOUT != 0);
    }

    #[test]
    fn listen_connect_accept_and_backlog() {
        let ns = UnixNamespace::new();
        let intr = Interrupt::new();
        let l = UnixSocket::new(&ns, SockType::Stream, None);
        assert_eq!(l.listen(0, UCred::default()), Err(Errno::EINVAL));
        l.bind_abstract(Some(b"srv".to_vec())).unwrap();
        l.listen(
            0,
            UCred {
                pid: 1,
                uid: 0,
                gid: 0,
            },
        )
        .unwrap();
        let c1 = UnixSocket::new(&ns, SockType::Stream, None);
        let c2 = UnixSocket::new(&ns, SockType::Stream, None);
        let me = UCred {
            pid: 7,
            uid: 1,
            gid: 2,
        };
        c1.connect(&io(&intr, true), &l, me).unwrap();
        assert_eq!(c1.connect(&io(&intr, true), &l, me), Err(Errno::EISCONN));
        assert_eq!(c2.connect(&io(&intr, true), &l, me), Err(Errno::EAGAIN));
        assert!(l.readiness() & EPOLLIN != 0);
        let s = l.accept(&io(&intr, true)).unwrap();
        assert_eq!(s.peer_cred(), me);
        assert_eq!(c1.peer_cred().pid, 1);
        assert_eq!(s.local_addr(), Some(UnixAddr::Abstract(b"srv".to_vec())));
        assert_eq!(
            c1.peer_addr(),
            Ok(Some(UnixAddr::Abstract(b"srv".to_vec())))
        );
        assert!(matches!(l.accept(&io(&intr, true)), Err(Errno::EAGAIN)));
        let d = UnixSocket::new(&ns, SockType::Dgram, None);
        assert_eq!(
            ns.lookup_abstract_for_test(b"srv", SockType::Dgram).err(),
            Some(Errno::ECONNREFUSED)
        );
        drop(d);
        l.release();
        assert_eq!(
            ns.lookup_abstract_for_test(b"srv", SockType::Stream).err(),
            Some(Errno::ECONNREFUSED)
        );
    }

    #[test]
    fn datagrams_keep_boundaries_and_truncate() {
        let ns = UnixNamespace::new();
        let intr = Interrupt::new();
        let (a, b) = UnixSocket::pair(&ns, SockType::Dgram, UCred::default());
        a.send(&io(&intr, true), out(b"one"), None).unwrap();
        a.send(&io(&intr, true), out(b"second"), None).unwrap();
        assert_eq!(b.inq(), Ok(3));
        let mut buf = [0u8; 4];
        let g = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!((g.copied, g.truncated), (3, false));
        let g = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!((g.copied, g.full_len, g.truncated), (4, 6, true));
        let huge = vec![0u8; DEFAULT_BUF];
        assert_eq!(
            a.send(&io(&intr, true), out(&huge), None),
            Err(Errno::EMSGSIZE)
        );
    }

    #[test]
    fn files_in_flight_are_counted_and_bounded() {
        let ns = UnixNamespace::new();
        let intr = Interrupt::new();
        let (a, b) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        let (r, _w) = crate::vfs::pipe::new_pipe(0, Timespec::default());
        let with = |n: usize| Outgoing {
            data: b"x".to_vec(),
            rights: vec![r.clone(); n],
            cred: UCred::default(),
        };
        a.send(&io(&intr, true), with(2), None).unwrap();
        assert_eq!(ns.inflight(), 2);
        let mut buf = [0u8; 4];
        let got = b.recv(&io(&intr, true), &mut buf, true, false).unwrap();
        assert_eq!(
            (got.rights.len(), ns.inflight()),
            (2, 2),
            "a peek leaves them"
        );
        let got = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!((got.rights.len(), ns.inflight()), (2, 0));
        a.send(&io(&intr, true), with(3), None).unwrap();
        b.release();
        assert_eq!(ns.inflight(), 0, "dropped with the receiver's queue");
        let (c, d) = UnixSocket::pair(&ns, SockType::Dgram, UCred::default());
        ns.restore_inflight(MAX_INFLIGHT - 1);
        assert_eq!(
            c.send(&io(&intr, true), with(2), None),
            Err(Errno::ETOOMANYREFS)
        );
        assert_eq!(c.send(&io(&intr, true), with(1), None), Ok(1));
        assert_eq!(ns.inflight(), MAX_INFLIGHT);
        drop(d);
    }

    #[test]
    fn sockets_only_files_in_flight_hold_are_collected() {
        use crate::net::socket::SocketFile;
        let ns = UnixNamespace::new();
        let intr = Interrupt::new();
        let (a, b) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        let (p, q) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        let (fa, fb) = (
            SocketFile::open(a.clone(), 0),
            SocketFile::open(b.clone(), 0),
        );
        let (fp, fq) = (SocketFile::open(p.clone(), 0), SocketFile::open(q, 0));
        let carrying = |f: &Arc<OpenFile>| Outgoing {
            data: b"x".to_vec(),
            rights: vec![f.clone()],
            cred: UCred::default(),
        };
        // a over a, b over b, and q into the ring too.
        a.send(&io(&intr, true), carrying(&fa), None).unwrap();
        b.send(&io(&intr, true), carrying(&fb), None).unwrap();
        a.send(&io(&intr, true), carrying(&fq), None).unwrap();
        // A live socket holding a file in flight keeps it.
        let (x, y) = UnixSocket::pair(&ns, SockType::Dgram, UCred::default());
        let (fx, fy) = (SocketFile::open(x.clone(), 0), SocketFile::open(y, 0));
        let (kept, _kept_peer) = UnixSocket::pair(&ns, SockType::Stream, UCred::default());
        let fk = SocketFile::open(kept.clone(), 0);
        x.send(&io(&intr, true), carrying(&fk), None).unwrap();
        drop(fk);
        assert_eq!(ns.inflight(), 4);
        drop((fa, fb, fq));
        ns.collect();
        assert!(a.is_closed() && b.is_closed(), "the ring is freed");
        let mut buf = [0u8; 4];
        let got = p.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!(got.copied, 0, "q went with the ring: EOF");
        assert!(!kept.is_closed(), "held by a live socket's queue");
        assert_eq!(ns.inflight(), 1);
        drop((fp, fx, fy));
    }

    impl UnixNamespace {
        fn lookup_abstract_for_test(
            &self,
            name: &[u8],
            ty: SockType,
        ) -> Result<Arc<UnixSocket>, Errno> {
            self.find_abstract(name)
                .filter(|s| !s.is_closed() && s.ty == ty)
                .ok_or(Errno::ECONNREFUSED)
        }
    }
}
