//! Checkpoint and restore of signal-driven I/O: a python3 program arms a
//! pipe's read end with O_ASYNC, F_SETOWN and F_SETSIG, and each tick
//! writes a byte and waits for the signal that says so (si_code POLL_IN,
//! si_band POLLIN|POLLRDNORM). Checkpointed mid-run and restored twice, it
//! must go on getting its signal as an uninterrupted run does: the owner,
//! the signal and the armed file are part of the saved open file.

use std::path::Path;
use std::time::Duration;

use cryo_tests::sandbox::{run_then_checkpoint, Scratch};

const START: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(60);

const PROGRAM: &str = r#"
import fcntl, os, signal, sys, time
SIG = signal.SIGRTMIN + 1
signal.pthread_sigmask(signal.SIG_BLOCK, [SIG])
r, w = os.pipe()
fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC | os.O_NONBLOCK)
fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid())
fcntl.fcntl(r, fcntl.F_SETSIG, SIG)
for tick in range(int(sys.argv[1])):
    os.write(w, b"x")
    info = signal.sigtimedwait([SIG], 10)
    got = "none" if info is None else f"code {info.si_code} band {info.si_band:#x}"
    print("tick", tick, "signal", got, "owner is me", fcntl.fcntl(r, fcntl.F_GETOWN) == os.getpid(), flush=True)
    os.read(r, 1)
    time.sleep(0.3)
"#;

fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

#[test]
fn an_armed_pipe_goes_on_signalling_after_restores() {
    let s = Scratch::new("cryo-sigio-");
    let img = s.path("img");
    let python = Path::new("/usr/bin/python3");
    let run = run_then_checkpoint(
        &s.root(),
        python,
        &["-c", PROGRAM, "10"],
        3,
        &img,
        (START, EXIT),
    );
    assert_eq!(run.reference.len(), 10, "{:?}", run.reference);
    assert!(
        run.reference
            .iter()
            .all(|l| l.ends_with("signal code 1 band 0x41 owner is me True")),
        "{:?}",
        run.reference
    );
    run.restores_go_on(&s.root(), &img, &["B", "C"], tick_of, EXIT);
}
