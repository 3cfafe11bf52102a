//! What prctl, the scheduler calls, getpriority/setpriority and the CPU-time
//! accounting keep, per thread and per process, and their saved forms.
//!
//! A task's CPU time is split as Linux splits it: user time is the time
//! spent inside the platform's switch into application code, system time
//! is the CPU time the Sentry's host thread spends handling the task (its
//! own CLOCK_THREAD_CPUTIME_ID), so a blocked sleep counts as neither. A
//! process's time is the sum of its live threads', plus what its exited
//! threads used, plus (for RUSAGE_CHILDREN) what its reaped children used.
//!
//! Saved forms are records of their own ("kernel.TaskAttrs" keyed by tid,
//! "kernel.ProcessAttrs" keyed by tgid): a statefile written before they
//! existed has none, and loads with the defaults (a task's CPU time then
//! counts as user time).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// TASK_COMM_LEN, the terminating NUL included.
pub const COMM_LEN: usize = 16;

/// How many CPUs the sandbox shows (sched_getaffinity, sysconf): the
/// host's online CPUs, at most 64 (one mask word). Taken once, at the first
/// call (the init task's attributes, at boot): available_parallelism reads
/// the calling thread's affinity, and the systrap platform binds a Sentry
/// thread to one CPU while its hand-overs need wake-ups.
pub fn sandbox_cpus() -> u32 {
    static CPUS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        n.clamp(1, 64) as u32
    })
}

/// Every CPU of the sandbox.
pub fn all_cpus_mask(cpus: u32) -> u64 {
    if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    }
}

/// Linux's SUID_DUMP_USER: the default, and what PR_SET_DUMPABLE 1 sets.
pub const DUMPABLE_USER: u32 = 1;

/// A thread's own attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAttrs {
    /// PR_SET_NAME's name (/proc/<pid>/task/<tid>/comm), at most 15 bytes.
    pub comm: Vec<u8>,
    /// PR_SET_PDEATHSIG: sent to this thread when its parent exits.
    pub pdeathsig: i32,
    /// PR_SET_NO_NEW_PRIVS: once set, never cleared (inherited by clone).
    pub no_new_privs: bool,
    /// sched_setaffinity's mask over the sandbox's CPUs.
    pub affinity: u64,
    /// setfsuid/setfsgid's ids, None while they follow the effective ids
    /// (every change of those resets them).
    pub fsuid: Option<u32>,
    pub fsgid: Option<u32>,
    /// CPU time in application code, nanoseconds.
    pub user_ns: u64,
    /// CPU time the Sentry spent on its syscalls and faults, nanoseconds.
    pub sys_ns: u64,
}
statefile::savable_serde!(TaskAttrs, "kernel.TaskAttrs", 1);

impl TaskAttrs {
    /// A thread of a program started as `exe`: its comm is the basename.
    pub fn for_exe(exe: &str) -> TaskAttrs {
        TaskAttrs {
            comm: comm_of_path(exe),
            pdeathsig: 0,
            no_new_privs: false,
            affinity: all_cpus_mask(sandbox_cpus()),
            fsuid: None,
            fsgid: None,
            user_ns: 0,
            sys_ns: 0,
        }
    }
}

/// The comm Linux gives a program: its file name's first 15 bytes.
pub fn comm_of_path(path: &str) -> Vec<u8> {
    let base = path.rsplit('/').next().unwrap_or(path).as_bytes();
    base[..base.len().min(COMM_LEN - 1)].to_vec()
}

/// Why a saved attribute record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttrsError {
    #[error("comm is {0} bytes, longer than 15 or with a NUL")]
    Comm(usize),
    #[error("signal {0} is not a signal number")]
    Signal(i32),
    #[error("affinity mask {0:#x} names no CPU of the sandbox")]
    Affinity(u64),
    #[error("nice value {0} is outside -20..=19")]
    Nice(i32),
    #[error("dumpable {0} is not 0, 1 or 2")]
    Dumpable(u32),
    #[error("CPU time {0} ns is beyond the clock's range")]
    Time(u64),
}

