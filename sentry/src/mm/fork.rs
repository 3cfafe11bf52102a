//! fork(2) of an address space: the child shares every page with the
//! parent, copying none. Private pages become copy-on-write (read-only on
//! both hosts' mappings until the first write copies, or reuses, them);
//! MAP_SHARED pages are simply shared. The memory file's reference counts
//! say how many address spaces hold each page.
//!
//! fork runs on two host threads: the parent's, which owns the parent's
//! platform address space (write-protecting it) and builds a [`ForkedMm`],
//! and the child's, which creates the child's platform address space and
//! maps it ([`MemoryManager::from_fork`]).

use std::sync::Arc;

use platform::{AddressSpace, Layout};

use super::manager::{release, MemoryManager};
use super::memory_file::MemoryFile;
use super::pma::{Piece, Pmas};
use super::vma::Vma;
use super::vma_set::VmaSet;
use crate::errno::Errno;

/// An address space in transit from parent to child: holds references on
/// its pages (and pins on the files behind direct mappings); dropped
/// unused, it gives them back.
pub struct ForkedMm {
    layout: Layout,
    mf: Arc<MemoryFile>,
    /// Boxed: a VMA set is large, and a ForkedMm moves between threads.
    vmas: Box<VmaSet>,
    pmas: Pmas,
    brk_start: u64,
    brk: u64,
    stack_limit: u64,
    /// The parent's frozen pages (`freeze.rs`): the child maps them
    /// read-only too, as the parent's freeze generation says.
    frozen: super::freeze::OffsetSet,
    freeze_gen: u64,
    /// The parent's pages without a file page: the child's first touch
    /// faults on them too.
    nopage: super::nopage::NoPages,
}

impl ForkedMm {
    /// The child's VMAs, in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }
}

impl Drop for ForkedMm {
    fn drop(&mut self) {
        // The parent keeps every byte (and writes shared file data back
        // itself): only the references go.
        let vmas = self.vmas.take();
        for v in vmas.values() {
            release(&self.mf, &mut self.pmas, v);
        }
    }
}

impl MemoryManager {
    /// fork(2): the child's copy of this address space, sharing every page
    /// (private ones copy-on-write, MAP_SHARED ones truly), copying no data.
    /// Write-protects this mm's private writable mappings on the host so the
    /// parent's next write faults and breaks the sharing. MADV_DONTFORK VMAs
    /// are left out of the child; MADV_WIPEONFORK ones are fresh zero pages
    /// in the child. Called on the parent's host thread (it owns self's
    /// platform address space).
    pub fn fork(&mut self) -> Result<ForkedMm, Errno> {
        let mut child = ForkedMm {
            layout: self.layout,
            mf: self.mf.clone(),
            vmas: Box::default(),
            pmas: Pmas::default(),
            brk_start: self.brk_start,
            brk: self.brk,
            stack_limit: self.stack_limit,
            frozen: self.frozen.clone(),
            freeze_gen: self.freeze_gen,
            nopage: self.nopage.clone(),
        };
        let starts: Vec<u64> = self.vmas.keys().copied().collect();
        for start in starts {
            let Some(v) = self.vmas.get(&start).cloned() else {
                continue;
            };
            if v.dontfork {
                continue;
            }
            if v.direct {
                // The child's mapping holds pins of its own on the file's pages.
                let Some(fb) = v.file.as_ref() else {
                    return Err(Errno::EINVAL);
                };
                match fb.file.map_shared(fb.offset, v.len()) {
                    Some(off) if off == v.mf_offset => {}
                    Some(off) => {
                        // Pinned pages never move; a file that moved them
                        // anyway cannot be shared as it is.
                        fb.file.unmap_shared(fb.offset, off, v.len());
                        return Err(Errno::ENOMEM);
                    }
                    None => return Err(Errno::ENOMEM),
                }
                child.vmas.insert(v);
                continue;
            }
            // Inserted first, so that a failure below gives back exactly
            // the references taken for it.
            child.vmas.insert(v.clone());
            if v.wipeonfork {
                let off = self.mf.allocate(v.len())?;
                child.pmas.insert(Piece {
                    start: v.start,
                    end: v.end,
                    off,
                    cow: false,
                });
                continue;
            }
            for p in self.pmas.pieces(v.start, v.end) {
                self.mf.incref(p.off, p.len()).map_err(|e| e.errno())?;
                child.pmas.insert(Piece { cow: false, ..p });
            }
            if !v.shared && v.prot.write {
                self.sync_host(start, v.start, v.end, false, false)?;
            }
        }
        Ok(child)
    }

    /// The child's memory manager over its new, empty platform address
    /// space (created on the child's host thread, which calls this): maps
    /// every VMA of `forked` into `aspace` (COW pages read-only).
    pub fn from_fork(
        mut forked: ForkedMm,
        aspace: Arc<dyn AddressSpace>,
    ) -> Result<MemoryManager, Errno> {
        let mut mm = MemoryManager::new(forked.layout, forked.mf.clone(), aspace)?;
        mm.vmas = *std::mem::take(&mut forked.vmas);
        mm.pmas = std::mem::take(&mut forked.pmas);
        mm.brk_start = forked.brk_start;
        mm.brk = forked.brk;
        mm.stack_limit = forked.stack_limit;
        mm.frozen = std::mem::take(&mut forked.frozen);
        mm.freeze_gen = forked.freeze_gen;
        mm.nopage = std::mem::take(&mut forked.nopage);
        let ranges: Vec<(u64, u64)> = mm.vmas.values().map(|v| (v.start, v.end)).collect();
        for (start, end) in ranges {
            // On error the manager, dropped, gives every reference back.
            mm.sync_host(start, start, end, true, false)?;
        }
        Ok(mm)
    }
}
