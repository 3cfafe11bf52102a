//! x86_64 registers.

use serde::{Deserialize, Serialize};

mod cpuid_fault;
mod tsc;
mod validate;

pub(crate) use cpuid_fault::stub_disable_cpuid;
pub use cpuid_fault::{cpuid_faulting, cpuid_faulting_supported, host_hwcap2, set_cpuid_faulting};
pub use tsc::{invariant_tsc, rdtsc_ordered};

/// The general-purpose registers, in the order of the kernel's
/// `struct user_regs_struct` (what PTRACE_GETREGS returns), so a platform can
/// convert without reordering. fs_base/gs_base carry TLS (arch_prctl).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registers {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl Registers {
    /// The registers of a fresh thread about to run at `entry` with stack `sp`
    /// (as after execve: everything else zero, user code/stack segments).
    pub fn new_user(entry: u64, sp: u64) -> Registers {
        Registers {
            rip: entry,
            rsp: sp,
            cs: USER_CS,
            ss: USER_DS,
            eflags: EFLAGS_DEFAULT,
            ..Registers::default()
        }
    }

    /// The syscall number of a syscall stop.
    pub fn syscall_nr(&self) -> u64 {
        self.orig_rax
    }

    /// The six syscall arguments, in ABI order.
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    /// Sets a syscall's return value.
    pub fn set_return(&mut self, value: u64) {
        self.rax = value;
    }

    pub fn ip(&self) -> u64 {
        self.rip
    }

    pub fn sp(&self) -> u64 {
        self.rsp
    }
}

/// User code segment selector on x86_64 Linux.
pub const USER_CS: u64 = 0x33;
/// User data/stack segment selector on x86_64 Linux.
pub const USER_DS: u64 = 0x2b;
/// IF set, the reserved bit 1 set.
pub const EFLAGS_DEFAULT: u64 = 0x202;

/// The FP/SSE/AVX state in the standard (non-compacted) XSAVE layout, as
/// PTRACE_GETREGSET(NT_X86_XSTATE) returns it: the 512-byte legacy FXSAVE
/// area, the 64-byte XSAVE header, then the extended components. The bytes
/// are host-independent as long as the features in XSTATE_BV exist on the
/// host that loads them (the Sentry records and checks that).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpState {
    pub xsave: Vec<u8>,
}

impl FpState {
    /// The XSTATE_BV bitmap: which components the state holds.
    pub fn xstate_bv(&self) -> u64 {
        self.xsave
            .get(512..520)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }
}

impl FpState {
    /// This state as this host's kernel accepts it, in an XSAVE area of
    /// `size` bytes: components the host's CPU lacks, or that lie past
    /// `size`, are marked initial in XSTATE_BV (ptrace and XRSTOR refuse
    /// them) and a longer area is cut to `size`. Only a statefile from
    /// another host can hold one, and its restore refuses any the
    /// sandbox's CPU showed; what is left was kept in use by that host's
    /// kernel on its own behalf (PKRU on a PKU host, AMX's tile
    /// configuration where the host enables it), never state the
    /// application could see.
    ///
    /// An area larger than any CPU's ([`MAX_XSAVE_AREA`]) is refused.
    pub fn loadable_in(
        &self,
        size: usize,
    ) -> Result<std::borrow::Cow<'_, FpState>, crate::PlatformError> {
        if self.xsave.len() > MAX_XSAVE_AREA {
            return Err(crate::PlatformError::FpStateSize {
                got: self.xsave.len(),
                want: size,
            });
        }
        static HOST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let host = *HOST.get_or_init(host_xfeatures);
        let bv = self.xstate_bv();
        let keep = bv & host & features_within(size);
        if (keep == bv && self.xsave.len() <= size) || self.xsave.len() < 520 {
            return Ok(std::borrow::Cow::Borrowed(self));
        }
        let mut fp = self.clone();
        fp.xsave.truncate(size.max(XSAVE_HEADER_END));
        fp.xsave[512..520].copy_from_slice(&keep.to_le_bytes());
        Ok(std::borrow::Cow::Owned(fp))
    }
}

