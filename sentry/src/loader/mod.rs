//! Loading an executable into a fresh address space (gVisor's pkg/sentry/loader):
//! `#!` scripts (`interpreter.rs`), ELF executables and their dynamic
//! linker (`elf.rs`), and the initial stack with argv, envp and auxv
//! (`stack.rs`).
//!
//! The kernel loads into a new [`MemoryManager`] and only swaps it in when
//! loading succeeded, so a failed execve leaves the caller untouched.

mod elf;
mod interpreter;
mod stack;

#[cfg(test)]
mod tests;

use crate::errno::Errno;
use crate::mm::{MappableFile, MemoryManager, OpenFn};

pub use stack::{auxv, MAX_ARG_STRLEN};

/// What the loader needs besides the executable: the per-exec values the
/// kernel provides.
#[derive(Clone, Debug)]
pub struct LoadParams {
    /// The 16 bytes AT_RANDOM points at (stack protector and pointer guard seeds).
    pub random: [u8; 16],
    /// AT_HWCAP; [`host_hwcap`] gives Linux's value for this CPU, the
    /// kernel the value for the CPU features the sandbox sees.
    pub hwcap: u64,
    /// AT_HWCAP2 (x86_64: FSGSBASE where it is shown and enabled).
    pub hwcap2: u64,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    /// AT_EXECFN: the path as passed to execve, by default the loaded path.
    pub execfn: Option<Vec<u8>>,
    /// AT_PLATFORM.
    pub platform: String,
    /// How much stack is mapped at first; it grows on faults up to the
    /// memory manager's stack limit.
    pub initial_stack: u64,
    /// Map the vDSO (where the memory file has its data page) and point
    /// AT_SYSINFO_EHDR at it.
    pub vdso: bool,
}

impl LoadParams {
    /// Root credentials, this CPU's hwcap, and `random` for AT_RANDOM.
    pub fn new(random: [u8; 16]) -> LoadParams {
        LoadParams {
            random,
            hwcap: host_hwcap(),
            hwcap2: 0,
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            execfn: None,
            platform: ARCH_PLATFORM.to_string(),
            initial_stack: 128 * 1024,
            vdso: true,
        }
    }
}

/// AT_PLATFORM and the architecture this loader accepts.
#[cfg(target_arch = "x86_64")]
pub const ARCH_PLATFORM: &str = "x86_64";
#[cfg(target_arch = "aarch64")]
pub const ARCH_PLATFORM: &str = "aarch64";

/// Linux's AT_HWCAP on x86_64: CPUID leaf 1's EDX.
#[cfg(target_arch = "x86_64")]
pub fn host_hwcap() -> u64 {
    u64::from(std::arch::x86_64::__cpuid(1).edx)
}

#[cfg(not(target_arch = "x86_64"))]
pub fn host_hwcap() -> u64 {
    0
}

/// A loaded image: where the new task starts and what /proc shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Where execution starts: the dynamic linker's entry, or the executable's.
    pub entry: u64,
    /// The initial stack pointer (points at argc; 16-byte aligned).
    pub stack_pointer: u64,
    /// The executable's own entry (AT_ENTRY).
    pub executable_entry: u64,
    /// The executable's load bias (0 for ET_EXEC).
    pub load_bias: u64,
    /// Where the dynamic linker was loaded (AT_BASE), if there is one.
    pub interpreter_base: Option<u64>,
    /// The path of the ELF file finally loaded (after `#!` resolution): /proc/self/exe.
    pub path: String,
    /// The argv the program sees (after `#!` rewriting).
    pub argv: Vec<Vec<u8>>,
    /// The auxiliary vector as written, without AT_NULL.
    pub auxv: Vec<(u64, u64)>,
    /// Where argv and envp strings lie on the stack (/proc/pid/cmdline, environ).
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// The program break's start.
    pub brk_start: u64,
    /// Where the vDSO's image is (AT_SYSINFO_EHDR), if one was mapped.
    pub vdso: Option<u64>,
}

