//! Process identity, exit and per-thread setup: exit, exit_group, get*id,
//! set_tid_address, set_robust_list, arch_prctl, prlimit64, umask.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::clone::CloneArgs;
use crate::kernel::limits::Limit;
use crate::kernel::{ExitStatus, Task};

/// exit: this thread only.
pub fn exit(t: &mut Task, a: &Args) -> SysResult {
    t.set_exit(ExitStatus::Exited(a.int(0) & 0xff));
    Ok(0)
}

/// exit_group: every thread of the process.
pub fn exit_group(t: &mut Task, a: &Args) -> SysResult {
    let status = ExitStatus::Exited(a.int(0) & 0xff);
    t.tg().begin_exit(status, t.tid());
    t.set_exit(status);
    Ok(0)
}

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

pub fn getpgrp(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.tgid() as u64)
}

pub fn getpgid(t: &mut Task, a: &Args) -> SysResult {
    match a.int(0) {
        0 => Ok(t.tgid() as u64),
        pid if pid == t.tgid() => Ok(pid as u64),
        _ => Err(Errno::ESRCH),
    }
}

pub fn getsid(t: &mut Task, a: &Args) -> SysResult {
    getpgid(t, a)
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
/// unknown pid); the new value is checked as setrlimit checks it.
pub fn prlimit64(t: &mut Task, a: &Args) -> SysResult {
    let pid = a.int(0);
    let tg = if pid == 0 || pid == t.tgid() {
        t.tg().clone()
    } else {
        let k = t.kernel();
        k.pids
            .tgid_of(pid)
            .and_then(|g| k.pids.thread_group(g))
            .ok_or(Errno::ESRCH)?
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
    let privileged = t.creds().euid == 0;
    let mut limits = tg.limits();
    limits.set_checked(resource, new, privileged)?;
    if resource == libc::RLIMIT_STACK {
        limits.apply_to_mm(&mut tg.mm());
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

/// A single task may only wait for children it does not have.
pub fn wait4(_: &mut Task, _: &Args) -> SysResult {
    Err(Errno::ECHILD)
}

pub fn execve(t: &mut Task, a: &Args) -> SysResult {
    use crate::kernel::exec::MAX_ARG_STRINGS;
    use crate::loader::MAX_ARG_STRLEN;
    let path = t.mm().read_c_string(a.addr(0), 4096)?;
    let path = String::from_utf8(path).map_err(|_| Errno::ENOENT)?;
    let argv = if a.addr(1) == 0 {
        Vec::new()
    } else {
        t.mm()
            .read_string_array(a.addr(1), MAX_ARG_STRINGS, MAX_ARG_STRLEN)?
    };
    let envp = if a.addr(2) == 0 {
        Vec::new()
    } else {
        t.mm()
            .read_string_array(a.addr(2), MAX_ARG_STRINGS, MAX_ARG_STRLEN)?
    };
    t.exec(&path, argv, envp).map_err(|e| {
        if matches!(e, crate::kernel::exec::ExecError::Threads) {
            t.kernel()
                .log_unsupported(libc::SYS_execve as u64, "from a multi-threaded process");
        }
        e.errno()
    })?;
    // The new image starts with the registers exec set; rax of a
    // successful execve is 0.
    Ok(0)
}

/// clone(flags, stack, parent_tid, child_tid, tls) (the order is the
/// architecture's): threads only for now.
pub fn clone(t: &mut Task, a: &Args) -> SysResult {
    let r = t.clone_thread(crate::arch::clone_args(a));
    new_thread(t, libc::SYS_clone, r)
}

/// A clone's result. ENOSYS means a new process was asked for (fork),
/// which cryo does not do yet: logged once, as every ENOSYS.
fn new_thread(t: &Task, nr: libc::c_long, r: Result<i32, Errno>) -> SysResult {
    if r == Err(Errno::ENOSYS) {
        t.kernel()
            .log_unsupported(nr as u64, "a new process (fork) without CLONE_THREAD");
    }
    r.map(|tid| tid as u64)
}

/// clone3(struct clone_args *, size).
pub fn clone3(t: &mut Task, a: &Args) -> SysResult {
    const CLONE_ARGS_SIZE_VER0: u64 = 64;
    let size = a.raw(1);
    if !(CLONE_ARGS_SIZE_VER0..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 64];
    t.mm().copy_in(a.addr(0), &mut b)?;
    let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls) = (
        word(0),
        word(1),
        word(2),
        word(3),
        word(4),
        word(5),
        word(6),
        word(7),
    );
    // pidfd is only read with CLONE_PIDFD, which clone_thread refuses.
    let _ = pidfd;
    if exit_signal != 0 && flags & libc::CLONE_THREAD as u64 != 0 {
        return Err(Errno::EINVAL);
    }
    let stack_top = if stack == 0 {
        0
    } else {
        stack.checked_add(stack_size).ok_or(Errno::EINVAL)?
    };
    let r = t.clone_thread(CloneArgs {
        flags,
        stack: stack_top,
        parent_tid,
        child_tid,
        tls,
    });
    new_thread(t, libc::SYS_clone3, r)
}
