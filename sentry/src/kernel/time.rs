//! Virtual clocks (invariant 6 of DESIGN.md) and the timekeeper behind them
//! and the vDSO.
//!
//! CLOCK_MONOTONIC and CLOCK_BOOTTIME follow the host's monotonic clock
//! shifted by an offset chosen so that the sandbox's clock starts at its own
//! boot and continues across a restore from the saved value: no jump back,
//! and no jump forward by the time spent frozen. CLOCK_REALTIME follows the
//! host.
//!
//! Where the host has an invariant TSC, the clocks are not read from the
//! host at all: they are a linear function of the TSC, `base_mono +
//! (tsc - base_tsc) * mult >> shift`, whose parameters the [`Timekeeper`]
//! keeps under a seqcount, in the Sentry and mirrored in the vDSO's data
//! page (`[vvar]`, [`crate::vdso`]), so that an application's vDSO read and
//! the Sentry's own read compute from the very same numbers: a vDSO read
//! followed by a trapped clock_gettime never goes back. A thread updates
//! the parameters periodically: each update starts where the old
//! parameters stand at that instant (continuous, never a step back) and
//! slews the rate, within [`MAX_SLEW`], toward the host's clock. Without an
//! invariant TSC (or with `CRYO_VDSO_FALLBACK=1`) the clocks read the host
//! and the vDSO makes the real system call (its fallback mode).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::mm::{MemoryFile, MF_PAGE_SIZE};
use crate::vdso::vvar;

/// Nanoseconds, the unit of every sandbox clock.
pub type Nanos = i64;

/// The clocks a Linux task can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClockId {
    Realtime,
    Monotonic,
    Boottime,
    ProcessCputime,
    ThreadCputime,
}
statefile::versioned!(ClockId, "kernel.ClockId", 1);

impl ClockId {
    /// From a clockid_t. Coarse and raw variants read the same clocks.
    pub fn from_raw(id: i32) -> Result<ClockId, Errno> {
        match id {
            libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_TAI => {
                Ok(ClockId::Realtime)
            }
            libc::CLOCK_MONOTONIC | libc::CLOCK_MONOTONIC_RAW | libc::CLOCK_MONOTONIC_COARSE => {
                Ok(ClockId::Monotonic)
            }
            libc::CLOCK_BOOTTIME => Ok(ClockId::Boottime),
            libc::CLOCK_PROCESS_CPUTIME_ID => Ok(ClockId::ProcessCputime),
            libc::CLOCK_THREAD_CPUTIME_ID => Ok(ClockId::ThreadCputime),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The kernel's clocks: a handle on its timekeeper (copies read the same
/// clocks). A timekeeper lives as long as the process: the vDSO data page
/// it writes may be mapped by any address space until the end, and the one
/// update thread keeps a reference to it.
#[derive(Clone, Copy)]
pub struct Clocks {
    tk: &'static Timekeeper,
}

impl std::fmt::Debug for Clocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clocks")
            .field("monotonic_offset", &self.tk.offset)
            .field("tsc", &self.tk.tsc_mode())
            .finish()
    }
}

/// What a statefile keeps of the clocks: sandbox-relative values only.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClocksState {
    /// The sandbox's CLOCK_MONOTONIC at the moment of the checkpoint.
    pub monotonic_at_save: Nanos,
}
statefile::versioned!(ClocksState, "kernel.ClocksState", 1);

fn host_clock(id: libc::clockid_t) -> Nanos {
    nix::time::clock_gettime(nix::time::ClockId::from_raw(id))
        .map(|ts| ts.tv_sec() * 1_000_000_000 + ts.tv_nsec())
        // The host's monotonic and realtime clocks cannot fail on Linux.
        .unwrap_or(0)
}

/// The sandbox's monotonic clock starts here, so uptime looks like a fresh
/// boot rather than the host's uptime.
const BOOT_MONOTONIC: Nanos = 1_000_000_000;

