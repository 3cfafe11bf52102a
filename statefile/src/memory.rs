//! The memory section: the pages of a memory image in independently
//! decompressible chunks, all-zero pages skipped, compressed in parallel.
//!
//! Chunk `c` covers pages `[c * chunk_pages, (c + 1) * chunk_pages)` of the
//! image and stores only the present (non-zero) ones, packed in page order; a
//! bitmap says which. A range with no present page has no chunk. Each chunk
//! is either zstd-compressed or, when that does not make it smaller (or the
//! section is uncompressed), stored raw at a page-aligned file offset so that
//! it can be mapped instead of copied.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StatefileError};
use crate::reader::{ReadAt, Reader};
use crate::section::{Compression, SectionId, SectionInfo, SectionKind};
use crate::writer::{Sink, Writer};

/// 256 pages of 4 KiB = 1 MiB per chunk by default.
pub const DEFAULT_CHUNK_PAGES: u32 = 256;
/// A chunk larger than this (uncompressed) is refused on read and on write.
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;

/// Where the pages come from: a memory file read through `pread`, a slice, a
/// mapping.
pub trait MemorySource: Sync {
    /// Length of the image in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset` (always within `len`).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl MemorySource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = offset as usize;
        match self.get(start..start + buf.len()) {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl MemorySource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

impl MemorySource for memmap2::Mmap {
    fn len(&self) -> u64 {
        (**self).len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

/// A file (e.g. the sentry's memfd) read with `pread`; its length is taken
/// once, when the source is made.
pub struct FileSource<'a> {
    file: &'a File,
    len: u64,
}

impl<'a> FileSource<'a> {
    pub fn new(file: &'a File) -> io::Result<FileSource<'a>> {
        Ok(FileSource {
            file,
            len: file.metadata()?.len(),
        })
    }
}

impl MemorySource for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        FileExt::read_exact_at(self.file, buf, offset)
    }
}

/// How to write a memory section.
#[derive(Debug, Clone, Copy)]
pub struct MemoryOptions {
    pub compression: Compression,
    /// Pages per chunk: a multiple of 64.
    pub chunk_pages: u32,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            compression: Compression::default(),
            chunk_pages: DEFAULT_CHUNK_PAGES,
        }
    }
}

/// What `write_memory` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    pub image_len: u64,
    pub pages: u64,
    pub present_pages: u64,
    pub zero_pages: u64,
    pub chunks: u64,
    pub stored_len: u64,
}

/// The map stored (bincode) in the `MemoryMap` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MapV1 {
    page_size: u32,
    image_len: u64,
    chunk_pages: u32,
    chunks: Vec<ChunkEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkEntry {
    /// Which range of `chunk_pages` pages this chunk covers.
    range: u64,
    /// Offset within the memory section.
    offset: u64,
    stored_len: u64,
    /// 0: raw, 1: zstd.
    compression: u8,
    crc32: u32,
    /// One bit per page of the range, `chunk_pages / 64` words.
    present: Vec<u64>,
}

/// One chunk as the reader describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub index: usize,
    /// Image offset of the chunk's first page (present or not).
    pub image_offset: u64,
    /// Absolute file offset of its stored bytes.
    pub file_offset: u64,
    pub stored_len: u64,
    pub present_pages: u64,
    pub compressed: bool,
    pub crc32: u32,
}

struct Encoded {
    range: u64,
    bytes: Vec<u8>,
    compressed: bool,
    crc32: u32,
    present: Vec<u64>,
    count: u64,
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn is_zero(page: &[u8]) -> bool {
    // Wide OR-reduction vectorizes; an early-exit byte loop does not.
    page.chunks(64)
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

fn compress(level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match c.as_mut() {
            Some((_, comp)) => comp.compress(data),
            None => Err(io::Error::other("no compressor")),
        }
    })
}

