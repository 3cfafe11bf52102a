//! The CLI's error paths: every bad invocation exits non-zero with a clear,
//! short message on stderr, and never hangs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use cryo_tests::{run_cryo_cli, Output};

fn assert_failed(out: &Output, what: &str) {
    assert_ne!(
        out.code,
        0,
        "{what}: expected a non-zero exit; stdout: {:?}",
        out.stdout_str()
    );
    assert!(
        !out.stderr_str().trim().is_empty(),
        "{what}: expected an error message on stderr"
    );
}

#[test]
fn missing_program() {
    let out = run_cryo_cli(&["do", "--", "/nonexistent"]);
    assert_failed(&out, "cryo do -- /nonexistent");
    assert_eq!(out.code, 127, "a missing command is 127, as in shells");
    let err = out.stderr_str();
    assert_eq!(
        err.trim().lines().count(),
        1,
        "expected a one-line error, got:\n{err}"
    );
    assert!(
        err.contains("/nonexistent"),
        "the error should name the path: {err}"
    );
}

#[test]
fn not_an_executable_format() {
    // /etc/passwd is neither ELF nor a #! script.
    let out = run_cryo_cli(&["do", "--", "/etc/passwd"]);
    assert_failed(&out, "cryo do -- /etc/passwd");
    // /etc/passwd has no execute bit: 126, as shells give.
    assert_eq!(out.code, 126);
    let err = out.stderr_str();
    assert!(
        err.contains("/etc/passwd"),
        "the error should name the file: {err}"
    );
}

/// An executable file with neither an ELF header nor a `#!` line: 126, and
/// the message says what it lacks.
#[test]
fn script_without_shebang() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"echo no interpreter line\n").unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = f.path().to_str().unwrap().to_string();
    let out = run_cryo_cli(&["do", "--", &path]);
    assert_eq!(out.code, 126, "{}", out.stderr_str());
    let err = out.stderr_str();
    assert!(err.contains(&path) && err.contains("#!"), "{err}");
}

/// A minimal but well-formed ELF executable header for another machine.
fn foreign_elf(class64: bool, machine: u16) -> tempfile::NamedTempFile {
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF");
    elf.push(if class64 { 2 } else { 1 }); // EI_CLASS
    elf.push(1); // EI_DATA: little endian
    elf.push(1); // EI_VERSION
    elf.extend_from_slice(&[0; 9]); // EI_OSABI, EI_ABIVERSION, padding
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&machine.to_le_bytes()); // e_machine
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    let (ehsize, phentsize): (u16, u16) = if class64 { (64, 56) } else { (52, 32) };
    let word = |v: u64, out: &mut Vec<u8>| {
        if class64 {
            out.extend_from_slice(&v.to_le_bytes())
        } else {
            out.extend_from_slice(&(v as u32).to_le_bytes())
        }
    };
    word(0x40_0000 + ehsize as u64 + phentsize as u64, &mut elf); // e_entry
    word(ehsize as u64, &mut elf); // e_phoff
    word(0, &mut elf); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [ehsize, phentsize, 1, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&v.to_le_bytes());
    }
    let total = (ehsize + phentsize) as u64 + 4;
    // One PT_LOAD covering the file, readable and executable.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type
    if class64 {
        elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags
        for v in [0u64, 0x40_0000, 0x40_0000, total, total, 0x1000] {
            elf.extend_from_slice(&v.to_le_bytes());
        }
    } else {
        for v in [
            0u32,
            0x40_0000,
            0x40_0000,
            total as u32,
            total as u32,
            5,
            0x1000,
        ] {
            elf.extend_from_slice(&v.to_le_bytes());
        }
    }
    elf.extend_from_slice(&[0; 4]); // a few bytes of "code"
    let mut file = tempfile::Builder::new()
        .prefix("cryo-foreign-elf-")
        .tempfile_in("/tmp")
        .expect("temp file in /tmp");
    file.write_all(&elf).expect("writing the ELF file");
    file.flush().expect("flushing the ELF file");
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 755");
    file
}

const EM_386: u16 = 3;
const EM_AARCH64: u16 = 183;

#[test]
fn aarch64_elf_is_refused() {
    let file = foreign_elf(true, EM_AARCH64);
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = run_cryo_cli(&["do", "--", path]);
    assert_failed(&out, "cryo do -- <aarch64 ELF>");
    let err = out.stderr_str().to_lowercase();
    assert!(
        err.contains("architecture"),
        "the error should mention the architecture: {err}"
    );
}

#[test]
fn elf32_is_refused() {
    let file = foreign_elf(false, EM_386);
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = run_cryo_cli(&["do", "--", path]);
    assert_failed(&out, "cryo do -- <32-bit ELF>");
    let err = out.stderr_str().to_lowercase();
    assert!(
        err.contains("architecture") || err.contains("32-bit"),
        "the error should say the binary is 32-bit or of another architecture: {err}"
    );
}

