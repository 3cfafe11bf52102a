//! tmpfs: directories, regular files and symlinks in memory (gVisor's
//! fsimpl/tmpfs). Also the upper layer of the overlay, for which its
//! directories keep whiteouts and an opaque flag.
//!
//! A regular file's bytes live in the Sentry's memory file (invariant 1 of
//! DESIGN.md), like gVisor's tmpfs over pgalloc: each file keeps a sparse
//! map from page index to memory-file offset, filled on first write and
//! given back on truncate and when the last name and user of the file go.
//! A checkpoint therefore saves only that map; the pages travel in the
//! statefile's memory section with the rest of application memory.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::dentry::lock;
use super::file::{DirOps, FileKind, FileOps, IoCtx, SaveAs};
use super::inode::{DirEntry, Inode};
use super::pipe::Pipe;
use super::stat::{dirent_type, Clock, Stat, Timespec};
use crate::errno::Errno;
use crate::mm::{FileRange, MemoryFile, MF_PAGE_SIZE};

/// Files keep their data in pages of the memory file, allocated only where
/// written, so a write at a huge offset costs one page, not the whole gap.
pub(crate) const PAGE: usize = MF_PAGE_SIZE as usize;

/// Most pages shared mappings may pin in one tmpfs at once (4 GiB).
pub(crate) const MAX_MAPPED_PAGES: u64 = 1 << 20;

/// Most extended attributes one node keeps (each value is at most
/// XATTR_SIZE_MAX, 64 KiB), so one file cannot take the Sentry's heap.
pub(crate) const MAX_XATTRS: usize = 1024;

/// Linux's MAX_LFS_FILESIZE on 64-bit.
pub(crate) const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// A tmpfs's `size=`: bytes, or a percentage of the sandbox's memory
/// (Linux resolves `%` against RAM when the option is parsed; cryo keeps
/// it until the sandbox's memory size is known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmpfsSize {
    Bytes(u64),
    PercentOfMemory(u64),
}

/// A tmpfs mount's options (the data string of mount(2) or an OCI mount's
/// `options` once the mount flags are taken out), as Linux's
/// shmem_parse_one reads them. Absent limits take Linux's defaults
/// ([`TmpfsOptions::limits`]); a limit of 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TmpfsOptions {
    pub size: Option<TmpfsSize>,
    /// `nr_blocks=`: the limit in pages (size= and nr_blocks= set the
    /// same limit; the last one given wins, as Linux).
    pub nr_blocks: Option<u64>,
    pub nr_inodes: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A tmpfs instance's limits: pages and inodes, `None` for unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmpfsLimits {
    pub max_blocks: Option<u64>,
    pub max_inodes: Option<u64>,
}

impl TmpfsLimits {
    pub const UNLIMITED: TmpfsLimits = TmpfsLimits {
        max_blocks: None,
        max_inodes: None,
    };

    /// Linux's defaults for a sandbox with `mem_bytes` of memory: half of
    /// its pages (shmem_default_max_blocks) and as many inodes
    /// (shmem_default_max_inodes: min(RAM pages / 2, lowmem pages), and
    /// on 64-bit every page is lowmem).
    pub fn default_for(mem_bytes: u64) -> TmpfsLimits {
        let half = (mem_bytes / PAGE as u64) / 2;
        TmpfsLimits {
            max_blocks: Some(half.max(1)),
            max_inodes: Some(half.max(1)),
        }
    }
}

/// The sandbox's memory as /proc/meminfo's MemTotal shows it: its memory
/// limit if it has one (and the host has as much), else the host's RAM.
pub fn sandbox_memory_bytes(mf: &MemoryFile) -> u64 {
    let host = nix::sys::sysinfo::sysinfo()
        .map(|s| s.ram_total())
        .unwrap_or(0);
    match mf.limit() {
        Some(l) if host == 0 || l < host => l,
        _ => host,
    }
}

/// Linux's memparse: a number in C's base 0 (0x hex, leading 0 octal),
/// then an optional K, M, G, T, P or E (any case) multiplier. Returns the
/// value and what follows it.
fn memparse(s: &str) -> Result<(u64, &str), Errno> {
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 && radix != 8 {
        return Err(Errno::EINVAL);
    }
    let v = if end == 0 {
        0
    } else {
        u64::from_str_radix(&digits[..end], radix).map_err(|_| Errno::EINVAL)?
    };
    let rest = &digits[end..];
    let shift = match rest.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some('e') => 60,
        _ => return Ok((v, rest)),
    };
    let v = v
        .checked_shl(shift)
        .filter(|r| r >> shift == v)
        .ok_or(Errno::EINVAL)?;
    Ok((v, &rest[1..]))
}

impl TmpfsOptions {
    /// Parses a comma-separated option string (`size=64m,mode=1777`).
    /// Unknown keys, bad numbers, trailing garbage and ids Linux cannot
    /// map are EINVAL, as shmem_parse_one and fs_parse answer them.
    pub fn parse(data: &str) -> Result<TmpfsOptions, Errno> {
        let mut o = TmpfsOptions::default();
        for opt in data.split(',').filter(|s| !s.is_empty()) {
            let (key, val) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let val = val.ok_or(Errno::EINVAL);
            match key {
                "size" => {
                    let (v, rest) = memparse(val?)?;
                    o.size = Some(match rest {
                        "" => TmpfsSize::Bytes(v),
                        "%" => TmpfsSize::PercentOfMemory(v),
                        _ => return Err(Errno::EINVAL),
                    });
                    o.nr_blocks = None;
                }
                "nr_blocks" => {
                    let (v, rest) = memparse(val?)?;
                    if !rest.is_empty() {
                        return Err(Errno::EINVAL);
                    }
                    o.nr_blocks = Some(v);
                    o.size = None;
                }
                "nr_inodes" => {
                    let (v, rest) = memparse(val?)?;
                    if !rest.is_empty() {
                        return Err(Errno::EINVAL);
                    }
                    o.nr_inodes = Some(v);
                }
                "mode" => {
                    let v = u32::from_str_radix(val?, 8).map_err(|_| Errno::EINVAL)?;
                    o.mode = Some(v & 0o7777);
                }
                "uid" | "gid" => {
                    let v: u32 = val?.parse().map_err(|_| Errno::EINVAL)?;
                    // (uid_t)-1 is no id (make_kuid gives INVALID_UID).
                    if v == u32::MAX {
                        return Err(Errno::EINVAL);
                    }
                    if key == "uid" {
                        o.uid = Some(v);
                    } else {
                        o.gid = Some(v);
                    }
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        Ok(o)
    }

    /// The limits these options give a tmpfs in a sandbox with
    /// `mem_bytes` of memory: Linux's defaults where none is given, none
    /// where 0 is given.
    pub fn limits(&self, mem_bytes: u64) -> TmpfsLimits {
        let def = TmpfsLimits::default_for(mem_bytes);
        let page = PAGE as u64;
        let blocks = match (self.size, self.nr_blocks) {
            (_, Some(n)) => Some(n),
            (Some(TmpfsSize::Bytes(b)), _) => Some(b.div_ceil(page)),
            (Some(TmpfsSize::PercentOfMemory(p)), _) => {
                let bytes = (mem_bytes as u128 * p as u128 / 100).min(u64::MAX as u128) as u64;
                Some(bytes.div_ceil(page))
            }
            (None, None) => def.max_blocks,
        };
        let inodes = match self.nr_inodes {
            Some(n) => Some(n),
            None => def.max_inodes,
        };
        TmpfsLimits {
            max_blocks: blocks.filter(|&n| n != 0),
            max_inodes: inodes.filter(|&n| n != 0),
        }
    }
}

/// What one tmpfs instance uses against its limits (shmem_sb_info's
/// used_blocks and free_ispace). Blocks are the pages files hold; inodes
/// are the nodes alive plus one per hard link beyond a node's first, as
/// Linux charges every link's dentry (shmem_link). Limits of `u64::MAX`
/// are none.
pub(crate) struct TmpfsUsage {
    pub(crate) blocks: AtomicU64,
    pub(crate) inodes: AtomicU64,
    pub(crate) max_blocks: AtomicU64,
    pub(crate) max_inodes: AtomicU64,
}

impl TmpfsUsage {
    pub(crate) fn new(limits: TmpfsLimits) -> TmpfsUsage {
        TmpfsUsage {
            blocks: AtomicU64::new(0),
            inodes: AtomicU64::new(0),
            max_blocks: AtomicU64::new(limits.max_blocks.unwrap_or(u64::MAX)),
            max_inodes: AtomicU64::new(limits.max_inodes.unwrap_or(u64::MAX)),
        }
    }

    fn charge(used: &AtomicU64, max: &AtomicU64, n: u64) -> Result<(), Errno> {
        let max = max.load(Ordering::Relaxed);
        used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
            cur.checked_add(n).filter(|t| *t <= max)
        })
        .map(|_| ())
        .map_err(|_| Errno::ENOSPC)
    }

    fn uncharge(used: &AtomicU64, n: u64) {
        let r = used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
            cur.checked_sub(n)
        });
        if r.is_err() {
            tracing::error!("tmpfs: usage would go below zero");
            used.store(0, Ordering::Relaxed);
        }
    }

    /// Takes `n` pages (ENOSPC past the limit).
    pub(crate) fn charge_blocks(&self, n: u64) -> Result<(), Errno> {
        Self::charge(&self.blocks, &self.max_blocks, n)
    }

    pub(crate) fn uncharge_blocks(&self, n: u64) {
        if n > 0 {
            Self::uncharge(&self.blocks, n)
        }
    }

    /// Takes an inode (ENOSPC when none is left).
    pub(crate) fn charge_inode(&self) -> Result<(), Errno> {
        Self::charge(&self.inodes, &self.max_inodes, 1)
    }

    pub(crate) fn uncharge_inode(&self) {
        Self::uncharge(&self.inodes, 1)
    }

    pub(crate) fn limits(&self) -> TmpfsLimits {
        let l = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&v| v != u64::MAX);
        TmpfsLimits {
            max_blocks: l(&self.max_blocks),
            max_inodes: l(&self.max_inodes),
        }
    }
}

