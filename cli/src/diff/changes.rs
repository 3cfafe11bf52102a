//! What changed from side A to side B: processes, the writable layers'
//! files, descriptors, memory pages per mapping, environment and
//! credentials. Pure functions of the two decoded statefiles (and, for
//! telling a copied-up file from a new one, the lower layer's host
//! directory when it is known).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use sentry::kernel::proc_log::{ProcessLogEntry, ProcessLogRecord};
use sentry::mm::{MmRecord, MF_PAGE_SIZE};
use sentry::state::validate::SavedProcess;
use sentry::vfs::state::{TmpfsNodeKind, TmpfsPage, TmpfsSnapshot};

use super::load::Side;

/// Files up to this size are compared byte for byte and, when text, shown
/// as a unified diff.
pub const TEXT_LIMIT: u64 = 256 * 1024;

#[derive(Debug, Default, Serialize)]
pub struct ChangeSet {
    pub processes: Processes,
    pub files: Vec<FileChange>,
    pub descriptors: Vec<FdChange>,
    pub memory: Vec<MappingChange>,
    pub environment: Vec<EnvChange>,
    pub credentials: Vec<CredChange>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        let p = &self.processes;
        p.started.is_empty()
            && p.ended.is_empty()
            && p.exec.is_empty()
            && p.unlogged == 0
            && self.files.is_empty()
            && self.descriptors.is_empty()
            && self.memory.is_empty()
            && self.environment.is_empty()
            && self.credentials.is_empty()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Processes {
    /// Processes B has (or its log names as started after A) that A had not.
    pub started: Vec<Proc>,
    /// Processes A had that had ended by B.
    pub ended: Vec<Proc>,
    /// Processes in both that exec'd another program.
    pub exec: Vec<Exec>,
    /// Processes that started and ended between A and B but that B's log,
    /// being full, no longer names.
    pub unlogged: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub exe: String,
    pub argv: Vec<String>,
    /// The sandbox's CLOCK_MONOTONIC at its start and end (when the
    /// process log recorded them).
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub exit: Option<Exit>,
    /// Still running (or a zombie) in B.
    pub in_b: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Exit {
    pub signaled: bool,
    pub code: i32,
}

#[derive(Debug, Serialize)]
pub struct Exec {
    pub pid: i32,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub exe_before: String,
    pub exe_after: String,
}

#[derive(Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    /// added, removed or modified.
    pub change: &'static str,
    /// file, dir or symlink.
    pub kind: &'static str,
    pub size_before: Option<u64>,
    pub size_after: Option<u64>,
    /// What differs in a modified file: content, size, mode, owner,
    /// target, times.
    pub what: Vec<String>,
    /// A unified diff of a text file's content.
    pub diff: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdInfo {
    pub path: String,
    pub kind: String,
    pub offset: u64,
    pub flags: i32,
}

#[derive(Debug, Serialize)]
pub struct FdChange {
    pub pid: i32,
    pub fd: i32,
    pub change: &'static str,
    pub before: Option<FdInfo>,
    pub after: Option<FdInfo>,
}

#[derive(Debug, Serialize)]
pub struct MappingChange {
    pub pid: i32,
    pub start: u64,
    pub end: u64,
    pub name: String,
    /// changed (pages of a mapping in both differ), added (pages B maps
    /// that A did not map) or removed (pages A mapped that B does not).
    pub change: &'static str,
    pub pages: u64,
    /// Pages whose content differs (changed), or pages newly mapped or
    /// unmapped (added, removed).
    pub pages_changed: u64,
    /// Those pages, as [start, end) address ranges.
    pub ranges: Vec<[u64; 2]>,
}

#[derive(Debug, Serialize)]
pub struct EnvChange {
    pub pid: i32,
    pub var: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CredChange {
    pub pid: i32,
    pub tid: i32,
    pub field: String,
    pub before: Value,
    pub after: Value,
}

fn text(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The log entry of live (or zombie) process `pid`: its newest.
fn entry_of(log: &ProcessLogRecord, pid: i32) -> Option<&ProcessLogEntry> {
    log.entries.iter().rev().find(|e| e.pid == pid)
}

fn exit_of(e: &ProcessLogEntry) -> Option<Exit> {
    e.end.map(|end| Exit {
        signaled: end.signaled,
        code: end.code,
    })
}

fn proc_of(p: &SavedProcess, log: &ProcessLogRecord, in_b: bool) -> Proc {
    let e = entry_of(log, p.record.tgid);
    let zombie = p.record.life.zombie.map(|z| Exit {
        signaled: z.signaled,
        code: z.code,
    });
    Proc {
        pid: p.record.tgid,
        ppid: p.record.links.parent,
        exe: p.record.exe.clone(),
        argv: text(&p.record.argv),
        start_ns: e.map(|e| e.start_ns),
        end_ns: e.and_then(|e| e.end.map(|x| x.at_ns)),
        exit: zombie.or_else(|| e.and_then(exit_of)),
        in_b,
    }
}

fn proc_of_entry(e: &ProcessLogEntry) -> Proc {
    Proc {
        pid: e.pid,
        ppid: e.ppid,
        exe: e.exe.clone(),
        argv: text(&e.argv),
        start_ns: Some(e.start_ns),
        end_ns: e.end.map(|x| x.at_ns),
        exit: exit_of(e),
        in_b: false,
    }
}

/// The same process on both sides: the same pid and, where both logs
/// name it, the same log entry (a reused pid is another process).
fn same_process(a: &Side, pa: &SavedProcess, b: &Side, pb: &SavedProcess) -> bool {
    if pa.record.tgid != pb.record.tgid {
        return false;
    }
    let sa = entry_of(&a.saved.process_log, pa.record.tgid).map(|e| e.seq);
    let sb = entry_of(&b.saved.process_log, pb.record.tgid).map(|e| e.seq);
    match (sa, sb) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

/// The lower layer of the root's overlay, on this host, if known: where a
/// file new in the upper layer may have been copied up from.
#[derive(Clone, Debug)]
pub struct Lower(pub Option<PathBuf>);

impl Lower {
    fn path(&self, p: &str) -> Option<PathBuf> {
        let root = self.0.as_ref()?;
        Some(root.join(p.trim_start_matches('/')))
    }
}

pub fn compare(a: &Side, b: &Side, lower: &Lower) -> ChangeSet {
    let mut out = ChangeSet::default();
    compare_processes(a, b, &mut out);
    for (name, mount, upper) in [("upper", "/", true), ("shm", "/dev/shm", false)] {
        let (sa, sb) = match name {
            "upper" => (&a.saved.vfs.upper, &b.saved.vfs.upper),
            _ => (&a.saved.vfs.shm, &b.saved.vfs.shm),
        };
        let lower = if upper { lower.clone() } else { Lower(None) };
        compare_layer(a, sa, b, sb, mount, &lower, &mut out.files);
    }
    out
}

fn compare_processes(a: &Side, b: &Side, out: &mut ChangeSet) {
    let (la, lb) = (&a.saved.process_log, &b.saved.process_log);
    let mut in_b_table: BTreeSet<(i32, Option<u64>)> = BTreeSet::new();
    for pb in &b.saved.processes {
        let seq = entry_of(lb, pb.record.tgid).map(|e| e.seq);
        in_b_table.insert((pb.record.tgid, seq));
        let pa = a
            .saved
            .processes
            .iter()
            .find(|pa| same_process(a, pa, b, pb));
        let Some(pa) = pa else {
            out.processes.started.push(proc_of(pb, lb, true));
            continue;
        };
        let pid = pb.record.tgid;
        if pa.record.life.zombie.is_none() && pb.record.life.zombie.is_some() {
            // Ended, not yet reaped.
            out.processes.ended.push(proc_of(pb, lb, true));
        }
        if pa.record.argv != pb.record.argv || pa.record.exe != pb.record.exe {
            out.processes.exec.push(Exec {
                pid,
                before: text(&pa.record.argv),
                after: text(&pb.record.argv),
                exe_before: pa.record.exe.clone(),
                exe_after: pb.record.exe.clone(),
            });
        }
        if let (Some(ea), Some(eb)) = (entry_of(la, pid), entry_of(lb, pid)) {
            compare_env(pid, &ea.env, &eb.env, &mut out.environment);
        }
        compare_creds(pa, pb, &mut out.credentials);
        if pa.record.life.zombie.is_none() && pb.record.life.zombie.is_none() {
            compare_fds(a, pa, b, pb, &mut out.descriptors);
            compare_memory(a, pa, b, pb, &mut out.memory);
        }
    }
    // A's processes B no longer has.
    for pa in &a.saved.processes {
        if b.saved
            .processes
            .iter()
            .any(|pb| same_process(a, pa, b, pb))
        {
            continue;
        }
        let mut p = proc_of(pa, la, false);
        // How it ended, from B's log.
        let seq = entry_of(la, pa.record.tgid).map(|e| e.seq);
        let ended =
            lb.entries.iter().rev().find(|e| {
                e.pid == pa.record.tgid && seq.is_none_or(|s| s == e.seq) && e.end.is_some()
            });
        if let Some(e) = ended {
            p.end_ns = e.end.map(|x| x.at_ns);
            p.exit = exit_of(e);
        }
        out.processes.ended.push(p);
    }
    // Processes that started after A and have left B's table: they
    // started and ended in between.
    let log_in_a = la.next_seq > 0;
    let a_time = a.saved.kernel.clocks.monotonic_at_save;
    for e in &lb.entries {
        let after_a = if log_in_a {
            e.seq >= la.next_seq
        } else {
            e.start_ns > a_time
        };
        if !after_a || in_b_table.contains(&(e.pid, Some(e.seq))) {
            continue;
        }
        out.processes.started.push(proc_of_entry(e));
    }
    out.processes
        .started
        .sort_by_key(|p| (p.start_ns.unwrap_or(i64::MAX), p.pid));
    out.processes.ended.sort_by_key(|p| p.pid);
    if log_in_a {
        out.processes.unlogged = lb.dropped.saturating_sub(la.dropped);
    }
}

fn env_map(v: &[Vec<u8>]) -> BTreeMap<String, String> {
    v.iter()
        .map(|s| {
            let s = String::from_utf8_lossy(s);
            match s.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (s.to_string(), String::new()),
            }
        })
        .collect()
}

fn compare_env(pid: i32, a: &[Vec<u8>], b: &[Vec<u8>], out: &mut Vec<EnvChange>) {
    let (ma, mb) = (env_map(a), env_map(b));
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for k in keys {
        let (va, vb) = (ma.get(k), mb.get(k));
        if va != vb {
            out.push(EnvChange {
                pid,
                var: k.clone(),
                before: va.cloned(),
                after: vb.cloned(),
            });
        }
    }
}

fn compare_creds(pa: &SavedProcess, pb: &SavedProcess, out: &mut Vec<CredChange>) {
    for tb in &pb.tasks {
        let Some(ta) = pa.tasks.iter().find(|t| t.tid == tb.tid) else {
            continue;
        };
        let (Ok(Value::Object(ca)), Ok(Value::Object(cb))) = (
            serde_json::to_value(&ta.creds),
            serde_json::to_value(&tb.creds),
        ) else {
            continue;
        };
        let fields: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
        for f in fields {
            let (va, vb) = (ca.get(f), cb.get(f));
            if va != vb {
                out.push(CredChange {
                    pid: pb.record.tgid,
                    tid: tb.tid,
                    field: f.clone(),
                    before: va.cloned().unwrap_or(Value::Null),
                    after: vb.cloned().unwrap_or(Value::Null),
                });
            }
        }
    }
}

/// A file description as a person names it: its path, else its kind.
fn fd_infos(side: &Side, p: &SavedProcess) -> BTreeMap<i32, FdInfo> {
    let Some(table) = side.saved.fd_tables.get(&p.record.fd_table) else {
        return BTreeMap::new();
    };
    table
        .fds
        .iter()
        .filter_map(|e| {
            let f = side.saved.files.get(&e.file)?;
            // The variant's name alone: ids inside it are the checkpoint's
            // numbering, not the object's.
            let kind = format!("{:?}", f.kind);
            let kind = kind
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("")
                .to_string();
            Some((
                e.fd,
                FdInfo {
                    path: String::from_utf8_lossy(&f.path).into_owned(),
                    kind,
                    offset: f.offset,
                    flags: f.flags,
                },
            ))
        })
        .collect()
}

fn compare_fds(a: &Side, pa: &SavedProcess, b: &Side, pb: &SavedProcess, out: &mut Vec<FdChange>) {
    let (fa, fb) = (fd_infos(a, pa), fd_infos(b, pb));
    let fds: BTreeSet<i32> = fa.keys().chain(fb.keys()).copied().collect();
    for fd in fds {
        let (x, y) = (fa.get(&fd), fb.get(&fd));
        let change = match (x, y) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(x), Some(y)) if x != y => "changed",
            _ => continue,
        };
        out.push(FdChange {
            pid: pb.record.tgid,
            fd,
            change,
            before: x.cloned(),
            after: y.cloned(),
        });
    }
}

/// The hash of the page at address `addr` of `mm` (None: not mapped).
fn page_at(side: &Side, mm: &MmRecord, addr: u64) -> Option<u64> {
    let vmas = &mm.mm.vmas;
    let i = vmas.partition_point(|v| v.start <= addr);
    let v = vmas.get(i.checked_sub(1)?)?;
    if addr >= v.end {
        return None;
    }
    if v.direct {
        return Some(side.page(v.mf_offset.checked_add(addr - v.start)?));
    }
    let runs = &mm.mm.backing;
    let j = runs.partition_point(|r| r.start <= addr);
    let r = runs.get(j.checked_sub(1)?)?;
    if addr >= r.end {
        return None;
    }
    Some(side.page(r.mf_offset.checked_add(addr - r.start)?))
}

fn mapping_name(v: &sentry::mm::VmaState) -> String {
    use sentry::mm::VmaKind;
    match (&v.file, v.kind) {
        (Some(f), _) => f.name.clone(),
        (None, VmaKind::Heap) => "[heap]".into(),
        (None, VmaKind::Stack) => "[stack]".into(),
        (None, VmaKind::Vdso) => "[vdso]".into(),
        (None, VmaKind::Vvar) => "[vvar]".into(),
        (None, VmaKind::Normal) if v.shared => "[anon shared]".into(),
        (None, VmaKind::Normal) => "[anon]".into(),
    }
}

/// Adds page `addr` to `ranges`, merging with the last range.
fn push_page(ranges: &mut Vec<[u64; 2]>, addr: u64) {
    match ranges.last_mut() {
        Some(r) if r[1] == addr => r[1] = addr + MF_PAGE_SIZE,
        _ => ranges.push([addr, addr + MF_PAGE_SIZE]),
    }
}

fn compare_memory(
    a: &Side,
    pa: &SavedProcess,
    b: &Side,
    pb: &SavedProcess,
    out: &mut Vec<MappingChange>,
) {
    let (Some(ma), Some(mb)) = (
        a.saved.mms.get(&pa.record.mm),
        b.saved.mms.get(&pb.record.mm),
    ) else {
        return;
    };
    let pid = pb.record.tgid;
    let ps = MF_PAGE_SIZE;
    // The vDSO's data page is the kernel's clock, never saved (a restore
    // maps its own): it says nothing of what the program changed.
    let saved = |v: &&sentry::mm::VmaState| v.kind != sentry::mm::VmaKind::Vvar;
    for v in mb.mm.vmas.iter().filter(saved) {
        let (mut changed, mut added) = (Vec::new(), Vec::new());
        let (mut n_changed, mut n_added) = (0u64, 0u64);
        let mut addr = v.start;
        while addr < v.end {
            let hb = page_at(b, mb, addr);
            match page_at(a, ma, addr) {
                None => {
                    n_added += 1;
                    push_page(&mut added, addr);
                }
                Some(ha) if Some(ha) != hb => {
                    n_changed += 1;
                    push_page(&mut changed, addr);
                }
                _ => {}
            }
            addr += ps;
        }
        let pages = (v.end - v.start) / ps;
        for (change, n, ranges) in [("changed", n_changed, changed), ("added", n_added, added)] {
            if n > 0 {
                out.push(MappingChange {
                    pid,
                    start: v.start,
                    end: v.end,
                    name: mapping_name(v),
                    change,
                    pages,
                    pages_changed: n,
                    ranges,
                });
            }
        }
    }
    for v in ma.mm.vmas.iter().filter(saved) {
        let mut removed = Vec::new();
        let mut n = 0u64;
        let mut addr = v.start;
        while addr < v.end {
            if page_at(b, mb, addr).is_none() {
                n += 1;
                push_page(&mut removed, addr);
            }
            addr += ps;
        }
        if n > 0 {
            out.push(MappingChange {
                pid,
                start: v.start,
                end: v.end,
                name: mapping_name(v),
                change: "removed",
                pages: (v.end - v.start) / ps,
                pages_changed: n,
                ranges: removed,
            });
        }
    }
}

/// One node of a tmpfs table, as the diff compares it.
struct Node<'a> {
    kind: &'static str,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    /// Over the pages' hashes (files) or the target (symlinks).
    content: u64,
    pages: &'a [TmpfsPage],
    target: &'a [u8],
}

struct Layer<'a> {
    nodes: BTreeMap<String, Node<'a>>,
    whiteouts: BTreeSet<String>,
}

