//! A thread group (a process): what its threads share, its tasks and how it
//! ends (gVisor's kernel.ThreadGroup).
//!
//! The group owns what a process shares: the address space, the descriptor
//! table, the signal dispositions, the limits, the fs context (root, cwd,
//! umask), the program image's name and arguments, and its place among
//! processes (parent, process group, session). The address space, the
//! descriptor table, the dispositions and the fs context sit behind their
//! own reference because Linux lets processes share them too (clone with
//! CLONE_VM, CLONE_FILES, CLONE_SIGHAND or CLONE_FS but not CLONE_THREAD),
//! and a checkpoint saves each once, by id, however many groups hold it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fd_table::FdTable;
use super::interrupt::TaskInterrupt;
use super::itimer::{ITimers, ITimersRecord};
use super::limits::LimitSet;
use super::signal::{SigInfo, SignalHandlers};
use super::task::{ExitStatus, FsContext, TaskRecord};
use crate::mm::MemoryManager;
use crate::vfs::OpenFile;

/// Locks a mutex whose holder panicking leaves nothing half-done that later
/// users could trip on (each critical section is a single update).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The descriptor table a process uses (shared with CLONE_FILES).
pub type SharedFdTable = Arc<Mutex<FdTable<Arc<OpenFile>>>>;

/// What CLONE_FS shares: root, working directory and umask.
pub type SharedFsContext = Arc<Mutex<FsContext>>;

/// A part a process may share with others and stop sharing (its
/// descriptor table, its fs context) as it is now: a reference held while
/// it is used, so that replacing the group's (unshare, close_range's
/// CLOSE_RANGE_UNSHARE, exec) never pulls it from under a user.
pub struct Current<T>(Arc<Mutex<T>>);

impl<T> Current<T> {
    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.0)
    }
}

/// The descriptor table as it is now: `fds().lock()` to use it.
pub type FdsRef = Current<FdTable<Arc<OpenFile>>>;

/// The program a process runs, as /proc/<pid>/{exe,cmdline} show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessImage {
    /// The executable's path in the container.
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
}

/// Where a process stands among processes: its parent (0 for the init
/// process and for a process whose parent is outside the namespace), its
/// process group and its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLinks {
    pub parent: i32,
    pub pgid: i32,
    pub sid: i32,
}
statefile::versioned!(ProcessLinks, "kernel.ProcessLinks", 1);

impl ProcessLinks {
    /// A process that leads its own session and group (the init process).
    pub fn leader(tgid: i32) -> ProcessLinks {
        ProcessLinks {
            parent: 0,
            pgid: tgid,
            sid: tgid,
        }
    }
}

/// What a new process starts with.
pub struct ProcessParts {
    /// None for a zombie (restore).
    pub mm: Option<SharedMm>,
    pub fds: SharedFdTable,
    pub handlers: Arc<Mutex<SignalHandlers>>,
    pub limits: LimitSet,
    pub fs: SharedFsContext,
    pub image: ProcessImage,
    pub links: ProcessLinks,
    /// The signal its parent gets when it ends (clone's CSIGNAL bits:
    /// SIGCHLD for fork, 0 for none).
    pub exit_signal: i32,
}

/// The signals whose default action stops the process.
pub const TG_STOP_SIGNALS: &[i32] = &[libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// An address space, shared by the processes that use it (CLONE_VM).
pub type SharedMm = Arc<Mutex<MemoryManager>>;

/// How threads parked for a checkpoint go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Continue,
    /// The sandbox ends after the checkpoint.
    Exit,
}

/// A stop of every thread but one (the checkpointing thread): each parked
/// thread leaves its record here, saved on its own host thread (only it can
/// read its FP state through ptrace).
#[derive(Default)]
struct Stop {
    generation: u64,
    parked: BTreeMap<i32, Result<TaskRecord, String>>,
    released: u64,
    how: Option<Release>,
}

/// What the group knows of one member: how to stop it and where its
/// thread-directed signals go.
pub struct Member {
    pub interrupt: Arc<TaskInterrupt>,
    pub pending: Arc<Mutex<Vec<SigInfo>>>,
    /// The thread's blocked signals (its task publishes them).
    pub blocked: Arc<std::sync::atomic::AtomicU64>,
    /// The signals it waits for in rt_sigtimedwait (Linux unblocks them
    /// for the wait, keeping the old mask in real_blocked).
    pub waiting: Arc<std::sync::atomic::AtomicU64>,
}

impl Member {
    /// Whether it blocks `signo`, a signal it waits for too: Linux's
    /// sig_ignored never drops one blocked or in real_blocked.
    pub fn blocks(&self, signo: i32) -> bool {
        let mask = super::signal::SigSet(self.blocked.load(std::sync::atomic::Ordering::Relaxed));
        mask.contains(signo)
    }

