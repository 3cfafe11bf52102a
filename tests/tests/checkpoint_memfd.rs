//! Checkpoint and restore of memfds: the `ckpt_memfd` guest (a memfd
//! sealed against writes and more seals, one with a shared mapping, one
//! without sealing and a second descriptor of it) is checkpointed mid-run
//! and restored twice; each restored sandbox prints what an uninterrupted
//! run prints: names, seals, contents, the seals' effects and the mapping
//! still sharing the file's pages; then mappings of files with no name.

use std::time::Duration;

use cryo_tests::sandbox::{ticking_guest_restores_twice, Scratch};
use cryo_tests::{guest, Libc};

#[test]
fn memfds_and_their_seals_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-memfd-");
    let bin = guest("ckpt_memfd", Libc::Glibc);
    ticking_guest_restores_twice(&s.root(), &bin, &["12"], 4, &s.path("img"));
}

/// Mappings of files with no name (the `ckpt_unnamed_map` guest: a memfd
/// only a shared mapping holds, shared with a forked child; a memfd open
/// and mapped; an O_TMPFILE file; files unlinked while mapped shared and
/// private) are saved as naming their open files: restored twice from a
/// statefile moved elsewhere, each restored sandbox prints what an
/// uninterrupted run prints (bytes, /proc/self/maps names, the child and
/// the descriptor still sharing the pages, the same inode number).
#[test]
fn mappings_of_unnamed_files_restored_twice_from_a_moved_statefile() {
    use cryo_tests::sandbox::run_then_checkpoint;
    let s = Scratch::new("cryo-unnamed-map-");
    let bin = guest("ckpt_unnamed_map", Libc::Glibc);
    let img = s.path("img");
    let run = run_then_checkpoint(
        &s.root(),
        &bin,
        &["12"],
        8,
        &img,
        (Duration::from_secs(20), Duration::from_secs(30)),
    );
    assert_eq!(run.reference.last().map(String::as_str), Some("done"));
    assert!(
        run.reference.iter().any(|l| l == "same inode: 1 size 4096"),
        "{:?}",
        run.reference
    );
    let moved = s.path("moved");
    std::fs::rename(&img, &moved).expect("moving the statefile");
    let tick_of = |line: &str| line.strip_prefix("tick ")?.parse().ok();
    run.restores_go_on(
        &s.root(),
        &moved,
        &["B", "C"],
        tick_of,
        Duration::from_secs(30),
    );
}

/// A mapping of a file of the image unlinked while mapped (a whiteout in
/// the upper layer; the file's bytes are the host's, which a statefile
/// does not hold) still cannot be saved: the checkpoint is refused naming
/// the file, leaves no statefile, and the program goes on.
#[test]
fn a_mapped_image_file_unlinked_refuses_the_checkpoint_by_name() {
    use cryo_tests::sandbox::{checkpoint, Sandbox};
    let s = Scratch::new("cryo-unlinked-image-map-");
    let prog = r#"
import mmap, os, time
f = open("/etc/passwd", "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
f.close()
os.unlink("/etc/passwd")
for i in range(600):
    print("tick", i, flush=True)
    time.sleep(0.1)
"#;
    let mut a = Sandbox::run(
        &s.root(),
        "A",
        std::path::Path::new("/usr/bin/python3"),
        &["-c", prog],
    );
    a.wait_lines(2, Duration::from_secs(20));
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "A", &[]);
    assert_ne!(out.code, 0, "the checkpoint was taken");
    let err = out.stderr_str();
    assert!(
        err.contains("/etc/passwd (deleted)") && err.contains("deleted"),
        "{err}"
    );
    assert!(
        !img.join(cryo_tests::sandbox::STATEFILE).exists(),
        "a statefile was left"
    );
    let had = a.lines().len();
    a.wait_lines(had + 2, Duration::from_secs(20));
    assert!(a.is_running(), "the program did not go on");
}
