//! Issue 10's checkpoint test: "a program holding a pty, a lock and an
//! inotify watch are checkpointed and restored and carry on". The
//! `ckpt_holding` guest holds a write lock, inotify watches with events
//! queued unread and a raw-mode pty with unread input; it is checkpointed
//! mid-run and restored twice, and each restored sandbox prints what an
//! uninterrupted run prints: the queued events, new events, the next
//! watch descriptor, the pty's bytes both ways, and the lock seen by a
//! child until it is released.

use cryo_tests::sandbox::{ticking_guest_restores_twice, Scratch};
use cryo_tests::{guest, Libc};

#[test]
fn a_program_holding_a_pty_a_lock_and_inotify_watches_carries_on_after_restores() {
    let s = Scratch::new("cryo-holding-");
    let bin = guest("ckpt_holding", Libc::Glibc);
    ticking_guest_restores_twice(&s.root(), &bin, &["12"], 4, &s.path("img"));
}
