//! What the sandbox shows of its one network device: `lo`'s interface
//! ioctls (SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFINDEX,
//! SIOCGIFMTU, SIOCGIFNAME on any inet socket) and /proc/net/tcp, tcp6,
//! udp, udp6 (the sandbox's sockets in Linux's format) and dev.

use std::net::{IpAddr, SocketAddr};

use super::addr::Family;
use super::stack::{InetStack, Kind, Sock, Tcp};
use super::Proto;
use crate::errno::Errno;
use crate::vfs::file::IoctlReply;

/// `sizeof(struct ifreq)`.
pub const IFREQ_SIZE: usize = 40;
/// IFNAMSIZ.
const IFNAMSIZ: usize = 16;
/// `lo`'s index, flags (IFF_UP | IFF_LOOPBACK | IFF_RUNNING) and MTU.
pub const LO_INDEX: i32 = 1;
pub const LO_FLAGS: u32 = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as u32;
pub const LO_MTU: i32 = 65536;
pub const LO_TXQLEN: i32 = 1000;

/// The interface an `ifreq` names: ENODEV for anything but `lo`.
fn named_lo(req: &[u8]) -> Result<(), Errno> {
    let name = &req[..IFNAMSIZ];
    let end = name.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
    if &name[..end] == b"lo" {
        Ok(())
    } else {
        Err(Errno::ENODEV)
    }
}

fn sockaddr_in(ip: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    a[4..8].copy_from_slice(&ip);
    a
}

/// An interface ioctl on a socket of any family, with the `ifreq` copied
/// in; ENOTTY for any other command.
pub fn if_ioctl(cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
    if cmd == libc::SIOCGIFADDR || cmd == libc::SIOCGIFNETMASK {
        // Addresses are the inet family's (devinet_ioctl), not dev_ioctl's.
        return Err(Errno::ENOTTY);
    }
    inet_if_ioctl(cmd, input)
}

/// An interface ioctl on an inet socket (addresses included).
pub fn inet_if_ioctl(cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
    let known = [
        libc::SIOCGIFFLAGS,
        libc::SIOCGIFADDR,
        libc::SIOCGIFNETMASK,
        libc::SIOCGIFINDEX,
        libc::SIOCGIFMTU,
        libc::SIOCGIFNAME,
        libc::SIOCGIFTXQLEN,
    ];
    if !known.contains(&cmd) {
        return Err(Errno::ENOTTY);
    }
    if input.len() < IFREQ_SIZE {
        return Err(Errno::EFAULT);
    }
    let mut out = input[..IFREQ_SIZE].to_vec();
    let (head, tail) = out.split_at_mut(IFNAMSIZ);
    match cmd {
        libc::SIOCGIFNAME => {
            let idx = i32::from_ne_bytes([tail[0], tail[1], tail[2], tail[3]]);
            if idx != LO_INDEX {
                return Err(Errno::ENODEV);
            }
            head.fill(0);
            head[..2].copy_from_slice(b"lo");
        }
        _ => {
            named_lo(input)?;
            tail.fill(0);
            match cmd {
                libc::SIOCGIFFLAGS => tail[..2].copy_from_slice(&(LO_FLAGS as u16).to_ne_bytes()),
                libc::SIOCGIFADDR => tail[..16].copy_from_slice(&sockaddr_in([127, 0, 0, 1])),
                libc::SIOCGIFNETMASK => tail[..16].copy_from_slice(&sockaddr_in([255, 0, 0, 0])),
                libc::SIOCGIFINDEX => tail[..4].copy_from_slice(&LO_INDEX.to_ne_bytes()),
                libc::SIOCGIFTXQLEN => tail[..4].copy_from_slice(&LO_TXQLEN.to_ne_bytes()),
                _ => tail[..4].copy_from_slice(&LO_MTU.to_ne_bytes()),
            }
        }
    }
    Ok(IoctlReply { ret: 0, out })
}

