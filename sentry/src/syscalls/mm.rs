//! Memory: mmap, munmap, mprotect, mremap, brk, madvise, msync, mincore.

use platform::Prot;

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;

const KNOWN_PROT: u64 = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC | libc::PROT_GROWSDOWN | libc::PROT_GROWSUP) as u64;

fn prot(bits: u64) -> Result<Prot, Errno> {
    if bits & !KNOWN_PROT != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Prot::from_bits(bits))
}

pub fn mmap(t: &mut Task, a: &Args) -> SysResult {
    let (addr, len, flags, fd, offset) = (a.addr(0), a.raw(1), a.int(3), a.fd(4), a.raw(5));
    let prot = prot(a.raw(2))?;
    let file = if flags & libc::MAP_ANONYMOUS != 0 {
        None
    } else {
        let open = t.fds.file(fd)?;
        let mappable = open.mappable(prot.write && flags & libc::MAP_SHARED != 0)?;
        Some((mappable, offset))
    };
    t.mm.mmap(addr, len, prot, flags, file)
}

pub fn munmap(t: &mut Task, a: &Args) -> SysResult {
    t.mm.munmap(a.addr(0), a.raw(1))?;
    Ok(0)
}

pub fn mprotect(t: &mut Task, a: &Args) -> SysResult {
    let prot = prot(a.raw(2))?;
    t.mm.mprotect(a.addr(0), a.raw(1), prot)?;
    Ok(0)
}

pub fn mremap(t: &mut Task, a: &Args) -> SysResult {
    t.mm.mremap(a.addr(0), a.raw(1), a.raw(2), a.int(3), a.addr(4))
}

pub fn brk(t: &mut Task, a: &Args) -> SysResult {
    Ok(t.mm.brk(a.addr(0)))
}

pub fn madvise(t: &mut Task, a: &Args) -> SysResult {
    t.mm.madvise(a.addr(0), a.raw(1), a.int(2))?;
    Ok(0)
}

pub fn msync(t: &mut Task, a: &Args) -> SysResult {
    t.mm.msync(a.addr(0), a.raw(1), a.int(2))?;
    Ok(0)
}
