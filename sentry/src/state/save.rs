//! Checkpoint: walk the kernel from its root, write the kernel section, then
//! the memory section into one statefile.
//!
//! The Sentry opens no host file after boot: the statefile is written into a
//! file the `cryo checkpoint` command created (a temporary file beside the
//! target) and passed over the control socket; the command makes it durable
//! and renames it into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use statefile::{Compression, Encoder, Header, MemoryOptions, MemorySource, SectionKind, Writer};

use super::records::*;
use super::{MEMORY_SECTION, STATEFILE_NAME};
use crate::kernel::Task;
use crate::mm::MemoryFile;
use crate::vfs::state::SaveCtx;

/// What `cryo checkpoint` asks for.
#[derive(Clone, Debug)]
pub struct CheckpointOptions {
    pub compression: Compression,
    /// Recorded in the header for `cryo inspect`.
    pub container_id: String,
}

/// Why a checkpoint failed. The sandbox keeps running; the command removes
/// its temporary file, so no statefile appears.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot stop the sandbox's threads: {0}")]
    Threads(String),
    #[error("the sandbox's program has exited")]
    Exited,
    #[error("cannot save the file system: {0}")]
    Vfs(#[from] crate::vfs::state::SaveError),
    #[error("cannot read the task's registers: {0}")]
    Platform(#[from] platform::PlatformError),
    #[error("cannot read the memory file: {0}")]
    Memory(crate::errno::Errno),
    #[error("writing the statefile: {0}")]
    Statefile(#[from] statefile::StatefileError),
}

/// What a checkpoint wrote.
#[derive(Clone, Debug)]
pub struct CheckpointStats {
    pub memory_bytes: u64,
    pub file_bytes: u64,
}

/// The memory file as the statefile's memory section reads it.
struct MemoryFileSource<'a> {
    mf: &'a MemoryFile,
    len: u64,
}

impl MemorySource for MemoryFileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.mf
            .read_at(offset, buf)
            .map_err(|e| io::Error::from_raw_os_error(e.0))
    }
}

/// The record of a task's address space, with the files it maps.
fn mm_record(task: &Task) -> MmRecord {
    let mm = task.mm().snapshot();
    let mut files: BTreeMap<String, MappedFileRecord> = BTreeMap::new();
    for vma in &mm.vmas {
        let Some(f) = &vma.file else { continue };
        let writable = vma.shared && vma.ever_writable;
        let root = task.kernel.vfs.root().clone();
        let fingerprint = task
            .kernel
            .vfs
            .resolve(&root, f.name.as_bytes(), false)
            .ok()
            .and_then(|d| d.inode().fingerprint());
        let e = files.entry(f.name.clone()).or_insert(MappedFileRecord {
            path: f.name.clone(),
            writable: false,
            fingerprint,
        });
        e.writable |= writable;
    }
    MmRecord {
        mm,
        files: files.into_values().collect(),
    }
}

/// One task's record. Runs on the task's own host thread.
pub fn task_record(task: &mut Task) -> Result<TaskRecord, CheckpointError> {
    let fp = task.context.fp_state(&*task.aspace)?;
    Ok(TaskRecord {
        tid: task.tid,
        creds: task.creds.clone(),
        regs: task.cpu.regs,
        fp,
        umask: task.umask(),
        cwd: task.kernel.vfs.dentry_path_bytes(&task.cwd()),
        signal_handlers: task.handlers().clone(),
        signal_mask: task.signal_mask,
        pending: task.pending().clone(),
        alt_stack: task.alt_stack,
        clear_child_tid: task.clear_child_tid,
        robust_list: task.robust_list,
        limits: task.limits().clone(),
        exe: task.exe.clone(),
        argv: task.argv.clone(),
        cpu_time_ns: task.cpu_time.as_nanos() as u64,
        restart: task.restart_deadline.zip(task.restart_clock),
    })
}

fn fd_table_record(task: &Task) -> Result<FdTableRecord, CheckpointError> {
    let mut ctx = SaveCtx::default();
    let mut fds = Vec::new();
    for (fd, entry) in task.fds().iter() {
        fds.push(FdRecord {
            fd,
            cloexec: entry.cloexec,
            file: entry.file.save(&mut ctx)?,
        });
    }
    Ok(FdTableRecord {
        fds,
        pipes: ctx.pipes.into_values().collect(),
    })
}

