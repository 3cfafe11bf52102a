//! procfs at /proc, minimal but real (gVisor's fsimpl/proc): files are
//! generated when opened from what the kernel reports through
//! [`ProcessTable`] and [`ProcessInfo`]. There is no /proc/kallsyms or any
//! other view of the host: a missing file is the right answer.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dentry::lock;
use super::devfs::StaticSymlink;
use super::file::{DirOps, FileKind, FileOps, IoCtx, OpenFile, SaveAs};
use super::inode::{DirEntry, Inode};
use super::stat::{dirent_type, Stat, Timespec};
use crate::errno::Errno;

/// The kernel's process table as procfs sees it.
pub trait ProcessTable: Send + Sync {
    /// A lazy restore's progress; None when the sandbox was not restored
    /// lazily.
    fn lazy_progress(&self) -> Option<crate::mm::lazy::LazyProgress> {
        None
    }
    /// The thread group of the calling task (what /proc/self names).
    fn current_pid(&self) -> Option<i32>;
    /// /proc/mounts as the caller sees it (its root decides which mounts
    /// it can name); None: the text the procfs was made with.
    fn mounts_text(&self) -> Option<String> {
        None
    }
    fn pids(&self) -> Vec<i32>;
    fn process(&self, pid: i32) -> Option<Arc<dyn ProcessInfo>>;
    fn hostname(&self) -> String;
    /// Time since the sandbox booted (continues across restore).
    fn uptime(&self) -> Duration;
    /// Total and free memory, in bytes (what sysinfo(2) says too).
    fn memory(&self) -> (u64, u64);
    /// The CPUs the sandbox shows (what sched_getaffinity says).
    fn cpus(&self) -> usize;
    /// The CPU features the sandbox sees (what its cpuid says), by their
    /// /proc/cpuinfo names.
    fn cpu_flags(&self) -> Vec<&'static str>;
    /// Tasks now: running application code, and all of them.
    fn tasks(&self) -> (usize, usize);
    /// CPU time the live processes and those they reaped have used:
    /// (user, system) nanoseconds.
    fn cpu_time(&self) -> (u64, u64);
    /// The wall-clock time the sandbox booted, in seconds since the epoch.
    fn boot_time(&self) -> u64;
    /// /proc/net/`name` (tcp, tcp6, udp, udp6, dev), from the network
    /// stack; None: no such file.
    fn net_file(&self, _name: &str) -> Option<String> {
        None
    }
    /// /proc/sys/net/ipv4/ping_group_range: (low, high).
    fn ping_group_range(&self) -> (u32, u32) {
        crate::net::inet::stack::PING_RANGE_DEFAULT
    }
    /// A write to ping_group_range (EINVAL for a gid out of range).
    fn set_ping_group_range(&self, _low: u32, _high: u32) -> Result<(), Errno> {
        Err(Errno::EACCES)
    }
    /// /proc/sys/kernel/random/boot_id: new at every boot, restore and
    /// pool take.
    fn boot_id(&self) -> String {
        "00000000-0000-4000-8000-000000000000".into()
    }
    /// /proc/cryo/id: the id a pool take gave the sandbox (empty if none).
    fn take_id(&self) -> String {
        String::new()
    }
    /// /proc/cryo/environ: the take's `--env` pairs.
    fn take_env(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One process (thread group), as /proc/<pid> shows it.
pub trait ProcessInfo: Send + Sync {
    fn pid(&self) -> i32;
    fn comm(&self) -> String;
    /// The NUL-separated arguments.
    fn cmdline(&self) -> Vec<u8>;
    fn environ(&self) -> Vec<u8> {
        Vec::new()
    }
    /// /proc/<pid>/maps, already formatted.
    fn maps_text(&self) -> String;
    /// /proc/<pid>/status, or with another thread's `tid`
    /// /proc/<pid>/task/<tid>/status.
    fn status_text(&self, tid: i32) -> String;
    /// /proc/<pid>/stat, or with another thread's `tid`
    /// /proc/<pid>/task/<tid>/stat.
    fn stat_text(&self, tid: i32) -> String;
    /// /proc/<pid>/statm.
    fn statm_text(&self) -> String;
    /// /proc/<pid>/limits.
    fn limits_text(&self) -> String;
    fn exe_path(&self) -> Option<String>;
    fn cwd_path(&self) -> Option<String> {
        None
    }
    /// The process's root directory, as the reader sees it.
    fn root_path(&self) -> Option<String> {
        None
    }
    /// /proc/<pid>/mountinfo: the mounts below the process's root.
    fn mountinfo_text(&self) -> Option<String> {
        None
    }
    /// /proc/<pid>/mounts: the same as /proc/mounts shows them.
    fn mounts_text(&self) -> Option<String> {
        None
    }
    /// The open descriptors.
    fn fds(&self) -> Vec<i32> {
        Vec::new()
    }
    /// The threads' ids (/proc/<pid>/task).
    fn threads(&self) -> Vec<i32> {
        vec![self.pid()]
    }
    /// Thread `tid`'s name (/proc/<pid>/task/<tid>/comm).
    fn thread_comm(&self, _tid: i32) -> String {
        self.comm()
    }
    /// The open file behind descriptor `fd` (/proc/<pid>/fd/N).
    fn fd_file(&self, _fd: i32) -> Option<Arc<OpenFile>> {
        None
    }
    /// The text of the /proc/<pid>/fd/N link ("/path", "pipe:[ino]").
    fn fd_path(&self, _fd: i32) -> Option<String> {
        None
    }
    /// /proc/<pid>/fdinfo/N: position, flags, mount, inode and what the
    /// kind of file adds.
    fn fdinfo_text(&self, _fd: i32) -> Option<String> {
        None
    }
}

type Gen = Arc<dyn Fn() -> Result<Vec<u8>, Errno> + Send + Sync>;
/// A generated directory's entries (sysfs builds its tree from these too).
pub(super) type Entries = Arc<dyn Fn() -> Vec<(Vec<u8>, Arc<dyn Inode>)> + Send + Sync>;

/// A file whose contents are generated when read (see [`GeneratedOps`]).
struct ProcFile {
    ino: u64,
    gen: Gen,
}

fn proc_stat(ino: u64, mode: u32) -> Stat {
    Stat {
        dev: 0,
        ino,
        mode,
        nlink: if mode & libc::S_IFMT == libc::S_IFDIR {
            2
        } else {
            1
        },
        blksize: 4096,
        ..Stat::default()
    }
}

impl Inode for ProcFile {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFREG
    }
    fn stat(&self) -> Result<Stat, Errno> {
        // Like Linux, /proc files report size 0.
        Ok(proc_stat(self.ino, libc::S_IFREG | 0o444))
    }
    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Errno::EACCES);
        }
        Ok(Arc::new(GeneratedOps {
            gen: self.gen.clone(),
            text: Mutex::new(None),
        }))
    }
}