/// Why an executable could not be loaded. Each maps to execve's errno.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot open: {errno}")]
    Open { path: String, errno: Errno },
    #[error("{path}: cannot read: {errno}")]
    Read { path: String, errno: Errno },
    #[error("{path}: not executable: neither an ELF file nor a script starting with #!")]
    NotExecutable { path: String },
    #[error("{path}: unsupported architecture: {what}, this host runs {host}")]
    UnsupportedArch {
        path: String,
        what: String,
        host: &'static str,
    },
    #[error("{path}: bad ELF file: {why}")]
    BadElf { path: String, why: String },
    #[error("{path}: bad #! line: {why}")]
    BadScript { path: String, why: &'static str },
    #[error("{path}: ELF interpreter {interpreter} cannot be opened: {errno}")]
    InterpreterMissing {
        path: String,
        interpreter: String,
        errno: Errno,
    },
    #[error("{path}: too many levels of #! interpreters (at most {max})")]
    TooManyInterpreters { path: String, max: usize },
    #[error("argument list too long: {why}")]
    ArgumentsTooLong { why: String },
    #[error("{path}: cannot map: {errno}")]
    Memory { path: String, errno: Errno },
}

impl LoadError {
    /// The errno execve returns for this error.
    pub fn errno(&self) -> Errno {
        match self {
            LoadError::Open { errno, .. }
            | LoadError::Read { errno, .. }
            | LoadError::Memory { errno, .. } => *errno,
            LoadError::NotExecutable { .. } | LoadError::BadScript { .. } => Errno::ENOEXEC,
            LoadError::UnsupportedArch { .. } => Errno::ENOEXEC,
            // Linux says EINVAL for some malformed headers and ENOEXEC for
            // others; ENOEXEC is what a shell reports sensibly.
            LoadError::BadElf { .. } => Errno::ENOEXEC,
            LoadError::InterpreterMissing { errno, .. } => *errno,
            LoadError::TooManyInterpreters { .. } => Errno::ELOOP,
            LoadError::ArgumentsTooLong { .. } => Errno::E2BIG,
        }
    }
}

/// How many `#!` interpreters may be chained (Linux's BINPRM_MAX_RECURSION).
pub const MAX_SCRIPT_DEPTH: usize = 4;

/// Reads exactly `buf.len()` bytes at `offset`, or fewer at EOF; returns the count.
pub(crate) fn read_full(
    file: &dyn MappableFile,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset.checked_add(done as u64).ok_or(Errno::EINVAL)?;
        let n = file.read_at(at, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n.min(buf.len() - done);
    }
    Ok(done)
}

/// Loads `path` into `mm` (a fresh address space) with `argv` and `envp`,
/// opening it, any `#!` interpreter and the ELF interpreter through `open`.
pub fn load(
    mm: &mut MemoryManager,
    open: &OpenFn<'_>,
    path: &str,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    params: &LoadParams,
) -> Result<LoadedImage, LoadError> {
    let interpreter::Resolved { file, path, argv } = interpreter::resolve(open, path, argv)?;
    let image = elf::load_elf(mm, open, &file, &path)?;
    let vdso = if params.vdso && crate::vdso::available() {
        match mm.map_vdso(crate::vdso::IMAGE) {
            Ok(addr) => Some(addr),
            // No data page (a memory file of no kernel): no vDSO.
            Err(Errno::ENOSYS) => None,
            Err(errno) => {
                return Err(LoadError::Memory {
                    path: "[vdso]".into(),
                    errno,
                })
            }
        }
    } else {
        None
    };
    let execfn = params
        .execfn
        .clone()
        .unwrap_or_else(|| path.clone().into_bytes());
    let stack = stack::build(mm, params, &image, vdso, &argv, &envp, &execfn)?;
    Ok(LoadedImage {
        entry: image.start,
        stack_pointer: stack.sp,
        executable_entry: image.entry,
        load_bias: image.bias,
        interpreter_base: image.interpreter_base,
        path,
        argv,
        auxv: stack.auxv,
        arg_start: stack.arg_start,
        arg_end: stack.arg_end,
        env_start: stack.env_start,
        env_end: stack.env_end,
        brk_start: image.brk_start,
        vdso,
    })
}
