//! The host processes of a sandbox, found by parentage rather than by
//! command line (systrap stubs do not carry cryo's): everything descended
//! from the sandbox's `cryo` process (the Sentry), recorded while it runs,
//! so that a test can check that every one of them is gone once the
//! sandbox has ended.
//!
//! A process is told apart from a later one that reuses its pid by its
//! start time. A process started after the last record and left behind is
//! still found if it is in a process group or session of a recorded one
//! (stubs inherit the stub forker's session); the test's own group and
//! session are left out of that.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One host process as /proc/PID/stat shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProcess {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Field 22, in clock ticks since boot: with the pid, the identity.
    pub start: u64,
    pub state: char,
    pub comm: String,
}

impl HostProcess {
    /// `/proc/PID/stat` read now, or None if the process is gone or the
    /// file cannot be parsed (it exited while being read).
    pub fn read(pid: i32) -> Option<HostProcess> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // comm may hold spaces and parentheses: it ends at the last ')'.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        Some(HostProcess {
            pid,
            state: rest.first()?.chars().next()?,
            ppid: rest.get(1)?.parse().ok()?,
            pgid: rest.get(2)?.parse().ok()?,
            sid: rest.get(3)?.parse().ok()?,
            start: rest.get(19)?.parse().ok()?,
            comm,
        })
    }

    /// Every process on the host now.
    pub fn all() -> Vec<HostProcess> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(HostProcess::read)
            .collect()
    }
}

/// The host processes a sandbox has been seen with.
#[derive(Default)]
pub struct HostTree {
    seen: BTreeMap<(i32, u64), HostProcess>,
}

impl HostTree {
    pub fn new() -> HostTree {
        HostTree::default()
    }

    /// Records `root` and every host process descended from it as they are
    /// now; returns how many there are now.
    pub fn record(&mut self, root: u32) -> usize {
        let all = HostProcess::all();
        let mut children: BTreeMap<i32, Vec<&HostProcess>> = BTreeMap::new();
        for p in &all {
            children.entry(p.ppid).or_default().push(p);
        }
        let mut now = 0;
        let mut todo: Vec<&HostProcess> = all.iter().filter(|p| p.pid == root as i32).collect();
        while let Some(p) = todo.pop() {
            now += 1;
            self.seen.insert((p.pid, p.start), p.clone());
            if let Some(c) = children.get(&p.pid) {
                todo.extend(c.iter().copied());
            }
        }
        now
    }

    /// Everything recorded.
    pub fn recorded(&self) -> Vec<&HostProcess> {
        self.seen.values().collect()
    }

    /// The recorded processes still alive (same pid, same start time,
    /// zombies included: nobody reaped them), and any other process in a
    /// recorded process group or session but this test's own.
    pub fn left(&self) -> Vec<HostProcess> {
        let me = HostProcess::read(std::process::id() as i32).expect("/proc/self/stat");
        let (own_pgid, own_sid) = (me.pgid, me.sid);
        let groups: BTreeSet<i32> = self
            .seen
            .values()
            .map(|p| p.pgid)
            .filter(|&g| g != own_pgid)
            .collect();
        let sessions: BTreeSet<i32> = self
            .seen
            .values()
            .map(|p| p.sid)
            .filter(|&s| s != own_sid)
            .collect();
        HostProcess::all()
            .into_iter()
            .filter(|p| {
                self.seen.contains_key(&(p.pid, p.start))
                    || groups.contains(&p.pgid)
                    || sessions.contains(&p.sid)
            })
            .collect()
    }

    /// Fails the test if any process of [`HostTree::left`] is still there
    /// `grace` after the sandbox ended (a dying process takes a moment to
    /// go; one that stays is a leak).
    pub fn assert_all_gone(&self, grace: Duration, what: &str) {
        let deadline = Instant::now() + grace;
        loop {
            let left = self.left();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {} recorded host processes (or their groups) still there after {grace:?}: {left:#?}",
                left.len(),
                self.seen.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
