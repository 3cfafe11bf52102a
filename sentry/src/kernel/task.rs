//! A task: one application thread (gVisor's kernel.Task).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use platform::{AddressSpace, Context, CpuState, FpState, Registers};
use serde::{Deserialize, Serialize};

use super::creds::{Credentials, CredentialsV1};
use super::interrupt::TaskInterrupt;
use super::limits::LimitSet;
use super::signal::{SigInfo, SigSet, SignalHandlers};
use super::thread_group::{lock, Member, ThreadGroup};
use super::time::ClockId;
use super::Kernel;
use crate::errno::Errno;
use crate::mm::MemoryManager;
use crate::vfs::Dentry;

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

/// An interrupted sleep that restart_syscall resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartSleep {
    /// Its absolute deadline, in nanoseconds on `clock`.
    pub deadline: i64,
    pub clock: ClockId,
    /// Where it writes the time left when interrupted (its `rem`).
    pub rem: Option<u64>,
}

/// What CLONE_FS shares: the root, the working directory, the umask, and
/// the mount namespace they are in (Linux keeps that in the nsproxy, but
/// unshare(CLONE_NEWNS) and clone(CLONE_NEWNS) refuse a shared fs_struct,
/// so the processes sharing one are always in one namespace).
#[derive(Clone)]
pub struct FsContext {
    pub root: Arc<Dentry>,
    pub cwd: Arc<Dentry>,
    pub umask: u32,
    pub mnt_ns: Arc<crate::vfs::mount_ns::MountNamespace>,
}

impl FsContext {
    /// Moves into a copy of the namespace (copy_mnt_ns), the root and cwd
    /// with it: each becomes the same name on the copy of its mount (one
    /// that no name reaches any more stays where it is).
    pub fn enter_copy_of_ns(&mut self, vfs: &crate::vfs::Vfs) {
        let copy = vfs.copy_ns(&self.mnt_ns);
        if let Some(root) = copy.map(&self.root) {
            self.root = root;
        }
        if let Some(cwd) = copy.map(&self.cwd) {
            self.cwd = cwd;
        }
        self.mnt_ns = copy.ns;
    }
}

/// One application thread. What its process shares (address space,
/// descriptors, dispositions, limits, fs context) belongs to its thread
/// group; a task owns its registers, mask, pending signals and the rest of
/// what Linux keeps per thread.
pub struct Task {
    pub(super) kernel: Arc<Kernel>,
    pub(super) tid: i32,
    pub(super) tg: Arc<ThreadGroup>,
    pub(super) creds: Credentials,
    pub(super) cpu: CpuState,
    pub(super) context: Box<dyn Context>,
    /// The process's address space (the thread group's, held here too so
    /// a task reaches it without the group's lock).
    pub(super) mm: super::thread_group::SharedMm,
    /// The platform address space this task's context switches into: the
    /// memory manager's, held apart so a running task never holds the
    /// memory manager's lock.
    pub(super) aspace: Arc<dyn AddressSpace>,
    signal_mask: SigSet,
    /// `signal_mask` as other threads see it (whether a signal to init is
    /// dropped depends on it: Linux never ignores a blocked signal).
    shared_blocked: Arc<std::sync::atomic::AtomicU64>,
    /// The signals it waits for in rt_sigtimedwait, as other threads see
    /// them: a process signal among them comes to this thread.
    waiting: Arc<std::sync::atomic::AtomicU64>,
    /// Signals generated for this thread but not yet delivered.
    pub(super) shared_pending: Arc<Mutex<Vec<SigInfo>>>,
    /// sigaltstack: (ss_sp, ss_flags, ss_size).
    pub(super) alt_stack: (u64, u32, u64),
    /// set_tid_address: cleared and futex-woken when the thread exits.
    pub(super) clear_child_tid: u64,
    /// set_robust_list's head and length.
    pub(super) robust_list: (u64, u64),
    /// Time spent running application code and its syscalls: the task's CPU
    /// clock (CLOCK_THREAD_CPUTIME_ID / CLOCK_PROCESS_CPUTIME_ID).
    pub(super) cpu_time: Duration,
    /// The same split into user and system time, which the process reads.
    pub(super) usage: Arc<super::attrs::TaskUsage>,
    pub(super) exit: Option<ExitStatus>,
    /// How a checkpoint stops this task.
    pub(super) interrupt: Arc<TaskInterrupt>,
    /// An interrupted sleep resumes from here (restart_syscall): its
    /// absolute deadline on the sandbox's monotonic clock.
    pub(super) restart_deadline: Option<i64>,
    pub(super) restart_clock: Option<super::time::ClockId>,
    /// Where the interrupted sleep writes its remaining time (its `rem`).
    pub(super) restart_rem: Option<u64>,
    /// The mask to go back to after a wait that set a temporary one
    /// (rt_sigsuspend, ppoll, pselect6, epoll_pwait): a handler's frame
    /// saves it, else the return to the application restores it.
    pub(super) saved_mask: Option<SigSet>,
}

