//! AF_NETLINK sockets of the NETLINK_ROUTE protocol (Linux's rtnetlink,
//! gVisor's socket/netlink/route), enough for what programs ask of the
//! sandbox's one network device: dumps of links (RTM_GETLINK) and
//! addresses (RTM_GETADDR) show `lo` with 127.0.0.1/8 and ::1/128, so
//! glibc's getaddrinfo(AI_ADDRCONFIG) and `ip addr` work; a route dump
//! is empty (the main table of a sandbox with no network); any other
//! request is answered NLMSG_ERROR EOPNOTSUPP, as rtnetlink answers a type
//! it has no handler for. No multicast groups: the sandbox's links never
//! change.
//!
//! A netlink socket is saved as a `net.NetlinkSocket` record (its port
//! id and the replies not read yet) keyed by its socket id.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::errno::Errno;
use crate::vfs::file::{FileKind, FileOps, IoCtx, IoctlReply, SaveAs, SeekMode, INTERRUPT_POLL};
use crate::vfs::inode::Inode;
use crate::vfs::poll::{WaitQueue, ALL_EVENTS, EPOLLIN, EPOLLOUT, EPOLLRDNORM, EPOLLWRNORM};
use crate::vfs::stat::{makedev, Stat};
use crate::vfs::{OpenFile, Timespec};

/// `sizeof(struct sockaddr_nl)`.
pub const SOCKADDR_NL_LEN: usize = 12;
const NLMSG_HDRLEN: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_GETROUTE: u16 = 26;
const ARPHRD_LOOPBACK: u16 = 772;
const IFF_LOWER_UP: u32 = 0x10000;
const IFA_F_PERMANENT: u8 = 0x80;
const RT_SCOPE_HOST: u8 = 254;
/// Most replies a socket holds unread (a receive buffer's worth).
const MAX_QUEUED: usize = 1024;

/// One netlink socket: its port id and the replies not read yet.
pub struct NetlinkSocket {
    id: u64,
    created: Timespec,
    st: Mutex<NlState>,
    cond: Condvar,
    queue: Arc<WaitQueue>,
}

struct NlState {
    /// The port id (nl_pid); 0 until bound or first used.
    port: u32,
    replies: VecDeque<Vec<u8>>,
    rcvbuf: i32,
    sndbuf: i32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends an rtattr of type `ty` with `data`, padded to 4 bytes.
fn attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A netlink message of `ty` around `body`.
fn message(ty: u16, flags: u16, seq: u32, port: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&port.to_ne_bytes());
    m.extend_from_slice(body);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
    m
}

/// RTM_NEWLINK's body for `lo`.
fn lo_link() -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0];
    b.extend_from_slice(&ARPHRD_LOOPBACK.to_ne_bytes());
    b.extend_from_slice(&super::inet::procnet::LO_INDEX.to_ne_bytes());
    b.extend_from_slice(&(super::inet::procnet::LO_FLAGS | IFF_LOWER_UP).to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut b, libc::IFLA_IFNAME, b"lo\0");
    attr(&mut b, libc::IFLA_TXQLEN, &1000u32.to_ne_bytes());
    attr(&mut b, libc::IFLA_OPERSTATE, &[0]);
    attr(&mut b, libc::IFLA_LINKMODE, &[0]);
    attr(
        &mut b,
        libc::IFLA_MTU,
        &(super::inet::procnet::LO_MTU as u32).to_ne_bytes(),
    );
    attr(&mut b, libc::IFLA_GROUP, &0u32.to_ne_bytes());
    attr(&mut b, libc::IFLA_PROMISCUITY, &0u32.to_ne_bytes());
    attr(&mut b, libc::IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes());
    attr(&mut b, libc::IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes());
    attr(&mut b, libc::IFLA_CARRIER, &[1]);
    attr(&mut b, libc::IFLA_QDISC, b"noqueue\0");
    attr(&mut b, libc::IFLA_ADDRESS, &[0; 6]);
    attr(&mut b, libc::IFLA_BROADCAST, &[0; 6]);
    b
}

