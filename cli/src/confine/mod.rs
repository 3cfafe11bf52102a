//! The Sentry's own confinement (gVisor's defence in depth): once a sandbox
//! has booted (memory file, gofers, control socket, log files, the first
//! stubs), and before the first application instruction, the sandbox
//! process
//! - runs in mount, ipc, uts and network namespaces of its own (entered
//!   first thing in `main`, while it is one thread, so that every thread
//!   is in them; the network stack the guest sees is the Sentry's own),
//! - is pivoted into an empty read-only tmpfs, so no host path resolves,
//! - keeps only CAP_DAC_READ_SEARCH (linkat of a passed statefile, see
//!   supervisor::publish), with no-new-privs,
//! - and runs under a seccomp allow-list (allow.rs) of the host syscalls
//!   it makes, with every other syscall killing the process.
//!
//! Capabilities, unlike the filter (TSYNC), are per thread: the threads
//! started before the lock-down (the statefile's workers, which a restore
//! needs unbound, the timekeeper, the systrap platform's forker and pool,
//! a terminal's relays) are each made to drop theirs on a signal
//! (platform::host_threads); every thread started after inherits the one
//! kept. The control socket is bound before and served after it.
//!
//! Resource limits (cap_resources) are set when the namespaces are
//! entered, before any stub or gofer exists, so that all inherit them.
//!
//! Not done (said by `cryo doctor`): a pid namespace (the first stub
//! forked into it would be its init, and its end would end every later
//! fork) and a user namespace (a root Sentry keeps host uid 0 so that the
//! files it publishes are root's).
//!
//! `CRYO_UNCONFINED=1` (for benchmarks) skips all of it, and a sandbox that
//! cannot get part of it says so on stderr. `CRYO_SECCOMP_LOG=1` logs
//! instead of killing (SECCOMP_RET_LOG, for finding what the list lacks);
//! it too says so.

mod allow;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use caps::{CapSet, Capability};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Why the sandbox could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot pivot into an empty root: {op}: {errno}")]
    Pivot { op: &'static str, errno: nix::Error },
    #[error("cannot drop capabilities: {0}")]
    Caps(String),
    #[error("cannot set no-new-privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("cannot install the seccomp filter: {0}")]
    Seccomp(String),
}

/// The namespaces a sandbox process enters.
const NAMESPACES: &[(CloneFlags, &str)] = &[
    (CloneFlags::CLONE_NEWNS, "mount"),
    (CloneFlags::CLONE_NEWIPC, "ipc"),
    (CloneFlags::CLONE_NEWUTS, "uts"),
    (CloneFlags::CLONE_NEWNET, "network"),
];

/// The capabilities the locked-down Sentry keeps.
pub const KEPT: &[Capability] = &[Capability::CAP_DAC_READ_SEARCH];

/// What `enter_namespaces` did: None when skipped (unconfined).
static ENTERED: OnceLock<Option<Result<(), String>>> = OnceLock::new();

/// Whether confinement is off (`CRYO_UNCONFINED=1`).
pub fn unconfined() -> bool {
    std::env::var_os("CRYO_UNCONFINED").is_some_and(|v| v == "1")
}

fn log_only() -> bool {
    std::env::var_os("CRYO_SECCOMP_LOG").is_some_and(|v| v == "1")
}

/// Enters the sandbox's namespaces. Called first thing in `main` of a
/// process that becomes a sandbox, before any thread exists (namespaces
/// are per thread; threads started later inherit them). The mount
/// namespace is a slave of the host's until the lock-down replaces its
/// root: the gofers started meanwhile see the host's mounts.
pub fn enter_namespaces() {
    if unconfined() {
        let _ = ENTERED.set(None);
        return;
    }
    if let Err(e) = cap_resources() {
        eprintln!(
            "cryo: warning: the sandbox's host processes run without their resource limits ({e})"
        );
    }
    let flags = NAMESPACES
        .iter()
        .fold(CloneFlags::empty(), |all, (f, _)| all | *f);
    let result = nix::sched::unshare(flags)
        .map_err(|e| format!("unshare: {e}"))
        .and_then(|()| {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .map_err(|e| format!("making / a slave mount: {e}"))
        });
    let _ = ENTERED.set(Some(result));
}

/// The most host descriptors a sandbox process holds (the gofer's files
/// the Sentry was given, donated files, the memory file, sockets).
pub const NOFILE_CAP: u64 = 65536;

