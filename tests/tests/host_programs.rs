//! The host's own dynamically linked programs (coreutils and friends) run
//! under cryo print exactly what they print natively. They exercise the
//! dynamic loader (ld.so, mmap of shared libraries, TLS, auxv), locale and
//! NSS file lookups, and ordinary file I/O on the host root seen read-only.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use cryo_tests::{assert_same, guest, run_cryo, run_native, unique_tmp_path, Invocation, Libc};

/// Runs `program args` natively and under cryo and asserts identical results.
fn same(program: &str, args: &[&str]) {
    let native = run_native(program, args, b"");
    let cryo = run_cryo(program, args, b"");
    assert_same(&native, &cryo);
}

#[test]
fn echo() {
    same("/bin/echo", &["hello", "world"]);
}

#[test]
fn true_exits_0() {
    let native = run_native("/bin/true", &[], b"");
    assert_eq!(native.code, 0);
    assert_same(&native, &run_cryo("/bin/true", &[], b""));
}

#[test]
fn false_exits_1() {
    let native = run_native("/bin/false", &[], b"");
    assert_eq!(native.code, 1);
    assert_same(&native, &run_cryo("/bin/false", &[], b""));
}

#[test]
fn cat_os_release() {
    same("/bin/cat", &["/etc/os-release"]);
}

#[test]
fn cat_stdin() {
    let input = b"line one\nline two\n\x00binary\xff\n".repeat(1000);
    let native = run_native("/bin/cat", &[], &input);
    assert_eq!(native.stdout, input);
    assert_same(&native, &run_cryo("/bin/cat", &[], &input));
}

/// `ls -la /`, minus the entries whose attributes legitimately differ.
///
/// `/proc`, `/sys`, `/dev`, `/run` and `/tmp` are mount points of virtual or
/// per-boot file systems: in the sandbox they are cryo's own procfs, sysfs,
/// devfs and tmpfs (or the in-memory upper layer), so their link counts,
/// sizes and times differ from the host's. The `total` line sums the block
/// counts of every entry, those included, so it is dropped too, as are `.`
/// and `..` (the root directory itself, whose attributes the sandbox's
/// overlay root may report from its upper layer). Every other line — names,
/// modes, owners, sizes, times, symlink targets — must match.
#[test]
fn ls_la_root() {
    const VOLATILE: &[&str] = &["proc", "sys", "dev", "run", "tmp", ".", ".."];
    let keep = |out: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .filter(|line| !line.starts_with("total "))
            .filter(|line| {
                // The name is the 9th field; a symlink line continues with "-> target".
                let name = line.split_whitespace().nth(8).unwrap_or("");
                !VOLATILE.contains(&name)
            })
            // ls pads columns to the widest entry, and the widest link count
            // or size may be on an excluded line: compare fields, not padding.
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let native = run_native("/bin/ls", &["-la", "/"], b"");
    let cryo = run_cryo("/bin/ls", &["-la", "/"], b"");
    assert_eq!(native.code, 0, "native ls failed: {}", native.stderr_str());
    assert_eq!(cryo.code, 0, "cryo ls failed: {}", cryo.stderr_str());
    let (n, c) = (keep(&native.stdout), keep(&cryo.stdout));
    assert!(n.len() > 5, "suspiciously short native listing: {n:?}");
    assert_eq!(
        n,
        c,
        "ls -la / differs\n{}",
        cryo_tests::diff(n.join("\n").as_bytes(), c.join("\n").as_bytes())
    );
}

/// `env` with a controlled environment: the same explicit variables natively
/// (cleared environment) and in the sandbox (`--env`).
#[test]
fn env_controlled() {
    let vars = [
        ("PATH", "/usr/bin:/bin"),
        ("LC_ALL", "C"),
        ("CRYO_A", "1"),
        ("CRYO_B", "two words=equals"),
    ];
    let inv = Invocation::new("/usr/bin/env").env_exact(&vars);
    let native = inv.native();
    assert_eq!(
        native.stdout_str(),
        "CRYO_A=1\nCRYO_B=two words=equals\nLC_ALL=C\nPATH=/usr/bin:/bin\n"
    );
    assert_same(&native, &inv.cryo());
}

/// `uname -a`: the sandbox reports its own kernel (release 4.4.0) and
/// hostname, so only sysname, machine and OS are compared with the host.
#[test]
fn uname_a() {
    let native = run_native("/bin/uname", &["-a"], b"");
    let cryo = run_cryo("/bin/uname", &["-a"], b"");
    assert_eq!(cryo.code, 0, "cryo uname failed: {}", cryo.stderr_str());
    let (n, c) = (native.stdout_str(), cryo.stdout_str());
    assert!(
        c.contains(" 4.4.0 "),
        "cryo's uname -a should show release 4.4.0: {c:?}"
    );
    let fields = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let (nf, cf) = (fields(&n), fields(&c));
    assert_eq!(
        cf.first(),
        nf.first(),
        "sysname differs: native {n:?}, cryo {c:?}"
    );
    // The last two fields are machine and operating system ("x86_64 GNU/Linux").
    assert_eq!(
        cf[cf.len().saturating_sub(2)..],
        nf[nf.len().saturating_sub(2)..],
        "machine/OS differ: native {n:?}, cryo {c:?}"
    );
}

