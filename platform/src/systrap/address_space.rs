//! An address space: one stub process, its leader and one stub thread (a
//! slot) per application thread.

use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::context::SystrapContext;
use super::current_tid;
use super::filter;
use super::shared::*;
use super::spin::{budgets, poll};
use super::stub::{fork_stub, StubPage, INTERRUPT_SIGNAL};
use crate::{AddressSpace, Context, FpState, Layout, PlatformError, Prot, Registers};

/// The clone flags of a stub thread; CLONE_CHILD_CLEARTID makes the kernel
/// zero the slot's state word (STATE_DEAD) and wake the Sentry when it ends.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// How long the Sentry sleeps on a futex before it checks that the stub
/// lives.
const POLL: Duration = Duration::from_millis(100);
/// How long the leader may take over one request.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a thread may leave an interrupt unanswered (it blocked the
/// signal with a forged sigreturn frame, or its handler is stuck) before
/// its stub is killed.
const INTERRUPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a thread may take over a command (not a resume).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Whose FP state is loaded in a stub thread and where to save it when
/// another context takes the thread.
pub(crate) struct FpOwner {
    pub ctx: u64,
    pub slot: Weak<Mutex<Option<FpState>>>,
}

/// One stub thread: a slot of the shared memory.
pub(crate) struct Slot {
    pub index: usize,
    pub tid: i32,
    pub fp_owner: Option<FpOwner>,
    /// The registers in the slot as the Sentry last read or wrote them.
    pub regs: Option<Registers>,
    /// The thread has exited (its slot may be reused).
    pub gone: bool,
    /// How the two sides wait for each other (see [`Pacing`]).
    pub pacing: Pacing,
    /// The slot's FP buffer holds a state the thread has not loaded yet:
    /// the next resume loads it (CMD_SET_FP_RESUME), one hand-over fewer
    /// for a context's first switch in a thread.
    pub fp_staged: bool,
}

/// How a thread and its Sentry thread wait for each other.
///
/// Polling (both sides spin a while before they sleep on the futex) is
/// fastest when each has a CPU of its own: a hand-over is a cache-line
/// transfer. When the host is busy, the other side is often not running,
/// the spin is wasted and the futex wake-up crosses CPUs (an
/// inter-processor interrupt, dear on a VM). Then both are bound to one CPU
/// and sleep at once: a hand-over is a plain context switch, as on the
/// ptrace platform. Every `REPROBE` switches a bound pair is let go to try
/// polling again.
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    /// The CPU both are bound to, when bound.
    pub bound: Option<usize>,
    /// Waits, and waits that ended asleep, in the current window.
    pub waits: u32,
    pub slept: u32,
    /// The first sample was taken.
    pub started: bool,
}

/// What the last window of any thread decided: bind (polls were failing).
/// A new thread (of a new process: fork, exec) starts as that says,
/// instead of spending its first window, most of a short-lived process's
/// life, polling on a busy host.
static HOST_BUSY: AtomicBool = AtomicBool::new(false);

/// Whether pacing may bind a pair to one CPU (`CRYO_SYSTRAP_BIND=0`
/// forbids it: a tuning knob).
fn may_bind() -> bool {
    static BIND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BIND.get_or_init(|| std::env::var("CRYO_SYSTRAP_BIND").map_or(true, |v| v != "0"))
}

/// Experiment knob: CRYO_SYSTRAP_BIND=always binds at the first window.
fn bind_always() -> bool {
    static B: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *B.get_or_init(|| std::env::var("CRYO_SYSTRAP_BIND").is_ok_and(|v| v == "always"))
}

/// A switch that ran the application this long was computing, not handing
/// over: it does not count for [`Pacing`].
const LONG_RUN: Duration = Duration::from_micros(500);

/// Waits per window of [`Pacing`].
const WINDOW: u32 = 64;
/// Switches before a bound pair polls again.
const REPROBE: u32 = 8192;

impl Slot {
    /// Notes how a wait ended and changes the pacing when a window says
    /// so. Called by the slot's Sentry thread only.
    pub(crate) fn pace(&mut self, shm: &Shared, slept: bool) {
        let p = &mut self.pacing;
        if !p.started {
            p.started = true;
            if HOST_BUSY.load(Ordering::Relaxed) && may_bind() {
                if let Some(cpu) = bind_pair(self.tid) {
                    p.bound = Some(cpu);
                    shm.write_u32(slot_off(self.index, SL_SPIN), 0);
                    tracing::trace!(tid = self.tid, cpu, "systrap: bound from the start");
                }
            }
        }
        p.waits += 1;
        p.slept += u32::from(slept);
        match p.bound {
            None if p.waits >= WINDOW => {
                let busy = p.slept * 2 > p.waits || bind_always();
                HOST_BUSY.store(busy, Ordering::Relaxed);
                if busy && may_bind() {
                    if let Some(cpu) = bind_pair(self.tid) {
                        p.bound = Some(cpu);
                        shm.write_u32(slot_off(self.index, SL_SPIN), 0);
                        tracing::trace!(tid = self.tid, cpu, "systrap: bound to one CPU");
                    }
                }
                p.waits = 0;
                p.slept = 0;
            }
            Some(_) if p.waits >= REPROBE => {
                self.unbind(shm);
            }
            _ => {}
        }
    }

    /// Lets the thread and its Sentry thread run anywhere again.
    pub(crate) fn unbind(&mut self, shm: &Shared) {
        let p = &mut self.pacing;
        if p.bound.take().is_some() {
            release_pair(self.tid);
            shm.write_u32(slot_off(self.index, SL_SPIN), budgets().stub);
        }
        p.waits = 0;
        p.slept = 0;
    }

    /// The Sentry side's polls before it sleeps. Also lets the calling
    /// thread go if a binding of another slot (of an address space since
    /// dropped, say) still holds it while this slot polls.
    pub(crate) fn sentry_spin(&self) -> u64 {
        if self.pacing.bound.is_some() {
            0
        } else {
            if HOST_BOUND.get() {
                release_self();
            }
            budgets().sentry
        }
    }
}

