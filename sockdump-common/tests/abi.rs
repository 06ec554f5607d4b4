//! Holds `sockdump_common::abi` to the C header the eBPF programs are built
//! with: compiles the header with the host C compiler, prints every offset and
//! constant, and compares them with the Rust mirror.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use sockdump_common::abi;

fn header() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sockdump-ebpf/include/sockdump_abi.h")
}

/// Runs a C program that includes the header and prints `name value` lines.
fn c_values(body: &str) -> BTreeMap<String, u64> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("probe.c");
    let program = dir.path().join("probe");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\nint main(void) {{\n{body}\nreturn 0;\n}}\n",
            header().display()
        ),
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-Wall", "-Werror", "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(status.success(), "the ABI header does not compile with {cc}");
    let out = Command::new(&program).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn print_value(name: &str, expr: &str) -> String {
    format!("printf(\"{name} %llu\\n\", (unsigned long long)({expr}));\n")
}

/// Compares the offset and size of every field, and the struct's size, with C.
fn assert_layout(c_struct: &str, size: usize, fields: &[abi::Field]) {
    let mut body = print_value("size", &format!("sizeof(struct {c_struct})"));
    for f in fields {
        body +=
            &print_value(&format!("{}.offset", f.name), &format!("offsetof(struct {c_struct}, {})", f.name));
        body += &print_value(
            &format!("{}.size", f.name),
            &format!("sizeof(((struct {c_struct} *)0)->{})", f.name),
        );
    }
    let c = c_values(&body);
    assert_eq!(c["size"], size as u64, "sizeof(struct {c_struct})");
    for f in fields {
        assert_eq!(c[&format!("{}.offset", f.name)], f.offset as u64, "offset of {c_struct}.{}", f.name);
        assert_eq!(c[&format!("{}.size", f.name)], f.size as u64, "size of {c_struct}.{}", f.name);
    }
}

/// Field names of `struct c_struct`, read from the header text, so a field
/// added in C without a Rust counterpart fails the tests.
fn header_fields(c_struct: &str) -> Vec<String> {
    let text = std::fs::read_to_string(header()).unwrap();
    let start = text.find(&format!("struct {c_struct} {{")).expect("struct in header");
    let end = start + text[start..].find("};").unwrap();
    let mut names = Vec::new();
    for line in text[start..end].lines().skip(1) {
        let decl = line.split("/*").next().unwrap().trim();
        let Some(decl) = decl.strip_suffix(';') else {
            continue;
        };
        let name = decl.rsplit(' ').next().unwrap();
        names.push(name.split('[').next().unwrap().to_string());
    }
    names
}

#[test]
fn record_fields_match_the_header() {
    assert_layout("sockdump_event", abi::event::SIZE, abi::event::FIELDS);
    assert_layout("sockdump_read", abi::read::SIZE, abi::read::FIELDS);
    assert_layout("sockdump_proc", abi::proc::SIZE, abi::proc::FIELDS);
    assert_layout("sockdump_exec", abi::exec::SIZE, abi::exec::FIELDS);
}

#[test]
fn every_record_field_is_mirrored() {
    for (c_struct, fields) in [
        ("sockdump_event", abi::event::FIELDS),
        ("sockdump_read", abi::read::FIELDS),
        ("sockdump_proc", abi::proc::FIELDS),
        ("sockdump_exec", abi::exec::FIELDS),
    ] {
        let mirrored: Vec<&str> = fields.iter().map(|f| f.name).collect();
        for name in header_fields(c_struct) {
            assert!(
                name.starts_with("pad") || mirrored.contains(&name.as_str()),
                "header field {name} of {c_struct} is not mirrored in sockdump_common::abi"
            );
        }
    }
}

/// The fields of `abi::Settings` with their Rust offsets and sizes.
macro_rules! settings_fields {
    ($($name:ident),+ $(,)?) => {{
        let zero = abi::Settings::ZERO;
        vec![$(abi::Field {
            name: stringify!($name),
            offset: std::mem::offset_of!(abi::Settings, $name),
            size: std::mem::size_of_val(&zero.$name),
        }),+]
    }};
}

