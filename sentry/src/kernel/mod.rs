//! Tasks, thread groups, file descriptor tables, signals, clocks and limits
//! (gVisor's pkg/sentry/kernel).

pub mod attrs;
pub mod clone;
pub mod creds;
mod deliver;
pub mod exec;
pub mod exit;
pub mod fd_table;
pub mod futex;
pub mod identity;
pub mod interrupt;
pub mod itimer;
pub mod job_control;
#[allow(clippy::module_inception)]
mod kernel;
pub mod limits;
mod oom;
pub mod pid_namespace;
pub mod pidfd;
pub mod posix_timer;
pub mod proc;
pub mod proc_log;
pub mod run;
pub mod sessions;
pub mod sigio;
pub mod signal;
pub mod task;
pub mod thread_group;
pub mod time;
mod unshare;
pub mod uts;
pub mod wait;

pub use kernel::{Kernel, KernelConfig, KernelRecord, DEFAULT_MAX_TASKS};
pub use task::{ExitStatus, Task};
