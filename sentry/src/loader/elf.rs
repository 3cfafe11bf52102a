//! ELF executables (Linux's binfmt_elf): headers are parsed with goblin from
//! the few bytes read through [`MappableFile::read_at`]; PT_LOAD segments
//! become private file mappings, bss anonymous memory; a PT_INTERP dynamic
//! linker is loaded the same way at its own base.

use std::sync::Arc;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self as ph, ProgramHeader};
use platform::Prot;

use super::{read_full, LoadError, ARCH_PLATFORM};
use crate::errno::Errno;
use crate::mm::{MappableFile, MemoryManager, MmapFile, OpenFn};

/// Linux refuses program header tables larger than this (ELF_MIN_ALIGN..64 KiB).
const MAX_PHDRS_BYTES: usize = 65536;
/// PATH_MAX: the longest PT_INTERP.
const MAX_INTERP_LEN: u64 = 4096;
const EHDR64_SIZE: usize = 64;
const PHDR64_SIZE: usize = 56;

#[cfg(target_arch = "x86_64")]
const HOST_MACHINE: u16 = header::EM_X86_64;
#[cfg(target_arch = "aarch64")]
const HOST_MACHINE: u16 = header::EM_AARCH64;

/// What loading the executable (and its interpreter) produced.
pub(super) struct ElfImage {
    /// Where execution starts (the interpreter's entry if there is one).
    pub start: u64,
    /// The executable's entry (AT_ENTRY).
    pub entry: u64,
    pub bias: u64,
    pub interpreter_base: Option<u64>,
    /// AT_PHDR, AT_PHENT, AT_PHNUM of the executable.
    pub phdr: u64,
    pub phent: u64,
    pub phnum: u64,
    pub brk_start: u64,
    /// PT_GNU_STACK asked for an executable stack.
    pub exec_stack: bool,
}

/// One parsed ELF file.
struct Parsed {
    header: Header,
    phdrs: Vec<ProgramHeader>,
}

fn bad(path: &str, why: impl Into<String>) -> LoadError {
    LoadError::BadElf {
        path: path.to_string(),
        why: why.into(),
    }
}

fn machine_name(m: u16) -> String {
    match m {
        header::EM_X86_64 => "x86_64".into(),
        header::EM_386 => "i386".into(),
        header::EM_AARCH64 => "aarch64".into(),
        header::EM_ARM => "arm".into(),
        header::EM_RISCV => "riscv".into(),
        header::EM_PPC64 => "ppc64".into(),
        header::EM_S390 => "s390".into(),
        header::EM_MIPS => "mips".into(),
        other => format!("machine {other}"),
    }
}

fn parse(file: &dyn MappableFile, path: &str) -> Result<Parsed, LoadError> {
    let read_err = |errno| LoadError::Read {
        path: path.to_string(),
        errno,
    };
    let mut ehdr = [0u8; EHDR64_SIZE];
    let n = read_full(file, 0, &mut ehdr).map_err(read_err)?;
    if n < 16 || &ehdr[..4] != b"\x7fELF" {
        return Err(LoadError::NotExecutable {
            path: path.to_string(),
        });
    }
    let class = ehdr[header::EI_CLASS];
    let data = ehdr[header::EI_DATA];
    if class == header::ELFCLASS32 {
        // Say which machine, for a plain message ("i386 ELF (32-bit)").
        let machine = u16::from_le_bytes([ehdr[18], ehdr[19]]);
        return Err(LoadError::UnsupportedArch {
            path: path.to_string(),
            what: format!("32-bit {} ELF", machine_name(machine)),
            host: ARCH_PLATFORM,
        });
    }
    if class != header::ELFCLASS64 {
        return Err(bad(path, format!("unknown ELF class {class}")));
    }
    if data != header::ELFDATA2LSB {
        return Err(LoadError::UnsupportedArch {
            path: path.to_string(),
            what: "big-endian ELF".into(),
            host: ARCH_PLATFORM,
        });
    }
    if n < EHDR64_SIZE {
        return Err(bad(path, "truncated ELF header"));
    }
    let header =
        goblin::elf::Elf::parse_header(&ehdr).map_err(|e| bad(path, format!("ELF header: {e}")))?;
    if header.e_machine != HOST_MACHINE {
        return Err(LoadError::UnsupportedArch {
            path: path.to_string(),
            what: format!("{} ELF", machine_name(header.e_machine)),
            host: ARCH_PLATFORM,
        });
    }
    match header.e_type {
        header::ET_EXEC | header::ET_DYN => {}
        header::ET_REL => return Err(bad(path, "a relocatable object (.o), not an executable")),
        header::ET_CORE => return Err(bad(path, "a core dump, not an executable")),
        t => return Err(bad(path, format!("unknown ELF type {t}"))),
    }
    if usize::from(header.e_phentsize) != PHDR64_SIZE {
        return Err(bad(
            path,
            format!(
                "program header size {} (expected {PHDR64_SIZE})",
                header.e_phentsize
            ),
        ));
    }
    let count = usize::from(header.e_phnum);
    let size = count * PHDR64_SIZE;
    if count == 0 || size > MAX_PHDRS_BYTES {
        return Err(bad(path, format!("{count} program headers")));
    }
    let mut buf = vec![0u8; size];
    let got = read_full(file, header.e_phoff, &mut buf).map_err(read_err)?;
    if got != size {
        return Err(bad(path, "program headers past the end of the file"));
    }
    let ctx = Ctx {
        container: Container::Big,
        le: Endian::Little,
    };
    let phdrs = ProgramHeader::parse(&buf, 0, count, ctx)
        .map_err(|e| bad(path, format!("program headers: {e}")))?;
    Ok(Parsed { header, phdrs })
}

