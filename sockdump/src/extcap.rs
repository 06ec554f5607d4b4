//! sockdump as a Wireshark extcap. The protocol is in the sockdump-extcap
//! crate; this answers Wireshark's calls, starts captures into its fifo, and
//! installs sockdump where Wireshark looks.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use sockdump_extcap::install::{Folders, Plan, Scope};
use sockdump_extcap::{config, dlts, filter, interfaces, Call, HookValue};

use crate::capture::HookChoice;
use crate::cli::Cli;
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
        Call::Config => say(&config(&hook_values()))?,
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

/// The dialog's `--hook` choices: `auto`, then every hook family.
fn hook_values() -> Vec<HookValue<'static>> {
    let auto = HookValue { value: HookChoice::AUTO, display: "the first the kernel allows" };
    let families =
        sockdump_ebpf::FAMILIES.iter().map(|f| HookValue { value: f.name, display: f.description });
    std::iter::once(auto).chain(families).collect()
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
    /// For every user of this machine (needs root), instead of the current user
    #[arg(long)]
    system: bool,
    /// Remove what install put there
    #[arg(long)]
    uninstall: bool,
    /// Also give this binary the file capabilities a non-root user needs to capture (needs root)
    #[arg(long)]
    setcap: bool,
    /// The tshark that reports the Wireshark installation's folders
    #[arg(long, default_value = "tshark")]
    tshark: PathBuf,
}

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
    let scope = if args.system { Scope::System } else { Scope::User };
    let plan = Plan::new(&folders(&args.tshark)?, scope).map_err(|e| anyhow!(e))?;
    if args.uninstall {
        plan.uninstall().context("cannot remove the extcap link or the Lua plugin")?;
        say(&format!("removed {} and {}\n", plan.extcap_link().display(), plan.lua_plugin().display()))?;
        return Ok(());
    }
    let exe = std::env::current_exe()
        .and_then(|exe| exe.canonicalize())
        .context("cannot find this binary's path")?;
    plan.install(&exe, LUA_PLUGIN).with_context(|| {
        format!("cannot install into {} and {}", plan.extcap_dir.display(), plan.lua_dir.display())
    })?;
    say(&format!("linked {} -> {}\n", plan.extcap_link().display(), exe.display()))?;
    say(&format!("wrote {}\n", plan.lua_plugin().display()))?;

    // Wireshark runs extcaps as the user, not with dumpcap's privileges.
    let setcap = format!("setcap {} {}", system::capabilities(), exe.display());
    if args.setcap {
        let status = Command::new("setcap")
            .args([system::capabilities(), &exe.to_string_lossy()])
            .status()
            .context("cannot run setcap (apt-get install libcap2-bin)")?;
        if !status.success() {
            bail!("`{setcap}` failed: run it as root");
        }
        say(&format!(
            "gave {} its capabilities: every user who can run it can capture unix socket traffic\n",
            exe.display()
        ))?;
        say(&format!("(restrict that, e.g.: chgrp wireshark {0}; chmod 750 {0})\n", exe.display()))?;
    } else {
        say(&format!(
            "to capture in Wireshark without root, give sockdump its capabilities: sudo {setcap}\n"
        ))?;
    }
    say("restart Wireshark, then pick \"Unix sockets (sockdump)\" from the interfaces\n")?;
    Ok(())
}
