//! The committed format-v1 golden file, damaged: every cut and a spread of
//! bit flips are refused with a typed error, never a panic.

use cryo_golden::data_dir;
use statefile::{OpenOptions, Reader, SectionKind, StatefileError};

fn golden() -> Vec<u8> {
    std::fs::read(data_dir().join("format-v1.cryo")).unwrap()
}

fn open(b: Vec<u8>) -> statefile::Result<Reader<Vec<u8>>> {
    Reader::open_with(b, OpenOptions::any_arch())
}

#[test]
fn every_cut_is_truncated() {
    let b = golden();
    for cut in (0..b.len()).step_by(331).chain([b.len() - 1]) {
        match open(b[..cut].to_vec()) {
            Err(StatefileError::Truncated { actual, .. }) => assert_eq!(actual, cut as u64),
            other => panic!("cut {cut}: {:?}", other.err()),
        }
    }
}

#[test]
fn bit_flips_are_detected() {
    let b = golden();
    for pos in (0..b.len()).step_by(173) {
        let mut d = b.clone();
        d[pos] ^= 0x80;
        let res = open(d).and_then(|r| {
            r.verify()?;
            r.load::<cryo_golden::evolving::Evolving>(SectionKind::Kernel, "")
        });
        assert!(res.is_err(), "flip at {pos} unnoticed");
    }
}

#[test]
fn flipped_kernel_section_is_named() {
    let mut b = golden();
    let off = open(b.clone())
        .unwrap()
        .section(SectionKind::Kernel, "")
        .unwrap()
        .offset as usize;
    b[off + 5] ^= 1;
    let r = open(b).unwrap();
    let e = r.verify().unwrap_err();
    assert_eq!(
        e.to_string().split(" (").next().unwrap(),
        "checksum mismatch in section kernel"
    );
}

#[test]
fn flipped_chunk_is_named() {
    let mut b = golden();
    let (off, len) = {
        let r = open(b.clone()).unwrap();
        let c = r.memory("memfile").unwrap().chunk_info(2).unwrap();
        (c.file_offset as usize, c.stored_len as usize)
    };
    b[off + len / 2] ^= 1;
    let r = open(b).unwrap();
    let m = r.memory("memfile").unwrap();
    assert!(matches!(
        m.read_chunk(2),
        Err(StatefileError::CorruptChunk { chunk: 2, .. })
    ));
    assert!(m.read_chunk(0).is_ok() && m.read_chunk(1).is_ok());
}
