//! The socket calls on AF_INET and AF_INET6 sockets (Linux's inet_*
//! and inet6_* proto_ops): the arguments read and checked here, the
//! sockets of sentry/src/net/inet do the rest. The unix handlers of
//! net.rs hand a call over when its descriptor is an inet socket.

use std::sync::Arc;

use super::{install, io_ctx, read_sockaddr, status, write_sockaddr, Args, SysResult, STEP};
use crate::errno::Errno;
use crate::kernel::Task;
use crate::mm::IoVec;
use crate::net::inet::{self, addr, Family, InetFile, InetSocket, Proto, Target};
use crate::vfs::OpenFile;

const SOCK_TYPE_MASK: i32 = 0xf;

/// A socket's open file and the socket.
type Found = (Arc<OpenFile>, Arc<InetSocket>);
/// Linux's SOCK_MAX.
const SOCK_MAX: i32 = 11;

/// The inet socket at `fd`: None for another kind of file (the caller
/// goes on with it), EBADF for no descriptor.
pub(super) fn lookup(t: &Task, fd: i32) -> Result<Option<Found>, Errno> {
    let f = t.fds().lock().file(fd)?;
    if f.is_path() {
        return Ok(None);
    }
    Ok(inet::inet_of(&f).map(|s| (f, s)))
}

/// socket(2)'s checks for an inet family, in Linux's order: flags, type
/// range, the protocol of the type, then who may create it: a raw socket
/// needs CAP_NET_RAW (EPERM), a ping socket a group in
/// net.ipv4.ping_group_range (EACCES, Linux's ping_init_sock).
fn check_type(
    t: &Task,
    call: &str,
    fam: Family,
    ty: i32,
    proto: i32,
) -> Result<(Proto, i32), Errno> {
    let flags = ty & !SOCK_TYPE_MASK;
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let base = ty & SOCK_TYPE_MASK;
    if base >= SOCK_MAX {
        return Err(Errno::EINVAL);
    }
    // Linux's raw protocol entry takes any protocol but IPPROTO_IP, and
    // the capability check follows the lookup.
    if base == libc::SOCK_RAW && proto != 0 && !t.creds().capable(crate::kernel::creds::CAP_NET_RAW)
    {
        return Err(Errno::EPERM);
    }
    let p = inet::protocol_for(fam, base, proto);
    if p == Err(Errno::EPROTONOSUPPORT) && (base == libc::SOCK_RAW || base == libc::SOCK_DGRAM) {
        if let Some(nr) = crate::arch::syscall_number(call) {
            t.kernel()
                .log_unsupported(nr, &format!("inet type {base} protocol {proto}"));
        }
    }
    let p = p?;
    if p == Proto::Icmp {
        let c = t.creds();
        if !t.kernel().inet.ping_allowed(c.egid, &c.groups) {
            return Err(Errno::EACCES);
        }
    }
    Ok((p, flags))
}

pub(super) fn socket(t: &mut Task, fam: Family, ty: i32, proto: i32) -> SysResult {
    let (p, flags) = check_type(t, "socket", fam, ty, proto)?;
    let s = InetSocket::new(&t.kernel().inet, fam, p, t.creds().euid);
    let f = InetFile::open(s, status(flags));
    install(t, f, flags & libc::SOCK_CLOEXEC != 0).map(|fd| fd as u64)
}

/// socketpair(2) of an inet family: the type is checked as socket(2)
/// checks it, then EOPNOTSUPP (inet has no pairs).
pub(super) fn socketpair(t: &mut Task, fam: Family, ty: i32, proto: i32) -> SysResult {
    check_type(t, "socketpair", fam, ty, proto)?;
    Err(Errno::EOPNOTSUPP)
}

pub(super) fn bind(t: &mut Task, s: &InetSocket, a: &Args) -> SysResult {
    let raw = read_sockaddr(t, a.addr(1), a.int(2))?;
    let sa = addr::parse_bind(&raw, s.family())?;
    // Ports below 1024 need CAP_NET_BIND_SERVICE; a ping socket's
    // "port" is its echo identifier, free to take (Linux's ping_bind).
    s.bind(
        sa,
        s.proto() == Proto::Icmp
            || t.creds()
                .capable(crate::kernel::creds::CAP_NET_BIND_SERVICE),
    )?;
    Ok(0)
}

