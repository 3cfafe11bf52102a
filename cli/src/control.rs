//! The control channel between `cryo` commands and a running sandbox (a
//! much reduced runsc urpc controller): JSON lines on the sandbox's
//! `control.sock`, with files passed as SCM_RIGHTS so the sandbox opens no
//! host file itself.
//!
//! A checkpoint is one request and one reply. The command passes the file
//! to write (an unnamed `O_TMPFILE` in the image directory) and the image
//! directory itself; the sandbox writes the statefile, makes it durable,
//! links it into the directory as `checkpoint.cryo` (the single atomic step
//! that commits the checkpoint), fsyncs the directory, answers, and only
//! then exits (without `--leave-running`). Nothing after the request
//! depends on the command: a command killed at any point changes neither
//! the outcome nor its consistency (see `checkpoint_cmd`).

use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use anyhow::{bail, Context};
use gofer::wire::Received;
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::{Deserialize, Serialize};

use sentry::kernel::interrupt::TaskInterrupt;

/// What a command asks of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Write a statefile into the first passed file and publish it as
    /// `checkpoint.cryo` in the second, a directory.
    Checkpoint {
        leave_running: bool,
        /// `none` or `zstd[:LEVEL]`.
        compression: String,
        /// Replace a statefile already there (otherwise the link refuses to).
        force: bool,
        /// Header metadata the command adds (an OCI container's identity).
        #[serde(default)]
        metadata: Vec<(String, String)>,
    },
    /// OCI `start`: run the container's init, which `create` booted.
    Start,
    /// OCI `kill`: `signal` to init, or with `all` to every process.
    Kill {
        signal: i32,
        all: bool,
    },
    /// OCI `pause`: freeze every task until `Resume`.
    Pause,
    Resume,
    /// OCI `ps`: the sandbox's processes.
    Ps,
    /// OCI `events --stats`: what the sandbox uses.
    Stats,
    /// OCI `exec`: a new process, its stdio the three passed files. The
    /// sandbox answers `Started`, then `Exited` when it ends.
    Exec(ExecSpec),
}

/// A process `cryo exec` starts in a running sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub no_new_privs: bool,
    /// The process's capabilities before its execve (process.json's or
    /// the container's process.capabilities); None: every capability, as
    /// runc's own.
    #[serde(default)]
    pub caps: Option<sentry::kernel::creds::CapSets>,
}

/// What a sandbox uses, for `events`: CPU time of its processes (live
/// ones and those they reaped), its memory now, its tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_bytes: u64,
    pub tasks: u64,
    pub tasks_limit: u64,
}

/// One process of `ps`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub cmd: String,
}

/// The sandbox's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The statefile is complete, durable and in place.
    Saved(sentry::state::CheckpointStats),
    Done,
    Processes(Vec<ProcessInfo>),
    Stats(ContainerStats),
    /// An exec'd process runs, with this pid in the sandbox.
    Started {
        pid: i32,
    },
    /// It ended: the status a shell gives it (128+N for signal N).
    Exited {
        code: i32,
    },
    Error(String),
}

/// Every temporary name a checkpoint may leave in an image directory starts
/// with this; the next checkpoint into that directory removes such leftovers.
pub const TEMP_PREFIX: &str = ".checkpoint.cryo.";

/// A request on its way to the task thread: the passed files, where to send
/// the reply, and where the control thread says the reply has left.
pub struct Pending {
    pub request: Request,
    pub files: Vec<OwnedFd>,
    pub reply: Sender<Reply>,
    /// Signalled once the reply is written to the connection (or cannot
    /// be), so a sandbox about to exit does not cut it off.
    pub delivered: Receiver<()>,
}

/// Largest request accepted: requests are a few hundred bytes.
const MAX_MESSAGE: usize = 64 * 1024;

/// Reads one message and the files passed with it.
fn recv_request(stream: &UnixStream) -> anyhow::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    match gofer::wire::recv(stream.as_fd(), &mut buf)? {
        Received::Message { len, fds } => {
            buf.truncate(len);
            Ok((buf, fds))
        }
        Received::Truncated => bail!("control request larger than {MAX_MESSAGE} bytes"),
        Received::Eof => bail!("control connection closed before a request"),
    }
}

