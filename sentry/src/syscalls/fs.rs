//! Files and descriptors: read/write family, open/close, stat family, lseek,
//! getdents64, readlink, access, fcntl, ioctl, dup, pipe, cwd, directory and
//! link operations.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::Task;
use crate::mm::until_short;
use crate::vfs::{abi, file::ioctl_input_size, pipe::new_pipe, splice, Dentry, FileKind, OpenFile};

/// Linux's PATH_MAX, including the NUL.
const PATH_MAX: usize = 4096;
/// Reads and writes move at most this much per step, so a hostile length
/// never makes the Sentry allocate without bound; a regular file's read
/// continues step by step, as Linux's would, until the request or EOF.
const IO_STEP: usize = 1 << 20;
/// Linux caps one read or write at 2 GiB minus a page.
const MAX_RW: usize = 0x7fff_f000;

/// Reads a path argument.
fn path_arg(t: &mut Task, addr: u64) -> Result<Vec<u8>, Errno> {
    t.mm().read_c_string(addr, PATH_MAX)
}

fn file(t: &Task, fd: i32) -> Result<Arc<OpenFile>, Errno> {
    t.fds().lock().file(fd)
}

/// Where a `*at` syscall's relative path starts: the cwd for AT_FDCWD, else
/// the directory `dirfd` refers to.
pub(super) fn start_dir(t: &Task, dirfd: i32, path: &[u8]) -> Result<Arc<Dentry>, Errno> {
    if path.first() == Some(&b'/') || dirfd == libc::AT_FDCWD {
        return Ok(t.cwd());
    }
    let f = file(t, dirfd)?;
    let d = f.dentry().cloned().ok_or(Errno::ENOTDIR)?;
    if !d.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(d)
}

/// The file `dirfd`+`path` names: with AT_EMPTY_PATH and an empty path,
/// the file `dirfd` itself (the cwd for AT_FDCWD); an empty path without
/// it is ENOENT whatever `dirfd` is, as Linux's getname.
fn resolve_at(
    t: &Task,
    dirfd: i32,
    path: &[u8],
    flags: i32,
    follow: bool,
) -> Result<Arc<Dentry>, Errno> {
    if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd == libc::AT_FDCWD {
            return Ok(t.cwd());
        }
        return file(t, dirfd)?.dentry().cloned().ok_or(Errno::ENOENT);
    }
    let start = start_dir(t, dirfd, path)?;
    t.kernel().vfs.resolve(&start, path, follow)
}

fn install(t: &mut Task, f: Arc<OpenFile>, cloexec: bool) -> SysResult {
    let limit = t.nofile_limit();
    t.fds().lock().insert(f, cloexec, limit).map(|fd| fd as u64)
}

/// Reads into application memory at `addr`, in steps, stopping at a short
/// read (EOF, a pipe with less data) like the kernel's own loop.
fn read_to(t: &mut Task, f: &OpenFile, addr: u64, len: usize, offset: Option<u64>) -> SysResult {
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    if f.kind() == FileKind::Directory {
        return Err(Errno::EISDIR);
    }
    super::tty::check_read(t, f)?;
    // A host file's bytes go straight into the application's pages.
    let mut fill = |fd: BorrowedFd<'_>, at: u64| {
        in_steps(len, |done, want| {
            let to = addr + done as u64;
            t.mm().copy_out_from_fd(to, want, fd, at + done as u64)
        })
    };
    if let Some(r) = f.read_host_direct(offset.map(|o| o as i64), &mut fill) {
        return r.map(|n| n as u64);
    }
    let mut buf = vec![0u8; len.min(IO_STEP)];
    in_steps(len, |done, want| {
        // A regular file gives what can be copied out before a page that
        // cannot (a short count), as Linux's filemap and shmem reads; a pipe
        // or socket is EFAULT then, as before.
        let want = match f.kind() {
            FileKind::Regular => match t.mm().writable_len(addr + done as u64, want) {
                0 => return Err(Errno::EFAULT),
                n => n,
            },
            _ => want,
        };
        let n = match offset {
            Some(off) => f.pread(
                &mut buf[..want],
                (off + done as u64) as i64,
                &t.interrupt().io,
            ),
            None => f.read(&mut buf[..want], &t.interrupt().io),
        }?;
        t.mm().copy_out(addr + done as u64, &buf[..n])?;
        Ok(n)
    })
    .map(|n| n as u64)
}

/// Moves `len` bytes in steps of at most IO_STEP, `step(done, want)` moving
/// one, as [`until_short`] does with pieces.
fn in_steps(
    len: usize,
    mut step: impl FnMut(usize, usize) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let steps = (0..len)
        .step_by(IO_STEP)
        .map(|at| ((), (len - at).min(IO_STEP)));
    until_short(steps, |(), done, want| step(done, want))
}

/// Keeps the shared mappings of a regular file coherent with write(2).
fn reflect_write(t: &Task, f: &Arc<OpenFile>, start: u64, data: &[u8]) {
    if f.kind() == FileKind::Regular && !data.is_empty() {
        if let Some(m) = f.as_mappable() {
            t.mm().file_written(m.as_ref(), start, data);
        }
    }
}

/// RLIMIT_FSIZE for a write of `len` bytes to `f` at `offset` (None: its
/// offset, or its end with O_APPEND): what may be written; at or past the
/// limit EFBIG, and SIGXFSZ is raised.
fn fsize_check(
    t: &mut Task,
    f: &OpenFile,
    offset: Option<u64>,
    len: usize,
) -> Result<usize, Errno> {
    if f.kind() != FileKind::Regular {
        return Ok(len);
    }
    let pos = match offset {
        Some(off) => off,
        None if f.status_flags() & libc::O_APPEND != 0 => f.stat()?.size,
        None => f.offset(),
    };
    let r = crate::kernel::limits::fsize_allows(&t.limits(), pos, len);
    if r == Err(Errno::EFBIG) {
        raise_sigxfsz(t);
    }
    r
}

/// SIGXFSZ, as Linux's send_sig from the writing task.
fn raise_sigxfsz(t: &mut Task) {
    let info = crate::kernel::signal::SigInfo {
        signo: libc::SIGXFSZ,
        code: crate::kernel::signal::SI_USER,
        addr: 0,
        pid: t.tgid(),
        uid: t.creds().uid,
    };
    t.send_signal(info);
}

/// A new size for a regular file, within RLIMIT_FSIZE (else EFBIG and
/// SIGXFSZ, as Linux's inode_newsize_ok).
fn fsize_check_size(t: &mut Task, size: u64) -> Result<(), Errno> {
    let limit = t.limits().soft(libc::RLIMIT_FSIZE);
    if size > limit {
        raise_sigxfsz(t);
        return Err(Errno::EFBIG);
    }
    Ok(())
}

fn write_from(
    t: &mut Task,
    f: &Arc<OpenFile>,
    addr: u64,
    len: usize,
    offset: Option<u64>,
) -> SysResult {
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let len = fsize_check(t, f, offset, len)?;
    super::tty::check_write(t, f)?;
    let mut buf = vec![0u8; len.min(IO_STEP)];
    in_steps(len, |done, want| {
        t.mm().copy_in(addr + done as u64, &mut buf[..want])?;
        let at = offset.map(|o| o + done as u64);
        let n = match at {
            Some(off) => f.pwrite(&buf[..want], off as i64, &t.interrupt().io),
            None => f.write(&buf[..want], &t.interrupt().io),
        }?;
        let start = at.unwrap_or_else(|| f.offset().saturating_sub(n as u64));
        reflect_write(t, f, start, &buf[..n]);
        Ok(n)
    })
    .map(|n| n as u64)
}

