//! Restore: validate the whole statefile first, then re-create every host
//! resource (memory file, stub, gofer connection, files re-opened by path and
//! checked against their fingerprints) and rebuild the task where it stopped.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;

use statefile::{Reader, SectionKind};

use super::save::statefile_path;
use super::validate::{holds, load_saved_kernel, LoadError};
use super::MEMORY_SECTION;
use crate::arch::cpuid::{CpuFeatures, Profile};
use crate::boot::{donated_stdio, host_resources, new_kernel_with, BootError};
use crate::errno::Errno;
use crate::kernel::pid_namespace::PID_MAX;
use crate::kernel::time::Clocks;
use crate::kernel::{KernelConfig, Task};
use crate::vfs::state::RestoreCtx;
use crate::vfs::{Clock, HostClock};
use std::sync::Arc;

/// Why a restore was refused. Nothing has started running when it is.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no statefile in {0}")]
    NoStatefile(String),
    #[error("statefile {path}: {source}")]
    Statefile {
        path: String,
        source: statefile::StatefileError,
    },
    #[error("the application used CPU features this host lacks (XSAVE components {missing:#x})")]
    CpuFeatures { missing: u64 },
    #[error(
        "the application used addresses up to {highest:#x}, which needs {needs}-bit virtual addresses, \
         but this host's user address space has {host_bits} bits (it ends at {top:#x})"
    )]
    AddressSpace {
        highest: u64,
        needs: u32,
        host_bits: u32,
        top: u64,
    },
    #[error(
        "the application saw CPU features this host lacks: {missing} (it ran with --cpu-features={profile}; \
         a sandbox booted with a smaller --cpu-features, such as x86-64-v2, restores on smaller CPUs)"
    )]
    MissingCpuFeatures { missing: String, profile: String },
    #[error("{0}")]
    Cpu(#[from] crate::arch::cpuid::CpuError),
    #[error("{var}: {why}")]
    Simulate { var: &'static str, why: String },
    #[error("statefile header {key}: {why}")]
    Header { key: &'static str, why: String },
    #[error("the application ran with {saved}-byte pages, but this host's pages are {host} bytes")]
    PageSize { saved: u64, host: u64 },
    #[error("{0}")]
    Records(LoadError),
    #[error("{0}")]
    Boot(#[from] BootError),
    #[error("restoring memory: {0}")]
    Memory(String),
    #[error("{0}")]
    File(#[from] crate::vfs::state::VfsRestoreError),
    #[error("restoring the address space: {0}")]
    Mm(#[from] crate::mm::MmRestoreError),
    #[error("restoring registers: {0}")]
    Platform(#[from] platform::PlatformError),
    #[error("invalid task state: {0}")]
    Invalid(String),
    #[error("working directory {path}: {errno}")]
    Cwd { path: String, errno: Errno },
}

/// For tests, and for operators planning a migration: restore's host checks
/// (address bits, CPU features) see a host with this many bits of user
/// address space instead of this one's, when it is fewer. Nothing else
/// changes: a statefile that passes restores on this host as usual.
pub const SIMULATE_VA_BITS_ENV: &str = "CRYO_SIMULATE_HOST_VA_BITS";
/// Like [`SIMULATE_VA_BITS_ENV`], for the page size: restore's checks see a
/// host whose pages have this many bytes (an arm64 kernel with 16K or 64K
/// pages).
pub const SIMULATE_PAGE_SIZE_ENV: &str = "CRYO_SIMULATE_HOST_PAGE_SIZE";
/// Like [`SIMULATE_VA_BITS_ENV`], for the CPU: restore's checks see this
/// host's CPU cut down to a `--cpu-features` profile (`x86-64-v2`, ...).
pub const SIMULATE_CPU_ENV: &str = "CRYO_SIMULATE_HOST_CPU";

/// The host restore's checks measure a statefile against: this one, or
/// the one [`SIMULATE_VA_BITS_ENV`], [`SIMULATE_PAGE_SIZE_ENV`] and
/// [`SIMULATE_CPU_ENV`] say.
struct CheckedHost {
    /// The address space the checks allow (None: this host's, known once
    /// it is probed).
    layout: Option<platform::Layout>,
    cpu: CpuFeatures,
}

/// The number in simulation variable `var`, if it is set.
fn simulated(var: &'static str, what: &str) -> Result<Option<u64>, RestoreError> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| RestoreError::Simulate {
                var,
                why: format!("{v:?} is not {what}"),
            }),
        Err(_) => Ok(None),
    }
}

fn checked_host(real: &platform::Layout) -> Result<CheckedHost, RestoreError> {
    let bits = simulated(SIMULATE_VA_BITS_ENV, "a number of address bits")?
        .map(|b| u32::try_from(b).unwrap_or(u32::MAX).min(real.va_bits));
    let page = simulated(SIMULATE_PAGE_SIZE_ENV, "a page size in bytes")?;
    let layout = if bits.is_some() || page.is_some() {
        let (bits, page) = (bits.unwrap_or(real.va_bits), page.unwrap_or(real.page_size));
        let l = platform::Layout::for_va_bits(bits, page).map_err(|e| RestoreError::Simulate {
            var: if page == real.page_size {
                SIMULATE_VA_BITS_ENV
            } else {
                SIMULATE_PAGE_SIZE_ENV
            },
            why: e.to_string(),
        })?;
        tracing::info!(
            bits,
            page,
            "restore checks a simulated host's address space"
        );
        Some(l)
    } else {
        None
    };
    let cpu = match std::env::var(SIMULATE_CPU_ENV) {
        Ok(v) => {
            let profile = Profile::parse(v.trim()).map_err(|e| RestoreError::Simulate {
                var: SIMULATE_CPU_ENV,
                why: e.to_string(),
            })?;
            tracing::info!(%profile, "restore checks a simulated smaller CPU");
            match profile {
                Profile::Host => CpuFeatures::host(),
                Profile::Level(l) => CpuFeatures::host().masked_to(l),
            }
        }
        Err(_) => CpuFeatures::host(),
    };
    Ok(CheckedHost { layout, cpu })
}

/// The statefile's page size and highest address (its header's records,
/// when it has them) against the address space `layout` allows
/// applications.
fn check_address_space(
    header: &statefile::Header,
    layout: &platform::Layout,
) -> Result<(), RestoreError> {
    if let Some(text) = header.metadata.get(super::KEY_PAGE_SIZE) {
        let saved: u64 = text.parse().map_err(|_| RestoreError::Header {
            key: super::KEY_PAGE_SIZE,
            why: format!("{text:?} is not a number of bytes"),
        })?;
        if saved != layout.page_size {
            return Err(RestoreError::PageSize {
                saved,
                host: layout.page_size,
            });
        }
    }
    let Some(text) = header.metadata.get(super::KEY_HIGHEST_ADDRESS) else {
        // Older statefiles: each address space's own check still refuses.
        return Ok(());
    };
    let highest = text
        .strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| RestoreError::Header {
            key: super::KEY_HIGHEST_ADDRESS,
            why: format!("{text:?} is not a hexadecimal address"),
        })?;
    let (_, top) = crate::mm::usable_range(layout);
    if highest > top {
        return Err(RestoreError::AddressSpace {
            highest,
            needs: 64 - (highest - 1).leading_zeros(),
            host_bits: layout.va_bits,
            top,
        });
    }
    Ok(())
}

/// The CPU features the application saw (None: a statefile from before
/// they were recorded) against what `host` has, refused by name.
fn check_cpu(
    header: &statefile::Header,
    host: &CpuFeatures,
) -> Result<Option<CpuFeatures>, RestoreError> {
    let Some(saved) = CpuFeatures::from_metadata(&header.metadata)? else {
        return Ok(None);
    };
    let missing = saved.missing_on(host);
    if !missing.is_empty() {
        return Err(RestoreError::MissingCpuFeatures {
            missing: missing.join(", "),
            profile: saved.profile.clone(),
        });
    }
    Ok(Some(saved))
}

/// The platform a restore runs on: the one asked for, else the one the
/// statefile was saved from (its header's `platform`), else the default.
fn chosen_platform(header: &statefile::Header, asked: Option<&str>) -> String {
    asked
        .or(header.metadata.get("platform").map(String::as_str))
        .map_or_else(|| platform::default_platform().to_string(), str::to_string)
}

/// Restores the sandbox saved in `image_dir`. `hostname` is unused: the
/// saved UTS namespace wins, as the application already saw it. The sandbox
/// runs on `platform`, or else on the platform the statefile was saved from.
pub fn restore(
    image_dir: &Path,
    gofer_sock: OwnedFd,
    strace: bool,
    platform: Option<&str>,
) -> Result<Task, RestoreError> {
    restore_container(
        image_dir,
        gofer_sock,
        ContainerRestore::default(),
        strace,
        platform,
    )
}

/// What an OCI container's bundle gives a restore that the statefile does
/// not hold: its mounts (re-attached from the bundle, as `create` attached
/// them; the caller checks they are the ones the application saw) and its
/// task limit. The default is a `cryo do` sandbox's.
#[derive(Default)]
pub struct ContainerRestore {
    pub namespace: crate::vfs::namespace::NamespaceSetup,
    pub max_tasks: Option<usize>,
    /// linux.resources.memory.limit from the bundle; None: the limit the
    /// statefile saved (if any).
    pub memory_limit: Option<u64>,
    /// The saved stdio's host side, by stdio number (None: this process's
    /// own stdin, stdout and stderr). A warm pool's sandbox gets
    /// placeholders here, which its take rebinds
    /// (`vfs::donated::rebind_donated`).
    pub stdio: Option<Vec<(u32, Arc<crate::vfs::OpenFile>)>>,
    /// The statefile's memory already loaded, each page at its memory-file
    /// offset, in this file (a warm pool's one sealed copy, which every
    /// held sandbox shares): the held sandbox holds none of it, and its
    /// resume copies it in (see [`load_shared_memory`]).
    pub memory: Option<OwnedFd>,
    /// Resume before the memory is loaded (`cryo restore --lazy`): chunks
    /// load on first touch and in the background (`mm::lazy`).
    pub lazy: bool,
}

/// Loads the memory section of the statefile in `image_dir` into a new
/// sealed memfd (every page at its memory-file offset, zero pages left as
/// holes), for [`ContainerRestore::memory`]. Every chunk's checksum is
/// checked; an offset past any memory file's end is refused.
pub fn load_shared_memory(image_dir: &Path) -> Result<OwnedFd, RestoreError> {
    use std::os::fd::AsRawFd;
    let path = statefile_path(image_dir);
    let shown = path.display().to_string();
    let sf_err = |source| RestoreError::Statefile {
        path: shown.clone(),
        source,
    };
    let reader = Reader::open(&path).map_err(sf_err)?;
    let host = |e: nix::errno::Errno| RestoreError::Memory(format!("the shared copy: {e}"));
    let fd = nix::sys::memfd::memfd_create(
        c"cryo-pool-memory",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC
            | nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(host)?;
    let memory = reader.memory(MEMORY_SECTION).map_err(sf_err)?;
    memory
        .restore_runs_mapped_with(|offset, page| {
            let len = page.len() as u64;
            if offset
                .checked_add(len)
                .is_none_or(|e| e > crate::mm::memory_file::MAX_CAPACITY)
            {
                return Err(statefile::StatefileError::PageOutOfRange { offset, len });
            }
            let mut done = 0usize;
            while done < page.len() {
                let at = i64::try_from(offset + done as u64).unwrap_or(i64::MAX);
                match nix::sys::uio::pwrite(&fd, &page[done..], at) {
                    Ok(n) => done += n,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        return Err(statefile::StatefileError::Io(
                            std::io::Error::from_raw_os_error(e as i32),
                        ))
                    }
                }
            }
            Ok(())
        })
        .map_err(sf_err)?;
    // Nothing writes it from now on: no sandbox can reach another through it.
    use nix::fcntl::SealFlag;
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(host)?;
    Ok(fd)
}

/// Copies the data (not the holes) of `ranges` of `from` into the memory
/// file at the same offsets.
fn copy_shared_memory(
    from: &OwnedFd,
    mf: &crate::mm::MemoryFile,
    ranges: &[crate::mm::FileRange],
) -> Result<(), RestoreError> {
    use std::os::fd::AsRawFd;
    let err = |e: nix::errno::Errno| RestoreError::Memory(format!("copying the shared copy: {e}"));
    for r in ranges {
        let mut at = r.start;
        while at < r.end {
            let start = i64::try_from(at).map_err(|_| RestoreError::Memory("offset".into()))?;
            // The next data at or after `at`, and the hole after it.
            let data =
                match nix::unistd::lseek(from.as_raw_fd(), start, nix::unistd::Whence::SeekData) {
                    Ok(d) => d as u64,
                    Err(nix::errno::Errno::ENXIO) => break,
                    Err(e) => return Err(err(e)),
                };
            if data >= r.end {
                break;
            }
            let hole =
                nix::unistd::lseek(from.as_raw_fd(), data as i64, nix::unistd::Whence::SeekHole)
                    .map_err(err)? as u64;
            let end = hole.min(r.end);
            // Through a buffer: pread from the copy, the memory file's
            // own write path in.
            let mut buf = vec![0u8; ((end - data) as usize).min(1 << 20)];
            let mut pos = data;
            while pos < end {
                let want = ((end - pos) as usize).min(buf.len());
                let n = match nix::sys::uio::pread(from, &mut buf[..want], pos as i64) {
                    Ok(0) => {
                        return Err(RestoreError::Memory("the shared copy ended early".into()))
                    }
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(err(e)),
                };
                mf.pwrite_at(pos, &buf[..n])
                    .map_err(|e| RestoreError::Memory(format!("copying the shared copy: {e}")))?;
                pos += n as u64;
            }
            at = end;
        }
    }
    Ok(())
}

/// A restored sandbox none of whose tasks runs yet ("paused at the
/// instant of the checkpoint"): its memory, files, processes and stubs are
/// all in place, so [`HeldRestore::resume`] costs only the start of its
/// tasks. A warm pool keeps its sandboxes so.
pub struct HeldRestore {
    kernel: Arc<crate::kernel::Kernel>,
    tree: super::restore_tree::HeldTree,
    since: std::time::Instant,
    /// The shared copy of the memory and the ranges to copy in at resume.
    deferred: Option<(OwnedFd, Vec<crate::mm::FileRange>)>,
    /// A lazy restore's chunks, loaded in the background from the resume.
    lazy: Option<Arc<crate::mm::lazy::LazyMemory>>,
}

/// What a pool's take gives the sandbox it hands out (README, "Warm
/// pools"): its id and environment, shown in /proc/cryo, and the signal
/// its processes that handle it get once it resumes.
#[derive(Clone, Debug, Default)]
pub struct Take {
    pub id: String,
    pub env: Vec<String>,
    pub signal: Option<i32>,
}

impl HeldRestore {
    pub fn kernel(&self) -> &Arc<crate::kernel::Kernel> {
        &self.kernel
    }

    /// The init task's argv, as the statefile holds it.
    pub fn init_argv(&self) -> Vec<Vec<u8>> {
        self.tree
            .groups()
            .iter()
            .find(|tg| tg.tgid() == 1)
            .map(|tg| tg.image().argv.clone())
            .unwrap_or_default()
    }

    /// Lets every task go on; returns init's leader for the calling thread
    /// to run. The time the sandbox was held is taken off its clocks, so
    /// they go on from the checkpoint's instant as after any restore.
    pub fn resume(self) -> Result<Task, RestoreError> {
        if let Some((from, ranges)) = &self.deferred {
            copy_shared_memory(from, &self.kernel.memory_file, ranges)?;
        }
        self.kernel.clocks.discount_held(self.since.elapsed());
        if let Some(l) = &self.lazy {
            start_background_load(&self.kernel, l.clone())?;
        }
        let kernel = self.kernel.clone();
        self.tree.start(&kernel)
    }

    /// [`HeldRestore::resume`] at once after the restore (its clocks as
    /// any restore's).
    fn resume_now(self) -> Result<Task, RestoreError> {
        if let Some((from, ranges)) = &self.deferred {
            copy_shared_memory(from, &self.kernel.memory_file, ranges)?;
        }
        if let Some(l) = &self.lazy {
            start_background_load(&self.kernel, l.clone())?;
        }
        let kernel = self.kernel.clone();
        self.tree.start(&kernel)
    }

    /// [`HeldRestore::resume`] as a pool's take: a new boot id, the take's
    /// id and environment in /proc/cryo, and `take.signal` queued (before
    /// any task runs) to every process that has a handler for it; one
    /// that does not handle it is not sent it, so a program that never
    /// opted in cannot die of it.
    pub fn resume_taken(self, take: &Take) -> Result<Task, RestoreError> {
        self.kernel.identity.renew(&take.id, &take.env);
        if let Some(signo) = take.signal {
            for tg in self.tree.groups() {
                let handled = tg
                    .handlers()
                    .get(signo)
                    .is_ok_and(|a| !a.is_default() && !a.is_ignored());
                if handled && !tg.is_zombie() {
                    tg.signal_process(crate::kernel::signal::SigInfo {
                        signo,
                        code: crate::kernel::signal::SI_USER,
                        addr: 0,
                        pid: 0,
                        uid: 0,
                    });
                }
            }
        }
        self.resume()
    }
}

/// [`restore`] of an OCI container, its root served over `gofer_sock` and
/// its mounts and limits from `container`.
pub fn restore_container(
    image_dir: &Path,
    gofer_sock: OwnedFd,
    container: ContainerRestore,
    strace: bool,
    platform: Option<&str>,
) -> Result<Task, RestoreError> {
    restore_container_held(image_dir, gofer_sock, container, strace, platform)?.resume_now()
}

/// [`restore_container`] up to the start of the tasks: everything is
/// validated, loaded and re-created, and nothing runs until
/// [`HeldRestore::resume`].
pub fn restore_container_held(
    image_dir: &Path,
    gofer_sock: OwnedFd,
    container: ContainerRestore,
    strace: bool,
    platform: Option<&str>,
) -> Result<HeldRestore, RestoreError> {
    let path = statefile_path(image_dir);
    if !path.is_file() {
        return Err(RestoreError::NoStatefile(image_dir.display().to_string()));
    }
    let shown = path.display().to_string();
    let sf_err = |source| RestoreError::Statefile {
        path: shown.clone(),
        source,
    };
    // Validate everything before the sandbox runs: the header, index and
    // every non-memory section, then every record; each memory chunk's
    // checksum as it is loaded below, before any stub exists (so memory is
    // read only once).
    let reader = Reader::open(&path).map_err(sf_err)?;
    // A platform this cryo lacks is refused before anything is loaded.
    let platform_name = chosen_platform(reader.header(), platform);
    platform::lookup(&platform_name).map_err(BootError::Platform)?;
    // Whether this host can hold the application at all, before anything
    // else is read: its address bits and CPU features.
    let real_layout = platform::Layout::probe().map_err(BootError::Host)?;
    let checked = checked_host(&real_layout)?;
    let check_layout = checked.layout.unwrap_or(real_layout);
    check_address_space(reader.header(), &check_layout)?;
    let saved_cpu = check_cpu(reader.header(), &checked.cpu)?;
    for section in reader
        .sections()
        .iter()
        .filter(|s| s.id.kind != SectionKind::Memory)
    {
        reader.verify_section(section).map_err(sf_err)?;
    }
    let load = |layout: &platform::Layout| match load_saved_kernel(&reader, layout) {
        Ok(rec) => Ok(rec),
        Err(LoadError::Statefile(source)) => Err(sf_err(source)),
        Err(e) => Err(RestoreError::Records(e)),
    };
    if let Some(small) = &checked.layout {
        // Every address space against the simulated host too.
        load(small)?;
    }
    let host = host_resources()?;
    let rec = load(&host.layout)?;
    // As the checkpoint counted it: components the sandbox's CPU does not
    // show (PKRU on a PKU host under a smaller profile) are not asked for.
    let shown_xcr0 = saved_cpu.as_ref().map_or(u64::MAX, |c| c.xcr0);
    let used = rec.tasks().fold(0, |acc, t| acc | t.fp.xstate_bv()) & shown_xcr0;
    let missing = used & !(platform::host_xfeatures() & checked.cpu.xcr0);
    if missing != 0 {
        return Err(RestoreError::CpuFeatures { missing });
    }
    // The application goes on seeing what it saw (a statefile from before
    // cryo recorded it: the host's CPU, which it ran on).
    let mut cpu = saved_cpu.unwrap_or_else(CpuFeatures::host);
    if let Err(e) = cpu.require_faulting() {
        tracing::warn!(
            "{e}: the restored sandbox's cpuid answers natively, showing this host's features"
        );
        cpu.emulated = false;
    }
    platform::set_cpuid_faulting(cpu.emulated);
    tracing::debug!("restore: statefile and records validated");

    let mf = host.memory_file.clone();
    mf.restore_allocations(&rec.memory.ranges)
        .map_err(|e| RestoreError::Memory(e.to_string()))?;
    let deferred = container.memory.map(|fd| (fd, rec.memory.ranges.clone()));
    let lazy = if container.lazy && deferred.is_none() {
        let l = crate::mm::lazy::LazyMemory::new(
            shown.clone(),
            reader,
            MEMORY_SECTION,
            rec.memory.ranges.clone(),
        )
        .map_err(sf_err)?;
        let l = Arc::new(l);
        mf.set_lazy(l.clone())
            .map_err(|e| RestoreError::Memory(format!("lazy restore: {e}")))?;
        prefetch_working_set(image_dir, &l, &mf)?;
        Some(l)
    } else {
        let memory = reader.memory(MEMORY_SECTION).map_err(sf_err)?;
        if deferred.is_none() {
            load_eagerly(&memory, &mf, &rec.memory.ranges).map_err(sf_err)?;
        }
        None
    };

    let config = KernelConfig {
        hostname: rec.kernel.uts.hostname.clone(),
        strace,
        platform: platform_name,
        max_tasks: container
            .max_tasks
            .unwrap_or(crate::kernel::DEFAULT_MAX_TASKS),
        memory_limit: container.memory_limit.or(rec.kernel.memory_limit),
        cpu,
    };
    let kernel = new_kernel_with(
        &host,
        gofer_sock,
        Some(&rec.vfs),
        Clocks::restore(&rec.kernel.clocks),
        &config,
        container.namespace,
    )?;
    kernel
        .vfs
        .restore_other_namespaces(&rec.namespaces.others)
        .map_err(RestoreError::File)?;
    if let Ok(mut uts) = kernel.uts.lock() {
        *uts = rec.kernel.uts.clone();
    }
    *kernel.proc_log() = crate::kernel::proc_log::ProcessLog::restore(&rec.process_log);
    // Every tid is below PID_MAX (validated), so the successor fits.
    let highest_tid = rec.tasks().map(|t| t.tid).max().unwrap_or(1);
    let next = rec.kernel.next_tid.max(i64::from(highest_tid) + 1);
    let next = if next > i64::from(PID_MAX) { 1 } else { next };
    kernel
        .pids
        .set_next_tid(next)
        .map_err(|e| RestoreError::Invalid(e.to_string()))?;

    // Open file descriptions, each once however many descriptors share it:
    // host stdio from this restore's caller, the rest re-opened by path and
    // fingerprint.
    let stdio: HashMap<u32, Arc<crate::vfs::OpenFile>> = match container.stdio {
        Some(given) => given.into_iter().collect(),
        None => donated_stdio()?.into_iter().collect(),
    };
    let ptys = restore_ptys(&kernel, &rec.ptys)?;
    let sockets = crate::net::state::create(&rec.sockets, &kernel.unix);
    kernel
        .inet
        .restore_stack(&rec.inet_stack)
        .map_err(|e| RestoreError::Invalid(e.to_string()))?;
    let inet = crate::net::inet::state::restore(&rec.inet_sockets, &kernel.inet);
    let netlink = rec
        .netlink_sockets
        .iter()
        .map(|r| (r.id, crate::net::netlink::NetlinkSocket::restore(r)))
        .collect();
    let mut ctx = RestoreCtx::new(&rec.pipes, stdio, HostClock.now())
        .with_clocks(kernel.clocks)
        .with_sockets(sockets.clone())
        .with_inet_sockets(inet)
        .with_netlink(netlink)
        .with_ptys(ptys);
    let mut files: HashMap<u64, Arc<crate::vfs::OpenFile>> = HashMap::new();
    let io_signals: Arc<dyn crate::vfs::fasync::IoSignals> = kernel.clone();
    // A procfs file that names a process (/proc/PID/stat, held open as
    // redis does) cannot be re-opened before that process is back: it is
    // tried again once the process tree is, before any descriptor table
    // is filled.
    let mut late = Vec::new();
    use crate::vfs::state::{FileStateKind, OpenFileState};
    let reopen = |id: u64, f: &OpenFileState, ctx: &mut RestoreCtx, late: Option<&mut Vec<u64>>| {
        let ns = rec.namespaces.file_ns(id);
        let reopened = kernel
            .vfs
            .in_restored_ns(ns, || kernel.vfs.reopen(f, ctx))
            .and_then(|r| r);
        let file = match (reopened, late) {
            (Ok(file), _) => file,
            (Err(_), Some(late)) if f.kind == FileStateKind::Synthetic => {
                late.push(id);
                return Ok(None);
            }
            (Err(e), _) => return Err(RestoreError::from(e)),
        };
        file.fasync().restore(&f.fasync);
        if f.flags & libc::O_ASYNC != 0 {
            file.set_async(true, f.fasync.fd, Arc::downgrade(&io_signals));
        }
        Ok(Some(file))
    };
    for (&id, f) in &rec.files {
        if let Some(file) = reopen(id, f, &mut ctx, Some(&mut late))? {
            files.insert(id, file);
        }
    }
    // An inet socket no saved file claimed (none is, unless the record
    // set is odd) is released, as its last file's close would have.
    ctx.release_unclaimed_inet();
    // Sockets once every open file is back: their messages carry files.
    crate::net::state::link(
        &rec.sockets,
        &sockets,
        &|id| files.get(&id).cloned(),
        &kernel.vfs,
    )
    .map_err(|e| RestoreError::Invalid(e.to_string()))?;
    // The file locks, on the re-opened files.
    for l in &rec.file_locks {
        let file = files
            .get(&l.file)
            .ok_or_else(|| RestoreError::Invalid(format!("locks of unknown file #{}", l.file)))?;
        let key = file
            .lock_key()
            .map_err(|e| RestoreError::Invalid(format!("locked file #{}: {e}", l.file)))?;
        let locks = l
            .locks
            .rename_descriptions(&|d| files.get(&d).map(|f| f.description_id()));
        for d in l.locks.descriptions() {
            if let Some(f) = files.get(&d) {
                f.note_locked(&kernel.file_locks, key);
            }
        }
        kernel.file_locks.install(key, &locks);
    }
    let mut reopen_late = |files: &mut super::restore_tree::RestoredFiles| {
        for &id in &late {
            if let Some(f) = rec.files.get(&id) {
                if let Some(file) = reopen(id, f, &mut ctx, None)? {
                    files.insert(id, file);
                }
            }
        }
        Ok(())
    };
    let restored = super::restore_tree::restore_processes(
        &kernel,
        &rec,
        &mut files,
        &mut reopen_late,
        host.layout,
    );
    // Files with no name that no open file took are freed now.
    kernel.vfs.release_restored_orphans();
    let tree = restored?;
    // Pidfds name their processes once these are back, and only then do
    // epoll sets find the queues pidfds wait on.
    crate::kernel::pidfd::bind_restored(files.values(), tree.groups())
        .map_err(RestoreError::Invalid)?;
    for r in &rec.epolls {
        let ep = ctx
            .epolls()
            .get(&r.id)
            .ok_or_else(|| RestoreError::Invalid(format!("epoll set {} has no open file", r.id)))?;
        ep.restore_items(r, &|id| files.get(&id).cloned())
            .map_err(|e| RestoreError::Invalid(format!("epoll set {}: {e}", r.id)))?;
    }
    Ok(HeldRestore {
        kernel,
        tree,
        since: std::time::Instant::now(),
        deferred,
        lazy,
    })
}

/// Every chunk of `memory` into the memory file, checksums checked, each
/// page inside the ranges the restore gave out.
fn load_eagerly(
    memory: &statefile::MemoryReader<'_, std::fs::File>,
    mf: &crate::mm::MemoryFile,
    ranges: &[crate::mm::FileRange],
) -> statefile::Result<()> {
    memory.restore_runs_mapped_with(|offset, page| {
        if !holds(ranges, offset, page.len() as u64) {
            return Err(statefile::StatefileError::PageOutOfRange {
                offset,
                len: page.len() as u64,
            });
        }
        mf.pwrite_at(offset, page)
            .map_err(|e| statefile::StatefileError::Io(std::io::Error::from_raw_os_error(e.0)))
    })
}

/// A lazy restore's start: the working set recorded for this statefile in
/// `image_dir` (if a valid one is there) is loaded before anything runs,
/// and the sandbox's own is recorded there when none was (see
/// `working_set`). The statefile's identity comes from the reader the
/// lazy memory holds, so it is the very file the chunks come from.
fn prefetch_working_set(
    image_dir: &Path,
    lazy: &Arc<crate::mm::lazy::LazyMemory>,
    mf: &crate::mm::MemoryFile,
) -> Result<(), RestoreError> {
    use super::working_set::{self, ImageDir};
    let dir = match ImageDir::open(image_dir) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(
                "lazy restore: {}: {e}: no working set read or recorded",
                image_dir.display()
            );
            return Ok(());
        }
    };
    let id = lazy.statefile_id();
    match dir.read(&id) {
        Some(chunks) => {
            tracing::debug!(
                "lazy restore: prefetching a working set of {} chunks: {chunks:?}",
                chunks.len()
            );
            lazy.prefetch(mf, &chunks)
                .map_err(|e| RestoreError::Memory(format!("lazy restore: {e}")))?;
        }
        None => {
            if let Some(record) = dir.recorder() {
                lazy.set_recorder(crate::mm::lazy::Recorder {
                    limit: working_set::limit(lazy.chunks()),
                    write: Box::new(move |chunks| record.write(&id, chunks)),
                });
            }
        }
    }
    Ok(())
}

