//! Loads and attaches one hook family as `sockdump_ebpf::FAMILIES` describes
//! it; every failure becomes one line saying why the kernel refused.

use std::os::fd::AsFd;

use aya::programs::{BtfTracePoint, FEntry, FExit, KProbe, ProgramError, RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;
use sockdump_ebpf::{Attach, Family, Probe, Program};

use super::kretprobe::{self, Kretprobe};
use crate::messages::note;

/// Why this kernel certainly lacks `family`, found cheaply: without loading
/// it, or by loading a tiny probe program.
pub fn missing(family: &Family, loader: &mut EbpfLoader<'_>, btf: &Btf, verbose: bool) -> Option<String> {
    match family.probe {
        Probe::None => None,
        Probe::Path(path) if std::path::Path::new(path).exists() => None,
        Probe::Path(path) => Some(format!("this kernel lacks {path}{}", missing_hint(family))),
        Probe::BtfTypedef(name) => btf
            .id_by_type_name_kind(name, BtfKind::Typedef)
            .err()
            .map(|_| format!("this kernel has no {name} in its BTF (the tracepoint came in Linux 6.3)")),
        Probe::Load(program) => {
            let mut probe = match loader.load(sockdump_ebpf::probe_object()) {
                Ok(probe) => probe,
                Err(err) => return Some(format!("cannot load the {} probe: {err}", family.name)),
            };
            attach_program(&mut probe, &program, btf, verbose, &mut Vec::new()).err()
        }
    }
}

fn missing_hint(family: &Family) -> &'static str {
    if family.programs.iter().any(|p| matches!(p.attach, Attach::Kprobe(_) | Attach::Kretprobe(_))) {
        " (no kprobe PMU: CONFIG_KPROBES is off)"
    } else {
        ""
    }
}

/// Whether the kernel has the tracepoint `attach` names (always true for
/// function hooks: their absence shows when attaching).
pub fn kernel_has(attach: &Attach, btf: &Btf) -> bool {
    let event = match attach {
        Attach::TpBtf(name) => name,
        Attach::Tracepoint(target) => target.rsplit('/').next().unwrap_or(target),
        _ => return true,
    };
    btf.id_by_type_name_kind(&format!("btf_trace_{event}"), BtfKind::Typedef).is_ok()
}

/// Loads and attaches `programs` of `ebpf`, returning the kretprobes
/// sockdump owns itself; the error is one line (the whole verifier log with
/// `verbose`).
pub fn attach(
    ebpf: &mut Ebpf,
    programs: &[Program],
    btf: &Btf,
    verbose: bool,
) -> Result<Vec<Kretprobe>, String> {
    let mut kretprobes = Vec::new();
    for program in programs {
        attach_program(ebpf, program, btf, verbose, &mut kretprobes)?;
    }
    Ok(kretprobes)
}

fn attach_program(
    ebpf: &mut Ebpf,
    program: &Program,
    btf: &Btf,
    verbose: bool,
    kretprobes: &mut Vec<Kretprobe>,
) -> Result<(), String> {
    let explain = |what: &str, err: ProgramError| explain_program_error(&program.attach, what, err, verbose);
    let loaded = ebpf
        .program_mut(program.name)
        .ok_or_else(|| format!("eBPF object has no program {}", program.name))?;
    let wrong_type = |e: ProgramError| format!("{}: {e}", program.name);
    match program.attach {
        Attach::Fentry(function) => {
            let p: &mut FEntry = loaded.try_into().map_err(wrong_type)?;
            p.load(function, btf).and_then(|()| p.attach().map(drop)).map_err(|e| explain(function, e))
        }
        Attach::Fexit(function) => {
            let p: &mut FExit = loaded.try_into().map_err(wrong_type)?;
            p.load(function, btf).and_then(|()| p.attach().map(drop)).map_err(|e| explain(function, e))
        }
        Attach::TpBtf(tracepoint) => {
            let p: &mut BtfTracePoint = loaded.try_into().map_err(wrong_type)?;
            p.load(tracepoint, btf).and_then(|()| p.attach().map(drop)).map_err(|e| explain(tracepoint, e))
        }
        Attach::Tracepoint(tracepoint) => {
            let p: &mut TracePoint = loaded.try_into().map_err(wrong_type)?;
            let (category, name) = tracepoint.split_once('/').unwrap_or(("", tracepoint));
            p.load().and_then(|()| p.attach(category, name).map(drop)).map_err(|e| explain(tracepoint, e))
        }
        Attach::RawTracepoint(tracepoint) => {
            let p: &mut RawTracePoint = loaded.try_into().map_err(wrong_type)?;
            p.load().and_then(|()| p.attach(tracepoint).map(drop)).map_err(|e| explain(tracepoint, e))
        }
        Attach::Kprobe(functions) | Attach::Kretprobe(functions) => {
            let p: &mut KProbe = loaded.try_into().map_err(wrong_type)?;
            p.load().map_err(|e| explain(program.name, e))?;
            // without them, the kernel's default number of tracked returns applies
            if let (Attach::Kretprobe(_), Some(attached)) =
                (program.attach, attach_kretprobes(p, functions, verbose))
            {
                kretprobes.extend(attached);
                return Ok(());
            }
            for function in functions {
                p.attach(*function, 0).map_err(|e| explain(function, e))?;
            }
            Ok(())
        }
    }
}

