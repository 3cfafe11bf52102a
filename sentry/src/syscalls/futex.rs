//! futex(2).

use std::time::Duration;

use super::time::read_timespec;
use super::{Args, SysResult, ERESTARTSYS};
use crate::errno::Errno;
use crate::kernel::futex::Waiter;
use crate::kernel::Task;

const FUTEX_WAIT: i32 = 0;
const FUTEX_WAKE: i32 = 1;
const FUTEX_REQUEUE: i32 = 3;
const FUTEX_CMP_REQUEUE: i32 = 4;
const FUTEX_WAIT_BITSET: i32 = 9;
const FUTEX_WAKE_BITSET: i32 = 10;
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
    // Wait in slices so a checkpoint's interrupt is seen promptly.
    let slice = Duration::from_millis(20);
    let start = std::time::Instant::now();
    let result = loop {
        if w.is_woken() {
            break Ok(0);
        }
        if t.interrupt().is_pending() {
            break Err(if t.has_deliverable_signal() {
                Errno::EINTR
            } else {
                ERESTARTSYS
            });
        }
        let left = match limit {
            Some(l) => match l.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => break Err(Errno::ETIMEDOUT),
            },
            None => slice,
        };
        if w.wait_for(left.min(slice)) {
            break Ok(0);
        }
    };
    t.kernel().futexes.dequeue(&w);
    result
}

pub fn futex(t: &mut Task, a: &Args) -> SysResult {
    let (addr, op, val) = (a.addr(0), a.int(1), a.uint(2));
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    match op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) {
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
