//! Real golden statefiles: `data/real-guest-vN.cryo`, each written by
//! `cryo checkpoint` of the static guest `guests/golden_counter.c` running
//! under `cryo do`, restored here with today's code. The restored program
//! must print exactly `data/real-guest-vN.expect`: the lines a native run
//! prints for the ticks after the checkpoint (memory checksums, the tmpfs
//! files' content re-read by path and through an fd kept open, bytes left
//! unread in a pipe, a SIGUSR1 handler and the signal mask).
//!
//! The statefile holds the guest's memory, so the program that runs is the
//! one in the statefile, not a rebuild; but pages of the executable it never
//! touched are still read from the file it was started from, which the
//! restore re-opens by path and fingerprint. So each golden file comes with
//! that executable (`data/real-guest-vN.golden_counter`) and a manifest
//! naming where in the sandbox it must be (`place PATH FILE`); the test
//! puts it there first. A fingerprint is size + crc32 of the content (no
//! inode, no mtime), so a copy in a fresh checkout matches.
//!
//! `every_saved_type_version_is_in_a_real_golden_statefile` holds the rule
//! of golden/README.md: each (type, version) the code saves today and the
//! statefile format version must appear in at least one committed golden
//! statefile. A version bump without a new golden file fails there.
//!
//! A new golden file: `CRYO_NEW_REAL_GOLDEN=1 cargo test -p cryo-golden
//! --test real_guest -- --ignored regenerate_real_guest` (writes the next
//! `vN`, never replaces one).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cryo_golden::data_dir;
use cryo_tests::sandbox::{assert_ok, checkpoint, skip, Sandbox, Scratch, STATEFILE};
use cryo_tests::{diff, BASE_ENV};
use statefile::{TypeVisitor, Versioned};

/// The guest waits this long between ticks; the generator checkpoints once
/// it has printed this tick.
const CHECKPOINT_AFTER_TICK: u64 = 13;
/// Ticks of expected output after the checkpoint.
const EXPECT_TICKS: u64 = 16;
/// Where the guest keeps its files in the sandbox (tmpfs: the overlay's
/// upper layer, and /dev/shm).
const TMP_FILE: &str = "/tmp/cryo-golden-counter.tmp";
const SHM_FILE: &str = "/dev/shm/cryo-golden-counter.shm";
const START: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The committed files

/// One real golden statefile and what comes with it.
struct Golden {
    version: u32,
    statefile: PathBuf,
    expect: PathBuf,
    manifest: Manifest,
}

/// `data/real-guest-vN.manifest`: `place SANDBOX-PATH DATA-FILE` lines (the
/// files the restore re-opens and where), `last-tick N` (the last tick the
/// guest printed before the checkpoint); `#` comments.
#[derive(Debug, Default)]
struct Manifest {
    places: Vec<(PathBuf, PathBuf)>,
    last_tick: Option<u64>,
}

fn parse_manifest(path: &Path) -> Manifest {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut m = Manifest::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["place", to, from] => {
                let to = PathBuf::from(to);
                assert!(
                    to.is_absolute(),
                    "{}:{}: place path must be absolute",
                    path.display(),
                    i + 1
                );
                m.places.push((to, data_dir().join(from)));
            }
            ["last-tick", n] => m.last_tick = n.parse().ok(),
            _ => panic!("{}:{}: cannot parse {line:?}", path.display(), i + 1),
        }
    }
    m
}

fn name(version: u32, ext: &str) -> String {
    format!("real-guest-v{version}.{ext}")
}

/// Every `data/real-guest-vN.cryo`, by N.
fn goldens() -> Vec<Golden> {
    let mut versions: Vec<u32> = std::fs::read_dir(data_dir())
        .expect("golden/data")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_prefix("real-guest-v")?
                .strip_suffix(".cryo")?
                .parse()
                .ok()
        })
        .collect();
    versions.sort_unstable();
    versions
        .into_iter()
        .map(|v| Golden {
            version: v,
            statefile: data_dir().join(name(v, "cryo")),
            expect: data_dir().join(name(v, "expect")),
            manifest: parse_manifest(&data_dir().join(name(v, "manifest"))),
        })
        .collect()
}