fn encode_range<M: MemorySource + ?Sized>(
    src: &M,
    range: u64,
    page_size: u64,
    chunk_pages: u64,
    level: Option<i32>,
) -> Result<Option<Encoded>> {
    let image_len = src.len();
    let start = range * chunk_pages * page_size;
    let len = (chunk_pages * page_size).min(image_len - start) as usize;
    READ_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        buf.resize(len, 0);
        src.read_at(start, &mut buf)?;
        let mut present = vec![0u64; (chunk_pages / 64) as usize];
        let mut packed = 0usize;
        let ps = page_size as usize;
        let mut i = 0usize;
        while i * ps < len {
            let a = i * ps;
            let b = (a + ps).min(len);
            if !is_zero(&buf[a..b]) {
                present[i / 64] |= 1 << (i % 64);
                if packed != a {
                    buf.copy_within(a..b, packed);
                }
                // A short last page is stored as a whole page.
                if b - a < ps {
                    buf.resize(packed + ps, 0);
                    buf[packed + (b - a)..packed + ps].fill(0);
                }
                packed += ps;
            }
            i += 1;
        }
        if packed == 0 {
            return Ok(None);
        }
        let raw = &buf[..packed];
        let (bytes, compressed) = match level {
            Some(level) => {
                let z = compress(level, raw)?;
                if z.len() < raw.len() {
                    (z, true)
                } else {
                    (raw.to_vec(), false)
                }
            }
            None => (raw.to_vec(), false),
        };
        Ok(Some(Encoded {
            range,
            crc32: crc32fast::hash(&bytes),
            bytes,
            compressed,
            count: (packed / ps) as u64,
            present,
        }))
    })
}

static ZEROS: [u8; 65536] = [0u8; 65536];

