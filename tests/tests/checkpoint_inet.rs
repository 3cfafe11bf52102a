//! Checkpoint and restore of inet sockets: the `ckpt_inet` guest (a TCP
//! listener with two connections not accepted yet, one with data queued;
//! an established connection with data queued both ways; a writer child
//! blocked in send with more bytes than the receiver's buffer takes, so
//! bytes sit in its send buffer; a half-closed connection on ::1; a UDP
//! socket with a datagram queued; a worker child blocked in recv on a
//! TCP connection) is checkpointed mid-run and restored twice; each
//! restored sandbox carries on and prints what an uninterrupted run
//! prints: the queued connections accepted with their data, every byte
//! of the transfer in order, the half-close, the datagram, and the
//! listener and UDP port still bound.

use std::time::Duration;

use cryo_tests::sandbox::{run_then_checkpoint, CheckpointedRun, Sandbox, Scratch};
use cryo_tests::{guest, run_cryo_cli, Libc};

const TICKS: &str = "14";
const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(30);

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

#[test]
fn inet_sockets_checkpointed_and_restored_twice() {
    let s = Scratch::new("cryo-inet-");
    let bin = guest("ckpt_inet", Libc::Glibc);

    let img = s.path("img");
    let CheckpointedRun { reference, before } =
        run_then_checkpoint(&s.root(), &bin, &[TICKS], 4, &img, (START, EXIT));
    assert_eq!(reference.len(), 1 + 14 + 11, "{reference:?}");

    let last = before
        .iter()
        .filter_map(|l| tick_of(l))
        .max()
        .expect("ticks");

    let shown = run_cryo_cli(&[
        std::ffi::OsStr::new("inspect"),
        img.join(cryo_tests::sandbox::STATEFILE).as_os_str(),
    ]);
    let sockets = shown
        .stdout_str()
        .lines()
        .filter(|l| l.trim_start().starts_with("net.InetSocket ") && l.contains('#'))
        .count();
    // The worker's two ends; the listener, its two clients and their
    // unaccepted server ends; the two-way pair; the transfer's two ends;
    // the half-closed pair; the two UDP sockets.
    assert_eq!(sockets, 15, "sockets saved:\n{}", shown.stdout_str());

    for id in ["B", "C"] {
        let mut b = Sandbox::restore(&s.root(), &img, id);
        assert_eq!(b.wait_exit(EXIT), 0, "restore {id}: {}", b.stderr_str());
        let after = b.lines();
        let from = reference
            .iter()
            .position(|l| tick_of(l) == Some(last + 1))
            .expect("the reference goes on");
        assert_eq!(after, &reference[from..], "restored sandbox {id}");
    }
}
