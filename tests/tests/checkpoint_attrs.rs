//! A checkpoint carries the kernel state that issue 9's fixes added: file
//! locks (OFD, POSIX, flock, each seen from another open file
//! description), the thread's name, the nice value and the CPU time used.
//! The `ckpt_attrs` guest sets them up and prints what it sees every
//! 200 ms; the restored sandbox must print the same.

use std::ffi::OsStr;
use std::time::Duration;

use cryo_tests::guest;
use cryo_tests::sandbox::{assert_ok, checkpoint, Sandbox, Scratch};
use cryo_tests::Libc;

const START: Duration = Duration::from_secs(20);

/// The status part of a line (without its tick number).
fn status(line: &str) -> String {
    line.split_once(" name=")
        .map(|(_, rest)| format!("name={rest}"))
        .unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

#[test]
fn locks_names_priorities_and_cpu_time_survive_checkpoint_and_restore() {
    const EXPECTED: &str = "name=ckpt-attrs nice=7 byte0=ofd-write byte25=posix-read \
                            byte40=free flock=EAGAIN cpu>=300ms=yes";
    let s = Scratch::new("cryo-ckpt-attrs-");
    let bin = guest("ckpt_attrs", Libc::Glibc);
    let no_args: [&OsStr; 0] = [];
    let mut a = Sandbox::run(&s.root(), "A", &bin, &no_args);
    a.wait_lines(2, START);
    assert_eq!(status(&a.lines()[1]), EXPECTED, "before the checkpoint");
    let img = s.path("img");
    let out = checkpoint(&s.root(), &img, "A", &[]);
    assert_ok(&out, "cryo checkpoint A (ckpt_attrs)");
    assert_eq!(
        a.wait_exit(Duration::from_secs(10)),
        0,
        "{}",
        a.stderr_str()
    );

    let mut b = Sandbox::restore(&s.root(), &img, "B");
    b.wait_lines(2, START);
    for line in &b.lines()[..2] {
        assert_eq!(status(line), EXPECTED, "after restore: {line}");
    }
}