impl<S: Sink + Send> Writer<S> {
    /// [`Writer::write_memory`] on a pool of its own with one worker fewer
    /// than there are CPUs (at least one): for a memory image saved while
    /// the program it belongs to runs on (`cryo checkpoint
    /// --leave-running`), which keeps a CPU. Not by lowering the workers'
    /// priority: the program's write faults briefly wait for a lock the
    /// workers take, and a low-priority worker preempted while holding it
    /// would keep the program waiting for as long as it is not scheduled.
    pub fn write_memory_yielding<M: MemorySource + ?Sized>(
        &mut self,
        name: &str,
        src: &M,
        opts: &MemoryOptions,
    ) -> Result<MemoryStats>
    where
        Self: Send,
    {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cpus.saturating_sub(1).max(1))
            .thread_name(|i| format!("cryo-save-{i}"))
            .build()
            .map_err(io::Error::other)?;
        pool.install(|| self.write_memory(name, src, opts))
    }

    /// Writes a memory image as section `(Memory, name)` plus its map
    /// `(MemoryMap, name)`. Chunks are compressed on all cores while earlier
    /// ones are written, so at most a few chunks per core are in memory.
    pub fn write_memory<M: MemorySource + ?Sized>(
        &mut self,
        name: &str,
        src: &M,
        opts: &MemoryOptions,
    ) -> Result<MemoryStats> {
        let page_size = self.header().page_size as u64;
        let chunk_pages = opts.chunk_pages as u64;
        if chunk_pages == 0
            || !chunk_pages.is_multiple_of(64)
            || chunk_pages * page_size > MAX_CHUNK_BYTES
        {
            return Err(StatefileError::invalid(format!(
                "chunk of {chunk_pages} pages must be a non-zero multiple of 64 and at most {MAX_CHUNK_BYTES} bytes"
            )));
        }
        let id = SectionId::new(SectionKind::Memory, name);
        self.check_new(&id)?;
        self.check_new(&SectionId::new(SectionKind::MemoryMap, name))?;
        let image_len = src.len();
        let pages = image_len.div_ceil(page_size);
        let ranges = pages.div_ceil(chunk_pages);
        let level = match opts.compression {
            Compression::None => None,
            Compression::Zstd(l) => Some(l),
        };
        let section_start = self.position();
        let batch = (rayon::current_num_threads() as u64 * 2).max(4);
        let encode_batch = |first: u64| -> Result<Vec<Encoded>> {
            let last = (first + batch).min(ranges);
            let out: Result<Vec<Option<Encoded>>> = (first..last)
                .into_par_iter()
                .map(|r| encode_range(src, r, page_size, chunk_pages, level))
                .collect();
            Ok(out?.into_iter().flatten().collect())
        };
        let mut crc = crc32fast::Hasher::new();
        let mut chunks = Vec::new();
        let mut present_pages = 0u64;
        let mut pending = encode_batch(0)?;
        let mut next = batch;
        loop {
            let this = std::mem::take(&mut pending);
            let more = next < ranges;
            let (written, encoded) = rayon::join(
                || -> Result<()> {
                    for e in this {
                        let mut pad = 0u64;
                        if !e.compressed {
                            let rem = self.position() % page_size;
                            if rem != 0 {
                                pad = page_size - rem;
                            }
                        }
                        let pad_bytes = &ZEROS[..pad as usize];
                        self.raw_write(pad_bytes)?;
                        crc.update(pad_bytes);
                        let offset = self.position() - section_start;
                        self.raw_write(&e.bytes)?;
                        crc.combine(&crc32fast::Hasher::new_with_initial_len(
                            e.crc32,
                            e.bytes.len() as u64,
                        ));
                        present_pages += e.count;
                        chunks.push(ChunkEntry {
                            range: e.range,
                            offset,
                            stored_len: e.bytes.len() as u64,
                            compression: e.compressed as u8,
                            crc32: e.crc32,
                            present: e.present,
                        });
                    }
                    Ok(())
                },
                || {
                    if more {
                        encode_batch(next)
                    } else {
                        Ok(Vec::new())
                    }
                },
            );
            written?;
            if !more {
                break;
            }
            pending = encoded?;
            next += batch;
        }
        let stored_len = self.position() - section_start;
        self.push_entry(SectionInfo {
            id,
            compression: opts.compression,
            offset: section_start,
            stored_len,
            uncompressed_len: present_pages * page_size,
            crc32: crc.finalize(),
        });
        let map = MapV1 {
            page_size: page_size as u32,
            image_len,
            chunk_pages: opts.chunk_pages,
            chunks,
        };
        let nchunks = map.chunks.len() as u64;
        let map_bytes =
            bincode::serde::encode_to_vec(&map, bincode::config::standard()).map_err(|e| {
                StatefileError::Encode {
                    context: "memory map".into(),
                    reason: e.to_string(),
                }
            })?;
        self.write_section(
            SectionKind::MemoryMap,
            name,
            Compression::default(),
            &map_bytes,
        )?;
        Ok(MemoryStats {
            image_len,
            pages,
            present_pages,
            zero_pages: pages - present_pages,
            chunks: nchunks,
            stored_len,
        })
    }
}

/// A decoded chunk: its present pages, packed.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub index: usize,
    /// Image offset of the range's first page.
    pub image_offset: u64,
    page_size: usize,
    present: Vec<u64>,
    data: Vec<u8>,
}

impl Chunk {
    /// The present pages as `(image offset, bytes)`.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        pages_of(&self.present, self.image_offset, self.page_size, &self.data)
    }
    /// Packed bytes of the present pages.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// Calls `f` once per run of consecutive pages of a chunk whose present
