//! `cryo restore --lazy` (sentry/src/mm/lazy.rs): the sandbox resumes
//! before its memory is loaded, each chunk loading on first touch.
//!
//! A `lazy_mem` guest fills 512 MiB with a page-numbered pattern and is
//! checkpointed; its lazy restore runs with `CRYO_TEST_LAZY_HOLD=1`, which
//! holds the background loader, so only what the guest touches is loaded:
//! its first answer (/proc/cryo/lazy as it reads it) must show fewer
//! chunks loaded than there are, and its memory must then check out
//! against the checksum it printed before the checkpoint.

mod lazy_support;

use std::path::Path;
use std::time::Duration;

use cryo_tests::sandbox::{assert_ok, checkpoint, cryo_command, Sandbox, Scratch};
use cryo_tests::{guest, Libc};
use lazy_support::{
    checksum_of, damage_late_chunk, longest_falling_run, progress, working_set, working_set_path,
    Progress,
};

/// The guest size, for the test that shows the answer comes before
/// the memory; the damage test needs only enough chunks to have late ones.
const MIB: u32 = 512;
const DAMAGED_MIB: u32 = 64;
const START: Duration = Duration::from_secs(60);

/// Boots `lazy_mem MIB [STRIDE]`, checkpoints it into `img`; its checksum.
fn boot_and_checkpoint(root: &Path, img: &Path, id: &str, mib: u32) -> String {
    boot_and_checkpoint_with(root, img, id, &[mib.to_string()])
}

fn boot_and_checkpoint_with(root: &Path, img: &Path, id: &str, args: &[String]) -> String {
    let program = guest("lazy_mem", Libc::Glibc);
    let mib = &args[0];
    let mut sb = Sandbox::run(root, id, &program, args).failing_on("CHECK");
    sb.wait_lines(1, START);
    let ready = sb.lines()[0].clone();
    assert!(ready.starts_with(&format!("ready mib={mib} ")), "{ready:?}");
    assert_ok(&checkpoint(root, img, id, &[]), "cryo checkpoint");
    sb.wait_exit(START);
    checksum_of(&ready)
}

/// `cryo restore --lazy` with the background loader held.
fn restore_lazy_held(root: &Path, img: &Path, id: &str) -> Sandbox {
    let mut cmd = cryo_command(root);
    cmd.env("CRYO_TEST_LAZY_HOLD", "1");
    cmd.arg("restore")
        .arg("--lazy")
        .arg("--image-path")
        .arg(img)
        .args(["--id", id]);
    Sandbox::spawn(
        cmd,
        format!("cryo restore --lazy --image-path {}", img.display()),
    )
}

#[test]
fn lazy_restore_answers_before_its_memory_is_loaded_and_its_memory_checks_out() {
    let s = Scratch::new("cryo-lazy");
    let root = s.root();
    let img = s.path("img");
    let sum = boot_and_checkpoint(&root, &img, "lazy-src", MIB);
    let mut sb = restore_lazy_held(&root, &img, "lazy-dst").failing_on("CHECK");
    sb.wait_lines(2, START);
    let first = progress(&sb.lines()[0]);
    let (loaded, all) = (first.loaded, first.chunks);
    assert_eq!(
        (first.prefetched, first.demanded),
        (0, loaded),
        "nothing recorded yet, so nothing prefetched: {first:?}"
    );
    assert!(
        all >= MIB as usize && loaded < all / 2,
        "the first answer came with {loaded} of {all} chunks loaded"
    );
    let verified = sb.lines()[1].clone();
    assert!(verified.starts_with("verified "), "{verified:?}");
    assert_eq!(checksum_of(&verified), sum, "memory after a lazy restore");
    assert_eq!(sb.wait_exit(START), 0, "{}", sb.stderr_str());
}

#[test]
fn a_damaged_late_chunk_stops_a_lazy_restore_when_touched_and_an_eager_one_up_front() {
    let s = Scratch::new("cryo-lazy-damaged");
    let root = s.root();
    let img = s.path("img");
    boot_and_checkpoint(&root, &img, "lazy-dmg-src", DAMAGED_MIB);
    let copy = s.path("damaged");
    let n = damage_late_chunk(&img, &copy);

    // The eager restore refuses the file before anything runs.
    let mut eager = Sandbox::restore(&root, &copy, "lazy-dmg-eager");
    let code = eager.wait_exit(START);
    let err = eager.stderr_str();
    assert!(
        code == 125 && err.contains(&format!("chunk {n}")) && eager.lines().is_empty(),
        "eager restore of a damaged statefile: exit {code}, stdout {:?}, stderr {err}",
        eager.lines()
    );

    // The lazy one runs, answers, and dies when it reaches the chunk,
    // never seeing its bytes.
    let mut lazy = restore_lazy_held(&root, &copy, "lazy-dmg-lazy").failing_on("CHECK");
    let code = lazy.wait_exit(START);
    let err = lazy.stderr_str();
    let lines = lazy.lines().to_vec();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("lazy: loaded ")),
        "the damaged lazy restore did not answer first: {lines:?}\n{err}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("verified")),
        "the guest saw damaged memory as good: {lines:?}"
    );
    assert!(
        code == 125
            && err.contains(&format!("memory chunk {n} "))
            && err.contains("checksum mismatch")
            && err.contains("the sandbox is stopped"),
        "lazy restore of a damaged chunk: exit {code}, stderr {err}"
    );
}

