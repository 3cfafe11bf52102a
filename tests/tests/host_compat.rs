//! Hosts differ (DESIGN.md "Hosts differ: VA bits, page size, CPU
//! features"; issue 15): a statefile records the highest address its
//! application used, its page size and the CPU features it saw, and a
//! restore onto a host that cannot hold it is refused naming why.
//!
//! The smaller host is simulated (`CRYO_SIMULATE_HOST_VA_BITS`,
//! `CRYO_SIMULATE_HOST_CPU`: restore's checks see a 39-bit host, or this
//! CPU cut down to x86-64-v2). The guest (tests/guests/cpuid.c) executes
//! cpuid itself and prints what it and its libraries (libgcc's
//! `__builtin_cpu_supports`, glibc's IFUNC features) concluded, the auxv's
//! hwcaps and /proc/cpuinfo's flags: under `--cpu-features=host` exactly
//! what Linux shows it, under a profile the masked bits.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cryo_tests::sandbox::{
    assert_no_record, assert_ok, assert_only_statefile, assert_refused, checkpoint, cryo_cli,
    cryo_command, Sandbox, Scratch, REFUSED, STATEFILE,
};
use cryo_tests::{guest, run_cryo_cli, run_native, Libc, Output};

const START: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);
/// How many ticks the checkpointed guests print in all (100 ms apart).
const TICKS: u32 = 30;
/// Lines of the guest's report before its ticks.
const REPORT_LINES: usize = 13;

fn cpuid_guest() -> PathBuf {
    guest("cpuid", Libc::Glibc)
}

/// Says "SKIPPED: why" on stderr and records it in
/// `<target>/tmp/skipped.log`, which tests/scripts/test.sh reports.
fn skipped(why: &str) {
    use std::io::Write;
    let msg = format!("SKIPPED: {why}");
    eprintln!("{msg}");
    let dir = cryo_tests::target_dir().join("tmp");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skipped.log"))
        .and_then(|mut f| writeln!(f, "{msg}"))
        .unwrap_or_else(|e| panic!("{msg} — and cannot record it: {e}"));
}

/// Whether this host can intercept cpuid (as `cryo doctor` says); if not,
/// a profile other than `host` must be refused, and the caller checks that
/// instead.
fn cpuid_faulting_here() -> bool {
    let out = run_cryo_cli(&["doctor"]);
    let doctor = out.stdout_str();
    let line = doctor
        .lines()
        .find(|l| l.contains("cpuid faulting"))
        .unwrap_or_else(|| panic!("cryo doctor says nothing of cpuid faulting:\n{doctor}"))
        .to_string();
    if line.starts_with("ok ") {
        return true;
    }
    skipped(&format!(
        "the masked-cpuid checks need CPUID faulting: {}",
        line.trim()
    ));
    false
}

/// `cryo [--cpu-features P] do -- cpuid ARGS` to completion.
fn cryo_report(root: &Path, profile: Option<&str>, args: &[&str]) -> Output {
    let program = cpuid_guest();
    let mut all: Vec<&OsStr> = Vec::new();
    if let Some(p) = profile {
        all.extend([OsStr::new("--cpu-features"), OsStr::new(p)]);
    }
    all.extend([OsStr::new("do"), OsStr::new("--cwd"), OsStr::new("/")]);
    all.push(OsStr::new("--"));
    all.push(program.as_os_str());
    all.extend(args.iter().map(OsStr::new));
    cryo_cli(root, &all)
}

/// The value of `key=` on the report line starting with `line`.
fn field(report: &str, line: &str, key: &str) -> String {
    let l = report
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{report}"));
    l.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {l:?}"))
        .to_string()
}

fn hex(report: &str, line: &str, key: &str) -> u64 {
    let v = field(report, line, key);
    u64::from_str_radix(&v, 16).unwrap_or_else(|_| panic!("{line} {key}={v:?}: not hex"))
}

fn bit(report: &str, line: &str, key: &str) -> bool {
    match field(report, line, key).as_str() {
        "0" => false,
        "1" => true,
        v => panic!("{line} {key}={v:?}: not 0 or 1"),
    }
}

