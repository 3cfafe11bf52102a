//! inotify(7) for changes made inside the sandbox (gVisor's vfs/inotify.go,
//! Linux's fs/notify/inotify).
//!
//! A watch names an inode through the dentry it was added on (which it
//! holds, as Linux's mark holds the inode). The VFS reports what happens
//! to a dentry (`notify*`) and every instance watching the file, or its
//! parent directory for events on a named child, queues an event. The
//! registry of watched files is global and keyed by (st_dev, st_ino), so
//! every name of a file (hard links, overlay dentries) reaches its
//! watches; with no watch anywhere, reporting costs one atomic load.
//!
//! Saved form: inline in the open file's record (`FileStateKind::Inotify`):
//! each watch by the path of its dentry, re-resolved on restore, and the
//! queued events as they are.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::{Deserialize, Serialize};

use super::dentry::{lock, Dentry};
use super::file::{FileKind, FileOps, IoCtx, IoctlReply, OpenFile, SaveAs, SeekMode};
use super::poll::{block_on, WaitQueue, EPOLLIN, EPOLLRDNORM};
use super::state::FileStateKind;
use crate::errno::Errno;

pub const IN_ACCESS: u32 = 0x1;
pub const IN_MODIFY: u32 = 0x2;
pub const IN_ATTRIB: u32 = 0x4;
pub const IN_CLOSE_WRITE: u32 = 0x8;
pub const IN_CLOSE_NOWRITE: u32 = 0x10;
pub const IN_OPEN: u32 = 0x20;
pub const IN_MOVED_FROM: u32 = 0x40;
pub const IN_MOVED_TO: u32 = 0x80;
pub const IN_CREATE: u32 = 0x100;
pub const IN_DELETE: u32 = 0x200;
pub const IN_DELETE_SELF: u32 = 0x400;
pub const IN_MOVE_SELF: u32 = 0x800;
pub const IN_UNMOUNT: u32 = 0x2000;
pub const IN_Q_OVERFLOW: u32 = 0x4000;
pub const IN_IGNORED: u32 = 0x8000;
pub const IN_ONLYDIR: u32 = 0x0100_0000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
pub const IN_MASK_CREATE: u32 = 0x1000_0000;
pub const IN_MASK_ADD: u32 = 0x2000_0000;
pub const IN_ISDIR: u32 = 0x4000_0000;
pub const IN_ONESHOT: u32 = 0x8000_0000;

/// The events a watch can ask for.
pub const IN_ALL_EVENTS: u32 = 0xfff;
/// Every bit inotify_add_watch accepts (Linux's ALL_INOTIFY_BITS).
pub const ALL_BITS: u32 = IN_ALL_EVENTS
    | IN_UNMOUNT
    | IN_Q_OVERFLOW
    | IN_IGNORED
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
    | IN_MASK_CREATE
    | IN_MASK_ADD
    | IN_ISDIR
    | IN_ONESHOT;
/// What a watch keeps of the mask it was given.
const KEPT_BITS: u32 = IN_ALL_EVENTS | IN_EXCL_UNLINK | IN_ONESHOT;

/// Linux's default fs.inotify.max_queued_events.
pub const MAX_QUEUED_EVENTS: usize = 16384;
/// Linux's default fs.inotify.max_user_watches is far larger; this bounds
/// what one instance (and a statefile) may hold.
pub const MAX_WATCHES: usize = 65536;
/// `sizeof(struct inotify_event)`.
const EVENT_HEADER: usize = 16;

/// One queued event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyEventRecord {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// The child's name for an event on a watched directory's entry.
    pub name: Vec<u8>,
}
statefile::versioned!(InotifyEventRecord, "vfs.InotifyEvent", 1);

/// One watch: its descriptor, mask and the path of the file it watches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatchRecord {
    pub wd: i32,
    pub mask: u32,
    pub path: Vec<u8>,
}
statefile::versioned!(InotifyWatchRecord, "vfs.InotifyWatch", 1);

/// An inotify instance's saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyRecord {
    pub next_wd: i32,
    pub watches: Vec<InotifyWatchRecord>,
    pub events: Vec<InotifyEventRecord>,
}
statefile::versioned!(
    InotifyRecord,
    "vfs.Inotify",
    1,
    [InotifyWatchRecord, InotifyEventRecord]
);