pub(super) fn listen(s: &InetSocket, a: &Args) -> SysResult {
    s.listen(a.int(1))?;
    Ok(0)
}

pub(super) fn connect(t: &mut Task, f: &OpenFile, s: &InetSocket, a: &Args) -> SysResult {
    let raw = read_sockaddr(t, a.addr(1), a.int(2))?;
    let target = addr::parse_target(&raw, s.family())?;
    let intr = t.interrupt().io.clone();
    s.connect(&io_ctx(f, &intr, 0), target)?;
    Ok(0)
}

pub(super) fn accept(
    t: &mut Task,
    f: &OpenFile,
    s: &InetSocket,
    a: &Args,
    flags: i32,
) -> SysResult {
    // Linux takes the descriptor before the connection: with none free
    // (RLIMIT_NOFILE) accept is EMFILE and the connection stays queued.
    {
        let limit = t.nofile_limit();
        let fds = t.fds();
        let table = fds.lock();
        let mut free = 0i32;
        for (used, _) in table.iter() {
            if used != free {
                break;
            }
            free += 1;
        }
        if free as u64 >= limit {
            return Err(Errno::EMFILE);
        }
    }
    let intr = t.interrupt().io.clone();
    let (conn, peer) = s.accept(&io_ctx(f, &intr, 0))?;
    let sa = addr::to_sockaddr(peer, conn.family());
    let file = InetFile::open(conn, status(flags));
    write_sockaddr(t, a.addr(1), a.addr(2), &sa)?;
    install(t, file, flags & libc::SOCK_CLOEXEC != 0).map(|fd| fd as u64)
}

pub(super) fn getsockname(t: &mut Task, s: &InetSocket, a: &Args) -> SysResult {
    let sa = addr::to_sockaddr(s.local_addr(), s.family());
    super::check_len_ptr(t, a.addr(2))?;
    write_sockaddr(t, a.addr(1), a.addr(2), &sa)?;
    Ok(0)
}

pub(super) fn getpeername(t: &mut Task, s: &InetSocket, a: &Args) -> SysResult {
    let sa = addr::to_sockaddr(s.peer_addr()?, s.family());
    super::check_len_ptr(t, a.addr(2))?;
    write_sockaddr(t, a.addr(1), a.addr(2), &sa)?;
    Ok(0)
}

pub(super) fn shutdown(s: &InetSocket, how: i32) -> SysResult {
    s.shutdown(how)?;
    Ok(0)
}

/// SIGPIPE for a TCP send's EPIPE unless MSG_NOSIGNAL.
fn sigpipe(t: &mut Task, s: &InetSocket, flags: i32, r: SysResult) -> SysResult {
    if r == Err(Errno::EPIPE) && s.proto() == Proto::Tcp && flags & libc::MSG_NOSIGNAL == 0 {
        t.send_signal(crate::kernel::signal::SigInfo {
            signo: libc::SIGPIPE,
            code: crate::kernel::signal::SI_USER,
            addr: 0,
            pid: t.tgid(),
            uid: t.creds().uid,
        });
    }
    r
}