fn prot_of(p: &ProgramHeader) -> Prot {
    Prot {
        read: p.p_flags & ph::PF_R != 0,
        write: p.p_flags & ph::PF_W != 0,
        exec: p.p_flags & ph::PF_X != 0,
    }
}

/// The page-aligned extent `[lo, hi)` of the PT_LOAD segments, unbiased.
fn extent(parsed: &Parsed, page: u64, path: &str) -> Result<(u64, u64), LoadError> {
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    for p in parsed
        .phdrs
        .iter()
        .filter(|p| p.p_type == ph::PT_LOAD && p.p_memsz > 0)
    {
        let end = p
            .p_vaddr
            .checked_add(p.p_memsz)
            .ok_or_else(|| bad(path, "segment end overflows"))?;
        lo = lo.min(p.p_vaddr & !(page - 1));
        hi = hi.max(
            end.checked_next_multiple_of(page)
                .ok_or_else(|| bad(path, "segment end overflows"))?,
        );
    }
    if lo >= hi {
        return Err(bad(path, "no loadable segments"));
    }
    Ok((lo, hi))
}

/// Maps the PT_LOAD segments at `bias`; returns the highest end (for brk).
fn map_segments(
    mm: &mut MemoryManager,
    file: &Arc<dyn MappableFile>,
    parsed: &Parsed,
    bias: u64,
    path: &str,
) -> Result<u64, LoadError> {
    let page = mm.page_size();
    let mem = |errno: Errno| LoadError::Memory {
        path: path.to_string(),
        errno,
    };
    let mut highest = 0;
    for p in parsed
        .phdrs
        .iter()
        .filter(|p| p.p_type == ph::PT_LOAD && p.p_memsz > 0)
    {
        if p.p_filesz > p.p_memsz {
            return Err(bad(path, "segment file size exceeds its memory size"));
        }
        if p.p_vaddr % page != p.p_offset % page {
            return Err(bad(
                path,
                "segment offset and address differ modulo the page size",
            ));
        }
        let overflow = || bad(path, "segment address overflows");
        let vaddr = p.p_vaddr.checked_add(bias).ok_or_else(overflow)?;
        let file_end = vaddr.checked_add(p.p_filesz).ok_or_else(overflow)?;
        let mem_end = vaddr.checked_add(p.p_memsz).ok_or_else(overflow)?;
        let start = vaddr & !(page - 1);
        let file_end_page = file_end
            .checked_next_multiple_of(page)
            .ok_or_else(overflow)?;
        let mem_end_page = mem_end
            .checked_next_multiple_of(page)
            .ok_or_else(overflow)?;
        let prot = prot_of(p).to_bits() as u64;
        let fixed = (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64;
        if p.p_filesz > 0 {
            let offset = p.p_offset - (vaddr - start);
            mm.mmap(
                start,
                file_end_page - start,
                prot,
                fixed,
                Some(MmapFile {
                    file: file.clone(),
                    offset,
                    writable: false,
                }),
            )
            .map_err(mem)?;
            // The rest of the last file page is bss: zero what the file put there.
            if p.p_memsz > p.p_filesz && file_end < file_end_page {
                mm.zero_out(file_end, file_end_page - file_end, true)
                    .map_err(mem)?;
            }
        }
        let anon_start = if p.p_filesz > 0 { file_end_page } else { start };
        if mem_end_page > anon_start {
            mm.mmap(
                anon_start,
                mem_end_page - anon_start,
                prot,
                fixed | libc::MAP_ANONYMOUS as u64,
                None,
            )
            .map_err(mem)?;
        }
        highest = highest.max(mem_end);
    }
    Ok(highest)
}

/// Where an ET_DYN executable with an interpreter goes when nothing asks
/// otherwise: Linux's ELF_ET_DYN_BASE (2/3 of the address space),
/// randomisation disabled; of the address space cryo places things in
/// (at most 39 bits: 0x5555554000 rather than 47-bit Linux's
/// 0x555555554000), so that the sandbox also fits a 39-bit host.
fn pie_base(mm: &MemoryManager, span: u64) -> Result<u64, Errno> {
    let page = mm.page_size();
    let base = (mm.layout().placement_end() / 3 * 2) & !(page - 1);
    mm.unmapped_area(base, span)
}

/// Loads `file` as an ELF image: the bias it was loaded at, the highest
/// address it uses, and its parsed headers.
fn load_one(
    mm: &mut MemoryManager,
    file: &Arc<dyn MappableFile>,
    parsed: &Parsed,
    path: &str,
    pie: bool,
) -> Result<(u64, u64), LoadError> {
    let page = mm.page_size();
    let (lo, hi) = extent(parsed, page, path)?;
    let mem = |errno: Errno| LoadError::Memory {
        path: path.to_string(),
        errno,
    };
    let bias = if parsed.header.e_type == header::ET_DYN {
        let span = hi - lo;
        let at = if pie {
            pie_base(mm, span)
        } else {
            mm.unmapped_area(0, span)
        }
        .map_err(mem)?;
        at.wrapping_sub(lo)
    } else {
        0
    };
    let highest = map_segments(mm, file, parsed, bias, path)?;
    Ok((bias, highest))
}

fn read_interp(
    file: &dyn MappableFile,
    p: &ProgramHeader,
    path: &str,
) -> Result<String, LoadError> {
    if p.p_filesz < 2 || p.p_filesz > MAX_INTERP_LEN {
        return Err(bad(path, "PT_INTERP of unreasonable size"));
    }
    let mut buf = vec![0u8; p.p_filesz as usize];
    let n = read_full(file, p.p_offset, &mut buf).map_err(|errno| LoadError::Read {
        path: path.to_string(),
        errno,
    })?;
    if n != buf.len() {
        return Err(bad(path, "PT_INTERP past the end of the file"));
    }
    match buf.iter().position(|b| *b == 0) {
        Some(nul) if nul > 0 => buf.truncate(nul),
        _ => return Err(bad(path, "PT_INTERP is not a NUL-terminated path")),
    }
    String::from_utf8(buf).map_err(|_| bad(path, "PT_INTERP is not UTF-8"))
}

/// Loads the executable `file` (at `path`) and its interpreter into `mm`.
pub(super) fn load_elf(
    mm: &mut MemoryManager,
    open: &OpenFn<'_>,
    file: &Arc<dyn MappableFile>,
    path: &str,
) -> Result<ElfImage, LoadError> {
    let parsed = parse(file.as_ref(), path)?;
    let mut interp_path = None;
    let mut exec_stack = false;
    for p in &parsed.phdrs {
        match p.p_type {
            ph::PT_INTERP => {
                if interp_path.is_some() {
                    return Err(bad(path, "more than one PT_INTERP"));
                }
                interp_path = Some(read_interp(file.as_ref(), p, path)?);
            }
            ph::PT_GNU_STACK => exec_stack = p.p_flags & ph::PF_X != 0,
            _ => {}
        }
    }
    // Open the interpreter before mapping anything: a missing one is the
    // commonest failure and should cost nothing.
    let interp = match &interp_path {
        Some(ip) => {
            let f = open(ip).map_err(|errno| LoadError::InterpreterMissing {
                path: path.to_string(),
                interpreter: ip.clone(),
                errno,
            })?;
            let p = parse(f.as_ref(), ip)?;
            Some((f, p, ip.clone()))
        }
        None => None,
    };
    let (bias, highest) = load_one(mm, file, &parsed, path, interp.is_some())?;
    let entry = parsed.header.e_entry.wrapping_add(bias);
    let phdr = phdr_address(&parsed, bias)
        .ok_or_else(|| bad(path, "program headers are not in a loaded segment"))?;
    let (start, interpreter_base) = match interp {
        Some((f, p, ip)) => {
            // AT_BASE is the interpreter's load bias, as in Linux.
            let (ibias, _) = load_one(mm, &f, &p, &ip, false)?;
            (p.header.e_entry.wrapping_add(ibias), Some(ibias))
        }
        None => (entry, None),
    };
    mm.set_brk_start(highest)
        .map_err(|errno| LoadError::Memory {
            path: path.to_string(),
            errno,
        })?;
    Ok(ElfImage {
        start,
        entry,
        bias,
        interpreter_base,
        phdr,
        phent: PHDR64_SIZE as u64,
        phnum: parsed.phdrs.len() as u64,
        brk_start: mm.brk_range().0,
        exec_stack,
    })
}

/// AT_PHDR: PT_PHDR's address, else where the PT_LOAD covering e_phoff maps it.
fn phdr_address(parsed: &Parsed, bias: u64) -> Option<u64> {
    if let Some(p) = parsed.phdrs.iter().find(|p| p.p_type == ph::PT_PHDR) {
        return Some(p.p_vaddr.wrapping_add(bias));
    }
    let off = parsed.header.e_phoff;
    parsed
        .phdrs
        .iter()
        .filter(|p| p.p_type == ph::PT_LOAD)
        .find(|p| p.p_offset <= off && off - p.p_offset < p.p_filesz)
        .map(|p| p.p_vaddr.wrapping_add(off - p.p_offset).wrapping_add(bias))
}
