//! Every way out of the root that the gofer must refuse.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{errno, lookup, read_fd, serve, walk_all};
use gofer::{FileType, GoferError, OpenFlags, WalkStatus};

/// A root holding its own `etc/passwd`, so that anything read through it can
/// be told from the host's.
fn root_with_decoy() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("etc")).unwrap();
    fs::write(t.path().join("etc/passwd"), b"inside").unwrap();
    fs::create_dir(t.path().join("sub")).unwrap();
    t
}

const ALL_FLAGS: [OpenFlags; 3] = [
    OpenFlags::READ_ONLY,
    OpenFlags::WRITE_ONLY,
    OpenFlags::READ_WRITE,
];

#[test]
fn bad_names_are_refused() {
    let t = root_with_decoy();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let sub = lookup(&g, &root, &["sub"]);
    for dir in [root, sub] {
        for bad in [
            &b".."[..],
            b".",
            b"",
            b"etc/passwd",
            b"/etc",
            b"..//..",
            b"a\0b",
        ] {
            assert_eq!(errno(g.walk(&dir, &[bad])), libc::EINVAL, "{bad:?}");
            // Refused even behind a good name, and before walking anything.
            assert_eq!(errno(g.walk(&dir, &[&b"etc"[..], bad])), libc::EINVAL);
        }
        assert_eq!(errno(g.walk(&dir, &[vec![b'a'; 256]])), libc::ENAMETOOLONG);
    }
    for bad in [
        "..",
        "../etc/passwd",
        "sub/../../etc",
        "/etc/passwd",
        "etc/\0",
    ] {
        assert_eq!(
            errno(g.walk_open(&root, bad, OpenFlags::READ_ONLY)),
            libc::EINVAL,
            "{bad}"
        );
    }
    g.finish();
}

/// Checks that `names` from the root stop at a symlink as the last node, and
/// that the link cannot be opened, walked through or listed.
fn assert_stops_at_link(g: &gofer::Client, root: &gofer::Handle, names: &[&str], link_at: usize) {
    let w = g.walk(root, names).unwrap();
    assert_eq!(w.nodes.len(), link_at + 1, "{names:?}: {w:?}");
    let expected = if link_at + 1 < names.len() {
        WalkStatus::Symlink
    } else {
        WalkStatus::Complete
    };
    assert_eq!(w.status, expected);
    let link = w.nodes[link_at].clone();
    assert_eq!(link.stat.file_type(), FileType::Symlink);
    // WalkStat takes the same steps and stops at the same link.
    let ws = g.walk_stat(root, names).unwrap();
    assert_eq!(ws.status, expected, "{names:?}");
    assert_eq!(ws.stats.len(), link_at + 1, "{names:?}");
    assert_eq!(
        ws.stats[link_at], link.stat,
        "{names:?}: the link's own stat"
    );
    let through = g.walk_stat(&link.handle, &["etc"]).unwrap();
    assert!(through.stats.is_empty());
    assert_eq!(
        through.status,
        WalkStatus::Failed {
            errno: libc::ENOTDIR
        }
    );
    assert_eq!(errno(g.readdir_stat(&link.handle)), libc::ENOTDIR);
    // Nor can a listing without a handle go through it or list it.
    assert_eq!(
        errno(g.readdir_at(root, names, true)),
        libc::ENOTDIR,
        "{names:?}"
    );
    assert_eq!(
        errno(g.readdir_at(root, &names[..=link_at], true)),
        libc::ENOTDIR,
        "{names:?}"
    );
    for flags in ALL_FLAGS {
        assert_eq!(errno(g.open(&link.handle, flags)), libc::ELOOP, "{names:?}");
    }
    let through = g.walk(&link.handle, &["etc"]).unwrap();
    assert!(through.nodes.is_empty());
    assert_eq!(
        through.status,
        WalkStatus::Failed {
            errno: libc::ENOTDIR
        }
    );
    assert_eq!(errno(g.readdir(&link.handle)), libc::ENOTDIR);
    assert_eq!(
        errno(g.walk_open(&link.handle, "etc", OpenFlags::READ_ONLY)),
        libc::ENOTDIR
    );
    let path = names.join("/");
    assert_eq!(
        errno(g.walk_open(root, &path, OpenFlags::READ_ONLY)),
        libc::ELOOP,
        "{path}"
    );
}

