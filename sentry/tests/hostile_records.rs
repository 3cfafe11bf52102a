//! Hostile records: each test takes the object table of a real checkpoint
//! (sentry/fuzz/seeds, from `cryo checkpoint` of ckpt_threads and
//! ckpt_counter), makes one field hostile, re-assembles a statefile whose
//! header, index and checksums are all valid, and asserts that restore's
//! validation refuses it naming the record, its id and the field. Also
//! here: the fuzz target's committed inputs (sentry/fuzz/regressions), run
//! as a plain test on stable, and bounds on what a hostile length may
//! make the loader allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use sentry::kernel::fd_table::{FdRecord, FdTableRecord};
use sentry::kernel::signal::SigInfo;
use sentry::kernel::task::TaskRecord;
use sentry::kernel::thread_group::ThreadGroupRecord;
use sentry::kernel::KernelRecord;
use sentry::mm::MmRecord;
use sentry::state::hostile::{restore_validate, run_case, CaseError, ObjectTable};
use sentry::state::validate::{InvalidRecord, LoadError, SavedKernel};
use statefile::StatefileError;

const THREADS: &[u8] = include_bytes!("../fuzz/seeds/threads.cryo");
const COUNTER: &[u8] = include_bytes!("../fuzz/seeds/counter.cryo");
/// wait_ckpt: epoll sets, a timerfd, an eventfd, a signalfd, a POSIX timer.
const WAITING: &[u8] = include_bytes!("../fuzz/seeds/waiting.cryo");

// ---------------------------------------------------------------------------
// Allocation accounting: the peak of heap bytes the current thread has
// live while a closure runs (per thread, so tests running beside it do not
// count).

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(by: usize) {
    // try_with: the thread's locals may be gone while it exits.
    let _ = LIVE.try_with(|l| {
        let live = l.get() + by as isize;
        l.set(live);
        let _ = PEAK.try_with(|p| p.set(p.get().max(live)));
    });
}

fn shrank(by: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - by as isize));
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counters are const-initialized thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to System.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `f`'s result and the most heap this thread had live during it beyond
/// what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - base).max(0) as usize)
}

// ---------------------------------------------------------------------------
// Helpers

fn seed(file: &[u8]) -> ObjectTable {
    ObjectTable::from_statefile(file).expect("a seed statefile")
}

fn validate(t: &ObjectTable) -> Result<SavedKernel, LoadError> {
    restore_validate(&t.to_statefile().expect("re-assembled"))
}

struct Ids {
    tgid: i32,
    tids: Vec<i32>,
    mm: u64,
    fd_table: u64,
}

fn ids(t: &ObjectTable) -> Ids {
    let k: KernelRecord = t.get(0).expect("kernel record");
    let tg: ThreadGroupRecord = t.get(k.thread_groups[0] as u64).expect("thread group");
    Ids {
        tgid: tg.tgid,
        tids: tg.tasks.clone(),
        mm: tg.mm,
        fd_table: tg.fd_table,
    }
}

/// The refusal, which must be an invalid record.
fn refusal(t: &ObjectTable) -> InvalidRecord {
    match validate(t) {
        Err(LoadError::Invalid(r)) => r,
        Err(other) => panic!("refused, but not as an invalid record: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

/// Asserts the refusal names `record` #`id`, `field`, and (in its reason)
/// `why`; the message shows all of them.
fn assert_refused(t: &ObjectTable, record: &str, id: u64, field: &str, why: &str) {
    let r = refusal(t);
    assert_eq!(
        (r.record, r.id, r.field.as_ref()),
        (record, id, field),
        "wrong record or field: {r}"
    );
    assert!(r.why.contains(why), "reason should say {why:?}: {r}");
    let shown = LoadError::Invalid(r.clone()).to_string();
    assert!(
        shown.contains(&format!("{record} #{id}")) && shown.contains(field),
        "{shown}"
    );
}

fn edit_kernel(t: &mut ObjectTable, f: impl FnOnce(&mut KernelRecord)) {
    t.edit::<KernelRecord>(0, f).expect("kernel record");
}

fn edit_group(t: &mut ObjectTable, f: impl FnOnce(&mut ThreadGroupRecord)) {
    let tgid = ids(t).tgid as u64;
    t.edit::<ThreadGroupRecord>(tgid, f).expect("thread group");
}

fn edit_task(t: &mut ObjectTable, tid: i32, f: impl FnOnce(&mut TaskRecord)) {
    t.edit::<TaskRecord>(tid as u64, f).expect("task record");
}

/// The second task of the two-thread seed.
fn second(t: &ObjectTable) -> i32 {
    let tids = ids(t).tids;
    assert_eq!(tids.len(), 2, "the threads seed holds two tasks");
    tids[1]
}

// ---------------------------------------------------------------------------
// The seeds themselves are accepted.

#[test]
fn seeds_validate() {
    for (name, file) in [
        ("threads", THREADS),
        ("counter", COUNTER),
        ("waiting", WAITING),
    ] {
        let k = restore_validate(file).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert!(k.tasks().next().is_some(), "{name}");
    }
    assert_eq!(restore_validate(THREADS).unwrap().tasks().count(), 2);
}

// ---------------------------------------------------------------------------
// Tids and their allocation

#[test]
fn next_tid_at_i32_max_or_negative_is_refused() {
    for bad in [i64::from(i32::MAX), -1, i64::MIN, 0] {
        let mut t = seed(THREADS);
        edit_kernel(&mut t, |k| k.next_tid = bad);
        assert_refused(&t, "kernel.Kernel", 0, "next_tid", "outside");
    }
}

#[test]
fn duplicate_tids_in_a_thread_group_are_refused() {
    let mut t = seed(THREADS);
    let i = ids(&t);
    edit_group(&mut t, |g| g.tasks = vec![i.tgid, i.tgid]);
    assert_refused(
        &t,
        "kernel.ThreadGroup",
        i.tgid as u64,
        "tasks",
        "appears twice",
    );
}

#[test]
fn a_task_whose_tgid_is_not_its_group_is_refused() {
    let mut t = seed(THREADS);
    let tid = second(&t);
    edit_task(&mut t, tid, |r| r.tgid += 7);
    assert_refused(
        &t,
        "kernel.Task",
        tid as u64,
        "tgid",
        "not its thread group",
    );
}

#[test]
fn a_tid_outside_the_pid_range_is_refused() {
    for bad in [4_194_305, 0, -5, i32::MAX] {
        let mut t = seed(THREADS);
        let i = ids(&t);
        edit_group(&mut t, |g| g.tasks[1] = bad);
        assert_refused(
            &t,
            "kernel.ThreadGroup",
            i.tgid as u64,
            "tasks",
            "outside 1..=4194304",
        );
    }
}

// ---------------------------------------------------------------------------
// Clocks

#[test]
fn monotonic_at_save_extremes_are_refused() {
    for bad in [i64::MIN, i64::MAX, -1, (1 << 62) + 1] {
        let mut t = seed(THREADS);
        edit_kernel(&mut t, |k| k.clocks.monotonic_at_save = bad);
        assert_refused(
            &t,
            "kernel.Kernel",
            0,
            "clocks.monotonic_at_save",
            "out of range",
        );
    }
}

#[test]
fn a_restart_deadline_out_of_range_is_refused() {
    let mut t = seed(THREADS);
    let tid = second(&t);
    edit_task(&mut t, tid, |r| {
        r.restart = Some((i64::MAX, sentry::kernel::time::ClockId::Monotonic))
    });
    assert_refused(&t, "kernel.Task", tid as u64, "restart", "deadline");
}

// ---------------------------------------------------------------------------
// The address space

fn edit_mm(t: &mut ObjectTable, f: impl FnOnce(&mut MmRecord)) {
    let mm = ids(t).mm;
    t.edit::<MmRecord>(mm, f).expect("mm record");
}

#[test]
fn overlapping_vmas_are_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let v = &mut m.mm.vmas;
        assert!(v.len() >= 2);
        v[1].start = v[0].start;
    });
    let mm = ids(&t).mm;
    assert_refused(&t, "mm.MemoryManager", mm, "mm.vmas", "overlaps");
}

#[test]
fn an_unaligned_vma_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| m.mm.vmas[0].end += 1);
    let mm = ids(&t).mm;
    assert_refused(&t, "mm.MemoryManager", mm, "mm.vmas", "not page-aligned");
}

