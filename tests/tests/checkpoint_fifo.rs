//! Checkpoint and restore of FIFOs: the `ckpt_fifo` guest (a FIFO holding
//! unread bytes with both ends open, one open O_RDWR, and a child blocked
//! in open(2) of a third waiting for a writer) is checkpointed mid-run and
//! restored twice; each restored sandbox prints what an uninterrupted run
//! prints: the held bytes, a writer opened by path after the restore
//! joining the restored pipe, and the child's open completing.

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
fn fifos_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-fifo-");
    let bin = guest("ckpt_fifo", Libc::Glibc);
    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &[TICKS], 3, &img, (START, EXIT));
    assert!(
        reference.iter().any(|l| l == "new writer joined: 1")
            && reference.last().map(String::as_str) == Some("done"),
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