/// The host as the guest sees it natively.
fn native_report() -> String {
    let out = run_native(cpuid_guest(), &[], b"");
    assert_eq!(out.code, 0, "native cpuid: {}", out.stderr_str());
    out.stdout_str()
}

#[test]
fn host_profile_cpuid_is_linuxs() {
    let s = Scratch::new("cryo-hostcpu-");
    let root = s.root();
    let native = native_report();
    for profile in [None, Some("host")] {
        let out = cryo_report(&root, profile, &[]);
        assert_ok(&out, &format!("cryo do cpuid ({profile:?})"));
        assert_eq!(
            out.stdout_str(),
            native,
            "--cpu-features={profile:?}: cpuid, hwcaps or cpuinfo differ from Linux's"
        );
    }
}

/// What a masked report must show: each bit no more than the host's, the
/// level's own features on, the rest (as far as the report shows) off.
fn check_masked(profile: &str, report: &str, native: &str) {
    for (line, key) in [
        ("cpuid 0x1:", "ecx"),
        ("cpuid 0x1:", "edx"),
        ("cpuid 0x7.0:", "ebx"),
        ("cpuid 0x7.0:", "ecx"),
        ("cpuid 0x7.0:", "edx"),
        ("cpuid 0xd.0:", "eax"),
        ("cpuid 0x80000001:", "ecx"),
        ("cpuid 0x80000001:", "edx"),
    ] {
        let (masked, host) = (hex(report, line, key), hex(native, line, key));
        assert_eq!(
            masked & !host,
            0,
            "{profile}: {line} {key} {masked:#x} shows bits the host lacks ({host:#x})"
        );
    }
    // The vendor and family are the host's.
    assert_eq!(
        report.lines().next(),
        native.lines().next(),
        "{profile}: leaf 0"
    );
    assert_eq!(
        field(report, "cpuid 0x1:", "eax"),
        field(native, "cpuid 0x1:", "eax")
    );
    // AT_HWCAP is leaf 1 EDX, as cpuid says.
    assert_eq!(
        hex(report, "hwcap=", "hwcap"),
        hex(report, "cpuid 0x1:", "edx"),
        "{profile}: AT_HWCAP"
    );
    assert_eq!(
        field(report, "arch_prctl ", "get_cpuid"),
        "1",
        "{profile}: ARCH_GET_CPUID"
    );
    // No level shows FSGSBASE.
    assert_eq!(hex(report, "hwcap=", "hwcap2"), 0, "{profile}: AT_HWCAP2");
    let level = match profile {
        "x86-64" => 1,
        "x86-64-v2" => 2,
        "x86-64-v3" => 3,
        _ => 4,
    };
    let avx2 = level >= 3;
    let avx512 = level >= 4;
    let sse42 = level >= 2;
    // cpuid itself, libgcc, glibc (what its IFUNCs pick by) and procfs
    // agree.
    for key in ["cpuid", "gcc", "glibc"] {
        assert_eq!(bit(report, "avx2 ", key), avx2, "{profile}: avx2 {key}");
    }
    assert_eq!(bit(report, "thread ", "avx2"), avx2, "{profile}: a thread");
    assert_eq!(bit(report, "avx ", "cpuid"), avx2, "{profile}: avx");
    assert_eq!(bit(report, "avx ", "glibc"), avx2, "{profile}: avx glibc");
    assert_eq!(bit(report, "cpuinfo ", "avx2"), avx2, "{profile}: cpuinfo");
    assert_eq!(
        bit(report, "cpuinfo ", "sse4_2"),
        sse42,
        "{profile}: cpuinfo"
    );
    assert_eq!(
        bit(report, "cpuinfo ", "avx512f"),
        avx512,
        "{profile}: cpuinfo"
    );
    for key in ["cpuid", "glibc"] {
        assert_eq!(
            bit(report, "sse4_2 ", key),
            sse42,
            "{profile}: sse4_2 {key}"
        );
        assert_eq!(
            bit(report, "avx512f ", key),
            avx512,
            "{profile}: avx512f {key}"
        );
    }
    // XSAVE components: x87 and SSE, AVX from v3, AVX-512's from v4.
    let xcr0 = hex(report, "cpuid 0xd.0:", "eax");
    let allowed = match level {
        1 | 2 => 0x3,
        3 => 0x7,
        _ => 0xe7,
    };
    assert_eq!(xcr0 & !allowed, 0, "{profile}: leaf 0xd.0 eax {xcr0:#x}");
    // Nothing beyond what psABI's levels name: no AES, RDRAND, SHA.
    let ecx1 = hex(report, "cpuid 0x1:", "ecx");
    assert_eq!(ecx1 & (1 << 25 | 1 << 30), 0, "{profile}: aes/rdrand shown");
}

