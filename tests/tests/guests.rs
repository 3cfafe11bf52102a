//! Our own static C guests (tests/guests/*.c), one test each: run natively
//! and under cryo, and compare exit status, stdout and stderr.

use cryo_tests::{assert_same, guest, Invocation, Libc, Output};

/// How a guest is run: arguments, extra environment, stdin and the exit
/// status it must have natively (a guest that fails natively is a bug in
/// the guest, reported as such before cryo is even tried).
struct Spec {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    stdin: &'static [u8],
    exit: i32,
    /// It mounts file systems: natively it runs in a mount namespace of
    /// its own (`unshare -m`), so nothing reaches the host's tree.
    own_mounts: bool,
}

const fn spec(name: &'static str) -> Spec {
    Spec {
        name,
        args: &[],
        env: &[],
        stdin: b"",
        exit: 0,
        own_mounts: false,
    }
}

const SPECS: &[Spec] = &[
    spec("hello"),
    Spec {
        stdin: b"stdin for the rw guest\n",
        ..spec("rw")
    },
    spec("stat"),
    spec("getdents"),
    spec("links"),
    spec("fcntl"),
    spec("ioctl"),
    spec("dup"),
    spec("pipe"),
    spec("cwd"),
    spec("mmap"),
    spec("mprotect"),
    spec("mremap"),
    spec("brk"),
    spec("madvise"),
    // vm.max_map_count: mappings up to the limit, and what refuses there.
    spec("map_count"),
    // rt_sigreturn through forged frames: segments, rip, eflags, FP state.
    spec("sigreturn_forged"),
    // clone(CLONE_FS) sharing cwd/umask/root, CLONE_PARENT siblings.
    spec("clone_fs_parent"),
    // MADV_DONTFORK/DOFORK/WIPEONFORK/KEEPONFORK seen from children.
    spec("madvise_fork"),
    // unshare(CLONE_FILES / CLONE_FS) from a sharing child; EINVAL cases.
    spec("unshare"),
    // RLIMIT_STACK set before exec bounds the new image's stack growth.
    spec("stack_limit"),
    spec("stack"),
    spec("tls"),
    spec("rlimit"),
    spec("random"),
    spec("uname"),
    spec("ids"),
    spec("clock"),
    // The vDSO as programs find it (tests/tests/vdso.rs: dynamic builds,
    // no traps, checkpoint).
    spec("vdso"),
    // Interrupted sleeps: EINTR, and `rem` written only by relative ones.
    spec("sleep_rem"),
    spec("sleep_after_signal"),
    spec("hardlinks"),
    spec("statfs"),
    spec("kill_perm"),
    // Capabilities as credentials, each privilege dropped in turn.
    spec("caps"),
    spec("pdeathsig"),
    spec("untouched_write"),
    spec("procfs_self"),
    spec("chown"),
    spec("sysinfo"),
    spec("fifo"),
    spec("splice"),
    spec("perms"),
    spec("fallocate"),
    spec("sigio"),
    // memfd_create and file seals (their effect on write, truncate,
    // fallocate and mmap), errnos compared with Linux.
    spec("memfd"),
    Spec {
        args: &["2"],
        ..spec("ckpt_memfd")
    },
    // vmsplice(2) into and out of pipes.
    spec("vmsplice"),
    // linkat(2) naming O_TMPFILE files (AT_EMPTY_PATH, /proc/self/fd).
    spec("tmpfile_link"),
    // lseek SEEK_DATA/SEEK_HOLE on tmpfs files: pages held are data.
    spec("seek_data"),
    // Extended attributes on tmpfs and the overlay's upper layer.
    spec("xattr"),
    // inotify: every event kind, the watch flags, readiness and errnos.
    spec("inotify"),
    Spec {
        args: &["2"],
        ..spec("ckpt_holding")
    },
    // Files with no name (O_TMPFILE, unlinked while open), compared with
    // Linux; checkpoint_unlinked.rs checkpoints the same guest.
    Spec {
        args: &["2"],
        ..spec("ckpt_unlinked")
    },
    // Mappings of files with no name (memfds, O_TMPFILE, unlinked while
    // mapped), compared with Linux; checkpoint_memfd.rs checkpoints it.
    Spec {
        args: &["2"],
        ..spec("ckpt_unnamed_map")
    },
    // SIGBUS from shared-mapping faults past a size=64k tmpfs's limit and
    // past a file's end, as a handler sees them.
    Spec {
        own_mounts: true,
        ..spec("tmpfs_sigbus")
    },
    Spec {
        exit: 3,
        ..spec("exit_group")
    },
    Spec {
        exit: 7,
        ..spec("exit_thread")
    },
    Spec {
        exit: 3,
        ..spec("atexit")
    },
    spec("bigwrite"),
    Spec {
        args: &["alpha", "beta gamma", ""],
        env: &[("CRYO_GUEST_VAR", "value with spaces=and equals")],
        ..spec("auxv")
    },
    spec("copyfile"),
    Spec {
        exit: 3,
        ..spec("errno")
    },
    spec("enosys"),
    spec("tmp_roundtrip"),
    // Ends with exit(5) from a thread other than main.
    Spec {
        exit: 5,
        ..spec("threads")
    },
    spec("condvar"),
    // Ends by raising SIGUSR1 with its default action: killed, 128 + 10.
    Spec {
        exit: 128 + libc::SIGUSR1,
        ..spec("signals")
    },
    // Ends with a SIGALRM whose default action kills: 128 + 14.
    Spec {
        exit: 128 + libc::SIGALRM,
        ..spec("itimers")
    },
    // Waiting on many things (poll, select, epoll, eventfd, timerfd,
    // signalfd, POSIX timers, sigtimedwait, sigsuspend).
    spec("epoll"),
    spec("poll"),
    spec("timers"),
    spec("sigwait"),
    spec("wakeups"),
    // Processes: fork trees, wait4/waitid, SIGCHLD, vfork.
    spec("fork_tree"),
    // Job control, sessions, process groups, execve from a thread.
    spec("job_control"),
    // Orphans go to a subreaper; CLONE_SETTLS with a kernel address.
    spec("orphans"),
    // pidfd_open, pidfd_send_signal, pidfd_getfd, waitid(P_PIDFD), CLONE_PIDFD.
    spec("pidfd"),
    // PIDFD_THREAD pidfds and pidfd_send_signal's scope flags.
    spec("pidfd_thread"),
    // A kill() to a process whose threads all block it: pending on the
    // process (sigpending in every thread), taken once, by sigtimedwait in
    // one thread or by the first thread to unblock it.
    spec("shared_pending"),
    // rt_sigtimedwait unblocks its set for the wait: a process signal goes
    // to the waiting thread, not to another's handler.
    spec("sigwait_thread"),
    // /proc/self/fdinfo: pos, flags, mnt_id and each kind's own lines.
    spec("fdinfo"),
    // Waiting on a process group, execveat, clone3, epoll_pwait2, a
    // process-directed SIGALRM taken by the thread that does not block
    // it, sleeps that default-ignored signals do not cut short.
    spec("proc_calls"),
    // Pseudo-terminals, the line discipline and terminal job control.
    spec("pty"),
    // Unix domain sockets: streams, datagrams and seqpackets, names,
    // SCM_RIGHTS/SCM_CREDENTIALS between forked processes, errnos.
    spec("unix_stream"),
    spec("unix_dgram"),
    spec("unix_rights"),
    spec("unix_names"),
    // Ten thousand sockets, a thousand connections, then EMFILE.
    spec("unix_many"),
    // 8 MiB, 5 lines: the checkpoint workload, run to completion.
    Spec {
        args: &["8", "/etc/passwd", "5"],
        ..spec("ckpt_counter")
    },
];

