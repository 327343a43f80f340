//! What can go wrong in the OTLP sink, wrapped in a [`SinkError`] of the right class.

use crate::{sink::SinkError, sinks::http::error::shown};

/// A failure of the OTLP sink.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OtlpError {
    /// The configuration cannot work.
    #[error("invalid otlp sink configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The receiver answered with an error status.
    #[error("the OTLP receiver answered {status}: {}", shown(body))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The receiver accepted the request but rejected some of its records.
    #[error(
        "the OTLP receiver rejected {rejected} log records: {}",
        shown(message)
    )]
    PartialSuccess {
        /// Records rejected.
        rejected: i64,
        /// The receiver's explanation.
        message: String,
    },
    /// The receiver refused some requests of a delivery for their content; the rest was
    /// accepted.
    #[error("the OTLP receiver refused {refused} of {requests} requests of this delivery")]
    Refused {
        /// Requests refused.
        refused: usize,
        /// Requests in the delivery.
        requests: usize,
        /// The first refusal.
        #[source]
        first: Box<OtlpError>,
    },
}

impl OtlpError {
    /// A configuration error, which is permanent.
    pub(crate) fn config(reason: impl Into<String>) -> SinkError {
        SinkError::permanent(OtlpError::Config {
            reason: reason.into(),
        })
    }
}
