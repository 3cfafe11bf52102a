//! The socket options of internet sockets that are one `int` each: which
//! exist for which protocol, their defaults (Linux's, for a host with
//! default sysctls) and the values setsockopt takes. Options with other
//! shapes (SO_LINGER, timeouts, buffer sizes) live on the socket itself.

use std::collections::BTreeMap;

use super::Proto;
use crate::errno::Errno;

pub const SOL_SOCKET: i32 = libc::SOL_SOCKET;
pub const SOL_IP: i32 = libc::IPPROTO_IP;
pub const SOL_TCP: i32 = libc::IPPROTO_TCP;
pub const SOL_UDP: i32 = libc::IPPROTO_UDP;
pub const SOL_IPV6: i32 = libc::IPPROTO_IPV6;

/// How an int option's values are checked and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Any value; stored as 0 or 1.
    Bool,
    /// A value in `min..=max`, else EINVAL.
    Range(i32, i32),
    /// -1 (the default, shown as `default`) or a value in `min..=max`.
    DefaultOr(i32, i32),
}

/// One int option.
#[derive(Clone, Copy, Debug)]
pub struct IntOpt {
    pub default: i32,
    pub kind: Kind,
}

const fn b(default: i32) -> Option<IntOpt> {
    Some(IntOpt {
        default,
        kind: Kind::Bool,
    })
}

const fn r(default: i32, min: i32, max: i32) -> Option<IntOpt> {
    Some(IntOpt {
        default,
        kind: Kind::Range(min, max),
    })
}

/// The int option (`level`, `name`) of a socket of `proto` (IPv6-level
/// options only on IPv6 sockets), or None: ENOPROTOOPT.
pub fn int_opt(proto: Proto, v6: bool, level: i32, name: i32) -> Option<IntOpt> {
    match (level, name) {
        (SOL_SOCKET, libc::SO_REUSEADDR)
        | (SOL_SOCKET, libc::SO_REUSEPORT)
        | (SOL_SOCKET, libc::SO_KEEPALIVE)
        | (SOL_SOCKET, libc::SO_BROADCAST)
        | (SOL_SOCKET, libc::SO_DONTROUTE)
        | (SOL_SOCKET, libc::SO_OOBINLINE)
        | (SOL_SOCKET, libc::SO_TIMESTAMP)
        | (SOL_SOCKET, libc::SO_PASSCRED) => b(0),
        (SOL_SOCKET, libc::SO_PRIORITY) => r(0, 0, 6),
        (SOL_SOCKET, libc::SO_RCVLOWAT) => r(1, 1, i32::MAX),
        (SOL_IP, libc::IP_TOS) => r(0, 0, 255),
        (SOL_IP, libc::IP_TTL) => Some(IntOpt {
            default: 64,
            kind: Kind::DefaultOr(1, 255),
        }),
        (SOL_IP, libc::IP_RECVERR)
        | (SOL_IP, libc::IP_PKTINFO)
        | (SOL_IP, libc::IP_RECVTOS)
        | (SOL_IP, libc::IP_RECVTTL)
        | (SOL_IP, libc::IP_FREEBIND)
        | (SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT) => b(0),
        (SOL_IP, libc::IP_MTU_DISCOVER) => r(1, 0, 5),
        (SOL_IP, libc::IP_MULTICAST_TTL) => r(1, 0, 255),
        (SOL_IP, libc::IP_MULTICAST_LOOP) => b(1),
        (SOL_IPV6, libc::IPV6_V6ONLY) if v6 => b(0),
        (SOL_IPV6, libc::IPV6_UNICAST_HOPS) if v6 => Some(IntOpt {
            default: 64,
            kind: Kind::DefaultOr(0, 255),
        }),
        (SOL_IPV6, libc::IPV6_TCLASS) if v6 => Some(IntOpt {
            default: 0,
            kind: Kind::DefaultOr(0, 255),
        }),
        (SOL_IPV6, libc::IPV6_RECVPKTINFO) | (SOL_IPV6, libc::IPV6_RECVERR) if v6 => b(0),
        (SOL_IPV6, libc::IPV6_MULTICAST_HOPS) if v6 => Some(IntOpt {
            default: 1,
            kind: Kind::DefaultOr(0, 255),
        }),
        (SOL_IPV6, libc::IPV6_MULTICAST_LOOP) if v6 => b(1),
        (SOL_TCP, _) if proto == Proto::Tcp => tcp_opt(name),
        (SOL_UDP, libc::UDP_CORK) if proto == Proto::Udp => b(0),
        _ => None,
    }
}