impl InotifyRecord {
    /// Whether the values can be an instance's (a statefile's are
    /// untrusted): watch descriptors below `next_wd` and unique, known
    /// mask bits, absolute paths, names no longer than NAME_MAX without
    /// NUL or '/', and no more watches or events than one instance holds.
    pub fn check(&self) -> Result<(), String> {
        if self.next_wd < 1 {
            return Err(format!("inotify next_wd {}", self.next_wd));
        }
        if self.watches.len() > MAX_WATCHES || self.events.len() > MAX_QUEUED_EVENTS + 1 {
            return Err("inotify: too many watches or events".into());
        }
        let mut wds = std::collections::HashSet::new();
        for w in &self.watches {
            if w.wd < 1 || w.wd >= self.next_wd || !wds.insert(w.wd) {
                return Err(format!("inotify watch descriptor {}", w.wd));
            }
            if w.mask & !KEPT_BITS != 0 {
                return Err(format!("inotify watch {} mask {:#x}", w.wd, w.mask));
            }
            if !w.path.starts_with(b"/")
                || w.path.len() >= super::resolve::PATH_MAX
                || w.path.contains(&0)
            {
                return Err(format!("inotify watch {} path", w.wd));
            }
        }
        for e in &self.events {
            let known = e.mask & !(ALL_BITS & !(IN_ONLYDIR | IN_DONT_FOLLOW)) == 0;
            let name_ok = e.name.len() <= super::resolve::NAME_MAX
                && !e.name.contains(&0)
                && !e.name.contains(&b'/');
            if !known || !name_ok || e.wd < -1 || e.wd == 0 || e.wd >= self.next_wd {
                return Err(format!("inotify event {e:?}"));
            }
        }
        Ok(())
    }
}

impl InotifyEventRecord {
    /// Bytes of this event as read(2) returns it: the header and the name
    /// NUL-padded to a multiple of the header's size.
    fn size(&self) -> usize {
        EVENT_HEADER + padded_len(&self.name)
    }
}

fn padded_len(name: &[u8]) -> usize {
    if name.is_empty() {
        0
    } else {
        (name.len() + 1).next_multiple_of(EVENT_HEADER)
    }
}

/// A watched file: (st_dev, st_ino).
type Key = (u64, u64);

struct Watch {
    dentry: Arc<Dentry>,
    key: Key,
    mask: u32,
}

#[derive(Default)]
struct State {
    next_wd: i32,
    watches: BTreeMap<i32, Watch>,
    events: VecDeque<InotifyEventRecord>,
    /// Bytes of the queued events (FIONREAD).
    bytes: usize,
}

/// An inotify instance: the open file's ops.
pub struct Inotify {
    id: u64,
    me: Weak<Inotify>,
    state: Mutex<State>,
    queue: Arc<WaitQueue>,
}

/// Who watches an inode: (instance id, instance, wd).
type Watchers = Vec<(u64, Weak<Inotify>, i32)>;

struct Registry {
    watched: Mutex<HashMap<Key, Watchers>>,
    /// Watches anywhere: zero lets every report return at once.
    count: AtomicUsize,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        watched: Mutex::new(HashMap::new()),
        count: AtomicUsize::new(0),
    })
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);
/// Rename cookies; 0 is never one.
static NEXT_COOKIE: AtomicU32 = AtomicU32::new(1);

/// The registry's key for the file `d` names (an error: it cannot be
/// stat'ed, so nothing can watch it).
fn key_of(d: &Dentry) -> Result<Key, Errno> {
    d.stat().map(|st| (st.dev, st.ino))
}

/// A fresh cookie tying a MOVED_FROM to its MOVED_TO.
pub(crate) fn new_cookie() -> u32 {
    loop {
        let c = NEXT_COOKIE.fetch_add(1, Ordering::Relaxed);
        if c != 0 {
            return c;
        }
    }
}

fn watching() -> bool {
    registry().count.load(Ordering::Relaxed) != 0
}

/// Queues `mask` (with `name`, `cookie`) for every watch on the file `d`
/// names whose mask wants it.
fn deliver(d: &Dentry, mask: u32, cookie: u32, name: &[u8]) {
    let Ok(key) = key_of(d) else {
        return;
    };
    let targets: Vec<(Arc<Inotify>, i32)> = {
        let w = lock(&registry().watched);
        match w.get(&key) {
            Some(list) => list
                .iter()
                .filter_map(|(_, i, wd)| i.upgrade().map(|i| (i, *wd)))
                .collect(),
            None => return,
        }
    };
    for (ino, wd) in targets {
        ino.event(wd, mask, cookie, name);
    }
}

