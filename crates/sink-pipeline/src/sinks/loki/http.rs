//! The HTTP side of the Loki sink: the request headers and the classification of Loki's
//! answers, over the HTTP sinks' shared [`PostClient`].

use std::time::Instant;

use reqwest::{
    StatusCode,
    header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue},
};
use tracing::debug;

use super::{
    config::{LokiAuth, LokiCompression, LokiSinkConfig},
    error::LokiError,
};
use crate::{
    sink::SinkError,
    sinks::http::client::{ClientSettings, Credentials, PostClient},
};

/// The path Loki's push API listens on, appended to the configured endpoint.
pub(crate) const PUSH_PATH: &str = "/loki/api/v1/push";
/// Words of Loki's 400 answers that mean entries were refused for their timestamps.
const TIMESTAMP_REFUSALS: [&str; 4] = [
    "out of order",
    "too old",
    "entry too far behind",
    "greater than max",
];

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
    client: PostClient,
    tenant: Option<HeaderValue>,
    credentials: Option<Credentials>,
    content_type: HeaderValue,
    content_encoding: Option<HeaderValue>,
}

impl PushClient {
    /// Builds the client, validating the endpoint, the TLS files and the tenant and reading
    /// the secret. Credentials written into the endpoint's URL are sent as basic
    /// authentication.
    pub(crate) fn new(config: &LokiSinkConfig) -> Result<PushClient, SinkError> {
        let client = PostClient::new(ClientSettings {
            endpoint: &config.endpoint,
            path: PUSH_PATH,
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            tls: &config.tls,
        })
        .map_err(|error| error.into_sink_error())?;
        if client.has_userinfo() && config.auth.is_some() {
            return Err(LokiError::config(
                "credentials are given both in the endpoint URL and in auth: keep one",
            ));
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
        Ok(PushClient {
            client,
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
            .post()
            .header(CONTENT_TYPE, self.content_type.clone())
            .body(body);
        if let Some(encoding) = &self.content_encoding {
            request = request.header(CONTENT_ENCODING, encoding.clone());
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant.clone());
        }
        if let Some(credentials) = &self.credentials {
            request = credentials.apply(request);
        }
        let answer = self.client.send(request).await?;
        debug!(
            status = answer.status.as_u16(),
            body_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loki push answered"
        );
        let retry_after = answer.retry_after;
        match classify(answer.status, answer.text()) {
            Err(SinkError::Transient(error)) if let Some(delay) = retry_after => {
                Err(SinkError::transient_after(error, delay))
            }
            outcome => outcome,
        }
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
                password: Some(password),
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
