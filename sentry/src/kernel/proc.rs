//! What procfs sees of the kernel's processes: a live view of the pid
//! namespace. /proc/<pid>/* reads the thread group itself when a file is
//! opened; /proc/self is the thread group of the task whose host thread
//! opens it (every task runs on a host thread of its own, which records its
//! thread group when it starts running).

use std::cell::Cell;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use super::thread_group::ThreadGroup;
use super::Kernel;
use crate::vfs::procfs::{ProcessInfo, ProcessTable};
use crate::vfs::OpenFile;

thread_local! {
    /// The thread group of the task this host thread runs (0: none).
    static CURRENT_TGID: Cell<i32> = const { Cell::new(0) };
}

/// Records that this host thread runs a task of thread group `tgid`.
pub fn set_current(tgid: i32) {
    CURRENT_TGID.with(|c| c.set(tgid));
}

/// One process as /proc/<pid> shows it, read live from its thread group.
/// Held weakly: procfs dentries stay cached in the mount tree that the
/// thread group itself references (its root and cwd), so a strong
/// reference would keep an exited process, its files and the gofer
/// connection alive forever. An exited process reads as empty.
struct LiveProcess {
    pid: i32,
    tg: Weak<ThreadGroup>,
    kernel: Weak<Kernel>,
}

impl LiveProcess {
    fn with<T: Default>(&self, f: impl FnOnce(&ThreadGroup) -> T) -> T {
        self.tg.upgrade().map(|tg| f(&tg)).unwrap_or_default()
    }

    /// A mount table's text as the process sees it: from its root, in its
    /// mount namespace.
    fn in_own_mount_ns(
        &self,
        text: impl FnOnce(&crate::vfs::Vfs, &Arc<crate::vfs::Dentry>) -> String,
    ) -> Option<String> {
        let (root, ns) = {
            let tg = self.tg.upgrade()?;
            let fs = tg.fs();
            let fs = fs.lock();
            (fs.root.clone(), fs.mnt_ns.clone())
        };
        let vfs = &self.kernel.upgrade()?.vfs;
        Some(vfs.in_ns(&ns, || text(vfs, &root)))
    }
}

impl LiveProcess {
    /// The state letter Linux shows: Z for a zombie, T for a stopped job, R
    /// while a thread runs application code (or reads this file), else S
    /// (every other task is blocked in the Sentry).
    fn state(&self, tg: &ThreadGroup) -> char {
        if tg.is_zombie() {
            'Z'
        } else if tg.is_job_stopped() {
            'T'
        } else if CURRENT_TGID.with(|c| c.get()) == self.pid || !tg.itimers().in_user().is_empty() {
            'R'
        } else {
            'S'
        }
    }
}

const PAGE: u64 = 4096;
/// USER_HZ: the unit of times in /proc/<pid>/stat.
const TICKS_PER_SEC: u64 = 100;

fn ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / TICKS_PER_SEC)
}

/// VmSize and VmRSS in bytes (none for a zombie).
fn memory_of(tg: &ThreadGroup) -> (u64, u64) {
    tg.mm_arc()
        .map(|mm| {
            let mm = super::thread_group::lock(&mm);
            (mm.vsize(), mm.rss())
        })
        .unwrap_or((0, 0))
}

/// The signals with a handler of `kind` as /proc's 16-digit hex mask.
fn handler_mask(tg: &ThreadGroup, ignored: bool) -> u64 {
    let handlers = tg.handlers();
    (1..=64).fold(0u64, |m, signo| match handlers.get(signo) {
        Ok(a) if !a.is_default() && a.is_ignored() == ignored => m | 1 << (signo - 1),
        _ => m,
    })
}

fn state_name(state: char) -> &'static str {
    match state {
        'R' => "R (running)",
        'T' => "T (stopped)",
        'Z' => "Z (zombie)",
        _ => "S (sleeping)",
    }
}

