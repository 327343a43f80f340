//! `cargo xtask soak`: runs the soak, the end-to-end test binary `tests/soak` (what it runs and
//! checks is documented there), on the release capturer.
//!
//! Builds the release binary, then runs the test with nextest with its output shown, the options
//! in the environment (`LC_SOAK_*`). Reports: `target/soak/report.{json,md}`,
//! `target/soak/resources.svg`.

use anyhow::{Context, Result};
use test_support::time::format_duration;

use crate::{
    docker,
    flags::SoakOptions,
    util::{build_release, cargo, run},
};

pub(crate) fn run_soak(options: SoakOptions) -> Result<()> {
    docker::ensure_daemon()?;
    let binary = build_release()?;
    let mut nextest = cargo();
    nextest
        .args([
            "nextest",
            "run",
            "--package",
            "end-to-end",
            "--test",
            "soak",
        ])
        .args([
            "--ignore-default-filter",
            "--no-capture",
            "-E",
            "test(=soak)",
        ])
        .env("LC_SOAK_BINARY", &binary)
        .env("LC_SOAK_DURATION", format_duration(options.duration))
        .env("LC_SOAK_CONTAINERS", options.containers.to_string())
        .env("LC_SOAK_RATE", options.rate.to_string())
        .env(
            "LC_SOAK_HEARTBEAT_INTERVAL",
            format_duration(options.heartbeat_interval),
        )
        .env(
            "LC_SOAK_TASK_TIMEOUT",
            format_duration(options.task_timeout),
        )
        .env("LC_SOAK_KEEP", if options.keep { "1" } else { "" })
        .env("LC_SOAK_SINK_LOKI", options.sink_loki.unwrap_or_default())
        .env("LC_SOAK_READ_MODE", options.read_mode.unwrap_or_default());
    run(&mut nextest).context("soak failed (see target/soak/report.md)")
}
