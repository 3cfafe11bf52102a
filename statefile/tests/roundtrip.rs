//! Writing and reading back: sections, streaming, memory images, atomicity.

use std::io::{Read, Write};

use statefile::*;

fn header() -> Header {
    Header::new("cryo test")
        .with("container-id", "c1")
        .with("created", "0")
}

fn image(pages: usize, ps: usize) -> Vec<u8> {
    // Mixed: zero pages, repetitive pages, pseudo-random pages.
    let mut v = vec![0u8; pages * ps];
    let mut x = 0x9e3779b97f4a7c15u64;
    for (i, page) in v.chunks_mut(ps).enumerate() {
        match i % 4 {
            0 => {}
            1 => page
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = b"hello world "[j % 12]),
            _ => page.iter_mut().for_each(|b| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }),
        }
    }
    v
}

#[test]
fn sections_round_trip_in_memory_sink() {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(
        SectionKind::Kernel,
        "",
        Compression::default(),
        b"kernel bytes",
    )
    .unwrap();
    w.write_section(
        SectionKind::Other(0x100),
        "extra",
        Compression::None,
        b"raw",
    )
    .unwrap();
    let mut s = w
        .section(SectionKind::Other(0x101), "stream", Compression::Zstd(3))
        .unwrap();
    for i in 0..1000u32 {
        s.write_all(&i.to_le_bytes()).unwrap();
    }
    let info = s.finish().unwrap();
    assert_eq!(info.uncompressed_len, 4000);
    let bytes = w.finish().unwrap();

    let r = Reader::open_with(bytes, OpenOptions::default()).unwrap();
    assert_eq!(r.header(), &header());
    assert_eq!(
        r.section_bytes(SectionKind::Kernel, "").unwrap(),
        b"kernel bytes"
    );
    assert_eq!(
        r.section_bytes(SectionKind::Other(0x100), "extra").unwrap(),
        b"raw"
    );
    let mut streamed = Vec::new();
    r.section_reader(SectionKind::Other(0x101), "stream")
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed.len(), 4000);
    assert_eq!(&streamed[4..8], &1u32.to_le_bytes());
    r.verify().unwrap();
    assert!(matches!(
        r.section_bytes(SectionKind::Kernel, "nope"),
        Err(StatefileError::MissingSection { .. })
    ));
}

#[test]
fn memory_round_trip_all_ways() {
    let ps = 4096;
    let img = image(1000, ps);
    for compression in [Compression::None, Compression::Zstd(1)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.cryo");
        let mut w = Writer::create(&path, header()).unwrap();
        let stats = w
            .write_memory(
                "memfile",
                &img,
                &MemoryOptions {
                    compression,
                    chunk_pages: 64,
                },
            )
            .unwrap();
        assert_eq!(stats.pages, 1000);
        assert_eq!(stats.zero_pages, 250);
        assert_eq!(stats.present_pages, 750);
        assert_eq!(stats.chunks, 16);
        w.finish().unwrap();

        let r = Reader::open(&path).unwrap();
        r.verify().unwrap();
        let m = r.memory("memfile").unwrap();
        assert_eq!(m.image_len(), img.len() as u64);
        assert_eq!(m.zero_pages(), 250);
        let mut out = vec![0xffu8; img.len()];
        m.restore_into(&mut out).unwrap();
        assert!(out == img);

        // Callback restore, parallel.
        let out2 = std::sync::Mutex::new(vec![0u8; img.len()]);
        m.restore_with(|off, page| {
            let mut o = out2.lock().unwrap();
            o[off as usize..off as usize + page.len()].copy_from_slice(page);
            Ok(())
        })
        .unwrap();
        assert!(out2.into_inner().unwrap() == img);

        // Runs of consecutive pages (read and mapped): every run is a whole
        // number of pages, never crosses a zero page, and together they
        // rebuild the image.
        for mapped in [false, true] {
            let out3 = std::sync::Mutex::new(vec![0u8; img.len()]);
            let runs = std::sync::atomic::AtomicUsize::new(0);
            let f = |off: u64, run: &[u8]| {
                assert_eq!(run.len() % ps, 0);
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut o = out3.lock().unwrap();
                o[off as usize..off as usize + run.len()].copy_from_slice(run);
                Ok(())
            };
            if mapped {
                m.restore_runs_mapped_with(f).unwrap();
            } else {
                m.restore_runs_with(f).unwrap();
            }
            assert!(out3.into_inner().unwrap() == img);
            // Every fourth page is zero: runs of three pages, never longer.
            assert_eq!(runs.into_inner(), 250);
        }

        // Lazy: one page at a time.
        let mut page = vec![0u8; ps];
        for p in [0usize, 1, 2, 3, 500, 999] {
            let present = m.read_page((p * ps + 17) as u64, &mut page).unwrap();
            assert_eq!(present, p % 4 != 0);
            assert_eq!(page, img[p * ps..(p + 1) * ps]);
        }
        assert!(matches!(
            m.read_page(img.len() as u64, &mut page),
            Err(StatefileError::PageOutOfRange { .. })
        ));
        let n = m.chunk_for((5 * ps) as u64).unwrap().unwrap();
        let chunk = m.read_chunk(n).unwrap();
        assert_eq!(chunk.pages().count(), 48);

        // Raw chunks are page aligned and can be mapped.
        for i in 0..m.chunk_count() {
            let info = m.chunk_info(i).unwrap();
            if !info.compressed {
                assert_eq!(info.file_offset % ps as u64, 0);
                let mapped = m.map_chunk(i).unwrap();
                for (off, p) in mapped.pages() {
                    assert_eq!(p, &img[off as usize..off as usize + ps]);
                }
            } else {
                assert!(matches!(
                    m.map_chunk(i),
                    Err(StatefileError::NotMappable { .. })
                ));
            }
        }
        if compression == Compression::None {
            assert!((0..m.chunk_count()).all(|i| !m.chunk_info(i).unwrap().compressed));
        }
    }
}