/// No saved CPU time may exceed this (about 292 years, i64 nanoseconds).
const MAX_NS: u64 = i64::MAX as u64;

impl TaskAttrs {
    pub fn validate(&self) -> Result<(), AttrsError> {
        if self.comm.len() >= COMM_LEN || self.comm.contains(&0) {
            return Err(AttrsError::Comm(self.comm.len()));
        }
        if !(0..=64).contains(&self.pdeathsig) {
            return Err(AttrsError::Signal(self.pdeathsig));
        }
        if self.affinity & all_cpus_mask(64) == 0 {
            return Err(AttrsError::Affinity(self.affinity));
        }
        for ns in [self.user_ns, self.sys_ns] {
            if ns > MAX_NS {
                return Err(AttrsError::Time(ns));
            }
        }
        Ok(())
    }
}

/// User and system CPU time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub user_ns: u64,
    pub sys_ns: u64,
}
statefile::versioned!(CpuUsage, "kernel.CpuUsage", 1);

impl CpuUsage {
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.user_ns.saturating_add(self.sys_ns))
    }

    pub fn add(&mut self, o: CpuUsage) {
        self.user_ns = self.user_ns.saturating_add(o.user_ns);
        self.sys_ns = self.sys_ns.saturating_add(o.sys_ns);
    }
}

/// A live thread's CPU counters, which its process reads while it runs.
#[derive(Default)]
pub struct TaskUsage {
    user_ns: AtomicU64,
    sys_ns: AtomicU64,
}

impl TaskUsage {
    pub fn new(u: CpuUsage) -> Arc<TaskUsage> {
        Arc::new(TaskUsage {
            user_ns: AtomicU64::new(u.user_ns),
            sys_ns: AtomicU64::new(u.sys_ns),
        })
    }

    pub fn set(&self, u: CpuUsage) {
        self.user_ns.store(u.user_ns, Ordering::Relaxed);
        self.sys_ns.store(u.sys_ns, Ordering::Relaxed);
    }

    pub fn get(&self) -> CpuUsage {
        CpuUsage {
            user_ns: self.user_ns.load(Ordering::Relaxed),
            sys_ns: self.sys_ns.load(Ordering::Relaxed),
        }
    }

    pub fn charge(&self, user: Duration, sys: Duration) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .user_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(ns(user)))
            });
        let _ = self
            .sys_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(ns(sys)))
            });
    }
}

/// What a process keeps for prctl, the priority calls and accounting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessAttrsRecord {
    /// getpriority/setpriority's nice value, -20..=19.
    pub nice: i32,
    /// PR_SET_CHILD_SUBREAPER.
    pub child_subreaper: bool,
    /// PR_SET_DUMPABLE: 0, 1 (SUID_DUMP_USER) or 2.
    pub dumpable: u32,
    /// What its exited threads used.
    pub dead_threads: CpuUsage,
    /// What its reaped children (and theirs) used: RUSAGE_CHILDREN, times'
    /// cutime and cstime.
    pub children: CpuUsage,
    /// RLIMIT_CPU: the next whole second of process CPU time at which a
    /// SIGXCPU is due (0: none sent yet).
    pub next_xcpu_s: u64,
    /// When the process was created, in nanoseconds of sandbox uptime
    /// (/proc/<pid>/stat's starttime; it goes on across a restore).
    pub start_ns: u64,
}

/// Version 1: no start time (the process reads as started at boot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ProcessAttrsRecordV1 {
    nice: i32,
    child_subreaper: bool,
    dumpable: u32,
    dead_threads: CpuUsage,
    children: CpuUsage,
    next_xcpu_s: u64,
}
statefile::versioned!(ProcessAttrsRecordV1, "kernel.ProcessAttrs", 1, [CpuUsage]);

