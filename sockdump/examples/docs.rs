//! Writes sockdump's man pages and bash, zsh and fish completions, generated
//! from its command line, into DIR/man and DIR/completions; the Debian
//! package ships them (packaging/build-deb runs this).
//!
//! Usage: cargo run --release --example docs -- DIR

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args_os().nth(1).context("usage: docs DIR")?);
    // main() hands `sockdump extcap ...` to its own parser: document it as the subcommand it is
    let extcap = sockdump::extcap::ExtcapCli::command().name("extcap");
    let mut command = sockdump::cli::Cli::command().subcommand(extcap);

    let man = dir.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    clap_mangen::generate_to(command.clone(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;

    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "sockdump", &completions)
            .with_context(|| format!("cannot write the {shell} completion into {}", completions.display()))?;
    }
    Ok(())
}
