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

/// The kernel's clocks.
#[derive(Debug)]
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
    }

    pub fn realtime(&self) -> Nanos {
        host_clock(libc::CLOCK_REALTIME)
    }

    /// Time since the sandbox booted, for sysinfo and /proc/uptime.
    pub fn uptime(&self) -> Duration {
        Duration::from_nanos((self.monotonic() - BOOT_MONOTONIC).max(0) as u64)
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
    fn timespec_split() {
        assert_eq!(to_timespec(1_500_000_000), (1, 500_000_000));
        assert_eq!(to_timespec(-1), (-1, 999_999_999));
    }
}
