//! Control messages (cmsg(3)) as the 64-bit ABI lays them out:
//! `struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; }`
//! followed by the data, each message padded to 8 bytes. Parsing follows
//! Linux's __scm_send, building follows put_cmsg and scm_detach_fds.

use super::unix::{UCred, SCM_MAX_FD};
use crate::errno::Errno;

/// `sizeof(struct cmsghdr)`.
pub const CMSG_HDR: usize = 16;
/// net.core.optmem_max: the most control data one sendmsg may pass.
pub const OPTMEM_MAX: usize = 131_072;

const SCM_RIGHTS: i32 = libc::SCM_RIGHTS;
const SCM_CREDENTIALS: i32 = libc::SCM_CREDENTIALS;

fn align(n: usize) -> usize {
    (n + 7) & !7
}

/// CMSG_LEN(n).
pub fn cmsg_len(n: usize) -> usize {
    CMSG_HDR + n
}

/// CMSG_SPACE(n).
pub fn cmsg_space(n: usize) -> usize {
    CMSG_HDR + align(n)
}

/// What a sendmsg's control data asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendControl {
    /// SCM_RIGHTS: descriptors to pass, in order, over all such messages.
    pub fds: Vec<i32>,
    /// SCM_CREDENTIALS: the credentials the sender claims.
    pub cred: Option<UCred>,
}

