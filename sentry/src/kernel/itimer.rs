//! A process's interval timers (setitimer(2), getitimer(2), alarm(2)):
//! ITIMER_REAL on the sandbox's CLOCK_MONOTONIC sends SIGALRM,
//! ITIMER_VIRTUAL counts the process's time in application code and sends
//! SIGVTALRM, ITIMER_PROF counts its CPU time as cryo accounts it
//! (`Task::cpu_time`: application code and syscalls) and sends SIGPROF.
//!
//! The timers belong to the thread group, as in Linux. Expiry has to reach
//! a task that is running application code (which never comes back to the
//! Sentry on its own) or sleeping in a syscall, so each group with an armed
//! timer has a host thread of its own: it sends SIGALRM when the real timer's
//! deadline passes, and when a CPU timer may have run out it interrupts the
//! tasks in application code, which charge their time on the way back and
//! fire the CPU timers themselves ([`ITimers::charge`]).
//!
//! Saved form: remaining time and interval, sandbox-relative nanoseconds (the
//! real timer's remaining time on the sandbox's monotonic clock, which a
//! restore continues from the saved value): never a host absolute time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::posix_timer::{Notify, Now, PosixTimers, PosixTimersRecord, TimerSetting};
use super::signal::SigInfo;
use super::thread_group::ThreadGroup;
use super::time::Nanos;
use super::Kernel;
use crate::errno::Errno;

/// Linux's SI_KERNEL: the si_code of a signal from an interval timer.
const SI_KERNEL: i32 = 0x80;

/// The longest value or interval a timer holds (about 146 years): a
/// deadline `now + value` never overflows, and a restore refuses more.
pub const MAX_ITIMER_NANOS: Nanos = i64::MAX / 2;

/// How long the timer thread waits at most before it looks again whether
/// its process still exists.
const RECHECK: Duration = Duration::from_millis(100);

/// The shortest wait for a CPU timer: the tasks are not interrupted more
/// often than this (Linux accounts CPU timers at the tick, 1-10 ms).
const MIN_CPU_WAIT: Duration = Duration::from_millis(1);

/// Which timer (setitimer's `which`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Real,
    Virtual,
    Prof,
}

impl Which {
    pub fn from_raw(which: i32) -> Result<Which, Errno> {
        match which {
            0 => Ok(Which::Real),
            1 => Ok(Which::Virtual),
            2 => Ok(Which::Prof),
            _ => Err(Errno::EINVAL),
        }
    }

    pub fn signal(self) -> i32 {
        match self {
            Which::Real => libc::SIGALRM,
            Which::Virtual => libc::SIGVTALRM,
            Which::Prof => libc::SIGPROF,
        }
    }
}

/// A timer's setting as setitimer and getitimer see it: the time until it
/// next fires (0: disarmed) and the interval it reloads with (0: once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ITimerValue {
    pub value: Nanos,
    pub interval: Nanos,
}

/// A CPU-time timer: what is left of its budget (0: disarmed).
#[derive(Clone, Copy, Debug, Default)]
struct CpuTimer {
    remaining: Nanos,
    interval: Nanos,
}

impl CpuTimer {
    fn armed(&self) -> bool {
        self.remaining > 0
    }

    /// Charges `ns` of CPU time; whether the timer fired. Like Linux's
    /// check_cpu_itimer, one expiry reloads once: an overshoot shortens the
    /// next period instead of firing a burst.
    fn charge(&mut self, ns: Nanos) -> bool {
        if !self.armed() {
            return false;
        }
        self.remaining = self.remaining.saturating_sub(ns);
        if self.remaining > 0 {
            return false;
        }
        self.remaining = if self.interval > 0 {
            let next = self.remaining.saturating_add(self.interval);
            if next > 0 {
                next
            } else {
                self.interval
            }
        } else {
            0
        };
        true
    }
}