#[test]
fn a_profile_masks_what_the_sandbox_sees() {
    let s = Scratch::new("cryo-maskcpu-");
    let root = s.root();
    if !cpuid_faulting_here() {
        let out = cryo_report(&root, Some("x86-64-v2"), &[]);
        assert_refused(
            out.code,
            &out.stderr_str(),
            "--cpu-features=x86-64-v2 without CPUID faulting",
            &["cpuid"],
        );
        return;
    }
    let native = native_report();
    let host_avx2 = bit(&native, "avx2 ", "cpuid");
    let host_avx512 = bit(&native, "avx512f ", "cpuid");
    for profile in ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"] {
        let out = cryo_report(&root, Some(profile), &[]);
        let lacks = match profile {
            "x86-64-v3" => (!host_avx2).then_some("avx2"),
            "x86-64-v4" => (!host_avx512).then_some("avx512f"),
            _ => None,
        };
        if let Some(missing) = lacks {
            // A level this CPU does not reach is refused by name.
            assert_refused(
                out.code,
                &out.stderr_str(),
                &format!("--cpu-features={profile} on a smaller CPU"),
                &[missing, profile],
            );
            continue;
        }
        assert_ok(&out, &format!("cryo --cpu-features={profile} do cpuid"));
        check_masked(profile, &out.stdout_str(), &native);
    }
}

#[test]
fn bad_cpu_feature_flags_are_refused() {
    let s = Scratch::new("cryo-badcpu-");
    let root = s.root();
    let out = cryo_report(&root, Some("pentium4"), &[]);
    assert_refused(
        out.code,
        &out.stderr_str(),
        "--cpu-features=pentium4",
        &["pentium4", "x86-64-v2"],
    );
    let img = s.path("img");
    let out = cryo_cli(
        &root,
        &[
            OsStr::new("--cpu-features"),
            OsStr::new("x86-64-v2"),
            OsStr::new("restore"),
            OsStr::new("--image-path"),
            img.as_os_str(),
        ],
    );
    assert_refused(
        out.code,
        &out.stderr_str(),
        "--cpu-features on restore",
        &["--cpu-features", "statefile"],
    );
}

/// Runs `cpuid MODE TICKS` as sandbox `id` (booted with `profile`) until it
/// has printed its report and `ticks` ticks, checkpoints it into `img`
/// (the sandbox exits) and returns what it printed.
fn run_and_checkpoint(
    root: &Path,
    img: &Path,
    id: &str,
    profile: Option<&str>,
    mode: &str,
) -> Vec<String> {
    let mut cmd = cryo_command(root);
    if let Some(p) = profile {
        cmd.args(["--cpu-features", p]);
    }
    let mut a =
        Sandbox::run_with(cmd, id, &cpuid_guest(), &[mode, &TICKS.to_string()]).failing_on("CHECK");
    let extra = usize::from(mode == "high");
    a.wait_lines(REPORT_LINES + extra + 3, START);
    assert_ok(&checkpoint(root, img, id, &[]), &format!("checkpoint {id}"));
    assert_eq!(a.wait_exit(EXIT), 0, "{id}: {}", a.stderr_str());
    assert_only_statefile(img);
    a.lines().to_vec()
}

/// `cryo restore` of `img` as `id`, its checks seeing the host `simulate`
/// says (pairs of CRYO_SIMULATE_HOST_* variables).
fn restore_on(root: &Path, img: &Path, id: &str, simulate: &[(&str, &str)]) -> Sandbox {
    let mut cmd: Command = cryo_command(root);
    for (k, v) in simulate {
        cmd.env(k, v);
    }
    cmd.arg("restore")
        .arg("--image-path")
        .arg(img)
        .args(["--id", id]);
    Sandbox::spawn(
        cmd,
        format!("cryo restore --image-path {} ({simulate:?})", img.display()),
    )
}

