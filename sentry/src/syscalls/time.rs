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
    // A dynamic CPU clock (clock_getcpuclockid, pthread_getcpuclockid) of
    // the caller reads as the named one.
    let id = cpu_clock(t, a.int(0)).unwrap_or_else(|| ClockId::from_raw(a.int(0)))?;
    let now = read_clock(t, id);
    t.mm().copy_out(a.addr(1), &timespec_bytes(now))?;
    Ok(0)
}

pub fn clock_getres(t: &mut Task, a: &Args) -> SysResult {
    cpu_clock(t, a.int(0)).unwrap_or_else(|| ClockId::from_raw(a.int(0)))?;
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
    loop {
        let left = s.remaining(&t.kernel().clocks);
        if left == 0 {
            return Ok(0);
        }
        // Timed on the host's clock, which the sandbox's may trail by its
        // slew (kernel/time.rs): sleep again until the sandbox's clock
        // reaches the deadline too.
        if t.interrupt()
            .sleep(Duration::from_nanos(left as u64))
            .is_err()
        {
            break;
        }
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
            Err(super::ERESTARTNOHAND)
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

/// Reads a `struct itimerspec` (interval, then value), each a valid
/// timespec.
fn read_itimerspec(t: &Task, addr: u64) -> Result<(Nanos, Nanos), Errno> {
    let interval = read_timespec(t, addr)?;
    let value = read_timespec(t, addr + 16)?;
    Ok((interval, value))
}

fn itimerspec_bytes(value: Nanos, interval: Nanos) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&timespec_bytes(interval));
    b[16..].copy_from_slice(&timespec_bytes(value));
    b
}

fn timerfd_file(t: &Task, fd: i32) -> Result<std::sync::Arc<crate::vfs::OpenFile>, Errno> {
    let f = t.fds().lock().file(fd)?;
    if crate::vfs::timerfd::timerfd_of(&f).is_none() {
        return Err(Errno::EINVAL);
    }
    Ok(f)
}

/// The clocks timerfd_create and timer_create accept.
fn timer_clock(id: i32) -> Result<ClockId, Errno> {
    const CLOCK_REALTIME_ALARM: i32 = 8;
    const CLOCK_BOOTTIME_ALARM: i32 = 9;
    match id {
        libc::CLOCK_REALTIME | CLOCK_REALTIME_ALARM => Ok(ClockId::Realtime),
        libc::CLOCK_MONOTONIC => Ok(ClockId::Monotonic),
        libc::CLOCK_BOOTTIME | CLOCK_BOOTTIME_ALARM => Ok(ClockId::Boottime),
        _ => Err(Errno::EINVAL),
    }
}

