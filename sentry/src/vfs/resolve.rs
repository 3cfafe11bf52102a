//! Path resolution (gVisor's vfs.ResolvingPath, Linux's namei): the Sentry
//! walks every path itself, one name at a time, over its dentry tree.

use std::sync::Arc;

use super::dentry::Dentry;
use super::vfs::Vfs;
use crate::errno::Errno;

/// Linux's PATH_MAX, counting the terminating NUL.
pub const PATH_MAX: usize = 4096;
/// Linux's NAME_MAX.
pub const NAME_MAX: usize = 255;
/// Linux's MAXSYMLINKS: following one more is ELOOP.
pub const MAX_SYMLINKS: u32 = 40;

/// The last component of a path, split off for operations that create or
/// remove a name.
#[derive(Debug)]
pub struct ParentAndName {
    pub parent: Arc<Dentry>,
    /// Empty when the path names the start itself (`/`).
    pub name: Vec<u8>,
    /// The path ended in `/`.
    pub trailing_slash: bool,
}

impl ParentAndName {
    /// Whether the name is `.`, `..` or empty: names that cannot be created
    /// or removed.
    pub fn is_special(&self) -> bool {
        matches!(self.name.as_slice(), b"" | b"." | b"..")
    }
}

fn check_path(path: &[u8]) -> Result<(), Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

impl Vfs {
    /// Resolves `path` from `start` (the cwd or a dirfd) or from the root
    /// if absolute. `follow_last` follows a final symlink (a trailing slash
    /// always does, and then requires a directory).
    pub fn resolve(&self, start: &Arc<Dentry>, path: &[u8], follow_last: bool) -> Result<Arc<Dentry>, Errno> {
        check_path(path)?;
        let mut links = 0;
        self.walk(start, path, follow_last, &mut links)
    }

    /// Resolves all but the last component of `path`.
    pub fn resolve_parent(&self, start: &Arc<Dentry>, path: &[u8]) -> Result<ParentAndName, Errno> {
        check_path(path)?;
        let trailing_slash = path.ends_with(b"/");
        let trimmed = {
            let mut end = path.len();
            while end > 0 && path[end - 1] == b'/' {
                end -= 1;
            }
            &path[..end]
        };
        let (dir, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut links = 0;
        let parent = if !dir.is_empty() {
            self.walk(start, dir, true, &mut links)?
        } else if path.starts_with(b"/") {
            self.root().clone()
        } else {
            start.clone()
        };
        if !parent.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(ParentAndName {
            parent,
            name: name.to_vec(),
            trailing_slash,
        })
    }

    pub(crate) fn walk(&self, start: &Arc<Dentry>, path: &[u8], follow_last: bool, links: &mut u32) -> Result<Arc<Dentry>, Errno> {
        let trailing_slash = path.ends_with(b"/");
        let mut cur = if path.starts_with(b"/") {
            self.root().clone()
        } else {
            start.clone()
        };
        let names: Vec<&[u8]> = components(path).collect();
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            if !cur.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            let next = self.step(&cur, name)?;
            if next.is_symlink() && (!last || follow_last || trailing_slash) {
                cur = self.follow(&cur, next, last, links)?;
            } else {
                cur = next;
            }
        }
        if trailing_slash && !cur.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(cur)
    }

    /// Follows the symlink `link`, found in directory `dir`.
    fn follow(&self, dir: &Arc<Dentry>, link: Arc<Dentry>, last: bool, links: &mut u32) -> Result<Arc<Dentry>, Errno> {
        *links += 1;
        if *links > MAX_SYMLINKS {
            return Err(Errno::ELOOP);
        }
        if let Some(file) = link.inode().magic_target() {
            // A /proc/<pid>/fd link goes to the open file itself. A file
            // without a name (a pipe, host stdio) can only be the last
            // component; open_at then opens it from the link.
            return match file.dentry() {
                Some(d) => Ok(d.clone()),
                None if last => Ok(link),
                None => Err(Errno::ENOTDIR),
            };
        }
        let target = link.inode().readlink()?;
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        check_path(&target)?;
        self.walk(dir, &target, true, links)
    }

    /// One name down (or up) from directory `cur`, crossing mounts.
    fn step(&self, cur: &Arc<Dentry>, name: &[u8]) -> Result<Arc<Dentry>, Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        match name {
            b"." => Ok(cur.clone()),
            b".." => Ok(self.parent_of(cur)),
            _ => {
                let mut d = cur.child(name)?;
                while let Some(root) = d.mounted() {
                    d = root;
                }
                Ok(d)
            }
        }
    }

    /// `..` of `d`: never above the VFS root; from the root of a mount, the
    /// parent of the dentry it covers.
    pub fn parent_of(&self, d: &Arc<Dentry>) -> Arc<Dentry> {
        let mut d = d.clone();
        loop {
            if Arc::ptr_eq(&d, self.root()) {
                return d;
            }
            if let Some(p) = d.parent() {
                return p;
            }
            match d.mountpoint() {
                Some(mp) => d = mp,
                // Unlinked with its parent gone: stay put, as at a root.
                None => return d,
            }
        }
    }
}
