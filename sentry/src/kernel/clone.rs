//! clone, fork and vfork (gVisor's task_clone.go): a new thread of the
//! caller's process, or a new process with its own copy of what the caller
//! shares (or, with CLONE_VM / CLONE_FILES / CLONE_SIGHAND / CLONE_FS, the
//! same ones). Every task runs on a host thread of its own; a new process
//! with its own address space gets it (a stub process) on that host thread,
//! which the platform requires of its first user.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::{Context, CpuState, FpState};

use super::exit::VforkDone;
use super::run::Interruption;
use super::task::{ExitStatus, Task};
use super::thread_group::{ProcessParts, SharedMm, ThreadGroup};
use crate::arch::UserRegs;
use crate::errno::Errno;
use crate::mm::{ForkedMm, MemoryManager};

/// What clone and clone3 ask for.
#[derive(Clone, Copy, Debug)]
pub struct CloneArgs {
    pub flags: u64,
    /// The new thread's stack pointer (0: the caller's).
    pub stack: u64,
    pub parent_tid: u64,
    pub child_tid: u64,
    pub tls: u64,
    /// Where CLONE_PIDFD stores the new pidfd (clone: parent_tid; clone3:
    /// its own field).
    pub pidfd: u64,
}

fn has(flags: u64, f: libc::c_int) -> bool {
    flags & f as u64 != 0
}

/// Every flag cryo knows; others are EINVAL.
const KNOWN_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_PIDFD
    | libc::CLONE_PTRACE
    | libc::CLONE_VFORK
    | libc::CLONE_PARENT
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID
    | libc::CLONE_DETACHED
    | libc::CLONE_UNTRACED
    | libc::CLONE_CHILD_SETTID
    | libc::CLONE_NEWNS
    | 0xff) as u64;

/// Namespace flags: of these cryo makes only mount namespaces
/// (CLONE_NEWNS) inside the sandbox.
pub(super) const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// How long a fork waits for its child's host thread to be ready.
const CHILD_START: Duration = Duration::from_secs(30);

/// Everything a new thread starts from, handed to its host thread.
struct Seed {
    task: Task,
    fp: FpState,
}

/// How a new process gets its address space.
enum ChildMm {
    /// Its own copy, mapped into a stub the child's host thread creates.
    Forked(ForkedMm),
    /// The caller's (CLONE_VM), with a platform thread already made for it.
    Shared(SharedMm, Box<dyn Context>),
}

/// Everything a new process starts from, handed to its host thread.
struct ProcessSeed {
    kernel: Arc<super::Kernel>,
    tid: i32,
    mm: ChildMm,
    parts: Box<dyn FnOnce(SharedMm) -> ProcessParts + Send>,
    template: TaskTemplate,
    fp: FpState,
    /// CLONE_CHILD_SETTID: where the child writes its tid, in its memory.
    child_settid: Option<u64>,
    vfork: Option<Arc<VforkDone>>,
    /// The parent, whose prctl/priority attributes the child inherits.
    parent: Arc<ThreadGroup>,
    parent_tid: i32,
    ready: mpsc::SyncSender<Result<(), Errno>>,
}

/// The per-thread state a child inherits.
struct TaskTemplate {
    creds: super::creds::Credentials,
    regs: platform::Registers,
    signal_mask: super::signal::SigSet,
    alt_stack: (u64, u32, u64),
    clear_child_tid: u64,
}

