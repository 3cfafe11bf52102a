//! Signal dispositions and masks (gVisor's kernel/signal_handlers.go).
//!
//! Handlers are recorded with Linux's rules; delivering a signal to a handler
//! (building the rt_sigframe) is not implemented yet, so a signal that must be
//! delivered to a handler terminates the task as its default action would,
//! and says so in the debug log.

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// Linux's _NSIG.
pub const NSIG: usize = 64;

/// A set of signals, bit N-1 for signal N (the kernel's sigset_t).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigSet(pub u64);
statefile::versioned!(SigSet, "kernel.SigSet", 1);

impl SigSet {
    /// SIGKILL and SIGSTOP can never be blocked.
    pub const UNBLOCKABLE: SigSet = SigSet((1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1)));

    pub fn without_unblockable(self) -> SigSet {
        SigSet(self.0 & !Self::UNBLOCKABLE.0)
    }
}

/// `struct sigaction` as the kernel's rt_sigaction sees it: the same on
/// x86_64 and arm64 (both have sa_restorer), as gVisor's one linux.SigAction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: SigSet,
}
statefile::versioned!(SigAction, "kernel.SigAction", 1, [SigSet]);

impl SigAction {
    pub const SIZE: usize = 32;

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> SigAction {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        SigAction {
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: SigSet(word(3)),
        }
    }

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask.0]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    pub fn is_default(&self) -> bool {
        self.handler == libc::SIG_DFL as u64
    }

    pub fn is_ignored(&self) -> bool {
        self.handler == libc::SIG_IGN as u64
    }
}

/// The dispositions of all signals of a thread group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalHandlers {
    actions: Vec<SigAction>,
}
statefile::versioned!(SignalHandlers, "kernel.SignalHandlers", 1, [SigAction]);

impl Default for SignalHandlers {
    fn default() -> Self {
        SignalHandlers {
            actions: vec![SigAction::default(); NSIG],
        }
    }
}

fn index(signo: i32) -> Result<usize, Errno> {
    if (1..=NSIG as i32).contains(&signo) {
        Ok(signo as usize - 1)
    } else {
        Err(Errno::EINVAL)
    }
}

impl SignalHandlers {
    pub fn get(&self, signo: i32) -> Result<SigAction, Errno> {
        Ok(self.actions[index(signo)?])
    }

    /// rt_sigaction's update: SIGKILL and SIGSTOP cannot be changed.
    pub fn set(&mut self, signo: i32, mut action: SigAction) -> Result<SigAction, Errno> {
        let i = index(signo)?;
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        action.mask = action.mask.without_unblockable();
        Ok(std::mem::replace(&mut self.actions[i], action))
    }

    /// execve resets caught signals to their default; ignored ones stay ignored.
    pub fn reset_for_exec(&mut self) {
        for a in &mut self.actions {
            if !a.is_ignored() {
                *a = SigAction::default();
            }
        }
    }

    pub fn validate(&self) -> bool {
        self.actions.len() == NSIG
    }
}

/// What a signal does by default (signal(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    Terminate,
    CoreDump,
    Ignore,
    Stop,
    Continue,
}

/// Whether a signal is discarded when it is sent (Linux's sig_ignored):
/// its action ignores it (SIG_IGN, or a default that ignores, SIGCONT's
/// included: its continuing is done at generation) and the receiving
/// thread does not block it (a blocked one waits, as its handler may
/// change first and sigwaitinfo or a signalfd may take it). Such a signal
/// never wakes a sleeper.
pub fn ignored_at_send(handlers: &SignalHandlers, signo: i32, blocked: bool) -> bool {
    if signo == libc::SIGKILL || blocked {
        return false;
    }
    handlers.get(signo).is_ok_and(|a| {
        a.is_ignored()
            || (a.is_default()
                && matches!(
                    default_action(signo),
                    DefaultAction::Ignore | DefaultAction::Continue
                ))
    })
}

