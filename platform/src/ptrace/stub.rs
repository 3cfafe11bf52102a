//! The stub code page and stub processes.

use std::sync::{Mutex, OnceLock, Weak};

use nix::errno::Errno;

use crate::{FpState, Layout, PlatformError, Registers};

/// `syscall; int3`: an injected syscall runs the first instruction and stops
/// at the second.
pub(crate) const STUB_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];
/// Where `rip` is after the injected syscall's `int3`.
pub(crate) const STUB_TRAP_OFFSET: u64 = STUB_CODE.len() as u64;

/// Where the clone entry starts in the stub page.
pub(crate) const CLONE_OFFSET: u64 = 16;
/// The clone entry: the parent stops at the `int3` like any injection, the
/// new thread (rax 0) parks in a `pause` loop that uses no stack until its
/// tracer takes it over:
///
/// ```text
///  16: 0f 05             syscall
///  18: 48 85 c0          test rax, rax
///  21: 74 01             jz child
///  23: cc                int3
///  24: b8 22 00 00 00    child: mov eax, 34 (pause)
///  29: 0f 05             syscall
///  31: eb f7             jmp child
/// ```
pub(crate) const CLONE_CODE: [u8; 17] = [
    0x0f, 0x05, 0x48, 0x85, 0xc0, 0x74, 0x01, 0xcc, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb,
    0xf7,
];
/// Where the parent's `rip` is after the clone entry's `int3`.
pub(crate) const CLONE_TRAP_OFFSET: u64 = CLONE_OFFSET + 8;
/// An 8-byte signal mask with every signal set, for `rt_sigprocmask`.
pub(crate) const SIGMASK_FULL_OFFSET: u64 = 48;
/// An 8-byte empty signal mask, for `rt_sigprocmask`.
pub(crate) const SIGMASK_EMPTY_OFFSET: u64 = 56;

/// How far down from the preferred address the stub page may move when that
/// address is taken in the Sentry.
const STUB_SEARCH_STEP: u64 = 16 << 20;

/// The Sentry's stub page: mapped once per process, never unmapped.
static STUB_PAGE: OnceLock<Result<u64, String>> = OnceLock::new();

/// Maps the stub code page in this process (once) and returns its address:
/// `layout.stub_addr`, or lower in the gap above `layout.stack_top` if that
/// address is taken.
pub(crate) fn install_stub_page(layout: &Layout) -> Result<u64, PlatformError> {
    STUB_PAGE
        .get_or_init(|| map_stub_page(layout))
        .clone()
        .map_err(PlatformError::StubPage)
}

