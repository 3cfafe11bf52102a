//! The header: what a reader must know before trusting anything else
//! (magic, format version, architecture, page size, producer, metadata).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Result, StatefileError};
use crate::wire::{Get, Put};

/// First 8 bytes of every statefile.
pub const MAGIC: [u8; 8] = *b"CRYOSTAT";
/// The format version this code writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the variable part: magic, version, header length, file length.
pub const PREFIX_LEN: usize = 24;
/// Offset of the file-length field, patched when the writer finishes.
pub(crate) const FILE_LEN_OFFSET: usize = 16;
/// A header larger than this is refused without being read.
pub const MAX_HEADER_LEN: u32 = 1 << 20;
const MAX_STR: usize = 64 * 1024;
const MAX_METADATA: u32 = 4096;

/// CPU architecture the statefile's application ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture this code was compiled for.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }
    pub(crate) fn code(self) -> u8 {
        match self {
            Arch::X86_64 => 1,
            Arch::Aarch64 => 2,
        }
    }
    pub(crate) fn from_code(code: u8) -> Result<Arch> {
        match code {
            1 => Ok(Arch::X86_64),
            2 => Ok(Arch::Aarch64),
            code => Err(StatefileError::UnknownArch { code }),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The header as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub arch: Arch,
    /// Page size of the memory image (a power of two, 4 KiB to 64 KiB).
    pub page_size: u32,
    /// Who wrote the file, e.g. "cryo 0.1.0".
    pub producer: String,
    /// Free-form key/value pairs (container id, creation time, ...).
    pub metadata: BTreeMap<String, String>,
}

impl Header {
    /// A header for this host with a 4 KiB page size.
    pub fn new(producer: impl Into<String>) -> Header {
        Header {
            arch: Arch::host(),
            page_size: 4096,
            producer: producer.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Adds one metadata pair (builder style). Metadata is for display, so
    /// a value longer than a reader accepts (64 KiB) is clipped, ending in
    /// `…`, rather than making the whole file unwritable (a program's argv
    /// may be megabytes).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Header {
        let mut value = value.into();
        clip(&mut value, MAX_STR);
        self.metadata.insert(key.into(), value);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !valid_page_size(self.page_size) {
            return Err(StatefileError::invalid(format!(
                "page size {} is not a power of two between 4096 and 65536",
                self.page_size
            )));
        }
        if self.producer.len() > MAX_STR
            || self.metadata.len() > MAX_METADATA as usize
            || self
                .metadata
                .iter()
                .any(|(k, v)| k.len() > MAX_STR || v.len() > MAX_STR)
        {
            return Err(StatefileError::invalid("header strings too long"));
        }
        Ok(())
    }

    /// Encodes the header with `file_len` = 0; the writer patches the length
    /// and the checksum once the file is complete.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut p = Put::default();
        p.bytes(&MAGIC);
        p.u32(FORMAT_VERSION);
        p.u32(0); // header length, patched below
        p.u64(0); // file length, patched at finish
        p.u8(self.arch.code());
        p.u32(self.page_size);
        p.str(&self.producer);
        p.u32(self.metadata.len() as u32);
        for (k, v) in &self.metadata {
            p.str(k);
            p.str(v);
        }
        p.u32(0); // crc, patched
        let mut buf = p.0;
        let len = u32::try_from(buf.len())
            .ok()
            .filter(|&l| l <= MAX_HEADER_LEN)
            .ok_or_else(|| StatefileError::invalid("header too large"))?;
        buf[12..16].copy_from_slice(&len.to_le_bytes());
        Ok(buf)
    }

    /// Sets file length and checksum in an encoded header.
    pub(crate) fn seal(buf: &mut [u8], file_len: u64) {
        buf[FILE_LEN_OFFSET..FILE_LEN_OFFSET + 8].copy_from_slice(&file_len.to_le_bytes());
        let n = buf.len();
        let crc = crc32fast::hash(&buf[..n - 4]);
        buf[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Shortens `s` to at most `max` bytes at a character boundary, marking
/// the cut with `…`.
fn clip(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

pub(crate) fn valid_page_size(ps: u32) -> bool {
    ps.is_power_of_two() && (4096..=65536).contains(&ps)
}

/// The fixed prefix, readable from the first `PREFIX_LEN` bytes alone.
#[derive(Debug, Clone, Copy)]
pub struct Prefix {
    pub format_version: u32,
    pub header_len: u32,
    /// Total length of the complete file, as recorded by its writer.
    pub file_len: u64,
}

impl Prefix {
    /// Checks magic and version; `data` may be longer than the prefix.
    pub fn decode(data: &[u8]) -> Result<Prefix> {
        if data.len() < MAGIC.len() {
            if !MAGIC.starts_with(data) {
                return Err(StatefileError::BadMagic {
                    found: data.to_vec(),
                });
            }
        } else if data[..8] != MAGIC {
            return Err(StatefileError::BadMagic {
                found: data[..8].to_vec(),
            });
        }
        if data.len() < PREFIX_LEN {
            return Err(StatefileError::Truncated {
                expected: PREFIX_LEN as u64,
                actual: data.len() as u64,
            });
        }
        let mut g = Get::new(&data[8..PREFIX_LEN]);
        let short = |e: crate::wire::Short| StatefileError::CorruptHeader { reason: e.0 };
        let format_version = g.u32("format version").map_err(short)?;
        let header_len = g.u32("header length").map_err(short)?;
        let file_len = g.u64("file length").map_err(short)?;
        if format_version > FORMAT_VERSION {
            return Err(StatefileError::FutureFormatVersion {
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        if format_version == 0 {
            return Err(StatefileError::UnsupportedFormatVersion {
                found: format_version,
            });
        }
        // The smallest possible header: prefix, arch, page size, empty
        // producer, zero metadata, crc.
        let min = PREFIX_LEN as u32 + 1 + 4 + 4 + 4 + 4;
        if header_len < min || header_len > MAX_HEADER_LEN {
            return Err(StatefileError::CorruptHeader {
                reason: format!("header length {header_len} outside {min}..={MAX_HEADER_LEN}"),
            });
        }
        if file_len == 0 {
            return Err(StatefileError::Incomplete);
        }
        Ok(Prefix {
            format_version,
            header_len,
            file_len,
        })
    }
}

/// Decodes a complete header (`data` holds at least `header_len` bytes).
pub(crate) fn decode(prefix: &Prefix, data: &[u8]) -> Result<Header> {
    let n = prefix.header_len as usize;
    if data.len() < n {
        return Err(StatefileError::Truncated {
            expected: n as u64,
            actual: data.len() as u64,
        });
    }
    let data = &data[..n];
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(&data[n - 4..]);
    let stored = u32::from_le_bytes(crc_bytes);
    let computed = crc32fast::hash(&data[..n - 4]);
    if stored != computed {
        return Err(StatefileError::HeaderChecksum { stored, computed });
    }
    let short = |e: crate::wire::Short| StatefileError::CorruptHeader { reason: e.0 };
    let mut g = Get::new(&data[PREFIX_LEN..n - 4]);
    let arch = Arch::from_code(g.u8("architecture").map_err(short)?)?;
    let page_size = g.u32("page size").map_err(short)?;
    if !valid_page_size(page_size) {
        return Err(StatefileError::CorruptHeader {
            reason: format!("page size {page_size} is not a power of two in 4096..=65536"),
        });
    }
    let producer = g.str("producer", MAX_STR).map_err(short)?;
    let count = g.u32("metadata count").map_err(short)?;
    if count > MAX_METADATA {
        return Err(StatefileError::CorruptHeader {
            reason: format!("{count} metadata entries, limit {MAX_METADATA}"),
        });
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..count {
        let k = g.str("metadata key", MAX_STR).map_err(short)?;
        let v = g.str("metadata value", MAX_STR).map_err(short)?;
        metadata.insert(k, v);
    }
    if g.remaining() != 0 {
        return Err(StatefileError::CorruptHeader {
            reason: format!(
                "{} unexplained bytes at the end of the header",
                g.remaining()
            ),
        });
    }
    Ok(Header {
        arch,
        page_size,
        producer,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header::new("cryo test").with("container", "abc");
        let mut buf = h.encode().unwrap();
        let len = buf.len() as u64;
        Header::seal(&mut buf, len);
        let p = Prefix::decode(&buf).unwrap();
        assert_eq!(p.header_len as usize, buf.len());
        assert_eq!(decode(&p, &buf).unwrap(), h);
    }

    #[test]
    fn long_metadata_values_are_clipped_not_fatal() {
        let argv = format!("{:?}", vec!["é".repeat(40_000); 30]);
        let h = Header::new("cryo test").with("argv", argv.clone());
        let v = &h.metadata["argv"];
        assert!(v.len() <= MAX_STR && v.ends_with('…'), "{}", v.len());
        assert!(argv.starts_with(v.trim_end_matches('…')));
        let mut buf = h.encode().unwrap();
        let len = buf.len() as u64;
        Header::seal(&mut buf, len);
        let p = Prefix::decode(&buf).unwrap();
        assert_eq!(decode(&p, &buf).unwrap(), h);
        // Short values are kept as they are.
        let h = Header::new("x").with("k", "v");
        assert_eq!(h.metadata["k"], "v");
    }

    #[test]
    fn bad_page_size_refused_on_write() {
        let mut h = Header::new("x");
        h.page_size = 1000;
        assert!(matches!(
            h.encode(),
            Err(StatefileError::InvalidArgument { .. })
        ));
    }
}
