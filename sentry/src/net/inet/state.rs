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
//! Not saved: ports in TIME_WAIT (a restored sandbox may rebind them at
//! once) and the ephemeral port cursor.
//!
//! Restore: [`check`] validates every record and the links between them
//! (typed errors naming the socket and field), [`restore`] puts the
//! sockets back in the kernel's stack and gives a handle for each one an
//! open file may claim.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::addr::{self, Family};
use super::opts::{self, IntOpts};
use super::stack::{
    Conn, Datagram, InetSocket, InetStack, Kind, Sock, Tcp, Udp, MAX_BUF, MIN_RCVBUF, MIN_SNDBUF,
    SOMAXCONN, UDP_MAX_V6,
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

/// The protocol part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedInetKind {
    Tcp(SavedTcp),
    Udp(SavedUdp),
}
statefile::versioned!(SavedInetKind, "net.InetKind", 1, [SavedTcp, SavedUdp]);

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
statefile::savable_serde!(
    InetSocketRecord,
    "net.InetSocket",
    1,
    [SavedInetAddr, SavedInetKind]
);

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
        Kind::Udp(u) => SavedInetKind::Udp(SavedUdp {
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
        }),
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
}

fn proto_of(k: &SavedInetKind) -> Proto {
    match k {
        SavedInetKind::Tcp(_) => Proto::Tcp,
        SavedInetKind::Udp(_) => Proto::Udp,
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
            SavedInetKind::Udp(u) => {
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
            SavedInetKind::Udp(u) => {
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
