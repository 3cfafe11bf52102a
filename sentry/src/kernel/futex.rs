//! Futexes (gVisor's kernel/futex).
//!
//! Waiters are keyed by address. Every task is single-threaded today, so no
//! other task can wake a waiter: FUTEX_WAIT blocks until its timeout or an
//! interrupt, exactly as a lone Linux thread waiting on itself would. The
//! table is already shared by the kernel so that threads, when they come,
//! wake each other through it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// A waiter's wake-up slot.
#[derive(Default)]
pub struct Waiter {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Waiter {
    pub fn new() -> Arc<Waiter> {
        Arc::new(Waiter::default())
    }

    pub fn wake(&self) {
        if let Ok(mut w) = self.woken.lock() {
            *w = true;
        }
        self.cond.notify_all();
    }

    pub fn is_woken(&self) -> bool {
        self.woken.lock().map(|w| *w).unwrap_or(false)
    }

    /// Waits up to `d` for a wake-up. Returns whether it came.
    pub fn wait_for(&self, d: std::time::Duration) -> bool {
        let Ok(guard) = self.woken.lock() else {
            return false;
        };
        match self.cond.wait_timeout_while(guard, d, |w| !*w) {
            Ok((g, _)) => *g,
            Err(_) => false,
        }
    }
}

/// The waiters on one futex word, each with the bitset it waits for.
type Queue = Vec<(u32, Arc<Waiter>)>;

/// Waiters on each futex word.
#[derive(Default)]
pub struct FutexTable {
    waiters: Mutex<HashMap<u64, Queue>>,
}

impl FutexTable {
    pub fn enqueue(&self, addr: u64, bitset: u32, w: Arc<Waiter>) {
        if let Ok(mut t) = self.waiters.lock() {
            t.entry(addr).or_default().push((bitset, w));
        }
    }

    pub fn dequeue(&self, addr: u64, w: &Arc<Waiter>) {
        if let Ok(mut t) = self.waiters.lock() {
            if let Some(q) = t.get_mut(&addr) {
                q.retain(|(_, x)| !Arc::ptr_eq(x, w));
                if q.is_empty() {
                    t.remove(&addr);
                }
            }
        }
    }

    /// Wakes up to `n` waiters on `addr` whose bitset intersects `bitset`.
    pub fn wake(&self, addr: u64, bitset: u32, n: usize) -> usize {
        let Ok(mut t) = self.waiters.lock() else {
            return 0;
        };
        let Some(q) = t.get_mut(&addr) else { return 0 };
        let mut woken = 0;
        q.retain(|(bits, w)| {
            if woken < n && bits & bitset != 0 {
                w.wake();
                woken += 1;
                false
            } else {
                true
            }
        });
        if q.is_empty() {
            t.remove(&addr);
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wake_respects_count_and_bitset() {
        let t = FutexTable::default();
        let (a, b, c) = (Waiter::new(), Waiter::new(), Waiter::new());
        t.enqueue(0x1000, 0b01, a.clone());
        t.enqueue(0x1000, 0b10, b.clone());
        t.enqueue(0x1000, 0b11, c.clone());
        assert_eq!(t.wake(0x1000, 0b10, 1), 1);
        assert!(b.is_woken() && !a.is_woken() && !c.is_woken());
        assert_eq!(t.wake(0x1000, u32::MAX, 10), 2);
        assert!(a.wait_for(Duration::from_millis(1)));
        assert_eq!(t.wake(0x1000, u32::MAX, 10), 0);
        assert_eq!(t.wake(0x2000, u32::MAX, 10), 0);
    }
}
