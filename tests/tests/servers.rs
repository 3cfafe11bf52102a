//! Real servers from Debian's packages inside one sandbox, queried from
//! inside it over the sandbox's own loopback (issue 13): redis-server with
//! redis-cli, nginx (a master and its workers) with curl; and connections
//! that go on across a checkpoint: a redis client holding its connection,
//! and a 100 MB loopback transfer.

use std::path::Path;
use std::thread;
use std::time::Duration;

use cryo_tests::run_cryo;
use cryo_tests::sandbox::{assert_ok, checkpoint, Sandbox, Scratch};

fn need(programs: &[&str]) {
    for p in programs {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: tests/scripts/deps.sh installs it"
        );
    }
}

/// Runs `script` with sh under cryo; it must exit 0 and print `expected`.
fn sh_prints(script: &str, expected: &str) {
    let out = run_cryo("/bin/sh", &["-c", script], b"");
    assert_eq!(
        (out.code, out.stdout_str().as_str()),
        (0, expected),
        "stderr: {}",
        out.stderr_str()
    );
}

/// Starts redis-server on port 6390 of the sandbox's loopback and waits
/// for it to answer.
const REDIS_UP: &str = r#"
redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --daemonize no > /tmp/redis.log 2>&1 &
for i in $(seq 150); do redis-cli -p 6390 ping > /dev/null 2>&1 && break; sleep 0.2; done
"#;

#[test]
fn redis_sets_and_gets_10000_keys() {
    need(&["/usr/bin/redis-server", "/usr/bin/redis-cli"]);
    let script = format!(
        r#"{REDIS_UP}
seq 10000 | awk '{{print "SET key:" $1 " value:" $1}}' | redis-cli -p 6390 --pipe | tail -n 1
redis-cli -p 6390 dbsize
seq 10000 | awk '{{print "GET key:" $1}}' | redis-cli -p 6390 > /tmp/got
seq 10000 | awk '{{print "value:" $1}}' > /tmp/want
cmp /tmp/got /tmp/want && echo "every value read back"
redis-cli -p 6390 shutdown nosave
wait
echo "redis-server exited $?"
"#
    );
    sh_prints(
        &script,
        "errors: 0, replies: 10000\n10000\nevery value read back\nredis-server exited 0\n",
    );
}

#[test]
fn nginx_master_and_workers_serve_a_file_to_curl() {
    need(&["/usr/sbin/nginx", "/usr/bin/curl"]);
    // Two workers: the master signals them through socketpairs it arms
    // with FIOASYNC and F_SETOWN.
    let script = r#"
mkdir -p /tmp/www /tmp/ngx
seq 100000 > /tmp/www/f.txt
cat > /tmp/ngx/nginx.conf <<'EOF'
daemon off;
master_process on;
worker_processes 2;
pid /tmp/ngx/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path /tmp/ngx/body;
  proxy_temp_path /tmp/ngx/proxy;
  fastcgi_temp_path /tmp/ngx/fcgi;
  uwsgi_temp_path /tmp/ngx/uwsgi;
  scgi_temp_path /tmp/ngx/scgi;
  server { listen 127.0.0.1:8080; root /tmp/www; }
}
EOF
/usr/sbin/nginx -c /tmp/ngx/nginx.conf -e stderr &
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8080/f.txt && break; sleep 0.2; done
for i in 1 2 3 4 5 6; do
  curl -s -o /tmp/got http://127.0.0.1:8080/f.txt && cmp /tmp/got /tmp/www/f.txt && echo "got it $i"
done
curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/missing
kill -QUIT $(cat /tmp/ngx/nginx.pid)
wait
echo "nginx exited $?"
"#;
    sh_prints(
        script,
        "got it 1\ngot it 2\ngot it 3\ngot it 4\ngot it 5\ngot it 6\n404\nnginx exited 0\n",
    );
}

/// A python3 check that sees a restore: CLOCK_REALTIME jumps against
/// CLOCK_MONOTONIC (read between two monotonic reads close together, so
/// that a slow machine is not taken for a restore).
const RESTORE_CLOCK: &str = r#"
import time
def clock_offset():
    while True:
        m1 = time.monotonic(); r = time.time(); m2 = time.monotonic()
        if m2 - m1 < 0.01:
            return r - (m1 + m2) / 2
"#;

