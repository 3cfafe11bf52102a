//! POSIX per-process timers (timer_create(2) and friends): per process,
//! not inherited by fork, deleted by exec. They live with the interval
//! timers ([`super::itimer::ITimers`]) and fire from the same timer thread,
//! under the same lock, frozen by the same checkpoint freeze.
//!
//! A timer whose signal is still pending when it fires again does not
//! queue a second one: the pending signal's overrun count grows (Linux's
//! it_overrun), and the count at delivery is what timer_getoverrun
//! returns afterwards.
//!
//! Saved form ([`PosixTimersRecord`], one per process, keyed by tgid):
//! each timer's id, clock, notification, remaining time and interval,
//! sandbox-relative nanoseconds on its clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::itimer::MAX_ITIMER_NANOS;
use super::signal::{SigInfo, SI_TIMER};
use super::thread_group::ThreadGroup;
use super::time::{ClockId, Nanos};
use crate::errno::Errno;

pub const SIGEV_SIGNAL: i32 = 0;
pub const SIGEV_NONE: i32 = 1;
pub const SIGEV_THREAD: i32 = 2;
pub const SIGEV_THREAD_ID: i32 = 4;

/// Most timers one process may hold (a restore refuses more).
pub const MAX_TIMERS: usize = 1 << 16;

/// Linux's DELAYTIMER_MAX: an overrun count saturates here.
const DELAYTIMER_MAX: u32 = i32::MAX as u32;

/// How a timer tells of its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notify {
    /// SIGEV_NONE: nothing (timer_gettime shows it).
    None,
    /// SIGEV_SIGNAL (and SIGEV_THREAD, which libc builds on it): a
    /// process-directed signal.
    Signal { signo: i32 },
    /// SIGEV_THREAD_ID: a signal to thread `tid` of the process.
    Thread { signo: i32, tid: i32 },
}
statefile::versioned!(Notify, "kernel.PosixTimerNotify", 1);

#[derive(Clone, Debug)]
pub(super) struct PosixTimer {
    pub clock: ClockId,
    pub notify: Notify,
    /// sigev_value, carried in the signal's si_value.
    pub value: u64,
    /// The next expiry on `clock` (None: disarmed); for a CPU-time timer
    /// the process CPU time left until it.
    pub deadline: Option<Nanos>,
    pub interval: Nanos,
    /// Expirations missed since the pending signal was queued.
    pub overrun: u32,
    /// The overrun count of the last delivered signal.
    pub overrun_last: u32,
}

/// The timers of one process, by id.
#[derive(Clone, Debug, Default)]
pub(super) struct PosixTimers {
    pub timers: BTreeMap<i32, PosixTimer>,
}

/// One timer's saved form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimerRecord {
    pub id: i32,
    pub clock: ClockId,
    pub notify: Notify,
    pub value: u64,
    /// Time until the next expiry (0: disarmed).
    pub remaining_ns: i64,
    pub interval_ns: i64,
    pub overrun: u32,
    pub overrun_last: u32,
}
statefile::versioned!(PosixTimerRecord, "kernel.PosixTimer", 1, [ClockId, Notify]);

/// A process's timers' saved form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimersRecord {
    pub timers: Vec<PosixTimerRecord>,
}
statefile::savable_serde!(
    PosixTimersRecord,
    "kernel.PosixTimers",
    1,
    [PosixTimerRecord]
);

