//! Open files (gVisor's vfs.FileDescription): the file's operations, the
//! shared offset, the status flags and the access mode.

use std::any::Any;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::abi;
use super::dentry::{lock, Dentry};
use super::inode::{DirEntry, Inode};
use super::lock::{FileKey, FileLocks};
use super::stat::Stat;
use crate::errno::Errno;
use crate::mm::file::MappableFile;

/// What kind of file an open file is (for fstat-free decisions and for
/// checkpointing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    PipeRead,
    PipeWrite,
    CharDevice,
    /// A host fd donated by the CLI (the sandbox's stdio).
    DonatedFd,
    /// A file whose contents are generated (procfs).
    Synthetic,
    /// An anonymous-inode file: eventfd, timerfd, signalfd, epoll.
    Anonymous,
    /// A socket (sentry/src/net).
    Socket,
}

/// How lseek and the file offset behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekMode {
    /// Reads and writes use and advance the open file's offset.
    Positional,
    /// Offsets mean nothing but lseek succeeds and returns 0 (/dev/null).
    Ignored,
    /// lseek, pread and pwrite fail with ESPIPE (pipes, ttys).
    Stream,
    /// The file keeps its own offset (a donated host fd): `FileOps::seek`.
    Delegated,
}

/// Asks blocking operations to give up: set by the kernel to deliver a
/// signal or to stop every task for a checkpoint. A blocked operation then
/// returns `EINTR`, which the syscall layer turns into a restart (the
/// operation made no progress) or a short count.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<InterruptInner>);

#[derive(Default)]
struct InterruptInner {
    flag: AtomicBool,
    /// Blocked pollers to wake when the interrupt is set.
    waiters: Arc<super::poll::WaitQueue>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Interrupt").field(&self.is_set()).finish()
    }
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    pub fn interrupt(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.waiters.notify(super::poll::ALL_EVENTS);
    }

    pub fn clear(&self) {
        self.0.flag.store(false, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Wakes `waiter` when the interrupt is set (until the registration
    /// is dropped).
    pub fn register(&self, waiter: &Arc<super::poll::Waiter>) -> super::poll::Registration {
        self.0
            .waiters
            .register(super::poll::ALL_EVENTS, false, waiter.listener())
    }
}

/// How often a blocked operation looks at its [`Interrupt`].
pub(crate) const INTERRUPT_POLL: Duration = Duration::from_millis(20);

/// The context of one read or write.
pub struct IoCtx<'a> {
    pub interrupt: &'a Interrupt,
    /// O_NONBLOCK: fail with EAGAIN instead of blocking.
    pub nonblock: bool,
}

/// The answer of an ioctl: the syscall's return value and the bytes to copy
/// out to the argument pointer (empty for none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoctlReply {
    pub ret: u64,
    pub out: Vec<u8>,
}

/// How an open file is checkpointed (the answer of [`FileOps::save_as`]).
///
/// Every file kind must answer; one that does not, does not compile:
///
/// ```compile_fail
/// use std::any::Any;
/// use sentry::vfs::{FileKind, FileOps};
/// struct Unsaved;
/// impl FileOps for Unsaved {
///     fn as_any(&self) -> &dyn Any { self }
///     fn kind(&self) -> FileKind { FileKind::Regular }
/// }
/// ```
///
/// while the same kind that says how it saves does:
///
/// ```
/// use std::any::Any;
/// use sentry::vfs::{FileKind, FileOps, SaveAs};
/// struct Saved;
/// impl FileOps for Saved {
///     fn as_any(&self) -> &dyn Any { self }
///     fn kind(&self) -> FileKind { FileKind::Regular }
///     fn save_as(&self) -> SaveAs { SaveAs::Refuse("an example") }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveAs {
    /// Re-opened on restore by its path in the container (a host file is
    /// checked against its fingerprint), with its flags and offset.
    Path,
    /// An end of pipe `pipe` (a sandbox id), saved once with its buffer.
    PipeEnd { pipe: u64, read: bool },
    /// The restoring command's own stdio number `index`.
    HostStdio(u32),
    /// A file with no name whose whole state is its saved kind (an
    /// eventfd's counter, a timerfd's setting, a signalfd's mask).
    Anonymous(super::state::FileStateKind),
    /// An epoll instance `id` (a sandbox id): its interest list is saved
    /// once, naming its files by their open-file ids.
    Epoll { id: u64 },
    /// An end of pseudo-terminal `index`, saved once with its state.
    Pty { index: u32, master: bool },
    /// Socket `id` (a sandbox id): saved once with its queues and links
    /// (sentry/src/net/state.rs).
    Socket { id: u64 },
    /// Cannot be checkpointed, for this reason: checkpoint refuses, naming
    /// the file.
    Refuse(&'static str),
}

