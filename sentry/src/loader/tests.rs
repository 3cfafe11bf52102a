//! Loader tests: the host's own binaries, a static binary built with gcc
//! when there is one, scripts and bad files, loaded into a fake address space.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::auxv::*;
use super::*;
use crate::mm::tests::{check_consistent, new_mm};

/// A host file, as the VFS would hand one over.
struct HostFile {
    file: std::fs::File,
    name: String,
}

impl MappableFile for HostFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        Ok(self.file.read_at(buf, offset)?)
    }
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.file.metadata()?.len())
    }
    fn mapping_name(&self) -> String {
        self.name.clone()
    }

    fn identity(&self) -> usize {
        self as *const Self as *const () as usize
    }
}

/// Opens paths on the host, under `root` when given (for test files).
fn host_open(root: Option<PathBuf>) -> impl Fn(&str) -> Result<Arc<dyn MappableFile>, Errno> {
    move |path: &str| {
        let real = match &root {
            Some(r)
                if !path.starts_with("/lib")
                    && !path.starts_with("/usr")
                    && !path.starts_with("/bin") =>
            {
                r.join(path.trim_start_matches('/'))
            }
            _ => PathBuf::from(path),
        };
        let file = std::fs::File::open(real)?;
        Ok(Arc::new(HostFile {
            file,
            name: path.to_string(),
        }) as Arc<dyn MappableFile>)
    }
}

fn params() -> LoadParams {
    let mut p = LoadParams::new(*b"0123456789abcdef");
    p.uid = 1000;
    p.gid = 1001;
    p
}

struct StackView {
    argc: u64,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    auxv: Vec<(u64, u64)>,
}

/// Reads the initial stack back as a C runtime would.
fn read_stack(mm: &mut MemoryManager, sp: u64) -> StackView {
    assert_eq!(sp % 16, 0, "rsp must be 16-byte aligned at entry");
    let argc = mm.read_u64(sp).unwrap();
    let mut at = sp + 8;
    let mut argv = Vec::new();
    for _ in 0..argc {
        let p = mm.read_u64(at).unwrap();
        argv.push(mm.read_c_string(p, MAX_ARG_STRLEN).unwrap());
        at += 8;
    }
    assert_eq!(mm.read_u64(at).unwrap(), 0);
    at += 8;
    let mut envp = Vec::new();
    loop {
        let p = mm.read_u64(at).unwrap();
        at += 8;
        if p == 0 {
            break;
        }
        envp.push(mm.read_c_string(p, MAX_ARG_STRLEN).unwrap());
    }
    let mut auxv = Vec::new();
    loop {
        let k = mm.read_u64(at).unwrap();
        let v = mm.read_u64(at + 8).unwrap();
        at += 16;
        if k == AT_NULL {
            break;
        }
        auxv.push((k, v));
    }
    StackView {
        argc,
        argv,
        envp,
        auxv,
    }
}

fn aux(view: &StackView, key: u64) -> u64 {
    view.auxv
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no auxv {key}"))
}