thread_local! {
    /// The calling Sentry thread is bound to one CPU by a pacing.
    static HOST_BOUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn release_self() {
    use nix::sched::sched_setaffinity;
    use nix::unistd::Pid;
    if let Some(Some(all)) = ORIGINAL_AFFINITY.get() {
        let _ = sched_setaffinity(Pid::from_raw(0), all);
    }
    HOST_BOUND.set(false);
}

/// The CPUs this process may use, before any binding.
static ORIGINAL_AFFINITY: std::sync::OnceLock<Option<nix::sched::CpuSet>> =
    std::sync::OnceLock::new();

/// Whether a leader is bound to its caller's CPU (`CRYO_SYSTRAP_LEADER_FOLLOWS=0`
/// turns it off: a tuning knob).
fn leader_follows() -> bool {
    static F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F.get_or_init(|| std::env::var("CRYO_SYSTRAP_LEADER_FOLLOWS").map_or(true, |v| v != "0"))
}

/// The one CPU bound pairs share, once a pair was bound.
static BOUND_CPU: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

/// The CPU the calling Sentry thread is bound to by a pacing, if it is.
fn my_bound_cpu() -> Option<usize> {
    if !HOST_BOUND.get() {
        return None;
    }
    let cpu = BOUND_CPU.load(Ordering::SeqCst);
    (cpu != usize::MAX).then_some(cpu)
}

/// Binds host thread `tid` to `cpu` (the leader of an address space whose
/// Sentry threads are bound: its wake-ups then stay on that CPU too).
fn bind_thread(tid: i32, cpu: usize) -> bool {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    // Known before anything is bound: the threads a bound leader clones are
    // given it back.
    ORIGINAL_AFFINITY.get_or_init(|| sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok());
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).is_ok()
}

/// Binds stub thread `tid` and the calling thread to the CPU the caller is
/// on.
///
/// Every pair goes to the one CPU the first pair was bound to: a pair is
/// bound because its hand-overs miss the poll, and its wake-ups then cross
/// to whichever CPU the scheduler picks; waking a task on an idle vCPU
/// costs ~30 µs on the development VM (perf sched: scheduling delay of the
/// woken thread), more than all the work of a round trip. Pairs that talk
/// to each other (a futex or pipe ping-pong between two tasks: Sentry
/// thread to Sentry thread) then wake each other on that CPU too, as the
/// ptrace platform's stops (sync wake-ups) do by themselves.
fn bind_pair(tid: i32) -> Option<usize> {
    use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    ORIGINAL_AFFINITY.get_or_init(|| sched_getaffinity(Pid::from_raw(0)).ok());
    let here = sched_getcpu().ok()?;
    let cpu = match BOUND_CPU.compare_exchange(usize::MAX, here, Ordering::SeqCst, Ordering::SeqCst)
    {
        Ok(_) => here,
        Err(cpu) => cpu,
    };
    let mut set = CpuSet::new();
    set.set(cpu).ok()?;
    sched_setaffinity(Pid::from_raw(tid), &set).ok()?;
    sched_setaffinity(Pid::from_raw(0), &set).ok()?;
    HOST_BOUND.set(true);
    Some(cpu)
}

fn release_pair(tid: i32) {
    use nix::sched::sched_setaffinity;
    use nix::unistd::Pid;
    if let Some(Some(all)) = ORIGINAL_AFFINITY.get() {
        let _ = sched_setaffinity(Pid::from_raw(tid), all);
    }
    release_self();
}

/// One syscall for the leader.
struct Request {
    name: &'static str,
    nr: i64,
    args: [u64; 6],
}

/// The Sentry's side of the leader.
#[derive(Default)]
struct Leader {
    /// The last request sequence number given to the leader.
    seq: u32,
    /// Maps into ranges where the stub maps nothing, not run yet: they run
    /// together, before the next other request or the next switch into
    /// this address space (see `AddressSpace::map`).
    queue: Vec<Request>,
    /// What the stub maps below the stub region once the queue has run:
    /// start -> end, disjoint, merged when adjacent.
    mapped: std::collections::BTreeMap<u64, u64>,
    /// The CPU the leader thread is bound to, if any.
    cpu: Option<usize>,
}

impl Leader {
    /// Whether `[addr, addr + len)` meets nothing mapped.
    fn is_free(&self, addr: u64, len: u64) -> bool {
        let end = addr + len;
        self.mapped
            .range(..end)
            .next_back()
            .is_none_or(|(_, &e)| e <= addr)
    }

    fn note_mapped(&mut self, addr: u64, len: u64) {
        let (mut start, mut end) = (addr, addr + len);
        self.note_unmapped(start, end - start);
        if let Some((&s, &e)) = self.mapped.range(..start).next_back() {
            if e == start {
                self.mapped.remove(&s);
                start = s;
            }
        }
        if let Some(e) = self.mapped.remove(&end) {
            end = e;
        }
        self.mapped.insert(start, end);
    }

    fn note_unmapped(&mut self, addr: u64, len: u64) {
        let end = addr + len;
        let hit: Vec<(u64, u64)> = self
            .mapped
            .range(..end)
            .rev()
            .take_while(|(_, &e)| e > addr)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.mapped.remove(&s);
            if s < addr {
                self.mapped.insert(s, addr);
            }
            if e > end {
                self.mapped.insert(end, e);
            }
        }
    }
}

struct Entry {
    /// The Sentry thread that runs it.
    host: i32,
    /// The slot's index (fixed for the slot's life).
    index: usize,
    slot: Arc<Mutex<Slot>>,
}

struct Threads {
    entries: Vec<Entry>,
    free: Vec<usize>,
    next: usize,
}

