//! The `[docker]` configuration table and its validation.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Error, MultilineConfig, Result, multiline::MultilineRules};

/// Where containers that are already running when the agent first starts (with no saved state
/// at all: no `checkpoints.json`) are read from. Containers that start later are always read
/// from their first line, and a later start of the agent reads what happened while it was away
/// (see `startup.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Everything Docker kept for the container.
    Beginning,
    /// Lines written from the agent's start on.
    #[default]
    End,
}

/// How a container's lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// From its log files when its driver writes files (`json-file`, `local`) the agent can
    /// read, else through the API.
    #[default]
    Auto,
    /// Always through the Docker API.
    Api,
    /// From the log files of every `json-file` and `local` container; the source fails at start
    /// if Docker's `containers` directory cannot be read, and a container whose files cannot be
    /// read fails its task. Containers of other drivers (which write no file) use the API.
    Files,
}

impl ReadMode {
    /// The mode's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadMode::Auto => "auto",
            ReadMode::Api => "api",
            ReadMode::Files => "files",
        }
    }
}

/// The `[docker]` table of the configuration.
///
/// # Timeout order
///
/// A container task beats its heartbeat on every wake-up and on a tick while it waits (for a
/// silent stream or a full batch channel), so it only misses heartbeats when it is truly hung.
/// The deadlines it enforces itself must fire first, which [`DockerConfig::validate`] checks:
///
/// ```text
/// request_timeout, inactivity_timeout  <  supervisor.task_timeout
/// ```
///
/// so a stream that hangs is reopened by the task (`inactivity_timeout`), a request that hangs is
/// failed by the client (`request_timeout`), and the supervisor's heartbeat timeout only fires for
/// a task whose code is stuck.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The daemon: `unix:///var/run/docker.sock`, `tcp://host:2375` or `https://host:2376`.
    /// `None` means `$DOCKER_HOST`, else the local socket. Docker takes no credentials in its
    /// URL: a `user:password@` written into it is removed as the value is read, never shown.
    #[serde(deserialize_with = "capture_core::url::deserialize_without_userinfo")]
    pub host: Option<String>,
    /// For `https://`: the CA certificate that signs the daemon's (PEM). Defaults to
    /// `$DOCKER_CERT_PATH/ca.pem`.
    pub tls_ca: Option<PathBuf>,
    /// For `https://`: the client certificate (PEM). Defaults to `$DOCKER_CERT_PATH/cert.pem`.
    pub tls_cert: Option<PathBuf>,
    /// For `https://`: the client key (PEM). Defaults to `$DOCKER_CERT_PATH/key.pem`.
    pub tls_key: Option<PathBuf>,
    /// Globs on the container name; empty means every name.
    pub include_names: Vec<String>,
    /// Globs on the container name; a match excludes the container.
    pub exclude_names: Vec<String>,
    /// `key` or `key=value`; every entry must match.
    pub include_labels: Vec<String>,
    /// `key` or `key=value`; any match excludes the container.
    pub exclude_labels: Vec<String>,
    /// Globs on the image the container was created from; empty means every image.
    pub include_images: Vec<String>,
    /// Globs on the image the container was created from; a match excludes the container.
    pub exclude_images: Vec<String>,
    /// Where containers already running at first start are read from.
    pub read_from: ReadFrom,
    /// How containers' lines are read: `auto` (files when readable, else the API), `api` or
    /// `files`.
    pub read_mode: ReadMode,
    /// A stream silent this long while its container runs is reopened from its cursor.
    #[serde(with = "humantime_serde")]
    pub inactivity_timeout: Duration,
    /// The longest a request to the daemon may take to answer (its headers, for streams).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Lines longer than this are truncated (and counted as `reason="truncated"`).
    pub max_line_bytes: usize,
    /// A line Docker split into pieces whose end has not come after this long is sent as is.
    #[serde(with = "humantime_serde")]
    pub partial_flush_timeout: Duration,
    /// How often acknowledged cursors are written to the checkpoint file.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// How often the containers are listed again while the events stream is connected, so a
    /// connection that went silent without failing does not hide a new container for long.
    #[serde(with = "humantime_serde")]
    pub relist_interval: Duration,
    /// How many stream-worker threads read container logs.
    pub stream_threads: usize,
    /// A batch is sent once it holds this many lines.
    pub batch_max_lines: usize,
    /// A batch is sent once it holds this many bytes of messages.
    pub batch_max_bytes: usize,
    /// A batch is sent at the latest this long after its first line.
    #[serde(with = "humantime_serde")]
    pub batch_max_latency: Duration,
    /// A removed container's stream is read on (Docker serves it from its open file) until it
    /// ends, or until nothing was read or handed over for this long.
    #[serde(with = "humantime_serde")]
    pub removed_drain_timeout: Duration,
    /// ... or at the latest this long after the removal, even while it progresses.
    #[serde(with = "humantime_serde")]
    pub removed_drain_max: Duration,
    /// `[[docker.multiline]]`: rules that join the lines of one event (a stack trace) into one.
    pub multiline: Vec<MultilineConfig>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            include_names: Vec::new(),
            exclude_names: Vec::new(),
            include_labels: Vec::new(),
            exclude_labels: Vec::new(),
            include_images: Vec::new(),
            exclude_images: Vec::new(),
            read_from: ReadFrom::End,
            read_mode: ReadMode::Auto,
            inactivity_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_line_bytes: 1024 * 1024,
            partial_flush_timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(1),
            relist_interval: Duration::from_secs(30),
            stream_threads: 1,
            batch_max_lines: 2048,
            batch_max_bytes: 1024 * 1024,
            batch_max_latency: Duration::from_millis(20),
            removed_drain_timeout: Duration::from_secs(5),
            removed_drain_max: Duration::from_secs(120),
            multiline: Vec::new(),
        }
    }
}

