//! Checkpoint: stop every task, walk the kernel from its root into an object
//! table (the kernel section), then write the memory section, into one
//! statefile; then commit or abort in one place.
//!
//! With `--leave-running` ([`checkpoint_leave_running`]) the tasks stop
//! only while the kernel is walked and the memory file frozen
//! (`mm/freeze.rs`); the statefile is written, from the memory as it was
//! at the freeze, by a thread of its own while they run, and committed
//! there. The promise of `cli/src/checkpoint_cmd.rs` holds as before: the
//! file stays unnamed until the one commit step, a failure before it
//! leaves no statefile (and the tasks are running already), and the image
//! directory's lock is held until the end.
//!
//! The Sentry opens no host file after boot: the statefile is written into
//! an unnamed file the `cryo checkpoint` command created in the image
//! directory and passed over the control socket with that directory; the
//! commit (fsync, link into place, fsync the directory) is done by the
//! sandbox through those fds, so killing the command cannot split it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use statefile::{
    Compression, Header, MemoryOptions, MemorySource, ObjectEncoder, SectionKind, Writer,
};

use super::{MEMORY_SECTION, OBJECTS_SECTION, STATEFILE_NAME};
use crate::kernel::fd_table::FdTable;
use crate::kernel::task::TaskRecord;
use crate::kernel::thread_group::Release;
use crate::kernel::{Kernel, Task};
use crate::mm::{MemoryFile, MemoryFileRecord, MemoryManager, Snapshot};
use crate::vfs::state::SaveCtx;
use crate::vfs::OpenFile;

/// What `cryo checkpoint` asks for.
#[derive(Clone, Debug)]
pub struct CheckpointOptions {
    pub compression: Compression,
    /// Recorded in the header for `cryo inspect`.
    pub container_id: String,
    /// More header metadata from the caller (an OCI container's identity,
    /// which its restore checks the new bundle against).
    pub metadata: Vec<(String, String)>,
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
    #[error("{0}")]
    Commit(String),
}

/// What a checkpoint wrote, and how long its phases took: what CRIU
/// reports in its `stats-dump`, which engines show (podman's
/// `--print-stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointStats {
    pub memory_bytes: u64,
    pub file_bytes: u64,
    /// Bringing every task to a clean boundary.
    pub freezing_us: u64,
    /// From the first stop to the tasks running again (or the sandbox
    /// ending): the application's stall.
    pub frozen_us: u64,
    /// Capturing the memory while the tasks were stopped: writing it all
    /// for a plain checkpoint, marking it copy-on-write with
    /// `--leave-running`.
    pub memory_capture_us: u64,
    /// Writing the memory section (with `--leave-running`, while the
    /// application runs).
    pub memory_write_us: u64,
    /// Pages of the memory image looked at, and those stored (the rest
    /// were zero).
    pub pages_scanned: u64,
    pub pages_written: u64,
}

/// The memory file as the statefile's memory section reads it (the tasks
/// stopped: it holds still).
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
            .map_err(|e| io::Error::from_raw_os_error(e.0))?;
        // The vDSO data page is not saved (a restore rebuilds it): it reads
        // as the hole it is in the saved ranges.
        if let Some(v) = self.mf.vvar() {
            let end = offset + buf.len() as u64;
            let (from, to) = (v.max(offset), (v + crate::mm::MF_PAGE_SIZE).min(end));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize].fill(0);
            }
        }
        Ok(())
    }
}

/// The memory file as it was at a freeze (`mm/freeze.rs`), read while the
/// tasks run again.
struct SnapshotSource<'a> {
    mf: &'a MemoryFile,
    snap: &'a Snapshot,
}

impl MemorySource for SnapshotSource<'_> {
    fn len(&self) -> u64 {
        self.snap.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.snap
            .read_into(self.mf, offset, buf)
            .map_err(|e| io::Error::from_raw_os_error(e.0))
    }
}