/// The working-set test's guest: small enough that its record (a quarter
/// of its chunks, at least 16) is well short of its memory, and strided
/// reads from the top of its buffer down before it answers.
const WS_MIB: u32 = 64;
const WS_STRIDE: u32 = 8;

/// A held lazy restore of `img` that answers and checks out against `sum`:
/// its first answer and its stderr.
fn restore_and_verify(root: &Path, img: &Path, id: &str, sum: &str) -> (Progress, String) {
    let mut sb = restore_lazy_held(root, img, id).failing_on("CHECK");
    sb.wait_lines(2, START);
    let first = progress(&sb.lines()[0]);
    let verified = sb.lines()[1].clone();
    assert!(verified.starts_with("verified "), "{verified:?}");
    assert_eq!(checksum_of(&verified), sum, "memory after a lazy restore");
    assert_eq!(sb.wait_exit(START), 0, "{}", sb.stderr_str());
    (first, sb.stderr_str())
}

/// Issue 15: a lazy restore records the chunks its sandbox demanded first
/// in the image directory; a second lazy restore of the same statefile
/// loads exactly those before the sandbox resumes, so the guest's first
/// answer (the same reads as before) demands nothing more; a damaged or
/// mismatched record is ignored with a warning, the restore works, and a
/// new record replaces it.
#[test]
fn a_second_lazy_restore_prefetches_the_working_set_the_first_recorded() {
    let s = Scratch::new("cryo-lazy-ws");
    let root = s.root();
    let img = s.path("img");
    let args = [WS_MIB.to_string(), WS_STRIDE.to_string()];
    let sum = boot_and_checkpoint_with(&root, &img, "ws-src", &args);
    let strided = WS_MIB.div_ceil(WS_STRIDE) as usize;

    let (first, err) = restore_and_verify(&root, &img, "ws-1", &sum);
    assert!(
        first.prefetched == 0 && first.demanded >= strided && first.loaded == first.demanded,
        "first restore: {first:?}\n{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    let (id, ws) = working_set(&img);
    assert_eq!(id.chunks as usize, first.chunks, "{id}");
    let limit = sentry::state::working_set::limit(first.chunks);
    // The held loader left every chunk to the guest's demand: the record
    // is full, and begins with what the guest demanded before answering,
    // its strided reads from the top down among them.
    assert_eq!(ws.len(), limit, "{ws:?}");
    assert!(
        first.demanded < limit,
        "the guest demanded {} chunks before answering, a record holds {limit}",
        first.demanded
    );
    assert!(
        longest_falling_run(&ws[..first.demanded]) >= strided,
        "the strided reads are not recorded in their order: {ws:?} ({first:?})"
    );

    let (second, err) = restore_and_verify(&root, &img, "ws-2", &sum);
    assert_eq!(
        second,
        Progress {
            loaded: ws.len(),
            chunks: first.chunks,
            prefetched: ws.len(),
            demanded: 0,
        },
        "the second restore did not prefetch what the first demanded\n{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(
        working_set(&img).1,
        ws,
        "a restore that prefetched rewrote the record"
    );

    // A damaged chunk of the working set: found by the prefetch, before
    // anything runs (the copy has the record too).
    let copy = s.path("damaged");
    let n = lazy_support::damage_chunk(&img, &copy, |_| ws[1] as usize);
    let mut sb = restore_lazy_held(&root, &copy, "ws-dmg");
    let code = sb.wait_exit(START);
    let err = sb.stderr_str();
    assert!(
        code == 125 && sb.lines().is_empty() && err.contains(&format!("memory chunk {n} ")),
        "a damaged prefetched chunk: exit {code}, stdout {:?}, stderr {err}",
        sb.lines()
    );

    // Damaged: ignored, said, and a new record replaces it.
    let path = working_set_path(&img);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (third, err) = restore_and_verify(&root, &img, "ws-3", &sum);
    assert_eq!(third.prefetched, 0, "{third:?}");
    assert!(
        err.contains("working-set.cryo")
            && err.contains("checksum mismatch")
            && err.contains("ignored"),
        "a damaged working set was not reported: {err}"
    );
    let (_, again) = working_set(&img);
    assert_eq!(again.len(), limit);

    // Intact but recorded for another statefile: ignored too.
    let other = sentry::state::working_set::StatefileId {
        digest: id.digest ^ 1,
        ..id
    };
    std::fs::write(&path, sentry::state::working_set::encode(&other, &ws)).unwrap();
    let (fourth, err) = restore_and_verify(&root, &img, "ws-4", &sum);
    assert_eq!(fourth.prefetched, 0, "{fourth:?}");
    assert!(
        err.contains("recorded for another statefile") && err.contains("ignored"),
        "a mismatched working set was not reported: {err}"
    );
}