pub(crate) struct TmpfsShared {
    pub(crate) next_ino: AtomicU64,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where file pages live.
    pub(crate) mf: Arc<MemoryFile>,
    /// Pages pinned by shared mappings, and how many may be
    /// ([`MAX_MAPPED_PAGES`]; lower in tests).
    pub(crate) mapped_pages: AtomicU64,
    pub(crate) mapped_limit: AtomicU64,
    /// Files with no name left (unlinked while open, O_TMPFILE): a
    /// checkpoint saves those still alive, which an open file or a mapping
    /// holds.
    pub(crate) orphans: Mutex<Vec<Weak<TmpfsInode>>>,
    pub(crate) usage: Arc<TmpfsUsage>,
}

impl TmpfsShared {
    /// Notes that `inode` lost its last name.
    pub(crate) fn orphaned(&self, inode: &Arc<TmpfsInode>) {
        let mut o = lock(&self.orphans);
        o.retain(|w| w.strong_count() > 0);
        o.push(Arc::downgrade(inode));
    }

    /// The orphans alive now.
    pub(crate) fn live_orphans(&self) -> Vec<Arc<TmpfsInode>> {
        let mut o = lock(&self.orphans);
        o.retain(|w| w.strong_count() > 0);
        o.iter().filter_map(Weak::upgrade).collect()
    }
}

/// One tmpfs instance.
pub struct Tmpfs {
    pub(crate) shared: Arc<TmpfsShared>,
    pub(crate) root: Mutex<Arc<TmpfsInode>>,
    /// After a restore, the files with no name the statefile held, by
    /// inode number, until the open files that hold them are re-opened
    /// ([`Tmpfs::take_restored_orphans`]).
    pub(crate) restored_orphans: Mutex<std::collections::HashMap<u64, Arc<TmpfsInode>>>,
}

impl Tmpfs {
    /// An empty tmpfs whose root directory has permission bits `mode`, its
    /// files kept in `mf`.
    pub fn with_memory(clock: Arc<dyn Clock>, mode: u32, mf: Arc<MemoryFile>) -> Arc<Tmpfs> {
        Self::with_limits(clock, mode, mf, TmpfsLimits::UNLIMITED)
    }

    /// An empty tmpfs with `limits` (the root directory takes one inode,
    /// as Linux's does).
    pub fn with_limits(
        clock: Arc<dyn Clock>,
        mode: u32,
        mf: Arc<MemoryFile>,
        limits: TmpfsLimits,
    ) -> Arc<Tmpfs> {
        let shared = Arc::new(TmpfsShared {
            next_ino: AtomicU64::new(1),
            clock,
            mf,
            mapped_pages: AtomicU64::new(0),
            mapped_limit: AtomicU64::new(MAX_MAPPED_PAGES),
            orphans: Mutex::new(Vec::new()),
            usage: Arc::new(TmpfsUsage::new(limits)),
        });
        let root = TmpfsInode::with_ino(
            &shared,
            Node::new(
                libc::S_IFDIR | (mode & 0o7777),
                Kind::Dir(DirData::default()),
                shared.clock.now(),
            ),
            shared.next_ino.fetch_add(1, Ordering::Relaxed),
        );
        Arc::new(Tmpfs {
            shared,
            root: Mutex::new(root),
            restored_orphans: Mutex::new(Default::default()),
        })
    }

    /// A restored file with no name, by inode number (an open file being
    /// re-opened).
    pub(crate) fn restored_orphan(&self, ino: u64) -> Option<Arc<TmpfsInode>> {
        lock(&self.restored_orphans).get(&ino).cloned()
    }

    /// Lets go of the restored files with no name: those no re-opened file
    /// holds are freed now.
    pub fn take_restored_orphans(&self) {
        lock(&self.restored_orphans).clear();
    }

    /// An empty tmpfs over a memory file of its own, for tests.
    #[cfg(test)]
    pub fn new(clock: Arc<dyn Clock>, mode: u32) -> Arc<Tmpfs> {
        Self::with_memory(clock, mode, super::testing::test_memory_file())
    }

    pub fn root(&self) -> Arc<TmpfsInode> {
        lock(&self.root).clone()
    }

    pub fn memory_file(&self) -> &Arc<MemoryFile> {
        &self.shared.mf
    }

    /// Gives the root directory the owner a mount's uid=/gid= name.
    pub fn set_root_owner(&self, uid: Option<u32>, gid: Option<u32>) {
        let root = self.root();
        let mut n = root.lock();
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
    }

    /// The limits and what is used of them: (blocks, inodes).
    pub fn usage(&self) -> (TmpfsLimits, u64, u64) {
        let u = &self.shared.usage;
        (
            u.limits(),
            u.blocks.load(Ordering::Relaxed),
            u.inodes.load(Ordering::Relaxed),
        )
    }