/// The fixed-point shift of `mult`: ns = ticks * mult >> SHIFT.
const SHIFT: u32 = 32;
/// How long the first calibration measures the TSC against the host's
/// clock (the long-baseline estimate of later updates refines it).
const CALIBRATION: Duration = Duration::from_millis(2);
/// The most the clocks' rate departs from the host's to catch up with it
/// (NTP's limit): a sleep the Sentry times on the host's clock ends at
/// most this fraction early on the sandbox's.
pub const MAX_SLEW: f64 = 500e-6;
/// Behind the host's clock by more than this, the clocks step forward
/// instead of slewing (a forward jump is allowed; a backward never).
const MAX_BEHIND: Nanos = 50_000_000;
/// Changes of the host's CLOCK_REALTIME - CLOCK_MONOTONIC smaller than
/// this are sampling noise, not followed.
const REAL_OFFSET_NOISE: Nanos = 10_000;
/// How often the parameters are updated once settled; the first updates
/// come sooner, to refine the calibration.
const UPDATE_INTERVAL: Duration = Duration::from_secs(1);
const FIRST_UPDATES: [Duration; 3] = [
    Duration::from_millis(20),
    Duration::from_millis(100),
    Duration::from_millis(400),
];

/// One reading of the TSC and the host's clocks at (about) the same time.
#[derive(Clone, Copy, Debug)]
struct Sample {
    tsc: u64,
    mono: Nanos,
    real: Nanos,
}

/// The TSC and host clocks, from the tightest of a few tries.
fn sample() -> Sample {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..5 {
        let t1 = platform::arch::rdtsc_ordered();
        let mono = host_clock(libc::CLOCK_MONOTONIC);
        let t2 = platform::arch::rdtsc_ordered();
        let real = host_clock(libc::CLOCK_REALTIME);
        let width = t2.wrapping_sub(t1);
        if best.is_none_or(|(w, _)| width < w) {
            best = Some((
                width,
                Sample {
                    tsc: t1 + width / 2,
                    mono,
                    real,
                },
            ));
        }
    }
    best.map(|(_, s)| s).unwrap_or(Sample {
        tsc: 0,
        mono: host_clock(libc::CLOCK_MONOTONIC),
        real: host_clock(libc::CLOCK_REALTIME),
    })
}

/// The clock parameters (the vDSO data page's words, without its seqcount).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub mode: u64,
    pub base_tsc: u64,
    pub base_mono: Nanos,
    pub real_offset: Nanos,
    pub mult: u64,
    pub shift: u64,
    pub cpu_mode: u64,
}

impl Params {
    /// The monotonic clock at TSC `tsc`, computed exactly as the vDSO does.
    pub fn mono_at(&self, tsc: u64) -> Nanos {
        let delta = tsc.saturating_sub(self.base_tsc);
        let ns = (u128::from(delta) * u128::from(self.mult)) >> (self.shift & 63);
        self.base_mono.wrapping_add(ns as i64)
    }

    fn words(&self) -> [(usize, u64); 7] {
        [
            (vvar::MODE, self.mode),
            (vvar::BASE_TSC, self.base_tsc),
            (vvar::BASE_MONO, self.base_mono as u64),
            (vvar::REAL_OFFSET, self.real_offset as u64),
            (vvar::MULT, self.mult),
            (vvar::SHIFT, self.shift),
            (vvar::CPU_MODE, self.cpu_mode),
        ]
    }
}

/// What only the writer (the update thread, attach, getcpu changes) uses.
struct Writer {
    /// The memory file and offset of the vDSO data page, once attached.
    vvar: Option<(Arc<MemoryFile>, u64)>,
    /// The first calibration sample: the baseline of the rate estimate.
    first: Option<Sample>,
    /// Updates done so far, and when the next one is due.
    updates: usize,
    due: Instant,
}

/// The source of a kernel's clocks (see the module comment).
pub struct Timekeeper {
    /// Added to the host's CLOCK_MONOTONIC to get the sandbox's: what
    /// fallback mode reads and what the TSC parameters are steered toward.
    /// Only a warm pool's resume changes it ([`Timekeeper::discount`]).
    offset: std::sync::atomic::AtomicI64,
    /// The parameters with their seqcount, as in the data page: the Sentry's
    /// own copy, which readers in the Sentry use.
    words: [AtomicU64; vvar::WORDS],
    writer: Mutex<Writer>,
}

