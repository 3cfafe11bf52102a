//! Dropping what a gofer process does not need.
//!
//! No new privileges, not dumpable (no ptrace attach, no core dump), and
//! no inherited fds but stdio and the Sentry socket. The namespaces, chroot,
//! capabilities and seccomp allow-list come after, in `confine`.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use crate::error::GoferError;

/// Hardens the calling gofer process: sets `PR_SET_NO_NEW_PRIVS`, clears
/// `PR_SET_DUMPABLE`, and closes every fd from 3 up except `sock`.
///
/// Call it first thing in the gofer process, before [`crate::serve`].
///
/// # Safety
///
/// Closes fds behind the back of whatever owns them: the caller must hold
/// no `OwnedFd`, `File` or other owner of an fd numbered 3 or above other
/// than `sock`, and no other thread may be using such fds.
pub unsafe fn harden(sock: BorrowedFd<'_>) -> Result<(), GoferError> {
    nix::sys::prctl::set_no_new_privs()?;
    nix::sys::prctl::set_dumpable(false)?;
    let keep = u32::try_from(sock.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    // Stdio stays: tracing writes to stderr, and a free 0–2 would be reused
    // by the next open and then written to by accident.
    const FIRST: u32 = 3;
    if keep < FIRST {
        close_range(FIRST, u32::MAX)?;
    } else {
        if keep > FIRST {
            close_range(FIRST, keep - 1)?;
        }
        if keep < u32::MAX {
            close_range(keep + 1, u32::MAX)?;
        }
    }
    Ok(())
}

fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    // SAFETY: close_range only closes fds of this process; that no live
    // owner refers to them is the contract of `harden`.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    Errno::result(ret).map(drop)
}
