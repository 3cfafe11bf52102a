//! `cryo diff`: what changed between a statefile and a running sandbox (or
//! two statefiles), named exactly, in text and JSON; nothing for a
//! statefile against itself; a clear error for bad input.
//!
//! The sandbox is a `cryo do` shell reading its commands from a host FIFO
//! (its stdin), so the test decides what runs between the two states and
//! when: the commands' processes, files and descriptors are the changes,
//! and the shell's own memory (it read and ran them) the only other.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cryo_tests::sandbox::{
    assert_ok, checkpoint, cryo_cli, cryo_command_under, skip, Sandbox, Scratch, NO_ARGS, REFUSED,
    STATEFILE,
};
use serde_json::Value;

const START: Duration = Duration::from_secs(60);

/// A `cryo do` shell whose stdin is a FIFO the test writes commands into.
struct Shell {
    sandbox: Sandbox,
    input: Option<File>,
    root: PathBuf,
    id: String,
    said: usize,
}

impl Shell {
    fn start(scratch: &Scratch, id: &str) -> Shell {
        let root = scratch.root();
        let fifo = scratch.path("stdin");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success(), "mkfifo {}", fifo.display());
        let fifo_s = fifo.to_str().expect("a UTF-8 scratch path");
        // The wrapper gives cryo the FIFO as its stdin.
        let cmd = cryo_command_under(&["/bin/sh", "-c", "exec \"$@\" <\"$0\"", fifo_s], &root);
        let sandbox = Sandbox::run_with(cmd, id, Path::new("/bin/sh"), NO_ARGS);
        let input = File::options()
            .write(true)
            .open(&fifo)
            .unwrap_or_else(|e| panic!("{}: {e}", fifo.display()));
        let mut sh = Shell {
            sandbox,
            input: Some(input),
            root,
            id: id.to_string(),
            said: 0,
        };
        sh.run("true");
        sh
    }

    /// Writes `line` to the shell without waiting (an exec: the line's
    /// rest would never run).
    fn send(&mut self, line: &str) {
        let input = self.input.as_mut().expect("the shell's stdin is open");
        writeln!(input, "{line}").expect("writing to the shell");
        input.flush().unwrap();
    }

    /// Runs `line` in the shell and waits until it has run.
    fn run(&mut self, line: &str) {
        self.said += 1;
        let mark = format!("cryo-diff-mark-{}", self.said);
        let input = self.input.as_mut().expect("the shell's stdin is open");
        writeln!(input, "{line}; echo {mark}").expect("writing to the shell");
        input.flush().unwrap();
        self.sandbox
            .wait_for(START, &format!("the shell to run {line:?}"), |l| {
                l.iter().any(|x| x == &mark)
            });
    }

    fn checkpoint_into(&self, img: &Path) {
        let out = checkpoint(&self.root, img, &self.id, &["--leave-running"]);
        assert_ok(&out, "cryo checkpoint --leave-running");
    }

    fn end(mut self) {
        drop(self.input.take());
        let code = self.sandbox.wait_exit(START);
        assert_eq!(
            code,
            0,
            "the shell's exit; stderr: {}",
            self.sandbox.stderr_str()
        );
    }
}

fn diff_json(root: &Path, a: &str, b: &str) -> (i32, Value) {
    let out = cryo_cli(root, &["diff", "--json", a, b]);
    assert!(
        out.code == 0 || out.code == 1,
        "cryo diff --json {a} {b}: exit {}; stderr: {}",
        out.code,
        out.stderr_str()
    );
    let v: Value = serde_json::from_str(&out.stdout_str())
        .unwrap_or_else(|e| panic!("cryo diff --json is not JSON ({e}): {}", out.stdout_str()));
    (out.code, v)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn empty(v: &Value, key: &str) -> bool {
    v[key].as_array().is_some_and(|a| a.is_empty())
}

/// No temporary checkpoint of the diff is left under the root.
fn assert_no_leftover(root: &Path) {
    let left: Vec<String> = std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".diff-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "cryo diff left {left:?} under {}",
        root.display()
    );
}

