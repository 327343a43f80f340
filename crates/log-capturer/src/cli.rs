//! Command-line flags. Each flag overrides one config key (flags > environment > file > defaults).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Captures every log line of every Docker container and ships it to Loki or files.
///
/// Run with no arguments it uses the embedded default: the local Docker socket (or
/// $DOCKER_HOST), every container, a JSON-lines file sink under the data dir, and the health API
/// on 127.0.0.1:8401. Every config key can also be set in the environment as
/// LOG_CAPTURER_<SECTION>_<KEY> (for example LOG_CAPTURER_SUPERVISOR_TASK_TIMEOUT=5m).
#[derive(Debug, Parser)]
#[command(name = "log-capturer", version, about, long_about)]
pub(crate) struct Cli {
    /// The TOML config file.
    #[arg(long, value_name = "FILE", env = "LOG_CAPTURER_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    /// Validate the configuration, print the effective config (secrets redacted) and exit
    /// (0 when valid, 64 when not).
    #[arg(long)]
    pub(crate) check_config: bool,

    /// Where checkpoints, disk buffers and the default file sink live (`data_dir`).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<String>,

    /// The Docker endpoint: unix://, tcp:// or https:// (`docker.host`).
    #[arg(long, value_name = "URL")]
    pub(crate) docker_host: Option<String>,

    /// The health API's listen address (`health.listen`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) health_listen: Option<String>,

    /// Only containers with this label, `key` or `key=value`; repeatable, all must match
    /// (`docker.include_labels`).
    #[arg(long, value_name = "LABEL")]
    pub(crate) include_label: Vec<String>,

    /// Not containers with this label, `key` or `key=value`; repeatable, any match excludes
    /// (`docker.exclude_labels`).
    #[arg(long, value_name = "LABEL")]
    pub(crate) exclude_label: Vec<String>,

    /// Only containers whose name matches this glob; repeatable, any may match
    /// (`docker.include_names`).
    #[arg(long, value_name = "GLOB")]
    pub(crate) include_name: Vec<String>,

    /// Not containers whose name matches this glob; repeatable (`docker.exclude_names`).
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude_name: Vec<String>,

    /// Only containers whose image matches this glob; repeatable, any may match
    /// (`docker.include_images`).
    #[arg(long, value_name = "GLOB")]
    pub(crate) include_image: Vec<String>,

    /// Not containers whose image matches this glob; repeatable (`docker.exclude_images`).
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude_image: Vec<String>,

    /// How often tasks must heartbeat, e.g. 30s (`supervisor.heartbeat_interval`).
    #[arg(long, value_name = "DURATION")]
    pub(crate) heartbeat_interval: Option<String>,

    /// How long without a heartbeat before a task is declared dead, e.g. 5m
    /// (`supervisor.task_timeout`).
    #[arg(long, value_name = "DURATION")]
    pub(crate) task_timeout: Option<String>,

    /// The format of the agent's own logs (`log.format`).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormatArg>,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
}

impl Cli {
    /// The container filter flags and the `[docker]` list each one replaces when given.
    pub(crate) fn filter_flags(&self) -> [(&'static str, &[String]); 6] {
        [
            ("include_labels", &self.include_label),
            ("exclude_labels", &self.exclude_label),
            ("include_names", &self.include_name),
            ("exclude_names", &self.exclude_name),
            ("include_images", &self.include_image),
            ("exclude_images", &self.exclude_image),
        ]
    }
}

impl LogFormatArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        }
    }
}