/// pages are packed in order in `data`.
fn for_each_run<'a, F>(
    pages: impl Iterator<Item = (u64, &'a [u8])>,
    data: &[u8],
    ps: usize,
    f: &F,
) -> Result<()>
where
    F: Fn(u64, &[u8]) -> Result<()>,
{
    // (image offset, first packed index) of the run being gathered.
    let mut run: Option<(u64, usize)> = None;
    let mut len = 0usize;
    for (i, (off, _)) in pages.enumerate() {
        match run {
            Some((start, _)) if start + (len * ps) as u64 == off => len += 1,
            Some((start, first)) => {
                f(start, &data[first * ps..(first + len) * ps])?;
                run = Some((off, i));
                len = 1;
            }
            None => {
                run = Some((off, i));
                len = 1;
            }
        }
    }
    if let Some((start, first)) = run {
        f(start, &data[first * ps..(first + len) * ps])?;
    }
    Ok(())
}

fn pages_of<'a>(
    present: &'a [u64],
    base: u64,
    ps: usize,
    data: &'a [u8],
) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
    present
        .iter()
        .enumerate()
        .flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
        .zip(data.chunks_exact(ps))
        .map(move |(i, page)| (base + (i * ps) as u64, page))
}

/// A raw chunk mapped from the file (`MemoryReader::map_chunk`).
pub struct MappedChunk {
    pub index: usize,
    pub image_offset: u64,
    page_size: usize,
    present: Vec<u64>,
    map: memmap2::Mmap,
}

impl MappedChunk {
    pub fn pages(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        pages_of(&self.present, self.image_offset, self.page_size, &self.map)
    }
    /// The packed present pages, straight from the page cache.
    pub fn data(&self) -> &[u8] {
        &self.map
    }
}

/// Access to one memory image of a statefile.
pub struct MemoryReader<'r, R: ReadAt> {
    reader: &'r Reader<R>,
    section: SectionInfo,
    map: Arc<MapV1>,
}

/// A memory image's validated chunk table without the reader it came
/// from, for a lazy restore that keeps it beside its [`Reader`] and loads
/// chunks long after the restore returned.
#[derive(Clone)]
pub struct MemoryTable {
    section: SectionInfo,
    map: Arc<MapV1>,
}

impl MemoryTable {
    /// The table read through `reader`, which must be the reader of the
    /// statefile it came from (its offsets are that file's).
    pub fn bind<'r, R: ReadAt>(&self, reader: &'r Reader<R>) -> MemoryReader<'r, R> {
        MemoryReader {
            reader,
            section: self.section.clone(),
            map: self.map.clone(),
        }
    }
}

