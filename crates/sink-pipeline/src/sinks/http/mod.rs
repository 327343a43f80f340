//! What the HTTP sinks (`loki`, `otlp`) share: the endpoint (credentials split off before it is
//! stored), the `tls` table, one pooled client per sink, sending a request and reading its
//! answer within bounds, and the classification of failures that happen before an answer.
//!
//! - `endpoint.rs`: [`Endpoint`], a configured URL without its userinfo; the userinfo becomes
//!   HTTP basic authentication and is never shown.
//! - `tls.rs`: [`TlsConfig`] (`ca_file`, `cert_file` + `key_file`, `server_name`) applied to
//!   the client, and which TLS failures need an operator.
//! - `client.rs`: [`PostClient`](client::PostClient): builds the client (keep-alive, timeouts,
//!   no redirects, rustls), posts a body and returns the [`Answer`](client::Answer).
//! - `error.rs`: [`HttpError`](error::HttpError).

pub(crate) mod client;
mod endpoint;
pub(crate) mod error;
mod tls;

pub use endpoint::Endpoint;
pub use tls::TlsConfig;
