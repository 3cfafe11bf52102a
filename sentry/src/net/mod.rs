//! Sockets (gVisor's pkg/sentry/socket): the unix domain family,
//! AF_INET/AF_INET6 over the sandbox's loopback ([`inet`]) and
//! NETLINK_ROUTE's link and address dumps ([`netlink`]); every other
//! family is answered EAFNOSUPPORT, as a kernel built without it would.
//!
//! - [`unix`]: AF_UNIX stream, datagram and seqpacket sockets, their
//!   connections, queues and names;
//! - [`socket`]: the open-file side of a socket (read/write, poll, ioctl,
//!   fstat, checkpoint);
//! - [`control`]: control messages (SCM_RIGHTS, SCM_CREDENTIALS) in and
//!   out of application memory;
//! - [`state`]: the saved form of every socket.

pub mod control;
pub mod inet;
pub mod netlink;
pub mod socket;
pub mod state;
pub mod unix;

pub use socket::{socket_of, SocketFile};
pub use unix::{SockType, UCred, UnixAddr, UnixNamespace, UnixSocket};

/// Typed errors of socket-level validation that are not plain errnos
/// (restoring a socket graph from a statefile).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    #[error("socket #{id}: {field}: {why}")]
    Invalid {
        id: u64,
        field: &'static str,
        why: String,
    },
}
