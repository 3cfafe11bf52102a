//! Hostile guests on the systrap platform (tests/guests/hostile_stub.c):
//! a guest that scribbles over its shared context, jumps into the stub
//! code, or rt_sigreturns through the stub with a forged frame is killed
//! with a clear message, and never gets a host syscall (the mkdir it aims
//! at the host never happens); asking the Sentry to remap the stub page
//! gets an errno and leaves it intact. cryo itself exits normally (no
//! Sentry crash).

use cryo_tests::sandbox::{platform_runs_here, Scratch};
use cryo_tests::{guest, run_cryo_cli, Libc};

fn run(mode: &str, marker: &std::path::Path) -> cryo_tests::Output {
    let program = guest("hostile_stub", Libc::Glibc);
    let out = run_cryo_cli(&[
        "--platform",
        "systrap",
        "do",
        "--",
        program.to_str().unwrap(),
        mode,
        marker.to_str().unwrap(),
    ]);
    assert!(
        out.stdout_str().starts_with("stub found\n"),
        "{mode}: the guest found the stub region: {} / {}",
        out.stdout_str(),
        out.stderr_str()
    );
    assert!(!marker.exists(), "{mode}: the guest made a host syscall");
    let err = out.stderr_str();
    assert!(
        !err.contains("panicked"),
        "{mode}: the Sentry crashed: {err}"
    );
    out
}

#[test]
fn attacks_on_the_stub_kill_the_sandbox() {
    if !platform_runs_here("systrap") {
        return;
    }
    let s = Scratch::new("cryo-hostile-systrap-");
    for (mode, why) in [
        ("scribble", "slot state 0x41414141"),
        ("jump", "killed by signal 31"),
        ("sigreturn", "killed by signal 31"),
    ] {
        let marker = s.path(&format!("made-by-{mode}"));
        let out = run(mode, &marker);
        assert_ne!(out.code, 0, "{mode}: the sandbox was not killed");
        let err = out.stderr_str();
        assert!(
            err.contains("stub") && err.contains(why),
            "{mode}: a clear message naming the stub ({why}): {err}"
        );
        assert_eq!(
            out.stdout_str(),
            "stub found\n",
            "{mode}: nothing ran after the attack"
        );
    }
}

#[test]
fn remapping_the_stub_page_is_refused() {
    if !platform_runs_here("systrap") {
        return;
    }
    let s = Scratch::new("cryo-hostile-systrap-");
    let out = run("remap", &s.path("unused"));
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    let stdout = out.stdout_str();
    assert!(stdout.contains("mprotect=-1 ENOMEM"), "{stdout}");
    assert!(stdout.contains("mmap_fixed=failed ENOMEM"), "{stdout}");
    assert!(stdout.ends_with("stub intact\n"), "{stdout}");
}
