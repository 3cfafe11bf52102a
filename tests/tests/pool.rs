//! Warm pools (`cryo pool`): a pool of python3 sandboxes that imported
//! heavy modules before their checkpoint hands them out one by one, each
//! answering a request on its stdin; each take is a new identity (its own
//! random numbers, boot id, id and environment); a replaced statefile is
//! taken or refused; bad input gets a clear error. Every test runs on the
//! platform `CRYO_TEST_PLATFORM` names (tests/scripts/test.sh runs them on
//! both).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryo_tests::confined::assert_sentry_confined;
use cryo_tests::sandbox::{assert_ok, assert_refused, cryo_cli, cryo_command, Scratch};
use cryo_tests::Output;

/// The server: imports a set of heavy modules, keeps a data file open
/// (argv[1]), reseeds `random` on SIGUSR2 (the pool's take signal, its
/// opt-in to notice it was cloned), says "ready" and then answers each
/// line on stdin with one JSON line. argv[2] is a version it reports.
const SERVER: &str = r#"
import json, decimal, email, email.parser, email.policy, http.client, sqlite3, csv, datetime, hashlib, os, random, re, signal, sys
data = open(sys.argv[1])
sqlite3.connect(":memory:").execute("select 1")
def reseed(signo, frame):
    random.seed(os.urandom(32))
signal.signal(signal.SIGUSR2, reseed)
print("ready", flush=True)
for line in sys.stdin:
    env = [e.decode() for e in open("/proc/cryo/environ", "rb").read().split(b"\0") if e]
    print(json.dumps({
        "echo": line.strip(),
        "version": sys.argv[2],
        "urandom": os.urandom(16).hex(),
        "random": random.random(),
        "boot_id": open("/proc/sys/kernel/random/boot_id").read().strip(),
        "id": open("/proc/cryo/id").read().strip(),
        "env": env,
        "sum": str(sum(decimal.Decimal(1) / decimal.Decimal(k) for k in range(1, 8))),
    }), flush=True)
"#;

const LONG: Duration = Duration::from_secs(120);

fn python3() -> &'static Path {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "/usr/bin/python3 is not installed (a broken test setup: run tests/scripts/deps.sh)"
    );
    python
}

/// SIGKILL to `target` (a pid, or -PGID), with kill(1): no unsafe here.
fn kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Runs `child` to its end within `timeout`, killing its group otherwise.
fn finish(mut child: Child, what: &str, timeout: Duration) -> Output {
    let pid = child.id() as i32;
    // Either may be read elsewhere already.
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let t = std::thread::spawn(move || {
            if let Some(mut err) = err {
                let _ = err.read_to_end(&mut e);
            }
            e
        });
        if let Some(mut out) = out {
            let _ = out.read_to_end(&mut o);
        }
        let e = t.join().unwrap_or_default();
        let status = child.wait().expect("wait");
        let _ = tx.send((status, o, e));
    });
    match rx.recv_timeout(timeout) {
        Ok((status, stdout, stderr)) => Output {
            code: cryo_tests::exit_code(status),
            stdout,
            stderr,
        },
        Err(_) => {
            kill(&format!("-{pid}"));
            panic!("{what}: timed out after {}s", timeout.as_secs());
        }
    }
}

