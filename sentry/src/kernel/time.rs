//! Virtual clocks (invariant 6 of DESIGN.md).
//!
//! CLOCK_MONOTONIC and CLOCK_BOOTTIME are the host's monotonic clock shifted
//! by an offset chosen so that the sandbox's clock starts at its own boot and
//! continues across a restore from the saved value: no jump back, and no jump
//! forward by the time spent frozen. CLOCK_REALTIME follows the host.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::errno::Errno;

/// Nanoseconds, the unit of every sandbox clock.
pub type Nanos = i64;

/// The clocks a Linux task can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockId {
    Realtime,
    Monotonic,
    Boottime,
    ProcessCputime,
    ThreadCputime,
}
statefile::versioned!(ClockId, "kernel.ClockId", 1);

impl ClockId {
    /// From a clockid_t. Coarse and raw variants read the same clocks.
    pub fn from_raw(id: i32) -> Result<ClockId, Errno> {
        match id {
            libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_TAI => {
                Ok(ClockId::Realtime)
            }
            libc::CLOCK_MONOTONIC | libc::CLOCK_MONOTONIC_RAW | libc::CLOCK_MONOTONIC_COARSE => {
                Ok(ClockId::Monotonic)
            }
            libc::CLOCK_BOOTTIME => Ok(ClockId::Boottime),
            libc::CLOCK_PROCESS_CPUTIME_ID => Ok(ClockId::ProcessCputime),
            libc::CLOCK_THREAD_CPUTIME_ID => Ok(ClockId::ThreadCputime),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The kernel's clocks (a plain offset: copies read the same clocks).
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    /// Added to the host's CLOCK_MONOTONIC to get the sandbox's.
    monotonic_offset: Nanos,
}

/// What a statefile keeps of the clocks: sandbox-relative values only.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClocksState {
    /// The sandbox's CLOCK_MONOTONIC at the moment of the checkpoint.
    pub monotonic_at_save: Nanos,
}
statefile::versioned!(ClocksState, "kernel.ClocksState", 1);

fn host_clock(id: libc::clockid_t) -> Nanos {
    nix::time::clock_gettime(nix::time::ClockId::from_raw(id))
        .map(|ts| ts.tv_sec() * 1_000_000_000 + ts.tv_nsec())
        // The host's monotonic and realtime clocks cannot fail on Linux.
        .unwrap_or(0)
}

/// Host monotonic time this process's sandbox spent restored but held
/// before it ran (a warm pool's sandbox waiting to be taken), taken off
/// its clocks so that, as after any restore, they go on from the
/// checkpoint's instant. A sandbox process holds one kernel, and only the
/// pool's resume adds to it.
static HELD_NS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Takes `held` off the sandbox's monotonic clock: the time a restored
/// sandbox waited before it resumed (see [`HELD_NS`]).
pub fn discount_held(held: Duration) {
    let ns = i64::try_from(held.as_nanos()).unwrap_or(i64::MAX);
    HELD_NS.fetch_add(ns, std::sync::atomic::Ordering::SeqCst);
}

/// The sandbox's monotonic clock starts here, so uptime looks like a fresh
/// boot rather than the host's uptime.
const BOOT_MONOTONIC: Nanos = 1_000_000_000;

impl Clocks {
    /// Clocks of a freshly booted sandbox.
    pub fn boot() -> Clocks {
        Clocks {
            monotonic_offset: BOOT_MONOTONIC - host_clock(libc::CLOCK_MONOTONIC),
        }
    }

    /// Clocks continuing from a checkpoint.
    pub fn restore(state: &ClocksState) -> Clocks {
        Clocks {
            monotonic_offset: state
                .monotonic_at_save
                .saturating_sub(host_clock(libc::CLOCK_MONOTONIC)),
        }
    }

    pub fn save(&self) -> ClocksState {
        ClocksState {
            monotonic_at_save: self.monotonic(),
        }
    }

    pub fn monotonic(&self) -> Nanos {
        host_clock(libc::CLOCK_MONOTONIC) + self.monotonic_offset
            - HELD_NS.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn realtime(&self) -> Nanos {
        host_clock(libc::CLOCK_REALTIME)
    }

    /// Time since the sandbox booted, for sysinfo and /proc/uptime.
    pub fn uptime(&self) -> Duration {
        Duration::from_nanos((self.monotonic() - BOOT_MONOTONIC).max(0) as u64)
    }
}

/// A nanosleep or clock_nanosleep, resolved to a deadline.
///
/// Like Linux (hrtimer_init), a relative sleep runs on CLOCK_MONOTONIC
/// whatever clock it names: it lasts the time asked even if the wall clock
/// is set meanwhile, and across a restore it continues from the saved
/// monotonic clock instead of losing the time the sandbox was frozen. An
/// absolute sleep waits for its clock to reach the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sleep {
    /// The clock `deadline` is on.
    pub clock: ClockId,
    pub deadline: Nanos,
    pub relative: bool,
}

/// What an interrupted sleep does next (Linux's do_nanosleep, and how the
/// signal code treats its ERESTART_RESTARTBLOCK / ERESTARTNOHAND).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepInterrupted {
    /// The deadline had passed anyway: the call succeeds.
    Elapsed,
    /// A signal handler is about to run: the call fails with EINTR. A
    /// relative sleep first writes `remaining` to its `rem` (if given).
    Eintr { remaining: Option<Nanos> },
    /// A relative sleep stopped without a handler to run (a checkpoint):
    /// `remaining` is written to `rem` as Linux does before it knows, and
    /// the sleep continues through restart_syscall to the same deadline.
    RestartBlock { remaining: Nanos },
    /// An absolute sleep stopped without a handler to run: the same call
    /// runs again (its deadline is in its arguments); `rem` is never
    /// written.
    Reexecute,
}

