//! Path resolution (gVisor's vfs.ResolvingPath, Linux's namei): the Sentry
//! walks every path itself, one name at a time, over its dentry tree.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use super::dentry::Dentry;
use super::vfs::Vfs;
use crate::errno::Errno;

/// Linux's PATH_MAX, counting the terminating NUL.
pub const PATH_MAX: usize = 4096;
/// Linux's NAME_MAX.
pub const NAME_MAX: usize = 255;
/// Linux's MAXSYMLINKS: following one more is ELOOP.
pub const MAX_SYMLINKS: u32 = 40;

thread_local! {
    /// The root of the task whose call this host thread runs (chroot(2)):
    /// absolute paths start there and `..` stops there. Weak, so that a
    /// host thread never keeps a directory (or a mount) busy.
    static TASK_ROOT: RefCell<Weak<Dentry>> = const { RefCell::new(Weak::new()) };
}

/// Notes the root of the task whose calls this host thread makes (at each
/// syscall; cheap when it did not change).
pub fn note_root(root: &Arc<Dentry>) {
    TASK_ROOT.with(|r| {
        let mut r = r.borrow_mut();
        if !std::ptr::eq(r.as_ptr(), Arc::as_ptr(root)) {
            *r = Arc::downgrade(root);
        }
    });
}

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

/// The most names looked up ahead of the one a walk is at.
const MAX_LOOKAHEAD: usize = 31;

/// The names after the current one that a lookup may take along: the
/// plain names up to the first `.`, `..` or over-long one.
fn lookahead<'a, 'b>(rest: &'a [&'b [u8]]) -> &'a [&'b [u8]] {
    let n = rest
        .iter()
        .take(MAX_LOOKAHEAD)
        .take_while(|c| !matches!(**c, b"." | b"..") && c.len() <= NAME_MAX)
        .count();
    &rest[..n]
}

impl Vfs {
    /// The root of the calling task (the namespace's top outside a call).
    pub fn current_root(&self) -> Arc<Dentry> {
        TASK_ROOT
            .with(|r| r.borrow().upgrade())
            .unwrap_or_else(|| self.root())
    }