/// Parses sendmsg's control buffer. EINVAL for a malformed header, an
/// unknown SOL_SOCKET type, too many descriptors or a credentials message
/// of the wrong size; other levels are ignored, as Linux does.
pub fn parse(buf: &[u8]) -> Result<SendControl, Errno> {
    let mut out = SendControl::default();
    let mut off = 0usize;
    while buf.len() >= off + CMSG_HDR {
        let h = &buf[off..off + CMSG_HDR];
        let len = u64::from_ne_bytes(h[..8].try_into().map_err(|_| Errno::EINVAL)?);
        let level = i32::from_ne_bytes(h[8..12].try_into().map_err(|_| Errno::EINVAL)?);
        let ty = i32::from_ne_bytes(h[12..16].try_into().map_err(|_| Errno::EINVAL)?);
        let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        if len < CMSG_HDR || len > buf.len() - off {
            return Err(Errno::EINVAL);
        }
        let data = &buf[off + CMSG_HDR..off + len];
        if level == libc::SOL_SOCKET {
            match ty {
                SCM_RIGHTS => {
                    let n = data.len() / 4;
                    if out.fds.len() + n > SCM_MAX_FD {
                        return Err(Errno::EINVAL);
                    }
                    out.fds.extend(
                        data.chunks_exact(4)
                            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
                    );
                }
                SCM_CREDENTIALS => {
                    let raw: &[u8; 12] = data.try_into().map_err(|_| Errno::EINVAL)?;
                    out.cred = Some(UCred::from_bytes(raw));
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        off = match off.checked_add(align(len)) {
            Some(o) => o,
            None => break,
        };
    }
    Ok(out)
}

/// recvmsg's control buffer being filled: `space` bytes the application
/// gave, `truncated` (MSG_CTRUNC) once something did not fit.
pub struct RecvControl {
    pub bytes: Vec<u8>,
    pub space: usize,
    pub truncated: bool,
}

impl RecvControl {
    pub fn new(space: usize) -> RecvControl {
        RecvControl {
            bytes: Vec::new(),
            space,
            truncated: false,
        }
    }

    fn left(&self) -> usize {
        self.space.saturating_sub(self.bytes.len())
    }

    /// put_cmsg: a message, cut short (and MSG_CTRUNC) when it does not
    /// fit; nothing when not even its header does.
    pub fn put(&mut self, level: i32, ty: i32, data: &[u8]) {
        let left = self.left();
        if left < CMSG_HDR {
            self.truncated = true;
            return;
        }
        let mut len = cmsg_len(data.len());
        if left < len {
            self.truncated = true;
            len = left;
        }
        self.header(len, level, ty);
        self.bytes.extend_from_slice(&data[..len - CMSG_HDR]);
        self.pad(cmsg_space(data.len()).min(left) - len);
    }

    fn header(&mut self, len: usize, level: i32, ty: i32) {
        self.bytes.extend_from_slice(&(len as u64).to_ne_bytes());
        self.bytes.extend_from_slice(&level.to_ne_bytes());
        self.bytes.extend_from_slice(&ty.to_ne_bytes());
    }

    fn pad(&mut self, n: usize) {
        self.bytes.resize(self.bytes.len() + n, 0);
    }

    pub fn put_cred(&mut self, c: UCred) {
        self.put(libc::SOL_SOCKET, SCM_CREDENTIALS, &c.to_bytes());
    }

    /// How many of `n` descriptors an SCM_RIGHTS message has room for.
    pub fn rights_room(&self, n: usize) -> usize {
        let left = self.left();
        if left <= CMSG_HDR {
            return 0;
        }
        ((left - CMSG_HDR) / 4).min(n)
    }

    /// The SCM_RIGHTS message of the descriptors installed (all of them
    /// when `total` were sent: MSG_CTRUNC otherwise).
    pub fn put_rights(&mut self, fds: &[i32], total: usize) {
        if fds.len() < total {
            self.truncated = true;
        }
        if fds.is_empty() {
            return;
        }
        let left = self.left();
        let len = cmsg_len(fds.len() * 4);
        self.header(len, libc::SOL_SOCKET, SCM_RIGHTS);
        for fd in fds {
            self.bytes.extend_from_slice(&fd.to_ne_bytes());
        }
        self.pad(cmsg_space(fds.len() * 4).min(left) - len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, ty: i32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(cmsg_len(data.len()) as u64).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(cmsg_space(data.len()).max(v.len()), 0);
        v
    }

    #[test]
    fn parses_rights_and_credentials() {
        let mut buf = cmsg(libc::SOL_SOCKET, SCM_RIGHTS, &[3, 0, 0, 0, 4, 0, 0, 0]);
        let c = UCred {
            pid: 5,
            uid: 6,
            gid: 7,
        };
        buf.extend(cmsg(libc::SOL_SOCKET, SCM_CREDENTIALS, &c.to_bytes()));
        buf.extend(cmsg(libc::IPPROTO_IP, 99, &[1, 2, 3]));
        let p = parse(&buf).unwrap();
        assert_eq!(p.fds, vec![3, 4]);
        assert_eq!(p.cred, Some(c));
    }

    #[test]
    fn refuses_malformed_control_data() {
        let mut bad = cmsg(libc::SOL_SOCKET, SCM_RIGHTS, &[3, 0, 0, 0]);
        bad[0] = 8; // shorter than a header
        assert_eq!(parse(&bad), Err(Errno::EINVAL));
        let mut long = cmsg(libc::SOL_SOCKET, SCM_RIGHTS, &[3, 0, 0, 0]);
        long[0] = 200; // past the buffer
        assert_eq!(parse(&long), Err(Errno::EINVAL));
        assert_eq!(
            parse(&cmsg(libc::SOL_SOCKET, SCM_CREDENTIALS, &[0; 8])),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            parse(&cmsg(libc::SOL_SOCKET, 77, &[0; 4])),
            Err(Errno::EINVAL)
        );
        let many = vec![0u8; 4 * (SCM_MAX_FD + 1)];
        assert_eq!(
            parse(&cmsg(libc::SOL_SOCKET, SCM_RIGHTS, &many)),
            Err(Errno::EINVAL)
        );
        // A tail shorter than a header is ignored.
        assert_eq!(parse(&[0u8; 15]), Ok(SendControl::default()));
    }

    #[test]
    fn short_receive_buffers_truncate() {
        let mut r = RecvControl::new(cmsg_space(4));
        // CMSG_SPACE(4) has room for two descriptors, as on Linux.
        assert_eq!(r.rights_room(3), 2);
        r.put_rights(&[9, 10], 3);
        assert!(r.truncated);
        assert_eq!(r.bytes.len(), cmsg_space(8));
        let mut r = RecvControl::new(10);
        r.put_cred(UCred::default());
        assert!(r.truncated && r.bytes.is_empty());
        let mut r = RecvControl::new(20);
        r.put_cred(UCred::default());
        assert!(r.truncated);
        assert_eq!(r.bytes.len(), 20);
    }
}
