//! What the running kernel offers sockdump's programs: fetching atomics,
//! and whether it may preempt them, which makes it skip them for other
//! tasks' sends (docs/DESIGN.md, "Preemptible programs"). Read from the release, the model debugfs shows where it is
//! mounted and readable, else the build's preemption flags (`uname -v`),
//! `preempt=` and the build config in /boot.

use sockdump_ebpf::Preemption;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// BPF's fetching atomic add came in 5.12, and to arm64's JIT in 5.18;
/// before, the fentry and kprobe objects count reads without it
/// (bpf/readers.h). Unknown counts as older.
const FETCHING_ATOMICS: (u32, u32) = if cfg!(target_arch = "aarch64") { (5, 18) } else { (5, 12) };

/// Whether the running kernel's BPF has fetching atomics.
pub fn has_fetching_atomics() -> bool {
    fetching_atomics_in(read("/proc/sys/kernel/osrelease").trim())
}

fn fetching_atomics_in(release: &str) -> bool {
    version_of(release).is_some_and(|v| v >= FETCHING_ATOMICS)
}

/// How the running kernel preempts.
pub fn preemption() -> Preemption {
    let release = read("/proc/sys/kernel/osrelease");
    let release = release.trim();
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).ok();
    of(&Kernel {
        release,
        version: &read("/proc/sys/kernel/version"),
        debugfs_model: &read("/sys/kernel/debug/sched/preempt"),
        cmdline: &read("/proc/cmdline"),
        config: config.as_deref(),
    })
}

/// What the kernel says of itself (each empty or None where unreadable).
struct Kernel<'a> {
    release: &'a str,
    /// `uname -v`
    version: &'a str,
    /// debugfs `sched/preempt`: the models, the running one in parentheses
    debugfs_model: &'a str,
    cmdline: &'a str,
    config: Option<&'a str>,
}

/// From 7.0 (commit 7dadeaa6e851) x86 and arm64 only offer the full and
/// lazy models; from 7.0 (a46023d5616e, f7d327654b88) tracepoints run BPF
/// programs with only migration disabled.
const ALWAYS_PREEMPTS: (u32, u32) = (7, 0);

fn of(kernel: &Kernel) -> Preemption {
    let new = version_of(kernel.release).is_some_and(|v| v >= ALWAYS_PREEMPTS);
    Preemption { kernel_preempts: new || model_preempts(kernel), raw_tracepoints_preemptible: new }
}

/// Before 7.0: debugfs names the running model (`none voluntary (full)`);
/// else `uname -v` names one flag, the last of PREEMPT, PREEMPT_DYNAMIC and
/// PREEMPT_RT the build has, and a dynamic kernel runs the model the last
/// `preempt=` names, else its config's. Unknown counts as the distributions'
/// voluntary.
fn model_preempts(kernel: &Kernel) -> bool {
    let running =
        kernel.debugfs_model.split_whitespace().find_map(|m| m.strip_prefix('(')?.strip_suffix(')'));
    if let Some(model) = running {
        return matches!(model, "full" | "lazy");
    }
    let flags: Vec<&str> = kernel.version.split_whitespace().collect();
    if flags.contains(&"PREEMPT_RT") || flags.contains(&"PREEMPT") {
        return true;
    }
    if !flags.contains(&"PREEMPT_DYNAMIC") {
        return false;
    }
    if let Some(mode) =
        kernel.cmdline.split_whitespace().filter_map(|arg| arg.strip_prefix("preempt=")).next_back()
    {
        return matches!(mode, "full" | "lazy");
    }
    kernel.config.is_some_and(|config| {
        config.lines().any(|line| line == "CONFIG_PREEMPT=y" || line == "CONFIG_PREEMPT_LAZY=y")
    })
}

/// "7.2.13+deb14-amd64" -> (7, 2)
fn version_of(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DYNAMIC: &str = "#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1~bpo12+1 (2026-09-01)";

    fn of(release: &str, version: &str, cmdline: &str, config: Option<&str>) -> Preemption {
        super::of(&Kernel { release, version, debugfs_model: "", cmdline, config })
    }

    #[test]
    fn from_7_0_every_kernel_preempts_and_so_do_tracepoints() {
        let sid = of("7.2.13+deb14-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1", "", None);
        assert_eq!(sid, Preemption { kernel_preempts: true, raw_tracepoints_preemptible: true });
        // even asked for none: 7.0 refuses it on x86
        assert!(of("7.0.1", DYNAMIC, "preempt=none", None).kernel_preempts);
    }

    #[test]
    fn before_7_0_the_model_decides_and_tracepoints_do_not_preempt() {
        let voluntary = Some("CONFIG_PREEMPT_VOLUNTARY=y\nCONFIG_PREEMPT_DYNAMIC=y\n");
        assert_eq!(of("6.12.95+deb12-amd64", DYNAMIC, "", voluntary), Preemption::default());
        assert_eq!(of("6.12.95+deb12-amd64", DYNAMIC, "", None), Preemption::default());
        let full = of("6.12.95", DYNAMIC, "quiet preempt=full", voluntary);
        assert_eq!(full, Preemption { kernel_preempts: true, raw_tracepoints_preemptible: false });
        assert!(
            of("6.6.1-arch1-1", DYNAMIC, "", Some("CONFIG_PREEMPT=y\nCONFIG_PREEMPT_DYNAMIC=y"))
                .kernel_preempts
        );
        assert!(!of("6.6.1", DYNAMIC, "preempt=voluntary", Some("CONFIG_PREEMPT=y")).kernel_preempts);
        assert!(of("6.1.0-rt", "#1 SMP PREEMPT_RT Debian", "", None).kernel_preempts);
        assert!(of("5.10.0", "#1 SMP PREEMPT Mon", "", None).kernel_preempts);
        assert!(!of("5.10.0-46-amd64", "#1 SMP Debian 5.10.262-1", "", None).kernel_preempts);
        assert!(!of("6.18.0", "#1 SMP PREEMPT_DYNAMIC @0", "console=ttyS0", None).kernel_preempts);
    }

    #[test]
    fn the_last_preempt_parameter_and_the_model_debugfs_shows_win() {
        assert!(of("6.12.95", DYNAMIC, "preempt=none preempt=full", None).kernel_preempts);
        assert!(!of("6.12.95", DYNAMIC, "preempt=full preempt=voluntary", None).kernel_preempts);
        let kernel = |debugfs_model| Kernel {
            release: "6.12.95",
            version: DYNAMIC,
            debugfs_model,
            cmdline: "preempt=voluntary",
            config: Some("CONFIG_PREEMPT_VOLUNTARY=y"),
        };
        assert!(super::of(&kernel("none voluntary (full) lazy\n")).kernel_preempts);
        assert!(super::of(&kernel("none voluntary full (lazy)\n")).kernel_preempts);
        assert!(!super::of(&kernel("none (voluntary) full\n")).kernel_preempts);
        assert!(!super::of(&kernel("")).kernel_preempts);
    }

    #[test]
    fn versions_are_read_from_releases() {
        assert_eq!(version_of("7.2.13+deb14-amd64"), Some((7, 2)));
        assert_eq!(version_of("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(version_of("garbage"), None);
        assert!(!fetching_atomics_in("5.10.0-35-amd64"));
        // arm64's JIT took them up later
        assert_eq!(fetching_atomics_in("5.12.0"), cfg!(target_arch = "x86_64"));
        assert!(fetching_atomics_in("5.18.0"));
        assert!(fetching_atomics_in("6.1.0-56-amd64"));
        assert!(!fetching_atomics_in("garbage"));
        assert_eq!(version_of(""), None);
    }
}
