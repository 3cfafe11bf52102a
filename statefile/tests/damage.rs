//! Every error kind, each produced by a real damaged statefile.

use statefile::*;

fn header() -> Header {
    Header::new("cryo damage test").with("container-id", "d1")
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Proc {
    pid: u32,
    comm: String,
}
statefile::savable_serde!(Proc, "kernel.Proc", 2);

fn image() -> Vec<u8> {
    let mut img = vec![0u8; 256 * 4096];
    let mut x = 1u64;
    for (i, b) in img.iter_mut().enumerate() {
        if (i / 4096) % 3 == 0 {
            continue;
        }
        if (i / 4096) % 3 == 1 {
            *b = b"text page "[i % 10];
        } else {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
    }
    img
}

/// A small real statefile: kernel (zstd), two user sections, memory with
/// compressed and raw chunks, type table.
fn good() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.save(
        SectionKind::Kernel,
        "",
        &Proc {
            pid: 1,
            comm: "init".into(),
        },
    )
    .unwrap();
    w.write_section(SectionKind::Other(0x100), "a", Compression::None, b"first")
        .unwrap();
    w.write_section(
        SectionKind::Other(0x101),
        "a",
        Compression::Zstd(3),
        b"second second second",
    )
    .unwrap();
    w.write_memory(
        "memfile",
        &image(),
        &MemoryOptions {
            compression: Compression::default(),
            chunk_pages: 64,
        },
    )
    .unwrap();
    w.finish().unwrap()
}

fn open(bytes: Vec<u8>) -> Result<Reader<Vec<u8>>> {
    Reader::open_with(bytes, OpenOptions::default())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Start offsets of each index entry and its name length.
fn index_entries(b: &[u8]) -> (usize, Vec<(usize, usize)>) {
    let t = b.len() - TRAILER_LEN;
    let io = u64_at(b, t) as usize;
    let count = u32::from_le_bytes(b[io..io + 4].try_into().unwrap()) as usize;
    let mut pos = io + 4;
    let mut out = Vec::new();
    for _ in 0..count {
        let n = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        out.push((pos, n));
        pos += 41 + n;
    }
    (io, out)
}

/// Recomputes the index crc after the index was edited on purpose.
fn reseal_index(b: &mut [u8]) {
    let t = b.len() - TRAILER_LEN;
    let io = u64_at(b, t) as usize;
    let il = u64_at(b, t + 8) as usize;
    let crc = crc32fast::hash(&b[io..io + il]);
    b[t + 16..t + 20].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the header crc after the header was edited on purpose.
fn reseal_header(b: &mut [u8]) {
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&b[..hl - 4]);
    b[hl - 4..hl].copy_from_slice(&crc.to_le_bytes());
}

fn section<'a>(r: &'a Reader<Vec<u8>>, kind: SectionKind, name: &str) -> &'a SectionInfo {
    r.section(kind, name).unwrap()
}

#[test]
fn good_file_is_good() {
    let r = open(good()).unwrap();
    r.verify().unwrap();
    assert_eq!(
        r.load::<Proc>(SectionKind::Kernel, "").unwrap().comm,
        "init"
    );
}

#[test]
fn bad_magic() {
    let mut b = good();
    b[0] = b'X';
    assert!(matches!(open(b), Err(StatefileError::BadMagic { .. })));
    assert!(matches!(
        open(b"PK\x03\x04".to_vec()),
        Err(StatefileError::BadMagic { .. })
    ));
}

