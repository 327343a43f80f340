//! `cargo xtask test`: the project's whole test command, as CI runs it.
//!
//! Formatting, clippy with warnings denied, then every test: nextest when installed (faster, one
//! process per test), else `cargo test`, plus the doc tests (nextest does not run them).

use anyhow::Result;

use crate::{
    docker,
    util::{cargo, have, run as run_command},
};

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
    if have("cargo-nextest") {
        run_command(
            cargo()
                .args([
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ])
                .args(extra),
        )?;
    } else {
        run_command(
            cargo()
                .args(["test", "--workspace", "--locked", "--no-fail-fast"])
                .args(extra),
        )?;
    }
    run_command(cargo().args(["test", "--workspace", "--locked", "--doc"]))
}
