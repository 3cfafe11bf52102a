//! What the gofer serves, and that it matches the host.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};

use common::{errno, lookup, read_fd, serve, walk_all};
use gofer::{Access, Client, FileStat, FileType, OpenFlags, WalkStatus};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::write(r.join("f"), b"hello gofer").unwrap();
    fs::create_dir(r.join("sub")).unwrap();
    fs::write(r.join("sub/inner"), b"inner").unwrap();
    symlink("sub/inner", r.join("link")).unwrap();
    t
}

fn assert_stat_matches(s: &FileStat, m: &fs::Metadata) {
    assert_eq!(s.dev, m.dev());
    assert_eq!(s.ino, m.ino());
    assert_eq!(s.mode, m.mode());
    assert_eq!(s.nlink, m.nlink());
    assert_eq!(s.uid, m.uid());
    assert_eq!(s.gid, m.gid());
    assert_eq!(s.rdev, m.rdev());
    assert_eq!(s.size, m.size() as i64);
    assert_eq!(s.blksize, m.blksize() as i64);
    assert_eq!(s.blocks, m.blocks() as i64);
    assert_eq!((s.atime_sec, s.atime_nsec), (m.atime(), m.atime_nsec()));
    assert_eq!((s.mtime_sec, s.mtime_nsec), (m.mtime(), m.mtime_nsec()));
    assert_eq!((s.ctime_sec, s.ctime_nsec), (m.ctime(), m.ctime_nsec()));
}

#[test]
fn client_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Client>();
}

#[test]
fn stat_matches_metadata() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    assert_stat_matches(&g.stat(&root).unwrap(), &fs::metadata(t.path()).unwrap());
    let w = walk_all(&g, &root, &["sub", "inner"]);
    assert_stat_matches(
        &w.nodes[0].stat,
        &fs::metadata(t.path().join("sub")).unwrap(),
    );
    assert_stat_matches(
        &w.nodes[1].stat,
        &fs::metadata(t.path().join("sub/inner")).unwrap(),
    );
    let f = lookup(&g, &root, &["f"]);
    let s = g.stat(&f).unwrap();
    assert_stat_matches(&s, &fs::metadata(t.path().join("f")).unwrap());
    assert_eq!(s.file_type(), FileType::Regular);
    // A symlink's stat is the link's own.
    let l = walk_all(&g, &root, &["link"]);
    assert!(l.nodes[0].stat.is_symlink());
    assert_stat_matches(
        &l.nodes[0].stat,
        &fs::symlink_metadata(t.path().join("link")).unwrap(),
    );
    g.finish();
}

#[test]
fn walk_stops_at_what_is_missing() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let w = g.walk(&root, &["nope"]).unwrap();
    assert!(w.nodes.is_empty());
    assert_eq!(
        w.status,
        WalkStatus::Failed {
            errno: libc::ENOENT
        }
    );
    let w = g.walk(&root, &["sub", "nope", "x"]).unwrap();
    assert_eq!(w.nodes.len(), 1);
    assert_eq!(
        w.status,
        WalkStatus::Failed {
            errno: libc::ENOENT
        }
    );
    let w = g.walk(&root, &["f", "x"]).unwrap();
    assert_eq!(w.nodes.len(), 1);
    assert_eq!(
        w.status,
        WalkStatus::Failed {
            errno: libc::ENOTDIR
        }
    );
    // An empty walk is a no-op.
    let w = g.walk::<&str>(&root, &[]).unwrap();
    assert!(w.nodes.is_empty());
    assert_eq!(w.status, WalkStatus::Complete);
    g.finish();
}

#[test]
fn long_walks_take_several_requests() {
    let t = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..150).map(|i| format!("d{i}")).collect();
    let deep = names.iter().fold(t.path().to_path_buf(), |p, n| p.join(n));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf"), b"deep").unwrap();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("leaf");
    let w = walk_all(&g, &root, &all);
    assert_eq!(w.nodes.len(), 151);
    let fd = g.open(&w.nodes[150].handle, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(read_fd(fd), b"deep");
    // A miss in a later request still reports everything before it.
    all[120] = "missing";
    let w = g.walk(&root, &all).unwrap();
    assert_eq!(w.nodes.len(), 120);
    assert_eq!(
        w.status,
        WalkStatus::Failed {
            errno: libc::ENOENT
        }
    );
    g.finish();
}

