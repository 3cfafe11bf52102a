//! tmpfs across checkpoint and restore, end to end: the `tmpfs_state` guest
//! fills the sandbox's /tmp (the overlay's tmpfs upper layer), `cryo
//! checkpoint` freezes it, `cryo restore` continues it, and the restored
//! guest re-reads what it wrote.
//!
//! The sizes prove where file contents travel: tmpfs pages live in the
//! memory file, so they go through the memory section (zero pages skipped,
//! zstd-compressed) rather than as raw bytes in the kernel section. A 64 MiB
//! file of zeros makes a statefile of well under 2 MiB; 64 MiB of text one
//! far under 64 MiB. A directory chain 20,000 deep is saved and restored
//! (the saved tree is a flat table, so neither side recurses). A shared
//! mapping of a /dev/shm file is the file's own pages, before and after a
//! restore: what the mapping writes read(2) sees at once, and the reverse.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cryo_tests::sandbox::{checkpoint, Sandbox, Scratch, STATEFILE};
use cryo_tests::{guest, run_cryo_cli, Libc};

/// Writing 64 MiB (or 20,000 directories) under ptrace on a busy machine.
const START: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(60);

/// The first report line of a `tmpfs_state` sandbox.
fn first_report(sb: &mut Sandbox) -> String {
    sb.wait_lines(1, START);
    sb.lines()[0].clone()
}

fn tmpfs_guest() -> PathBuf {
    guest("tmpfs_state", Libc::Glibc)
}

/// The value of `key=` in a report line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// What `cryo inspect` says of a statefile: where the bytes went.
#[derive(Debug)]
struct Layout {
    /// The kernel section's uncompressed length (the tmpfs table is in it).
    kernel_bytes: u64,
    /// The memory image's length and its non-zero pages.
    memory_bytes: u64,
    present_pages: u64,
}

fn inspect(statefile: &Path) -> Layout {
    let out = run_cryo_cli(&[OsString::from("inspect"), statefile.into()]);
    assert_eq!(out.code, 0, "cryo inspect: {}", out.stderr_str());
    let text = out.stdout_str();
    let kernel_bytes = text
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // "kernel" or "kernel/<name>": the kernel-state section.
            let kernel = w
                .first()
                .is_some_and(|n| *n == "kernel" || n.starts_with("kernel/"));
            (kernel && w.len() >= 4).then(|| w[3].parse().ok())?
        })
        .unwrap_or_else(|| panic!("no kernel section in:\n{text}"));
    // "memory/memory-file: N bytes, P pages of 4096: X present, Y zero ..."
    let mem = text
        .lines()
        .find(|l| l.starts_with("memory/memory-file:"))
        .unwrap_or_else(|| panic!("no memory summary in:\n{text}"));
    let words: Vec<&str> = mem.split_whitespace().collect();
    let before = |word: &str| -> u64 {
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("no {word:?} in {mem:?}"));
        words[i - 1]
            .parse()
            .unwrap_or_else(|_| panic!("bad number in {mem:?}"))
    };
    Layout {
        kernel_bytes,
        memory_bytes: before("bytes"),
        present_pages: before("present"),
    }
}

/// Runs the guest in `mode` until its first report, checkpoints it (the
/// sandbox exits 0), restores it under a new id and returns (first report,
/// first report after the restore, statefile size, where the bytes went).
fn round_trip(mode: &str) -> (String, String, u64, Layout) {
    let s = Scratch::new("cryo-tmpfs-");
    let root = s.root();
    let img = s.path("img");
    let prog = tmpfs_guest();
    let mut sb = Sandbox::run(&root, "T", &prog, &[mode]).failing_on("CHECK FAILED");
    let before = first_report(&mut sb);
    // The guest sleeps a second between reports: checkpoint it now, while
    // it is asleep (for the chain: with no directory of it open).
    let out = checkpoint(&root, &img, "T", &[]);
    assert_eq!(
        out.code,
        0,
        "cryo checkpoint ({mode}): stderr {}",
        out.stderr_str()
    );
    let code = sb.wait_exit(EXIT);
    assert_eq!(
        code,
        0,
        "cryo do ({mode}) after checkpoint: stderr {}",
        sb.stderr_str()
    );
    let size = std::fs::metadata(img.join(STATEFILE))
        .unwrap_or_else(|e| panic!("statefile of {mode}: {e}"))
        .len();
    let layout = inspect(&img.join(STATEFILE));
    let mut restored = Sandbox::restore(&root, &img, "T2").failing_on("CHECK FAILED");
    // A report that was under way at the checkpoint may finish first; every
    // report re-reads the state, so any of them tells.
    let after = first_report(&mut restored);
    (before, after, size, layout)
}