/// The per-file-system half of an open file.
pub trait FileOps: Send + Sync + Any {
    fn as_any(&self) -> &dyn Any;

    fn kind(&self) -> FileKind;

    /// How an open file of this kind is checkpointed. Required, with no
    /// default: a new kind of file does not compile until it says whether
    /// and how it saves itself (or why it cannot, which checkpoint then
    /// reports naming the file).
    fn save_as(&self) -> SaveAs;

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Positional
    }

    /// Reads at `offset` (`None` for a stream's current position; a
    /// positional file always gets `Some`).
    fn read(&self, _io: &IoCtx<'_>, _buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn write(&self, _io: &IoCtx<'_>, _buf: &[u8], _offset: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    /// For a file whose reads are exactly pread(2)s of a host descriptor
    /// (a gofer-donated regular file): that descriptor, so a read can go
    /// straight into application memory. `None`: reads go through `read`.
    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// The size that SEEK_END and O_APPEND use.
    fn size(&self) -> Result<u64, Errno> {
        Ok(0)
    }

    /// lseek's SEEK_DATA (`data`) or SEEK_HOLE from `pos` (below the
    /// size) for a file that knows where its holes are. `None`: it does
    /// not, and the whole file is data with one hole at its end.
    fn seek_hole_data(&self, _pos: u64, _data: bool) -> Option<Result<u64, Errno>> {
        None
    }

    /// lseek for `SeekMode::Delegated` files.
    fn seek(&self, _offset: i64, _whence: i32) -> Result<u64, Errno> {
        Err(Errno::ESPIPE)
    }

    fn ioctl(&self, _cmd: u64, _input: &[u8]) -> Result<IoctlReply, Errno> {
        Err(Errno::ENOTTY)
    }

    /// The lines this kind of file adds to /proc/<pid>/fdinfo/N after
    /// pos, flags, mnt_id and ino (Linux's show_fdinfo), each ending in
    /// a newline.
    fn fdinfo(&self) -> String {
        String::new()
    }

    /// fallocate(2) on a regular file of this kind (`mode` checked by the
    /// caller against what any file system knows).
    fn fallocate(&self, _mode: i32, _offset: u64, _len: u64) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// What open(2) waits for once the file is opened, interruptibly (a
    /// FIFO end waits for its peer). Nothing, for most files.
    fn wait_open(&self, _io: &IoCtx<'_>) -> Result<(), Errno> {
        Ok(())
    }

    /// The events ready now (EPOLLIN, EPOLLOUT, EPOLLHUP, ...: poll and
    /// epoll share the bits). A file that cannot be polled is always
    /// ready for reading and writing (Linux's DEFAULT_POLLMASK).
    fn readiness(&self) -> u32 {
        super::poll::DEFAULT_POLLMASK
    }

    /// Whether the file takes part in polling (epoll_ctl refuses the rest
    /// with EPERM, as Linux does for regular files and directories).
    fn pollable(&self) -> bool {
        false
    }

    /// Where pollers wait for this file's readiness to change. `None`
    /// with [`FileOps::pollable`]: readiness changes unannounced (a host
    /// fd), so waiters re-check it every [`super::poll::RECHECK`].
    fn wait_queue(&self) -> Option<Arc<super::poll::WaitQueue>> {
        None
    }

    /// The sandbox's monotonic time (ns) at which readiness next changes
    /// by itself (a timerfd's expiry), so waiters wake then.
    fn next_change(&self) -> Option<i64> {
        None
    }

    /// Whether readiness may change by itself, at [`FileOps::next_change`],
    /// without a notification on the wait queue (a timerfd): an epoll set
    /// looks at such a file on every wait.
    fn timed(&self) -> bool {
        false
    }
}

