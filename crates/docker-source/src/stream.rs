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

mod release;
mod send;

pub(crate) use send::send_assembled;
use send::{Drain, send_assembled_within};

use std::{
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bollard::{
    Docker,
    container::LogOutput,
    query_parameters::{InspectContainerOptions, LogsOptions},
};
use capture_core::{Backoff, ContainerId, ContainerInfo, ErrorChain, EventBatch, LogStream};
use futures_util::{FutureExt, Stream, StreamExt, future::Either};
use task_supervisor::{Heartbeat, TaskContext, TaskError};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    Error,
    assembler::{Assembled, Assembler},
    checkpoint::StreamPositions,
    client,
    decoder::Decoder,
    error::{docker_status, is_permanent_status},
    liveness::{self, Freshness},
    metric_names,
    multiline::{Multiline, MultilineRules},
    output::{decode_output, record_cursor_gone, record_drops},
    raw_logs::{self, LogsRequest, RawEndpoint},
    read_through::ReadThrough,
    recovery,
    removal::{self, DrainBounds, Progress, Removal},
    timestamp::api_time_nanos,
};

/// A burst (what was ready without waiting) of at least this many frames means the stream is
/// busy: pause before polling again, so the next burst finds many frames in the socket buffer,
/// and keep filling the batch instead of sending it.
const COALESCE_MIN_FRAMES: usize = 64;
/// The same, in payload bytes.
const COALESCE_MIN_BYTES: usize = 16 * 1024;
/// The pause of a busy stream (a bounded added latency; hyper's body channel applies
/// backpressure meanwhile).
const COALESCE_PAUSE: Duration = Duration::from_millis(1);
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

/// What the source and a container's task share; outlives the task's attempts.
#[derive(Debug)]
pub(crate) struct ContainerShared {
    pub(crate) id: ContainerId,
    /// The current metadata: replaced (a new `Arc`) on rename. Batches started afterwards use it.
    info: Mutex<Arc<ContainerInfo>>,
    /// The last line sent into the pipeline, per stream: the resume point of an in-process
    /// reopen.
    read: Mutex<StreamPositions>,
    /// Where reading started (checkpoint or `read_from`): a stream whose read position is still
    /// this has sent nothing.
    initial_resume: StreamPositions,
    lifecycle: Mutex<Lifecycle>,
    /// Set when the container is removed: the task drains its stream, then ends.
    pub(crate) removal: Removal,
    /// Whether the filters released the container (a `watch`, so a following task wakes at
    /// once). Changed only under the `lifecycle` lock; see `stream/release.rs`.
    released_tx: watch::Sender<bool>,
    /// Through when every line, whatever its stream, was sent (see `read_through.rs`).
    read_through: Mutex<ReadThrough>,
    /// What the task saw of the container's stops (see [`Stops`]).
    stops: Mutex<Stops>,
}

/// The container's `State.FinishedAt` as the task saw it, in nanoseconds.
#[derive(Debug, Default, Clone, Copy)]
struct Stops {
    /// At the task's last inspection.
    observed: Option<i64>,
    /// When the task last completed: it read everything up to this stop.
    completed: Option<i64>,
}

/// Whether the container's task is meant to be running, and whether it was asked to look at the
/// container again before ending.
#[derive(Debug, Default)]
struct Lifecycle {
    active: bool,
    rerun: bool,
}

impl ContainerShared {
    pub(crate) fn new(
        info: Arc<ContainerInfo>,
        resume: StreamPositions,
        read_through_nanos: Option<i64>,
    ) -> ContainerShared {
        ContainerShared {
            id: info.id.clone(),
            info: Mutex::new(info),
            read: Mutex::new(resume),
            initial_resume: resume,
            lifecycle: Mutex::new(Lifecycle::default()),
            removal: Removal::default(),
            released_tx: watch::Sender::new(false),
            read_through: Mutex::new(ReadThrough::new(read_through_nanos)),
            stops: Mutex::new(Stops::default()),
        }
    }

