//! The loopback stack's sockets and their connections. Every inet socket
//! of the sandbox lives in one [`InetStack`] under one lock: a connection
//! is two byte streams between two entries of it, so a send finds its
//! peer by id and no lock order between sockets is needed. Waiting is on
//! the stack's condition variable (every change wakes every waiter, which
//! looks again); pollers are told through each socket's wait queue, after
//! the lock is let go (an epoll listener asks the socket's readiness,
//! which takes the lock).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::addr::{self, Coverage, Family, Target};
use super::opts::{self, IntOpts, SOL_IPV6, SOL_SOCKET};
use super::Proto;
use crate::errno::Errno;
use crate::vfs::file::{IoCtx, INTERRUPT_POLL};
use crate::vfs::poll::{
    WaitQueue, ALL_EVENTS, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLRDNORM,
    EPOLLWRBAND, EPOLLWRNORM,
};
use crate::vfs::Timespec;

/// net.ipv4.ip_local_port_range's default.
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;
/// Ports below this need privilege (net.ipv4.ip_unprivileged_port_start).
pub const PRIVILEGED_PORTS: u16 = 1024;
/// net.core.somaxconn.
pub const SOMAXCONN: usize = 4096;
/// tcp_wmem[1], tcp_rmem[1]: a new TCP socket's buffer sizes.
pub const TCP_SNDBUF: usize = 16384;
pub const TCP_RCVBUF: usize = 131072;
/// net.core.wmem_default / rmem_default: a new UDP socket's.
pub const UDP_BUF: usize = 212_992;
/// Twice net.core.wmem_max/rmem_max: the most SO_SNDBUF/SO_RCVBUF give.
pub const MAX_BUF: usize = 2 * 212_992;
/// SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF.
pub const MIN_SNDBUF: usize = 4608;
pub const MIN_RCVBUF: usize = 2304;
/// The largest UDP payloads (65535 less the IP and UDP headers).
pub const UDP_MAX_V4: usize = 65507;
pub const UDP_MAX_V6: usize = 65527;
/// TCP_MSS_DEFAULT, and the MSS over `lo` (MTU 65536 less 40 bytes of
/// headers and 12 of timestamps).
pub const MSS_DEFAULT: i32 = 536;
pub const MSS_LO: i32 = 65483;
/// How long a closed connection's port stays in TIME_WAIT (TCP_TIMEWAIT_LEN).
pub const TIME_WAIT: Duration = Duration::from_secs(60);
/// Most ports in TIME_WAIT at once.
pub const MAX_TIME_WAIT: usize = 4096;

/// A byte stream's buffered bytes: one allocation, read from the front
/// and appended at the back with slice copies (a stream moves megabytes
/// through here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ByteQueue {
    buf: Vec<u8>,
    start: usize,
}

impl ByteQueue {
    pub fn from_vec(buf: Vec<u8>) -> ByteQueue {
        ByteQueue { buf, start: 0 }
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, oldest first.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Drops the oldest `n` bytes (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

/// One established TCP connection's end.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    /// The other end's socket id; 0 once it is gone.
    pub peer: u64,
    pub remote: Option<SocketAddr>,
    /// Bytes the peer sent that this end has not read (its receive
    /// buffer, bounded by SO_RCVBUF).
    pub rx: ByteQueue,
    /// Bytes this end sent that do not fit in the peer's receive buffer
    /// yet (its send buffer, bounded by SO_SNDBUF; SIOCOUTQ).
    pub tx: ByteQueue,
    /// shutdown(SHUT_RD) here.
    pub rd_shut: bool,
    /// shutdown(SHUT_WR) here: a FIN follows `tx`.
    pub wr_shut: bool,
    /// The peer's FIN arrived: EOF once `rx` is read.
    pub fin_rcvd: bool,
    /// A reset ended the connection (sent or received).
    pub reset: bool,
}

/// What a TCP socket is doing.
#[derive(Clone, Debug)]
pub enum Tcp {
    /// New, or its connection failed or ended by a disconnect.
    Closed,
    Listen {
        backlog: usize,
        /// Connections made and not accepted yet (their server ends).
        pending: VecDeque<u64>,
        /// Non-blocking connectors waiting for room in the backlog.
        waiting: VecDeque<u64>,
    },
    /// A non-blocking connect waiting for room at listener `listener`.
    Connecting {
        listener: u64,
        to: SocketAddr,
    },
    Established(Conn),
}

/// One queued datagram.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// A UDP socket's state.
#[derive(Clone, Debug, Default)]
pub struct Udp {
    /// connect(2)'s default destination.
    pub remote: Option<SocketAddr>,
    pub rx: VecDeque<Datagram>,
    pub rx_bytes: usize,
    pub rd_shut: bool,
    pub wr_shut: bool,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Tcp(Tcp),
    Udp(Udp),
}

/// One socket's state.
pub struct Sock {
    pub family: Family,
    pub proto: Proto,
    pub queue: Arc<WaitQueue>,
    pub created: Timespec,
    /// The bound address as the application gave it (port filled in);
    /// None: unbound.
    pub local: Option<SocketAddr>,
    /// Bound by bind(2) (an autobound port goes with a failed connect).
    pub explicit_bind: bool,
    /// Whose SO_REUSEPORT group the socket may join (its creator's euid).
    pub uid: u32,
    pub ints: IntOpts,
    /// SO_LINGER: Some(seconds) when on.
    pub linger: Option<u32>,
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub rcvtimeo: Option<Duration>,
    pub sndtimeo: Option<Duration>,
    /// SO_ERROR: a pending error, cleared when reported.
    pub error: i32,
    /// A non-blocking connect returned EINPROGRESS and no connect since
    /// has seen its outcome (Linux's SS_CONNECTING).
    pub in_progress: bool,
    /// A connection attempt failed: shut both ways until the next
    /// connect (Linux's tcp_done sets SHUTDOWN_MASK).
    pub failed: bool,
    pub kind: Kind,
}

impl Sock {
    pub fn new(family: Family, proto: Proto, uid: u32, created: Timespec) -> Sock {
        let (sndbuf, rcvbuf) = match proto {
            Proto::Tcp => (TCP_SNDBUF, TCP_RCVBUF),
            Proto::Udp | Proto::Icmp => (UDP_BUF, UDP_BUF),
        };
        Sock {
            family,
            proto,
            queue: WaitQueue::new(),
            created,
            local: None,
            explicit_bind: false,
            uid,
            ints: IntOpts::default(),
            linger: None,
            sndbuf,
            rcvbuf,
            rcvtimeo: None,
            sndtimeo: None,
            error: 0,
            in_progress: false,
            failed: false,
            kind: match proto {
                Proto::Tcp => Kind::Tcp(Tcp::Closed),
                // A ping socket is a queue of echo replies.
                Proto::Udp | Proto::Icmp => Kind::Udp(Udp::default()),
            },
        }
    }

    fn v6only(&self) -> bool {
        self.family == Family::V6
            && self
                .ints
                .flag(self.proto, true, SOL_IPV6, libc::IPV6_V6ONLY)
    }

    fn flag(&self, level: i32, name: i32) -> bool {
        self.ints
            .flag(self.proto, self.family == Family::V6, level, name)
    }

    pub fn coverage(&self) -> Option<Coverage> {
        self.local
            .map(|a| Coverage::of(self.family, a.ip(), self.v6only()))
    }

    pub fn listening(&self) -> bool {
        matches!(self.kind, Kind::Tcp(Tcp::Listen { .. }))
    }

    fn conn(&self) -> Option<&Conn> {
        match &self.kind {
            Kind::Tcp(Tcp::Established(c)) => Some(c),
            _ => None,
        }
    }

    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match &mut self.kind {
            Kind::Tcp(Tcp::Established(c)) => Some(c),
            _ => None,
        }
    }

    /// Whether this family can talk to `a` (normalised): an IPv4 socket
    /// to IPv4, an IPv6 one to both unless IPV6_V6ONLY.
    fn reaches(&self, a: IpAddr) -> bool {
        match (self.family, a) {
            (Family::V4, IpAddr::V4(_)) => true,
            (Family::V4, IpAddr::V6(_)) => false,
            (Family::V6, IpAddr::V6(_)) => true,
            (Family::V6, IpAddr::V4(_)) => !self.v6only(),
        }
    }

    /// `a` (normalised) as this socket's family writes it.
    fn shown(&self, a: SocketAddr) -> SocketAddr {
        match (self.family, a) {
            (Family::V6, SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => a,
        }
    }

    /// Bytes readable now (FIONREAD): a stream's unread bytes, the next
    /// datagram's size.
    fn inq(&self) -> usize {
        match &self.kind {
            Kind::Tcp(Tcp::Established(c)) => c.rx.len(),
            Kind::Tcp(_) => 0,
            Kind::Udp(u) => u.rx.front().map_or(0, |d| d.data.len()),
        }
    }
}

/// A port in TIME_WAIT after an active close: a bind without
/// SO_REUSEADDR on both sides is EADDRINUSE until it expires.
#[derive(Clone, Debug)]
pub struct TimeWait {
    pub cov: Coverage,
    pub port: u16,
    pub reuseaddr: bool,
    pub until: Instant,
}

/// Everything under the stack's lock.
pub struct Stack {
    pub socks: BTreeMap<u64, Sock>,
    pub next_port: u16,
    pub time_wait: Vec<TimeWait>,
}

/// Wait queues to tell of a change once the lock is let go.
#[derive(Default)]
pub struct Wakes(Vec<Arc<WaitQueue>>);

impl Wakes {
    fn add(&mut self, st: &Stack, id: u64) {
        if let Some(s) = st.socks.get(&id) {
            if !self.0.iter().any(|q| Arc::ptr_eq(q, &s.queue)) {
                self.0.push(s.queue.clone());
            }
        }
    }
}

/// The sandbox's loopback network stack.
pub struct InetStack {
    st: Mutex<Stack>,
    cond: Condvar,
    /// Options that were answered ENOPROTOOPT (logged once each).
    unknown_opts: Mutex<HashSet<(i32, i32)>>,
    /// net.ipv4.ping_group_range: the groups that may open ping sockets.
    ping_range: Mutex<(u32, u32)>,
}

/// Linux's net.ipv4.ping_group_range in a new network namespace: no
/// group ("1 0").
pub const PING_RANGE_DEFAULT: (u32, u32) = (1, 0);
/// The highest gid the range may name (Linux's GID_T_MAX).
pub const PING_GID_MAX: u32 = i32::MAX as u32;
/// An ICMP echo request's type, and its reply's.
const ICMP_ECHO: u8 = 8;
pub const ICMP_ECHOREPLY: u8 = 0;
/// struct icmphdr's size: a ping socket's shortest message.
pub const ICMP_HDR: usize = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a receive got.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub copied: usize,
    /// A datagram's whole length.
    pub full_len: usize,
    pub truncated: bool,
    /// A datagram's sender, as the receiver's family shows it.
    pub from: Option<SocketAddr>,
}

impl Default for InetStack {
    fn default() -> Self {
        InetStack {
            st: Mutex::new(Stack {
                socks: BTreeMap::new(),
                next_port: *EPHEMERAL.start(),
                time_wait: Vec::new(),
            }),
            cond: Condvar::new(),
            unknown_opts: Mutex::new(HashSet::new()),
            ping_range: Mutex::new(PING_RANGE_DEFAULT),
        }
    }
}

impl InetStack {
    pub fn new() -> Arc<InetStack> {
        Arc::new(InetStack::default())
    }

