//! Which syscall ABI a syscall stop came from. An x86_64 process can also
//! enter the kernel through `int $0x80` (the i386 ABI, with i386 numbers and
//! argument registers) or from a 32-bit code segment. cryo implements only
//! the x86_64 table, so those are refused with ENOSYS, as gVisor does:
//! dispatching them through the x86_64 table would run the wrong call
//! (i386 mkdir, 39, is x86_64 getpid).

use platform::Registers;

/// `int $0x80`.
const INT80: [u8; 2] = [0xcd, 0x80];

/// The length of both `syscall` (0f 05) and `int $0x80` (cd 80).
const ENTRY_INSN_LEN: u64 = 2;

/// What a foreign syscall entry is, for the log.
pub const FOREIGN_ABI: &str = "i386 (int $0x80 or a 32-bit code segment)";

/// Whether the syscall stop in `regs` came through the x86_64 `syscall`
/// instruction from the 64-bit user code segment. `insn` reads the two
/// bytes before `rip` (the instruction that trapped), ignoring protections
/// (execute-only code); None when they cannot be read, which only a racing
/// munmap causes, and then the 64-bit ABI is assumed.
pub fn is_native_syscall(regs: &Registers, insn: impl FnOnce(u64) -> Option<[u8; 2]>) -> bool {
    if regs.cs != platform::arch::USER_CS {
        return false;
    }
    match regs.rip.checked_sub(ENTRY_INSN_LEN) {
        Some(at) => insn(at) != Some(INT80),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs_at(rip: u64, cs: u64) -> Registers {
        let mut r = Registers::new_user(rip, 0x7ffd_0000);
        r.cs = cs;
        r
    }

    #[test]
    fn int80_and_32_bit_segments_are_foreign() {
        let syscall = |_| Some([0x0f, 0x05]);
        let int80 = |_| Some(INT80);
        let user_cs = platform::arch::USER_CS;
        assert!(is_native_syscall(&regs_at(0x401002, user_cs), syscall));
        assert!(!is_native_syscall(&regs_at(0x401002, user_cs), int80));
        // USER32_CS: a far jump into compatibility mode.
        assert!(!is_native_syscall(&regs_at(0x401002, 0x23), syscall));
        // The bytes read are those just before rip.
        let mut seen = 0;
        is_native_syscall(&regs_at(0x401002, user_cs), |a| {
            seen = a;
            None
        });
        assert_eq!(seen, 0x401000);
    }
}
