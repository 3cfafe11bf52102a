//! A task: one application thread (gVisor's kernel.Task).

use std::sync::Arc;
use std::time::Duration;

use platform::{Context, CpuState};

use super::creds::Credentials;
use super::fd_table::FdTable;
use super::interrupt::TaskInterrupt;
use super::limits::LimitSet;
use super::signal::{SigSet, SignalHandlers};
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

/// One application thread. With no fork or clone yet, a task is also its
/// thread group: tid == pid.
pub struct Task {
    pub kernel: Arc<Kernel>,
    pub tid: i32,
    pub creds: Credentials,
    pub cpu: CpuState,
    pub context: Box<dyn Context>,
    pub mm: MemoryManager,
    pub fds: FdTable<Arc<OpenFile>>,
    pub root: Arc<Dentry>,
    pub cwd: Arc<Dentry>,
    pub umask: u32,
    pub signal_handlers: SignalHandlers,
    pub signal_mask: SigSet,
    /// Signals generated but not yet delivered.
    pub pending: Vec<super::signal::SigInfo>,
    /// sigaltstack: (ss_sp, ss_flags, ss_size).
    pub alt_stack: (u64, u32, u64),
    /// set_tid_address: cleared and futex-woken when the thread exits.
    pub clear_child_tid: u64,
    /// set_robust_list's head and length.
    pub robust_list: (u64, u64),
    pub limits: LimitSet,
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
}

impl Task {
    /// The thread group id; equal to tid while every task is single-threaded.
    pub fn tgid(&self) -> i32 {
        self.tid
    }

    /// The parent's pid in this pid namespace: the init task has none.
    pub fn ppid(&self) -> i32 {
        0
    }

    pub fn nofile_limit(&self) -> u64 {
        self.limits
            .get(libc::RLIMIT_NOFILE)
            .map(|l| l.cur)
            .unwrap_or(1024)
    }
}

impl Task {
    /// A task in the state a fresh execve leaves it: default signal
    /// dispositions and limits, nothing pending. Boot and restore fill in
    /// the rest.
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
        Task {
            kernel,
            tid,
            creds,
            cpu,
            context,
            mm,
            fds,
            root,
            cwd,
            umask: 0o022,
            signal_handlers: SignalHandlers::default(),
            signal_mask: SigSet::default(),
            pending: Vec::new(),
            alt_stack: (0, 0, 0),
            clear_child_tid: 0,
            robust_list: (0, 0),
            limits: LimitSet::default(),
            exe: String::new(),
            argv: Vec::new(),
            cpu_time: Duration::ZERO,
            exit: None,
            interrupt,
            restart_deadline: None,
            restart_clock: None,
        }
    }
}