/// An event on the file `d` names, to the watches on its parent directory
/// (with its name) and then on the file itself (IN_ACCESS, IN_MODIFY,
/// IN_ATTRIB, IN_OPEN, IN_CLOSE_*).
pub(crate) fn notify(d: &Dentry, mask: u32) {
    if !watching() {
        return;
    }
    let mask = mask | if d.is_dir() { IN_ISDIR } else { 0 };
    if !d.is_unlinked() {
        if let Some(p) = d.parent() {
            deliver(&p, mask, 0, &d.name());
        }
    }
    deliver(d, mask, 0, b"");
}

/// An event on the entry `name` of directory `dir` (IN_CREATE,
/// IN_DELETE, IN_MOVED_FROM/TO).
pub(crate) fn notify_child(dir: &Dentry, name: &[u8], mask: u32, is_dir: bool, cookie: u32) {
    if !watching() {
        return;
    }
    let mask = mask | if is_dir { IN_ISDIR } else { 0 };
    deliver(dir, mask, cookie, name);
}

/// An event on the file itself alone (IN_ATTRIB for a link count,
/// IN_MOVE_SELF).
pub(crate) fn notify_self(d: &Dentry, mask: u32) {
    if watching() {
        deliver(d, mask, 0, b"");
    }
}

/// The file is gone (its last name removed): IN_DELETE_SELF, then each
/// watch on it ends with IN_IGNORED.
pub(crate) fn removed(d: &Dentry) {
    if !watching() {
        return;
    }
    let Ok(key) = key_of(d) else {
        return;
    };
    deliver(d, IN_DELETE_SELF, 0, b"");
    let targets: Watchers = lock(&registry().watched).remove(&key).unwrap_or_default();
    registry().count.fetch_sub(targets.len(), Ordering::Relaxed);
    for (_, ino, wd) in targets {
        if let Some(ino) = ino.upgrade() {
            ino.drop_watch(wd, false);
        }
    }
}

/// Whether the file `d` names has no link left.
fn no_links(d: &Dentry) -> bool {
    d.inode().stat().map_or(true, |st| st.nlink == 0)
}

/// The name `d` stood for was just removed (unlink, rmdir, a rename over
/// it). As Linux's d_delete: the file is gone for its watches
/// (IN_DELETE_SELF, IN_IGNORED) now if it has no link left and nothing
/// else holds this dentry (an open file, a mapping, a cwd), else when the
/// last holder lets go ([`released`]). A directory goes at once.
pub(crate) fn name_removed(d: &Arc<Dentry>) {
    if watching() && (d.is_dir() || (held_elsewhere(d) == 0 && no_links(d))) {
        removed(d);
    }
}

/// How many hold `d` beside the caller's one reference and the watches
/// (which hold the dentry they were added by, for saving its path, but do
/// not keep the file alive: Linux's marks do not pin the dentry).
fn held_elsewhere(d: &Arc<Dentry>) -> usize {
    let Ok(key) = key_of(d) else {
        return Arc::strong_count(d).saturating_sub(1);
    };
    let targets: Vec<(Arc<Inotify>, i32)> = lock(&registry().watched)
        .get(&key)
        .map(|list| {
            list.iter()
                .filter_map(|(_, i, wd)| i.upgrade().map(|i| (i, *wd)))
                .collect()
        })
        .unwrap_or_default();
    // The registry's lock is let go first: an instance's state is locked
    // before the registry's elsewhere.
    let by_watches = targets
        .iter()
        .filter(|(i, wd)| {
            lock(&i.state)
                .watches
                .get(wd)
                .is_some_and(|w| Arc::ptr_eq(&w.dentry, d))
        })
        .count();
    Arc::strong_count(d).saturating_sub(1 + by_watches)
}

/// The holder of `d` that is going (an open file's last reference) was
/// its last: if its name was removed and no link is left, the file is
/// gone now (Linux's dentry_unlink_inode at the last dput).
pub(crate) fn released(d: &Arc<Dentry>) {
    if watching() && d.is_unlinked() && !d.is_dir() && held_elsewhere(d) == 0 && no_links(d) {
        removed(d);
    }
}

