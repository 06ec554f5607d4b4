//! What the machine must provide before capture starts, each checked with an
//! error that says how to fix it.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process (`CapEff` in /proc/self/status).
fn effective_capabilities() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .context("/proc/self/status has no CapEff line")?;
    u64::from_str_radix(hex.trim(), 16).context("cannot parse CapEff in /proc/self/status")
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Loading and attaching needs CAP_BPF + CAP_PERFMON (kernels before 5.8: CAP_SYS_ADMIN).
pub fn check_privileges() -> Result<()> {
    let caps = effective_capabilities()?;
    if has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(caps, cap))
        .map(|(_, name)| name)
        .collect();
    bail!(
        "needs root or CAP_BPF + CAP_PERFMON (missing {}): run it with sudo, or have root let group \
         sockdump capture: `sudo dpkg-reconfigure sockdump` (Debian package) or \
         `sudo sockdump extcap install --system --setcap`",
        missing.join(" + ")
    )
}

/// The file capabilities that let a user without root capture: load and
/// attach tracing programs, and before 5.11, when BPF memory still counted
/// against RLIMIT_MEMLOCK, lift that limit.
pub fn capabilities() -> &'static str {
    capabilities_for(&kernel_release())
}

fn kernel_release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether the kernel counts BPF maps against RLIMIT_MEMLOCK (before 5.11).
pub fn maps_count_against_memlock() -> bool {
    release_before(&kernel_release(), (5, 11))
}

fn release_before(kernel_release: &str, version: (u32, u32)) -> bool {
    let mut numbers =
        kernel_release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) < version
}

fn capabilities_for(kernel_release: &str) -> &'static str {
    if release_before(kernel_release, (5, 11)) {
        "cap_bpf,cap_perfmon,cap_sys_resource+ep"
    } else {
        "cap_bpf,cap_perfmon+ep"
    }
}

/// CO-RE relocation needs the kernel's own type information.
pub fn check_btf() -> Result<()> {
    if Path::new(BTF_PATH).exists() {
        return Ok(());
    }
    bail!(
        "kernel has no BTF at {BTF_PATH}: sockdump needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux 5.10 or later; most distributions enable it since 2021)"
    )
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it when allowed.
pub fn raise_memlock_limit() {
    use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
    // Failing is fine: newer kernels account map memory to the cgroup instead.
    let _ = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY);
}

/// Gives the heap's free memory back to the system. Loading parses the
/// kernel's BTF (15-20 MB, freed once the programs are attached); without
/// this, glibc keeps those pages and they stay in sockdump's RSS.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no
    // preconditions and nothing else here touches the allocator's internals.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The pid namespace this process is in, as (kernel device, inode), when
/// it is not the initial one (in a container): there the kernel knows this
/// process by another pid than `getpid()` returns.
pub fn child_pid_namespace() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    // PROC_PID_INIT_INO: the initial pid namespace's fixed inode
    const INITIAL: u64 = 0xEFFF_FFFC;
    let ns = fs::metadata("/proc/self/ns/pid").ok()?;
    (ns.ino() != INITIAL).then(|| (u64::from(kernel_dev(ns.dev())), ns.ino()))
}

/// `st_dev` as user space sees it, converted to the kernel's internal `dev_t`
/// (`super_block.s_dev`: 12-bit major, 20-bit minor).
pub fn kernel_dev(user_dev: u64) -> u32 {
    let major = nix::sys::stat::major(user_dev) as u32;
    let minor = nix::sys::stat::minor(user_dev) as u32;
    (major << 20) | (minor & 0xfffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_kernels_need_the_memlock_capability() {
        assert_eq!(capabilities_for("5.10.0-33-amd64"), "cap_bpf,cap_perfmon,cap_sys_resource+ep");
        assert_eq!(capabilities_for("6.18.44-fc"), "cap_bpf,cap_perfmon+ep");
    }

    #[test]
    fn kernel_dev_packs_major_and_minor() {
        let dev = nix::sys::stat::makedev(8, 1);
        assert_eq!(kernel_dev(dev), (8 << 20) | 1);
        let dev = nix::sys::stat::makedev(0, 300);
        assert_eq!(kernel_dev(dev), 300);
    }
}
