//! The kernel's process log, like BSD process accounting: a bounded ring
//! of process starts and ends (pid, parent, the program's arguments and
//! environment as its last exec gave them, start and end on the sandbox's
//! monotonic clock, exit status). It is saved with the kernel, so `cryo
//! diff` can name a process that started and ended between two
//! statefiles, which neither statefile's process table holds any more.
//!
//! Bounded on every axis: at most [`LOG_CAPACITY`] entries (when full, the
//! oldest ended entry goes first, so the live processes keep theirs while
//! fewer than that are alive), each argument vector and environment cut to
//! a few KiB. What was cut or dropped is counted, never hidden.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::task::ExitStatus;
use super::time::Nanos;

/// Most entries the log keeps.
pub const LOG_CAPACITY: usize = 1024;
/// Most arguments kept per entry.
pub const MAX_ARGS: usize = 32;
/// Most environment strings kept per entry.
pub const MAX_ENV: usize = 128;
/// Longest argument or environment string kept (longer ones are cut).
pub const MAX_STRING: usize = 512;
/// Most bytes of arguments, and of environment, kept per entry.
pub const MAX_VECTOR_BYTES: usize = 8192;

/// How a logged process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEnd {
    /// Killed by signal `code` rather than exited with status `code`.
    pub signaled: bool,
    pub code: i32,
    /// The sandbox's CLOCK_MONOTONIC when its last thread left.
    pub at_ns: Nanos,
}
statefile::versioned!(ProcessEnd, "kernel.ProcessEnd", 1);

/// One process's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLogEntry {
    /// The entry's number: entries are numbered from 1 in the order their
    /// processes started, across restores.
    pub seq: u64,
    pub pid: i32,
    /// The parent's pid when it started (0: from outside the sandbox, as
    /// its init and `cryo exec`'s processes).
    pub ppid: i32,
    /// The sandbox's CLOCK_MONOTONIC when it started.
    pub start_ns: Nanos,
    /// The executable of its last exec (its parent's before any).
    pub exe: String,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    /// Some arguments or environment strings were cut or left out.
    pub truncated: bool,
    /// How many times it exec'd.
    pub execs: u32,
    pub end: Option<ProcessEnd>,
}
statefile::versioned!(ProcessLogEntry, "kernel.ProcessLogEntry", 1, [ProcessEnd]);

/// The log's saved form (the kernel's own, id 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLogRecord {
    /// Oldest first.
    pub entries: Vec<ProcessLogEntry>,
    /// The next entry's number.
    pub next_seq: u64,
    /// Entries dropped because the log was full.
    pub dropped: u64,
}
statefile::savable_serde!(ProcessLogRecord, "kernel.ProcessLog", 1, [ProcessLogEntry]);

impl ProcessLogRecord {
    /// Whether the record keeps the log's bounds: a hostile statefile's is
    /// refused with the field and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: String, w: String| Err((f, w));
        if self.entries.len() > LOG_CAPACITY {
            return bad(
                "entries".into(),
                format!("{} entries (at most {LOG_CAPACITY})", self.entries.len()),
            );
        }
        let mut prev = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            let f = |name: &str| format!("entries[{i}].{name}");
            if e.seq == 0 || e.seq <= prev || e.seq >= self.next_seq {
                return bad(
                    f("seq"),
                    format!(
                        "{} is not above {prev} and below next_seq {}",
                        e.seq, self.next_seq
                    ),
                );
            }
            prev = e.seq;
            if !(1..=super::pid_namespace::PID_MAX).contains(&e.pid) {
                return bad(f("pid"), format!("{}", e.pid));
            }
            if !(0..=super::pid_namespace::PID_MAX).contains(&e.ppid) {
                return bad(f("ppid"), format!("{}", e.ppid));
            }
            let clock = 0..=crate::state::validate::MAX_CLOCK_NANOS;
            if !clock.contains(&e.start_ns) {
                return bad(f("start_ns"), format!("{} ns", e.start_ns));
            }
            if e.exe.len() > 4096 || e.exe.contains('\0') {
                return bad(f("exe"), "longer than PATH_MAX or holds a NUL".into());
            }
            for (name, v, most) in [("argv", &e.argv, MAX_ARGS), ("env", &e.env, MAX_ENV)] {
                let bytes: usize = v.iter().map(Vec::len).sum();
                if v.len() > most
                    || bytes > MAX_VECTOR_BYTES
                    || v.iter().any(|s| s.len() > MAX_STRING)
                {
                    return bad(
                        f(name),
                        format!(
                            "{} strings of {bytes} bytes, beyond the log's bounds",
                            v.len()
                        ),
                    );
                }
            }
            if let Some(end) = e.end {
                if end.at_ns < e.start_ns || !clock.contains(&end.at_ns) {
                    return bad(
                        f("end.at_ns"),
                        format!("{} ns (started at {})", end.at_ns, e.start_ns),
                    );
                }
                let ok = if end.signaled {
                    (1..=64).contains(&end.code)
                } else {
                    (0..=255).contains(&end.code)
                };
                if !ok {
                    return bad(f("end.code"), format!("{}", end.code));
                }
            }
        }
        Ok(())
    }
}

