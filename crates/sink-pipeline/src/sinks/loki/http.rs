//! The HTTP side of the Loki sink: one pooled client, the request headers, and the
//! classification of Loki's answers.

use std::{fmt, time::Instant};

use reqwest::{
    StatusCode, Url,
    header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue},
};
use tracing::debug;

use super::{
    config::{LokiAuth, LokiCompression, LokiSinkConfig},
    error::LokiError,
};
use crate::sink::SinkError;

/// The path Loki's push API listens on, appended to the configured endpoint.
pub(crate) const PUSH_PATH: &str = "/loki/api/v1/push";
/// How much of an answer's body is kept to classify it and show it in the error.
const KEPT_BODY_BYTES: usize = 64 * 1024;
/// How much of an answer's body is read at most. Reading it whole lets the connection be
/// reused; beyond this the rest is not worth waiting for, and the connection is closed instead.
const DRAINED_BODY_BYTES: usize = 1024 * 1024;
/// Words of Loki's 400 answers that mean entries were refused for their timestamps.
const TIMESTAMP_REFUSALS: [&str; 4] = [
    "out of order",
    "too old",
    "entry too far behind",
    "greater than max",
];

/// Credentials, with the secret already read.
enum Credentials {
    Basic { username: String, password: String },
    Bearer { token: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret never reaches a log line.
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Credentials::Bearer { .. } => f.debug_struct("Bearer").finish_non_exhaustive(),
        }
    }
}

/// How Loki answered a push, when the answer says something about the request itself.
#[derive(Debug)]
pub(crate) enum PushOutcome {
    /// 2xx: every entry was accepted.
    Accepted,
    /// 413: the request is too large.
    TooLarge(LokiError),
    /// 400 for timestamps (out of order, too old): the other entries were accepted.
    TimestampRefused(LokiError),
    /// Another 400: the request's content is invalid (line too long, bad labels, ...).
    Invalid(LokiError),
}

/// Sends push requests to one Loki.
#[derive(Debug)]
pub(crate) struct PushClient {
    /// Pools connections, so consecutive pushes reuse one keep-alive connection.
    client: reqwest::Client,
    url: Url,
    tenant: Option<HeaderValue>,
    credentials: Option<Credentials>,
    content_type: HeaderValue,
    content_encoding: Option<HeaderValue>,
}

