//! Restore: validate the whole statefile first, then re-create every host
//! resource (memory file, stub, gofer connection, files re-opened by path and
//! checked against their fingerprints) and rebuild the task where it stopped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use statefile::{Reader, SectionKind};

use super::save::statefile_path;
use super::validate::{holds, load_saved_kernel, LoadError};
use super::MEMORY_SECTION;
use crate::boot::{donated_stdio, host_resources, new_kernel, BootError};
use crate::errno::Errno;
use crate::kernel::pid_namespace::PID_MAX;
use crate::kernel::time::Clocks;
use crate::kernel::{KernelConfig, Task};
use crate::vfs::state::RestoreCtx;
use crate::vfs::{Clock, HostClock};
use std::sync::Arc;

/// Why a restore was refused. Nothing has started running when it is.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no statefile in {0}")]
    NoStatefile(String),
    #[error("statefile {path}: {source}")]
    Statefile {
        path: String,
        source: statefile::StatefileError,
    },
    #[error("the application used CPU features this host lacks (XSAVE components {missing:#x})")]
    CpuFeatures { missing: u64 },
    #[error("{0}")]
    Records(LoadError),
    #[error("{0}")]
    Boot(#[from] BootError),
    #[error("restoring memory: {0}")]
    Memory(String),
    #[error("{0}")]
    File(#[from] crate::vfs::state::VfsRestoreError),
    #[error("restoring the address space: {0}")]
    Mm(#[from] crate::mm::MmRestoreError),
    #[error("restoring registers: {0}")]
    Platform(#[from] platform::PlatformError),
    #[error("invalid task state: {0}")]
    Invalid(String),
    #[error("working directory {path}: {errno}")]
    Cwd { path: String, errno: Errno },
}

/// The platform a restore runs on: the one asked for, else the one the
/// statefile was saved from (its header's `platform`), else the default.
fn chosen_platform(header: &statefile::Header, asked: Option<&str>) -> String {
    asked
        .or(header.metadata.get("platform").map(String::as_str))
        .map_or_else(|| platform::default_platform().to_string(), str::to_string)
}

/// Restores the sandbox saved in `image_dir`. `hostname` is unused: the
/// saved UTS namespace wins, as the application already saw it. The sandbox
/// runs on `platform`, or else on the platform the statefile was saved from.
pub fn restore(
    image_dir: &Path,
    gofer_sock: OwnedFd,
    strace: bool,
    platform: Option<&str>,
) -> Result<Task, RestoreError> {
    let path = statefile_path(image_dir);
    if !path.is_file() {
        return Err(RestoreError::NoStatefile(image_dir.display().to_string()));
    }
    let shown = path.display().to_string();
    let sf_err = |source| RestoreError::Statefile {
        path: shown.clone(),
        source,
    };
    // Validate everything before the sandbox runs: the header, index and
    // every non-memory section, then every record; each memory chunk's
    // checksum as it is loaded below, before any stub exists (so memory is
    // read only once).
    let reader = Reader::open(&path).map_err(sf_err)?;
    // A platform this cryo lacks is refused before anything is loaded.
    let platform_name = chosen_platform(reader.header(), platform);
    platform::lookup(&platform_name).map_err(BootError::Platform)?;
    for section in reader
        .sections()
        .iter()
        .filter(|s| s.id.kind != SectionKind::Memory)
    {
        reader.verify_section(section).map_err(sf_err)?;
    }
    let host = host_resources()?;
    let rec = match load_saved_kernel(&reader, &host.layout) {
        Ok(rec) => rec,
        Err(LoadError::Statefile(source)) => return Err(sf_err(source)),
        Err(e) => return Err(RestoreError::Records(e)),
    };
    let used = rec.tasks().fold(0, |acc, t| acc | t.fp.xstate_bv());
    let missing = used & !platform::host_xfeatures();
    if missing != 0 {
        return Err(RestoreError::CpuFeatures { missing });
    }
    tracing::debug!("restore: statefile and records validated");

    let mf = host.memory_file.clone();
    mf.restore_allocations(&rec.memory.ranges)
        .map_err(|e| RestoreError::Memory(e.to_string()))?;
    let memory = reader.memory(MEMORY_SECTION).map_err(sf_err)?;
    memory
        .restore_runs_mapped_with(|offset, page| {
            if !holds(&rec.memory.ranges, offset, page.len() as u64) {
                return Err(statefile::StatefileError::PageOutOfRange {
                    offset,
                    len: page.len() as u64,
                });
            }
            mf.pwrite_at(offset, page)
                .map_err(|e| statefile::StatefileError::Io(std::io::Error::from_raw_os_error(e.0)))
        })
        .map_err(sf_err)?;

    let config = KernelConfig {
        hostname: rec.kernel.uts.hostname.clone(),
        strace,
        platform: platform_name,
        max_tasks: crate::kernel::DEFAULT_MAX_TASKS,
    };
    let kernel = new_kernel(
        &host,
        gofer_sock,
        Some(&rec.vfs),
        Clocks::restore(&rec.kernel.clocks),
        &config,
    )?;
    if let Ok(mut uts) = kernel.uts.lock() {
        *uts = rec.kernel.uts.clone();
    }
    // Every tid is below PID_MAX (validated), so the successor fits.
    let highest_tid = rec.tasks().map(|t| t.tid).max().unwrap_or(1);
    let next = rec.kernel.next_tid.max(i64::from(highest_tid) + 1);
    let next = if next > i64::from(PID_MAX) { 1 } else { next };
    kernel
        .pids
        .set_next_tid(next)
        .map_err(|e| RestoreError::Invalid(e.to_string()))?;

    // Open file descriptions, each once however many descriptors share it:
    // host stdio from this restore's caller, the rest re-opened by path and
    // fingerprint.
    let stdio: HashMap<u32, Arc<crate::vfs::OpenFile>> = donated_stdio()?.into_iter().collect();
    let ptys = restore_ptys(&kernel, &rec.ptys)?;
    let sockets = crate::net::state::create(&rec.sockets, &kernel.unix);
    let inet = crate::net::inet::state::restore(&rec.inet_sockets, &kernel.inet);
    let netlink = rec
        .netlink_sockets
        .iter()
        .map(|r| (r.id, crate::net::netlink::NetlinkSocket::restore(r)))
        .collect();
    let mut ctx = RestoreCtx::new(&rec.pipes, stdio, HostClock.now())
        .with_clocks(kernel.clocks)
        .with_sockets(sockets.clone())
        .with_inet_sockets(inet)
        .with_netlink(netlink)
        .with_ptys(ptys);
    let mut files: HashMap<u64, Arc<crate::vfs::OpenFile>> = HashMap::new();
    for (&id, f) in &rec.files {
        files.insert(id, kernel.vfs.reopen(f, &mut ctx)?);
    }
    // An inet socket no saved file claimed (none is, unless the record
    // set is odd) is released, as its last file's close would have.
    ctx.release_unclaimed_inet();
    // Epoll sets get their items once every file they name is open again.
    // Sockets once every open file is back: their messages carry files.
    crate::net::state::link(
        &rec.sockets,
        &sockets,
        &|id| files.get(&id).cloned(),
        &kernel.vfs,
    )
    .map_err(|e| RestoreError::Invalid(e.to_string()))?;
    for r in &rec.epolls {
        let ep = ctx
            .epolls()
            .get(&r.id)
            .ok_or_else(|| RestoreError::Invalid(format!("epoll set {} has no open file", r.id)))?;
        ep.restore_items(r, &|id| files.get(&id).cloned())
            .map_err(|e| RestoreError::Invalid(format!("epoll set {}: {e}", r.id)))?;
    }
    // The file locks, on the re-opened files.
    for l in &rec.file_locks {
        let file = files
            .get(&l.file)
            .ok_or_else(|| RestoreError::Invalid(format!("locks of unknown file #{}", l.file)))?;
        let key = file
            .lock_key()
            .map_err(|e| RestoreError::Invalid(format!("locked file #{}: {e}", l.file)))?;
        let locks = l
            .locks
            .rename_descriptions(&|d| files.get(&d).map(|f| f.description_id()));
        for d in l.locks.descriptions() {
            if let Some(f) = files.get(&d) {
                f.note_locked(&kernel.file_locks, key);
            }
        }
        kernel.file_locks.install(key, &locks);
    }
    super::restore_tree::restore_processes(&kernel, &rec, &files, host.layout)
}

/// The saved pseudo-terminals, back in the new kernel's devpts at their
/// indices, sending their signals to it.
fn restore_ptys(
    kernel: &Arc<crate::kernel::Kernel>,
    saved: &[crate::vfs::pty::PtySnapshot],
) -> Result<Vec<Arc<crate::vfs::pty::Terminal>>, RestoreError> {
    if saved.is_empty() {
        return Ok(Vec::new());
    }
    let devpts = kernel
        .devpts()
        .ok_or_else(|| RestoreError::Invalid("ptys saved but no devpts at /dev/pts".into()))?;
    let signals: Arc<dyn crate::vfs::pty::JobSignals> = kernel.clone();
    let mut out = Vec::with_capacity(saved.len());
    for p in saved {
        let tty = devpts
            .add(Some(p.index), p.state.clone(), HostClock.now())
            .map_err(|e| RestoreError::Invalid(format!("pty {}: {e}", p.index)))?;
        tty.set_signals(Arc::downgrade(&signals));
        out.push(tty);
    }
    Ok(out)
}

#[cfg(test)]
mod platform_choice_tests {
    use super::chosen_platform;

    #[test]
    fn asked_platform_wins_then_the_saved_one_then_the_default() {
        let saved = statefile::Header::new("test").with("platform", "saved");
        let bare = statefile::Header::new("test");
        assert_eq!(chosen_platform(&saved, Some("asked")), "asked");
        assert_eq!(chosen_platform(&saved, None), "saved");
        assert_eq!(chosen_platform(&bare, None), platform::default_platform());
    }
}
