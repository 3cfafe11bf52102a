//! Syscall argument orders that differ between architectures.

use crate::kernel::clone::CloneArgs;
use crate::syscalls::Args;

/// clone(2)'s arguments as x86_64 passes them: flags, stack, parent_tid,
/// child_tid, tls. (Most other architectures, arm64 among them, swap the
/// last two: Linux's CONFIG_CLONE_BACKWARDS.)
pub fn clone_args(a: &Args) -> CloneArgs {
    CloneArgs {
        flags: a.raw(0),
        stack: a.addr(1),
        parent_tid: a.addr(2),
        child_tid: a.addr(3),
        tls: a.raw(4),
        pidfd: a.addr(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_takes_child_tid_before_tls() {
        let c = clone_args(&Args([1, 2, 3, 4, 5, 6]));
        assert_eq!(
            (c.flags, c.stack, c.parent_tid, c.child_tid, c.tls),
            (1, 2, 3, 4, 5)
        );
    }
}