/// RTM_NEWADDR's bodies for `lo`'s addresses of `family` (AF_UNSPEC:
/// both).
fn lo_addrs(family: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let cache = {
        let mut c = Vec::new();
        for v in [u32::MAX, u32::MAX, 0, 0] {
            c.extend_from_slice(&v.to_ne_bytes());
        }
        c
    };
    let idx = super::inet::procnet::LO_INDEX as u32;
    if family == libc::AF_UNSPEC as u8 || family == libc::AF_INET as u8 {
        let mut b = vec![libc::AF_INET as u8, 8, IFA_F_PERMANENT, RT_SCOPE_HOST];
        b.extend_from_slice(&idx.to_ne_bytes());
        attr(&mut b, libc::IFA_ADDRESS, &[127, 0, 0, 1]);
        attr(&mut b, libc::IFA_LOCAL, &[127, 0, 0, 1]);
        attr(&mut b, libc::IFA_LABEL, b"lo\0");
        attr(
            &mut b,
            libc::IFA_FLAGS,
            &u32::from(IFA_F_PERMANENT).to_ne_bytes(),
        );
        attr(&mut b, libc::IFA_CACHEINFO, &cache);
        out.push(b);
    }
    if family == libc::AF_UNSPEC as u8 || family == libc::AF_INET6 as u8 {
        let mut b = vec![libc::AF_INET6 as u8, 128, IFA_F_PERMANENT, RT_SCOPE_HOST];
        b.extend_from_slice(&idx.to_ne_bytes());
        attr(
            &mut b,
            libc::IFA_ADDRESS,
            &std::net::Ipv6Addr::LOCALHOST.octets(),
        );
        attr(&mut b, libc::IFA_CACHEINFO, &cache);
        attr(
            &mut b,
            libc::IFA_FLAGS,
            &u32::from(IFA_F_PERMANENT).to_ne_bytes(),
        );
        out.push(b);
    }
    out
}

impl NetlinkSocket {
    pub fn new() -> Arc<NetlinkSocket> {
        Self::new_with_id(super::unix::allocate_socket_id(None))
    }

    fn new_with_id(id: u64) -> Arc<NetlinkSocket> {
        Arc::new(NetlinkSocket {
            id,
            created: crate::vfs::Clock::now(&crate::vfs::HostClock),
            st: Mutex::new(NlState {
                port: 0,
                replies: VecDeque::new(),
                rcvbuf: 212_992,
                sndbuf: 212_992,
            }),
            cond: Condvar::new(),
            queue: WaitQueue::new(),
        })
    }

    /// The socket's port id, chosen on first need (`pid`: the caller's
    /// tgid, which Linux's autobind tries first).
    fn port(st: &mut NlState, pid: i32) -> u32 {
        if st.port == 0 {
            // Not unique across the sandbox's sockets: nothing routes to
            // user ports here (no unicast between sockets, no groups).
            st.port = u32::try_from(pid).unwrap_or(1).max(1);
        }
        st.port
    }

    /// bind(2) to a `sockaddr_nl` (its groups are taken, and ignored).
    pub fn bind(&self, raw: &[u8], pid: i32) -> Result<(), Errno> {
        let (port, _) = parse_addr(raw)?;
        let mut st = lock(&self.st);
        if port != 0 {
            if st.port != 0 && st.port != port {
                return Err(Errno::EINVAL);
            }
            st.port = port;
        } else {
            Self::port(&mut st, pid);
        }
        Ok(())
    }

    /// getsockname(2).
    pub fn local_addr(&self, pid: i32) -> Vec<u8> {
        let port = Self::port(&mut lock(&self.st), pid);
        sockaddr_nl(port)
    }

    /// A request from the application: every message in `data` answered
    /// into the receive queue.
    pub fn send(&self, data: &[u8], pid: i32) -> Result<usize, Errno> {
        let mut st = lock(&self.st);
        let port = Self::port(&mut st, pid);
        let mut off = 0;
        while data.len() - off >= NLMSG_HDRLEN {
            let h = &data[off..];
            let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len < NLMSG_HDRLEN || len > h.len() {
                break;
            }
            let ty = u16::from_ne_bytes([h[4], h[5]]);
            let flags = u16::from_ne_bytes([h[6], h[7]]);
            let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
            let body = &h[NLMSG_HDRLEN..len];
            if flags & NLM_F_REQUEST != 0 {
                let replies = answer(ty, flags, seq, port, body, &h[..NLMSG_HDRLEN]);
                for r in replies {
                    if st.replies.len() >= MAX_QUEUED {
                        // A full receive buffer drops, as Linux's does.
                        break;
                    }
                    st.replies.push_back(r);
                }
            }
            off += (len + 3) & !3;
        }
        drop(st);
        self.cond.notify_all();
        self.queue.notify(ALL_EVENTS);
        Ok(data.len())
    }

