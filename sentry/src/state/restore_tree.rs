//! Restore of the process tree: every address space (each in a stub of its
//! own, created on the host thread that will run its first task, as the
//! platform requires), every descriptor table, every process (zombies
//! too) and task, with their ids; then they all start at once.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use platform::{Context, CpuState, FpState, Layout};

use super::restore::RestoreError;
use super::validate::{SavedKernel, SavedProcess};
use crate::errno::Errno;
use crate::kernel::fd_table::FdTable;
use crate::kernel::task::{FsContext, TaskRecord};
use crate::kernel::thread_group::{
    lock, ProcessImage, ProcessParts, SharedFdTable, SharedMm, ThreadGroup,
};
use crate::kernel::{ExitStatus, Kernel, Task};
use crate::mm::{MappableFile, MemoryManager, MmRecord};
use crate::vfs::state::{FileStateKind, OpenFileState, RestoreCtx};
use crate::vfs::{Clock, HostClock, OpenFile};

/// A restored address space and the contexts its tasks will run on.
struct RestoredMm {
    mm: SharedMm,
    /// The context of the host thread that created the address space.
    own: Option<Box<dyn Context>>,
    /// Contexts of new platform threads, one for each other task.
    others: Vec<Box<dyn Context>>,
    /// The host thread that created it waits here for the task it runs
    /// (None: the restoring thread itself, for init's address space).
    runner: Option<mpsc::Sender<(Task, FpState)>>,
}

/// The files an address space maps: by path, and the files with no name
/// by the start of the mapping.
#[derive(Default)]
struct MappedFiles {
    by_path: HashMap<String, Arc<dyn MappableFile>>,
    unnamed: HashMap<u64, Arc<dyn MappableFile>>,
}

/// Re-opens the files an address space maps (a missing or changed one
/// refuses the restore, named); the files with no name are restored open
/// files (`files`), shared with the descriptors that hold them.
fn mapped_files(
    kernel: &Kernel,
    (id, rec): (u64, &MmRecord),
    namespaces: &crate::vfs::mount_ns_state::MountNamespacesRecord,
    files: &RestoredFiles,
) -> Result<MappedFiles, RestoreError> {
    let mut unnamed = HashMap::new();
    for u in &rec.unnamed {
        let not_mappable = |why: &str| {
            RestoreError::File(crate::vfs::state::VfsRestoreError::Invalid(format!(
                "the mapping at {:#x}: open file #{} {why}",
                u.start, u.open_file
            )))
        };
        let file = files
            .get(&u.open_file)
            .ok_or_else(|| not_mappable("was not restored"))?;
        let mappable = file
            .as_mappable()
            .ok_or_else(|| not_mappable("cannot be mapped"))?;
        unnamed.insert(u.start, mappable);
    }
    let mut mapped = HashMap::new();
    for f in &rec.files {
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
            fasync: Default::default(),
        };
        let mut none = RestoreCtx::new(&[], HashMap::new(), HostClock.now());
        let ns = namespaces.mapped_ns(id, &f.path);
        let file = kernel
            .vfs
            .in_restored_ns(ns, || kernel.vfs.reopen(&state, &mut none))??;
        let mappable = file.as_mappable().ok_or_else(|| {
            RestoreError::File(crate::vfs::state::VfsRestoreError::Invalid(format!(
                "{} cannot be mapped",
                f.path
            )))
        })?;
        mapped.insert(f.path.clone(), mappable);
    }
    Ok(MappedFiles {
        by_path: mapped,
        unnamed,
    })
}

/// An address space, the context of the thread that made it, and contexts
/// for its other tasks.
type BuiltMm = (SharedMm, Box<dyn Context>, Vec<Box<dyn Context>>);

