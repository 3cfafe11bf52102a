//! Signals sent to `cryo do` reach the sandbox's program, as with runsc:
//! a handler runs, and without one the default action decides the status.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cryo_tests::cryo_bin;

/// Starts `cryo do -- args…`, waits for its first stdout line, sends
/// `signo` to the cryo process, and returns (first line, rest, exit code).
fn signal_after_first_line(args: &[&str], signo: i32) -> (String, String, i32) {
    let mut child = Command::new(cryo_bin())
        .arg("do")
        .arg("--cwd")
        .arg("/")
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cryo do");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("reading the first line");
    // SAFETY: kill(2) of the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signo) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for cryo") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("cryo do {args:?} did not end 20 s after signal {signo}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    let code = status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    });
    (first, rest, code)
}

#[test]
fn sigterm_reaches_a_python_handler() {
    assert!(
        std::path::Path::new("/usr/bin/python3").exists(),
        "/usr/bin/python3 is not installed (a broken test setup: run tests/scripts/deps.sh)"
    );
    let script = "import signal, sys, time\n\
def h(s, f):\n    print('handled', s, flush=True); sys.exit(7)\n\
signal.signal(signal.SIGTERM, h)\nprint('ready', flush=True)\nwhile True: time.sleep(0.05)\n";
    let (first, rest, code) =
        signal_after_first_line(&["/usr/bin/python3", "-c", script], libc::SIGTERM);
    assert_eq!(first, "ready\n");
    assert_eq!(rest, "handled 15\n", "the handler ran inside the sandbox");
    assert_eq!(code, 7, "the program's own exit status");
}

#[test]
fn sigint_without_a_handler_ends_the_program_like_linux() {
    // python3 prints, then sleeps in short naps: Python runs its handlers
    // between bytecodes, so a signal handled just before one long sleep
    // would wait for the whole sleep, natively too.
    let (first, _, code) = signal_after_first_line(
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
    let (first, _, code) = signal_after_first_line(
        &["/bin/sh", "-c", "echo go; exec /bin/sleep 60"],
        libc::SIGINT,
    );
    assert_eq!(first, "go\n");
    // Without fork, /bin/sh cannot run a pipeline, but `exec` replaces it:
    // sleep has no handler, so SIGINT's default action ends it.
    assert_eq!(code, 128 + libc::SIGINT);
}
