//! The memory a stub shares with the Sentry, and how the Sentry touches it.
//!
//! One memfd per address space, mapped once in the Sentry (read-write) and
//! once in the stub right above the stub code page:
//!
//! ```text
//! stub address        memfd offset
//! S + 0x0000          -          code page (read+exec, inherited across fork)
//! S + 0x1000          0x0000     control page: read-only in the stub
//! S + 0x2000          0x1000     leader status page: read-write
//! S + 0x3000 + i*SLOT 0x2000 + i*SLOT  thread slot i: read-write
//! ```
//!
//! The control page carries the Sentry's requests to the stub's leader thread
//! (the one thread that executes mmap/munmap/mprotect/clone; it never runs
//! application code), a queue of up to [`QUEUE_MAX`] syscalls it runs in
//! one go, and the seccomp programs. The stub cannot write it: the
//! application can write every other byte here, so the Sentry treats all
//! of it as hostile input: every field is read once, with a volatile or
//! atomic load into a local, and validated before use; no pointer is ever
//! taken from it.
//!
//! A thread slot is one application thread: its context (state word,
//! event, registers, FP buffer) and, above it, the signal stack its
//! handlers run on. The stub's handler finds its slot from its stack
//! pointer, so slots are `SLOT_SIZE`-sized and the stub keeps no pointer.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::PlatformError;

/// The size of a page on x86_64 (the stub code hard-codes it).
pub(crate) const PAGE: u64 = 0x1000;
/// The control page's offset from the stub base and in the memfd, and its
/// length.
pub(crate) const CTL_STUB_OFF: u64 = PAGE;
pub(crate) const CTL_SHM_OFF: u64 = 0;
pub(crate) const CTL_LEN: u64 = PAGE;
/// The leader status page.
pub(crate) const STATUS_STUB_OFF: u64 = CTL_STUB_OFF + CTL_LEN;
pub(crate) const STATUS_SHM_OFF: u64 = CTL_LEN;
/// The first thread slot.
pub(crate) const SLOTS_STUB_OFF: u64 = STATUS_STUB_OFF + PAGE;
pub(crate) const SLOTS_SHM_OFF: u64 = STATUS_SHM_OFF + PAGE;
/// One thread slot: context, FP buffer, signal stack.
pub(crate) const SLOT_SIZE: u64 = 0x1_0000;
/// Threads per address space.
pub(crate) const MAX_SLOTS: u64 = 512;
/// The memfd's size (everything after the code page).
pub(crate) const SHM_LEN: u64 = SLOTS_SHM_OFF + MAX_SLOTS * SLOT_SIZE;

// Control page.
/// Request sequence number (u32): the leader's futex word.
pub(crate) const CTL_REQ_SEQ: u64 = 0x00;
/// How many queue entries the request holds (u32, at most [`QUEUE_MAX`]).
pub(crate) const CTL_COUNT: u64 = 0x08;
/// The u64 1 the leader writes to the completion eventfd.
pub(crate) const CTL_ONE: u64 = 0x50;
/// How long (TSC ticks) the leader polls for the next request before it
/// sleeps (u32).
pub(crate) const CTL_LEADER_SPIN: u64 = 0x48;
/// `struct sock_fprog` of the leader's and the application threads' filters.
pub(crate) const CTL_FPROG_LEADER: u64 = 0x100;
pub(crate) const CTL_FPROG_APP: u64 = 0x110;
/// Their instructions.
pub(crate) const CTL_FILTER_LEADER: u64 = 0x200;
pub(crate) const CTL_FILTER_APP: u64 = 0x400;
/// Instructions per filter (the programs have 20-30).
pub(crate) const CTL_FILTER_MAX: usize = 0x200 / 8;
/// The request queue (the rest of the control page): entries of a syscall number
/// (u64) and six arguments, `QUEUE_ENTRY` bytes each. The leader runs
/// them in order and stops at the first that fails.
pub(crate) const CTL_QUEUE: u64 = 0x600;
pub(crate) const QUEUE_ENTRY: u64 = 64;
pub(crate) const QUEUE_MAX: u64 = (PAGE - CTL_QUEUE) / QUEUE_ENTRY;