impl Task {
    /// The thread group id: the pid.
    pub fn tgid(&self) -> i32 {
        self.tg.tgid()
    }

    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// The thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The task's process.
    pub fn tg(&self) -> &Arc<ThreadGroup> {
        &self.tg
    }

    pub fn creds(&self) -> &Credentials {
        &self.creds
    }

    pub fn set_creds(&mut self, creds: Credentials) {
        self.tg.set_creds(&creds);
        self.creds = creds;
    }

    /// The registers as the task stopped (a syscall's arguments, its ip).
    pub fn regs(&self) -> &Registers {
        &self.cpu.regs
    }

    /// The registers to edit (a syscall's return value, a signal frame).
    pub fn regs_mut(&mut self) -> &mut Registers {
        &mut self.cpu.regs
    }

    /// The task's FP/SSE/AVX state, read from its platform thread.
    pub fn fp_state(&mut self) -> Result<FpState, platform::PlatformError> {
        self.context.fp_state(&*self.aspace)
    }

    pub fn set_fp_state(&mut self, fp: &FpState) -> Result<(), platform::PlatformError> {
        self.context.set_fp_state(&*self.aspace, fp)
    }

    /// How a checkpoint or another thread stops this task.
    pub fn interrupt(&self) -> &Arc<TaskInterrupt> {
        &self.interrupt
    }

    pub fn signal_mask(&self) -> SigSet {
        self.signal_mask
    }

    /// Sets the blocked signals; SIGKILL and SIGSTOP are never blocked.
    pub fn set_signal_mask(&mut self, mask: SigSet) {
        let old = self.signal_mask;
        self.signal_mask = mask.without_unblockable();
        self.shared_blocked
            .store(self.signal_mask.0, std::sync::atomic::Ordering::Relaxed);
        // A process signal this thread was woken for and now blocks is
        // another thread's to take.
        let newly = SigSet(self.signal_mask.0 & !old.0);
        if newly.0 != 0 {
            self.tg.retarget_shared(newly);
        }
    }

    /// rt_sigtimedwait waits for `set` (empty: no longer): while it does,
    /// a process signal of `set` is this thread's to take although it
    /// blocks it, as Linux unblocks the set for the wait. When the wait
    /// ends, one that came meanwhile is another thread's again.
    pub fn set_waiting(&self, set: SigSet) {
        let old = SigSet(
            self.waiting
                .swap(set.0, std::sync::atomic::Ordering::Relaxed),
        );
        let newly = SigSet(old.0 & !set.0 & self.signal_mask.0);
        if newly.0 != 0 {
            self.tg.retarget_shared(newly);
        }
    }

    /// sigaltstack's (ss_sp, ss_flags, ss_size).
    pub fn alt_stack(&self) -> (u64, u32, u64) {
        self.alt_stack
    }

    pub fn set_alt_stack(&mut self, stack: (u64, u32, u64)) {
        self.alt_stack = stack;
    }