    /// The read-through times (see `read_through.rs`).
    pub(crate) fn read_through(&self) -> ReadThrough {
        *self
            .read_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything decoded was sent and no partial line is held.
    pub(crate) fn caught_up(&self) {
        let read = self.read_positions();
        self.read_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .caught_up(&read);
    }

    /// The task inspected the container and saw this `State.FinishedAt`.
    pub(crate) fn observe_finished_at(&self, finished_at_nanos: Option<i64>) {
        self.stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observed = finished_at_nanos;
    }

    /// The `State.FinishedAt` of the stop the task last read to its end, if it completed since
    /// it was last started.
    pub(crate) fn completed_stop(&self) -> Option<i64> {
        self.stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .completed
    }

    pub(crate) fn info(&self) -> Arc<ContainerInfo> {
        self.info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the metadata if it changed; returns whether it did.
    pub(crate) fn set_info(&self, info: ContainerInfo) -> bool {
        let mut current = self.info.lock().unwrap_or_else(PoisonError::into_inner);
        if **current == info {
            return false;
        }
        *current = Arc::new(info);
        true
    }

    pub(crate) fn initial_resume(&self) -> &StreamPositions {
        &self.initial_resume
    }

    /// Whether the container's task is meant to be running.
    pub(crate) fn is_active(&self) -> bool {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .active
    }

    pub(crate) fn read_positions(&self) -> StreamPositions {
        *self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn advance_read(&self, sent: &StreamPositions) {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, sent) in read.iter_mut().zip(sent) {
            if let Some(sent) = sent
                && slot.is_none_or(|current| *sent > current)
            {
                *slot = Some(*sent);
            }
        }
    }

    /// The source asks for the container's logs to be followed (it started, or was found
    /// running). Returns `true` if the caller must spawn the task; `false` if the task is
    /// active and will look at the container again before it ends.
    pub(crate) fn request_run(&self) -> bool {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .completed = None;
        if lifecycle.active {
            lifecycle.rerun = true;
            false
        } else {
            lifecycle.active = true;
            lifecycle.rerun = false;
            true
        }
    }

    /// The task was stopped or removed by the source, or failed for good.
    pub(crate) fn mark_inactive(&self) {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        lifecycle.active = false;
        lifecycle.rerun = false;
    }

    pub(crate) fn mark_active(&self) {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .active = true;
    }

    /// The task wants to end: it may unless a run was requested since it last looked.
    pub(crate) fn try_finish(&self) -> bool {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if lifecycle.rerun {
            lifecycle.rerun = false;
            false
        } else {
            lifecycle.active = false;
            let mut stops = self.stops.lock().unwrap_or_else(PoisonError::into_inner);
            stops.completed = stops.observed;
            true
        }
    }
}

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
    /// Where log streams are read from directly ([`raw_logs`]); `None` (TLS): through bollard.
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
        let mut backoff = Backoff::new(REOPEN_BACKOFF_BASE, REOPEN_BACKOFF_CAP);
        let mut consecutive_errors = 0u32;
        let id = self.env.shared.id.clone();
        loop {
            let end = self.follow_once(mode).await;
            // Nothing read: reopening at once could spin.
            let unproductive = matches!(&end, StreamEnd::Eof { lines: 0 } | StreamEnd::Failed(_));
            match end {
                StreamEnd::Cancelled => return Ok(()),
                StreamEnd::PipelineClosed => return Err(Error::PipelineClosed),
                StreamEnd::RemovalCut { dropped } => {
                    self.end_removed(dropped, true);
                    return Ok(());
                }
                // The container is gone (404) or being removed (409: "dead or marked for
                // removal"): a normal end, after what it served was read. A follow stream
                // refused may have missed lines; a last read after the end did not.
                StreamEnd::Failed(error) if matches!(docker_status(&error), Some(404 | 409)) => {
                    debug!(container_id = %id, error = %ErrorChain(&error), "container removed");
                    let dropped = self.finish_lines().await?;
                    self.end_removed(dropped, mode == Mode::Follow || !self.served_to_end);
                    return Ok(());
                }
                StreamEnd::Released => {
                    mode = Mode::Drain;
                    continue;
                }
                StreamEnd::Inactive => {
                    debug!(container_id = %id, "log stream silent; reopening");
                    reconnected("inactivity");
                    continue;
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
                    consecutive_errors += 1;
                    if consecutive_errors > MAX_CONSECUTIVE_ERRORS {
                        return Err(Error::Docker {
                            operation: "follow container logs",
                            source: error,
                        });
                    }
                    warn!(container_id = %id, error = %ErrorChain(&error), "log stream failed; reopening");
                    reconnected("error");
                    if self.pause(backoff.next_delay()).await {
                        return Ok(());
                    }
                    continue;
                }
                StreamEnd::Eof { lines } => {
                    if lines > 0 {
                        backoff.reset();
                        consecutive_errors = 0;
                    }
                }
            }
            if mode == Mode::Drain && self.finish_release().await? {
                return Ok(());
            }
            // The stream ended: is the container still running?
            let running = match self.is_running().await {
                Ok(running) => running,
                Err(error) if docker_status(&error) == Some(404) => {
                    // Removed before the last read: complete if the stream served to the end.
                    let dropped = self.finish_lines().await?;
                    self.end_removed(dropped, !self.served_to_end);
                    return Ok(());
                }
                Err(error) => {
                    consecutive_errors += 1;
                    if consecutive_errors > MAX_CONSECUTIVE_ERRORS {
                        return Err(Error::Docker {
                            operation: "inspect container",
                            source: error,
                        });
                    }
                    warn!(container_id = %id, error = %ErrorChain(&error), "cannot inspect container; reopening its logs");
                    reconnected("error");
                    if self.pause(backoff.next_delay()).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            if running {
                reconnected("eof");
                if mode == Mode::Drain || unproductive {
                    // A stream that ends at once on a running container: do not spin.
                    if self.pause(backoff.next_delay()).await {
                        return Ok(());
                    }
                }
                mode = Mode::Follow;
                continue;
            }
            // Stopped: the pending partial line is complete, whatever comes later.
            let dropped = self.finish_lines().await?;
            if dropped > 0 {
                self.end_removed(dropped, true);
                return Ok(());
            }
            match mode {
                Mode::Follow => mode = Mode::Drain,
                Mode::Drain => {
                    if self.env.shared.try_finish() {
                        info!(container_id = %id, "container stopped; log task completed");
                        return Ok(());
                    }
                    // Started again meanwhile.
                    mode = Mode::Follow;
                }
            }
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
        let deadline = Instant::now() + delay;
        loop {
            self.heartbeat.beat();
            let wake = deadline.min(Instant::now() + self.beat_every);
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return true,
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
            }
        }
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
        let options = LogsOptions {
            follow: mode == Mode::Follow,
            stdout: true,
            stderr: true,
            since,
            until: 0,
            timestamps: true,
            tail: "all".to_owned(),
        };
        debug!(container_id = %self.env.shared.id, since, ?mode, "opening log stream");
        // The raw reader coalesces wake-ups itself (see `raw_logs`); bollard's stream needs the
        // pump to pause.
        let coalesce = self.env.settings.raw_endpoint.is_none();
        let stream = match &self.env.settings.raw_endpoint {
            Some(endpoint) => {
                let api_version = client::version_string(&self.env.docker);
                let request = LogsRequest {
                    api_version: &api_version,
                    container_id: self.env.shared.id.as_str(),
                    follow: options.follow,
                    since,
                    until: 0,
                    tail: None,
                    tty,
                };
                Either::Left(raw_logs::logs(
                    endpoint,
                    &request,
                    self.env.settings.request_timeout,
                ))
            }
            None => Either::Right(
                self.env
                    .docker
                    .logs(self.env.shared.id.as_str(), Some(options)),
            ),
        };
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
                    .iter()
                    .flatten()
                    .any(|position| position.timestamp_nanos > following);
        }
        end
    }

    async fn pump(
        &mut self,
        mut stream: std::pin::Pin<
            &mut impl Stream<Item = Result<LogOutput, bollard::errors::Error>>,
        >,
        tty: bool,
        coalesce: bool,
        mode: Mode,
    ) -> StreamEnd {
        let settings = self.env.settings.clone();
        let cancel = self.cancel.clone();
        let mut cancelled = pin!(cancel.cancelled());
        let removal = self.env.shared.removal.token();
        let mut removed = pin!(removal.cancelled());
        let mut removal_seen = false;
        let shared = self.env.shared.clone();
        let mut released = pin!(shared.released());
        // A drain reads up to now anyway: only a follow stream stops at a release.
        let watch_release = mode == Mode::Follow;
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        let mut last_frame = Instant::now();
        let opened_at = last_frame;
        // Whether any frame came: until then, the daemon may still be scanning the history.
        let mut framed = false;
        let mut batch_deadline: Option<Instant> = None;
        let mut partial_since: Option<Instant> = None;
        let mut lines: u64 = 0;
        // An item read after a coalescing pause, processed before waiting again.
        let mut carried = None;
        let mut last_burst_end = Instant::now();
        loop {
            let now = Instant::now();
            let mut deadline =
                (now + self.beat_every).min(last_frame + settings.inactivity_timeout);
            if let Some(batch) = batch_deadline {
                deadline = deadline.min(batch);
            }
            if let Some(partial) = partial_since {
                deadline = deadline.min(partial + settings.partial_flush_timeout);
            }
            if let Some(drain) = self.drain_deadline(removal_seen) {
                deadline = deadline.min(drain);
            }
            if let Some(event) = self.multiline.deadline() {
                deadline = deadline.min(event);
            }
            timer.as_mut().reset(deadline);
            let first = if let Some(item) = carried.take() {
                item
            } else {
                tokio::select! {
                biased;
                _ = &mut cancelled => return StreamEnd::Cancelled,
                _ = &mut removed, if !removal_seen => {
                    // The drain's bounds now apply.
                    removal_seen = true;
                    continue;
                }
                () = &mut released, if watch_release => {
                    // Complete lines go now; the drain reads the rest from the read position.
                    return match self.send_batch().await {
                        Ok(()) => StreamEnd::Released,
                        Err(end) => end,
                    };
                }
                item = stream.next() => item,
                _ = &mut timer => {
                    self.heartbeat.beat();
                    let now = Instant::now();
                    if partial_since.is_some_and(|since| now >= since + settings.partial_flush_timeout) {
                        self.decoder.flush_partials(&mut self.multiline.sink(&mut self.assembler));
                        partial_since = None;
                        // The head of the line goes out within the batch latency.
                        if !self.assembler.is_empty() && batch_deadline.is_none() {
                            batch_deadline = Some(now + settings.batch_max_latency);
                        }
                    }
                    if self.drain_deadline(removal_seen).is_some_and(|drain| now >= drain) {
                        // Removed, and nothing more came: send what can be sent (a line or an
                        // event held open included), then end.
                        self.decoder.flush_partials(&mut self.multiline.sink(&mut self.assembler));
                        self.multiline.flush_all(&mut self.assembler);
                        return match self.send_batch().await {
                            Ok(()) => StreamEnd::RemovalCut { dropped: 0 },
                            Err(end) => end,
                        };
                    }
                    // A held event whose stream went quiet: send it now.
                    let flushed = self.multiline.flush_expired(now, &mut self.assembler);
                    let inactive = now >= last_frame + settings.inactivity_timeout;
                    if inactive || flushed || batch_deadline.is_some_and(|batch| now >= batch) {
                        if let Err(end) = self.send_batch().await {
                            return end;
                        }
                        batch_deadline = None;
                    }
                    if inactive {
                        // A healthy follow stream is kept: reopening one costs the daemon a
                        // read of the whole log file (see `liveness.rs`).
                        let scanning = !framed && opened_at.elapsed() < HISTORY_SCAN_PATIENCE;
                        match self.keep_silent_stream(mode, tty, scanning).await {
                            Ok(true) => last_frame = Instant::now(),
                            Ok(false) => return StreamEnd::Inactive,
                            Err(end) => return end,
                        }
                    }
                    continue;
                }
                }
            };
            let burst_start = Instant::now();
            // Decode everything that is ready now (a burst), yielding only to hyper's connection
            // task; a full batch ends the burst so the timer and cancellation are looked at.
            let mut frames = 0usize;
            let mut bytes = 0usize;
            let mut next = first;
            let lines_before = self.assembler.pending_lines();
            // `Some(Ok(()))`: the stream ended; `Some(Err(_))`: it failed.
            let ended = loop {
                match next {
                    None => break Some(Ok(())),
                    Some(Err(error)) => break Some(Err(error)),
                    Some(Ok(output)) => {
                        frames += 1;
                        bytes += decode_output(
                            &mut self.decoder,
                            &mut self.multiline.sink(&mut self.assembler),
                            output,
                            tty,
                            &self.env.shared.id,
                        );
                    }
                }
                if self.assembler.is_full() {
                    break None;
                }
                match stream.next().now_or_never() {
                    Some(item) => next = item,
                    None => {
                        // hyper's connection task (on this thread) hands the body over one
                        // HTTP chunk per turn: let it run once before calling the stream idle.
                        yield_to_local_tasks().await;
                        match stream.next().now_or_never() {
                            Some(item) => next = item,
                            None => break None,
                        }
                    }
                }
            };
            lines += self.assembler.pending_lines().saturating_sub(lines_before) as u64;
            if let Some(ended) = ended {
                let end = match ended {
                    Ok(()) => StreamEnd::Eof { lines },
                    Err(error) => StreamEnd::Failed(error),
                };
                // Complete lines are sent before a reopen; partial ones are read again.
                return match self.send_batch().await {
                    Ok(()) => end,
                    Err(stop) => stop,
                };
            }
            self.heartbeat.beat();
            self.progress.made();
            self.first_frame_at.get_or_insert_with(unix_nanos);
            let now = Instant::now();
            last_frame = now;
            framed = true;
            partial_since = match (self.decoder.has_partial(), partial_since) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
                (false, _) => None,
            };
            // Busy: a big burst, or bursts following each other closer than the pause (a fast
            // writer whose frames hyper hands over one by one).
            let busy = frames >= COALESCE_MIN_FRAMES
                || bytes >= COALESCE_MIN_BYTES
                || burst_start.duration_since(last_burst_end) < COALESCE_PAUSE;
            last_burst_end = now;
            if self.assembler.is_full() || (!busy && !self.assembler.is_empty()) {
                // Full, or the stream went idle: send now (low latency at low rates).
                if let Err(end) = self.send_batch().await {
                    return end;
                }
                batch_deadline = None;
            } else if !self.assembler.is_empty() && batch_deadline.is_none() {
                batch_deadline = Some(now + settings.batch_max_latency);
            }
            if busy && coalesce {
                // Let the socket buffer fill: the next burst then carries many frames.
                tokio::select! {
                    biased;
                    _ = &mut cancelled => return StreamEnd::Cancelled,
                    _ = tokio::time::sleep(COALESCE_PAUSE) => {}
                }
                // Nothing came during the pause: the stream went idle, send what is waiting.
                carried = match stream.next().now_or_never() {
                    Some(item) => Some(item),
                    None => {
                        yield_to_local_tasks().await;
                        stream.next().now_or_never()
                    }
                };
                if carried.is_none() && !self.assembler.is_empty() {
                    if let Err(end) = self.send_batch().await {
                        return end;
                    }
                    batch_deadline = None;
                }
            }
        }
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

    /// Sends the assembled batches (if any), beating while the channel is full; then advances
    /// the read position. Then reads what Docker's follower skipped, if it switched files (see
    /// [`crate::recovery`]). Returns the stream end to report if they could not be sent.
    async fn send_batch(&mut self) -> Result<(), StreamEnd> {
        let counters = self.decoder.take_counters();
        record_drops(counters);
        record_cursor_gone(&self.env.shared, counters.cursor_gone);
        self.multiline.take_counters().record();
        while let Some(assembled) = self.assembler.take(&self.env.shared) {
            self.send_assembled(assembled).await?;
        }
        self.read_skipped(false).await?;
        // Nothing decoded is held back (a partial line, an open multiline event): every line
        // before the newest one sent was sent.
        if !self.decoder.has_partial() && !self.multiline.holds_lines() {
            self.env.shared.caught_up();
        }
        Ok(())
    }

    /// Reads back what Docker's follower skipped at the file switches found (see
    /// [`crate::recovery`]); `ended`: the stream ended, take every switch.
    async fn read_skipped(&mut self, ended: bool) -> Result<(), StreamEnd> {
        for switch in self.decoder.take_file_switches(ended) {
            let recovered =
                recovery::read_skipped(&self.env, &self.cancel, &mut self.assembler, switch).await;
            if recovered > 0 {
                while let Some(assembled) = self.assembler.take(&self.env.shared) {
                    self.send_assembled(assembled).await?;
                }
            }
        }
        Ok(())
    }

    /// Sends one batch; a removed container's drain bound gives it up (the lines it and the
    /// assembler hold are then counted as dropped).
    async fn send_assembled(&mut self, assembled: Assembled) -> Result<(), StreamEnd> {
        let drain = Drain {
            removal: &self.env.shared.removal,
            progress: self.progress,
            bounds: self.env.settings.removed_drain,
        };
        let sent = send_assembled_within(
            &self.env,
            &self.heartbeat,
            &self.cancel,
            self.beat_every,
            assembled,
            Some(drain),
        )
        .await;
        match sent {
            Err(StreamEnd::RemovalCut { dropped }) => {
                let dropped = dropped + self.assembler.pending_lines() as u64;
                self.assembler.discard();
                Err(StreamEnd::RemovalCut { dropped })
            }
            Err(end) => Err(end),
            Ok(()) => {
                self.progress.made();
                Ok(())
            }
        }
    }
}

/// Lets the other tasks queued on this thread (hyper's connection task) run once, then resumes.
///
/// Unlike `tokio::task::yield_now`, which defers the task until the runtime has polled its I/O
/// driver (an `epoll_wait` per call), waking itself puts the task straight back at the end of
/// the run queue: under load this is called per HTTP chunk, so the syscall mattered.
async fn yield_to_local_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
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
        let cursor = resume[stream.index()].map(|position| position.timestamp_nanos);
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
