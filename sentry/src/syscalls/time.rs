//! Clocks and sleeping: clock_gettime, clock_getres, gettimeofday, time,
//! nanosleep, clock_nanosleep, restart_syscall.

use crate::kernel::task::RestartSleep;
use std::time::Duration;

use super::{Args, SysResult, ERESTARTSYS, ERESTART_RESTARTBLOCK};
use crate::errno::Errno;
use crate::kernel::time::{to_timespec, ClockId, Nanos, Sleep, SleepInterrupted};
use crate::kernel::Task;

fn read_clock(t: &Task, id: ClockId) -> Nanos {
    match id {
        ClockId::Realtime => t.kernel().clocks.realtime(),
        ClockId::Monotonic | ClockId::Boottime => t.kernel().clocks.monotonic(),
        ClockId::ProcessCputime | ClockId::ThreadCputime => t.cpu_time().as_nanos() as Nanos,
    }
}

fn timespec_bytes(ns: Nanos) -> [u8; 16] {
    let (sec, nsec) = to_timespec(ns);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_le_bytes());
    b[8..].copy_from_slice(&nsec.to_le_bytes());
    b
}

/// Reads a `struct timespec`, rejecting what Linux rejects.
pub(super) fn read_timespec(t: &Task, addr: u64) -> Result<Nanos, Errno> {
    let mut b = [0u8; 16];
    t.mm().copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let nsec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(sec.saturating_mul(1_000_000_000).saturating_add(nsec))
}

pub fn clock_gettime(t: &mut Task, a: &Args) -> SysResult {
    let id = ClockId::from_raw(a.int(0))?;
    let now = read_clock(t, id);
    t.mm().copy_out(a.addr(1), &timespec_bytes(now))?;
    Ok(0)
}

pub fn clock_getres(t: &mut Task, a: &Args) -> SysResult {
    ClockId::from_raw(a.int(0))?;
    if a.addr(1) != 0 {
        t.mm().copy_out(a.addr(1), &timespec_bytes(1))?;
    }
    Ok(0)
}

pub fn gettimeofday(t: &mut Task, a: &Args) -> SysResult {
    if a.addr(0) != 0 {
        let (sec, nsec) = to_timespec(t.kernel().clocks.realtime());
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&sec.to_le_bytes());
        b[8..].copy_from_slice(&(nsec / 1000).to_le_bytes());
        t.mm().copy_out(a.addr(0), &b)?;
    }
    if a.addr(1) != 0 {
        // struct timezone: UTC, as the sandbox has no timezone of its own.
        t.mm().copy_out(a.addr(1), &[0u8; 8])?;
    }
    Ok(0)
}

pub fn time(t: &mut Task, a: &Args) -> SysResult {
    let (sec, _) = to_timespec(t.kernel().clocks.realtime());
    if a.addr(0) != 0 {
        t.mm().copy_out(a.addr(0), &sec.to_le_bytes())?;
    }
    Ok(sec as u64)
}

/// Sleeps as `s` says. `rem` (0: none) receives the time left when a
/// relative sleep is interrupted.
fn sleep(t: &mut Task, s: Sleep, rem: u64) -> SysResult {
    t.set_restart(None);
    let left = s.remaining(&t.kernel().clocks);
    if left == 0
        || t.interrupt()
            .sleep(Duration::from_nanos(left as u64))
            .is_ok()
    {
        return Ok(0);
    }
    let write_rem = |t: &Task, remaining: Nanos| -> Result<(), Errno> {
        if rem != 0 {
            t.mm().copy_out(rem, &timespec_bytes(remaining))?;
        }
        Ok(())
    };
    match s.interrupted(&t.kernel().clocks, t.has_deliverable_signal()) {
        SleepInterrupted::Elapsed => Ok(0),
        SleepInterrupted::Eintr { remaining } => {
            if let Some(r) = remaining {
                write_rem(t, r)?;
            }
            Err(Errno::EINTR)
        }
        SleepInterrupted::RestartBlock { remaining } => {
            write_rem(t, remaining)?;
            t.set_restart(Some(RestartSleep {
                deadline: s.deadline,
                clock: s.clock,
                rem: (rem != 0).then_some(rem),
            }));
            Err(ERESTART_RESTARTBLOCK)
        }
        SleepInterrupted::Reexecute => Err(ERESTARTSYS),
    }
}

pub fn nanosleep(t: &mut Task, a: &Args) -> SysResult {
    let d = read_timespec(t, a.addr(0))?;
    let s = Sleep::relative(&t.kernel().clocks, d);
    sleep(t, s, a.addr(1))
}

pub fn clock_nanosleep(t: &mut Task, a: &Args) -> SysResult {
    const TIMER_ABSTIME: u32 = 1;
    let clock = match ClockId::from_raw(a.int(0))? {
        ClockId::ThreadCputime => return Err(Errno::EINVAL),
        // Sleeping on a CPU clock while not running would never end; Linux
        // supports it, cryo does not yet.
        ClockId::ProcessCputime => return Err(Errno::EOPNOTSUPP),
        c => c,
    };
    let ts = read_timespec(t, a.addr(2))?;
    if a.uint(1) & TIMER_ABSTIME != 0 {
        sleep(t, Sleep::absolute(clock, ts), 0)
    } else {
        let s = Sleep::relative(&t.kernel().clocks, ts);
        sleep(t, s, a.addr(3))
    }
}

/// Continues a relative sleep stopped by a checkpoint (or another stop
/// without a signal handler), to its original deadline.
pub fn restart_syscall(t: &mut Task, _: &Args) -> SysResult {
    match t.restart() {
        Some(r) => sleep(t, Sleep::resumed(r.clock, r.deadline), r.rem.unwrap_or(0)),
        None => Err(Errno::EINTR),
    }
}
