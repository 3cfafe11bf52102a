//! What confines a sandbox, checked from outside on every platform cryo
//! has: stubs run with no new privileges under a seccomp filter, and calls
//! into the legacy vsyscall page reach the Sentry instead of being
//! answered by the host kernel.

use std::time::Duration;

use cryo_tests::sandbox::{cryo_command_on, platform_runs_here, Sandbox, Scratch};
use cryo_tests::{guest, run_cryo_cli, run_native, Libc};

const PLATFORMS: &[&str] = &["ptrace", "systrap"];

/// The platforms this host runs (the others print why they are skipped).
fn platforms() -> Vec<&'static str> {
    PLATFORMS
        .iter()
        .copied()
        .filter(|p| platform_runs_here(p))
        .collect()
}

/// gettimeofday, time and getcpu at 0xffffffffff600000: natively the host
/// kernel answers; under cryo the answers match, and --strace shows each
/// came to the Sentry (the guest makes no other call of those names).
#[test]
fn vsyscalls_reach_the_sentry() {
    let bin = guest("vsyscall", Libc::Glibc);
    let native = run_native(&bin, &[], b"");
    assert_eq!(native.code, 0, "{}", native.stdout_str());
    for p in platforms() {
        let flags = ["--platform", p, "do", "--strace", "--"];
        let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
        args.push(bin.as_os_str());
        let out = run_cryo_cli(&args);
        assert_eq!(
            out.stdout_str(),
            native.stdout_str(),
            "{p}: {}",
            out.stderr_str()
        );
        let strace = out.stderr_str();
        for call in ["gettimeofday(", "] time(", "getcpu"] {
            assert!(
                strace.lines().any(|l| l.contains(call)),
                "{p}: no {call} in the strace, the host kernel answered it:\n{strace}"
            );
        }
    }
}

/// Field `key` of /proc/PID/status.
fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The stubs of the Sentry `sentry`: its children with no command line
/// (forked from it, their copy of its memory unmapped; the gofer is
/// exec'd and has one).
fn stubs_of(sentry: u32) -> Vec<u32> {
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut stubs = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let ppid = status_field(pid, "PPid").and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(sentry) && cmdline(pid).is_empty() {
            stubs.push(pid);
        }
    }
    stubs
}

/// While a three-process sandbox runs, each of its stubs shows
/// `Seccomp: 2` (a filter) and `NoNewPrivs: 1` in /proc/PID/status.
#[test]
fn stubs_run_under_seccomp_without_new_privileges() {
    let bin = guest("ckpt_counter", Libc::Glibc);
    for p in platforms() {
        let s = Scratch::new("cryo-confine-");
        let cmd = cryo_command_on(&s.root(), p);
        let mut sb = Sandbox::run_with(cmd, "c", &bin, &["4", "/etc/passwd", "-1", "3"]);
        sb.wait_lines(2, Duration::from_secs(20));
        let stubs = stubs_of(sb.pid());
        assert!(stubs.len() >= 3, "{p}: stubs {stubs:?} (one per process)");
        for pid in &stubs {
            assert_eq!(
                status_field(*pid, "Seccomp").as_deref(),
                Some("2"),
                "{p}: stub {pid}"
            );
            assert_eq!(
                status_field(*pid, "NoNewPrivs").as_deref(),
                Some("1"),
                "{p}: stub {pid}"
            );
        }
        sb.kill();
    }
}
