//! The Grafana Loki sink: pushes deliveries to `{endpoint}/loki/api/v1/push`.
//!
//! # How a delivery becomes requests
//!
//! `labels.rs` parses the configured label templates once. For each delivery, `encode.rs`
//! renders them once per batch and Docker stream (a batch is one container's lines), groups the
//! lines into Loki streams by label set, sorts each stream by timestamp, and splits the delivery
//! into requests of at most `max_entries` entries and about `max_request_bytes` bytes. Each
//! request is encoded by hand, borrowing the lines, into a reused buffer: JSON then gzip
//! (default), or protobuf `logproto.PushRequest` then snappy's block format. `http.rs` sends it
//! with one pooled `reqwest` client (keep-alive) and classifies the answer.
//!
//! # Answers
//!
//! - 2xx: accepted.
//! - 429, 5xx, 408, connection errors, timeouts and answers that are not valid HTTP:
//!   [`SinkError::Transient`]; the pipeline retries with backoff. The sink never loops itself.
//! - 400 about timestamps (out of order, too old, too far behind): with `out_of_order = "drop"`
//!   the delivery ends [`SinkError::Rejected`] and the pipeline counts it dropped; with
//!   `"rewrite_timestamp"` the refused streams (named in Loki's message; all the request's
//!   streams if none is named) are sent once more stamped with the current time, increasing
//!   and in their original order, and dropped only if refused again. Loki stores the entries of
//!   a refused request that were in order, so a rewritten stream may show some lines twice.
//! - 413: the request is split in halves and each sent; a single entry too large is rejected.
//! - Another 400 (line too long, invalid labels): rejected. Other 4xx (401, 403, 404):
//!   [`SinkError::Permanent`], as an operator must fix the configuration.
//!
//! The remaining requests of a delivery are still sent after one is refused, so one bad stream
//! does not cost the others; the delivery as a whole then ends `Rejected`, which the pipeline
//! counts as dropped for all its events even though most were stored.
//!
//! # Retries of a split delivery
//!
//! A delivery split into several requests may fail half way. The pipeline then passes the same
//! batches again, so the sink remembers a fingerprint of the failed delivery (its containers,
//! line counts and first and last positions) and how many of its requests Loki already took,
//! and resumes after them. The split is deterministic, so the same batches give the same
//! requests. What this cannot cover (a restart in between, or the second half of a request
//! split after a 413) is re-sent; Loki ignores an entry whose stream, timestamp and line equal
//! one it already has, so such a replay stores nothing twice.
//!
//! # Metrics
//!
//! The pipeline's worker records `log_capturer_sink_request_duration_seconds{sink}` once per
//! `deliver` call (one or more HTTP requests), so the sink does not record it again per
//! request; each request's status and duration are logged at debug level.
//!
//! # TLS and credentials
//!
//! `https://` endpoints use rustls (the same rustls and ring that the Docker client already
//! links, so the binary grows little) with the system's root certificates, or the `tls` table's
//! CA, client certificate and server name; the client is the HTTP sinks' shared one
//! (`sinks/http/`). Credentials written into the endpoint's URL are split off when the
//! configuration is read and sent as basic authentication, so they appear in no message.

mod config;
mod encode;
mod error;
mod http;
mod labels;
#[cfg(test)]
mod proto;
#[cfg(test)]
mod tests;

pub use config::{LokiAuth, LokiCompression, LokiOutOfOrder, LokiSinkConfig};

use std::{
    fmt,
    io::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use capture_core::EventBatch;
use flate2::{Compression, write::GzEncoder};
use tracing::warn;

use self::{
    encode::{
        Entry, StreamSlice, encode_json, encode_protobuf, group_streams, plan_requests,
        split_in_half,
    },
    error::LokiError,
    http::{PushClient, PushOutcome},
    labels::{LabelTemplates, Labels},
};
use crate::{
    sink::{Sink, SinkError},
    sinks::resume::Progress,
};

/// The Loki sink. Build it with [`LokiSink::new`]; the pipeline does so for `type = "loki"`.
pub struct LokiSink {
    client: PushClient,
    templates: LabelTemplates,
    compression: LokiCompression,
    out_of_order: LokiOutOfOrder,
    max_entries: usize,
    max_request_bytes: usize,
    /// The uncompressed body of the request being encoded, reused across requests.
    scratch: Vec<u8>,
    snappy: snap::raw::Encoder,
    /// What a failed delivery had already delivered, to resume after it on the retry.
    progress: Progress<LokiError>,
    /// The last timestamp given to a rewritten entry, so rewritten timestamps only increase.
    last_rewritten_nanos: i64,
}

impl fmt::Debug for LokiSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiSink")
            .field("client", &self.client)
            .field("compression", &self.compression)
            .field("out_of_order", &self.out_of_order)
            .field("max_entries", &self.max_entries)
            .field("max_request_bytes", &self.max_request_bytes)
            .finish_non_exhaustive()
    }
}

impl LokiSink {
    /// Validates `config`, parses its label templates, reads its secret and builds the HTTP
    /// client. Every failure is [`SinkError::Permanent`]: the configuration must change.
    pub fn new(config: LokiSinkConfig) -> Result<LokiSink, SinkError> {
        if config.max_entries == 0 || config.max_request_bytes == 0 {
            return Err(LokiError::config(
                "max_entries and max_request_bytes must be positive",
            ));
        }
        let templates = LabelTemplates::new(&config.labels).map_err(SinkError::permanent)?;
        let client = PushClient::new(&config)?;
        Ok(LokiSink {
            client,
            templates,
            compression: config.compression,
            out_of_order: config.out_of_order,
            max_entries: config.max_entries,
            max_request_bytes: config.max_request_bytes,
            scratch: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            progress: Progress::default(),
            last_rewritten_nanos: i64::MIN,
        })
    }