    #[cfg(test)]
    pub(crate) fn set_mapped_limit(&self, pages: u64) {
        self.shared.mapped_limit.store(pages, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub(crate) struct DirData {
    pub(crate) children: BTreeMap<Vec<u8>, Arc<TmpfsInode>>,
    /// Overlay whiteouts: names of the lower layer deleted in the overlay.
    pub(crate) whiteouts: BTreeSet<Vec<u8>>,
    /// Overlay: the lower layer's directory of the same name is hidden.
    pub(crate) opaque: bool,
}

impl Drop for DirData {
    /// Tears a tree down without recursion: a guest may build a directory
    /// chain far deeper than the Sentry's stack could unwind one frame per
    /// level. Every subtree this directory held the last reference to is
    /// taken apart here, one node at a time.
    fn drop(&mut self) {
        let mut pending: Vec<Arc<TmpfsInode>> =
            std::mem::take(&mut self.children).into_values().collect();
        while let Some(child) = pending.pop() {
            let Some(inode) = Arc::into_inner(child) else {
                continue; // Still in use elsewhere (an open file, a cwd).
            };
            let mut node = inode.lock();
            if let Kind::Dir(d) = &mut node.kind {
                pending.extend(std::mem::take(&mut d.children).into_values());
            }
        }
    }
}

/// A regular file's bytes: `pages` maps a page index of the file to the
/// memory-file offset of that page (each page owned by this file alone).
/// Pages absent from the map read as zeros.
///
/// Shared mappings map the file's pages themselves (`map_shared`); while a
/// page is mapped it is pinned and never freed. A pinned page the file lets
/// go of (truncate) stays allocated, an orphan, until its last mapping goes.
pub(crate) struct FileData {
    pub(crate) size: u64,
    pub(crate) pages: BTreeMap<u64, u64>,
    pub(crate) mf: Arc<MemoryFile>,
    /// The file system's usage, charged for every page in `pages`.
    pub(crate) usage: Arc<TmpfsUsage>,
    /// Memory-file offset -> number of mappings of that page.
    pins: BTreeMap<u64, u32>,
    /// Pinned pages no longer part of the file.
    orphans: BTreeSet<u64>,
}

impl Drop for FileData {
    fn drop(&mut self) {
        let pages = std::mem::take(&mut self.pages);
        self.usage.uncharge_blocks(pages.len() as u64);
        if !self.pins.is_empty() {
            // A mapping holds the file open, so this cannot happen; leaking
            // the pinned pages is the safe way out if it does.
            tracing::error!("tmpfs: a file with mapped pages was freed");
        }
        let pins = &self.pins;
        free_pages(
            &self.mf,
            pages.into_values().filter(|o| !pins.contains_key(o)),
        );
    }
}

/// How many of `len` bytes a write at `off` into a file of `size` bytes
/// with `seals` may write (shmem_write_begin's checks, made per page as
/// Linux copies): none with a write seal (EPERM), and with F_SEAL_GROW
/// the pages before the first one that would end past the size (EPERM if
/// that is the first). An empty write writes nothing and is no error.
fn sealed_write_len(seals: u32, size: u64, off: u64, len: usize) -> Result<usize, Errno> {
    if len == 0 {
        return Ok(0);
    }
    if seals & SEAL_ANY_WRITE != 0 {
        return Err(Errno::EPERM);
    }
    if seals & SEAL_GROW == 0 {
        return Ok(len);
    }
    let mut done = 0usize;
    while done < len {
        let pos = off.saturating_add(done as u64);
        let chunk = (PAGE - (pos % PAGE as u64) as usize).min(len - done);
        if pos.saturating_add(chunk as u64) > size {
            break;
        }
        done += chunk;
    }
    if done == 0 {
        return Err(Errno::EPERM);
    }
    Ok(done)
}

/// Gives pages back to the memory file, one call per run of adjacent pages.
fn free_pages(mf: &MemoryFile, offsets: impl Iterator<Item = u64>) {
    let mut offsets: Vec<u64> = offsets.collect();
    offsets.sort_unstable();
    let mut i = 0;
    while i < offsets.len() {
        let start = offsets[i];
        let mut end = start + PAGE as u64;
        i += 1;
        while i < offsets.len() && offsets[i] == end {
            end += PAGE as u64;
            i += 1;
        }
        if let Err(e) = mf.free(start, end - start) {
            // The page map and the allocator disagree: a bug, but the file is
            // going away either way; leaking the range is the safe outcome.
            tracing::error!("tmpfs: freeing file pages {start:#x}..{end:#x}: {e}");
        }
    }
}

pub(crate) enum Kind {
    Dir(DirData),
    File(FileData),
    Symlink(Vec<u8>),
}

pub(crate) struct Node {
    /// Directory entries naming this node (st_nlink of a non-directory;
    /// a directory's is counted from its subdirectories).
    pub(crate) links: u32,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: Timespec,
    pub(crate) mtime: Timespec,
    pub(crate) ctime: Timespec,
    /// memfd seals (`F_SEAL_*`, fcntl(2)). Every shmem file has them:
    /// a tmpfs file starts with F_SEAL_SEAL alone (nothing can be added),
    /// a memfd made with MFD_ALLOW_SEALING with none.
    pub(crate) seals: u32,
    /// Extended attributes (user.*, trusted.*, security.*), by name.
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) kind: Kind,
}

/// The seals Linux knows (F_SEAL_SEAL, SHRINK, GROW, WRITE, FUTURE_WRITE,
/// EXEC: Linux's F_ALL_SEALS).
pub const SEALS_KNOWN: u32 = (libc::F_SEAL_SEAL
    | libc::F_SEAL_SHRINK
    | libc::F_SEAL_GROW
    | libc::F_SEAL_WRITE
    | libc::F_SEAL_FUTURE_WRITE
    | libc::F_SEAL_EXEC) as u32;
pub(crate) const SEAL_SEAL: u32 = libc::F_SEAL_SEAL as u32;
const SEAL_WRITE: u32 = libc::F_SEAL_WRITE as u32;
pub(crate) const SEAL_EXEC: u32 = libc::F_SEAL_EXEC as u32;
const SEAL_SHRINK: u32 = libc::F_SEAL_SHRINK as u32;
const SEAL_GROW: u32 = libc::F_SEAL_GROW as u32;
/// Either seal that forbids writing through write(2).
const SEAL_ANY_WRITE: u32 = (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) as u32;

impl Node {
    pub(crate) fn new(mode: u32, kind: Kind, now: Timespec) -> Node {
        Node {
            links: 1,
            mode,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
            seals: SEAL_SEAL,
            xattrs: BTreeMap::new(),
            kind,
        }
    }

    fn dir(&mut self) -> Result<&mut DirData, Errno> {
        match &mut self.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }
}

pub struct TmpfsInode {
    pub(crate) ino: u64,
    file_type: u32,
    pub(crate) fs: Arc<TmpfsShared>,
    me: Weak<TmpfsInode>,
    pub(crate) node: Mutex<Node>,
    /// A FIFO's pipe while any end is open: Linux frees a FIFO's buffer
    /// when its last end closes, and so does dropping the last end here.
    fifo: Mutex<Weak<Pipe>>,
    /// Whether this node holds one of its file system's inodes (a memfd
    /// made here does not).
    charged: bool,
}

impl FileData {
    pub(crate) fn new(fs: &TmpfsShared) -> FileData {
        FileData {
            size: 0,
            pages: BTreeMap::new(),
            mf: fs.mf.clone(),
            usage: fs.usage.clone(),
            pins: BTreeMap::new(),
            orphans: BTreeSet::new(),
        }
    }

    /// Lets go of pages the file no longer holds (already out of `pages`):
    /// uncharged, and freed unless mapped.
    fn release(&mut self, offsets: impl Iterator<Item = u64>) {
        let mut free = Vec::new();
        let mut n = 0u64;
        for o in offsets {
            n += 1;
            if self.pins.contains_key(&o) {
                self.orphans.insert(o);
            } else {
                free.push(o);
            }
        }
        self.usage.uncharge_blocks(n);
        free_pages(&self.mf, free.into_iter());
    }

    /// See [`crate::mm::MappableFile::map_shared`]. Pages of the range not
    /// yet backed are backed; pages not already one run are moved into a new
    /// run (their bytes copied), unless some are pinned by another mapping.
    /// The work is proportional to the pages the file already has in the
    /// range plus `len` (which the caller bounds, [`MAX_MAPPED_PAGES`]).
    fn map_shared(&mut self, offset: u64, len: u64) -> Option<u64> {
        let page = PAGE as u64;
        if len == 0 || !(offset | len).is_multiple_of(page) {
            return None;
        }
        let end = offset.checked_add(len)?;
        // Past the end of the file Linux raises SIGBUS; such a mapping is
        // left to the copying path rather than growing the file's pages.
        if end > self.size.next_multiple_of(page) {
            return None;
        }
        let (first, n) = (offset / page, len / page);
        let existing: Vec<(u64, u64)> = self
            .pages
            .range(first..first + n)
            .map(|(i, o)| (*i, *o))
            .collect();
        let contiguous = existing.len() as u64 == n
            && existing
                .iter()
                .all(|(i, o)| *o == existing[0].1 + (i - first) * page);
        let run = if contiguous {
            existing[0].1
        } else {
            if existing.iter().any(|(_, o)| self.pins.contains_key(o)) {
                return None;
            }
            // Every page of the range is the file's now: charged here,
            // as Linux charges a page at its first fault (untouched ones
            // are given back at unmap). Past the limit the mapping copies.
            let new_pages = n - existing.len() as u64;
            self.usage.charge_blocks(new_pages).ok()?;
            let Ok(run) = self.mf.allocate(len) else {
                self.usage.uncharge_blocks(new_pages);
                return None;
            };
            let mut buf = vec![0u8; PAGE];
            for (i, o) in &existing {
                let copied = self
                    .mf
                    .read_at(*o, &mut buf)
                    .and_then(|()| self.mf.pwrite_at(run + (i - first) * page, &buf));
                if copied.is_err() {
                    self.usage.uncharge_blocks(new_pages);
                    if let Err(e) = self.mf.free(run, len) {
                        tracing::error!("tmpfs: freeing an unused run: {e}");
                    }
                    return None;
                }
            }
            for i in 0..n {
                self.pages.insert(first + i, run + i * page);
            }
            // The old pages' charge moves to the run's (release uncharges).
            self.usage
                .blocks
                .fetch_add(existing.len() as u64, Ordering::Relaxed);
            self.release(existing.into_iter().map(|(_, o)| o));
            run
        };
        for i in 0..n {
            *self.pins.entry(run + i * page).or_insert(0) += 1;
        }
        Some(run)
    }

    /// See [`crate::mm::MappableFile::unmap_shared`]: `offset` is the file
    /// offset the run maps. Pages no mapping holds any more and that were
    /// never touched (still holes in the memory file) are dropped from the
    /// file again, so mapping a large sparse file leaves no bookkeeping for
    /// the pages nobody used.
    fn unmap_shared(&mut self, offset: u64, mf_offset: u64, len: u64) {
        let page = PAGE as u64;
        let mut free = Vec::new();
        let mut idle = Vec::new();
        for i in 0..len / page {
            let o = mf_offset + i * page;
            let Some(count) = self.pins.get_mut(&o) else {
                tracing::error!("tmpfs: unpinning page {o:#x}, which is not pinned");
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.pins.remove(&o);
                if self.orphans.remove(&o) {
                    free.push(o);
                } else {
                    idle.push((offset / page + i, o));
                }
            }
        }
        if !idle.is_empty() {
            let data = self.mf.data_ranges(mf_offset, len).unwrap_or_else(|e| {
                tracing::warn!("tmpfs: cannot tell untouched pages: {e}");
                vec![FileRange {
                    start: mf_offset,
                    end: mf_offset + len,
                }]
            });
            for (i, o) in idle {
                let touched = data.iter().any(|r| r.start < o + page && o < r.end);
                if !touched && self.pages.get(&i) == Some(&o) {
                    self.pages.remove(&i);
                    self.usage.uncharge_blocks(1);
                    free.push(o);
                }
            }
        }
        free_pages(&self.mf, free.into_iter());
    }

    fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        if off >= self.size {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.size - off).unwrap_or(usize::MAX));
        let mut done = 0;
        while done < n {
            let pos = off + done as u64;
            let page = pos / PAGE as u64;
            let in_page = pos % PAGE as u64;
            let len = (PAGE - in_page as usize).min(n - done);
            match self.pages.get(&page) {
                Some(mo) => self.mf.read_at(mo + in_page, &mut buf[done..done + len])?,
                None => buf[done..done + len].fill(0),
            }
            done += len;
        }
        Ok(n)
    }

    /// Backs every page of `[first, last]` that has no page yet, taking runs
    /// of missing pages from the memory file in one piece where it can.
    /// On failure the pages taken by this call are given back.
    fn populate(&mut self, first: u64, last: u64) -> Result<(), Errno> {
        let mut added: Vec<u64> = Vec::new();
        let result = self
            .populate_prefix(first, last, &mut added)
            .and_then(|done| {
                if done > last {
                    Ok(())
                } else {
                    Err(Errno::ENOSPC)
                }
            });
        if result.is_err() {
            let offs: Vec<u64> = added.iter().filter_map(|i| self.pages.remove(i)).collect();
            self.release(offs.into_iter());
        }
        result
    }

    /// Backs the pages of `[first, last]` in order until the file system
    /// or the memory file is full, noting each page added in `added`;
    /// returns the first index left unbacked (`last + 1` if none).
    fn populate_prefix(
        &mut self,
        first: u64,
        last: u64,
        added: &mut Vec<u64>,
    ) -> Result<u64, Errno> {
        let mut idx = first;
        while idx <= last {
            if self.pages.contains_key(&idx) {
                idx += 1;
                continue;
            }
            let mut run = 1u64;
            while idx + run <= last && !self.pages.contains_key(&(idx + run)) {
                run += 1;
            }
            // Capped so one allocation never needs a huge free extent.
            let mut run = run.min(256);
            if self.usage.charge_blocks(run).is_err() {
                run = 1;
                if self.usage.charge_blocks(1).is_err() {
                    return Ok(idx);
                }
            }
            // Charged: file data is committed memory (the sandbox's limit).
            let got = match self.mf.allocate_charged(run * PAGE as u64) {
                Ok(off) => Ok((off, run)),
                Err(_) if run > 1 => self.mf.allocate_charged(PAGE as u64).map(|off| (off, 1)),
                Err(e) => Err(e),
            };
            match got {
                Ok((off, n)) => {
                    self.usage.uncharge_blocks(run - n);
                    for i in 0..n {
                        self.pages.insert(idx + i, off + i * PAGE as u64);
                        added.push(idx + i);
                    }
                    idx += n;
                }
                // A full memory file is a full file system to the application.
                Err(Errno::ENOMEM) => {
                    self.usage.uncharge_blocks(run);
                    return Ok(idx);
                }
                Err(e) => {
                    self.usage.uncharge_blocks(run);
                    return Err(e);
                }
            }
        }
        Ok(idx)
    }