#[test]
fn settings_match_the_header() {
    let fields = settings_fields!(
        self_pidns_dev,
        self_pidns_ino,
        filter_ino,
        wakeup_bytes,
        self_tgid,
        filter_dev,
        filter_pid,
        filter_comm_len,
        filter_path_len,
        seg_size,
        segs_per_msg,
        filter_uid_on,
        filter_uid,
        exclude_tgid,
        filter_comm,
        filter_path,
        readers,
        filter_cgroups,
        filter_tracked,
    );
    assert_layout("sockdump_settings", std::mem::size_of::<abi::Settings>(), &fields);
    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
    assert_eq!(header_fields("sockdump_settings"), names, "every header field, in order");
}

#[test]
fn constants_match_the_header() {
    let pairs: &[(&str, u64)] = &[
        ("SOCKDUMP_DATA_MAX", abi::DATA_MAX.into()),
        ("SOCKDUMP_SEGS_MAX", abi::SEGS_MAX.into()),
        ("SOCKDUMP_PATH_MAX", abi::PATH_MAX as u64),
        ("SOCKDUMP_COMM_LEN", abi::COMM_LEN as u64),
        ("SOCKDUMP_SCRATCH_SLOTS", abi::SCRATCH_SLOTS.into()),
        ("SOCKDUMP_F_TRUNC_SIZE", abi::flag::TRUNC_SIZE.into()),
        ("SOCKDUMP_F_TRUNC_SEGS", abi::flag::TRUNC_SEGS.into()),
        ("SOCKDUMP_F_UNREADABLE", abi::flag::UNREADABLE.into()),
        ("SOCKDUMP_F_PEER_IS_DEST", abi::flag::PEER_IS_DEST.into()),
        ("SOCKDUMP_LOST_RINGBUF", abi::counter::LOST_RINGBUF.into()),
        ("SOCKDUMP_LOST_MMSG", abi::counter::LOST_MMSG.into()),
        ("SOCKDUMP_LOST_INFLIGHT", abi::counter::LOST_INFLIGHT.into()),
        ("SOCKDUMP_LOST_NO_EXIT", abi::counter::LOST_NO_EXIT.into()),
        ("SOCKDUMP_LOST_READS", abi::counter::LOST_READS.into()),
        ("SOCKDUMP_LOST_PROCS", abi::counter::LOST_PROCS.into()),
        ("SOCKDUMP_LOST_TRACKED", abi::counter::LOST_TRACKED.into()),
        ("SOCKDUMP_COUNTER_MAX", abi::counter::COUNT.into()),
        ("SOCKDUMP_ARGS_MAX", abi::ARGS_MAX as u64),
        ("SOCKDUMP_CGROUP_DEPTH", abi::CGROUP_DEPTH as u64),
        ("SOCKDUMP_CGROUP_NAME_MAX", abi::CGROUP_NAME_MAX as u64),
        ("SOCKDUMP_PROC_EXEC", abi::proc_kind::EXEC.into()),
        ("SOCKDUMP_PROC_FORK", abi::proc_kind::FORK.into()),
        ("SOCKDUMP_PROC_F_ARGS_TRUNC", abi::proc_flag::ARGS_TRUNC.into()),
        ("SOCKDUMP_PROC_F_ARGS_UNREADABLE", abi::proc_flag::ARGS_UNREADABLE.into()),
        ("SOCKDUMP_CGROUP_WANTED", abi::cgroup_verdict::WANTED.into()),
        ("SOCKDUMP_CGROUP_UNWANTED", abi::cgroup_verdict::UNWANTED.into()),
        ("SOCKDUMP_SOCK_STREAM", abi::sock_type::STREAM.into()),
        ("SOCKDUMP_SOCK_DGRAM", abi::sock_type::DGRAM.into()),
        ("SOCKDUMP_SOCK_SEQPACKET", abi::sock_type::SEQPACKET.into()),
    ];
    let body: String = pairs.iter().map(|(name, _)| print_value(name, name)).collect();
    let c = c_values(&body);
    for (name, rust) in pairs {
        assert_eq!(c[*name], *rust, "{name}");
    }
}
