//! The reader: validates header, trailer and index before anything is used,
//! then gives random access to sections. Section checksums are checked when a
//! section is read (and all at once by `verify`).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Result, StatefileError};
use crate::header::{self, Arch, Header, Prefix, PREFIX_LEN};
use crate::index::{self, Trailer, TRAILER_LEN};
use crate::memory::MemoryReader;
use crate::savable::{Decoder, Savable, TypeTable};
use crate::section::{max_uncompressed_len, Compression, SectionId, SectionInfo, SectionKind};

/// Random-access byte source a statefile is read from.
pub trait ReadAt: Sync {
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

fn slice_read_at(data: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(io::Error::other)?;
    match start
        .checked_add(buf.len())
        .and_then(|end| data.get(start..end))
    {
        Some(s) => {
            buf.copy_from_slice(s);
            Ok(())
        }
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        slice_read_at(self, buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        slice_read_at(self, buf, offset)
    }
}

/// How strictly to open a file.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Refuse a file for another architecture (`None`: accept any, e.g. to
    /// inspect it).
    pub expect_arch: Option<Arch>,
    /// Largest uncompressed size accepted for a non-memory section.
    pub max_section_len: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            expect_arch: Some(Arch::host()),
            max_section_len: 1 << 30,
        }
    }
}

impl OpenOptions {
    /// Accept any architecture (for inspection tools).
    pub fn any_arch() -> Self {
        OpenOptions {
            expect_arch: None,
            ..Default::default()
        }
    }
}

/// An opened, structurally valid statefile.
pub struct Reader<R: ReadAt = File> {
    src: R,
    prefix: Prefix,
    header: Header,
    trailer: Trailer,
    sections: Vec<SectionInfo>,
    types: TypeTable,
    opts: OpenOptions,
}

impl Reader<File> {
    /// Opens a statefile written for this host's architecture.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader<File>> {
        Reader::open_with(File::open(path)?, OpenOptions::default())
    }
}

