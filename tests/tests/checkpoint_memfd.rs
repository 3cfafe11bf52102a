//! Checkpoint and restore of memfds: the `ckpt_memfd` guest (a memfd
//! sealed against writes and more seals, one with a shared mapping, one
//! without sealing and a second descriptor of it) is checkpointed mid-run
//! and restored twice; each restored sandbox prints what an uninterrupted
//! run prints: names, seals, contents, the seals' effects and the mapping
//! still sharing the file's pages.

use std::time::Duration;

use cryo_tests::sandbox::{ticking_guest_restores_twice, Scratch};
use cryo_tests::{guest, Libc};

#[test]
fn memfds_and_their_seals_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-memfd-");
    let bin = guest("ckpt_memfd", Libc::Glibc);
    ticking_guest_restores_twice(&s.root(), &bin, &["12"], 4, &s.path("img"));
}

/// A mapping of a file with no name cannot be re-opened by a restore yet:
/// the checkpoint is refused naming the file, leaves no statefile, and the
/// program goes on (before, the statefile was written and its restore
/// failed with ENOENT).
#[test]
fn a_mapped_memfd_refuses_the_checkpoint_by_name() {
    use cryo_tests::sandbox::{checkpoint, Sandbox};
    let s = Scratch::new("cryo-memfd-map-");
    let prog = r#"
import mmap, os, time
fd = os.memfd_create("mapped-one")
os.ftruncate(fd, 4096)
m = mmap.mmap(fd, 4096)
m[:5] = b"hello"
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
        err.contains("/memfd:mapped-one") && err.contains("no name"),
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
