//! What a section is: its kind, name, compression and sizes as recorded in the
//! index.

use std::fmt;

use crate::error::{Result, StatefileError};

/// What a section holds. Unknown codes are kept as `Other` so that a reader
/// can list (and skip) sections written by a newer producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SectionKind {
    /// The kernel's objects, encoded through `Encoder`.
    Kernel,
    /// Chunks of a memory image.
    Memory,
    /// The chunk map of the `Memory` section of the same name.
    MemoryMap,
    /// Type name -> version table of every `Savable` type in the file.
    TypeTable,
    /// Any other kind (user-defined codes start at 0x100).
    Other(u32),
}

impl SectionKind {
    pub fn code(self) -> u32 {
        match self {
            SectionKind::Kernel => 1,
            SectionKind::Memory => 2,
            SectionKind::MemoryMap => 3,
            SectionKind::TypeTable => 4,
            SectionKind::Other(c) => c,
        }
    }
    pub fn from_code(code: u32) -> SectionKind {
        match code {
            1 => SectionKind::Kernel,
            2 => SectionKind::Memory,
            3 => SectionKind::MemoryMap,
            4 => SectionKind::TypeTable,
            c => SectionKind::Other(c),
        }
    }
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionKind::Kernel => f.write_str("kernel"),
            SectionKind::Memory => f.write_str("memory"),
            SectionKind::MemoryMap => f.write_str("memory-map"),
            SectionKind::TypeTable => f.write_str("type-table"),
            SectionKind::Other(c) => write!(f, "other({c:#x})"),
        }
    }
}

/// How a section (or a memory chunk) is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// zstd at the given level (recorded for information; any level decodes).
    Zstd(i32),
}

/// Level 1: on memory images it runs near memcpy-bound speed on all cores
/// while still removing most of the redundancy of text-like pages; higher
/// levels cost several times the CPU for a few percent of size.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl Compression {
    pub(crate) fn code(self) -> (u8, i32) {
        match self {
            Compression::None => (0, 0),
            Compression::Zstd(l) => (1, l),
        }
    }
    pub(crate) fn from_code(code: u8, level: i32) -> Result<Compression> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd(level)),
            c => Err(StatefileError::CorruptIndex {
                reason: format!("unknown compression code {c}"),
            }),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(l) => write!(f, "zstd-{l}"),
        }
    }
}

/// A non-memory section may decompress to at most this many bytes per
/// stored byte (plus [`EXPANSION_SLACK`]). Readers refuse a larger claim
/// before decompressing anything, so the memory a section can cost is
/// bounded by what the file really holds: a small file cannot claim a
/// gigabyte. zstd itself reaches ~1:30000 on runs of one byte (a tmpfs
/// file of zeros); the writer pads such a section with a zstd skippable
/// frame up to this ratio, so files it writes always pass (costing at most
/// 1/32 of the section's size on disk).
pub const MAX_EXPANSION: u64 = 32;

/// Uncompressed bytes any section may claim beyond [`MAX_EXPANSION`] times
/// its stored length (so small sections never need padding).
pub const EXPANSION_SLACK: u64 = 64 << 10;

/// The most uncompressed bytes a non-memory section of `stored_len` stored
/// bytes may claim.
pub fn max_uncompressed_len(stored_len: u64) -> u64 {
    stored_len
        .saturating_mul(MAX_EXPANSION)
        .saturating_add(EXPANSION_SLACK)
}

/// The fewest stored bytes a non-memory section of `uncompressed_len`
/// bytes may have (the writer pads up to this).
pub(crate) fn min_stored_len(uncompressed_len: u64) -> u64 {
    uncompressed_len
        .saturating_sub(EXPANSION_SLACK)
        .div_ceil(MAX_EXPANSION)
}

/// Names a section: its kind and a name unique within that kind (often "").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SectionId {
    pub kind: SectionKind,
    pub name: String,
}

impl SectionId {
    pub fn new(kind: SectionKind, name: impl Into<String>) -> SectionId {
        SectionId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}/{}", self.kind, self.name)
        }
    }
}

/// One index entry: where a section is and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    pub id: SectionId,
    pub compression: Compression,
    /// Absolute offset of the first stored byte.
    pub offset: u64,
    /// Bytes stored in the file.
    pub stored_len: u64,
    /// Bytes after decompression. For a memory section, the sum of its
    /// chunks' uncompressed sizes.
    pub uncompressed_len: u64,
    /// crc32 of the stored bytes.
    pub crc32: u32,
}

impl SectionInfo {
    /// stored / uncompressed, 1.0 for an empty section.
    pub fn ratio(&self) -> f64 {
        if self.uncompressed_len == 0 {
            1.0
        } else {
            self.stored_len as f64 / self.uncompressed_len as f64
        }
    }
}
