//! System call handlers, one file per family (gVisor's syscalls/linux), and
//! the table from number to handler.
//!
//! A handler validates its arguments, calls into the kernel objects and
//! returns `Ok(value)` or `Err(errno)`; Linux semantics live in the objects.

mod args;
mod capability;
mod fasync;
mod fs;
mod futex;
mod info;
mod locks;
mod mm;
mod mount;
mod net;
mod poll;
mod process;
mod sched;
mod signal;
mod strace;
mod table;
mod thread;

pub use thread::{fork, vfork};
mod time;
mod tty;

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

/// Linux's ERESTARTNOINTR: a call that made no progress and runs again
/// whatever happens meanwhile, after a signal handler too (fork while a
/// checkpoint stops the tasks). Never reaches the application.
pub const ERESTARTNOINTR: Errno = Errno(513);

/// Linux's ERESTART_RESTARTBLOCK: the interrupted call continues through
/// restart_syscall with what the task saved (a sleep's deadline).
pub const ERESTART_RESTARTBLOCK: Errno = Errno(516);

/// Linux's ERESTARTNOHAND: an interrupted wait that returns EINTR when a
/// signal handler is to run (whatever its SA_RESTART) and restarts
/// otherwise: poll, select, epoll_wait, pause, sigsuspend, sigtimedwait,
/// an interrupted sleep. A blocking file operation's plain EINTR instead
/// restarts after a handler with SA_RESTART (Linux's ERESTARTSYS).
pub const ERESTARTNOHAND: Errno = Errno(514);

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
    // A signalfd read or polled by this call sees this task's signals.
    poll::note_current(task);
    // File access is checked against this task's effective ids and
    // capabilities.
    {
        let c = task.creds();
        crate::vfs::perm::note_current(c.euid, c.egid, &c.groups, c.caps.effective);
    }
    // Absolute paths start at this task's root (chroot(2)), mounts are
    // those of its namespace.
    {
        let fs = task.tg().fs();
        let fs = fs.lock();
        crate::vfs::resolve::note_root(&fs.root);
        crate::vfs::mount_ns::note_current(&fs.mnt_ns);
    }
    // A write(2) on a socket sends this task's credentials.
    crate::net::socket::note_current(crate::net::UCred {
        pid: task.tgid(),
        uid: task.creds().uid,
        gid: task.creds().gid,
    });
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
    // An interrupted blocking call: a handler about to run makes it EINTR,
    // or a restart after the handler when the call is restartable (a
    // blocking file operation's EINTR, ERESTARTSYS) and the handler has
    // SA_RESTART. With no handler to run (the task is being stopped for a
    // checkpoint, or the signal has no handler) it made no progress and
    // restarts, since nothing the application sees happened.
    let result = match result {
        Err(e) if e == Errno::EINTR || e == ERESTARTSYS || e == ERESTARTNOHAND => {
            match task.handler_to_run() {
                Some(flags)
                    if e != ERESTARTNOHAND && flags & crate::kernel::signal::SA_RESTART != 0 =>
                {
                    Err(ERESTARTSYS)
                }
                Some(_) => {
                    if e == ERESTARTNOHAND {
                        // A wait kept its deadline for a restart that a
                        // handler now replaces with EINTR.
                        task.set_restart(None);
                    }
                    Err(Errno::EINTR)
                }
                None if e != Errno::EINTR
                    || task.interrupt().is_pending()
                    || task.has_deliverable_signal() =>
                {
                    Err(ERESTARTSYS)
                }
                None => Err(Errno::EINTR),
            }
        }
        r => r,
    };
    if task.kernel().strace {
        strace::print(task, nr, entry, &args, &result);
    }
    match result {
        Err(e) if e == ERESTARTSYS || e == ERESTARTNOINTR => {
            // The call runs again when the task resumes (after a
            // checkpoint, say).
            task.regs_mut().restart_syscall(nr);
        }
        Err(e) if e == ERESTART_RESTARTBLOCK => task.regs_mut().restart_with_restart_syscall(),
        Ok(v) => task.regs_mut().set_syscall_return(v),
        Err(e) => task.regs_mut().set_syscall_return(e.to_return()),
    }
}