fn join(dir: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn walk<'a>(side: &Side, snap: &'a TmpfsSnapshot, mount: &str) -> Layer<'a> {
    let by_ino: HashMap<u64, &sentry::vfs::state::TmpfsNodeRecord> =
        snap.nodes.iter().map(|n| (n.ino, n)).collect();
    let mut layer = Layer {
        nodes: BTreeMap::new(),
        whiteouts: BTreeSet::new(),
    };
    let mut todo = vec![(snap.root, mount.to_string())];
    let mut seen = BTreeSet::new();
    while let Some((ino, path)) = todo.pop() {
        let Some(n) = by_ino.get(&ino) else { continue };
        if !seen.insert((ino, path.clone())) || seen.len() > 1 << 22 {
            continue;
        }
        let mut node = Node {
            kind: "file",
            size: 0,
            mode: n.mode & 0o7777,
            uid: n.uid,
            gid: n.gid,
            mtime: (n.mtime.sec, n.mtime.nsec),
            content: 0,
            pages: &[],
            target: &[],
        };
        match &n.kind {
            TmpfsNodeKind::Dir {
                entries, whiteouts, ..
            } => {
                node.kind = "dir";
                node.size = entries.len() as u64;
                for w in whiteouts {
                    layer.whiteouts.insert(join(&path, w));
                }
                for e in entries {
                    todo.push((e.ino, join(&path, &e.name)));
                }
            }
            TmpfsNodeKind::File { size, pages } => {
                node.size = *size;
                let mut sorted: Vec<&TmpfsPage> = pages.iter().collect();
                sorted.sort_by_key(|p| p.index);
                let mut h = DefaultHasher::new();
                h.write_u64(*size);
                for p in sorted {
                    let ph = side.page(p.offset);
                    if ph != super::load::ZERO_PAGE {
                        h.write_u64(p.index);
                        h.write_u64(ph);
                    }
                }
                node.content = h.finish();
                node.pages = pages;
            }
            TmpfsNodeKind::Symlink { target } => {
                node.kind = "symlink";
                node.size = target.len() as u64;
                node.target = target;
            }
        }
        layer.nodes.insert(path, node);
    }
    layer
}

