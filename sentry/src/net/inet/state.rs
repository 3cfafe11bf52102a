//! The saved form of inet sockets: one `net.InetSocket` record per socket
//! of the stack, keyed by its sandbox id (the id its open file names, in
//! the space unix sockets share), holding its bound address, options,
//! pending error and its protocol state: a listener's queue of
//! connections not yet accepted (socket ids, each saved too) and the
//! connectors waiting for room, an established connection's peer id,
//! unread bytes and bytes still in its send buffer, its half-closes and
//! whether it was reset, a UDP socket's default peer and queued
//! datagrams with their senders.
//!
//! An ICMP echo (ping) socket is saved as a datagram queue like UDP's:
//! its bound identifier is its local port, its queued echo replies are
//! datagrams with the addresses they came from.
//!
//! One `net.InetStack` record (id 0) holds what the stack itself holds:
//! net.ipv4.ping_group_range and the ports in TIME_WAIT with the time
//! each has left (a restored sandbox may not rebind them any sooner than
//! the saved one could). Not saved: the ephemeral port cursor.
//!
//! Restore: [`check`] validates every record and the links between them
//! (typed errors naming the socket and field), [`restore`] puts the
//! sockets back in the kernel's stack and gives a handle for each one an
//! open file may claim.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::addr::{self, Coverage, Family};
use super::opts::{self, IntOpts};
use super::stack::{
    Conn, Datagram, InetSocket, InetStack, Kind, Sock, Tcp, TimeWait, Udp, ICMP_ECHOREPLY,
    ICMP_HDR, MAX_BUF, MAX_TIME_WAIT, MIN_RCVBUF, MIN_SNDBUF, PING_GID_MAX, PING_RANGE_DEFAULT,
    SOMAXCONN, TIME_WAIT, UDP_MAX_V4, UDP_MAX_V6,
};
use super::Proto;
use crate::net::NetError;

/// An internet socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedInetAddr {
    V4 {
        ip: [u8; 4],
        port: u16,
    },
    V6 {
        ip: [u8; 16],
        port: u16,
        flowinfo: u32,
        scope_id: u32,
    },
}
statefile::versioned!(SavedInetAddr, "net.InetAddress", 1);

/// One end of an established TCP connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTcpConn {
    /// The other end's socket id, 0 once it is gone.
    pub peer: u64,
    pub remote: Option<SavedInetAddr>,
    /// Received, not read yet.
    pub rx: Vec<u8>,
    /// Sent, not in the peer's receive buffer yet.
    pub tx: Vec<u8>,
    pub rd_shut: bool,
    pub wr_shut: bool,
    pub fin_rcvd: bool,
    pub reset: bool,
}
statefile::versioned!(SavedTcpConn, "net.TcpConnection", 1, [SavedInetAddr]);

/// A TCP socket's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedTcp {
    Closed,
    Listen {
        backlog: u64,
        pending: Vec<u64>,
        waiting: Vec<u64>,
    },
    Connecting {
        listener: u64,
        to: SavedInetAddr,
    },
    Established(SavedTcpConn),
}
statefile::versioned!(SavedTcp, "net.TcpState", 1, [SavedInetAddr, SavedTcpConn]);

/// A queued datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDatagram {
    pub from: SavedInetAddr,
    pub data: Vec<u8>,
}
statefile::versioned!(SavedDatagram, "net.Datagram", 1, [SavedInetAddr]);

/// A UDP socket's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedUdp {
    pub remote: Option<SavedInetAddr>,
    pub rx: Vec<SavedDatagram>,
    pub rd_shut: bool,
    pub wr_shut: bool,
}
statefile::versioned!(SavedUdp, "net.UdpState", 1, [SavedInetAddr, SavedDatagram]);

/// The protocol part. v2 added ICMP echo (ping) sockets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedInetKind {
    Tcp(SavedTcp),
    Udp(SavedUdp),
    /// A ping socket: its queue holds echo replies, from the addresses
    /// pinged (port 0).
    Icmp(SavedUdp),
}
statefile::versioned!(SavedInetKind, "net.InetKind", 2, [SavedTcp, SavedUdp]);

/// The protocol part as `net.InetKind` v1 held it (no ping sockets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedInetKindV1 {
    Tcp(SavedTcp),
    Udp(SavedUdp),
}
statefile::versioned!(SavedInetKindV1, "net.InetKind", 1, [SavedTcp, SavedUdp]);

