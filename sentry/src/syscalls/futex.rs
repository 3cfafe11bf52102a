//! futex(2).

use std::time::Duration;

use super::time::read_timespec;
use super::{Args, SysResult, ERESTARTSYS};
use crate::errno::Errno;
use crate::kernel::futex::{Waiter, FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS};
use crate::kernel::Task;

const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;
const FUTEX_REQUEUE: i32 = 3;
const FUTEX_CMP_REQUEUE: i32 = 4;
const FUTEX_WAKE_OP: i32 = 5;
const FUTEX_LOCK_PI: i32 = 6;
const FUTEX_UNLOCK_PI: i32 = 7;
const FUTEX_TRYLOCK_PI: i32 = 8;
const FUTEX_WAIT_BITSET: i32 = 9;
const FUTEX_WAKE_BITSET: i32 = 10;
const FUTEX_LOCK_PI2: i32 = 13;
const FUTEX_PRIVATE_FLAG: i32 = 128;
const FUTEX_CLOCK_REALTIME: i32 = 256;
const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// How long a FUTEX_WAIT may sleep: a relative timespec for FUTEX_WAIT, an
/// absolute one for FUTEX_WAIT_BITSET.
fn timeout(
    t: &mut Task,
    addr: u64,
    absolute: bool,
    realtime: bool,
) -> Result<Option<Duration>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let ns = read_timespec(t, addr)?;
    let rel = if absolute {
        let now = if realtime {
            t.kernel().clocks.realtime()
        } else {
            t.kernel().clocks.monotonic()
        };
        (ns - now).max(0)
    } else {
        ns
    };
    Ok(Some(Duration::from_nanos(rel as u64)))
}

fn wait(t: &mut Task, addr: u64, val: u32, bitset: u32, limit: Option<Duration>) -> SysResult {
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    let w = Waiter::new();
    let queued = t.kernel().futexes.enqueue_if(addr, bitset, w.clone(), || {
        Ok::<bool, Errno>(t.mm().read_u32(addr)? == val)
    })?;
    if !queued {
        return Err(Errno::EAGAIN);
    }
    let result = block(t, &w, limit, false);
    t.kernel().futexes.dequeue(&w);
    result
}

/// Waits for `w` to be woken, up to `limit`, in slices so a checkpoint's
/// interrupt is seen promptly. A signal to handle ends the wait with EINTR,
/// unless `restart` (FUTEX_LOCK_PI never fails with EINTR: it runs again
/// after the handler, Linux's ERESTARTNOINTR).
fn block(t: &Task, w: &Waiter, limit: Option<Duration>, restart: bool) -> SysResult {
    let slice = Duration::from_millis(20);
    let start = std::time::Instant::now();
    loop {
        if w.is_woken() {
            return Ok(0);
        }
        if t.interrupt().is_pending() {
            return Err(if t.has_deliverable_signal() && !restart {
                Errno::EINTR
            } else {
                ERESTARTSYS
            });
        }
        let left = match limit {
            Some(l) => match l.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Err(Errno::ETIMEDOUT),
            },
            None => slice,
        };
        if w.wait_for(left.min(slice)) {
            return Ok(0);
        }
    }
}

/// FUTEX_WAKE_OP's operation on the second word and its comparison
/// (linux/futex.h's FUTEX_OP encoding in `val3`).
struct WakeOp {
    op: u32,
    oparg: u32,
    cmp: u32,
    cmparg: i32,
}

impl WakeOp {
    fn decode(val3: u32) -> Result<WakeOp, Errno> {
        const FUTEX_OP_OPARG_SHIFT: u32 = 8;
        let op = (val3 >> 28) & 0xf;
        let cmp = (val3 >> 24) & 0xf;
        // 12-bit fields, sign-extended as Linux does.
        let sext12 = |v: u32| ((v << 20) as i32) >> 20;
        let mut oparg = sext12((val3 >> 12) & 0xfff) as u32;
        let cmparg = sext12(val3 & 0xfff);
        if op & FUTEX_OP_OPARG_SHIFT != 0 {
            // Linux warns and masks a shift out of range.
            oparg = 1u32 << (oparg & 31);
        }
        let op = op & !FUTEX_OP_OPARG_SHIFT;
        if op > 4 || cmp > 5 {
            return Err(Errno::ENOSYS);
        }
        Ok(WakeOp {
            op,
            oparg,
            cmp,
            cmparg,
        })
    }

