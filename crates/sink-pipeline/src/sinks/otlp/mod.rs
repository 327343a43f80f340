//! The OpenTelemetry sink: OTLP/HTTP protobuf to `{endpoint}/v1/logs`.
//!
//! # Records
//!
//! `encode.rs` builds each request with the published message definitions
//! (`opentelemetry-proto`'s prost messages, without its gRPC transport): one `ResourceLogs` per
//! container, whose resource carries `container.id`, `container.name`, `container.image.name`,
//! `container.image.tags`, the configured `container.label.<key>` and `resource_attributes`;
//! one `ScopeLogs` named `log-capturer`; one `LogRecord` per line with Docker's timestamp as
//! `time_unix_nano`, the line as a string `body`, the stream as the `log.iostream` attribute,
//! and a severity only if `severity` configures one for the stream. A delivery is split into
//! requests of at most `max_records` records; each is gzipped (unless `compression = "none"`).
//!
//! # Answers
//!
//! - 2xx: accepted, unless its `ExportLogsServiceResponse` reports rejected records: then, as
//!   for a 400, the request is refused and the delivery ends [`SinkError::Rejected`] after the
//!   rest is sent, so the pipeline counts it as dropped.
//! - 429 and 503 with `Retry-After`: [`SinkError::transient_after`]; the pipeline waits at
//!   least that long (at most `retry.max_backoff`). 408, 429, 5xx, network failures:
//!   transient. TLS certificate failures, 401, 403, 404 and other 4xx: permanent.
//! - 413: the request is split in halves and each sent; a single record too large is refused.
//!
//! As in the Loki sink, a failed multi-request delivery resumes after the requests already
//! taken when the pipeline passes it again (`sinks/resume.rs`), and the sink never sleeps or
//! retries in a loop itself.

mod config;
mod encode;
mod error;
mod http;
#[cfg(test)]
mod tests;

pub use config::{OtlpCompression, OtlpHeaders, OtlpSinkConfig, Severity, SeverityByStream};

use capture_core::EventBatch;
use prost::Message as _;

use self::{
    encode::{Piece, RecordFormat, build_request, plan_requests, split_in_half},
    error::OtlpError,
    http::{ExportClient, ExportOutcome},
};
use crate::{
    sink::{Sink, SinkError},
    sinks::resume::Progress,
};

/// The OTLP sink. Build it with [`OtlpSink::new`]; the pipeline does so for `type = "otlp"`.
#[derive(Debug)]
pub struct OtlpSink {
    client: ExportClient,
    format: RecordFormat,
    max_records: usize,
    /// What a failed delivery had already delivered, to resume after it on the retry.
    progress: Progress<OtlpError>,
}

impl OtlpSink {
    /// Validates `config`, parses its attribute templates, reads its TLS files and builds the
    /// HTTP client. Every failure is [`SinkError::Permanent`]: the configuration must change.
    pub fn new(config: OtlpSinkConfig) -> Result<OtlpSink, SinkError> {
        if config.max_records == 0 {
            return Err(OtlpError::config("max_records must be positive"));
        }
        let format = RecordFormat::new(&config).map_err(OtlpError::config)?;
        let client = ExportClient::new(&config)?;
        Ok(OtlpSink {
            client,
            format,
            max_records: config.max_records,
            progress: Progress::default(),
        })
    }

    /// Sends one planned request, in halves after a 413; returns the first refusal if the
    /// receiver refused (part of) it for its content.
    async fn send_request(
        &self,
        batches: &[EventBatch],
        pieces: Vec<Piece>,
    ) -> Result<Option<OtlpError>, SinkError> {
        let mut refusal = None;
        let mut pending = vec![pieces];
        while let Some(pieces) = pending.pop() {
            let request = build_request(&self.format, batches, &pieces).encode_to_vec();
            match self.client.export(request).await? {
                ExportOutcome::Accepted => {}
                ExportOutcome::TooLarge(error) => match split_in_half(&pieces) {
                    Some((first, second)) => {
                        pending.push(second);
                        pending.push(first);
                    }
                    None => {
                        refusal.get_or_insert(error);
                    }
                },
                ExportOutcome::Refused(error) => {
                    refusal.get_or_insert(error);
                }
            }
        }
        Ok(refusal)
    }
}

impl Sink for OtlpSink {
    async fn deliver(&mut self, batches: &[EventBatch]) -> Result<(), SinkError> {
        let done = self.progress.start(batches);
        let requests = plan_requests(batches, self.max_records);
        let total = requests.len();
        for pieces in requests.into_iter().skip(done) {
            let outcome = self.send_request(batches, pieces).await;
            self.progress.sent(outcome)?;
        }
        self.progress.finish(|refused, first| {
            SinkError::rejected(OtlpError::Refused {
                refused,
                requests: total,
                first: Box::new(first),
            })
        })
    }
}
