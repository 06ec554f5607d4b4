//! `sockdump -- CMD [ARGS...]`: CMD runs as the user who asked (the
//! invoking user under sudo), held before exec until the capture follows
//! it, so that none of its messages go unseen.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Gid, Pid, Uid};

/// Whom CMD runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
}

impl RunAs {
    /// The user sudo was run by (SUDO_UID, SUDO_GID, and that user's
    /// groups); None when not under sudo: CMD runs as sockdump does.
    pub fn invoking_user() -> Result<Option<RunAs>> {
        let (Some(uid), Some(gid)) = (std::env::var_os("SUDO_UID"), std::env::var_os("SUDO_GID")) else {
            return Ok(None);
        };
        let number = |value: &OsString, name: &str| {
            value
                .to_str()
                .and_then(|v| v.parse::<u32>().ok())
                .with_context(|| format!("{name} is not a number"))
        };
        let (uid, gid) = (Uid::from_raw(number(&uid, "SUDO_UID")?), Gid::from_raw(number(&gid, "SUDO_GID")?));
        if uid.is_root() {
            return Ok(None);
        }
        let groups = match nix::unistd::User::from_uid(uid).ok().flatten() {
            Some(user) => {
                let name = CString::new(user.name.as_bytes()).context("user name holds a NUL byte")?;
                nix::unistd::getgrouplist(&name, gid).context("cannot list the invoking user's groups")?
            }
            None => vec![gid],
        };
        Ok(Some(RunAs { uid, gid, groups }))
    }
}

/// CMD, forked and waiting for [`HeldCommand::release`] before it execs.
pub struct HeldCommand {
    pub pid: Pid,
    gate: Option<OwnedFd>,
}

/// Exit status of a child that could not exec CMD (as a shell's).
const CANNOT_EXEC: i32 = 127;

impl HeldCommand {
    /// Forks CMD's process. Call it before any thread starts: the child of
    /// a threaded process may only make async-signal-safe calls.
    pub fn spawn(command: &[OsString], run_as: Option<&RunAs>) -> Result<HeldCommand> {
        let Some(program) = command.first() else { bail!("-- needs a command to run") };
        let argv: Vec<CString> = command
            .iter()
            .map(|arg| CString::new(arg.as_bytes()))
            .collect::<Result<_, _>>()
            .context("a command argument holds a NUL byte")?;
        let program = CString::new(program.as_bytes()).context("the command holds a NUL byte")?;
        let (gate_read, gate_write) = pipe().context("cannot make a pipe for the command")?;
        // SAFETY: no other thread runs yet (see above), and the child only
        // makes system calls before it execs or exits
        match unsafe { fork() }.context("cannot fork the command")? {
            ForkResult::Child => {
                drop(gate_write);
                let code = child(&gate_read, &program, &argv, run_as);
                // SAFETY: _exit skips the parent's atexit handlers and buffers
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(gate_read);
                Ok(HeldCommand { pid: child, gate: Some(gate_write) })
            }
        }
    }

    /// Lets CMD exec.
    pub fn release(&mut self) -> Result<()> {
        if let Some(gate) = self.gate.take() {
            nix::unistd::write(&gate, b"1").context("cannot start the command")?;
        }
        Ok(())
    }

    /// Waits for CMD to end: its exit status, or 128 + the signal that
    /// killed it (as a shell reports it).
    pub fn wait(pid: Pid) -> Result<u8> {
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(u8::try_from(code & 0xff).unwrap_or(1)),
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return Ok(u8::try_from(128 + signal as i32).unwrap_or(255))
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err).context("cannot wait for the command"),
            }
        }
    }
}

/// In the forked child: waits for the gate, takes on the user, execs.
/// Returns only on failure, with the exit status to leave with.
fn child(gate: &OwnedFd, program: &CString, argv: &[CString], run_as: Option<&RunAs>) -> i32 {
    let mut byte = [0u8; 1];
    // EOF: sockdump could not start capturing; the command must not run
    if !matches!(nix::unistd::read(gate.as_raw_fd(), &mut byte), Ok(1)) {
        return CANNOT_EXEC;
    }
    if let Some(user) = run_as {
        let dropped = nix::unistd::setgroups(&user.groups)
            .and_then(|()| nix::unistd::setgid(user.gid))
            .and_then(|()| nix::unistd::setuid(user.uid));
        if dropped.is_err() {
            return CANNOT_EXEC;
        }
    }
    let err = nix::unistd::execvp(program, argv).err();
    let message = match err {
        Some(nix::errno::Errno::ENOENT) => &b"sockdump: the command was not found\n"[..],
        _ => &b"sockdump: cannot run the command\n"[..],
    };
    let _ = nix::unistd::write(std::io::stderr(), message);
    CANNOT_EXEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_command_runs_once_released_and_reports_its_status() {
        let mut held =
            HeldCommand::spawn(&["sh".into(), "-c".into(), "exit 7".into()], None).expect("spawned");
        held.release().unwrap();
        assert_eq!(HeldCommand::wait(held.pid).unwrap(), 7);
        let mut killed = HeldCommand::spawn(&["sh".into(), "-c".into(), "kill -9 $$".into()], None).unwrap();
        killed.release().unwrap();
        assert_eq!(HeldCommand::wait(killed.pid).unwrap(), 128 + 9);
        let mut missing = HeldCommand::spawn(&["/nonexistent/cmd".into()], None).unwrap();
        missing.release().unwrap();
        assert_eq!(HeldCommand::wait(missing.pid).unwrap(), 127);
    }

    #[test]
    fn a_command_never_released_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let script = format!("touch {}", marker.display());
        let held = HeldCommand::spawn(&["sh".into(), "-c".into(), script.into()], None).unwrap();
        let pid = held.pid;
        drop(held);
        assert_eq!(HeldCommand::wait(pid).unwrap(), 127);
        assert!(!marker.exists());
    }
}