impl From<ProcessAttrsRecordV1> for ProcessAttrsRecord {
    fn from(v1: ProcessAttrsRecordV1) -> Self {
        ProcessAttrsRecord {
            nice: v1.nice,
            child_subreaper: v1.child_subreaper,
            dumpable: v1.dumpable,
            dead_threads: v1.dead_threads,
            children: v1.children,
            next_xcpu_s: v1.next_xcpu_s,
            start_ns: 0,
        }
    }
}

statefile::versioned!(ProcessAttrsRecord, "kernel.ProcessAttrs", 2, [CpuUsage]);

impl statefile::Savable for ProcessAttrsRecord {
    const TYPE_NAME: &'static str = "kernel.ProcessAttrs";
    const VERSION: u32 = 2;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 1 {
            statefile::check_saved_versions::<ProcessAttrsRecordV1>(dec.types())?;
            return dec
                .serde::<ProcessAttrsRecordV1>()
                .map(ProcessAttrsRecord::from);
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

impl Default for ProcessAttrsRecord {
    fn default() -> Self {
        ProcessAttrsRecord {
            nice: 0,
            child_subreaper: false,
            dumpable: DUMPABLE_USER,
            dead_threads: CpuUsage::default(),
            children: CpuUsage::default(),
            next_xcpu_s: 0,
            start_ns: 0,
        }
    }
}

impl ProcessAttrsRecord {
    pub fn validate(&self) -> Result<(), AttrsError> {
        if !(-20..=19).contains(&self.nice) {
            return Err(AttrsError::Nice(self.nice));
        }
        if self.dumpable > 2 {
            return Err(AttrsError::Dumpable(self.dumpable));
        }
        for ns in [
            self.dead_threads.user_ns,
            self.dead_threads.sys_ns,
            self.children.user_ns,
            self.children.sys_ns,
        ] {
            if ns > MAX_NS {
                return Err(AttrsError::Time(ns));
            }
        }
        Ok(())
    }
}

/// A process's attributes, live.
#[derive(Default)]
pub struct ProcessAttrs {
    state: Mutex<ProcessState>,
    /// RLIMIT_CPU's watchdog thread runs.
    cpu_watchdog: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct ProcessState {
    rec: ProcessAttrsRecord,
    threads: BTreeMap<i32, Thread>,
    /// The program's name, for threads that have not set their own.
    default_comm: Vec<u8>,
    /// RLIMIT_CPU: charges left before a SIGKILL that had to wait for a
    /// SIGXCPU's handler (see [`ProcessAttrs::cpu_limit_signal`]).
    kill_grace: Option<u8>,
}

/// A live thread as its process keeps it: procfs and other threads read
/// its name, its parent's exit reads its death signal.
struct Thread {
    usage: Arc<TaskUsage>,
    attrs: TaskAttrs,
}

impl ProcessAttrs {
    pub fn new(rec: ProcessAttrsRecord) -> ProcessAttrs {
        ProcessAttrs {
            state: Mutex::new(ProcessState {
                rec,
                threads: BTreeMap::new(),
                default_comm: Vec::new(),
                kill_grace: None,
            }),
            cpu_watchdog: Default::default(),
        }
    }

    /// A new process (fork) takes `parent`'s nice value, dumpable flag
    /// and program name; not its subreaper flag, its threads or its times
    /// (Linux's copy_process). The child's first thread then takes its
    /// creator's attributes through [`super::Task::give_attrs_to`].
    pub fn inherit_from(&self, parent: &ProcessAttrs, now: Duration) {
        let (nice, dumpable, comm) = {
            let p = parent.st();
            (p.rec.nice, p.rec.dumpable, p.default_comm.clone())
        };
        let mut st = self.st();
        st.rec.nice = nice;
        st.rec.dumpable = dumpable;
        st.default_comm = comm;
        st.rec.start_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
    }

    fn st(&self) -> MutexGuard<'_, ProcessState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The saved form (the live threads' time is in their own records).
    pub fn record(&self) -> ProcessAttrsRecord {
        self.st().rec.clone()
    }

    /// A restored process's settings and accounting.
    pub fn load(&self, rec: ProcessAttrsRecord) {
        self.st().rec = rec;
    }

    /// A restored thread's attributes and CPU time (it has joined).
    pub fn load_thread(&self, tid: i32, saved: &TaskAttrs) {
        let mut st = self.st();
        if let Some(t) = st.threads.get_mut(&tid) {
            t.usage.set(CpuUsage {
                user_ns: saved.user_ns,
                sys_ns: saved.sys_ns,
            });
            t.attrs = saved.clone();
        }
    }

    /// Reads or changes the record's settings.
    pub fn with<R>(&self, f: impl FnOnce(&mut ProcessAttrsRecord) -> R) -> R {
        f(&mut self.st().rec)
    }

    /// Thread `tid` joins the process with `attrs` (its creator's, or a
    /// saved record's); its CPU time counts in the process's from now on.
    pub fn add_thread(&self, tid: i32, usage: &Arc<TaskUsage>, attrs: TaskAttrs) {
        self.st().threads.insert(
            tid,
            Thread {
                usage: usage.clone(),
                attrs,
            },
        );
    }

    /// What a new thread of this process starts with: a copy of thread
    /// `creator`'s attributes (Linux's clone copies comm, no_new_privs and
    /// the affinity mask; the death signal too, for a thread), with no
    /// CPU time; the program's defaults if the creator is unknown.
    pub fn attrs_for_new_thread(&self, creator: Option<i32>) -> TaskAttrs {
        let st = self.st();
        let mut a = creator
            .and_then(|c| st.threads.get(&c))
            .map(|t| t.attrs.clone())
            .unwrap_or_else(|| TaskAttrs {
                comm: st.default_comm.clone(),
                ..TaskAttrs::for_exe("")
            });
        a.user_ns = 0;
        a.sys_ns = 0;
        // copy_process clears the death signal of every new task.
        a.pdeathsig = 0;
        a
    }

    /// execve of `exe`: every thread's name becomes the program's (only
    /// the caller is left by then), and the process is dumpable again.
    pub fn exec(&self, exe: &str) {
        let mut st = self.st();
        st.default_comm = comm_of_path(exe);
        let comm = st.default_comm.clone();
        for t in st.threads.values_mut() {
            t.attrs.comm = comm.clone();
        }
        st.rec.dumpable = DUMPABLE_USER;
    }

    /// Thread `tid` exited: what it used stays with the process.
    pub fn thread_exited(&self, tid: i32) {
        let mut st = self.st();
        if let Some(t) = st.threads.remove(&tid) {
            let u = t.usage.get();
            st.rec.dead_threads.add(u);
        }
    }

    /// Reads or changes thread `tid`'s attributes (ESRCH if it is not a
    /// live thread of the process).
    pub fn with_thread<R>(
        &self,
        tid: i32,
        f: impl FnOnce(&mut TaskAttrs) -> R,
    ) -> Result<R, Errno> {
        let mut st = self.st();
        let t = st.threads.get_mut(&tid).ok_or(Errno::ESRCH)?;
        Ok(f(&mut t.attrs))
    }

    /// The death signals (PR_SET_PDEATHSIG) its threads asked for, each
    /// once.
    pub fn death_signals(&self) -> Vec<i32> {
        let mut sigs: Vec<i32> = self
            .st()
            .threads
            .values()
            .map(|t| t.attrs.pdeathsig)
            .filter(|&s| s != 0)
            .collect();
        sigs.sort_unstable();
        sigs.dedup();
        sigs
    }

    /// Thread `tid`'s name (the program's if it has none of its own).
    pub fn comm(&self, tid: i32) -> Vec<u8> {
        let st = self.st();
        st.threads
            .get(&tid)
            .map(|t| t.attrs.comm.clone())
            .unwrap_or_else(|| st.default_comm.clone())
    }

    /// Thread `tid`'s saved form, with its CPU time as of now.
    pub fn thread_record(&self, tid: i32) -> Option<TaskAttrs> {
        let st = self.st();
        let t = st.threads.get(&tid)?;
        let u = t.usage.get();
        Some(TaskAttrs {
            user_ns: u.user_ns,
            sys_ns: u.sys_ns,
            ..t.attrs.clone()
        })
    }

    /// Sets the program's name threads start with (boot, restore).
    pub fn set_default_comm(&self, exe: &str) {
        self.st().default_comm = comm_of_path(exe);
    }

    /// Thread `tid`'s CPU time.
    pub fn thread_usage(&self, tid: i32) -> CpuUsage {
        self.st()
            .threads
            .get(&tid)
            .map(|t| t.usage.get())
            .unwrap_or_default()
    }

    /// The process's own CPU time: its threads', live and exited.
    pub fn usage(&self) -> CpuUsage {
        let st = self.st();
        let mut total = st.rec.dead_threads;
        for t in st.threads.values() {
            total.add(t.usage.get());
        }
        total
    }

    /// What its reaped children used.
    pub fn children_usage(&self) -> CpuUsage {
        self.st().rec.children
    }

    /// A child was reaped (wait4/waitid): its time, and its own reaped
    /// children's, count as this process's children's (Linux's
    /// cutime/cstime). The caller passes `child.usage() +
    /// child.children_usage()`.
    pub fn add_child_usage(&self, u: CpuUsage) {
        self.st().rec.children.add(u);
    }

    /// RLIMIT_CPU, checked as CPU time is charged: SIGXCPU once the soft
    /// limit (in seconds) is reached and every second after, SIGKILL at
    /// the hard limit, as Linux's check_process_timers. The signal due.
    ///
    /// Linux checks every tick, so with the soft limit below the hard one
    /// a SIGXCPU always comes first; cryo charges in coarser steps (each
    /// return to the Sentry), so one step may cross both. Then the SIGXCPU
    /// goes first and the SIGKILL waits two more charges, time for the
    /// handler to run, as it would have on Linux.
    pub fn cpu_limit_signal(&self, soft_s: u64, hard_s: u64) -> Option<i32> {
        if soft_s == u64::MAX && hard_s == u64::MAX {
            return None;
        }
        let used = self.usage().total().as_secs();
        let mut st = self.st();
        if used >= hard_s {
            match st.kill_grace {
                None if soft_s < hard_s && st.rec.next_xcpu_s == 0 => {
                    st.rec.next_xcpu_s = used + 1;
                    st.kill_grace = Some(2);
                    return Some(libc::SIGXCPU);
                }
                Some(n) if n > 0 => {
                    st.kill_grace = Some(n - 1);
                    return None;
                }
                _ => return Some(libc::SIGKILL),
            }
        }
        let next = if st.rec.next_xcpu_s == 0 {
            soft_s
        } else {
            st.rec.next_xcpu_s
        };
        if used >= next {
            st.rec.next_xcpu_s = used + 1;
            return Some(libc::SIGXCPU);
        }
        None
    }
}

/// How often RLIMIT_CPU's watchdog makes the running tasks account.
const CPU_WATCH_PERIOD: Duration = Duration::from_millis(50);

/// A finite RLIMIT_CPU must be seen by a task that never enters the
/// Sentry (a pure computation): while the limit is finite, a thread
/// interrupts the process's tasks running application code every 50 ms,
/// so each returns to the Sentry, is charged and meets the limit there.
/// Started by setrlimit; ends when the limit is infinite or the process is
/// gone.
pub fn watch_cpu_limit(tg: &Arc<super::thread_group::ThreadGroup>) {
    if tg.attrs().cpu_watchdog.swap(true, Ordering::AcqRel) {
        return;
    }
    let group = Arc::downgrade(tg);
    let spawned = std::thread::Builder::new()
        .name(format!("rlimit-cpu-{}", tg.tgid()))
        .spawn(move || loop {
            std::thread::sleep(CPU_WATCH_PERIOD);
            let Some(tg) = group.upgrade() else { return };
            let l = tg.limits().get(libc::RLIMIT_CPU).ok();
            let finite = l.is_some_and(|l| l.cur != u64::MAX || l.max != u64::MAX);
            if !finite || tg.live() == 0 || tg.exit_status().is_some() {
                tg.attrs().cpu_watchdog.store(false, Ordering::Release);
                return;
            }
            for tid in tg.itimers().in_user() {
                if let Some(m) = tg.member(tid) {
                    m.interrupt.interrupt();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(tgid = tg.tgid(), error = %e, "cannot start the RLIMIT_CPU watchdog");
        tg.attrs().cpu_watchdog.store(false, Ordering::Release);
    }
}

/// The nice value setpriority may set: clamped to -20..=19, as Linux.
pub fn clamp_nice(nice: i64) -> i32 {
    nice.clamp(-20, 19) as i32
}

/// Validates a CPU mask a program passes to sched_setaffinity: at least
/// one of the sandbox's CPUs, the rest ignored.
pub fn affinity_from_user(mask: &[u8], cpus: u32) -> Result<u64, Errno> {
    let mut m = [0u8; 8];
    let n = mask.len().min(8);
    m[..n].copy_from_slice(&mask[..n]);
    let set = u64::from_le_bytes(m) & all_cpus_mask(cpus);
    if set == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(set)
}

/// The calling host thread's CPU time: the Sentry's own work for a task.
pub fn sentry_thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| {
            Duration::new(
                t.tv_sec().max(0) as u64,
                t.tv_nsec().clamp(0, 999_999_999) as u32,
            )
        })
        .unwrap_or_default()
}

impl super::Task {
    /// The task joins its process's accounting, with its creator's
    /// attributes if the process knows them (see
    /// [`ProcessAttrs::attrs_for_new_thread`]), else the program's.
    pub(super) fn join_attrs(&self) {
        let p = self.tg.attrs();
        if p.with_thread(self.tid, |_| ()).is_err() {
            let attrs = p.attrs_for_new_thread(None);
            p.add_thread(self.tid, &self.usage, attrs);
        }
    }

    /// Thread `child`, just made by this task, takes its name,
    /// no_new_privs and affinity (clone, before the child runs).
    pub fn give_attrs_to(&self, child: &super::Task) {
        let p = child.tg.attrs();
        let attrs = self.tg.attrs().attrs_for_new_thread(Some(self.tid));
        p.add_thread(child.tid, &child.usage, attrs);
    }

    /// Charges one return to the Sentry: `user` spent in application code,
    /// `sys` of the Sentry's own CPU time. Sends SIGXCPU or SIGKILL past
    /// RLIMIT_CPU. Their sum, which the CPU-time interval timers use.
    pub fn charge_cpu(&mut self, user: Duration, sys: Duration) -> Duration {
        self.usage.charge(user, sys);
        self.cpu_time = self.usage.get().total();
        let limit = self.limits().get(libc::RLIMIT_CPU).ok();
        if let Some(l) = limit.filter(|l| l.cur != u64::MAX || l.max != u64::MAX) {
            match self.tg.attrs().cpu_limit_signal(l.cur, l.max) {
                Some(libc::SIGKILL) => {
                    let status = super::ExitStatus::Signaled(libc::SIGKILL);
                    self.tg.begin_exit(status, self.tid);
                    self.exit = Some(status);
                }
                Some(signo) => self.send_signal(super::signal::SigInfo {
                    signo,
                    code: super::signal::SI_KERNEL,
                    addr: 0,
                    pid: 0,
                    uid: 0,
                }),
                None => {}
            }
        }
        user + sys
    }

    /// This thread's user and system time.
    pub fn thread_usage(&self) -> CpuUsage {
        self.usage.get()
    }

    /// The thread is exiting: its CPU time stays with its process.
    pub fn account_exit(&self) {
        self.tg.attrs().thread_exited(self.tid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_the_basename_cut_to_15_bytes() {
        assert_eq!(comm_of_path("/usr/bin/python3"), b"python3");
        assert_eq!(
            comm_of_path("/x/a-very-long-program-name"),
            b"a-very-long-pro"
        );
        assert_eq!(comm_of_path("sh"), b"sh");
    }

    #[test]
    fn a_process_sums_live_and_exited_threads_and_keeps_children_apart() {
        let p = ProcessAttrs::default();
        let (a, b) = (
            TaskUsage::new(CpuUsage::default()),
            TaskUsage::new(CpuUsage::default()),
        );
        p.add_thread(1, &a, TaskAttrs::for_exe("/bin/a"));
        p.add_thread(2, &b, p.attrs_for_new_thread(Some(1)));
        assert_eq!(p.comm(2), b"a");
        a.charge(Duration::from_millis(3), Duration::from_millis(1));
        b.charge(Duration::from_millis(2), Duration::ZERO);
        assert_eq!(p.usage().user_ns, 5_000_000);
        p.thread_exited(2);
        b.charge(Duration::from_secs(9), Duration::ZERO);
        assert_eq!(
            p.usage().user_ns,
            5_000_000,
            "an exited thread no longer runs"
        );
        assert_eq!(p.usage().sys_ns, 1_000_000);
        p.add_child_usage(CpuUsage {
            user_ns: 7,
            sys_ns: 8,
        });
        assert_eq!(
            p.children_usage(),
            CpuUsage {
                user_ns: 7,
                sys_ns: 8
            }
        );
        assert_eq!(p.usage().user_ns, 5_000_000);
    }

    #[test]
    fn rlimit_cpu_sends_sigxcpu_each_second_then_sigkill() {
        let p = ProcessAttrs::default();
        let a = TaskUsage::new(CpuUsage::default());
        p.add_thread(1, &a, TaskAttrs::for_exe("x"));
        assert_eq!(p.cpu_limit_signal(1, 3), None);
        a.charge(Duration::from_millis(1100), Duration::ZERO);
        assert_eq!(p.cpu_limit_signal(1, 3), Some(libc::SIGXCPU));
        assert_eq!(p.cpu_limit_signal(1, 3), None, "once per second");
        a.charge(Duration::from_millis(1000), Duration::ZERO);
        assert_eq!(p.cpu_limit_signal(1, 3), Some(libc::SIGXCPU));
        a.charge(Duration::from_millis(1000), Duration::ZERO);
        assert_eq!(p.cpu_limit_signal(1, 3), Some(libc::SIGKILL));
        assert_eq!(p.cpu_limit_signal(u64::MAX, u64::MAX), None);

        // One charge past both limits: SIGXCPU first, SIGKILL two later.
        let p = ProcessAttrs::default();
        let a = TaskUsage::new(CpuUsage::default());
        p.add_thread(1, &a, TaskAttrs::for_exe("x"));
        a.charge(Duration::from_secs(5), Duration::ZERO);
        assert_eq!(p.cpu_limit_signal(1, 3), Some(libc::SIGXCPU));
        assert_eq!(p.cpu_limit_signal(1, 3), None);
        assert_eq!(p.cpu_limit_signal(1, 3), None);
        assert_eq!(p.cpu_limit_signal(1, 3), Some(libc::SIGKILL));
    }

    #[test]
    fn saved_attributes_are_checked() {
        let mut t = TaskAttrs::for_exe("/bin/true");
        t.validate().unwrap();
        t.comm = b"sixteen-bytes-xx".to_vec();
        assert_eq!(t.validate(), Err(AttrsError::Comm(16)));
        let mut t = TaskAttrs::for_exe("/bin/true");
        t.pdeathsig = 65;
        assert!(t.validate().is_err());
        let mut p = ProcessAttrsRecord::default();
        p.validate().unwrap();
        p.nice = 20;
        assert_eq!(p.validate(), Err(AttrsError::Nice(20)));
        assert_eq!(affinity_from_user(&[0, 0], 4), Err(Errno::EINVAL));
        assert_eq!(affinity_from_user(&[0xff, 0xff], 4), Ok(0xf));
        assert_eq!(clamp_nice(-100), -20);
    }
}
