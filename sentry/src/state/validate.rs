//! Loading a statefile's object table into plain records, every value
//! checked before anything host-side exists (invariant 4: a statefile is
//! untrusted). An error names the record and the field. The fuzz target
//! (sentry/fuzz) drives [`load_saved_kernel`] with hostile records.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use platform::Layout;
use statefile::{Objects, ReadAt, Reader, SectionKind};

use crate::kernel::fd_table::{FdTable, FdTableRecord};
use crate::kernel::pid_namespace::PID_MAX;
use crate::kernel::task::TaskRecord;
use crate::kernel::thread_group::ThreadGroupRecord;
use crate::kernel::KernelRecord;
use crate::mm::{FileRange, MemoryFileRecord, MmRecord, MmRestoreError as MmError, MF_PAGE_SIZE};
use crate::vfs::state::{
    check_table, FileStateKind, OpenFileState, PipeSnapshot, TablePages, TmpfsSnapshot, VfsState,
};

use super::OBJECTS_SECTION;

/// More threads than this in one process is taken as damage.
pub const MAX_TASKS: usize = 4096;
/// Linux's PATH_MAX, with its NUL.
const PATH_MAX: usize = 4096;
/// The longest argument vector restored (Linux's ARG_MAX-like bound).
const MAX_ARGV_BYTES: usize = 2 << 20;
/// No saved clock value is this large (146 years of nanoseconds): the
/// arithmetic on restore never overflows.
pub const MAX_CLOCK_NANOS: i64 = 1 << 62;
/// Most pending signals a task may hold (rlimit SIGPENDING's scale).
const MAX_PENDING: usize = 64 * 1024;
/// Most supplementary groups (Linux's NGROUPS_MAX).
const NGROUPS_MAX: usize = 65536;
/// Most bytes a pipe may hold (Linux's pipe-max-size).
const MAX_PIPE_BYTES: usize = 1 << 20;

/// Why a statefile's records were refused: the record, its id and what is
/// wrong with which field.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{record} #{id}: {field}: {why}")]
pub struct InvalidRecord {
    pub record: &'static str,
    pub id: u64,
    /// A field name, or a path into a table (`upper.nodes[3].pages[0].offset`).
    pub field: Cow<'static, str>,
    pub why: String,
}

fn invalid(
    record: &'static str,
    id: u64,
    field: impl Into<Cow<'static, str>>,
    why: impl Into<String>,
) -> InvalidRecord {
    InvalidRecord {
        record,
        id,
        field: field.into(),
        why: why.into(),
    }
}

/// Why loading the records failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Statefile(#[from] statefile::StatefileError),
    #[error("invalid record {0}")]
    Invalid(#[from] InvalidRecord),
    #[error("this statefile was written by an earlier cryo (positional kernel records, no object table); this cryo cannot restore it")]
    Positional,
    #[error("the statefile holds {0} processes; this cryo restores sandboxes of one process")]
    Processes(usize),
}

/// A statefile's kernel, decoded and validated; nothing host-side exists.
#[derive(Debug)]
pub struct SavedKernel {
    pub kernel: KernelRecord,
    pub vfs: VfsState,
    pub memory: MemoryFileRecord,
    pub process: ThreadGroupRecord,
    pub mm: MmRecord,
    pub fds: FdTableRecord,
    /// Open file descriptions by id.
    pub files: BTreeMap<u64, OpenFileState>,
    pub pipes: Vec<PipeSnapshot>,
    /// The process's tasks, the leader first.
    pub tasks: Vec<TaskRecord>,
    /// prctl, priority and CPU-time state (absent before cryo saved it:
    /// the defaults).
    pub process_attrs: Option<crate::kernel::attrs::ProcessAttrsRecord>,
    /// Each task's (by tid; absent ones get the defaults).
    pub task_attrs: BTreeMap<i32, crate::kernel::attrs::TaskAttrs>,
    /// File locks, by the saved open file that names each file.
    pub file_locks: Vec<crate::vfs::lock::FileLocksRecord>,
}

fn path_ok(p: &[u8]) -> Result<(), String> {
    if p.len() >= PATH_MAX {
        return Err(format!("{} bytes, beyond PATH_MAX", p.len()));
    }
    if p.contains(&0) {
        return Err("holds a NUL byte".into());
    }
    Ok(())
}

fn absolute_path_ok(p: &[u8]) -> Result<(), String> {
    path_ok(p)?;
    if p.first() != Some(&b'/') {
        return Err(format!("{:?} is not absolute", String::from_utf8_lossy(p)));
    }
    Ok(())
}