type Set = Arc<dyn Fn(&[u8]) -> Result<(), Errno> + Send + Sync>;

/// A sysctl a task with write permission (root: mode 0644) may set; the
/// value is parsed at write(2), as Linux's proc_handler does.
struct SysctlFile {
    ino: u64,
    gen: Gen,
    set: Set,
}

impl Inode for SysctlFile {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFREG
    }
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(proc_stat(self.ino, libc::S_IFREG | 0o644))
    }
    /// O_TRUNC, as open(path, "w") asks, changes nothing (Linux's
    /// proc_sys_setattr refuses only mode and owner changes).
    fn set_size(&self, _size: u64) -> Result<(), Errno> {
        Ok(())
    }
    fn open(&self, flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(SysctlOps {
            data: if flags & libc::O_ACCMODE == libc::O_WRONLY {
                Vec::new()
            } else {
                (self.gen)()?
            },
            set: self.set.clone(),
        }))
    }
}

struct SysctlOps {
    data: Vec<u8>,
    set: Set,
}

impl FileOps for SysctlOps {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        FileKind::Synthetic
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }
    fn read(&self, _io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        let off = usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX);
        if off >= self.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.data.len() - off);
        buf[..n].copy_from_slice(&self.data[off..off + n]);
        Ok(n)
    }
    fn write(&self, _io: &IoCtx<'_>, buf: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
        // Linux's proc_dointvec takes a value only from offset 0.
        if offset.unwrap_or(0) != 0 {
            return Err(Errno::EINVAL);
        }
        (self.set)(buf)?;
        Ok(buf.len())
    }
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.data.len() as u64)
    }
}

