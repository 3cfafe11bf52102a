//! The ptrace platform: application code runs in stub processes traced with
//! `PTRACE_SYSEMU`, so the host never executes an application syscall.
//!
//! * A **stub process** is one per address space. It is forked from the
//!   Sentry, stops itself for its tracer, and is then cleaned by *injected*
//!   syscalls (close every fd but the memory file, unmap everything but the
//!   stub code page). Afterwards it holds only the stub page and what the
//!   Sentry maps from the memory file.
//! * The **stub code page** (`syscall; int3`) is mapped in the Sentry itself at
//!   [`Layout::stub_addr`], once per process, so every forked stub inherits it
//!   at the same address. An injected syscall points `rip` at it, sets the
//!   registers, `PTRACE_CONT`s, and waits for the `int3`.
//! * A [`PtraceContext`] loads registers with `PTRACE_SETREGS`, resumes with
//!   `PTRACE_SYSEMU` and classifies the next stop.
//!
//! # Threads and thread affinity
//!
//! Linux binds a tracee to one tracer *thread*. An address space has one stub
//! thread per application thread, each traced by the host thread that runs
//! that application thread; every request (`map`, `unmap`, `protect`,
//! `new_thread`, `exit_thread`, `switch`, `fp_state`, ...) acts through the
//! calling thread's own stub thread, so it must come from a host thread that
//! has one here; any other thread gets [`PlatformError::WrongThread`].
//! Requests from different host threads run concurrently (no lock is held
//! across a switch's wait); `map` and friends from one thread while others
//! run application code are fine (mappings are process-wide in the stub).
//!
//! * [`Platform::new_address_space`] forks the stub; its first thread belongs
//!   to the calling host thread.
//! * [`AddressSpace::new_thread`] (from a thread that has a stub thread here)
//!   injects a `clone` at the stub page's clone entry: the new stub thread,
//!   untraced and with every signal blocked, parks in a `pause` loop that
//!   uses no stack. It returns a [`PtraceContext`] that remembers the parked
//!   thread; the host thread that first uses that context (`switch`,
//!   `fp_state`, `set_fp_state`) adopts it (`PTRACE_SEIZE` +
//!   `PTRACE_INTERRUPT`, then its signals unblocked) and becomes its
//!   tracer. That first switch sets every register (the parked `pause` is
//!   not restarted). A context never used leaves a parked thread until the
//!   address space is dropped.
//! * [`AddressSpace::exit_thread`] injects `exit(0)` in the caller's stub
//!   thread (never a SIGKILL: that would kill the whole stub) and reaps it.
//!   The stub's first thread (the thread group leader) cannot be reaped
//!   while others live: it exits too, and is reaped when the address space
//!   is dropped; before it exits, the parent-death signal and
//!   `PTRACE_O_EXITKILL` are taken off it, so the host thread that created
//!   the address space may end first.
//! * A host thread that has a stub thread here must call `exit_thread`
//!   before it ends: a tracer that exits with a tracee kills the whole stub
//!   (`PTRACE_O_EXITKILL`; for the creator also `PR_SET_PDEATHSIG`).
//! * Dropping the address space (any thread; the last `Arc`) kills the stub
//!   and reaps every thread.
//!
//! Each stub thread and its tracer are bound to one CPU (see
//! `StubThread::bind_to_tracer_cpu`), per thread; `exit_thread` releases
//! the tracer's binding.
//!
//! # Events
//!
//! * A syscall stop is [`Event::Syscall`](crate::Event::Syscall); the host
//!   did not run it. The next switch resumes after the `syscall` instruction
//!   with whatever `rax` the Sentry set. A syscall stop is also what `int
//!   0x80` or a syscall from a 32-bit code segment produce: the Sentry decides
//!   what to do with `cs != USER_CS` or an `int 0x80` (bytes `cd 80` before
//!   `rip`).
//! * SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP raised by the CPU are
//!   [`Event::Fault`](crate::Event::Fault) with `si_addr` and `si_code`; the
//!   signal is never delivered to the stub, and the next switch re-executes
//!   the faulting instruction (after the Sentry fixed the mapping, or changed
//!   `rip`). `access` is [`Access::Exec`](crate::Access::Exec) when the fault
//!   address is `rip`, else `Unknown` (ptrace does not expose the page-fault
//!   error code): the Sentry compares with its VMA's protections.
//! * [`Interrupter::interrupt`](crate::Interrupter::interrupt) sends
//!   [`INTERRUPT_SIGNAL`] to the running stub thread; the stop becomes
//!   [`Event::Interrupted`](crate::Event::Interrupted), registers as of the
//!   interrupted instruction. A request while no switch runs makes the next
//!   switch return `Interrupted` without running anything.
//! * Every other signal sent to a stub (by kill(2), a terminal, ...) is
//!   suppressed. A stub that dies is [`PlatformError::StubDied`] and the
//!   address space stays dead.
//!
//! # The memory file and the stub page
//!
//! [`PtracePlatform::new`] duplicates the memory file's fd; stubs inherit the
//! duplicate across fork at the same number and keep no other fd. The stub
//! code page is mapped in the Sentry and every stub at
//! [`Layout::stub_addr`] (the platform's layout says where it really is): the
//! Sentry must keep application mappings off it ([`Layout::is_app_range`]);
//! `map` refuses to cover it, `unmap` and `protect` skip it. Stubs are forked
//! from the Sentry, so they inherit its seccomp filter: fork them before
//! installing it, or allow mmap, munmap, mprotect, close_range and rseq.