fn tid_ok(tid: i32) -> Result<(), String> {
    if (1..=PID_MAX).contains(&tid) {
        Ok(())
    } else {
        Err(format!("{tid} is outside 1..={PID_MAX}"))
    }
}

fn check_kernel(k: &KernelRecord) -> Result<(), InvalidRecord> {
    let bad = |field, why: String| invalid("kernel.Kernel", 0, field, why);
    if !(1..=i64::from(PID_MAX)).contains(&k.next_tid) {
        return Err(bad(
            "next_tid",
            format!("{} is outside 1..={PID_MAX}", k.next_tid),
        ));
    }
    let mono = k.clocks.monotonic_at_save;
    if !(0..=MAX_CLOCK_NANOS).contains(&mono) {
        return Err(bad(
            "clocks.monotonic_at_save",
            format!("{mono} ns is out of range"),
        ));
    }
    for (field, v) in [
        ("uts.hostname", &k.uts.hostname),
        ("uts.domainname", &k.uts.domainname),
    ] {
        if v.len() > 64 || v.contains('\0') {
            return Err(bad(field, "longer than 64 bytes or holds a NUL".into()));
        }
    }
    let unique: BTreeSet<_> = k.thread_groups.iter().collect();
    if unique.len() != k.thread_groups.len() {
        return Err(bad("thread_groups", "a tgid appears twice".into()));
    }
    for &tgid in &k.thread_groups {
        tid_ok(tgid).map_err(|w| bad("thread_groups", w))?;
    }
    Ok(())
}

fn check_thread_group(tg: &ThreadGroupRecord, id: u64) -> Result<(), InvalidRecord> {
    let bad = |field, why: String| invalid("kernel.ThreadGroup", id, field, why);
    if i64::from(tg.tgid) != id as i64 {
        return Err(bad(
            "tgid",
            format!("{} differs from the record's id", tg.tgid),
        ));
    }
    if tg.tasks.is_empty() || tg.tasks.len() > MAX_TASKS {
        return Err(bad(
            "tasks",
            format!("{} tasks (1..={MAX_TASKS} allowed)", tg.tasks.len()),
        ));
    }
    if tg.tasks[0] != tg.tgid {
        return Err(bad(
            "tasks",
            "the leader (tid == tgid) is not the first task".into(),
        ));
    }
    let unique: BTreeSet<_> = tg.tasks.iter().collect();
    if unique.len() != tg.tasks.len() {
        return Err(bad("tasks", "a tid appears twice".into()));
    }
    for &t in &tg.tasks {
        tid_ok(t).map_err(|w| bad("tasks", w))?;
    }
    if !tg.handlers.validate() {
        return Err(bad("handlers", "not one disposition per signal".into()));
    }
    if !tg.limits.validate() {
        return Err(bad(
            "limits",
            "a soft limit above its hard limit, or a wrong count".into(),
        ));
    }
    absolute_path_ok(&tg.fs.root).map_err(|w| bad("fs.root", w))?;
    absolute_path_ok(&tg.fs.cwd).map_err(|w| bad("fs.cwd", w))?;
    if tg.fs.umask & !0o777 != 0 {
        return Err(bad("fs.umask", format!("{:#o}", tg.fs.umask)));
    }
    path_ok(tg.exe.as_bytes()).map_err(|w| bad("exe", w))?;
    let argv_bytes: usize = tg.argv.iter().map(|a| a.len() + 1).sum();
    if argv_bytes > MAX_ARGV_BYTES {
        return Err(bad("argv", format!("{argv_bytes} bytes")));
    }
    let l = tg.links;
    for (field, v) in [("links.pgid", l.pgid), ("links.sid", l.sid)] {
        tid_ok(v).map_err(|w| bad(field, w))?;
    }
    if !(0..=PID_MAX).contains(&l.parent) {
        return Err(bad("links.parent", format!("{}", l.parent)));
    }
    tg.itimers.check().map_err(|(field, why)| bad(field, why))?;
    Ok(())
}

