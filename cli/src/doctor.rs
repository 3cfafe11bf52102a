//! `cryo doctor`: can this host run cryo, and if not, why.

use platform::Layout;

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// The host's CPU: the highest x86-64 level it meets, and whether cpuid can
/// be intercepted (CPUID faulting), without which a sandbox sees the host's
/// features and only `--cpu-features=host` runs.
fn cpu_check() -> Vec<Check> {
    use sentry::arch::cpuid::{CpuFeatures, Profile};
    let host = CpuFeatures::host();
    let level = (1..=4)
        .rev()
        .find(|&l| CpuFeatures::for_profile(Profile::Level(l)).is_ok());
    let level = level.map_or_else(
        || "below x86-64".to_string(),
        |l| Profile::Level(l).name().to_string(),
    );
    let flags = host.flags();
    let faulting = platform::cpuid_faulting_supported();
    vec![
        Check {
            name: "cpu",
            ok: true,
            detail: format!(
                "{level} ({} named features, XSAVE components {:#x}): a sandbox booted with --cpu-features={level} or lower restores on any CPU of that level",
                flags.len(),
                host.xcr0
            ),
        },
        Check {
            name: "cpuid faulting",
            ok: faulting.is_ok(),
            detail: match faulting {
                Ok(()) => "available: --cpu-features=x86-64...x86-64-v4 mask what a sandbox's cpuid, auxv and /proc/cpuinfo show".into(),
                Err(why) => format!("{why}; --cpu-features other than host is refused"),
            },
        },
    ]
}

fn layout_check() -> Check {
    match Layout::probe() {
        Ok(l) => Check {
            name: "address space",
            ok: true,
            detail: format!(
                "{}-bit user address space (top {:#x}), page size {} bytes; stack top {:#x}, mmap base {:#x} (placed within {} bits, so a sandbox restores on a {}-bit host unless it maps higher itself)",
                l.va_bits, l.max_user_addr, l.page_size, l.stack_top, l.mmap_base, l.placement_bits(), l.placement_bits()
            ),
        },
        Err(e) => Check { name: "address space", ok: false, detail: e.to_string() },
    }
}

/// Each platform: whether the host allows it and whether it really runs a
/// trapped syscall here (a stub is created and one getpid trapped).
fn platform_checks() -> Vec<Check> {
    let default = platform::default_platform();
    platform::PLATFORMS
        .iter()
        .map(|entry| {
            let r = (entry.available)().and_then(|()| trial_run(entry));
            let tag = if entry.name == default {
                ", the default"
            } else {
                ""
            };
            Check {
                name: entry.name,
                ok: r.is_ok(),
                detail: match r {
                    Ok(()) => format!("platform {} runs application code here{tag}", entry.name),
                    Err(why) => format!("platform {} cannot run here: {why}", entry.name),
                },
            }
        })
        .collect()
}

