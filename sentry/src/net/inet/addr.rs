//! Internet socket addresses: `sockaddr_in` and `sockaddr_in6` in and out
//! of application memory, and what "local" means on a sandbox whose only
//! device is `lo` (127.0.0.0/8 and ::1; the wildcards 0.0.0.0 and ::
//! stand for it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::errno::Errno;

/// `sizeof(struct sockaddr_in)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;
/// SIN6_LEN_RFC2133: the shortest `sockaddr_in6` Linux takes (no scope id).
pub const SIN6_LEN_RFC2133: usize = 24;

/// The two internet families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn raw(self) -> i32 {
        match self {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        }
    }

    pub fn from_raw(f: i32) -> Option<Family> {
        match f {
            libc::AF_INET => Some(Family::V4),
            libc::AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    /// The wildcard address of the family, port 0 (an unbound socket's
    /// getsockname).
    pub fn unspecified(self) -> SocketAddr {
        match self {
            Family::V4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            Family::V6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        }
    }
}

/// The family field of a socket address (EINVAL if it has none).
pub fn family_of(raw: &[u8]) -> Result<u16, Errno> {
    if raw.len() < 2 {
        return Err(Errno::EINVAL);
    }
    Ok(u16::from_ne_bytes([raw[0], raw[1]]))
}

/// A `sockaddr_in` (at least [`SOCKADDR_IN_LEN`] bytes, checked by the
/// caller).
fn parse_v4(raw: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// A `sockaddr_in6` (at least [`SIN6_LEN_RFC2133`] bytes).
fn parse_v6(raw: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let flow = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&raw[8..24]);
    let scope = if raw.len() >= SOCKADDR_IN6_LEN {
        u32::from_ne_bytes([raw[24], raw[25], raw[26], raw[27]])
    } else {
        0
    };
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(b), port, flow, scope))
}

/// bind(2)'s address for a socket of `fam` (inet_bind, inet6_bind):
/// EINVAL for a short one, EAFNOSUPPORT for another family (AF_UNSPEC
/// with INADDR_ANY passes on AF_INET, for old programs).
pub fn parse_bind(raw: &[u8], fam: Family) -> Result<SocketAddr, Errno> {
    match fam {
        Family::V4 => {
            if raw.len() < SOCKADDR_IN_LEN {
                return Err(Errno::EINVAL);
            }
            let f = family_of(raw)?;
            let a = parse_v4(raw);
            if f != libc::AF_INET as u16
                && !(f == libc::AF_UNSPEC as u16 && a.ip().is_unspecified())
            {
                return Err(Errno::EAFNOSUPPORT);
            }
            Ok(a)
        }
        Family::V6 => {
            if raw.len() < SIN6_LEN_RFC2133 {
                return Err(Errno::EINVAL);
            }
            if family_of(raw)? != libc::AF_INET6 as u16 {
                return Err(Errno::EAFNOSUPPORT);
            }
            Ok(parse_v6(raw))
        }
    }
}

/// What connect(2) or sendto(2) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// AF_UNSPEC: disconnect (connect), or no address (IPv6 sendto).
    Unspec,
    Addr(SocketAddr),
}

/// connect(2)'s (and a datagram sendto's) address for a socket of `fam`.
pub fn parse_target(raw: &[u8], fam: Family) -> Result<Target, Errno> {
    let f = family_of(raw)?;
    if f == libc::AF_UNSPEC as u16 {
        return Ok(Target::Unspec);
    }
    match fam {
        Family::V4 => {
            if raw.len() < SOCKADDR_IN_LEN {
                return Err(Errno::EINVAL);
            }
            if f != libc::AF_INET as u16 {
                return Err(Errno::EAFNOSUPPORT);
            }
            Ok(Target::Addr(parse_v4(raw)))
        }
        Family::V6 => {
            if f == libc::AF_INET as u16 {
                // An AF_INET address to an IPv6 socket: Linux's
                // tcp_v6_connect/udpv6_sendmsg take it as v4-mapped.
                if raw.len() < SOCKADDR_IN_LEN {
                    return Err(Errno::EINVAL);
                }
                return Ok(Target::Addr(parse_v4(raw)));
            }
            if raw.len() < SIN6_LEN_RFC2133 {
                return Err(Errno::EINVAL);
            }
            if f != libc::AF_INET6 as u16 {
                return Err(Errno::EAFNOSUPPORT);
            }
            Ok(Target::Addr(parse_v6(raw)))
        }
    }
}

/// The `sockaddr_in`/`sockaddr_in6` of `a` as a socket of `fam` shows it
/// (an IPv6 socket shows IPv4 peers v4-mapped).
pub fn to_sockaddr(a: SocketAddr, fam: Family) -> Vec<u8> {
    match (fam, a) {
        (Family::V4, a) => {
            let ip = match norm_ip(a.ip()) {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let mut out = vec![0u8; SOCKADDR_IN_LEN];
            out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&ip.octets());
            out
        }
        (Family::V6, a) => {
            let (ip, flow, scope) = match a {
                SocketAddr::V4(v4) => (v4.ip().to_ipv6_mapped(), 0, 0),
                SocketAddr::V6(v6) => (*v6.ip(), v6.flowinfo(), v6.scope_id()),
            };
            let mut out = vec![0u8; SOCKADDR_IN6_LEN];
            out[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&flow.to_be_bytes());
            out[8..24].copy_from_slice(&ip.octets());
            out[24..28].copy_from_slice(&scope.to_ne_bytes());
            out
        }
    }
}