/// Cuts a vector of strings to the log's bounds; true if anything was cut.
fn bounded(v: &[Vec<u8>], most: usize) -> (Vec<Vec<u8>>, bool) {
    let mut out = Vec::with_capacity(v.len().min(most));
    let mut bytes = 0;
    let mut cut = v.len() > most;
    for s in v.iter().take(most) {
        cut |= s.len() > MAX_STRING;
        let s = &s[..s.len().min(MAX_STRING)];
        if bytes + s.len() > MAX_VECTOR_BYTES {
            cut = true;
            break;
        }
        bytes += s.len();
        out.push(s.to_vec());
    }
    (out, cut)
}

/// A program a process starts with: its executable, arguments and
/// environment.
#[derive(Clone, Copy, Debug)]
pub struct Program<'a> {
    pub exe: &'a str,
    pub argv: &'a [Vec<u8>],
    pub env: &'a [Vec<u8>],
}

/// How a process started.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// Forked by process `from`.
    Fork { from: i32 },
    /// With its own program (a sandbox's init, a process `cryo exec` adds).
    Program(Program<'a>),
}

/// The live log.
#[derive(Debug, Default)]
pub struct ProcessLog {
    entries: VecDeque<ProcessLogEntry>,
    next_seq: u64,
    dropped: u64,
}

impl ProcessLog {
    pub fn new() -> ProcessLog {
        ProcessLog {
            entries: VecDeque::new(),
            next_seq: 1,
            dropped: 0,
        }
    }

    /// The log a statefile saved ([`ProcessLogRecord::check`]ed).
    pub fn restore(r: &ProcessLogRecord) -> ProcessLog {
        ProcessLog {
            entries: r.entries.iter().cloned().collect(),
            next_seq: r.next_seq.max(1),
            dropped: r.dropped,
        }
    }

    pub fn record(&self) -> ProcessLogRecord {
        ProcessLogRecord {
            entries: self.entries.iter().cloned().collect(),
            next_seq: self.next_seq,
            dropped: self.dropped,
        }
    }

    /// The newest entry of a process `pid` that has not ended.
    fn live_mut(&mut self, pid: i32) -> Option<&mut ProcessLogEntry> {
        self.entries
            .iter_mut()
            .rev()
            .find(|e| e.pid == pid && e.end.is_none())
    }