#[test]
fn open_passes_a_working_fd() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    let fd = g.open(&f, OpenFlags::READ_ONLY).unwrap();
    // Received close-on-exec, and blocking as asked.
    let fdfl = FdFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap());
    assert!(fdfl.contains(FdFlag::FD_CLOEXEC));
    let fl = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    assert!(!fl.contains(OFlag::O_NONBLOCK));
    assert_eq!(fl & OFlag::O_ACCMODE, OFlag::O_RDONLY);
    assert_eq!(read_fd(fd), b"hello gofer");
    // The same handle opens again.
    let fd = g.open(&f, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(read_fd(fd), b"hello gofer");
    // A directory opens as a directory.
    let d = lookup(&g, &root, &["sub"]);
    let fd = g.open(&d, OpenFlags::READ_ONLY).unwrap();
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).unwrap();
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    let names: Vec<_> = nix::dir::Dir::from(fd)
        .unwrap()
        .iter()
        .map(|e| e.unwrap().file_name().to_bytes().to_vec())
        .collect();
    assert!(names.contains(&b"inner".to_vec()));
    // The root too.
    let fd = g.open(&root, OpenFlags::READ_ONLY).unwrap();
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).unwrap();
    assert_eq!(st.st_ino, fs::metadata(t.path()).unwrap().ino());
    g.finish();
}

#[test]
fn walk_open_opens_a_path() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let (fd, st) = g
        .walk_open(&root, "sub//./inner", OpenFlags::READ_ONLY)
        .unwrap();
    assert_eq!(
        st.ino,
        fs::metadata(t.path().join("sub/inner")).unwrap().ino()
    );
    assert_eq!(read_fd(fd), b"inner");
    let sub = lookup(&g, &root, &["sub"]);
    let (fd, _) = g.walk_open(&sub, "inner", OpenFlags::READ_ONLY).unwrap();
    assert_eq!(read_fd(fd), b"inner");
    let (_, st) = g.walk_open(&root, "", OpenFlags::READ_ONLY).unwrap();
    assert!(st.is_dir());
    assert_eq!(
        errno(g.walk_open(&root, "nope", OpenFlags::READ_ONLY)),
        libc::ENOENT
    );
    assert_eq!(
        errno(g.walk_open(&root, "f/x", OpenFlags::READ_ONLY)),
        libc::ENOTDIR
    );
    g.finish();
}

#[test]
fn readdir_matches_the_host() {
    let t = tree();
    fs::create_dir(t.path().join("emptydir")).unwrap();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let got: BTreeMap<Vec<u8>, (u64, FileType)> = g
        .readdir(&root)
        .unwrap()
        .into_iter()
        .map(|e| (e.name, (e.ino, e.file_type)))
        .collect();
    let mut want = BTreeMap::new();
    for e in fs::read_dir(t.path()).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            FileType::Directory
        } else if ft.is_symlink() {
            FileType::Symlink
        } else if ft.is_file() {
            FileType::Regular
        } else if ft.is_fifo() {
            FileType::Fifo
        } else {
            FileType::Unknown
        };
        want.insert(e.file_name().into_encoded_bytes(), (m.ino(), kind));
    }
    assert_eq!(got, want);
    let empty = lookup(&g, &root, &["emptydir"]);
    assert!(g.readdir(&empty).unwrap().is_empty());
    let f = lookup(&g, &root, &["f"]);
    assert_eq!(errno(g.readdir(&f)), libc::ENOTDIR);
    g.finish();
}

#[test]
fn readdir_pages_large_directories() {
    let t = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for i in 0..1500 {
        // 1500 names of ~100 bytes do not fit in one 64 KiB message.
        let name = format!("{i:05}-{}", "x".repeat(94));
        fs::write(t.path().join(&name), b"").unwrap();
        want.push(name.into_bytes());
    }
    // A name that is not UTF-8.
    let odd = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff\xfeodd");
    fs::write(t.path().join(odd), b"").unwrap();
    want.push(b"\xff\xfeodd".to_vec());
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let mut got: Vec<Vec<u8>> = g
        .readdir(&root)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // And again, from a fresh snapshot.
    assert_eq!(g.readdir(&root).unwrap().len(), want.len());
    let w = g.walk(&root, &[&b"\xff\xfeodd"[..]]).unwrap();
    assert_eq!(w.status, WalkStatus::Complete);
    g.finish();
}

