//! A sink's health as the worker keeps it: its state and snapshot, its metrics, and when the
//! next attempt is due after a failure.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use capture_core::{Backoff, ErrorChain, status::SinkState};
use tokio::time::Instant;
use tracing::{info, warn};

use super::WorkerState;
use crate::{
    metric_names::{SINK_BUFFERED_EVENTS, SINK_EVENTS_TOTAL, SINK_REQUEST_DURATION_SECONDS},
    sink::SinkError,
};

/// The metric handles of one sink, registered once.
pub(super) struct SinkMetrics {
    pub(super) sent: metrics::Counter,
    pub(super) failed: metrics::Counter,
    pub(super) dropped: metrics::Counter,
    pub(super) buffered: metrics::Gauge,
    pub(super) duration: metrics::Histogram,
}

impl SinkMetrics {
    pub(super) fn new(sink: &str) -> SinkMetrics {
        let events = |result: &'static str| metrics::counter!(SINK_EVENTS_TOTAL, "sink" => sink.to_owned(), "result" => result);
        SinkMetrics {
            sent: events("sent"),
            failed: events("failed"),
            dropped: events("dropped"),
            buffered: metrics::gauge!(SINK_BUFFERED_EVENTS, "sink" => sink.to_owned()),
            duration: metrics::histogram!(
                SINK_REQUEST_DURATION_SECONDS,
                "sink" => sink.to_owned()
            ),
        }
    }
}

impl fmt::Debug for SinkMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkMetrics").finish_non_exhaustive()
    }
}

impl WorkerState {
    pub(super) fn mark_success(&mut self) {
        if self.snapshot.state != SinkState::Ok {
            info!(sink = %self.name, "sink recovered");
        }
        self.attempt = 0;
        self.failing_since = None;
        self.snapshot.state = SinkState::Ok;
        self.snapshot.last_success = Some(SystemTime::now());
        self.snapshot.last_error = None;
        self.snapshot.failing_since = None;
    }

    pub(super) fn mark_failure(&mut self, error: &SinkError) {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        self.snapshot
            .failing_since
            .get_or_insert_with(SystemTime::now);
        let permanent = matches!(error, SinkError::Permanent(_));
        self.snapshot.state = if permanent || now.duration_since(since) >= self.retry.failing_after
        {
            SinkState::Failing
        } else {
            SinkState::Retrying
        };
        let text = ErrorChain(error).to_string();
        let delay = match (permanent, error.retry_after()) {
            (true, _) => self.retry.max_backoff,
            // The destination's hint, but never sooner than the backoff nor later than its cap.
            (false, Some(hint)) => hint.max(self.backoff()).min(self.retry.max_backoff),
            (false, None) => self.backoff(),
        };
        self.attempt = self.attempt.saturating_add(1);
        warn!(
            sink = %self.name,
            error = %text,
            retry_in_ms = delay.as_millis() as u64,
            state = ?self.snapshot.state,
            "sink delivery failed"
        );
        self.snapshot.last_error = Some(match &self.buffer_error {
            Some(buffer_error) => format!("{text}; {buffer_error}"),
            None => text,
        });
        self.retry_at = Some(now + delay);
    }

    /// Exponential backoff with jitter (the agent's one rule, half the delay): a random wait in
    /// [d/2, d] where d doubles per attempt from `initial_backoff` up to `max_backoff`.
    pub(super) fn backoff(&self) -> Duration {
        Backoff::new(self.retry.initial_backoff, self.retry.max_backoff)
            .with_jitter(0.5)
            .jittered(self.attempt.saturating_add(1))
    }

    pub(super) fn absorb_buffer_drops(&mut self) {
        let dropped = self.buffer.take_dropped_events();
        if dropped > 0 {
            self.metrics.dropped.increment(dropped);
            self.snapshot.dropped_events += dropped;
        }
    }

    /// Publishes the snapshot and the buffered gauge if they changed.
    pub(super) fn publish(&mut self) {
        let buffered = self.pending_events + self.buffer.unread_events();
        self.metrics.buffered.set(buffered as f64);
        self.snapshot.buffered_events = buffered;
        let snapshot = &self.snapshot;
        self.status_tx.send_if_modified(|sinks| {
            match sinks.iter_mut().find(|slot| slot.name == snapshot.name) {
                Some(slot) if slot != snapshot => {
                    *slot = snapshot.clone();
                    true
                }
                _ => false,
            }
        });
    }
}
