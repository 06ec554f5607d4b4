//! Runs every capture scenario against the freshly built sockdump on this
//! machine's kernel, with each hook family it offers.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use sockdump_test_support::skip_unless_root;

/// One run at a time: a capture counts the sends other runs' hooks lose
/// (sendmmsg-20 with the tracepoint family), and its scenarios require an
/// exact count.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::new(());
    MACHINE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn binaries() -> (PathBuf, PathBuf) {
    let scenarios = PathBuf::from(env!("CARGO_BIN_EXE_sockdump-scenarios"));
    let sockdump = std::env::var_os("SOCKDUMP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| scenarios.with_file_name("sockdump"));
    assert!(sockdump.exists(), "{} is missing: build the workspace first (cargo build)", sockdump.display());
    (scenarios, sockdump)
}

fn run_scenarios(hook: &str) {
    let _machine = one_at_a_time();
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
    if skip_unless_root("scenarios_with_auto_hook") {
        return;
    }
    run_scenarios("auto");
}

#[test]
fn scenarios_with_tracepoints() {
    if skip_unless_root("scenarios_with_tracepoints") {
        return;
    }
    run_scenarios("tracepoint");
}

/// fentry and kprobe: where the kernel offers them, the scenarios run with
/// them (the VM matrix pins which kernels must); where it refuses them, the
/// forced hook must fail quickly with one clear line.
#[test]
fn forced_hooks_capture_or_fail_cleanly() {
    if skip_unless_root("forced_hooks_capture_or_fail_cleanly") {
        return;
    }
    let _machine = one_at_a_time();
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
