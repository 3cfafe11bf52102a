//! A task's file descriptor table (gVisor's kernel.FDTable).

use std::collections::BTreeMap;

use crate::errno::Errno;

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
