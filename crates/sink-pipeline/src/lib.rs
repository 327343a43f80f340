//! Delivers batches of log lines to every configured sink, and acknowledges them to the
//! source once no sink can lose them any more.
//!
//! # Layout
//!
//! - [`Pipeline`] (`pipeline.rs`): the dispatcher collects input [`EventBatch`](capture_core::EventBatch)es from a bounded
//!   channel ([`INPUT_CHANNEL_CAPACITY`]) into deliveries by count, bytes and age
//!   (`batcher.rs`), and hands each delivery to every sink's bounded queue; waiting for queue
//!   space is the backpressure that reaches the Docker streams. The acknowledger sends each
//!   delivery's [`Acknowledgement`](capture_core::Acknowledgement)s once every sink is done with it, in input order.
//! - `worker.rs`: one task per sink. It delivers in order, retries with exponential backoff
//!   and jitter (one timer per sink), keeps the sink's [`SinkSnapshot`](capture_core::status::SinkSnapshot) and metrics, and spills
//!   to the sink's disk buffer while the sink is down.
//! - `buffer/`: the disk buffer, checksummed records in segment files with a durable read
//!   position, replayed in order when the sink recovers, also after a restart.
//! - `sinks/`: `file` (JSON lines, rotation, exactly-once over replays), `stdout`, `loki` and
//!   `otlp` (OTLP/HTTP protobuf); `sinks/http/` is what the HTTP sinks share. `record.rs` renders the contract's JSON record by hand.
//! - `config.rs`: the `[batch]` and `[[sinks]]` configuration; `error.rs`: [`Error`].
//!
//! # The sink contract
//!
//! A sink implements [`Sink`]: `deliver(&mut self, batches: &[EventBatch])` returns `Ok` once
//! the sink has *accepted* every line (it survives a crash of this process), and `flush` pushes
//! out anything held internally. The pipeline calls one sink sequentially, never concurrently,
//! and never passes it the same batch again after an `Ok`. Failures are classified by
//! [`SinkError`]:
//!
//! - [`SinkError::Transient`]: retried after a backoff; the sink shows `retrying`, then
//!   `failing` after `retry.failing_after`. Its deliveries wait in the disk buffer.
//! - [`SinkError::Permanent`]: the sink shows `failing` at once and is retried at the longest
//!   backoff, in case an operator fixes the cause. A sink that cannot work at all should fail
//!   when it is built instead, so [`Pipeline::new`] reports it.
//! - [`SinkError::Rejected`]: the events themselves are refused; they are dropped, counted in
//!   `log_capturer_sink_events_total{result="dropped"}` and the snapshot, and logged.
//!
//! A failed `deliver` is repeated with the same batches, so it must leave no partial effect
//! (the file sink truncates a partial write) or one the sink recognises (the file sink's
//! high-water marks). A delivery may be passed again after a crash, from the disk buffer.
//!
//! # Acknowledgements
//!
//! A delivery is acknowledged once every sink has accepted it, durably written it to its disk
//! buffer, or rejected it. Acknowledgements are sent in input order, so the source's cursor
//! never moves past a line that could still be lost.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use capture_core::{ContainerId, ContainerInfo, EventBatchBuilder, LogStream, Position};
//! use sink_pipeline::config::{FileSinkConfig, PipelineConfig, SinkConfig};
//! use sink_pipeline::{INPUT_CHANNEL_CAPACITY, Pipeline};
//! use tokio::sync::mpsc;
//! use tokio_util::sync::CancellationToken;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let data_dir = tempfile::tempdir().unwrap();
//! let config = PipelineConfig {
//!     sinks: vec![SinkConfig::File(FileSinkConfig::default_for(data_dir.path()))],
//!     ..PipelineConfig::default()
//! };
//! let pipeline = Pipeline::new(config, data_dir.path()).unwrap();
//!
//! let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
//! let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
//! let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));
//!
//! let id = ContainerId::new("4f".repeat(32)).unwrap();
//! let mut builder = EventBatchBuilder::new(Arc::new(ContainerInfo::new(id, "web-1", "nginx:1.27")));
//! builder.push(LogStream::Stdout, Position::new(1_795_460_400_123_456_789, 0), b"GET / 200");
//! batch_tx.send(builder.finish()).await.unwrap();
//!
//! // The line is in the file once it is acknowledged.
//! let ack = ack_rx.recv().await.unwrap();
//! assert_eq!(ack.position, Position::new(1_795_460_400_123_456_789, 0));
//! drop(batch_tx);
//! running.await.unwrap().unwrap();
//! let text = std::fs::read_to_string(data_dir.path().join("logs/containers.jsonl")).unwrap();
//! assert!(text.starts_with(r#"{"timestamp":"2026-11-23T19:00:00.123456789Z","container_id":"4f4f"#));
//! # });
//! ```

mod batcher;
mod buffer;
pub mod config;
mod error;
pub mod metric_names;
mod open;
mod pipeline;
mod record;
mod reload;
mod sink;
mod sink_set;
mod sinks;
mod worker;

pub use error::{Error, Result};
pub use pipeline::{INPUT_CHANNEL_CAPACITY, Pipeline};
pub use reload::{PipelineReloader, SinkChanges};
pub use sink::{RetryAfter, Sink, SinkError};
pub use sinks::loki::LokiSink;
pub use sinks::otlp::OtlpSink;
pub use worker::SinkOptions;

#[cfg(test)]
mod tests;
