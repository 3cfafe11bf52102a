//! Application page faults. Every VMA is mapped eagerly, so the only fault
//! the memory manager resolves is stack growth: an access just below a
//! growsdown VMA.

use platform::Access;

use super::manager::{MemoryManager, STACK_GUARD_GAP};
use super::vma::Vma;
use crate::errno::Errno;

/// How far below a faulting address the stack grows at once beyond the
/// page needed: each fault is a round trip through the platform.
const STACK_GROW_AHEAD: u64 = 64 * 1024;

impl MemoryManager {
    /// Resolves a fault at `addr`. `Ok` means the access can be retried.
    /// `Err(EACCES)` means the address is mapped but `access` is not allowed
    /// (SIGSEGV with SEGV_ACCERR); `Err(EFAULT)` means nothing is mapped there
    /// (SEGV_MAPERR).
    pub fn handle_fault(&mut self, addr: u64, _access: Access) -> Result<(), Errno> {
        if self.vma_at(addr).is_some() {
            // Every VMA is mapped eagerly with its protections, so a fault
            // inside one is a protection violation whatever access the
            // platform could tell (often Unknown). Never "repair" and retry
            // here: a platform that keeps faulting would spin the task.
            return Err(Errno::EACCES);
        }
        self.grow_stack(addr)
    }

    /// Grows the growsdown VMA just above `addr` down to cover it, within
    /// the stack limit and never closer than the guard gap to the mapping
    /// below. EFAULT when `addr` is not a stack-growth access.
    pub fn grow_stack(&mut self, addr: u64) -> Result<(), Errno> {
        let (vstart, v) = match self.vmas.range(addr..).next() {
            Some((s, v)) if v.growsdown => (*s, v.clone()),
            _ => return Err(Errno::EFAULT),
        };
        let need = self.page_align_down(addr);
        // The stack's top: the end of the run of contiguous growsdown VMAs.
        let mut top = v.end;
        while let Some(next) = self.vmas.get(&top).filter(|n| n.growsdown) {
            top = next.end;
        }
        let lowest = top.saturating_sub(self.stack_limit);
        if need < lowest || need < self.min_addr {
            return Err(Errno::EFAULT);
        }
        let floor = match self.vmas.range(..vstart).next_back() {
            Some((_, prev)) => {
                let gap_floor = prev.end.checked_add(STACK_GUARD_GAP).ok_or(Errno::EFAULT)?;
                if need < gap_floor {
                    return Err(Errno::EFAULT);
                }
                gap_floor
            }
            None => self.min_addr,
        };
        let target = self
            .page_align_down(need.saturating_sub(STACK_GROW_AHEAD))
            .max(lowest.next_multiple_of(self.layout.page_size))
            .max(floor)
            .min(need);
        self.extend_down(vstart, &v, target)
    }

    /// Grows `v` (starting at `vstart`) down to `target`.
    fn extend_down(&mut self, vstart: u64, v: &Vma, target: u64) -> Result<(), Errno> {
        let delta = vstart - target;
        let adjacent = v
            .mf_offset
            .checked_sub(delta)
            .filter(|off| self.mf.allocate_at(*off, delta).is_ok());
        let (mf_off, in_place) = match adjacent {
            Some(off) => (off, true),
            None => (self.mf.allocate(delta)?, false),
        };
        if let Err(e) = self.aspace.map(target, delta, mf_off, v.prot) {
            let _ = self.mf.free(mf_off, delta);
            return Err(super::manager::platform_errno("map", e));
        }
        let mut grown = v.clone();
        grown.start = target;
        grown.mf_offset = mf_off;
        if in_place {
            self.vmas.remove(&vstart);
        } else {
            grown.end = vstart;
        }
        self.vmas.insert(target, grown);
        Ok(())
    }
}
