//! Checkpoint and restore of a memory manager.
//!
//! The state is the VMA metadata, the backing map (address range ->
//! memory-file offset) and brk; the memory itself is the memory file's
//! section of the statefile, saved and loaded through
//! [`MemoryFile::allocated_ranges`], [`MemoryFile::data_ranges`],
//! [`MemoryFile::restore_allocations`] and `read_at`/`write_at`. Address
//! spaces that share pages (after fork) name the same offsets, so a shared
//! page is stored once; restore rebuilds its reference count from every
//! address space that names it ([`MemoryFile::share_restored`]). A snapshot
//! is untrusted input on restore: every value is validated and a bad one is
//! an error, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use platform::{AddressSpace, Layout};
use serde::{Deserialize, Serialize};

use super::file::{MappableFile, OpenFn};
use super::manager::{platform_errno, usable_range, MemoryManager};
use super::memory_file::{FileRange, MemoryFile};
use super::pma::{Piece, Pmas};
use super::vma::{FileBacking, Vma, VmaKind, VmaState, VmaStateV2, VmaStateV3};
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
    /// Where the pages of every non-direct VMA live, in address order
    /// (since v2): exactly those VMAs' addresses are covered.
    pub backing: Vec<BackingState>,
    pub brk_start: u64,
    pub brk: u64,
    pub stack_limit: u64,
}

statefile::versioned!(MmState, "mm.MmState", 3, [VmaState, BackingState]);

/// Version 2 of [`MmState`]: VMA kinds without the vDSO's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmStateV2 {
    pub page_size: u64,
    pub highest_address: u64,
    pub vmas: Vec<VmaStateV3>,
    pub backing: Vec<BackingState>,
    pub brk_start: u64,
    pub brk: u64,
    pub stack_limit: u64,
}
statefile::versioned!(MmStateV2, "mm.MmState", 2, [VmaStateV3, BackingState]);

impl From<MmStateV2> for MmState {
    /// The same address space, which had no vDSO.
    fn from(v2: MmStateV2) -> MmState {
        MmState {
            page_size: v2.page_size,
            highest_address: v2.highest_address,
            vmas: v2.vmas.into_iter().map(VmaState::from).collect(),
            backing: v2.backing,
            brk_start: v2.brk_start,
            brk: v2.brk,
            stack_limit: v2.stack_limit,
        }
    }
}

/// One run of an address space's backing map: `[start, end)` lives at
/// `mf_offset` in the memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingState {
    pub start: u64,
    pub end: u64,
    pub mf_offset: u64,
}
statefile::versioned!(BackingState, "mm.Backing", 1);

/// Version 1 of [`MmState`]: each VMA's backing is one contiguous range at
/// its `mf_offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmStateV1 {
    pub page_size: u64,
    pub highest_address: u64,
    pub vmas: Vec<VmaStateV2>,
    pub brk_start: u64,
    pub brk: u64,
    pub stack_limit: u64,
}
statefile::versioned!(MmStateV1, "mm.MmState", 1, [VmaStateV2]);

impl From<MmStateV1> for MmStateV2 {
    /// Each non-direct VMA's contiguous range becomes one backing run; no
    /// fork advice was recorded then.
    fn from(v1: MmStateV1) -> MmStateV2 {
        let mut backing = Vec::new();
        let vmas = v1
            .vmas
            .into_iter()
            .map(|v| {
                if !v.direct {
                    backing.push(BackingState {
                        start: v.start,
                        end: v.end,
                        mf_offset: v.mf_offset,
                    });
                }
                VmaStateV3 {
                    start: v.start,
                    end: v.end,
                    prot: v.prot,
                    max_prot: v.max_prot,
                    shared: v.shared,
                    growsdown: v.growsdown,
                    ever_writable: v.ever_writable,
                    file: v.file,
                    mf_offset: if v.direct { v.mf_offset } else { 0 },
                    kind: v.kind,
                    direct: v.direct,
                    dontfork: false,
                    wipeonfork: false,
                }
            })
            .collect();
        MmStateV2 {
            page_size: v1.page_size,
            highest_address: v1.highest_address,
            vmas,
            backing,
            brk_start: v1.brk_start,
            brk: v1.brk,
            stack_limit: v1.stack_limit,
        }
    }
}
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

