//! The kernel: what all tasks of a sandbox share.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use platform::Platform;

use super::proc::ProcTable;
use super::time::Clocks;
use super::uts::UtsNamespace;
use crate::mm::MemoryFile;
use crate::vfs::Vfs;

/// How a sandbox's kernel is set up.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    pub hostname: String,
    /// Print every syscall with its arguments and result (`--strace`).
    pub strace: bool,
}

/// The kernel (gVisor's kernel.Kernel): the platform, the memory file, the
/// mount namespace, clocks and the UTS namespace.
pub struct Kernel {
    pub platform: Arc<dyn Platform>,
    pub memory_file: Arc<MemoryFile>,
    pub vfs: Arc<Vfs>,
    pub clocks: Clocks,
    pub uts: Mutex<UtsNamespace>,
    pub strace: bool,
    /// What procfs shows of the tasks.
    pub procs: Arc<ProcTable>,
    pub futexes: super::futex::FutexTable,
    next_tid: AtomicI32,
    /// What was logged as unimplemented: "name" or "name (detail)".
    enosys_logged: Mutex<HashSet<String>>,
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
        Kernel {
            procs,
            futexes: Default::default(),
            platform,
            memory_file,
            vfs,
            clocks,
            uts: Mutex::new(UtsNamespace::new(&config.hostname)),
            strace: config.strace,
            // The first task is the init task, pid 1 (invariant 6).
            next_tid: AtomicI32::new(1),
            enosys_logged: Mutex::new(HashSet::new()),
        }
    }

    /// A fresh thread id in the sandbox's pid namespace.
    pub fn allocate_tid(&self) -> i32 {
        self.next_tid.fetch_add(1, Ordering::Relaxed)
    }

    /// Continues tid allocation after a restore.
    pub fn set_next_tid(&self, next: i32) {
        self.next_tid.store(next, Ordering::Relaxed);
    }

    pub fn next_tid(&self) -> i32 {
        self.next_tid.load(Ordering::Relaxed)
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

    pub fn hostname(&self) -> String {
        self.uts
            .lock()
            .map(|u| u.hostname.clone())
            .unwrap_or_default()
    }
}
