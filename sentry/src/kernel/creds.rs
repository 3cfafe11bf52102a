//! Task credentials.

use serde::{Deserialize, Serialize};

/// A task's user and group ids. A `cryo do` sandbox runs as its caller's ids,
/// so programs that print them (id(1)) match a native run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
}
statefile::versioned!(Credentials, "kernel.Credentials", 1);

impl Credentials {
    /// The ids of the process starting the sandbox.
    pub fn of_caller() -> Credentials {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let groups = nix::unistd::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        Credentials {
            uid,
            euid: nix::unistd::geteuid().as_raw(),
            suid: uid,
            gid,
            egid: nix::unistd::getegid().as_raw(),
            sgid: gid,
            groups,
        }
    }
}