impl Sleep {
    /// A sleep of `d` from now; the clock the caller named only matters
    /// for validation, done before.
    pub fn relative(clocks: &Clocks, d: Nanos) -> Sleep {
        Sleep {
            clock: ClockId::Monotonic,
            deadline: clocks.monotonic().saturating_add(d),
            relative: true,
        }
    }

    /// A sleep until `clock` reads `deadline` (TIMER_ABSTIME). CPU-time
    /// clocks have no deadline here: the caller refuses them.
    pub fn absolute(clock: ClockId, deadline: Nanos) -> Sleep {
        Sleep {
            clock,
            deadline,
            relative: false,
        }
    }

    /// A relative sleep resumed by restart_syscall. Its deadline is on the
    /// monotonic clock, except in a statefile of an older cryo, which
    /// kept a relative CLOCK_REALTIME sleep's deadline on that clock.
    pub fn resumed(clock: ClockId, deadline: Nanos) -> Sleep {
        Sleep {
            clock,
            deadline,
            relative: true,
        }
    }

    /// Time left until the deadline, never negative.
    pub fn remaining(&self, clocks: &Clocks) -> Nanos {
        let now = match self.clock {
            ClockId::Realtime => clocks.realtime(),
            _ => clocks.monotonic(),
        };
        self.deadline.saturating_sub(now).max(0)
    }

    /// The sleep was interrupted; `handler_runs` says whether a signal
    /// handler will run before the application continues.
    pub fn interrupted(&self, clocks: &Clocks, handler_runs: bool) -> SleepInterrupted {
        let remaining = self.remaining(clocks);
        if remaining == 0 {
            return SleepInterrupted::Elapsed;
        }
        match (self.relative, handler_runs) {
            (true, true) => SleepInterrupted::Eintr {
                remaining: Some(remaining),
            },
            (false, true) => SleepInterrupted::Eintr { remaining: None },
            (true, false) => SleepInterrupted::RestartBlock { remaining },
            (false, false) => SleepInterrupted::Reexecute,
        }
    }
}

/// Splits nanoseconds into a `struct timespec`'s (sec, nsec).
pub fn to_timespec(ns: Nanos) -> (i64, i64) {
    (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_continues_from_saved_value() {
        let c = Clocks::boot();
        let saved = ClocksState {
            monotonic_at_save: 50_000_000_000,
        };
        let r = Clocks::restore(&saved);
        let now = r.monotonic();
        assert!(now >= saved.monotonic_at_save);
        assert!(now - saved.monotonic_at_save < 1_000_000_000);
        assert!(c.monotonic() >= BOOT_MONOTONIC);
    }

    #[test]
    fn relative_sleeps_run_on_the_monotonic_clock() {
        let c = Clocks::boot();
        let s = Sleep::relative(&c, 5_000_000_000);
        assert_eq!(s.clock, ClockId::Monotonic);
        let left = s.remaining(&c);
        assert!(left > 4_000_000_000 && left <= 5_000_000_000, "{left}");
    }

    #[test]
    fn interrupted_sleeps_follow_linux() {
        let c = Clocks::boot();
        let rel = Sleep::relative(&c, 10_000_000_000);
        match rel.interrupted(&c, true) {
            SleepInterrupted::Eintr { remaining: Some(r) } => {
                assert!(r > 9_000_000_000 && r <= 10_000_000_000, "{r}")
            }
            other => panic!("relative, handler: {other:?}"),
        }
        assert!(matches!(
            rel.interrupted(&c, false),
            SleepInterrupted::RestartBlock { remaining } if remaining > 9_000_000_000
        ));
        let abs = Sleep::absolute(ClockId::Realtime, c.realtime() + 10_000_000_000);
        assert_eq!(
            abs.interrupted(&c, true),
            SleepInterrupted::Eintr { remaining: None }
        );
        assert_eq!(abs.interrupted(&c, false), SleepInterrupted::Reexecute);
        let past = Sleep::absolute(ClockId::Monotonic, c.monotonic() - 1);
        assert_eq!(past.remaining(&c), 0);
        assert_eq!(past.interrupted(&c, true), SleepInterrupted::Elapsed);
        assert_eq!(
            Sleep::resumed(ClockId::Monotonic, 0).interrupted(&c, false),
            SleepInterrupted::Elapsed
        );
    }

    #[test]
    fn timespec_split() {
        assert_eq!(to_timespec(1_500_000_000), (1, 500_000_000));
        assert_eq!(to_timespec(-1), (-1, 999_999_999));
    }
}