    /// The new value of a word that held `old`: SET, ADD, OR, ANDN, XOR.
    fn apply(&self, old: u32) -> u32 {
        match self.op {
            0 => self.oparg,
            1 => old.wrapping_add(self.oparg),
            2 => old | self.oparg,
            3 => old & !self.oparg,
            _ => old ^ self.oparg,
        }
    }

    /// Whether the old value passes the comparison (signed, as Linux).
    fn test(&self, old: u32) -> bool {
        let old = old as i32;
        match self.cmp {
            0 => old == self.cmparg,
            1 => old != self.cmparg,
            2 => old < self.cmparg,
            3 => old <= self.cmparg,
            4 => old > self.cmparg,
            _ => old >= self.cmparg,
        }
    }
}

/// Atomically applies `f` to the futex word at `addr`: the old value.
fn atomic_update(t: &Task, addr: u64, f: impl Fn(u32) -> u32) -> Result<u32, Errno> {
    let mut mm = t.mm();
    let mut old = mm.read_u32(addr)?;
    loop {
        let found = mm.compare_exchange_u32(addr, old, f(old))?;
        if found == old {
            return Ok(old);
        }
        old = found;
    }
}

/// FUTEX_WAKE_OP: wakes up to `val` waiters on `addr`, applies the
/// operation to the word at `addr2`, and if its old value passes the
/// comparison wakes up to `val2` waiters there too (glibc's condition
/// variables of old, still used by some programs).
fn wake_op(t: &Task, addr: u64, val: u32, val2: u32, addr2: u64, val3: u32) -> SysResult {
    if !addr.is_multiple_of(4) || !addr2.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let op = WakeOp::decode(val3)?;
    let old = atomic_update(t, addr2, |v| op.apply(v))?;
    let futexes = &t.kernel().futexes;
    let mut woken = futexes.wake(addr, u32::MAX, val as usize);
    if op.test(old) {
        woken += futexes.wake(addr2, u32::MAX, val2 as usize);
    }
    Ok(woken as u64)
}

/// What one attempt of FUTEX_LOCK_PI found.
enum PiAttempt {
    Taken,
    /// Marked FUTEX_WAITERS: the caller may sleep.
    MustWait,
}

/// One attempt to take the PI futex at `addr` for thread `tid` (Linux's
/// futex_lock_pi_atomic): a free word (its TID part 0, whether or not the
/// last owner died) is taken keeping FUTEX_OWNER_DIED; one owned by the
/// caller is EDEADLK; one owned by a thread that does not exist is ESRCH;
/// otherwise the word is marked FUTEX_WAITERS.
fn try_lock_pi(t: &Task, addr: u64, tid: u32, trylock: bool) -> Result<PiAttempt, Errno> {
    let mut mm = t.mm();
    let mut uval = mm.read_u32(addr)?;
    for _ in 0..1024 {
        let owner = uval & FUTEX_TID_MASK;
        let (new, taken) = if owner == 0 {
            // A waiter marked the word but the owner is gone: take it and
            // keep the mark, other waiters may still be queued.
            (tid | (uval & (FUTEX_OWNER_DIED | FUTEX_WAITERS)), true)
        } else if owner == tid {
            return Err(Errno::EDEADLK);
        } else {
            if t.kernel().pids.tgid_of(owner as i32).is_none() {
                return Err(Errno::ESRCH);
            }
            if trylock {
                return Err(Errno::EAGAIN);
            }
            (uval | FUTEX_WAITERS, false)
        };
        let found = mm.compare_exchange_u32(addr, uval, new)?;
        if found == uval {
            return Ok(if taken {
                PiAttempt::Taken
            } else {
                PiAttempt::MustWait
            });
        }
        uval = found;
    }
    // The application keeps changing the word: let it retry.
    Err(Errno::EAGAIN)
}

/// FUTEX_LOCK_PI, FUTEX_LOCK_PI2 and FUTEX_TRYLOCK_PI (glibc's
/// PTHREAD_PRIO_INHERIT and robust mutexes). cryo has no priorities to
/// inherit: the owner is only recorded in the word, and FUTEX_UNLOCK_PI
/// hands the lock to the first waiter.
fn lock_pi(t: &mut Task, addr: u64, limit: Option<Duration>, trylock: bool) -> SysResult {
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let tid = t.tid() as u32;
    let w = Waiter::for_pi(t.tid());
    let start = std::time::Instant::now();
    loop {
        let taken = t.kernel().futexes.lock_pi_step(addr, &w, || {
            match try_lock_pi(t, addr, tid, trylock)? {
                PiAttempt::Taken => Ok(true),
                PiAttempt::MustWait => Ok(false),
            }
        });
        if taken? {
            return Ok(0);
        }
        let left = match limit {
            Some(l) => Some(l.checked_sub(start.elapsed()).ok_or(Errno::ETIMEDOUT)?),
            None => None,
        };
        let r = block(t, &w, left, true);
        t.kernel().futexes.dequeue(&w);
        // Woken by FUTEX_UNLOCK_PI, the word names this thread: it owns the
        // lock. Woken otherwise (the owner died), it tries again.
        let owner = t.mm().read_u32(addr)? & FUTEX_TID_MASK;
        if owner == tid {
            return Ok(0);
        }
        r?;
    }
}

