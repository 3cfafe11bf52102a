//! mount(2), umount2(2), chroot(2) and pivot_root(2) (Linux's
//! fs/namespace.c and fs/open.c), over the mount tree of the caller's
//! namespace in vfs/mount_tree.rs. A namespace's copy (vfs/mount_ns.rs)
//! has no peers, so the propagation flags (MS_SHARED, MS_PRIVATE,
//! MS_SLAVE, MS_UNBINDABLE) are checked and accepted with nothing to
//! propagate to.

use std::sync::Arc;

use super::{Args, SysResult};
use crate::errno::Errno;
use crate::kernel::creds::{CAP_SYS_ADMIN, CAP_SYS_CHROOT};
use crate::kernel::Task;
use crate::vfs::dentry::{Dentry, MOUNT_FLAG_MASK};
use crate::vfs::mount_tree::{NewFs, MNT_DETACH, MNT_EXPIRE, MNT_FORCE, UMOUNT_NOFOLLOW};
use crate::vfs::resolve::PATH_MAX;
use crate::vfs::tmpfs::TmpfsOptions;

const MS_MGC_MSK: u64 = 0xffff_0000;
const MS_MGC_VAL: u64 = 0xc0ed_0000;
const PROPAGATION: u64 = libc::MS_SHARED | libc::MS_PRIVATE | libc::MS_SLAVE | libc::MS_UNBINDABLE;
/// Every flag this mount(2) knows; any other is EINVAL.
const KNOWN: u64 = MOUNT_FLAG_MASK
    | PROPAGATION
    | (libc::MS_REMOUNT
        | libc::MS_BIND
        | libc::MS_MOVE
        | libc::MS_REC
        | libc::MS_SILENT
        | libc::MS_SYNCHRONOUS
        | libc::MS_DIRSYNC
        | libc::MS_MANDLOCK
        | libc::MS_LAZYTIME);

fn path_arg(t: &Task, addr: u64) -> Result<Vec<u8>, Errno> {
    t.mm().read_c_string(addr, PATH_MAX)
}

/// A path resolved from the caller's cwd (or root), the last component
/// followed unless `nofollow`, then down to the topmost mount on it
/// (Linux's LOOKUP_MOUNTPOINT / lock_mount: mount(2) stacks on it,
/// umount2(2) takes it off).
fn lookup(t: &Task, path: &[u8], nofollow: bool) -> Result<Arc<Dentry>, Errno> {
    let mut d = t.kernel().vfs.resolve(&t.cwd(), path, !nofollow)?;
    while let Some(r) = d.mounted() {
        d = r;
    }
    Ok(d)
}

