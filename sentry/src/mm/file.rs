//! What the memory manager needs of a file it maps.

use std::sync::Arc;

use crate::errno::Errno;

/// A file that can back a mapping. The VFS's regular files implement it.
///
/// Mappings never map host files directly (invariant 1): a private mapping
/// copies the file's bytes into the memory file; a shared writable mapping
/// writes dirty bytes back through `write_at` on msync and munmap — unless
/// the file's pages already live in the memory file (tmpfs), in which case
/// a shared mapping maps those very pages ([`MappableFile::map_shared`]) and
/// the mapping, read(2) and write(2) see one set of bytes.
pub trait MappableFile: Send + Sync {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize, Errno>;
    fn size(&self) -> Result<u64, Errno>;
    /// The file's path in the container: shown in /proc/self/maps and saved
    /// in the statefile to re-open the file on restore.
    fn mapping_name(&self) -> String;
    /// Whether the file has no name left to re-open it by (a memfd, an
    /// O_TMPFILE file, a file unlinked since): a checkpoint saves such a
    /// mapping as naming the open file it maps ([`MappableFile::open_file`]).
    fn unnamed(&self) -> bool {
        false
    }
    /// The open file (file description) the mapping was made from, as
    /// Linux's `vma->vm_file`: what a checkpoint saves for a file with no
    /// name, so that its restore maps the very file descriptors see.
    fn open_file(&self) -> Option<Arc<crate::vfs::OpenFile>> {
        None
    }
    /// Which file this is: equal for every mapping of the same file, so a
    /// write(2) can be reflected in its shared mappings.
    fn identity(&self) -> usize;

    /// For a file whose pages are memory-file pages: makes the file's pages
    /// of `[offset, offset + len)` (page-aligned) one contiguous run of the
    /// memory file and returns its offset, pinned for a shared mapping until
    /// [`MappableFile::unmap_shared`]: the file will not free or move them
    /// while they are mapped, even if truncated. `None` when the file cannot
    /// (not such a file, a range past its end, pages already pinned
    /// elsewhere in another arrangement): the mapping then copies.
    fn map_shared(&self, _offset: u64, _len: u64) -> Option<u64> {
        None
    }

    /// Drops the pins [`MappableFile::map_shared`] took on the run of `len`
    /// bytes at memory-file offset `mf_offset`, which maps the file from
    /// `offset` (or on part of it, after a partial munmap).
    fn unmap_shared(&self, _offset: u64, _mf_offset: u64, _len: u64) {}

    /// Whether a file that allocates its pages (tmpfs) has one at `offset`
    /// (page-aligned, inside the file); other files have every page.
    fn holds_page(&self, _offset: u64) -> bool {
        true
    }

    /// Gives the file a page at `offset` (page-aligned, inside the file)
    /// for a fault of a shared mapping, as Linux's fault allocates it:
    /// ENOSPC when the file system is full.
    fn fault_in(&self, _offset: u64) -> Result<(), Errno> {
        Ok(())
    }

    /// Whether nothing in the sandbox can change the file's bytes (a host
    /// file on a read-only gofer mount): a private mapping's copy of them
    /// then stays the file's bytes for as long as it is never written.
    fn contents_fixed(&self) -> bool {
        false
    }
}

/// Opens a file by its path in the container: how the loader reaches
/// executables and how a restore re-opens the files behind mappings.
pub type OpenFn<'a> = dyn Fn(&str) -> Result<Arc<dyn MappableFile>, Errno> + 'a;