/// Linux's TCP state numbers as /proc/net/tcp shows them.
fn tcp_state(s: &Sock) -> u8 {
    match &s.kind {
        Kind::Tcp(Tcp::Closed) => 7,
        Kind::Tcp(Tcp::Listen { .. }) => 0x0a,
        Kind::Tcp(Tcp::Connecting { .. }) => 2,
        Kind::Tcp(Tcp::Established(c)) => match (c.wr_shut, c.fin_rcvd || c.peer == 0) {
            _ if c.reset => 7,
            (false, false) => 1,
            (true, false) => 5,
            (false, true) => 8,
            (true, true) => 9,
        },
        // UDP: ESTABLISHED when connected, else CLOSE.
        Kind::Udp(u) => {
            if u.remote.is_some() {
                1
            } else {
                7
            }
        }
    }
}

/// An address as /proc/net shows it: the bytes of the address as 32-bit
/// words in host order, then the port.
fn hex_addr(a: Option<SocketAddr>, v6: bool) -> String {
    let a = a.unwrap_or(if v6 {
        Family::V6.unspecified()
    } else {
        Family::V4.unspecified()
    });
    let bytes: Vec<u8> = match (a.ip(), v6) {
        (IpAddr::V4(ip), false) => ip.octets().to_vec(),
        (IpAddr::V4(ip), true) => ip.to_ipv6_mapped().octets().to_vec(),
        (IpAddr::V6(ip), true) => ip.octets().to_vec(),
        (IpAddr::V6(ip), false) => ip
            .to_ipv4_mapped()
            .map_or([0u8; 4].to_vec(), |v| v.octets().to_vec()),
    };
    let mut s = String::new();
    for w in bytes.chunks(4) {
        let word = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
        s.push_str(&format!("{word:08X}"));
    }
    format!("{s}:{:04X}", a.port())
}

impl InetStack {
    /// /proc/net/`name` (tcp, tcp6, udp, udp6, dev), or None.
    pub fn proc_net(&self, name: &str) -> Option<String> {
        let (proto, v6) = match name {
            "tcp" => (Proto::Tcp, false),
            "tcp6" => (Proto::Tcp, true),
            "udp" => (Proto::Udp, false),
            "udp6" => (Proto::Udp, true),
            "dev" => return Some(dev_text()),
            _ => return None,
        };
        let mut out = if v6 {
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string()
        } else {
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string()
        };
        let st = self.lock();
        let mut n = 0;
        for (id, s) in &st.socks {
            if s.proto != proto || (s.family == Family::V6) != v6 {
                continue;
            }
            let (remote, tx, rx) = match &s.kind {
                Kind::Tcp(Tcp::Established(c)) => (c.remote, c.tx.len(), c.rx.len()),
                Kind::Tcp(Tcp::Listen { pending, .. }) => (None, 0, pending.len()),
                Kind::Udp(u) => (u.remote, 0, u.rx_bytes),
                _ => (None, 0, 0),
            };
            out.push_str(&format!(
                "{n:4}: {} {} {:02X} {tx:08X}:{rx:08X} 00:00000000 00000000 {:5} {:8} {id} 1 0000000000000000 100 0 0 10 0\n",
                hex_addr(s.local, v6),
                hex_addr(remote, v6),
                tcp_state(s),
                s.uid,
                0
            ));
            n += 1;
        }
        Some(out)
    }
}

/// /proc/net/dev: `lo` alone (its counters are not kept: zero).
fn dev_text() -> String {
    "Inter-|   Receive                                                |  Transmit\n \
     face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
     lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lo_answers_its_ioctls_and_other_names_are_enodev() {
        let mut req = [0u8; IFREQ_SIZE];
        req[..2].copy_from_slice(b"lo");
        let r = if_ioctl(libc::SIOCGIFINDEX, &req).unwrap();
        assert_eq!(&r.out[16..20], &1i32.to_ne_bytes());
        let r = inet_if_ioctl(libc::SIOCGIFADDR, &req).unwrap();
        assert_eq!(if_ioctl(libc::SIOCGIFADDR, &req), Err(Errno::ENOTTY));
        assert_eq!(&r.out[20..24], &[127, 0, 0, 1]);
        req[..3].copy_from_slice(b"eth");
        assert_eq!(if_ioctl(libc::SIOCGIFFLAGS, &req), Err(Errno::ENODEV));
        assert_eq!(if_ioctl(0x1234, &req), Err(Errno::ENOTTY));
        assert_eq!(
            hex_addr(Some("127.0.0.1:8080".parse().unwrap()), false),
            "0100007F:1F90"
        );
    }
}