/// A mapping of a file with no name (a memfd, an O_TMPFILE file, one
/// unlinked since): the VMA starting at `start` maps saved open file
/// `open_file` (a `vfs.OpenFile` of the statefile, shared with the
/// descriptor tables), as Linux's VMA holds its `struct file`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnnamedMappingRecord {
    pub start: u64,
    pub open_file: u64,
}
statefile::versioned!(UnnamedMappingRecord, "mm.UnnamedMapping", 1);

/// An address space's saved form: VMAs with their memory-file offsets, brk,
/// and the files its mappings come from: by path (`files`), or, for files
/// with no name, by the saved open file each such VMA maps (`unnamed`,
/// since v4).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MmRecord {
    pub mm: MmState,
    pub files: Vec<MappedFileRecord>,
    pub unnamed: Vec<UnnamedMappingRecord>,
}
statefile::versioned!(
    MmRecord,
    "mm.MemoryManager",
    4,
    [MmState, MappedFileRecord, UnnamedMappingRecord]
);

/// Version 3 of the address space's record: every mapped file by path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MmRecordV3 {
    pub mm: MmState,
    pub files: Vec<MappedFileRecord>,
}
statefile::versioned!(
    MmRecordV3,
    "mm.MemoryManager",
    3,
    [MmState, MappedFileRecord]
);

/// Version 2 of the address space's record (no vDSO).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MmRecordV2 {
    pub mm: MmStateV2,
    pub files: Vec<MappedFileRecord>,
}
statefile::versioned!(
    MmRecordV2,
    "mm.MemoryManager",
    2,
    [MmStateV2, MappedFileRecord]
);

/// Version 1 of the address space's record (VMAs with contiguous backing).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MmRecordV1 {
    pub mm: MmStateV1,
    pub files: Vec<MappedFileRecord>,
}
statefile::versioned!(
    MmRecordV1,
    "mm.MemoryManager",
    1,
    [MmStateV1, MappedFileRecord]
);

impl statefile::Savable for MmRecord {
    const TYPE_NAME: &'static str = "mm.MemoryManager";
    const VERSION: u32 = 4;
    const MIN_VERSION: u32 = 1;

    fn save(&self, enc: &mut statefile::Encoder) -> statefile::Result<()> {
        enc.serde(self)
    }

    /// Older versions are decoded in their own layout (their nested types
    /// checked at the versions they were written with) and migrated: v1's
    /// VMA ranges become backing runs; v1 and v2 had no vDSO (the restored
    /// program goes on without one, as it ran); before v4 a checkpoint
    /// refused mappings of files with no name, so none is listed.
    fn load(dec: &mut statefile::Decoder<'_>, version: u32) -> statefile::Result<Self> {
        if version == 1 {
            statefile::check_saved_versions::<MmRecordV1>(dec.types())?;
            return dec.serde::<MmRecordV1>().map(|v1| MmRecord {
                mm: MmStateV2::from(v1.mm).into(),
                files: v1.files,
                unnamed: Vec::new(),
            });
        }
        if version == 2 {
            statefile::check_saved_versions::<MmRecordV2>(dec.types())?;
            return dec.serde::<MmRecordV2>().map(|v2| MmRecord {
                mm: v2.mm.into(),
                files: v2.files,
                unnamed: Vec::new(),
            });
        }
        if version == 3 {
            statefile::check_saved_versions::<MmRecordV3>(dec.types())?;
            return dec.serde::<MmRecordV3>().map(|v3| MmRecord {
                mm: v3.mm,
                files: v3.files,
                unnamed: Vec::new(),
            });
        }
        statefile::check_saved_versions::<Self>(dec.types())?;
        dec.serde()
    }