/// FUTEX_UNLOCK_PI: only the owner may; the first waiter gets the lock
/// (the word becomes its tid with FUTEX_WAITERS), or the word becomes 0.
fn unlock_pi(t: &mut Task, addr: u64) -> SysResult {
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let tid = t.tid() as u32;
    t.kernel().futexes.unlock_pi(addr, |next| {
        let mut mm = t.mm();
        let mut uval = mm.read_u32(addr)?;
        for _ in 0..1024 {
            if uval & FUTEX_TID_MASK != tid {
                return Err(Errno::EPERM);
            }
            let new = match next {
                Some(next) => next as u32 | FUTEX_WAITERS,
                None => 0,
            };
            let found = mm.compare_exchange_u32(addr, uval, new)?;
            if found == uval {
                return Ok(());
            }
            uval = found;
        }
        Err(Errno::EAGAIN)
    })?;
    Ok(0)
}

pub fn futex(t: &mut Task, a: &Args) -> SysResult {
    let (addr, op, val) = (a.addr(0), a.int(1), a.uint(2));
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    // Only the waits with an absolute timeout take another clock.
    if realtime && cmd != FUTEX_WAIT_BITSET && cmd != FUTEX_LOCK_PI2 {
        return Err(Errno::ENOSYS);
    }
    match cmd {
        FUTEX_WAIT => {
            let limit = timeout(t, a.addr(3), false, realtime)?;
            wait(t, addr, val, FUTEX_BITSET_MATCH_ANY, limit)
        }
        FUTEX_WAIT_BITSET => {
            let limit = timeout(t, a.addr(3), true, realtime)?;
            wait(t, addr, val, a.uint(5), limit)
        }
        FUTEX_WAKE => Ok(t
            .kernel()
            .futexes
            .wake(addr, FUTEX_BITSET_MATCH_ANY, val as usize) as u64),
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            // The fourth argument is a count here, not a timeout.
            let (from, to, requeue) = (addr, a.addr(4), a.uint(3) as usize);
            let cmp = (op & 0x7f == FUTEX_CMP_REQUEUE).then(|| a.uint(5));
            if !from.is_multiple_of(4) || !to.is_multiple_of(4) || (val as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            let moved =
                t.kernel()
                    .futexes
                    .requeue(from, to, val as usize, requeue, || match cmp {
                        Some(expected) => Ok::<bool, Errno>(t.mm().read_u32(from)? == expected),
                        None => Ok(true),
                    })?;
            match moved {
                None => Err(Errno::EAGAIN),
                // FUTEX_REQUEUE counts the woken; FUTEX_CMP_REQUEUE both.
                Some((woken, requeued)) if cmp.is_some() => Ok((woken + requeued) as u64),
                Some((woken, _)) => Ok(woken as u64),
            }
        }
        FUTEX_WAKE_OP => {
            // The fourth argument is the second count here.
            let (val2, addr2, val3) = (a.uint(3), a.addr(4), a.uint(5));
            wake_op(t, addr, val, val2, addr2, val3)
        }
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 => {
            // FUTEX_LOCK_PI's timeout is absolute on CLOCK_REALTIME; PI2's
            // on CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME says otherwise.
            let base_op = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
            let on_realtime = base_op == FUTEX_LOCK_PI || realtime;
            let limit = timeout(t, a.addr(3), true, on_realtime)?;
            lock_pi(t, addr, limit, false)
        }
        FUTEX_TRYLOCK_PI => lock_pi(t, addr, None, true),
        FUTEX_UNLOCK_PI => unlock_pi(t, addr),
        FUTEX_WAKE_BITSET => {
            if a.uint(5) == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(t.kernel().futexes.wake(addr, a.uint(5), val as usize) as u64)
        }
        other => {
            t.kernel()
                .log_unsupported(libc::SYS_futex as u64, &format!("op {other}"));
            Err(Errno::ENOSYS)
        }
    }
}
