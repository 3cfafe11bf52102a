//! timerfd(2) (gVisor's fsimpl/timerfd): a timer whose expirations are
//! read as a count. Expirations are counted when looked at (a read, a
//! poll, a checkpoint), from the deadline and the interval on the timer's
//! clock: no thread is needed, and a sleeping poller wakes at the deadline
//! that [`FileOps::next_change`] reports.
//!
//! Saved form (`FileStateKind::TimerFd`): the clock, the time left until
//! the next expiry and the interval, sandbox-relative nanoseconds, and the
//! expirations not yet read. A restore re-arms the timer as much time
//! after the restore as it had left at the checkpoint (the sandbox's
//! monotonic clock continues from the saved value).

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dentry::lock;
use super::eventfd::anon_file;
use super::file::{FileKind, FileOps, IoCtx, OpenFile, SaveAs, SeekMode};
use super::poll::{WaitQueue, Waiter, EPOLLIN, EPOLLRDNORM};
use super::state::FileStateKind;
use crate::errno::Errno;
use crate::kernel::itimer::MAX_ITIMER_NANOS;
use crate::kernel::time::{ClockId, Clocks, Nanos};

pub const TFD_TIMER_ABSTIME: i32 = 1;
pub const TFD_TIMER_CANCEL_ON_SET: i32 = 2;

/// A timerfd's saved form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFdRecord {
    pub clock: ClockId,
    /// Time until the next expiry on `clock` (0: disarmed).
    pub remaining_ns: i64,
    pub interval_ns: i64,
    /// Expirations not yet read.
    pub ticks: u64,
}
statefile::versioned!(TimerFdRecord, "vfs.TimerFd", 1, [ClockId]);

impl TimerFdRecord {
    /// The first field out of range, named.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !matches!(
            self.clock,
            ClockId::Realtime | ClockId::Monotonic | ClockId::Boottime
        ) {
            return Err(("clock", format!("{:?} is not a timerfd clock", self.clock)));
        }
        for (field, v) in [
            ("remaining_ns", self.remaining_ns),
            ("interval_ns", self.interval_ns),
        ] {
            if !(0..=MAX_ITIMER_NANOS).contains(&v) {
                return Err((field, format!("{v} (0..={MAX_ITIMER_NANOS} allowed)")));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    /// The next expiry on the timer's clock (None: disarmed).
    deadline: Option<Nanos>,
    interval: Nanos,
    ticks: u64,
}

pub struct TimerFd {
    clock: ClockId,
    clocks: Clocks,
    state: Mutex<State>,
    queue: Arc<WaitQueue>,
}

/// A timer's setting as timerfd_gettime and timer_gettime show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSpec {
    pub value: Nanos,
    pub interval: Nanos,
}

impl TimerFd {
    /// timerfd_create's file on `clock` (CLOCK_REALTIME, CLOCK_MONOTONIC
    /// or CLOCK_BOOTTIME).
    pub fn open(clock: ClockId, clocks: Clocks, nonblock: bool) -> Arc<OpenFile> {
        Self::open_with(clock, clocks, nonblock, State::default())
    }

    fn open_with(clock: ClockId, clocks: Clocks, nonblock: bool, st: State) -> Arc<OpenFile> {
        let ops = Arc::new(TimerFd {
            clock,
            clocks,
            state: Mutex::new(st),
            queue: WaitQueue::new(),
        });
        let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
        anon_file(ops, flags)
    }

    /// A timerfd from a validated record; `flags` are the open file's.
    pub fn restore(r: &TimerFdRecord, clocks: Clocks, flags: i32) -> Arc<OpenFile> {
        let clock = r.clock;
        let now = read(&clocks, clock);
        let st = State {
            deadline: (r.remaining_ns > 0).then(|| now.saturating_add(r.remaining_ns)),
            interval: r.interval_ns,
            ticks: r.ticks,
        };
        Self::open_with(clock, clocks, flags & libc::O_NONBLOCK != 0, st)
    }

    fn now(&self) -> Nanos {
        read(&self.clocks, self.clock)
    }

    /// Counts the expirations up to `now`. Missed periods count, one each
    /// (a timerfd reports overruns in its count, unlike a signal).
    fn update(&self, st: &mut State, now: Nanos) {
        let Some(deadline) = st.deadline else {
            return;
        };
        if deadline > now {
            return;
        }
        if st.interval > 0 {
            let n = (now - deadline) / st.interval + 1;
            st.ticks = st.ticks.saturating_add(n as u64);
            st.deadline = Some(deadline.saturating_add(n.saturating_mul(st.interval)));
        } else {
            st.ticks = st.ticks.saturating_add(1);
            st.deadline = None;
        }
    }

    fn spec(st: &State, now: Nanos) -> TimerSpec {
        TimerSpec {
            value: st.deadline.map(|d| (d - now).max(1)).unwrap_or(0),
            interval: st.interval,
        }
    }

    /// timerfd_gettime.
    pub fn get(&self) -> TimerSpec {
        let now = self.now();
        let mut st = lock(&self.state);
        self.update(&mut st, now);
        Self::spec(&st, now)
    }

    /// timerfd_settime: arms (value > 0) or disarms; returns the old
    /// setting. Unread expirations are dropped, as Linux does.
    pub fn set(&self, new: TimerSpec, absolute: bool) -> TimerSpec {
        let now = self.now();
        let mut st = lock(&self.state);
        self.update(&mut st, now);
        let old = Self::spec(&st, now);
        let value = new.value.clamp(0, MAX_ITIMER_NANOS);
        st.interval = new.interval.clamp(0, MAX_ITIMER_NANOS);
        st.ticks = 0;
        st.deadline = if value == 0 && !absolute {
            None
        } else if absolute {
            if new.value == 0 {
                None
            } else {
                Some(value)
            }
        } else {
            Some(now.saturating_add(value))
        };
        drop(st);
        // Pollers look again: their deadline changed.
        self.queue.notify(EPOLLIN | EPOLLRDNORM);
        old
    }

