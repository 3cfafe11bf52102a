//! The vDSO: found and used by glibc and musl programs, static and
//! dynamic, like Linux's (outputs compared with a native run); its calls do
//! not trap (counted in `--strace` output, with the fallback mode as the
//! proof that the count would see them); and its clock goes on across a
//! checkpoint and a restore into a new Sentry, never back, without
//! counting the time frozen. Every test runs on the platform
//! `CRYO_TEST_PLATFORM` names.

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use cryo_tests::sandbox::{
    assert_ok, checkpoint, cryo_command, cryo_command_on, platform_args, skip, Sandbox, Scratch,
    NO_ARGS,
};
use cryo_tests::{assert_same, guest, run_cryo_cli, target_dir, Invocation, Libc, Output};

/// The vdso guest built dynamically with `compiler` (gcc: glibc's ld.so;
/// musl-gcc: musl's), which the sandbox runs with the host's own libc.
fn dynamic_guest(compiler: &str, suffix: &str) -> PathBuf {
    let src = cryo_tests::guests_src_dir().join("vdso.c");
    let dir = target_dir().join("guests");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("vdso.dynamic{suffix}"));
    let tmp = dir.join(format!(".vdso.dynamic{suffix}.{}.tmp", std::process::id()));
    let r = Command::new(compiler)
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e} (run tests/scripts/deps.sh)"));
    assert!(
        r.status.success(),
        "{compiler} failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

fn compare(bin: PathBuf) {
    let inv = Invocation::new(bin);
    let native = inv.native();
    assert_eq!(native.code, 0, "native run failed: {}", native.stderr_str());
    assert!(
        native.stdout_str().contains("AT_SYSINFO_EHDR_found=1"),
        "{}",
        native.stdout_str()
    );
    assert_same(&native, &inv.cryo());
}

#[test]
fn glibc_dynamic_guest_finds_and_uses_the_vdso() {
    compare(dynamic_guest("gcc", ""));
}

#[test]
fn musl_dynamic_guest_finds_and_uses_the_vdso() {
    compare(dynamic_guest("musl-gcc", ".musl"));
}

/// `cryo do [--strace] -- vdso_calls N` (libc's clock_gettime,
/// gettimeofday, time and sched_getcpu, N times each), with `env` for the
/// sandbox.
fn vdso_calls(libc: Libc, n: u32, env: &[(&str, &str)]) -> Output {
    let bin = guest("vdso_calls", libc);
    let mut args: Vec<String> = platform_args();
    args.extend(["do".into(), "--strace".into(), "--".into()]);
    args.push(bin.display().to_string());
    args.push(n.to_string());
    if env.is_empty() {
        return run_cryo_cli(&args);
    }
    // run_cryo_cli clears the environment: the knob goes to the Sentry
    // through a wrapper that sets it.
    let mut wrapped: Vec<String> = vec!["env".into()];
    wrapped.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    wrapped.push(cryo_tests::cryo_bin().display().to_string());
    wrapped.extend(args);
    let mut cmd = Command::new(&wrapped[0]);
    cmd.args(&wrapped[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    let out = cmd.output().expect("running env cryo");
    Output {
        code: cryo_tests::exit_code(out.status),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// How many of the strace lines (`[ tid] name(...) = ...`) are `name`.
fn traced(out: &Output, name: &str) -> usize {
    let call = format!("] {name}(");
    out.stderr_str()
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(&call))
        .count()
}

fn assert_no_trap(libc: Libc) {
    const N: u32 = 1000;
    let out = vdso_calls(libc, N, &[]);
    assert_eq!(out.code, 0, "vdso_calls: {}", out.stderr_str());
    assert_eq!(out.stdout_str(), format!("calls={N} ok=1\n"));
    assert_eq!(
        traced(&out, "exit_group"),
        1,
        "no strace output to count in: {}",
        out.stderr_str()
    );
    for name in ["clock_gettime", "gettimeofday", "time", "getcpu"] {
        assert_eq!(traced(&out, name), 0, "{name} trapped under {libc:?}");
    }
    // The count sees trapped calls: in fallback mode every clock read is
    // a system call.
    let fallback = vdso_calls(libc, N, &[("CRYO_VDSO_FALLBACK", "1")]);
    assert_eq!(fallback.code, 0, "fallback: {}", fallback.stderr_str());
    assert_eq!(fallback.stdout_str(), format!("calls={N} ok=1\n"));
    let clock_reads = traced(&fallback, "clock_gettime")
        + traced(&fallback, "gettimeofday")
        + traced(&fallback, "time");
    assert!(
        clock_reads >= 3 * N as usize,
        "fallback mode trapped only {clock_reads} clock reads of {}",
        3 * N
    );
}

#[test]
fn glibc_vdso_calls_do_not_trap() {
    if !host_tsc_invariant() {
        skip("vdso: this host has no invariant TSC, so the vDSO traps by design");
        return;
    }
    assert_no_trap(Libc::Glibc);
}

#[test]
fn musl_vdso_calls_do_not_trap() {
    if !host_tsc_invariant() {
        skip("vdso: this host has no invariant TSC, so the vDSO traps by design");
        return;
    }
    assert_no_trap(Libc::Musl);
}

/// What the Sentry checks before it runs its clocks on the TSC.
fn host_tsc_invariant() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo.contains(" constant_tsc") && cpuinfo.contains(" nonstop_tsc")
}

#[derive(Debug, Clone, Copy)]
struct Tick {
    n: i64,
    mono: i64,
    back: i64,
    worst_ns: i64,
}

fn tick(line: &str) -> Tick {
    let field = |name: &str| -> i64 {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in ckpt_vdso line {line:?}"))
    };
    Tick {
        n: field("n"),
        mono: field("mono"),
        back: field("back"),
        worst_ns: field("worst_ns"),
    }
}

fn assert_forward(what: &str, ticks: &[Tick]) {
    for w in ticks.windows(2) {
        assert!(
            w[1].n == w[0].n + 1 && w[1].mono >= w[0].mono,
            "{what}: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    for t in ticks {
        assert_eq!(
            t.back, 0,
            "{what}: the vDSO clock went back, by up to {} ns: {t:?}",
            t.worst_ns
        );
    }
}

/// Runs `ckpt_vdso` with `run` (a `cryo --root ROOT …` command),
/// checkpoints it, waits 2 s and restores it with `restore` (the same
/// kind of command, for `restore --image-path IMG --id W`): its readings
/// never went back (the guest counts every read against the one before,
/// across the restore too) and moved on by much less than the pause.
fn vdso_clock_across_restore(s: &Scratch, run: Command, mut restore: Command) {
    const PAUSE: Duration = Duration::from_secs(2);
    const MOST: i64 = 1_000_000_000;
    const WAIT: Duration = Duration::from_secs(20);
    let bin = guest("ckpt_vdso", Libc::Glibc);
    let mut a = Sandbox::run_with(run, "V", &bin, NO_ARGS).failing_on("CHECK FAILED");
    a.wait_lines(3, WAIT);
    let img = s.path("img");
    assert_ok(&checkpoint(&s.root(), &img, "V", &[]), "cryo checkpoint V");
    let checkpointed = Instant::now();
    assert_eq!(
        a.wait_exit(WAIT),
        0,
        "ckpt_vdso after checkpoint: {}",
        a.stderr_str()
    );
    let before: Vec<Tick> = a.lines().iter().map(|l| tick(l)).collect();
    assert_forward("before the checkpoint", &before);
    let last = *before.last().expect("lines before the checkpoint");

    thread::sleep(PAUSE.saturating_sub(checkpointed.elapsed()));
    restore
        .arg("restore")
        .arg("--image-path")
        .arg(&img)
        .args(["--id", "W"]);
    let mut b = Sandbox::spawn(restore, "cryo restore of ckpt_vdso").failing_on("CHECK FAILED");
    b.wait_lines(3, WAIT);
    let after: Vec<Tick> = b.lines()[..3].iter().map(|l| tick(l)).collect();
    assert_eq!(
        after[0].n,
        last.n + 1,
        "the restored guest goes on where it was"
    );
    assert_forward("after the restore", &after);
    let moved = after[0].mono - last.mono;
    assert!(
        moved >= 0,
        "the vDSO clock went back by {} ns across the restore",
        -moved
    );
    assert!(
        moved < MOST,
        "the vDSO clock jumped forward by {moved} ns across a {PAUSE:?} pause"
    );
    b.kill();
}

#[test]
fn vdso_clock_continues_across_checkpoint_and_restore() {
    // A new Sentry: new clock parameters (its own calibration, another
    // offset to the host's clock), a new data page.
    let s = Scratch::new("cryo-vdso-");
    vdso_clock_across_restore(&s, cryo_command(&s.root()), cryo_command(&s.root()));
}

#[test]
fn vdso_clock_continues_onto_a_host_without_tsc_clocks() {
    // Restored where the clocks cannot run on the TSC (as on a host
    // without an invariant TSC; forced here): the same vDSO code, at the
    // same address, finds the fallback mode in the new data page and
    // makes the system call, and the clock still goes on.
    let s = Scratch::new("cryo-vdso-");
    let mut restore = cryo_command(&s.root());
    restore.env("CRYO_VDSO_FALLBACK", "1");
    vdso_clock_across_restore(&s, cryo_command(&s.root()), restore);
}

#[test]
fn vdso_clock_continues_from_a_fallback_host_onto_a_tsc_one() {
    let s = Scratch::new("cryo-vdso-");
    let mut run = cryo_command(&s.root());
    run.env("CRYO_VDSO_FALLBACK", "1");
    vdso_clock_across_restore(&s, run, cryo_command(&s.root()));
}

#[test]
fn vdso_clock_continues_across_platforms() {
    // Checkpointed on one platform, restored on the other, both ways.
    for (from, to) in [("systrap", "ptrace"), ("ptrace", "systrap")] {
        let s = Scratch::new("cryo-vdso-");
        vdso_clock_across_restore(
            &s,
            cryo_command_on(&s.root(), from),
            cryo_command_on(&s.root(), to),
        );
    }
}

/// `cryo doctor` says whether the sandbox's clocks run on the TSC: they do
/// exactly when the host has an invariant TSC, which Linux shows as the
/// constant_tsc and nonstop_tsc flags of /proc/cpuinfo.
#[test]
fn doctor_says_whether_the_vdso_runs_on_the_tsc() {
    let out = run_cryo_cli(&["doctor"]);
    assert_eq!(out.code, 0, "{}", out.stdout_str());
    let text = out.stdout_str();
    let line = text
        .lines()
        .find(|l| l.get(7..).is_some_and(|r| r.starts_with("vdso ")))
        .unwrap_or_else(|| panic!("no vdso line:\n{text}"));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let invariant = flags.split_whitespace().any(|f| f == "constant_tsc")
        && flags.split_whitespace().any(|f| f == "nonstop_tsc");
    assert_eq!(
        line.starts_with("ok "),
        invariant,
        "{line} (host flags: {flags})"
    );
}