/// An open file's last reference went: IN_CLOSE_WRITE or IN_CLOSE_NOWRITE.
pub(crate) fn closed(d: &Dentry, wrote: bool) {
    notify(
        d,
        if wrote {
            IN_CLOSE_WRITE
        } else {
            IN_CLOSE_NOWRITE
        },
    );
}

impl Inotify {
    /// inotify_init1(2)'s file (`nonblock`: IN_NONBLOCK).
    pub fn open(nonblock: bool) -> Arc<OpenFile> {
        let ops = Self::new();
        let flags = libc::O_RDONLY | if nonblock { libc::O_NONBLOCK } else { 0 };
        super::eventfd::anon_file(ops, flags)
    }

    fn new() -> Arc<Inotify> {
        Arc::new_cyclic(|me| Inotify {
            id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            state: Mutex::new(State {
                next_wd: 1,
                ..State::default()
            }),
            queue: WaitQueue::new(),
        })
    }

    /// inotify_add_watch(2) on the already resolved `d` (the caller has
    /// checked read permission): the watch's descriptor.
    pub fn add_watch(&self, d: &Arc<Dentry>, mask: u32) -> Result<i32, Errno> {
        if mask == 0 || mask & !ALL_BITS != 0 {
            return Err(Errno::EINVAL);
        }
        if mask & IN_MASK_ADD != 0 && mask & IN_MASK_CREATE != 0 {
            return Err(Errno::EINVAL);
        }
        if mask & IN_ONLYDIR != 0 && !d.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let key = key_of(d)?;
        let mut st = lock(&self.state);
        if let Some((wd, w)) = st.watches.iter_mut().find(|(_, w)| w.key == key) {
            if mask & IN_MASK_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            if mask & IN_MASK_ADD != 0 {
                w.mask |= mask & KEPT_BITS;
            } else {
                w.mask = mask & KEPT_BITS;
            }
            return Ok(*wd);
        }
        if st.watches.len() >= MAX_WATCHES {
            return Err(Errno::ENOSPC);
        }
        let wd = st.next_wd;
        st.next_wd = wd.checked_add(1).ok_or(Errno::ENOSPC)?;
        self.attach(&mut st, wd, d.clone(), key, mask & KEPT_BITS);
        Ok(wd)
    }

    fn attach(&self, st: &mut State, wd: i32, dentry: Arc<Dentry>, key: Key, mask: u32) {
        st.watches.insert(wd, Watch { dentry, key, mask });
        lock(&registry().watched)
            .entry(key)
            .or_default()
            .push((self.id, self.me.clone(), wd));
        registry().count.fetch_add(1, Ordering::Relaxed);
    }

    /// inotify_rm_watch(2).
    pub fn rm_watch(&self, wd: i32) -> Result<(), Errno> {
        if !lock(&self.state).watches.contains_key(&wd) {
            return Err(Errno::EINVAL);
        }
        self.drop_watch(wd, true);
        Ok(())
    }

    /// Ends watch `wd` with IN_IGNORED; `unregister` takes it out of the
    /// registry too (the caller did, otherwise).
    fn drop_watch(&self, wd: i32, unregister: bool) {
        let Some(w) = lock(&self.state).watches.remove(&wd) else {
            return;
        };
        if unregister {
            unregister_watch(w.key, self.id, wd);
        }
        self.push(InotifyEventRecord {
            wd,
            mask: IN_IGNORED,
            cookie: 0,
            name: Vec::new(),
        });
    }

    /// An event for watch `wd`, if its mask wants it; a one-shot watch
    /// ends after its first.
    fn event(&self, wd: i32, mask: u32, cookie: u32, name: &[u8]) {
        let oneshot = {
            let st = lock(&self.state);
            let Some(w) = st.watches.get(&wd) else {
                return;
            };
            if w.mask & mask & IN_ALL_EVENTS == 0 {
                return;
            }
            w.mask & IN_ONESHOT != 0
        };
        self.push(InotifyEventRecord {
            wd,
            mask,
            cookie,
            name: name.to_vec(),
        });
        if oneshot {
            self.drop_watch(wd, true);
        }
    }

