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

impl LimitSet {
    /// A limit's soft value (RLIM_INFINITY if unknown).
    pub fn soft(&self, resource: u32) -> u64 {
        self.get(resource).map(|l| l.cur).unwrap_or(RLIM_INFINITY)
    }

    /// setrlimit's permission rule: raising a hard limit needs
    /// CAP_SYS_RESOURCE, which only the sandbox's root has.
    pub fn set_checked(
        &mut self,
        resource: u32,
        new: Limit,
        privileged: bool,
    ) -> Result<Limit, Errno> {
        let old = self.get(resource)?;
        if new.max > old.max && !privileged {
            return Err(Errno::EPERM);
        }
        self.set(resource, new)
    }

    /// Puts the limits the memory manager enforces by itself into `mm`
    /// (RLIMIT_STACK: how far the stack may grow).
    pub fn apply_to_mm(&self, mm: &mut crate::mm::MemoryManager) {
        mm.set_stack_limit(self.soft(libc::RLIMIT_STACK));
    }
}

/// How much address space a process uses, as RLIMIT_AS and RLIMIT_DATA
/// count it (Linux's total_vm and data_vm): all of it, and its private
/// writable mappings that do not grow down (heap and data, not the stack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmUse {
    pub total: u64,
    pub data: u64,
}

/// Whether a mapping of these properties counts as data (is_data_mapping).
pub fn is_data_mapping(writable: bool, shared: bool, growsdown: bool) -> bool {
    writable && !shared && !growsdown
}

/// The use of `mm` outside `[start, end)` (a MAP_FIXED mapping replaces
/// what it covers, which then no longer counts).
pub fn vm_use_outside(mm: &crate::mm::MemoryManager, start: u64, end: u64) -> VmUse {
    let (total, data) = mm.vm_use_outside(start, end);
    VmUse { total, data }
}

/// Linux's may_expand_vm: adding `len` bytes (`data`: of a data mapping)
/// to `used` stays within RLIMIT_AS and RLIMIT_DATA, else ENOMEM.
pub fn may_expand_vm(limits: &LimitSet, used: VmUse, len: u64, data: bool) -> Result<(), Errno> {
    let within =
        |used: u64, limit: u64| limit == RLIM_INFINITY || used.saturating_add(len) <= limit;
    if !within(used.total, limits.soft(libc::RLIMIT_AS)) {
        return Err(Errno::ENOMEM);
    }
    if data && !within(used.data, limits.soft(libc::RLIMIT_DATA)) {
        return Err(Errno::ENOMEM);
    }
    Ok(())
}

/// RLIMIT_FSIZE for a write of `len` bytes at `pos` of a regular file:
/// how many may be written. At or past the limit: EFBIG, and the caller
/// raises SIGXFSZ (Linux's generic_write_check_limits).
pub fn fsize_allows(limits: &LimitSet, pos: u64, len: usize) -> Result<usize, Errno> {
    let limit = limits.soft(libc::RLIMIT_FSIZE);
    if limit == RLIM_INFINITY || len == 0 {
        return Ok(len);
    }
    if pos >= limit {
        return Err(Errno::EFBIG);
    }
    Ok(len.min(usize::try_from(limit - pos).unwrap_or(usize::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsize_cuts_writes_at_the_limit_and_refuses_past_it() {
        let mut l = LimitSet::default();
        assert_eq!(fsize_allows(&l, u64::MAX - 1, 10), Ok(10));
        l.set(libc::RLIMIT_FSIZE, Limit { cur: 100, max: 100 })
            .unwrap();
        assert_eq!(fsize_allows(&l, 0, 10), Ok(10));
        assert_eq!(fsize_allows(&l, 95, 10), Ok(5));
        assert_eq!(fsize_allows(&l, 100, 1), Err(Errno::EFBIG));
        assert_eq!(fsize_allows(&l, 100, 0), Ok(0));
    }

    #[test]
    fn address_space_and_data_limits() {
        let mut l = LimitSet::default();
        l.set(
            libc::RLIMIT_AS,
            Limit {
                cur: 1000,
                max: RLIM_INFINITY,
            },
        )
        .unwrap();
        l.set(
            libc::RLIMIT_DATA,
            Limit {
                cur: 500,
                max: RLIM_INFINITY,
            },
        )
        .unwrap();
        let used = VmUse {
            total: 600,
            data: 400,
        };
        assert_eq!(may_expand_vm(&l, used, 400, false), Ok(()));
        assert_eq!(may_expand_vm(&l, used, 401, false), Err(Errno::ENOMEM));
        assert_eq!(may_expand_vm(&l, used, 100, true), Ok(()));
        assert_eq!(may_expand_vm(&l, used, 101, true), Err(Errno::ENOMEM));
        assert!(is_data_mapping(true, false, false));
        assert!(!is_data_mapping(true, true, false) && !is_data_mapping(true, false, true));
    }

    #[test]
    fn raising_a_hard_limit_needs_privilege() {
        let mut l = LimitSet::default();
        let r = libc::RLIMIT_CORE;
        l.set(r, Limit { cur: 0, max: 10 }).unwrap();
        assert_eq!(
            l.set_checked(r, Limit { cur: 0, max: 20 }, false),
            Err(Errno::EPERM)
        );
        assert!(l.set_checked(r, Limit { cur: 5, max: 5 }, false).is_ok());
        assert!(l.set_checked(r, Limit { cur: 5, max: 50 }, true).is_ok());
    }
}
