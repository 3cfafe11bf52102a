//! Sockets (gVisor's sys_socket.go, Linux's net/socket.c): the handlers
//! read and check the application's arguments (socket addresses, msghdr,
//! iovecs, control messages, option values), call the socket objects of
//! sentry/src/net, and write the results back. AF_UNIX is here, AF_INET
//! and AF_INET6 in [`inet`], AF_NETLINK (NETLINK_ROUTE) in [`netlink`]
//! (each handler hands such a socket's call over); every other family is
//! EAFNOSUPPORT, logged once.

use std::sync::Arc;

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;
use crate::mm::IoVec;
use crate::net::control::{self, RecvControl, OPTMEM_MAX};
use crate::net::unix::{unnamed_sockaddr, Incoming, Outgoing, MAX_BUF, MIN_RCVBUF, MIN_SNDBUF};
use crate::net::{socket_of, SockType, SocketFile, UCred, UnixAddr, UnixSocket};
use crate::vfs::{Interrupt, IoCtx, OpenFile};

#[path = "net_inet.rs"]
mod inet;
#[path = "net_netlink.rs"]
mod netlink;

const SOCK_TYPE_MASK: i32 = 0xf;
/// Linux's SOCK_MAX: type numbers at or past it are EINVAL.
const SOCK_MAX: i32 = 11;
/// Linux's AF_MAX: families at or past it are EAFNOSUPPORT.
const AF_MAX: i32 = 46;
/// `sizeof(struct sockaddr_storage)`: the longest address a call copies.
const SOCKADDR_STORAGE: usize = 128;
/// `sizeof(struct msghdr)` on 64-bit.
const MSGHDR_SIZE: usize = 56;
/// Linux's UIO_MAXIOV.
const UIO_MAXIOV: u64 = 1024;
/// One send or receive moves at most this much per step through the
/// Sentry's memory (a stream send continues step by step).
const STEP: usize = 4 << 20;

/// getpeername, getsockname, getsockopt, shutdown, ... on `fd`: EBADF for
/// no descriptor, ENOTSOCK for one that is not a socket.
fn sock(t: &Task, fd: i32) -> Result<(Arc<OpenFile>, Arc<UnixSocket>), Errno> {
    let f = t.fds().lock().file(fd)?;
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    let s = socket_of(&f)?;
    Ok((f, s))
}

/// SIOCGIFCONF on a socket of any family (its `struct ifconf` points at
/// the application's buffer, so the handler writes it here): `lo` and
/// 127.0.0.1, the one IPv4 interface; with no buffer, the length it
/// needs. None: not this ioctl, or not a socket.
pub fn ifconf(t: &mut Task, f: &OpenFile, cmd: u64, arg: u64) -> Option<SysResult> {
    use crate::net::inet::procnet::IFREQ_SIZE;
    if cmd != libc::SIOCGIFCONF || f.kind() != crate::vfs::FileKind::Socket {
        return None;
    }
    let run = || -> SysResult {
        // struct ifconf { int ifc_len; /* pad */; char *ifc_buf; }
        let mut b = [0u8; 16];
        t.mm().copy_in(arg, &mut b)?;
        let len = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let buf = u64::from_ne_bytes(b[8..16].try_into().map_err(|_| Errno::EFAULT)?);
        let mut req = [0u8; IFREQ_SIZE];
        req[..2].copy_from_slice(b"lo");
        req[16..18].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        req[20..24].copy_from_slice(&[127, 0, 0, 1]);
        let written = if buf == 0 {
            IFREQ_SIZE
        } else if usize::try_from(len).is_ok_and(|l| l >= IFREQ_SIZE) {
            t.mm().copy_out(buf, &req)?;
            IFREQ_SIZE
        } else {
            0
        };
        t.mm().copy_out(arg, &(written as i32).to_ne_bytes())?;
        Ok(0)
    };
    Some(run())
}

/// EBADF or ENOTSOCK unless `fd` is a socket of any family.
fn any_socket(t: &Task, fd: i32) -> Result<(), Errno> {
    if inet::lookup(t, fd)?.is_some() || netlink::lookup(t, fd)?.is_some() {
        return Ok(());
    }
    sock(t, fd).map(|_| ())
}

fn install(t: &mut Task, f: Arc<OpenFile>, cloexec: bool) -> Result<i32, Errno> {
    let limit = t.nofile_limit();
    t.fds().lock().insert(f, cloexec, limit)
}

/// The caller as SCM_CREDENTIALS names it (real ids).
fn scm_cred(t: &Task) -> UCred {
    let c = t.creds();
    UCred {
        pid: t.tgid(),
        uid: c.uid,
        gid: c.gid,
    }
}

/// The caller as SO_PEERCRED names it (effective ids).
fn peer_cred(t: &Task) -> UCred {
    let c = t.creds();
    UCred {
        pid: t.tgid(),
        uid: c.euid,
        gid: c.egid,
    }
}

