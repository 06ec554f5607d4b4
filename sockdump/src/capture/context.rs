//! What user space adds to each message before it leaves the capture: the
//! command lines of its sender and reader, their containers; and the
//! filters that need them (`--container`, `sockdump -- CMD`), whose
//! verdicts go back into the kernel's maps so that it drops the rest.

use std::sync::Arc;

use aya::maps::{HashMap, MapData, RingBuf};
use foldhash::HashSet;
use sockdump_common::abi::cgroup_verdict;
use sockdump_common::{Event, ProcRecord, Reader};

use crate::containers::{self, Container, Containers};
use crate::privileges;
use crate::processes::Processes;
use caps::Capability;

/// `--container`: the names and id prefixes wanted, and the kernel's
/// verdict on each cgroup, written here once decided.
pub struct ContainerFilter {
    pub wanted: Vec<String>,
    pub verdicts: HashMap<MapData, u64, u8>,
    /// What was written there: a map update is a system call, and the
    /// messages of a wanted cgroup keep coming.
    pub written: foldhash::HashMap<u64, u8>,
}

/// Verdicts remembered as written; past this many they are forgotten, and
/// written again as their cgroups are seen.
const WRITTEN_VERDICTS: usize = 16384;

/// Processes `sockdump -- CMD` follows at most, as the kernel's map.
const TRACKED_MAX: usize = 65536;

impl ContainerFilter {
    fn wants(&self, container: &sockdump_common::Container) -> bool {
        self.wanted.iter().any(|w| containers::matches(container, w))
    }

    /// Tells the kernel what to do with `cgroup`'s sends from now on, once
    /// that is known for good: a container whose name the engine may still
    /// tell is asked about again.
    fn decide(&mut self, cgroup: u64, container: Option<&Container>) {
        let verdict = match container {
            Some(c) if self.wants(c) => cgroup_verdict::WANTED,
            Some(c) if !c.resolved => return,
            _ => cgroup_verdict::UNWANTED,
        };
        if self.written.get(&cgroup) == Some(&verdict) {
            return;
        }
        if self.written.len() >= WRITTEN_VERDICTS {
            self.written.clear();
        }
        // the map is LRU: it never refuses, and a cgroup it forgets is
        // decided here again (once this table forgets it too)
        // where the kernel wants CAP_BPF for any bpf() command, it was kept
        // permitted for this (see Capture::still_needed)
        let verdicts = &mut self.verdicts;
        if privileges::with_capability(Capability::CAP_BPF, || verdicts.insert(cgroup, verdict, 0)).is_ok() {
            self.written.insert(cgroup, verdict);
        }
    }
}

pub struct ContextSource {
    /// Exec and fork records, where the kernel let their programs attach.
    pub procs: Option<RingBuf<MapData>>,
    pub processes: Processes,
    /// None where there is no cgroup2 mount.
    pub containers: Option<Containers>,
    pub container_filter: Option<ContainerFilter>,
    /// `sockdump -- CMD`: CMD and the processes it started.
    pub tracked: Option<HashSet<u32>>,
}

impl ContextSource {
    /// Takes every exec and fork record waiting. A record that does not
    /// decode is dropped: its process's line comes from /proc instead.
    pub fn take_procs(&mut self) {
        let Some(procs) = self.procs.as_mut() else { return };
        while let Some(record) = procs.next() {
            let Ok(record) = ProcRecord::parse(&record) else { continue };
            match (&record, self.tracked.as_mut(), self.containers.as_mut()) {
                (ProcRecord::Fork { pid, ppid }, Some(tracked), _)
                    if tracked.contains(ppid) && tracked.len() < TRACKED_MAX =>
                {
                    tracked.insert(*pid);
                }
                // the cgroup may be gone before its messages are looked at
                (ProcRecord::Exec { cgroup_id, cgroup_path, .. }, _, Some(containers)) => {
                    containers.learn(*cgroup_id, cgroup_path);
                }
                _ => {}
            }
            self.processes.record(&record);
        }
    }

    fn args_of(&mut self, pid: u32) -> Option<Arc<str>> {
        // an exec record written since the last take: take it before /proc
        if !self.processes.knows(pid) {
            self.take_procs();
        }
        self.processes.args_of(pid)
    }

    fn container_of(&mut self, cgroup: u64) -> Option<Arc<Container>> {
        let container = self.containers.as_mut()?.of_cgroup(cgroup);
        if let Some(filter) = self.container_filter.as_mut() {
            filter.decide(cgroup, container.as_deref());
        }
        container
    }

    /// `event` with its context, or None when a filter here drops it.
    pub fn add_to<'e>(&mut self, mut event: Event<'e>) -> Option<Event<'e>> {
        let sender = event.process.and_then(|p| self.container_of(p.cgroup_id));
        let reader = match event.reader {
            // the same process: the same line and container
            Reader::Thread { pid, .. } if pid == event.pid => None,
            Reader::Thread { pid, cgroup_id, .. } => Some((pid, self.container_of(cgroup_id))),
            Reader::Unknown | Reader::NotSeen => None,
        };
        if !self.wanted(&event, sender.as_deref(), reader.as_ref()) {
            return None;
        }
        event.context.args = self.args_of(event.pid);
        event.context.container = sender.map(|c| c.info.clone());
        if let Some((pid, container)) = reader {
            event.context.reader_args = self.args_of(pid);
            event.context.reader_container = container.map(|c| c.info.clone());
        }
        Some(event)
    }

    fn wanted(
        &self,
        event: &Event<'_>,
        sender: Option<&Container>,
        reader: Option<&(u32, Option<Arc<Container>>)>,
    ) -> bool {
        let reader_pid = match event.reader {
            Reader::Thread { pid, .. } => Some(pid),
            Reader::Unknown | Reader::NotSeen => None,
        };
        let by_container = self.container_filter.as_ref().is_none_or(|filter| {
            let reader = reader.and_then(|(_, c)| c.as_deref());
            [sender, reader].into_iter().flatten().any(|c| filter.wants(c))
        });
        let by_command = self.tracked.as_ref().is_none_or(|tracked| {
            [Some(event.pid), reader_pid, Some(event.peer_pid)]
                .into_iter()
                .flatten()
                .any(|p| tracked.contains(&p))
        });
        by_container && by_command
    }
}
