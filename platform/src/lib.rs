//! How application code is run and stopped.
//!
//! A platform knows registers, address spaces and context switches; it knows
//! nothing about Linux semantics. The Sentry drives it through three traits:
//!
//! * [`Platform`] creates address spaces and contexts and reports the host
//!   [`Layout`] (usable virtual address bits, page size, where the stub lives).
//! * [`AddressSpace`] is one application address space. Every mapping in it is
//!   a range of the Sentry's memory file (invariant 1 of DESIGN.md): the
//!   platform is told the memory file's fd once, at creation, and afterwards
//!   only maps, unmaps and protects ranges of it.
//! * [`Context`] runs application code on a [`CpuState`] inside an address
//!   space until the application makes a system call, faults, or is
//!   interrupted by the Sentry ([`Interrupter`]).
//!
//! The ptrace implementation lives in [`ptrace`], and everything only ptrace
//! needs (tracer threads, `PTRACE_SEIZE` hand-over, CPU binding) stays there;
//! the trap-in-stub platform (after gVisor's systrap: seccomp turns each
//! application syscall into a signal handled inside the stub, which hands it
//! to the Sentry through shared memory) lives in [`systrap`]. A KVM
//! platform would implement the same traits and add a row to
//! [`PLATFORMS`]. All platform unsafety lives in this crate.

pub mod arch;
mod error;
pub mod host_threads;
pub mod layout;
pub mod ptrace;
pub mod systrap;

use std::any::Any;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

pub use arch::{
    cpuid_faulting, cpuid_faulting_supported, host_hwcap2, host_xfeatures, set_cpuid_faulting,
    CpuState, FpState, Registers,
};
pub use error::PlatformError;
pub use layout::Layout;

/// Page protections of a mapping, as in `mmap(2)`'s `PROT_*`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}
statefile::versioned!(Prot, "platform.Prot", 1);

impl Prot {
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
    pub const READ: Prot = Prot {
        read: true,
        write: false,
        exec: false,
    };
    pub const READ_WRITE: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };
    pub const READ_EXEC: Prot = Prot {
        read: true,
        write: false,
        exec: true,
    };
    pub const ALL: Prot = Prot {
        read: true,
        write: true,
        exec: true,
    };

    /// From the `PROT_*` bits of mmap(2). Unknown bits are the caller's to reject.
    pub fn from_bits(bits: u64) -> Prot {
        Prot {
            read: bits & libc::PROT_READ as u64 != 0,
            write: bits & libc::PROT_WRITE as u64 != 0,
            exec: bits & libc::PROT_EXEC as u64 != 0,
        }
    }

    /// The `PROT_*` bits for a host mmap/mprotect.
    pub fn to_bits(self) -> i32 {
        let mut bits = libc::PROT_NONE;
        if self.read {
            bits |= libc::PROT_READ;
        }
        if self.write {
            bits |= libc::PROT_WRITE;
        }
        if self.exec {
            bits |= libc::PROT_EXEC;
        }
        bits
    }
}

/// Why a [`Context::switch`] returned to the Sentry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The application executed a system call instruction. The number and
    /// arguments are where the architecture's syscall ABI puts them
    /// (`Registers::syscall_nr`, `syscall_args`; on x86_64 orig_rax, then
    /// rdi, rsi, rdx, r10, r8, r9). The host did not execute it; the Sentry
    /// sets the result (`Registers::set_return`) before the next switch.
    Syscall,
    /// The application faulted (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP from
    /// an int3 or single step). `addr` is the faulting address (si_addr),
    /// `code` the si_code, `access` what the access tried, when the host says.
    Fault {
        signo: i32,
        code: i32,
        addr: u64,
        access: Access,
    },
    /// [`Interrupter::interrupt`] was called: the application was stopped at
    /// an instruction boundary and its registers are in the `CpuState`.
    Interrupted,
}

/// The kind of memory access that faulted, where the host reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
    Unknown,
}

