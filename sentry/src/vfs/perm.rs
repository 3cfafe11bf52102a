//! Discretionary access control: Linux's generic_permission, the sticky
//! directory rule and the owner checks of chmod and utimes.
//!
//! The credentials checked are those of the task making the current call,
//! noted by the syscall dispatcher on the task's host thread (each task
//! runs on its own thread). Kernel work outside any syscall (boot,
//! restore, a checkpoint walking the file systems) has no task and runs
//! as root, which may do anything the checks allow root.
//!
//! Root (effective uid 0) holds CAP_DAC_OVERRIDE and CAP_FOWNER, as in a
//! Linux user namespace of its own: it reads and writes every file and
//! searches every directory, but executes only a file with an execute bit.

use std::cell::RefCell;

use super::inode::Inode;
use super::stat::{Stat, Timespec};
use crate::errno::Errno;

pub const MAY_EXEC: u32 = 1;
pub const MAY_WRITE: u32 = 2;
pub const MAY_READ: u32 = 4;

/// The ids file access is checked against: the effective user and group
/// and the supplementary groups (Linux's fsuid and fsgid follow the
/// effective ids; setfsuid(2) is not offered).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsCreds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

thread_local! {
    static CURRENT: RefCell<FsCreds> = RefCell::new(FsCreds::default());
}

/// Notes whose calls this host thread makes (at each syscall). The
/// supplementary groups are copied only when they changed.
pub fn note_current(uid: u32, gid: u32, groups: &[u32]) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.uid = uid;
        c.gid = gid;
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

/// Whether the current caller is root (CAP_FOWNER, CAP_DAC_OVERRIDE).
pub fn current_is_root() -> bool {
    with_current(|c| c.uid == 0)
}

/// generic_permission for `creds`: `want` (MAY_* bits) against a file's
/// mode and owner.
pub fn allowed(creds: &FsCreds, st: &Stat, want: u32) -> bool {
    if creds.uid == 0 {
        let is_dir = st.mode & libc::S_IFMT == libc::S_IFDIR;
        return want & MAY_EXEC == 0 || is_dir || st.mode & 0o111 != 0;
    }
    let bits = if creds.uid == st.uid {
        st.mode >> 6
    } else if creds.gid == st.gid || creds.groups.contains(&st.gid) {
        st.mode >> 3
    } else {
        st.mode
    } & 7;
    want & !bits == 0
}

/// Checks `want` on `inode` for the current caller: EACCES when refused.
/// Root's reads, writes and directory searches need no stat.
pub fn check(inode: &dyn Inode, want: u32) -> Result<(), Errno> {
    let root_needs_no_look = with_current(|c| {
        c.uid == 0 && (want & MAY_EXEC == 0 || inode.file_type() == libc::S_IFDIR)
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
/// or of the directory, or root, may (EPERM otherwise).
pub fn may_delete(dir: &dyn Inode, victim: &dyn Inode) -> Result<(), Errno> {
    check(dir, MAY_WRITE | MAY_EXEC)?;
    if current_is_root() {
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
/// caller may read and write (EPERM otherwise).
pub fn may_link(target: &dyn Inode) -> Result<(), Errno> {
    if current_is_root() {
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

/// chmod(2): the owner or root (EPERM), a set-group-ID bit dropped when
/// the file's group is not one of a non-root caller's.
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

/// utimensat(2): explicit times need the owner or root (EPERM); setting
/// them to now, write permission too (EACCES).
pub fn set_times(inode: &dyn Inode, t: NewTimes) -> Result<(), Errno> {
    match check_owner(inode) {
        Ok(()) => {}
        Err(e) if t.explicit => return Err(e),
        Err(_) => check(inode, MAY_WRITE)?,
    }
    inode.set_times(t.atime, t.mtime)
}

/// chmod and setting explicit times: the file's owner or root (EPERM).
pub fn check_owner(inode: &dyn Inode) -> Result<(), Errno> {
    if current_is_root() {
        return Ok(());
    }
    let st = inode.stat()?;
    if with_current(|c| c.uid == st.uid) {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// The set-group-ID bit a chmod by a non-root caller keeps: cleared when
/// the file's group is not one of the caller's (Linux's inode_change_ok).
fn chmod_mode(inode: &dyn Inode, mode: u32) -> Result<u32, Errno> {
    if mode & libc::S_ISGID == 0 || current_is_root() {
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
}
