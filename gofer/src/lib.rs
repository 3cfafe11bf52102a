//! The gofer: cryo's only door to the host file system.
//!
//! A gofer process serves a root directory to the Sentry over a unix
//! `SOCK_SEQPACKET` socket: the Sentry names files by handles, walks a
//! whole path of single components in one round trip (with handles, or
//! stats only), and receives open host fds with `SCM_RIGHTS`. Every
//! path the gofer opens is confined to its root with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS`): `..`,
//! symlinks (absolute or relative) and /proc magic links never lead out.
//! Path resolution proper — following symlinks, `..`, mounts — is the
//! Sentry's; the gofer only takes single steps.
//!
//! - [`protocol`]: the messages, their encoding and limits (read its docs
//!   for the protocol).
//! - [`serve`]: the server loop; [`harden`]: what the gofer process drops.
//! - [`Client`]: the Sentry's side.
//!
//! ```no_run
//! use gofer::{Client, OpenFlags};
//! let (sentry_end, gofer_end) = gofer::socketpair()?;
//! std::thread::spawn(move || gofer::serve("/srv/root".as_ref(), gofer_end, true));
//! let client = Client::new(sentry_end);
//! let root = client.attach()?;
//! let walk = client.walk(&root, &["etc", "hostname"])?;
//! let file = &walk.nodes[1];
//! let fd = client.open(&file.handle, OpenFlags::READ_ONLY)?;
//! let _fingerprint = file.stat.fingerprint();
//! # let _ = fd;
//! # Ok::<(), gofer::GoferError>(())
//! ```

mod client;
mod confine;
mod error;
mod harden;
mod host;
pub mod protocol;
mod server;
pub mod wire;

pub use client::Client;
pub use error::GoferError;
pub use harden::harden;
pub use protocol::{
    Access, DirEntry, FileStat, FileType, Fingerprint, Handle, OpenFlags, SetAttr, SetTime, Walk,
    WalkStats, WalkStatus, WalkedNode,
};
pub use server::serve;
pub use wire::socketpair;

/// The gofer process's entry point: adopts the socket inherited as `fd`,
/// hardens the process (closing every other fd from 3 up), confines it to
/// `root` (its own mount namespace, chroot, file capabilities only, a
/// syscall allow-list) and serves it until the Sentry hangs up.
///
/// Meant for `cryo gofer` at process start, before anything in the process
/// owns an fd of 3 or above; that is why this crate, not the CLI, holds the
/// `unsafe` of adopting and closing fds.
pub fn serve_inherited(
    root: &std::path::Path,
    fd: std::os::fd::RawFd,
    read_only: bool,
) -> Result<(), GoferError> {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    if fd < 3 {
        return Err(GoferError::Errno(libc::EBADF));
    }
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| GoferError::Errno(e as i32))?;
    // SAFETY: `fd` is open (checked above) and was handed to this process by
    // its parent for the gofer alone; nothing else in the process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: called at the start of the gofer process, where no other owner
    // of an fd numbered 3 or above exists and no other thread runs.
    unsafe { harden(sock.as_fd())? };
    confine::confine(root)?;
    serve(std::path::Path::new("/"), sock, read_only)
}
