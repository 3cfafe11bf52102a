//! `cryo restore --lazy` (sentry/src/mm/lazy.rs): the sandbox resumes
//! before its memory is loaded, each chunk loading on first touch.
//!
//! A `lazy_mem` guest fills 512 MiB with a page-numbered pattern and is
//! checkpointed; its lazy restore runs with `CRYO_TEST_LAZY_HOLD=1`, which
//! holds the background loader, so only what the guest touches is loaded:
//! its first answer (/proc/cryo/lazy as it reads it) must show fewer
//! chunks loaded than there are, and its memory must then check out
//! against the checksum it printed before the checkpoint.

use std::path::Path;
use std::time::Duration;

use cryo_tests::sandbox::{assert_ok, checkpoint, cryo_command, Sandbox, Scratch};
use cryo_tests::{guest, Libc};

/// The guest size, for the test that shows the answer comes before
/// the memory; the damage test needs only enough chunks to have late ones.
const MIB: u32 = 512;
const DAMAGED_MIB: u32 = 64;
const START: Duration = Duration::from_secs(60);

fn checksum_of(line: &str) -> String {
    line.split("checksum=")
        .nth(1)
        .unwrap_or_else(|| panic!("no checksum in {line:?}"))
        .trim()
        .to_string()
}

/// Boots `lazy_mem MIB`, checkpoints it into `img`; its checksum.
fn boot_and_checkpoint(root: &Path, img: &Path, id: &str, mib: u32) -> String {
    let program = guest("lazy_mem", Libc::Glibc);
    let mut sb = Sandbox::run(root, id, &program, &[mib.to_string()]).failing_on("CHECK");
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
    let first = sb.lines()[0].clone();
    let nums: Vec<usize> = first
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        first.starts_with("lazy: loaded ") && nums.len() == 2,
        "first answer {first:?}"
    );
    let (loaded, all) = (nums[0], nums[1]);
    assert!(
        all >= MIB as usize && loaded < all / 2,
        "the first answer came with {loaded} of {all} chunks loaded"
    );
    let verified = sb.lines()[1].clone();
    assert!(verified.starts_with("verified "), "{verified:?}");
    assert_eq!(checksum_of(&verified), sum, "memory after a lazy restore");
    assert_eq!(sb.wait_exit(START), 0, "{}", sb.stderr_str());
}

/// Flips one stored byte of a late chunk (three quarters in: inside the
/// guest's buffer, which is most of the image) of the memory image in a copy
/// of `img` (the index and header checksums still pass: only the chunk's
/// own checksum notices). The damaged chunk's number.
fn damage_late_chunk(img: &Path, copy: &Path) -> usize {
    std::fs::create_dir_all(copy).expect("creating the copy's directory");
    let from = img.join(cryo_tests::sandbox::STATEFILE);
    let to = copy.join(cryo_tests::sandbox::STATEFILE);
    std::fs::copy(&from, &to).expect("copying the statefile");
    let (n, at) = {
        let reader = statefile::Reader::open(&to).expect("opening the copy");
        let memory = reader
            .memory(sentry::state::MEMORY_SECTION)
            .expect("its memory section");
        let n = memory.chunk_count() * 3 / 4;
        let info = memory.chunk_info(n).expect("a late chunk");
        (n, info.file_offset + info.stored_len / 2)
    };
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&to)
        .expect("opening the copy for writing");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("reading the byte");
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).expect("damaging the byte");
    n
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