    /// set_tid_address: the word cleared and woken when the thread exits.
    pub fn set_clear_child_tid(&mut self, addr: u64) {
        self.clear_child_tid = addr;
    }

    /// set_robust_list's head and length.
    pub fn set_robust_list(&mut self, head: u64, len: u64) {
        self.robust_list = (head, len);
    }

    pub fn robust_list(&self) -> (u64, u64) {
        self.robust_list
    }

    /// CPU time spent by this thread.
    pub fn cpu_time(&self) -> Duration {
        self.cpu_time
    }

    /// How the task ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Ends the task with `status` at its next return to the loop.
    pub fn set_exit(&mut self, status: ExitStatus) {
        self.exit = Some(status);
    }

    /// An interrupted sleep to resume (restart_syscall): its deadline on
    /// its clock, and where it writes its remaining time.
    pub fn restart(&self) -> Option<RestartSleep> {
        self.restart_deadline.map(|deadline| RestartSleep {
            deadline,
            clock: self.restart_clock.unwrap_or(ClockId::Monotonic),
            rem: self.restart_rem,
        })
    }

    pub fn set_restart(&mut self, restart: Option<RestartSleep>) {
        self.restart_deadline = restart.map(|r| r.deadline);
        self.restart_clock = restart.map(|r| r.clock);
        self.restart_rem = restart.and_then(|r| r.rem);
    }

    pub fn mm(&self) -> MutexGuard<'_, MemoryManager> {
        lock(&self.mm)
    }

    /// Whether a task other than this one runs in this task's platform
    /// address space (a thread, or a process sharing it with CLONE_VM):
    /// then this task's platform thread must go on its own when it ends.
    pub(super) fn aspace_shared(&self) -> bool {
        // Held by this task and by its memory manager; any more is
        // another task's.
        Arc::strong_count(&self.aspace) > 2
    }

    /// The process's descriptor table: `fds().lock()` to use it.
    pub fn fds(&self) -> super::thread_group::FdsRef {
        self.tg.fds()
    }

    pub fn handlers(&self) -> MutexGuard<'_, SignalHandlers> {
        self.tg.handlers()
    }

    pub fn limits(&self) -> MutexGuard<'_, LimitSet> {
        self.tg.limits()
    }

    pub fn cwd(&self) -> Arc<Dentry> {
        self.tg.fs().lock().cwd.clone()
    }

    pub fn set_cwd(&self, cwd: Arc<Dentry>) {
        self.tg.fs().lock().cwd = cwd;
    }

    pub fn root(&self) -> Arc<Dentry> {
        self.tg.fs().lock().root.clone()
    }

    /// chroot(2): the process's root (and this thread's from now on).
    pub fn set_root(&self, root: Arc<Dentry>) {
        crate::vfs::resolve::note_root(&root);
        self.tg.fs().lock().root = root;
    }

    pub fn umask(&self) -> u32 {
        self.tg.fs().lock().umask
    }

    /// Sets the umask, returning the old one.
    pub fn set_umask(&self, umask: u32) -> u32 {
        std::mem::replace(&mut self.tg.fs().lock().umask, umask & 0o777)
    }

    /// The signals pending on this thread alone (thread-directed ones).
    pub fn pending(&self) -> MutexGuard<'_, Vec<SigInfo>> {
        lock(&self.shared_pending)
    }

    /// Whether a signal pending on this thread or on its process is one
    /// `f` looks for.
    pub fn any_pending(&self, f: impl Fn(&SigInfo) -> bool) -> bool {
        if self.pending().iter().any(&f) {
            return true;
        }
        lock(self.tg.shared_pending()).iter().any(f)
    }

    /// Every signal pending on this thread or its process, the thread's
    /// own first.
    pub fn all_pending(&self) -> Vec<SigInfo> {
        let mut all = self.pending().clone();
        all.extend(lock(self.tg.shared_pending()).iter().copied());
        all
    }

    /// Takes the first pending signal `f` picks from this thread's queue,
    /// else from its process's (Linux's dequeue_signal order).
    pub fn take_pending(&self, f: impl Fn(&SigInfo) -> bool) -> Option<SigInfo> {
        {
            let mut own = self.pending();
            if let Some(i) = own.iter().position(&f) {
                return Some(own.remove(i));
            }
        }
        let mut shared = lock(self.tg.shared_pending());
        let i = shared.iter().position(f)?;
        Some(shared.remove(i))
    }

    /// What a signalfd read or rt_sigtimedwait by this thread takes from.
    pub fn pending_signals(&self) -> crate::vfs::signalfd::PendingSignals {
        crate::vfs::signalfd::PendingSignals {
            own: self.shared_pending.clone(),
            process: self.tg.shared_pending().clone(),
        }
    }

    /// What the thread group knows of this task.
    pub fn member(&self) -> Arc<Member> {
        Arc::new(Member {
            interrupt: self.interrupt.clone(),
            pending: self.shared_pending.clone(),
            blocked: self.shared_blocked.clone(),
            waiting: self.waiting.clone(),
        })
    }

    /// The parent's pid in this pid namespace: the init task has none.
    pub fn ppid(&self) -> i32 {
        self.tg.links().parent
    }

    pub fn nofile_limit(&self) -> u64 {
        self.limits()
            .get(libc::RLIMIT_NOFILE)
            .map(|l| l.cur)
            .unwrap_or(1024)
    }
}

