//! Small peers for container tests, run as `sockdump-scenarios client|echo-server|fork-client`
//! inside images that hold nothing else (the binary is static).

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// What `fork-client` exits with when all went well: a known non-zero
/// status that `sockdump -- CMD` must pass on.
pub const FORK_CLIENT_STATUS: i32 = 3;

/// Sends each message on one connection to `path`, printing each reply.
pub fn client(path: &Path, messages: &[String]) -> Result<()> {
    let mut stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    let mut reply = vec![0; 64 * 1024];
    for message in messages {
        stream.write_all(message.as_bytes())?;
        let n = stream.read(&mut reply)?;
        if n == 0 {
            bail!("{} closed before replying to {message:?}", path.display());
        }
        println!("{}", String::from_utf8_lossy(&reply[..n]));
    }
    Ok(())
}

/// Serves `path` until killed: each connection, in its own thread, gets back
/// what it sends, prefixed with `re:`.
pub fn echo_server(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
        _ => {}
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(err) = echo(stream) {
                eprintln!("echo-server: {err}");
            }
        });
    }
    Ok(())
}

fn echo(mut stream: UnixStream) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&[b"re:", &buf[..n]].concat())?;
    }
}

/// Two processes, parent and forked child, each send `MESSAGE-parent` /
/// `MESSAGE-child` on a connection of their own; the parent returns once
/// the child exited 0.
pub fn fork_client(path: &Path, message: &str) -> Result<()> {
    // SAFETY: single-threaded here, so the child may run arbitrary code; it
    // leaves with _exit and never returns.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code = match client(path, &[format!("{message}-child")]) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("fork-client child: {err:#}");
                    1
                }
            };
            // SAFETY: leaves the forked child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            client(path, &[format!("{message}-parent")])?;
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => bail!("fork-client child ended with {status:?}"),
            }
        }
    }
}
