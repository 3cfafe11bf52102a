//! Confined host file operations: every open goes through `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS`, so no
//! path the gofer opens can leave the directory it starts from, follow a
//! symlink, or follow a /proc magic link.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::protocol::{DirEntry, FileStat, FileType, MAX_DIR_ENTRIES, MAX_NAME, MAX_PATH};

/// The resolution every open uses.
const RESOLVE: u64 =
    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS;

/// Flags every open gets: never follow the last component either, never
/// leak into a child.
const ALWAYS: libc::c_int = libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The kernel's `struct open_how` (libc's is `non_exhaustive`, so it cannot
/// be built without `unsafe`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(dir, path, flags | ALWAYS, RESOLVE)`, retried on the `EAGAIN`
/// the kernel gives when a rename raced the lookup.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
) -> Result<OwnedFd, Errno> {
    openat2_mode(dir, path, flags, 0)
}

/// [`openat2`] with the permission bits of a file `O_CREAT` makes.
pub(crate) fn openat2_mode(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> Result<OwnedFd, Errno> {
    let mut flags = flags | ALWAYS;
    // Never take a controlling terminal; openat2 refuses O_NOCTTY (like any
    // flag but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC) alongside O_PATH.
    if flags & libc::O_PATH == 0 {
        flags |= libc::O_NOCTTY;
    }
    let how = OpenHow {
        // `flags` holds only non-negative O_* bits.
        flags: flags as u32 as u64,
        mode: u64::from(mode & 0o7777),
        resolve: RESOLVE,
    };
    for _ in 0..16 {
        // SAFETY: `path` is a valid NUL-terminated string and `how` a valid
        // open_how whose size we pass; both outlive the call. The kernel does
        // not keep either pointer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            let fd = libc::c_int::try_from(ret).map_err(|_| Errno::EBADF)?;
            // SAFETY: openat2 returned a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if is_host_kernel_fs(fd.as_fd())? {
                return Err(Errno::ENOENT);
            }
            return Ok(fd);
        }
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => continue,
            e => return Err(e),
        }
    }
    Err(Errno::EAGAIN)
}

/// The host kernel's own file systems (procfs, sysfs and the like, by
/// their statfs magic): the sandbox has its own /proc and /sys, and the
/// host's show its processes, its kernel and its devices. Served through
/// the host root of `cryo do` they would appear wherever the application
/// unmounts the Sentry's, so no file on them is ever opened: they read as
/// absent, an empty mount point, as natively once unmounted.
const HOST_KERNEL_FS: [i64; 16] = [
    0x9fa0,      // PROC_SUPER_MAGIC
    0x6265_6572, // SYSFS_MAGIC
    0x6462_6720, // DEBUGFS_MAGIC
    0x7472_6163, // TRACEFS_MAGIC
    0x7363_6673, // SECURITYFS_MAGIC
    0xcafe_4a11, // BPF_FS_MAGIC
    0x0027_e0eb, // CGROUP_SUPER_MAGIC
    0x6367_7270, // CGROUP2_SUPER_MAGIC
    0x6265_6570, // CONFIGFS_MAGIC
    0x6165_676c, // PSTOREFS_MAGIC
    0xde5e_81e4, // EFIVARFS_MAGIC
    0x1cd1,      // DEVPTS_SUPER_MAGIC
    0x1980_0202, // MQUEUE_MAGIC
    0x6573_5543, // FUSE_CTL_SUPER_MAGIC
    0x4249_4e4d, // BINFMTFS_MAGIC
    0x6e73_6673, // NSFS_MAGIC
];

fn is_host_kernel_fs(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let st = nix::sys::statfs::fstatfs(fd)?;
    #[allow(clippy::unnecessary_cast)]
    let magic = st.filesystem_type().0 as i64;
    Ok(HOST_KERNEL_FS.contains(&magic))
}

