//! x86_64: syscall numbers and names, the syscall ABI on the registers,
//! the signal frame, `struct stat`, clone's argument order and arch_prctl.

mod abi;
pub mod cpuid;
mod entry;
mod prctl;
mod regs;
pub mod signal_frame;
mod stat;
mod syscalls;

pub use abi::clone_args;
pub use entry::{is_native_syscall, FOREIGN_ABI};
pub use regs::UserRegs;
pub use stat::{encode_stat, STAT_SIZE};
pub use syscalls::{syscall_name, syscall_number, ARCH_SYSCALLS};