impl From<SavedInetKindV1> for SavedInetKind {
    fn from(k: SavedInetKindV1) -> Self {
        match k {
            SavedInetKindV1::Tcp(t) => SavedInetKind::Tcp(t),
            SavedInetKindV1::Udp(u) => SavedInetKind::Udp(u),
        }
    }
}

/// An AF_INET or AF_INET6 socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocketRecord {
    pub id: u64,
    /// AF_INET or AF_INET6.
    pub family: i32,
    pub local: Option<SavedInetAddr>,
    pub explicit_bind: bool,
    pub uid: u32,
    /// Int options that differ from their defaults: (level, name, value).
    pub int_opts: Vec<(i32, i32, i32)>,
    /// SO_LINGER's seconds when on.
    pub linger: Option<u32>,
    pub sndbuf: u64,
    pub rcvbuf: u64,
    pub rcvtimeo_ns: Option<u64>,
    pub sndtimeo_ns: Option<u64>,
    pub error: i32,
    pub in_progress: bool,
    /// A connection attempt failed (shut both ways until a connect).
    pub failed: bool,
    pub kind: SavedInetKind,
}
statefile::versioned!(
    InetSocketRecord,
    "net.InetSocket",
    2,
    [SavedInetAddr, SavedInetKind]
);

/// An inet socket as `net.InetSocket` v1 held it (its kind a
/// `net.InetKind` v1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetSocketRecordV1 {
    pub id: u64,
    pub family: i32,
    pub local: Option<SavedInetAddr>,
    pub explicit_bind: bool,
    pub uid: u32,
    pub int_opts: Vec<(i32, i32, i32)>,
    pub linger: Option<u32>,
    pub sndbuf: u64,
    pub rcvbuf: u64,
    pub rcvtimeo_ns: Option<u64>,
    pub sndtimeo_ns: Option<u64>,
    pub error: i32,
    pub in_progress: bool,
    pub failed: bool,
    pub kind: SavedInetKindV1,
}
statefile::versioned!(
    InetSocketRecordV1,
    "net.InetSocket",
    1,
    [SavedInetAddr, SavedInetKindV1]
);

impl From<InetSocketRecordV1> for InetSocketRecord {
    fn from(r: InetSocketRecordV1) -> Self {
        InetSocketRecord {
            id: r.id,
            family: r.family,
            local: r.local,
            explicit_bind: r.explicit_bind,
            uid: r.uid,
            int_opts: r.int_opts,
            linger: r.linger,
            sndbuf: r.sndbuf,
            rcvbuf: r.rcvbuf,
            rcvtimeo_ns: r.rcvtimeo_ns,
            sndtimeo_ns: r.sndtimeo_ns,
            error: r.error,
            in_progress: r.in_progress,
            failed: r.failed,
            kind: r.kind.into(),
        }
    }
}

impl statefile::Savable for InetSocketRecord {
    const TYPE_NAME: &'static str = "net.InetSocket";
    const VERSION: u32 = 2;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    /// A v1 record (its nested types checked at the versions it was
    /// written with) is migrated: every v1 kind is a v2 kind.
    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version >= 2 {
            statefile::check_saved_versions::<Self>(dec.types())?;
            return dec.serde();
        }
        statefile::check_saved_versions::<InetSocketRecordV1>(dec.types())?;
        let v1: InetSocketRecordV1 = dec.serde()?;
        Ok(v1.into())
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

/// A port in TIME_WAIT: the addresses it covers (each family None: none,
/// Some(None): any, Some(Some(ip))), and the time it has left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTimeWait {
    pub v4: Option<Option<[u8; 4]>>,
    pub v6: Option<Option<[u8; 16]>>,
    pub port: u16,
    pub reuseaddr: bool,
    pub left_ns: u64,
}
statefile::versioned!(SavedTimeWait, "net.TimeWait", 1);

/// What the loopback stack holds beside its sockets (absent from
/// statefiles from before it: the defaults, no port in TIME_WAIT).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetStackRecord {
    /// net.ipv4.ping_group_range (low, high).
    pub ping_group_range: (u32, u32),
    pub time_wait: Vec<SavedTimeWait>,
}
statefile::savable_serde!(InetStackRecord, "net.InetStack", 1, [SavedTimeWait]);