impl PushClient {
    /// Builds the client, validating the endpoint and the tenant and reading the secret.
    pub(crate) fn new(config: &LokiSinkConfig) -> Result<PushClient, SinkError> {
        let endpoint = config.endpoint.trim_end_matches('/');
        let url = Url::parse(&format!("{endpoint}{PUSH_PATH}")).map_err(|error| {
            LokiError::config(format!(
                "endpoint {:?} is not a URL: {error}",
                config.endpoint
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(LokiError::config(format!(
                "endpoint {:?} must start with http:// or https://",
                config.endpoint
            )));
        }
        let tenant = match &config.tenant_id {
            Some(tenant) => Some(HeaderValue::from_str(tenant).map_err(|_| {
                LokiError::config(format!("tenant_id {tenant:?} is not a valid header value"))
            })?),
            None => None,
        };
        let credentials = config.auth.as_ref().map(read_credentials).transpose()?;
        let (content_type, content_encoding) = match config.compression {
            LokiCompression::Gzip => ("application/json", Some(HeaderValue::from_static("gzip"))),
            LokiCompression::Snappy => ("application/x-protobuf", None),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("log-capturer/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // Loki does not redirect; a redirect is a misconfigured endpoint, reported as such
            // instead of being followed with the body and credentials.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| SinkError::permanent(LokiError::Client(error)))?;
        Ok(PushClient {
            client,
            url,
            tenant,
            credentials,
            content_type: HeaderValue::from_static(content_type),
            content_encoding,
        })
    }

    /// Sends one encoded body. Errors are classified: 429, 5xx and network failures transient;
    /// 401, 403, 404 and other 4xx permanent. Answers about the request itself are returned
    /// as a [`PushOutcome`] for the caller to act on.
    pub(crate) async fn push(&self, body: Vec<u8>) -> Result<PushOutcome, SinkError> {
        let started = Instant::now();
        let body_bytes = body.len();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, self.content_type.clone())
            .body(body);
        if let Some(encoding) = &self.content_encoding {
            request = request.header(CONTENT_ENCODING, encoding.clone());
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant.clone());
        }
        request = match &self.credentials {
            Some(Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            Some(Credentials::Bearer { token }) => request.bearer_auth(token),
            None => request,
        };
        let request_error = |source| {
            SinkError::transient(LokiError::Request {
                url: self.url.to_string(),
                source,
            })
        };
        let response = request.send().await.map_err(request_error)?;
        let status = response.status();
        let body = read_bounded(response).await.map_err(request_error)?;
        debug!(
            status = status.as_u16(),
            body_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loki push answered"
        );
        classify(status, body)
    }
}

/// Decides what an answer means.
pub(crate) fn classify(status: StatusCode, body: String) -> Result<PushOutcome, SinkError> {
    if status.is_success() {
        return Ok(PushOutcome::Accepted);
    }
    let is_timestamp_refusal = || {
        let lower = body.to_ascii_lowercase();
        TIMESTAMP_REFUSALS.iter().any(|words| lower.contains(words))
    };
    let code = status.as_u16();
    let timestamp_refusal = code == 400 && is_timestamp_refusal();
    let error = LokiError::Status { status: code, body };
    Ok(match code {
        400 if timestamp_refusal => PushOutcome::TimestampRefused(error),
        400 => PushOutcome::Invalid(error),
        413 => PushOutcome::TooLarge(error),
        408 | 429 => return Err(SinkError::transient(error)),
        _ if status.is_server_error() => return Err(SinkError::transient(error)),
        _ => return Err(SinkError::permanent(error)),
    })
}

/// Reads the answer's body, keeping its start: always read so the connection can be reused,
/// but never more than [`DRAINED_BODY_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Some(chunk) = response.chunk().await? {
        read += chunk.len();
        let room = KEPT_BODY_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if read >= DRAINED_BODY_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// Reads the configured secret: inline, from a file or from the environment, exactly one.
fn read_credentials(auth: &LokiAuth) -> Result<Credentials, SinkError> {
    match auth {
        LokiAuth::Basic {
            username,
            password,
            password_file,
            password_env,
        } => {
            let password = read_secret("password", password, password_file, password_env)?;
            Ok(Credentials::Basic {
                username: username.clone(),
                password,
            })
        }
        LokiAuth::Bearer {
            token,
            token_file,
            token_env,
        } => {
            let token = read_secret("token", token, token_file, token_env)?;
            Ok(Credentials::Bearer { token })
        }
    }
}

fn read_secret(
    what: &'static str,
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    variable: &Option<String>,
) -> Result<String, SinkError> {
    let secret = match (inline, file, variable) {
        (Some(secret), None, None) => secret.clone(),
        (None, Some(path), None) => std::fs::read_to_string(path)
            .map_err(|source| {
                SinkError::permanent(LokiError::SecretFile {
                    what,
                    path: path.clone(),
                    source,
                })
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, None, Some(variable)) => std::env::var(variable).map_err(|source| {
            SinkError::permanent(LokiError::SecretEnv {
                what,
                variable: variable.clone(),
                source,
            })
        })?,
        (None, None, None) => {
            return Err(LokiError::config(format!(
                "auth: set one of {what}, {what}_file or {what}_env"
            )));
        }
        _ => {
            return Err(LokiError::config(format!(
                "auth: set only one of {what}, {what}_file and {what}_env"
            )));
        }
    };
    if secret.is_empty() {
        return Err(LokiError::config(format!("auth: the {what} is empty")));
    }
    Ok(secret)
}