/// `cryo --root ROOT ARGS…` with `input` on its stdin.
fn cryo_with_stdin(root: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = cryo_command(root);
    cmd.args(args);
    cryo_tests::isolate(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning cryo");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let data = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    finish(child, &format!("cryo {}", args.join(" ")), LONG)
}

/// Checkpoints the server (reporting `version`, holding `data` open) into
/// `img`, blocked in its read of stdin.
fn server_image(s: &Scratch, img: &Path, data: &Path, version: &str) {
    let root = s.path("ckroot");
    let mut cmd = cryo_command(&root);
    cmd.args(["do", "--id", "srv", "--cwd", "/", "--"])
        .arg(python3())
        .args(["-c", SERVER])
        .arg(data)
        .arg(version);
    cryo_tests::isolate(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning cryo do");
    // Held open: the server waits on it at its checkpoint.
    let stdin = child.stdin.take();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = stdout.read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    let first = rx.recv_timeout(LONG).ok().and_then(Result::ok);
    if first.as_deref() != Some("ready\n") {
        let _ = child.kill();
        let out = finish(child, "cryo do server", LONG);
        panic!("the server said {first:?}; stderr: {}", out.stderr_str());
    }
    let img_s = img.to_str().expect("utf-8 path");
    let out = cryo_cli(
        &root,
        &["checkpoint", "--force", "--image-path", img_s, "srv"],
    );
    assert_ok(&out, "cryo checkpoint of the server");
    drop(stdin);
    let status = finish(child, "the checkpointed server", LONG);
    assert_eq!(status.code, 0, "cryo do: {}", status.stderr_str());
}

/// A pool under `root`, destroyed (and its daemon killed) when dropped, so
/// a failing test leaves nothing running.
struct PoolGuard {
    root: PathBuf,
    name: String,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let pidfile = self.root.join(".pools").join(&self.name).join("daemon.pid");
        let pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let _ = cryo_cli(&self.root, &["pool", "destroy", &self.name]);
        if let Some(pid) = pid {
            // The daemon this test started, if destroy left it.
            kill(&pid.to_string());
        }
    }
}

fn create(root: &Path, img: &Path, name: &str, extra: &[&str]) -> PoolGuard {
    let mut args = vec![
        "pool",
        "create",
        "--image-path",
        img.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    args.push(name);
    let out = cryo_cli(root, &args);
    assert_ok(&out, &format!("cryo pool create {name}"));
    PoolGuard {
        root: root.to_path_buf(),
        name: name.to_string(),
    }
}

fn stats(root: &Path, name: &str) -> serde_json::Value {
    let out = cryo_cli(root, &["pool", "stats", "--format", "json", name]);
    assert_ok(&out, "cryo pool stats");
    serde_json::from_slice(&out.stdout).expect("stats are JSON")
}

/// Waits until the pool's stats satisfy `done`.
fn wait_stats(root: &Path, name: &str, why: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + LONG;
    loop {
        let s = stats(root, name);
        if done(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{why}: the pool says {s:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One take answering `request`: its one JSON answer.
fn take_answer(root: &Path, name: &str, request: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["pool", "take"];
    args.extend_from_slice(extra);
    args.push(name);
    let out = cryo_with_stdin(root, &args, format!("{request}\n").as_bytes());
    assert_ok(&out, &format!("cryo pool take {name} ({request})"));
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "take {request}: printed {text:?}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON answer");
    assert_eq!(v["echo"], request, "{v}");
    v
}

fn data_file(s: &Scratch) -> PathBuf {
    let p = s.path("data.txt");
    std::fs::write(&p, "data\n").expect("writing the data file");
    p
}

#[test]
fn pool_of_python_servers_answers_twenty_takes_and_refills() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let _pool = create(
        &root,
        &img,
        "py",
        &["--size", "4", "--take-signal", "SIGUSR2", "--share-memory"],
    );
    wait_stats(&root, "py", "the pool fills", |s| s["ready"] == 4);

    let mut randoms = std::collections::HashSet::new();
    let mut urandoms = std::collections::HashSet::new();
    let mut boot_ids = std::collections::HashSet::new();
    for i in 0..20 {
        let id = format!("take{i}");
        let env = format!("REQ={i}");
        let v = take_answer(
            &root,
            "py",
            &format!("request {i}"),
            &["--id", &id, "--env", &env, "--env", "MODE=test"],
        );
        assert_eq!(v["version"], "v1");
        assert_eq!(v["sum"], "2.592857142857142857142857143", "{v}");
        assert_eq!(v["id"], id.as_str(), "/proc/cryo/id: {v}");
        assert_eq!(
            v["env"],
            serde_json::json!([env, "MODE=test"]),
            "/proc/cryo/environ: {v}"
        );
        randoms.insert(v["random"].to_string());
        urandoms.insert(v["urandom"].to_string());
        boot_ids.insert(v["boot_id"].to_string());
    }
    // Every take is a new identity: nothing generated after the take
    // repeats between sandboxes of one statefile.
    assert_eq!(urandoms.len(), 20, "os.urandom repeated: {urandoms:?}");
    assert_eq!(randoms.len(), 20, "random.random() repeated: {randoms:?}");
    assert_eq!(boot_ids.len(), 20, "boot_id repeated: {boot_ids:?}");
    wait_stats(&root, "py", "the pool refills", |s| {
        s["ready"] == 4 && s["takes"] == 20
    });
    let st = stats(&root, "py");
    assert!(st["refills"].as_u64() >= Some(24), "{st:#}");
    assert_eq!(st["refill_failures"], 0, "{st:#}");
    let members = st["members"].as_array().expect("members");
    assert_eq!(members.len(), 4);
    assert!(
        members.iter().all(|m| m["pss_bytes"].as_u64() > Some(0)),
        "{st:#}"
    );
    // The statefile's memory is held once, shared by the ready sandboxes
    // (each holds under a quarter of it of its own: nothing until taken).
    let shared = st["shared_memory_bytes"]
        .as_u64()
        .expect("shared_memory_bytes");
    assert!(shared > 1 << 20, "{st:#}");
    for m in members {
        let own = m["memory_file_bytes"].as_u64().expect("memory_file_bytes");
        assert!(
            own < shared / 4,
            "a ready sandbox holds {own} of {shared}: {st:#}"
        );
    }
    eprintln!(
        "pool of 4: PSS {} bytes, shared memory {shared} bytes",
        st["pss_bytes"]
    );

    // ls lists it, in both formats.
    let out = cryo_cli(&root, &["pool", "ls", "--format", "json"]);
    assert_ok(&out, "pool ls");
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls JSON");
    assert_eq!(ls[0]["name"], "py", "{ls}");
    let out = cryo_cli(&root, &["pool", "ls"]);
    assert!(
        out.stdout_str().lines().any(|l| l.starts_with("py ")),
        "{}",
        out.stdout_str()
    );

    // resize down and up.
    assert_ok(
        &cryo_cli(&root, &["pool", "resize", "--size", "2", "py"]),
        "resize",
    );
    wait_stats(&root, "py", "resized to 2", |s| {
        s["ready"] == 2 && s["size"] == 2
    });
    assert_ok(
        &cryo_cli(&root, &["pool", "resize", "--size", "3", "py"]),
        "resize",
    );
    wait_stats(&root, "py", "resized to 3", |s| s["ready"] == 3);

    // Destroyed: its ready sandboxes end and a take is a clear error.
    let pids: Vec<i32> = stats(&root, "py")["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["pid"].as_i64().map(|p| p as i32))
        .collect();
    assert_ok(&cryo_cli(&root, &["pool", "destroy", "py"]), "destroy");
    let out = cryo_with_stdin(&root, &["pool", "take", "py"], b"x\n");
    assert_refused(
        out.code,
        &out.stderr_str(),
        "take from a destroyed pool",
        &["no pool named \"py\""],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for pid in pids {
        while Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "member {pid} outlived its pool");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Without the take signal the interpreter's saved PRNG state is cloned
/// as it was saved (random.random() repeats: why the hook exists), while
/// what comes from the kernel (getrandom, boot_id) differs anyway.
#[test]
fn without_the_hook_only_kernel_randomness_differs() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let _pool = create(&root, &img, "plain", &["--size", "1"]);
    let a = take_answer(&root, "plain", "a", &[]);
    let b = take_answer(&root, "plain", "b", &[]);
    assert_ne!(a["urandom"], b["urandom"]);
    assert_ne!(a["boot_id"], b["boot_id"]);
    assert_eq!(a["random"], b["random"], "the saved PRNG state: {a} {b}");
    // Without --share-memory each sandbox loads its own memory.
    let st = stats(&root, "plain");
    assert_eq!(st["shared_memory_bytes"], 0, "{st:#}");
    // A generated id, shown in /proc/cryo/id; no --env: an empty environ.
    assert!(
        a["id"].as_str().is_some_and(|i| i.starts_with("cryo-")),
        "{a}"
    );
    assert_eq!(a["env"], serde_json::json!([]));
}

/// A taken sandbox is a sandbox like a `cryo do` one: `state` and `kill`
/// work on its id, and the take exits with its status.
/// `cryo pool take --id ID POOL` in the foreground, asked `request`: the
/// running take with its stdin and stdout, once the sandbox answered.
fn take_answering(
    root: &Path,
    id: &str,
    pool: &str,
    request: &str,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    BufReader<std::process::ChildStdout>,
) {
    let mut cmd = cryo_command(root);
    cmd.args(["pool", "take", "--id", id, pool]);
    cryo_tests::isolate(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning take");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .expect("writing a request");
    let mut line = String::new();
    stdout.read_line(&mut line).expect("an answer");
    assert!(line.contains(&format!("\"{request}\"")), "{line}");
    (child, stdin, stdout)
}

#[test]
fn a_taken_sandbox_answers_state_and_kill() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let _pool = create(&root, &img, "k", &["--size", "1"]);
    let (mut child, stdin, stdout) = take_answering(&root, "held", "k", "first");
    let out = cryo_cli(&root, &["state", "held"]);
    assert_ok(&out, "cryo state of a taken sandbox");
    assert!(out.stdout_str().contains("running"), "{}", out.stdout_str());
    // Taken, its Sentry is confined as any sandbox's (see confinement.rs).
    let state: serde_json::Value = serde_json::from_str(&out.stdout_str()).expect("state JSON");
    let pid = state["pid"].as_u64().expect("a pid");
    assert_sentry_confined(pid as u32, "the taken sandbox");
    // A second take cannot reuse the id; the pool's sandbox stays ready.
    let out = cryo_with_stdin(&root, &["pool", "take", "--id", "held", "k"], b"x\n");
    assert_refused(
        out.code,
        &out.stderr_str(),
        "a take with an id in use",
        &["already exists"],
    );
    let v = take_answer(&root, "k", "after", &[]);
    assert_eq!(v["version"], "v1");
    assert_ok(&cryo_cli(&root, &["kill", "held", "TERM"]), "cryo kill");
    child.stdout = Some(stdout.into_inner());
    child.stdin = Some(stdin);
    let out = finish(child, "the killed take", LONG);
    assert_eq!(
        out.code,
        128 + libc::SIGTERM,
        "stderr: {}",
        out.stderr_str()
    );

    // A signal to the take goes to the sandbox's program, as with `cryo
    // restore`.
    let (mut child, stdin, stdout) = take_answering(&root, "signalled", "k", "second");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.stdout = Some(stdout.into_inner());
    child.stdin = Some(stdin);
    let out = finish(child, "the signalled take", LONG);
    assert_eq!(
        out.code,
        128 + libc::SIGTERM,
        "stderr: {}",
        out.stderr_str()
    );
}

/// A replacement statefile that does not load is refused with the damage
/// named and the old one kept; a good one is taken by the next takes.
#[test]
fn a_replaced_statefile_is_taken_or_refused() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let img2 = s.path("img2");
    server_image(&s, &img2, &data, "v2");
    let _pool = create(&root, &img, "r", &["--size", "2"]);
    wait_stats(&root, "r", "the pool fills", |s| s["ready"] == 2);

    // A damaged replacement, put in place as a checkpoint would (rename).
    let statefile = img.join("checkpoint.cryo");
    let mut bytes = std::fs::read(img2.join("checkpoint.cryo")).expect("reading a statefile");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let tmp = img.join("replacement");
    std::fs::write(&tmp, &bytes).expect("writing the damaged copy");
    std::fs::rename(&tmp, &statefile).expect("replacing the statefile");
    wait_stats(&root, "r", "the damaged statefile is refused", |s| {
        s["refused_statefile"].is_string()
    });
    let st = stats(&root, "r");
    let why = st["refused_statefile"].as_str().unwrap_or_default();
    assert!(
        why.contains(&statefile.display().to_string()) && why.contains("checksum"),
        "the refusal names the file and the damage: {why}"
    );
    assert_eq!(st["generation"], 1);
    assert_eq!(take_answer(&root, "r", "old", &[])["version"], "v1");

    // A good replacement: new takes use it.
    std::fs::copy(img2.join("checkpoint.cryo"), &tmp).expect("copying");
    std::fs::rename(&tmp, &statefile).expect("replacing the statefile");
    wait_stats(&root, "r", "the new statefile is taken", |s| {
        s["generation"] == 2 && s["ready"] == 2
    });
    assert!(stats(&root, "r")["refused_statefile"].is_null());
    for i in 0..3 {
        assert_eq!(
            take_answer(&root, "r", &format!("new {i}"), &[])["version"],
            "v2"
        );
    }
}

/// A take while the refill fails gets the refill's error, never a
/// half-restored sandbox: here the file the server holds open changed on
/// the host, so no new sandbox restores (its fingerprint differs).
#[test]
fn a_failing_refill_is_a_clear_error() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let _pool = create(&root, &img, "f", &["--size", "1"]);
    std::fs::write(&data, "changed, and longer\n").expect("changing the data file");
    // The sandbox restored before the change is fine.
    assert_eq!(take_answer(&root, "f", "one", &[])["version"], "v1");
    wait_stats(&root, "f", "the refill fails", |s| {
        s["last_error"].is_string()
    });
    let out = cryo_with_stdin(&root, &["pool", "take", "f"], b"two\n");
    assert_refused(
        out.code,
        &out.stderr_str(),
        "a take from a pool whose refill fails",
        &["no ready sandbox", "refill fails", "data.txt"],
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout_str());
}

#[test]
fn bad_input_is_refused() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let img_s = img.to_str().expect("utf-8");

    // A damaged statefile: the damage named, no pool left behind.
    let bad = s.path("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    let mut bytes = std::fs::read(img.join("checkpoint.cryo")).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(bad.join("checkpoint.cryo"), &bytes).expect("write");
    let bad_s = bad.to_str().expect("utf-8");
    let out = cryo_cli(
        &root,
        &[
            "pool",
            "create",
            "--image-path",
            bad_s,
            "--size",
            "2",
            "bad",
        ],
    );
    assert_refused(
        out.code,
        &out.stderr_str(),
        "a pool on a damaged statefile",
        &[
            &bad.join("checkpoint.cryo").display().to_string(),
            "checksum mismatch",
        ],
    );
    assert!(
        !root.join(".pools").join("bad").exists(),
        "a refused pool left its directory"
    );

    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "pool",
                "create",
                "--image-path",
                "/nonexistent",
                "--size",
                "1",
                "x",
            ],
            &["no statefile"],
        ),
        (
            &["pool", "create", "--image-path", img_s, "--size", "0", "x"],
            &["--size 0"],
        ),
        (
            &[
                "pool",
                "create",
                "--image-path",
                img_s,
                "--size",
                "1",
                "../x",
            ],
            &["invalid pool name"],
        ),
        (
            &[
                "pool",
                "create",
                "--image-path",
                img_s,
                "--size",
                "1",
                "--take-signal",
                "KILL",
                "x",
            ],
            &["--take-signal", "cannot handle"],
        ),
        (
            &[
                "pool",
                "create",
                "--image-path",
                img_s,
                "--size",
                "1",
                "--max-memory",
                "12X",
                "x",
            ],
            &["--max-memory", "unit"],
        ),
        (
            &[
                "pool",
                "create",
                "--image-path",
                img_s,
                "--size",
                "1",
                "--max-memory",
                "1K",
                "x",
            ],
            &["more than --max-memory"],
        ),
        (&["pool", "take", "nosuch"], &["no pool named \"nosuch\""]),
        (&["pool", "stats", "nosuch"], &["no pool named \"nosuch\""]),
        (
            &["pool", "destroy", "nosuch"],
            &["no pool named \"nosuch\""],
        ),
        (
            &["pool", "take", "--env", "NOEQUALS", "nosuch"],
            &["--env", "KEY=VALUE"],
        ),
        (
            &["pool", "take", "--id", "../bad", "nosuch"],
            &["invalid container id"],
        ),
    ];
    for (args, needles) in cases {
        let out = cryo_cli(&root, args);
        assert_refused(out.code, &out.stderr_str(), &args.join(" "), needles);
    }
    assert!(
        std::fs::read_dir(root.join(".pools")).map_or(0, |d| d.count()) == 0,
        "refused creates left pools behind"
    );
    // Unknown flags: clap's usage error.
    let out = cryo_cli(&root, &["pool", "take", "--bogus", "x"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr_str().contains("--bogus"), "{}", out.stderr_str());

    // Two pools cannot share a name.
    let _pool = create(&root, &img, "one", &["--size", "1"]);
    let out = cryo_cli(
        &root,
        &[
            "pool",
            "create",
            "--image-path",
            img_s,
            "--size",
            "1",
            "one",
        ],
    );
    assert_refused(
        out.code,
        &out.stderr_str(),
        "a second pool named one",
        &["already exists"],
    );
    assert_eq!(take_answer(&root, "one", "still", &[])["version"], "v1");
}

/// `take --detach` prints the id and leaves the sandbox running on the
/// taker's stdio; a ready sandbox killed from outside is never handed out.
#[test]
fn detached_takes_and_dead_members() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let _pool = create(&root, &img, "d", &["--size", "2"]);
    wait_stats(&root, "d", "the pool fills", |s| s["ready"] == 2);

    let out = cryo_with_stdin(
        &root,
        &["pool", "take", "--detach", "--id", "bg", "d"],
        b"req\n",
    );
    assert_ok(&out, "take --detach");
    // The sandbox may answer before the command prints the id.
    let text = out.stdout_str();
    let (answers, ids): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('{'));
    assert_eq!(ids, ["bg"], "the id: {text:?}");
    assert_eq!(answers.len(), 1, "one answer: {text:?}");
    let v: serde_json::Value = serde_json::from_str(answers[0]).expect("the answer");
    assert_eq!(v["echo"], "req");
    assert_eq!(v["id"], "bg");

    // Kill every ready sandbox: the next take gets a refill, never a dead one.
    wait_stats(&root, "d", "the pool refills", |s| s["ready"] == 2);
    for m in stats(&root, "d")["members"].as_array().expect("members") {
        kill(&m["pid"].to_string());
    }
    let v = take_answer(&root, "d", "after the kill", &[]);
    assert_eq!(v["version"], "v1");
    let st = stats(&root, "d");
    assert_eq!(st["takes"], 2, "{st:#}");
}

