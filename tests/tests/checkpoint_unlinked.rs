//! Checkpoint and restore of files with no name: the `ckpt_unlinked`
//! guest (an O_TMPFILE file in /tmp, a file unlinked in /dev/shm and one
//! unlinked in the root's upper layer whose description a child shares,
//! each with bytes at an offset) is checkpointed mid-run and restored
//! twice; each restored sandbox reads and grows every file through its
//! descriptor and prints what an uninterrupted run prints. The statefile
//! holds their nodes, named nowhere.

use std::time::Duration;

use cryo_tests::sandbox::{run_then_checkpoint, CheckpointedRun, Scratch};
use cryo_tests::{guest, Libc};

const TICKS: &str = "12";
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(30);

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.parse().ok()
}

#[test]
fn unlinked_files_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-unlinked-");
    let bin = guest("ckpt_unlinked", Libc::Glibc);
    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &[TICKS], 4, &img, (START, EXIT));
    assert_eq!(
        reference.last().map(String::as_str),
        Some("done"),
        "the reference run: {reference:?}"
    );
    CheckpointedRun { reference, before }.restores_go_on(
        &s.root(),
        &img,
        &["B", "C"],
        tick_of,
        EXIT,
    );
}
