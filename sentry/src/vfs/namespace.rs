//! The namespace of a `cryo do` sandbox: overlay(tmpfs over the host root
//! through the gofer) at /, devfs at /dev, a tmpfs at /dev/shm, procfs at
//! /proc.

use std::sync::Arc;

use super::devfs::new_devfs;
use super::gofer_fs::{GoferHostFs, GoferInode, HostFs};
use super::inode::Inode;
use super::overlay;
use super::procfs::{new_procfs, ProcessTable};
use super::stat::Clock;
use super::state::{VfsRestoreError, VfsState};
use super::tmpfs::{Tmpfs, TmpfsLimits, TmpfsOptions};
use super::vfs::{MountOpts, Vfs};
use crate::errno::Errno;
use crate::mm::{MemoryFile, MF_PAGE_SIZE};

/// Builds the sandbox namespace over a gofer connection, its tmpfs files
/// kept in `mf`.
pub fn build_sandbox_vfs(
    client: gofer::Client,
    clock: Arc<dyn Clock>,
    procs: Arc<dyn ProcessTable>,
    mf: Arc<MemoryFile>,
) -> Result<Vfs, VfsRestoreError> {
    build_with_host(Arc::new(GoferHostFs::new(client)), clock, procs, mf, None)
}

/// What a container's bundle adds to the namespace: a read-only root and
/// mounts from its config.json. The default is a `cryo do` sandbox's.
#[derive(Default)]
pub struct NamespaceSetup {
    /// The root mount refuses writes (EROFS) instead of taking them into
    /// the overlay's upper layer.
    pub root_read_only: bool,
    /// Mounted in order, after /dev, /dev/shm and /proc (so a bundle's own
    /// mount of one of them covers cryo's).
    pub mounts: Vec<ExtraMount>,
}

/// One mount of a container's config.json that the VFS can serve.
pub struct ExtraMount {
    /// Absolute path in the container; missing directories are created in
    /// the overlay's upper layer (the host root is never written).
    pub dest: Vec<u8>,
    pub source: MountSource,
    pub read_only: bool,
}

pub enum MountSource {
    /// A fresh in-memory file system (tmpfs, and /dev/shm-like mounts).
    /// `options` give its limits and root owner (its mode is `mode`).
    Tmpfs { mode: u32, options: TmpfsOptions },
    /// A host directory served by a gofer of its own (a bind mount).
    Host(Arc<dyn HostFs>),
    /// One host file, `name` in the directory a gofer of its own serves
    /// (a bind mount of a file, like an engine's /etc/hosts).
    HostFile { fs: Arc<dyn HostFs>, name: Vec<u8> },
}

/// Builds the namespace over any [`HostFs`], from a saved state if given.
/// Its tmpfs files keep their pages in `mf`; on restore `mf` must already
/// hold the restored memory, to which the saved files are re-attached.
pub fn build_with_host(
    host: Arc<dyn HostFs>,
    clock: Arc<dyn Clock>,
    procs: Arc<dyn ProcessTable>,
    mf: Arc<MemoryFile>,
    state: Option<&VfsState>,
) -> Result<Vfs, VfsRestoreError> {
    build_with_setup(host, clock, procs, mf, state, NamespaceSetup::default())
}

/// Walks (creating what is missing, in the overlay's upper layer) the
/// directory `path` below `root` at the inode level, so that mount points
/// exist before a read-only root mount would refuse to create them.
fn ensure_dir(root: &Arc<dyn Inode>, path: &[u8]) -> Result<(), Errno> {
    ensure_dir_mode(root, path, 0o755)
}

/// [`ensure_dir`] whose last directory, if it is made, gets `mode`.
fn ensure_dir_mode(root: &Arc<dyn Inode>, path: &[u8], mode: u32) -> Result<(), Errno> {
    let mut dir = root.clone();
    let names: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|n| !n.is_empty())
        .collect();
    for (i, &name) in names.iter().enumerate() {
        if name == b"." || name == b".." {
            return Err(Errno::EINVAL);
        }
        let mode = if i + 1 == names.len() { mode } else { 0o755 };
        dir = match dir.lookup(name) {
            Ok(d) => d,
            Err(Errno::ENOENT) => dir.mkdir(name, mode)?,
            Err(e) => return Err(e),
        };
        if dir.file_type() != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
    }
    Ok(())
}

/// Like [`ensure_dir`] for a regular file's mount point: its directories,
/// then an empty file if there is none.
fn ensure_file(root: &Arc<dyn Inode>, path: &[u8]) -> Result<(), Errno> {
    let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Errno::EINVAL);
    }
    ensure_dir(root, parent)?;
    let mut dir = root.clone();
    for n in parent.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        dir = dir.lookup(n)?;
    }
    match dir.lookup(name) {
        Ok(f) if f.file_type() == libc::S_IFDIR => Err(Errno::EISDIR),
        Ok(_) => Ok(()),
        Err(Errno::ENOENT) => dir.create(name, 0o644).map(|_| ()),
        Err(e) => Err(e),
    }
}