fn family_name(domain: i32) -> String {
    match domain {
        libc::AF_INET => "AF_INET".into(),
        libc::AF_INET6 => "AF_INET6".into(),
        libc::AF_NETLINK => "AF_NETLINK".into(),
        libc::AF_PACKET => "AF_PACKET".into(),
        libc::AF_ALG => "AF_ALG".into(),
        libc::AF_VSOCK => "AF_VSOCK".into(),
        d => format!("family {d}"),
    }
}

/// socket/socketpair's type and family checks, in Linux's order: flags,
/// family range, type range, family, protocol, type.
fn unix_type(
    t: &Task,
    call: &str,
    domain: i32,
    ty: i32,
    proto: i32,
) -> Result<(SockType, i32), Errno> {
    let flags = ty & !SOCK_TYPE_MASK;
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if !(0..AF_MAX).contains(&domain) {
        return Err(Errno::EAFNOSUPPORT);
    }
    let base = ty & SOCK_TYPE_MASK;
    if base >= SOCK_MAX {
        return Err(Errno::EINVAL);
    }
    if domain != libc::AF_UNIX {
        // As a kernel built without the family; said once.
        if let Some(nr) = crate::arch::syscall_number(call) {
            t.kernel().log_unsupported(nr, &family_name(domain));
        }
        return Err(Errno::EAFNOSUPPORT);
    }
    if proto != 0 && proto != libc::AF_UNIX {
        return Err(Errno::EPROTONOSUPPORT);
    }
    let st = match base {
        libc::SOCK_RAW => SockType::Dgram,
        b => SockType::from_raw(b).ok_or(Errno::ESOCKTNOSUPPORT)?,
    };
    Ok((st, flags))
}

fn status(flags: i32) -> i32 {
    if flags & libc::SOCK_NONBLOCK != 0 {
        libc::O_NONBLOCK
    } else {
        0
    }
}

pub fn socket(t: &mut Task, a: &Args) -> SysResult {
    if let Some(fam) = crate::net::inet::Family::from_raw(a.int(0)) {
        return inet::socket(t, fam, a.int(1), a.int(2));
    }
    if a.int(0) == libc::AF_NETLINK {
        return netlink::socket(t, a.int(1), a.int(2));
    }
    let (ty, flags) = unix_type(t, "socket", a.int(0), a.int(1), a.int(2))?;
    let s = UnixSocket::new(&t.kernel().unix, ty, None);
    let f = SocketFile::open(s, status(flags));
    install(t, f, flags & libc::SOCK_CLOEXEC != 0).map(|fd| fd as u64)
}

pub fn socketpair(t: &mut Task, a: &Args) -> SysResult {
    if let Some(fam) = crate::net::inet::Family::from_raw(a.int(0)) {
        return inet::socketpair(t, fam, a.int(1), a.int(2));
    }
    let (ty, flags) = unix_type(t, "socketpair", a.int(0), a.int(1), a.int(2))?;
    let (x, y) = UnixSocket::pair(&t.kernel().unix, ty, peer_cred(t));
    let cloexec = flags & libc::SOCK_CLOEXEC != 0;
    let fx = install(t, SocketFile::open(x, status(flags)), cloexec)?;
    let fy = match install(t, SocketFile::open(y, status(flags)), cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = t.fds().lock().remove(fx);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&fx.to_ne_bytes());
    out[4..].copy_from_slice(&fy.to_ne_bytes());
    if let Err(e) = t.mm().copy_out(a.addr(3), &out) {
        let _ = t.fds().lock().remove(fx);
        let _ = t.fds().lock().remove(fy);
        return Err(e);
    }
    Ok(0)
}

/// move_addr_to_kernel: a socket address of `len` bytes (EINVAL for a
/// negative or too long one, EFAULT for a bad pointer).
fn read_sockaddr(t: &Task, addr: u64, len: i32) -> Result<Vec<u8>, Errno> {
    let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
    if len > SOCKADDR_STORAGE {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; len];
    if len > 0 {
        t.mm().copy_in(addr, &mut raw)?;
    }
    Ok(raw)
}

/// move_addr_to_user: copies as much of `sa` as the application's length
/// at `lenp` allows and writes the whole length there.
fn write_sockaddr(t: &Task, addr: u64, lenp: u64, sa: &[u8]) -> Result<(), Errno> {
    if addr == 0 || lenp == 0 {
        return Ok(());
    }
    let mut b = [0u8; 4];
    t.mm().copy_in(lenp, &mut b)?;
    let have = usize::try_from(i32::from_ne_bytes(b)).map_err(|_| Errno::EINVAL)?;
    let n = have.min(sa.len());
    if n > 0 {
        t.mm().copy_out(addr, &sa[..n])?;
    }
    t.mm().copy_out(lenp, &(sa.len() as i32).to_ne_bytes())
}

