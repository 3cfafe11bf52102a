//! `cryo doctor`: can this host run cryo, and if not, why.

use platform::Layout;

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn layout_check() -> Check {
    match Layout::probe() {
        Ok(l) => Check {
            name: "address space",
            ok: true,
            detail: format!(
                "{}-bit user address space (top {:#x}), page size {} bytes; stack top {:#x}, mmap base {:#x}",
                l.va_bits, l.max_user_addr, l.page_size, l.stack_top, l.mmap_base
            ),
        },
        Err(e) => Check { name: "address space", ok: false, detail: e.to_string() },
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

pub fn run() -> anyhow::Result<i32> {
    let checks = [
        arch_check(),
        kernel_check(),
        layout_check(),
        ptrace_check(),
        kvm_check(),
    ];
    let mut failed = 0;
    for c in &checks {
        println!(
            "{:<6} {:<16} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
        if !c.ok {
            failed += 1;
        }
    }
    if failed > 0 {
        println!("this host cannot run cryo: {failed} check(s) failed");
        return Ok(1);
    }
    println!("this host can run cryo");
    Ok(0)
}