    /// Queues an event: one identical to the last queued is merged into it;
    /// a full queue ends with one IN_Q_OVERFLOW.
    fn push(&self, e: InotifyEventRecord) {
        {
            let mut st = lock(&self.state);
            if st.events.back() == Some(&e) {
                return;
            }
            let e = if st.events.len() >= MAX_QUEUED_EVENTS {
                let overflow = InotifyEventRecord {
                    wd: -1,
                    mask: IN_Q_OVERFLOW,
                    cookie: 0,
                    name: Vec::new(),
                };
                if st.events.back() == Some(&overflow) {
                    return;
                }
                overflow
            } else {
                e
            };
            st.bytes += e.size();
            st.events.push_back(e);
        }
        self.queue.notify(EPOLLIN | EPOLLRDNORM);
    }

    /// The saved form, or why it cannot be saved.
    pub fn record(&self) -> Result<InotifyRecord, &'static str> {
        let st = lock(&self.state);
        let mut watches = Vec::with_capacity(st.watches.len());
        for (wd, w) in &st.watches {
            if w.dentry.is_unlinked() {
                return Err("an inotify watch on a file with no name left");
            }
            let path = super::vfs::path_bytes(&w.dentry);
            if path.len() >= super::resolve::PATH_MAX {
                return Err("an inotify watch on a path longer than PATH_MAX");
            }
            watches.push(InotifyWatchRecord {
                wd: *wd,
                mask: w.mask,
                path,
            });
        }
        Ok(InotifyRecord {
            next_wd: st.next_wd,
            watches,
            events: st.events.iter().cloned().collect(),
        })
    }

    /// An instance holding `r` (checked with [`InotifyRecord::check`]
    /// first), each watch's path resolved by `resolve` (not following a
    /// last symlink: the path is the watched file's own).
    pub fn restore(
        r: &InotifyRecord,
        flags: i32,
        resolve: impl Fn(&[u8]) -> Result<Arc<Dentry>, Errno>,
    ) -> Result<Arc<OpenFile>, String> {
        r.check()?;
        let ops = Self::new();
        {
            let mut st = lock(&ops.state);
            st.next_wd = r.next_wd;
            for w in &r.watches {
                let d = resolve(&w.path).map_err(|e| {
                    format!(
                        "inotify watch {} on {}: {e}",
                        w.wd,
                        String::from_utf8_lossy(&w.path)
                    )
                })?;
                let key = key_of(&d).map_err(|e| format!("inotify watch {}: {e}", w.wd))?;
                if st.watches.values().any(|x| x.key == key) {
                    return Err(format!("inotify watch {}: a file watched twice", w.wd));
                }
                ops.attach(&mut st, w.wd, d, key, w.mask);
            }
            for e in &r.events {
                st.bytes += e.size();
                st.events.push_back(e.clone());
            }
        }
        Ok(super::eventfd::anon_file(ops, flags & libc::O_NONBLOCK))
    }

    fn read_events(&self, io: &IoCtx<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
        let take = || -> Result<Option<usize>, Errno> {
            let mut st = lock(&self.state);
            let Some(first) = st.events.front() else {
                return if io.nonblock {
                    Err(Errno::EAGAIN)
                } else {
                    Ok(None)
                };
            };
            if first.size() > buf.len() {
                return Err(Errno::EINVAL);
            }
            let mut done = 0;
            while let Some(e) = st.events.front() {
                let size = e.size();
                if done + size > buf.len() {
                    break;
                }
                let out = &mut buf[done..done + size];
                out.fill(0);
                out[0..4].copy_from_slice(&e.wd.to_ne_bytes());
                out[4..8].copy_from_slice(&e.mask.to_ne_bytes());
                out[8..12].copy_from_slice(&e.cookie.to_ne_bytes());
                let len = u32::try_from(size - EVENT_HEADER).unwrap_or(0);
                out[12..16].copy_from_slice(&len.to_ne_bytes());
                out[EVENT_HEADER..EVENT_HEADER + e.name.len()].copy_from_slice(&e.name);
                done += size;
                st.bytes -= size;
                st.events.pop_front();
            }
            Ok(Some(done))
        };
        block_on(&self.queue, EPOLLIN, io.interrupt, take)
    }
}

fn unregister_watch(key: Key, id: u64, wd: i32) {
    let mut w = lock(&registry().watched);
    if let Some(list) = w.get_mut(&key) {
        let before = list.len();
        list.retain(|(i, _, d)| !(*i == id && *d == wd));
        registry()
            .count
            .fetch_sub(before - list.len(), Ordering::Relaxed);
        if list.is_empty() {
            w.remove(&key);
        }
    }
}

