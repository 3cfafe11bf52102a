//! The streaming writer. Sections go to the sink as they are produced; only
//! the index (a few bytes per section) is kept in memory. Writing to a path is
//! atomic: a temporary file beside the target is renamed into place only by
//! `finish`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StatefileError};
use crate::header::Header;
use crate::index;
use crate::savable::{Encoder, Savable, TypeTable};
use crate::section::{Compression, SectionId, SectionInfo, SectionKind};

/// Where a statefile is written: a byte stream that can patch bytes already
/// written (the header's length and checksum) and commit when complete.
pub trait Sink: Write {
    type Output;
    /// Overwrites bytes at `offset` (already written).
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes the complete file durable and visible.
    fn commit(self) -> Result<Self::Output>;
}

/// A temporary file in the target's directory that becomes the target on
/// `commit`; dropped uncommitted, it is removed and the target is untouched.
pub struct AtomicFile {
    file: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
    /// Bytes handed to `write` so far.
    written: u64,
    /// Bytes whose writeback to disk has been started.
    kicked: u64,
}

/// Writeback of what has been written is started every this many bytes, so
/// the disk works while later chunks are still being compressed and the
/// final fsync has little left to wait for.
const WRITEBACK_STEP: u64 = 16 << 20;

impl AtomicFile {
    pub fn new(target: &Path) -> Result<AtomicFile> {
        let dir = parent_dir(target);
        let name = target.file_name().ok_or_else(|| {
            StatefileError::invalid(format!("{} has no file name", target.display()))
        })?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            file: BufWriter::with_capacity(1 << 20, tmp),
            target: target.to_path_buf(),
            written: 0,
            kicked: 0,
        })
    }

    /// Starts (does not wait for) writeback of the bytes already in the
    /// page cache, once enough have accumulated.
    fn kick_writeback(&mut self) {
        let in_cache = self.written - self.file.buffer().len() as u64;
        if in_cache - self.kicked < WRITEBACK_STEP {
            return;
        }
        use std::os::fd::AsRawFd;
        let fd = self.file.get_ref().as_file().as_raw_fd();
        let (offset, len) = (
            self.kicked as libc::off64_t,
            (in_cache - self.kicked) as libc::off64_t,
        );
        // SAFETY: sync_file_range only starts writeback of a range of an fd
        // this writer owns; it touches no memory of this process. Advisory:
        // a failure here surfaces at the final fsync.
        unsafe { libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        self.kicked = in_cache;
    }
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.kick_writeback();
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        self.kick_writeback();
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Sink for AtomicFile {
    type Output = PathBuf;
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().as_file().write_all_at(bytes, offset)
    }
    fn commit(self) -> Result<PathBuf> {
        let tmp = self.file.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.target).map_err(|e| e.error)?;
        // The rename is durable only once the directory entry is.
        File::open(parent_dir(&self.target))?.sync_all()?;
        Ok(self.target)
    }
}

/// A plain file, written in place (not atomic, no fsync): for callers that
/// manage the file themselves, e.g. benchmarks or an fd handed over.
impl Sink for File {
    type Output = File;
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.write_all_at(bytes, offset)
    }
    fn commit(self) -> Result<File> {
        Ok(self)
    }
}

/// A buffered plain file (e.g. an fd handed over by another process, which
/// makes it durable and renames it itself): written in place, no fsync.
impl Sink for BufWriter<File> {
    type Output = File;
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        self.get_ref().write_all_at(bytes, offset)
    }
    fn commit(self) -> Result<File> {
        self.into_inner()
            .map_err(|e| StatefileError::Io(e.into_error()))
    }
}

impl Sink for Vec<u8> {
    type Output = Vec<u8>;
    fn patch(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        match self.get_mut(start..start.saturating_add(bytes.len())) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::other("patch beyond end")),
        }
    }
    fn commit(self) -> Result<Vec<u8>> {
        Ok(self)
    }
}

