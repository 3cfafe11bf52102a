//! Running host syscalls inside a stub through the stub code page.

use nix::unistd::Pid;

use super::regs::{get_regs, set_regs};
use super::stub::{wait_stop, Stop, STUB_TRAP_OFFSET};
use crate::arch::{EFLAGS_DEFAULT, USER_CS, USER_DS};
use crate::PlatformError;

/// Runs syscall `nr` with `args` in the stopped stub thread `tid` (traced by
/// the calling thread) and returns its result. The thread's registers are
/// saved before and restored after, so this works at any ptrace stop: the
/// initial SIGSTOP, a syscall stop, a fault.
///
/// A negative errno result is [`PlatformError::Injected`]; a stub that dies
/// is [`PlatformError::StubDied`] (and reaped).
pub(crate) fn inject(
    pid: i32,
    tid: i32,
    stub_addr: u64,
    name: &'static str,
    nr: libc::c_long,
    args: &[u64],
) -> Result<u64, PlatformError> {
    inject_at(
        pid,
        tid,
        stub_addr,
        stub_addr + STUB_TRAP_OFFSET,
        name,
        nr,
        args,
    )
}

/// [`inject`] through the stub code at `entry` (a `syscall` instruction),
/// whose `int3` leaves `rip` at `trap_rip`.
pub(crate) fn inject_at(
    pid: i32,
    tid: i32,
    entry: u64,
    trap_rip: u64,
    name: &'static str,
    nr: libc::c_long,
    args: &[u64],
) -> Result<u64, PlatformError> {
    let saved = get_regs(tid)?;
    let mut regs = saved;
    regs.rip = entry;
    regs.rax = nr as u64;
    let mut full = [0u64; 6];
    full[..args.len().min(6)].copy_from_slice(&args[..args.len().min(6)]);
    [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9] = full;
    // Whatever the application did to its flags and segments (TF set, a
    // 32-bit code segment), the injected syscall runs as plain 64-bit code.
    regs.eflags = EFLAGS_DEFAULT;
    regs.cs = USER_CS;
    regs.ss = USER_DS;
    set_regs(tid, &regs)?;

    let result = loop {
        if let Err(source) = nix::sys::ptrace::cont(Pid::from_raw(tid), None) {
            return Err(PlatformError::Host {
                op: "PTRACE_CONT(inject)",
                source,
            });
        }
        match wait_stop(tid)? {
            Stop::Gone(how) => return Err(PlatformError::StubDied { pid, how }),
            Stop::Signal(libc::SIGTRAP) => {
                let after = get_regs(tid)?;
                if after.rip == trap_rip {
                    break after.rax;
                }
                return Err(PlatformError::UnexpectedStop {
                    pid,
                    what: format!("SIGTRAP at {:#x} while injecting {name}", after.rip),
                });
            }
            Stop::Signal(sig @ (libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE)) => {
                return Err(PlatformError::UnexpectedStop {
                    pid,
                    what: format!("signal {sig} while injecting {name}"),
                });
            }
            // Anything else (a stale interrupt SIGSTOP, a SIGCHLD or SIGWINCH
            // sent by someone): suppressed; continue to the int3.
            Stop::Signal(sig) => tracing::trace!(pid, sig, "signal suppressed during injection"),
        }
    };
    set_regs(tid, &saved)?;
    let ret = result as i64;
    tracing::trace!(pid, name, args = ?&args, ret = format_args!("{ret:#x}"), "injected");
    if (-4095..0).contains(&ret) {
        return Err(PlatformError::Injected {
            syscall: name,
            errno: (-ret) as i32,
        });
    }
    Ok(result)
}

/// After a ptrace request on `tid` failed with `err`: if the thread was
/// killed, a StubDied (and the thread reaped); otherwise `err`.
pub(crate) fn gone_or(pid: i32, tid: i32, err: PlatformError) -> PlatformError {
    if let PlatformError::Host {
        source: nix::errno::Errno::ESRCH,
        ..
    } = err
    {
        // ESRCH: the tracee is not in a ptrace stop, which for a thread we
        // only resume ourselves means it was killed. Its exit is next.
        if let Ok(Stop::Gone(how)) = wait_stop(tid) {
            return PlatformError::StubDied { pid, how };
        }
    }
    err
}

/// Makes the stopped stub thread `tid` (traced by the calling thread) call
/// `exit(0)`: only that thread ends. With `reap`, waits until its exit is
/// reported (a thread group leader's is not before every other thread's, so
/// the leader is never reaped here).
pub(crate) fn inject_exit(
    pid: i32,
    tid: i32,
    stub_addr: u64,
    reap: bool,
) -> Result<(), PlatformError> {
    let mut regs = get_regs(tid)?;
    regs.rip = stub_addr;
    regs.rax = libc::SYS_exit as u64;
    regs.rdi = 0;
    regs.eflags = EFLAGS_DEFAULT;
    regs.cs = USER_CS;
    regs.ss = USER_DS;
    set_regs(tid, &regs)?;
    loop {
        if let Err(source) = nix::sys::ptrace::cont(Pid::from_raw(tid), None) {
            return Err(PlatformError::Host {
                op: "PTRACE_CONT(exit)",
                source,
            });
        }
        if !reap {
            return Ok(());
        }
        match wait_stop(tid)? {
            Stop::Gone(how) => {
                tracing::debug!(pid, tid, how, "stub thread exited");
                return Ok(());
            }
            // A stale interrupt or a signal sent by someone: suppressed.
            Stop::Signal(sig) => tracing::trace!(pid, tid, sig, "signal suppressed during exit"),
        }
    }
}