/// /proc/<pid>/status (`tid` its pid: the leader's, or the first live
/// thread's once the leader is gone) or /proc/<pid>/task/<tid>/status: the
/// fields programs read, from the process and that thread.
fn status_text(tg: &ThreadGroup, tid: i32, state: char) -> String {
    use std::fmt::Write;
    let links = tg.links();
    let creds = tg
        .creds()
        .unwrap_or_else(super::creds::Credentials::of_caller);
    let caps = creds.caps;
    let tids = tg.tids();
    let tid = if tids.contains(&tid) {
        tid
    } else {
        tids.first().copied().unwrap_or(tid)
    };
    let nnp = tg
        .attrs()
        .with_thread(tid, |a| a.no_new_privs)
        .unwrap_or(false);
    let mut s = String::new();
    let _ = write!(
        s,
        "Name:\t{}\nUmask:\t{:04o}\nState:\t{}\nTgid:\t{tgid}\nNgid:\t0\nPid:\t{tid}\nPPid:\t{}\nTracerPid:\t0\n",
        String::from_utf8_lossy(&tg.attrs().comm(tid)),
        tg.fs().lock().umask,
        state_name(state),
        links.parent,
        tgid = tg.tgid(),
    );
    let _ = write!(
        s,
        "Uid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nGroups:\t{}\nNSpid:\t{}\nNSpgid:\t{}\nNSsid:\t{}\n",
        creds.uid,
        creds.euid,
        creds.suid,
        creds.euid,
        creds.gid,
        creds.egid,
        creds.sgid,
        creds.egid,
        creds
            .groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        tg.tgid(),
        links.pgid,
        links.sid,
    );
    if state != 'Z' {
        let (vsize, rss) = memory_of(tg);
        let _ = write!(
            s,
            "VmSize:\t{:8} kB\nVmRSS:\t{:8} kB\n",
            vsize / 1024,
            rss / 1024
        );
    }
    let cpus = super::attrs::sandbox_cpus();
    // That thread's own pending and blocked signals.
    let member = tg.member(tid);
    let _ = write!(
        s,
        "Threads:\t{}\nSigPnd:\t{:016x}\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\nSigIgn:\t{:016x}\nSigCgt:\t{:016x}\nCapInh:\t{:016x}\nCapPrm:\t{:016x}\nCapEff:\t{:016x}\nCapBnd:\t{:016x}\nCapAmb:\t{:016x}\nNoNewPrivs:\t{}\nSeccomp:\t0\nCpus_allowed_list:\t0-{}\n",
        tg.live(),
        member.as_ref().map_or(0, |m| pending_mask(&super::thread_group::lock(&m.pending))),
        pending_mask(&super::thread_group::lock(tg.shared_pending())),
        member.as_ref().map_or(0, |m| m.shown_blocked()),
        handler_mask(tg, true),
        handler_mask(tg, false),
        caps.inheritable,
        caps.permitted,
        caps.effective,
        caps.bounding,
        caps.ambient,
        u8::from(nnp),
        cpus.saturating_sub(1),
    );
    s
}

/// A sigset of the signals queued in `pending`.
fn pending_mask(pending: &[super::signal::SigInfo]) -> u64 {
    pending
        .iter()
        .filter_map(|p| 1u64.checked_shl(u32::try_from(p.signo - 1).ok()?))
        .fold(0, |m, bit| m | bit)
}