/// Checkpoints sandbox A once it printed a line starting with `ready`,
/// restores it as B after a pause and returns B to be waited for.
fn checkpoint_then_restore(s: &Scratch, a: &mut Sandbox, ready: &str) -> Sandbox {
    a.wait_for(Duration::from_secs(120), ready, |l| {
        l.iter().any(|l| l.starts_with(ready))
    });
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "A", &[]), "cryo checkpoint A");
    assert_eq!(
        a.wait_exit(Duration::from_secs(30)),
        0,
        "{}",
        a.stderr_str()
    );
    // The restored copy sees the clock jump by more than this.
    thread::sleep(Duration::from_millis(1500));
    Sandbox::restore(&s.root(), &img, "B")
}

#[test]
fn redis_client_connection_and_100000_keys_survive_a_checkpoint() {
    need(&[
        "/usr/bin/redis-server",
        "/usr/bin/redis-cli",
        "/usr/bin/python3",
    ]);
    let client = format!(
        r#"{RESTORE_CLOCK}
import socket
s = socket.create_connection(("127.0.0.1", 6390))
f = s.makefile("rb")
def cmd(*args):
    args = [a.encode() for a in args]
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
def reply():
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        return [reply() for _ in range(int(rest))]
    return rest
def wrong_keys():
    bad = 0
    for base in range(1, 100001, 1000):
        keys = range(base, base + 1000)
        cmd("MGET", *["key:%d" % i for i in keys])
        bad += sum(v != b"value:%d" % i for i, v in zip(keys, reply()))
    return bad
port = s.getsockname()[1]
print("loaded: wrong keys", wrong_keys(), flush=True)
offset = clock_offset()
rounds = 0
while True:
    cmd("DBSIZE")
    n = int(reply())
    if abs(clock_offset() - offset) > 0.7:
        print("restored: dbsize", n, "wrong keys", wrong_keys(),
              "same connection", s.getsockname()[1] == port, flush=True)
        break
    rounds += 1
    if rounds == 2:
        print("connected: dbsize", n, flush=True)
    time.sleep(0.2)
"#
    );
    let script = format!(
        r#"{REDIS_UP}
seq 100000 | awk '{{print "SET key:" $1 " value:" $1}}' | redis-cli -p 6390 --pipe > /dev/null
python3 -c '{}'
redis-cli -p 6390 shutdown nosave
wait
echo "redis-server exited $?"
"#,
        client.replace('\'', "'\\''")
    );
    let s = Scratch::new("redis-ckpt");
    let mut a = Sandbox::run(&s.root(), "A", Path::new("/bin/sh"), &["-c", &script]);
    let mut b = checkpoint_then_restore(&s, &mut a, "connected:");
    assert_eq!(
        a.lines(),
        ["loaded: wrong keys 0", "connected: dbsize 100000"],
        "before the checkpoint"
    );
    assert_eq!(
        b.wait_exit(Duration::from_secs(120)),
        0,
        "{}",
        b.stderr_str()
    );
    assert_eq!(
        b.lines(),
        [
            "restored: dbsize 100000 wrong keys 0 same connection True",
            "redis-server exited 0"
        ],
        "after the restore"
    );
}

#[test]
fn a_100mb_loopback_transfer_arrives_intact_across_a_checkpoint() {
    need(&["/usr/bin/python3"]);
    // The sender paces itself so that the checkpoint falls mid-transfer;
    // both ends hash what they saw.
    let prog = r#"
import hashlib, socket, threading, time
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
def send():
    c = socket.create_connection(srv.getsockname())
    h = hashlib.sha256()
    block = bytes(range(256)) * 256
    for i in range(1600):
        chunk = block[i % 256:] + block[:i % 256]
        h.update(chunk)
        c.sendall(chunk)
        if i % 16 == 15:
            time.sleep(0.02)
    c.close()
    sent.append(h.hexdigest())
sent = []
t = threading.Thread(target=send)
t.start()
conn, _ = srv.accept()
h = hashlib.sha256()
n = 0
mark = 0
while True:
    d = conn.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
    if n >= (mark + 10) << 20:
        mark += 10
        print("received", mark, "MiB", flush=True)
t.join()
print("done", n, "bytes", "intact" if sent == [h.hexdigest()] else "CORRUPT", flush=True)
"#;
    let s = Scratch::new("bulk-ckpt");
    let mut a = Sandbox::run(&s.root(), "A", Path::new("/usr/bin/python3"), &["-c", prog]);
    let mut b = checkpoint_then_restore(&s, &mut a, "received 20 MiB");
    assert_eq!(
        b.wait_exit(Duration::from_secs(300)),
        0,
        "{}",
        b.stderr_str()
    );
    let last = b.lines().last().cloned().unwrap_or_default();
    assert_eq!(last, "done 104857600 bytes intact", "{:?}", b.lines());
    let before: Vec<&String> = a.lines().iter().collect();
    assert!(
        before.len() < 10,
        "the transfer ended before its checkpoint: {before:?}"
    );
}
