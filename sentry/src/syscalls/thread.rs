//! Processes and threads (gVisor's sys_thread.go): clone, fork, vfork,
//! execve, exit, wait, process groups and sessions.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::clone::CloneArgs;
use crate::kernel::wait::{WaitOptions, WaitTarget, Waited};
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

/// clone(flags, stack, parent_tid, child_tid, tls) (the order is the
/// architecture's).
pub fn clone(t: &mut Task, a: &Args) -> SysResult {
    t.clone_task(crate::arch::clone_args(a))
        .map(|tid| tid as u64)
}

pub fn fork(t: &mut Task, _: &Args) -> SysResult {
    t.clone_task(CloneArgs {
        flags: libc::SIGCHLD as u64,
        stack: 0,
        parent_tid: 0,
        child_tid: 0,
        tls: 0,
        pidfd: 0,
    })
    .map(|tid| tid as u64)
}

pub fn vfork(t: &mut Task, _: &Args) -> SysResult {
    t.clone_task(CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64,
        stack: 0,
        parent_tid: 0,
        child_tid: 0,
        tls: 0,
        pidfd: 0,
    })
    .map(|tid| tid as u64)
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
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
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
    // clone3 takes the exit signal apart; the CSIGNAL bits of flags are
    // invalid there.
    if flags & 0xff != 0 || exit_signal > 64 {
        return Err(Errno::EINVAL);
    }
    if exit_signal != 0 && flags & libc::CLONE_THREAD as u64 != 0 {
        return Err(Errno::EINVAL);
    }
    let stack_top = match (stack, stack_size) {
        (0, 0) => 0,
        (0, _) | (_, 0) => return Err(Errno::EINVAL),
        (s, n) => s.checked_add(n).ok_or(Errno::EINVAL)?,
    };
    t.clone_task(CloneArgs {
        flags: flags | exit_signal,
        stack: stack_top,
        parent_tid,
        child_tid,
        tls,
        pidfd,
    })
    .map(|tid| tid as u64)
}

/// An execve's strings: its arguments or its environment.
type Strings = Vec<Vec<u8>>;

/// The argument and environment vectors of an execve.
fn exec_vectors(t: &Task, argv: u64, envp: u64) -> Result<(Strings, Strings), Errno> {
    use crate::kernel::exec::MAX_ARG_STRINGS;
    use crate::loader::MAX_ARG_STRLEN;
    let read = |addr: u64| {
        if addr == 0 {
            Ok(Vec::new())
        } else {
            t.mm()
                .read_string_array(addr, MAX_ARG_STRINGS, MAX_ARG_STRLEN)
        }
    };
    Ok((read(argv)?, read(envp)?))
}

fn exec_path(t: &Task, addr: u64) -> Result<String, Errno> {
    let path = t.mm().read_c_string(addr, 4096)?;
    String::from_utf8(path).map_err(|_| Errno::ENOENT)
}

pub fn execve(t: &mut Task, a: &Args) -> SysResult {
    let path = exec_path(t, a.addr(0))?;
    let (argv, envp) = exec_vectors(t, a.addr(1), a.addr(2))?;
    let cwd = t.cwd();
    t.exec_from(&cwd, &path, argv, envp)
        .map_err(|e| e.errno())?;
    // The new image starts with the registers exec set; rax of a
    // successful execve is 0.
    Ok(0)
}

/// execveat(dirfd, path, argv, envp, flags): a relative path from
/// `dirfd`; AT_EMPTY_PATH runs the file `dirfd` itself.
pub fn execveat(t: &mut Task, a: &Args) -> SysResult {
    let dirfd = a.int(0);
    let flags = a.int(4);
    if flags & !(libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = exec_path(t, a.addr(1))?;
    let (argv, envp) = exec_vectors(t, a.addr(2), a.addr(3))?;
    let (start, path) = if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let f = t.fds().lock().file(dirfd)?;
        let d = f.dentry().cloned().ok_or(Errno::EACCES)?;
        let p = t.kernel().vfs.dentry_path(&d);
        (t.root(), p)
    } else {
        (super::fs::start_dir(t, dirfd, path.as_bytes())?, path)
    };
    if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        let d = t
            .kernel()
            .vfs
            .resolve(&start, path.as_bytes(), false)
            .map_err(|_| Errno::ENOENT)?;
        if d.is_symlink() {
            return Err(Errno::ELOOP);
        }
    }
    t.exec_from(&start, &path, argv, envp)
        .map_err(|e| e.errno())?;
    Ok(0)
}

const WNOHANG: i32 = 1;
const WUNTRACED: i32 = 2;
const WEXITED: i32 = 4;
const WCONTINUED: i32 = 8;
const WNOWAIT: i32 = 0x0100_0000;
const WNOTHREAD: i32 = 0x2000_0000;
const WALL: i32 = 0x4000_0000;
const WCLONE: i32 = 0x8000_0000_u32 as i32;

fn wait_flags(options: i32) -> WaitOptions {
    WaitOptions {
        exited: options & WEXITED != 0,
        stopped: options & WUNTRACED != 0,
        continued: options & WCONTINUED != 0,
        nohang: options & WNOHANG != 0,
        nowait: options & WNOWAIT != 0,
        all: options & WALL != 0,
        clone: options & WCLONE != 0,
    }
}

