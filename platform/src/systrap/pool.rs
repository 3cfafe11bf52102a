//! Address spaces made ahead of need: a background thread keeps a few
//! stubs ready (forked, leader running, first thread parked at its first
//! trap), so that fork and execve take one instead of waiting for a stub's
//! creation, most of which is the scheduler getting a new process's
//! threads onto a CPU (0.1 ms on an idle host, over 1 ms on a busy one).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::address_space::{lock, SystrapAddressSpace};
use super::stub::StubPage;
use crate::{Layout, PlatformError};

/// How many ready address spaces the pool keeps: `CRYO_SYSTRAP_POOL`
/// (0 turns it off), by default 2.
fn target() -> usize {
    std::env::var("CRYO_SYSTRAP_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

#[derive(Default)]
struct State {
    ready: Vec<SystrapAddressSpace>,
    started: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when an address space is taken or the pool closes.
    wake: Condvar,
}

/// The pool of one platform.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    target: usize,
    layout: Layout,
    page: StubPage,
    /// The pool's own duplicate of the memory file: the stubs it makes get
    /// the memory file at this number, which stays valid however long the
    /// thread runs after the platform is gone.
    memory_file: Arc<OwnedFd>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(layout: Layout, page: StubPage, memory_file: OwnedFd) -> Pool {
        Pool {
            shared: Arc::default(),
            target: target(),
            layout,
            page,
            memory_file: Arc::new(memory_file),
        }
    }

    /// A ready address space, if the pool has one; starts the pool's
    /// thread at the first call (a platform that never makes an address
    /// space makes no stub).
    pub(crate) fn take(&self) -> Option<SystrapAddressSpace> {
        if self.target == 0 {
            return None;
        }
        let mut st = lock(&self.shared.state);
        if !st.started {
            st.started = true;
            self.start();
        }
        let got = st.ready.pop();
        self.shared.wake.notify_all();
        got
    }

    fn start(&self) {
        let shared = self.shared.clone();
        let (layout, page, fd, target) = (
            self.layout,
            self.page,
            self.memory_file.clone(),
            self.target,
        );
        let spawned = std::thread::Builder::new()
            .name("cryo-systrap-pool".into())
            .spawn(move || fill(&shared, layout, page, &fd, target));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "systrap: no stub pool thread");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.closed = true;
        // The ready stubs are killed and reaped here.
        st.ready.clear();
        self.shared.wake.notify_all();
    }
}

fn fill(shared: &Shared, layout: Layout, page: StubPage, fd: &OwnedFd, target: usize) {
    let mut failures = 0u32;
    loop {
        {
            let mut st = lock(&shared.state);
            while !st.closed && st.ready.len() >= target {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.closed {
                return;
            }
        }
        let made: Result<SystrapAddressSpace, PlatformError> =
            SystrapAddressSpace::new(layout, page, fd.as_raw_fd());
        match made {
            Ok(a) => {
                failures = 0;
                let mut st = lock(&shared.state);
                if st.closed {
                    return;
                }
                st.ready.push(a);
            }
            Err(e) => {
                // Callers then make their own (and see the error); the
                // pool tries again later, and gives up after a few.
                failures += 1;
                tracing::warn!(error = %e, failures, "systrap: the stub pool cannot make a stub");
                if failures >= 5 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100 << failures));
            }
        }
    }
}