    /// net.ipv4.ping_group_range as (low, high).
    pub fn ping_group_range(&self) -> (u32, u32) {
        *lock(&self.ping_range)
    }

    /// Sets net.ipv4.ping_group_range; an empty range (high below low)
    /// means no group, stored as Linux stores it: "1 0".
    pub fn set_ping_group_range(&self, low: u32, high: u32) -> Result<(), Errno> {
        if low > PING_GID_MAX || high > PING_GID_MAX {
            return Err(Errno::EINVAL);
        }
        *lock(&self.ping_range) = if high < low {
            PING_RANGE_DEFAULT
        } else {
            (low, high)
        };
        Ok(())
    }

    /// Whether a task with `egid` and supplementary `groups` may open a
    /// ping socket (Linux's ping_init_sock).
    pub fn ping_allowed(&self, egid: u32, groups: &[u32]) -> bool {
        let (lo, hi) = self.ping_group_range();
        std::iter::once(&egid)
            .chain(groups)
            .any(|g| (lo..=hi).contains(g))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Stack> {
        lock(&self.st)
    }

    /// Tells waiters and the pollers in `w`.
    fn fire(&self, w: Wakes) {
        self.cond.notify_all();
        for q in w.0 {
            q.notify(ALL_EVENTS);
        }
    }

    /// Waits for a change: first lets the lock go to tell `w` (and then
    /// looks again at once), else sleeps on the condition until
    /// `deadline`, at most INTERRUPT_POLL at a time. EAGAIN past the
    /// deadline or when non-blocking, EINTR when interrupted.
    fn wait<'a>(
        &'a self,
        g: MutexGuard<'a, Stack>,
        w: &mut Wakes,
        io: &IoCtx<'_>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, Stack>, Errno> {
        if io.nonblock {
            return Err(Errno::EAGAIN);
        }
        if io.interrupt.is_set() {
            return Err(Errno::EINTR);
        }
        if !w.0.is_empty() {
            drop(g);
            self.fire(std::mem::take(w));
            return Ok(self.lock());
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

    /// Logs an unknown option once.
    pub fn log_unknown_opt(&self, level: i32, name: i32) {
        if lock(&self.unknown_opts).insert((level, name)) {
            tracing::warn!(level, name, "socket option not implemented: ENOPROTOOPT");
        }
    }

    /// Adds a socket with id `id`.
    pub(crate) fn insert(&self, id: u64, s: Sock) {
        self.lock().socks.insert(id, s);
    }
}

fn deadline(t: Option<Duration>) -> Option<Instant> {
    t.and_then(|t| Instant::now().checked_add(t))
}

impl Stack {
    pub fn get(&self, id: u64) -> Result<&Sock, Errno> {
        self.socks.get(&id).ok_or(Errno::EBADF)
    }

    pub fn get_mut(&mut self, id: u64) -> Result<&mut Sock, Errno> {
        self.socks.get_mut(&id).ok_or(Errno::EBADF)
    }

    /// Whether binding `id` at `port` with coverage `cov` collides with
    /// another socket of the protocol (Linux's inet_csk_bind_conflict and
    /// udp_lib_lport_inuse): overlapping addresses, unless both have
    /// SO_REUSEADDR and the other is not listening (TCP), or both have
    /// SO_REUSEPORT and one owner; or with a port in TIME_WAIT.
    fn conflicts(&self, id: u64, cov: &Coverage, port: u16) -> bool {
        let Some(me) = self.socks.get(&id) else {
            return true;
        };
        let reuse = me.flag(SOL_SOCKET, libc::SO_REUSEADDR);
        let reuseport = me.flag(SOL_SOCKET, libc::SO_REUSEPORT);
        for (&oid, o) in &self.socks {
            if oid == id || o.proto != me.proto {
                continue;
            }
            let (Some(ol), Some(ocov)) = (o.local, o.coverage()) else {
                continue;
            };
            if ol.port() != port || !cov.overlaps(&ocov) {
                continue;
            }
            let both_reuse = reuse
                && o.flag(SOL_SOCKET, libc::SO_REUSEADDR)
                && (me.proto != Proto::Tcp || !o.listening());
            let both_reuseport =
                reuseport && o.flag(SOL_SOCKET, libc::SO_REUSEPORT) && o.uid == me.uid;
            if !(both_reuse || both_reuseport) {
                return true;
            }
        }
        if me.proto == Proto::Tcp {
            let now = Instant::now();
            return self.time_wait.iter().any(|t| {
                t.port == port && t.until > now && t.cov.overlaps(cov) && !(reuse && t.reuseaddr)
            });
        }
        false
    }

    fn port_free(&self, proto: Proto, port: u16) -> bool {
        let now = Instant::now();
        let bound = self
            .socks
            .values()
            .any(|s| s.proto == proto && s.local.is_some_and(|l| l.port() == port));
        let waiting = proto == Proto::Tcp
            && self
                .time_wait
                .iter()
                .any(|t| t.port == port && t.until > now);
        !bound && !waiting
    }

    /// A free ephemeral port for `proto`.
    fn ephemeral(&mut self, proto: Proto) -> Option<u16> {
        let (lo, hi) = (*EPHEMERAL.start(), *EPHEMERAL.end());
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p >= hi { lo } else { p + 1 };
            if self.port_free(proto, p) {
                return Some(p);
            }
        }
        None
    }

    /// Binds `id` to `a` (port 0: an ephemeral one).
    fn bind_to(&mut self, id: u64, a: SocketAddr, explicit: bool) -> Result<(), Errno> {
        let (proto, family, v6only) = {
            let s = self.get(id)?;
            (s.proto, s.family, s.v6only())
        };
        let cov = Coverage::of(family, a.ip(), v6only);
        let port = if a.port() == 0 {
            self.time_wait.retain(|t| t.until > Instant::now());
            let mut found = None;
            let (lo, hi) = (*EPHEMERAL.start(), *EPHEMERAL.end());
            for _ in lo..=hi {
                let Some(p) = self.ephemeral(proto) else {
                    break;
                };
                if !self.conflicts(id, &cov, p) {
                    found = Some(p);
                    break;
                }
            }
            found.ok_or(if explicit {
                Errno::EADDRINUSE
            } else {
                Errno::EAGAIN
            })?
        } else {
            if self.conflicts(id, &cov, a.port()) {
                return Err(Errno::EADDRINUSE);
            }
            a.port()
        };
        let s = self.get_mut(id)?;
        let mut a = a;
        a.set_port(port);
        s.local = Some(a);
        s.explicit_bind = explicit;
        Ok(())
    }

    /// The socket a TCP connection to `to` (normalised) reaches: a
    /// listener, one bound to the address before one on a wildcard.
    fn find_listener(&self, to: SocketAddr) -> Option<u64> {
        let mut best: Option<(u64, bool)> = None;
        for (&id, s) in &self.socks {
            if s.proto != Proto::Tcp || !s.listening() {
                continue;
            }
            let (Some(l), Some(cov)) = (s.local, s.coverage()) else {
                continue;
            };
            if l.port() != to.port() || !cov.takes(to.ip()) {
                continue;
            }
            let spec = cov.specific();
            if best.is_none_or(|(_, b)| spec && !b) {
                best = Some((id, spec));
            }
        }
        best.map(|(id, _)| id)
    }

    /// The UDP socket a datagram from `from` to `to` (both normalised)
    /// goes to: a socket connected to the sender first, then one bound to
    /// the address, then a wildcard.
    fn find_udp(&self, from: SocketAddr, to: SocketAddr) -> Option<u64> {
        let mut best: Option<(u64, u8)> = None;
        for (&id, s) in &self.socks {
            let Kind::Udp(u) = &s.kind else { continue };
            if s.proto != Proto::Udp {
                continue;
            }
            let (Some(l), Some(cov)) = (s.local, s.coverage()) else {
                continue;
            };
            if l.port() != to.port() || !cov.takes(to.ip()) {
                continue;
            }
            let mut score = cov.specific() as u8;
            if let Some(r) = u.remote {
                if addr::norm(r) != from {
                    continue;
                }
                score += 2;
            }
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((id, score));
            }
        }
        best.map(|(id, _)| id)
    }

