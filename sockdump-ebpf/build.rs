//! Compiles the C eBPF programs with clang: one CO-RE object per hook family,
//! so loading (and falling back) relocates only the programs it uses.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// One object per hook family, the fentry probe, and the benchmarks' floor:
/// (source, object, defines). fentry and kprobe also load on 5.10, whose
/// BPF has no fetching atomics (5.12): a second object for it.
const OBJECTS: &[(&str, &str, &[&str])] = &[
    ("fentry", "fentry", &["-DSOCKDUMP_ATOMIC_FETCH"]),
    ("fentry", "fentry-5.10", &[]),
    ("socket", "socket", &["-DSOCKDUMP_ATOMIC_FETCH"]),
    ("kprobe", "kprobe", &["-DSOCKDUMP_ATOMIC_FETCH"]),
    ("kprobe", "kprobe-5.10", &[]),
    ("tracepoint", "tracepoint", &[]),
    ("probe", "probe", &[]),
    ("floor", "floor", &[]),
];

const HEADERS: &[&str] = &[
    "bpf/capture.h",
    "bpf/compat.h",
    "bpf/kernel_types.h",
    "bpf/readers.h",
    "bpf/syscall_send.h",
    "include/sockdump_abi.h",
];

fn main() {
    for header in HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    for (source, _, _) in OBJECTS {
        println!("cargo:rerun-if-changed=bpf/{source}.bpf.c");
    }
    println!("cargo:rerun-if-env-changed=SOCKDUMP_CLANG");
    println!("cargo:rerun-if-env-changed=SOCKDUMP_BPF_CFLAGS");
    println!("cargo:rerun-if-env-changed=SOCKDUMP_LLVM_STRIP");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // the architecture the binary is built for: the programs read its
    // registers and syscall numbers (bpf/kernel_types.h, bpf/syscall_send.h)
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "-D__TARGET_ARCH_x86",
        Ok("aarch64") => "-D__TARGET_ARCH_arm64",
        other => panic!("the eBPF programs are written for x86_64 and aarch64, not {other:?}"),
    };
    let clang = env::var("SOCKDUMP_CLANG").unwrap_or_else(|_| "clang".into());
    let strip = env::var("SOCKDUMP_LLVM_STRIP").unwrap_or_else(|_| "llvm-strip".into());
    // Extra flags, e.g. to prove the VM matrix catches a broken CO-RE access.
    let extra = env::var("SOCKDUMP_BPF_CFLAGS").unwrap_or_default();

    for (source, name, defines) in OBJECTS {
        let object = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-g", "-O2", "-target", "bpf", "-mcpu=v3", arch])
            .args(["-Wall", "-Werror", "-Iinclude", "-Ibpf"])
            .args(*defines)
            .args(extra.split_whitespace())
            .arg("-c")
            .arg(format!("bpf/{source}.bpf.c"))
            .arg("-o")
            .arg(&object)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {clang} ({e}): install clang, llvm and libbpf-dev to build the eBPF programs"
                )
            });
        assert!(status.success(), "{clang} failed to compile bpf/{source}.bpf.c into {name}");

        // Keep .BTF/.BTF.ext for CO-RE, drop DWARF: the objects are embedded in the binary.
        let status = Command::new(&strip)
            .arg("-g")
            .arg(&object)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {strip} ({e}): install llvm"));
        assert!(status.success(), "{strip} failed");
    }
}
