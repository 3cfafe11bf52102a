//! Waiting on many files: poll, ppoll, select, pselect6, epoll_create,
//! epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2.
//!
//! A wait is interrupted like any blocking syscall: EINTR when a signal
//! handler is to run (these calls are never restarted after a handler, as
//! Linux), restarted when the task is only being stopped (a checkpoint).
//! ppoll, select and pselect6 write the time left back to their timeout
//! first, so a restarted call waits only for the rest.

use std::sync::Arc;

use super::time::read_timespec;
use super::{Args, SysResult, ERESTARTNOHAND};
use crate::errno::Errno;
use crate::kernel::signal::SigSet;
use crate::kernel::task::RestartSleep;
use crate::kernel::time::{to_timespec, ClockId, Nanos};
use crate::kernel::Task;
use crate::vfs::epoll::{epoll_arc, epoll_of, Ctl, Epoll, EXCLUSIVE_OK};
use crate::vfs::poll::{
    Registration, Waiter, Woken, ALL_EVENTS, EPOLLERR, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN,
    EPOLLNVAL, EPOLLOUT, EPOLLPRI, EPOLLRDBAND, EPOLLRDNORM, EPOLLWRBAND, EPOLLWRNORM,
};
use crate::vfs::timerfd::instant_of;
use crate::vfs::OpenFile;

/// Linux's EP_MAX_EVENTS: INT_MAX / sizeof(struct epoll_event).
const EP_MAX_EVENTS: usize = (i32::MAX as usize) / 12;

/// `sizeof(struct epoll_event)` on x86_64 (packed).
const EPOLL_EVENT_SIZE: usize = 12;

/// Tells the signalfd module whose signals this host thread's calls see.
pub(super) fn note_current(t: &Task) {
    crate::vfs::signalfd::set_current(t.tid(), || t.pending_signals());
}

/// Reads an optional sigset_t argument of `size` bytes (EINVAL unless 8).
fn read_sigmask(t: &Task, addr: u64, size: u64) -> Result<Option<SigSet>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 8];
    t.mm().copy_in(addr, &mut b)?;
    Ok(Some(SigSet(u64::from_le_bytes(b))))
}

/// What a wait looks at each time it wakes: the number of ready files
/// (0: keep waiting).
type Scan<'a> = dyn FnMut(&mut Task) -> Result<usize, Errno> + 'a;

/// Blocks until `scan` finds something, `deadline` (sandbox monotonic)
/// passes, or the task is interrupted (EINTR; the dispatcher turns it into
/// a restart when no handler is to run). Every file's queue and the task's
/// interrupt wake it; files without a queue are re-checked periodically.
fn wait_for(
    t: &mut Task,
    files: &[Arc<OpenFile>],
    deadline: Option<Nanos>,
    scan: &mut Scan<'_>,
) -> Result<usize, Errno> {
    let waiter = Waiter::new();
    let mut registrations: Vec<Registration> = Vec::new();
    let mut recheck = false;
    let mut seen = std::collections::HashSet::new();
    for f in files {
        if !seen.insert(Arc::as_ptr(f) as usize) {
            continue;
        }
        match f.ops().wait_queue() {
            Some(q) => registrations.push(q.register(ALL_EVENTS, false, waiter.listener())),
            None => recheck |= f.ops().pollable(),
        }
        if let Some(ep) = epoll_of(f) {
            recheck |= ep.has_polled();
        }
    }
    let _on_interrupt = t.interrupt().io.register(&waiter);
    let clocks = t.kernel().clocks;
    loop {
        waiter.reset();
        let n = scan(t)?;
        if n > 0 {
            return Ok(n);
        }
        let now = clocks.monotonic();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(0);
        }
        if t.has_deliverable_signal() || t.interrupt().io.is_set() {
            return Err(super::ERESTARTNOHAND);
        }
        let change = files.iter().filter_map(|f| f.ops().next_change()).min();
        let wake = match (deadline, change) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        };
        if waiter.wait(wake.map(|w| instant_of(&clocks, w)), recheck) == Woken::TimedOut
            && deadline.is_some_and(|d| clocks.monotonic() >= d)
        {
            // One last look: a file may have become ready at the deadline.
            return scan(t);
        }
    }
}