/// [`build_with_host`] with a container's additions.
pub fn build_with_setup(
    host: Arc<dyn HostFs>,
    clock: Arc<dyn Clock>,
    procs: Arc<dyn ProcessTable>,
    mf: Arc<MemoryFile>,
    state: Option<&VfsState>,
    setup: NamespaceSetup,
) -> Result<Vfs, VfsRestoreError> {
    let errno = |what: &str| {
        let what = what.to_string();
        move |errno: Errno| VfsRestoreError::Missing {
            path: what.clone(),
            errno,
        }
    };
    let (upper, shm) = match state {
        Some(s) => (
            Tmpfs::restore(&s.upper, clock.clone(), mf.clone())?,
            Tmpfs::restore(&s.shm, clock.clone(), mf.clone())?,
        ),
        None => {
            let mem = super::tmpfs::sandbox_memory_bytes(&mf);
            let shm_limits = TmpfsLimits::default_for(mem);
            // The root's upper layer is bounded by the sandbox's memory as
            // runsc's memory-backed overlay is, not by half of it: it holds
            // whatever the container writes anywhere in its root.
            let upper_limits = TmpfsLimits {
                max_blocks: Some((mem / MF_PAGE_SIZE).max(1)),
                ..shm_limits
            };
            (
                Tmpfs::with_limits(clock.clone(), 0o755, mf.clone(), upper_limits),
                Tmpfs::with_limits(clock.clone(), 0o1777, mf.clone(), shm_limits),
            )
        }
    };
    let lower = GoferInode::root(host).map_err(errno("/ (gofer root)"))?;
    let root: Arc<dyn Inode> = overlay::new_root(&upper, Some(lower));
    // The host's own are never served (the gofer opens nothing on procfs
    // or sysfs): the mount points are made as a distribution makes them.
    for (dir, mode) in [(&b"/dev"[..], 0o755), (b"/proc", 0o555), (b"/sys", 0o555)] {
        ensure_dir_mode(&root, dir, mode).map_err(errno(&String::from_utf8_lossy(dir)))?;
    }
    for m in &setup.mounts {
        let made = match m.source {
            MountSource::HostFile { .. } => ensure_file(&root, &m.dest),
            _ => ensure_dir(&root, &m.dest),
        };
        made.map_err(errno(&String::from_utf8_lossy(&m.dest)))?;
    }
    let root_ro = setup.root_read_only;
    let vfs = Vfs::new(
        root,
        MountOpts {
            fs_type: "overlay",
            read_only: root_ro,
        },
    );
    let now = clock.now();
    let mount = |path: &[u8], inode, fs_type, read_only| {
        vfs.mount(path, inode, MountOpts { fs_type, read_only })
            .map_err(errno(&String::from_utf8_lossy(path)))
    };
    mount(b"/dev", new_devfs(now), "devtmpfs", false)?;
    mount(b"/dev/shm", shm.root(), "tmpfs", false)?;
    let rw = |ro: bool| if ro { "ro" } else { "rw" };
    let mut mounts = format!(
        "none / overlay {} 0 0\nnone /dev devtmpfs rw 0 0\nnone /dev/shm tmpfs rw 0 0\nnone /dev/pts devpts rw 0 0\nnone /proc proc rw 0 0\nnone /sys sysfs ro 0 0\n",
        rw(root_ro)
    );
    for m in &setup.mounts {
        let fs_type = match m.source {
            MountSource::Tmpfs { .. } => "tmpfs",
            MountSource::Host(_) | MountSource::HostFile { .. } => "bind",
        };
        mounts.push_str(&format!(
            "none {} {fs_type} {} 0 0\n",
            String::from_utf8_lossy(&m.dest),
            rw(m.read_only)
        ));
    }
    let cpus = procs.cpus() as u32;
    let procs_for_mounts = procs.clone();
    mount(b"/proc", new_procfs(procs, mounts), "proc", false)?;
    mount(b"/sys", super::sysfs::new_sysfs(cpus), "sysfs", true)?;
    // After /proc and /sys, so that the mounts before keep their ids;
    // before the container's own, which may cover /dev.
    mount(
        b"/dev/pts",
        super::pty::DevPtsDir::new(super::pty::DevPts::new(now)),
        "devpts",
        false,
    )?;
    let mut bundle_tmpfs = Vec::new();
    let saved_tmpfs = SavedBundleTmpfs::new(state, &setup.mounts)?;
    let mut used = vec![false; saved_tmpfs.count()];
    for m in setup.mounts {
        let path = String::from_utf8_lossy(&m.dest).into_owned();
        let (inode, fs_type): (Arc<dyn Inode>, _) = match m.source {
            MountSource::Tmpfs { mode, options } => {
                let at = vfs
                    .resolve(&vfs.root(), &m.dest, true)
                    .map(|d| super::vfs::path_bytes(&d))
                    .map_err(errno(&path))?;
                let t = match saved_tmpfs.find(&at, bundle_tmpfs.len(), &used) {
                    Some((j, snap)) => {
                        used[j] = true;
                        Tmpfs::restore(snap, clock.clone(), mf.clone()).map_err(|e| match e {
                            VfsRestoreError::Tmpfs { field, why } => VfsRestoreError::Tmpfs {
                                field: format!("bundle_tmpfs[{j}].{field}"),
                                why,
                            },
                            other => other,
                        })?
                    }
                    None => {
                        let limits = options.limits(super::tmpfs::sandbox_memory_bytes(&mf));
                        let fs = Tmpfs::with_limits(clock.clone(), mode, mf.clone(), limits);
                        fs.set_root_owner(options.uid, options.gid);
                        fs
                    }
                };
                bundle_tmpfs.push((at, t.clone()));
                (t.root(), "tmpfs")
            }
            MountSource::Host(fs) => (GoferInode::root(fs).map_err(errno(&path))?, "bind"),
            MountSource::HostFile { fs, name } => {
                let dir = GoferInode::root(fs).map_err(errno(&path))?;
                let file = dir.lookup(&name).map_err(errno(&path))?;
                if file.file_type() == libc::S_IFDIR {
                    return Err(errno(&path)(Errno::EISDIR));
                }
                (file, "bind")
            }
        };
        mount(&m.dest, inode, fs_type, m.read_only)?;
    }
    saved_tmpfs.all_used(&used)?;
    {
        let mut parts = super::dentry::lock(&vfs.parts);
        parts.upper = Some(upper);
        parts.shm = Some(shm);
        parts.bundle_tmpfs = bundle_tmpfs;
        parts.mount_ctx = Some(super::state::MountCtx {
            clock: clock.clone(),
            mf: mf.clone(),
            procs: procs_for_mounts,
        });
    }
    if let Some(s) = state {
        vfs.keep_boot_tree();
        vfs.restore_mount_tree(&s.mounts, &|snap| {
            Tmpfs::restore(snap, clock.clone(), mf.clone())
        })?;
    }
    Ok(vfs)
}