/// Every timekeeper the update thread serves.
static TIMEKEEPERS: Mutex<Vec<&'static Timekeeper>> = Mutex::new(Vec::new());
/// The process the update thread was started in (0: none yet): a process
/// forked after it started has no such thread and starts its own.
static UPDATER_PID: AtomicU64 = AtomicU64::new(0);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its data consistent between statements.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Timekeeper {
    /// A timekeeper whose monotonic clock reads `monotonic` now, in TSC mode
    /// when the host allows it (calibrated here, for [`CALIBRATION`]).
    fn start(monotonic: Nanos) -> &'static Timekeeper {
        let fallback = std::env::var_os("CRYO_VDSO_FALLBACK").is_some_and(|v| v != "0");
        let tsc_ok = !fallback && platform::arch::invariant_tsc();
        let first = if tsc_ok { Some(sample()) } else { None };
        if first.is_some() {
            let t0 = Instant::now();
            while t0.elapsed() < CALIBRATION {
                std::hint::spin_loop();
            }
        }
        let now = sample();
        let offset = monotonic.saturating_sub(now.mono);
        let rate = first.and_then(|f| ns_per_tick(&f, &now));
        let params = match rate {
            Some(rate) => Params {
                mode: vvar::MODE_TSC,
                base_tsc: now.tsc,
                base_mono: now.mono + offset,
                real_offset: now.real - now.mono - offset,
                mult: mult_for(rate),
                shift: u64::from(SHIFT),
                cpu_mode: vvar::CPU_ZERO,
            },
            None => Params {
                mode: vvar::MODE_SYSCALL,
                base_tsc: 0,
                base_mono: 0,
                real_offset: 0,
                mult: 0,
                shift: 0,
                cpu_mode: vvar::CPU_ZERO,
            },
        };
        if rate.is_none() && tsc_ok {
            tracing::warn!("the TSC did not calibrate: clocks read the host, the vDSO traps");
        }
        let tk: &'static Timekeeper = Box::leak(Box::new(Timekeeper {
            offset: std::sync::atomic::AtomicI64::new(offset),
            words: std::array::from_fn(|i| {
                AtomicU64::new(if i == vvar::SEQ { first_seq() } else { 0 })
            }),
            writer: Mutex::new(Writer {
                vvar: None,
                first: rate.and(first),
                updates: 0,
                due: Instant::now() + FIRST_UPDATES[0],
            }),
        }));
        {
            let w = lock(&tk.writer);
            tk.publish(&w, &params);
        }
        if params.mode == vvar::MODE_TSC {
            lock(&TIMEKEEPERS).push(tk);
            start_updater();
        }
        tk
    }

    fn tsc_mode(&self) -> bool {
        self.words[vvar::MODE].load(Ordering::Relaxed) == vvar::MODE_TSC
    }

    /// A consistent copy of the parameters and the TSC read with them.
    fn read(&self) -> (Params, u64) {
        loop {
            let seq = self.words[vvar::SEQ].load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let w = |i: usize| self.words[i].load(Ordering::Relaxed);
            let p = Params {
                mode: w(vvar::MODE),
                base_tsc: w(vvar::BASE_TSC),
                base_mono: w(vvar::BASE_MONO) as i64,
                real_offset: w(vvar::REAL_OFFSET) as i64,
                mult: w(vvar::MULT),
                shift: w(vvar::SHIFT),
                cpu_mode: w(vvar::CPU_MODE),
            };
            let tsc = if p.mode == vvar::MODE_TSC {
                platform::arch::rdtsc_ordered()
            } else {
                0
            };
            fence(Ordering::Acquire);
            if self.words[vvar::SEQ].load(Ordering::Relaxed) == seq {
                return (p, tsc);
            }
        }
    }

    /// The parameters now (for tests and the writer).
    pub fn params(&self) -> Params {
        self.read().0
    }

    fn monotonic(&self) -> Nanos {
        let (p, tsc) = self.read();
        if p.mode == vvar::MODE_TSC {
            p.mono_at(tsc)
        } else {
            host_clock(libc::CLOCK_MONOTONIC) + self.offset.load(Ordering::Relaxed)
        }
    }

    fn realtime(&self) -> Nanos {
        let (p, tsc) = self.read();
        if p.mode == vvar::MODE_TSC {
            p.mono_at(tsc).wrapping_add(p.real_offset)
        } else {
            host_clock(libc::CLOCK_REALTIME)
        }
    }

    /// Stores one word in the Sentry's copy and the data page.
    fn store(&self, w: &Writer, index: usize, value: u64) {
        self.words[index].store(value, Ordering::SeqCst);
        if let Some((mf, off)) = &w.vvar {
            // Within the page: index < WORDS, checked by construction.
            if let Err(e) = mf.store_u64(off + 8 * index as u64, value) {
                tracing::warn!("vDSO data page write failed: {e}");
            }
        }
    }

    /// Replaces every parameter, under the seqcount.
    fn publish(&self, w: &Writer, p: &Params) {
        let seq = self.words[vvar::SEQ].load(Ordering::Relaxed);
        self.store(w, vvar::SEQ, seq.wrapping_add(1) | 1);
        for (i, v) in p.words() {
            self.store(w, i, v);
        }
        self.store(w, vvar::SEQ, (seq | 1).wrapping_add(1));
    }

    /// Moves the parameters toward the host's clock (see the module
    /// comment); the next update's time is set.
    fn update(&self) {
        let mut w = lock(&self.writer);
        let Some(first) = w.first else { return };
        let s = sample();
        let Some(rate) = ns_per_tick(&first, &s) else {
            return;
        };
        let old = self.params();
        let target = s.mono + self.offset.load(Ordering::Relaxed);
        let error = target - old.mono_at(s.tsc);
        let interval = match FIRST_UPDATES.get(w.updates + 1) {
            Some(d) => *d,
            None => UPDATE_INTERVAL,
        };
        // Catch up half the error over the next interval.
        let correction =
            (error as f64 / (2.0 * interval.as_nanos() as f64)).clamp(-MAX_SLEW, MAX_SLEW);
        let mult = mult_for(rate * (1.0 + correction));
        // The odd seqcount goes out first: every reader that finishes with
        // the old parameters read the TSC before the new base below, where
        // the old parameters give no more than the new base.
        let seq = self.words[vvar::SEQ].load(Ordering::Relaxed);
        self.store(&w, vvar::SEQ, seq.wrapping_add(1) | 1);
        fence(Ordering::SeqCst);
        let base_tsc = platform::arch::rdtsc_ordered();
        let continued = old.mono_at(base_tsc);
        let base_mono = if error > MAX_BEHIND {
            // Far behind (never by drift; the host's clock jumped): step
            // forward to where the host's clock stands now.
            continued.max(target + ((base_tsc.saturating_sub(s.tsc)) as f64 * rate) as i64)
        } else {
            continued
        };
        // The wall clock moves with the monotonic one; its offset is taken
        // again only when the host's moved by more than the sampling's
        // noise (the wall clock was set, or slewed apart), so that an
        // update does not make it jitter back by a few nanoseconds.
        let real_offset = s.real - s.mono - self.offset.load(Ordering::Relaxed);
        let real_offset = if (real_offset - old.real_offset).abs() > REAL_OFFSET_NOISE {
            real_offset
        } else {
            old.real_offset
        };
        let new = Params {
            base_tsc,
            base_mono,
            real_offset,
            mult,
            ..old
        };
        for (i, v) in new.words() {
            self.store(&w, i, v);
        }
        self.store(&w, vvar::SEQ, (seq | 1).wrapping_add(1));
        w.updates += 1;
        w.due = Instant::now() + interval;
    }

    /// Takes `held` off the clock before any task has run (a warm pool's
    /// sandbox waiting to be taken), so that it goes on from the
    /// checkpoint's instant as after any restore.
    fn discount(&self, held: Nanos) {
        let w = lock(&self.writer);
        self.offset.fetch_sub(held, Ordering::SeqCst);
        let mut p = self.params();
        if p.mode == vvar::MODE_TSC {
            p.base_mono = p.base_mono.saturating_sub(held);
        }
        self.publish(&w, &p);
    }

    /// Gives the clocks a vDSO data page in `mf`, allocated here, written
    /// from now on; returns its offset.
    fn attach(&self, mf: &Arc<MemoryFile>) -> Result<u64, Errno> {
        let mut w = lock(&self.writer);
        if let Some((_, off)) = &w.vvar {
            return Ok(*off);
        }
        let off = mf.allocate(MF_PAGE_SIZE)?;
        if let Err(e) = mf.set_vvar(off) {
            let _ = mf.free(off, MF_PAGE_SIZE);
            return Err(e);
        }
        w.vvar = Some((mf.clone(), off));
        let p = self.params();
        self.publish(&w, &p);
        Ok(off)
    }

    fn set_cpu_mode(&self, mode: u64) {
        let w = lock(&self.writer);
        let mut p = self.params();
        if p.cpu_mode != mode {
            p.cpu_mode = mode;
            self.publish(&w, &p);
        }
    }
}