#[test]
fn zero_file_costs_no_statefile_space() {
    let (before, after, size, layout) = round_trip("zeros");
    assert_eq!(field(&before, "size"), (64u64 << 20).to_string());
    // FNV-1a of 64 MiB of zeros, as the guest computes it natively too.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..(64u64 << 20) {
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let zeros_sum = format!("{h:016x}");
    assert_eq!(field(&before, "sum"), zeros_sum, "{before}");
    assert!(
        size < 2 << 20,
        "a 64 MiB file of zeros in /tmp made a {size}-byte statefile (want < 2 MiB)"
    );
    // The file's pages are memory-file pages (all zero, so skipped), not
    // bytes in the kernel section.
    assert!(layout.kernel_bytes < 1 << 20, "{layout:?}");
    assert!(layout.memory_bytes >= 64 << 20, "{layout:?}");
    assert!(layout.present_pages < 1024, "{layout:?}");
    assert_eq!(field(&after, "sum"), zeros_sum, "after restore: {after}");
    assert_eq!(field(&after, "size"), field(&before, "size"));
}

#[test]
fn text_file_is_compressed_and_survives() {
    let (before, after, size, layout) = round_trip("text");
    assert_eq!(field(&before, "size"), (64u64 << 20).to_string());
    assert!(
        size < 16 << 20,
        "64 MiB of text in /tmp made a {size}-byte statefile (want < 16 MiB: compressed like memory)"
    );
    // The text travelled as memory pages, the kernel section holds only
    // where they are.
    assert!(layout.kernel_bytes < 1 << 20, "{layout:?}");
    assert!(layout.present_pages >= 16384, "{layout:?}");
    assert_eq!(
        field(&after, "sum"),
        field(&before, "sum"),
        "checksum changed across restore: before {before:?}, after {after:?}"
    );
    assert_eq!(field(&after, "size"), field(&before, "size"));
}

#[test]
fn shared_mapping_of_shm_file_stays_coherent() {
    let (before, after, _, _) = round_trip("shm");
    for (when, line) in [("before", &before), ("after restore", &after)] {
        assert_eq!(field(line, "map"), "mapped", "{when}: {line}");
        assert_eq!(
            field(line, "file"),
            "mapped",
            "{when}: read(2) does not see the mapping's write: {line}"
        );
        assert_eq!(field(line, "mapsees"), "wrote", "{when}: {line}");
        assert_eq!(field(line, "coherent"), "1", "{when}: {line}");
    }
}

#[test]
fn deep_directory_chain_survives() {
    let (before, after, _, layout) = round_trip("deep");
    // 20,000 small records, no contents.
    assert!(layout.kernel_bytes < 4 << 20, "{layout:?}");
    assert_eq!(field(&before, "depth"), "20000", "{before}");
    assert_eq!(field(&before, "marker"), "bottom", "{before}");
    assert_eq!(field(&after, "depth"), "20000", "after restore: {after}");
    assert_eq!(field(&after, "marker"), "bottom", "after restore: {after}");
}

// ---- size and inode limits -------------------------------------------

fn limit_guest() -> PathBuf {
    guest("tmpfs_limit", Libc::Glibc)
}

fn output_of(mut cmd: std::process::Command, what: &str) -> cryo_tests::Output {
    cryo_tests::isolate(&mut cmd);
    let o = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    cryo_tests::Output {
        code: cryo_tests::exit_code(o.status),
        stdout: o.stdout,
        stderr: o.stderr,
    }
}

