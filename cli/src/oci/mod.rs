//! cryo as an OCI runtime: runc's and runsc's lifecycle commands over
//! bundles (oci-spec), with the container state under `--root`.
//!
//! - [`bundle`]: config.json, checked and planned into a sandbox.
//! - [`state`]: state.json, the per-container lock, the status.
//! - [`sandbox`]: the sandbox process `create` leaves behind.
//! - [`hooks`]: config.json's lifecycle hooks.
//! - [`console`]: the container's terminal (process.terminal).
//! - [`commands`]: the commands themselves.
//! - [`restore`]: `restore --bundle`, a checkpointed container restored
//!   as a new one; [`identity`] and [`inventory`] are what it checks.
//! - [`worklog`]: dump.log and restore.log in --work-path.

pub mod bundle;
pub mod cgroup;
pub mod commands;
pub mod console;
pub mod criu_stats;
pub mod hooks;
pub mod identity;
pub mod inventory;
pub mod restore;
pub mod sandbox;
pub mod state;
pub mod worklog;
