//! The virtual file system (gVisor's pkg/sentry/vfs and fsimpl, simplified).
//!
//! A [`Vfs`] holds the sandbox's mount namespaces (`mount_ns`), each a
//! tree of [`Dentry`]s, each naming an
//! [`Inode`] of some file system. The Sentry resolves every path itself
//! (`..`, symlinks, mount crossings): file systems only look up single names.
//! An open file is an [`OpenFile`] (gVisor's FileDescription) over the
//! inode's [`FileOps`].
//!
//! File systems: `tmpfs` (memory), `gofer_fs` (the host's root, read-only,
//! through the gofer), `overlay` (the writable root of `cryo do`: tmpfs over
//! gofer_fs), `devfs`, `procfs`, plus pipes and donated host stdio fds.

pub mod abi;
pub mod dentry;
pub mod devfs;
pub mod donated;
pub mod epoll;
pub mod eventfd;
pub mod fasync;
pub mod file;
pub mod gofer_fs;
pub mod inode;
pub mod inotify;
pub mod line_discipline;
pub mod lock;
pub mod mount_ns;
pub mod mount_ns_state;
pub mod mount_state;
pub mod mount_tree;
pub mod namespace;
pub mod overlay;
pub mod perm;
pub mod pipe;
pub mod poll;
pub mod procfs;
pub mod pty;
pub mod resolve;
pub mod signalfd;
pub mod splice;
pub mod stat;
pub mod state;
pub mod statfs;
pub mod sysfs;
pub mod timerfd;
pub mod tmpfs;
#[allow(clippy::module_inception)]
pub mod vfs;
pub mod xattr;

#[cfg(test)]
mod testing;

pub use dentry::{Dentry, Mount};
pub use file::{FileKind, FileOps, Interrupt, IoCtx, OpenFile, SaveAs, SeekMode};
pub use inode::{DirEntry, Inode};
pub use stat::{Clock, HostClock, Stat, Timespec};
pub use vfs::Vfs;
