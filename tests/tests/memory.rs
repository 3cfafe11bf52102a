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

/// `cryo --root ROOT do --id ID --memory LIMIT --cwd / -- PROGRAM ARGS`,
/// as a [`Sandbox`] (stdout read line by line).
fn run_limited(
    root: &std::path::Path,
    id: &str,
    limit: &str,
    program: &std::path::Path,
    args: &[&str],
) -> cryo_tests::sandbox::Sandbox {
    let mut cmd = cryo_tests::sandbox::cryo_command(root);
    cmd.args(["do", "--id", id, "--memory", limit, "--cwd", "/"]);
    for (k, v) in cryo_tests::BASE_ENV {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg("--").arg(program).args(args);
    cryo_tests::sandbox::Sandbox::spawn(
        cmd,
        format!(
            "cryo do --memory {limit} {} {}",
            program.display(),
            args.join(" ")
        ),
    )
}

const EXIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `cryo do --memory`: a program that touches more than the limit is
/// OOM-killed (SIGKILL, 137 as a shell shows it), one that stays under it
/// runs to its end; /proc/meminfo's MemTotal is the limit; tmpfs pages
/// count against it (30 MiB in /dev/shm, which holds at most half of the
/// sandbox's memory as Linux's default, leave a 64 MiB sandbox too little
/// for 40 MiB more, enough for 16).
#[test]
fn memory_limit_oom_kills_the_largest_process() {
    let scratch = cryo_tests::sandbox::Scratch::new("memlimit");
    let root = scratch.root();
    let hog = guest("memhog", Libc::Glibc);
    let mut over = run_limited(&root, "over", "64M", &hog, &["200"]);
    assert_eq!(
        over.wait_exit(EXIT),
        128 + libc::SIGKILL,
        "{}",
        over.stderr_str()
    );
    assert!(over.lines().is_empty(), "{:?}", over.lines());

    let mut under = run_limited(&root, "under", "64M", &hog, &["32"]);
    assert_eq!(under.wait_exit(EXIT), 0, "{}", under.stderr_str());
    assert_eq!(under.lines(), ["touched 32 MiB"]);

    let hog_path = hog.to_str().unwrap();
    let script = format!(
        "grep MemTotal /proc/meminfo; head -c 30M /dev/zero > /dev/shm/fill || exit 9; \
         {hog_path} 40; echo rc=$?; {hog_path} 16; echo rc=$?"
    );
    let mut shm = run_limited(
        &root,
        "shm",
        "64M",
        std::path::Path::new("/bin/sh"),
        &["-c", &script],
    );
    assert_eq!(shm.wait_exit(EXIT), 0, "{}", shm.stderr_str());
    assert_eq!(
        shm.lines(),
        [
            "MemTotal:          65536 kB",
            "rc=137",
            "touched 16 MiB",
            "rc=0"
        ]
    );
}

/// The limit is saved with the kernel: a sandbox checkpointed under a
/// 64 MiB limit before touching 200 MiB is OOM-killed once restored; the
/// same program checkpointed without a limit touches it all.
#[test]
fn memory_limit_survives_checkpoint_and_restore() {
    use cryo_tests::sandbox::{assert_ok, checkpoint, Sandbox, Scratch};
    let scratch = Scratch::new("memlimit-ckpt");
    let root = scratch.root();
    let hog = guest("memhog", Libc::Glibc);
    for (limit, want) in [(Some("64M"), 128 + libc::SIGKILL), (None, 0)] {
        let go = scratch.path(&format!("go-{}", limit.unwrap_or("none")));
        let _ = std::fs::remove_file(&go);
        let img = scratch.path(&format!("img-{}", limit.unwrap_or("none")));
        let go_arg = go.to_str().unwrap();
        let mut a = match limit {
            Some(l) => run_limited(&root, "A", l, &hog, &["200", go_arg]),
            None => Sandbox::run(&root, "A", &hog, &["200", go_arg]),
        };
        a.wait_lines(1, EXIT);
        assert_eq!(a.lines(), ["waiting"]);
        assert_ok(&checkpoint(&root, &img, "A", &[]), "cryo checkpoint A");
        a.wait_exit(EXIT);
        std::fs::write(&go, b"").unwrap();
        let mut b = Sandbox::restore(&root, &img, "B");
        assert_eq!(
            b.wait_exit(EXIT),
            want,
            "restored with limit {limit:?}: {}",
            b.stderr_str()
        );
        let touched = b.lines().iter().any(|l| l == "touched 200 MiB");
        assert_eq!(touched, limit.is_none(), "{:?}", b.lines());
    }
}
