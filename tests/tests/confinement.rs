//! What confines a sandbox, checked from outside on every platform cryo
//! has: the Sentry runs in namespaces of its own over an empty root with
//! one capability, no new privileges and a seccomp allow-list, and opens
//! no host file after boot; stubs run with no new privileges under a
//! seccomp filter; the gofer runs in its own mount namespace with file
//! capabilities only and a syscall allow-list; calls into the legacy
//! vsyscall page reach the Sentry instead of being answered by the host
//! kernel; attacks from a guest end in an errno or the attacker's death.

use std::time::Duration;

use cryo_tests::confined::{assert_sentry_confined, status_field, SENTRY_CAPS};
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
    // Anything missing is said, as a warning naming the gofer or the
    // Sentry (which cannot enter its namespaces without privileges).
    for line in stderr.lines() {
        assert!(
            line.starts_with("cryo: warning: the gofer")
                || line.starts_with("cryo: warning: the Sentry runs in the host's namespaces"),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("cryo: warning: the Sentry"),
        "the Sentry's missing namespaces are said: {stderr}"
    );
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
    // Tests run as root: the whole of the Sentry's confinement.
    assert!(
        text.contains("ok     sentry") && text.contains("empty read-only root"),
        "the Sentry's confinement:\n{text}"
    );
}

/// While a sandbox runs, its Sentry (the `cryo do` process) shows from the
/// host a seccomp filter, no new privileges, only CAP_DAC_READ_SEARCH
/// (effective and bounding), mount, ipc, uts and network namespaces other
/// than the host's and an empty root; its stubs (and a systrap zygote,
/// which also has no command line) have no capability at all. The
/// sandbox's files still work.
#[test]
fn sentry_is_confined() {
    let bin = guest("ckpt_counter", Libc::Glibc);
    for p in platforms() {
        let s = Scratch::new("cryo-sentry-confine-");
        let cmd = cryo_command_on(&s.root(), p);
        let mut sb = Sandbox::run_with(cmd, "s", &bin, &["4", "/etc/passwd", "-1", "3"]);
        sb.wait_lines(2, Duration::from_secs(20));
        let pid = sb.pid();
        assert_sentry_confined(pid, p);
        // Every thread, the ones started before the lock-down included
        // (capabilities are per thread; the filter is synchronised).
        let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(tasks.len() > 1, "{p}: threads {tasks:?}");
        for task in &tasks {
            let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
            if status.is_empty() {
                continue; // ended meanwhile
            }
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            };
            for (key, want) in [
                ("CapEff", SENTRY_CAPS),
                ("CapPrm", SENTRY_CAPS),
                ("CapBnd", SENTRY_CAPS),
                ("CapInh", "0000000000000000"),
                ("Seccomp", "2"),
                ("NoNewPrivs", "1"),
            ] {
                assert_eq!(
                    field(key).as_deref(),
                    Some(want),
                    "{p}: {key} of thread {} ({:?})",
                    task.display(),
                    field("Name")
                );
            }
        }
        let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(root.is_empty(), "{p}: the Sentry's root holds {root:?}");
        let stubs = stubs_of(pid);
        assert!(!stubs.is_empty(), "{p}: no stubs");
        for stub in stubs {
            for set in ["CapEff", "CapPrm"] {
                assert_eq!(
                    status_field(stub, set).as_deref(),
                    Some("0000000000000000"),
                    "{p}: {set} of stub {stub}"
                );
            }
        }
        sb.wait_lines(4, Duration::from_secs(20));
        assert!(
            sb.lines().iter().all(|l| l.contains("fileoff=17")),
            "{p}: {:?}",
            sb.lines()
        );
        sb.kill();
    }
}

/// The soft and hard limits of `name` in /proc/PID/limits (None for
/// "unlimited").
fn host_limit(pid: u32, name: &str) -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    let mut words = line[name.len()..].split_whitespace();
    let mut next = || words.next().and_then(|w| w.parse::<u64>().ok());
    (next(), next())
}

/// The Sentry, each of its stubs and its gofer run with no core dumps
/// (RLIMIT_CORE 0), at most 65536 descriptors, 32768 tasks of their host
/// user, and private memory no larger than the host's RAM and swap
/// (RLIMIT_DATA); the sandbox still works under them.
#[test]
fn host_processes_have_resource_limits() {
    let bin = guest("ckpt_counter", Libc::Glibc);
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let memory = (kib("MemTotal:") + kib("SwapTotal:")) * 1024;
    for p in platforms() {
        let s = Scratch::new("cryo-limits-");
        let cmd = cryo_command_on(&s.root(), p);
        let mut sb = Sandbox::run_with(cmd, "l", &bin, &["4", "/etc/passwd", "-1", "3"]);
        sb.wait_lines(2, Duration::from_secs(20));
        let sentry = sb.pid();
        let stubs = stubs_of(sentry);
        let gofers = children_of(sentry, |c| c.split(|b| *b == 0).any(|a| a == b"gofer"));
        assert!(!stubs.is_empty(), "{p}: no stubs");
        assert_eq!(gofers.len(), 1, "{p}: gofers {gofers:?}");
        for pid in std::iter::once(sentry).chain(stubs).chain(gofers) {
            let what = format!("{p}: process {pid}");
            assert_eq!(
                host_limit(pid, "Max core file size"),
                (Some(0), Some(0)),
                "{what}"
            );
            let (soft, hard) = host_limit(pid, "Max open files");
            assert!(
                soft.is_some_and(|s| s <= 65536) && hard.is_some_and(|h| h <= 65536),
                "{what}: open files {soft:?} {hard:?}"
            );
            let (_, hard) = host_limit(pid, "Max processes");
            assert!(
                hard.is_some_and(|h| h <= 32768),
                "{what}: processes {hard:?}"
            );
            let (_, hard) = host_limit(pid, "Max data size");
            // The kernel's page rounding aside, no more than the host has.
            assert!(
                hard.is_some_and(|h| h <= memory + 4096),
                "{what}: data size {hard:?} (memory {memory})"
            );
        }
        sb.wait_lines(4, Duration::from_secs(20));
        assert!(
            sb.lines().iter().all(|l| l.contains("fileoff=17")),
            "{p}: {:?}",
            sb.lines()
        );
        sb.kill();
    }
}

