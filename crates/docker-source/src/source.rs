//! [`DockerSource`]: the source actor (`SourceActor`): discovery, the container tasks' life
//! cycle, acknowledgements and checkpoints, in one loop that owns all of that state.
//!
//! - `source/connection.rs`: the loop. It connects (negotiating the API version), lists every
//!   container, then follows `/events`; on any events error it reconnects with exponential
//!   backoff and lists again, so nothing that happened meanwhile is missed.
//! - `source/listing.rs`: the listings. The first of a run decides what to read of what
//!   happened while the agent was away (`startup.rs`); one every `relist_interval` catches what
//!   a silent events connection hid (a start, a stop, a removal).
//! - `source/events.rs`: one event or inspection at a time.
//! - `source/tasks.rs`: monitoring a container, spawning its task, forgetting it.
//! - `source/checkpoints.rs`, `source/progress.rs`: acknowledgements move the cursors; what the
//!   tasks read through and completed is recorded once acknowledged; the checkpoint file is
//!   saved every `checkpoint_interval` (and at least every few seconds while the daemon is seen,
//!   so the file's boundary keeps up).
//! - `source/unreadable.rs`: a container whose log driver cannot be read by design gets no
//!   task; it is listed as unreadable.
//! - `source/reload.rs`: new filters from a configuration reload.
//! - `source/shutdown.rs`: stop the tasks, drain the last acknowledgements, save.

