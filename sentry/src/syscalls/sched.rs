//! What programs ask of the kernel about themselves beyond their ids:
//! prctl, the scheduler calls over the sandbox's virtual CPUs,
//! getpriority/setpriority, getrusage and times, and the uid/gid setters
//! with Linux's permission rules over the sandbox's own credentials.

use std::sync::Arc;

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::attrs::{self, CpuUsage, COMM_LEN};
use crate::kernel::creds::{Credentials, CAP_SETGID, CAP_SETUID, CAP_SYS_NICE};
use crate::kernel::thread_group::ThreadGroup;
use crate::kernel::Task;

const PR_SET_PDEATHSIG: i32 = 1;
const PR_GET_PDEATHSIG: i32 = 2;
const PR_GET_DUMPABLE: i32 = 3;
const PR_SET_DUMPABLE: i32 = 4;
const PR_SET_NAME: i32 = 15;
const PR_GET_NAME: i32 = 16;
const PR_SET_CHILD_SUBREAPER: i32 = 36;
const PR_GET_CHILD_SUBREAPER: i32 = 37;
const PR_SET_NO_NEW_PRIVS: i32 = 38;
const PR_GET_NO_NEW_PRIVS: i32 = 39;

fn put_int(t: &Task, addr: u64, v: i32) -> Result<(), Errno> {
    t.mm().copy_out(addr, &v.to_le_bytes())
}

pub fn prctl(t: &mut Task, a: &Args) -> SysResult {
    if let Some(r) = super::capability::prctl(t, a) {
        return r;
    }
    let tid = t.tid();
    let attrs = t.tg().clone();
    let attrs = attrs.attrs();
    match a.int(0) {
        PR_SET_PDEATHSIG => {
            let sig = a.raw(1);
            if sig > 64 {
                return Err(Errno::EINVAL);
            }
            attrs.with_thread(tid, |x| x.pdeathsig = sig as i32)?;
            Ok(0)
        }
        PR_GET_PDEATHSIG => {
            let sig = attrs.with_thread(tid, |x| x.pdeathsig)?;
            put_int(t, a.addr(1), sig)?;
            Ok(0)
        }
        PR_GET_DUMPABLE => Ok(u64::from(attrs.with(|p| p.dumpable))),
        PR_SET_DUMPABLE => {
            // Only SUID_DUMP_DISABLE and SUID_DUMP_USER may be set.
            let v = a.raw(1);
            if v > 1 {
                return Err(Errno::EINVAL);
            }
            attrs.with(|p| p.dumpable = v as u32);
            Ok(0)
        }
        PR_SET_NAME => {
            // Up to 15 bytes, NUL-terminated or not (strncpy_from_user).
            let read = t.mm().read_c_string(a.addr(1), COMM_LEN - 1);
            let name = match read {
                Err(Errno::ENAMETOOLONG) => {
                    t.mm().read_bytes::<{ COMM_LEN - 1 }>(a.addr(1))?.to_vec()
                }
                other => other?,
            };
            attrs.with_thread(tid, |x| x.comm = name)?;
            Ok(0)
        }
        PR_GET_NAME => {
            let mut out = [0u8; COMM_LEN];
            let comm = attrs.comm(tid);
            let n = comm.len().min(COMM_LEN - 1);
            out[..n].copy_from_slice(&comm[..n]);
            t.mm().copy_out(a.addr(1), &out)?;
            Ok(0)
        }
        PR_SET_CHILD_SUBREAPER => {
            attrs.with(|p| p.child_subreaper = a.raw(1) != 0);
            Ok(0)
        }
        PR_GET_CHILD_SUBREAPER => {
            let v = attrs.with(|p| p.child_subreaper);
            put_int(t, a.addr(1), i32::from(v))?;
            Ok(0)
        }
        PR_SET_NO_NEW_PRIVS => {
            if a.raw(1) != 1 || a.raw(2) != 0 || a.raw(3) != 0 || a.raw(4) != 0 {
                return Err(Errno::EINVAL);
            }
            attrs.with_thread(tid, |x| x.no_new_privs = true)?;
            Ok(0)
        }
        PR_GET_NO_NEW_PRIVS => {
            if a.raw(1) != 0 || a.raw(2) != 0 || a.raw(3) != 0 || a.raw(4) != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(u64::from(attrs.with_thread(tid, |x| x.no_new_privs)?))
        }
        _ => Err(Errno::EINVAL),
    }
}