/// Gives each shared object (an address space, a descriptor table, an open
/// file description) one id however many holders it has, so that it is
/// saved once and the sharing survives. Ids count from 1 in the order the
/// walk meets the objects: they say nothing about the host.
struct ObjectIds<T: ?Sized> {
    by_address: HashMap<usize, u64>,
    /// Holds every object named, so that no address is reused meanwhile.
    held: Vec<Arc<T>>,
}

impl<T: ?Sized> Default for ObjectIds<T> {
    fn default() -> Self {
        ObjectIds {
            by_address: HashMap::new(),
            held: Vec::new(),
        }
    }
}

impl<T: ?Sized> ObjectIds<T> {
    /// The object's id, and whether this is the first time it is met.
    fn id(&mut self, obj: &Arc<T>) -> (u64, bool) {
        let address = Arc::as_ptr(obj) as *const () as usize;
        if let Some(&id) = self.by_address.get(&address) {
            return (id, false);
        }
        let id = self.held.len() as u64 + 1;
        self.held.push(obj.clone());
        self.by_address.insert(address, id);
        (id, true)
    }

    /// The id of an object already named, if it was.
    fn find(&self, obj: &Arc<T>) -> Option<u64> {
        self.by_address
            .get(&(Arc::as_ptr(obj) as *const () as usize))
            .copied()
    }
}

/// Walks the kernel from its root into an object table: the kernel, its
/// mount namespace and memory file, then every thread group with what it
/// references (address space, descriptor table, open files, pipes) and its
/// tasks, whose records the stopped tasks made themselves.
fn save_kernel(
    kernel: &Kernel,
    tasks: &BTreeMap<i32, TaskRecord>,
) -> Result<ObjectEncoder, CheckpointError> {
    // The first namespace's tree is VfsState's, the others' are in
    // vfs.MountNamespaces; every path is in the namespace that record says.
    let spaces = mount_namespaces(kernel);
    kernel
        .vfs
        .in_ns(&spaces[0], || save_kernel_in_ns(kernel, tasks, &spaces))
}

/// The mount namespaces the processes are in, in the order of the first
/// process in each (init's first; boot's if there is no process), then
/// those only a descriptor's or a mapping's file is in (a program still
/// running from the namespace it left by unshare).
fn mount_namespaces(kernel: &Kernel) -> Vec<Arc<crate::vfs::mount_ns::MountNamespace>> {
    let mut spaces: Vec<Arc<crate::vfs::mount_ns::MountNamespace>> = Vec::new();
    let mut add = |ns: Arc<crate::vfs::mount_ns::MountNamespace>| {
        if !spaces.iter().any(|s| Arc::ptr_eq(s, &ns)) {
            spaces.push(ns);
        }
    };
    let groups = kernel.pids.thread_groups();
    for tg in &groups {
        add(tg.fs().lock().mnt_ns.clone());
    }
    if groups.is_empty() {
        add(kernel.vfs.init_ns().clone());
    }
    let mut of_file = |d: Option<&Arc<crate::vfs::Dentry>>| {
        if let Some(ns) = d.filter(|d| !d.is_unlinked()).and_then(|d| {
            kernel
                .vfs
                .ns_with_top(&crate::vfs::mount_ns_state::top_of(d))
        }) {
            add(ns);
        }
    };
    for tg in &groups {
        if let Some(mm) = tg.mm_arc() {
            for mapped in crate::kernel::thread_group::lock(&mm).mapped_files() {
                of_file(mapped.open_file().as_ref().and_then(|f| f.dentry()));
            }
        }
        for (_, f) in tg.fds().lock().iter() {
            of_file(f.file.dentry());
        }
    }
    spaces
}

