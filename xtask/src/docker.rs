//! `cargo xtask docker-up`: a Docker daemon on a fresh Debian machine.
//!
//! Installs Debian's `docker.io` when missing (see [`tools`](crate::tools)), and starts `dockerd`
//! in the background (its own session, logging to `target/dockerd.log`) when no daemon answers,
//! then waits for it. Never pulls an image.

use std::{
    fs::OpenOptions,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};

use test_support::{
    docker::{TEST_LABEL_KEYS, daemon_answers, remove_where},
    wait,
};

use crate::{
    tools::{self, Need},
    util::project_root,
};

/// How long a freshly started daemon may take to answer.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn ensure_daemon() -> Result<()> {
    if daemon_answers() {
        return Ok(());
    }
    tools::ensure(&[Need::Run])?;
    if daemon_answers() {
        return Ok(());
    }
    start_dockerd()?;
    let waited = wait::until_every(
        Duration::from_millis(250),
        DAEMON_START_TIMEOUT,
        "dockerd to answer",
        || Ok(daemon_answers()),
    )
    .with_context(|| format!("see {}", log_path().display()))?;
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

/// Closes the shell's descriptors above 2, then becomes `dockerd`.
const EXEC_DOCKERD_WITHOUT_INHERITED_FDS: &str = r#"for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"; done; exec dockerd"#;

fn start_dockerd() -> Result<()> {
    std::fs::create_dir_all(project_root().join("target"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path())
        .context("open the dockerd log")?;
    eprintln!("starting dockerd (log: {})", log_path().display());
    // `setsid` detaches the daemon from this process group, so it outlives the test run and
    // a Ctrl-C of the tests does not take it down. `bash` closes every descriptor it inherited
    // beyond stdio first: a `flock(1)` around the run hands its lock down as fd 3, and a daemon
    // that kept it would hold that lock for as long as it lives.
    Command::new("setsid")
        .args(["bash", "-c", EXEC_DOCKERD_WITHOUT_INHERITED_FDS])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start dockerd")?;
    Ok(())
}