/// Where a timekeeper's seqcount starts: a random even number. A program
/// checkpointed in the middle of a vDSO read resumes after a restore with
/// the old data page's parameters and sequence number in its registers
/// and re-checks the number in the new page before it trusts them; were
/// the new count to start where the old one stood, it would pair the old
/// host's parameters with the new host's TSC.
fn first_seq() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the host's clocks are unlikely to repeat either.
        b = (host_clock(libc::CLOCK_REALTIME) ^ host_clock(libc::CLOCK_MONOTONIC).rotate_left(32))
            .to_le_bytes();
    }
    u64::from_le_bytes(b) & !1
}

/// Host nanoseconds per TSC tick between two samples, if plausible (a TSC
/// between 1 MHz and 100 GHz that went forward).
fn ns_per_tick(a: &Sample, b: &Sample) -> Option<f64> {
    let ticks = b.tsc.checked_sub(a.tsc).filter(|t| *t > 0)? as f64;
    let ns = (b.mono - a.mono) as f64;
    let rate = ns / ticks;
    (ns > 0.0 && (0.01..=1000.0).contains(&rate)).then_some(rate)
}

fn mult_for(ns_per_tick: f64) -> u64 {
    (ns_per_tick * (1u64 << SHIFT) as f64).round() as u64
}

