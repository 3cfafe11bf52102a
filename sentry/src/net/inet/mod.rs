//! AF_INET and AF_INET6 sockets over the sandbox's loopback (gVisor's
//! pkg/sentry/socket/netstack over its loopback link, Linux's net/ipv4
//! and net/ipv6 as seen through `lo`).
//!
//! Sandboxes run with `--network none`: their only network is `lo`
//! (127.0.0.0/8 and ::1). So this is a netstack of cryo's own, in the
//! Sentry, that no application packet leaves: no byte an application
//! sends over TCP or UDP touches the host's TCP/IP code.
//!
//! Why not smoltcp: a checkpoint must save an established connection with
//! data in flight both ways and a listener with connections it has not
//! accepted yet, and restore them exactly; smoltcp's socket state (its
//! sequence numbers, timers, assembler and ring buffers) is neither
//! serializable nor rebuildable through its API. Over loopback, packets
//! add nothing an application can see, so the model here is the one an
//! application observes: a TCP connection is two byte streams (each end's
//! send buffer drains into the other's receive buffer, so SO_SNDBUF,
//! SO_RCVBUF and SIOCOUTQ mean what they mean on Linux), with ports,
//! addresses, the listen backlog, half-close, FIN and RST (close with
//! unread data or SO_LINGER zero resets; EPIPE, ECONNRESET, ECONNREFUSED
//! as Linux reports them), and TIME_WAIT only where it is observable over
//! loopback: the bind(2) EADDRINUSE rules of a port an active close left.
//! A UDP socket is a queue of datagrams. Real packets (segments, windows,
//! retransmission) come with external networking, later; the saved form
//! here stays what the application sees either way.
//!
//! - [`addr`]: socket addresses, `lo`'s addresses, v4-mapped IPv6;
//! - [`opts`]: the int-valued socket options and their defaults;
//! - [`stack`]: the sockets, ports, connections and datagrams;
//! - [`file`]: the open-file side (read/write, poll, ioctl, fstat);
//! - [`state`]: the saved form of every inet socket;
//! - [`procnet`]: /proc/net/{tcp,tcp6,udp,udp6,dev} and `lo`'s ioctls.

pub mod addr;
pub mod file;
pub mod opts;
pub mod procnet;
pub mod stack;
pub mod state;

pub use addr::{Family, Target};
pub use file::{inet_of, InetFile};
pub use stack::{InetSocket, InetStack, Received};

/// The protocols of inet sockets: the two transports and ICMP echo
/// ("ping") datagram sockets (Linux's net/ipv4/ping.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    /// IPPROTO_TCP, IPPROTO_UDP or IPPROTO_ICMP.
    pub fn raw(self) -> i32 {
        match self {
            Proto::Tcp => libc::IPPROTO_TCP,
            Proto::Udp => libc::IPPROTO_UDP,
            Proto::Icmp => libc::IPPROTO_ICMP,
        }
    }
}

/// A socket id from the space unix sockets share.
pub(crate) fn next_id(restored: Option<u64>) -> u64 {
    super::unix::allocate_socket_id(restored)
}

/// socket(2)'s protocol lookup for an inet family (Linux's inet_create
/// and inet6_create): SOCK_STREAM is TCP, SOCK_DGRAM UDP, or ICMP echo
/// with IPPROTO_ICMP on AF_INET; another protocol of the type is
/// EPROTONOSUPPORT, a type without protocols ESOCKTNOSUPPORT. SOCK_RAW
/// and ICMPv6 echo sockets are not built: EPROTONOSUPPORT (the caller
/// logs it; a raw socket without CAP_NET_RAW is EPERM first, there).
pub fn protocol_for(
    family: Family,
    base_type: i32,
    proto: i32,
) -> Result<Proto, crate::errno::Errno> {
    use crate::errno::Errno;
    if base_type == libc::SOCK_DGRAM && proto == libc::IPPROTO_ICMP && family == Family::V4 {
        return Ok(Proto::Icmp);
    }
    match base_type {
        libc::SOCK_STREAM => match proto {
            0 | libc::IPPROTO_TCP => Ok(Proto::Tcp),
            _ => Err(Errno::EPROTONOSUPPORT),
        },
        libc::SOCK_DGRAM => match proto {
            0 | libc::IPPROTO_UDP => Ok(Proto::Udp),
            _ => Err(Errno::EPROTONOSUPPORT),
        },
        libc::SOCK_RAW => Err(Errno::EPROTONOSUPPORT),
        _ => Err(Errno::ESOCKTNOSUPPORT),
    }
}