    /// Writes `buf` at `off`, or as much of it as the file system has room
    /// for (a short count, as Linux's generic_perform_write; ENOSPC if none).
    pub(crate) fn write_bytes(&mut self, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let end = off.checked_add(buf.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let page = PAGE as u64;
        let mut added = Vec::new();
        let room = match self.populate_prefix(off / page, (end - 1) / page, &mut added) {
            Ok(idx) => (idx * page).min(end).saturating_sub(off) as usize,
            Err(e) => {
                let offs: Vec<u64> = added.iter().filter_map(|i| self.pages.remove(i)).collect();
                self.release(offs.into_iter());
                return Err(e);
            }
        };
        if room == 0 {
            return Err(Errno::ENOSPC);
        }
        let buf = &buf[..room];
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            let page = pos / PAGE as u64;
            let in_page = pos % PAGE as u64;
            let len = (PAGE - in_page as usize).min(buf.len() - done);
            let mo = *self.pages.get(&page).ok_or(Errno::EIO)?;
            self.mf.write_at(mo + in_page, &buf[done..done + len])?;
            done += len;
        }
        self.size = self.size.max(off + room as u64);
        Ok(room)
    }

    fn set_size(&mut self, size: u64) -> Result<(), Errno> {
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if size < self.size {
            let first_gone = size.div_ceil(PAGE as u64);
            let gone = self.pages.split_off(&first_gone);
            self.release(gone.into_values());
            let in_page = size % PAGE as u64;
            if in_page != 0 {
                if let Some(mo) = self.pages.get(&(size / PAGE as u64)) {
                    // A later extension must read zeros past the old end.
                    self.mf.zero(mo + in_page, PAGE as u64 - in_page)?;
                }
            }
        }
        self.size = size;
        Ok(())
    }

    /// fallocate(2) without FALLOC_FL_PUNCH_HOLE: pages for every byte of
    /// `[off, off + len)`, the size grown to its end unless `keep_size`.
    fn allocate(&mut self, off: u64, len: u64, keep_size: bool) -> Result<(), Errno> {
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        if len > 0 {
            self.populate(off / PAGE as u64, (end - 1) / PAGE as u64)?;
        }
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// FALLOC_FL_PUNCH_HOLE: `[off, off + len)` reads as zeros after it,
    /// its whole pages given back (a page a shared mapping still maps stays
    /// that mapping's until unmapped, as with truncate); the size stays.
    fn punch(&mut self, off: u64, len: u64) -> Result<(), Errno> {
        let page = PAGE as u64;
        let end = off.saturating_add(len).min(self.size);
        if off >= end {
            return Ok(());
        }
        let first_whole = off.div_ceil(page);
        let end_whole = end / page;
        if first_whole >= end_whole {
            return self.zero_bytes(off, end);
        }
        self.zero_bytes(off, first_whole * page)?;
        self.zero_bytes(end_whole * page, end)?;
        let gone: Vec<u64> = self
            .pages
            .range(first_whole..end_whole)
            .map(|(&i, _)| i)
            .collect();
        let offsets: Vec<u64> = gone.iter().filter_map(|i| self.pages.remove(i)).collect();
        self.release(offsets.into_iter());
        Ok(())
    }

    /// Zeros the backed bytes of `[from, to)` (unbacked ones read as zeros).
    fn zero_bytes(&self, from: u64, to: u64) -> Result<(), Errno> {
        let page = PAGE as u64;
        let mut pos = from;
        while pos < to {
            let in_page = pos % page;
            let len = (page - in_page).min(to - pos);
            if let Some(mo) = self.pages.get(&(pos / page)) {
                self.mf.zero(mo + in_page, len)?;
            }
            pos += len;
        }
        Ok(())
    }

    /// SEEK_DATA (`data`) or SEEK_HOLE from `pos` (below the size): the
    /// first offset at or after `pos` in a page the file holds (ENXIO if
    /// none before the end), or in one it does not (the size if none).
    fn seek_hole_data(&self, pos: u64, data: bool) -> Result<u64, Errno> {
        let page = PAGE as u64;
        let first = pos / page;
        let last = self.size.div_ceil(page);
        if data {
            let Some((&idx, _)) = self.pages.range(first..last).next() else {
                return Err(Errno::ENXIO);
            };
            return Ok(if idx == first { pos } else { idx * page });
        }
        // The first index from `first` on that the file does not hold.
        let mut idx = first;
        for (&i, _) in self.pages.range(first..last) {
            if i != idx {
                break;
            }
            idx += 1;
        }
        Ok(if idx == first {
            pos
        } else {
            (idx * page).min(self.size)
        })
    }

    /// Pages held (st_blocks is counted from them).
    pub(crate) fn page_count(&self) -> u64 {
        self.pages.len() as u64
    }
}

impl Drop for TmpfsInode {
    fn drop(&mut self) {
        if self.charged {
            self.fs.usage.uncharge_inode();
        }
    }
}

impl TmpfsInode {
    /// A new node, taking one of the file system's inodes (ENOSPC when
    /// none is left, as shmem_reserve_inode).
    pub(crate) fn new(fs: &Arc<TmpfsShared>, node: Node) -> Result<Arc<TmpfsInode>, Errno> {
        fs.usage.charge_inode()?;
        let ino = fs.next_ino.fetch_add(1, Ordering::Relaxed);
        Ok(Self::build(fs, node, ino, true))
    }

    /// A node with a given number (a root, a restored node): it takes an
    /// inode whatever the limit, which a restore checks afterwards.
    pub(crate) fn with_ino(fs: &Arc<TmpfsShared>, node: Node, ino: u64) -> Arc<TmpfsInode> {
        fs.usage.inodes.fetch_add(1, Ordering::Relaxed);
        Self::build(fs, node, ino, true)
    }

    fn build(fs: &Arc<TmpfsShared>, node: Node, ino: u64, charged: bool) -> Arc<TmpfsInode> {
        Arc::new_cyclic(|me| TmpfsInode {
            ino,
            file_type: node.mode & libc::S_IFMT,
            fs: fs.clone(),
            me: me.clone(),
            node: Mutex::new(node),
            fifo: Mutex::new(Weak::new()),
            charged,
        })
    }

