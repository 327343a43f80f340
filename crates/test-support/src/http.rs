//! A plain-HTTP client for tests and tooling: the agent's `/health` and `/metrics`, Prometheus,
//! a proxied Docker API. One request per call, made with reqwest on a current-thread runtime
//! of its own, so synchronous tests and xtask commands can call it. Never call it from inside
//! an async runtime.

use std::{io, net::SocketAddr, time::Duration};

use capture_core::ErrorChain;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response: its status code and its body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET http://{addr}{path}`.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, None)
}

/// `method http://{addr}{path}`, with `json` as an `application/json` body if given. Errors
/// (refused, timed out, not HTTP) come back as `io::Error`s with reqwest's error as the source.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> io::Result<Response> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(io::Error::other)?;
    let url = format!("http://{addr}{path}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(async {
            let client = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()?;
            let mut request = client.request(method, &url);
            if let Some(json) = json {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(json.to_owned());
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>(Response { status, body })
        })
        .map_err(|error| io::Error::other(format!("{url}: {}", ErrorChain(&error))))
}
