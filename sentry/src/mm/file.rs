//! What the memory manager needs of a file it maps.

use std::sync::Arc;

use crate::errno::Errno;

/// A file that can back a mapping. The VFS's regular files implement it.
///
/// Mappings never map host files directly (invariant 1): a private mapping
/// copies the file's bytes into the memory file; a shared writable mapping
/// writes dirty bytes back through `write_at` on msync and munmap.
pub trait MappableFile: Send + Sync {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize, Errno>;
    fn size(&self) -> Result<u64, Errno>;
    /// The file's path in the container: shown in /proc/self/maps and saved
    /// in the statefile to re-open the file on restore.
    fn mapping_name(&self) -> String;
    /// Which file this is: equal for every mapping of the same file, so a
    /// write(2) can be reflected in its shared mappings.
    fn identity(&self) -> usize;
}

/// Opens a file by its path in the container: how the loader reaches
/// executables and how a restore re-opens the files behind mappings.
pub type OpenFn<'a> = dyn Fn(&str) -> Result<Arc<dyn MappableFile>, Errno> + 'a;