mod checkpoints;
mod connection;
mod events;
mod listing;
mod progress;
mod reload;
mod shutdown;
mod tasks;
mod unreadable;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bollard::{
    Docker,
    models::{ContainerInspectResponse, EventMessage},
};
use capture_core::{
    Acknowledgement, ContainerId, ContainerInfo, EventBatch,
    status::{DockerSnapshot, UnreadableContainer},
};
use futures_util::Stream;
use task_supervisor::{RestartPolicy, Supervisor};
use tokio::{
    runtime::Handle,
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::{reload::ReloadState, unreadable::UnreadableContainers};
use crate::{
    DockerConfig, Error, ReadMode, Result,
    checkpoint::{Checkpoints, StreamPositions},
    client,
    files::{mode::FileMode, watch::Watcher},
    filter::{ContainerFilter, SelfContainer},
    metric_names,
    multiline::MultilineRules,
    raw_logs::RawEndpoint,
    reload::SourceReloader,
    removal::DrainBounds,
    startup::StartState,
    stream::{ContainerShared, StreamSettings},
    workers::{StreamWorkers, WorkerSlot},
};

/// How the supervisor restarts a container task that failed (one that finished is not).
const CONTAINER_RESTART_POLICY: RestartPolicy = RestartPolicy {
    restart_on_error: true,
    restart_on_success: false,
    backoff_base: Duration::from_secs(1),
    backoff_cap: Duration::from_secs(30),
    jitter: 0.1,
    max_attempts: None,
};

/// The supervisor task type of container tasks.
pub const CONTAINER_TASK_KIND: &str = "container";

/// Reconnection backoff of the discovery connection.
const RECONNECT_BACKOFF_BASE: Duration = Duration::from_millis(250);
const RECONNECT_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Events are asked for from a little before the listing, so none falls between the two
/// (replayed ones are harmless: handling an event twice changes nothing).
const EVENTS_OVERLAP_SECONDS: i64 = 5;

/// A destroyed container's checkpoint is kept until its last batch is acknowledged, or this long.
const DESTROYED_CHECKPOINT_GRACE: Duration = Duration::from_secs(60);

/// The `/events` actions the source acts on.
const EVENT_ACTIONS: [&str; 6] = ["start", "die", "destroy", "rename", "pause", "unpause"];

/// Captures the logs of Docker containers (see the crate documentation).
#[derive(Debug)]
pub struct DockerSource {
    config: DockerConfig,
    host: String,
    filter: ContainerFilter,
    checkpoints: Checkpoints,
    /// Owned: joined at the end of [`DockerSource::run`] (or when the source is dropped).
    workers: StreamWorkers,
    status_tx: watch::Sender<DockerSnapshot>,
    unreadable: UnreadableContainers,
    settings: Arc<StreamSettings>,
    self_container: SelfContainer,
    /// The agent's start, the `read_from = "end"` boundary.
    started_at_nanos: i64,
    /// The live settings a reload changes ([`DockerSource::reloader`]); read by `run`.
    settings_tx: watch::Sender<DockerConfig>,
}

impl DockerSource {
    /// Builds the source: compiles the filters, loads the checkpoints under `data_dir` (a
    /// corrupt file is set aside with a warning) and starts the stream-worker threads. No I/O to
    /// Docker happens before [`DockerSource::run`].
    pub fn new(config: DockerConfig, data_dir: &Path) -> Result<DockerSource> {
        let filter = ContainerFilter::new(&config)?;
        let host = client::effective_host(&config);
        let endpoint = client::Endpoint::parse(&host)?;
        let checkpoints = Checkpoints::load(data_dir);
        let workers = StreamWorkers::start(config.stream_threads.max(1))?;
        let started_at_nanos = unix_nanos();
        let multiline = Arc::new(MultilineRules::new(
            &config.multiline,
            config.inactivity_timeout,
        )?);
        let settings = Arc::new(StreamSettings {
            inactivity_timeout: config.inactivity_timeout,
            partial_flush_timeout: config.partial_flush_timeout,
            max_line_bytes: config.max_line_bytes,
            batch_max_lines: config.batch_max_lines.max(1),
            batch_max_bytes: config.batch_max_bytes.max(1),
            batch_max_latency: config.batch_max_latency,
            request_timeout: config.request_timeout,
            raw_endpoint: RawEndpoint::new(&endpoint),
            replay_through: started_at_nanos,
            removed_drain: DrainBounds {
                idle: config.removed_drain_timeout,
                max: config.removed_drain_max,
            },
            multiline,
        });
        let self_container = SelfContainer::detect();
        if let Some(id) = self_container.describe() {
            info!(container_id = %id, "running in a container; its own logs are not captured");
        }
        let (status_tx, _) = watch::channel(DockerSnapshot::default());
        Ok(DockerSource {
            settings_tx: watch::Sender::new(config.clone()),
            config,
            host,
            filter,
            checkpoints,
            workers,
            status_tx,
            unreadable: UnreadableContainers::default(),
            settings,
            self_container,
            started_at_nanos,
        })
    }

    /// The Docker connection's state, for `/health` and readiness.
    pub fn status(&self) -> watch::Receiver<DockerSnapshot> {
        self.status_tx.subscribe()
    }

    /// The containers whose logs cannot be read by design (log driver `none`, or a driver that
    /// only sends with Docker's dual logging off), for `/health`. They have no task.
    pub fn unreadable(&self) -> watch::Receiver<Vec<UnreadableContainer>> {
        self.unreadable.subscribe()
    }

    /// The handle a configuration reload uses to change the filters of the running source
    /// ([`DockerConfig::LIVE_KEYS`]).
    pub fn reloader(&self) -> SourceReloader {
        SourceReloader {
            settings_tx: self.settings_tx.clone(),
        }
    }

    /// The stream workers' runtimes (for runtime metrics such as `tokio_alive_tasks`).
    pub fn runtime_handles(&self) -> Vec<Handle> {
        self.workers.handles()
    }

    /// Runs until `shutdown`: discovers containers, runs one supervised task per container,
    /// sends their batches on `batch_tx` and moves the cursors on `ack_rx`.
    ///
    /// After `shutdown` it stops its container tasks (dropping their `batch_tx` clones, and its
    /// own), keeps consuming `ack_rx` until the pipeline closes it, saves the checkpoints one
    /// last time and joins its worker threads. It returns an error only if that final save fails:
    /// Docker failures are retried, never fatal.
    pub async fn run(
        self,
        supervisor: Supervisor,
        batch_tx: mpsc::Sender<EventBatch>,
        mut ack_rx: mpsc::UnboundedReceiver<Acknowledgement>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let DockerSource {
            config,
            host,
            filter,
            checkpoints,
            mut workers,
            status_tx,
            unreadable,
            settings,
            self_container,
            started_at_nanos,
            settings_tx,
        } = self;
        metric_names::publish_zeroes();
        let start_state = StartState::new(&checkpoints, config.read_from, started_at_nanos);
        let (watcher, mut watch_task, watch_shutdown) = start_watcher(config.read_mode);
        let mut discovery = SourceActor {
            files: FileMode::new(config.read_mode, watcher),
            fatal: None,
            restart_policy: CONTAINER_RESTART_POLICY,
            config,
            host,
            filter,
            checkpoints,
            workers: &workers,
            status_tx,
            unreadable,
            settings,
            self_container,
            start_state,
            supervisor,
            batch_tx: Some(batch_tx),
            docker: None,
            containers: HashMap::new(),
            destroyed: HashMap::new(),
            pending_spawns: HashSet::new(),
            retry_inspect: HashSet::new(),
            retry_start: HashSet::new(),
            listed_once: false,
            disconnected_at: None,
            reload: ReloadState::new(settings_tx.subscribe()),
            listed_at: None,
        };
        discovery.discover(&mut ack_rx, &shutdown).await;
        let result = discovery.shut_down(&mut ack_rx).await;
        let fatal = discovery.fatal.take();
        drop(discovery);
        watch_shutdown.cancel();
        while watch_task.join_next().await.is_some() {}
        // Joining is quick (the runtimes only wait for the stop token) but blocking.
        let joined = tokio::task::spawn_blocking(move || workers.shutdown()).await;
        if joined.is_err() {
            warn!("joining the stream worker threads failed");
        }
        match fatal {
            Some(error) => Err(error),
            None => result,
        }
    }
}

/// File mode's change notifications: one inotify instance (none in API mode), read on this
/// runtime until the returned token is cancelled.
fn start_watcher(read_mode: ReadMode) -> (Watcher, JoinSet<()>, CancellationToken) {
    let (watcher, watch_loop) = match read_mode {
        ReadMode::Api => (Watcher::polling(), None),
        ReadMode::Auto | ReadMode::Files => Watcher::new(),
    };
    let shutdown = CancellationToken::new();
    let mut task = JoinSet::new();
    if let Some(watch_loop) = watch_loop {
        task.spawn(watch_loop.run(shutdown.clone()));
    }
    (watcher, task, shutdown)
}

/// A container the source monitors (it passed the filters).
#[derive(Debug)]
struct Monitored {
    shared: Arc<ContainerShared>,
    task_id: String,
    /// The worker its task runs on, for its whole life (freed when dropped).
    slot: WorkerSlot,
}

/// A destroyed container, kept while its task drains and its last batches are acknowledged.
#[derive(Debug)]
struct Destroyed {
    monitored: Monitored,
    /// When its task was found ended and removed from the supervisor.
    reaped_at: Option<Instant>,
}

/// The discovery loop's state.
struct SourceActor<'a> {
    config: DockerConfig,
    host: String,
    filter: ContainerFilter,
    checkpoints: Checkpoints,
    workers: &'a StreamWorkers,
    status_tx: watch::Sender<DockerSnapshot>,
    /// Containers that are not monitored because their logs cannot be read by design.
    unreadable: UnreadableContainers,
    settings: Arc<StreamSettings>,
    self_container: SelfContainer,
    /// What the agent knew of its past at start: decides the first listing (`startup.rs`).
    start_state: StartState,
    supervisor: Supervisor,
    restart_policy: RestartPolicy,
    /// The source's own sender; `None` once shutdown began (tasks hold clones while they run).
    batch_tx: Option<mpsc::Sender<EventBatch>>,
    docker: Option<Docker>,
    containers: HashMap<ContainerId, Monitored>,
    /// Destroyed containers: their tasks drain what Docker still serves, then their last
    /// batches may still be acknowledged.
    destroyed: HashMap<ContainerId, Destroyed>,
    /// Containers whose task could not be spawned yet (its previous run was still ending).
    pending_spawns: HashSet<ContainerId>,
    /// Containers whose inspection failed; retried on the next checkpoint tick.
    retry_inspect: HashSet<ContainerId>,
    /// The same, for containers of the first listing (retried with the start-up decision).
    retry_start: HashSet<ContainerId>,
    /// Whether a listing succeeded: the first one decides from the saved state.
    listed_once: bool,
    /// When the events stream was lost (unix seconds), until the next listing.
    disconnected_at: Option<i64>,
    /// When the last listing was asked for (unix seconds).
    listed_at: Option<i64>,
    /// File mode: which containers are read from files, their cursors and signals.
    files: FileMode,
    /// An error that ends the source (file mode cannot read Docker's directory).
    fatal: Option<Error>,
    /// New filters from reloads, and the containers they released.
    reload: ReloadState,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, bollard::errors::Error>> + Send>>;

fn container_info(id: &ContainerId, response: ContainerInspectResponse) -> ContainerInfo {
    let config = response.config.unwrap_or_default();
    let image = config.image.or(response.image).unwrap_or_default();
    let mut info = ContainerInfo::new(id.clone(), response.name.unwrap_or_default(), image);
    info.labels = config.labels.unwrap_or_default().into_iter().collect();
    info.tty = config.tty.unwrap_or(false);
    info
}

/// Whether everything a container's task sent has been acknowledged (`acked`: its checkpoint).
fn fully_acknowledged(shared: &ContainerShared, acked: Option<StreamPositions>) -> bool {
    let read = shared.read_positions();
    let acked = acked.unwrap_or_default();
    read.values()
        .zip(shared.initial_resume().values())
        .zip(acked.values())
        .all(|((read, initial), acked)| read == initial || acked >= read)
}

fn unix_nanos() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(i64::MAX)
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
