//! Checkpoint and restore of memfds: the `ckpt_memfd` guest (a memfd
//! sealed against writes and more seals, one with a shared mapping, one
//! without sealing and a second descriptor of it) is checkpointed mid-run
//! and restored twice; each restored sandbox prints what an uninterrupted
//! run prints: names, seals, contents, the seals' effects and the mapping
//! still sharing the file's pages.

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
fn memfds_and_their_seals_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-memfd-");
    let bin = guest("ckpt_memfd", Libc::Glibc);
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