fn save_kernel_in_ns(
    kernel: &Kernel,
    tasks: &BTreeMap<i32, TaskRecord>,
    spaces: &[Arc<crate::vfs::mount_ns::MountNamespace>],
) -> Result<ObjectEncoder, CheckpointError> {
    let mut objs = ObjectEncoder::new();
    objs.put(0, &kernel.save_record())?;
    objs.put(0, &kernel.proc_log().record())?;
    objs.put(0, &kernel.vfs.save_state()?)?;
    objs.put(
        0,
        &MemoryFileRecord {
            ranges: kernel.memory_file.allocated_ranges(),
        },
    )?;
    let vfs = &kernel.vfs;
    use crate::vfs::mount_ns_state::{ns_index, NsFile, NsMapped, NsMember};
    let mut namespaces = crate::vfs::mount_ns_state::MountNamespacesRecord {
        others: vfs.save_other_namespaces(spaces)?,
        ..Default::default()
    };
    let tops: Vec<_> = spaces.iter().map(|ns| ns.root()).collect();
    let mut mms = ObjectIds::<Mutex<MemoryManager>>::default();
    let mut fd_tables = ObjectIds::<Mutex<FdTable<Arc<OpenFile>>>>::default();
    let mut files = ObjectIds::<OpenFile>::default();
    let mut fs_owners: std::collections::HashMap<usize, i32> = Default::default();
    let mut ctx = vfs.save_ctx();
    ctx.tops = tops.clone();
    // A root or cwd on a detached mount, or on another namespace's than
    // the process's, has no path a restore could find.
    for tg in kernel.pids.thread_groups() {
        let (root, cwd, ns) = {
            let fs = tg.fs();
            let fs = fs.lock();
            (fs.root.clone(), fs.cwd.clone(), fs.mnt_ns.clone())
        };
        let own = spaces.iter().position(|s| Arc::ptr_eq(s, &ns)).unwrap_or(0) as u32;
        if own != 0 {
            namespaces.members.push(NsMember {
                tgid: tg.tgid(),
                ns: own,
            });
        }
        if [root, cwd].iter().any(|d| {
            !d.is_unlinked()
                && !crate::vfs::mount_ns_state::top_of(d).is_unlinked()
                && ns_index(spaces, d) != Some(own)
        }) {
            return Err(crate::vfs::state::SaveError::MountTree(format!(
                "process {}'s root or working directory is on a mount detached by umount2(MNT_DETACH), or another mount namespace's",
                tg.tgid()
            ))
            .into());
        }
    }
    for tg in kernel.pids.thread_groups() {
        // A zombie has no address space: id 0.
        let mut mm_id = 0;
        if let Some(mm) = tg.mm_arc() {
            let (id, new) = mms.id(&mm);
            if new {
                let mm = crate::kernel::thread_group::lock(&mm);
                // A file mapped from a mount detached since (the program
                // of a process that pivot_root(2)ed and dropped its old
                // root) has no path a restore could find.
                let mut mapped_ns: Vec<(String, u32)> = Vec::new();
                for mapped in mm.mapped_files() {
                    let Some(d) = mapped.open_file().and_then(|f| f.dentry().cloned()) else {
                        continue;
                    };
                    // One with no name left is saved by its open file;
                    // one whose names lead to a removed directory keeps
                    // the path it has.
                    if d.is_unlinked() || crate::vfs::mount_ns_state::top_of(&d).is_unlinked() {
                        continue;
                    }
                    let name = mapped.mapping_name();
                    match ns_index(spaces, &d) {
                        Some(0) => {}
                        Some(n) => {
                            if !mapped_ns.iter().any(|(p, _)| *p == name) {
                                mapped_ns.push((name, n));
                            }
                        }
                        None => {
                            return Err(crate::vfs::state::SaveError::NotCheckpointable {
                                file: format!("{name} (mapped by process {})", tg.tgid()),
                                why: "mapped from a mount detached by umount2(MNT_DETACH): no path reaches it (exec a program again after pivot_root)",
                            }
                            .into());
                        }
                    }
                }
                let fingerprint = |name: &str| {
                    let n = mapped_ns
                        .iter()
                        .find(|(p, _)| p == name)
                        .map_or(0, |(_, n)| *n as usize);
                    vfs.resolve(&tops[n], name.as_bytes(), false)
                        .ok()
                        .and_then(|d| d.inode().fingerprint())
                };
                for (path, ns) in &mapped_ns {
                    namespaces.mapped.push(NsMapped {
                        mm: id,
                        path: path.clone(),
                        ns: *ns,
                    });
                }
                let mut rec = mm.save_record(&fingerprint);
                // A file with no name has no path to re-open: the mapping
                // names its open file, saved as descriptors' files are (its
                // node is in the tmpfs table, named nowhere).
                for (start, mapped) in mm.unnamed_mappings() {
                    let f = mapped.open_file().ok_or_else(|| {
                        crate::vfs::state::SaveError::NotCheckpointable {
                            file: mapped.mapping_name(),
                            why: "a mapping of a file with no name that is no open file",
                        }
                    })?;
                    let (file_id, new) = files.id(&f);
                    if new {
                        objs.put(file_id, &f.save(&mut ctx)?)?;
                    }
                    rec.unnamed.push(crate::mm::UnnamedMappingRecord {
                        start,
                        open_file: file_id,
                    });
                }
                objs.put(id, &rec)?;
            }
            mm_id = id;
        }
        let (fdt_id, new) = fd_tables.id(&tg.fds_ref());
        if new {
            let mut first_seen = Vec::new();
            let rec = tg.fds().lock().save_record(&mut |f: &Arc<OpenFile>| {
                let (id, new) = files.id(f);
                if new {
                    first_seen.push((id, f.clone()));
                }
                Ok::<u64, CheckpointError>(id)
            })?;
            for (id, f) in first_seen {
                objs.put(id, &f.save(&mut ctx)?)?;
            }
            objs.put(fdt_id, &rec)?;
        }
        objs.put(u64::try_from(tg.tgid()).unwrap_or(0), &tg.attrs().record())?;
        let mut rec = tg.save_record(
            mm_id,
            fdt_id,
            &|d| vfs.dentry_path_bytes(d),
            kernel.clocks.monotonic(),
        );
        // The first process saved with an fs context names it for the
        // others sharing it (CLONE_FS).
        rec.fs_shared_with = *fs_owners
            .entry(Arc::as_ptr(&tg.fs_ref()) as usize)
            .or_insert(tg.tgid());
        if rec.fs_shared_with == tg.tgid() {
            rec.fs_shared_with = 0;
        }
        objs.put(u64::try_from(tg.tgid()).unwrap_or(0), &rec)?;
        // The process's POSIX timers, by its tgid.
        objs.put(
            u64::try_from(tg.tgid()).unwrap_or(0),
            &tg.itimers().save_posix(crate::kernel::posix_timer::Now {
                monotonic: kernel.clocks.monotonic(),
                realtime: kernel.clocks.realtime(),
                cpu: 0,
            }),
        )?;
        for tid in tg.tids() {
            let rec = tasks
                .get(&tid)
                .ok_or_else(|| CheckpointError::Threads(format!("task {tid} did not stop")))?;
            objs.put(u64::try_from(tid).unwrap_or(0), rec)?;
            if let Some(attrs) = tg.attrs().thread_record(tid) {
                objs.put(u64::try_from(tid).unwrap_or(0), &attrs)?;
            }
        }
    }
    save_sockets(&mut ctx, &mut files, &mut objs)?;
    // The loopback stack's sockets, each by its id (its file names it).
    for rec in kernel.inet.records() {
        objs.put(rec.id, &rec)?;
    }
    // The stack's own state (the ping range, TIME_WAIT ports) at id 0.
    objs.put(0, &kernel.inet.stack_record())?;
    for nl in std::mem::take(&mut ctx.netlink).into_values() {
        let rec = nl.record();
        objs.put(rec.id, &rec)?;
    }
    for pipe in ctx.pipes.into_values() {
        objs.put(pipe.id, &pipe)?;
    }
    for pty in ctx.ptys.into_values() {
        objs.put(u64::from(pty.index), &pty)?;
    }
    // Epoll sets once every open file has its id: their items name files
    // by it (an item whose file nothing saved holds is left out).
    for (id, ep) in &ctx.epolls {
        objs.put(*id, &ep.record(&mut |f| files.find(f)))?;
    }
    save_locks(kernel, &files, &mut objs)?;
    // Which namespace each open file's path is in (the first's unless
    // listed).
    for (i, f) in files.held.iter().enumerate() {
        if let Some(n) = f
            .dentry()
            .filter(|d| !d.is_unlinked())
            .and_then(|d| ns_index(spaces, d))
            .filter(|&n| n != 0)
        {
            namespaces.files.push(NsFile {
                file: i as u64 + 1,
                ns: n,
            });
        }
    }
    objs.put(0, &namespaces)?;
    Ok(objs)
}

