//! epoll(7) (gVisor's vfs/epoll.go): an interest list of (file, fd) pairs
//! with the events each waits for, and a ready list fed by the files'
//! wait queues.
//!
//! Like Linux, an epoll set holds its files weakly: an item goes when the
//! last descriptor of its open file is closed (it is found gone and
//! dropped the next time the set is looked at), not when the descriptor it
//! was added with is. Level-triggered items stay on the ready list after
//! being reported and are looked at again by the next wait;
//! edge-triggered ones are reported once per notification; EPOLLONESHOT
//! disables an item after one report until EPOLL_CTL_MOD re-arms it.
//!
//! No lock of an epoll set is held while a file's readiness is computed or
//! a queue notified: a file's notification takes the set's lock (to put an
//! item on the ready list), and a set inside a set computes its readiness
//! from its own items.
//!
//! Saved form: [`EpollRecord`], one per set by its sandbox id, its items
//! naming their files by open-file id.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use super::dentry::lock;
use super::eventfd::anon_file;
use super::file::{FileKind, FileOps, OpenFile, SaveAs, SeekMode};
use super::poll::{
    Listener, Registration, WaitQueue, ALWAYS, EPOLLET, EPOLLEXCLUSIVE, EPOLLIN, EPOLLONESHOT,
    EPOLLRDNORM, EPOLLWAKEUP,
};
use crate::errno::Errno;

/// Linux's EP_MAX_NESTS: how deep epoll sets may nest.
pub const MAX_NESTS: usize = 4;

/// The flag bits of an item's events (Linux's EP_PRIVATE_BITS): what is
/// left of a disabled (fired one-shot) item.
const PRIVATE_BITS: u32 = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;

/// Which events EPOLLEXCLUSIVE may come with (Linux's
/// EPOLLEXCLUSIVE_OK_BITS).
pub const EXCLUSIVE_OK: u32 = super::poll::EPOLLIN
    | super::poll::EPOLLOUT
    | super::poll::EPOLLRDNORM
    | super::poll::EPOLLWRNORM
    | super::poll::EPOLLRDBAND
    | super::poll::EPOLLWRBAND
    | super::poll::EPOLLERR
    | super::poll::EPOLLHUP
    | EPOLLWAKEUP
    | EPOLLET
    | EPOLLEXCLUSIVE;

static NEXT_EPOLL: AtomicU64 = AtomicU64::new(1);

/// Every live epoll set of the Sentry, for the nesting check of sets
/// inside sets (which looks for the sets holding one).
static SETS: Mutex<Vec<Weak<Epoll>>> = Mutex::new(Vec::new());

std::thread_local! {
    /// How many epoll sets this host thread is computing readiness
    /// through: bounded, so that no arrangement of sets (however it was
    /// made) can recurse without end.
    static READINESS_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// An item's key: its open file (by address, while it lives) and the
/// descriptor it was added with.
type Key = (usize, i32);

fn key_of(file: &Arc<OpenFile>, fd: i32) -> Key {
    (Arc::as_ptr(file) as usize, fd)
}

struct Item {
    file: Weak<OpenFile>,
    fd: i32,
    events: u32,
    data: u64,
    /// On the ready list.
    queued: bool,
    /// The file has no wait queue: looked at on every wait.
    polled: bool,
    /// The file's readiness changes by itself (a timerfd): looked at on
    /// every wait too.
    timed: bool,
    /// For a polled edge-triggered item: the readiness last seen.
    last: u32,
    listener: Arc<ItemListener>,
    _registration: Option<Registration>,
}

struct ItemListener {
    ep: Weak<Epoll>,
    key: Key,
}

impl Listener for ItemListener {
    fn notify(&self, _events: u32) {
        if let Some(ep) = self.ep.upgrade() {
            ep.mark_ready(self.key);
        }
    }
}

#[derive(Default)]
struct State {
    items: BTreeMap<Key, Item>,
    ready: VecDeque<Key>,
    /// The polled and timed items, looked at on every wait (so a wait
    /// costs the ready and watched items, not the whole set).
    watched: std::collections::BTreeSet<Key>,
    /// The items that are epoll sets themselves (their timed items count
    /// for this set's next change).
    nested: std::collections::BTreeSet<Key>,
}

/// One epoll instance.
pub struct Epoll {
    id: u64,
    me: Weak<Epoll>,
    state: Mutex<State>,
    /// Waiters in epoll_wait, and pollers of the epoll fd itself.
    queue: Arc<WaitQueue>,
}

/// One item's saved form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollItemRecord {
    /// The open file's id in the statefile.
    pub file: u64,
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// On the ready list (an edge not yet reported).
    pub ready: bool,
}
statefile::versioned!(EpollItemRecord, "vfs.EpollItem", 1);

