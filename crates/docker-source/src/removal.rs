//! What happens to a container task when its container is removed (a `destroy` event, the end
//! of a `docker run --rm` job, a re-listing that no longer finds it).
//!
//! dockerd keeps serving an open log stream from its open file after the container and its log
//! file are removed, to the end, also to a reader that pauses or reads slowly (measured on
//! 20.10: a follower paused for 30 s, or reading at 100 kB/s for 37 s, received all 50 000
//! lines of a `--rm` container removed in the first second; see `docs/guarantees.md`). So a
//! removal does not stop the task: the source marks the container removed ([`Removal::mark`])
//! and the task reads on until the stream ends, then completes. Two bounds keep a task from
//! holding its connection (and the deleted file's disk space) forever:
//!
//! - `removed_drain_timeout`: no progress (no line read, no batch taken by the pipeline) for
//!   this long after the removal;
//! - `removed_drain_max`: this long after the removal, progressing or not.
//!
//! A follow stream that Docker opens while the container runs serves a snapshot of the log
//! file first and follows it after; if the container exits before the snapshot is read, Docker
//! ends the stream at the snapshot's end (20.10 `ReadLogs` returns when the logger is closed),
//! and the task's last read without `follow` is what brings the rest. When the container is
//! removed before that read, the rest is gone. The task knows it read everything only if it read
//! a line written after it opened the stream (Docker was following then and serves the file to
//! its end), or if the container died before the stream was opened (Docker then reads the whole
//! file without following). "After it opened the stream" is judged from when the stream's first
//! lines arrived: the snapshot was taken before those were sent.
//!
//! A task cut by either bound, whose logs were already gone (404) when it asked for them, or whose
//! stream may have ended at Docker's snapshot, counts what it could not deliver: the lines it had read but not handed over in
//! `log_capturer_lines_dropped_total{reason="removed"}`, and the cut itself (the number of lines
//! Docker still had is unknown) in `log_capturer_stream_gaps_total{reason="removed"}`; it logs
//! one warning with the container's name.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metric_names;

/// The bounds of a removed container's drain (the `[docker]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DrainBounds {
    /// `removed_drain_timeout`: the longest time without progress.
    pub(crate) idle: Duration,
    /// `removed_drain_max`: the longest drain.
    pub(crate) max: Duration,
}

/// Whether (and since when) a container is removed; shared by the source and the task.
#[derive(Debug, Default)]
pub(crate) struct Removal {
    at: Mutex<Option<Instant>>,
    /// When the container last died (the `die` event's time, unix nanoseconds).
    died_at_nanos: Mutex<Option<i64>>,
    /// Cancelled at the removal, to wake a task that waits.
    token: CancellationToken,
}

impl Removal {
    /// The container was removed (now). Later calls change nothing.
    pub(crate) fn mark(&self) {
        self.at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(Instant::now);
        self.token.cancel();
    }

    /// When the container was removed, if it was.
    pub(crate) fn at(&self) -> Option<Instant> {
        *self.at.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token cancelled at the removal.
    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// The container died at `nanos` (unix nanoseconds, the `die` event's time).
    pub(crate) fn set_died_at(&self, nanos: i64) {
        *self
            .died_at_nanos
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(nanos);
    }

    /// Whether the container is known to have died before `nanos` (unix nanoseconds).
    pub(crate) fn died_before(&self, nanos: i64) -> bool {
        self.died_at_nanos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|died| died <= nanos)
    }
}

/// A task's progress, for the drain's no-progress bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    last: Instant,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            last: Instant::now(),
        }
    }

    /// A line was read or a batch taken.
    pub(crate) fn made(&mut self) {
        self.last = Instant::now();
    }

    /// When the drain of a container removed at `removed_at` ends.
    pub(crate) fn deadline(&self, removed_at: Instant, bounds: DrainBounds) -> Instant {
        let idle_from = self.last.max(removed_at);
        (idle_from + bounds.idle).min(removed_at + bounds.max)
    }
}

/// Counts and logs (once: the task ends right after) what a removed container's task could not
/// deliver: `dropped` lines it had read, and, if `cut`, an unknown number Docker still had.
pub(crate) fn report_loss(container_id: &str, name: &str, dropped: u64, cut: bool) {
    if dropped > 0 {
        ::metrics::counter!(metric_names::LINES_DROPPED_TOTAL, "reason" => "removed")
            .increment(dropped);
    }
    if cut {
        ::metrics::counter!(metric_names::STREAM_GAPS_TOTAL, "reason" => "removed").increment(1);
    }
    if dropped > 0 || cut {
        warn!(
            container_id,
            name,
            dropped_lines = dropped,
            unread_lines_unknown = cut,
            "container removed before its logs were read to the end; what it still had is lost"
        );
    }
}
