//! Every record type a statefile's object table holds: the list the shape
//! test (golden/tests/shapes.rs) walks to hold a fingerprint of every saved
//! type, nested ones included.

use statefile::{TypeVisitor, Versioned};

use crate::kernel::fd_table::FdTableRecord;
use crate::kernel::posix_timer::PosixTimersRecord;
use crate::kernel::task::TaskRecord;
use crate::kernel::thread_group::ThreadGroupRecord;
use crate::kernel::KernelRecord;
use crate::mm::{MemoryFileRecord, MmRecord};
use crate::vfs::epoll::EpollRecord;
use crate::vfs::state::{OpenFileState, PipeSnapshot, VfsState};

/// Visits every record type and, through them, every nested saved type.
pub fn visit_saved_types<V: TypeVisitor>(v: &mut V) {
    KernelRecord::visit(v);
    crate::kernel::proc_log::ProcessLogRecord::visit(v);
    VfsState::visit(v);
    MemoryFileRecord::visit(v);
    ThreadGroupRecord::visit(v);
    MmRecord::visit(v);
    FdTableRecord::visit(v);
    OpenFileState::visit(v);
    PipeSnapshot::visit(v);
    crate::vfs::pty::PtySnapshot::visit(v);
    TaskRecord::visit(v);
    EpollRecord::visit(v);
    PosixTimersRecord::visit(v);
    crate::kernel::attrs::TaskAttrs::visit(v);
    crate::kernel::attrs::ProcessAttrsRecord::visit(v);
    crate::vfs::lock::FileLocksRecord::visit(v);
    crate::net::state::UnixSocketRecord::visit(v);
    crate::net::inet::state::InetSocketRecord::visit(v);
    crate::net::inet::state::InetStackRecord::visit(v);
    crate::net::netlink::NetlinkSocketRecord::visit(v);
    crate::vfs::mount_ns_state::MountNamespacesRecord::visit(v);
}
