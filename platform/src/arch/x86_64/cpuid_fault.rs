//! CPUID faulting: with `arch_prctl(ARCH_SET_CPUID, 0)` a thread's `cpuid`
//! instruction raises a general-protection fault (SIGSEGV, si_code
//! SI_KERNEL) instead of answering, so the Sentry can answer it from the
//! feature set the sandbox is to see. The setting is per thread, inherited
//! across fork and clone (reset by execve, which stubs never make), so each
//! platform turns it on once in the process every stub descends from.

use std::sync::atomic::{AtomicBool, Ordering};

/// `arch_prctl` codes (asm/prctl.h).
const ARCH_GET_CPUID: u64 = 0x1011;
const ARCH_SET_CPUID: u64 = 0x1012;

/// Whether stubs created from now on make `cpuid` fault.
static FAULTING: AtomicBool = AtomicBool::new(false);

/// Makes every stub created from now on fault on `cpuid` (or not). The
/// Sentry decides before it creates its platform; a platform reads it when
/// it forks its first stub.
pub fn set_cpuid_faulting(on: bool) {
    FAULTING.store(on, Ordering::SeqCst);
}

/// Whether stubs fault on `cpuid` (see [`set_cpuid_faulting`]).
pub fn cpuid_faulting() -> bool {
    FAULTING.load(Ordering::SeqCst)
}

/// Whether this host can make `cpuid` fault (the CPU's CPUID faulting, which
/// Linux shows as `cpuid_fault` in /proc/cpuinfo), or why not. Probed on a
/// short-lived thread of its own, so no thread of the caller is changed.
pub fn cpuid_faulting_supported() -> Result<(), String> {
    let probe = std::thread::Builder::new()
        .name("cryo-cpuid-probe".into())
        .spawn(|| {
            // SAFETY: arch_prctl on the calling (probe) thread only; it
            // changes nothing but that thread's cpuid setting, which is set
            // back before the thread ends, and this thread runs no cpuid.
            let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 0u64) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: as above: cpuid back on for this thread.
            unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 1u64) };
            Ok(())
        })
        .map_err(|e| format!("cannot start a probe thread: {e}"))?;
    match probe.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENODEV) => Err(
            "the CPU has no CPUID faulting (no cpuid_fault in /proc/cpuinfo): \
             cpuid cannot be intercepted, so a sandbox sees the host's CPU features"
                .into(),
        ),
        Ok(Err(e)) => Err(format!("arch_prctl(ARCH_SET_CPUID): {e}")),
        Err(_) => Err("the probe thread panicked".into()),
    }
}

/// Turns `cpuid` faulting on for the calling thread of a freshly forked stub
/// when [`set_cpuid_faulting`] asked for it; false if the kernel refused.
///
/// # Safety
///
/// Only in a stub child after fork: a raw syscall, nothing else.
pub(crate) unsafe fn stub_disable_cpuid(on: bool) -> bool {
    if !on {
        return true;
    }
    libc::syscall(libc::SYS_arch_prctl, ARCH_SET_CPUID, 0u64) == 0
        && libc::syscall(libc::SYS_arch_prctl, ARCH_GET_CPUID, 0u64) == 0
}

/// The host kernel's AT_HWCAP2 for this process (x86_64: ring-3 MONITOR/
/// MWAIT, FSGSBASE).
pub fn host_hwcap2() -> u64 {
    // SAFETY: getauxval only reads this process's auxiliary vector.
    unsafe { libc::getauxval(libc::AT_HWCAP2) }
}
