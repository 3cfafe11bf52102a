//! The ptrace stub's seccomp filter.
//!
//! Under PTRACE_SYSEMU the host kernel never runs the application's
//! syscalls (nor seccomp: the ptrace stop comes first), so the filter is
//! for what SYSEMU does not catch: a call into the legacy vsyscall page,
//! which the host kernel would otherwise emulate itself (gettimeofday,
//! time, getcpu: the host's answers, the host's CPU number), and any
//! syscall made while the stub is not under SYSEMU. Those trap (SIGSYS,
//! which the tracer turns into a syscall for the Sentry); the syscalls
//! the tracer injects through the stub page are allowed from that page
//! only, and any other from it kills the stub.

use std::sync::OnceLock;

use crate::systrap::filter::{program, Insn};
use crate::PlatformError;

/// What the tracer injects through the stub page (see address_space.rs
/// and inject.rs), and the clone entry's `pause`.
const INJECTED: &[u32] = &[
    libc::SYS_close_range as u32,
    libc::SYS_munmap as u32,
    libc::SYS_mmap as u32,
    libc::SYS_mprotect as u32,
    libc::SYS_rseq as u32,
    libc::SYS_rt_sigprocmask as u32,
    libc::SYS_clone as u32,
    libc::SYS_prctl as u32,
    libc::SYS_pause as u32,
    libc::SYS_exit as u32,
];

/// `struct sock_fprog`.
#[repr(C)]
pub(crate) struct SockFprog {
    len: u16,
    filter: *const u8,
}

/// The filter of stubs whose code page is at `stub` (one per Sentry
/// process, like the page), built before any stub is forked: a forked stub
/// finds it at the same address in its copy of the Sentry's memory, where
/// the injected seccomp(2) reads it.
pub(crate) struct StubFilter {
    _insns: Box<[u8]>,
    fprog: Box<SockFprog>,
}

// SAFETY: `fprog.filter` points into `_insns`, owned by the same value and
// never written after construction; the pointer is only handed to the
// kernel (in a stub's copy of this memory).
unsafe impl Send for StubFilter {}
// SAFETY: as for Send: immutable after construction.
unsafe impl Sync for StubFilter {}

static FILTER: OnceLock<Result<StubFilter, String>> = OnceLock::new();

impl StubFilter {
    /// The address of the `struct sock_fprog` to pass to seccomp(2).
    pub(crate) fn fprog_addr(&self) -> u64 {
        &*self.fprog as *const SockFprog as u64
    }
}

/// The filter for the stub page at `stub` of `page` bytes.
pub(crate) fn stub_filter(stub: u64, page: u64) -> Result<&'static StubFilter, PlatformError> {
    FILTER
        .get_or_init(|| {
            let insns: Vec<Insn> = program(stub, page, INJECTED, false)?;
            let len = u16::try_from(insns.len()).map_err(|_| "filter too long".to_string())?;
            let bytes: Box<[u8]> = insns.iter().flat_map(|i| i.to_bytes()).collect();
            let fprog = Box::new(SockFprog {
                len,
                filter: bytes.as_ptr(),
            });
            Ok(StubFilter {
                _insns: bytes,
                fprog,
            })
        })
        .as_ref()
        .map_err(|e| PlatformError::StubPage(format!("the stub's seccomp filter: {e}")))
}
