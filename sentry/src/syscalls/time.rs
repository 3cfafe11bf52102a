//! Clocks and sleeping: clock_gettime, clock_getres, gettimeofday, time,
//! nanosleep, clock_nanosleep, restart_syscall.

use std::time::Duration;

use super::{Args, SysResult, ERESTART_RESTARTBLOCK};
use crate::errno::Errno;
use crate::kernel::time::{to_timespec, ClockId, Nanos};
use crate::kernel::Task;

fn read_clock(t: &Task, id: ClockId) -> Nanos {
    match id {
        ClockId::Realtime => t.kernel.clocks.realtime(),
        ClockId::Monotonic | ClockId::Boottime => t.kernel.clocks.monotonic(),
        ClockId::ProcessCputime | ClockId::ThreadCputime => t.cpu_time.as_nanos() as Nanos,
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
        let (sec, nsec) = to_timespec(t.kernel.clocks.realtime());
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
    let (sec, _) = to_timespec(t.kernel.clocks.realtime());
    if a.addr(0) != 0 {
        t.mm().copy_out(a.addr(0), &sec.to_le_bytes())?;
    }
    Ok(sec as u64)
}

/// Sleeps until `deadline` on `clock`. An interrupted sleep (a checkpoint)
/// is restarted through restart_syscall with the same deadline, so it
/// neither restarts from scratch nor ends early.
fn sleep_until(t: &mut Task, clock: ClockId, deadline: Nanos) -> SysResult {
    let now = read_clock(t, clock);
    if deadline <= now {
        t.restart_deadline = None;
        return Ok(0);
    }
    let wait = Duration::from_nanos((deadline - now) as u64);
    match t.interrupt.sleep(wait) {
        Ok(()) => {
            t.restart_deadline = None;
            Ok(0)
        }
        Err(_) if t.has_deliverable_signal() => {
            // A handler runs: nanosleep returns EINTR, as on Linux.
            t.restart_deadline = None;
            Err(Errno::EINTR)
        }
        Err(_) => {
            // Only monotonic deadlines survive a restore unchanged; a realtime
            // sleep restarts against the host's clock, which is what Linux does
            // for an absolute CLOCK_REALTIME sleep too.
            t.restart_deadline = Some(deadline);
            t.restart_clock = Some(clock);
            Err(ERESTART_RESTARTBLOCK)
        }
    }
}

pub fn nanosleep(t: &mut Task, a: &Args) -> SysResult {
    let d = read_timespec(t, a.addr(0))?;
    let deadline = t.kernel.clocks.monotonic().saturating_add(d);
    sleep_until(t, ClockId::Monotonic, deadline)
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
    let flags = a.uint(1);
    let ts = read_timespec(t, a.addr(2))?;
    let deadline = if flags & TIMER_ABSTIME != 0 {
        ts
    } else {
        read_clock(t, clock).saturating_add(ts)
    };
    sleep_until(t, clock, deadline)
}

pub fn restart_syscall(t: &mut Task, _: &Args) -> SysResult {
    match (t.restart_deadline, t.restart_clock) {
        (Some(deadline), Some(clock)) => sleep_until(t, clock, deadline),
        _ => Err(Errno::EINTR),
    }
}
