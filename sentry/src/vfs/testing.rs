//! Test-only [`HostFs`] over a local directory, standing in for the gofer
//! (in production host files are reached only through the gofer).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::gofer_fs::{HostFs, HostNode};
use super::inode::DirEntry;
use super::stat::{Clock, Stat, Timespec};
use crate::errno::Errno;

pub struct LocalDirFs {
    root: PathBuf,
    nodes: Mutex<HashMap<HostNode, PathBuf>>,
    next: AtomicU64,
}

impl LocalDirFs {
    pub fn new(root: impl Into<PathBuf>) -> Arc<LocalDirFs> {
        Arc::new(LocalDirFs {
            root: root.into(),
            nodes: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    fn add(&self, p: PathBuf) -> HostNode {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.nodes.lock().unwrap().insert(id, p);
        id
    }

    fn path(&self, n: HostNode) -> Result<PathBuf, Errno> {
        self.nodes
            .lock()
            .unwrap()
            .get(&n)
            .cloned()
            .ok_or(Errno::EBADF)
    }
}

fn stat_of(p: &PathBuf) -> Result<Stat, Errno> {
    let m = std::fs::symlink_metadata(p)?;
    Ok(Stat {
        dev: m.dev(),
        ino: m.ino(),
        mode: m.mode(),
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev(),
        size: m.size(),
        blksize: m.blksize() as u32,
        blocks: m.blocks(),
        atime: Timespec {
            sec: m.atime(),
            nsec: m.atime_nsec(),
        },
        mtime: Timespec {
            sec: m.mtime(),
            nsec: m.mtime_nsec(),
        },
        ctime: Timespec {
            sec: m.ctime(),
            nsec: m.ctime_nsec(),
        },
    })
}

impl HostFs for LocalDirFs {
    fn root(&self) -> Result<(HostNode, Stat), Errno> {
        let st = stat_of(&self.root)?;
        Ok((self.add(self.root.clone()), st))
    }

    fn walk(&self, dir: HostNode, name: &[u8]) -> Result<(HostNode, Stat), Errno> {
        assert!(name != b".." && name != b"." && !name.contains(&b'/'));
        let p = self.path(dir)?.join(OsStr::from_bytes(name));
        let st = stat_of(&p)?;
        Ok((self.add(p), st))
    }

    fn stat(&self, node: HostNode) -> Result<Stat, Errno> {
        stat_of(&self.path(node)?)
    }

    fn readdir(&self, node: HostNode) -> Result<Vec<DirEntry>, Errno> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.path(node)?)? {
            let e = e?;
            let ft = e.file_type()?;
            let dtype = if ft.is_dir() {
                libc::DT_DIR
            } else if ft.is_symlink() {
                libc::DT_LNK
            } else if ft.is_file() {
                libc::DT_REG
            } else if ft.is_char_device() {
                libc::DT_CHR
            } else {
                libc::DT_UNKNOWN
            };
            out.push(DirEntry {
                name: e.file_name().as_bytes().to_vec(),
                ino: e.ino(),
                dtype,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn readlink(&self, node: HostNode) -> Result<Vec<u8>, Errno> {
        Ok(std::fs::read_link(self.path(node)?)?
            .as_os_str()
            .as_bytes()
            .to_vec())
    }

    fn open(&self, node: HostNode) -> Result<OwnedFd, Errno> {
        Ok(std::fs::File::open(self.path(node)?)?.into())
    }

    fn close(&self, node: HostNode) {
        self.nodes.lock().unwrap().remove(&node);
    }
}

/// A memory file for tests that need one (tmpfs keeps file pages in it):
/// 4 GiB of offsets, sparse, so it costs only the pages a test touches.
pub fn test_memory_file() -> Arc<crate::mm::MemoryFile> {
    Arc::new(crate::mm::MemoryFile::new(4 << 30).expect("test memory file"))
}

/// A fresh memory file holding what `mf` holds, allocations and bytes, the
/// way a restore loads the memory section before it builds the VFS.
pub fn clone_memory(mf: &crate::mm::MemoryFile) -> Arc<crate::mm::MemoryFile> {
    let copy = test_memory_file();
    let ranges = mf.allocated_ranges();
    copy.restore_allocations(&ranges)
        .expect("restore allocations");
    for r in &ranges {
        for d in mf.data_ranges(r.start, r.len()).expect("data ranges") {
            let mut buf = vec![0u8; d.len() as usize];
            mf.read_at(d.start, &mut buf).expect("read");
            copy.pwrite_at(d.start, &buf).expect("write");
        }
    }
    copy
}

/// A clock that stands still, for deterministic times.
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now(&self) -> Timespec {
        Timespec {
            sec: self.0,
            nsec: 0,
        }
    }
}
