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

use crate::errno::Errno;

/// The futex word's bits for PI and robust futexes (linux/futex.h).
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// How many entries a robust list walk visits at most (Linux's
/// ROBUST_LIST_LIMIT): the list is application memory and may loop.
pub const ROBUST_LIST_LIMIT: usize = 2048;

/// A waiter's wake-up slot.
#[derive(Default)]
pub struct Waiter {
    woken: Mutex<bool>,
    cond: Condvar,
    /// The futex word it is queued on now (FUTEX_REQUEUE moves it).
    key: Mutex<u64>,
    /// A FUTEX_LOCK_PI waiter's tid, which FUTEX_UNLOCK_PI writes into the
    /// word when it hands the lock over; 0 for a plain waiter.
    tid: i32,
}

impl Waiter {
    pub fn new() -> Arc<Waiter> {
        Arc::new(Waiter::default())
    }

    /// A FUTEX_LOCK_PI waiter: the lock may be handed to thread `tid`.
    pub fn for_pi(tid: i32) -> Arc<Waiter> {
        Arc::new(Waiter {
            tid,
            ..Waiter::default()
        })
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

    /// FUTEX_LOCK_PI's step under the table's lock: `attempt` either takes
    /// the lock (true) or marks the word FUTEX_WAITERS (false), in which
    /// case `w` is queued, so an unlock that follows sees it.
    pub fn lock_pi_step(
        &self,
        addr: u64,
        w: &Arc<Waiter>,
        attempt: impl FnOnce() -> Result<bool, Errno>,
    ) -> Result<bool, Errno> {
        let mut t = self.table();
        if attempt()? {
            return Ok(true);
        }
        if let Ok(mut woken) = w.woken.lock() {
            *woken = false;
        }
        *w.key.lock().unwrap_or_else(|e| e.into_inner()) = addr;
        t.entry(addr).or_default().push((u32::MAX, w.clone()));
        Ok(false)
    }

    /// FUTEX_UNLOCK_PI under the table's lock: `release` is told the tid of
    /// the first PI waiter (None: nobody waits) and writes the word (that
    /// tid, or 0); if it succeeds that waiter is woken, owning the lock.
    pub fn unlock_pi(
        &self,
        addr: u64,
        release: impl FnOnce(Option<i32>) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let mut t = self.table();
        let next = t
            .get(&addr)
            .and_then(|q| q.iter().position(|(_, w)| w.tid != 0));
        let tid = next.and_then(|i| t.get(&addr).map(|q| q[i].1.tid));
        release(tid)?;
        if let (Some(i), Some(q)) = (next, t.get_mut(&addr)) {
            let (_, w) = q.remove(i);
            w.wake();
            if q.is_empty() {
                t.remove(&addr);
            }
        }
        Ok(())
    }

    /// Whether any waiter is queued on `addr`.
    pub fn has_waiters(&self, addr: u64) -> bool {
        self.table().get(&addr).is_some_and(|q| !q.is_empty())
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

/// `struct robust_list_head` on 64-bit Linux: the list's first link, the
/// offset from a link to its futex word, and the entry being locked or
/// unlocked right now.
const ROBUST_HEAD_SIZE: usize = 24;

impl super::Task {
    /// The thread is exiting (or exec'ing): every robust futex it still
    /// owns is marked FUTEX_OWNER_DIED and one waiter woken, as Linux's
    /// exit_robust_list. The list is application memory: each step is
    /// read with copy-in, a bad pointer ends the walk, and at most
    /// ROBUST_LIST_LIMIT entries are visited, so a cycle cannot hang exit.
    pub fn release_robust_list(&mut self) {
        let (head, _) = std::mem::take(&mut self.robust_list);
        if head == 0 {
            return;
        }
        let tid = self.tid as u32;
        let mm_arc = self.mm.clone();
        let mut mm = super::thread_group::lock(&mm_arc);
        let mut h = [0u8; ROBUST_HEAD_SIZE];
        if mm.copy_in(head, &mut h).is_err() {
            return;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let (first, offset, pending) = (word(0), word(1) as i64, word(2));
        // The low bit of a link says the futex is a PI one.
        let (pending, pending_pi) = (pending & !1, pending & 1 != 0);
        let (mut entry, mut pi) = (first & !1, first & 1 != 0);
        let mut deaths = Vec::new();
        for _ in 0..ROBUST_LIST_LIMIT {
            if entry == head || entry == 0 {
                break;
            }
            // The next link is read first: once the word is released its
            // owner may free the entry.
            let next = mm.read_u64(entry);
            if entry != pending {
                deaths.push((entry.wrapping_add_signed(offset), pi, false));
            }
            let Ok(next) = next else { break };
            (entry, pi) = (next & !1, next & 1 != 0);
        }
        if pending != 0 {
            deaths.push((pending.wrapping_add_signed(offset), pending_pi, true));
        }
        let mut wake = Vec::new();
        for (uaddr, pi, pending) in deaths {
            if let Some(addr) = futex_death(&mut mm, uaddr, tid, pi, pending) {
                wake.push(addr);
            }
        }
        drop(mm);
        for addr in wake {
            self.kernel.futexes.wake(addr, u32::MAX, 1);
        }
    }
}

/// One robust futex of dying thread `tid` (Linux's handle_futex_death):
/// the word to wake one waiter on, if any.
fn futex_death(
    mm: &mut crate::mm::MemoryManager,
    uaddr: u64,
    tid: u32,
    pi: bool,
    pending: bool,
) -> Option<u64> {
    if !uaddr.is_multiple_of(4) {
        return None;
    }
    // The application may change the word concurrently: a bounded retry.
    for _ in 0..64 {
        let uval = mm.read_u32(uaddr).ok()?;
        // The thread died between releasing the word and taking it off
        // its list: a waiter may be waiting for the release it missed.
        if pending && !pi && uval == 0 {
            return Some(uaddr);
        }
        if uval & FUTEX_TID_MASK != tid {
            return None;
        }
        let mval = (uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        match mm.compare_exchange_u32(uaddr, uval, mval) {
            Ok(found) if found == uval => {
                return (uval & FUTEX_WAITERS != 0).then_some(uaddr);
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
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
