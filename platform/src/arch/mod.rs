//! Architecture-specific register state. Only x86_64 exists today; arm64
//! follows behind the same names.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
