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
/// `log_capturer_containers_unreadable{reason}`: containers not captured because their logs
/// cannot be read by design, now: `log_driver_none`, `dual_logging_disabled` (a driver that only
/// sends, with Docker's cache off). They are listed in `/health` under `unreadable`.
pub(crate) const CONTAINERS_UNREADABLE: &str = "log_capturer_containers_unreadable";
/// `log_capturer_docker_reconnects_total`: reconnections of the discovery (events) stream.
pub(crate) const DOCKER_RECONNECTS_TOTAL: &str = "log_capturer_docker_reconnects_total";
/// `log_capturer_multiline_events_total`: events of two lines or more that the multiline stage
/// joined into one line (each counts once in `log_capturer_lines_total`).
pub(crate) const MULTILINE_EVENTS_TOTAL: &str = "log_capturer_multiline_events_total";
/// `log_capturer_multiline_lines_total`: the lines those events joined.
pub(crate) const MULTILINE_LINES_TOTAL: &str = "log_capturer_multiline_lines_total";
/// `log_capturer_multiline_splits_total{reason}`: events emitted early because the next line
/// would have taken them past `max_lines` or `max_bytes` (the rest continues as a new event).
pub(crate) const MULTILINE_SPLITS_TOTAL: &str = "log_capturer_multiline_splits_total";

/// `log_capturer_log_files_lost_total{reason}`: file mode's losses Docker caused before the
/// agent could read: `rotated` (a rotated log file deleted before it was read; or the rotation
/// went too fast to follow), `truncated` (the live file truncated in place by `max-file=1`).
pub(crate) const LOG_FILES_LOST_TOTAL: &str = "log_capturer_log_files_lost_total";
/// `log_capturer_log_file_bytes_lost_total{reason}`: the size of those files when last seen
/// (what is known of the loss; a truncation's is unknown and counts 0).
pub(crate) const LOG_FILE_BYTES_LOST_TOTAL: &str = "log_capturer_log_file_bytes_lost_total";

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
    for reason in capture_core::status::UnreadableReason::ALL {
        ::metrics::gauge!(CONTAINERS_UNREADABLE, "reason" => reason.as_str()).set(0.0);
    }
    ::metrics::counter!(DOCKER_RECONNECTS_TOTAL).increment(0);
    for reason in ["rotated", "truncated"] {
        ::metrics::counter!(LOG_FILES_LOST_TOTAL, "reason" => reason).increment(0);
        ::metrics::counter!(LOG_FILE_BYTES_LOST_TOTAL, "reason" => reason).increment(0);
    }
    ::metrics::counter!(MULTILINE_EVENTS_TOTAL).increment(0);
    ::metrics::counter!(MULTILINE_LINES_TOTAL).increment(0);
    for reason in ["max_lines", "max_bytes"] {
        ::metrics::counter!(MULTILINE_SPLITS_TOTAL, "reason" => reason).increment(0);
    }
    ::metrics::gauge!(CONTAINERS_MONITORED).set(0.0);
}