/// Where a name is looked up from (a relative path: the cwd).
fn start(t: &Task, path: &[u8]) -> Result<Arc<crate::vfs::Dentry>, Errno> {
    super::fs::start_dir(t, libc::AT_FDCWD, path)
}

pub fn bind(t: &mut Task, a: &Args) -> SysResult {
    if let Some((_, s)) = inet::lookup(t, a.fd(0))? {
        return inet::bind(t, &s, a);
    }
    if let Some((_, s)) = netlink::lookup(t, a.fd(0))? {
        return netlink::bind(t, &s, a);
    }
    let (_, s) = sock(t, a.fd(0))?;
    let raw = read_sockaddr(t, a.addr(1), a.int(2))?;
    match UnixAddr::parse(&raw)? {
        // An autobind of a socket that has a name already succeeds.
        None if s.local_addr().is_some() => {}
        None => s.bind_abstract(None)?,
        Some(UnixAddr::Abstract(n)) => s.bind_abstract(Some(n))?,
        Some(UnixAddr::Path(p)) => {
            let dir = start(t, &p)?;
            let mode = 0o777 & !t.umask();
            s.bind_path(&t.kernel().vfs, &dir, &p, mode)?;
        }
    }
    Ok(0)
}

pub fn listen(t: &mut Task, a: &Args) -> SysResult {
    if let Some((_, s)) = inet::lookup(t, a.fd(0))? {
        return inet::listen(&s, a);
    }
    if netlink::lookup(t, a.fd(0))?.is_some() {
        return Err(Errno::EOPNOTSUPP);
    }
    let (_, s) = sock(t, a.fd(0))?;
    s.listen(a.int(1), peer_cred(t))?;
    Ok(0)
}

fn io_ctx<'a>(f: &OpenFile, intr: &'a Interrupt, flags: i32) -> IoCtx<'a> {
    IoCtx {
        interrupt: intr,
        nonblock: f.status_flags() & libc::O_NONBLOCK != 0 || flags & libc::MSG_DONTWAIT != 0,
    }
}

/// The socket a name names, for connect and sendto.
fn lookup(t: &Task, s: &UnixSocket, raw: &[u8]) -> Result<Arc<UnixSocket>, Errno> {
    let addr = UnixAddr::parse(raw)?.ok_or(Errno::EINVAL)?;
    let dir = match &addr {
        UnixAddr::Path(p) => start(t, p)?,
        UnixAddr::Abstract(_) => t.cwd(),
    };
    t.kernel().unix.lookup(&t.kernel().vfs, &dir, &addr, s.ty())
}

pub fn connect(t: &mut Task, a: &Args) -> SysResult {
    if let Some((f, s)) = inet::lookup(t, a.fd(0))? {
        return inet::connect(t, &f, &s, a);
    }
    if netlink::lookup(t, a.fd(0))?.is_some() {
        return netlink::connect(t, a);
    }
    let (f, s) = sock(t, a.fd(0))?;
    let raw = read_sockaddr(t, a.addr(1), a.int(2))?;
    if s.ty() == SockType::Dgram {
        if raw.len() < 2 {
            return Err(Errno::EINVAL);
        }
        if u16::from_ne_bytes([raw[0], raw[1]]) == libc::AF_UNSPEC as u16 {
            s.connect_dgram(None)?;
            return Ok(0);
        }
    }
    let target = lookup(t, &s, &raw)?;
    if s.ty() == SockType::Dgram {
        let passcred = s.with_options(|o| o.passcred);
        if passcred && s.local_addr().is_none() {
            s.bind_abstract(None)?;
        }
        s.connect_dgram(Some(&target))?;
        return Ok(0);
    }
    let intr = t.interrupt().io.clone();
    s.connect(&io_ctx(&f, &intr, 0), &target, peer_cred(t))?;
    Ok(0)
}

fn do_accept(t: &mut Task, a: &Args, flags: i32) -> SysResult {
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if let Some((f, s)) = inet::lookup(t, a.fd(0))? {
        return inet::accept(t, &f, &s, a, flags);
    }
    if netlink::lookup(t, a.fd(0))?.is_some() {
        return Err(Errno::EOPNOTSUPP);
    }
    let (f, s) = sock(t, a.fd(0))?;
    let intr = t.interrupt().io.clone();
    let conn = s.accept(&io_ctx(&f, &intr, 0))?;
    let peer = conn
        .peer_addr()
        .ok()
        .flatten()
        .map(|p| p.to_sockaddr())
        .unwrap_or_else(unnamed_sockaddr);
    let file = SocketFile::open(conn, status(flags));
    // The address goes out before the descriptor exists: a bad pointer
    // loses the connection, as on Linux.
    write_sockaddr(t, a.addr(1), a.addr(2), &peer)?;
    install(t, file, flags & libc::SOCK_CLOEXEC != 0).map(|fd| fd as u64)
}

