//! Process identity and per-thread setup: get*id,
//! set_tid_address, set_robust_list, arch_prctl, prlimit64, umask.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::limits::Limit;
use crate::kernel::Task;

pub fn getpid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.tgid() as u64)
}

pub fn gettid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.tid() as u64)
}

pub fn getppid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.ppid() as u64)
}

pub fn getuid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.creds().uid as u64)
}

pub fn geteuid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.creds().euid as u64)
}

pub fn getgid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.creds().gid as u64)
}

pub fn getegid(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.creds().egid as u64)
}

/// getresuid/getresgid write three u32s.
fn write_ids(t: &mut Task, a: &Args, ids: [u32; 3]) -> SysResult {
    for (i, id) in ids.iter().enumerate() {
        t.mm().copy_out(a.addr(i), &id.to_le_bytes())?;
    }
    Ok(0)
}

pub fn getresuid(t: &mut Task, a: &Args) -> SysResult {
    let c = &t.creds();
    let ids = [c.uid, c.euid, c.suid];
    write_ids(t, a, ids)
}

pub fn getresgid(t: &mut Task, a: &Args) -> SysResult {
    let c = &t.creds();
    let ids = [c.gid, c.egid, c.sgid];
    write_ids(t, a, ids)
}

pub fn getgroups(t: &mut Task, a: &Args) -> SysResult {
    let size = a.int(0);
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    let groups = t.creds().groups.clone();
    if size == 0 {
        return Ok(groups.len() as u64);
    }
    if (size as usize) < groups.len() {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    t.mm().copy_out(a.addr(1), &bytes)?;
    Ok(groups.len() as u64)
}

pub fn set_tid_address(t: &mut Task, a: &Args) -> SysResult {
    t.set_clear_child_tid(a.addr(0));
    Ok(t.tid() as u64)
}

/// `struct robust_list_head` is three words on x86_64.
const ROBUST_LIST_HEAD_SIZE: u64 = 24;

pub fn set_robust_list(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(1) != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    t.set_robust_list(a.addr(0), a.raw(1));
    Ok(0)
}

fn limit_bytes(l: Limit) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&l.cur.to_le_bytes());
    b[8..].copy_from_slice(&l.max.to_le_bytes());
    b
}

fn read_limit(t: &Task, addr: u64) -> Result<Limit, Errno> {
    let mut b = [0u8; 16];
    t.mm().copy_in(addr, &mut b)?;
    let (cur, max) = b.split_at(8);
    let word = |s: &[u8]| {
        s.try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| Errno::EFAULT)
    };
    Ok(Limit {
        cur: word(cur)?,
        max: word(max)?,
    })
}

/// prlimit64: the limits of any process of the sandbox (ESRCH for an
/// unknown pid); another process's only if all its ids are the caller's
/// real ones, or with CAP_SYS_RESOURCE (EPERM, Linux's
/// check_prlimit_permission); the new value is checked as setrlimit
/// checks it.
pub fn prlimit64(t: &mut Task, a: &Args) -> SysResult {
    let pid = a.int(0);
    let tg = if pid == 0 || pid == t.tgid() {
        t.tg().clone()
    } else {
        let k = t.kernel();
        let tg = k
            .pids
            .tgid_of(pid)
            .and_then(|g| k.pids.thread_group(g))
            .ok_or(Errno::ESRCH)?;
        let me = t.creds();
        let same = tg.creds().is_some_and(|c| {
            [c.uid, c.euid, c.suid] == [me.uid; 3] && [c.gid, c.egid, c.sgid] == [me.gid; 3]
        });
        if !same && !me.capable(crate::kernel::creds::CAP_SYS_RESOURCE) {
            return Err(Errno::EPERM);
        }
        tg
    };
    let resource = a.uint(1);
    let old = tg.limits().get(resource)?;
    if a.addr(2) != 0 {
        let new = read_limit(t, a.addr(2))?;
        set_limit(t, &tg, resource, new)?;
    }
    if a.addr(3) != 0 {
        t.mm().copy_out(a.addr(3), &limit_bytes(old))?;
    }
    Ok(0)
}

/// Sets one of `tg`'s limits; the ones the memory manager applies itself
/// (RLIMIT_STACK) take effect at once.
fn set_limit(
    t: &Task,
    tg: &std::sync::Arc<crate::kernel::thread_group::ThreadGroup>,
    resource: u32,
    new: Limit,
) -> Result<(), Errno> {
    // Raising a hard limit needs CAP_SYS_RESOURCE.
    let privileged = t.creds().capable(crate::kernel::creds::CAP_SYS_RESOURCE);
    let mut limits = tg.limits();
    limits.set_checked(resource, new, privileged)?;
    if resource == libc::RLIMIT_STACK {
        if let Some(mm) = tg.mm_arc() {
            limits.apply_to_mm(&mut crate::kernel::thread_group::lock(&mm));
        }
    }
    drop(limits);
    if resource == libc::RLIMIT_CPU && (new.cur != u64::MAX || new.max != u64::MAX) {
        crate::kernel::attrs::watch_cpu_limit(tg);
    }
    Ok(())
}

pub fn getrlimit(t: &mut Task, a: &Args) -> SysResult {
    let l = t.limits().get(a.uint(0))?;
    t.mm().copy_out(a.addr(1), &limit_bytes(l))?;
    Ok(0)
}

pub fn setrlimit(t: &mut Task, a: &Args) -> SysResult {
    let new = read_limit(t, a.addr(1))?;
    let tg = t.tg().clone();
    set_limit(t, &tg, a.uint(0), new)?;
    Ok(0)
}

pub fn umask(t: &mut Task, a: &Args) -> SysResult {
    let old = t.set_umask(a.uint(0));
    Ok(old as u64)
}

pub fn sched_yield(_: &mut Task, _: &Args) -> SysResult {
    Ok(0)
}
