//! Pseudo-terminals (Linux's pty.c and devpts, gVisor's fsimpl/devpts):
//! opening /dev/ptmx (pts/ptmx) makes a [`Terminal`], a master end and a
//! replica end at /dev/pts/N once unlocked. What the master writes goes
//! through the line discipline to the replica's readers; what the replica
//! writes goes through output processing to the master's readers.
//!
//! Job control needs the kernel (process groups, sessions, signals): the
//! terminal keeps its session and foreground group as sandbox ids and
//! sends signals through [`JobSignals`], which the kernel implements. The
//! checks that need the calling task (SIGTTIN/SIGTTOU, the ioctls that
//! read the caller's session) are in the syscall layer (syscalls/tty.rs).

use std::any::Any;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dentry::lock;
use super::file::{FileKind, FileOps, IoCtx, IoctlReply, SaveAs, SeekMode};
use super::inode::{DirEntry, Inode};
use super::line_discipline::{LineDiscipline, Termios};
use super::poll::{
    WaitQueue, Waiter, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDNORM, EPOLLWRNORM,
};
use super::stat::{makedev, Stat, Timespec};
use crate::errno::Errno;

/// /dev/ptmx and /dev/tty's major (TTYAUX_MAJOR).
pub const TTYAUX_MAJOR: u32 = 5;
/// The replicas' major (UNIX98_PTY_SLAVE_MAJOR).
pub const PTS_MAJOR: u32 = 136;
/// Linux's default limit on ptys (/proc/sys/kernel/pty/max).
pub const MAX_PTYS: u32 = 4096;

/// What a terminal asks of the kernel.
pub trait JobSignals: Send + Sync {
    /// Sends `signo` (from the kernel) to every process of group `pgid`.
    fn signal_group(&self, pgid: i32, signo: i32);
    /// A hangup of the controlling terminal of session `sid`: SIGHUP and
    /// SIGCONT to its leader (tty_signal_session_leader).
    fn hangup_session(&self, sid: i32);
}

/// `struct winsize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    pub row: u16,
    pub col: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}
statefile::versioned!(WinSize, "vfs.WinSize", 1);

impl WinSize {
    pub fn to_bytes(self) -> Vec<u8> {
        [self.row, self.col, self.xpixel, self.ypixel]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }
    pub fn from_bytes(b: &[u8]) -> Option<WinSize> {
        if b.len() < 8 {
            return None;
        }
        let h = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(WinSize {
            row: h(0),
            col: h(2),
            xpixel: h(4),
            ypixel: h(6),
        })
    }
}

/// A terminal's state, all of which a checkpoint saves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyState {
    pub termios: Termios,
    pub ld: LineDiscipline,
    pub winsize: WinSize,
    /// TIOCSPTLCK: the replica cannot be opened while locked.
    pub locked: bool,
    /// The last replica was closed (Linux's TTY_OTHER_CLOSED on the
    /// master): master reads get EIO once drained, polls HUP.
    pub replica_closed: bool,
    /// The master was closed: the replica is hung up.
    pub hung_up: bool,
    /// The session this is the controlling terminal of (0: none).
    pub session: i32,
    /// The foreground process group (0: none).
    pub pgrp: i32,
    /// Processes of `session` that gave the terminal up (TIOCNOTTY by a
    /// process that does not lead the session).
    pub detached: BTreeSet<i32>,
    /// Open master and replica descriptions (not saved: restored files
    /// count themselves).
    #[serde(skip)]
    masters: usize,
    #[serde(skip)]
    replicas: usize,
}
statefile::versioned!(
    TtyState,
    "vfs.TtyState",
    1,
    [Termios, LineDiscipline, WinSize]
);

impl TtyState {
    /// Whether process `tgid` of session `sid` has this as its
    /// controlling terminal.
    pub fn is_ctty_of(&self, sid: i32, tgid: i32) -> bool {
        sid != 0 && self.session == sid && !self.detached.contains(&tgid)
    }

    /// Ends the session's hold on the terminal.
    pub fn clear_session(&mut self) {
        self.session = 0;
        self.pgrp = 0;
        self.detached.clear();
    }

    /// Checks a restored state.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.ld.check()?;
        if self.session < 0 || self.pgrp < 0 {
            return Err((
                "session",
                format!("session {} group {}", self.session, self.pgrp),
            ));
        }
        let max = crate::kernel::pid_namespace::PID_MAX;
        if self.session > max || self.pgrp > max {
            return Err((
                "session",
                format!(
                    "session {} group {} beyond PID_MAX",
                    self.session, self.pgrp
                ),
            ));
        }
        if self.session == 0 && (self.pgrp != 0 || !self.detached.is_empty()) {
            return Err(("pgrp", "a foreground group without a session".into()));
        }
        if self.detached.iter().any(|&p| p <= 0 || p > max) {
            return Err(("detached", "a pid out of range".into()));
        }
        if self.detached.len() > crate::kernel::pid_namespace::PID_MAX as usize {
            return Err(("detached", format!("{} pids", self.detached.len())));
        }
        Ok(())
    }
}

/// What a step of a blocking operation asks for once the terminal's lock
/// is dropped.
#[derive(Default)]
struct Effects {
    notify: u32,
    /// (foreground group, signal) pairs.
    signals: Vec<(i32, i32)>,
}

