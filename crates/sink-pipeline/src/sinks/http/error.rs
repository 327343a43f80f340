//! What can go wrong in the HTTP machinery every HTTP sink shares.

use std::path::PathBuf;

use crate::sink::SinkError;

/// The most characters of an answer's body shown in an error message (and so in logs and
/// `/health`); more is read for classifying it.
const SHOWN_BODY_CHARS: usize = 512;

/// An answer's body (or a receiver's message) for an error message: trimmed and cut to
/// [`SHOWN_BODY_CHARS`] characters.
pub(crate) fn shown(text: &str) -> &str {
    let text = text.trim();
    match text.char_indices().nth(SHOWN_BODY_CHARS) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// A failure of building the client or of a request before its answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The endpoint or the `tls` table cannot work.
    #[error("invalid sink configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A configured file could not be read.
    #[error("cannot read {what} {}", path.display())]
    File {
        /// The key (`tls.ca_file`, ...).
        what: &'static str,
        /// The configured file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configured TLS file is not usable PEM.
    #[error("{what} ({}) cannot be used", path.display())]
    Tls {
        /// The key(s).
        what: &'static str,
        /// The configured file.
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (for example no usable TLS roots).
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The request failed before a complete answer: connection refused or reset, timeout, or
    /// an answer that is not valid HTTP.
    #[error("request to {url} failed")]
    Request {
        /// The request's URL, without credentials.
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed on a certificate: the server's is not trusted by the
    /// configured roots or does not carry the expected name, or the server refused ours.
    #[error(
        "TLS with {url} failed on a certificate (check tls.ca_file, tls.server_name, \
         tls.cert_file and tls.key_file)"
    )]
    Certificate {
        /// The request's URL, without credentials.
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl HttpError {
    /// A configuration error.
    pub(crate) fn config(reason: impl Into<String>) -> HttpError {
        HttpError::Config {
            reason: reason.into(),
        }
    }

    /// The error's class: configuration, files and certificates need an operator (permanent);
    /// the network is transient.
    pub(crate) fn into_sink_error(self) -> SinkError {
        match self {
            HttpError::Request { .. } => SinkError::transient(self),
            HttpError::Config { .. }
            | HttpError::File { .. }
            | HttpError::Tls { .. }
            | HttpError::Client(_)
            | HttpError::Certificate { .. } => SinkError::permanent(self),
        }
    }
}
