//! Architecture-specific parts of the Sentry: syscall numbers and names.
//! Registers and layouts live in the platform crate's `arch`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
