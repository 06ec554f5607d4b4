//! Every way sockdump can refuse to start says why in one line and exits
//! non-zero, before it captures anything.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use common::{one_line_error, skip_unless_root, sockdump, usage_error, SOCKDUMP};

#[test]
fn invalid_options() {
    for (args, says) in [
        (&["--seg-size", "0"][..], "--seg-size"),
        (&["--seg-size", "65537"], "65537 is not in 1..=65536"),
        (&["--segs-per-msg", "0"], "--segs-per-msg"),
        (&["--format", "xml"], "invalid value 'xml' for '--format"),
        (&["--hook", "uprobe"], "--hook"),
        (&["--pid", "x"], "--pid"),
    ] {
        let err = usage_error(args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let long = format!("/tmp/{}", "x".repeat(103));
    let err = one_line_error(&sockdump(&["--sock", &long]));
    assert!(err.contains("108 bytes, but a unix socket path holds at most 107 bytes"), "{err}");
}

#[test]
fn unwritable_output() {
    if skip_unless_root("unwritable_output") {
        return;
    }
    let err = one_line_error(&sockdump(&["--output", "/proc/no-such-dir/capture.txt"]));
    assert!(err.contains("cannot write /proc/no-such-dir/capture.txt"), "{err}");
}

#[test]
fn missing_capabilities() {
    if skip_unless_root("missing_capabilities") {
        return;
    }
    let out = Command::new(SOCKDUMP).uid(65534).gid(65534).output().unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("needs root or CAP_BPF + CAP_PERFMON (missing CAP_BPF + CAP_PERFMON)"), "{err}");
    assert!(err.contains("sudo sockdump extcap install --system --setcap"), "{err}");
}

/// Runs `command` in a private mount namespace after `setup` (shell commands).
fn in_mount_namespace(setup: &str, command: &str) -> Output {
    Command::new("unshare")
        .args(["--mount", "sh", "-c", &format!("{setup}; exec {command}")])
        .output()
        .expect("unshare (util-linux)")
}

#[test]
fn kernel_without_btf() {
    if skip_unless_root("kernel_without_btf") {
        return;
    }
    let out = in_mount_namespace("mount -t tmpfs none /sys/kernel/btf", &format!("{SOCKDUMP} -c 1"));
    let err = one_line_error(&out);
    assert!(err.contains("kernel has no BTF at /sys/kernel/btf/vmlinux"), "{err}");
}

/// `--hook auto` captures on a machine without tracefs and without the
/// privilege to mount it, with the family auto picks: on the CI hosts (no
/// kprobes, no fentry) the tracepoints, attached through the bpf syscall.
/// `--hook kprobe` without writable tracefs (kretprobes fall back to the perf
/// PMU) is checked where kprobes exist: the VM matrix's ro-tracefs row.
#[test]
fn auto_hook_captures_without_tracefs() {
    if skip_unless_root("auto_hook_captures_without_tracefs") {
        return;
    }
    let out = in_mount_namespace(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         umount /sys/kernel/debug 2>/dev/null; \
         if [ -n \"$(ls -A /sys/kernel/tracing)\" ]; then echo tracefs is still mounted >&2; exit 99; fi",
        &format!(
            "sh -c 'err=$(mktemp); \
             setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin {SOCKDUMP} --format string -c 1 \
             --comm sdnotracefs 2>$err & \
             for i in $(seq 600); do grep -q ^listening $err && break; sleep 0.1; done; \
             python3 -c \"import socket,ctypes; ctypes.CDLL(None).prctl(15, b\\\"sdnotracefs\\\", 0, 0, 0); \
             a, b = socket.socketpair(); a.send(b\\\"no tracefs needed\\\")\"; wait; cat $err >&2; rm $err'"
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("no tracefs needed"), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("1 packets captured, 0 lost"), "{stderr}");
}
