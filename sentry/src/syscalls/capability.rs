//! capget(2) and capset(2), and prctl's capability calls (the bounding
//! and ambient sets, keepcaps, securebits), with Linux's checks
//! (kernel/capability.c, security/commoncap.c).

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::creds::{
    CapSets, Credentials, ALL_CAPS, CAP_LAST_CAP, CAP_SETPCAP, SECBIT_KEEP_CAPS,
    SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE, SECURE_ALL_BITS, SECURE_ALL_LOCKS,
};
use crate::kernel::Task;

const VERSION_1: u32 = 0x1998_0330;
const VERSION_2: u32 = 0x2007_1026;
const VERSION_3: u32 = 0x2008_0522;

/// How many `struct __user_cap_data_struct` (three u32s) a header's
/// version carries; an unknown version is answered with the one this
/// kernel prefers, written back into the header, and EINVAL.
fn data_count(t: &Task, header: u64) -> Result<usize, Errno> {
    let version = u32::from_le_bytes(t.mm().read_bytes::<4>(header)?);
    match version {
        VERSION_1 => Ok(1),
        VERSION_2 | VERSION_3 => Ok(2),
        _ => {
            t.mm().copy_out(header, &VERSION_3.to_le_bytes())?;
            Err(Errno::EINVAL)
        }
    }
}

fn header_pid(t: &Task, header: u64) -> Result<i32, Errno> {
    Ok(i32::from_le_bytes(t.mm().read_bytes::<4>(header + 4)?))
}

/// The credentials of thread `pid` (0 or the caller's own tid: the
/// caller's). Another thread's are its process's as last set.
fn target_creds(t: &Task, pid: i32) -> Result<Credentials, Errno> {
    if pid == 0 || pid == t.tid() {
        return Ok(t.creds().clone());
    }
    let k = t.kernel();
    let tgid = k.pids.tgid_of(pid).ok_or(Errno::ESRCH)?;
    let tg = k.pids.thread_group(tgid).ok_or(Errno::ESRCH)?;
    tg.creds().ok_or(Errno::ESRCH)
}

pub fn capget(t: &mut Task, a: &Args) -> SysResult {
    let (header, data) = (a.addr(0), a.addr(1));
    let n = match data_count(t, header) {
        Ok(n) => n,
        // A probe for the preferred version (no data pointer) succeeds.
        Err(Errno::EINVAL) if data == 0 => return Ok(0),
        Err(e) => return Err(e),
    };
    if data == 0 {
        return Ok(0);
    }
    let pid = header_pid(t, header)?;
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    let c = target_creds(t, pid)?.caps;
    let mut out = Vec::with_capacity(n * 12);
    for i in 0..n {
        for set in [c.effective, c.permitted, c.inheritable] {
            out.extend_from_slice(&((set >> (32 * i)) as u32).to_le_bytes());
        }
    }
    t.mm().copy_out(data, &out)?;
    Ok(0)
}

fn is_subset(a: u64, b: u64) -> bool {
    a & !b == 0
}

pub fn capset(t: &mut Task, a: &Args) -> SysResult {
    let (header, data) = (a.addr(0), a.addr(1));
    let n = data_count(t, header)?;
    let pid = header_pid(t, header)?;
    // Only the caller's own sets may change.
    if pid != 0 && pid != t.tid() {
        return Err(Errno::EPERM);
    }
    let mut raw = vec![0u8; n * 12];
    t.mm().copy_in(data, &mut raw)?;
    let word = |i: usize, field: usize| -> u64 {
        let at = i * 12 + field * 4;
        u64::from(u32::from_le_bytes([
            raw[at],
            raw[at + 1],
            raw[at + 2],
            raw[at + 3],
        ])) << (32 * i)
    };
    let set = |field: usize| (0..n).fold(0u64, |acc, i| acc | word(i, field)) & ALL_CAPS;
    let (effective, permitted, inheritable) = (set(0), set(1), set(2));
    let old = t.creds().clone();
    let o = old.caps;
    // Without CAP_SETPCAP, inheritable grows only from the permitted set;
    // never beyond the bounding set.
    if !old.capable(CAP_SETPCAP) && !is_subset(inheritable, o.inheritable | o.permitted) {
        return Err(Errno::EPERM);
    }
    if !is_subset(inheritable, o.inheritable | o.bounding)
        || !is_subset(permitted, o.permitted)
        || !is_subset(effective, permitted)
    {
        return Err(Errno::EPERM);
    }
    let mut c = old;
    c.caps = CapSets {
        effective,
        permitted,
        inheritable,
        bounding: o.bounding,
        ambient: o.ambient & permitted & inheritable,
    };
    t.set_creds(c);
    Ok(0)
}

