//! Memory-section throughput on a realistic 1 GiB image, next to the zstd
//! and gzip command-line tools on the same bytes, in the same run.
//!
//! `cargo bench -p statefile --bench memory` (set CRYO_BENCH_MIB to change
//! the size, CRYO_BENCH_REPS the repetitions).

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use statefile::{Compression, Header, MemoryOptions, OpenOptions, Reader, SectionKind, Writer};

const PAGE: usize = 4096;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "kernel",
    "sandbox",
    "memory",
    "page",
    "file",
    "return",
    "struct",
    "int",
    "void",
    "if",
    "else",
    "for",
    "while",
    "static",
    "const",
    "char",
    "error",
    "value",
    "size",
    "offset",
    "buffer",
    "thread",
    "signal",
    "restore",
    "checkpoint",
    "process",
    "0x7f3a",
    "NULL",
    "{",
    "}",
    "(",
    ");",
    "=",
    "==",
    "+=",
    "->",
    "//",
    "\n",
    "\n    ",
    "\"/usr/lib\"",
    "42",
];

/// Page i: a quarter zero, then text-like (source code, logs, heap strings)
/// and random (compressed or encrypted data, hashes) in a 55:45 mix.
fn fill_page(i: u64, page: &mut [u8]) {
    let h = splitmix(i ^ 0x5eed);
    match h % 100 {
        0..=24 => page.fill(0),
        25..=65 => {
            let mut x = h;
            let mut pos = 0;
            while pos < page.len() {
                x = splitmix(x);
                let w = WORDS[(x % WORDS.len() as u64) as usize].as_bytes();
                let n = w.len().min(page.len() - pos);
                page[pos..pos + n].copy_from_slice(&w[..n]);
                pos += n;
                if pos < page.len() {
                    page[pos] = b' ';
                    pos += 1;
                }
            }
        }
        _ => {
            let mut x = h;
            for c in page.chunks_exact_mut(8) {
                x = splitmix(x);
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
    }
}

fn median_spread(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let s: Vec<f64> = v.iter().map(|d| d.as_secs_f64()).collect();
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn report(what: &str, bytes: u64, times: Vec<Duration>, size: Option<u64>) {
    let (med, min, max) = median_spread(times.clone());
    let gbs = |t: f64| bytes as f64 / t / 1e9;
    print!(
        "{what:<34} {:>6.2} GB/s  (median {:.3}s, min {:.3}s / {:.2} GB/s, max {:.3}s / {:.2} GB/s, n={})",
        gbs(med),
        med,
        min,
        gbs(min),
        max,
        gbs(max),
        times.len()
    );
    if let Some(s) = size {
        print!(
            "  size {:.1} MiB ({:.1}%)",
            s as f64 / 1048576.0,
            s as f64 * 100.0 / bytes as f64
        );
    }
    println!();
}

fn time_cmd(shell: &str) -> Option<Duration> {
    let t = Instant::now();
    let st = Command::new("sh").arg("-c").arg(shell).status().ok()?;
    st.success().then(|| t.elapsed())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn write_once(path: &Path, img: &[u8], compression: Compression) -> Duration {
    let t = Instant::now();
    let f = File::create(path).expect("create");
    let mut w = Writer::new(f, Header::new("cryo bench")).expect("writer");
    w.write_memory(
        "memfile",
        img,
        &MemoryOptions {
            compression,
            ..Default::default()
        },
    )
    .expect("write_memory");
    w.finish().expect("finish");
    t.elapsed()
}

fn read_once(path: &Path, dest: &mut [u8]) -> Duration {
    let t = Instant::now();
    let r =
        Reader::open_with(File::open(path).expect("open"), OpenOptions::default()).expect("reader");
    r.memory("memfile")
        .expect("memory")
        .restore_into(dest)
        .expect("restore");
    t.elapsed()
}

fn main() {
    // `cargo bench` passes --bench; any filter argument is ignored.
    let mib: usize = std::env::var("CRYO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let reps: usize = std::env::var("CRYO_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let len = mib << 20;
    println!(
        "statefile memory bench: {mib} MiB image, {} threads, {reps} repetitions, page cache warm, no fsync",
        rayon::current_num_threads()
    );
    let t = Instant::now();
    let mut img = vec![0u8; len];
    img.par_chunks_mut(PAGE)
        .enumerate()
        .for_each(|(i, p)| fill_page(i as u64, p));
    let zero = img
        .par_chunks(PAGE)
        .filter(|p| p.iter().all(|&b| b == 0))
        .count();
    println!(
        "generated in {:.2}s: {} pages, {} zero ({:.1}%)",
        t.elapsed().as_secs_f64(),
        len / PAGE,
        zero,
        zero as f64 * 100.0 / (len / PAGE) as f64
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = len as u64;
    let mut dest = vec![0u8; len];

    for (label, c) in [
        ("zstd-1 (default)", Compression::default()),
        ("none", Compression::None),
    ] {
        let path = dir
            .path()
            .join(format!("bench-{label}.cryo").replace([' ', '(', ')'], ""));
        let times: Vec<Duration> = (0..reps).map(|_| write_once(&path, &img, c)).collect();
        let size = std::fs::metadata(&path).map(|m| m.len()).ok();
        report(&format!("cryo write {label}"), bytes, times, size);
        let times: Vec<Duration> = (0..reps).map(|_| read_once(&path, &mut dest)).collect();
        report(&format!("cryo read  {label}"), bytes, times, None);
        assert!(dest == img, "restored image differs");
        let r = Reader::open(&path).expect("open");
        let s = r.section(SectionKind::Memory, "memfile").expect("section");
        println!(
            "    chunks: {}, stored {:.1} MiB of {:.1} MiB present",
            r.memory("memfile").expect("memory").chunk_count(),
            s.stored_len as f64 / 1048576.0,
            s.uncompressed_len as f64 / 1048576.0
        );
        std::fs::remove_file(&path).ok();
    }

    // Durable write through Writer::create (fsync + rename), once.
    let path = dir.path().join("atomic.cryo");
    let t = Instant::now();
    let mut w = Writer::create(&path, Header::new("cryo bench")).expect("create");
    w.write_memory("memfile", &img, &MemoryOptions::default())
        .expect("write");
    w.finish().expect("finish");
    report(
        "cryo write zstd-1 + fsync + rename",
        bytes,
        vec![t.elapsed()],
        None,
    );
    std::fs::remove_file(&path).ok();

    let input = dir.path().join("image.bin");
    std::fs::write(&input, &img).expect("write image");
    drop(img);
    let inp = input.display();
    if have("zstd") {
        let out = dir.path().join("image.zst");
        let o = out.display();
        let times: Vec<Duration> = (0..reps)
            .filter_map(|_| time_cmd(&format!("zstd -T0 -1 -q -f {inp} -o {o}")))
            .collect();
        if !times.is_empty() {
            let size = std::fs::metadata(&out).map(|m| m.len()).ok();
            report("zstd -T0 -1 (compress)", bytes, times, size);
            let times: Vec<Duration> = (0..reps)
                .filter_map(|_| time_cmd(&format!("zstd -d -q -f {o} -o {inp}.d")))
                .collect();
            report("zstd -d (decompress)", bytes, times, None);
        }
    } else {
        println!("zstd: skipped (not installed)");
    }
    if have("gzip") {
        let out = dir.path().join("image.gz");
        let times: Vec<Duration> = (0..reps.min(2))
            .filter_map(|_| time_cmd(&format!("gzip -1 -c {inp} > {}", out.display())))
            .collect();
        if !times.is_empty() {
            let size = std::fs::metadata(&out).map(|m| m.len()).ok();
            report("gzip -1 (compress)", bytes, times, size);
        }
    } else {
        println!("gzip: skipped (not installed)");
    }
}
