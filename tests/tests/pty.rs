//! Pseudo-terminals from programs that are not our own guests: python3's
//! `pty.fork()` (forkpty: openpty, setsid, TIOCSCTTY, the replica as
//! stdio) with canonical input, line editing, SIGWINCH and raw mode, and
//! `os.openpty()` with termios; an interactive bash driven through a pty
//! (job control: a background job, ^C, ^Z and fg); a checkpoint of a
//! program holding a pty. Compared with native runs.

use cryo_tests::{assert_same, Invocation};

const PYTHON_PTY: &str = r#"
import os, pty, sys, termios, tty, select, struct, fcntl, signal

def drain(fd, marker=None, limit=10.0):
    out = b""
    while marker is None or marker not in out:
        r, _, _ = select.select([fd], [], [], limit)
        if not r:
            out += b"<timeout>"
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError as e:
            out += ("<%s>" % os.strerror(e.errno)).encode()
            break
        if not chunk:
            out += b"<eof>"
            break
        out += chunk
    return out

pid, fd = pty.fork()
if pid == 0:
    print("child isatty", os.isatty(0), os.isatty(1), "ttyname pts", os.ttyname(0).startswith("/dev/pts/"))
    print("session leader", os.getsid(0) == os.getpid(), "foreground", os.tcgetpgrp(0) == os.getpgrp())
    winch = []
    signal.signal(signal.SIGWINCH, lambda s, f: winch.append(s))
    sys.stdout.write("prompt> ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    print("got", repr(line))
    rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))[:2]
    print("winsize", rows, cols, "SIGWINCH", winch == [signal.SIGWINCH])
    tty.setraw(0)
    sys.stdout.write("raw> ")
    sys.stdout.flush()
    c = os.read(0, 1)
    sys.stdout.write("raw got %r\r\n" % c)
    sys.stdout.flush()
    os._exit(3)
print(drain(fd, b"prompt> "))
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 120, 0, 0))
os.write(fd, b"hi there\x7f\x7f\x7fEre\r")
print(drain(fd, b"raw> "))
os.write(fd, b"\x03")
print(drain(fd))
_, st = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(st))

m, s = os.openpty()
attrs = termios.tcgetattr(s)
print("lflag icanon", bool(attrs[3] & termios.ICANON), "echo", bool(attrs[3] & termios.ECHO))
attrs[3] &= ~termios.ECHO
termios.tcsetattr(s, termios.TCSANOW, attrs)
os.write(m, b"quiet\n")
print("replica read", os.read(s, 100))
os.write(s, b"a\nb")
print("master read", drain(m, b"b"))
os.close(s)
print("after replica close", drain(m))
os.close(m)
"#;

/// Drives `argv[1:]` (an interactive shell) through a pty like a person at
/// a terminal, waiting before each keystroke for what a person would see
/// (the prompt, or the job owning the terminal), and prints what the
/// terminal showed, pids masked.
const PYTHON_SHELL: &str = r#"
import os, pty, re, select, sys, termios, time

def drain(fd, marker, limit=10.0):
    out = b""
    while marker not in out:
        r, _, _ = select.select([fd], [], [], limit)
        if not r:
            return out + b"<timeout>"
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return out + b"<EIO>"
        if not chunk:
            return out + b"<eof>"
        out += chunk
    return out

def show(b):
    print(re.sub(rb"\[1\] \d+", b"[1] PID", b))

def job_running(fd, name):
    # The shell hands the terminal to a job (its group in the foreground,
    # canonical mode with echo, the program exec'd with its own signal
    # dispositions): wait for all that before typing to the job.
    for _ in range(1000):
        fg = os.tcgetpgrp(fd)
        try:
            with open("/proc/%d/comm" % fg) as f:
                comm = f.read().strip()
        except OSError:
            comm = ""
        if fg != pid and comm == name and termios.tcgetattr(fd)[3] & termios.ECHO:
            return
        time.sleep(0.01)
    print("the job never got the terminal")

pid, fd = pty.fork()
if pid == 0:
    os.execve(sys.argv[1], sys.argv[1:], {"PS1": "$ ", "PATH": "/usr/bin:/bin", "TERM": "dumb", "HOME": "/"})
show(drain(fd, b"$ "))
os.write(fd, b"sleep 30 &\n")
show(drain(fd, b"$ "))
# Disowned before it is killed: when bash would report its end is a race.
os.write(fd, b"jobs; disown %1; kill $!; echo bg-done\n")
show(drain(fd, b"bg-done\r\n$ "))
os.write(fd, b"cat\n")
show(drain(fd, b"cat\r\n"))
job_running(fd, "cat")
os.write(fd, b"typed to cat\n")
show(drain(fd, b"typed to cat\r\ntyped to cat\r\n"))
os.write(fd, b"\x03")
show(drain(fd, b"$ "))
os.write(fd, b"sleep 30\n")
show(drain(fd, b"sleep 30\r\n"))
job_running(fd, "sleep")
os.write(fd, b"\x1a")
show(drain(fd, b"$ "))
os.write(fd, b"fg\n")
show(drain(fd, b"sleep 30\r\n"))
job_running(fd, "sleep")
os.write(fd, b"\x03")
show(drain(fd, b"$ "))
os.write(fd, b"echo status $?; exit\n")
show(drain(fd, b"<never>"))
_, st = os.waitpid(pid, 0)
print("shell exit", os.waitstatus_to_exitcode(st))
"#;

