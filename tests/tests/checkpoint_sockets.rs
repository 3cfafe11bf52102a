//! Checkpoint and restore of unix sockets: the `ckpt_unix` guest (a
//! socketpair holding unread data, a worker child blocked in recv on a
//! stream connection, path-bound and abstract listeners each with a
//! connection not yet accepted, a pipe in flight in an SCM_RIGHTS
//! message) is checkpointed mid-run and restored twice; each restored
//! sandbox carries on and prints what an uninterrupted run prints,
//! accepting the queued connections, taking new ones on the restored
//! names and receiving the file in flight.

use std::time::Duration;

use cryo_tests::sandbox::{
    assert_ok, checkpoint, run_then_checkpoint, saved_objects, CheckpointedRun, Sandbox, Scratch,
};
use cryo_tests::{guest, Libc};

const TICKS: &str = "14";
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(30);

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

#[test]
fn unix_sockets_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-unix-");
    let bin = guest("ckpt_unix", Libc::Glibc);

    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &[TICKS], 4, &img, (START, EXIT));
    assert_eq!(reference.len(), 14 + 7, "{reference:?}");

    // The worker pair, the queue pair, two listeners, two clients with
    // their unaccepted server sides, the datagram pair.
    assert_eq!(saved_objects(&img, "net.UnixSocket"), 12, "sockets saved");
    let run = CheckpointedRun { reference, before };
    run.restores_go_on(&s.root(), &img, &["B", "C"], tick_of, EXIT);
}

/// Writes sentry/fuzz/seeds/sockets.cryo: the object table of a checkpoint
/// of `ckpt_unix` (every kind of socket state: queued bytes and records, a
/// listen queue, a file in flight, path and abstract names), with a
/// one-page memory section: the base of sentry/tests/hostile_sockets.rs.
/// Run after a socket record format change:
/// `cargo test -p cryo-tests --test checkpoint_sockets -- --ignored`.
#[test]
#[ignore]
fn regenerate_socket_seed() {
    use sentry::state::hostile::{restore_validate, ObjectTable};
    let s = Scratch::new("cryo-unix-seed-");
    let bin = guest("ckpt_unix", Libc::Glibc);
    let mut a = Sandbox::run(&s.root(), "seed", &bin, &["1000"]);
    a.wait_lines(2, START);
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "seed", &[]), "cryo checkpoint");
    drop(a);
    let file = std::fs::read(img.join(cryo_tests::sandbox::STATEFILE)).expect("the statefile");
    let table = ObjectTable::from_statefile(&file).expect("its object table");
    let seed = table.to_statefile().expect("re-assembled");
    restore_validate(&seed).unwrap_or_else(|e| panic!("the seed does not validate: {e}"));
    let path = cryo_tests::workspace_dir().join("sentry/fuzz/seeds/sockets.cryo");
    std::fs::write(&path, &seed).unwrap();
    eprintln!("{}: {} bytes", path.display(), seed.len());
}