/// Starts the one thread that updates every timekeeper (again in a
/// process forked since).
fn start_updater() {
    let pid = u64::from(std::process::id());
    if UPDATER_PID.swap(pid, Ordering::SeqCst) == pid {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("cryo-timekeeper".into())
        .spawn(|| loop {
            let all: Vec<&'static Timekeeper> = lock(&TIMEKEEPERS).clone();
            let now = Instant::now();
            let mut next = now + UPDATE_INTERVAL;
            for tk in all {
                let due = lock(&tk.writer).due;
                let due = if due <= now {
                    tk.update();
                    lock(&tk.writer).due
                } else {
                    due
                };
                next = next.min(due);
            }
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        });
    if let Err(e) = spawned {
        // The clocks go on from their last parameters, drifting from the
        // host's by the calibration's error.
        tracing::warn!("cannot start the timekeeper thread: {e}");
        UPDATER_PID.store(0, Ordering::SeqCst);
    }
}

impl Clocks {
    /// Clocks of a freshly booted sandbox.
    pub fn boot() -> Clocks {
        Clocks {
            tk: Timekeeper::start(BOOT_MONOTONIC),
        }
    }

    /// Clocks continuing from a checkpoint.
    pub fn restore(state: &ClocksState) -> Clocks {
        Clocks {
            tk: Timekeeper::start(state.monotonic_at_save),
        }
    }

    pub fn save(&self) -> ClocksState {
        ClocksState {
            monotonic_at_save: self.monotonic(),
        }
    }

    pub fn monotonic(&self) -> Nanos {
        self.tk.monotonic()
    }

    pub fn realtime(&self) -> Nanos {
        self.tk.realtime()
    }

    /// Takes `held` off the clocks: the time a restored sandbox waited
    /// before it resumed (a warm pool's), no task having run meanwhile.
    pub fn discount_held(&self, held: Duration) {
        self.tk
            .discount(i64::try_from(held.as_nanos()).unwrap_or(i64::MAX));
    }

    /// Time since the sandbox booted, for sysinfo and /proc/uptime.
    pub fn uptime(&self) -> Duration {
        Duration::from_nanos((self.monotonic() - BOOT_MONOTONIC).max(0) as u64)
    }

    /// Whether the clocks run on the TSC (and the vDSO answers without a
    /// system call).
    pub fn tsc_mode(&self) -> bool {
        self.tk.tsc_mode()
    }

    /// The parameters the clocks compute from now.
    pub fn params(&self) -> Params {
        self.tk.params()
    }

    /// Gives the clocks a vDSO data page in `mf` (once per memory file),
    /// which they keep current; its offset.
    pub fn attach_vvar(&self, mf: &Arc<MemoryFile>) -> Result<u64, Errno> {
        self.tk.attach(mf)
    }

    /// Whether the vDSO's getcpu may answer CPU 0 itself: true while every
    /// task's affinity allows CPU 0 (where the getcpu system call puts a
    /// task whose affinity allows it); once not, the vDSO asks the Sentry.
    pub fn set_getcpu_local(&self, local: bool) {
        self.tk.set_cpu_mode(if local {
            vvar::CPU_ZERO
        } else {
            vvar::CPU_SYSCALL
        });
    }

    /// Updates the parameters now (tests of the update's continuity).
    #[cfg(test)]
    fn update_now(&self) {
        self.tk.update();
    }

    /// Moves the clocks `ns` away from the host's at once (tests of the
    /// slew: an update must bring them back without a step back).
    #[cfg(test)]
    fn skew(&self, ns: Nanos) {
        let w = lock(&self.tk.writer);
        let mut p = self.tk.params();
        p.base_mono += ns;
        self.tk.publish(&w, &p);
    }
}

/// A nanosleep or clock_nanosleep, resolved to a deadline.
///
/// Like Linux (hrtimer_init), a relative sleep runs on CLOCK_MONOTONIC
/// whatever clock it names: it lasts the time asked even if the wall clock
/// is set meanwhile, and across a restore it continues from the saved
/// monotonic clock instead of losing the time the sandbox was frozen. An
/// absolute sleep waits for its clock to reach the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sleep {
    /// The clock `deadline` is on.
    pub clock: ClockId,
    pub deadline: Nanos,
    pub relative: bool,
}

