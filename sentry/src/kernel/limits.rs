//! Resource limits (getrlimit/setrlimit/prlimit64).

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

pub const RLIM_INFINITY: u64 = u64::MAX;
/// Linux's RLIM_NLIMITS.
pub const NLIMITS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub cur: u64,
    pub max: u64,
}
statefile::versioned!(Limit, "kernel.Limit", 1);

/// A thread group's limits, indexed by RLIMIT_*.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSet {
    limits: Vec<Limit>,
}
statefile::versioned!(LimitSet, "kernel.LimitSet", 1, [Limit]);

impl Default for LimitSet {
    /// Linux's defaults for a fresh init task, as gVisor uses them.
    fn default() -> Self {
        let inf = Limit {
            cur: RLIM_INFINITY,
            max: RLIM_INFINITY,
        };
        let mut limits = vec![inf; NLIMITS];
        limits[libc::RLIMIT_STACK as usize] = Limit {
            cur: 8 << 20,
            max: RLIM_INFINITY,
        };
        limits[libc::RLIMIT_CORE as usize] = Limit {
            cur: 0,
            max: RLIM_INFINITY,
        };
        limits[libc::RLIMIT_NOFILE as usize] = Limit {
            cur: 1 << 20,
            max: 1 << 20,
        };
        limits[libc::RLIMIT_NPROC as usize] = Limit {
            cur: 1 << 16,
            max: 1 << 16,
        };
        limits[libc::RLIMIT_MEMLOCK as usize] = Limit {
            cur: 8 << 20,
            max: 8 << 20,
        };
        limits[libc::RLIMIT_SIGPENDING as usize] = Limit {
            cur: 1 << 16,
            max: 1 << 16,
        };
        limits[libc::RLIMIT_MSGQUEUE as usize] = Limit {
            cur: 819_200,
            max: 819_200,
        };
        limits[libc::RLIMIT_NICE as usize] = Limit { cur: 0, max: 0 };
        limits[libc::RLIMIT_RTPRIO as usize] = Limit { cur: 0, max: 0 };
        LimitSet { limits }
    }
}

impl LimitSet {
    pub fn get(&self, resource: u32) -> Result<Limit, Errno> {
        self.limits
            .get(resource as usize)
            .copied()
            .ok_or(Errno::EINVAL)
    }

    /// Sets a limit. Raising the hard limit needs CAP_SYS_RESOURCE, which the
    /// sandbox's root has, so only the soft <= hard rule is enforced.
    pub fn set(&mut self, resource: u32, new: Limit) -> Result<Limit, Errno> {
        if new.cur > new.max {
            return Err(Errno::EINVAL);
        }
        if resource == libc::RLIMIT_NOFILE && new.max > (1 << 20) {
            return Err(Errno::EPERM);
        }
        let slot = self
            .limits
            .get_mut(resource as usize)
            .ok_or(Errno::EINVAL)?;
        Ok(std::mem::replace(slot, new))
    }

    /// A loaded set must have exactly the known limits, each consistent.
    pub fn validate(&self) -> bool {
        self.limits.len() == NLIMITS && self.limits.iter().all(|l| l.cur <= l.max)
    }
}
