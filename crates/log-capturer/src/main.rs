//! `log-capturer`: captures every log line of every Docker container and ships it to Loki or
//! files.
//!
//! This binary is thin on purpose: flags and config ([`config`]), logging, signals, and the
//! wiring of the library crates ([`app`]). Exit codes: 0 after a clean shutdown, 64 for a
//! configuration error (EX_USAGE), 1 for a runtime failure.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod cli;
mod config;
mod logging;
mod signal;
mod status;

use std::process::ExitCode;

use clap::Parser;

/// EX_USAGE from sysexits.h: the configuration (or command line) is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match config::Config::load(&cli, std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("log-capturer: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        print!("{}", config.check_report());
        return ExitCode::SUCCESS;
    }
    logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("log-capturer")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("log-capturer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "log-capturer failed");
            ExitCode::FAILURE
        }
    }
}
