//! Checkpoint and restore of a memory manager.
//!
//! The state is the VMA metadata (with each VMA's memory-file offset) and
//! brk; the memory itself is the memory file's section of the statefile,
//! saved and loaded through [`MemoryFile::allocated_ranges`],
//! [`MemoryFile::data_ranges`], [`MemoryFile::restore_allocations`] and
//! `read_at`/`write_at`. A snapshot is untrusted input on restore: every
//! value is validated and a bad one is an error, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use platform::{AddressSpace, Layout};
use serde::{Deserialize, Serialize};

use super::file::{MappableFile, OpenFn};
use super::manager::{platform_errno, usable_range, MemoryManager};
use super::memory_file::{FileRange, MemoryFile};
use super::vma::{FileBacking, Vma, VmaState};
use crate::errno::Errno;
use crate::vfs::inode::Fingerprint;

/// The saved form of a [`MemoryManager`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmState {
    /// The page size the VMAs were laid out with.
    pub page_size: u64,
    /// One past the highest mapped address: a restore refuses a host whose
    /// address space is smaller.
    pub highest_address: u64,
    pub vmas: Vec<VmaState>,
    pub brk_start: u64,
    pub brk: u64,
    pub stack_limit: u64,
}

statefile::versioned!(MmState, "mm.MmState", 1, [VmaState]);
statefile::versioned!(FileRange, "mm.FileRange", 1);

/// A file some mapping of an address space maps, to re-open on restore.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MappedFileRecord {
    pub path: String,
    /// Some shared mapping of it writes back, so it re-opens read-write.
    pub writable: bool,
    pub fingerprint: Option<Fingerprint>,
}
statefile::versioned!(MappedFileRecord, "mm.MappedFile", 1, [Fingerprint]);

/// An address space's saved form: VMAs with their memory-file offsets, brk,
/// and the files its mappings come from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MmRecord {
    pub mm: MmState,
    pub files: Vec<MappedFileRecord>,
}
statefile::savable_serde!(MmRecord, "mm.MemoryManager", 1, [MmState, MappedFileRecord]);

/// The memory file's saved form: which ranges hold pages (the memory
/// section has their contents).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemoryFileRecord {
    pub ranges: Vec<FileRange>,
}
statefile::savable_serde!(MemoryFileRecord, "mm.MemoryFile", 1, [FileRange]);

impl MemoryManager {
    /// The address space's record; `fingerprint` names the current identity
    /// of a mapped file by its path in the container.
    pub fn save_record(&self, fingerprint: &dyn Fn(&str) -> Option<Fingerprint>) -> MmRecord {
        let mm = self.snapshot();
        let mut files: BTreeMap<String, MappedFileRecord> = BTreeMap::new();
        for vma in &mm.vmas {
            let Some(f) = &vma.file else { continue };
            let e = files
                .entry(f.name.clone())
                .or_insert_with(|| MappedFileRecord {
                    path: f.name.clone(),
                    writable: false,
                    fingerprint: fingerprint(&f.name),
                });
            e.writable |= vma.shared && vma.ever_writable;
        }
        MmRecord {
            mm,
            files: files.into_values().collect(),
        }
    }
}

/// Why a snapshot cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("statefile page size {saved} differs from this host's {host}")]
    PageSize { saved: u64, host: u64 },
    #[error(
        "the application used addresses up to {highest:#x}, but this host's user address space ends at {top:#x} \
         ({va_bits}-bit virtual addresses)"
    )]
    AddressSpaceTooSmall {
        highest: u64,
        top: u64,
        va_bits: u32,
    },
    #[error("mapping {index} ({start:#x}-{end:#x}) is invalid: {why}")]
    BadVma {
        index: usize,
        start: u64,
        end: u64,
        why: &'static str,
    },
    #[error("brk {brk_start:#x}..{brk:#x} is invalid")]
    BadBrk { brk_start: u64, brk: u64 },
    #[error("cannot re-open mapped file {name}: {errno}")]
    Reopen { name: String, errno: Errno },
    #[error("cannot re-create the address space: {0}")]
    Map(Errno),
}