    /// Its mask as /proc shows it: without the signals it waits for, as
    /// Linux's blocked is during rt_sigtimedwait.
    pub fn shown_blocked(&self) -> u64 {
        let blocked = self.blocked.load(std::sync::atomic::Ordering::Relaxed);
        blocked & !self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether it would take process signal `signo` now (complete_signal's
    /// wants_signal): it does not block it, or waits for it.
    pub fn takes(&self, signo: i32) -> bool {
        let waiting =
            super::signal::SigSet(self.waiting.load(std::sync::atomic::Ordering::Relaxed));
        !self.blocks(signo) || waiting.contains(signo)
    }

    /// Queues a signal for this thread (a standard signal already pending
    /// is not queued twice) and interrupts it so it delivers promptly.
    pub fn queue(&self, info: SigInfo) {
        super::signal::enqueue(
            &mut self.pending.lock().unwrap_or_else(|e| e.into_inner()),
            info,
        );
        self.interrupt.interrupt();
    }
}

#[derive(Default)]
struct State {
    /// Set by exit_group, a fatal signal, or the last thread's exit.
    status: Option<ExitStatus>,
    /// How the leader (tid == tgid) exited: the process's status when its
    /// threads end one by one, as wait(2) reports it on Linux.
    leader: Option<ExitStatus>,
    members: BTreeMap<i32, Arc<Member>>,
}

pub struct ThreadGroup {
    tgid: i32,
    /// None once the process has exited (a zombie holds no memory).
    mm: Mutex<Option<SharedMm>>,
    exit_signal: i32,
    /// Process-wide state of the process tree (zombie, exec, job control).
    pub(super) life: Mutex<super::exit::Life>,
    pub(super) life_cv: Condvar,
    /// pidfds poll here: notified when the process ends.
    exit_queue: Arc<crate::vfs::poll::WaitQueue>,
    /// PIDFD_THREAD pidfds poll here: notified when one of its threads ends.
    thread_exit_queue: Arc<crate::vfs::poll::WaitQueue>,
    /// Process-directed signals not yet taken by a thread (Linux's
    /// signal->shared_pending): any thread that does not block one may
    /// take it, and every thread's sigpending shows it.
    shared_pending: Arc<Mutex<Vec<SigInfo>>>,
    /// Replaceable: a process can stop sharing its table (unshare).
    fds: Mutex<SharedFdTable>,
    handlers: Arc<Mutex<SignalHandlers>>,
    limits: Mutex<LimitSet>,
    /// Replaceable: a process can stop sharing it (unshare(CLONE_FS)).
    fs: Mutex<SharedFsContext>,
    image: Mutex<ProcessImage>,
    links: Mutex<ProcessLinks>,
    /// setitimer/alarm: per process, not inherited by fork, kept by exec.
    itimers: Arc<ITimers>,
    /// prctl, priority and CPU-time accounting (kernel/attrs.rs).
    attrs: super::attrs::ProcessAttrs,
    /// The credentials of the thread that last joined or changed its own
    /// (setuid changes every thread's): what kill(2)'s permission check
    /// and /proc/<pid>/status see of the process. Not saved: rebuilt as
    /// tasks join.
    creds: Mutex<Option<super::creds::Credentials>>,
    /// A fast check for tasks at every return to the application.
    exiting: AtomicBool,
    state: Mutex<State>,
    done: Condvar,
    /// The tid stopping the others (0: no stop in progress).
    stopper: AtomicI32,
    /// The tid whose execve is ending the other threads (0: none).
    exec_by: AtomicI32,
    stop: Mutex<Stop>,
    stop_cv: Condvar,
}

impl ThreadGroup {
    pub fn new(tgid: i32, parts: ProcessParts) -> Arc<ThreadGroup> {
        let attrs = super::attrs::ProcessAttrs::default();
        attrs.set_default_comm(&parts.image.exe);
        Arc::new(ThreadGroup {
            tgid,
            mm: Mutex::new(parts.mm),
            exit_signal: parts.exit_signal,
            life: Mutex::default(),
            life_cv: Condvar::new(),
            exit_queue: crate::vfs::poll::WaitQueue::new(),
            thread_exit_queue: crate::vfs::poll::WaitQueue::new(),
            shared_pending: Arc::default(),
            fds: Mutex::new(parts.fds),
            handlers: parts.handlers,
            limits: Mutex::new(parts.limits),
            fs: Mutex::new(parts.fs),
            image: Mutex::new(parts.image),
            links: Mutex::new(parts.links),
            itimers: ITimers::new(),
            attrs,
            creds: Mutex::new(None),
            exiting: AtomicBool::new(false),
            state: Mutex::default(),
            done: Condvar::new(),
            stopper: AtomicI32::new(0),
            exec_by: AtomicI32::new(0),
            stop: Mutex::default(),
            stop_cv: Condvar::new(),
        })
    }

    /// The thread group id: the process's pid.
    pub fn tgid(&self) -> i32 {
        self.tgid
    }

    /// The process's address space; None once it has exited.
    pub fn mm_arc(&self) -> Option<SharedMm> {
        lock(&self.mm).clone()
    }

    /// execve: the process gets its new address space (the old one stays
    /// with any process that shares it, a vfork parent).
    pub fn set_mm(&self, mm: SharedMm) {
        *lock(&self.mm) = Some(mm);
    }

    /// The last thread has gone: the address space is let go (the stub
    /// process with it, once no other process shares it).
    pub fn release_mm(&self) -> Option<SharedMm> {
        lock(&self.mm).take()
    }

    /// Where pidfds of this process wait for its end.
    pub fn exit_queue(&self) -> &Arc<crate::vfs::poll::WaitQueue> {
        &self.exit_queue
    }

    /// Where pidfds of one of its threads wait for that thread's end.
    pub fn thread_exit_queue(&self) -> &Arc<crate::vfs::poll::WaitQueue> {
        &self.thread_exit_queue
    }

    /// The signal its parent gets when it ends.
    pub fn exit_signal(&self) -> i32 {
        self.exit_signal
    }

    /// The descriptor table: `fds().lock()` to use it.
    pub fn fds(&self) -> FdsRef {
        Current(self.fds_ref())
    }

    /// The table itself, for sharing with a new process or saving.
    pub fn fds_ref(&self) -> SharedFdTable {
        lock(&self.fds).clone()
    }

    /// Gives the process another descriptor table (its own copy, when it
    /// stops sharing one); the old one stays with whoever else holds it.
    pub fn set_fds(&self, fds: SharedFdTable) {
        *lock(&self.fds) = fds;
    }

    pub fn handlers(&self) -> MutexGuard<'_, SignalHandlers> {
        lock(&self.handlers)
    }

    pub fn handlers_ref(&self) -> &Arc<Mutex<SignalHandlers>> {
        &self.handlers
    }

    pub fn limits(&self) -> MutexGuard<'_, LimitSet> {
        lock(&self.limits)
    }

