//! The kernel: what all tasks of a sandbox share.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use platform::Platform;
use serde::{Deserialize, Serialize};

use super::pid_namespace::PidNamespace;
use super::proc::ProcTable;
use super::time::{Clocks, ClocksState};
use super::uts::UtsNamespace;
use crate::errno::Errno;
use crate::mm::MemoryFile;
use crate::vfs::Vfs;

/// Total and free memory of the sandbox, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub total: u64,
    pub free: u64,
}

/// How a sandbox's kernel is set up.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    pub hostname: String,
    /// Print every syscall with its arguments and result (`--strace`).
    pub strace: bool,
    /// The platform's name in `platform::PLATFORMS` (`--platform`).
    pub platform: String,
    /// The most tasks (threads of all processes) the sandbox may hold.
    pub max_tasks: usize,
    /// The sandbox's memory limit in bytes (kernel/oom.rs).
    pub memory_limit: Option<u64>,
    /// The CPU the sandbox sees (`--cpu-features`, or what its statefile
    /// recorded).
    pub cpu: crate::arch::cpuid::CpuFeatures,
}

/// The default sandbox-wide task limit: every task is a host thread and
/// every process a stub process, so this is what keeps a fork bomb from
/// taking the host down.
pub const DEFAULT_MAX_TASKS: usize = 1024;

/// The kernel (gVisor's kernel.Kernel), the root of the object graph: the
/// pid namespace (every thread group and task), the platform, the memory
/// file, the mount namespace, clocks and the UTS namespace.
pub struct Kernel {
    /// Every process and thread of the sandbox.
    pub pids: PidNamespace,
    pub platform: Arc<dyn Platform>,
    pub memory_file: Arc<MemoryFile>,
    pub vfs: Arc<Vfs>,
    pub clocks: Clocks,
    pub uts: Mutex<UtsNamespace>,
    pub strace: bool,
    /// What procfs shows of the tasks.
    pub procs: Arc<ProcTable>,
    pub futexes: super::futex::FutexTable,
    /// The process tree's lock (Linux's tasklist_lock): exits, reparenting,
    /// waits and process-group changes are serialized by it.
    pub(crate) tree: Mutex<()>,
    /// Woken when a child exits, stops or continues (waits sleep on it,
    /// with `tree`).
    pub(crate) child_event: std::sync::Condvar,
    /// Clones hold it (read) while a child joins; a checkpoint closes it
    /// (write, `true`) before it looks for the tasks to stop, and a clone
    /// that finds it closed restarts after the checkpoint, so no process or
    /// thread is born unstopped. Linux's freezer: a child of a freezing
    /// task is frozen from birth.
    fork_gate: std::sync::RwLock<bool>,
    /// The most tasks the sandbox may hold (a fork bomb gets EAGAIN).
    pub max_tasks: usize,
    /// The CPU features the sandbox sees: its cpuid (emulated when they are
    /// not the host's), auxv and /proc/cpuinfo, and what a checkpoint
    /// records.
    pub cpu: crate::arch::cpuid::CpuFeatures,
    /// Every advisory file lock (fcntl, OFD, flock) of the sandbox.
    pub file_locks: Arc<crate::vfs::lock::FileLocks>,
    /// The sandbox's unix socket names (abstract and bound paths).
    pub unix: Arc<crate::net::UnixNamespace>,
    /// The sandbox's loopback TCP/UDP stack.
    pub inet: Arc<crate::net::inet::InetStack>,
    /// Its boot id and, once a pool hands it out, the take's id and
    /// environment (never saved: see `identity`).
    pub identity: super::identity::Identity,
    /// What was logged as unimplemented: "name" or "name (detail)".
    enosys_logged: Mutex<HashSet<String>>,
    /// Every process's start and end, bounded (`cryo diff` names the
    /// processes that came and went between two statefiles).
    pub proc_log: Mutex<super::proc_log::ProcessLog>,
}

