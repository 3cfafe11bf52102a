//! A container's terminal (process.terminal, `exec --tty`).
//!
//! The process gets a pseudo-terminal *of the sandbox* (the Sentry's devpts,
//! its line discipline and job control) as its controlling terminal. The
//! host sees a host pty that cryo makes: its master goes to whoever asked
//! (over `--console-socket`, runc's protocol: one SCM_RIGHTS fd with the
//! name `/dev/ptmx` as the message), and the sandbox copies bytes between
//! the host replica and its own pty master both ways. The host replica is
//! raw, so only the sandbox's line discipline edits, echoes and signals.
//!
//! Window size: the owner of the host master resizes it (conmon does
//! TIOCSWINSZ on it); that is the host replica's size, which nobody is
//! told about (the replica is nobody's controlling terminal, so no
//! SIGWINCH), so the input copier polls it and passes a change on as a
//! TIOCSWINSZ of the sandbox's pty (SIGWINCH to its foreground group).
//!
//! Hangup: the container's end closes the host replica, which the master's
//! owner sees as EIO/POLLHUP; the master's close makes the copiers drop
//! the sandbox's master, which hangs the sandbox's terminal up (SIGHUP to
//! the session) as Linux's pty_close does.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use sentry::errno::Errno;
use sentry::kernel::thread_group::ProcessLinks;
use sentry::kernel::{Kernel, Task};
use sentry::vfs::pty::{pty_of, JobSignals, Terminal, WinSize};
use sentry::vfs::{FileOps, Interrupt, IoCtx, OpenFile};

use super::bundle::ConsoleSize;

/// The name runc's init sends with the master (containerd/console names
/// the master it opens after /dev/ptmx); conmon logs it.
const MASTER_NAME: &[u8] = b"/dev/ptmx";

/// How often the input copier looks at the host terminal's size.
const WINSIZE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("--console-socket {path}: {error}")]
    Connect {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--console-socket {path}: sending the terminal: {error}")]
    Send {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("creating a host pseudo-terminal: {0}")]
    HostPty(nix::Error),
    #[error("the host terminal: {0}")]
    HostIo(std::io::Error),
    #[error("the sandbox has no devpts at /dev/pts for the container's terminal")]
    NoDevpts,
    #[error("the sandbox's terminal: {0}")]
    Sandbox(Errno),
    #[error("the restored sandbox has no terminal left without its host side")]
    NothingToAttach,
}

// ---- the host side ---------------------------------------------------------

/// A connection to a `--console-socket`, made before the container is
/// claimed so that a wrong path is refused with nothing left behind.
pub struct ConsoleSocket {
    path: PathBuf,
    stream: UnixStream,
}

impl ConsoleSocket {
    pub fn connect(path: &Path) -> Result<ConsoleSocket, ConsoleError> {
        let stream = UnixStream::connect(path).map_err(|error| ConsoleError::Connect {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            stream,
        })
    }

    /// Sends `master` as runc does (utils.SendRawFd: the name as the
    /// message, the fd as SCM_RIGHTS) and closes the connection.
    pub fn send(self, master: &OwnedFd) -> Result<(), ConsoleError> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        let fds = [master.as_fd()];
        cmsg.push(SendAncillaryMessage::ScmRights(&fds));
        let iov = [IoSlice::new(MASTER_NAME)];
        loop {
            match sendmsg(&self.stream, &iov, &mut cmsg, SendFlags::empty()) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => {
                    return Err(ConsoleError::Send {
                        path: self.path,
                        error: error.into(),
                    })
                }
            }
        }
    }
}

/// A host pty pair: the master for the console's owner, the replica the
/// sandbox copies through.
pub struct HostPty {
    pub master: OwnedFd,
    pub replica: OwnedFd,
}

/// A new host pty of `size`, its replica raw (the sandbox's line
/// discipline is the one that counts), both ends close-on-exec.
pub fn host_pty(size: Option<ConsoleSize>) -> Result<HostPty, ConsoleError> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let ws = size.map(|s| nix::pty::Winsize {
        ws_row: s.rows,
        ws_col: s.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let pair = nix::pty::openpty(ws.as_ref(), None).map_err(ConsoleError::HostPty)?;
    for fd in [&pair.master, &pair.slave] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(ConsoleError::HostPty)?;
    }
    let mut t = tcgetattr(&pair.slave).map_err(ConsoleError::HostPty)?;
    cfmakeraw(&mut t);
    tcsetattr(&pair.slave, SetArg::TCSANOW, &t).map_err(ConsoleError::HostPty)?;
    Ok(HostPty {
        master: pair.master,
        replica: pair.slave,
    })
}