// Leader status page.
/// The last request done (u32; for diagnostics: the completion itself is
/// the eventfd write).
pub(crate) const ST_DONE_SEQ: u64 = 0x00;
/// How many entries of the last request the leader ran (u64).
pub(crate) const ST_DONE_COUNT: u64 = 0x08;
/// What mseal(2) of the stub region returned (u64).
pub(crate) const ST_MSEAL: u64 = 0x10;
/// The leader sleeps on the request word (u32): wake it.
pub(crate) const ST_LEADER_SLEEPING: u64 = 0x18;
/// Each queue entry's raw result (u64 each; the leader writes them).
pub(crate) const ST_RESULTS: u64 = 0x100;

// Thread slot.
/// The slot's state word (u32), also the thread's CLONE_CHILD_CLEARTID word.
pub(crate) const SL_STATE: u64 = 0x00;
pub(crate) const SL_STUB_SLEEPING: u64 = 0x04;
pub(crate) const SL_SENTRY_SLEEPING: u64 = 0x08;
/// What the stub does when the Sentry hands the slot back (u32).
pub(crate) const SL_COMMAND: u64 = 0x0c;
/// The signal that stopped the application (u32), its si_code (i32) and
/// si_addr (u64).
pub(crate) const SL_KIND: u64 = 0x10;
pub(crate) const SL_CODE: u64 = 0x14;
pub(crate) const SL_ADDR: u64 = 0x18;
/// Bytes of FP state in the FP buffer (u32).
pub(crate) const SL_FP_LEN: u64 = 0x20;
/// How long (TSC ticks) the handler polls the state word before it sleeps
/// on it (u32; the Sentry sets it per thread, 0 while the thread shares a
/// CPU with its Sentry thread).
pub(crate) const SL_SPIN: u64 = 0x24;
/// The Sentry will take long (it waits for the leader): stop polling and
/// sleep (u32; cleared when the Sentry hands the slot back).
pub(crate) const SL_NAP: u64 = 0x28;
/// The registers, 27 u64 in `Registers` order.
pub(crate) const SL_REGS: u64 = 0x40;
/// The FP buffer (XSAVE layout).
pub(crate) const SL_FP: u64 = 0x1000;
pub(crate) const SL_FP_CAP: u64 = crate::arch::MAX_XSAVE_AREA as u64;
/// The signal stack: from here to the end of the slot.
pub(crate) const SL_STACK: u64 = SL_FP + SL_FP_CAP;

/// Slot states.
/// The thread is gone (the kernel's CLONE_CHILD_CLEARTID wrote 0).
pub(crate) const STATE_DEAD: u32 = 0;
/// The stub posted an event or an acknowledgement: the Sentry owns the slot.
pub(crate) const STATE_EVENT: u32 = 1;
/// The Sentry handed the slot to the stub (to run, or to do a command).
pub(crate) const STATE_GO: u32 = 2;

/// Commands.
pub(crate) const CMD_RESUME: u32 = 1;
pub(crate) const CMD_GET_FP: u32 = 2;
pub(crate) const CMD_SET_FP: u32 = 3;
pub(crate) const CMD_EXIT: u32 = 4;
/// CMD_SET_FP, then CMD_RESUME without handing the slot back in between:
/// a new context's first switch loads its FP state in the same hand-over
/// as the resume.
pub(crate) const CMD_SET_FP_RESUME: u32 = 5;

/// The Sentry's mapping of one address space's memfd.
pub(crate) struct Shared {
    base: *mut u8,
    len: usize,
}

// SAFETY: `Shared` is a raw mapping accessed only through volatile and
// atomic operations; it may be used from any thread.
unsafe impl Send for Shared {}
// SAFETY: as above: no reference into the mapping is ever handed out but
// atomics, which are safe to share.
unsafe impl Sync for Shared {}

