//! The time-stamp counter, for the Sentry's clocks and the vDSO's
//! (sentry/src/kernel/time.rs): both compute time from it with the same
//! parameters.

/// The TSC, read after every earlier load has completed and before any
/// later one starts (`lfence` on both sides), as a seqcount reader needs:
/// a TSC read that drifted past the re-check of the sequence could pair
/// stale parameters with a later time.
#[inline]
pub fn rdtsc_ordered() -> u64 {
    // SAFETY: lfence and rdtsc touch no memory: rdtsc only reads the
    // time-stamp counter into registers. Every x86_64 CPU has both (SSE2 is
    // part of x86_64), and nothing enables user-mode faulting of rdtsc
    // (PR_SET_TSC) for the Sentry.
    unsafe {
        std::arch::x86_64::_mm_lfence();
        let t = std::arch::x86_64::_rdtsc();
        std::arch::x86_64::_mm_lfence();
        t
    }
}

/// Whether the TSC ticks at a constant rate in every power state and on
/// every CPU (CPUID 0x80000007 EDX bit 8, "invariant TSC"): only then is it
/// a clock.
pub fn invariant_tsc() -> bool {
    let max_ext = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    max_ext >= 0x8000_0007 && std::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}
