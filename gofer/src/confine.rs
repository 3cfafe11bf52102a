//! Confining a gofer process to the directory it serves (gVisor's gofer
//! does the same): its own mount namespace, chrooted into its root, with
//! only the capabilities file serving needs and a seccomp allow-list of
//! the syscalls it makes; any other syscall kills it.
//!
//! Called once the process is hardened (`harden`) and before it serves:
//! from then on an escape through a bug in the gofer finds no other host
//! file system, no privilege beyond files, and no syscall beyond files.

use std::collections::BTreeMap;
use std::path::Path;

use caps::{CapSet, Capability};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use crate::error::GoferError;

/// What the gofer keeps: reading and writing files whatever their owner
/// and mode (the sandbox's root user), and setting their owner and mode.
const KEPT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
];

/// fchmodat2's number (x86_64), which this libc does not name.
const SYS_FCHMODAT2: libc::c_long = 452;

/// The syscalls a serving gofer makes: the protocol's socket, the file
/// operations it serves, and what Rust's runtime needs (memory, signals,
/// exit, writing a diagnostic to stderr).
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_getsockopt,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_fcntl,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_fstatfs,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_lseek,
    // Truncation through a checked reopen; the gofer reads and writes no
    // file itself (the Sentry does, on the fds it passes).
    libc::SYS_ftruncate,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    // glibc's renameat2 with no flags is renameat.
    libc::SYS_renameat,
    libc::SYS_symlinkat,
    // SetAttr: on the handle's own fd with AT_EMPTY_PATH (fchmodat2 since
    // Linux 6.6, else fchmod on a checked reopen). fchmodat, which follows
    // symlinks, is not allowed.
    SYS_FCHMODAT2,
    libc::SYS_fchmod,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Confines the calling process to `root`: a private mount namespace,
/// chroot into `root`, the capabilities in `KEPT` only, then the syscall
/// allow-list. Afterwards `root` is `/`.
///
/// Run by a user without privileges, the gofer first enters a user
/// namespace of its own (its uid and gid mapped to themselves), which
/// gives it the right to the rest; where the host allows no user
/// namespace it serves without the mount namespace and chroot, and says
/// so on stderr.
pub fn confine(root: &Path) -> Result<(), GoferError> {
    let privileged = nix::unistd::geteuid().is_root();
    match enter_namespaces(privileged) {
        Ok(()) => {
            nix::unistd::chroot(root)?;
            nix::unistd::chdir("/")?;
            drop_capabilities()?;
        }
        Err(e) if !privileged => eprintln!(
            "cryo: warning: the gofer for {} runs without its own mount namespace and chroot: {e}",
            root.display()
        ),
        Err(e) => return Err(e),
    }
    seccompiler::apply_filter(&allow_list()?).map_err(|e| GoferError::Confine(e.to_string()))
}

/// A private mount namespace (in a user namespace of its own for an
/// unprivileged gofer): nothing mounted or unmounted here propagates back
/// to the host.
fn enter_namespaces(privileged: bool) -> Result<(), GoferError> {
    use nix::sched::CloneFlags;
    if privileged {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
    } else {
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
        // A process that is not dumpable (harden made it so) cannot write
        // its own maps: /proc/self belongs to root then.
        nix::sys::prctl::set_dumpable(true)?;
        let maps = (|| -> std::io::Result<()> {
            std::fs::write("/proc/self/setgroups", "deny")?;
            std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
            std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
        })();
        nix::sys::prctl::set_dumpable(false)?;
        maps?;
    }
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

fn drop_capabilities() -> Result<(), GoferError> {
    let kept: caps::CapsHashSet = KEPT.iter().copied().collect();
    let err = |e: caps::errors::CapsError| GoferError::Confine(e.to_string());
    for cap in caps::all() {
        if !kept.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(err)?;
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    let have = caps::read(None, CapSet::Permitted).map_err(err)?;
    let keep: caps::CapsHashSet = have.intersection(&kept).copied().collect();
    caps::set(None, CapSet::Effective, &keep).map_err(err)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err)?;
    Ok(())
}

/// The allow-list program: the syscalls in `ALLOWED` with any arguments,
/// anything else kills the process.
fn allow_list() -> Result<BpfProgram, GoferError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| GoferError::Confine(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| GoferError::Confine(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_compiles() {
        let prog = allow_list().unwrap();
        assert!(prog.len() > ALLOWED.len(), "one check per syscall at least");
    }
}
