//! From a cgroup v2 id to the container it belongs to: the id is the inode
//! of the cgroup's directory in the cgroup2 mount, and container runtimes
//! put each container's processes in a directory named after its id.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirEntryExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Which runtime's naming a container's cgroup follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    /// containerd through CRI (Kubernetes); also a bare id in a kubepods
    /// pod's cgroup, whose path does not name its runtime.
    Containerd,
    CriO,
    Podman,
}

/// A container as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub id: String,
    pub runtime: Runtime,
}

/// Docker, containerd, CRI-O and Podman ids: 64 lowercase hex digits.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The container whose cgroup `path` (relative to the cgroup2 mount) is, or
/// is inside; the deepest one when containers nest (Docker in Docker, kind).
pub fn container_id_of_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    (0..components.len()).rev().find_map(|i| {
        let parent = i.checked_sub(1).map(|p| components[p]);
        let in_kubepods = components[..i].iter().any(|c| c.starts_with("kubepods"));
        container_of_component(components[i], parent, in_kubepods)
    })
}

fn container_of_component(component: &str, parent: Option<&str>, in_kubepods: bool) -> Option<ContainerRef> {
    // systemd names scopes `<prefix><id>.scope`; cgroupfs drivers drop the suffix
    const PREFIXES: [(&str, Runtime); 4] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ];
    let found = |id: &str, runtime| Some(ContainerRef { id: id.to_string(), runtime });
    for (prefix, runtime) in PREFIXES {
        if let Some(rest) = component.strip_prefix(prefix) {
            // `crio-conmon-<id>` and `libpod-conmon-<id>` hold the monitor, not the container
            let id = rest.strip_suffix(".scope").unwrap_or(rest);
            return if is_container_id(id) { found(id, runtime) } else { None };
        }
    }
    if !is_container_id(component) {
        return None;
    }
    match parent {
        Some("docker") => found(component, Runtime::Docker),
        Some(pod) if in_kubepods && pod.starts_with("pod") => found(component, Runtime::Containerd),
        _ => None,
    }
}

/// Where cgroup2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on
/// hybrid hierarchies.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    cgroup2_mount_in(&mountinfo)
        .context("no cgroup2 mount in /proc/self/mountinfo: container names need cgroup v2")
}

fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    // `id parent dev root mountpoint options [optional...] - fstype source superoptions`
    let mounts = mountinfo.lines().filter_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split(' ').skip(3);
        let root = fields.next()?;
        let mount_point = unescape_octal(fields.next()?);
        Some((root == "/", PathBuf::from(mount_point)))
    });
    // a mount of the whole hierarchy shows every cgroup; prefer it to a subtree's
    let mut first = None;
    for (whole, path) in mounts {
        if whole {
            return Some(path);
        }
        first.get_or_insert(path);
    }
    first
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], digits) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8).wrapping_add(b - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// cgroup v2 ids to paths relative to the cgroup2 mount, from a walk of the
/// mount that is repeated when an id is missing (a cgroup created since).
pub struct CgroupPaths {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
    scans: u64,
    rescan_interval: Duration,
    max_depth: usize,
    max_entries: usize,
}

impl CgroupPaths {
    /// `root`: the cgroup2 mount (see [`cgroup2_mount`]). Nothing is read
    /// until the first lookup.
    pub fn new(root: PathBuf) -> CgroupPaths {
        CgroupPaths {
            root,
            paths: HashMap::new(),
            last_scan: None,
            scans: 0,
            // a stream of messages from an unknown cgroup must not become a stream of walks
            rescan_interval: Duration::from_millis(100),
            // bounds a hostile or runaway tree: a real one is a few levels and a few thousand cgroups
            max_depth: 32,
            max_entries: 100_000,
        }
    }

    /// The path of cgroup `id`, like `/docker/<id>`; None if it is not in
    /// the mount, or not yet and the last walk was too recent to walk again.
    pub fn path_of(&mut self, id: u64) -> Option<&str> {
        let stale = self.last_scan.is_none_or(|at| at.elapsed() >= self.rescan_interval);
        if !self.paths.contains_key(&id) && stale {
            self.scan();
        }
        self.paths.get(&id).map(String::as_str)
    }

    /// How many walks have been made: a lookup that missed right after a
    /// walk is for a cgroup this mount does not show.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.scans += 1;
        self.paths.clear();
        if let Ok(meta) = fs::symlink_metadata(&self.root) {
            self.paths.insert(std::os::unix::fs::MetadataExt::ino(&meta), "/".to_string());
        }
        let mut pending: Vec<(PathBuf, String, usize)> = vec![(self.root.clone(), String::new(), 0)];
        while let Some((dir, relative, depth)) = pending.pop() {
            // an unreadable directory (removed mid-walk, or denied) leaves out only its subtree
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if self.paths.len() >= self.max_entries {
                    return;
                }
                // the entry's own type: a symlink to a directory is not followed
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = format!("{relative}/{}", entry.file_name().to_string_lossy());
                // kernfs reports the cgroup id as the directory entry's inode
                self.paths.insert(entry.ino(), path.clone());
                if depth + 1 < self.max_depth {
                    pending.push((entry.path(), path, depth + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parsed(path: &str) -> Option<(String, Runtime)> {
        container_id_of_cgroup_path(path).map(|c| (c.id, c.runtime))
    }

    fn is(id: &str, runtime: Runtime) -> Option<(String, Runtime)> {
        Some((id.to_string(), runtime))
    }

    #[test]
    fn docker_paths() {
        assert_eq!(parsed(&format!("/docker/{ID}")), is(ID, Runtime::Docker));
        assert_eq!(parsed(&format!("/system.slice/docker-{ID}.scope")), is(ID, Runtime::Docker));
        // a cgroup the container made inside its own
        assert_eq!(parsed(&format!("/docker/{ID}/init")), is(ID, Runtime::Docker));
        assert_eq!(parsed(&format!("/system.slice/docker-{ID}.scope/app.slice")), is(ID, Runtime::Docker));
        // Docker in Docker: the inner one
        assert_eq!(parsed(&format!("/docker/{ID}/docker/{ID2}")), is(ID2, Runtime::Docker));
        // dockershim under kubepods
        assert_eq!(
            parsed(&format!("/kubepods.slice/kubepods-pod1234.slice/docker-{ID}.scope")),
            is(ID, Runtime::Docker)
        );
    }

    #[test]
    fn kubernetes_paths() {
        let uid = "pod7d5a6a3e-1e0b-4d2c-9a6f-3c1b2a4d5e6f";
        assert_eq!(parsed(&format!("/kubepods/burstable/{uid}/{ID}")), is(ID, Runtime::Containerd));
        assert_eq!(parsed(&format!("/kubepods/{uid}/{ID}")), is(ID, Runtime::Containerd));
        assert_eq!(
            parsed(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d5a6a3e_1e0b_4d2c.slice/\
                 cri-containerd-{ID}.scope"
            )),
            is(ID, Runtime::Containerd)
        );
        assert_eq!(
            parsed(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-{ID}.scope"
            )),
            is(ID, Runtime::CriO)
        );
        assert_eq!(parsed(&format!("/kubepods/besteffort/{uid}/crio-{ID}")), is(ID, Runtime::CriO));
        // kind: a pod's container inside a node that is a Docker container
        assert_eq!(
            parsed(&format!("/docker/{ID2}/kubepods/besteffort/{uid}/{ID}")),
            is(ID, Runtime::Containerd)
        );
        // the pod's own cgroup, above its containers
        assert_eq!(parsed(&format!("/kubepods/burstable/{uid}")), None);
        assert_eq!(
            parsed("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d5a6a3e_1e0b.slice"),
            None
        );
    }

    #[test]
    fn crio_and_podman_paths() {
        assert_eq!(parsed(&format!("/machine.slice/crio-{ID}.scope")), is(ID, Runtime::CriO));
        assert_eq!(parsed(&format!("/machine.slice/crio-conmon-{ID}.scope")), None);
        assert_eq!(parsed(&format!("/machine.slice/libpod-{ID}.scope")), is(ID, Runtime::Podman));
        assert_eq!(parsed(&format!("/machine.slice/libpod-{ID}.scope/container")), is(ID, Runtime::Podman));
        assert_eq!(parsed(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(parsed(&format!("/libpod_parent/libpod-{ID}")), is(ID, Runtime::Podman));
        assert_eq!(
            parsed(&format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope")),
            is(ID, Runtime::Podman)
        );
    }

    #[test]
    fn paths_that_are_no_container() {
        for path in [
            "/",
            "",
            "/docker",
            "/docker/",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service",
            "/init.scope",
            "/kubepods/burstable",
        ] {
            assert_eq!(parsed(path), None, "{path}");
        }
        // short, long, uppercase or non-hex ids
        assert_eq!(parsed("/docker/3f4e5d6c7b8a"), None);
        assert_eq!(parsed(&format!("/docker/{ID}0")), None);
        assert_eq!(parsed(&format!("/docker/{}", ID.to_uppercase())), None);
        assert_eq!(parsed(&format!("/docker/{}", ID.replace('f', "g"))), None);
        assert_eq!(parsed("/system.slice/docker-3f4e5d6c.scope"), None);
        // a 64-hex directory that is not in docker/ or a kubepods pod
        assert_eq!(parsed(&format!("/system.slice/{ID}")), None);
        assert_eq!(parsed(&format!("/pod1/{ID}")), None);
    }

    #[test]
    fn finds_cgroup2_in_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount_in(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        let subtree_first = "50 1 0:30 /docker/x /mnt/a\\040b rw - cgroup2 cgroup2 rw\n\
                             51 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(subtree_first), Some(PathBuf::from("/sys/fs/cgroup")));
        let subtree_only = "50 1 0:30 /docker/x /mnt/a\\040b rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(subtree_only), Some(PathBuf::from("/mnt/a b")));
        assert_eq!(cgroup2_mount_in("garbage\n\n - \n1 2 3 - cgroup2\n"), None);
        assert_eq!(cgroup2_mount_in(""), None);
    }

    fn inode(path: &Path) -> u64 {
        fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn walks_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join(format!("docker/{ID}/init"))).unwrap();
        fs::create_dir_all(root.join("system.slice/sshd.service")).unwrap();
        fs::write(root.join("system.slice/cgroup.procs"), "1\n").unwrap();
        // not followed: its target would show up twice, or loop
        std::os::unix::fs::symlink(root.join("system.slice"), root.join("docker/link")).unwrap();

        let mut paths = CgroupPaths::new(root.to_path_buf());
        assert_eq!(paths.path_of(inode(root)), Some("/"));
        let container = root.join(format!("docker/{ID}"));
        assert_eq!(paths.path_of(inode(&container)), Some(format!("/docker/{ID}").as_str()));
        assert_eq!(
            paths.path_of(inode(&container.join("init"))),
            Some(format!("/docker/{ID}/init").as_str())
        );
        assert_eq!(
            paths.path_of(inode(&root.join("system.slice/sshd.service"))),
            Some("/system.slice/sshd.service")
        );
        assert_eq!(paths.path_of(inode(&root.join("system.slice/cgroup.procs"))), None);
        assert!(paths.paths.values().all(|p| !p.contains("link")));
    }

    #[test]
    fn rescans_on_a_miss_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut paths = CgroupPaths::new(root.to_path_buf());
        paths.rescan_interval = Duration::from_secs(3600);
        assert_eq!(paths.path_of(inode(root)), Some("/"));
        assert_eq!(paths.scans(), 1);
        let new = root.join("new");
        fs::create_dir(&new).unwrap();
        // too soon to walk again
        assert_eq!(paths.path_of(inode(&new)), None);
        assert_eq!(paths.scans(), 1);
        paths.rescan_interval = Duration::ZERO;
        assert_eq!(paths.path_of(inode(&new)), Some("/new"));
        assert_eq!(paths.scans(), 2);
        // a hit walks nothing
        assert_eq!(paths.path_of(inode(&new)), Some("/new"));
        assert_eq!(paths.scans(), 2);
        // a removed cgroup goes with the next walk
        fs::remove_dir(&new).unwrap();
        assert_eq!(paths.path_of(u64::MAX), None);
        assert_eq!(paths.scans(), 3);
        assert_eq!(paths.paths.len(), 1);
    }

    #[test]
    fn walks_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let deep = root.join("a/b/c/d/e");
        fs::create_dir_all(&deep).unwrap();
        let mut paths = CgroupPaths::new(root.to_path_buf());
        paths.max_depth = 3;
        assert_eq!(paths.path_of(inode(&root.join("a/b/c"))), Some("/a/b/c"));
        assert_eq!(paths.path_of(inode(&root.join("a/b/c/d"))), None);

        for i in 0..10 {
            fs::create_dir(root.join(format!("wide{i}"))).unwrap();
        }
        let mut paths = CgroupPaths::new(root.to_path_buf());
        paths.max_entries = 5;
        paths.path_of(0);
        assert_eq!(paths.paths.len(), 5);
    }

    #[test]
    fn the_real_mount_shows_our_cgroup() {
        // without cgroup v2 there is nothing to check
        let (Ok(root), Ok(ours)) = (cgroup2_mount(), fs::read_to_string("/proc/self/cgroup")) else { return };
        let Some(path) = ours.lines().find_map(|line| line.strip_prefix("0::")) else { return };
        let id = inode(&root.join(path.trim_start_matches('/')));
        let mut paths = CgroupPaths::new(root.clone());
        assert_eq!(paths.path_of(id), Some(path));
        // directory entries' inodes are the cgroup ids, as stat's are
        for child in fs::read_dir(&root).unwrap().flatten().filter(|e| e.file_type().unwrap().is_dir()) {
            let expected = format!("/{}", child.file_name().to_string_lossy());
            assert_eq!(paths.path_of(inode(&child.path())), Some(expected.as_str()));
        }
    }

    #[test]
    fn a_missing_root_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = CgroupPaths::new(dir.path().join("absent"));
        assert_eq!(paths.path_of(1), None);
    }
}
