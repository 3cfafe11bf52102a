//! mount(2), umount2(2), chroot(2) and pivot_root(2) inside the sandbox:
//! the `mounts` guest compared with native Linux (run as root in a private
//! mount namespace), busybox's `mount`/`umount`, mount namespaces, and
//! mount trees (one switched by pivot_root(2), several namespaces) that
//! survive checkpoint and restore.

use std::path::PathBuf;
use std::time::Duration;

use cryo_tests::sandbox::{checkpoint, Sandbox, Scratch};
use cryo_tests::{assert_same, guest, unique_tmp_path, Invocation, Libc};

/// A fresh directory on the host for the guest to mount on, removed after.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(prefix: &str) -> WorkDir {
        let p = unique_tmp_path(prefix);
        std::fs::create_dir_all(&p).expect("work dir");
        WorkDir(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn mount_umount_chroot_pivot_root_match_native() {
    let prog = guest("mounts", Libc::Glibc);
    let native_dir = WorkDir::new("cryo-mounts-native");
    let native = Invocation::new(&prog)
        .args([native_dir.0.to_str().unwrap()])
        .native_in_private_mount_ns();
    let cryo_dir = WorkDir::new("cryo-mounts-cryo");
    let cryo = Invocation::new(&prog)
        .args([cryo_dir.0.to_str().unwrap()])
        .cryo();
    // The paths differ only in the work directory's name.
    let text = String::from_utf8_lossy(&cryo.stdout)
        .replace(cryo_dir.0.to_str().unwrap(), native_dir.0.to_str().unwrap());
    let mut cryo = cryo;
    cryo.stdout = text.into_bytes();
    assert_same(&native, &cryo);
    let out = native.stdout_str();
    // The guest really got that far natively (pivot_root is its end).
    assert!(out.contains("/marker: marker"), "{out}");
    assert!(out.contains("user mount tmpfs: EPERM"), "{out}");
    // The sandbox's host side stayed untouched: nothing was mounted there.
    assert!(cryo_dir.0.read_dir().unwrap().next().is_none());
}

/// unshare(CLONE_NEWNS) and clone(CLONE_NEWNS): each namespace sees only
/// its own mounts, /proc/PID/mountinfo and mounts show the process's own,
/// the cwd moves into the copy; EPERM without CAP_SYS_ADMIN; as natively.
#[test]
fn mount_namespaces_match_native() {
    let prog = guest("mount_ns", Libc::Glibc);
    let native_dir = WorkDir::new("cryo-mntns-native");
    let native = Invocation::new(&prog)
        .args([native_dir.0.to_str().unwrap()])
        .native_in_private_mount_ns();
    let cryo_dir = WorkDir::new("cryo-mntns-cryo");
    let mut cryo = Invocation::new(&prog)
        .args([cryo_dir.0.to_str().unwrap()])
        .cryo();
    let text = String::from_utf8_lossy(&cryo.stdout)
        .replace(cryo_dir.0.to_str().unwrap(), native_dir.0.to_str().unwrap());
    cryo.stdout = text.into_bytes();
    assert_same(&native, &cryo);
    let out = native.stdout_str();
    assert!(out.contains("first sees: first"), "{out}");
    assert!(out.contains("parent sees: parent"), "{out}");
    assert!(out.contains("parent still sees: parent"), "{out}");
    assert!(out.contains("user unshare: EPERM"), "{out}");
    assert!(cryo_dir.0.read_dir().unwrap().next().is_none());
}

/// Unmounting the Sentry's /proc and /sys leaves empty directories, as
/// natively; the host's procfs and sysfs, inside the host root the gofer
/// serves, never show through.
#[test]
fn unmounted_proc_and_sys_leave_empty_directories_as_natively() {
    let prog = guest("unmount_kernel_fs", Libc::Glibc);
    let native = Invocation::new(&prog).native_in_private_mount_ns();
    let cryo = Invocation::new(&prog).cryo();
    assert_same(&native, &cryo);
    let out = cryo.stdout_str();
    assert!(out.contains("/proc: 0 entries"), "{out}");
    assert!(out.contains("open /proc/kallsyms: ENOENT"), "{out}");
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn busybox_mount_and_umount() {
    let bb = busybox().expect("busybox is installed (tests need it)");
    let script = "set -e; mkdir -p /w/t /w/b; \
        busybox mount -t tmpfs -o mode=700 none /w/t; \
        mkdir /w/t/d; echo hi > /w/t/d/f; \
        busybox mount --bind /w/t/d /w/b; cat /w/b/f; \
        busybox mount | grep -c ' /w/'; \
        busybox mount -o remount,ro,bind /w/b; \
        if echo x > /w/b/g 2>/dev/null; then echo writable; else echo read-only; fi; \
        busybox umount /w/b; busybox umount /w/t; \
        busybox mount | grep -c ' /w/' || true; \
        ls /w/t | wc -l";
    let out = Invocation::new(&bb)
        .args(["sh", "-c", script])
        .env("PATH", "/usr/bin:/bin")
        .cryo();
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "hi\n2\nread-only\n0\n0\n");
}

/// A guest that mounts a tmpfs, writes a file, bind-mounts a directory of
/// it, chroots a child into the bind mount, and ticks: checkpointed, then
/// restored twice, each copy still sees the same tree.
#[test]
fn mount_tree_survives_checkpoint_and_restore_twice() {
    let scratch = Scratch::new("mounts-ckpt");
    let prog = guest("ckpt_mounts", Libc::Glibc);
    let img = scratch.path("img");
    let mut a = Sandbox::run(&scratch.root(), "A", &prog, &["6"]).failing_on("FAIL");
    let (before, last) = checkpointed(&mut a, &scratch.root(), &img, "A");
    for id in ["B", "C"] {
        let lines = restored_run(&scratch.root(), &img, id, last, "done");
        // Every tick saw the same tree as the ticks before the checkpoint.
        let tree = |l: &String| {
            l.split_once(' ')
                .map(|x| x.1.split_once(' ').map(|y| y.1.to_string()))
        };
        assert_eq!(tree(&lines[0]), tree(&before[0]), "{lines:?} vs {before:?}");
    }
}

/// Checkpoints running sandbox `a` (id `id`) into `img` and waits for it
/// to end as a checkpoint ends it; its lines and the last `tick N` in them.
fn checkpointed(
    a: &mut Sandbox,
    root: &std::path::Path,
    img: &std::path::Path,
    id: &str,
) -> (Vec<String>, u32) {
    a.wait_lines(3, Duration::from_secs(30));
    let out = checkpoint(root, img, id, &[]);
    assert_eq!(out.code, 0, "checkpoint: {}", out.stderr_str());
    assert_eq!(
        a.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        a.stderr_str()
    );
    let before = a.lines().to_vec();
    let last = before
        .iter()
        .filter_map(|l| l.strip_prefix("tick ")?.split(' ').next()?.parse().ok())
        .max()
        .expect("ticks before the checkpoint");
    (before, last)
}

/// Restores `img` as sandbox `id` and runs it to its end: exit 0, going on
/// at the tick after `last` and ending with `done`; its lines.
fn restored_run(
    root: &std::path::Path,
    img: &std::path::Path,
    id: &str,
    last: u32,
    done: &str,
) -> Vec<String> {
    let mut b = Sandbox::restore(root, img, id).failing_on("FAIL");
    assert_eq!(
        b.wait_exit(Duration::from_secs(30)),
        0,
        "restore {id}: {}",
        b.stderr_str()
    );
    let lines = b.lines().to_vec();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("tick {} ", last + 1))),
        "restore {id} goes on after tick {last}: {lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some(done), "{lines:?}");
    lines
}

