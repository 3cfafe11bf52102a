//! Signals: rt_sigaction, rt_sigprocmask, sigaltstack, kill, tgkill, tkill.

use super::{Args, SysResult};
use crate::arch::signal_frame::{decode_ucontext, sigreturn_ucontext, UCONTEXT_SIZE};
use crate::arch::UserRegs;
use crate::errno::Errno;
use crate::kernel::signal::{SigAction, SigInfo, SigSet, SI_KERNEL, SI_TKILL, SI_USER};
use crate::kernel::Task;

pub fn rt_sigaction(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(3) != 8 {
        return Err(Errno::EINVAL);
    }
    let signo = a.int(0);
    let old = t.handlers().get(signo)?;
    if a.addr(1) != 0 {
        let mut b = [0u8; SigAction::SIZE];
        t.mm().copy_in(a.addr(1), &mut b)?;
        t.handlers().set(signo, SigAction::from_bytes(&b))?;
    }
    if a.addr(2) != 0 {
        t.mm().copy_out(a.addr(2), &old.to_bytes())?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(3) != 8 {
        return Err(Errno::EINVAL);
    }
    let old = t.signal_mask();
    if a.addr(1) != 0 {
        let mut b = [0u8; 8];
        t.mm().copy_in(a.addr(1), &mut b)?;
        let set = u64::from_le_bytes(b);
        let new = match a.int(0) {
            libc::SIG_BLOCK => old.0 | set,
            libc::SIG_UNBLOCK => old.0 & !set,
            libc::SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        t.set_signal_mask(SigSet(new));
    }
    if a.addr(2) != 0 {
        t.mm().copy_out(a.addr(2), &old.0.to_le_bytes())?;
    }
    Ok(0)
}

/// `stack_t` is recorded so sigaltstack reports back what was set.
pub fn sigaltstack(t: &mut Task, a: &Args) -> SysResult {
    const SS_DISABLE: u32 = 2;
    let old = t.alt_stack();
    if a.addr(0) != 0 {
        let mut b = [0u8; 24];
        t.mm().copy_in(a.addr(0), &mut b)?;
        let sp = u64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let flags = u32::from_le_bytes(b[8..12].try_into().map_err(|_| Errno::EFAULT)?);
        let size = u64::from_le_bytes(b[16..24].try_into().map_err(|_| Errno::EFAULT)?);
        if flags & !SS_DISABLE != 0 {
            return Err(Errno::EINVAL);
        }
        t.set_alt_stack(if flags & SS_DISABLE != 0 {
            (0, SS_DISABLE, 0)
        } else {
            (sp, 0, size)
        });
    }
    if a.addr(1) != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&old.0.to_le_bytes());
        let flags = if old.2 == 0 { SS_DISABLE } else { old.1 };
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&old.2.to_le_bytes());
        t.mm().copy_out(a.addr(1), &b)?;
    }
    Ok(0)
}

/// The siginfo of a signal `t` sends with kill/tkill/tgkill; None for
/// signal 0, which only checks that the target exists.
fn user_signal(t: &Task, signo: i32, code: i32) -> Result<Option<SigInfo>, Errno> {
    if signo == 0 {
        return Ok(None);
    }
    if !(1..=64).contains(&signo) {
        return Err(Errno::EINVAL);
    }
    Ok(Some(SigInfo {
        signo,
        code,
        addr: 0,
        pid: t.tgid(),
        uid: t.creds().uid,
    }))
}

/// Sends `signo` to the calling task; it is delivered when the syscall
/// returns (before the application runs again).
fn send_to_self(t: &mut Task, signo: i32, code: i32) -> SysResult {
    if let Some(info) = user_signal(t, signo, code)? {
        t.send_signal(info);
    }
    Ok(0)
}

/// rt_sigreturn: back from a handler to where the signal interrupted the
/// task, with its registers, FP state and signal mask. A frame that cannot
/// be read or restored never returns an error (the caller has no stack to
/// return to): as Linux's `badframe`, the task gets SIGSEGV, forced.
pub fn rt_sigreturn(t: &mut Task, _: &Args) -> SysResult {
    match restore_frame(t) {
        Ok(rax) => Ok(rax),
        Err(why) => {
            tracing::debug!(tid = t.tid(), %why, "rt_sigreturn: bad frame");
            t.force_fault(libc::SIGSEGV, SI_KERNEL, 0);
            Ok(0)
        }
    }
}