/// Whether `path` or a directory above it (below `mount`) is in `set`.
fn hidden_by(set: &BTreeSet<String>, path: &str) -> bool {
    let mut p = path;
    loop {
        if set.contains(p) {
            return true;
        }
        match p.rfind('/') {
            Some(0) | None => return false,
            Some(i) => p = &p[..i],
        }
    }
}

fn is_text(b: &[u8]) -> bool {
    !b.contains(&0) && std::str::from_utf8(b).is_ok()
}

fn unified(path: &str, before: &[u8], after: &[u8]) -> Option<String> {
    if !is_text(before) || !is_text(after) {
        return None;
    }
    let (x, y) = (
        std::str::from_utf8(before).ok()?,
        std::str::from_utf8(after).ok()?,
    );
    let d = similar::TextDiff::from_lines(x, y);
    let rel = path.trim_start_matches('/');
    Some(
        d.unified_diff()
            .context_radius(3)
            .header(&format!("a/{rel}"), &format!("b/{rel}"))
            .to_string(),
    )
}

fn bytes_of(side: &Side, n: &Node) -> Option<Vec<u8>> {
    if n.kind != "file" || n.size > TEXT_LIMIT {
        return None;
    }
    side.file_bytes(n.pages, n.size).ok()
}

fn lower_file(lower: &Lower, path: &str) -> Option<(std::fs::Metadata, PathBuf)> {
    let p = lower.path(path)?;
    let m = std::fs::symlink_metadata(&p).ok()?;
    Some((m, p))
}

