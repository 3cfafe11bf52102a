//! Terminals seen from the calling task (Linux's tty_io.c and tty_jobctrl.c):
//! the ioctls that read or change the caller's session (TIOCSCTTY,
//! TIOCNOTTY, TIOCGPGRP, TIOCSPGRP, TIOCGSID), the job-control checks of
//! reads, writes and settings from a background process group (SIGTTIN,
//! SIGTTOU, EIO for an orphaned group), acquiring a controlling terminal
//! at open, and /dev/tty. The terminals themselves are vfs/pty.rs.

use std::sync::Arc;

use super::{SysResult, ERESTARTSYS};
use crate::errno::Errno;
use crate::kernel::signal::{SigInfo, SI_KERNEL};
use crate::kernel::Task;
use crate::vfs::line_discipline::{Termios, TERMIOS_SIZE};
use crate::vfs::pty::{devpts_of, pty_of, DevTtyPlaceholder, JobSignals, Terminal, WinSize};
use crate::vfs::OpenFile;

/// The terminal and end an open file is, if it is a pty.
fn end(f: &OpenFile) -> Option<(Arc<Terminal>, bool)> {
    let e = pty_of(f.ops().as_ref())?;
    Some((e.terminal().clone(), e.is_master()))
}

fn kernel_signal(signo: i32) -> SigInfo {
    SigInfo {
        signo,
        code: SI_KERNEL,
        addr: 0,
        pid: 0,
        uid: 0,
    }
}

/// Whether the caller blocks or ignores `signo` (Linux's is_ignored in
/// tty_jobctrl.c).
fn ignores(t: &Task, signo: i32) -> bool {
    let blocked = t.signal_mask().0 & (1u64 << (signo - 1)) != 0;
    blocked
        || t.handlers()
            .get(signo)
            .map(|a| a.is_ignored())
            .unwrap_or(false)
}

/// Whether `tty` is the caller's controlling terminal.
fn is_ctty(t: &Task, tty: &Terminal) -> bool {
    let sid = t.tg().links().sid;
    tty.state().is_ctty_of(sid, t.tgid())
}

/// __tty_check_change: a process of a background group using its
/// controlling terminal gets `signo` (its whole group does) and the call
/// restarts once it is continued; EIO if its group is orphaned, or for a
/// read (SIGTTIN) it ignores.
fn check_change(t: &mut Task, tty: &Terminal, signo: i32) -> Result<(), Errno> {
    let links = t.tg().links();
    let fg = {
        let st = tty.state();
        if !st.is_ctty_of(links.sid, t.tgid()) {
            return Ok(());
        }
        st.pgrp
    };
    if fg == 0 || fg == links.pgid {
        return Ok(());
    }
    if ignores(t, signo) {
        return if signo == libc::SIGTTIN {
            Err(Errno::EIO)
        } else {
            Ok(())
        };
    }
    if t.kernel().is_orphaned_pgrp(links.pgid) {
        return Err(Errno::EIO);
    }
    for tg in t.kernel().process_group(links.pgid) {
        t.signal_process_from_here(&tg, kernel_signal(signo));
    }
    Err(ERESTARTSYS)
}

/// Before a read: a background read of the controlling terminal.
pub(super) fn check_read(t: &mut Task, f: &OpenFile) -> Result<(), Errno> {
    match end(f) {
        Some((tty, false)) => check_change(t, &tty, libc::SIGTTIN),
        _ => Ok(()),
    }
}