pub fn timerfd_create(t: &mut Task, a: &Args) -> SysResult {
    let clock = timer_clock(a.int(0))?;
    let flags = a.int(1);
    if flags & !(libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = crate::vfs::timerfd::TimerFd::open(
        clock,
        t.kernel().clocks,
        flags & libc::TFD_NONBLOCK != 0,
    );
    let limit = t.nofile_limit();
    t.fds()
        .lock()
        .insert(f, flags & libc::TFD_CLOEXEC != 0, limit)
        .map(|fd| fd as u64)
}

pub fn timerfd_settime(t: &mut Task, a: &Args) -> SysResult {
    use crate::vfs::timerfd::{TimerSpec, TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET};
    let flags = a.int(1);
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = timerfd_file(t, a.fd(0))?;
    let (interval, value) = read_itimerspec(t, a.addr(2))?;
    let tfd = crate::vfs::timerfd::timerfd_of(&f).ok_or(Errno::EINVAL)?;
    let old = tfd.set(
        TimerSpec { value, interval },
        flags & TFD_TIMER_ABSTIME != 0,
    );
    if a.addr(3) != 0 {
        t.mm()
            .copy_out(a.addr(3), &itimerspec_bytes(old.value, old.interval))?;
    }
    Ok(0)
}

pub fn timerfd_gettime(t: &mut Task, a: &Args) -> SysResult {
    let f = timerfd_file(t, a.fd(0))?;
    let tfd = crate::vfs::timerfd::timerfd_of(&f).ok_or(Errno::EINVAL)?;
    let cur = tfd.get();
    t.mm()
        .copy_out(a.addr(1), &itimerspec_bytes(cur.value, cur.interval))?;
    Ok(0)
}

/// A dynamic CPU clock id (what glibc passes for CLOCK_PROCESS_CPUTIME_ID
/// and CLOCK_THREAD_CPUTIME_ID, Linux's MAKE_PROCESS_CPUCLOCK): the bits
/// name a pid (0: the caller) and whether the clock is a thread's. None
/// for a non-negative id; EINVAL for another process's clock.
fn cpu_clock(t: &Task, id: i32) -> Option<Result<ClockId, Errno>> {
    if id >= 0 {
        return None;
    }
    let pid = !(id >> 3);
    let per_thread = id & 4 != 0;
    if id & 3 == 3 {
        return Some(Err(Errno::EINVAL));
    }
    Some(match (pid, per_thread) {
        (0, false) => Ok(ClockId::ProcessCputime),
        (p, false) if p == t.tgid() => Ok(ClockId::ProcessCputime),
        (0, true) => Ok(ClockId::ThreadCputime),
        (p, true) if p == t.tid() => Ok(ClockId::ThreadCputime),
        _ => Err(Errno::EINVAL),
    })
}

fn timer_now(t: &Task) -> crate::kernel::posix_timer::Now {
    crate::kernel::posix_timer::Now {
        monotonic: t.kernel().clocks.monotonic(),
        realtime: t.kernel().clocks.realtime(),
        cpu: read_clock(t, ClockId::ProcessCputime),
    }
}

/// timer_create: a POSIX timer of the process (SIGEV_SIGNAL, SIGEV_NONE,
/// SIGEV_THREAD_ID; SIGEV_THREAD is libc's, a signal to the kernel).
pub fn timer_create(t: &mut Task, a: &Args) -> SysResult {
    use crate::kernel::posix_timer::{
        Notify, SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD, SIGEV_THREAD_ID,
    };
    let named = cpu_clock(t, a.int(0)).unwrap_or_else(|| ClockId::from_raw(a.int(0)))?;
    let clock = match named {
        ClockId::ProcessCputime => ClockId::ProcessCputime,
        // A thread's own CPU clock needs per-thread charging of the
        // timers, which cryo does not do yet.
        ClockId::ThreadCputime => {
            t.kernel()
                .log_unsupported(libc::SYS_timer_create as u64, "CLOCK_THREAD_CPUTIME_ID");
            return Err(Errno::EOPNOTSUPP);
        }
        _ => timer_clock(a.int(0))?,
    };
    let (notify, value) = if a.addr(1) == 0 {
        (
            Notify::Signal {
                signo: libc::SIGALRM,
            },
            None,
        )
    } else {
        let mut b = [0u8; 64];
        t.mm().copy_in(a.addr(1), &mut b)?;
        let word = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let value = u64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let (signo, how, tid) = (word(8), word(12), word(16));
        let valid_signo = (1..=64).contains(&signo);
        let notify = match how {
            SIGEV_NONE => Notify::None,
            SIGEV_SIGNAL | SIGEV_THREAD if valid_signo => Notify::Signal { signo },
            h if h == SIGEV_SIGNAL | SIGEV_THREAD_ID && valid_signo => {
                // The thread must be one of the process's.
                if t.tg().member(tid).is_none() {
                    return Err(Errno::EINVAL);
                }
                Notify::Thread { signo, tid }
            }
            _ => return Err(Errno::EINVAL),
        };
        (notify, Some(value))
    };
    let id = t.tg().itimers().posix_create(clock, notify, value)?;
    if let Err(e) = t.mm().copy_out(a.addr(2), &id.to_le_bytes()) {
        let _ = t.tg().itimers().posix_delete(id);
        return Err(e);
    }
    Ok(0)
}

pub fn timer_settime(t: &mut Task, a: &Args) -> SysResult {
    use crate::kernel::posix_timer::TimerSetting;
    const TIMER_ABSTIME: i32 = 1;
    let flags = a.int(1);
    let (interval, value) = read_itimerspec(t, a.addr(2))?;
    let now = timer_now(t);
    let timers = t.tg().itimers().clone();
    let old = timers.posix_set(
        a.int(0),
        TimerSetting { value, interval },
        flags & TIMER_ABSTIME != 0,
        now,
    )?;
    timers.start(t.kernel(), t.tg());
    if a.addr(3) != 0 {
        t.mm()
            .copy_out(a.addr(3), &itimerspec_bytes(old.value, old.interval))?;
    }
    Ok(0)
}

pub fn timer_gettime(t: &mut Task, a: &Args) -> SysResult {
    let cur = t.tg().itimers().posix_get(a.int(0), timer_now(t))?;
    t.mm()
        .copy_out(a.addr(1), &itimerspec_bytes(cur.value, cur.interval))?;
    Ok(0)
}

pub fn timer_getoverrun(t: &mut Task, a: &Args) -> SysResult {
    Ok(u64::from(t.tg().itimers().posix_overrun(a.int(0))?))
}

pub fn timer_delete(t: &mut Task, a: &Args) -> SysResult {
    t.tg().itimers().posix_delete(a.int(0))?;
    Ok(0)
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
