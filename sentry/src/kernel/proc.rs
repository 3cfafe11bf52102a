//! What procfs sees of the kernel's processes.
//!
//! procfs generates /proc/<pid>/* when a file is opened, which happens
//! inside a syscall of the very task being shown, while the Sentry holds
//! that task mutably. So each task publishes a snapshot of what /proc shows
//! (maps, cmdline, exe, cwd, descriptors) before path-resolving syscalls,
//! and procfs reads the snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use std::time::Duration;

use super::task::Task;
use super::Kernel;
use crate::vfs::procfs::{ProcessInfo, ProcessTable};
use crate::vfs::OpenFile;

/// One process as /proc/<pid> shows it.
pub struct ProcSnapshot {
    pid: i32,
    comm: String,
    cmdline: Vec<u8>,
    maps: String,
    exe: String,
    cwd: String,
    /// Weak, so a snapshot never keeps a file open (a pipe's writer alive)
    /// after the task closed it.
    fds: Vec<(i32, Weak<OpenFile>)>,
}

impl ProcessInfo for ProcSnapshot {
    fn pid(&self) -> i32 {
        self.pid
    }
    fn comm(&self) -> String {
        self.comm.clone()
    }
    fn cmdline(&self) -> Vec<u8> {
        self.cmdline.clone()
    }
    fn maps_text(&self) -> String {
        self.maps.clone()
    }
    fn exe_path(&self) -> Option<String> {
        Some(self.exe.clone())
    }
    fn cwd_path(&self) -> Option<String> {
        Some(self.cwd.clone())
    }
    fn fds(&self) -> Vec<i32> {
        self.fds.iter().map(|(fd, _)| *fd).collect()
    }
    fn fd_file(&self, fd: i32) -> Option<Arc<OpenFile>> {
        self.fds
            .iter()
            .find(|(n, _)| *n == fd)
            .and_then(|(_, f)| f.upgrade())
    }
}

/// The kernel's process table, as procfs needs it.
#[derive(Default)]
pub struct ProcTable {
    kernel: OnceLock<Weak<Kernel>>,
    procs: Mutex<BTreeMap<i32, Arc<ProcSnapshot>>>,
    current: Mutex<Option<i32>>,
}

impl ProcTable {
    pub fn new() -> Arc<ProcTable> {
        Arc::new(ProcTable::default())
    }

    /// Connects the table to its kernel once both exist.
    pub fn set_kernel(&self, kernel: &Arc<Kernel>) {
        let _ = self.kernel.set(Arc::downgrade(kernel));
    }

    fn kernel(&self) -> Option<Arc<Kernel>> {
        self.kernel.get().and_then(Weak::upgrade)
    }

    pub fn remove(&self, pid: i32) {
        if let Ok(mut p) = self.procs.lock() {
            p.remove(&pid);
        }
    }
}

impl ProcessTable for ProcTable {
    fn current_pid(&self) -> Option<i32> {
        self.current.lock().ok().and_then(|c| *c)
    }
    fn pids(&self) -> Vec<i32> {
        self.procs
            .lock()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default()
    }
    fn process(&self, pid: i32) -> Option<Arc<dyn ProcessInfo>> {
        let p = self.procs.lock().ok()?;
        p.get(&pid).cloned().map(|s| s as Arc<dyn ProcessInfo>)
    }
    fn hostname(&self) -> String {
        self.kernel().map(|k| k.hostname()).unwrap_or_default()
    }
    fn uptime(&self) -> Duration {
        self.kernel().map(|k| k.clocks.uptime()).unwrap_or_default()
    }
}

impl Task {
    /// Publishes what /proc shows of this task, and makes it /proc/self.
    pub fn publish_proc(&self) {
        let comm = self
            .exe
            .rsplit('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(15)
            .collect();
        let mut cmdline = Vec::new();
        for a in &self.argv {
            cmdline.extend_from_slice(a);
            cmdline.push(0);
        }
        let snap = ProcSnapshot {
            pid: self.tgid(),
            comm,
            cmdline,
            maps: self.mm().maps_text(),
            exe: self.exe.clone(),
            cwd: self.kernel.vfs.dentry_path(&self.cwd()),
            fds: self
                .fds()
                .iter()
                .map(|(fd, e)| (fd, Arc::downgrade(&e.file)))
                .collect(),
        };
        let table = &self.kernel.procs;
        if let Ok(mut p) = table.procs.lock() {
            p.insert(self.tgid(), Arc::new(snap));
        }
        if let Ok(mut c) = table.current.lock() {
            *c = Some(self.tgid());
        }
    }
}