/// Puts this process's stdin in raw mode while it lives, if it is a
/// terminal (a foreground `run` or `exec` whose own terminal is the
/// container's: the sandbox's line discipline does the editing).
pub struct RawStdin {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawStdin {
    pub fn new() -> RawStdin {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawStdin { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawStdin { saved: None };
        }
        RawStdin { saved: Some(saved) }
    }
}

impl Default for RawStdin {
    fn default() -> Self {
        RawStdin::new()
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSADRAIN,
                t,
            );
        }
    }
}

/// What the sandbox copies its terminal to and from on the host.
pub struct HostSide {
    input: File,
    output: File,
    /// The input's end is the other side's close (a host replica whose
    /// master closed), not merely the end of what a caller piped in.
    hangup_on_eof: bool,
}

impl HostSide {
    /// The replica of a host pty whose master went over a console socket.
    pub fn replica(fd: OwnedFd) -> Result<HostSide, ConsoleError> {
        let output = fd.try_clone().map_err(ConsoleError::HostIo)?;
        Ok(HostSide {
            input: File::from(fd),
            output: File::from(output),
            hangup_on_eof: true,
        })
    }

    /// This process's stdin and stdout (`run` or `exec` in the foreground
    /// without a console socket, as runc uses its own stdio then).
    pub fn own_stdio() -> Result<HostSide, ConsoleError> {
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(ConsoleError::HostIo)?;
        let output = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(ConsoleError::HostIo)?;
        Ok(HostSide::from_fds(input, output))
    }

    /// The two descriptors to pass to a sandbox (an exec's terminal).
    pub fn into_fds(self) -> [OwnedFd; 2] {
        [self.input.into(), self.output.into()]
    }

    /// From the two descriptors [`HostSide::into_fds`] gave; a pair of one
    /// tty (a host replica) hangs up at its end.
    pub fn from_fds(input: OwnedFd, output: OwnedFd) -> HostSide {
        let same = match (
            nix::sys::stat::fstat(input.as_raw_fd()),
            nix::sys::stat::fstat(output.as_raw_fd()),
        ) {
            (Ok(a), Ok(b)) => {
                a.st_rdev == b.st_rdev && a.st_ino == b.st_ino && a.st_dev == b.st_dev
            }
            _ => false,
        };
        let tty = nix::sys::termios::tcgetattr(&input).is_ok();
        HostSide {
            input: File::from(input),
            output: File::from(output),
            hangup_on_eof: same && tty,
        }
    }

    fn winsize(&self) -> Option<WinSize> {
        rustix::termios::tcgetwinsize(&self.input)
            .ok()
            .map(|w| WinSize {
                row: w.ws_row,
                col: w.ws_col,
                xpixel: w.ws_xpixel,
                ypixel: w.ws_ypixel,
            })
    }
}

// ---- the sandbox side ------------------------------------------------------

fn signals_of(kernel: &Arc<Kernel>) -> Weak<dyn JobSignals> {
    let k: Arc<dyn JobSignals> = kernel.clone();
    Arc::downgrade(&k)
}

/// A new pty of the sandbox, unlocked, its replica open as /dev/pts/N
/// (so `tty` names it), sized like the host side.
pub struct SandboxTerminal {
    master: Arc<dyn FileOps>,
    tty: Arc<Terminal>,
    replica: Arc<OpenFile>,
}

impl SandboxTerminal {
    pub fn new(kernel: &Arc<Kernel>, host: &HostSide) -> Result<SandboxTerminal, ConsoleError> {
        let devpts = kernel.devpts().ok_or(ConsoleError::NoDevpts)?;
        let master = devpts.open_master().map_err(ConsoleError::Sandbox)?;
        let tty = pty_of(master.as_ref())
            .ok_or(ConsoleError::NoDevpts)?
            .terminal()
            .clone();
        {
            let mut st = tty.state();
            st.locked = false;
            if let Some(ws) = host.winsize() {
                st.winsize = ws;
            }
        }
        tty.set_signals(signals_of(kernel));
        let path = format!("/dev/pts/{}", tty.index());
        let replica = kernel
            .vfs
            .open_at(&kernel.vfs.root(), path.as_bytes(), libc::O_RDWR, 0)
            .map_err(ConsoleError::Sandbox)?;
        Ok(SandboxTerminal {
            master,
            tty,
            replica,
        })
    }