#[test]
fn absolute_symlink_to_etc() {
    let t = root_with_decoy();
    symlink("/etc", t.path().join("etc_link")).unwrap();
    symlink("/etc/passwd", t.path().join("sub/passwd_link")).unwrap();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    assert_stops_at_link(&g, &root, &["etc_link", "passwd"], 0);
    assert_stops_at_link(&g, &root, &["etc_link"], 0);
    assert_stops_at_link(&g, &root, &["sub", "passwd_link"], 1);
    // What the Sentry does with it: read the target and walk it from its own
    // root, which is the gofer's root: the decoy, not the host's file.
    let link = lookup(&g, &root, &["etc_link"]);
    let target = g.readlink(&link).unwrap();
    assert_eq!(target, b"/etc");
    let f = lookup(&g, &root, &["etc", "passwd"]);
    assert_eq!(
        read_fd(g.open(&f, OpenFlags::READ_ONLY).unwrap()),
        b"inside"
    );
    g.finish();
}

#[test]
fn relative_symlink_out_of_the_root() {
    let t = root_with_decoy();
    symlink("../../etc/passwd", t.path().join("sub/up")).unwrap();
    symlink("../../../../../../..", t.path().join("sub/far")).unwrap();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    assert_stops_at_link(&g, &root, &["sub", "up"], 1);
    assert_stops_at_link(&g, &root, &["sub", "far", "etc", "passwd"], 1);
    g.finish();
}

#[test]
fn relative_symlink_in_a_parent_component() {
    let t = root_with_decoy();
    fs::write(t.path().join("sub/x"), b"x").unwrap();
    // Harmless targets, but the gofer still follows none of them.
    symlink("sub", t.path().join("d")).unwrap();
    symlink("..", t.path().join("sub/parent")).unwrap();
    symlink(".", t.path().join("sub/self")).unwrap();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    assert_stops_at_link(&g, &root, &["d", "x"], 0);
    assert_stops_at_link(&g, &root, &["sub", "parent", "etc", "passwd"], 1);
    assert_stops_at_link(&g, &root, &["sub", "self", "x"], 1);
    g.finish();
}

#[test]
fn symlink_to_proc_self_root() {
    let t = root_with_decoy();
    symlink("/proc/self/root", t.path().join("pr")).unwrap();
    symlink("/proc/self/root/etc/passwd", t.path().join("sub/prp")).unwrap();
    symlink("/proc/self/cwd", t.path().join("cwd")).unwrap();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    assert_stops_at_link(&g, &root, &["pr", "etc", "passwd"], 0);
    assert_stops_at_link(&g, &root, &["sub", "prp"], 1);
    assert_stops_at_link(&g, &root, &["cwd", "etc"], 0);
    g.finish();
}

#[test]
fn root_is_slash_and_the_hosts_kernel_file_systems_are_not_served() {
    // Serving the host's `/`, as `cryo do` does: the host's /proc, /sys and
    // /dev/pts are mounted inside the root. Their files would show the
    // host's processes and kernel (and /proc's magic links jump anywhere)
    // wherever the application unmounts the Sentry's own: none is opened.
    let g = serve("/".as_ref(), true);
    let root = g.attach().unwrap();
    let pid = std::process::id().to_string();
    for names in [
        &["proc"][..],
        &["proc", "self", "root", "etc", "passwd"],
        &["proc", &pid, "environ"],
        &["proc", "kallsyms"],
        &["sys"],
        &["sys", "kernel"],
        &["dev", "pts"],
    ] {
        let w = g.walk(&root, names).unwrap();
        let at = usize::from(names[0] == "dev");
        assert_eq!(w.nodes.len(), at, "{names:?}: {w:?}");
        assert_eq!(
            w.status,
            WalkStatus::Failed {
                errno: libc::ENOENT
            },
            "{names:?}"
        );
        let ws = g.walk_stat(&root, names).unwrap();
        assert_eq!(ws.stats.len(), at, "{names:?}");
    }
    // In one request: a path through a (magic) symlink stops at it, as
    // always; any other file there is absent.
    for (path, want) in [
        ("proc/self/root/etc/passwd".to_string(), libc::ELOOP),
        (format!("proc/{pid}/root/etc/passwd"), libc::ELOOP),
        (format!("proc/{pid}/fd/0"), libc::ENOENT),
        (format!("proc/{pid}/environ"), libc::ENOENT),
        ("proc/kallsyms".to_string(), libc::ENOENT),
        ("sys/kernel/notes".to_string(), libc::ENOENT),
    ] {
        assert_eq!(
            errno(g.walk_open(&root, &path, OpenFlags::READ_ONLY)),
            want,
            "{path}"
        );
    }
    // Their mount points are names in the root's listing, as natively.
    let names: Vec<Vec<u8>> = g
        .readdir(&root)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&b"proc".to_vec()));
    // The root really is `/`: its own files are served.
    if std::path::Path::new("/etc/hostname").is_file() {
        let (fd, _) = g
            .walk_open(&root, "etc/hostname", OpenFlags::READ_ONLY)
            .unwrap();
        assert_eq!(read_fd(fd), fs::read("/etc/hostname").unwrap());
    }
    g.finish();
}