#[test]
fn readlink_gives_the_target() {
    let t = tree();
    symlink("/etc/passwd", t.path().join("abs")).unwrap();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let l = lookup(&g, &root, &["link"]);
    assert_eq!(g.readlink(&l).unwrap(), b"sub/inner");
    let a = lookup(&g, &root, &["abs"]);
    assert_eq!(g.readlink(&a).unwrap(), b"/etc/passwd");
    let f = lookup(&g, &root, &["f"]);
    assert_eq!(errno(g.readlink(&f)), libc::EINVAL);
    assert_eq!(errno(g.readlink(&root)), libc::EINVAL);
    g.finish();
}

#[test]
fn read_only_refuses_writes() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    for flags in [
        OpenFlags::WRITE_ONLY,
        OpenFlags::READ_WRITE,
        OpenFlags::from_linux(libc::O_RDONLY | libc::O_TRUNC),
        OpenFlags::from_linux(libc::O_WRONLY | libc::O_APPEND),
    ] {
        assert_eq!(errno(g.open(&f, flags)), libc::EROFS, "{flags:?}");
        assert_eq!(
            errno(g.walk_open(&root, "f", flags)),
            libc::EROFS,
            "{flags:?}"
        );
    }
    assert_eq!(fs::read(t.path().join("f")).unwrap(), b"hello gofer");
    let d = lookup(&g, &root, &["sub"]);
    assert_eq!(errno(g.open(&d, OpenFlags::READ_WRITE)), libc::EISDIR);
    assert_eq!(
        read_fd(g.open(&f, OpenFlags::READ_ONLY).unwrap()),
        b"hello gofer"
    );
    g.finish();
}

#[test]
fn writable_root_allows_writes() {
    let t = tree();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    let mut file = fs::File::from(g.open(&f, OpenFlags::READ_WRITE).unwrap());
    file.write_all(b"HELLO").unwrap();
    file.rewind().unwrap();
    let mut s = String::new();
    file.read_to_string(&mut s).unwrap();
    assert_eq!(s, "HELLO gofer");
    let flags = OpenFlags {
        access: Access::WriteOnly,
        truncate: false,
        append: true,
    };
    fs::File::from(g.open(&f, flags).unwrap())
        .write_all(b"!")
        .unwrap();
    assert_eq!(fs::read(t.path().join("f")).unwrap(), b"HELLO gofer!");
    let trunc = OpenFlags::from_linux(libc::O_WRONLY | libc::O_TRUNC);
    drop(g.open(&f, trunc).unwrap());
    assert_eq!(fs::read(t.path().join("f")).unwrap(), b"");
    let d = lookup(&g, &root, &["sub"]);
    assert_eq!(errno(g.open(&d, OpenFlags::WRITE_ONLY)), libc::EISDIR);
    g.finish();
}

/// mkdir, symlink, rename and unlink on a writable gofer reach the host;
/// a renamed file's handle opens from its new place; a read-only gofer
/// refuses each with EROFS, and names that are not one component EINVAL.
#[test]
fn tree_changes_on_a_writable_root() {
    let t = tree();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let d = g.mkdir(&root, b"made", 0o750).unwrap();
    assert!(t.path().join("made").is_dir());
    g.symlink(&d.handle, b"ln", b"../f").unwrap();
    assert_eq!(
        fs::read_link(t.path().join("made/ln")).unwrap(),
        std::path::Path::new("../f")
    );
    let f = lookup(&g, &root, &["f"]);
    g.rename((&root, b"f"), (&d.handle, b"moved"), false)
        .unwrap();
    assert!(!t.path().join("f").exists());
    assert_eq!(
        read_fd(g.open(&f, OpenFlags::READ_ONLY).unwrap()),
        b"hello gofer"
    );
    assert_eq!(
        errno(g.rename((&d.handle, b"moved"), (&d.handle, b"ln"), true)),
        libc::EEXIST
    );
    g.unlink(&d.handle, b"ln", false).unwrap();
    assert_eq!(errno(g.unlink(&root, b"made", true)), libc::ENOTEMPTY);
    g.unlink(&d.handle, b"moved", false).unwrap();
    g.unlink(&root, b"made", true).unwrap();
    assert!(!t.path().join("made").exists());
    for bad in [&b".."[..], b"a/b", b"", b"."] {
        assert_eq!(errno(g.mkdir(&root, bad, 0o700)), libc::EINVAL, "{bad:?}");
        assert_eq!(errno(g.unlink(&root, bad, false)), libc::EINVAL, "{bad:?}");
    }
    g.finish();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    assert_eq!(errno(g.mkdir(&root, b"x", 0o700)), libc::EROFS);
    assert_eq!(errno(g.symlink(&root, b"x", b"y")), libc::EROFS);
    assert_eq!(errno(g.unlink(&root, b"sub", true)), libc::EROFS);
    assert_eq!(
        errno(g.rename((&root, b"sub"), (&root, b"x"), false)),
        libc::EROFS
    );
    g.finish();
}

