//! One container's supervised task: open its log stream, decode, batch, send; reopen; finish.
//!
//! The task runs on a stream-worker thread (see `workers.rs`) and issues the logs request from
//! there. Its loop `select!`s on the stream, the cancellation token and one timer, whose
//! deadline is the earliest of: the next heartbeat tick, the batch latency deadline, the partial
//! line deadline and the inactivity deadline. It beats on every wake-up and on the tick, also
//! while it waits for a silent container or for room in a full batch channel (backpressure is
//! not death). A follow stream silent for `inactivity_timeout` is checked with a cheap request for
//! the container's last line (`liveness.rs`): it is kept if that line was read, else reopened
//! from the read position.
//!
//! # Resume
//!
//! The read position of each stream (the last line *sent* into the pipeline, acknowledged or
//! not) lives in [`ContainerShared`] and outlives the task's attempts: a reopen (after
//! inactivity, an error, a restart of the task) asks Docker for the cursor's whole second and
//! the decoder skips every line at or before it. Lines decoded but not yet sent are dropped by a
//! reopen and read again.
//!
//! # End
//!
//! When the stream ends and the container is not running, the partial line (if any) is flushed,
//! the stream is read once more without `follow` (to catch what a follower may miss at a stop),
//! and the task returns `Ok`: state `completed`. A `start` event that arrives meanwhile (see
//! [`ContainerShared::request_run`]) makes the task loop again instead of ending, so a restart is
//! never missed. A removed container's task reads on to the end of what Docker still serves,
//! within bounds, and a 404 is its normal end (see [`crate::removal`]).
//! never missed.
//!
//! # Release
//!
//! A configuration reload whose filters no longer accept the container *releases* it (see
//! `stream/release.rs`): a following task sends what it has assembled, reads what Docker has from
//! its read position without `follow` (so up to the moment of the release), sends it and
//! completes. Nothing before the release is lost, nothing after it is read.

mod pump;
mod release;
mod send;
mod shared;

pub(crate) use send::send_assembled;
pub(crate) use shared::ContainerShared;

use std::{pin::pin, sync::Arc, time::Duration};

use bollard::{Docker, query_parameters::InspectContainerOptions};
use capture_core::{Backoff, ErrorChain, EventBatch, LogStream};
use task_supervisor::{Heartbeat, TaskContext, TaskError};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    Error,
    assembler::Assembler,
    checkpoint::StreamPositions,
    decoder::Decoder,
    error::{docker_status, is_permanent_status},
    frame::{LogsQuery, open_logs},
    metric_names,
    multiline::{Multiline, MultilineRules},
    raw_logs::RawEndpoint,
    removal::{self, DrainBounds, Progress},
    timestamp::api_time_nanos,
};

/// Reopen backoff after errors, or after a stream that ended at once while its container runs.
const REOPEN_BACKOFF_BASE: Duration = Duration::from_millis(100);
const REOPEN_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// How long a freshly opened stream that has delivered nothing is kept although the daemon has
/// newer lines: Docker 20.10 reads the whole log file before the first line after `since`
/// (about 4 s per million lines here), and reopening would start that read over, forever.
const HISTORY_SCAN_PATIENCE: Duration = Duration::from_secs(120);
/// Consecutive failed opens before the task gives up and lets the supervisor restart it (with
/// its own, visible, backoff).
const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// The stream settings of the `[docker]` table.
#[derive(Debug, Clone)]
pub(crate) struct StreamSettings {
    pub(crate) inactivity_timeout: Duration,
    pub(crate) partial_flush_timeout: Duration,
    pub(crate) max_line_bytes: usize,
    pub(crate) batch_max_lines: usize,
    pub(crate) batch_max_bytes: usize,
    pub(crate) batch_max_latency: Duration,
    /// Bounds opening a log stream (connection, request, response head).
    pub(crate) request_timeout: Duration,
    /// Where log streams are read from directly ([`crate::raw_logs`]); `None` (TLS): through
    /// bollard.
    pub(crate) raw_endpoint: Option<RawEndpoint>,
    /// Lines up to this timestamp (the agent's start, nanoseconds) may have been delivered by an
    /// earlier run of the agent: they are flagged as a replay.
    pub(crate) replay_through: i64,
    /// How long a removed container's stream is drained.
    pub(crate) removed_drain: DrainBounds,
    /// The `[[docker.multiline]]` rules and presets, compiled once.
    pub(crate) multiline: Arc<MultilineRules>,
}

/// Everything one attempt of a container task needs (cloned per attempt).
#[derive(Debug, Clone)]
pub(crate) struct TaskEnv {
    pub(crate) shared: Arc<ContainerShared>,
    pub(crate) docker: Docker,
    pub(crate) batch_tx: mpsc::Sender<EventBatch>,
    pub(crate) settings: Arc<StreamSettings>,
}