    /// The fs context as it is now: `fs().lock()` to use it.
    pub fn fs(&self) -> Current<FsContext> {
        Current(self.fs_ref())
    }

    /// The context itself, for sharing with a new process or saving.
    pub fn fs_ref(&self) -> SharedFsContext {
        lock(&self.fs).clone()
    }

    /// Gives the process another fs context (its own copy, when it stops
    /// sharing one); the old one stays with whoever else holds it.
    pub fn set_fs(&self, fs: SharedFsContext) {
        *lock(&self.fs) = fs;
    }

    pub fn image(&self) -> MutexGuard<'_, ProcessImage> {
        lock(&self.image)
    }

    pub fn links(&self) -> ProcessLinks {
        *lock(&self.links)
    }

    /// The process's interval timers.
    pub fn itimers(&self) -> &Arc<ITimers> {
        &self.itimers
    }

    /// The process's and its threads' prctl, priority and CPU-time state.
    pub fn attrs(&self) -> &super::attrs::ProcessAttrs {
        &self.attrs
    }

    /// The (real, saved) uids a sender's must match (see `may_signal`).
    pub fn signal_ids(&self) -> (u32, u32) {
        lock(&self.creds)
            .as_ref()
            .map_or((0, 0), |c| (c.uid, c.suid))
    }

    /// The process's credentials as its threads last set them.
    pub fn creds(&self) -> Option<super::creds::Credentials> {
        lock(&self.creds).clone()
    }

    pub(super) fn set_creds(&self, creds: &super::creds::Credentials) {
        *lock(&self.creds) = Some(creds.clone());
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The tids of its live tasks, ascending.
    pub fn tids(&self) -> Vec<i32> {
        self.state().members.keys().copied().collect()
    }

    pub fn add(&self, tid: i32, member: Arc<Member>) {
        self.state().members.insert(tid, member);
    }

    /// Queues a process-directed signal (kill(2), SIGALRM, SIGCHLD) on the
    /// process, not on one thread (Linux's shared_pending). A thread that
    /// does not block it is woken to take it, the leader first as Linux's
    /// complete_signal picks one; when every thread blocks it, it stays
    /// pending for whichever thread unblocks it first, and every thread is
    /// woken to look (a signalfd read or sigtimedwait may take it). False
    /// when the process has no thread left.
    pub fn signal_process(&self, info: SigInfo) -> bool {
        self.signal_process_from(info, 0)
    }

    /// [`ThreadGroup::signal_process`] sent by thread `sender` of this
    /// process (0: from elsewhere): it takes the signal itself before it
    /// returns to the application if it does not block it (POSIX's kill
    /// to one's own process), so it is not woken.
    pub fn signal_process_from(&self, info: SigInfo, sender: i32) -> bool {
        self.signals_to_process(&[info], sender)
    }

    /// Queues `signals` on the process under one lock (none can be taken
    /// before all are pending), each as [`ThreadGroup::signal_process`].
    pub fn signals_to_process(&self, signals: &[SigInfo], sender: i32) -> bool {
        let Some(leader_blocked) = self.leader_blocked() else {
            return false;
        };
        let queued: Vec<SigInfo> = {
            let handlers = self.handlers();
            // Whether it is ignored is judged by the leader's mask (Linux's
            // sig_ignored on the task kill(2) names): a blocked one is kept.
            signals
                .iter()
                .filter(|i| {
                    !super::signal::ignored_at_send(
                        &handlers,
                        i.signo,
                        leader_blocked.contains(i.signo),
                    )
                })
                .copied()
                .collect()
        };
        {
            let mut shared = lock(&self.shared_pending);
            for info in &queued {
                super::signal::enqueue(&mut shared, *info);
            }
        }
        for info in &queued {
            self.wake_for(info.signo, sender);
        }
        true
    }

    /// The leader's blocked signals (another thread's once it has gone);
    /// None when the process has no thread left.
    fn leader_blocked(&self) -> Option<super::signal::SigSet> {
        let st = self.state();
        let m = st
            .members
            .get(&self.tgid)
            .or_else(|| st.members.values().next())?;
        Some(super::signal::SigSet(
            m.blocked.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Wakes a thread to take process signal `signo` just queued: the
    /// sender itself needs no waking if it does not block it (it takes it
    /// on its way back to the application); else a thread that does not
    /// block it or waits for it in rt_sigtimedwait, the leader first; else
    /// every thread, to look again (a signalfd read may take it).
    pub fn wake_for(&self, signo: i32, sender: i32) {
        let woken: Vec<Arc<Member>> = {
            let st = self.state();
            if st.members.get(&sender).is_some_and(|m| m.takes(signo)) {
                return;
            }
            let wants = st
                .members
                .get(&self.tgid)
                .into_iter()
                .chain(st.members.values())
                .find(|m| m.takes(signo));
            match wants {
                Some(m) => vec![m.clone()],
                None => st.members.values().cloned().collect(),
            }
        };
        for m in woken {
            m.interrupt.interrupt();
        }
    }

    /// The signals pending on the process as a whole.
    pub fn shared_pending(&self) -> &Arc<Mutex<Vec<SigInfo>>> {
        &self.shared_pending
    }

    /// A thread blocked `newly` (Linux's retarget_shared_pending): another
    /// thread that does not block a process signal it can no longer take
    /// is woken to take it.
    pub fn retarget_shared(&self, newly: super::signal::SigSet) {
        let signals: Vec<i32> = lock(&self.shared_pending)
            .iter()
            .map(|p| p.signo)
            .filter(|&s| newly.contains(s))
            .collect();
        if signals.is_empty() {
            return;
        }
        let members: Vec<Arc<Member>> = self.state().members.values().cloned().collect();
        for m in members {
            if signals.iter().any(|&s| m.takes(s)) {
                m.interrupt.interrupt();
            }
        }
    }

    /// Queues a signal for member `m` of this process unless it would be
    /// ignored (`ignored_at_send`): an ignored signal wakes nothing.
    pub fn queue_to(&self, m: &Member, info: SigInfo) {
        let ignored =
            super::signal::ignored_at_send(&self.handlers(), info.signo, m.blocks(info.signo));
        if !ignored {
            m.queue(info);
        }
    }

    /// Interrupts every thread (to stop, or to look at its process's state).
    pub fn interrupt_members(&self) {
        let members: Vec<Arc<Member>> = self.state().members.values().cloned().collect();
        for m in members {
            m.interrupt.interrupt();
        }
    }

    /// Drops pending instances of `signals` from the process's queue and
    /// every thread's.
    pub fn discard_pending(&self, signals: &[i32]) {
        lock(&self.shared_pending).retain(|p| !signals.contains(&p.signo));
        let members: Vec<Arc<Member>> = self.state().members.values().cloned().collect();
        for m in members {
            lock(&m.pending).retain(|p| !signals.contains(&p.signo));
        }
    }

    /// Reparenting: `parent` is its new parent.
    pub fn set_parent(&self, parent: i32) {
        lock(&self.links).parent = parent;
    }

    /// setpgid / setsid.
    pub fn set_pgid_sid(&self, pgid: i32, sid: i32) {
        let mut l = lock(&self.links);
        l.pgid = pgid;
        l.sid = sid;
    }

    pub fn member(&self, tid: i32) -> Option<Arc<Member>> {
        self.state().members.get(&tid).cloned()
    }

    /// How many tasks are still running.
    pub fn live(&self) -> usize {
        self.state().members.len()
    }

    /// The whole group is ending (exit_group, fatal signal): its status.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        if !self.exiting.load(Ordering::Acquire) {
            return None;
        }
        self.state().status
    }

    /// Ends the whole group with `status` (the first status wins) and stops
    /// every other member at its next boundary.
    pub fn begin_exit(&self, status: ExitStatus, except: i32) {
        let members: Vec<Arc<Member>> = {
            let mut st = self.state();
            st.status.get_or_insert(status);
            self.exiting.store(true, Ordering::Release);
            st.members
                .iter()
                .filter(|(&t, _)| t != except)
                .map(|(_, m)| m.clone())
                .collect()
        };
        for m in members {
            m.interrupt.interrupt();
        }
    }

    /// `tid` has exited with `status`; the last task's status becomes the
    /// group's unless the group was already ending. True when it was the
    /// last: the process has ended.
    pub fn remove(&self, tid: i32, status: ExitStatus) -> bool {
        let last = {
            let mut st = self.state();
            if st.members.remove(&tid).is_none() {
                return false;
            }
            if tid == self.tgid {
                st.leader = Some(status);
            }
            if st.members.is_empty() {
                let final_status = st.leader.unwrap_or(status);
                st.status.get_or_insert(final_status);
                self.exiting.store(true, Ordering::Release);
            }
            // Every end: an exec waits for all but one, `wait` for none.
            self.done.notify_all();
            st.members.is_empty()
        };
        self.thread_exit_queue
            .notify(crate::vfs::poll::EPOLLIN | crate::vfs::poll::EPOLLRDNORM);
        last
    }

    /// Waits up to `timeout` for every task to have exited; the group's
    /// status once they have.
    /// Waits up to `timeout` until at most one task is left (the one that
    /// execs) or the group is ending; whether one is left.
    pub fn wait_until_sole_task(&self, timeout: Duration) -> bool {
        let st = self.state();
        let (st, _) = self
            .done
            .wait_timeout_while(st, timeout, |s| s.members.len() > 1 && s.status.is_none())
            .unwrap_or_else(|e| e.into_inner());
        st.members.len() <= 1
    }

    pub fn wait(&self, timeout: Duration) -> Option<ExitStatus> {
        let st = self.state();
        let (st, _) = self
            .done
            .wait_timeout_while(st, timeout, |s| !s.members.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        if st.members.is_empty() {
            st.status
        } else {
            None
        }
    }
}

impl ThreadGroup {
    fn stop_state(&self) -> MutexGuard<'_, Stop> {
        lock(&self.stop)
    }

    /// execve by `tid`: every other thread ends at its next boundary.
    pub fn begin_exec(&self, tid: i32) {
        self.exec_by.store(tid, Ordering::Release);
        self.interrupt_members();
    }

    pub fn end_exec(&self) {
        self.exec_by.store(0, Ordering::Release);
    }

    /// Whether `tid` must end because another thread is exec'ing.
    pub fn must_end_for_exec(&self, tid: i32) -> bool {
        let by = self.exec_by.load(Ordering::Acquire);
        by != 0 && by != tid
    }

    /// The exec'ing thread `old` takes the leader's tid `new`.
    pub fn rekey(&self, old: i32, new: i32, member: Arc<Member>) {
        let mut st = self.state();
        st.members.remove(&old);
        st.members.insert(new, member);
        st.leader = None;
    }

    /// A successful execve: setpgid now refuses the process, and a vfork
    /// parent goes on.
    pub fn exec_done(&self) {
        self.life().did_exec = true;
        self.release_vfork();
    }

    /// Whether `tid` should park now: a stop is in progress and `tid` is not
    /// the thread that asked for it.
    pub fn must_park(&self, tid: i32) -> bool {
        let stopper = self.stopper.load(Ordering::Acquire);
        stopper != 0 && stopper != tid
    }

    /// Stops every thread but `stopper` at its next clean boundary and waits
    /// up to `timeout` for them to park. Their records, or the reason they
    /// could not be had; on failure the others are released again.
    pub fn stop_others(&self, stopper: i32, timeout: Duration) -> Result<Vec<TaskRecord>, String> {
        let members: Vec<(i32, Arc<Member>)> = {
            let st = self.state();
            st.members
                .iter()
                .filter(|(&t, _)| t != stopper)
                .map(|(&t, m)| (t, m.clone()))
                .collect()
        };
        {
            let mut stop = self.stop_state();
            stop.generation += 1;
            stop.parked.clear();
            stop.how = None;
        }
        self.stopper.store(stopper, Ordering::Release);
        for (_, m) in &members {
            m.interrupt.interrupt();
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut stop = self.stop_state();
        loop {
            // A thread that exited meanwhile has nothing left to save.
            let all = members
                .iter()
                .all(|(t, _)| stop.parked.contains_key(t) || self.member(*t).is_none());
            if all {
                break;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                drop(stop);
                self.release(Release::Continue);
                return Err(format!("{} thread(s) did not stop in time", members.len()));
            }
            stop = self
                .stop_cv
                .wait_timeout(stop, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let mut records = Vec::new();
        for (t, _) in &members {
            match stop.parked.get(t) {
                Some(Ok(r)) => records.push(r.clone()),
                Some(Err(e)) => {
                    let e = format!("thread {t}: {e}");
                    drop(stop);
                    self.release(Release::Continue);
                    return Err(e);
                }
                None => {}
            }
        }
        Ok(records)
    }

    /// Parks the calling thread `tid` with its record until released.
    pub fn park(&self, tid: i32, record: Result<TaskRecord, String>) -> Release {
        let mut stop = self.stop_state();
        let generation = stop.generation;
        stop.parked.insert(tid, record);
        self.stop_cv.notify_all();
        while stop.released < generation {
            stop = self.stop_cv.wait(stop).unwrap_or_else(|e| e.into_inner());
        }
        stop.how.unwrap_or(Release::Continue)
    }

    /// Ends a stop: the parked threads continue, or end with the sandbox.
    pub fn release(&self, how: Release) {
        let mut stop = self.stop_state();
        stop.released = stop.generation;
        stop.how = Some(how);
        self.stopper.store(0, Ordering::Release);
        self.stop_cv.notify_all();
    }
}

/// The fs context's saved form: paths in the container.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsContextRecord {
    pub root: Vec<u8>,
    pub cwd: Vec<u8>,
    pub umask: u32,
}
statefile::versioned!(FsContextRecord, "kernel.FsContext", 1);

/// A thread group's saved form: what the process shares, with its address
/// space and descriptor table as references (ids of their own records), and
/// its tasks by tid. A zombie has no tasks and no address space (`mm` 0).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadGroupRecord {
    pub tgid: i32,
    /// Its tasks, ascending (the leader, tid == tgid, first while it runs).
    pub tasks: Vec<i32>,
    pub mm: u64,
    pub fd_table: u64,
    pub handlers: SignalHandlers,
    pub limits: LimitSet,
    pub fs: FsContextRecord,
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    pub links: ProcessLinks,
    /// The interval timers (since v2).
    pub itimers: ITimersRecord,
    /// Since v3: the process tree.
    pub life: LifeRecord,
    /// Since v4: the signals pending on the process, not on one thread.
    pub shared_pending: Vec<SigInfo>,
    /// Since v4: the tgid of the saved process whose fs context (root,
    /// cwd, umask) this one shares since a clone(CLONE_FS), 0 when its
    /// own; `fs` is then a copy of that one's.
    pub fs_shared_with: i32,
}
statefile::versioned!(
    ThreadGroupRecord,
    "kernel.ThreadGroup",
    4,
    [
        SignalHandlers,
        LimitSet,
        FsContextRecord,
        ProcessLinks,
        ITimersRecord,
        LifeRecord,
        SigInfo
    ]
);

/// Version 3 of the thread group's record, as statefiles before signals
/// were pending on the process hold it: every pending signal was in one
/// thread's queue, where it stays.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadGroupRecordV3 {
    pub tgid: i32,
    pub tasks: Vec<i32>,
    pub mm: u64,
    pub fd_table: u64,
    pub handlers: SignalHandlers,
    pub limits: LimitSet,
    pub fs: FsContextRecord,
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    pub links: ProcessLinks,
    pub itimers: ITimersRecord,
    pub life: LifeRecord,
}
statefile::versioned!(
    ThreadGroupRecordV3,
    "kernel.ThreadGroup",
    3,
    [
        SignalHandlers,
        LimitSet,
        FsContextRecord,
        ProcessLinks,
        ITimersRecord,
        LifeRecord
    ]
);

impl From<ThreadGroupRecordV3> for ThreadGroupRecord {
    fn from(v3: ThreadGroupRecordV3) -> ThreadGroupRecord {
        ThreadGroupRecord {
            tgid: v3.tgid,
            tasks: v3.tasks,
            mm: v3.mm,
            fd_table: v3.fd_table,
            handlers: v3.handlers,
            limits: v3.limits,
            fs: v3.fs,
            exe: v3.exe,
            argv: v3.argv,
            links: v3.links,
            itimers: v3.itimers,
            life: v3.life,
            shared_pending: Vec::new(),
            fs_shared_with: 0,
        }
    }
}

/// How a process that has ended ended (a zombie's status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZombieRecord {
    /// Killed by signal `code` rather than exited with status `code`.
    pub signaled: bool,
    pub code: i32,
}
statefile::versioned!(ZombieRecord, "kernel.Zombie", 1);

