//! Clocks, sleeping and interval timers: clock_gettime, clock_getres,
//! gettimeofday, time, nanosleep, clock_nanosleep, restart_syscall, alarm,
//! setitimer, getitimer.

use crate::kernel::task::RestartSleep;
use std::time::Duration;

use super::{Args, SysResult, ERESTARTSYS, ERESTART_RESTARTBLOCK};
use crate::errno::Errno;
use crate::kernel::itimer::{ITimerValue, Which};
use crate::kernel::time::{to_timespec, ClockId, Nanos, Sleep, SleepInterrupted};
use crate::kernel::Task;

fn read_clock(t: &Task, id: ClockId) -> Nanos {
    match id {
        ClockId::Realtime => t.kernel().clocks.realtime(),
        ClockId::Monotonic | ClockId::Boottime => t.kernel().clocks.monotonic(),
        // Time the application ran (user) and the Sentry worked for it
        // (system): never a blocked sleep.
        ClockId::ThreadCputime => t.thread_usage().total().as_nanos() as Nanos,
        ClockId::ProcessCputime => t.tg().attrs().usage().total().as_nanos() as Nanos,
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

/// Reads a `struct timeval` of a `struct itimerval`: EINVAL for a negative
/// second or a microsecond outside 0..1e6, as Linux's timeval_valid.
fn read_timeval(b: &[u8; 16]) -> Result<Nanos, Errno> {
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let usec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(Errno::EINVAL);
    }
    Ok(sec
        .saturating_mul(1_000_000_000)
        .saturating_add(usec * 1_000))
}

/// A `struct itimerval` (interval first, then value), microseconds
/// truncated from nanoseconds as Linux's ns_to_timeval.
fn itimerval_bytes(v: ITimerValue) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, ns) in [v.interval, v.value].into_iter().enumerate() {
        let (sec, nsec) = to_timespec(ns);
        b[i * 16..i * 16 + 8].copy_from_slice(&sec.to_le_bytes());
        b[i * 16 + 8..i * 16 + 16].copy_from_slice(&(nsec / 1_000).to_le_bytes());
    }
    b
}

fn set_itimer(t: &Task, which: Which, new: ITimerValue) -> ITimerValue {
    let now = t.kernel().clocks.monotonic();
    let timers = t.tg().itimers();
    let old = timers.set(which, new, now);
    timers.start(t.kernel(), t.tg());
    old
}

pub fn setitimer(t: &mut Task, a: &Args) -> SysResult {
    let which = Which::from_raw(a.int(0))?;
    // A null new value disarms, as Linux (with a warning) still allows.
    let new = if a.addr(1) == 0 {
        ITimerValue::default()
    } else {
        let mut b = [0u8; 32];
        t.mm().copy_in(a.addr(1), &mut b)?;
        let half = |i: usize| -> Result<[u8; 16], Errno> {
            b[i * 16..i * 16 + 16].try_into().map_err(|_| Errno::EFAULT)
        };
        ITimerValue {
            interval: read_timeval(&half(0)?)?,
            value: read_timeval(&half(1)?)?,
        }
    };
    let old = set_itimer(t, which, new);
    if a.addr(2) != 0 {
        t.mm().copy_out(a.addr(2), &itimerval_bytes(old))?;
    }
    Ok(0)
}

pub fn getitimer(t: &mut Task, a: &Args) -> SysResult {
    let which = Which::from_raw(a.int(0))?;
    let v = t.tg().itimers().get(which, t.kernel().clocks.monotonic());
    t.mm().copy_out(a.addr(1), &itimerval_bytes(v))?;
    Ok(0)
}

/// The seconds alarm(2) returns for the time an earlier alarm had left:
/// rounded to the nearest second, and never 0 for an alarm still pending
/// (Linux's alarm_setitimer works on the timeval's seconds and
/// microseconds).
fn alarm_seconds(remaining: Nanos) -> u64 {
    let (sec, nsec) = to_timespec(remaining);
    let usec = nsec / 1_000;
    let sec = if (sec == 0 && usec != 0) || usec >= 500_000 {
        sec + 1
    } else {
        sec
    };
    sec.max(0) as u64
}

/// alarm: ITIMER_REAL once, in whole seconds (0 cancels); the seconds the
/// previous alarm had left.
pub fn alarm(t: &mut Task, a: &Args) -> SysResult {
    let new = ITimerValue {
        value: i64::from(a.uint(0)) * 1_000_000_000,
        interval: 0,
    };
    let old = set_itimer(t, Which::Real, new);
    Ok(alarm_seconds(old.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_rounds_like_linux() {
        assert_eq!(alarm_seconds(0), 0);
        assert_eq!(alarm_seconds(1_000), 1);
        assert_eq!(alarm_seconds(999), 0);
        assert_eq!(alarm_seconds(2_499_999_000), 2);
        assert_eq!(alarm_seconds(2_500_000_000), 3);
        assert_eq!(alarm_seconds(3_000_000_000), 3);
    }

    #[test]
    fn timevals_are_checked_and_written_interval_first() {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&2i64.to_le_bytes());
        b[8..].copy_from_slice(&999_999i64.to_le_bytes());
        assert_eq!(read_timeval(&b), Ok(2_999_999_000));
        b[8..].copy_from_slice(&1_000_000i64.to_le_bytes());
        assert_eq!(read_timeval(&b), Err(Errno::EINVAL));
        b[8..].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(read_timeval(&b), Err(Errno::EINVAL));
        let out = itimerval_bytes(ITimerValue {
            value: 1_500_000_999,
            interval: 20_000_000,
        });
        assert_eq!(i64::from_le_bytes(out[..8].try_into().unwrap()), 0);
        assert_eq!(i64::from_le_bytes(out[8..16].try_into().unwrap()), 20_000);
        assert_eq!(i64::from_le_bytes(out[16..24].try_into().unwrap()), 1);
        assert_eq!(i64::from_le_bytes(out[24..32].try_into().unwrap()), 500_000);
    }
}