#[test]
fn a_vma_beyond_the_va_bits_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let last = m.mm.vmas.last_mut().expect("a vma");
        last.end = 1 << 48;
    });
    let mm = ids(&t).mm;
    assert_refused(&t, "mm.MemoryManager", mm, "mm.vmas", "47-bit");
}

// The backing map (mm record v2): address range -> memory-file offset.

#[test]
fn a_backing_run_outside_allocated_memory_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| m.mm.backing[0].mf_offset = 1 << 39);
    let mm = ids(&t).mm;
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "mm.backing",
        "not in the memory file",
    );
}

#[test]
fn a_page_backing_two_addresses_of_one_mm_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        assert!(m.mm.backing.len() >= 2, "a seed with two backing runs");
        m.mm.backing[1].mf_offset = m.mm.backing[0].mf_offset;
    });
    let mm = ids(&t).mm;
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "mm.backing",
        "used twice in one address space",
    );
}

#[test]
fn a_mapping_without_backing_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let b = m.mm.backing.last_mut().expect("a backing run");
        b.end -= 4096;
        if b.end == b.start {
            m.mm.backing.pop();
        }
    });
    let mm = ids(&t).mm;
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "mm.backing",
        "does not cover exactly the mappings",
    );
}

#[test]
fn a_backing_run_where_nothing_is_mapped_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let offset = m.mm.backing[0].mf_offset;
        m.mm.backing.insert(
            0,
            sentry::mm::BackingState {
                start: 0x10000,
                end: 0x11000,
                mf_offset: offset,
            },
        );
        // Its own page, so only the coverage is wrong.
        m.mm.backing[1].mf_offset += 4096;
        m.mm.backing[1].start += 4096;
    });
    let mm = ids(&t).mm;
    let r = refusal(&t);
    assert_eq!(
        (r.record, r.id, r.field.as_ref()),
        ("mm.MemoryManager", mm, "mm.backing"),
        "{r}"
    );
}

#[test]
fn overlapping_backing_runs_are_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        assert!(m.mm.backing.len() >= 2, "a seed with two backing runs");
        m.mm.backing[1].start = m.mm.backing[0].start;
    });
    let mm = ids(&t).mm;
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "mm.backing",
        "overlaps or is out of order",
    );
}

#[test]
fn a_memory_offset_on_a_backed_mapping_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let v = m.mm.vmas.iter_mut().find(|v| !v.direct).expect("a vma");
        v.mf_offset = 4096;
    });
    let mm = ids(&t).mm;
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "mm.vmas",
        "memory offset on a mapping backed by the backing map",
    );
}

#[test]
fn wipe_on_fork_on_a_file_mapping_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let v =
            m.mm.vmas
                .iter_mut()
                .find(|v| v.file.is_some())
                .expect("a file vma");
        v.wipeonfork = true;
    });
    let mm = ids(&t).mm;
    assert_refused(&t, "mm.MemoryManager", mm, "mm.vmas", "wipe-on-fork");
}

#[test]
fn fork_advice_survives_the_record() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let v =
            m.mm.vmas
                .iter_mut()
                .find(|v| v.file.is_none())
                .expect("an anonymous vma");
        v.dontfork = true;
        v.wipeonfork = true;
    });
    let saved = validate(&t).expect("fork advice on anonymous memory is valid");
    assert!(saved
        .mms
        .values()
        .flat_map(|m| m.mm.vmas.iter())
        .any(|v| v.dontfork && v.wipeonfork));
}

// Mappings of files with no name (mm record v4) name saved open files.

/// The start of the seed's first file mapping.
fn a_file_vma(m: &MmRecord) -> u64 {
    m.mm.vmas
        .iter()
        .find(|v| v.file.is_some())
        .expect("a file vma")
        .start
}

#[test]
fn a_mapping_naming_no_saved_open_file_is_refused() {
    let mut t = seed(THREADS);
    edit_mm(&mut t, |m| {
        let start = a_file_vma(m);
        m.unnamed.push(sentry::mm::UnnamedMappingRecord {
            start,
            open_file: 9999,
        });
    });
    let mm = ids(&t).mm;
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "unnamed.open_file",
        "open file #9999, which is not saved",
    );
}

#[test]
fn a_mapping_naming_an_open_file_with_a_name_is_refused() {
    let mut t = seed(THREADS);
    let i = ids(&t);
    let fds: FdTableRecord = t.get(i.fd_table).expect("fd table");
    let file = fds.fds[0].file;
    edit_mm(&mut t, |m| {
        let start = a_file_vma(m);
        m.unnamed.push(sentry::mm::UnnamedMappingRecord {
            start,
            open_file: file,
        });
    });
    assert_refused(
        &t,
        "mm.MemoryManager",
        i.mm,
        "unnamed.open_file",
        "not a file with no name",
    );
}

#[test]
fn an_unnamed_mapping_where_no_file_is_mapped_is_refused() {
    let mut t = seed(THREADS);
    let i = ids(&t);
    let fds: FdTableRecord = t.get(i.fd_table).expect("fd table");
    let file = fds.fds[0].file;
    edit_mm(&mut t, |m| {
        let anon =
            m.mm.vmas
                .iter()
                .find(|v| v.file.is_none())
                .expect("an anonymous vma")
                .start;
        let start = a_file_vma(m);
        m.unnamed.push(sentry::mm::UnnamedMappingRecord {
            start: anon,
            open_file: file,
        });
        m.unnamed.push(sentry::mm::UnnamedMappingRecord {
            start: start + 1,
            open_file: file,
        });
    });
    assert_refused(
        &t,
        "mm.MemoryManager",
        i.mm,
        "unnamed.start",
        "maps no file",
    );
    edit_mm(&mut t, |m| {
        m.unnamed.remove(0);
    });
    assert_refused(
        &t,
        "mm.MemoryManager",
        i.mm,
        "unnamed.start",
        "no mapping starts there",
    );
    edit_mm(&mut t, |m| {
        let start = a_file_vma(m);
        m.unnamed[0].start = start;
        m.unnamed.push(m.unnamed[0]);
    });
    assert_refused(
        &t,
        "mm.MemoryManager",
        i.mm,
        "unnamed.start",
        "listed twice",
    );
}

// ---------------------------------------------------------------------------
// Descriptors

#[test]
fn an_fd_beyond_rlimit_nofile_is_refused() {
    let mut t = seed(THREADS);
    let i = ids(&t);
    let tg: ThreadGroupRecord = t.get(i.tgid as u64).unwrap();
    let nofile = tg.limits.get(libc::RLIMIT_NOFILE).unwrap().cur as i32;
    t.edit::<FdTableRecord>(i.fd_table, |f| f.fds[0].fd = nofile)
        .unwrap();
    assert_refused(&t, "kernel.FdTable", i.fd_table, "fds", "RLIMIT_NOFILE");
}

#[test]
fn a_descriptor_naming_a_missing_open_file_is_refused() {
    let mut t = seed(THREADS);
    let i = ids(&t);
    t.edit::<FdTableRecord>(i.fd_table, |f| {
        f.fds.push(FdRecord {
            fd: 77,
            cloexec: false,
            file: 9999,
        })
    })
    .unwrap();
    assert_refused(&t, "kernel.FdTable", i.fd_table, "fds", "9999");
}

#[test]
fn an_open_file_with_a_bad_signal_owner_is_refused() {
    use sentry::vfs::fasync::FileOwner;
    let t = seed(THREADS);
    let i = ids(&t);
    let fds: FdTableRecord = t.get(i.fd_table).unwrap();
    let file = fds.fds[0].file;
    let owner = |kind, id| FileOwner {
        kind,
        id,
        uid: 0,
        euid: 0,
    };
    for (edit, needle) in [
        ((Some(owner(9, 1)), 0), "owner kind 9"),
        ((Some(owner(1, 0)), 0), "owner id 0"),
        ((Some(owner(2, i32::MAX)), 0), "owner id"),
        ((None, 65), "signal 65"),
    ] {
        let mut t = seed(THREADS);
        t.edit::<sentry::vfs::state::OpenFileState>(file, |f| {
            f.fasync.owner = edit.0;
            f.fasync.signo = edit.1;
        })
        .unwrap();
        assert_refused(&t, "vfs.OpenFile", file, "fasync", needle);
    }
}