impl Kernel {
    pub fn new(
        platform: Arc<dyn Platform>,
        memory_file: Arc<MemoryFile>,
        vfs: Arc<Vfs>,
        clocks: Clocks,
        procs: Arc<ProcTable>,
        config: &KernelConfig,
    ) -> Kernel {
        // Taken now, before any platform thread binding (see sandbox_cpus).
        super::attrs::sandbox_cpus();
        // The vDSO's data page; without one, programs run without a vDSO.
        if let Err(e) = clocks.attach_vvar(&memory_file) {
            tracing::warn!("no vDSO data page ({e}): programs get no vDSO");
        }
        Kernel {
            pids: PidNamespace::default(),
            procs,
            futexes: Default::default(),
            tree: Mutex::new(()),
            child_event: std::sync::Condvar::new(),
            fork_gate: std::sync::RwLock::new(false),
            max_tasks: config.max_tasks,
            cpu: config.cpu.clone(),
            file_locks: crate::vfs::lock::FileLocks::new(),
            unix: crate::net::UnixNamespace::new(),
            inet: crate::net::inet::InetStack::new(),
            identity: super::identity::Identity::new(),
            platform,
            memory_file,
            vfs,
            clocks,
            uts: Mutex::new(UtsNamespace::new(&config.hostname)),
            strace: config.strace,
            enosys_logged: Mutex::new(HashSet::new()),
            proc_log: Mutex::new(super::proc_log::ProcessLog::new()),
        }
    }

    /// A fresh thread id in the sandbox's pid namespace.
    pub fn allocate_tid(&self) -> Result<i32, Errno> {
        self.pids.allocate_tid()
    }

    /// Invariant 5: an unknown syscall is logged once, with its name.
    pub fn log_unimplemented(&self, nr: u64) {
        match crate::arch::syscall_name(nr) {
            Some(name) => self.log_enosys(nr, name.to_string()),
            None => self.log_enosys(nr, format!("#{nr}")),
        }
    }

    /// A syscall cryo has, called in a way it does not support (a futex
    /// operation, fork through clone): ENOSYS too, logged once per
    /// `name (detail)`. The plain name then counts as logged, so the
    /// dispatcher's catch-all does not log it again.
    pub fn log_unsupported(&self, nr: u64, detail: &str) {
        let name = crate::arch::syscall_name(nr).unwrap_or("unknown");
        self.log_enosys(nr, format!("{name} ({detail})"));
        if let Ok(mut logged) = self.enosys_logged.lock() {
            logged.insert(name.to_string());
        }
    }

    /// A syscall through an ABI cryo does not implement (i386's int $0x80):
    /// ENOSYS, logged once per ABI.
    pub fn log_foreign_abi(&self, nr: u64, abi: &str) {
        self.log_enosys(nr, format!("#{nr} through the {abi} ABI"));
    }

    fn log_enosys(&self, nr: u64, what: String) {
        let first = self
            .enosys_logged
            .lock()
            .map(|mut logged| logged.insert(what.clone()))
            .unwrap_or(false);
        if first {
            tracing::warn!(nr, "unimplemented syscall {what}: returning ENOSYS");
        }
    }

    /// The sandbox's memory as sysinfo(2) and /proc/meminfo report it:
    /// the host's RAM, less what the sandbox's memory holds now.
    pub fn memory(&self) -> MemoryUsage {
        let host = nix::sys::sysinfo::sysinfo()
            .map(|s| s.ram_total())
            .unwrap_or(0);
        // A limited sandbox's memory is its limit (as gVisor shows it).
        let total = self
            .memory_file
            .limit()
            .map_or(host, |l| if host == 0 { l } else { l.min(host) });
        MemoryUsage {
            total,
            free: total.saturating_sub(self.memory_file.resident_bytes()),
        }
    }

    /// CPU time the live processes and the children they reaped have used:
    /// (user, system) nanoseconds (/proc/stat, `cryo events`).
    pub fn cpu_time(&self) -> (u64, u64) {
        self.pids.thread_groups().iter().fold((0, 0), |(u, s), tg| {
            let (own, reaped) = (tg.attrs().usage(), tg.attrs().children_usage());
            (
                u.saturating_add(own.user_ns).saturating_add(reaped.user_ns),
                s.saturating_add(own.sys_ns).saturating_add(reaped.sys_ns),
            )
        })
    }

    /// The process log, poisoned or not (an entry is whole either way).
    pub fn proc_log(&self) -> std::sync::MutexGuard<'_, super::proc_log::ProcessLog> {
        self.proc_log.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hostname(&self) -> String {
        self.uts
            .lock()
            .map(|u| u.hostname.clone())
            .unwrap_or_default()
    }
}