    /// The saved form, counting expirations up to now.
    pub fn record(&self) -> TimerFdRecord {
        let now = self.now();
        let mut st = lock(&self.state);
        self.update(&mut st, now);
        TimerFdRecord {
            clock: self.clock,
            remaining_ns: st.deadline.map(|d| (d - now).max(1)).unwrap_or(0),
            interval_ns: st.interval,
            ticks: st.ticks,
        }
    }

    /// Sandbox monotonic time of the next expiry.
    fn next_expiry(&self) -> Option<Nanos> {
        let now = self.now();
        let st = lock(&self.state);
        let d = st.deadline?;
        Some(
            self.clocks
                .monotonic()
                .saturating_add(d.saturating_sub(now).max(0)),
        )
    }
}

/// Reads `clock` (a timerfd's or a POSIX timer's).
pub fn read(clocks: &Clocks, clock: ClockId) -> Nanos {
    match clock {
        ClockId::Realtime => clocks.realtime(),
        _ => clocks.monotonic(),
    }
}

/// The host instant at which the sandbox's monotonic clock reads `at`.
pub fn instant_of(clocks: &Clocks, at: Nanos) -> Instant {
    let left = at.saturating_sub(clocks.monotonic()).max(0);
    Instant::now() + Duration::from_nanos(left as u64)
}

/// The timerfd behind an open file.
pub fn timerfd_of(file: &OpenFile) -> Option<&TimerFd> {
    file.ops().as_any().downcast_ref::<TimerFd>()
}

impl FileOps for TimerFd {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Anonymous
    }

    fn save_as(&self) -> SaveAs {
        SaveAs::Anonymous(FileStateKind::TimerFd(self.record()))
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let waiter = Waiter::new();
        let _on_queue = self.queue.register(EPOLLIN, false, waiter.listener());
        let _on_interrupt = io.interrupt.register(&waiter);
        loop {
            waiter.reset();
            let now = self.now();
            let deadline = {
                let mut st = lock(&self.state);
                self.update(&mut st, now);
                if st.ticks > 0 {
                    let n = std::mem::take(&mut st.ticks);
                    buf[..8].copy_from_slice(&n.to_ne_bytes());
                    return Ok(8);
                }
                st.deadline
            };
            if io.nonblock {
                return Err(Errno::EAGAIN);
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            // The wall clock may be set meanwhile: a realtime timer looks
            // again at least every second.
            let until = deadline.map(|d| {
                let left = Duration::from_nanos(d.saturating_sub(now).max(0) as u64);
                Instant::now() + left.min(Duration::from_secs(1))
            });
            waiter.wait(until, false);
        }
    }

    fn readiness(&self) -> u32 {
        let now = self.now();
        let mut st = lock(&self.state);
        self.update(&mut st, now);
        if st.ticks > 0 {
            EPOLLIN | EPOLLRDNORM
        } else {
            0
        }
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.queue.clone())
    }

    fn next_change(&self) -> Option<i64> {
        self.next_expiry()
    }

    fn timed(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::Interrupt;

    fn ticks(f: &OpenFile) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        f.read(&mut b, &Interrupt::new())?;
        Ok(u64::from_ne_bytes(b))
    }

    #[test]
    fn periodic_timer_counts_expirations() {
        let clocks = Clocks::boot();
        let f = TimerFd::open(ClockId::Monotonic, clocks, true);
        let t = timerfd_of(&f).unwrap();
        assert_eq!(ticks(&f), Err(Errno::EAGAIN));
        t.set(
            TimerSpec {
                value: 10_000_000,
                interval: 10_000_000,
            },
            false,
        );
        std::thread::sleep(Duration::from_millis(35));
        let n = ticks(&f).unwrap();
        assert!((3..=5).contains(&n), "{n} expirations in 35 ms of 10 ms");
        let spec = t.get();
        assert!(spec.value > 0 && spec.value <= 10_000_000);
        assert_eq!(spec.interval, 10_000_000);
        // Disarm: the old setting comes back.
        let old = t.set(TimerSpec::default(), false);
        assert_eq!(old.interval, 10_000_000);
        assert_eq!(t.get(), TimerSpec::default());
    }

    #[test]
    fn a_blocking_read_waits_for_the_expiry_and_the_record_is_relative() {
        let clocks = Clocks::boot();
        let f = TimerFd::open(ClockId::Monotonic, clocks, false);
        let t = timerfd_of(&f).unwrap();
        t.set(
            TimerSpec {
                value: 30_000_000,
                interval: 0,
            },
            false,
        );
        let start = Instant::now();
        assert_eq!(ticks(&f), Ok(1));
        assert!(start.elapsed() >= Duration::from_millis(25));
        t.set(
            TimerSpec {
                value: 5_000_000_000,
                interval: 1_000,
            },
            false,
        );
        let r = t.record();
        assert!(r.remaining_ns > 4_000_000_000 && r.remaining_ns <= 5_000_000_000);
        assert!(r.check().is_ok());
        let back = TimerFd::restore(&r, Clocks::boot(), libc::O_RDWR | libc::O_NONBLOCK);
        let spec = timerfd_of(&back).unwrap().get();
        assert!(spec.value <= r.remaining_ns && spec.value > r.remaining_ns - 1_000_000_000);
        let mut bad = r;
        bad.interval_ns = -1;
        assert_eq!(bad.check().unwrap_err().0, "interval_ns");
        bad = r;
        bad.clock = ClockId::ThreadCputime;
        assert_eq!(bad.check().unwrap_err().0, "clock");
    }
}