/// Two unsigned integers separated by blanks, as proc_dointvec parses a
/// two-value sysctl (it stops after the second: what follows is ignored).
fn parse_two(buf: &[u8]) -> Result<(u32, u32), Errno> {
    let text = std::str::from_utf8(buf).map_err(|_| Errno::EINVAL)?;
    let mut it = text.split_ascii_whitespace().map(|w| w.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(Errno::EINVAL),
    }
}

/// /proc/sys/net/ipv4: the sysctls of the sandbox's network stack.
fn sys_net(table: &Arc<dyn ProcessTable>) -> Arc<dyn Inode> {
    let (t, t2) = (table.clone(), table.clone());
    let ping: Arc<dyn Inode> = Arc::new(SysctlFile {
        ino: 92,
        gen: Arc::new(move || {
            let (lo, hi) = t.ping_group_range();
            Ok(format!("{lo}\t{hi}\n").into_bytes())
        }),
        set: Arc::new(move |buf| {
            let (lo, hi) = parse_two(buf)?;
            t2.set_ping_group_range(lo, hi)
        }),
    });
    let ipv4: Arc<dyn Inode> = Arc::new(ProcDir {
        ino: 91,
        entries: Arc::new(move || vec![(b"ping_group_range".to_vec(), ping.clone())]),
    });
    Arc::new(ProcDir {
        ino: 90,
        entries: Arc::new(move || vec![(b"ipv4".to_vec(), ipv4.clone())]),
    })
}

/// An open generated file, read as Linux's seq_file reads: the text is made
/// at the first read and again at a read from offset 0 or from anywhere but
/// where the last read ended, so a descriptor held open shows the kernel as
/// it is at that read, and a reader going on in small steps sees one text.
struct GeneratedOps {
    gen: Gen,
    /// The text last made, and where the last read from it ended.
    text: Mutex<Option<(Vec<u8>, usize)>>,
}

/// What [`GeneratedOps::text_for`] holds: the text, and where the last
/// read from it ended.
type TextGuard<'a> = std::sync::MutexGuard<'a, Option<(Vec<u8>, usize)>>;

impl GeneratedOps {
    /// The text for a read from `from` (`None`: any text made will do),
    /// made again where seq_file makes it again.
    fn text_for(&self, from: Option<usize>) -> Result<TextGuard<'_>, Errno> {
        let mut text = lock(&self.text);
        let stale = match (&*text, from) {
            (None, _) | (_, Some(0)) => true,
            (Some((_, end)), Some(off)) => off != *end,
            (Some(_), None) => false,
        };
        if stale {
            *text = Some(((self.gen)()?, 0));
        }
        Ok(text)
    }
}

impl FileOps for GeneratedOps {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        FileKind::Synthetic
    }
    /// Regenerated from the live kernel when re-opened.
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }
    fn read(&self, _io: &IoCtx<'_>, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
        let off = usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let mut text = self.text_for(Some(off))?;
        let Some((data, end)) = text.as_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(data.len().saturating_sub(off));
        if n > 0 {
            buf[..n].copy_from_slice(&data[off..off + n]);
        }
        *end = off.saturating_add(n);
        Ok(n)
    }
    fn size(&self) -> Result<u64, Errno> {
        let text = self.text_for(None)?;
        Ok(text.as_ref().map_or(0, |(data, _)| data.len() as u64))
    }
}

/// A symlink whose text is computed at readlink; optionally a magic link.
struct ProcLink {
    ino: u64,
    target: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    magic: Option<Arc<dyn Fn() -> Option<Arc<OpenFile>> + Send + Sync>>,
}

impl Inode for ProcLink {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFLNK
    }
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(proc_stat(self.ino, libc::S_IFLNK | 0o777))
    }
    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        (self.target)().map(String::into_bytes).ok_or(Errno::ENOENT)
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::ELOOP)
    }
    fn magic_target(&self) -> Option<Arc<OpenFile>> {
        self.magic.as_ref().and_then(|m| m())
    }
}

/// A directory whose entries are computed at each lookup and listing.
pub(super) struct ProcDir {
    pub(super) ino: u64,
    pub(super) entries: Entries,
}