    /// Sends one planned request; returns the refusal if Loki refused it for its content.
    async fn send_request(
        &mut self,
        slices: Vec<StreamSlice<'_, '_>>,
    ) -> Result<Option<LokiError>, SinkError> {
        let mut refusal = None;
        // Halves of a request Loki found too large, sent first half first.
        let mut pending = vec![slices];
        while let Some(slices) = pending.pop() {
            match self.push(&slices).await? {
                PushOutcome::Accepted => {}
                PushOutcome::TooLarge(error) => match split_in_half(&slices) {
                    Some((first, second)) => {
                        pending.push(second);
                        pending.push(first);
                    }
                    None => refusal = Some(error),
                },
                PushOutcome::Invalid(error) => refusal = Some(error),
                PushOutcome::TimestampRefused(error) => match self.out_of_order {
                    LokiOutOfOrder::Drop => refusal = Some(error),
                    LokiOutOfOrder::RewriteTimestamp => {
                        let rewritten = self.rewrite_timestamps(&slices, &error);
                        let rewritten_slices: Vec<StreamSlice<'_, '_>> = rewritten
                            .iter()
                            .map(|(labels, entries)| StreamSlice {
                                labels,
                                entries: entries.as_slice(),
                            })
                            .collect();
                        match self.push(&rewritten_slices).await? {
                            PushOutcome::Accepted => {}
                            PushOutcome::TooLarge(error)
                            | PushOutcome::Invalid(error)
                            | PushOutcome::TimestampRefused(error) => refusal = Some(error),
                        }
                    }
                },
            }
        }
        Ok(refusal)
    }

    /// Encodes and sends one request body.
    async fn push(&mut self, slices: &[StreamSlice<'_, '_>]) -> Result<PushOutcome, SinkError> {
        let body = self.encode(slices)?;
        self.client.push(body).await
    }

    /// Encodes `slices` as configured, through the reused scratch buffer.
    fn encode(&mut self, slices: &[StreamSlice<'_, '_>]) -> Result<Vec<u8>, SinkError> {
        self.scratch.clear();
        // One oversized delivery should not pin its buffer for the life of the process.
        if self.scratch.capacity() > 4 * self.max_request_bytes {
            self.scratch.shrink_to(self.max_request_bytes);
        }
        match self.compression {
            LokiCompression::Gzip => {
                encode_json(slices, &mut self.scratch);
                let compressed = Vec::with_capacity(self.scratch.len() / 4 + 64);
                let mut encoder = GzEncoder::new(compressed, Compression::fast());
                encoder
                    .write_all(&self.scratch)
                    .and_then(|()| encoder.finish())
                    .map_err(SinkError::transient)
            }
            LokiCompression::Snappy => {
                encode_protobuf(slices, &mut self.scratch);
                self.snappy
                    .compress_vec(&self.scratch)
                    .map_err(SinkError::transient)
            }
        }
    }

    /// The streams of `slices` that Loki's answer names (all of them if it names none), with
    /// timestamps replaced by the current time: increasing, one nanosecond apart at least, in
    /// the entries' order.
    fn rewrite_timestamps<'s, 'a>(
        &mut self,
        slices: &[StreamSlice<'s, 'a>],
        refusal: &LokiError,
    ) -> Vec<(&'s Labels, Vec<Entry<'a>>)> {
        let body = match refusal {
            LokiError::Status { body, .. } => body.as_str(),
            _ => "",
        };
        let named = |slice: &&StreamSlice<'s, 'a>| body.contains(&slice.labels.prometheus);
        let refused: Vec<&StreamSlice<'s, 'a>> = if slices.iter().any(|slice| named(&slice)) {
            slices.iter().filter(named).collect()
        } else {
            slices.iter().collect()
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
            });
        let mut next = now.max(self.last_rewritten_nanos.saturating_add(1));
        let mut entries_rewritten = 0usize;
        let rewritten = refused
            .into_iter()
            .map(|slice| {
                let entries = slice
                    .entries
                    .iter()
                    .map(|entry| {
                        let timestamp_nanos = next;
                        next = next.saturating_add(1);
                        Entry {
                            timestamp_nanos,
                            line: entry.line,
                        }
                    })
                    .collect::<Vec<_>>();
                entries_rewritten += entries.len();
                (slice.labels, entries)
            })
            .collect::<Vec<_>>();
        self.last_rewritten_nanos = next.saturating_sub(1);
        warn!(
            streams = rewritten.len(),
            entries = entries_rewritten,
            error = %refusal,
            "loki refused entries for their timestamps; resending them stamped with the current time"
        );
        rewritten
    }
}

impl Sink for LokiSink {
    async fn deliver(&mut self, batches: &[EventBatch]) -> Result<(), SinkError> {
        let done = self.progress.start(batches);
        let streams = group_streams(&self.templates, batches);
        let requests = plan_requests(&streams, self.max_entries, self.max_request_bytes);
        for parts in requests.iter().skip(done) {
            let slices = parts
                .iter()
                .map(|part| StreamSlice {
                    labels: &streams[part.stream].labels,
                    entries: &streams[part.stream].entries[part.entries.clone()],
                })
                .collect();
            let outcome = self.send_request(slices).await;
            self.progress.sent(outcome)?;
        }
        self.progress.finish(|refused, first| {
            SinkError::rejected(LokiError::Refused {
                refused,
                requests: requests.len(),
                first: Box::new(first),
            })
        })
    }
}