    /// The FIFO's pipe, made on the first open of an end.
    fn fifo_pipe(&self) -> Arc<Pipe> {
        let mut w = lock(&self.fifo);
        if let Some(p) = w.upgrade() {
            return p;
        }
        let p = Pipe::new(None, &[], self.now());
        *w = Arc::downgrade(&p);
        p
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Node> {
        lock(&self.node)
    }

    /// An attribute change (chmod, chown, utimes): applies `f` and, as every
    /// such change does, moves ctime to now.
    fn change_attrs(&self, f: impl FnOnce(&mut Node)) -> Result<(), Errno> {
        let now = self.now();
        let mut n = self.lock();
        f(&mut n);
        n.ctime = now;
        Ok(())
    }

    pub(crate) fn arc(&self) -> Option<Arc<TmpfsInode>> {
        self.me.upgrade()
    }

    fn now(&self) -> Timespec {
        self.fs.clock.now()
    }

    /// The child `name`, if any.
    pub fn child(&self, name: &[u8]) -> Option<Arc<TmpfsInode>> {
        match &self.lock().kind {
            Kind::Dir(d) => d.children.get(name).cloned(),
            _ => None,
        }
    }

    pub fn has_whiteout(&self, name: &[u8]) -> bool {
        match &self.lock().kind {
            Kind::Dir(d) => d.whiteouts.contains(name),
            _ => false,
        }
    }

    pub fn add_whiteout(&self, name: &[u8]) -> Result<(), Errno> {
        self.lock().dir()?.whiteouts.insert(name.to_vec());
        Ok(())
    }

    /// Removes a whiteout, returning whether there was one.
    pub fn remove_whiteout(&self, name: &[u8]) -> bool {
        match &mut self.lock().kind {
            Kind::Dir(d) => d.whiteouts.remove(name),
            _ => false,
        }
    }

    pub fn whiteouts(&self) -> Vec<Vec<u8>> {
        match &self.lock().kind {
            Kind::Dir(d) => d.whiteouts.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_opaque(&self) -> bool {
        matches!(&self.lock().kind, Kind::Dir(d) if d.opaque)
    }

    pub fn set_opaque(&self) {
        if let Kind::Dir(d) = &mut self.lock().kind {
            d.opaque = true;
        }
    }

    /// Inserts a new node as child `name` (EEXIST if taken).
    /// A new node is its creator's, in its creator's group, or in the
    /// directory's group when the directory is set-group-ID (a new
    /// directory then is too).
    pub(crate) fn insert(&self, name: &[u8], mut node: Node) -> Result<Arc<TmpfsInode>, Errno> {
        let now = self.now();
        let mut me = self.lock();
        let (uid, gid) = super::perm::current_ids();
        node.uid = uid;
        node.gid = gid;
        if me.mode & libc::S_ISGID != 0 {
            node.gid = me.gid;
            if node.mode & libc::S_IFMT == libc::S_IFDIR {
                node.mode |= libc::S_ISGID;
            }
        }
        let dir = me.dir()?;
        if dir.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let child = TmpfsInode::new(&self.fs, node)?;
        dir.children.insert(name.to_vec(), child.clone());
        me.mtime = now;
        me.ctime = now;
        Ok(child)
    }

    /// O_TMPFILE: a regular file of this file system with no name, its
    /// creator's like any new file (linkat(2) may name it: `add_link`).
    pub(crate) fn new_tmpfile(&self, mode: u32) -> Result<Arc<TmpfsInode>, Errno> {
        if self.file_type != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        let mut node = Node::new(
            libc::S_IFREG | (mode & 0o7777),
            Kind::File(FileData::new(&self.fs)),
            self.now(),
        );
        let (uid, gid) = super::perm::current_ids();
        node.uid = uid;
        node.gid = gid;
        node.links = 0;
        let inode = TmpfsInode::new(&self.fs, node)?;
        self.fs.orphaned(&inode);
        Ok(inode)
    }

    /// A memfd's node: like an O_TMPFILE file of this file system (it
    /// is saved and freed the same way), with `mode` and `seals`.
    /// A memfd is not bound by this file system's limits: Linux keeps
    /// memfds on its internal shm mount, which has none (the sandbox's
    /// memory limit still bounds its pages).
    pub(crate) fn new_memfd(&self, mode: u32, seals: u32) -> Result<Arc<TmpfsInode>, Errno> {
        if self.file_type != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        let mut data = FileData::new(&self.fs);
        data.usage = Arc::new(TmpfsUsage::new(TmpfsLimits::UNLIMITED));
        let mut node = Node::new(
            libc::S_IFREG | (mode & 0o7777),
            Kind::File(data),
            self.now(),
        );
        let (uid, gid) = super::perm::current_ids();
        node.uid = uid;
        node.gid = gid;
        node.links = 0;
        node.seals = seals;
        let ino = self.fs.next_ino.fetch_add(1, Ordering::Relaxed);
        let inode = TmpfsInode::build(&self.fs, node, ino, false);
        self.fs.orphaned(&inode);
        Ok(inode)
    }

    /// Names `target` (a non-directory of this file system) `name` here
    /// too: a hard link, the same inode under two names.
    pub(crate) fn add_link(&self, name: &[u8], target: &Arc<TmpfsInode>) -> Result<(), Errno> {
        if target.file_type == libc::S_IFDIR {
            return Err(Errno::EPERM);
        }
        if !Arc::ptr_eq(&target.fs, &self.fs) {
            return Err(Errno::EXDEV);
        }
        let now = self.now();
        let mut me = self.lock();
        let dir = me.dir()?;
        if dir.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let mut t = target.lock();
        // shmem_link: a link of a named file takes an inode's worth of
        // space; naming an O_TMPFILE file does not (it already holds one).
        if t.links > 0 {
            self.fs.usage.charge_inode()?;
        }
        dir.children.insert(name.to_vec(), target.clone());
        me.mtime = now;
        me.ctime = now;
        t.links = t.links.saturating_add(1);
        t.ctime = now;
        Ok(())
    }

    /// A new child with the given attributes (overlay copy-up).
    pub(crate) fn insert_copy(
        &self,
        name: &[u8],
        st: &Stat,
        kind: Kind,
    ) -> Result<Arc<TmpfsInode>, Errno> {
        let node = Node {
            links: 1,
            mode: st.mode,
            uid: st.uid,
            gid: st.gid,
            atime: st.atime,
            mtime: st.mtime,
            ctime: st.ctime,
            seals: SEAL_SEAL,
            xattrs: BTreeMap::new(),
            kind,
        };
        // Keep the parent's times: a copy-up is not a change the
        // application made to the directory.
        let (mt, ct) = {
            let me = self.lock();
            (me.mtime, me.ctime)
        };
        let child = self.insert(name, node)?;
        let mut me = self.lock();
        me.mtime = mt;
        me.ctime = ct;
        Ok(child)
    }

    fn remove(&self, name: &[u8], want_dir: bool) -> Result<(), Errno> {
        let now = self.now();
        let mut me = self.lock();
        let dir = me.dir()?;
        let child = dir.children.get(name).ok_or(Errno::ENOENT)?;
        let is_dir = child.file_type == libc::S_IFDIR;
        if want_dir && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        if !want_dir && is_dir {
            return Err(Errno::EISDIR);
        }
        if is_dir {
            if let Kind::Dir(d) = &child.lock().kind {
                if !d.children.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
            }
        }
        if let Some(child) = dir.children.remove(name) {
            let mut c = child.lock();
            c.ctime = now;
            // shmem_unlink: a link beyond the last gives its inode back.
            if c.links > 1 && !is_dir {
                self.fs.usage.uncharge_inode();
            }
            c.links = c.links.saturating_sub(1);
            if c.links == 0 && !is_dir {
                self.fs.orphaned(&child);
            }
        }
        me.mtime = now;
        me.ctime = now;
        Ok(())
    }

    /// Reads the file's bytes at `off`.
    pub(crate) fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        match &self.lock().kind {
            Kind::File(f) => f.read(off, buf),
            Kind::Dir(_) => Err(Errno::EISDIR),
            Kind::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    /// fallocate(2) as tmpfs has it (shmem_fallocate): allocation, with or
    /// without FALLOC_FL_KEEP_SIZE, and FALLOC_FL_PUNCH_HOLE with it;
    /// every other mode is EOPNOTSUPP.
    pub(crate) fn fallocate(&self, mode: i32, off: u64, len: u64) -> Result<(), Errno> {
        let now = self.now();
        let mut n = self.lock();
        let seals = n.seals;
        let Kind::File(f) = &mut n.kind else {
            return Err(Errno::ENODEV);
        };
        // shmem_fallocate: a hole is a write; allocating past the end,
        // even with FALLOC_FL_KEEP_SIZE, is growing.
        if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
            if seals & SEAL_ANY_WRITE != 0 {
                return Err(Errno::EPERM);
            }
        } else if seals & SEAL_GROW != 0 && off.saturating_add(len) > f.size {
            return Err(Errno::EPERM);
        }
        match mode {
            0 => f.allocate(off, len, false)?,
            libc::FALLOC_FL_KEEP_SIZE => f.allocate(off, len, true)?,
            m if m == libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE => {
                f.punch(off, len)?
            }
            _ => return Err(Errno::EOPNOTSUPP),
        }
        n.mtime = now;
        n.ctime = now;
        Ok(())
    }

    pub(crate) fn write_at(&self, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        let now = self.now();
        let mut n = self.lock();
        let seals = n.seals;
        let written = match &mut n.kind {
            Kind::File(f) => {
                let buf = &buf[..sealed_write_len(seals, f.size, off, buf.len())?];
                f.write_bytes(off, buf)?
            }
            Kind::Dir(_) => return Err(Errno::EISDIR),
            Kind::Symlink(_) => return Err(Errno::EINVAL),
        };
        n.mtime = now;
        n.ctime = now;
        Ok(written)
    }

    /// A shared mapping of the file's own pages (see
    /// [`crate::mm::MappableFile::map_shared`]).
    /// Bounded by [`MAX_MAPPED_PAGES`] across the file system: each pinned
    /// page costs the Sentry bookkeeping whether the application touches
    /// it or not, so beyond that shared mappings copy (as for host files).
    pub(crate) fn map_shared(&self, offset: u64, len: u64) -> Option<u64> {
        let pages = len / PAGE as u64;
        let reserved = self
            .fs
            .mapped_pages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                cur.checked_add(pages)
                    .filter(|t| *t <= self.fs.mapped_limit.load(Ordering::Relaxed))
            })
            .is_ok();
        if !reserved {
            return None;
        }
        let run = match &mut self.lock().kind {
            Kind::File(f) => f.map_shared(offset, len),
            _ => None,
        };
        if run.is_none() {
            self.fs.mapped_pages.fetch_sub(pages, Ordering::Relaxed);
        }
        run
    }

    /// Whether the file has a page at `offset`.
    pub(crate) fn holds_page(&self, offset: u64) -> bool {
        match &self.lock().kind {
            Kind::File(f) => f.pages.contains_key(&(offset / PAGE as u64)),
            _ => false,
        }
    }

    /// Gives the file a page at `offset` inside it, charged (ENOSPC when
    /// the file system is full).
    pub(crate) fn fault_in(&self, offset: u64) -> Result<(), Errno> {
        match &mut self.lock().kind {
            Kind::File(f) if offset < f.size.next_multiple_of(PAGE as u64) => {
                let idx = offset / PAGE as u64;
                f.populate(idx, idx)
            }
            Kind::File(_) => Err(Errno::EFAULT),
            _ => Err(Errno::ENODEV),
        }
    }

    pub(crate) fn unmap_shared(&self, offset: u64, mf_offset: u64, len: u64) {
        if let Kind::File(f) = &mut self.lock().kind {
            f.unmap_shared(offset, mf_offset, len);
        }
        let pages = len / PAGE as u64;
        let _ = self
            .fs
            .mapped_pages
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some(cur.saturating_sub(pages))
            });
    }

    pub(crate) fn size(&self) -> u64 {
        match &self.lock().kind {
            Kind::File(f) => f.size,
            Kind::Symlink(t) => t.len() as u64,
            Kind::Dir(_) => 0,
        }
    }
}

