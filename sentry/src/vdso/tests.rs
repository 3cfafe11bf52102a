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

/// A memory file with a data page whose first word is `marker`.
fn memory_with_vvar(marker: u64) -> (Arc<MemoryFile>, u64) {
    let mf = Arc::new(MemoryFile::new(1 << 32).unwrap());
    let off = mf.allocate(MF_PAGE_SIZE).unwrap();
    mf.set_vvar(off).unwrap();
    mf.store_u64(off, marker).unwrap();
    (mf, off)
}

#[test]
fn the_vdso_maps_forks_saves_and_restores_onto_the_new_kernels_page() {
    use crate::mm::tests::{check_mapped, layout, new_mm, new_mm_with, FakeAddressSpace};
    use crate::mm::{MemoryManager, VmaKind};
    use platform::Prot;

    // No data page: no vDSO.
    let (mut bare, _) = new_mm();
    assert_eq!(bare.map_vdso(IMAGE), Err(Errno::ENOSYS));

    let (mf, _) = memory_with_vvar(42);
    let (mut mm, pages) = new_mm_with(mf.clone());
    let text = mm.map_vdso(IMAGE).unwrap();
    // Mapped as the VMAs say: the image's pages are the address space's
    // (the only ones saved), the data page is the kernel's, not saved.
    let used = check_mapped(&mm, &pages);
    assert_eq!(
        used.len() as u64 * MF_PAGE_SIZE,
        mf.allocated_bytes() + VVAR_SIZE
    );
    let data = text - VVAR_SIZE;
    assert_eq!(mm.read_bytes::<4>(text).unwrap(), *b"\x7fELF");
    assert_eq!(mm.read_u64(data).unwrap(), 42);
    let kinds: Vec<(VmaKind, Prot, Option<String>)> =
        mm.vmas().map(|v| (v.kind, v.prot, v.name())).collect();
    assert_eq!(
        kinds,
        [
            (VmaKind::Vvar, Prot::READ, Some("[vvar]".into())),
            (VmaKind::Vdso, Prot::READ_EXEC, Some("[vdso]".into())),
        ]
    );
    let maps = mm.maps_text();
    assert!(maps.contains(" r--p ") && maps.contains(" r-xp "), "{maps}");
    // The data page is never the application's to write.
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    assert_eq!(mm.mprotect(data, VVAR_SIZE, rw), Err(Errno::EACCES));
    assert_eq!(mm.copy_out(data, b"x"), Err(Errno::EFAULT));

    // A fork's child sees the same page, live.
    let forked = mm.fork().unwrap();
    let child_pages: crate::mm::tests::Pages = Arc::default();
    let child = MemoryManager::from_fork(
        forked,
        Arc::new(FakeAddressSpace {
            pages: child_pages.clone(),
            calls: Arc::default(),
        }),
    )
    .unwrap();
    mf.store_u64(mf.vvar().unwrap(), 43).unwrap();
    assert_eq!(child.read_u64(data).unwrap(), 43);
    assert_eq!(child.read_bytes::<4>(text).unwrap(), *b"\x7fELF");
    drop(child);

    // Saved: the image as memory, the data page as its place only.
    let state = mm.snapshot();
    let saved_vvar = state.vmas.iter().find(|v| v.kind == VmaKind::Vvar).unwrap();
    assert!(saved_vvar.file.is_none() && !saved_vvar.direct && saved_vvar.mf_offset == 0);
    assert!(state
        .backing
        .iter()
        .all(|b| b.end <= data || b.start >= text));

    // Restored by a kernel with a page of its own (at another offset).
    let mf2 = Arc::new(MemoryFile::new(1 << 32).unwrap());
    mf2.restore_allocations(&mf.allocated_ranges()).unwrap();
    for r in mf.allocated_ranges() {
        let mut buf = vec![0u8; r.len() as usize];
        mf.read_at(r.start, &mut buf).unwrap();
        mf2.write_at(r.start, &buf).unwrap();
    }
    // Another offset than the saved kernel's page (which was not saved).
    let filler = mf2.allocate(MF_PAGE_SIZE).unwrap();
    assert_eq!(filler, mf.vvar().unwrap());
    let off2 = mf2.allocate(MF_PAGE_SIZE).unwrap();
    mf2.set_vvar(off2).unwrap();
    mf2.store_u64(off2, 77).unwrap();
    let reopen = |_: &str| -> Result<Arc<dyn MappableFile>, Errno> { Err(Errno::ENOENT) };
    let pages2: crate::mm::tests::Pages = Arc::default();
    let mm2 = MemoryManager::from_snapshot(
        &state,
        layout(),
        mf2.clone(),
        Arc::new(FakeAddressSpace {
            pages: pages2.clone(),
            calls: Arc::default(),
        }),
        &reopen,
    )
    .unwrap();
    mf2.finish_restore();
    let used = check_mapped(&mm2, &pages2);
    assert_eq!(
        used.len() as u64 * MF_PAGE_SIZE,
        mf2.allocated_bytes() + VVAR_SIZE - MF_PAGE_SIZE
    );
    assert_eq!(mm2.read_u64(data).unwrap(), 77);
    assert_eq!(mm2.read_bytes::<4>(text).unwrap(), *b"\x7fELF");
    assert_eq!(mm2.maps_text(), mm.maps_text());
    assert_eq!(pages2.lock().unwrap().get(&data).map(|p| p.0), Some(off2));

    // A kernel without a data page refuses it, by name.
    let mf3 = Arc::new(MemoryFile::new(1 << 32).unwrap());
    mf3.restore_allocations(&mf.allocated_ranges()).unwrap();
    let refused = MemoryManager::from_snapshot(
        &state,
        layout(),
        mf3,
        Arc::new(FakeAddressSpace {
            pages: Arc::default(),
            calls: Arc::default(),
        }),
        &reopen,
    );
    let err = refused.expect_err("refused").to_string();
    assert!(err.contains("vDSO data page"), "{err}");

    // A hostile record's data page of two pages, or writable, is refused.
    for edit in [
        (|v: &mut crate::mm::VmaState| v.end += VVAR_SIZE) as fn(&mut crate::mm::VmaState),
        |v| v.max_prot = Prot::ALL,
        |v| v.shared = false,
    ] {
        let mut bad = state.clone();
        let i = bad
            .vmas
            .iter()
            .position(|v| v.kind == VmaKind::Vvar)
            .unwrap();
        edit(&mut bad.vmas[i]);
        let e = bad
            .validate(&layout(), &|o, l| mf.is_allocated(o, l))
            .expect_err("refused");
        assert!(e.to_string().contains("vDSO data page"), "{e}");
    }
}
