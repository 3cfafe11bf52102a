//! Booting a sandbox: the memory file, the platform, the gofer-backed file
//! system, the kernel and its init task.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use platform::{CpuState, Layout, PlatformError};

use crate::errno::Errno;
use crate::kernel::creds::Credentials;
use crate::kernel::exec::{load_image, ExecError};
use crate::kernel::fd_table::FdTable;
use crate::kernel::limits::LimitSet;
use crate::kernel::proc::ProcTable;
use crate::kernel::run::RunError;
use crate::kernel::task::FsContext;
use crate::kernel::thread_group::{ProcessImage, ProcessLinks, ProcessParts, ThreadGroup};
use crate::kernel::time::Clocks;
use crate::kernel::{Kernel, KernelConfig, Task};
use crate::mm::MemoryFile;
use crate::vfs::state::VfsState;
use crate::vfs::{self, Dentry, HostClock, Vfs};

/// What `cryo do` asks of a sandbox.
#[derive(Clone, Debug)]
pub struct DoConfig {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    pub strace: bool,
    /// The platform's name (`--platform`).
    pub platform: String,
    /// The CPU features the sandbox sees (`--cpu-features`: `host` or an
    /// x86-64 level, see [`crate::arch::cpuid::Profile`]).
    pub cpu_features: String,
    /// `--memory`: the sandbox's memory limit in bytes.
    pub memory_limit: Option<u64>,
}

/// What an OCI container's config.json adds to a `cryo do` sandbox (the
/// default is `cryo do`'s: the caller's ids, Linux's default limits).
#[derive(Default)]
pub struct ContainerSetup {
    /// process.user; None: the caller's ids.
    pub creds: Option<Credentials>,
    /// process.rlimits, as (RLIMIT_*, limit).
    pub limits: Vec<(u32, crate::kernel::limits::Limit)>,
    /// process.noNewPrivileges.
    pub no_new_privs: bool,
    /// linux.resources.pids.limit: the most tasks the sandbox holds
    /// (None: the default).
    pub max_tasks: Option<usize>,
    /// linux.resources.memory.limit in bytes (None: the DoConfig's).
    pub memory_limit: Option<u64>,
    /// root.readonly and the mounts.
    pub namespace: vfs::namespace::NamespaceSetup,
}

