//! `cargo xtask docker-up`: a Docker daemon on a fresh Debian machine.
//!
//! Installs Debian's `docker.io` when missing (see [`tools`](crate::tools)), and starts `dockerd`
//! in the background (its own session, logging to `target/dockerd.log`) when no daemon answers,
//! then waits for it. Never pulls an image.

use anyhow::Result;

use test_support::docker::{TEST_LABEL_KEYS, daemon_answers, remove_where, start_daemon};

use crate::{
    tools::{self, Need},
    util::project_root,
};

pub(crate) fn ensure_daemon() -> Result<()> {
    if daemon_answers() {
        return Ok(());
    }
    tools::ensure(&[Need::Run])?;
    if daemon_answers() {
        return Ok(());
    }
    eprintln!("starting dockerd (log: {})", log_path().display());
    let waited = start_daemon(&log_path())?;
    eprintln!("dockerd answers after {:.1}s", waited.as_secs_f64());
    Ok(())
}

/// Removes the stopped containers that earlier test runs left behind (a test process killed
/// before its guards dropped, a daemon restarted mid-run). Running ones are left alone: they may
/// belong to tests running now. Says how many it removed.
pub(crate) fn remove_left_test_containers() -> Result<()> {
    let mut removed = 0;
    for label in TEST_LABEL_KEYS {
        removed += remove_where(&[
            &format!("label={label}"),
            "status=created",
            "status=exited",
            "status=dead",
        ])?;
    }
    if removed > 0 {
        eprintln!("xtask: removed {removed} stopped test containers earlier runs left");
    }
    Ok(())
}

fn log_path() -> std::path::PathBuf {
    project_root().join("target").join("dockerd.log")
}