    /// The replica as descriptors 0, 1 and 2.
    pub fn stdio(&self) -> Vec<(u32, Arc<OpenFile>)> {
        (0..3).map(|i| (i, self.replica.clone())).collect()
    }

    /// Makes this the controlling terminal of the session `links` leads,
    /// its group in the foreground (runc's init: setsid, TIOCSCTTY).
    pub fn control(&self, links: ProcessLinks) {
        let mut st = self.tty.state();
        st.session = links.sid;
        st.pgrp = links.pgid;
        st.detached.clear();
    }

    /// Starts copying between this terminal and `host`.
    pub fn attach(self, host: HostSide) -> Console {
        Console::start(self.tty, self.master, host)
    }
}

/// Gives `task` (a container's init, not yet started) the sandbox terminal
/// over `host` as its stdio and controlling terminal.
pub fn init_terminal(task: &mut Task, host: HostSide) -> Result<Console, ConsoleError> {
    let term = SandboxTerminal::new(task.kernel(), &host)?;
    {
        let fds = task.fds();
        let mut fds = fds.lock();
        for (i, f) in term.stdio() {
            fds.insert_at(i as i32, f, false, u64::MAX)
                .map_err(ConsoleError::Sandbox)?;
        }
    }
    term.control(task.tg().links());
    Ok(term.attach(host))
}

/// The terminal of a restored sandbox whose host side was cryo's (a
/// terminal without a master that has not hung up): the one of init's
/// session first.
pub fn restored_terminal(kernel: &Arc<Kernel>) -> Option<Arc<Terminal>> {
    let devpts = kernel.devpts()?;
    let orphans: Vec<Arc<Terminal>> = devpts
        .terminals()
        .into_iter()
        .filter(|t| !t.master_open() && !t.state().hung_up)
        .collect();
    let init_sid = kernel.pids.thread_group(1).map(|tg| tg.links().sid);
    orphans
        .iter()
        .find(|t| init_sid.is_some_and(|s| s != 0 && t.state().session == s))
        .or_else(|| orphans.first())
        .cloned()
}

/// Attaches a restored sandbox's terminal to `host`: the replica of the
/// host pty whose master `cryo restore --console-socket` sent.
pub fn attach_restored_to(kernel: &Arc<Kernel>, host: HostSide) -> Result<Console, ConsoleError> {
    let tty = restored_terminal(kernel).ok_or(ConsoleError::NothingToAttach)?;
    Ok(attach_host(tty, host))
}

/// Attaches `tty`, a sandbox terminal without a master, to a new host pty
/// of its size whose master goes over `socket`: what `cryo restore` does
/// across its two processes, in one for the unit test.
#[cfg(test)]
pub fn attach_terminal(tty: Arc<Terminal>, socket: &Path) -> Result<Console, ConsoleError> {
    let sock = ConsoleSocket::connect(socket)?;
    let ws = tty.state().winsize;
    let size = (ws.row != 0 || ws.col != 0).then_some(ConsoleSize {
        rows: ws.row,
        cols: ws.col,
    });
    let pty = host_pty(size)?;
    sock.send(&pty.master)?;
    drop(pty.master);
    Ok(attach_host(tty, HostSide::replica(pty.replica)?))
}

/// `tty` gets a master again, copied to and from `host`.
fn attach_host(tty: Arc<Terminal>, host: HostSide) -> Console {
    let master = tty.reopen_end(true);
    Console::start(tty, master, host)
}

/// A terminal being copied to and from its host side.
pub struct Console {
    interrupt: Interrupt,
    stop: Arc<AtomicBool>,
    input: Option<JoinHandle<()>>,
    output: Option<JoinHandle<()>>,
}

