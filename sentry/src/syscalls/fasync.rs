//! Signal-driven I/O's fcntl commands and FIOASYNC (Linux's fs/fcntl.c):
//! the owner and signal live on the open file (vfs/fasync.rs), the
//! delivery in the kernel (kernel/sigio.rs).

use std::sync::{Arc, Weak};

use super::SysResult;
use crate::errno::Errno;
use crate::kernel::Task;
use crate::vfs::fasync::{FileOwner, IoSignals, F_OWNER_PGRP, F_OWNER_PID, F_OWNER_TID};
use crate::vfs::OpenFile;

/// Where an O_ASYNC file sends its signals: the kernel.
fn signals_of(t: &Task) -> Weak<dyn IoSignals> {
    let k: Arc<dyn IoSignals> = t.kernel().clone();
    Arc::downgrade(&k)
}

/// F_SETFL's O_ASYNC (and FIOASYNC): arms or disarms the file's signals.
pub fn set_async(t: &Task, f: &OpenFile, fd: i32, on: bool) {
    if (f.status_flags() & libc::O_ASYNC != 0) != on {
        f.set_async(on, fd, signals_of(t));
    }
}

/// FIOASYNC: the int at `arg` turns O_ASYNC on or off.
pub fn fioasync(t: &mut Task, f: &OpenFile, fd: i32, arg: u64) -> SysResult {
    let on = t.mm().read_u32(arg)?;
    set_async(t, f, fd, on != 0);
    Ok(0)
}

/// fcntl commands the libc crate leaves out (asm-generic/fcntl.h).
pub const F_SETSIG: i32 = 10;
pub const F_GETSIG: i32 = 11;
pub const F_SETOWN_EX: i32 = 15;
pub const F_GETOWN_EX: i32 = 16;

/// `struct f_owner_ex`: type, pid.
const F_OWNER_EX_SIZE: usize = 8;

/// F_SETOWN, F_GETOWN, F_SETOWN_EX, F_GETOWN_EX, F_SETSIG, F_GETSIG.
pub fn fcntl(t: &mut Task, f: &OpenFile, cmd: i32, arg: u64) -> SysResult {
    let fa = f.fasync();
    match cmd {
        libc::F_GETOWN => Ok(fa.owner().map_or(0, |o| o.getown()) as i64 as u64),
        libc::F_SETOWN => {
            let who = arg as i32;
            if who == i32::MIN {
                return Err(Errno::EINVAL);
            }
            let (kind, id) = if who < 0 {
                (F_OWNER_PGRP, -who)
            } else {
                (F_OWNER_PID, who)
            };
            set_owner(t, f, kind, id)
        }
        F_GETOWN_EX => {
            // A file nobody set an owner for reads as thread 0, as on Linux.
            let (kind, id) = fa.owner().map_or((F_OWNER_TID, 0), |o| (o.kind, o.id));
            let mut b = [0u8; F_OWNER_EX_SIZE];
            b[0..4].copy_from_slice(&kind.to_le_bytes());
            b[4..8].copy_from_slice(&id.to_le_bytes());
            t.mm().copy_out(arg, &b)?;
            Ok(0)
        }
        F_SETOWN_EX => {
            let mut b = [0u8; F_OWNER_EX_SIZE];
            t.mm().copy_in(arg, &mut b)?;
            let kind = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let id = i32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            if !(F_OWNER_TID..=F_OWNER_PGRP).contains(&kind) || id < 0 {
                return Err(Errno::EINVAL);
            }
            set_owner(t, f, kind, id)
        }
        F_GETSIG => Ok(fa.signal() as u64),
        F_SETSIG => {
            let signo = i32::try_from(arg).map_err(|_| Errno::EINVAL)?;
            fa.set_signal(signo).map(|()| 0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// Linux's f_setown: an id nothing in the sandbox has is ESRCH; 0 clears
/// the owner; the setter's ids go with it for the permission check.
fn set_owner(t: &Task, f: &OpenFile, kind: i32, id: i32) -> SysResult {
    if id == 0 {
        f.fasync().set_owner(None);
        return Ok(0);
    }
    if !t.kernel().pid_in_use(id) {
        return Err(Errno::ESRCH);
    }
    let c = t.creds();
    f.fasync().set_owner(Some(FileOwner {
        kind,
        id,
        uid: c.uid,
        euid: c.euid,
    }));
    Ok(0)
}