#[test]
fn loads_host_dynamic_true() {
    let (mut mm, pages) = new_mm();
    let open = host_open(None);
    let argv = vec![b"true".to_vec(), b"--arg".to_vec()];
    let envp = vec![b"PATH=/bin".to_vec(), b"HOME=/".to_vec()];
    let img = load(
        &mut mm,
        &open,
        "/bin/true",
        argv.clone(),
        envp.clone(),
        &params(),
    )
    .unwrap();
    check_consistent(&mm, &pages);
    let base = img
        .interpreter_base
        .expect("/bin/true is dynamically linked");
    assert_ne!(img.entry, img.executable_entry);
    assert!(img.entry >= base, "the task starts in ld.so");
    // PIE at Linux's non-randomised base for a 39-bit address space (2/3
    // of it), whatever the host has: the sandbox fits a 39-bit host.
    assert_eq!(img.load_bias, 0x55_5555_4000);
    assert!(img.executable_entry > img.load_bias);
    let view = read_stack(&mut mm, img.stack_pointer);
    assert_eq!(view.argc, 2);
    assert_eq!(view.argv, argv);
    assert_eq!(view.envp, envp);
    assert_eq!(aux(&view, AT_ENTRY), img.executable_entry);
    assert_eq!(aux(&view, AT_BASE), base);
    assert_eq!(aux(&view, AT_PAGESZ), 4096);
    assert_eq!(aux(&view, AT_PHENT), 56);
    assert_eq!(aux(&view, AT_UID), 1000);
    assert_eq!(aux(&view, AT_GID), 1001);
    assert_eq!(aux(&view, AT_CLKTCK), 100);
    assert_eq!(aux(&view, AT_SECURE), 0);
    assert_eq!(aux(&view, AT_HWCAP), host_hwcap());
    // AT_PHDR points at the program headers: the first is usually PT_PHDR (6).
    let phdr = aux(&view, AT_PHDR);
    let phnum = aux(&view, AT_PHNUM);
    assert!(phnum > 2);
    let types: Vec<u32> = (0..phnum)
        .map(|i| mm.read_u32(phdr + i * 56).unwrap())
        .collect();
    assert!(types.contains(&1), "PT_LOAD among {types:?}");
    let mut random = [0u8; 16];
    mm.copy_in(aux(&view, AT_RANDOM), &mut random).unwrap();
    assert_eq!(&random, b"0123456789abcdef");
    assert_eq!(
        mm.read_c_string(aux(&view, AT_PLATFORM), 64).unwrap(),
        b"x86_64"
    );
    assert_eq!(
        mm.read_c_string(aux(&view, AT_EXECFN), 64).unwrap(),
        b"/bin/true"
    );
    // The entry points are in executable memory; the ELF magic is at the bias.
    assert!(mm.vma_at(img.entry).unwrap().prot.exec);
    assert!(mm.vma_at(img.executable_entry).unwrap().prot.exec);
    assert_eq!(mm.read_bytes::<4>(img.load_bias).unwrap(), *b"\x7fELF");
    assert_eq!(mm.read_bytes::<4>(base).unwrap(), *b"\x7fELF");
    // /proc views.
    assert_eq!(img.arg_start, view_ptr(&mut mm, img.stack_pointer + 8));
    assert!(img.arg_end <= img.env_start && img.env_start < img.env_end);
    let maps = mm.maps_text();
    assert!(
        maps.contains("[stack]") && maps.contains("/bin/true") && maps.contains("ld-linux"),
        "{maps}"
    );
    assert!(img.brk_start > img.load_bias && img.brk_start & 4095 == 0);
    assert_eq!(mm.brk(0), img.brk_start);
}

fn view_ptr(mm: &mut MemoryManager, at: u64) -> u64 {
    mm.read_u64(at).unwrap()
}

/// Links a small static (or static-pie) program with gcc. gcc and static
/// glibc are part of the test setup (tests/scripts/deps.sh): without them
/// the test fails rather than pass having loaded nothing.
fn build_static(dir: &Path, pie: bool) -> PathBuf {
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "int counter = 7; char big[100000];\nint main(void) { return counter + big[5]; }\n",
    )
    .unwrap();
    let out = dir.join(if pie {
        "hello-static-pie"
    } else {
        "hello-static"
    });
    let mut cmd = std::process::Command::new("gcc");
    cmd.arg(if pie { "-static-pie" } else { "-static" })
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src);
    match cmd.output() {
        Ok(o) if o.status.success() => out,
        Ok(o) => panic!(
            "static link failed (libc6-dev missing? run tests/scripts/deps.sh): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run gcc (run tests/scripts/deps.sh): {e}"),
    }
}