/// Creates an address space on the calling host thread: a fresh stub with
/// every saved mapping, and `others` contexts for other tasks.
fn build_mm(
    kernel: &Kernel,
    rec: &MmRecord,
    layout: Layout,
    mapped: &MappedFiles,
    others: usize,
) -> Result<BuiltMm, RestoreError> {
    let open = |v: &crate::mm::VmaState| {
        let by_path = || mapped.by_path.get(&v.file.as_ref()?.name);
        mapped
            .unnamed
            .get(&v.start)
            .or_else(by_path)
            .cloned()
            .ok_or(Errno::ENOENT)
    };
    let aspace = kernel.platform.new_address_space()?;
    let mm = MemoryManager::from_snapshot_with(
        &rec.mm,
        layout,
        kernel.memory_file.clone(),
        aspace.clone(),
        &open,
    )?;
    let own = kernel.platform.new_context()?;
    let mut contexts = Vec::with_capacity(others);
    for _ in 0..others {
        contexts.push(aspace.new_thread()?);
    }
    Ok((Arc::new(Mutex::new(mm)), own, contexts))
}

/// Restores `rec` on a host thread of its own, which then waits to run
/// the first task of the address space.
fn build_mm_on_thread(
    kernel: &Arc<Kernel>,
    (id, rec): (u64, &MmRecord),
    namespaces: &crate::vfs::mount_ns_state::MountNamespacesRecord,
    layout: Layout,
    (others, files): (usize, &RestoredFiles),
) -> Result<RestoredMm, RestoreError> {
    let mapped = mapped_files(kernel, (id, rec), namespaces, files)?;
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let (run_tx, run_rx) = mpsc::channel::<(Task, FpState)>();
    let kernel2 = kernel.clone();
    let rec = rec.clone();
    std::thread::Builder::new()
        .name("cryo-restore".into())
        .spawn(move || {
            let built = build_mm(&kernel2, &rec, layout, &mapped, others);
            drop(mapped);
            let ok = built.is_ok();
            let _ = done_tx.send(built);
            if !ok {
                return;
            }
            // The restore gave up when no task comes.
            if let Ok((task, fp)) = run_rx.recv() {
                crate::kernel::clone::run_restored(task, fp);
            }
        })
        .map_err(|e| RestoreError::Invalid(format!("cannot start a host thread: {e}")))?;
    let (mm, own, others) = done_rx
        .recv()
        .map_err(|_| RestoreError::Invalid("an address space's host thread ended".into()))??;
    Ok(RestoredMm {
        mm,
        own: Some(own),
        others,
        runner: Some(run_tx),
    })
}

/// A task made from its record, not yet a member of anything.
struct Pending {
    task: Task,
    fp: FpState,
    runner: Option<mpsc::Sender<(Task, FpState)>>,
}

/// A restored process tree none of whose tasks runs yet: what
/// [`restore_processes`] gives, and [`HeldTree::start`] starts.
pub(super) struct HeldTree {
    init: Task,
    start: Vec<Pending>,
    groups: Vec<Arc<ThreadGroup>>,
}

/// The open files a restore has re-opened, by saved id.
pub(super) type RestoredFiles = HashMap<u64, Arc<OpenFile>>;