    /// The normalised local address `id` sends from to `dst`.
    fn source(&self, id: u64, dst: IpAddr) -> Result<SocketAddr, Errno> {
        let s = self.get(id)?;
        let l = s.local.ok_or(Errno::EINVAL)?;
        let ip = addr::norm_ip(l.ip());
        let ip = if ip.is_unspecified() {
            addr::source_for(dst)
        } else {
            ip
        };
        Ok(SocketAddr::new(ip, l.port()))
    }

    /// Moves what `from` sent into its peer's receive buffer, as far as
    /// it has room, and its FIN once everything went.
    fn flush(&mut self, from: u64, w: &mut Wakes) {
        let Some(c) = self.socks.get(&from).and_then(Sock::conn) else {
            return;
        };
        let peer = c.peer;
        let Some(room) = self
            .socks
            .get(&peer)
            .and_then(|p| Some(p.rcvbuf.saturating_sub(p.conn()?.rx.len())))
        else {
            return;
        };
        let Some(c) = self.socks.get_mut(&from).and_then(Sock::conn_mut) else {
            return;
        };
        let n = room.min(c.tx.len());
        let moved = c.tx.as_slice()[..n].to_vec();
        c.tx.consume(n);
        let fin = c.tx.is_empty() && c.wr_shut;
        if n > 0 {
            w.add(self, from);
        }
        if let Some(pc) = self.socks.get_mut(&peer).and_then(Sock::conn_mut) {
            pc.rx.push(&moved);
            if fin && !pc.fin_rcvd {
                pc.fin_rcvd = true;
            }
            if n > 0 || fin {
                w.add(self, peer);
            }
        }
    }

    /// Ends `id`'s connection with a reset: `err` for it (ECONNRESET),
    /// and the same for its peer unless the peer is `except` (the
    /// closing side).
    fn reset(&mut self, id: u64, err: i32, w: &mut Wakes) {
        if let Some(s) = self.socks.get_mut(&id) {
            if let Some(c) = s.conn_mut() {
                c.reset = true;
                c.peer = 0;
                c.tx.clear();
                s.error = err;
            }
            w.add(self, id);
        }
    }

    /// Makes the connection from `client` to listener `lst` (room in its
    /// backlog was checked): a new server end queued at the listener.
    fn establish(
        &mut self,
        client: u64,
        lst: u64,
        to: SocketAddr,
        new_id: u64,
        w: &mut Wakes,
    ) -> Result<(), Errno> {
        let from = self.source(client, to.ip())?;
        let l = self.get(lst)?;
        let mut server = Sock::new(
            l.family,
            Proto::Tcp,
            l.uid,
            crate::vfs::Clock::now(&crate::vfs::HostClock),
        );
        // The server end inherits the listener's options.
        server.ints = l.ints.clone();
        server.linger = l.linger;
        server.sndbuf = l.sndbuf;
        server.rcvbuf = l.rcvbuf;
        server.rcvtimeo = l.rcvtimeo;
        server.sndtimeo = l.sndtimeo;
        server.local = Some(l.shown(to));
        server.explicit_bind = true;
        let client_sock = self.get(client)?;
        server.kind = Kind::Tcp(Tcp::Established(Conn {
            peer: client,
            remote: Some(server.shown(from)),
            ..Conn::default()
        }));
        let remote = client_sock.shown(to);
        self.socks.insert(new_id, server);
        if let Some(Sock {
            kind: Kind::Tcp(Tcp::Listen { pending, .. }),
            ..
        }) = self.socks.get_mut(&lst)
        {
            pending.push_back(new_id);
        }
        let c = self.get_mut(client)?;
        // A connected socket's name is its source address (Linux sets
        // inet_saddr on connect, a wildcard bind included).
        c.local = Some(c.shown(from));
        c.kind = Kind::Tcp(Tcp::Established(Conn {
            peer: new_id,
            remote: Some(remote),
            ..Conn::default()
        }));
        w.add(self, lst);
        w.add(self, client);
        Ok(())
    }

    /// Connectors waiting at `lst` get connected while it has room.
    fn admit_waiting(&mut self, lst: u64, w: &mut Wakes) {
        loop {
            let next = match self.socks.get_mut(&lst) {
                Some(Sock {
                    kind:
                        Kind::Tcp(Tcp::Listen {
                            backlog,
                            pending,
                            waiting,
                        }),
                    ..
                }) if pending.len() <= *backlog => waiting.pop_front(),
                _ => None,
            };
            let Some(c) = next else { return };
            let to = match self.socks.get(&c).map(|s| &s.kind) {
                Some(Kind::Tcp(Tcp::Connecting { to, .. })) => *to,
                _ => continue,
            };
            let id = super::next_id(None);
            if self.establish(c, lst, to, id, w).is_err() {
                self.socks.remove(&id);
            }
        }
    }

    /// A socket's last reference went: it leaves the stack, telling its
    /// peer (a FIN after what it sent, or a reset if it left data unread
    /// or SO_LINGER is zero), resetting its listen queue.
    pub fn release(&mut self, id: u64, w: &mut Wakes) {
        let Some(s) = self.socks.remove(&id) else {
            return;
        };
        w.0.push(s.queue.clone());
        let cov = s.coverage();
        let reuse = s.flag(SOL_SOCKET, libc::SO_REUSEADDR);
        match s.kind {
            Kind::Udp(_) => {}
            Kind::Tcp(Tcp::Closed) => {}
            Kind::Tcp(Tcp::Connecting { listener, .. }) => {
                if let Some(Sock {
                    kind: Kind::Tcp(Tcp::Listen { waiting, .. }),
                    ..
                }) = self.socks.get_mut(&listener)
                {
                    waiting.retain(|&x| x != id);
                }
            }
            Kind::Tcp(Tcp::Listen {
                pending, waiting, ..
            }) => {
                for p in pending {
                    // The unaccepted connection's client is reset.
                    let client = self
                        .socks
                        .get(&p)
                        .and_then(Sock::conn)
                        .map_or(0, |c| c.peer);
                    self.socks.remove(&p);
                    self.reset(client, libc::ECONNRESET, w);
                }
                for c in waiting {
                    if let Some(cs) = self.socks.get_mut(&c) {
                        cs.kind = Kind::Tcp(Tcp::Closed);
                        cs.error = libc::ECONNREFUSED;
                        cs.failed = true;
                        w.add(self, c);
                    }
                }
            }
            Kind::Tcp(Tcp::Established(c)) => {
                let abort = !c.rx.is_empty() || s.linger == Some(0);
                if c.peer != 0 && !c.reset {
                    if abort {
                        self.reset(c.peer, libc::ECONNRESET, w);
                    } else {
                        if let Some(pc) = self.socks.get_mut(&c.peer).and_then(Sock::conn_mut) {
                            // What was sent reaches the peer, then the FIN.
                            pc.rx.push(c.tx.as_slice());
                            pc.fin_rcvd = true;
                            pc.peer = 0;
                        }
                        w.add(self, c.peer);
                    }
                }
                // The side that closes first holds the port in TIME_WAIT
                // (at most MAX_TIME_WAIT ports, as tcp_max_tw_buckets
                // bounds Linux's: the oldest goes first).
                if !abort && !c.fin_rcvd && !c.reset {
                    if self.time_wait.len() >= MAX_TIME_WAIT {
                        self.time_wait.remove(0);
                    }
                    if let (Some(cov), Some(l)) = (cov, s.local) {
                        self.time_wait.push(TimeWait {
                            cov,
                            port: l.port(),
                            reuseaddr: reuse,
                            until: Instant::now() + TIME_WAIT,
                        });
                    }
                }
            }
        }
        self.time_wait.retain(|t| t.until > Instant::now());
    }
}

/// A handle on one socket of the stack (what an open file holds).
pub struct InetSocket {
    id: u64,
    family: Family,
    proto: Proto,
    stack: Arc<InetStack>,
    queue: Arc<WaitQueue>,
    created: Timespec,
}

impl InetSocket {
    /// A new socket.
    pub fn new(stack: &Arc<InetStack>, family: Family, proto: Proto, uid: u32) -> Arc<InetSocket> {
        let id = super::next_id(None);
        let created = crate::vfs::Clock::now(&crate::vfs::HostClock);
        let s = Sock::new(family, proto, uid, created);
        let queue = s.queue.clone();
        stack.insert(id, s);
        Arc::new(InetSocket {
            id,
            family,
            proto,
            stack: stack.clone(),
            queue,
            created,
        })
    }

