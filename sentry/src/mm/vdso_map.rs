//! Mapping the vDSO into an address space (see `crate::vdso`).

use platform::Prot;

use super::manager::MemoryManager;
use super::vma::VmaKind;
use crate::errno::Errno;
use crate::vdso::{VvarFile, VVAR_SIZE};

impl MemoryManager {
    /// Maps the kernel's vDSO data page read-only, shared (`[vvar]`), and
    /// right above it a private copy of `image` (`[vdso]`, read-execute),
    /// where the mmap base places a mapping; returns the image's address
    /// (AT_SYSINFO_EHDR). ENOSYS when the memory file has no data page or
    /// pages are not the data page's size.
    pub fn map_vdso(&mut self, image: &[u8]) -> Result<u64, Errno> {
        let vvar = VvarFile::of(&self.mf).ok_or(Errno::ENOSYS)?;
        if image.is_empty() || self.layout.page_size != VVAR_SIZE {
            return Err(Errno::ENOSYS);
        }
        let text_len = self
            .page_align_up(image.len() as u64)
            .ok_or(Errno::ENOMEM)?;
        let start = self.find_unmapped(0, VVAR_SIZE + text_len, false)?;
        let text = start + VVAR_SIZE;
        let mut data = Self::file_vma(start, text, Prot::READ, vvar, 0);
        data.shared = true;
        data.max_prot = Prot::READ;
        data.ever_writable = false;
        data.kind = VmaKind::Vvar;
        self.install(data)?;
        let code = Self::anon_vma(text, text + text_len, Prot::READ_EXEC, VmaKind::Vdso);
        let mapped = self
            .install(code)
            .and_then(|_| self.copy_out_force(text, image));
        if let Err(e) = mapped {
            self.unmap_range(start, VVAR_SIZE + text_len);
            return Err(e);
        }
        Ok(text)
    }
}
