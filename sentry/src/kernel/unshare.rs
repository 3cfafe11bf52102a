//! unshare(2) (Linux's ksys_unshare): a process stops sharing its
//! descriptor table or fs context with the processes it was cloned with.
//! What it cannot stop sharing (its threads, an address space or handlers
//! another process holds) is EINVAL, as in Linux. A mount namespace of
//! its own (CLONE_NEWNS) takes CAP_SYS_ADMIN; other namespaces are EPERM,
//! as for clone, since cryo makes none inside the sandbox.

use std::sync::{Arc, Mutex};

use super::clone::NAMESPACE_FLAGS;
use super::task::Task;
use crate::errno::Errno;

/// What unshare accepts; anything else is EINVAL.
const UNSHARE_FLAGS: u64 = (libc::CLONE_THREAD
    | libc::CLONE_FS
    | libc::CLONE_NEWNS
    | libc::CLONE_SIGHAND
    | libc::CLONE_VM
    | libc::CLONE_FILES
    | libc::CLONE_SYSVSEM
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWCGROUP
    | CLONE_NEWTIME) as u64;

/// Not in the libc crate's constants for every target.
const CLONE_NEWTIME: libc::c_int = 0x80;

fn has(flags: u64, f: libc::c_int) -> bool {
    flags & f as u64 != 0
}

impl Task {
    pub fn unshare(&mut self, flags: u64) -> Result<(), Errno> {
        if flags & !UNSHARE_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        // The implications Linux adds before it checks.
        let mut f = flags;
        if has(f, libc::CLONE_NEWUSER) {
            f |= (libc::CLONE_THREAD | libc::CLONE_FS) as u64;
        }
        if has(f, libc::CLONE_VM) {
            f |= libc::CLONE_SIGHAND as u64;
        }
        if has(f, libc::CLONE_SIGHAND) {
            f |= libc::CLONE_THREAD as u64;
        }
        if has(f, libc::CLONE_NEWNS) {
            f |= libc::CLONE_FS as u64;
        }
        // A process cannot leave its own threads, nor take a private copy
        // of handlers or memory that another process uses too: those
        // "unshares" succeed only when nothing is shared.
        if has(f, libc::CLONE_THREAD) && self.tg.live() > 1 {
            return Err(Errno::EINVAL);
        }
        if has(f, libc::CLONE_SIGHAND) && Arc::strong_count(self.tg.handlers_ref()) > 1 {
            return Err(Errno::EINVAL);
        }
        if has(f, libc::CLONE_VM) && self.aspace_shared() {
            return Err(Errno::EINVAL);
        }
        if f & NAMESPACE_FLAGS & !(libc::CLONE_NEWNS as u64) != 0 || has(f, CLONE_NEWTIME) {
            tracing::debug!(flags = format_args!("{f:#x}"), "unshare of namespaces");
            return Err(Errno::EPERM);
        }
        if has(f, libc::CLONE_NEWNS) && !self.creds().capable(super::creds::CAP_SYS_ADMIN) {
            return Err(Errno::EPERM);
        }
        if has(f, libc::CLONE_FS) {
            self.unshare_fs();
        }
        if has(f, libc::CLONE_NEWNS) {
            let fs = self.tg.fs_ref();
            let mut fs = super::thread_group::lock(&fs);
            fs.enter_copy_of_ns(&self.kernel.vfs);
            crate::vfs::mount_ns::note_current(&fs.mnt_ns);
            crate::vfs::resolve::note_root(&fs.root);
        }
        if has(f, libc::CLONE_FILES) {
            self.unshare_files();
        }
        // CLONE_SYSVSEM leaves the semaphore undo list, which a process
        // here never has: cryo has no System V semaphores.
        Ok(())
    }

    /// Gives the process its own copy of its descriptor table if another
    /// process shares it (CLONE_FILES), as Linux's unshare_fd: what it
    /// closes afterwards stays open for the others.
    pub fn unshare_files(&self) {
        let table = self.tg.fds_ref();
        // One reference is the group's, one is `table`: any other is a
        // sharer (or a passing reader, for which a copy is merely
        // unneeded).
        if Arc::strong_count(&table) <= 2 {
            return;
        }
        // Held while the group switches, so that no descriptor its other
        // threads install meanwhile lands in the table it leaves.
        let old = super::thread_group::lock(&table);
        self.tg.set_fds(Arc::new(Mutex::new(old.clone())));
    }

    /// The same for the fs context (CLONE_FS): a later chdir, chroot or
    /// umask is this process's alone.
    fn unshare_fs(&self) {
        let fs = self.tg.fs_ref();
        if Arc::strong_count(&fs) <= 2 {
            return;
        }
        let old = super::thread_group::lock(&fs);
        self.tg.set_fs(Arc::new(Mutex::new(old.clone())));
    }
}