/// Puts a copy of `from` at `to` (mode 0755), atomically: a concurrent
/// test placing the same bytes, or a sandbox already reading the old copy,
/// sees a whole file either way. An identical file already there is kept.
fn place(to: &Path, from: &Path) {
    let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() == Some(&bytes[..]) {
        return;
    }
    let dir = to.parent().expect("an absolute path has a parent");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tmp = tempfile::Builder::new()
        .prefix(".place-")
        .tempfile_in(dir)
        .unwrap_or_else(|e| panic!("a temporary file in {}: {e}", dir.display()));
    std::fs::write(tmp.path(), &bytes).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp.persist(to)
        .unwrap_or_else(|e| panic!("renaming into {}: {e}", to.display()));
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Restores `statefile` (copied into a fresh image directory) and returns
/// the first `n` lines the restored program prints, or why it did not.
fn restore_lines(statefile: &Path, n: usize, id: &str) -> Result<Vec<String>, String> {
    let scratch = Scratch::new("cryo-golden-");
    let img = scratch.path("img");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::copy(statefile, img.join(STATEFILE))
        .unwrap_or_else(|e| panic!("{}: {e}", statefile.display()));
    let mut r = Sandbox::restore(&scratch.root(), &img, id);
    let got = r.try_wait_for(START, |l| l.len() >= n);
    let status = r.try_status();
    let stderr = r.kill_and_stderr();
    let lines = r.lines();
    if !got {
        return Err(format!(
            "cryo restore {}: {} of {n} lines, exit status {status:?}; last lines {:?}; stderr:\n{stderr}",
            statefile.display(),
            lines.len(),
            &lines[lines.len().saturating_sub(3)..]
        ));
    }
    Ok(lines[..n].to_vec())
}

/// Restores golden file `g` and compares its continuation with `.expect`.
fn check_golden(g: &Golden) -> Result<(), String> {
    for (to, from) in &g.manifest.places {
        place(to, from);
    }
    let expect = read_lines(&g.expect);
    if expect.is_empty() {
        return Err(format!("{} is empty", g.expect.display()));
    }
    let got = restore_lines(
        &g.statefile,
        expect.len(),
        &format!("golden-real-v{}", g.version),
    )?;
    if got != expect {
        return Err(format!(
            "{}: the restored guest's output differs from {} (- expected, + restored):\n{}",
            g.statefile.display(),
            g.expect.display(),
            diff(expect.join("\n").as_bytes(), got.join("\n").as_bytes())
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn real_guest_statefiles_restore_and_continue_exactly() {
    let all = goldens();
    assert!(
        !all.is_empty(),
        "no data/real-guest-v*.cryo: the real golden statefiles are missing"
    );
    let mut failures = Vec::new();
    let mut restored = 0;
    for g in &all {
        assert!(
            !g.manifest.places.is_empty(),
            "real-guest-v{}: the manifest places no executable",
            g.version
        );
        match check_golden(g) {
            Ok(()) => {
                restored += 1;
                eprintln!(
                    "real-guest-v{}: restored, {} lines as expected",
                    g.version,
                    read_lines(&g.expect).len()
                )
            }
            // A statefile records the CPU features its program saw, and a
            // host without one of them refuses it (the refusal is the
            // product working): such a golden file is restored on hosts
            // like the one that made it, and skipped here, saying so.
            Err(e) if e.contains(FOREIGN_CPU) => skip(&format!(
                "real-guest-v{} was made on a CPU with features this host lacks: {}",
                g.version,
                e.lines().find(|l| l.contains(FOREIGN_CPU)).unwrap_or(&e)
            )),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        restored > 0,
        "no real golden statefile could be restored on this host"
    );
}

/// What a restore says when the statefile needs CPU features this host
/// does not have (sentry/src/state/restore.rs).
const FOREIGN_CPU: &str = "the application saw CPU features this host lacks";

/// The expected lines themselves: they continue right after the saved tick
/// and exercise every kind of state (a `.expect` that lost them would make
/// the restore test weaker without failing it).
#[test]
fn expected_continuations_cover_every_kind_of_state() {
    for g in goldens() {
        let expect = read_lines(&g.expect);
        let last = g
            .manifest
            .last_tick
            .unwrap_or_else(|| panic!("real-guest-v{}: no last-tick", g.version));
        let first = expect.first().map(|l| tick_of(l));
        assert_eq!(
            first,
            Some(Some(last + 1)),
            "real-guest-v{}: {} does not start at tick {}",
            g.version,
            g.expect.display(),
            last + 1
        );
        for kind in [
            " mem=",
            " tmp size=",
            " shm size=",
            " pipe=",
            " signal handled=",
        ] {
            assert!(
                expect.iter().filter(|l| l.contains(kind)).count() >= 2,
                "real-guest-v{}: fewer than two {kind:?} lines in {}",
                g.version,
                g.expect.display()
            );
        }
        assert!(
            !expect.iter().any(|l| l.contains("BROKEN")),
            "real-guest-v{}: the expected output reports a broken invariant",
            g.version
        );
    }
}

/// The `N` of `tick N …`.
fn tick_of(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.split(' ').next()?.parse().ok()
}

struct Collect(BTreeMap<&'static str, u32>);

impl TypeVisitor for Collect {
    fn visit<T: Versioned>(&mut self, _nested: &[&'static str]) -> bool {
        self.0.insert(T::TYPE_NAME, T::VERSION).is_none()
    }
}

#[test]
fn every_saved_type_version_is_in_a_real_golden_statefile() {
    let mut now = Collect(BTreeMap::new());
    sentry::state::types::visit_saved_types(&mut now);
    assert!(now.0.len() > 10, "too few saved types found: {:?}", now.0);
    let mut covered: BTreeSet<(String, u32)> = BTreeSet::new();
    let mut formats = BTreeSet::new();
    for g in goldens() {
        let r = statefile::Reader::open(&g.statefile)
            .unwrap_or_else(|e| panic!("{}: {e}", g.statefile.display()));
        formats.insert(r.format_version());
        covered.extend(r.types().iter().map(|(n, v)| (n.to_string(), v)));
    }
    let missing: Vec<String> = now
        .0
        .iter()
        .filter(|(n, v)| !covered.contains(&(n.to_string(), **v)))
        .map(|(n, v)| format!("{n} v{v}"))
        .collect();
    assert!(
        missing.is_empty(),
        "no committed real golden statefile holds {}: add one (golden/README.md: \
         CRYO_NEW_REAL_GOLDEN=1 cargo test -p cryo-golden --test real_guest -- --ignored regenerate_real_guest)",
        missing.join(", ")
    );
    assert!(
        formats.contains(&statefile::FORMAT_VERSION),
        "no committed real golden statefile has format version {} (they have {formats:?}): add one (golden/README.md)",
        statefile::FORMAT_VERSION
    );
}

#[test]
fn v1_thread_groups_migrate_with_no_interval_timer_armed() {
    // kernel.ThreadGroup v2 added the interval timers; a v1 record (every
    // statefile before them) loads through the migration with none armed.
    use sentry::kernel::itimer::ITimersRecord;
    use sentry::kernel::thread_group::ThreadGroupRecord;
    use sentry::kernel::KernelRecord;
    use sentry::state::hostile::ObjectTable;
    let v1 = data_dir().join(name(1, "cryo"));
    let bytes = std::fs::read(&v1).unwrap_or_else(|e| panic!("{}: {e}", v1.display()));
    let r = statefile::Reader::open(&v1).unwrap_or_else(|e| panic!("{}: {e}", v1.display()));
    assert_eq!(
        r.types().get("kernel.ThreadGroup"),
        Some(1),
        "real-guest-v1 holds the v1 layout"
    );
    let table = ObjectTable::from_statefile(&bytes).expect("real-guest-v1's object table");
    let kernel: KernelRecord = table.get(0).expect("the kernel record");
    assert!(!kernel.thread_groups.is_empty());
    for tgid in kernel.thread_groups {
        let tg: ThreadGroupRecord = table
            .get(tgid as u64)
            .unwrap_or_else(|e| panic!("thread group {tgid} of real-guest-v1: {e}"));
        assert_eq!(tg.tgid, tgid);
        assert_eq!(tg.itimers, ITimersRecord::default(), "thread group {tgid}");
        assert!(tg.itimers.check().is_ok());
    }
}

#[test]
fn v1_mm_records_migrate_to_one_backing_run_per_mapping() {
    // mm.MemoryManager v2 (mm.MmState v2, mm.Vma v3) moved each VMA's
    // memory-file offset into a backing map; a v1 record (every statefile
    // before fork) loads with each non-direct VMA backed by one run at its
    // old offset, and validates as such.
    use sentry::kernel::thread_group::ThreadGroupRecord;
    use sentry::kernel::KernelRecord;
    use sentry::mm::MmRecord;
    use sentry::state::hostile::ObjectTable;
    for version in [1, 2] {
        let path = data_dir().join(name(version, "cryo"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r =
            statefile::Reader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            r.types().get("mm.MemoryManager"),
            Some(1),
            "{}",
            path.display()
        );
        let table = ObjectTable::from_statefile(&bytes).expect("the object table");
        let kernel: KernelRecord = table.get(0).expect("the kernel record");
        for tgid in kernel.thread_groups {
            let tg: ThreadGroupRecord = table.get(tgid as u64).expect("thread group");
            let mm: MmRecord = table.get(tg.mm).expect("the migrated mm record");
            let backed: Vec<_> = mm.mm.vmas.iter().filter(|v| !v.direct).collect();
            assert!(!backed.is_empty());
            assert_eq!(backed.len(), mm.mm.backing.len(), "one run per mapping");
            for (v, b) in backed.iter().zip(&mm.mm.backing) {
                assert_eq!((v.start, v.end), (b.start, b.end));
                assert_eq!(v.mf_offset, 0, "the offset moved to the backing run");
                assert!(!v.dontfork && !v.wipeonfork);
            }
        }
        sentry::state::hostile::restore_validate(&bytes)
            .unwrap_or_else(|e| panic!("{} does not validate: {e}", path.display()));
    }
}

// ---------------------------------------------------------------------------
// The generator

/// Builds the guest, runs it under `cryo do`, checkpoints it after tick
/// [`CHECKPOINT_AFTER_TICK`], and writes the next `data/real-guest-vN.*`:
/// the statefile, the executable, the manifest and the lines a native run
/// prints for the [`EXPECT_TICKS`] ticks after the checkpoint. Then
/// restores what it wrote, as the test does, and removes it again if that
/// fails. Never replaces a file.
#[test]
#[ignore]
fn regenerate_real_guest() {
    // Not CRYO_REGENERATE_GOLDEN: `-- --ignored regenerate` with that set
    // rewrites the synthetic files and must not add a real one on the way.
    if std::env::var_os("CRYO_NEW_REAL_GOLDEN").is_none() {
        eprintln!("SKIPPED: set CRYO_NEW_REAL_GOLDEN=1 to add the next golden/data/real-guest-vN");
        return;
    }
    let version = goldens().last().map_or(1, |g| g.version + 1);
    let out = |ext: &str| data_dir().join(name(version, ext));
    for ext in ["cryo", "expect", "manifest", "golden_counter"] {
        assert!(
            !out(ext).exists(),
            "{} exists: golden files are never replaced",
            out(ext).display()
        );
    }
    let scratch = Scratch::new("cryo-golden-gen-");

    // The guest, static against musl (small, and no glibc start-up
    // differences between hosts).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/golden_counter.c");
    let built = scratch.path("golden_counter");
    let cc = Command::new("musl-gcc")
        .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&built)
        .arg(&src)
        .output()
        .expect("musl-gcc (tests/scripts/deps.sh installs musl-tools)");
    assert!(
        cc.status.success(),
        "musl-gcc failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let exe = PathBuf::from(format!(
        "/tmp/cryo-golden/real-guest-v{version}/golden_counter"
    ));
    place(&exe, &built);

    // Under cryo, checkpointed after tick CHECKPOINT_AFTER_TICK.
    let root = scratch.root();
    let id = format!("golden-gen-v{version}");
    let mut run = Sandbox::run(&root, &id, &exe, &["-1", TMP_FILE, SHM_FILE]);
    let mark = format!("tick {CHECKPOINT_AFTER_TICK} mem=");
    if !run.try_wait_for(START, |l| l.iter().any(|l| l.starts_with(&mark))) {
        let err = run.kill_and_stderr();
        panic!(
            "the guest under cryo did not reach tick {CHECKPOINT_AFTER_TICK}: {:?}; stderr:\n{err}",
            run.lines()
        );
    }
    let img = scratch.path("img");
    assert_ok(&checkpoint(&root, &img, &id, &[]), "cryo checkpoint");
    let code = run.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 0, "cryo do after the checkpoint");
    let before = run.lines().to_vec();
    let last_tick = before
        .iter()
        .rev()
        .find_map(|l| tick_of(l))
        .expect("the guest printed ticks");

    // The same program natively, through the ticks after the checkpoint.
    let native = Command::new(&exe)
        .arg((last_tick + 1 + EXPECT_TICKS).to_string())
        .arg(scratch.path("native.tmp"))
        .arg(scratch.path("native.shm"))
        .env_clear()
        .envs(BASE_ENV.iter().copied())
        .output()
        .unwrap();
    assert!(native.status.success(), "the native run failed");
    let native: Vec<String> = String::from_utf8(native.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        &native[..before.len()],
        &before[..],
        "the guest under cryo printed what a native run does not"
    );
    let expect = &native[before.len()..];

    std::fs::copy(img.join(STATEFILE), out("cryo")).unwrap();
    std::fs::copy(&built, out("golden_counter")).unwrap();
    std::fs::write(out("expect"), expect.join("\n") + "\n").unwrap();
    std::fs::write(
        out("manifest"),
        format!(
            "# Written by regenerate_real_guest (golden/tests/real_guest.rs) with {}.\n\
             # The guest golden/guests/golden_counter.c, static against musl, ran as\n\
             #   {} -1 {TMP_FILE} {SHM_FILE}\n\
             # and was checkpointed after tick {last_tick}.\n\
             place {} {}\n\
             last-tick {last_tick}\n",
            env!("CARGO_PKG_VERSION"),
            exe.display(),
            exe.display(),
            name(version, "golden_counter"),
        ),
    )
    .unwrap();
    let g = goldens()
        .into_iter()
        .find(|g| g.version == version)
        .expect("the files just written");
    if let Err(e) = check_golden(&g) {
        for ext in ["cryo", "expect", "manifest", "golden_counter"] {
            let _ = std::fs::remove_file(out(ext));
        }
        panic!("the new golden file does not restore (its files were removed again): {e}");
    }
    eprintln!(
        "wrote {} ({} bytes), last tick {last_tick}, {} expected lines",
        out("cryo").display(),
        std::fs::metadata(out("cryo")).unwrap().len(),
        expect.len()
    );
}
