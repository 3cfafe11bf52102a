//! Pseudo-terminals from programs that are not our own guests: python3's
//! `pty.fork()` (forkpty: openpty, setsid, TIOCSCTTY, the replica as
//! stdio) with canonical input, line editing, SIGWINCH and raw mode, and
//! `os.openpty()` with termios; compared with native runs.

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