    /// recv: the next reply (a datagram), its whole length, and whether it
    /// was cut.
    pub fn recv(
        &self,
        io: &IoCtx<'_>,
        buf: &mut [u8],
        peek: bool,
    ) -> Result<(usize, usize), Errno> {
        let mut st = lock(&self.st);
        loop {
            if let Some(r) = st.replies.front() {
                let n = r.len().min(buf.len());
                buf[..n].copy_from_slice(&r[..n]);
                let full = r.len();
                if !peek {
                    st.replies.pop_front();
                }
                return Ok((n, full));
            }
            if io.nonblock {
                return Err(Errno::EAGAIN);
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            let until = Instant::now() + INTERRUPT_POLL;
            st = match self.cond.wait_timeout(st, until - Instant::now()) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// getsockopt(2)'s value.
    pub fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let st = lock(&self.st);
        let v = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_TYPE) => libc::SOCK_RAW,
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => libc::AF_NETLINK,
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => libc::NETLINK_ROUTE,
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => st.rcvbuf,
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => st.sndbuf,
            (libc::SOL_SOCKET, libc::SO_ERROR) => 0,
            (libc::SOL_NETLINK, _) => 0,
            _ => return Err(Errno::ENOPROTOOPT),
        };
        Ok(v.to_ne_bytes().to_vec())
    }

    /// setsockopt(2): buffer sizes, and the NETLINK_* flags (extended
    /// acks, strict checking, ...), taken and not acted on.
    pub fn setsockopt(&self, level: i32, name: i32, raw: &[u8]) -> Result<(), Errno> {
        let v = raw
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or(Errno::EINVAL)?;
        let mut st = lock(&self.st);
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVBUF) | (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE) => {
                st.rcvbuf = (v.max(0) as u32).min(212_992) as i32 * 2;
                st.rcvbuf = st.rcvbuf.max(2304);
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) | (libc::SOL_SOCKET, libc::SO_SNDBUFFORCE) => {
                st.sndbuf = (v.max(0) as u32).min(212_992) as i32 * 2;
                st.sndbuf = st.sndbuf.max(4608);
            }
            (libc::SOL_SOCKET, libc::SO_PASSCRED) | (libc::SOL_SOCKET, libc::SO_TIMESTAMP) => {}
            (libc::SOL_NETLINK, 1..=12) => {}
            _ => return Err(Errno::ENOPROTOOPT),
        }
        Ok(())
    }

    pub fn readiness(&self) -> u32 {
        let st = lock(&self.st);
        let mut r = EPOLLOUT | EPOLLWRNORM;
        if !st.replies.is_empty() {
            r |= EPOLLIN | EPOLLRDNORM;
        }
        r
    }

    /// FIONREAD: the next reply's size.
    fn inq(&self) -> usize {
        lock(&self.st).replies.front().map_or(0, Vec::len)
    }
}

/// The saved form of a netlink socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetlinkSocketRecord {
    pub id: u64,
    /// The port id (0: not chosen yet).
    pub port: u32,
    /// Replies not read yet, one datagram each.
    pub replies: Vec<Vec<u8>>,
    pub rcvbuf: i32,
    pub sndbuf: i32,
}
statefile::savable_serde!(NetlinkSocketRecord, "net.NetlinkSocket", 1);

/// The longest reply a restored socket may hold (the dumps are far
/// smaller).
const MAX_REPLY: usize = 1 << 16;

impl NetlinkSocket {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn record(&self) -> NetlinkSocketRecord {
        let st = lock(&self.st);
        NetlinkSocketRecord {
            id: self.id,
            port: st.port,
            replies: st.replies.iter().cloned().collect(),
            rcvbuf: st.rcvbuf,
            sndbuf: st.sndbuf,
        }
    }

