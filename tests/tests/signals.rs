//! Signals sent to `cryo do` reach the sandbox's program, as with runsc:
//! a handler runs, and without one the default action decides the status.

use std::path::Path;
use std::time::Duration;

use cryo_tests::sandbox::{Sandbox, Scratch};

/// Starts `cryo do -- args…` (with a `--root` of its own), waits for its first stdout line, sends
/// `signo` to the cryo process, and returns (first line, rest, exit code),
/// the lines with their newlines, and what cryo printed on stderr (for the
/// failure messages).
fn signal_after_first_line(args: &[&str], signo: i32) -> (String, String, i32, String) {
    let s = Scratch::new("cryo-signals-");
    let (program, args) = args.split_first().expect("a program to run");
    let mut sb = Sandbox::run(&s.root(), "S", Path::new(program), args);
    sb.wait_lines(1, Duration::from_secs(30));
    sb.signal(signo);
    let code = sb.wait_exit(Duration::from_secs(20));
    let text = sb.stdout_text();
    let (first, rest) = text.split_at(text.find('\n').map_or(text.len(), |i| i + 1));
    (first.to_string(), rest.to_string(), code, sb.stderr_str())
}

#[test]
fn sigterm_reaches_a_python_handler() {
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is not installed (a broken test setup: run tests/scripts/deps.sh)"
    );
    // The handler writes with os.write, not print: the signal may arrive
    // while print('ready') is still inside stdout's buffered writer (the
    // line is on the pipe before the write returns to Python, which then
    // runs handlers before leaving the writer), and a print there is
    // Python's "reentrant call" error, natively too given the timing.
    let script = "import os, signal, sys, time\n\
def h(s, f):\n    os.write(1, b'handled %d\\n' % s); sys.exit(7)\n\
signal.signal(signal.SIGTERM, h)\nprint('ready', flush=True)\nwhile True: time.sleep(0.05)\n";
    let (first, rest, code, stderr) =
        signal_after_first_line(&["/usr/bin/python3", "-c", script], libc::SIGTERM);
    assert_eq!(first, "ready\n");
    assert_eq!(
        (rest.as_str(), code),
        ("handled 15\n", 7),
        "the handler ran inside the sandbox and set the program's own exit status; stderr: {stderr}"
    );
}

#[test]
fn sigint_without_a_handler_ends_the_program_like_linux() {
    // python3 prints, then sleeps in short naps: Python runs its handlers
    // between bytecodes, so a signal handled just before one long sleep
    // would wait for the whole sleep, natively too.
    let (first, _, code, _) = signal_after_first_line(
        &[
            "/usr/bin/python3",
            "-c",
            "import time\nprint('up', flush=True)\nwhile True: time.sleep(0.05)",
        ],
        libc::SIGINT,
    );
    assert_eq!(first, "up\n");
    // Python turns SIGINT into KeyboardInterrupt: status 130 (128 + SIGINT).
    assert_eq!(code, 130);
    let (first, _, code, _) = signal_after_first_line(
        &["/bin/sh", "-c", "echo go; exec /bin/sleep 60"],
        libc::SIGINT,
    );
    assert_eq!(first, "go\n");
    // `exec` replaces the shell (which would otherwise wait for sleep):
    // sleep has no handler, so SIGINT's default action ends it.
    assert_eq!(code, 128 + libc::SIGINT);
}
