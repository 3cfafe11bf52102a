//! How much a trapped application syscall costs on a platform: a loop of
//! getpid calls in machine code, each one answered by this "Sentry".
//!
//! `cargo run --release -p platform --example syscall_cost [iterations] [platform]`
//! (platform: ptrace, the default, or systrap)

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use platform::{CpuState, Event, Prot, Registers};

const CODE: u64 = 0x40_0000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);

    // mov ebx, N; L: mov eax, 39; syscall; dec ebx; jnz L; mov eax, 60; syscall
    let mut code = vec![0xbb];
    code.extend_from_slice(&iterations.to_le_bytes());
    code.extend_from_slice(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xff, 0xcb, 0x75, 0xf5]);
    code.extend_from_slice(&[0xb8, 60, 0, 0, 0, 0x0f, 0x05]);

    // SAFETY: memfd_create with a valid C string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"syscall-cost".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let mem = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(mem.try_clone()?);
    file.set_len(4096)?;
    std::os::unix::fs::FileExt::write_all_at(&file, &code, 0)?;

    let name = std::env::args().nth(2).unwrap_or_else(|| "ptrace".into());
    let platform = platform::by_name(&name, std::os::fd::AsFd::as_fd(&mem))?;
    let start = Instant::now();
    for _ in 0..20 {
        drop(platform.new_address_space()?);
    }
    println!(
        "new_address_space (fork + clean + kill): {:.0} us each",
        start.elapsed().as_micros() as f64 / 20.0
    );
    let aspace = platform.new_address_space()?;
    aspace.map(CODE, 4096, 0, Prot::READ_EXEC)?;
    let mut ctx = platform.new_context()?;
    let mut state = CpuState {
        regs: Registers::new_user(CODE, 0),
    };

    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        match ctx.switch(aspace.as_ref(), &mut state)? {
            Event::Syscall if state.regs.syscall_nr() == 39 => {
                calls += 1;
                state.regs.set_return(1);
            }
            Event::Syscall if state.regs.syscall_nr() == 60 => break,
            e => return Err(format!("unexpected {e:?} at {:#x}", state.regs.rip).into()),
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{calls} trapped getpid syscalls in {:.3} s: {:.0} ns per syscall (ptrace platform, memory fd {})",
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / calls as f64,
        mem.as_raw_fd()
    );
    Ok(())
}