/// A terminal as a statefile holds it: saved once, keyed by its index,
/// whatever number of open files name its ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySnapshot {
    pub index: u32,
    pub state: TtyState,
    /// The replica's owner (since v2): who opened ptmx.
    pub owner: u32,
}
statefile::versioned!(PtySnapshot, "vfs.Pty", 2, [TtyState]);

/// Version 1 of [`PtySnapshot`]: replicas were root's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySnapshotV1 {
    pub index: u32,
    pub state: TtyState,
}
statefile::versioned!(PtySnapshotV1, "vfs.Pty", 1, [TtyState]);

impl statefile::Savable for PtySnapshot {
    const TYPE_NAME: &'static str = "vfs.Pty";
    const VERSION: u32 = 2;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 1 {
            statefile::check_saved_versions::<PtySnapshotV1>(dec.types())?;
            let v1: PtySnapshotV1 = dec.serde()?;
            return Ok(PtySnapshot {
                index: v1.index,
                state: v1.state,
                owner: 0,
            });
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

impl PtySnapshot {
    /// Checks a loaded snapshot (invariant 4): the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.index >= MAX_PTYS {
            return Err((
                "index",
                format!("{} (at most {})", self.index, MAX_PTYS - 1),
            ));
        }
        self.state.check().map_err(|(f, w)| {
            (
                match f {
                    "input" | "out" | "raw" => "state.ld",
                    "session" => "state.session",
                    "pgrp" => "state.pgrp",
                    "detached" => "state.detached",
                    other => other,
                },
                w,
            )
        })
    }
}

/// One pseudo-terminal: the pair's shared state.
pub struct Terminal {
    index: u32,
    /// The replica's owner (devpts makes it whoever opened ptmx).
    owner: u32,
    created: Timespec,
    state: Mutex<TtyState>,
    /// Pollers of both ends.
    queue: Arc<WaitQueue>,
    signals: Mutex<Option<Weak<dyn JobSignals>>>,
}

