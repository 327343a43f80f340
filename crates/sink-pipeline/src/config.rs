//! Configuration of the pipeline and its sinks, as the `[batch]` and `[[sinks]]` TOML tables.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::sinks::http::{Endpoint, TlsConfig};
pub use crate::sinks::loki::{LokiAuth, LokiCompression, LokiOutOfOrder, LokiSinkConfig};
pub use crate::sinks::otlp::{
    OtlpCompression, OtlpHeaders, OtlpSinkConfig, Severity, SeverityByStream,
};

/// The pipeline's configuration. The data directory is passed separately to
/// [`Pipeline::new`](crate::Pipeline::new).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// How input batches are grouped before delivery.
    #[serde(default)]
    pub batch: BatchConfig,
    /// The sinks; the binary configures [`FileSinkConfig::default_for`] when none is given.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// When the pipeline hands the batches it has collected to the sinks: whichever limit is
/// reached first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Lines per delivery.
    pub max_events: usize,
    /// Message bytes per delivery.
    pub max_bytes: usize,
    /// How long the first line of a delivery may wait for more.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 10_000,
            max_bytes: 4 * 1024 * 1024,
            max_age: Duration::from_millis(50),
        }
    }
}

impl BatchConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_events == 0 || self.max_bytes == 0 || self.max_age.is_zero() {
            return Err(Error::Config {
                reason: "batch.max_events, batch.max_bytes and batch.max_age must be positive"
                    .into(),
            });
        }
        Ok(())
    }
}

/// One `[[sinks]]` entry, selected by its `type`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// JSON lines in a local file, with rotation (the default sink).
    File(FileSinkConfig),
    /// JSON lines or plain text on standard output.
    Stdout(StdoutSinkConfig),
    /// Grafana Loki's push API.
    Loki(LokiSinkConfig),
    /// OpenTelemetry's OTLP/HTTP logs (protobuf).
    Otlp(OtlpSinkConfig),
}

impl SinkConfig {
    /// The sink's type name: `file`, `stdout`, `loki` or `otlp`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Loki(_) => "loki",
            SinkConfig::Otlp(_) => "otlp",
        }
    }

    /// The configured name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            SinkConfig::File(config) => config.name.as_deref(),
            SinkConfig::Stdout(config) => config.name.as_deref(),
            SinkConfig::Loki(config) => config.name.as_deref(),
            SinkConfig::Otlp(config) => config.name.as_deref(),
        }
    }

    /// The disk buffer settings.
    pub fn buffer(&self) -> &BufferConfig {
        match self {
            SinkConfig::File(config) => &config.buffer,
            SinkConfig::Stdout(config) => &config.buffer,
            SinkConfig::Loki(config) => &config.buffer,
            SinkConfig::Otlp(config) => &config.buffer,
        }
    }

    /// The retry settings.
    pub fn retry(&self) -> &RetryConfig {
        match self {
            SinkConfig::File(config) => &config.retry,
            SinkConfig::Stdout(config) => &config.retry,
            SinkConfig::Loki(config) => &config.retry,
            SinkConfig::Otlp(config) => &config.retry,
        }
    }
}

/// Gives each sink its configured name, or its type de-duplicated (`file`, `file-2`, ...), and
/// rejects names that repeat or would not be safe as a directory name.
pub(crate) fn resolve_sink_names(sinks: &[SinkConfig]) -> Result<Vec<String>> {
    let explicit: Vec<&str> = sinks.iter().filter_map(SinkConfig::name).collect();
    let mut taken: HashSet<String> = HashSet::new();
    for name in &explicit {
        validate_sink_name(name)?;
        if !taken.insert((*name).to_owned()) {
            return Err(Error::Config {
                reason: format!("two sinks are named {name:?}"),
            });
        }
    }
    let mut names = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let name = match sink.name() {
            Some(name) => name.to_owned(),
            None => {
                let kind = sink.kind();
                let mut candidate = kind.to_owned();
                let mut suffix = 2;
                while taken.contains(&candidate) {
                    candidate = format!("{kind}-{suffix}");
                    suffix += 1;
                }
                taken.insert(candidate.clone());
                candidate
            }
        };
        names.push(name);
    }
    Ok(names)
}

/// Checks a sink list: the names ([`resolve_sink_names`], returned), every sink's buffer, retry
/// and file settings, and that no two file sinks write the same file (their writes would
/// interleave and each would cut the other's unfinished line at open). Opens nothing.
pub(crate) fn validate_sinks(sinks: &[SinkConfig]) -> Result<Vec<String>> {
    let names = resolve_sink_names(sinks)?;
    let mut paths: Vec<(&Path, &str)> = Vec::new();
    for (sink, name) in sinks.iter().zip(&names) {
        sink.buffer().validate(name)?;
        sink.retry().validate(name)?;
        if let SinkConfig::File(file) = sink {
            file.validate(name)?;
            if let Some((_, other)) = paths.iter().find(|(path, _)| *path == file.path) {
                return Err(Error::Config {
                    reason: format!(
                        "sinks {other:?} and {name:?} both write {}",
                        file.path.display()
                    ),
                });
            }
            paths.push((&file.path, name));
        }
    }
    Ok(names)
}