#[derive(Default)]
struct State {
    /// ITIMER_REAL's deadline on the sandbox's monotonic clock.
    real_deadline: Option<Nanos>,
    real_interval: Nanos,
    virt: CpuTimer,
    prof: CpuTimer,
    /// The tasks running application code now (a few: a Vec keeps its
    /// buffer, where a set allocated a node at each switch of a lone task).
    in_user: Vec<i32>,
    /// When the timer thread interrupts the tasks in application code so
    /// that a CPU timer's expiry is seen (host time: never saved).
    cpu_check: Option<Instant>,
    /// A checkpoint is saving the process: nothing fires until it ends, so
    /// a signal cannot be lost between the tasks' records and the timers'.
    frozen: bool,
    /// The timer thread runs.
    thread: bool,
    /// The process's POSIX timers (timer_create), fired by the same thread.
    posix: PosixTimers,
    /// The process, for the CPU-time POSIX timers that fire as its tasks
    /// charge their time (set when the timer thread starts).
    group: Weak<ThreadGroup>,
}

impl State {
    fn any_armed(&self) -> bool {
        self.real_deadline.is_some()
            || self.virt.armed()
            || self.prof.armed()
            || self.posix.any_armed()
    }

    /// A timer that runs on the process's CPU time is armed.
    fn cpu_armed(&self) -> bool {
        self.virt.armed() || self.prof.armed() || self.posix.cpu_budget().is_some()
    }
}

/// The interval timers of one process.
pub struct ITimers {
    state: Mutex<State>,
    wake: Condvar,
    /// False only while no timer runs on the process's CPU time: then
    /// [`ITimers::charge`], which every switch into the application calls,
    /// returns without the lock. Set by every use of the state but a
    /// task's own switch bookkeeping (so no change that could arm a CPU
    /// timer can miss it), cleared by a charge that finds none armed.
    maybe_cpu_armed: AtomicBool,
}

impl Default for ITimers {
    fn default() -> Self {
        ITimers {
            state: Mutex::default(),
            wake: Condvar::new(),
            maybe_cpu_armed: AtomicBool::new(true),
        }
    }
}

/// A timer's saved form: remaining time (0: disarmed) and interval, in
/// nanoseconds (on the sandbox's monotonic clock for ITIMER_REAL, of CPU
/// time for the others).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ITimerRecord {
    pub remaining_ns: i64,
    pub interval_ns: i64,
}
statefile::versioned!(ITimerRecord, "kernel.ITimer", 1);

/// The three timers' saved form.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ITimersRecord {
    pub real: ITimerRecord,
    pub virt: ITimerRecord,
    pub prof: ITimerRecord,
}
statefile::versioned!(ITimersRecord, "kernel.ITimers", 1, [ITimerRecord]);

impl ITimersRecord {
    /// The first field out of range (negative, or beyond
    /// [`MAX_ITIMER_NANOS`]), named as the record's field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, v) in [
            ("itimers.real.remaining_ns", self.real.remaining_ns),
            ("itimers.real.interval_ns", self.real.interval_ns),
            ("itimers.virt.remaining_ns", self.virt.remaining_ns),
            ("itimers.virt.interval_ns", self.virt.interval_ns),
            ("itimers.prof.remaining_ns", self.prof.remaining_ns),
            ("itimers.prof.interval_ns", self.prof.interval_ns),
        ] {
            if !(0..=MAX_ITIMER_NANOS).contains(&v) {
                return Err((field, format!("{v} (0..={MAX_ITIMER_NANOS} allowed)")));
            }
        }
        Ok(())
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn nanos(d: Duration) -> Nanos {
    Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX)
}

/// A process-directed signal from a timer, unless the process ignores it
/// (Linux discards an ignored signal at generation: it must not end a
/// sleep with EINTR).
fn send(tg: &ThreadGroup, signo: i32) {
    let ignored = tg
        .handlers()
        .get(signo)
        .map(|a| {
            a.is_ignored()
                || (a.is_default()
                    && super::signal::default_action(signo) == super::signal::DefaultAction::Ignore)
        })
        .unwrap_or(true);
    if !ignored {
        tg.signal_process(SigInfo {
            signo,
            code: SI_KERNEL,
            addr: 0,
            pid: 0,
            uid: 0,
        });
    }
}