/// The state a `ckpt_pivot` tick reports (after `tick N `).
fn pivot_state(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("tick ")?;
    Some(rest.split_once(' ')?.1)
}

/// A guest that switches its root as a container runtime does (a tmpfs
/// with binds and a proc in it, pivot_root(2), the old root detached, its
/// program exec'd again from the new root) and ticks: checkpointed, the statefile moved, restored twice; each copy
/// sees the tree, files, cwd and chrooted child the native run sees.
#[test]
fn a_tree_switched_by_pivot_root_survives_checkpoint_and_restore_twice() {
    let prog = guest("ckpt_pivot", Libc::Glibc);
    let native_dir = WorkDir::new("cryo-pivot-native");
    let native = Invocation::new(&prog)
        .args([native_dir.0.to_str().unwrap(), "1"])
        .native_in_private_mount_ns();
    assert_eq!(native.code, 0, "native: {}", native.stderr_str());
    let native_lines = native.stdout_str();
    let want = native_lines
        .lines()
        .find_map(pivot_state)
        .unwrap_or_else(|| panic!("native tick: {native_lines}"))
        .to_string();
    assert!(want.contains("/etc</,ro"), "{want}");
    assert!(want.contains("/prog</,rw"), "{want}");
    assert!(want.contains("old=ENOENT"), "{want}");

    let scratch = Scratch::new("pivot-ckpt");
    let img = scratch.path("img");
    let cryo_dir = WorkDir::new("cryo-pivot-cryo");
    let dir = cryo_dir.0.to_str().unwrap();
    let mut a = Sandbox::run(&scratch.root(), "A", &prog, &[dir, "6"]).failing_on("FAIL");
    let (before, last) = checkpointed(&mut a, &scratch.root(), &img, "A");
    assert_eq!(
        before.first().and_then(|l| pivot_state(l)),
        Some(want.as_str()),
        "before the checkpoint, as natively: {before:?}"
    );
    let moved = scratch.path("moved-img");
    std::fs::rename(&img, &moved).expect("moving the statefile");
    for id in ["B", "C"] {
        let lines = restored_run(&scratch.root(), &moved, id, last, "done 0");
        for l in lines.iter().filter_map(|l| pivot_state(l)) {
            assert_eq!(l, want, "restore {id}");
        }
    }
    // The host's side of the work directory stayed untouched.
    assert!(cryo_dir.0.read_dir().unwrap().next().is_none());
}