/// A deadline `ns` from now (None: forever).
fn deadline_in(t: &Task, ns: Option<Nanos>) -> Option<Nanos> {
    ns.map(|ns| t.kernel().clocks.monotonic().saturating_add(ns))
}

/// The deadline of a wait whose timeout is in a register (poll,
/// epoll_wait): the one this same call had when it was stopped without a
/// handler to run (a checkpoint) and is now running again, else `ns` from
/// now. Like Linux's restart block for poll, a restarted wait ends when
/// the first would have, not a whole timeout later.
pub(super) fn resumed_deadline(t: &mut Task, ns: Option<Nanos>) -> Option<Nanos> {
    if let Some(r) = t.restart() {
        if r.rem.is_none() && r.clock == ClockId::Monotonic {
            t.set_restart(None);
            return Some(r.deadline);
        }
    }
    deadline_in(t, ns)
}

/// Keeps `deadline` for the restart of a wait stopped with no handler to
/// run; the dispatcher drops it again if the call ends with EINTR instead.
pub(super) fn keep_for_restart<T>(t: &mut Task, deadline: Option<Nanos>, r: &Result<T, Errno>) {
    if let (Err(e), Some(deadline)) = (r, deadline) {
        if *e == ERESTARTNOHAND && t.handler_to_run().is_none() {
            t.set_restart(Some(RestartSleep {
                deadline,
                clock: ClockId::Monotonic,
                rem: None,
            }));
        }
    }
}

/// Writes the time left until `deadline` back to a timespec (ppoll,
/// pselect6) or timeval (select), as Linux's poll_select_finish: not for a
/// zero timeout.
fn write_back(
    t: &Task,
    addr: u64,
    deadline: Option<Nanos>,
    timeval: bool,
    zero: bool,
) -> Result<(), Errno> {
    let (Some(d), false) = (deadline, zero || addr == 0) else {
        return Ok(());
    };
    let left = d.saturating_sub(t.kernel().clocks.monotonic()).max(0);
    let (sec, nsec) = to_timespec(left);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_le_bytes());
    let frac = if timeval { nsec / 1_000 } else { nsec };
    b[8..].copy_from_slice(&frac.to_le_bytes());
    t.mm().copy_out(addr, &b)
}

/// One `struct pollfd`.
#[derive(Clone, Copy)]
struct PollFd {
    fd: i32,
    events: u32,
    revents: u32,
}

fn do_poll(
    t: &mut Task,
    addr: u64,
    nfds: u64,
    deadline: Option<Nanos>,
) -> Result<(usize, Vec<PollFd>), Errno> {
    if nfds > t.nofile_limit() {
        return Err(Errno::EINVAL);
    }
    let n = nfds as usize;
    let mut raw = vec![0u8; n * 8];
    t.mm().copy_in(addr, &mut raw)?;
    let mut fds: Vec<PollFd> = raw
        .chunks_exact(8)
        .map(|c| PollFd {
            fd: i32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            events: u16::from_le_bytes([c[4], c[5]]) as u32,
            revents: 0,
        })
        .collect();
    let files: Vec<Option<Arc<OpenFile>>> = fds
        .iter()
        .map(|p| {
            if p.fd < 0 {
                None
            } else {
                t.fds().lock().file(p.fd).ok()
            }
        })
        .collect();
    let watched: Vec<Arc<OpenFile>> = files.iter().flatten().cloned().collect();
    let mut scan = |_: &mut Task| -> Result<usize, Errno> {
        let mut ready = 0;
        for (p, f) in fds.iter_mut().zip(&files) {
            p.revents = match f {
                _ if p.fd < 0 => 0,
                None => EPOLLNVAL,
                Some(f) => f.readiness() & (p.events | EPOLLERR | EPOLLHUP | EPOLLNVAL),
            };
            if p.revents != 0 {
                ready += 1;
            }
        }
        Ok(ready)
    };
    let n = wait_for(t, &watched, deadline, &mut scan)?;
    Ok((n, fds))
}

