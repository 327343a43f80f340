//! Metric names of the pipeline (CONTRACT.md), all labelled by sink name (bounded by the
//! configuration). Public so the binary can configure the histogram's buckets by name.

/// `log_capturer_sink_events_total{sink, result}`: events by outcome, `sent`, `failed` (a failed
/// attempt, retried) or `dropped` (refused by the destination or dropped by `drop_oldest`).
pub const SINK_EVENTS_TOTAL: &str = "log_capturer_sink_events_total";
/// `log_capturer_sink_buffered_events{sink}`: events waiting in the sink's disk buffer.
pub const SINK_BUFFERED_EVENTS: &str = "log_capturer_sink_buffered_events";
/// `log_capturer_sink_request_duration_seconds{sink}`: one delivery attempt, as a histogram.
pub const SINK_REQUEST_DURATION_SECONDS: &str = "log_capturer_sink_request_duration_seconds";
/// `log_capturer_sink_lines_skipped_total{sink}`: replayed lines a file sink skipped because it
/// already held them.
pub const SINK_LINES_SKIPPED_TOTAL: &str = "log_capturer_sink_lines_skipped_total";