/// Sink names key metrics and name the disk buffer's directory: keep them short and plain.
pub(crate) fn validate_sink_name(name: &str) -> Result<()> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 64 || !plain || name.starts_with('.') {
        return Err(Error::Config {
            reason: format!(
                "sink name {name:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.', \
                 not starting with '.'"
            ),
        });
    }
    Ok(())
}

/// What a full disk buffer does with a new batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop taking batches for this sink until it delivers some, so backpressure reaches the
    /// source (nothing is lost).
    #[default]
    Block,
    /// Delete the oldest buffered batches (a segment at a time), counting every dropped event.
    DropOldest,
}

/// When the disk buffer calls `fsync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before a buffered batch is acknowledged, so it survives a power loss.
    #[default]
    Always,
    /// Never: buffered batches survive a crash of the process but maybe not of the machine.
    Never,
}

/// The disk buffer a sink spills to while it is down: `buffer = { max_bytes = ..., ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Total size of the segment files.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
    /// What to do when `max_bytes` is reached.
    pub when_full: WhenFull,
    /// When to `fsync` appended batches.
    pub fsync: FsyncPolicy,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            when_full: WhenFull::Block,
            fsync: FsyncPolicy::Always,
        }
    }
}

impl BufferConfig {
    pub(crate) fn validate(&self, sink: &str) -> Result<()> {
        if self.max_bytes == 0 || self.segment_bytes == 0 {
            return Err(Error::Config {
                reason: format!(
                    "sink {sink:?}: buffer.max_bytes and buffer.segment_bytes must be positive"
                ),
            });
        }
        Ok(())
    }
}

/// How a sink retries failed deliveries: `retry = { initial_backoff = "100ms", ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// The first wait after a failure; it doubles (with jitter) at each further failure.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long a sink may keep failing before its state turns from `retrying` to `failing`.
    #[serde(with = "humantime_serde")]
    pub failing_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            failing_after: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    pub(crate) fn validate(&self, sink: &str) -> Result<()> {
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return Err(Error::Config {
                reason: format!(
                    "sink {sink:?}: retry.initial_backoff must be positive and at most retry.max_backoff"
                ),
            });
        }
        Ok(())
    }
}

/// `type = "file"`: JSON lines in a local file with size-based rotation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The sink's name (default: `file`, then `file-2`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// The active file; rotated files are `<path>.1`, `<path>.2`, ... (`.gz` if compressed).
    pub path: PathBuf,
    /// The size at which the active file is rotated.
    #[serde(default = "FileSinkConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// How many rotated files are kept besides the active one.
    #[serde(default = "FileSinkConfig::default_max_files")]
    pub max_files: u32,
    /// Whether rotated files are gzipped.
    #[serde(default)]
    pub compress: bool,
    /// Whether every delivery is `fsync`ed before it counts as accepted (and the directory at
    /// each rotation). Off, a delivery survives a crash of the agent but not a power loss.
    #[serde(default)]
    pub fsync: bool,
    /// How long the high-water marks of a container with no new lines are kept in memory (see
    /// `docs/guarantees.md`: marks are what makes replays exactly-once).
    #[serde(
        default = "FileSinkConfig::default_high_water_retention",
        with = "humantime_serde"
    )]
    pub high_water_retention: Duration,
    /// Disk buffer settings.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Retry settings.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl FileSinkConfig {
    /// The embedded default sink: `<data_dir>/logs/containers.jsonl`.
    pub fn default_for(data_dir: &Path) -> FileSinkConfig {
        FileSinkConfig {
            name: None,
            path: data_dir.join("logs").join("containers.jsonl"),
            max_bytes: Self::default_max_bytes(),
            max_files: Self::default_max_files(),
            compress: false,
            fsync: false,
            high_water_retention: Self::default_high_water_retention(),
            buffer: BufferConfig::default(),
            retry: RetryConfig::default(),
        }
    }

    fn default_max_bytes() -> u64 {
        100 * 1024 * 1024
    }

    fn default_max_files() -> u32 {
        5
    }

    fn default_high_water_retention() -> Duration {
        Duration::from_secs(3600)
    }

    pub(crate) fn validate(&self, sink: &str) -> Result<()> {
        if self.max_bytes == 0 || self.max_files == 0 {
            return Err(Error::Config {
                reason: format!("sink {sink:?}: max_bytes and max_files must be positive"),
            });
        }
        if self.high_water_retention < Duration::from_secs(1) {
            return Err(Error::Config {
                reason: format!("sink {sink:?}: high_water_retention must be at least 1s"),
            });
        }
        if self.path.file_name().is_none() {
            return Err(Error::Config {
                reason: format!("sink {sink:?}: path {} names no file", self.path.display()),
            });
        }
        Ok(())
    }
}

/// How the stdout sink writes a line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    /// The file sink's JSON record.
    #[default]
    Json,
    /// `<timestamp> <container name> <stream> <message>`.
    Text,
}

/// `type = "stdout"`: every line on standard output.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// The sink's name (default: `stdout`).
    #[serde(default)]
    pub name: Option<String>,
    /// `json` (default) or `text`.
    #[serde(default)]
    pub format: StdoutFormat,
    /// Disk buffer settings.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Retry settings.
    #[serde(default)]
    pub retry: RetryConfig,
}
