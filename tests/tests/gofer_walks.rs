//! Walking the whole host tree through the gofer: `find` and `du` over
//! /usr/share (50,000 entries, 3,000 directories) print what they print
//! natively, with the sandbox (Sentry and gofer) limited to 512 open fds.
//! The gofer keeps no fd per file stat'ed or directory listed, so the limit
//! is never reached (before protocol v3 `du -s /usr/share` failed with
//! EMFILE after ~20,000 files and printed a wrong total).

use std::path::Path;
use std::time::Duration;

use cryo_tests::run_native;
use cryo_tests::sandbox::{cryo_command_under, Sandbox, Scratch};

const SCRIPT: &str = "find /usr/share -xdev | wc -l; \
    find /usr/share -xdev -name '*.gz' | wc -l; \
    find /usr/share/doc -xdev -type d | sort | tail -n 3; \
    du -s /usr/share; du -s --apparent-size /usr/share/doc";

#[test]
fn find_and_du_of_a_large_tree_under_a_low_fd_limit() {
    let native = run_native("/bin/sh", &["-c", SCRIPT], b"");
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    let s = Scratch::new("cryo-gofer-walks-");
    let cmd = cryo_command_under(&["prlimit", "--nofile=512:512"], &s.root());
    let mut sb = Sandbox::run_with(cmd, "walks", Path::new("/bin/sh"), &["-c", SCRIPT]);
    assert_eq!(
        sb.wait_exit(Duration::from_secs(300)),
        0,
        "{}",
        sb.stderr_str()
    );
    assert_eq!(sb.stderr_str(), "", "no error from find or du");
    let want: Vec<String> = native.stdout_str().lines().map(String::from).collect();
    assert_eq!(sb.lines(), &want[..], "the same walk as the host's");
}