/// Every socket met (through a descriptor table, a peer, a listen queue,
/// a message's sender or a file in flight), each once, with the open files
/// its messages carry in flight: those get ids like any other open file,
/// and may lead to more sockets.
fn save_sockets(
    ctx: &mut SaveCtx,
    files: &mut ObjectIds<OpenFile>,
    objs: &mut ObjectEncoder,
) -> Result<(), CheckpointError> {
    let mut done = std::collections::BTreeSet::new();
    loop {
        let next: Vec<_> = ctx
            .sockets
            .iter()
            .filter(|(id, _)| !done.contains(*id))
            .map(|(_, s)| s.clone())
            .collect();
        if next.is_empty() {
            return Ok(());
        }
        for s in next {
            done.insert(s.id());
            let mut first_seen = Vec::new();
            let (rec, linked) = s.record(&mut |f| {
                let (id, new) = files.id(f);
                if new {
                    first_seen.push((id, f.clone()));
                }
                id
            });
            for (id, f) in first_seen {
                objs.put(id, &f.save(ctx)?)?;
            }
            for l in linked {
                ctx.sockets.entry(l.id()).or_insert(l);
            }
            objs.put(rec.id, &rec)?;
        }
    }
}

/// Every file's locks, each keyed by a saved open file description of the
/// file; OFD and flock owners renamed to their descriptions' saved ids. A
/// lock whose description reached no descriptor table (held only by a
/// mapping) cannot be named and is not saved.
fn save_locks(
    kernel: &Kernel,
    files: &ObjectIds<OpenFile>,
    objs: &mut ObjectEncoder,
) -> Result<(), CheckpointError> {
    let mut by_key = HashMap::new();
    let mut by_description = HashMap::new();
    for (i, f) in files.held.iter().enumerate() {
        let id = i as u64 + 1;
        by_description.insert(f.description_id(), id);
        if let Ok(key) = f.lock_key() {
            by_key.entry(key).or_insert(id);
        }
    }
    for (key, state) in kernel.file_locks.snapshot() {
        let Some(&file) = by_key.get(&key) else {
            tracing::warn!(?key, "locks of a file no saved descriptor names: not saved");
            continue;
        };
        let locks = state.rename_descriptions(&|d| by_description.get(&d).copied());
        if locks.records.is_empty() && locks.flocks.is_empty() {
            continue;
        }
        objs.put(file, &crate::vfs::lock::FileLocksRecord { file, locks })?;
    }
    Ok(())
}