    /// The handle of socket `id`, which is in the stack (accept, restore).
    pub(crate) fn handle(stack: &Arc<InetStack>, id: u64) -> Option<Arc<InetSocket>> {
        let st = stack.lock();
        let s = st.socks.get(&id)?;
        Some(Arc::new(InetSocket {
            id,
            family: s.family,
            proto: s.proto,
            stack: stack.clone(),
            queue: s.queue.clone(),
            created: s.created,
        }))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    pub fn created(&self) -> Timespec {
        self.created
    }

    pub fn wait_queue(&self) -> &Arc<WaitQueue> {
        &self.queue
    }

    /// SOCK_STREAM or SOCK_DGRAM.
    pub fn sock_type(&self) -> i32 {
        match self.proto {
            Proto::Tcp => libc::SOCK_STREAM,
            Proto::Udp | Proto::Icmp => libc::SOCK_DGRAM,
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Stack, u64, &mut Wakes) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let mut w = Wakes::default();
        let r = {
            let mut st = self.stack.lock();
            f(&mut st, self.id, &mut w)
        };
        self.stack.fire(w);
        r
    }

    /// The last open file went.
    pub fn release(&self) {
        let _ = self.with(|st, id, w| {
            st.release(id, w);
            Ok(())
        });
    }

    /// bind(2). `privileged`: the caller may bind ports below 1024.
    pub fn bind(&self, a: SocketAddr, privileged: bool) -> Result<(), Errno> {
        self.with(|st, id, _| {
            let s = st.get(id)?;
            if s.local.is_some() {
                return Err(Errno::EINVAL);
            }
            if let (Family::V6, IpAddr::V6(v6)) = (s.family, a.ip()) {
                if v6.to_ipv4_mapped().is_some() && s.v6only() {
                    return Err(Errno::EINVAL);
                }
            }
            if !addr::is_local_or_any(a.ip()) {
                return Err(Errno::EADDRNOTAVAIL);
            }
            if a.port() != 0 && a.port() < PRIVILEGED_PORTS && !privileged {
                return Err(Errno::EACCES);
            }
            st.bind_to(id, a, true)
        })
    }

    /// listen(2).
    pub fn listen(&self, backlog: i32) -> Result<(), Errno> {
        if self.proto != Proto::Tcp {
            return Err(Errno::EOPNOTSUPP);
        }
        let backlog = (backlog as u32 as usize).min(SOMAXCONN);
        self.with(|st, id, w| {
            let s = st.get(id)?;
            match &s.kind {
                Kind::Tcp(Tcp::Listen { .. }) => {}
                Kind::Tcp(Tcp::Closed) if !s.in_progress => {}
                _ => return Err(Errno::EINVAL),
            }
            if s.local.is_none() {
                let any = s.family.unspecified();
                st.bind_to(id, any, false).map_err(|_| Errno::EADDRINUSE)?;
            }
            let s = st.get(id)?;
            if !s.listening() {
                // Listening must not collide with another listener on
                // the port (reuse of a non-listening port was allowed).
                let (cov, port) = match (s.coverage(), s.local) {
                    (Some(c), Some(l)) => (c, l.port()),
                    _ => return Err(Errno::EINVAL),
                };
                let clash = st.socks.iter().any(|(&oid, o)| {
                    oid != id
                        && o.proto == Proto::Tcp
                        && o.listening()
                        && o.local.is_some_and(|l| l.port() == port)
                        && o.coverage().is_some_and(|oc| oc.overlaps(&cov))
                        && !(s.flag(SOL_SOCKET, libc::SO_REUSEPORT)
                            && o.flag(SOL_SOCKET, libc::SO_REUSEPORT)
                            && o.uid == s.uid)
                });
                if clash {
                    return Err(Errno::EADDRINUSE);
                }
            }
            let s = st.get_mut(id)?;
            match &mut s.kind {
                Kind::Tcp(Tcp::Listen { backlog: b, .. }) => *b = backlog,
                k => {
                    *k = Kind::Tcp(Tcp::Listen {
                        backlog,
                        pending: VecDeque::new(),
                        waiting: VecDeque::new(),
                    })
                }
            }
            st.admit_waiting(id, w);
            w.add(st, id);
            Ok(())
        })
    }

    /// accept(2): the next connection and its peer's address.
    pub fn accept(&self, io: &IoCtx<'_>) -> Result<(Arc<InetSocket>, SocketAddr), Errno> {
        if self.proto != Proto::Tcp {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut w = Wakes::default();
        let mut st = self.stack.lock();
        let dl = deadline(st.get(self.id)?.rcvtimeo);
        let got = loop {
            let s = st.get_mut(self.id)?;
            let Kind::Tcp(Tcp::Listen { pending, .. }) = &mut s.kind else {
                return Err(Errno::EINVAL);
            };
            if let Some(c) = pending.pop_front() {
                st.admit_waiting(self.id, &mut w);
                w.add(&st, self.id);
                break c;
            }
            st = self.stack.wait(st, &mut w, io, dl)?;
        };
        let remote = st
            .socks
            .get(&got)
            .and_then(Sock::conn)
            .and_then(|c| c.remote)
            .unwrap_or(self.family.unspecified());
        drop(st);
        self.stack.fire(w);
        let h = InetSocket::handle(&self.stack, got).ok_or(Errno::ECONNABORTED)?;
        Ok((h, remote))
    }

    /// connect(2). `id_for_server`: the id a new server end takes.
    pub fn connect(&self, io: &IoCtx<'_>, target: Target) -> Result<(), Errno> {
        match self.proto {
            Proto::Udp | Proto::Icmp => self.connect_udp(target),
            Proto::Tcp => self.connect_tcp(io, target),
        }
    }

    fn connect_udp(&self, target: Target) -> Result<(), Errno> {
        self.with(|st, id, _| {
            let to = match target {
                Target::Unspec => {
                    let s = st.get_mut(id)?;
                    if let Kind::Udp(u) = &mut s.kind {
                        u.remote = None;
                    }
                    // An autobound port goes with the association.
                    if !s.explicit_bind {
                        s.local = None;
                    }
                    return Ok(());
                }
                Target::Addr(a) => a,
            };
            let s = st.get(id)?;
            let dst = addr::norm(to);
            if !s.reaches(dst.ip()) {
                return Err(Errno::ENETUNREACH);
            }
            let ip = addr::route(dst.ip()).ok_or(Errno::ENETUNREACH)?;
            if s.local.is_none() {
                let any = s.family.unspecified();
                st.bind_to(id, any, false)
                    .map_err(|_| Errno::EADDRNOTAVAIL)?;
            }
            // The name stays as bound (a wildcard shows the source
            // address while connected: local_addr), so a disconnect
            // gives the wildcard back, as Linux's __udp_disconnect.
            let s = st.get_mut(id)?;
            let shown = s.shown(SocketAddr::new(ip, dst.port()));
            if let Kind::Udp(u) = &mut s.kind {
                u.remote = Some(shown);
            }
            Ok(())
        })
    }

    fn connect_tcp(&self, io: &IoCtx<'_>, target: Target) -> Result<(), Errno> {
        let mut w = Wakes::default();
        let r = self.connect_tcp_locked(io, target, &mut w);
        self.stack.fire(w);
        r
    }

    fn connect_tcp_locked(
        &self,
        io: &IoCtx<'_>,
        target: Target,
        w: &mut Wakes,
    ) -> Result<(), Errno> {
        let id = self.id;
        let mut st = self.stack.lock();
        let s = st.get_mut(id)?;
        if let Target::Unspec = target {
            // A disconnect: the connection is reset.
            let peer = s.conn().map(|c| (c.peer, c.reset));
            s.kind = Kind::Tcp(Tcp::Closed);
            s.in_progress = false;
            if let Some((p, false)) = peer {
                if p != 0 {
                    st.reset(p, libc::ECONNRESET, w);
                }
            }
            return Ok(());
        }
        let Target::Addr(to) = target else {
            return Err(Errno::EINVAL);
        };
        if s.in_progress {
            // The outcome of an earlier non-blocking connect.
            match &s.kind {
                Kind::Tcp(Tcp::Connecting { .. }) => return Err(Errno::EALREADY),
                Kind::Tcp(Tcp::Established(_)) => {
                    s.in_progress = false;
                    return Ok(());
                }
                _ => {
                    s.in_progress = false;
                    let e = std::mem::take(&mut s.error);
                    return Err(if e != 0 {
                        Errno(e)
                    } else {
                        Errno::ECONNABORTED
                    });
                }
            }
        }
        match &s.kind {
            Kind::Tcp(Tcp::Closed) => {}
            _ => return Err(Errno::EISCONN),
        }
        let dst = addr::norm(to);
        if !s.reaches(dst.ip()) {
            return Err(Errno::ENETUNREACH);
        }
        let ip = addr::route(dst.ip()).ok_or(Errno::ENETUNREACH)?;
        let dst = SocketAddr::new(ip, dst.port());
        let dl = deadline(s.sndtimeo);
        s.failed = false;
        if s.local.is_none() {
            let any = s.family.unspecified();
            st.bind_to(id, any, false)
                .map_err(|_| Errno::EADDRNOTAVAIL)?;
        }
        loop {
            let Some(lst) = st.find_listener(dst).filter(|_| dst.port() != 0) else {
                let s = st.get_mut(id)?;
                if !s.explicit_bind {
                    s.local = None;
                }
                s.failed = true;
                if io.nonblock {
                    s.error = libc::ECONNREFUSED;
                    s.in_progress = true;
                    w.add(&st, id);
                    return Err(Errno::EINPROGRESS);
                }
                return Err(Errno::ECONNREFUSED);
            };
            let full = match &st.get(lst)?.kind {
                Kind::Tcp(Tcp::Listen {
                    backlog, pending, ..
                }) => pending.len() > *backlog,
                _ => true,
            };
            if !full {
                let new_id = super::next_id(None);
                st.establish(id, lst, dst, new_id, w)?;
                if io.nonblock {
                    // Over loopback too the handshake finishes after
                    // connect returns.
                    st.get_mut(id)?.in_progress = true;
                    return Err(Errno::EINPROGRESS);
                }
                return Ok(());
            }
            if io.nonblock {
                let s = st.get_mut(id)?;
                s.kind = Kind::Tcp(Tcp::Connecting {
                    listener: lst,
                    to: dst,
                });
                s.in_progress = true;
                if let Some(Sock {
                    kind: Kind::Tcp(Tcp::Listen { waiting, .. }),
                    ..
                }) = st.socks.get_mut(&lst)
                {
                    waiting.push_back(id);
                }
                return Err(Errno::EINPROGRESS);
            }
            st = match self.stack.wait(st, w, io, dl) {
                Ok(g) => g,
                Err(Errno::EAGAIN) => return Err(Errno::ETIMEDOUT),
                Err(e) => return Err(e),
            };
        }
    }

    /// send/sendto/sendmsg/write of `data`; `to` is the address sendto
    /// names (a TCP socket ignores it, as Linux does).
    pub fn send(&self, io: &IoCtx<'_>, data: &[u8], to: Option<Target>) -> Result<usize, Errno> {
        let mut w = Wakes::default();
        let r = match self.proto {
            Proto::Tcp => self.send_tcp(io, data, &mut w),
            Proto::Udp => self.send_udp(data, to, &mut w),
            Proto::Icmp => self.send_icmp(data, to, &mut w),
        };
        self.stack.fire(w);
        r
    }

    fn send_tcp(&self, io: &IoCtx<'_>, data: &[u8], w: &mut Wakes) -> Result<usize, Errno> {
        let id = self.id;
        let mut st = self.stack.lock();
        let dl = deadline(st.get(id)?.sndtimeo);
        let mut done = 0;
        loop {
            let s = st.get_mut(id)?;
            if s.error != 0 {
                let e = std::mem::take(&mut s.error);
                return if done > 0 { Ok(done) } else { Err(Errno(e)) };
            }
            let sndbuf = s.sndbuf;
            let Some(c) = s.conn_mut() else {
                if let Kind::Tcp(Tcp::Connecting { .. }) = s.kind {
                    st = self.stack.wait(st, w, io, dl)?;
                    continue;
                }
                return Err(Errno::EPIPE);
            };
            if c.wr_shut || c.reset {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EPIPE)
                };
            }
            if c.peer == 0 {
                // The peer closed: what is sent now draws a reset, and
                // the next send fails.
                c.reset = true;
                s.error = libc::EPIPE;
                w.add(&st, id);
                return Ok(data.len());
            }
            let room = sndbuf.saturating_sub(c.tx.len());
            let n = room.min(data.len() - done);
            c.tx.push(&data[done..done + n]);
            done += n;
            st.flush(id, w);
            if done == data.len() {
                return Ok(done);
            }
            if n > 0 && io.nonblock {
                return Ok(done);
            }
            st = match self.stack.wait(st, w, io, dl) {
                Ok(g) => g,
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            };
        }
    }