    /// Process `pid`, child of `ppid`, started: forked (it has the
    /// forking process's program and environment until it execs; the
    /// forking process is its parent but with CLONE_PARENT) or with its own
    /// program.
    pub fn started(&mut self, pid: i32, ppid: i32, now: Nanos, how: Start<'_>) {
        let (exe, argv, env, truncated, execs) = match how {
            Start::Program(Program { exe, argv, env }) => {
                let (argv, a) = bounded(argv, MAX_ARGS);
                let (env, e) = bounded(env, MAX_ENV);
                (exe.to_string(), argv, env, a || e, 1)
            }
            Start::Fork { from } => match self.live_mut(from) {
                Some(p) => (p.exe.clone(), p.argv.clone(), p.env.clone(), p.truncated, 0),
                None => (String::new(), Vec::new(), Vec::new(), false, 0),
            },
        };
        if self.entries.len() >= LOG_CAPACITY {
            // The oldest ended entry goes first; with none ended, the oldest.
            let i = self
                .entries
                .iter()
                .position(|e| e.end.is_some())
                .unwrap_or(0);
            self.entries.remove(i);
            self.dropped += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(ProcessLogEntry {
            seq,
            pid,
            ppid,
            start_ns: now,
            exe,
            argv,
            env,
            truncated,
            execs,
            end: None,
        });
    }

    /// Process `pid` exec'd a new program.
    pub fn exec(&mut self, pid: i32, exe: &str, argv: &[Vec<u8>], env: &[Vec<u8>]) {
        if let Some(e) = self.live_mut(pid) {
            let (argv, a) = bounded(argv, MAX_ARGS);
            let (env, v) = bounded(env, MAX_ENV);
            e.exe = exe.to_string();
            e.argv = argv;
            e.env = env;
            e.truncated = a || v;
            e.execs = e.execs.saturating_add(1);
        }
    }

    /// Process `pid`'s last thread left with `status`.
    pub fn ended(&mut self, pid: i32, status: ExitStatus, now: Nanos) {
        if let Some(e) = self.live_mut(pid) {
            let (signaled, code) = match status {
                ExitStatus::Exited(c) => (false, c & 0xff),
                ExitStatus::Signaled(s) => (true, s),
            };
            e.end = Some(ProcessEnd {
                signaled,
                code,
                at_ns: now.max(e.start_ns),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn start_exec_end_and_inheritance() {
        let mut log = ProcessLog::new();
        log.started(
            1,
            0,
            10,
            Start::Program(Program {
                exe: "/bin/sh",
                argv: &strings(&["sh"]),
                env: &strings(&["A=1"]),
            }),
        );
        log.started(2, 1, 20, Start::Fork { from: 1 });
        let r = log.record();
        assert_eq!(r.entries[1].argv, strings(&["sh"]));
        assert_eq!(r.entries[1].env, strings(&["A=1"]));
        assert_eq!(r.entries[1].execs, 0);
        log.exec(
            2,
            "/bin/touch",
            &strings(&["touch", "x"]),
            &strings(&["B=2"]),
        );
        log.ended(2, ExitStatus::Exited(3), 30);
        let r = log.record();
        assert_eq!(r.entries[1].exe, "/bin/touch");
        assert_eq!(
            r.entries[1].end,
            Some(ProcessEnd {
                signaled: false,
                code: 3,
                at_ns: 30
            })
        );
        assert!(r.entries[0].end.is_none());
        r.check().unwrap();
        // A reused pid gets an entry of its own; the ended one is kept.
        log.started(2, 1, 40, Start::Fork { from: 1 });
        log.ended(2, ExitStatus::Signaled(9), 50);
        let r = log.record();
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[1].end.unwrap().code, 3);
        assert!(r.entries[2].end.unwrap().signaled);
        assert_eq!(ProcessLog::restore(&r).record(), r);
    }

    #[test]
    fn full_log_drops_ended_entries_first_and_counts_them() {
        let mut log = ProcessLog::new();
        log.started(
            1,
            0,
            0,
            Start::Program(Program {
                exe: "/init",
                argv: &strings(&["init"]),
                env: &[],
            }),
        );
        for pid in 2..(LOG_CAPACITY as i32 + 10) {
            log.started(pid, 1, 1, Start::Fork { from: 1 });
            log.ended(pid, ExitStatus::Exited(0), 2);
        }
        let r = log.record();
        assert_eq!(r.entries.len(), LOG_CAPACITY);
        assert_eq!(r.entries[0].pid, 1, "the live init keeps its entry");
        assert_eq!(r.dropped, 9);
        r.check().unwrap();
    }

    #[test]
    fn long_vectors_are_cut_and_marked() {
        let mut log = ProcessLog::new();
        let long = vec![vec![b'x'; MAX_STRING * 3]];
        let many: Vec<Vec<u8>> = (0..MAX_ENV * 2)
            .map(|i| format!("V{i}=1").into_bytes())
            .collect();
        log.started(
            1,
            0,
            0,
            Start::Program(Program {
                exe: "/a",
                argv: &long,
                env: &many,
            }),
        );
        let r = log.record();
        assert!(r.entries[0].truncated);
        assert_eq!(r.entries[0].argv[0].len(), MAX_STRING);
        assert_eq!(r.entries[0].env.len(), MAX_ENV);
        r.check().unwrap();
        log.started(
            2,
            0,
            0,
            Start::Program(Program {
                exe: "/b",
                argv: &strings(&["b"]),
                env: &[],
            }),
        );
        assert!(!log.record().entries[1].truncated);
    }

    #[test]
    fn hostile_records_are_refused_by_field() {
        let mut log = ProcessLog::new();
        log.started(
            1,
            0,
            5,
            Start::Program(Program {
                exe: "/a",
                argv: &strings(&["a"]),
                env: &[],
            }),
        );
        log.ended(1, ExitStatus::Exited(0), 6);
        let good = log.record();
        let mut r = good.clone();
        r.entries[0].pid = 0;
        assert_eq!(r.check().unwrap_err().0, "entries[0].pid");
        let mut r = good.clone();
        r.entries[0].end.as_mut().unwrap().at_ns = 1;
        assert_eq!(r.check().unwrap_err().0, "entries[0].end.at_ns");
        let mut r = good.clone();
        r.next_seq = 1;
        assert_eq!(r.check().unwrap_err().0, "entries[0].seq");
        let mut r = good.clone();
        r.entries[0].argv = vec![vec![b'a'; MAX_STRING + 1]];
        assert_eq!(r.check().unwrap_err().0, "entries[0].argv");
        let mut r = good;
        r.entries[0].end.as_mut().unwrap().code = 300;
        assert_eq!(r.check().unwrap_err().0, "entries[0].end.code");
    }
}
