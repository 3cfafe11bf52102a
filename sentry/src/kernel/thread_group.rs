//! A thread group (a process): its tasks and how it ends (gVisor's
//! kernel.ThreadGroup).
//!
//! What the threads of a process share (address space, descriptors, signal
//! dispositions, limits) is held by each task through a shared reference;
//! the group itself knows its members, so that exit_group and signals can
//! reach them, and its exit status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::interrupt::TaskInterrupt;
use super::signal::SigInfo;
use super::task::ExitStatus;
use crate::state::records::TaskRecord;

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
}

impl Member {
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
    pub tgid: i32,
    /// A fast check for tasks at every return to the application.
    exiting: AtomicBool,
    state: Mutex<State>,
    done: Condvar,
    /// The tid stopping the others (0: no stop in progress).
    stopper: AtomicI32,
    stop: Mutex<Stop>,
    stop_cv: Condvar,
}

impl ThreadGroup {
    pub fn new(tgid: i32) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            tgid,
            exiting: AtomicBool::new(false),
            state: Mutex::default(),
            done: Condvar::new(),
            stopper: AtomicI32::new(0),
            stop: Mutex::default(),
            stop_cv: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, tid: i32, member: Arc<Member>) {
        self.state().members.insert(tid, member);
    }

    /// Queues a process-directed signal (kill(2) from outside): on the
    /// leader while it runs, else on any remaining thread.
    pub fn signal_process(&self, info: SigInfo) -> bool {
        let target = {
            let st = self.state();
            st.members
                .get(&self.tgid)
                .or_else(|| st.members.values().next())
                .cloned()
        };
        match target {
            Some(m) => {
                m.queue(info);
                true
            }
            None => false,
        }
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
    /// group's unless the group was already ending.
    pub fn remove(&self, tid: i32, status: ExitStatus) {
        let mut st = self.state();
        st.members.remove(&tid);
        if tid == self.tgid {
            st.leader = Some(status);
        }
        if st.members.is_empty() {
            let final_status = st.leader.unwrap_or(status);
            st.status.get_or_insert(final_status);
            self.exiting.store(true, Ordering::Release);
            self.done.notify_all();
        }
    }

    /// Waits up to `timeout` for every task to have exited; the group's
    /// status once they have.
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
        self.stop.lock().unwrap_or_else(|e| e.into_inner())
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
