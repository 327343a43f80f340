//! [`DockerSource`]: discovery, the container tasks' life cycle, acknowledgements and
//! checkpoints.
//!
//! `run` connects (negotiating the API version), lists every container, then follows `/events`.
//! On any events error it reconnects with exponential backoff and lists again, so nothing that
//! happened meanwhile is missed; it also lists again every `relist_interval`, in case the events
//! connection went silent without failing (`source/listing.rs`). The first listing of a run
//! decides what to read of what happened while the agent was away (`startup.rs`). The same loop
//! consumes acknowledgements, records what the tasks read through and completed
//! (`source/progress.rs`), and saves the checkpoint file every `checkpoint_interval` (and at
//! least every few seconds while the daemon is seen, so the file's boundary keeps up). A
//! container whose log driver cannot be read by design gets no task: it is listed as unreadable
//! (`source/unreadable.rs`). New filters from a configuration reload are applied by the same
//! loop (`source/reload.rs`).

mod listing;
mod progress;
mod reload;
mod unreadable;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    models::{ContainerInspectResponse, EventMessage},
    query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions},
};
use capture_core::{
    Acknowledgement, Backoff, ContainerId, ContainerInfo, ErrorChain, EventBatch,
    status::{DockerSnapshot, DockerState, UnreadableContainer},
};
use futures_util::{Stream, StreamExt, future::join_all};
use task_supervisor::{RestartPolicy, Supervisor, TaskSpec};
use tokio::{
    runtime::Handle,
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::{reload::ReloadState, unreadable::UnreadableContainers};
use crate::{
    DockerConfig, Error, ReadMode, Result,
    checkpoint::{Checkpoints, ContainerCheckpoint, StreamPositions, write_atomically},
    client,
    error::docker_status,
    files::{follower::file_task, mode::FileMode, watch::Watcher},
    filter::{ContainerFilter, SelfContainer},
    log_driver, metric_names,
    multiline::MultilineRules,
    raw_logs::RawEndpoint,
    reload::SourceReloader,
    removal::{self, DrainBounds},
    startup::StartState,
    stream::{ContainerShared, StreamSettings, TaskEnv, container_task},
    timestamp::api_time_nanos,
    workers::{StreamWorkers, WorkerSlot},
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
        // File mode's change notifications: one inotify instance, read on this runtime.
        let (watcher, watch_loop) = match config.read_mode {
            ReadMode::Api => (Watcher::polling(), None),
            ReadMode::Auto | ReadMode::Files => Watcher::new(),
        };
        let watch_shutdown = CancellationToken::new();
        let mut watch_task = tokio::task::JoinSet::new();
        if let Some(watch_loop) = watch_loop {
            watch_task.spawn(watch_loop.run(watch_shutdown.clone()));
        }
        let mut discovery = Discovery {
            files: FileMode::new(config.read_mode, watcher),
            fatal: None,
            restart_policy: RestartPolicy {
                restart_on_error: true,
                restart_on_success: false,
                backoff_base: Duration::from_secs(1),
                backoff_cap: Duration::from_secs(30),
                jitter: 0.1,
                max_attempts: None,
            },
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
struct Discovery<'a> {
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

impl Discovery<'_> {
    async fn discover(
        &mut self,
        ack_rx: &mut mpsc::UnboundedReceiver<Acknowledgement>,
        shutdown: &CancellationToken,
    ) {
        let mut backoff = Backoff::new(RECONNECT_BACKOFF_BASE, RECONNECT_BACKOFF_CAP);
        let mut events: Option<EventStream> = None;
        let mut reconnect_at = Instant::now();
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut relist_tick = tokio::time::interval_at(
            Instant::now() + self.config.relist_interval,
            self.config.relist_interval,
        );
        relist_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut supervisor_rx = self.supervisor.subscribe();
        let mut settings_rx = self.reload.settings_rx.clone();
        let mut settings_open = true;
        let mut acks_open = true;
        loop {
            if events.is_none() && Instant::now() >= reconnect_at {
                let connected = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    connected = self.connect_and_list() => connected,
                };
                match connected {
                    Ok(stream) => {
                        events = Some(stream);
                        backoff.reset();
                        self.listed().await;
                        relist_tick.reset();
                    }
                    Err(error @ Error::FilesUnreadable { .. }) => {
                        tracing::error!(error = %ErrorChain(&error), "the Docker source cannot run");
                        self.fatal = Some(error);
                        return;
                    }
                    Err(error) => {
                        let delay = backoff.next_delay();
                        let error = ErrorChain(&error).to_string();
                        warn!(error = %error, retry_in = ?delay, "cannot reach Docker");
                        self.set_status(DockerState::Disconnected, Some(error));
                        reconnect_at = Instant::now() + delay;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Everything up to now was seen: the next start reads what comes after.
                    if events.is_some() {
                        self.see_daemon();
                    }
                    return;
                }
                ack = ack_rx.recv(), if acks_open => match ack {
                    Some(ack) => self.acknowledge(&ack),
                    None => {
                        warn!("the acknowledgement channel closed; cursors no longer move");
                        acks_open = false;
                    }
                },
                changed = settings_rx.changed(), if settings_open => match changed {
                    Ok(()) => {
                        let next = settings_rx.borrow_and_update().clone();
                        self.apply_settings(next).await;
                    }
                    Err(_) => settings_open = false,
                },
                _ = checkpoint_tick.tick() => self.checkpoint_tick(events.is_some()).await,
                _ = relist_tick.tick(), if events.is_some() => self.relist().await,
                changed = supervisor_rx.changed(), if !self.pending_spawns.is_empty() => {
                    if changed.is_ok() {
                        self.retry_spawns();
                    }
                }
                event = next_event(&mut events), if events.is_some() => match event {
                    Some(Ok(event)) => self.handle_event(event).await,
                    ended => {
                        let delay = backoff.next_delay();
                        let error = match ended {
                            Some(Err(error)) => ErrorChain(&error).to_string(),
                            _ => "the events stream ended".to_owned(),
                        };
                        warn!(error = %error, retry_in = ?delay, "lost the Docker events stream; reconnecting");
                        ::metrics::counter!(metric_names::DOCKER_RECONNECTS_TOTAL).increment(1);
                        self.set_status(DockerState::Disconnected, Some(error));
                        self.disconnected_at.get_or_insert_with(unix_seconds);
                        events = None;
                        reconnect_at = Instant::now() + delay;
                    }
                },
                _ = tokio::time::sleep_until(reconnect_at), if events.is_none() => {}
            }
        }
    }

    /// A listing succeeded: its decisions are saved at once, with the boundary.
    async fn listed(&mut self) {
        self.see_daemon();
        self.checkpoints.mark_dirty();
        self.save_checkpoints().await;
    }

    /// Every `checkpoint_interval`: retries, bookkeeping, and the checkpoint file's save (its
    /// boundary moves only while the events stream is `connected`).
    async fn checkpoint_tick(&mut self, connected: bool) {
        self.files.reap(&self.supervisor).await;
        self.reap_destroyed();
        self.retry_inspections().await;
        self.reload_tick().await;
        self.forget_acknowledged_destroyed(false);
        self.record_progress();
        if connected {
            self.see_daemon();
        }
        self.save_checkpoints().await;
    }

    fn set_status(&self, state: DockerState, error: Option<String>) {
        let api_version = self.docker.as_ref().map(client::version_string);
        self.status_tx.send_if_modified(|snapshot| {
            let changed = snapshot.state != state
                || snapshot.api_version != api_version
                || snapshot.last_error != error;
            if snapshot.state != state {
                snapshot.since = SystemTime::now();
            }
            snapshot.state = state;
            snapshot.api_version = api_version;
            snapshot.last_error = error;
            changed
        });
    }

    /// Connects (negotiating the API version), lists every container and reconciles, then
    /// returns the events stream, asked from a little before the listing.
    async fn connect_and_list(&mut self) -> Result<EventStream> {
        let docker = client::connect(&self.config, &self.host, API_DEFAULT_VERSION)?;
        let docker = docker.negotiate_version().await.map_err(|source| {
            client::first_request_error(
                &self.config,
                &self.host,
                "negotiate the API version",
                source,
            )
        })?;
        let since = unix_seconds() - EVENTS_OVERLAP_SECONDS;
        let listed = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|source| Error::Docker {
                operation: "list containers",
                source,
            })?;
        let first = !self.listed_once;
        if first {
            self.files.check_root(&docker).await?;
        }
        let version = client::version_string(&docker);
        self.docker = Some(docker.clone());
        self.set_status(DockerState::Connected, None);
        info!(host = %self.host, api_version = %version, containers = listed.len(), "connected to Docker");

        if first {
            self.list_at_start(listed).await;
        } else {
            // Containers created since a little before the connection was lost may have started
            // and stopped unseen.
            let unseen_since = self.disconnected_at.map(|at| at - EVENTS_OVERLAP_SECONDS);
            self.reconcile(listed, unseen_since, false).await;
        }
        self.disconnected_at = None;
        self.listed_once = true;
        self.listed_at = Some(since + EVENTS_OVERLAP_SECONDS);
        self.update_gauge();

        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                EVENT_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
            ),
        ]);
        let stream = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        }));
        Ok(Box::pin(stream))
    }

    async fn handle_event(&mut self, event: EventMessage) {
        let Some(actor) = event.actor else { return };
        let Some(id) = actor.id.as_deref().and_then(|id| ContainerId::new(id).ok()) else {
            return;
        };
        let action = event.action.unwrap_or_default();
        debug!(container_id = %id, action = %action, "docker event");
        match action.as_str() {
            "start" => {
                let known = self.containers.contains_key(&id) || self.destroyed.contains_key(&id);
                if !self.refresh(&id, true).await && !known {
                    self.removed_before_read(&id, actor.attributes.unwrap_or_default());
                }
            }
            "unpause" | "rename" => {
                self.refresh(&id, false).await;
            }
            "destroy" => self.forget(&id).await,
            // A stopping container's stream ends on its own; its task learns when it died, and
            // a file task looks at the container.
            "die" => {
                if let (Some(monitored), Some(nanos)) = (self.containers.get(&id), event.time_nano)
                {
                    monitored.shared.removal.set_died_at(nanos);
                }
                self.files.died(&id);
            }
            // A paused one is silent.
            _ => {}
        }
    }

    /// A container that started and was removed before the source could look at it (a short
    /// `--rm` job on a busy host): its logs are gone. If the filters would have taken it
    /// (judged on the event's name, image and labels), the loss is counted and logged.
    fn removed_before_read(&self, id: &ContainerId, attributes: HashMap<String, String>) {
        let mut info = ContainerInfo::new(
            id.clone(),
            attributes.get("name").cloned().unwrap_or_default(),
            attributes.get("image").cloned().unwrap_or_default(),
        );
        info.labels = attributes
            .into_iter()
            .filter(|(key, _)| key != "name" && key != "image")
            .collect();
        if !self.self_container.is(id.as_str()) && self.filter.accepts(&info) {
            removal::report_loss(id.as_str(), &info.name, 0, true);
        }
    }

    /// Inspects a container and monitors it (or stops monitoring it) accordingly.
    ///
    /// `started`: the container is known to have started since it was last read (a `start`
    /// event, or found stopped by a re-listing after it started while the source was not
    /// looking), so its task runs even if the container has already exited again: what it
    /// wrote is still to be read. Returns `false` if the container no longer exists.
    async fn refresh(&mut self, id: &ContainerId, started: bool) -> bool {
        let Some(docker) = self.docker.clone() else {
            return true;
        };
        let inspected = docker
            .inspect_container(id.as_str(), None::<InspectContainerOptions>)
            .await;
        match inspected {
            Ok(response) => {
                self.retry_inspect.remove(id);
                if let Some(unreadable) = log_driver::unreadable(&response) {
                    let info = container_info(id, response);
                    self.list_unreadable(info, unreadable).await;
                    return true;
                }
                let state = response.state.clone().unwrap_or_default();
                let running = state.running.unwrap_or(false);
                // A start seen late (events are asked from a little before the listing) of a
                // container whose run since was read to its end needs no task.
                let drained = self.checkpoints.entry(id).is_some_and(|entry| {
                    entry.drained_finished_at_nanos.is_some()
                        && entry.drained_finished_at_nanos
                            == api_time_nanos(state.finished_at.as_deref())
                });
                self.files.inspected(id, &response);
                let info = container_info(id, response);
                self.monitor(info, running || (started && !drained), None)
                    .await;
                if !running {
                    // A file follower of a stopped container reads what is written and
                    // completes, without waiting for a `die` event that came before it.
                    self.files.died(id);
                }
            }
            Err(error) if docker_status(&error) == Some(404) => {
                self.retry_inspect.remove(id);
                self.forget(id).await;
                return false;
            }
            Err(error) => {
                warn!(container_id = %id, error = %ErrorChain(&error), "cannot inspect container; will retry");
                self.retry_inspect.insert(id.clone());
            }
        }
        true
    }

    async fn retry_inspections(&mut self) {
        let ids: Vec<ContainerId> = self.retry_inspect.iter().cloned().collect();
        for id in ids {
            self.refresh(&id, false).await;
        }
        let ids: Vec<ContainerId> = self.retry_start.iter().cloned().collect();
        for id in ids {
            self.refresh_at_start(&id).await;
        }
    }

    /// Monitors a container that passes the filters and, if `running`, runs its task. A
    /// container seen for the first time starts from its checkpoint entry, else from `start`
    /// (the start-up decision), else from its first line; its entry is saved at once.
    async fn monitor(
        &mut self,
        info: ContainerInfo,
        running: bool,
        start: Option<ContainerCheckpoint>,
    ) {
        let id = info.id.clone();
        if self.self_container.is(id.as_str()) {
            debug!(container_id = %id, "not capturing the agent's own container");
            return;
        }
        if !self.filter.accepts(&info) {
            // Its task reads what Docker has and completes (`source/reload.rs`).
            self.release(&id);
            return;
        }
        if !self.containers.contains_key(&id)
            && let Some(monitored) = self.revive(&id)
        {
            self.containers.insert(id.clone(), monitored);
        }
        if !self.containers.contains_key(&id) {
            let start = self.checkpoints.entry(&id).or(start).unwrap_or_default();
            let start = self.reload_start(&id, start);
            self.checkpoints.monitor(&id, start);
            info!(container_id = %id, name = %info.name, image = %info.image, tty = info.tty, "monitoring container");
            let shared = ContainerShared::new(
                Arc::new(info.clone()),
                start.streams,
                start.read_through_nanos,
            );
            let monitored = Monitored {
                shared: Arc::new(shared),
                task_id: id.task_id(),
                slot: self.workers.assign(),
            };
            self.containers.insert(id.clone(), monitored);
        }
        let Some(monitored) = self.containers.get(&id) else {
            return;
        };
        if monitored.shared.set_info(info) {
            debug!(container_id = %id, "container metadata changed");
        }
        if running && monitored.shared.request_run() {
            self.spawn(&id);
        }
        self.update_gauge();
    }

    fn spawn(&mut self, id: &ContainerId) {
        let (Some(monitored), Some(docker), Some(batch_tx)) = (
            self.containers.get(id),
            self.docker.clone(),
            self.batch_tx.clone(),
        ) else {
            return;
        };
        let env = TaskEnv {
            shared: monitored.shared.clone(),
            docker,
            batch_tx,
            settings: self.settings.clone(),
        };
        let spec = TaskSpec::new(
            monitored.task_id.clone(),
            CONTAINER_TASK_KIND,
            monitored.shared.info().name.clone(),
        )
        .with_restart(self.restart_policy.clone())
        .on_runtime(monitored.slot.handle().clone());
        let spawned = match self.files.env_for(&env, self.checkpoints.file_hint(id)) {
            Some(file_env) => self.supervisor.spawn(spec.with_mode("files"), move |ctx| {
                file_task(ctx, file_env.clone())
            }),
            None => self.supervisor.spawn(spec.with_mode("api"), move |ctx| {
                container_task(ctx, env.clone())
            }),
        };
        match spawned {
            Ok(()) => {
                self.pending_spawns.remove(id);
                // It reads again: whatever it read to the end of before no longer holds.
                self.checkpoints.set_drained(id, None);
            }
            Err(task_supervisor::Error::AlreadyRunning(_)) => {
                // Its previous run decided to end but the supervisor has not recorded it yet:
                // retried on the supervisor's next state change.
                self.pending_spawns.insert(id.clone());
            }
            Err(error) => {
                debug!(container_id = %id, error = %ErrorChain(&error), "not starting a log task");
                monitored.shared.mark_inactive();
            }
        }
    }

    fn retry_spawns(&mut self) {
        let ids: Vec<ContainerId> = self.pending_spawns.drain().collect();
        for id in ids {
            self.spawn(&id);
        }
    }

    /// Stops monitoring a container that is gone. Its task is not stopped: it reads what Docker
    /// still serves (within the `removed_drain_*` bounds) and ends; it is then removed from the
    /// supervisor, and the checkpoint is dropped once its last batch is acknowledged.
    async fn forget(&mut self, id: &ContainerId) {
        self.unreadable.remove(id);
        self.pending_spawns.remove(id);
        self.retry_inspect.remove(id);
        let released = self.reload.forget(id);
        let Some(monitored) = self.containers.remove(id).or(released) else {
            if !self.destroyed.contains_key(id) && self.checkpoints.get(id).is_some() {
                self.checkpoints.remove(id);
            }
            return;
        };
        let active = monitored.shared.is_active();
        if self.files.removed(id, &monitored.task_id, active) {
            // A draining file task reads its open files to their end; the file mode removes it
            // from the supervisor once it ends.
            info!(container_id = %id, name = %monitored.shared.info().name, "container destroyed; its log task reads its open log files, then ends");
            monitored.shared.mark_inactive();
            let destroyed = Destroyed {
                monitored,
                reaped_at: Some(Instant::now()),
            };
            self.destroyed.insert(id.clone(), destroyed);
        } else {
            info!(
                container_id = %id,
                name = %monitored.shared.info().name,
                "container destroyed; its log task reads what Docker still serves, then ends"
            );
            monitored.shared.removal.mark();
            let destroyed = Destroyed {
                monitored,
                reaped_at: None,
            };
            self.destroyed.insert(id.clone(), destroyed);
            self.reap_destroyed();
        }
        self.update_gauge();
    }

    /// Removes the tasks of destroyed containers that have ended from the supervisor.
    fn reap_destroyed(&mut self) {
        for destroyed in self.destroyed.values_mut() {
            let monitored = &destroyed.monitored;
            if destroyed.reaped_at.is_none()
                && !monitored.shared.is_active()
                && (self.supervisor.remove(&monitored.task_id)
                    || self.supervisor.task(&monitored.task_id).is_none())
            {
                destroyed.reaped_at = Some(Instant::now());
            }
        }
    }

    /// Stops a container's task: the container still exists but is no longer wanted.
    async fn unmonitor(&mut self, monitored: Monitored) {
        self.files.forget(&monitored.shared.id);
        self.supervisor.stop(&monitored.task_id).await;
        self.supervisor.remove(&monitored.task_id);
        monitored.shared.mark_inactive();
        self.pending_spawns.remove(&monitored.shared.id);
        self.update_gauge();
    }

    /// The daemon is seen now: the checkpoint file's boundary may move here, unless a container
    /// is still waiting for its inspection (it is not monitored yet, so it has no entry).
    fn see_daemon(&mut self) {
        if self.retry_inspect.is_empty() && self.retry_start.is_empty() {
            self.checkpoints.see_daemon(unix_nanos());
        }
    }

    fn acknowledge(&mut self, ack: &Acknowledgement) {
        let id = &ack.container_id;
        if self.containers.contains_key(id)
            || self.destroyed.contains_key(id)
            || self.reload.is_released(id)
            || self.checkpoints.get(id).is_some()
        {
            self.checkpoints.acknowledge(ack);
            let acked = self.checkpoints.get(id).unwrap_or([None; 3]);
            if let Some(hint) = self.files.acknowledged(id, &acked) {
                self.checkpoints.set_file_hint(id, hint);
            }
        }
    }

    /// Drops the checkpoints of destroyed containers whose task has ended and whose last batch
    /// is acknowledged (or after a grace period: a batch a sink dropped is never acknowledged).
    fn forget_acknowledged_destroyed(&mut self, all: bool) {
        let checkpoints = &mut self.checkpoints;
        self.destroyed.retain(|id, destroyed| {
            let Some(reaped_at) = destroyed.reaped_at.or(all.then(Instant::now)) else {
                return true;
            };
            let done = fully_acknowledged(&destroyed.monitored.shared, checkpoints.get(id));
            if done || all || reaped_at.elapsed() >= DESTROYED_CHECKPOINT_GRACE {
                checkpoints.remove(id);
                false
            } else {
                true
            }
        });
    }

    async fn save_checkpoints(&mut self) {
        if !self.checkpoints.is_dirty() {
            return;
        }
        let (path, bytes) = self.checkpoints.snapshot();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(error = %ErrorChain(&error), "cannot save the checkpoints; will retry");
                self.checkpoints.mark_dirty();
            }
            Err(error) => {
                warn!(error = %ErrorChain(&error), "the checkpoint writer failed; will retry");
                self.checkpoints.mark_dirty();
            }
        }
    }

    fn update_gauge(&self) {
        let monitored = self
            .containers
            .values()
            .filter(|m| m.shared.is_active())
            .count();
        ::metrics::gauge!(metric_names::CONTAINERS_MONITORED).set(monitored as f64);
    }

    /// Stops every container task, drains the acknowledgements until the pipeline closes the
    /// channel, and saves the checkpoints.
    async fn shut_down(
        &mut self,
        ack_rx: &mut mpsc::UnboundedReceiver<Acknowledgement>,
    ) -> Result<()> {
        // Destroyed containers' tasks that still drain are stopped too.
        let monitored: Vec<&Monitored> = self
            .containers
            .values()
            .chain(self.destroyed.values().map(|d| &d.monitored))
            .chain(self.reload.released_tasks())
            .collect();
        // A draining file task is among the destroyed ones; listed again in case.
        let mut task_ids: Vec<String> = monitored
            .iter()
            .map(|m| m.task_id.clone())
            .chain(self.files.draining_task_ids().map(str::to_owned))
            .collect();
        task_ids.sort_unstable();
        task_ids.dedup();
        let supervisor = self.supervisor.clone();
        join_all(task_ids.iter().map(|id| supervisor.stop(id))).await;
        for monitored in monitored {
            self.supervisor.remove(&monitored.task_id);
            monitored.shared.mark_inactive();
        }
        self.update_gauge();
        // With every task stopped, this was the last sender the source holds: the pipeline sees
        // the channel close once it has drained it.
        self.batch_tx = None;
        info!(
            containers = task_ids.len(),
            "log tasks stopped; waiting for the pipeline's last acknowledgements"
        );
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ack = ack_rx.recv() => match ack {
                    Some(ack) => self.acknowledge(&ack),
                    None => break,
                },
                _ = checkpoint_tick.tick() => self.save_checkpoints().await,
            }
        }
        self.forget_acknowledged_destroyed(false);
        self.record_progress();
        if self.checkpoints.is_dirty() {
            let (path, bytes) = self.checkpoints.snapshot();
            tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                .await
                .map_err(|e| Error::Checkpoint {
                    path: self.checkpoints.path().to_owned(),
                    source: std::io::Error::other(e),
                })??;
        }
        info!("Docker source stopped; checkpoints saved");
        Ok(())
    }
}

async fn next_event(
    events: &mut Option<EventStream>,
) -> Option<Result<EventMessage, bollard::errors::Error>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

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
    let acked = acked.unwrap_or([None; 3]);
    read.iter()
        .zip(shared.initial_resume().iter())
        .zip(acked.iter())
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