/// One application address space.
///
/// All ranges are page-aligned; `offset` is an offset into the memory file the
/// platform was created with.
///
/// # Threads
///
/// An address space is shared (`Arc`) by the host threads that run its
/// application threads. A platform may keep per-host-thread machinery for
/// each of them (ptrace: a stub thread traced by that host thread; a
/// trap-in-stub platform: a stub thread and its shared-memory channel; KVM: a
/// vCPU) and may require every request to come from a host thread that has
/// such a thread here: the one that created the address space
/// ([`Platform::new_address_space`]), or one that has used a context from
/// [`AddressSpace::new_thread`] with it, and has not called
/// [`AddressSpace::exit_thread`] since. How a thread is handed to its host
/// thread (ptrace's `PTRACE_SEIZE`, CPU binding, ...) is the platform's own
/// business, behind these calls.
pub trait AddressSpace: Send + Sync + Any {
    /// Maps `[offset, offset + len)` of the memory file at `addr` with `prot`,
    /// shared (writes land in the memory file), replacing whatever was there.
    fn map(&self, addr: u64, len: u64, offset: u64, prot: Prot) -> Result<(), PlatformError>;
    /// Removes every mapping in `[addr, addr + len)`.
    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError>;
    /// Changes the protection of `[addr, addr + len)`, which is mapped.
    fn protect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError>;
    /// A context for a new application thread of this address space, called
    /// by a host thread that already runs application code here. The context
    /// is moved to the host thread that will run the new thread; that host
    /// thread's first request on it (`switch`, `fp_state`, `set_fp_state`,
    /// with this address space) makes it the new thread's owner, after which
    /// it may also `map`, `unmap`, ... here. That host thread must not
    /// already have a thread in this address space. A context dropped unused
    /// leaves its thread's resources until the address space is dropped.
    fn new_thread(&self) -> Result<Box<dyn Context>, PlatformError>;
    /// The calling host thread's application thread has exited: its
    /// platform thread goes (the address space and its other threads stay).
    /// After this the caller has no thread here. A host thread that has a
    /// thread here must call it before it ends.
    fn exit_thread(&self) -> Result<(), PlatformError>;
    /// For a platform's own context to reach its address-space type.
    fn as_any(&self) -> &dyn Any;
}

/// A context runs application code: a task's view of a CPU. It is not tied
/// to one address space (execve switches a task to a new one) but is used by
/// one host thread at a time, through that host thread's thread in the
/// address space passed in.
pub trait Context: Send {
    /// Loads `state` into the CPU, runs the application in `aspace` until the
    /// next [`Event`], and stores the registers back into `state`.
    ///
    /// The floating point / vector state stays with the context between
    /// switches (it is not copied on every syscall); use [`Context::fp_state`]
    /// and [`Context::set_fp_state`] where it must be read or replaced
    /// (checkpoint, restore, signal frames).
    ///
    /// Several host threads may switch into the same address space at once,
    /// each on its own thread of it.
    fn switch(
        &mut self,
        aspace: &dyn AddressSpace,
        state: &mut CpuState,
    ) -> Result<Event, PlatformError>;
    /// The full FP/SSE/AVX state (XSAVE layout) of this context in `aspace`.
    fn fp_state(&mut self, aspace: &dyn AddressSpace) -> Result<FpState, PlatformError>;
    /// Replaces the FP/SSE/AVX state before the next switch into `aspace`.
    fn set_fp_state(
        &mut self,
        aspace: &dyn AddressSpace,
        fp: &FpState,
    ) -> Result<(), PlatformError>;
    /// A handle another thread can use to stop a running switch.
    fn interrupter(&self) -> Arc<dyn Interrupter>;
}

/// Stops a context that is running application code, from any thread.
pub trait Interrupter: Send + Sync {
    /// Makes the current (or, if none is running, the next) `switch` return
    /// [`Event::Interrupted`] promptly. Idempotent while pending.
    fn interrupt(&self);
}

