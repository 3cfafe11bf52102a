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
    /// Restore the container of this OCI bundle (its root and mounts), as
    /// `cryo restore --bundle` does.
    #[arg(long)]
    bundle: Option<PathBuf>,
}

/// From the daemon to a member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum MemberCommand {
    /// Passes the statefile's memory, loaded once and sealed, with
    /// --share-memory, else nothing (the first message, before the
    /// restore).
    Memory,
    /// Passes stdin, stdout, stderr and the taker's status socket.
    Take {
        id: String,
        env: Vec<String>,
        #[serde(default)]
        detach: bool,
    },
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
    let memory = match super::recv::<MemberCommand>(sock.as_fd())? {
        Some((MemberCommand::Memory, fds)) if fds.len() <= 1 => fds.into_iter().next(),
        Some(_) => bail!("the pool's first message is not its shared memory"),
        None => return Ok(0),
    };
    let mut gofers: Vec<std::process::Child> = Vec::new();
    let plan = match &args.bundle {
        Some(b) => match crate::oci::bundle::plan(b) {
            Ok(p) => Some(p),
            Err(e) => {
                let e = anyhow::Error::new(e);
                let _ = reply(&sock, &MemberReply::Failed(crate::one_line(&e)));
                return Err(e);
            }
        },
        None => None,
    };
    let restored = restore(&args, plan.as_ref(), stdio.clone(), memory, g, &mut gofers);
    let held = match restored {
        Ok(h) => h,
        Err(e) => {
            let _ = reply(&sock, &MemberReply::Failed(crate::one_line(&e)));
            end_gofers(gofers);
            return Err(e);
        }
    };
    let memory_bytes = held.kernel().memory_file.resident_bytes();
    reply(&sock, &MemberReply::Ready { memory_bytes })?;
    tracing::debug!(memory_bytes, "pool member ready");
    let argv = crate::container::recorded_argv(held.init_argv().iter().map(Vec::as_slice));
    // Wait for the take (or for the daemon to retire this member).
    let (id, env, detach, fds, mut claimed) = loop {
        let Some((cmd, fds)) = super::recv::<MemberCommand>(sock.as_fd())? else {
            tracing::debug!("pool member retired before a take");
            end_gofers(gofers);
            // Nothing of the held sandbox ever ran: its stubs end with
            // this process, without unwinding a kernel that never started.
            std::process::exit(0);
        };
        let MemberCommand::Take { id, env, detach } = cmd else {
            reply(&sock, &MemberReply::Refused("not a take".into()))?;
            continue;
        };
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
        match claim(&g.root, &id, &argv, plan.as_ref(), args.bundle.as_deref()) {
            Ok(dir) => break (id, env, detach, fds, dir),
            Err(e) => reply(&sock, &MemberReply::Refused(crate::one_line(&e)))?,
        }
    };
    let mut fds = fds.into_iter();
    let status = fds.next_back().map(UnixStream::from);
    let started = (|| -> anyhow::Result<_> {
        for (i, file) in &stdio {
            let Some(fd) = fds.next() else {
                bail!("stdio {i} missing");
            };
            sentry::vfs::donated::rebind_donated(file, fd)
                .map_err(|e| anyhow::anyhow!("attaching stdio {i}: {e}"))?;
        }
        let take = sentry::state::Take {
            id: id.clone(),
            env,
            signal: args.take_signal,
        };
        let task = held.resume_taken(&take).map_err(anyhow::Error::new)?;
        let listener = crate::control::bind(&crate::container::control_socket(&g.root, &id))?;
        // Taken, it is confined as any other sandbox (see crate::confine):
        // its record goes through descriptors opened at the claim.
        crate::confine::lock_down()?;
        let queue = crate::control::serve(listener, task.interrupt().clone())?;
        Ok((task, queue))
    })();
    drop(stdio);
    let (mut task, queue) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = reply(&sock, &MemberReply::Broken(crate::one_line(&e)));
            claimed.finish(false);
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
    // Other commands lock a container's record to act on it.
    if let Claimed::Container { locked, .. } = &mut claimed {
        drop(locked.take());
    }
    let code = crate::supervisor::run_started(&mut task, &id, &queue);
    drop(task);
    drop(queue);
    claimed.finish(detach);
    // The gofers serve until their sockets close, which the kernel's did.
    for mut c in gofers {
        let _ = c.wait();
    }
    let code = code?;
    if let Some(mut s) = status {
        let mut line = serde_json::to_string(&super::Status::Exited { code })?;
        line.push('\n');
        // The taker may be gone (detached): the status is then nobody's.
        let _ = s.write_all(line.as_bytes());
    }
    Ok(code)
}

