//! cryo's statefile: the on-disk format a frozen sandbox is written to. This
//! crate knows the format alone, nothing of the kernel.
//!
//! # Writing
//!
//! ```
//! use statefile::{Compression, Encoder, Header, MemoryOptions, Reader, SectionKind, Writer};
//! # fn main() -> statefile::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("ckpt.cryo");
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Uts { hostname: String }
//! statefile::savable_serde!(Uts, "kernel.Uts", 1);
//!
//! let header = Header::new("cryo 0.1.0").with("container-id", "abc");
//! let mut w = Writer::create(&path, header)?;          // temp file beside `path`
//! let mut enc = Encoder::new();
//! enc.put(&Uts { hostname: "sandbox".into() })?;       // records kernel.Uts -> 1
//! w.write_state(SectionKind::Kernel, "", Compression::default(), &enc)?;
//! let memory = vec![7u8; 64 * 4096];
//! w.write_memory("memfile", &memory, &MemoryOptions::default())?;
//! w.finish()?;                                           // fsync + rename
//!
//! let r = Reader::open(&path)?;                          // header, index, trailer checked
//! r.verify()?;                                           // every checksum, every chunk
//! let uts: Uts = r.load(SectionKind::Kernel, "")?;
//! let mut restored = vec![0u8; memory.len()];
//! r.memory("memfile")?.restore_into(&mut restored)?;
//! assert_eq!(restored, memory);
//! # Ok(()) }
//! ```
//!
//! # Byte layout (format version 1)
//!
//! All integers are little-endian. A file is
//! `header | section* | index | trailer`.
//!
//! **Header** (`header_len` bytes, at offset 0):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `"CRYOSTAT"` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | `header_len`, including this prefix and the crc |
//! | 16 | 8 | `file_len`: total length of the complete file (0 while being written) |
//! | 24 | 1 | architecture: 1 x86_64, 2 aarch64 |
//! | 25 | 4 | page size (power of two, 4096..=65536) |
//! | 29 | 4+n | producer: u32 length + UTF-8 |
//! | .. | 4 | metadata count, then per pair: key, value (each u32 length + UTF-8) |
//! | header_len-4 | 4 | crc32 of bytes `[0, header_len-4)` |
//!
//! **Sections** follow, back to back (memory chunks may be preceded by zero
//! padding for alignment). A section's bytes are either raw or one or more
//! zstd frames; its kind, name, sizes and crc live in the index.
//!
//! **Index** (`index_len` bytes at `index_offset`): u32 count, then per
//! section: u32 kind (1 kernel, 2 memory, 3 memory-map, 4 type-table, other
//! codes for user kinds), name (u32 length + UTF-8, at most 255), u8
//! compression (0 none, 1 zstd), i32 zstd level, u64 offset, u64 stored
//! length, u64 uncompressed length, u32 crc32 of the stored bytes. Sections
//! are listed in file order and do not overlap.
//!
//! **Trailer** (last 32 bytes): u64 `index_offset`, u64 `index_len`, u32
//! crc32 of the index, u32 reserved (0), 8-byte magic `"CRYOEND\0"`.
//! `index_offset + index_len + 32 == file_len`.
//!
//! A reader checks, in order: magic, format version, `file_len` against the
//! actual length (a cut file is caught here), header crc, architecture,
//! trailer, index crc, each entry's bounds. Sections are checked (crc, then
//! decompressed size) when read; [`Reader::verify`] checks them all.
//!
//! **Type table** (section kind 4, raw): u32 count, then per type: name (u32
//! length + UTF-8), u32 version. Written by [`Writer::finish`] from every
//! type saved through an [`Encoder`] passed to [`Writer::write_state`].
//!
//! **Kernel sections** hold [`Savable`] records: u64 length, then the
//! object's bytes (its fields in bincode 2 standard encoding, nested records
//! framed the same way).
//!
//! **Memory** (kind 2, name N) holds chunks; its map (kind 3, same name N) is
//! bincode 2 standard encoding of `{ page_size: u32, image_len: u64,
//! chunk_pages: u32, chunks: [{ range: u64, offset: u64 (within the memory
//! section), stored_len: u64, compression: u8 (0 raw, 1 zstd), crc32: u32,
//! present: [u64; chunk_pages/64] }] }`. Chunk for range `r` covers image
//! pages `[r*chunk_pages, (r+1)*chunk_pages)` and stores the present pages of
//! that range packed in order; raw chunks start at a page-aligned file offset.
//! The memory section's index entry has `uncompressed_len` = present pages ×
//! page size and a crc over all its stored bytes (padding included).

mod error;
mod header;
mod index;
mod memory;
mod objects;
mod reader;
mod savable;
mod section;
mod wire;
mod writer;

pub use error::{Result, StatefileError};
pub use header::{Arch, Header, Prefix, FORMAT_VERSION, MAGIC, MAX_HEADER_LEN, PREFIX_LEN};
pub use index::{TRAILER_LEN, TRAILER_MAGIC};
pub use memory::{
    Chunk, ChunkInfo, FileSource, MappedChunk, MemoryOptions, MemoryReader, MemorySource,
    MemoryStats, MemoryTable, DEFAULT_CHUNK_PAGES, MAX_CHUNK_BYTES,
};
pub use objects::{ObjectEncoder, Objects, MAX_OBJECTS};
pub use reader::{OpenOptions, ReadAt, Reader, SectionReader};
pub use savable::{
    check_saved_versions, from_bytes, register_versioned, split_blob, to_bytes, Decoder, Encoder,
    Savable, TypeTable, TypeVisitor, Versioned,
};
pub use section::{
    max_uncompressed_len, Compression, SectionId, SectionInfo, SectionKind, DEFAULT_ZSTD_LEVEL,
    EXPANSION_SLACK, MAX_EXPANSION,
};
pub use writer::{AtomicFile, SectionWriter, Sink, Writer};

/// Reads just the header of a file (even a damaged one, as far as the header
/// itself is intact): what inspection tools print before anything else.
pub fn read_header(src: &impl ReadAt) -> Result<(Prefix, Header)> {
    let actual = src.size()?;
    let mut pre = vec![0u8; actual.min(PREFIX_LEN as u64) as usize];
    src.read_exact_at(&mut pre, 0)?;
    let prefix = Prefix::decode(&pre)?;
    if actual < prefix.header_len as u64 {
        return Err(StatefileError::Truncated {
            expected: prefix.file_len.max(prefix.header_len as u64),
            actual,
        });
    }
    let mut hb = vec![0u8; prefix.header_len as usize];
    src.read_exact_at(&mut hb, 0)?;
    Ok((prefix, header::decode(&prefix, &hb)?))
}

/// Starts the worker threads that compress and decompress memory chunks,
/// from the calling thread. Threads inherit the CPU affinity of the thread
/// that creates them, so a process whose threads get bound to one CPU (a
/// Sentry task thread is, with its stub) calls this first, while it may
/// still use every CPU; otherwise the pool is made on first use.
pub fn start_workers() {
    // An already-built global pool is the one wanted here too.
    let _ = rayon::ThreadPoolBuilder::new().build_global();
}