/// Re-pins the file pages of every direct VMA. The restored file must hold
/// them where the mapping says; if it no longer lists them (it was
/// truncated while mapped, so the pages were the mapping's alone), the
/// mapping keeps them as its own backing, which then must not overlap any
/// other, nor any file's pages. On error every pin taken is dropped again.
fn pin_direct(
    vmas: &mut BTreeMap<u64, Vma>,
    backing: &mut BTreeMap<u64, u64>,
    mf: &MemoryFile,
) -> Result<(), RestoreError> {
    let mut pinned: Vec<(Arc<dyn MappableFile>, u64, u64, u64)> = Vec::new();
    let mut result = Ok(());
    for (index, v) in vmas.values_mut().enumerate() {
        let Some(fb) = v.file.as_ref().filter(|_| v.direct) else {
            continue;
        };
        let len = v.len();
        match fb.file.map_shared(fb.offset, len) {
            Some(off) if off == v.mf_offset => {
                pinned.push((fb.file.clone(), fb.offset, off, len));
                continue;
            }
            Some(off) => fb.file.unmap_shared(fb.offset, off, len),
            None => {}
        }
        let end = v.mf_offset + len;
        let overlaps = backing
            .range(..end)
            .next_back()
            .is_some_and(|(_, e)| *e > v.mf_offset);
        // Claimed last, so that a range already given to a file (or to
        // another mapping) is refused here.
        if overlaps || mf.claim_restored(v.mf_offset, len).is_err() {
            result = Err(RestoreError::BadVma {
                index,
                start: v.start,
                end: v.end,
                why: "memory range shared with another mapping",
            });
            break;
        }
        backing.insert(v.mf_offset, end);
        v.direct = false;
    }
    if result.is_err() {
        for (file, offset, off, len) in pinned {
            file.unmap_shared(offset, off, len);
        }
    }
    result
}

impl MmState {
    /// Checks every value against this host's `layout` before anything is
    /// created: page size, each VMA (aligned, non-empty, ordered without
    /// overlap, inside the usable address range, backed by allocated
    /// memory-file pages no other VMA uses, protections within their
    /// maximum, file offsets aligned) and brk. `is_allocated(offset, len)`
    /// says whether the memory file holds that range.
    pub fn validate(
        &self,
        layout: &Layout,
        is_allocated: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), RestoreError> {
        let state = self;
        if state.page_size != layout.page_size {
            return Err(RestoreError::PageSize {
                saved: state.page_size,
                host: layout.page_size,
            });
        }
        let (min_addr, top) = usable_range(layout);
        let page = layout.page_size;
        let too_small = |highest: u64| RestoreError::AddressSpaceTooSmall {
            highest,
            top,
            va_bits: layout.va_bits,
        };
        if state.highest_address > top {
            return Err(too_small(state.highest_address));
        }
        let mut backing: BTreeMap<u64, u64> = BTreeMap::new();
        let mut prev_end = 0u64;
        for (index, s) in state.vmas.iter().enumerate() {
            let bad = |why| RestoreError::BadVma {
                index,
                start: s.start,
                end: s.end,
                why,
            };
            if (s.start | s.end | s.mf_offset) & (page - 1) != 0 {
                return Err(bad("not page-aligned"));
            }
            if s.start >= s.end {
                return Err(bad("empty or reversed"));
            }
            if s.end > top {
                return Err(too_small(s.end));
            }
            if s.start < min_addr {
                return Err(bad("below the lowest mappable address"));
            }
            if s.start < prev_end {
                return Err(bad("overlaps or is out of order"));
            }
            prev_end = s.end;
            let len = s.end - s.start;
            let mf_end = s
                .mf_offset
                .checked_add(len)
                .ok_or_else(|| bad("memory offset overflows"))?;
            if !is_allocated(s.mf_offset, len) {
                return Err(bad("memory range not in the memory file"));
            }
            if s.direct && !(s.shared && s.file.is_some()) {
                return Err(bad("direct backing without a shared file"));
            }
            // A direct mapping's pages are its file's (checked when they are
            // pinned below); every other backing is the mapping's own.
            if !s.direct {
                if let Some((_, e)) = backing.range(..mf_end).next_back() {
                    if *e > s.mf_offset {
                        return Err(bad("memory range shared with another mapping"));
                    }
                }
                backing.insert(s.mf_offset, mf_end);
            }
            if (s.prot.read && !s.max_prot.read)
                || (s.prot.write && !s.max_prot.write)
                || (s.prot.exec && !s.max_prot.exec)
            {
                return Err(bad("protection exceeds its maximum"));
            }
            if let Some(f) = &s.file {
                if f.offset & (page - 1) != 0 || f.offset.checked_add(len).is_none() {
                    return Err(bad("file offset unaligned or overflowing"));
                }
                if f.name.is_empty() || f.name.len() > 4096 || f.name.contains('\0') {
                    return Err(bad("file name empty, too long or with a NUL"));
                }
            }
        }
        let brk_ok = state.brk_start <= state.brk
            && state.brk <= top
            && state.brk_start & (page - 1) == 0
            && (state.brk_start == 0 || state.brk_start >= min_addr);
        if !brk_ok {
            return Err(RestoreError::BadBrk {
                brk_start: state.brk_start,
                brk: state.brk,
            });
        }
        Ok(())
    }
}

