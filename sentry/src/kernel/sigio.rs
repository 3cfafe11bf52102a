//! The kernel's side of signal-driven I/O (vfs/fasync.rs): finding a
//! file's owner and sending it SIGIO or its F_SETSIG signal, as Linux's
//! send_sigio does.

use std::sync::Arc;

use super::creds::Credentials;
use super::sessions::init_protected;
use super::signal::{SigInfo, SI_KERNEL};
use super::thread_group::ThreadGroup;
use super::Kernel;
use crate::vfs::fasync::{band_of, FileOwner, IoSignals, F_OWNER_PGRP, F_OWNER_PID, F_OWNER_TID};

/// Linux's sigio_perm: the owner's setter is root, or one of its ids
/// matches the target's real or saved user id.
fn may_signal(owner: &FileOwner, target: &Credentials) -> bool {
    owner.euid == 0
        || [owner.euid, owner.uid]
            .iter()
            .any(|&id| id == target.uid || id == target.suid)
}

fn io_signal(signo: i32, reason: i32, fd: i32) -> SigInfo {
    if signo == 0 {
        return SigInfo {
            signo: libc::SIGIO,
            code: SI_KERNEL,
            addr: 0,
            pid: 0,
            uid: 0,
        };
    }
    // siginfo's _sigpoll: si_band (a long) where si_pid and si_uid are,
    // then si_fd.
    let band = band_of(reason);
    SigInfo {
        signo,
        code: reason,
        addr: fd as u32 as u64,
        pid: band as i32,
        uid: (band >> 32) as u32,
    }
}

impl IoSignals for Kernel {
    fn send_io_signal(&self, owner: &FileOwner, signo: i32, reason: i32, fd: i32) {
        let info = io_signal(signo, reason, fd);
        let allowed = |tg: &ThreadGroup| {
            !init_protected(tg, info.signo) && tg.creds().is_some_and(|c| may_signal(owner, &c))
        };
        match owner.kind {
            F_OWNER_TID => {
                let Some(tg) = self
                    .pids
                    .tgid_of(owner.id)
                    .and_then(|tgid| self.process(tgid))
                else {
                    return;
                };
                if let Some(member) = tg.member(owner.id).filter(|_| allowed(&tg)) {
                    self.on_generate(&tg, info.signo);
                    member.queue(info);
                }
            }
            F_OWNER_PID | F_OWNER_PGRP => {
                let targets: Vec<Arc<ThreadGroup>> = if owner.kind == F_OWNER_PID {
                    self.process(owner.id).into_iter().collect()
                } else {
                    self.process_group(owner.id)
                };
                for tg in targets.iter().filter(|tg| allowed(tg)) {
                    self.send_to_process(tg, info);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigpoll_layout() {
        let b = io_signal(libc::SIGRTMIN(), crate::vfs::fasync::POLL_IN, 7).to_bytes();
        assert_eq!(i64::from_le_bytes(b[16..24].try_into().unwrap()), 0x41);
        assert_eq!(i32::from_le_bytes(b[24..28].try_into().unwrap()), 7);
        assert_eq!(i32::from_le_bytes(b[8..12].try_into().unwrap()), 1);
        let plain = io_signal(0, crate::vfs::fasync::POLL_IN, 7);
        assert_eq!((plain.signo, plain.code), (libc::SIGIO, SI_KERNEL));
    }
}