    fn send_udp(&self, data: &[u8], to: Option<Target>, w: &mut Wakes) -> Result<usize, Errno> {
        let id = self.id;
        let mut st = self.stack.lock();
        let s = st.get_mut(id)?;
        let Kind::Udp(u) = &s.kind else {
            return Err(Errno::EINVAL);
        };
        if u.wr_shut {
            return Err(Errno::EPIPE);
        }
        let connected = u.remote;
        let dst = match to {
            Some(Target::Addr(a)) => a,
            _ => connected.ok_or(Errno::EDESTADDRREQ)?,
        };
        let max = if s.family == Family::V4 {
            UDP_MAX_V4
        } else {
            UDP_MAX_V6
        };
        if data.len() > max {
            return Err(Errno::EMSGSIZE);
        }
        if s.error != 0 {
            return Err(Errno(std::mem::take(&mut s.error)));
        }
        let dst = addr::norm(dst);
        if !s.reaches(dst.ip()) {
            return Err(Errno::ENETUNREACH);
        }
        let ip = addr::route(dst.ip()).ok_or(Errno::ENETUNREACH)?;
        let dst = SocketAddr::new(ip, dst.port());
        if dst.port() == 0 {
            return Err(Errno::EINVAL);
        }
        if s.local.is_none() {
            let any = s.family.unspecified();
            st.bind_to(id, any, false).map_err(|_| Errno::EAGAIN)?;
        }
        let from = st.source(id, dst.ip())?;
        match st.find_udp(from, dst) {
            Some(r) => {
                let Some(rs) = st.socks.get_mut(&r) else {
                    return Ok(data.len());
                };
                let shown = rs.shown(from);
                let rcvbuf = rs.rcvbuf;
                if let Kind::Udp(ru) = &mut rs.kind {
                    // A full receiver drops the datagram, as UDP does.
                    if ru.rx_bytes + data.len() <= rcvbuf && !ru.rd_shut {
                        ru.rx_bytes += data.len();
                        ru.rx.push_back(Datagram {
                            from: shown,
                            data: data.to_vec(),
                        });
                        w.add(&st, r);
                    }
                }
            }
            None => {
                // The port unreachable error reaches a connected sender.
                if connected.is_some() {
                    st.get_mut(id)?.error = libc::ECONNREFUSED;
                    w.add(&st, id);
                }
            }
        }
        Ok(data.len())
    }