/// `fstat` of any fd, `O_PATH` ones included (for an `O_PATH` fd of a
/// symlink this is the link's own stat).
// `st_nlink` and `st_blksize` are u64/i64 on x86_64 but u32/i32 on aarch64.
#[allow(clippy::useless_conversion)]
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<FileStat, Errno> {
    Ok(from_stat(&nix::sys::stat::fstat(fd.as_raw_fd())?))
}

#[allow(clippy::useless_conversion)]
fn from_stat(st: &libc::stat) -> FileStat {
    FileStat {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        nlink: u64::from(st.st_nlink),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size,
        blksize: i64::from(st.st_blksize),
        blocks: st.st_blocks,
        atime_sec: st.st_atime,
        atime_nsec: st.st_atime_nsec,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        ctime_sec: st.st_ctime,
        ctime_nsec: st.st_ctime_nsec,
    }
}

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`: the mode of the file the fd
/// (an `O_PATH` one included) holds, with no name to swap a symlink in.
/// `ENOSYS` before Linux 6.6.
pub(crate) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    // The x86_64 and generic number of fchmodat2 (Linux 6.6).
    const SYS_FCHMODAT2: libc::c_long = 452;
    // SAFETY: the path is a valid empty C string that outlives the call; the
    // other arguments are plain integers.
    let ret = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::c_uint::from(mode as u16 & 0o7777),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH)`: the owner of the file the
/// fd holds (a symlink's own, for an `O_PATH` fd of one); `None` keeps one.
pub(crate) fn chown_fd(
    fd: BorrowedFd<'_>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), Errno> {
    // SAFETY: the path is a valid empty C string that outlives the call.
    let ret = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid.unwrap_or(u32::MAX),
            gid.unwrap_or(u32::MAX),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// `utimensat(fd, "", times, AT_EMPTY_PATH)`: the times of the file the fd
/// holds; `None` leaves one as it is (`UTIME_OMIT`).
pub(crate) fn set_times_fd(
    fd: BorrowedFd<'_>,
    atime: Option<(i64, i64)>,
    mtime: Option<(i64, i64)>,
) -> Result<(), Errno> {
    let ts = |t: Option<(i64, i64)>| -> Result<libc::timespec, Errno> {
        Ok(match t {
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            Some((sec, nsec)) => {
                if !(0..1_000_000_000).contains(&nsec) {
                    return Err(Errno::EINVAL);
                }
                libc::timespec {
                    tv_sec: sec,
                    tv_nsec: nsec,
                }
            }
        })
    };
    let times = [ts(atime)?, ts(mtime)?];
    // SAFETY: the path is a valid empty C string and `times` two valid
    // timespecs; both outlive the call, which keeps neither pointer.
    let ret = unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::result(ret).map(drop)
}

/// Checks one walk name and makes it a C string. Only plain single
/// components pass: `..` is resolved by the Sentry, `.` is pointless, and a
/// `/` would make it a path.
pub(crate) fn component(name: &[u8]) -> Result<CString, Errno> {
    if name.len() > MAX_NAME {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    CString::new(name).map_err(|_| Errno::EINVAL)
}

/// Checks a symlink's text: not empty, at most a path long, no NUL. Its
/// text is never followed by the gofer, whatever it says.
pub(crate) fn link_target(target: &[u8]) -> Result<CString, Errno> {
    if target.len() > MAX_PATH {
        return Err(Errno::ENAMETOOLONG);
    }
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    CString::new(target).map_err(|_| Errno::EINVAL)
}

/// Checks a relative path for `WalkOpen`: no `..`, not absolute, no NUL.
/// Empty and `.` components are dropped, as path resolution would.
pub(crate) fn relative_path(path: &[u8]) -> Result<CString, Errno> {
    if path.len() > MAX_PATH {
        return Err(Errno::ENAMETOOLONG);
    }
    if path.first() == Some(&b'/') {
        return Err(Errno::EINVAL);
    }
    let mut parts = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Errno::EINVAL),
            c if c.len() > MAX_NAME => return Err(Errno::ENAMETOOLONG),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(c".".to_owned());
    }
    CString::new(parts.join(&b'/')).map_err(|_| Errno::EINVAL)
}