fn check_task(t: &TaskRecord, id: u64, tgid: i32, max_user_addr: u64) -> Result<(), InvalidRecord> {
    let bad = |field, why: String| invalid("kernel.Task", id, field, why);
    if i64::from(t.tid) != id as i64 {
        return Err(bad(
            "tid",
            format!("{} differs from the record's id", t.tid),
        ));
    }
    if t.tgid != tgid {
        return Err(bad(
            "tgid",
            format!("{} is not its thread group {tgid}", t.tgid),
        ));
    }
    t.regs
        .validate_user(max_user_addr)
        .map_err(|w| bad("regs", w.to_string()))?;
    t.fp.validate().map_err(|w| bad("fp", w.to_string()))?;
    if t.creds.groups.len() > NGROUPS_MAX {
        return Err(bad(
            "creds.groups",
            format!("{} supplementary groups", t.creds.groups.len()),
        ));
    }
    if t.pending.len() > MAX_PENDING {
        return Err(bad("pending", format!("{} signals", t.pending.len())));
    }
    if let Some(p) = t.pending.iter().find(|p| !(1..=64).contains(&p.signo)) {
        return Err(bad("pending", format!("signal number {}", p.signo)));
    }
    let (sp, flags, size) = t.alt_stack;
    if flags & !(libc::SS_ONSTACK as u32 | libc::SS_DISABLE as u32 | (1 << 31)) != 0 {
        return Err(bad("alt_stack", format!("flags {flags:#x}")));
    }
    if sp.checked_add(size).is_none_or(|end| end > max_user_addr) {
        return Err(bad(
            "alt_stack",
            format!("{sp:#x} + {size:#x} is beyond the user address space"),
        ));
    }
    let (head, head_len) = t.robust_list;
    if head > max_user_addr || head_len > 4096 {
        return Err(bad(
            "robust_list",
            format!("head {head:#x}, length {head_len}"),
        ));
    }
    if t.clear_child_tid > max_user_addr {
        return Err(bad(
            "clear_child_tid",
            format!("{:#x} is beyond the user address space", t.clear_child_tid),
        ));
    }
    if let Some((deadline, _)) = t.restart {
        if !(0..=MAX_CLOCK_NANOS).contains(&deadline) {
            return Err(bad("restart", format!("deadline {deadline} ns")));
        }
    }
    if t.restart_rem.is_some_and(|a| a > max_user_addr) {
        return Err(bad(
            "restart_rem",
            format!("{:#x}", t.restart_rem.unwrap_or(0)),
        ));
    }
    if t.cpu_time_ns > MAX_CLOCK_NANOS as u64 {
        return Err(bad("cpu_time_ns", format!("{}", t.cpu_time_ns)));
    }
    Ok(())
}

fn check_memory(m: &MemoryFileRecord) -> Result<(), InvalidRecord> {
    let bad = |why: String| invalid("mm.MemoryFile", 0, "ranges", why);
    let mut prev_end = 0u64;
    for r in &m.ranges {
        if r.start % MF_PAGE_SIZE != 0 || r.end % MF_PAGE_SIZE != 0 {
            return Err(bad(format!(
                "{:#x}..{:#x} not page-aligned",
                r.start, r.end
            )));
        }
        if r.start >= r.end || r.start < prev_end {
            return Err(bad(format!(
                "{:#x}..{:#x} empty, reversed or overlapping",
                r.start, r.end
            )));
        }
        if r.end > crate::mm::memory_file::MAX_CAPACITY {
            return Err(bad(format!(
                "{:#x} beyond the memory file's capacity",
                r.end
            )));
        }
        prev_end = r.end;
    }
    Ok(())
}

/// Whether `offset..offset+len` lies inside one of `ranges`, which
/// [`check_memory`] has checked to be sorted and disjoint: a binary search,
/// so a table of many mappings over many ranges is not judged in
/// quadratic time.
pub fn holds(ranges: &[FileRange], offset: u64, len: u64) -> bool {
    let Some(end) = offset.checked_add(len) else {
        return false;
    };
    // The last range starting at or before `offset`.
    let i = ranges.partition_point(|r| r.start <= offset);
    i > 0 && end <= ranges[i - 1].end
}

/// Restored memory as the records describe it, for judging tmpfs pages
/// before any memory is loaded: the `mm.MemoryFile` record's ranges, the
/// pages tmpfs files took so far (both tables share one memory file) and
/// the address space's own backings. A VMA's backing is its own unless it
/// is `direct` (a shared mapping of a tmpfs file, whose pages it maps):
/// such a range may be a file's pages, which the mm's restore checks when
/// it pins them.
struct SavedPages<'a> {
    ranges: &'a [FileRange],
    /// Non-direct backings (start, end, mapping index), by start; disjoint
    /// (the mm's validation refuses overlapping ones).
    backing: Vec<(u64, u64, usize)>,
    claimed: HashSet<u64>,
}