/// The most stream-worker threads (each is a thread with its own runtime).
const MAX_STREAM_THREADS: usize = 64;

/// The longest `relist_interval`: a silent events connection must not hide containers longer.
const MAX_RELIST: Duration = Duration::from_secs(60);

/// The smallest useful line limit: one Docker piece.
const MIN_MAX_LINE_BYTES: usize = 16 * 1024;

impl DockerConfig {
    /// The container filters' keys: each a list of patterns.
    pub const FILTER_KEYS: &'static [&'static str] = &[
        "include_names",
        "exclude_names",
        "include_labels",
        "exclude_labels",
        "include_images",
        "exclude_images",
    ];

    /// Checks every setting, including that the source's own deadlines fire before the
    /// supervisor's heartbeat timeout `task_timeout` (see the type's documentation).
    pub fn validate(&self, task_timeout: Duration) -> Result<()> {
        if let Some(host) = &self.host {
            crate::client::Endpoint::parse(host)?;
        }
        crate::filter::ContainerFilter::new(self)?;
        if self.inactivity_timeout.is_zero() || self.inactivity_timeout >= task_timeout {
            return Err(Error::config(
                "inactivity_timeout",
                format!(
                    "must be above zero and shorter than supervisor.task_timeout ({} >= {})",
                    humantime::format_duration(self.inactivity_timeout),
                    humantime::format_duration(task_timeout)
                ),
            ));
        }
        if self.request_timeout < Duration::from_secs(1) || self.request_timeout >= task_timeout {
            return Err(Error::config(
                "request_timeout",
                format!(
                    "must be at least 1s and shorter than supervisor.task_timeout ({})",
                    humantime::format_duration(task_timeout)
                ),
            ));
        }
        if self.max_line_bytes < MIN_MAX_LINE_BYTES || self.max_line_bytes > u32::MAX as usize / 4 {
            return Err(Error::config(
                "max_line_bytes",
                format!("must be between {MIN_MAX_LINE_BYTES} and 1 GiB"),
            ));
        }
        if self.stream_threads == 0 || self.stream_threads > MAX_STREAM_THREADS {
            return Err(Error::config(
                "stream_threads",
                format!("must be between 1 and {MAX_STREAM_THREADS}"),
            ));
        }
        if self.batch_max_lines == 0 {
            return Err(Error::config("batch_max_lines", "must be above zero"));
        }
        if self.batch_max_bytes == 0 || self.batch_max_bytes > u32::MAX as usize / 4 {
            return Err(Error::config(
                "batch_max_bytes",
                "must be above zero and at most 1 GiB",
            ));
        }
        if self.relist_interval < Duration::from_secs(1) || self.relist_interval > MAX_RELIST {
            return Err(Error::config(
                "relist_interval",
                format!(
                    "must be between 1s and {}",
                    humantime::format_duration(MAX_RELIST)
                ),
            ));
        }
        for (key, value) in [
            ("partial_flush_timeout", self.partial_flush_timeout),
            ("checkpoint_interval", self.checkpoint_interval),
            ("batch_max_latency", self.batch_max_latency),
            ("removed_drain_timeout", self.removed_drain_timeout),
            ("removed_drain_max", self.removed_drain_max),
        ] {
            if value.is_zero() {
                return Err(Error::config(key, "must be above zero"));
            }
        }
        if self.removed_drain_max < self.removed_drain_timeout {
            return Err(Error::config(
                "removed_drain_max",
                "must be at least removed_drain_timeout",
            ));
        }
        MultilineRules::new(&self.multiline, self.inactivity_timeout)?;
        Ok(())
    }
}