/// Opens `path` below `dir` for I/O, and checks that it is the file
/// `(dev, ino)` that the caller looked at: a rename between the look and the
/// open gives `ESTALE` instead of some other file.
///
/// The open is non-blocking so that a FIFO swapped in meanwhile cannot stall
/// the gofer; the flag is cleared again once the file is known.
pub(crate) fn open_verified(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    dev: u64,
    ino: u64,
) -> Result<OwnedFd, Errno> {
    let fd = openat2(dir, path, flags | libc::O_NONBLOCK)?;
    let st = fstat(fd.as_fd())?;
    if st.dev != dev || st.ino != ino {
        return Err(Errno::ESTALE);
    }
    let fl = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(fl & !OFlag::O_NONBLOCK))?;
    Ok(fd)
}

/// Whether the gofer hands out fds for files of this type. Only regular
/// files and directories: a device or FIFO of the host is no business of the
/// sandbox (the Sentry has its own /dev), and opening one can have effects.
pub(crate) fn openable(t: FileType) -> Result<(), Errno> {
    match t {
        FileType::Regular | FileType::Directory => Ok(()),
        FileType::Symlink => Err(Errno::ELOOP),
        FileType::Socket => Err(Errno::ENXIO),
        _ => Err(Errno::EPERM),
    }
}

/// Lists an open directory, without `.` and `..`; with `stats`, each entry
/// with its own stat (`fstatat` of the single name, never following it, so
/// nothing outside the directory is looked at).
pub(crate) fn read_dir(dir: OwnedFd, stats: bool) -> Result<Vec<DirEntry>, Errno> {
    let mut d = nix::dir::Dir::from(dir)?;
    let dirfd = d.as_raw_fd();
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if out.len() >= MAX_DIR_ENTRIES {
            return Err(Errno::EOVERFLOW);
        }
        let file_type = match e.file_type() {
            Some(nix::dir::Type::File) => FileType::Regular,
            Some(nix::dir::Type::Directory) => FileType::Directory,
            Some(nix::dir::Type::Symlink) => FileType::Symlink,
            Some(nix::dir::Type::CharacterDevice) => FileType::CharDevice,
            Some(nix::dir::Type::BlockDevice) => FileType::BlockDevice,
            Some(nix::dir::Type::Fifo) => FileType::Fifo,
            Some(nix::dir::Type::Socket) => FileType::Socket,
            None => FileType::Unknown,
        };
        // An entry removed meanwhile (or unreadable) is listed without one:
        // the Sentry walks to it if it needs it.
        let stat = if stats {
            nix::sys::stat::fstatat(
                Some(dirfd),
                e.file_name(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ok()
            .map(|st| from_stat(&st))
        } else {
            None
        };
        out.push(DirEntry {
            name: name.to_vec(),
            ino: e.ino(),
            file_type,
            stat,
        });
    }
    Ok(out)
}

/// Reads the target of a symlink held as an `O_PATH | O_NOFOLLOW` fd.
pub(crate) fn read_link(link: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    // An empty path names the fd itself (readlinkat allows this since 2.6.39).
    let target = nix::fcntl::readlinkat(Some(link.as_raw_fd()), "")?;
    let target = target.into_vec();
    if target.len() > MAX_PATH {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert!(component(b"a").is_ok());
        assert!(component(&[0xff, b'x']).is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert_eq!(component(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(component(&[b'a'; 256]), Err(Errno::ENAMETOOLONG));
        assert!(component(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path(b"a//b/./c/").unwrap().as_bytes(), b"a/b/c");
        assert_eq!(relative_path(b"").unwrap().as_bytes(), b".");
        assert_eq!(relative_path(b"/etc"), Err(Errno::EINVAL));
        assert_eq!(relative_path(b"a/../b"), Err(Errno::EINVAL));
        assert_eq!(relative_path(b"a\0"), Err(Errno::EINVAL));
        assert_eq!(relative_path(&[b'a'; 5000]), Err(Errno::ENAMETOOLONG));
    }
}
