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
        let may_write = open.check_mmap_seals(
            flags & libc::MAP_TYPE as u64 != libc::MAP_PRIVATE as u64,
            prot & libc::PROT_WRITE as u64 != 0,
        )?;
        Some(MmapFile {
            file,
            offset,
            writable: may_write,
        })
    };
    check_vm_growth(t, addr, len, prot, flags)?;
    t.mm().mmap(addr, len, prot, flags, file)
}

/// RLIMIT_AS and RLIMIT_DATA for a new mapping (Linux's may_expand_vm in
/// mmap_region): ENOMEM beyond them. A MAP_FIXED mapping is charged only
/// for what it does not replace.
fn check_vm_growth(t: &Task, addr: u64, len: u64, prot: u64, flags: u64) -> Result<(), Errno> {
    use crate::kernel::limits::{is_data_mapping, may_expand_vm, vm_use_outside};
    let limits = t.limits().clone();
    let page = t.mm().page_size();
    let Some(len) = len.checked_add(page - 1).map(|l| l & !(page - 1)) else {
        return Ok(()); // mmap itself refuses the length
    };
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) as u64 != 0;
    let used = if fixed {
        vm_use_outside(&t.mm(), addr, addr.saturating_add(len))
    } else {
        vm_use_outside(&t.mm(), 0, 0)
    };
    let data = is_data_mapping(
        prot & libc::PROT_WRITE as u64 != 0,
        flags & libc::MAP_TYPE as u64 != libc::MAP_PRIVATE as u64,
        flags & libc::MAP_GROWSDOWN as u64 != 0,
    );
    may_expand_vm(&limits, used, len, data)
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
    // Growing counts against RLIMIT_AS (and RLIMIT_DATA for data).
    let (old, new) = (a.raw(1), a.raw(2));
    if new > old {
        use crate::kernel::limits::{is_data_mapping, may_expand_vm, vm_use_outside};
        let limits = t.limits().clone();
        let (used, data) = {
            let mm = t.mm();
            let data = mm
                .vma_at(a.addr(0))
                .is_some_and(|v| is_data_mapping(v.prot.write, v.shared, v.growsdown));
            (vm_use_outside(&mm, 0, 0), data)
        };
        may_expand_vm(&limits, used, new - old, data)?;
    }
    t.mm()
        .mremap(a.addr(0), a.raw(1), a.raw(2), a.raw(3), a.addr(4))
}

/// brk: growth beyond RLIMIT_DATA (the heap's size) or RLIMIT_AS leaves
/// the break where it is, as Linux's check_data_rlimit and may_expand_vm.
pub fn brk(t: &mut Task, a: &Args) -> SysResult {
    use crate::kernel::limits::{may_expand_vm, vm_use_outside, RLIM_INFINITY};
    let want = a.addr(0);
    let limits = t.limits().clone();
    let mut mm = t.mm();
    let (start, cur) = mm.brk_range();
    if want > cur && start != 0 {
        let data_limit = limits.soft(libc::RLIMIT_DATA);
        if data_limit != RLIM_INFINITY && want - start > data_limit {
            return Ok(cur);
        }
        let page = mm.page_size();
        let up = |x: u64| x.saturating_add(page - 1) & !(page - 1);
        let growth = up(want).saturating_sub(up(cur));
        if may_expand_vm(&limits, vm_use_outside(&mm, 0, 0), growth, true).is_err() {
            return Ok(cur);
        }
    }
    Ok(mm.brk(want))
}

pub fn madvise(t: &mut Task, a: &Args) -> SysResult {
    t.mm().madvise(a.addr(0), a.raw(1), a.int(2))?;
    Ok(0)
}

pub fn msync(t: &mut Task, a: &Args) -> SysResult {
    t.mm().msync(a.addr(0), a.raw(1), a.raw(2))?;
    Ok(0)
}
