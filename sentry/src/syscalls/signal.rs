//! Signals: rt_sigaction, rt_sigprocmask, sigaltstack, kill, tgkill, tkill.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::signal::{default_action, DefaultAction, SigAction, SigSet};
use crate::kernel::Task;

pub fn rt_sigaction(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(3) != 8 {
        return Err(Errno::EINVAL);
    }
    let signo = a.int(0);
    let old = t.signal_handlers.get(signo)?;
    if a.addr(1) != 0 {
        let mut b = [0u8; SigAction::SIZE];
        t.mm.copy_in(a.addr(1), &mut b)?;
        t.signal_handlers.set(signo, SigAction::from_bytes(&b))?;
    }
    if a.addr(2) != 0 {
        t.mm.copy_out(a.addr(2), &old.to_bytes())?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(3) != 8 {
        return Err(Errno::EINVAL);
    }
    let old = t.signal_mask;
    if a.addr(1) != 0 {
        let mut b = [0u8; 8];
        t.mm.copy_in(a.addr(1), &mut b)?;
        let set = u64::from_le_bytes(b);
        let new = match a.int(0) {
            libc::SIG_BLOCK => old.0 | set,
            libc::SIG_UNBLOCK => old.0 & !set,
            libc::SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        t.signal_mask = SigSet(new).without_unblockable();
    }
    if a.addr(2) != 0 {
        t.mm.copy_out(a.addr(2), &old.0.to_le_bytes())?;
    }
    Ok(0)
}

/// `stack_t` is recorded so sigaltstack reports back what was set.
pub fn sigaltstack(t: &mut Task, a: &Args) -> SysResult {
    const SS_DISABLE: u32 = 2;
    let old = t.alt_stack;
    if a.addr(0) != 0 {
        let mut b = [0u8; 24];
        t.mm.copy_in(a.addr(0), &mut b)?;
        let sp = u64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let flags = u32::from_le_bytes(b[8..12].try_into().map_err(|_| Errno::EFAULT)?);
        let size = u64::from_le_bytes(b[16..24].try_into().map_err(|_| Errno::EFAULT)?);
        if flags & !SS_DISABLE != 0 {
            return Err(Errno::EINVAL);
        }
        t.alt_stack = if flags & SS_DISABLE != 0 {
            (0, SS_DISABLE, 0)
        } else {
            (sp, 0, size)
        };
    }
    if a.addr(1) != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&old.0.to_le_bytes());
        let flags = if old.2 == 0 { SS_DISABLE } else { old.1 };
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&old.2.to_le_bytes());
        t.mm.copy_out(a.addr(1), &b)?;
    }
    Ok(0)
}

/// Sends `signo` to the (only) task. Handlers cannot run yet (no signal
/// frames): a caught signal is refused with ENOSYS rather than faked, an
/// ignored or blocked one is dropped as Linux would leave it pending.
fn send_to_self(t: &mut Task, signo: i32) -> SysResult {
    if signo == 0 {
        return Ok(0);
    }
    let action = t.signal_handlers.get(signo)?;
    let blocked = t.signal_mask.0 & (1u64 << (signo - 1)) != 0;
    if signo != libc::SIGKILL && signo != libc::SIGSTOP {
        if action.is_ignored() || blocked {
            return Ok(0);
        }
        if !action.is_default() {
            tracing::warn!(signo, "signal handlers are not supported yet");
            return Err(Errno::ENOSYS);
        }
    }
    if default_action(signo) != DefaultAction::Ignore {
        t.exit_by_signal(signo);
    }
    Ok(0)
}

pub fn kill(t: &mut Task, a: &Args) -> SysResult {
    let pid = a.int(0);
    if pid != t.tgid() && pid != 0 && pid != -1 {
        return Err(Errno::ESRCH);
    }
    send_to_self(t, a.int(1))
}

pub fn tgkill(t: &mut Task, a: &Args) -> SysResult {
    if a.int(0) != t.tgid() || a.int(1) != t.tid {
        return Err(Errno::ESRCH);
    }
    send_to_self(t, a.int(2))
}

pub fn tkill(t: &mut Task, a: &Args) -> SysResult {
    if a.int(0) != t.tid {
        return Err(Errno::ESRCH);
    }
    send_to_self(t, a.int(1))
}