impl Inode for ProcDir {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn file_type(&self) -> u32 {
        libc::S_IFDIR
    }
    fn stat(&self) -> Result<Stat, Errno> {
        Ok(proc_stat(self.ino, libc::S_IFDIR | 0o555))
    }
    fn lookup(&self, name: &[u8]) -> Result<Arc<dyn Inode>, Errno> {
        (self.entries)()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, i)| i)
            .ok_or(Errno::ENOENT)
    }
    fn readdir(&self) -> Result<Vec<DirEntry>, Errno> {
        Ok((self.entries)()
            .into_iter()
            .map(|(name, i)| DirEntry {
                ino: i.stat().map(|s| s.ino).unwrap_or(0),
                dtype: dirent_type(i.file_type()),
                name,
            })
            .collect())
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Ok(Arc::new(DirOps))
    }
}

fn file(
    ino: u64,
    gen: impl Fn() -> Result<Vec<u8>, Errno> + Send + Sync + 'static,
) -> Arc<dyn Inode> {
    Arc::new(ProcFile {
        ino,
        gen: Arc::new(gen),
    })
}

pub(super) fn text(ino: u64, s: impl Into<String>) -> Arc<dyn Inode> {
    let s: String = s.into();
    file(ino, move || Ok(s.clone().into_bytes()))
}

/// Inode numbers: fixed ones below 4096, per-process ones above.
/// Set in the inode numbers of /proc/<pid>/fdinfo/N.
const FDINFO_INO: u64 = 1 << 62;

fn pid_ino(pid: i32, n: u64) -> u64 {
    (u64::from(pid.unsigned_abs()) << 12) | n
}

