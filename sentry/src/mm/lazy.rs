//! Lazy restore: the memory file's restored pages are loaded from the
//! statefile chunk by chunk while the application already runs.
//!
//! The statefile stays open (its fd: replacing or unlinking the path
//! changes nothing) until every chunk is in. Whoever needs a page first
//! loads its chunk: an application fault (the page is not mapped for the
//! application until then, see `fault.rs`), a Sentry access through the
//! memory file (`MemoryFile::check_io`), a checkpoint (all of them), or
//! the background loader. One loader per chunk; whoever comes meanwhile
//! waits for it, so no chunk is loaded twice and no waiter is lost.
//!
//! A chunk whose checksum no longer matches is never handed to the
//! application: the sandbox is stopped with a message naming the chunk.
//!
//! The chunks demanded first (by the application's faults and the
//! Sentry's accesses, not the background loader) are its working set: a
//! [`Recorder`] gets them, in order, once there are its limit of them,
//! every chunk is in, or the sandbox ends, whichever comes first (see
//! `state::working_set`, which writes them next to the statefile so that a
//! later lazy restore of it prefetches them before the sandbox resumes).

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use statefile::{MemoryTable, Reader, StatefileError};

use super::memory_file::{FileRange, MemoryFile};

const UNLOADED: u8 = 0;
const LOADING: u8 = 1;
const LOADED: u8 = 2;
const DAMAGED: u8 = 3;

/// The status a sandbox exits with when a chunk loaded late is damaged:
/// that of any fatal restore error (cryo's own errors, like runsc's).
pub const DAMAGED_EXIT_STATUS: i32 = 125;

/// Why a chunk could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LazyError {
    #[error("statefile {path}: memory chunk {chunk} (memory-file offsets {start:#x}..{end:#x}): {reason}")]
    Damaged {
        path: String,
        chunk: usize,
        start: u64,
        end: u64,
        reason: String,
    },
}

/// Who loaded a chunk: the application's demand (recorded as its working
/// set), a prefetch of a recorded working set, or the background loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demand {
    Fault,
    Prefetch,
    Background,
}

/// Takes the working set (chunk numbers, in the order first demanded).
pub type WriteWorkingSet = Box<dyn FnOnce(&[usize]) + Send>;

/// Where the working set goes once known: at most `limit` chunks, in the
/// order first demanded, handed to `write` once.
pub struct Recorder {
    pub limit: usize,
    pub write: WriteWorkingSet,
}

/// A lazy restore's progress, as /proc/cryo/lazy shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LazyProgress {
    /// Chunks loaded so far, by anyone.
    pub loaded: usize,
    /// Chunks of the memory image in all.
    pub chunks: usize,
    /// Chunks of a recorded working set loaded before the resume.
    pub prefetched: usize,
    /// Chunks loaded because the application or the Sentry needed them.
    pub demanded: usize,
}

struct Shared {
    /// Chunks in the order a demand (not the background loader) first
    /// loaded them: the working set.
    demanded: Vec<usize>,
    /// The first damage found, kept for every later waiter.
    damage: Option<LazyError>,
    /// While set (a test's `CRYO_TEST_LAZY_HOLD`), the background loader
    /// waits.
    held: bool,
    /// Who gets the working set; taken when it is handed over.
    recorder: Option<Recorder>,
}

/// The chunks of a lazily restored memory image still to load.
pub struct LazyMemory {
    path: String,
    reader: Reader<File>,
    table: MemoryTable,
    /// Memory-file ranges the restore gave out: a chunk's page outside them
    /// is damage (a hostile statefile), never written.
    ranges: Vec<FileRange>,
    /// Per chunk: `[start, end)` memory-file offsets its range covers.
    spans: Vec<(u64, u64)>,
    states: Vec<AtomicU8>,
    loaded: AtomicUsize,
    prefetched: AtomicUsize,
    all: AtomicBool,
    shared: Mutex<Shared>,
    changed: Condvar,
}

