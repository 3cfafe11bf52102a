//! Checkpoint and restore of files with no name: the `ckpt_unlinked`
//! guest (an O_TMPFILE file in /tmp, a file unlinked in /dev/shm and one
//! unlinked in the root's upper layer whose description a child shares,
//! each with bytes at an offset) is checkpointed mid-run and restored
//! twice; each restored sandbox reads and grows every file through its
//! descriptor and prints what an uninterrupted run prints. The statefile
//! holds their nodes, named nowhere.

use cryo_tests::sandbox::{ticking_guest_restores_twice, Scratch};
use cryo_tests::{guest, Libc};

#[test]
fn unlinked_files_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-unlinked-");
    let bin = guest("ckpt_unlinked", Libc::Glibc);
    ticking_guest_restores_twice(&s.root(), &bin, &["12"], 4, &s.path("img"));
}