impl Terminal {
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn state(&self) -> MutexGuard<'_, TtyState> {
        lock(&self.state)
    }

    pub fn queue(&self) -> &Arc<WaitQueue> {
        &self.queue
    }

    /// Where this terminal sends its signals (the kernel).
    pub fn set_signals(&self, signals: Weak<dyn JobSignals>) {
        *lock(&self.signals) = Some(signals);
    }

    fn signaller(&self) -> Option<Arc<dyn JobSignals>> {
        lock(&self.signals).as_ref().and_then(Weak::upgrade)
    }

    /// Sends `signo` to the foreground group (ISIG, SIGWINCH).
    pub fn signal_foreground(&self, pgrp: i32, signo: i32) {
        if pgrp <= 0 {
            return;
        }
        if let Some(s) = self.signaller() {
            s.signal_group(pgrp, signo);
        }
    }

    fn notify_all(&self) {
        self.queue
            .notify(EPOLLIN | EPOLLRDNORM | EPOLLOUT | EPOLLWRNORM | EPOLLHUP | EPOLLERR);
    }

    /// Blocks until `attempt` answers, `deadline` passes (`on_timeout`'s
    /// answer) or the task is interrupted (EINTR). What an attempt asks
    /// for in its [`Effects`] happens after the terminal's lock is
    /// dropped: a listener (an epoll set) may poll this terminal from
    /// under its own lock, and signals reach into the kernel.
    fn block<T>(
        &self,
        io: &IoCtx<'_>,
        mut deadline: impl FnMut() -> Option<Instant>,
        mut attempt: impl FnMut(&mut TtyState, &mut Effects) -> Result<Option<T>, Errno>,
        on_timeout: impl Fn(&mut TtyState) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let waiter = Waiter::new();
        let _on_queue = self.queue.register(
            EPOLLIN | EPOLLOUT | EPOLLHUP | EPOLLERR,
            false,
            waiter.listener(),
        );
        let _on_interrupt = io.interrupt.register(&waiter);
        loop {
            waiter.reset();
            let mut fx = Effects::default();
            let r = {
                let mut st = self.state();
                match attempt(&mut st, &mut fx) {
                    Ok(None) if deadline().is_some_and(|d| Instant::now() >= d) => {
                        Some(on_timeout(&mut st))
                    }
                    Ok(None) => None,
                    Ok(Some(v)) => Some(Ok(v)),
                    Err(e) => Some(Err(e)),
                }
            };
            self.apply(fx);
            if let Some(r) = r {
                return r;
            }
            if io.interrupt.is_set() {
                return Err(Errno::EINTR);
            }
            waiter.wait(deadline(), false);
        }
    }

    fn apply(&self, fx: Effects) {
        if fx.notify != 0 {
            self.queue.notify(fx.notify);
        }
        for (pgrp, sig) in fx.signals {
            self.signal_foreground(pgrp, sig);
        }
    }

    /// A master read: what the replica wrote and the echoes.
    pub fn master_read(&self, io: &IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.block(
            io,
            || None,
            |st, fx| {
                if !st.ld.out.is_empty() {
                    let data = st.ld.read_output(buf.len());
                    buf[..data.len()].copy_from_slice(&data);
                    fx.notify |= EPOLLOUT | EPOLLWRNORM;
                    return Ok(Some(data.len()));
                }
                if st.replica_closed {
                    return Err(Errno::EIO);
                }
                if io.nonblock {
                    return Err(Errno::EAGAIN);
                }
                Ok(None)
            },
            |_| Ok(0),
        )
    }

    /// A master write: input for the replica, through the line discipline.
    pub fn master_write(&self, io: &IoCtx<'_>, buf: &[u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let done = Cell::new(0usize);
        let r = self.block(
            io,
            || None,
            |st, fx| {
                let termios = st.termios;
                let r = st.ld.receive(&termios, &buf[done.get()..]);
                done.set(done.get() + r.taken);
                fx.signals.extend(r.signals.iter().map(|&s| (st.pgrp, s)));
                if r.taken > 0 {
                    // New input for the replica, echoes for the master.
                    fx.notify |= EPOLLIN | EPOLLRDNORM;
                }
                if done.get() == buf.len() {
                    return Ok(Some(done.get()));
                }
                if io.nonblock {
                    return if done.get() > 0 {
                        Ok(Some(done.get()))
                    } else {
                        Err(Errno::EAGAIN)
                    };
                }
                Ok(None)
            },
            |_| Ok(done.get()),
        );
        match r {
            Err(Errno::EINTR) if done.get() > 0 => Ok(done.get()),
            r => r,
        }
    }

    /// A replica read, canonical or by VMIN/VTIME.
    pub fn replica_read(&self, io: &IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (canonical, vmin, vtime) = {
            let st = self.state();
            // A hung-up replica reads as EOF (hung_up_tty_read).
            if st.hung_up {
                return Ok(0);
            }
            (
                st.termios.canonical(),
                st.termios.vmin() as usize,
                st.termios.vtime(),
            )
        };
        let tenths = Duration::from_millis(100 * vtime as u64);
        let got = Cell::new(0usize);
        // MIN = 0: TIME is a timeout for the first byte; MIN > 0 and
        // TIME > 0: an inter-byte timer started by each byte.
        let start = Instant::now();
        let last_byte: Cell<Option<Instant>> = Cell::new(None);
        let minimum = if canonical {
            1
        } else {
            vmin.max(1).min(buf.len())
        };
        let r = self.block(
            io,
            || {
                if canonical || vtime == 0 {
                    None
                } else if vmin == 0 {
                    Some(start + tenths)
                } else {
                    last_byte.get().map(|t| t + tenths)
                }
            },
            |st, fx| {
                // A read the hangup ends gets EIO (the master's close
                // sets TTY_OTHER_CLOSED on the replica), or what it had.
                if st.hung_up {
                    return match got.get() {
                        0 => Err(Errno::EIO),
                        n => Ok(Some(n)),
                    };
                }
                let termios = st.termios;
                if termios.canonical() {
                    if st.ld.input_ready(&termios, 1) {
                        let data = st.ld.read(&termios, buf.len());
                        buf[..data.len()].copy_from_slice(&data);
                        fx.notify |= EPOLLOUT | EPOLLWRNORM;
                        return Ok(Some(data.len()));
                    }
                } else {
                    let at = got.get();
                    let data = st.ld.read(&termios, buf.len() - at);
                    if !data.is_empty() {
                        fx.notify |= EPOLLOUT | EPOLLWRNORM;
                        buf[at..at + data.len()].copy_from_slice(&data);
                        got.set(at + data.len());
                        last_byte.set(Some(Instant::now()));
                    }
                    if got.get() >= minimum || (vmin == 0 && vtime == 0) {
                        return Ok(Some(got.get()));
                    }
                }
                if io.nonblock {
                    return if got.get() > 0 {
                        Ok(Some(got.get()))
                    } else {
                        Err(Errno::EAGAIN)
                    };
                }
                Ok(None)
            },
            |_| Ok(got.get()),
        );
        match r {
            Err(Errno::EINTR) if got.get() > 0 => Ok(got.get()),
            r => r,
        }
    }

    /// A replica write: output for the master, through output processing.
    pub fn replica_write(&self, io: &IoCtx<'_>, buf: &[u8]) -> Result<usize, Errno> {
        let done = Cell::new(0usize);
        let r = self.block(
            io,
            || None,
            |st, fx| {
                if st.hung_up {
                    return Err(Errno::EIO);
                }
                if buf.is_empty() {
                    return Ok(Some(0));
                }
                let termios = st.termios;
                let n = st.ld.write(&termios, &buf[done.get()..]);
                done.set(done.get() + n);
                if n > 0 {
                    fx.notify |= EPOLLIN | EPOLLRDNORM;
                }
                if done.get() == buf.len() {
                    return Ok(Some(done.get()));
                }
                if io.nonblock {
                    return if done.get() > 0 {
                        Ok(Some(done.get()))
                    } else {
                        Err(Errno::EAGAIN)
                    };
                }
                Ok(None)
            },
            |_| Ok(done.get()),
        );
        match r {
            Err(Errno::EINTR) if done.get() > 0 => Ok(done.get()),
            r => r,
        }
    }

    /// The events ready at one end.
    pub fn readiness(&self, master: bool) -> u32 {
        let st = self.state();
        let mut r = 0;
        if master {
            if !st.ld.out.is_empty() {
                r |= EPOLLIN | EPOLLRDNORM;
            }
            if st.replica_closed {
                r |= EPOLLHUP;
            }
            if st.ld.input_room(&st.termios) {
                r |= EPOLLOUT | EPOLLWRNORM;
            }
        } else {
            if st.hung_up {
                return EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDNORM | EPOLLWRNORM;
            }
            let t = &st.termios;
            let min = if !t.canonical() && t.vtime() == 0 && t.vmin() > 0 {
                t.vmin() as usize
            } else {
                1
            };
            if st.ld.input_ready(t, min) {
                r |= EPOLLIN | EPOLLRDNORM;
            }
            if st.ld.output_room() > 0 {
                r |= EPOLLOUT | EPOLLWRNORM;
            }
        }
        r
    }

    /// TCSETS*: new settings (TCSETSF flushes input first).
    pub fn set_termios(&self, new: Termios, flush: bool) {
        {
            let mut st = self.state();
            if flush {
                st.ld.flush_input();
            }
            let old = st.termios;
            st.ld.set_termios(&old, &new);
            st.termios = new;
        }
        self.notify_all();
    }

    /// TCFLSH at one end: TCIFLUSH, TCOFLUSH or TCIOFLUSH of that end's
    /// input and output.
    pub fn flush(&self, master: bool, how: u64) -> Result<(), Errno> {
        let (input, output) = match how as i32 {
            libc::TCIFLUSH => (true, false),
            libc::TCOFLUSH => (false, true),
            libc::TCIOFLUSH => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        {
            let mut st = self.state();
            // The master's input is the replica's output.
            let (flush_in, flush_out) = if master {
                (output, input)
            } else {
                (input, output)
            };
            if flush_in {
                st.ld.flush_input();
            }
            if flush_out {
                st.ld.flush_output();
            }
        }
        self.notify_all();
        Ok(())
    }

    /// TCXONC.
    pub fn flow(&self, how: u64) -> Result<(), Errno> {
        {
            let mut st = self.state();
            match how as i32 {
                libc::TCOOFF => {
                    st.ld.tco_stopped = true;
                    st.ld.stopped = true;
                }
                // Undoes a TCOOFF only, not a VSTOP.
                libc::TCOON if st.ld.tco_stopped => {
                    st.ld.tco_stopped = false;
                    st.ld.stopped = false;
                }
                libc::TCOON => {}
                libc::TCIOFF | libc::TCION => {
                    let idx = if how as i32 == libc::TCIOFF {
                        libc::VSTOP
                    } else {
                        libc::VSTART
                    };
                    let c = st.termios.cc[idx];
                    let cap =
                        super::line_discipline::OUTPUT_CAP + super::line_discipline::INPUT_CAP;
                    if c != 0 && st.ld.out.len() < cap {
                        st.ld.out.push_back(c);
                    }
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        self.notify_all();
        Ok(())
    }

    /// TIOCSWINSZ: the foreground group to tell with SIGWINCH, if the
    /// size changed.
    pub fn set_winsize(&self, ws: WinSize) -> Option<i32> {
        let mut st = self.state();
        if st.winsize == ws {
            return None;
        }
        st.winsize = ws;
        Some(st.pgrp)
    }

    /// The ioctls that need nothing of the caller.
    fn ioctl(&self, master: bool, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        let int = |v: i32| IoctlReply {
            ret: 0,
            out: v.to_le_bytes().to_vec(),
        };
        if !master && self.state().hung_up {
            return Err(if cmd == libc::TIOCSPGRP {
                Errno::ENOTTY
            } else {
                Errno::EIO
            });
        }
        match cmd {
            libc::TCGETS => Ok(IoctlReply {
                ret: 0,
                out: self.state().termios.to_bytes(),
            }),
            libc::TCSETS | libc::TCSETSW | libc::TCSETSF => {
                let t = Termios::from_bytes(input).ok_or(Errno::EFAULT)?;
                self.set_termios(t, cmd == libc::TCSETSF);
                Ok(IoctlReply::default())
            }
            libc::TIOCGWINSZ => Ok(IoctlReply {
                ret: 0,
                out: self.state().winsize.to_bytes(),
            }),
            libc::TIOCSWINSZ => {
                let ws = WinSize::from_bytes(input).ok_or(Errno::EFAULT)?;
                if let Some(pgrp) = self.set_winsize(ws) {
                    self.signal_foreground(pgrp, libc::SIGWINCH);
                }
                Ok(IoctlReply::default())
            }
            libc::FIONREAD => {
                let st = self.state();
                let n = if master {
                    st.ld.out.len()
                } else {
                    st.ld.readable(&st.termios)
                };
                Ok(int(n as i32))
            }
            libc::TIOCOUTQ => {
                // A pty's output goes straight to the other end's input,
                // so the driver holds none (pty_chars_in_buffer is 0).
                Ok(int(0))
            }
            libc::TCFLSH => {
                self.flush(master, input_arg(input))?;
                Ok(IoctlReply::default())
            }
            libc::TCXONC => {
                self.flow(input_arg(input))?;
                Ok(IoctlReply::default())
            }
            libc::TIOCGPTN if master => Ok(int(self.index as i32)),
            libc::TIOCGPTLCK if master => Ok(int(self.state().locked as i32)),
            libc::TIOCSPTLCK if master => {
                let v = input
                    .get(..4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(Errno::EFAULT)?;
                self.state().locked = v != 0;
                Ok(IoctlReply::default())
            }
            libc::TIOCGPGRP => Ok(int(self.state().pgrp)),
            libc::TIOCGSID => {
                let sid = self.state().session;
                if sid == 0 {
                    return Err(Errno::ENOTTY);
                }
                Ok(int(sid))
            }
            // Line discipline N_TTY is the only one.
            libc::TIOCGETD => Ok(int(0)),
            libc::TIOCEXCL | libc::TIOCNXCL => Ok(IoctlReply::default()),
            _ => Err(Errno::ENOTTY),
        }
    }

    /// An open of the replica (/dev/pts/N, /dev/tty, TIOCGPTPEER).
    pub fn open_replica(self: &Arc<Self>, check_lock: bool) -> Result<Arc<dyn FileOps>, Errno> {
        let mut st = self.state();
        if st.masters == 0 || st.hung_up {
            return Err(if check_lock {
                Errno::ENOENT
            } else {
                Errno::EIO
            });
        }
        if check_lock && st.locked {
            return Err(Errno::EIO);
        }
        st.replicas += 1;
        st.replica_closed = false;
        drop(st);
        self.notify_all();
        Ok(Arc::new(PtyEnd {
            tty: self.clone(),
            master: false,
        }))
    }

    /// A restored end (its terminal comes from the statefile).
    pub fn reopen_end(self: &Arc<Self>, master: bool) -> Arc<dyn FileOps> {
        let mut st = self.state();
        if master {
            st.masters += 1;
        } else {
            st.replicas += 1;
        }
        drop(st);
        Arc::new(PtyEnd {
            tty: self.clone(),
            master,
        })
    }

    /// The terminal's state for a checkpoint.
    pub fn snapshot(&self) -> PtySnapshot {
        PtySnapshot {
            index: self.index,
            state: self.state().clone(),
            owner: self.owner,
        }
    }

    /// Whether the master is open (the replica can still be opened).
    pub fn master_open(&self) -> bool {
        let st = self.state();
        st.masters > 0 && !st.hung_up
    }
}

/// TCFLSH and TCXONC take their argument as a value, which the syscall
/// layer passes as eight little-endian bytes.
fn input_arg(input: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(input) {
        *d = *s;
    }
    u64::from_le_bytes(b)
}

/// One end of a pty.
pub struct PtyEnd {
    tty: Arc<Terminal>,
    master: bool,
}

impl PtyEnd {
    pub fn terminal(&self) -> &Arc<Terminal> {
        &self.tty
    }
    pub fn is_master(&self) -> bool {
        self.master
    }
}

impl Drop for PtyEnd {
    fn drop(&mut self) {
        let mut hangup = 0;
        {
            let mut st = self.tty.state();
            if self.master {
                st.masters = st.masters.saturating_sub(1);
                if st.masters == 0 {
                    // pty_close of the master: the replica hangs up and the
                    // session loses its controlling terminal.
                    st.hung_up = true;
                    st.ld.flush_input();
                    hangup = st.session;
                    st.clear_session();
                }
            } else {
                st.replicas = st.replicas.saturating_sub(1);
                if st.replicas == 0 {
                    st.replica_closed = true;
                }
            }
        }
        // The session's signals go first, as in __tty_hangup: a reader
        // the hangup wakes has them pending when its read returns.
        if hangup > 0 {
            if let Some(s) = self.tty.signaller() {
                s.hangup_session(hangup);
            }
        }
        self.tty.notify_all();
    }
}

/// The end of a pty an open file is, if it is one.
pub fn pty_of(ops: &dyn FileOps) -> Option<&PtyEnd> {
    ops.as_any().downcast_ref::<PtyEnd>()
}

impl FileOps for PtyEnd {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        FileKind::CharDevice
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Pty {
            index: self.tty.index,
            master: self.master,
        }
    }
    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }
    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        if self.master {
            self.tty.master_read(io, buf)
        } else {
            self.tty.replica_read(io, buf)
        }
    }
    fn write(&self, io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        if offset.is_some() {
            return Err(Errno::ESPIPE);
        }
        if self.master {
            self.tty.master_write(io, buf)
        } else {
            self.tty.replica_write(io, buf)
        }
    }
    fn ioctl(&self, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        self.tty.ioctl(self.master, cmd, input)
    }
    fn readiness(&self) -> u32 {
        self.tty.readiness(self.master)
    }
    fn pollable(&self) -> bool {
        true
    }
    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.tty.queue.clone())
    }
}

