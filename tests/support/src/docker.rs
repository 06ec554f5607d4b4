//! A private Docker engine for the container tests: its own dockerd (and the
//! containerd it starts) with state, socket and log in one temp dir, so tests
//! neither need nor disturb the system's engine.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// dockerd stops in about 2 s once its containers are gone.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct DockerEngine {
    dockerd: Child,
    dir: TempDir,
    socket: PathBuf,
}

impl DockerEngine {
    /// Starts dockerd and returns once it answers on its socket.
    pub fn start() -> Result<Self> {
        // In /tmp whatever TMPDIR says: containerd's sockets sit deep in the
        // exec-root, and a unix socket path has at most 108 bytes.
        let dir = tempfile::Builder::new().prefix("sd-docker").tempdir_in("/tmp")?;
        let path = dir.path();
        let socket = path.join("docker.sock");
        // Not the host's /etc/docker/daemon.json; and dockerd 20.10 would
        // otherwise write /etc/docker/key.json.
        let key = path.join("key.json");
        fs::write(path.join("daemon.json"), format!(r#"{{"deprecated-key-path": "{}"}}"#, key.display()))?;
        let log = fs::File::create(path.join("dockerd.log"))?;
        let spawned = Command::new("dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"])
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--config-file")
            .arg(path.join("daemon.json"))
            .arg("--data-root")
            .arg(path.join("data"))
            .arg("--exec-root")
            .arg(path.join("exec"))
            .arg("--pidfile")
            .arg(path.join("dockerd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn();
        let dockerd = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                bail!("dockerd not found: install docker.io (scripts/install-deps)")
            }
            Err(err) => return Err(err).context("starting dockerd"),
        };
        let mut engine = DockerEngine { dockerd, dir, socket };
        engine.wait_ready()?;
        Ok(engine)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.dockerd.try_wait()? {
                bail!("dockerd exited ({status}) before answering; its log ends:\n{}", self.log_tail());
            }
            let version = self.docker().arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
            match version {
                Ok(status) if status.success() => return Ok(()),
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    bail!("docker (the CLI) not found: install docker.io (scripts/install-deps)")
                }
                Err(err) => return Err(err).context("running docker version"),
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "dockerd did not answer on {} within {READY_TIMEOUT:?}; its log ends:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The docker CLI, talking to this engine.
    pub fn docker(&self) -> Command {
        let mut docker = Command::new("docker");
        docker.arg("--host").arg(format!("unix://{}", self.socket.display()));
        docker
    }

    /// Imports an image `name` holding busybox (/bin/busybox, /bin/sh) and
    /// `files`: (file on the host, absolute path in the image). No registry:
    /// binaries in it must be static.
    pub fn import_image(&self, name: &str, files: &[(&Path, &str)]) -> Result<()> {
        let work = tempfile::tempdir()?;
        let root = work.path().join("root");
        fs::create_dir_all(root.join("bin"))?;
        fs::copy("/bin/busybox", root.join("bin/busybox"))
            .context("copying /bin/busybox: install busybox-static (scripts/install-deps)")?;
        symlink("busybox", root.join("bin/sh"))?;
        for (host, in_image) in files {
            let target = root.join(in_image.trim_start_matches('/'));
            fs::create_dir_all(target.parent().context("a file path in the image")?)?;
            fs::copy(host, &target).with_context(|| format!("copying {} into the image", host.display()))?;
        }
        let tarball = work.path().join("image.tar");
        let tar = Command::new("tar")
            .args(["--create", "--owner=0", "--group=0", "--file"])
            .arg(&tarball)
            .arg("--directory")
            .arg(&root)
            .arg(".")
            .status()
            .context("running tar")?;
        if !tar.success() {
            bail!("tar failed ({tar})");
        }
        let out =
            self.docker().arg("import").arg(&tarball).arg(name).output().context("running docker import")?;
        if !out.status.success() {
            bail!(
                "docker import {name} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Removes every container, so that dockerd stops quickly and leaves no
    /// container processes behind.
    fn remove_containers(&self) -> Result<()> {
        let out = self.docker().args(["ps", "--all", "--quiet"]).output()?;
        if !out.status.success() {
            bail!("docker ps failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        let ids: Vec<&str> = std::str::from_utf8(&out.stdout)?.split_whitespace().collect();
        if !ids.is_empty() {
            let status = self.docker().args(["rm", "--force"]).args(&ids).stdout(Stdio::null()).status()?;
            if !status.success() {
                bail!("docker rm --force failed ({status})");
            }
        }
        Ok(())
    }

    fn stop_dockerd(&mut self) -> Result<()> {
        let pid = Pid::from_raw(self.dockerd.id() as i32);
        kill(pid, Signal::SIGTERM)?;
        let asked = Instant::now();
        while self.dockerd.try_wait()?.is_none() {
            if asked.elapsed() > STOP_TIMEOUT {
                eprintln!("dockerd ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
                self.dockerd.kill()?;
                self.dockerd.wait()?;
                break;
            }
            sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills what a dockerd that died or hung left running: containerd's
    /// shims (their command lines name our exec-root) and the containers'
    /// processes (their cgroups name the container).
    fn kill_leftovers(&self) -> Result<()> {
        let dir = self.dir.path().to_str().context("the temp dir's path")?;
        let ids: Vec<String> = match fs::read_dir(self.dir.path().join("data/containers")) {
            Ok(entries) => {
                entries.map(|e| Ok(e?.file_name().to_string_lossy().into_owned())).collect::<Result<_>>()?
            }
            Err(err) if err.kind() == ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        for entry in fs::read_dir("/proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else { continue };
            // Either read fails for a process that exited meanwhile.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(dir)
                || ids.iter().any(|id| cgroup.contains(id.as_str()))
            {
                // ESRCH: gone meanwhile
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        Ok(())
    }

    /// Unmounts what dockerd left mounted under the temp dir (it bind-mounts
    /// its data-root onto itself, and network namespaces live in the
    /// exec-root), deepest first, so that the dir can be removed.
    fn unmount_all(&self) -> Result<()> {
        let dir = self.dir.path().to_str().context("the temp dir's path")?;
        let inside = format!("{dir}/");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        // The mount point is the 5th field; our paths need no unescaping.
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| *point == dir || point.starts_with(&inside))
            .collect();
        // Reversed: below a mount point before it; a point mounted twice is
        // unmounted twice.
        points.sort_unstable_by(|a, b| b.cmp(a));
        for point in points {
            // Detached: a mount still busy goes once its last user does.
            umount2(point, MntFlags::MNT_DETACH).with_context(|| format!("unmounting {point}"))?;
        }
        Ok(())
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        // A dockerd that exited (and was reaped) as it failed to start has no
        // containers, and its pid may be another process's now.
        if matches!(self.dockerd.try_wait(), Ok(None)) {
            if let Err(err) = self.remove_containers() {
                eprintln!("removing the private engine's containers: {err:#}");
            }
            if let Err(err) = self.stop_dockerd() {
                eprintln!("stopping the private dockerd: {err:#}");
            }
        }
        if let Err(err) = self.kill_leftovers() {
            eprintln!("killing what the private engine left running: {err:#}");
        }
        // TempDir removes the dir once this returns.
        if let Err(err) = self.unmount_all() {
            eprintln!("unmounting under {}: {err:#}", self.dir.path().display());
        }
    }
}