fn serve_one(
    stream: UnixStream,
    queue: &Sender<Pending>,
    interrupt: &TaskInterrupt,
) -> anyhow::Result<()> {
    let (msg, files) = recv_request(&stream)?;
    let line = String::from_utf8_lossy(&msg);
    let request = match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(r) => r,
        Err(e) => return send_line(&stream, &Reply::Error(format!("malformed request: {e}"))),
    };
    let (reply_tx, reply_rx) = channel();
    let (delivered_tx, delivered_rx) = channel();
    queue
        .send(Pending {
            request,
            files,
            reply: reply_tx,
            delivered: delivered_rx,
        })
        .map_err(|_| anyhow::anyhow!("sandbox is shutting down"))?;
    // Stop the task at its next clean boundary; it handles the queued
    // request on its own thread.
    interrupt.interrupt();
    // Most requests have one reply; an exec has two (started, exited).
    let mut answered = false;
    while let Ok(reply) = reply_rx.recv() {
        answered = true;
        // The command may be gone (killed): the outcome stands regardless.
        let sent = send_line(&stream, &reply);
        let _ = delivered_tx.send(());
        sent?;
    }
    if !answered {
        let reply = Reply::Error("the sandbox exited before answering".into());
        let sent = send_line(&stream, &reply);
        let _ = delivered_tx.send(());
        sent?;
    }
    Ok(())
}

fn send_line<T: Serialize>(mut stream: &UnixStream, v: &T) -> anyhow::Result<()> {
    let mut out = serde_json::to_string(v)?;
    out.push('\n');
    stream.write_all(out.as_bytes())?;
    Ok(())
}

/// Binds the control socket at `path` (a sandbox does this before it is
/// confined, see crate::confine, and serves it after).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    UnixListener::bind(path).with_context(|| format!("binding control socket {}", path.display()))
}

/// Serves the bound control socket on a thread of its own; requests are
/// queued for the task thread, which is interrupted to handle them.
pub fn serve(
    listener: UnixListener,
    interrupt: Arc<TaskInterrupt>,
) -> anyhow::Result<Receiver<Pending>> {
    let (tx, rx) = channel::<Pending>();
    std::thread::Builder::new()
        .name("cryo-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A connection of its own thread: an exec's stays open
                // until its process ends, and must not hold up the rest.
                let (tx, interrupt) = (tx.clone(), interrupt.clone());
                let spawned = std::thread::Builder::new()
                    .name("cryo-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_one(stream, &tx, &interrupt) {
                            tracing::warn!(error = %e, "control request failed");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot serve a control connection");
                }
            }
        })?;
    Ok(rx)
}

/// Sends `bytes` as one message with `fds` attached.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> anyhow::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => bail!(
                "short send on the control socket: {n} of {} bytes",
                bytes.len()
            ),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("sending a control request"),
        }
    }
}

/// An open control connection to a sandbox.
pub struct Connection {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Connection {
    pub fn open(path: &Path) -> anyhow::Result<Connection> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Connection { stream, reader })
    }

    /// Bounds how long a reply may take (None: forever).
    pub fn set_timeout(&mut self, t: Option<std::time::Duration>) -> anyhow::Result<()> {
        self.stream.set_read_timeout(t)?;
        Ok(())
    }

    /// Sends `req`, with `files` passed alongside, and reads the reply.
    pub fn call(&mut self, req: &Request, files: &[BorrowedFd<'_>]) -> anyhow::Result<Reply> {
        let mut msg = serde_json::to_string(req)?;
        msg.push('\n');
        if msg.len() > MAX_MESSAGE {
            bail!("control request of {} bytes is too large", msg.len());
        }
        send_with_fds(self.stream.as_fd(), msg.as_bytes(), files)?;
        self.next_reply()
    }

    /// Reads the next reply (an exec's second one).
    pub fn next_reply(&mut self) -> anyhow::Result<Reply> {
        let mut line = String::new();
        self.reader
            .by_ref()
            .take(MAX_MESSAGE as u64)
            .read_line(&mut line)?;
        if line.is_empty() {
            bail!("the sandbox closed the control connection without answering");
        }
        Ok(serde_json::from_str(&line)?)
    }
}