#[test]
fn hardlinks_are_the_files_the_host_put_in_the_root() {
    // A hard link has no "target": a file linked into the root by the host
    // *is* in the root, and the gofer serves it. The sandbox cannot make
    // one: the protocol has no link operation. A hard link to a symlink is
    // still a symlink, and is not followed.
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(outer.path().join("secret"), b"linked in").unwrap();
    fs::hard_link(outer.path().join("secret"), root.join("hl")).unwrap();
    symlink("/etc", outer.path().join("outside_link")).unwrap();
    nix::unistd::linkat(
        None,
        &outer.path().join("outside_link"),
        None,
        &root.join("hl_link"),
        nix::fcntl::AtFlags::empty(),
    )
    .unwrap();
    let g = serve(&root, true);
    let r = g.attach().unwrap();
    let hl = walk_all(&g, &r, &["hl"]);
    assert_eq!(hl.nodes[0].stat.nlink, 2);
    assert_eq!(
        read_fd(g.open(&hl.nodes[0].handle, OpenFlags::READ_ONLY).unwrap()),
        b"linked in"
    );
    assert_stops_at_link(&g, &r, &["hl_link", "passwd"], 0);
    g.finish();
}

#[test]
fn swapping_a_directory_for_a_symlink_during_walks() {
    // The race: while the host swaps `a/b` between a real directory and a
    // symlink to the host's /etc, every walk and open either reaches the
    // directory inside the root or stops at the link. The test only counts
    // if the race happened: the walks must have seen `a/b` change from one
    // to the other many times, or it fails.
    const MIN_SWAPS_SEEN: u32 = 50;
    const MIN_WALKS: u32 = 2000;
    let t = root_with_decoy();
    let a = t.path().join("a");
    fs::create_dir_all(a.join("b_dir")).unwrap();
    fs::write(a.join("b_dir/passwd"), b"inside").unwrap();
    symlink("/etc", a.join("b_link")).unwrap();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let a = a.clone();
        std::thread::spawn(move || {
            let mut renames = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (from, to) in [
                    ("b_dir", "b"),
                    ("b", "b_dir"),
                    ("b_link", "b"),
                    ("b", "b_link"),
                ] {
                    // Only the swapper renames: each one succeeds.
                    fs::rename(a.join(from), a.join(to)).unwrap();
                    renames += 1;
                }
            }
            renames
        })
    };
    /// What one walk of a/b/passwd found at `a/b`.
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        Dir,
        Link,
        Absent,
    }
    let (mut reached, mut stopped, mut swaps_seen, mut walks) = (0u32, 0u32, 0u32, 0u32);
    let mut last: Option<Seen> = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while walks < MIN_WALKS || (swaps_seen < MIN_SWAPS_SEEN && std::time::Instant::now() < deadline)
    {
        walks += 1;
        let w = g.walk(&root, &["a", "b", "passwd"]).unwrap();
        let seen = if w.status == WalkStatus::Complete {
            match g.open(&w.nodes[2].handle, OpenFlags::READ_ONLY) {
                Ok(fd) => {
                    assert_eq!(read_fd(fd), b"inside");
                    reached += 1;
                }
                Err(GoferError::Errno(libc::ESTALE | libc::ENOENT)) => {}
                Err(e) => panic!("open: {e}"),
            }
            Seen::Dir
        } else if w.status == WalkStatus::Symlink {
            assert!(w.nodes[1].stat.is_symlink());
            stopped += 1;
            Seen::Link
        } else {
            Seen::Absent
        };
        for n in w.nodes {
            g.close(n.handle).unwrap();
        }
        // A change between a directory and a link from one walk to the
        // next is a swap the gofer raced with.
        if seen != Seen::Absent {
            if last.is_some_and(|l| l != seen) {
                swaps_seen += 1;
            }
            last = Some(seen);
        }
        match g.walk_open(&root, "a/b/passwd", OpenFlags::READ_ONLY) {
            Ok((fd, _)) => assert_eq!(read_fd(fd), b"inside"),
            Err(GoferError::Errno(libc::ELOOP | libc::ENOENT | libc::ESTALE)) => {}
            Err(e) => panic!("walk_open: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let renames = swapper.join().unwrap();
    eprintln!(
        "{walks} walks: {swaps_seen} swaps seen, {reached} reached the directory, \
         {stopped} stopped at the link; {renames} renames"
    );
    assert!(
        swaps_seen >= MIN_SWAPS_SEEN && reached > 0 && stopped > 0,
        "the race did not happen: {swaps_seen} swaps seen in {walks} walks \
         ({reached} reached the directory, {stopped} stopped at the link, {renames} renames)"
    );
    g.finish();
}

/// An outside file's mode, owner, size and mtime, to check that nothing
/// through the gofer changed it.
fn outside_state(p: &std::path::Path) -> (u32, u32, u32, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).unwrap();
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
    )
}