/// The must-show: `touch X; rm /etc/motd; python3 -c …` between a
/// statefile and the running sandbox is exactly those changes.
#[test]
fn diff_names_exactly_what_the_commands_changed() {
    let motd = match std::fs::metadata("/etc/motd") {
        Ok(m) => m.len(),
        Err(e) => return skip(&format!("diff must-show: the host has no /etc/motd ({e})")),
    };
    if !Path::new("/usr/bin/python3").exists() {
        return skip("diff must-show: the host has no /usr/bin/python3");
    }
    let scratch = Scratch::new("cryo-diff-");
    // A name of the upper layer alone (the host's /tmp may hold anything).
    let x = format!("/tmp/cryo-diff-{}-x", std::process::id());
    assert!(!Path::new(&x).exists(), "{x} exists on the host");
    let mut sh = Shell::start(&scratch, "diff-must-show");
    let img = scratch.path("a");
    sh.checkpoint_into(&img);
    sh.run(&format!(
        "touch {x}; rm /etc/motd; python3 -c 'x=[0]*10**6'"
    ));

    let a = img.to_str().unwrap();
    let (code, v) = diff_json(&sh.root, a, "diff-must-show");
    assert_eq!(code, 1, "changes: exit 1");
    assert_no_leftover(&sh.root);
    let p = &v["processes"];
    let started: Vec<(Vec<String>, Value, Value, bool)> = p["started"]
        .as_array()
        .expect("processes.started")
        .iter()
        .map(|s| {
            (
                strings(&s["argv"]),
                s["ppid"].clone(),
                s["exit"].clone(),
                s["in_b"] == true,
            )
        })
        .collect();
    let ok = serde_json::json!({"signaled": false, "code": 0});
    let want = [
        vec!["touch".to_string(), x.clone()],
        vec!["rm".into(), "/etc/motd".into()],
        vec!["python3".into(), "-c".into(), "x=[0]*10**6".into()],
    ];
    assert_eq!(
        started.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        want,
        "processes started: {}",
        p["started"]
    );
    for (argv, ppid, exit, in_b) in &started {
        assert_eq!(ppid, &serde_json::json!(1), "{argv:?}: the shell's child");
        assert_eq!(exit, &ok, "{argv:?} exited 0");
        assert!(!in_b, "{argv:?} has ended");
    }
    assert!(empty(p, "ended") && empty(p, "exec"), "{p}");
    assert_eq!(p["unlogged"], 0);
    let files: Vec<(String, String, String, Value, Value)> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["change"].as_str().unwrap_or("").to_string(),
                f["kind"].as_str().unwrap_or("").to_string(),
                f["size_before"].clone(),
                f["size_after"].clone(),
            )
        })
        .collect();
    let mut want_files = vec![
        (
            x.clone(),
            "added".to_string(),
            "file".to_string(),
            Value::Null,
            serde_json::json!(0),
        ),
        (
            "/etc/motd".to_string(),
            "removed".into(),
            "file".into(),
            serde_json::json!(motd),
            Value::Null,
        ),
    ];
    want_files.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(files, want_files, "files: {}", v["files"]);
    for key in ["descriptors", "environment", "credentials"] {
        assert!(empty(&v, key), "{key}: {}", v[key]);
    }
    // The shell read the line and forked: its memory is the one other
    // change, and it is counted in pages and ranges.
    let memory = v["memory"].as_array().expect("memory");
    assert!(!memory.is_empty(), "the shell's memory changed");
    for m in memory {
        assert_eq!(m["pid"], 1, "only the shell's memory: {m}");
        let n = m["pages_changed"].as_u64().unwrap_or(0);
        let in_ranges: u64 = m["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[1].as_u64().unwrap() - r[0].as_u64().unwrap()) / 4096)
            .sum();
        assert!(n > 0 && n == in_ranges, "pages and ranges agree: {m}");
    }

    // The text says the same.
    let out = cryo_cli(&sh.root, &["diff", a, "diff-must-show"]);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr_str());
    let text = out.stdout_str();
    for s in p["started"].as_array().unwrap() {
        let line = format!(
            "  + pid {} (ppid 1) {}: started and ended, exit 0",
            s["pid"],
            strings(&s["argv"]).join(" ")
        );
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    for line in [
        format!("  + {x} (file, 0 bytes)"),
        format!("  - /etc/motd (file, {motd} bytes)"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    let mem_lines = text
        .lines()
        .filter(|l| l.starts_with("  ~ pid 1 0x"))
        .count();
    assert_eq!(
        mem_lines,
        memory.len(),
        "one line per mapping change:\n{text}"
    );
    let sections: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        sections[2..],
        ["processes:", "files:", "memory:"],
        "only these kinds of change:\n{text}"
    );

    // A statefile against itself: nothing.
    let (code, same) = diff_json(&sh.root, a, a);
    assert_eq!(code, 0);
    assert_eq!(same["empty"], true, "{same}");
    let out = cryo_cli(&sh.root, &["diff", a, a]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout_str().lines().last(), Some("no changes"));
    sh.end();
}

/// Text files show a unified diff; descriptors, an exec's new program,
/// environment and credentials, and a process still running are named.
#[test]
fn diff_shows_text_diffs_descriptors_exec_and_environment() {
    let scratch = Scratch::new("cryo-diff-");
    let mut sh = Shell::start(&scratch, "diff-kinds");
    sh.run("printf 'one\\ntwo\\nthree\\n' > /tmp/t; printf gone > /tmp/gone");
    let a_img = scratch.path("a");
    sh.checkpoint_into(&a_img);
    sh.run(
        "printf 'one\\nTWO\\nthree\\n' > /tmp/t; rm /tmp/gone; exec 7>>/tmp/t; mkdir /tmp/newdir",
    );
    // The shell execs a new program with a new environment: pid 1 is the
    // same process, running another shell.
    // The new program says when it runs, before it reads: nothing is
    // written meanwhile that the old shell could have read and lost.
    sh.send("exec env CRYO_DIFF_VAR=yes /bin/sh -c 'echo exec-done; exec /bin/sh -s'");
    sh.sandbox.wait_for(START, "the exec'd shell", |l| {
        l.iter().any(|x| x == "exec-done")
    });
    // And takes other credentials on the way to the next one.
    sh.send(concat!(
        "exec python3 -c 'import os; os.setgroups([]); os.setgid(1000); os.setuid(1000); ",
        "os.execv(\"/bin/sh\", [\"/bin/sh\", \"-c\", \"echo cred-done; exec /bin/sh -s\"])'"
    ));
    sh.sandbox
        .wait_for(START, "the shell with new credentials", |l| {
            l.iter().any(|x| x == "cred-done")
        });
    // Once the child has exec'd sleep (until then it is a copy of the shell).
    sh.run("sleep 1000 & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done");
    let b_img = scratch.path("b");
    sh.checkpoint_into(&b_img);
    let (a, b) = (a_img.to_str().unwrap(), b_img.to_str().unwrap());
    let (code, v) = diff_json(&sh.root, a, b);
    assert_eq!(code, 1);

    let file = |path: &str| -> Value {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} in {}", v["files"]))
    };
    let t = file("/tmp/t");
    assert_eq!(t["change"], "modified");
    assert_eq!(strings(&t["what"]), ["content"]);
    let d = t["diff"].as_str().expect("a unified diff of /tmp/t");
    assert!(
        d.contains("--- a/tmp/t\n+++ b/tmp/t\n")
            && d.contains("-two\n+TWO\n")
            && d.contains(" one\n"),
        "{d}"
    );
    let gone = file("/tmp/gone");
    assert_eq!(
        (gone["change"].as_str(), gone["size_before"].as_u64()),
        (Some("removed"), Some(4))
    );
    let newdir = file("/tmp/newdir");
    assert_eq!(
        (newdir["change"].as_str(), newdir["kind"].as_str()),
        (Some("added"), Some("dir"))
    );

    // The exec: same pid 1, new argv, new environment variable.
    let exec = &v["processes"]["exec"];
    assert_eq!(exec[0]["pid"], 1, "{exec}");
    assert_eq!(strings(&exec[0]["after"]), ["/bin/sh", "-s"], "{exec}");
    let env: Vec<&Value> = v["environment"].as_array().unwrap().iter().collect();
    assert!(
        env.iter().any(|e| e["pid"] == 1
            && e["var"] == "CRYO_DIFF_VAR"
            && e["before"].is_null()
            && e["after"] == "yes"),
        "{}",
        v["environment"]
    );
    // Its new credentials.
    let creds = v["credentials"].as_array().unwrap();
    for field in ["uid", "euid", "suid", "gid", "egid", "sgid"] {
        assert!(
            creds.iter().any(|c| c["pid"] == 1
                && c["tid"] == 1
                && c["field"] == field
                && c["before"] == 0
                && c["after"] == 1000),
            "{field} 0 -> 1000 in {}",
            v["credentials"]
        );
    }
    // The descriptor the shell opened.
    let fds = v["descriptors"].as_array().unwrap();
    assert!(
        fds.iter().any(|f| f["pid"] == 1
            && f["fd"] == 7
            && f["change"] == "added"
            && f["after"]["path"] == "/tmp/t"),
        "{}",
        v["descriptors"]
    );
    // env and the new shell ran in pid 1; sleep still runs.
    let started = v["processes"]["started"].as_array().unwrap();
    let sleep = started
        .iter()
        .find(|s| strings(&s["argv"]) == ["sleep", "1000"])
        .unwrap_or_else(|| panic!("sleep in {}", v["processes"]));
    assert_eq!(sleep["in_b"], true);
    assert!(sleep["exit"].is_null());
    let text = cryo_cli(&sh.root, &["diff", a, b]).stdout_str();
    for needle in [
        "  ~ /tmp/t (file, 14 bytes): content",
        "    -two",
        "    +TWO",
        "  - /tmp/gone (file, 4 bytes)",
        "  + /tmp/newdir (dir)",
        "  + pid 1 CRYO_DIFF_VAR=yes",
        "  ~ pid 1: exec ",
        "  ~ pid 1 tid 1 euid: 0 -> 1000",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(needle)),
            "{needle:?} in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("sleep 1000: started, running")),
        "{text}"
    );
    sh.run("kill %1 2>/dev/null; kill $! 2>/dev/null; wait");
    sh.end();
}