/// The thread group of thread `pid` (0: the caller's), ESRCH if none.
fn group_of_tid(t: &Task, pid: i32) -> Result<(Arc<ThreadGroup>, i32), Errno> {
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    if pid == 0 {
        return Ok((t.tg().clone(), t.tid()));
    }
    let k = t.kernel();
    let tgid = k.pids.tgid_of(pid).ok_or(Errno::ESRCH)?;
    let tg = k.pids.thread_group(tgid).ok_or(Errno::ESRCH)?;
    Ok((tg, pid))
}

/// `cpumask_size()`: the mask's bytes, whole longs over the sandbox's CPUs.
const MASK_BYTES: usize = 8;

pub fn sched_getaffinity(t: &mut Task, a: &Args) -> SysResult {
    let len = a.raw(1);
    let cpus = attrs::sandbox_cpus();
    if len.saturating_mul(8) < u64::from(cpus) || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let (tg, tid) = group_of_tid(t, a.int(0))?;
    let mask = tg.attrs().with_thread(tid, |x| x.affinity)?;
    let n = (len as usize).min(MASK_BYTES);
    t.mm().copy_out(a.addr(2), &mask.to_le_bytes()[..n])?;
    Ok(n as u64)
}

/// getcpu(2): the sandbox's CPUs are virtual, so a task is on the first
/// CPU its affinity mask allows (a pinned task finds itself where it asked
/// to be), on NUMA node 0; the host's CPU is never shown.
pub fn getcpu(t: &mut Task, a: &Args) -> SysResult {
    let tid = t.tid();
    let mask = t.tg().attrs().with_thread(tid, |x| x.affinity)?;
    let cpu = mask
        .trailing_zeros()
        .min(attrs::sandbox_cpus().saturating_sub(1));
    if a.addr(0) != 0 {
        t.mm().copy_out(a.addr(0), &cpu.to_le_bytes())?;
    }
    if a.addr(1) != 0 {
        t.mm().copy_out(a.addr(1), &0u32.to_le_bytes())?;
    }
    Ok(0)
}

pub fn sched_setaffinity(t: &mut Task, a: &Args) -> SysResult {
    let len = (a.raw(1) as usize).min(MASK_BYTES);
    let mut raw = vec![0u8; len];
    t.mm().copy_in(a.addr(2), &mut raw)?;
    let (tg, tid) = group_of_tid(t, a.int(0))?;
    let mask = attrs::affinity_from_user(&raw, attrs::sandbox_cpus())?;
    tg.attrs().with_thread(tid, |x| x.affinity = mask)?;
    if mask & 1 == 0 {
        // getcpu no longer says CPU 0 for every task: the vDSO asks.
        t.kernel().clocks.set_getcpu_local(false);
    }
    Ok(0)
}

/// Everything runs SCHED_OTHER at static priority 0.
pub fn sched_getscheduler(t: &mut Task, a: &Args) -> SysResult {
    group_of_tid(t, a.int(0))?;
    Ok(libc::SCHED_OTHER as u64)
}

pub fn sched_getparam(t: &mut Task, a: &Args) -> SysResult {
    if a.addr(1) == 0 {
        return Err(Errno::EINVAL);
    }
    group_of_tid(t, a.int(0))?;
    put_int(t, a.addr(1), 0)?;
    Ok(0)
}