fn map_stub_page(layout: &Layout) -> Result<u64, String> {
    let page = layout.page_size as usize;
    let lowest = layout.stack_top + layout.page_size;
    let mut addr = layout.stub_addr;
    while addr >= lowest {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping: this
        // creates a fresh private page or fails.
        let ptr = unsafe {
            libc::mmap(
                addr as usize as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let errno = Errno::last();
            if errno == Errno::EEXIST {
                addr -= STUB_SEARCH_STEP;
                continue;
            }
            return Err(format!("mmap at {addr:#x}: {errno}"));
        }
        if ptr as u64 != addr {
            // SAFETY: the page was just mapped by this call and is unused.
            unsafe { libc::munmap(ptr, page) };
            return Err("the kernel ignores MAP_FIXED_NOREPLACE (Linux >= 4.17 is needed)".into());
        }
        // SAFETY: `ptr` is a fresh, writable, page-sized private mapping owned
        // by this function; filling it with int3 and the stub code stays in
        // bounds (everything written lies below offset 64, a page is at least 4096).
        unsafe {
            std::ptr::write_bytes(ptr as *mut u8, 0xcc, page);
            let base = ptr as *mut u8;
            std::ptr::copy_nonoverlapping(STUB_CODE.as_ptr(), base, STUB_CODE.len());
            std::ptr::copy_nonoverlapping(
                CLONE_CODE.as_ptr(),
                base.add(CLONE_OFFSET as usize),
                CLONE_CODE.len(),
            );
            std::ptr::write_bytes(base.add(SIGMASK_FULL_OFFSET as usize), 0xff, 8);
            std::ptr::write_bytes(base.add(SIGMASK_EMPTY_OFFSET as usize), 0, 8);
        }
        // SAFETY: changes the protection of the page mapped above only.
        if unsafe { libc::mprotect(ptr, page, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err(format!("mprotect of the stub page: {}", Errno::last()));
        }
        tracing::debug!(addr = format_args!("{addr:#x}"), "stub code page mapped");
        return Ok(addr);
    }
    Err(format!(
        "every candidate address between {:#x} and {:#x} is taken in this process",
        lowest, layout.stub_addr
    ))
}

/// Whose FP state is loaded in a stub thread (the context that last ran
/// there) and where to save it when another context takes the thread.
pub(crate) struct FpOwner {
    pub ctx: u64,
    pub slot: Weak<Mutex<Option<FpState>>>,
}

/// One traced thread of a stub process.
pub(crate) struct StubThread {
    /// The stub thread's host tid.
    pub tid: i32,
    /// The registers (as the Sentry sees them) currently loaded in the thread,
    /// when known: a switch with the same registers skips PTRACE_SETREGS.
    pub regs: Option<Registers>,
    /// The context whose FP state is loaded.
    pub fp_owner: Option<FpOwner>,
    /// The CPU the thread and its tracer are bound to.
    pub cpu: Option<usize>,
    /// Switches since the binding was last reconsidered.
    pub switches: u32,
    /// The thread has exited and been reaped: its tid must not be waited for
    /// or signalled again.
    pub gone: bool,
}

impl StubThread {
    pub fn new(tid: i32) -> Self {
        StubThread {
            tid,
            regs: None,
            fp_owner: None,
            cpu: None,
            switches: 0,
            gone: false,
        }
    }
}

/// How many switches a binding lasts before the tracer is let go, so the
/// host scheduler can move a busy sandbox to a less loaded CPU.
const REBIND_EVERY: u32 = 8192;

impl StubThread {
    /// Lets the tracer (the calling thread) run on any CPU again, if a
    /// binding holds it.
    pub fn release_tracer(&mut self) {
        if self.cpu.take().is_some() {
            if let Some(Some(all)) = ORIGINAL_AFFINITY.get() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), all);
            }
        }
    }

    /// Binds the stub thread and its tracer (the calling thread) to the CPU
    /// the tracer is on. A ptrace stop and resume is a wake-up of the other
    /// side: on one CPU a plain context switch, across CPUs an
    /// inter-processor wake-up that costs several times more (gVisor's ptrace
    /// platform binds its stubs for the same reason). Every REBIND_EVERY
    /// switches the tracer is released to any CPU, and both follow wherever
    /// the scheduler puts it.
    pub fn bind_to_tracer_cpu(&mut self) {
        use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        self.switches += 1;
        if self.cpu.is_some() && self.switches < REBIND_EVERY {
            return;
        }
        let original = ORIGINAL_AFFINITY.get_or_init(|| sched_getaffinity(Pid::from_raw(0)).ok());
        if self.cpu.is_some() {
            // Release the tracer; the next switch binds again where it runs.
            if let Some(all) = original {
                let _ = sched_setaffinity(Pid::from_raw(0), all);
            }
            self.cpu = None;
            self.switches = 0;
            return;
        }
        let Ok(cpu) = sched_getcpu() else { return };
        let mut set = CpuSet::new();
        if set.set(cpu).is_err() {
            return;
        }
        if sched_setaffinity(Pid::from_raw(self.tid), &set).is_ok() {
            let _ = sched_setaffinity(Pid::from_raw(0), &set);
            self.cpu = Some(cpu);
            self.switches = 0;
        }
    }
}

/// How a wait for a traced thread ended.
pub(crate) enum Stop {
    /// A ptrace stop; the value is WSTOPSIG (SIGTRAP | 0x80 for syscall stops).
    Signal(i32),
    /// The thread is gone (and reaped); how, for the error message.
    Gone(String),
}

/// Waits for the next stop or exit of traced thread `tid`.
pub(crate) fn wait_stop(tid: i32) -> Result<Stop, PlatformError> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes only to `status`, a live local.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r == tid {
            break;
        }
        let errno = Errno::last();
        if r < 0 && errno == Errno::EINTR {
            continue;
        }
        if r < 0 && errno == Errno::ECHILD {
            return Ok(Stop::Gone("already reaped".into()));
        }
        return Err(PlatformError::Host {
            op: "waitpid(stub)",
            source: errno,
        });
    }
    if libc::WIFSTOPPED(status) {
        // WSTOPSIG plus any PTRACE_EVENT_* in the next byte.
        Ok(Stop::Signal((status >> 8) & 0xffff))
    } else if libc::WIFEXITED(status) {
        Ok(Stop::Gone(format!(
            "exited with status {}",
            libc::WEXITSTATUS(status)
        )))
    } else if libc::WIFSIGNALED(status) {
        Ok(Stop::Gone(format!(
            "killed by signal {}",
            libc::WTERMSIG(status)
        )))
    } else {
        Err(PlatformError::UnexpectedStop {
            pid: tid,
            what: format!("wait status {status:#x}"),
        })
    }
}