/// An epoll set's saved form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollRecord {
    pub id: u64,
    pub items: Vec<EpollItemRecord>,
}
statefile::savable_serde!(EpollRecord, "vfs.Epoll", 1, [EpollItemRecord]);

/// What epoll_ctl does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctl {
    Add,
    Mod,
    Del,
}

/// One reported event: the ready events and the item's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub events: u32,
    pub data: u64,
}

impl Epoll {
    /// A new set (with `id` on restore) and its open file.
    pub fn open(id: Option<u64>, cloexec_free_flags: i32) -> (Arc<Epoll>, Arc<OpenFile>) {
        let id = match id {
            Some(id) => {
                NEXT_EPOLL.fetch_max(id.saturating_add(1), Ordering::Relaxed);
                id
            }
            None => NEXT_EPOLL.fetch_add(1, Ordering::Relaxed),
        };
        let ep = Arc::new_cyclic(|me| Epoll {
            id,
            me: me.clone(),
            state: Mutex::new(State::default()),
            queue: WaitQueue::new(),
        });
        let ops: Arc<dyn FileOps> = Arc::new(EpollFile(ep.clone()));
        let mut sets = lock(&SETS);
        sets.retain(|s| s.strong_count() > 0);
        sets.push(Arc::downgrade(&ep));
        drop(sets);
        (ep, anon_file(ops, libc::O_RDWR | cloexec_free_flags))
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waiters of this set register here.
    pub fn queue(&self) -> &Arc<WaitQueue> {
        &self.queue
    }

    fn mark_ready(&self, key: Key) {
        {
            let mut st = lock(&self.state);
            let State { items, ready, .. } = &mut *st;
            match items.get_mut(&key) {
                Some(item) if !item.queued => {
                    item.queued = true;
                    ready.push_back(key);
                }
                _ => return,
            }
        }
        self.queue.notify(EPOLLIN | EPOLLRDNORM);
    }

    /// Drops the items whose open file is gone (its last descriptor was
    /// closed).
    fn purge(st: &mut State) {
        st.items.retain(|_, i| i.file.strong_count() > 0);
        let State {
            items,
            ready,
            watched,
            nested,
        } = st;
        ready.retain(|k| items.contains_key(k));
        watched.retain(|k| items.contains_key(k));
        nested.retain(|k| items.contains_key(k));
    }

    /// epoll_ctl on `file`, added (or known) as descriptor `fd`. The
    /// caller has checked the descriptors, the flags and that the file
    /// can be polled.
    pub fn ctl(
        &self,
        op: Ctl,
        file: &Arc<OpenFile>,
        fd: i32,
        events: u32,
        data: u64,
    ) -> Result<(), Errno> {
        let key = key_of(file, fd);
        // Linux silently drops EPOLLWAKEUP without CAP_BLOCK_SUSPEND;
        // nothing in the sandbox suspends, so it means nothing here.
        let events = events & !EPOLLWAKEUP;
        if op == Ctl::Add {
            if let Some(inner) = epoll_of(file) {
                self.check_nesting(inner)?;
            }
        }
        let mut st = lock(&self.state);
        Self::purge(&mut st);
        match op {
            Ctl::Add => {
                if st.items.contains_key(&key) {
                    return Err(Errno::EEXIST);
                }
                let listener = Arc::new(ItemListener {
                    ep: self.me.clone(),
                    key,
                });
                let queue = file.ops().wait_queue();
                let registration = queue.as_ref().map(|q| register(q, events, &listener));
                let (polled, timed) = (queue.is_none(), file.ops().timed());
                st.items.insert(
                    key,
                    Item {
                        file: Arc::downgrade(file),
                        fd,
                        events,
                        data,
                        // Looked at by the next wait: reported if ready.
                        queued: true,
                        polled,
                        timed,
                        last: 0,
                        listener,
                        _registration: registration,
                    },
                );
                st.ready.push_back(key);
                if polled || timed {
                    st.watched.insert(key);
                }
                if epoll_of(file).is_some() {
                    st.nested.insert(key);
                }
            }
            Ctl::Mod => {
                let State { items, ready, .. } = &mut *st;
                let item = items.get_mut(&key).ok_or(Errno::ENOENT)?;
                if item.events & EPOLLEXCLUSIVE != 0 || events & EPOLLEXCLUSIVE != 0 {
                    return Err(Errno::EINVAL);
                }
                item.events = events;
                item.data = data;
                item.last = 0;
                if let Some(q) = file.ops().wait_queue() {
                    item._registration = Some(register(&q, events, &item.listener));
                }
                if !item.queued {
                    item.queued = true;
                    ready.push_back(key);
                }
            }
            Ctl::Del => {
                st.items.remove(&key).ok_or(Errno::ENOENT)?;
                st.ready.retain(|k| *k != key);
                st.watched.remove(&key);
                st.nested.remove(&key);
            }
        }
        drop(st);
        if op != Ctl::Del {
            self.queue.notify(EPOLLIN | EPOLLRDNORM);
        }
        Ok(())
    }

    /// The sets directly inside this one.
    fn children(&self) -> Vec<Arc<Epoll>> {
        let st = lock(&self.state);
        st.items
            .values()
            .filter_map(|i| i.file.upgrade())
            .filter_map(|f| epoll_of(&f).map(|e| e.me.upgrade()))
            .flatten()
            .collect()
    }

    /// The longest chain of sets below this one (0: none), or None when
    /// `target` is among them (a loop) or the chain passes `limit`.
    fn depth_avoiding(&self, target: &Epoll, limit: usize) -> Option<usize> {
        if std::ptr::eq(self, target) {
            return None;
        }
        if limit == 0 {
            return None;
        }
        let mut deepest = 0;
        for c in self.children() {
            deepest = deepest.max(c.depth_avoiding(target, limit - 1)? + 1);
        }
        Some(deepest)
    }

    /// Adding `inner` to this set: EINVAL for the set itself, ELOOP for a
    /// loop, or for a chain of sets (from the outermost set holding this
    /// one down to the innermost below `inner`) longer than Linux allows.
    fn check_nesting(&self, inner: &Epoll) -> Result<(), Errno> {
        if std::ptr::eq(self, inner) {
            return Err(Errno::EINVAL);
        }
        let below = inner.depth_avoiding(self, MAX_NESTS).ok_or(Errno::ELOOP)?;
        let above = self.depth_above(MAX_NESTS).ok_or(Errno::ELOOP)?;
        if above + 1 + below > MAX_NESTS {
            return Err(Errno::ELOOP);
        }
        Ok(())
    }

    /// The longest chain of sets holding this one (0: none holds it), or
    /// None past `limit`. Sets are found through the sandbox's list of
    /// live sets: nesting sets is rare, so a scan is cheap enough.
    fn depth_above(&self, limit: usize) -> Option<usize> {
        let sets: Vec<Arc<Epoll>> = lock(&SETS).iter().filter_map(Weak::upgrade).collect();
        let holders = |of: *const Epoll| -> Vec<Arc<Epoll>> {
            sets.iter()
                .filter(|s| {
                    s.children()
                        .iter()
                        .any(|c| std::ptr::eq(Arc::as_ptr(c), of))
                })
                .cloned()
                .collect()
        };
        let mut level: Vec<Arc<Epoll>> = holders(self);
        let mut depth = 0;
        while !level.is_empty() {
            depth += 1;
            if depth > limit {
                return None;
            }
            let mut next: Vec<Arc<Epoll>> = Vec::new();
            for s in &level {
                for h in holders(Arc::as_ptr(s)) {
                    if !next.iter().any(|n| Arc::ptr_eq(n, &h)) {
                        next.push(h);
                    }
                }
            }
            level = next;
        }
        Some(depth)
    }

    /// Takes up to `max` ready events (epoll_wait's harvest, which never
    /// blocks).
    pub fn collect(&self, max: usize) -> Vec<Event> {
        let candidates = self.candidates(true);
        let mut looked: Vec<(Key, u32, bool)> = Vec::with_capacity(candidates.len());
        for (key, file, mask, every) in &candidates {
            looked.push((*key, file.readiness() & (mask | ALWAYS), *every));
        }
        let mut out = Vec::new();
        let mut st = lock(&self.state);
        let State { items, ready, .. } = &mut *st;
        let mut requeue = Vec::new();
        for (key, r, every) in looked {
            let Some(item) = items.get_mut(&key) else {
                continue;
            };
            let watched = item.polled || every;
            // What the item asks for now (a MOD may have come between).
            let r = r & (item.events | ALWAYS);
            if item.events & !PRIVATE_BITS == 0 {
                // A fired one-shot item: nothing until EPOLL_CTL_MOD.
                continue;
            }
            if watched && item.events & EPOLLET != 0 {
                let fresh = r & !item.last;
                item.last = r;
                if fresh == 0 {
                    continue;
                }
            }
            if r == 0 {
                continue;
            }
            if out.len() >= max {
                // No room: looked at again by the next wait.
                if !item.queued && !item.polled {
                    item.queued = true;
                    requeue.push(key);
                }
                continue;
            }
            out.push(Event {
                events: r,
                data: item.data,
            });
            if item.events & EPOLLONESHOT != 0 {
                item.events &= PRIVATE_BITS;
            } else if item.events & EPOLLET == 0 && !item.polled && !item.queued {
                // Level-triggered: still ready until a wait finds it not.
                item.queued = true;
                requeue.push(key);
            }
        }
        ready.extend(requeue);
        out
    }

    /// The items to look at, each once: the ready list's (taken off it
    /// when `take`), every polled one, and every one whose readiness
    /// changes by itself (an armed timerfd, which tells no queue when it
    /// expires), with the events each asks for and whether it is looked at
    /// on every wait (an edge is then a readiness bit not seen before).
    fn candidates(&self, take: bool) -> Vec<(Key, Arc<OpenFile>, u32, bool)> {
        let mut st = lock(&self.state);
        Self::purge(&mut st);
        let State {
            items,
            ready,
            watched,
            ..
        } = &mut *st;
        let keys: Vec<Key> = if take {
            ready.drain(..).collect()
        } else {
            ready.iter().copied().collect()
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for key in keys.into_iter().chain(watched.iter().copied()) {
            if !seen.insert(key) {
                continue;
            }
            let Some(item) = items.get_mut(&key) else {
                continue;
            };
            if take {
                item.queued = false;
            }
            if let Some(f) = item.file.upgrade() {
                out.push((key, f, item.events, item.polled || item.timed));
            }
        }
        out
    }

    /// Whether a wait would report something now (the epoll fd's own
    /// readiness), without taking anything.
    fn any_ready(&self) -> bool {
        let candidates = self.candidates(false);
        let st_events: Vec<(Key, u32, bool)> = candidates
            .iter()
            .map(|(k, f, mask, every)| (*k, f.readiness() & (mask | ALWAYS), *every))
            .collect();
        let st = lock(&self.state);
        st_events.iter().any(|(k, r, every)| {
            st.items.get(k).is_some_and(|i| {
                *r != 0
                    && i.events & !PRIVATE_BITS != 0
                    && !((i.polled || *every) && i.events & EPOLLET != 0 && r & !i.last == 0)
            })
        })
    }

    /// Whether a waiter must re-check this set periodically (it holds a
    /// file without a wait queue).
    pub fn has_polled(&self) -> bool {
        let st = lock(&self.state);
        st.watched
            .iter()
            .any(|k| st.items.get(k).is_some_and(|i| i.polled))
    }

    /// The earliest time (sandbox monotonic) one of its files changes by
    /// itself (a timerfd's expiry).
    pub fn next_change(&self) -> Option<i64> {
        let files: Vec<Arc<OpenFile>> = {
            let st = lock(&self.state);
            // Only timed items change by themselves; a set inside this one
            // is looked at too (it may hold timed items).
            st.watched
                .iter()
                .chain(st.nested.iter())
                .filter_map(|k| st.items.get(k))
                .filter_map(|i| i.file.upgrade())
                .collect()
        };
        let depth = READINESS_DEPTH.with(|d| d.get());
        if depth > MAX_NESTS + 1 {
            return None;
        }
        READINESS_DEPTH.with(|d| d.set(depth + 1));
        let next = files.iter().filter_map(|f| f.ops().next_change()).min();
        READINESS_DEPTH.with(|d| d.set(depth));
        next
    }

    /// The saved form; `file_id` names an open file by its statefile id
    /// (None: the file is not saved, and its item is left out).
    pub fn record(&self, file_id: &mut dyn FnMut(&Arc<OpenFile>) -> Option<u64>) -> EpollRecord {
        let st = lock(&self.state);
        let mut items = Vec::new();
        for item in st.items.values() {
            let Some(f) = item.file.upgrade() else {
                continue;
            };
            match file_id(&f) {
                Some(file) => items.push(EpollItemRecord {
                    file,
                    fd: item.fd,
                    events: item.events,
                    data: item.data,
                    ready: item.queued,
                }),
                None => tracing::debug!(
                    epoll = self.id,
                    fd = item.fd,
                    "an epoll item's file is held by nothing saved: left out"
                ),
            }
        }
        EpollRecord { id: self.id, items }
    }

    /// Loads a validated record's items, `files` giving the restored open
    /// file of each id.
    pub fn restore_items(
        &self,
        r: &EpollRecord,
        files: &dyn Fn(u64) -> Option<Arc<OpenFile>>,
    ) -> Result<(), String> {
        let mut st = lock(&self.state);
        for (n, it) in r.items.iter().enumerate() {
            let file = files(it.file)
                .ok_or_else(|| format!("items[{n}].file: no open file #{}", it.file))?;
            let key = key_of(&file, it.fd);
            if st.items.contains_key(&key) {
                return Err(format!(
                    "items[{n}]: (file #{}, fd {}) listed twice",
                    it.file, it.fd
                ));
            }
            let listener = Arc::new(ItemListener {
                ep: self.me.clone(),
                key,
            });
            let queue = file.ops().wait_queue();
            let registration = queue.as_ref().map(|q| register(q, it.events, &listener));
            let (polled, timed) = (queue.is_none(), file.ops().timed());
            if polled || timed {
                st.watched.insert(key);
            }
            if epoll_of(&file).is_some() {
                st.nested.insert(key);
            }
            // Level-triggered items are looked at again anyway; an
            // edge-triggered one keeps its unreported edge.
            let queued = it.ready || it.events & EPOLLET == 0;
            st.items.insert(
                key,
                Item {
                    file: Arc::downgrade(&file),
                    fd: it.fd,
                    events: it.events,
                    data: it.data,
                    queued,
                    polled,
                    timed,
                    last: 0,
                    listener,
                    _registration: registration,
                },
            );
            if queued {
                st.ready.push_back(key);
            }
        }
        Ok(())
    }

    /// How many items the set holds (for tests).
    pub fn len(&self) -> usize {
        let mut st = lock(&self.state);
        Self::purge(&mut st);
        st.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn register(q: &Arc<WaitQueue>, events: u32, listener: &Arc<ItemListener>) -> Registration {
    let l: Arc<dyn Listener> = listener.clone();
    q.register(
        events & !PRIVATE_BITS,
        events & EPOLLEXCLUSIVE != 0,
        Arc::downgrade(&l),
    )
}

/// The epoll file's ops.
struct EpollFile(Arc<Epoll>);

/// The epoll set behind an open file.
pub fn epoll_of(file: &OpenFile) -> Option<&Epoll> {
    file.ops()
        .as_any()
        .downcast_ref::<EpollFile>()
        .map(|e| &*e.0)
}

/// The epoll set behind an open file, shared.
pub fn epoll_arc(file: &OpenFile) -> Option<Arc<Epoll>> {
    file.ops()
        .as_any()
        .downcast_ref::<EpollFile>()
        .map(|e| e.0.clone())
}

impl FileOps for EpollFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn kind(&self) -> FileKind {
        FileKind::Anonymous
    }

    fn save_as(&self) -> SaveAs {
        SaveAs::Epoll { id: self.0.id }
    }

    fn seek_mode(&self) -> SeekMode {
        SeekMode::Stream
    }

    fn readiness(&self) -> u32 {
        let depth = READINESS_DEPTH.with(|d| d.get());
        if depth > MAX_NESTS + 1 {
            return 0;
        }
        READINESS_DEPTH.with(|d| d.set(depth + 1));
        let ready = self.0.any_ready();
        READINESS_DEPTH.with(|d| d.set(depth));
        if ready {
            EPOLLIN | EPOLLRDNORM
        } else {
            0
        }
    }

    fn pollable(&self) -> bool {
        true
    }

    fn wait_queue(&self) -> Option<Arc<WaitQueue>> {
        Some(self.0.queue.clone())
    }

    fn next_change(&self) -> Option<i64> {
        self.0.next_change()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::eventfd::EventFd;
    use crate::vfs::pipe::new_pipe;
    use crate::vfs::poll::EPOLLOUT;
    use crate::vfs::{Interrupt, Timespec};

    #[test]
    fn level_edge_and_oneshot_over_a_pipe() {
        let (ep, _epf) = Epoll::open(None, 0);
        let (r, w) = new_pipe(libc::O_NONBLOCK, Timespec::default());
        ep.ctl(Ctl::Add, &r, 3, EPOLLIN, 1).unwrap();
        assert_eq!(ep.ctl(Ctl::Add, &r, 3, EPOLLIN, 1), Err(Errno::EEXIST));
        assert!(ep.collect(8).is_empty());
        w.write(b"x", &Interrupt::new()).unwrap();
        // Level: reported on every wait while data is there.
        for _ in 0..2 {
            assert_eq!(
                ep.collect(8),
                vec![Event {
                    events: EPOLLIN,
                    data: 1
                }]
            );
        }
        // Edge: once, then again only after new data.
        ep.ctl(Ctl::Mod, &r, 3, EPOLLIN | EPOLLET, 2).unwrap();
        assert_eq!(ep.collect(8).len(), 1);
        assert!(ep.collect(8).is_empty());
        w.write(b"y", &Interrupt::new()).unwrap();
        assert_eq!(ep.collect(8)[0].data, 2);
        assert!(ep.collect(8).is_empty());
        // One-shot: once until re-armed.
        ep.ctl(Ctl::Mod, &r, 3, EPOLLIN | EPOLLONESHOT, 3).unwrap();
        assert_eq!(ep.collect(8).len(), 1);
        w.write(b"z", &Interrupt::new()).unwrap();
        assert!(ep.collect(8).is_empty());
        ep.ctl(Ctl::Mod, &r, 3, EPOLLIN, 4).unwrap();
        assert_eq!(ep.collect(8)[0].data, 4);
        ep.ctl(Ctl::Del, &r, 3, 0, 0).unwrap();
        assert_eq!(ep.ctl(Ctl::Del, &r, 3, 0, 0), Err(Errno::ENOENT));
        assert!(ep.collect(8).is_empty());
    }

    #[test]
    fn closing_the_last_reference_removes_the_item_and_hup_is_reported() {
        let (ep, _epf) = Epoll::open(None, 0);
        let (r, w) = new_pipe(0, Timespec::default());
        ep.ctl(Ctl::Add, &w, 4, EPOLLOUT, 9).unwrap();
        ep.ctl(Ctl::Add, &r, 3, EPOLLIN, 8).unwrap();
        assert_eq!(ep.len(), 2);
        drop(w);
        let ev = ep.collect(8);
        assert_eq!(
            ev,
            vec![Event {
                events: super::super::poll::EPOLLHUP,
                data: 8
            }]
        );
        assert_eq!(ep.len(), 1);
    }

    #[test]
    fn nesting_loops_and_readiness_of_the_set() {
        let (a, af) = Epoll::open(None, 0);
        let (b, bf) = Epoll::open(None, 0);
        assert_eq!(a.ctl(Ctl::Add, &af, 5, EPOLLIN, 0), Err(Errno::EINVAL));
        a.ctl(Ctl::Add, &bf, 6, EPOLLIN, 0).unwrap();
        assert_eq!(b.ctl(Ctl::Add, &af, 5, EPOLLIN, 0), Err(Errno::ELOOP));
        let e = EventFd::open(0, false, true);
        b.ctl(Ctl::Add, &e, 7, EPOLLIN, 70).unwrap();
        assert_eq!(af.readiness() & EPOLLIN, 0);
        e.write(&1u64.to_ne_bytes(), &Interrupt::new()).unwrap();
        assert_eq!(bf.readiness() & EPOLLIN, EPOLLIN);
        assert_eq!(a.collect(4).len(), 1, "the inner set is ready");
        assert_eq!(b.collect(4)[0].data, 70);
    }

    #[test]
    fn the_record_round_trips_the_interest_list() {
        let (ep, _f) = Epoll::open(None, 0);
        let e = EventFd::open(0, false, true);
        ep.ctl(Ctl::Add, &e, 3, EPOLLIN | EPOLLET, 33).unwrap();
        let rec = ep.record(&mut |_| Some(17));
        assert_eq!(rec.items.len(), 1);
        assert_eq!(rec.items[0].file, 17);
        let (back, _bf) = Epoll::open(Some(rec.id), 0);
        back.restore_items(&rec, &|id| (id == 17).then(|| e.clone()))
            .unwrap();
        assert_eq!(back.len(), 1);
        assert!(back.restore_items(&rec, &|_| None).is_err());
    }
}
