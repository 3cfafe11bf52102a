//! One side of a diff: a statefile decoded through the path restore takes
//! (every non-memory section's checksum, then `load_saved_kernel`'s
//! validated records), with a hash of every memory page, and the file
//! contents the tmpfs tables point at read back from the memory section.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sentry::mm::MF_PAGE_SIZE;
use sentry::state::validate::{load_saved_kernel, LoadError, SavedKernel};
use statefile::{OpenOptions, Reader, SectionKind, StatefileError};

/// Why a side could not be read: the file and the damage, by name.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not damage: a statefile this cryo cannot read (another
    /// architecture, a newer format or type version).
    #[error("{path}: cannot be read here: {source}")]
    Unreadable {
        path: PathBuf,
        source: StatefileError,
    },
    #[error("{path}: damaged statefile: {source}")]
    Damaged {
        path: PathBuf,
        source: StatefileError,
    },
    #[error("{path}: damaged statefile: {source}")]
    Records { path: PathBuf, source: LoadError },
    #[error("{path}: memory pages of {size} bytes, not the memory file's {MF_PAGE_SIZE}")]
    PageSize { path: PathBuf, size: u64 },
}

/// A statefile, decoded and validated.
pub struct Side {
    /// What the user named (a path, or `sandbox ID`).
    pub label: String,
    pub header: statefile::Header,
    pub saved: SavedKernel,
    /// Memory-file offset → hash of its page, for every page the memory
    /// section stores (a page it does not store is zero).
    pub pages: HashMap<u64, u64>,
    reader: Reader<File>,
}

/// The hash of a page that is all zero (one the memory section skips).
pub const ZERO_PAGE: u64 = 0;

fn page_hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    // 0 stands for a zero page; a present page never is one.
    h.finish().max(1)
}

/// The layout the records are judged against: the widest address space a
/// host may have, so a statefile from any host that could write it loads
/// (nothing here maps it).
fn judging_layout() -> platform::Layout {
    platform::Layout::for_va_bits(57, 4096)
        .unwrap_or_else(|_| sentry::state::hostile::fixed_layout())
}

impl Side {
    pub fn open(path: &Path, label: String) -> Result<Side, LoadFailure> {
        let damaged = |source: StatefileError| match source.kind() {
            "wrong_arch"
            | "unknown_arch"
            | "future_format_version"
            | "unsupported_format_version"
            | "future_type_version"
            | "type_version_too_old"
            | "unknown_type" => LoadFailure::Unreadable {
                path: path.to_path_buf(),
                source,
            },
            _ => LoadFailure::Damaged {
                path: path.to_path_buf(),
                source,
            },
        };
        let file = File::open(path).map_err(|source| LoadFailure::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // As restore opens it: a statefile of another architecture is
        // refused as such (its registers and layout are not this one's).
        let reader = Reader::open_with(file, OpenOptions::default()).map_err(damaged)?;
        for s in reader
            .sections()
            .iter()
            .filter(|s| s.id.kind != SectionKind::Memory)
        {
            reader.verify_section(s).map_err(damaged)?;
        }
        let saved = load_saved_kernel(&reader, &judging_layout()).map_err(|e| match e {
            LoadError::Statefile(source) => damaged(source),
            source => LoadFailure::Records {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let pages = Mutex::new(HashMap::new());
        let memory = reader
            .memory(sentry::state::MEMORY_SECTION)
            .map_err(damaged)?;
        if memory.page_size() != sentry::mm::MF_PAGE_SIZE {
            return Err(LoadFailure::PageSize {
                path: path.to_path_buf(),
                size: memory.page_size(),
            });
        }
        memory
            .restore_with(|offset, page| {
                let h = page_hash(page);
                pages
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(offset, h);
                Ok(())
            })
            .map_err(damaged)?;
        let pages = pages.into_inner().unwrap_or_else(|e| e.into_inner());
        let header = reader.header().clone();
        Ok(Side {
            label,
            header,
            saved,
            pages,
            reader,
        })
    }

    /// The hash of the memory-file page at `offset`.
    pub fn page(&self, offset: u64) -> u64 {
        self.pages.get(&offset).copied().unwrap_or(ZERO_PAGE)
    }

    /// The first `size` bytes of a tmpfs file whose pages are `pages`
    /// (file page index → memory-file offset); holes read as zeros.
    pub fn file_bytes(
        &self,
        pages: &[sentry::vfs::state::TmpfsPage],
        size: u64,
    ) -> Result<Vec<u8>, StatefileError> {
        let ps = sentry::mm::MF_PAGE_SIZE;
        let len = usize::try_from(size)
            .map_err(|_| StatefileError::Io(std::io::Error::other("file too large")))?;
        let mut out = vec![0u8; len];
        let memory = self.reader.memory(sentry::state::MEMORY_SECTION)?;
        let mut buf = vec![0u8; ps as usize];
        for p in pages {
            let Some(start) = p.index.checked_mul(ps) else {
                continue;
            };
            if start >= size {
                continue;
            }
            memory.read_page(p.offset, &mut buf)?;
            let end = (start + ps).min(size);
            out[start as usize..end as usize].copy_from_slice(&buf[..(end - start) as usize]);
        }
        Ok(out)
    }
}