fn write_pollfds(t: &Task, addr: u64, fds: &[PollFd]) -> Result<(), Errno> {
    let mut out = Vec::with_capacity(fds.len() * 8);
    for p in fds {
        out.extend_from_slice(&p.fd.to_le_bytes());
        out.extend_from_slice(&(p.events as u16).to_le_bytes());
        out.extend_from_slice(&(p.revents as u16).to_le_bytes());
    }
    t.mm().copy_out(addr, &out)
}

pub fn poll(t: &mut Task, a: &Args) -> SysResult {
    let ms = a.int(2);
    let deadline = resumed_deadline(t, (ms >= 0).then(|| i64::from(ms) * 1_000_000));
    let r = do_poll(t, a.addr(0), a.raw(1), deadline);
    keep_for_restart(t, deadline, &r);
    let (n, fds) = r?;
    write_pollfds(t, a.addr(0), &fds)?;
    Ok(n as u64)
}

pub fn ppoll(t: &mut Task, a: &Args) -> SysResult {
    let timeout = if a.addr(2) == 0 {
        None
    } else {
        Some(read_timespec(t, a.addr(2))?)
    };
    let mask = read_sigmask(t, a.addr(3), a.raw(4))?;
    let deadline = deadline_in(t, timeout);
    if let Some(m) = mask {
        t.set_temporary_mask(m);
    }
    let r = do_poll(t, a.addr(0), a.raw(1), deadline);
    write_back(t, a.addr(2), deadline, false, timeout == Some(0))?;
    let (n, fds) = r?;
    write_pollfds(t, a.addr(0), &fds)?;
    Ok(n as u64)
}

/// select's three sets, as bitmaps of `nfds` bits.
fn do_select(t: &mut Task, nfds: i32, sets: [u64; 3], deadline: Option<Nanos>) -> SysResult {
    if nfds < 0 {
        return Err(Errno::EINVAL);
    }
    // Like Linux, descriptors past the table's size count as none.
    let max = t.nofile_limit().min(i32::MAX as u64) as i32;
    let nfds = nfds.min(max) as usize;
    let words = nfds.div_ceil(64);
    let mut bits: [Vec<u64>; 3] = [vec![0; words], vec![0; words], vec![0; words]];
    for (i, &addr) in sets.iter().enumerate() {
        if addr == 0 {
            continue;
        }
        let mut raw = vec![0u8; words * 8];
        t.mm().copy_in(addr, &mut raw)?;
        for (w, c) in raw.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            bits[i][w] = u64::from_le_bytes(b);
        }
        // Bits past nfds in the last word are not looked at.
        if !nfds.is_multiple_of(64) {
            if let Some(last) = bits[i].last_mut() {
                *last &= (1u64 << (nfds % 64)) - 1;
            }
        }
    }
    let mut wanted: Vec<(usize, Arc<OpenFile>, [bool; 3])> = Vec::new();
    for fd in 0..nfds {
        let (w, b) = (fd / 64, 1u64 << (fd % 64));
        let want = [
            bits[0][w] & b != 0,
            bits[1][w] & b != 0,
            bits[2][w] & b != 0,
        ];
        if want.iter().any(|&x| x) {
            let f = t.fds().lock().file(fd as i32).map_err(|_| Errno::EBADF)?;
            if f.is_path() {
                return Err(Errno::EBADF);
            }
            wanted.push((fd, f, want));
        }
    }
    const IN_SET: u32 = EPOLLIN | EPOLLRDNORM | EPOLLRDBAND | EPOLLHUP | EPOLLERR;
    const OUT_SET: u32 = EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND | EPOLLERR;
    const EX_SET: u32 = EPOLLPRI;
    let mut result: [Vec<u64>; 3] = [vec![0; words], vec![0; words], vec![0; words]];
    let watched: Vec<Arc<OpenFile>> = wanted.iter().map(|(_, f, _)| f.clone()).collect();
    let mut scan = |_: &mut Task| -> Result<usize, Errno> {
        let mut count = 0;
        for r in result.iter_mut() {
            r.iter_mut().for_each(|w| *w = 0);
        }
        for (fd, f, want) in &wanted {
            let ready = f.readiness();
            let (w, b) = (fd / 64, 1u64 << (fd % 64));
            for (i, set) in [IN_SET, OUT_SET, EX_SET].iter().enumerate() {
                if want[i] && ready & set != 0 {
                    result[i][w] |= b;
                    count += 1;
                }
            }
        }
        Ok(count)
    };
    let n = wait_for(t, &watched, deadline, &mut scan)?;
    for (i, &addr) in sets.iter().enumerate() {
        if addr == 0 {
            continue;
        }
        let out: Vec<u8> = result[i].iter().flat_map(|w| w.to_le_bytes()).collect();
        t.mm().copy_out(addr, &out)?;
    }
    Ok(n as u64)
}

