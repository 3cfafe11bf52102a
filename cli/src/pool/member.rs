//! One pooled sandbox (`cryo pool member`, started by the daemon): it
//! restores the statefile held (`sentry::state::restore_container_held`:
//! everything loaded, stubs made, no task running), with placeholders for
//! the saved stdio, says it is ready, and waits. A take passes the taker's
//! stdio and status socket: the placeholders are rebound to them, the
//! sandbox claims its id under --root, resumes (a new boot id, the take's
//! signal), answers, and runs as a `cryo do` sandbox does until it ends;
//! its exit status goes to the status socket.
//!
//! The daemon's socket is this process's stdin (so no fd number is
//! adopted unsafely); a closed socket before a take retires the member.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::oci::commands::Globals;

#[derive(clap::Args, Debug)]
pub struct MemberArgs {
    #[arg(long)]
    image_path: PathBuf,
    #[arg(long)]
    take_signal: Option<i32>,
}

/// From the daemon to a member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum MemberCommand {
    /// Passes stdin, stdout, stderr and the taker's status socket.
    Take { id: String, env: Vec<String> },
}

/// From a member to the daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum MemberReply {
    /// Restored and held; its memory file holds this much.
    Ready { memory_bytes: u64 },
    /// The restore failed: the member ends.
    Failed(String),
    /// The take went through: the sandbox runs.
    Taken { pid: i32 },
    /// The take was refused before anything changed (its id is in use,
    /// say): the member is still ready.
    Refused(String),
    /// The take failed halfway: the member ends without running.
    Broken(String),
}

/// Host placeholders for the saved stdio until a take rebinds them.
fn placeholders() -> anyhow::Result<Vec<(u32, Arc<sentry::vfs::OpenFile>)>> {
    let mut out = Vec::new();
    for (i, flags) in [
        (0u32, libc::O_RDONLY),
        (1, libc::O_WRONLY),
        (2, libc::O_WRONLY),
    ] {
        let f = std::fs::OpenOptions::new()
            .read(i == 0)
            .write(i != 0)
            .open("/dev/null")
            .context("opening /dev/null")?;
        let file = sentry::vfs::donated::open_donated_fd(OwnedFd::from(f), i, flags)
            .map_err(|e| anyhow::anyhow!("stdio placeholder {i}: {e}"))?;
        out.push((i, file));
    }
    Ok(out)
}

/// The daemon's socket, this process's stdin, which then becomes
/// /dev/null.
fn adopt_daemon_socket() -> anyhow::Result<UnixStream> {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating the daemon's socket")?;
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).context("replacing stdin")?;
    Ok(UnixStream::from(fd))
}

fn reply(sock: &UnixStream, r: &MemberReply) -> anyhow::Result<()> {
    super::send(sock.as_fd(), r, &[])
}

pub fn run(args: MemberArgs, g: &Globals) -> anyhow::Result<i32> {
    let sock = adopt_daemon_socket()?;
    let stdio = placeholders()?;
    let (gofer_sock, mut gofer) = crate::do_cmd::start_gofer()?;
    let container = sentry::state::ContainerRestore {
        stdio: Some(stdio.clone()),
        ..Default::default()
    };
    let held = match sentry::state::restore_container_held(
        &args.image_path,
        gofer_sock,
        container,
        false,
        g.platform.as_deref(),
    ) {
        Ok(h) => h,
        Err(e) => {
            let e = anyhow::Error::new(e);
            let _ = reply(&sock, &MemberReply::Failed(crate::one_line(&e)));
            let _ = gofer.kill();
            let _ = gofer.wait();
            return Err(e);
        }
    };
    let memory_bytes = held.kernel().memory_file.resident_bytes();
    reply(&sock, &MemberReply::Ready { memory_bytes })?;
    tracing::debug!(memory_bytes, "pool member ready");
    let argv = crate::container::recorded_argv(held.init_argv().iter().map(Vec::as_slice));
    // Wait for the take (or for the daemon to retire this member).
    let (id, env, fds, dir) = loop {
        let Some((cmd, fds)) = super::recv::<MemberCommand>(sock.as_fd())? else {
            tracing::debug!("pool member retired before a take");
            let _ = gofer.kill();
            let _ = gofer.wait();
            // Nothing of the held sandbox ever ran: its stubs end with
            // this process, without unwinding a kernel that never started.
            std::process::exit(0);
        };
        let MemberCommand::Take { id, env } = cmd;
        tracing::debug!(%id, "pool member: take received");
        if fds.len() != 4 {
            reply(
                &sock,
                &MemberReply::Refused(format!(
                    "a take passes 4 files (stdio and a status socket), not {}",
                    fds.len()
                )),
            )?;
            continue;
        }
        match crate::container::ContainerDir::create(&g.root, &id, &argv) {
            Ok(dir) => break (id, env, fds, dir),
            Err(e) => reply(&sock, &MemberReply::Refused(crate::one_line(&e)))?,
        }
    };
    let mut fds = fds.into_iter();
    let mut bind = || -> anyhow::Result<()> {
        for (i, file) in &stdio {
            let Some(fd) = fds.next() else {
                bail!("stdio {i} missing");
            };
            sentry::vfs::donated::rebind_donated(file, fd)
                .map_err(|e| anyhow::anyhow!("attaching stdio {i}: {e}"))?;
        }
        Ok(())
    };
    if let Err(e) = bind() {
        let _ = reply(&sock, &MemberReply::Broken(crate::one_line(&e)));
        return Err(e);
    }
    drop(stdio);
    let status = fds.next().map(UnixStream::from);
    let take = sentry::state::Take {
        id: id.clone(),
        env,
        signal: args.take_signal,
    };
    let mut task = match held.resume_taken(&take) {
        Ok(t) => t,
        Err(e) => {
            let e = anyhow::Error::new(e);
            let _ = reply(&sock, &MemberReply::Broken(crate::one_line(&e)));
            return Err(e);
        }
    };
    let queue = match crate::control::start_server(
        &crate::container::control_socket(&g.root, &id),
        task.interrupt().clone(),
    ) {
        Ok(q) => q,
        Err(e) => {
            let _ = reply(&sock, &MemberReply::Broken(crate::one_line(&e)));
            return Err(e);
        }
    };
    tracing::debug!(%id, "pool member: resumed");
    reply(
        &sock,
        &MemberReply::Taken {
            pid: std::process::id() as i32,
        },
    )?;
    drop(sock);
    let code = crate::supervisor::run_started(&mut task, &id, &queue);
    drop(task);
    drop(queue);
    drop(dir);
    let _ = gofer.wait();
    let code = code?;
    if let Some(mut s) = status {
        let mut line = serde_json::to_string(&super::Status::Exited { code })?;
        line.push('\n');
        // The taker may be gone (detached): the status is then nobody's.
        let _ = s.write_all(line.as_bytes());
    }
    Ok(code)
}