/// The restore is refused: exit 125, one line naming `needles`, nothing
/// printed, nothing left running or recorded.
fn assert_refused_on(root: &Path, img: &Path, simulate: &[(&str, &str)], needles: &[&str]) {
    let what = format!("restore on {simulate:?}");
    let mut r = restore_on(root, img, "R", simulate);
    let code = r.wait_exit(EXIT);
    assert_refused(code, &r.stderr_str(), &what, needles);
    assert!(r.lines().is_empty(), "{what}: printed {:?}", r.lines());
    r.assert_group_gone();
    assert_no_record(root, "R");
}

/// The restored sandbox goes on ticking from after `before`'s last tick to
/// [`TICKS`], with cpuid still answering `avx2`.
fn assert_continues(mut r: Sandbox, before: &[String], avx2: bool) {
    let code = r.wait_exit(EXIT);
    assert_eq!(code, 0, "{}: {}", r.what(), r.stderr_str());
    let last = before
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("tick="))
        .and_then(|t| t.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no tick before the checkpoint: {before:?}"));
    let want: Vec<String> = (last + 1..=TICKS)
        .map(|i| format!("tick={i} avx2={}", u8::from(avx2)))
        .collect();
    assert_eq!(r.lines(), &want[..], "{}: after the restore", r.what());
}

fn inspect(img: &Path) -> String {
    let out = run_cryo_cli(&[OsStr::new("inspect"), img.join(STATEFILE).as_os_str()]);
    assert_ok(&out, "cryo inspect");
    out.stdout_str()
}

/// The line of `cryo inspect` starting with `prefix` (after indentation).
fn inspect_line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in cryo inspect:\n{text}"))
}

const VA39: (&str, &str) = ("CRYO_SIMULATE_HOST_VA_BITS", "39");
const CPU_V2: (&str, &str) = ("CRYO_SIMULATE_HOST_CPU", "x86-64-v2");

#[test]
fn the_default_layout_restores_on_a_39_bit_host() {
    let s = Scratch::new("cryo-va39-");
    let root = s.root();
    let img = s.path("img");
    let before = run_and_checkpoint(&root, &img, "A", None, "tick");
    let text = inspect(&img);
    let highest = inspect_line(&text, "highest address:");
    let bits: u32 = highest
        .split("needs ")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no bits in {highest:?}"));
    assert!(
        bits <= 39,
        "the default layout needs {bits} bits: {highest}"
    );
    assert_eq!(inspect_line(&text, "page size:"), "page size: 4096");
    assert!(
        inspect_line(&text, "cpu features (host,").contains(" sse2 "),
        "{text}"
    );
    // The same in `cryo inspect --json`.
    let out = run_cryo_cli(&[
        OsStr::new("inspect"),
        OsStr::new("--json"),
        img.join(STATEFILE).as_os_str(),
    ]);
    assert_ok(&out, "cryo inspect --json");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
    let req = &j["requires"];
    assert_eq!(req["va_bits"], serde_json::json!(bits), "{req}");
    assert_eq!(req["page_size"], 4096, "{req}");
    assert_eq!(req["cpu_profile"], "host", "{req}");
    assert!(
        req["cpu_features"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "sse2")),
        "{req}"
    );
    // A host with 16K pages (arm64 kernels often have them) is refused.
    assert_refused_on(
        &root,
        &img,
        &[("CRYO_SIMULATE_HOST_PAGE_SIZE", "16384")],
        &["4096-byte pages", "16384 bytes"],
    );
    let avx2 = before.iter().any(|l| l.starts_with("avx2 cpuid=1"));
    assert_continues(restore_on(&root, &img, "B", &[VA39]), &before, avx2);
}