#[test]
fn unknown_flag() {
    let out = run_cryo_cli(&["--no-such-flag"]);
    assert_failed(&out, "cryo --no-such-flag");
    assert_eq!(out.code, 2, "clap exits 2 on usage errors");
    assert!(
        out.stderr_str().contains("--no-such-flag"),
        "clap's error names the flag: {}",
        out.stderr_str()
    );
}

/// An unknown `--platform` is refused before anything starts, naming the
/// bad name and the platforms this cryo has; before or after the command.
#[test]
fn unknown_platform() {
    for args in [
        &["--platform", "bogus", "do", "true"][..],
        &["do", "--platform", "bogus", "true"][..],
        &[
            "restore",
            "--platform",
            "bogus",
            "--image-path",
            "/nonexistent",
        ][..],
    ] {
        let out = run_cryo_cli(args);
        let what = format!("cryo {}", args.join(" "));
        assert_failed(&out, &what);
        assert_eq!(out.code, 125, "{what}: a cryo error, not a usage error");
        let err = out.stderr_str();
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains("\"bogus\""),
            "{what}: names the platform: {err}"
        );
        assert!(
            err.contains("ptrace"),
            "{what}: lists the known ones: {err}"
        );
        assert!(out.stdout_str().is_empty(), "{what}: nothing ran");
    }
}

/// `--platform ptrace` (the default, spelt out) is accepted by `do` and
/// `restore`.
#[test]
fn known_platform_is_accepted() {
    let out = run_cryo_cli(&["--platform", "ptrace", "do", "echo", "on-ptrace"]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr_str());
    assert_eq!(out.stdout_str(), "on-ptrace\n");
    let out = run_cryo_cli(&[
        "restore",
        "--platform",
        "ptrace",
        "--image-path",
        "/nonexistent",
    ]);
    assert_failed(&out, "cryo restore --platform ptrace (no statefile)");
    let err = out.stderr_str();
    assert!(
        err.contains("no statefile") && !err.contains("platform"),
        "the flag is accepted; the missing statefile is the error: {err}"
    );
}

#[test]
fn do_without_command() {
    let out = run_cryo_cli(&["do"]);
    assert_failed(&out, "cryo do (no command)");
}

/// The crafted ELF files are what their names say (checked natively: the
/// host kernel refuses to execute them).
#[test]
fn crafted_elves_are_foreign_natively() {
    for (class64, machine) in [(true, EM_AARCH64), (false, EM_386)] {
        let file = foreign_elf(class64, machine);
        let path = file.path().to_path_buf();
        // Close our write handle first, or exec fails with ETXTBSY instead.
        let temp_path = file.into_temp_path();
        // Another test thread forking at this moment briefly holds a copy
        // of the write fd (until its exec closes it): ETXTBSY, so retry.
        let mut err = std::process::Command::new(&path).output().err();
        for _ in 0..100 {
            if err.as_ref().and_then(|e| e.raw_os_error()) != Some(libc::ETXTBSY) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            err = std::process::Command::new(&path).output().err();
        }
        match err {
            Some(e) => assert_eq!(
                e.raw_os_error(),
                Some(libc::ENOEXEC),
                "exec of {}: {e}",
                path.display()
            ),
            // An i386 binary may actually run on a host with IA-32 emulation;
            // it then crashes or exits, but it is still a valid ELF32.
            None => assert!(
                !class64 || std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
                "the host executed an aarch64 binary"
            ),
        }
        drop(temp_path);
    }
}

/// The OCI commands take a `cryo do --id` sandbox's id too (its record is
/// cryo's own, not an OCI container's): `state` shows it running with its
/// pid, `ps` lists its process, and `kill` ends it with the signal.
#[test]
fn oci_commands_take_a_do_sandbox() {
    use cryo_tests::sandbox::{cryo_cli, Sandbox, Scratch};
    let s = Scratch::new("cryo-do-oci-");
    let root = s.root();
    let mut sb = Sandbox::run(
        &root,
        "d1",
        std::path::Path::new("/bin/sh"),
        &["-c", "echo up; exec sleep 100"],
    );
    sb.wait_lines(1, std::time::Duration::from_secs(20));
    let st = cryo_cli(&root, &["state", "d1"]);
    assert_eq!(st.code, 0, "{}", st.stderr_str());
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["status"], "running", "{v}");
    assert!(v["pid"].as_i64().is_some_and(|p| p > 0), "{v}");
    let ps = cryo_cli(&root, &["ps", "d1"]);
    assert_eq!(ps.code, 0, "{}", ps.stderr_str());
    assert!(ps.stdout_str().contains("sleep"), "{}", ps.stdout_str());
    let k = cryo_cli(&root, &["kill", "d1", "TERM"]);
    assert_eq!(k.code, 0, "{}", k.stderr_str());
    assert_eq!(sb.wait_exit(std::time::Duration::from_secs(20)), 128 + 15);
}