/// kretprobes made through tracefs, which choose how many returns the
/// kernel tracks; None where tracefs is missing or read-only.
fn attach_kretprobes(program: &KProbe, functions: &[&str], verbose: bool) -> Option<Vec<Kretprobe>> {
    let tracefs = kretprobe::tracefs()?;
    let fd = program.fd().ok()?.as_fd();
    match kretprobe::attach(&tracefs, functions, fd) {
        Ok(attached) => Some(attached),
        Err(err) => {
            if verbose {
                note(format_args!(
                    "sockdump: cannot create kretprobes in {} ({err}): the kernel's default \
                     number of tracked sends in progress applies",
                    tracefs.display()
                ));
            }
            None
        }
    }
}

/// The kernel's internal "operation not supported" (not in libc), which BPF
/// returns for trampolines on unsupported functions.
const ENOTSUPP: i32 = 524;

/// aya turns an instruction whose CO-RE relocation failed into a call to
/// helper 0xbad2310, which the verifier reports as `unknown#195896080`.
const CORE_POISON: &str = "195896080";

/// One line for a refused program; the verifier's last words, or all of
/// them when verbose.
fn explain_program_error(attach: &Attach, what: &str, err: ProgramError, verbose: bool) -> String {
    let trampoline = matches!(attach, Attach::Fentry(_) | Attach::Fexit(_));
    let kprobe = matches!(attach, Attach::Kprobe(_) | Attach::Kretprobe(_));
    match err {
        ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let rejected = !log.trim().is_empty();
            let hint = match io_error.raw_os_error() {
                _ if log.contains(CORE_POISON) => {
                    " (a CO-RE relocation failed: a kernel field sockdump reads does not exist on this kernel)"
                }
                Some(libc::EPERM) if trampoline => {
                    " (the kernel refuses BPF trampolines here, e.g. ftrace is locked down)"
                }
                Some(libc::EPERM) => " (missing privileges or a kernel lockdown)",
                Some(ENOTSUPP | libc::EOPNOTSUPP | libc::EINVAL) if trampoline && !rejected => {
                    " (this kernel has no BPF trampolines for this architecture or function)"
                }
                _ => "",
            };
            if verbose && rejected {
                format!("loading {what} failed: {io_error}{hint}; verifier log:\n{log}")
            } else {
                format!("loading {what} failed: {io_error}{hint}{}", summarize_verifier_log(&log))
            }
        }
        ProgramError::SyscallError(err) => {
            let hint = match err.io_error.raw_os_error() {
                Some(libc::ENOENT) if kprobe => {
                    " (no kprobe support: CONFIG_KPROBES is off, or the function is not probeable)"
                }
                Some(libc::ENOENT) if matches!(attach, Attach::TpBtf(_)) => {
                    " (no such tracepoint: for sys_enter/sys_exit, CONFIG_FTRACE_SYSCALLS is off)"
                }
                // the program loads, but the trampoline cannot be patched in
                Some(ENOTSUPP) if trampoline => {
                    " (this kernel cannot attach BPF trampolines to its functions: arm64 can from 6.4)"
                }
                _ => "",
            };
            format!("attaching to {what} failed: {} returned {}{hint}", err.call, err.io_error)
        }
        other => {
            let mut text = format!("{what}: {other}");
            let mut source = std::error::Error::source(&other);
            while let Some(cause) = source {
                text += &format!(": {cause}");
                source = cause.source();
            }
            let hint = if kprobe && (text.contains("kprobe") || text.contains("No such file")) {
                " (no kprobe support: CONFIG_KPROBES is off)"
            } else {
                ""
            };
            text + hint
        }
    }
}

/// The verifier's verdict is in the last lines of its log, before the
/// statistics it prints at the end.
fn summarize_verifier_log(log: &str) -> String {
    let is_statistics = |line: &str| {
        ["verification time", "stack depth", "processed ", "max_states_per_insn"]
            .iter()
            .any(|stat| line.starts_with(stat))
    };
    let tail: Vec<&str> =
        log.lines().filter(|l| !l.trim().is_empty() && !is_statistics(l)).rev().take(2).collect();
    if tail.is_empty() {
        return String::new();
    }
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("; verifier: {} (-v shows the whole log)", tail.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_summary_keeps_the_last_lines() {
        let log = "0: (b7) r0 = 0\n1: (95) exit\n\nR1 invalid mem access 'scalar'\n\
                   verification time 4905 usec\nstack depth 208\nprocessed 2 insns (limit 1000000)\n";
        assert_eq!(
            summarize_verifier_log(log),
            "; verifier: 1: (95) exit | R1 invalid mem access 'scalar' (-v shows the whole log)"
        );
        assert_eq!(summarize_verifier_log(""), "");
    }
}
