//! Any byte string handed to the reader must give a typed error or data,
//! never a panic, an unbounded allocation or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statefile::{OpenOptions, Reader, SectionKind};

#[derive(serde::Serialize, serde::Deserialize)]
struct Leaf {
    name: String,
    data: Vec<u64>,
}
statefile::savable_serde!(Leaf, "fuzz.Leaf", 1);

fuzz_target!(|data: &[u8]| {
    // Savable decoding of standalone blobs.
    let _ = statefile::from_bytes::<Leaf>(data);

    let opts = OpenOptions {
        expect_arch: None,
        max_section_len: 16 << 20,
    };
    let Ok(r) = Reader::open_with(data, opts) else {
        return;
    };
    let _ = r.verify();
    for s in r.sections().to_vec() {
        let _ = r.read_section(&s);
        if let Ok(mut rd) = r.section_reader(s.id.kind, &s.id.name) {
            let _ = std::io::copy(&mut rd, &mut std::io::sink());
        }
        if s.id.kind == SectionKind::Kernel {
            let _ = r.load::<Leaf>(s.id.kind, &s.id.name);
        }
        if s.id.kind == SectionKind::Memory {
            if let Ok(m) = r.memory(&s.id.name) {
                let _ = m.damaged_chunks();
                // Restore only small images: the size is the file's claim.
                if m.image_len() <= 4 << 20 {
                    let mut out = vec![0u8; m.image_len() as usize];
                    let _ = m.restore_into(&mut out);
                }
                let mut page = vec![0u8; m.page_size() as usize];
                let _ = m.read_page(0, &mut page);
                let _ = m.restore_with(|_, _| Ok(()));
            }
        }
    }
});
