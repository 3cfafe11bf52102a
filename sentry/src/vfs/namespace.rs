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
use super::tmpfs::Tmpfs;
use super::vfs::{MountOpts, Vfs};
use crate::errno::Errno;
use crate::mm::MemoryFile;

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
    Tmpfs { mode: u32 },
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
    let mut dir = root.clone();
    for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        if name == b"." || name == b".." {
            return Err(Errno::EINVAL);
        }
        dir = match dir.lookup(name) {
            Ok(d) => d,
            Err(Errno::ENOENT) => dir.mkdir(name, 0o755)?,
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
        None => (
            Tmpfs::with_memory(clock.clone(), 0o755, mf.clone()),
            Tmpfs::with_memory(clock.clone(), 0o1777, mf.clone()),
        ),
    };
    let lower = GoferInode::root(host).map_err(errno("/ (gofer root)"))?;
    let root: Arc<dyn Inode> = overlay::new_root(&upper, Some(lower));
    for dir in [&b"/dev"[..], b"/proc", b"/sys"] {
        ensure_dir(&root, dir).map_err(errno(&String::from_utf8_lossy(dir)))?;
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
        "none / overlay {} 0 0\nnone /dev devtmpfs rw 0 0\nnone /dev/shm tmpfs rw 0 0\nnone /proc proc rw 0 0\nnone /sys sysfs ro 0 0\n",
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
    mount(b"/proc", new_procfs(procs, mounts), "proc", false)?;
    mount(b"/sys", super::sysfs::new_sysfs(cpus), "sysfs", true)?;
    for m in setup.mounts {
        let path = String::from_utf8_lossy(&m.dest).into_owned();
        let (inode, fs_type): (Arc<dyn Inode>, _) = match m.source {
            MountSource::Tmpfs { mode } => (
                Tmpfs::with_memory(clock.clone(), mode, mf.clone()).root(),
                "tmpfs",
            ),
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
    {
        let mut parts = super::dentry::lock(&vfs.parts);
        parts.upper = Some(upper);
        parts.shm = Some(shm);
    }
    Ok(vfs)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::vfs::file::Interrupt;
    use crate::vfs::pipe::new_pipe;
    use crate::vfs::procfs::tests::OneProc;
    use crate::vfs::stat::Timespec;
    use crate::vfs::state::{FileStateKind, RestoreCtx, SaveCtx};
    use crate::vfs::testing::{clone_memory, test_memory_file, FixedClock, LocalDirFs};

    fn host() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(d.path().join("etc/motd"), b"hello").unwrap();
        d
    }

    fn build_in(
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
}
