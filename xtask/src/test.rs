//! `cargo xtask test`: the project's whole test command, as CI runs it.
//!
//! Formatting, clippy with warnings denied, then every test: nextest when installed (faster, one
//! process per test), else `cargo test`, plus the doc tests (nextest does not run them).

use anyhow::Result;

use crate::{
    docker,
    util::{cargo, have, project_root, run as run_command},
};

/// The integration-test binary (of docker-source) whose tests restart the Docker daemon.
const DAEMON_RESTART_BINARY: &str = "daemon_restart";

pub(crate) fn run(extra: &[String]) -> Result<()> {
    docker::ensure_daemon()?;
    run_command(cargo().args(["fmt", "--all", "--check"]))?;
    run_command(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The end-to-end tests drive this binary; build it once, up front.
    run_command(cargo().args(["build", "--locked", "--package", "log-capturer"]))?;
    let binary = project_root().join("target/debug/log-capturer");
    if have("cargo-nextest") {
        // Tests that restart the Docker daemon would break every other Docker test running
        // at the time, so they run on their own, after the rest.
        run_command(
            cargo()
                .args([
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ])
                .args(["-E", &format!("not binary({DAEMON_RESTART_BINARY})")])
                .args(extra)
                .env("CAPTURER_BIN_UNDER_TEST", &binary),
        )?;
        run_command(
            cargo()
                .args([
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ])
                .args(["-E", &format!("binary({DAEMON_RESTART_BINARY})")])
                .args(["--no-tests", "pass"])
                .args(extra)
                .env("CAPTURER_BIN_UNDER_TEST", &binary),
        )?;
    } else {
        run_command(
            cargo()
                .args(["test", "--workspace", "--locked", "--no-fail-fast"])
                .args(["--", "--test-threads", "2"])
                .args(extra)
                .env("CAPTURER_BIN_UNDER_TEST", &binary),
        )?;
    }
    run_command(cargo().args(["test", "--workspace", "--locked", "--doc"]))
}