/// Larger than the XSAVE area of any CPU (AMX's tile data makes today's
/// largest about 11 KiB).
pub const MAX_XSAVE_AREA: usize = 0x4000;

/// The legacy area and the XSAVE header: where every component's layout
/// starts, the same on every CPU.
const XSAVE_HEADER_END: usize = 576;

/// The state components whose standard-format area on this CPU ends
/// within `size` bytes (CPUID leaf 0xD, sub-leaf i: size in EAX, offset
/// in EBX). x87 and SSE live in the legacy area.
fn features_within(size: usize) -> u64 {
    static ENDS: std::sync::OnceLock<[usize; 64]> = std::sync::OnceLock::new();
    let ends = ENDS.get_or_init(|| {
        let mut ends = [usize::MAX; 64];
        ends[0] = 512;
        ends[1] = 512;
        let host = host_xfeatures();
        for (i, end) in ends.iter_mut().enumerate().skip(2) {
            if host & (1 << i) != 0 {
                let leaf = std::arch::x86_64::__cpuid_count(0xd, i as u32);
                *end = leaf.ebx as usize + leaf.eax as usize;
            }
        }
        ends
    });
    ends.iter()
        .enumerate()
        .filter(|(_, &end)| end <= size)
        .fold(0, |m, (i, _)| m | 1 << i)
}

statefile::versioned!(Registers, "platform.Registers", 1);
statefile::versioned!(FpState, "platform.FpState", 1);

/// A thread's CPU state as the Sentry holds it between switches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuState {
    pub regs: Registers,
}

/// The XSAVE state components this CPU supports (CPUID leaf 0xD, sub-leaf 0:
/// EDX:EAX). A saved [`FpState`] whose XSTATE_BV has a bit outside this mask
/// cannot be loaded here.
pub fn host_xfeatures() -> u64 {
    let leaf = std::arch::x86_64::__cpuid_count(0xd, 0);
    (u64::from(leaf.edx) << 32) | u64::from(leaf.eax)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(len: usize, bv: u64) -> FpState {
        let mut xsave = vec![0xa5u8; len];
        xsave[512..520].copy_from_slice(&bv.to_le_bytes());
        FpState { xsave }
    }

    #[test]
    fn a_longer_area_from_another_host_is_cut_to_this_one() {
        // An area from a host with more components (AMX's tile
        // configuration made one of 2816 bytes) whose extra components are
        // initial: x87, SSE and AVX go on as they were.
        let fp = state(4096, 0x7);
        let fitted = fp.loadable_in(832).unwrap();
        assert_eq!(fitted.xsave.len(), 832);
        assert_eq!(fitted.xstate_bv(), 0x7 & host_xfeatures());
        assert_eq!(fitted.xsave[..512], fp.xsave[..512]);
        assert_eq!(fitted.xsave[576..832], fp.xsave[576..832]);
    }

    #[test]
    fn components_past_the_area_are_marked_initial() {
        // Bit 17 (AMX TILECFG) lies past a 832-byte area on any CPU, bit 9
        // (PKRU) too: both must go from XSTATE_BV, or the load is refused.
        let fp = state(2816, 0x7 | 1 << 9 | 1 << 17);
        let fitted = fp.loadable_in(832).unwrap();
        assert_eq!(fitted.xstate_bv(), 0x7 & host_xfeatures());
        assert_eq!(fitted.xsave.len(), 832);
    }

    #[test]
    fn an_area_no_cpu_has_is_refused() {
        assert!(matches!(
            state(MAX_XSAVE_AREA + 1, 0x3).loadable_in(832),
            Err(crate::PlatformError::FpStateSize { .. })
        ));
    }

    #[test]
    fn a_state_that_fits_is_loaded_as_it_is() {
        let fp = state(576, 0x3);
        assert!(matches!(
            fp.loadable_in(832),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
    }
}
