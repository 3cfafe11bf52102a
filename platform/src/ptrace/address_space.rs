//! An address space: one stub process.

use std::any::Any;

use super::current_tid;
use super::inject::{gone_or, inject};
use super::stub::{fork_stub, kill_and_reap, StubThread};
use crate::{AddressSpace, Layout, PlatformError, Prot};

/// One application address space, backed by a stub process. See the
/// [module documentation](super) for the thread-affinity rules.
pub struct PtraceAddressSpace {
    layout: Layout,
    /// The memory file's fd number inside the stub.
    memory_fd: i32,
    /// The stub process (thread group) id.
    pid: i32,
    /// The stub's traced threads, one per tracer thread (only one today).
    pub(crate) threads: Vec<StubThread>,
    /// The stub has died and been reaped: its pid must not be signalled again.
    pub(crate) dead: bool,
}

impl std::fmt::Debug for PtraceAddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtraceAddressSpace")
            .field("pid", &self.pid)
            .field("dead", &self.dead)
            .finish()
    }
}

impl PtraceAddressSpace {
    /// Forks a stub traced by the calling thread and cleans it: every fd but
    /// `memory_fd` closed, everything but the stub page unmapped.
    pub(crate) fn new(layout: Layout, memory_fd: i32) -> Result<Self, PlatformError> {
        let pid = fork_stub()?;
        let tracer = current_tid();
        let mut aspace = PtraceAddressSpace {
            layout,
            memory_fd,
            pid,
            threads: vec![StubThread {
                tracer,
                tid: pid,
                regs: None,
                fp_owner: None,
                cpu: None,
                switches: 0,
            }],
            dead: false,
        };
        aspace.clean()?;
        tracing::debug!(pid, tracer, "stub process ready");
        Ok(aspace)
    }

    fn clean(&mut self) -> Result<(), PlatformError> {
        self.disable_rseq()?;
        let fd = self.memory_fd as u64;
        if fd > 0 {
            self.syscall("close_range", libc::SYS_close_range, &[0, fd - 1, 0])?;
        }
        self.syscall(
            "close_range",
            libc::SYS_close_range,
            &[fd + 1, u32::MAX as u64, 0],
        )?;
        let stub = self.layout.stub_addr;
        let stub_end = self.layout.stub_end();
        self.syscall("munmap", libc::SYS_munmap, &[0, stub])?;
        // Up to the end of the whole address space, not only the usable part
        // we probed: the forked Sentry may have mappings up there too.
        // (x86_64 refuses that page with EINVAL; arm64 does not.)
        let top = 1u64 << self.layout.va_bits;
        match self.syscall("munmap", libc::SYS_munmap, &[stub_end, top - stub_end]) {
            Err(PlatformError::Injected {
                errno: libc::EINVAL,
                ..
            }) => {
                let max = self.layout.max_user_addr;
                self.syscall("munmap", libc::SYS_munmap, &[stub_end, max - stub_end])?;
            }
            r => {
                r?;
            }
        }
        Ok(())
    }

    /// glibc registers an rseq area for every thread and fork keeps the
    /// registration; with the area unmapped, the kernel would SIGSEGV the stub
    /// the next time it is preempted. Unregister it (its parameters come from
    /// PTRACE_GET_RSEQ_CONFIGURATION, Linux >= 5.13).
    fn disable_rseq(&mut self) -> Result<(), PlatformError> {
        #[repr(C)]
        #[derive(Default)]
        struct RseqConfig {
            rseq_abi_pointer: u64,
            rseq_abi_size: u32,
            signature: u32,
            flags: u32,
            pad: u32,
        }
        const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
        const RSEQ_FLAG_UNREGISTER: u64 = 1;
        let mut config = RseqConfig::default();
        // SAFETY: the kernel writes at most `addr` (the size we pass) bytes
        // into `config`, a live, exclusively borrowed local.
        let r = unsafe {
            libc::ptrace(
                PTRACE_GET_RSEQ_CONFIGURATION,
                self.pid,
                std::mem::size_of::<RseqConfig>() as *mut libc::c_void,
                &mut config as *mut RseqConfig,
            )
        };
        if r < 0 {
            tracing::debug!(errno = %nix::errno::Errno::last(), "no rseq configuration (old kernel?)");
            return Ok(());
        }
        if config.rseq_abi_pointer == 0 {
            return Ok(());
        }
        self.syscall(
            "rseq(RSEQ_FLAG_UNREGISTER)",
            libc::SYS_rseq,
            &[
                config.rseq_abi_pointer,
                config.rseq_abi_size as u64,
                RSEQ_FLAG_UNREGISTER,
                config.signature as u64,
            ],
        )?;
        Ok(())
    }