    /// Resolves `path` from `start` (the cwd or a dirfd) or from the root
    /// if absolute. `follow_last` follows a final symlink (a trailing slash
    /// always does, and then requires a directory).
    pub fn resolve(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        follow_last: bool,
    ) -> Result<Arc<Dentry>, Errno> {
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
            self.current_root()
        } else {
            start.clone()
        };
        if !parent.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        super::perm::check(parent.inode().as_ref(), super::perm::MAY_EXEC)?;
        Ok(ParentAndName {
            parent,
            name: name.to_vec(),
            trailing_slash,
        })
    }

    pub(crate) fn walk(
        &self,
        start: &Arc<Dentry>,
        path: &[u8],
        follow_last: bool,
        links: &mut u32,
    ) -> Result<Arc<Dentry>, Errno> {
        let trailing_slash = path.ends_with(b"/");
        let mut cur = if path.starts_with(b"/") {
            self.current_root()
        } else {
            start.clone()
        };
        let names: Vec<&[u8]> = components(path).collect();
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            if !cur.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            super::perm::check(cur.inode().as_ref(), super::perm::MAY_EXEC)?;
            let next = self.step(&cur, name, lookahead(&names[i + 1..]))?;
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
    fn follow(
        &self,
        dir: &Arc<Dentry>,
        link: Arc<Dentry>,
        last: bool,
        links: &mut u32,
    ) -> Result<Arc<Dentry>, Errno> {
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

    /// One name down (or up) from directory `cur`, crossing mounts; `ahead`
    /// are the plain names that follow it in the path, looked up with it
    /// if it is not cached (one gofer round trip for a whole host path).
    fn step(&self, cur: &Arc<Dentry>, name: &[u8], ahead: &[&[u8]]) -> Result<Arc<Dentry>, Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        match name {
            b"." => Ok(cur.clone()),
            b".." => Ok(self.parent_of(cur)),
            _ => {
                let mut d = cur.child_ahead(name, ahead)?;
                while let Some(root) = d.mounted() {
                    d = root;
                }
                Ok(d)
            }
        }
    }

    /// `..` of `d`: never above the task's root or the namespace's top;
    /// from the root of a mount, the parent of the dentry it covers.
    pub fn parent_of(&self, d: &Arc<Dentry>) -> Arc<Dentry> {
        let (root, top) = (self.current_root(), &self.root());
        let mut d = d.clone();
        loop {
            if Arc::ptr_eq(&d, &root) || Arc::ptr_eq(&d, top) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vfs::testing::FixedClock;
    use crate::vfs::tmpfs::Tmpfs;
    use crate::vfs::vfs::MountOpts;

    pub(crate) fn tmpfs_vfs() -> Vfs {
        let fs = Tmpfs::new(Arc::new(FixedClock(100)), 0o755);
        Vfs::new(
            fs.root(),
            MountOpts {
                fs_type: "tmpfs",
                read_only: false,
            },
        )
    }

    fn path(vfs: &Vfs, p: &[u8]) -> Result<String, Errno> {
        let r = vfs.root().clone();
        vfs.resolve(&r, p, true).map(|d| vfs.dentry_path(&d))
    }

    fn setup() -> Vfs {
        let vfs = tmpfs_vfs();
        let r = vfs.root().clone();
        vfs.mkdir_at(&r, b"/a", 0o755).unwrap();
        vfs.mkdir_at(&r, b"/a/b", 0o755).unwrap();
        vfs.open_at(&r, b"/a/f", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        vfs.symlink_at(b"b", &r, b"/a/lb").unwrap();
        vfs.symlink_at(b"/a/f", &r, b"/a/lf").unwrap();
        vfs.symlink_at(b"../..", &r, b"/a/b/up").unwrap();
        vfs.symlink_at(b"loop1", &r, b"/loop2").unwrap();
        vfs.symlink_at(b"loop2", &r, b"/loop1").unwrap();
        vfs.symlink_at(b"nowhere", &r, b"/dangling").unwrap();
        vfs
    }

    #[test]
    fn dots_and_absolute() {
        let vfs = setup();
        assert_eq!(path(&vfs, b"/").unwrap(), "/");
        assert_eq!(path(&vfs, b"/a/./b/..").unwrap(), "/a");
        assert_eq!(
            path(&vfs, b"/../../a").unwrap(),
            "/a",
            ".. never above the root"
        );
        assert_eq!(path(&vfs, b"//a//b/").unwrap(), "/a/b");
        let a = vfs.resolve(&vfs.root(), b"/a", true).unwrap();
        assert_eq!(
            vfs.dentry_path(&vfs.resolve(&a, b"b/..", true).unwrap()),
            "/a"
        );
        assert_eq!(vfs.dentry_path(&vfs.resolve(&a, b"..", true).unwrap()), "/");
        assert_eq!(path(&vfs, b""), Err(Errno::ENOENT));
        assert_eq!(path(&vfs, b"/nope"), Err(Errno::ENOENT));
    }

    #[test]
    fn symlinks() {
        let vfs = setup();
        assert_eq!(path(&vfs, b"/a/lb").unwrap(), "/a/b");
        assert_eq!(path(&vfs, b"/a/lb/up").unwrap(), "/");
        assert_eq!(path(&vfs, b"/a/lf").unwrap(), "/a/f");
        let r = vfs.root().clone();
        let l = vfs.resolve(&r, b"/a/lf", false).unwrap();
        assert!(l.is_symlink());
        assert_eq!(vfs.readlink_at(&r, b"/a/lf").unwrap(), b"/a/f");
        assert_eq!(vfs.readlink_at(&r, b"/a/f"), Err(Errno::EINVAL));
        assert_eq!(path(&vfs, b"/loop1"), Err(Errno::ELOOP));
        assert_eq!(path(&vfs, b"/dangling"), Err(Errno::ENOENT));
        // A chain of 40 links resolves; 41 is too many.
        for i in 0..41 {
            let target = if i == 0 {
                b"/a".to_vec()
            } else {
                format!("/c{}", i - 1).into_bytes()
            };
            vfs.symlink_at(&target, &r, format!("/c{i}").as_bytes())
                .unwrap();
        }
        assert_eq!(path(&vfs, b"/c39").unwrap(), "/a");
        assert_eq!(path(&vfs, b"/c40"), Err(Errno::ELOOP));
    }

    #[test]
    fn notdir_trailing_slash_and_lengths() {
        let vfs = setup();
        assert_eq!(path(&vfs, b"/a/f/x"), Err(Errno::ENOTDIR));
        assert_eq!(path(&vfs, b"/a/f/"), Err(Errno::ENOTDIR));
        assert_eq!(path(&vfs, b"/a/f/."), Err(Errno::ENOTDIR));
        assert_eq!(path(&vfs, b"/a/lf/"), Err(Errno::ENOTDIR));
        assert_eq!(path(&vfs, b"/a/lb/").unwrap(), "/a/b");
        let r = vfs.root().clone();
        // A trailing slash follows a final symlink even with nofollow.
        assert!(vfs.resolve(&r, b"/a/lb/", false).unwrap().is_dir());
        let long = vec![b'x'; 256];
        assert_eq!(
            vfs.resolve(&r, &long, true).err(),
            Some(Errno::ENAMETOOLONG)
        );
        let deep = b"/a".repeat(2100);
        assert_eq!(
            vfs.resolve(&r, &deep, true).err(),
            Some(Errno::ENAMETOOLONG)
        );
        assert_eq!(vfs.mkdir_at(&r, &long, 0o755), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn create_ops_and_errors() {
        let vfs = setup();
        let r = vfs.root().clone();
        assert_eq!(vfs.mkdir_at(&r, b"/a", 0o755), Err(Errno::EEXIST));
        assert_eq!(vfs.mkdir_at(&r, b"/", 0o755), Err(Errno::EEXIST));
        assert_eq!(vfs.mkdir_at(&r, b"/x/y", 0o755), Err(Errno::ENOENT));
        assert_eq!(vfs.mkdir_at(&r, b"/a/f/y", 0o755), Err(Errno::ENOTDIR));
        vfs.mkdir_at(&r, b"/new/", 0o700).unwrap();
        assert_eq!(
            vfs.stat_at(&r, b"/new", true).unwrap().mode,
            libc::S_IFDIR | 0o700
        );
        assert_eq!(
            vfs.open_at(&r, b"/a/f", libc::O_CREAT | libc::O_EXCL, 0o600)
                .err(),
            Some(Errno::EEXIST)
        );
        assert_eq!(
            vfs.open_at(&r, b"/a/g/", libc::O_CREAT, 0o600).err(),
            Some(Errno::EISDIR)
        );
        assert_eq!(
            vfs.open_at(&r, b"/a", libc::O_WRONLY, 0).err(),
            Some(Errno::EISDIR)
        );
        assert_eq!(
            vfs.open_at(&r, b"/a/f", libc::O_DIRECTORY, 0).err(),
            Some(Errno::ENOTDIR)
        );
        assert_eq!(
            vfs.open_at(&r, b"/a/lf", libc::O_NOFOLLOW, 0).err(),
            Some(Errno::ELOOP)
        );
        assert!(vfs
            .open_at(&r, b"/a/lf", libc::O_NOFOLLOW | libc::O_PATH, 0)
            .is_ok());
        // O_CREAT through a dangling link creates its target.
        vfs.open_at(&r, b"/dangling", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        assert!(vfs.stat_at(&r, b"/nowhere", false).is_ok());
        assert_eq!(vfs.unlink_at(&r, b"/a", 0), Err(Errno::EISDIR));
        assert_eq!(
            vfs.unlink_at(&r, b"/a/f", libc::AT_REMOVEDIR),
            Err(Errno::ENOTDIR)
        );
        assert_eq!(
            vfs.unlink_at(&r, b"/a", libc::AT_REMOVEDIR),
            Err(Errno::ENOTEMPTY)
        );
        assert_eq!(
            vfs.unlink_at(&r, b"/a/.", libc::AT_REMOVEDIR),
            Err(Errno::EINVAL)
        );
        assert_eq!(vfs.unlink_at(&r, b"/a/f/", 0), Err(Errno::ENOTDIR));
        vfs.unlink_at(&r, b"/a/b/up", 0).unwrap();
        vfs.unlink_at(&r, b"/a/b", libc::AT_REMOVEDIR).unwrap();
        assert_eq!(path(&vfs, b"/a/b"), Err(Errno::ENOENT));
        assert_eq!(
            vfs.access_at(&r, b"/a/f", libc::X_OK, true, Default::default()),
            Err(Errno::EACCES)
        );
        assert_eq!(
            vfs.access_at(
                &r,
                b"/a/f",
                libc::R_OK | libc::W_OK,
                true,
                Default::default()
            ),
            Ok(())
        );
        assert_eq!(
            vfs.access_at(&r, b"/zz", libc::F_OK, true, Default::default()),
            Err(Errno::ENOENT)
        );
    }

    #[test]
    fn cwd_of_removed_dir_and_mounts() {
        let vfs = setup();
        let r = vfs.root().clone();
        vfs.mkdir_at(&r, b"/gone", 0o755).unwrap();
        let cwd = vfs.lookup_dir(&r, b"/gone").unwrap();
        vfs.unlink_at(&r, b"/gone", libc::AT_REMOVEDIR).unwrap();
        assert_eq!(vfs.dentry_path(&cwd), "/gone (deleted)");
        assert_eq!(
            vfs.open_at(&cwd, b"x", libc::O_CREAT | libc::O_WRONLY, 0o644)
                .err(),
            Some(Errno::ENOENT)
        );

        let other = Tmpfs::new(Arc::new(FixedClock(1)), 0o1777);
        vfs.mount(
            b"/a/b",
            other.root(),
            MountOpts {
                fs_type: "tmpfs",
                read_only: true,
            },
        )
        .unwrap();
        let b = vfs.resolve(&r, b"/a/b", true).unwrap();
        assert_eq!(b.mount().fs_type, "tmpfs");
        assert_eq!(b.stat().unwrap().mode, libc::S_IFDIR | 0o1777);
        assert_eq!(vfs.dentry_path(&b), "/a/b");
        assert_eq!(
            vfs.dentry_path(&vfs.resolve(&b, b"..", true).unwrap()),
            "/a"
        );
        assert_eq!(vfs.mkdir_at(&r, b"/a/b/x", 0o755), Err(Errno::EROFS));
        assert_eq!(
            vfs.access_at(&r, b"/a/b", libc::W_OK, true, Default::default()),
            Err(Errno::EROFS)
        );
        assert_eq!(
            vfs.rename_at(&r, b"/a/f", &r, b"/a/b/f", 0),
            Err(Errno::EXDEV)
        );
        assert_eq!(
            vfs.unlink_at(&r, b"/a/b", libc::AT_REMOVEDIR),
            Err(Errno::EBUSY)
        );
    }
}