/// Runs `mov eax, 39; syscall` in a fresh address space of `entry`.
fn trial_run(entry: &platform::PlatformEntry) -> Result<(), String> {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    // SAFETY: memfd_create with a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"cryo-doctor".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let mem = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let code = [0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xcc];
    mem.set_len(4096).map_err(|e| e.to_string())?;
    std::os::unix::fs::FileExt::write_all_at(&mem, &code, 0).map_err(|e| e.to_string())?;
    let p = (entry.create)(mem.as_fd()).map_err(|e| e.to_string())?;
    let aspace = p.new_address_space().map_err(|e| e.to_string())?;
    const CODE: u64 = 0x40_0000;
    aspace
        .map(CODE, 4096, 0, platform::Prot::READ_EXEC)
        .map_err(|e| e.to_string())?;
    let mut ctx = p.new_context().map_err(|e| e.to_string())?;
    let mut state = platform::CpuState {
        regs: platform::Registers::new_user(CODE, 0),
    };
    match ctx.switch(aspace.as_ref(), &mut state) {
        Ok(platform::Event::Syscall) if state.regs.syscall_nr() == 39 => Ok(()),
        Ok(e) => Err(format!("a trapped getpid came back as {e:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn ptrace_check() -> Check {
    let detail = match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Ok(s) if s.trim() == "3" => {
            return Check {
                name: "ptrace",
                ok: false,
                detail: "kernel.yama.ptrace_scope is 3: ptrace is disabled on this host, the ptrace platform cannot run".into(),
            }
        }
        Ok(s) => format!("yama ptrace_scope {}", s.trim()),
        Err(_) => "no yama restrictions".into(),
    };
    Check {
        name: "ptrace",
        ok: true,
        detail,
    }
}

fn arch_check() -> Check {
    Check {
        name: "architecture",
        ok: cfg!(target_arch = "x86_64"),
        detail: format!("{} (supported: x86_64)", std::env::consts::ARCH),
    }
}

/// The host kernel must have openat2 (5.6, the gofer's confinement) and
/// PTRACE_GET_RSEQ_CONFIGURATION (5.13, cleaning rseq out of new stubs).
fn kernel_check() -> Check {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let ok = version >= (5, 13);
    Check {
        name: "host kernel",
        ok,
        detail: if ok {
            format!("Linux {release}")
        } else {
            format!("Linux {release} is older than 5.13 (cryo needs openat2 and PTRACE_GET_RSEQ_CONFIGURATION)")
        },
    }
}

fn kvm_check() -> Check {
    let present = std::path::Path::new("/dev/kvm").exists();
    Check {
        name: "kvm (optional)",
        ok: true,
        detail: if present {
            "/dev/kvm present (no KVM platform yet)".into()
        } else {
            "/dev/kvm absent".into()
        },
    }
}

/// Whether the sandbox's clocks (and so the vDSO) run on the TSC here:
/// without an invariant TSC they read the host's clocks and the vDSO's
/// calls trap like any system call. Never a reason cryo cannot run.
fn vdso_check() -> Check {
    let tsc = platform::arch::invariant_tsc();
    Check {
        name: "vdso",
        ok: tsc,
        detail: if tsc {
            "invariant TSC: clock_gettime, gettimeofday and time answer in the application".into()
        } else {
            "no invariant TSC: the sandbox's clocks read the host's and the vDSO's calls trap"
                .into()
        },
    }
}

/// What confinement a sandbox's Sentry gets here (see crate::confine): the
/// whole of it needs CAP_SYS_ADMIN (namespaces, the pivot); without it
/// only no-new-privs and the seccomp filter remain, which a sandbox says
/// on stderr when it starts.
fn sentry_check(seccomp: bool) -> Check {
    let admin = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false);
    let kill = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .is_ok_and(|a| a.split_whitespace().any(|w| w == "kill_process"));
    let missing = "not in a pid namespace (its first stub would be the namespace's init) nor a user namespace of its own";
    if crate::confine::unconfined() {
        return Check {
            name: "sentry",
            ok: false,
            detail: "CRYO_UNCONFINED=1 is set: sandboxes started with it run their Sentry without any confinement (and say so)".into(),
        };
    }
    match (seccomp && kill, admin) {
        (true, true) => Check {
            name: "sentry",
            ok: true,
            detail: format!(
                "after boot the Sentry runs in its own mount, ipc, uts and network namespaces, pivoted into an empty read-only root, with only CAP_DAC_READ_SEARCH on every thread, no-new-privs and a seccomp allow-list (anything else kills it); it, its stubs and gofers run with RLIMIT_CORE 0 and capped RLIMIT_NOFILE, RLIMIT_NPROC and RLIMIT_DATA; {missing}"
            ),
        },
        (true, false) => Check {
            name: "sentry",
            ok: false,
            detail: "without CAP_SYS_ADMIN the Sentry stays in the host's namespaces and sees the host's root; it still runs with no-new-privs and its seccomp allow-list, and says so on stderr".into(),
        },
        (false, _) => Check {
            name: "sentry",
            ok: false,
            detail: "no seccomp SECCOMP_RET_KILL_PROCESS in this kernel: a sandbox cannot start confined".into(),
        },
    }
}

/// What confinement this host gives a sandbox, and what falls back: never
/// a reason cryo cannot run, always said.
fn confinement_checks() -> Vec<Check> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let seccomp = status.lines().any(|l| l.starts_with("Seccomp:"));
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    let landlock = std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.split(',').any(|m| m.trim() == "landlock"));
    vec![
        Check {
            name: "seccomp",
            ok: seccomp,
            detail: if seccomp {
                "seccomp filters: stubs trap the application's syscalls, the gofer runs under an allow-list".into()
            } else {
                "no seccomp in this kernel: neither platform can confine its stubs".into()
            },
        },
        Check {
            name: "user namespaces",
            ok: userns,
            detail: if userns {
                "available: an unprivileged gofer gets its own mount namespace and chroot".into()
            } else {
                "disabled (user.max_user_namespaces is 0): an unprivileged gofer runs without its mount namespace and chroot, and says so".into()
            },
        },
        Check {
            name: "landlock",
            ok: landlock,
            detail: if landlock {
                "enabled in this kernel (cryo does not use it yet)".into()
            } else {
                "not enabled in this kernel (cryo does not use it yet)".into()
            },
        },
        sentry_check(seccomp),
    ]
}

pub fn run() -> anyhow::Result<i32> {
    let platforms = platform_checks();
    let any_platform = platforms.iter().any(|c| c.ok);
    let mut checks = vec![arch_check(), kernel_check(), layout_check(), ptrace_check()];
    // One platform that works is enough: the others say "no".
    let optional = checks.len()..checks.len() + platforms.len();
    checks.extend(platforms);
    checks.push(kvm_check());
    let mut failed = 0;
    for (i, c) in checks.iter().enumerate() {
        let spare = optional.contains(&i) && any_platform;
        let mark = match (c.ok, spare) {
            (true, _) => "ok",
            (false, true) => "no",
            (false, false) => "FAIL",
        };
        println!("{:<6} {:<16} {}", mark, c.name, c.detail);
        if !c.ok && !spare {
            failed += 1;
        }
    }
    // Never a reason cryo cannot run: without CPUID faulting only
    // --cpu-features=host does.
    for c in cpu_check()
        .into_iter()
        .chain([vdso_check()])
        .chain(confinement_checks())
    {
        let mark = if c.ok { "ok" } else { "no" };
        println!("{:<6} {:<16} {}", mark, c.name, c.detail);
    }
    if failed > 0 {
        println!("this host cannot run cryo: {failed} check(s) failed");
        return Ok(1);
    }
    println!("this host can run cryo");
    Ok(0)
}
