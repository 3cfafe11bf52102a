//! Restore: validate the whole statefile first, then re-create every host
//! resource (memory file, stub, gofer connection, files re-opened by path and
//! checked against their fingerprints) and rebuild the task where it stopped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use platform::CpuState;
use statefile::{Decoder, Reader, SectionKind};

use super::records::*;
use super::save::statefile_path;
use super::MEMORY_SECTION;
use crate::errno::Errno;
use crate::kernel::clone::spawn_thread;
use crate::kernel::fd_table::FdTable;
use crate::kernel::time::Clocks;
use crate::kernel::{KernelConfig, Task};
use crate::mm::{MappableFile, MemoryManager};
use crate::sandbox::{host_memory, host_stdio, new_kernel, SandboxError};
use crate::vfs::state::{FileStateKind, OpenFileState, RestoreCtx};
use crate::vfs::{Clock, HostClock};

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
    #[error("the application's address space ends at {highest:#x}, beyond this host's {va_bits}-bit user address space")]
    AddressSpace { highest: u64, va_bits: u32 },
    #[error("the statefile holds {0} tasks; this cryo restores single-task sandboxes")]
    Tasks(u32),
    #[error("{0}")]
    Boot(#[from] SandboxError),
    #[error("restoring memory: {0}")]
    Memory(String),
    #[error("{0}")]
    File(#[from] crate::vfs::state::RestoreError),
    #[error("restoring the address space: {0}")]
    Mm(#[from] crate::mm::RestoreError),
    #[error("restoring registers: {0}")]
    Platform(#[from] platform::PlatformError),
    #[error("invalid task state: {0}")]
    Invalid(String),
    #[error("working directory {path}: {errno}")]
    Cwd { path: String, errno: Errno },
}

/// The records of a statefile, in the order `save` wrote them.
struct Records {
    kernel: KernelRecord,
    vfs: VfsRecord,
    memory: MemoryFileRecord,
    fds: FdTableRecord,
    mm: MmRecord,
    /// The leader first, then its other threads.
    tasks: Vec<TaskRecord>,
}

/// More threads than this in a statefile is taken as damage.
const MAX_TASKS: u32 = 4096;

fn read_records(reader: &Reader) -> Result<Records, RestoreError> {
    let sf = |source| RestoreError::Statefile {
        path: String::new(),
        source,
    };
    let bytes = reader.section_bytes(SectionKind::Kernel, "").map_err(sf)?;
    let mut dec = Decoder::new(&bytes, reader.types());
    let kernel: KernelRecord = dec.get().map_err(sf)?;
    if kernel.tasks == 0 || kernel.tasks > MAX_TASKS {
        return Err(RestoreError::Tasks(kernel.tasks));
    }
    let vfs = dec.get().map_err(sf)?;
    let memory = dec.get().map_err(sf)?;
    let fds = dec.get().map_err(sf)?;
    let mm = dec.get().map_err(sf)?;
    let tasks = (0..kernel.tasks)
        .map(|_| dec.get())
        .collect::<Result<Vec<TaskRecord>, _>>()
        .map_err(sf)?;
    dec.finish().map_err(sf)?;
    Ok(Records {
        kernel,
        vfs,
        memory,
        fds,
        mm,
        tasks,
    })
}

/// Checks a task record's values before any is used.
fn validate_task(t: &TaskRecord) -> Result<(), RestoreError> {
    if !t.limits.validate() || !t.signal_handlers.validate() {
        return Err(RestoreError::Invalid(
            "limits or signal handlers out of range".into(),
        ));
    }
    if t.pending.iter().any(|p| !(1..=64).contains(&p.signo)) || t.pending.len() > 64 * 1024 {
        return Err(RestoreError::Invalid("pending signals out of range".into()));
    }
    if t.tid <= 0 {
        return Err(RestoreError::Invalid(format!("thread id {}", t.tid)));
    }
    Ok(())
}

/// Restores the per-thread state of a record into a task.
fn apply_task(task: &mut Task, t: &TaskRecord) {
    task.set_umask(t.umask);
    task.signal_mask = t.signal_mask.without_unblockable();
    *task.pending() = t.pending.clone();
    task.alt_stack = t.alt_stack;
    task.clear_child_tid = t.clear_child_tid;
    task.robust_list = t.robust_list;
    task.exe = t.exe.clone();
    task.argv = t.argv.clone();
    task.cpu_time = Duration::from_nanos(t.cpu_time_ns);
    task.restart_deadline = t.restart.map(|(d, _)| d);
    task.restart_clock = t.restart.map(|(_, c)| c);
}

/// Restores the sandbox saved in `image_dir`. `hostname` is unused: the
/// saved UTS namespace wins, as the application already saw it.
pub fn restore(image_dir: &Path, gofer_sock: OwnedFd, strace: bool) -> Result<Task, RestoreError> {
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
    // every non-memory section here; each memory chunk's checksum as it is
    // loaded below, before any stub exists (so memory is read only once).
    let reader = Reader::open(&path).map_err(sf_err)?;
    for section in reader
        .sections()
        .iter()
        .filter(|s| s.id.kind != SectionKind::Memory)
    {
        reader.verify_section(section).map_err(sf_err)?;
    }
    let rec = read_records(&reader).map_err(|e| match e {
        RestoreError::Statefile { source, .. } => sf_err(source),
        e => e,
    })?;
    for t in &rec.tasks {
        validate_task(t)?;
    }
    let leader = &rec.tasks[0];
    let used = rec.tasks.iter().fold(0, |acc, t| acc | t.fp.xstate_bv());
    let missing = used & !platform::host_xfeatures();
    if missing != 0 {
        return Err(RestoreError::CpuFeatures { missing });
    }
    if !rec.kernel.uts.hostname.is_empty() && rec.kernel.uts.hostname.len() > 64 {
        return Err(RestoreError::Invalid(
            "hostname longer than 64 bytes".into(),
        ));
    }

    tracing::debug!("restore: statefile validated, records read");
    let host = host_memory()?;
    if rec.mm.mm.highest_address > host.layout.max_user_addr {
        return Err(RestoreError::AddressSpace {
            highest: rec.mm.mm.highest_address,
            va_bits: host.layout.va_bits,
        });
    }
    let mf = host.memory_file.clone();
    mf.restore_allocations(&rec.memory.ranges)
        .map_err(|e| RestoreError::Memory(e.to_string()))?;
    let memory = reader.memory(MEMORY_SECTION).map_err(sf_err)?;
    memory
        .restore_runs_mapped_with(|offset, page| {
            let end = offset.checked_add(page.len() as u64);
            let inside = rec
                .memory
                .ranges
                .iter()
                .any(|r| offset >= r.start && end.is_some_and(|e| e <= r.end));
            if !inside {
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
    };
    let kernel = new_kernel(
        &host,
        gofer_sock,
        Some(&rec.vfs.state),
        Clocks::restore(&rec.kernel.clocks),
        &config,
    )?;
    if let Ok(mut uts) = kernel.uts.lock() {
        *uts = rec.kernel.uts.clone();
    }
    let highest_tid = rec.tasks.iter().map(|t| t.tid).max().unwrap_or(1);
    kernel.set_next_tid(rec.kernel.next_tid.max(highest_tid + 1));

    // Descriptors: host stdio from this restore's caller, the rest re-opened
    // by path and fingerprint.
    let stdio: HashMap<u32, Arc<crate::vfs::OpenFile>> = host_stdio()?.into_iter().collect();
    let mut ctx = RestoreCtx::new(&rec.fds.pipes, stdio, HostClock.now());
    let mut fds = FdTable::new();
    for fd in &rec.fds.fds {
        let file = kernel.vfs.reopen(&fd.file, &mut ctx)?;
        fds.insert_at(fd.fd, file, fd.cloexec, u64::MAX)
            .map_err(|e| RestoreError::Invalid(format!("descriptor {}: {e}", fd.fd)))?;
    }

    // The address space: the files it maps are re-opened first (a missing
    // or changed one refuses the restore, named), then every mapping is
    // re-created in a fresh stub.
    let mut mapped: HashMap<&str, Arc<dyn MappableFile>> = HashMap::new();
    for f in &rec.mm.files {
        let state = OpenFileState {
            path: f.path.as_bytes().to_vec(),
            flags: if f.writable {
                libc::O_RDWR
            } else {
                libc::O_RDONLY
            },
            offset: 0,
            kind: FileStateKind::Regular,
            fingerprint: f.fingerprint,
        };
        let mut none = RestoreCtx::new(&[], HashMap::new(), HostClock.now());
        let file = kernel.vfs.reopen(&state, &mut none)?;
        let mappable = file.as_mappable().ok_or_else(|| {
            RestoreError::File(crate::vfs::state::RestoreError::Invalid(format!(
                "{} cannot be mapped",
                f.path
            )))
        })?;
        mapped.insert(f.path.as_str(), mappable);
    }
    let reopen = |name: &str| mapped.get(name).cloned().ok_or(Errno::ENOENT);
    let aspace = kernel.platform.new_address_space()?;
    let mm = MemoryManager::from_snapshot(&rec.mm.mm, host.layout, mf.clone(), aspace, &reopen)?;
    // Every owner of restored memory (tmpfs files, mappings) has claimed it.
    mf.finish_restore();

    tracing::debug!("restore: address space mapped");
    let mut context = kernel.platform.new_context()?;
    context.set_fp_state(mm.address_space(), &leader.fp)?;
    let root = kernel.vfs.root().clone();
    let cwd = kernel
        .vfs
        .lookup_dir(&root, &leader.cwd)
        .map_err(|errno| RestoreError::Cwd {
            path: String::from_utf8_lossy(&leader.cwd).into_owned(),
            errno,
        })?;
    let mut task = Task::new(
        kernel.clone(),
        leader.tid,
        leader.creds.clone(),
        CpuState { regs: leader.regs },
        context,
        mm,
        fds,
        root,
        cwd,
    );
    *task.handlers() = leader.signal_handlers.clone();
    *task.limits() = leader.limits.clone();
    apply_task(&mut task, leader);
    // The other threads: each gets a stub thread of the leader's address
    // space and a host thread of its own.
    for t in &rec.tasks[1..] {
        let token = task.aspace.new_thread()?;
        let mut sibling = task.sibling(t.tid, CpuState { regs: t.regs })?;
        apply_task(&mut sibling, t);
        spawn_thread(sibling, token, t.fp.clone())
            .map_err(|e| RestoreError::Invalid(format!("cannot start thread {}: {e}", t.tid)))?;
    }
    Ok(task)
}
