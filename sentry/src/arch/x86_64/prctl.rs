//! arch_prctl(2), x86_64's own syscall: the fs and gs base registers
//! (TLS).

use crate::errno::Errno;
use crate::kernel::Task;
use crate::syscalls::{Args, SysResult};

const ARCH_SET_GS: i32 = 0x1001;
const ARCH_SET_FS: i32 = 0x1002;
const ARCH_GET_FS: i32 = 0x1003;
const ARCH_GET_GS: i32 = 0x1004;
const ARCH_GET_CPUID: i32 = 0x1011;
const ARCH_SET_CPUID: i32 = 0x1012;

pub fn arch_prctl(t: &mut Task, a: &Args) -> SysResult {
    let addr = a.addr(1);
    let canonical = addr < t.mm().layout().max_user_addr;
    match a.int(0) {
        ARCH_SET_FS if canonical => t.regs_mut().fs_base = addr,
        ARCH_SET_GS if canonical => t.regs_mut().gs_base = addr,
        ARCH_SET_FS | ARCH_SET_GS => return Err(Errno::EPERM),
        ARCH_GET_FS => {
            let v = t.regs().fs_base;
            t.mm().copy_out(addr, &v.to_le_bytes())?
        }
        ARCH_GET_GS => {
            let v = t.regs().gs_base;
            t.mm().copy_out(addr, &v.to_le_bytes())?
        }
        // cpuid always answers the application (natively, or emulated
        // from its --cpu-features).
        ARCH_GET_CPUID => return Ok(1),
        // Making the application's own cpuid fault is not implemented:
        // Linux's answer for a CPU without CPUID faulting.
        ARCH_SET_CPUID => {
            t.kernel()
                .log_unsupported(libc::SYS_arch_prctl as u64, "ARCH_SET_CPUID");
            return Err(Errno::ENODEV);
        }
        _ => return Err(Errno::EINVAL),
    }
    Ok(0)
}