/// `struct rusage` with the child's user and system time.
fn rusage_bytes(w: &Waited) -> [u8; 144] {
    let mut b = [0u8; 144];
    for (at, ns) in [(0, w.usage.user_ns), (16, w.usage.sys_ns)] {
        let d = std::time::Duration::from_nanos(ns);
        b[at..at + 8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&i64::from(d.subsec_micros()).to_le_bytes());
    }
    b
}

/// wait4(pid, wstatus, options, rusage).
pub fn wait4(t: &mut Task, a: &Args) -> SysResult {
    let options = a.int(2);
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    let target = match a.int(0) {
        -1 => WaitTarget::Any,
        0 => WaitTarget::Pgid(t.tg().links().pgid),
        p if p > 0 => WaitTarget::Pid(p),
        p => WaitTarget::Pgid(p.checked_neg().ok_or(Errno::ESRCH)?),
    };
    let mut opts = wait_flags(options);
    opts.exited = true;
    let Some(w) = t.wait_child(target, opts)? else {
        return Ok(0);
    };
    if a.addr(1) != 0 {
        t.mm().copy_out(a.addr(1), &w.status_word().to_le_bytes())?;
    }
    if a.addr(3) != 0 {
        t.mm().copy_out(a.addr(3), &rusage_bytes(&w))?;
    }
    Ok(w.pid as u64)
}

const P_ALL: i32 = 0;
const P_PID: i32 = 1;
const P_PGID: i32 = 2;
const P_PIDFD: i32 = 3;

/// waitid(idtype, id, infop, options, rusage).
pub fn waitid(t: &mut Task, a: &Args) -> SysResult {
    let options = a.int(3);
    let known = WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE;
    if options & !known != 0 || options & (WEXITED | WUNTRACED | WCONTINUED) == 0 {
        return Err(Errno::EINVAL);
    }
    let id = a.int(1);
    // A PIDFD_NONBLOCK pidfd waits as WNOHANG, and says EAGAIN when asked
    // without it.
    let mut nonblock = false;
    let target = match a.int(0) {
        P_ALL => WaitTarget::Any,
        P_PID if id > 0 => WaitTarget::Pid(id),
        P_PGID if id == 0 => WaitTarget::Pgid(t.tg().links().pgid),
        P_PGID if id > 0 => WaitTarget::Pgid(id),
        P_PIDFD => {
            let f = t.fds().lock().file(id)?;
            // A reaped process is no child any more, whoever has its pid.
            let pidfd = crate::kernel::pidfd::pidfd_of(&f)?;
            pidfd.process().map_err(|_| Errno::ECHILD)?;
            nonblock = f.status_flags() & libc::O_NONBLOCK != 0;
            // A thread's pidfd names the thread, never a child (ECHILD),
            // unless it is a child's leader.
            WaitTarget::Pid(pidfd.pid())
        }
        _ => return Err(Errno::EINVAL),
    };
    let flags = wait_flags(options | if nonblock { WNOHANG } else { 0 });
    let waited = t.wait_child(target, flags)?;
    if waited.is_none() && nonblock && options & WNOHANG == 0 {
        return Err(Errno::EAGAIN);
    }
    let infop = a.addr(2);
    if infop != 0 {
        // Nothing to report (WNOHANG) leaves a zeroed siginfo, as Linux.
        let bytes = match &waited {
            Some(w) => {
                let (code, status) = w.code_and_status();
                crate::kernel::signal::SigInfo::child(libc::SIGCHLD, code, w.pid, w.uid, status)
                    .to_bytes()
            }
            None => [0u8; 128],
        };
        t.mm().copy_out(infop, &bytes)?;
    }
    if let (Some(w), true) = (&waited, a.addr(4) != 0) {
        t.mm().copy_out(a.addr(4), &rusage_bytes(w))?;
    }
    Ok(0)
}

pub fn getpgrp(t: &mut Task, _: &Args) -> SysResult {
    Ok(t.tg().links().pgid as u64)
}

pub fn getpgid(t: &mut Task, a: &Args) -> SysResult {
    t.pgid_sid_of(a.int(0)).map(|(pgid, _)| pgid as u64)
}

pub fn getsid(t: &mut Task, a: &Args) -> SysResult {
    t.pgid_sid_of(a.int(0)).map(|(_, sid)| sid as u64)
}

pub fn setpgid(t: &mut Task, a: &Args) -> SysResult {
    t.setpgid(a.int(0), a.int(1)).map(|()| 0)
}

pub fn setsid(t: &mut Task, _: &Args) -> SysResult {
    t.setsid().map(|sid| sid as u64)
}

/// unshare(flags): the process stops sharing its descriptor table or fs
/// context.
pub fn unshare(t: &mut Task, a: &Args) -> SysResult {
    t.unshare(a.raw(0)).map(|()| 0)
}