impl<'r, R: ReadAt> MemoryReader<'r, R> {
    pub(crate) fn new(reader: &'r Reader<R>, name: &str) -> Result<Self> {
        let section = reader.section(SectionKind::Memory, name)?.clone();
        let map_bytes = reader.section_bytes(SectionKind::MemoryMap, name)?;
        let sec = section.id.to_string();
        let bad = |reason: String| StatefileError::CorruptMemoryMap {
            section: sec.clone(),
            reason,
        };
        let cfg = bincode::config::standard().with_limit::<{ 1 << 30 }>();
        let (map, used): (MapV1, usize) =
            bincode::serde::decode_from_slice(&map_bytes, cfg).map_err(|e| bad(e.to_string()))?;
        if used != map_bytes.len() {
            return Err(bad(format!("{} trailing bytes", map_bytes.len() - used)));
        }
        let ps = map.page_size as u64;
        if map.page_size != reader.header().page_size {
            return Err(bad(format!(
                "page size {} differs from the header's {}",
                map.page_size,
                reader.header().page_size
            )));
        }
        let cp = map.chunk_pages as u64;
        if cp == 0 || !cp.is_multiple_of(64) || cp * ps > MAX_CHUNK_BYTES {
            return Err(StatefileError::impossible(format!(
                "memory {sec}: chunk of {cp} pages of {ps} bytes"
            )));
        }
        let pages = map.image_len.div_ceil(ps);
        let ranges = pages.div_ceil(cp);
        let mut prev_range: Option<u64> = None;
        let mut prev_end = 0u64;
        let mut total = 0u64;
        for (i, c) in map.chunks.iter().enumerate() {
            if prev_range.is_some_and(|p| c.range <= p) || c.range >= ranges {
                return Err(bad(format!(
                    "chunk {i} covers range {} out of order or beyond {ranges}",
                    c.range
                )));
            }
            prev_range = Some(c.range);
            if c.present.len() as u64 != cp / 64 {
                return Err(bad(format!(
                    "chunk {i} bitmap has {} words",
                    c.present.len()
                )));
            }
            // Pages past the image's end cannot be present.
            let first = c.range * cp;
            let in_range = (pages - first).min(cp);
            let count: u64 = c.present.iter().map(|w| w.count_ones() as u64).sum();
            let beyond = c.present.iter().enumerate().any(|(w, &bits)| {
                (0..64u64).any(|b| bits & (1 << b) != 0 && (w as u64) * 64 + b >= in_range)
            });
            if count == 0 || beyond {
                return Err(bad(format!(
                    "chunk {i} marks no page, or pages beyond the image"
                )));
            }
            let end = c
                .offset
                .checked_add(c.stored_len)
                .filter(|&e| e <= section.stored_len);
            let Some(end) = end else {
                return Err(StatefileError::impossible(format!(
                    "memory {sec}: chunk {i} at {} of {} bytes beyond the section's {} bytes",
                    c.offset, c.stored_len, section.stored_len
                )));
            };
            if c.offset < prev_end {
                return Err(bad(format!("chunk {i} overlaps the previous one")));
            }
            prev_end = end;
            let raw_len = count * ps;
            match c.compression {
                0 => {
                    if c.stored_len != raw_len {
                        return Err(StatefileError::impossible(format!(
                            "memory {sec}: raw chunk {i} stores {} bytes for {count} pages",
                            c.stored_len
                        )));
                    }
                    if (section.offset + c.offset) % ps != 0 {
                        return Err(bad(format!("raw chunk {i} is not page-aligned")));
                    }
                }
                1 => {
                    if c.stored_len == 0 || c.stored_len > raw_len {
                        return Err(StatefileError::impossible(format!(
                            "memory {sec}: compressed chunk {i} of {} bytes for {count} pages",
                            c.stored_len
                        )));
                    }
                }
                x => return Err(bad(format!("chunk {i} has unknown compression {x}"))),
            }
            total += count;
        }
        if total.checked_mul(ps) != Some(section.uncompressed_len) {
            return Err(StatefileError::impossible(format!(
                "memory {sec}: {total} present pages but the index claims {} bytes",
                section.uncompressed_len
            )));
        }
        Ok(MemoryReader {
            reader,
            section,
            map: Arc::new(map),
        })
    }

    /// The validated chunk table, to keep beside the reader (see
    /// [`MemoryTable::bind`]).
    pub fn table(&self) -> MemoryTable {
        MemoryTable {
            section: self.section.clone(),
            map: self.map.clone(),
        }
    }

    /// The image offsets `[start, end)` chunk `n`'s range covers (its pages,
    /// present or not).
    pub fn chunk_span(&self, n: usize) -> Option<(u64, u64)> {
        let c = self.map.chunks.get(n)?;
        let bytes = self.chunk_pages() * self.page_size();
        let start = c.range * bytes;
        Some((
            start,
            (start + bytes).min(self.map.image_len.next_multiple_of(self.page_size())),
        ))
    }

    /// The chunk whose range covers image offset `offset` (present or zero
    /// page), if any.
    pub fn chunk_covering(&self, offset: u64) -> Option<usize> {
        let range = offset / (self.chunk_pages() * self.page_size());
        self.map
            .chunks
            .binary_search_by_key(&range, |c| c.range)
            .ok()
    }

    /// Runs `f(image offset, bytes)` once per run of consecutive present
    /// pages of chunk `n`, its checksum checked before `f` sees a byte: a
    /// lazy restore loads one chunk so.
    pub fn load_chunk_runs<F>(&self, n: usize, f: F) -> Result<()>
    where
        F: Fn(u64, &[u8]) -> Result<()>,
    {
        let chunk = self.read_chunk(n)?;
        for_each_run(chunk.pages(), chunk.data(), self.page_size() as usize, &f)
    }