/// The header: what `cryo inspect` shows and what a restore checks before
/// reading anything else.
fn header(task: &Task, tasks: &BTreeMap<i32, TaskRecord>, opts: &CheckpointOptions) -> Header {
    // Only what the sandbox's CPU shows: a component outside it (PKRU, which
    // the host kernel keeps in use in every thread of a PKU host) is the
    // host's state, not something the application was told it has.
    let xfeatures =
        tasks.values().fold(0, |acc, r| acc | r.fp.xstate_bv()) & task.kernel().cpu.xcr0;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let argv: Vec<String> = task
        .tg()
        .image()
        .argv
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // The highest address any process used: what a restore onto a host
    // with fewer address bits checks first.
    let highest = task
        .kernel()
        .pids
        .thread_groups()
        .iter()
        .filter_map(|tg| tg.mm_arc())
        .map(|mm| crate::kernel::thread_group::lock(&mm).highest_address())
        .max()
        .unwrap_or(0);
    let mut h = Header::new(format!("cryo {}", env!("CARGO_PKG_VERSION")))
        .with("container-id", opts.container_id.clone())
        .with("created", created.to_string())
        .with("argv", format!("{argv:?}"))
        .with("platform", task.kernel().platform.name())
        .with("threads", tasks.len().to_string())
        .with(super::KEY_HIGHEST_ADDRESS, format!("{highest:#x}"))
        .with(
            super::KEY_PAGE_SIZE,
            task.kernel().platform.layout().page_size.to_string(),
        )
        .with("cpu.xfeatures-used", format!("{xfeatures:#x}"));
    // The CPU features the application saw (cpuid, auxv, /proc/cpuinfo).
    for (key, value) in task.kernel().cpu.to_metadata() {
        h = h.with(key, value);
    }
    // What the caller adds (an OCI container's identity).
    for (k, v) in &opts.metadata {
        h = h.with(k.clone(), v.clone());
    }
    h
}

