//! The host syscalls the Sentry makes once it is locked down, one group
//! per reason, with argument checks where they are cheap. Anything else
//! kills the process (see `super::filters`).
//!
//! The ptrace platform's stubs are forked from the Sentry after the filter
//! is in place, so they inherit it: what a stub does itself (its start, the
//! syscalls the tracer injects through its page, the legacy vsyscall
//! numbers its own filter traps) is listed too. Application syscalls never
//! reach it there (PTRACE_SYSEMU stops them before seccomp runs); the
//! systrap stubs come from a zygote forked before the lock-down.

use seccompiler::{SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition, SeccompRule};

/// A syscall allowed whatever its arguments.
pub(super) const PLAIN: &[(&str, &[libc::c_long])] = &[
    (
        // Memory: the heap and thread stacks (malloc, std), the memory file
        // (grown with ftruncate, holes punched with fallocate), and what the
        // tracer injects into a ptrace stub to build its address space.
        "memory",
        &[
            libc::SYS_munmap,
            libc::SYS_mprotect,
            libc::SYS_madvise,
            libc::SYS_mremap,
            libc::SYS_brk,
            libc::SYS_ftruncate,
            libc::SYS_fallocate,
            libc::SYS_msync,
            libc::SYS_membarrier,
            libc::SYS_memfd_create,
        ],
    ),
    (
        // I/O on descriptors it already holds (stdio, the gofer's and
        // control sockets, the memory file, a statefile passed over the
        // control socket, pipes and eventfds of its own). No open(2) of any
        // kind is here: the Sentry opens no host file after boot.
        "descriptors",
        &[
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_readv,
            libc::SYS_writev,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_preadv2,
            libc::SYS_pwritev2,
            libc::SYS_lseek,
            libc::SYS_close,
            libc::SYS_close_range,
            libc::SYS_dup,
            libc::SYS_dup3,
            libc::SYS_fcntl,
            libc::SYS_fstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            libc::SYS_fstatfs,
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_sendfile,
            libc::SYS_splice,
            libc::SYS_copy_file_range,
            libc::SYS_pipe2,
            libc::SYS_eventfd2,
        ],
    ),
    (
        // Publishing a checkpoint: the statefile gets its name in the image
        // directory whose fd the checkpoint command passed (linkat,
        // renameat relative to that fd; see supervisor::publish), and the
        // removal of the sandbox's own --root entry through a descriptor
        // opened at boot (an OCI record's under its flock, taken on a
        // descriptor held: oci::state::HeldRecord).
        "publishing",
        &[
            libc::SYS_flock,
            libc::SYS_linkat,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_unlinkat,
            libc::SYS_getdents64,
        ],
    ),
    (
        // Opens: answered EACCES by a filter of their own (see
        // super::open_filter), never run.
        "opens", OPENS,
    ),
    (
        // Unix sockets already open: the control socket's connections
        // (checkpoint, exec, kill... with fds passed as SCM_RIGHTS), the
        // gofers' sockets, the systrap zygote's.
        "unix sockets",
        &[
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_shutdown,
            libc::SYS_getsockopt,
            libc::SYS_setsockopt,
            libc::SYS_getsockname,
            libc::SYS_getpeername,
        ],
    ),
    (
        // Waiting: futexes (std's locks, condvars, channels), epoll and
        // poll (stdio relays, the console), sleeps and timers.
        "waiting",
        &[
            libc::SYS_futex,
            libc::SYS_epoll_create1,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_pwait2,
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_pselect6,
            libc::SYS_nanosleep,
            libc::SYS_clock_nanosleep,
            libc::SYS_sched_yield,
            libc::SYS_timerfd_create,
            libc::SYS_timerfd_settime,
            libc::SYS_timerfd_gettime,
            libc::SYS_restart_syscall,
        ],
    ),
    (
        // Time, and the legacy vsyscall numbers (gettimeofday, time,
        // getcpu): a ptrace stub's own filter traps those to the tracer,
        // which a kill here would pre-empt.
        "time",
        &[
            libc::SYS_clock_gettime,
            libc::SYS_clock_getres,
            libc::SYS_gettimeofday,
            libc::SYS_time,
            libc::SYS_getcpu,
        ],
    ),
    (
        // Threads and signals: std's thread start and end, the signal
        // forwarding thread (sigwait), the tracer's interrupts (tgkill),
        // killing and reaping stubs (kill, wait4), binding tracers to CPUs.
        "threads and signals",
        &[
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_set_robust_list,
            libc::SYS_get_robust_list,
            libc::SYS_rseq,
            libc::SYS_set_tid_address,
            libc::SYS_gettid,
            libc::SYS_getpid,
            libc::SYS_getppid,
            libc::SYS_tgkill,
            libc::SYS_tkill,
            libc::SYS_kill,
            libc::SYS_wait4,
            libc::SYS_waitid,
            libc::SYS_rt_sigaction,
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigreturn,
            libc::SYS_rt_sigtimedwait,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
            libc::SYS_sigaltstack,
            libc::SYS_sched_getaffinity,
            libc::SYS_sched_setaffinity,
            libc::SYS_getpriority,
            libc::SYS_setpriority,
            libc::SYS_sched_getparam,
            libc::SYS_sched_getscheduler,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_send_signal,
        ],
    ),
    (
        // The platforms: ptrace of the Sentry's own stubs; a ptrace stub's
        // start (setsid, arch_prctl for cpuid faulting, capset to drop its
        // capabilities, pause in its clone entry) and the seccomp(2) of its
        // own filter, which the tracer injects; the Sentry's own
        // arch_prctl (TLS of new threads, cpuid faulting).
        "platform",
        &[
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_setsid,
            libc::SYS_arch_prctl,
            libc::SYS_capget,
            libc::SYS_capset,
            libc::SYS_seccomp,
            libc::SYS_pause,
        ],
    ),
    (
        // What the sandbox reports about itself: its memory (sysinfo,
        // /proc/meminfo), its usage (getrusage, times), limits it reads
        // (prlimit64 with no new limit is harmless; raising one needs a
        // capability it no longer has), ids, randomness (std's HashMap
        // keys, the guest's AT_RANDOM and getrandom).
        "information",
        &[
            libc::SYS_sysinfo,
            libc::SYS_getrusage,
            libc::SYS_times,
            libc::SYS_prlimit64,
            libc::SYS_getrlimit,
            libc::SYS_uname,
            libc::SYS_getuid,
            libc::SYS_geteuid,
            libc::SYS_getgid,
            libc::SYS_getegid,
            libc::SYS_getresuid,
            libc::SYS_getresgid,
            libc::SYS_getgroups,
            libc::SYS_getrandom,
        ],
    ),
];

