//! Readiness and waiting (gVisor's waiter.Queue): a file reports the events
//! ready now ([`super::FileOps::readiness`]) and, if its readiness changes
//! by what other tasks do (a pipe, an eventfd, an epoll set), a
//! [`WaitQueue`] on which pollers register. A blocked poll, select or
//! epoll_wait is a [`Waiter`]: every queue it registered on, and the task's
//! [`super::Interrupt`], wake it.
//!
//! Files whose readiness changes without anyone in the Sentry knowing (a
//! donated host fd, a signalfd whose signals come to the polling task)
//! have no queue: a waiter re-checks them every [`RECHECK`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// epoll(7)/poll(2) event bits (the same values for both on Linux).
pub const EPOLLIN: u32 = 0x001;
pub const EPOLLPRI: u32 = 0x002;
pub const EPOLLOUT: u32 = 0x004;
pub const EPOLLERR: u32 = 0x008;
pub const EPOLLHUP: u32 = 0x010;
pub const EPOLLNVAL: u32 = 0x020;
pub const EPOLLRDNORM: u32 = 0x040;
pub const EPOLLRDBAND: u32 = 0x080;
pub const EPOLLWRNORM: u32 = 0x100;
pub const EPOLLWRBAND: u32 = 0x200;
pub const EPOLLMSG: u32 = 0x400;
pub const EPOLLRDHUP: u32 = 0x2000;
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
pub const EPOLLWAKEUP: u32 = 1 << 29;
pub const EPOLLONESHOT: u32 = 1 << 30;
pub const EPOLLET: u32 = 1 << 31;

/// What a file that cannot be polled reports (Linux's DEFAULT_POLLMASK).
pub const DEFAULT_POLLMASK: u32 = EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM;

/// Events a poller always hears about, asked for or not.
pub const ALWAYS: u32 = EPOLLERR | EPOLLHUP;

/// Every event bit a file can report.
pub const ALL_EVENTS: u32 = 0xffff;

/// How often a waiter re-checks files without a wait queue.
pub const RECHECK: Duration = Duration::from_millis(10);

/// Told when a queue's file may have become ready for some of `events`.
pub trait Listener: Send + Sync {
    fn notify(&self, events: u32);
}

struct Entry {
    id: u64,
    mask: u32,
    /// EPOLLEXCLUSIVE: one exclusive listener is woken per notification.
    exclusive: bool,
    listener: Weak<dyn Listener>,
}

/// The listeners of one file (or of several files that change together:
/// both ends of a pipe).
#[derive(Default)]
pub struct WaitQueue {
    entries: Mutex<Vec<Entry>>,
}

static NEXT_ENTRY: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listener's place on a queue; dropping it unregisters.
pub struct Registration {
    queue: Weak<WaitQueue>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(q) = self.queue.upgrade() {
            lock(&q.entries).retain(|e| e.id != self.id);
        }
    }
}

impl WaitQueue {
    pub fn new() -> Arc<WaitQueue> {
        Arc::new(WaitQueue::default())
    }

    /// Registers `listener` for `mask` (ERR and HUP always count).
    pub fn register(
        self: &Arc<Self>,
        mask: u32,
        exclusive: bool,
        listener: Weak<dyn Listener>,
    ) -> Registration {
        let id = NEXT_ENTRY.fetch_add(1, Ordering::Relaxed);
        lock(&self.entries).push(Entry {
            id,
            mask: mask | ALWAYS,
            exclusive,
            listener,
        });
        Registration {
            queue: Arc::downgrade(self),
            id,
        }
    }

    /// Wakes the listeners interested in `events`: every non-exclusive one
    /// and the first exclusive one (which then goes to the back, so that
    /// exclusive waiters take turns). Listeners run without the queue's
    /// lock held: one may register or unregister from inside.
    pub fn notify(&self, events: u32) {
        let woken: Vec<Arc<dyn Listener>> = {
            let mut entries = lock(&self.entries);
            entries.retain(|e| e.listener.strong_count() > 0);
            let mut out = Vec::new();
            let mut exclusive_at = None;
            for (i, e) in entries.iter().enumerate() {
                if e.mask & events == 0 {
                    continue;
                }
                if e.exclusive {
                    if exclusive_at.is_some() {
                        continue;
                    }
                    exclusive_at = Some(i);
                }
                if let Some(l) = e.listener.upgrade() {
                    out.push(l);
                }
            }
            if let Some(i) = exclusive_at {
                let e = entries.remove(i);
                entries.push(e);
            }
            out
        };
        for l in woken {
            l.notify(events);
        }
    }

