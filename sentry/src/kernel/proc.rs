//! What procfs sees of the kernel's processes: a live view of the pid
//! namespace. /proc/<pid>/* reads the thread group itself when a file is
//! opened; /proc/self is the thread group of the task whose host thread
//! opens it (every task runs on a host thread of its own, which records its
//! thread group when it starts running).

use std::cell::Cell;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use super::thread_group::ThreadGroup;
use super::Kernel;
use crate::vfs::procfs::{ProcessInfo, ProcessTable};
use crate::vfs::OpenFile;

thread_local! {
    /// The thread group of the task this host thread runs (0: none).
    static CURRENT_TGID: Cell<i32> = const { Cell::new(0) };
}

/// Records that this host thread runs a task of thread group `tgid`.
pub fn set_current(tgid: i32) {
    CURRENT_TGID.with(|c| c.set(tgid));
}

/// One process as /proc/<pid> shows it, read live from its thread group.
/// Held weakly: procfs dentries stay cached in the mount tree that the
/// thread group itself references (its root and cwd), so a strong
/// reference would keep an exited process, its files and the gofer
/// connection alive forever. An exited process reads as empty.
struct LiveProcess {
    pid: i32,
    tg: Weak<ThreadGroup>,
    kernel: Weak<Kernel>,
}

impl LiveProcess {
    fn with<T: Default>(&self, f: impl FnOnce(&ThreadGroup) -> T) -> T {
        self.tg.upgrade().map(|tg| f(&tg)).unwrap_or_default()
    }
}

impl ProcessInfo for LiveProcess {
    fn pid(&self) -> i32 {
        self.pid
    }
    fn comm(&self) -> String {
        // The leader's name, as PR_SET_NAME left it (Linux's
        // /proc/<pid>/comm).
        self.with(|tg| String::from_utf8_lossy(&tg.attrs().comm(tg.tgid())).into_owned())
    }
    fn cmdline(&self) -> Vec<u8> {
        self.with(|tg| {
            let mut cmdline = Vec::new();
            for a in &tg.image().argv {
                cmdline.extend_from_slice(a);
                cmdline.push(0);
            }
            cmdline
        })
    }
    fn maps_text(&self) -> String {
        self.with(|tg| {
            tg.mm_arc()
                .map(|mm| super::thread_group::lock(&mm).maps_text())
                .unwrap_or_default()
        })
    }
    fn status_text(&self) -> String {
        self.with(|tg| {
            format!(
                "Name:\t{}\nState:\tR (running)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nThreads:\t{}\n",
                String::from_utf8_lossy(&tg.attrs().comm(tg.tgid())),
                tg.links().parent,
                tg.live(),
                pid = self.pid
            )
        })
    }
    fn exe_path(&self) -> Option<String> {
        self.tg.upgrade().map(|tg| tg.image().exe.clone())
    }
    fn cwd_path(&self) -> Option<String> {
        let cwd = self.tg.upgrade()?.fs().cwd.clone();
        Some(self.kernel.upgrade()?.vfs.dentry_path(&cwd))
    }
    fn fds(&self) -> Vec<i32> {
        self.with(|tg| tg.fds().lock().iter().map(|(fd, _)| fd).collect())
    }
    fn threads(&self) -> Vec<i32> {
        self.with(|tg| tg.tids())
    }
    fn thread_comm(&self, tid: i32) -> String {
        self.with(|tg| String::from_utf8_lossy(&tg.attrs().comm(tid)).into_owned())
    }
    fn fd_file(&self, fd: i32) -> Option<Arc<OpenFile>> {
        self.tg.upgrade()?.fds().lock().file(fd).ok()
    }
    /// Files with no name: a socket reads `socket:[ino]` and a pipe
    /// `pipe:[ino]`, as on Linux.
    fn fd_path(&self, fd: i32) -> Option<String> {
        let f = self.fd_file(fd)?;
        if f.dentry().is_some() {
            return None;
        }
        let st = f.stat().ok()?;
        match st.mode & libc::S_IFMT {
            libc::S_IFSOCK => Some(format!("socket:[{}]", st.ino)),
            libc::S_IFIFO => Some(format!("pipe:[{}]", st.ino)),
            _ => None,
        }
    }
}

/// The kernel's process table, as procfs needs it.
#[derive(Default)]
pub struct ProcTable {
    kernel: OnceLock<Weak<Kernel>>,
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
}

impl ProcessTable for ProcTable {
    fn current_pid(&self) -> Option<i32> {
        Some(CURRENT_TGID.with(|c| c.get())).filter(|&p| p > 0)
    }
    fn pids(&self) -> Vec<i32> {
        self.kernel()
            .map(|k| k.pids.thread_groups().iter().map(|tg| tg.tgid()).collect())
            .unwrap_or_default()
    }
    fn process(&self, pid: i32) -> Option<Arc<dyn ProcessInfo>> {
        let kernel = self.kernel()?;
        let tg = kernel.pids.thread_group(pid)?;
        Some(Arc::new(LiveProcess {
            pid,
            tg: Arc::downgrade(&tg),
            kernel: Arc::downgrade(&kernel),
        }))
    }
    fn hostname(&self) -> String {
        self.kernel().map(|k| k.hostname()).unwrap_or_default()
    }
    fn uptime(&self) -> Duration {
        self.kernel().map(|k| k.clocks.uptime()).unwrap_or_default()
    }
}