/// Before a write: a background write with TOSTOP.
pub(super) fn check_write(t: &mut Task, f: &OpenFile) -> Result<(), Errno> {
    match end(f) {
        Some((tty, false)) => {
            let tostop = tty.state().termios.lflag & libc::TOSTOP != 0;
            if tostop {
                check_change(t, &tty, libc::SIGTTOU)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

fn signals_of(t: &Task) -> std::sync::Weak<dyn JobSignals> {
    let k: Arc<dyn JobSignals> = t.kernel().clone();
    Arc::downgrade(&k)
}

/// After an open: /dev/tty becomes the controlling terminal (ENXIO
/// without one); a session leader without a controlling terminal that
/// opens a replica without O_NOCTTY acquires it (tty_open_proc_set_tty).
pub(super) fn opened(t: &mut Task, f: Arc<OpenFile>, flags: i32) -> Result<Arc<OpenFile>, Errno> {
    if f.ops().as_any().is::<DevTtyPlaceholder>() {
        let devpts = devpts_of(&t.kernel().vfs).ok_or(Errno::ENXIO)?;
        let sid = t.tg().links().sid;
        let tty = devpts.ctty_of(sid, t.tgid()).ok_or(Errno::ENXIO)?;
        let ops = tty.open_replica(false)?;
        tty.set_signals(signals_of(t));
        return Ok(OpenFile::new(
            f.dentry().cloned(),
            f.inode().clone(),
            ops,
            flags,
        ));
    }
    let Some((tty, master)) = end(&f) else {
        return Ok(f);
    };
    tty.set_signals(signals_of(t));
    if master || flags & libc::O_NOCTTY != 0 || !f.readable() {
        return Ok(f);
    }
    let links = t.tg().links();
    if links.sid != t.tgid() {
        return Ok(f);
    }
    let has_ctty = devpts_of(&t.kernel().vfs)
        .and_then(|d| d.ctty_of(links.sid, t.tgid()))
        .is_some();
    let mut st = tty.state();
    if !has_ctty && st.session == 0 {
        st.session = links.sid;
        st.pgrp = links.pgid;
        st.detached.clear();
    }
    drop(st);
    Ok(f)
}

fn read_int(t: &mut Task, addr: u64) -> Result<i32, Errno> {
    let mut b = [0u8; 4];
    t.mm().copy_in(addr, &mut b)?;
    Ok(i32::from_le_bytes(b))
}

fn write_int(t: &mut Task, addr: u64, v: i32) -> SysResult {
    t.mm().copy_out(addr, &v.to_le_bytes())?;
    Ok(0)
}

/// The terminal ioctls that involve the caller; `None` for the rest,
/// which the open file answers.
pub(super) fn ioctl(t: &mut Task, f: &Arc<OpenFile>, cmd: u64, arg: u64) -> Option<SysResult> {
    if f.is_path() || cmd == libc::FIONBIO {
        return None;
    }
    let (tty, master) = end(f)?;
    if !master && tty.state().hung_up {
        // hung_up_tty_ioctl.
        return Some(Err(if cmd == libc::TIOCSPGRP {
            Errno::ENOTTY
        } else {
            Errno::EIO
        }));
    }
    Some(match cmd {
        libc::TCSETS | libc::TCSETSW | libc::TCSETSF => set_termios(t, &tty, cmd, arg),
        libc::TCFLSH | libc::TCXONC => flow(t, &tty, master, cmd, arg),
        // tcdrain and tcsendbreak: a pty's output is never pending and it
        // has no line to break, so only the job-control check remains.
        libc::TCSBRK | libc::TCSBRKP | libc::TIOCSBRK | libc::TIOCCBRK => {
            if !master {
                if let Err(e) = check_change(t, &tty, libc::SIGTTOU) {
                    return Some(Err(e));
                }
            }
            Ok(0)
        }
        libc::TIOCSWINSZ => set_winsize(t, &tty, arg),
        libc::TIOCGPGRP => {
            if !master && !is_ctty(t, &tty) {
                return Some(Err(Errno::ENOTTY));
            }
            let pgrp = tty.state().pgrp;
            write_int(t, arg, pgrp)
        }
        libc::TIOCGSID => {
            if !master && !is_ctty(t, &tty) {
                return Some(Err(Errno::ENOTTY));
            }
            let sid = tty.state().session;
            if sid == 0 {
                return Some(Err(Errno::ENOTTY));
            }
            write_int(t, arg, sid)
        }
        libc::TIOCSPGRP => set_pgrp(t, &tty, arg),
        libc::TIOCSCTTY => set_ctty(t, f, &tty, arg),
        libc::TIOCNOTTY => give_up_ctty(t, &tty, master),
        libc::TIOCSPTLCK if master => read_int(t, arg).map(|v| {
            tty.state().locked = v != 0;
            0
        }),
        libc::TIOCGPTPEER if master => open_peer(t, &tty, arg),
        _ => return None,
    })
}

/// TCFLSH and TCXONC: a background group's use of its controlling
/// terminal stops it first.
fn flow(t: &mut Task, tty: &Terminal, master: bool, cmd: u64, arg: u64) -> SysResult {
    if !master {
        check_change(t, tty, libc::SIGTTOU)?;
    }
    if cmd == libc::TCFLSH {
        tty.flush(master, arg)?;
    } else {
        tty.flow(arg)?;
    }
    Ok(0)
}

/// TIOCSWINSZ: a change is told to the foreground group with SIGWINCH.
fn set_winsize(t: &mut Task, tty: &Terminal, arg: u64) -> SysResult {
    let mut b = [0u8; 8];
    t.mm().copy_in(arg, &mut b)?;
    let ws = WinSize::from_bytes(&b).ok_or(Errno::EFAULT)?;
    if let Some(pgrp) = tty.set_winsize(ws) {
        if pgrp > 0 {
            t.kernel().signal_group(pgrp, libc::SIGWINCH);
        }
    }
    Ok(0)
}

fn set_termios(t: &mut Task, tty: &Terminal, cmd: u64, arg: u64) -> SysResult {
    check_change(t, tty, libc::SIGTTOU)?;
    let mut b = [0u8; TERMIOS_SIZE];
    t.mm().copy_in(arg, &mut b)?;
    let termios = Termios::from_bytes(&b).ok_or(Errno::EFAULT)?;
    tty.set_termios(termios, cmd == libc::TCSETSF);
    Ok(0)
}

/// tiocspgrp.
fn set_pgrp(t: &mut Task, tty: &Terminal, arg: u64) -> SysResult {
    match check_change(t, tty, libc::SIGTTOU) {
        Err(Errno::EIO) => return Err(Errno::ENOTTY),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    let pgrp = read_int(t, arg)?;
    if pgrp < 0 {
        return Err(Errno::EINVAL);
    }
    let links = t.tg().links();
    if !is_ctty(t, tty) {
        return Err(Errno::ENOTTY);
    }
    let kernel = t.kernel().clone();
    let members = kernel.process_group(pgrp);
    if members.is_empty() {
        // A pid in use that names no group of this session is EPERM; one
        // not in use at all is ESRCH (find_vpid, then session_of_pgrp).
        return Err(if kernel.pid_in_use(pgrp) {
            Errno::EPERM
        } else {
            Errno::ESRCH
        });
    }
    if members.iter().any(|tg| tg.links().sid != links.sid) {
        return Err(Errno::EPERM);
    }
    tty.state().pgrp = pgrp;
    Ok(0)
}

/// tiocsctty: a session leader without a controlling terminal takes this
/// one, unless another session has it (stolen with arg 1 by a capable
/// caller).
fn set_ctty(t: &mut Task, f: &OpenFile, tty: &Terminal, arg: u64) -> SysResult {
    let links = t.tg().links();
    let leader = links.sid == t.tgid();
    let session = tty.state().session;
    if leader && session == links.sid {
        return Ok(0);
    }
    let has_ctty = devpts_of(&t.kernel().vfs)
        .and_then(|d| d.ctty_of(links.sid, t.tgid()))
        .is_some();
    if !leader || has_ctty {
        return Err(Errno::EPERM);
    }
    // Stealing a terminal from another session needs CAP_SYS_ADMIN.
    let admin = t.creds().capable(crate::kernel::creds::CAP_SYS_ADMIN);
    if session != 0 {
        if arg == 1 && admin {
            // The other session loses it.
            tty.state().clear_session();
        } else {
            return Err(Errno::EPERM);
        }
    }
    if !f.readable() && !admin {
        return Err(Errno::EPERM);
    }
    let mut st = tty.state();
    st.session = links.sid;
    st.pgrp = links.pgid;
    st.detached.clear();
    Ok(0)
}

/// TIOCNOTTY: the caller gives up its controlling terminal; a session
/// leader takes its session's hold away, and the foreground group gets
/// SIGHUP and SIGCONT (disassociate_ctty(0)).
fn give_up_ctty(t: &mut Task, tty: &Terminal, master: bool) -> SysResult {
    if master || !is_ctty(t, tty) {
        return Err(Errno::ENOTTY);
    }
    let links = t.tg().links();
    if links.sid != t.tgid() {
        tty.state().detached.insert(t.tgid());
        return Ok(0);
    }
    let pgrp = {
        let mut st = tty.state();
        let p = st.pgrp;
        st.clear_session();
        p
    };
    if pgrp > 0 {
        let kernel = t.kernel().clone();
        for signo in [libc::SIGHUP, libc::SIGCONT] {
            for tg in kernel.process_group(pgrp) {
                t.signal_process_from_here(&tg, kernel_signal(signo));
            }
        }
    }
    Ok(0)
}

/// TIOCGPTPEER: opens the replica of this master (as /dev/pts/N would be
/// opened, with `flags`) and returns its descriptor.
fn open_peer(t: &mut Task, tty: &Terminal, flags: u64) -> SysResult {
    let allowed = (libc::O_ACCMODE | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    if flags & !allowed != 0 {
        return Err(Errno::EINVAL);
    }
    let flags = flags as i32;
    let path = format!("/dev/pts/{}", tty.index());
    let kernel = t.kernel().clone();
    let root = t.root();
    let f = kernel.vfs.open_at(&root, path.as_bytes(), flags, 0)?;
    let f = opened(t, f, flags)?;
    let limit = t.nofile_limit();
    t.fds()
        .lock()
        .insert(f, flags & libc::O_CLOEXEC != 0, limit)
        .map(|fd| fd as u64)
}
