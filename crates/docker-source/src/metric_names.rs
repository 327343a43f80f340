//! Metric names (those of CONTRACT.md, plus a few of this crate's own), all with bounded labels.
//!
//! Counters are incremented per batch (or per event), never per line: a `metrics` call costs a
//! registry look-up.

/// `log_capturer_lines_total{stream}`: lines sent to the pipeline.
pub(crate) const LINES_TOTAL: &str = "log_capturer_lines_total";
/// `log_capturer_bytes_total`: message bytes sent to the pipeline.
pub(crate) const BYTES_TOTAL: &str = "log_capturer_bytes_total";
/// `log_capturer_containers_monitored`: containers with a log task.
pub(crate) const CONTAINERS_MONITORED: &str = "log_capturer_containers_monitored";
/// `log_capturer_stream_reconnects_total{reason}`: log streams reopened, by reason: `eof` (the
/// stream ended while the container runs), `inactivity` (silent for `inactivity_timeout`),
/// `error` (a transport or daemon error).
pub(crate) const STREAM_RECONNECTS_TOTAL: &str = "log_capturer_stream_reconnects_total";
/// `log_capturer_stream_idle_checks_total{result}`: follow streams silent for
/// `inactivity_timeout` checked against the daemon's last line instead of being reopened:
/// `current` (kept open), `behind` (the daemon has a line the stream did not deliver: reopened),
/// `failed` (the check failed: reopened).
pub(crate) const STREAM_IDLE_CHECKS_TOTAL: &str = "log_capturer_stream_idle_checks_total";
/// `log_capturer_lines_dropped_total{reason}`: `malformed` (a frame with a bad stream byte or
/// timestamp, dropped) and `truncated` (a line longer than `max_line_bytes`: its first
/// `max_line_bytes` are delivered, the rest is dropped, and the line is counted here once).
pub(crate) const LINES_DROPPED_TOTAL: &str = "log_capturer_lines_dropped_total";
/// `log_capturer_invalid_utf8_lines_total`: lines delivered with invalid UTF-8 replaced.
pub(crate) const INVALID_UTF8_LINES_TOTAL: &str = "log_capturer_invalid_utf8_lines_total";
/// `log_capturer_containers_unreadable_total{reason}`: containers whose logs cannot be read:
/// `not_found` (404) or `unsupported_log_driver` (501).
pub(crate) const CONTAINERS_UNREADABLE_TOTAL: &str = "log_capturer_containers_unreadable_total";
/// `log_capturer_docker_reconnects_total`: reconnections of the discovery (events) stream.
pub(crate) const DOCKER_RECONNECTS_TOTAL: &str = "log_capturer_docker_reconnects_total";

/// Publishes every counter of this crate at zero, so `/metrics` shows the whole contract (and
/// alert rules have a series to evaluate) before the first drop or reconnect happens. An exporter
/// only renders a counter once it has been touched.
pub(crate) fn publish_zeroes() {
    for stream in capture_core::LogStream::ALL {
        ::metrics::counter!(LINES_TOTAL, "stream" => stream.as_str()).increment(0);
    }
    ::metrics::counter!(BYTES_TOTAL).increment(0);
    for reason in ["eof", "inactivity", "error"] {
        ::metrics::counter!(STREAM_RECONNECTS_TOTAL, "reason" => reason).increment(0);
    }
    for result in ["current", "behind", "failed"] {
        ::metrics::counter!(STREAM_IDLE_CHECKS_TOTAL, "result" => result).increment(0);
    }
    for reason in ["malformed", "truncated"] {
        ::metrics::counter!(LINES_DROPPED_TOTAL, "reason" => reason).increment(0);
    }
    ::metrics::counter!(INVALID_UTF8_LINES_TOTAL).increment(0);
    for reason in ["not_found", "unsupported_log_driver"] {
        ::metrics::counter!(CONTAINERS_UNREADABLE_TOTAL, "reason" => reason).increment(0);
    }
    ::metrics::counter!(DOCKER_RECONNECTS_TOTAL).increment(0);
    ::metrics::gauge!(CONTAINERS_MONITORED).set(0.0);
}