impl<R: ReadAt> Reader<R> {
    /// Validates prefix, header, trailer, index and the type table.
    pub fn open_with(src: R, opts: OpenOptions) -> Result<Reader<R>> {
        let actual = src.size()?;
        let mut pre = vec![0u8; actual.min(PREFIX_LEN as u64) as usize];
        src.read_exact_at(&mut pre, 0)?;
        let prefix = Prefix::decode(&pre)?;
        if actual < prefix.file_len {
            return Err(StatefileError::Truncated {
                expected: prefix.file_len,
                actual,
            });
        }
        if actual > prefix.file_len {
            return Err(StatefileError::TrailingData {
                expected: prefix.file_len,
                actual,
            });
        }
        let header_len = prefix.header_len as u64;
        let min_len = header_len + 4 + TRAILER_LEN as u64;
        if prefix.file_len < min_len {
            return Err(StatefileError::impossible(format!(
                "file of {} bytes cannot hold a header of {header_len} bytes, an index and a trailer",
                prefix.file_len
            )));
        }
        let mut hb = vec![0u8; prefix.header_len as usize];
        src.read_exact_at(&mut hb, 0)?;
        let header = header::decode(&prefix, &hb)?;
        if let Some(host) = opts.expect_arch {
            if header.arch != host {
                return Err(StatefileError::WrongArch {
                    file: header.arch,
                    host,
                });
            }
        }
        let mut tb = [0u8; TRAILER_LEN];
        src.read_exact_at(&mut tb, prefix.file_len - TRAILER_LEN as u64)?;
        let trailer = index::decode_trailer(&tb, header_len, prefix.file_len)?;
        // Bounded by MAX_INDEX_LEN in decode_trailer.
        let mut ib = vec![0u8; trailer.index_len as usize];
        src.read_exact_at(&mut ib, trailer.index_offset)?;
        let sections = index::decode(&ib, &trailer, header_len)?;
        let mut r = Reader {
            src,
            prefix,
            header,
            trailer,
            sections,
            types: TypeTable::new(),
            opts,
        };
        if let Some(info) = r.find(SectionKind::TypeTable, "").cloned() {
            let bytes = r.read_section(&info)?;
            r.types = TypeTable::decode(&bytes)?;
        }
        Ok(r)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn format_version(&self) -> u32 {
        self.prefix.format_version
    }

    pub fn file_len(&self) -> u64 {
        self.prefix.file_len
    }

    /// Offset and length of the index.
    pub fn index_location(&self) -> (u64, u64) {
        (self.trailer.index_offset, self.trailer.index_len)
    }

    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// The type table the file was written with (empty if none).
    pub fn types(&self) -> &TypeTable {
        &self.types
    }

    pub fn options(&self) -> &OpenOptions {
        &self.opts
    }

    pub(crate) fn source(&self) -> &R {
        &self.src
    }

    pub fn find(&self, kind: SectionKind, name: &str) -> Option<&SectionInfo> {
        self.sections
            .iter()
            .find(|s| s.id.kind == kind && s.id.name == name)
    }

    /// The index entry of a section, or `MissingSection`.
    pub fn section(&self, kind: SectionKind, name: &str) -> Result<&SectionInfo> {
        self.find(kind, name)
            .ok_or_else(|| StatefileError::MissingSection {
                section: SectionId::new(kind, name).to_string(),
            })
    }

    /// A section's decompressed bytes, checksum verified.
    pub fn section_bytes(&self, kind: SectionKind, name: &str) -> Result<Vec<u8>> {
        let info = self.section(kind, name)?.clone();
        self.read_section(&info)
    }

    /// Refuses a non-memory section whose claimed size is beyond the
    /// absolute limit or beyond what its stored bytes can believably
    /// expand to: checked before anything is read or allocated.
    fn check_claim(&self, info: &SectionInfo) -> Result<()> {
        if info.uncompressed_len > self.opts.max_section_len {
            return Err(StatefileError::LimitExceeded {
                what: "section size",
                value: info.uncompressed_len,
                limit: self.opts.max_section_len,
            });
        }
        let limit = max_uncompressed_len(info.stored_len);
        if info.uncompressed_len > limit {
            return Err(StatefileError::ImplausibleExpansion {
                section: info.id.to_string(),
                stored: info.stored_len,
                claimed: info.uncompressed_len,
                limit,
            });
        }
        Ok(())
    }

    /// Reads, checks and decompresses the section `info` names.
    pub fn read_section(&self, info: &SectionInfo) -> Result<Vec<u8>> {
        let sec = info.id.to_string();
        self.check_claim(info)?;
        // stored_len lies within the file (checked by the index).
        let mut stored = vec![0u8; info.stored_len as usize];
        self.src.read_exact_at(&mut stored, info.offset)?;
        let computed = crc32fast::hash(&stored);
        if computed != info.crc32 {
            return Err(StatefileError::SectionChecksum {
                section: sec,
                stored: info.crc32,
                computed,
            });
        }
        match info.compression {
            Compression::None => Ok(stored),
            Compression::Zstd(_) => {
                // Sized by what the stored bytes hold, not by the claim.
                let start = info
                    .uncompressed_len
                    .min(info.stored_len.saturating_mul(4))
                    .min(1 << 20) as usize;
                let mut out = Vec::with_capacity(start);
                let dec = zstd::stream::read::Decoder::with_buffer(&stored[..]).map_err(|e| {
                    StatefileError::CorruptSection {
                        section: sec.clone(),
                        reason: e.to_string(),
                    }
                })?;
                // Grow only as real output appears, at most one byte past
                // the (already bounded) claim, to notice a section longer
                // than its index says.
                dec.take(info.uncompressed_len.saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(|e| StatefileError::CorruptSection {
                        section: sec.clone(),
                        reason: format!("zstd: {e}"),
                    })?;
                if out.len() as u64 != info.uncompressed_len {
                    return Err(StatefileError::CorruptSection {
                        section: sec,
                        reason: format!(
                            "decompressed to {}{} bytes, index says {}",
                            if out.len() as u64 > info.uncompressed_len {
                                "more than "
                            } else {
                                ""
                            },
                            out.len().min(info.uncompressed_len as usize),
                            info.uncompressed_len
                        ),
                    });
                }
                Ok(out)
            }
        }
    }

    /// A streaming reader over a section's decompressed bytes. The checksum
    /// and length are checked when it reaches the end (an error then means
    /// the bytes already returned must be discarded).
    pub fn section_reader(&self, kind: SectionKind, name: &str) -> Result<SectionReader<'_>> {
        let info = self.section(kind, name)?.clone();
        if info.id.kind != SectionKind::Memory {
            self.check_claim(&info)?;
        }
        let raw = CrcRange {
            src: &self.src,
            pos: info.offset,
            end: info.offset + info.stored_len,
            crc: crc32fast::Hasher::new(),
        };
        let inner: Box<dyn ReadTap + '_> = match info.compression {
            Compression::None => Box::new(raw),
            Compression::Zstd(_) => Box::new(ZstdTap(zstd::stream::read::Decoder::new(raw)?)),
        };
        Ok(SectionReader {
            inner,
            info,
            produced: 0,
            done: false,
        })
    }