/// pidfd_open(pid, flags): a pidfd of process `pid`, or with PIDFD_THREAD
/// of thread `pid` (without it a thread that is not a process's leader
/// is EINVAL).
pub fn pidfd_open(t: &mut Task, a: &Args) -> SysResult {
    use crate::kernel::pidfd::{PidFd, PIDFD_THREAD};
    let (pid, flags) = (a.int(0), a.int(1));
    if pid <= 0 || flags & !(libc::O_NONBLOCK | PIDFD_THREAD) != 0 {
        return Err(Errno::EINVAL);
    }
    let nonblock = flags & libc::O_NONBLOCK != 0;
    let f = if flags & PIDFD_THREAD != 0 {
        let tgid = t.kernel().pids.tgid_of(pid).ok_or(Errno::ESRCH)?;
        let tg = t.kernel().process(tgid).ok_or(Errno::ESRCH)?;
        PidFd::open_thread(&tg, pid, nonblock)?
    } else {
        let tg = t.kernel().process(pid).ok_or_else(|| {
            if t.kernel().pids.tgid_of(pid).is_some() {
                Errno::EINVAL
            } else {
                Errno::ESRCH
            }
        })?;
        PidFd::open(&tg, nonblock)
    };
    let limit = t.nofile_limit();
    t.fds().lock().insert(f, true, limit).map(|fd| fd as u64)
}

/// pidfd_getfd(pidfd, targetfd, flags): a copy, close-on-exec, of another
/// process's descriptor.
pub fn pidfd_getfd(t: &mut Task, a: &Args) -> SysResult {
    if a.raw(2) != 0 {
        return Err(Errno::EINVAL);
    }
    let pidfd = t.fds().lock().file(a.fd(0))?;
    let f = crate::kernel::pidfd::pidfd_of(&pidfd)?.get_fd(t, a.fd(1))?;
    let limit = t.nofile_limit();
    t.fds().lock().insert(f, true, limit).map(|fd| fd as u64)
}

/// pidfd_send_signal(pidfd, sig, info, flags): kill(2) through a pidfd,
/// optionally with a siginfo whose si_code says it comes from userspace.
pub fn pidfd_send_signal(t: &mut Task, a: &Args) -> SysResult {
    use crate::kernel::pidfd::SignalScope;
    use crate::kernel::signal::{SI_TKILL, SI_USER};
    // Flags first, as Linux: at most one scope, no other bit.
    let flags = a.raw(3);
    if flags & !7 != 0 || flags.count_ones() > 1 {
        return Err(Errno::EINVAL);
    }
    let f = t.fds().lock().file(a.fd(0))?;
    let pidfd = crate::kernel::pidfd::pidfd_of(&f)?;
    let scope = SignalScope::from_flags(flags, pidfd)?;
    let tg = pidfd.process()?;
    let signo = a.int(1);
    if !(0..=64).contains(&signo) {
        return Err(Errno::EINVAL);
    }
    let mut info = crate::kernel::signal::SigInfo {
        signo,
        code: if scope == SignalScope::Thread {
            SI_TKILL
        } else {
            SI_USER
        },
        addr: 0,
        pid: t.tgid(),
        uid: t.creds().uid,
    };
    if a.addr(2) != 0 {
        let mut b = [0u8; 128];
        t.mm().copy_in(a.addr(2), &mut b)?;
        let int = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut value = [0u8; 8];
        value.copy_from_slice(&b[24..32]);
        if int(0) != signo {
            return Err(Errno::EINVAL);
        }
        // Only the kernel may claim a kernel si_code, except to oneself.
        let code = int(8);
        if (code >= 0 || code == SI_TKILL) && tg.tgid() != t.tgid() {
            return Err(Errno::EPERM);
        }
        info.code = code;
        info.pid = int(16);
        info.uid = int(20) as u32;
        info.addr = u64::from_le_bytes(value);
    }
    match scope {
        SignalScope::Process => signal_processes(t, &[tg], info)?,
        SignalScope::ProcessGroup => {
            let targets = t.kill_targets(-tg.links().pgid)?;
            signal_processes(t, &targets, info)?
        }
        SignalScope::Thread => {
            let (tg, member) = pidfd.signal_thread()?;
            if !t.may_signal(&tg, signo) {
                return Err(Errno::EPERM);
            }
            if signo != 0 {
                t.kernel().on_generate(&tg, signo);
                if tg.tgid() == t.tgid() && pidfd.pid() == t.tid() {
                    t.send_signal(info);
                } else {
                    tg.queue_to(&member, info);
                }
            }
        }
    }
    Ok(0)
}

/// Sends `info` to each of `targets` the caller may signal (EPERM if it
/// may signal none). A zombie is still that process until reaped: the
/// signal is accepted, and nothing is left to take it (as Linux).
fn signal_processes(
    t: &mut Task,
    targets: &[std::sync::Arc<crate::kernel::thread_group::ThreadGroup>],
    info: crate::kernel::signal::SigInfo,
) -> Result<(), Errno> {
    let mut sent = false;
    for tg in targets {
        if !t.may_signal(tg, info.signo) {
            continue;
        }
        sent = true;
        if !tg.is_zombie() && info.signo != 0 {
            t.signal_process_from_here(tg, info);
        }
    }
    if sent {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}
