//! The mount namespaces of a checkpoint beyond the first (whose tree is
//! `VfsState::mounts`): each one's tree, and which processes, open files
//! and mapped files are in which, since their paths are that namespace's.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dentry::{lock, Dentry};
use super::mount_ns::MountNamespace;
use super::mount_tree::MountKind;
use super::state::{MountTreeRecord, SaveError, VfsRestoreError};
use super::tmpfs::Tmpfs;
use super::vfs::Vfs;

/// Namespace 0 is the first (`VfsState::mounts`), `n` is `others[n - 1]`;
/// whatever is not listed is in the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountNamespacesRecord {
    pub others: Vec<MountTreeRecord>,
    pub members: Vec<NsMember>,
    pub files: Vec<NsFile>,
    pub mapped: Vec<NsMapped>,
}
statefile::savable_serde!(
    MountNamespacesRecord,
    "vfs.MountNamespaces",
    1,
    [MountTreeRecord, NsMember, NsFile, NsMapped]
);

/// A process (by tgid) and its namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsMember {
    pub tgid: i32,
    pub ns: u32,
}
statefile::versioned!(NsMember, "vfs.NsMember", 1);

/// An open file (by its object id) whose path is in namespace `ns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsFile {
    pub file: u64,
    pub ns: u32,
}
statefile::versioned!(NsFile, "vfs.NsFile", 1);

/// A file an address space (by its object id) maps by `path`, in `ns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsMapped {
    pub mm: u64,
    pub path: String,
    pub ns: u32,
}
statefile::versioned!(NsMapped, "vfs.NsMapped", 1);

impl MountNamespacesRecord {
    /// Judges the record before anything is built from it: every tree, and
    /// every namespace named one there is.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (i, t) in self.others.iter().enumerate() {
            super::mount_state::check_mount_tree(t)
                .map_err(|(field, why)| (format!("others[{i}].{field}"), why))?;
        }
        let n = self.others.len() as u32;
        let bad = |field: String, ns: u32| (field, format!("namespace {ns} of {}", n + 1));
        for (i, m) in self.members.iter().enumerate() {
            if m.ns > n {
                return Err(bad(format!("members[{i}].ns"), m.ns));
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            if f.ns > n {
                return Err(bad(format!("files[{i}].ns"), f.ns));
            }
        }
        for (i, f) in self.mapped.iter().enumerate() {
            if f.ns > n {
                return Err(bad(format!("mapped[{i}].ns"), f.ns));
            }
        }
        Ok(())
    }

    pub fn member_ns(&self, tgid: i32) -> u32 {
        self.members
            .iter()
            .find(|m| m.tgid == tgid)
            .map_or(0, |m| m.ns)
    }

    pub fn file_ns(&self, file: u64) -> u32 {
        self.files
            .iter()
            .find(|f| f.file == file)
            .map_or(0, |f| f.ns)
    }

    pub fn mapped_ns(&self, mm: u64, path: &str) -> u32 {
        self.mapped
            .iter()
            .find(|f| f.mm == mm && f.path == path)
            .map_or(0, |f| f.ns)
    }
}

/// The top a dentry's names lead to (its namespace's, unless detached).
pub(crate) fn top_of(d: &Arc<Dentry>) -> Arc<Dentry> {
    let mut cur = d.clone();
    for _ in 0..super::resolve::PATH_MAX {
        cur = match cur.parent().or_else(|| cur.mountpoint()) {
            Some(p) => p,
            None => break,
        };
    }
    cur
}

/// Which of `spaces` `d` is in, by the top its names lead to.
pub(crate) fn ns_index(spaces: &[Arc<MountNamespace>], d: &Arc<Dentry>) -> Option<u32> {
    let top = top_of(d);
    spaces
        .iter()
        .position(|ns| Arc::ptr_eq(&ns.root(), &top))
        .map(|i| i as u32)
}

impl Vfs {
    /// The trees of `spaces[1..]`, refusing a tmpfs mounted in two of
    /// `spaces` (one mounted before an unshare: both would restore it,
    /// as two).
    pub fn save_other_namespaces(
        &self,
        spaces: &[Arc<MountNamespace>],
    ) -> Result<Vec<MountTreeRecord>, SaveError> {
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for (i, ns) in spaces.iter().enumerate() {
            for e in lock(&ns.mounts).iter() {
                if let MountKind::Tmpfs(t) = &e.kind {
                    let at = Arc::as_ptr(t) as usize;
                    if seen.iter().any(|&(j, a)| a == at && j != i) {
                        return Err(SaveError::MountTree(format!(
                            "the tmpfs at {} is mounted in two mount namespaces (it was mounted before an unshare or clone with CLONE_NEWNS): saving it is not supported yet",
                            super::vfs::path_of(&e.root)
                        )));
                    }
                    seen.push((i, at));
                }
            }
        }
        spaces[1..]
            .iter()
            .map(|ns| self.in_ns(ns, || self.save_mount_tree()))
            .collect()
    }