/// Forks a stub process that stops itself for the calling thread to trace.
/// Returns its pid once it is in its initial SIGSTOP stop, with the ptrace
/// options set. The stub is not cleaned yet.
pub(crate) fn fork_stub() -> Result<i32, PlatformError> {
    let parent = nix::unistd::getpid().as_raw();
    let no_cpuid = crate::arch::cpuid_faulting();
    // SAFETY: the child runs only `stub_child`, which makes raw
    // async-signal-safe syscalls and never returns into Rust code, so the
    // state of other threads' locks copied into the child does not matter.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(PlatformError::Host {
            op: "fork(stub)",
            source: Errno::last(),
        });
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see stub_child.
        unsafe { stub_child(parent, no_cpuid) }
    }
    match wait_stop(pid)? {
        Stop::Signal(libc::SIGSTOP) => {}
        Stop::Signal(sig) => {
            kill_and_reap(pid);
            return Err(PlatformError::UnexpectedStop {
                pid,
                what: format!("initial stop by signal {sig}"),
            });
        }
        Stop::Gone(how) => return Err(PlatformError::StubDied { pid, how }),
    }
    let options = nix::sys::ptrace::Options::PTRACE_O_TRACESYSGOOD
        | nix::sys::ptrace::Options::PTRACE_O_EXITKILL;
    if let Err(source) = nix::sys::ptrace::setoptions(nix::unistd::Pid::from_raw(pid), options) {
        kill_and_reap(pid);
        return Err(PlatformError::Host {
            op: "PTRACE_SETOPTIONS",
            source,
        });
    }
    Ok(pid)
}

/// The child side of [`fork_stub`].
///
/// # Safety
///
/// Must only be called in the child of a fork. Uses raw syscalls only and
/// never returns. `no_cpuid`: make `cpuid` fault (the Sentry emulates it),
/// inherited by every thread the stub clones.
unsafe fn stub_child(parent: libc::pid_t, no_cpuid: bool) -> ! {
    // Die with the tracer thread.
    if libc::syscall(
        libc::SYS_prctl,
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL,
        0,
        0,
        0,
    ) != 0
    {
        libc::syscall(libc::SYS_exit_group, 101);
    }
    // The parent may have died before PR_SET_PDEATHSIG took effect.
    if libc::syscall(libc::SYS_getppid) != parent as libc::c_long {
        libc::syscall(libc::SYS_exit_group, 102);
    }
    // Leave the caller's session and process group: terminal signals (^C,
    // SIGWINCH, SIGHUP) must not reach stubs.
    if libc::syscall(libc::SYS_setsid) < 0 {
        libc::syscall(libc::SYS_exit_group, 103);
    }
    // Unblock every signal so the tracer's interrupt signal stops us even if
    // the forking thread had it blocked.
    let empty: u64 = 0;
    if libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &empty as *const u64,
        std::ptr::null_mut::<u64>(),
        8usize,
    ) != 0
    {
        libc::syscall(libc::SYS_exit_group, 104);
    }
    if !crate::arch::stub_disable_cpuid(no_cpuid) {
        libc::syscall(libc::SYS_exit_group, 107);
    }
    // No capabilities at all: the stub runs application code. Dropping
    // them also keeps its permitted set within the Sentry's once the
    // Sentry drops its own, which PTRACE_SEIZE of the stub's later
    // threads requires.
    let header: [u32; 2] = [0x2008_0522 /* _LINUX_CAPABILITY_VERSION_3 */, 0];
    let data = [0u32; 6];
    if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
        libc::syscall(libc::SYS_exit_group, 108);
    }
    if libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
        libc::syscall(libc::SYS_exit_group, 105);
    }
    let me = libc::syscall(libc::SYS_getpid);
    libc::syscall(libc::SYS_kill, me, libc::SIGSTOP);
    // The tracer redirects us to the stub page and never lets us get here.
    loop {
        libc::syscall(libc::SYS_exit_group, 106);
    }
}

/// Kills a stub process and reaps it. Any thread of the Sentry may call this.
pub(crate) fn kill_and_reap(pid: i32) {
    kill_and_reap_threads(pid, &[]);
}

/// Kills stub process `pid` and reaps it: first its traced threads `others`
/// (not the leader; each not reaped yet), whose exits the kernel reports
/// before the leader's. Any thread of the Sentry may call this: a thread
/// waits for the children and tracees of every thread in its group.
pub(crate) fn kill_and_reap_threads(pid: i32, others: &[i32]) {
    // SAFETY: plain kill(2) of a child we have not reaped yet (so `pid`
    // cannot have been reused).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for &tid in others {
        reap(pid, tid);
    }
    reap(pid, pid);
}

fn reap(pid: i32, tid: i32) {
    loop {
        match wait_stop(tid) {
            Ok(Stop::Gone(how)) => {
                tracing::debug!(pid, tid, how, "stub thread reaped");
                return;
            }
            Ok(Stop::Signal(_)) => continue,
            Err(e) => {
                tracing::warn!(pid, tid, error = %e, "could not reap stub thread");
                return;
            }
        }
    }
}

/// The CPUs the process was allowed before any binding: what a released
/// tracer goes back to.
static ORIGINAL_AFFINITY: std::sync::OnceLock<Option<nix::sched::CpuSet>> =
    std::sync::OnceLock::new();