impl Inode for TmpfsInode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn file_type(&self) -> u32 {
        self.file_type
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let n = self.lock();
        let (size, nlink, blocks) = match &n.kind {
            Kind::File(f) => (
                f.size,
                u64::from(n.links),
                f.page_count() * (PAGE as u64 / 512),
            ),
            Kind::Symlink(t) => (t.len() as u64, u64::from(n.links), 0),
            Kind::Dir(d) => {
                let subdirs = d
                    .children
                    .values()
                    .filter(|c| c.file_type == libc::S_IFDIR)
                    .count();
                (4096, 2 + subdirs as u64, 8)
            }
        };
        Ok(Stat {
            dev: 0,
            ino: self.ino,
            mode: n.mode,
            nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: 0,
            size,
            blksize: PAGE as u32,
            blocks,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
        })
    }

    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        let mut n = self.lock();
        let dir = n.dir()?;
        match dir.children.get(name) {
            Some(c) => Ok(c.clone()),
            None => Err(Errno::ENOENT),
        }
    }

    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut n = self.lock();
        let dir = n.dir()?;
        Ok(dir
            .children
            .iter()
            .map(|(name, c)| DirEntry {
                name: name.clone(),
                ino: c.ino,
                dtype: dirent_type(c.file_type),
            })
            .collect())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        match &self.lock().kind {
            Kind::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        match self.file_type {
            libc::S_IFDIR => Ok(Arc::new(DirOps)),
            libc::S_IFREG => {
                let inode = self.arc().ok_or(Errno::ENOENT)?;
                Ok(Arc::new(TmpfsFileOps { inode }))
            }
            // open(2) of a socket file (Linux: ENXIO).
            libc::S_IFSOCK => Err(Errno::ENXIO),
            libc::S_IFIFO => match flags & libc::O_ACCMODE {
                libc::O_RDONLY | libc::O_WRONLY | libc::O_RDWR => {
                    Ok(self.fifo_pipe().end_ops(flags & libc::O_ACCMODE, true))
                }
                _ => Err(Errno::EINVAL),
            },
            _ => Err(Errno::ELOOP),
        }
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        let node = Node::new(
            libc::S_IFREG | (mode & 0o7777),
            Kind::File(FileData::new(&self.fs)),
            self.now(),
        );
        Ok(self.insert(name, node)?)
    }

    fn mkdir(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        let node = Node::new(
            libc::S_IFDIR | (mode & 0o7777),
            Kind::Dir(DirData::default()),
            self.now(),
        );
        Ok(self.insert(name, node)?)
    }

    /// Regular files, FIFOs and socket nodes. A FIFO's or socket's data is
    /// the empty file it saves as (a bound socket is found by the node's
    /// identity, a FIFO's buffer lives in its pipe while it is open).
    /// Device nodes need CAP_MKNOD, which no sandbox task holds.
    fn mknod(&self, name: &[u8], mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        let file_type = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => libc::S_IFREG,
            t @ (libc::S_IFIFO | libc::S_IFSOCK) => t,
            libc::S_IFCHR | libc::S_IFBLK => return Err(Errno::EPERM),
            _ => return Err(Errno::EINVAL),
        };
        let node = Node::new(
            file_type | (mode & 0o7777),
            Kind::File(FileData::new(&self.fs)),
            self.now(),
        );
        Ok(self.insert(name, node)?)
    }

    fn tmpfile(&self, mode: u32) -> Result<Arc<dyn Inode>, Errno> {
        Ok(self.new_tmpfile(mode)?)
    }

    fn attach_fifo(&self, pipe: &Arc<Pipe>) -> Result<(), Errno> {
        if self.file_type != libc::S_IFIFO {
            return Err(Errno::ENXIO);
        }
        let mut w = lock(&self.fifo);
        match w.upgrade() {
            Some(p) if !Arc::ptr_eq(&p, pipe) => Err(Errno::EBUSY),
            _ => {
                *w = Arc::downgrade(pipe);
                Ok(())
            }
        }
    }

    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        let node = Node::new(
            libc::S_IFLNK | 0o777,
            Kind::Symlink(target.to_vec()),
            self.now(),
        );
        Ok(self.insert(name, node)?)
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        self.remove(name, false)
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        self.remove(name, true)
    }

    fn rename(&self, old_name: &[u8], new_dir: &dyn Inode, new_name: &[u8]) -> Result<(), Errno> {
        let new_dir = new_dir
            .as_any()
            .downcast_ref::<TmpfsInode>()
            .ok_or(Errno::EXDEV)?;
        rename(self, old_name, new_dir, new_name)
    }

    fn link(&self, name: &[u8], target: &dyn Inode) -> Result<(), Errno> {
        let target = target
            .as_any()
            .downcast_ref::<TmpfsInode>()
            .ok_or(Errno::EXDEV)?;
        self.add_link(name, &target.me.upgrade().ok_or(Errno::ENOENT)?)
    }

    fn set_size(&self, size: u64) -> Result<(), Errno> {
        let now = self.now();
        if !matches!(self.file_type, libc::S_IFREG | libc::S_IFDIR) {
            // truncate(2) of a FIFO or socket node (Linux: EINVAL).
            return Err(Errno::EINVAL);
        }
        let mut n = self.lock();
        let seals = n.seals;
        match &mut n.kind {
            Kind::File(f) => {
                // shmem_setattr: a sealed size stays.
                if (size < f.size && seals & SEAL_SHRINK != 0)
                    || (size > f.size && seals & SEAL_GROW != 0)
                {
                    return Err(Errno::EPERM);
                }
                f.set_size(size)?
            }
            Kind::Dir(_) => return Err(Errno::EISDIR),
            Kind::Symlink(_) => return Err(Errno::EINVAL),
        }
        n.mtime = now;
        n.ctime = now;
        Ok(())
    }

    fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>) -> Result<(), Errno> {
        self.change_attrs(|n| {
            if let Some(a) = atime {
                n.atime = a;
            }
            if let Some(m) = mtime {
                n.mtime = m;
            }
        })
    }

    fn chmod(&self, mode: u32) -> Result<(), Errno> {
        {
            let n = self.lock();
            if n.seals & SEAL_EXEC != 0 && (n.mode ^ mode) & 0o111 != 0 {
                return Err(Errno::EPERM);
            }
        }
        self.change_attrs(|n| n.mode = (n.mode & libc::S_IFMT) | (mode & 0o7777))
    }

    fn get_xattr(&self, name: &[u8]) -> Result<Vec<u8>, Errno> {
        self.lock().xattrs.get(name).cloned().ok_or(Errno::ENODATA)
    }

    fn set_xattr(&self, name: &[u8], value: &[u8], flags: i32) -> Result<(), Errno> {
        let now = self.now();
        let mut n = self.lock();
        let exists = n.xattrs.contains_key(name);
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(Errno::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(Errno::ENODATA);
        }
        if !exists && n.xattrs.len() >= MAX_XATTRS {
            return Err(Errno::ENOSPC);
        }
        n.xattrs.insert(name.to_vec(), value.to_vec());
        n.ctime = now;
        Ok(())
    }

    fn list_xattr(&self) -> Result<Vec<Vec<u8>>, Errno> {
        Ok(self.lock().xattrs.keys().cloned().collect())
    }

    fn remove_xattr(&self, name: &[u8]) -> Result<(), Errno> {
        let now = self.now();
        let mut n = self.lock();
        n.xattrs.remove(name).ok_or(Errno::ENODATA)?;
        n.ctime = now;
        Ok(())
    }

    fn seals(&self) -> Result<u32, Errno> {
        if self.file_type != libc::S_IFREG {
            return Err(Errno::EINVAL);
        }
        Ok(self.lock().seals)
    }

    fn add_seals(&self, seals: u32) -> Result<(), Errno> {
        if seals & !SEALS_KNOWN != 0 || self.file_type != libc::S_IFREG {
            return Err(Errno::EINVAL);
        }
        let mut n = self.lock();
        if n.seals & SEAL_SEAL != 0 {
            return Err(Errno::EPERM);
        }
        let mut seals = seals;
        if let Kind::File(f) = &n.kind {
            // mapping_deny_writable: shared mappings could still write.
            if seals & SEAL_WRITE != 0 && n.seals & SEAL_WRITE == 0 && !f.pins.is_empty() {
                return Err(Errno::EBUSY);
            }
        }
        // F_SEAL_EXEC on an executable file also seals its contents (W^X).
        if seals & SEAL_EXEC != 0 && n.mode & 0o111 != 0 {
            seals |= SEAL_SHRINK | SEAL_GROW | SEAL_ANY_WRITE;
        }
        n.seals |= seals;
        Ok(())
    }

    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        self.change_attrs(|n| {
            if let Some(u) = uid {
                n.uid = u;
            }
            if let Some(g) = gid {
                n.gid = g;
            }
        })
    }
}

