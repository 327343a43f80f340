//! How the soak, chaos and the benchmarks run the capturer: a fresh data dir with the default
//! file sink (`<data_dir>/logs/containers.jsonl`), only containers with one label
//! (`--include-label`), a JSON log to a file beside the reports, the health API on a free port.

use std::{path::PathBuf, process::Command, time::Duration};

use crate::time::format_duration;

/// The environment variable that sets `docker.read_from`.
const READ_FROM_ENV: &str = "LOG_CAPTURER_DOCKER_READ_FROM";

/// How to run the capturer.
#[derive(Debug, Clone)]
pub struct CapturerConfig {
    /// The binary (the soak, chaos and bench commands build the release one).
    pub binary: PathBuf,
    /// A fresh, empty data dir (checkpoints would otherwise change what is read).
    pub data_dir: PathBuf,
    /// Only containers with this label are monitored (`key=value`).
    pub include_label: String,
    /// `--heartbeat-interval`, when not the default.
    pub heartbeat_interval: Option<Duration>,
    /// `--task-timeout`, when not the default.
    pub task_timeout: Option<Duration>,
    /// Whether containers already running at start are read from their first line.
    pub read_from_beginning: bool,
    /// Where the capturer's own (JSON) log goes.
    pub log_file: PathBuf,
    /// Further settings as `LOG_CAPTURER_<SECTION>_<KEY>` environment variables.
    pub extra_env: Vec<(String, String)>,
}

/// The capturer's command line and environment for `config` (no stdio set).
pub fn command(config: &CapturerConfig) -> Command {
    let mut command = Command::new(&config.binary);
    command
        .arg("--data-dir")
        .arg(&config.data_dir)
        .args(["--health-listen", "127.0.0.1:0"])
        .args(["--include-label", &config.include_label])
        .args(["--log-format", "json"]);
    if let Some(interval) = config.heartbeat_interval {
        command.args(["--heartbeat-interval", &format_duration(interval)]);
    }
    if let Some(timeout) = config.task_timeout {
        command.args(["--task-timeout", &format_duration(timeout)]);
    }
    // The caller's own LOG_CAPTURER_* settings would make runs incomparable.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOG_CAPTURER_") {
            command.env_remove(key);
        }
    }
    if config.read_from_beginning {
        command.env(READ_FROM_ENV, "beginning");
    }
    command.envs(config.extra_env.iter().map(|(key, value)| (key, value)));
    command
}
