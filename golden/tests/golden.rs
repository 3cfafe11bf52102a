//! The committed golden files load in the newest code and show what they must.

use cryo_golden::evolving::{self, Evolving, Owner};
use cryo_golden::{data_dir, golden_image, GOLDEN_PAGES};
use statefile::{Arch, Compression, OpenOptions, Reader, SectionKind, StatefileError};

fn read(name: &str) -> Vec<u8> {
    let p = data_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn open_golden() -> Reader<std::fs::File> {
    let f = std::fs::File::open(data_dir().join("format-v1.cryo")).unwrap();
    Reader::open_with(
        f,
        OpenOptions {
            expect_arch: Some(Arch::X86_64),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn evolving_v1_migrates_to_v3() {
    let bytes = read("evolving_v1.bin");
    let (table, _) = statefile::split_blob(&bytes).unwrap();
    assert_eq!(table.get(evolving::TYPE_NAME), Some(1));
    let v: Evolving = statefile::from_bytes(&bytes).unwrap();
    assert_eq!(
        v,
        Evolving {
            title: "init".into(),
            count: 7,
            tags: vec!["pinned".into()], // flags bit 0, via the v1 -> v2 migration
            owner: Owner { uid: 0, gid: 0 },
        }
    );
}

#[test]
fn evolving_v2_migrates_to_v3() {
    let bytes = read("evolving_v2.bin");
    let (table, _) = statefile::split_blob(&bytes).unwrap();
    assert_eq!(table.get(evolving::TYPE_NAME), Some(2));
    let v: Evolving = statefile::from_bytes(&bytes).unwrap();
    assert_eq!(
        v,
        Evolving {
            title: "shell".into(),
            count: 42,
            tags: vec!["net".into(), "shared".into()], // flags bit 1, via v2 -> v3
            owner: Owner {
                uid: 1000,
                gid: 100
            },
        }
    );
}

#[test]
fn evolving_v3_loads_as_is() {
    let bytes = read("evolving_v3.bin");
    let v: Evolving = statefile::from_bytes(&bytes).unwrap();
    assert_eq!(v, evolving::sample_v3());
    // Writing the current version again gives the committed bytes: the
    // encoding of a version must never change.
    assert_eq!(statefile::to_bytes(&v).unwrap(), bytes);
}

#[test]
fn older_code_refuses_newer_type_version() {
    // v1 code reading v3 bytes: a typed error naming the type and both versions.
    let bytes = read("evolving_v3.bin");
    match statefile::from_bytes::<evolving::v1::Evolving>(&bytes) {
        Err(StatefileError::FutureTypeVersion {
            type_name,
            found,
            supported,
        }) => {
            assert_eq!(type_name, evolving::TYPE_NAME);
            assert_eq!((found, supported), (3, 1));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn format_v1_header_and_sections() {
    let r = open_golden();
    assert_eq!(r.format_version(), 1);
    let h = r.header();
    assert_eq!(h.arch, Arch::X86_64);
    assert_eq!(h.page_size, 4096);
    assert_eq!(h.producer, "cryo 0.1.0 (golden)");
    assert_eq!(h.metadata["container-id"], "golden-0001");
    assert_eq!(h.metadata["created"], "2025-01-01T00:00:00Z");
    let ids: Vec<String> = r.sections().iter().map(|s| s.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "kernel",
            "other(0x100)/notes",
            "memory/memfile",
            "memory-map/memfile",
            "memory/raw",
            "memory-map/raw",
            "type-table"
        ]
    );
    assert_eq!(r.types().get("golden.Evolving"), Some(3));
    assert_eq!(r.types().get("golden.Owner"), Some(1));
    r.verify().unwrap();
    assert_eq!(
        r.load::<Evolving>(SectionKind::Kernel, "").unwrap(),
        evolving::sample_v3()
    );
    assert_eq!(
        r.section_bytes(SectionKind::Other(0x100), "notes").unwrap(),
        b"golden statefile, format version 1\n"
    );
}

#[test]
fn format_v1_memory() {
    let r = open_golden();
    let m = r.memory("memfile").unwrap();
    assert_eq!(m.pages(), GOLDEN_PAGES as u64);
    assert_eq!(m.zero_pages(), 26);
    assert_eq!(m.chunk_count(), 3);
    let mut out = vec![0u8; m.image_len() as usize];
    m.restore_into(&mut out).unwrap();
    assert!(out == golden_image(GOLDEN_PAGES));

    let raw = r.memory("raw").unwrap();
    assert_eq!(raw.section().compression, Compression::None);
    let mapped = raw.map_chunk(0).unwrap();
    let img = golden_image(10);
    let mut n = 0;
    for (off, page) in mapped.pages() {
        assert_eq!(page, &img[off as usize..off as usize + 4096]);
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn format_v1_refused_on_other_arch() {
    let f = std::fs::File::open(data_dir().join("format-v1.cryo")).unwrap();
    let r = Reader::open_with(
        f,
        OpenOptions {
            expect_arch: Some(Arch::Aarch64),
            ..Default::default()
        },
    );
    assert!(matches!(
        r,
        Err(StatefileError::WrongArch {
            file: Arch::X86_64,
            host: Arch::Aarch64
        })
    ));
}

/// Rewrites the golden files. Only for adding a new version's files; the
/// committed bytes are what the other tests check.
#[test]
#[ignore]
fn regenerate() {
    if std::env::var_os("CRYO_REGENERATE_GOLDEN").is_none() {
        eprintln!("set CRYO_REGENERATE_GOLDEN=1 to rewrite golden/data");
        return;
    }
    let d = data_dir();
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("evolving_v1.bin"),
        statefile::to_bytes(&evolving::sample_v1()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("evolving_v2.bin"),
        statefile::to_bytes(&evolving::sample_v2()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("evolving_v3.bin"),
        statefile::to_bytes(&evolving::sample_v3()).unwrap(),
    )
    .unwrap();
    cryo_golden::write_format_v1(&d.join("format-v1.cryo")).unwrap();
}
