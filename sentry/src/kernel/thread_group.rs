//! A thread group (a process): its tasks and how it ends (gVisor's
//! kernel.ThreadGroup).
//!
//! What the threads of a process share (address space, descriptors, signal
//! dispositions, limits) is held by each task through a shared reference;
//! the group itself knows its members, so that exit_group and signals can
//! reach them, and its exit status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::interrupt::TaskInterrupt;
use super::signal::SigInfo;
use super::task::ExitStatus;

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
}

impl ThreadGroup {
    pub fn new(tgid: i32) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            tgid,
            exiting: AtomicBool::new(false),
            state: Mutex::default(),
            done: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, tid: i32, member: Arc<Member>) {
        self.state().members.insert(tid, member);
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