#[test]
fn id() {
    same("/usr/bin/id", &[]);
}

#[test]
fn seq_1_1000() {
    same("/usr/bin/seq", &["1", "1000"]);
}

#[test]
fn wc_l_passwd() {
    same("/usr/bin/wc", &["-l", "/etc/passwd"]);
}

/// sha256sum of a 10 MB file with deterministic content, created on the
/// host's /tmp before the sandbox starts (so it is in the sandbox's lower layer).
#[test]
fn sha256sum_10mb() {
    let mut file = tempfile::Builder::new()
        .prefix("cryo-sha256-")
        .tempfile_in("/tmp")
        .expect("creating a temp file in /tmp");
    let mut state: u32 = 0x1234_5678;
    let data: Vec<u8> = (0..10_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    file.write_all(&data).expect("writing the temp file");
    file.flush().expect("flushing the temp file");
    let path = file.path().to_str().expect("utf-8 temp path").to_string();
    same("/usr/bin/sha256sum", &[&path]);
}

#[test]
fn od_dev_zero() {
    same("/usr/bin/od", &["-N", "100", "/dev/zero"]);
}

/// `head -c 100 /dev/zero | od`, with the pipe built in Rust: head runs under
/// cryo, its output is fed to a native od, and that is compared with a fully
/// native head | od.
#[test]
fn head_dev_zero_piped_to_od() {
    let native_head = run_native("/usr/bin/head", &["-c", "100", "/dev/zero"], b"");
    let cryo_head = run_cryo("/usr/bin/head", &["-c", "100", "/dev/zero"], b"");
    assert_same(&native_head, &cryo_head);
    let native = run_native("/usr/bin/od", &[], &native_head.stdout);
    let mixed = run_native("/usr/bin/od", &[], &cryo_head.stdout);
    assert_same(&native, &mixed);
}

/// Writes to /tmp succeed in the sandbox but never reach the host.
#[test]
fn touch_tmp_stays_in_sandbox() {
    let probe = unique_tmp_path("cryo-tmp-probe");
    let probe_str = probe.to_str().expect("utf-8 probe path");
    let cryo = run_cryo("/usr/bin/touch", &[probe_str], b"");
    let leaked = probe.exists();
    let _ = std::fs::remove_file(&probe);
    assert_eq!(
        cryo.code,
        0,
        "touch in the sandbox failed: {}",
        cryo.stderr_str()
    );
    assert!(
        !leaked,
        "{} appeared on the host: sandbox writes must stay in its upper layer",
        probe.display()
    );
}

/// A guest writes a /tmp file, reads it back within one run and leaves it:
/// the host must not see it afterwards.
#[test]
fn tmp_file_roundtrip_stays_in_sandbox() {
    let bin = guest("tmp_roundtrip", Libc::Glibc);
    let path = unique_tmp_path("cryo-tmp-roundtrip");
    let path_str = path.to_str().expect("utf-8 path");
    let cryo = Invocation::new(&bin).args([path_str]).cryo();
    let leaked = path.exists();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        cryo.stdout_str(),
        "read_back=27 match=1\nexists=1\n",
        "stderr: {}",
        cryo.stderr_str()
    );
    assert_eq!(cryo.code, 0);
    assert!(!leaked, "{} appeared on the host", path.display());
}

/// The sandbox's /proc/kallsyms (if it has one) must not expose the host
/// kernel's symbols: either `cat` fails, or none of its lines is a line of
/// the host's /proc/kallsyms (with or without real addresses).
#[test]
fn kallsyms_not_leaked() {
    let cryo = run_cryo("/bin/cat", &["/proc/kallsyms"], b"");
    let out = cryo.stdout_str();
    for marker in [" T _text", " T startup_64", "startup_64"] {
        assert!(
            !out.contains(marker),
            "sandbox /proc/kallsyms shows host kernel symbol {marker:?}"
        );
    }
    if let Ok(host) = std::fs::read_to_string(Path::new("/proc/kallsyms")) {
        let host: HashSet<&str> = host.lines().filter(|l| !l.trim().is_empty()).collect();
        let leaked: Vec<&str> = out.lines().filter(|l| host.contains(l)).take(5).collect();
        assert!(
            leaked.is_empty(),
            "sandbox /proc/kallsyms repeats host lines, e.g. {leaked:?}"
        );
    }
}

/// Sanity check of this file's assumptions on the host, needing no cryo:
/// every program used above exists and behaves natively as expected.
#[test]
fn host_programs_present() {
    for p in [
        "/bin/echo",
        "/bin/true",
        "/bin/false",
        "/bin/ls",
        "/bin/cat",
        "/usr/bin/env",
        "/bin/uname",
        "/usr/bin/id",
        "/usr/bin/seq",
        "/usr/bin/wc",
        "/usr/bin/sha256sum",
        "/usr/bin/od",
        "/usr/bin/head",
        "/usr/bin/touch",
    ] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing on this host (coreutils)"
        );
    }
    let od = run_native("/usr/bin/od", &["-N", "100", "/dev/zero"], b"");
    assert_eq!(od.stdout_str(), "0000000 000000 000000 000000 000000 000000 000000 000000 000000\n*\n0000140 000000 000000\n0000144\n");
}