    fn register(types: &mut statefile::TypeTable) -> statefile::Result<()> {
        statefile::register_versioned::<Self>(types)
    }
}

/// The memory file's saved form: which ranges hold pages (the memory
/// section has their contents).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemoryFileRecord {
    pub ranges: Vec<FileRange>,
}
statefile::savable_serde!(MemoryFileRecord, "mm.MemoryFile", 1, [FileRange]);

impl MemoryManager {
    /// The mappings of files with no name left to re-open them by after a
    /// restore (see [`super::MappableFile::unnamed`]), by start address.
    pub fn unnamed_mappings(&self) -> Vec<(u64, Arc<dyn MappableFile>)> {
        self.vmas
            .values()
            .filter(|v| v.kind != VmaKind::Vvar)
            .filter_map(|v| Some((v.start, v.file.as_ref()?)))
            .filter(|(_, f)| f.file.unnamed())
            .map(|(start, f)| (start, f.file.clone()))
            .collect()
    }

    /// Every file mapped, once per mapping.
    pub fn mapped_files(&self) -> Vec<Arc<dyn MappableFile>> {
        self.vmas
            .values()
            .filter(|v| v.kind != VmaKind::Vvar)
            .filter_map(|v| Some(v.file.as_ref()?.file.clone()))
            .collect()
    }

    /// The address space's record; `fingerprint` names the current identity
    /// of a mapped file by its path in the container. Files with no name
    /// are left out of `files`: the caller lists their mappings in
    /// `unnamed` ([`MemoryManager::unnamed_mappings`]).
    pub fn save_record(&self, fingerprint: &dyn Fn(&str) -> Option<Fingerprint>) -> MmRecord {
        let mm = self.snapshot();
        let unnamed: std::collections::HashSet<u64> = self
            .unnamed_mappings()
            .into_iter()
            .map(|(start, _)| start)
            .collect();
        let mut files: BTreeMap<String, MappedFileRecord> = BTreeMap::new();
        for vma in mm.vmas.iter().filter(|v| !unnamed.contains(&v.start)) {
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
            unnamed: Vec::new(),
        }
    }
}

/// Gives the file a saved file VMA maps, at restore.
pub type OpenVmaFn<'a> = dyn Fn(&VmaState) -> Result<Arc<dyn MappableFile>, Errno> + 'a;

/// Why a snapshot cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum MmRestoreError {
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
    #[error("backing run {index} ({start:#x}-{end:#x}) is invalid: {why}")]
    BadBacking {
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
    pmas: &mut Pmas,
    backing: &mut BTreeMap<u64, u64>,
    mf: &MemoryFile,
) -> Result<(), MmRestoreError> {
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
            result = Err(MmRestoreError::BadVma {
                index,
                start: v.start,
                end: v.end,
                why: "memory range shared with another mapping",
            });
            break;
        }
        backing.insert(v.mf_offset, end);
        pmas.insert(Piece {
            start: v.start,
            end: v.end,
            off: v.mf_offset,
            cow: false,
        });
        v.mf_offset = 0;
        v.direct = false;
    }
    if result.is_err() {
        for (file, offset, off, len) in pinned {
            file.unmap_shared(offset, off, len);
        }
    }
    result
}

