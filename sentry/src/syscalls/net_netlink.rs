//! The socket calls on AF_NETLINK sockets (NETLINK_ROUTE only): the
//! handlers of net.rs hand a netlink socket's call over here.

use std::sync::Arc;

use super::{install, io_ctx, read_sockaddr, status, write_sockaddr, Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;
use crate::mm::IoVec;
use crate::net::netlink::{self, NetlinkFile, NetlinkSocket};
use crate::vfs::OpenFile;

const SOCK_TYPE_MASK: i32 = 0xf;

/// A socket's open file and the socket.
type Found = (Arc<OpenFile>, Arc<NetlinkSocket>);

/// The netlink socket at `fd`: None for another kind of file.
pub(super) fn lookup(t: &Task, fd: i32) -> Result<Option<Found>, Errno> {
    let f = t.fds().lock().file(fd)?;
    if f.is_path() {
        return Ok(None);
    }
    Ok(netlink::netlink_of(&f).map(|s| (f, s)))
}

/// socket(AF_NETLINK, SOCK_RAW or SOCK_DGRAM, NETLINK_ROUTE).
pub(super) fn socket(t: &mut Task, ty: i32, proto: i32) -> SysResult {
    let flags = ty & !SOCK_TYPE_MASK;
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let base = ty & SOCK_TYPE_MASK;
    if base >= 11 {
        return Err(Errno::EINVAL);
    }
    if base != libc::SOCK_RAW && base != libc::SOCK_DGRAM {
        return Err(Errno::ESOCKTNOSUPPORT);
    }
    if proto != libc::NETLINK_ROUTE {
        if let Some(nr) = crate::arch::syscall_number("socket") {
            t.kernel()
                .log_unsupported(nr, &format!("AF_NETLINK protocol {proto}"));
        }
        return Err(Errno::EPROTONOSUPPORT);
    }
    let f = NetlinkFile::open(NetlinkSocket::new(), status(flags));
    install(t, f, flags & libc::SOCK_CLOEXEC != 0).map(|fd| fd as u64)
}

pub(super) fn bind(t: &mut Task, s: &NetlinkSocket, a: &Args) -> SysResult {
    let raw = read_sockaddr(t, a.addr(1), a.int(2))?;
    s.bind(&raw, t.tgid())?;
    Ok(0)
}

/// connect(2): only the kernel (port 0) is there to talk to.
pub(super) fn connect(t: &mut Task, a: &Args) -> SysResult {
    let raw = read_sockaddr(t, a.addr(1), a.int(2))?;
    if raw.len() >= 2 && u16::from_ne_bytes([raw[0], raw[1]]) == libc::AF_UNSPEC as u16 {
        return Ok(0);
    }
    let (port, _) = netlink::parse_addr(&raw)?;
    if port != 0 {
        return Err(Errno::ECONNREFUSED);
    }
    Ok(0)
}

pub(super) fn getsockname(t: &mut Task, s: &NetlinkSocket, a: &Args) -> SysResult {
    let sa = s.local_addr(t.tgid());
    super::check_len_ptr(t, a.addr(2))?;
    write_sockaddr(t, a.addr(1), a.addr(2), &sa)?;
    Ok(0)
}

pub(super) fn getpeername(t: &mut Task, a: &Args) -> SysResult {
    super::check_len_ptr(t, a.addr(2))?;
    write_sockaddr(t, a.addr(1), a.addr(2), &netlink::sockaddr_nl(0))?;
    Ok(0)
}

/// sendto/sendmsg: a request to the kernel (another destination port is
/// ECONNREFUSED: no socket listens there).
pub(super) fn send(t: &mut Task, s: &NetlinkSocket, iovs: &[IoVec], to: &[u8]) -> SysResult {
    if !to.is_empty() {
        let (port, _) = netlink::parse_addr(to)?;
        if port != 0 {
            return Err(Errno::ECONNREFUSED);
        }
    }
    let total = iovs.iter().map(|v| v.len).fold(0u64, u64::saturating_add);
    if total > 1 << 20 {
        return Err(Errno::EMSGSIZE);
    }
    let data = t.mm().copy_in_iovecs(iovs, total as usize)?;
    s.send(&data, t.tgid()).map(|n| n as u64)
}

/// recvfrom/recvmsg: one reply, MSG_TRUNC when cut (and its whole length
/// with MSG_TRUNC in the flags), from the kernel's address.
pub(super) fn recv(
    t: &mut Task,
    f: &OpenFile,
    s: &NetlinkSocket,
    iovs: &[IoVec],
    flags: i32,
) -> Result<(u64, i32, Vec<u8>), Errno> {
    let total = iovs
        .iter()
        .map(|v| v.len)
        .fold(0u64, u64::saturating_add)
        .min(1 << 20) as usize;
    let mut buf = vec![0u8; total];
    let intr = t.interrupt().io.clone();
    let (n, full) = s.recv(
        &io_ctx(f, &intr, flags),
        &mut buf,
        flags & libc::MSG_PEEK != 0,
    )?;
    t.mm().copy_out_iovecs(iovs, &buf[..n])?;
    let mut msg_flags = flags & libc::MSG_CMSG_CLOEXEC;
    if n < full {
        msg_flags |= libc::MSG_TRUNC;
    }
    let ret = if flags & libc::MSG_TRUNC != 0 {
        full
    } else {
        n
    };
    Ok((ret as u64, msg_flags, netlink::sockaddr_nl(0)))
}

pub(super) fn getsockopt(t: &mut Task, s: &NetlinkSocket, a: &Args) -> SysResult {
    let mut b = [0u8; 4];
    t.mm().copy_in(a.addr(4), &mut b)?;
    let len = usize::try_from(i32::from_ne_bytes(b)).map_err(|_| Errno::EINVAL)?;
    let bytes = s.getsockopt(a.int(1), a.int(2))?;
    let n = len.min(bytes.len());
    if n > 0 {
        t.mm().copy_out(a.addr(3), &bytes[..n])?;
    }
    t.mm().copy_out(a.addr(4), &(n as i32).to_ne_bytes())?;
    Ok(0)
}

pub(super) fn setsockopt(t: &mut Task, s: &NetlinkSocket, a: &Args) -> SysResult {
    let len = usize::try_from(a.int(4)).map_err(|_| Errno::EINVAL)?;
    let mut raw = vec![0u8; len.min(64)];
    if !raw.is_empty() {
        t.mm().copy_in(a.addr(3), &mut raw)?;
    }
    s.setsockopt(a.int(1), a.int(2), &raw)?;
    Ok(0)
}
