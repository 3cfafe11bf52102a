//! Discretionary access control: Linux's generic_permission, the sticky
//! directory rule and the owner checks of chmod and utimes.
//!
//! The credentials checked are those of the task making the current call,
//! noted by the syscall dispatcher on the task's host thread (each task
//! runs on its own thread). Kernel work outside any syscall (boot,
//! restore, a checkpoint walking the file systems) has no task and runs
//! as root, which may do anything the checks allow root.
//!
//! Privilege is the caller's effective capabilities, checked where Linux
//! checks them: CAP_DAC_OVERRIDE reads and writes every file and searches
//! every directory, but executes only a file with an execute bit;
//! CAP_DAC_READ_SEARCH reads every file and searches every directory;
//! CAP_FOWNER stands for the owner (chmod, utimes, sticky directories,
//! hard links); CAP_FSETID keeps a set-group-ID bit.

use std::cell::RefCell;

use super::inode::Inode;
use super::stat::{Stat, Timespec};
use crate::errno::Errno;
use crate::kernel::creds::{
    ALL_CAPS, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
};

pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

/// The ids file access is checked against: the effective user and group
/// and the supplementary groups (Linux's fsuid and fsgid follow the
/// effective ids; setfsuid(2) is not offered), and the effective
/// capabilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsCreds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub caps: u64,
}

impl Default for FsCreds {
    /// The kernel's own work: root with every capability.
    fn default() -> FsCreds {
        FsCreds {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            caps: ALL_CAPS,
        }
    }
}

impl FsCreds {
    pub fn capable(&self, cap: u32) -> bool {
        cap < 64 && self.caps & (1 << cap) != 0
    }
}

thread_local! {
    static CURRENT: RefCell<FsCreds> = RefCell::new(FsCreds::default());
}

/// Notes whose calls this host thread makes (at each syscall). The
/// supplementary groups are copied only when they changed.
pub fn note_current(uid: u32, gid: u32, groups: &[u32], caps: u64) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.uid = uid;
        c.gid = gid;
        c.caps = caps;
        if c.groups != groups {
            c.groups = groups.to_vec();
        }
    });
}

fn with_current<R>(f: impl FnOnce(&FsCreds) -> R) -> R {
    CURRENT.with(|c| f(&c.borrow()))
}

/// The current caller's (uid, gid): the owner of what it creates.
pub fn current_ids() -> (u32, u32) {
    with_current(|c| (c.uid, c.gid))
}

/// Runs `f` with `creds` as the current caller's (access(2) checks with
/// the real ids).
pub fn as_creds<R>(creds: FsCreds, f: impl FnOnce() -> R) -> R {
    let saved = CURRENT.with(|c| c.replace(creds));
    let r = f();
    CURRENT.with(|c| c.replace(saved));
    r
}

/// Whether the current caller holds capability `cap`.
pub fn current_capable(cap: u32) -> bool {
    with_current(|c| c.capable(cap))
}

/// generic_permission for `creds`: `want` (MAY_* bits) against a file's
/// mode and owner, then the capabilities that override a refusal.
pub fn allowed(creds: &FsCreds, st: &Stat, want: u32) -> bool {
    let bits = if creds.uid == st.uid {
        st.mode >> 6
    } else if creds.gid == st.gid || creds.groups.contains(&st.gid) {
        st.mode >> 3
    } else {
        st.mode
    } & 7;
    if want & !bits == 0 {
        return true;
    }
    if st.mode & libc::S_IFMT == libc::S_IFDIR {
        // Directories: reading and searching is CAP_DAC_READ_SEARCH's,
        // everything CAP_DAC_OVERRIDE's.
        return (want & MAY_WRITE == 0 && creds.capable(CAP_DAC_READ_SEARCH))
            || creds.capable(CAP_DAC_OVERRIDE);
    }
    let want = want & (MAY_READ | MAY_WRITE | MAY_EXEC);
    if want == MAY_READ && creds.capable(CAP_DAC_READ_SEARCH) {
        return true;
    }
    // Executing needs at least one execute bit, even with the capability.
    (want & MAY_EXEC == 0 || st.mode & 0o111 != 0) && creds.capable(CAP_DAC_OVERRIDE)
}

/// Checks `want` on `inode` for the current caller: EACCES when refused.
/// With CAP_DAC_OVERRIDE, reads, writes and directory searches need no
/// stat.
pub fn check(inode: &dyn Inode, want: u32) -> Result<(), Errno> {
    let root_needs_no_look = with_current(|c| {
        c.capable(CAP_DAC_OVERRIDE) && (want & MAY_EXEC == 0 || inode.file_type() == libc::S_IFDIR)
    });
    if root_needs_no_look {
        return Ok(());
    }
    check_stat(&inode.stat()?, want)
}