fn tcp_opt(name: i32) -> Option<IntOpt> {
    match name {
        libc::TCP_NODELAY | libc::TCP_CORK => b(0),
        libc::TCP_KEEPIDLE => r(7200, 1, 32767),
        libc::TCP_KEEPINTVL => r(75, 1, 32767),
        libc::TCP_KEEPCNT => r(9, 1, 127),
        libc::TCP_SYNCNT => r(6, 1, 127),
        libc::TCP_LINGER2 => r(60, i32::MIN, i32::MAX),
        libc::TCP_DEFER_ACCEPT => r(0, i32::MIN, i32::MAX),
        libc::TCP_WINDOW_CLAMP => r(0, 0, i32::MAX),
        libc::TCP_QUICKACK => b(1),
        libc::TCP_USER_TIMEOUT => r(0, 0, i32::MAX),
        libc::TCP_NOTSENT_LOWAT => r(-1, i32::MIN, i32::MAX),
        _ => None,
    }
}

impl IntOpt {
    /// The value setsockopt stores for `v`, or EINVAL.
    pub fn accept(&self, v: i32) -> Result<i32, Errno> {
        match self.kind {
            Kind::Bool => Ok((v != 0) as i32),
            Kind::Range(lo, hi) if (lo..=hi).contains(&v) => Ok(v),
            Kind::DefaultOr(_, _) if v == -1 => Ok(self.default),
            Kind::DefaultOr(lo, hi) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// A socket's int options that differ from their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntOpts(pub BTreeMap<(i32, i32), i32>);

impl IntOpts {
    /// The value of an option known to exist.
    pub fn get(&self, o: IntOpt, level: i32, name: i32) -> i32 {
        self.0.get(&(level, name)).copied().unwrap_or(o.default)
    }

    /// A boolean option's state (its default when unset).
    pub fn flag(&self, proto: Proto, v6: bool, level: i32, name: i32) -> bool {
        match int_opt(proto, v6, level, name) {
            Some(o) => self.get(o, level, name) != 0,
            None => false,
        }
    }

    pub fn set(&mut self, o: IntOpt, level: i32, name: i32, v: i32) {
        if v == o.default {
            self.0.remove(&(level, name));
        } else {
            self.0.insert((level, name), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_exist_per_protocol_and_check_their_values() {
        assert!(int_opt(Proto::Tcp, false, SOL_TCP, libc::TCP_NODELAY).is_some());
        assert!(int_opt(Proto::Udp, false, SOL_TCP, libc::TCP_NODELAY).is_none());
        assert!(int_opt(Proto::Tcp, false, SOL_IPV6, libc::IPV6_V6ONLY).is_none());
        let ttl = int_opt(Proto::Udp, false, SOL_IP, libc::IP_TTL).unwrap();
        assert_eq!(ttl.accept(-1), Ok(64));
        assert_eq!(ttl.accept(0), Err(Errno::EINVAL));
        let cnt = int_opt(Proto::Tcp, true, SOL_TCP, libc::TCP_KEEPCNT).unwrap();
        assert_eq!(cnt.accept(128), Err(Errno::EINVAL));
        let mut o = IntOpts::default();
        let reuse = int_opt(Proto::Tcp, false, SOL_SOCKET, libc::SO_REUSEADDR).unwrap();
        o.set(
            reuse,
            SOL_SOCKET,
            libc::SO_REUSEADDR,
            reuse.accept(5).unwrap(),
        );
        assert!(o.flag(Proto::Tcp, false, SOL_SOCKET, libc::SO_REUSEADDR));
    }
}