pub fn default_action(signo: i32) -> DefaultAction {
    match signo {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH => DefaultAction::Ignore,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => DefaultAction::Stop,
        libc::SIGCONT => DefaultAction::Continue,
        libc::SIGQUIT
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGSEGV
        | libc::SIGXCPU
        | libc::SIGXFSZ
        | libc::SIGSYS => DefaultAction::CoreDump,
        _ => DefaultAction::Terminate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_signals_are_discarded_at_send_unless_blocked() {
        let mut h = SignalHandlers::default();
        // Default-ignored ones, SIGCONT's included, and SIGKILL never.
        assert!(ignored_at_send(&h, libc::SIGCHLD, false));
        assert!(ignored_at_send(&h, libc::SIGCONT, false));
        assert!(!ignored_at_send(&h, libc::SIGTERM, false));
        assert!(!ignored_at_send(&h, libc::SIGKILL, false));
        // A blocked one waits for sigwaitinfo, a signalfd or a new handler.
        assert!(!ignored_at_send(&h, libc::SIGCHLD, true));
        let ign = SigAction {
            handler: libc::SIG_IGN as u64,
            ..SigAction::default()
        };
        h.set(libc::SIGTERM, ign).unwrap();
        assert!(ignored_at_send(&h, libc::SIGTERM, false));
        let caught = SigAction {
            handler: 0x1000,
            ..SigAction::default()
        };
        h.set(libc::SIGCHLD, caught).unwrap();
        assert!(!ignored_at_send(&h, libc::SIGCHLD, false));
        assert!(
            !ignored_at_send(&h, 0, false),
            "an invalid number is not ours to drop"
        );
    }

    #[test]
    fn sigaction_bytes_round_trip() {
        let a = SigAction {
            handler: 0x1234,
            flags: 0x0400_0000,
            restorer: 0x5678,
            mask: SigSet(0b1010),
        };
        assert_eq!(SigAction::from_bytes(&a.to_bytes()), a);
    }

    #[test]
    fn kill_and_stop_cannot_be_caught() {
        let mut h = SignalHandlers::default();
        let a = SigAction {
            handler: 0x1000,
            ..Default::default()
        };
        assert_eq!(h.set(libc::SIGKILL, a), Err(Errno::EINVAL));
        assert_eq!(h.set(0, a), Err(Errno::EINVAL));
        assert_eq!(h.set(65, a), Err(Errno::EINVAL));
        assert!(h.set(libc::SIGINT, a).is_ok());
        assert_eq!(h.get(libc::SIGINT).unwrap().handler, 0x1000);
        h.reset_for_exec();
        assert!(h.get(libc::SIGINT).unwrap().is_default());
    }
}

/// A queued signal: what the handler's `siginfo_t` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigInfo {
    pub signo: i32,
    pub code: i32,
    /// For faults: the address (si_addr, the union's first word). For
    /// every other signal: the union's word after si_pid and si_uid
    /// (si_status of SIGCHLD, si_value of sigqueue and timers).
    pub addr: u64,
    /// For kill/tgkill/sigqueue: the sender (si_pid, si_uid). For a POSIX
    /// timer's signal (SI_TIMER): the timer id (si_timerid) and the
    /// overrun count (si_overrun).
    pub pid: i32,
    pub uid: u32,
}
statefile::versioned!(SigInfo, "kernel.SigInfo", 1);

/// si_code of a signal sent with kill(2).
pub const SI_USER: i32 = 0;
/// si_code of a signal sent with tkill/tgkill.
pub const SI_TKILL: i32 = -6;
/// si_code a kernel-generated signal carries (SIGPIPE).
pub const SI_KERNEL: i32 = 0x80;
/// si_code of sigqueue(3) (rt_sigqueueinfo from glibc).
pub const SI_QUEUE: i32 = -1;
/// si_code of a POSIX timer's expiry.
pub const SI_TIMER: i32 = -2;

impl SigInfo {
    /// SIGCHLD (or another exit signal) about child `pid`: `code` is a
    /// CLD_* value, `status` the exit code or signal.
    pub fn child(signo: i32, code: i32, pid: i32, uid: u32, status: i32) -> SigInfo {
        SigInfo {
            signo,
            code,
            addr: status as u32 as u64,
            pid,
            uid,
        }
    }

    /// `siginfo_t` (128 bytes on x86_64).
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&self.signo.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        if is_fault(self.signo) && self.code > 0 {
            b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        } else {
            // si_pid/si_uid, or si_timerid/si_overrun for SI_TIMER: the
            // same offsets; then si_value.
            b[16..20].copy_from_slice(&self.pid.to_le_bytes());
            b[20..24].copy_from_slice(&self.uid.to_le_bytes());
            b[24..32].copy_from_slice(&self.addr.to_le_bytes());
        }
        b
    }
}

/// Signals the CPU raises for the instruction that faulted.
pub fn is_fault(signo: i32) -> bool {
    matches!(
        signo,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP
    )
}

impl SigSet {
    pub fn bit(signo: i32) -> u64 {
        if (1..=NSIG as i32).contains(&signo) {
            1u64 << (signo - 1)
        } else {
            0
        }
    }

    pub fn contains(self, signo: i32) -> bool {
        self.0 & Self::bit(signo) != 0
    }
}

/// SA_* flags cryo honours.
pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_NOCLDWAIT: u64 = 0x2;
pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// Adds `info` to a pending queue: a standard signal already pending is not
/// queued twice (only real-time signals queue several instances).
pub fn enqueue(pending: &mut Vec<SigInfo>, info: SigInfo) {
    if !(info.signo < 32 && pending.iter().any(|p| p.signo == info.signo)) {
        pending.push(info);
    }
}
