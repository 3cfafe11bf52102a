//! Architecture-specific parts of the Sentry, one folder per architecture
//! (like gVisor's `linux64_<arch>.go` and Asterinas's per-arch modules):
//! syscall numbers and names, the syscall ABI on the registers
//! ([`UserRegs`]), the signal frame, `struct stat`, and the architecture's
//! own syscalls. The generic kernel names syscalls, never numbers them, and
//! edits registers only through [`UserRegs`], so a new architecture is a new
//! folder exporting the same names. The registers themselves and the host
//! layout live in the platform crate's `arch`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