/// Writes a statefile section by section.
pub struct Writer<S: Sink = AtomicFile> {
    sink: S,
    pos: u64,
    header: Header,
    header_bytes: Vec<u8>,
    entries: Vec<SectionInfo>,
    types: TypeTable,
    /// Set when a write failed or a section writer was dropped unfinished:
    /// the byte stream no longer matches the index, so `finish` refuses.
    poisoned: bool,
}

impl Writer<AtomicFile> {
    /// Starts an atomic statefile at `target` (see the module docs).
    pub fn create(target: impl AsRef<Path>, header: Header) -> Result<Writer<AtomicFile>> {
        Writer::new(AtomicFile::new(target.as_ref())?, header)
    }
}

impl<S: Sink> Writer<S> {
    /// Starts a statefile on any sink; writes the header at once.
    pub fn new(sink: S, header: Header) -> Result<Writer<S>> {
        let header_bytes = header.encode()?;
        let mut w = Writer {
            sink,
            pos: 0,
            header,
            header_bytes,
            entries: Vec::new(),
            types: TypeTable::new(),
            poisoned: false,
        };
        let hb = w.header_bytes.clone();
        w.raw_write(&hb)?;
        Ok(w)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Sections written so far.
    pub fn sections(&self) -> &[SectionInfo] {
        &self.entries
    }

    /// Current length of the output.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub(crate) fn raw_write(&mut self, data: &[u8]) -> Result<()> {
        if let Err(e) = self.sink.write_all(data) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    pub(crate) fn check_new(&self, id: &SectionId) -> Result<()> {
        if self.poisoned {
            return Err(StatefileError::invalid(
                "writer is poisoned by an earlier failure",
            ));
        }
        if id.name.len() > index::MAX_NAME {
            return Err(StatefileError::invalid(format!(
                "section name {:?} too long",
                id.name
            )));
        }
        if self.entries.iter().any(|e| e.id == *id) {
            return Err(StatefileError::invalid(format!(
                "section {id} written twice"
            )));
        }
        Ok(())
    }

    pub(crate) fn push_entry(&mut self, info: SectionInfo) {
        self.entries.push(info);
    }

    /// Opens a streaming section; write to it, then call `finish` on it.
    pub fn section(
        &mut self,
        kind: SectionKind,
        name: &str,
        compression: Compression,
    ) -> Result<SectionWriter<'_, S>> {
        let id = SectionId::new(kind, name);
        self.check_new(&id)?;
        let offset = self.pos;
        let tap = Tap {
            w: self,
            count: 0,
            crc: crc32fast::Hasher::new(),
        };
        let inner = match compression {
            Compression::None => Inner::Plain(tap),
            Compression::Zstd(level) => {
                let enc = zstd::stream::write::Encoder::new(tap, level)?;
                Inner::Zstd(enc)
            }
        };
        Ok(SectionWriter {
            inner: Some(inner),
            id,
            compression,
            offset,
            uncompressed: 0,
        })
    }

    /// Writes a whole section from a buffer.
    pub fn write_section(
        &mut self,
        kind: SectionKind,
        name: &str,
        compression: Compression,
        data: &[u8],
    ) -> Result<SectionInfo> {
        let mut s = self.section(kind, name, compression)?;
        s.write_all(data)?;
        s.finish()
    }

    /// Writes an encoder's bytes as a section and records its types in the
    /// file's type table.
    pub fn write_state(
        &mut self,
        kind: SectionKind,
        name: &str,
        compression: Compression,
        enc: &Encoder,
    ) -> Result<SectionInfo> {
        self.types.merge(enc.types())?;
        self.write_section(kind, name, compression, enc.bytes())
    }

    /// Saves one root object as a section (default compression).
    pub fn save<T: Savable>(
        &mut self,
        kind: SectionKind,
        name: &str,
        v: &T,
    ) -> Result<SectionInfo> {
        let mut enc = Encoder::new();
        enc.put(v)?;
        self.write_state(kind, name, Compression::default(), &enc)
    }