/// The kernel's saved form: the root record, from which every other record
/// is reached by id (thread groups by tgid; the mount namespace and the
/// memory file are the kernel's own, id 0).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KernelRecord {
    pub uts: UtsNamespace,
    pub clocks: ClocksState,
    /// The tid allocation continues from (i64 so that a hostile value is
    /// seen whole and refused, never truncated).
    pub next_tid: i64,
    /// Every thread group, ascending; the init process first.
    pub thread_groups: Vec<i32>,
    /// The sandbox's memory limit in bytes (kernel/oom.rs), if it has one.
    pub memory_limit: Option<u64>,
}
statefile::versioned!(
    KernelRecord,
    "kernel.Kernel",
    3,
    [UtsNamespace, ClocksState]
);

/// Version 2 of the kernel's record, before memory limits: it loads with
/// none.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KernelRecordV2 {
    pub uts: UtsNamespace,
    pub clocks: ClocksState,
    pub next_tid: i64,
    pub thread_groups: Vec<i32>,
}
statefile::versioned!(
    KernelRecordV2,
    "kernel.Kernel",
    2,
    [UtsNamespace, ClocksState]
);

impl statefile::Savable for KernelRecord {
    const TYPE_NAME: &'static str = "kernel.Kernel";
    const VERSION: u32 = 3;
    const MIN_VERSION: u32 = 2;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 2 {
            statefile::check_saved_versions::<KernelRecordV2>(dec.types())?;
            return dec.serde::<KernelRecordV2>().map(|v2| KernelRecord {
                uts: v2.uts,
                clocks: v2.clocks,
                next_tid: v2.next_tid,
                thread_groups: v2.thread_groups,
                memory_limit: None,
            });
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

impl Kernel {
    /// Stops every task but `stopper` (the task checkpointing, which saves
    /// itself) at its next clean boundary, in every thread group; returns
    /// their records, each saved on its own host thread. On failure every
    /// task stopped so far goes on.
    pub fn stop_tasks(
        &self,
        stopper: i32,
        timeout: std::time::Duration,
    ) -> Result<Vec<super::task::TaskRecord>, String> {
        self.set_fork_gate(true);
        let mut records = Vec::new();
        let groups = self.pids.thread_groups();
        for (i, tg) in groups.iter().enumerate() {
            if tg.live() == 1 && tg.tids() == [stopper] {
                continue;
            }
            match tg.stop_others(stopper, timeout) {
                Ok(r) => records.extend(r),
                Err(e) => {
                    for stopped in &groups[..i] {
                        stopped.release(super::thread_group::Release::Continue);
                    }
                    self.set_fork_gate(false);
                    return Err(e);
                }
            }
        }
        Ok(records)
    }

    /// Holds (`true`) or lets go (`false`) every process's interval timers.
    /// A checkpoint holds them from before the first task record to the
    /// end of the stop ([`Kernel::release_tasks`] lets go): a signal sent
    /// after its target's record was saved would be in neither that record
    /// nor the timers' saved state.
    pub fn freeze_itimers(&self, frozen: bool) {
        for tg in self.pids.thread_groups() {
            tg.itimers().freeze(frozen);
        }
    }

    /// Ends a stop begun by [`Kernel::stop_tasks`] (and lets the interval
    /// timers go).
    pub fn release_tasks(&self, how: super::thread_group::Release) {
        for tg in self.pids.thread_groups() {
            tg.release(how);
            tg.itimers().freeze(false);
        }
        self.set_fork_gate(false);
    }

    /// Closes (`true`) or opens the fork gate; closing waits for the clones
    /// under way, whose children are then there to be stopped.
    fn set_fork_gate(&self, closed: bool) {
        *self.fork_gate.write().unwrap_or_else(|e| e.into_inner()) = closed;
    }

    /// What a clone holds while its child joins (see `fork_gate`), or
    /// ERESTARTNOINTR while a checkpoint stops the tasks: the clone runs
    /// again once they go on.
    pub(crate) fn fork_gate(&self) -> Result<std::sync::RwLockReadGuard<'_, bool>, Errno> {
        let gate = self.fork_gate.read().unwrap_or_else(|e| e.into_inner());
        if *gate {
            return Err(crate::syscalls::ERESTARTNOINTR);
        }
        Ok(gate)
    }

    /// The root record.
    pub fn save_record(&self) -> KernelRecord {
        let uts = self
            .uts
            .lock()
            .map(|u| u.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        KernelRecord {
            uts,
            clocks: self.clocks.save(),
            next_tid: i64::from(self.pids.next_tid()),
            thread_groups: self
                .pids
                .thread_groups()
                .iter()
                .map(|tg| tg.tgid())
                .collect(),
            memory_limit: self.memory_file.limit(),
        }
    }
}
