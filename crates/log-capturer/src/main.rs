//! `log-capturer`: captures every log line of every Docker container and ships it to Loki or
//! files.
//!
//! This binary is thin on purpose: flags and config ([`config`]), logging, signals, the
//! wiring of the library crates ([`app`]) and configuration reloads on `SIGHUP` ([`reload`]).
//! Exit codes: 0 after a clean shutdown, 64 for a configuration error (EX_USAGE), 73 when the
//! data dir is locked by another agent or cannot be created (EX_CANTCREAT, [`lock`]), 1 for a
//! runtime failure.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod cli;
mod config;
mod lock;
mod logging;
mod reload;
mod signal;
mod status;

use std::process::ExitCode;

use clap::Parser;

/// EX_USAGE from sysexits.h: the configuration (or command line) is wrong.
const EXIT_CONFIG: u8 = 64;
/// EX_CANTCREAT from sysexits.h: the data dir is another agent's, or cannot be created.
const EXIT_DATA_DIR: u8 = 73;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Kept for reloads, which read the configuration with the same flags and environment.
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut config = match config::Config::load(&cli, env.iter().cloned()) {
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
    // Taken before anything reads or writes the data dir, and held until `main` returns.
    let data_dir_lock = match lock::DataDirLock::acquire(&config.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("log-capturer: {e}");
            return ExitCode::from(EXIT_DATA_DIR);
        }
    };
    // Every path under the data dir (cursors, buffers, the default file sink) is absolute from
    // here on, whatever the working directory.
    config.data_dir = data_dir_lock.dir().to_path_buf();
    tracing::info!(
        data_dir = %config.data_dir.display(),
        lock_file = lock::LOCK_FILE,
        pid = std::process::id(),
        "data dir locked"
    );
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
    let code = match runtime.block_on(app::run(config, reload::Inputs { cli, env })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "log-capturer failed");
            ExitCode::FAILURE
        }
    };
    // The runtime's threads are gone before the lock is released.
    drop(runtime);
    drop(data_dir_lock);
    code
}
