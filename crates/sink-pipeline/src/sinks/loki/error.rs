//! What can go wrong in the Loki sink, wrapped in a [`SinkError`] of the right class.

use std::path::PathBuf;

use crate::{sink::SinkError, sinks::http::error::shown};

/// A failure of the Loki sink. Every variant is wrapped in a [`SinkError`] by the code that
/// knows its class: configuration and secrets are permanent, the network transient, and an
/// answer's status decides for HTTP errors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LokiError {
    /// The configuration cannot work.
    #[error("invalid loki sink configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A secret file could not be read.
    #[error("cannot read the {what} from {}", path.display())]
    SecretFile {
        /// `password` or `token`.
        what: &'static str,
        /// The configured file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A secret's environment variable is unset or not UTF-8.
    #[error("cannot read the {what} from the environment variable {variable}")]
    SecretEnv {
        /// `password` or `token`.
        what: &'static str,
        /// The configured variable.
        variable: String,
        #[source]
        source: std::env::VarError,
    },
    /// Loki answered with an error status.
    #[error("loki answered {status}: {}", shown(body))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// Loki refused some push requests of a delivery for their content; the rest was accepted.
    #[error("loki refused {refused} of {requests} push requests of this delivery")]
    Refused {
        /// Requests refused.
        refused: usize,
        /// Requests in the delivery.
        requests: usize,
        /// The first refusal.
        #[source]
        first: Box<LokiError>,
    },
}

impl LokiError {
    /// A configuration error, which is permanent.
    pub(crate) fn config(reason: impl Into<String>) -> SinkError {
        SinkError::permanent(LokiError::Config {
            reason: reason.into(),
        })
    }
}