impl TablePages for SavedPages<'_> {
    fn allocated(&self, offset: u64) -> bool {
        holds(self.ranges, offset, MF_PAGE_SIZE)
    }
    fn claim(&mut self, offset: u64) -> Result<(), String> {
        let i = self.backing.partition_point(|b| b.0 <= offset);
        if let Some(&(start, end, vma)) = i.checked_sub(1).and_then(|i| self.backing.get(i)) {
            if offset < end {
                return Err(format!(
                    "memory page {offset:#x} is mapping {vma}'s own memory ({start:#x}..{end:#x})"
                ));
            }
        }
        if !self.claimed.insert(offset) {
            return Err(format!("memory page {offset:#x} used twice"));
        }
        Ok(())
    }
}

/// Judges both tmpfs tables of the namespace record against the saved
/// memory and mappings, naming a refused field by its table
/// (`upper.nodes[3].pages[0].offset`).
fn check_tmpfs(
    vfs: &VfsState,
    memory: &MemoryFileRecord,
    mm: &MmRecord,
) -> Result<(), InvalidRecord> {
    let mut backing: Vec<(u64, u64, usize)> = mm
        .mm
        .vmas
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.direct)
        // Validated: aligned, non-empty, not overflowing.
        .map(|(i, v)| (v.mf_offset, v.mf_offset.saturating_add(v.end - v.start), i))
        .collect();
    backing.sort_unstable();
    let mut pages = SavedPages {
        ranges: &memory.ranges,
        backing,
        claimed: HashSet::new(),
    };
    let tables: [(&str, &TmpfsSnapshot); 2] = [("upper", &vfs.upper), ("shm", &vfs.shm)];
    for (name, table) in tables {
        check_table(table, &mut pages).map_err(|e| {
            invalid(
                "vfs.MountNamespace",
                0,
                format!("{name}.{}", e.field),
                e.why,
            )
        })?;
    }
    Ok(())
}

fn check_open_file(f: &OpenFileState, id: u64, pipes: &BTreeSet<u64>) -> Result<(), InvalidRecord> {
    let bad = |field, why: String| invalid("vfs.OpenFile", id, field, why);
    match f.kind {
        FileStateKind::PipeRead { pipe } | FileStateKind::PipeWrite { pipe } => {
            if !pipes.contains(&pipe) {
                return Err(bad("kind", format!("pipe #{pipe} is not in the statefile")));
            }
        }
        FileStateKind::HostStdio { index } => {
            if index > 2 {
                return Err(bad("kind", format!("host stdio {index}")));
            }
        }
        _ => absolute_path_ok(&f.path).map_err(|w| bad("path", w))?,
    }
    if f.offset > i64::MAX as u64 {
        return Err(bad("offset", format!("{}", f.offset)));
    }
    Ok(())
}

