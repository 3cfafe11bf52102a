//! Shells and the programs they start, natively and under cryo: busybox
//! sh, dash and bash running scripts with pipelines, subshells, command
//! substitution, traps, background jobs, kill, set -e and here-documents;
//! python3's process APIs and multiprocessing (asyncio is in
//! sockets.rs); make -j2 with gcc inside the sandbox. Each
//! compares stdout, stderr and the exit status with Linux.

use std::path::Path;

use cryo_tests::{assert_same, unique_tmp_path, Invocation};

/// A script that prints only what is the same natively and in a sandbox
/// (no pids, no times). dash writes "Terminated" only when the killed job is
/// reaped by `wait` itself, not when its SIGCHLD arrived first (reaped by the
/// shell between commands): which comes first is a race on Linux too, so
/// that `wait`'s stderr is dropped and its status kept.
const SCRIPT: &str = r#"
echo start
x=$(echo sub; echo stitution)
echo "command $x"
( echo in subshell; exit 4 ); echo "subshell status $?"
echo one two three | tr ' ' '\n' | sort -r | head -n 2
{ echo grouped; false; } ; echo "group status $?"
sleep 0.1 & bg=$!
wait $bg; echo "background waited $?"
sh -c 'exit 9' & wait $!; echo "background exit $?"
sleep 5 & victim=$!
kill $victim; wait $victim 2>/dev/null; echo "killed job status $?"
trap 'echo trapped USR1' USR1
kill -USR1 $$
echo after trap
cat <<EOT
here $((6 * 7))
EOT
for i in 1 2 3; do echo "loop $i"; done | while read l; do echo "read: $l"; done
f() { return 3; }; f; echo "function status $?"
echo "$(echo nested $(echo deeper))"
if grep -q root /etc/passwd; then echo "grep found root"; fi
echo "pipeline status $(false | true; echo $?)"
seq 1 100000 | sort -rn | uniq | wc -l
set -e
true
echo before failure
false
echo not reached
"#;

fn shell(sh: &str) {
    if !Path::new(sh).exists() {
        panic!("{sh} is missing: tests/scripts/deps.sh installs it");
    }
    let inv = Invocation::new(sh).args(["-c", SCRIPT]);
    let native = inv.native();
    assert_eq!(
        native.code,
        1,
        "the script misbehaves natively:\n{}",
        native.stderr_str()
    );
    assert_same(&native, &inv.cryo());
}

#[test]
fn busybox_sh_script() {
    let native = Invocation::new("/bin/busybox")
        .args(["sh", "-c", SCRIPT])
        .native();
    assert_eq!(native.code, 1, "{}", native.stderr_str());
    let cryo = Invocation::new("/bin/busybox")
        .args(["sh", "-c", SCRIPT])
        .cryo();
    assert_same(&native, &cryo);
}

#[test]
fn dash_script() {
    shell("/bin/dash");
}

#[test]
fn bash_script() {
    shell("/bin/bash");
}

#[test]
fn xargs_parallel() {
    let inv = Invocation::new("/bin/sh").args([
        "-c",
        "seq 1 40 | xargs -P4 -n1 sh -c 'echo $(($1 * $1))' sh | sort -n | tail -n 3",
    ]);
    assert_same(&inv.native(), &inv.cryo());
}

