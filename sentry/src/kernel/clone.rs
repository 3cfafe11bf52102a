//! clone for threads: a new task in the caller's thread group, sharing its
//! address space, descriptors, signal dispositions and limits, running on a
//! host thread of its own with a stub thread of its own.
//!
//! A new process (fork: clone without CLONE_VM) is not supported yet.

use platform::{Context, CpuState, FpState};

use super::run::Interruption;
use super::task::{ExitStatus, Task};
use crate::arch::UserRegs;
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
        let tid = self.kernel.allocate_tid()?;
        let started = self.start_thread(tid, args);
        if started.is_err() {
            // The tid was reserved for a task that never joined.
            self.kernel.pids.remove_task(tid);
            self.tg.attrs().thread_exited(tid);
        }
        started.map(|()| tid)
    }

    fn start_thread(&mut self, tid: i32, args: CloneArgs) -> Result<(), Errno> {
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
        let context = self.aspace.new_thread().map_err(|e| {
            tracing::warn!(error = %e, "cannot create a platform thread");
            Errno::EAGAIN
        })?;

        let mut regs = self.cpu.regs;
        regs.set_syscall_return(0);
        if args.stack != 0 {
            regs.set_stack_pointer(args.stack);
        }
        if args.flags & libc::CLONE_SETTLS as u64 != 0 {
            regs.set_tls(args.tls);
        }
        let mut child = self.sibling(tid, CpuState { regs }, context);
        child.clear_child_tid = if args.flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 {
            args.child_tid
        } else {
            0
        };
        spawn_thread(child, fp).map_err(|e| {
            tracing::warn!(error = %e, "cannot start a host thread");
            Errno::EAGAIN
        })
    }
}

impl Task {
    /// A new thread of this task's group with `cpu`: shares the address
    /// space, descriptors, dispositions and limits; inherits the signal mask,
    /// credentials and working directory. `context` comes from the address
    /// space's `new_thread`; it runs on the new task's own host thread
    /// ([`spawn_thread`]).
    pub fn sibling(&self, tid: i32, cpu: CpuState, context: Box<dyn Context>) -> Task {
        let mut task = Task::new(
            self.kernel.clone(),
            tid,
            self.tg.clone(),
            self.creds.clone(),
            cpu,
            context,
        );
        task.signal_mask = self.signal_mask;
        self.give_attrs_to(&task);
        task
    }
}

impl Task {
    /// Starts a saved thread of this task's process (restore) on a platform
    /// thread and a host thread of its own.
    pub fn spawn_saved_thread(&self, rec: &super::task::TaskRecord) -> Result<(), String> {
        let context = self.aspace.new_thread().map_err(|e| e.to_string())?;
        let mut sibling = self.sibling(rec.tid, CpuState { regs: rec.regs }, context);
        sibling.creds = rec.creds.clone();
        sibling.load_record(rec);
        spawn_thread(sibling, rec.fp.clone()).map_err(|e| e.to_string())
    }
}

/// Joins `task` to its group and runs it on a host thread of its own, which
/// loads `fp`.
pub fn spawn_thread(task: Task, fp: FpState) -> std::io::Result<()> {
    let (tg, tid, kernel) = (task.tg.clone(), task.tid, task.kernel.clone());
    task.join();
    let seed = Seed { task, fp };
    let spawned = std::thread::Builder::new()
        .name(format!("cryo-task-{tid}"))
        .spawn(move || thread_main(seed));
    if let Err(e) = spawned {
        tg.remove(tid, ExitStatus::Signaled(libc::SIGKILL));
        kernel.pids.remove_task(tid);
        return Err(e);
    }
    Ok(())
}

/// The host thread of a new application thread: load the FP state the
/// parent had (the context's first request, which makes this host thread
/// the one that runs the new platform thread), run.
fn thread_main(seed: Seed) {
    let Seed { mut task, fp } = seed;
    let setup = task.context.set_fp_state(&*task.aspace, &fp);
    task.interrupt.set_platform(task.context.interrupter());
    if let Err(e) = setup {
        tracing::warn!(tid = task.tid, error = %e, "new thread cannot start: the process is killed");
        task.tg
            .begin_exit(ExitStatus::Signaled(libc::SIGKILL), task.tid);
        task.leave(ExitStatus::Signaled(libc::SIGKILL));
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
        task.leave(ExitStatus::Signaled(libc::SIGKILL));
    }
}