#[test]
fn closed_and_unknown_handles_are_ebadf() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    g.close(f).unwrap();
    assert_eq!(errno(g.stat(&f)), libc::EBADF);
    assert_eq!(errno(g.open(&f, OpenFlags::READ_ONLY)), libc::EBADF);
    assert_eq!(errno(g.close(f)), libc::EBADF);
    // Closing a directory's handle leaves handles below it working.
    let w = walk_all(&g, &root, &["sub", "inner"]);
    g.close(w.nodes[0].handle).unwrap();
    g.close(root).unwrap();
    assert_eq!(
        read_fd(g.open(&w.nodes[1].handle, OpenFlags::READ_ONLY).unwrap()),
        b"inner"
    );
    assert_eq!(errno(g.walk(&root, &["f"])), libc::EBADF);
    // A second attach gives a fresh root.
    let root2 = g.attach().unwrap();
    assert_ne!(root2, root);
    lookup(&g, &root2, &["f"]);
    g.finish();
}

#[test]
fn fingerprint_tracks_the_file() {
    let t = tree();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    let before = g.stat(&f).unwrap().fingerprint();
    // Same file, walked again: same fingerprint.
    let again = lookup(&g, &root, &["f"]);
    assert_eq!(g.stat(&again).unwrap().fingerprint(), before);
    // Changed content: different.
    fs::File::from(
        g.open(&f, OpenFlags::from_linux(libc::O_WRONLY | libc::O_APPEND))
            .unwrap(),
    )
    .write_all(b" and more")
    .unwrap();
    assert_ne!(g.stat(&f).unwrap().fingerprint(), before);
    // Another file under the same name: different.
    fs::remove_file(t.path().join("f")).unwrap();
    fs::write(t.path().join("f"), b"hello gofer").unwrap();
    let other = lookup(&g, &root, &["f"]);
    assert_ne!(g.stat(&other).unwrap().fingerprint().ino, before.ino);
    g.finish();
}

#[test]
fn replaced_file_is_stale() {
    let t = tree();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    fs::rename(t.path().join("f"), t.path().join("g")).unwrap();
    fs::write(t.path().join("f"), b"impostor").unwrap();
    assert_eq!(errno(g.open(&f, OpenFlags::READ_ONLY)), libc::ESTALE);
    // The handle still stats the original file.
    assert_eq!(
        g.stat(&f).unwrap().ino,
        fs::metadata(t.path().join("g")).unwrap().ino()
    );
    // A directory's handle follows the directory.
    let d = lookup(&g, &root, &["sub"]);
    fs::rename(t.path().join("sub"), t.path().join("sub2")).unwrap();
    let got: Vec<_> = g.readdir(&d).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(got, vec![b"inner".to_vec()]);
    g.finish();
}

