//! One pooled HTTP client per sink: built once from the endpoint, timeouts and `tls` table;
//! posts bodies and reads answers within bounds.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use reqwest::{
    RequestBuilder, StatusCode, Url,
    header::{HeaderMap, RETRY_AFTER},
};

use super::{Endpoint, TlsConfig, error::HttpError, tls::is_certificate_error};
use crate::sink::SinkError;

/// How much of an answer's body is kept to classify it and show it in an error.
const KEPT_BODY_BYTES: usize = 64 * 1024;
/// How much of an answer's body is read at most. Reading it whole lets the connection be
/// reused; beyond this the rest is not worth waiting for, and the connection is closed instead.
const DRAINED_BODY_BYTES: usize = 1024 * 1024;

/// What every HTTP sink configures the same way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientSettings<'a> {
    /// The configured base URL.
    pub(crate) endpoint: &'a Endpoint,
    /// Appended to the endpoint (after removing its trailing `/`).
    pub(crate) path: &'a str,
    /// Time limit of one request, from sending to reading the whole answer.
    pub(crate) request_timeout: Duration,
    /// Time limit of establishing a connection.
    pub(crate) connect_timeout: Duration,
    pub(crate) tls: &'a TlsConfig,
}

/// Credentials sent with every request, the secret already read. `Debug` never shows it.
pub(crate) enum Credentials {
    /// HTTP basic authentication.
    Basic {
        username: String,
        password: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
}

impl Credentials {
    /// Adds the credentials to `request`.
    pub(crate) fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Credentials::Basic { username, password } => {
                request.basic_auth(username, password.as_ref())
            }
            Credentials::Bearer { token } => request.bearer_auth(token),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Credentials::Bearer { .. } => f.debug_struct("Bearer").finish_non_exhaustive(),
        }
    }
}

/// An answer, read within bounds.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The `Retry-After` header as a delay from now, if present and valid.
    pub(crate) retry_after: Option<Duration>,
    /// The body's start (at most 64 KiB).
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The body as text, invalid UTF-8 replaced.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Posts to one URL of one server, reusing keep-alive connections.
pub(crate) struct PostClient {
    client: reqwest::Client,
    /// Where requests go (with `tls.server_name` as its host, if set).
    url: Url,
    /// The URL as configured, for messages; never with credentials.
    shown_url: String,
    /// The endpoint's userinfo, sent as basic authentication.
    userinfo: Option<Credentials>,
}

impl fmt::Debug for PostClient {
    // The reqwest client is left out: its `Debug` shows settings, not what this sink needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostClient")
            .field("url", &self.shown_url)
            .field("userinfo", &self.userinfo)
            .finish_non_exhaustive()
    }
}

impl PostClient {
    /// Validates the endpoint and builds the client (reading the TLS files).
    pub(crate) fn new(settings: ClientSettings<'_>) -> Result<PostClient, HttpError> {
        if settings.request_timeout.is_zero() || settings.connect_timeout.is_zero() {
            return Err(HttpError::config(
                "request_timeout and connect_timeout must be positive",
            ));
        }
        let endpoint = settings.endpoint.as_str().trim_end_matches('/');
        let shown_url = format!("{endpoint}{}", settings.path);
        let url = Url::parse(&shown_url).map_err(|error| {
            HttpError::config(format!("endpoint {endpoint:?} is not a URL: {error}"))
        })?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => {
                return Err(HttpError::config(format!(
                    "endpoint {endpoint:?} must start with http:// or https://"
                )));
            }
        };
        if !https && settings.tls.is_set() {
            return Err(HttpError::config(format!(
                "tls is configured but endpoint {endpoint:?} is not https://"
            )));
        }
        let builder = reqwest::Client::builder()
            .user_agent(concat!("log-capturer/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            // A redirect is a misconfigured endpoint, reported as such instead of being followed
            // with the body and credentials.
            .redirect(reqwest::redirect::Policy::none());
        let (builder, url) = settings.tls.apply(builder, url)?;
        let client = builder.build().map_err(HttpError::Client)?;
        let userinfo = settings
            .endpoint
            .userinfo()
            .map(|userinfo| Credentials::Basic {
                username: userinfo.username.clone(),
                password: userinfo.password.clone(),
            });
        Ok(PostClient {
            client,
            url,
            shown_url,
            userinfo,
        })
    }

    /// Whether the endpoint carries credentials of its own.
    pub(crate) fn has_userinfo(&self) -> bool {
        self.userinfo.is_some()
    }

    /// A POST request to the URL, with the endpoint's credentials if it has some.
    pub(crate) fn post(&self) -> RequestBuilder {
        let request = self.client.post(self.url.clone());
        match &self.userinfo {
            Some(credentials) => credentials.apply(request),
            None => request,
        }
    }

    /// Sends `request` and reads the answer. A failure before a complete answer is
    /// [`SinkError::Transient`], except a certificate problem, which is permanent.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Answer, SinkError> {
        let classify = |source: reqwest::Error| {
            let url = self.shown_url.clone();
            if is_certificate_error(&source) {
                HttpError::Certificate { url, source }.into_sink_error()
            } else {
                HttpError::Request { url, source }.into_sink_error()
            }
        };
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = read_bounded(response).await.map_err(classify)?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// Reads the answer's body, keeping its start: always read so the connection can be reused,
/// but never more than [`DRAINED_BODY_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
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
    Ok(kept)
}

/// `Retry-After` as a delay: seconds, or an HTTP date (a date in the past means now).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}
