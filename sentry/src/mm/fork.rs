//! fork(2) of an address space: the child's copy.
//!
//! Interim: private and shared anonymous pages are copied into fresh
//! memory-file ranges at fork (the copy-on-write memory file replaces this).

use std::collections::BTreeMap;
use std::sync::Arc;

use platform::{AddressSpace, Layout};

use super::manager::{platform_errno, MemoryManager};
use super::memory_file::MemoryFile;
use super::vma::Vma;
use crate::errno::Errno;

/// An address space in transit from parent to child: it holds its own
/// backing; dropped unused, it gives it back.
pub struct ForkedMm {
    layout: Layout,
    mf: Arc<MemoryFile>,
    vmas: BTreeMap<u64, Vma>,
    brk_start: u64,
    brk: u64,
    stack_limit: u64,
}

impl Drop for ForkedMm {
    fn drop(&mut self) {
        for v in self.vmas.values() {
            release(&self.mf, v);
        }
    }
}

fn release(mf: &MemoryFile, v: &Vma) {
    match (&v.file, v.direct) {
        (Some(fb), true) => fb.file.unmap_shared(fb.offset, v.mf_offset, v.len()),
        _ => {
            if let Err(e) = mf.free(v.mf_offset, v.len()) {
                tracing::error!("memory file free failed: {e}");
            }
        }
    }
}

impl MemoryManager {
    /// fork(2): the child's copy of this address space.
    pub fn fork(&mut self) -> Result<ForkedMm, Errno> {
        let mut forked = ForkedMm {
            layout: self.layout,
            mf: self.mf.clone(),
            vmas: BTreeMap::new(),
            brk_start: self.brk_start,
            brk: self.brk,
            stack_limit: self.stack_limit,
        };
        for v in self.vmas.values() {
            let mut c = v.clone();
            if let (Some(fb), true) = (&v.file, v.direct) {
                c.mf_offset = fb
                    .file
                    .map_shared(fb.offset, v.len())
                    .ok_or(Errno::ENOMEM)?;
            } else {
                c.mf_offset = self.mf.allocate(v.len())?;
                forked.vmas.insert(c.start, c.clone());
                copy_range(&self.mf, v.mf_offset, c.mf_offset, v.len())?;
                continue;
            }
            forked.vmas.insert(c.start, c);
        }
        Ok(forked)
    }

    /// The child's memory manager over its new, empty platform address space.
    pub fn from_fork(
        mut forked: ForkedMm,
        aspace: Arc<dyn AddressSpace>,
    ) -> Result<MemoryManager, Errno> {
        let mut mm = MemoryManager::new(forked.layout, forked.mf.clone(), aspace)?;
        for v in forked.vmas.values() {
            mm.aspace
                .map(v.start, v.len(), v.mf_offset, v.prot)
                .map_err(|e| platform_errno("map", e))?;
        }
        mm.brk_start = forked.brk_start;
        mm.brk = forked.brk;
        mm.stack_limit = forked.stack_limit;
        mm.vmas = std::mem::take(&mut forked.vmas);
        Ok(mm)
    }
}

/// Copies data pages of `[from, from + len)` to `to` (holes stay holes).
fn copy_range(mf: &MemoryFile, from: u64, to: u64, len: u64) -> Result<(), Errno> {
    let mut buf = vec![0u8; 256 * 1024];
    for r in mf.data_ranges(from, len)? {
        let mut done = 0;
        while done < r.len() {
            let n = (r.len() - done).min(buf.len() as u64) as usize;
            mf.read_at(r.start + done, &mut buf[..n])?;
            mf.write_at(to + (r.start - from) + done, &buf[..n])?;
            done += n as u64;
        }
    }
    Ok(())
}
