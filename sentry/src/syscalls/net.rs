//! Sockets (gVisor's sys_socket.go). The netstack is not there yet: every
//! call that would make a socket is ENOSYS (it is not in the table), and
//! the calls that ask about an existing descriptor answer as Linux does
//! for one that is not a socket, since no descriptor can be one.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;

/// getpeername, getsockname, getsockopt, shutdown, ... on `fd`: EBADF for
/// no descriptor, else ENOTSOCK (bash asks getpeername of its stdin to
/// learn whether it runs under rshd).
pub fn not_a_socket(t: &mut Task, a: &Args) -> SysResult {
    t.fds().lock().file(a.fd(0))?;
    Err(Errno::ENOTSOCK)
}