#[test]
fn file_source_and_odd_lengths() {
    let ps = 4096;
    let mut img = image(70, ps);
    img.truncate(69 * ps + 100); // last page partial
    img[69 * ps + 5] = 1;
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("memfd");
    std::fs::write(&src_path, &img).unwrap();
    let f = std::fs::File::open(&src_path).unwrap();
    let path = dir.path().join("s.cryo");
    let mut w = Writer::create(&path, header()).unwrap();
    w.write_memory("", &FileSource::new(&f).unwrap(), &MemoryOptions::default())
        .unwrap();
    w.write_memory("empty", &Vec::new(), &MemoryOptions::default())
        .unwrap();
    w.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    let m = r.memory("").unwrap();
    let mut out = vec![0u8; img.len()];
    m.restore_into(&mut out).unwrap();
    assert!(out == img);
    let e = r.memory("empty").unwrap();
    assert_eq!(e.image_len(), 0);
    e.restore_into(&mut []).unwrap();
    r.verify().unwrap();
}

#[test]
fn atomic_create() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.cryo");
    std::fs::write(&path, b"old statefile").unwrap();
    {
        let mut w = Writer::create(&path, header()).unwrap();
        w.write_section(SectionKind::Kernel, "", Compression::None, &[1; 1000])
            .unwrap();
        // Dropped unfinished.
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"old statefile");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );

    let mut w = Writer::create(&path, header()).unwrap();
    w.write_section(SectionKind::Kernel, "", Compression::None, &[1; 1000])
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"old statefile",
        "not replaced before finish"
    );
    w.finish().unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    Reader::open(&path).unwrap().verify().unwrap();
}

#[test]
fn unfinished_section_poisons_writer() {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    {
        let mut s = w
            .section(SectionKind::Kernel, "", Compression::default())
            .unwrap();
        s.write_all(b"half").unwrap();
    }
    assert!(matches!(
        w.finish(),
        Err(StatefileError::InvalidArgument { .. })
    ));
}

#[test]
fn duplicate_section_refused_by_writer() {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(SectionKind::Kernel, "", Compression::None, b"a")
        .unwrap();
    assert!(w
        .write_section(SectionKind::Kernel, "", Compression::None, b"b")
        .is_err());
}

#[test]
fn savable_through_writer_records_types() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Clock {
        offset_ns: i64,
    }
    statefile::savable_serde!(Clock, "kernel.Clock", 4);
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.save(SectionKind::Kernel, "", &Clock { offset_ns: -5 })
        .unwrap();
    let r = Reader::open_with(w.finish().unwrap(), OpenOptions::default()).unwrap();
    assert_eq!(r.types().get("kernel.Clock"), Some(4));
    assert_eq!(
        r.load::<Clock>(SectionKind::Kernel, "").unwrap(),
        Clock { offset_ns: -5 }
    );
}

/// Small valid files as fuzzing seeds: `cargo test -p statefile --test
/// roundtrip -- --ignored write_fuzz_seeds` writes them to fuzz/corpus/reader.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/reader");
    std::fs::create_dir_all(&dir).unwrap();
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Leaf {
        name: String,
        data: Vec<u64>,
    }
    statefile::savable_serde!(Leaf, "fuzz.Leaf", 1);
    let leaf = Leaf {
        name: "x".into(),
        data: vec![1, 2, 3],
    };
    std::fs::write(dir.join("seed-blob"), statefile::to_bytes(&leaf).unwrap()).unwrap();
    for (i, compression) in [Compression::None, Compression::Zstd(1)]
        .into_iter()
        .enumerate()
    {
        let mut w = Writer::new(Vec::new(), header()).unwrap();
        w.save(SectionKind::Kernel, "", &leaf).unwrap();
        let mut img = vec![0u8; 3 * 4096];
        img[4096..8192].fill(0x41);
        img[9000] = 7;
        w.write_memory(
            "m",
            &img,
            &MemoryOptions {
                compression,
                chunk_pages: 64,
            },
        )
        .unwrap();
        w.write_section(SectionKind::Other(0x200), "s", compression, b"abcabcabc")
            .unwrap();
        std::fs::write(dir.join(format!("seed-file-{i}")), w.finish().unwrap()).unwrap();
    }
}