/// Plays conmon for `cryo pool take --console-socket`: listens on argv[1],
/// starts argv[2:], receives the terminal's master (runc's protocol), types
/// a request and ^D, and prints what came back and the take's status.
const CONSOLE_PEER: &str = r#"
import array, os, select, socket, subprocess, sys, time
path, cmd = sys.argv[1], sys.argv[2:]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(1)
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
listener.settimeout(60)
conn, _ = listener.accept()
msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
fds = array.array("i")
for level, kind, data in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(data[: len(data) - len(data) % 4])
m = fds[0]
os.write(m, b"over the terminal\r")
seen = b""
deadline = time.time() + 60
while b"}" not in seen and time.time() < deadline:
    r, _, _ = select.select([m], [], [], 0.5)
    if r:
        seen += os.read(m, 4096)
os.write(m, b"\x04")
print("status", proc.wait(timeout=60))
print("transcript", repr(seen))
"#;

/// `take --console-socket`: the sandbox's stdio is a new terminal whose
/// master goes to the socket.
#[test]
fn a_take_on_a_console_socket() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let _pool = create(&root, &img, "tty", &["--size", "1"]);
    let sock = s.path("console.sock");
    let cryo = cryo_command(&root);
    let mut cmd = Command::new(python3());
    cmd.arg("-c")
        .arg(CONSOLE_PEER)
        .arg(&sock)
        .arg(cryo.get_program())
        .args(cryo.get_args())
        .args(["pool", "take", "--console-socket"])
        .arg(&sock)
        .arg("tty");
    cryo_tests::isolate(&mut cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the console peer");
    let out = finish(child, "python3 as conmon for pool take", LONG);
    let text = out.stdout_str();
    assert_eq!(out.code, 0, "{text}\n{}", out.stderr_str());
    assert!(text.contains("status 0"), "{text}");
    assert!(
        text.contains(r#""echo": "over the terminal""#),
        "the answer came over the terminal: {text}"
    );
}

/// An OCI bundle whose root is the host's `/` (read-only) and whose
/// process is the server; `root_path` changes the root (a bundle that is
/// not the checkpointed container's).
fn server_bundle(s: &Scratch, name: &str, data: &Path, root_path: &str) -> PathBuf {
    let bundle = s.path(name);
    std::fs::create_dir_all(&bundle).expect("mkdir bundle");
    let out = cryo_cli(
        &s.path("specroot"),
        &["spec", "--bundle", bundle.to_str().expect("utf-8")],
    );
    assert_ok(&out, "cryo spec");
    let path = bundle.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("JSON");
    v["root"] = serde_json::json!({"path": root_path, "readonly": true});
    v["process"]["terminal"] = false.into();
    v["process"]["args"] = serde_json::json!([python3(), "-c", SERVER, data, "oci"]);
    v["process"]["env"] = serde_json::json!(["PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"]);
    std::fs::write(&path, v.to_string()).expect("writing config.json");
    bundle
}

/// `pool create --bundle`: the pool's sandboxes are containers of the
/// bundle, and a take makes each an OCI container (state, delete).
#[test]
fn an_oci_pool_hands_out_containers() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    let bundle = server_bundle(&s, "bundle", &data, "/");
    // The container, checkpointed blocked in its read of stdin.
    let ckroot = s.path("ckroot");
    let mut cmd = cryo_command(&ckroot);
    cmd.args(["run", "--bundle"]).arg(&bundle).arg("ctr");
    cryo_tests::isolate(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning cryo run");
    let stdin = child.stdin.take();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(stdout.read_line(&mut line).map(|_| line));
    });
    let first = rx.recv_timeout(LONG).ok().and_then(Result::ok);
    assert_eq!(
        first.as_deref(),
        Some("ready\n"),
        "the container's first line"
    );
    let img_s = img.to_str().expect("utf-8");
    assert_ok(
        &cryo_cli(&ckroot, &["checkpoint", "--image-path", img_s, "ctr"]),
        "cryo checkpoint of the container",
    );
    drop(stdin);
    let _ = finish(child, "cryo run of the checkpointed container", LONG);

    // A bundle the container cannot be restored into is refused.
    let other = server_bundle(&s, "other", &data, "/tmp");
    let out = cryo_cli(
        &root,
        &[
            "pool",
            "create",
            "--image-path",
            img_s,
            "--bundle",
            other.to_str().expect("utf-8"),
            "--size",
            "1",
            "o",
        ],
    );
    // (Its root lacks the file the container holds open.)
    assert_refused(
        out.code,
        &out.stderr_str(),
        "a pool of another bundle",
        &["data.txt"],
    );

    let _pool = create(
        &root,
        &img,
        "oci",
        &["--bundle", bundle.to_str().expect("utf-8"), "--size", "2"],
    );
    let (child, stdin, stdout) = take_answering(&root, "c1", "oci", "as a container");
    // Taken, its Sentry is confined as any container's (see confinement.rs).
    let out = cryo_cli(&root, &["state", "c1"]);
    assert_ok(&out, "cryo state c1");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
    assert_eq!(state["status"], "running", "{state}");
    assert_sentry_confined(
        state["pid"].as_u64().expect("a pid") as u32,
        "a container taken from an OCI pool",
    );
    drop(stdin);
    let mut child = child;
    child.stdout = Some(stdout.into_inner());
    let out = finish(child, "the waited take c1", LONG);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr_str());
    // Waited for, its record goes with it (removed by its confined Sentry).
    let out = cryo_cli(&root, &["state", "c1"]);
    assert_ne!(out.code, 0, "c1 is gone: {}", out.stdout_str());
    assert!(!root.join("c1").exists(), "c1's directory is left");

    // Detached, it is a container until deleted: state names its bundle.
    let out = cryo_with_stdin(
        &root,
        &["pool", "take", "--detach", "--id", "c2", "oci"],
        b"bg\n",
    );
    assert_ok(&out, "take --detach");
    let out = cryo_cli(&root, &["state", "c2"]);
    assert_ok(&out, "cryo state c2");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
    assert_eq!(state["bundle"], bundle.to_str().expect("utf-8"), "{state}");
    let deadline = Instant::now() + LONG;
    while cryo_cli(&root, &["state", "c2"])
        .stdout_str()
        .contains("running")
    {
        assert!(
            Instant::now() < deadline,
            "c2 did not end at its stdin's end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ok(&cryo_cli(&root, &["delete", "c2"]), "cryo delete c2");
    assert_ne!(cryo_cli(&root, &["state", "c2"]).code, 0);

    // Detached with its stdin kept open, it runs confined until killed,
    // then is stopped until deleted.
    let out_path = s.path("c3.out");
    let mut cmd = cryo_command(&root);
    cmd.args(["pool", "take", "--detach", "--id", "c3", "oci"]);
    cryo_tests::isolate(&mut cmd);
    let mut take = cmd
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).expect("c3.out"))
        .stderr(std::fs::File::create(s.path("c3.err")).expect("c3.err"))
        .spawn()
        .expect("spawning take --detach");
    let mut stdin = take.stdin.take().expect("stdin");
    let status = take.wait().expect("waiting for take --detach");
    assert!(status.success(), "take --detach c3: {status:?}");
    let out = cryo_cli(&root, &["state", "c3"]);
    assert_ok(&out, "cryo state c3");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
    assert_eq!(state["status"], "running", "{state}");
    assert_sentry_confined(
        state["pid"].as_u64().expect("a pid") as u32,
        "a detached container taken from an OCI pool",
    );
    // It still answers (its stdout is the take's file).
    stdin.write_all(b"detached\n").expect("writing to c3");
    let deadline = Instant::now() + LONG;
    while !std::fs::read_to_string(&out_path)
        .unwrap_or_default()
        .contains("\"detached\"")
    {
        assert!(Instant::now() < deadline, "c3 did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Confined, it still checkpoints (the statefile linked into the image
    // directory whose fd the checkpoint command passes).
    let img3 = s.path("c3img");
    let out = cryo_cli(
        &root,
        &[
            "checkpoint",
            "--leave-running",
            "--image-path",
            img3.to_str().expect("utf-8"),
            "c3",
        ],
    );
    assert_ok(&out, "cryo checkpoint --leave-running c3");
    assert!(
        img3.join(cryo_tests::sandbox::STATEFILE).is_file(),
        "no statefile in {}",
        img3.display()
    );
    assert_ok(&cryo_cli(&root, &["kill", "c3", "KILL"]), "cryo kill c3");
    let deadline = Instant::now() + LONG;
    loop {
        let out = cryo_cli(&root, &["state", "c3"]);
        assert_ok(&out, "cryo state of the killed c3");
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
        if state["status"] == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "c3 is not stopped: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ok(&cryo_cli(&root, &["delete", "c3"]), "cryo delete c3");
    assert_ne!(cryo_cli(&root, &["state", "c3"]).code, 0);
    assert!(!root.join("c3").exists(), "c3's directory is left");
    drop(stdin);
}

/// `--max-memory`: the pool keeps fewer ready sandboxes than `--size`
/// rather than let their PSS go over it, and refills within it.
#[test]
fn max_memory_caps_the_ready_sandboxes() {
    let s = Scratch::new("cryo-pool-");
    let root = s.path("root");
    let img = s.path("img");
    let data = data_file(&s);
    server_image(&s, &img, &data, "v1");
    let one = {
        let _probe = create(&root, &img, "probe", &["--size", "1"]);
        stats(&root, "probe")["pss_bytes"]
            .as_u64()
            .expect("pss_bytes")
    };
    assert!(one > 0);
    // Room for one sandbox and a half: one stays ready, never two.
    let max = (one * 3 / 2).to_string();
    let _pool = create(
        &root,
        &img,
        "capped",
        &["--size", "4", "--max-memory", &max],
    );
    // An uncapped pool would be restoring its second sandbox by now.
    let st = stats(&root, "capped");
    assert!(
        st["ready"] == 1 && st["refills"] == 1 && st["refilling"] == false,
        "{st:#}"
    );
    let _ = take_answer(&root, "capped", "one", &[]);
    wait_stats(&root, "capped", "the pool refills within its memory", |s| {
        s["refills"] == 2 && !s["refilling"].as_bool().unwrap_or(true)
    });
    // Several rounds of the refill loop (500 ms each) later, still one.
    std::thread::sleep(Duration::from_secs(2));
    let st = stats(&root, "capped");
    assert_eq!(st["refills"], 2, "{st:#}");
    assert_eq!(st["ready"], 1, "{st:#}");
    assert_eq!(st["size"], 4, "{st:#}");
    assert_eq!(st["max_memory_bytes"].as_u64(), Some(one * 3 / 2), "{st:#}");
}