/// The devpts instance: its terminals by index.
pub struct DevPts {
    terminals: Mutex<BTreeMap<u32, Weak<Terminal>>>,
    time: Timespec,
}

impl DevPts {
    pub fn new(time: Timespec) -> Arc<DevPts> {
        Arc::new(DevPts {
            terminals: Mutex::new(BTreeMap::new()),
            time,
        })
    }

    /// A terminal by index, while any of its ends is open.
    pub fn get(&self, index: u32) -> Option<Arc<Terminal>> {
        lock(&self.terminals).get(&index).and_then(Weak::upgrade)
    }

    /// Every live terminal, by index.
    pub fn terminals(&self) -> Vec<Arc<Terminal>> {
        lock(&self.terminals)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The controlling terminal of process `tgid` in session `sid`.
    pub fn ctty_of(&self, sid: i32, tgid: i32) -> Option<Arc<Terminal>> {
        self.terminals()
            .into_iter()
            .find(|t| t.state().is_ctty_of(sid, tgid))
    }

    /// The terminal session `sid` controls, whichever of its processes
    /// asks.
    pub fn session_tty(&self, sid: i32) -> Option<Arc<Terminal>> {
        self.terminals()
            .into_iter()
            .find(|t| sid != 0 && t.state().session == sid)
    }

    /// Adds a terminal at the lowest free index (or at `index`, on
    /// restore), in state `state`.
    pub fn add(
        &self,
        index: Option<u32>,
        state: TtyState,
        owner: u32,
        now: Timespec,
    ) -> Result<Arc<Terminal>, Errno> {
        let mut map = lock(&self.terminals);
        map.retain(|_, t| t.strong_count() > 0);
        let index = match index {
            Some(i) if i < MAX_PTYS && !map.contains_key(&i) => i,
            Some(_) => return Err(Errno::EEXIST),
            None => (0..MAX_PTYS)
                .find(|i| !map.contains_key(i))
                .ok_or(Errno::ENOSPC)?,
        };
        let tty = Arc::new(Terminal {
            index,
            owner,
            created: now,
            state: Mutex::new(state),
            queue: WaitQueue::new(),
            signals: Mutex::new(None),
        });
        map.insert(index, Arc::downgrade(&tty));
        Ok(tty)
    }

    /// Opening ptmx: a new pair, locked, and its master end.
    pub fn open_master(&self) -> Result<Arc<dyn FileOps>, Errno> {
        let state = TtyState {
            locked: true,
            ..TtyState::default()
        };
        let tty = self.add(None, state, super::perm::current_ids().0, self.time)?;
        Ok(tty.reopen_end(true))
    }
}

/// /dev/pts.
pub struct DevPtsDir {
    ino: u64,
    devpts: Arc<DevPts>,
}

/// Inode numbers in devpts: 1 the root, 2 ptmx, N + 3 replica N.
const PTMX_INO: u64 = 2;

impl DevPtsDir {
    pub fn new(devpts: Arc<DevPts>) -> Arc<DevPtsDir> {
        Arc::new(DevPtsDir { ino: 1, devpts })
    }
    pub fn devpts(&self) -> &Arc<DevPts> {
        &self.devpts
    }
}

impl Inode for DevPtsDir {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFDIR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        let t = self.devpts.time;
        Ok(Stat {
            ino: self.ino,
            mode: libc::S_IFDIR | 0o755,
            nlink: 2,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }
    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        if name == b"ptmx" {
            return Ok(Arc::new(PtmxInode {
                devpts: self.devpts.clone(),
            }));
        }
        let index: u32 = std::str::from_utf8(name)
            .ok()
            .filter(|s| !s.starts_with('+') && (s.len() == 1 || !s.starts_with('0')))
            .and_then(|s| s.parse().ok())
            .ok_or(Errno::ENOENT)?;
        match self.devpts.get(index) {
            Some(t) if t.master_open() => Ok(Arc::new(ReplicaInode {
                devpts: Arc::downgrade(&self.devpts),
                index,
            })),
            _ => Err(Errno::ENOENT),
        }
    }
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut out = vec![DirEntry {
            name: b"ptmx".to_vec(),
            ino: PTMX_INO,
            dtype: libc::DT_CHR,
        }];
        for t in self.devpts.terminals() {
            if t.master_open() {
                out.push(DirEntry {
                    name: t.index.to_string().into_bytes(),
                    ino: t.index as u64 + 3,
                    dtype: libc::DT_CHR,
                });
            }
        }
        Ok(out)
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(super::file::DirOps))
    }
}

