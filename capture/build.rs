//! Compiles the XDP program (`bpf/mrte_xdp.c`) with clang when the `xdp` feature is on.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/mrte_xdp.c");
    if std::env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("mrte_xdp.o");
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "",
    };
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", "bpf/mrte_xdp.c", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {clang} for bpf/mrte_xdp.c: {e} (install clang)"));
    assert!(
        status.success(),
        "{clang} failed on bpf/mrte_xdp.c (needs clang, libbpf-dev, linux-libc-dev)"
    );
}