/// Moves `old_dir/old_name` to `new_dir/new_name`, replacing a compatible
/// target (an empty directory for a directory, a non-directory otherwise).
pub(crate) fn rename(
    old_dir: &TmpfsInode,
    old_name: &[u8],
    new_dir: &TmpfsInode,
    new_name: &[u8],
) -> Result<(), Errno> {
    let now = old_dir.now();
    let same = std::ptr::eq(old_dir, new_dir);
    // Two directories are locked in inode order so that concurrent renames
    // cannot deadlock; a parent is always locked before its children.
    let (mut a, mut b);
    let (old_node, new_node): (&mut Node, Option<&mut Node>) = if same {
        a = old_dir.lock();
        (&mut a, None)
    } else if old_dir.ino < new_dir.ino {
        a = old_dir.lock();
        b = new_dir.lock();
        (&mut a, Some(&mut b))
    } else {
        b = new_dir.lock();
        a = old_dir.lock();
        (&mut a, Some(&mut b))
    };
    let src = old_node
        .dir()?
        .children
        .get(old_name)
        .cloned()
        .ok_or(Errno::ENOENT)?;
    if std::ptr::eq(Arc::as_ptr(&src), new_dir) {
        return Err(Errno::EINVAL);
    }
    let target_dir: &mut DirData = match new_node {
        Some(n) => n.dir()?,
        None => old_node.dir()?,
    };
    if let Some(dst) = target_dir.children.get(new_name) {
        if Arc::ptr_eq(dst, &src) {
            return Ok(());
        }
        if std::ptr::eq(Arc::as_ptr(dst), old_dir) {
            return Err(Errno::ENOTEMPTY);
        }
        let src_dir = src.file_type == libc::S_IFDIR;
        let dst_dir = dst.file_type == libc::S_IFDIR;
        match (src_dir, dst_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) => {
                if let Kind::Dir(d) = &dst.lock().kind {
                    if !d.children.is_empty() {
                        return Err(Errno::ENOTEMPTY);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(replaced) = target_dir.children.insert(new_name.to_vec(), src.clone()) {
        let mut r = replaced.lock();
        if r.links > 1 && replaced.file_type != libc::S_IFDIR {
            replaced.fs.usage.uncharge_inode();
        }
        r.links = r.links.saturating_sub(1);
        r.ctime = now;
        if r.links == 0 && replaced.file_type != libc::S_IFDIR {
            replaced.fs.orphaned(&replaced);
        }
    }
    target_dir.whiteouts.remove(new_name);
    // `target_dir` borrows the new directory; the old one is removed from
    // afterwards (for a same-directory rename both are `old_node`).
    let old = old_node.dir()?;
    if !same || old_name != new_name {
        old.children.remove(old_name);
    }
    old_node.mtime = now;
    old_node.ctime = now;
    src.lock().ctime = now;
    Ok(())
}

/// The open-file operations of a tmpfs regular file.
pub struct TmpfsFileOps {
    inode: Arc<TmpfsInode>,
}

impl FileOps for TmpfsFileOps {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Regular
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }

    fn read(&self, _io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        self.inode.read_at(offset.unwrap_or(0), buf)
    }

    fn write(&self, _io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        self.inode.write_at(offset.unwrap_or(0), buf)
    }

    fn size(&self) -> Result<u64, Errno> {
        Ok(self.inode.size())
    }

    fn fallocate(&self, mode: i32, offset: u64, len: u64) -> Result<(), Errno> {
        self.inode.fallocate(mode, offset, len)
    }

    /// Like shmem: a page the file holds is data, a page it does not is a
    /// hole, and the end of the file is a hole.
    fn seek_hole_data(&self, pos: u64, data: bool) -> Option<Result<u64, Errno>> {
        let n = self.inode.lock();
        let Kind::File(f) = &n.kind else {
            return None;
        };
        Some(f.seek_hole_data(pos, data))
    }
}

impl TmpfsFileOps {
    pub fn inode(&self) -> &Arc<TmpfsInode> {
        &self.inode
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::resolve::tests::tmpfs_vfs;

    fn t(i: &Arc<dyn Inode>) -> &TmpfsInode {
        i.as_any().downcast_ref::<TmpfsInode>().unwrap()
    }

    fn limited(blocks: u64, inodes: u64) -> Arc<Tmpfs> {
        Tmpfs::with_limits(
            Arc::new(crate::vfs::testing::FixedClock(1)),
            0o1777,
            crate::vfs::testing::test_memory_file(),
            TmpfsLimits {
                max_blocks: Some(blocks),
                max_inodes: Some(inodes),
            },
        )
    }

    #[test]
    fn block_limit_stops_writes_and_fallocate_and_deleting_frees() {
        let fs = limited(4, 100);
        let root = fs.root();
        let f = root.create(b"f", 0o644).unwrap();
        let big = vec![7u8; 5 * PAGE];
        // A write past the limit writes the pages that fit.
        assert_eq!(t(&f).write_at(0, &big), Ok(4 * PAGE));
        assert_eq!(fs.usage().1, 4);
        assert_eq!(t(&f).write_at(4 * PAGE as u64, b"x"), Err(Errno::ENOSPC));
        // Rewriting pages it holds needs no more.
        assert_eq!(t(&f).write_at(0, b"again"), Ok(5));
        let g = root.create(b"g", 0o644).unwrap();
        assert_eq!(t(&g).fallocate(0, 0, PAGE as u64), Err(Errno::ENOSPC));
        // Extending by truncate takes no page, as on Linux.
        g.set_size(1 << 30).unwrap();
        assert_eq!(fs.usage().1, 4);
        f.set_size(PAGE as u64).unwrap();
        assert_eq!(fs.usage().1, 1);
        // A failed fallocate takes nothing.
        assert_eq!(t(&g).fallocate(0, 0, 4 * PAGE as u64), Err(Errno::ENOSPC));
        assert_eq!(fs.usage().1, 1);
        t(&g).fallocate(0, 0, 3 * PAGE as u64).unwrap();
        assert_eq!(fs.usage().1, 4);
        t(&g)
            .fallocate(
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                PAGE as u64,
            )
            .unwrap();
        assert_eq!(fs.usage().1, 3);
        drop((f, g));
        root.unlink(b"f").unwrap();
        root.unlink(b"g").unwrap();
        assert_eq!(fs.usage().1, 0);
    }

    #[test]
    fn shared_mappings_are_charged_when_mapped_and_untouched_pages_given_back() {
        let fs = limited(4, 100);
        let root = fs.root();
        let f = root.create(b"m", 0o644).unwrap();
        let m = t(&f);
        f.set_size(8 * PAGE as u64).unwrap();
        let page = PAGE as u64;
        // Past the limit the file will not map its own pages (the mapping
        // copies instead) and takes nothing.
        assert_eq!(m.map_shared(0, 8 * page), None);
        assert_eq!(fs.usage().1, 0);
        let run = m.map_shared(0, 2 * page).expect("two pages fit");
        assert_eq!(fs.usage().1, 2);
        assert_eq!(t(&f).write_at(2 * page, &[1u8; 3 * PAGE]), Ok(2 * PAGE));
        assert_eq!(fs.usage().1, 4);
        // Unmapped untouched pages leave the file and its usage.
        m.unmap_shared(0, run, 2 * page);
        assert_eq!(fs.usage().1, 2);
    }

    #[test]
    fn inode_limit_counts_nodes_and_extra_links() {
        // The root takes one of the five.
        let fs = limited(100, 5);
        let root = fs.root();
        assert_eq!(fs.usage().2, 1);
        let f = root.create(b"f", 0o644).unwrap();
        root.mkdir(b"d", 0o755).unwrap();
        root.symlink(b"l", b"f").unwrap();
        root.link(b"f2", f.as_ref()).unwrap();
        assert_eq!(fs.usage().2, 5);
        assert_eq!(root.create(b"x", 0o644).err(), Some(Errno::ENOSPC));
        assert_eq!(root.mkdir(b"x", 0o755).err(), Some(Errno::ENOSPC));
        assert_eq!(root.symlink(b"x", b"f").err(), Some(Errno::ENOSPC));
        assert_eq!(
            root.mknod(b"x", libc::S_IFIFO | 0o644).err(),
            Some(Errno::ENOSPC)
        );
        assert_eq!(root.link(b"x", f.as_ref()).err(), Some(Errno::ENOSPC));
        assert_eq!(root.tmpfile(0o600).err(), Some(Errno::ENOSPC));
        assert!(root.lookup(b"x").is_err(), "nothing half-made");
        // Unlinking one of two names gives its link's inode back.
        root.unlink(b"f2").unwrap();
        assert_eq!(fs.usage().2, 4);
        // The last name goes, but an open user keeps the inode.
        root.unlink(b"f").unwrap();
        assert_eq!(fs.usage().2, 4);
        drop(f);
        assert_eq!(fs.usage().2, 3);
        root.rmdir(b"d").unwrap();
        assert_eq!(fs.usage().2, 2);
    }

    #[test]
    fn statfs_reports_the_limits_and_usage() {
        let fs = limited(8, 16);
        let vfs = crate::vfs::Vfs::new(
            fs.root(),
            crate::vfs::vfs::MountOpts {
                fs_type: "tmpfs",
                read_only: false,
            },
        );
        let r = vfs.root().clone();
        let f = vfs
            .open_at(&r, b"/a", libc::O_CREAT | libc::O_RDWR, 0o644)
            .unwrap();
        t(f.inode()).write_at(0, &[1u8; 3 * PAGE]).unwrap();
        let st = crate::vfs::statfs::StatFs::of_file(&f);
        assert_eq!(st.fs_type, 0x0102_1994);
        assert_eq!((st.blocks, st.blocks_free, st.blocks_avail), (8, 5, 5));
        assert_eq!((st.files, st.files_free), (16, 14));
        // Unlimited: zeros, as Linux's tmpfs with size=0.
        let (_, vfs) = (0, tmpfs_vfs());
        let r = vfs.root().clone();
        let d = vfs.resolve(&r, b"/", true).unwrap();
        let st = crate::vfs::statfs::StatFs::of_dentry(&d);
        assert_eq!((st.blocks, st.files), (0, 0));
    }

    #[test]
    fn options_parse_like_shmem_parse_one() {
        let o = TmpfsOptions::parse("size=65536k,mode=1777,nr_inodes=1k,uid=5,gid=6").unwrap();
        assert_eq!(o.size, Some(TmpfsSize::Bytes(64 << 20)));
        assert_eq!(o.nr_inodes, Some(1024));
        assert_eq!((o.mode, o.uid, o.gid), (Some(0o1777), Some(5), Some(6)));
        let l = o.limits(1 << 30);
        assert_eq!(l.max_blocks, Some(16384));
        assert_eq!(l.max_inodes, Some(1024));
        // memparse's base 0 and suffixes; % of the sandbox's memory.
        assert_eq!(
            TmpfsOptions::parse("size=0x1000").unwrap().size,
            Some(TmpfsSize::Bytes(4096))
        );
        assert_eq!(
            TmpfsOptions::parse("size=010").unwrap().size,
            Some(TmpfsSize::Bytes(8))
        );
        assert_eq!(
            TmpfsOptions::parse("size=1G").unwrap().size,
            Some(TmpfsSize::Bytes(1 << 30))
        );
        let pct = TmpfsOptions::parse("size=25%").unwrap();
        assert_eq!(pct.size, Some(TmpfsSize::PercentOfMemory(25)));
        assert_eq!(pct.limits(1 << 30).max_blocks, Some(65536));
        // A partial page is a whole block; 0 is no limit.
        assert_eq!(
            TmpfsOptions::parse("size=1")
                .unwrap()
                .limits(1 << 30)
                .max_blocks,
            Some(1)
        );
        let zero = TmpfsOptions::parse("size=0,nr_inodes=0")
            .unwrap()
            .limits(1 << 30);
        assert_eq!(zero, TmpfsLimits::UNLIMITED);
        // nr_blocks= and size= set one limit: the last wins.
        assert_eq!(
            TmpfsOptions::parse("size=1m,nr_blocks=3")
                .unwrap()
                .limits(1 << 30)
                .max_blocks,
            Some(3)
        );
        // Defaults: half of memory, in pages, for both.
        let d = TmpfsOptions::parse("").unwrap().limits(1 << 30);
        assert_eq!(d.max_blocks, Some(131072));
        assert_eq!(d.max_inodes, Some(131072));
        for bad in [
            "size=",
            "size=1x",
            "size=abc",
            "size=1%%",
            "nr_inodes=5%",
            "mode=9",
            "uid=-1",
            "uid=4294967295",
            "gid=x",
            "bogus=1",
            "size",
            "size=99999999999999999999",
            "size=16777216T",
        ] {
            assert_eq!(TmpfsOptions::parse(bad), Err(Errno::EINVAL), "{bad}");
        }
    }

    fn names(vfs: &crate::vfs::Vfs, dir: &[u8]) -> Vec<String> {
        let r = vfs.root().clone();
        let f = vfs
            .open_at(&r, dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        let buf = f.getdents64(4096).unwrap();
        parse_dirents(&buf)
            .into_iter()
            .map(|(_, _, _, n)| n)
            .collect()
    }

    /// (ino, off, type, name) of each record.
    pub(crate) fn parse_dirents(mut buf: &[u8]) -> Vec<(u64, i64, u8, String)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let ino = u64::from_le_bytes(buf[0..8].try_into().unwrap());
            let off = i64::from_le_bytes(buf[8..16].try_into().unwrap());
            let reclen = u16::from_le_bytes([buf[16], buf[17]]) as usize;
            assert_eq!(reclen % 8, 0);
            let name = &buf[19..reclen];
            let end = name.iter().position(|&b| b == 0).unwrap();
            out.push((
                ino,
                off,
                buf[18],
                String::from_utf8_lossy(&name[..end]).into_owned(),
            ));
            buf = &buf[reclen..];
        }
        out
    }

    #[test]
    fn read_write_truncate() {
        let vfs = tmpfs_vfs();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let f = vfs
            .open_at(&r, b"/f", libc::O_CREAT | libc::O_RDWR, 0o644)
            .unwrap();
        assert_eq!(f.write(b"hello world", &intr), Ok(11));
        assert_eq!(f.lseek(0, libc::SEEK_SET), Ok(0));
        let mut buf = [0u8; 32];
        assert_eq!(f.read(&mut buf, &intr), Ok(11));
        assert_eq!(&buf[..11], b"hello world");
        assert_eq!(f.read(&mut buf, &intr), Ok(0));
        assert_eq!(f.pwrite(b"W", 6, &intr), Ok(1));
        assert_eq!(f.pread(&mut buf[..5], 6, &intr), Ok(5));
        assert_eq!(&buf[..5], b"World");
        assert_eq!(f.lseek(-5, libc::SEEK_END), Ok(6));
        assert_eq!(f.lseek(-100, libc::SEEK_CUR), Err(Errno::EINVAL));
        assert_eq!(f.lseek(0, 99), Err(Errno::EINVAL));
        assert_eq!(f.lseek(3, libc::SEEK_DATA), Ok(3));
        assert_eq!(f.lseek(3, libc::SEEK_HOLE), Ok(11));
        assert_eq!(f.lseek(11, libc::SEEK_DATA), Err(Errno::ENXIO));
        // Sparse: a write far out costs a page and reads zeros in between.
        assert_eq!(f.pwrite(b"z", 1 << 40, &intr), Ok(1));
        assert_eq!(f.stat().unwrap().size, (1 << 40) + 1);
        assert_eq!(f.pread(&mut buf[..4], 1 << 30, &intr), Ok(4));
        assert_eq!(&buf[..4], &[0, 0, 0, 0]);
        assert_eq!(f.pwrite(b"z", i64::MAX, &intr), Err(Errno::EFBIG));
        vfs.truncate(&r, b"/f", 5).unwrap();
        assert_eq!(vfs.stat_at(&r, b"/f", true).unwrap().size, 5);
        vfs.truncate(&r, b"/f", 8).unwrap();
        assert_eq!(f.pread(&mut buf, 0, &intr), Ok(8));
        assert_eq!(&buf[..8], b"hello\0\0\0");
        // O_TRUNC on open; O_APPEND writes at the end.
        let g = vfs
            .open_at(
                &r,
                b"/f",
                libc::O_WRONLY | libc::O_TRUNC | libc::O_APPEND,
                0,
            )
            .unwrap();
        assert_eq!(vfs.stat_at(&r, b"/f", true).unwrap().size, 0);
        g.write(b"ab", &intr).unwrap();
        g.pwrite(b"cd", 0, &intr).unwrap();
        assert_eq!(f.pread(&mut buf, 0, &intr), Ok(4));
        assert_eq!(&buf[..4], b"abcd");
        assert_eq!(g.read(&mut buf, &intr), Err(Errno::EBADF));
        let ro = vfs.open_at(&r, b"/f", libc::O_RDONLY, 0).unwrap();
        assert_eq!(ro.write(b"x", &intr), Err(Errno::EBADF));
        // F_SETFL changes only the status flags.
        assert_eq!(
            g.status_flags(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_LARGEFILE
        );
        g.set_status_flags(libc::O_NONBLOCK | libc::O_RDWR);
        assert_eq!(
            g.status_flags(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_LARGEFILE
        );
        assert_eq!(ro.ioctl(libc::TCGETS, &[]).err(), Some(Errno::ENOTTY));
    }

    #[test]
    fn unlink_keeps_open_file_and_rename() {
        let vfs = tmpfs_vfs();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let f = vfs
            .open_at(&r, b"/f", libc::O_CREAT | libc::O_RDWR, 0o644)
            .unwrap();
        f.write(b"data", &intr).unwrap();
        vfs.unlink_at(&r, b"/f", 0).unwrap();
        assert_eq!(vfs.stat_at(&r, b"/f", true).err(), Some(Errno::ENOENT));
        let mut buf = [0u8; 4];
        assert_eq!(f.pread(&mut buf, 0, &intr), Ok(4));
        assert_eq!(vfs.dentry_path(f.dentry().unwrap()), "/f (deleted)");

        vfs.mkdir_at(&r, b"/d", 0o755).unwrap();
        vfs.mkdir_at(&r, b"/d/sub", 0o755).unwrap();
        vfs.open_at(&r, b"/d/x", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        vfs.open_at(&r, b"/y", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        let x = vfs.resolve(&r, b"/d/x", true).unwrap();
        vfs.rename_at(&r, b"/d/x", &r, b"/z", 0).unwrap();
        assert_eq!(vfs.dentry_path(&x), "/z");
        assert_eq!(
            vfs.rename_at(&r, b"/z", &r, b"/y", libc::RENAME_NOREPLACE),
            Err(Errno::EEXIST)
        );
        vfs.rename_at(&r, b"/z", &r, b"/y", 0).unwrap();
        assert_eq!(vfs.stat_at(&r, b"/z", true).err(), Some(Errno::ENOENT));
        assert_eq!(
            vfs.rename_at(&r, b"/d", &r, b"/d/sub/in", 0),
            Err(Errno::EINVAL)
        );
        assert_eq!(vfs.rename_at(&r, b"/y", &r, b"/d", 0), Err(Errno::EISDIR));
        assert_eq!(vfs.rename_at(&r, b"/d", &r, b"/y", 0), Err(Errno::ENOTDIR));
        vfs.mkdir_at(&r, b"/e", 0o755).unwrap();
        vfs.rename_at(&r, b"/d", &r, b"/e", 0).unwrap();
        assert!(vfs.stat_at(&r, b"/e/sub", true).unwrap().is_dir());
        vfs.rename_at(&r, b"/e/sub", &r, b"/e/sub2", 0).unwrap();
        assert_eq!(names(&vfs, b"/e"), [".", "..", "sub2"]);
        assert_eq!(names(&vfs, b"/"), [".", "..", "e", "y"]);
        assert_eq!(vfs.stat_at(&r, b"/", true).unwrap().nlink, 3);
    }

    #[test]
    fn getdents_resumes_with_small_buffer() {
        let vfs = tmpfs_vfs();
        let r = vfs.root().clone();
        for i in 0..20 {
            vfs.open_at(
                &r,
                format!("/file{i:02}").as_bytes(),
                libc::O_CREAT | libc::O_WRONLY,
                0o644,
            )
            .unwrap();
        }
        let d = vfs
            .open_at(&r, b"/", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .unwrap();
        assert_eq!(d.getdents64(10).err(), Some(Errno::EINVAL));
        let mut all = Vec::new();
        loop {
            let buf = d.getdents64(70).unwrap();
            if buf.is_empty() {
                break;
            }
            let recs = parse_dirents(&buf);
            assert!(!recs.is_empty() && recs.len() <= 2);
            all.extend(recs);
        }
        assert_eq!(all.len(), 22);
        assert_eq!(all[0].3, ".");
        assert_eq!(all[1].3, "..");
        assert_eq!(all[2].3, "file00");
        assert_eq!(all[2].2, libc::DT_REG);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.1, i as i64 + 1, "d_off is the next entry's position");
        }
        // Rewinding lists again.
        assert_eq!(d.lseek(0, libc::SEEK_SET), Ok(0));
        assert_eq!(parse_dirents(&d.getdents64(1 << 16).unwrap()).len(), 22);
        assert_eq!(d.lseek(0, libc::SEEK_END), Err(Errno::EINVAL));
        let mut buf = [0u8; 4];
        assert_eq!(d.read(&mut buf, &Interrupt::new()), Err(Errno::EISDIR));
        let f = vfs.open_at(&r, b"/file00", libc::O_RDONLY, 0).unwrap();
        assert_eq!(f.getdents64(4096).err(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn mappable_and_times() {
        let vfs = tmpfs_vfs();
        let r = vfs.root().clone();
        let f = vfs
            .open_at(&r, b"/m", libc::O_CREAT | libc::O_RDWR, 0o755)
            .unwrap();
        let m = f.as_mappable().unwrap();
        assert_eq!(m.write_at(2, b"xy"), Ok(2));
        assert_eq!(m.size(), Ok(4));
        let mut buf = [9u8; 4];
        assert_eq!(m.read_at(0, &mut buf), Ok(4));
        assert_eq!(buf, [0, 0, b'x', b'y']);
        assert_eq!(m.mapping_name(), "/m");
        let st = f.stat().unwrap();
        assert_eq!(st.mtime.sec, 100);
        vfs.utimes_at(
            &r,
            b"/m",
            crate::vfs::perm::NewTimes {
                atime: Some(Timespec { sec: 5, nsec: 6 }),
                mtime: None,
                explicit: true,
            },
            true,
        )
        .unwrap();
        assert_eq!(
            vfs.stat_at(&r, b"/m", true).unwrap().atime,
            Timespec { sec: 5, nsec: 6 }
        );
        vfs.chmod_at(&r, b"/m", 0o600, true).unwrap();
        assert_eq!(
            vfs.stat_at(&r, b"/m", true).unwrap().mode,
            libc::S_IFREG | 0o600
        );
        let d = vfs.open_at(&r, b"/", libc::O_RDONLY, 0).unwrap();
        assert!(d.as_mappable().is_none());
    }
}
