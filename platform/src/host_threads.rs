//! Capabilities are per thread (capset(2) changes only the caller's, and
//! Linux refuses a capset on another thread), unlike a seccomp filter,
//! which TSYNC puts on every thread at once. A process that drops its
//! capabilities after it has started threads (the Sentry's lock-down: the
//! statefile's workers, the timekeeper and the systrap pool and forker
//! run before it) must have each thread drop its own: this asks every
//! other thread to, with a signal whose handler makes the same raw
//! syscalls, the way glibc's setxid broadcast changes every thread's ids.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use thiserror::Error;

/// The signal the request travels on: a real-time one nothing in the
/// Sentry uses (glibc keeps 32 and 33; the platforms interrupt with
/// SIGSTOP and SIGUSR2).
fn request_signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// How long the other threads get to answer. A thread blocking the signal
/// never does: that is an error, never a silent thread with capabilities.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why not every thread dropped its capabilities.
#[derive(Debug, Error)]
pub enum CapsBroadcastError {
    #[error("installing the handler of signal {signal}: {errno}")]
    Handler { signal: i32, errno: nix::Error },
    #[error("signalling thread {tid}: {errno}")]
    Signal { tid: i32, errno: nix::Error },
    #[error("{answered} of {asked} threads dropped their capabilities within {ANSWER_TIMEOUT:?}")]
    Timeout { answered: usize, asked: usize },
    #[error("a thread's capset failed with errno {0}")]
    Capset(i32),
}

/// The capabilities every thread keeps (one bit per capability number).
static KEEP: AtomicU64 = AtomicU64::new(0);
/// Threads that have answered.
static ANSWERED: AtomicUsize = AtomicUsize::new(0);
/// The first errno a thread's capset met (0: none).
static FAILED: AtomicI32 = AtomicI32::new(0);

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops, on the calling thread, every capability not in `keep` from its
/// bounding set (where it may: CAP_SETPCAP), its ambient and inheritable
/// sets, and sets its effective and permitted sets to `keep`. Only raw
/// syscalls: it runs in a signal handler. Returns 0 or the capset errno.
fn drop_on_this_thread(keep: u64) -> i32 {
    for cap in 0..64u64 {
        if keep & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments; EINVAL past the host's
            // last capability and EPERM without CAP_SETPCAP are harmless
            // (a process that lacks it has no capability to lose here).
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
    }
    // SAFETY: as above; clearing the ambient set needs no privilege.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |shift: u32| CapData {
        effective: (keep >> shift) as u32,
        permitted: (keep >> shift) as u32,
        inheritable: 0,
    };
    let data = [word(0), word(32)];
    // SAFETY: capset reads a valid version-3 header and two data words that
    // live across the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if ret == 0 {
        0
    } else {
        nix::errno::Errno::last_raw()
    }
}

extern "C" fn on_request(_: libc::c_int) {
    // The interrupted code may be about to read errno.
    let saved = nix::errno::Errno::last_raw();
    let err = drop_on_this_thread(KEEP.load(Ordering::Acquire));
    if err != 0 {
        let _ = FAILED.compare_exchange(0, err, Ordering::AcqRel, Ordering::Acquire);
    }
    ANSWERED.fetch_add(1, Ordering::AcqRel);
    nix::errno::Errno::set_raw(saved);
}

/// Installs `handler` for real-time signal `signal` with SA_RESTART (so
/// the syscalls it interrupts go on) and every signal blocked meanwhile.
///
/// # Safety
/// `handler` must be SIG_IGN, SIG_DFL or async-signal-safe.
unsafe fn set_handler(
    signal: libc::c_int,
    handler: libc::sighandler_t,
) -> Result<(), CapsBroadcastError> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: sigfillset writes the mask it is given.
    unsafe { libc::sigfillset(&mut action.sa_mask) };
    // SAFETY: both pointers are valid for the call; the old action is not
    // wanted. The caller vouches for the handler.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(CapsBroadcastError::Handler {
            signal,
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

/// Leaves the calling thread and every thread in `others` (this process's
/// other threads; one that has ended meanwhile is skipped) with the
/// capabilities `keep` only (see [`drop_on_this_thread`]). `keep` must be
/// a subset of what each thread has permitted. Not reentrant: one
/// lock-down per process.
pub fn drop_capabilities_on_every_thread(
    others: &[i32],
    keep: u64,
) -> Result<(), CapsBroadcastError> {
    let signal = request_signal();
    KEEP.store(keep, Ordering::Release);
    ANSWERED.store(0, Ordering::Release);
    FAILED.store(0, Ordering::Release);
    // SAFETY: the handler makes only raw syscalls and atomic stores, and
    // saves and restores errno; every signal is blocked while it runs.
    unsafe {
        set_handler(
            signal,
            on_request as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    }?;
    let me = nix::unistd::gettid().as_raw();
    let pid = nix::unistd::getpid().as_raw();
    let mut asked = 0;
    for &tid in others.iter().filter(|&&t| t != me) {
        // SAFETY: tgkill with plain integers, to a thread of this process.
        let ret = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
        if ret == 0 {
            asked += 1;
        } else {
            match nix::errno::Errno::last() {
                nix::errno::Errno::ESRCH => {}
                errno => return Err(CapsBroadcastError::Signal { tid, errno }),
            }
        }
    }
    let err = drop_on_this_thread(keep);
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while ANSWERED.load(Ordering::Acquire) < asked {
        if Instant::now() >= deadline {
            return Err(CapsBroadcastError::Timeout {
                answered: ANSWERED.load(Ordering::Acquire),
                asked,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Every signal sent has been handled: ignoring it from here on makes a
    // stray one harmless (its default would end the process).
    // SAFETY: SIG_IGN installs no code.
    unsafe { set_handler(signal, libc::SIG_IGN) }?;
    match (err, FAILED.load(Ordering::Acquire)) {
        (0, 0) => Ok(()),
        (0, e) | (e, _) => Err(CapsBroadcastError::Capset(e)),
    }
}
