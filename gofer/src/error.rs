//! The one error type of the crate.

use nix::errno::Errno;

/// Everything a gofer call or the gofer server can fail with.
///
/// `Errno` is the host's answer to a file operation and is meant to be handed
/// to the application as is; every other variant is a failure of the channel
/// itself, which the Sentry should report as `EIO`.
#[derive(Debug, thiserror::Error)]
pub enum GoferError {
    /// The host (or the gofer's confinement checks) refused the operation.
    #[error("host error: {}", Errno::from_raw(*.0))]
    Errno(i32),
    /// A message could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A message is larger than [`crate::protocol::MAX_MESSAGE`].
    #[error("message too large: {0} bytes")]
    TooLarge(usize),
    /// The peer answered with a reply that does not fit the request.
    #[error("unexpected reply to {0}")]
    UnexpectedReply(&'static str),
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// The socket itself failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The gofer process could not be confined (capabilities, seccomp).
    #[error("cannot confine the gofer: {0}")]
    Confine(String),
}

impl GoferError {
    /// The errno the Sentry should give the application for this error.
    pub fn errno(&self) -> i32 {
        match self {
            GoferError::Errno(e) => *e,
            _ => libc::EIO,
        }
    }
}

impl From<Errno> for GoferError {
    fn from(e: Errno) -> Self {
        GoferError::Errno(e as i32)
    }
}