/// A pidfd's pid: outside the pid range, or (not reaped) naming no saved
/// process, is refused by field; one of the saved process, or of a reaped
/// one whatever its pid, is accepted.
#[test]
fn a_pidfd_naming_no_process_is_refused() {
    use sentry::kernel::pidfd::PidFdRecord;
    use sentry::vfs::state::{FileStateKind, OpenFileState};
    let t = seed(THREADS);
    let i = ids(&t);
    let fds: FdTableRecord = t.get(i.fd_table).unwrap();
    let file = fds.fds[0].file;
    let with = |pid, reaped| {
        let mut t = seed(THREADS);
        t.edit::<OpenFileState>(file, |f| {
            f.path.clear();
            f.kind = FileStateKind::PidFd(PidFdRecord { pid, reaped });
        })
        .unwrap();
        t
    };
    for (pid, reaped, why) in [
        (0, false, "outside"),
        (-1, true, "outside"),
        (i32::MIN, false, "outside"),
        (i32::MAX, true, "outside"),
        (4242, false, "names no saved process"),
    ] {
        assert_refused(&with(pid, reaped), "vfs.OpenFile", file, "kind.pid", why);
    }
    for (pid, reaped) in [(i.tgid, false), (i.tgid, true), (4242, true)] {
        if let Err(e) = validate(&with(pid, reaped)) {
            panic!("pidfd of pid {pid} (reaped {reaped}) refused: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// Registers

fn assert_regs_refused(f: impl FnOnce(&mut TaskRecord), field: &str, reg: &str) {
    let mut t = seed(THREADS);
    let tid = second(&t);
    edit_task(&mut t, tid, f);
    let r = refusal(&t);
    assert_eq!(
        (r.record, r.id, r.field.as_ref()),
        ("kernel.Task", tid as u64, field),
        "{r}"
    );
    assert!(r.why.starts_with(reg), "the reason should name {reg}: {r}");
}

#[test]
fn a_kernel_code_segment_is_refused() {
    assert_regs_refused(|r| r.regs.cs = 0x10, "regs", "cs");
}

#[test]
fn a_null_stack_segment_is_refused() {
    assert_regs_refused(|r| r.regs.ss = 0, "regs", "ss");
}

#[test]
fn a_non_canonical_fs_base_is_refused() {
    assert_regs_refused(
        |r| r.regs.fs_base = 0x8000_0000_0000_0000,
        "regs",
        "fs_base",
    );
}

#[test]
fn a_non_canonical_rip_or_rsp_is_refused() {
    assert_regs_refused(|r| r.regs.rip = 0xffff_8000_0000_1000, "regs", "rip");
    assert_regs_refused(|r| r.regs.rsp = 1 << 47, "regs", "rsp");
}

#[test]
fn eflags_with_iopl_bits_are_refused() {
    assert_regs_refused(|r| r.regs.eflags |= 0x3000, "regs", "eflags");
}

#[test]
fn a_kernel_data_selector_is_refused() {
    assert_regs_refused(|r| r.regs.ds = 0x18, "regs", "ds");
}

#[test]
fn xsave_with_a_junk_header_is_refused() {
    assert_regs_refused(
        |r| r.fp.xsave[512 + 8..512 + 16].copy_from_slice(&u64::MAX.to_le_bytes()),
        "fp",
        "XSAVE header",
    );
    assert_regs_refused(|r| r.fp.xsave[560] = 0xaa, "fp", "XSAVE header");
    assert_regs_refused(
        |r| r.fp.xsave.truncate(100),
        "fp",
        "XSAVE area of 100 bytes",
    );
    assert_regs_refused(|r| r.fp.xsave.resize(1 << 17, 0), "fp", "XSAVE area of");
}

// ---------------------------------------------------------------------------
// Signals

#[test]
fn pending_signal_0_or_65_is_refused() {
    for signo in [0, 65, -1] {
        let mut t = seed(THREADS);
        let tid = second(&t);
        edit_task(&mut t, tid, |r| {
            r.pending.push(SigInfo {
                signo,
                code: 0,
                addr: 0,
                pid: 1,
                uid: 0,
            })
        });
        assert_refused(
            &t,
            "kernel.Task",
            tid as u64,
            "pending",
            &format!("signal number {signo}"),
        );
    }
}

/// The process's pending signals (kernel.ThreadGroup v4) are checked as a
/// thread's are: a bad number or more than a task may hold is refused by
/// field, a good one accepted.
#[test]
fn shared_pending_signal_0_or_65_or_too_many_is_refused() {
    let sig = |signo| SigInfo {
        signo,
        code: 0,
        addr: 0,
        pid: 1,
        uid: 0,
    };
    for signo in [0, 65, -1] {
        let mut t = seed(THREADS);
        edit_group(&mut t, |g| g.shared_pending.push(sig(signo)));
        let tgid = ids(&t).tgid as u64;
        assert_refused(
            &t,
            "kernel.ThreadGroup",
            tgid,
            "shared_pending",
            &format!("signal number {signo}"),
        );
    }
    let mut t = seed(THREADS);
    edit_group(&mut t, |g| g.shared_pending = vec![sig(40); 64 * 1024 + 1]);
    let tgid = ids(&t).tgid as u64;
    assert_refused(&t, "kernel.ThreadGroup", tgid, "shared_pending", "signals");
    let mut t = seed(THREADS);
    edit_group(&mut t, |g| g.shared_pending.push(sig(libc::SIGUSR1)));
    let k = validate(&t).expect("a process signal pending on the process is accepted");
    assert!(k.processes.iter().any(|p| p
        .record
        .shared_pending
        .iter()
        .any(|s| s.signo == libc::SIGUSR1)));
}

#[test]
fn an_fs_context_shared_with_no_owner_is_refused() {
    for owner in [-1, 99_999] {
        let mut t = seed(THREADS);
        edit_group(&mut t, |g| g.fs_shared_with = owner);
        let tgid = ids(&t).tgid as u64;
        assert_refused(
            &t,
            "kernel.ThreadGroup",
            tgid,
            "fs_shared_with",
            "names no other process",
        );
    }
    // Itself is no owner either.
    let mut t = seed(THREADS);
    let tgid = ids(&t).tgid;
    edit_group(&mut t, |g| g.fs_shared_with = tgid);
    assert_refused(
        &t,
        "kernel.ThreadGroup",
        tgid as u64,
        "fs_shared_with",
        "names no other process",
    );
}

#[test]
fn an_alternate_stack_beyond_user_space_is_refused() {
    let mut t = seed(THREADS);
    let tid = second(&t);
    edit_task(&mut t, tid, |r| r.alt_stack = (u64::MAX - 10, 0, 4096));
    assert_refused(&t, "kernel.Task", tid as u64, "alt_stack", "beyond");
}

// ---------------------------------------------------------------------------
// Paths

#[test]
fn a_path_with_a_nul_is_refused() {
    let mut t = seed(THREADS);
    let tgid = ids(&t).tgid as u64;
    edit_group(&mut t, |g| g.fs.cwd = b"/tmp\0/etc".to_vec());
    assert_refused(&t, "kernel.ThreadGroup", tgid, "fs.cwd", "NUL");
}

#[test]
fn a_path_longer_than_path_max_is_refused() {
    let mut t = seed(THREADS);
    let tgid = ids(&t).tgid as u64;
    edit_group(&mut t, |g| {
        let mut p = b"/".to_vec();
        p.extend(std::iter::repeat_n(b'a', 5000));
        g.fs.root = p;
    });
    assert_refused(&t, "kernel.ThreadGroup", tgid, "fs.root", "PATH_MAX");
}

// ---------------------------------------------------------------------------
// Lengths against the record's size

/// bincode 2's varint for `v` (standard config).
fn varint(v: u64) -> Vec<u8> {
    let mut enc = statefile::Encoder::new();
    enc.serde(&v).unwrap();
    enc.bytes().to_vec()
}

/// The thread group's payload with `argv`'s encoding (found by a marker)
/// replaced by `hostile`.
fn group_with_raw_argv(t: &mut ObjectTable, hostile: &[u8]) -> u64 {
    let marker = b"\xab\xcd\xef\x12\x34\x56\x78".to_vec();
    edit_group(t, |g| g.argv = vec![marker.clone()]);
    let tgid = ids(t).tgid as u64;
    let mut encoded = varint(1);
    encoded.extend(varint(marker.len() as u64));
    encoded.extend(&marker);
    let payload = t.payload_mut::<ThreadGroupRecord>(tgid).unwrap();
    let at = payload
        .windows(encoded.len())
        .position(|w| w == encoded)
        .expect("argv's encoding in the record");
    payload.splice(at..at + encoded.len(), hostile.iter().copied());
    tgid
}

#[test]
fn an_argv_claiming_2_pow_40_entries_is_refused_without_allocating() {
    let mut t = seed(THREADS);
    let mut hostile = varint(1 << 40);
    hostile.extend(varint(1));
    hostile.push(b'x');
    group_with_raw_argv(&mut t, &hostile);
    let file = t.to_statefile().unwrap();
    let started = Instant::now();
    let (result, peak) = peak_during(|| restore_validate(&file));
    let elapsed = started.elapsed();
    match result {
        Err(LoadError::Statefile(StatefileError::Decode { context, .. })) => {
            assert!(context.contains("ThreadGroupRecord"), "{context}")
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    eprintln!("bench: a 2^40-entry argv claim refused in {elapsed:?}");
    assert!(
        peak < 4 << 20,
        "decoding a {}-byte statefile had {peak} bytes live",
        file.len()
    );
}

#[test]
fn an_argv_element_claiming_half_a_gib_is_refused_before_allocating() {
    let mut t = seed(THREADS);
    let mut hostile = varint(1);
    hostile.extend(varint(1 << 29));
    hostile.extend(b"abc");
    group_with_raw_argv(&mut t, &hostile);
    let file = t.to_statefile().unwrap();
    let (result, peak) = peak_during(|| restore_validate(&file));
    assert!(
        matches!(
            result,
            Err(LoadError::Statefile(StatefileError::Decode { .. }))
        ),
        "{result:?}"
    );
    assert!(peak < 4 << 20, "{peak} bytes live");
}

#[test]
fn a_huge_exe_string_is_refused_before_allocating() {
    let mut t = seed(THREADS);
    let marker = "/marker/exe/path/0123456789";
    edit_group(&mut t, |g| g.exe = marker.into());
    let tgid = ids(&t).tgid as u64;
    let mut encoded = varint(marker.len() as u64);
    encoded.extend(marker.as_bytes());
    let payload = t.payload_mut::<ThreadGroupRecord>(tgid).unwrap();
    let at = payload
        .windows(encoded.len())
        .position(|w| w == encoded)
        .expect("exe's encoding");
    let mut hostile = varint(1 << 29);
    hostile.extend(marker.as_bytes());
    payload.splice(at..at + encoded.len(), hostile);
    let file = t.to_statefile().unwrap();
    let (result, peak) = peak_during(|| restore_validate(&file));
    assert!(result.is_err());
    assert!(peak < 4 << 20, "{peak} bytes live");
}

// ---------------------------------------------------------------------------
// The table itself

#[test]
fn a_record_nothing_refers_to_is_refused() {
    let mut t = seed(THREADS);
    let tid = second(&t);
    let task: TaskRecord = t.get(tid as u64).unwrap();
    t.push(4242, &TaskRecord { tid: 4242, ..task }).unwrap();
    match validate(&t) {
        Err(LoadError::Statefile(StatefileError::UnreferencedObject { type_name, id })) => {
            assert_eq!((type_name.as_str(), id), ("kernel.Task", 4242))
        }
        other => panic!("expected UnreferencedObject, got {other:?}"),
    }
}

#[test]
fn a_duplicate_type_and_id_is_refused() {
    let mut t = seed(THREADS);
    let tid = second(&t);
    let task: TaskRecord = t.get(tid as u64).unwrap();
    t.push(tid as u64, &task).unwrap();
    match validate(&t) {
        Err(LoadError::Statefile(StatefileError::DuplicateObject { type_name, id })) => {
            assert_eq!((type_name.as_str(), id), ("kernel.Task", tid as u64))
        }
        other => panic!("expected DuplicateObject, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The fuzz target's committed inputs (sentry/fuzz/regressions): the first
// byte picks the seed as in the fuzz target; none may panic or hold much
// memory. An input is a program of byte-level edits, so which
// field it breaks moves when the seeds are regenerated for a new record
// format: only the unmutated ones (`ok*`) must still be accepted; the
// typed tests above pin each field's refusal.

#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    // In the fuzz target's order (its first input byte picks the seed).
    let seeds = [seed(COUNTER), seed(THREADS), seed(WAITING)];
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no inputs in {}", dir.display());
    for path in entries {
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some((&pick, program)) = data.split_first() else {
            continue;
        };
        let (result, peak) = peak_during(|| run_case(&seeds[pick as usize % seeds.len()], program));
        assert!(peak < 64 << 20, "{name}: {peak} bytes live");
        match (&result, name.starts_with("ok")) {
            (Ok(_), _) | (Err(CaseError::Load(_)), false) => {}
            (Err(CaseError::Assemble(e)), _) => panic!("{name}: harness: {e}"),
            (Err(e), true) => panic!("{name}: refused: {e}"),
        }
    }
}

#[test]
fn a_mapping_of_a_file_that_was_not_saved_is_refused() {
    // The counter seed maps its executable: rename the mapping's file.
    let mut t = seed(COUNTER);
    let mm = ids(&t).mm;
    let mut renamed = false;
    edit_mm(&mut t, |m| {
        if let Some(f) = m.mm.vmas.iter_mut().find_map(|v| v.file.as_mut()) {
            f.name = "/not/saved".into();
            renamed = true;
        }
    });
    assert!(renamed, "the counter seed has a file mapping");
    assert_refused(
        &t,
        "mm.MemoryManager",
        mm,
        "mm.vmas",
        "not among the saved files",
    );
}

#[test]
fn too_many_supplementary_groups_are_refused() {
    let mut t = seed(THREADS);
    let tid = second(&t);
    edit_task(&mut t, tid, |r| r.creds.groups = vec![0; 65537]);
    assert_refused(&t, "kernel.Task", tid as u64, "creds.groups", "65537");
}

/// Capability sets Linux could never hold (an effective capability that
/// is not permitted, an ambient one not inheritable, an unknown bit) and
/// unknown securebits are refused, naming the field.
#[test]
fn impossible_capability_sets_are_refused() {
    let cases: [fn(&mut TaskRecord); 4] = [
        |r| {
            r.creds.caps.permitted = 0;
            r.creds.caps.effective = 1;
        },
        |r| {
            r.creds.caps.inheritable = 0;
            r.creds.caps.ambient = 1 << 10;
        },
        |r| r.creds.caps.bounding = 1 << 63,
        |r| r.creds.caps.effective = u64::MAX,
    ];
    for edit in cases {
        let mut t = seed(THREADS);
        let tid = second(&t);
        edit_task(&mut t, tid, edit);
        assert_refused(&t, "kernel.Task", tid as u64, "creds.caps", "cannot hold");
    }
    let mut t = seed(THREADS);
    let tid = second(&t);
    edit_task(&mut t, tid, |r| r.creds.securebits = 1 << 20);
    assert_refused(&t, "kernel.Task", tid as u64, "creds.securebits", "unknown");
}

/// A memory limit below a page is refused; a real one is accepted.
#[test]
fn a_memory_limit_below_a_page_is_refused() {
    let mut t = seed(THREADS);
    edit_kernel(&mut t, |k| k.memory_limit = Some(100));
    assert_refused(&t, "kernel.Kernel", 0, "memory_limit", "less than a page");
    let mut t = seed(THREADS);
    edit_kernel(&mut t, |k| k.memory_limit = Some(64 << 20));
    assert!(validate(&t).is_ok());
}

#[test]
fn a_pipe_no_open_file_refers_to_is_refused() {
    let mut t = seed(THREADS);
    t.push(
        31,
        &sentry::vfs::state::PipeSnapshot {
            id: 31,
            data: b"left over".to_vec(),
        },
    )
    .unwrap();
    match validate(&t) {
        Err(LoadError::Statefile(StatefileError::UnreferencedObject { type_name, id })) => {
            assert_eq!((type_name.as_str(), id), ("vfs.Pipe", 31))
        }
        other => panic!("expected UnreferencedObject, got {other:?}"),
    }
}

/// What a fuzz corpus reaches: every input of `$FUZZ_CORPUS` (default
/// sentry/fuzz/corpus/restore_records) replayed, its outcome tallied by
/// refusal kind, record and field. With `FUZZ_PROMOTE=1` the smallest
/// input of each outcome is copied into sentry/fuzz/regressions (named by
/// its outcome, `ok` for an accepted one), where `fuzz_regressions_replay`
/// runs it on stable. For the fuzzing report; ignored.
#[test]
#[ignore = "reads a local fuzz corpus; run on purpose"]
fn corpus_outcomes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("FUZZ_CORPUS").map_or_else(
        || root.join("fuzz/corpus/restore_records"),
        std::path::PathBuf::from,
    );
    // In the fuzz target's order (its first input byte picks the seed).
    let seeds = [seed(COUNTER), seed(THREADS), seed(WAITING)];
    let mut tally = std::collections::BTreeMap::<String, (usize, Vec<u8>)>::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        // A running fuzzer replaces inputs as it reduces them.
        let Ok(data) = e.and_then(|e| std::fs::read(e.path())) else {
            continue;
        };
        let Some((&pick, program)) = data.split_first() else {
            continue;
        };
        n += 1;
        let key = match run_case(&seeds[pick as usize % seeds.len()], program) {
            Ok(_) => "ok".to_string(),
            Err(CaseError::Load(LoadError::Invalid(r))) => {
                format!("invalid-{}-{}", r.record, r.field)
            }
            Err(CaseError::Load(LoadError::Statefile(s))) => format!("statefile-{}", s.kind()),
            Err(CaseError::Load(e)) => format!("load-{e}"),
            Err(e) => format!("harness-{e}"),
        };
        let slot = tally.entry(key).or_insert((0, data.clone()));
        slot.0 += 1;
        if data.len() < slot.1.len() {
            slot.1 = data;
        }
    }
    eprintln!("{n} inputs from {}", dir.display());
    let promote = std::env::var_os("FUZZ_PROMOTE").is_some();
    for (k, (count, smallest)) in &tally {
        eprintln!("{count:6} {k}");
        if promote {
            let name: String = k
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            std::fs::write(root.join("fuzz/regressions").join(name), smallest).unwrap();
        }
    }
}

#[test]
fn an_open_pipe_end_naming_a_missing_pipe_is_refused() {
    use sentry::vfs::state::{FileStateKind, OpenFileState};
    let mut t = seed(THREADS);
    let i = ids(&t);
    let fds: FdTableRecord = t.get(i.fd_table).unwrap();
    let end = fds
        .fds
        .iter()
        .map(|e| e.file)
        .find(|&id| {
            let f: OpenFileState = t.get(id).unwrap();
            matches!(f.kind, FileStateKind::PipeRead { .. })
        })
        .expect("the threads seed holds a pipe's read end");
    t.edit::<OpenFileState>(end, |f| f.kind = FileStateKind::PipeRead { pipe: 999 })
        .unwrap();
    assert_refused(&t, "vfs.OpenFile", end, "kind", "pipe #999");
}

#[test]
fn a_pipe_holding_more_than_pipe_max_size_is_refused() {
    use sentry::vfs::state::PipeSnapshot;
    let mut t = seed(THREADS);
    let pipe = t
        .entries
        .iter()
        .find(|e| e.type_name == "vfs.Pipe")
        .map(|e| e.id)
        .expect("the threads seed holds a pipe");
    t.edit::<PipeSnapshot>(pipe, |p| p.data = vec![7; (1 << 20) + 1])
        .unwrap();
    assert_refused(&t, "vfs.Pipe", pipe, "data", "1048577 bytes");
}

#[test]
fn an_xsave_area_too_short_for_its_components_is_refused() {
    // AVX's state (component 2) claimed present, the area cut at its start.
    let avx = std::arch::x86_64::__cpuid_count(0xd, 2);
    if avx.eax == 0 {
        println!("SKIPPED: this CPU has no AVX state component");
        return;
    }
    assert_regs_refused(
        |r| {
            r.fp.xsave.truncate(avx.ebx as usize);
            r.fp.xsave[512] |= 0b100;
        },
        "fp",
        "XSAVE area of 576 bytes cannot hold component 2",
    );
}

#[test]
fn an_mxcsr_with_reserved_bits_is_refused_whatever_its_saved_mask() {
    assert_regs_refused(
        |r| {
            r.fp.xsave[24..28].copy_from_slice(&0x0001_1f80u32.to_le_bytes());
            r.fp.xsave[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        },
        "fp",
        "MXCSR",
    );
}

// ---------------------------------------------------------------------------
// Many records judged whole. How long judging takes grows with their
// number (n log n, not n^2): tests/bench/validate.sh measures it from the
// "bench:" lines these print, since timings are not tests.

#[test]
fn many_mappings_over_many_memory_ranges_are_judged_whole() {
    use sentry::mm::{FileRange, MemoryFileRecord};
    const N: u64 = 100_000;
    let mut t = seed(THREADS);
    let mm = ids(&t).mm;
    let m: MmRecord = t.get(mm).unwrap();
    let template =
        m.mm.vmas
            .iter()
            .find(|v| v.file.is_none())
            .cloned()
            .expect("an anonymous mapping");
    // Every other memory-file page allocated; one one-page mapping of each.
    t.edit::<MemoryFileRecord>(0, |r| {
        r.ranges = (0..N)
            .map(|i| FileRange {
                start: 2 * i * 4096,
                end: (2 * i + 1) * 4096,
            })
            .collect()
    })
    .unwrap();
    let base = 1u64 << 32;
    t.edit::<MmRecord>(mm, |r| {
        r.files.clear();
        r.mm.vmas = (0..N)
            .map(|i| {
                let mut v = template.clone();
                v.start = base + 2 * i * 4096;
                v.end = v.start + 4096;
                v
            })
            .collect();
        r.mm.backing = (0..N)
            .map(|i| sentry::mm::BackingState {
                start: base + 2 * i * 4096,
                end: base + (2 * i + 1) * 4096,
                mf_offset: 2 * i * 4096,
            })
            .collect();
        r.mm.highest_address = base + 2 * N * 4096;
    })
    .unwrap();
    let file = t.to_statefile().unwrap();
    let started = Instant::now();
    let result = restore_validate(&file);
    let took = started.elapsed();
    // Judged whole (no refusal of the layout itself), and fast.
    if let Err(e) = &result {
        assert!(
            !matches!(e, LoadError::Invalid(r) if r.record == "mm.MemoryManager"),
            "{e}"
        );
    }
    // How long is for tests/bench/validate.sh, not for a test.
    eprintln!("bench: {N} mappings judged in {took:?}");
}

#[test]
fn many_pipes_are_accepted() {
    use sentry::kernel::limits::Limit;
    use sentry::vfs::state::{FileStateKind, OpenFileState, PipeSnapshot};
    const N: u64 = 60_000;
    let mut t = seed(THREADS);
    let i = ids(&t);
    edit_group(&mut t, |g| {
        g.limits
            .set(
                libc::RLIMIT_NOFILE,
                Limit {
                    cur: 1 << 20,
                    max: 1 << 20,
                },
            )
            .unwrap();
    });
    let mut fds: FdTableRecord = t.get(i.fd_table).unwrap();
    for k in 0..N {
        let (pipe, file) = (1_000_000 + k, 2_000_000 + k);
        t.push(
            pipe,
            &PipeSnapshot {
                id: pipe,
                data: vec![],
            },
        )
        .unwrap();
        t.push(
            file,
            &OpenFileState {
                path: vec![],
                flags: 0,
                offset: 0,
                kind: FileStateKind::PipeRead { pipe },
                fingerprint: None,
                fasync: Default::default(),
            },
        )
        .unwrap();
        fds.fds.push(FdRecord {
            fd: 1000 + k as i32,
            cloexec: false,
            file,
        });
    }
    t.edit::<FdTableRecord>(i.fd_table, |f| *f = fds).unwrap();
    let file = t.to_statefile().unwrap();
    let started = Instant::now();
    let result = restore_validate(&file);
    let took = started.elapsed();
    result.unwrap_or_else(|e| panic!("{N} pipes refused: {e}"));
    eprintln!("bench: {N} pipes judged in {took:?}");
}

/// A stable-toolchain smoke run of the fuzz target: 1,000 pseudo-random
/// mutation programs (fixed seed) over both seeds; none may panic, and the
/// refusals must be of several kinds (the programs reach the validators,
/// not only the decoder).
#[test]
fn pseudo_random_programs_never_panic() {
    // In the fuzz target's order (its first input byte picks the seed).
    let seeds = [seed(COUNTER), seed(THREADS), seed(WAITING)];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut fields = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for case in 0..1000 {
        let len = (next() % 48) as usize;
        let program: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match run_case(&seeds[case % seeds.len()], &program) {
            Ok(_) => accepted += 1,
            Err(CaseError::Load(LoadError::Invalid(r))) => {
                fields.insert(format!("{}.{}", r.record, r.field));
            }
            Err(CaseError::Load(_)) => {}
            Err(CaseError::Assemble(e)) => panic!("case {case}: harness: {e}"),
        }
    }
    eprintln!("{accepted} accepted; invalid fields reached: {fields:?}");
    assert!(fields.len() >= 8, "only {fields:?} reached");
}

// ---------------------------------------------------------------------------
// The tmpfs tables of the namespace record (the threads seed's upper layer
// holds /tmp/ckpt_threads.txt, one page): judged with the records, before
// any memory is loaded, and named by table, node and field.

use sentry::vfs::state::{TmpfsDirEntry, TmpfsNodeKind, TmpfsNodeRecord, TmpfsPage, VfsState};

fn edit_vfs(t: &mut ObjectTable, f: impl FnOnce(&mut VfsState)) {
    t.edit::<VfsState>(0, f).expect("namespace record");
}

/// The index in `nodes` of the upper layer's node named `name` somewhere.
fn upper_node(t: &ObjectTable, name: &[u8]) -> usize {
    let v: VfsState = t.get(0).unwrap();
    let ino = v
        .upper
        .nodes
        .iter()
        .find_map(|n| match &n.kind {
            TmpfsNodeKind::Dir { entries, .. } => {
                entries.iter().find(|e| e.name == name).map(|e| e.ino)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("the threads seed has no {:?}", name));
    v.upper.nodes.iter().position(|n| n.ino == ino).unwrap()
}

fn entries_mut(n: &mut TmpfsNodeRecord) -> &mut Vec<TmpfsDirEntry> {
    match &mut n.kind {
        TmpfsNodeKind::Dir { entries, .. } => entries,
        _ => panic!("not a directory"),
    }
}

fn pages_mut(n: &mut TmpfsNodeRecord) -> &mut Vec<TmpfsPage> {
    match &mut n.kind {
        TmpfsNodeKind::File { pages, .. } => pages,
        _ => panic!("not a file"),
    }
}

/// The seed's tmpfs file, its directory and its page's offset.
fn tmpfs_file(t: &ObjectTable) -> (usize, usize, u64) {
    let (file, dir) = (upper_node(t, b"ckpt_threads.txt"), upper_node(t, b"tmp"));
    let mut v: VfsState = t.get(0).unwrap();
    let offset = pages_mut(&mut v.upper.nodes[file])[0].offset;
    (file, dir, offset)
}

/// A new one-page file named `name` in directory node `dir`.
fn add_file(v: &mut VfsState, dir: usize, name: &[u8], ino: u64, offset: u64) {
    let template = v.upper.nodes[dir].clone();
    v.upper.nodes.push(TmpfsNodeRecord {
        ino,
        nlink: 1,
        mode: libc::S_IFREG | 0o644,
        kind: TmpfsNodeKind::File {
            size: 1,
            pages: vec![TmpfsPage { index: 0, offset }],
        },
        ..template
    });
    entries_mut(&mut v.upper.nodes[dir]).push(TmpfsDirEntry {
        name: name.to_vec(),
        ino,
    });
}

#[test]
fn the_seed_tmpfs_file_is_accepted_and_kept() {
    let t = seed(THREADS);
    let (file, _, offset) = tmpfs_file(&t);
    let k = validate(&t).unwrap();
    let TmpfsNodeKind::File { pages, .. } = &k.vfs.upper.nodes[file].kind else {
        panic!("not a file")
    };
    assert_eq!(pages[0].offset, offset);
}

#[test]
fn a_tmpfs_page_outside_the_memory_ranges_is_refused() {
    use sentry::mm::MemoryFileRecord;
    let t0 = seed(THREADS);
    let (file, _, _) = tmpfs_file(&t0);
    let memory: MemoryFileRecord = t0.get(0).unwrap();
    // Just past the first range, in the gap before the second, and far out.
    let gap = memory.ranges[0].end;
    assert!(memory.ranges.get(1).is_none_or(|r| r.start > gap));
    for bad in [gap, 1 << 40, u64::MAX - 4095] {
        let mut t = seed(THREADS);
        edit_vfs(&mut t, |v| {
            pages_mut(&mut v.upper.nodes[file])[0].offset = bad
        });
        assert_refused(
            &t,
            "vfs.MountNamespace",
            0,
            &format!("upper.nodes[{file}].pages[0].offset"),
            "not inside the restored memory",
        );
    }
}

#[test]
fn an_unaligned_tmpfs_page_is_refused() {
    let mut t = seed(THREADS);
    let (file, _, _) = tmpfs_file(&t);
    edit_vfs(&mut t, |v| {
        pages_mut(&mut v.upper.nodes[file])[0].offset += 512
    });
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        &format!("upper.nodes[{file}].pages[0].offset"),
        "page-aligned",
    );
}

#[test]
fn a_tmpfs_page_used_twice_is_refused() {
    // By a second file of the same table.
    let mut t = seed(THREADS);
    let (_, dir, offset) = tmpfs_file(&t);
    edit_vfs(&mut t, |v| add_file(v, dir, b"twin", 900, offset));
    let v: VfsState = t.get(0).unwrap();
    let twin = v.upper.nodes.len() - 1;
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        &format!("upper.nodes[{twin}].pages[0].offset"),
        "used twice",
    );
    // By a file of /dev/shm: both tables share the memory file.
    let mut t = seed(THREADS);
    edit_vfs(&mut t, |v| {
        let root = v.shm.nodes[0].clone();
        v.shm.nodes.push(TmpfsNodeRecord {
            ino: 50,
            nlink: 1,
            mode: libc::S_IFREG | 0o600,
            kind: TmpfsNodeKind::File {
                size: 4096,
                pages: vec![TmpfsPage { index: 0, offset }],
            },
            ..root
        });
        entries_mut(&mut v.shm.nodes[0]).push(TmpfsDirEntry {
            name: b"seg".to_vec(),
            ino: 50,
        });
    });
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        "shm.nodes[1].pages[0].offset",
        "used twice",
    );
}

#[test]
fn a_tmpfs_page_inside_a_mappings_own_memory_is_refused() {
    let mut t = seed(THREADS);
    let (file, _, _) = tmpfs_file(&t);
    let m: MmRecord = t.get(ids(&t).mm).unwrap();
    let (i, v) =
        m.mm.vmas
            .iter()
            .enumerate()
            .find(|(_, v)| !v.direct && v.end - v.start >= 2 * 4096)
            .expect("a mapping of two pages");
    let b =
        m.mm.backing
            .iter()
            .find(|b| b.start < v.end && v.end <= b.end)
            .expect("the mapping's last page is backed");
    // Its last page, so a check of the first page alone would miss it.
    let last = b.mf_offset + (v.end - b.start) - 4096;
    edit_vfs(&mut t, |s| {
        pages_mut(&mut s.upper.nodes[file])[0].offset = last
    });
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        &format!("upper.nodes[{file}].pages[0].offset"),
        &format!("mapping {i}'s own memory"),
    );
}

#[test]
fn a_tmpfs_page_a_direct_mapping_maps_is_accepted() {
    // A shared mapping of a tmpfs file maps the file's own pages.
    let mut t = seed(THREADS);
    let (file, _, offset) = tmpfs_file(&t);
    let mm = ids(&t).mm;
    t.edit::<MmRecord>(mm, |m| {
        let template = m.mm.vmas.iter().find(|v| v.file.is_some()).unwrap().clone();
        let mut v = template;
        v.start = 0x1000_0000;
        v.end = v.start + 4096;
        v.mf_offset = offset;
        v.shared = true;
        v.direct = true;
        if let Some(f) = v.file.as_mut() {
            f.name = "/tmp/ckpt_threads.txt".into();
            f.offset = 0;
        }
        let at = m.mm.vmas.partition_point(|x| x.start < v.start);
        m.mm.vmas.insert(at, v);
        m.files.push(sentry::mm::MappedFileRecord {
            path: "/tmp/ckpt_threads.txt".into(),
            writable: true,
            fingerprint: None,
        });
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
    })
    .unwrap();
    validate(&t).unwrap_or_else(|e| panic!("a direct mapping of a tmpfs page: {e}"));
    // The same mapping not direct owns that memory: refused.
    t.edit::<MmRecord>(mm, |m| {
        for v in m.mm.vmas.iter_mut().filter(|v| v.direct) {
            let run = sentry::mm::BackingState {
                start: v.start,
                end: v.end,
                mf_offset: v.mf_offset,
            };
            v.direct = false;
            v.mf_offset = 0;
            let at = m.mm.backing.partition_point(|b| b.start < run.start);
            m.mm.backing.insert(at, run);
        }
    })
    .unwrap();
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        &format!("upper.nodes[{file}].pages[0].offset"),
        "own memory",
    );
}

#[test]
fn a_tmpfs_directory_cycle_is_refused() {
    // Out of the root's reach: /tmp taken out of the root and given a
    // subdirectory naming it back.
    let mut t = seed(THREADS);
    let (_, dir, _) = tmpfs_file(&t);
    edit_vfs(&mut t, |v| {
        let tmp = v.upper.nodes[dir].ino;
        entries_mut(&mut v.upper.nodes[0]).retain(|e| e.ino != tmp);
        let template = v.upper.nodes[dir].clone();
        v.upper.nodes.push(TmpfsNodeRecord {
            ino: 901,
            nlink: 1,
            kind: TmpfsNodeKind::Dir {
                entries: vec![TmpfsDirEntry {
                    name: b"back".to_vec(),
                    ino: tmp,
                }],
                whiteouts: vec![],
                opaque: false,
            },
            ..template
        });
        entries_mut(&mut v.upper.nodes[dir]).push(TmpfsDirEntry {
            name: b"loop".to_vec(),
            ino: 901,
        });
    });
    let r = refusal(&t);
    assert_eq!(r.record, "vfs.MountNamespace", "{r}");
    assert!(
        r.field.starts_with("upper.nodes[") && r.field.ends_with(']'),
        "{r}"
    );
    assert!(r.why.contains("not reachable"), "{r}");
    // Through the root: /tmp naming the root, whose link count is 0.
    let mut t = seed(THREADS);
    edit_vfs(&mut t, |v| {
        let root = v.upper.root;
        entries_mut(&mut v.upper.nodes[dir]).push(TmpfsDirEntry {
            name: b"up".to_vec(),
            ino: root,
        });
    });
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        "upper.nodes[0].nlink",
        "named 1 times",
    );
}

#[test]
fn a_dangling_tmpfs_child_is_refused() {
    let mut t = seed(THREADS);
    let (_, dir, _) = tmpfs_file(&t);
    let n = {
        let mut v: VfsState = t.get(0).unwrap();
        entries_mut(&mut v.upper.nodes[dir]).len()
    };
    edit_vfs(&mut t, |v| {
        entries_mut(&mut v.upper.nodes[dir]).push(TmpfsDirEntry {
            name: b"ghost".to_vec(),
            ino: 4242,
        })
    });
    assert_refused(
        &t,
        "vfs.MountNamespace",
        0,
        &format!("upper.nodes[{dir}].entries[{n}].ino"),
        "no node has inode number 4242",
    );
}

#[test]
fn a_tmpfs_name_with_a_slash_or_a_nul_is_refused() {
    for bad in [&b"a/b"[..], b"/", b"tmp\0", b"..", b""] {
        let mut t = seed(THREADS);
        edit_vfs(&mut t, |v| {
            entries_mut(&mut v.upper.nodes[0])[0].name = bad.to_vec()
        });
        assert_refused(
            &t,
            "vfs.MountNamespace",
            0,
            "upper.nodes[0].entries[0].name",
            "invalid name",
        );
    }
}

#[test]
fn tmpfs_inode_numbers_and_link_counts_are_judged() {
    let (file, dir) = {
        let t = seed(THREADS);
        let (f, d, _) = tmpfs_file(&t);
        (f, d)
    };
    type Edit<'a> = &'a dyn Fn(&mut VfsState);
    let cases: [(Edit, String, &str); 4] = [
        (
            &|v| v.upper.nodes[file].ino = 0,
            format!("upper.nodes[{file}].ino"),
            "inode number 0",
        ),
        (
            &|v| v.upper.nodes[file].ino = v.upper.nodes[dir].ino,
            format!("upper.nodes[{file}].ino"),
            "used twice",
        ),
        (
            &|v| v.upper.nodes[file].nlink = 2,
            format!("upper.nodes[{file}].nlink"),
            "link count 2",
        ),
        (
            &|v| v.shm.root = 77,
            "shm.root".into(),
            "no node has inode number 77",
        ),
    ];
    for (edit, field, why) in cases {
        let mut t = seed(THREADS);
        edit_vfs(&mut t, edit);
        assert_refused(&t, "vfs.MountNamespace", 0, &field, why);
    }
}

/// The harness's typed tmpfs edits (op 13 on the namespace record) reach
/// every tmpfs check: a sweep over their fields, tables and selectors
/// produces each refusal, and some edits (a hard link with its count
/// raised, a new file on free memory) are accepted.
#[test]
fn the_harness_tmpfs_edits_reach_every_check() {
    let seeds = [seed(THREADS), seed(COUNTER)];
    let mut reached = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for s in &seeds {
        let ns = s
            .entries
            .iter()
            .position(|e| e.type_name == "vfs.MountNamespace")
            .expect("a namespace record") as u8;
        for field in 0..16u8 {
            for k in [0u8, 1, 2, 0x80] {
                // Interesting values 0, 1, 4095 and 4096, then arbitrary bits.
                for pick in [0u8, 1, 17, 18, 7] {
                    for sel in [(0u8, 0u8), (1, 1), (3, 2), (4, 3), (5, 8), (6, 1), (7, 0)] {
                        let mut prog = vec![13, ns, 0, 0, field, k, pick];
                        if pick == 7 {
                            prog.extend_from_slice(&0x1234_5678_9abc_u64.to_le_bytes());
                        }
                        prog.extend_from_slice(&[sel.0, sel.1]);
                        match run_case(s, &prog) {
                            Ok(_) => accepted += 1,
                            Err(CaseError::Load(LoadError::Invalid(r)))
                                if r.record == "vfs.MountNamespace" =>
                            {
                                reached.insert(r.why.clone());
                            }
                            Err(CaseError::Assemble(e)) => panic!("{prog:?}: harness: {e}"),
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }
    let all: Vec<&String> = reached.iter().collect();
    for why in [
        "inode number 0",
        "used twice",
        "own memory",
        "not inside the restored memory",
        "not page-aligned",
        "invalid name",
        "not reachable",
        "link count",
        "no node has inode number",
        "invalid symlink target",
        "does not fit the node",
        "past the end",
    ] {
        assert!(
            reached.iter().any(|r| r.contains(why)),
            "no edit reached {why:?}; reached {all:#?}"
        );
    }
    assert!(accepted > 0, "every edit refused");
}

#[test]
fn many_tmpfs_files_are_accepted() {
    use sentry::mm::{FileRange, MemoryFileRecord};
    const N: u64 = 100_000;
    let base = 1u64 << 32;
    let mut t = seed(THREADS);
    t.edit::<MemoryFileRecord>(0, |r| {
        r.ranges.push(FileRange {
            start: base,
            end: base + N * 4096,
        })
    })
    .unwrap();
    let mut seeded = 0;
    edit_vfs(&mut t, |v| {
        seeded = v.upper.nodes.len() as u64;
        // One template, not add_file's copy of the growing root (n^2).
        let mut template = v.upper.nodes[0].clone();
        template.nlink = 1;
        template.mode = libc::S_IFREG | 0o644;
        for i in 0..N {
            let ino = 1000 + i;
            v.upper.nodes.push(TmpfsNodeRecord {
                ino,
                kind: TmpfsNodeKind::File {
                    size: 1,
                    pages: vec![TmpfsPage {
                        index: 0,
                        offset: base + i * 4096,
                    }],
                },
                ..template.clone()
            });
            entries_mut(&mut v.upper.nodes[0]).push(TmpfsDirEntry {
                name: format!("f{i}").into_bytes(),
                ino,
            });
        }
    });
    let file = t.to_statefile().unwrap();
    let started = Instant::now();
    let result = restore_validate(&file);
    let took = started.elapsed();
    let k = result.unwrap_or_else(|e| panic!("{N} tmpfs files refused: {e}"));
    assert_eq!(k.vfs.upper.nodes.len() as u64, seeded + N);
    eprintln!("bench: {N} tmpfs files judged in {took:?}");
}

// ---------------------------------------------------------------------------
// Waiting objects: epoll sets, eventfd/timerfd/signalfd kinds, POSIX timers

/// The id of one open file of the seed's descriptor table (the first).
fn first_file(t: &ObjectTable) -> u64 {
    let fds: FdTableRecord = t.get(ids(t).fd_table).unwrap();
    fds.fds[0].file
}

#[test]
fn an_open_file_naming_a_missing_epoll_set_is_refused() {
    use sentry::vfs::state::{FileStateKind, OpenFileState};
    let mut t = seed(THREADS);
    let f = first_file(&t);
    t.edit::<OpenFileState>(f, |o| o.kind = FileStateKind::Epoll { id: 777 })
        .unwrap();
    assert_refused(&t, "vfs.OpenFile", f, "kind", "epoll set #777");
}

#[test]
fn hostile_eventfd_and_timerfd_kinds_are_refused() {
    use sentry::kernel::time::ClockId;
    use sentry::vfs::state::{FileStateKind, OpenFileState};
    use sentry::vfs::timerfd::TimerFdRecord;
    let mut t = seed(THREADS);
    let f = first_file(&t);
    t.edit::<OpenFileState>(f, |o| {
        o.kind = FileStateKind::EventFd {
            count: u64::MAX,
            semaphore: false,
        }
    })
    .unwrap();
    assert_refused(&t, "vfs.OpenFile", f, "kind", "eventfd counter");
    let good = TimerFdRecord {
        clock: ClockId::Monotonic,
        remaining_ns: 1_000,
        interval_ns: 0,
        ticks: 0,
    };
    for (bad, why) in [
        (
            TimerFdRecord {
                interval_ns: -1,
                ..good
            },
            "interval_ns",
        ),
        (
            TimerFdRecord {
                clock: ClockId::ProcessCputime,
                ..good
            },
            "clock",
        ),
    ] {
        let mut t = seed(THREADS);
        t.edit::<OpenFileState>(f, |o| o.kind = FileStateKind::TimerFd(bad))
            .unwrap();
        assert_refused(&t, "vfs.OpenFile", f, "kind", why);
    }
    // A valid one is accepted (nothing else refers to the file's path).
    let mut t = seed(THREADS);
    t.edit::<OpenFileState>(f, |o| o.kind = FileStateKind::TimerFd(good))
        .unwrap();
    assert!(validate(&t).is_ok());
}

#[test]
fn epoll_records_are_judged_by_field() {
    use sentry::vfs::epoll::{EpollItemRecord, EpollRecord};
    use sentry::vfs::state::{FileStateKind, OpenFileState};
    let base = {
        let mut t = seed(THREADS);
        let f = first_file(&t);
        t.edit::<OpenFileState>(f, |o| o.kind = FileStateKind::Epoll { id: 5 })
            .unwrap();
        t
    };
    let ep_file = first_file(&base);
    let fds: FdTableRecord = base.get(ids(&base).fd_table).unwrap();
    let other = fds
        .fds
        .iter()
        .map(|e| e.file)
        .find(|&f| f != ep_file)
        .expect("the seed has a second open file");
    let item = EpollItemRecord {
        file: other,
        fd: 3,
        events: 1,
        data: 42,
        ready: false,
    };
    let with = |items: Vec<EpollItemRecord>| {
        let mut t = base.clone();
        t.push(5, &EpollRecord { id: 5, items }).unwrap();
        t
    };
    assert!(
        validate(&with(vec![item])).is_ok(),
        "a good set is accepted"
    );
    assert_refused(
        &with(vec![EpollItemRecord {
            file: 123_456,
            ..item
        }]),
        "vfs.Epoll",
        5,
        "items[0].file",
        "#123456",
    );
    assert_refused(
        &with(vec![item, item]),
        "vfs.Epoll",
        5,
        "items[1]",
        "listed twice",
    );
    assert_refused(
        &with(vec![EpollItemRecord {
            file: ep_file,
            ..item
        }]),
        "vfs.Epoll",
        5,
        "items[0].file",
        "holds itself",
    );
    // A set no open file names is refused as unreferenced.
    let mut t = seed(THREADS);
    t.push(
        9,
        &EpollRecord {
            id: 9,
            items: vec![],
        },
    )
    .unwrap();
    match validate(&t) {
        Err(LoadError::Statefile(StatefileError::UnreferencedObject { type_name, id })) => {
            assert_eq!((type_name.as_str(), id), ("vfs.Epoll", 9))
        }
        other => panic!("expected UnreferencedObject, got {other:?}"),
    }
}

#[test]
fn hostile_posix_timers_are_refused_by_field() {
    use sentry::kernel::posix_timer::{Notify, PosixTimerRecord, PosixTimersRecord};
    use sentry::kernel::time::ClockId;
    let t0 = seed(THREADS);
    let tgid = ids(&t0).tgid as u64;
    let good = PosixTimerRecord {
        id: 0,
        clock: ClockId::Monotonic,
        notify: Notify::Signal { signo: 10 },
        value: 0,
        remaining_ns: 5_000,
        interval_ns: 1_000,
        overrun: 0,
        overrun_last: 0,
    };
    let with = |timers: Vec<PosixTimerRecord>| {
        let mut t = t0.clone();
        t.edit::<PosixTimersRecord>(tgid, |r| r.timers = timers)
            .expect("the seed holds the process's POSIX timers");
        t
    };
    assert!(validate(&with(vec![good])).is_ok());
    for (timers, field) in [
        (
            vec![PosixTimerRecord {
                remaining_ns: -5,
                ..good
            }],
            "timers[0].remaining_ns",
        ),
        (vec![good, good], "timers[1].id"),
        (
            vec![PosixTimerRecord {
                notify: Notify::Thread {
                    signo: 10,
                    tid: 31_000,
                },
                ..good
            }],
            "timers[0].notify",
        ),
        (
            vec![PosixTimerRecord {
                clock: ClockId::ThreadCputime,
                ..good
            }],
            "timers[0].clock",
        ),
    ] {
        assert_refused(&with(timers), "kernel.PosixTimers", tgid, field, "");
    }
}

#[test]
fn epoll_sets_inside_each_other_in_a_loop_are_refused() {
    use sentry::vfs::epoll::{EpollItemRecord, EpollRecord};
    use sentry::vfs::state::{FileStateKind, OpenFileState};
    let mut t = seed(THREADS);
    let fds: FdTableRecord = t.get(ids(&t).fd_table).unwrap();
    let mut files: Vec<u64> = fds.fds.iter().map(|e| e.file).collect();
    files.dedup();
    assert!(files.len() >= 2, "the seed has two open files");
    let (fa, fb) = (files[0], files[1]);
    t.edit::<OpenFileState>(fa, |o| o.kind = FileStateKind::Epoll { id: 5 })
        .unwrap();
    t.edit::<OpenFileState>(fb, |o| o.kind = FileStateKind::Epoll { id: 6 })
        .unwrap();
    let item = |file| EpollItemRecord {
        file,
        fd: 9,
        events: 1,
        data: 0,
        ready: false,
    };
    // 5 holds 6: accepted; 6 holding 5 as well is a loop.
    let mut ok = t.clone();
    ok.push(
        5,
        &EpollRecord {
            id: 5,
            items: vec![item(fb)],
        },
    )
    .unwrap();
    ok.push(
        6,
        &EpollRecord {
            id: 6,
            items: vec![],
        },
    )
    .unwrap();
    assert!(validate(&ok).is_ok(), "{:?}", validate(&ok).err());
    t.push(
        5,
        &EpollRecord {
            id: 5,
            items: vec![item(fb)],
        },
    )
    .unwrap();
    t.push(
        6,
        &EpollRecord {
            id: 6,
            items: vec![item(fa)],
        },
    )
    .unwrap();
    let r = refusal(&t);
    assert_eq!((r.record, r.field.as_ref()), ("vfs.Epoll", "items"), "{r}");
    assert!(r.why.contains("inside itself"), "{r}");
}