    /// An echo request from a ping socket (Linux's ping_v4_sendmsg): at
    /// least an ICMP header, type ICMP_ECHO and code 0, else EINVAL; the
    /// identifier is the socket's bound "port" (autobound) and the
    /// checksum the stack's. Over loopback the reply comes at once:
    /// type ICMP_ECHOREPLY, the sequence and payload echoed, from the
    /// address pinged.
    fn send_icmp(&self, data: &[u8], to: Option<Target>, w: &mut Wakes) -> Result<usize, Errno> {
        let id = self.id;
        let mut st = self.stack.lock();
        let s = st.get_mut(id)?;
        let Kind::Udp(u) = &s.kind else {
            return Err(Errno::EINVAL);
        };
        if u.wr_shut {
            return Err(Errno::EPIPE);
        }
        let dst = match to {
            Some(Target::Addr(a)) => a,
            _ => u.remote.ok_or(Errno::EDESTADDRREQ)?,
        };
        if data.len() > UDP_MAX_V4 {
            return Err(Errno::EMSGSIZE);
        }
        if data.len() < ICMP_HDR || data[0] != ICMP_ECHO || data[1] != 0 {
            return Err(Errno::EINVAL);
        }
        if s.error != 0 {
            return Err(Errno(std::mem::take(&mut s.error)));
        }
        let dst = addr::norm(dst);
        if !s.reaches(dst.ip()) {
            return Err(Errno::ENETUNREACH);
        }
        let ip = addr::route(dst.ip()).ok_or(Errno::ENETUNREACH)?;
        if s.local.is_none() {
            let any = s.family.unspecified();
            st.bind_to(id, any, false).map_err(|_| Errno::EAGAIN)?;
        }
        let s = st.get_mut(id)?;
        let ident = s.local.map_or(0, |l| l.port());
        let mut reply = data.to_vec();
        reply[0] = ICMP_ECHOREPLY;
        reply[4..6].copy_from_slice(&ident.to_be_bytes());
        reply[2..4].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&reply);
        reply[2..4].copy_from_slice(&sum.to_be_bytes());
        let rcvbuf = s.rcvbuf;
        if let Kind::Udp(u) = &mut s.kind {
            // A full receive queue drops the reply, as Linux's does.
            if u.rx_bytes + reply.len() <= rcvbuf && !u.rd_shut {
                u.rx_bytes += reply.len();
                u.rx.push_back(Datagram {
                    from: SocketAddr::new(ip, 0),
                    data: reply,
                });
                w.add(&st, id);
            }
        }
        Ok(data.len())
    }

    /// recv/recvfrom/recvmsg/read into `buf`.
    pub fn recv(
        &self,
        io: &IoCtx<'_>,
        buf: &mut [u8],
        peek: bool,
        waitall: bool,
    ) -> Result<Received, Errno> {
        let mut w = Wakes::default();
        let r = match self.proto {
            Proto::Tcp => self.recv_tcp(io, buf, peek, waitall, &mut w),
            Proto::Udp | Proto::Icmp => self.recv_udp(io, buf, peek, &mut w),
        };
        self.stack.fire(w);
        r
    }

    fn recv_tcp(
        &self,
        io: &IoCtx<'_>,
        buf: &mut [u8],
        peek: bool,
        waitall: bool,
        w: &mut Wakes,
    ) -> Result<Received, Errno> {
        let id = self.id;
        let mut st = self.stack.lock();
        let dl = deadline(st.get(id)?.rcvtimeo);
        let want = if waitall && !peek {
            buf.len()
        } else {
            1.min(buf.len())
        };
        let mut copied = 0;
        loop {
            let s = st.get_mut(id)?;
            let c = match &mut s.kind {
                Kind::Tcp(Tcp::Established(c)) => c,
                Kind::Tcp(Tcp::Connecting { .. }) => {
                    st = self.stack.wait(st, w, io, dl)?;
                    continue;
                }
                // A failed connect left the socket shut both ways: its
                // error, then end of file.
                Kind::Tcp(Tcp::Closed) if s.failed => {
                    return match std::mem::take(&mut s.error) {
                        0 => Ok(Received::default()),
                        e => Err(Errno(e)),
                    };
                }
                _ => return Err(Errno::ENOTCONN),
            };
            let peer = c.peer;
            let n = c.rx.len().min(buf.len() - copied);
            buf[copied..copied + n].copy_from_slice(&c.rx.as_slice()[..n]);
            if !peek && n > 0 {
                c.rx.consume(n);
            }
            copied += n;
            let (eof, rd_shut) = (c.fin_rcvd && c.rx.is_empty(), c.rd_shut || c.reset);
            if n > 0 && !peek {
                // Room in our receive buffer: the peer's send buffer moves.
                if peer != 0 {
                    st.flush(peer, w);
                }
            }
            if copied >= want && (copied > 0 || buf.is_empty()) {
                break;
            }
            let s = st.get_mut(id)?;
            if copied > 0 && (s.error != 0 || eof || rd_shut) {
                break;
            }
            if eof {
                break;
            }
            if s.error != 0 {
                let e = std::mem::take(&mut s.error);
                return Err(Errno(e));
            }
            if rd_shut {
                break;
            }
            st = match self.stack.wait(st, w, io, dl) {
                Ok(g) => g,
                Err(e) => {
                    if copied > 0 {
                        break;
                    }
                    return Err(e);
                }
            };
        }
        Ok(Received {
            copied,
            full_len: copied,
            truncated: false,
            from: None,
        })
    }

    fn recv_udp(
        &self,
        io: &IoCtx<'_>,
        buf: &mut [u8],
        peek: bool,
        w: &mut Wakes,
    ) -> Result<Received, Errno> {
        let id = self.id;
        let mut st = self.stack.lock();
        let dl = deadline(st.get(id)?.rcvtimeo);
        loop {
            let s = st.get_mut(id)?;
            if s.error != 0 {
                return Err(Errno(std::mem::take(&mut s.error)));
            }
            let Kind::Udp(u) = &mut s.kind else {
                return Err(Errno::EINVAL);
            };
            if let Some(d) = u.rx.front() {
                let n = d.data.len().min(buf.len());
                buf[..n].copy_from_slice(&d.data[..n]);
                let r = Received {
                    copied: n,
                    full_len: d.data.len(),
                    truncated: n < d.data.len(),
                    from: Some(d.from),
                };
                if !peek {
                    u.rx_bytes -= d.data.len();
                    u.rx.pop_front();
                }
                return Ok(r);
            }
            if u.rd_shut {
                return Ok(Received::default());
            }
            st = self.stack.wait(st, w, io, dl)?;
        }
    }