/// /proc/<pid>/stat (and task/<tid>/stat): Linux's 52 fields. The code,
/// stack and argument addresses read 0, as Linux shows them to a reader
/// without ptrace access; fault counts are not kept.
fn stat_text(tg: &ThreadGroup, tid: i32, state: char) -> String {
    let links = tg.links();
    let attrs = tg.attrs();
    let usage = if tid == tg.tgid() {
        attrs.usage()
    } else {
        attrs.thread_usage(tid)
    };
    let children = attrs.children_usage();
    let (nice, start_ns) = attrs.with(|r| (r.nice, r.start_ns));
    let (vsize, rss) = memory_of(tg);
    let rsslim = tg.limits().soft(libc::RLIMIT_RSS);
    let comm = String::from_utf8_lossy(&attrs.comm(tid)).into_owned();
    format!(
        "{tid} ({comm}) {state} {} {} {} 0 -1 0 0 0 0 0 {} {} {} {} {} {nice} {} 0 {} {vsize} {} {rsslim} 0 0 0 0 0 0 0 {} {} 0 0 0 {} 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        links.parent,
        links.pgid,
        links.sid,
        ticks(usage.user_ns),
        ticks(usage.sys_ns),
        ticks(children.user_ns),
        ticks(children.sys_ns),
        20 + nice,
        tg.live(),
        ticks(start_ns),
        rss / PAGE,
        handler_mask(tg, true),
        handler_mask(tg, false),
        tg.exit_signal(),
    )
}

