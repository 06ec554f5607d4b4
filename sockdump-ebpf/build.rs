//! Compiles the C eBPF programs with clang into one CO-RE object.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCES: &[&str] =
    &["bpf/sockdump.bpf.c", "bpf/capture.h", "bpf/compat.h", "bpf/kernel_types.h", "include/sockdump_abi.h"];

fn main() {
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-env-changed=SOCKDUMP_CLANG");
    println!("cargo:rerun-if-env-changed=SOCKDUMP_BPF_CFLAGS");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("sockdump.bpf.o");
    let clang = env::var("SOCKDUMP_CLANG").unwrap_or_else(|_| "clang".into());
    // Extra flags, e.g. -DSOCKDUMP_BREAK_CORE to prove the VM matrix catches a bad relocation.
    let extra = env::var("SOCKDUMP_BPF_CFLAGS").unwrap_or_default();

    let status = Command::new(&clang)
        .args(["-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86"])
        .args(["-Wall", "-Werror", "-Iinclude", "-Ibpf"])
        .args(extra.split_whitespace())
        .arg("-c")
        .arg("bpf/sockdump.bpf.c")
        .arg("-o")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {clang} ({e}): install clang, llvm and libbpf-dev to build the eBPF programs")
        });
    assert!(status.success(), "{clang} failed to compile the eBPF programs");

    // Keep .BTF/.BTF.ext for CO-RE, drop DWARF: the object is embedded in the binary.
    let strip = env::var("SOCKDUMP_LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".into());
    let status = Command::new(&strip)
        .arg("-g")
        .arg(&object)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {strip} ({e}): install llvm"));
    assert!(status.success(), "{strip} failed");
}