/// Every way to open a file by name.
pub(super) const OPENS: &[libc::c_long] = &[libc::SYS_open, libc::SYS_openat, libc::SYS_openat2];

fn eq(arg: u8, len: Len, value: u64) -> SeccompCondition {
    // Only fails for an argument index over 5, which these never are.
    SeccompCondition::new(arg, len, Op::Eq, value).expect("a valid seccomp condition")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("a non-empty seccomp rule")
}

/// One rule per allowed value of argument `arg`.
fn one_of(arg: u8, len: Len, values: &[u64]) -> Vec<SeccompRule> {
    values
        .iter()
        .map(|&v| rule(vec![eq(arg, len.clone(), v)]))
        .collect()
}

/// Clone flags: a thread (std, glibc's pthread_create), a fork (the
/// ptrace platform's stubs, glibc's fork), a ptrace stub's own thread (the
/// injected clone), a systrap stub from its zygote.
const CLONE_FLAGS: &[u64] = &[
    (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64,
    (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64,
    (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64,
    (libc::CLONE_PARENT | libc::SIGCHLD) as u64,
];

/// The ioctl requests on host descriptors: a donated terminal's (the
/// sandbox's stdio on a tty answers the terminal ioctls from the host's,
/// see sentry::vfs::donated; the console's window size), and descriptor
/// flags.
const IOCTLS: &[u64] = &[
    libc::TCGETS,
    libc::TCSETS,
    libc::TCSETSW,
    libc::TCSETSF,
    libc::TIOCGWINSZ,
    libc::TIOCSWINSZ,
    libc::TIOCGPGRP,
    libc::TIOCSPGRP,
    libc::TIOCOUTQ,
    libc::TCFLSH,
    libc::TCXONC,
    libc::FIONREAD,
    libc::FIONBIO,
    libc::FIOCLEX,
    libc::FIONCLEX,
];

/// prctl options: thread names (std), a stub's parent-death signal and
/// no-new-privs, capability and dumpable queries (the caps crate), glibc's
/// names for its mappings (PR_SET_VMA).
const PRCTLS: &[u64] = &[
    libc::PR_SET_NAME as u64,
    libc::PR_GET_NAME as u64,
    libc::PR_SET_PDEATHSIG as u64,
    libc::PR_SET_NO_NEW_PRIVS as u64,
    libc::PR_GET_NO_NEW_PRIVS as u64,
    libc::PR_GET_DUMPABLE as u64,
    libc::PR_CAPBSET_READ as u64,
    libc::PR_CAP_AMBIENT as u64,
    libc::PR_GET_SECCOMP as u64,
    0x5356_4d41, // PR_SET_VMA
];

/// mmap flags the Sentry and its stubs use; any other bit (MAP_HUGETLB,
/// MAP_GROWSDOWN, MAP_32BIT, MAP_SYNC, MAP_UNINITIALIZED...) is refused.
const MMAP_FLAGS: u64 = (libc::MAP_SHARED
    | libc::MAP_PRIVATE
    | libc::MAP_SHARED_VALIDATE
    | libc::MAP_FIXED
    | libc::MAP_ANONYMOUS
    | libc::MAP_NORESERVE
    | libc::MAP_POPULATE
    | libc::MAP_STACK
    | libc::MAP_FIXED_NOREPLACE) as u64;

/// The syscalls allowed only with some arguments.
pub(super) fn checked() -> Vec<(libc::c_long, Vec<SeccompRule>)> {
    vec![
        // Sockets: Unix only (a gofer's socketpair, the systrap zygote's):
        // the sandbox's network stack is its own.
        (
            libc::SYS_socket,
            one_of(0, Len::Dword, &[libc::AF_UNIX as u64]),
        ),
        (
            libc::SYS_socketpair,
            one_of(0, Len::Dword, &[libc::AF_UNIX as u64]),
        ),
        (libc::SYS_clone, one_of(0, Len::Qword, CLONE_FLAGS)),
        // clone3's flags are in memory, out of a filter's reach: it is
        // allowed here and answered ENOSYS by the second filter, so glibc
        // falls back to clone, whose flags are checked.
        (libc::SYS_clone3, Vec::new()),
        (libc::SYS_ioctl, one_of(1, Len::Dword, IOCTLS)),
        (libc::SYS_prctl, one_of(0, Len::Dword, PRCTLS)),
        (
            libc::SYS_mmap,
            vec![rule(vec![SeccompCondition::new(
                3,
                Len::Dword,
                Op::MaskedEq(!MMAP_FLAGS & 0xffff_ffff),
                0,
            )
            .expect("a valid seccomp condition")])],
        ),
    ]
}
