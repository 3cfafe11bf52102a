//! Issue 10's checkpoint test: "a program holding a pty, a lock and an
//! inotify watch are checkpointed and restored and carry on". The
//! `ckpt_holding` guest holds a write lock, inotify watches with events
//! queued unread and a raw-mode pty with unread input; it is checkpointed
//! mid-run and restored twice, and each restored sandbox prints what an
//! uninterrupted run prints: the queued events, new events, the next
//! watch descriptor, the pty's bytes both ways, and the lock seen by a
//! child until it is released.

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
fn a_program_holding_a_pty_a_lock_and_inotify_watches_carries_on_after_restores() {
    let s = Scratch::new("cryo-holding-");
    let bin = guest("ckpt_holding", Libc::Glibc);
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
