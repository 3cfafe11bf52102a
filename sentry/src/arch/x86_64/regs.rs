//! The x86_64 syscall ABI on the registers: where the number, arguments and
//! result of a syscall live, how one is restarted, where the stack pointer
//! and the thread pointer are. Generic code edits registers only through
//! [`UserRegs`], so another architecture provides the same trait over its
//! own `platform::Registers`.

use platform::Registers;

/// `syscall` (0f 05) is two bytes: backing `rip` up by this much runs the
/// call again.
const SYSCALL_INSN_LEN: u64 = 2;

/// `__NR_restart_syscall`.
const NR_RESTART_SYSCALL: u64 = 219;

/// A task's registers as the syscall ABI and the kernel's generic code see
/// them.
pub trait UserRegs {
    /// The number of the syscall the task stopped at.
    fn syscall_number(&self) -> u64;
    /// Its six arguments, in ABI order.
    fn syscall_arguments(&self) -> [u64; 6];
    /// The register the syscall's result goes to.
    fn syscall_return(&self) -> u64;
    fn set_syscall_return(&mut self, value: u64);
    /// Makes the syscall `nr` the task stopped at run again when the task
    /// resumes (its arguments are still in place).
    fn restart_syscall(&mut self, nr: u64);
    /// Makes the task resume in `restart_syscall(2)`, which continues an
    /// interrupted call from what the task saved (ERESTART_RESTARTBLOCK).
    fn restart_with_restart_syscall(&mut self);
    /// Forgets that the task is in a syscall, so nothing later treats the
    /// registers as a restartable call (a signal handler is entered).
    fn clear_syscall(&mut self);
    fn instruction_pointer(&self) -> u64;
    fn stack_pointer(&self) -> u64;
    fn set_stack_pointer(&mut self, sp: u64);
    /// Sets the thread pointer, as `clone(CLONE_SETTLS)` does (fs_base).
    fn set_tls(&mut self, tls: u64);
}

impl UserRegs for Registers {
    fn syscall_number(&self) -> u64 {
        self.orig_rax
    }

    fn syscall_arguments(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    fn syscall_return(&self) -> u64 {
        self.rax
    }

    fn set_syscall_return(&mut self, value: u64) {
        self.rax = value;
    }

    fn restart_syscall(&mut self, nr: u64) {
        // rax held the number on entry; the host never ran the call, but the
        // Sentry may have overwritten rax, so put the number back.
        self.rip = self.rip.wrapping_sub(SYSCALL_INSN_LEN);
        self.rax = nr;
    }

    fn restart_with_restart_syscall(&mut self) {
        self.rip = self.rip.wrapping_sub(SYSCALL_INSN_LEN);
        self.rax = NR_RESTART_SYSCALL;
    }

    fn clear_syscall(&mut self) {
        self.orig_rax = u64::MAX;
    }

    fn instruction_pointer(&self) -> u64 {
        self.rip
    }

    fn stack_pointer(&self) -> u64 {
        self.rsp
    }

    fn set_stack_pointer(&mut self, sp: u64) {
        self.rsp = sp;
    }

    fn set_tls(&mut self, tls: u64) {
        self.fs_base = tls;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_abi_registers() {
        let mut r = Registers {
            orig_rax: 1,
            rdi: 10,
            rsi: 11,
            rdx: 12,
            r10: 13,
            r8: 14,
            r9: 15,
            rip: 0x1002,
            ..Registers::default()
        };
        assert_eq!(r.syscall_number(), 1);
        assert_eq!(r.syscall_arguments(), [10, 11, 12, 13, 14, 15]);
        r.set_syscall_return(7);
        assert_eq!((r.rax, r.syscall_return()), (7, 7));
        r.restart_syscall(1);
        assert_eq!((r.rip, r.rax), (0x1000, 1));
        r.rip = 0x1002;
        r.restart_with_restart_syscall();
        assert_eq!((r.rip, r.rax), (0x1000, libc::SYS_restart_syscall as u64));
        r.clear_syscall();
        assert_eq!(r.orig_rax, u64::MAX);
        r.set_stack_pointer(0x7000);
        r.set_tls(0x5000);
        assert_eq!(
            (r.stack_pointer(), r.rsp, r.fs_base),
            (0x7000, 0x7000, 0x5000)
        );
        assert_eq!(r.instruction_pointer(), 0x1000);
    }
}
