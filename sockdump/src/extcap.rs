//! sockdump as a Wireshark extcap. The protocol is in the sockdump-extcap
//! crate; this answers Wireshark's calls, starts captures into its fifo, and
//! installs sockdump where Wireshark looks.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use sockdump_extcap::install::{self, Access, Folders, Plan, Scope, SYSTEM_COPY};
use sockdump_extcap::{config, dlts, filter, interfaces, Call, Choice};

use crate::capture::HookChoice;
use crate::cli::Cli;
use crate::containers;
use crate::system;

/// The Lua plugin that turns sockdump's packet comments into fields.
const LUA_PLUGIN: &str = include_str!("../../wireshark/sockdump.lua");

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn say(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// Answers one call from Wireshark.
pub fn answer(args: &[OsString]) -> Result<()> {
    match sockdump_extcap::parse(args)? {
        Call::Interfaces => say(&interfaces(env!("CARGO_PKG_VERSION")))?,
        Call::Dlts => say(&dlts())?,
        Call::Config { reload: None } => say(&config(&choices))?,
        Call::Config { reload: Some(call) } => say(&sockdump_extcap::reload(&call, &choices(&call)))?,
        // Wireshark shows what is printed here under the filter; nothing means valid.
        Call::FilterCheck(text) => {
            if let Err(err) = filter::to_options(&text) {
                say(&format!("{err}\n"))?;
            }
        }
        Call::Capture(capture) => {
            let argv = ["sockdump", "--format", "pcapng", "--output"]
                .into_iter()
                .map(OsString::from)
                .chain([capture.fifo.into_os_string()])
                .chain(capture.options.into_iter().map(OsString::from))
                .chain(viewer_excluded(capture.include_viewer));
            let mut cli = Cli::try_parse_from(argv)?;
            cli.quiet = true;
            cli.output_is_fifo = true;
            crate::run::run(cli)?;
        }
    }
    Ok(())
}

/// Wireshark (or tshark) started this process: leave out its own
/// conversations, unless the dialog asks for them, or its display traffic
/// would fill the capture it displays.
fn viewer_excluded(include_viewer: bool) -> Vec<OsString> {
    let viewer = nix::unistd::getppid().as_raw();
    if include_viewer || viewer <= 1 {
        return Vec::new();
    }
    vec!["--exclude-pid".into(), viewer.to_string().into()]
}

/// The choices of the dialog's selector `call`: for `--hook` `auto`, then
/// every hook family; for `--container` any, then the running containers
/// (none listed when the engine cannot be asked).
fn choices(call: &str) -> Vec<Choice> {
    let choice = |value: &str, display: String| Choice { value: value.into(), display };
    match call {
        "--hook" => std::iter::once(choice(HookChoice::AUTO, "auto: the first the kernel allows".into()))
            .chain(
                sockdump_ebpf::FAMILIES
                    .iter()
                    .map(|f| choice(f.name, format!("{}: {}", f.name, f.description))),
            )
            .collect(),
        "--container" => {
            let running = containers::list(None).unwrap_or_default();
            std::iter::once(choice("", "any (every process, in a container or not)".into()))
                .chain(running.iter().map(|c| {
                    let image = c.image.as_deref().unwrap_or("?");
                    choice(
                        c.display_name(),
                        format!("{} ({image}, {})", c.display_name(), &c.id[..12.min(c.id.len())]),
                    )
                }))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// `sockdump extcap ...`
#[derive(Debug, Parser)]
// A missing subcommand is an error, not the help printed as one.
#[command(
    name = "sockdump extcap",
    about = "Make sockdump a capture interface in Wireshark and tshark",
    arg_required_else_help = false
)]
pub struct ExtcapCli {
    #[command(subcommand)]
    command: ExtcapCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ExtcapCommand {
    /// Link sockdump into Wireshark's extcap folder and install its Lua plugin
    Install(InstallArgs),
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    /// For every user of this machine (needs root): installs a root-owned copy in
    /// /usr/local/lib/sockdump and links Wireshark's global extcap folder to it
    #[arg(long)]
    system: bool,
    /// Remove what install put there
    #[arg(long)]
    uninstall: bool,
    /// With --system: let members of group sockdump capture without root (the copy
    /// gets mode 0750, group sockdump and the capabilities CAP_BPF + CAP_PERFMON)
    #[arg(long)]
    setcap: bool,
    /// The tshark that reports the Wireshark installation's folders
    #[arg(long, default_value = "tshark")]
    tshark: PathBuf,
}

/// Members of this group may run a copy that has capabilities.
const CAPTURE_GROUP: &str = "sockdump";

/// The Debian package's binary, which its extcap links point to.
const PACKAGED: &str = "/usr/bin/sockdump";

/// `sockdump extcap ...`; a command-line error returns as the clap::Error,
/// which main reports in one line like any other.
pub fn command(args: &[OsString]) -> Result<()> {
    let cli = ExtcapCli::try_parse_from(
        std::iter::once(OsString::from("sockdump extcap")).chain(args.iter().cloned()),
    )?;
    match cli.command {
        ExtcapCommand::Install(args) => install(&args),
    }
}

/// The folders the installed Wireshark uses, from `tshark -G folders`.
fn folders(tshark: &Path) -> Result<Folders> {
    let out = Command::new(tshark).args(["-G", "folders"]).output().with_context(|| {
        format!(
            "cannot ask Wireshark where it looks for extcaps: running `{} -G folders` failed; \
             install tshark (apt-get install tshark) or name it with --tshark",
            tshark.display()
        )
    })?;
    if !out.status.success() {
        // tshark's complaint can span lines; an error here is one
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        bail!("`{} -G folders` failed: {}", tshark.display(), said.join(" | "));
    }
    Ok(Folders::parse(&String::from_utf8_lossy(&out.stdout)))
}

fn install(args: &InstallArgs) -> Result<()> {
    // A user's own binary with capabilities would let every local account capture.
    if args.setcap && !args.system {
        bail!("--setcap only goes with --system: as root, run `sockdump extcap install --system --setcap`");
    }
    if args.system && !nix::unistd::geteuid().is_root() {
        bail!("--system installs for every user: run it as root (sudo sockdump extcap install --system)");
    }
    let scope = if args.system { Scope::System } else { Scope::User };
    let plan = Plan::new(&folders(&args.tshark)?, scope).map_err(|e| anyhow!(e))?;
    if args.system && plan.extcap_link().canonicalize().is_ok_and(|target| target == Path::new(PACKAGED)) {
        bail!(
            "{} belongs to the Debian package: to let group sockdump capture, run `sudo dpkg-reconfigure sockdump`",
            plan.extcap_link().display()
        );
    }
    if args.uninstall {
        plan.uninstall().context("cannot remove the extcap link or the Lua plugin")?;
        say(&format!("removed {} and {}\n", plan.extcap_link().display(), plan.lua_plugin().display()))?;
        if args.system {
            install::remove_copy(Path::new(SYSTEM_COPY))
                .with_context(|| format!("cannot remove {SYSTEM_COPY}"))?;
            say(&format!("removed {SYSTEM_COPY}\n"))?;
        }
        return Ok(());
    }
    let exe = if args.system {
        system_copy(args.setcap)?
    } else {
        std::env::current_exe()
            .and_then(|exe| exe.canonicalize())
            .context("cannot find this binary's path")?
    };
    plan.install(&exe, LUA_PLUGIN).with_context(|| {
        format!("cannot install into {} and {}", plan.extcap_dir.display(), plan.lua_dir.display())
    })?;
    say(&format!("linked {} -> {}\n", plan.extcap_link().display(), exe.display()))?;
    say(&format!("wrote {}\n", plan.lua_plugin().display()))?;

    // Wireshark runs extcaps as the user, not with dumpcap's privileges.
    if args.setcap {
        say(&format!(
            "members of group {CAPTURE_GROUP} can now capture without root, and with --all-users \
             read every process's unix socket traffic: add one with `sudo adduser USER {CAPTURE_GROUP}` \
             (effective at their next login)\n"
        ))?;
    } else {
        say(
            "to capture in Wireshark without root, as root run `sockdump extcap install --system --setcap` \
             and add the Wireshark user to group sockdump\n",
        )?;
    }
    say("restart Wireshark, then pick \"Unix sockets (sockdump)\" from the interfaces\n")?;
    Ok(())
}

/// Installs the running binary as [`SYSTEM_COPY`]; with `setcap`, runnable by
/// root and group sockdump only, with the capabilities to capture. Refuses a
/// folder someone other than root could change: they could swap the binary
/// that every Wireshark user runs, or give the capabilities to their own.
fn system_copy(setcap: bool) -> Result<PathBuf> {
    let copy = Path::new(SYSTEM_COPY);
    let dir = copy.parent().context("the system copy's path has no folder")?;
    if !dir.exists() {
        // readable by the group's members whatever root's umask
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if let Some(open) =
        install::writable_by_others(dir).with_context(|| format!("cannot check {}", dir.display()))?
    {
        bail!(
            "refusing to install into {}: {} is owned or writable by a user other than root, who could \
             replace the binary; make it root's alone (chown root:root, chmod go-w)",
            dir.display(),
            open.display()
        );
    }
    let access = if setcap { Access::Group(capture_group()?) } else { Access::Everyone };
    // /proc/self/exe is the file this process runs, whatever its path holds by now
    install::install_copy(Path::new("/proc/self/exe"), copy, access)
        .with_context(|| format!("cannot install {SYSTEM_COPY}"))?;
    if setcap {
        // after the chown in install_copy, which would clear them
        let status = Command::new("setcap")
            .args([system::capabilities(), SYSTEM_COPY])
            .status()
            .context("cannot run setcap (apt-get install libcap2-bin)")?;
        if !status.success() {
            bail!("`setcap {} {SYSTEM_COPY}` failed", system::capabilities());
        }
    }
    Ok(copy.to_path_buf())
}

/// The capture group's id, creating it as a system group when missing.
fn capture_group() -> Result<u32> {
    let lookup = || {
        nix::unistd::Group::from_name(CAPTURE_GROUP)
            .with_context(|| format!("cannot look up group {CAPTURE_GROUP}"))
    };
    if let Some(group) = lookup()? {
        return Ok(group.gid.as_raw());
    }
    let status = Command::new("groupadd")
        .args(["--system", CAPTURE_GROUP])
        .status()
        .context("cannot run groupadd (apt-get install passwd)")?;
    if !status.success() {
        bail!("`groupadd --system {CAPTURE_GROUP}` failed: create the group by hand and run this again");
    }
    lookup()?
        .map(|group| group.gid.as_raw())
        .with_context(|| format!("group {CAPTURE_GROUP} is still missing after groupadd"))
}
