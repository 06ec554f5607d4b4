//! Command lines of the processes that send and read messages: from exec
//! records, so that a process that lived milliseconds (curl, the docker CLI)
//! is named right; from fork records for a child that has not exec'd (it
//! runs its parent's command line); from /proc for what ran before the
//! capture began.

use std::sync::Arc;

use sockdump_common::{show_args, ProcRecord};

use crate::generations::Generations;

/// Processes remembered, at most twice this: when the newer table fills it
/// becomes the older one and the oldest is forgotten, so a capture that
/// sees millions of short-lived processes stays bounded.
const GENERATION: usize = 16384;
/// And their command lines' bytes per generation: an exec loop of 4 KiB
/// command lines would otherwise hold 128 MiB.
const LINE_BYTES: usize = 4 << 20;

/// pid → command line (None: unknown, e.g. gone before it was looked up).
#[derive(Debug)]
pub struct Processes {
    lines: Generations<u32, Option<Arc<str>>>,
    /// Where /proc is: the tests point it elsewhere.
    proc_root: Option<std::path::PathBuf>,
}

impl Default for Processes {
    fn default() -> Self {
        // a line shared with a parent is counted again: a bound, not a tally
        let bytes = |line: &Option<Arc<str>>| line.as_deref().map_or(0, str::len);
        Processes { lines: Generations::weighed(GENERATION, LINE_BYTES, bytes), proc_root: None }
    }
}

impl Processes {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a record of the `procs` ring tells.
    pub fn record(&mut self, record: &ProcRecord<'_>) {
        match record {
            ProcRecord::Exec { pid, cmdline, truncated, .. } => {
                let mut line = show_args(cmdline);
                if *truncated {
                    line.push_str(" ...");
                }
                self.insert(*pid, Some(Arc::from(line)));
            }
            ProcRecord::Fork { pid, ppid } => {
                let parent = self.lookup(*ppid).cloned().flatten();
                self.insert(*pid, parent);
            }
        }
    }

    /// `pid`'s command line, read from /proc at its first sight unless a
    /// record told it.
    pub fn args_of(&mut self, pid: u32) -> Option<Arc<str>> {
        if let Some(known) = self.lookup(pid) {
            return known.clone();
        }
        let root = self.proc_root.as_deref().unwrap_or(std::path::Path::new("/proc"));
        let line = std::fs::read(root.join(pid.to_string()).join("cmdline"))
            .ok()
            .filter(|cmdline| !cmdline.is_empty())
            .map(|cmdline| Arc::from(show_args(&cmdline)));
        self.insert(pid, line.clone());
        line
    }

    /// Whether a record has told of `pid`, or /proc was asked.
    pub fn knows(&self, pid: u32) -> bool {
        self.lookup(pid).is_some()
    }

    fn lookup(&self, pid: u32) -> Option<&Option<Arc<str>>> {
        self.lines.peek(&pid)
    }

    fn insert(&mut self, pid: u32, line: Option<Arc<str>>) {
        self.lines.insert(pid, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_dir(dir: &std::path::Path) -> Processes {
        Processes { proc_root: Some(dir.to_path_buf()), ..Processes::default() }
    }

    #[test]
    fn exec_records_win_and_children_share_their_parents_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = in_dir(dir.path());
        p.record(&ProcRecord::Exec {
            pid: 10,
            ppid: 1,
            cmdline: b"curl\0-s\0a b\0",
            truncated: false,
            cgroup_id: 1,
            cgroup_path: String::new(),
        });
        p.record(&ProcRecord::Fork { pid: 11, ppid: 10 });
        p.record(&ProcRecord::Exec {
            pid: 12,
            ppid: 1,
            cmdline: b"long\0",
            truncated: true,
            cgroup_id: 1,
            cgroup_path: String::new(),
        });
        assert_eq!(p.args_of(10).as_deref(), Some("curl -s 'a b'"));
        assert_eq!(p.args_of(11).as_deref(), Some("curl -s 'a b'"));
        assert_eq!(p.args_of(12).as_deref(), Some("long ..."));
        // a pid reused by a new exec takes the new line
        p.record(&ProcRecord::Exec {
            pid: 11,
            ppid: 10,
            cmdline: b"sh\0-c\0x\0",
            truncated: false,
            cgroup_id: 1,
            cgroup_path: String::new(),
        });
        assert_eq!(p.args_of(11).as_deref(), Some("sh -c x"));
    }

    #[test]
    fn proc_is_read_once_and_gone_processes_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("50")).unwrap();
        std::fs::write(dir.path().join("50/cmdline"), b"postgres\0-D\0/var/lib/pg\0").unwrap();
        let mut p = in_dir(dir.path());
        assert_eq!(p.args_of(50).as_deref(), Some("postgres -D /var/lib/pg"));
        std::fs::remove_dir_all(dir.path().join("50")).unwrap();
        assert_eq!(p.args_of(50).as_deref(), Some("postgres -D /var/lib/pg"), "cached");
        assert_eq!(p.args_of(51), None);
        assert!(p.knows(51), "a miss is remembered too");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut p = Processes::new();
        for pid in 0..(GENERATION as u32 * 5) {
            p.record(&ProcRecord::Exec {
                pid,
                ppid: 1,
                cmdline: b"x\0",
                truncated: false,
                cgroup_id: 1,
                cgroup_path: String::new(),
            });
        }
        assert!(p.lines.len() <= 2 * GENERATION);
        assert!(p.knows(GENERATION as u32 * 5 - 1));
    }

    #[test]
    fn long_command_lines_are_bounded_by_their_bytes() {
        let mut p = Processes::new();
        let cmdline = [b'x'; 4095];
        let mut most = 0;
        for pid in 0..GENERATION as u32 {
            p.record(&ProcRecord::Exec {
                pid,
                ppid: 1,
                cmdline: &cmdline,
                truncated: true,
                cgroup_id: 1,
                cgroup_path: String::new(),
            });
            if pid % 512 == 511 {
                let held = (0..=pid).filter_map(|pid| p.lookup(pid).cloned().flatten());
                most = most.max(held.map(|l| l.len()).sum());
            }
        }
        assert!(most <= 2 * (LINE_BYTES + 4100), "{most} bytes of command lines");
        assert!(p.knows(GENERATION as u32 - 1));
    }
}