impl Task {
    /// A task of thread group `tg` (its first, or a new thread), in the
    /// state a fresh execve or clone leaves it: nothing pending, the default
    /// mask. Boot, clone and restore fill in the rest; the task joins its
    /// group when it starts running ([`Task::join`]).
    pub fn new(
        kernel: Arc<Kernel>,
        tid: i32,
        tg: Arc<ThreadGroup>,
        mm: super::thread_group::SharedMm,
        creds: Credentials,
        cpu: CpuState,
        context: Box<dyn Context>,
    ) -> Task {
        let interrupt = TaskInterrupt::new();
        interrupt.set_platform(context.interrupter());
        let aspace = lock(&mm).address_space_arc();
        Task {
            kernel,
            tid,
            tg,
            creds,
            cpu,
            context,
            mm,
            aspace,
            signal_mask: SigSet::default(),
            shared_pending: Arc::new(Mutex::new(Vec::new())),
            shared_blocked: Arc::default(),
            waiting: Arc::default(),
            alt_stack: (0, 0, 0),
            clear_child_tid: 0,
            robust_list: (0, 0),
            cpu_time: Duration::ZERO,
            usage: Default::default(),
            exit: None,
            interrupt,
            restart_deadline: None,
            restart_clock: None,
            restart_rem: None,
            saved_mask: None,
        }
    }

    /// Makes the task a member of its thread group and of the kernel's pid
    /// namespace, where signals, exit_group, procfs and checkpoint find it.
    pub fn join(&self) {
        self.join_attrs();
        self.tg.set_creds(&self.creds);
        self.tg.add(self.tid, self.member());
        self.kernel.pids.add_task(self.tid, &self.tg);
    }

    /// Like [`Task::join`] for the first task of a forked process, which
    /// may be refused (ENOMEM) once init has ended.
    pub fn join_forked(&self) -> Result<(), Errno> {
        self.join_attrs();
        self.tg.set_creds(&self.creds);
        self.tg.add(self.tid, self.member());
        self.kernel.pids.add_new_process(self.tid, &self.tg)
    }
}

/// A task's saved form: what Linux keeps per thread, with its registers and
/// full FP/SSE/AVX state. Its process is a reference (`tgid`); what the
/// process shares is in the thread group's record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub tid: i32,
    pub tgid: i32,
    pub creds: Credentials,
    pub regs: Registers,
    pub fp: FpState,
    pub signal_mask: SigSet,
    /// Signals generated but not yet delivered (blocked ones).
    pub pending: Vec<SigInfo>,
    pub alt_stack: (u64, u32, u64),
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    pub cpu_time_ns: u64,
    /// An interrupted sleep's deadline, on its clock (restart_syscall).
    pub restart: Option<(i64, ClockId)>,
    /// Where that sleep writes its remaining time (its `rem`), if anywhere.
    pub restart_rem: Option<u64>,
}
statefile::versioned!(
    TaskRecord,
    "kernel.Task",
    3,
    [Credentials, Registers, FpState, SigSet, SigInfo, ClockId]
);

