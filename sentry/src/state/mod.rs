//! Checkpoint and restore of a whole sandbox (DESIGN.md, "Checkpoint and
//! restore"): `save` walks the kernel into a statefile, `restore` validates
//! one completely and re-creates every host resource from it.

pub mod hostile;
mod restore;
mod restore_tree;
mod save;
pub mod types;
pub mod validate;
pub mod working_set;

pub use restore::{
    load_shared_memory, restore, restore_container, restore_container_held, ContainerRestore,
    HeldRestore, RestoreError, Take,
};
pub use save::{
    checkpoint, checkpoint_leave_running, statefile_path, wait_background_checkpoint,
    BackgroundCommit, BackgroundDone, CheckpointError, CheckpointOptions, CheckpointOutcome,
    CheckpointStats,
};

/// The statefile's name inside an image directory (runsc's is
/// `checkpoint.img`; cryo's own format gets its own name).
pub const STATEFILE_NAME: &str = "checkpoint.cryo";

/// The kernel section holding the object table (every kernel object's
/// record, keyed by type and id). A statefile whose kernel section has
/// another name was written by an earlier cryo with positional records.
pub const OBJECTS_SECTION: &str = "objects";

/// The header entry holding one past the highest address any process of the
/// sandbox had mapped (hexadecimal): a restore onto a host whose address
/// space ends lower is refused before anything else is read.
pub const KEY_HIGHEST_ADDRESS: &str = "va.highest-address";

/// The header entry holding the page size the application ran with, in
/// bytes (the header's own `page_size` is the memory image's).
pub const KEY_PAGE_SIZE: &str = "mm.page-size";

/// The memory section holding the memory file's pages.
pub const MEMORY_SECTION: &str = "memory-file";