/// The `tmpfs_limit` guest on a tmpfs mounted with size=1m,nr_inodes=64:
/// natively inside `unshare -m` (the test runs as root), and under cryo as
/// an OCI bundle's tmpfs mount with those options among mount flags. Every
/// statfs total, free count and errno is compared: writes stop at 1 MiB
/// with ENOSPC, fallocate past it fails and takes nothing, truncate-extend
/// is free, every new node and every hard link takes an inode, and the
/// last close (not the last unlink) of an open file gives its inode back.
#[test]
fn oci_tmpfs_size_and_inode_limits_match_linux() {
    let prog = limit_guest();
    let s = Scratch::new("cryo-tmpfs-limit-");
    let mnt = s.path("native-mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut native = std::process::Command::new("unshare");
    native.args([
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs -o size=1m,nr_inodes=64 none \"$1\" && exec \"$2\" \"$1\"",
        "sh",
    ]);
    native.arg(&mnt).arg(&prog);
    let native = output_of(native, "native under unshare -m");
    assert_eq!(native.code, 0, "native: {}", native.stderr_str());

    let bundle = s.path("bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    std::fs::copy(&prog, bundle.join("rootfs/guest")).unwrap();
    let root = s.root();
    let mut spec = cryo_tests::sandbox::cryo_command(&root);
    spec.args(["spec", "--bundle"]).arg(&bundle);
    let o = output_of(spec, "cryo spec");
    assert_eq!(o.code, 0, "cryo spec: {}", o.stderr_str());
    let path = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["root"]["readonly"] = false.into();
    v["process"]["terminal"] = false.into();
    v["process"]["args"] = serde_json::json!(["/guest", "/lim"]);
    v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
        "destination": "/lim", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1m", "nr_inodes=64", "mode=1777"]
    }));
    std::fs::write(&path, v.to_string()).unwrap();
    let mut run = cryo_tests::sandbox::cryo_command(&root);
    run.args(["run", "--bundle"]).arg(&bundle).arg("lim");
    let cryo = output_of(run, "cryo run");
    assert_eq!(cryo.code, 0, "cryo run: {}", cryo.stderr_str());
    assert_eq!(
        cryo.stdout_str(),
        native.stdout_str(),
        "cryo stderr: {}",
        cryo.stderr_str()
    );
    assert!(native
        .stdout_str()
        .contains("files until full: 62 errno=ENOSPC"));

    // A bad size= refuses the bundle, naming the option.
    v["mounts"].as_array_mut().unwrap().last_mut().unwrap()["options"] =
        serde_json::json!(["size=1q"]);
    std::fs::write(&path, v.to_string()).unwrap();
    let mut run = cryo_tests::sandbox::cryo_command(&root);
    run.args(["run", "--bundle"]).arg(&bundle).arg("bad");
    let bad = output_of(run, "cryo run (bad size)");
    assert_ne!(bad.code, 0);
    assert!(bad.stderr_str().contains("size=1q"), "{}", bad.stderr_str());
}

/// `df` inside `cryo do --memory 64M`: /dev/shm has Linux's default limits
/// of half of the sandbox's memory (32 MiB, 8,192 inodes, the root's one
/// used), and the root's upper layer is bounded by all of it.
#[test]
fn df_shows_the_default_limits() {
    let s = Scratch::new("cryo-tmpfs-df-");
    let root = s.root();
    let mut cmd = cryo_tests::sandbox::cryo_command(&root);
    cmd.args([
        "do", "--memory", "64M", "--", "/bin/df", "-k", "/dev/shm", "/",
    ]);
    let o = output_of(cmd, "cryo do df -k");
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let out = o.stdout_str();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!((rows[0][1], rows[0][5]), ("32768", "/dev/shm"), "{out}");
    assert_eq!((rows[1][1], rows[1][5]), ("65536", "/"), "{out}");
    let mut cmd = cryo_tests::sandbox::cryo_command(&root);
    cmd.args(["do", "--memory", "64M", "--", "/bin/df", "-i", "/dev/shm"]);
    let o = output_of(cmd, "cryo do df -i");
    assert_eq!(o.code, 0, "{}", o.stderr_str());
    let out = o.stdout_str();
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..4], ["8192", "1", "8191"], "{out}");
}

/// A full /dev/shm (the default limit of `cryo do --memory 64M`, 32 MiB)
/// is checkpointed and restored: the limit and the usage come back (the
/// usage counted from the restored files), so it stays full; deleting the
/// file frees its space, and filling again stops at the same size.
#[test]
fn a_full_tmpfs_stays_full_across_restore() {
    let s = Scratch::new("cryo-tmpfs-full-");
    let root = s.root();
    let img = s.path("img");
    let prog = limit_guest();
    let mut cmd = cryo_tests::sandbox::cryo_command(&root);
    cmd.args(["do", "--id", "F", "--memory", "64M", "--"])
        .arg(&prog)
        .args(["/dev/shm", "fill"]);
    let mut sb = Sandbox::spawn(cmd, "cryo do tmpfs_limit fill").failing_on("CHECK FAILED");
    sb.wait_lines(3, START);
    let before = sb.lines().to_vec();
    let out = checkpoint(&root, &img, "F", &[]);
    assert_eq!(out.code, 0, "cryo checkpoint: {}", out.stderr_str());
    assert_eq!(sb.wait_exit(EXIT), 0, "{}", sb.stderr_str());
    assert_eq!(
        before[1],
        format!("fill big: total={} last=-1 errno=ENOSPC", 32u64 << 20)
    );
    assert!(before[2].contains("blocks=8192 bfree=0 "), "{before:?}");
    let mut restored = Sandbox::restore(&root, &img, "F2").failing_on("CHECK FAILED");
    assert_eq!(restored.wait_exit(START), 0, "{}", restored.stderr_str());
    let after = restored.lines().to_vec();
    assert_eq!(
        after,
        [
            before[2].replace("full:", "restored:"),
            "append after restore: ret=-1 errno=ENOSPC".to_string(),
            before[0].replace("fresh:", "deleted:"),
            before[1].replace("big", "again"),
        ],
        "{}",
        restored.stderr_str()
    );
}
