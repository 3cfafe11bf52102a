//! The control channel between `cryo` commands and a running sandbox (a
//! much reduced runsc urpc controller): JSON lines on the sandbox's
//! `control.sock`, with files passed as SCM_RIGHTS so the sandbox opens no
//! host file itself.
//!
//! Checkpoint is two-phase: the command passes a temporary file, the
//! sandbox writes the statefile into it and answers `Written`, the command
//! makes the file durable and renames it into place, then sends `commit`;
//! only then does a sandbox asked to exit after the checkpoint exit. If the
//! command fails or dies before committing, the sandbox keeps running.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use gofer::wire::Received;
use serde::{Deserialize, Serialize};

use sentry::kernel::interrupt::TaskInterrupt;

/// What a command asks of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Write a statefile into the passed file.
    Checkpoint {
        leave_running: bool,
        /// `none` or `zstd[:LEVEL]`.
        compression: String,
    },
}

/// The sandbox's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    Written { file_bytes: u64, memory_bytes: u64 },
    Error(String),
}

/// A request on its way to the task thread: the passed file, where to send
/// the reply, and where the command's commit (or its absence) arrives.
pub struct Pending {
    pub request: Request,
    pub file: Option<OwnedFd>,
    pub reply: Sender<Reply>,
    pub commit: Receiver<bool>,
}

/// Largest request accepted: requests are a few hundred bytes.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a sandbox waits for the command's commit before carrying on.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
const COMMIT: &str = "commit\n";

/// Reads one message and the file passed with it.
fn recv_request(stream: &UnixStream) -> anyhow::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    match gofer::wire::recv(stream.as_fd(), &mut buf)? {
        Received::Message { len, fds } => {
            buf.truncate(len);
            Ok((buf, fds.into_iter().next()))
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
    let (msg, file) = recv_request(&stream)?;
    let line = String::from_utf8_lossy(&msg);
    let reply = match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(request) => {
            let (reply_tx, reply_rx) = channel();
            let (commit_tx, commit_rx) = channel();
            queue
                .send(Pending {
                    request,
                    file,
                    reply: reply_tx,
                    commit: commit_rx,
                })
                .map_err(|_| anyhow::anyhow!("sandbox is shutting down"))?;
            // Stop the task at its next clean boundary; it handles the
            // queued request on its own thread.
            interrupt.interrupt();
            let reply = reply_rx
                .recv()
                .unwrap_or_else(|_| Reply::Error("the sandbox exited before answering".into()));
            send_line(&stream, &reply)?;
            if let Reply::Written { .. } = reply {
                let mut answer = String::new();
                stream.set_read_timeout(Some(COMMIT_TIMEOUT))?;
                let committed = BufReader::new((&stream).take(64))
                    .read_line(&mut answer)
                    .is_ok()
                    && answer == COMMIT;
                let _ = commit_tx.send(committed);
            }
            return Ok(());
        }
        Err(e) => Reply::Error(format!("malformed request: {e}")),
    };
    send_line(&stream, &reply)
}

fn send_line<T: Serialize>(mut stream: &UnixStream, v: &T) -> anyhow::Result<()> {
    let mut out = serde_json::to_string(v)?;
    out.push('\n');
    stream.write_all(out.as_bytes())?;
    Ok(())
}

/// Listens on `path`; requests are queued for the task thread, which is
/// interrupted to handle them.
pub fn start_server(
    path: &Path,
    interrupt: Arc<TaskInterrupt>,
) -> anyhow::Result<Receiver<Pending>> {
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    let (tx, rx) = channel::<Pending>();
    std::thread::Builder::new()
        .name("cryo-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve_one(stream, &tx, &interrupt) {
                    tracing::warn!(error = %e, "control request failed");
                }
            }
        })?;
    Ok(rx)
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

    /// Sends `req`, with `file` passed alongside, and reads the reply.
    pub fn call(&mut self, req: &Request, file: Option<BorrowedFd<'_>>) -> anyhow::Result<Reply> {
        let mut msg = serde_json::to_string(req)?;
        msg.push('\n');
        gofer::wire::send(self.stream.as_fd(), msg.as_bytes(), file)?;
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

    /// Tells the sandbox the statefile is durable and in place.
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.stream.write_all(COMMIT.as_bytes())?;
        Ok(())
    }
}