fn every_change() -> gofer::SetAttr {
    gofer::SetAttr {
        mode: Some(0o777),
        uid: Some(4321),
        gid: Some(4321),
        size: Some(0),
        atime: Some(gofer::SetTime { sec: 1, nsec: 0 }),
        mtime: Some(gofer::SetTime { sec: 1, nsec: 0 }),
    }
}

#[test]
fn setattr_on_a_symlink_never_reaches_its_target() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, b"outside").unwrap();
    let t = root_with_decoy();
    symlink(&secret, t.path().join("abs")).unwrap();
    symlink(
        "../../../../../../../../..".to_string() + secret.to_str().unwrap(),
        t.path().join("rel"),
    )
    .unwrap();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let before = outside_state(&secret);
    for name in ["abs", "rel"] {
        let l = lookup(&g, &root, &[name]);
        // Each change alone: whatever the host says of a symlink's own
        // attributes, the target stays as it was.
        let all = every_change();
        let one_by_one = [
            gofer::SetAttr {
                mode: all.mode,
                ..Default::default()
            },
            gofer::SetAttr {
                uid: all.uid,
                gid: all.gid,
                ..Default::default()
            },
            gofer::SetAttr {
                size: all.size,
                ..Default::default()
            },
            gofer::SetAttr {
                atime: all.atime,
                mtime: all.mtime,
                ..Default::default()
            },
        ];
        for attr in one_by_one {
            let _ = g.setattr(&l, attr);
            assert_eq!(outside_state(&secret), before, "{name}: {attr:?}");
        }
        assert_eq!(
            errno(g.setattr(
                &l,
                gofer::SetAttr {
                    size: Some(0),
                    ..Default::default()
                }
            )),
            libc::EINVAL,
            "no size for a symlink"
        );
    }
    assert_eq!(fs::read(&secret).unwrap(), b"outside");
    g.finish();
}

#[test]
fn symlink_swapped_under_a_setattr() {
    // The race: the host swaps `a/victim` between a file of the root and a
    // symlink to a file outside it while the Sentry walks to it and
    // changes its attributes. A change lands on the file the walk reached
    // (or fails); the outside file never changes. It only counts if both
    // kinds were walked to many times.
    const MIN_EACH: u32 = 50;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, b"outside, not to be truncated").unwrap();
    let t = root_with_decoy();
    let a = t.path().join("a");
    fs::create_dir(&a).unwrap();
    fs::write(a.join("victim_file"), b"inside").unwrap();
    symlink(&secret, a.join("victim_link")).unwrap();
    let before = outside_state(&secret);
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, a) = (stop.clone(), a.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (from, to) in [
                    ("victim_file", "victim"),
                    ("victim", "victim_file"),
                    ("victim_link", "victim"),
                    ("victim", "victim_link"),
                ] {
                    fs::rename(a.join(from), a.join(to)).unwrap();
                }
            }
        })
    };
    let (mut files, mut links, mut walks) = (0u32, 0u32, 0u32);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (files < MIN_EACH || links < MIN_EACH) && std::time::Instant::now() < deadline {
        walks += 1;
        let w = g.walk(&root, &["a", "victim"]).unwrap();
        if w.status != WalkStatus::Complete {
            for n in w.nodes {
                g.close(n.handle).unwrap();
            }
            continue;
        }
        let node = &w.nodes[1];
        if node.stat.is_symlink() {
            links += 1;
        } else {
            files += 1;
        }
        // Give the swapper time to move things under the handle.
        std::thread::yield_now();
        match g.setattr(&node.handle, every_change()) {
            Ok(_) => {}
            Err(GoferError::Errno(
                libc::ESTALE | libc::ENOENT | libc::EINVAL | libc::EOPNOTSUPP | libc::ELOOP,
            )) => {}
            Err(e) => panic!("setattr: {e}"),
        }
        assert_eq!(outside_state(&secret), before, "after {walks} walks");
        for n in w.nodes {
            g.close(n.handle).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        files >= MIN_EACH && links >= MIN_EACH,
        "the race did not happen: {files} files and {links} links in {walks} walks"
    );
    assert_eq!(fs::read(&secret).unwrap(), b"outside, not to be truncated");
    g.finish();
}
