//! A task's file descriptor table (gVisor's kernel.FDTable).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// Linux's NR_OPEN: no descriptor number is ever this large.
pub const NR_OPEN: u64 = 1 << 20;

/// One descriptor: the open file it refers to and its per-descriptor flag.
#[derive(Clone, Debug)]
pub struct FdEntry<F> {
    pub file: F,
    pub cloexec: bool,
}

/// Maps descriptor numbers to open files. Generic over the open-file type so
/// the table's rules (lowest free number, limits, dup semantics) are tested on
/// their own.
#[derive(Clone, Debug)]
pub struct FdTable<F> {
    entries: BTreeMap<i32, FdEntry<F>>,
}

impl<F: Clone> Default for FdTable<F> {
    fn default() -> Self {
        FdTable {
            entries: BTreeMap::new(),
        }
    }
}

impl<F: Clone> FdTable<F> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, fd: i32) -> Result<&FdEntry<F>, Errno> {
        self.entries.get(&fd).ok_or(Errno::EBADF)
    }

    pub fn file(&self, fd: i32) -> Result<F, Errno> {
        self.get(fd).map(|e| e.file.clone())
    }

    pub fn get_mut(&mut self, fd: i32) -> Result<&mut FdEntry<F>, Errno> {
        self.entries.get_mut(&fd).ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor >= `min`, below `limit`
    /// (RLIMIT_NOFILE).
    pub fn insert_from(
        &mut self,
        min: i32,
        file: F,
        cloexec: bool,
        limit: u64,
    ) -> Result<i32, Errno> {
        if min < 0 {
            return Err(Errno::EINVAL);
        }
        let mut fd = min;
        for (&used, _) in self.entries.range(min..) {
            if used != fd {
                break;
            }
            fd += 1;
        }
        if fd as u64 >= limit {
            return Err(Errno::EMFILE);
        }
        self.entries.insert(fd, FdEntry { file, cloexec });
        Ok(fd)
    }

    pub fn insert(&mut self, file: F, cloexec: bool, limit: u64) -> Result<i32, Errno> {
        self.insert_from(0, file, cloexec, limit)
    }

    /// Installs `file` exactly at `fd` (dup2/dup3), returning what was there.
    pub fn insert_at(
        &mut self,
        fd: i32,
        file: F,
        cloexec: bool,
        limit: u64,
    ) -> Result<Option<F>, Errno> {
        if fd < 0 || fd as u64 >= limit {
            return Err(Errno::EBADF);
        }
        Ok(self
            .entries
            .insert(fd, FdEntry { file, cloexec })
            .map(|e| e.file))
    }

    pub fn remove(&mut self, fd: i32) -> Result<F, Errno> {
        self.entries.remove(&fd).map(|e| e.file).ok_or(Errno::EBADF)
    }

    /// Closes every close-on-exec descriptor, as execve does.
    pub fn remove_cloexec(&mut self) -> Vec<F> {
        let fds: Vec<i32> = self
            .entries
            .iter()
            .filter(|(_, e)| e.cloexec)
            .map(|(&fd, _)| fd)
            .collect();
        fds.into_iter()
            .filter_map(|fd| self.entries.remove(&fd))
            .map(|e| e.file)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &FdEntry<F>)> {
        self.entries.iter().map(|(&fd, e)| (fd, e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Closes every descriptor.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// One descriptor's saved form: its number, its flag and the id of the open
/// file description it refers to (two descriptors, in one table or two,
/// sharing a description keep sharing it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FdRecord {
    pub fd: i32,
    pub cloexec: bool,
    pub file: u64,
}
statefile::versioned!(FdRecord, "kernel.FdEntry", 1);

/// A descriptor table's saved form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FdTableRecord {
    pub fds: Vec<FdRecord>,
}
statefile::savable_serde!(FdTableRecord, "kernel.FdTable", 2, [FdRecord]);

/// Why a saved descriptor table was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FdRecordError {
    #[error("descriptor {fd} is outside 0..{limit} (RLIMIT_NOFILE)")]
    OutOfRange { fd: i32, limit: u64 },
    #[error("descriptor {0} appears twice")]
    Duplicate(i32),
    #[error("descriptor {fd} refers to open file #{file}, which is not in the statefile")]
    MissingFile { fd: i32, file: u64 },
}

impl<F: Clone> FdTable<F> {
    /// The table's record; `id_of` names (and saves, the first time) the open
    /// file behind each descriptor.
    pub fn save_record<E>(
        &self,
        id_of: &mut dyn FnMut(&F) -> Result<u64, E>,
    ) -> Result<FdTableRecord, E> {
        let mut fds = Vec::with_capacity(self.entries.len());
        for (&fd, e) in &self.entries {
            fds.push(FdRecord {
                fd,
                cloexec: e.cloexec,
                file: id_of(&e.file)?,
            });
        }
        Ok(FdTableRecord { fds })
    }

    /// Checks a saved table against the process's descriptor limit and the
    /// open files the statefile holds, before anything is opened.
    pub fn validate_record(
        rec: &FdTableRecord,
        limit: u64,
        has_file: &dyn Fn(u64) -> bool,
    ) -> Result<(), FdRecordError> {
        let limit = limit.min(NR_OPEN);
        let mut seen = std::collections::BTreeSet::new();
        for e in &rec.fds {
            if e.fd < 0 || e.fd as u64 >= limit {
                return Err(FdRecordError::OutOfRange { fd: e.fd, limit });
            }
            if !seen.insert(e.fd) {
                return Err(FdRecordError::Duplicate(e.fd));
            }
            if !has_file(e.file) {
                return Err(FdRecordError::MissingFile {
                    fd: e.fd,
                    file: e.file,
                });
            }
        }
        Ok(())
    }

    /// Rebuilds a validated table; `file_of` gives the re-opened file of an id.
    pub fn from_record(
        rec: &FdTableRecord,
        file_of: &dyn Fn(u64) -> Option<F>,
    ) -> Result<FdTable<F>, FdRecordError> {
        let mut entries = BTreeMap::new();
        for e in &rec.fds {
            let file = file_of(e.file).ok_or(FdRecordError::MissingFile {
                fd: e.fd,
                file: e.file,
            })?;
            if entries
                .insert(
                    e.fd,
                    FdEntry {
                        file,
                        cloexec: e.cloexec,
                    },
                )
                .is_some()
            {
                return Err(FdRecordError::Duplicate(e.fd));
            }
        }
        Ok(FdTable { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_descriptor() {
        let mut t = FdTable::new();
        assert_eq!(t.insert("a", false, 1024), Ok(0));
        assert_eq!(t.insert("b", false, 1024), Ok(1));
        assert_eq!(t.insert("c", false, 1024), Ok(2));
        t.remove(1).unwrap();
        assert_eq!(t.insert("d", false, 1024), Ok(1));
        assert_eq!(t.insert_from(10, "e", true, 1024), Ok(10));
        assert_eq!(t.insert_from(10, "f", true, 1024), Ok(11));
        assert_eq!(t.remove_cloexec(), vec!["e", "f"]);
    }

    #[test]
    fn limits_and_bad_fds() {
        let mut t = FdTable::new();
        assert_eq!(t.insert("a", false, 1), Ok(0));
        assert_eq!(t.insert("b", false, 1), Err(Errno::EMFILE));
        assert_eq!(t.remove(5), Err(Errno::EBADF));
        assert_eq!(t.insert_at(-1, "x", false, 10), Err(Errno::EBADF));
        assert_eq!(t.insert_at(3, "x", false, 10), Ok(None));
        assert_eq!(t.insert_at(3, "y", false, 10), Ok(Some("x")));
    }
}
