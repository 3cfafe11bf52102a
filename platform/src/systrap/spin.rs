//! How long each side of a hand-over polls before it sleeps.
//!
//! Budgets are time, measured with the TSC (both the stub's handler and the
//! Sentry read it with `rdtsc`, no syscall), not a number of `pause`
//! instructions: a `pause` takes from a few cycles to ~140 depending on the
//! CPU (about 10 ns on the development VM, where the 5000 polls of the old
//! count meant 50 µs of a burnt CPU on every syscall that blocked in the
//! Sentry). A bounded poll pays when the other side answers within about
//! what a futex wake-up costs (a cross-CPU wake-up is an inter-processor
//! interrupt, several µs on a VM); past that, sleeping costs no more than
//! polling and leaves the CPU to whoever needs it, such as the Sentry
//! thread the poller is waiting for.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The stub's handler polls this long for the Sentry's answer (a quick
/// syscall is answered well within it; one that blocks in the Sentry then
/// costs at most this much CPU before the stub thread sleeps).
const DEFAULT_STUB_NS: u64 = 8_000;
/// The Sentry polls this long for the application's next event after a
/// resume.
const DEFAULT_SENTRY_NS: u64 = 8_000;
/// The leader polls this long for the next request of a burst.
const DEFAULT_LEADER_NS: u64 = 0;

/// The TSC now.
#[inline]
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter; host_support() checks the
    // platform is x86_64.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Poll budgets in TSC ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    pub stub: u32,
    pub sentry: u64,
    pub leader: u32,
}

/// TSC ticks per microsecond, measured once against the monotonic clock
/// (about 0.2 ms the first time).
fn ticks_per_us() -> u64 {
    static TPU: OnceLock<u64> = OnceLock::new();
    *TPU.get_or_init(|| {
        let t0 = Instant::now();
        let c0 = rdtsc();
        while t0.elapsed() < Duration::from_micros(200) {
            std::hint::spin_loop();
        }
        let c1 = rdtsc();
        let ns = t0.elapsed().as_nanos().max(1) as u64;
        // A TSC that does not count (or goes back) gets 1 tick per µs: the
        // polls then end at once, which is correct if slower.
        (c1.saturating_sub(c0) * 1000 / ns).max(1)
    })
}

fn env_ns(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The budgets: `CRYO_SYSTRAP_SPIN_NS` (stub and Sentry; tuning knobs),
/// `CRYO_SYSTRAP_SENTRY_SPIN_NS`, `CRYO_SYSTRAP_LEADER_SPIN_NS`, in
/// nanoseconds.
pub(crate) fn budgets() -> Budgets {
    static B: OnceLock<Budgets> = OnceLock::new();
    *B.get_or_init(|| {
        let tpu = ticks_per_us();
        let both = env_ns("CRYO_SYSTRAP_SPIN_NS", DEFAULT_STUB_NS);
        let stub = both;
        let sentry = env_ns(
            "CRYO_SYSTRAP_SENTRY_SPIN_NS",
            if std::env::var_os("CRYO_SYSTRAP_SPIN_NS").is_some() {
                both
            } else {
                DEFAULT_SENTRY_NS
            },
        );
        let leader = env_ns("CRYO_SYSTRAP_LEADER_SPIN_NS", DEFAULT_LEADER_NS);
        let ticks = |ns: u64| ns.saturating_mul(tpu) / 1000;
        let b = Budgets {
            stub: u32::try_from(ticks(stub)).unwrap_or(u32::MAX),
            sentry: ticks(sentry),
            leader: u32::try_from(ticks(leader)).unwrap_or(u32::MAX),
        };
        tracing::debug!(ticks_per_us = tpu, ?b, "systrap poll budgets");
        b
    })
}

/// Polls `ready` until it returns `Some` or `budget` TSC ticks have passed.
#[inline]
pub(crate) fn poll<T>(budget: u64, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    if let Some(v) = ready() {
        return Some(v);
    }
    if budget == 0 {
        return None;
    }
    let start = rdtsc();
    loop {
        std::hint::spin_loop();
        if let Some(v) = ready() {
            return Some(v);
        }
        if rdtsc().wrapping_sub(start) >= budget {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_ends_within_its_budget() {
        let tpu = ticks_per_us();
        assert!(tpu > 1, "the TSC does not count: {tpu} ticks per µs");
        let t = Instant::now();
        assert_eq!(poll(200 * tpu, || None::<()>), None);
        let took = t.elapsed();
        assert!(took >= Duration::from_micros(150), "{took:?}");
        assert_eq!(poll(0, || Some(3)), Some(3));
        let mut n = 0;
        assert_eq!(
            poll(u64::MAX, || {
                n += 1;
                (n == 10).then_some(n)
            }),
            Some(10)
        );
    }
}