fn require(t: &Task, cap: u32) -> Result<(), Errno> {
    if t.creds().capable(cap) {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// mount(2). The target is looked up before the capability is checked,
/// as Linux does (a missing target is ENOENT even without it).
pub fn mount(t: &mut Task, a: &Args) -> SysResult {
    let (source, target, fstype, data) = (a.addr(0), a.addr(1), a.addr(2), a.addr(4));
    let mut flags = a.raw(3);
    if flags & MS_MGC_MSK == MS_MGC_VAL {
        flags &= !MS_MGC_MSK;
    }
    let target = path_arg(t, target)?;
    let at = lookup(t, &target, false)?;
    if flags & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    require(t, CAP_SYS_ADMIN)?;
    let kernel = t.kernel().clone();
    let vfs = &kernel.vfs;
    let mnt_flags = flags & MOUNT_FLAG_MASK;
    let is = |f: libc::c_ulong| flags & f != 0;
    if is(libc::MS_REMOUNT) {
        if vfs.entry_of(&at).is_none() {
            return Err(Errno::EINVAL);
        }
        if !is(libc::MS_BIND) && data != 0 {
            let data = t.mm().read_c_string(data, 4096)?;
            check_remount_data(at.mount().fs_type, &data)?;
        }
        return vfs.remount(&at, mnt_flags).map(|()| 0);
    }
    if is(libc::MS_BIND) {
        let source = path_arg(t, source)?;
        let src = t.kernel().vfs.resolve(&t.cwd(), &source, true)?;
        return vfs
            .bind_mount(&src, &at, is(libc::MS_REC), mnt_flags)
            .map(|()| 0);
    }
    if flags & PROPAGATION != 0 {
        // Exactly one type; on a mount's root.
        if (flags & PROPAGATION).count_ones() != 1 {
            return Err(Errno::EINVAL);
        }
        return vfs.entry_of(&at).map(|_| 0).ok_or(Errno::EINVAL);
    }
    if is(libc::MS_MOVE) {
        let source = path_arg(t, source)?;
        let src = lookup(t, &source, false)?;
        return vfs.move_mount(&src, &at).map(|()| 0);
    }
    let fstype = t.mm().read_c_string(fstype, 4096)?;
    let data = if data == 0 {
        Vec::new()
    } else {
        t.mm().read_c_string(data, 4096)?
    };
    let fs = match fstype.as_slice() {
        b"tmpfs" => tmpfs_options(t, &data)?,
        b"proc" => {
            if !data.is_empty() {
                return Err(Errno::EINVAL);
            }
            NewFs::Proc
        }
        b"sysfs" => NewFs::Sysfs,
        // A new devpts instance is not implemented (the boot one serves
        // /dev/pts).
        b"devpts" => return Err(Errno::ENOSYS),
        _ => return Err(Errno::ENODEV),
    };
    if !at.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    vfs.mount_new(&at, fs, mnt_flags).map(|()| 0)
}

/// A new tmpfs's options as Linux's shmem_parse_one reads them: its limits
/// (Linux's defaults for this sandbox's memory where none is given), and
/// its root's mode (01777 unless told) and owner (the caller unless told).
fn tmpfs_options(t: &Task, data: &[u8]) -> Result<NewFs, Errno> {
    let data = std::str::from_utf8(data).map_err(|_| Errno::EINVAL)?;
    let o = TmpfsOptions::parse(data)?;
    let mem = crate::vfs::tmpfs::sandbox_memory_bytes(&t.kernel().memory_file);
    Ok(NewFs::Tmpfs {
        mode: o.mode.unwrap_or(0o1777),
        uid: o.uid.unwrap_or(t.creds().euid),
        gid: o.gid.unwrap_or(t.creds().egid),
        limits: o.limits(mem),
    })
}

/// A remount's data: tmpfs's mode/uid/gid are accepted and, as on Linux,
/// not changed by a remount; changing a tmpfs's limits by remount is not
/// implemented (ENOSYS); anything else is refused.
fn check_remount_data(fs_type: &str, data: &[u8]) -> Result<(), Errno> {
    match fs_type {
        "tmpfs" => {
            let data = std::str::from_utf8(data).map_err(|_| Errno::EINVAL)?;
            let o = TmpfsOptions::parse(data)?;
            if o.size.is_some() || o.nr_blocks.is_some() || o.nr_inodes.is_some() {
                return Err(Errno::ENOSYS);
            }
            Ok(())
        }
        _ if data.is_empty() => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// Whether `d` is the root or cwd of some process (what makes a mount
/// busy besides its open files).
fn pinned_by_a_task(t: &Task) -> impl Fn(&Arc<Dentry>) -> bool {
    let groups = t.kernel().pids.thread_groups();
    move |d| {
        groups.iter().any(|tg| {
            let fs = tg.fs();
            let fs = fs.lock();
            Arc::ptr_eq(&fs.root, d) || Arc::ptr_eq(&fs.cwd, d)
        })
    }
}

/// umount2(2).
pub fn umount2(t: &mut Task, a: &Args) -> SysResult {
    let flags = a.int(1);
    if flags & !(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(t, a.addr(0))?;
    let target = lookup(t, &path, flags & UMOUNT_NOFOLLOW != 0)?;
    require(t, CAP_SYS_ADMIN)?;
    let kernel = t.kernel().clone();
    let vfs = &kernel.vfs;
    if vfs.entry_of(&target).is_none() {
        return Err(Errno::EINVAL);
    }
    if flags & MNT_EXPIRE != 0 {
        if flags & (MNT_FORCE | MNT_DETACH) != 0 {
            return Err(Errno::EINVAL);
        }
        // Expiry marks (a first call's EAGAIN) are not kept.
        return Err(Errno::ENOSYS);
    }
    if Arc::ptr_eq(&target, &t.root()) && flags & MNT_DETACH == 0 {
        return Err(Errno::EBUSY);
    }
    let pinned = pinned_by_a_task(t);
    // MNT_FORCE only aborts pending requests of a network file system;
    // none of cryo's has any, so it unmounts as without it.
    vfs.umount(&target, flags, &pinned).map(|()| 0)
}

/// chroot(2): the directory, then search permission on it, then
/// CAP_SYS_CHROOT, in Linux's order.
pub fn chroot(t: &mut Task, a: &Args) -> SysResult {
    let path = path_arg(t, a.addr(0))?;
    let d = t.kernel().vfs.lookup_dir(&t.cwd(), &path)?;
    require(t, CAP_SYS_CHROOT)?;
    t.set_root(d);
    Ok(0)
}

/// pivot_root(2): CAP_SYS_ADMIN first, then both paths (directories),
/// then Linux's checks (vfs/mount_tree.rs). Every process whose root or
/// cwd was the old root moves to the new one (chroot_fs_refs).
pub fn pivot_root(t: &mut Task, a: &Args) -> SysResult {
    require(t, CAP_SYS_ADMIN)?;
    let new_path = path_arg(t, a.addr(0))?;
    let old_path = path_arg(t, a.addr(1))?;
    let kernel = t.kernel().clone();
    let vfs = &kernel.vfs;
    let new_root = vfs.lookup_dir(&t.cwd(), &new_path)?;
    let put_old = vfs.lookup_dir(&t.cwd(), &old_path)?;
    let old_root = t.root();
    vfs.pivot_root(&old_root, &new_root, &put_old)?;
    for tg in t.kernel().pids.thread_groups() {
        let fs = tg.fs();
        let mut fs = fs.lock();
        if Arc::ptr_eq(&fs.root, &old_root) {
            fs.root = new_root.clone();
        }
        if Arc::ptr_eq(&fs.cwd, &old_root) {
            fs.cwd = new_root.clone();
        }
    }
    crate::vfs::resolve::note_root(&t.root());
    Ok(0)
}
