//! The sandbox's memory limit (linux.resources.memory.limit, `cryo do
//! --memory`), enforced as a memory cgroup enforces its limit: past it, the
//! OOM killer sends SIGKILL to the sandbox's largest process.
//!
//! Every VMA is mapped eagerly (see mm/fault.rs), so the host, not the
//! Sentry, sees an application's first touch of a page: the committed
//! bytes are read from the memory file (its host block count) by a
//! watchdog thread, which checks more often the nearer they are to the
//! limit. A process can pass the limit by what it touches between two
//! checks (at most one [`MIN_PERIOD`] of memory bandwidth) before it is
//! killed. Pages the Sentry commits itself (tmpfs, shm and memfd data) are
//! checked before they are allocated (ENOSPC for the file's writer, see
//! `MemoryFile::allocate_charged`).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::signal::{SigInfo, SI_KERNEL};
use super::thread_group::ThreadGroup;
use super::Kernel;

/// The shortest and longest pause between two checks.
const MIN_PERIOD: Duration = Duration::from_millis(1);
const MAX_PERIOD: Duration = Duration::from_millis(50);
/// How long a victim may take to free its memory before the OOM killer
/// picks another (Linux waits for its victim the same way, until the OOM
/// reaper has taken its memory).
const VICTIM_GRACE: Duration = Duration::from_secs(2);

/// How long a victim's teardown may go without freeing anything before
/// it counts as done: one check's millisecond is no measure on a loaded
/// host, where the thread tearing it down may wait that long for a CPU.
const FREEING_STALL: Duration = Duration::from_millis(100);

/// The process last killed: its address space (alive until its last
/// reference goes), when it was killed, the committed bytes then and at
/// the last check, and when they last fell.
struct Victim {
    mm: Weak<std::sync::Mutex<crate::mm::MemoryManager>>,
    at: Instant,
    before: u64,
    last: u64,
    fell_at: Instant,
}

impl Victim {
    /// Whether its memory is still being given back at `used` committed
    /// bytes (noting a fall since the last check): while its address
    /// space lives; once the last reference went, its teardown returns the
    /// pages one mapping at a time, so as long as nothing was freed yet or
    /// the bytes fell within [`FREEING_STALL`].
    fn freeing(&mut self, alive: bool, used: u64) -> bool {
        if used < self.last {
            self.fell_at = Instant::now();
        }
        self.last = used;
        alive || used >= self.before || self.fell_at.elapsed() < FREEING_STALL
    }
}

/// How fast the watchdog assumes memory can be touched, to pick its
/// pause from the headroom left: 8 GiB/s.
const TOUCH_BYTES_PER_MS: u64 = 8 << 20;

/// The pause before the next check with `headroom` bytes left.
fn period(headroom: u64) -> Duration {
    let ms = (headroom / TOUCH_BYTES_PER_MS / 2).max(1);
    Duration::from_millis(ms).clamp(MIN_PERIOD, MAX_PERIOD)
}

/// The process the OOM killer picks: the live one with the most resident
/// memory (Linux's oom_badness, without adjustments), None when none is
/// left to kill.
fn victim(kernel: &Kernel) -> Option<(Arc<ThreadGroup>, super::thread_group::SharedMm)> {
    kernel
        .pids
        .thread_groups()
        .into_iter()
        .filter(|tg| tg.live() > 0 && tg.exit_status().is_none() && !tg.is_zombie())
        .filter_map(|tg| {
            let mm = tg.mm_arc()?;
            let rss = super::thread_group::lock(&mm).rss();
            Some((rss, tg, mm))
        })
        .max_by_key(|(rss, tg, _)| (*rss, tg.tgid()))
        .map(|(_, tg, mm)| (tg, mm))
}

/// One check: over the limit, the largest process is sent SIGKILL; none
/// is chosen while the last victim's memory is still being freed. Returns
/// the pause before the next check.
fn check(kernel: &Kernel, dying: &mut Option<Victim>) -> Duration {
    let mf = &kernel.memory_file;
    let Some(limit) = mf.limit() else {
        return MAX_PERIOD;
    };
    let used = mf.committed_bytes();
    if used <= limit {
        *dying = None;
        return period(limit - used);
    }
    // A victim on its way out frees its memory soon: no other is chosen
    // while it does.
    if let Some(v) = dying {
        let alive = v.mm.strong_count() > 0;
        if v.freeing(alive, used) && v.at.elapsed() < VICTIM_GRACE {
            return MIN_PERIOD;
        }
    }
    match victim(kernel) {
        Some((tg, mm)) => {
            tracing::warn!(
                tgid = tg.tgid(),
                used,
                limit,
                "memory limit reached: OOM-killing the largest process"
            );
            kernel.send_to_process(
                &tg,
                SigInfo {
                    signo: libc::SIGKILL,
                    code: SI_KERNEL,
                    addr: 0,
                    pid: 0,
                    uid: 0,
                },
            );
            *dying = Some(Victim {
                mm: Arc::downgrade(&mm),
                at: Instant::now(),
                before: used,
                last: used,
                fell_at: Instant::now(),
            });
        }
        None => tracing::debug!(used, limit, "memory limit reached: no process left to kill"),
    }
    MIN_PERIOD
}

impl Kernel {
    /// Starts the memory limit's watchdog if the memory file has a limit.
    /// It ends with the kernel.
    pub fn watch_memory_limit(self: &Arc<Self>) {
        if self.memory_file.limit().is_none() {
            return;
        }
        let kernel = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("memory-limit".into())
            .spawn(move || {
                let mut dying = None;
                loop {
                    let pause = match kernel.upgrade() {
                        Some(k) => check(&k, &mut dying),
                        None => return,
                    };
                    std::thread::sleep(pause);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the memory limit's watchdog: the limit is not enforced");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_shrinks_with_the_headroom() {
        assert_eq!(period(0), MIN_PERIOD);
        assert_eq!(period(1 << 40), MAX_PERIOD);
        assert!(period(64 << 20) < period(512 << 20));
    }

    #[test]
    fn a_victim_tearing_down_is_waited_for_until_its_bytes_stop_falling() {
        let long_ago = Instant::now() - FREEING_STALL * 2;
        let mut v = Victim {
            mm: Weak::new(),
            at: Instant::now(),
            before: 100,
            last: 100,
            fell_at: long_ago,
        };
        assert!(v.freeing(true, 120), "its address space still lives");
        assert!(v.freeing(false, 100), "gone, nothing given back yet");
        assert!(v.freeing(false, 99), "the first pages given back");
        assert!(
            v.freeing(false, 99),
            "no fall at this check, but one just now"
        );
        assert!(v.freeing(false, 90), "still falling");
        v.fell_at = long_ago;
        assert!(
            !v.freeing(false, 90),
            "no fall for a while: another may be chosen"
        );
    }
}