/// A process's place in the process tree beyond its links: its exit
/// signal, whether it has exec'd, is a subreaper, is stopped, has ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifeRecord {
    pub exit_signal: i32,
    pub did_exec: bool,
    pub subreaper: bool,
    pub job: super::exit::JobState,
    pub zombie: Option<ZombieRecord>,
    pub uid: u32,
    /// CPU time of exited threads and of reaped children.
    pub cpu_ns: u64,
    pub children_cpu_ns: u64,
}
statefile::versioned!(
    LifeRecord,
    "kernel.ProcessLife",
    1,
    [super::exit::JobState, ZombieRecord]
);

/// Version 2 of the thread group's record, before the process tree: it
/// loads as the sandbox's only process, a live one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadGroupRecordV2 {
    pub tgid: i32,
    /// Its tasks, ascending (the leader, tid == tgid, first while it runs).
    pub tasks: Vec<i32>,
    pub mm: u64,
    pub fd_table: u64,
    pub handlers: SignalHandlers,
    pub limits: LimitSet,
    pub fs: FsContextRecord,
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    pub links: ProcessLinks,
    /// The interval timers (since v2).
    pub itimers: ITimersRecord,
}
statefile::versioned!(
    ThreadGroupRecordV2,
    "kernel.ThreadGroup",
    2,
    [
        SignalHandlers,
        LimitSet,
        FsContextRecord,
        ProcessLinks,
        ITimersRecord
    ]
);

