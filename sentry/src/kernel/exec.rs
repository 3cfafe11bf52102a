//! execve: replace a task's address space with a new program image.
//!
//! The init task of a sandbox is started the same way: a task with an empty
//! address space execs its command.

use super::thread_group::ProcessImage;
use std::sync::Arc;

use platform::{CpuState, Registers};

use super::creds::Credentials;
use super::task::Task;
use super::Kernel;
use crate::errno::Errno;
use crate::loader::{self, LoadError, LoadParams};
use crate::mm::{MappableFile, MemoryManager};
use crate::vfs::{Dentry, Vfs};

/// Why an exec failed, for the CLI's one-line errors at boot; a running
/// application sees only `errno()`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot create an address space: {0}")]
    AddressSpace(String),
}

impl ExecError {
    pub fn errno(&self) -> Errno {
        match self {
            ExecError::Load(e) => e.errno(),
            ExecError::AddressSpace(_) => Errno::ENOMEM,
        }
    }
}

/// Linux's MAX_ARG_STRINGS.
pub const MAX_ARG_STRINGS: usize = 0x7fff_ffff;

/// Opens an executable (or interpreter) for the loader: a regular file the
/// caller may execute, found with the caller's search permissions. The
/// kernel reads it whether or not the caller may (an execute-only binary
/// runs).
fn open_executable(
    vfs: &Vfs,
    cwd: &Arc<Dentry>,
    path: &str,
) -> Result<Arc<dyn MappableFile>, Errno> {
    let d = vfs.resolve(cwd, path.as_bytes(), true)?;
    let st = d.stat()?;
    // A file on a noexec mount never runs (Linux's path_noexec).
    if !st.is_regular() || d.mount().noexec() {
        return Err(Errno::EACCES);
    }
    crate::vfs::perm::check_stat(&st, crate::vfs::perm::MAY_EXEC)?;
    let f = crate::vfs::perm::as_creds(crate::vfs::perm::FsCreds::default(), || {
        vfs.finish_open(d, libc::O_RDONLY)
    })?;
    f.as_mappable().ok_or(Errno::EACCES)
}

/// A program loaded into a fresh address space, not yet anyone's.
pub struct Image {
    pub mm: MemoryManager,
    pub regs: Registers,
    pub path: String,
}

/// Loads `path` (resolved from `cwd`) into a new address space.
pub fn load_image(
    kernel: &Kernel,
    cwd: &Arc<Dentry>,
    creds: &Credentials,
    path: &str,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
) -> Result<Image, ExecError> {
    let aspace = kernel
        .platform
        .new_address_space()
        .map_err(|e| ExecError::AddressSpace(e.to_string()))?;
    let layout = *kernel.platform.layout();
    let mut mm = MemoryManager::new(layout, kernel.memory_file.clone(), aspace)
        .map_err(|e| ExecError::AddressSpace(e.to_string()))?;
    let mut random = [0u8; 16];
    crate::syscalls::fill_random(&mut random)
        .map_err(|e| ExecError::AddressSpace(e.to_string()))?;
    let mut params = LoadParams::new(random);
    params.uid = creds.uid;
    params.euid = creds.euid;
    params.gid = creds.gid;
    params.egid = creds.egid;
    // The auxv says what cpuid says.
    params.hwcap = kernel.cpu.hwcap();
    params.hwcap2 = kernel.cpu.hwcap2();
    let open = |p: &str| open_executable(&kernel.vfs, cwd, p);
    let image = loader::load(&mut mm, &open, path, argv, envp, &params)?;
    // /proc/self/exe is absolute (glibc's $ORIGIN asserts it).
    let exe = kernel
        .vfs
        .resolve(cwd, image.path.as_bytes(), true)
        .map(|d| kernel.vfs.dentry_path(&d))
        .unwrap_or(image.path);
    Ok(Image {
        mm,
        regs: Registers::new_user(image.entry, image.stack_pointer),
        path: exe,
    })
}

impl Task {
    /// execve: loads `path` (relative to `start`) and, only when that worked, makes it the task's
    /// program; a failed exec leaves the caller running. The process's
    /// other threads end first (the pid stays; a thread that was not the
    /// leader takes the leader's tid, as Linux's de_thread).
    pub fn exec_from(
        &mut self,
        start: &Arc<Dentry>,
        path: &str,
        argv: Vec<Vec<u8>>,
        envp: Vec<Vec<u8>>,
    ) -> Result<(), ExecError> {
        let kernel = self.kernel.clone();
        let image = load_image(
            &kernel,
            start,
            &self.creds,
            path,
            argv.clone(),
            envp.clone(),
        )?;
        if self.tg.live() > 1 && !self.end_other_threads() {
            // Killed while waiting: the new image is dropped unused.
            return Ok(());
        }
        // The old image's robust futexes die with it (Linux's exec_mm_release).
        self.release_robust_list();
        // The old address space stays with a vfork parent sharing it, minus
        // this task's platform thread.
        if self.aspace_shared() {
            if let Err(e) = self.aspace.exit_thread() {
                tracing::warn!(tid = self.tid, error = %e, "stub thread did not leave the shared address space");
            }
        }
        self.aspace = image.mm.address_space_arc();
        let mm = Arc::new(std::sync::Mutex::new(image.mm));
        self.mm = mm.clone();
        self.tg.set_mm(mm);
        self.limits().apply_to_mm(&mut self.mm());
        self.cpu = CpuState { regs: image.regs };
        let closed = self.fds().lock().remove_cloexec();
        closed
            .iter()
            .for_each(|f| crate::vfs::lock::closed_by(&kernel.file_locks, self.tgid(), f));
        self.handlers().reset_for_exec();
        // POSIX timers do not survive exec (interval timers do).
        self.tg.itimers().posix_delete_all();
        self.alt_stack = (0, 0, 0);
        self.clear_child_tid = 0;
        self.robust_list = (0, 0);
        // The name is the file execve was given (a symlink's own name, a
        // script's), not what it resolved to: Linux's bprm->filename.
        self.tg.attrs().exec(path);
        kernel
            .proc_log()
            .exec(self.tgid(), &image.path, &argv, &envp);
        *self.tg.image() = ProcessImage {
            exe: image.path,
            argv,
        };
        self.restart_deadline = None;
        // The new program's capabilities (a file without capabilities or
        // a set-user-ID bit: cryo gives neither).
        let nnp = self
            .tg
            .attrs()
            .with_thread(self.tid, |x| x.no_new_privs)
            .unwrap_or(false);
        let mut creds = self.creds.clone();
        creds.exec_transform(nnp);
        self.set_creds(creds);
        self.tg.exec_done();
        Ok(())
    }

    /// Linux's de_thread: every other thread of the process ends; if this
    /// one was not the leader it becomes tid == tgid. False when the
    /// process was killed meanwhile.
    fn end_other_threads(&mut self) -> bool {
        self.tg.begin_exec(self.tid);
        loop {
            if self.tg.live() <= 1 {
                break;
            }
            if self.tg.exit_status().is_some() {
                self.tg.end_exec();
                return false;
            }
            // Woken at each thread's end; the timeout only bounds a wait
            // for a group whose end another path decides.
            self.tg
                .wait_until_sole_task(std::time::Duration::from_millis(10));
        }
        self.tg.end_exec();
        let tgid = self.tgid();
        if self.tid != tgid {
            self.kernel.pids.remove_task(self.tid);
            self.tg.rekey(self.tid, tgid, self.member());
            self.kernel.pids.add_task(tgid, &self.tg);
            self.tid = tgid;
        }
        true
    }
}