/// One application address space, backed by a stub process.
pub struct SystrapAddressSpace {
    layout: Layout,
    page: StubPage,
    pid: i32,
    memory_fd: i32,
    shm: Shared,
    /// The leader's completions (it writes, the Sentry reads).
    event_fd: OwnedFd,
    /// The leader's requests; the lock serialises them.
    leader: Mutex<Leader>,
    threads: Mutex<Threads>,
    dead: AtomicBool,
    reaped: AtomicBool,
    /// Switches running application code now (left counted when a switch
    /// fails: the thread may still run).
    in_app: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for SystrapAddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystrapAddressSpace")
            .field("pid", &self.pid)
            .field("dead", &self.dead)
            .finish()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a wait on a slot saw.
pub(crate) enum Seen {
    Event,
    Dead,
}

impl SystrapAddressSpace {
    pub(crate) fn new(
        layout: Layout,
        page: StubPage,
        memory_fd: i32,
    ) -> Result<Self, PlatformError> {
        // SAFETY: memfd_create with a valid C string; the result is checked.
        let fd = unsafe { libc::memfd_create(c"cryo-systrap".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(PlatformError::Host {
                op: "memfd_create(systrap)",
                source: Errno::last(),
            });
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), SHM_LEN as i64) } != 0 {
            return Err(PlatformError::Host {
                op: "ftruncate(systrap shared memory)",
                source: Errno::last(),
            });
        }
        let shm = Shared::map(fd.as_raw_fd(), SHM_LEN)?;
        // SAFETY: eventfd(2); the result is checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(PlatformError::Host {
                op: "eventfd(systrap)",
                source: Errno::last(),
            });
        }
        // SAFETY: a fresh descriptor we own.
        let event_fd = unsafe { OwnedFd::from_raw_fd(efd) };
        write_filters(&shm, page.addr, event_fd.as_raw_fd())
            .map_err(|what| PlatformError::Systrap { pid: 0, what })?;
        shm.write_u32(CTL_SHM_OFF + CTL_LEADER_SPIN, budgets().leader);
        shm.write_u64(CTL_SHM_OFF + CTL_ONE, 1);
        let pid = fork_stub(
            fd.as_raw_fd(),
            event_fd.as_raw_fd(),
            memory_fd,
            layout.max_user_addr,
            page,
        )?;
        drop(fd);
        let aspace = SystrapAddressSpace {
            layout,
            page,
            pid,
            memory_fd,
            shm,
            event_fd,
            leader: Mutex::new(Leader::default()),
            threads: Mutex::new(Threads {
                entries: Vec::new(),
                free: Vec::new(),
                next: 0,
            }),
            dead: AtomicBool::new(false),
            reaped: AtomicBool::new(false),
            in_app: std::sync::atomic::AtomicUsize::new(0),
        };
        let slot = aspace.spawn_thread()?;
        lock(&aspace.threads).entries.push(Entry {
            host: current_tid(),
            index: slot.index,
            slot: Arc::new(Mutex::new(slot)),
        });
        let sealed = aspace.shm.read_u64(STATUS_SHM_OFF + ST_MSEAL) as i64;
        if sealed != 0 {
            tracing::warn!(pid, errno = -sealed, "mseal of the stub region failed");
        }
        tracing::debug!(pid, "systrap stub ready");
        Ok(aspace)
    }

    /// Makes the calling thread the runner of the first thread (an address
    /// space from the pool was made by the pool's thread).
    pub(crate) fn adopt_first(&self) {
        let caller = current_tid();
        if let Some(e) = lock(&self.threads).entries.first_mut() {
            e.host = caller;
        }
    }

    /// Notes a switch into application code starting, or one ending
    /// cleanly (see `Drop`).
    pub(crate) fn enter_app(&self) {
        self.in_app.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn leave_app(&self) {
        self.in_app.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether no thread of this stub runs application code: every switch
    /// runs the queue (under the leader's lock, which the caller holds)
    /// before its thread resumes, so until then no application access can
    /// see whether a queued request ran, and memory file pages a queued
    /// unmap or map drops may be reused at once. Counted by the Sentry,
    /// not read from the slots the application can write.
    fn parked(&self) -> bool {
        self.in_app.load(Ordering::SeqCst) == 0
    }

    /// The stub process's host pid.
    pub fn stub_pid(&self) -> i32 {
        self.pid
    }

    /// The layout this address space was created with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The address of the stub code page (the stub region starts there).
    pub fn stub_addr(&self) -> u64 {
        self.page.addr
    }

    /// The stub region: the code page, the control and status pages and the
    /// thread slots, `[start, start + len)` (what the application must
    /// never be able to remap).
    pub fn stub_region(&self) -> (u64, u64) {
        (self.page.addr, PAGE + SHM_LEN)
    }

    /// Where the stub maps the context of thread slot `index` (slot 0 is the
    /// address space's first thread): for tests and diagnostics.
    pub fn slot_addr(&self, index: usize) -> u64 {
        self.page.addr + SLOTS_STUB_OFF + index as u64 * SLOT_SIZE
    }

    /// Where the stub maps the leader's status page (writable by the
    /// application): for tests and diagnostics.
    pub fn status_addr(&self) -> u64 {
        self.page.addr + STATUS_STUB_OFF
    }

    /// Whether mseal(2) sealed the stub region (Linux >= 6.10).
    pub fn sealed(&self) -> bool {
        self.shm.read_u64(STATUS_SHM_OFF + ST_MSEAL) == 0
    }

    pub(crate) fn shm(&self) -> &Shared {
        &self.shm
    }

    pub(crate) fn died(&self, how: impl Into<String>) -> PlatformError {
        self.dead.store(true, Ordering::SeqCst);
        PlatformError::StubDied {
            pid: self.pid,
            how: how.into(),
        }
    }

    /// A stub thread that ended under the Sentry: usually the whole stub
    /// died (seccomp killed it, someone sent SIGKILL); say how if it did.
    pub(crate) fn thread_died(&self, tid: i32) -> PlatformError {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            if let Err(e) = self.poll_exit() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.died(format!("thread {tid} exited"))
    }

    pub(crate) fn check_fp(&self, fp: &FpState) -> Result<(), PlatformError> {
        check_fp(self.pid, fp)
    }

    pub(crate) fn corrupt(&self, what: String) -> PlatformError {
        tracing::warn!(
            pid = self.pid,
            what,
            "killing a systrap stub that broke the protocol"
        );
        self.kill();
        PlatformError::Systrap {
            pid: self.pid,
            what,
        }
    }

    /// An unmap or protect the host refused (ENOMEM at the host's own
    /// vm.max_map_count, splitting a mapping), as a queued one is: the stub
    /// would keep pages the Sentry may give to another address space, or
    /// write access to pages it shares copy-on-write, so it is killed.
    fn must_not_fail(&self, e: PlatformError) -> PlatformError {
        match e {
            PlatformError::Injected { syscall, errno } => {
                self.corrupt(format!("{syscall} failed: errno {errno}"))
            }
            e => e,
        }
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        if !self.reaped.load(Ordering::SeqCst) {
            // SAFETY: kill(2) of our unreaped child: its pid cannot be reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    pub(crate) fn check_alive(&self) -> Result<(), PlatformError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(PlatformError::StubDied {
                pid: self.pid,
                how: "died earlier".into(),
            });
        }
        Ok(())
    }

    /// Whether the stub process has ended (reaping it if so).
    fn poll_exit(&self) -> Result<(), PlatformError> {
        if self.reaped.load(Ordering::SeqCst) {
            return Err(self.died("reaped earlier"));
        }
        let mut status = 0;
        // SAFETY: waitpid writes only `status`, a live local.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if r == self.pid {
            self.reaped.store(true, Ordering::SeqCst);
            let how = if libc::WIFEXITED(status) {
                format!("exited with status {}", libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("wait status {status:#x}")
            };
            return Err(self.died(how));
        }
        if r < 0 && Errno::last() == Errno::ECHILD {
            self.reaped.store(true, Ordering::SeqCst);
            return Err(self.died("already reaped"));
        }
        Ok(())
    }

    /// Runs syscall `nr` in the leader, after any queued requests, and
    /// returns its result. Negative results are [`PlatformError::Injected`].
    fn leader_call(
        &self,
        name: &'static str,
        nr: i64,
        args: [u64; 6],
    ) -> Result<u64, PlatformError> {
        let mut leader = lock(&self.leader);
        self.leader_run(&mut leader, Some(Request { name, nr, args }))
    }

    /// Runs what the queue holds (and `last`, if any, after it) in one
    /// request to the leader; returns `last`'s result (0 without one).
    fn leader_run(&self, leader: &mut Leader, last: Option<Request>) -> Result<u64, PlatformError> {
        self.check_alive()?;
        let synchronous = last.is_some();
        if let Some(r) = last {
            if leader.queue.len() as u64 >= QUEUE_MAX {
                self.leader_run(leader, None)?;
            }
            leader.queue.push(r);
        }
        if leader.queue.is_empty() {
            return Ok(0);
        }
        let queue = std::mem::take(&mut leader.queue);
        // The calling thread's own application thread (parked in its
        // handler, polling for the answer) should sleep instead: the leader
        // needs a CPU, and a leader call takes a wake-up anyway.
        if let Some(index) = self.my_slot_index() {
            self.shm.write_u32(slot_off(index, SL_NAP), 1);
        }
        // The Sentry thread sleeps until the leader answers: the leader
        // runs best on the caller's CPU, a local wake-up, instead of being
        // woken on another (an idle vCPU is ~30 µs away here, a busy one a
        // time slice away). It follows the caller when that moves.
        let want = my_bound_cpu().or_else(|| nix::sched::sched_getcpu().ok());
        if want.is_some() && leader.cpu != want && leader_follows() {
            if let Some(cpu) = want.filter(|&c| bind_thread(self.pid, c)) {
                leader.cpu = Some(cpu);
            }
        }
        leader.seq = leader.seq.wrapping_add(1);
        let s = leader.seq;
        for (i, r) in queue.iter().enumerate() {
            let at = CTL_SHM_OFF + CTL_QUEUE + i as u64 * QUEUE_ENTRY;
            self.shm.write_u64(at, r.nr as u64);
            for (k, a) in r.args.iter().enumerate() {
                self.shm.write_u64(at + 8 + 8 * k as u64, *a);
            }
        }
        self.shm
            .write_u32(CTL_SHM_OFF + CTL_COUNT, queue.len() as u32);
        let req = self.shm.atomic(CTL_SHM_OFF + CTL_REQ_SEQ);
        req.store(s, Ordering::SeqCst);
        if self
            .shm
            .atomic(STATUS_SHM_OFF + ST_LEADER_SLEEPING)
            .load(Ordering::SeqCst)
            != 0
        {
            futex_wake(self.shm.addr(CTL_SHM_OFF + CTL_REQ_SEQ));
        }
        let what = queue.last().map_or("request", |r| r.name);
        // The completion is the leader's write to the eventfd: only the
        // leader's filter allows it, so an application thread that forges
        // the status page cannot make the Sentry go on (and reuse memory
        // the leader has not unmapped yet, or overwrite a request it is
        // still reading).
        let start = Instant::now();
        loop {
            let mut pfd = libc::pollfd {
                fd: self.event_fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one live pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
            if r > 0 {
                let mut count = 0u64;
                // SAFETY: an eventfd read fills exactly the 8 bytes given.
                let n = unsafe {
                    libc::read(
                        self.event_fd.as_raw_fd(),
                        (&mut count as *mut u64).cast(),
                        8,
                    )
                };
                if n == 8 {
                    if count != 1 {
                        return Err(self.corrupt(format!("{count} completions for one {what}")));
                    }
                    break;
                }
            }
            self.poll_exit()?;
            if start.elapsed() > LEADER_TIMEOUT {
                return Err(self.corrupt(format!("the leader did not answer {what}")));
            }
        }
        let done = self.shm.read_u32(STATUS_SHM_OFF + ST_DONE_SEQ);
        if done != s {
            tracing::debug!(
                pid = self.pid,
                done,
                s,
                "status page rewritten by the application"
            );
        }
        // The status page is the application's to scribble on: the count
        // and results are read once each and only believed within bounds.
        // A forged one can only make this address space's own requests
        // look failed or done.
        let ran = self.shm.read_u64(STATUS_SHM_OFF + ST_DONE_COUNT);
        let ran = usize::try_from(ran).unwrap_or(usize::MAX).min(queue.len());
        let mut last_ret = 0u64;
        for (i, r) in queue.iter().enumerate() {
            let ret = if i < ran {
                self.shm
                    .read_u64(STATUS_SHM_OFF + ST_RESULTS + 8 * i as u64) as i64
            } else {
                // Not run: the leader stopped at the one before.
                -libc::ECANCELED as i64
            };
            tracing::trace!(
                pid = self.pid,
                name = r.name,
                args = ?r.args,
                ret = format_args!("{ret:#x}"),
                "leader call"
            );
            let is_last = synchronous && i + 1 == queue.len();
            let failed = (-4095..0).contains(&ret);
            if r.nr == libc::SYS_mmap && !failed && ret as u64 != r.args[0] {
                return Err(self.corrupt(format!("mmap at {:#x} mapped at {ret:#x}", r.args[0])));
            }
            if failed && is_last {
                return Err(PlatformError::Injected {
                    syscall: r.name,
                    errno: (-ret) as i32,
                });
            }
            if failed {
                // A queued map the Sentry already counts as done: the stub
                // no longer matches the address space it should hold.
                return Err(self.corrupt(format!(
                    "queued {} at {:#x} failed: errno {}",
                    r.name, r.args[0], -ret
                )));
            }
            last_ret = ret as u64;
        }
        Ok(last_ret)
    }

    /// Runs the queued requests (before any thread of this address space
    /// runs application code).
    pub(crate) fn flush(&self) -> Result<(), PlatformError> {
        let mut leader = lock(&self.leader);
        if leader.queue.is_empty() {
            return Ok(());
        }
        self.leader_run(&mut leader, None).map(|_| ())
    }

    /// Clones a stub thread in a free slot and waits until it is parked in
    /// its handler at the first trap.
    fn spawn_thread(&self) -> Result<Slot, PlatformError> {
        let index = {
            let mut t = lock(&self.threads);
            match t.free.pop() {
                Some(i) => i,
                None if (t.next as u64) < MAX_SLOTS => {
                    t.next += 1;
                    t.next - 1
                }
                None => return Err(PlatformError::Thread("no free systrap thread slot")),
            }
        };
        let r = self.start_in_slot(index);
        if r.is_err() {
            lock(&self.threads).free.push(index);
        }
        r
    }

    fn start_in_slot(&self, index: usize) -> Result<Slot, PlatformError> {
        let shm = &self.shm;
        shm.write_u32(slot_off(index, SL_STUB_SLEEPING), 0);
        shm.write_u32(slot_off(index, SL_SENTRY_SLEEPING), 0);
        shm.write_u32(slot_off(index, SL_COMMAND), 0);
        shm.write_u32(slot_off(index, SL_SPIN), budgets().stub);
        shm.atomic(slot_off(index, SL_STATE))
            .store(STATE_GO, Ordering::SeqCst);
        let slot_addr = self.page.addr + SLOTS_STUB_OFF + index as u64 * SLOT_SIZE;
        let tid = self.leader_call(
            "clone",
            libc::SYS_clone,
            [
                THREAD_FLAGS,
                slot_addr + SLOT_SIZE,
                0,
                slot_addr + SL_STATE,
                0,
                0,
            ],
        )?;
        let tid = i32::try_from(tid)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| self.corrupt(format!("clone returned {tid:#x}")))?;
        // A thread cloned by a bound leader starts bound: it is paced on
        // its own.
        if lock(&self.leader).cpu.is_some() {
            if let Some(Some(all)) = ORIGINAL_AFFINITY.get() {
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), all);
            }
        }
        match self.wait_slot(index, tid, None)? {
            Seen::Event => {}
            Seen::Dead => return Err(self.died(format!("new thread {tid} died at its start"))),
        }
        let kind = shm.read_u32(slot_off(index, SL_KIND));
        let rip = shm.read_u64(slot_off(index, SL_REGS + 16 * 8));
        let want = self.page.addr + self.page.entries.first_trap;
        if kind != libc::SIGTRAP as u32 || rip != want {
            return Err(self.corrupt(format!(
                "new thread {tid} stopped by signal {kind} at {rip:#x}, not at its first trap"
            )));
        }
        tracing::debug!(pid = self.pid, tid, index, "systrap thread parked");
        Ok(Slot {
            index,
            tid,
            fp_owner: None,
            regs: None,
            gone: false,
            pacing: Pacing::default(),
            fp_staged: false,
        })
    }

    /// Waits until slot `index` (thread `tid`) leaves STATE_GO: an event or
    /// an acknowledgement (Seen::Event), or the thread's end (Seen::Dead).
    /// With `interrupt`, an interrupt left unanswered for too long kills the
    /// stub.
    pub(crate) fn wait_slot(
        &self,
        index: usize,
        tid: i32,
        interrupt: Option<&super::context::SystrapInterrupter>,
    ) -> Result<Seen, PlatformError> {
        self.wait_slot_paced(index, tid, interrupt, budgets().sentry)
            .map(|(seen, _)| seen)
    }

    /// [`Self::wait_slot`] polling for `budget` TSC ticks before it sleeps;
    /// says whether it slept.
    pub(crate) fn wait_slot_paced(
        &self,
        index: usize,
        tid: i32,
        interrupt: Option<&super::context::SystrapInterrupter>,
        budget: u64,
    ) -> Result<(Seen, bool), PlatformError> {
        let state = self.shm.atomic(slot_off(index, SL_STATE));
        let sleeping = self.shm.atomic(slot_off(index, SL_SENTRY_SLEEPING));
        let classify = |s: u32| -> Result<Option<Seen>, PlatformError> {
            match s {
                STATE_GO => Ok(None),
                STATE_EVENT => Ok(Some(Seen::Event)),
                STATE_DEAD => Ok(Some(Seen::Dead)),
                other => Err(self.corrupt(format!("thread {tid}: slot state {other:#x}"))),
            }
        };
        let polled = poll(budget, || {
            classify(state.load(Ordering::Acquire)).transpose()
        });
        if let Some(seen) = polled {
            return seen.map(|s| (s, false));
        }
        let mut unanswered: Option<Instant> = None;
        let started = Instant::now();
        loop {
            sleeping.store(1, Ordering::SeqCst);
            let s = state.load(Ordering::SeqCst);
            if let Some(seen) = classify(s)? {
                sleeping.store(0, Ordering::SeqCst);
                return Ok((seen, false));
            }
            let woke = futex_wait(self.shm.addr(slot_off(index, SL_STATE)), s, POLL);
            sleeping.store(0, Ordering::SeqCst);
            if let Some(seen) = classify(state.load(Ordering::Acquire))? {
                return Ok((seen, true));
            }
            if woke {
                continue;
            }
            self.poll_exit()?;
            // SAFETY: tgkill(2) with signal 0 only checks that the thread
            // exists in the stub's thread group.
            if unsafe { libc::syscall(libc::SYS_tgkill, self.pid, tid, 0) } != 0 {
                return Ok((Seen::Dead, true));
            }
            // A command (FP copy, exit, the first trap) takes the handler
            // microseconds: one that is not answered means a thread that
            // broke its handler.
            if interrupt.is_none() && started.elapsed() > COMMAND_TIMEOUT {
                return Err(self.corrupt(format!("thread {tid} does not answer")));
            }
            if let Some(i) = interrupt.filter(|i| i.is_pending()) {
                let since = *unanswered.get_or_insert_with(Instant::now);
                if since.elapsed() > INTERRUPT_TIMEOUT {
                    return Err(self.corrupt(format!("thread {tid} does not answer interrupts")));
                }
                // Signals may have been lost to a stale pending one: again.
                // SAFETY: tgkill(2) of a thread of our stub.
                unsafe { libc::syscall(libc::SYS_tgkill, self.pid, tid, INTERRUPT_SIGNAL) };
                let _ = i;
            }
        }
    }

    /// Hands slot `index` to the stub with `command` and waits for its
    /// answer.
    pub(crate) fn command(
        &self,
        slot: &Slot,
        command: u32,
        interrupt: Option<&super::context::SystrapInterrupter>,
    ) -> Result<Seen, PlatformError> {
        self.post(slot, command);
        self.wait_slot_paced(slot.index, slot.tid, interrupt, slot.sentry_spin())
            .map(|(seen, _)| seen)
    }

    /// Resumes the application in `slot` and waits for its next event,
    /// pacing the slot by how the wait went.
    pub(crate) fn resume(
        &self,
        slot: &mut Slot,
        interrupt: &super::context::SystrapInterrupter,
    ) -> Result<Seen, PlatformError> {
        let napped = self.shm.read_u32(slot_off(slot.index, SL_NAP)) != 0;
        let command = if std::mem::take(&mut slot.fp_staged) {
            CMD_SET_FP_RESUME
        } else {
            CMD_RESUME
        };
        let woke = self.post(slot, command);
        let started = Instant::now();
        let (seen, slept) =
            self.wait_slot_paced(slot.index, slot.tid, Some(interrupt), slot.sentry_spin())?;
        // A hand-over that needed a wake-up on either side counts against
        // polling (a task that blocked in the Sentry wakes its stub thread
        // on whichever CPU it slept), but not one where the stub thread was
        // told to nap (the Sentry waited for the leader) or the application
        // computed for long (no poll would have lasted).
        if started.elapsed() < LONG_RUN && !(woke && napped) {
            slot.pace(&self.shm, slept || woke);
        }
        Ok(seen)
    }

    /// Hands slot `slot` to the stub with `command`; says whether the stub
    /// thread slept and had to be woken.
    fn post(&self, slot: &Slot, command: u32) -> bool {
        let i = slot.index;
        self.shm.write_u32(slot_off(i, SL_NAP), 0);
        self.shm.write_u32(slot_off(i, SL_COMMAND), command);
        self.shm
            .atomic(slot_off(i, SL_STATE))
            .store(STATE_GO, Ordering::SeqCst);
        if self
            .shm
            .atomic(slot_off(i, SL_STUB_SLEEPING))
            .load(Ordering::SeqCst)
            != 0
        {
            futex_wake(self.shm.addr(slot_off(i, SL_STATE)));
            return true;
        }
        false
    }

    /// Writes `r` into the slot. Only the registers that differ from what
    /// the Sentry last read there are written: each written cache line
    /// moves to the Sentry's CPU and back, and a syscall changes only rax.
    /// (If the application rewrote the slot meanwhile, its thread resumes
    /// with registers it could have set itself.)
    pub(crate) fn write_regs(&self, slot: &mut Slot, r: &Registers) {
        let vals = regs_to_array(r);
        let last = slot.regs.take().map(|l| regs_to_array(&l));
        for (k, v) in vals.iter().enumerate() {
            if last.is_none_or(|l| l[k] != *v) {
                self.shm
                    .write_u64(slot_off(slot.index, SL_REGS + 8 * k as u64), *v);
            }
        }
        slot.regs = Some(*r);
    }

    /// The registers the handler stored, each read once.
    pub(crate) fn read_regs(&self, slot: &mut Slot) -> Registers {
        let mut vals = [0u64; 27];
        for (k, v) in vals.iter_mut().enumerate() {
            *v = self
                .shm
                .read_u64(slot_off(slot.index, SL_REGS + 8 * k as u64));
        }
        let r = regs_from_array(&vals);
        slot.regs = Some(r);
        r
    }

    /// The FP state in the thread's signal frame.
    pub(crate) fn get_fp(&self, slot: &mut Slot) -> Result<FpState, PlatformError> {
        self.load_staged_fp(slot)?;
        match self.command(slot, CMD_GET_FP, None)? {
            Seen::Event => {}
            Seen::Dead => return Err(self.thread_died(slot.tid)),
        }
        let len = self.shm.read_u32(slot_off(slot.index, SL_FP_LEN)) as u64;
        if !(576..=SL_FP_CAP).contains(&len) {
            return Err(self.corrupt(format!("thread {}: FP state of {len} bytes", slot.tid)));
        }
        Ok(FpState {
            xsave: self
                .shm
                .read_bytes(slot_off(slot.index, SL_FP), len as usize),
        })
    }

    /// Replaces the FP state the thread resumes with: put in the slot's FP
    /// buffer and loaded by the next resume (CMD_SET_FP_RESUME), or by the
    /// next FP command if one comes first (`load_staged_fp`), so that
    /// setting it costs no hand-over of its own.
    pub(crate) fn stage_fp(&self, slot: &mut Slot, fp: &FpState) -> Result<(), PlatformError> {
        let fp = fp.loadable_in(super::context::xsave_size())?;
        check_fp(self.pid, &fp)?;
        self.shm.write_bytes(slot_off(slot.index, SL_FP), &fp.xsave);
        self.shm
            .write_u32(slot_off(slot.index, SL_FP_LEN), fp.xsave.len() as u32);
        slot.fp_staged = true;
        Ok(())
    }

    /// Makes the thread load a staged FP state now (before its frame's FP
    /// state is read or replaced otherwise).
    fn load_staged_fp(&self, slot: &mut Slot) -> Result<(), PlatformError> {
        if !slot.fp_staged {
            return Ok(());
        }
        slot.fp_staged = false;
        match self.command(slot, CMD_SET_FP, None)? {
            Seen::Event => Ok(()),
            Seen::Dead => Err(self.thread_died(slot.tid)),
        }
    }

    /// The slot run by the calling thread.
    pub(crate) fn my_slot(&self) -> Result<Arc<Mutex<Slot>>, PlatformError> {
        self.check_alive()?;
        let caller = current_tid();
        let t = lock(&self.threads);
        t.entries
            .iter()
            .find(|e| e.host == caller)
            .map(|e| e.slot.clone())
            .ok_or(PlatformError::WrongThread {
                stub: self.pid,
                tracer: t.entries.first().map_or(0, |e| e.host),
                caller,
            })
    }

    /// The index of the calling thread's slot, if it has one (without
    /// waiting for the slot's own lock).
    fn my_slot_index(&self) -> Option<usize> {
        let caller = current_tid();
        let t = lock(&self.threads);
        t.entries.iter().find(|e| e.host == caller).map(|e| e.index)
    }

    /// Makes the calling thread the runner of a new thread's slot.
    pub(crate) fn adopt(&self, pid: i32, slot: Arc<Mutex<Slot>>) -> Result<(), PlatformError> {
        if pid != self.pid {
            return Err(PlatformError::Thread(
                "the context's new thread belongs to another address space",
            ));
        }
        self.check_alive()?;
        let caller = current_tid();
        let index = lock(&slot).index;
        let mut t = lock(&self.threads);
        if t.entries.iter().any(|e| e.host == caller) {
            return Err(PlatformError::Thread(
                "the calling thread already has a thread in this address space",
            ));
        }
        t.entries.push(Entry {
            host: caller,
            index,
            slot,
        });
        Ok(())
    }

    /// `[addr, addr + len)` minus the stub region (from the stub page to the
    /// top: nothing of the application lives there).
    fn below_stub(&self, addr: u64, len: u64) -> Option<(u64, u64)> {
        let end = (addr + len).min(self.page.addr);
        (addr < end).then(|| (addr, end - addr))
    }
}