#[test]
fn a_mapping_above_2_39_is_refused_on_a_39_bit_host() {
    let s = Scratch::new("cryo-high-");
    let root = s.root();
    let img = s.path("img");
    let before = run_and_checkpoint(&root, &img, "A", None, "high");
    assert!(
        before.iter().any(|l| l == "high=0x10000000000"),
        "{before:?}"
    );
    let text = inspect(&img);
    assert_eq!(
        inspect_line(&text, "highest address:"),
        "highest address: 0x10000001000 (needs 41-bit virtual addresses)"
    );
    assert_refused_on(
        &root,
        &img,
        &[VA39],
        &["0x10000001000", "41-bit", "39 bits"],
    );
    // The statefile itself is fine: this host holds it.
    let avx2 = before.iter().any(|l| l.starts_with("avx2 cpuid=1"));
    assert_continues(restore_on(&root, &img, "B", &[]), &before, avx2);
}

#[test]
fn cpu_features_decide_where_a_statefile_restores() {
    if !cpuid_faulting_here() {
        return;
    }
    let native = native_report();
    if !bit(&native, "avx2 ", "cpuid") {
        skipped("this CPU has no AVX2: a full-feature sandbox restores on x86-64-v2");
        return;
    }
    let s = Scratch::new("cryo-cpuv2-");
    let root = s.root();
    // A sandbox that saw the whole CPU is refused on a v2 host, by name.
    let full = s.path("full");
    run_and_checkpoint(&root, &full, "A", None, "tick");
    let text = inspect(&full);
    assert!(
        inspect_line(&text, "cpu features (host,").contains(" avx2 "),
        "{text}"
    );
    assert_refused_on(&root, &full, &[CPU_V2], &["avx2", "--cpu-features=host"]);
    // The same program booted with x86-64-v2 restores there (and on a
    // 39-bit one at once), seeing v2 still.
    let small = s.path("small");
    let before = run_and_checkpoint(&root, &small, "B", Some("x86-64-v2"), "tick");
    assert!(
        before.iter().any(|l| l == "avx2 cpuid=0 gcc=0 glibc=0"),
        "{before:?}"
    );
    let text = inspect(&small);
    let features = inspect_line(&text, "cpu features (x86-64-v2,");
    assert!(
        features.contains(" sse4_2 ") && !features.contains(" avx2"),
        "{features}"
    );
    // Its glibc took no AVX path: the threads' saved XSAVE state holds x87
    // and SSE only (no AVX component in use).
    assert_eq!(
        inspect_line(&text, "cpu.xfeatures-used:"),
        "cpu.xfeatures-used: 0x3"
    );
    assert_continues(
        restore_on(&root, &small, "C", &[CPU_V2, VA39]),
        &before,
        false,
    );
    // On this (bigger) host too, where cpuid keeps answering v2.
    assert_continues(restore_on(&root, &small, "D", &[]), &before, false);
}

#[test]
fn a_bad_simulation_is_refused() {
    let s = Scratch::new("cryo-badsim-");
    let root = s.root();
    let img = s.path("img");
    run_and_checkpoint(&root, &img, "A", None, "tick");
    let mut r = restore_on(&root, &img, "R", &[("CRYO_SIMULATE_HOST_CPU", "z80")]);
    let code = r.wait_exit(EXIT);
    assert_eq!(code, REFUSED, "{}", r.stderr_str());
    assert_refused(
        code,
        &r.stderr_str(),
        "a bad simulated CPU",
        &["CRYO_SIMULATE_HOST_CPU", "z80"],
    );
}

/// A header edit of a hostile statefile case: its metadata.
type HeaderEdit = fn(&mut BTreeMap<String, String>);
/// A hostile case: what it is, its edit, the simulated host, what the
/// refusal names.
type HostileCase = (
    &'static str,
    HeaderEdit,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
);