/// Version 1 of the thread group's record, as statefiles before interval
/// timers hold it: it loads with no timer armed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadGroupRecordV1 {
    pub tgid: i32,
    pub tasks: Vec<i32>,
    pub mm: u64,
    pub fd_table: u64,
    pub handlers: SignalHandlers,
    pub limits: LimitSet,
    pub fs: FsContextRecord,
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    pub links: ProcessLinks,
}
statefile::versioned!(
    ThreadGroupRecordV1,
    "kernel.ThreadGroup",
    1,
    [SignalHandlers, LimitSet, FsContextRecord, ProcessLinks]
);

impl From<ThreadGroupRecordV1> for ThreadGroupRecordV2 {
    fn from(v1: ThreadGroupRecordV1) -> ThreadGroupRecordV2 {
        ThreadGroupRecordV2 {
            tgid: v1.tgid,
            tasks: v1.tasks,
            mm: v1.mm,
            fd_table: v1.fd_table,
            handlers: v1.handlers,
            limits: v1.limits,
            fs: v1.fs,
            exe: v1.exe,
            argv: v1.argv,
            links: v1.links,
            itimers: ITimersRecord::default(),
        }
    }
}

impl From<ThreadGroupRecordV2> for ThreadGroupRecord {
    fn from(v2: ThreadGroupRecordV2) -> ThreadGroupRecord {
        ThreadGroupRecord {
            tgid: v2.tgid,
            tasks: v2.tasks,
            mm: v2.mm,
            fd_table: v2.fd_table,
            handlers: v2.handlers,
            limits: v2.limits,
            fs: v2.fs,
            exe: v2.exe,
            argv: v2.argv,
            links: v2.links,
            itimers: v2.itimers,
            life: LifeRecord::default(),
            shared_pending: Vec::new(),
            fs_shared_with: 0,
        }
    }
}

