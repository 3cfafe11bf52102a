//! Extended attributes: the checks every file system shares (Linux's
//! fs/xattr.c: xattr_permission, the name and size limits), in front of
//! each inode's own store ([`super::Inode::get_xattr`] and friends).
//!
//! tmpfs (and so /dev/shm and the overlay's upper layer) stores user.*,
//! trusted.* and security.* attributes in its nodes, saved with them;
//! host files through the gofer have none (EOPNOTSUPP), and a file of the
//! overlay not yet copied up shows none (the gofer has no xattr op).

use std::sync::Arc;

use super::dentry::Dentry;
use super::inode::Inode;
use super::perm;
use crate::errno::Errno;

/// Linux's XATTR_NAME_MAX.
pub const XATTR_NAME_MAX: usize = 255;
/// Linux's XATTR_SIZE_MAX: the largest value, and the largest list.
pub const XATTR_SIZE_MAX: usize = 65536;

/// The namespaces a name may be in, as Linux knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Namespace {
    User,
    Trusted,
    Security,
    /// system.* (POSIX ACLs): no file system here stores them.
    System,
}

fn namespace(name: &[u8]) -> Result<Namespace, Errno> {
    for (prefix, ns) in [
        (&b"user."[..], Namespace::User),
        (b"trusted.", Namespace::Trusted),
        (b"security.", Namespace::Security),
        (b"system.", Namespace::System),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            // A bare prefix is no name (Linux: EINVAL from the handler).
            if rest.is_empty() {
                return Err(Errno::EINVAL);
            }
            return Ok(ns);
        }
    }
    Err(Errno::EOPNOTSUPP)
}

/// Whether a name read from a statefile is one setxattr could have made.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= XATTR_NAME_MAX
        && !name.contains(&0)
        && matches!(
            namespace(name),
            Ok(Namespace::User | Namespace::Trusted | Namespace::Security)
        )
}

/// A name argument's length check (strncpy_from_user of
/// XATTR_NAME_MAX + 1, then an empty name): ERANGE.
pub fn check_name_len(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    Ok(())
}

/// The file an xattr call acts on: a dentry's, or the inode of an open
/// file that has none (a pipe).
pub struct Target<'a> {
    pub inode: &'a Arc<dyn Inode>,
    pub dentry: Option<&'a Arc<Dentry>>,
}

impl<'a> Target<'a> {
    pub fn of(d: &'a Arc<Dentry>) -> Target<'a> {
        Target {
            inode: d.inode(),
            dentry: Some(d),
        }
    }

    fn read_only(&self) -> bool {
        self.dentry.is_some_and(|d| d.mount().read_only())
    }

    fn changed(&self) {
        if let Some(d) = self.dentry {
            super::inotify::notify(d, super::inotify::IN_ATTRIB);
        }
    }
}

/// xattr_permission: trusted.* needs CAP_SYS_ADMIN (reading without it
/// finds nothing), user.* lives only on regular files and directories
/// (elsewhere: EPERM to write, ENODATA to read) and needs the file's
/// read or write permission, as does security.* writing.
fn permission(d: &Target<'_>, ns: Namespace, write: bool) -> Result<(), Errno> {
    if write && d.read_only() {
        return Err(Errno::EROFS);
    }
    match ns {
        Namespace::System => return Err(Errno::EOPNOTSUPP),
        Namespace::Trusted => {
            if !perm::current_capable(crate::kernel::creds::CAP_SYS_ADMIN) {
                return Err(if write { Errno::EPERM } else { Errno::ENODATA });
            }
            return Ok(());
        }
        Namespace::User => {
            if !matches!(d.inode.file_type(), libc::S_IFREG | libc::S_IFDIR) {
                return Err(if write { Errno::EPERM } else { Errno::ENODATA });
            }
        }
        // Reading is open to all; writing is CAP_SYS_ADMIN's (the
        // capability LSM's cap_inode_setxattr).
        Namespace::Security if !write => return Ok(()),
        Namespace::Security => {
            if !perm::current_capable(crate::kernel::creds::CAP_SYS_ADMIN) {
                return Err(Errno::EPERM);
            }
        }
    }
    let want = if write {
        perm::MAY_WRITE
    } else {
        perm::MAY_READ
    };
    perm::check(d.inode.as_ref(), want)
}

/// getxattr(2) of the file `d` names.
pub fn get(d: &Target<'_>, name: &[u8]) -> Result<Vec<u8>, Errno> {
    check_name_len(name)?;
    let ns = namespace(name)?;
    permission(d, ns, false)?;
    d.inode.get_xattr(name)
}

/// setxattr(2); `flags` already checked to be XATTR_CREATE and/or
/// XATTR_REPLACE, the value at most XATTR_SIZE_MAX.
pub fn set(d: &Target<'_>, name: &[u8], value: &[u8], flags: i32) -> Result<(), Errno> {
    check_name_len(name)?;
    let ns = namespace(name)?;
    permission(d, ns, true)?;
    d.inode.set_xattr(name, value, flags)?;
    d.changed();
    Ok(())
}

/// removexattr(2).
pub fn remove(d: &Target<'_>, name: &[u8]) -> Result<(), Errno> {
    check_name_len(name)?;
    let ns = namespace(name)?;
    permission(d, ns, true)?;
    d.inode.remove_xattr(name)?;
    d.changed();
    Ok(())
}

/// listxattr(2): the names the caller may see, each NUL-terminated
/// (trusted.* only for CAP_SYS_ADMIN). No read permission is needed.
pub fn list(d: &Target<'_>) -> Result<Vec<u8>, Errno> {
    let names = match d.inode.list_xattr() {
        // A file with no store lists nothing (pipes, sockets, devices).
        Err(Errno::EOPNOTSUPP) => Vec::new(),
        r => r?,
    };
    let root = perm::current_capable(crate::kernel::creds::CAP_SYS_ADMIN);
    let mut out = Vec::new();
    for n in names {
        if n.starts_with(b"trusted.") && !root {
            continue;
        }
        out.extend_from_slice(&n);
        out.push(0);
    }
    Ok(out)
}
