//! Memory: mmap, munmap, mprotect, mremap, brk, madvise, msync, mincore.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;
use crate::mm::MmapFile;

pub fn mmap(t: &mut Task, a: &Args) -> SysResult {
    let (addr, len, prot, flags, fd, offset) =
        (a.addr(0), a.raw(1), a.raw(2), a.raw(3), a.fd(4), a.raw(5));
    let file = if flags & libc::MAP_ANONYMOUS as u64 != 0 {
        None
    } else {
        let open = t.fds().lock().file(fd)?;
        if !open.readable() {
            return Err(Errno::EACCES);
        }
        let file = open.as_mappable().ok_or(Errno::ENODEV)?;
        Some(MmapFile {
            file,
            offset,
            writable: open.writable(),
        })
    };
    t.mm().mmap(addr, len, prot, flags, file)
}

pub fn munmap(t: &mut Task, a: &Args) -> SysResult {
    t.mm().munmap(a.addr(0), a.raw(1))?;
    Ok(0)
}

pub fn mprotect(t: &mut Task, a: &Args) -> SysResult {
    t.mm().mprotect(a.addr(0), a.raw(1), a.raw(2))?;
    Ok(0)
}

pub fn mremap(t: &mut Task, a: &Args) -> SysResult {
    t.mm()
        .mremap(a.addr(0), a.raw(1), a.raw(2), a.raw(3), a.addr(4))
}

pub fn brk(t: &mut Task, a: &Args) -> SysResult {
    Ok(t.mm().brk(a.addr(0)))
}

pub fn madvise(t: &mut Task, a: &Args) -> SysResult {
    t.mm().madvise(a.addr(0), a.raw(1), a.int(2))?;
    Ok(0)
}

pub fn msync(t: &mut Task, a: &Args) -> SysResult {
    t.mm().msync(a.addr(0), a.raw(1), a.raw(2))?;
    Ok(0)
}
