//! `cryo restore --bundle B ID`: a checkpointed container restored as
//! container ID from bundle B, as runc's restore (which conmon calls for
//! `podman container restore`). The new container is running at once; its
//! sandbox process, a child of this command, restores the statefile and
//! runs the saved processes once the bundle's prestart and createRuntime
//! hooks have run (as runc's restore runs them); conmon (or any caller
//! that is a subreaper) reaps it and takes its exit status for the
//! container's. Its stdio is this command's.
//!
//! Everything that can be refused is refused before the id is claimed: an
//! image directory another tool wrote (its inventory.img), a statefile that
//! is not an OCI container's, a bundle whose root or mounts differ from the
//! checkpointed container's (the identity in the statefile's header). A
//! failure after that removes the container again; nothing else is touched.
//! The statefile is read whole before the container runs, or with --lazy
//! held open by the sandbox (its fd, never its path again) while the rest
//! of the memory loads in the background: either way the caller may
//! delete the image directory once this command returns (a lazy restore
//! then records no working set there).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use super::bundle;
use super::commands::{self, Globals};
use super::criu_stats::{self, RestoreStats};
use super::hooks::{self, Stage};
use super::identity::Identity;
use super::inventory::Inventory;
use super::state::{self, Locked, Record, Status};
use crate::control::{Connection, Reply, Request};

/// What an OCI restore is given.
pub struct OciRestore {
    pub image: PathBuf,
    pub bundle: PathBuf,
    pub id: String,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Where CRIU would put its `stats-restore` (and the engine reads it).
    pub work_path: Option<PathBuf>,
    /// Resume before the memory is loaded (`sentry::mm::lazy`).
    pub lazy: bool,
}

/// Reads the statefile's header and checks the checkpointed container is
/// the bundle's: the identity the application saw is the bundle's.
pub(crate) fn check_image(image: &Path, plan: &bundle::Plan) -> anyhow::Result<()> {
    Inventory::read(image)?;
    let path = sentry::state::statefile_path(image);
    let reader = statefile::Reader::open(&path)
        .map_err(|e| anyhow::anyhow!("statefile {}: {e}", path.display()))?;
    let saved = Identity::of_header(reader.header())?;
    saved.check(&Identity::of_plan(plan))?;
    Ok(())
}

pub fn restore(g: &Globals, r: OciRestore) -> anyhow::Result<i32> {
    let began = Instant::now();
    state::check_id(&r.id)?;
    let image = std::path::absolute(&r.image)
        .with_context(|| format!("--image-path {}", r.image.display()))?;
    let bundle = std::fs::canonicalize(&r.bundle)
        .with_context(|| format!("bundle {}", r.bundle.display()))?;
    let plan = bundle::plan(&bundle)?;
    // A restored terminal's host side is a new host pty whose master goes
    // to the console socket, as runc's restore does; runc refuses a
    // terminal without one, and a socket without a terminal.
    match (plan.terminal, &r.console_socket) {
        (true, None) => bail!(
            "the container has a terminal (process.terminal) and restore needs a \
             --console-socket to send its new host side to"
        ),
        (false, Some(p)) => bail!(
            "--console-socket {}: the container has no terminal, so there is none to send",
            p.display()
        ),
        (true, Some(p)) => commands::check_console_socket(p)?,
        (false, None) => {}
    }
    check_image(&image, &plan)?;
    let mut console_socket = match &r.console_socket {
        Some(p) => Some(super::console::ConsoleSocket::connect(p)?),
        None => None,
    };
    let locked = Locked::create(&g.root, &r.id)?;
    let mut record = Record {
        id: r.id.clone(),
        status: Status::Creating,
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: plan.rootfs.clone(),
        created: state::rfc3339_now(),
        annotations: plan.annotations.clone(),
        do_sandbox: false,
    };
    let mut child = None;
    let mut stats = RestoreStats::default();
    let started = (|| -> anyhow::Result<()> {
        locked.save(&record)?;
        super::identity::save_in(&locked.dir, &Identity::of_plan(&plan))?;
        for w in &plan.warnings {
            match &g.log {
                Some(log) => crate::logging::log_line(log, g.log_format.as_deref(), "warning", w),
                None => eprintln!("cryo: warning: {w}"),
            }
        }
        let replica = match console_socket.take() {
            Some(sock) => Some(commands::console_replica(sock, plan.console_size)?),
            None => None,
        };
        let (rd, wr) = commands::ready_pipe()?;
        let mut cmd = Command::new(std::env::current_exe().context("finding the cryo binary")?);
        g.apply(&mut cmd);
        cmd.arg("sandbox")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--id")
            .arg(&r.id)
            .arg("--ready-fd")
            .arg(wr.as_raw_fd().to_string())
            .arg("--restore")
            .arg(&image);
        if r.lazy {
            cmd.arg("--lazy");
        }
        if let Some(r) = &replica {
            cmd.arg("--console-fd").arg(r.as_raw_fd().to_string());
        }
        let c = child.insert(cmd.spawn().context("starting the sandbox process")?);
        drop(wr);
        drop(replica);
        let answer = commands::read_all(rd);
        if answer.trim_end() != "ok" {
            if answer.is_empty() {
                bail!("the sandbox process ended before it was restored");
            }
            bail!("{}", answer.trim_end());
        }
        stats.forking_us = micros(began.elapsed());
        record.pid = c.id() as i32;
        record.start_time = state::proc_stat(record.pid).map_or(0, |(_, t)| t);
        // runc runs these while CRIU restores, before the processes go on.
        let spec_hooks = commands::bundle_hooks(&bundle);
        for stage in [Stage::Prestart, Stage::CreateRuntime] {
            hooks::run(spec_hooks.as_ref(), stage, &record.oci_state())?;
        }
        let mut conn = Connection::open(&locked.control_socket())
            .with_context(|| format!("the restored container {:?} does not answer", r.id))?;
        match conn.call(&Request::Start, &[])? {
            Reply::Done => {}
            Reply::Error(e) => bail!("the restored container does not go on: {e}"),
            other => bail!("the restored container: unexpected answer {other:?}"),
        }
        stats.restore_us = micros(began.elapsed());
        record.status = Status::Running;
        locked.save(&record)?;
        if let Some(p) = &r.pid_file {
            commands::write_pid_file(p, record.pid)?;
        }
        Ok(())
    })();
    if let Err(e) = started {
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = locked.remove();
        return Err(e);
    }
    drop(locked);
    if let Some(work) = &r.work_path {
        // The container runs: a statistics file that cannot be written
        // is only reported.
        stats.pages_restored = restored_pages(&image);
        if let Err(e) = criu_stats::write_restore(work, &stats) {
            tracing::warn!("{e:#}");
        }
    }
    let Some(mut child) = child else {
        bail!("the sandbox process was not started");
    };
    if r.detach {
        // The sandbox lives on, reparented to the caller's reaper.
        return Ok(0);
    }
    // In the foreground, as `run`: this command stands for the container
    // until it ends, and removes it then.
    commands::forward_to(child.id() as i32);
    let status = child.wait().context("waiting for the sandbox")?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125);
    if let Ok(l) = Locked::open(&g.root, &r.id) {
        let _ = l.remove();
    }
    Ok(code)
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The memory pages the statefile held (0 if its index cannot be read
/// again: it was read whole a moment ago).
fn restored_pages(image: &Path) -> u64 {
    statefile::Reader::open(sentry::state::statefile_path(image))
        .and_then(|r| {
            r.memory(sentry::state::MEMORY_SECTION)
                .map(|m| m.present_pages())
        })
        .unwrap_or(0)
}
