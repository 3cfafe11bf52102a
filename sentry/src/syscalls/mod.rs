//! System call handlers, one file per family (gVisor's syscalls/linux), and
//! the table from number to handler.
//!
//! A handler validates its arguments, calls into the kernel objects and
//! returns `Ok(value)` or `Err(errno)`; Linux semantics live in the objects.

mod args;
mod fs;
mod futex;
mod info;
mod locks;
mod mm;
mod process;
mod sched;
mod signal;
mod strace;
mod table;
mod time;

pub use args::Args;
pub use info::fill_random;
pub(crate) use table::{Arg, Entry};

use crate::arch::UserRegs;
use crate::errno::Errno;
use crate::kernel::Task;

/// What a handler returns: the value for the return register, or an errno.
pub type SysResult = Result<u64, Errno>;

/// A syscall handler.
pub type Handler = fn(&mut Task, &Args) -> SysResult;

/// Linux's ERESTARTSYS: an interrupted blocking syscall that is restarted
/// transparently. Never reaches the application.
pub const ERESTARTSYS: Errno = Errno(512);

/// Linux's ERESTART_RESTARTBLOCK: the interrupted call continues through
/// restart_syscall with what the task saved (a sleep's deadline).
pub const ERESTART_RESTARTBLOCK: Errno = Errno(516);

/// Handles the syscall the task stopped at and puts the result in the
/// return register.
pub fn dispatch(task: &mut Task) {
    let nr = task.regs().syscall_number();
    let args = Args(task.regs().syscall_arguments());
    // An i386 entry (int $0x80) numbers its calls differently: none of the
    // x86_64 table may run for it.
    let native = crate::arch::is_native_syscall(task.regs(), |at| {
        let mut b = [0u8; 2];
        task.mm().copy_in_force(at, &mut b).ok().map(|()| b)
    });
    let entry = if native { table::lookup(nr) } else { None };
    let result = match entry {
        Some(entry) => (entry.handler)(task, &args),
        None => Err(Errno::ENOSYS),
    };
    // Invariant 5, for handlers too: whatever returns ENOSYS is logged
    // (once; a handler that logged the unsupported variant already counts).
    if !native {
        task.kernel().log_foreign_abi(nr, crate::arch::FOREIGN_ABI);
    } else if result == Err(Errno::ENOSYS) {
        task.kernel().log_unimplemented(nr);
    }
    // A blocking call that gave up because the task is being stopped (a
    // checkpoint) made no progress: restart it rather than show EINTR,
    // since no signal handler ran.
    let result = match result {
        Err(e)
            if e == Errno::EINTR
                && task.interrupt().is_pending()
                && !task.has_deliverable_signal() =>
        {
            Err(ERESTARTSYS)
        }
        r => r,
    };
    if task.kernel().strace {
        strace::print(task, nr, entry, &args, &result);
    }
    match result {
        Err(e) if e == ERESTARTSYS => {
            // The call runs again when the task resumes (after a
            // checkpoint, say).
            task.regs_mut().restart_syscall(nr);
        }
        Err(e) if e == ERESTART_RESTARTBLOCK => task.regs_mut().restart_with_restart_syscall(),
        Ok(v) => task.regs_mut().set_syscall_return(v),
        Err(e) => task.regs_mut().set_syscall_return(e.to_return()),
    }
}