/// The host paths the Sentry `pid` holds open (the gofer's files it was
/// given, its stdio), each once.
fn host_paths_open(pid: u32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with('/') && !t.starts_with("/memfd:"))
        .collect()
}

/// The Sentry opens no host file after boot: across a workload that opens
/// 200 files of the sandbox's /tmp and reads a host file through the gofer
/// 200 times, the host paths it holds stay the same (the workload, and the
/// `sleep` that waits for the go, run once before the first look: the
/// files the gofer gave for them, the programs among them, stay cached).
#[test]
fn sentry_opens_no_host_file_after_boot() {
    for p in platforms() {
        let s = Scratch::new("cryo-sentry-fds-");
        let go = s.path("go");
        let script = format!(
            "work() {{ i=0; while [ $i -lt 200 ]; do echo $i > /tmp/f$i; read l < /tmp/f$i; read h < /etc/hostname; i=$((i+1)); done; }}; \
             work; sleep 0; echo ready; while [ ! -e {} ]; do sleep 0.1; done; work; echo done; sleep 100",
            go.display()
        );
        let cmd = cryo_command_on(&s.root(), p);
        let mut sb = Sandbox::run_with(
            cmd,
            "f",
            std::path::Path::new("/bin/sh"),
            &["-c", script.as_str()],
        );
        let timeout = Duration::from_secs(60);
        sb.wait_for(timeout, "ready", |l| l.iter().any(|l| l == "ready"));
        let before = host_paths_open(sb.pid());
        std::fs::write(&go, b"").unwrap();
        sb.wait_for(timeout, "done", |l| l.iter().any(|l| l == "done"));
        let after = host_paths_open(sb.pid());
        assert_eq!(before, after, "{p}: the Sentry's host files changed");
        sb.kill();
    }
}

/// Attacks from a guest on the Sentry and the host kernel (see
/// guests/hostile_sentry.c): each ends in an errno or its attacker killed,
/// no file appears on the host, the Sentry survives them all and reports
/// the guest's status. Natively the int $0x80 creat does create its file.
#[test]
fn attacks_on_the_sentry_fail() {
    let bin = guest("hostile_sentry", Libc::Glibc);
    // Past the sandbox's vm.max_map_count: mmap refuses with ENOMEM (see
    // the map_count guest for where, compared with Linux).
    let mappings = "100000";
    for p in platforms() {
        let s = Scratch::new("cryo-attack-");
        let prefix = s.path("host-file");
        let cmd = cryo_command_on(&s.root(), p);
        let mut sb = Sandbox::run_with(cmd, "a", &bin, &[prefix.to_str().unwrap(), mappings]);
        let code = sb.wait_exit(Duration::from_secs(600));
        let lines = sb.lines().to_vec();
        let stderr = sb.stderr_str();
        assert_eq!(code, 0, "{p}: {lines:?}\n{stderr}");
        assert_eq!(
            lines.last().map(String::as_str),
            Some("done"),
            "{p}: {lines:?}"
        );
        let outcome = |name: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
                .unwrap_or_else(|| panic!("{p}: no {name} line in {lines:?}"))
                .to_string()
        };
        assert_eq!(outcome("int80 creat"), "ENOSYS", "{p}");
        assert_eq!(outcome("x32 creat"), "ENOSYS", "{p}");
        assert_eq!(outcome("x32 getpid"), "ENOSYS", "{p}");
        for nr in [
            "0x3e8",
            "0x3fffffff",
            "0x7fffffff",
            "0xffffffffffffffff",
            "0x80000002",
        ] {
            assert_eq!(outcome(&format!("syscall {nr}")), "ENOSYS", "{p}: {nr}");
        }
        let sysenter = outcome("sysenter creat");
        assert!(
            sysenter.starts_with("killed") || sysenter.starts_with('E'),
            "{p}: {sysenter}"
        );
        assert!(
            !outcome("/proc/kallsyms").contains("kernel addresses"),
            "{p}"
        );
        for name in ["/dev/mem", "/sys/firmware"] {
            assert!(
                outcome(name).starts_with('E'),
                "{p}: {name}: {}",
                outcome(name)
            );
        }
        assert_eq!(outcome("mappings"), "ENOMEM after some", "{p}");
        for name in ["/proc/self/mem write", "thread storm", "signal storm"] {
            let o = lines.iter().find(|l| l.starts_with(name));
            assert!(o.is_some(), "{p}: no {name} line: {lines:?}");
        }
        assert!(!stderr.contains("panicked"), "{p}: {stderr}");
        let made: Vec<_> = std::fs::read_dir(s.dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("host-file"))
            .map(|e| e.path())
            .collect();
        assert!(
            made.is_empty(),
            "{p}: the attacks created {made:?} on the host"
        );
    }
}