    /// Keeps a copy of boot's tree as built, before a restore changes it:
    /// the namespaces beyond the first are restored from copies of it.
    pub(crate) fn keep_boot_tree(&self) {
        // Not marked aliased: most restores have one namespace, whose
        // lookups would pay for revalidating what they cached.
        let copy = self.copy_ns_as(self.init_ns(), false).ns;
        lock(&self.parts).boot_tree = Some(copy);
    }

    /// The saved namespaces beyond the first, each brought from a copy of
    /// boot's tree to its record; the copy of boot's tree is let go.
    pub fn restore_other_namespaces(
        &self,
        others: &[MountTreeRecord],
    ) -> Result<Vec<Arc<MountNamespace>>, VfsRestoreError> {
        let (boot, ctx) = {
            let mut parts = lock(&self.parts);
            let boot = parts.boot_tree.take();
            let ctx = parts
                .mount_ctx
                .as_ref()
                .map(|c| (c.clock.clone(), c.mf.clone()));
            (boot, ctx)
        };
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let (Some(boot), Some((clock, mf))) = (boot, ctx) else {
            return Err(VfsRestoreError::Invalid(
                "mount namespaces: no boot tree to restore them from".into(),
            ));
        };
        let tmpfs = |snap: &super::state::TmpfsSnapshot| -> Result<Arc<Tmpfs>, VfsRestoreError> {
            Tmpfs::restore(snap, clock.clone(), mf.clone())
        };
        let spaces: Vec<Arc<MountNamespace>> = others
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ns = self.copy_ns(&boot).ns;
                self.in_ns(&ns, || self.restore_mount_tree(r, &tmpfs))
                    .map_err(|e| match e {
                        VfsRestoreError::Invalid(why) => {
                            VfsRestoreError::Invalid(format!("mount namespace {}: {why}", i + 1))
                        }
                        other => other,
                    })?;
                Ok(ns)
            })
            .collect::<Result<_, VfsRestoreError>>()?;
        lock(&self.parts).restored_ns = spaces.clone();
        Ok(spaces)
    }

    /// Saved namespace `n` of the restore under way (0: the first).
    pub fn restored_ns(&self, n: u32) -> Option<Arc<MountNamespace>> {
        match n {
            0 => Some(self.init_ns().clone()),
            n => lock(&self.parts).restored_ns.get(n as usize - 1).cloned(),
        }
    }

    /// Runs `f` in saved namespace `n` of the restore under way.
    pub fn in_restored_ns<R>(&self, n: u32, f: impl FnOnce() -> R) -> Result<R, VfsRestoreError> {
        let ns = self.restored_ns(n).ok_or_else(|| {
            VfsRestoreError::Invalid(format!("mount namespace {n} was not restored"))
        })?;
        Ok(self.in_ns(&ns, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::namespace::tests::{build_in, host};
    use crate::vfs::testing::test_memory_file;

    #[test]
    fn hostile_namespace_records_are_refused_naming_the_field() {
        let d = host();
        let vfs = build_in(d.path(), test_memory_file(), None).unwrap();
        let tree = vfs.save_state().unwrap().mounts;
        let good = MountNamespacesRecord {
            others: vec![tree],
            members: vec![NsMember { tgid: 2, ns: 1 }],
            files: vec![NsFile { file: 3, ns: 1 }],
            mapped: vec![NsMapped {
                mm: 1,
                path: "/bin/x".into(),
                ns: 1,
            }],
        };
        assert_eq!(good.check(), Ok(()));
        assert_eq!(good.member_ns(2), 1);
        assert_eq!(good.member_ns(1), 0);
        let refused = |edit: &dyn Fn(&mut MountNamespacesRecord), want: &str| {
            let mut r = good.clone();
            edit(&mut r);
            match r.check() {
                Err((field, _)) => assert_eq!(field, want),
                Ok(()) => panic!("{want} accepted"),
            }
        };
        refused(&|r| r.members[0].ns = 2, "members[0].ns");
        refused(&|r| r.files[0].ns = 7, "files[0].ns");
        refused(&|r| r.mapped[0].ns = 2, "mapped[0].ns");
        refused(
            &|r| r.others[0].boot[0].path = b"/../x".to_vec(),
            "others[0].boot[0].path",
        );
        // Another namespace's restore names it.
        let mut bad = good.others[0].clone();
        bad.unmounted.push(b"/".to_vec());
        let vfs = build_in(
            d.path(),
            test_memory_file(),
            Some(&vfs.save_state().unwrap()),
        )
        .unwrap();
        match vfs.restore_other_namespaces(&[bad]) {
            Err(VfsRestoreError::Invalid(why)) => {
                assert!(
                    why.contains("mount namespace 1") && why.contains("unmounted[0]"),
                    "{why}"
                )
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
