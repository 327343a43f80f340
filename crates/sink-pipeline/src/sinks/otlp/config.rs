//! The `type = "otlp"` sink's configuration.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize, Serializer};

use crate::{
    config::{BufferConfig, RetryConfig},
    sinks::http::{Endpoint, TlsConfig},
};

/// `type = "otlp"`: OTLP/HTTP protobuf to `{endpoint}/v1/logs`.
///
/// Every key but `endpoint` has a default; see `docs/configuration.md` for the table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// The sink's name (default: `otlp`).
    #[serde(default)]
    pub name: Option<String>,
    /// The base URL, such as `http://127.0.0.1:4318` (the sink appends `/v1/logs`); for Loki
    /// 3.x, `http://loki:3100/otlp`. Credentials written into it are sent as basic
    /// authentication and never shown.
    pub endpoint: Endpoint,
    /// Headers sent with every request (`Authorization`, `X-Scope-OrgID`, ...). Their values
    /// may be secrets: they are never printed.
    #[serde(default)]
    pub headers: OtlpHeaders,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: OtlpCompression,
    /// Resource attributes added to every container's `ResourceLogs`, beside `container.id`,
    /// `container.name`, `container.image.name` and `container.image.tags`. Values are
    /// templates: text with `{container_name}`, `{container_id}`, `{image}` and `{label.KEY}`;
    /// an attribute whose value renders empty is left out.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// Container labels copied as `container.label.<key>` resource attributes.
    #[serde(default)]
    pub container_labels: Vec<String>,
    /// Severity by stream; unset (the default) leaves records without severity.
    #[serde(default)]
    pub severity: SeverityByStream,
    /// Most log records in one request; a larger delivery is split into several requests.
    #[serde(default = "OtlpSinkConfig::default_max_records")]
    pub max_records: usize,
    /// Time limit of one request, from sending to reading the whole answer.
    #[serde(
        default = "OtlpSinkConfig::default_request_timeout",
        with = "humantime_serde"
    )]
    pub request_timeout: Duration,
    /// Time limit of establishing a connection.
    #[serde(
        default = "OtlpSinkConfig::default_connect_timeout",
        with = "humantime_serde"
    )]
    pub connect_timeout: Duration,
    /// How an `https://` endpoint is verified, and the client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Disk buffer settings.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Retry settings.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl OtlpSinkConfig {
    /// A configuration for `endpoint` with every other key at its default.
    pub fn new(endpoint: impl Into<String>) -> OtlpSinkConfig {
        OtlpSinkConfig {
            name: None,
            endpoint: Endpoint::from(endpoint.into()),
            headers: OtlpHeaders::default(),
            compression: OtlpCompression::default(),
            resource_attributes: BTreeMap::new(),
            container_labels: Vec::new(),
            severity: SeverityByStream::default(),
            max_records: Self::default_max_records(),
            request_timeout: Self::default_request_timeout(),
            connect_timeout: Self::default_connect_timeout(),
            tls: TlsConfig::default(),
            buffer: BufferConfig::default(),
            retry: RetryConfig::default(),
        }
    }

    fn default_max_records() -> usize {
        10_000
    }

    fn default_request_timeout() -> Duration {
        Duration::from_secs(10)
    }

    fn default_connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// Request headers by name. `Debug` and serialisation show the names only, each value as
/// `"<redacted>"`, since values such as `Authorization` are secrets.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct OtlpHeaders(pub BTreeMap<String, String>);

impl fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "<redacted>")))
            .finish()
    }
}

impl Serialize for OtlpHeaders {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.keys().map(|name| (name, "<redacted>")))
    }
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpCompression {
    /// `Content-Encoding: gzip`.
    #[default]
    Gzip,
    /// Uncompressed protobuf.
    None,
}

/// `severity = { stdout = "info", stderr = "error" }`: the severity given to each stream's
/// records (`tty` is a container's only stream when it has a TTY).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityByStream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<Severity>,
}

/// An OpenTelemetry severity: its number is the first of its range (`info` = 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    /// `SeverityNumber` and `severity_text` as the OpenTelemetry data model names them.
    pub(crate) fn number_and_text(self) -> (i32, &'static str) {
        match self {
            Severity::Trace => (1, "TRACE"),
            Severity::Debug => (5, "DEBUG"),
            Severity::Info => (9, "INFO"),
            Severity::Warn => (13, "WARN"),
            Severity::Error => (17, "ERROR"),
            Severity::Fatal => (21, "FATAL"),
        }
    }
}