/// Restores every process of `rec`, holding every task: none runs until
/// [`HeldTree::start`].
pub(super) fn restore_processes(
    kernel: &Arc<Kernel>,
    rec: &SavedKernel,
    files: &mut RestoredFiles,
    reopen_late: &mut dyn FnMut(&mut RestoredFiles) -> Result<(), RestoreError>,
    layout: Layout,
) -> Result<HeldTree, RestoreError> {
    // Filled once every process is back (below): a file of /proc/PID is
    // re-opened only then.
    let fd_tables: HashMap<u64, SharedFdTable> = rec
        .fd_tables
        .keys()
        .map(|&id| (id, Arc::new(Mutex::new(FdTable::new()))))
        .collect();
    let mut task_counts: HashMap<u64, usize> = HashMap::new();
    for p in &rec.processes {
        *task_counts.entry(p.record.mm).or_default() += p.tasks.len();
    }
    let mut mms: HashMap<u64, RestoredMm> = HashMap::new();
    for p in &rec.processes {
        let id = p.record.mm;
        if id == 0 || mms.contains_key(&id) {
            continue;
        }
        let mm_rec = rec
            .mms
            .get(&id)
            .ok_or_else(|| RestoreError::Invalid(format!("address space {id} is missing")))?;
        let others = task_counts.get(&id).copied().unwrap_or(1).saturating_sub(1);
        let restored = if p.record.tgid == 1 {
            let mapped = mapped_files(kernel, (id, mm_rec), &rec.namespaces, files)?;
            let (mm, own, others) = build_mm(kernel, mm_rec, layout, &mapped, others)?;
            RestoredMm {
                mm,
                own: Some(own),
                others,
                runner: None,
            }
        } else {
            build_mm_on_thread(
                kernel,
                (id, mm_rec),
                &rec.namespaces,
                layout,
                (others, files),
            )?
        };
        mms.insert(id, restored);
    }
    // Every owner of restored memory (tmpfs files, mappings) has claimed it.
    kernel.memory_file.finish_restore();
    tracing::debug!(address_spaces = mms.len(), "restore: address spaces mapped");

    // One fs context per process that had its own, then shared by those
    // that shared it.
    let mut fs_contexts: HashMap<i32, Arc<Mutex<FsContext>>> = HashMap::new();
    for p in rec
        .processes
        .iter()
        .filter(|p| p.record.fs_shared_with == 0)
    {
        let ns = rec.namespaces.member_ns(p.record.tgid);
        fs_contexts.insert(p.record.tgid, restore_fs(kernel, &p.record.fs, ns)?);
    }
    let mut groups = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    for p in &rec.processes {
        let owner = match p.record.fs_shared_with {
            0 => p.record.tgid,
            other => other,
        };
        let fs = fs_contexts.get(&owner).cloned().ok_or_else(|| {
            RestoreError::Invalid(format!(
                "process {}: fs_shared_with {owner} names no process with an fs context of its own",
                p.record.tgid
            ))
        })?;
        let tg = restore_group(kernel, p, &mms, &fd_tables, fs)?;
        let Some(restored) = mms.get_mut(&p.record.mm) else {
            groups.push(tg);
            continue;
        };
        for t in &p.tasks {
            let (context, runner) = match restored.own.take() {
                Some(own) => (own, restored.runner.take()),
                None => (
                    restored.others.pop().ok_or_else(|| {
                        RestoreError::Invalid("more tasks than platform threads".into())
                    })?,
                    None,
                ),
            };
            pending.push(Pending {
                task: new_task(kernel, &tg, &restored.mm, t, context),
                fp: t.fp.clone(),
                runner,
            });
        }
        groups.push(tg);
    }
    // Every process and task is in the pid namespace before any runs, so a
    // child that exits at once finds its parent.
    for tg in &groups {
        kernel.pids.add_group(tg);
    }
    for p in &pending {
        p.task.join();
    }
    // Each thread's prctl state, once it is a member of its process.
    for (p, tg) in rec.processes.iter().zip(&groups) {
        for (&tid, a) in &p.task_attrs {
            tg.attrs().load_thread(tid, a);
            if a.affinity & 1 == 0 {
                // As sched_setaffinity would have said: getcpu asks the Sentry.
                kernel.clocks.set_getcpu_local(false);
            }
        }
    }
    reopen_late(files)?;
    for (id, r) in &rec.fd_tables {
        let t = FdTable::from_record(r, &|id| files.get(&id).cloned())
            .map_err(|e| RestoreError::Invalid(e.to_string()))?;
        if let Some(table) = fd_tables.get(id) {
            *table
                .lock()
                .map_err(|_| RestoreError::Invalid("fd table lock poisoned".into()))? = t;
        }
    }
    let mut init = None;
    let mut start = Vec::new();
    for p in pending {
        if p.task.tid() == 1 {
            init = Some(p);
        } else {
            start.push(p);
        }
    }
    let mut init = init.ok_or_else(|| RestoreError::Invalid("init has no leader task".into()))?;
    init.task.set_fp_state(&init.fp)?;
    Ok(HeldTree {
        init: init.task,
        start,
        groups,
    })
}

impl HeldTree {
    /// Every thread group of the tree.
    pub(super) fn groups(&self) -> &[Arc<ThreadGroup>] {
        &self.groups
    }