impl Default for InetStackRecord {
    fn default() -> Self {
        InetStackRecord {
            ping_group_range: PING_RANGE_DEFAULT,
            time_wait: Vec::new(),
        }
    }
}

impl InetStackRecord {
    /// Checks the range (gids within GID_T_MAX, empty only as "1 0") and
    /// the TIME_WAIT ports (a real port on lo, no more time left than
    /// TIME_WAIT, at most MAX_TIME_WAIT of them). Errors name the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let (lo, hi) = self.ping_group_range;
        if lo > PING_GID_MAX || hi > PING_GID_MAX || (hi < lo && (lo, hi) != PING_RANGE_DEFAULT) {
            return Err(("ping_group_range", format!("{lo} {hi}")));
        }
        if self.time_wait.len() > MAX_TIME_WAIT {
            return Err((
                "time_wait",
                format!("{} ports, beyond {MAX_TIME_WAIT}", self.time_wait.len()),
            ));
        }
        let max_ns = u64::try_from(TIME_WAIT.as_nanos()).unwrap_or(u64::MAX);
        for t in &self.time_wait {
            let v4_ok =
                t.v4.is_none_or(|a| a.is_none_or(|ip| Ipv4Addr::from(ip).is_loopback()));
            let v6_ok =
                t.v6.is_none_or(|a| a.is_none_or(|ip| Ipv6Addr::from(ip).is_loopback()));
            if t.port == 0 || (t.v4.is_none() && t.v6.is_none()) || !v4_ok || !v6_ok {
                return Err(("time_wait", format!("{t:?}")));
            }
            if t.left_ns > max_ns {
                return Err((
                    "time_wait.left_ns",
                    format!("{} beyond TIME_WAIT", t.left_ns),
                ));
            }
        }
        Ok(())
    }
}

/// The longest saved timeout (a year).
const MAX_TIMEOUT_NS: u64 = 365 * 24 * 3600 * 1_000_000_000;
/// Most bytes a restored stream end may hold each way: a receive buffer
/// may hold a closed peer's send buffer on top of its own size.
const MAX_STREAM_BYTES: usize = 2 * MAX_BUF;
/// Most datagrams one restored socket may hold.
const MAX_DATAGRAMS: usize = 1 << 16;

fn saved(a: SocketAddr) -> SavedInetAddr {
    match a {
        SocketAddr::V4(v4) => SavedInetAddr::V4 {
            ip: v4.ip().octets(),
            port: v4.port(),
        },
        SocketAddr::V6(v6) => SavedInetAddr::V6 {
            ip: v6.ip().octets(),
            port: v6.port(),
            flowinfo: v6.flowinfo(),
            scope_id: v6.scope_id(),
        },
    }
}

fn live(a: SavedInetAddr) -> SocketAddr {
    match a {
        SavedInetAddr::V4 { ip, port } => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
        SavedInetAddr::V6 {
            ip,
            port,
            flowinfo,
            scope_id,
        } => SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flowinfo,
            scope_id,
        )),
    }
}