const PR_GET_KEEPCAPS: i32 = 7;
const PR_SET_KEEPCAPS: i32 = 8;
const PR_CAPBSET_READ: i32 = 23;
const PR_CAPBSET_DROP: i32 = 24;
const PR_GET_SECUREBITS: i32 = 27;
const PR_SET_SECUREBITS: i32 = 28;
const PR_CAP_AMBIENT: i32 = 47;
const PR_CAP_AMBIENT_IS_SET: u64 = 1;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_CAP_AMBIENT_LOWER: u64 = 3;
const PR_CAP_AMBIENT_CLEAR_ALL: u64 = 4;

fn cap_arg(v: u64) -> Result<u32, Errno> {
    if v > u64::from(CAP_LAST_CAP) {
        Err(Errno::EINVAL)
    } else {
        Ok(v as u32)
    }
}

/// prctl's capability options (Linux's cap_task_prctl); None for an
/// option that is not one of them.
pub fn prctl(t: &mut Task, a: &Args) -> Option<SysResult> {
    let opt = a.int(0);
    let (arg2, arg3, arg4, arg5) = (a.raw(1), a.raw(2), a.raw(3), a.raw(4));
    let c = t.creds().clone();
    let r = match opt {
        PR_CAPBSET_READ => cap_arg(arg2).map(|cap| u64::from(c.caps.bounding & (1 << cap) != 0)),
        PR_CAPBSET_DROP => {
            if !c.capable(CAP_SETPCAP) {
                return Some(Err(Errno::EPERM));
            }
            cap_arg(arg2).map(|cap| {
                let mut n = c;
                n.caps.bounding &= !(1 << cap);
                t.set_creds(n);
                0
            })
        }
        PR_GET_KEEPCAPS => Ok(u64::from(c.issecure(SECBIT_KEEP_CAPS))),
        PR_SET_KEEPCAPS => {
            if arg2 > 1 {
                Err(Errno::EINVAL)
            } else if c.issecure(SECBIT_KEEP_CAPS_LOCKED) {
                Err(Errno::EPERM)
            } else {
                let mut n = c;
                if arg2 == 1 {
                    n.securebits |= SECBIT_KEEP_CAPS;
                } else {
                    n.securebits &= !SECBIT_KEEP_CAPS;
                }
                t.set_creds(n);
                Ok(0)
            }
        }
        PR_GET_SECUREBITS => Ok(u64::from(c.securebits)),
        PR_SET_SECUREBITS => {
            let old = u64::from(c.securebits);
            let locks = old & u64::from(SECURE_ALL_LOCKS);
            // A locked bit may not change, a lock may not be released,
            // only known bits, and only with CAP_SETPCAP.
            if (locks >> 1) & (old ^ arg2) != 0
                || locks & !arg2 != 0
                || arg2 & !u64::from(SECURE_ALL_LOCKS | SECURE_ALL_BITS) != 0
                || !c.capable(CAP_SETPCAP)
            {
                Err(Errno::EPERM)
            } else {
                let mut n = c;
                n.securebits = arg2 as u32;
                t.set_creds(n);
                Ok(0)
            }
        }
        PR_CAP_AMBIENT => ambient(t, c, arg2, arg3, arg4 | arg5),
        _ => return None,
    };
    Some(r)
}

fn ambient(t: &mut Task, c: Credentials, op: u64, arg3: u64, rest: u64) -> SysResult {
    if op == PR_CAP_AMBIENT_CLEAR_ALL {
        if arg3 | rest != 0 {
            return Err(Errno::EINVAL);
        }
        let mut n = c;
        n.caps.ambient = 0;
        t.set_creds(n);
        return Ok(0);
    }
    let cap = cap_arg(arg3)?;
    if rest != 0 {
        return Err(Errno::EINVAL);
    }
    let bit = 1u64 << cap;
    match op {
        PR_CAP_AMBIENT_IS_SET => Ok(u64::from(c.caps.ambient & bit != 0)),
        PR_CAP_AMBIENT_RAISE => {
            if c.caps.permitted & bit == 0
                || c.caps.inheritable & bit == 0
                || c.issecure(SECBIT_NO_CAP_AMBIENT_RAISE)
            {
                return Err(Errno::EPERM);
            }
            let mut n = c;
            n.caps.ambient |= bit;
            t.set_creds(n);
            Ok(0)
        }
        PR_CAP_AMBIENT_LOWER => {
            let mut n = c;
            n.caps.ambient &= !bit;
            t.set_creds(n);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