impl Drop for Inotify {
    /// The last descriptor went: its watches go with it.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (wd, w) in std::mem::take(&mut st.watches) {
            unregister_watch(w.key, self.id, wd);
        }
    }
}

/// The inotify instance behind an open file.
pub fn inotify_of(file: &OpenFile) -> Option<&Inotify> {
    file.ops().as_any().downcast_ref::<Inotify>()
}

impl FileOps for Inotify {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Anonymous
    }

    fn save_as(&self) -> SaveAs {
        match self.record() {
            Ok(r) => SaveAs::Anonymous(FileStateKind::Inotify(r)),
            Err(why) => SaveAs::Refuse(why),
        }
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn read(&self, io: &IoCtx<'_>, buf: &mut [u8], _offset: Option<u64>) -> Result<usize, Errno> {
        self.read_events(io, buf)
    }

    fn ioctl(&self, cmd: u64, _input: &[u8]) -> Result<IoctlReply, Errno> {
        if cmd == libc::FIONREAD {
            let n = lock(&self.state).bytes;
            let n = i32::try_from(n).unwrap_or(i32::MAX);
            return Ok(IoctlReply {
                ret: 0,
                out: n.to_ne_bytes().to_vec(),
            });
        }
        Err(Errno::ENOTTY)
    }

    fn readiness(&self) -> u32 {
        if lock(&self.state).events.is_empty() {
            0
        } else {
            EPOLLIN | EPOLLRDNORM
        }
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.queue.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::resolve::tests::tmpfs_vfs;

    fn events(f: &OpenFile) -> Vec<(i32, u32, String)> {
        let mut buf = vec![0u8; 4096];
        let n = f.read(&mut buf, &Interrupt::new()).unwrap_or(0);
        let mut out = Vec::new();
        let mut p = 0;
        while p < n {
            let word = |i: usize| u32::from_ne_bytes(buf[p + i..p + i + 4].try_into().unwrap());
            let len = word(12) as usize;
            let name = &buf[p + 16..p + 16 + len];
            let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
            out.push((
                word(0) as i32,
                word(4),
                String::from_utf8_lossy(name).into_owned(),
            ));
            p += 16 + len;
        }
        out
    }

    #[test]
    fn watches_and_queued_events_survive_a_record_round_trip() {
        let vfs = tmpfs_vfs();
        let r = vfs.root().clone();
        vfs.mkdir_at(&r, b"/d", 0o755).unwrap();
        let f = Inotify::open(true);
        let ino = inotify_of(&f).unwrap();
        let d = vfs.resolve(&r, b"/d", true).unwrap();
        assert_eq!(ino.add_watch(&d, IN_CREATE | IN_DELETE), Ok(1));
        assert_eq!(
            ino.add_watch(&d, IN_CREATE | IN_MASK_CREATE),
            Err(Errno::EEXIST)
        );
        assert_eq!(ino.add_watch(&d, 0), Err(Errno::EINVAL));
        vfs.open_at(&r, b"/d/x", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        let rec = ino.record().unwrap();
        assert_eq!(rec.watches[0].path, b"/d");
        assert_eq!(rec.events.len(), 1);
        drop(f);

        let back = Inotify::restore(&rec, libc::O_NONBLOCK, |p| vfs.resolve(&r, p, false)).unwrap();
        assert_eq!(events(&back), [(1, IN_CREATE, "x".to_string())]);
        vfs.unlink_at(&r, b"/d/x", 0).unwrap();
        assert_eq!(events(&back), [(1, IN_DELETE, "x".to_string())]);
        let mut b = [0u8; 64];
        assert_eq!(back.read(&mut b, &Interrupt::new()), Err(Errno::EAGAIN));

        // Hostile records are refused before anything is resolved.
        let mut bad = rec.clone();
        bad.watches[0].wd = 7;
        assert!(bad.check().is_err());
        let mut bad = rec.clone();
        bad.events[0].name = b"a/b".to_vec();
        assert!(bad.check().is_err());
        let mut bad = rec.clone();
        bad.watches[0].mask = IN_MASK_ADD;
        assert!(bad.check().is_err());
        let mut bad = rec;
        bad.watches[0].path = b"relative".to_vec();
        assert!(Inotify::restore(&bad, 0, |_| Err(Errno::ENOENT)).is_err());
    }
}
