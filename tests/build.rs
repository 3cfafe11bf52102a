//! Detects musl-gcc at build time so the musl guest variants are reported
//! as ignored ("musl-gcc not installed") rather than passing vacuously.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_musl_gcc)");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=build.rs");
    let dirs: Vec<_> = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).collect())
        .unwrap_or_default();
    // Re-run when a PATH directory changes (musl-tools installed or removed).
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let found = dirs
        .iter()
        .any(|dir| Path::new(dir).join("musl-gcc").is_file());
    if !found {
        println!("cargo::rustc-cfg=no_musl_gcc");
        println!("cargo::warning=musl-gcc not found: musl guest variants will be ignored (apt-get install musl-tools)");
    }
}
