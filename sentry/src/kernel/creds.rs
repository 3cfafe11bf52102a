//! Task credentials: user and group ids and the capability sets of
//! capabilities(7), with Linux's rules for how they change (the setuid
//! family, capset, the prctl capability calls and execve).

use serde::{Deserialize, Serialize};

/// The highest capability number this kernel knows (CAP_CHECKPOINT_RESTORE,
/// as /proc/sys/kernel/cap_last_cap on Linux 5.9 and later).
pub const CAP_LAST_CAP: u32 = 40;
/// Every capability (Linux's CAP_VALID_MASK).
pub const ALL_CAPS: u64 = (1 << (CAP_LAST_CAP + 1)) - 1;

pub const CAP_CHOWN: u32 = 0;
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_FOWNER: u32 = 3;
pub const CAP_FSETID: u32 = 4;
pub const CAP_KILL: u32 = 5;
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_LINUX_IMMUTABLE: u32 = 9;
pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_SYS_CHROOT: u32 = 18;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_NICE: u32 = 23;
pub const CAP_SYS_RESOURCE: u32 = 24;
pub const CAP_MKNOD: u32 = 27;
pub const CAP_MAC_OVERRIDE: u32 = 32;

/// The capabilities a change of the file-system uid to or from 0 drops
/// or raises (Linux's CAP_FS_SET).
pub const FS_CAPS: u64 = 1 << CAP_CHOWN
    | 1 << CAP_DAC_OVERRIDE
    | 1 << CAP_DAC_READ_SEARCH
    | 1 << CAP_FOWNER
    | 1 << CAP_FSETID
    | 1 << CAP_LINUX_IMMUTABLE
    | 1 << CAP_MKNOD
    | 1 << CAP_MAC_OVERRIDE;

/// The capability names of capabilities(7), by number (OCI configs and
/// getpcaps spell them so, with a CAP_ prefix).
pub const CAP_NAMES: [&str; CAP_LAST_CAP as usize + 1] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The number of a capability named as capabilities(7) does (the CAP_
/// prefix optional, any case), None for a name Linux does not have.
pub fn cap_by_name(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAP_NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// securebits (prctl PR_SET_SECUREBITS), each with its lock bit above it.
pub const SECBIT_NOROOT: u32 = 1 << 0;
pub const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
pub const SECBIT_KEEP_CAPS: u32 = 1 << 4;
pub const SECBIT_KEEP_CAPS_LOCKED: u32 = 1 << 5;
pub const SECBIT_NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
/// The four settable bits and their four locks.
pub const SECURE_ALL_BITS: u32 =
    SECBIT_NOROOT | SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS | SECBIT_NO_CAP_AMBIENT_RAISE;
pub const SECURE_ALL_LOCKS: u32 = SECURE_ALL_BITS << 1;

/// The five capability sets of a task, each a bit mask over capability
/// numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
}
statefile::versioned!(CapSets, "kernel.CapSets", 1);

impl CapSets {
    /// A process that holds every capability (uid 0 after an execve with
    /// the full bounding set).
    pub fn full() -> CapSets {
        CapSets {
            effective: ALL_CAPS,
            permitted: ALL_CAPS,
            inheritable: 0,
            bounding: ALL_CAPS,
            ambient: 0,
        }
    }

    /// The sets this host process holds (a runtime's own, which runc's
    /// container keeps when its config names none); read from
    /// /proc/self/status, or as uid 0 or not holds them by default.
    pub fn of_this_process() -> CapSets {
        host_caps().unwrap_or(if nix::unistd::geteuid().is_root() {
            CapSets::full()
        } else {
            CapSets::none()
        })
    }

    /// A process with no capability, whose bounding set is still full.
    pub fn none() -> CapSets {
        CapSets {
            bounding: ALL_CAPS,
            ..CapSets::default()
        }
    }

    /// Whether the sets are ones Linux could hold: only known
    /// capabilities, effective within permitted, ambient within permitted
    /// and inheritable (a statefile or a config is not trusted to say so).
    pub fn is_valid(&self) -> bool {
        let all = [
            self.effective,
            self.permitted,
            self.inheritable,
            self.bounding,
            self.ambient,
        ];
        all.iter().all(|s| s & !ALL_CAPS == 0)
            && self.effective & !self.permitted == 0
            && self.ambient & !(self.permitted & self.inheritable) == 0
    }
}

/// A task's user and group ids and capabilities. A `cryo do` sandbox runs
/// as its caller's ids, with the capabilities an execve by the caller
/// would give, so programs that print them (id(1), capsh) match a native
/// run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
    pub caps: CapSets,
    /// prctl's securebits; SECBIT_KEEP_CAPS is PR_SET_KEEPCAPS's flag, as
    /// in Linux, where keepcaps is that bit.
    pub securebits: u32,
}
statefile::versioned!(Credentials, "kernel.Credentials", 2, [CapSets]);