/// What an interrupted sleep does next (Linux's do_nanosleep, and how the
/// signal code treats its ERESTART_RESTARTBLOCK / ERESTARTNOHAND).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepInterrupted {
    /// The deadline had passed anyway: the call succeeds.
    Elapsed,
    /// A signal handler is about to run: the call fails with EINTR. A
    /// relative sleep first writes `remaining` to its `rem` (if given).
    Eintr { remaining: Option<Nanos> },
    /// A relative sleep stopped without a handler to run (a checkpoint):
    /// `remaining` is written to `rem` as Linux does before it knows, and
    /// the sleep continues through restart_syscall to the same deadline.
    RestartBlock { remaining: Nanos },
    /// An absolute sleep stopped without a handler to run: the same call
    /// runs again (its deadline is in its arguments); `rem` is never
    /// written.
    Reexecute,
}

impl Sleep {
    /// A sleep of `d` from now; the clock the caller named only matters
    /// for validation, done before.
    pub fn relative(clocks: &Clocks, d: Nanos) -> Sleep {
        Sleep {
            clock: ClockId::Monotonic,
            deadline: clocks.monotonic().saturating_add(d),
            relative: true,
        }
    }

    /// A sleep until `clock` reads `deadline` (TIMER_ABSTIME). CPU-time
    /// clocks have no deadline here: the caller refuses them.
    pub fn absolute(clock: ClockId, deadline: Nanos) -> Sleep {
        Sleep {
            clock,
            deadline,
            relative: false,
        }
    }

