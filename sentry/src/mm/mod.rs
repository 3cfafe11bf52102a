//! Memory management (gVisor's pkg/sentry/mm and pgalloc).
//!
//! * [`MemoryFile`]: the one memfd holding all application memory.
//! * [`Vma`]: one mapping; [`MemoryManager`]: one address space, with the
//!   memory syscalls' semantics (`ops.rs`), its backing map (`pma.rs`),
//!   faults (`fault.rs`), copy-in/out (`io.rs`), fork with copy-on-write
//!   (`fork.rs`), checkpoint/restore (`state.rs`) and the copy-on-write
//!   freeze that lets memory be saved while the application runs (`freeze.rs`).

mod fault;
pub mod file;
mod fork;
mod freeze;
mod io;
pub mod lazy;
mod manager;
pub mod memory_file;
mod ops;
mod pma;
mod state;
mod vdso_map;
pub mod vma;
mod vma_set;

#[cfg(test)]
pub(crate) mod tests;

pub use file::{MappableFile, OpenFn};
pub use fork::ForkedMm;
pub use freeze::{sync_freeze, unbind_thread, Snapshot, SnapshotStats, FREEZE_BLOCK};
pub use io::{until_short, IoVec, UIO_MAXIOV};
pub use manager::{
    usable_range, MemoryManager, DEFAULT_STACK_LIMIT, MMAP_MIN_ADDR, STACK_GUARD_GAP,
};
pub use memory_file::{FileRange, MemoryFile, MemoryFileError, MF_PAGE_SIZE};
mod nopage;
pub use ops::MmapFile;
pub use state::{
    BackingState, MappedFileRecord, MemoryFileRecord, MmRecord, MmRestoreError, MmState,
    UnnamedMappingRecord,
};
pub use vma::{FileBacking, FileState, Vma, VmaKind, VmaState};
pub use vma_set::MAX_MAP_COUNT;
