//! Which container sent a message, from the sender's cgroup v2 id: the
//! cgroup's path names the container's id and runtime, and the Docker
//! engine, asked in the background, its name, image and Kubernetes pod.

mod cgroup;
mod engine;
mod http;
mod watch;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use anyhow::{Context, Result};
use foldhash::{HashMap, HashMapExt};

pub use cgroup::{cgroup2_mount, container_id_of_cgroup_path, CgroupPaths, ContainerRef, Runtime};

use engine::Info;
use watch::Shared;

/// Cgroups remembered by [`Containers::of_cgroup`]; forgotten all at once
/// when this many, as a host rarely has more alive.
const MAX_CGROUPS: usize = 65536;

/// A container as messages name it (`info`: what output shows; the name
/// without Docker's leading `/`), and what resolving it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub info: Arc<sockdump_common::Container>,
    pub runtime: Runtime,
    /// Whether this is all there will be: the engine answered about this
    /// container, or cannot be reached. False while the engine may still
    /// tell a name.
    pub resolved: bool,
}

impl Container {
    fn new(container: ContainerRef, info: Option<&Info>, resolved: bool) -> Container {
        let info = info.cloned().unwrap_or_default();
        let info = sockdump_common::Container {
            id: container.id,
            name: info.name,
            image: info.image,
            pod: info.pod,
            namespace: info.namespace,
        };
        Container { info: Arc::new(info), runtime: container.runtime, resolved }
    }
}

impl std::ops::Deref for Container {
    type Target = sockdump_common::Container;

    fn deref(&self) -> &sockdump_common::Container {
        &self.info
    }
}

/// Whether `wanted` (from `--container`) names `container`: its name, with
/// or without Docker's leading `/`, or a prefix of its id.
pub fn matches(container: &sockdump_common::Container, wanted: &str) -> bool {
    let name = wanted.strip_prefix('/').unwrap_or(wanted);
    (!name.is_empty() && container.name.as_deref() == Some(name))
        || (!wanted.is_empty() && container.id.starts_with(wanted))
}

/// The running containers, asked of the engine now (Wireshark's dialog
/// lists them); sorted by name.
pub fn list(engine_socket: Option<&Path>) -> Result<Vec<Container>> {
    let socket = engine_socket.map_or_else(engine::default_socket, Path::to_path_buf);
    let listed = engine::containers(&socket).with_context(|| {
        format!("cannot list the containers of the Docker engine at {}", socket.display())
    })?;
    let mut containers: Vec<Container> = listed
        .into_iter()
        .map(|(id, info)| Container::new(ContainerRef { id, runtime: Runtime::Docker }, Some(&info), true))
        .collect();
    containers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(containers)
}

/// The container of each message's sender, without ever waiting for the
/// engine: background threads ask it, and this reads what they learnt.
pub struct Containers {
    paths: CgroupPaths,
    shared: Arc<Shared>,
    inspect: Sender<String>,
    /// Each cgroup's container (None: not a container's), as of `generation`.
    cgroups: HashMap<u64, Option<Arc<Container>>>,
    generation: u64,
    /// Ids already sent to be inspected.
    asked: HashSet<String>,
    /// Paths of cgroups told by exec records (a container that lived
    /// milliseconds is gone before its messages are looked at).
    learned: HashMap<u64, String>,
}

impl Containers {
    /// Starts following the engine at `engine_socket` (default: `DOCKER_HOST`,
    /// /run/docker.sock or /var/run/docker.sock); an absent engine is
    /// waited for quietly. Fails without a cgroup2 mount.
    pub fn start(engine_socket: Option<PathBuf>) -> Result<Containers> {
        Containers::start_with(engine_socket, CgroupPaths::new(cgroup2_mount()?))
    }

    fn start_with(engine_socket: Option<PathBuf>, paths: CgroupPaths) -> Result<Containers> {
        let (shared, inspect) = watch::spawn(engine_socket).context("cannot start the container threads")?;
        Ok(Containers {
            paths,
            shared,
            inspect,
            cgroups: HashMap::new(),
            generation: 0,
            asked: HashSet::new(),
            learned: HashMap::new(),
        })
    }

    /// The container a cgroup (`bpf_get_current_cgroup_id()`) belongs to,
    /// with what the engine has told so far; None if it is no container's.
    pub fn of_cgroup(&mut self, cgroup_id: u64) -> Option<Arc<Container>> {
        let generation = self.shared.generation();
        if self.cgroups.len() >= MAX_CGROUPS || self.asked.len() >= MAX_CGROUPS {
            self.cgroups.clear();
            self.asked.clear();
        } else if generation != self.generation {
            // what is not a container's stays so; containers may have news
            self.cgroups.retain(|_, container| container.is_none());
        }
        self.generation = generation;
        if let Some(known) = self.cgroups.get(&cgroup_id) {
            return known.clone();
        }
        let found = match self.learned.get(&cgroup_id) {
            Some(path) => container_id_of_cgroup_path(path),
            None => {
                let scans = self.paths.scans();
                let Some(path) = self.paths.path_of(cgroup_id) else {
                    // missed by a walk made just now: a cgroup this mount does not show
                    if self.paths.scans() != scans {
                        self.cgroups.insert(cgroup_id, None);
                    }
                    return None;
                };
                container_id_of_cgroup_path(path)
            }
        };
        let container = found.map(|found| Arc::new(self.describe(found)));
        self.cgroups.insert(cgroup_id, container.clone());
        container
    }

    /// The path of `cgroup_id` (its last names at least), as an exec
    /// record told it.
    pub fn learn(&mut self, cgroup_id: u64, path: &str) {
        if self.learned.len() >= MAX_CGROUPS {
            self.learned.clear();
        }
        if self.learned.get(&cgroup_id).map(String::as_str) != Some(path) {
            // a cgroup id may be a freed directory's again
            self.cgroups.remove(&cgroup_id);
            self.learned.insert(cgroup_id, path.to_owned());
        }
    }

    fn describe(&mut self, found: ContainerRef) -> Container {
        if let Some(info) = self.shared.info(&found.id) {
            return Container::new(found, Some(&*info), true);
        }
        let engine_down = self.shared.engine_down();
        if !engine_down && self.asked.insert(found.id.clone()) {
            // fails only if the inspecting thread has ended: no one is left to ask
            let _ = self.inspect.send(found.id.clone());
        }
        Container::new(found, None, engine_down)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

#[cfg(test)]
mod tests;
