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
    #[error("the FP state's XSTATE_BV {0:#x} names components XCR0 does not enable")]
    XstateBv(u64),
}

/// XRSTOR's #GP (which Linux's sigreturn turns into SIGSEGV): XSTATE_BV,
/// the header's first word, may name only components XCR0 enables.
fn check_xstate_bv(xsave: &[u8]) -> Result<(), SigreturnError> {
    let Some(word) = xsave.get(512..520) else {
        return Ok(());
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(word);
    let bv = u64::from_le_bytes(b);
    if bv & !platform::host_xfeatures() != 0 {
        return Err(SigreturnError::XstateBv(bv));
    }
    Ok(())
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
        check_xstate_bv(&fp.xsave)?;
        // The software bytes are the kernel's note to itself, not state.
        t.set_fp_state(&fp).map_err(SigreturnError::Fp)?;
    }
    *t.regs_mut() = regs;
    t.set_signal_mask(SigSet(restored.mask));
    // The return value is the interrupted code's rax, not a result.
    Ok(regs.syscall_return())
}

/// kill(pid, sig): one process, the caller's group (0), every process
/// it may signal (-1) or group -pid.
///
/// A target the caller may not signal is skipped: EPERM when that leaves
/// none of one process or group, but kill(-1) succeeds anyway, as Linux's
/// kill_something_info.
pub fn kill(t: &mut Task, a: &Args) -> SysResult {
    let (pid, signo) = (a.int(0), a.int(1));
    let info = user_signal(t, signo, SI_USER)?;
    let targets = t.kill_targets(pid)?;
    let mut sent = false;
    for tg in targets {
        if !t.may_signal(&tg, signo) {
            continue;
        }
        sent = true;
        if let Some(info) = info {
            t.signal_process_from_here(&tg, info);
        }
    }
    if !sent && pid != -1 {
        return Err(Errno::EPERM);
    }
    Ok(0)
}

pub fn tgkill(t: &mut Task, a: &Args) -> SysResult {
    if a.int(0) <= 0 || a.int(1) <= 0 {
        return Err(Errno::EINVAL);
    }
    send_to_thread(t, Some(a.int(0)), a.int(1), a.int(2))
}

/// A thread-directed signal: to the caller itself, or queued on another
/// thread (of any process; `tgid` checks it is that process's), which is
/// interrupted so that it delivers it promptly.
fn send_to_thread(t: &mut Task, tgid: Option<i32>, tid: i32, signo: i32) -> SysResult {
    if tid == t.tid() && tgid.is_none_or(|g| g == t.tgid()) {
        if let Some(info) = user_signal(t, signo, SI_TKILL)? {
            let tg = t.tg().clone();
            t.kernel().on_generate(&tg, signo);
            t.send_signal(info);
        }
        return Ok(0);
    }
    let owner = t.kernel().pids.tgid_of(tid).ok_or(Errno::ESRCH)?;
    if tgid.is_some_and(|g| g != owner) {
        return Err(Errno::ESRCH);
    }
    let tg = t.kernel().process(owner).ok_or(Errno::ESRCH)?;
    let member = tg.member(tid).ok_or(Errno::ESRCH)?;
    let info = user_signal(t, signo, SI_TKILL)?;
    if !t.may_signal(&tg, signo) {
        return Err(Errno::EPERM);
    }
    if let Some(info) = info {
        t.kernel().on_generate(&tg, signo);
        tg.queue_to(&member, info);
    }
    Ok(0)
}

pub fn tkill(t: &mut Task, a: &Args) -> SysResult {
    if a.int(0) <= 0 {
        return Err(Errno::EINVAL);
    }
    send_to_thread(t, None, a.int(0), a.int(1))
}