fn kind_of_meta(m: &std::fs::Metadata) -> &'static str {
    if m.is_dir() {
        "dir"
    } else if m.file_type().is_symlink() {
        "symlink"
    } else {
        "file"
    }
}

fn compare_layer(
    a: &Side,
    sa: &TmpfsSnapshot,
    b: &Side,
    sb: &TmpfsSnapshot,
    mount: &str,
    lower: &Lower,
    out: &mut Vec<FileChange>,
) {
    use std::os::unix::fs::MetadataExt;
    let (la, lb) = (walk(a, sa, mount), walk(b, sb, mount));
    let mut changes: BTreeMap<String, FileChange> = BTreeMap::new();
    // Directories whose times alone changed: reported unless a change
    // below them explains it.
    let mut dir_times: Vec<(String, u64)> = Vec::new();
    for (path, nb) in &lb.nodes {
        if path == mount {
            continue;
        }
        match la.nodes.get(path) {
            Some(na) => {
                let mut what = Vec::new();
                if na.kind != nb.kind {
                    what.push(format!("type {} -> {}", na.kind, nb.kind));
                } else if nb.kind == "file" {
                    if na.size != nb.size {
                        what.push("size".to_string());
                    }
                    if na.content != nb.content {
                        what.push("content".to_string());
                    }
                } else if nb.kind == "symlink" && na.target != nb.target {
                    what.push("target".to_string());
                }
                if na.mode != nb.mode {
                    what.push(format!("mode {:04o} -> {:04o}", na.mode, nb.mode));
                }
                if (na.uid, na.gid) != (nb.uid, nb.gid) {
                    what.push(format!(
                        "owner {}:{} -> {}:{}",
                        na.uid, na.gid, nb.uid, nb.gid
                    ));
                }
                if what.is_empty() && na.mtime != nb.mtime {
                    if nb.kind == "dir" {
                        dir_times.push((path.clone(), nb.size));
                        continue;
                    }
                    what.push("times".to_string());
                }
                if what.is_empty() {
                    continue;
                }
                let diff = match (bytes_of(a, na), bytes_of(b, nb)) {
                    (Some(x), Some(y)) if x != y => unified(path, &x, &y),
                    _ => None,
                };
                changes.insert(
                    path.clone(),
                    FileChange {
                        path: path.clone(),
                        change: "modified",
                        kind: nb.kind,
                        size_before: Some(na.size),
                        size_after: Some(nb.size),
                        what,
                        diff,
                    },
                );
            }
            None => {
                // Not in A's upper layer: new, or copied up from the lower
                // layer (which A showed unless A had deleted it).
                let below = if hidden_by(&la.whiteouts, path) {
                    None
                } else {
                    lower_file(lower, path)
                };
                let Some((meta, lower_path)) = below else {
                    changes.insert(
                        path.clone(),
                        FileChange {
                            path: path.clone(),
                            change: "added",
                            kind: nb.kind,
                            size_before: None,
                            size_after: (nb.kind != "dir").then_some(nb.size),
                            what: Vec::new(),
                            diff: None,
                        },
                    );
                    continue;
                };
                let lkind = kind_of_meta(&meta);
                if lkind == "dir" && nb.kind == "dir" {
                    // A copy-up of a directory: its entries tell.
                    if meta.mode() & 0o7777 == nb.mode
                        && (meta.uid(), meta.gid()) == (nb.uid, nb.gid)
                    {
                        if (meta.mtime(), meta.mtime_nsec()) != nb.mtime {
                            dir_times.push((path.clone(), nb.size));
                        }
                        continue;
                    }
                }
                let mut what = Vec::new();
                let mut diff = None;
                if lkind != nb.kind {
                    what.push(format!("type {lkind} -> {}", nb.kind));
                } else if nb.kind == "file" {
                    if meta.len() != nb.size {
                        what.push("size".to_string());
                    }
                    let before = (meta.len() <= TEXT_LIMIT)
                        .then(|| std::fs::read(&lower_path).ok())
                        .flatten();
                    match (before, bytes_of(b, nb)) {
                        (Some(x), Some(y)) => {
                            if x != y {
                                what.push("content".to_string());
                                diff = unified(path, &x, &y);
                            }
                        }
                        // Too large to compare: only the size tells.
                        _ => {
                            if meta.len() != nb.size {
                                what.push("content".to_string());
                            }
                        }
                    }
                } else if nb.kind == "symlink" {
                    let t = std::fs::read_link(&lower_path).ok();
                    if t.as_deref().map(|t| t.as_os_str().as_encoded_bytes()) != Some(nb.target) {
                        what.push("target".to_string());
                    }
                }
                if meta.mode() & 0o7777 != nb.mode {
                    what.push(format!(
                        "mode {:04o} -> {:04o}",
                        meta.mode() & 0o7777,
                        nb.mode
                    ));
                }
                if (meta.uid(), meta.gid()) != (nb.uid, nb.gid) {
                    what.push(format!(
                        "owner {}:{} -> {}:{}",
                        meta.uid(),
                        meta.gid(),
                        nb.uid,
                        nb.gid
                    ));
                }
                if what.is_empty() {
                    // Copied up unchanged (opened for writing, not written).
                    continue;
                }
                changes.insert(
                    path.clone(),
                    FileChange {
                        path: path.clone(),
                        change: "modified",
                        kind: nb.kind,
                        size_before: (lkind != "dir").then_some(meta.len()),
                        size_after: (nb.kind != "dir").then_some(nb.size),
                        what,
                        diff,
                    },
                );
            }
        }
    }
    // Gone from the upper layer.
    for (path, na) in &la.nodes {
        if path == mount || lb.nodes.contains_key(path) {
            continue;
        }
        changes.insert(
            path.clone(),
            FileChange {
                path: path.clone(),
                change: "removed",
                kind: na.kind,
                size_before: (na.kind != "dir").then_some(na.size),
                size_after: None,
                what: Vec::new(),
                diff: None,
            },
        );
    }
    // Deleted from the lower layer: a new whiteout over a name A showed.
    for w in lb.whiteouts.difference(&la.whiteouts) {
        if changes.contains_key(w) || lb.nodes.contains_key(w) || hidden_by(&la.whiteouts, w) {
            continue;
        }
        let meta = lower_file(lower, w).map(|(m, _)| m);
        changes.insert(
            w.clone(),
            FileChange {
                path: w.clone(),
                change: "removed",
                kind: meta.as_ref().map_or("file", kind_of_meta),
                size_before: meta.as_ref().filter(|m| !m.is_dir()).map(|m| m.len()),
                size_after: None,
                what: Vec::new(),
                diff: None,
            },
        );
    }
    for (path, size) in dir_times {
        let below = format!("{path}/");
        if changes.keys().any(|k| k.starts_with(&below)) {
            continue;
        }
        changes.insert(
            path.clone(),
            FileChange {
                path,
                change: "modified",
                kind: "dir",
                size_before: None,
                size_after: None,
                what: vec![format!("times ({size} entries in the upper layer)")],
                diff: None,
            },
        );
    }
    out.extend(changes.into_values());
}

