//! cryo as an OCI runtime: runc's and runsc's lifecycle commands over
//! bundles (oci-spec), with the container state under `--root`.
//!
//! - [`bundle`]: config.json, checked and planned into a sandbox.
//! - [`state`]: state.json, the per-container lock, the status.
//! - [`sandbox`]: the sandbox process `create` leaves behind.
//! - [`hooks`]: config.json's lifecycle hooks.
//! - [`console`]: the container's terminal (process.terminal).
//! - [`commands`]: the commands themselves.

pub mod bundle;
pub mod commands;
pub mod console;
pub mod hooks;
pub mod sandbox;
pub mod state;