/// The credentials as cryo saved them before capabilities (kernel.Task
/// v2): uid 0 stood for every capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsV1 {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
}
statefile::versioned!(CredentialsV1, "kernel.Credentials", 1);

impl From<CredentialsV1> for Credentials {
    /// v1's model: effective uid 0 had every capability, anyone else none;
    /// the bounding set was full.
    fn from(v1: CredentialsV1) -> Credentials {
        let caps = if v1.euid == 0 {
            CapSets::full()
        } else {
            CapSets::none()
        };
        Credentials {
            uid: v1.uid,
            euid: v1.euid,
            suid: v1.suid,
            gid: v1.gid,
            egid: v1.egid,
            sgid: v1.sgid,
            groups: v1.groups,
            caps,
            securebits: 0,
        }
    }
}

/// The capability sets of this host process, from /proc/self/status
/// (None when it cannot be read).
fn host_caps() -> Option<CapSets> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let hex = line.split_once(':')?.1.trim();
        u64::from_str_radix(hex, 16).ok().map(|v| v & ALL_CAPS)
    };
    Some(CapSets {
        effective: field("CapEff:")?,
        permitted: field("CapPrm:")?,
        inheritable: field("CapInh:")?,
        bounding: field("CapBnd:")?,
        // Kernels before 4.3 have no ambient set.
        ambient: field("CapAmb:").unwrap_or(0),
    })
}

impl Credentials {
    /// The ids and capabilities of the process starting the sandbox, as
    /// they are before it executes the sandbox's program (boot applies
    /// execve's rules, so a root caller's program holds its bounding set
    /// and anyone else's only its ambient capabilities).
    pub fn of_caller() -> Credentials {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let euid = nix::unistd::geteuid().as_raw();
        let groups = nix::unistd::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        let caps = CapSets::of_this_process();
        Credentials {
            uid,
            euid,
            suid: uid,
            gid,
            egid: nix::unistd::getegid().as_raw(),
            sgid: gid,
            groups,
            caps,
            securebits: 0,
        }
    }

    /// Credentials with these ids, every capability of a root process
    /// (before execve: boot applies its rules) and no securebits.
    pub fn with_ids(uid: u32, gid: u32, groups: Vec<u32>) -> Credentials {
        Credentials {
            uid,
            euid: uid,
            suid: uid,
            gid,
            egid: gid,
            sgid: gid,
            groups,
            caps: CapSets::full(),
            securebits: 0,
        }
    }

    /// Whether the task holds `cap` in its effective set (Linux's
    /// capable(), in the sandbox's single user namespace).
    pub fn capable(&self, cap: u32) -> bool {
        cap <= CAP_LAST_CAP && self.caps.effective & (1 << cap) != 0
    }

    /// Whether a task with these credentials may reach into a process
    /// with `target`'s (Linux's __ptrace_may_access with
    /// PTRACE_MODE_ATTACH_REALCREDS, as pidfd_getfd asks): its real ids
    /// match every uid and gid of the target, and the target is dumpable,
    /// or it holds CAP_SYS_PTRACE.
    pub fn may_ptrace_attach(&self, target: &Credentials, target_dumpable: bool) -> bool {
        let same = [target.uid, target.euid, target.suid]
            .iter()
            .all(|&u| u == self.uid)
            && [target.gid, target.egid, target.sgid]
                .iter()
                .all(|&g| g == self.gid);
        (same && target_dumpable) || self.capable(CAP_SYS_PTRACE)
    }

    pub fn issecure(&self, bit: u32) -> bool {
        self.securebits & bit != 0
    }

    /// capabilities(7), "Effect of user ID changes" (Linux's
    /// cap_emulate_setxuid), after setuid, setreuid or setresuid moved
    /// the ids from `old` to these.
    pub fn fix_caps_after_setuid(&mut self, old: &Credentials) {
        if self.issecure(SECBIT_NO_SETUID_FIXUP) {
            return;
        }
        let was_root = old.uid == 0 || old.euid == 0 || old.suid == 0;
        let none_root = self.uid != 0 && self.euid != 0 && self.suid != 0;
        if was_root && none_root {
            if !self.issecure(SECBIT_KEEP_CAPS) {
                self.caps.permitted = 0;
                self.caps.effective = 0;
            }
            self.caps.ambient = 0;
        }
        if old.euid == 0 && self.euid != 0 {
            self.caps.effective = 0;
        }
        if old.euid != 0 && self.euid == 0 {
            self.caps.effective = self.caps.permitted;
        }
    }