/// An address as the stack matches it: v4-mapped IPv6 addresses are the
/// IPv4 addresses they map.
pub fn norm_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `a` with its address normalised (flow and scope dropped).
pub fn norm(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(norm_ip(a.ip()), a.port())
}

/// Whether a socket may bind `ip`: an address of `lo`, or a wildcard.
pub fn is_local_or_any(ip: IpAddr) -> bool {
    match norm_ip(ip) {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_loopback(),
    }
}

/// Where a connection to `ip` goes: the wildcard is the loopback address
/// (Linux connects INADDR_ANY to itself); None for an address no route
/// reaches (ENETUNREACH: `lo` is the only device).
pub fn route(ip: IpAddr) -> Option<IpAddr> {
    match norm_ip(ip) {
        IpAddr::V4(v4) if v4.is_unspecified() => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V4(v4) if v4.is_loopback() => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_loopback() => {
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        }
        _ => None,
    }
}

/// The source address of a packet from an unbound (or wildcard-bound)
/// socket to `dst` (normalised): `lo`'s primary address of the family.
pub fn source_for(dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// The addresses a bound socket takes packets for: its IPv4 part and its
/// IPv6 part, each None (none), Some(None) (any) or Some(Some(ip)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    pub v4: Option<Option<Ipv4Addr>>,
    pub v6: Option<Option<Ipv6Addr>>,
}

impl Coverage {
    /// A socket of `fam` bound to `ip` (`v6only`: IPV6_V6ONLY).
    pub fn of(fam: Family, ip: IpAddr, v6only: bool) -> Coverage {
        match (fam, ip) {
            (Family::V4, IpAddr::V4(v4)) => Coverage {
                v4: Some((!v4.is_unspecified()).then_some(v4)),
                v6: None,
            },
            (Family::V6, IpAddr::V6(v6)) if v6.is_unspecified() => Coverage {
                v4: (!v6only).then_some(None),
                v6: Some(None),
            },
            (Family::V6, IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Coverage {
                    v4: Some((!v4.is_unspecified()).then_some(v4)),
                    v6: None,
                },
                None => Coverage {
                    v4: None,
                    v6: Some(Some(v6)),
                },
            },
            // An IPv6 socket never holds a bare IPv4 address and the
            // reverse: nothing.
            _ => Coverage { v4: None, v6: None },
        }
    }

    /// Whether two bindings share an address.
    pub fn overlaps(&self, o: &Coverage) -> bool {
        fn meet<T: PartialEq>(a: Option<Option<T>>, b: Option<Option<T>>) -> bool {
            match (a, b) {
                (Some(None), Some(_)) | (Some(_), Some(None)) => true,
                (Some(Some(x)), Some(Some(y))) => x == y,
                _ => false,
            }
        }
        meet(self.v4, o.v4) || meet(self.v6, o.v6)
    }

    /// Whether a packet to `dst` (normalised) reaches this binding.
    pub fn takes(&self, dst: IpAddr) -> bool {
        match dst {
            IpAddr::V4(v4) => matches!(self.v4, Some(None)) || self.v4 == Some(Some(v4)),
            IpAddr::V6(v6) => matches!(self.v6, Some(None)) || self.v6 == Some(Some(v6)),
        }
    }

    /// Whether it takes packets for one address only (preferred over a
    /// wildcard when both could).
    pub fn specific(&self) -> bool {
        matches!(self.v4, Some(Some(_))) || matches!(self.v6, Some(Some(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_round_trip_and_lengths_are_checked() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let raw = to_sockaddr(a, Family::V4);
        assert_eq!(raw.len(), 16);
        assert_eq!(parse_bind(&raw, Family::V4), Ok(a));
        assert_eq!(parse_bind(&raw[..15], Family::V4), Err(Errno::EINVAL));
        let six = to_sockaddr(a, Family::V6);
        assert_eq!(six.len(), 28);
        let back = parse_bind(&six, Family::V6).unwrap();
        assert_eq!(norm(back), a);
        assert_eq!(parse_bind(&raw, Family::V6), Err(Errno::EINVAL));
        assert_eq!(parse_bind(&six, Family::V4), Err(Errno::EAFNOSUPPORT));
        assert_eq!(parse_target(&[0, 0], Family::V4), Ok(Target::Unspec));
        assert_eq!(parse_target(&[2], Family::V4), Err(Errno::EINVAL));
    }

    #[test]
    fn coverage_follows_v6only_and_mapped_addresses() {
        let any6 = Coverage::of(Family::V6, "::".parse().unwrap(), false);
        let any6only = Coverage::of(Family::V6, "::".parse().unwrap(), true);
        let any4 = Coverage::of(Family::V4, "0.0.0.0".parse().unwrap(), false);
        let lo4 = Coverage::of(Family::V4, "127.0.0.1".parse().unwrap(), false);
        let lo4b = Coverage::of(Family::V4, "127.0.0.2".parse().unwrap(), false);
        let mapped = Coverage::of(Family::V6, "::ffff:127.0.0.1".parse().unwrap(), false);
        assert!(any6.overlaps(&any4));
        assert!(!any6only.overlaps(&any4));
        assert!(lo4.overlaps(&any4) && !lo4.overlaps(&lo4b));
        assert!(mapped.overlaps(&lo4));
        assert!(any6.takes("127.0.0.1".parse().unwrap()));
        assert!(!any6only.takes("127.0.0.1".parse().unwrap()));
        assert!(route("10.0.0.1".parse().unwrap()).is_none());
        assert_eq!(
            route("0.0.0.0".parse().unwrap()),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