fn pid_dir(pid: i32, table: Arc<dyn ProcessTable>) -> Arc<dyn Inode> {
    let entries = move || -> Vec<(Vec<u8>, Arc<dyn Inode>)> {
        let Some(p) = table.process(pid) else {
            return Vec::new();
        };
        let mut v: Vec<(Vec<u8>, Arc<dyn Inode>)> = Vec::new();
        let q = p.clone();
        v.push((
            b"cmdline".to_vec(),
            file(pid_ino(pid, 1), move || Ok(q.cmdline())),
        ));
        let q = p.clone();
        v.push((
            b"comm".to_vec(),
            file(pid_ino(pid, 2), move || {
                Ok(format!("{}\n", q.comm()).into_bytes())
            }),
        ));
        for (name, n, what) in [
            (&b"stat"[..], 13, 0u8),
            (b"statm", 14, 1),
            (b"limits", 15, 2),
        ] {
            let q = p.clone();
            v.push((
                name.to_vec(),
                file(pid_ino(pid, n), move || {
                    Ok(match what {
                        0 => q.stat_text(pid),
                        1 => q.statm_text(),
                        _ => q.limits_text(),
                    }
                    .into_bytes())
                }),
            ));
        }
        let q = p.clone();
        v.push((
            b"environ".to_vec(),
            file(pid_ino(pid, 3), move || Ok(q.environ())),
        ));
        let q = p.clone();
        v.push((
            b"maps".to_vec(),
            file(pid_ino(pid, 4), move || Ok(q.maps_text().into_bytes())),
        ));
        let q = p.clone();
        v.push((
            b"status".to_vec(),
            file(pid_ino(pid, 5), move || Ok(q.status_text(pid).into_bytes())),
        ));
        let q = p.clone();
        v.push((
            b"exe".to_vec(),
            Arc::new(ProcLink {
                ino: pid_ino(pid, 6),
                target: Arc::new(move || q.exe_path()),
                magic: None,
            }),
        ));
        let q = p.clone();
        v.push((
            b"cwd".to_vec(),
            Arc::new(ProcLink {
                ino: pid_ino(pid, 7),
                target: Arc::new(move || q.cwd_path()),
                magic: None,
            }),
        ));
        let q = p.clone();
        v.push((
            b"root".to_vec(),
            Arc::new(ProcLink {
                ino: pid_ino(pid, 13),
                target: Arc::new(move || q.root_path()),
                magic: None,
            }),
        ));
        let q = p.clone();
        v.push((
            b"mountinfo".to_vec(),
            file(pid_ino(pid, 14), move || {
                q.mountinfo_text()
                    .map(String::into_bytes)
                    .ok_or(Errno::ENOENT)
            }),
        ));
        let q = p.clone();
        v.push((
            b"mounts".to_vec(),
            file(pid_ino(pid, 15), move || {
                q.mounts_text().map(String::into_bytes).ok_or(Errno::ENOENT)
            }),
        ));
        let q = p.clone();
        v.push((
            b"fd".to_vec(),
            Arc::new(ProcDir {
                ino: pid_ino(pid, 8),
                entries: Arc::new(move || {
                    q.fds()
                        .into_iter()
                        .map(|fd| {
                            let (a, b) = (q.clone(), q.clone());
                            let link: Arc<dyn Inode> = Arc::new(ProcLink {
                                ino: pid_ino(pid, 64 + u64::from(fd.unsigned_abs() % 4000)),
                                target: Arc::new(move || a.fd_path(fd)),
                                magic: Some(Arc::new(move || b.fd_file(fd))),
                            });
                            (fd.to_string().into_bytes(), link)
                        })
                        .collect()
                }),
            }),
        ));
        let q = p.clone();
        v.push((
            b"fdinfo".to_vec(),
            Arc::new(ProcDir {
                ino: pid_ino(pid, 18),
                entries: Arc::new(move || {
                    q.fds()
                        .into_iter()
                        .map(|fd| {
                            let a = q.clone();
                            // Apart from the fd links' inode numbers.
                            let ino =
                                FDINFO_INO | pid_ino(pid, 64 + u64::from(fd.unsigned_abs() % 4000));
                            let info = file(ino, move || {
                                a.fdinfo_text(fd)
                                    .map(String::into_bytes)
                                    .ok_or(Errno::ENOENT)
                            });
                            (fd.to_string().into_bytes(), info)
                        })
                        .collect()
                }),
            }),
        ));
        let q = p.clone();
        v.push((
            b"task".to_vec(),
            Arc::new(ProcDir {
                ino: pid_ino(pid, 10),
                entries: Arc::new(move || {
                    q.threads()
                        .into_iter()
                        .map(|tid| {
                            let t = q.clone();
                            let comm = file(pid_ino(tid, 12), move || {
                                Ok(format!("{}\n", t.thread_comm(tid)).into_bytes())
                            });
                            let t = q.clone();
                            let stat =
                                file(pid_ino(tid, 16), move || Ok(t.stat_text(tid).into_bytes()));
                            let t = q.clone();
                            let status = file(pid_ino(tid, 17), move || {
                                Ok(t.status_text(tid).into_bytes())
                            });
                            let dir: Arc<dyn Inode> = Arc::new(ProcDir {
                                ino: pid_ino(tid, 11),
                                entries: Arc::new(move || {
                                    vec![
                                        (b"comm".to_vec(), comm.clone()),
                                        (b"stat".to_vec(), stat.clone()),
                                        (b"status".to_vec(), status.clone()),
                                    ]
                                }),
                            });
                            (tid.to_string().into_bytes(), dir)
                        })
                        .collect()
                }),
            }),
        ));
        v.push((
            b"mounts".to_vec(),
            Arc::new(StaticSymlink {
                ino: pid_ino(pid, 9),
                target: b"/proc/mounts".to_vec(),
                time: Timespec::default(),
            }),
        ));
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    Arc::new(ProcDir {
        ino: pid_ino(pid, 0),
        entries: Arc::new(entries),
    })
}

const VERSION: &str = "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016\n";

fn meminfo((total, free): (u64, u64)) -> String {
    format!(
        "MemTotal:       {:8} kB\nMemFree:        {free:8} kB\nMemAvailable:   {free:8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nShmem:                 0 kB\n",
        total / 1024,
        free = free / 1024
    )
}

/// /proc/stat: the sandbox's CPU time on its CPUs in USER_HZ ticks (idle
/// is what the tasks did not use of the time since boot), its boot time
/// and its tasks.
fn proc_stat_text(t: &dyn ProcessTable) -> String {
    const NS_PER_TICK: u64 = 10_000_000;
    let cpus = t.cpus().max(1) as u64;
    let (user, sys) = t.cpu_time();
    let (user, sys) = (user / NS_PER_TICK, sys / NS_PER_TICK);
    let up = u64::try_from(t.uptime().as_nanos()).unwrap_or(u64::MAX) / NS_PER_TICK;
    let idle = (up * cpus).saturating_sub(user + sys);
    let (running, all) = t.tasks();
    let mut s = format!("cpu  {user} 0 {sys} {idle} 0 0 0 0 0 0\n");
    for i in 0..cpus {
        // Per-CPU time is not kept: each CPU shows an equal share.
        s.push_str(&format!(
            "cpu{i} {} 0 {} {} 0 0 0 0 0 0\n",
            user / cpus,
            sys / cpus,
            idle / cpus
        ));
    }
    s.push_str(&format!(
        "intr 0\nctxt 0\nbtime {}\nprocesses {all}\nprocs_running {running}\nprocs_blocked 0\n",
        t.boot_time()
    ));
    s
}

fn cpuinfo(n: usize, flags: &[&str]) -> String {
    let flags = flags.join(" ");
    let mut s = String::new();
    for i in 0..n.max(1) {
        s.push_str(&format!(
            "processor\t: {i}\nvendor_id\t: cryo\nmodel name\t: cryo virtual CPU\ncpu MHz\t\t: 2000.000\ncpu cores\t: {n}\nflags\t\t: {flags}\n\n"
        ));
    }
    s
}

/// /proc/sys/kernel/random: the boot id (the sandbox's, see
/// `kernel::identity`), a fresh UUID per read, and the entropy figures
/// programs check before they trust getrandom (which comes from the host).
fn sys_kernel_random(table: &Arc<dyn ProcessTable>) -> Arc<dyn Inode> {
    let t = table.clone();
    let entries: Vec<(Vec<u8>, Arc<dyn Inode>)> = vec![
        (
            b"boot_id".to_vec(),
            file(60, move || Ok(format!("{}\n", t.boot_id()).into_bytes())),
        ),
        (b"entropy_avail".to_vec(), text(61, "256\n")),
        (b"poolsize".to_vec(), text(62, "256\n")),
        (
            b"uuid".to_vec(),
            file(63, || {
                Ok(format!("{}\n", crate::kernel::identity::new_uuid_text()).into_bytes())
            }),
        ),
    ];
    Arc::new(ProcDir {
        ino: 59,
        entries: Arc::new(move || entries.clone()),
    })
}

/// /proc/cryo: what a warm pool's take told the sandbox (README, "Warm
/// pools"): `id`, its id under --root with a newline, and `environ`, the
/// take's `--env` pairs, NUL-terminated like /proc/PID/environ. Both are
/// empty in a sandbox no pool handed out.
fn cryo_dir(table: &Arc<dyn ProcessTable>) -> Arc<dyn Inode> {
    let (t1, t2, t3) = (table.clone(), table.clone(), table.clone());
    let entries: Vec<(Vec<u8>, Arc<dyn Inode>)> = vec![
        (
            b"lazy".to_vec(),
            file(67, move || {
                Ok(match t3.lazy_progress() {
                    Some(p) => format!(
                        "loaded {} of {} chunks, prefetched {}, demanded {}\n",
                        p.loaded, p.chunks, p.prefetched, p.demanded
                    ),
                    None => "not restored lazily\n".to_string(),
                }
                .into_bytes())
            }),
        ),
        (
            b"id".to_vec(),
            file(65, move || {
                let id = t1.take_id();
                Ok(if id.is_empty() {
                    Vec::new()
                } else {
                    format!("{id}\n").into_bytes()
                })
            }),
        ),
        (
            b"environ".to_vec(),
            file(66, move || {
                let mut out = Vec::new();
                for kv in t2.take_env() {
                    out.extend_from_slice(kv.as_bytes());
                    out.push(0);
                }
                Ok(out)
            }),
        ),
    ];
    Arc::new(ProcDir {
        ino: 64,
        entries: Arc::new(move || entries.clone()),
    })
}

/// The /proc root. `mounts` is the text of /proc/mounts.
pub fn new_procfs(table: Arc<dyn ProcessTable>, mounts: String) -> Arc<dyn Inode> {
    let t = table.clone();
    let sys_kernel = {
        let t = table.clone();
        let host = file(30, move || Ok(format!("{}\n", t.hostname()).into_bytes()));
        let entries: Vec<(Vec<u8>, Arc<dyn Inode>)> = vec![
            (b"hostname".to_vec(), host),
            (b"osrelease".to_vec(), text(31, "4.4.0\n")),
            (b"ostype".to_vec(), text(32, "Linux\n")),
            (b"pid_max".to_vec(), text(33, "4194304\n")),
            (b"random".to_vec(), sys_kernel_random(&table)),
        ];
        Arc::new(ProcDir {
            ino: 29,
            entries: Arc::new(move || entries.clone()),
        }) as Arc<dyn Inode>
    };
    // /proc/sys/vm: the limit the memory manager enforces.
    let sys_vm: Arc<dyn Inode> = {
        let entries: Vec<(Vec<u8>, Arc<dyn Inode>)> = vec![(
            b"max_map_count".to_vec(),
            text(35, format!("{}\n", crate::mm::MAX_MAP_COUNT)),
        )];
        Arc::new(ProcDir {
            ino: 34,
            entries: Arc::new(move || entries.clone()),
        })
    };
    let sys: Arc<dyn Inode> = Arc::new(ProcDir {
        ino: 28,
        entries: {
            let sys_net = sys_net(&table);
            Arc::new(move || {
                vec![
                    (b"kernel".to_vec(), sys_kernel.clone()),
                    (b"net".to_vec(), sys_net.clone()),
                    (b"vm".to_vec(), sys_vm.clone()),
                ]
            })
        },
    });
    // /proc/net: the loopback stack's sockets and device, read live.
    let net: Arc<dyn Inode> = {
        let files: Vec<(Vec<u8>, Arc<dyn Inode>)> = ["dev", "tcp", "tcp6", "udp", "udp6"]
            .iter()
            .zip(41u64..)
            .map(|(name, ino)| {
                let t = table.clone();
                let f = file(ino, move || {
                    t.net_file(name)
                        .map(String::into_bytes)
                        .ok_or(Errno::ENOENT)
                });
                (name.as_bytes().to_vec(), f)
            })
            .collect();
        Arc::new(ProcDir {
            ino: 40,
            entries: Arc::new(move || files.clone()),
        })
    };
    let fixed: Vec<(Vec<u8>, Arc<dyn Inode>)> =
        {
            let (t1, t2, t3, t4, t5) = (t.clone(), t.clone(), t.clone(), t.clone(), t.clone());
            vec![
            (
                b"cpuinfo".to_vec(),
                file(10, move || Ok(cpuinfo(t1.cpus(), &t1.cpu_flags()).into_bytes())),
            ),
            (
                b"filesystems".to_vec(),
                text(
                    11,
                    "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\toverlay\n",
                ),
            ),
            (
                b"loadavg".to_vec(),
                file(12, move || {
                    // No load average is kept: the sandbox reports none.
                    let (running, all) = t4.tasks();
                    let last = t4.pids().into_iter().max().unwrap_or(0);
                    Ok(format!("0.00 0.00 0.00 {running}/{all} {last}\n").into_bytes())
                }),
            ),
            (
                b"meminfo".to_vec(),
                file(13, move || Ok(meminfo(t2.memory()).into_bytes())),
            ),
            (
                b"stat".to_vec(),
                file(17, move || Ok(proc_stat_text(t5.as_ref()).into_bytes())),
            ),
            (b"mounts".to_vec(), {
                let t = t.clone();
                file(14, move || Ok(t.mounts_text().unwrap_or_else(|| mounts.clone()).into_bytes()))
            }),
            (
                b"uptime".to_vec(),
                file(15, move || {
                    let up = t3.uptime();
                    Ok(format!(
                        "{}.{:02} {}.{:02}\n",
                        up.as_secs(),
                        up.subsec_millis() / 10,
                        up.as_secs(),
                        up.subsec_millis() / 10
                    )
                    .into_bytes())
                }),
            ),
            (b"version".to_vec(), text(16, VERSION)),
            (b"sys".to_vec(), sys),
            (b"net".to_vec(), net),
            (b"cryo".to_vec(), cryo_dir(&table)),
        ]
        };
    let entries = move || -> Vec<(Vec<u8>, Arc<dyn Inode>)> {
        let mut v = fixed.clone();
        let t2 = table.clone();
        v.push((
            b"self".to_vec(),
            Arc::new(ProcLink {
                ino: 20,
                target: Arc::new(move || t2.current_pid().map(|p| p.to_string())),
                magic: None,
            }),
        ));
        for pid in table.pids() {
            v.push((pid.to_string().into_bytes(), pid_dir(pid, table.clone())));
        }
        v
    };
    Arc::new(ProcDir {
        ino: 1,
        entries: Arc::new(entries),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::vfs::{MountOpts, Vfs};

    pub(crate) struct OneProc;

    impl ProcessInfo for OneProc {
        fn pid(&self) -> i32 {
            1
        }
        fn comm(&self) -> String {
            "init".into()
        }
        fn cmdline(&self) -> Vec<u8> {
            b"/bin/init\0-v\0".to_vec()
        }
        fn maps_text(&self) -> String {
            "00400000-00401000 r-xp 00000000 00:00 0 /bin/init\n".into()
        }
        fn exe_path(&self) -> Option<String> {
            Some("/bin/init".into())
        }
        fn status_text(&self, tid: i32) -> String {
            format!("Name:\tinit\nPid:\t{tid}\n")
        }
        fn stat_text(&self, tid: i32) -> String {
            format!("{tid} (init) S 0 1 1\n")
        }
        fn statm_text(&self) -> String {
            "1 1 0 0 0 0 0\n".into()
        }
        fn limits_text(&self) -> String {
            "Limit\n".into()
        }
    }

    impl ProcessTable for OneProc {
        fn current_pid(&self) -> Option<i32> {
            Some(1)
        }
        fn memory(&self) -> (u64, u64) {
            (4 << 30, 1 << 30)
        }
        fn cpus(&self) -> usize {
            2
        }
        fn cpu_flags(&self) -> Vec<&'static str> {
            vec!["fpu", "sse", "sse2"]
        }
        fn tasks(&self) -> (usize, usize) {
            (1, 1)
        }
        fn cpu_time(&self) -> (u64, u64) {
            (30_000_000, 10_000_000)
        }
        fn boot_time(&self) -> u64 {
            1_700_000_000
        }
        fn pids(&self) -> Vec<i32> {
            vec![1]
        }
        fn process(&self, pid: i32) -> Option<Arc<dyn ProcessInfo>> {
            (pid == 1).then(|| Arc::new(OneProc) as Arc<dyn ProcessInfo>)
        }
        fn hostname(&self) -> String {
            "sandbox".into()
        }
        fn uptime(&self) -> Duration {
            Duration::from_millis(1500)
        }
    }

    fn read(vfs: &Vfs, p: &[u8]) -> Result<String, Errno> {
        let f = vfs.open_at(&vfs.root(), p, libc::O_RDONLY, 0)?;
        let mut buf = vec![0u8; 8192];
        let n = f.read(&mut buf, &Interrupt::new())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn proc_files() {
        let vfs = Vfs::new(
            new_procfs(Arc::new(OneProc), "none / overlay rw 0 0\n".into()),
            MountOpts {
                fs_type: "proc",
                read_only: false,
            },
        );
        assert_eq!(read(&vfs, b"/self/cmdline").unwrap(), "/bin/init\0-v\0");
        assert!(read(&vfs, b"/1/maps").unwrap().contains("/bin/init"));
        assert!(read(&vfs, b"/self/status").unwrap().contains("Pid:\t1"));
        assert_eq!(read(&vfs, b"/version").unwrap(), VERSION);
        assert_eq!(read(&vfs, b"/sys/kernel/hostname").unwrap(), "sandbox\n");
        assert_eq!(read(&vfs, b"/uptime").unwrap(), "1.50 1.50\n");
        assert!(read(&vfs, b"/meminfo").unwrap().starts_with("MemTotal:"));
        let cpuinfo = read(&vfs, b"/cpuinfo").unwrap();
        assert!(cpuinfo.contains("processor"));
        assert!(cpuinfo.contains("flags\t\t: fpu sse sse2\n"), "{cpuinfo}");
        assert_eq!(read(&vfs, b"/kallsyms").err(), Some(Errno::ENOENT));
        assert_eq!(read(&vfs, b"/2/maps").err(), Some(Errno::ENOENT));
        assert_eq!(
            vfs.readlink_at(&vfs.root(), b"/self/exe").unwrap(),
            b"/bin/init"
        );
        assert_eq!(
            vfs.open_at(&vfs.root(), b"/version", libc::O_WRONLY, 0)
                .err(),
            Some(Errno::EACCES)
        );
    }
}