mod address_space;
mod context;
mod inject;
mod regs;
mod seccomp;
mod stub;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

pub use address_space::PtraceAddressSpace;
pub use context::{PtraceContext, PtraceInterrupter, INTERRUPT_SIGNAL};

use crate::{AddressSpace, Context, Layout, Platform, PlatformError};

/// The ptrace platform. See the [module documentation](self).
#[derive(Debug)]
pub struct PtracePlatform {
    layout: Layout,
    /// The Sentry's own duplicate of the memory file. Stubs inherit it at the
    /// same fd number across fork, and keep only it.
    memory_file: OwnedFd,
}

impl PtracePlatform {
    /// Probes the layout, duplicates `memory_file` (the platform keeps its own
    /// descriptor; the caller may close theirs) and maps the stub code page in
    /// this process.
    pub fn new(memory_file: BorrowedFd<'_>) -> Result<Self, PlatformError> {
        let mut layout = Layout::probe()?;
        layout.stub_addr = stub::install_stub_page(&layout)?;
        let memory_file = memory_file
            .try_clone_to_owned()
            .map_err(|e| PlatformError::Host {
                op: "dup(memory file)",
                source: io_to_nix(e),
            })?;
        tracing::debug!(
            ?layout,
            memory_fd = memory_file.as_raw_fd(),
            "ptrace platform ready"
        );
        Ok(PtracePlatform {
            layout,
            memory_file,
        })
    }

    /// The platform's own descriptor of the memory file (also the descriptor
    /// number inside every stub).
    pub fn memory_fd(&self) -> RawFd {
        self.memory_file.as_raw_fd()
    }

    /// [`Platform::new_address_space`] without the `Arc<dyn>`, for callers that want
    /// the concrete type (e.g. to learn the stub's pid).
    pub fn new_ptrace_address_space(&self) -> Result<PtraceAddressSpace, PlatformError> {
        PtraceAddressSpace::new(self.layout, self.memory_file.as_raw_fd())
    }
}

impl Platform for PtracePlatform {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        Ok(Arc::new(self.new_ptrace_address_space()?))
    }

    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        Ok(Box::new(PtraceContext::new()))
    }
}

fn io_to_nix(e: std::io::Error) -> nix::Error {
    e.raw_os_error()
        .map(nix::Error::from_raw)
        .unwrap_or(nix::Error::UnknownErrno)
}

/// The calling thread's id.
fn current_tid() -> i32 {
    // Asked at every switch: gettid(2) is a host syscall (through the
    // Sentry's seccomp filter), and a thread's id never changes.
    thread_local! {
        static TID: i32 = nix::unistd::gettid().as_raw();
    }
    TID.with(|t| *t)
}