/// Mount namespaces across checkpoint and restore: processes that all left
/// boot's namespace (as under `unshare -m`: the program exec'd again in
/// the copy, a tmpfs mounted only there), then ("two") a process left in
/// boot's namespace beside them. Each is checkpointed, the statefile
/// moved, restored twice; each copy sees, in each namespace, what the
/// native run sees. A tmpfs mounted in both namespaces is refused by name,
/// the sandbox running on.
#[test]
fn mount_namespaces_survive_checkpoint_and_restore_twice() {
    let prog = guest("ckpt_mntns", Libc::Glibc);
    let scratch = Scratch::new("mntns-ckpt");
    for mode in ["one", "two"] {
        let native_dir = WorkDir::new("cryo-mntns-ckpt-native");
        let native = Invocation::new(&prog)
            .args([mode, native_dir.0.to_str().unwrap(), "1"])
            .native_in_private_mount_ns();
        assert_eq!(native.code, 0, "native: {}", native.stderr_str());
        let native_lines = native.stdout_str();
        let want = native_lines
            .lines()
            .find_map(pivot_state)
            .unwrap_or_else(|| panic!("native tick: {native_lines}"))
            .to_string();
        let first_ns = if mode == "one" { "-2" } else { "0" };
        assert_eq!(
            want,
            format!("mine=1 child=1 child-cwd-is-m=1 file=in copy first-ns={first_ns}")
        );

        let img = scratch.path(&format!("img-{mode}"));
        let cryo_dir = WorkDir::new("cryo-mntns-ckpt-cryo");
        let dir = cryo_dir.0.to_str().unwrap();
        let id = format!("A{mode}");
        let mut a = Sandbox::run(&scratch.root(), &id, &prog, &[mode, dir, "6"]).failing_on("FAIL");
        let (before, last) = checkpointed(&mut a, &scratch.root(), &img, &id);
        assert_eq!(
            before.first().and_then(|l| pivot_state(l)),
            Some(want.as_str())
        );
        let moved = scratch.path(&format!("moved-{mode}"));
        std::fs::rename(&img, &moved).expect("moving the statefile");
        for id in ["B", "C"] {
            let id = format!("{id}{mode}");
            let lines = restored_run(&scratch.root(), &moved, &id, last, "done");
            for l in lines.iter().filter_map(|l| pivot_state(l)) {
                assert_eq!(l, want, "restore {id}");
            }
        }
        assert!(cryo_dir.0.read_dir().unwrap().next().is_none());
    }

    // A tmpfs both namespaces mount: refused naming it, nothing lost.
    let img = scratch.path("img-shared");
    let cryo_dir = WorkDir::new("cryo-mntns-ckpt-shared");
    let dir = cryo_dir.0.to_str().unwrap();
    let mut d = Sandbox::run(&scratch.root(), "D", &prog, &["shared", dir, "4"]).failing_on("FAIL");
    d.wait_lines(2, Duration::from_secs(30));
    let out = checkpoint(&scratch.root(), &img, "D", &[]);
    assert_ne!(out.code, 0, "checkpoint of a tmpfs in two namespaces");
    assert!(
        out.stderr_str().contains("mounted in two mount namespaces"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        d.stderr_str()
    );
    assert_eq!(d.lines().last().map(String::as_str), Some("done"));
}
