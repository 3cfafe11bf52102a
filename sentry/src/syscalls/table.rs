//! The table from syscall number to handler (x86_64 numbering).

use std::sync::OnceLock;

use super::{fs, futex, info, mm, process, signal, time, Handler};

/// How strace shows an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A signed decimal integer (32-bit `int` arguments are shown sign-extended).
    Dec,
    /// An address or flags word.
    Hex,
    /// Octal (modes).
    Oct,
    /// A NUL-terminated path in application memory.
    Path,
    /// A buffer the application passes in, whose length is argument N.
    InBuf(usize),
    /// A buffer the kernel fills; the result is its length.
    OutBuf,
}

/// One row of the table.
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub handler: Handler,
    pub args: &'static [Arg],
}

use Arg::*;

fn build() -> Vec<Option<Entry>> {
    let mut t: Vec<Option<Entry>> = vec![None; 512];
    let mut reg = |nr: libc::c_long, name: &'static str, handler: Handler, args: &'static [Arg]| {
        if let Some(slot) = usize::try_from(nr).ok().and_then(|nr| t.get_mut(nr)) {
            *slot = Some(Entry {
                name,
                handler,
                args,
            });
        }
    };
    // fs: files, descriptors, directories, paths.
    reg(libc::SYS_read, "read", fs::read, &[Dec, OutBuf, Dec]);
    reg(libc::SYS_write, "write", fs::write, &[Dec, InBuf(2), Dec]);
    reg(
        libc::SYS_pread64,
        "pread64",
        fs::pread64,
        &[Dec, OutBuf, Dec, Dec],
    );
    reg(
        libc::SYS_pwrite64,
        "pwrite64",
        fs::pwrite64,
        &[Dec, InBuf(2), Dec, Dec],
    );
    reg(libc::SYS_readv, "readv", fs::readv, &[Dec, Hex, Dec]);
    reg(libc::SYS_writev, "writev", fs::writev, &[Dec, Hex, Dec]);
    reg(
        libc::SYS_preadv,
        "preadv",
        fs::preadv,
        &[Dec, Hex, Dec, Dec],
    );
    reg(
        libc::SYS_pwritev,
        "pwritev",
        fs::pwritev,
        &[Dec, Hex, Dec, Dec],
    );
    reg(libc::SYS_open, "open", fs::open, &[Path, Hex, Oct]);
    reg(
        libc::SYS_openat,
        "openat",
        fs::openat,
        &[Dec, Path, Hex, Oct],
    );
    reg(libc::SYS_creat, "creat", fs::creat, &[Path, Oct]);
    reg(libc::SYS_close, "close", fs::close, &[Dec]);
    reg(
        libc::SYS_close_range,
        "close_range",
        fs::close_range,
        &[Dec, Dec, Hex],
    );
    reg(libc::SYS_fstat, "fstat", fs::fstat, &[Dec, Hex]);
    reg(libc::SYS_stat, "stat", fs::stat, &[Path, Hex]);
    reg(libc::SYS_lstat, "lstat", fs::lstat, &[Path, Hex]);
    reg(
        libc::SYS_newfstatat,
        "newfstatat",
        fs::newfstatat,
        &[Dec, Path, Hex, Hex],
    );
    reg(
        libc::SYS_statx,
        "statx",
        fs::statx,
        &[Dec, Path, Hex, Hex, Hex],
    );
    reg(libc::SYS_lseek, "lseek", fs::lseek, &[Dec, Dec, Dec]);
    reg(
        libc::SYS_getdents64,
        "getdents64",
        fs::getdents64,
        &[Dec, Hex, Dec],
    );
    reg(
        libc::SYS_readlink,
        "readlink",
        fs::readlink,
        &[Path, OutBuf, Dec],
    );
    reg(
        libc::SYS_readlinkat,
        "readlinkat",
        fs::readlinkat,
        &[Dec, Path, OutBuf, Dec],
    );
    reg(libc::SYS_access, "access", fs::access, &[Path, Oct]);
    reg(
        libc::SYS_faccessat,
        "faccessat",
        fs::faccessat,
        &[Dec, Path, Oct],
    );
    reg(
        libc::SYS_faccessat2,
        "faccessat2",
        fs::faccessat2,
        &[Dec, Path, Oct, Hex],
    );
    reg(libc::SYS_fcntl, "fcntl", fs::fcntl, &[Dec, Dec, Hex]);
    reg(libc::SYS_ioctl, "ioctl", fs::ioctl, &[Dec, Hex, Hex]);
    reg(libc::SYS_dup, "dup", fs::dup, &[Dec]);
    reg(libc::SYS_dup2, "dup2", fs::dup2, &[Dec, Dec]);
    reg(libc::SYS_dup3, "dup3", fs::dup3, &[Dec, Dec, Hex]);
    reg(libc::SYS_pipe, "pipe", fs::pipe, &[Hex]);
    reg(libc::SYS_pipe2, "pipe2", fs::pipe2, &[Hex, Hex]);
    reg(libc::SYS_getcwd, "getcwd", fs::getcwd, &[OutBuf, Dec]);
    reg(libc::SYS_chdir, "chdir", fs::chdir, &[Path]);
    reg(libc::SYS_fchdir, "fchdir", fs::fchdir, &[Dec]);
    reg(libc::SYS_mkdir, "mkdir", fs::mkdir, &[Path, Oct]);
    reg(libc::SYS_mkdirat, "mkdirat", fs::mkdirat, &[Dec, Path, Oct]);
    reg(libc::SYS_unlink, "unlink", fs::unlink, &[Path]);
    reg(
        libc::SYS_unlinkat,
        "unlinkat",
        fs::unlinkat,
        &[Dec, Path, Hex],
    );
    reg(libc::SYS_rmdir, "rmdir", fs::rmdir, &[Path]);
    reg(libc::SYS_symlink, "symlink", fs::symlink, &[Path, Path]);
    reg(
        libc::SYS_symlinkat,
        "symlinkat",
        fs::symlinkat,
        &[Path, Dec, Path],
    );
    reg(libc::SYS_rename, "rename", fs::rename, &[Path, Path]);
    reg(
        libc::SYS_renameat,
        "renameat",
        fs::renameat,
        &[Dec, Path, Dec, Path],
    );
    reg(
        libc::SYS_renameat2,
        "renameat2",
        fs::renameat2,
        &[Dec, Path, Dec, Path, Hex],
    );
    reg(libc::SYS_truncate, "truncate", fs::truncate, &[Path, Dec]);
    reg(libc::SYS_ftruncate, "ftruncate", fs::ftruncate, &[Dec, Dec]);
    reg(libc::SYS_fsync, "fsync", fs::fsync, &[Dec]);
    reg(libc::SYS_fdatasync, "fdatasync", fs::fsync, &[Dec]);
    reg(
        libc::SYS_sendfile,
        "sendfile",
        fs::sendfile,
        &[Dec, Dec, Hex, Dec],
    );
    reg(libc::SYS_chmod, "chmod", fs::chmod, &[Path, Oct]);
    reg(libc::SYS_fchmod, "fchmod", fs::fchmod, &[Dec, Oct]);
    reg(
        libc::SYS_fchmodat,
        "fchmodat",
        fs::fchmodat,
        &[Dec, Path, Oct],
    );
    reg(
        libc::SYS_utimensat,
        "utimensat",
        fs::utimensat,
        &[Dec, Path, Hex, Hex],
    );
    reg(
        libc::SYS_fadvise64,
        "fadvise64",
        fs::fadvise64,
        &[Dec, Dec, Dec, Dec],
    );
    reg(
        libc::SYS_getxattr,
        "getxattr",
        fs::xattr_unsupported,
        &[Path, Path, Hex, Dec],
    );
    reg(
        libc::SYS_lgetxattr,
        "lgetxattr",
        fs::xattr_unsupported,
        &[Path, Path, Hex, Dec],
    );
    reg(
        libc::SYS_fgetxattr,
        "fgetxattr",
        fs::xattr_unsupported,
        &[Dec, Path, Hex, Dec],
    );
    reg(
        libc::SYS_listxattr,
        "listxattr",
        fs::xattr_unsupported,
        &[Path, Hex, Dec],
    );
    reg(
        libc::SYS_llistxattr,
        "llistxattr",
        fs::xattr_unsupported,
        &[Path, Hex, Dec],
    );
    reg(
        libc::SYS_flistxattr,
        "flistxattr",
        fs::xattr_unsupported,
        &[Dec, Hex, Dec],
    );
    // mm
    reg(
        libc::SYS_mmap,
        "mmap",
        mm::mmap,
        &[Hex, Dec, Hex, Hex, Dec, Hex],
    );
    reg(libc::SYS_munmap, "munmap", mm::munmap, &[Hex, Dec]);
    reg(
        libc::SYS_mprotect,
        "mprotect",
        mm::mprotect,
        &[Hex, Dec, Hex],
    );
    reg(
        libc::SYS_mremap,
        "mremap",
        mm::mremap,
        &[Hex, Dec, Dec, Hex, Hex],
    );
    reg(libc::SYS_brk, "brk", mm::brk, &[Hex]);
    reg(libc::SYS_madvise, "madvise", mm::madvise, &[Hex, Dec, Dec]);
    reg(libc::SYS_msync, "msync", mm::msync, &[Hex, Dec, Hex]);
    // process
    reg(libc::SYS_exit, "exit", process::exit, &[Dec]);
    reg(
        libc::SYS_exit_group,
        "exit_group",
        process::exit_group,
        &[Dec],
    );
    reg(libc::SYS_getpid, "getpid", process::getpid, &[]);
    reg(libc::SYS_gettid, "gettid", process::gettid, &[]);
    reg(libc::SYS_getppid, "getppid", process::getppid, &[]);
    reg(libc::SYS_getuid, "getuid", process::getuid, &[]);
    reg(libc::SYS_geteuid, "geteuid", process::geteuid, &[]);
    reg(libc::SYS_getgid, "getgid", process::getgid, &[]);
    reg(libc::SYS_getegid, "getegid", process::getegid, &[]);
    reg(
        libc::SYS_getresuid,
        "getresuid",
        process::getresuid,
        &[Hex, Hex, Hex],
    );
    reg(
        libc::SYS_getresgid,
        "getresgid",
        process::getresgid,
        &[Hex, Hex, Hex],
    );
    reg(
        libc::SYS_getgroups,
        "getgroups",
        process::getgroups,
        &[Dec, Hex],
    );
    reg(libc::SYS_getpgrp, "getpgrp", process::getpgrp, &[]);
    reg(libc::SYS_getpgid, "getpgid", process::getpgid, &[Dec]);
    reg(libc::SYS_getsid, "getsid", process::getsid, &[Dec]);
    reg(
        libc::SYS_set_tid_address,
        "set_tid_address",
        process::set_tid_address,
        &[Hex],
    );
    reg(
        libc::SYS_set_robust_list,
        "set_robust_list",
        process::set_robust_list,
        &[Hex, Dec],
    );
    reg(
        libc::SYS_arch_prctl,
        "arch_prctl",
        process::arch_prctl,
        &[Hex, Hex],
    );
    reg(
        libc::SYS_prlimit64,
        "prlimit64",
        process::prlimit64,
        &[Dec, Dec, Hex, Hex],
    );
    reg(
        libc::SYS_getrlimit,
        "getrlimit",
        process::getrlimit,
        &[Dec, Hex],
    );
    reg(
        libc::SYS_setrlimit,
        "setrlimit",
        process::setrlimit,
        &[Dec, Hex],
    );
    reg(libc::SYS_umask, "umask", process::umask, &[Oct]);
    reg(
        libc::SYS_sched_yield,
        "sched_yield",
        process::sched_yield,
        &[],
    );
    reg(
        libc::SYS_wait4,
        "wait4",
        process::wait4,
        &[Dec, Hex, Hex, Hex],
    );
    reg(
        libc::SYS_clone,
        "clone",
        process::clone,
        &[Hex, Hex, Hex, Hex, Hex],
    );
    reg(libc::SYS_clone3, "clone3", process::clone3, &[Hex, Dec]);
    reg(
        libc::SYS_execve,
        "execve",
        process::execve,
        &[Path, Hex, Hex],
    );
    reg(
        libc::SYS_futex,
        "futex",
        futex::futex,
        &[Hex, Dec, Dec, Hex, Hex, Dec],
    );
    // signals
    reg(
        libc::SYS_rt_sigaction,
        "rt_sigaction",
        signal::rt_sigaction,
        &[Dec, Hex, Hex, Dec],
    );
    reg(
        libc::SYS_rt_sigprocmask,
        "rt_sigprocmask",
        signal::rt_sigprocmask,
        &[Dec, Hex, Hex, Dec],
    );
    reg(libc::SYS_pause, "pause", signal::pause, &[]);
    reg(
        libc::SYS_rt_sigreturn,
        "rt_sigreturn",
        signal::rt_sigreturn,
        &[],
    );
    reg(
        libc::SYS_rt_sigpending,
        "rt_sigpending",
        signal::rt_sigpending,
        &[Hex, Dec],
    );
    reg(
        libc::SYS_sigaltstack,
        "sigaltstack",
        signal::sigaltstack,
        &[Hex, Hex],
    );
    reg(libc::SYS_kill, "kill", signal::kill, &[Dec, Dec]);
    reg(libc::SYS_tgkill, "tgkill", signal::tgkill, &[Dec, Dec, Dec]);
    reg(libc::SYS_tkill, "tkill", signal::tkill, &[Dec, Dec]);
    // time
    reg(
        libc::SYS_clock_gettime,
        "clock_gettime",
        time::clock_gettime,
        &[Dec, Hex],
    );
    reg(
        libc::SYS_clock_getres,
        "clock_getres",
        time::clock_getres,
        &[Dec, Hex],
    );
    reg(
        libc::SYS_gettimeofday,
        "gettimeofday",
        time::gettimeofday,
        &[Hex, Hex],
    );
    reg(libc::SYS_time, "time", time::time, &[Hex]);
    reg(
        libc::SYS_nanosleep,
        "nanosleep",
        time::nanosleep,
        &[Hex, Hex],
    );
    reg(
        libc::SYS_clock_nanosleep,
        "clock_nanosleep",
        time::clock_nanosleep,
        &[Dec, Hex, Hex, Hex],
    );
    reg(
        libc::SYS_restart_syscall,
        "restart_syscall",
        time::restart_syscall,
        &[],
    );
    // system information
    reg(libc::SYS_uname, "uname", info::uname, &[Hex]);
    reg(
        libc::SYS_sethostname,
        "sethostname",
        info::sethostname,
        &[Hex, Dec],
    );
    reg(libc::SYS_sysinfo, "sysinfo", info::sysinfo, &[Hex]);
    reg(
        libc::SYS_getrandom,
        "getrandom",
        info::getrandom,
        &[OutBuf, Dec, Hex],
    );
    t
}

static TABLE: OnceLock<Vec<Option<Entry>>> = OnceLock::new();

/// The handler of syscall `nr`, if cryo implements it.
pub fn lookup(nr: u64) -> Option<&'static Entry> {
    let table = TABLE.get_or_init(build);
    table.get(usize::try_from(nr).ok()?)?.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_match_the_kernel_names() {
        for nr in 0..512u64 {
            if let Some(e) = lookup(nr) {
                assert_eq!(Some(e.name), crate::arch::syscall_name(nr), "syscall {nr}");
                assert!(e.args.len() <= 6);
            }
        }
        assert!(
            lookup(libc::SYS_rseq as u64).is_none(),
            "rseq is ENOSYS, as in gVisor"
        );
        assert!(lookup(9999).is_none());
    }
}