/// The ops of an open directory: reads are EISDIR; listing goes through
/// [`OpenFile::getdents64`].
pub struct DirOps;

impl FileOps for DirOps {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        FileKind::Directory
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }
    fn read(&self, _io: &IoCtx<'_>, _buf: &mut [u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
    fn write(&self, _io: &IoCtx<'_>, _buf: &[u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EISDIR)
    }
}

/// The ops of an O_PATH file: it names a file and does nothing else.
pub struct PathOps(pub FileKind);

impl FileOps for PathOps {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn kind(&self) -> FileKind {
        self.0
    }
    fn save_as(&self) -> SaveAs {
        SaveAs::Path
    }
    fn read(&self, _io: &IoCtx<'_>, _buf: &mut [u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn write(&self, _io: &IoCtx<'_>, _buf: &[u8], _off: Option<u64>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn ioctl(&self, _cmd: u64, _input: &[u8]) -> Result<IoctlReply, Errno> {
        Err(Errno::EBADF)
    }
}

/// Status flags F_SETFL may change (Linux's SETFL_MASK).
const SETFL_MASK: i32 =
    libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;

/// The kernel's O_LARGEFILE on x86_64 and arm64 (the libc crate's is 0
/// there, as 64-bit userspace never needs to pass it).
pub(crate) const KERNEL_O_LARGEFILE: i32 = 0o100000;

/// Flags an open file keeps from open(2): the rest (O_CREAT, O_TRUNC,
/// O_CLOEXEC, ...) act at open time only.
const KEPT_FLAGS: i32 = libc::O_ACCMODE
    | SETFL_MASK
    | libc::O_PATH
    | libc::O_SYNC
    | libc::O_DSYNC
    | libc::O_LARGEFILE
    | KERNEL_O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW;

/// An open file description, shared by dup'ed descriptors and by fork.
pub struct OpenFile {
    dentry: Option<Arc<Dentry>>,
    inode: Arc<dyn Inode>,
    ops: Arc<dyn FileOps>,
    offset: Mutex<u64>,
    flags: AtomicI32,
    /// A directory's listing, taken when reading starts at offset 0 so that
    /// offsets stay stable across getdents64 calls.
    listing: Mutex<Vec<(DirEntry, i64)>>,
    /// The description's sandbox-wide id: the owner of its OFD and flock
    /// locks.
    id: u64,
    /// Where this description took OFD or flock locks: released when its
    /// last reference goes (Linux's locks_remove_file in __fput).
    locked: Mutex<Option<(Arc<FileLocks>, FileKey)>>,
    /// O_ASYNC's owner and signal (F_SETOWN, F_SETSIG).
    fasync: super::fasync::Fasync,
}

/// Open file description ids; 0 is never one.
static NEXT_DESCRIPTION: AtomicU64 = AtomicU64::new(1);

impl Drop for OpenFile {
    fn drop(&mut self) {
        let locked = self
            .locked
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((table, key)) = locked {
            table.release_description(key, self.id);
        }
        if let Some(d) = &self.dentry {
            if !self.is_path() {
                super::inotify::closed(d, self.writable());
            }
            super::inotify::released(d);
        }
    }
}

impl OpenFile {
    /// A new open file. `flags` are open(2)'s (with the O_LARGEFILE
    /// open(2) adds on 64-bit Linux, which F_GETFL shows).
    pub fn new(
        dentry: Option<Arc<Dentry>>,
        inode: Arc<dyn Inode>,
        ops: Arc<dyn FileOps>,
        flags: i32,
    ) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            dentry,
            inode,
            ops,
            offset: Mutex::new(0),
            flags: AtomicI32::new(flags & KEPT_FLAGS),
            listing: Mutex::new(Vec::new()),
            id: NEXT_DESCRIPTION.fetch_add(1, Ordering::Relaxed),
            locked: Mutex::new(None),
            fasync: Default::default(),
        })
    }

    /// A new anonymous-inode file (eventfd, timerfd, signalfd, epoll):
    /// unlike open(2), nothing adds O_LARGEFILE to its flags (Linux's
    /// anon_inode_getfile), so F_GETFL shows only the access mode,
    /// O_NONBLOCK and what the file's kind puts there (a PIDFD_THREAD
    /// pidfd's O_EXCL).
    pub(crate) fn new_anonymous(
        inode: Arc<dyn Inode>,
        ops: Arc<dyn FileOps>,
        flags: i32,
    ) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            dentry: None,
            inode,
            ops,
            offset: Mutex::new(0),
            flags: AtomicI32::new(flags & (KEPT_FLAGS | libc::O_EXCL)),
            listing: Mutex::new(Vec::new()),
            id: NEXT_DESCRIPTION.fetch_add(1, Ordering::Relaxed),
            locked: Mutex::new(None),
            fasync: Default::default(),
        })
    }

    /// The open file description's id, which owns its OFD and flock locks.
    pub fn description_id(&self) -> u64 {
        self.id
    }

    /// The file as locks know it: (st_dev, st_ino), whichever mount or
    /// dentry it was opened through.
    pub fn lock_key(&self) -> Result<FileKey, Errno> {
        let st = self.stat()?;
        Ok((st.dev, st.ino))
    }

    /// Notes that this description holds locks in `table` on `key`: they
    /// are released with its last reference.
    pub fn note_locked(&self, table: &Arc<FileLocks>, key: FileKey) {
        let mut slot = lock(&self.locked);
        if slot.is_none() {
            *slot = Some((table.clone(), key));
        }
    }

    pub fn dentry(&self) -> Option<&Arc<Dentry>> {
        self.dentry.as_ref()
    }

    pub fn inode(&self) -> &Arc<dyn Inode> {
        &self.inode
    }

    pub fn ops(&self) -> &Arc<dyn FileOps> {
        &self.ops
    }

    pub fn kind(&self) -> FileKind {
        self.ops.kind()
    }

    /// F_GETFL: the access mode and status flags.
    pub fn status_flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed) & !(libc::O_DIRECTORY | libc::O_NOFOLLOW)
    }

    /// F_SETFL: only O_APPEND, O_NONBLOCK, O_ASYNC, O_DIRECT and O_NOATIME
    /// change; the access mode and the rest are kept.
    pub fn set_status_flags(&self, flags: i32) {
        let _ = self
            .flags
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((old & !SETFL_MASK) | (flags & SETFL_MASK))
            });
    }

    /// Signal-driven I/O: the owner and signal of O_ASYNC.
    pub fn fasync(&self) -> &super::fasync::Fasync {
        &self.fasync
    }

    /// O_ASYNC turned on or off through descriptor `fd` (F_SETFL, FIOASYNC).
    pub fn set_async(&self, on: bool, fd: i32, signals: Weak<dyn super::fasync::IoSignals>) {
        self.fasync.set_armed(on, fd, &self.ops, signals);
        let _ = self
            .flags
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if on {
                    old | libc::O_ASYNC
                } else {
                    old & !libc::O_ASYNC
                })
            });
    }

    fn flag(&self, f: i32) -> bool {
        self.flags.load(Ordering::Relaxed) & f != 0
    }

    pub fn is_path(&self) -> bool {
        self.flag(libc::O_PATH)
    }

    pub fn readable(&self) -> bool {
        let acc = self.flags.load(Ordering::Relaxed) & libc::O_ACCMODE;
        !self.is_path() && (acc == libc::O_RDONLY || acc == libc::O_RDWR)
    }

    pub fn writable(&self) -> bool {
        let acc = self.flags.load(Ordering::Relaxed) & libc::O_ACCMODE;
        !self.is_path() && (acc == libc::O_WRONLY || acc == libc::O_RDWR)
    }

    fn io<'a>(&self, interrupt: &'a Interrupt) -> IoCtx<'a> {
        IoCtx {
            interrupt,
            nonblock: self.flag(libc::O_NONBLOCK),
        }
    }

    /// fallocate(2): a file opened for writing; a pipe is ESPIPE, a
    /// directory EISDIR, any other file that is not regular ENODEV.
    pub fn fallocate(&self, mode: i32, offset: u64, len: u64) -> Result<(), Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        match self.kind() {
            FileKind::Regular => {
                self.ops.fallocate(mode, offset, len)?;
                if let Some(d) = &self.dentry {
                    super::inotify::notify(d, super::inotify::IN_MODIFY);
                }
                Ok(())
            }
            FileKind::PipeRead | FileKind::PipeWrite => Err(Errno::ESPIPE),
            FileKind::Directory => Err(Errno::EISDIR),
            _ => Err(Errno::ENODEV),
        }
    }

    /// Waits as open(2) does once the file is open (see
    /// [`FileOps::wait_open`]).
    pub fn wait_open(&self, interrupt: &Interrupt) -> Result<(), Errno> {
        self.ops.wait_open(&self.io(interrupt))
    }

    /// The current offset (for /proc/self/fdinfo and checkpointing).
    pub fn offset(&self) -> u64 {
        *lock(&self.offset)
    }

    pub(crate) fn set_offset(&self, off: u64) {
        *lock(&self.offset) = off;
    }

    /// Tells inotify watches of this file about a read (IN_ACCESS) or a
    /// write (IN_MODIFY) that moved bytes.
    fn notify_io(&self, r: Result<usize, Errno>, mask: u32) -> Result<usize, Errno> {
        if let (Ok(n), Some(d)) = (&r, &self.dentry) {
            if *n > 0 {
                super::inotify::notify(d, mask);
            }
        }
        r
    }

    /// read(2).
    pub fn read(&self, buf: &mut [u8], interrupt: &Interrupt) -> Result<usize, Errno> {
        let r = self.read_inner(buf, interrupt);
        self.notify_io(r, super::inotify::IN_ACCESS)
    }

    fn read_inner(&self, buf: &mut [u8], interrupt: &Interrupt) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        let io = self.io(interrupt);
        if self.ops.seek_mode() == SeekMode::Positional {
            let mut off = lock(&self.offset);
            let n = self.ops.read(&io, buf, Some(*off))?;
            *off += n as u64;
            Ok(n)
        } else {
            self.ops.read(&io, buf, None)
        }
    }

    /// read(2) (`offset` None) or pread64(2) of a file backed by a host
    /// descriptor, with `fill(fd, at)` moving the bytes of the host file at
    /// `at` and returning their count; the offset and inotify kept as by
    /// [`OpenFile::read`]. `None` when the file has no host descriptor: the
    /// caller reads through a buffer.
    pub fn read_host_direct(
        &self,
        offset: Option<i64>,
        fill: &mut dyn FnMut(BorrowedFd<'_>, u64) -> Result<usize, Errno>,
    ) -> Option<Result<usize, Errno>> {
        let fd = self.ops.host_fd()?;
        if self.ops.seek_mode() != SeekMode::Positional {
            return None;
        }
        if !self.readable() {
            return Some(Err(Errno::EBADF));
        }
        let r = match offset {
            Some(o) => self.check_pos(o).and_then(|at| fill(fd, at)),
            None => {
                let mut off = lock(&self.offset);
                fill(fd, *off).inspect(|n| *off += *n as u64)
            }
        };
        Some(self.notify_io(r, super::inotify::IN_ACCESS))
    }

    /// write(2).
    pub fn write(&self, buf: &[u8], interrupt: &Interrupt) -> Result<usize, Errno> {
        let r = self.write_inner(buf, interrupt);
        self.notify_io(r, super::inotify::IN_MODIFY)
    }

    fn write_inner(&self, buf: &[u8], interrupt: &Interrupt) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        let io = self.io(interrupt);
        if self.ops.seek_mode() == SeekMode::Positional {
            let mut off = lock(&self.offset);
            if self.flag(libc::O_APPEND) {
                *off = self.ops.size()?;
            }
            let n = self.ops.write(&io, buf, Some(*off))?;
            *off += n as u64;
            Ok(n)
        } else {
            self.ops.write(&io, buf, None)
        }
    }

    fn check_pos(&self, offset: i64) -> Result<u64, Errno> {
        if self.ops.seek_mode() == SeekMode::Stream {
            return Err(Errno::ESPIPE);
        }
        u64::try_from(offset).map_err(|_| Errno::EINVAL)
    }

    /// pread64(2): the offset is neither used nor changed.
    pub fn pread(
        &self,
        buf: &mut [u8],
        offset: i64,
        interrupt: &Interrupt,
    ) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        let off = self.check_pos(offset)?;
        let r = self.ops.read(&self.io(interrupt), buf, Some(off));
        self.notify_io(r, super::inotify::IN_ACCESS)
    }

    /// pwrite64(2). Like Linux, O_APPEND still appends.
    pub fn pwrite(&self, buf: &[u8], offset: i64, interrupt: &Interrupt) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        let mut off = self.check_pos(offset)?;
        if self.flag(libc::O_APPEND) && self.ops.seek_mode() == SeekMode::Positional {
            off = self.ops.size()?;
        }
        let r = self.ops.write(&self.io(interrupt), buf, Some(off));
        self.notify_io(r, super::inotify::IN_MODIFY)
    }

    /// lseek(2).
    pub fn lseek(&self, offset: i64, whence: i32) -> Result<u64, Errno> {
        match self.ops.seek_mode() {
            SeekMode::Stream => return Err(Errno::ESPIPE),
            SeekMode::Ignored => return Ok(0),
            SeekMode::Delegated => return self.ops.seek(offset, whence),
            SeekMode::Positional => {}
        }
        let is_dir = self.kind() == FileKind::Directory;
        let mut off = lock(&self.offset);
        let base: i64 = match whence {
            libc::SEEK_SET => 0,
            libc::SEEK_CUR => i64::try_from(*off).map_err(|_| Errno::EOVERFLOW)?,
            libc::SEEK_END if !is_dir => {
                i64::try_from(self.ops.size()?).map_err(|_| Errno::EOVERFLOW)?
            }
            libc::SEEK_DATA | libc::SEEK_HOLE if !is_dir => {
                let size = self.ops.size()?;
                let pos = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
                if pos >= size {
                    return Err(Errno::ENXIO);
                }
                let data = whence == libc::SEEK_DATA;
                *off = match self.ops.seek_hole_data(pos, data) {
                    Some(r) => r?,
                    // No holes known: all data up to the size, one hole at
                    // the end.
                    None if data => pos,
                    None => size,
                };
                return Ok(*off);
            }
            _ => return Err(Errno::EINVAL),
        };
        let new = base.checked_add(offset).ok_or(Errno::EOVERFLOW)?;
        let new = u64::try_from(new).map_err(|_| Errno::EINVAL)?;
        *off = new;
        Ok(new)
    }

    /// fstat(2).
    pub fn stat(&self) -> Result<Stat, Errno> {
        match &self.dentry {
            Some(d) => d.stat(),
            None => self.inode.stat(),
        }
    }

    /// getdents64(2): as many `linux_dirent64` records as fit in `limit`
    /// bytes, from the current position; empty at the end. EINVAL if not
    /// even one record fits.
    pub fn getdents64(&self, limit: usize) -> Result<Vec<u8>, Errno> {
        if self.is_path() {
            return Err(Errno::EBADF);
        }
        if self.kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let mut off = lock(&self.offset);
        let mut listing = lock(&self.listing);
        if *off == 0 || listing.is_empty() {
            *listing = self.list()?;
        }
        let mut out = Vec::new();
        let start = usize::try_from(*off).unwrap_or(usize::MAX);
        for (i, (e, next)) in listing.iter().enumerate().skip(start) {
            if !abi::push_dirent(&mut out, limit, e.ino, *next, e.dtype, &e.name) {
                if out.is_empty() {
                    return Err(Errno::EINVAL);
                }
                break;
            }
            *off = (i + 1) as u64;
        }
        Ok(out)
    }

    /// The directory's entries with `.` and `..` first, each with the
    /// offset of the entry after it (d_off).
    fn list(&self) -> Result<Vec<(DirEntry, i64)>, Errno> {
        let st = self.stat()?;
        let parent_ino = match &self.dentry {
            Some(d) => match d
                .parent()
                .or_else(|| d.mountpoint().and_then(|m| m.parent()))
            {
                Some(p) => p.stat().map(|s| s.ino).unwrap_or(st.ino),
                None => st.ino,
            },
            None => st.ino,
        };
        let mut all = vec![
            DirEntry {
                name: b".".to_vec(),
                ino: st.ino,
                dtype: libc::DT_DIR,
            },
            DirEntry {
                name: b"..".to_vec(),
                ino: parent_ino,
                dtype: libc::DT_DIR,
            },
        ];
        all.extend(self.inode.readdir()?);
        Ok(all
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, (i + 1) as i64))
            .collect())
    }

    /// ioctl(2). `input` holds the bytes at the argument pointer for
    /// commands that take input (see [`ioctl_input_size`]).
    pub fn ioctl(&self, cmd: u64, input: &[u8]) -> Result<IoctlReply, Errno> {
        if self.is_path() {
            return Err(Errno::EBADF);
        }
        if cmd == libc::FIONBIO {
            let on = input.iter().any(|&b| b != 0);
            let _ = self
                .flags
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                    Some(if on {
                        f | libc::O_NONBLOCK
                    } else {
                        f & !libc::O_NONBLOCK
                    })
                });
            return Ok(IoctlReply::default());
        }
        self.ops.ioctl(cmd, input)
    }

    /// The events ready now (poll and epoll bits).
    pub fn readiness(&self) -> u32 {
        if self.is_path() {
            // An O_PATH file is polled as a bad descriptor (Linux: EPOLLNVAL
            // for poll, EBADF for epoll_ctl, which callers check first).
            return super::poll::EPOLLNVAL;
        }
        self.ops.readiness()
    }

    /// mmap(2) of this file with `shared` and `prot_write`: a shared
    /// writable mapping of a file sealed against writes is EPERM
    /// (memfd_check_seals_mmap; a file not open for writing is the memory
    /// manager's EACCES, checked first in Linux). Returns whether the
    /// mapping may become writable later (VM_MAYWRITE): not a shared one
    /// of a write-sealed file, whose mprotect(PROT_WRITE) is EACCES, nor
    /// one of a file not open for writing.
    pub fn check_mmap_seals(&self, shared: bool, prot_write: bool) -> Result<bool, Errno> {
        let write_seals = (libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE) as u32;
        let sealed = shared && self.inode.seals().unwrap_or(0) & write_seals != 0;
        if sealed && prot_write && self.writable() {
            return Err(Errno::EPERM);
        }
        Ok(self.writable() && !sealed)
    }

    /// The file as the memory manager maps it: regular files only.
    pub fn as_mappable(self: &Arc<Self>) -> Option<Arc<dyn MappableFile>> {
        if self.kind() != FileKind::Regular || self.is_path() {
            return None;
        }
        Some(Arc::new(FileMapping { file: self.clone() }))
    }

    /// The dentry's path for /proc/self/maps (filled in by the VFS caller
    /// through `Vfs::dentry_path`; here only the name is known).
    fn mapping_name(&self) -> String {
        match &self.dentry {
            Some(d) => super::vfs::path_of(d),
            None => String::new(),
        }
    }
}

