//! Checkpoint and restore of a whole sandbox (DESIGN.md, "Checkpoint and
//! restore"): `save` walks the kernel into a statefile, `restore` validates
//! one completely and re-creates every host resource from it.

pub mod records;
mod restore;
mod save;

pub use restore::{restore, RestoreError};
pub use save::{
    checkpoint, statefile_path, task_record, CheckpointError, CheckpointOptions, CheckpointStats,
};

/// The statefile's name inside an image directory (runsc's is
/// `checkpoint.img`; cryo's own format gets its own name).
pub const STATEFILE_NAME: &str = "checkpoint.cryo";

/// The memory section holding the memory file's pages.
pub const MEMORY_SECTION: &str = "memory-file";