/// What a checkpoint did.
#[derive(Clone, Debug)]
pub struct CheckpointOutcome {
    pub stats: CheckpointStats,
    /// The sandbox ends now (the statefile was committed and the sandbox was
    /// not asked to keep running).
    pub exit: bool,
}

/// Checkpoints the kernel of `task` into `file`, an empty file opened for
/// writing: stops every task at a clean boundary, walks the kernel from its
/// root, writes the statefile, then calls `commit` (given what was written),
/// which makes it durable and names it, and says whether the sandbox is to
/// end (or why the commit failed). The stopped tasks then go on, or end
/// with the sandbox, here and nowhere else. Runs on `task`'s own host thread, the task stopped at a clean
/// boundary. A failed checkpoint leaves every task running.
pub fn checkpoint(
    task: &mut Task,
    file: File,
    opts: &CheckpointOptions,
    commit: &mut dyn FnMut(&CheckpointStats) -> Result<bool, String>,
) -> Result<CheckpointOutcome, CheckpointError> {
    // A checkpoint still being written in the background goes first.
    wait_background_checkpoint();
    // A lazily restored sandbox's memory is whole before it is saved.
    task.kernel().memory_file.await_all_loaded();
    let stopping = Instant::now();
    let (tasks, kernel) = stop_all(task)?;
    let freezing_us = micros(stopping.elapsed());
    let written = write_statefile(task, file, opts, &tasks).map(|s| CheckpointStats {
        freezing_us,
        memory_capture_us: s.memory_write_us,
        ..s
    });
    let (result, how) = match written {
        Ok(stats) => match commit(&stats) {
            Ok(true) => (Ok(CheckpointOutcome { stats, exit: true }), Release::Exit),
            Ok(false) => (
                Ok(CheckpointOutcome { stats, exit: false }),
                Release::Continue,
            ),
            Err(e) => (Err(CheckpointError::Commit(e)), Release::Continue),
        },
        Err(e) => (Err(e), Release::Continue),
    };
    kernel.release_tasks(how);
    let frozen_us = micros(stopping.elapsed());
    result.map(|mut o| {
        o.stats.frozen_us = frozen_us;
        o
    })
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Stops every task at a clean boundary (with the interval timers held)
/// and collects their records. On error every task runs again.
fn stop_all(task: &mut Task) -> Result<(BTreeMap<i32, TaskRecord>, Arc<Kernel>), CheckpointError> {
    if task.exit_status().is_some() {
        return Err(CheckpointError::Exited);
    }
    let kernel = task.kernel().clone();
    kernel.freeze_itimers(true);
    let stopped = task
        .save_record()
        .map_err(CheckpointError::from)
        .and_then(|own| {
            kernel
                .stop_tasks(task.tid(), STOP_TIMEOUT)
                .map(|others| (own, others))
                .map_err(CheckpointError::Threads)
        });
    let (own, others) = match stopped {
        Ok(s) => s,
        Err(e) => {
            kernel.freeze_itimers(false);
            return Err(e);
        }
    };
    let mut tasks: BTreeMap<i32, TaskRecord> = others.into_iter().map(|r| (r.tid, r)).collect();
    tasks.insert(own.tid, own);
    Ok((tasks, kernel))
}

/// Makes a background checkpoint's statefile durable and names it (the
/// same commit as [`checkpoint`]'s, which cannot end the sandbox here).
pub type BackgroundCommit = Box<dyn FnOnce(&CheckpointStats) -> Result<(), String> + Send>;
/// Hears how a background checkpoint ended (once).
pub type BackgroundDone = Box<dyn FnOnce(Result<CheckpointStats, CheckpointError>) + Send>;

/// The checkpoint being written in the background, if any. One per
/// process: a sandbox process runs one kernel, and a second checkpoint
/// waits for the first (a memory file holds one freeze at a time).
static BACKGROUND: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

/// Waits until the checkpoint being written in the background (if any)
/// has been committed or has failed, and its `done` has run. A sandbox
/// about to exit calls this, so that a checkpoint it accepted is finished.
pub fn wait_background_checkpoint() {
    let handle = BACKGROUND.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = handle {
        if h.join().is_err() {
            tracing::error!("the background checkpoint thread panicked");
        }
    }
}

/// `cryo checkpoint --leave-running` with a near-zero stall: the tasks stop
/// only while the kernel's state is captured and the memory file frozen
/// (`mm/freeze.rs`); the statefile is then written by a thread of its own
/// while they run, from the memory as it was at the freeze, and `commit`
/// (then `done`, with the outcome) is called there. Returns once the tasks
/// run again; an error here means nothing was frozen, `done` is not
/// called and every task runs. A failure in the background leaves the
/// sandbox running and no statefile (`commit` is not called).
pub fn checkpoint_leave_running(
    task: &mut Task,
    file: File,
    opts: &CheckpointOptions,
    commit: BackgroundCommit,
    done: BackgroundDone,
) -> Result<(), CheckpointError> {
    wait_background_checkpoint();
    task.kernel().memory_file.await_all_loaded();
    let frozen_at = Instant::now();
    let (tasks, kernel) = stop_all(task)?;
    let freezing_us = micros(frozen_at.elapsed());
    let mut memory_capture_us = 0;
    let prepared = save_kernel(&kernel, &tasks).and_then(|objs| {
        let header = header(task, &tasks, opts);
        // Last, with nothing left to fail before the tasks go on.
        let capturing = Instant::now();
        let snap = kernel
            .memory_file
            .begin_freeze()
            .map_err(CheckpointError::Memory)?;
        memory_capture_us = micros(capturing.elapsed());
        Ok((objs, header, snap))
    });
    kernel.release_tasks(Release::Continue);
    let frozen_us = micros(frozen_at.elapsed());
    let (objs, header, snap) = prepared?;
    tracing::info!(
        stall_us = frozen_us,
        memory_bytes = snap.len(),
        "checkpoint: frozen, the tasks run again; memory is written in the background"
    );
    let mf = kernel.memory_file.clone();
    let compression = opts.compression;
    let thread_snap = snap.clone();
    let thread_mf = mf.clone();
    let spawned = std::thread::Builder::new()
        .name("cryo-checkpoint".into())
        .spawn(move || {
            // Before the compressors start (they inherit its CPUs).
            crate::mm::unbind_thread();
            let (mf, snap) = (thread_mf, thread_snap);
            // The program runs meanwhile: the compressors leave it a CPU.
            let written = write_sections(
                file,
                header,
                &objs,
                compression,
                &SnapshotSource {
                    mf: &mf,
                    snap: &snap,
                },
                true,
                || mf.end_freeze(&snap),
            );
            // Already ended once the memory was read; again for a failure
            // before that.
            mf.end_freeze(&snap);
            tracing::info!(stats = ?snap.stats(), "checkpoint: freeze over");
            let written = written.map(|s| CheckpointStats {
                freezing_us,
                frozen_us,
                memory_capture_us,
                ..s
            });
            let result = written.and_then(|stats| {
                commit(&stats)
                    .map(|()| stats)
                    .map_err(CheckpointError::Commit)
            });
            if let Err(e) = &result {
                tracing::warn!("background checkpoint failed: {e}");
            }
            done(result);
        });
    match spawned {
        Ok(h) => {
            *BACKGROUND.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
            Ok(())
        }
        Err(e) => {
            mf.end_freeze(&snap);
            Err(CheckpointError::Commit(format!(
                "cannot start the checkpoint's writer thread: {e}"
            )))
        }
    }
}

/// How long the other threads get to reach a clean boundary.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn write_statefile(
    task: &mut Task,
    file: File,
    opts: &CheckpointOptions,
    tasks: &BTreeMap<i32, TaskRecord>,
) -> Result<CheckpointStats, CheckpointError> {
    let kernel = task.kernel().clone();
    let objs = save_kernel(&kernel, tasks)?;
    let ranges = kernel.memory_file.allocated_ranges();
    let len = ranges.iter().map(|r| r.end).max().unwrap_or(0);
    let src = MemoryFileSource {
        mf: &kernel.memory_file,
        len,
    };
    write_sections(
        file,
        header(task, tasks, opts),
        &objs,
        opts.compression,
        &src,
        false,
        || {},
    )
}