impl LazyMemory {
    /// `reader`'s memory image `name`, validated (index, map), none of it
    /// loaded yet.
    pub fn new(
        path: String,
        reader: Reader<File>,
        name: &str,
        ranges: Vec<FileRange>,
    ) -> Result<LazyMemory, StatefileError> {
        let (table, spans) = {
            let m = reader.memory(name)?;
            let spans: Vec<(u64, u64)> = (0..m.chunk_count())
                .filter_map(|n| m.chunk_span(n))
                .collect();
            (m.table(), spans)
        };
        let n = spans.len();
        Ok(LazyMemory {
            path,
            reader,
            table,
            ranges,
            spans,
            states: (0..n).map(|_| AtomicU8::new(UNLOADED)).collect(),
            loaded: AtomicUsize::new(0),
            prefetched: AtomicUsize::new(0),
            all: AtomicBool::new(n == 0),
            shared: Mutex::new(Shared {
                demanded: Vec::new(),
                damage: None,
                held: std::env::var_os("CRYO_TEST_LAZY_HOLD").is_some_and(|v| v == "1"),
                recorder: None,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Every update is a field store or a push: consistent after a panic.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn chunks(&self) -> usize {
        self.spans.len()
    }

    /// Which statefile the chunks come from (a working set is recorded
    /// for it).
    pub fn statefile_id(&self) -> crate::state::working_set::StatefileId {
        crate::state::working_set::StatefileId::of(&self.reader, self.spans.len())
    }

    pub fn loaded_chunks(&self) -> usize {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn all_loaded(&self) -> bool {
        self.all.load(Ordering::Acquire)
    }

    /// The chunks demanded so far, in the order they were first demanded.
    pub fn demanded(&self) -> Vec<usize> {
        self.lock().demanded.clone()
    }

    pub fn progress(&self) -> LazyProgress {
        LazyProgress {
            loaded: self.loaded_chunks(),
            chunks: self.chunks(),
            prefetched: self.prefetched.load(Ordering::Acquire),
            demanded: self.lock().demanded.len(),
        }
    }

    /// Hands the working set to `recorder` once it is known.
    pub fn set_recorder(&self, recorder: Recorder) {
        self.lock().recorder = Some(recorder);
        self.record_if_done(self.all_loaded());
    }

    /// Hands the working set over now (the sandbox ends, or every chunk is
    /// in), unless it was already.
    pub fn finish_recording(&self) {
        self.record_if_done(true);
    }

    /// Hands the working set over if it has reached its recorder's limit,
    /// or `finished`; once.
    fn record_if_done(&self, finished: bool) {
        let taken = {
            let mut g = self.lock();
            let full = g
                .recorder
                .as_ref()
                .is_some_and(|r| g.demanded.len() >= r.limit);
            if !(full || finished) {
                return;
            }
            g.recorder.take().map(|r| {
                let n = g.demanded.len().min(r.limit);
                (r, g.demanded[..n].to_vec())
            })
        };
        if let Some((r, chunks)) = taken {
            (r.write)(&chunks);
        }
    }

    /// Loads `chunks` (a recorded working set, each a chunk number below
    /// [`LazyMemory::chunks`]) before the sandbox resumes, on a few threads
    /// at once (the chunks decompress independently), in about their
    /// order.
    pub fn prefetch(&self, mf: &MemoryFile, chunks: &[usize]) -> Result<(), LazyError> {
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<LazyError>> = Mutex::new(None);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(chunks.len());
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&n) = chunks.get(i) else { return };
            if let Err(e) = self.ensure(mf, n, Demand::Prefetch) {
                next.store(chunks.len(), Ordering::Relaxed);
                failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
                return;
            }
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let loaded = chunks.iter().filter(|&&n| self.is_loaded(n)).count();
        self.prefetched.store(loaded, Ordering::Release);
        Ok(())
    }

    /// The memory-file span of chunk `n`.
    pub fn span(&self, n: usize) -> Option<(u64, u64)> {
        self.spans.get(n).copied()
    }

    /// The chunk whose span holds memory-file offset `off`.
    pub fn chunk_at(&self, off: u64) -> Option<usize> {
        let i = self.spans.partition_point(|(_, e)| *e <= off);
        self.spans.get(i).filter(|(s, _)| *s <= off).map(|_| i)
    }

    pub fn is_loaded(&self, n: usize) -> bool {
        self.states
            .get(n)
            .is_none_or(|s| s.load(Ordering::Acquire) == LOADED)
    }

    /// Spans of the chunks not loaded yet (an address space made now hides
    /// them from the application).
    pub fn unloaded_spans(&self) -> Vec<(u64, u64)> {
        if self.all_loaded() {
            return Vec::new();
        }
        (0..self.spans.len())
            .filter(|&n| !self.is_loaded(n))
            .map(|n| self.spans[n])
            .collect()
    }

    /// Loads every chunk that `[off, off + len)` touches (waiting for one
    /// another thread is loading).
    pub fn ensure_range(
        &self,
        mf: &MemoryFile,
        off: u64,
        len: u64,
        demand: Demand,
    ) -> Result<(), LazyError> {
        if len == 0 || self.all_loaded() {
            return Ok(());
        }
        let end = off.saturating_add(len);
        let first = self.spans.partition_point(|(_, e)| *e <= off);
        for n in first..self.spans.len() {
            if self.spans[n].0 >= end {
                break;
            }
            self.ensure(mf, n, demand)?;
        }
        Ok(())
    }

    /// Loads chunk `n` unless it is in; the one caller that finds it
    /// unloaded loads it, the others wait for that one.
    pub fn ensure(&self, mf: &MemoryFile, n: usize, demand: Demand) -> Result<(), LazyError> {
        let Some(state) = self.states.get(n) else {
            return Ok(());
        };
        if state.load(Ordering::Acquire) == LOADED {
            return Ok(());
        }
        let mut g = self.lock();
        loop {
            match state.load(Ordering::Acquire) {
                LOADED => return Ok(()),
                DAMAGED => {
                    return Err(g
                        .damage
                        .clone()
                        .unwrap_or_else(|| self.damaged(n, "damaged")))
                }
                LOADING => g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
                _ => break,
            }
        }
        state.store(LOADING, Ordering::Release);
        if demand == Demand::Fault {
            g.demanded.push(n);
        }
        drop(g);
        let got = self.load(mf, n);
        let mut g = self.lock();
        let result = match got {
            Ok(()) => {
                state.store(LOADED, Ordering::Release);
                if self.loaded.fetch_add(1, Ordering::AcqRel) + 1 == self.spans.len() {
                    self.all.store(true, Ordering::Release);
                }
                Ok(())
            }
            Err(e) => {
                state.store(DAMAGED, Ordering::Release);
                g.damage.get_or_insert_with(|| e.clone());
                Err(e)
            }
        };
        drop(g);
        self.changed.notify_all();
        if demand == Demand::Fault && result.is_ok() {
            self.record_if_done(false);
        }
        result
    }

    fn damaged(&self, n: usize, reason: &str) -> LazyError {
        let (start, end) = self.spans.get(n).copied().unwrap_or_default();
        LazyError::Damaged {
            path: self.path.clone(),
            chunk: n,
            start,
            end,
            reason: reason.to_string(),
        }
    }

    fn load(&self, mf: &MemoryFile, n: usize) -> Result<(), LazyError> {
        let memory = self.table.bind(&self.reader);
        memory
            .load_chunk_runs(n, |off, bytes| {
                let len = bytes.len() as u64;
                let inside = self
                    .ranges
                    .iter()
                    .any(|r| r.start <= off && off.saturating_add(len) <= r.end);
                if !inside {
                    return Err(StatefileError::PageOutOfRange { offset: off, len });
                }
                mf.fill_restored(off, bytes)
                    .map_err(|e| StatefileError::Io(std::io::Error::from_raw_os_error(e.0)))
            })
            .map_err(|e| self.damaged(n, &e.to_string()))
    }

    /// The background loader's work: every chunk not loaded yet, in order
    /// (a recorded working set was prefetched before the resume); a
    /// damaged chunk stops it (and the sandbox).
    pub fn load_rest(&self, mf: &MemoryFile) -> Result<(), LazyError> {
        {
            let mut g = self.lock();
            while g.held {
                g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        for n in 0..self.spans.len() {
            self.ensure(mf, n, Demand::Background)?;
        }
        // Nothing is demanded any more: the working set is complete.
        self.finish_recording();
        Ok(())
    }

    /// Lets a held background loader go (a test's hold ends at the
    /// sandbox's first checkpoint or when asked through /proc/cryo).
    pub fn release_hold(&self) {
        self.lock().held = false;
        self.changed.notify_all();
    }

    /// Stops the sandbox: a chunk it needs is damaged, and no wrong memory
    /// may reach the application.
    pub fn die(&self, e: &LazyError) -> ! {
        eprintln!("cryo: lazy restore: {e}: the sandbox is stopped");
        tracing::error!("lazy restore: {e}");
        std::process::exit(DAMAGED_EXIT_STATUS)
    }
}
