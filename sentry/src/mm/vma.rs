//! Virtual memory areas: gVisor's mm.vma.
//!
//! A VMA is mapping metadata only: where its bytes live is the memory
//! manager's backing map (`pma.rs`), which may cut one VMA's pages into
//! several memory-file runs (after fork and copy-on-write), shared with
//! other address spaces.
//!
//! The exception is a `direct` VMA: a shared mapping of a file whose pages
//! are memory-file pages (tmpfs), which maps the file's own pages, pinned
//! in the file, as one run starting at `mf_offset`, and never frees them.

use std::sync::Arc;

use platform::Prot;
use serde::{Deserialize, Serialize};

use super::file::MappableFile;

/// What a VMA is, for /proc/self/maps and for brk and stack bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// An ordinary mapping (anonymous, or of the VMA's file).
    Normal,
    /// Part of the brk heap: `[heap]`.
    Heap,
    /// The initial thread's stack: `[stack]`.
    Stack,
    /// The vDSO's image: `[vdso]` (since v2). Ordinary private memory.
    Vdso,
    /// The vDSO's data page: `[vvar]` (since v2), the kernel's one page
    /// shared by every address space; saved as its place only, and mapped
    /// onto the restoring kernel's page.
    Vvar,
}
statefile::versioned!(VmaKind, "mm.VmaKind", 2);

/// Version 1 of [`VmaKind`]: no vDSO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKindV1 {
    Normal,
    Heap,
    Stack,
}
statefile::versioned!(VmaKindV1, "mm.VmaKind", 1);

impl From<VmaKindV1> for VmaKind {
    fn from(k: VmaKindV1) -> VmaKind {
        match k {
            VmaKindV1::Normal => VmaKind::Normal,
            VmaKindV1::Heap => VmaKind::Heap,
            VmaKindV1::Stack => VmaKind::Stack,
        }
    }
}

/// The file behind a file mapping.
#[derive(Clone)]
pub struct FileBacking {
    pub file: Arc<dyn MappableFile>,
    /// The file offset of the VMA's first page.
    pub offset: u64,
}

impl std::fmt::Debug for FileBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{:#x}", self.file.mapping_name(), self.offset)
    }
}

/// One mapping of the application's address space.
#[derive(Clone, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    /// The most `prot` may become (mprotect): a shared mapping of a file
    /// opened read-only may never become writable.
    pub max_prot: Prot,
    /// MAP_SHARED (writes reach the file, or are shared across fork).
    pub shared: bool,
    /// MAP_GROWSDOWN: a fault just below grows it.
    pub growsdown: bool,
    /// Whether the mapping was ever writable: only such shared file mappings
    /// are written back to their file.
    pub ever_writable: bool,
    pub file: Option<FileBacking>,
    /// For a `direct` VMA, the memory-file offset of `start`; unused (0)
    /// otherwise: other VMAs are backed through the backing map.
    pub mf_offset: u64,
    pub kind: VmaKind,
    /// The backing is the file's own pages (see the module comment).
    pub direct: bool,
    /// MADV_DONTFORK: a fork's child does not get this mapping.
    pub dontfork: bool,
    /// MADV_WIPEONFORK: a fork's child gets fresh zero pages here.
    pub wipeonfork: bool,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The memory-file offset of `addr` (inside the VMA) of a direct VMA.
    pub fn mf_offset_of(&self, addr: u64) -> u64 {
        self.mf_offset + (addr - self.start)
    }

    /// The file offset of `addr` for a file mapping.
    pub fn file_offset_of(&self, addr: u64) -> Option<u64> {
        self.file.as_ref().map(|f| f.offset + (addr - self.start))
    }

    /// Splits at `addr` (strictly inside) into `[start, addr)` and `[addr, end)`.
    pub fn split(&self, addr: u64) -> (Vma, Vma) {
        debug_assert!(self.start < addr && addr < self.end);
        let mut low = self.clone();
        let mut high = self.clone();
        low.end = addr;
        high.start = addr;
        if self.direct {
            high.mf_offset = self.mf_offset_of(addr);
        }
        if let Some(f) = high.file.as_mut() {
            f.offset += addr - self.start;
        }
        (low, high)
    }

    /// The name /proc/self/maps shows.
    pub fn name(&self) -> Option<String> {
        match (&self.file, self.kind) {
            (_, VmaKind::Vvar) => Some(crate::vdso::VVAR_NAME.to_string()),
            (_, VmaKind::Vdso) => Some("[vdso]".to_string()),
            (Some(f), _) => Some(f.file.mapping_name()),
            (None, VmaKind::Heap) => Some("[heap]".to_string()),
            (None, VmaKind::Stack) => Some("[stack]".to_string()),
            (None, VmaKind::Normal) => None,
        }
    }

    /// One line of /proc/self/maps, without the newline.
    pub fn maps_line(&self) -> String {
        let flag = |b: bool, c: char| if b { c } else { '-' };
        let line = format!(
            "{:08x}-{:08x} {}{}{}{} {:08x} 00:00 0",
            self.start,
            self.end,
            flag(self.prot.read, 'r'),
            flag(self.prot.write, 'w'),
            flag(self.prot.exec, 'x'),
            // Linux's [vvar] is a private special mapping.
            if self.shared && self.kind != VmaKind::Vvar {
                's'
            } else {
                'p'
            },
            self.file.as_ref().map_or(0, |f| f.offset),
        );
        match self.name() {
            // Linux pads the name to column 73.
            Some(name) => format!("{line:<72} {name}"),
            None => line,
        }
    }

    pub fn state(&self) -> VmaState {
        if self.kind == VmaKind::Vvar {
            // Only its place: the page is the restoring kernel's.
            return VmaState {
                start: self.start,
                end: self.end,
                prot: self.prot,
                max_prot: self.max_prot,
                shared: true,
                growsdown: false,
                ever_writable: false,
                file: None,
                mf_offset: 0,
                kind: VmaKind::Vvar,
                direct: false,
                dontfork: self.dontfork,
                wipeonfork: false,
            };
        }
        VmaState {
            start: self.start,
            end: self.end,
            prot: self.prot,
            max_prot: self.max_prot,
            shared: self.shared,
            growsdown: self.growsdown,
            ever_writable: self.ever_writable,
            file: self.file.as_ref().map(|f| FileState {
                name: f.file.mapping_name(),
                offset: f.offset,
            }),
            mf_offset: if self.direct { self.mf_offset } else { 0 },
            kind: self.kind,
            direct: self.direct,
            dontfork: self.dontfork,
            wipeonfork: self.wipeonfork,
        }
    }
}