/// Guests also built with musl-gcc (the others use glibc-only headers such
/// as `struct statx` or `<asm/prctl.h>`). Keep in step with `musl_tests!`.
const MUSL_GUESTS: &[&str] = &[
    "hello",
    "rw",
    "getdents",
    "mmap",
    "clock",
    "vdso",
    "sleep_rem",
    "auxv",
    "copyfile",
    "errno",
    "signals",
    "threads",
    "condvar",
    "itimers",
    "epoll",
    "poll",
    "timers",
    "sigwait",
    "wakeups",
    "pty",
    "tmpfs_sigbus",
];

fn invocation(name: &str, libc: Libc) -> Invocation {
    let spec = SPECS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no spec for guest {name}"));
    let bin = guest(name, libc);
    let mut inv = Invocation::new(bin).args(spec.args).stdin(spec.stdin);
    for (k, v) in spec.env {
        inv = inv.env(k, v);
    }
    inv
}

/// A native run of `name` (in a mount namespace of its own if it mounts).
fn native(name: &str, inv: &Invocation) -> Output {
    let own_mounts = SPECS.iter().any(|s| s.name == name && s.own_mounts);
    if own_mounts {
        inv.native_in_private_mount_ns()
    } else {
        inv.native()
    }
}

fn expected_exit(name: &str) -> i32 {
    SPECS
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.exit)
        .expect("spec exists")
}

fn check_native(name: &str, out: &Output) {
    assert_eq!(
        out.code,
        expected_exit(name),
        "guest {name} misbehaves natively (a guest bug, not a cryo bug)\nstdout:\n{}\nstderr:\n{}",
        out.stdout_str(),
        out.stderr_str()
    );
}

/// Runs guest `name` natively and under cryo and compares the two.
fn run(name: &str, libc: Libc) {
    let inv = invocation(name, libc);
    let native = native(name, &inv);
    check_native(name, &native);
    let cryo = inv.cryo();
    assert_same(&native, &cryo);
}

macro_rules! guest_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), Libc::Glibc);
            }
        )*
    };
}