    /// shutdown(2) (`how` checked by the caller).
    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        let rd = how == libc::SHUT_RD || how == libc::SHUT_RDWR;
        let wr = how == libc::SHUT_WR || how == libc::SHUT_RDWR;
        self.with(|st, id, w| {
            w.add(st, id);
            let s = st.get_mut(id)?;
            match &mut s.kind {
                Kind::Udp(u) => {
                    u.rd_shut |= rd;
                    u.wr_shut |= wr;
                    if u.remote.is_none() {
                        return Err(Errno::ENOTCONN);
                    }
                    Ok(())
                }
                Kind::Tcp(Tcp::Established(c)) => {
                    c.rd_shut |= rd;
                    if wr && !c.wr_shut {
                        c.wr_shut = true;
                        st.flush(id, w);
                    }
                    Ok(())
                }
                Kind::Tcp(Tcp::Listen { .. }) => {
                    if rd {
                        // Linux disconnects a listener shut for reading.
                        let old = std::mem::replace(&mut s.kind, Kind::Tcp(Tcp::Closed));
                        let tmp = super::next_id(None);
                        let mut ghost = Sock::new(s.family, Proto::Tcp, s.uid, s.created);
                        ghost.kind = old;
                        st.socks.insert(tmp, ghost);
                        st.release(tmp, w);
                    }
                    Ok(())
                }
                Kind::Tcp(Tcp::Connecting { .. }) => {
                    let old = std::mem::replace(&mut s.kind, Kind::Tcp(Tcp::Closed));
                    s.in_progress = false;
                    if let Kind::Tcp(Tcp::Connecting { listener, .. }) = old {
                        if let Some(Sock {
                            kind: Kind::Tcp(Tcp::Listen { waiting, .. }),
                            ..
                        }) = st.socks.get_mut(&listener)
                        {
                            waiting.retain(|&x| x != id);
                        }
                    }
                    Ok(())
                }
                Kind::Tcp(Tcp::Closed) => Err(Errno::ENOTCONN),
            }
        })
    }

    /// getsockname(2): the bound address (the family's wildcard, port 0,
    /// when unbound).
    pub fn local_addr(&self) -> SocketAddr {
        let st = self.stack.lock();
        let Some(s) = st.socks.get(&self.id) else {
            return self.family.unspecified();
        };
        match (s.local, &s.kind) {
            // A connected UDP socket bound to a wildcard is named by the
            // source address its datagrams carry.
            (
                Some(l),
                Kind::Udp(Udp {
                    remote: Some(r), ..
                }),
            ) if addr::norm_ip(l.ip()).is_unspecified() => {
                let src = addr::source_for(addr::norm_ip(r.ip()));
                s.shown(SocketAddr::new(src, l.port()))
            }
            (Some(l), _) => l,
            (None, _) => self.family.unspecified(),
        }
    }

    /// getpeername(2).
    pub fn peer_addr(&self) -> Result<SocketAddr, Errno> {
        let st = self.stack.lock();
        let s = st.get(self.id)?;
        match &s.kind {
            Kind::Tcp(Tcp::Established(c)) if !c.reset => c.remote.ok_or(Errno::ENOTCONN),
            Kind::Udp(u) => u.remote.ok_or(Errno::ENOTCONN),
            _ => Err(Errno::ENOTCONN),
        }
    }

    /// The poll bits, as Linux's tcp_poll and udp_poll give them.
    pub fn readiness(&self) -> u32 {
        let st = self.stack.lock();
        let Some(s) = st.socks.get(&self.id) else {
            return EPOLLHUP;
        };
        let mut r = 0;
        match &s.kind {
            Kind::Tcp(Tcp::Listen { pending, .. }) => {
                if !pending.is_empty() {
                    r |= EPOLLIN | EPOLLRDNORM;
                }
                return r;
            }
            Kind::Tcp(Tcp::Closed) => {
                r |= EPOLLHUP | EPOLLOUT | EPOLLWRNORM;
                if s.failed {
                    r |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP;
                }
            }
            Kind::Tcp(Tcp::Connecting { .. }) => {}
            Kind::Tcp(Tcp::Established(c)) => {
                let rcv_shut = c.rd_shut || c.fin_rcvd || c.reset;
                let snd_shut = c.wr_shut || c.reset;
                if (rcv_shut && snd_shut) || c.reset {
                    r |= EPOLLHUP;
                }
                if rcv_shut {
                    r |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP;
                }
                if !c.rx.is_empty() {
                    r |= EPOLLIN | EPOLLRDNORM;
                }
                let free = s.sndbuf.saturating_sub(c.tx.len());
                if snd_shut || free >= c.tx.len() / 2 && free > 0 {
                    r |= EPOLLOUT | EPOLLWRNORM;
                }
            }
            Kind::Udp(u) => {
                if u.rd_shut && u.wr_shut {
                    r |= EPOLLHUP;
                }
                if u.rd_shut {
                    r |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP;
                }
                if !u.rx.is_empty() {
                    r |= EPOLLIN | EPOLLRDNORM;
                }
                r |= EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND;
            }
        }
        if s.error != 0 {
            r |= EPOLLERR;
        }
        r
    }

    /// FIONREAD/SIOCINQ: EINVAL on a listener.
    pub fn inq(&self) -> Result<usize, Errno> {
        let st = self.stack.lock();
        let s = st.get(self.id)?;
        if s.listening() {
            return Err(Errno::EINVAL);
        }
        Ok(s.inq())
    }

    /// SIOCOUTQ: bytes sent and not yet in the peer's receive buffer.
    pub fn outq(&self) -> Result<usize, Errno> {
        let st = self.stack.lock();
        let s = st.get(self.id)?;
        if s.listening() {
            return Err(Errno::EINVAL);
        }
        Ok(s.conn().map_or(0, |c| c.tx.len()))
    }

    /// getsockopt(2)'s value bytes (before the caller's length cut).
    pub fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let int = |v: i32| Ok(v.to_ne_bytes().to_vec());
        let mut st = self.stack.lock();
        let s = st.get_mut(self.id)?;
        let v6 = s.family == Family::V6;
        match (level, name) {
            (SOL_SOCKET, libc::SO_TYPE) => return int(self.sock_type()),
            (SOL_SOCKET, libc::SO_DOMAIN) => return int(s.family.raw()),
            (SOL_SOCKET, libc::SO_PROTOCOL) => return int(self.proto.raw()),
            (SOL_SOCKET, libc::SO_ERROR) => return int(std::mem::take(&mut s.error)),
            (SOL_SOCKET, libc::SO_ACCEPTCONN) => return int(s.listening() as i32),
            (SOL_SOCKET, libc::SO_SNDBUF) => return int(s.sndbuf as i32),
            (SOL_SOCKET, libc::SO_RCVBUF) => return int(s.rcvbuf as i32),
            (SOL_SOCKET, libc::SO_SNDLOWAT) => return int(1),
            (SOL_SOCKET, libc::SO_LINGER) => {
                let mut v = (s.linger.is_some() as i32).to_ne_bytes().to_vec();
                v.extend_from_slice(&(s.linger.unwrap_or(0) as i32).to_ne_bytes());
                return Ok(v);
            }
            (SOL_SOCKET, libc::SO_RCVTIMEO) => return Ok(timeval_bytes(s.rcvtimeo)),
            (SOL_SOCKET, libc::SO_SNDTIMEO) => return Ok(timeval_bytes(s.sndtimeo)),
            (opts::SOL_TCP, libc::TCP_MAXSEG) if self.proto == Proto::Tcp => {
                let est = matches!(s.kind, Kind::Tcp(Tcp::Established(_)));
                return int(if est { MSS_LO } else { MSS_DEFAULT });
            }
            _ => {}
        }
        match opts::int_opt(self.proto, v6, level, name) {
            Some(o) => int(s.ints.get(o, level, name)),
            None => {
                drop(st);
                self.stack.log_unknown_opt(level, name);
                // An IPv4 socket's ip_getsockopt answers a level it does
                // not know EOPNOTSUPP; IPv6's and the rest ENOPROTOOPT.
                let known = [SOL_SOCKET, opts::SOL_IP, self.proto.raw()];
                if !v6 && !known.contains(&level) {
                    return Err(Errno::EOPNOTSUPP);
                }
                Err(Errno::ENOPROTOOPT)
            }
        }
    }

    /// setsockopt(2) with the value's bytes.
    pub fn setsockopt(&self, level: i32, name: i32, raw: &[u8]) -> Result<(), Errno> {
        let int = || -> Result<i32, Errno> {
            let b: [u8; 4] = raw
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Errno::EINVAL)?;
            Ok(i32::from_ne_bytes(b))
        };
        let r = self.with(|st, id, w| {
            w.add(st, id);
            let s = st.get_mut(id)?;
            let v6 = s.family == Family::V6;
            match (level, name) {
                (SOL_SOCKET, libc::SO_SNDBUF) | (SOL_SOCKET, libc::SO_SNDBUFFORCE) => {
                    let v = (int()? as u32 as usize).min(MAX_BUF / 2) * 2;
                    s.sndbuf = v.max(MIN_SNDBUF);
                    return Ok(Some(()));
                }
                (SOL_SOCKET, libc::SO_RCVBUF) | (SOL_SOCKET, libc::SO_RCVBUFFORCE) => {
                    let v = (int()? as u32 as usize).min(MAX_BUF / 2) * 2;
                    s.rcvbuf = v.max(MIN_RCVBUF);
                    return Ok(Some(()));
                }
                (SOL_SOCKET, libc::SO_LINGER) => {
                    if raw.len() < 8 {
                        return Err(Errno::EINVAL);
                    }
                    let on = i32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
                    let secs = i32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
                    s.linger = (on != 0).then_some(secs.max(0) as u32);
                    return Ok(Some(()));
                }
                (SOL_SOCKET, libc::SO_RCVTIMEO) | (SOL_SOCKET, libc::SO_SNDTIMEO) => {
                    if raw.len() < 16 {
                        return Err(Errno::EINVAL);
                    }
                    let d = read_timeout(raw)?;
                    if name == libc::SO_RCVTIMEO {
                        s.rcvtimeo = d;
                    } else {
                        s.sndtimeo = d;
                    }
                    return Ok(Some(()));
                }
                (SOL_SOCKET, libc::SO_TYPE)
                | (SOL_SOCKET, libc::SO_DOMAIN)
                | (SOL_SOCKET, libc::SO_PROTOCOL)
                | (SOL_SOCKET, libc::SO_ERROR)
                | (SOL_SOCKET, libc::SO_ACCEPTCONN)
                | (SOL_SOCKET, libc::SO_SNDLOWAT) => return Err(Errno::ENOPROTOOPT),
                (SOL_IPV6, libc::IPV6_V6ONLY) if v6 && s.local.is_some() => {
                    return Err(Errno::EINVAL)
                }
                (opts::SOL_TCP, libc::TCP_MAXSEG) if self.proto == Proto::Tcp => {
                    let v = int()?;
                    if v != 0 && !(88..=32767).contains(&v) {
                        return Err(Errno::EINVAL);
                    }
                    return Ok(Some(()));
                }
                _ => {}
            }
            let Some(o) = opts::int_opt(self.proto, v6, level, name) else {
                return Ok(None);
            };
            let mut v = o.accept(int()?)?;
            if (level, name) == (opts::SOL_IP, libc::IP_TOS) && self.proto == Proto::Tcp {
                // The ECN bits are the stack's on a TCP socket.
                v &= !3;
            }
            s.ints.set(o, level, name, v);
            Ok(Some(()))
        })?;
        match r {
            Some(()) => Ok(()),
            None => {
                self.stack.log_unknown_opt(level, name);
                Err(Errno::ENOPROTOOPT)
            }
        }
    }
}

