//! Architecture-specific parts of the Sentry, one folder per architecture
//! (like gVisor's `linux64_<arch>.go` and Asterinas's per-arch modules):
//! syscall numbers and names, the syscall ABI on the registers
//! ([`UserRegs`]), the signal frame, `struct stat`, and the architecture's
//! own syscalls. The generic kernel names syscalls, never numbers them, and
//! edits registers only through [`UserRegs`], so a new architecture is a new
//! folder exporting the same names. The registers themselves and the host
//! layout live in the platform crate's `arch`.
//!
//! What an architecture folder exports:
//!
//! * `syscall_name(nr)`, `syscall_number(name)`: its numbering
//!   (asm/unistd); `ARCH_SYSCALLS`: table rows for its own syscalls
//!   (x86_64: arch_prctl);
//! * [`UserRegs`] for `platform::Registers`: syscall number, arguments,
//!   return value, restart, instruction and stack pointer, TLS;
//! * `encode_stat`, `STAT_SIZE`: its `struct stat`;
//! * `clone_args`: clone(2)'s argument order;
//! * `signal_frame`: `FrameLayout`, `RED_ZONE`, `UCONTEXT_SIZE`,
//!   `encode_ucontext`, `decode_ucontext`, `encode_fpstate`,
//!   `handler_entry`, `sigreturn_ucontext`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
