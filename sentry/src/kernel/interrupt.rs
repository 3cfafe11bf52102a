//! Interrupting a task from outside: a checkpoint must be able to stop a
//! task whether it is running application code (the platform's interrupter)
//! or blocked in the Sentry (a sleep or a wait on a pipe).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use platform::Interrupter;

/// Shared between a task and whoever may interrupt it.
#[derive(Default)]
pub struct TaskInterrupt {
    /// What blocking file operations (pipes, host stdio) poll.
    pub io: crate::vfs::Interrupt,
    pending: Mutex<bool>,
    wake: Condvar,
    platform: Mutex<Option<Arc<dyn Interrupter>>>,
}

/// A blocking wait ended because of an interrupt, not its condition.
#[derive(Debug, PartialEq, Eq)]
pub struct Interrupted;

impl TaskInterrupt {
    pub fn new() -> Arc<TaskInterrupt> {
        Arc::new(TaskInterrupt::default())
    }

    /// Sets the platform interrupter of the task's current context.
    pub fn set_platform(&self, i: Arc<dyn Interrupter>) {
        if let Ok(mut slot) = self.platform.lock() {
            *slot = Some(i);
        }
    }

    /// Asks the task to stop at its next clean boundary.
    pub fn interrupt(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = true;
        }
        self.io.interrupt();
        self.wake.notify_all();
        if let Ok(slot) = self.platform.lock() {
            if let Some(i) = slot.as_ref() {
                i.interrupt();
            }
        }
    }

    pub fn is_pending(&self) -> bool {
        self.pending.lock().map(|p| *p).unwrap_or(false)
    }

    /// Clears a handled interrupt.
    pub fn clear(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = false;
        }
        self.io.clear();
    }

    /// Sleeps for `d` unless interrupted first.
    pub fn sleep(&self, d: Duration) -> Result<(), Interrupted> {
        let deadline = std::time::Instant::now() + d;
        let Ok(mut pending) = self.pending.lock() else {
            return Err(Interrupted);
        };
        loop {
            if *pending {
                return Err(Interrupted);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            pending = match self.wake.wait_timeout(pending, deadline - now) {
                Ok((g, _)) => g,
                Err(_) => return Err(Interrupted),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleep_completes_or_is_interrupted() {
        let t = TaskInterrupt::new();
        let start = Instant::now();
        assert_eq!(t.sleep(Duration::from_millis(20)), Ok(()));
        assert!(start.elapsed() >= Duration::from_millis(20));

        let t2 = t.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            t2.interrupt();
        });
        let start = Instant::now();
        assert_eq!(t.sleep(Duration::from_secs(10)), Err(Interrupted));
        assert!(start.elapsed() < Duration::from_secs(5));
        h.join().unwrap();
        assert!(t.is_pending());
        t.clear();
        assert!(!t.is_pending());
    }
}
