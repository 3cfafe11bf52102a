//! The index and trailer at the end of the file. The trailer is found first
//! (fixed size, at the very end), it locates the index, and the index locates
//! every section: a file cut anywhere loses its trailer and is refused.

use std::collections::HashSet;

use crate::error::{Result, StatefileError};
use crate::section::{Compression, SectionId, SectionInfo, SectionKind};
use crate::wire::{Get, Put, Short};

/// Last 8 bytes of every complete statefile.
pub const TRAILER_MAGIC: [u8; 8] = *b"CRYOEND\0";
/// index offset u64, index length u64, index crc32 u32, reserved u32, magic.
pub const TRAILER_LEN: usize = 32;
/// An index larger than this is refused (about 400k sections).
pub const MAX_INDEX_LEN: u64 = 16 << 20;
pub(crate) const MAX_NAME: usize = 255;
const MIN_ENTRY_LEN: u64 = 4 + 4 + 1 + 4 + 8 + 8 + 8 + 4;

pub(crate) fn encode(entries: &[SectionInfo]) -> Vec<u8> {
    let mut p = Put::default();
    p.u32(entries.len() as u32);
    for e in entries {
        p.u32(e.id.kind.code());
        p.str(&e.id.name);
        let (code, level) = e.compression.code();
        p.u8(code);
        p.i32(level);
        p.u64(e.offset);
        p.u64(e.stored_len);
        p.u64(e.uncompressed_len);
        p.u32(e.crc32);
    }
    p.0
}

pub(crate) fn encode_trailer(
    index_offset: u64,
    index_len: u64,
    index_crc: u32,
) -> [u8; TRAILER_LEN] {
    let mut p = Put::default();
    p.u64(index_offset);
    p.u64(index_len);
    p.u32(index_crc);
    p.u32(0);
    p.bytes(&TRAILER_MAGIC);
    let mut out = [0u8; TRAILER_LEN];
    out.copy_from_slice(&p.0);
    out
}

/// Where the trailer says the index is.
#[derive(Debug, Clone, Copy)]
pub struct Trailer {
    pub index_offset: u64,
    pub index_len: u64,
    pub index_crc: u32,
}

/// Decodes and bounds-checks the trailer of a file of `file_len` bytes whose
/// header ends at `header_len`.
pub(crate) fn decode_trailer(
    data: &[u8; TRAILER_LEN],
    header_len: u64,
    file_len: u64,
) -> Result<Trailer> {
    let corrupt = |reason: String| StatefileError::CorruptTrailer { reason };
    if data[24..] != TRAILER_MAGIC {
        return Err(corrupt(format!("bad trailer magic {:02x?}", &data[24..])));
    }
    let mut g = Get::new(data);
    let s = |e: Short| corrupt(e.0);
    let index_offset = g.u64("index offset").map_err(s)?;
    let index_len = g.u64("index length").map_err(s)?;
    let index_crc = g.u32("index crc").map_err(s)?;
    let index_end = index_offset
        .checked_add(index_len)
        .and_then(|e| e.checked_add(TRAILER_LEN as u64));
    if index_offset < header_len || index_end != Some(file_len) {
        return Err(corrupt(format!(
            "index at {index_offset} of {index_len} bytes does not end where the trailer starts ({})",
            file_len.saturating_sub(TRAILER_LEN as u64)
        )));
    }
    if index_len > MAX_INDEX_LEN {
        return Err(StatefileError::LimitExceeded {
            what: "index length",
            value: index_len,
            limit: MAX_INDEX_LEN,
        });
    }
    Ok(Trailer {
        index_offset,
        index_len,
        index_crc,
    })
}

/// Decodes the index and checks every entry against the file's layout:
/// sections lie between the header and the index, in order, without overlap,
/// each (kind, name) once.
pub(crate) fn decode(data: &[u8], trailer: &Trailer, header_len: u64) -> Result<Vec<SectionInfo>> {
    let computed = crc32fast::hash(data);
    if computed != trailer.index_crc {
        return Err(StatefileError::IndexChecksum {
            stored: trailer.index_crc,
            computed,
        });
    }
    let corrupt = |reason: String| StatefileError::CorruptIndex { reason };
    let s = |e: Short| corrupt(e.0);
    let mut g = Get::new(data);
    let count = g.u32("section count").map_err(s)? as u64;
    if count.saturating_mul(MIN_ENTRY_LEN) > g.remaining() as u64 {
        return Err(corrupt(format!(
            "{count} sections cannot fit in an index of {} bytes",
            data.len()
        )));
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut seen = HashSet::new();
    let mut prev_end = header_len;
    for _ in 0..count {
        let kind = SectionKind::from_code(g.u32("section kind").map_err(s)?);
        let name = g.str("section name", MAX_NAME).map_err(s)?;
        let code = g.u8("compression").map_err(s)?;
        let level = g.i32("compression level").map_err(s)?;
        let compression = Compression::from_code(code, level)?;
        let offset = g.u64("section offset").map_err(s)?;
        let stored_len = g.u64("stored length").map_err(s)?;
        let uncompressed_len = g.u64("uncompressed length").map_err(s)?;
        let crc32 = g.u32("section crc").map_err(s)?;
        let id = SectionId::new(kind, name);
        let end = offset.checked_add(stored_len).ok_or_else(|| {
            StatefileError::impossible(format!("section {id} length {stored_len} overflows"))
        })?;
        if offset < prev_end {
            return Err(corrupt(format!(
                "section {id} at {offset} overlaps the header or the previous section (ends {prev_end})"
            )));
        }
        if end > trailer.index_offset {
            return Err(StatefileError::impossible(format!(
                "section {id} ends at {end}, beyond the section area ending at {}",
                trailer.index_offset
            )));
        }
        if compression == Compression::None
            && kind != SectionKind::Memory
            && stored_len != uncompressed_len
        {
            return Err(StatefileError::impossible(format!(
                "uncompressed section {id} stores {stored_len} bytes but claims {uncompressed_len}"
            )));
        }
        if !seen.insert(id.clone()) {
            return Err(StatefileError::DuplicateSection {
                section: id.to_string(),
            });
        }
        prev_end = end;
        entries.push(SectionInfo {
            id,
            compression,
            offset,
            stored_len,
            uncompressed_len,
            crc32,
        });
    }
    if g.remaining() != 0 {
        return Err(corrupt(format!(
            "{} unexplained bytes after the last entry",
            g.remaining()
        )));
    }
    Ok(entries)
}
