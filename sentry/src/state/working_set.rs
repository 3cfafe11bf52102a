//! The working set of a lazily restored sandbox: the memory chunks it
//! demanded first, in order, recorded in `working-set.cryo` next to the
//! statefile so that a later lazy restore of the same statefile loads
//! them before the sandbox resumes (as REAP does for Firecracker
//! snapshots), the rest in the background.
//!
//! The file (little-endian):
//!   magic `CRYOWSET`, version u32 (1), reserved u32 (0),
//!   the statefile's length u64 and digest u64, its memory chunks u32,
//!   the record's entries u32, that many chunk numbers u32,
//!   crc32 of everything before it u32.
//!
//! It is a hint, never trusted: a file that is damaged, of another
//! version, recorded for another statefile (length, digest or chunk count
//! differ) or naming a chunk out of range or twice is ignored with a
//! warning, and the restore goes on as if there were none (and records a
//! new one). It is written through descriptors opened at the restore (the
//! image directory's, and an unnamed file in it, named once written),
//! never the directory's path (it may be gone, as podman deletes it): a
//! directory that is read-only or gone gets none, said only in the debug
//! log.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use statefile::Reader;

/// The record's name in the image directory.
pub const FILE_NAME: &str = "working-set.cryo";
const MAGIC: &[u8; 8] = b"CRYOWSET";
pub const VERSION: u32 = 1;
const HEAD_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4;
/// The most chunks a record holds (a statefile's memory of up to 64 GiB
/// has at most 256 Ki chunks; a record is a quarter of them at most).
pub const MAX_ENTRIES: usize = 1 << 16;

/// Why a working-set file is ignored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkingSetError {
    #[error("not a working-set file (bad magic)")]
    Magic,
    #[error("version {0}: this cryo reads version {VERSION}")]
    Version(u32),
    #[error("{got} bytes where {want} were expected")]
    Length { got: usize, want: usize },
    #[error("{0} entries: more than the {MAX_ENTRIES} a record may hold")]
    TooMany(u32),
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("recorded for another statefile ({recorded}, this one is {this})")]
    OtherStatefile {
        recorded: StatefileId,
        this: StatefileId,
    },
    #[error("chunk {chunk} is out of range (the memory has {chunks} chunks)")]
    OutOfRange { chunk: u32, chunks: u32 },
    #[error("chunk {0} is recorded twice")]
    Duplicate(u32),
}

/// What a record is checked against: which statefile it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatefileId {
    pub len: u64,
    /// FNV-1a over the file's layout and every section's checksum: any
    /// statefile written again differs in it.
    pub digest: u64,
    pub chunks: u32,
}

impl std::fmt::Display for StatefileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, digest {:016x}, {} memory chunks",
            self.len, self.digest, self.chunks
        )
    }
}

