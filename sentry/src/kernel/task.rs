//! A task: one application thread (gVisor's kernel.Task).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use platform::{AddressSpace, Context, CpuState};

use super::creds::Credentials;
use super::fd_table::FdTable;
use super::interrupt::TaskInterrupt;
use super::limits::LimitSet;
use super::signal::{SigInfo, SigSet, SignalHandlers};
use super::thread_group::{Member, ThreadGroup};
use super::Kernel;
use crate::mm::MemoryManager;
use crate::vfs::{Dentry, OpenFile};

/// How a task (and, for the init task, the sandbox) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit/exit_group with this status.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The status a shell reports: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code & 0xff,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }
}

/// What CLONE_FS shares: the root, the working directory, the umask.
pub struct FsContext {
    pub root: Arc<Dentry>,
    pub cwd: Arc<Dentry>,
    pub umask: u32,
}

/// Locks a mutex whose holder panicking leaves nothing half-done that later
/// users could trip on (each critical section is a single update).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One application thread. The threads of a process share their address
/// space, descriptor table, signal dispositions and limits (clone with
/// CLONE_VM|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD).
pub struct Task {
    pub kernel: Arc<Kernel>,
    pub tid: i32,
    pub tg: Arc<ThreadGroup>,
    pub creds: Credentials,
    pub cpu: CpuState,
    pub context: Box<dyn Context>,
    /// The platform address space this task's context switches into: the
    /// memory manager's, held apart so a running task never holds the
    /// memory manager's lock.
    pub aspace: Arc<dyn AddressSpace>,
    pub shared_mm: Arc<Mutex<MemoryManager>>,
    pub shared_fds: Arc<Mutex<FdTable<Arc<OpenFile>>>>,
    pub shared_handlers: Arc<Mutex<SignalHandlers>>,
    pub shared_limits: Arc<Mutex<LimitSet>>,
    /// Root, working directory and umask: shared by the threads of a
    /// process (CLONE_FS).
    pub shared_fs: Arc<Mutex<FsContext>>,
    pub signal_mask: SigSet,
    /// Signals generated for this thread but not yet delivered.
    pub shared_pending: Arc<Mutex<Vec<SigInfo>>>,
    /// sigaltstack: (ss_sp, ss_flags, ss_size).
    pub alt_stack: (u64, u32, u64),
    /// set_tid_address: cleared and futex-woken when the thread exits.
    pub clear_child_tid: u64,
    /// set_robust_list's head and length.
    pub robust_list: (u64, u64),
    /// The executable's path in the container and the argv it ran with, for
    /// /proc/self/{exe,cmdline}.
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    /// Time spent running application code and its syscalls: the task's CPU
    /// clock (CLOCK_THREAD_CPUTIME_ID / CLOCK_PROCESS_CPUTIME_ID).
    pub cpu_time: Duration,
    pub exit: Option<ExitStatus>,
    /// How a checkpoint stops this task.
    pub interrupt: Arc<TaskInterrupt>,
    /// An interrupted sleep resumes from here (restart_syscall): its
    /// absolute deadline on the sandbox's monotonic clock.
    pub restart_deadline: Option<i64>,
    pub restart_clock: Option<super::time::ClockId>,
    /// Where the interrupted sleep writes its remaining time (its `rem`).
    /// Not in the statefile yet: after a restore, a handler interrupting
    /// the resumed sleep leaves `rem` as the checkpoint's stop wrote it.
    pub restart_rem: Option<u64>,
}

impl Task {
    /// The thread group id: the pid.
    pub fn tgid(&self) -> i32 {
        self.tg.tgid
    }

    pub fn mm(&self) -> MutexGuard<'_, MemoryManager> {
        lock(&self.shared_mm)
    }

    pub fn fds(&self) -> MutexGuard<'_, FdTable<Arc<OpenFile>>> {
        lock(&self.shared_fds)
    }

    pub fn handlers(&self) -> MutexGuard<'_, SignalHandlers> {
        lock(&self.shared_handlers)
    }

    pub fn limits(&self) -> MutexGuard<'_, LimitSet> {
        lock(&self.shared_limits)
    }

    pub fn cwd(&self) -> Arc<Dentry> {
        lock(&self.shared_fs).cwd.clone()
    }

    pub fn set_cwd(&self, cwd: Arc<Dentry>) {
        lock(&self.shared_fs).cwd = cwd;
    }

    pub fn root(&self) -> Arc<Dentry> {
        lock(&self.shared_fs).root.clone()
    }

    pub fn umask(&self) -> u32 {
        lock(&self.shared_fs).umask
    }

    /// Sets the umask, returning the old one.
    pub fn set_umask(&self, umask: u32) -> u32 {
        std::mem::replace(&mut lock(&self.shared_fs).umask, umask & 0o777)
    }

    pub fn pending(&self) -> MutexGuard<'_, Vec<SigInfo>> {
        lock(&self.shared_pending)
    }

    /// What the thread group knows of this task.
    pub fn member(&self) -> Arc<Member> {
        Arc::new(Member {
            interrupt: self.interrupt.clone(),
            pending: self.shared_pending.clone(),
        })
    }

    /// The parent's pid in this pid namespace: the init task has none.
    pub fn ppid(&self) -> i32 {
        0
    }

    pub fn nofile_limit(&self) -> u64 {
        self.limits()
            .get(libc::RLIMIT_NOFILE)
            .map(|l| l.cur)
            .unwrap_or(1024)
    }
}

impl Task {
    /// The first task of a new thread group (a process), in the state a
    /// fresh execve leaves it: default signal dispositions and limits,
    /// nothing pending. Boot and restore fill in the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kernel: Arc<Kernel>,
        tid: i32,
        creds: Credentials,
        cpu: CpuState,
        context: Box<dyn Context>,
        mm: MemoryManager,
        fds: FdTable<Arc<OpenFile>>,
        root: Arc<Dentry>,
        cwd: Arc<Dentry>,
    ) -> Task {
        let interrupt = TaskInterrupt::new();
        interrupt.set_platform(context.interrupter());
        let aspace = mm.address_space_arc();
        let task = Task {
            kernel,
            tid,
            tg: ThreadGroup::new(tid),
            creds,
            cpu,
            context,
            aspace,
            shared_mm: Arc::new(Mutex::new(mm)),
            shared_fds: Arc::new(Mutex::new(fds)),
            shared_handlers: Arc::new(Mutex::new(SignalHandlers::default())),
            shared_limits: Arc::new(Mutex::new(LimitSet::default())),
            shared_fs: Arc::new(Mutex::new(FsContext {
                root,
                cwd,
                umask: 0o022,
            })),
            signal_mask: SigSet::default(),
            shared_pending: Arc::new(Mutex::new(Vec::new())),
            alt_stack: (0, 0, 0),
            clear_child_tid: 0,
            robust_list: (0, 0),
            exe: String::new(),
            argv: Vec::new(),
            cpu_time: Duration::ZERO,
            exit: None,
            interrupt,
            restart_deadline: None,
            restart_clock: None,
            restart_rem: None,
        };
        task.tg.add(tid, task.member());
        task
    }
}