#[test]
fn loads_static_and_static_pie() {
    let dir = tempfile::tempdir().unwrap();
    for pie in [false, true] {
        let exe = build_static(dir.path(), pie);
        let (mut mm, pages) = new_mm();
        let open = host_open(None);
        let path = exe.to_str().unwrap();
        let img = load(
            &mut mm,
            &open,
            path,
            vec![b"hello".to_vec()],
            vec![],
            &params(),
        )
        .unwrap();
        check_consistent(&mm, &pages);
        assert_eq!(img.interpreter_base, None);
        assert_eq!(img.entry, img.executable_entry);
        if pie {
            assert_ne!(img.load_bias, 0);
        } else {
            assert_eq!(img.load_bias, 0);
            assert!(
                img.entry >= 0x400000 && img.entry < 0x1000_0000,
                "{:#x}",
                img.entry
            );
        }
        let view = read_stack(&mut mm, img.stack_pointer);
        assert_eq!(view.argv, vec![b"hello".to_vec()]);
        assert!(view.envp.is_empty());
        assert_eq!(aux(&view, AT_BASE), 0);
        // bss is zero and writable, the heap starts after it.
        let bss_vma = mm
            .vmas()
            .filter(|v| v.prot.write && v.end <= img.brk_start)
            .last()
            .unwrap()
            .clone();
        let mut buf = vec![1u8; 64];
        mm.copy_in(bss_vma.end - 64, &mut buf).unwrap();
        assert!(buf.iter().all(|b| *b == 0));
        assert!(img.brk_start >= bss_vma.end);
        assert_eq!(mm.brk(img.brk_start + 4096), img.brk_start + 4096);
    }
}

fn write_file(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

#[test]
fn scripts_run_their_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "script", b"#!/bin/true -x  y\necho hi\n");
    let open = host_open(Some(dir.path().to_path_buf()));
    let (mut mm, _) = new_mm();
    let argv = vec![b"script".to_vec(), b"a1".to_vec()];
    let img = load(&mut mm, &open, "/script", argv, vec![], &params()).unwrap();
    assert_eq!(img.path, "/bin/true");
    let expect: Vec<Vec<u8>> = vec![
        b"/bin/true".to_vec(),
        b"-x  y".to_vec(),
        b"/script".to_vec(),
        b"a1".to_vec(),
    ];
    assert_eq!(img.argv, expect);
    let view = read_stack(&mut mm, img.stack_pointer);
    assert_eq!(view.argv, expect);
    // AT_EXECFN is the path execve was given.
    assert_eq!(
        mm.read_c_string(aux(&view, AT_EXECFN), 64).unwrap(),
        b"/bin/true"
    );
}

#[test]
fn script_chains_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        write_file(
            dir.path(),
            &format!("s{i}"),
            format!("#!/s{}\n", i + 1).as_bytes(),
        );
    }
    write_file(dir.path(), "s6", b"#!/bin/true\n");
    let open = host_open(Some(dir.path().to_path_buf()));
    let (mut mm, _) = new_mm();
    // s2 -> s3 -> s4 -> s5 -> s6 -> /bin/true: four levels are fine.
    load(&mut mm, &open, "/s3", vec![], vec![], &params()).unwrap();
    let (mut mm, _) = new_mm();
    let err = load(&mut mm, &open, "/s0", vec![], vec![], &params()).unwrap_err();
    assert_eq!(err.errno(), Errno::ELOOP, "{err}");
}