/// Decodes and validates every record of `reader`'s kernel section, against
/// this host's `layout`. Nothing is created.
pub fn load_saved_kernel<R: ReadAt>(
    reader: &Reader<R>,
    layout: &Layout,
) -> Result<SavedKernel, LoadError> {
    if reader.find(SectionKind::Kernel, OBJECTS_SECTION).is_none()
        && reader.find(SectionKind::Kernel, "").is_some()
    {
        return Err(LoadError::Positional);
    }
    let bytes = reader.section_bytes(SectionKind::Kernel, OBJECTS_SECTION)?;
    let objs = Objects::parse(&bytes, reader.types())?;
    let kernel: KernelRecord = objs.get(0)?;
    check_kernel(&kernel)?;
    if kernel.thread_groups.len() != 1 {
        return Err(LoadError::Processes(kernel.thread_groups.len()));
    }
    let vfs: VfsState = objs.get(0)?;
    let memory: MemoryFileRecord = objs.get(0)?;
    check_memory(&memory)?;
    let tgid = kernel.thread_groups[0];
    let process: ThreadGroupRecord = objs.get(tgid as u64)?;
    check_thread_group(&process, tgid as u64)?;

    let mm: MmRecord = objs.get(process.mm)?;
    let allocated = |offset: u64, len: u64| holds(&memory.ranges, offset, len);
    mm.mm.validate(layout, &allocated).map_err(|e| {
        let field = match e {
            MmError::PageSize { .. } => "mm.page_size",
            MmError::AddressSpaceTooSmall { .. } | MmError::BadVma { .. } => "mm.vmas",
            MmError::BadBrk { .. } => "mm.brk",
            _ => "mm",
        };
        invalid("mm.MemoryManager", process.mm, field, e.to_string())
    })?;
    let mut mapped = BTreeSet::new();
    for f in &mm.files {
        absolute_path_ok(f.path.as_bytes())
            .map_err(|w| invalid("mm.MemoryManager", process.mm, "files.path", w))?;
        if !mapped.insert(f.path.as_str()) {
            return Err(invalid(
                "mm.MemoryManager",
                process.mm,
                "files.path",
                format!("{} is listed twice", f.path),
            )
            .into());
        }
    }
    // Every file a mapping maps is among the files re-opened for it.
    for (i, v) in mm.mm.vmas.iter().enumerate() {
        if let Some(f) = v
            .file
            .as_ref()
            .filter(|f| !mapped.contains(f.name.as_str()))
        {
            return Err(invalid(
                "mm.MemoryManager",
                process.mm,
                "mm.vmas",
                format!(
                    "mapping {i} maps {:?}, which is not among the saved files",
                    f.name
                ),
            )
            .into());
        }
    }

    // The tmpfs tables: after the mappings, whose own memory no tmpfs file
    // may hold.
    check_tmpfs(&vfs, &memory, &mm)?;

    let fds: FdTableRecord = objs.get(process.fd_table)?;
    // Descriptor numbers and the files they name are checked before any
    // file is loaded, so a missing one is refused as the table's field.
    let nofile = process
        .limits
        .get(libc::RLIMIT_NOFILE)
        .map(|l| l.cur)
        .unwrap_or(1024);
    let file_ids: BTreeSet<u64> = objs.ids::<OpenFileState>().into_iter().collect();
    FdTable::<()>::validate_record(&fds, nofile, &|id| file_ids.contains(&id))
        .map_err(|e| invalid("kernel.FdTable", process.fd_table, "fds", e.to_string()))?;
    let pipe_ids: BTreeSet<u64> = objs.ids::<PipeSnapshot>().into_iter().collect();
    let mut files = BTreeMap::new();
    for e in &fds.fds {
        if files.contains_key(&e.file) {
            continue;
        }
        let f: OpenFileState = objs.get(e.file)?;
        check_open_file(&f, e.file, &pipe_ids)?;
        files.insert(e.file, f);
    }
    let used_pipes: BTreeSet<u64> = files
        .values()
        .filter_map(|f| match f.kind {
            FileStateKind::PipeRead { pipe } | FileStateKind::PipeWrite { pipe } => Some(pipe),
            _ => None,
        })
        .collect();
    let mut pipes = Vec::new();
    for &id in &pipe_ids {
        let p: PipeSnapshot = objs.get(id)?;
        if p.id != id {
            return Err(invalid(
                "vfs.Pipe",
                id,
                "id",
                format!("{} differs from the record's id", p.id),
            )
            .into());
        }
        if p.data.len() > MAX_PIPE_BYTES {
            return Err(invalid("vfs.Pipe", id, "data", format!("{} bytes", p.data.len())).into());
        }
        if !used_pipes.contains(&id) {
            return Err(statefile::StatefileError::UnreferencedObject {
                type_name: "vfs.Pipe".into(),
                id,
            }
            .into());
        }
        pipes.push(p);
    }

    let mut tasks = Vec::with_capacity(process.tasks.len());
    for &tid in &process.tasks {
        let t: TaskRecord = objs.get(tid as u64)?;
        check_task(&t, tid as u64, tgid, layout.max_user_addr)?;
        tasks.push(t);
    }
    let (process_attrs, task_attrs) = load_attrs(&objs, &process)?;
    let file_locks = load_locks(&objs, &files, tgid)?;
    objs.finish()?;
    Ok(SavedKernel {
        kernel,
        vfs,
        memory,
        process,
        mm,
        fds,
        files,
        pipes,
        tasks,
        process_attrs,
        task_attrs,
        file_locks,
    })
}

type AttrRecords = (
    Option<crate::kernel::attrs::ProcessAttrsRecord>,
    BTreeMap<i32, crate::kernel::attrs::TaskAttrs>,
);

