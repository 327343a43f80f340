//! The pump: one open log stream read until it ends.
//!
//! Each turn waits for the first of: cancellation, the container's removal (the drain's bounds
//! then apply), its release (a follow stream only), a frame, or the timer. A frame starts a
//! *burst*: everything ready without waiting is decoded (a full batch ends it); the batch is
//! sent when it is full or the stream went idle, else within `batch_max_latency`. A busy burst
//! on bollard's stream is followed by a pause (see [`crate::coalesce`]). The timer (see
//! [`Follower::next_deadline`]) beats, flushes late partial lines and quiet multiline events,
//! sends a batch whose latency is up, ends a removed container's drain, and checks a stream
//! silent for `inactivity_timeout` (see [`crate::liveness`]).

use std::pin::{Pin, pin};

use bollard::errors::Error as DockerError;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;
use tracing::debug;

use super::{Follower, HISTORY_SCAN_PATIENCE, Mode, StreamEnd, unix_nanos};
use crate::{
    coalesce::{self, Bursts},
    frame::{Frame, Frames},
    liveness::{self, Freshness},
    output::decode_frame,
};

/// What a stream yields at a poll: a frame, an error, or its end (`None`).
type Item = Option<Result<Frame, DockerError>>;

/// What the pump tracks while one stream is open.
struct Open {
    mode: Mode,
    tty: bool,
    /// Whether the pump pauses busy bursts itself (bollard's stream; the raw reader parks its
    /// socket instead).
    coalesce: bool,
    opened_at: Instant,
    /// The last burst, or the last check that kept the silent stream: inactivity runs from it.
    last_frame: Instant,
    /// Whether any frame came: until then, the daemon may still be scanning the history.
    framed: bool,
    /// When the assembled lines must be sent.
    batch_deadline: Option<Instant>,
    /// Since when a line has waited for its end.
    partial_since: Option<Instant>,
    /// Lines decoded from this stream.
    lines: u64,
    /// The container's removal was seen: the drain's bounds apply.
    removal_seen: bool,
    bursts: Bursts,
}

impl Open {
    fn new(mode: Mode, tty: bool, coalesce: bool) -> Open {
        let now = Instant::now();
        Open {
            mode,
            tty,
            coalesce,
            opened_at: now,
            last_frame: now,
            framed: false,
            batch_deadline: None,
            partial_since: None,
            lines: 0,
            removal_seen: false,
            bursts: Bursts::new(),
        }
    }
}

/// What one burst read.
struct Burst {
    frames: usize,
    bytes: usize,
    /// `Some(Ok(()))`: the stream ended; `Some(Err(_))`: it failed.
    ended: Option<Result<(), DockerError>>,
}

