//! The Sentry: cryo's user-space kernel.
//!
//! Layout follows gVisor's pkg/sentry: `kernel/` (tasks, thread groups,
//! fd tables, clocks), `mm/` (the memory file, VMAs, the memory manager),
//! `vfs/` (mounts, overlay, tmpfs, devfs, procfs, gofer-backed files, pipes),
//! `loader/` (ELF, the initial stack), `syscalls/` (the table, one file per
//! family), `state/` (checkpoint and restore of the whole kernel).

pub mod arch;
pub mod boot;
pub mod errno;
pub mod kernel;
pub mod loader;
pub mod mm;
pub mod net;
pub mod state;
pub mod syscalls;
pub mod vdso;
pub mod vfs;

pub use errno::Errno;