pub fn sched_get_priority_max(_: &mut Task, a: &Args) -> SysResult {
    match a.int(0) {
        libc::SCHED_FIFO | libc::SCHED_RR => Ok(99),
        libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_get_priority_min(_: &mut Task, a: &Args) -> SysResult {
    match a.int(0) {
        libc::SCHED_FIFO | libc::SCHED_RR => Ok(1),
        libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// The processes getpriority/setpriority's (which, who) names.
fn priority_targets(t: &Task, which: u32, who: i32) -> Result<Vec<Arc<ThreadGroup>>, Errno> {
    let k = t.kernel();
    let all = k.pids.thread_groups();
    let found: Vec<Arc<ThreadGroup>> = match which {
        libc::PRIO_PROCESS => {
            if who == 0 {
                vec![t.tg().clone()]
            } else {
                k.pids
                    .tgid_of(who)
                    .and_then(|g| k.pids.thread_group(g))
                    .into_iter()
                    .collect()
            }
        }
        libc::PRIO_PGRP => {
            let pgid = if who == 0 { t.tg().links().pgid } else { who };
            all.into_iter().filter(|g| g.links().pgid == pgid).collect()
        }
        libc::PRIO_USER => {
            // The sandbox's processes all run with its credentials, as far
            // as per-process state goes: a process's user is its caller's
            // real uid unless another was named.
            let uid = if who == 0 { t.creds().uid } else { who as u32 };
            if uid == t.creds().uid {
                all
            } else {
                Vec::new()
            }
        }
        _ => return Err(Errno::EINVAL),
    };
    if found.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok(found)
}

/// getpriority: the best (lowest) nice value among the targets, as the
/// kernel's 40..1 (20 - nice) so that no success is negative.
pub fn getpriority(t: &mut Task, a: &Args) -> SysResult {
    let targets = priority_targets(t, a.uint(0), a.int(1))?;
    let best = targets
        .iter()
        .map(|g| g.attrs().with(|p| p.nice))
        .min()
        .unwrap_or(0);
    Ok((20 - best) as u64)
}

/// setpriority: another user's process needs CAP_SYS_NICE (EPERM, Linux's
/// set_one_prio); lowering a nice value needs CAP_SYS_NICE or room under
/// RLIMIT_NICE, else EACCES, as Linux's can_nice.
pub fn setpriority(t: &mut Task, a: &Args) -> SysResult {
    let targets = priority_targets(t, a.uint(0), a.int(1))?;
    let nice = attrs::clamp_nice(i64::from(a.int(2)));
    let capable = t.creds().capable(CAP_SYS_NICE);
    let euid = t.creds().euid;
    let foreign = targets
        .iter()
        .any(|g| g.creds().is_some_and(|c| c.uid != euid && c.euid != euid));
    if foreign && !capable {
        return Err(Errno::EPERM);
    }
    let rlim = t
        .limits()
        .get(libc::RLIMIT_NICE)
        .map(|l| l.cur)
        .unwrap_or(0);
    for g in targets {
        let current = g.attrs().with(|p| p.nice);
        if nice < current && !capable && (20 - i64::from(nice)) as u64 > rlim {
            return Err(Errno::EACCES);
        }
        g.attrs().with(|p| p.nice = nice);
    }
    Ok(0)
}

/// `struct rusage`: two timevals and fourteen longs.
const RUSAGE_SIZE: usize = 144;
const RUSAGE_SELF: i32 = 0;
const RUSAGE_CHILDREN: i32 = -1;
const RUSAGE_THREAD: i32 = 1;

fn timeval(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    b[8..].copy_from_slice(&(((ns % 1_000_000_000) / 1000) as i64).to_le_bytes());
    b
}

pub fn getrusage(t: &mut Task, a: &Args) -> SysResult {
    let u: CpuUsage = match a.int(0) {
        RUSAGE_SELF => t.tg().attrs().usage(),
        RUSAGE_THREAD => t.thread_usage(),
        RUSAGE_CHILDREN => t.tg().attrs().children_usage(),
        _ => return Err(Errno::EINVAL),
    };
    let mut b = [0u8; RUSAGE_SIZE];
    b[..16].copy_from_slice(&timeval(u.user_ns));
    b[16..32].copy_from_slice(&timeval(u.sys_ns));
    if a.int(0) != RUSAGE_CHILDREN {
        // ru_maxrss, in KiB: the resident size now stands for its peak.
        let rss_kib = t.mm().rss() / 1024;
        b[32..40].copy_from_slice(&(rss_kib as i64).to_le_bytes());
    }
    t.mm().copy_out(a.addr(1), &b)?;
    Ok(0)
}

/// USER_HZ: times(2) counts clock ticks of 10 ms.
const USER_HZ: u64 = 100;

fn ticks(ns: u64) -> i64 {
    (ns / (1_000_000_000 / USER_HZ)) as i64
}

/// times: the process's and its reaped children's user and system time;
/// returns the ticks since boot.
pub fn times(t: &mut Task, a: &Args) -> SysResult {
    if a.addr(0) != 0 {
        let me = t.tg().attrs().usage();
        let kids = t.tg().attrs().children_usage();
        let mut b = [0u8; 32];
        for (i, ns) in [me.user_ns, me.sys_ns, kids.user_ns, kids.sys_ns]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&ticks(*ns).to_le_bytes());
        }
        t.mm().copy_out(a.addr(0), &b)?;
    }
    let up = t.kernel().clocks.uptime();
    Ok(ticks(u64::try_from(up.as_nanos()).unwrap_or(u64::MAX)) as u64)
}

/// An id argument: -1 means "unchanged".
fn id_arg(a: &Args, i: usize) -> Option<u32> {
    let v = a.uint(i);
    (v != u32::MAX).then_some(v)
}

/// Applies a uid change with its effect on the capability sets
/// (capabilities(7), "Effect of user ID changes").
fn commit_uids(t: &mut Task, mut new: Credentials) {
    new.fix_caps_after_setuid(t.creds());
    commit(t, new);
}

/// Applies a credentials change; a changed effective id makes the process
/// undumpable, as Linux's commit_creds (suid_dumpable 0).
fn commit(t: &mut Task, new: Credentials) {
    let old = t.creds();
    if old.euid != new.euid || old.egid != new.egid {
        t.tg().attrs().with(|p| p.dumpable = 0);
    }
    let fs_follows = |o: u32, n: u32| o != n;
    let (uid_moved, gid_moved) = (
        fs_follows(old.euid, new.euid),
        fs_follows(old.egid, new.egid),
    );
    let tid = t.tid();
    let _ = t.tg().attrs().with_thread(tid, |x| {
        // fsuid and fsgid follow the effective ids whenever those change.
        if uid_moved {
            x.fsuid = None;
        }
        if gid_moved {
            x.fsgid = None;
        }
    });
    t.set_creds(new);
}

/// setresuid-style check for an unprivileged caller: each new id is one
/// of the current real, effective or saved ids.
fn allowed(ids: [u32; 3], new: Option<u32>) -> bool {
    new.is_none_or(|n| ids.contains(&n))
}

pub fn setuid(t: &mut Task, a: &Args) -> SysResult {
    let uid = id_arg(a, 0).ok_or(Errno::EINVAL)?;
    let mut c = t.creds().clone();
    if c.capable(CAP_SETUID) {
        (c.uid, c.euid, c.suid) = (uid, uid, uid);
    } else if uid == c.uid || uid == c.suid {
        c.euid = uid;
    } else {
        return Err(Errno::EPERM);
    }
    commit_uids(t, c);
    Ok(0)
}

pub fn setgid(t: &mut Task, a: &Args) -> SysResult {
    let gid = id_arg(a, 0).ok_or(Errno::EINVAL)?;
    let mut c = t.creds().clone();
    if c.capable(CAP_SETGID) {
        (c.gid, c.egid, c.sgid) = (gid, gid, gid);
    } else if gid == c.gid || gid == c.sgid {
        c.egid = gid;
    } else {
        return Err(Errno::EPERM);
    }
    commit(t, c);
    Ok(0)
}

pub fn setreuid(t: &mut Task, a: &Args) -> SysResult {
    let (r, e) = (id_arg(a, 0), id_arg(a, 1));
    let mut c = t.creds().clone();
    if !c.capable(CAP_SETUID) {
        let r_ok = r.is_none_or(|r| r == c.uid || r == c.euid);
        let e_ok = allowed([c.uid, c.euid, c.suid], e);
        if !r_ok || !e_ok {
            return Err(Errno::EPERM);
        }
    }
    let old_ruid = c.uid;
    if let Some(r) = r {
        c.uid = r;
    }
    if let Some(e) = e {
        c.euid = e;
    }
    // The saved id follows the effective one when the real id is set or
    // the effective one moves away from the old real id.
    if r.is_some() || e.is_some_and(|e| e != old_ruid) {
        c.suid = c.euid;
    }
    commit_uids(t, c);
    Ok(0)
}

pub fn setregid(t: &mut Task, a: &Args) -> SysResult {
    let (r, e) = (id_arg(a, 0), id_arg(a, 1));
    let mut c = t.creds().clone();
    if !c.capable(CAP_SETGID) {
        let r_ok = r.is_none_or(|r| r == c.gid || r == c.egid);
        let e_ok = allowed([c.gid, c.egid, c.sgid], e);
        if !r_ok || !e_ok {
            return Err(Errno::EPERM);
        }
    }
    let old_rgid = c.gid;
    if let Some(r) = r {
        c.gid = r;
    }
    if let Some(e) = e {
        c.egid = e;
    }
    if r.is_some() || e.is_some_and(|e| e != old_rgid) {
        c.sgid = c.egid;
    }
    commit(t, c);
    Ok(0)
}

pub fn setresuid(t: &mut Task, a: &Args) -> SysResult {
    let (r, e, s) = (id_arg(a, 0), id_arg(a, 1), id_arg(a, 2));
    let mut c = t.creds().clone();
    let ids = [c.uid, c.euid, c.suid];
    let own = allowed(ids, r) && allowed(ids, e) && allowed(ids, s);
    if !(c.capable(CAP_SETUID) || own) {
        return Err(Errno::EPERM);
    }
    c.uid = r.unwrap_or(c.uid);
    c.euid = e.unwrap_or(c.euid);
    c.suid = s.unwrap_or(c.suid);
    commit_uids(t, c);
    Ok(0)
}

pub fn setresgid(t: &mut Task, a: &Args) -> SysResult {
    let (r, e, s) = (id_arg(a, 0), id_arg(a, 1), id_arg(a, 2));
    let mut c = t.creds().clone();
    let ids = [c.gid, c.egid, c.sgid];
    let own = allowed(ids, r) && allowed(ids, e) && allowed(ids, s);
    if !(c.capable(CAP_SETGID) || own) {
        return Err(Errno::EPERM);
    }
    c.gid = r.unwrap_or(c.gid);
    c.egid = e.unwrap_or(c.egid);
    c.sgid = s.unwrap_or(c.sgid);
    commit(t, c);
    Ok(0)
}

/// Linux's NGROUPS_MAX.
const NGROUPS_MAX: u64 = 65536;

pub fn setgroups(t: &mut Task, a: &Args) -> SysResult {
    let n = a.raw(0);
    if n > NGROUPS_MAX {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; n as usize * 4];
    t.mm().copy_in(a.addr(1), &mut raw)?;
    if !t.creds().capable(CAP_SETGID) {
        return Err(Errno::EPERM);
    }
    let mut groups: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Linux keeps the list sorted (groups_sort); getgroups shows it so.
    groups.sort_unstable();
    let mut c = t.creds().clone();
    c.groups = groups;
    t.set_creds(c);
    Ok(0)
}

/// setfsuid/setfsgid: always return the old id; change it only to one
/// of the real, effective, saved or current fs ids, or with the
/// capability. -1 (an invalid id) changes nothing.
fn set_fs_id(t: &mut Task, new: u32, uid: bool) -> SysResult {
    let c = t.creds().clone();
    let tid = t.tid();
    let attrs = t.tg().clone();
    let cur = attrs
        .attrs()
        .with_thread(tid, |x| if uid { x.fsuid } else { x.fsgid })?
        .unwrap_or(if uid { c.euid } else { c.egid });
    let ids = if uid {
        [c.uid, c.euid, c.suid, cur]
    } else {
        [c.gid, c.egid, c.sgid, cur]
    };
    let cap = if uid { CAP_SETUID } else { CAP_SETGID };
    if new != u32::MAX && (c.capable(cap) || ids.contains(&new)) {
        let eff = if uid { c.euid } else { c.egid };
        let v = (new != eff).then_some(new);
        attrs
            .attrs()
            .with_thread(tid, |x| if uid { x.fsuid = v } else { x.fsgid = v })?;
        if uid && new != cur {
            let mut c = c;
            c.fix_caps_after_setfsuid(cur, new);
            t.set_creds(c);
        }
    }
    Ok(u64::from(cur))
}

pub fn setfsuid(t: &mut Task, a: &Args) -> SysResult {
    set_fs_id(t, a.uint(0), true)
}

pub fn setfsgid(t: &mut Task, a: &Args) -> SysResult {
    set_fs_id(t, a.uint(0), false)
}