/// [`check`] against attributes already at hand.
pub fn check_stat(st: &Stat, want: u32) -> Result<(), Errno> {
    if with_current(|c| allowed(c, st, want)) {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// Removing or renaming `victim` out of `dir`: write and search on the
/// directory, and in a sticky directory (/tmp) only the owner of the file
/// or of the directory, or CAP_FOWNER, may (EPERM otherwise).
pub fn may_delete(dir: &dyn Inode, victim: &dyn Inode) -> Result<(), Errno> {
    check(dir, MAY_WRITE | MAY_EXEC)?;
    if current_capable(CAP_FOWNER) {
        return Ok(());
    }
    let d = dir.stat()?;
    if d.mode & libc::S_ISVTX == 0 {
        return Ok(());
    }
    let v = victim.stat()?;
    let uid = with_current(|c| c.uid);
    if uid == v.uid || uid == d.uid {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// A hard link to a file the caller does not own (fs.protected_hardlinks,
/// on in Debian and most distributions): only to a regular file that is
/// not set-user-ID, nor set-group-ID and group-executable, and that the
/// caller may read and write (EPERM otherwise); CAP_FOWNER links any.
pub fn may_link(target: &dyn Inode) -> Result<(), Errno> {
    if current_capable(CAP_FOWNER) {
        return Ok(());
    }
    let st = target.stat()?;
    let (uid, _) = current_ids();
    if uid == st.uid {
        return Ok(());
    }
    let regular = st.mode & libc::S_IFMT == libc::S_IFREG;
    let setid = st.mode & libc::S_ISUID != 0
        || st.mode & (libc::S_ISGID | libc::S_IXGRP) == (libc::S_ISGID | libc::S_IXGRP);
    let rw = with_current(|c| allowed(c, &st, MAY_READ | MAY_WRITE));
    if regular && !setid && rw {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// chmod(2): the owner or CAP_FOWNER (EPERM), a set-group-ID bit dropped
/// when the file's group is not one of the caller's and it lacks
/// CAP_FSETID.
pub fn chmod(inode: &dyn Inode, mode: u32) -> Result<(), Errno> {
    check_owner(inode)?;
    inode.chmod(chmod_mode(inode, mode)?)
}

/// The times utimensat(2) sets (None: UTIME_OMIT), and whether any was
/// given explicitly (not "now").
#[derive(Clone, Copy, Debug)]
pub struct NewTimes {
    pub atime: Option<Timespec>,
    pub mtime: Option<Timespec>,
    pub explicit: bool,
}

/// utimensat(2): explicit times need the owner or CAP_FOWNER (EPERM); setting
/// them to now, write permission too (EACCES).
pub fn set_times(inode: &dyn Inode, t: NewTimes) -> Result<(), Errno> {
    match check_owner(inode) {
        Ok(()) => {}
        Err(e) if t.explicit => return Err(e),
        Err(_) => check(inode, MAY_WRITE)?,
    }
    inode.set_times(t.atime, t.mtime)
}

/// chmod and setting explicit times: the file's owner or CAP_FOWNER
/// (EPERM; Linux's inode_owner_or_capable).
pub fn check_owner(inode: &dyn Inode) -> Result<(), Errno> {
    if current_capable(CAP_FOWNER) {
        return Ok(());
    }
    let st = inode.stat()?;
    if with_current(|c| c.uid == st.uid) {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// The set-group-ID bit a chmod keeps: cleared when the file's group is
/// not one of the caller's and it lacks CAP_FSETID (Linux's
/// in_group_or_capable).
fn chmod_mode(inode: &dyn Inode, mode: u32) -> Result<u32, Errno> {
    if mode & libc::S_ISGID == 0 || current_capable(CAP_FSETID) {
        return Ok(mode);
    }
    let st = inode.stat()?;
    let in_group = with_current(|c| c.gid == st.gid || c.groups.contains(&st.gid));
    Ok(if in_group {
        mode
    } else {
        mode & !libc::S_ISGID
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mode: u32, uid: u32, gid: u32) -> Stat {
        Stat {
            mode,
            uid,
            gid,
            ..Stat::default()
        }
    }

    #[test]
    fn owner_group_and_other_bits() {
        let user = FsCreds {
            uid: 1000,
            gid: 100,
            groups: vec![27],
            caps: 0,
        };
        let f = stat(libc::S_IFREG | 0o640, 1000, 50);
        assert!(allowed(&user, &f, MAY_READ | MAY_WRITE));
        assert!(!allowed(&user, &f, MAY_EXEC));
        let g = stat(libc::S_IFREG | 0o640, 0, 27);
        assert!(allowed(&user, &g, MAY_READ), "a supplementary group");
        assert!(!allowed(&user, &g, MAY_WRITE));
        let o = stat(libc::S_IFREG | 0o604, 0, 0);
        assert!(allowed(&user, &o, MAY_READ));
        // The owner's bits decide for the owner, even when others may.
        let self_denied = stat(libc::S_IFREG | 0o077, 1000, 100);
        assert!(!allowed(&user, &self_denied, MAY_READ));
    }

    #[test]
    fn root_reads_and_writes_all_but_executes_only_with_a_bit() {
        let root = FsCreds::default();
        let f = stat(libc::S_IFREG, 1000, 1000);
        assert!(allowed(&root, &f, MAY_READ | MAY_WRITE));
        assert!(!allowed(&root, &f, MAY_EXEC));
        assert!(allowed(&root, &stat(libc::S_IFREG | 0o001, 5, 5), MAY_EXEC));
        assert!(allowed(&root, &stat(libc::S_IFDIR, 5, 5), MAY_EXEC));
    }

    #[test]
    fn read_search_reads_and_searches_but_does_not_write() {
        let rs = FsCreds {
            uid: 1000,
            gid: 1000,
            groups: vec![],
            caps: 1 << CAP_DAC_READ_SEARCH,
        };
        let f = stat(libc::S_IFREG | 0o600, 0, 0);
        assert!(allowed(&rs, &f, MAY_READ));
        assert!(!allowed(&rs, &f, MAY_WRITE));
        let d = stat(libc::S_IFDIR | 0o700, 0, 0);
        assert!(allowed(&rs, &d, MAY_READ | MAY_EXEC));
        assert!(!allowed(&rs, &d, MAY_WRITE | MAY_EXEC));
        // Root without the capabilities is refused like anyone else.
        let powerless_root = FsCreds {
            caps: 0,
            ..FsCreds::default()
        };
        let other = stat(libc::S_IFREG | 0o600, 1000, 1000);
        assert!(!allowed(&powerless_root, &other, MAY_READ));
    }
}