    /// Length of the image in bytes.
    pub fn image_len(&self) -> u64 {
        self.map.image_len
    }
    pub fn page_size(&self) -> u64 {
        self.map.page_size as u64
    }
    pub fn chunk_pages(&self) -> u64 {
        self.map.chunk_pages as u64
    }
    /// Pages in the image.
    pub fn pages(&self) -> u64 {
        self.map.image_len.div_ceil(self.page_size())
    }
    /// Non-zero pages stored.
    pub fn present_pages(&self) -> u64 {
        self.section.uncompressed_len / self.page_size()
    }
    pub fn zero_pages(&self) -> u64 {
        self.pages() - self.present_pages()
    }
    pub fn section(&self) -> &SectionInfo {
        &self.section
    }
    pub fn chunk_count(&self) -> usize {
        self.map.chunks.len()
    }

    pub fn chunk_info(&self, n: usize) -> Option<ChunkInfo> {
        let c = self.map.chunks.get(n)?;
        Some(ChunkInfo {
            index: n,
            image_offset: c.range * self.chunk_pages() * self.page_size(),
            file_offset: self.section.offset + c.offset,
            stored_len: c.stored_len,
            present_pages: c.present.iter().map(|w| w.count_ones() as u64).sum(),
            compressed: c.compression == 1,
            crc32: c.crc32,
        })
    }

    /// The chunk holding image offset `offset`, `None` if that page is zero.
    pub fn chunk_for(&self, offset: u64) -> Result<Option<usize>> {
        if offset >= self.map.image_len {
            return Err(StatefileError::PageOutOfRange {
                offset,
                len: self.map.image_len,
            });
        }
        let page = offset / self.page_size();
        let range = page / self.chunk_pages();
        let Ok(n) = self.map.chunks.binary_search_by_key(&range, |c| c.range) else {
            return Ok(None);
        };
        let i = (page % self.chunk_pages()) as usize;
        Ok((self.map.chunks[n].present[i / 64] & (1 << (i % 64)) != 0).then_some(n))
    }

    fn corrupt(&self, n: usize, reason: String) -> StatefileError {
        StatefileError::CorruptChunk {
            section: self.section.id.to_string(),
            chunk: n as u64,
            reason,
        }
    }

