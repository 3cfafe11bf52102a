//! The sandbox's pid namespace (gVisor's kernel.PIDNamespace and TaskSet):
//! which thread ids are in use, which thread group each task belongs to, and
//! the thread groups themselves. It is the root from which checkpoint walks
//! every process and from which procfs reads them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::thread_group::{lock, ThreadGroup};
use crate::errno::Errno;

/// Linux's largest pid_max (PID_MAX_LIMIT on 64-bit): tids are 1..=PID_MAX.
pub const PID_MAX: i32 = 4 * 1024 * 1024;
/// Where allocation starts again after wrapping, as Linux's RESERVED_PIDS.
const RESERVED_PIDS: i32 = 300;

#[derive(Default)]
struct PidTable {
    /// The next tid to try.
    next: i32,
    /// Live tasks: tid -> tgid.
    tasks: BTreeMap<i32, i32>,
    thread_groups: BTreeMap<i32, Arc<ThreadGroup>>,
    /// init has ended and the namespace is being emptied: no new task or
    /// process may join (Linux clears PIDNS_ADDING). Never saved: a
    /// sandbox whose init has ended is not checkpointed.
    closed: bool,
}

/// Why a saved pid namespace cannot be taken over.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PidError {
    #[error("next tid {0} is outside 1..={PID_MAX}")]
    NextOutOfRange(i64),
}

pub struct PidNamespace {
    table: Mutex<PidTable>,
}

impl Default for PidNamespace {
    fn default() -> Self {
        PidNamespace {
            // The first task is the init task, pid 1 (invariant 6).
            table: Mutex::new(PidTable {
                next: 1,
                ..Default::default()
            }),
        }
    }
}

impl PidNamespace {
    fn table(&self) -> MutexGuard<'_, PidTable> {
        lock(&self.table)
    }

    /// A fresh thread id: the next free one, wrapping past PID_MAX to
    /// RESERVED_PIDS like Linux; EAGAIN when every id is in use, ENOMEM
    /// once init has ended (Linux's alloc_pid without PIDNS_ADDING).
    pub fn allocate_tid(&self) -> Result<i32, Errno> {
        let mut t = self.table();
        if t.closed {
            return Err(Errno::ENOMEM);
        }
        let start = t.next.clamp(1, PID_MAX);
        let mut tid = start;
        loop {
            let used = t.tasks.contains_key(&tid) || t.thread_groups.contains_key(&tid);
            if !used {
                t.next = if tid >= PID_MAX {
                    RESERVED_PIDS
                } else {
                    tid + 1
                };
                // Reserved until the task joins, so two clones never share it.
                t.tasks.insert(tid, 0);
                return Ok(tid);
            }
            tid = if tid >= PID_MAX {
                RESERVED_PIDS
            } else {
                tid + 1
            };
            if tid == start {
                return Err(Errno::EAGAIN);
            }
        }
    }

    /// The tid allocation would try next (saved with the kernel).
    pub fn next_tid(&self) -> i32 {
        self.table().next
    }

    /// Continues allocation after a restore at `next`, validated.
    pub fn set_next_tid(&self, next: i64) -> Result<(), PidError> {
        let next = i32::try_from(next)
            .ok()
            .filter(|n| (1..=PID_MAX).contains(n))
            .ok_or(PidError::NextOutOfRange(next))?;
        self.table().next = next;
        Ok(())
    }

    /// Task `tid` of `tg` is live; its group is registered with it.
    pub fn add_task(&self, tid: i32, tg: &Arc<ThreadGroup>) {
        let mut t = self.table();
        t.tasks.insert(tid, tg.tgid());
        t.thread_groups
            .entry(tg.tgid())
            .or_insert_with(|| tg.clone());
    }

    /// The first task of a forked process joins, registering its group;
    /// refused (ENOMEM) once the namespace is closed, checked under the
    /// same lock as [`PidNamespace::close`], so that a process created
    /// while init's end empties the namespace either is in the set that
    /// end kills or never runs.
    pub fn add_new_process(&self, tid: i32, tg: &Arc<ThreadGroup>) -> Result<(), Errno> {
        let mut t = self.table();
        if t.closed {
            return Err(Errno::ENOMEM);
        }
        t.tasks.insert(tid, tg.tgid());
        t.thread_groups
            .entry(tg.tgid())
            .or_insert_with(|| tg.clone());
        Ok(())
    }

    /// init has ended: from now on no task is created and no process
    /// joins; returns every thread group there is, the last set the end
    /// has to kill.
    pub fn close(&self) -> Vec<Arc<ThreadGroup>> {
        let mut t = self.table();
        t.closed = true;
        t.thread_groups.values().cloned().collect()
    }

    /// Task `tid` has gone (or its reserved tid was never used). Its
    /// process stays, a zombie, until reaped.
    pub fn remove_task(&self, tid: i32) {
        self.table().tasks.remove(&tid);
    }

    /// A restored process, before its tasks join (a zombie has none).
    pub fn add_group(&self, tg: &Arc<ThreadGroup>) {
        self.table()
            .thread_groups
            .entry(tg.tgid())
            .or_insert_with(|| tg.clone());
    }

    /// A zombie is reaped: its pid is free again.
    pub fn reap(&self, tgid: i32) {
        let mut t = self.table();
        if t.thread_groups.get(&tgid).is_some_and(|tg| tg.live() == 0) {
            if let Some(tg) = t.thread_groups.remove(&tgid) {
                tg.life().reaped = true;
            }
        }
    }

    /// How many tasks (threads of every process) are live or being
    /// created: what the sandbox-wide task limit counts.
    pub fn task_count(&self) -> usize {
        self.table().tasks.len()
    }

    pub fn thread_group(&self, tgid: i32) -> Option<Arc<ThreadGroup>> {
        self.table().thread_groups.get(&tgid).cloned()
    }

    /// Every live thread group, by ascending tgid.
    pub fn thread_groups(&self) -> Vec<Arc<ThreadGroup>> {
        self.table().thread_groups.values().cloned().collect()
    }

    /// The thread group task `tid` belongs to.
    pub fn tgid_of(&self, tid: i32) -> Option<i32> {
        self.table().tasks.get(&tid).copied().filter(|&g| g != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_start_at_one_and_wrap_without_reuse() {
        let ns = PidNamespace::default();
        assert_eq!(ns.allocate_tid(), Ok(1));
        assert_eq!(ns.allocate_tid(), Ok(2));
        ns.set_next_tid(i64::from(PID_MAX)).unwrap();
        assert_eq!(ns.allocate_tid(), Ok(PID_MAX));
        // Past the limit it wraps to RESERVED_PIDS, never to 0 or negative.
        assert_eq!(ns.allocate_tid(), Ok(RESERVED_PIDS));
        assert_eq!(ns.allocate_tid(), Ok(RESERVED_PIDS + 1));
    }

    #[test]
    fn a_closed_namespace_allocates_no_tid() {
        let ns = PidNamespace::default();
        assert_eq!(ns.allocate_tid(), Ok(1));
        assert!(ns.close().is_empty());
        assert_eq!(ns.allocate_tid(), Err(Errno::ENOMEM));
        assert_eq!(ns.allocate_tid(), Err(Errno::ENOMEM));
    }

    #[test]
    fn hostile_next_tid_is_refused() {
        let ns = PidNamespace::default();
        for bad in [0, -5, i64::from(i32::MAX), i64::from(PID_MAX) + 1] {
            assert!(ns.set_next_tid(bad).is_err(), "{bad}");
        }
        assert_eq!(ns.next_tid(), 1);
    }
}
