//! TCP and UDP over the sandbox's loopback, natively and under cryo, on
//! 127.0.0.1 and ::1: our C guests (tests/guests/inet_*.c: the calls,
//! their errors and their readiness; `lo`'s ioctls and /proc/net), python3's http.server with
//! urllib.request, and asyncio's streams and datagram endpoints. Each
//! runs natively first (in a network namespace of its own with `lo` up,
//! ephemeral ports, no port number printed) and must print the same under
//! cryo.

use cryo_tests::{assert_same, guest, Invocation, Libc};

const PYTHON: &str = "/usr/bin/python3";

fn same_as_linux(inv: Invocation) {
    // Its own loopback: a test running beside it natively took a port one
    // of its guests had just closed to probe ECONNREFUSED.
    let native = inv.native_in_private_net_ns();
    assert_eq!(
        native.code,
        0,
        "the program misbehaves natively:\n{}{}",
        native.stdout_str(),
        native.stderr_str()
    );
    assert_same(&native, &inv.cryo());
}

fn python(prog: &str) {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: tests/scripts/deps.sh installs it"
    );
    same_as_linux(Invocation::new(PYTHON).args(["-c", prog]));
}

#[test]
fn tcp_calls_states_and_errors_as_linux() {
    same_as_linux(Invocation::new(guest("inet_tcp", Libc::Glibc)));
}

#[test]
fn udp_calls_and_errors_as_linux() {
    same_as_linux(Invocation::new(guest("inet_udp", Libc::Glibc)));
}

#[test]
fn bad_families_types_addresses_and_ports_as_linux() {
    same_as_linux(Invocation::new(guest("inet_errors", Libc::Glibc)));
}

#[test]
fn lo_ioctls_and_proc_net_as_linux() {
    same_as_linux(Invocation::new(guest("inet_proc", Libc::Glibc)));
}

#[test]
fn musl_tcp_guest_too() {
    same_as_linux(Invocation::new(guest("inet_tcp", Libc::Musl)));
}

#[test]
fn python3_http_server_and_urllib() {
    python(
        r#"
import http.server, threading, urllib.request, urllib.error
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("you asked for " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
t = threading.Thread(target=srv.serve_forever, daemon=True)
t.start()
port = srv.server_address[1]
for path in ["/one", "/two?x=1"]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        print(r.status, r.headers["Content-Length"], r.read().decode())
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/missing", data=b"x")
except urllib.error.HTTPError as e:
    print("POST", e.code)
srv.shutdown()
srv.server_close()
print("family", srv.address_family == 2)
"#,
    );
}

#[test]
fn python3_asyncio_streams_and_datagrams() {
    python(
        r#"
import asyncio, socket
async def echo(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()
async def main():
    for host in ["127.0.0.1", "::1"]:
        server = await asyncio.start_server(echo, host, 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection(host, port)
        for word in [b"hello\n", b"asyncio streams\n"]:
            w.write(word)
            await w.drain()
            print(host, (await r.readline()).decode().strip())
        w.write_eof()
        print(host, "eof", await r.read())
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.set_result((data, addr[0]))
    t, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
    port = t.get_extra_info("sockname")[1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"datagram", ("127.0.0.1", port))
    print("udp", await asyncio.wait_for(got, 5))
    t.close()
    s.close()
asyncio.run(main())
"#,
    );
}

/// `ip addr` (iproute2, then busybox) in the sandbox lists `lo` alone,
/// through a NETLINK_ROUTE dump, exactly as the host shows its own `lo`.
#[test]
fn ip_addr_over_netlink_shows_lo_as_linux() {
    for (prog, pre) in [("/usr/sbin/ip", &[][..]), ("/usr/bin/busybox", &["ip"][..])] {
        if !std::path::Path::new(prog).exists() {
            panic!("{prog} is missing: tests/scripts/deps.sh installs it");
        }
        let native_args: Vec<&str> = pre.iter().copied().chain(["addr", "show", "lo"]).collect();
        let cryo_args: Vec<&str> = pre.iter().copied().chain(["addr"]).collect();
        let native = Invocation::new(prog).args(native_args).native();
        assert_eq!(native.code, 0, "{prog} natively: {}", native.stderr_str());
        let cryo = Invocation::new(prog).args(cryo_args).cryo();
        assert_eq!(cryo.code, 0, "{prog} under cryo: {}", cryo.stderr_str());
        assert_eq!(cryo.stdout_str(), native.stdout_str(), "{prog}");
        assert_eq!(cryo.stderr_str(), "", "{prog}");
    }
}

/// glibc's getaddrinfo with AI_ADDRCONFIG asks netlink which families
/// have addresses.
#[test]
fn python3_getaddrinfo_addrconfig() {
    python(
        r#"
import socket
for host in ["localhost", "127.0.0.1", "::1", None]:
    flags = socket.AI_ADDRCONFIG | (socket.AI_PASSIVE if host is None else 0)
    try:
        got = socket.getaddrinfo(host, 8080, type=socket.SOCK_STREAM, flags=flags)
        print(host, sorted(set((a[0].name, a[4][0]) for a in got)))
    except socket.gaierror as e:
        print(host, "error", e.errno)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
print("netlink bound", s.getsockname()[0] > 0)
"#,
    );
}

/// Ping sockets and raw sockets as Linux (tests/guests/inet_ping.c). The
/// guest writes net.ipv4.ping_group_range, so natively it runs in a new
/// network namespace with only `lo` up (a fresh namespace's range is
/// Linux's "1 0", as the sandbox's is), never on the host's own.
#[test]
fn ping_sockets_echo_over_lo_and_raw_needs_cap_net_raw_as_linux() {
    let g = guest("inet_ping", Libc::Glibc);
    let native = Invocation::new(&g).native_in_private_net_ns();
    assert_eq!(
        native.code,
        0,
        "the program misbehaves natively:\n{}{}",
        native.stdout_str(),
        native.stderr_str()
    );
    assert_same(&native, &Invocation::new(&g).cryo());
}