/// The body of a container task (one attempt).
pub(crate) async fn container_task(ctx: TaskContext, env: TaskEnv) -> Result<(), TaskError> {
    env.shared.mark_active();
    let id = env.shared.id.clone();
    let mut follower = Follower::new(&ctx, env);
    match follower.run().await {
        Ok(()) => Ok(()),
        Err(error) if !error.is_transient() => {
            if let Error::Unreadable { status, .. } = &error {
                let reason = if *status == 404 {
                    "not_found"
                } else {
                    "unsupported_log_driver"
                };
                ::metrics::counter!(metric_names::CONTAINERS_UNREADABLE_TOTAL, "reason" => reason)
                    .increment(1);
            }
            warn!(container_id = %id, error = %ErrorChain(&error), "container logs cannot be read; giving up on it");
            follower.env.shared.mark_inactive();
            Err(TaskError::permanent(error))
        }
        Err(error) => Err(TaskError::transient(error)),
    }
}

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The daemon closed it.
    Eof { lines: u64 },
    /// Silent for `inactivity_timeout`.
    Inactive,
    /// A transport or daemon error.
    Failed(bollard::errors::Error),
    /// The task was asked to stop.
    Cancelled,
    /// The pipeline is gone.
    PipelineClosed,
    /// The container was removed and its drain reached a bound; `dropped` lines read were not
    /// handed over.
    RemovalCut { dropped: u64 },
    /// The container was released while it was followed: read what Docker has, then complete.
    Released,
}

/// Whether to follow the stream or read what Docker has and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Follow,
    Drain,
}

/// What the task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Done,
    Open(Mode),
}

/// The reopen backoff and the failures in a row.
#[derive(Debug)]
struct Retries {
    backoff: Backoff,
    consecutive_errors: u32,
}

impl Retries {
    fn new() -> Retries {
        Retries {
            backoff: Backoff::new(REOPEN_BACKOFF_BASE, REOPEN_BACKOFF_CAP),
            consecutive_errors: 0,
        }
    }

    /// A stream delivered lines: the next failure starts over.
    fn reset(&mut self) {
        self.backoff.reset();
        self.consecutive_errors = 0;
    }
}

/// A failed request, for [`Follower::retry`].
struct Failed {
    /// What the task's error says it could not do.
    operation: &'static str,
    /// What the warning says.
    what: &'static str,
    error: bollard::errors::Error,
}

struct Follower {
    env: TaskEnv,
    heartbeat: Heartbeat,
    cancel: CancellationToken,
    /// The heartbeat tick while waiting.
    beat_every: Duration,
    decoder: Decoder,
    /// Between the decoder and the assembler: joins the lines of an event (see `multiline`).
    multiline: Multiline,
    assembler: Assembler,
    /// The last line read or batch taken, for a removed container's drain.
    progress: Progress,
    /// Whether the last follow stream is known to have served the log to its end (see
    /// [`crate::removal`]): it read a line written after its first line arrived (Docker was
    /// following, past the snapshot it sends first), or the container had died before it was
    /// opened.
    served_to_end: bool,
    /// When the current stream's first frames arrived (unix nanoseconds).
    first_frame_at: Option<i64>,
}

impl Follower {
    fn new(ctx: &TaskContext, env: TaskEnv) -> Follower {
        let info = env.shared.info();
        let settings = env.settings.clone();
        Follower {
            heartbeat: ctx.heartbeat_handle(),
            cancel: ctx.cancellation_token(),
            beat_every: (ctx.heartbeat_interval() / 2).max(Duration::from_millis(10)),
            decoder: Decoder::new(settings.max_line_bytes).replays_through(settings.replay_through),
            multiline: Multiline::new(settings.multiline.for_container(&info)),
            assembler: Assembler::new(info, settings.batch_max_lines, settings.batch_max_bytes),
            progress: Progress::new(),
            served_to_end: false,
            first_frame_at: None,
            env,
        }
    }

    async fn run(&mut self) -> Result<(), Error> {
        // A released container's task (restarted after a failure) only drains.
        let mut mode = if self.env.shared.is_released() {
            Mode::Drain
        } else {
            Mode::Follow
        };
        let mut retries = Retries::new();
        loop {
            let end = self.follow_once(mode).await;
            // Nothing read: reopening at once could spin.
            let unproductive = matches!(&end, StreamEnd::Eof { lines: 0 });
            let next = match self.after_stream(end, mode, &mut retries).await? {
                Some(next) => next,
                None => self.after_eof(mode, unproductive, &mut retries).await?,
            };
            match next {
                Next::Done => return Ok(()),
                Next::Open(next) => mode = next,
            }
        }
    }

