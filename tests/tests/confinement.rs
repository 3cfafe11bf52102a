//! What confines a sandbox, checked from outside on every platform cryo
//! has: stubs run with no new privileges under a seccomp filter; the gofer
//! runs in its own mount namespace with file capabilities only and a
//! syscall allow-list; calls into the legacy vsyscall page reach the
//! Sentry instead of being answered by the host kernel.

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

/// The host children of `parent` whose command line (its NUL-separated
/// arguments) satisfies `pick`.
fn children_of(parent: u32, pick: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            status_field(pid, "PPid").and_then(|v| v.parse::<u32>().ok()) == Some(parent)
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| pick(&c))
        })
        .collect()
}

/// The stubs of the Sentry `sentry`: its children with no command line
/// (forked from it, their copy of its memory unmapped; the gofer is
/// exec'd and has one).
fn stubs_of(sentry: u32) -> Vec<u32> {
    children_of(sentry, |cmdline| cmdline.is_empty())
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

/// The gofer of a running sandbox: its own mount namespace, a seccomp
/// filter, no new privileges, and of its capabilities only the five file
/// serving needs (CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID);
/// and the sandbox's files still work through it.
#[test]
fn gofer_is_confined() {
    let bin = guest("ckpt_counter", Libc::Glibc);
    let s = Scratch::new("cryo-gofer-confine-");
    let mut sb = Sandbox::run(&s.root(), "g", &bin, &["4", "/etc/passwd", "-1"]);
    sb.wait_lines(2, Duration::from_secs(20));
    let gofers = children_of(sb.pid(), |c| c.split(|b| *b == 0).any(|a| a == b"gofer"));
    assert_eq!(gofers.len(), 1, "one gofer for the root: {gofers:?}");
    let g = gofers[0];
    assert_eq!(status_field(g, "Seccomp").as_deref(), Some("2"));
    assert_eq!(status_field(g, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(
        status_field(g, "CapEff").as_deref(),
        Some("000000000000001f")
    );
    assert_eq!(
        status_field(g, "CapBnd").as_deref(),
        Some("000000000000001f")
    );
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(
        ns(&g.to_string()),
        ns("self"),
        "the gofer has its own mount namespace"
    );
    // Reading through the confined gofer goes on working.
    sb.wait_lines(4, Duration::from_secs(20));
    assert!(
        sb.lines().iter().all(|l| l.contains("fileoff=17")),
        "{:?}",
        sb.lines()
    );
    sb.kill();
}

/// A user without privileges runs a sandbox too (ptrace and seccomp need
/// none): its gofer confines itself as far as the host lets it, and says
/// on stderr what it could not do instead of failing or keeping quiet.
#[test]
fn unprivileged_user_runs_a_sandbox() {
    let s = Scratch::new("cryo-nobody-");
    std::fs::create_dir_all(s.path("root")).unwrap();
    std::fs::set_permissions(s.dir(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        s.path("root"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let script = format!(
        "{} --root {} do -- /bin/sh -c 'id -u; cat /etc/hostname >/dev/null && echo read'",
        cryo_tests::cryo_bin().display(),
        s.path("root").display()
    );
    let out = std::process::Command::new("su")
        .args(["nobody", "-s", "/bin/sh", "-c", &script])
        .output()
        .expect("su");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "65534\nread\n", "{stderr}");
    // Anything missing is said, as a warning naming the gofer.
    for line in stderr.lines() {
        assert!(line.starts_with("cryo: warning: the gofer"), "{stderr}");
    }
}

/// The sandbox's /sys is the Sentry's own: the CPUs and an empty
/// /sys/fs/cgroup, read-only; nothing of the host's (no /sys/firmware,
/// /sys/class, /sys/kernel), whatever the host has.
#[test]
fn sys_shows_nothing_of_the_host() {
    let out = run_cryo_cli(&[
        "do",
        "--",
        "/bin/sh",
        "-c",
        "ls /sys; ls -A /sys/fs/cgroup | wc -l; cat /sys/firmware/dmi/tables/DMI 2>&1 >/dev/null | wc -l; touch /sys/x 2>/dev/null || echo ro",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "devices\nfs\n0\n1\nro\n");
}

/// `cryo doctor` says what confinement the host gives and what is missing,
/// one line each, without making any of it a reason cryo cannot run.
#[test]
fn doctor_reports_confinement() {
    let out = run_cryo_cli(&["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout_str());
    let text = out.stdout_str();
    for name in ["seccomp", "user namespaces", "landlock", "sentry"] {
        let line = text
            .lines()
            .find(|l| l.get(7..).is_some_and(|r| r.starts_with(name)))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"));
        assert!(line.starts_with("ok ") || line.starts_with("no "), "{line}");
    }
    assert!(
        text.contains("ok     seccomp"),
        "seccomp is on this host:\n{text}"
    );
}