impl PosixTimersRecord {
    /// The first field out of range, named as `timers[i].field`; `tids`
    /// says whether a thread is one of the process's.
    pub fn check(&self, is_member: &dyn Fn(i32) -> bool) -> Result<(), (String, String)> {
        if self.timers.len() > MAX_TIMERS {
            return Err(("timers".into(), format!("{} timers", self.timers.len())));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, t) in self.timers.iter().enumerate() {
            let f = |name: &str| format!("timers[{i}].{name}");
            if t.id < 0 || !ids.insert(t.id) {
                return Err((f("id"), format!("{} negative or listed twice", t.id)));
            }
            if !matches!(
                t.clock,
                ClockId::Realtime
                    | ClockId::Monotonic
                    | ClockId::Boottime
                    | ClockId::ProcessCputime
            ) {
                return Err((f("clock"), format!("{:?}", t.clock)));
            }
            for (name, v) in [
                ("remaining_ns", t.remaining_ns),
                ("interval_ns", t.interval_ns),
            ] {
                if !(0..=MAX_ITIMER_NANOS).contains(&v) {
                    return Err((f(name), format!("{v} (0..={MAX_ITIMER_NANOS} allowed)")));
                }
            }
            match t.notify {
                Notify::None => {}
                Notify::Signal { signo } => {
                    if !(1..=64).contains(&signo) {
                        return Err((f("notify"), format!("signal {signo}")));
                    }
                }
                Notify::Thread { signo, tid } => {
                    if !(1..=64).contains(&signo) {
                        return Err((f("notify"), format!("signal {signo}")));
                    }
                    if !is_member(tid) {
                        return Err((f("notify"), format!("thread {tid} is not the process's")));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A timer's setting (timer_settime/timer_gettime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSetting {
    pub value: Nanos,
    pub interval: Nanos,
}

/// The clocks' readings a timer operation works with.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub monotonic: Nanos,
    pub realtime: Nanos,
    /// The process's CPU time as the calling task reads
    /// CLOCK_PROCESS_CPUTIME_ID (absolute CPU-time timers count from it).
    pub cpu: Nanos,
}

impl Now {
    pub fn on(&self, clock: ClockId) -> Nanos {
        match clock {
            ClockId::Realtime => self.realtime,
            _ => self.monotonic,
        }
    }
}

/// Whether timers on `clock` count the process's CPU time.
fn is_cpu(clock: ClockId) -> bool {
    clock == ClockId::ProcessCputime
}

impl PosixTimers {
    pub fn any_armed(&self) -> bool {
        self.timers.values().any(|t| t.deadline.is_some())
    }

    /// The least CPU time left among the armed CPU-time timers.
    pub fn cpu_budget(&self) -> Option<Nanos> {
        self.timers
            .values()
            .filter(|t| is_cpu(t.clock))
            .filter_map(|t| t.deadline)
            .min()
    }

    /// Charges `ns` of the process's CPU time to the CPU-time timers and
    /// fires those that ran out (`fire` false while a checkpoint is
    /// saving: the time counts, the expiry waits for the next charge).
    pub fn charge_cpu(&mut self, tg: &ThreadGroup, ns: Nanos, fire: bool) {
        for (&id, t) in self.timers.iter_mut() {
            if !is_cpu(t.clock) {
                continue;
            }
            let Some(left) = t.deadline else {
                continue;
            };
            let left = left.saturating_sub(ns);
            if left > 0 || !fire {
                t.deadline = Some(left.max(1));
                continue;
            }
            // As a CPU interval timer: one expiry reloads once, an
            // overshoot shortening the next period; the missed periods are
            // overruns.
            let over = -left;
            let missed = if t.interval > 0 { over / t.interval } else { 0 };
            t.deadline = (t.interval > 0).then(|| t.interval - over % t.interval);
            send(tg, id, t, u32::try_from(missed).unwrap_or(DELAYTIMER_MAX));
        }
    }

    /// timer_create: the lowest free id.
    pub fn create(
        &mut self,
        clock: ClockId,
        notify: Notify,
        value: Option<u64>,
    ) -> Result<i32, Errno> {
        if self.timers.len() >= MAX_TIMERS {
            return Err(Errno::EAGAIN);
        }
        let id = (0..).find(|i| !self.timers.contains_key(i)).unwrap_or(0);
        self.timers.insert(
            id,
            PosixTimer {
                clock,
                notify,
                // Without a sigevent, si_value is the timer's id.
                value: value.unwrap_or(id as u64),
                deadline: None,
                interval: 0,
                overrun: 0,
                overrun_last: 0,
            },
        );
        Ok(id)
    }

    fn setting(t: &PosixTimer, now: &Now) -> TimerSetting {
        let left = |d: Nanos| {
            if is_cpu(t.clock) {
                d
            } else {
                d.saturating_sub(now.on(t.clock)).max(1)
            }
        };
        TimerSetting {
            value: t.deadline.map(left).unwrap_or(0),
            interval: t.interval,
        }
    }

    pub fn get(&self, id: i32, now: &Now) -> Result<TimerSetting, Errno> {
        let t = self.timers.get(&id).ok_or(Errno::EINVAL)?;
        Ok(Self::setting(t, now))
    }

    /// timer_settime: the old setting.
    pub fn set(
        &mut self,
        id: i32,
        new: TimerSetting,
        absolute: bool,
        now: &Now,
    ) -> Result<TimerSetting, Errno> {
        let t = self.timers.get_mut(&id).ok_or(Errno::EINVAL)?;
        let old = Self::setting(t, now);
        let value = new.value.clamp(0, MAX_ITIMER_NANOS);
        t.interval = new.interval.clamp(0, MAX_ITIMER_NANOS);
        t.overrun = 0;
        t.deadline = if value == 0 {
            None
        } else if is_cpu(t.clock) {
            // CPU time left: an absolute value is measured from the
            // process's CPU time now.
            Some(if absolute {
                value.saturating_sub(now.cpu).max(1)
            } else {
                value
            })
        } else if absolute {
            Some(value)
        } else {
            Some(now.on(t.clock).saturating_add(value))
        };
        Ok(old)
    }

    pub fn overrun(&self, id: i32) -> Result<u32, Errno> {
        Ok(self.timers.get(&id).ok_or(Errno::EINVAL)?.overrun_last)
    }

    pub fn delete(&mut self, id: i32) -> Result<(), Errno> {
        self.timers.remove(&id).map(|_| ()).ok_or(Errno::EINVAL)
    }

    /// A timer's signal was delivered with `overrun` in it: the count
    /// timer_getoverrun reports from now on.
    pub fn delivered(&mut self, id: i32, overrun: u32) -> u32 {
        if let Some(t) = self.timers.get_mut(&id) {
            t.overrun_last = overrun;
            t.overrun = 0;
        }
        overrun
    }

    /// Fires the timers due at `now`; the time (monotonic) the next one is
    /// due, if any.
    pub fn fire(&mut self, tg: &ThreadGroup, now: &Now) -> Option<Nanos> {
        let mut next: Option<Nanos> = None;
        for (&id, t) in self.timers.iter_mut() {
            let Some(deadline) = t.deadline else {
                continue;
            };
            if is_cpu(t.clock) {
                // Fired by charge_cpu as the tasks run.
                continue;
            }
            let at = now.on(t.clock);
            if deadline > at {
                let left = deadline - at;
                let due = now.monotonic.saturating_add(left);
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            // Periods missed (the host was slow) count as overruns.
            let periods = if t.interval > 0 {
                (at - deadline) / t.interval + 1
            } else {
                1
            };
            t.deadline = (t.interval > 0)
                .then(|| deadline.saturating_add(periods.saturating_mul(t.interval)));
            if let Some(d) = t.deadline {
                let due = now.monotonic.saturating_add(d - at);
                next = Some(next.map_or(due, |n| n.min(due)));
            }
            let missed = u32::try_from(periods - 1).unwrap_or(DELAYTIMER_MAX);
            send(tg, id, t, missed);
        }
        next
    }

    pub fn save(&self, now: &Now) -> PosixTimersRecord {
        PosixTimersRecord {
            timers: self
                .timers
                .iter()
                .map(|(&id, t)| PosixTimerRecord {
                    id,
                    clock: t.clock,
                    notify: t.notify,
                    value: t.value,
                    remaining_ns: Self::setting(t, now).value,
                    interval_ns: t.interval,
                    overrun: t.overrun,
                    overrun_last: t.overrun_last,
                })
                .collect(),
        }
    }

    pub fn load(&mut self, r: &PosixTimersRecord, now: &Now) {
        self.timers = r
            .timers
            .iter()
            .map(|t| {
                (
                    t.id,
                    PosixTimer {
                        clock: t.clock,
                        notify: t.notify,
                        value: t.value,
                        deadline: (t.remaining_ns > 0).then(|| {
                            if is_cpu(t.clock) {
                                t.remaining_ns
                            } else {
                                now.on(t.clock).saturating_add(t.remaining_ns)
                            }
                        }),
                        interval: t.interval_ns,
                        overrun: t.overrun,
                        overrun_last: t.overrun_last,
                    },
                )
            })
            .collect();
    }
}

/// Queues timer `id`'s signal, or counts an overrun on the one still
/// pending. A signal the process ignores is not generated (Linux drops it
/// at generation, so it cannot end a sleep).
fn send(tg: &ThreadGroup, id: i32, t: &mut PosixTimer, missed: u32) {
    let (signo, member) = match t.notify {
        Notify::None => return,
        Notify::Signal { signo } => (signo, None),
        Notify::Thread { signo, tid } => (signo, tg.member(tid)),
    };
    let ignored = tg
        .handlers()
        .get(signo)
        .map(|a| {
            a.is_ignored()
                || (a.is_default()
                    && super::signal::default_action(signo) == super::signal::DefaultAction::Ignore)
        })
        .unwrap_or(true);
    if ignored {
        return;
    }
    // SIGEV_SIGNAL's is the process's to take, SIGEV_THREAD_ID's the
    // thread's.
    let queue = match &member {
        Some(m) => m.pending.clone(),
        None if tg.live() > 0 => tg.shared_pending().clone(),
        None => return,
    };
    {
        let mut pending = queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pending
            .iter_mut()
            .find(|p| p.code == SI_TIMER && p.pid == id && p.signo == signo)
        {
            p.uid = p.uid.saturating_add(missed + 1).min(DELAYTIMER_MAX);
            t.overrun = p.uid;
            return;
        }
        // Real-time signals queue every instance; a timer's is queued once
        // (above), so this push is never a duplicate of its own.
        pending.push(SigInfo {
            signo,
            code: SI_TIMER,
            addr: t.value,
            pid: id,
            uid: missed,
        });
        t.overrun = missed;
    }
    match member {
        Some(m) => m.interrupt.interrupt(),
        None => tg.wake_for(signo, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_settings_and_records() {
        let mut p = PosixTimers::default();
        let a = p.create(ClockId::Monotonic, Notify::None, None).unwrap();
        let b = p
            .create(ClockId::Realtime, Notify::Signal { signo: 10 }, Some(77))
            .unwrap();
        assert_eq!((a, b), (0, 1));
        let now = Now {
            monotonic: 5_000,
            realtime: 1_000_000,
            cpu: 0,
        };
        p.set(
            a,
            TimerSetting {
                value: 1_000,
                interval: 500,
            },
            false,
            &now,
        )
        .unwrap();
        p.set(
            b,
            TimerSetting {
                value: 1_500_000,
                interval: 0,
            },
            true,
            &now,
        )
        .unwrap();
        assert_eq!(p.get(a, &now).unwrap().value, 1_000);
        assert_eq!(p.get(b, &now).unwrap().value, 500_000);
        assert_eq!(p.get(9, &now), Err(Errno::EINVAL));
        let rec = p.save(&now);
        assert!(rec.check(&|_| true).is_ok());
        let mut q = PosixTimers::default();
        let later = Now {
            monotonic: 90_000,
            realtime: 7_000_000,
            cpu: 0,
        };
        q.load(&rec, &later);
        assert_eq!(q.get(a, &later).unwrap().value, 1_000);
        assert_eq!(q.save(&later), rec);
        p.delete(a).unwrap();
        assert_eq!(p.delete(a), Err(Errno::EINVAL));
        assert_eq!(p.create(ClockId::Monotonic, Notify::None, None), Ok(0));
    }

    #[test]
    fn hostile_records_are_refused_by_field() {
        let good = PosixTimerRecord {
            id: 0,
            clock: ClockId::Monotonic,
            notify: Notify::Thread { signo: 10, tid: 1 },
            value: 0,
            remaining_ns: 10,
            interval_ns: 0,
            overrun: 0,
            overrun_last: 0,
        };
        let rec = |t: PosixTimerRecord| PosixTimersRecord {
            timers: vec![good, PosixTimerRecord { id: 1, ..t }],
        };
        assert!(rec(good).check(&|t| t == 1).is_ok());
        for (field, t) in [
            (
                "timers[1].clock",
                PosixTimerRecord {
                    clock: ClockId::ThreadCputime,
                    ..good
                },
            ),
            (
                "timers[1].remaining_ns",
                PosixTimerRecord {
                    remaining_ns: -1,
                    ..good
                },
            ),
            (
                "timers[1].interval_ns",
                PosixTimerRecord {
                    interval_ns: i64::MAX,
                    ..good
                },
            ),
            (
                "timers[1].notify",
                PosixTimerRecord {
                    notify: Notify::Signal { signo: 0 },
                    ..good
                },
            ),
            (
                "timers[1].notify",
                PosixTimerRecord {
                    notify: Notify::Thread { signo: 10, tid: 2 },
                    ..good
                },
            ),
        ] {
            assert_eq!(rec(t).check(&|t| t == 1).unwrap_err().0, field);
        }
        let twice = PosixTimersRecord {
            timers: vec![good, good],
        };
        assert_eq!(twice.check(&|_| true).unwrap_err().0, "timers[1].id");
    }
}
