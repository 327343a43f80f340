//! Shared types of log-capturer: what crosses the channels between crates.
//!
//! The source (`docker-source`) and the pipeline (`sink-pipeline`) never depend on each other;
//! both depend on this crate. Its layout:
//!
//! - [`ContainerId`], [`ContainerInfo`]: who wrote a line. Shared by `Arc`, so metadata is not
//!   copied per line, and a rename produces a new `Arc` for lines read after it.
//! - [`LogStream`], [`Position`]: where a line stands in its container's stream. A position is the
//!   Docker timestamp in nanoseconds plus an ordinal among lines with the same timestamp, so it
//!   orders lines exactly and a resume can skip precisely what was already delivered.
//! - [`EventBatch`], [`LogLine`]: lines cross threads in batches, never one by one. A batch holds
//!   the lines of one container in one contiguous UTF-8 buffer, with no allocation per line.
//! - [`Acknowledgement`]: sent back from the pipeline once a batch is delivered (or durably
//!   buffered), so the source's cursor only moves past lines that cannot be lost any more.
//! - [`status`]: snapshots of tasks, sinks and the Docker connection, for the health API.
//! - [`ErrorChain`]: an error and its causes on one line, for logs and `last_error`;
//!   [`BoxError`], the boxed error sinks and task bodies return.
//! - [`Backoff`]: exponential backoff with the one jitter rule every retry loop uses.
//! - [`url`]: credentials written into URLs, split off before a URL is stored or shown.
//! - [`time`]: RFC 3339 parsing (a fast path for Docker's layout) and formatting, the one home.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use capture_core::{ContainerId, ContainerInfo, EventBatchBuilder, LogStream, Position};
//!
//! let id = ContainerId::new("4f".repeat(32)).unwrap();
//! let info = Arc::new(ContainerInfo::new(id.clone(), "web-1", "nginx:1.27"));
//! let mut builder = EventBatchBuilder::new(info);
//! builder.push(LogStream::Stdout, Position::new(1_700_000_000_000_000_000, 0), b"GET / 200");
//! builder.push(LogStream::Stderr, Position::new(1_700_000_000_000_000_001, 0), b"oops \xff");
//! let batch = builder.finish();
//!
//! assert_eq!(batch.len(), 2);
//! let messages: Vec<&str> = batch.lines().map(|line| line.message).collect();
//! assert_eq!(messages, ["GET / 200", "oops \u{FFFD}"]);
//! assert_eq!(batch.invalid_utf8_lines(), 1);
//!
//! // What the pipeline sends back once every sink has the batch.
//! let acks: Vec<_> = batch.acknowledgements().collect();
//! assert_eq!(acks.len(), 2);
//! assert_eq!(acks[0].container_id, id);
//! ```

mod backoff;
mod batch;
mod container;
mod error;
mod per_stream;
mod position;
pub mod status;
pub mod time;
pub mod url;

pub use backoff::Backoff;
pub use batch::{Acknowledgement, EventBatch, EventBatchBuilder, LogLine};
pub use container::{ContainerId, ContainerInfo, InvalidContainerId};
pub use error::{BoxError, ErrorChain};
pub use per_stream::PerStream;
pub use position::{LogStream, Position};
pub use time::format_rfc3339_nanos;

#[cfg(test)]
mod tests;
