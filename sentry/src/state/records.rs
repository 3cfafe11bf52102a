//! The kernel section's records: every saved kernel object, each a
//! `Savable` with a stable type name and a version, so `cryo inspect` shows
//! them by type and a newer cryo can migrate older ones.
//!
//! No record holds a host value (invariant 2): no host fd, pid, pointer or
//! absolute time. Files are named by their path in the container with a
//! fingerprint; clocks are sandbox-relative.

use serde::{Deserialize, Serialize};

use platform::{FpState, Registers};

use crate::kernel::creds::Credentials;
use crate::kernel::limits::LimitSet;
use crate::kernel::signal::{SigInfo, SigSet, SignalHandlers};
use crate::kernel::time::{ClockId, ClocksState};
use crate::kernel::uts::UtsNamespace;
use crate::mm::{FileRange, MmState};
use crate::vfs::inode::Fingerprint;
use crate::vfs::state::{OpenFileState, PipeSnapshot, VfsState};

/// What the kernel as a whole holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KernelRecord {
    pub uts: UtsNamespace,
    pub clocks: ClocksState,
    pub next_tid: i32,
    /// How many task records follow.
    pub tasks: u32,
}
statefile::savable_serde!(KernelRecord, "kernel.Kernel", 1);

/// The mount namespace: the overlay's upper layer and /dev/shm.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VfsRecord {
    pub state: VfsState,
}
statefile::savable_serde!(VfsRecord, "vfs.Vfs", 1);

/// Which ranges of the memory file hold pages (the memory section has them).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemoryFileRecord {
    pub ranges: Vec<FileRange>,
}
statefile::savable_serde!(MemoryFileRecord, "mm.MemoryFile", 1);

/// One task: its registers (with the full FP/SSE/AVX state) and per-task
/// kernel state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub tid: i32,
    pub creds: Credentials,
    pub regs: Registers,
    pub fp: FpState,
    pub umask: u32,
    /// The working directory's path in the container.
    pub cwd: Vec<u8>,
    pub signal_handlers: SignalHandlers,
    pub signal_mask: SigSet,
    /// Signals generated but not yet delivered (blocked ones).
    pub pending: Vec<SigInfo>,
    pub alt_stack: (u64, u32, u64),
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    pub limits: LimitSet,
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    pub cpu_time_ns: u64,
    /// An interrupted sleep's deadline, on its clock (restart_syscall).
    pub restart: Option<(i64, ClockId)>,
}
statefile::savable_serde!(TaskRecord, "kernel.Task", 1);

/// One descriptor of a task's table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FdRecord {
    pub fd: i32,
    pub cloexec: bool,
    pub file: OpenFileState,
}

/// A task's descriptor table and the pipe buffers its files share.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FdTableRecord {
    pub fds: Vec<FdRecord>,
    pub pipes: Vec<PipeSnapshot>,
}
statefile::savable_serde!(FdTableRecord, "kernel.FdTable", 1);

/// A file some mapping of the task maps, to re-open on restore.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MappedFileRecord {
    pub path: String,
    /// Some shared mapping of it writes back, so it re-opens read-write.
    pub writable: bool,
    pub fingerprint: Option<Fingerprint>,
}

/// A task's address space: VMAs with their memory-file offsets, brk, and
/// the files its mappings come from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MmRecord {
    pub mm: MmState,
    pub files: Vec<MappedFileRecord>,
}
statefile::savable_serde!(MmRecord, "mm.MemoryManager", 1);