    /// A relative sleep resumed by restart_syscall. Its deadline is on the
    /// monotonic clock, except in a statefile of an older cryo, which
    /// kept a relative CLOCK_REALTIME sleep's deadline on that clock.
    pub fn resumed(clock: ClockId, deadline: Nanos) -> Sleep {
        Sleep {
            clock,
            deadline,
            relative: true,
        }
    }

    /// Time left until the deadline, never negative.
    pub fn remaining(&self, clocks: &Clocks) -> Nanos {
        let now = match self.clock {
            ClockId::Realtime => clocks.realtime(),
            _ => clocks.monotonic(),
        };
        self.deadline.saturating_sub(now).max(0)
    }

    /// The sleep was interrupted; `handler_runs` says whether a signal
    /// handler will run before the application continues.
    pub fn interrupted(&self, clocks: &Clocks, handler_runs: bool) -> SleepInterrupted {
        let remaining = self.remaining(clocks);
        if remaining == 0 {
            return SleepInterrupted::Elapsed;
        }
        match (self.relative, handler_runs) {
            (true, true) => SleepInterrupted::Eintr {
                remaining: Some(remaining),
            },
            (false, true) => SleepInterrupted::Eintr { remaining: None },
            (true, false) => SleepInterrupted::RestartBlock { remaining },
            (false, false) => SleepInterrupted::Reexecute,
        }
    }
}