/// RFC 1071's ones' complement sum, as ICMP carries it.
fn internet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn timeval_bytes(d: Option<Duration>) -> Vec<u8> {
    let d = d.unwrap_or_default();
    let mut v = (d.as_secs() as i64).to_ne_bytes().to_vec();
    v.extend_from_slice(&i64::from(d.subsec_micros()).to_ne_bytes());
    v
}

/// SO_RCVTIMEO/SO_SNDTIMEO's `struct timeval`: None for zero, EDOM for
/// microseconds out of range; a negative time is zero.
fn read_timeout(raw: &[u8]) -> Result<Option<Duration>, Errno> {
    let sec = i64::from_ne_bytes(raw[..8].try_into().map_err(|_| Errno::EINVAL)?);
    let usec = i64::from_ne_bytes(raw[8..16].try_into().map_err(|_| Errno::EINVAL)?);
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    if sec < 0 || (sec == 0 && usec == 0) {
        return Ok(None);
    }
    Ok(Some(
        Duration::from_secs(sec as u64) + Duration::from_micros(usec as u64),
    ))
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

    fn lo(port: u16) -> SocketAddr {
        SocketAddr::new("127.0.0.1".parse().unwrap(), port)
    }

    fn listener(stack: &Arc<InetStack>) -> (Arc<InetSocket>, SocketAddr) {
        let l = InetSocket::new(stack, Family::V4, Proto::Tcp, 0);
        l.bind(lo(0), true).unwrap();
        l.listen(1).unwrap();
        let a = l.local_addr();
        (l, a)
    }

    #[test]
    fn tcp_connects_moves_bytes_both_ways_and_half_closes() {
        let stack = InetStack::new();
        let intr = Interrupt::new();
        let (l, at) = listener(&stack);
        assert!(EPHEMERAL.contains(&at.port()));
        let c = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        assert_eq!(c.readiness() & (EPOLLHUP | EPOLLOUT), EPOLLHUP | EPOLLOUT);
        c.connect(&io(&intr, false), Target::Addr(at)).unwrap();
        assert!(l.readiness() & EPOLLIN != 0);
        let (s, peer) = l.accept(&io(&intr, true)).unwrap();
        assert_eq!(peer, c.local_addr());
        assert_eq!(s.peer_addr(), Ok(c.local_addr()));
        assert_eq!(c.send(&io(&intr, true), b"hello", None), Ok(5));
        assert_eq!(s.inq(), Ok(5));
        let mut buf = [0u8; 16];
        let r = s.recv(&io(&intr, true), &mut buf, true, false).unwrap();
        assert_eq!(&buf[..r.copied], b"hello");
        let r = s.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!(&buf[..r.copied], b"hello");
        c.shutdown(libc::SHUT_WR).unwrap();
        assert_eq!(
            s.recv(&io(&intr, true), &mut buf, false, false)
                .unwrap()
                .copied,
            0
        );
        assert!(s.readiness() & EPOLLRDHUP != 0);
        assert_eq!(s.send(&io(&intr, true), b"back", None), Ok(4));
        assert_eq!(
            c.recv(&io(&intr, true), &mut buf, false, false)
                .unwrap()
                .copied,
            4
        );
        assert_eq!(c.send(&io(&intr, true), b"x", None), Err(Errno::EPIPE));
        s.release();
        assert_eq!(
            c.recv(&io(&intr, true), &mut buf, false, false)
                .unwrap()
                .copied,
            0
        );
    }

    #[test]
    fn refused_reset_and_closed_peer_errors_are_linuxs() {
        let stack = InetStack::new();
        let intr = Interrupt::new();
        let c = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        assert_eq!(
            c.connect(&io(&intr, false), Target::Addr(lo(9))),
            Err(Errno::ECONNREFUSED)
        );
        assert_eq!(
            c.connect(&io(&intr, true), Target::Addr(lo(9))),
            Err(Errno::EINPROGRESS)
        );
        assert!(c.readiness() & EPOLLERR != 0);
        assert_eq!(
            c.getsockopt(SOL_SOCKET, libc::SO_ERROR).unwrap(),
            libc::ECONNREFUSED.to_ne_bytes()
        );
        let (l, at) = listener(&stack);
        let c = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        c.connect(&io(&intr, false), Target::Addr(at)).unwrap();
        let (s, _) = l.accept(&io(&intr, true)).unwrap();
        c.send(&io(&intr, true), b"unread", None).unwrap();
        s.release();
        let mut buf = [0u8; 8];
        assert_eq!(
            c.recv(&io(&intr, true), &mut buf, false, false),
            Err(Errno::ECONNRESET)
        );
        assert_eq!(c.send(&io(&intr, true), b"x", None), Err(Errno::EPIPE));
        // A graceful close: the first send after it passes, the next is EPIPE.
        let c = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        c.connect(&io(&intr, false), Target::Addr(at)).unwrap();
        let (s, _) = l.accept(&io(&intr, true)).unwrap();
        s.release();
        assert_eq!(c.send(&io(&intr, true), b"x", None), Ok(1));
        assert_eq!(c.send(&io(&intr, true), b"x", None), Err(Errno::EPIPE));
    }

    #[test]
    fn ports_collide_unless_reused_and_the_backlog_bounds() {
        let stack = InetStack::new();
        let intr = Interrupt::new();
        let (l, at) = listener(&stack);
        let b = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        assert_eq!(b.bind(at, true), Err(Errno::EADDRINUSE));
        let any6 = InetSocket::new(&stack, Family::V6, Proto::Tcp, 0);
        assert_eq!(
            any6.bind(SocketAddr::new("::".parse().unwrap(), at.port()), true),
            Err(Errno::EADDRINUSE)
        );
        assert_eq!(
            b.bind(SocketAddr::new("10.0.0.1".parse().unwrap(), 0), true),
            Err(Errno::EADDRNOTAVAIL)
        );
        assert_eq!(b.bind(lo(80), false), Err(Errno::EACCES));
        // Backlog 1: two connections queue, a third waits.
        let cs: Vec<_> = (0..3)
            .map(|_| InetSocket::new(&stack, Family::V4, Proto::Tcp, 0))
            .collect();
        assert_eq!(
            cs[0].connect(&io(&intr, true), Target::Addr(at)),
            Err(Errno::EINPROGRESS)
        );
        assert_eq!(cs[0].connect(&io(&intr, true), Target::Addr(at)), Ok(()));
        cs[1].connect(&io(&intr, false), Target::Addr(at)).unwrap();
        assert_eq!(
            cs[2].connect(&io(&intr, true), Target::Addr(at)),
            Err(Errno::EINPROGRESS)
        );
        assert_eq!(
            cs[2].connect(&io(&intr, true), Target::Addr(at)),
            Err(Errno::EALREADY)
        );
        let _a = l.accept(&io(&intr, true)).unwrap();
        assert_eq!(cs[2].connect(&io(&intr, true), Target::Addr(at)), Ok(()));
        l.release();
        let mut buf = [0u8; 4];
        assert_eq!(
            cs[1].recv(&io(&intr, true), &mut buf, false, false),
            Err(Errno::ECONNRESET)
        );
    }

    #[test]
    fn udp_datagrams_keep_boundaries_and_connected_refusals() {
        let stack = InetStack::new();
        let intr = Interrupt::new();
        let a = InetSocket::new(&stack, Family::V4, Proto::Udp, 0);
        let b = InetSocket::new(&stack, Family::V6, Proto::Udp, 0);
        b.bind(SocketAddr::new("::".parse().unwrap(), 0), true)
            .unwrap();
        let to = lo(b.local_addr().port());
        assert_eq!(
            a.send(&io(&intr, true), b"one", Some(Target::Addr(to))),
            Ok(3)
        );
        assert_eq!(
            a.send(&io(&intr, true), b"second", Some(Target::Addr(to))),
            Ok(6)
        );
        assert_eq!(b.inq(), Ok(3));
        let mut buf = [0u8; 4];
        let r = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!(r.copied, 3);
        assert_eq!(r.from.map(addr::norm), Some(lo(a.local_addr().port())));
        let r = b.recv(&io(&intr, true), &mut buf, false, false).unwrap();
        assert_eq!((r.copied, r.full_len, r.truncated), (4, 6, true));
        assert_eq!(
            a.send(&io(&intr, true), b"x", None),
            Err(Errno::EDESTADDRREQ)
        );
        a.connect(&io(&intr, true), Target::Addr(lo(9))).unwrap();
        assert_eq!(a.send(&io(&intr, true), b"x", None), Ok(1));
        assert_eq!(
            a.recv(&io(&intr, true), &mut buf, false, false),
            Err(Errno::ECONNREFUSED)
        );
    }
}