#[test]
fn hostile_host_records_are_refused() {
    use sentry::state::hostile::ObjectTable;
    let s = Scratch::new("cryo-hosthostile-");
    let root = s.root();
    let img = s.path("img");
    run_and_checkpoint(&root, &img, "A", None, "high");
    let original = std::fs::read(img.join(STATEFILE)).expect("reading the statefile");
    let table = ObjectTable::from_statefile(&original).expect("its object table");
    let cases: Vec<HostileCase> = vec![
        (
            "cpuid not hex",
            |m| {
                let v = m["cpu.cpuid"].replacen("=0x", "=zz", 1);
                m.insert("cpu.cpuid".into(), v);
            },
            vec![],
            vec!["cpu.cpuid", "not hexadecimal"],
        ),
        (
            "unknown profile",
            |m| {
                m.insert("cpu.profile".into(), "pentium".into());
            },
            vec![],
            vec!["cpu.profile", "pentium"],
        ),
        (
            "every feature bit",
            |m| {
                let v: Vec<String> = m["cpu.cpuid"]
                    .split_whitespace()
                    .map(|w| format!("{}=0xffffffff", w.split('=').next().unwrap_or("")))
                    .collect();
                m.insert("cpu.cpuid".into(), v.join(" "));
            },
            vec![],
            vec!["CPU features this host lacks"],
        ),
        (
            "every XSAVE component",
            |m| {
                m.insert("cpu.xcr0".into(), "0xffffffffffffffff".into());
            },
            vec![],
            vec!["XSAVE component 63"],
        ),
        (
            "highest address not hex",
            |m| {
                m.insert("va.highest-address".into(), "banana".into());
            },
            vec![],
            vec!["va.highest-address", "banana"],
        ),
        (
            "page size not a number",
            |m| {
                m.insert("mm.page-size".into(), "big".into());
            },
            vec![],
            vec!["mm.page-size", "big"],
        ),
        (
            // A header that hides the mapping above 2^39: the address
            // space's own record still refuses it.
            "highest address understated",
            |m| {
                m.insert("va.highest-address".into(), "0x1000".into());
            },
            vec![VA39],
            vec!["0x10000001000", "39-bit"],
        ),
    ];
    for (i, (what, edit, simulate, needles)) in cases.into_iter().enumerate() {
        let dir = s.path(&format!("hostile{i}"));
        std::fs::create_dir_all(&dir).expect("an image directory");
        let bytes = table
            .to_statefile_edited(&original, edit)
            .unwrap_or_else(|e| panic!("{what}: rewriting the statefile: {e}"));
        std::fs::write(dir.join(STATEFILE), bytes).expect("writing the statefile");
        eprintln!("case {what}");
        assert_refused_on(&root, &dir, &simulate, &needles);
    }
}

const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