#[test]
fn python3_processes() {
    let prog = r#"
import os, signal, subprocess, threading, selectors
print(subprocess.run(["echo", "captured"], capture_output=True, text=True).stdout.strip())
print(subprocess.run(["sh", "-c", "exit 3"]).returncode)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("waitpid", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
got = []
signal.signal(signal.SIGALRM, lambda s, f: got.append(s))
signal.alarm(1)
signal.pause()
print("alarm handled", got == [signal.SIGALRM])
lock = threading.Lock()
n = [0]
def work():
    for _ in range(2000):
        with lock:
            n[0] += 1
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print("threads", n[0])
r, w = os.pipe()
sel = selectors.DefaultSelector()
sel.register(r, selectors.EVENT_READ)
os.write(w, b"x")
print("selector ready", len(sel.select(timeout=5)))
"#;
    let inv = Invocation::new("/usr/bin/python3").args(["-c", prog]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    assert_same(&native, &inv.cryo());
}

/// procps' ps reads /proc/<pid>/stat and status: inside the sandbox it
/// lists the sandbox's processes only, with their sandbox pids, parents
/// and states, each named after the file it was started as (`sh`, not the
/// `dash` /bin/sh links to). Not comparable with a native run, whose pids
/// differ.
#[test]
fn ps_lists_the_sandbox_processes() {
    let inv =
        Invocation::new("/bin/sh").args(["-c", "sleep 5 & ps -eo pid,ppid,stat,comm; kill $!"]);
    let out = inv.cryo();
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    let rows: Vec<Vec<String>> = out
        .stdout_str()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let want = [
        ["1", "0", "Ss", "sh"],
        ["2", "1", "S", "sleep"],
        ["3", "1", "R", "ps"],
    ];
    assert_eq!(rows, want, "{}", out.stdout_str());
}

/// The CPU count programs see through sysfs (glibc's sysconf reads
/// /sys/devices/system/cpu), sched_getaffinity (nproc) and /proc agree, as
/// on Linux.
#[test]
fn cpu_count_through_sysfs_and_affinity() {
    let inv = Invocation::new("/bin/sh").args([
        "-c",
        "cat /sys/devices/system/cpu/online /sys/devices/system/cpu/possible; \
         getconf _NPROCESSORS_ONLN; getconf _NPROCESSORS_CONF; nproc; \
         grep -c ^processor /proc/cpuinfo",
    ]);
    assert_same(&inv.native(), &inv.cryo());
}

/// The file tools of issue 10's list on a tree with a symlink and a hard
/// link: `tar czf`/`tar xzf` (which chowns what it extracts as root),
/// `cp -a`, `ln -s`, `mv`, `rm -rf`, `find -xdev`, with the same output as
/// on Linux.
#[test]
fn tar_cp_find_on_links() {
    let dir = unique_tmp_path("cryo-tartree");
    let script = format!(
        "set -e; rm -rf {d}; mkdir -p {d}/src/sub; cd {d}; echo hello > src/a; echo deep > src/sub/b; \
         ln -s a src/link; ln src/a src/hard; tar czf x.tgz src; mkdir out; tar xzf x.tgz -C out; \
         ls -l out/src | tail -n +2 | awk '{{print $1, $2, $NF}}'; cat out/src/link out/src/sub/b; \
         cp -a src copy; stat -c '%h %F %n' copy/hard copy/link copy/a; mv copy moved; \
         ln -s moved/sub s2; cat s2/b; rm -rf moved s2; ls; find {d} -xdev -name b | sort; \
         find /etc -xdev -name passwd | sort; cd /; rm -rf {d}",
        d = dir.display()
    );
    let inv = Invocation::new("/bin/sh").args(["-c", &script]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    assert_same(&native, &inv.cryo());
}

/// sqlite3 creates a database file, inserts 10,000 rows in one
/// transaction (its journal and fsyncs on the overlay) and queries them.
#[test]
fn sqlite3_transaction_of_ten_thousand_rows() {
    let dir = unique_tmp_path("cryo-sqlite");
    let sql = "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); BEGIN; \
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) \
         INSERT INTO t SELECT x, 'row' || x FROM c; COMMIT; \
         SELECT count(*), sum(a), max(b) FROM t; SELECT b FROM t WHERE a = 4242; \
         PRAGMA integrity_check;";
    let script = format!(
        "set -e; rm -rf {d}; mkdir {d}; sqlite3 {d}/db.sqlite \"{sql}\"; \
         sqlite3 {d}/db.sqlite 'SELECT count(*) FROM t WHERE b LIKE \"row1%\"'; rm -rf {d}",
        d = dir.display()
    );
    let inv = Invocation::new("/bin/sh").args(["-c", &script]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    assert_same(&native, &inv.cryo());
}

/// git init, add and commit in the sandbox: its object files, index lock
/// and renames on the overlay.
#[test]
fn git_init_add_commit() {
    let dir = unique_tmp_path("cryo-git");
    let script = format!(
        "set -e; rm -rf {d}; mkdir {d}; cd {d}; git init -q .; echo one > a; mkdir sub; echo two > sub/b; \
         git add a sub; git -c user.email=t@example.com -c user.name=t commit -q -m first; \
         echo three >> a; git -c user.email=t@example.com -c user.name=t commit -q -am second; \
         git log --format=%s; git ls-files; git status --porcelain | wc -l; git cat-file -p HEAD:sub/b; \
         cd /; rm -rf {d}",
        d = dir.display()
    );
    let inv = Invocation::new("/bin/sh").args(["-c", &script]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    assert_same(&native, &inv.cryo());
}

/// multiprocessing's pool and locks: its semaphores are files in /dev/shm
/// made with link(2), its workers forked processes fed through pipes.
#[test]
fn python3_multiprocessing() {
    let prog = r#"
import multiprocessing as mp
def square(x):
    return x * x
def add(lock, total, n):
    for _ in range(n):
        with lock:
            total.value += 1
if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print("pool", pool.map(square, range(10)))
    lock = mp.Lock()
    total = mp.Value("i", 0, lock=False)
    ps = [mp.Process(target=add, args=(lock, total, 500)) for _ in range(3)]
    for p in ps: p.start()
    for p in ps: p.join()
    print("value", total.value, [p.exitcode for p in ps])
    q = mp.Queue()
    p = mp.Process(target=q.put, args=("through a queue",))
    p.start()
    print(q.get(timeout=10))
    p.join()
"#;
    let inv = Invocation::new("/usr/bin/python3").args(["-c", prog]);
    let native = inv.native();
    assert_eq!(native.code, 0, "{}", native.stderr_str());
    assert_same(&native, &inv.cryo());
}

/// make -j2 building a small C program with gcc, inside the sandbox; the
/// objects land in the sandbox's writable layer, never on the host.
#[test]
fn make_j2_with_gcc() {
    let dir = unique_tmp_path("cryo-make");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.c"),
        "int f(void);\nint main(void){return f();}\n",
    )
    .unwrap();
    std::fs::write(dir.join("f.c"), "int f(void){return 6;}\n").unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "prog: main.o f.o\n\tgcc -o prog main.o f.o\n%.o: %.c\n\tgcc -c -o $@ $<\nrun: prog\n\t./prog; echo status $$?\n",
    )
    .unwrap();
    let inv = Invocation::new("/usr/bin/make")
        .args(["-s", "-j2", "run"])
        .cwd(&dir);
    let cryo = inv.cryo();
    assert!(
        !dir.join("prog").exists(),
        "the sandbox wrote to the host's directory"
    );
    let native = inv.native();
    assert_same(&native, &cryo);
    assert_eq!(native.stdout_str(), "status 6\n");
    let _ = std::fs::remove_dir_all(&dir);
}