    /// The file-system uid moved from `old_fsuid` to `new_fsuid`
    /// (setfsuid): to or from 0 drops or raises the file-system
    /// capabilities in the effective set.
    pub fn fix_caps_after_setfsuid(&mut self, old_fsuid: u32, new_fsuid: u32) {
        if self.issecure(SECBIT_NO_SETUID_FIXUP) {
            return;
        }
        if old_fsuid == 0 && new_fsuid != 0 {
            self.caps.effective &= !FS_CAPS;
        }
        if old_fsuid != 0 && new_fsuid == 0 {
            self.caps.effective |= self.caps.permitted & FS_CAPS;
        }
    }

    /// execve's transformation of the capability sets for a file with no
    /// capabilities and no set-user-ID bit (Linux's
    /// cap_bprm_creds_from_file): root (real or effective, unless
    /// SECBIT_NOROOT) gets its bounding and inheritable sets as permitted,
    /// and, if its effective uid is 0, as effective; anyone else keeps
    /// only its ambient capabilities. Under no_new_privs nothing may be
    /// gained over the permitted set held before. keepcaps is cleared.
    pub fn exec_transform(&mut self, no_new_privs: bool) {
        let old = self.caps;
        let mut permitted = 0;
        let mut effective = false;
        if !self.issecure(SECBIT_NOROOT) {
            if self.euid == 0 || self.uid == 0 {
                permitted = old.bounding | old.inheritable;
            }
            effective = self.euid == 0;
        }
        // A gain under no_new_privs is cut back to what was held
        // (bprm->unsafe's LSM_UNSAFE_NO_NEW_PRIVS).
        if no_new_privs && permitted & !old.permitted != 0 {
            permitted &= old.permitted;
        }
        permitted |= old.ambient;
        self.caps.permitted = permitted & ALL_CAPS;
        self.caps.effective = if effective {
            self.caps.permitted
        } else {
            old.ambient
        };
        self.suid = self.euid;
        self.sgid = self.egid;
        self.securebits &= !SECBIT_KEEP_CAPS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Credentials {
        Credentials::with_ids(0, 0, vec![])
    }

    #[test]
    fn setuid_away_from_root_clears_caps_unless_keepcaps() {
        let old = root();
        let mut c = old.clone();
        (c.uid, c.euid, c.suid) = (1000, 1000, 1000);
        c.fix_caps_after_setuid(&old);
        assert_eq!((c.caps.permitted, c.caps.effective), (0, 0));
        assert_eq!(c.caps.bounding, ALL_CAPS);

        let mut old = root();
        old.securebits = SECBIT_KEEP_CAPS;
        let mut c = old.clone();
        (c.uid, c.euid, c.suid) = (1000, 1000, 1000);
        c.fix_caps_after_setuid(&old);
        assert_eq!((c.caps.permitted, c.caps.effective), (ALL_CAPS, 0));
    }

    #[test]
    fn euid_round_trip_restores_effective_from_permitted() {
        let old = root();
        let mut c = old.clone();
        c.euid = 1000;
        c.fix_caps_after_setuid(&old);
        assert_eq!((c.caps.permitted, c.caps.effective), (ALL_CAPS, 0));
        let old = c.clone();
        c.euid = 0;
        c.fix_caps_after_setuid(&old);
        assert_eq!(c.caps.effective, ALL_CAPS);
    }

    #[test]
    fn exec_gives_root_its_bounding_set_and_others_their_ambient() {
        let mut c = root();
        c.caps.bounding = ALL_CAPS & !(1 << CAP_KILL);
        c.caps.effective = 1 << CAP_CHOWN;
        c.caps.permitted = 1 << CAP_CHOWN;
        c.exec_transform(false);
        assert_eq!(c.caps.effective, ALL_CAPS & !(1 << CAP_KILL));
        let mut c = root();
        c.caps.permitted = 1 << CAP_CHOWN;
        c.caps.effective = 0;
        c.exec_transform(true);
        assert_eq!(
            c.caps.permitted,
            1 << CAP_CHOWN,
            "no_new_privs gains nothing"
        );

        let mut u = Credentials::with_ids(1000, 1000, vec![]);
        u.caps.inheritable = 1 << CAP_NET_BIND_SERVICE;
        u.caps.ambient = 1 << CAP_NET_BIND_SERVICE;
        u.exec_transform(false);
        assert_eq!(u.caps.effective, 1 << CAP_NET_BIND_SERVICE);
        assert_eq!(u.caps.permitted, 1 << CAP_NET_BIND_SERVICE);
    }

    #[test]
    fn names() {
        assert_eq!(cap_by_name("CAP_CHOWN"), Some(0));
        assert_eq!(cap_by_name("net_bind_service"), Some(10));
        assert_eq!(cap_by_name("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_by_name("CAP_NOPE"), None);
        assert!(CapSets::full().is_valid());
        let bad = CapSets {
            effective: 1,
            ..CapSets::none()
        };
        assert!(!bad.is_valid());
    }
}