impl Follower {
    /// Reads `stream` until it ends; returns how.
    pub(super) async fn pump(
        &mut self,
        mut stream: Pin<&mut impl Frames>,
        tty: bool,
        coalesce: bool,
        mode: Mode,
    ) -> StreamEnd {
        let cancel = self.cancel.clone();
        let mut cancelled = pin!(cancel.cancelled());
        let removal = self.env.shared.removal.token();
        let mut removed = pin!(removal.cancelled());
        let shared = self.env.shared.clone();
        let mut released = pin!(shared.released());
        // A drain reads up to now anyway: only a follow stream stops at a release.
        let watch_release = mode == Mode::Follow;
        let mut open = Open::new(mode, tty, coalesce);
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        // An item read after a coalescing pause, processed before waiting again.
        let mut carried = None;
        loop {
            timer.as_mut().reset(self.next_deadline(&open));
            let first = match carried.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    _ = &mut cancelled => return StreamEnd::Cancelled,
                    _ = &mut removed, if !open.removal_seen => {
                        open.removal_seen = true;
                        continue;
                    }
                    () = &mut released, if watch_release => {
                        // Complete lines go now; the drain reads the rest from the read position.
                        return self.send_then(StreamEnd::Released).await;
                    }
                    item = stream.next() => item,
                    _ = &mut timer => match self.on_timer(&mut open).await {
                        Ok(()) => continue,
                        Err(end) => return end,
                    },
                },
            };
            let busy = match self.take_burst(stream.as_mut(), first, &mut open).await {
                Ok(busy) => busy,
                Err(end) => return end,
            };
            if busy && open.coalesce {
                match self.pause_busy(stream.as_mut(), &mut open).await {
                    Ok(item) => carried = item,
                    Err(end) => return end,
                }
            }
        }
    }

    /// The timer's deadline: the earliest of the next heartbeat tick, the inactivity deadline,
    /// the batch latency, the partial line's flush, a removed container's drain and the
    /// multiline stage's flush.
    fn next_deadline(&self, open: &Open) -> Instant {
        let settings = &self.env.settings;
        let tick =
            (Instant::now() + self.beat_every).min(open.last_frame + settings.inactivity_timeout);
        let partial = open
            .partial_since
            .map(|since| since + settings.partial_flush_timeout);
        [
            open.batch_deadline,
            partial,
            self.drain_deadline(open.removal_seen),
            self.multiline.deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(tick, Instant::min)
    }

    /// Sends the assembled batches and forgets the batch deadline.
    async fn send_now(&mut self, open: &mut Open) -> Result<(), StreamEnd> {
        self.send_batch().await?;
        open.batch_deadline = None;
        Ok(())
    }

    /// Sends the assembled batches, then ends with `end` (or with why they could not be sent).
    async fn send_then(&mut self, end: StreamEnd) -> StreamEnd {
        match self.send_batch().await {
            Ok(()) => end,
            Err(stop) => stop,
        }
    }

    /// Decodes a burst starting with `first`, then sends the batch if it is full or the stream
    /// went idle. Returns whether the stream is busy; `Err`: it ended (complete lines are sent
    /// first; partial ones are read again by the next stream).
    async fn take_burst(
        &mut self,
        stream: Pin<&mut impl Frames>,
        first: Item,
        open: &mut Open,
    ) -> Result<bool, StreamEnd> {
        let start = Instant::now();
        let lines_before = self.assembler.pending_lines();
        let burst = self.decode_burst(stream, first).await;
        open.lines += self.assembler.pending_lines().saturating_sub(lines_before) as u64;
        if let Some(ended) = burst.ended {
            let end = match ended {
                Ok(()) => StreamEnd::Eof { lines: open.lines },
                Err(error) => StreamEnd::Failed(error),
            };
            return Err(self.send_then(end).await);
        }
        self.heartbeat.beat();
        self.progress.made();
        self.first_frame_at.get_or_insert_with(unix_nanos);
        let now = Instant::now();
        open.last_frame = now;
        open.framed = true;
        open.partial_since = match (self.decoder.has_partial(), open.partial_since) {
            (true, since) => since.or(Some(now)),
            (false, _) => None,
        };
        let busy = open.bursts.busy(start, now, burst.frames, burst.bytes);
        if self.assembler.is_full() || (!busy && !self.assembler.is_empty()) {
            // Full, or the stream went idle: send now (low latency at low rates).
            self.send_now(open).await?;
        } else if !self.assembler.is_empty() && open.batch_deadline.is_none() {
            open.batch_deadline = Some(now + self.env.settings.batch_max_latency);
        }
        Ok(busy)
    }

    /// Decodes everything that is ready now (a burst), yielding only to hyper's connection task;
    /// a full batch ends the burst so the timer and cancellation are looked at.
    async fn decode_burst(&mut self, mut stream: Pin<&mut impl Frames>, first: Item) -> Burst {
        let mut burst = Burst {
            frames: 0,
            bytes: 0,
            ended: None,
        };
        let mut next = first;
        loop {
            match next {
                None => burst.ended = Some(Ok(())),
                Some(Err(error)) => burst.ended = Some(Err(error)),
                Some(Ok(frame)) => {
                    burst.frames += 1;
                    burst.bytes += decode_frame(
                        &mut self.decoder,
                        &mut self.multiline.sink(&mut self.assembler),
                        frame,
                        &self.env.shared.id,
                    );
                }
            }
            if burst.ended.is_some() || self.assembler.is_full() {
                return burst;
            }
            match ready_item(stream.as_mut()).await {
                Some(item) => next = item,
                None => return burst,
            }
        }
    }

    /// After a busy burst on bollard's stream: lets the socket buffer fill, so the next burst
    /// carries many frames. Returns what came meanwhile; if nothing did, the stream went idle
    /// and what is waiting is sent.
    async fn pause_busy(
        &mut self,
        stream: Pin<&mut impl Frames>,
        open: &mut Open,
    ) -> Result<Option<Item>, StreamEnd> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(StreamEnd::Cancelled),
            _ = tokio::time::sleep(coalesce::PAUSE) => {}
        }
        let carried = ready_item(stream).await;
        if carried.is_none() && !self.assembler.is_empty() {
            self.send_now(open).await?;
        }
        Ok(carried)
    }

    /// The timer fired: beat, flush what is late, send what is due, check a silent stream.
    /// `Err`: the stream ends.
    async fn on_timer(&mut self, open: &mut Open) -> Result<(), StreamEnd> {
        self.heartbeat.beat();
        let now = Instant::now();
        let settings = self.env.settings.clone();
        if open
            .partial_since
            .is_some_and(|since| now >= since + settings.partial_flush_timeout)
        {
            self.decoder
                .flush_partials(&mut self.multiline.sink(&mut self.assembler));
            open.partial_since = None;
            // The head of the line goes out within the batch latency.
            if !self.assembler.is_empty() && open.batch_deadline.is_none() {
                open.batch_deadline = Some(now + settings.batch_max_latency);
            }
        }
        if self
            .drain_deadline(open.removal_seen)
            .is_some_and(|drain| now >= drain)
        {
            // Removed, and nothing more came: send what can be sent (a line or an event held
            // open included), then end.
            self.decoder
                .flush_partials(&mut self.multiline.sink(&mut self.assembler));
            self.multiline.flush_all(&mut self.assembler);
            return Err(self.send_then(StreamEnd::RemovalCut { dropped: 0 }).await);
        }
        // A held event whose stream went quiet: send it now.
        let flushed = self.multiline.flush_expired(now, &mut self.assembler);
        let inactive = now >= open.last_frame + settings.inactivity_timeout;
        if inactive || flushed || open.batch_deadline.is_some_and(|batch| now >= batch) {
            self.send_now(open).await?;
        }
        if inactive {
            self.check_silent(open).await?;
        }
        Ok(())
    }

    /// The stream was silent for `inactivity_timeout`: keeps it if it is healthy (reopening one
    /// costs the daemon a read of the whole log file, see `liveness.rs`), else ends it.
    async fn check_silent(&mut self, open: &mut Open) -> Result<(), StreamEnd> {
        let scanning = !open.framed && open.opened_at.elapsed() < HISTORY_SCAN_PATIENCE;
        if self
            .keep_silent_stream(open.mode, open.tty, scanning)
            .await?
        {
            open.last_frame = Instant::now();
            Ok(())
        } else {
            Err(StreamEnd::Inactive)
        }
    }

    /// Whether a follow stream silent for `inactivity_timeout` is up to date and is kept open
    /// (`Err`: the task was cancelled meanwhile). `scanning`: the stream delivered nothing since
    /// it was opened, not long ago; the daemon may still be reading the history before `since`
    /// (it decodes the whole file first), so it is kept even if the daemon has newer lines:
    /// reopening would only start that read over.
    async fn keep_silent_stream(
        &mut self,
        mode: Mode,
        tty: bool,
        scanning: bool,
    ) -> Result<bool, StreamEnd> {
        if mode != Mode::Follow {
            return Ok(false);
        }
        let freshness = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(StreamEnd::Cancelled),
            freshness = liveness::check(&self.env, tty) => freshness,
        };
        self.heartbeat.beat();
        debug!(container_id = %self.env.shared.id, ?freshness, scanning, "silent log stream checked");
        Ok(freshness == Freshness::Current || (scanning && freshness == Freshness::Behind))
    }
}

/// The next item if it is ready. If not, hyper's connection task (on this thread), which hands
/// the body over one HTTP chunk per turn, runs once before the stream is called idle (`None`).
async fn ready_item(mut stream: Pin<&mut impl Frames>) -> Option<Item> {
    if let Some(item) = stream.next().now_or_never() {
        return Some(item);
    }
    coalesce::yield_to_local_tasks().await;
    stream.next().now_or_never()
}