    /// Reads, checks and decompresses chunk `n` into `out` (packed pages).
    fn decode_into(&self, n: usize, out: &mut Vec<u8>) -> Result<()> {
        let c = self
            .map
            .chunks
            .get(n)
            .ok_or_else(|| StatefileError::invalid(format!("no chunk {n}")))?;
        let count: u64 = c.present.iter().map(|w| w.count_ones() as u64).sum();
        let raw_len = (count * self.page_size()) as usize;
        let mut stored = vec![0u8; c.stored_len as usize];
        self.reader
            .source()
            .read_exact_at(&mut stored, self.section.offset + c.offset)?;
        let computed = crc32fast::hash(&stored);
        if computed != c.crc32 {
            return Err(self.corrupt(
                n,
                format!(
                    "checksum mismatch (stored {:#010x}, computed {computed:#010x})",
                    c.crc32
                ),
            ));
        }
        if c.compression == 0 {
            *out = stored;
            return Ok(());
        }
        out.clear();
        out.reserve(raw_len);
        let got = DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            match d.as_mut() {
                Some(d) => d.decompress_to_buffer(&stored, out),
                None => Err(io::Error::other("no decompressor")),
            }
        });
        match got {
            Ok(len) if len == raw_len => Ok(()),
            Ok(len) => Err(self.corrupt(
                n,
                format!("decompressed to {len} bytes, expected {raw_len}"),
            )),
            Err(e) => Err(self.corrupt(n, format!("zstd: {e}"))),
        }
    }

    /// Reads chunk `n` alone (lazy restore).
    pub fn read_chunk(&self, n: usize) -> Result<Chunk> {
        let mut data = Vec::new();
        self.decode_into(n, &mut data)?;
        let c = &self.map.chunks[n];
        Ok(Chunk {
            index: n,
            image_offset: c.range * self.chunk_pages() * self.page_size(),
            page_size: self.page_size() as usize,
            present: c.present.clone(),
            data,
        })
    }

    /// Copies the page holding `offset` into `buf` (one page long); returns
    /// false (and zeroes `buf`) for a page that was all zero.
    pub fn read_page(&self, offset: u64, buf: &mut [u8]) -> Result<bool> {
        if buf.len() as u64 != self.page_size() {
            return Err(StatefileError::invalid("buffer is not one page"));
        }
        let Some(n) = self.chunk_for(offset)? else {
            buf.fill(0);
            return Ok(false);
        };
        let chunk = self.read_chunk(n)?;
        let page_off = offset - offset % self.page_size();
        let found = chunk.pages().find(|(o, _)| *o == page_off).map(|(_, p)| {
            buf.copy_from_slice(p);
        });
        match found {
            Some(()) => Ok(true),
            None => Err(self.corrupt(n, "page missing from chunk".into())),
        }
    }

    /// Like [`MemoryReader::restore_with`], but calls `f` once per run of
    /// consecutive present pages (at most a chunk), so a caller writing into
    /// a file pays one write per run instead of one per page.
    pub fn restore_runs_with<F>(&self, f: F) -> Result<()>
    where
        F: Fn(u64, &[u8]) -> Result<()> + Sync,
    {
        let ps = self.page_size() as usize;
        (0..self.map.chunks.len())
            .into_par_iter()
            .try_for_each(|n| {
                let chunk = self.read_chunk(n)?;
                for_each_run(chunk.pages(), chunk.data(), ps, &f)
            })
    }

    /// Calls `f(image offset, page bytes)` for every present page, chunks
    /// decoded in parallel (so `f` runs on several threads, in no order).
    pub fn restore_with<F>(&self, f: F) -> Result<()>
    where
        F: Fn(u64, &[u8]) -> Result<()> + Sync,
    {
        (0..self.map.chunks.len())
            .into_par_iter()
            .try_for_each(|n| {
                let chunk = self.read_chunk(n)?;
                for (off, page) in chunk.pages() {
                    f(off, page)?;
                }
                Ok(())
            })
    }

    /// Restores the whole image into `dest` (exactly `image_len` bytes);
    /// zero pages are zeroed. Parallel over chunks.
    pub fn restore_into(&self, dest: &mut [u8]) -> Result<()> {
        if dest.len() as u64 != self.map.image_len {
            return Err(StatefileError::invalid(format!(
                "destination of {} bytes for an image of {}",
                dest.len(),
                self.map.image_len
            )));
        }
        let ps = self.page_size() as usize;
        let range_bytes = self.chunk_pages() as usize * ps;
        if range_bytes == 0 || dest.is_empty() {
            return Ok(());
        }
        dest.par_chunks_mut(range_bytes)
            .enumerate()
            .try_for_each_init(Vec::new, |buf, (r, out)| {
                let Ok(n) = self
                    .map
                    .chunks
                    .binary_search_by_key(&(r as u64), |c| c.range)
                else {
                    out.fill(0);
                    return Ok(());
                };
                self.decode_into(n, buf)?;
                let present = &self.map.chunks[n].present;
                let mut src = buf.chunks_exact(ps);
                for (i, page) in out.chunks_mut(ps).enumerate() {
                    if present[i / 64] & (1 << (i % 64)) != 0 {
                        match src.next() {
                            Some(s) => page.copy_from_slice(&s[..page.len()]),
                            None => {
                                return Err(self.corrupt(n, "fewer pages than its bitmap".into()))
                            }
                        }
                    } else {
                        page.fill(0);
                    }
                }
                Ok(())
            })
    }

    /// Decodes every chunk (in parallel) and checks its checksum and size.
    pub fn verify(&self) -> Result<()> {
        (0..self.map.chunks.len())
            .into_par_iter()
            .try_for_each_init(Vec::new, |buf, n| self.decode_into(n, buf))
    }

    /// Checks each chunk, returning the failures (for inspection tools).
    pub fn damaged_chunks(&self) -> Vec<StatefileError> {
        (0..self.map.chunks.len())
            .into_par_iter()
            .map_init(Vec::new, |buf, n| self.decode_into(n, buf).err())
            .flatten()
            .collect()
    }
}

