//! Futexes (gVisor's kernel/futex).
//!
//! Waiters are keyed by address, in one table the kernel's tasks share. A
//! waiter is queued only if the futex word still holds the value it
//! expects, checked under the table's lock (Linux checks under the hash
//! bucket's): a FUTEX_WAKE that follows the change of the word then either
//! finds the waiter queued or the waiter sees the new value, so no wake-up
//! is lost between the check and the wait.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// A waiter's wake-up slot.
#[derive(Default)]
pub struct Waiter {
    woken: Mutex<bool>,
    cond: Condvar,
    /// The futex word it is queued on now (FUTEX_REQUEUE moves it).
    key: Mutex<u64>,
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
    /// Queues `w` on `addr` if `expected()` (reading the futex word) says it
    /// still holds the expected value; returns whether it was queued.
    pub fn enqueue_if<E>(
        &self,
        addr: u64,
        bitset: u32,
        w: Arc<Waiter>,
        expected: impl FnOnce() -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mut t = self.table();
        if !expected()? {
            return Ok(false);
        }
        *w.key.lock().unwrap_or_else(|e| e.into_inner()) = addr;
        t.entry(addr).or_default().push((bitset, w));
        Ok(true)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Queue>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `w` off whichever word it waits on now.
    pub fn dequeue(&self, w: &Arc<Waiter>) {
        let mut t = self.table();
        let addr = *w.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = t.get_mut(&addr) {
            q.retain(|(_, x)| !Arc::ptr_eq(x, w));
            if q.is_empty() {
                t.remove(&addr);
            }
        }
    }

    /// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE: if `expected()` holds (checked
    /// under the table's lock), wakes up to `wake` waiters on `from` and
    /// moves up to `requeue` of the rest to `to`, where a wake of `to`
    /// finds them (a condition variable hands its waiters to the mutex this
    /// way). Returns (woken, requeued), or None if `expected()` failed.
    pub fn requeue<E>(
        &self,
        from: u64,
        to: u64,
        wake: usize,
        requeue: usize,
        expected: impl FnOnce() -> Result<bool, E>,
    ) -> Result<Option<(usize, usize)>, E> {
        let mut t = self.table();
        if !expected()? {
            return Ok(None);
        }
        let Some(mut q) = t.remove(&from) else {
            return Ok(Some((0, 0)));
        };
        let woken = q.len().min(wake);
        for (_, w) in q.drain(..woken) {
            w.wake();
        }
        let moved = q.len().min(requeue);
        let rest = q.split_off(moved);
        if !rest.is_empty() {
            t.insert(from, rest);
        }
        if moved > 0 {
            for (_, w) in &q {
                *w.key.lock().unwrap_or_else(|e| e.into_inner()) = to;
            }
            t.entry(to).or_default().extend(q);
        }
        Ok(Some((woken, moved)))
    }

    /// Wakes up to `n` waiters on `addr` whose bitset intersects `bitset`.
    pub fn wake(&self, addr: u64, bitset: u32, n: usize) -> usize {
        let mut t = self.table();
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
        let yes = || Ok::<bool, ()>(true);
        assert_eq!(t.enqueue_if(0x1000, 0b01, a.clone(), yes), Ok(true));
        assert_eq!(t.enqueue_if(0x1000, 0b10, b.clone(), yes), Ok(true));
        assert_eq!(t.enqueue_if(0x1000, 0b11, c.clone(), yes), Ok(true));
        assert_eq!(t.wake(0x1000, 0b10, 1), 1);
        assert!(b.is_woken() && !a.is_woken() && !c.is_woken());
        assert_eq!(t.wake(0x1000, u32::MAX, 10), 2);
        assert!(a.wait_for(Duration::from_millis(1)));
        assert_eq!(t.wake(0x1000, u32::MAX, 10), 0);
        assert_eq!(t.wake(0x2000, u32::MAX, 10), 0);
    }

    /// The word is read under the table's lock: a waker that changes the
    /// word and then wakes cannot slip in between the check and the queue.
    #[test]
    fn no_wake_up_is_lost_between_check_and_wait() {
        use std::sync::atomic::{AtomicU32, Ordering};
        for _ in 0..200 {
            let t = Arc::new(FutexTable::default());
            let word = Arc::new(AtomicU32::new(0));
            let w = Waiter::new();
            let (t2, word2) = (t.clone(), word.clone());
            let waker = std::thread::spawn(move || {
                word2.store(1, Ordering::SeqCst);
                t2.wake(0x1000, u32::MAX, 1);
            });
            let queued = t
                .enqueue_if(0x1000, u32::MAX, w.clone(), || {
                    Ok::<bool, ()>(word.load(Ordering::SeqCst) == 0)
                })
                .unwrap();
            // Either the waiter saw the new value, or the waker found it
            // queued: it never waits for a wake that already happened.
            if queued {
                assert!(w.wait_for(Duration::from_secs(5)), "a wake-up was lost");
            }
            waker.join().unwrap();
        }
    }
    #[test]
    fn a_changed_word_is_not_waited_on() {
        let t = FutexTable::default();
        let w = Waiter::new();
        assert_eq!(
            t.enqueue_if(0x1000, u32::MAX, w, || Ok::<bool, ()>(false)),
            Ok(false)
        );
        assert_eq!(t.wake(0x1000, u32::MAX, 1), 0);
    }

    /// A condition variable's hand-over: the requeued waiter is woken by a
    /// wake of the word it was moved to, not of the one it waited on.
    #[test]
    fn requeued_waiters_are_woken_on_their_new_word() {
        let t = FutexTable::default();
        let yes = || Ok::<bool, ()>(true);
        let (a, b, c) = (Waiter::new(), Waiter::new(), Waiter::new());
        for w in [&a, &b, &c] {
            t.enqueue_if(0x1000, u32::MAX, w.clone(), yes).unwrap();
        }
        assert_eq!(t.requeue(0x1000, 0x2000, 1, 1, yes), Ok(Some((1, 1))));
        assert!(a.is_woken() && !b.is_woken() && !c.is_woken());
        assert_eq!(t.wake(0x1000, u32::MAX, 10), 1, "c stays on the old word");
        assert!(c.is_woken() && !b.is_woken());
        assert_eq!(t.wake(0x2000, u32::MAX, 10), 1, "b was moved");
        assert!(b.is_woken());
        // A moved waiter that gives up leaves its new word's queue.
        let d = Waiter::new();
        t.enqueue_if(0x1000, u32::MAX, d.clone(), yes).unwrap();
        t.requeue(0x1000, 0x3000, 0, 1, yes).unwrap();
        t.dequeue(&d);
        assert_eq!(t.wake(0x3000, u32::MAX, 10), 0);
        assert_eq!(
            t.requeue(0x1000, 0x2000, 1, 1, || Ok::<bool, ()>(false)),
            Ok(None)
        );
    }
}