impl statefile::Savable for ThreadGroupRecord {
    const TYPE_NAME: &'static str = "kernel.ThreadGroup";
    const VERSION: u32 = 4;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    /// Older versions are decoded in their own layout (their nested types
    /// checked at the versions they were written with) and migrated: v1
    /// has no timer armed, v1 and v2 are one live process, v1 to v3 have
    /// nothing pending on the process (only on its threads).
    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 1 {
            statefile::check_saved_versions::<ThreadGroupRecordV1>(dec.types())?;
            return dec
                .serde::<ThreadGroupRecordV1>()
                .map(|v1| ThreadGroupRecord::from(ThreadGroupRecordV2::from(v1)));
        }
        if version == 2 {
            statefile::check_saved_versions::<ThreadGroupRecordV2>(dec.types())?;
            return dec
                .serde::<ThreadGroupRecordV2>()
                .map(ThreadGroupRecord::from);
        }
        if version == 3 {
            statefile::check_saved_versions::<ThreadGroupRecordV3>(dec.types())?;
            return dec
                .serde::<ThreadGroupRecordV3>()
                .map(ThreadGroupRecord::from);
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

impl ThreadGroup {
    /// The group's record, given the ids its address space and descriptor
    /// table were saved under; `path` names a dentry in the container.
    /// `now` is the sandbox's monotonic clock (the real timer is saved as
    /// the time it has left).
    pub fn save_record(
        &self,
        mm: u64,
        fd_table: u64,
        path: &dyn Fn(&Arc<crate::vfs::Dentry>) -> Vec<u8>,
        now: super::time::Nanos,
    ) -> ThreadGroupRecord {
        let (root, cwd, umask) = {
            let fs = self.fs();
            let fs = fs.lock();
            (fs.root.clone(), fs.cwd.clone(), fs.umask)
        };
        let image = self.image().clone();
        ThreadGroupRecord {
            tgid: self.tgid,
            tasks: self.tids(),
            mm,
            fd_table,
            handlers: self.handlers().clone(),
            limits: self.limits().clone(),
            fs: FsContextRecord {
                root: path(&root),
                cwd: path(&cwd),
                umask,
            },
            exe: image.exe,
            argv: image.argv,
            links: self.links(),
            itimers: self.itimers.save(now),
            life: self.save_life(),
            shared_pending: lock(&self.shared_pending).clone(),
            fs_shared_with: 0,
        }
    }

    /// A restored process's pending signals (validated).
    pub fn load_shared_pending(&self, pending: &[SigInfo]) {
        *lock(&self.shared_pending) = pending.to_vec();
    }

    fn save_life(&self) -> LifeRecord {
        let zombie = self.is_zombie().then(|| match self.exit_status() {
            Some(ExitStatus::Signaled(sig)) => ZombieRecord {
                signaled: true,
                code: sig,
            },
            Some(ExitStatus::Exited(code)) => ZombieRecord {
                signaled: false,
                code,
            },
            None => ZombieRecord {
                signaled: false,
                code: 0,
            },
        });
        // The subreaper flag and the CPU times are the process attributes'
        // (saved in their own record, which a restore loads); written here
        // too, as the record's fields have them.
        let ns =
            |u: super::attrs::CpuUsage| u64::try_from(u.total().as_nanos()).unwrap_or(u64::MAX);
        let (usage, children) = (self.attrs().usage(), self.attrs().children_usage());
        let subreaper = self.attrs().with(|p| p.child_subreaper);
        let l = self.life();
        LifeRecord {
            exit_signal: self.exit_signal,
            did_exec: l.did_exec,
            subreaper,
            job: l.job,
            zombie,
            uid: l.uid,
            cpu_ns: ns(usage),
            children_cpu_ns: ns(children),
        }
    }

    /// Restore: a validated record's process-tree state.
    pub fn load_life(&self, r: &LifeRecord) {
        let mut l = self.life();
        l.did_exec = r.did_exec;
        l.job = r.job;
        l.uid = r.uid;
        if let Some(z) = r.zombie {
            l.exited = true;
            drop(l);
            let status = if z.signaled {
                ExitStatus::Signaled(z.code)
            } else {
                ExitStatus::Exited(z.code)
            };
            let mut st = self.state();
            st.status = Some(status);
            self.exiting.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread group saved before signals pended on the process
    /// (`kernel.ThreadGroup` v3) loads with nothing pending on it: its
    /// pending signals were its threads', and stay in their records.
    #[test]
    fn v3_thread_groups_migrate_with_nothing_pending_on_the_process() {
        struct Old(ThreadGroupRecordV3);
        impl statefile::Savable for Old {
            const TYPE_NAME: &'static str = "kernel.ThreadGroup";
            const VERSION: u32 = 3;
            fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
                enc.serde(&self.0)
            }
            fn load(_: &mut statefile::Decoder<'_>, _: u32) -> statefile::Result<Self> {
                unreachable!("only saved")
            }
            fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
                statefile::register_versioned::<ThreadGroupRecordV3>(types)
            }
        }
        let v3 = ThreadGroupRecordV3 {
            tgid: 7,
            tasks: vec![7, 8],
            mm: 1,
            fd_table: 2,
            handlers: SignalHandlers::default(),
            limits: LimitSet::default(),
            fs: FsContextRecord {
                root: b"/".to_vec(),
                cwd: b"/tmp".to_vec(),
                umask: 0o022,
            },
            exe: "/bin/sh".into(),
            argv: vec![b"sh".to_vec()],
            links: ProcessLinks::leader(7),
            itimers: ITimersRecord::default(),
            life: LifeRecord {
                exit_signal: libc::SIGCHLD,
                ..LifeRecord::default()
            },
        };
        let bytes = statefile::to_bytes(&Old(v3.clone())).unwrap();
        let now: ThreadGroupRecord = statefile::from_bytes(&bytes).unwrap();
        assert!(now.shared_pending.is_empty());
        assert_eq!(
            (now.tgid, now.tasks, now.fs.cwd, now.life),
            (7, vec![7, 8], b"/tmp".to_vec(), v3.life)
        );
    }
}