guest_tests!(
    unix_stream,
    unix_dgram,
    unix_rights,
    unix_names,
    unix_many,
    fork_tree,
    job_control,
    orphans,
    pidfd,
    pidfd_thread,
    shared_pending,
    sigwait_thread,
    fdinfo,
    proc_calls,
    clone_fs_parent,
    madvise_fork,
    unshare,
    stack_limit,
    pty,
    hello,
    rw,
    stat,
    getdents,
    links,
    fcntl,
    ioctl,
    dup,
    pipe,
    cwd,
    mmap,
    mprotect,
    mremap,
    brk,
    madvise,
    map_count,
    sigreturn_forged,
    stack,
    tls,
    rlimit,
    random,
    uname,
    ids,
    clock,
    vdso,
    sleep_rem,
    sleep_after_signal,
    hardlinks,
    statfs,
    kill_perm,
    caps,
    pdeathsig,
    untouched_write,
    procfs_self,
    chown,
    sysinfo,
    fifo,
    splice,
    perms,
    fallocate,
    sigio,
    memfd,
    ckpt_memfd,
    inotify,
    xattr,
    seek_data,
    tmpfile_link,
    vmsplice,
    ckpt_holding,
    ckpt_unlinked,
    ckpt_unnamed_map,
    tmpfs_sigbus,
    exit_group,
    exit_thread,
    atexit,
    bigwrite,
    auxv,
    copyfile,
    errno,
    enosys,
    tmp_roundtrip,
    signals,
    threads,
    condvar,
    itimers,
    epoll,
    poll,
    timers,
    sigwait,
    wakeups,
    ckpt_counter,
);

/// The same guests built with musl: a different libc startup, different
/// syscall choices (e.g. no vDSO use for clocks in some paths, different
/// stdio buffering and mmap-based malloc).
macro_rules! musl_tests {
    ($($test:ident => $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run(stringify!($name), Libc::Musl);
            }
        )*
    };
}

musl_tests!(
    musl_hello => hello,
    musl_rw => rw,
    musl_getdents => getdents,
    musl_mmap => mmap,
    musl_clock => clock,
    musl_vdso => vdso,
    musl_sleep_rem => sleep_rem,
    musl_auxv => auxv,
    musl_copyfile => copyfile,
    musl_errno => errno,
    musl_signals => signals,
    musl_threads => threads,
    musl_condvar => condvar,
    musl_itimers => itimers,
    musl_epoll => epoll,
    musl_poll => poll,
    musl_timers => timers,
    musl_sigwait => sigwait,
    musl_wakeups => wakeups,
    musl_pty => pty,
    musl_tmpfs_sigbus => tmpfs_sigbus,
);

/// Native-only sanity check of the guests themselves (needs no cryo): every
/// guest builds, exits as its spec says, and prints the same thing on two
/// native runs — output that varied between runs would make the cryo
/// comparison flaky.
#[test]
fn guests_are_deterministic_natively() {
    let mut problems = Vec::new();
    let glibc = SPECS.iter().map(|s| (s, Libc::Glibc));
    let musl = SPECS
        .iter()
        .filter(|s| MUSL_GUESTS.contains(&s.name))
        .map(|s| (s, Libc::Musl));
    for (spec, libc) in glibc.chain(musl) {
        {
            let inv = invocation(spec.name, libc);
            let first = native(spec.name, &inv);
            let second = native(spec.name, &inv);
            if first.code != spec.exit {
                problems.push(format!(
                    "{} ({libc:?}): exit {} (want {})\n{}",
                    spec.name,
                    first.code,
                    spec.exit,
                    first.stdout_str()
                ));
            }
            if first.stdout != second.stdout
                || first.stderr != second.stderr
                || first.code != second.code
            {
                problems.push(format!(
                    "{} ({libc:?}): two native runs differ:\n{}",
                    spec.name,
                    cryo_tests::diff(&first.stdout, &second.stdout)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// SEEK_DATA/SEEK_HOLE on a sparse host file read through the gofer (the
/// overlay's lower layer, never copied up): the holes are the host file
/// system's, as natively, not one run of data to the end.
/// read(2)/pread64(2) of a host file, which go straight into application
/// memory: short counts at a page that is not writable, EFAULT with the
/// offset unmoved, reads bigger than a step, the file's end, shared memory.
#[test]
fn reads_of_a_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let bytes: Vec<u8> = (0..(3i64 << 20) + 123)
        .map(|i| ((i * 7 + i / 4096) % 251) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let inv = Invocation::new(guest("host_read", Libc::Glibc)).args([path.to_str().unwrap()]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    assert_same(&native, &inv.cryo());
}

#[test]
fn seek_data_on_a_sparse_host_file() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    let f = std::fs::File::create(&path).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"mid", 65536 + 10).unwrap();
    f.write_all_at(b"two pages", (1 << 20) + 4090).unwrap();
    f.set_len((1 << 20) + 8192 + 100).unwrap();
    drop(f);
    let inv = Invocation::new(guest("seek_data", Libc::Glibc)).args([path.to_str().unwrap()]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    // The host file system keeps holes (else the test shows nothing).
    assert!(
        native.stdout_str().contains("host from 4096: data=65536"),
        "{}",
        native.stdout_str()
    );
    assert_same(&native, &inv.cryo());
}