pub fn accept(t: &mut Task, a: &Args) -> SysResult {
    do_accept(t, a, 0)
}

pub fn accept4(t: &mut Task, a: &Args) -> SysResult {
    do_accept(t, a, a.int(3))
}

pub fn getsockname(t: &mut Task, a: &Args) -> SysResult {
    if let Some((_, s)) = inet::lookup(t, a.fd(0))? {
        return inet::getsockname(t, &s, a);
    }
    if let Some((_, s)) = netlink::lookup(t, a.fd(0))? {
        return netlink::getsockname(t, &s, a);
    }
    let (_, s) = sock(t, a.fd(0))?;
    let sa = s
        .local_addr()
        .map(|x| x.to_sockaddr())
        .unwrap_or_else(unnamed_sockaddr);
    check_len_ptr(t, a.addr(2))?;
    write_sockaddr(t, a.addr(1), a.addr(2), &sa)?;
    Ok(0)
}

pub fn getpeername(t: &mut Task, a: &Args) -> SysResult {
    if let Some((_, s)) = inet::lookup(t, a.fd(0))? {
        return inet::getpeername(t, &s, a);
    }
    if netlink::lookup(t, a.fd(0))?.is_some() {
        return netlink::getpeername(t, a);
    }
    let (_, s) = sock(t, a.fd(0))?;
    let sa = s
        .peer_addr()?
        .map(|x| x.to_sockaddr())
        .unwrap_or_else(unnamed_sockaddr);
    check_len_ptr(t, a.addr(2))?;
    write_sockaddr(t, a.addr(1), a.addr(2), &sa)?;
    Ok(0)
}