    /// The stub process's host pid.
    pub fn stub_pid(&self) -> i32 {
        self.pid
    }

    /// The layout this address space was created with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The index of the stub thread traced by the calling thread.
    pub(crate) fn thread_index(&self) -> Result<usize, PlatformError> {
        if self.dead {
            return Err(PlatformError::StubDied {
                pid: self.pid,
                how: "died earlier".into(),
            });
        }
        let caller = current_tid();
        self.threads
            .iter()
            .position(|t| t.tracer == caller)
            .ok_or(PlatformError::WrongThread {
                stub: self.pid,
                tracer: self.threads.first().map_or(0, |t| t.tracer),
                caller,
            })
    }

    /// Every result of a ptrace operation passes through here: a request
    /// that failed with ESRCH on a stub that was killed becomes `StubDied`,
    /// and a dead stub is recorded so it is neither used nor signalled again.
    pub(crate) fn note<T>(&mut self, r: Result<T, PlatformError>) -> Result<T, PlatformError> {
        let r = r.map_err(|e| gone_or(self.pid, self.pid, e));
        if let Err(PlatformError::StubDied { .. }) = &r {
            self.dead = true;
        }
        r
    }

    /// Injects a syscall through the stub thread the calling thread traces.
    fn syscall(
        &mut self,
        name: &'static str,
        nr: libc::c_long,
        args: &[u64],
    ) -> Result<u64, PlatformError> {
        let i = self.thread_index()?;
        let tid = self.threads[i].tid;
        let r = inject(self.pid, tid, self.layout.stub_addr, name, nr, args);
        self.note(r)
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        let mask = self.layout.page_size - 1;
        if addr & mask != 0 || len & mask != 0 {
            return Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "not page aligned",
            });
        }
        match addr.checked_add(len) {
            Some(end) if end <= self.layout.max_user_addr => Ok(()),
            _ => Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "beyond the end of user address space",
            }),
        }
    }

    /// `[addr, addr + len)` minus the stub page, as up to two ranges.
    fn around_stub(&self, addr: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
        let (stub, stub_end, end) = (self.layout.stub_addr, self.layout.stub_end(), addr + len);
        let below = (addr, end.min(stub));
        let above = (addr.max(stub_end), end);
        [below, above]
            .into_iter()
            .filter(|(a, e)| a < e)
            .map(|(a, e)| (a, e - a))
    }
}

impl AddressSpace for PtraceAddressSpace {
    fn map(&mut self, addr: u64, len: u64, offset: u64, prot: Prot) -> Result<(), PlatformError> {
        self.check_range(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        if !self.layout.is_app_range(addr, len) {
            return Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "overlaps the stub page",
            });
        }
        if offset & (self.layout.page_size - 1) != 0
            || !matches!(offset.checked_add(len), Some(e) if e <= i64::MAX as u64)
        {
            return Err(PlatformError::InvalidRange {
                addr: offset,
                len,
                why: "bad memory file offset",
            });
        }
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let args = [
            addr,
            len,
            prot.to_bits() as u64,
            flags,
            self.memory_fd as u64,
            offset,
        ];
        let got = self.syscall("mmap", libc::SYS_mmap, &args)?;
        if got != addr {
            return Err(PlatformError::UnexpectedStop {
                pid: self.pid,
                what: format!("injected mmap at {addr:#x} mapped at {got:#x}"),
            });
        }
        Ok(())
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.check_range(addr, len)?;
        let ranges: Vec<_> = self.around_stub(addr, len).collect();
        for (a, l) in ranges {
            self.syscall("munmap", libc::SYS_munmap, &[a, l])?;
        }
        Ok(())
    }

    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.check_range(addr, len)?;
        let ranges: Vec<_> = self.around_stub(addr, len).collect();
        for (a, l) in ranges {
            self.syscall(
                "mprotect",
                libc::SYS_mprotect,
                &[a, l, prot.to_bits() as u64],
            )?;
        }
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Drop for PtraceAddressSpace {
    fn drop(&mut self) {
        if !self.dead {
            kill_and_reap(self.pid);
            self.dead = true;
        }
    }
}
