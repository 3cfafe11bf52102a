//! `cryo restore` of a statefile built to make it decode far more than the
//! file holds: refused quickly, with one clear line, nothing big written
//! under `--root`, and the restore's peak memory small. Two files:
//! - a 1 MB statefile whose kernel section is a zstd bomb (1 GiB of zeros
//!   in ~32 KiB, checksum valid) claiming its full 1 GiB: refused from the
//!   index, nothing decompressed;
//! - a statefile as cryo's own writer makes it of a kernel section of 32 MiB
//!   of zeros (padded to the believable ratio): decoded — at most 32 times
//!   what the file holds — and refused as not a kernel.
//!
//! Peak memory is the largest child's ru_maxrss (getrusage of children):
//! this file holds one test, so the only children are these restores.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::resource::{getrusage, UsageWho};
use statefile::{Compression, Header, SectionKind, Writer, TRAILER_LEN};

const GIB: u64 = 1 << 30;

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// zstd of `len` zeros, produced as a stream.
fn zstd_zeros(len: u64) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    enc.finish().unwrap()
}

fn header() -> Header {
    Header::new(format!("cryo {}", env!("CARGO_PKG_VERSION")))
        .with("container-id", "bomb")
        .with("argv", "[\"/bin/true\"]")
}

/// A statefile whose kernel section (section 0) stores `stored`, marked as
/// zstd claiming `claimed` bytes, index checksum resealed; `filler` bytes of
/// an uncompressed section bring the file to the size of a plausible one.
fn bomb_file(stored: &[u8], claimed: u64, filler: usize) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(SectionKind::Kernel, "", Compression::None, stored)
        .unwrap();
    let noise: Vec<u8> = (0..filler as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    w.write_section(
        SectionKind::Other(0x100),
        "filler",
        Compression::None,
        &noise,
    )
    .unwrap();
    let mut b = w.finish().unwrap();
    // Index entry 0: kind u32, name length u32, name, compression u8,
    // level i32, offset u64, stored u64, uncompressed u64, crc u32.
    let t = b.len() - TRAILER_LEN;
    let io = u64_at(&b, t) as usize;
    let il = u64_at(&b, t + 8) as usize;
    let pos = io + 4;
    let n = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
    assert_eq!(u64_at(&b, pos + 21 + n), stored.len() as u64);
    b[pos + 8 + n] = 1;
    b[pos + 29 + n..pos + 37 + n].copy_from_slice(&claimed.to_le_bytes());
    let crc = crc32fast::hash(&b[io..io + il]);
    b[t + 16..t + 20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// What cryo's own writer makes of a kernel section of `len` zeros.
fn padded_zeros_file(len: usize) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(
        SectionKind::Kernel,
        // The object table's section, so restore decompresses it.
        "objects",
        Compression::Zstd(1),
        &vec![0u8; len],
    )
    .unwrap();
    w.finish().unwrap()
}

fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Restores `statefile` (written into a fresh image directory); returns
/// its one-line error after checking the refusal's shape and traces.
fn restore_refused(scratch: &Path, name: &str, statefile: &[u8]) -> String {
    let img = scratch.join(name);
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join("checkpoint.cryo"), statefile).unwrap();
    let root = scratch.join(format!("{name}-root"));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cryo"))
        .arg("--root")
        .arg(&root)
        .arg("restore")
        .arg("--image-path")
        .arg(&img)
        .args(["--id", "bomb"])
        .stdin(Stdio::null())
        .output()
        .expect("running cryo restore");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    eprintln!("{name}: {took:?}: {stderr}");
    assert_eq!(
        out.status.code(),
        Some(125),
        "{name}: {:?}: {stderr}",
        out.status
    );
    assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    assert!(stderr.starts_with("cryo: "), "{name}: {stderr}");
    let left = bytes_under(&root);
    assert!(left < 64 << 10, "{name}: {left} bytes written under --root");
    stderr
}

#[test]
fn restore_of_decompression_bombs_is_refused_cheaply() {
    let scratch = tempfile::tempdir().unwrap();

    let bomb = zstd_zeros(GIB);
    let file = bomb_file(&bomb, GIB, (1 << 20) - bomb.len());
    assert!(
        (900_000..1_200_000).contains(&file.len()),
        "{} bytes",
        file.len()
    );
    let err = restore_refused(scratch.path(), "gib-claim", &file);
    for needle in [
        "checkpoint.cryo",
        "section kernel",
        "claims 1073741824 bytes",
    ] {
        assert!(err.contains(needle), "should mention {needle:?}: {err}");
    }

    let file = padded_zeros_file(32 << 20);
    // Padded: about 1/32 of the section, not the ~1 KiB zstd makes of it.
    assert!(file.len() > 1_000_000, "{} bytes", file.len());
    let err = restore_refused(scratch.path(), "padded-32mib", &file);
    assert!(err.contains("checkpoint.cryo"), "{err}");

    // ru_maxrss of the largest child, in KiB on Linux.
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    eprintln!("peak RSS of the restores: {peak_kib} KiB");
    assert!(
        peak_kib < 200 << 10,
        "a refused restore used {peak_kib} KiB of memory"
    );
}