impl MemoryManager {
    /// The state to save. Call with the application stopped.
    pub fn snapshot(&self) -> MmState {
        MmState {
            page_size: self.layout.page_size,
            highest_address: self.highest_address(),
            vmas: self.vmas.values().map(Vma::state).collect(),
            brk_start: self.brk_start,
            brk: self.brk,
            stack_limit: self.stack_limit,
        }
    }

    /// Re-creates a saved address space in `aspace` (fresh, empty) on this
    /// host's `layout`. `mf` must already hold the saved allocations and
    /// contents ([`MemoryFile::restore_allocations`]); the state is checked
    /// first ([`MmState::validate`]). Files are re-opened by name through
    /// `reopen`, once each.
    pub fn from_snapshot(
        state: &MmState,
        layout: Layout,
        mf: Arc<MemoryFile>,
        aspace: Arc<dyn AddressSpace>,
        reopen: &OpenFn<'_>,
    ) -> Result<MemoryManager, RestoreError> {
        state.validate(&layout, &|offset, len| mf.is_allocated(offset, len))?;
        // Each mapping's own backing is claimed against every other owner
        // of restored memory (tmpfs files first of all).
        let mut backing: BTreeMap<u64, u64> = BTreeMap::new();
        for (index, s) in state.vmas.iter().enumerate().filter(|(_, s)| !s.direct) {
            let len = s.end - s.start;
            if mf.claim_restored(s.mf_offset, len).is_err() {
                return Err(RestoreError::BadVma {
                    index,
                    start: s.start,
                    end: s.end,
                    why: "memory range belongs to a file",
                });
            }
            backing.insert(s.mf_offset, s.mf_offset + len);
        }
        let mut vmas = BTreeMap::new();
        let mut files: HashMap<String, Arc<dyn MappableFile>> = HashMap::new();
        for s in &state.vmas {
            let file = match &s.file {
                None => None,
                Some(f) => {
                    let file = match files.get(&f.name) {
                        Some(file) => file.clone(),
                        None => {
                            let file = reopen(&f.name).map_err(|errno| RestoreError::Reopen {
                                name: f.name.clone(),
                                errno,
                            })?;
                            files.insert(f.name.clone(), file.clone());
                            file
                        }
                    };
                    Some(FileBacking {
                        file,
                        offset: f.offset,
                    })
                }
            };
            let vma = Vma {
                start: s.start,
                end: s.end,
                prot: s.prot,
                max_prot: s.max_prot,
                shared: s.shared,
                growsdown: s.growsdown && file.is_none(),
                ever_writable: s.ever_writable || s.prot.write,
                file,
                mf_offset: s.mf_offset,
                kind: s.kind,
                direct: s.direct,
            };
            vmas.insert(vma.start, vma);
        }
        let mut mm = MemoryManager::new(layout, mf, aspace).map_err(RestoreError::Map)?;
        mm.brk_start = state.brk_start;
        mm.brk = state.brk;
        mm.stack_limit = state.stack_limit;
        for v in vmas.values() {
            if let Err(e) = mm.aspace.map(v.start, v.len(), v.mf_offset, v.prot) {
                return Err(RestoreError::Map(platform_errno("map", e)));
            }
        }
        pin_direct(&mut vmas, &mut backing, &mm.mf)?;
        // Only now does the manager own the backing (and free it on drop).
        mm.vmas = vmas;
        Ok(mm)
    }
}
