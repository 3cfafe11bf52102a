//! The systrap platform: application syscalls trap into a handler inside
//! the stub itself, which hands them to the Sentry through shared memory,
//! with no ptrace stop (after gVisor's systrap).
//!
//! * **Stubs** are cloned by the **zygote**, a process forked once from a
//!   dedicated forker thread of the Sentry that keeps only the stub code
//!   page (at [`Layout::stub_addr`], mapped in the Sentry and inherited
//!   across that fork), one scratch page and a socket to the Sentry, with
//!   the signal dispositions, mask and session every stub needs. For each
//!   new address space the Sentry sends it the shared memory, completion
//!   eventfd and memory file fds (SCM_RIGHTS); it clones a stub with
//!   CLONE_PARENT (a child of the Sentry, which reaps it, with its
//!   parent-death signal tied to the forker thread, so it means "the Sentry
//!   died"), which puts the fds at the numbers the Sentry asked for and
//!   becomes the **leader**. Cloning that small process is cheap; forking
//!   the Sentry copied its page tables for each stub (and made its heap
//!   copy-on-write) for the child to unmap it all again. A pool thread
//!   keeps two address spaces ready (`pool`). The leader unmaps everything
//!   else, maps its shared memory (a memfd per address space: a control
//!   page the stub sees read-only, a status page, one slot per thread),
//!   seals the stub region with mseal(2) and serves requests: a queue of
//!   up to 40 mmap/munmap/mprotect of the memory file (run in order, up to
//!   the first that fails) or a clone of a new stub thread. Maps into
//!   ranges the stub does not map, and every request while none of the
//!   stub's threads runs application code, wait in the queue until the
//!   next switch (or the next request that must run now), so a fork's or
//!   an exec's mappings and protections take one request. It runs on
//!   registers only and never runs application code; it is bound to the
//!   CPU of the Sentry thread that calls it (a local wake-up). It reports
//!   each completion by writing an eventfd (its filter allows write(2) to
//!   that fd alone, and application threads none), so an application that
//!   forges the status page cannot make the Sentry reuse memory before the
//!   leader has unmapped it. See `shared` for the memory layout and `stub`
//!   for the code.
//! * **Seccomp**: every stub thread has the leader's filter; application
//!   threads add theirs. A syscall from outside the stub code page is
//!   SECCOMP_RET_TRAP (SIGSYS); from inside it only the stub's own few are
//!   allowed (for application threads: futex wait/wake, rt_sigreturn,
//!   exit), anything else kills the stub. So an application that jumps into
//!   the stub code cannot make a host syscall of its choice.
//! * **Events**: SIGSYS, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and
//!   [`INTERRUPT_SIGNAL`] run the stub's handler on the thread's signal
//!   stack (in its slot): it copies the frame's registers into the slot,
//!   sets the slot's state word to EVENT and wakes the Sentry (futex, if it
//!   sleeps), then polls for a bounded time and sleeps until the Sentry
//!   hands the slot back with a command: resume (registers into the frame,
//!   rt_sigreturn), copy the frame's FP state out or in, copy it in and
//!   resume (a set FP state waits in the slot for the next resume: a new
//!   context's first switch and a sigreturn's FP restore cost no hand-over
//!   of their own), or exit. The
//!   Sentry side polls for a bounded time too before it sleeps. Events are
//!   reported exactly as the ptrace platform reports them. Polls are
//!   bounded by TSC time (`spin`: 8 µs each side by default, so a task that
//!   blocks in the Sentry costs its stub thread at most that much CPU
//!   before it sleeps), and paced per thread (`address_space::Pacing`):
//!   polling while hand-overs succeed; when most need a wake-up (the host
//!   is busy, or tasks block and wake each other), the thread and its
//!   Sentry thread are bound to one CPU shared by every bound pair, with
//!   no polling, so that wake-ups stay on that CPU (a wake-up of an idle
//!   vCPU costs ~30 µs on the development VM); a thread whose Sentry
//!   thread waits for the leader naps at once. Tuning knobs (environment):
//!   `CRYO_SYSTRAP_SPIN_NS`, `CRYO_SYSTRAP_SENTRY_SPIN_NS`,
//!   `CRYO_SYSTRAP_LEADER_SPIN_NS` (poll budgets), `CRYO_SYSTRAP_BIND`
//!   (`0`: never bind, `always`: bind at the first window),
//!   `CRYO_SYSTRAP_LEADER_FOLLOWS=0`, `CRYO_SYSTRAP_POOL` (ready address
//!   spaces, 0 for none).
//! * **Interrupts** send [`INTERRUPT_SIGNAL`] to the running stub thread; a
//!   pending flag makes an interrupt while no switch runs end the next
//!   switch at once, and a stale signal is absorbed by a resume.
//! * **Hostile stubs**: everything in the shared memory but the control page
//!   is writable by the application. The Sentry reads each field once with
//!   a volatile or atomic load, validates it and never follows a pointer
//!   from it; a stub that breaks the protocol (a bad state word or event, a
//!   thread that stops answering interrupts, a leader that does not answer)
//!   is killed and the request fails with [`PlatformError::Systrap`]. The
//!   Sentry polls a stub that sleeps long for its death.
//!
//! Any host thread may drive any stub thread (no ptrace affinity), but the
//! contract's bookkeeping is kept: each host thread runs its own slot, new
//! threads' contexts are adopted on first use, and `exit_thread` ends the
//! caller's stub thread. Dropping the address space kills the stub; it is
//! reaped at once if a switch may still run in it, else by a reaper thread
//! (no application code runs after SIGKILL when every thread is parked).
//!
//! The zygote is forked from the Sentry's forker thread (started with the
//! first address space), so it and every stub inherit that thread's
//! seccomp filter: a Sentry filter must leave the forker thread out or
//! allow the zygote's and the stubs' own syscalls (see `filter`, plus fork,
//! rt_sigaction, setsid, prctl, setrlimit, close_range, close, mseal,
//! recvmsg, write, clone, dup3, getppid and mmap/munmap for the set-up),
//! or every stub dies at birth with an exit status naming the failed step;
//! the Sentry's own calls add socketpair and sendmsg.
//!
//! Needs x86_64 with FSGSBASE enabled (the handler saves and loads fs/gs
//! base with rdfsbase/wrfsbase) and XSAVE, and Linux >= 5.9 (close_range;
//! cryo as a whole needs 5.13); mseal needs 6.10, and without it the stub
//! region is not sealed (logged; the filters alone already keep application
//! threads from remapping it).