/// A regular open file seen as a [`MappableFile`].
struct FileMapping {
    file: Arc<OpenFile>,
}

impl MappableFile for FileMapping {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: false,
        };
        self.file.ops.read(&io, buf, Some(offset))
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        if !self.file.writable() {
            return Err(Errno::EACCES);
        }
        let intr = Interrupt::new();
        let io = IoCtx {
            interrupt: &intr,
            nonblock: false,
        };
        self.file.ops.write(&io, buf, Some(offset))
    }

    fn size(&self) -> Result<u64, Errno> {
        self.file.ops.size()
    }

    fn mapping_name(&self) -> String {
        self.file.mapping_name()
    }

    fn unnamed(&self) -> bool {
        self.file.dentry.as_ref().is_none_or(|d| d.is_unlinked())
    }

    fn open_file(&self) -> Option<Arc<crate::vfs::OpenFile>> {
        Some(self.file.clone())
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.file.inode) as *const () as usize
    }

    fn map_shared(&self, offset: u64, len: u64) -> Option<u64> {
        self.tmpfs()?.inode().map_shared(offset, len)
    }

    fn unmap_shared(&self, offset: u64, mf_offset: u64, len: u64) {
        if let Some(t) = self.tmpfs() {
            t.inode().unmap_shared(offset, mf_offset, len);
        }
    }

    fn holds_page(&self, offset: u64) -> bool {
        self.tmpfs().is_none_or(|t| t.inode().holds_page(offset))
    }

    fn fault_in(&self, offset: u64) -> Result<(), Errno> {
        match self.tmpfs() {
            Some(t) => t.inode().fault_in(offset),
            None => Ok(()),
        }
    }

    fn contents_fixed(&self) -> bool {
        self.file
            .ops
            .as_any()
            .downcast_ref::<super::gofer_fs::HostFileOps>()
            .is_some_and(|h| h.contents_fixed())
    }
}