    /// How many listeners are registered (for tests).
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A blocked task's wake-up: set by any queue it is registered on.
#[derive(Default)]
pub struct Waiter {
    fired: Mutex<bool>,
    cv: Condvar,
}

/// Why [`Waiter::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// A queue fired (or the recheck interval passed): look again.
    Notified,
    /// The deadline passed.
    TimedOut,
}

impl Listener for Waiter {
    fn notify(&self, _events: u32) {
        *lock(&self.fired) = true;
        self.cv.notify_all();
    }
}

impl Waiter {
    pub fn new() -> Arc<Waiter> {
        Arc::new(Waiter::default())
    }

    /// This waiter as a listener to register.
    pub fn listener(self: &Arc<Self>) -> Weak<dyn Listener> {
        let w: Arc<dyn Listener> = self.clone();
        Arc::downgrade(&w)
    }

    /// Forgets earlier notifications: call before looking at the files, so
    /// that a change after the look wakes the next wait.
    pub fn reset(&self) {
        *lock(&self.fired) = false;
    }

    /// Waits for a notification, `deadline` or, when `recheck`, the recheck
    /// interval, whichever comes first.
    pub fn wait(&self, deadline: Option<Instant>, recheck: bool) -> Woken {
        let mut fired = lock(&self.fired);
        let start = Instant::now();
        loop {
            if *fired {
                *fired = false;
                return Woken::Notified;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Woken::TimedOut;
            }
            if recheck && now.duration_since(start) >= RECHECK {
                return Woken::Notified;
            }
            let mut until = deadline.map(|d| d - now);
            if recheck {
                let left = RECHECK.saturating_sub(now.duration_since(start));
                until = Some(until.map_or(left, |u| u.min(left)));
            }
            fired = match until {
                Some(d) => self
                    .cv
                    .wait_timeout(fired, d)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0),
                None => self.cv.wait(fired).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Blocks a file operation until `attempt` succeeds (`Ok(Some)`), fails,
/// or `interrupt` is set (EINTR): `attempt` runs again each time `queue`
/// is notified of one of `mask`.
pub fn block_on<T>(
    queue: &Arc<WaitQueue>,
    mask: u32,
    interrupt: &super::Interrupt,
    mut attempt: impl FnMut() -> Result<Option<T>, crate::errno::Errno>,
) -> Result<T, crate::errno::Errno> {
    let waiter = Waiter::new();
    let _on_queue = queue.register(mask, false, waiter.listener());
    let _on_interrupt = interrupt.register(&waiter);
    loop {
        waiter.reset();
        if let Some(v) = attempt()? {
            return Ok(v);
        }
        if interrupt.is_set() {
            return Err(crate::errno::Errno::EINTR);
        }
        waiter.wait(None, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_a_registered_waiter_only_for_its_events() {
        let q = WaitQueue::new();
        let w = Waiter::new();
        let reg = q.register(EPOLLIN, false, w.listener());
        q.notify(EPOLLOUT);
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(w.wait(Some(soon), false), Woken::TimedOut);
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            q2.notify(EPOLLIN);
        });
        assert_eq!(w.wait(None, false), Woken::Notified);
        t.join().unwrap();
        drop(reg);
        assert!(q.is_empty(), "dropping the registration unregisters");
    }

    #[test]
    fn exclusive_listeners_take_turns() {
        struct Count(Mutex<u32>);
        impl Listener for Count {
            fn notify(&self, _: u32) {
                *lock(&self.0) += 1;
            }
        }
        let q = WaitQueue::new();
        let a = Arc::new(Count(Mutex::new(0)));
        let b = Arc::new(Count(Mutex::new(0)));
        let c = Arc::new(Count(Mutex::new(0)));
        let la: Arc<dyn Listener> = a.clone();
        let lb: Arc<dyn Listener> = b.clone();
        let lc: Arc<dyn Listener> = c.clone();
        let _ra = q.register(EPOLLIN, true, Arc::downgrade(&la));
        let _rb = q.register(EPOLLIN, true, Arc::downgrade(&lb));
        let _rc = q.register(EPOLLIN, false, Arc::downgrade(&lc));
        q.notify(EPOLLIN);
        q.notify(EPOLLIN);
        assert_eq!(*lock(&a.0), 1);
        assert_eq!(*lock(&b.0), 1);
        assert_eq!(*lock(&c.0), 2, "a non-exclusive listener hears every one");
    }
}