/// sendto/sendmsg: `to` is the raw address, empty for none.
pub(super) fn send(
    t: &mut Task,
    f: &OpenFile,
    s: &InetSocket,
    iovs: Vec<IoVec>,
    to: &[u8],
    flags: i32,
) -> SysResult {
    if flags & libc::MSG_OOB != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let target = if s.proto() == Proto::Icmp && !to.is_empty() {
        // Linux's ping_v4_sendmsg: a short name is EINVAL, another family
        // (AF_UNSPEC too) EAFNOSUPPORT.
        if to.len() < addr::SOCKADDR_IN_LEN {
            return Err(Errno::EINVAL);
        }
        if u16::from_ne_bytes([to[0], to[1]]) != libc::AF_INET as u16 {
            return Err(Errno::EAFNOSUPPORT);
        }
        Some(addr::parse_target(to, Family::V4)?)
    } else if to.is_empty() || s.proto() == Proto::Tcp {
        // A TCP socket ignores the address (Linux's tcp_sendmsg).
        None
    } else {
        match addr::parse_target(to, s.family())? {
            // An AF_UNSPEC name on an IPv6 socket is no name; on IPv4 it
            // is taken as AF_INET.
            Target::Unspec if s.family() == Family::V6 => None,
            Target::Unspec if to.len() >= addr::SOCKADDR_IN_LEN => {
                let mut v4 = to.to_vec();
                v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                Some(addr::parse_target(&v4, Family::V4)?)
            }
            Target::Unspec => return Err(Errno::EINVAL),
            t => Some(t),
        }
    };
    let total = iovs.iter().map(|v| v.len).fold(0u64, u64::saturating_add);
    let intr = t.interrupt().io.clone();
    let io = io_ctx(f, &intr, flags);
    if s.proto() != Proto::Tcp {
        let max = if s.family() == Family::V4 {
            inet::stack::UDP_MAX_V4
        } else {
            inet::stack::UDP_MAX_V6
        } as u64;
        if total > max {
            return Err(Errno::EMSGSIZE);
        }
        let data = t.mm().copy_in_iovecs(&iovs, total as usize)?;
        if (data.len() as u64) < total {
            return Err(Errno::EFAULT);
        }
        return s.send(&io, &data, target).map(|n| n as u64);
    }
    let mut iovs = iovs;
    let mut done = 0u64;
    loop {
        let want = (total - done).min(STEP as u64) as usize;
        let data = match t.mm().copy_in_iovecs(&iovs, want) {
            Ok(d) => d,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let got = data.len();
        match s.send(&io, &data, None) {
            Ok(n) => {
                done += n as u64;
                super::advance(&mut iovs, n as u64);
                if n < got || done >= total || got < want {
                    break;
                }
            }
            Err(e) if done == 0 => return sigpipe(t, s, flags, Err(e)),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// recvfrom/recvmsg: the count (or a datagram's length with MSG_TRUNC),
/// msg_flags and the sender's address (UDP).
pub(super) fn recv(
    t: &mut Task,
    f: &OpenFile,
    s: &InetSocket,
    iovs: &[IoVec],
    flags: i32,
) -> Result<(u64, i32, Vec<u8>), Errno> {
    if flags & libc::MSG_OOB != 0 {
        return Err(if s.proto() == Proto::Tcp {
            Errno::EINVAL
        } else {
            Errno::EOPNOTSUPP
        });
    }
    let total = iovs
        .iter()
        .map(|v| v.len)
        .fold(0u64, u64::saturating_add)
        .min(STEP as u64) as usize;
    let mut buf = vec![0u8; total];
    let intr = t.interrupt().io.clone();
    let got = s.recv(
        &io_ctx(f, &intr, flags),
        &mut buf,
        flags & libc::MSG_PEEK != 0,
        flags & libc::MSG_WAITALL != 0,
    )?;
    t.mm().copy_out_iovecs(iovs, &buf[..got.copied])?;
    let mut msg_flags = flags & libc::MSG_CMSG_CLOEXEC;
    if got.truncated {
        msg_flags |= libc::MSG_TRUNC;
    }
    // Linux's ping_recvmsg returns what it copied, MSG_TRUNC or not.
    let ret = if flags & libc::MSG_TRUNC != 0 && s.proto() == Proto::Udp {
        got.full_len
    } else {
        got.copied
    };
    let name = got
        .from
        .map(|a| addr::to_sockaddr(a, s.family()))
        .unwrap_or_default();
    Ok((ret as u64, msg_flags, name))
}

pub(super) fn getsockopt(t: &mut Task, s: &InetSocket, a: &Args) -> SysResult {
    let (level, name) = (a.int(1), a.int(2));
    let (val, lenp) = (a.addr(3), a.addr(4));
    let mut b = [0u8; 4];
    t.mm().copy_in(lenp, &mut b)?;
    let len = usize::try_from(i32::from_ne_bytes(b)).map_err(|_| Errno::EINVAL)?;
    let bytes = s.getsockopt(level, name)?;
    let n = len.min(bytes.len());
    if n > 0 {
        t.mm().copy_out(val, &bytes[..n])?;
    }
    t.mm().copy_out(lenp, &(n as i32).to_ne_bytes())?;
    Ok(0)
}

pub(super) fn setsockopt(t: &mut Task, s: &InetSocket, a: &Args) -> SysResult {
    let (level, name) = (a.int(1), a.int(2));
    let len = usize::try_from(a.int(4)).map_err(|_| Errno::EINVAL)?;
    let mut raw = vec![0u8; len.min(64)];
    if !raw.is_empty() {
        t.mm().copy_in(a.addr(3), &mut raw)?;
    }
    s.setsockopt(level, name, &raw)?;
    Ok(0)
}