/// /dev/pts/ptmx (and /dev/ptmx, a link to it).
struct PtmxInode {
    devpts: Arc<DevPts>,
}

impl Inode for PtmxInode {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFCHR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        let t = self.devpts.time;
        Ok(Stat {
            ino: PTMX_INO,
            mode: libc::S_IFCHR | 0o666,
            nlink: 1,
            rdev: makedev(TTYAUX_MAJOR, 2),
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        self.devpts.open_master()
    }
    fn set_times(&self, _: Option<Timespec>, _: Option<Timespec>) -> Result<(), Errno> {
        Ok(())
    }
}

/// /dev/pts/N: named by index, so a cached dentry always finds the
/// terminal that has the index now.
struct ReplicaInode {
    devpts: Weak<DevPts>,
    index: u32,
}

impl ReplicaInode {
    fn terminal(&self) -> Result<Arc<Terminal>, Errno> {
        self.devpts
            .upgrade()
            .and_then(|d| d.get(self.index))
            .ok_or(Errno::ENOENT)
    }
}

impl Inode for ReplicaInode {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFCHR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        let t = self.terminal()?;
        Ok(Stat {
            ino: self.index as u64 + 3,
            mode: libc::S_IFCHR | 0o620,
            nlink: 1,
            uid: t.owner,
            gid: 5,
            rdev: makedev(PTS_MAJOR, self.index),
            blksize: 1024,
            atime: t.created,
            mtime: t.created,
            ctime: t.created,
            ..Stat::default()
        })
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        self.terminal()?.open_replica(true)
    }
    // grantpt's chown/chmod are accepted and forgotten, as devpts with
    // fixed modes.
    fn chmod(&self, _mode: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn chown(&self, _uid: Option<u32>, _gid: Option<u32>) -> Result<(), Errno> {
        Ok(())
    }
    fn set_times(&self, _: Option<Timespec>, _: Option<Timespec>) -> Result<(), Errno> {
        Ok(())
    }
}

/// A dentry for replica `index` under the devpts root `pts`, for a restored
/// open file whose terminal lookups no longer find (its master closed):
/// named as before, not in the directory's cache.
pub(crate) fn replica_dentry(pts: &Arc<super::Dentry>, index: u32) -> Option<Arc<super::Dentry>> {
    let dir = pts.inode().as_any().downcast_ref::<DevPtsDir>()?;
    let inode: Arc<dyn Inode> = Arc::new(ReplicaInode {
        devpts: Arc::downgrade(&dir.devpts),
        index,
    });
    Some(pts.new_child(index.to_string().as_bytes(), inode))
}

/// /dev/tty: opening it opens the caller's controlling terminal, which the
/// syscall layer substitutes for this placeholder (ENXIO without one).
pub struct DevTtyInode {
    pub(crate) ino: u64,
    pub(crate) time: Timespec,
}

/// The placeholder ops of an open of /dev/tty before the syscall layer
/// replaces them; nothing uses them but that check.
pub struct DevTtyPlaceholder;

impl FileOps for DevTtyPlaceholder {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        FileKind::CharDevice
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Refuse("an unresolved /dev/tty")
    }
    fn read(&self, _: &IoCtx<'_>, _: &mut [u8], _: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
    fn write(&self, _: &IoCtx<'_>, _: &[u8], _: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::ENXIO)
    }
}

impl Inode for DevTtyInode {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFCHR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(Stat {
            ino: self.ino,
            mode: libc::S_IFCHR | 0o666,
            nlink: 1,
            rdev: makedev(TTYAUX_MAJOR, 0),
            blksize: 4096,
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            ..Stat::default()
        })
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(DevTtyPlaceholder))
    }
    fn set_times(&self, _: Option<Timespec>, _: Option<Timespec>) -> Result<(), Errno> {
        Ok(())
    }
}