impl Task {
    /// clone(2) and clone3: a new thread or process; its tid.
    pub fn clone_task(&mut self, args: CloneArgs) -> Result<i32, Errno> {
        let f = args.flags;
        // Linux's copy_process: a new mount namespace cannot share an fs
        // context; then the namespaces cryo makes none of are EPERM, and a
        // mount namespace takes CAP_SYS_ADMIN.
        if has(f, libc::CLONE_NEWNS) && has(f, libc::CLONE_FS) {
            return Err(Errno::EINVAL);
        }
        if f & NAMESPACE_FLAGS & !(libc::CLONE_NEWNS as u64) != 0 {
            tracing::debug!(flags = format_args!("{f:#x}"), "clone of new namespaces");
            return Err(Errno::EPERM);
        }
        if has(f, libc::CLONE_NEWNS) && !self.creds().capable(super::creds::CAP_SYS_ADMIN) {
            return Err(Errno::EPERM);
        }
        if f & !KNOWN_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        // Linux's rules: a thread shares the signal handlers, which need
        // the address space; a new process cannot share a parent's thread
        // group with CLONE_PARENT from init.
        if has(f, libc::CLONE_THREAD) && !has(f, libc::CLONE_SIGHAND) {
            return Err(Errno::EINVAL);
        }
        if has(f, libc::CLONE_SIGHAND) && !has(f, libc::CLONE_VM) {
            return Err(Errno::EINVAL);
        }
        if has(f, libc::CLONE_PIDFD) && (has(f, libc::CLONE_THREAD) || has(f, libc::CLONE_DETACHED))
        {
            return Err(Errno::EINVAL);
        }
        if has(f, libc::CLONE_SETTLS) && args.tls >= self.mm().layout().max_user_addr {
            return Err(Errno::EPERM);
        }
        if has(f, libc::CLONE_PARENT) && self.tgid() == 1 {
            return Err(Errno::EINVAL);
        }
        if self.kernel.pids.task_count() >= self.kernel.max_tasks {
            return Err(Errno::EAGAIN);
        }
        if has(f, libc::CLONE_THREAD) {
            if !has(f, libc::CLONE_FILES) || !has(f, libc::CLONE_FS) {
                // A thread with descriptors or cwd of its own: cryo keeps
                // them per process.
                tracing::debug!(
                    flags = format_args!("{f:#x}"),
                    "thread without CLONE_FILES|CLONE_FS"
                );
                return Err(Errno::EINVAL);
            }
            return self.clone_thread(args);
        }
        self.check_nproc()?;
        let tid = self.clone_process(args)?;
        if has(f, libc::CLONE_PIDFD) {
            self.store_pidfd(tid, args.pidfd)?;
        }
        Ok(tid)
    }

    /// CLONE_PIDFD: a pidfd of the new process (close-on-exec, as Linux's
    /// are) installed in the caller's table, its number stored at `at`.
    fn store_pidfd(&mut self, tid: i32, at: u64) -> Result<(), Errno> {
        let child = self.kernel.process(tid).ok_or(Errno::ESRCH)?;
        let file = super::pidfd::PidFd::open(&child, false);
        let limit = self.nofile_limit();
        let fd = self.fds().lock().insert(file, true, limit)?;
        if let Err(e) = self.mm().write_u32(at, fd as u32) {
            let _ = self.fds().lock().remove(fd);
            return Err(e);
        }
        Ok(())
    }

    /// RLIMIT_NPROC: the processes of the caller's real uid. The root user
    /// (real uid 0, the initial user's count) and holders of
    /// CAP_SYS_ADMIN or CAP_SYS_RESOURCE are exempt, as in Linux's
    /// copy_process; the sandbox-wide task limit still holds for them.
    fn check_nproc(&self) -> Result<(), Errno> {
        use super::creds::{CAP_SYS_ADMIN, CAP_SYS_RESOURCE};
        if self.creds.uid == 0
            || self.creds.capable(CAP_SYS_ADMIN)
            || self.creds.capable(CAP_SYS_RESOURCE)
        {
            return Ok(());
        }
        let limit = self
            .limits()
            .get(libc::RLIMIT_NPROC)
            .map(|l| l.cur)
            .unwrap_or(u64::MAX);
        if limit == u64::MAX {
            return Ok(());
        }
        let uid = self.creds.uid;
        let count = self
            .kernel
            .pids
            .thread_groups()
            .iter()
            .filter(|tg| !tg.is_zombie())
            .filter(|tg| tg.leader_uid() == uid)
            .count() as u64;
        if count >= limit {
            return Err(Errno::EAGAIN);
        }
        Ok(())
    }

    /// clone(CLONE_THREAD …): starts a new thread and returns its tid.
    fn clone_thread(&mut self, args: CloneArgs) -> Result<i32, Errno> {
        let kernel = self.kernel.clone();
        let _gate = kernel.fork_gate()?;
        let tid = kernel.allocate_tid()?;
        let started = self.start_thread(tid, args);
        if started.is_err() {
            // The tid was reserved for a task that never joined.
            self.kernel.pids.remove_task(tid);
            self.tg.attrs().thread_exited(tid);
        }
        started.map(|()| tid)
    }