#[test]
fn bad_files_are_refused_plainly() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "text", b"just some text\n");
    write_file(dir.path(), "empty", b"");
    write_file(dir.path(), "noint", b"#!\n");
    // An aarch64 ELF header (EM_AARCH64 = 183).
    let mut arm = std::fs::read("/bin/true").unwrap();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    write_file(dir.path(), "arm", &arm);
    let mut i386 = arm.clone();
    i386[4] = 1; // ELFCLASS32
    i386[18..20].copy_from_slice(&3u16.to_le_bytes());
    write_file(dir.path(), "i386", &i386);
    let mut trunc = std::fs::read("/bin/true").unwrap();
    trunc.truncate(100);
    write_file(dir.path(), "trunc", &trunc);
    let mut huge_ph = std::fs::read("/bin/true").unwrap();
    huge_ph[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    write_file(dir.path(), "hugeph", &huge_ph);
    let mut reloc = std::fs::read("/bin/true").unwrap();
    reloc[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    write_file(dir.path(), "reloc", &reloc);
    write_file(dir.path(), "badinterp", b"#!/nonexistent/sh\n");

    let open = host_open(Some(dir.path().to_path_buf()));
    let cases: &[(&str, Errno, &str)] = &[
        (
            "/text",
            Errno::ENOEXEC,
            "neither an ELF file nor a script starting with #!",
        ),
        (
            "/empty",
            Errno::ENOEXEC,
            "neither an ELF file nor a script starting with #!",
        ),
        ("/noint", Errno::ENOEXEC, "no interpreter"),
        ("/arm", Errno::ENOEXEC, "aarch64 ELF, this host runs x86_64"),
        ("/i386", Errno::ENOEXEC, "32-bit i386 ELF"),
        ("/trunc", Errno::ENOEXEC, "program headers"),
        ("/hugeph", Errno::ENOEXEC, "program headers"),
        ("/reloc", Errno::ENOEXEC, "relocatable"),
        ("/missing", Errno::ENOENT, "/missing"),
        ("/badinterp", Errno::ENOENT, "/nonexistent/sh"),
    ];
    for (path, errno, text) in cases {
        let (mut mm, _) = new_mm();
        let err = load(&mut mm, &open, path, vec![], vec![], &params()).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.errno(), *errno, "{path}: {msg}");
        assert!(msg.contains(text), "{path}: {msg:?} lacks {text:?}");
        assert_eq!(mm.vsize(), 0, "{path}: nothing mapped on failure");
    }
}

#[test]
fn missing_elf_interpreter_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut elf = std::fs::read("/bin/true").unwrap();
    // Rewrite the PT_INTERP path in place.
    let needle = b"/lib64/ld-linux-x86-64.so.2";
    let pos = elf
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("PT_INTERP path");
    elf[pos..pos + needle.len()].copy_from_slice(b"/nope/ld-linux-x86-64.so.2\0");
    write_file(dir.path(), "prog", &elf);
    let open = host_open(Some(dir.path().to_path_buf()));
    let (mut mm, _) = new_mm();
    let err = load(&mut mm, &open, "/prog", vec![], vec![], &params()).unwrap_err();
    assert!(matches!(err, LoadError::InterpreterMissing { .. }), "{err}");
    assert_eq!(err.errno(), Errno::ENOENT);
    assert!(
        err.to_string().contains("/nope/ld-linux-x86-64.so.2"),
        "{err}"
    );
}

#[test]
fn huge_arguments_are_e2big() {
    let (mut mm, _) = new_mm();
    let open = host_open(None);
    let big = vec![b'x'; MAX_ARG_STRLEN];
    let err = load(&mut mm, &open, "/bin/true", vec![big], vec![], &params()).unwrap_err();
    assert_eq!(err.errno(), Errno::E2BIG);
    // Many medium strings past a quarter of the stack limit.
    let (mut mm, _) = new_mm();
    let env: Vec<Vec<u8>> = (0..40).map(|_| vec![b'e'; 60_000]).collect();
    let err = load(&mut mm, &open, "/bin/true", vec![], env, &params()).unwrap_err();
    assert_eq!(err.errno(), Errno::E2BIG);
    // Large but allowed: the stack grows past its initial 128 KiB.
    let (mut mm, pages) = new_mm();
    let env: Vec<Vec<u8>> = (0..20).map(|_| vec![b'e'; 60_000]).collect();
    let img = load(
        &mut mm,
        &open,
        "/bin/true",
        vec![b"t".to_vec()],
        env.clone(),
        &params(),
    )
    .unwrap();
    let view = read_stack(&mut mm, img.stack_pointer);
    assert_eq!(view.envp, env);
    check_consistent(&mm, &pages);
}