/// /proc/<pid>/limits in Linux's layout.
fn limits_text(limits: &super::limits::LimitSet) -> String {
    use std::fmt::Write;
    const ROWS: [(&str, u32, &str); 16] = [
        ("Max cpu time", libc::RLIMIT_CPU, "seconds"),
        ("Max file size", libc::RLIMIT_FSIZE, "bytes"),
        ("Max data size", libc::RLIMIT_DATA, "bytes"),
        ("Max stack size", libc::RLIMIT_STACK, "bytes"),
        ("Max core file size", libc::RLIMIT_CORE, "bytes"),
        ("Max resident set", libc::RLIMIT_RSS, "bytes"),
        ("Max processes", libc::RLIMIT_NPROC, "processes"),
        ("Max open files", libc::RLIMIT_NOFILE, "files"),
        ("Max locked memory", libc::RLIMIT_MEMLOCK, "bytes"),
        ("Max address space", libc::RLIMIT_AS, "bytes"),
        ("Max file locks", libc::RLIMIT_LOCKS, "locks"),
        ("Max pending signals", libc::RLIMIT_SIGPENDING, "signals"),
        ("Max msgqueue size", libc::RLIMIT_MSGQUEUE, "bytes"),
        ("Max nice priority", libc::RLIMIT_NICE, ""),
        ("Max realtime priority", libc::RLIMIT_RTPRIO, ""),
        ("Max realtime timeout", libc::RLIMIT_RTTIME, "us"),
    ];
    let show = |v: u64| {
        if v == super::limits::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let mut s = format!(
        "{:<25} {:<20} {:<20} {:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for (name, resource, unit) in ROWS {
        let l = limits.get(resource).unwrap_or(super::limits::Limit {
            cur: super::limits::RLIM_INFINITY,
            max: super::limits::RLIM_INFINITY,
        });
        let _ = writeln!(
            s,
            "{name:<25} {:<20} {:<20} {unit:<10}",
            show(l.cur),
            show(l.max)
        );
    }
    s
}

impl ProcessInfo for LiveProcess {
    fn pid(&self) -> i32 {
        self.pid
    }
    fn comm(&self) -> String {
        // The leader's name, as PR_SET_NAME left it (Linux's
        // /proc/<pid>/comm).
        self.with(|tg| String::from_utf8_lossy(&tg.attrs().comm(tg.tgid())).into_owned())
    }
    fn cmdline(&self) -> Vec<u8> {
        self.with(|tg| {
            let mut cmdline = Vec::new();
            for a in &tg.image().argv {
                cmdline.extend_from_slice(a);
                cmdline.push(0);
            }
            cmdline
        })
    }
    fn maps_text(&self) -> String {
        self.with(|tg| {
            tg.mm_arc()
                .map(|mm| super::thread_group::lock(&mm).maps_text())
                .unwrap_or_default()
        })
    }
    fn status_text(&self, tid: i32) -> String {
        self.with(|tg| status_text(tg, tid, self.state(tg)))
    }
    fn stat_text(&self, tid: i32) -> String {
        self.with(|tg| stat_text(tg, tid, self.state(tg)))
    }
    fn statm_text(&self) -> String {
        self.with(|tg| {
            let (vsize, rss) = memory_of(tg);
            format!("{} {} 0 0 0 0 0\n", vsize / PAGE, rss / PAGE)
        })
    }
    fn limits_text(&self) -> String {
        self.with(|tg| limits_text(&tg.limits()))
    }
    fn exe_path(&self) -> Option<String> {
        self.tg.upgrade().map(|tg| tg.image().exe.clone())
    }
    fn cwd_path(&self) -> Option<String> {
        let cwd = self.tg.upgrade()?.fs().lock().cwd.clone();
        Some(self.kernel.upgrade()?.vfs.dentry_path(&cwd))
    }
    fn root_path(&self) -> Option<String> {
        let root = self.tg.upgrade()?.fs().lock().root.clone();
        Some(self.kernel.upgrade()?.vfs.dentry_path(&root))
    }
    fn mountinfo_text(&self) -> Option<String> {
        self.in_own_mount_ns(crate::vfs::Vfs::mountinfo_text)
    }
    fn mounts_text(&self) -> Option<String> {
        self.in_own_mount_ns(crate::vfs::Vfs::mounts_text)
    }
    fn fds(&self) -> Vec<i32> {
        self.with(|tg| tg.fds().lock().iter().map(|(fd, _)| fd).collect())
    }
    fn threads(&self) -> Vec<i32> {
        self.with(|tg| tg.tids())
    }
    fn thread_comm(&self, tid: i32) -> String {
        self.with(|tg| String::from_utf8_lossy(&tg.attrs().comm(tid)).into_owned())
    }
    fn fd_file(&self, fd: i32) -> Option<Arc<OpenFile>> {
        self.tg.upgrade()?.fds().lock().file(fd).ok()
    }
    fn fdinfo_text(&self, fd: i32) -> Option<String> {
        let (file, cloexec) = {
            let tg = self.tg.upgrade()?;
            let fds = tg.fds();
            let table = fds.lock();
            let e = table.get(fd).ok()?;
            (e.file.clone(), e.cloexec)
        };
        let flags = file.status_flags() | if cloexec { libc::O_CLOEXEC } else { 0 };
        // Files no mount holds (pipes, sockets, anonymous inodes) sit on
        // Linux's internal mounts, which cryo does not have: 0.
        let mnt_id = file.dentry().map_or(0, |d| d.mount().id);
        let ino = file.stat().map_or(0, |st| st.ino);
        Some(format!(
            "pos:\t{}\nflags:\t0{:o}\nmnt_id:\t{mnt_id}\nino:\t{ino}\n{}",
            file.offset(),
            flags,
            file.ops().fdinfo()
        ))
    }
    /// A file's path (" (deleted)" after it once it has no name); files
    /// that never had one: a socket reads `socket:[ino]` and a pipe
    /// `pipe:[ino]`, as on Linux.
    fn fd_path(&self, fd: i32) -> Option<String> {
        let f = self.fd_file(fd)?;
        if let Some(d) = f.dentry() {
            return Some(self.kernel.upgrade()?.vfs.dentry_path(d));
        }
        let st = f.stat().ok()?;
        match st.mode & libc::S_IFMT {
            libc::S_IFSOCK => Some(format!("socket:[{}]", st.ino)),
            libc::S_IFIFO => Some(format!("pipe:[{}]", st.ino)),
            _ => None,
        }
    }
}

/// The kernel's process table, as procfs needs it.
#[derive(Default)]
pub struct ProcTable {
    kernel: OnceLock<Weak<Kernel>>,
}

impl ProcTable {
    pub fn new() -> Arc<ProcTable> {
        Arc::new(ProcTable::default())
    }

    /// Connects the table to its kernel once both exist.
    pub fn set_kernel(&self, kernel: &Arc<Kernel>) {
        let _ = self.kernel.set(Arc::downgrade(kernel));
    }

    fn kernel(&self) -> Option<Arc<Kernel>> {
        self.kernel.get().and_then(Weak::upgrade)
    }
}

impl ProcessTable for ProcTable {
    fn mounts_text(&self) -> Option<String> {
        let k = self.kernel()?;
        Some(k.vfs.mounts_text(&k.vfs.current_root()))
    }
    fn current_pid(&self) -> Option<i32> {
        Some(CURRENT_TGID.with(|c| c.get())).filter(|&p| p > 0)
    }
    fn pids(&self) -> Vec<i32> {
        self.kernel()
            .map(|k| k.pids.thread_groups().iter().map(|tg| tg.tgid()).collect())
            .unwrap_or_default()
    }
    fn process(&self, pid: i32) -> Option<Arc<dyn ProcessInfo>> {
        let kernel = self.kernel()?;
        let tg = kernel.pids.thread_group(pid)?;
        Some(Arc::new(LiveProcess {
            pid,
            tg: Arc::downgrade(&tg),
            kernel: Arc::downgrade(&kernel),
        }))
    }
    fn hostname(&self) -> String {
        self.kernel().map(|k| k.hostname()).unwrap_or_default()
    }
    fn uptime(&self) -> Duration {
        self.kernel().map(|k| k.clocks.uptime()).unwrap_or_default()
    }
    fn memory(&self) -> (u64, u64) {
        self.kernel()
            .map(|k| {
                let m = k.memory();
                (m.total, m.free)
            })
            .unwrap_or_default()
    }
    fn cpus(&self) -> usize {
        super::attrs::sandbox_cpus() as usize
    }
    fn cpu_flags(&self) -> Vec<&'static str> {
        self.kernel().map(|k| k.cpu.flags()).unwrap_or_default()
    }
    fn tasks(&self) -> (usize, usize) {
        let Some(k) = self.kernel() else {
            return (0, 0);
        };
        let groups = k.pids.thread_groups();
        let running: usize = groups.iter().map(|tg| tg.itimers().in_user().len()).sum();
        // The task reading this is running too.
        (running.max(1), k.pids.task_count())
    }
    fn cpu_time(&self) -> (u64, u64) {
        self.kernel().map(|k| k.cpu_time()).unwrap_or_default()
    }
    fn boot_time(&self) -> u64 {
        let Some(k) = self.kernel() else {
            return 0;
        };
        let now = Duration::from_nanos(u64::try_from(k.clocks.realtime()).unwrap_or(0));
        now.saturating_sub(k.clocks.uptime()).as_secs()
    }
    fn net_file(&self, name: &str) -> Option<String> {
        self.kernel()?.inet.proc_net(name)
    }
    fn ping_group_range(&self) -> (u32, u32) {
        self.kernel()
            .map(|k| k.inet.ping_group_range())
            .unwrap_or(crate::net::inet::stack::PING_RANGE_DEFAULT)
    }
    fn set_ping_group_range(&self, low: u32, high: u32) -> Result<(), crate::Errno> {
        self.kernel()
            .ok_or(crate::Errno::EACCES)?
            .inet
            .set_ping_group_range(low, high)
    }
    fn boot_id(&self) -> String {
        self.kernel()
            .map(|k| k.identity.boot_id())
            .unwrap_or_default()
    }
    fn lazy_progress(&self) -> Option<crate::mm::lazy::LazyProgress> {
        self.kernel()?.memory_file.lazy_progress()
    }
    fn take_id(&self) -> String {
        self.kernel()
            .map(|k| k.identity.take_id())
            .unwrap_or_default()
    }
    fn take_env(&self) -> Vec<String> {
        self.kernel()
            .map(|k| k.identity.take_env())
            .unwrap_or_default()
    }
}
