//! What the lazy-restore tests of both forms share (tests/tests/lazy.rs for
//! `cryo restore --lazy`, oci_checkpoint.rs for a container's): reading the
//! lazy_mem guest's lines, damaging a late memory chunk of a statefile, and
//! reading the working set a restore recorded.
#![allow(dead_code)]

use std::path::Path;

/// /proc/cryo/lazy as the lazy_mem guest printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub loaded: usize,
    pub chunks: usize,
    pub prefetched: usize,
    pub demanded: usize,
}

/// `lazy: loaded L of T chunks, prefetched P, demanded D`.
pub fn progress(line: &str) -> Progress {
    let nums: Vec<usize> = line
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        line.starts_with("lazy: loaded ") && nums.len() == 4,
        "not a lazy restore's progress: {line:?}"
    );
    Progress {
        loaded: nums[0],
        chunks: nums[1],
        prefetched: nums[2],
        demanded: nums[3],
    }
}

pub fn checksum_of(line: &str) -> String {
    line.split("checksum=")
        .nth(1)
        .unwrap_or_else(|| panic!("no checksum in {line:?}"))
        .trim()
        .to_string()
}

/// Flips one stored byte of a late chunk (three quarters in: inside the
/// guest's buffer, which is most of the image) of the memory image in a copy
/// of `img` (the index and header checksums still pass: only the chunk's
/// own checksum notices). The damaged chunk's number.
pub fn damage_late_chunk(img: &Path, copy: &Path) -> usize {
    damage_chunk(img, copy, |chunks| chunks * 3 / 4)
}

/// [`damage_late_chunk`] of the chunk `which` picks out of the count.
pub fn damage_chunk(img: &Path, copy: &Path, which: impl Fn(usize) -> usize) -> usize {
    std::fs::create_dir_all(copy).expect("creating the copy's directory");
    for e in std::fs::read_dir(img).expect("reading the image directory") {
        let e = e.expect("an entry");
        std::fs::copy(e.path(), copy.join(e.file_name())).expect("copying the image");
    }
    let to = copy.join(cryo_tests::sandbox::STATEFILE);
    let (n, at) = {
        let reader = statefile::Reader::open(&to).expect("opening the copy");
        let memory = reader
            .memory(sentry::state::MEMORY_SECTION)
            .expect("its memory section");
        let n = which(memory.chunk_count());
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

pub fn working_set_path(img: &Path) -> std::path::PathBuf {
    img.join(sentry::state::working_set::FILE_NAME)
}

/// The working set recorded in `img`: for which statefile, and its chunks.
pub fn working_set(img: &Path) -> (sentry::state::working_set::StatefileId, Vec<u32>) {
    let path = working_set_path(img);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("no working set recorded ({}: {e})", path.display()));
    sentry::state::working_set::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The longest run of strictly falling chunk numbers in `chunks`.
pub fn longest_falling_run(chunks: &[u32]) -> usize {
    let mut best = usize::from(!chunks.is_empty());
    let mut run = best;
    for w in chunks.windows(2) {
        run = if w[1] < w[0] { run + 1 } else { 1 };
        best = best.max(run);
    }
    best
}

/// Waits (bounded) for a working set to appear in `img`: the restored
/// sandbox writes it as its last act once its memory is in, or as it ends.
pub fn wait_for_working_set(img: &Path) {
    let path = working_set_path(img);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no working set recorded in {}",
            img.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