impl<'r> MemoryReader<'r, File> {
    /// [`MemoryReader::restore_runs_with`] that maps raw chunks from the
    /// statefile instead of reading them into a buffer: the bytes go from
    /// the page cache straight to `f` (and, with pwrite, to their target).
    pub fn restore_runs_mapped_with<F>(&self, f: F) -> Result<()>
    where
        F: Fn(u64, &[u8]) -> Result<()> + Sync,
    {
        let ps = self.page_size() as usize;
        (0..self.map.chunks.len())
            .into_par_iter()
            .try_for_each(|n| {
                let raw = self.chunk_info(n).is_some_and(|c| !c.compressed);
                if raw {
                    let chunk = self.map_chunk(n)?;
                    for_each_run(chunk.pages(), chunk.data(), ps, &f)
                } else {
                    let chunk = self.read_chunk(n)?;
                    for_each_run(chunk.pages(), chunk.data(), ps, &f)
                }
            })
    }

    /// Maps a raw (uncompressed) chunk read-only from the statefile instead
    /// of copying it; its checksum is verified first.
    pub fn map_chunk(&self, n: usize) -> Result<MappedChunk> {
        let info = self
            .chunk_info(n)
            .ok_or_else(|| StatefileError::invalid(format!("no chunk {n}")))?;
        if info.compressed {
            return Err(StatefileError::NotMappable {
                chunk: n as u64,
                reason: "chunk is compressed".into(),
            });
        }
        // SAFETY: the mapping is read-only and private. A statefile is never
        // written in place once complete (writers rename a new file over
        // it), so its bytes do not change under the mapping; the range lies
        // within the file (validated against the index and file length).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(info.file_offset)
                .len(info.stored_len as usize)
                .map(self.reader.source())?
        };
        let computed = crc32fast::hash(&map);
        if computed != info.crc32 {
            return Err(self.corrupt(
                n,
                format!(
                    "checksum mismatch (stored {:#010x}, computed {computed:#010x})",
                    info.crc32
                ),
            ));
        }
        let c = &self.map.chunks[n];
        Ok(MappedChunk {
            index: n,
            image_offset: info.image_offset,
            page_size: self.page_size() as usize,
            present: c.present.clone(),
            map,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;

    /// The pool `write_memory_yielding` uses changes where chunks are
    /// compressed, never what is written.
    #[test]
    fn yielding_writes_the_same_bytes() {
        let ps = 4096usize;
        let img: Vec<u8> = (0..300 * ps)
            .map(|i| {
                if (i / ps).is_multiple_of(4) {
                    0
                } else {
                    (i * 7 / 13) as u8
                }
            })
            .collect();
        let write = |yielding: bool| {
            let mut w = Writer::new(Vec::new(), Header::new("test")).unwrap();
            let opts = MemoryOptions {
                compression: Compression::Zstd(1),
                chunk_pages: 64,
            };
            let stats = if yielding {
                w.write_memory_yielding("m", &img, &opts).unwrap()
            } else {
                w.write_memory("m", &img, &opts).unwrap()
            };
            assert_eq!(stats.present_pages, 225);
            w.finish().unwrap()
        };
        assert!(write(true) == write(false));
    }
}