/// Starts the thread that loads the rest of a lazy restore's memory while
/// the sandbox runs.
fn start_background_load(
    kernel: &Arc<crate::kernel::Kernel>,
    lazy: Arc<crate::mm::lazy::LazyMemory>,
) -> Result<(), RestoreError> {
    let mf = kernel.memory_file.clone();
    std::thread::Builder::new()
        .name("cryo-lazy-load".into())
        .spawn(move || {
            if let Err(e) = lazy.load_rest(&mf) {
                lazy.die(&e);
            }
        })
        .map(|_| ())
        .map_err(|e| RestoreError::Memory(format!("cannot start the lazy loader: {e}")))
}

/// The saved pseudo-terminals, back in the new kernel's devpts at their
/// indices, sending their signals to it.
fn restore_ptys(
    kernel: &Arc<crate::kernel::Kernel>,
    saved: &[crate::vfs::pty::PtySnapshot],
) -> Result<Vec<Arc<crate::vfs::pty::Terminal>>, RestoreError> {
    if saved.is_empty() {
        return Ok(Vec::new());
    }
    let devpts = kernel
        .devpts()
        .ok_or_else(|| RestoreError::Invalid("ptys saved but no devpts at /dev/pts".into()))?;
    let signals: Arc<dyn crate::vfs::pty::JobSignals> = kernel.clone();
    let mut out = Vec::with_capacity(saved.len());
    for p in saved {
        let tty = devpts
            .add(Some(p.index), p.state.clone(), p.owner, HostClock.now())
            .map_err(|e| RestoreError::Invalid(format!("pty {}: {e}", p.index)))?;
        tty.set_signals(Arc::downgrade(&signals));
        out.push(tty);
    }
    Ok(out)
}

#[cfg(test)]
mod platform_choice_tests {
    use super::chosen_platform;

    #[test]
    fn asked_platform_wins_then_the_saved_one_then_the_default() {
        let saved = statefile::Header::new("test").with("platform", "saved");
        let bare = statefile::Header::new("test");
        assert_eq!(chosen_platform(&saved, Some("asked")), "asked");
        assert_eq!(chosen_platform(&saved, None), "saved");
        assert_eq!(chosen_platform(&bare, None), platform::default_platform());
    }
}