fn end_gofers(gofers: Vec<std::process::Child>) {
    for mut c in gofers {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Restores the statefile held: over the host's root as `cryo do`, or as
/// the container of `plan` (its image checked against the bundle).
fn restore(
    args: &MemberArgs,
    plan: Option<&crate::oci::bundle::Plan>,
    stdio: Vec<(u32, Arc<sentry::vfs::OpenFile>)>,
    memory: Option<OwnedFd>,
    g: &Globals,
    gofers: &mut Vec<std::process::Child>,
) -> anyhow::Result<sentry::state::HeldRestore> {
    let (gofer_sock, container) = match plan {
        None => {
            let (sock, child) = crate::do_cmd::start_gofer()?;
            gofers.push(child);
            let container = sentry::state::ContainerRestore {
                stdio: Some(stdio),
                memory,
                ..Default::default()
            };
            (sock, container)
        }
        Some(plan) => {
            if plan.terminal {
                bail!(
                    "pools of containers with a terminal (process.terminal) are not supported yet"
                );
            }
            crate::oci::restore::check_image(&args.image_path, plan)?;
            let (sock, child) = crate::oci::sandbox::start_gofer(&plan.rootfs, true)?;
            gofers.push(child);
            let container = sentry::state::ContainerRestore {
                namespace: crate::oci::sandbox::namespace_of(plan, gofers)?,
                max_tasks: plan.max_tasks,
                memory_limit: plan.memory_limit,
                stdio: Some(stdio),
                memory,
                lazy: false,
            };
            (sock, container)
        }
    };
    sentry::state::restore_container_held(
        &args.image_path,
        gofer_sock,
        container,
        false,
        g.platform.as_deref(),
    )
    .map_err(anyhow::Error::new)
}

/// The taken sandbox's record under --root.
enum Claimed {
    /// A `cryo do` sandbox's, removed when it ends.
    Sandbox(crate::container::ContainerDir),
    /// An OCI container's (`state.json` a container record, its identity
    /// beside it), locked until the sandbox runs; once it has ended it is
    /// removed if the taker waited for it, or left for `delete`.
    Container {
        locked: Option<crate::oci::state::Locked>,
        held: crate::oci::state::HeldRecord,
    },
}

impl Claimed {
    /// Called confined: removes the record through what the claim opened.
    fn finish(self, detach: bool) {
        match self {
            Claimed::Sandbox(dir) => drop(dir),
            Claimed::Container { held, locked } if !detach => {
                // Its own lock first (a take broken before it ran).
                drop(locked);
                if let Err(e) = held.remove() {
                    tracing::warn!(error = %e, "cannot remove the taken container's record");
                }
            }
            Claimed::Container { .. } => {}
        }
    }
}

/// Claims `id` under `root` for the taken sandbox (refused, changing
/// nothing, if it is in use).
fn claim(
    root: &std::path::Path,
    id: &str,
    argv: &[String],
    plan: Option<&crate::oci::bundle::Plan>,
    bundle: Option<&std::path::Path>,
) -> anyhow::Result<Claimed> {
    let (Some(plan), Some(bundle)) = (plan, bundle) else {
        return Ok(Claimed::Sandbox(crate::container::ContainerDir::create(
            root, id, argv,
        )?));
    };
    use crate::oci::state::{proc_stat, rfc3339_now, Locked, Record, Status};
    let locked = Locked::create(root, id)?;
    let pid = std::process::id() as i32;
    let record = Record {
        id: id.to_string(),
        status: Status::Running,
        pid,
        start_time: proc_stat(pid).map_or(0, |(_, t)| t),
        bundle: bundle.to_path_buf(),
        rootfs: plan.rootfs.clone(),
        created: rfc3339_now(),
        annotations: plan.annotations.clone(),
        do_sandbox: false,
    };
    let saved = locked
        .save(&record)
        .map_err(anyhow::Error::new)
        .and_then(|()| {
            crate::oci::identity::save_in(
                &locked.dir,
                &crate::oci::identity::Identity::of_plan(plan),
            )
        });
    let held = saved.and_then(|()| locked.hold().map_err(anyhow::Error::new));
    let held = match held {
        Ok(h) => h,
        Err(e) => {
            let _ = locked.remove();
            return Err(e);
        }
    };
    Ok(Claimed::Container {
        locked: Some(locked),
        held,
    })
}