/// Why rt_sigreturn could not restore a frame.
#[derive(Debug, thiserror::Error)]
enum SigreturnError {
    #[error("the ucontext is not readable: {0:?}")]
    Unreadable(Errno),
    #[error(transparent)]
    Bad(#[from] crate::arch::signal_frame::BadFrame),
    #[error("the FP state is not readable: {0:?}")]
    FpUnreadable(Errno),
    #[error("the FP state is refused: {0}")]
    Fp(platform::PlatformError),
}

/// Restores the interrupted registers, FP state and mask from the frame;
/// nothing changes unless all of it is good. The interrupted code's rax.
fn restore_frame(t: &mut Task) -> Result<u64, SigreturnError> {
    let uc_addr = sigreturn_ucontext(t.regs());
    let mut uc = [0u8; UCONTEXT_SIZE];
    t.mm()
        .copy_in(uc_addr, &mut uc)
        .map_err(SigreturnError::Unreadable)?;
    let mut regs = *t.regs();
    let restored = decode_ucontext(&uc, &mut regs)?;
    if restored.fpstate != 0 {
        let mut fp = t.fp_state().map_err(SigreturnError::Fp)?;
        t.mm()
            .copy_in(restored.fpstate, &mut fp.xsave)
            .map_err(SigreturnError::FpUnreadable)?;
        // The software bytes are the kernel's note to itself, not state.
        t.set_fp_state(&fp).map_err(SigreturnError::Fp)?;
    }
    *t.regs_mut() = regs;
    t.set_signal_mask(SigSet(restored.mask));
    // The return value is the interrupted code's rax, not a result.
    Ok(regs.syscall_return())
}

pub fn kill(t: &mut Task, a: &Args) -> SysResult {
    let pid = a.int(0);
    if pid != t.tgid() && pid != 0 && pid != -1 {
        return Err(Errno::ESRCH);
    }
    send_to_self(t, a.int(1), SI_USER)
}

pub fn tgkill(t: &mut Task, a: &Args) -> SysResult {
    if a.int(0) != t.tgid() {
        return Err(Errno::ESRCH);
    }
    send_to_thread(t, a.int(1), a.int(2))
}

/// A thread-directed signal: to the caller itself, or queued on a sibling
/// thread, which is interrupted so that it delivers it promptly.
fn send_to_thread(t: &mut Task, tid: i32, signo: i32) -> SysResult {
    if tid == t.tid() {
        return send_to_self(t, signo, SI_TKILL);
    }
    let member = t.tg().member(tid).ok_or(Errno::ESRCH)?;
    if let Some(info) = user_signal(t, signo, SI_TKILL)? {
        member.queue(info);
    }
    Ok(0)
}

pub fn tkill(t: &mut Task, a: &Args) -> SysResult {
    send_to_thread(t, a.int(0), a.int(1))
}

/// rt_sigpending: the pending signals that are blocked (the others have
/// been delivered by the time the application can ask).
pub fn rt_sigpending(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(1) != 8 {
        return Err(Errno::EINVAL);
    }
    let set = t
        .pending()
        .iter()
        .fold(0u64, |acc, p| acc | SigSet::bit(p.signo))
        & t.signal_mask().0;
    t.mm().copy_out(a.addr(0), &set.to_le_bytes())?;
    Ok(0)
}

/// pause: sleeps until a signal is delivered (EINTR). A stop for a
/// checkpoint restarts it.
pub fn pause(t: &mut Task, _: &Args) -> SysResult {
    loop {
        if t.has_deliverable_signal() {
            return Err(Errno::EINTR);
        }
        // Interrupted: a signal from another thread was queued (EINTR on
        // the next pass) or the task is being stopped (restart).
        if t.interrupt()
            .sleep(std::time::Duration::from_secs(3600))
            .is_err()
            && !t.has_deliverable_signal()
        {
            return Err(super::ERESTARTSYS);
        }
    }
}
