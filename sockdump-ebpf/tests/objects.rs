//! Holds the names in `lib.rs` (programs, maps, the settings global) to the
//! compiled objects, so a renamed C function fails here rather than when a
//! user's kernel first takes the path that loads it.

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use sockdump_ebpf::{
    floor, maps, probe_object, Attach, Preemption, Probe, Program, FAMILIES, PROCESS_PROGRAMS, SETTINGS,
};

struct Parsed {
    /// (function name, section name) of every program
    programs: Vec<(String, String)>,
    maps: Vec<String>,
    /// (name, size) of every global in .rodata
    rodata: Vec<(String, u64)>,
}

fn parse(object: &[u8]) -> Parsed {
    let file = object::File::parse(object).expect("an ELF object");
    let mut parsed = Parsed { programs: Vec::new(), maps: Vec::new(), rodata: Vec::new() };
    for symbol in file.symbols() {
        let Some(section) = symbol.section_index().and_then(|i| file.section_by_index(i).ok()) else {
            continue;
        };
        let (name, section) = (symbol.name().unwrap().to_string(), section.name().unwrap().to_string());
        match (symbol.kind(), section.as_str()) {
            // global BPF functions (verified once) live in .text: not programs
            (SymbolKind::Text, ".text") => {}
            (SymbolKind::Text, _) => parsed.programs.push((name, section)),
            (_, ".maps") => parsed.maps.push(name),
            (_, ".rodata") => parsed.rodata.push((name, symbol.size())),
            _ => {}
        }
    }
    parsed
}

/// Each program is in the object, in a section of its kind naming its target
/// where the section names one; and the object holds no other program (so
/// nothing only the benchmarks use ships in sockdump).
fn check_programs(what: &str, parsed: &Parsed, programs: &[Program]) {
    for program in programs {
        let section = parsed
            .programs
            .iter()
            .find(|(name, _)| name == program.name)
            .map(|(_, section)| section.as_str())
            .unwrap_or_else(|| panic!("{what}: no program {}", program.name));
        let (kind, target) = section.split_once('/').map_or((section, None), |(k, t)| (k, Some(t)));
        assert_eq!(kind, program.attach.section(), "{what}: section of {}", program.name);
        // a section naming a function must name the only one it attaches to
        if let Some(target) = target {
            assert_eq!(
                program.attach.targets(),
                [target],
                "{what}: {} is in SEC(\"{section}\")",
                program.name
            );
        }
    }
    for (name, _) in &parsed.programs {
        assert!(programs.iter().any(|p| p.name == name), "{what}: program {name} is not in lib.rs's table");
    }
}

#[test]
fn family_objects_hold_what_the_table_names() {
    let settings_size = std::mem::size_of::<sockdump_common::abi::Settings>() as u64;
    for (family, fetching) in FAMILIES.iter().flat_map(|f| [(f, true), (f, false)]) {
        let parsed = parse(family.object(fetching));
        let programs: Vec<Program> = family.all_programs().chain(PROCESS_PROGRAMS).copied().collect();
        check_programs(family.name, &parsed, &programs);
        for map in maps::ALL {
            assert!(parsed.maps.iter().any(|m| m == map), "{}: no map {map}", family.name);
        }
        assert_eq!(
            parsed.maps.iter().any(|m| m == maps::READS),
            family.sees_readers,
            "{}: a reads map exactly where the family sees readers",
            family.name
        );
        assert_eq!(
            parsed.rodata.iter().find(|(name, _)| name == SETTINGS).map(|(_, size)| *size),
            Some(settings_size),
            "{}: the {SETTINGS} global is missing or not a struct sockdump_settings",
            family.name
        );
    }
}

/// How many atomic instructions with BPF_FETCH (5.12+; 5.10 refuses any
/// atomic with a nonzero immediate) the programs of `object` hold.
fn fetching_atomics(object: &[u8]) -> usize {
    const BPF_STX_ATOMIC: [u8; 2] = [0xc3, 0xdb]; // 32 and 64 bits
    const BPF_FETCH: u32 = 1;
    let file = object::File::parse(object).expect("an ELF object");
    file.sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
        .flat_map(|s| s.data().expect("section data").chunks_exact(8).map(<[u8]>::to_vec).collect::<Vec<_>>())
        .filter(|insn| {
            let imm = u32::from_le_bytes(insn[4..8].try_into().expect("8-byte instructions"));
            BPF_STX_ATOMIC.contains(&insn[0]) && imm & BPF_FETCH != 0
        })
        .count()
}

/// Where a family has an object for 5.10, it holds no instruction 5.10
/// refuses, and the other one uses what it was built for.
#[test]
fn objects_for_5_10_have_no_fetching_atomics() {
    for family in FAMILIES {
        let (old, new) = (family.object(false), family.object(true));
        if old.as_ptr() != new.as_ptr() {
            assert_eq!(fetching_atomics(old), 0, "{}'s object for 5.10", family.name);
            assert!(fetching_atomics(new) > 0, "{}'s object for 5.12+", family.name);
        }
    }
    assert!(fetching_atomics(FAMILIES.iter().find(|f| f.name == "socket").unwrap().object(true)) > 0);
}

#[test]
fn probe_and_floor_objects_hold_what_the_table_names() {
    let probes: Vec<Program> = FAMILIES
        .iter()
        .filter_map(|f| match f.probe {
            Probe::Load(program) => Some(program),
            _ => None,
        })
        .collect();
    check_programs("probe", &parse(probe_object()), &probes);
    let all: Vec<Program> = FAMILIES.iter().flat_map(|f| f.all_programs().copied()).collect();
    check_programs("floor", &parse(floor::object()), &all);
}

#[test]
fn families_have_unique_names_and_attach_exits_first() {
    let is_exit = |p: &Program| {
        matches!(
            p.attach,
            Attach::Fexit(_)
                | Attach::Kretprobe(_)
                | Attach::TpBtf("sys_exit")
                | Attach::Tracepoint("raw_syscalls/sys_exit")
        )
    };
    for (i, family) in FAMILIES.iter().enumerate() {
        assert!(FAMILIES[..i].iter().all(|f| f.name != family.name), "{} twice", family.name);
        for programs in [Some(family.programs), family.unpreempted].into_iter().flatten() {
            let first_entry = programs.iter().position(|p| !is_exit(p)).unwrap_or(programs.len());
            assert!(
                programs[first_entry..].iter().all(|p| !is_exit(p)),
                "{}: an exit after an entry",
                family.name
            );
        }
    }
}

/// The programs a family falls back to where the kernel preempts its own
/// are ones the kernel never preempts.
#[test]
fn unpreempted_programs_are_never_preempted() {
    let worst = Preemption { kernel_preempts: true, raw_tracepoints_preemptible: true };
    for family in FAMILIES {
        for program in family.unpreempted.unwrap_or_default() {
            assert!(!program.attach.preemptible(worst), "{}: {}", family.name, program.name);
        }
        assert!(family.programs_for(Preemption::default()) == Ok(family.programs), "{}", family.name);
    }
}