/// The most host tasks the sandbox's host user runs (RLIMIT_NPROC is per
/// real uid, threads included; Linux does not apply it to root). A guest's
/// tasks are bounded by the Sentry's own limit (1024 by default), each one
/// a Sentry thread and a stub thread.
pub const NPROC_CAP: u64 = 32768;

/// Caps the sandbox process's host resources; its stubs and gofers, forked
/// or started from it, inherit them: no core dump (it would hold the
/// application's memory), at most [`NOFILE_CAP`] descriptors and
/// [`NPROC_CAP`] tasks, and private writable memory (RLIMIT_DATA: the heap,
/// thread stacks; the memory file is a shared mapping and does not count)
/// no larger than the host's RAM and swap. RLIMIT_AS is left alone: the
/// Sentry maps the whole memory file and the stubs reserve the
/// application's address space, both far beyond what they use. A limit
/// already lower is kept.
fn cap_resources() -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let info = nix::sys::sysinfo::sysinfo().map_err(|e| format!("sysinfo: {e}"))?;
    let memory = info.ram_total() + info.swap_total();
    for (resource, name, cap) in [
        (Resource::RLIMIT_CORE, "RLIMIT_CORE", 0),
        (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", NOFILE_CAP),
        (Resource::RLIMIT_NPROC, "RLIMIT_NPROC", NPROC_CAP),
        (Resource::RLIMIT_DATA, "RLIMIT_DATA", memory),
    ] {
        let (soft, hard) = getrlimit(resource).map_err(|e| format!("getrlimit {name}: {e}"))?;
        let hard = hard.min(cap);
        // The descriptors' soft limit is raised to the cap: the Sentry
        // holds one host fd per open gofer file, and 1024 would bound the
        // guest long before its own limit.
        let soft = if resource == Resource::RLIMIT_NOFILE {
            hard
        } else {
            soft.min(hard)
        };
        setrlimit(resource, soft, hard).map_err(|e| format!("setrlimit {name}: {e}"))?;
    }
    Ok(())
}

/// Locks the booted sandbox process down (see the module's comment). Any
/// part the host cannot give is said on stderr; an error is a part that
/// should have worked and did not.
pub fn lock_down() -> Result<(), ConfineError> {
    let entered = match ENTERED.get() {
        None | Some(None) => {
            eprintln!(
                "cryo: warning: CRYO_UNCONFINED=1: the Sentry runs without its confinement (no namespaces, empty root, capability drop, no-new-privs or seccomp filter)"
            );
            return Ok(());
        }
        Some(Some(r)) => r.clone(),
    };
    // Before the pivot hides /proc: the threads started so far, each of
    // which must drop its own capabilities.
    let threads = other_threads()?;
    match entered {
        Ok(()) => pivot_to_empty_root()?,
        Err(e) => eprintln!(
            "cryo: warning: the Sentry runs in the host's namespaces and sees the host's root ({e})"
        ),
    }
    drop_capabilities(&threads)?;
    nix::sys::prctl::set_no_new_privs().map_err(ConfineError::NoNewPrivs)?;
    install_filters()?;
    tracing::debug!("the Sentry is confined");
    Ok(())
}

/// Makes an empty tmpfs the root and the host's root unreachable: the
/// tmpfs is mounted over /proc (which every host has) in this process's
/// own mount namespace, pivoted to with pivot_root(".", "."), the old root
/// detached from above it, and the tmpfs made read-only.
fn pivot_to_empty_root() -> Result<(), ConfineError> {
    let err = |op| move |errno| ConfineError::Pivot { op, errno };
    let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("cryo-root"),
        "/proc",
        Some("tmpfs"),
        hardened,
        Some("size=4k,nr_inodes=2,mode=0555"),
    )
    .map_err(err("mounting a tmpfs"))?;
    nix::unistd::chdir("/proc").map_err(err("chdir"))?;
    nix::unistd::pivot_root(".", ".").map_err(err("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(err("chdir /"))?;
    let dac_read_search =
        caps::has_cap(None, CapSet::Permitted, Capability::CAP_DAC_READ_SEARCH).unwrap_or(false);
    if !dac_read_search {
        // Without CAP_DAC_READ_SEARCH a passed statefile is linked in
        // through /proc/self/fd (see supervisor::publish): a procfs of
        // only the processes this one may ptrace (its own and its stubs;
        // hidepid=invisible hides the rest) and none of the host's other
        // files (subset=pid), read-only. Nothing in it can be opened (the
        // seccomp filter refuses every open).
        nix::unistd::mkdir("proc", nix::sys::stat::Mode::from_bits_truncate(0o555))
            .map_err(err("mkdir /proc"))?;
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            hardened | MsFlags::MS_RDONLY,
            Some("hidepid=invisible,subset=pid"),
        )
        .map_err(err("mounting /proc"))?;
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | hardened,
        None::<&str>,
    )
    .map_err(err("remounting the root read-only"))?;
    Ok(())
}

