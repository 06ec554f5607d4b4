//! Whether the running kernel may preempt sockdump's programs, which makes
//! it skip them for other tasks' sends (docs/DESIGN.md, "Preemptible
//! programs"). Read from what needs no debugfs: the release, the build's
//! preemption flags (`uname -v`), `preempt=` and the build config.

use sockdump_ebpf::Preemption;

/// The kernel this process runs on.
pub fn current() -> Preemption {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let release = read("/proc/sys/kernel/osrelease");
    let release = release.trim();
    let config = std::fs::read_to_string(format!("/boot/config-{release}")).ok();
    of(release, &read("/proc/sys/kernel/version"), &read("/proc/cmdline"), config.as_deref())
}

/// From 7.0 (commit 7dadeaa6e851) x86 and arm64 only offer the full and
/// lazy models; from 7.0 (a46023d5616e, f7d327654b88) tracepoints run BPF
/// programs with only migration disabled.
const ALWAYS_PREEMPTS: (u32, u32) = (7, 0);

fn of(release: &str, version: &str, cmdline: &str, config: Option<&str>) -> Preemption {
    let new = version_of(release).is_some_and(|v| v >= ALWAYS_PREEMPTS);
    Preemption {
        kernel_preempts: new || model_preempts(version, cmdline, config),
        raw_tracepoints_preemptible: new,
    }
}

/// Before 7.0: `uname -v` names one flag, the last of PREEMPT, PREEMPT_DYNAMIC
/// and PREEMPT_RT the build has; a dynamic kernel runs the model `preempt=`
/// names, else its config's. Unknown counts as the distributions' voluntary.
fn model_preempts(version: &str, cmdline: &str, config: Option<&str>) -> bool {
    let flags: Vec<&str> = version.split_whitespace().collect();
    if flags.contains(&"PREEMPT_RT") || flags.contains(&"PREEMPT") {
        return true;
    }
    if !flags.contains(&"PREEMPT_DYNAMIC") {
        return false;
    }
    if let Some(mode) = cmdline.split_whitespace().find_map(|arg| arg.strip_prefix("preempt=")) {
        return matches!(mode, "full" | "lazy");
    }
    config.is_some_and(|config| {
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
    fn versions_are_read_from_releases() {
        assert_eq!(version_of("7.2.13+deb14-amd64"), Some((7, 2)));
        assert_eq!(version_of("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(version_of("garbage"), None);
        assert_eq!(version_of(""), None);
    }
}
