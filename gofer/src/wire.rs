//! Moving messages and fds over a unix socket: the gofer's `SOCK_SEQPACKET`
//! connection, and the CLI's control socket, which passes files the same way.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair as nix_socketpair, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

use crate::error::GoferError;

/// The most fds one message can carry (Linux `SCM_MAX_FD`). Room for all of
/// them means a message is never cut short of fds that the kernel installed
/// and nobody would close.
const SCM_MAX_FD: usize = 253;

/// A connected pair of sockets of the kind the gofer speaks over: one for the
/// Sentry's [`crate::Client`], one for [`crate::serve`]. Both are close-on-exec;
/// clear it on the one handed to a `cryo gofer` child.
pub fn socketpair() -> Result<(OwnedFd, OwnedFd), GoferError> {
    nix_socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io)
}

fn io(e: Errno) -> GoferError {
    GoferError::Io(e.into())
}

/// Sends one message, with `fd` attached if given.
pub fn send(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), GoferError> {
    let iov = [IoSlice::new(bytes)];
    let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(GoferError::Protocol(format!(
                    "short send: {n} of {} bytes",
                    bytes.len()
                )))
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(GoferError::Closed),
            Err(Errno::EMSGSIZE) => return Err(GoferError::TooLarge(bytes.len())),
            Err(e) => return Err(io(e)),
        }
    }
}

/// One received message.
pub enum Received {
    /// `len` bytes of `buf`, and the fds that came with them.
    Message { len: usize, fds: Vec<OwnedFd> },
    /// The message did not fit in the buffer and was cut; its fds are
    /// already closed.
    Truncated,
    /// The peer closed the connection.
    Eof,
}

/// Receives one message into `buf`.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Received, GoferError> {
    let mut cmsg_buf = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECONNRESET) => return Ok(Received::Eof),
            Err(e) => return Err(io(e)),
        };
        // Take ownership of every fd first, so that each one is closed on
        // whatever path this message takes from here.
        let mut fds = Vec::new();
        // The buffer has room for SCM_MAX_FD fds, so ENOBUFS (control data
        // cut) cannot hold fds we would lose track of.
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for r in raw {
                        // SAFETY: the kernel has just installed `r` in our fd
                        // table for this message; nothing else refers to it.
                        fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                    }
                }
            }
        }
        let len = msg.bytes;
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Ok(Received::Truncated);
        }
        if len == 0 && fds.is_empty() {
            // A seqpacket socket reads 0 bytes at end of stream; an empty
            // message is never sent by a well-behaved peer, so treat both
            // alike.
            return Ok(Received::Eof);
        }
        return Ok(Received::Message { len, fds });
    }
}