    /// What follows a stream's end; `None`: it reached its end, look at the container.
    async fn after_stream(
        &mut self,
        end: StreamEnd,
        mode: Mode,
        retries: &mut Retries,
    ) -> Result<Option<Next>, Error> {
        let id = self.env.shared.id.clone();
        let next = match end {
            StreamEnd::Cancelled => Next::Done,
            StreamEnd::PipelineClosed => return Err(Error::PipelineClosed),
            StreamEnd::RemovalCut { dropped } => {
                self.end_removed(dropped, true);
                Next::Done
            }
            // The container is gone (404) or being removed (409: "dead or marked for
            // removal"): a normal end, after what it served was read. A follow stream
            // refused may have missed lines; a last read after the end did not.
            StreamEnd::Failed(error) if matches!(docker_status(&error), Some(404 | 409)) => {
                debug!(container_id = %id, error = %ErrorChain(&error), "container removed");
                let dropped = self.finish_lines().await?;
                self.end_removed(dropped, mode == Mode::Follow || !self.served_to_end);
                Next::Done
            }
            StreamEnd::Released => Next::Open(Mode::Drain),
            StreamEnd::Inactive => {
                debug!(container_id = %id, "log stream silent; reopening");
                reconnected("inactivity");
                Next::Open(mode)
            }
            StreamEnd::Failed(error) => {
                let status = docker_status(&error);
                if is_permanent_status(status) {
                    return Err(Error::Unreadable {
                        container: id.short().to_owned(),
                        status: status.unwrap_or_default(),
                        source: error,
                    });
                }
                let failed = Failed {
                    operation: "follow container logs",
                    what: "log stream failed",
                    error,
                };
                self.retry(retries, failed, mode).await?
            }
            StreamEnd::Eof { lines } => {
                if lines > 0 {
                    retries.reset();
                }
                return Ok(None);
            }
        };
        Ok(Some(next))
    }

    /// The stream reached its end: a released container completes, a running one is followed
    /// again, a stopped one is drained once more, then completes (unless started meanwhile).
    async fn after_eof(
        &mut self,
        mode: Mode,
        unproductive: bool,
        retries: &mut Retries,
    ) -> Result<Next, Error> {
        if mode == Mode::Drain && self.finish_release().await? {
            return Ok(Next::Done);
        }
        let running = match self.is_running().await {
            Ok(running) => running,
            Err(error) if docker_status(&error) == Some(404) => {
                // Removed before the last read: complete if the stream served to the end.
                let dropped = self.finish_lines().await?;
                self.end_removed(dropped, !self.served_to_end);
                return Ok(Next::Done);
            }
            Err(error) => {
                let failed = Failed {
                    operation: "inspect container",
                    what: "cannot inspect container",
                    error,
                };
                return self.retry(retries, failed, mode).await;
            }
        };
        if running {
            reconnected("eof");
            // A stream that ends at once on a running container: do not spin.
            if (mode == Mode::Drain || unproductive)
                && self.pause(retries.backoff.next_delay()).await
            {
                return Ok(Next::Done);
            }
            return Ok(Next::Open(Mode::Follow));
        }
        // Stopped: the pending partial line is complete, whatever comes later.
        let dropped = self.finish_lines().await?;
        if dropped > 0 {
            self.end_removed(dropped, true);
            return Ok(Next::Done);
        }
        Ok(match mode {
            Mode::Follow => Next::Open(Mode::Drain),
            Mode::Drain if self.env.shared.try_finish() => {
                info!(container_id = %self.env.shared.id, "container stopped; log task completed");
                Next::Done
            }
            // Started again meanwhile.
            Mode::Drain => Next::Open(Mode::Follow),
        })
    }

    /// A request failed: reopens in `mode` after the backoff (`Done` if cancelled meanwhile);
    /// too many failures in a row fail the task, and the supervisor restarts it with its own,
    /// visible, backoff.
    async fn retry(
        &mut self,
        retries: &mut Retries,
        failed: Failed,
        mode: Mode,
    ) -> Result<Next, Error> {
        retries.consecutive_errors += 1;
        if retries.consecutive_errors > MAX_CONSECUTIVE_ERRORS {
            return Err(Error::Docker {
                operation: failed.operation,
                source: failed.error,
            });
        }
        warn!(container_id = %self.env.shared.id, error = %ErrorChain(&failed.error), "{}; reopening", failed.what);
        reconnected("error");
        if self.pause(retries.backoff.next_delay()).await {
            return Ok(Next::Done);
        }
        Ok(Next::Open(mode))
    }

    /// Flushes the partial lines and the open multiline events, and sends what is assembled;
    /// returns how many lines could not be sent because a removed container's drain reached
    /// its bound.
    async fn finish_lines(&mut self) -> Result<u64, Error> {
        self.decoder
            .flush_partials(&mut self.multiline.sink(&mut self.assembler));
        self.multiline.flush_all(&mut self.assembler);
        match self.send_batch().await {
            Ok(()) | Err(StreamEnd::Cancelled) => Ok(0),
            Err(StreamEnd::RemovalCut { dropped }) => Ok(dropped),
            Err(_) => Err(Error::PipelineClosed),
        }
    }