    /// The socket of a (checked) record.
    pub fn restore(r: &NetlinkSocketRecord) -> Arc<NetlinkSocket> {
        let s = NetlinkSocket::new_with_id(super::unix::allocate_socket_id(Some(r.id)));
        {
            let mut st = lock(&s.st);
            st.port = r.port;
            st.replies = r.replies.iter().cloned().collect();
            st.rcvbuf = r.rcvbuf;
            st.sndbuf = r.sndbuf;
        }
        s
    }
}

impl NetlinkSocketRecord {
    /// Checks the record alone; errors name the field.
    pub fn check(&self, id: u64) -> Result<(), super::NetError> {
        let bad = |field: &'static str, why: String| super::NetError::Invalid { id, field, why };
        if self.id != id {
            return Err(bad(
                "id",
                format!("{} differs from the record's id", self.id),
            ));
        }
        if self.replies.len() > MAX_QUEUED {
            return Err(bad("replies", format!("{} replies", self.replies.len())));
        }
        if let Some(r) = self
            .replies
            .iter()
            .find(|r| r.len() > MAX_REPLY || r.len() < NLMSG_HDRLEN)
        {
            return Err(bad("replies", format!("a reply of {} bytes", r.len())));
        }
        for (f, v, min) in [("rcvbuf", self.rcvbuf, 2304), ("sndbuf", self.sndbuf, 4608)] {
            if !(min..=2 * 212_992).contains(&v) {
                return Err(bad(f, format!("{v}")));
            }
        }
        Ok(())
    }
}

/// A `sockaddr_nl`'s port and groups (EINVAL for a short or foreign one).
pub fn parse_addr(raw: &[u8]) -> Result<(u32, u32), Errno> {
    if raw.len() < SOCKADDR_NL_LEN {
        return Err(Errno::EINVAL);
    }
    if u16::from_ne_bytes([raw[0], raw[1]]) != libc::AF_NETLINK as u16 {
        return Err(Errno::EINVAL);
    }
    let port = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let groups = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]);
    Ok((port, groups))
}

/// A `sockaddr_nl` naming `port` (0: the kernel).
pub fn sockaddr_nl(port: u32) -> Vec<u8> {
    let mut a = vec![0u8; SOCKADDR_NL_LEN];
    a[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    a[4..8].copy_from_slice(&port.to_ne_bytes());
    a
}

/// rtnetlink's answer to one request: the replies, each one datagram.
fn answer(ty: u16, flags: u16, seq: u32, port: u32, body: &[u8], hdr: &[u8]) -> Vec<Vec<u8>> {
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let done = || message(NLMSG_DONE, NLM_F_MULTI, seq, port, &0i32.to_ne_bytes());
    let error = |e: i32| {
        let mut b = (-e).to_ne_bytes().to_vec();
        b.extend_from_slice(hdr);
        message(NLMSG_ERROR, 0, seq, port, &b)
    };
    match ty {
        RTM_GETLINK if dump => {
            vec![
                message(RTM_NEWLINK, NLM_F_MULTI, seq, port, &lo_link()),
                done(),
            ]
        }
        RTM_GETLINK => {
            // By index (ifinfomsg.ifi_index) or by IFLA_IFNAME.
            let index = body
                .get(4..8)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0);
            let by_name = body.len() > 16 && body[16..].windows(3).any(|w| w == b"lo\0");
            if index == super::inet::procnet::LO_INDEX || (index == 0 && by_name) {
                vec![message(RTM_NEWLINK, 0, seq, port, &lo_link())]
            } else {
                vec![error(libc::ENODEV)]
            }
        }
        RTM_GETADDR if dump => {
            let family = body.first().copied().unwrap_or(libc::AF_UNSPEC as u8);
            let mut all = Vec::new();
            for a in lo_addrs(family) {
                all.extend(message(RTM_NEWADDR, NLM_F_MULTI, seq, port, &a));
            }
            if all.is_empty() {
                vec![done()]
            } else {
                vec![all, done()]
            }
        }
        // The main table of a sandbox with no network holds no route.
        RTM_GETROUTE if dump => vec![done()],
        _ => {
            let mut r = vec![error(libc::EOPNOTSUPP)];
            if flags & NLM_F_ACK == 0 && ty < 16 {
                // Control messages (NLMSG_NOOP...) are ignored.
                r.clear();
            }
            r
        }
    }
}