    fn start_thread(&mut self, tid: i32, args: CloneArgs) -> Result<(), Errno> {
        if has(args.flags, libc::CLONE_PARENT_SETTID) {
            self.mm().write_u32(args.parent_tid, tid as u32)?;
        }
        if has(args.flags, libc::CLONE_CHILD_SETTID) {
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
        let regs = self.child_regs(&args);
        let mut child = self.sibling(tid, CpuState { regs }, context);
        child.clear_child_tid = if has(args.flags, libc::CLONE_CHILD_CLEARTID) {
            args.child_tid
        } else {
            0
        };
        spawn_thread(child, fp).map_err(|e| {
            tracing::warn!(error = %e, "cannot start a host thread");
            Errno::EAGAIN
        })
    }

    /// The registers a new task starts with: the caller's, returning 0
    /// from the clone, on its new stack and TLS if given.
    fn child_regs(&self, args: &CloneArgs) -> platform::Registers {
        let mut regs = self.cpu.regs;
        regs.set_syscall_return(0);
        if args.stack != 0 {
            regs.set_stack_pointer(args.stack);
        }
        if has(args.flags, libc::CLONE_SETTLS) {
            regs.set_tls(args.tls);
        }
        regs
    }

    /// fork, vfork and clone without CLONE_THREAD: a new process.
    fn clone_process(&mut self, args: CloneArgs) -> Result<i32, Errno> {
        let kernel = self.kernel.clone();
        let gate = kernel.fork_gate()?;
        let tid = kernel.allocate_tid()?;
        let r = self.start_process(tid, args);
        drop(gate);
        match r {
            Ok(vfork) => {
                if let Some(v) = vfork {
                    // The parent sleeps until the child execs or exits
                    // (the child borrows its memory until then).
                    while !v.wait(Duration::from_millis(50)) {
                        if self.tg.exit_status().is_some() {
                            break;
                        }
                    }
                }
                Ok(tid)
            }
            Err(e) => {
                kernel.pids.remove_task(tid);
                Err(e)
            }
        }
    }

    /// Creates process `tid` and waits until it is a member of the pid
    /// namespace; its vfork handle when the caller must wait for it.
    fn start_process(
        &mut self,
        tid: i32,
        args: CloneArgs,
    ) -> Result<Option<Arc<VforkDone>>, Errno> {
        let f = args.flags;
        let fp = self
            .context
            .fp_state(&*self.aspace)
            .map_err(|_| Errno::EAGAIN)?;
        if has(f, libc::CLONE_PARENT_SETTID) {
            self.mm().write_u32(args.parent_tid, tid as u32)?;
        }
        let mm = if has(f, libc::CLONE_VM) {
            let context = self.aspace.new_thread().map_err(|e| {
                tracing::warn!(error = %e, "cannot create a platform thread");
                Errno::EAGAIN
            })?;
            ChildMm::Shared(self.mm.clone(), context)
        } else {
            ChildMm::Forked(self.mm().fork()?)
        };
        let links = self.tg.links();
        let parent = if has(f, libc::CLONE_PARENT) {
            links.parent
        } else {
            self.tgid()
        };
        let fds = if has(f, libc::CLONE_FILES) {
            self.tg.fds_ref().clone()
        } else {
            Arc::new(Mutex::new(self.fds().lock().clone()))
        };
        let handlers = if has(f, libc::CLONE_SIGHAND) {
            self.tg.handlers_ref().clone()
        } else {
            Arc::new(Mutex::new(self.handlers().clone()))
        };
        let fs = if has(f, libc::CLONE_FS) {
            self.tg.fs_ref()
        } else {
            let mut own = self.tg.fs().lock().clone();
            if has(f, libc::CLONE_NEWNS) {
                own.enter_copy_of_ns(&self.kernel.vfs);
            }
            Arc::new(Mutex::new(own))
        };
        let limits = self.limits().clone();
        let image = self.tg.image().clone();
        // A sibling made with CLONE_PARENT signals the shared parent the
        // way the caller would: Linux gives it the caller's exit signal,
        // whatever the flags asked for.
        let exit_signal = if has(f, libc::CLONE_PARENT) {
            self.tg.exit_signal()
        } else {
            (f & 0xff) as i32
        };
        let parts = move |mm: SharedMm| ProcessParts {
            mm: Some(mm),
            fds,
            handlers,
            limits,
            fs,
            image,
            links: super::thread_group::ProcessLinks {
                parent,
                pgid: links.pgid,
                sid: links.sid,
            },
            exit_signal,
        };
        let vfork = has(f, libc::CLONE_VFORK).then(VforkDone::new);
        // A child sharing the memory (vfork) runs on the caller's signal
        // stack only if it asks: Linux clears it for CLONE_VM without VFORK.
        let alt_stack = if has(f, libc::CLONE_VM) && !has(f, libc::CLONE_VFORK) {
            (0, 2, 0) // SS_DISABLE
        } else {
            self.alt_stack
        };
        let (ready, started) = mpsc::sync_channel(1);
        let seed = ProcessSeed {
            kernel: self.kernel.clone(),
            tid,
            mm,
            parts: Box::new(parts),
            template: TaskTemplate {
                creds: self.creds.clone(),
                regs: self.child_regs(&args),
                signal_mask: self.signal_mask(),
                alt_stack,
                clear_child_tid: if has(f, libc::CLONE_CHILD_CLEARTID) {
                    args.child_tid
                } else {
                    0
                },
            },
            fp,
            child_settid: has(f, libc::CLONE_CHILD_SETTID).then_some(args.child_tid),
            vfork: vfork.clone(),
            parent: self.tg.clone(),
            parent_tid: self.tid,
            ready,
        };
        std::thread::Builder::new()
            .name(format!("cryo-task-{tid}"))
            .spawn(move || process_main(seed))
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot start a host thread");
                Errno::EAGAIN
            })?;
        match started.recv_timeout(CHILD_START) {
            Ok(Ok(())) => Ok(vfork),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                tracing::warn!(tid, "new process did not start");
                Err(Errno::EAGAIN)
            }
        }
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
            self.mm.clone(),
            self.creds.clone(),
            cpu,
            context,
        );
        task.set_signal_mask(self.signal_mask());
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
        if tg.remove(tid, ExitStatus::Signaled(libc::SIGKILL)) {
            kernel.process_exited(&tg);
        }
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
        task.die(ExitStatus::Signaled(libc::SIGKILL));
        return;
    }
    run_child(task);
}