#[test]
fn special_files_are_not_opened() {
    let t = tree();
    nix::unistd::mkfifo(
        &t.path().join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let fifo = walk_all(&g, &root, &["fifo"]);
    assert_eq!(fifo.nodes[0].stat.file_type(), FileType::Fifo);
    // Refused rather than blocking the gofer on a FIFO with no writer.
    assert_eq!(
        errno(g.open(&fifo.nodes[0].handle, OpenFlags::READ_ONLY)),
        libc::EPERM
    );
    assert_eq!(
        errno(g.walk_open(&root, "fifo", OpenFlags::READ_ONLY)),
        libc::EPERM
    );
    let sock = lookup(&g, &root, &["sock"]);
    assert_eq!(errno(g.open(&sock, OpenFlags::READ_WRITE)), libc::ENXIO);
    g.finish();
}

/// The fds this test process has open (the server runs in a thread of it).
fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn walk_stat_gives_a_whole_path_and_keeps_no_fd() {
    let t = tree();
    fs::create_dir_all(t.path().join("a/b/c/d/e/f/g")).unwrap();
    fs::write(t.path().join("a/b/c/d/e/f/g/h"), b"deep").unwrap();
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    // A leak of one fd per name would show as 1,600 more; other tests of
    // this binary open a few meanwhile, hence the slack.
    let before = open_fds();
    for _ in 0..200 {
        g.walk_stat(&root, &names).unwrap();
    }
    let after = open_fds();
    assert!(after < before + 100, "{before} fds before, {after} after");
    let w = g.walk_stat(&root, &names).unwrap();
    assert_eq!(w.status, WalkStatus::Complete);
    assert_eq!(w.stats.len(), 8);
    let mut p = t.path().to_path_buf();
    for (name, st) in names.iter().zip(&w.stats) {
        p.push(name);
        assert_stat_matches(st, &fs::symlink_metadata(&p).unwrap());
    }
    // The same stops as Walk: a missing name, a file in the middle, a
    // symlink with names behind it.
    let w = g.walk_stat(&root, &["a", "b", "nope", "x"]).unwrap();
    assert_eq!(w.stats.len(), 2);
    assert_eq!(
        w.status,
        WalkStatus::Failed {
            errno: libc::ENOENT
        }
    );
    let w = g.walk_stat(&root, &["f", "x"]).unwrap();
    assert_eq!(w.stats.len(), 1);
    assert_eq!(
        w.status,
        WalkStatus::Failed {
            errno: libc::ENOTDIR
        }
    );
    let w = g.walk_stat(&root, &["link", "x"]).unwrap();
    assert_eq!(w.status, WalkStatus::Symlink);
    assert!(w.stats[0].is_symlink());
    // A walk longer than one request goes on where the first stopped.
    let long: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
    fs::create_dir_all(long.iter().fold(t.path().to_path_buf(), |p, n| p.join(n))).unwrap();
    let before = open_fds();
    for _ in 0..20 {
        let w = g.walk_stat(&root, &long).unwrap();
        assert_eq!((w.stats.len(), w.status), (100, WalkStatus::Complete));
        assert!(w.stats.iter().all(|s| s.is_dir()));
    }
    let after = open_fds();
    assert!(
        after < before + 100,
        "the long walks' handles are closed: {before} fds before, {after} after"
    );
    assert_eq!(
        errno(g.walk_stat(&root, &[".."])),
        libc::EINVAL,
        "no `..`, as for Walk"
    );
    g.finish();
}

#[test]
fn listings_with_stats_match_the_host() {
    let t = tree();
    for i in 0..3000 {
        fs::write(t.path().join(format!("many-{i:05}")), vec![b'x'; i % 7]).unwrap();
    }
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let listed = g.readdir_stat(&root).unwrap();
    assert_eq!(listed.len(), 3003, "three pages' worth and more, all of it");
    for e in &listed {
        let st = e.stat.as_ref().expect("a stat per entry");
        let p = t.path().join(std::ffi::OsStr::from_bytes(&e.name));
        assert_stat_matches(st, &fs::symlink_metadata(&p).unwrap());
        assert_eq!(st.file_type(), e.file_type);
        assert_eq!(st.ino, e.ino);
    }
    // Without stats, none.
    assert!(g.readdir(&root).unwrap().iter().all(|e| e.stat.is_none()));
    g.finish();
}

#[test]
fn setattr_changes_the_host_file() {
    use gofer::{SetAttr, SetTime};
    let t = tree();
    let g = serve(t.path(), false);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    let st = g
        .setattr(
            &f,
            SetAttr {
                mode: Some(0o4751),
                ..SetAttr::default()
            },
        )
        .unwrap();
    let m = fs::metadata(t.path().join("f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4751);
    assert_stat_matches(&st, &m);
    g.setattr(
        &f,
        SetAttr {
            uid: Some(1234),
            gid: Some(5678),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let m = fs::metadata(t.path().join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    g.setattr(
        &f,
        SetAttr {
            atime: Some(SetTime {
                sec: 1_000_000,
                nsec: 5,
            }),
            mtime: Some(SetTime {
                sec: 2_000_000,
                nsec: 7,
            }),
            size: Some(3),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let m = fs::metadata(t.path().join("f")).unwrap();
    assert_eq!((m.atime(), m.atime_nsec()), (1_000_000, 5));
    assert_eq!(m.size(), 3);
    // Truncation sets mtime itself (after the explicit one, as the times
    // are set last): only the size and atime are checked above, and here
    // one alone.
    g.setattr(
        &f,
        SetAttr {
            mtime: Some(SetTime {
                sec: 2_000_000,
                nsec: 7,
            }),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let m = fs::metadata(t.path().join("f")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (2_000_000, 7));
    assert_eq!(fs::read(t.path().join("f")).unwrap(), b"hel");
    // A directory: mode and times, not a size.
    let d = lookup(&g, &root, &["sub"]);
    g.setattr(
        &d,
        SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(
        fs::metadata(t.path().join("sub")).unwrap().mode() & 0o7777,
        0o700
    );
    let size = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(errno(g.setattr(&d, size)), libc::EISDIR);
    // Out-of-range nanoseconds are refused, not wrapped.
    let bad = SetAttr {
        atime: Some(SetTime {
            sec: 0,
            nsec: 1_000_000_000,
        }),
        ..SetAttr::default()
    };
    assert_eq!(errno(g.setattr(&f, bad)), libc::EINVAL);
    g.finish();

    // A read-only gofer changes nothing.
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let f = lookup(&g, &root, &["f"]);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(errno(g.setattr(&f, chmod)), libc::EROFS);
    assert_eq!(
        fs::metadata(t.path().join("f")).unwrap().mode() & 0o7777,
        0o751,
        "unchanged since the chown, which cleared set-user-ID"
    );
    g.finish();
}

#[test]
fn readdir_at_lists_without_a_handle() {
    let t = tree();
    fs::create_dir_all(t.path().join("x/y")).unwrap();
    for i in 0..300 {
        fs::write(t.path().join(format!("x/y/e{i}")), b"").unwrap();
    }
    for i in 0..5000 {
        fs::write(t.path().join(format!("x/e{i:04}-{}", "n".repeat(40))), b"").unwrap();
    }
    let g = serve(t.path(), true);
    let root = g.attach().unwrap();
    let before = open_fds();
    for _ in 0..200 {
        g.readdir_at(&root, &["x", "y"], false).unwrap();
    }
    let after = open_fds();
    assert!(
        after < before + 100,
        "nothing kept: {before} fds before, {after} after"
    );
    let (st, entries) = g
        .readdir_at(&root, &["x", "y"], true)
        .unwrap()
        .expect("300 entries fit in one reply");
    let m = fs::metadata(t.path().join("x/y")).unwrap();
    assert_eq!((st.dev, st.ino, st.mode), (m.dev(), m.ino(), m.mode()));
    assert_eq!(entries.len(), 300);
    let y = lookup(&g, &root, &["x", "y"]);
    let mut by_handle = g.readdir_stat(&y).unwrap();
    let mut at = entries;
    by_handle.sort_by(|a, b| a.name.cmp(&b.name));
    at.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        at, by_handle,
        "the same entries and stats as through a handle"
    );
    // Empty names: the directory itself.
    let (st, entries) = g.readdir_at::<&str>(&root, &[], false).unwrap().unwrap();
    assert!(st.is_dir());
    assert!(entries.iter().any(|e| e.name == b"x") && entries.iter().all(|e| e.stat.is_none()));
    // Too long for one reply: None, and the handle way lists it all.
    assert!(g.readdir_at(&root, &["x"], true).unwrap().is_none());
    let x = lookup(&g, &root, &["x"]);
    assert_eq!(g.readdir_stat(&x).unwrap().len(), 5001);
    assert_eq!(errno(g.readdir_at(&root, &["f"], true)), libc::ENOTDIR);
    assert_eq!(errno(g.readdir_at(&root, &["nope"], true)), libc::ENOENT);
    assert_eq!(errno(g.readdir_at(&root, &[".."], true)), libc::EINVAL);
    g.finish();
}
