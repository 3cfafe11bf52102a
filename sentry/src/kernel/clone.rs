//! clone for threads: a new task in the caller's thread group, sharing its
//! address space, descriptors, signal dispositions and limits, running on a
//! host thread of its own with a stub thread of its own.
//!
//! A new process (fork: clone without CLONE_VM) is not supported yet.

use platform::{CpuState, FpState, ThreadToken};

use super::interrupt::TaskInterrupt;
use super::run::Interruption;
use super::task::{ExitStatus, Task};
use crate::errno::Errno;

/// What clone and clone3 ask for.
#[derive(Clone, Copy, Debug)]
pub struct CloneArgs {
    pub flags: u64,
    /// The new thread's stack pointer (0: the caller's).
    pub stack: u64,
    pub parent_tid: u64,
    pub child_tid: u64,
    pub tls: u64,
}

const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD) as u64;
const OPTIONAL_FLAGS: u64 = (libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID
    | libc::CLONE_CHILD_SETTID
    | libc::CLONE_DETACHED) as u64;

/// Everything a new thread starts from, handed to its host thread.
struct Seed {
    task: Task,
    token: ThreadToken,
    fp: FpState,
}

impl Task {
    /// clone(CLONE_THREAD …): starts a new thread and returns its tid.
    pub fn clone_thread(&mut self, args: CloneArgs) -> Result<i32, Errno> {
        if args.flags & THREAD_FLAGS != THREAD_FLAGS {
            tracing::debug!(
                flags = format_args!("{:#x}", args.flags),
                "clone of a new process (fork) is not supported yet"
            );
            return Err(Errno::ENOSYS);
        }
        if args.flags & !(THREAD_FLAGS | OPTIONAL_FLAGS | 0xff) != 0 {
            tracing::debug!(
                flags = format_args!("{:#x}", args.flags),
                "clone flags not supported"
            );
            return Err(Errno::EINVAL);
        }
        let kernel = self.kernel.clone();
        let tid = kernel.allocate_tid();
        if args.flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
            self.mm().write_u32(args.parent_tid, tid as u32)?;
        }
        if args.flags & libc::CLONE_CHILD_SETTID as u64 != 0 {
            self.mm().write_u32(args.child_tid, tid as u32)?;
        }
        let fp = self
            .context
            .fp_state(&*self.aspace)
            .map_err(|_| Errno::EAGAIN)?;
        let token = self.aspace.new_thread().map_err(|e| {
            tracing::warn!(error = %e, "cannot create a stub thread");
            Errno::EAGAIN
        })?;

        let mut regs = self.cpu.regs;
        regs.rax = 0;
        if args.stack != 0 {
            regs.rsp = args.stack;
        }
        if args.flags & libc::CLONE_SETTLS as u64 != 0 {
            regs.fs_base = args.tls;
        }
        let mut child = self
            .sibling(tid, CpuState { regs })
            .map_err(|_| Errno::EAGAIN)?;
        child.clear_child_tid = if args.flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 {
            args.child_tid
        } else {
            0
        };
        spawn_thread(child, token, fp).map_err(|e| {
            tracing::warn!(error = %e, "cannot start a host thread");
            Errno::EAGAIN
        })?;
        Ok(tid)
    }
}

impl Task {
    /// A new thread of this task's group with `cpu`: shares the address
    /// space, descriptors, dispositions and limits; inherits the signal mask,
    /// credentials and working directory. Its context is bound to a stub
    /// thread on its own host thread ([`spawn_thread`]).
    pub fn sibling(&self, tid: i32, cpu: CpuState) -> Result<Task, platform::PlatformError> {
        let context = self.kernel.platform.new_context()?;
        Ok(Task {
            kernel: self.kernel.clone(),
            tid,
            tg: self.tg.clone(),
            creds: self.creds.clone(),
            cpu,
            context,
            aspace: self.aspace.clone(),
            shared_mm: self.shared_mm.clone(),
            shared_fds: self.shared_fds.clone(),
            shared_handlers: self.shared_handlers.clone(),
            shared_limits: self.shared_limits.clone(),
            shared_fs: self.shared_fs.clone(),
            signal_mask: self.signal_mask,
            shared_pending: Default::default(),
            alt_stack: (0, 0, 0),
            clear_child_tid: 0,
            robust_list: (0, 0),
            exe: self.exe.clone(),
            argv: self.argv.clone(),
            cpu_time: Default::default(),
            exit: None,
            interrupt: TaskInterrupt::new(),
            restart_deadline: None,
            restart_clock: None,
            restart_rem: None,
        })
    }
}

/// Joins `task` to its group and runs it on a host thread of its own, which
/// adopts the stub thread `token` and loads `fp`.
pub fn spawn_thread(task: Task, token: ThreadToken, fp: FpState) -> std::io::Result<()> {
    let (tg, tid) = (task.tg.clone(), task.tid);
    tg.add(tid, task.member());
    let seed = Seed { task, token, fp };
    let spawned = std::thread::Builder::new()
        .name(format!("cryo-task-{tid}"))
        .spawn(move || thread_main(seed));
    if let Err(e) = spawned {
        tg.remove(tid, ExitStatus::Signaled(libc::SIGKILL));
        return Err(e);
    }
    Ok(())
}

/// The host thread of a new application thread: adopt the stub thread, load
/// the FP state the parent had, run.
fn thread_main(seed: Seed) {
    let Seed {
        mut task,
        token,
        fp,
    } = seed;
    let setup = (|| {
        task.aspace.adopt_thread(token)?;
        task.context.set_fp_state(&*task.aspace, &fp)?;
        Ok::<_, platform::PlatformError>(())
    })();
    task.interrupt.set_platform(task.context.interrupter());
    if let Err(e) = setup {
        tracing::warn!(tid = task.tid, error = %e, "new thread cannot start: the process is killed");
        task.tg
            .begin_exit(ExitStatus::Signaled(libc::SIGKILL), task.tid);
        task.tg
            .remove(task.tid, ExitStatus::Signaled(libc::SIGKILL));
        return;
    }
    let mut only_exit = |t: &mut Task| {
        t.interrupt.clear();
        Interruption::Continue
    };
    if let Err(e) = task.run(&mut only_exit) {
        tracing::warn!(tid = task.tid, error = %e, "thread failed: the process is killed");
        task.tg
            .begin_exit(ExitStatus::Signaled(libc::SIGKILL), task.tid);
        task.tg
            .remove(task.tid, ExitStatus::Signaled(libc::SIGKILL));
    }
}