    /// Checks one section's checksum by streaming it (memory sections are
    /// not decompressed here; see `MemoryReader::verify`).
    pub fn verify_section(&self, info: &SectionInfo) -> Result<()> {
        if info.id.kind == SectionKind::Memory {
            let mut raw = CrcRange {
                src: &self.src,
                pos: info.offset,
                end: info.offset + info.stored_len,
                crc: crc32fast::Hasher::new(),
            };
            io::copy(&mut raw, &mut io::sink())?;
            let computed = raw.crc.finalize();
            if computed != info.crc32 {
                return Err(StatefileError::SectionChecksum {
                    section: info.id.to_string(),
                    stored: info.crc32,
                    computed,
                });
            }
            Ok(())
        } else {
            self.read_section(info).map(|_| ())
        }
    }

    /// Checks every section and every memory chunk: what restore runs before
    /// it trusts the file.
    pub fn verify(&self) -> Result<()> {
        for s in &self.sections {
            self.verify_section(s)?;
        }
        for s in &self.sections {
            if s.id.kind == SectionKind::Memory {
                self.memory(&s.id.name)?.verify()?;
            }
        }
        Ok(())
    }

    /// Loads one root `Savable` object saved with `Writer::save`.
    pub fn load<T: Savable>(&self, kind: SectionKind, name: &str) -> Result<T> {
        let bytes = self.section_bytes(kind, name)?;
        let mut dec = Decoder::new(&bytes, &self.types);
        let v = dec.get::<T>()?;
        dec.finish()?;
        Ok(v)
    }

    /// The memory image stored under `name`.
    pub fn memory(&self, name: &str) -> Result<MemoryReader<'_, R>> {
        MemoryReader::new(self, name)
    }
}

/// Reads `[pos, end)` of a source, checksumming as it goes.
struct CrcRange<'a, R: ReadAt> {
    src: &'a R,
    pos: u64,
    end: u64,
    crc: crc32fast::Hasher,
}

impl<R: ReadAt> Read for CrcRange<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64).min(1 << 20) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.src.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

trait ReadTap: Read {
    fn crc(&self) -> u32;
}

impl<R: ReadAt> ReadTap for CrcRange<'_, R> {
    fn crc(&self) -> u32 {
        self.crc.clone().finalize()
    }
}

struct ZstdTap<'a, R: ReadAt>(zstd::stream::read::Decoder<'static, io::BufReader<CrcRange<'a, R>>>);

impl<R: ReadAt> Read for ZstdTap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: ReadAt> ReadTap for ZstdTap<'_, R> {
    fn crc(&self) -> u32 {
        self.0.get_ref().get_ref().crc.clone().finalize()
    }
}

/// Streaming access to one section (see `Reader::section_reader`).
pub struct SectionReader<'a> {
    inner: Box<dyn ReadTap + 'a>,
    info: SectionInfo,
    produced: u64,
    done: bool,
}

impl Read for SectionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf).map_err(|e| {
            io::Error::other(StatefileError::CorruptSection {
                section: self.info.id.to_string(),
                reason: e.to_string(),
            })
        })?;
        self.produced += n as u64;
        let corrupt = |reason: String| {
            io::Error::other(StatefileError::CorruptSection {
                section: self.info.id.to_string(),
                reason,
            })
        };
        if self.produced > self.info.uncompressed_len {
            return Err(corrupt(format!(
                "longer than the {} bytes the index says",
                self.info.uncompressed_len
            )));
        }
        if n == 0 {
            self.done = true;
            let computed = self.inner.crc();
            if computed != self.info.crc32 {
                return Err(io::Error::other(StatefileError::SectionChecksum {
                    section: self.info.id.to_string(),
                    stored: self.info.crc32,
                    computed,
                }));
            }
            if self.produced != self.info.uncompressed_len {
                return Err(corrupt(format!(
                    "{} bytes, index says {}",
                    self.produced, self.info.uncompressed_len
                )));
            }
        }
        Ok(n)
    }
}