/// The saved form of a file backing: the file's path in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub name: String,
    pub offset: u64,
}
statefile::versioned!(FileState, "mm.FileBacking", 1);

/// The saved form of a [`Vma`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaState {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub max_prot: Prot,
    pub shared: bool,
    pub growsdown: bool,
    pub ever_writable: bool,
    pub file: Option<FileState>,
    /// Where a direct VMA's pages are; 0 for every other VMA, whose backing
    /// the address space's backing map records (`MmState::backing`).
    pub mf_offset: u64,
    pub kind: VmaKind,
    /// The backing is the mapped file's own pages: restore re-pins them in
    /// the restored file (which must still hold them at `mf_offset`).
    pub direct: bool,
    /// MADV_DONTFORK (since v3).
    pub dontfork: bool,
    /// MADV_WIPEONFORK (since v3).
    pub wipeonfork: bool,
}
statefile::versioned!(VmaState, "mm.Vma", 4, [Prot, FileState, VmaKind]);

/// Version 3 of a VMA's saved form: the same fields, kinds without the vDSO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaStateV3 {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub max_prot: Prot,
    pub shared: bool,
    pub growsdown: bool,
    pub ever_writable: bool,
    pub file: Option<FileState>,
    pub mf_offset: u64,
    pub kind: VmaKindV1,
    pub direct: bool,
    pub dontfork: bool,
    pub wipeonfork: bool,
}
statefile::versioned!(VmaStateV3, "mm.Vma", 3, [Prot, FileState, VmaKindV1]);

impl From<VmaStateV3> for VmaState {
    fn from(v: VmaStateV3) -> VmaState {
        VmaState {
            start: v.start,
            end: v.end,
            prot: v.prot,
            max_prot: v.max_prot,
            shared: v.shared,
            growsdown: v.growsdown,
            ever_writable: v.ever_writable,
            file: v.file,
            mf_offset: v.mf_offset,
            kind: v.kind.into(),
            direct: v.direct,
            dontfork: v.dontfork,
            wipeonfork: v.wipeonfork,
        }
    }
}

/// Version 2 of a VMA's saved form: each VMA backed by one contiguous
/// memory-file range at `mf_offset`, no fork advice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaStateV2 {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub max_prot: Prot,
    pub shared: bool,
    pub growsdown: bool,
    pub ever_writable: bool,
    pub file: Option<FileState>,
    pub mf_offset: u64,
    pub kind: VmaKindV1,
    pub direct: bool,
}
statefile::versioned!(VmaStateV2, "mm.Vma", 2, [Prot, FileState, VmaKindV1]);
