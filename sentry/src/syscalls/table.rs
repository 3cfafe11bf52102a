//! The table from syscall to handler. Rows name syscalls as Linux does
//! (`openat`, `clone3`); the architecture numbers them
//! ([`crate::arch::syscall_number`]) and adds its own syscalls
//! ([`crate::arch::ARCH_SYSCALLS`]). A row whose name the architecture does
//! not have (`open` on arm64) is left out there.

use std::sync::OnceLock;

use super::{
    capability, fs, futex, info, locks, mm, mount, net, poll, process, sched, signal, thread, time,
    Handler,
};

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

/// The rows every architecture shares, by name.
fn generic_rows() -> Vec<Entry> {
    let mut t = Vec::new();
    let mut reg = |name: &'static str, handler: Handler, args: &'static [Arg]| {
        t.push(Entry {
            name,
            handler,
            args,
        });
    };
    // fs: files, descriptors, directories, paths.
    reg("read", fs::read, &[Dec, OutBuf, Dec]);
    reg("write", fs::write, &[Dec, InBuf(2), Dec]);
    reg("pread64", fs::pread64, &[Dec, OutBuf, Dec, Dec]);
    reg("pwrite64", fs::pwrite64, &[Dec, InBuf(2), Dec, Dec]);
    reg("readv", fs::readv, &[Dec, Hex, Dec]);
    reg("writev", fs::writev, &[Dec, Hex, Dec]);
    reg("preadv", fs::preadv, &[Dec, Hex, Dec, Dec]);
    reg("pwritev", fs::pwritev, &[Dec, Hex, Dec, Dec]);
    reg("open", fs::open, &[Path, Hex, Oct]);
    reg("openat", fs::openat, &[Dec, Path, Hex, Oct]);
    reg("creat", fs::creat, &[Path, Oct]);
    reg("close", fs::close, &[Dec]);
    reg("close_range", fs::close_range, &[Dec, Dec, Hex]);
    reg("fstat", fs::fstat, &[Dec, Hex]);
    reg("stat", fs::stat, &[Path, Hex]);
    reg("lstat", fs::lstat, &[Path, Hex]);
    reg("newfstatat", fs::newfstatat, &[Dec, Path, Hex, Hex]);
    reg("statx", fs::statx, &[Dec, Path, Hex, Hex, Hex]);
    reg("lseek", fs::lseek, &[Dec, Dec, Dec]);
    reg("getdents64", fs::getdents64, &[Dec, Hex, Dec]);
    reg("readlink", fs::readlink, &[Path, OutBuf, Dec]);
    reg("readlinkat", fs::readlinkat, &[Dec, Path, OutBuf, Dec]);
    reg("access", fs::access, &[Path, Oct]);
    reg("faccessat", fs::faccessat, &[Dec, Path, Oct]);
    reg("faccessat2", fs::faccessat2, &[Dec, Path, Oct, Hex]);
    reg("fcntl", fs::fcntl, &[Dec, Dec, Hex]);
    reg("flock", locks::flock, &[Dec, Dec]);
    reg("ioctl", fs::ioctl, &[Dec, Hex, Hex]);
    reg("dup", fs::dup, &[Dec]);
    reg("dup2", fs::dup2, &[Dec, Dec]);
    reg("dup3", fs::dup3, &[Dec, Dec, Hex]);
    reg("pipe", fs::pipe, &[Hex]);
    reg("pipe2", fs::pipe2, &[Hex, Hex]);
    reg("eventfd", fs::eventfd, &[Dec]);
    reg("eventfd2", fs::eventfd2, &[Dec, Hex]);
    reg("getcwd", fs::getcwd, &[OutBuf, Dec]);
    reg("chdir", fs::chdir, &[Path]);
    reg("fchdir", fs::fchdir, &[Dec]);
    reg("mkdir", fs::mkdir, &[Path, Oct]);
    reg("mkdirat", fs::mkdirat, &[Dec, Path, Oct]);
    reg("mknod", fs::mknod, &[Path, Oct, Hex]);
    reg("mknodat", fs::mknodat, &[Dec, Path, Oct, Hex]);
    reg("unlink", fs::unlink, &[Path]);
    reg("unlinkat", fs::unlinkat, &[Dec, Path, Hex]);
    reg("rmdir", fs::rmdir, &[Path]);
    reg("link", fs::link, &[Path, Path]);
    reg("chown", fs::chown, &[Path, Dec, Dec]);
    reg("lchown", fs::lchown, &[Path, Dec, Dec]);
    reg("fchown", fs::fchown, &[Dec, Dec, Dec]);
    reg("fchownat", fs::fchownat, &[Dec, Path, Dec, Dec, Hex]);
    reg("statfs", fs::statfs, &[Path, Hex]);
    reg("fstatfs", fs::fstatfs, &[Dec, Hex]);
    reg("linkat", fs::linkat, &[Dec, Path, Dec, Path, Hex]);
    reg("symlink", fs::symlink, &[Path, Path]);
    reg("symlinkat", fs::symlinkat, &[Path, Dec, Path]);
    reg("rename", fs::rename, &[Path, Path]);
    reg("renameat", fs::renameat, &[Dec, Path, Dec, Path]);
    reg("renameat2", fs::renameat2, &[Dec, Path, Dec, Path, Hex]);
    reg("truncate", fs::truncate, &[Path, Dec]);
    reg("ftruncate", fs::ftruncate, &[Dec, Dec]);
    reg("fsync", fs::fsync, &[Dec]);
    reg("fdatasync", fs::fsync, &[Dec]);
    reg("sendfile", fs::sendfile, &[Dec, Dec, Hex, Dec]);
    reg("splice", fs::splice, &[Dec, Hex, Dec, Hex, Dec, Hex]);
    reg("tee", fs::tee, &[Dec, Dec, Dec, Hex]);
    reg("vmsplice", fs::vmsplice, &[Dec, Hex, Dec, Hex]);
    reg(
        "copy_file_range",
        fs::copy_file_range,
        &[Dec, Hex, Dec, Hex, Dec, Hex],
    );
    reg("fallocate", fs::fallocate, &[Dec, Hex, Dec, Dec]);
    reg("chmod", fs::chmod, &[Path, Oct]);
    reg("fchmod", fs::fchmod, &[Dec, Oct]);
    reg("fchmodat", fs::fchmodat, &[Dec, Path, Oct]);
    reg("utimensat", fs::utimensat, &[Dec, Path, Hex, Hex]);
    reg("fadvise64", fs::fadvise64, &[Dec, Dec, Dec, Dec]);
    reg("memfd_create", fs::memfd_create, &[Path, Hex]);
    reg("inotify_init", fs::inotify_init, &[]);
    reg("inotify_init1", fs::inotify_init1, &[Hex]);
    reg(
        "inotify_add_watch",
        fs::inotify_add_watch,
        &[Dec, Path, Hex],
    );
    reg("inotify_rm_watch", fs::inotify_rm_watch, &[Dec, Dec]);
    reg("getxattr", fs::getxattr, &[Path, Path, Hex, Dec]);
    reg("lgetxattr", fs::lgetxattr, &[Path, Path, Hex, Dec]);
    reg("fgetxattr", fs::fgetxattr, &[Dec, Path, Hex, Dec]);
    reg("setxattr", fs::setxattr, &[Path, Path, Hex, Dec, Hex]);
    reg("lsetxattr", fs::lsetxattr, &[Path, Path, Hex, Dec, Hex]);
    reg("fsetxattr", fs::fsetxattr, &[Dec, Path, Hex, Dec, Hex]);
    reg("listxattr", fs::listxattr, &[Path, Hex, Dec]);
    reg("llistxattr", fs::llistxattr, &[Path, Hex, Dec]);
    reg("flistxattr", fs::flistxattr, &[Dec, Hex, Dec]);
    reg("removexattr", fs::removexattr, &[Path, Path]);
    reg("lremovexattr", fs::lremovexattr, &[Path, Path]);
    reg("fremovexattr", fs::fremovexattr, &[Dec, Path]);
    // mm
    reg("mmap", mm::mmap, &[Hex, Dec, Hex, Hex, Dec, Hex]);
    reg("munmap", mm::munmap, &[Hex, Dec]);
    reg("mprotect", mm::mprotect, &[Hex, Dec, Hex]);
    reg("mremap", mm::mremap, &[Hex, Dec, Dec, Hex, Hex]);
    reg("brk", mm::brk, &[Hex]);
    reg("madvise", mm::madvise, &[Hex, Dec, Dec]);
    reg("msync", mm::msync, &[Hex, Dec, Hex]);
    // process
    reg("exit", thread::exit, &[Dec]);
    reg("exit_group", thread::exit_group, &[Dec]);
    reg("getpid", process::getpid, &[]);
    reg("gettid", process::gettid, &[]);
    reg("getppid", process::getppid, &[]);
    reg("getuid", process::getuid, &[]);
    reg("geteuid", process::geteuid, &[]);
    reg("getgid", process::getgid, &[]);
    reg("getegid", process::getegid, &[]);
    reg("getresuid", process::getresuid, &[Hex, Hex, Hex]);
    reg("getresgid", process::getresgid, &[Hex, Hex, Hex]);
    reg("getgroups", process::getgroups, &[Dec, Hex]);
    reg("getpgrp", thread::getpgrp, &[]);
    reg("getpgid", thread::getpgid, &[Dec]);
    reg("getsid", thread::getsid, &[Dec]);
    reg("setpgid", thread::setpgid, &[Dec, Dec]);
    reg("setsid", thread::setsid, &[]);
    reg("set_tid_address", process::set_tid_address, &[Hex]);
    reg("set_robust_list", process::set_robust_list, &[Hex, Dec]);
    reg("prlimit64", process::prlimit64, &[Dec, Dec, Hex, Hex]);
    reg("getrlimit", process::getrlimit, &[Dec, Hex]);
    reg("setrlimit", process::setrlimit, &[Dec, Hex]);
    reg("umask", process::umask, &[Oct]);
    reg("sched_yield", process::sched_yield, &[]);
    reg("wait4", thread::wait4, &[Dec, Hex, Hex, Hex]);
    reg("waitid", thread::waitid, &[Dec, Dec, Hex, Hex, Hex]);
    reg("clone", thread::clone, &[Hex, Hex, Hex, Hex, Hex]);
    reg("clone3", thread::clone3, &[Hex, Dec]);
    reg("execve", thread::execve, &[Path, Hex, Hex]);
    reg("execveat", thread::execveat, &[Dec, Path, Hex, Hex, Hex]);
    reg("pidfd_open", thread::pidfd_open, &[Dec, Hex]);
    reg("unshare", thread::unshare, &[Hex]);
    reg("pidfd_getfd", thread::pidfd_getfd, &[Dec, Dec, Hex]);
    reg(
        "pidfd_send_signal",
        thread::pidfd_send_signal,
        &[Dec, Dec, Hex, Hex],
    );
    reg("futex", futex::futex, &[Hex, Dec, Dec, Hex, Hex, Dec]);
    reg("prctl", sched::prctl, &[Dec, Hex, Hex, Hex, Hex]);
    reg("capget", capability::capget, &[Hex, Hex]);
    reg("capset", capability::capset, &[Hex, Hex]);
    reg("getcpu", sched::getcpu, &[Hex, Hex, Hex]);
    reg(
        "sched_getaffinity",
        sched::sched_getaffinity,
        &[Dec, Dec, Hex],
    );
    reg(
        "sched_setaffinity",
        sched::sched_setaffinity,
        &[Dec, Dec, Hex],
    );
    reg("sched_getscheduler", sched::sched_getscheduler, &[Dec]);
    reg("sched_getparam", sched::sched_getparam, &[Dec, Hex]);
    reg(
        "sched_get_priority_max",
        sched::sched_get_priority_max,
        &[Dec],
    );
    reg(
        "sched_get_priority_min",
        sched::sched_get_priority_min,
        &[Dec],
    );
    reg("getpriority", sched::getpriority, &[Dec, Dec]);
    reg("setpriority", sched::setpriority, &[Dec, Dec, Dec]);
    reg("getrusage", sched::getrusage, &[Dec, Hex]);
    reg("times", sched::times, &[Hex]);
    reg("setuid", sched::setuid, &[Dec]);
    reg("setgid", sched::setgid, &[Dec]);
    reg("setreuid", sched::setreuid, &[Dec, Dec]);
    reg("setregid", sched::setregid, &[Dec, Dec]);
    reg("setresuid", sched::setresuid, &[Dec, Dec, Dec]);
    reg("setresgid", sched::setresgid, &[Dec, Dec, Dec]);
    reg("setgroups", sched::setgroups, &[Dec, Hex]);
    reg("setfsuid", sched::setfsuid, &[Dec]);
    reg("setfsgid", sched::setfsgid, &[Dec]);
    // signals
    reg("rt_sigaction", signal::rt_sigaction, &[Dec, Hex, Hex, Dec]);
    reg(
        "rt_sigprocmask",
        signal::rt_sigprocmask,
        &[Dec, Hex, Hex, Dec],
    );
    reg("pause", signal::pause, &[]);
    reg("rt_sigreturn", signal::rt_sigreturn, &[]);
    reg("rt_sigpending", signal::rt_sigpending, &[Hex, Dec]);
    reg("sigaltstack", signal::sigaltstack, &[Hex, Hex]);
    reg("kill", signal::kill, &[Dec, Dec]);
    reg("tgkill", signal::tgkill, &[Dec, Dec, Dec]);
    reg("tkill", signal::tkill, &[Dec, Dec]);
    reg("rt_sigsuspend", signal::rt_sigsuspend, &[Hex, Dec]);
    reg(
        "rt_sigtimedwait",
        signal::rt_sigtimedwait,
        &[Hex, Hex, Hex, Dec],
    );
    reg("rt_sigqueueinfo", signal::rt_sigqueueinfo, &[Dec, Dec, Hex]);
    reg(
        "rt_tgsigqueueinfo",
        signal::rt_tgsigqueueinfo,
        &[Dec, Dec, Dec, Hex],
    );
    reg("signalfd", signal::signalfd, &[Dec, Hex, Dec]);
    reg("signalfd4", signal::signalfd4, &[Dec, Hex, Dec, Hex]);
    // waiting on many files
    reg("poll", poll::poll, &[Hex, Dec, Dec]);
    reg("ppoll", poll::ppoll, &[Hex, Dec, Hex, Hex, Dec]);
    reg("select", poll::select, &[Dec, Hex, Hex, Hex, Hex]);
    reg("pselect6", poll::pselect6, &[Dec, Hex, Hex, Hex, Hex, Hex]);
    reg("epoll_create", poll::epoll_create, &[Dec]);
    reg("epoll_create1", poll::epoll_create1, &[Hex]);
    reg("epoll_ctl", poll::epoll_ctl, &[Dec, Dec, Dec, Hex]);
    reg("epoll_wait", poll::epoll_wait, &[Dec, Hex, Dec, Dec]);
    reg(
        "epoll_pwait",
        poll::epoll_pwait,
        &[Dec, Hex, Dec, Dec, Hex, Dec],
    );
    reg(
        "epoll_pwait2",
        poll::epoll_pwait2,
        &[Dec, Hex, Dec, Hex, Hex, Dec],
    );
    // time
    reg("clock_gettime", time::clock_gettime, &[Dec, Hex]);
    reg("clock_getres", time::clock_getres, &[Dec, Hex]);
    reg("gettimeofday", time::gettimeofday, &[Hex, Hex]);
    reg("time", time::time, &[Hex]);
    reg("nanosleep", time::nanosleep, &[Hex, Hex]);
    reg(
        "clock_nanosleep",
        time::clock_nanosleep,
        &[Dec, Hex, Hex, Hex],
    );
    reg("restart_syscall", time::restart_syscall, &[]);
    reg("alarm", time::alarm, &[Dec]);
    reg("setitimer", time::setitimer, &[Dec, Hex, Hex]);
    reg("getitimer", time::getitimer, &[Dec, Hex]);
    reg("timerfd_create", time::timerfd_create, &[Dec, Hex]);
    reg(
        "timerfd_settime",
        time::timerfd_settime,
        &[Dec, Hex, Hex, Hex],
    );
    reg("timerfd_gettime", time::timerfd_gettime, &[Dec, Hex]);
    reg("timer_create", time::timer_create, &[Dec, Hex, Hex]);
    reg("timer_settime", time::timer_settime, &[Dec, Hex, Hex, Hex]);
    reg("timer_gettime", time::timer_gettime, &[Dec, Hex]);
    reg("timer_getoverrun", time::timer_getoverrun, &[Dec]);
    reg("timer_delete", time::timer_delete, &[Dec]);
    // system information
    // net: sockets (only AF_UNIX).
    reg("socket", net::socket, &[Dec, Hex, Dec]);
    reg("socketpair", net::socketpair, &[Dec, Hex, Dec, Hex]);
    reg("bind", net::bind, &[Dec, Hex, Dec]);
    reg("listen", net::listen, &[Dec, Dec]);
    reg("accept", net::accept, &[Dec, Hex, Hex]);
    reg("accept4", net::accept4, &[Dec, Hex, Hex, Hex]);
    reg("connect", net::connect, &[Dec, Hex, Dec]);
    reg("getpeername", net::getpeername, &[Dec, Hex, Hex]);
    reg("getsockname", net::getsockname, &[Dec, Hex, Hex]);
    reg("getsockopt", net::getsockopt, &[Dec, Dec, Dec, Hex, Hex]);
    reg("setsockopt", net::setsockopt, &[Dec, Dec, Dec, Hex, Dec]);
    reg("shutdown", net::shutdown, &[Dec, Dec]);
    reg("sendto", net::sendto, &[Dec, InBuf(2), Dec, Hex, Hex, Dec]);
    reg(
        "recvfrom",
        net::recvfrom,
        &[Dec, OutBuf, Dec, Hex, Hex, Hex],
    );
    reg("sendmsg", net::sendmsg, &[Dec, Hex, Hex]);
    reg("recvmsg", net::recvmsg, &[Dec, Hex, Hex]);
    reg("sendmmsg", net::sendmmsg, &[Dec, Hex, Dec, Hex]);
    reg("recvmmsg", net::recvmmsg, &[Dec, Hex, Dec, Hex, Hex]);
    reg("uname", info::uname, &[Hex]);
    reg("sethostname", info::sethostname, &[Hex, Dec]);
    reg("setdomainname", info::setdomainname, &[Hex, Dec]);
    reg("chroot", mount::chroot, &[Path]);
    reg("mount", mount::mount, &[Path, Path, Path, Hex, Hex]);
    reg("umount2", mount::umount2, &[Path, Hex]);
    reg("pivot_root", mount::pivot_root, &[Path, Path]);
    reg("sysinfo", info::sysinfo, &[Hex]);
    reg("getrandom", info::getrandom, &[OutBuf, Dec, Hex]);
    t
}