/// Writes the statefile: header, kernel section, memory section from
/// `memory` (compressed leaving the program a CPU if `yielding`; then
/// calls `memory_read`: nothing reads it any more), index.
fn write_sections(
    file: File,
    header: Header,
    objs: &ObjectEncoder,
    compression: Compression,
    memory: &dyn MemorySource,
    yielding: bool,
    memory_read: impl FnOnce(),
) -> Result<CheckpointStats, CheckpointError> {
    let mut w = Writer::new(io::BufWriter::with_capacity(1 << 20, file), header)?;
    w.write_state(
        SectionKind::Kernel,
        OBJECTS_SECTION,
        compression,
        objs.encoder(),
    )?;
    let len = memory.len();
    let mopts = MemoryOptions {
        compression,
        ..Default::default()
    };
    let started = Instant::now();
    let stats = if yielding {
        w.write_memory_yielding(MEMORY_SECTION, memory, &mopts)?
    } else {
        w.write_memory(MEMORY_SECTION, memory, &mopts)?
    };
    memory_read();
    let memory_write_us = micros(started.elapsed());
    let file_bytes = w.position();
    w.finish()?;
    tracing::info!(?stats, file_bytes, "checkpoint written");
    Ok(CheckpointStats {
        memory_bytes: len,
        file_bytes,
        memory_write_us,
        pages_scanned: stats.pages,
        pages_written: stats.present_pages,
        ..Default::default()
    })
}

/// Where a checkpoint in `image_dir` lives.
pub fn statefile_path(image_dir: &Path) -> PathBuf {
    image_dir.join(STATEFILE_NAME)
}