/// Creates address spaces and contexts. What a platform provides:
///
/// * a name (the `--platform` spelling) and a row in [`PLATFORMS`];
/// * the host [`Layout`], with the range its own code occupies in every
///   address space ([`Layout::stub_addr`]) kept off application mappings;
/// * address spaces made only of memory-file mappings ([`AddressSpace`]),
///   with one platform thread per host thread that runs application code in
///   them (see [`AddressSpace`]'s *Threads*);
/// * contexts that run application code until a syscall, a fault or an
///   interrupt ([`Context`], [`Event`]): the host never executes an
///   application syscall, and signals sent to the platform's processes
///   never reach the application;
/// * the FP/vector state in the XSAVE layout, per context.
///
/// Everything else (how threads are traced or bound to CPUs, how requests
/// reach the application's process) stays inside the platform.
pub trait Platform: Send + Sync {
    /// The platform's name as the CLI spells it (`ptrace`, `kvm`).
    fn name(&self) -> &'static str;
    /// The host's usable address-space layout, probed at start.
    fn layout(&self) -> &Layout;
    /// A new, empty address space (nothing mapped but the platform's own
    /// stub), whose first thread belongs to the calling host thread.
    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError>;
    /// A new context, for the calling host thread's thread in whichever
    /// address space it is switched into (the one the caller created, or
    /// will create: execve). A new application thread's context comes from
    /// [`AddressSpace::new_thread`] instead.
    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError>;
}

/// One platform this build can run on: its name as `--platform` spells it,
/// whether this host can run it and how to create it over the Sentry's
/// memory file.
pub struct PlatformEntry {
    pub name: &'static str,
    /// Whether this host can run the platform (cheap: no stub is created),
    /// or why not.
    pub available: fn() -> Result<(), String>,
    /// Creates the platform. The platform keeps its own duplicate of the
    /// memory file's descriptor.
    pub create: fn(BorrowedFd<'_>) -> Result<Arc<dyn Platform>, PlatformError>,
}

/// Every platform of this build, fastest first. A new platform adds its
/// row here.
pub const PLATFORMS: &[PlatformEntry] = &[
    PlatformEntry {
        name: "systrap",
        available: systrap::host_support,
        create: |memory_file| Ok(Arc::new(systrap::SystrapPlatform::new(memory_file)?)),
    },
    PlatformEntry {
        name: "ptrace",
        available: ptrace_available,
        create: |memory_file| Ok(Arc::new(ptrace::PtracePlatform::new(memory_file)?)),
    },
];

fn ptrace_available() -> Result<(), String> {
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Ok(s) if s.trim() == "3" => {
            Err("kernel.yama.ptrace_scope is 3: ptrace is disabled on this host".into())
        }
        _ => Ok(()),
    }
}

/// The preferred platform (the fastest) when the host can run it; see
/// [`default_platform`] for the one used when none is asked for.
pub const DEFAULT_PLATFORM: &str = "systrap";

/// The platform used when none is asked for: the first row of
/// [`PLATFORMS`] this host can run (systrap where the kernel enables
/// FSGSBASE, else ptrace), or [`DEFAULT_PLATFORM`] if none says it can (its
/// creation then fails with the reason).
pub fn default_platform() -> &'static str {
    PLATFORMS
        .iter()
        .find(|p| (p.available)().is_ok())
        .map_or(DEFAULT_PLATFORM, |p| p.name)
}

/// The registry row of `name`, or [`PlatformError::UnknownPlatform`]
/// naming the known ones. Cheap: lets a caller refuse a bad name before it
/// creates anything.
pub fn lookup(name: &str) -> Result<&'static PlatformEntry, PlatformError> {
    PLATFORMS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PlatformError::UnknownPlatform {
            name: name.to_string(),
            known: PLATFORMS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Creates the platform called `name` over the memory file.
pub fn by_name(
    name: &str,
    memory_file: BorrowedFd<'_>,
) -> Result<Arc<dyn Platform>, PlatformError> {
    (lookup(name)?.create)(memory_file)
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn the_default_is_registered_and_unknown_names_are_refused() {
        assert_eq!(
            lookup(DEFAULT_PLATFORM).map(|p| p.name).ok(),
            Some("systrap")
        );
        assert!(lookup(default_platform()).is_ok());
        assert!(lookup("ptrace").is_ok());
        let err = lookup("bogus")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("\"bogus\"") && err.contains("ptrace"), "{err}");
        let names: Vec<_> = PLATFORMS.iter().map(|p| p.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");
    }
}
