//! Discovers Docker containers and streams their logs, exactly once, with resume cursors.
//!
//! # Model
//!
//! ```text
//!                      caller's runtime                      stream-worker threads (current-thread runtimes)
//!  ┌──────────────────────────────────────────────┐    ┌──────────────────────────────────────────────┐
//!  │ discovery: list containers, follow /events   │    │ task container_<id> (supervised, one per     │
//!  │ (start, die, destroy, rename, pause,         │───▶│ container): GET /containers/<id>/logs        │
//!  │ unpause); reconnect + re-list on error       │spawn│  follow=1&timestamps=1&since=<cursor second>│
//!  └──────────────────────────────────────────────┘    │  frames ─▶ decoder ─▶ EventBatchBuilder      │
//!           ▲ acks                                      └───────────────────────┬──────────────────────┘
//!           │                                                                   │ EventBatch (bounded mpsc)
//!  ┌────────┴─────────────┐        ┌──────────────────┐                         ▼
//!  │ cursors (acked)      │◀─acks──│ pipeline / sinks │◀────────────────────── batches
//!  │ every checkpoint_    │        └──────────────────┘
//!  │ interval ─▶ <data_dir>/checkpoints.json (tmp + fsync + rename + fsync dir)
//!  └──────────────────────┘
//! ```
//!
//! - **The source actor** (`source.rs`, `source/`) runs in [`DockerSource::run`] on the caller's runtime. It lists
//!   every container, then follows `/events`; on any events error it reconnects with backoff and
//!   lists again, and it lists again every `relist_interval` in case the events connection went
//!   silent (over TCP, every connection has keepalive: `transport.rs`). A list or inspect failure
//!   never ends the source. The first listing of a run reads what happened while the agent was
//!   away (`startup.rs`); `read_from` applies only to the very first start.
//! - **Container tasks** (`stream.rs`, `stream/pump.rs`; `stream/shared.rs` is what they share
//!   with the source) are supervised tasks `container_<full id>` of type
//!   `container`, spawned on a stream-worker thread (`workers.rs`), so the connection and the
//!   decoder share one thread: no cross-thread wake-up per frame, only per batch. The stream
//!   (`frame.rs`: opened in one place, yielding `Frame`s either way) is read straight from the
//!   daemon's socket (`raw_logs.rs`: large reads, no task hand-off per HTTP chunk, and while it
//!   is hot one read per millisecond instead of a wake-up per line, see `coalesce.rs`; over TLS,
//!   bollard's `logs()`). A task heartbeats while its stream is alive, also when the container is silent or
//!   the batch channel is full; a stream silent for `inactivity_timeout` is checked against the
//!   daemon's last line (`liveness.rs`) and reopened only if it missed something. When the
//!   container stops, the task completes; its next `start` spawns it again. With `read_mode`
//!   `auto` or `files`, a container whose log files the agent can read gets a file follower
//!   instead (`files/`): same batches, cursors and life cycle, but it waits on inotify, so a
//!   silent container costs no request at all.
//! - **Decoding** (`decoder.rs`, `timestamp.rs`): multiplexed or TTY streams, Docker's
//!   timestamps parsed to nanoseconds, lines Docker split into 16 KiB pieces merged (up to
//!   `max_line_bytes`), malformed frames counted, never a panic.
//! - **Reload** (`reload.rs`, `source/reload.rs`, `stream/release.rs`): a [`SourceReloader`]
//!   changes the filters of a running source ([`DockerConfig::LIVE_KEYS`]). A container they no
//!   longer accept is released: its task reads what Docker has up to then and completes. A
//!   running container they now accept is read from the moment they changed.
//! - **Multiline** (`multiline/`): between the decoder and the batch, the lines of one event (a
//!   stack trace) are joined into one line, per stream, when a `[[docker.multiline]]` rule or the
//!   container's `log-capturer.multiline` label applies; the event carries its last line's
//!   position and its lines are not sent (so not counted as read) until it is emitted.
//! - **Cursors**: each line has a [`Position`](capture_core::Position) (timestamp, ordinal). A
//!   task resumes after the last line it *sent*; the checkpoint file (`checkpoint.rs`) holds the
//!   last line *acknowledged* by the pipeline, so an agent restart resumes exactly after what is
//!   safe, plus each container's read-through time (`read_through.rs`: a stream without a cursor
//!   is not asked from 0) and the last time the agent saw the daemon.
//!
//! Metrics: `log_capturer_lines_total{stream}`, `log_capturer_bytes_total`,
//! `log_capturer_containers_monitored`, `log_capturer_stream_reconnects_total{reason}`
//! (`eof`, `inactivity`, `error`), `log_capturer_stream_idle_checks_total{result}` (`current`,
//! `behind`, `failed`), `log_capturer_lines_dropped_total{reason}` (`malformed`;
//! `truncated`: a line cut at `max_line_bytes`, its head still delivered),
//! `log_capturer_invalid_utf8_lines_total`, `log_capturer_containers_unreadable_total{reason}`
//! (`not_found`, `unsupported_log_driver`: a stream that was expected to be readable failed),
//! `log_capturer_containers_unreadable{reason}` (a gauge: containers not captured because their
//! log driver cannot be read by design, `log_driver_none` or `dual_logging_disabled`; listed by
//! [`DockerSource::unreadable`] and not tasks), `log_capturer_docker_reconnects_total`,
//! `log_capturer_multiline_events_total`, `log_capturer_multiline_lines_total`,
//! `log_capturer_multiline_splits_total{reason}` (`max_lines`, `max_bytes`).
//!
//! # Example
//!
//! ```no_run
//! use docker_source::{DockerConfig, DockerSource};
//! use task_supervisor::{Supervisor, SupervisorConfig};
//! use tokio::sync::mpsc;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config: DockerConfig = toml_like_defaults();
//! config.validate(std::time::Duration::from_secs(300))?;
//! let source = DockerSource::new(config, std::path::Path::new("./data"))?;
//! let supervisor = Supervisor::new(SupervisorConfig::default());
//! let (batch_tx, mut batch_rx) = mpsc::channel(64);
//! let (ack_tx, ack_rx) = mpsc::unbounded_channel();
//! let shutdown = CancellationToken::new();
//! let source_task = tokio::spawn(source.run(supervisor, batch_tx, ack_rx, shutdown.clone()));
//!
//! // A pipeline: deliver each batch, then acknowledge it so the cursors move.
//! while let Some(batch) = batch_rx.recv().await {
//!     for line in batch.lines() {
//!         println!("{} {}: {}", batch.container().name, line.stream, line.message);
//!     }
//!     for ack in batch.acknowledgements() {
//!         ack_tx.send(ack)?;
//!     }
//! }
//! drop(ack_tx);
//! source_task.await??;
//! # Ok(())
//! # }
//! # fn toml_like_defaults() -> DockerConfig { DockerConfig::default() }
//! ```

mod assembler;
mod checkpoint;
mod client;
mod coalesce;
mod config;
mod cursor;
mod decoder;
mod error;
mod files;
mod filter;
mod frame;
mod liveness;
mod log_driver;
mod metric_names;
mod multiline;
mod output;
mod raw_logs;
mod read_through;
mod recovery;
mod reload;
mod removal;
mod source;
mod startup;
mod stream;
mod timestamp;
mod transport;
mod workers;

pub use config::{DockerConfig, ReadFrom, ReadMode};
pub use error::{Error, Result};
pub use multiline::{MULTILINE_LABEL, MultilineConfig, MultilinePreset};
pub use reload::SourceReloader;
pub use source::{CONTAINER_TASK_KIND, DockerSource};

#[cfg(test)]
mod tests;