/// Splits nanoseconds into a `struct timespec`'s (sec, nsec).
pub fn to_timespec(ns: Nanos) -> (i64, i64) {
    (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_continues_from_saved_value() {
        let c = Clocks::boot();
        let saved = ClocksState {
            monotonic_at_save: 50_000_000_000,
        };
        let r = Clocks::restore(&saved);
        let now = r.monotonic();
        assert!(now >= saved.monotonic_at_save);
        assert!(now - saved.monotonic_at_save < 1_000_000_000);
        assert!(c.monotonic() >= BOOT_MONOTONIC);
    }

    #[test]
    fn relative_sleeps_run_on_the_monotonic_clock() {
        let c = Clocks::boot();
        let s = Sleep::relative(&c, 5_000_000_000);
        assert_eq!(s.clock, ClockId::Monotonic);
        let left = s.remaining(&c);
        assert!(left > 4_000_000_000 && left <= 5_000_000_000, "{left}");
    }

    #[test]
    fn interrupted_sleeps_follow_linux() {
        let c = Clocks::boot();
        let rel = Sleep::relative(&c, 10_000_000_000);
        match rel.interrupted(&c, true) {
            SleepInterrupted::Eintr { remaining: Some(r) } => {
                assert!(r > 9_000_000_000 && r <= 10_000_000_000, "{r}")
            }
            other => panic!("relative, handler: {other:?}"),
        }
        assert!(matches!(
            rel.interrupted(&c, false),
            SleepInterrupted::RestartBlock { remaining } if remaining > 9_000_000_000
        ));
        let abs = Sleep::absolute(ClockId::Realtime, c.realtime() + 10_000_000_000);
        assert_eq!(
            abs.interrupted(&c, true),
            SleepInterrupted::Eintr { remaining: None }
        );
        assert_eq!(abs.interrupted(&c, false), SleepInterrupted::Reexecute);
        let past = Sleep::absolute(ClockId::Monotonic, c.monotonic() - 1);
        assert_eq!(past.remaining(&c), 0);
        assert_eq!(past.interrupted(&c, true), SleepInterrupted::Elapsed);
        assert_eq!(
            Sleep::resumed(ClockId::Monotonic, 0).interrupted(&c, false),
            SleepInterrupted::Elapsed
        );
    }

    #[test]
    fn tsc_clocks_follow_the_host_and_never_go_back_across_updates() {
        let c = Clocks::boot();
        if !c.tsc_mode() {
            eprintln!("SKIPPED: no invariant TSC here, the clocks read the host");
            return;
        }
        let start_host = host_clock(libc::CLOCK_MONOTONIC);
        let start = c.monotonic();
        let mut last = start;
        for i in 0..20_000 {
            if i % 2_000 == 0 {
                c.update_now();
            }
            let now = c.monotonic();
            assert!(now >= last, "went back by {} ns at read {i}", last - now);
            last = now;
        }
        // The same rate as the host's, within the calibration's error.
        let host = host_clock(libc::CLOCK_MONOTONIC) - start_host;
        let ours = c.monotonic() - start;
        assert!(
            (ours - host).abs() < 1_000_000,
            "host {host} ns, sandbox {ours} ns"
        );
        // Realtime is the host's.
        let real = c.realtime() - host_clock(libc::CLOCK_REALTIME);
        assert!(real.abs() < 10_000_000, "realtime off by {real} ns");
    }

    #[test]
    fn clocks_ahead_of_the_host_slow_down_and_never_step_back() {
        let c = Clocks::boot();
        if !c.tsc_mode() {
            eprintln!("SKIPPED: no invariant TSC here, the clocks read the host");
            return;
        }
        c.update_now();
        let steady = c.params().mult;
        c.skew(5_000_000);
        let before = c.monotonic();
        c.update_now();
        let after = c.monotonic();
        assert!(after >= before, "stepped back by {} ns", before - after);
        let slowed = c.params().mult;
        assert!(slowed < steady, "mult {slowed} not below {steady}");
        // By no more than the slew limit (and the rate estimate's change).
        let ratio = slowed as f64 / steady as f64;
        assert!(ratio > 1.0 - 2.0 * MAX_SLEW, "slowed by {ratio}");
        // Behind by more than MAX_BEHIND: a step forward, to the host's clock.
        c.skew(-(MAX_BEHIND + 10_000_000));
        c.update_now();
        let error = c.monotonic()
            - (host_clock(libc::CLOCK_MONOTONIC) + c.tk.offset.load(Ordering::Relaxed));
        assert!(
            error.abs() < 5_000_000,
            "{error} ns from the host after the step"
        );
    }

    #[test]
    fn params_compute_as_the_vdso_does() {
        let p = Params {
            mode: vvar::MODE_TSC,
            base_tsc: 1_000,
            base_mono: 5_000_000_000,
            real_offset: 0,
            // 0.5 ns per tick.
            mult: 1 << 31,
            shift: 32,
            cpu_mode: vvar::CPU_ZERO,
        };
        assert_eq!(p.mono_at(3_000), 5_000_001_000);
        // A TSC behind the base reads as the base.
        assert_eq!(p.mono_at(10), 5_000_000_000);
        // No overflow of the product over an hour of 4 GHz ticks.
        let hour = 3600 * 4_000_000_000u64;
        assert_eq!(p.mono_at(1_000 + hour), 5_000_000_000 + (hour / 2) as i64);
    }

    #[test]
    fn the_data_page_mirrors_the_clocks() {
        let mf = Arc::new(MemoryFile::new(1 << 24).unwrap());
        let c = Clocks::boot();
        let off = c.attach_vvar(&mf).unwrap();
        assert_eq!(mf.vvar(), Some(off));
        let word = |i: usize| {
            let mut b = [0u8; 8];
            mf.read_at(off + 8 * i as u64, &mut b).unwrap();
            u64::from_le_bytes(b)
        };
        c.set_getcpu_local(false);
        let p = c.params();
        assert_eq!(word(vvar::SEQ) & 1, 0);
        assert_eq!(word(vvar::MODE), p.mode);
        assert_eq!(word(vvar::BASE_TSC), p.base_tsc);
        assert_eq!(word(vvar::BASE_MONO) as i64, p.base_mono);
        assert_eq!(word(vvar::MULT), p.mult);
        assert_eq!(word(vvar::SHIFT), p.shift);
        assert_eq!(word(vvar::CPU_MODE), vvar::CPU_SYSCALL);
        // Attaching again changes nothing.
        assert_eq!(c.attach_vvar(&mf).unwrap(), off);
    }

    #[test]
    fn timespec_split() {
        assert_eq!(to_timespec(1_500_000_000), (1, 500_000_000));
        assert_eq!(to_timespec(-1), (-1, 999_999_999));
    }
}
