//! Builds the vDSO (vdso/vdso.c) into a small position-independent shared
//! object with the system C compiler; src/vdso/mod.rs embeds it.
//!
//! The flags make an image the Sentry can map as it is: no libc, no
//! relocations (-Bsymbolic, hidden data, no GOT), no writable data, one
//! read-execute segment laid out by vdso/vdso.lds, both hash tables (glibc
//! reads DT_GNU_HASH or DT_HASH, musl DT_HASH only), soname
//! linux-vdso.so.1 and the LINUX_2.6 symbol version both libcs look up.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("vdso");
    for f in ["vdso.c", "vdso.lds", "vdso.map"] {
        println!("cargo:rerun-if-changed=vdso/{f}");
    }
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("vdso.so");
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if target_arch != "x86_64" {
        // Only x86_64 has a vDSO source so far: an empty image means none.
        std::fs::write(&out, b"").expect("writing an empty vDSO image");
        return;
    }
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let lds = src.join("vdso.lds");
    let map = src.join("vdso.map");
    let status = Command::new(&cc)
        .args([
            "-nostdlib",
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            "-Werror",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-fcf-protection=none",
            "-mno-sse",
            "-mno-mmx",
            "-Wl,--hash-style=both",
            "-Wl,-soname,linux-vdso.so.1",
            "-Wl,-Bsymbolic",
            "-Wl,--no-undefined",
            "-Wl,--build-id=none",
            "-Wl,-z,max-page-size=4096",
            "-Wl,-z,noexecstack",
        ])
        .arg(format!("-Wl,--version-script,{}", map.display()))
        .arg(format!("-Wl,-T,{}", lds.display()))
        .arg("-o")
        .arg(&out)
        .arg(src.join("vdso.c"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc} to build the vDSO: {e}"));
    assert!(status.success(), "{cc} failed to build the vDSO ({status})");
}
