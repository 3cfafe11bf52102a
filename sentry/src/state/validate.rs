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
use crate::kernel::posix_timer::PosixTimersRecord;
use crate::kernel::task::TaskRecord;
use crate::kernel::thread_group::ThreadGroupRecord;
use crate::kernel::KernelRecord;
use crate::mm::{FileRange, MemoryFileRecord, MmRecord, MmRestoreError as MmError, MF_PAGE_SIZE};
use crate::vfs::epoll::EpollRecord;
use crate::vfs::pty::PtySnapshot;
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
/// Most items one epoll set may hold (Linux's max_user_watches' scale).
const MAX_EPOLL_ITEMS: usize = 1 << 20;

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
}

/// A statefile's kernel, decoded and validated; nothing host-side exists.
#[derive(Debug)]
pub struct SavedKernel {
    pub kernel: KernelRecord,
    pub vfs: VfsState,
    pub memory: MemoryFileRecord,
    /// Every process, init first, with its tasks (the leader first; none
    /// for a zombie).
    pub processes: Vec<SavedProcess>,
    /// Address spaces by id (shared by processes that share them).
    pub mms: BTreeMap<u64, MmRecord>,
    /// Descriptor tables by id.
    pub fd_tables: BTreeMap<u64, FdTableRecord>,
    /// Open file descriptions by id.
    pub files: BTreeMap<u64, OpenFileState>,
    pub pipes: Vec<PipeSnapshot>,
    /// The pseudo-terminals, by index.
    pub ptys: Vec<PtySnapshot>,
    /// The epoll sets' interest lists, by set id.
    pub epolls: Vec<EpollRecord>,
    /// File locks, by the saved open file that names each file.
    pub file_locks: Vec<crate::vfs::lock::FileLocksRecord>,
    /// Unix sockets (none in statefiles from before them).
    pub sockets: Vec<crate::net::state::UnixSocketRecord>,
    /// Inet sockets (none in statefiles from before them).
    pub inet_sockets: Vec<crate::net::inet::state::InetSocketRecord>,
    /// The inet stack's own state (the defaults in statefiles from
    /// before it).
    pub inet_stack: crate::net::inet::state::InetStackRecord,
    /// The mount namespaces beyond the first (none in statefiles from
    /// before them).
    pub namespaces: crate::vfs::mount_ns_state::MountNamespacesRecord,
    /// Netlink sockets (none in statefiles from before them).
    pub netlink_sockets: Vec<crate::net::netlink::NetlinkSocketRecord>,
    /// The process log (empty in statefiles from before it).
    pub process_log: crate::kernel::proc_log::ProcessLogRecord,
}

/// One saved process and its tasks.
#[derive(Debug)]
pub struct SavedProcess {
    pub record: ThreadGroupRecord,
    pub tasks: Vec<TaskRecord>,
    /// The process's POSIX timers (none in statefiles from before them).
    pub posix_timers: PosixTimersRecord,
    /// prctl, priority and CPU-time state (absent before cryo saved it:
    /// the defaults).
    pub process_attrs: Option<crate::kernel::attrs::ProcessAttrsRecord>,
    /// Each task's (by tid; absent ones get the defaults).
    pub task_attrs: BTreeMap<i32, crate::kernel::attrs::TaskAttrs>,
}