pub fn read(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    read_to(t, &f, a.addr(1), a.len(2, MAX_RW)?, None)
}

pub fn write(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let r = write_from(t, &f, a.addr(1), a.len(2, MAX_RW)?, None);
    raise_sigpipe(t, &f, r)
}

/// A write to a pipe without readers (or a stream socket that cannot
/// send) raises SIGPIPE as well as EPIPE: queued like Linux's send_sig, so
/// a handler runs and a blocked one stays pending.
fn raise_sigpipe(t: &mut Task, f: &OpenFile, r: SysResult) -> SysResult {
    if r == Err(Errno::EPIPE) && crate::net::socket::write_raises_sigpipe(f) {
        let info = crate::kernel::signal::SigInfo {
            signo: libc::SIGPIPE,
            code: crate::kernel::signal::SI_USER,
            addr: 0,
            pid: t.tgid(),
            uid: t.creds().uid,
        };
        t.send_signal(info);
    }
    r
}

fn offset_arg(a: &Args, i: usize) -> Result<u64, Errno> {
    u64::try_from(a.off(i)).map_err(|_| Errno::EINVAL)
}

pub fn pread64(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let off = offset_arg(a, 3)?;
    read_to(t, &f, a.addr(1), a.len(2, MAX_RW)?, Some(off))
}

pub fn pwrite64(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let off = offset_arg(a, 3)?;
    write_from(t, &f, a.addr(1), a.len(2, MAX_RW)?, Some(off))
}

/// readv/preadv: one read into a buffer, scattered over the iovecs.
fn readv_at(t: &mut Task, a: &Args, offset: Option<u64>) -> SysResult {
    let f = file(t, a.fd(0))?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let iovs = t.mm().read_iovecs(a.addr(1), a.raw(2))?;
    super::tty::check_read(t, &f)?;
    let total = iovs
        .iter()
        .map(|v| v.len)
        .fold(0u64, u64::saturating_add)
        .min(MAX_RW as u64) as usize;
    let mut buf = vec![0u8; total.min(IO_STEP * 8)];
    let n = match offset {
        Some(off) => f.pread(&mut buf, off as i64, &t.interrupt().io)?,
        None => f.read(&mut buf, &t.interrupt().io)?,
    };
    t.mm().copy_out_iovecs(&iovs, &buf[..n]).map(|n| n as u64)
}

fn writev_at(t: &mut Task, a: &Args, offset: Option<u64>) -> SysResult {
    let f = file(t, a.fd(0))?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let iovs = t.mm().read_iovecs(a.addr(1), a.raw(2))?;
    let mut data = t.mm().copy_in_iovecs(&iovs, IO_STEP * 8)?;
    let allowed = fsize_check(t, &f, offset, data.len())?;
    data.truncate(allowed);
    super::tty::check_write(t, &f)?;
    let r = match offset {
        Some(off) => f.pwrite(&data, off as i64, &t.interrupt().io),
        None => f.write(&data, &t.interrupt().io),
    };
    if let Ok(n) = r {
        let start = offset.unwrap_or_else(|| f.offset().saturating_sub(n as u64));
        reflect_write(t, &f, start, &data[..n]);
    }
    raise_sigpipe(t, &f, r.map(|n| n as u64))
}

pub fn readv(t: &mut Task, a: &Args) -> SysResult {
    readv_at(t, a, None)
}

pub fn writev(t: &mut Task, a: &Args) -> SysResult {
    writev_at(t, a, None)
}

pub fn preadv(t: &mut Task, a: &Args) -> SysResult {
    let off = offset_arg(a, 3)?;
    readv_at(t, a, Some(off))
}

pub fn pwritev(t: &mut Task, a: &Args) -> SysResult {
    let off = offset_arg(a, 3)?;
    writev_at(t, a, Some(off))
}

fn do_openat(t: &mut Task, dirfd: i32, path_addr: u64, flags: i32, mode: u32) -> SysResult {
    // 64-bit Linux opens every file as O_LARGEFILE (force_o_largefile),
    // which F_GETFL and fdinfo show; an O_PATH file keeps only its own.
    let flags = if flags & libc::O_PATH == 0 {
        flags | crate::vfs::file::KERNEL_O_LARGEFILE
    } else {
        flags
    };
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    let mode = mode & 0o7777 & !t.umask();
    let f = t.kernel().vfs.open_at(&start, &path, flags, mode)?;
    f.wait_open(&t.interrupt().io)?;
    let f = super::tty::opened(t, f, flags)?;
    install(t, f, flags & libc::O_CLOEXEC != 0)
}

pub fn open(t: &mut Task, a: &Args) -> SysResult {
    do_openat(t, libc::AT_FDCWD, a.addr(0), a.int(1), a.uint(2))
}

pub fn openat(t: &mut Task, a: &Args) -> SysResult {
    do_openat(t, a.fd(0), a.addr(1), a.int(2), a.uint(3))
}

pub fn creat(t: &mut Task, a: &Args) -> SysResult {
    do_openat(
        t,
        libc::AT_FDCWD,
        a.addr(0),
        libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
        a.uint(1),
    )
}

pub fn close(t: &mut Task, a: &Args) -> SysResult {
    let f = t.fds().lock().remove(a.fd(0))?;
    super::locks::closed(t, &f);
    Ok(0)
}

pub fn close_range(t: &mut Task, a: &Args) -> SysResult {
    const CLOSE_RANGE_UNSHARE: u32 = 2;
    const CLOSE_RANGE_CLOEXEC: u32 = 4;
    let (first, last, flags) = (a.uint(0), a.uint(1), a.uint(2));
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    if flags & CLOSE_RANGE_UNSHARE != 0 {
        t.unshare_files();
    }
    let fds: Vec<i32> = t
        .fds()
        .lock()
        .iter()
        .map(|(fd, _)| fd)
        .filter(|&fd| (first..=last).contains(&(fd as u32)))
        .collect();
    for fd in fds {
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            t.fds().lock().get_mut(fd)?.cloexec = true;
        } else {
            let f = t.fds().lock().remove(fd)?;
            super::locks::closed(t, &f);
        }
    }
    Ok(0)
}

fn stat_out(t: &mut Task, st: &crate::vfs::Stat, addr: u64) -> SysResult {
    t.mm().copy_out(addr, &crate::arch::encode_stat(st))?;
    Ok(0)
}

pub fn fstat(t: &mut Task, a: &Args) -> SysResult {
    let st = file(t, a.fd(0))?.stat()?;
    stat_out(t, &st, a.addr(1))
}

/// The stat of `dirfd`+`path` honouring AT_EMPTY_PATH and AT_SYMLINK_NOFOLLOW.
fn stat_at(
    t: &mut Task,
    dirfd: i32,
    path_addr: u64,
    flags: i32,
) -> Result<crate::vfs::Stat, Errno> {
    if flags
        & !(libc::AT_SYMLINK_NOFOLLOW
            | libc::AT_EMPTY_PATH
            | libc::AT_NO_AUTOMOUNT
            | libc::AT_STATX_SYNC_TYPE)
        != 0
    {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, path_addr)?;
    if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        if dirfd == libc::AT_FDCWD {
            return t.cwd().stat();
        }
        return file(t, dirfd)?.stat();
    }
    let start = start_dir(t, dirfd, &path)?;
    t.kernel()
        .vfs
        .stat_at(&start, &path, flags & libc::AT_SYMLINK_NOFOLLOW == 0)
}