#[test]
fn future_format_version() {
    let mut b = good();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    match open(b) {
        Err(StatefileError::FutureFormatVersion {
            found: 2,
            supported: 1,
        }) => {}
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn unsupported_format_version() {
    let mut b = good();
    b[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        open(b),
        Err(StatefileError::UnsupportedFormatVersion { found: 0 })
    ));
}

#[test]
fn other_arch() {
    let mut h = header();
    h.arch = if Arch::host() == Arch::X86_64 {
        Arch::Aarch64
    } else {
        Arch::X86_64
    };
    let b = Writer::new(Vec::new(), h.clone())
        .unwrap()
        .finish()
        .unwrap();
    match open(b.clone()) {
        Err(StatefileError::WrongArch { file, host }) => {
            assert_eq!(file, h.arch);
            assert_eq!(host, Arch::host());
        }
        other => panic!("{:?}", other.err()),
    }
    // Inspection tools may still read it.
    assert!(Reader::open_with(b, OpenOptions::any_arch()).is_ok());
}

#[test]
fn unknown_arch() {
    let mut b = good();
    b[24] = 9;
    reseal_header(&mut b);
    assert!(matches!(
        open(b),
        Err(StatefileError::UnknownArch { code: 9 })
    ));
}

#[test]
fn truncated_anywhere() {
    let b = good();
    let full = b.len() as u64;
    // Every cut point in the first KiB and then every 997 bytes.
    let cuts = (0..1024)
        .chain((1024..b.len()).step_by(997))
        .chain([b.len() - 1]);
    for cut in cuts {
        let r = open(b[..cut].to_vec());
        match r {
            Err(StatefileError::Truncated { expected, actual }) => {
                assert_eq!(actual, cut as u64);
                assert!(expected == full || (cut < PREFIX_LEN && expected == PREFIX_LEN as u64));
            }
            Err(StatefileError::BadMagic { .. }) => panic!("cut {cut} reported as bad magic"),
            other => panic!("cut at {cut}: {:?}", other.err()),
        }
    }
}

#[test]
fn truncated_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.cryo");
    std::fs::write(&p, good()).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    match Reader::open(&p) {
        Err(StatefileError::Truncated { expected, actual }) => {
            assert_eq!((expected, actual), (len, len / 2))
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn trailing_data() {
    let mut b = good();
    b.extend_from_slice(b"junk");
    assert!(matches!(open(b), Err(StatefileError::TrailingData { .. })));
}

#[test]
fn incomplete() {
    let mut b = good();
    b[16..24].fill(0);
    assert!(matches!(open(b), Err(StatefileError::Incomplete)));
}

#[test]
fn header_checksum() {
    let mut b = good();
    b[30] ^= 0x20; // inside the producer string
    assert!(matches!(
        open(b),
        Err(StatefileError::HeaderChecksum { .. })
    ));
}

#[test]
fn corrupt_header() {
    let mut b = good();
    b[12..16].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(open(b), Err(StatefileError::CorruptHeader { .. })));
    let mut b = good();
    b[25..29].copy_from_slice(&1000u32.to_le_bytes()); // page size
    reseal_header(&mut b);
    assert!(matches!(open(b), Err(StatefileError::CorruptHeader { .. })));
}

#[test]
fn corrupt_trailer() {
    let mut b = good();
    let n = b.len();
    b[n - 2] ^= 1;
    assert!(matches!(
        open(b),
        Err(StatefileError::CorruptTrailer { .. })
    ));
    let mut b = good();
    let t = b.len() - TRAILER_LEN;
    b[t..t + 8].copy_from_slice(&5u64.to_le_bytes()); // index inside the header
    assert!(matches!(
        open(b),
        Err(StatefileError::CorruptTrailer { .. })
    ));
}

#[test]
fn index_checksum() {
    let mut b = good();
    let (io, _) = index_entries(&b);
    b[io + 6] ^= 1;
    assert!(matches!(open(b), Err(StatefileError::IndexChecksum { .. })));
}

#[test]
fn corrupt_index() {
    let mut b = good();
    let (_, e) = index_entries(&b);
    let (pos, n) = e[0];
    b[pos + 8 + n] = 7; // compression code
    reseal_index(&mut b);
    assert!(matches!(open(b), Err(StatefileError::CorruptIndex { .. })));
}

#[test]
fn section_beyond_file() {
    let mut b = good();
    let (_, e) = index_entries(&b);
    let (pos, n) = e[0];
    b[pos + 21 + n..pos + 29 + n].copy_from_slice(&(1u64 << 40).to_le_bytes()); // stored length
    reseal_index(&mut b);
    match open(b) {
        Err(StatefileError::ImpossibleSize { what }) => assert!(what.contains("kernel"), "{what}"),
        other => panic!("{:?}", other.err()),
    }
    let mut b = good();
    b[pos + 21 + n..pos + 29 + n].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal_index(&mut b);
    assert!(matches!(
        open(b),
        Err(StatefileError::ImpossibleSize { .. })
    ));
}

#[test]
fn duplicate_section() {
    let mut b = good();
    let (_, e) = index_entries(&b);
    let (pos, _) = e[2]; // other(0x101)/a becomes a second other(0x100)/a
    b[pos..pos + 4].copy_from_slice(&0x100u32.to_le_bytes());
    reseal_index(&mut b);
    assert!(matches!(
        open(b),
        Err(StatefileError::DuplicateSection { .. })
    ));
}

#[test]
fn section_checksum_names_section() {
    let mut b = good();
    let off = {
        let r = open(b.clone()).unwrap();
        section(&r, SectionKind::Kernel, "").offset as usize
    };
    b[off + 3] ^= 0x10;
    let r = open(b).unwrap(); // structure is intact
    let e = r.section_bytes(SectionKind::Kernel, "").unwrap_err();
    assert!(matches!(&e, StatefileError::SectionChecksum { section, .. } if section == "kernel"));
    assert!(
        e.to_string()
            .starts_with("checksum mismatch in section kernel"),
        "{e}"
    );
    assert!(matches!(
        r.verify(),
        Err(StatefileError::SectionChecksum { .. })
    ));
    // The streaming reader reports it at the end.
    let mut s = r.section_reader(SectionKind::Kernel, "").unwrap();
    let err = std::io::copy(&mut s, &mut std::io::sink()).unwrap_err();
    let inner = err
        .into_inner()
        .unwrap()
        .downcast::<StatefileError>()
        .unwrap();
    assert!(matches!(
        *inner,
        StatefileError::SectionChecksum { .. } | StatefileError::CorruptSection { .. }
    ));
}

#[test]
fn corrupt_section_length() {
    let mut b = good();
    let (_, e) = index_entries(&b);
    let (pos, n) = e[2]; // zstd section: claim one byte more
    let ul = u64_at(&b, pos + 29 + n);
    b[pos + 29 + n..pos + 37 + n].copy_from_slice(&(ul + 1).to_le_bytes());
    reseal_index(&mut b);
    let r = open(b).unwrap();
    assert!(matches!(
        r.section_bytes(SectionKind::Other(0x101), "a"),
        Err(StatefileError::CorruptSection { .. })
    ));
}

#[test]
fn missing_section() {
    let r = open(good()).unwrap();
    assert!(matches!(
        r.memory("nope"),
        Err(StatefileError::MissingSection { .. })
    ));
}

#[test]
fn corrupt_chunk_names_chunk() {
    let mut b = good();
    let (off, stored) = {
        let r = open(b.clone()).unwrap();
        let m = r.memory("memfile").unwrap();
        let c = m.chunk_info(1).unwrap();
        (c.file_offset as usize, c.stored_len as usize)
    };
    b[off + stored / 2] ^= 0x01;
    let r = open(b).unwrap();
    let m = r.memory("memfile").unwrap();
    m.read_chunk(0).unwrap(); // the other chunks still load (lazy restore)
    match m.read_chunk(1) {
        Err(StatefileError::CorruptChunk {
            chunk: 1, section, ..
        }) => assert_eq!(section, "memory/memfile"),
        other => panic!("{:?}", other.err()),
    }
    let mut out = vec![0u8; m.image_len() as usize];
    assert!(matches!(
        m.restore_into(&mut out),
        Err(StatefileError::CorruptChunk { chunk: 1, .. })
    ));
    assert_eq!(m.damaged_chunks().len(), 1);
    assert!(r.verify().is_err());
}

/// Mirror of the private memory map layout, to forge hostile maps.
#[derive(serde::Serialize)]
struct Map {
    page_size: u32,
    image_len: u64,
    chunk_pages: u32,
    chunks: Vec<Chunk>,
}
#[derive(serde::Serialize)]
struct Chunk {
    range: u64,
    offset: u64,
    stored_len: u64,
    compression: u8,
    crc32: u32,
    present: Vec<u64>,
}

fn forged(map: &Map, memory: &[u8]) -> Reader<Vec<u8>> {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(SectionKind::Memory, "m", Compression::None, memory)
        .unwrap();
    let bytes = bincode::serde::encode_to_vec(map, bincode::config::standard()).unwrap();
    w.write_section(SectionKind::MemoryMap, "m", Compression::None, &bytes)
        .unwrap();
    open(w.finish().unwrap()).unwrap()
}

#[test]
fn corrupt_memory_map() {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(SectionKind::Memory, "m", Compression::None, b"")
        .unwrap();
    w.write_section(
        SectionKind::MemoryMap,
        "m",
        Compression::None,
        b"\xff\xff\xff",
    )
    .unwrap();
    let r = open(w.finish().unwrap()).unwrap();
    assert!(matches!(
        r.memory("m"),
        Err(StatefileError::CorruptMemoryMap { .. })
    ));

    // Bitmap marking a page beyond the image.
    let map = Map {
        page_size: 4096,
        image_len: 4096,
        chunk_pages: 64,
        chunks: vec![Chunk {
            range: 0,
            offset: 0,
            stored_len: 8192,
            compression: 0,
            crc32: 0,
            present: vec![0b11],
        }],
    };
    assert!(matches!(
        forged(&map, &[0; 8192]).memory("m"),
        Err(StatefileError::CorruptMemoryMap { .. })
    ));
}

#[test]
fn impossible_memory_sizes() {
    // A chunk claiming more bytes than the section has.
    let map = Map {
        page_size: 4096,
        image_len: 1 << 40,
        chunk_pages: 64,
        chunks: vec![Chunk {
            range: 0,
            offset: 0,
            stored_len: 1 << 30,
            compression: 1,
            crc32: 0,
            present: vec![1],
        }],
    };
    assert!(matches!(
        forged(&map, &[1; 100]).memory("m"),
        Err(StatefileError::ImpossibleSize { .. })
    ));
    // Page count * chunk size overflow / absurd chunk.
    let map = Map {
        page_size: 4096,
        image_len: u64::MAX,
        chunk_pages: u32::MAX - 63,
        chunks: vec![],
    };
    assert!(matches!(
        forged(&map, &[]).memory("m"),
        Err(StatefileError::ImpossibleSize { .. })
    ));
}

#[test]
fn limit_exceeded() {
    // The type table (loaded at open) is larger than 4 bytes.
    let r = Reader::open_with(
        good(),
        OpenOptions {
            max_section_len: 4,
            ..Default::default()
        },
    );
    assert!(matches!(
        r.err(),
        Some(StatefileError::LimitExceeded {
            what: "section size",
            ..
        })
    ));
}

#[test]
fn page_out_of_range() {
    let r = open(good()).unwrap();
    let m = r.memory("memfile").unwrap();
    assert!(matches!(
        m.chunk_for(1 << 40),
        Err(StatefileError::PageOutOfRange { .. })
    ));
}

#[derive(Debug)]
struct NewProc;
impl Savable for NewProc {
    const TYPE_NAME: &'static str = "kernel.Proc";
    const VERSION: u32 = 5;
    const MIN_VERSION: u32 = 3;
    fn save(&self, _: &mut Encoder) -> Result<()> {
        Ok(())
    }
    fn load(_: &mut Decoder<'_>, _: u32) -> Result<Self> {
        Ok(NewProc)
    }
}

#[derive(Debug)]
struct OldProc;
impl Savable for OldProc {
    const TYPE_NAME: &'static str = "kernel.Proc";
    const VERSION: u32 = 1;
    fn save(&self, _: &mut Encoder) -> Result<()> {
        Ok(())
    }
    fn load(_: &mut Decoder<'_>, _: u32) -> Result<Self> {
        Ok(OldProc)
    }
}

/// Reads only the pid, leaving the name unread.
#[derive(Debug)]
struct LazyProc;
impl Savable for LazyProc {
    const TYPE_NAME: &'static str = "kernel.Proc";
    const VERSION: u32 = 2;
    fn save(&self, _: &mut Encoder) -> Result<()> {
        Ok(())
    }
    fn load(dec: &mut Decoder<'_>, _: u32) -> Result<Self> {
        let _pid: u32 = dec.serde()?;
        Ok(LazyProc)
    }
}

#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Other(String);
statefile::savable_serde!(Other, "kernel.Other", 1);

#[test]
fn type_errors() {
    let r = open(good()).unwrap();
    match r.load::<OldProc>(SectionKind::Kernel, "") {
        Err(StatefileError::FutureTypeVersion {
            type_name,
            found,
            supported,
        }) => {
            assert_eq!(
                (type_name.as_str(), found, supported),
                ("kernel.Proc", 2, 1)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        r.load::<NewProc>(SectionKind::Kernel, ""),
        Err(StatefileError::TypeVersionTooOld {
            found: 2,
            oldest: 3,
            ..
        })
    ));
    assert!(matches!(
        r.load::<Other>(SectionKind::Kernel, ""),
        Err(StatefileError::UnknownType { .. })
    ));
    assert!(matches!(
        r.load::<LazyProc>(SectionKind::Kernel, ""),
        Err(StatefileError::TrailingBytes { .. })
    ));
}

#[test]
fn decode_error_on_garbage_record() {
    let mut enc = Encoder::new();
    enc.put(&Proc {
        pid: 1,
        comm: "init".into(),
    })
    .unwrap();
    let (mut bytes, types) = enc.into_parts();
    // Claim a 2^40-byte comm string inside the record.
    bytes.truncate(8 + 1);
    bytes.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 1, 0, 0]);
    let len = (bytes.len() - 8) as u64;
    bytes[..8].copy_from_slice(&len.to_le_bytes());
    let mut dec = Decoder::new(&bytes, &types);
    assert!(matches!(
        dec.get::<Proc>(),
        Err(StatefileError::Decode { .. })
    ));
}

#[test]
fn io_error() {
    assert!(matches!(
        Reader::open("/nonexistent/x.cryo"),
        Err(StatefileError::Io(_))
    ));
}

#[test]
fn every_single_bit_flip_is_caught() {
    // Flip one bit per 61-byte stride across the whole file: open, verify and
    // loading must fail (or, for padding bytes, detect via the section crc)
    // without panicking.
    let b = good();
    for pos in (0..b.len()).step_by(61) {
        let mut d = b.clone();
        d[pos] ^= 0x04;
        let res = open(d).and_then(|r| r.verify());
        assert!(res.is_err(), "flip at {pos} went unnoticed");
    }
}

// ---------------------------------------------------------------------------
// Decompression bombs: a section's claimed size is bounded by its stored size.

/// zstd of `len` zero bytes, produced as a stream (never holding `len`
/// bytes): about 1:30000, the best zstd does.
fn zstd_zeros(len: u64) -> Vec<u8> {
    use std::io::Write;
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

/// A statefile whose kernel section stores `stored` (its crc valid) as
/// zstd claiming `claimed` uncompressed bytes: what a hostile producer
/// writes, bypassing the writer's padding.
fn with_kernel_bomb(stored: &[u8], claimed: u64) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    w.write_section(SectionKind::Kernel, "", Compression::None, stored)
        .unwrap();
    let mut b = w.finish().unwrap();
    let (_, e) = index_entries(&b);
    let (pos, n) = e[0];
    assert_eq!(u64_at(&b, pos + 21 + n), stored.len() as u64);
    b[pos + 8 + n] = 1; // compression: zstd
    b[pos + 29 + n..pos + 37 + n].copy_from_slice(&claimed.to_le_bytes());
    reseal_index(&mut b);
    b
}

#[test]
fn zstd_bomb_is_refused_before_decompressing() {
    let gib = 1u64 << 30;
    let bomb = zstd_zeros(gib);
    assert!(bomb.len() < 256 << 10, "bomb of {} bytes", bomb.len());
    let r = open(with_kernel_bomb(&bomb, gib)).unwrap();
    let info = section(&r, SectionKind::Kernel, "").clone();
    assert_eq!(info.uncompressed_len, gib);
    let limit = max_uncompressed_len(bomb.len() as u64);
    assert!(limit < gib / 64, "limit {limit}");
    for err in [
        r.section_bytes(SectionKind::Kernel, "").err(),
        r.read_section(&info).err(),
        r.verify_section(&info).err(),
        r.verify().err(),
        r.section_reader(SectionKind::Kernel, "").err(),
    ] {
        match err {
            Some(StatefileError::ImplausibleExpansion {
                section,
                stored,
                claimed,
                limit: l,
            }) => {
                assert_eq!(section, "kernel");
                assert_eq!(stored, bomb.len() as u64);
                assert_eq!(claimed, gib);
                assert_eq!(l, limit);
            }
            other => panic!("expected ImplausibleExpansion, got {other:?}"),
        }
    }
    let e = r.section_bytes(SectionKind::Kernel, "").unwrap_err();
    assert_eq!(e.kind(), "implausible_expansion");
    assert!(e.to_string().contains("claims 1073741824 bytes"), "{e}");
}

#[test]
fn zstd_bomb_under_a_modest_claim_is_cut_at_the_claim() {
    // The claim is believable for the stored bytes, but the stream expands
    // to far more: decompression stops one byte past the claim.
    let bomb = zstd_zeros(1 << 30);
    let claimed = max_uncompressed_len(bomb.len() as u64);
    let r = open(with_kernel_bomb(&bomb, claimed)).unwrap();
    match r.section_bytes(SectionKind::Kernel, "") {
        Err(StatefileError::CorruptSection { section, reason }) => {
            assert_eq!(section, "kernel");
            assert!(reason.contains("more than"), "{reason}");
        }
        other => panic!("expected CorruptSection, got {:?}", other.map(|v| v.len())),
    }
    let mut rd = r.section_reader(SectionKind::Kernel, "").unwrap();
    let err = std::io::copy(&mut rd, &mut std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
}

#[test]
fn claim_beyond_ratio_refused_even_for_a_truthful_stream() {
    // 4 MiB of zeros really is in the stream, but 1:30000 is beyond what a
    // reader believes: a writer must pad such a section (see below).
    let data_len = 4u64 << 20;
    let z = zstd_zeros(data_len);
    let r = open(with_kernel_bomb(&z, data_len)).unwrap();
    assert!(matches!(
        r.section_bytes(SectionKind::Kernel, ""),
        Err(StatefileError::ImplausibleExpansion { .. })
    ));
}

#[test]
fn writer_pads_a_very_compressible_section_so_it_reads_back() {
    // A kernel section of zeros (a tmpfs file of zeros saved with the
    // kernel) compresses ~1:30000; the writer pads it with a skippable
    // frame to the believable ratio, and it reads back exactly.
    let data = vec![0u8; 8 << 20];
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    let info = w
        .write_section(SectionKind::Kernel, "", Compression::Zstd(1), &data)
        .unwrap();
    let streamed = {
        use std::io::Write;
        let mut s = w
            .section(SectionKind::Other(0x100), "s", Compression::Zstd(3))
            .unwrap();
        for _ in 0..8 {
            s.write_all(&data[..1 << 20]).unwrap();
        }
        s.finish().unwrap()
    };
    let b = w.finish().unwrap();
    for i in [&info, &streamed] {
        assert!(
            i.uncompressed_len <= max_uncompressed_len(i.stored_len),
            "{i:?}"
        );
        // Padded, but no more than needed.
        assert!(
            i.stored_len <= i.uncompressed_len / MAX_EXPANSION + 64,
            "{i:?}"
        );
    }
    let r = open(b).unwrap();
    r.verify().unwrap();
    assert!(r.section_bytes(SectionKind::Kernel, "").unwrap() == data);
    let mut back = Vec::new();
    std::io::Read::read_to_end(
        &mut r.section_reader(SectionKind::Other(0x100), "s").unwrap(),
        &mut back,
    )
    .unwrap();
    assert!(back == data);
    // A section that compresses normally gets no padding.
    let mut x = 7u64;
    let text: Vec<u8> = (0..1u32 << 20)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b"etaoin shrdlu"[(x >> 60) as usize % 13]
        })
        .collect();
    let mut w = Writer::new(Vec::new(), header()).unwrap();
    let plain = w
        .write_section(SectionKind::Kernel, "", Compression::Zstd(1), &text)
        .unwrap();
    let unpadded = zstd::stream::encode_all(&text[..], 1).unwrap();
    assert_eq!(plain.stored_len, unpadded.len() as u64);
}
