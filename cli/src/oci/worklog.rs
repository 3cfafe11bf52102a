//! The log of a checkpoint or restore in its `--work-path` (runc's
//! dump.log and restore.log, which podman creates there before it calls
//! the runtime and shows when the operation fails). The file is opened for
//! appending, never created exclusively: the engine made it already.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;

pub struct WorkLog {
    file: Option<File>,
}

impl WorkLog {
    /// `WORK/name`, or a log that writes nothing without a work path.
    pub fn open(work: Option<&Path>, name: &str) -> anyhow::Result<WorkLog> {
        let Some(dir) = work else {
            return Ok(WorkLog { file: None });
        };
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("--work-path: cannot open {}", path.display()))?;
        Ok(WorkLog { file: Some(file) })
    }

    /// One timestamped line (a failed write is not the operation's
    /// failure: the log is for people).
    pub fn line(&mut self, msg: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{} cryo: {msg}", super::state::rfc3339_now());
        }
    }

    /// The operation's end: its outcome, with the error's causes.
    pub fn outcome<T>(&mut self, what: &str, result: &anyhow::Result<T>) {
        match result {
            Ok(_) => self.line(&format!("{what} succeeded")),
            Err(e) => self.line(&format!("{what} failed: {}", crate::one_line(e))),
        }
    }
}
