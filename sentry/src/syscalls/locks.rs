//! Advisory locks: fcntl's record locks (F_GETLK, F_SETLK, F_SETLKW and the
//! F_OFD_* forms) and flock(2). The locks themselves are in
//! [`crate::vfs::lock`]; here are `struct flock`, the ranges it describes
//! and the errors Linux gives.

use std::sync::Arc;

use super::{Args, SysResult, ERESTARTSYS};
use crate::errno::Errno;
use crate::kernel::Task;
use crate::vfs::lock::{LockKind, LockOwner, RecordLock, OFFSET_MAX};
use crate::vfs::OpenFile;

/// `sizeof(struct flock)` on 64-bit Linux: l_type, l_whence (shorts),
/// l_start, l_len (off_t), l_pid, padding.
const FLOCK_SIZE: usize = 32;

const LOCK_SH: i32 = 1;
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;
const LOCK_UN: i32 = 8;
/// Obsolete mandatory-lock flag: Linux warns and does nothing.
const LOCK_MAND: i32 = 32;

/// A `struct flock` as the application wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
}

impl Flock {
    fn decode(b: &[u8; FLOCK_SIZE]) -> Flock {
        let i64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            i64::from_le_bytes(w)
        };
        Flock {
            l_type: i16::from_le_bytes([b[0], b[1]]),
            l_whence: i16::from_le_bytes([b[2], b[3]]),
            l_start: i64_at(8),
            l_len: i64_at(16),
            l_pid: i32::from_le_bytes([b[24], b[25], b[26], b[27]]),
        }
    }

    /// Writes the fields back over the bytes read (padding kept).
    fn encode(&self, b: &mut [u8; FLOCK_SIZE]) {
        b[0..2].copy_from_slice(&self.l_type.to_le_bytes());
        b[2..4].copy_from_slice(&self.l_whence.to_le_bytes());
        b[8..16].copy_from_slice(&self.l_start.to_le_bytes());
        b[16..24].copy_from_slice(&self.l_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.l_pid.to_le_bytes());
    }

    fn kind(&self) -> Result<Option<LockKind>, Errno> {
        match i32::from(self.l_type) {
            libc::F_RDLCK => Ok(Some(LockKind::Read)),
            libc::F_WRLCK => Ok(Some(LockKind::Write)),
            libc::F_UNLCK => Ok(None),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The inclusive byte range the fields describe (Linux's
    /// flock64_to_posix_lock): l_whence SEEK_SET, SEEK_CUR or SEEK_END,
    /// l_len 0 to the end of any file, negative for the bytes before.
    fn range(&self, f: &OpenFile) -> Result<(u64, u64), Errno> {
        let base: i64 = match i32::from(self.l_whence) {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => i64::try_from(f.offset()).map_err(|_| Errno::EOVERFLOW)?,
            libc::SEEK_END => i64::try_from(f.stat()?.size).map_err(|_| Errno::EOVERFLOW)?,
            _ => return Err(Errno::EINVAL),
        };
        let start = base.checked_add(self.l_start).ok_or(Errno::EOVERFLOW)?;
        if start < 0 {
            return Err(Errno::EINVAL);
        }
        let (start, end) = match self.l_len {
            0 => (start, i64::MAX),
            len if len > 0 => {
                let end = start.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?;
                (start, end)
            }
            len => {
                let first = start.checked_add(len).ok_or(Errno::EINVAL)?;
                if first < 0 {
                    return Err(Errno::EINVAL);
                }
                (first, start - 1)
            }
        };
        Ok((start as u64, end as u64))
    }

    /// The conflicting lock as F_GETLK reports it.
    fn from_lock(l: &RecordLock) -> Flock {
        Flock {
            l_type: match l.kind {
                LockKind::Read => libc::F_RDLCK as i16,
                LockKind::Write => libc::F_WRLCK as i16,
            },
            l_whence: libc::SEEK_SET as i16,
            l_start: l.start as i64,
            l_len: if l.end >= OFFSET_MAX {
                0
            } else {
                (l.end - l.start + 1) as i64
            },
            l_pid: match l.owner {
                LockOwner::Process(tgid) => tgid,
                LockOwner::Description(_) => -1,
            },
        }
    }
}

/// What a blocked lock request checks while it waits: a signal to handle
/// ends it with EINTR; a checkpoint's stop makes it run again later.
fn interrupted(t: &Task) -> Result<(), Errno> {
    if !t.interrupt().is_pending() {
        return Ok(());
    }
    Err(if t.has_deliverable_signal() {
        Errno::EINTR
    } else {
        ERESTARTSYS
    })
}

/// fcntl's lock commands on open file `f`.
pub fn fcntl_lock(t: &mut Task, f: &Arc<OpenFile>, cmd: i32, addr: u64) -> SysResult {
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    let mut raw = [0u8; FLOCK_SIZE];
    t.mm().copy_in(addr, &mut raw)?;
    let fl = Flock::decode(&raw);
    let ofd = matches!(
        cmd,
        libc::F_OFD_GETLK | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
    );
    let owner = if ofd {
        LockOwner::Description(f.description_id())
    } else {
        LockOwner::Process(t.tgid())
    };
    let locks = t.kernel().file_locks.clone();
    match cmd {
        libc::F_GETLK | libc::F_OFD_GETLK => {
            let kind = fl.kind()?.ok_or(Errno::EINVAL)?;
            let (start, end) = fl.range(f)?;
            if ofd && fl.l_pid != 0 {
                return Err(Errno::EINVAL);
            }
            let out = match locks.test(f.lock_key()?, owner, kind, start, end) {
                Some(conflict) => Flock::from_lock(&conflict),
                None => Flock {
                    l_type: libc::F_UNLCK as i16,
                    ..fl
                },
            };
            out.encode(&mut raw);
            t.mm().copy_out(addr, &raw)?;
            Ok(0)
        }
        _ => {
            let kind = fl.kind()?;
            let (start, end) = fl.range(f)?;
            match kind {
                Some(LockKind::Read) if !f.readable() => return Err(Errno::EBADF),
                Some(LockKind::Write) if !f.writable() => return Err(Errno::EBADF),
                _ => {}
            }
            if ofd && fl.l_pid != 0 {
                return Err(Errno::EINVAL);
            }
            let key = f.lock_key()?;
            let blocking = matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW);
            let check = || interrupted(t);
            let wait: Option<&dyn Fn() -> Result<(), Errno>> =
                if blocking { Some(&check) } else { None };
            if ofd {
                f.note_locked(&locks, key);
            }
            locks.set(key, owner, kind, start, end, wait)?;
            Ok(0)
        }
    }
}

/// flock(2): a whole-file lock of the open file description.
pub fn flock(t: &mut Task, a: &Args) -> SysResult {
    let op = a.int(1);
    if op & LOCK_MAND != 0 {
        return Ok(0);
    }
    let kind = match op & !LOCK_NB {
        LOCK_SH => Some(LockKind::Read),
        LOCK_EX => Some(LockKind::Write),
        LOCK_UN => None,
        _ => return Err(Errno::EINVAL),
    };
    let f = t.fds().lock().file(a.fd(0))?;
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    let locks = t.kernel().file_locks.clone();
    let key = f.lock_key()?;
    let check = || interrupted(t);
    let wait: Option<&dyn Fn() -> Result<(), Errno>> = if op & LOCK_NB == 0 {
        Some(&check)
    } else {
        None
    };
    f.note_locked(&locks, key);
    locks.flock(key, f.description_id(), kind, wait)?;
    Ok(0)
}

/// The task's process closed a descriptor of `f`: see
/// [`crate::vfs::lock::closed_by`].
pub fn closed(t: &Task, f: &OpenFile) {
    crate::vfs::lock::closed_by(&t.kernel().file_locks, t.tgid(), f);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fl(whence: i32, start: i64, len: i64) -> Flock {
        Flock {
            l_type: libc::F_WRLCK as i16,
            l_whence: whence as i16,
            l_start: start,
            l_len: len,
            l_pid: 0,
        }
    }

    #[test]
    fn flock_round_trips_through_its_bytes() {
        let f = Flock {
            l_type: libc::F_RDLCK as i16,
            l_whence: libc::SEEK_END as i16,
            l_start: -5,
            l_len: 77,
            l_pid: 42,
        };
        let mut b = [0xaau8; FLOCK_SIZE];
        f.encode(&mut b);
        assert_eq!(Flock::decode(&b), f);
        assert_eq!(b[4..8], [0xaa; 4], "padding is left alone");
    }

    #[test]
    fn reported_locks_use_seek_set_and_len_0_to_eof() {
        let l = RecordLock {
            owner: LockOwner::Process(9),
            kind: LockKind::Write,
            start: 10,
            end: OFFSET_MAX,
        };
        let f = Flock::from_lock(&l);
        assert_eq!((f.l_start, f.l_len, f.l_pid), (10, 0, 9));
        let ofd = Flock::from_lock(&RecordLock {
            owner: LockOwner::Description(3),
            end: 19,
            ..l
        });
        assert_eq!((ofd.l_len, ofd.l_pid), (10, -1));
        assert_eq!(fl(7, 0, 0).kind(), Ok(Some(LockKind::Write)));
        let bad = Flock {
            l_type: 9,
            ..fl(0, 0, 0)
        };
        assert_eq!(bad.kind(), Err(Errno::EINVAL));
    }
}
