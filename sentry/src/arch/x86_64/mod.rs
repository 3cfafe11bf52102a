//! x86_64: syscall numbers and names, and the signal frame.

pub mod signal_frame;
mod syscalls;

pub use syscalls::syscall_name;