/// Reads a `struct timeval` timeout (EINVAL when negative or out of range).
fn read_timeval(t: &Task, addr: u64) -> Result<Nanos, Errno> {
    let mut b = [0u8; 16];
    t.mm().copy_in(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
    let usec = i64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(Errno::EINVAL);
    }
    Ok(sec
        .saturating_mul(1_000_000_000)
        .saturating_add(usec * 1_000))
}

pub fn select(t: &mut Task, a: &Args) -> SysResult {
    let timeout = if a.addr(4) == 0 {
        None
    } else {
        Some(read_timeval(t, a.addr(4))?)
    };
    let deadline = deadline_in(t, timeout);
    let r = do_select(t, a.int(0), [a.addr(1), a.addr(2), a.addr(3)], deadline);
    write_back(t, a.addr(4), deadline, true, timeout == Some(0))?;
    r
}

pub fn pselect6(t: &mut Task, a: &Args) -> SysResult {
    let timeout = if a.addr(4) == 0 {
        None
    } else {
        Some(read_timespec(t, a.addr(4))?)
    };
    // The sixth argument points at { const sigset_t *ss; size_t ss_len; }.
    let mask = if a.addr(5) == 0 {
        None
    } else {
        let mut b = [0u8; 16];
        t.mm().copy_in(a.addr(5), &mut b)?;
        let ss = u64::from_le_bytes(b[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let len = u64::from_le_bytes(b[8..].try_into().map_err(|_| Errno::EFAULT)?);
        read_sigmask(t, ss, len)?
    };
    let deadline = deadline_in(t, timeout);
    if let Some(m) = mask {
        t.set_temporary_mask(m);
    }
    let r = do_select(t, a.int(0), [a.addr(1), a.addr(2), a.addr(3)], deadline);
    write_back(t, a.addr(4), deadline, false, timeout == Some(0))?;
    r
}

fn install(t: &mut Task, f: Arc<OpenFile>, cloexec: bool) -> SysResult {
    let limit = t.nofile_limit();
    t.fds().lock().insert(f, cloexec, limit).map(|fd| fd as u64)
}

pub fn epoll_create(t: &mut Task, a: &Args) -> SysResult {
    if a.int(0) <= 0 {
        return Err(Errno::EINVAL);
    }
    let (_, f) = Epoll::open(None, 0);
    install(t, f, false)
}

pub fn epoll_create1(t: &mut Task, a: &Args) -> SysResult {
    let flags = a.int(0);
    if flags & !libc::EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let (_, f) = Epoll::open(None, 0);
    install(t, f, flags & libc::EPOLL_CLOEXEC != 0)
}

pub fn epoll_ctl(t: &mut Task, a: &Args) -> SysResult {
    let op = match a.int(1) {
        libc::EPOLL_CTL_ADD => Ctl::Add,
        libc::EPOLL_CTL_MOD => Ctl::Mod,
        libc::EPOLL_CTL_DEL => Ctl::Del,
        _ => return Err(Errno::EINVAL),
    };
    // Linux copies the event in first (EFAULT before EBADF).
    let (events, data) = if op == Ctl::Del {
        (0, 0)
    } else {
        let mut b = [0u8; EPOLL_EVENT_SIZE];
        t.mm().copy_in(a.addr(3), &mut b)?;
        let events = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mut d = [0u8; 8];
        d.copy_from_slice(&b[4..12]);
        (events, u64::from_le_bytes(d))
    };
    let epf = t.fds().lock().file(a.fd(0))?;
    let target = t.fds().lock().file(a.fd(2))?;
    if epf.is_path() || target.is_path() {
        return Err(Errno::EBADF);
    }
    if !target.ops().pollable() {
        return Err(Errno::EPERM);
    }
    if events & EPOLLEXCLUSIVE != 0 {
        if op == Ctl::Mod {
            return Err(Errno::EINVAL);
        }
        if op == Ctl::Add && (events & !EXCLUSIVE_OK != 0 || epoll_of(&target).is_some()) {
            return Err(Errno::EINVAL);
        }
    }
    let ep = epoll_arc(&epf).ok_or(Errno::EINVAL)?;
    if Arc::ptr_eq(&epf, &target) {
        return Err(Errno::EINVAL);
    }
    ep.ctl(op, &target, a.fd(2), events, data)?;
    Ok(0)
}

fn do_epoll_wait(
    t: &mut Task,
    epfd: i32,
    addr: u64,
    max: i32,
    deadline: Option<Nanos>,
) -> SysResult {
    if max <= 0 || max as usize > EP_MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    let f = t.fds().lock().file(epfd)?;
    let ep = epoll_arc(&f).ok_or(Errno::EINVAL)?;
    let max = max as usize;
    let mut got = Vec::new();
    let watched = [f.clone()];
    let mut scan = |_: &mut Task| -> Result<usize, Errno> {
        got = ep.collect(max);
        Ok(got.len())
    };
    let r = wait_for(t, &watched, deadline, &mut scan);
    keep_for_restart(t, deadline, &r);
    let n = r?;
    let mut out = Vec::with_capacity(n * EPOLL_EVENT_SIZE);
    for e in &got {
        out.extend_from_slice(&e.events.to_le_bytes());
        out.extend_from_slice(&e.data.to_le_bytes());
    }
    t.mm().copy_out(addr, &out)?;
    Ok(n as u64)
}

fn ms_deadline(t: &mut Task, ms: i32) -> Option<Nanos> {
    resumed_deadline(t, (ms >= 0).then(|| i64::from(ms) * 1_000_000))
}

pub fn epoll_wait(t: &mut Task, a: &Args) -> SysResult {
    let deadline = ms_deadline(t, a.int(3));
    do_epoll_wait(t, a.fd(0), a.addr(1), a.int(2), deadline)
}

pub fn epoll_pwait(t: &mut Task, a: &Args) -> SysResult {
    let deadline = ms_deadline(t, a.int(3));
    let mask = read_sigmask(t, a.addr(4), a.raw(5))?;
    if let Some(m) = mask {
        t.set_temporary_mask(m);
    }
    do_epoll_wait(t, a.fd(0), a.addr(1), a.int(2), deadline)
}

pub fn epoll_pwait2(t: &mut Task, a: &Args) -> SysResult {
    let timeout = if a.addr(3) == 0 {
        None
    } else {
        Some(read_timespec(t, a.addr(3))?)
    };
    let deadline = resumed_deadline(t, timeout);
    let mask = read_sigmask(t, a.addr(4), a.raw(5))?;
    if let Some(m) = mask {
        t.set_temporary_mask(m);
    }
    do_epoll_wait(t, a.fd(0), a.addr(1), a.int(2), deadline)
}