/// The union of `ranges` (sorted by start, disjoint), touching ones merged.
fn coalesced(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    out
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
    ) -> Result<(), MmRestoreError> {
        let state = self;
        if state.page_size != layout.page_size {
            return Err(MmRestoreError::PageSize {
                saved: state.page_size,
                host: layout.page_size,
            });
        }
        let (min_addr, top) = usable_range(layout);
        let page = layout.page_size;
        let too_small = |highest: u64| MmRestoreError::AddressSpaceTooSmall {
            highest,
            top,
            va_bits: layout.va_bits,
        };
        if state.highest_address > top {
            return Err(too_small(state.highest_address));
        }
        let mut prev_end = 0u64;
        for (index, s) in state.vmas.iter().enumerate() {
            let bad = |why| MmRestoreError::BadVma {
                index,
                start: s.start,
                end: s.end,
                why,
            };
            if (s.start | s.end | s.mf_offset) & (page - 1) != 0 {
                return Err(bad("not page-aligned"));
            }
            if !s.direct && s.mf_offset != 0 {
                return Err(bad("memory offset on a mapping backed by the backing map"));
            }
            if s.kind == VmaKind::Vvar
                && (s.end.checked_sub(s.start) != Some(crate::vdso::VVAR_SIZE)
                    || s.prot.write
                    || s.max_prot.write
                    || s.file.is_some()
                    || s.direct
                    || !s.shared
                    || s.growsdown
                    || s.wipeonfork)
            {
                return Err(bad("vDSO data page mapping not one read-only shared page"));
            }
            if s.wipeonfork && (s.shared || s.file.is_some() || s.direct) {
                return Err(bad("wipe-on-fork on a shared or file mapping"));
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
            if s.direct {
                // A direct mapping's pages are its file's (checked when they
                // are pinned); every other VMA's are in the backing map.
                if s.mf_offset.checked_add(len).is_none() {
                    return Err(bad("memory offset overflows"));
                }
                if !is_allocated(s.mf_offset, len) {
                    return Err(bad("memory range not in the memory file"));
                }
                if !(s.shared && s.file.is_some()) {
                    return Err(bad("direct backing without a shared file"));
                }
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
        self.validate_backing(page, top, is_allocated)?;
        let brk_ok = state.brk_start <= state.brk
            && state.brk <= top
            && state.brk_start & (page - 1) == 0
            && (state.brk_start == 0 || state.brk_start >= min_addr);
        if !brk_ok {
            return Err(MmRestoreError::BadBrk {
                brk_start: state.brk_start,
                brk: state.brk,
            });
        }
        Ok(())
    }
}

impl MmState {
    /// The backing map: runs aligned, non-empty, in address order without
    /// overlap, inside the address space, on allocated memory-file pages,
    /// no page named twice in this address space (others may name it: fork
    /// shares pages), and covering exactly the non-direct VMAs.
    fn validate_backing(
        &self,
        page: u64,
        top: u64,
        is_allocated: &dyn Fn(u64, u64) -> bool,
    ) -> Result<(), MmRestoreError> {
        let mut prev_end = 0u64;
        let mut by_offset: Vec<(u64, u64, usize)> = Vec::with_capacity(self.backing.len());
        for (index, b) in self.backing.iter().enumerate() {
            let bad = |why| MmRestoreError::BadBacking {
                index,
                start: b.start,
                end: b.end,
                why,
            };
            if (b.start | b.end | b.mf_offset) & (page - 1) != 0 {
                return Err(bad("not page-aligned"));
            }
            if b.start >= b.end {
                return Err(bad("empty or reversed"));
            }
            if b.start < prev_end {
                return Err(bad("overlaps or is out of order"));
            }
            if b.end > top {
                return Err(bad("beyond the address space"));
            }
            prev_end = b.end;
            let len = b.end - b.start;
            let mf_end = b
                .mf_offset
                .checked_add(len)
                .ok_or_else(|| bad("memory offset overflows"))?;
            if !is_allocated(b.mf_offset, len) {
                return Err(bad("memory range not in the memory file"));
            }
            by_offset.push((b.mf_offset, mf_end, index));
        }
        by_offset.sort_unstable();
        for w in by_offset.windows(2) {
            if w[1].0 < w[0].1 {
                let b = &self.backing[w[1].2];
                return Err(MmRestoreError::BadBacking {
                    index: w[1].2,
                    start: b.start,
                    end: b.end,
                    why: "memory range used twice in one address space",
                });
            }
        }
        let mapped = coalesced(
            self.vmas
                .iter()
                .filter(|v| !v.direct && v.kind != VmaKind::Vvar)
                .map(|v| (v.start, v.end)),
        );
        let backed = coalesced(self.backing.iter().map(|b| (b.start, b.end)));
        if mapped != backed {
            // Name the first run that differs.
            let at = mapped
                .iter()
                .zip(backed.iter())
                .position(|(m, b)| m != b)
                .unwrap_or(mapped.len().min(backed.len()));
            let (start, end) = mapped.get(at).or(backed.get(at)).copied().unwrap_or((0, 0));
            return Err(MmRestoreError::BadBacking {
                index: self.backing.partition_point(|b| b.end <= start),
                start,
                end,
                why: "backing does not cover exactly the mappings",
            });
        }
        Ok(())
    }
}

impl MemoryManager {
    /// The backing map as saved: runs that continue each other (in
    /// addresses and offsets) are one, whatever their host protection.
    fn backing_state(&self) -> Vec<BackingState> {
        let mut out: Vec<BackingState> = Vec::new();
        for p in self.pmas.iter() {
            match out.last_mut() {
                Some(b) if b.end == p.start && b.mf_offset + (b.end - b.start) == p.off => {
                    b.end = p.end
                }
                _ => out.push(BackingState {
                    start: p.start,
                    end: p.end,
                    mf_offset: p.off,
                }),
            }
        }
        out
    }

    /// The state to save. Call with the application stopped.
    pub fn snapshot(&self) -> MmState {
        MmState {
            page_size: self.layout.page_size,
            highest_address: self.highest_address(),
            vmas: self.vmas.values().map(Vma::state).collect(),
            backing: self.backing_state(),
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
    ///
    /// Several address spaces sharing pages (saved after fork) are restored
    /// by calling this once for each, into one memory file, before
    /// [`MemoryFile::finish_restore`]: each page ends with one reference per
    /// address space naming it. Because the others may not be restored yet,
    /// every private writable page is mapped copy-on-write: its first write
    /// fault copies it if it is shared, or makes it (and its unshared run)
    /// writable if not.
    pub fn from_snapshot(
        state: &MmState,
        layout: Layout,
        mf: Arc<MemoryFile>,
        aspace: Arc<dyn AddressSpace>,
        reopen: &OpenFn<'_>,
    ) -> Result<MemoryManager, MmRestoreError> {
        let opened: std::sync::Mutex<HashMap<String, Arc<dyn MappableFile>>> = Default::default();
        let open = |s: &VmaState| {
            let Some(f) = &s.file else {
                return Err(Errno::EINVAL);
            };
            let mut opened = opened.lock().map_err(|_| Errno::EIO)?;
            if let Some(file) = opened.get(&f.name) {
                return Ok(file.clone());
            }
            let file = reopen(&f.name)?;
            opened.insert(f.name.clone(), file.clone());
            Ok(file)
        };
        Self::from_snapshot_with(state, layout, mf, aspace, &open)
    }

    /// [`MemoryManager::from_snapshot`] with the file of each file VMA
    /// given by `open` from its saved state: a restore finds files with no
    /// name by the VMA, not by the name it shows.
    pub fn from_snapshot_with(
        state: &MmState,
        layout: Layout,
        mf: Arc<MemoryFile>,
        aspace: Arc<dyn AddressSpace>,
        open: &OpenVmaFn<'_>,
    ) -> Result<MemoryManager, MmRestoreError> {
        state.validate(&layout, &|offset, len| mf.is_allocated(offset, len))?;
        // Each backing run is claimed against every other owner of restored
        // memory (tmpfs files first of all); address spaces may share runs.
        let mut backing: BTreeMap<u64, u64> = BTreeMap::new();
        for (index, b) in state.backing.iter().enumerate() {
            let len = b.end - b.start;
            if mf.share_restored(b.mf_offset, len).is_err() {
                return Err(MmRestoreError::BadBacking {
                    index,
                    start: b.start,
                    end: b.end,
                    why: "memory range belongs to a file",
                });
            }
            backing.insert(b.mf_offset, b.mf_offset + len);
        }
        let mut vmas = BTreeMap::new();
        let vvar = crate::vdso::VvarFile::of(&mf);
        for (index, s) in state.vmas.iter().enumerate() {
            if s.kind == VmaKind::Vvar {
                // This kernel's data page, for this host's clocks.
                let (Some(file), Some(off)) = (vvar.clone(), mf.vvar()) else {
                    return Err(MmRestoreError::BadVma {
                        index,
                        start: s.start,
                        end: s.end,
                        why: "a vDSO data page, but this kernel has none",
                    });
                };
                let vma = Vma {
                    start: s.start,
                    end: s.end,
                    prot: s.prot,
                    max_prot: s.max_prot,
                    shared: true,
                    growsdown: false,
                    ever_writable: false,
                    file: Some(FileBacking { file, offset: 0 }),
                    mf_offset: off,
                    kind: VmaKind::Vvar,
                    direct: true,
                    dontfork: s.dontfork,
                    wipeonfork: false,
                };
                vmas.insert(vma.start, vma);
                continue;
            }
            let file = match &s.file {
                None => None,
                Some(f) => {
                    let file = open(s).map_err(|errno| MmRestoreError::Reopen {
                        name: f.name.clone(),
                        errno,
                    })?;
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
                dontfork: s.dontfork,
                wipeonfork: s.wipeonfork,
            };
            vmas.insert(vma.start, vma);
        }
        let mut pmas = Pmas::default();
        for b in &state.backing {
            pmas.insert(Piece {
                start: b.start,
                end: b.end,
                off: b.mf_offset,
                cow: false,
            });
        }
        let mut mm = MemoryManager::new(layout, mf, aspace).map_err(MmRestoreError::Map)?;
        mm.brk_start = state.brk_start;
        mm.brk = state.brk;
        mm.stack_limit = state.stack_limit;
        // Pages with no file page are found again, mapped without access.
        for v in vmas.values().filter(|v| v.file.is_some() && !v.direct) {
            let runs = super::nopage::nopages_of(v, &pmas.pieces(v.start, v.end), layout.page_size)
                .map_err(|errno| MmRestoreError::Reopen {
                    name: v
                        .file
                        .as_ref()
                        .map(|f| f.file.mapping_name())
                        .unwrap_or_default(),
                    errno,
                })?;
            for (start, n) in runs {
                mm.nopage.insert(start, n);
            }
        }
        for v in vmas.values() {
            let cow = !v.shared && !v.direct && v.prot.write;
            for p in backing_pieces(&pmas, v) {
                let p = Piece { cow, ..p };
                // Pages of a lazy restore not loaded yet are mapped without
                // access: the first touch faults and loads them.
                for (q, prot) in mm.host_parts(v, &p) {
                    if let Err(e) = mm.aspace.map(q.start, q.len(), q.off, prot) {
                        return Err(MmRestoreError::Map(platform_errno("map", e)));
                    }
                }
                if cow {
                    pmas.take(p.start, p.end);
                    pmas.insert(p);
                }
            }
        }
        pin_direct(&mut vmas, &mut pmas, &mut backing, &mm.mf)?;
        // Only now does the manager own the backing (and free it on drop).
        mm.vmas = vmas.into_values().collect();
        mm.pmas = pmas;
        Ok(mm)
    }
}

/// The pages of `v` as mapped at restore: its backing runs, or a direct
/// VMA's file pages.
fn backing_pieces(pmas: &Pmas, v: &Vma) -> Vec<Piece> {
    if v.direct {
        return vec![Piece {
            start: v.start,
            end: v.end,
            off: v.mf_offset,
            cow: false,
        }];
    }
    pmas.pieces(v.start, v.end)
}
