//! Invariant 5: an unimplemented syscall returns ENOSYS and is logged once
//! with its name, however often the program calls it — unknown numbers,
//! syscalls cryo lacks, and unsupported variants of ones it has alike.

use std::ffi::OsStr;

use cryo_tests::{guest, run_cryo_cli, Libc};

#[test]
fn each_unimplemented_syscall_is_logged_once_by_name() {
    let bin = guest("enosys_log", Libc::Glibc);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("debug.log");
    let out = run_cryo_cli(&[
        OsStr::new("--debug-log"),
        log.as_os_str(),
        OsStr::new("do"),
        OsStr::new("--"),
        bin.as_os_str(),
    ]);
    assert_eq!(out.code, 0, "enosys_log under cryo: {}", out.stderr_str());
    let calls = ["add_key", "request_key", "syscall_9999", "futex_op_99"];
    let expected: String = (0..3)
        .flat_map(|_| calls.iter().map(|c| format!("{c}: ret=-1 errno=ENOSYS\n")))
        .collect();
    assert_eq!(out.stdout_str(), expected, "every call fails with ENOSYS");

    let text = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("reading the debug log {}: {e}", log.display()));
    for name in ["add_key", "request_key", "#9999", "futex (op 99)"] {
        let line = format!("unimplemented syscall {name}: returning ENOSYS");
        let n = text.lines().filter(|l| l.contains(&line)).count();
        assert_eq!(
            n, 1,
            "{line:?} is logged {n} times (want exactly once, for 3 calls); log:\n{text}"
        );
    }
    // The variant's plain name is not logged a second time.
    let futex_lines = text
        .lines()
        .filter(|l| l.contains("unimplemented syscall futex"))
        .count();
    assert_eq!(
        futex_lines, 1,
        "futex logged {futex_lines} times; log:\n{text}"
    );
}