    /// Starts every task but init's leader, which is returned for the
    /// calling thread to run. Everything else is running when this
    /// returns Ok.
    pub(super) fn start(self, kernel: &Arc<Kernel>) -> Result<Task, RestoreError> {
        let HeldTree {
            init,
            start,
            groups,
        } = self;
        for p in start {
            let tid = p.task.tid();
            let started = match p.runner {
                Some(runner) => runner
                    .send((p.task, p.fp))
                    .map_err(|_| "its address space's host thread ended".to_string()),
                None => crate::kernel::clone::spawn_thread(p.task, p.fp).map_err(|e| e.to_string()),
            };
            if let Err(e) = started {
                for tg in &groups {
                    tg.begin_exit(ExitStatus::Signaled(libc::SIGKILL), 0);
                }
                return Err(RestoreError::Invalid(format!(
                    "cannot start task {tid}: {e}"
                )));
            }
        }
        for tg in &groups {
            // Once each process has its tasks: the timer thread ends at once
            // in a process without any.
            tg.itimers().start(kernel, tg);
        }
        Ok(init)
    }
}

/// A saved fs context: its root and cwd looked up again by path.
fn restore_fs(
    kernel: &Arc<Kernel>,
    r: &crate::kernel::thread_group::FsContextRecord,
    ns: u32,
) -> Result<Arc<Mutex<FsContext>>, RestoreError> {
    let mnt_ns = kernel
        .vfs
        .restored_ns(ns)
        .ok_or_else(|| RestoreError::Invalid(format!("mount namespace {ns} was not restored")))?;
    let vfs = &kernel.vfs;
    let (root, cwd) = vfs.in_ns(&mnt_ns, || {
        let root_dir = vfs.root();
        let lookup = |path: &[u8]| {
            vfs.lookup_dir(&root_dir, path)
                .map_err(|errno| RestoreError::Cwd {
                    path: String::from_utf8_lossy(path).into_owned(),
                    errno,
                })
        };
        Ok::<_, RestoreError>((lookup(&r.root)?, lookup(&r.cwd)?))
    })?;
    Ok(Arc::new(Mutex::new(FsContext {
        root,
        cwd,
        umask: r.umask,
        mnt_ns,
    })))
}

/// A process from its record (a zombie has no address space), with the fs
/// context restored for it or for the process it shares one with.
fn restore_group(
    kernel: &Arc<Kernel>,
    p: &SavedProcess,
    mms: &HashMap<u64, RestoredMm>,
    fd_tables: &HashMap<u64, SharedFdTable>,
    fs: Arc<Mutex<FsContext>>,
) -> Result<Arc<ThreadGroup>, RestoreError> {
    let r = &p.record;
    let fds = fd_tables.get(&r.fd_table).cloned().ok_or_else(|| {
        RestoreError::Invalid(format!("descriptor table {} is missing", r.fd_table))
    })?;
    let tg = ThreadGroup::new(
        r.tgid,
        ProcessParts {
            mm: mms.get(&r.mm).map(|m| m.mm.clone()),
            fds,
            handlers: Arc::new(Mutex::new(r.handlers.clone())),
            limits: r.limits.clone(),
            fs,
            image: ProcessImage {
                exe: r.exe.clone(),
                argv: r.argv.clone(),
            },
            links: r.links,
            exit_signal: r.life.exit_signal,
        },
    );
    tg.load_life(&r.life);
    tg.load_shared_pending(&r.shared_pending);
    // prctl, priority and CPU-time state.
    if let Some(a) = &p.process_attrs {
        tg.attrs().load(a.clone());
    }
    if let Some(mm) = tg.mm_arc() {
        tg.limits().apply_to_mm(&mut lock(&mm));
    }
    let cpu_limit = tg.limits().get(libc::RLIMIT_CPU).ok();
    if cpu_limit.is_some_and(|l| l.cur != u64::MAX || l.max != u64::MAX) {
        crate::kernel::attrs::watch_cpu_limit(&tg);
    }
    tg.itimers().load(&r.itimers, kernel.clocks.monotonic());
    tg.itimers().load_posix(
        &p.posix_timers,
        crate::kernel::posix_timer::Now {
            monotonic: kernel.clocks.monotonic(),
            realtime: kernel.clocks.realtime(),
            cpu: 0,
        },
    );
    Ok(tg)
}

fn new_task(
    kernel: &Arc<Kernel>,
    tg: &Arc<ThreadGroup>,
    mm: &SharedMm,
    t: &TaskRecord,
    context: Box<dyn Context>,
) -> Task {
    let mut task = Task::new(
        kernel.clone(),
        t.tid,
        tg.clone(),
        mm.clone(),
        t.creds.clone(),
        CpuState { regs: t.regs },
        context,
    );
    task.load_record(t);
    task
}
