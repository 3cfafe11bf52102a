//! The vDSO (gVisor's pkg/sentry/loader/vdso.go and vdso/): a small shared
//! object, built from `sentry/vdso/vdso.c` at build time, that answers
//! clock_gettime, gettimeofday, time and getcpu in the application without
//! a trap, from a data page (`[vvar]`) the Sentry keeps current.
//!
//! Every address space maps the two together ([`crate::mm::MemoryManager::map_vdso`]):
//! the data page, then the image right above it (the image finds the page
//! one page below its own first byte). The image is ordinary private
//! memory (a checkpoint saves it; a program may hold pointers into it);
//! the data page is one page of the memory file shared by every address
//! space, mapped read-only, written by the kernel's timekeeper
//! (`kernel/time.rs`) and rebuilt, not saved, at restore: the new host's
//! clock parameters differ.

use std::sync::Arc;

use crate::errno::Errno;
use crate::mm::{MappableFile, MemoryFile, MF_PAGE_SIZE};

/// The vDSO image (empty where there is none for the architecture).
pub static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// The data page's size.
pub const VVAR_SIZE: u64 = MF_PAGE_SIZE;

/// The data page's layout: u64 words, as `struct vvar` in vdso.c.
pub mod vvar {
    /// Odd while the Sentry writes the other words.
    pub const SEQ: usize = 0;
    pub const MODE: usize = 1;
    pub const BASE_TSC: usize = 2;
    pub const BASE_MONO: usize = 3;
    pub const REAL_OFFSET: usize = 4;
    pub const MULT: usize = 5;
    pub const SHIFT: usize = 6;
    pub const CPU_MODE: usize = 7;
    pub const WORDS: usize = 8;

    /// Fallback: the vDSO makes the real system call.
    pub const MODE_SYSCALL: u64 = 0;
    /// Time from the TSC and the parameters.
    pub const MODE_TSC: u64 = 1;
    /// getcpu asks the Sentry.
    pub const CPU_SYSCALL: u64 = 0;
    /// getcpu answers CPU 0, node 0.
    pub const CPU_ZERO: u64 = 1;
}

/// The image's length in memory: whole pages.
pub fn image_pages_len() -> u64 {
    (IMAGE.len() as u64).next_multiple_of(MF_PAGE_SIZE)
}

/// Whether this build has a vDSO to map.
pub fn available() -> bool {
    !IMAGE.is_empty()
}

/// The data page as a mappable "file": a shared mapping of it maps the
/// page itself (a `direct` VMA, as for tmpfs pages), which fork shares and
/// nothing can make writable.
pub struct VvarFile {
    mf: Arc<MemoryFile>,
    offset: u64,
}

impl VvarFile {
    /// The kernel's data page in `mf`, if it has one.
    pub fn of(mf: &Arc<MemoryFile>) -> Option<Arc<dyn MappableFile>> {
        let offset = mf.vvar()?;
        Some(Arc::new(VvarFile {
            mf: mf.clone(),
            offset,
        }))
    }
}

/// What /proc/self/maps calls the data page.
pub const VVAR_NAME: &str = "[vvar]";

impl MappableFile for VvarFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if offset >= VVAR_SIZE {
            return Ok(0);
        }
        let n = buf.len().min((VVAR_SIZE - offset) as usize);
        self.mf.read_at(self.offset + offset, &mut buf[..n])?;
        Ok(n)
    }

    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }

    fn size(&self) -> Result<u64, Errno> {
        Ok(VVAR_SIZE)
    }

    fn mapping_name(&self) -> String {
        VVAR_NAME.to_string()
    }

    fn identity(&self) -> usize {
        // Unique among files: no file's identity is a memory-file offset
        // with the top bit set.
        (self.offset as usize) | (1 << (usize::BITS - 1))
    }

    fn map_shared(&self, offset: u64, len: u64) -> Option<u64> {
        (offset == 0 && len == VVAR_SIZE).then_some(self.offset)
    }

    fn unmap_shared(&self, _offset: u64, _mf_offset: u64, _len: u64) {}
}

#[cfg(test)]
mod tests;