pub fn stat(t: &mut Task, a: &Args) -> SysResult {
    let st = stat_at(t, libc::AT_FDCWD, a.addr(0), 0)?;
    stat_out(t, &st, a.addr(1))
}

pub fn lstat(t: &mut Task, a: &Args) -> SysResult {
    let st = stat_at(t, libc::AT_FDCWD, a.addr(0), libc::AT_SYMLINK_NOFOLLOW)?;
    stat_out(t, &st, a.addr(1))
}

pub fn newfstatat(t: &mut Task, a: &Args) -> SysResult {
    let st = stat_at(t, a.fd(0), a.addr(1), a.int(3))?;
    stat_out(t, &st, a.addr(2))
}

pub fn statx(t: &mut Task, a: &Args) -> SysResult {
    let mask = a.uint(3);
    if mask & libc::STATX__RESERVED as u32 != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(t, a.fd(0), a.addr(1), a.int(2))?;
    t.mm().copy_out(a.addr(4), &abi::encode_statx(&st, mask))?;
    Ok(0)
}

pub fn lseek(t: &mut Task, a: &Args) -> SysResult {
    file(t, a.fd(0))?.lseek(a.off(1), a.int(2))
}

pub fn getdents64(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let limit = a.len(2, IO_STEP)?;
    let bytes = f.getdents64(limit)?;
    t.mm().copy_out(a.addr(1), &bytes)?;
    Ok(bytes.len() as u64)
}

fn do_readlinkat(t: &mut Task, dirfd: i32, path_addr: u64, buf: u64, size: i32) -> SysResult {
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    let target = t.kernel().vfs.readlink_at(&start, &path)?;
    let n = target.len().min(size as usize);
    t.mm().copy_out(buf, &target[..n])?;
    Ok(n as u64)
}

pub fn readlink(t: &mut Task, a: &Args) -> SysResult {
    do_readlinkat(t, libc::AT_FDCWD, a.addr(0), a.addr(1), a.int(2))
}

pub fn readlinkat(t: &mut Task, a: &Args) -> SysResult {
    do_readlinkat(t, a.fd(0), a.addr(1), a.addr(2), a.int(3))
}

fn do_faccessat(t: &mut Task, dirfd: i32, path_addr: u64, mode: i32, flags: i32) -> SysResult {
    if mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0
        || flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EACCESS | libc::AT_EMPTY_PATH) != 0
    {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    let c = t.creds();
    let creds = if flags & libc::AT_EACCESS != 0 {
        crate::vfs::perm::FsCreds {
            uid: c.euid,
            gid: c.egid,
            groups: c.groups.clone(),
            caps: c.caps.effective,
        }
    } else {
        // The real ids, with the capabilities they would have: a real uid
        // other than 0 none, 0 the permitted set (Linux's access_override_creds).
        let caps = if c.issecure(crate::kernel::creds::SECBIT_NO_SETUID_FIXUP) {
            c.caps.effective
        } else if c.uid == 0 {
            c.caps.permitted
        } else {
            0
        };
        crate::vfs::perm::FsCreds {
            uid: c.uid,
            gid: c.gid,
            groups: c.groups.clone(),
            caps,
        }
    };
    t.kernel().vfs.access_at(
        &start,
        &path,
        mode,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
        creds,
    )?;
    Ok(0)
}

pub fn access(t: &mut Task, a: &Args) -> SysResult {
    do_faccessat(t, libc::AT_FDCWD, a.addr(0), a.int(1), 0)
}

pub fn faccessat(t: &mut Task, a: &Args) -> SysResult {
    do_faccessat(t, a.fd(0), a.addr(1), a.int(2), 0)
}

pub fn faccessat2(t: &mut Task, a: &Args) -> SysResult {
    do_faccessat(t, a.fd(0), a.addr(1), a.int(2), a.int(3))
}