impl SavedKernel {
    /// Every task of every process.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.processes.iter().flat_map(|p| p.tasks.iter())
    }
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
    if k.memory_limit.is_some_and(|l| l < 4096) {
        return Err(bad(
            "memory_limit",
            format!("{:?} bytes is less than a page", k.memory_limit),
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
    let zombie = tg.life.zombie.is_some();
    if zombie != tg.tasks.is_empty() || tg.tasks.len() > MAX_TASKS {
        return Err(bad(
            "tasks",
            format!(
                "{} tasks (a zombie has none, a live process 1..={MAX_TASKS})",
                tg.tasks.len()
            ),
        ));
    }
    if zombie != (tg.mm == 0) {
        return Err(bad(
            "mm",
            "a zombie has no address space and a live process one".into(),
        ));
    }
    if !(0..=64).contains(&tg.life.exit_signal) {
        return Err(bad("life.exit_signal", format!("{}", tg.life.exit_signal)));
    }
    if let Some(z) = tg.life.zombie {
        let ok = if z.signaled {
            (1..=64).contains(&z.code)
        } else {
            (0..=255).contains(&z.code)
        };
        if !ok {
            return Err(bad("life.zombie.code", format!("{}", z.code)));
        }
    }
    if tg.shared_pending.len() > MAX_PENDING {
        return Err(bad(
            "shared_pending",
            format!("{} signals", tg.shared_pending.len()),
        ));
    }
    if let Some(p) = tg
        .shared_pending
        .iter()
        .find(|p| !(1..=64).contains(&p.signo))
    {
        return Err(bad("shared_pending", format!("signal number {}", p.signo)));
    }
    if let Some(crate::kernel::exit::JobReport::Stopped(sig)) = tg.life.job.report {
        if !(1..=64).contains(&sig) {
            return Err(bad("life.job.report", format!("stopped by {sig}")));
        }
    }
    if tg.tasks.first().is_some_and(|&t| t != tg.tgid) {
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
    if !t.creds.caps.is_valid() {
        return Err(bad(
            "creds.caps",
            format!("capability sets Linux cannot hold: {:x?}", t.creds.caps),
        ));
    }
    if t.creds.securebits
        & !(crate::kernel::creds::SECURE_ALL_BITS | crate::kernel::creds::SECURE_ALL_LOCKS)
        != 0
    {
        return Err(bad(
            "creds.securebits",
            format!("unknown bits in {:#x}", t.creds.securebits),
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

/// Each backing run of `mm`, cut at the mappings it backs (a run may span
/// several adjacent ones), so a refusal names the right mapping.
/// Validated: aligned, non-empty, in order, covering exactly the VMAs.
fn mm_backing(mm: &MmRecord, backing: &mut Vec<(u64, u64, usize)>) {
    let vmas = &mm.mm.vmas;
    let mut vi = 0;
    for b in &mm.mm.backing {
        let mut pos = b.start;
        while pos < b.end {
            while vi < vmas.len() && (vmas[vi].end <= pos || vmas[vi].direct) {
                vi += 1;
            }
            let Some(v) = vmas.get(vi) else { break };
            let to = v.end.min(b.end);
            let off = b.mf_offset.saturating_add(pos - b.start);
            backing.push((off, off.saturating_add(to - pos), vi));
            pos = to;
        }
    }
}

/// Judges both tmpfs tables of the namespace record against the saved
/// memory and mappings, naming a refused field by its table
/// (`upper.nodes[3].pages[0].offset`).
fn check_tmpfs<'a>(
    vfs: &VfsState,
    others: &crate::vfs::mount_ns_state::MountNamespacesRecord,
    memory: &MemoryFileRecord,
    mms: impl Iterator<Item = &'a MmRecord>,
) -> Result<(), InvalidRecord> {
    let mut backing: Vec<(u64, u64, usize)> = Vec::new();
    for mm in mms {
        mm_backing(mm, &mut backing);
    }
    backing.sort_unstable();
    // Address spaces share pages after fork: one run per stretch of
    // memory, so the search below sees every run that covers a page.
    let mut merged: Vec<(u64, u64, usize)> = Vec::with_capacity(backing.len());
    for b in backing {
        match merged.last_mut() {
            Some(last) if b.0 < last.1 => last.1 = last.1.max(b.1),
            _ => merged.push(b),
        }
    }
    let mut pages = SavedPages {
        ranges: &memory.ranges,
        backing: merged,
        claimed: HashSet::new(),
    };
    let mut tables: Vec<(String, &TmpfsSnapshot)> =
        vec![("upper".into(), &vfs.upper), ("shm".into(), &vfs.shm)];
    for (i, t) in vfs.bundle_tmpfs.iter().enumerate() {
        tables.push((format!("bundle_tmpfs[{i}]"), t));
    }
    for (i, m) in vfs.mounts.made.iter().enumerate() {
        if let crate::vfs::state::MountRecordKind::Tmpfs(t) = &m.kind {
            tables.push((format!("mounts.made[{i}]"), t));
        }
    }
    // Another namespace's tmpfs mounts hold pages of the same memory.
    for (n, tree) in others.others.iter().enumerate() {
        for (i, m) in tree.made.iter().enumerate() {
            if let crate::vfs::state::MountRecordKind::Tmpfs(t) = &m.kind {
                tables.push((format!("namespaces.others[{n}].made[{i}]"), t));
            }
        }
    }
    crate::vfs::mount_state::check_mount_tree(&vfs.mounts)
        .map_err(|(field, why)| invalid("vfs.MountNamespace", 0, format!("mounts.{field}"), why))?;
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

fn check_open_file(
    f: &OpenFileState,
    id: u64,
    pipes: &BTreeSet<u64>,
    epolls: &BTreeSet<u64>,
    sockets: &BTreeSet<u64>,
    ptys: &BTreeSet<u64>,
) -> Result<(), InvalidRecord> {
    let bad = |field, why: String| invalid("vfs.OpenFile", id, field, why);
    f.fasync.check().map_err(|why| bad("fasync", why))?;
    match &f.kind {
        FileStateKind::EventFd { count, .. } if *count > crate::vfs::eventfd::EVENTFD_MAX => {
            return Err(bad("kind", format!("eventfd counter {count}")));
        }
        FileStateKind::TimerFd(r) => {
            r.check()
                .map_err(|(field, why)| bad("kind", format!("timerfd {field}: {why}")))?;
        }
        FileStateKind::Inotify(r) => r.check().map_err(|why| bad("kind", why))?,
        FileStateKind::PidFd(r) => r
            .check()
            .map_err(|(field, why)| bad(if field == "pid" { "kind.pid" } else { "kind" }, why))?,
        FileStateKind::Epoll { id: set } if !epolls.contains(set) => {
            return Err(bad(
                "kind",
                format!("epoll set #{set} is not in the statefile"),
            ));
        }
        FileStateKind::Socket { id: s } if !sockets.contains(s) => {
            return Err(bad("kind", format!("socket #{s} is not in the statefile")));
        }
        _ => {}
    }
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
        FileStateKind::Pty { index, .. } => {
            if !ptys.contains(&u64::from(index)) {
                return Err(bad("kind", format!("pty #{index} is not in the statefile")));
            }
            // Its name, if any, is only where it is shown again.
            if !f.path.is_empty() {
                absolute_path_ok(&f.path).map_err(|w| bad("path", w))?;
            }
        }
        FileStateKind::EventFd { .. }
        | FileStateKind::TimerFd(_)
        | FileStateKind::SignalFd { .. }
        | FileStateKind::Epoll { .. }
        | FileStateKind::Inotify(_)
        | FileStateKind::PidFd(_)
        | FileStateKind::Socket { .. } => {}
        _ => absolute_path_ok(&f.path).map_err(|w| bad("path", w))?,
    }
    if f.offset > i64::MAX as u64 {
        return Err(bad("offset", format!("{}", f.offset)));
    }
    Ok(())
}

/// A pidfd of a process not reaped at the checkpoint names a saved process
/// (live or a zombie).
fn check_pidfds(files: &BTreeMap<u64, OpenFileState>, tgids: &[i32]) -> Result<(), InvalidRecord> {
    for (&id, f) in files {
        if let FileStateKind::PidFd(r) = &f.kind {
            if !r.reaped && !tgids.contains(&r.pid) {
                return Err(invalid(
                    "vfs.OpenFile",
                    id,
                    "kind.pid",
                    format!("pidfd of pid {}, which names no saved process", r.pid),
                ));
            }
        }
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
    let process_log = load_process_log(&objs)?;
    let vfs: VfsState = objs.get(0)?;
    let memory: MemoryFileRecord = objs.get(0)?;
    check_memory(&memory)?;
    let mut processes = Vec::with_capacity(kernel.thread_groups.len());
    for &tgid in &kernel.thread_groups {
        let record: ThreadGroupRecord = objs.get(tgid as u64)?;
        check_thread_group(&record, tgid as u64)?;
        processes.push(record);
    }
    // A shared fs context is named by a process that has its own.
    for p in &processes {
        let owner = p.fs_shared_with;
        if owner != 0
            && !processes
                .iter()
                .any(|o| o.tgid == owner && o.tgid != p.tgid && o.fs_shared_with == 0)
        {
            return Err(invalid(
                "kernel.ThreadGroup",
                p.tgid as u64,
                "fs_shared_with",
                format!("{owner} names no other process with an fs context of its own"),
            )
            .into());
        }
    }
    let file_ids: BTreeSet<u64> = objs.ids::<OpenFileState>().into_iter().collect();
    let pipe_ids: BTreeSet<u64> = objs.ids::<PipeSnapshot>().into_iter().collect();
    let epoll_ids: BTreeSet<u64> = objs.ids::<EpollRecord>().into_iter().collect();
    let pty_ids: BTreeSet<u64> = objs.ids::<PtySnapshot>().into_iter().collect();
    let unix_ids: BTreeSet<u64> = objs
        .ids::<crate::net::state::UnixSocketRecord>()
        .into_iter()
        .collect();
    let inet_ids: BTreeSet<u64> = objs
        .ids::<crate::net::inet::state::InetSocketRecord>()
        .into_iter()
        .collect();
    let netlink_ids: BTreeSet<u64> = objs
        .ids::<crate::net::netlink::NetlinkSocketRecord>()
        .into_iter()
        .collect();
    if let Some(id) = unix_ids.intersection(&inet_ids).next() {
        return Err(invalid("net.InetSocket", *id, "id", "a unix socket's id too").into());
    }
    if let Some(id) = netlink_ids
        .iter()
        .find(|i| unix_ids.contains(i) || inet_ids.contains(i))
    {
        return Err(invalid("net.NetlinkSocket", *id, "id", "another socket's id too").into());
    }
    // The sockets an open file may name: every family shares the ids.
    let socket_ids: BTreeSet<u64> = unix_ids
        .iter()
        .chain(&inet_ids)
        .chain(&netlink_ids)
        .copied()
        .collect();
    let mut mms = BTreeMap::new();
    let mut fd_tables = BTreeMap::new();
    let mut files = BTreeMap::new();
    for p in &processes {
        if p.mm != 0 && !mms.contains_key(&p.mm) {
            let mm: MmRecord = objs.get(p.mm)?;
            check_mm(&mm, p.mm, layout, &memory)?;
            // A mapping of a file with no name maps a saved open file: one
            // of such a file's nodes, as a descriptor would hold it.
            for u in &mm.unnamed {
                let bad = |why: String| invalid("mm.MemoryManager", p.mm, "unnamed.open_file", why);
                if !file_ids.contains(&u.open_file) {
                    return Err(bad(format!(
                        "the mapping at {:#x} maps open file #{}, which is not saved",
                        u.start, u.open_file
                    ))
                    .into());
                }
                let f = match files.entry(u.open_file) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let f: OpenFileState = objs.get(u.open_file)?;
                        check_open_file(
                            &f,
                            u.open_file,
                            &pipe_ids,
                            &epoll_ids,
                            &socket_ids,
                            &pty_ids,
                        )?;
                        slot.insert(f)
                    }
                };
                if !matches!(f.kind, FileStateKind::Unlinked { .. }) {
                    return Err(bad(format!(
                        "the mapping at {:#x} maps open file #{}, which is not a file with no name",
                        u.start, u.open_file
                    ))
                    .into());
                }
            }
            mms.insert(p.mm, mm);
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = fd_tables.entry(p.fd_table) {
            let fds: FdTableRecord = objs.get(p.fd_table)?;
            // Descriptor numbers and the files they name are checked
            // before any file is loaded, so a missing one is refused as
            // the table's field.
            let nofile = p
                .limits
                .get(libc::RLIMIT_NOFILE)
                .map(|l| l.cur)
                .unwrap_or(1024);
            FdTable::<()>::validate_record(&fds, nofile, &|id| file_ids.contains(&id))
                .map_err(|e| invalid("kernel.FdTable", p.fd_table, "fds", e.to_string()))?;
            for e in &fds.fds {
                if files.contains_key(&e.file) {
                    continue;
                }
                let f: OpenFileState = objs.get(e.file)?;
                check_open_file(&f, e.file, &pipe_ids, &epoll_ids, &socket_ids, &pty_ids)?;
                files.insert(e.file, f);
            }
            slot.insert(fds);
        }
    }
    // The tmpfs tables: after the mappings, whose own memory no tmpfs file
    // may hold.
    let namespaces = load_namespaces(&objs, &tgids_of(&processes), &mms, &files)?;
    check_tmpfs(&vfs, &namespaces, &memory, mms.values())?;
    let sockets = load_sockets(
        &objs,
        (&unix_ids, &socket_ids),
        &file_ids,
        &pipe_ids,
        &epoll_ids,
        &pty_ids,
        &mut files,
    )?;
    let inet_sockets = load_inet_sockets(&objs, &inet_ids, &files)?;
    let inet_stack = load_inet_stack(&objs)?;
    let netlink_sockets = load_netlink_sockets(&objs, &netlink_ids, &files)?;
    let epolls = check_epolls(&objs, &epoll_ids, &files)?;
    check_pidfds(&files, &kernel.thread_groups)?;
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
    let ptys = load_ptys(&objs, &pty_ids, &files)?;
    let mut saved = Vec::with_capacity(processes.len());
    let mut seen_tids = BTreeSet::new();
    for record in processes {
        let mut tasks = Vec::with_capacity(record.tasks.len());
        for &tid in &record.tasks {
            if !seen_tids.insert(tid) {
                return Err(invalid(
                    "kernel.ThreadGroup",
                    record.tgid as u64,
                    "tasks",
                    format!("task {tid} belongs to two processes"),
                )
                .into());
            }
            let t: TaskRecord = objs.get(tid as u64)?;
            check_task(&t, tid as u64, record.tgid, layout.max_user_addr)?;
            tasks.push(t);
        }
        let tgid = record.tgid as u64;
        let posix_timers = if objs.ids::<PosixTimersRecord>().contains(&tgid) {
            let r: PosixTimersRecord = objs.get(tgid)?;
            r.check(&|tid| record.tasks.contains(&tid))
                .map_err(|(field, why)| invalid("kernel.PosixTimers", tgid, field, why))?;
            r
        } else {
            PosixTimersRecord::default()
        };
        let (process_attrs, task_attrs) = load_attrs(&objs, &record)?;
        saved.push(SavedProcess {
            record,
            tasks,
            posix_timers,
            process_attrs,
            task_attrs,
        });
    }
    if saved
        .first()
        .is_none_or(|p| p.record.tgid != 1 || p.tasks.is_empty())
    {
        return Err(invalid(
            "kernel.Kernel",
            0,
            "thread_groups",
            "the first process is not a live init (pid 1)".to_string(),
        )
        .into());
    }
    let tgids: BTreeSet<i32> = saved.iter().map(|p| p.record.tgid).collect();
    // Attribute records of no saved process or task.
    use crate::kernel::attrs::{ProcessAttrsRecord, TaskAttrs};
    if let Some(id) = objs
        .ids::<ProcessAttrsRecord>()
        .into_iter()
        .find(|&id| i32::try_from(id).map_or(true, |t| !tgids.contains(&t)))
    {
        return Err(invalid("kernel.ProcessAttrs", id, "id", "not the saved process").into());
    }
    if let Some(id) = objs
        .ids::<TaskAttrs>()
        .into_iter()
        .find(|&id| i32::try_from(id).map_or(true, |t| !seen_tids.contains(&t)))
    {
        return Err(invalid("kernel.TaskAttrs", id, "id", "not a saved task").into());
    }
    let file_locks = load_locks(&objs, &files, &tgids)?;
    objs.finish()?;
    Ok(SavedKernel {
        kernel,
        vfs,
        memory,
        processes: saved,
        mms,
        fd_tables,
        files,
        pipes,
        ptys,
        epolls,
        file_locks,
        sockets,
        inet_sockets,
        inet_stack,
        netlink_sockets,
        process_log,
        namespaces,
    })
}

fn tgids_of(processes: &[ThreadGroupRecord]) -> Vec<i32> {
    processes.iter().map(|p| p.tgid).collect()
}

/// The mount namespaces beyond the first, checked, naming only saved
/// processes, address spaces and open files; none in statefiles from
/// before them.
fn load_namespaces(
    objs: &Objects<'_>,
    tgids: &[i32],
    mms: &BTreeMap<u64, MmRecord>,
    files: &BTreeMap<u64, OpenFileState>,
) -> Result<crate::vfs::mount_ns_state::MountNamespacesRecord, LoadError> {
    use crate::vfs::mount_ns_state::MountNamespacesRecord;
    let what = "vfs.MountNamespaces";
    let ids = objs.ids::<MountNamespacesRecord>();
    if let Some(&id) = ids.iter().find(|&&id| id != 0) {
        return Err(invalid(what, id, "id", "not the namespaces' (0)").into());
    }
    if ids.is_empty() {
        return Ok(MountNamespacesRecord::default());
    }
    let r: MountNamespacesRecord = objs.get(0)?;
    r.check()
        .map_err(|(field, why)| invalid(what, 0, field, why))?;
    for (i, m) in r.members.iter().enumerate() {
        if !tgids.contains(&m.tgid) {
            return Err(invalid(what, 0, format!("members[{i}].tgid"), "no saved process").into());
        }
    }
    for (i, f) in r.files.iter().enumerate() {
        if !files.contains_key(&f.file) {
            return Err(invalid(what, 0, format!("files[{i}].file"), "no saved open file").into());
        }
    }
    for (i, m) in r.mapped.iter().enumerate() {
        if !mms.contains_key(&m.mm) {
            return Err(
                invalid(what, 0, format!("mapped[{i}].mm"), "no saved address space").into(),
            );
        }
    }
    Ok(r)
}

/// The kernel's process log, checked against its bounds; an empty one for
/// statefiles from before it.
fn load_process_log(
    objs: &Objects<'_>,
) -> Result<crate::kernel::proc_log::ProcessLogRecord, LoadError> {
    use crate::kernel::proc_log::ProcessLogRecord;
    let ids = objs.ids::<ProcessLogRecord>();
    if let Some(&id) = ids.iter().find(|&&id| id != 0) {
        return Err(invalid("kernel.ProcessLog", id, "id", "not the kernel's (0)").into());
    }
    if ids.is_empty() {
        return Ok(ProcessLogRecord::default());
    }
    let r: ProcessLogRecord = objs.get(0)?;
    r.check()
        .map_err(|(field, why)| invalid("kernel.ProcessLog", 0, field, why))?;
    Ok(r)
}

/// The pseudo-terminals: each named by an open file, its state within the
/// line discipline's limits, and its open/closed flags true to the files
/// that name its ends (one master description at most, none once hung up;
/// no replica once the replica is marked closed).
fn load_ptys(
    objs: &Objects<'_>,
    ids: &BTreeSet<u64>,
    files: &BTreeMap<u64, OpenFileState>,
) -> Result<Vec<PtySnapshot>, LoadError> {
    let mut masters: BTreeMap<u64, usize> = BTreeMap::new();
    let mut replicas: BTreeMap<u64, usize> = BTreeMap::new();
    for f in files.values() {
        if let FileStateKind::Pty { index, master } = f.kind {
            let count = if master { &mut masters } else { &mut replicas };
            *count.entry(u64::from(index)).or_default() += 1;
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let p: PtySnapshot = objs.get(id)?;
        let bad = |field: &'static str, why: String| invalid("vfs.Pty", id, field, why);
        if u64::from(p.index) != id {
            return Err(bad("index", format!("{} differs from the record's id", p.index)).into());
        }
        p.check().map_err(|(field, why)| bad(field, why))?;
        let m = masters.get(&id).copied().unwrap_or(0);
        let r = replicas.get(&id).copied().unwrap_or(0);
        if m == 0 && r == 0 {
            return Err(statefile::StatefileError::UnreferencedObject {
                type_name: "vfs.Pty".into(),
                id,
            }
            .into());
        }
        if m > 1 {
            return Err(bad("index", format!("{m} master descriptions")).into());
        }
        // Not hung up with no master description: the master was held
        // outside the sandbox's files (an OCI container's console, which
        // the restore attaches again).
        if p.state.hung_up && m == 1 {
            return Err(bad(
                "state.hung_up",
                format!("{} with {m} master descriptions", p.state.hung_up),
            )
            .into());
        }
        if p.state.replica_closed && r > 0 {
            return Err(bad(
                "state.replica_closed",
                format!("set with {r} replica descriptions open"),
            )
            .into());
        }
        out.push(p);
    }
    Ok(out)
}

/// The unix sockets' records, each checked alone, the files they carry
/// in flight (loaded like the descriptor tables' files), then the graph:
/// listen queues, peers, one file per socket, and every socket reached
/// from an open file.
fn load_sockets(
    objs: &Objects,
    (socket_ids, any_socket_ids): (&BTreeSet<u64>, &BTreeSet<u64>),
    file_ids: &BTreeSet<u64>,
    pipe_ids: &BTreeSet<u64>,
    epoll_ids: &BTreeSet<u64>,
    pty_ids: &BTreeSet<u64>,
    files: &mut BTreeMap<u64, OpenFileState>,
) -> Result<Vec<crate::net::state::UnixSocketRecord>, LoadError> {
    use crate::net::{state::UnixSocketRecord, NetError};
    let net_invalid = |e: NetError| -> LoadError {
        let NetError::Invalid { id, field, why } = e;
        invalid("net.UnixSocket", id, field, why).into()
    };
    let mut sockets: Vec<UnixSocketRecord> = Vec::with_capacity(socket_ids.len());
    for &id in socket_ids {
        let r: UnixSocketRecord = objs.get(id)?;
        r.check(id, socket_ids, file_ids).map_err(net_invalid)?;
        sockets.push(r);
    }
    // Files in flight may be sockets whose queues carry more files: load
    // until no new one appears.
    let mut pending: Vec<u64> = sockets
        .iter()
        .flat_map(|r| r.messages.iter().flat_map(|m| m.rights.iter().copied()))
        .collect();
    while let Some(f) = pending.pop() {
        if files.contains_key(&f) {
            continue;
        }
        let st: OpenFileState = objs.get(f)?;
        check_open_file(&st, f, pipe_ids, epoll_ids, any_socket_ids, pty_ids)?;
        files.insert(f, st);
    }
    let socket_files: Vec<u64> = files
        .values()
        .filter_map(|f| match f.kind {
            FileStateKind::Socket { id } if socket_ids.contains(&id) => Some(id),
            _ => None,
        })
        .collect();
    crate::net::state::check_graph(&sockets, &socket_files).map_err(net_invalid)?;
    // Every socket is reached from a file (through peers, listen queues
    // and senders): a record nothing reaches is refused.
    let by_id: BTreeMap<u64, &UnixSocketRecord> = sockets.iter().map(|r| (r.id, r)).collect();
    let mut reached: BTreeSet<u64> = BTreeSet::new();
    let mut todo = socket_files.clone();
    while let Some(id) = todo.pop() {
        if !reached.insert(id) {
            continue;
        }
        if let Some(r) = by_id.get(&id) {
            todo.extend(r.pending.iter().copied());
            if r.peer != 0 {
                todo.push(r.peer);
            }
            todo.extend(r.messages.iter().map(|m| m.sender).filter(|&s| s != 0));
        }
    }
    if let Some(id) = socket_ids.iter().find(|id| !reached.contains(id)) {
        return Err(statefile::StatefileError::UnreferencedObject {
            type_name: "net.UnixSocket".into(),
            id: *id,
        }
        .into());
    }
    Ok(sockets)
}

/// The netlink sockets' records, each checked and named by exactly one
/// open file.
fn load_netlink_sockets(
    objs: &Objects,
    ids: &BTreeSet<u64>,
    files: &BTreeMap<u64, OpenFileState>,
) -> Result<Vec<crate::net::netlink::NetlinkSocketRecord>, LoadError> {
    use crate::net::{netlink::NetlinkSocketRecord, NetError};
    let mut named: BTreeMap<u64, usize> = BTreeMap::new();
    for f in files.values() {
        if let FileStateKind::Socket { id } = f.kind {
            if ids.contains(&id) {
                *named.entry(id).or_default() += 1;
            }
        }
    }
    let mut recs = Vec::with_capacity(ids.len());
    for &id in ids {
        let r: NetlinkSocketRecord = objs.get(id)?;
        r.check(id).map_err(|e| -> LoadError {
            let NetError::Invalid { id, field, why } = e;
            invalid("net.NetlinkSocket", id, field, why).into()
        })?;
        match named.get(&id) {
            Some(1) => {}
            None => {
                return Err(statefile::StatefileError::UnreferencedObject {
                    type_name: "net.NetlinkSocket".into(),
                    id,
                }
                .into())
            }
            Some(_) => {
                return Err(invalid("net.NetlinkSocket", id, "file", "two open files").into())
            }
        }
        recs.push(r);
    }
    Ok(recs)
}

/// The inet stack's record: at id 0, checked; the defaults when absent.
fn load_inet_stack(
    objs: &Objects<'_>,
) -> Result<crate::net::inet::state::InetStackRecord, LoadError> {
    use crate::net::inet::state::InetStackRecord;
    let ids = objs.ids::<InetStackRecord>();
    if let Some(&id) = ids.iter().find(|&&id| id != 0) {
        return Err(invalid("net.InetStack", id, "id", "not the stack's (0)").into());
    }
    if ids.is_empty() {
        return Ok(InetStackRecord::default());
    }
    let r: InetStackRecord = objs.get(0)?;
    r.check()
        .map_err(|(field, why)| invalid("net.InetStack", 0, field, why))?;
    Ok(r)
}

/// The inet sockets' records, each checked alone, then together with the
/// open files that name them (every file loaded by now: descriptor
/// tables' and those in flight): connections in pairs, queued
/// connections with no file, one file per socket.
fn load_inet_sockets(
    objs: &Objects,
    inet_ids: &BTreeSet<u64>,
    files: &BTreeMap<u64, OpenFileState>,
) -> Result<Vec<crate::net::inet::state::InetSocketRecord>, LoadError> {
    use crate::net::{inet::state::InetSocketRecord, NetError};
    let net_invalid = |e: NetError| -> LoadError {
        let NetError::Invalid { id, field, why } = e;
        invalid("net.InetSocket", id, field, why).into()
    };
    let mut recs: Vec<InetSocketRecord> = Vec::with_capacity(inet_ids.len());
    for &id in inet_ids {
        let r: InetSocketRecord = objs.get(id)?;
        r.check(id, inet_ids).map_err(net_invalid)?;
        recs.push(r);
    }
    let inet_files: Vec<u64> = files
        .values()
        .filter_map(|f| match f.kind {
            FileStateKind::Socket { id } if inet_ids.contains(&id) => Some(id),
            _ => None,
        })
        .collect();
    crate::net::inet::state::check_graph(&recs, &inet_files).map_err(net_invalid)?;
    Ok(recs)
}

/// One address space's record: its mappings against this host's layout
/// and the saved memory, and the files they map.
fn check_mm(
    mm: &MmRecord,
    id: u64,
    layout: &Layout,
    memory: &MemoryFileRecord,
) -> Result<(), InvalidRecord> {
    let allocated = |offset: u64, len: u64| holds(&memory.ranges, offset, len);
    mm.mm.validate(layout, &allocated).map_err(|e| {
        let field = match e {
            MmError::PageSize { .. } => "mm.page_size",
            MmError::AddressSpaceTooSmall { .. } | MmError::BadVma { .. } => "mm.vmas",
            MmError::BadBacking { .. } => "mm.backing",
            MmError::BadBrk { .. } => "mm.brk",
            _ => "mm",
        };
        invalid("mm.MemoryManager", id, field, e.to_string())
    })?;
    let mut mapped = BTreeSet::new();
    for f in &mm.files {
        absolute_path_ok(f.path.as_bytes())
            .map_err(|w| invalid("mm.MemoryManager", id, "files.path", w))?;
        if !mapped.insert(f.path.as_str()) {
            return Err(invalid(
                "mm.MemoryManager",
                id,
                "files.path",
                format!("{} is listed twice", f.path),
            ));
        }
    }
    // Each mapping of a file with no name is one file VMA, listed once.
    let mut unnamed = BTreeSet::new();
    for u in &mm.unnamed {
        let vma = mm.mm.vmas.iter().find(|v| v.start == u.start);
        let why = match vma {
            None => Some("no mapping starts there"),
            Some(v) if v.file.is_none() || v.kind == crate::mm::VmaKind::Vvar => {
                Some("that mapping maps no file")
            }
            Some(_) if !unnamed.insert(u.start) => Some("it is listed twice"),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(invalid(
                "mm.MemoryManager",
                id,
                "unnamed.start",
                format!("{:#x}: {why}", u.start),
            ));
        }
    }
    // Every other file a mapping maps is among the files re-opened for it.
    for (i, v) in mm.mm.vmas.iter().enumerate() {
        if let Some(f) = v
            .file
            .as_ref()
            .filter(|f| !mapped.contains(f.name.as_str()) && !unnamed.contains(&v.start))
        {
            return Err(invalid(
                "mm.MemoryManager",
                id,
                "mm.vmas",
                format!(
                    "mapping {i} maps {:?}, which is not among the saved files",
                    f.name
                ),
            ));
        }
    }
    Ok(())
}

/// The epoll sets' records: each referenced by exactly one open file,
/// its items naming open files of the statefile, each (file, fd) once.
fn check_epolls(
    objs: &Objects<'_>,
    ids: &BTreeSet<u64>,
    files: &BTreeMap<u64, OpenFileState>,
) -> Result<Vec<EpollRecord>, LoadError> {
    let mut used: BTreeMap<u64, u64> = BTreeMap::new();
    for (&fid, f) in files {
        if let FileStateKind::Epoll { id } = f.kind {
            if let Some(other) = used.insert(id, fid) {
                return Err(invalid(
                    "vfs.OpenFile",
                    fid,
                    "kind",
                    format!("epoll set #{id} is also open file #{other}"),
                )
                .into());
            }
        }
    }
    let mut out = Vec::new();
    for &id in ids {
        let r: EpollRecord = objs.get(id)?;
        let bad = |field: String, why: String| invalid("vfs.Epoll", id, field, why);
        if r.id != id {
            return Err(bad(
                "id".into(),
                format!("{} differs from the record's id", r.id),
            )
            .into());
        }
        if !used.contains_key(&id) {
            return Err(statefile::StatefileError::UnreferencedObject {
                type_name: "vfs.Epoll".into(),
                id,
            }
            .into());
        }
        if r.items.len() > MAX_EPOLL_ITEMS {
            return Err(bad("items".into(), format!("{} items", r.items.len())).into());
        }
        let mut keys = BTreeSet::new();
        for (i, it) in r.items.iter().enumerate() {
            if !files.contains_key(&it.file) {
                return Err(bad(
                    format!("items[{i}].file"),
                    format!("open file #{} is not in the statefile", it.file),
                )
                .into());
            }
            if it.fd < 0 {
                return Err(bad(format!("items[{i}].fd"), format!("{}", it.fd)).into());
            }
            if !keys.insert((it.file, it.fd)) {
                return Err(bad(
                    format!("items[{i}]"),
                    format!("(file #{}, fd {}) listed twice", it.file, it.fd),
                )
                .into());
            }
            if it.file == used[&id] {
                return Err(bad(format!("items[{i}].file"), "the set holds itself".into()).into());
            }
        }
        out.push(r);
    }
    check_epoll_nesting(&out, files)?;
    Ok(out)
}

/// Sets inside sets form no loop and nest no deeper than Linux allows (a
/// loop would make a set's readiness recurse without end).
fn check_epoll_nesting(
    sets: &[EpollRecord],
    files: &BTreeMap<u64, OpenFileState>,
) -> Result<(), LoadError> {
    use crate::vfs::epoll::MAX_NESTS;
    let children: BTreeMap<u64, Vec<u64>> = sets
        .iter()
        .map(|s| {
            let inner = s
                .items
                .iter()
                .filter_map(|it| match files.get(&it.file).map(|f| &f.kind) {
                    Some(FileStateKind::Epoll { id }) => Some(*id),
                    _ => None,
                })
                .collect();
            (s.id, inner)
        })
        .collect();
    // Depth-first, without recursion and visiting each set once: a set
    // met again while its own walk is open is a loop; a finished one
    // brings its height (the longest chain of sets below it).
    enum Mark {
        Open,
        Height(usize),
    }
    let mut marks: BTreeMap<u64, Mark> = BTreeMap::new();
    for &root in children.keys() {
        if marks.contains_key(&root) {
            continue;
        }
        marks.insert(root, Mark::Open);
        let mut stack: Vec<(u64, usize)> = vec![(root, 0)];
        while let Some(&mut (set, ref mut next)) = stack.last_mut() {
            let kids = children.get(&set).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(&c) = kids.get(*next) {
                *next += 1;
                match marks.get(&c) {
                    Some(Mark::Open) => {
                        return Err(invalid(
                            "vfs.Epoll",
                            c,
                            "items",
                            "the set is inside itself through other sets".to_string(),
                        )
                        .into())
                    }
                    Some(Mark::Height(_)) => {}
                    None => {
                        marks.insert(c, Mark::Open);
                        stack.push((c, 0));
                    }
                }
                continue;
            }
            let height = kids
                .iter()
                .map(|c| match marks.get(c) {
                    Some(Mark::Height(h)) => h + 1,
                    _ => 0,
                })
                .max()
                .unwrap_or(0);
            if height > MAX_NESTS {
                return Err(invalid(
                    "vfs.Epoll",
                    set,
                    "items",
                    format!("epoll sets nest {height} deep below it (Linux allows {MAX_NESTS})"),
                )
                .into());
            }
            marks.insert(set, Mark::Height(height));
            stack.pop();
        }
    }
    Ok(())
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
    // Records of no saved process or task are left unread: the object
    // table then refuses them as unreferenced.
    let mut p = None;
    let id = process.tgid as u64;
    if objs.ids::<ProcessAttrsRecord>().contains(&id) {
        let r: ProcessAttrsRecord = objs.get(id)?;
        r.validate()
            .map_err(|e| invalid("kernel.ProcessAttrs", id, "attrs", e.to_string()))?;
        p = Some(r);
    }
    let mut tasks = BTreeMap::new();
    let task_ids = objs.ids::<TaskAttrs>();
    for &tid in &process.tasks {
        let id = tid as u64;
        if !task_ids.contains(&id) {
            continue;
        }
        let r: TaskAttrs = objs.get(id)?;
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
    tgids: &BTreeSet<i32>,
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
        if let Some(p) = r.locks.processes().into_iter().find(|p| !tgids.contains(p)) {
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
            life: Default::default(),
            shared_pending: Vec::new(),
            fs_shared_with: 0,
        }
    }

    #[test]
    fn hostile_process_tree_fields_are_refused_by_field() {
        use crate::kernel::exit::JobReport;
        use crate::kernel::thread_group::ZombieRecord;
        let live = process(ITimersRecord::default());
        assert!(check_thread_group(&live, 1).is_ok());
        let mut zombie = live.clone();
        zombie.tasks.clear();
        zombie.mm = 0;
        zombie.life.zombie = Some(ZombieRecord {
            signaled: false,
            code: 3,
        });
        assert!(check_thread_group(&zombie, 1).is_ok());
        type Edit = fn(&mut ThreadGroupRecord);
        let cases: [(&str, Edit, bool); 6] = [
            ("life.exit_signal", |r| r.life.exit_signal = 65, false),
            (
                "life.zombie.code",
                |r| {
                    r.life.zombie = Some(ZombieRecord {
                        signaled: true,
                        code: 0,
                    })
                },
                true,
            ),
            (
                "life.zombie.code",
                |r| {
                    r.life.zombie = Some(ZombieRecord {
                        signaled: false,
                        code: 256,
                    })
                },
                true,
            ),
            (
                "life.job.report",
                |r| r.life.job.report = Some(JobReport::Stopped(99)),
                false,
            ),
            // A zombie with tasks, a live process without any.
            ("tasks", |r| r.tasks.clear(), false),
            ("mm", |r| r.mm = 0, false),
        ];
        for (field, edit, from_zombie) in cases {
            let mut r = if from_zombie {
                zombie.clone()
            } else {
                live.clone()
            };
            edit(&mut r);
            let e = check_thread_group(&r, 1).expect_err(field);
            assert_eq!(
                (e.record, e.field.as_ref()),
                ("kernel.ThreadGroup", field),
                "{e}"
            );
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