/// getsockname/getpeername read the length first: EFAULT for a bad
/// pointer, EINVAL for a negative length.
fn check_len_ptr(t: &Task, lenp: u64) -> Result<(), Errno> {
    let mut b = [0u8; 4];
    t.mm().copy_in(lenp, &mut b)?;
    if i32::from_ne_bytes(b) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

pub fn shutdown(t: &mut Task, a: &Args) -> SysResult {
    let found = inet::lookup(t, a.fd(0))?;
    let how = a.int(1);
    if let Some((_, s)) = found {
        if !(libc::SHUT_RD..=libc::SHUT_RDWR).contains(&how) {
            return Err(Errno::EINVAL);
        }
        return inet::shutdown(&s, how);
    }
    if netlink::lookup(t, a.fd(0))?.is_some() {
        return if (libc::SHUT_RD..=libc::SHUT_RDWR).contains(&how) {
            Ok(0)
        } else {
            Err(Errno::EINVAL)
        };
    }
    let (_, s) = sock(t, a.fd(0))?;
    if !(libc::SHUT_RD..=libc::SHUT_RDWR).contains(&how) {
        return Err(Errno::EINVAL);
    }
    s.shutdown(how)?;
    Ok(0)
}

/// SIGPIPE for a stream's EPIPE, unless MSG_NOSIGNAL (Linux's send_sig
/// from the sending task).
fn sigpipe(t: &mut Task, s: &UnixSocket, flags: i32, r: SysResult) -> SysResult {
    if r == Err(Errno::EPIPE) && s.ty() == SockType::Stream && flags & libc::MSG_NOSIGNAL == 0 {
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

/// Drops the first `n` bytes of `iovs`.
fn advance(iovs: &mut Vec<IoVec>, mut n: u64) {
    while n > 0 && !iovs.is_empty() {
        if iovs[0].len <= n {
            n -= iovs[0].len;
            iovs.remove(0);
        } else {
            iovs[0].base += n;
            iovs[0].len -= n;
            n = 0;
        }
    }
}

/// The files SCM_RIGHTS names: EBADF for a descriptor that is not open
/// (or is O_PATH).
fn rights(t: &Task, fds: &[i32]) -> Result<Vec<Arc<OpenFile>>, Errno> {
    let fds_ref = t.fds();
    let table = fds_ref.lock();
    fds.iter()
        .map(|&fd| {
            let f = table.file(fd)?;
            if f.is_path() {
                return Err(Errno::EBADF);
            }
            Ok(f)
        })
        .collect()
}

/// SCM_CREDENTIALS a sender claims: its own pid and one of its ids,
/// unless it holds CAP_SYS_ADMIN (any pid), CAP_SETUID (any uid),
/// CAP_SETGID (any gid); EPERM otherwise (Linux's scm_check_creds).
fn check_cred(t: &Task, c: UCred) -> Result<UCred, Errno> {
    use crate::kernel::creds::{CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN};
    let me = t.creds();
    let pid_ok = c.pid == t.tgid() || me.capable(CAP_SYS_ADMIN);
    let uid_ok = [me.uid, me.euid, me.suid].contains(&c.uid) || me.capable(CAP_SETUID);
    let gid_ok = [me.gid, me.egid, me.sgid].contains(&c.gid) || me.capable(CAP_SETGID);
    if pid_ok && uid_ok && gid_ok {
        Ok(c)
    } else {
        Err(Errno::EPERM)
    }
}

/// What sendto and sendmsg share.
struct Send {
    iovs: Vec<IoVec>,
    to: Vec<u8>,
    control: Vec<u8>,
    flags: i32,
}

fn do_send(t: &mut Task, fd: i32, req: Send) -> SysResult {
    if let Some((f, s)) = inet::lookup(t, fd)? {
        // Control messages (IP_PKTINFO, IP_TOS...) are not taken: the
        // data goes without them.
        return inet::send(t, &f, &s, req.iovs, &req.to, req.flags);
    }
    if let Some((_, s)) = netlink::lookup(t, fd)? {
        return netlink::send(t, &s, &req.iovs, &req.to);
    }
    let (f, s) = sock(t, fd)?;
    let flags = req.flags;
    if flags & libc::MSG_OOB != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let ctl = control::parse(&req.control)?;
    let files = rights(t, &ctl.fds)?;
    let cred = match ctl.cred {
        Some(c) => check_cred(t, c)?,
        None => scm_cred(t),
    };
    let target = if req.to.is_empty() {
        None
    } else {
        match s.ty() {
            SockType::Stream => {
                return Err(if s.peer_addr().is_ok() {
                    Errno::EISCONN
                } else {
                    Errno::EOPNOTSUPP
                })
            }
            SockType::SeqPacket => None,
            SockType::Dgram => Some(lookup(t, &s, &req.to)?),
        }
    };
    let total = req
        .iovs
        .iter()
        .map(|v| v.len)
        .fold(0u64, u64::saturating_add);
    let intr = t.interrupt().io.clone();
    let io = io_ctx(&f, &intr, flags);
    if s.ty() != SockType::Stream {
        if total > MAX_BUF as u64 {
            return Err(Errno::EMSGSIZE);
        }
        let data = t.mm().copy_in_iovecs(&req.iovs, total as usize)?;
        if (data.len() as u64) < total {
            return Err(Errno::EFAULT);
        }
        let r = s
            .send(
                &io,
                Outgoing {
                    data,
                    rights: files,
                    cred,
                },
                target,
            )
            .map(|n| n as u64);
        return sigpipe(t, &s, flags, r);
    }
    // A stream send goes step by step; the files go with the first.
    let mut iovs = req.iovs;
    let mut files = Some(files);
    let mut done = 0u64;
    loop {
        let want = (total - done).min(STEP as u64) as usize;
        let data = match t.mm().copy_in_iovecs(&iovs, want) {
            Ok(d) => d,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let got = data.len();
        let msg = Outgoing {
            data,
            rights: files.take().unwrap_or_default(),
            cred,
        };
        match s.send(&io, msg, None) {
            Ok(n) => {
                done += n as u64;
                advance(&mut iovs, n as u64);
                if n < got || done >= total || got < want {
                    break;
                }
            }
            Err(e) if done == 0 => return sigpipe(t, &s, flags, Err(e)),
            Err(_) => break,
        }
    }
    Ok(done)
}

pub fn sendto(t: &mut Task, a: &Args) -> SysResult {
    let len = a.raw(2).min(i32::MAX as u64 & !0xfff);
    let to = if a.addr(4) != 0 {
        read_sockaddr(t, a.addr(4), a.int(5))?
    } else {
        Vec::new()
    };
    let req = Send {
        iovs: vec![IoVec {
            base: a.addr(1),
            len,
        }],
        to,
        control: Vec::new(),
        flags: a.int(3),
    };
    do_send(t, a.fd(0), req)
}

/// A `struct msghdr` as read from the application.
struct MsgHdr {
    name: u64,
    namelen: i32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(t: &Task, addr: u64) -> Result<MsgHdr, Errno> {
    let mut b = [0u8; MSGHDR_SIZE];
    t.mm().copy_in(addr, &mut b)?;
    let q = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let h = MsgHdr {
        name: q(0),
        namelen: i32::from_ne_bytes(b[8..12].try_into().unwrap_or([0; 4])),
        iov: q(16),
        iovlen: q(24),
        control: q(32),
        controllen: q(40),
    };
    if h.iovlen > UIO_MAXIOV {
        return Err(Errno::EMSGSIZE);
    }
    Ok(h)
}

pub fn sendmsg(t: &mut Task, a: &Args) -> SysResult {
    sendmsg_at(t, a.fd(0), a.addr(1), a.int(2))
}

fn sendmsg_at(t: &mut Task, fd: i32, at: u64, flags: i32) -> SysResult {
    let h = read_msghdr(t, at)?;
    let to = if h.name != 0 && h.namelen != 0 {
        if h.namelen < 0 {
            return Err(Errno::EINVAL);
        }
        read_sockaddr(t, h.name, h.namelen.min(SOCKADDR_STORAGE as i32))?
    } else {
        Vec::new()
    };
    if h.controllen > i32::MAX as u64 || h.controllen as usize > OPTMEM_MAX {
        return Err(Errno::ENOBUFS);
    }
    let mut ctl = vec![0u8; h.controllen as usize];
    if !ctl.is_empty() {
        t.mm().copy_in(h.control, &mut ctl)?;
    }
    let iovs = t.mm().read_iovecs(h.iov, h.iovlen)?;
    do_send(
        t,
        fd,
        Send {
            iovs,
            to,
            control: ctl,
            flags,
        },
    )
}

/// What a receive hands back to the application besides the data.
struct Received {
    ret: u64,
    msg_flags: i32,
    name: Vec<u8>,
    control: Vec<u8>,
}

fn do_recv(
    t: &mut Task,
    fd: i32,
    iovs: &[IoVec],
    flags: i32,
    control_space: Option<usize>,
) -> Result<Received, Errno> {
    if let Some((f, s)) = inet::lookup(t, fd)? {
        let (ret, msg_flags, name) = inet::recv(t, &f, &s, iovs, flags)?;
        return Ok(Received {
            ret,
            msg_flags,
            name,
            control: Vec::new(),
        });
    }
    if let Some((f, s)) = netlink::lookup(t, fd)? {
        let (ret, msg_flags, name) = netlink::recv(t, &f, &s, iovs, flags)?;
        return Ok(Received {
            ret,
            msg_flags,
            name,
            control: Vec::new(),
        });
    }
    let (f, s) = sock(t, fd)?;
    if flags & libc::MSG_OOB != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let total = iovs
        .iter()
        .map(|v| v.len)
        .fold(0u64, u64::saturating_add)
        .min(STEP as u64) as usize;
    let mut buf = vec![0u8; total];
    let intr = t.interrupt().io.clone();
    let got: Incoming = s.recv(
        &io_ctx(&f, &intr, flags),
        &mut buf,
        flags & libc::MSG_PEEK != 0,
        flags & libc::MSG_WAITALL != 0,
    )?;
    t.mm().copy_out_iovecs(iovs, &buf[..got.copied])?;
    let mut ctl = RecvControl::new(control_space.unwrap_or(0));
    if s.with_options(|o| o.passcred) {
        ctl.put_cred(got.cred.unwrap_or_default());
    }
    if !got.rights.is_empty() {
        let room = ctl.rights_room(got.rights.len());
        let cloexec = flags & libc::MSG_CMSG_CLOEXEC != 0;
        let mut fds = Vec::new();
        // Installed until one does not fit (RLIMIT_NOFILE); the rest are
        // dropped, closing them, and MSG_CTRUNC says so.
        for file in got.rights.iter().take(room) {
            match install(t, file.clone(), cloexec) {
                Ok(fd) => fds.push(fd),
                Err(_) => break,
            }
        }
        ctl.put_rights(&fds, got.rights.len());
    }
    let mut msg_flags = flags & libc::MSG_CMSG_CLOEXEC;
    if got.truncated {
        msg_flags |= libc::MSG_TRUNC;
    }
    if ctl.truncated {
        msg_flags |= libc::MSG_CTRUNC;
    }
    let ret = if flags & libc::MSG_TRUNC != 0 && s.ty() != SockType::Stream {
        got.full_len
    } else {
        got.copied
    };
    Ok(Received {
        ret: ret as u64,
        msg_flags,
        name: got.from.map(|a| a.to_sockaddr()).unwrap_or_default(),
        control: ctl.bytes,
    })
}

pub fn recvfrom(t: &mut Task, a: &Args) -> SysResult {
    let len = a.raw(2).min(i32::MAX as u64);
    let iovs = [IoVec {
        base: a.addr(1),
        len,
    }];
    let r = do_recv(t, a.fd(0), &iovs, a.int(3), None)?;
    if a.addr(4) != 0 {
        write_sockaddr(t, a.addr(4), a.addr(5), &r.name)?;
    }
    Ok(r.ret)
}

pub fn recvmsg(t: &mut Task, a: &Args) -> SysResult {
    recvmsg_at(t, a.fd(0), a.addr(1), a.int(2))
}

fn recvmsg_at(t: &mut Task, fd: i32, at: u64, flags: i32) -> SysResult {
    let h = read_msghdr(t, at)?;
    if h.name != 0 && h.namelen < 0 {
        return Err(Errno::EINVAL);
    }
    let iovs = t.mm().read_iovecs(h.iov, h.iovlen)?;
    let space = usize::try_from(h.controllen).unwrap_or(usize::MAX);
    let space = if h.control == 0 { 0 } else { space };
    let r = do_recv(t, fd, &iovs, flags, Some(space))?;
    let namelen = if h.name != 0 {
        let n = r.name.len().min(h.namelen as usize);
        if n > 0 {
            t.mm().copy_out(h.name, &r.name[..n])?;
        }
        r.name.len() as u32
    } else {
        0
    };
    if !r.control.is_empty() {
        t.mm().copy_out(h.control, &r.control)?;
    }
    t.mm().copy_out(at + 8, &namelen.to_ne_bytes())?;
    t.mm()
        .copy_out(at + 40, &(r.control.len() as u64).to_ne_bytes())?;
    t.mm().copy_out(at + 48, &r.msg_flags.to_ne_bytes())?;
    Ok(r.ret)
}

/// `sizeof(struct mmsghdr)`: a msghdr and the count the call writes.
const MMSGHDR_SIZE: u64 = 64;

/// sendmmsg(2): sendmsg for each entry, writing its msg_len; stops at the
/// first error, which is returned only if nothing was sent.
pub fn sendmmsg(t: &mut Task, a: &Args) -> SysResult {
    let (fd, vec, flags) = (a.fd(0), a.addr(1), a.int(3));
    any_socket(t, fd)?;
    let vlen = u64::from(a.uint(2)).min(UIO_MAXIOV);
    let mut done = 0u64;
    while done < vlen {
        let at = vec + done * MMSGHDR_SIZE;
        match sendmsg_at(t, fd, at, flags) {
            Ok(n) => {
                if let Err(e) = t.mm().copy_out(at + 56, &(n as u32).to_ne_bytes()) {
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
                done += 1;
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// recvmmsg(2): recvmsg for each entry; MSG_WAITFORONE makes the entries
/// after the first non-blocking, and a timeout ends the call once it has
/// passed after a message (as Linux checks it). Stops at the first error,
/// returned only if nothing was received.
pub fn recvmmsg(t: &mut Task, a: &Args) -> SysResult {
    let (fd, vec, flags) = (a.fd(0), a.addr(1), a.int(3));
    any_socket(t, fd)?;
    let deadline = if a.addr(4) != 0 {
        let mut b = [0u8; 16];
        t.mm().copy_in(a.addr(4), &mut b)?;
        let sec = i64::from_ne_bytes(b[..8].try_into().map_err(|_| Errno::EINVAL)?);
        let nsec = i64::from_ne_bytes(b[8..].try_into().map_err(|_| Errno::EINVAL)?);
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(Errno::EINVAL);
        }
        let d = std::time::Duration::new(sec as u64, nsec as u32);
        Some(
            std::time::Instant::now()
                .checked_add(d)
                .ok_or(Errno::EINVAL)?,
        )
    } else {
        None
    };
    let vlen = u64::from(a.uint(2)).min(UIO_MAXIOV);
    let mut done = 0u64;
    let mut flags = flags;
    while done < vlen {
        let at = vec + done * MMSGHDR_SIZE;
        let one = flags & !libc::MSG_WAITFORONE;
        match recvmsg_at(t, fd, at, one) {
            Ok(n) => {
                if let Err(e) = t.mm().copy_out(at + 56, &(n as u32).to_ne_bytes()) {
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
                done += 1;
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
        if flags & libc::MSG_WAITFORONE != 0 {
            flags |= libc::MSG_DONTWAIT;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
    }
    Ok(done)
}

// ---- options ----

const SO_REUSEADDR: i32 = libc::SO_REUSEADDR;

fn timeval_bytes(d: Option<std::time::Duration>) -> Vec<u8> {
    let d = d.unwrap_or_default();
    let mut v = (d.as_secs() as i64).to_ne_bytes().to_vec();
    v.extend_from_slice(&i64::from(d.subsec_micros()).to_ne_bytes());
    v
}

pub fn getsockopt(t: &mut Task, a: &Args) -> SysResult {
    if let Some((_, s)) = inet::lookup(t, a.fd(0))? {
        return inet::getsockopt(t, &s, a);
    }
    if let Some((_, s)) = netlink::lookup(t, a.fd(0))? {
        return netlink::getsockopt(t, &s, a);
    }
    let (_, s) = sock(t, a.fd(0))?;
    let (level, name) = (a.int(1), a.int(2));
    let (val, lenp) = (a.addr(3), a.addr(4));
    let mut b = [0u8; 4];
    t.mm().copy_in(lenp, &mut b)?;
    let len = usize::try_from(i32::from_ne_bytes(b)).map_err(|_| Errno::EINVAL)?;
    if level != libc::SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    let int = |v: i32| v.to_ne_bytes().to_vec();
    let bytes = match name {
        libc::SO_TYPE => int(s.ty().raw()),
        libc::SO_DOMAIN => int(libc::AF_UNIX),
        libc::SO_PROTOCOL => int(0),
        libc::SO_ERROR => int(s.take_error()),
        libc::SO_ACCEPTCONN => int(s.is_listening() as i32),
        libc::SO_PASSCRED => int(s.with_options(|o| o.passcred) as i32),
        libc::SO_SNDBUF => int(s.with_options(|o| o.sndbuf) as i32),
        libc::SO_RCVBUF => int(s.with_options(|o| o.rcvbuf) as i32),
        SO_REUSEADDR | libc::SO_KEEPALIVE | libc::SO_BROADCAST | libc::SO_REUSEPORT => int(0),
        libc::SO_PEERCRED => s.peer_cred().to_bytes().to_vec(),
        libc::SO_RCVTIMEO => timeval_bytes(s.with_options(|o| o.rcvtimeo)),
        libc::SO_SNDTIMEO => timeval_bytes(s.with_options(|o| o.sndtimeo)),
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let n = len.min(bytes.len());
    if n > 0 {
        t.mm().copy_out(val, &bytes[..n])?;
    }
    t.mm().copy_out(lenp, &(n as i32).to_ne_bytes())?;
    Ok(0)
}

/// SO_RCVTIMEO/SO_SNDTIMEO's `struct timeval`: None for zero (no
/// timeout), EDOM for microseconds out of range; a negative time is zero.
fn read_timeout(raw: &[u8]) -> Result<Option<std::time::Duration>, Errno> {
    let sec = i64::from_ne_bytes(raw[..8].try_into().map_err(|_| Errno::EINVAL)?);
    let usec = i64::from_ne_bytes(raw[8..16].try_into().map_err(|_| Errno::EINVAL)?);
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    if sec < 0 || (sec == 0 && usec == 0) {
        return Ok(None);
    }
    Ok(Some(
        std::time::Duration::from_secs(sec as u64) + std::time::Duration::from_micros(usec as u64),
    ))
}

pub fn setsockopt(t: &mut Task, a: &Args) -> SysResult {
    if let Some((_, s)) = inet::lookup(t, a.fd(0))? {
        return inet::setsockopt(t, &s, a);
    }
    if let Some((_, s)) = netlink::lookup(t, a.fd(0))? {
        return netlink::setsockopt(t, &s, a);
    }
    let (_, s) = sock(t, a.fd(0))?;
    let (level, name) = (a.int(1), a.int(2));
    let len = usize::try_from(a.int(4)).map_err(|_| Errno::EINVAL)?;
    if level != libc::SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    let mut raw = vec![0u8; len.min(64)];
    if !raw.is_empty() {
        t.mm().copy_in(a.addr(3), &mut raw)?;
    }
    let int = || -> Result<i32, Errno> {
        let b: [u8; 4] = raw
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(Errno::EINVAL)?;
        Ok(i32::from_ne_bytes(b))
    };
    match name {
        libc::SO_PASSCRED => {
            let v = int()? != 0;
            s.with_options(|o| o.passcred = v);
        }
        libc::SO_SNDBUF | libc::SO_SNDBUFFORCE => {
            // As Linux: the value is unsigned (a negative one is huge),
            // capped at wmem_max, then doubled for bookkeeping.
            let v = (int()? as u32 as usize).min(MAX_BUF / 2) * 2;
            s.with_options(|o| o.sndbuf = v.max(MIN_SNDBUF));
        }
        libc::SO_RCVBUF | libc::SO_RCVBUFFORCE => {
            let v = (int()? as u32 as usize).min(MAX_BUF / 2) * 2;
            s.with_options(|o| o.rcvbuf = v.max(MIN_RCVBUF));
        }
        libc::SO_RCVTIMEO | libc::SO_SNDTIMEO => {
            if raw.len() < 16 {
                return Err(Errno::EINVAL);
            }
            let d = read_timeout(&raw)?;
            if name == libc::SO_RCVTIMEO {
                s.with_options(|o| o.rcvtimeo = d);
            } else {
                s.with_options(|o| o.sndtimeo = d);
            }
        }
        // Accepted and meaningless for unix sockets.
        SO_REUSEADDR | libc::SO_KEEPALIVE | libc::SO_BROADCAST | libc::SO_REUSEPORT => {
            int()?;
        }
        libc::SO_TYPE
        | libc::SO_DOMAIN
        | libc::SO_PROTOCOL
        | libc::SO_ERROR
        | libc::SO_ACCEPTCONN
        | libc::SO_PEERCRED => return Err(Errno::ENOPROTOOPT),
        _ => return Err(Errno::ENOPROTOOPT),
    }
    Ok(0)
}