impl StatefileId {
    /// The id of the statefile `reader` reads, whose memory image has
    /// `chunks` chunks.
    pub fn of<R: statefile::ReadAt>(reader: &Reader<R>, chunks: usize) -> StatefileId {
        let mut h = Fnv::new();
        h.u64(reader.file_len());
        let (at, len) = reader.index_location();
        h.u64(at);
        h.u64(len);
        for s in reader.sections() {
            h.u64(s.offset);
            h.u64(s.stored_len);
            h.u64(s.uncompressed_len);
            h.u64(u64::from(s.crc32));
        }
        StatefileId {
            len: reader.file_len(),
            digest: h.0,
            chunks: u32::try_from(chunks).unwrap_or(u32::MAX),
        }
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// How many chunks a sandbox whose memory has `chunks` chunks records: a
/// quarter of them, at least 16 and at most 256 (256 MiB). More would make
/// the prefetch before the resume nearly an eager restore.
pub fn limit(chunks: usize) -> usize {
    (chunks / 4).clamp(16, 256).min(chunks)
}

/// The file's bytes for `chunks` recorded for statefile `id`.
pub fn encode(id: &StatefileId, chunks: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LEN + 4 * chunks.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&id.len.to_le_bytes());
    out.extend_from_slice(&id.digest.to_le_bytes());
    out.extend_from_slice(&id.chunks.to_le_bytes());
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for c in chunks {
        out.extend_from_slice(&c.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The record a file's bytes hold, checked whole: what it was recorded
/// for (not checked against any statefile) and its chunks.
pub fn decode(b: &[u8]) -> Result<(StatefileId, Vec<u32>), WorkingSetError> {
    if b.len() < HEAD_LEN + 4 {
        if b.len() < 8 || &b[..8] != MAGIC {
            return Err(WorkingSetError::Magic);
        }
        return Err(WorkingSetError::Length {
            got: b.len(),
            want: HEAD_LEN + 4,
        });
    }
    if &b[..8] != MAGIC {
        return Err(WorkingSetError::Magic);
    }
    let version = u32_at(b, 8);
    if version != VERSION {
        return Err(WorkingSetError::Version(version));
    }
    let entries = u32_at(b, 36);
    if entries as usize > MAX_ENTRIES {
        return Err(WorkingSetError::TooMany(entries));
    }
    let want = HEAD_LEN + 4 * entries as usize + 4;
    if b.len() != want {
        return Err(WorkingSetError::Length { got: b.len(), want });
    }
    let stored = u32_at(b, want - 4);
    let computed = crc32fast::hash(&b[..want - 4]);
    if stored != computed {
        return Err(WorkingSetError::Checksum { stored, computed });
    }
    let id = StatefileId {
        len: u64_at(b, 16),
        digest: u64_at(b, 24),
        chunks: u32_at(b, 32),
    };
    let mut seen = std::collections::HashSet::new();
    let mut chunks = Vec::with_capacity(entries as usize);
    for i in 0..entries as usize {
        let c = u32_at(b, HEAD_LEN + 4 * i);
        if c >= id.chunks {
            return Err(WorkingSetError::OutOfRange {
                chunk: c,
                chunks: id.chunks,
            });
        }
        if !seen.insert(c) {
            return Err(WorkingSetError::Duplicate(c));
        }
        chunks.push(c);
    }
    Ok((id, chunks))
}

/// [`decode`], then checked against the statefile it is to serve.
pub fn decode_for(b: &[u8], this: &StatefileId) -> Result<Vec<usize>, WorkingSetError> {
    let (recorded, chunks) = decode(b)?;
    if recorded != *this {
        return Err(WorkingSetError::OtherStatefile {
            recorded,
            this: *this,
        });
    }
    Ok(chunks.into_iter().map(|c| c as usize).collect())
}

/// The image directory a lazy restore read its statefile from, held open
/// for the record it writes later.
pub struct ImageDir {
    fd: OwnedFd,
    shown: String,
}

impl ImageDir {
    pub fn open(dir: &Path) -> std::io::Result<ImageDir> {
        let fd = rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ImageDir {
            fd,
            shown: dir.join(FILE_NAME).display().to_string(),
        })
    }

    /// The working set recorded for statefile `this`, if a valid one is
    /// there; a file that is not is ignored with a warning.
    pub fn read(&self, this: &StatefileId) -> Option<Vec<usize>> {
        let file = match rustix::fs::openat(
            &self.fd,
            FILE_NAME,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::NOENT) => {
                tracing::debug!("lazy restore: no {}: nothing to prefetch", self.shown);
                return None;
            }
            Err(e) => {
                self.ignored(&e.to_string());
                return None;
            }
        };
        let cap = (HEAD_LEN + 4 * MAX_ENTRIES + 4) as u64;
        let mut bytes = Vec::new();
        if let Err(e) = file.take(cap + 1).read_to_end(&mut bytes) {
            self.ignored(&e.to_string());
            return None;
        }
        match decode_for(&bytes, this) {
            Ok(chunks) => Some(chunks),
            Err(e) => {
                self.ignored(&e.to_string());
                None
            }
        }
    }

    fn ignored(&self, why: &str) {
        // Said on stderr, as a restore's other warnings to its user.
        eprintln!(
            "cryo: warning: {}: {why}: ignored (the restore loads no working set first)",
            self.shown
        );
        tracing::warn!("{}: {why}: ignored", self.shown);
    }

    /// Where this sandbox's working set will go: an unnamed file in the
    /// directory, made now (once the sandbox is confined nothing can be
    /// opened, see cli's confine), named when written. None, said in the
    /// debug log, if the directory cannot take one (read-only, or a file
    /// system without O_TMPFILE).
    pub fn recorder(self) -> Option<PendingRecord> {
        match rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Some(PendingRecord {
                dir: self.fd,
                file: File::from(fd),
                shown: self.shown,
            }),
            Err(e) => {
                tracing::debug!(
                    "lazy restore: no working set will be recorded in {}: {e}",
                    self.shown
                );
                None
            }
        }
    }
}

/// A working set to be written into the image directory.
pub struct PendingRecord {
    dir: OwnedFd,
    file: File,
    shown: String,
}

impl PendingRecord {
    /// Writes `chunks` as the working set of statefile `id`, replacing any
    /// record there in one rename. A directory that cannot take it (gone
    /// since the restore, as podman deletes it) gets none: a hint is not
    /// worth an error.
    pub fn write(mut self, id: &StatefileId, chunks: &[usize]) {
        if chunks.is_empty() {
            tracing::debug!("lazy restore: nothing demanded, no working set recorded");
            return;
        }
        let entries: Vec<u32> = chunks
            .iter()
            .take(MAX_ENTRIES)
            .filter_map(|&c| u32::try_from(c).ok())
            .collect();
        let bytes = encode(id, &entries);
        let tmp = format!(".{FILE_NAME}.{}.tmp", std::process::id());
        let written = (|| -> std::io::Result<()> {
            self.file.write_all(&bytes)?;
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which the confined
            // Sentry keeps for this (as for a checkpoint's statefile).
            rustix::fs::linkat(
                &self.file,
                "",
                &self.dir,
                tmp.as_str(),
                rustix::fs::AtFlags::EMPTY_PATH,
            )?;
            if let Err(e) = rustix::fs::renameat(&self.dir, tmp.as_str(), &self.dir, FILE_NAME) {
                let _ = rustix::fs::unlinkat(&self.dir, tmp.as_str(), rustix::fs::AtFlags::empty());
                return Err(e.into());
            }
            Ok(())
        })();
        match written {
            Ok(()) => tracing::debug!(
                "lazy restore: recorded a working set of {} chunks in {}: {:?}",
                entries.len(),
                self.shown,
                entries
            ),
            Err(e) => tracing::debug!(
                "lazy restore: no working set recorded in {}: {e}",
                self.shown
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StatefileId {
        StatefileId {
            len: 1 << 30,
            digest: 0x1234_5678_9abc_def0,
            chunks: 100,
        }
    }

    #[test]
    fn a_record_reads_back_for_its_statefile_only() {
        let b = encode(&id(), &[7, 3, 99, 0]);
        assert_eq!(decode_for(&b, &id()), Ok(vec![7, 3, 99, 0]));
        let other = StatefileId { digest: 1, ..id() };
        assert!(matches!(
            decode_for(&b, &other),
            Err(WorkingSetError::OtherStatefile { .. })
        ));
    }

    #[test]
    fn damaged_records_are_refused() {
        let b = encode(&id(), &[1, 2, 3]);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(decode(&d).is_err(), "flipped byte {i}");
        }
        assert_eq!(decode(b"junk"), Err(WorkingSetError::Magic));
        assert_eq!(
            decode(&encode(&id(), &[1, 1])),
            Err(WorkingSetError::Duplicate(1))
        );
        assert_eq!(
            decode(&encode(&id(), &[100])),
            Err(WorkingSetError::OutOfRange {
                chunk: 100,
                chunks: 100
            })
        );
        let mut v2 = encode(&id(), &[]);
        v2[8] = 2;
        assert_eq!(decode(&v2), Err(WorkingSetError::Version(2)));
    }

    #[test]
    fn the_limit_is_a_quarter_within_bounds() {
        assert_eq!(limit(8), 8);
        assert_eq!(limit(64), 16);
        assert_eq!(limit(512), 128);
        assert_eq!(limit(100_000), 256);
    }
}
