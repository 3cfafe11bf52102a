//! The control channel between `cryo` commands and a running sandbox: one
//! JSON request and one JSON reply per connection on the sandbox's
//! `control.sock` (runsc's urpc controller, much reduced).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use sentry::kernel::interrupt::TaskInterrupt;

/// What a command asks of a sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Checkpoint {
        image_path: String,
        leave_running: bool,
        /// `none` or `zstd[:LEVEL]`.
        compression: String,
        force: bool,
    },
}

/// The sandbox's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    Checkpointed {
        path: String,
        file_bytes: u64,
        memory_bytes: u64,
    },
    Error(String),
}

/// A request waiting for the task thread, with where to send the reply.
pub type Pending = (Request, Sender<Reply>);

/// Largest request accepted: requests are a few hundred bytes.
const MAX_REQUEST: u64 = 64 * 1024;

fn serve_one(
    stream: UnixStream,
    queue: &Sender<Pending>,
    interrupt: &TaskInterrupt,
) -> anyhow::Result<()> {
    let mut line = String::new();
    BufReader::new((&stream).take_bounded()).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            let (tx, rx) = channel();
            queue.send((req, tx)).context("sandbox is shutting down")?;
            // Stop the task at its next clean boundary; it handles the
            // queued request on its own thread.
            interrupt.interrupt();
            rx.recv()
                .unwrap_or_else(|_| Reply::Error("the sandbox exited before answering".into()))
        }
        Err(e) => Reply::Error(format!("malformed request: {e}")),
    };
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    (&stream).write_all(out.as_bytes())?;
    Ok(())
}

trait TakeBounded: Sized + std::io::Read {
    fn take_bounded(self) -> std::io::Take<Self> {
        self.take(MAX_REQUEST)
    }
}
impl<R: std::io::Read> TakeBounded for R {}

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

/// Sends `req` to the sandbox listening on `path` and waits for its reply.
pub fn call(path: &Path, req: &Request) -> anyhow::Result<Reply> {
    let stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    let mut msg = serde_json::to_string(req)?;
    msg.push('\n');
    (&stream).write_all(msg.as_bytes())?;
    let mut line = String::new();
    BufReader::new((&stream).take_bounded()).read_line(&mut line)?;
    if line.is_empty() {
        anyhow::bail!("the sandbox closed the control connection without answering");
    }
    Ok(serde_json::from_str(&line)?)
}