/// The ids of this process's threads other than the caller.
fn other_threads() -> Result<Vec<i32>, ConfineError> {
    let me = nix::unistd::gettid().as_raw();
    let dir = std::fs::read_dir("/proc/self/task")
        .map_err(|e| ConfineError::Caps(format!("listing /proc/self/task: {e}")))?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&tid| tid != me)
        .collect())
}

/// Drops every capability but [`KEPT`] from every set, the bounding set
/// included (so nothing the Sentry starts can regain one), on this thread
/// and on each of `threads` (capabilities are per thread: the ones started
/// before the lock-down would keep theirs). A Sentry that is not root has
/// none to drop.
fn drop_capabilities(threads: &[i32]) -> Result<(), ConfineError> {
    let err = |e: caps::errors::CapsError| ConfineError::Caps(e.to_string());
    let have = caps::read(None, CapSet::Permitted).map_err(err)?;
    let keep = KEPT
        .iter()
        .filter(|c| have.contains(c))
        .fold(0u64, |bits, c| bits | c.bitmask());
    platform::host_threads::drop_capabilities_on_every_thread(threads, keep)
        .map_err(|e| ConfineError::Caps(e.to_string()))
}

/// The allow-list: everything not in it kills the process (logs it, with
/// CRYO_SECCOMP_LOG=1).
pub fn allow_list(log: bool) -> Result<BpfProgram, ConfineError> {
    let mut rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = BTreeMap::new();
    for (_, group) in allow::PLAIN {
        for &nr in *group {
            rules.insert(nr, Vec::new());
        }
    }
    for (nr, checked) in allow::checked() {
        rules.insert(nr, checked);
    }
    let mismatch = if log {
        SeccompAction::Log
    } else {
        SeccompAction::KillProcess
    };
    program(rules, mismatch, SeccompAction::Allow)
}

/// The second filter: clone3 answers ENOSYS (see allow::checked).
fn clone3_filter() -> Result<BpfProgram, ConfineError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    program(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )
}

/// The third: every open answers EACCES. The first filter lets them
/// through only so that this answer, not a kill, is what a library's
/// stray open gets (std's available_parallelism reads cgroup files):
/// nothing is opened either way.
fn open_filter() -> Result<BpfProgram, ConfineError> {
    let rules = allow::OPENS.iter().map(|&nr| (nr, Vec::new())).collect();
    program(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
    )
}

fn program(
    rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, ConfineError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| ConfineError::Seccomp(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| ConfineError::Seccomp(e.to_string()))
}

/// Installs both filters on every thread (TSYNC).
fn install_filters() -> Result<(), ConfineError> {
    let log = log_only();
    if log {
        eprintln!(
            "cryo: warning: CRYO_SECCOMP_LOG=1: the Sentry's seccomp filter logs the syscalls it would refuse instead of killing"
        );
    }
    let err = |e: seccompiler::Error| ConfineError::Seccomp(e.to_string());
    seccompiler::apply_filter_all_threads(&allow_list(log)?).map_err(err)?;
    seccompiler::apply_filter_all_threads(&clone3_filter()?).map_err(err)?;
    seccompiler::apply_filter_all_threads(&open_filter()?).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        assert!(!allow_list(false).unwrap().is_empty());
        assert!(!allow_list(true).unwrap().is_empty());
        assert!(!clone3_filter().unwrap().is_empty());
        assert!(!open_filter().unwrap().is_empty());
    }

    #[test]
    fn no_way_to_open_or_escape_is_allowed() {
        let listed: Vec<i64> = allow::PLAIN
            .iter()
            .flat_map(|(_, g)| g.iter().copied())
            .chain(allow::checked().into_iter().map(|(nr, _)| nr))
            .filter(|nr| !allow::OPENS.contains(nr))
            .collect();
        for nr in [
            libc::SYS_open_by_handle_at,
            libc::SYS_name_to_handle_at,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_mount,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_init_module,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_keyctl,
            libc::SYS_userfaultfd,
            libc::SYS_io_uring_setup,
        ] {
            assert!(!listed.contains(&nr), "syscall {nr} is allowed");
        }
    }
}
