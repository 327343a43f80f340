//! Project automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! One module per subcommand; their options are parsed in one place, [`flags`]. Each finds the workspace root from `CARGO_MANIFEST_DIR`, runs
//! cargo through `$CARGO`, and sets up what it needs (a Docker daemon) on a fresh Debian machine.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod chaos;
mod docker;
mod flags;
mod image;
mod run;
mod soak;
mod test;
mod tidy;
mod tools;
mod util;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use crate::flags::{Command, Xtask};

fn main() -> Result<()> {
    match Xtask::parse().command {
        Some(Command::Test { nextest }) => test::run(&nextest),
        Some(Command::Run { args }) => run::run(&args),
        Some(Command::DockerUp) => docker::ensure_daemon(),
        Some(Command::Soak(options)) => soak::run_soak(options),
        Some(Command::Bench(options)) => bench::run(&options),
        Some(Command::Chaos(options)) => chaos::run(options),
        Some(Command::Image { tag }) => image::run(&tag),
        Some(Command::DeployCheck) => image::deploy_check::run(),
        None => {
            Xtask::command().print_help()?;
            Ok(())
        }
    }
}