/// The open file of a netlink socket.
pub struct NetlinkFile {
    sock: Arc<NetlinkSocket>,
}

impl NetlinkFile {
    pub fn open(sock: Arc<NetlinkSocket>, flags: i32) -> Arc<OpenFile> {
        let inode: Arc<dyn Inode> = Arc::new(NetlinkInode { sock: sock.clone() });
        let ops: Arc<dyn FileOps> = Arc::new(NetlinkFile { sock });
        OpenFile::new_anonymous(inode, ops, (flags & libc::O_NONBLOCK) | libc::O_RDWR)
    }
}

/// The netlink socket behind an open file, if it is one.
pub fn netlink_of(file: &OpenFile) -> Option<Arc<NetlinkSocket>> {
    file.ops()
        .as_any()
        .downcast_ref::<NetlinkFile>()
        .map(|f| f.sock.clone())
}

impl FileOps for NetlinkFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Socket
    }

    fn save_as(&self) -> SaveAs {
        SaveAs::Socket { id: self.sock.id }
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        self.sock.recv(io, buf, false).map(|(n, _)| n)
    }

    fn write(&self, _io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        self.sock.send(buf, super::socket::current_cred().pid)
    }

    fn ioctl(&self, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        match cmd {
            libc::FIONREAD => Ok(IoctlReply {
                ret: 0,
                out: (self.sock.inq() as i32).to_le_bytes().to_vec(),
            }),
            _ => super::inet::procnet::if_ioctl(cmd, input),
        }
    }

    fn readiness(&self) -> u32 {
        self.sock.readiness()
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.sock.queue.clone())
    }
}

struct NetlinkInode {
    sock: Arc<NetlinkSocket>,
}

impl Inode for NetlinkInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        libc::S_IFSOCK
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = self.sock.created;
        Ok(Stat {
            dev: makedev(0, 8),
            ino: self.sock.id,
            mode: libc::S_IFSOCK | 0o777,
            nlink: 1,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::ENXIO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;

    fn request(ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
        message(ty, flags, 7, 0, body)
    }

    #[test]
    fn dumps_show_lo_and_its_addresses() {
        let s = NetlinkSocket::new();
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: true,
        };
        s.send(
            &request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &[0u8; 8]),
            5,
        )
        .unwrap();
        let mut buf = vec![0u8; 8192];
        let (n, full) = s.recv(&io, &mut buf, false).unwrap();
        assert_eq!(n, full);
        // Two RTM_NEWADDR messages, then DONE in its own datagram.
        let first = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), RTM_NEWADDR);
        assert_eq!(buf[NLMSG_HDRLEN], libc::AF_INET as u8);
        assert_eq!(
            u16::from_ne_bytes([buf[first + 4], buf[first + 5]]),
            RTM_NEWADDR
        );
        let (_, _) = s.recv(&io, &mut buf, false).unwrap();
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), NLMSG_DONE);
        assert_eq!(s.recv(&io, &mut buf, false), Err(Errno::EAGAIN));
        s.send(&request(99, NLM_F_REQUEST | NLM_F_ACK, &[]), 5)
            .unwrap();
        s.recv(&io, &mut buf, false).unwrap();
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), NLMSG_ERROR);
        assert_eq!(
            i32::from_ne_bytes(buf[16..20].try_into().unwrap()),
            -libc::EOPNOTSUPP
        );
        assert_eq!(parse_addr(&[0; 4]), Err(Errno::EINVAL));
        // Saved with a reply unread, restored with it.
        s.send(
            &request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, &[0u8; 16]),
            5,
        )
        .unwrap();
        let rec = s.record();
        rec.check(rec.id).unwrap();
        let back = NetlinkSocket::restore(&rec);
        let (n, _) = back.recv(&io, &mut buf, false).unwrap();
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), RTM_NEWLINK);
        assert!(n > NLMSG_HDRLEN);
        let mut bad = rec.clone();
        bad.replies.push(vec![0; 3]);
        assert!(bad.check(bad.id).is_err());
    }
}