fn ns_of(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn record(id: u64, s: &Sock) -> InetSocketRecord {
    let kind = match &s.kind {
        Kind::Tcp(Tcp::Closed) => SavedInetKind::Tcp(SavedTcp::Closed),
        Kind::Tcp(Tcp::Listen {
            backlog,
            pending,
            waiting,
        }) => SavedInetKind::Tcp(SavedTcp::Listen {
            backlog: *backlog as u64,
            pending: pending.iter().copied().collect(),
            waiting: waiting.iter().copied().collect(),
        }),
        Kind::Tcp(Tcp::Connecting { listener, to }) => SavedInetKind::Tcp(SavedTcp::Connecting {
            listener: *listener,
            to: saved(*to),
        }),
        Kind::Tcp(Tcp::Established(c)) => SavedInetKind::Tcp(SavedTcp::Established(SavedTcpConn {
            peer: c.peer,
            remote: c.remote.map(saved),
            rx: c.rx.as_slice().to_vec(),
            tx: c.tx.as_slice().to_vec(),
            rd_shut: c.rd_shut,
            wr_shut: c.wr_shut,
            fin_rcvd: c.fin_rcvd,
            reset: c.reset,
        })),
        Kind::Udp(u) => {
            let q = SavedUdp {
                remote: u.remote.map(saved),
                rx: u
                    .rx
                    .iter()
                    .map(|d| SavedDatagram {
                        from: saved(d.from),
                        data: d.data.clone(),
                    })
                    .collect(),
                rd_shut: u.rd_shut,
                wr_shut: u.wr_shut,
            };
            if s.proto == Proto::Icmp {
                SavedInetKind::Icmp(q)
            } else {
                SavedInetKind::Udp(q)
            }
        }
    };
    InetSocketRecord {
        id,
        family: s.family.raw(),
        local: s.local.map(saved),
        explicit_bind: s.explicit_bind,
        uid: s.uid,
        int_opts: s.ints.0.iter().map(|(&(l, n), &v)| (l, n, v)).collect(),
        linger: s.linger,
        sndbuf: s.sndbuf as u64,
        rcvbuf: s.rcvbuf as u64,
        rcvtimeo_ns: ns_of(s.rcvtimeo),
        sndtimeo_ns: ns_of(s.sndtimeo),
        error: s.error,
        in_progress: s.in_progress,
        failed: s.failed,
        kind,
    }
}

impl InetStack {
    /// Every socket's record (the tasks are stopped: nothing changes
    /// while this runs).
    pub fn records(&self) -> Vec<InetSocketRecord> {
        let st = self.lock();
        st.socks.iter().map(|(&id, s)| record(id, s)).collect()
    }

    /// The stack's own record: the ping range and the ports in TIME_WAIT
    /// with the time each has left.
    pub fn stack_record(&self) -> InetStackRecord {
        let now = Instant::now();
        let st = self.lock();
        let time_wait = st
            .time_wait
            .iter()
            .filter(|t| t.until > now)
            .map(|t| SavedTimeWait {
                v4: t.cov.v4.map(|a| a.map(|ip| ip.octets())),
                v6: t.cov.v6.map(|a| a.map(|ip| ip.octets())),
                port: t.port,
                reuseaddr: t.reuseaddr,
                left_ns: u64::try_from((t.until - now).as_nanos()).unwrap_or(u64::MAX),
            })
            .collect();
        drop(st);
        InetStackRecord {
            ping_group_range: self.ping_group_range(),
            time_wait,
        }
    }

    /// Puts a (checked) stack record back: the range and the TIME_WAIT
    /// ports, each expiring after the time it had left.
    pub fn restore_stack(&self, r: &InetStackRecord) -> Result<(), NetError> {
        let (lo, hi) = r.ping_group_range;
        self.set_ping_group_range(lo, hi)
            .map_err(|e| NetError::Invalid {
                id: 0,
                field: "ping_group_range",
                why: format!("{lo} {hi}: {e:?}"),
            })?;
        let now = Instant::now();
        let mut st = self.lock();
        st.time_wait = r
            .time_wait
            .iter()
            .map(|t| TimeWait {
                cov: Coverage {
                    v4: t.v4.map(|a| a.map(Ipv4Addr::from)),
                    v6: t.v6.map(|a| a.map(Ipv6Addr::from)),
                },
                port: t.port,
                reuseaddr: t.reuseaddr,
                until: now + Duration::from_nanos(t.left_ns),
            })
            .collect();
        Ok(())
    }
}

fn proto_of(k: &SavedInetKind) -> Proto {
    match k {
        SavedInetKind::Tcp(_) => Proto::Tcp,
        SavedInetKind::Udp(_) => Proto::Udp,
        SavedInetKind::Icmp(_) => Proto::Icmp,
    }
}

/// Whether a saved address fits a socket of `fam` on `lo`.
fn addr_ok(a: SavedInetAddr, fam: Family, local: bool) -> bool {
    let sa = live(a);
    let fam_ok = matches!(
        (fam, sa),
        (Family::V4, SocketAddr::V4(_)) | (Family::V6, SocketAddr::V6(_))
    );
    let where_ok = if local {
        addr::is_local_or_any(sa.ip()) && sa.port() != 0
    } else {
        addr::route(sa.ip()).is_some()
    };
    fam_ok && where_ok
}

impl InetSocketRecord {
    /// Checks the record alone and its ids against `ids` (every saved
    /// inet socket). Errors name the field.
    pub fn check(&self, id: u64, ids: &BTreeSet<u64>) -> Result<(), NetError> {
        let bad = |field: &'static str, why: String| NetError::Invalid { id, field, why };
        if self.id != id {
            return Err(bad(
                "id",
                format!("{} differs from the record's id", self.id),
            ));
        }
        let Some(fam) = Family::from_raw(self.family) else {
            return Err(bad(
                "family",
                format!("{} is not AF_INET or AF_INET6", self.family),
            ));
        };
        let proto = proto_of(&self.kind);
        // Only IPv4 has ping sockets (cryo has no ICMPv6 echo ones). Their
        // identifier is the local port, never 0 once bound (the local
        // check below).
        if proto == Proto::Icmp && fam != Family::V4 {
            return Err(bad("family", "an ICMPv6 ping socket".into()));
        }
        if let Some(a) = self.local {
            if !addr_ok(a, fam, true) {
                return Err(bad("local", format!("{a:?} is not a bound address of lo")));
            }
        }
        let mut seen = BTreeSet::new();
        for &(level, name, v) in &self.int_opts {
            let o = opts::int_opt(proto, fam == Family::V6, level, name)
                .ok_or_else(|| bad("int_opts", format!("no option ({level}, {name})")))?;
            if o.accept(v) != Ok(v) || !seen.insert((level, name)) {
                return Err(bad("int_opts", format!("({level}, {name}) = {v}")));
            }
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
        if !(0..4096).contains(&self.error) {
            return Err(bad("error", format!("{}", self.error)));
        }
        if self.linger.is_some_and(|l| l > i32::MAX as u32) {
            return Err(bad("linger", format!("{:?}", self.linger)));
        }
        let link = |field: &'static str, other: u64| {
            if other == id || !ids.contains(&other) {
                Err(bad(field, format!("socket #{other} is not saved")))
            } else {
                Ok(())
            }
        };
        match &self.kind {
            SavedInetKind::Tcp(SavedTcp::Closed) => {}
            SavedInetKind::Tcp(SavedTcp::Listen {
                backlog,
                pending,
                waiting,
            }) => {
                if self.local.is_none() {
                    return Err(bad("local", "a listener with no port".into()));
                }
                if *backlog > SOMAXCONN as u64 {
                    return Err(bad("backlog", format!("{backlog} > {SOMAXCONN}")));
                }
                if pending.len() as u64 > backlog + 1 {
                    return Err(bad("pending", "more connections than the backlog".into()));
                }
                let mut seen = BTreeSet::new();
                for &p in pending.iter().chain(waiting) {
                    link("pending", p)?;
                    if !seen.insert(p) {
                        return Err(bad("pending", format!("socket #{p} twice")));
                    }
                }
            }
            SavedInetKind::Tcp(SavedTcp::Connecting { listener, to }) => {
                link("listener", *listener)?;
                if !addr_ok(*to, Family::V4, false) && !addr_ok(*to, Family::V6, false) {
                    return Err(bad("to", format!("{to:?}")));
                }
            }
            SavedInetKind::Tcp(SavedTcp::Established(c)) => {
                if self.local.is_none() {
                    return Err(bad("local", "a connection with no port".into()));
                }
                if c.peer != 0 {
                    link("peer", c.peer)?;
                }
                if c.peer != 0 && c.reset {
                    return Err(bad("peer", "a reset connection with a peer".into()));
                }
                match c.remote {
                    Some(r) if addr_ok(r, fam, false) => {}
                    r => return Err(bad("remote", format!("{r:?}"))),
                }
                if c.rx.len() > MAX_STREAM_BYTES {
                    return Err(bad("rx", format!("{} bytes", c.rx.len())));
                }
                if c.tx.len() > MAX_BUF || (c.peer == 0 && !c.tx.is_empty()) {
                    return Err(bad("tx", format!("{} bytes", c.tx.len())));
                }
            }
            SavedInetKind::Udp(u) | SavedInetKind::Icmp(u) => {
                let icmp = proto == Proto::Icmp;
                if let Some(r) = u.remote {
                    if !addr_ok(r, fam, false) || self.local.is_none() {
                        return Err(bad("remote", format!("{r:?}")));
                    }
                }
                if u.rx.len() > MAX_DATAGRAMS {
                    return Err(bad("rx", format!("{} datagrams", u.rx.len())));
                }
                let mut total = 0usize;
                for d in &u.rx {
                    if d.data.len() > UDP_MAX_V6 {
                        return Err(bad("rx.data", format!("{} bytes", d.data.len())));
                    }
                    // An echo reply: a whole ICMP header of type 0 at
                    // most as long as the request a ping socket may send.
                    if icmp
                        && (d.data.len() < ICMP_HDR
                            || d.data.len() > UDP_MAX_V4
                            || d.data[0] != ICMP_ECHOREPLY)
                    {
                        return Err(bad("rx.data", "not an ICMP echo reply".into()));
                    }
                    if !addr_ok(d.from, fam, false) {
                        return Err(bad("rx.from", format!("{:?}", d.from)));
                    }
                    total += d.data.len();
                }
                if total > MAX_BUF {
                    return Err(bad("rx", format!("{total} bytes queued")));
                }
            }
        }
        Ok(())
    }
}

/// Checks what holds the records together: connections are pairs, a
/// pending connection is a connected TCP socket at one listener and has
/// no open file, a waiting connector is Connecting to that listener, and
/// no socket is two open files (`files`: the socket ids inet files name).
pub fn check_graph(recs: &[InetSocketRecord], files: &[u64]) -> Result<(), NetError> {
    let by_id: BTreeMap<u64, &InetSocketRecord> = recs.iter().map(|r| (r.id, r)).collect();
    let mut with_file = BTreeSet::new();
    for &f in files {
        if !with_file.insert(f) || !by_id.contains_key(&f) {
            return Err(NetError::Invalid {
                id: f,
                field: "file",
                why: "two open files, or no socket".into(),
            });
        }
    }
    let mut owner = BTreeMap::new();
    for r in recs {
        let bad = |field: &'static str, why: String| NetError::Invalid {
            id: r.id,
            field,
            why,
        };
        match &r.kind {
            SavedInetKind::Tcp(SavedTcp::Listen {
                pending, waiting, ..
            }) => {
                for p in pending {
                    if owner.insert(*p, r.id).is_some() || with_file.contains(p) {
                        return Err(bad(
                            "pending",
                            format!("socket #{p} is not only queued here"),
                        ));
                    }
                    match by_id.get(p).map(|c| &c.kind) {
                        Some(SavedInetKind::Tcp(SavedTcp::Established(_))) => {}
                        _ => return Err(bad("pending", format!("socket #{p} is no connection"))),
                    }
                }
                for w in waiting {
                    if owner.insert(*w, r.id).is_some() {
                        return Err(bad("waiting", format!("socket #{w} waits twice")));
                    }
                    match by_id.get(w).map(|c| &c.kind) {
                        Some(SavedInetKind::Tcp(SavedTcp::Connecting { listener, .. }))
                            if *listener == r.id => {}
                        _ => {
                            return Err(bad(
                                "waiting",
                                format!("socket #{w} is not connecting here"),
                            ))
                        }
                    }
                }
            }
            SavedInetKind::Tcp(SavedTcp::Connecting { listener, .. }) => {
                match by_id.get(listener).map(|l| &l.kind) {
                    Some(SavedInetKind::Tcp(SavedTcp::Listen { waiting, .. }))
                        if waiting.contains(&r.id) => {}
                    _ => {
                        return Err(bad(
                            "listener",
                            format!("socket #{listener} does not hold it"),
                        ))
                    }
                }
            }
            SavedInetKind::Tcp(SavedTcp::Established(c)) if c.peer != 0 => {
                match by_id.get(&c.peer).map(|p| &p.kind) {
                    Some(SavedInetKind::Tcp(SavedTcp::Established(pc))) if pc.peer == r.id => {}
                    _ => return Err(bad("peer", format!("socket #{} is not its peer", c.peer))),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Puts the (checked) sockets back into `stack`; the handles of those an
/// open file may claim (all but queued connections), by id.
pub fn restore(recs: &[InetSocketRecord], stack: &Arc<InetStack>) -> HashMap<u64, Arc<InetSocket>> {
    let queued: BTreeSet<u64> = recs
        .iter()
        .filter_map(|r| match &r.kind {
            SavedInetKind::Tcp(SavedTcp::Listen { pending, .. }) => Some(pending.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let now = crate::vfs::Clock::now(&crate::vfs::HostClock);
    for r in recs {
        let Some(fam) = Family::from_raw(r.family) else {
            continue;
        };
        let proto = proto_of(&r.kind);
        let mut s = Sock::new(fam, proto, r.uid, now);
        s.local = r.local.map(live);
        s.explicit_bind = r.explicit_bind;
        s.ints = IntOpts(r.int_opts.iter().map(|&(l, n, v)| ((l, n), v)).collect());
        s.linger = r.linger;
        s.sndbuf = r.sndbuf as usize;
        s.rcvbuf = r.rcvbuf as usize;
        s.rcvtimeo = r.rcvtimeo_ns.map(Duration::from_nanos);
        s.sndtimeo = r.sndtimeo_ns.map(Duration::from_nanos);
        s.error = r.error;
        s.in_progress = r.in_progress;
        s.failed = r.failed;
        s.kind = match &r.kind {
            SavedInetKind::Tcp(SavedTcp::Closed) => Kind::Tcp(Tcp::Closed),
            SavedInetKind::Tcp(SavedTcp::Listen {
                backlog,
                pending,
                waiting,
            }) => Kind::Tcp(Tcp::Listen {
                backlog: *backlog as usize,
                pending: pending.iter().copied().collect(),
                waiting: waiting.iter().copied().collect(),
            }),
            SavedInetKind::Tcp(SavedTcp::Connecting { listener, to }) => {
                Kind::Tcp(Tcp::Connecting {
                    listener: *listener,
                    to: live(*to),
                })
            }
            SavedInetKind::Tcp(SavedTcp::Established(c)) => Kind::Tcp(Tcp::Established(Conn {
                peer: c.peer,
                remote: c.remote.map(live),
                rx: super::stack::ByteQueue::from_vec(c.rx.clone()),
                tx: super::stack::ByteQueue::from_vec(c.tx.clone()),
                rd_shut: c.rd_shut,
                wr_shut: c.wr_shut,
                fin_rcvd: c.fin_rcvd,
                reset: c.reset,
            })),
            SavedInetKind::Udp(u) | SavedInetKind::Icmp(u) => {
                let rx: VecDeque<Datagram> =
                    u.rx.iter()
                        .map(|d| Datagram {
                            from: live(d.from),
                            data: d.data.clone(),
                        })
                        .collect();
                Kind::Udp(Udp {
                    remote: u.remote.map(live),
                    rx_bytes: rx.iter().map(|d| d.data.len()).sum(),
                    rx,
                    rd_shut: u.rd_shut,
                    wr_shut: u.wr_shut,
                })
            }
        };
        stack.insert(super::next_id(Some(r.id)), s);
    }
    recs.iter()
        .filter(|r| !queued.contains(&r.id))
        .filter_map(|r| Some((r.id, InetSocket::handle(stack, r.id)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::{Interrupt, IoCtx};

    #[test]
    fn a_connection_with_data_both_ways_and_a_backlog_round_trip() {
        let stack = InetStack::new();
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: true,
        };
        let l = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        l.bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        l.listen(4).unwrap();
        let at = l.local_addr();
        let c = InetSocket::new(&stack, Family::V6, Proto::Tcp, 0);
        let _ = c.connect(&io, super::addr::Target::Addr(at));
        c.send(&io, b"to the server", None).unwrap();
        let recs = stack.records();
        let ids: BTreeSet<u64> = recs.iter().map(|r| r.id).collect();
        for r in &recs {
            r.check(r.id, &ids).unwrap();
        }
        check_graph(&recs, &[l.id(), c.id()]).unwrap();
        // Into a new stack: the queued connection is accepted there.
        let other = InetStack::new();
        let handles = restore(&recs, &other);
        assert_eq!(handles.len(), 2, "the listener and the client");
        let l2 = &handles[&l.id()];
        let (s, _) = l2.accept(&io).unwrap();
        let mut buf = [0u8; 32];
        let got = s.recv(&io, &mut buf, false, false).unwrap();
        assert_eq!(&buf[..got.copied], b"to the server");
        // Hostile: a peer that does not point back.
        let mut bad = recs.clone();
        for r in &mut bad {
            if let SavedInetKind::Tcp(SavedTcp::Established(c)) = &mut r.kind {
                c.peer = l.id();
            }
        }
        assert!(check_graph(&bad, &[]).is_err());
        let mut big = recs[0].clone();
        big.sndbuf = 1;
        assert!(matches!(
            big.check(big.id, &ids),
            Err(NetError::Invalid {
                field: "sndbuf",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod stack_tests {
    use super::*;
    use crate::vfs::file::{Interrupt, IoCtx};

    /// A `net.InetSocket` v1 as an older cryo wrote it.
    struct OldRecord(InetSocketRecordV1);

    impl statefile::Savable for OldRecord {
        const TYPE_NAME: &'static str = "net.InetSocket";
        const VERSION: u32 = 1;
        fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
            enc.serde(&self.0)
        }
        fn load(_: &mut statefile::Decoder<'_>, _: u32) -> statefile::Result<Self> {
            unreachable!("only saved")
        }
        fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
            statefile::register_versioned::<InetSocketRecordV1>(types)
        }
    }

    #[test]
    fn a_v1_udp_record_migrates_to_v2() {
        let v1 = InetSocketRecordV1 {
            id: 7,
            family: libc::AF_INET,
            local: Some(SavedInetAddr::V4 {
                ip: [127, 0, 0, 1],
                port: 5000,
            }),
            explicit_bind: true,
            uid: 0,
            int_opts: Vec::new(),
            linger: None,
            sndbuf: 212_992,
            rcvbuf: 212_992,
            rcvtimeo_ns: None,
            sndtimeo_ns: None,
            error: 0,
            in_progress: false,
            failed: false,
            kind: SavedInetKindV1::Udp(SavedUdp {
                remote: None,
                rx: vec![SavedDatagram {
                    from: SavedInetAddr::V4 {
                        ip: [127, 0, 0, 1],
                        port: 6000,
                    },
                    data: b"hi".to_vec(),
                }],
                rd_shut: false,
                wr_shut: false,
            }),
        };
        let bytes = statefile::to_bytes(&OldRecord(v1.clone())).unwrap();
        let now: InetSocketRecord = statefile::from_bytes(&bytes).unwrap();
        assert_eq!(now, InetSocketRecord::from(v1));
        assert!(matches!(&now.kind, SavedInetKind::Udp(u) if u.rx[0].data == b"hi"));
    }

    /// A port in TIME_WAIT is saved with its time left: restored with
    /// time left, a bind without SO_REUSEADDR is EADDRINUSE; restored
    /// with none left, the bind goes through.
    #[test]
    fn a_time_wait_port_is_held_until_its_time_runs_out() {
        let stack = InetStack::new();
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: true,
        };
        let l = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        l.bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        l.listen(4).unwrap();
        let at = l.local_addr();
        let c = InetSocket::new(&stack, Family::V4, Proto::Tcp, 0);
        let _ = c.connect(&io, super::addr::Target::Addr(at));
        let (s, _) = l.accept(&io).unwrap();
        s.release();
        c.release();
        l.release();
        stack.set_ping_group_range(0, 10).unwrap();
        let rec = stack.stack_record();
        rec.check().unwrap();
        assert_eq!(rec.ping_group_range, (0, 10));
        assert_eq!(rec.time_wait.len(), 1, "{rec:?}");
        assert_eq!(rec.time_wait[0].port, at.port());
        assert!(rec.time_wait[0].left_ns > 0);

        let other = InetStack::new();
        other.restore_stack(&rec).unwrap();
        assert_eq!(other.ping_group_range(), (0, 10));
        let t = InetSocket::new(&other, Family::V4, Proto::Tcp, 0);
        assert_eq!(t.bind(at, true), Err(crate::errno::Errno::EADDRINUSE));
        t.release();

        let mut spent = rec.clone();
        spent.time_wait[0].left_ns = 0;
        let third = InetStack::new();
        third.restore_stack(&spent).unwrap();
        let t = InetSocket::new(&third, Family::V4, Proto::Tcp, 0);
        assert_eq!(t.bind(at, true), Ok(()));

        let mut bad = rec.clone();
        bad.time_wait[0].left_ns = u64::MAX;
        assert_eq!(bad.check().map_err(|e| e.0), Err("time_wait.left_ns"));
        bad.ping_group_range = (3, 2);
        assert_eq!(bad.check().map_err(|e| e.0), Err("ping_group_range"));
    }
}