/// The default lower layer of a statefile's root: the host's root for a
/// `cryo do` sandbox (whose gofer serves `/`), none known for an OCI
/// container (its bundle's rootfs may have moved).
pub fn default_lower(h: &statefile::Header) -> Lower {
    if h.metadata.contains_key(crate::oci::identity::METADATA_KEY) {
        Lower(None)
    } else {
        Lower(Some(Path::new("/").to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_hide_their_subtrees_only() {
        let set: BTreeSet<String> = ["/etc/motd".to_string(), "/opt/d".to_string()].into();
        assert!(hidden_by(&set, "/etc/motd"));
        assert!(hidden_by(&set, "/opt/d/e/f"));
        assert!(!hidden_by(&set, "/etc/motd2"));
        assert!(!hidden_by(&set, "/opt"));
        assert!(!hidden_by(&set, "/"));
    }

    #[test]
    fn pages_merge_into_ranges() {
        let mut r = Vec::new();
        for a in [0x1000, 0x2000, 0x3000, 0x5000] {
            push_page(&mut r, a);
        }
        assert_eq!(r, vec![[0x1000, 0x4000], [0x5000, 0x6000]]);
    }

    #[test]
    fn environment_changes_by_variable() {
        let v = |s: &[&str]| -> Vec<Vec<u8>> { s.iter().map(|x| x.as_bytes().to_vec()).collect() };
        let mut out = Vec::new();
        compare_env(
            7,
            &v(&["A=1", "B=2", "C=x=y"]),
            &v(&["B=3", "C=x=y", "D="]),
            &mut out,
        );
        let got: Vec<(String, Option<String>, Option<String>)> = out
            .into_iter()
            .map(|e| (e.var, e.before, e.after))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A".into(), Some("1".into()), None),
                ("B".into(), Some("2".into()), Some("3".into())),
                ("D".into(), None, Some(String::new())),
            ]
        );
    }

    #[test]
    fn text_is_diffed_and_binary_is_not() {
        let d = unified("/tmp/t", b"a\nb\n", b"a\nc\n").expect("a text diff");
        assert!(d.starts_with("--- a/tmp/t\n+++ b/tmp/t\n"), "{d}");
        assert!(d.contains("-b\n+c\n"), "{d}");
        assert!(unified("/tmp/b", b"a\0b", b"a\0c").is_none());
        assert!(unified("/tmp/b", &[0xff, 0xfe], b"x").is_none());
    }
}