impl ITimers {
    pub fn new() -> Arc<ITimers> {
        Arc::new(ITimers::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        let st = lock(&self.state);
        // Under the lock, so that a charge clearing it cannot overtake a
        // change made under this guard.
        self.maybe_cpu_armed.store(true, Ordering::SeqCst);
        st
    }

    /// getitimer: the time left and the interval. An armed real timer
    /// whose deadline has just passed reads 1 µs, never 0 (Linux's
    /// itimer_get_remtime: 0 would mean disarmed).
    pub fn get(&self, which: Which, now: Nanos) -> ITimerValue {
        Self::value(&self.state(), which, now)
    }

    fn value(st: &State, which: Which, now: Nanos) -> ITimerValue {
        match which {
            Which::Real => ITimerValue {
                value: st
                    .real_deadline
                    .map(|d| d.saturating_sub(now).max(1_000))
                    .unwrap_or(0),
                interval: st.real_interval,
            },
            Which::Virtual => ITimerValue {
                value: st.virt.remaining,
                interval: st.virt.interval,
            },
            Which::Prof => ITimerValue {
                value: st.prof.remaining,
                interval: st.prof.interval,
            },
        }
    }

    /// setitimer: arms (value > 0) or disarms the timer; returns the old
    /// setting. Values are clamped to [`MAX_ITIMER_NANOS`]. The caller
    /// then starts the timer thread ([`ITimers::start`]).
    pub fn set(&self, which: Which, new: ITimerValue, now: Nanos) -> ITimerValue {
        let value = new.value.clamp(0, MAX_ITIMER_NANOS);
        let interval = new.interval.clamp(0, MAX_ITIMER_NANOS);
        // Read and replaced under one lock: an expiry in between would
        // otherwise be lost or reported twice.
        let mut st = self.state();
        let old = Self::value(&st, which, now);
        match which {
            Which::Real => {
                st.real_deadline = (value > 0).then(|| now.saturating_add(value));
                st.real_interval = interval;
            }
            Which::Virtual => {
                st.virt = CpuTimer {
                    remaining: value,
                    interval,
                }
            }
            Which::Prof => {
                st.prof = CpuTimer {
                    remaining: value,
                    interval,
                }
            }
        }
        st.cpu_check = None;
        self.wake.notify_all();
        old
    }

    /// Task `tid` is about to run application code.
    pub fn enter_user(&self, tid: i32) {
        let mut st = lock(&self.state);
        if !st.in_user.contains(&tid) {
            st.in_user.push(tid);
        }
        if st.cpu_armed() {
            self.wake.notify_all();
        }
    }

    /// The tasks running application code now (RLIMIT_CPU's watchdog
    /// interrupts them so their CPU time is charged and checked).
    pub fn in_user(&self) -> Vec<i32> {
        lock(&self.state).in_user.clone()
    }

    /// Task `tid` is back in the Sentry.
    pub fn leave_user(&self, tid: i32) {
        lock(&self.state).in_user.retain(|&t| t != tid);
    }

    /// Charges a task's `user` time (application code) and `total` time
    /// (application code and syscall) to the CPU timers; the signals of
    /// those that fired, which the task queues on itself (a process-directed
    /// signal may go to any thread that does not block it).
    pub fn charge(&self, user: Duration, total: Duration) -> Vec<i32> {
        let mut fired = Vec::new();
        if !self.maybe_cpu_armed.load(Ordering::SeqCst) {
            return fired;
        }
        let mut st = lock(&self.state);
        if !st.cpu_armed() {
            // Nothing to charge (frozen or not: an unarmed timer stays
            // unarmed) until the state is next used.
            self.maybe_cpu_armed.store(false, Ordering::SeqCst);
            return fired;
        }
        if st.frozen {
            // A checkpoint is running: the time still counts, the expiry
            // waits for the next charge.
            st.virt.remaining = st
                .virt
                .remaining
                .saturating_sub(nanos(user))
                .max(if st.virt.armed() { 1 } else { 0 });
            st.prof.remaining = st
                .prof
                .remaining
                .saturating_sub(nanos(total))
                .max(if st.prof.armed() { 1 } else { 0 });
            if let Some(tg) = st.group.upgrade() {
                st.posix.charge_cpu(&tg, nanos(total), false);
            }
            return fired;
        }
        if st.posix.cpu_budget().is_some() {
            if let Some(tg) = st.group.upgrade() {
                // Process CPU time is what cryo accounts per task
                // (application code and syscalls), as for ITIMER_PROF.
                st.posix.charge_cpu(&tg, nanos(total), true);
            }
        }
        if st.virt.charge(nanos(user)) {
            fired.push(libc::SIGVTALRM);
        }
        if st.prof.charge(nanos(total)) {
            fired.push(libc::SIGPROF);
        }
        fired
    }

    /// A checkpoint begins (`true`) or ends (`false`).
    pub fn freeze(&self, frozen: bool) {
        self.state().frozen = frozen;
        self.wake.notify_all();
    }

    /// The saved form; `now` is the sandbox's monotonic clock.
    pub fn save(&self, now: Nanos) -> ITimersRecord {
        let st = self.state();
        ITimersRecord {
            real: ITimerRecord {
                remaining_ns: st
                    .real_deadline
                    .map(|d| d.saturating_sub(now).max(1))
                    .unwrap_or(0),
                interval_ns: st.real_interval,
            },
            virt: ITimerRecord {
                remaining_ns: st.virt.remaining,
                interval_ns: st.virt.interval,
            },
            prof: ITimerRecord {
                remaining_ns: st.prof.remaining,
                interval_ns: st.prof.interval,
            },
        }
    }

    /// Loads a validated record; `now` is the restored sandbox's monotonic
    /// clock, which continues from the saved one, so the real timer fires
    /// as much sandbox time after the restore as it had left at the save.
    pub fn load(&self, r: &ITimersRecord, now: Nanos) {
        let mut st = self.state();
        st.real_deadline =
            (r.real.remaining_ns > 0).then(|| now.saturating_add(r.real.remaining_ns));
        st.real_interval = r.real.interval_ns;
        st.virt = CpuTimer {
            remaining: r.virt.remaining_ns,
            interval: r.virt.interval_ns,
        };
        st.prof = CpuTimer {
            remaining: r.prof.remaining_ns,
            interval: r.prof.interval_ns,
        };
    }

    /// timer_create.
    pub fn posix_create(
        &self,
        clock: super::time::ClockId,
        notify: Notify,
        value: Option<u64>,
    ) -> Result<i32, Errno> {
        self.state().posix.create(clock, notify, value)
    }

    /// timer_settime: the old setting. The caller then starts the timer
    /// thread ([`ITimers::start`]).
    pub fn posix_set(
        &self,
        id: i32,
        new: TimerSetting,
        absolute: bool,
        now: Now,
    ) -> Result<TimerSetting, Errno> {
        let old = self.state().posix.set(id, new, absolute, &now);
        self.wake.notify_all();
        old
    }

    pub fn posix_get(&self, id: i32, now: Now) -> Result<TimerSetting, Errno> {
        self.state().posix.get(id, &now)
    }

    pub fn posix_overrun(&self, id: i32) -> Result<u32, Errno> {
        self.state().posix.overrun(id)
    }

    pub fn posix_delete(&self, id: i32) -> Result<(), Errno> {
        self.state().posix.delete(id)
    }

    /// execve: the process's POSIX timers are deleted (its interval
    /// timers stay).
    pub fn posix_delete_all(&self) {
        self.state().posix = PosixTimers::default();
    }

    /// Timer `id`'s signal is being delivered with `overrun` in it: the
    /// count timer_getoverrun reports; returns it.
    pub fn posix_delivered(&self, id: i32, overrun: u32) -> u32 {
        self.state().posix.delivered(id, overrun)
    }

    /// The POSIX timers' saved form.
    pub fn save_posix(&self, now: Now) -> PosixTimersRecord {
        self.state().posix.save(&now)
    }

    /// Loads validated POSIX timers (then [`ITimers::start`]).
    pub fn load_posix(&self, r: &PosixTimersRecord, now: Now) {
        self.state().posix.load(r, &now);
    }

    /// Starts the group's timer thread if a timer is armed and none runs.
    pub fn start(self: &Arc<Self>, kernel: &Arc<Kernel>, tg: &Arc<ThreadGroup>) {
        {
            let mut st = self.state();
            st.group = Arc::downgrade(tg);
            if st.thread || !st.any_armed() {
                return;
            }
            st.thread = true;
        }
        let timers = self.clone();
        let kernel = Arc::downgrade(kernel);
        let group = Arc::downgrade(tg);
        let spawned = std::thread::Builder::new()
            .name(format!("itimer-{}", tg.tgid()))
            .spawn(move || timers.run(kernel, group));
        if let Err(e) = spawned {
            tracing::warn!(tgid = tg.tgid(), error = %e, "cannot start the interval timer thread");
            self.state().thread = false;
        }
    }

    /// The timer thread: ends when no timer is armed or the process is
    /// gone.
    fn run(&self, kernel: Weak<Kernel>, group: Weak<ThreadGroup>) {
        let mut st = self.state();
        loop {
            let (Some(kernel), Some(tg)) = (kernel.upgrade(), group.upgrade()) else {
                st.thread = false;
                return;
            };
            if !st.any_armed() || tg.live() == 0 || tg.exit_status().is_some() {
                st.thread = false;
                return;
            }
            let now = kernel.clocks.monotonic();
            let mut wait = RECHECK;
            if !st.frozen && st.posix.any_armed() {
                let clocks = Now {
                    monotonic: now,
                    realtime: kernel.clocks.realtime(),
                    // CPU-time timers are not fired from here.
                    cpu: 0,
                };
                // Fired under the lock, as the real timer's signal is.
                if let Some(next) = st.posix.fire(&tg, &clocks) {
                    let left = Duration::from_nanos(next.saturating_sub(now).max(0) as u64);
                    // A realtime timer looks again at least every RECHECK,
                    // in case the wall clock was set.
                    wait = wait.min(left.max(Duration::from_micros(50)));
                }
            }
            if let Some(deadline) = st.real_deadline {
                if deadline <= now && !st.frozen {
                    st.real_deadline = (st.real_interval > 0).then(|| {
                        // Periods missed (the host was slow) are skipped, as
                        // hrtimer_forward does: one signal, the next deadline
                        // in the future on the same grid.
                        let late = now - deadline;
                        let periods = late / st.real_interval + 1;
                        deadline.saturating_add(periods.saturating_mul(st.real_interval))
                    });
                    // Sent under the lock: a checkpoint's freeze waits for
                    // it, so the signal is in a task's record or not sent.
                    send(&tg, libc::SIGALRM);
                    continue;
                }
                let left = Duration::from_nanos(deadline.saturating_sub(now).max(0) as u64);
                wait = wait.min(left.max(Duration::from_micros(50)));
            }
            if st.cpu_armed() {
                let running: Vec<i32> = st
                    .in_user
                    .iter()
                    .copied()
                    .filter(|&t| tg.member(t).is_some())
                    .collect();
                if running.is_empty() {
                    st.cpu_check = None;
                } else {
                    let host_now = Instant::now();
                    match st.cpu_check {
                        Some(at) if host_now >= at => {
                            st.cpu_check = None;
                            for t in running {
                                if let Some(m) = tg.member(t) {
                                    m.interrupt.interrupt();
                                }
                            }
                            drop(tg);
                            drop(kernel);
                            st = self
                                .wake
                                .wait_timeout(st, MIN_CPU_WAIT)
                                .map(|(g, _)| g)
                                .unwrap_or_else(|e| e.into_inner().0);
                            continue;
                        }
                        Some(at) => wait = wait.min(at - host_now),
                        None => {
                            // The group's CPU time grows at most as fast as
                            // its running tasks: the first timer cannot run
                            // out before this.
                            let budget = [st.virt, st.prof]
                                .iter()
                                .filter(|c| c.armed())
                                .map(|c| c.remaining)
                                .chain(st.posix.cpu_budget())
                                .min()
                                .unwrap_or(0);
                            let per = budget / i64::try_from(running.len()).unwrap_or(1).max(1);
                            let d = Duration::from_nanos(per.max(0) as u64).max(MIN_CPU_WAIT);
                            st.cpu_check = Some(host_now + d);
                            wait = wait.min(d);
                        }
                    }
                }
            }
            drop(tg);
            drop(kernel);
            st = self
                .wake
                .wait_timeout(st, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_timer_reloads_once_per_expiry() {
        let mut t = CpuTimer {
            remaining: 10,
            interval: 4,
        };
        assert!(!t.charge(5));
        assert!(t.charge(6));
        assert_eq!(t.remaining, 3);
        assert!(t.charge(100));
        assert_eq!(t.remaining, 4);
        let mut once = CpuTimer {
            remaining: 1,
            interval: 0,
        };
        assert!(once.charge(1));
        assert!(!once.armed());
        assert!(!once.charge(1));
    }

    #[test]
    fn a_charge_skips_the_lock_only_while_no_cpu_timer_is_armed() {
        let t = ITimers::new();
        let ms = Duration::from_millis(1);
        assert!(t.charge(ms, ms).is_empty());
        assert!(!t.maybe_cpu_armed.load(Ordering::SeqCst));
        // A task's own switches leave the fast path on.
        t.enter_user(7);
        t.leave_user(7);
        assert!(!t.maybe_cpu_armed.load(Ordering::SeqCst));
        assert!(t.in_user().is_empty());
        // Arming a timer turns it off: the next charge fires it.
        let one_ms = ITimerValue {
            value: 1_000_000,
            interval: 0,
        };
        t.set(Which::Virtual, one_ms, 0);
        assert_eq!(t.charge(ms, ms), vec![libc::SIGVTALRM]);
        // Fired and not reloaded: the next charge finds nothing armed.
        assert!(t.charge(ms, ms).is_empty());
        assert!(!t.maybe_cpu_armed.load(Ordering::SeqCst));
        t.set(Which::Prof, one_ms, 0);
        assert_eq!(t.charge(ms, ms), vec![libc::SIGPROF]);
    }

    #[test]
    fn set_returns_the_old_setting_and_get_the_remaining_time() {
        let t = ITimers::default();
        let old = t.set(
            Which::Real,
            ITimerValue {
                value: 2_000,
                interval: 500,
            },
            10_000,
        );
        assert_eq!(old, ITimerValue::default());
        assert_eq!(
            t.get(Which::Real, 11_000),
            ITimerValue {
                value: 1_000,
                interval: 500
            }
        );
        // Past the deadline but not yet fired: 1 µs, not 0.
        assert_eq!(t.get(Which::Real, 20_000).value, 1_000);
        let old = t.set(Which::Real, ITimerValue::default(), 11_500);
        assert_eq!(old.value, 1_000);
        assert_eq!(
            t.get(Which::Real, 11_500),
            ITimerValue {
                value: 0,
                interval: 0
            }
        );
    }

    #[test]
    fn the_saved_form_is_relative_and_reloads_on_another_clock() {
        let t = ITimers::default();
        t.set(
            Which::Real,
            ITimerValue {
                value: 2_000_000_000,
                interval: 0,
            },
            5_000_000_000,
        );
        t.set(
            Which::Virtual,
            ITimerValue {
                value: 300,
                interval: 100,
            },
            5_000_000_000,
        );
        let rec = t.save(5_500_000_000);
        assert_eq!(rec.real.remaining_ns, 1_500_000_000);
        assert_eq!(
            rec.virt,
            ITimerRecord {
                remaining_ns: 300,
                interval_ns: 100
            }
        );
        let r = ITimers::default();
        r.load(&rec, 90_000_000_000);
        assert_eq!(r.get(Which::Real, 90_000_000_000).value, 1_500_000_000);
        assert_eq!(r.get(Which::Virtual, 0).value, 300);
        assert_eq!(r.save(90_000_000_000), rec);
    }

    #[test]
    fn hostile_values_are_refused_by_field() {
        assert!(ITimersRecord::default().check().is_ok());
        let mut r = ITimersRecord::default();
        r.real.interval_ns = -1;
        assert_eq!(r.check().unwrap_err().0, "itimers.real.interval_ns");
        let mut r = ITimersRecord::default();
        r.prof.remaining_ns = MAX_ITIMER_NANOS + 1;
        assert_eq!(r.check().unwrap_err().0, "itimers.prof.remaining_ns");
    }

    #[test]
    fn frozen_timers_do_not_fire_but_keep_counting() {
        let t = ITimers::default();
        t.set(
            Which::Prof,
            ITimerValue {
                value: 1_000,
                interval: 0,
            },
            0,
        );
        t.freeze(true);
        assert!(t
            .charge(Duration::from_nanos(5_000), Duration::from_nanos(5_000))
            .is_empty());
        t.freeze(false);
        assert_eq!(
            t.charge(Duration::ZERO, Duration::from_nanos(1)),
            vec![libc::SIGPROF]
        );
    }
}
