//! How much host memory a sandbox costs for what its program does: a
//! write(2) from a 1 GiB buffer the program never touched must not make the
//! Sentry (or a stub) allocate the buffer's pages.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use cryo_tests::{cryo_bin, guest, sandbox::platform_args, Libc};

/// Runs `cmd` to its end; its exit code and the peak resident set of it and
/// the children it reaped (its stubs), from wait4(2), in KiB.
fn run_measured(mut cmd: Command) -> (i32, i64, String) {
    // Reaped by wait4 below, which gives its rusage (std's wait cannot).
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cryo");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Waited for before its pipes are read: the guest prints two short
    // lines, well within a pipe's buffer, so it never blocks on them.
    // SAFETY: wait4 on our own unreaped child, writing into live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut s) = child.stdout {
        s.read_to_string(&mut out).ok();
    }
    if let Some(mut s) = child.stderr {
        s.read_to_string(&mut err).ok();
    }
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    (code, usage.ru_maxrss, format!("{out}{err}"))
}

#[test]
fn write_of_untouched_gigabyte_allocates_nothing() {
    let bin = guest("untouched_write", Libc::Glibc);
    let mut cmd = Command::new(cryo_bin());
    cmd.args(platform_args()).arg("do").arg("--").arg(&bin);
    let (code, maxrss_kib, output) = run_measured(cmd);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("dev_null: wrote_all=1"), "{output}");
    // cryo itself (the Sentry, a debug build) peaks well under 100 MiB;
    // the buffer is 1 GiB.
    assert!(
        maxrss_kib < 200 * 1024,
        "peak RSS {maxrss_kib} KiB for writing an untouched 1 GiB buffer"
    );
}