/// Indexed by this architecture's syscall numbers.
fn build() -> Vec<Option<Entry>> {
    let mut t: Vec<Option<Entry>> = vec![None; 512];
    let rows = generic_rows();
    for e in rows.iter().chain(crate::arch::ARCH_SYSCALLS) {
        let Some(nr) = crate::arch::syscall_number(e.name) else {
            continue;
        };
        if let Some(slot) = usize::try_from(nr).ok().and_then(|nr| t.get_mut(nr)) {
            *slot = Some(*e);
        }
    }
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
        let rseq = crate::arch::syscall_number("rseq").unwrap();
        assert!(lookup(rseq).is_none(), "rseq is ENOSYS, as in gVisor");
        assert!(lookup(9999).is_none());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_row_has_an_x86_64_number() {
        // A misspelt name would silently drop a syscall to ENOSYS.
        let rows = generic_rows();
        for e in rows.iter().chain(crate::arch::ARCH_SYSCALLS) {
            let nr = crate::arch::syscall_number(e.name);
            assert!(nr.is_some(), "{} has no x86_64 number", e.name);
            assert_eq!(lookup(nr.unwrap()).map(|l| l.name), Some(e.name));
        }
        assert_eq!(crate::arch::syscall_number("read"), Some(0));
        assert_eq!(
            crate::arch::syscall_number("openat"),
            Some(libc::SYS_openat as u64)
        );
        assert_eq!(
            crate::arch::syscall_number("clone3"),
            Some(libc::SYS_clone3 as u64)
        );
        assert_eq!(crate::arch::syscall_number("no_such_call"), None);
    }
}