/// The header: what `cryo inspect` shows and what a restore checks before
/// reading anything else.
fn header(
    task: &Task,
    record: &TaskRecord,
    others: &[TaskRecord],
    opts: &CheckpointOptions,
) -> Header {
    let xfeatures = others
        .iter()
        .fold(record.fp.xstate_bv(), |acc, r| acc | r.fp.xstate_bv());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let argv: Vec<String> = task
        .argv
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Header::new(format!("cryo {}", env!("CARGO_PKG_VERSION")))
        .with("container-id", opts.container_id.clone())
        .with("created", created.to_string())
        .with("argv", format!("{argv:?}"))
        .with("platform", task.kernel.platform.name())
        .with("threads", (1 + others.len()).to_string())
        .with(
            "va.highest-address",
            format!("{:#x}", task.mm().highest_address()),
        )
        .with("cpu.xfeatures-used", format!("{xfeatures:#x}"))
}

/// Saves `task` (with its kernel) into `file`, an empty file opened for
/// writing. Runs on the task's own thread while the task is stopped at a
/// clean boundary. The file is complete but not yet durable on return.
pub fn checkpoint(
    task: &mut Task,
    file: File,
    opts: &CheckpointOptions,
) -> Result<CheckpointStats, CheckpointError> {
    if task.exit.is_some() {
        return Err(CheckpointError::Exited);
    }
    let task_rec = task_record(task)?;
    // Every other thread parks at a clean boundary and saves itself; they
    // stay parked until the caller releases them (after the commit).
    let others = if task.tg.live() > 1 {
        task.tg
            .stop_others(task.tid, STOP_TIMEOUT)
            .map_err(CheckpointError::Threads)?
    } else {
        Vec::new()
    };
    let result = write_statefile(task, file, opts, &task_rec, &others);
    if result.is_err() && !others.is_empty() {
        task.tg
            .release(crate::kernel::thread_group::Release::Continue);
    }
    result
}

/// How long the other threads get to reach a clean boundary.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn write_statefile(
    task: &mut Task,
    file: File,
    opts: &CheckpointOptions,
    task_rec: &TaskRecord,
    others: &[TaskRecord],
) -> Result<CheckpointStats, CheckpointError> {
    let kernel = &task.kernel;
    let uts = kernel
        .uts
        .lock()
        .map(|u| u.clone())
        .unwrap_or_else(|_| crate::kernel::uts::UtsNamespace::new("cryo"));
    let mut enc = Encoder::new();
    enc.put(&KernelRecord {
        uts,
        clocks: kernel.clocks.save(),
        next_tid: kernel.next_tid(),
        tasks: 1 + others.len() as u32,
    })?;
    enc.put(&VfsRecord {
        state: kernel.vfs.save_state()?,
    })?;
    let ranges = kernel.memory_file.allocated_ranges();
    enc.put(&MemoryFileRecord {
        ranges: ranges.clone(),
    })?;
    enc.put(&fd_table_record(task)?)?;
    enc.put(&mm_record(task))?;
    // The thread group's leader first, then its other threads.
    enc.put(task_rec)?;
    for r in others {
        enc.put(r)?;
    }

    let mut w = Writer::new(
        io::BufWriter::with_capacity(1 << 20, file),
        header(task, task_rec, others, opts),
    )?;
    w.write_state(SectionKind::Kernel, "", opts.compression, &enc)?;
    let len = ranges.iter().map(|r| r.end).max().unwrap_or(0);
    let src = MemoryFileSource {
        mf: &kernel.memory_file,
        len,
    };
    let stats = w.write_memory(
        MEMORY_SECTION,
        &src,
        &MemoryOptions {
            compression: opts.compression,
            ..Default::default()
        },
    )?;
    let file_bytes = w.position();
    w.finish()?;
    tracing::info!(?stats, file_bytes, "checkpoint written");
    Ok(CheckpointStats {
        memory_bytes: len,
        file_bytes,
    })
}

/// Where a checkpoint in `image_dir` lives.
pub fn statefile_path(image_dir: &Path) -> PathBuf {
    image_dir.join(STATEFILE_NAME)
}
