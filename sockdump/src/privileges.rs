//! The least privilege for the shortest time. Loading and attaching the
//! programs needs CAP_BPF + CAP_PERFMON (or root); reading the ring buffer
//! and the counters through descriptors already open needs nothing. So once
//! capture is live every capability goes, and with `-Z USER` root becomes
//! USER before the output file is opened, as tcpdump does.

use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};

/// The account `-Z USER` names, with its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    name: String,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

impl Account {
    /// Looks USER up; only root may become someone else. The files in /etc
    /// are read directly: NSS modules cannot be loaded by a static binary.
    pub fn lookup(name: &str) -> Result<Account> {
        if !Uid::current().is_root() {
            bail!("-Z {name} needs root: it is for root to capture and then write files as {name}");
        }
        let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd for -Z")?;
        let group = std::fs::read_to_string("/etc/group").context("cannot read /etc/group for -Z")?;
        Account::from_files(name, &passwd, &group)
            .with_context(|| format!("-Z {name}: no such user in /etc/passwd"))
    }

    fn from_files(name: &str, passwd: &str, group: &str) -> Option<Account> {
        let fields: Vec<&str> =
            passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f[0] == name)?;
        let uid = Uid::from_raw(fields.get(2)?.parse().ok()?);
        let gid = Gid::from_raw(fields.get(3)?.parse().ok()?);
        let mut groups = vec![gid];
        for line in group.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let (Some(id), Some(members)) = (fields.get(2), fields.get(3)) else { continue };
            let Ok(id) = id.parse() else { continue };
            if members.split(',').any(|m| m == name) && !groups.contains(&Gid::from_raw(id)) {
                groups.push(Gid::from_raw(id));
            }
        }
        Some(Account { name: name.to_string(), uid, gid, groups })
    }
}

/// What a capture still needs once it is live: `dac_override` when it must
/// delete tracefs events owned by root after becoming another user;
/// `bpf` where the kernel refuses every bpf() command without CAP_BPF (the
/// counters are read through one), as before 6.5 with unprivileged BPF off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StillNeeded {
    pub dac_override: bool,
    pub bpf: bool,
}

/// Becomes `account` (groups, gid, then uid) when given, and drops every
/// capability. A capability still needed stays permitted but not effective:
/// the code that needs it raises it for that one call.
///
/// Capabilities belong to threads: call this before any thread is started.
pub fn relinquish(account: Option<&Account>, needed: StillNeeded) -> Result<()> {
    let mut keep = CapsHashSet::new();
    if needed.dac_override {
        keep.insert(Capability::CAP_DAC_OVERRIDE);
    }
    if needed.bpf {
        keep.insert(Capability::CAP_BPF);
    }
    if let Some(account) = account {
        nix::unistd::setgroups(&account.groups)
            .with_context(|| format!("cannot take the groups of -Z {}", account.name))?;
        nix::unistd::setresgid(account.gid, account.gid, account.gid)
            .with_context(|| format!("cannot take the group of -Z {}", account.name))?;
        // keep the permitted set across the change of uid
        if !keep.is_empty() {
            // SAFETY: prctl with integer arguments only
            if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot keep capabilities across -Z");
            }
        }
        nix::unistd::setresuid(account.uid, account.uid, account.uid)
            .with_context(|| format!("cannot become -Z {}", account.name))?;
    }
    let drop_to = |set: CapSet, value: &CapsHashSet| {
        caps::set(None, set, value).with_context(|| format!("cannot drop capabilities ({set:?})"))
    };
    drop_to(CapSet::Ambient, &CapsHashSet::new())?;
    drop_to(CapSet::Inheritable, &CapsHashSet::new())?;
    drop_to(CapSet::Effective, &CapsHashSet::new())?;
    drop_to(CapSet::Permitted, &keep)
}

/// Whether `f` fails without CAP_BPF and CAP_SYS_ADMIN (either lets the
/// bpf() syscall through): tried with both out of the effective set.
pub fn fails_without_bpf_capability(f: impl FnOnce() -> bool) -> bool {
    let caps = [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN];
    let lowered: Vec<Capability> =
        caps.into_iter().filter(|&cap| caps::drop(None, CapSet::Effective, cap).is_ok()).collect();
    let failed = !f();
    for cap in lowered {
        let _ = caps::raise(None, CapSet::Effective, cap);
    }
    failed
}

/// Runs `f` with `cap` effective for the moment, if it is permitted.
pub fn with_capability<T>(cap: Capability, f: impl FnOnce() -> T) -> T {
    let raised = caps::raise(None, CapSet::Effective, cap).is_ok();
    let result = f();
    if raised {
        let _ = caps::drop(None, CapSet::Effective, cap);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_from_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbad\n";
        let group = "root:x:0:\nalice:x:1000:\nsockdump:x:120:bob,alice\nwheel:x:10:bob\nodd\n";
        let alice = Account::from_files("alice", passwd, group).unwrap();
        assert_eq!((alice.uid.as_raw(), alice.gid.as_raw()), (1000, 1000));
        assert_eq!(alice.groups, [Gid::from_raw(1000), Gid::from_raw(120)]);
        assert_eq!(Account::from_files("bob", passwd, group), None);
        assert_eq!(Account::from_files("bad", passwd, group), None);
    }

    #[test]
    fn only_root_may_become_another_user() {
        if Uid::current().is_root() {
            assert!(Account::lookup("nobody").is_ok());
            let err = format!("{:#}", Account::lookup("no-such-user-here").unwrap_err());
            assert!(err.contains("no such user"), "{err}");
        } else {
            let err = Account::lookup("nobody").unwrap_err().to_string();
            assert!(err.contains("needs root"), "{err}");
        }
    }
}
