//! Runs every capture scenario against the freshly built sockdump on this
//! machine's kernel, with each hook family it offers.

use std::path::PathBuf;
use std::process::Command;

fn binaries() -> (PathBuf, PathBuf) {
    let scenarios = PathBuf::from(env!("CARGO_BIN_EXE_sockdump-scenarios"));
    let sockdump = std::env::var_os("SOCKDUMP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| scenarios.with_file_name("sockdump"));
    assert!(sockdump.exists(), "{} is missing: build the workspace first (cargo build)", sockdump.display());
    (scenarios, sockdump)
}

/// Capture needs root; CI sets SOCKDUMP_REQUIRE_PRIVILEGED so a lost
/// privilege fails instead of skipping.
fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("SOCKDUMP_REQUIRE_PRIVILEGED").is_none(),
        "SOCKDUMP_REQUIRE_PRIVILEGED is set but the tests do not run as root"
    );
    eprintln!("SKIPPED: capture scenarios need root (run the tests with sudo)");
    false
}

fn run_scenarios(hook: &str) {
    let (scenarios, sockdump) = binaries();
    let out = Command::new(&scenarios)
        .args(["run", "--hook", hook, "--sockdump"])
        .arg(&sockdump)
        .output()
        .expect("run sockdump-scenarios");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scenarios failed with --hook {hook}");
    assert!(stdout.lines().filter(|l| l.ends_with(" PASS")).count() >= 20, "too few scenarios ran");
}

#[test]
fn scenarios_with_auto_hook() {
    if privileged() {
        run_scenarios("auto");
    }
}

#[test]
fn scenarios_with_tracepoints() {
    if privileged() {
        run_scenarios("tracepoint");
    }
}

/// fentry and kprobe: where the kernel offers them, the scenarios run with
/// them (the VM matrix pins which kernels must); where it refuses them, the
/// forced hook must fail quickly with one clear line.
#[test]
fn forced_hooks_capture_or_fail_cleanly() {
    if !privileged() {
        return;
    }
    let (scenarios, sockdump) = binaries();
    for hook in ["fentry", "kprobe"] {
        let out = Command::new(&scenarios)
            .args(["hook", "--hook", hook, "--sockdump"])
            .arg(&sockdump)
            .output()
            .expect("run sockdump-scenarios");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        assert!(out.status.success(), "--hook {hook} neither captured nor failed cleanly");
        assert!(stdout.contains(&format!("RESULT {hook} ")), "{stdout}");
    }
}
