//! The built image is what the loader and both libcs need.

use goblin::elf::dynamic::{DT_GNU_HASH, DT_HASH, DT_SONAME};
use goblin::elf::program_header::{PT_DYNAMIC, PT_LOAD};
use goblin::elf::Elf;

use super::*;

fn elf() -> Elf<'static> {
    Elf::parse(IMAGE).expect("the vDSO image parses")
}

#[test]
fn image_is_one_read_execute_segment_from_offset_zero() {
    let elf = elf();
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect();
    assert_eq!(loads.len(), 1, "{:?}", elf.program_headers);
    let l = loads[0];
    assert_eq!((l.p_offset, l.p_vaddr), (0, 0));
    assert_eq!(l.p_filesz, l.p_memsz, "no bss");
    assert!(l.p_filesz <= IMAGE.len() as u64);
    assert!(l.is_read() && l.is_executable() && !l.is_write());
    assert!(elf.program_headers.iter().any(|p| p.p_type == PT_DYNAMIC));
    assert!(image_pages_len() <= 2 * MF_PAGE_SIZE, "{}", IMAGE.len());
}

#[test]
fn image_needs_no_relocation() {
    let elf = elf();
    assert!(elf.dynrelas.is_empty() && elf.dynrels.is_empty());
    assert!(elf.pltrelocs.is_empty());
    assert!(elf.libraries.is_empty(), "{:?}", elf.libraries);
}

#[test]
fn image_has_both_hash_tables_and_its_soname() {
    let elf = elf();
    let dynamic = elf.dynamic.as_ref().expect("a dynamic section");
    let has = |tag| dynamic.dyns.iter().any(|d| d.d_tag == tag);
    assert!(has(DT_HASH), "musl reads DT_HASH");
    assert!(has(DT_GNU_HASH));
    assert!(has(DT_SONAME));
    assert_eq!(elf.soname, Some("linux-vdso.so.1"));
}

#[test]
fn image_exports_the_four_calls_at_linux_2_6() {
    let elf = elf();
    let verdefs: Vec<String> = elf
        .verdef
        .as_ref()
        .map(|v| {
            v.iter()
                .flat_map(|d| {
                    d.iter()
                        .filter_map(|a| elf.dynstrtab.get_at(a.vda_name).map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(verdefs.iter().any(|n| n == "LINUX_2.6"), "{verdefs:?}");
    for name in ["clock_gettime", "gettimeofday", "time", "getcpu"] {
        for sym in [name.to_string(), format!("__vdso_{name}")] {
            let found = elf
                .dynsyms
                .iter()
                .find(|s| elf.dynstrtab.get_at(s.st_name) == Some(sym.as_str()) && s.is_function());
            let s = found.unwrap_or_else(|| panic!("{sym} is not exported"));
            assert!(s.st_value > 0 && s.st_value < IMAGE.len() as u64, "{sym}");
        }
    }
}

#[test]
fn vvar_file_maps_only_its_page() {
    let mf = Arc::new(MemoryFile::new(1 << 24).unwrap());
    assert!(VvarFile::of(&mf).is_none());
    let off = mf.allocate(MF_PAGE_SIZE).unwrap();
    mf.set_vvar(off).unwrap();
    assert!(mf.set_vvar(off).is_err(), "once");
    let f = VvarFile::of(&mf).unwrap();
    assert_eq!(f.map_shared(0, VVAR_SIZE), Some(off));
    assert_eq!(f.map_shared(0, 2 * VVAR_SIZE), None);
    assert_eq!(f.write_at(0, b"x"), Err(Errno::EACCES));
    assert_eq!(f.mapping_name(), "[vvar]");
    // Never saved: a restore rebuilds it.
    assert!(
        mf.allocated_ranges().is_empty(),
        "{:?}",
        mf.allocated_ranges()
    );
    let other = mf.allocate(MF_PAGE_SIZE).unwrap();
    assert_eq!(mf.allocated_ranges().len(), 1);
    assert_eq!(mf.allocated_ranges()[0].start, other);
}