/// The process's and its tasks' attribute records, each checked; a task
/// record must belong to a task of the process.
fn load_attrs(
    objs: &statefile::Objects<'_>,
    process: &ThreadGroupRecord,
) -> Result<AttrRecords, LoadError> {
    use crate::kernel::attrs::{ProcessAttrsRecord, TaskAttrs};
    let mut p = None;
    for id in objs.ids::<ProcessAttrsRecord>() {
        let r: ProcessAttrsRecord = objs.get(id)?;
        if id != process.tgid as u64 {
            return Err(invalid("kernel.ProcessAttrs", id, "id", "not the saved process").into());
        }
        r.validate()
            .map_err(|e| invalid("kernel.ProcessAttrs", id, "attrs", e.to_string()))?;
        p = Some(r);
    }
    let mut tasks = BTreeMap::new();
    for id in objs.ids::<TaskAttrs>() {
        let r: TaskAttrs = objs.get(id)?;
        let tid = i32::try_from(id)
            .ok()
            .filter(|t| process.tasks.contains(t))
            .ok_or_else(|| invalid("kernel.TaskAttrs", id, "id", "not a saved task"))?;
        r.validate()
            .map_err(|e| invalid("kernel.TaskAttrs", id, "attrs", e.to_string()))?;
        tasks.insert(tid, r);
    }
    Ok((p, tasks))
}

/// The lock records: each names a saved open file, its OFD and flock owners
/// are saved open files, its POSIX owners the saved process, and its locks
/// are a table the kernel could have built.
fn load_locks(
    objs: &statefile::Objects<'_>,
    files: &BTreeMap<u64, OpenFileState>,
    tgid: i32,
) -> Result<Vec<crate::vfs::lock::FileLocksRecord>, LoadError> {
    use crate::vfs::lock::FileLocksRecord;
    const NAME: &str = "vfs.FileLocksOf";
    let mut out = Vec::new();
    for id in objs.ids::<FileLocksRecord>() {
        let r: FileLocksRecord = objs.get(id)?;
        if r.file != id || !files.contains_key(&id) {
            return Err(invalid(NAME, id, "file", "not a saved open file").into());
        }
        if let Some(d) = r
            .locks
            .descriptions()
            .into_iter()
            .find(|d| !files.contains_key(d))
        {
            return Err(invalid(NAME, id, "owner", format!("open file #{d} is not saved")).into());
        }
        if let Some(p) = r.locks.processes().into_iter().find(|&p| p != tgid) {
            return Err(invalid(NAME, id, "owner", format!("process {p} is not saved")).into());
        }
        r.locks
            .validate()
            .map_err(|e| invalid(NAME, id, "locks", e.to_string()))?;
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod itimer_tests {
    use super::*;
    use crate::kernel::itimer::{ITimersRecord, MAX_ITIMER_NANOS};
    use crate::kernel::signal::SignalHandlers;
    use crate::kernel::thread_group::{FsContextRecord, ProcessLinks};

    fn process(itimers: ITimersRecord) -> ThreadGroupRecord {
        ThreadGroupRecord {
            tgid: 1,
            tasks: vec![1],
            mm: 1,
            fd_table: 2,
            handlers: SignalHandlers::default(),
            limits: Default::default(),
            fs: FsContextRecord {
                root: b"/".to_vec(),
                cwd: b"/".to_vec(),
                umask: 0o022,
            },
            exe: "/bin/true".into(),
            argv: vec![b"true".to_vec()],
            links: ProcessLinks::leader(1),
            itimers,
        }
    }

    #[test]
    fn hostile_interval_timers_are_refused_by_field() {
        let mut armed = ITimersRecord::default();
        armed.real.remaining_ns = 2_000_000_000;
        armed.real.interval_ns = 20_000_000;
        armed.prof.remaining_ns = MAX_ITIMER_NANOS;
        assert!(check_thread_group(&process(armed), 1).is_ok());
        for (field, edit) in [
            (
                "itimers.real.interval_ns",
                (|r: &mut ITimersRecord| r.real.interval_ns = -1) as fn(&mut ITimersRecord),
            ),
            ("itimers.real.remaining_ns", |r| {
                r.real.remaining_ns = i64::MIN
            }),
            ("itimers.virt.interval_ns", |r| {
                r.virt.interval_ns = MAX_ITIMER_NANOS + 1
            }),
            ("itimers.prof.remaining_ns", |r| {
                r.prof.remaining_ns = i64::MAX
            }),
        ] {
            let mut t = armed;
            edit(&mut t);
            let e = check_thread_group(&process(t), 1).expect_err(field);
            assert_eq!(
                (e.record, e.field.as_ref()),
                ("kernel.ThreadGroup", field),
                "{e}"
            );
        }
    }
}