pub fn fcntl(t: &mut Task, a: &Args) -> SysResult {
    let fd = a.fd(0);
    let f = file(t, fd)?;
    match a.int(1) {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let min = a.int(2);
            let limit = t.nofile_limit();
            if min < 0 || min as u64 >= limit {
                return Err(Errno::EINVAL);
            }
            let cloexec = a.int(1) == libc::F_DUPFD_CLOEXEC;
            t.fds()
                .lock()
                .insert_from(min, f, cloexec, limit)
                .map(|fd| fd as u64)
        }
        libc::F_GETFD => Ok(if t.fds().lock().get(fd)?.cloexec {
            libc::FD_CLOEXEC as u64
        } else {
            0
        }),
        libc::F_SETFD => {
            t.fds().lock().get_mut(fd)?.cloexec = a.int(2) & libc::FD_CLOEXEC != 0;
            Ok(0)
        }
        libc::F_GETFL => Ok(f.status_flags() as u32 as u64),
        libc::F_SETFL => {
            super::fasync::set_async(t, &f, fd, a.int(2) & libc::O_ASYNC != 0);
            f.set_status_flags(a.int(2));
            Ok(0)
        }
        libc::F_GETOWN
        | libc::F_SETOWN
        | super::fasync::F_GETOWN_EX
        | super::fasync::F_SETOWN_EX
        | super::fasync::F_GETSIG
        | super::fasync::F_SETSIG => super::fasync::fcntl(t, &f, a.int(1), a.raw(2)),
        libc::F_GETLK
        | libc::F_SETLK
        | libc::F_SETLKW
        | libc::F_OFD_GETLK
        | libc::F_OFD_SETLK
        | libc::F_OFD_SETLKW => super::locks::fcntl_lock(t, &f, a.int(1), a.addr(2)),
        libc::F_GET_SEALS => Ok(u64::from(f.inode().seals()?)),
        libc::F_ADD_SEALS => {
            // memfd_add_seals: only through a file open for writing.
            if !f.writable() {
                return Err(Errno::EPERM);
            }
            f.inode().add_seals(a.uint(2))?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn ioctl(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let cmd = a.raw(1) & 0xffff_ffff;
    // The descriptor's own flag, on any file (do_vfs_ioctl).
    if cmd == libc::FIOCLEX || cmd == libc::FIONCLEX {
        t.fds().lock().get_mut(a.fd(0))?.cloexec = cmd == libc::FIOCLEX;
        return Ok(0);
    }
    if cmd == libc::FIOASYNC && !f.is_path() {
        return super::fasync::fioasync(t, &f, a.fd(0), a.raw(2));
    }
    if let Some(r) = super::tty::ioctl(t, &f, cmd, a.raw(2)) {
        return r;
    }
    if let Some(r) = super::net::ifconf(t, &f, cmd, a.addr(2)) {
        return r;
    }
    let mut input = vec![0u8; ioctl_input_size(cmd)];
    if !input.is_empty() {
        t.mm().copy_in(a.addr(2), &mut input)?;
    }
    let reply = f.ioctl(cmd, &input)?;
    if !reply.out.is_empty() {
        t.mm().copy_out(a.addr(2), &reply.out)?;
    }
    Ok(reply.ret)
}

pub fn dup(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    install(t, f, false)
}

fn do_dup3(t: &mut Task, old: i32, new: i32, flags: i32) -> SysResult {
    let f = file(t, old)?;
    let limit = t.nofile_limit();
    let replaced = t
        .fds()
        .lock()
        .insert_at(new, f, flags & libc::O_CLOEXEC != 0, limit)?;
    if let Some(old) = replaced {
        super::locks::closed(t, &old);
    }
    Ok(new as u64)
}

pub fn dup2(t: &mut Task, a: &Args) -> SysResult {
    let (old, new) = (a.fd(0), a.fd(1));
    if old == new {
        file(t, old)?;
        return Ok(new as u64);
    }
    do_dup3(t, old, new, 0)
}

pub fn dup3(t: &mut Task, a: &Args) -> SysResult {
    let (old, new, flags) = (a.fd(0), a.fd(1), a.int(2));
    if old == new || flags & !libc::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    do_dup3(t, old, new, flags)
}

fn do_pipe2(t: &mut Task, addr: u64, flags: i32) -> SysResult {
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let now = crate::vfs::Clock::now(&crate::vfs::HostClock);
    let (r, w) = new_pipe(flags, now);
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let rfd = install(t, r, cloexec)? as i32;
    let wfd = match install(t, w, cloexec) {
        Ok(fd) => fd as i32,
        Err(e) => {
            let _ = t.fds().lock().remove(rfd);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&rfd.to_le_bytes());
    out[4..].copy_from_slice(&wfd.to_le_bytes());
    if let Err(e) = t.mm().copy_out(addr, &out) {
        let _ = t.fds().lock().remove(rfd);
        let _ = t.fds().lock().remove(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn pipe(t: &mut Task, a: &Args) -> SysResult {
    do_pipe2(t, a.addr(0), 0)
}

pub fn pipe2(t: &mut Task, a: &Args) -> SysResult {
    do_pipe2(t, a.addr(0), a.int(1))
}

pub fn getcwd(t: &mut Task, a: &Args) -> SysResult {
    let mut path = t.kernel().vfs.cwd_path_bytes(&t.cwd());
    path.push(0);
    if (a.raw(1) as usize) < path.len() {
        return Err(Errno::ERANGE);
    }
    t.mm().copy_out(a.addr(0), &path)?;
    Ok(path.len() as u64)
}

pub fn chdir(t: &mut Task, a: &Args) -> SysResult {
    let path = path_arg(t, a.addr(0))?;
    let start = start_dir(t, libc::AT_FDCWD, &path)?;
    let dir = t.kernel().vfs.lookup_dir(&start, &path)?;
    t.set_cwd(dir);
    Ok(0)
}

pub fn fchdir(t: &mut Task, a: &Args) -> SysResult {
    let d = file(t, a.fd(0))?.dentry().cloned().ok_or(Errno::ENOTDIR)?;
    if !d.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    crate::vfs::perm::check(d.inode().as_ref(), crate::vfs::perm::MAY_EXEC)?;
    t.set_cwd(d);
    Ok(0)
}

fn do_mkdirat(t: &mut Task, dirfd: i32, path_addr: u64, mode: u32) -> SysResult {
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    t.kernel()
        .vfs
        .mkdir_at(&start, &path, mode & 0o7777 & !t.umask())?;
    Ok(0)
}

pub fn mkdir(t: &mut Task, a: &Args) -> SysResult {
    do_mkdirat(t, libc::AT_FDCWD, a.addr(0), a.uint(1))
}

pub fn mkdirat(t: &mut Task, a: &Args) -> SysResult {
    do_mkdirat(t, a.fd(0), a.addr(1), a.uint(2))
}

/// The device number is not looked at: a device node needs CAP_MKNOD
/// (EPERM), and the file systems refuse one even then, as Linux checks
/// the type first.
fn do_mknodat(t: &mut Task, dirfd: i32, path_addr: u64, mode: u32) -> SysResult {
    let file_type = match mode & libc::S_IFMT {
        0 => libc::S_IFREG,
        ty @ (libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK) => ty,
        libc::S_IFDIR => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    if matches!(file_type, libc::S_IFCHR | libc::S_IFBLK)
        && !t.creds().capable(crate::kernel::creds::CAP_MKNOD)
    {
        return Err(Errno::EPERM);
    }
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    t.kernel()
        .vfs
        .mknod_at(&start, &path, file_type | (mode & 0o7777 & !t.umask()))?;
    Ok(0)
}

pub fn mknod(t: &mut Task, a: &Args) -> SysResult {
    do_mknodat(t, libc::AT_FDCWD, a.addr(0), a.uint(1))
}

pub fn mknodat(t: &mut Task, a: &Args) -> SysResult {
    do_mknodat(t, a.fd(0), a.addr(1), a.uint(2))
}

fn do_unlinkat(t: &mut Task, dirfd: i32, path_addr: u64, flags: i32) -> SysResult {
    if flags & !libc::AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    t.kernel().vfs.unlink_at(&start, &path, flags)?;
    Ok(0)
}

pub fn unlink(t: &mut Task, a: &Args) -> SysResult {
    do_unlinkat(t, libc::AT_FDCWD, a.addr(0), 0)
}

pub fn unlinkat(t: &mut Task, a: &Args) -> SysResult {
    do_unlinkat(t, a.fd(0), a.addr(1), a.int(2))
}

pub fn rmdir(t: &mut Task, a: &Args) -> SysResult {
    do_unlinkat(t, libc::AT_FDCWD, a.addr(0), libc::AT_REMOVEDIR)
}

fn do_symlinkat(t: &mut Task, target_addr: u64, dirfd: i32, path_addr: u64) -> SysResult {
    let target = path_arg(t, target_addr)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    t.kernel().vfs.symlink_at(&target, &start, &path)?;
    Ok(0)
}

pub fn symlink(t: &mut Task, a: &Args) -> SysResult {
    do_symlinkat(t, a.addr(0), libc::AT_FDCWD, a.addr(1))
}

pub fn symlinkat(t: &mut Task, a: &Args) -> SysResult {
    do_symlinkat(t, a.addr(0), a.fd(1), a.addr(2))
}

pub fn statfs(t: &mut Task, a: &Args) -> SysResult {
    let path = path_arg(t, a.addr(0))?;
    let start = start_dir(t, libc::AT_FDCWD, &path)?;
    let d = t.kernel().vfs.resolve(&start, &path, true)?;
    let st = crate::vfs::statfs::StatFs::of_dentry(&d);
    t.mm().copy_out(a.addr(1), &st.to_bytes())?;
    Ok(0)
}

pub fn fstatfs(t: &mut Task, a: &Args) -> SysResult {
    let st = crate::vfs::statfs::StatFs::of_file(file(t, a.fd(0))?.as_ref());
    t.mm().copy_out(a.addr(1), &st.to_bytes())?;
    Ok(0)
}

fn do_linkat(
    t: &mut Task,
    olddir: i32,
    old_addr: u64,
    newdir: i32,
    new_addr: u64,
    flags: i32,
) -> SysResult {
    if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let old_path = path_arg(t, old_addr)?;
    let new_path = path_arg(t, new_addr)?;
    let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
    let old = resolve_at(t, olddir, &old_path, flags, follow)?;
    let new_start = start_dir(t, newdir, &new_path)?;
    t.kernel().vfs.link_at(&old, &new_start, &new_path)?;
    Ok(0)
}

/// link(2) never follows a symlink: the new name links the symlink itself.
pub fn link(t: &mut Task, a: &Args) -> SysResult {
    do_linkat(t, libc::AT_FDCWD, a.addr(0), libc::AT_FDCWD, a.addr(1), 0)
}

pub fn linkat(t: &mut Task, a: &Args) -> SysResult {
    do_linkat(t, a.fd(0), a.addr(1), a.fd(2), a.addr(3), a.int(4))
}

fn do_renameat2(
    t: &mut Task,
    olddir: i32,
    old_addr: u64,
    newdir: i32,
    new_addr: u64,
    flags: u32,
) -> SysResult {
    let old = path_arg(t, old_addr)?;
    let new = path_arg(t, new_addr)?;
    let old_start = start_dir(t, olddir, &old)?;
    let new_start = start_dir(t, newdir, &new)?;
    t.kernel()
        .vfs
        .rename_at(&old_start, &old, &new_start, &new, flags)?;
    Ok(0)
}

pub fn rename(t: &mut Task, a: &Args) -> SysResult {
    do_renameat2(t, libc::AT_FDCWD, a.addr(0), libc::AT_FDCWD, a.addr(1), 0)
}

pub fn renameat(t: &mut Task, a: &Args) -> SysResult {
    do_renameat2(t, a.fd(0), a.addr(1), a.fd(2), a.addr(3), 0)
}

pub fn renameat2(t: &mut Task, a: &Args) -> SysResult {
    do_renameat2(t, a.fd(0), a.addr(1), a.fd(2), a.addr(3), a.uint(4))
}

pub fn truncate(t: &mut Task, a: &Args) -> SysResult {
    let path = path_arg(t, a.addr(0))?;
    let start = start_dir(t, libc::AT_FDCWD, &path)?;
    if let Ok(size) = u64::try_from(a.off(1)) {
        fsize_check_size(t, size)?;
    }
    t.kernel().vfs.truncate(&start, &path, a.off(1))?;
    Ok(0)
}

pub fn ftruncate(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let len = u64::try_from(a.off(1)).map_err(|_| Errno::EINVAL)?;
    if !f.writable() || f.kind() != FileKind::Regular {
        return Err(Errno::EINVAL);
    }
    fsize_check_size(t, len)?;
    f.inode().set_size(len)?;
    if let Some(d) = f.dentry() {
        crate::vfs::inotify::notify(d, crate::vfs::inotify::IN_MODIFY);
    }
    Ok(0)
}

/// The sandbox's files live in memory or on a read-only lower layer:
/// there is nothing to flush, so fsync only checks the descriptor.
pub fn fsync(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    Ok(0)
}

/// posix_fadvise is advice the kernel may ignore; it validates its
/// arguments as Linux does.
pub fn fadvise64(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    if matches!(f.kind(), FileKind::PipeRead | FileKind::PipeWrite) {
        return Err(Errno::ESPIPE);
    }
    if a.off(2) < 0 || !(0..=5).contains(&a.int(3)) {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// An xattr name argument: at most XATTR_NAME_MAX bytes, not empty
/// (ERANGE otherwise, as Linux's import_xattr_name).
fn xattr_name(t: &mut Task, addr: u64) -> Result<Vec<u8>, Errno> {
    use crate::vfs::xattr::XATTR_NAME_MAX;
    let name = match t.mm().read_c_string(addr, XATTR_NAME_MAX + 1) {
        Err(Errno::ENAMETOOLONG) => return Err(Errno::ERANGE),
        r => r?,
    };
    crate::vfs::xattr::check_name_len(&name)?;
    Ok(name)
}

/// The file an xattr call names: a path (following a last symlink or
/// not) or a descriptor (not an O_PATH one).
enum XattrTarget {
    Path { addr: u64, follow: bool },
    Fd(i32),
}

/// The dentry of the file, if it has one, and its inode.
type XattrFile = (Option<Arc<Dentry>>, Arc<dyn crate::vfs::Inode>);

fn xattr_file(t: &mut Task, target: XattrTarget) -> Result<XattrFile, Errno> {
    match target {
        XattrTarget::Path { addr, follow } => {
            let path = path_arg(t, addr)?;
            let d = resolve_at(t, libc::AT_FDCWD, &path, 0, follow)?;
            let inode = d.inode().clone();
            Ok((Some(d), inode))
        }
        XattrTarget::Fd(fd) => {
            let f = file(t, fd)?;
            if f.is_path() {
                return Err(Errno::EBADF);
            }
            Ok((f.dentry().cloned(), f.inode().clone()))
        }
    }
}

fn xattr_target(f: &XattrFile) -> crate::vfs::xattr::Target<'_> {
    crate::vfs::xattr::Target {
        inode: &f.1,
        dentry: f.0.as_ref(),
    }
}

fn do_getxattr(t: &mut Task, target: XattrTarget, a: &Args, first: usize) -> SysResult {
    let name = xattr_name(t, a.addr(first))?;
    let d = xattr_file(t, target)?;
    let value = crate::vfs::xattr::get(&xattr_target(&d), &name)?;
    let size = (a.raw(first + 2) as usize).min(crate::vfs::xattr::XATTR_SIZE_MAX);
    if size == 0 {
        return Ok(value.len() as u64);
    }
    if value.len() > size {
        return Err(Errno::ERANGE);
    }
    t.mm().copy_out(a.addr(first + 1), &value)?;
    Ok(value.len() as u64)
}

fn do_setxattr(t: &mut Task, target: XattrTarget, a: &Args, first: usize) -> SysResult {
    let flags = a.int(first + 3);
    if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = xattr_name(t, a.addr(first))?;
    let size = a.raw(first + 2) as usize;
    if size > crate::vfs::xattr::XATTR_SIZE_MAX {
        return Err(Errno::E2BIG);
    }
    let mut value = vec![0u8; size];
    if size > 0 {
        t.mm().copy_in(a.addr(first + 1), &mut value)?;
    }
    let d = xattr_file(t, target)?;
    crate::vfs::xattr::set(&xattr_target(&d), &name, &value, flags)?;
    Ok(0)
}

fn do_listxattr(t: &mut Task, target: XattrTarget, a: &Args, first: usize) -> SysResult {
    let d = xattr_file(t, target)?;
    let list = crate::vfs::xattr::list(&xattr_target(&d))?;
    let size = (a.raw(first + 1) as usize).min(crate::vfs::xattr::XATTR_SIZE_MAX);
    if size == 0 {
        return Ok(list.len() as u64);
    }
    if list.len() > size {
        return Err(if list.len() > crate::vfs::xattr::XATTR_SIZE_MAX {
            Errno::E2BIG
        } else {
            Errno::ERANGE
        });
    }
    t.mm().copy_out(a.addr(first), &list)?;
    Ok(list.len() as u64)
}

fn do_removexattr(t: &mut Task, target: XattrTarget, a: &Args, first: usize) -> SysResult {
    let name = xattr_name(t, a.addr(first))?;
    let d = xattr_file(t, target)?;
    crate::vfs::xattr::remove(&xattr_target(&d), &name)?;
    Ok(0)
}

fn path_target(a: &Args, follow: bool) -> XattrTarget {
    XattrTarget::Path {
        addr: a.addr(0),
        follow,
    }
}

pub fn getxattr(t: &mut Task, a: &Args) -> SysResult {
    do_getxattr(t, path_target(a, true), a, 1)
}

pub fn lgetxattr(t: &mut Task, a: &Args) -> SysResult {
    do_getxattr(t, path_target(a, false), a, 1)
}

pub fn fgetxattr(t: &mut Task, a: &Args) -> SysResult {
    do_getxattr(t, XattrTarget::Fd(a.fd(0)), a, 1)
}

pub fn setxattr(t: &mut Task, a: &Args) -> SysResult {
    do_setxattr(t, path_target(a, true), a, 1)
}

pub fn lsetxattr(t: &mut Task, a: &Args) -> SysResult {
    do_setxattr(t, path_target(a, false), a, 1)
}

pub fn fsetxattr(t: &mut Task, a: &Args) -> SysResult {
    do_setxattr(t, XattrTarget::Fd(a.fd(0)), a, 1)
}

pub fn listxattr(t: &mut Task, a: &Args) -> SysResult {
    do_listxattr(t, path_target(a, true), a, 1)
}

pub fn llistxattr(t: &mut Task, a: &Args) -> SysResult {
    do_listxattr(t, path_target(a, false), a, 1)
}

pub fn flistxattr(t: &mut Task, a: &Args) -> SysResult {
    do_listxattr(t, XattrTarget::Fd(a.fd(0)), a, 1)
}

pub fn removexattr(t: &mut Task, a: &Args) -> SysResult {
    do_removexattr(t, path_target(a, true), a, 1)
}

pub fn lremovexattr(t: &mut Task, a: &Args) -> SysResult {
    do_removexattr(t, path_target(a, false), a, 1)
}

pub fn fremovexattr(t: &mut Task, a: &Args) -> SysResult {
    do_removexattr(t, XattrTarget::Fd(a.fd(0)), a, 1)
}

/// Every mode bit some file system knows (Linux's FALLOC_FL_SUPPORTED_MASK).
const FALLOC_KNOWN: i32 = libc::FALLOC_FL_KEEP_SIZE
    | libc::FALLOC_FL_PUNCH_HOLE
    | libc::FALLOC_FL_COLLAPSE_RANGE
    | libc::FALLOC_FL_ZERO_RANGE
    | libc::FALLOC_FL_INSERT_RANGE
    | libc::FALLOC_FL_UNSHARE_RANGE;

/// fallocate(2): `offset` and `len` as vfs_fallocate checks them; a range
/// growing the file past RLIMIT_FSIZE is EFBIG (and SIGXFSZ).
pub fn fallocate(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let mode = a.int(1);
    let (offset, len) = (a.off(2), a.off(3));
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    if mode & !FALLOC_KNOWN != 0
        || (mode & libc::FALLOC_FL_PUNCH_HOLE != 0 && mode & libc::FALLOC_FL_KEEP_SIZE == 0)
    {
        return Err(Errno::EOPNOTSUPP);
    }
    if offset.checked_add(len).is_none() {
        return Err(Errno::EFBIG);
    }
    if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && f.kind() == FileKind::Regular {
        let end = (offset + len) as u64;
        let size = f.stat()?.size;
        if end > size {
            let allowed = fsize_check(t, &f, Some(size), (end - size) as usize)?;
            if (allowed as u64) < end - size {
                return Err(Errno::EFBIG);
            }
        }
    }
    f.fallocate(mode, offset as u64, len as u64)?;
    Ok(0)
}

/// An offset argument of sendfile, splice or copy_file_range: None for a
/// null pointer, EINVAL for a negative value.
fn offset_ptr(t: &Task, addr: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let off = t.mm().read_u64(addr)? as i64;
    u64::try_from(off).map(Some).map_err(|_| Errno::EINVAL)
}

/// Moves bytes between two files through [`splice::transfer`], then
/// stores where each side ended: in the application's offset argument
/// when it gave one, else in the file's offset.
#[allow(clippy::too_many_arguments)]
fn do_transfer(
    t: &mut Task,
    input: &Arc<OpenFile>,
    (in_addr, in_given): (u64, Option<u64>),
    out: &Arc<OpenFile>,
    (out_addr, out_given): (u64, Option<u64>),
    count: usize,
    consume: bool,
    waits: splice::Waits,
) -> SysResult {
    let count = fsize_check(t, out, out_given, count)?;
    let moved = {
        let intr = t.interrupt().io.clone();
        let mut reflect = |f: &Arc<OpenFile>, at: u64, data: &[u8]| reflect_write(t, f, at, data);
        splice::transfer(
            splice::Side::new(input, in_given),
            splice::Side::new(out, out_given),
            count,
            consume,
            waits,
            &intr,
            &mut reflect,
        )
    };
    let moved = match moved {
        Ok(m) => m,
        Err(e) => return raise_sigpipe(t, out, Err(e)),
    };
    splice::settle(input, in_given.is_some(), moved.in_offset);
    splice::settle(out, out_given.is_some(), moved.out_offset);
    if let (Some(off), true) = (moved.in_offset, in_given.is_some()) {
        t.mm().write_u64(in_addr, off)?;
    }
    if let (Some(off), true) = (moved.out_offset, out_given.is_some()) {
        t.mm().write_u64(out_addr, off)?;
    }
    Ok(moved.bytes as u64)
}

/// sendfile: copies up to `count` bytes from `in_fd` (at `*offset` when
/// given, leaving the file offset alone) to `out_fd`.
pub fn sendfile(t: &mut Task, a: &Args) -> SysResult {
    let out = file(t, a.fd(0))?;
    let input = file(t, a.fd(1))?;
    if !input.readable() || !out.writable() {
        return Err(Errno::EBADF);
    }
    let in_off = offset_ptr(t, a.addr(2))?;
    let count = a.len(3, MAX_RW)?;
    let waits = splice::Waits {
        nonblock_pipes: false,
        after_progress: true,
    };
    do_transfer(
        t,
        &input,
        (a.addr(2), in_off),
        &out,
        (0, None),
        count,
        true,
        waits,
    )
}

/// copy_file_range: between two regular files, at the given offsets or
/// the files' own.
pub fn copy_file_range(t: &mut Task, a: &Args) -> SysResult {
    let input = file(t, a.fd(0))?;
    let out = file(t, a.fd(2))?;
    if a.uint(5) != 0 {
        return Err(Errno::EINVAL);
    }
    if !input.readable() || !out.writable() || out.status_flags() & libc::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    for f in [&input, &out] {
        match f.kind() {
            FileKind::Regular => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
    }
    let in_off = offset_ptr(t, a.addr(1))?;
    let out_off = offset_ptr(t, a.addr(3))?;
    let count = a.len(4, MAX_RW)?;
    if splice::same_inode(&input, &out) {
        let from = in_off.unwrap_or_else(|| input.offset());
        let to = out_off.unwrap_or_else(|| out.offset());
        let len = count as u64;
        if from < to.saturating_add(len) && to < from.saturating_add(len) {
            return Err(Errno::EINVAL);
        }
    }
    let waits = splice::Waits {
        nonblock_pipes: false,
        after_progress: true,
    };
    do_transfer(
        t,
        &input,
        (a.addr(1), in_off),
        &out,
        (a.addr(3), out_off),
        count,
        true,
        waits,
    )
}

const SPLICE_FLAGS: u32 = 0xf; // MOVE | NONBLOCK | MORE | GIFT
const SPLICE_F_NONBLOCK: u32 = 2;

/// splice: moves bytes between a pipe and another file (or two pipes);
/// an offset is only for the side that is not a pipe.
pub fn splice(t: &mut Task, a: &Args) -> SysResult {
    let input = file(t, a.fd(0))?;
    let out = file(t, a.fd(2))?;
    let flags = a.uint(5);
    if flags & !SPLICE_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    if !input.readable() || !out.writable() {
        return Err(Errno::EBADF);
    }
    let in_pipe = splice::pipe_end(&input, true);
    let out_pipe = splice::pipe_end(&out, false);
    if in_pipe.is_none() && out_pipe.is_none() {
        return Err(Errno::EINVAL);
    }
    if let (Some(i), Some(o)) = (&in_pipe, &out_pipe) {
        if Arc::ptr_eq(i, o) {
            return Err(Errno::EINVAL);
        }
    }
    if (in_pipe.is_some() && a.addr(1) != 0) || (out_pipe.is_some() && a.addr(3) != 0) {
        return Err(Errno::ESPIPE);
    }
    let in_off = offset_ptr(t, a.addr(1))?;
    let out_off = offset_ptr(t, a.addr(3))?;
    if out_off.is_some() && out.status_flags() & libc::O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let count = a.len(4, MAX_RW)?;
    let waits = splice::Waits {
        nonblock_pipes: flags & SPLICE_F_NONBLOCK != 0,
        after_progress: false,
    };
    do_transfer(
        t,
        &input,
        (a.addr(1), in_off),
        &out,
        (a.addr(3), out_off),
        count,
        true,
        waits,
    )
}

/// vmsplice(2): user pages into a pipe (a write end: what fits once
/// there is room) or out of one (a read end: like readv). The bytes are
/// copied; SPLICE_F_GIFT is accepted and means nothing more. Any other
/// file is EBADF.
pub fn vmsplice(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    let flags = a.uint(3);
    if flags & !SPLICE_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let (pipe, _) = crate::vfs::pipe::pipe_of(&f).ok_or(Errno::EBADF)?;
    let to_pipe = f.writable();
    if !to_pipe && !f.readable() {
        return Err(Errno::EBADF);
    }
    let iovs = t.mm().read_iovecs(a.addr(1), a.raw(2))?;
    // Only SPLICE_F_NONBLOCK: Linux's vmsplice waits on an O_NONBLOCK end.
    let nonblock = flags & SPLICE_F_NONBLOCK != 0;
    let interrupt = t.interrupt().io.clone();
    let io = crate::vfs::IoCtx {
        interrupt: &interrupt,
        nonblock,
    };
    if to_pipe {
        let data = t.mm().copy_in_iovecs(&iovs, crate::vfs::pipe::PIPE_SIZE)?;
        let r = pipe.write_some(&io, &data);
        return raise_sigpipe(t, &f, r.map(|n| n as u64));
    }
    let total = iovs
        .iter()
        .map(|v| v.len)
        .fold(0u64, u64::saturating_add)
        .min(crate::vfs::pipe::PIPE_SIZE as u64) as usize;
    let mut buf = vec![0u8; total];
    let n = pipe.read_into(&io, &mut buf)?;
    t.mm().copy_out_iovecs(&iovs, &buf[..n]).map(|n| n as u64)
}

/// tee: copies bytes from one pipe into another, leaving them in the
/// first.
pub fn tee(t: &mut Task, a: &Args) -> SysResult {
    let input = file(t, a.fd(0))?;
    let out = file(t, a.fd(1))?;
    let flags = a.uint(3);
    if flags & !SPLICE_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let (Some(i), Some(o)) = (
        splice::pipe_end(&input, true),
        splice::pipe_end(&out, false),
    ) else {
        return Err(Errno::EINVAL);
    };
    if Arc::ptr_eq(&i, &o) {
        return Err(Errno::EINVAL);
    }
    let count = a.len(2, MAX_RW)?;
    let waits = splice::Waits {
        nonblock_pipes: flags & SPLICE_F_NONBLOCK != 0,
        after_progress: false,
    };
    do_transfer(t, &input, (0, None), &out, (0, None), count, false, waits)
}

fn do_fchmodat(t: &mut Task, dirfd: i32, path_addr: u64, mode: u32, flags: i32) -> SysResult {
    if flags & !libc::AT_SYMLINK_NOFOLLOW != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, path_addr)?;
    let start = start_dir(t, dirfd, &path)?;
    t.kernel().vfs.chmod_at(
        &start,
        &path,
        mode & 0o7777,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
    )?;
    Ok(0)
}

pub fn chmod(t: &mut Task, a: &Args) -> SysResult {
    do_fchmodat(t, libc::AT_FDCWD, a.addr(0), a.uint(1), 0)
}

pub fn fchmodat(t: &mut Task, a: &Args) -> SysResult {
    do_fchmodat(t, a.fd(0), a.addr(1), a.uint(2), 0)
}

pub fn fchmod(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    if f.dentry().is_some_and(|d| d.mount().read_only()) {
        return Err(Errno::EROFS);
    }
    crate::vfs::perm::chmod(f.inode().as_ref(), a.uint(1) & 0o7777)?;
    if let Some(d) = f.dentry() {
        crate::vfs::inotify::notify(d, crate::vfs::inotify::IN_ATTRIB);
    }
    Ok(0)
}

/// Changes the owner and group of `inode` (-1: unchanged) as the chown
/// family does (Linux's chown_ok and chgrp_ok): CAP_CHOWN may set either; the
/// file's owner may only set its group, to one of its own groups. A
/// regular file changing hands loses its set-user-ID bit, and its
/// set-group-ID bit if it is group-executable.
fn chown_inode(
    t: &Task,
    inode: &Arc<dyn crate::vfs::Inode>,
    read_only: bool,
    uid: u32,
    gid: u32,
) -> SysResult {
    if read_only {
        return Err(Errno::EROFS);
    }
    let uid = (uid != u32::MAX).then_some(uid);
    let gid = (gid != u32::MAX).then_some(gid);
    let st = inode.stat()?;
    let c = t.creds();
    if !c.capable(crate::kernel::creds::CAP_CHOWN) {
        let owner = c.euid == st.uid;
        let uid_ok = uid.is_none_or(|u| u == st.uid && owner);
        let gid_ok =
            gid.is_none_or(|g| owner && (g == st.gid || g == c.egid || c.groups.contains(&g)));
        if !uid_ok || !gid_ok {
            return Err(Errno::EPERM);
        }
    }
    inode.chown(uid, gid)?;
    let mode = st.mode & 0o7777;
    if st.mode & libc::S_IFMT == libc::S_IFREG && mode & 0o6000 != 0 {
        let mut cleared = mode & !0o4000;
        if mode & 0o010 != 0 {
            cleared &= !0o2000;
        }
        if cleared != mode {
            inode.chmod(cleared)?;
        }
    }
    Ok(0)
}

fn do_fchownat(
    t: &mut Task,
    dirfd: i32,
    path_addr: u64,
    uid: u32,
    gid: u32,
    flags: i32,
) -> SysResult {
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, path_addr)?;
    let d = resolve_at(
        t,
        dirfd,
        &path,
        flags,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
    )?;
    chown_inode(t, d.inode(), d.mount().read_only(), uid, gid)?;
    crate::vfs::inotify::notify(&d, crate::vfs::inotify::IN_ATTRIB);
    Ok(0)
}

pub fn chown(t: &mut Task, a: &Args) -> SysResult {
    do_fchownat(t, libc::AT_FDCWD, a.addr(0), a.uint(1), a.uint(2), 0)
}

pub fn lchown(t: &mut Task, a: &Args) -> SysResult {
    do_fchownat(
        t,
        libc::AT_FDCWD,
        a.addr(0),
        a.uint(1),
        a.uint(2),
        libc::AT_SYMLINK_NOFOLLOW,
    )
}

pub fn fchownat(t: &mut Task, a: &Args) -> SysResult {
    do_fchownat(t, a.fd(0), a.addr(1), a.uint(2), a.uint(3), a.int(4))
}

pub fn fchown(t: &mut Task, a: &Args) -> SysResult {
    let f = file(t, a.fd(0))?;
    if f.is_path() {
        return Err(Errno::EBADF);
    }
    let read_only = f.dentry().is_some_and(|d| d.mount().read_only());
    chown_inode(t, f.inode(), read_only, a.uint(1), a.uint(2))?;
    if let Some(d) = f.dentry() {
        crate::vfs::inotify::notify(d, crate::vfs::inotify::IN_ATTRIB);
    }
    Ok(0)
}

/// utimensat: `times` NULL means now for both; UTIME_NOW and UTIME_OMIT
/// per field; a NULL path names `dirfd` itself (futimens).
pub fn utimensat(t: &mut Task, a: &Args) -> SysResult {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    let (dirfd, path_addr, times_addr, flags) = (a.fd(0), a.addr(1), a.addr(2), a.int(3));
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let now = crate::vfs::Clock::now(&crate::vfs::HostClock);
    let mut explicit = false;
    let (atime, mtime) = if times_addr == 0 {
        (Some(now), Some(now))
    } else {
        let mut b = [0u8; 32];
        t.mm().copy_in(times_addr, &mut b)?;
        let field = |i: usize| -> Result<Option<crate::vfs::Timespec>, Errno> {
            let word = |j: usize| {
                b[j..j + 8]
                    .try_into()
                    .map(i64::from_le_bytes)
                    .map_err(|_| Errno::EFAULT)
            };
            let (sec, nsec) = (word(i * 16)?, word(i * 16 + 8)?);
            match nsec {
                UTIME_NOW => Ok(Some(now)),
                UTIME_OMIT => Ok(None),
                n if (0..1_000_000_000).contains(&n) => {
                    Ok(Some(crate::vfs::Timespec { sec, nsec: n }))
                }
                _ => Err(Errno::EINVAL),
            }
        };
        let given = |i: usize| {
            let nsec = i64::from_le_bytes(b[i * 16 + 8..i * 16 + 16].try_into().unwrap_or([0; 8]));
            nsec != UTIME_NOW && nsec != UTIME_OMIT
        };
        explicit = given(0) || given(1);
        (field(0)?, field(1)?)
    };
    let times = crate::vfs::perm::NewTimes {
        atime,
        mtime,
        explicit,
    };
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let path = if path_addr == 0 {
        Vec::new()
    } else {
        path_arg(t, path_addr)?
    };
    if path.is_empty() {
        if path_addr != 0 && flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let d = if dirfd == libc::AT_FDCWD {
            t.cwd()
        } else {
            file(t, dirfd)?.dentry().cloned().ok_or(Errno::EBADF)?
        };
        if d.mount().read_only() {
            return Err(Errno::EROFS);
        }
        crate::vfs::perm::set_times(d.inode().as_ref(), times)?;
        crate::vfs::inotify::notify(&d, crate::vfs::inotify::IN_ATTRIB);
        return Ok(0);
    }
    let start = start_dir(t, dirfd, &path)?;
    t.kernel().vfs.utimes_at(&start, &path, times, follow)?;
    Ok(0)
}

/// eventfd2: a counter file (EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC).
pub fn eventfd2(t: &mut Task, a: &Args) -> SysResult {
    let flags = a.int(1);
    let known = crate::vfs::eventfd::EFD_SEMAPHORE | libc::EFD_NONBLOCK | libc::EFD_CLOEXEC;
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    let f = crate::vfs::eventfd::EventFd::open(
        u64::from(a.uint(0)),
        flags & crate::vfs::eventfd::EFD_SEMAPHORE != 0,
        flags & libc::EFD_NONBLOCK != 0,
    );
    install(t, f, flags & libc::EFD_CLOEXEC != 0)
}

pub fn eventfd(t: &mut Task, a: &Args) -> SysResult {
    eventfd2(t, &Args([a.raw(0), 0, 0, 0, 0, 0]))
}

/// Every memfd_create(2) flag Linux knows (MFD_ALL_FLAGS but the hugetlb
/// page-size bits, which need MFD_HUGETLB).
const MFD_KNOWN: u32 = libc::MFD_CLOEXEC
    | libc::MFD_ALLOW_SEALING
    | libc::MFD_HUGETLB
    | libc::MFD_NOEXEC_SEAL
    | libc::MFD_EXEC;

/// memfd_create(2). The name is at most 249 bytes (MFD_NAME_MAX_LEN);
/// hugetlb pages are not offered (EINVAL, as gVisor).
pub fn memfd_create(t: &mut Task, a: &Args) -> SysResult {
    let flags = a.uint(1);
    if flags & !MFD_KNOWN != 0
        || flags & libc::MFD_HUGETLB != 0
        || flags & (libc::MFD_EXEC | libc::MFD_NOEXEC_SEAL)
            == libc::MFD_EXEC | libc::MFD_NOEXEC_SEAL
    {
        return Err(Errno::EINVAL);
    }
    let name = match t
        .mm()
        .read_c_string(a.addr(0), crate::vfs::vfs::MEMFD_NAME_MAX + 1)
    {
        Err(Errno::ENAMETOOLONG) => return Err(Errno::EINVAL),
        r => r?,
    };
    let noexec = flags & libc::MFD_NOEXEC_SEAL != 0;
    let seals = if noexec {
        crate::vfs::tmpfs::SEAL_EXEC
    } else if flags & libc::MFD_ALLOW_SEALING != 0 {
        0
    } else {
        crate::vfs::tmpfs::SEAL_SEAL
    };
    let f = t.kernel().vfs.memfd_create(&name, seals, !noexec)?;
    install(t, f, flags & libc::MFD_CLOEXEC != 0)
}

/// inotify_init1(2): IN_NONBLOCK and IN_CLOEXEC.
pub fn inotify_init1(t: &mut Task, a: &Args) -> SysResult {
    let flags = a.int(0);
    if flags & !(libc::IN_NONBLOCK | libc::IN_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let f = crate::vfs::inotify::Inotify::open(flags & libc::IN_NONBLOCK != 0);
    install(t, f, flags & libc::IN_CLOEXEC != 0)
}

pub fn inotify_init(t: &mut Task, _a: &Args) -> SysResult {
    let f = crate::vfs::inotify::Inotify::open(false);
    install(t, f, false)
}

/// The inotify instance `fd` names: EBADF for no file, EINVAL for
/// another kind.
fn inotify_file(t: &Task, fd: i32) -> Result<Arc<OpenFile>, Errno> {
    let f = file(t, fd)?;
    if crate::vfs::inotify::inotify_of(&f).is_none() {
        return Err(Errno::EINVAL);
    }
    Ok(f)
}

/// inotify_add_watch(2): the checks in Linux's order (the mask, the
/// descriptor, the path, read permission, IN_ONLYDIR).
pub fn inotify_add_watch(t: &mut Task, a: &Args) -> SysResult {
    use crate::vfs::inotify::{inotify_of, ALL_BITS, IN_DONT_FOLLOW, IN_MASK_ADD, IN_MASK_CREATE};
    let mask = a.uint(2);
    if mask & !ALL_BITS != 0 || mask == 0 || (mask & IN_MASK_ADD != 0 && mask & IN_MASK_CREATE != 0)
    {
        return Err(Errno::EINVAL);
    }
    let f = inotify_file(t, a.fd(0))?;
    let path = path_arg(t, a.addr(1))?;
    let start = start_dir(t, libc::AT_FDCWD, &path)?;
    let d = t
        .kernel()
        .vfs
        .resolve(&start, &path, mask & IN_DONT_FOLLOW == 0)?;
    crate::vfs::perm::check(d.inode().as_ref(), crate::vfs::perm::MAY_READ)?;
    let ino = inotify_of(&f).ok_or(Errno::EINVAL)?;
    ino.add_watch(&d, mask).map(|wd| wd as u64)
}

pub fn inotify_rm_watch(t: &mut Task, a: &Args) -> SysResult {
    let f = inotify_file(t, a.fd(0))?;
    let ino = crate::vfs::inotify::inotify_of(&f).ok_or(Errno::EINVAL)?;
    ino.rm_watch(a.int(1))?;
    Ok(0)
}