/// Bad input is refused with one clear line: a missing file, a damaged or
/// cut statefile (the damage named), an unknown sandbox id.
#[test]
fn diff_refuses_bad_input_clearly() {
    let scratch = Scratch::new("cryo-diff-");
    let root = scratch.root();
    let sh = Shell::start(&scratch, "diff-bad");
    let img = scratch.path("img");
    sh.checkpoint_into(&img);
    sh.end();
    let good = img.join(STATEFILE);
    let good_s = good.to_str().unwrap();
    let refused = |args: &[&str], needles: &[&str]| {
        let mut all = vec!["diff"];
        all.extend_from_slice(args);
        let out = cryo_cli(&root, &all);
        let err = out.stderr_str();
        cryo_tests::sandbox::assert_refused(out.code, &err, &format!("cryo {all:?}"), needles);
        assert!(
            out.stdout_str().is_empty(),
            "nothing on stdout: {}",
            out.stdout_str()
        );
        assert_eq!(out.code, REFUSED);
    };
    let missing = scratch.path("missing.cryo");
    let missing_s = missing.to_str().unwrap();
    refused(&[good_s, missing_s], &[missing_s, "cannot open"]);
    refused(&[missing_s, good_s], &[missing_s, "cannot open"]);
    refused(
        &[good_s, "no-such-sandbox"],
        &["no-such-sandbox", "neither a statefile nor"],
    );

    let bytes = std::fs::read(&good).unwrap();
    let cut = scratch.path("cut.cryo");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let cut_s = cut.to_str().unwrap();
    refused(&[good_s, cut_s], &[cut_s, "damaged statefile", "truncated"]);
    // A flipped byte in the kernel section (the object table), and one in
    // the memory section's pages.
    let off = statefile_section_offset(&good, "kernel");
    let moff = statefile_section_offset(&good, "memory");
    let mut mflipped = bytes.clone();
    mflipped[moff + 64] ^= 0x40;
    let mbad = scratch.path("memory-flipped.cryo");
    std::fs::write(&mbad, &mflipped).unwrap();
    let mbad_s = mbad.to_str().unwrap();
    refused(&[good_s, mbad_s], &[mbad_s, "damaged statefile", "memory"]);
    let mut flipped = bytes.clone();
    flipped[off + 10] ^= 0x40;
    let bad = scratch.path("flipped.cryo");
    std::fs::write(&bad, &flipped).unwrap();
    let bad_s = bad.to_str().unwrap();
    refused(&[bad_s, good_s], &[bad_s, "damaged statefile", "checksum"]);
    // The good one against itself: no changes.
    let out = cryo_cli(&root, &["diff", good_s, img.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr_str());
}

/// Where the first section of `kind` starts, from `cryo inspect --json`.
fn statefile_section_offset(path: &Path, kind: &str) -> usize {
    let out = cryo_tests::run_cryo_cli(&["inspect", "--json", path.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&out.stdout_str()).expect("inspect --json");
    v["sections"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == kind))
        .and_then(|s| s["offset"].as_u64())
        .unwrap_or_else(|| panic!("a {kind} section in {v}")) as usize
}

/// An OCI container (a busybox root file system) and `cryo exec`: the
/// exec'd processes are named with their exit statuses, and
/// the bundle's rootfs, as the root's lower layer, tells a removed file's
/// size.
#[test]
fn diff_of_an_oci_container_names_what_exec_changed() {
    let scratch = Scratch::new("cryo-diff-oci-");
    let root = scratch.root();
    let bundle = scratch.path("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    if std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).is_err() {
        return skip("diff of an OCI container: no /bin/busybox (busybox-static)");
    }
    for a in ["sh", "mkfifo", "cat", "touch", "rm"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::write(rootfs.join("etc/motd"), "welcome\n").unwrap();
    let b = bundle.to_str().unwrap();
    assert_ok(&cryo_cli(&root, &["spec", "--bundle", b]), "cryo spec");
    let config = bundle.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    v["root"]["readonly"] = false.into();
    // Init waits in an open(2) of a FIFO no one writes: no timer, so a
    // checkpoint leaves its memory as it is (a sleep's nanosleep gets its
    // remaining time written back when a checkpoint interrupts it).
    v["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "mkfifo /tmp/f && exec cat /tmp/f"]);
    v["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    std::fs::write(&config, v.to_string()).unwrap();

    let id = "diff-oci";
    // Detached: the sandbox keeps these files as its stdout and stderr.
    let (out, err) = (scratch.path("run.out"), scratch.path("run.err"));
    let mut cmd = cryo_tests::sandbox::cryo_command(&root);
    cmd.args(["run", "--detach", "--bundle", b, id])
        .stdin(std::process::Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap());
    cryo_tests::isolate(&mut cmd);
    let status = cmd.status().expect("cryo run --detach");
    let delete = || {
        let _ = cryo_cli(&root, &["delete", "--force", id]);
    };
    if !status.success() {
        delete();
        panic!(
            "cryo run --detach: {status}; stderr: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }
    // `run --detach` returns while init may still be starting: A is the
    // first of two checkpoints in a row that do not differ (init waiting).
    let mut img = scratch.path("a0");
    let mut settled = false;
    for n in 0..100 {
        let next = scratch.path(&format!("a{n}"));
        let o = checkpoint(&root, &next, id, &["--leave-running"]);
        if o.code != 0 {
            delete();
            panic!("cryo checkpoint --leave-running: {}", o.stderr_str());
        }
        if n > 0 && diff_json(&root, img.to_str().unwrap(), next.to_str().unwrap()).0 == 0 {
            settled = true;
            break;
        }
        img = next;
    }
    if !settled {
        delete();
        panic!("the container's init never stood still between two checkpoints");
    }
    // One process each (busybox's shell would run its applets without
    // an exec, or in itself).
    let ex1 = cryo_cli(&root, &["exec", id, "/bin/touch", "/tmp/x"]);
    let ex2 = cryo_cli(&root, &["exec", id, "/bin/rm", "/etc/motd"]);
    let (code, d) = diff_json(&root, img.to_str().unwrap(), id);
    delete();
    assert_ok(&ex1, "cryo exec touch");
    assert_ok(&ex2, "cryo exec rm");
    assert_eq!(code, 1);
    let started: Vec<(Vec<String>, Value, Value, String)> = d["processes"]["started"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                strings(&s["argv"]),
                s["ppid"].clone(),
                s["exit"].clone(),
                s["exe"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let ok = serde_json::json!({"signaled": false, "code": 0});
    // Started from outside the sandbox's tree (ppid 0), as runc exec's are.
    let want = |argv: &[&str]| {
        (
            argv.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            serde_json::json!(0),
            ok.clone(),
            "/bin/busybox".to_string(),
        )
    };
    assert_eq!(
        started,
        [
            want(&["/bin/touch", "/tmp/x"]),
            want(&["/bin/rm", "/etc/motd"])
        ],
        "{}",
        d["processes"]
    );
    assert!(empty(&d["processes"], "ended"), "{}", d["processes"]);
    let files: Vec<(String, String, Value)> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["change"].as_str().unwrap_or("").to_string(),
                if f["change"] == "removed" {
                    f["size_before"].clone()
                } else {
                    f["size_after"].clone()
                },
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (
                "/etc/motd".to_string(),
                "removed".to_string(),
                serde_json::json!(8)
            ),
            (
                "/tmp/x".to_string(),
                "added".to_string(),
                serde_json::json!(0)
            ),
        ],
        "{}",
        d["files"]
    );
    assert_eq!(d["lower"], rootfs.to_str().unwrap(), "the bundle's rootfs");
    for key in ["descriptors", "environment", "credentials", "memory"] {
        assert!(empty(&d, key), "{key}: {}", d[key]);
    }
}