fn write_filters(shm: &Shared, code: u64, event_fd: i32) -> Result<(), String> {
    let progs = [
        (
            CTL_FPROG_LEADER,
            CTL_FILTER_LEADER,
            filter::program_with_write(
                code,
                PAGE,
                filter::LEADER_SYSCALLS,
                false,
                Some(event_fd as u32),
            )?,
        ),
        (
            CTL_FPROG_APP,
            CTL_FILTER_APP,
            filter::program(code, PAGE, filter::APP_SYSCALLS, true)?,
        ),
    ];
    for (fprog, insns, prog) in progs {
        for (i, insn) in prog.iter().enumerate() {
            shm.write_bytes(CTL_SHM_OFF + insns + 8 * i as u64, &insn.to_bytes());
        }
        shm.write_u16(CTL_SHM_OFF + fprog, prog.len() as u16);
        // The program as the stub sees it: in its read-only control page.
        shm.write_u64(CTL_SHM_OFF + fprog + 8, code + CTL_STUB_OFF + insns);
    }
    Ok(())
}

/// Refuses FP states the stub's sigreturn could not load (that would kill
/// the stub instead of failing the request).
fn check_fp(pid: i32, fp: &FpState) -> Result<(), PlatformError> {
    if fp.xsave.len() as u64 > SL_FP_CAP {
        return Err(PlatformError::FpStateSize {
            got: fp.xsave.len(),
            want: SL_FP_CAP as usize,
        });
    }
    fp.validate().map_err(|what| PlatformError::Systrap {
        pid,
        what: format!("refused FP state: {what}"),
    })
}