impl Console {
    fn start(tty: Arc<Terminal>, master: Arc<dyn FileOps>, host: HostSide) -> Console {
        let interrupt = Interrupt::new();
        let stop = Arc::new(AtomicBool::new(false));
        let HostSide {
            input,
            output,
            hangup_on_eof,
        } = host;
        let out = {
            let (master, interrupt, stop) = (master.clone(), interrupt.clone(), stop.clone());
            std::thread::Builder::new()
                .name("cryo-tty-out".into())
                .spawn(move || copy_out(master.as_ref(), output, &interrupt, &stop))
        };
        let inp = {
            let interrupt = interrupt.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cryo-tty-in".into())
                .spawn(move || copy_in(&tty, master, input, hangup_on_eof, &interrupt, &stop))
        };
        let spawned = |r: std::io::Result<JoinHandle<()>>| match r {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a terminal copier");
                None
            }
        };
        Console {
            interrupt,
            stop,
            output: spawned(out),
            input: spawned(inp),
        }
    }

    /// Stops copying once what the sandbox wrote has reached the host
    /// (the process has ended: nothing more comes).
    pub fn finish(mut self) {
        self.stop_and_join();
    }

    /// Whether the host side has gone (hung up) or the copying ended.
    #[cfg(test)]
    pub fn ended(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.interrupt.interrupt();
        for h in [self.output.take(), self.input.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Sandbox → host: what the replica's writers wrote (after output
/// processing). Ends when every replica is closed and drained (EIO), or
/// when stopped, after a last drain.
fn copy_out(master: &dyn FileOps, mut output: File, interrupt: &Interrupt, stop: &AtomicBool) {
    let mut buf = vec![0u8; 4096];
    let blocking = IoCtx {
        interrupt,
        nonblock: false,
    };
    loop {
        match master.read(&blocking, &mut buf, None) {
            Ok(0) => break,
            Ok(n) => {
                if output.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(Errno::EINTR) => {
                // Stopped: what is buffered still goes out.
                let drain = IoCtx {
                    interrupt,
                    nonblock: true,
                };
                while let Ok(n) = master.read(&drain, &mut buf, None) {
                    if n == 0 || output.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                break;
            }
            Err(_) => break,
        }
    }
    let _ = output.flush();
    stop.store(true, Ordering::SeqCst);
    interrupt.interrupt();
}

/// Host → sandbox: the keys typed (through the sandbox's line
/// discipline), and the host side's window size. The host side's close
/// drops this copier's master, which hangs the sandbox's terminal up.
fn copy_in(
    tty: &Terminal,
    master: Arc<dyn FileOps>,
    mut input: File,
    hangup_on_eof: bool,
    interrupt: &Interrupt,
    stop: &AtomicBool,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let io = IoCtx {
        interrupt,
        nonblock: false,
    };
    let mut buf = vec![0u8; 4096];
    let mut size = rustix::termios::tcgetwinsize(&input).ok();
    let timeout = PollTimeout::try_from(WINSIZE_POLL).unwrap_or(PollTimeout::NONE);
    let mut reading = true;
    while !stop.load(Ordering::SeqCst) {
        let mut ready = PollFlags::empty();
        if reading {
            let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(_) => ready = fds[0].revents().unwrap_or(PollFlags::empty()),
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
            }
        } else {
            std::thread::sleep(WINSIZE_POLL);
        }
        if let Ok(now) = rustix::termios::tcgetwinsize(&input) {
            if size.is_none_or(|s| {
                (s.ws_row, s.ws_col, s.ws_xpixel, s.ws_ypixel)
                    != (now.ws_row, now.ws_col, now.ws_xpixel, now.ws_ypixel)
            }) {
                size = Some(now);
                let ws = WinSize {
                    row: now.ws_row,
                    col: now.ws_col,
                    xpixel: now.ws_xpixel,
                    ypixel: now.ws_ypixel,
                };
                if let Some(pgrp) = tty.set_winsize(ws) {
                    tty.signal_foreground(pgrp, libc::SIGWINCH);
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // EIO: the host master closed.
            Err(_) => 0,
        };
        if n == 0 {
            if hangup_on_eof {
                break;
            }
            // The caller's input ended; its terminal stays.
            reading = false;
            continue;
        }
        let mut done = 0;
        while done < n {
            match master.write(&io, &buf[done..n], None) {
                Ok(w) => done += w,
                Err(_) => break,
            }
        }
        if done < n && stop.load(Ordering::SeqCst) {
            break;
        }
    }
    if hangup_on_eof && !stop.load(Ordering::SeqCst) {
        tracing::debug!(index = tty.index(), "the host terminal hung up");
    }
    stop.store(true, Ordering::SeqCst);
    interrupt.interrupt();
    drop(master);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::vfs::pty::{DevPts, TtyState};
    use sentry::vfs::Timespec;
    use std::os::unix::net::UnixListener;
    use std::time::Instant;

    /// Receives the one fd runc's protocol sends, and its name.
    fn receive(listener: &UnixListener) -> (OwnedFd, Vec<u8>) {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        use std::io::IoSliceMut;
        let (conn, _) = listener.accept().unwrap();
        let mut name = vec![0u8; 256];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let n = recvmsg(
            &conn,
            &mut [IoSliceMut::new(&mut name)],
            &mut cmsg,
            RecvFlags::empty(),
        )
        .unwrap()
        .bytes;
        name.truncate(n);
        let fd = cmsg
            .drain()
            .find_map(|m| match m {
                RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("an fd");
        (fd, name)
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[derive(Default)]
    struct Hangups(std::sync::Mutex<Vec<(i32, i32)>>);
    impl JobSignals for Hangups {
        fn signal_group(&self, pgid: i32, signo: i32) {
            self.0.lock().unwrap().push((pgid, signo));
        }
        fn hangup_session(&self, sid: i32) {
            self.0.lock().unwrap().push((sid, libc::SIGHUP));
        }
    }

    /// A terminal as a restore leaves one whose master was the console's:
    /// a session, a size, its replica open, no master.
    #[test]
    fn a_restored_terminal_is_attached_to_a_new_host_pty() {
        let devpts = DevPts::new(Timespec::default());
        let mut state = TtyState::default();
        state.session = 7;
        state.pgrp = 9;
        state.winsize = WinSize {
            row: 33,
            col: 101,
            ..WinSize::default()
        };
        let tty = devpts.add(Some(0), state, 0, Timespec::default()).unwrap();
        let recorder = Arc::new(Hangups::default());
        let signals: Arc<dyn JobSignals> = recorder.clone();
        tty.set_signals(Arc::downgrade(&signals));
        let replica = tty.reopen_end(false);
        assert!(!tty.master_open());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let console = attach_terminal(tty.clone(), &path).unwrap();
        let (master, name) = receive(&listener);
        assert_eq!(name, MASTER_NAME);
        assert!(tty.master_open());

        // The host pty has the sandbox terminal's size.
        let ws = rustix::termios::tcgetwinsize(&master).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));

        // Keys typed on the host master reach the replica through the
        // sandbox's line discipline (canonical: a line at a time, echoed).
        let mut m = File::from(master);
        m.write_all(b"hi\n").unwrap();
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: false,
        };
        let mut buf = [0u8; 64];
        let n = replica.read(&io, &mut buf, None).unwrap();
        assert_eq!(&buf[..n], b"hi\n");
        let mut echo = Vec::new();
        while !echo.ends_with(b"hi\r\n") {
            let n = m.read(&mut buf).unwrap();
            echo.extend_from_slice(&buf[..n]);
        }
        // What the replica writes reaches the host master (ONLCR once:
        // the host replica is raw).
        replica.write(&io, b"out\n", None).unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"out\r\n") {
            let n = m.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"out\r\n");

        // A resize of the host master is the sandbox terminal's, and its
        // foreground group hears of it.
        rustix::termios::tcsetwinsize(
            &m,
            rustix::termios::Winsize {
                ws_row: 40,
                ws_col: 120,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
        wait_until("the resize reaches the sandbox", || {
            tty.state().winsize.row == 40 && tty.state().winsize.col == 120
        });
        let recorded = |want: (i32, i32)| recorder.0.lock().unwrap().contains(&want);
        wait_until("SIGWINCH to the foreground group", || {
            recorded((9, libc::SIGWINCH))
        });

        // The host master's close hangs the sandbox's terminal up.
        drop(m);
        wait_until("the hangup reaches the sandbox", || tty.state().hung_up);
        wait_until("SIGHUP to the session", || recorded((7, libc::SIGHUP)));
        assert!(console.ended());
        console.finish();
        drop(replica);
    }

    #[test]
    fn a_missing_console_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.sock");
        let err = ConsoleSocket::connect(&path).err().unwrap().to_string();
        assert!(
            err.contains("--console-socket") && err.contains("nowhere.sock"),
            "{err}"
        );
    }
}
