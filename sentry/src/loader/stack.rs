//! The initial stack, laid out as Linux's create_elf_tables does. From the
//! top down: the execfn string, envp strings, argv strings (argv[0]
//! lowest), the platform string, 16 random bytes, then (16-byte aligned)
//! argc, argv pointers, NULL, envp pointers, NULL, auxv pairs, AT_NULL.

use platform::Prot;

use super::elf::ElfImage;
use super::{LoadError, LoadParams};
use crate::errno::Errno;
use crate::mm::MemoryManager;

/// Auxiliary vector keys (include/uapi/linux/auxvec.h).
pub mod auxv {
    pub const AT_NULL: u64 = 0;
    pub const AT_PHDR: u64 = 3;
    pub const AT_PHENT: u64 = 4;
    pub const AT_PHNUM: u64 = 5;
    pub const AT_PAGESZ: u64 = 6;
    pub const AT_BASE: u64 = 7;
    pub const AT_FLAGS: u64 = 8;
    pub const AT_ENTRY: u64 = 9;
    pub const AT_UID: u64 = 11;
    pub const AT_EUID: u64 = 12;
    pub const AT_GID: u64 = 13;
    pub const AT_EGID: u64 = 14;
    pub const AT_PLATFORM: u64 = 15;
    pub const AT_HWCAP: u64 = 16;
    pub const AT_CLKTCK: u64 = 17;
    pub const AT_SECURE: u64 = 23;
    pub const AT_RANDOM: u64 = 25;
    pub const AT_HWCAP2: u64 = 26;
    pub const AT_EXECFN: u64 = 31;
    pub const AT_SYSINFO_EHDR: u64 = 33;
}

use auxv::*;

/// Linux's MAX_ARG_STRLEN: the longest single argument or environment string.
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

pub(super) struct Stack {
    pub sp: u64,
    pub auxv: Vec<(u64, u64)>,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

pub(super) fn build(
    mm: &mut MemoryManager,
    params: &LoadParams,
    image: &ElfImage,
    vdso: Option<u64>,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
) -> Result<Stack, LoadError> {
    let too_long = |why: String| LoadError::ArgumentsTooLong { why };
    // Linux allows argv+envp up to a quarter of the stack limit.
    let mut total: usize = execfn.len() + 1 + params.platform.len() + 1 + 16;
    for s in argv.iter().chain(envp) {
        if s.len() >= MAX_ARG_STRLEN {
            return Err(too_long(format!(
                "a string of {} bytes (at most {MAX_ARG_STRLEN})",
                s.len()
            )));
        }
        total = total.saturating_add(s.len() + 1 + 8);
    }
    let limit = usize::try_from(mm.stack_limit() / 4).unwrap_or(usize::MAX);
    if total > limit {
        return Err(too_long(format!(
            "{total} bytes of arguments and environment (at most {limit})"
        )));
    }

    let mem = |errno: Errno| LoadError::Memory {
        path: "[stack]".into(),
        errno,
    };
    let top = mm.layout().stack_top;
    let prot = if image.exec_stack {
        Prot::ALL
    } else {
        Prot::READ_WRITE
    };
    mm.map_stack(top, params.initial_stack, prot).map_err(mem)?;

    // Strings, top down. The top word stays zero, as in Linux.
    let mut sp = top - 8;
    let mut push = |mm: &mut MemoryManager, bytes: &[u8]| -> Result<u64, LoadError> {
        sp -= bytes.len() as u64 + 1;
        mm.copy_out(sp, bytes).map_err(mem)?;
        mm.copy_out(sp + bytes.len() as u64, &[0]).map_err(mem)?;
        Ok(sp)
    };
    let execfn_addr = push(mm, execfn)?;
    let env_end = execfn_addr;
    let mut env_ptrs: Vec<u64> = envp
        .iter()
        .rev()
        .map(|s| push(mm, s))
        .collect::<Result<_, _>>()?;
    env_ptrs.reverse();
    let env_start = env_ptrs.first().copied().unwrap_or(env_end);
    let arg_end = env_start;
    let mut arg_ptrs: Vec<u64> = argv
        .iter()
        .rev()
        .map(|s| push(mm, s))
        .collect::<Result<_, _>>()?;
    arg_ptrs.reverse();
    let arg_start = arg_ptrs.first().copied().unwrap_or(arg_end);
    let platform_addr = push(mm, params.platform.as_bytes())?;
    let random_addr = (platform_addr - 16) & !15;
    mm.copy_out(random_addr, &params.random).map_err(mem)?;

    // AT_SYSINFO_EHDR first, where Linux's ARCH_DLINFO puts it.
    let mut auxv: Vec<(u64, u64)> = vdso.map(|a| (AT_SYSINFO_EHDR, a)).into_iter().collect();
    auxv.extend([
        (AT_HWCAP, params.hwcap),
        (AT_PAGESZ, mm.page_size()),
        (AT_CLKTCK, 100),
        (AT_PHDR, image.phdr),
        (AT_PHENT, image.phent),
        (AT_PHNUM, image.phnum),
        (AT_BASE, image.interpreter_base.unwrap_or(0)),
        (AT_FLAGS, 0),
        (AT_ENTRY, image.entry),
        (AT_UID, u64::from(params.uid)),
        (AT_EUID, u64::from(params.euid)),
        (AT_GID, u64::from(params.gid)),
        (AT_EGID, u64::from(params.egid)),
        (AT_SECURE, 0),
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, params.hwcap2),
        (AT_EXECFN, execfn_addr),
        (AT_PLATFORM, platform_addr),
    ]);

    // argc, argv.., NULL, envp.., NULL, auxv pairs, AT_NULL pair.
    let words = 1 + argv.len() + 1 + envp.len() + 1 + 2 * (auxv.len() + 1);
    let sp = (random_addr - 8 * words as u64) & !15;
    let mut table = Vec::with_capacity(words * 8);
    let mut word = |v: u64| table.extend_from_slice(&v.to_le_bytes());
    word(argv.len() as u64);
    arg_ptrs.iter().for_each(|p| word(*p));
    word(0);
    env_ptrs.iter().for_each(|p| word(*p));
    word(0);
    for (k, v) in &auxv {
        word(*k);
        word(*v);
    }
    word(AT_NULL);
    word(0);
    mm.copy_out(sp, &table).map_err(mem)?;
    Ok(Stack {
        sp,
        auxv,
        arg_start,
        arg_end,
        env_start,
        env_end,
    })
}