impl Shared {
    /// Maps `len` bytes of `fd` read-write, shared.
    pub fn map(fd: i32, len: u64) -> Result<Shared, PlatformError> {
        // SAFETY: a fresh shared mapping of our own memfd at an address the
        // kernel picks; nothing aliases it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(PlatformError::Host {
                op: "mmap(systrap shared memory)",
                source: nix::errno::Errno::last(),
            });
        }
        Ok(Shared {
            base: ptr.cast(),
            len: len as usize,
        })
    }

    fn at(&self, off: u64, size: usize) -> *mut u8 {
        let off = off as usize;
        assert!(
            off.is_multiple_of(size.min(8)) && off + size <= self.len,
            "shared offset {off:#x} out of bounds"
        );
        // SAFETY: checked to lie inside the mapping just above.
        unsafe { self.base.add(off) }
    }

    pub fn read_u64(&self, off: u64) -> u64 {
        // SAFETY: in bounds and aligned (checked by `at`); a volatile read of
        // memory another process writes: the value is just bytes.
        unsafe { std::ptr::read_volatile(self.at(off, 8).cast::<u64>()) }
    }

    pub fn write_u64(&self, off: u64, v: u64) {
        // SAFETY: in bounds and aligned (checked by `at`).
        unsafe { std::ptr::write_volatile(self.at(off, 8).cast::<u64>(), v) }
    }

    pub fn write_u16(&self, off: u64, v: u16) {
        // SAFETY: in bounds and aligned (checked by `at`).
        unsafe { std::ptr::write_volatile(self.at(off, 2).cast::<u16>(), v) }
    }

    pub fn read_u32(&self, off: u64) -> u32 {
        self.atomic(off).load(Ordering::Acquire)
    }

    pub fn write_u32(&self, off: u64, v: u32) {
        self.atomic(off).store(v, Ordering::Release)
    }

    /// The u32 at `off` as an atomic (for futex words and flags).
    pub fn atomic(&self, off: u64) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned (checked by `at`); the mapping
        // lives as long as `self`. The stub writes these words with plain
        // aligned stores, which the hardware makes atomic.
        unsafe { AtomicU32::from_ptr(self.at(off, 4).cast::<u32>()) }
    }

    /// The address of `off` in this process (for futex calls).
    pub fn addr(&self, off: u64) -> *const u32 {
        self.at(off, 4).cast::<u32>()
    }

    /// Copies `len` bytes at `off` out, with volatile reads.
    pub fn read_bytes(&self, off: u64, len: usize) -> Vec<u8> {
        let src = self.at(off, 1);
        assert!(off as usize + len <= self.len);
        (0..len)
            // SAFETY: `off + len` is in bounds (checked above).
            .map(|i| unsafe { std::ptr::read_volatile(src.add(i)) })
            .collect()
    }

    /// Copies `bytes` in at `off`.
    pub fn write_bytes(&self, off: u64, bytes: &[u8]) {
        let dst = self.at(off, 1);
        assert!(off as usize + bytes.len() <= self.len);
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (checked above).
            unsafe { std::ptr::write_volatile(dst.add(i), *b) };
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `map`; no reference
        // into it outlives `self` (atomics borrow `self`).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The memfd offset of slot `i`'s field `field`.
pub(crate) fn slot_off(i: usize, field: u64) -> u64 {
    SLOTS_SHM_OFF + i as u64 * SLOT_SIZE + field
}

/// FUTEX_WAIT on a shared word, with a timeout. Returns false on timeout.
pub(crate) fn futex_wait(word: *const u32, val: u32, timeout: std::time::Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: futex(2) on a word of our shared mapping; the kernel only
    // reads it and `ts`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            val,
            &ts as *const libc::timespec,
        )
    };
    !(r < 0 && nix::errno::Errno::last() == nix::errno::Errno::ETIMEDOUT)
}

/// FUTEX_WAKE the one waiter of a shared word (each word has one sleeper
/// at a time: the other side of the hand-over).
pub(crate) fn futex_wake(word: *const u32) {
    // SAFETY: futex(2) on a word of our shared mapping.
    unsafe { libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, 1) };
}