/// rt_sigpending: the pending signals that are blocked (the others have
/// been delivered by the time the application can ask).
pub fn rt_sigpending(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(1) != 8 {
        return Err(Errno::EINVAL);
    }
    let set = t
        .all_pending()
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
            return Err(super::ERESTARTNOHAND);
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

/// rt_sigsuspend: waits with `mask` blocked until a signal's handler is to
/// run (EINTR); the handler returns to the mask from before the call. A
/// stop for a checkpoint restarts it.
pub fn rt_sigsuspend(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(1) != 8 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    t.mm().copy_in(a.addr(0), &mut b)?;
    t.set_temporary_mask(SigSet(u64::from_le_bytes(b)));
    loop {
        if t.has_deliverable_signal() {
            return Err(super::ERESTARTNOHAND);
        }
        if t.interrupt()
            .sleep(std::time::Duration::from_secs(3600))
            .is_err()
            && !t.has_deliverable_signal()
        {
            // The mask comes back before the task is saved; the restarted
            // call sets it again.
            t.restore_temporary_mask();
            return Err(super::ERESTARTSYS);
        }
    }
}

/// Reads a signal set argument of `size` bytes (EINVAL unless 8).
fn sigset_arg(t: &Task, addr: u64, size: u64) -> Result<SigSet, Errno> {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    t.mm().copy_in(addr, &mut b)?;
    Ok(SigSet(u64::from_le_bytes(b)))
}

/// rt_sigtimedwait: takes a pending signal of `set` (the lowest-numbered
/// first), waiting up to the timeout (EAGAIN) for one; EINTR if another
/// signal's handler is to run meanwhile.
pub fn rt_sigtimedwait(t: &mut Task, a: &Args) -> SysResult {
    let set = sigset_arg(t, a.addr(0), a.raw(3))?.without_unblockable();
    let timeout = if a.addr(2) == 0 {
        None
    } else {
        Some(super::time::read_timespec(t, a.addr(2))?)
    };
    let deadline = match timeout {
        Some(d) => super::poll::resumed_deadline(t, Some(d)),
        None => None,
    };
    t.set_waiting(set);
    let r = sigtimedwait_until(t, a, set, deadline);
    t.set_waiting(crate::kernel::signal::SigSet::default());
    super::poll::keep_for_restart(t, deadline, &r);
    r
}

fn sigtimedwait_until(
    t: &mut Task,
    a: &Args,
    set: SigSet,
    deadline: Option<crate::kernel::time::Nanos>,
) -> SysResult {
    let clocks = t.kernel().clocks;
    loop {
        let taken = t.pending_signals().take(set);
        if let Some(mut info) = taken {
            if info.code == crate::kernel::signal::SI_TIMER {
                info.uid = t.tg().itimers().posix_delivered(info.pid, info.uid);
            }
            if a.addr(1) != 0 {
                t.mm().copy_out(a.addr(1), &info.to_bytes())?;
            }
            return Ok(info.signo as u64);
        }
        if t.has_deliverable_signal() {
            return Err(super::ERESTARTNOHAND);
        }
        let left = match deadline {
            Some(d) => {
                let left = d - clocks.monotonic();
                if left <= 0 {
                    return Err(Errno::EAGAIN);
                }
                std::time::Duration::from_nanos(left as u64)
            }
            None => std::time::Duration::from_secs(3600),
        };
        if t.interrupt().sleep(left).is_err() {
            // A signal was queued (looked at on the next pass) or the task
            // is being stopped.
            if t.any_pending(|p| set.contains(p.signo)) || t.has_deliverable_signal() {
                // The interrupt stays set until the task next runs: a
                // plain sleep would return at once, so look again now.
                continue;
            }
            return Err(super::ERESTARTNOHAND);
        }
    }
}

/// The siginfo rt_sigqueueinfo sends: the caller's bytes, with si_signo
/// set to `signo`. Like Linux, a caller may not pose as the kernel or as
/// kill(2) to another process (EPERM for si_code >= 0 or SI_TKILL).
fn queued_info(t: &Task, signo: i32, addr: u64, to_self: bool) -> Result<SigInfo, Errno> {
    let mut b = [0u8; 128];
    t.mm().copy_in(addr, &mut b)?;
    if !(0..=64).contains(&signo) {
        return Err(Errno::EINVAL);
    }
    let code = i32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if (code >= 0 || code == SI_TKILL) && !to_self {
        return Err(Errno::EPERM);
    }
    Ok(SigInfo {
        signo,
        code,
        addr: u64::from_le_bytes(b[24..32].try_into().map_err(|_| Errno::EFAULT)?),
        pid: i32::from_le_bytes([b[16], b[17], b[18], b[19]]),
        uid: u32::from_le_bytes([b[20], b[21], b[22], b[23]]),
    })
}

/// rt_sigqueueinfo: a process-directed signal with the caller's siginfo.
pub fn rt_sigqueueinfo(t: &mut Task, a: &Args) -> SysResult {
    let tgid = a.int(0);
    let tg = t.kernel().pids.thread_group(tgid).ok_or(Errno::ESRCH)?;
    // Linux compares with the calling thread's id, not its process's.
    let info = queued_info(t, a.int(1), a.addr(2), tgid == t.tid())?;
    if !t.may_signal(&tg, info.signo) {
        return Err(Errno::EPERM);
    }
    if info.signo == 0 {
        // Signal 0 only checks that the process exists.
        return Ok(0);
    }
    // To its own process too: pending on the process, the caller taking
    // it before it returns if it does not block it.
    if !tg.signal_process_from(info, t.tid()) {
        return Err(Errno::ESRCH);
    }
    Ok(0)
}

/// rt_tgsigqueueinfo: the same to one thread.
pub fn rt_tgsigqueueinfo(t: &mut Task, a: &Args) -> SysResult {
    let (tgid, tid) = (a.int(0), a.int(1));
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let tg = t.kernel().pids.thread_group(tgid).ok_or(Errno::ESRCH)?;
    let info = queued_info(t, a.int(2), a.addr(3), tid == t.tid())?;
    let member = tg.member(tid).ok_or(Errno::ESRCH)?;
    if !t.may_signal(&tg, info.signo) {
        return Err(Errno::EPERM);
    }
    if info.signo == 0 {
        return Ok(0);
    }
    if tid == t.tid() {
        t.send_signal(info);
        return Ok(0);
    }
    tg.queue_to(&member, info);
    Ok(0)
}

/// signalfd4 (and signalfd, flags 0): a new signalfd, or a new mask for
/// the signalfd `fd`.
pub fn signalfd4(t: &mut Task, a: &Args) -> SysResult {
    let flags = a.int(3);
    if flags & !(libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let mask = sigset_arg(t, a.addr(1), a.raw(2))?;
    let fd = a.fd(0);
    if fd != -1 {
        let f = t.fds().lock().file(fd)?;
        let sfd = crate::vfs::signalfd::signalfd_of(&f).ok_or(Errno::EINVAL)?;
        sfd.set_mask(mask);
        return Ok(fd as u64);
    }
    let f = crate::vfs::signalfd::SignalFd::open(mask, flags & libc::SFD_NONBLOCK);
    let limit = t.nofile_limit();
    t.fds()
        .lock()
        .insert(f, flags & libc::SFD_CLOEXEC != 0, limit)
        .map(|fd| fd as u64)
}

pub fn signalfd(t: &mut Task, a: &Args) -> SysResult {
    signalfd4(t, &Args([a.raw(0), a.raw(1), a.raw(2), 0, 0, 0]))
}