/// The devpts of a namespace whose /dev is a devfs.
pub fn devpts_of(vfs: &super::Vfs) -> Option<Arc<DevPts>> {
    let d = vfs.lookup_dir(&vfs.root(), b"/dev/pts").ok()?;
    let dir = d.inode().as_any().downcast_ref::<DevPtsDir>()?;
    Some(dir.devpts.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::vfs::{MountOpts, Vfs};

    fn devfs_vfs() -> Vfs {
        Vfs::new(
            DevPtsDir::new(DevPts::new(Timespec::default())),
            MountOpts {
                fs_type: "devpts",
                read_only: false,
            },
        )
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(i32, i32)>>);
    impl JobSignals for Recorder {
        fn signal_group(&self, pgid: i32, signo: i32) {
            lock(&self.0).push((pgid, signo));
        }
        fn hangup_session(&self, sid: i32) {
            lock(&self.0).push((-sid, libc::SIGHUP));
        }
    }

    #[test]
    fn ptmx_allocates_a_locked_pair() {
        let vfs = devfs_vfs();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let m = vfs.open_at(&r, b"/ptmx", libc::O_RDWR, 0).unwrap();
        let n = m.ioctl(libc::TIOCGPTN, &[]).unwrap().out;
        assert_eq!(n, 0i32.to_le_bytes());
        assert_eq!(
            vfs.open_at(&r, b"/0", libc::O_RDWR, 0).err(),
            Some(Errno::EIO),
            "locked"
        );
        m.ioctl(libc::TIOCSPTLCK, &0i32.to_le_bytes()).unwrap();
        let s = vfs.open_at(&r, b"/0", libc::O_RDWR, 0).unwrap();
        let st = s.stat().unwrap();
        assert_eq!((libc::major(st.rdev), libc::minor(st.rdev)), (136, 0));
        assert_eq!(m.write(b"hi\r", &intr), Ok(3));
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf, &intr), Ok(3));
        assert_eq!(&buf[..3], b"hi\n");
        assert_eq!(m.read(&mut buf, &intr), Ok(4));
        assert_eq!(&buf[..4], b"hi\r\n", "the echo");
        assert_eq!(s.write(b"out\n", &intr), Ok(4));
        assert_eq!(m.read(&mut buf, &intr), Ok(5));
        assert_eq!(&buf[..5], b"out\r\n");
        let m2 = vfs.open_at(&r, b"/ptmx", libc::O_RDWR, 0).unwrap();
        assert_eq!(
            m2.ioctl(libc::TIOCGPTN, &[]).unwrap().out,
            1i32.to_le_bytes()
        );
        assert_eq!(s.lseek(0, libc::SEEK_SET), Err(Errno::ESPIPE));
    }

    #[test]
    fn hangups_both_ways() {
        let vfs = devfs_vfs();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let m = vfs
            .open_at(&r, b"/ptmx", libc::O_RDWR | libc::O_NONBLOCK, 0)
            .unwrap();
        let rec = Arc::new(Recorder::default());
        let tty = pty_of(m.ops().as_ref()).unwrap().terminal().clone();
        let w: Arc<dyn JobSignals> = rec.clone();
        tty.set_signals(Arc::downgrade(&w));
        tty.state().session = 7;
        tty.state().pgrp = 8;
        m.ioctl(libc::TIOCSPTLCK, &0i32.to_le_bytes()).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(m.read(&mut buf, &intr), Err(Errno::EAGAIN));
        assert_eq!(m.readiness(), EPOLLOUT | EPOLLWRNORM);
        let s = vfs.open_at(&r, b"/0", libc::O_RDWR, 0).unwrap();
        m.write(b"\x03", &intr).unwrap();
        assert_eq!(lock(&rec.0).as_slice(), &[(8, libc::SIGINT)]);
        drop(s);
        assert_eq!(m.readiness() & EPOLLHUP, EPOLLHUP);
        m.read(&mut buf, &intr).unwrap(); // the ^C echo
        assert_eq!(m.read(&mut buf, &intr), Err(Errno::EIO));
        let s = vfs.open_at(&r, b"/0", libc::O_RDWR, 0).unwrap();
        drop(m);
        assert_eq!(lock(&rec.0).last(), Some(&(-7, libc::SIGHUP)));
        assert_eq!(s.read(&mut buf, &intr), Ok(0));
        assert_eq!(s.write(b"x", &intr), Err(Errno::EIO));
        assert_eq!(s.ioctl(libc::TCGETS, &[]).err(), Some(Errno::EIO));
        assert_eq!(s.readiness() & (EPOLLHUP | EPOLLERR), EPOLLHUP | EPOLLERR);
        assert_eq!(
            vfs.open_at(&r, b"/0", libc::O_RDWR, 0).err(),
            Some(Errno::ENOENT)
        );
    }

    #[test]
    fn flow_control_flushes_and_index_reuse() {
        let vfs = devfs_vfs();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let m = vfs.open_at(&r, b"/ptmx", libc::O_RDWR, 0).unwrap();
        m.ioctl(libc::TIOCSPTLCK, &0i32.to_le_bytes()).unwrap();
        let s = vfs
            .open_at(&r, b"/0", libc::O_RDWR | libc::O_NONBLOCK, 0)
            .unwrap();
        let arg = |v: i32| (v as u64).to_le_bytes();
        // TCOOFF stops the replica's output; a VSTART does not undo it.
        s.ioctl(libc::TCXONC, &arg(libc::TCOOFF)).unwrap();
        assert_eq!(s.write(b"x", &intr), Err(Errno::EAGAIN));
        assert_eq!(s.readiness() & EPOLLOUT, 0);
        m.write(b"\x11", &intr).unwrap();
        assert_eq!(s.write(b"x", &intr), Err(Errno::EAGAIN));
        s.ioctl(libc::TCXONC, &arg(libc::TCOON)).unwrap();
        assert_eq!(s.write(b"x", &intr), Ok(1));
        // VSTOP (IXON) stops it, VSTART restarts it.
        m.write(b"\x13", &intr).unwrap();
        assert_eq!(s.write(b"y", &intr), Err(Errno::EAGAIN));
        m.write(b"\x11", &intr).unwrap();
        assert_eq!(s.write(b"y", &intr), Ok(1));
        // TCFLSH: the master's input is the replica's output.
        assert_eq!(
            m.ioctl(libc::FIONREAD, &[]).unwrap().out,
            2i32.to_le_bytes()
        );
        m.ioctl(libc::TCFLSH, &arg(libc::TCIFLUSH)).unwrap();
        assert_eq!(
            m.ioctl(libc::FIONREAD, &[]).unwrap().out,
            0i32.to_le_bytes()
        );
        m.write(b"line\n", &intr).unwrap();
        m.ioctl(libc::TCFLSH, &arg(libc::TCOFLUSH)).unwrap();
        assert_eq!(
            s.ioctl(libc::FIONREAD, &[]).unwrap().out,
            0i32.to_le_bytes()
        );
        assert_eq!(
            m.ioctl(libc::TCFLSH, &arg(7)).err(),
            Some(Errno::EINVAL),
            "an unknown queue"
        );
        // /dev/pts lists ptmx and the open pair; a freed index is reused.
        let names: Vec<Vec<u8>> = vfs
            .root()
            .inode()
            .readdir()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec![b"ptmx".to_vec(), b"0".to_vec()]);
        drop((m, s));
        let again = vfs.open_at(&r, b"/ptmx", libc::O_RDWR, 0).unwrap();
        assert_eq!(
            again.ioctl(libc::TIOCGPTN, &[]).unwrap().out,
            0i32.to_le_bytes()
        );
    }

    #[test]
    fn vtime_times_out_and_vmin_waits() {
        let vfs = devfs_vfs();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let m = vfs.open_at(&r, b"/ptmx", libc::O_RDWR, 0).unwrap();
        m.ioctl(libc::TIOCSPTLCK, &0i32.to_le_bytes()).unwrap();
        let s = vfs.open_at(&r, b"/0", libc::O_RDWR, 0).unwrap();
        let mut t = Termios::default();
        t.lflag &= !(libc::ICANON | libc::ECHO);
        t.cc[libc::VMIN] = 0;
        t.cc[libc::VTIME] = 1;
        s.ioctl(libc::TCSETS, &t.to_bytes()).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf, &intr), Ok(0));
        assert!(start.elapsed() >= Duration::from_millis(90));
        t.cc[libc::VMIN] = 3;
        t.cc[libc::VTIME] = 0;
        s.ioctl(libc::TCSETS, &t.to_bytes()).unwrap();
        let m2 = m.clone();
        let writer = std::thread::spawn(move || {
            for c in [b"a", b"b", b"c"] {
                std::thread::sleep(Duration::from_millis(10));
                m2.write(c, &Interrupt::new()).unwrap();
            }
        });
        assert_eq!(s.read(&mut buf, &intr), Ok(3), "VMIN bytes at once");
        assert_eq!(&buf[..3], b"abc");
        writer.join().unwrap();
    }
}
