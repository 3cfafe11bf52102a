//! System information: uname, sethostname, sysinfo, getrandom.

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;

pub fn uname(t: &mut Task, a: &Args) -> SysResult {
    let bytes = t
        .kernel()
        .uts
        .lock()
        .map_err(|_| Errno::EIO)?
        .utsname_bytes();
    t.mm().copy_out(a.addr(0), &bytes)?;
    Ok(0)
}

/// The name sethostname and setdomainname set: CAP_SYS_ADMIN (EPERM,
/// checked first as Linux does), at most 64 bytes (EINVAL).
fn uts_name_arg(t: &Task, a: &Args) -> Result<String, Errno> {
    if !t.creds().capable(crate::kernel::creds::CAP_SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let len = a.len(1, usize::MAX)?;
    if len > 64 {
        return Err(Errno::EINVAL);
    }
    let mut name = vec![0u8; len];
    t.mm().copy_in(a.addr(0), &mut name)?;
    String::from_utf8(name).map_err(|_| Errno::EINVAL)
}

pub fn sethostname(t: &mut Task, a: &Args) -> SysResult {
    let name = uts_name_arg(t, a)?;
    t.kernel().uts.lock().map_err(|_| Errno::EIO)?.hostname = name;
    Ok(0)
}

pub fn setdomainname(t: &mut Task, a: &Args) -> SysResult {
    let name = uts_name_arg(t, a)?;
    t.kernel().uts.lock().map_err(|_| Errno::EIO)?.domainname = name;
    Ok(0)
}

/// `struct sysinfo` on x86_64 (112 bytes).
pub fn sysinfo(t: &mut Task, a: &Args) -> SysResult {
    let mut b = [0u8; 112];
    let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(0, t.kernel().clocks.uptime().as_secs());
    // loads[3] stay zero: the sandbox reports no load of its own yet.
    let mem = t.kernel().memory();
    put(32, mem.total);
    put(40, mem.free);
    // The sandbox has no swap of its own: totalswap and freeswap stay 0.
    // procs: the sandbox's tasks.
    let procs = u16::try_from(t.kernel().pids.task_count()).unwrap_or(u16::MAX);
    b[80..82].copy_from_slice(&procs.to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes()); // mem_unit
    t.mm().copy_out(a.addr(0), &b)?;
    Ok(0)
}

pub fn getrandom(t: &mut Task, a: &Args) -> SysResult {
    const GRND_NONBLOCK: u32 = 1;
    const GRND_RANDOM: u32 = 2;
    const GRND_INSECURE: u32 = 4;
    let flags = a.uint(2);
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_RANDOM | GRND_INSECURE) == (GRND_RANDOM | GRND_INSECURE)
    {
        return Err(Errno::EINVAL);
    }
    // Linux returns at most 32 MiB - 1 per call.
    let len = a.len(1, (32 << 20) - 1)?;
    let mut buf = vec![0u8; len];
    fill_random(&mut buf)?;
    t.mm().copy_out(a.addr(0), &buf)?;
    Ok(len as u64)
}

/// Entropy from the host kernel's getrandom (no host file is opened).
pub fn fill_random(buf: &mut [u8]) -> Result<(), Errno> {
    getrandom::fill(buf).map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))
}
