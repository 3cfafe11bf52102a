//! Checks of saved register state before it is loaded into a thread: what
//! PTRACE_SETREGS and PTRACE_SETREGSET(NT_X86_XSTATE) would refuse, or what
//! no user thread can hold, is refused here with the field named, so a
//! hostile statefile never reaches the host kernel's checks halfway through
//! a restore.

use super::{FpState, Registers, USER_CS, USER_DS};

/// The eflags bits a user thread may hold (Linux's FLAG_MASK: CF, PF, AF,
/// ZF, SF, TF, DF, OF, NT, RF, AC, ID) plus the always-one bit 1 and IF.
const USER_EFLAGS: u64 = 0x1
    | 0x4
    | 0x10
    | 0x40
    | 0x80
    | 0x100
    | 0x400
    | 0x800
    | 0x4000
    | 0x1_0000
    | 0x4_0000
    | 0x20_0000
    | 0x2
    | 0x200;
/// The legacy FXSAVE area and the XSAVE header.
const XSAVE_HEADER_END: usize = 576;
/// Larger than any XSAVE area a CPU defines (AMX's is about 11 KiB).
const MAX_XSAVE: usize = 64 * 1024;

impl Registers {
    /// Checks the registers of a user thread of an address space whose
    /// highest user address is `max_user_addr`.
    pub fn validate_user(&self, max_user_addr: u64) -> Result<(), String> {
        if self.cs != USER_CS {
            return Err(format!("cs {:#x} is not the user code segment", self.cs));
        }
        if self.ss != USER_DS {
            return Err(format!("ss {:#x} is not the user stack segment", self.ss));
        }
        for (name, sel) in [
            ("ds", self.ds),
            ("es", self.es),
            ("fs", self.fs),
            ("gs", self.gs),
        ] {
            if sel != 0 && sel & 3 != 3 {
                return Err(format!("{name} {sel:#x} is not a user selector"));
            }
        }
        for (name, v) in [
            ("rip", self.rip),
            ("rsp", self.rsp),
            ("fs_base", self.fs_base),
            ("gs_base", self.gs_base),
        ] {
            if v > max_user_addr {
                return Err(format!("{name} {v:#x} is beyond the user address space"));
            }
        }
        if self.eflags & !USER_EFLAGS != 0 {
            return Err(format!(
                "eflags {:#x} has bits a user cannot set",
                self.eflags
            ));
        }
        Ok(())
    }
}

impl FpState {
    /// Checks an XSAVE image in the standard (uncompacted) form ptrace uses:
    /// its size, a zero XCOMP_BV and reserved header, and MXCSR within its
    /// mask. Which components it holds is checked against the host apart.
    pub fn validate(&self) -> Result<(), String> {
        let x = &self.xsave;
        if x.len() < XSAVE_HEADER_END || x.len() > MAX_XSAVE {
            return Err(format!("XSAVE area of {} bytes", x.len()));
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&x[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if word(520) != 0 {
            return Err("XSAVE header has a compacted-format XCOMP_BV".into());
        }
        if x[528..XSAVE_HEADER_END].iter().any(|&b| b != 0) {
            return Err("XSAVE header's reserved bytes are not zero".into());
        }
        // Every component XSTATE_BV says is present must lie inside the
        // area (its standard-format offset and size are CPUID leaf 0xD's);
        // a component this host does not know is refused apart, by name of
        // the missing feature.
        let present = word(512);
        for i in 2..63u32 {
            if present & (1 << i) == 0 {
                continue;
            }
            let leaf = std::arch::x86_64::__cpuid_count(0xd, i);
            let end = u64::from(leaf.ebx) + u64::from(leaf.eax);
            if leaf.eax != 0 && end > x.len() as u64 {
                return Err(format!(
                    "XSAVE area of {} bytes cannot hold component {i}, which ends at {end}",
                    x.len()
                ));
            }
        }
        let mxcsr = u32::from_le_bytes([x[24], x[25], x[26], x[27]]);
        // MXCSR_MASK as saved, but never wider than MXCSR's 16 defined bits.
        let mask = match u32::from_le_bytes([x[28], x[29], x[30], x[31]]) {
            0 => 0xffbf,
            m => m & 0xffff,
        };
        if mxcsr & !mask != 0 {
            return Err(format!("MXCSR {mxcsr:#x} has reserved bits set"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_registers_pass_and_kernel_ones_do_not() {
        let ok = Registers::new_user(0x40_1000, 0x7fff_0000);
        ok.validate_user(0x7fff_ffff_f000).unwrap();
        type Breaker = (&'static str, fn(&mut Registers));
        let cases: [Breaker; 6] = [
            ("cs", |r| r.cs = 0x10),
            ("ss", |r| r.ss = 0),
            ("rip", |r| r.rip = 0xffff_8000_0000_0000),
            ("fs_base", |r| r.fs_base = 1 << 63),
            ("eflags", |r| r.eflags |= 1 << 12),
            ("ds", |r| r.ds = 0x10),
        ];
        for (field, break_it) in cases {
            let mut r = ok;
            break_it(&mut r);
            let err = r.validate_user(0x7fff_ffff_f000).unwrap_err();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }

    #[test]
    fn xsave_headers_are_checked() {
        let mut fp = FpState {
            xsave: vec![0; 832],
        };
        fp.xsave[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        fp.validate().unwrap();
        let mut short = fp.clone();
        short.xsave.truncate(100);
        assert!(short.validate().is_err());
        let mut compacted = fp.clone();
        compacted.xsave[527] = 0x80;
        assert!(compacted.validate().unwrap_err().contains("XCOMP_BV"));
        let mut reserved = fp.clone();
        reserved.xsave[540] = 1;
        assert!(reserved.validate().is_err());
        let mut mxcsr = fp.clone();
        mxcsr.xsave[24..28].copy_from_slice(&0xffff_0000u32.to_le_bytes());
        assert!(mxcsr.validate().unwrap_err().contains("MXCSR"));
        // A saved MXCSR_MASK cannot widen MXCSR beyond its 16 bits.
        let mut wide = mxcsr.clone();
        wide.xsave[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(wide.validate().unwrap_err().contains("MXCSR"));
        // AVX (component 2, bytes 576..832 where the host has it) claimed
        // present in an area that ends before it.
        let avx = std::arch::x86_64::__cpuid_count(0xd, 2);
        if avx.eax != 0 {
            let mut short = fp.clone();
            short.xsave.truncate(avx.ebx as usize);
            short.xsave[512] = 0b111;
            let err = short.validate().unwrap_err();
            assert!(err.contains("component 2"), "{err}");
            let mut whole = fp;
            whole.xsave.resize((avx.ebx + avx.eax) as usize, 0);
            whole.xsave[512] = 0b111;
            whole.validate().unwrap();
        } else {
            println!("SKIPPED: this CPU has no AVX state component");
        }
    }
}
