//! Errno values returned to the application.
//!
//! A syscall handler returns `Result<u64, Errno>`; the dispatcher turns an
//! `Err(e)` into `-e` in rax. Values are Linux's (x86_64 and arm64 share
//! them), so the libc constants are used directly.

use std::fmt;

/// A Linux errno, as returned to the application.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(pub const $name: Errno = Errno(libc::$name);)*

            /// The symbolic name (`ENOENT`), for logs and strace.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $(libc::$name => stringify!($name),)*
                    _ => "E?",
                }
            }
        }
    };
}

errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENXIO,
    E2BIG,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EBUSY,
    EEXIST,
    EXDEV,
    ENODEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENFILE,
    EMFILE,
    ENOTTY,
    ETXTBSY,
    EFBIG,
    ENOSPC,
    ESPIPE,
    EROFS,
    EMLINK,
    EPIPE,
    EDOM,
    ERANGE,
    EDEADLK,
    ENAMETOOLONG,
    ENOLCK,
    ENOSYS,
    ENOTEMPTY,
    ELOOP,
    ENODATA,
    EOVERFLOW,
    ETIMEDOUT,
    ESTALE,
    ENOTSOCK,
    EAFNOSUPPORT,
    EOPNOTSUPP,
    ERESTART,
    ENOTCONN,
    EISCONN,
    ECONNREFUSED,
    ECONNRESET,
    EADDRINUSE,
    EADDRNOTAVAIL,
    EPROTOTYPE,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
    ENOPROTOOPT,
    EMSGSIZE,
    EDESTADDRREQ,
    ENOBUFS,
    ETOOMANYREFS,
    ECONNABORTED,
    ENETUNREACH,
    EALREADY,
    EINPROGRESS,
);

impl Errno {
    /// The errno carried by a host error (for files reached through the gofer).
    pub fn from_host(err: std::io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The value a syscall returns in rax for this error.
    pub fn to_return(self) -> u64 {
        (-(self.0 as i64)) as u64
    }
}

impl From<nix::Error> for Errno {
    fn from(e: nix::Error) -> Errno {
        Errno(e as i32)
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno::from_host(e)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_returns() {
        assert_eq!(Errno::ENOENT.name(), "ENOENT");
        assert_eq!(Errno::ENOSYS.to_return() as i64, -38);
        assert_eq!(Errno(9999).name(), "E?");
    }
}