/// The bundle tmpfs contents a checkpoint saved, found for the bundle
/// being booted: by where each was mounted, or (a v1 mount tree, always
/// restored into the bundle it came from) by its place in the config.
struct SavedBundleTmpfs<'a> {
    snaps: &'a [super::state::TmpfsSnapshot],
    at: Option<&'a [Vec<u8>]>,
}

impl<'a> SavedBundleTmpfs<'a> {
    fn new(
        state: Option<&'a VfsState>,
        mounts: &[ExtraMount],
    ) -> Result<SavedBundleTmpfs<'a>, VfsRestoreError> {
        let Some(s) = state.filter(|s| s.mounts.recorded) else {
            return Ok(SavedBundleTmpfs {
                snaps: &[],
                at: None,
            });
        };
        if s.mounts.by_origin {
            if s.mounts.bundle_tmpfs_at.len() != s.bundle_tmpfs.len() {
                return Err(VfsRestoreError::Invalid(format!(
                    "mount tree bundle_tmpfs_at: {} places for {} saved tmpfs mounts",
                    s.mounts.bundle_tmpfs_at.len(),
                    s.bundle_tmpfs.len()
                )));
            }
            return Ok(SavedBundleTmpfs {
                snaps: &s.bundle_tmpfs,
                at: Some(&s.mounts.bundle_tmpfs_at),
            });
        }
        let count = mounts
            .iter()
            .filter(|m| matches!(m.source, MountSource::Tmpfs { .. }))
            .count();
        if s.bundle_tmpfs.len() != count {
            return Err(VfsRestoreError::Invalid(format!(
                "the checkpoint saved {} tmpfs mounts of the bundle, the bundle has {count}",
                s.bundle_tmpfs.len()
            )));
        }
        Ok(SavedBundleTmpfs {
            snaps: &s.bundle_tmpfs,
            at: None,
        })
    }

    fn count(&self) -> usize {
        self.snaps.len()
    }

    /// The saved contents for the bundle's `nth` tmpfs mount, at `at`
    /// (two stacked at one place are told apart by their order).
    fn find(
        &self,
        at: &[u8],
        nth: usize,
        used: &[bool],
    ) -> Option<(usize, &'a super::state::TmpfsSnapshot)> {
        let j = match self.at {
            Some(places) => (0..places.len()).find(|&j| places[j] == at && !used[j])?,
            None => nth,
        };
        self.snaps.get(j).map(|s| (j, s))
    }

    /// Refuses a restore that would drop saved contents: a tmpfs the
    /// checkpoint had where the new bundle mounts none.
    fn all_used(&self, used: &[bool]) -> Result<(), VfsRestoreError> {
        match (self.at, used.iter().position(|u| !u)) {
            (Some(places), Some(j)) => Err(VfsRestoreError::Invalid(format!(
                "mount tree bundle_tmpfs_at[{j}]: the checkpoint saved a tmpfs at {}, the bundle mounts none there",
                String::from_utf8_lossy(&places[j])
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::pipe::new_pipe;
    use crate::vfs::procfs::tests::OneProc;
    use crate::vfs::stat::Timespec;
    use crate::vfs::state::{FileStateKind, RestoreCtx, SaveCtx};
    use crate::vfs::testing::{clone_memory, test_memory_file, FixedClock, LocalDirFs};

    /// An unlimited tmpfs owned by root with `mode`, for mount(2) in tests.
    pub(crate) fn tmpfs_of_mode(mode: u32) -> crate::vfs::mount_tree::NewFs {
        crate::vfs::mount_tree::NewFs::Tmpfs {
            mode,
            uid: 0,
            gid: 0,
            limits: crate::vfs::tmpfs::TmpfsLimits::UNLIMITED,
        }
    }

    pub(crate) fn host() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(d.path().join("etc/motd"), b"hello").unwrap();
        d
    }

    pub(crate) fn build_in(
        dir: &std::path::Path,
        mf: Arc<MemoryFile>,
        state: Option<&VfsState>,
    ) -> Result<Vfs, VfsRestoreError> {
        build_with_host(
            LocalDirFs::new(dir),
            Arc::new(FixedClock(50)),
            Arc::new(OneProc),
            mf,
            state,
        )
    }

    fn build(dir: &std::path::Path, state: Option<&VfsState>) -> Result<Vfs, VfsRestoreError> {
        build_in(dir, test_memory_file(), state)
    }

    #[test]
    fn sandbox_layout() {
        let d = host();
        let vfs = build(d.path(), None).unwrap();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        let null = vfs.open_at(&r, b"/dev/null", libc::O_WRONLY, 0).unwrap();
        assert_eq!(null.write(b"x", &intr), Ok(1));
        assert_eq!(vfs.readlink_at(&r, b"/proc/self").unwrap(), b"1");
        let shm = vfs
            .open_at(&r, b"/dev/shm/seg", libc::O_CREAT | libc::O_RDWR, 0o600)
            .unwrap();
        assert_eq!(shm.write(b"s", &intr), Ok(1));
        assert_eq!(vfs.dentry_path(shm.dentry().unwrap()), "/dev/shm/seg");
        assert_eq!(vfs.stat_at(&r, b"/etc/hosts", true).unwrap().size, 20);
        assert!(!d.path().join("dev").exists() && !d.path().join("proc").exists());
        let st = vfs.stat_at(&r, b"/dev/shm", true).unwrap();
        assert_eq!(st.mode, libc::S_IFDIR | 0o1777);
        // `..` from a mount root goes to the covered directory's parent.
        let shm_dir = vfs.lookup_dir(&r, b"/dev/shm/..").unwrap();
        assert_eq!(vfs.dentry_path(&shm_dir), "/dev");
    }

    #[test]
    fn snapshot_round_trip_and_reopen() {
        let d = host();
        let mf = test_memory_file();
        let vfs = build_in(d.path(), mf.clone(), None).unwrap();
        let r = vfs.root().clone();
        let intr = Interrupt::new();
        vfs.mkdir_at(&r, b"/work", 0o700).unwrap();
        let f = vfs
            .open_at(
                &r,
                b"/work/data",
                libc::O_CREAT | libc::O_RDWR | libc::O_APPEND,
                0o640,
            )
            .unwrap();
        f.write(b"0123456789", &intr).unwrap();
        // O_APPEND: pwrite appends too, as on Linux.
        f.pwrite(b"far", 10_000, &intr).unwrap();
        vfs.symlink_at(b"/work/data", &r, b"/link").unwrap();
        vfs.unlink_at(&r, b"/etc/motd", 0).unwrap();
        let hosts = vfs.open_at(&r, b"/etc/hosts", libc::O_RDONLY, 0).unwrap();
        hosts.lseek(4, libc::SEEK_SET).unwrap();
        let (pr, pw) = new_pipe(0, Timespec::default());
        pw.write(b"queued", &intr).unwrap();
        let shm = vfs
            .open_at(&r, b"/dev/shm/s", libc::O_CREAT | libc::O_RDWR, 0o600)
            .unwrap();
        shm.write(b"shm!", &intr).unwrap();

        let mut ctx = SaveCtx::default();
        let saved: Vec<_> = [&f, &hosts, &pr, &pw, &shm]
            .iter()
            .map(|o| o.save(&mut ctx).unwrap())
            .collect();
        assert!(saved[1].fingerprint.is_some());
        assert_eq!(saved[0].fingerprint, None);
        assert!(matches!(saved[2].kind, FileStateKind::PipeRead { .. }));
        let state = vfs.save_state().unwrap();
        // Through a serialised form, as a statefile would carry it.
        let bytes = bincode::serde::encode_to_vec(&state, bincode::config::standard()).unwrap();
        let (state2, _): (VfsState, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(state, state2);
        let pipes: Vec<_> = ctx.pipes.values().cloned().collect();

        // A restore loads the memory file first, then re-attaches the files.
        let vfs2 = build_in(d.path(), clone_memory(&mf), Some(&state2)).unwrap();
        let r2 = vfs2.root().clone();
        let mut rctx = RestoreCtx::new(&pipes, HashMap::new(), Timespec::default());
        let files: Vec<_> = saved
            .iter()
            .map(|s| vfs2.reopen(s, &mut rctx).unwrap())
            .collect();
        let mut buf = [0u8; 16];
        assert_eq!(files[0].pread(&mut buf[..10], 0, &intr), Ok(10));
        assert_eq!(&buf[..10], b"0123456789");
        assert_eq!(files[0].stat().unwrap().size, 13);
        assert_eq!(files[0].stat().unwrap().mode, libc::S_IFREG | 0o640);
        assert_eq!(files[0].status_flags() & libc::O_APPEND, libc::O_APPEND);
        assert_eq!(
            vfs2.stat_at(&r2, b"/etc/motd", true).err(),
            Some(Errno::ENOENT)
        );
        assert_eq!(vfs2.readlink_at(&r2, b"/link").unwrap(), b"/work/data");
        assert_eq!(files[1].read(&mut buf[..5], &intr), Ok(5));
        assert_eq!(&buf[..5], b"0.0.1");
        assert_eq!(files[2].read(&mut buf, &intr), Ok(6));
        assert_eq!(&buf[..6], b"queued");
        assert_eq!(files[4].pread(&mut buf[..4], 0, &intr), Ok(4));
        assert_eq!(&buf[..4], b"shm!");

        // A host file that changed is refused, naming the file.
        std::fs::write(d.path().join("etc/hosts"), b"changed").unwrap();
        let vfs3 = build_in(d.path(), clone_memory(&mf), Some(&state2)).unwrap();
        let mut rctx = RestoreCtx::new(&pipes, HashMap::new(), Timespec::default());
        match vfs3.reopen(&saved[1], &mut rctx) {
            Err(VfsRestoreError::Changed { path, .. }) => assert_eq!(path, "/etc/hosts"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn hostile_states_are_refused() {
        let d = host();
        let mf = test_memory_file();
        let vfs = build_in(d.path(), mf.clone(), None).unwrap();
        let r = vfs.root().clone();
        vfs.open_at(&r, b"/f", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap()
            .write(b"x", &Interrupt::new())
            .unwrap();
        let good = vfs.save_state().unwrap();
        assert!(build_in(d.path(), clone_memory(&mf), Some(&good)).is_ok());
        // A shm page also named by the upper layer: used twice across the
        // two file systems.
        let mut twice = good.clone();
        let page = twice
            .upper
            .nodes
            .iter()
            .find_map(|n| match &n.kind {
                crate::vfs::state::TmpfsNodeKind::File { pages, .. } => pages.first().copied(),
                _ => None,
            })
            .unwrap();
        use crate::vfs::state::{TmpfsDirEntry, TmpfsNodeKind, TmpfsNodeRecord};
        let shm_root = twice.shm.nodes[0].clone();
        twice.shm.nodes[0].kind = TmpfsNodeKind::Dir {
            entries: vec![TmpfsDirEntry {
                name: b"seg".to_vec(),
                ino: 99,
            }],
            whiteouts: vec![],
            opaque: false,
        };
        twice.shm.nodes.push(TmpfsNodeRecord {
            ino: 99,
            nlink: 1,
            mode: libc::S_IFREG | 0o600,
            kind: TmpfsNodeKind::File {
                size: 4096,
                pages: vec![page],
            },
            ..shm_root
        });
        match build_in(d.path(), clone_memory(&mf), Some(&twice)).err() {
            Some(VfsRestoreError::Tmpfs { field, why }) => {
                assert_eq!(field, "nodes[1].pages[0].offset");
                assert!(why.contains("used twice"), "{why}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    fn mount_tree_vfs(d: &std::path::Path, mf: Arc<MemoryFile>) -> Vfs {
        let vfs = build_in(d, mf, None).unwrap();
        let r = vfs.root();
        vfs.mkdir_at(&r, b"/mnt", 0o755).unwrap();
        vfs.mkdir_at(&r, b"/mnt/t", 0o755).unwrap();
        vfs.mkdir_at(&r, b"/b", 0o755).unwrap();
        let at = vfs.resolve(&r, b"/mnt/t", true).unwrap();
        vfs.mount_new(&at, tmpfs_of_mode(0o750), 0).unwrap();
        vfs.mkdir_at(&r, b"/mnt/t/d", 0o755).unwrap();
        let f = vfs
            .open_at(&r, b"/mnt/t/d/f", libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        f.write(b"kept", &Interrupt::new()).unwrap();
        let src = vfs.resolve(&r, b"/mnt/t/d", true).unwrap();
        let b = vfs.resolve(&r, b"/b", true).unwrap();
        vfs.bind_mount(&src, &b, false, libc::MS_RDONLY).unwrap();
        // A boot mount taken away.
        let shm = vfs.resolve(&r, b"/dev/shm", true).unwrap();
        vfs.umount(&shm, 0, &|_| false).unwrap();
        vfs
    }

    #[test]
    fn mount_tree_round_trip() {
        let d = host();
        let mf = test_memory_file();
        let vfs = mount_tree_vfs(d.path(), mf.clone());
        let info = vfs.mountinfo_text(&vfs.root());
        assert!(info.contains(" /d /b ro "), "{info}");
        assert!(!info.contains(" /dev/shm "), "{info}");
        let state = vfs.save_state().unwrap();
        assert_eq!(state.mounts.made.len(), 2);
        let vfs2 = build_in(d.path(), clone_memory(&mf), Some(&state)).unwrap();
        let r2 = vfs2.root();
        assert_eq!(vfs2.mountinfo_text(&r2), info, "ids, places and flags kept");
        let f = vfs2.open_at(&r2, b"/b/f", libc::O_RDONLY, 0).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(f.read(&mut buf, &Interrupt::new()), Ok(4));
        assert_eq!(&buf[..4], b"kept");
        assert_eq!(
            vfs2.open_at(&r2, b"/b/g", libc::O_CREAT | libc::O_WRONLY, 0o644)
                .err(),
            Some(Errno::EROFS)
        );
        assert_eq!(
            vfs2.stat_at(&r2, b"/mnt/t", true).unwrap().mode,
            libc::S_IFDIR | 0o750
        );
        // A later mount(2) gets a new id.
        let st = vfs2.save_state().unwrap();
        assert_eq!(st.mounts, state.mounts);
    }

    /// A container's namespace with `order`'s bundle mounts, in that order:
    /// "hosts" (a file bind at /etc/hosts), "t1" and "t2" (tmpfs at /t1 and
    /// /t2), "data" (a directory bind at /data).
    fn bundle_vfs(
        d: &std::path::Path,
        mf: Arc<MemoryFile>,
        order: &[&str],
        state: Option<&VfsState>,
    ) -> Result<Vfs, VfsRestoreError> {
        let tmpfs = || MountSource::Tmpfs {
            mode: 0o755,
            options: TmpfsOptions::default(),
        };
        let mounts = order
            .iter()
            .map(|m| {
                let (dest, source): (&[u8], _) = match *m {
                    "hosts" => (
                        b"/etc/hosts",
                        MountSource::HostFile {
                            fs: LocalDirFs::new(d.join("etc")),
                            name: b"hosts".to_vec(),
                        },
                    ),
                    "t1" => (b"/t1", tmpfs()),
                    "t2" => (b"/t2", tmpfs()),
                    _ => (b"/data", MountSource::Host(LocalDirFs::new(d.join("etc")))),
                };
                ExtraMount {
                    dest: dest.to_vec(),
                    source,
                    read_only: false,
                }
            })
            .collect();
        build_with_setup(
            LocalDirFs::new(d),
            Arc::new(FixedClock(50)),
            Arc::new(OneProc),
            mf,
            state,
            NamespaceSetup {
                root_read_only: false,
                mounts,
            },
        )
    }

    pub(crate) fn put(vfs: &Vfs, path: &[u8], data: &[u8]) {
        let f = vfs
            .open_at(&vfs.root(), path, libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        f.write(data, &Interrupt::new()).unwrap();
    }

    pub(crate) fn get(vfs: &Vfs, path: &[u8]) -> Result<Vec<u8>, Errno> {
        let f = vfs.open_at(&vfs.root(), path, libc::O_RDONLY, 0)?;
        let mut buf = [0u8; 64];
        let n = f.read(&mut buf, &Interrupt::new())?;
        Ok(buf[..n].to_vec())
    }

    /// The mount points of mountinfo, in order (ids may differ).
    fn mount_points(vfs: &Vfs) -> Vec<String> {
        vfs.mountinfo_text(&vfs.root())
            .lines()
            .map(|l| l.split(' ').nth(4).unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn a_bundle_listing_its_mounts_in_another_order_restores_by_place() {
        let d = host();
        let mf = test_memory_file();
        let vfs = bundle_vfs(d.path(), mf.clone(), &["hosts", "t1", "t2", "data"], None).unwrap();
        put(&vfs, b"/t1/f", b"one");
        put(&vfs, b"/t2/f", b"two");
        // What the application changed: /data unmounted, /t2 moved, a
        // tmpfs of its own mounted.
        let r = vfs.root();
        let data = vfs.resolve(&r, b"/data", true).unwrap();
        vfs.umount(&data, 0, &|_| false).unwrap();
        vfs.mkdir_at(&r, b"/moved", 0o755).unwrap();
        let t2 = vfs.resolve(&r, b"/t2", true).unwrap();
        let moved = vfs.resolve(&r, b"/moved", true).unwrap();
        vfs.move_mount(&t2, &moved).unwrap();
        vfs.mkdir_at(&r, b"/own", 0o755).unwrap();
        let own = vfs.resolve(&r, b"/own", true).unwrap();
        vfs.mount_new(&own, tmpfs_of_mode(0o700), 0).unwrap();
        put(&vfs, b"/own/f", b"own");
        let before = mount_points(&vfs);
        let state = vfs.save_state().unwrap();

        // podman's restore --import: the same mounts, another order.
        let order = ["data", "t2", "hosts", "t1"];
        let vfs2 = bundle_vfs(d.path(), clone_memory(&mf), &order, Some(&state)).unwrap();
        assert_eq!(get(&vfs2, b"/t1/f").unwrap(), b"one");
        assert_eq!(get(&vfs2, b"/moved/f").unwrap(), b"two");
        assert_eq!(get(&vfs2, b"/own/f").unwrap(), b"own");
        assert_eq!(get(&vfs2, b"/etc/hosts").unwrap(), b"127.0.0.1 localhost\n");
        assert_eq!(
            get(&vfs2, b"/data/hosts"),
            Err(Errno::ENOENT),
            "still unmounted"
        );
        let mut after = mount_points(&vfs2);
        let mut want = before.clone();
        after.sort();
        want.sort();
        assert_eq!(after, want);
        // Ids stay unique: no two mounts share a device number.
        let info = vfs2.mountinfo_text(&vfs2.root());
        let mut ids: Vec<&str> = info.lines().map(|l| l.split(' ').next().unwrap()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{info}");
        // And a second checkpoint of the restored tree says the same.
        let again = vfs2.save_state().unwrap();
        assert_eq!(again.mounts.unmounted, state.mounts.unmounted);
        let vfs3 = bundle_vfs(d.path(), clone_memory(&mf), &order, Some(&again)).unwrap();
        assert_eq!(get(&vfs3, b"/moved/f").unwrap(), b"two");
    }

    #[test]
    fn a_bundle_without_a_saved_mount_is_refused_naming_it() {
        let d = host();
        let mf = test_memory_file();
        let vfs = bundle_vfs(d.path(), mf.clone(), &["hosts", "t1", "t2"], None).unwrap();
        put(&vfs, b"/t2/f", b"two");
        let state = vfs.save_state().unwrap();
        // The tmpfs holding saved files is missing: refused, not emptied.
        match bundle_vfs(d.path(), clone_memory(&mf), &["hosts", "t1"], Some(&state)) {
            Err(VfsRestoreError::Invalid(why)) => {
                assert!(
                    why.contains("bundle_tmpfs_at[1]") && why.contains("/t2"),
                    "{why}"
                )
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // A bind mount missing.
        match bundle_vfs(d.path(), clone_memory(&mf), &["t1", "t2"], Some(&state)) {
            Err(VfsRestoreError::Invalid(why)) => {
                assert!(
                    why.contains(".origin") && why.contains("/etc/hosts"),
                    "{why}"
                )
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // A bundle with one more mount restores, the extra one mounted.
        let vfs2 = bundle_vfs(
            d.path(),
            clone_memory(&mf),
            &["data", "t2", "hosts", "t1"],
            Some(&state),
        )
        .unwrap();
        assert_eq!(get(&vfs2, b"/t2/f").unwrap(), b"two");
        assert_eq!(
            get(&vfs2, b"/data/hosts").unwrap(),
            b"127.0.0.1 localhost\n"
        );
    }

    /// `made` as v1 and v2 records held it: binds by their source's path
    /// in the namespace (mount_tree_vfs's one bind is of /mnt/t/d).
    fn v1_made(made: &[crate::vfs::state::MountRecord]) -> Vec<crate::vfs::state::MountRecordV1> {
        use crate::vfs::state::{MountRecordKind as K, MountRecordKindV1 as K1, MountRecordV1};
        made.iter()
            .map(|m| MountRecordV1 {
                id: m.id,
                path: m.path.clone(),
                flags: m.flags,
                kind: match &m.kind {
                    K::Tmpfs(t) => K1::Tmpfs(t.clone()),
                    K::Proc => K1::Proc,
                    K::Sysfs => K1::Sysfs,
                    K::Bind { source } => K1::Bind {
                        source: source.clone(),
                    },
                    K::BindIn { .. } => K1::Bind {
                        source: b"/mnt/t/d".to_vec(),
                    },
                },
            })
            .collect()
    }

    #[test]
    fn a_v2_mount_tree_replays_in_the_order_made() {
        use crate::vfs::state::{MountTreeRecord, MountTreeRecordV2};
        let d = host();
        let mf = test_memory_file();
        let vfs = mount_tree_vfs(d.path(), mf.clone());
        let now = vfs.save_state().unwrap();
        let v2 = MountTreeRecordV2 {
            boot: now.mounts.boot.clone(),
            made: v1_made(&now.mounts.made),
            recorded: true,
            unmounted: now.mounts.unmounted.clone(),
            bundle_tmpfs_at: now.mounts.bundle_tmpfs_at.clone(),
            by_origin: true,
        };
        let migrated = VfsState {
            mounts: MountTreeRecord::from(v2),
            ..now.clone()
        };
        let vfs2 = build_in(d.path(), clone_memory(&mf), Some(&migrated)).unwrap();
        let r2 = vfs2.root();
        assert_eq!(vfs2.mountinfo_text(&r2), vfs.mountinfo_text(&vfs.root()));
        assert_eq!(get(&vfs2, b"/b/f").unwrap(), b"kept");
        // Saved again, the bind names its base.
        assert_eq!(vfs2.save_state().unwrap().mounts, now.mounts);
    }

    #[test]
    fn a_v1_mount_tree_names_boot_mounts_by_id() {
        use crate::vfs::state::{BootMountRecordV1, MountTreeRecord, MountTreeRecordV1};
        let d = host();
        let mf = test_memory_file();
        let vfs = mount_tree_vfs(d.path(), mf.clone());
        let now = vfs.save_state().unwrap();
        // The same tree as v1 wrote it: boot's mounts by id and path, the
        // unmounted /dev/shm simply missing.
        let v1 = MountTreeRecordV1 {
            boot: now
                .mounts
                .boot
                .iter()
                .map(|b| BootMountRecordV1 {
                    id: b.id,
                    path: b.path.clone(),
                    flags: b.flags,
                })
                .collect(),
            made: v1_made(&now.mounts.made),
            recorded: true,
        };
        let migrated = VfsState {
            mounts: MountTreeRecord::from(v1),
            ..now.clone()
        };
        assert!(!migrated.mounts.by_origin);
        let vfs2 = build_in(d.path(), clone_memory(&mf), Some(&migrated)).unwrap();
        let r2 = vfs2.root();
        assert_eq!(vfs2.mountinfo_text(&r2), vfs.mountinfo_text(&vfs.root()));
        assert_eq!(get(&vfs2, b"/b/f").unwrap(), b"kept");
    }

    #[test]
    fn hostile_mount_trees_are_refused() {
        use crate::vfs::state::MountRecordKind;
        let d = host();
        let mf = test_memory_file();
        let vfs = mount_tree_vfs(d.path(), mf.clone());
        let good = vfs.save_state().unwrap();
        let refused = |edit: &dyn Fn(&mut VfsState), want: &str| {
            let mut s = good.clone();
            edit(&mut s);
            match build_in(d.path(), clone_memory(&mf), Some(&s)) {
                Err(VfsRestoreError::Invalid(why)) => assert!(why.contains(want), "{why}"),
                other => panic!("{want}: {:?}", other.map(|_| ())),
            }
        };
        // A bind source outside any mount (nowhere at all).
        refused(
            &|s| {
                s.mounts.made[1].kind = MountRecordKind::Bind {
                    source: b"/nowhere".to_vec(),
                }
            },
            "made[1].source",
        );
        refused(
            &|s| s.mounts.made[1].path = b"/mnt/../b".to_vec(),
            "made[1].path",
        );
        refused(&|s| s.mounts.made[0].id = 1, "made[0].id");
        refused(
            &|s| s.mounts.boot[1].origin = b"dev".to_vec(),
            "boot[1].origin",
        );
        refused(
            &|s| s.mounts.unmounted[0] = b"/dev/../x".to_vec(),
            "unmounted[0]",
        );
        refused(
            &|s| s.mounts.boot[1].origin = b"/elsewhere".to_vec(),
            "boot[1].origin",
        );
        refused(&|s| s.mounts.made[0].flags = 1 << 40, "made[0].flags");
        // A mount on a file where a directory was (the root of a bind of
        // a directory cannot cover one).
        refused(
            &|s| s.mounts.made[1].path = b"/etc/hosts".to_vec(),
            "made[1].path",
        );
        // A bind whose source lies below its own mount point, made before
        // it exists: replayed in order, nothing to bind yet.
        refused(
            &|s| {
                s.mounts.made[1].kind = MountRecordKind::Bind {
                    source: b"/b/x".to_vec(),
                }
            },
            "made[1].source",
        );
    }

    #[test]
    fn unsaveable_trees_are_refused_naming_why() {
        use crate::vfs::state::SaveError;
        let d = host();
        let mf = test_memory_file();
        let vfs = mount_tree_vfs(d.path(), mf);
        let r = vfs.root();
        // A file open on a detached tmpfs.
        let f = vfs.open_at(&r, b"/mnt/t/d/f", libc::O_RDONLY, 0).unwrap();
        let t = vfs.resolve(&r, b"/mnt/t", true).unwrap();
        let t = vfs
            .entry_of(&t.mounted().unwrap_or(t))
            .map(|e| e.root)
            .unwrap();
        assert_eq!(vfs.umount(&t, 0, &|_| false), Err(Errno::EBUSY));
        vfs.umount(&t, crate::vfs::mount_tree::MNT_DETACH, &|_| false)
            .unwrap();
        match f.save(&mut vfs.save_ctx()) {
            Err(SaveError::NotCheckpointable { why, .. }) => assert!(why.contains("detached")),
            other => panic!("{other:?}"),
        }
        // /b, a bind of a directory of that tmpfs, is all that is left of
        // it: its files are saved nowhere.
        match vfs.save_state() {
            Err(SaveError::MountTree(why)) => {
                assert!(why.contains("no longer mounted"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