macro_rules! regs_array {
    ($($field:ident),* $(,)?) => {
        fn regs_to_array(r: &Registers) -> [u64; 27] {
            [$(r.$field),*]
        }
        fn regs_from_array(a: &[u64; 27]) -> Registers {
            let mut it = a.iter().copied();
            Registers { $($field: it.next().unwrap_or(0)),* }
        }
    };
}

// The order the stub's handler stores them in (`Registers`' own order).
regs_array!(
    r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs,
    eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs,
);

impl AddressSpace for SystrapAddressSpace {
    fn map(&self, addr: u64, len: u64, offset: u64, prot: Prot) -> Result<(), PlatformError> {
        self.layout.check_range(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        if addr + len > self.page.addr || !self.layout.is_app_range(addr, len) {
            return Err(PlatformError::InvalidRange {
                addr,
                len,
                why: "overlaps the stub region",
            });
        }
        if offset & (self.layout.page_size - 1) != 0
            || offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64)
        {
            return Err(PlatformError::InvalidRange {
                addr: offset,
                len,
                why: "bad memory file offset",
            });
        }
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let req = Request {
            name: "mmap",
            nr: libc::SYS_mmap,
            args: [
                addr,
                len,
                prot.to_bits() as u64,
                flags,
                self.memory_fd as u64,
                offset,
            ],
        };
        self.check_alive()?;
        let mut leader = lock(&self.leader);
        // A map where the stub maps nothing waits in the queue: no
        // application access can tell (a thread that touches the range
        // before the next switch faults as if it came before the map), and
        // every map of a new address space (exec, fork) then runs in one
        // request. A map over a mapping waits only while no thread runs
        // application code (see `parked`); else it runs now: the memory
        // file pages it replaces may be freed and reused as soon as this
        // returns.
        let deferred =
            (leader.is_free(addr, len) || self.parked()) && (leader.queue.len() as u64) < QUEUE_MAX;
        leader.note_mapped(addr, len);
        if deferred {
            leader.queue.push(req);
            return Ok(());
        }
        // The result (the address) is checked by leader_run.
        self.leader_run(&mut leader, Some(req)).map(|_| ())
    }

    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.layout.check_range(addr, len)?;
        if let Some((a, l)) = self.below_stub(addr, len) {
            self.check_alive()?;
            let mut leader = lock(&self.leader);
            let req = Request {
                name: "munmap",
                nr: libc::SYS_munmap,
                args: [a, l, 0, 0, 0, 0],
            };
            if self.parked() && (leader.queue.len() as u64) < QUEUE_MAX {
                leader.queue.push(req);
            } else {
                self.leader_run(&mut leader, Some(req))
                    .map_err(|e| self.must_not_fail(e))?;
            }
            leader.note_unmapped(a, l);
        }
        Ok(())
    }

    fn protect(&self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.layout.check_range(addr, len)?;
        if let Some((a, l)) = self.below_stub(addr, len) {
            self.check_alive()?;
            let mut leader = lock(&self.leader);
            let req = Request {
                name: "mprotect",
                nr: libc::SYS_mprotect,
                args: [a, l, prot.to_bits() as u64, 0, 0, 0],
            };
            if self.parked() && (leader.queue.len() as u64) < QUEUE_MAX {
                leader.queue.push(req);
            } else {
                self.leader_run(&mut leader, Some(req))
                    .map_err(|e| self.must_not_fail(e))?;
            }
        }
        Ok(())
    }

    fn new_thread(&self) -> Result<Box<dyn Context>, PlatformError> {
        // Only a thread of this address space may create one (the contract;
        // systrap itself would not mind).
        self.my_slot()?;
        let slot = self.spawn_thread()?;
        Ok(Box::new(SystrapContext::for_new_thread(
            self.pid,
            Arc::new(Mutex::new(slot)),
        )))
    }

    fn exit_thread(&self) -> Result<(), PlatformError> {
        let slot = self.my_slot()?;
        let caller = current_tid();
        lock(&self.threads).entries.retain(|e| e.host != caller);
        let mut s = lock(&slot);
        s.unbind(&self.shm);
        let r = match self.command(&s, CMD_EXIT, None) {
            Ok(Seen::Dead) => Ok(()),
            Ok(Seen::Event) => Err(self.corrupt(format!("thread {} did not exit", s.tid))),
            Err(e) => Err(e),
        };
        if r.is_ok() {
            s.gone = true;
            lock(&self.threads).free.push(s.index);
            tracing::debug!(pid = self.pid, tid = s.tid, "systrap thread exited");
        }
        r
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for SystrapAddressSpace {
    fn drop(&mut self) {
        if self.reaped.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: kill(2) of our unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        // With no switch running (every thread parked in its handler or
        // gone, as at the end of exit_group or execve), no application code
        // runs after SIGKILL: a parked thread dies in the kernel without
        // returning to user mode, and only the Sentry can hand it back
        // (the application, stopped, cannot forge that). So the memory file
        // pages it maps may be reused at once and the stub reaped later,
        // off the exiting task's path (on a busy host its threads take
        // hundreds of µs to be scheduled and die). Otherwise wait.
        if self.in_app.load(Ordering::SeqCst) == 0 && reap_later(self.pid) {
            self.reaped.store(true, Ordering::SeqCst);
            return;
        }
        let mut status = 0;
        loop {
            // SAFETY: waitpid writes only `status`.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r >= 0 || Errno::last() != Errno::EINTR {
                break;
            }
        }
        self.reaped.store(true, Ordering::SeqCst);
        tracing::debug!(pid = self.pid, "systrap stub reaped");
    }
}