    /// Writes the type table and index, seals the header and commits the
    /// sink (for `create`: fsync, rename into place, fsync the directory).
    pub fn finish(mut self) -> Result<S::Output> {
        if self.poisoned {
            return Err(StatefileError::invalid(
                "writer is poisoned by an earlier failure",
            ));
        }
        if !self.types.is_empty() {
            let table = self.types.encode();
            self.write_section(SectionKind::TypeTable, "", Compression::None, &table)?;
        }
        let index_offset = self.pos;
        let idx = index::encode(&self.entries);
        self.raw_write(&idx)?;
        let trailer = index::encode_trailer(index_offset, idx.len() as u64, crc32fast::hash(&idx));
        self.raw_write(&trailer)?;
        let file_len = self.pos;
        Header::seal(&mut self.header_bytes, file_len);
        self.sink.flush()?;
        self.sink.patch(0, &self.header_bytes)?;
        self.sink.commit()
    }
}

/// Counts and checksums the stored bytes of a section on their way to the sink.
struct Tap<'a, S: Sink> {
    w: &'a mut Writer<S>,
    count: u64,
    crc: crc32fast::Hasher,
}

impl<S: Sink> Write for Tap<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.w.sink.write_all(buf) {
            self.w.poisoned = true;
            return Err(e);
        }
        self.w.pos += buf.len() as u64;
        self.count += buf.len() as u64;
        self.crc.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends zstd skippable frames (which every decoder passes over) until
/// the stored bytes are enough for readers to believe `uncompressed` (see
/// `section::MAX_EXPANSION`): only sections that compress extremely well,
/// like runs of zeros, get any.
fn pad_to_believable<S: Sink>(tap: &mut Tap<'_, S>, uncompressed: u64) -> io::Result<()> {
    const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
    const FRAME_HEADER: u64 = 8;
    let zeros = [0u8; 64 << 10];
    let mut missing = crate::section::min_stored_len(uncompressed).saturating_sub(tap.count);
    while missing > 0 {
        let payload = missing
            .saturating_sub(FRAME_HEADER)
            .min(u64::from(u32::MAX));
        tap.write_all(&SKIPPABLE_MAGIC.to_le_bytes())?;
        tap.write_all(&(payload as u32).to_le_bytes())?;
        let mut left = payload;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            tap.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        missing = missing.saturating_sub(FRAME_HEADER + payload);
    }
    Ok(())
}

enum Inner<'a, S: Sink> {
    Plain(Tap<'a, S>),
    Zstd(zstd::stream::write::Encoder<'static, Tap<'a, S>>),
}

/// One section being written; compresses as it goes. Must be `finish`ed:
/// dropping it unfinished poisons the writer.
pub struct SectionWriter<'a, S: Sink> {
    inner: Option<Inner<'a, S>>,
    id: SectionId,
    compression: Compression,
    offset: u64,
    uncompressed: u64,
}

impl<S: Sink> Write for SectionWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.inner.as_mut() {
            Some(Inner::Plain(t)) => t.write(buf)?,
            Some(Inner::Zstd(z)) => z.write(buf)?,
            None => return Err(io::Error::other("section already finished")),
        };
        self.uncompressed += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Sink> SectionWriter<'_, S> {
    /// Ends the section and records it in the index.
    pub fn finish(mut self) -> Result<SectionInfo> {
        let tap = match self.inner.take() {
            Some(Inner::Plain(t)) => t,
            Some(Inner::Zstd(z)) => {
                let mut tap = z.finish()?;
                pad_to_believable(&mut tap, self.uncompressed)?;
                tap
            }
            None => return Err(StatefileError::invalid("section already finished")),
        };
        let info = SectionInfo {
            id: self.id.clone(),
            compression: self.compression,
            offset: self.offset,
            stored_len: tap.count,
            uncompressed_len: self.uncompressed,
            crc32: tap.crc.clone().finalize(),
        };
        tap.w.push_entry(info.clone());
        Ok(info)
    }
}

impl<S: Sink> Drop for SectionWriter<'_, S> {
    fn drop(&mut self) {
        match self.inner.as_mut() {
            Some(Inner::Plain(t)) => t.w.poisoned = true,
            Some(Inner::Zstd(z)) => z.get_mut().w.poisoned = true,
            None => {}
        }
    }
}