/// Why a sandbox could not boot or run. Each names its cause in one line.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("this host cannot run cryo: {0}")]
    Host(PlatformError),
    #[error("cannot create the memory file: {0}")]
    MemoryFile(Errno),
    #[error("cannot set up the sandbox's file system: {0}")]
    Vfs(String),
    #[error("--cwd {path}: {errno}")]
    Cwd { path: String, errno: Errno },
    #[error("{0}: command not found")]
    CommandNotFound(String),
    #[error("no command given")]
    NoCommand,
    /// The loader's errors already name the path.
    #[error("{error}")]
    Exec { path: String, error: ExecError },
    #[error("cannot attach stdio: {0}")]
    Stdio(Errno),
    /// An unknown platform name; the error lists the known ones.
    #[error("{0}")]
    Platform(PlatformError),
    #[error("sandbox failed: {0}")]
    Run(#[from] RunError),
    #[error("process.rlimits: {0}")]
    Limit(String),
    /// A CPU feature profile this host cannot give.
    #[error("{0}")]
    Cpu(#[from] crate::arch::cpuid::CpuError),
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `cmd` like execvp: as given if it has a slash, else in PATH, inside
/// the sandbox's own file system.
fn find_command(
    vfs: &Vfs,
    cwd: &Arc<Dentry>,
    cmd: &str,
    env: &[String],
) -> Result<String, BootError> {
    if cmd.contains('/') {
        return Ok(cmd.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{cmd}");
        if let Ok(st) = vfs.stat_at(cwd, candidate.as_bytes(), true) {
            if st.is_regular() && st.mode & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(BootError::CommandNotFound(cmd.to_string()))
}

/// The host's stdio, donated to the sandbox as its stdio 0, 1 and 2 (by
/// index). A closed host fd stays closed in the sandbox.
pub(crate) fn donated_stdio() -> Result<Vec<(u32, Arc<vfs::OpenFile>)>, BootError> {
    use std::os::fd::AsFd;
    let host = [
        (
            0,
            libc::O_RDONLY,
            std::io::stdin().as_fd().try_clone_to_owned(),
        ),
        (
            1,
            libc::O_WRONLY,
            std::io::stdout().as_fd().try_clone_to_owned(),
        ),
        (
            2,
            libc::O_WRONLY,
            std::io::stderr().as_fd().try_clone_to_owned(),
        ),
    ];
    let mut files = Vec::new();
    for (index, flags, dup) in host {
        let Ok(owned) = dup else { continue };
        files.push((
            index,
            vfs::donated::open_donated_fd(owned, index, flags).map_err(BootError::Stdio)?,
        ));
    }
    Ok(files)
}

/// The host resources of a sandbox: its layout, memory file and platform.
pub(crate) struct HostResources {
    pub layout: Layout,
    pub memory_file: Arc<MemoryFile>,
}

pub(crate) fn host_resources() -> Result<HostResources, BootError> {
    let layout = Layout::probe().map_err(BootError::Host)?;
    let memory_file = Arc::new(
        MemoryFile::new(MemoryFile::capacity_for_va_bits(layout.va_bits))
            .map_err(BootError::MemoryFile)?,
    );
    Ok(HostResources {
        layout,
        memory_file,
    })
}

/// The CPU a new sandbox sees under `profile`, refused when this host's
/// CPU lacks what the profile needs or cannot intercept cpuid; the stubs
/// fault on cpuid from now on when it is emulated.
fn boot_cpu(profile: &str) -> Result<crate::arch::cpuid::CpuFeatures, BootError> {
    use crate::arch::cpuid::{CpuFeatures, Profile};
    let cpu = CpuFeatures::for_profile(Profile::parse(profile)?)?;
    cpu.require_faulting()?;
    platform::set_cpuid_faulting(cpu.emulated);
    Ok(cpu)
}

/// Creates the kernel over `host`: the platform `config` names and the VFS
/// served by the gofer (from a saved upper layer on restore) with a
/// container's mounts.
pub(crate) fn new_kernel_with(
    host: &HostResources,
    gofer_sock: OwnedFd,
    vfs_state: Option<&VfsState>,
    clocks: Clocks,
    config: &KernelConfig,
    namespace: vfs::namespace::NamespaceSetup,
) -> Result<Arc<Kernel>, BootError> {
    let platform =
        platform::by_name(&config.platform, host.memory_file.fd()).map_err(|e| match e {
            PlatformError::UnknownPlatform { .. } => BootError::Platform(e),
            e => BootError::Host(e),
        })?;
    let procs = ProcTable::new();
    let gofer_fs = Arc::new(vfs::gofer_fs::GoferHostFs::new(gofer::Client::new(
        gofer_sock,
    )));
    // Before the namespace: its tmpfs limits default to half of the
    // sandbox's memory, which the limit is.
    host.memory_file.set_limit(config.memory_limit);
    let vfs = vfs::namespace::build_with_setup(
        gofer_fs,
        Arc::new(HostClock),
        procs.clone(),
        host.memory_file.clone(),
        vfs_state,
        namespace,
    )
    .map_err(|e| BootError::Vfs(e.to_string()))?;
    let kernel = Arc::new(Kernel::new(
        platform,
        host.memory_file.clone(),
        Arc::new(vfs),
        clocks,
        procs.clone(),
        config,
    ));
    procs.set_kernel(&kernel);
    kernel.watch_memory_limit();
    Ok(kernel)
}

impl BootError {
    /// The exit status shells and runc give a command that cannot be
    /// started: 127 when it does not exist, 126 when it is not executable
    /// (no execute bit, neither ELF nor `#!`); None for cryo's own errors.
    pub fn command_status(&self) -> Option<u8> {
        let BootError::Exec { error, .. } = self else {
            return None;
        };
        match error.errno() {
            Errno::ENOENT | Errno::ENOTDIR => Some(127),
            Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::ELOOP => Some(126),
            _ => None,
        }
    }
}

/// Boots a `cryo do` sandbox and returns its init task, ready to run.
pub fn boot_do(config: &DoConfig, gofer_sock: OwnedFd) -> Result<Task, BootError> {
    boot_container(config, ContainerSetup::default(), gofer_sock)
}

/// Boots a sandbox with a container's additions and returns its init
/// task, ready to run (an OCI `create`: `start` runs it).
pub fn boot_container(
    config: &DoConfig,
    setup: ContainerSetup,
    gofer_sock: OwnedFd,
) -> Result<Task, BootError> {
    let cpu = boot_cpu(&config.cpu_features)?;
    let host = host_resources()?;
    let kconfig = KernelConfig {
        hostname: config.hostname.clone(),
        strace: config.strace,
        platform: config.platform.clone(),
        max_tasks: setup.max_tasks.unwrap_or(crate::kernel::DEFAULT_MAX_TASKS),
        memory_limit: setup.memory_limit.or(config.memory_limit),
        cpu,
    };
    let kernel = new_kernel_with(
        &host,
        gofer_sock,
        None,
        Clocks::boot(),
        &kconfig,
        setup.namespace,
    )?;
    let spec = ProcessSpec {
        argv: config.argv.clone(),
        env: config.env.clone(),
        cwd: config.cwd.clone(),
        creds: setup.creds.unwrap_or_else(Credentials::of_caller),
        limits: setup.limits,
        no_new_privs: setup.no_new_privs,
    };
    let tid = kernel.allocate_tid().map_err(BootError::Stdio)?;
    new_process(&kernel, tid, &spec, donated_stdio()?)
}

/// A process to start in a sandbox: its init, or one `cryo exec` adds.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub creds: Credentials,
    pub limits: Vec<(u32, crate::kernel::limits::Limit)>,
    pub no_new_privs: bool,
}

/// Starts a process in a running sandbox, outside its process tree (its
/// parent is outside the pid namespace, like a process `runsc exec` adds),
/// with `stdio` as its descriptors 0, 1 and 2. Call it on the host thread
/// that will run the returned task: the platform ties an address space to
/// the thread that created it. The caller reaps it ([`reap_process`]) once
/// it has run.
pub fn spawn_process(
    kernel: &Arc<Kernel>,
    spec: &ProcessSpec,
    stdio: Vec<(u32, Arc<vfs::OpenFile>)>,
) -> Result<Task, BootError> {
    let tid = kernel.allocate_tid().map_err(BootError::Stdio)?;
    new_process(kernel, tid, spec, stdio)
}

/// Forgets a process [`spawn_process`] started, once it has ended.
pub fn reap_process(kernel: &Kernel, tgid: i32) {
    kernel.pids.reap(tgid);
}

fn new_process(
    kernel: &Arc<Kernel>,
    tid: i32,
    spec: &ProcessSpec,
    stdio: Vec<(u32, Arc<vfs::OpenFile>)>,
) -> Result<Task, BootError> {
    let cmd = spec.argv.first().ok_or(BootError::NoCommand)?;
    let root = kernel.vfs.root().clone();
    let cwd = kernel
        .vfs
        .lookup_dir(&root, spec.cwd.as_bytes())
        .map_err(|errno| BootError::Cwd {
            path: spec.cwd.clone(),
            errno,
        })?;
    let path = find_command(&kernel.vfs, &cwd, cmd, &spec.env)?;
    // The runtime executes the program: execve's rules turn the
    // capabilities it had into the program's.
    let mut creds = spec.creds.clone();
    creds.exec_transform(spec.no_new_privs);
    let argv: Vec<Vec<u8>> = spec.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let envp: Vec<Vec<u8>> = spec.env.iter().map(|e| e.as_bytes().to_vec()).collect();
    let mut limits = LimitSet::default();
    for &(resource, limit) in &spec.limits {
        limits
            .set(resource, limit)
            .map_err(|e| BootError::Limit(format!("resource {resource}: {e}")))?;
    }
    let image =
        load_image(kernel, &cwd, &creds, &path, argv.clone(), envp.clone()).map_err(|error| {
            BootError::Exec {
                path: path.clone(),
                error,
            }
        })?;
    let mut fds = FdTable::new();
    for (index, file) in stdio {
        fds.insert_at(index as i32, file, false, u64::MAX)
            .map_err(BootError::Stdio)?;
    }
    let context = kernel.platform.new_context().map_err(BootError::Host)?;
    let mm = Arc::new(Mutex::new(image.mm));
    limits.apply_to_mm(&mut crate::kernel::thread_group::lock(&mm));
    let tg = ThreadGroup::new(
        tid,
        ProcessParts {
            mm: Some(mm.clone()),
            fds: Arc::new(Mutex::new(fds)),
            handlers: Default::default(),
            limits,
            fs: Arc::new(Mutex::new(FsContext {
                root,
                cwd,
                umask: 0o022,
                mnt_ns: kernel.vfs.init_ns().clone(),
            })),
            image: ProcessImage {
                exe: image.path,
                argv,
            },
            links: ProcessLinks::leader(tid),
            exit_signal: 0,
        },
    );
    // Named after the command as given (`sh`, not the `dash` it links to),
    // as exec names every later program.
    tg.attrs().set_default_comm(&path);
    tg.init_life(creds.uid, None);
    let task = Task::new(
        kernel.clone(),
        tid,
        tg,
        mm,
        creds,
        CpuState { regs: image.regs },
        context,
    );
    task.join();
    {
        let image = task.tg().image().clone();
        let now = kernel.clocks.monotonic();
        kernel.proc_log().started(
            tid,
            0,
            now,
            crate::kernel::proc_log::Start::Program(crate::kernel::proc_log::Program {
                exe: &image.exe,
                argv: &image.argv,
                env: &envp,
            }),
        );
    }
    if spec.no_new_privs {
        // A fresh thread is always found: it has just joined.
        let _ = task
            .tg()
            .attrs()
            .with_thread(tid, |a| a.no_new_privs = true);
    }
    Ok(task)
}