/// Runs a restored task on the calling host thread, the one that created
/// its address space.
pub(crate) fn run_restored(task: Task, fp: FpState) {
    thread_main(Seed { task, fp });
}

/// Runs a task that is not the sandbox's init task: interrupts only make
/// it look at signals and its process's state.
fn run_child(mut task: Task) {
    if let Err(e) = task.run(&mut |_| Interruption::Continue) {
        tracing::warn!(tid = task.tid, error = %e, "thread failed: the process is killed");
        task.die(ExitStatus::Signaled(libc::SIGKILL));
    }
}

/// The host thread of a new process: its address space (a new stub for
/// a fork, a platform thread of the parent's for CLONE_VM), its thread
/// group and first task; then it tells the parent and runs.
fn process_main(seed: ProcessSeed) {
    let ProcessSeed {
        kernel,
        tid,
        mm,
        parts,
        template,
        fp,
        child_settid,
        vfork,
        parent,
        parent_tid,
        ready,
    } = seed;
    let built = (|| -> Result<(SharedMm, Box<dyn Context>), Errno> {
        match mm {
            ChildMm::Shared(mm, context) => Ok((mm, context)),
            ChildMm::Forked(forked) => {
                let aspace = kernel.platform.new_address_space().map_err(|e| {
                    tracing::warn!(error = %e, "cannot create the child's address space");
                    Errno::EAGAIN
                })?;
                let mm = MemoryManager::from_fork(forked, aspace)?;
                let context = kernel.platform.new_context().map_err(|_| Errno::EAGAIN)?;
                Ok((Arc::new(Mutex::new(mm)), context))
            }
        }
    })();
    let (mm, context) = match built {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let tg = ThreadGroup::new(tid, parts(mm.clone()));
    tg.init_life(template.creds.uid, vfork);
    let mut task = Task::new(
        kernel.clone(),
        tid,
        tg,
        mm,
        template.creds,
        CpuState {
            regs: template.regs,
        },
        context,
    );
    task.set_signal_mask(template.signal_mask);
    task.alt_stack = template.alt_stack;
    task.clear_child_tid = template.clear_child_tid;
    let setup = task
        .context
        .set_fp_state(&*task.aspace, &fp)
        .map_err(|e| {
            tracing::warn!(error = %e, "new process cannot load its FP state");
            Errno::EAGAIN
        })
        .and_then(|()| match child_settid {
            Some(addr) => task.mm().write_u32(addr, tid as u32),
            None => Ok(()),
        });
    task.interrupt.set_platform(task.context.interrupter());
    let now = task.kernel.clocks.uptime();
    task.tg.attrs().inherit_from(parent.attrs(), now);
    let attrs = parent.attrs().attrs_for_new_thread(Some(parent_tid));
    task.tg.attrs().add_thread(tid, &task.usage, attrs);
    if let Err(e) = setup {
        let _ = ready.send(Err(e));
        if task.aspace_shared() {
            let _ = task.aspace.exit_thread();
        }
        return;
    }
    if let Err(e) = task.join_forked() {
        // The sandbox is ending: this child never existed.
        let _ = ready.send(Err(e));
        if task.aspace_shared() {
            let _ = task.aspace.exit_thread();
        }
        return;
    }
    kernel.proc_log().started(
        tid,
        task.tg.links().parent,
        kernel.clocks.monotonic(),
        super::proc_log::Start::Fork {
            from: parent.tgid(),
        },
    );
    if ready.send(Ok(())).is_err() {
        // The parent gave up waiting: this child never existed for it.
        task.die(ExitStatus::Signaled(libc::SIGKILL));
        return;
    }
    run_child(task);
}

impl Task {
    /// Ends this task and, with it, its process (a thread that cannot go
    /// on takes the process down, as a fatal signal would).
    fn die(&mut self, status: ExitStatus) {
        self.tg.begin_exit(status, self.tid);
        self.exit_thread(status);
    }
}