/// The glibc-hwcaps levels `ld.so --help` calls supported.
fn hwcaps_supported(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Subdirectories of glibc-hwcaps"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.contains("(supported"))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

/// glibc's dynamic loader decides which ISA level's libraries to load
/// (glibc-hwcaps) from cpuid and XGETBV, as its IFUNCs do: under a profile
/// it sees exactly that level, under `host` what it sees natively.
#[test]
fn glibc_hwcaps_follow_the_profile() {
    if !Path::new(LD_SO).exists() {
        panic!("no {LD_SO}: a broken test setup (tests/scripts/deps.sh)");
    }
    let s = Scratch::new("cryo-hwcaps-");
    let root = s.root();
    let native = run_native(LD_SO, &["--help"], b"");
    assert_eq!(native.code, 0, "native ld.so --help");
    let native_levels = hwcaps_supported(&native.stdout_str());
    let run = |profile: &str| {
        cryo_cli(
            &root,
            &[
                "--cpu-features",
                profile,
                "do",
                "--cwd",
                "/",
                "--",
                LD_SO,
                "--help",
            ],
        )
    };
    let host = run("host");
    assert_ok(&host, "ld.so --help under host");
    assert_eq!(
        host.stdout_str(),
        native.stdout_str(),
        "ld.so sees another CPU under --cpu-features=host"
    );
    if !cpuid_faulting_here() {
        return;
    }
    for (profile, level) in [("x86-64", 1), ("x86-64-v2", 2), ("x86-64-v3", 3)] {
        let want: Vec<String> = native_levels
            .iter()
            .filter(|l| {
                l.strip_prefix("x86-64-v")
                    .and_then(|v| v.parse::<u32>().ok())
                    .is_some_and(|v| v <= level)
            })
            .cloned()
            .collect();
        if want.len() < level as usize - 1 {
            skipped(&format!(
                "ld.so natively supports only {native_levels:?}, not {profile}"
            ));
            continue;
        }
        let out = run(profile);
        assert_ok(&out, &format!("ld.so --help under {profile}"));
        assert_eq!(
            hwcaps_supported(&out.stdout_str()),
            want,
            "{profile}: glibc-hwcaps levels ld.so supports"
        );
    }
}

/// Under a profile, every process of the sandbox sees it: a child forked
/// by a shell and a program it executes (a new address space each, a new
/// stub each).
#[test]
fn a_profile_holds_across_fork_and_exec() {
    if !cpuid_faulting_here() {
        return;
    }
    let s = Scratch::new("cryo-forkcpu-");
    let root = s.root();
    let g = cpuid_guest();
    let script = format!(
        "{g} | grep '^avx2 '; ({g} | grep '^avx2 ') & wait",
        g = g.display()
    );
    let out = cryo_cli(
        &root,
        &[
            "--cpu-features",
            "x86-64-v2",
            "do",
            "--cwd",
            "/",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    assert_ok(&out, "sh -c under x86-64-v2");
    assert_eq!(
        out.stdout_str(),
        "avx2 cpuid=0 gcc=0 glibc=0\navx2 cpuid=0 gcc=0 glibc=0\n"
    );
}

/// `--cpu-features` reaches an OCI container's sandbox: `run` in the
/// foreground, and `create` + `start` (the sandbox process `create`
/// leaves boots with it).
#[test]
fn oci_containers_take_the_profile() {
    if !cpuid_faulting_here() {
        return;
    }
    let s = Scratch::new("cryo-ocicpu-");
    let root = s.root();
    let bundle = s.path("bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "tmp", "proc"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("the rootfs");
    }
    std::fs::copy(cpuid_guest(), rootfs.join("bin/cpuid")).expect("the guest in the rootfs");
    let out = cryo_cli(
        &root,
        &[
            OsStr::new("spec"),
            OsStr::new("--bundle"),
            bundle.as_os_str(),
        ],
    );
    assert_ok(&out, "cryo spec");
    let config = bundle.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).expect("config.json")).expect("JSON");
    v["process"]["args"] = serde_json::json!(["/bin/cpuid"]);
    v["root"]["readonly"] = false.into();
    std::fs::write(&config, v.to_string()).expect("writing config.json");
    let avx2_line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("avx2 "))
            .unwrap_or_else(|| panic!("no avx2 line in {text:?}"))
            .to_string()
    };
    let _cleanup = DeleteOnDrop {
        root: root.clone(),
        ids: &["r1", "c1"],
    };
    let b = bundle.as_os_str();
    let run = cryo_cli(
        &root,
        &[
            OsStr::new("--cpu-features"),
            OsStr::new("x86-64-v2"),
            OsStr::new("run"),
            OsStr::new("--bundle"),
            b,
            OsStr::new("r1"),
        ],
    );
    assert_ok(&run, "cryo --cpu-features x86-64-v2 run");
    assert_eq!(avx2_line(&run.stdout_str()), "avx2 cpuid=0 gcc=0 glibc=0");
    // create leaves the sandbox process holding its stdout: a file here.
    let out_path = s.path("create.out");
    let mut create = cryo_command(&root);
    create
        .args(["--cpu-features", "x86-64-v2", "create", "--bundle"])
        .arg(&bundle)
        .arg("c1")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create.out"))
        .stderr(std::fs::File::create(s.path("create.err")).expect("create.err"));
    let created = create.status().expect("cryo create");
    assert!(
        created.success(),
        "cryo create: {}",
        std::fs::read_to_string(s.path("create.err")).unwrap_or_default()
    );
    assert_ok(&cryo_cli(&root, &["start", "c1"]), "cryo start c1");
    let deadline = std::time::Instant::now() + EXIT;
    let text = loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("cpuinfo ")) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "c1 printed only {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(avx2_line(&text), "avx2 cpuid=0 gcc=0 glibc=0");
    assert!(text.contains("cpuinfo avx2=0 sse4_2=1"), "{text}");
}

/// Deletes the containers (`delete --force`) however the test ends, so a
/// failing one leaves no sandbox waiting for `start`.
struct DeleteOnDrop {
    root: PathBuf,
    ids: &'static [&'static str],
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        for id in self.ids {
            let _ = cryo_cli(&self.root, &["delete", "--force", id]);
        }
    }
}
