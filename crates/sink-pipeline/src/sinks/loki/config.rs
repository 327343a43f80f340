//! The `type = "loki"` sink's configuration.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize, Serializer};

use crate::{
    config::{BufferConfig, RetryConfig},
    sinks::http::{Endpoint, TlsConfig},
};

/// `type = "loki"`: pushes to `{endpoint}/loki/api/v1/push`.
///
/// Every key but `endpoint` has a default; see `docs/configuration.md` for the table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LokiSinkConfig {
    /// The sink's name (default: `loki`).
    #[serde(default)]
    pub name: Option<String>,
    /// The base URL, such as `http://127.0.0.1:3100` (`https://` works too). Credentials
    /// written into it (`https://user:password@host`) are sent as basic authentication and
    /// never shown.
    pub endpoint: Endpoint,
    /// Stream labels. Values are templates that may mix text with `{container_name}`,
    /// `{container_id}`, `{image}`, `{stream}` and `{label.KEY}` (a container label); `{{` and
    /// `}}` are literal braces. Names are sanitised to Prometheus rules, and a label whose value
    /// renders empty is left out. Empty means the default set: `job = "log-capturer"`,
    /// `container_name = "{container_name}"`, `stream = "{stream}"`.
    #[serde(default = "LokiSinkConfig::default_labels")]
    pub labels: BTreeMap<String, String>,
    /// The `X-Scope-OrgID` header, for multi-tenant Loki.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Credentials, if Loki (or a proxy in front of it) needs them.
    #[serde(default)]
    pub auth: Option<LokiAuth>,
    /// `gzip` (JSON body, the default) or `snappy` (protobuf body).
    #[serde(default)]
    pub compression: LokiCompression,
    /// Most entries in one push request; a larger delivery is split into several requests.
    #[serde(default = "LokiSinkConfig::default_max_entries")]
    pub max_entries: usize,
    /// Most bytes in one push request, estimated before compression.
    #[serde(default = "LokiSinkConfig::default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Time limit of one push request, from sending to reading the whole answer.
    #[serde(
        default = "LokiSinkConfig::default_request_timeout",
        with = "humantime_serde"
    )]
    pub request_timeout: Duration,
    /// Time limit of establishing a connection.
    #[serde(
        default = "LokiSinkConfig::default_connect_timeout",
        with = "humantime_serde"
    )]
    pub connect_timeout: Duration,
    /// What to do when Loki refuses entries for their timestamps (out of order, too old).
    #[serde(default)]
    pub out_of_order: LokiOutOfOrder,
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

impl LokiSinkConfig {
    /// A configuration for `endpoint` with every other key at its default.
    pub fn new(endpoint: impl Into<String>) -> LokiSinkConfig {
        LokiSinkConfig {
            name: None,
            endpoint: Endpoint::from(endpoint.into()),
            labels: Self::default_labels(),
            tenant_id: None,
            auth: None,
            compression: LokiCompression::default(),
            max_entries: Self::default_max_entries(),
            max_request_bytes: Self::default_max_request_bytes(),
            request_timeout: Self::default_request_timeout(),
            connect_timeout: Self::default_connect_timeout(),
            out_of_order: LokiOutOfOrder::default(),
            tls: TlsConfig::default(),
            buffer: BufferConfig::default(),
            retry: RetryConfig::default(),
        }
    }

    /// `job = "log-capturer"`, `container_name = "{container_name}"`, `stream = "{stream}"`.
    pub fn default_labels() -> BTreeMap<String, String> {
        [
            ("job", "log-capturer"),
            ("container_name", "{container_name}"),
            ("stream", "{stream}"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    fn default_max_entries() -> usize {
        10_000
    }

    fn default_max_request_bytes() -> usize {
        1024 * 1024
    }

    fn default_request_timeout() -> Duration {
        Duration::from_secs(10)
    }

    fn default_connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// Loki credentials: `auth = { type = "basic", ... }` or `auth = { type = "bearer", ... }`.
///
/// Each secret is given exactly one way: inline, in a file (read once when the sink is built,
/// trailing newline removed) or in an environment variable. Inline secrets serialise as
/// `"<redacted>"`, so the effective configuration can be printed, and `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LokiAuth {
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password, inline.
        #[serde(default, serialize_with = "redacted")]
        password: Option<String>,
        /// A file holding the password.
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// An environment variable holding the password.
        #[serde(default)]
        password_env: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token, inline.
        #[serde(default, serialize_with = "redacted")]
        token: Option<String>,
        /// A file holding the token.
        #[serde(default)]
        token_file: Option<PathBuf>,
        /// An environment variable holding the token.
        #[serde(default)]
        token_env: Option<String>,
    },
}

impl fmt::Debug for LokiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        match self {
            LokiAuth::Basic {
                username,
                password,
                password_file,
                password_env,
            } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &shown(password))
                .field("password_file", password_file)
                .field("password_env", password_env)
                .finish(),
            LokiAuth::Bearer {
                token,
                token_file,
                token_env,
            } => f
                .debug_struct("Bearer")
                .field("token", &shown(token))
                .field("token_file", token_file)
                .field("token_env", token_env)
                .finish(),
        }
    }
}

/// How push requests are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LokiCompression {
    /// JSON, gzip-compressed (`Content-Type: application/json`, `Content-Encoding: gzip`).
    #[default]
    Gzip,
    /// Protobuf `logproto.PushRequest`, snappy block-compressed
    /// (`Content-Type: application/x-protobuf`).
    Snappy,
}

/// What the sink does when Loki answers 400 because of entries' timestamps ("entry out of
/// order", "too old", "entry too far behind", "greater than max").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LokiOutOfOrder {
    /// The delivery is reported rejected: the pipeline counts its events as dropped.
    #[default]
    Drop,
    /// The refused streams are sent once more with their timestamps set to now (increasing,
    /// in the original order); if Loki refuses them again they are dropped as with `drop`.
    RewriteTimestamp,
}

fn redacted<S: Serializer>(secret: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("<redacted>"),
        None => serializer.serialize_none(),
    }
}