/// Hands a killed stub to the reaper thread; false if there is none.
fn reap_later(pid: i32) -> bool {
    static REAPER: std::sync::OnceLock<Option<Mutex<std::sync::mpsc::Sender<i32>>>> =
        std::sync::OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<i32>();
        std::thread::Builder::new()
            .name("cryo-systrap-reaper".into())
            .spawn(move || {
                for pid in rx {
                    let mut status = 0;
                    loop {
                        // SAFETY: waitpid of a killed, unreaped child of
                        // ours, writing only `status`.
                        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
                        if r >= 0 || Errno::last() != Errno::EINTR {
                            break;
                        }
                    }
                    tracing::debug!(pid, "systrap stub reaped");
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    reaper.as_ref().is_some_and(|tx| lock(tx).send(pid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_tracks_what_the_stub_maps() {
        let mut l = Leader::default();
        assert!(l.is_free(0x1000, 0x3000));
        l.note_mapped(0x2000, 0x1000);
        l.note_mapped(0x3000, 0x1000);
        assert_eq!(l.mapped.len(), 1, "adjacent ranges merge: {:?}", l.mapped);
        assert!(!l.is_free(0x1000, 0x2000));
        assert!(!l.is_free(0x3fff, 1));
        assert!(l.is_free(0x1000, 0x1000));
        assert!(l.is_free(0x4000, 0x1000));
        l.note_unmapped(0x2800, 0x1000);
        assert_eq!(
            l.mapped.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(),
            vec![(0x2000, 0x2800), (0x3800, 0x4000)]
        );
        assert!(l.is_free(0x2800, 0x1000));
        l.note_mapped(0x1000, 0x4000);
        assert_eq!(
            l.mapped.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(),
            vec![(0x1000, 0x5000)]
        );
        l.note_unmapped(0, 0x10000);
        assert!(l.mapped.is_empty());
    }

    #[test]
    fn register_array_order_is_the_handlers() {
        let r = Registers {
            r15: 1,
            rip: 17,
            gs: 27,
            ..Registers::default()
        };
        let a = regs_to_array(&r);
        assert_eq!((a[0], a[16], a[26]), (1, 17, 27));
        assert_eq!(regs_from_array(&a), r);
    }
}