impl FileMapping {
    /// A tmpfs file (also an overlay file once copied up): its pages are
    /// memory-file pages, mapped directly by shared mappings.
    fn tmpfs(&self) -> Option<&super::tmpfs::TmpfsFileOps> {
        self.file
            .ops
            .as_any()
            .downcast_ref::<super::tmpfs::TmpfsFileOps>()
    }
}

/// `sizeof(struct termios)` as the kernel's TCGETS/TCSETS use it.
pub const KERNEL_TERMIOS_SIZE: usize = 36;

/// How many bytes an ioctl reads from its argument pointer, for the
/// syscall handler to copy in before calling [`OpenFile::ioctl`].
pub fn ioctl_input_size(cmd: u64) -> usize {
    match cmd {
        libc::TCSETS | libc::TCSETSW | libc::TCSETSF => KERNEL_TERMIOS_SIZE,
        libc::TIOCSWINSZ => 8,
        libc::FIONBIO | libc::TIOCSPGRP => 4,
        // `struct ifreq`: the interface ioctls on sockets (net/inet/procnet.rs).
        libc::SIOCGIFFLAGS
        | libc::SIOCGIFADDR
        | libc::SIOCGIFNETMASK
        | libc::SIOCGIFINDEX
        | libc::SIOCGIFMTU
        | libc::SIOCGIFNAME
        | libc::SIOCGIFTXQLEN => 40,
        _ => 0,
    }
}