#[test]
fn interactive_bash_job_control_through_a_pty() {
    let inv = Invocation::new("/usr/bin/python3").args([
        "-c",
        PYTHON_SHELL,
        "/bin/bash",
        "--norc",
        "--noprofile",
        "-i",
    ]);
    let native = inv.native();
    assert_eq!(native.code, 0, "natively: {}", native.stderr_str());
    let shown = native.stdout_str();
    for seen in ["Running", "Stopped", "status 130", "<EIO>"] {
        assert!(shown.contains(seen), "natively, no {seen:?}: {shown}");
    }
    assert_same(&native, &inv.cryo());
}

#[test]
fn python3_pty_fork_and_openpty() {
    let inv = Invocation::new("/usr/bin/python3").args(["-c", PYTHON_PTY]);
    let native = inv.native();
    assert_eq!(native.code, 0, "natively: {}", native.stderr_str());
    assert!(
        native.stdout_str().contains("child exit 3"),
        "natively: {}",
        native.stdout_str()
    );
    assert_same(&native, &inv.cryo());
}

/// A program holding a pty with unread input, a line being edited and a
/// foreground job, checkpointed mid-run and restored (twice, from a moved
/// image): it carries on, and prints what a native run prints.
#[test]
fn pty_with_unread_input_and_a_foreground_job_survives_restore() {
    use cryo_tests::sandbox::{assert_ok, checkpoint, Sandbox, Scratch, STATEFILE};
    use cryo_tests::{guest, run_cryo_cli, Libc};
    use std::time::Duration;

    let bin = guest("ckpt_pty", Libc::Glibc);
    let native = Invocation::new(&bin).native();
    assert_eq!(native.code, 0, "natively: {}", native.stderr_str());
    let reference: Vec<String> = native.stdout_str().lines().map(String::from).collect();
    assert_eq!(reference.len(), 16, "{reference:?}");

    let s = Scratch::new("cryo-pty-");
    let mut a = Sandbox::run(&s.root(), "A", &bin, &[] as &[&str]);
    // "start" and three ticks: seven queued lines and a half line unread.
    a.wait_lines(4, Duration::from_secs(20));
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "A", &[]), "cryo checkpoint A");
    assert_eq!(
        a.wait_exit(Duration::from_secs(20)),
        0,
        "{}",
        a.stderr_str()
    );
    let before = a.lines().to_vec();
    assert!(
        before.len() >= 4 && before.len() < reference.len(),
        "checkpointed mid-run: {before:?}"
    );
    assert_eq!(
        before[..],
        reference[..before.len()],
        "before the checkpoint"
    );

    let moved = s.path("elsewhere/img");
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    std::fs::rename(&img, &moved).unwrap();
    let shown = run_cryo_cli(&[
        std::ffi::OsStr::new("inspect"),
        moved.join(STATEFILE).as_os_str(),
    ]);
    assert!(
        shown.stdout_str().contains("vfs.Pty"),
        "the statefile holds the terminal:\n{}",
        shown.stdout_str()
    );
    for id in ["B", "C"] {
        let mut b = Sandbox::restore(&s.root(), &moved, id);
        assert_eq!(
            b.wait_exit(Duration::from_secs(30)),
            0,
            "restore {id}: {}",
            b.stderr_str()
        );
        assert_eq!(
            b.lines(),
            &reference[before.len()..],
            "restored sandbox {id} goes on where A stopped"
        );
    }
}

/// util-linux `script` (openpty, a child session on the replica, the
/// parent copying the master to stdout) running `stty` and `tty` inside.
#[test]
fn script_runs_stty_and_tty_inside_a_pty() {
    let cmd = "stty -a; stty raw -echo; stty -a | tail -4; stty sane; \
               tty | sed 's/[0-9]*$/N/'; ls /dev/pts | grep -c ptmx";
    let inv = Invocation::new("/usr/bin/script").args(["-q", "-c", cmd, "/dev/null"]);
    let native = inv.native();
    assert_eq!(native.code, 0, "natively: {}", native.stderr_str());
    assert!(
        native.stdout_str().contains("/dev/pts/N"),
        "natively: {}",
        native.stdout_str()
    );
    assert_same(&native, &inv.cryo());
}