    /// The container is removed and its task ends: counts and logs what was not delivered
    /// (`dropped` lines read, and, if `cut`, lines Docker may still have had).
    fn end_removed(&self, dropped: u64, cut: bool) {
        let info = self.env.shared.info();
        removal::report_loss(info.id.as_str(), &info.name, dropped, cut);
        info!(container_id = %info.id, name = %info.name, "container removed; log task completed");
        self.env.shared.mark_inactive();
    }

    async fn is_running(&self) -> Result<bool, bollard::errors::Error> {
        let inspect = self
            .env
            .docker
            .inspect_container(self.env.shared.id.as_str(), None::<InspectContainerOptions>);
        let response = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Ok(false),
            response = inspect => response?,
        };
        self.heartbeat.beat();
        let state = response.state.unwrap_or_default();
        self.env
            .shared
            .observe_finished_at(api_time_nanos(state.finished_at.as_deref()));
        Ok(state.running.unwrap_or(false))
    }

    /// Sleeps, beating; returns `true` if cancelled meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        self.heartbeat
            .sleep(delay, self.beat_every, &self.cancel)
            .await
    }

    /// Opens the stream from the read position and pumps it until it ends.
    async fn follow_once(&mut self, mode: Mode) -> StreamEnd {
        let resume = self.env.shared.read_positions();
        self.decoder.reset(resume);
        // Held events are before the read position too: they are read again and rebuilt.
        self.multiline.discard();
        let opened_at = unix_nanos();
        self.first_frame_at = None;
        self.assembler.discard();
        let tty = self.assembler.info.tty;
        let since = since_seconds(&resume, self.env.shared.read_through().sent(), tty);
        let query = LogsQuery {
            follow: mode == Mode::Follow,
            since,
            until: 0,
            tail: None,
            tty,
        };
        debug!(container_id = %self.env.shared.id, since, ?mode, "opening log stream");
        // The raw reader coalesces wake-ups itself (see `crate::coalesce`); bollard's stream
        // needs the pump to pause.
        let coalesce = self.env.settings.raw_endpoint.is_none();
        let stream = open_logs(&self.env, query);
        let mut end = self.pump(pin!(stream), tty, coalesce, mode).await;
        if matches!(
            end,
            StreamEnd::Eof { .. } | StreamEnd::Inactive | StreamEnd::Failed(_)
        ) && let Err(stop) = self.read_skipped(true).await
        {
            end = stop;
        }
        if mode == Mode::Follow {
            let read = self.env.shared.read_positions();
            let following = self.first_frame_at.unwrap_or(i64::MAX);
            self.served_to_end = self.env.shared.removal.died_before(opened_at)
                || read
                    .values()
                    .flatten()
                    .any(|position| position.timestamp_nanos > following);
        }
        end
    }

    /// When a removed container's drain ends (`None` before the removal is seen).
    fn drain_deadline(&self, removal_seen: bool) -> Option<Instant> {
        if !removal_seen {
            return None;
        }
        let removed_at = self.env.shared.removal.at()?;
        Some(
            self.progress
                .deadline(removed_at, self.env.settings.removed_drain),
        )
    }
}

/// The wall clock in unix nanoseconds (Docker's timestamps are on the same clock).
fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
        })
}

pub(crate) fn reconnected(reason: &'static str) {
    ::metrics::counter!(metric_names::STREAM_RECONNECTS_TOTAL, "reason" => reason).increment(1);
}

/// The `since` to ask Docker for: the whole second of the earliest point the container's
/// streams must be read from, which is a stream's cursor or, when every line up to it is known
/// to be read (see `read_through.rs`), the read-through time (0, everything, if a stream has
/// neither). bollard's typed options carry whole seconds; the decoder skips the lines of that
/// second that were already delivered.
pub(crate) fn since_seconds(
    resume: &StreamPositions,
    read_through_nanos: Option<i64>,
    tty: bool,
) -> i32 {
    let streams: &[LogStream] = if tty {
        &[LogStream::Tty]
    } else {
        &[LogStream::Stdout, LogStream::Stderr]
    };
    let mut earliest = i64::MAX;
    for stream in streams {
        let cursor = resume[*stream].map(|position| position.timestamp_nanos);
        match (cursor, read_through_nanos) {
            (Some(cursor), Some(through)) => earliest = earliest.min(cursor.max(through)),
            (Some(at), None) | (None, Some(at)) => earliest = earliest.min(at),
            (None, None) => return 0,
        }
    }
    let seconds = earliest.div_euclid(1_000_000_000);
    i32::try_from(seconds.max(0)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
