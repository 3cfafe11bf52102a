//! Unix sockets used by real programs, natively and under cryo: python3's
//! socket.socketpair, a unix-socket server and client passing a file
//! descriptor between processes, asyncio (whose event loop wakes itself
//! through a socketpair) with subprocesses and timeouts (multiprocessing
//! is in shells.rs). Also the families cryo does not have yet, which
//! answer EAFNOSUPPORT (compared with a fixed expectation: the host has
//! them).

use cryo_tests::{assert_same, guest, Invocation, Libc};

const PYTHON: &str = "/usr/bin/python3";

fn python(prog: &str) {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: tests/scripts/deps.sh installs it"
    );
    let inv = Invocation::new(PYTHON).args(["-c", prog]);
    let native = inv.native();
    assert_eq!(
        native.code,
        0,
        "the program misbehaves natively:\n{}{}",
        native.stdout_str(),
        native.stderr_str()
    );
    assert_same(&native, &inv.cryo());
}

#[test]
fn python3_socketpair_and_unix_server_passing_an_fd() {
    python(
        r#"
import os, socket, tempfile, array
a, b = socket.socketpair()
a.sendall(b"ping")
print("pair", b.recv(10))
b.shutdown(socket.SHUT_WR)
print("eof", a.recv(10))
d = tempfile.mkdtemp()
path = os.path.join(d, "srv.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
pid = os.fork()
if pid == 0:
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    r, w = os.pipe()
    os.write(w, b"from the child's pipe")
    os.close(w)
    socket.send_fds(c, [b"fd"], [r])
    c.close()
    os._exit(0)
conn, _ = srv.accept()
msg, fds, flags, addr = socket.recv_fds(conn, 16, 4)
print("got", msg, len(fds), os.read(fds[0], 100))
print("peer gone", conn.recv(1))
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
srv.close()
os.unlink(path)
os.rmdir(d)
print("family", srv.family == socket.AF_UNIX)
"#,
    );
}

#[test]
fn python3_asyncio_with_subprocesses_and_timeouts() {
    python(
        r#"
import asyncio, os, tempfile
async def echo(reader, writer):
    data = await reader.readline()
    writer.write(data.upper())
    await writer.drain()
    writer.close()
async def main():
    p = await asyncio.create_subprocess_exec("echo", "from a subprocess", stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    print(out.decode().strip(), p.returncode)
    try:
        await asyncio.wait_for(asyncio.sleep(10), timeout=0.2)
    except asyncio.TimeoutError:
        print("timed out")
    d = tempfile.mkdtemp()
    path = os.path.join(d, "s")
    server = await asyncio.start_unix_server(echo, path)
    r, w = await asyncio.open_unix_connection(path)
    w.write(b"hello asyncio\n")
    await w.drain()
    print((await r.readline()).decode().strip())
    w.close()
    server.close()
    await server.wait_closed()
    os.unlink(path)
    os.rmdir(d)
    results = await asyncio.gather(*(asyncio.sleep(0.01, result=i) for i in range(5)))
    print("gathered", results)
asyncio.run(main())
"#,
    );
}

#[test]
fn other_socket_families_are_eafnosupport() {
    let out = Invocation::new(guest("unix_families", Libc::Glibc)).cryo();
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str(),
        // AF_INET, AF_INET6 and NETLINK_ROUTE exist now
        // (tests/tests/inet.rs): their sockets are made, and inet's
        // socketpair is EOPNOTSUPP as Linux's.
        "socket_inet: ret=3 errno=OK\n\
         socket_inet6: ret=4 errno=OK\n\
         socket_netlink: ret=5 errno=OK\n\
         socket_packet: ret=-1 errno=EAFNOSUPPORT\n\
         socketpair_inet: ret=-1 errno=EOPNOTSUPP\n\
         socket_unix: ret=1 errno=OK\n"
    );
}