mod address_space;
mod context;
pub(crate) mod filter;
mod pool;
mod shared;
mod spin;
mod stub;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

pub use address_space::SystrapAddressSpace;
pub use context::{SystrapContext, SystrapInterrupter};
pub use stub::INTERRUPT_SIGNAL;

use crate::{AddressSpace, Context, Layout, Platform, PlatformError};

/// The systrap platform. See the [module documentation](self).
#[derive(Debug)]
pub struct SystrapPlatform {
    layout: Layout,
    page: stub::StubPage,
    memory_file: OwnedFd,
    pool: pool::Pool,
}

/// Whether this host can run the systrap platform, and if not, why.
pub fn host_support() -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("systrap is x86_64 only".into());
    }
    const HWCAP2_FSGSBASE: u64 = 1 << 1;
    // SAFETY: getauxval reads the process's auxiliary vector.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    if hwcap2 & HWCAP2_FSGSBASE == 0 {
        return Err("the kernel does not enable FSGSBASE (Linux >= 5.9 on a CPU with it)".into());
    }
    let leaf1 = std::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return Err("the CPU or kernel has no XSAVE (OSXSAVE)".into());
    }
    Ok(())
}

impl SystrapPlatform {
    pub fn new(memory_file: BorrowedFd<'_>) -> Result<Self, PlatformError> {
        host_support().map_err(|what| PlatformError::Systrap { pid: 0, what })?;
        let mut layout = Layout::probe()?;
        let page = stub::install_stub_page(&layout)?;
        layout.stub_addr = page.addr;
        let memory_file = memory_file
            .try_clone_to_owned()
            .map_err(|e| PlatformError::Host {
                op: "dup(memory file)",
                source: e
                    .raw_os_error()
                    .map(nix::Error::from_raw)
                    .unwrap_or(nix::Error::UnknownErrno),
            })?;
        tracing::debug!(
            ?layout,
            memory_fd = memory_file.as_raw_fd(),
            "systrap platform ready"
        );
        let pool_fd = memory_file.try_clone().map_err(|e| PlatformError::Host {
            op: "dup(memory file)",
            source: e
                .raw_os_error()
                .map(nix::Error::from_raw)
                .unwrap_or(nix::Error::UnknownErrno),
        })?;
        Ok(SystrapPlatform {
            layout,
            page,
            memory_file,
            pool: pool::Pool::new(layout, page, pool_fd),
        })
    }

    pub fn memory_fd(&self) -> i32 {
        self.memory_file.as_raw_fd()
    }

    /// [`Platform::new_address_space`] with the concrete type.
    pub fn new_systrap_address_space(&self) -> Result<SystrapAddressSpace, PlatformError> {
        if let Some(ready) = self.pool.take() {
            ready.adopt_first();
            return Ok(ready);
        }
        SystrapAddressSpace::new(self.layout, self.page, self.memory_file.as_raw_fd())
    }
}

impl Platform for SystrapPlatform {
    fn name(&self) -> &'static str {
        "systrap"
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        Ok(Arc::new(self.new_systrap_address_space()?))
    }

    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        Ok(Box::new(SystrapContext::new()))
    }
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
