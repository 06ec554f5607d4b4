//! The private Docker engine and the container peers: a client in a
//! container reaches an echo server on the host through a bind-mounted
//! socket.

use std::path::Path;
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sockdump_test_support::{skip_unless_root, DockerEngine};

/// Kills the echo server however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) -> Result<()> {
    let started = Instant::now();
    while !path.exists() {
        ensure!(started.elapsed() < Duration::from_secs(10), "{} never appeared", path.display());
        sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[test]
fn container_client_reaches_host_echo_server() -> Result<()> {
    if skip_unless_root("container_client_reaches_host_echo_server") {
        return Ok(());
    }
    let scenarios = Path::new(env!("CARGO_BIN_EXE_sockdump-scenarios"));
    let started = Instant::now();
    let engine = DockerEngine::start()?;
    let engine_ready = started.elapsed();
    engine.import_image("sockdump-test", &[(scenarios, "/bin/sockdump-scenarios")])?;
    let imported = started.elapsed();

    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("sock");
    let _server = Killed(Command::new(scenarios).arg("echo-server").arg(&socket).spawn()?);
    wait_for(&socket)?;
    let run = Instant::now();
    let out = engine
        .docker()
        .args(["run", "--rm", "--network", "none", "--name", "sd-test-client", "--volume"])
        .arg(format!("{}:/w", dir.path().display()))
        .args(["sockdump-test", "/bin/sockdump-scenarios", "client", "/w/sock", "hello"])
        .output()
        .context("docker run")?;
    let ran = run.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "docker run failed ({}): {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "re:hello\n", "stderr: {stderr}");

    let stopping = Instant::now();
    drop(engine);
    eprintln!(
        "engine ready in {:.2}s, image imported in {:.2}s, container ran in {:.2}s, engine stopped in {:.2}s",
        engine_ready.as_secs_f64(),
        (imported - engine_ready).as_secs_f64(),
        ran.as_secs_f64(),
        stopping.elapsed().as_secs_f64()
    );
    Ok(())
}
