//! Shared helpers: a memory file, a tiny x86_64 assembler, a fixture.
#![allow(dead_code)]

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use platform::ptrace::PtracePlatform;
use platform::{AddressSpace, Context, CpuState, Platform, Prot, Registers};

/// A test the host cannot run (a kernel too old): says so on stderr and
/// records it in `<target>/tmp/skipped.log`, which tests/scripts/test.sh
/// counts, so a skip is never mistaken for a pass.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let line = format!("SKIPPED: {reason}");
    eprintln!("{line}");
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.log");
    let _ = std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{line}"))
        .unwrap_or_else(|e| panic!("{line} — and cannot record it in {}: {e}", log.display()));
}

pub const PAGE: u64 = 4096;
pub const CODE: u64 = 0x40_0000;
pub const DATA: u64 = 0x60_0000;
/// Offsets of the code and data pages in the memory file.
pub const CODE_OFF: u64 = 0;
pub const DATA_OFF: u64 = 4 * PAGE;

pub fn memfd(size: u64) -> OwnedFd {
    // SAFETY: memfd_create with a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"cryo-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on our descriptor.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), size as i64) }, 0);
    fd
}

pub fn write_at(fd: &OwnedFd, off: u64, bytes: &[u8]) {
    // SAFETY: pwrite reads `bytes.len()` bytes from a live slice.
    let n = unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            off as i64,
        )
    };
    assert_eq!(n, bytes.len() as isize);
}

pub fn read_at(fd: &OwnedFd, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    // SAFETY: pread writes at most `len` bytes into a live buffer of that size.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, off as i64) };
    assert_eq!(n, len as isize);
    buf
}

/// A few x86_64 instructions, enough for the tests.
#[derive(Default)]
pub struct Asm(pub Vec<u8>);

impl Asm {
    pub fn new() -> Self {
        Asm(Vec::new())
    }
    fn b(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn op32(self, op: &[u8], imm: u32) -> Self {
        self.b(op).b(&imm.to_le_bytes())
    }
    pub fn mov_eax(self, v: u32) -> Self {
        self.op32(&[0xb8], v)
    }
    pub fn mov_ebx(self, v: u32) -> Self {
        self.op32(&[0xbb], v)
    }
    pub fn mov_edi(self, v: u32) -> Self {
        self.op32(&[0xbf], v)
    }
    pub fn mov_edx(self, v: u32) -> Self {
        self.op32(&[0xba], v)
    }
    pub fn mov_rax64(self, v: u64) -> Self {
        self.b(&[0x48, 0xb8]).b(&v.to_le_bytes())
    }
    pub fn mov_rsi64(self, v: u64) -> Self {
        self.b(&[0x48, 0xbe]).b(&v.to_le_bytes())
    }
    /// mov dword [rax], imm32
    pub fn store_rax(self, v: u32) -> Self {
        self.op32(&[0xc7, 0x00], v)
    }
    /// mov dword [rsi], imm32
    pub fn store_rsi(self, v: u32) -> Self {
        self.op32(&[0xc7, 0x06], v)
    }
    /// mov eax, dword [rax]
    pub fn load_rax(self) -> Self {
        self.b(&[0x8b, 0x00])
    }
    /// mov eax, dword fs:[0]
    pub fn load_fs0(self) -> Self {
        self.b(&[0x64, 0x8b, 0x04, 0x25, 0, 0, 0, 0])
    }
    pub fn mov_edi_eax(self) -> Self {
        self.b(&[0x89, 0xc7])
    }
    pub fn mov_rdi_rax(self) -> Self {
        self.b(&[0x48, 0x89, 0xc7])
    }
    /// movq rax, xmm0
    pub fn movq_rax_xmm0(self) -> Self {
        self.b(&[0x66, 0x48, 0x0f, 0x7e, 0xc0])
    }
    /// movq xmm0, rax
    pub fn movq_xmm0_rax(self) -> Self {
        self.b(&[0x66, 0x48, 0x0f, 0x6e, 0xc0])
    }
    pub fn dec_ebx(self) -> Self {
        self.b(&[0xff, 0xcb])
    }
    /// jnz to absolute offset `target` in this code.
    pub fn jnz_to(self, target: usize) -> Self {
        let rel = target as isize - (self.0.len() as isize + 2);
        self.b(&[0x75, rel as i8 as u8])
    }
    pub fn syscall(self) -> Self {
        self.b(&[0x0f, 0x05])
    }
    /// jmp to absolute offset `target` in this code (rel8).
    pub fn jmp_to(self, target: usize) -> Self {
        let rel = target as isize - (self.0.len() as isize + 2);
        self.b(&[0xeb, rel as i8 as u8])
    }
    /// Pads with nops up to offset `at`.
    pub fn pad_to(mut self, at: usize) -> Self {
        assert!(self.0.len() <= at, "code overlaps offset {at}");
        self.0.resize(at, 0x90);
        self
    }
    pub fn jmp_self(self) -> Self {
        self.b(&[0xeb, 0xfe])
    }
    pub fn int3(self) -> Self {
        self.b(&[0xcc])
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

pub struct Fixture {
    pub mem: OwnedFd,
    pub platform: PtracePlatform,
    pub aspace: std::sync::Arc<dyn AddressSpace>,
    pub ctx: Box<dyn Context>,
    pub state: CpuState,
}

impl Fixture {
    /// A platform and address space with `code` mapped read+exec at CODE and
    /// a read+write data page at DATA; the registers point at CODE.
    pub fn new(code: &Asm) -> Fixture {
        let mem = memfd(16 * PAGE);
        write_at(&mem, CODE_OFF, &code.0);
        let platform = PtracePlatform::new(mem.as_fd()).expect("platform");
        let aspace = platform.new_address_space().expect("address space");
        aspace
            .map(CODE, PAGE, CODE_OFF, Prot::READ_EXEC)
            .expect("map code");
        aspace
            .map(DATA, PAGE, DATA_OFF, Prot::READ_WRITE)
            .expect("map data");
        let ctx = platform.new_context().expect("context");
        let state = CpuState {
            regs: Registers::new_user(CODE, DATA + PAGE),
        };
        Fixture {
            mem,
            platform,
            aspace,
            ctx,
            state,
        }
    }

    pub fn switch(&mut self) -> platform::Event {
        self.ctx
            .switch(self.aspace.as_ref(), &mut self.state)
            .expect("switch")
    }

    pub fn stub_pid(&self) -> i32 {
        self.aspace
            .as_any()
            .downcast_ref::<platform::ptrace::PtraceAddressSpace>()
            .expect("ptrace address space")
            .stub_pid()
    }
}