/// Version 2 of the task's record, before capabilities: its credentials
/// (kernel.Credentials v1) load with uid 0's full capabilities.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskRecordV2 {
    pub tid: i32,
    pub tgid: i32,
    pub creds: CredentialsV1,
    pub regs: Registers,
    pub fp: FpState,
    pub signal_mask: SigSet,
    pub pending: Vec<SigInfo>,
    pub alt_stack: (u64, u32, u64),
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    pub cpu_time_ns: u64,
    pub restart: Option<(i64, ClockId)>,
    pub restart_rem: Option<u64>,
}
statefile::versioned!(
    TaskRecordV2,
    "kernel.Task",
    2,
    [CredentialsV1, Registers, FpState, SigSet, SigInfo, ClockId]
);

impl From<TaskRecordV2> for TaskRecord {
    fn from(v2: TaskRecordV2) -> TaskRecord {
        TaskRecord {
            tid: v2.tid,
            tgid: v2.tgid,
            creds: Credentials::from(v2.creds),
            regs: v2.regs,
            fp: v2.fp,
            signal_mask: v2.signal_mask,
            pending: v2.pending,
            alt_stack: v2.alt_stack,
            clear_child_tid: v2.clear_child_tid,
            robust_list: v2.robust_list,
            cpu_time_ns: v2.cpu_time_ns,
            restart: v2.restart,
            restart_rem: v2.restart_rem,
        }
    }
}

impl statefile::Savable for TaskRecord {
    const TYPE_NAME: &'static str = "kernel.Task";
    const VERSION: u32 = 3;
    const MIN_VERSION: u32 = 2;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    /// v2 is decoded in its own layout (credentials without capabilities)
    /// and migrated.
    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 2 {
            statefile::check_saved_versions::<TaskRecordV2>(dec.types())?;
            return dec.serde::<TaskRecordV2>().map(TaskRecord::from);
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

impl Task {
    /// The task's record. Runs on the task's own host thread (only it can
    /// read its FP state).
    pub fn save_record(&mut self) -> Result<TaskRecord, platform::PlatformError> {
        let fp = self.context.fp_state(&*self.aspace)?;
        Ok(TaskRecord {
            tid: self.tid,
            tgid: self.tgid(),
            creds: self.creds.clone(),
            regs: self.cpu.regs,
            fp,
            signal_mask: self.signal_mask,
            pending: self.pending().clone(),
            alt_stack: self.alt_stack,
            clear_child_tid: self.clear_child_tid,
            robust_list: self.robust_list,
            cpu_time_ns: u64::try_from(self.cpu_time.as_nanos()).unwrap_or(u64::MAX),
            restart: self.restart_deadline.zip(self.restart_clock),
            restart_rem: self.restart_rem,
        })
    }

    /// Puts a validated record's per-thread state (all but the registers,
    /// which the caller loaded into `cpu`) into a new task.
    pub fn load_record(&mut self, r: &TaskRecord) {
        self.set_signal_mask(r.signal_mask);
        *self.pending() = r.pending.clone();
        self.alt_stack = r.alt_stack;
        self.clear_child_tid = r.clear_child_tid;
        self.robust_list = r.robust_list;
        self.cpu_time = Duration::from_nanos(r.cpu_time_ns);
        // Until its kernel.TaskAttrs record (if any) says how it splits.
        self.usage.set(super::attrs::CpuUsage {
            user_ns: r.cpu_time_ns,
            sys_ns: 0,
        });
        self.restart_deadline = r.restart.map(|(d, _)| d);
        self.restart_clock = r.restart.map(|(_, c)| c);
        self.restart_rem = r.restart_rem;
    }
}
