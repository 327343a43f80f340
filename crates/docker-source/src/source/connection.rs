//! The source's main loop: connect (negotiating the API version), list every container, follow
//! `/events`; on any events error reconnect with exponential backoff and list again. The same
//! loop consumes acknowledgements, reloads, the checkpoint and relist ticks, and retries spawns
//! the supervisor refused while a task's previous run was ending.

use std::{
    collections::HashMap,
    ops::ControlFlow,
    time::{Duration, SystemTime},
};

use bollard::{
    API_DEFAULT_VERSION,
    models::EventMessage,
    query_parameters::{EventsOptions, ListContainersOptions},
};
use capture_core::{Acknowledgement, Backoff, ErrorChain, status::DockerState};
use futures_util::StreamExt;
use tokio::{
    sync::mpsc,
    time::{Instant, Interval, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    EVENT_ACTIONS, EVENTS_OVERLAP_SECONDS, EventStream, RECONNECT_BACKOFF_BASE,
    RECONNECT_BACKOFF_CAP, SourceActor, unix_seconds,
};
use crate::{Error, Result, client, metric_names};

/// The events connection: the stream while connected, else when to try again.
struct Connection {
    events: Option<EventStream>,
    backoff: Backoff,
    reconnect_at: Instant,
}

impl Connection {
    fn new() -> Connection {
        Connection {
            events: None,
            backoff: Backoff::new(RECONNECT_BACKOFF_BASE, RECONNECT_BACKOFF_CAP),
            reconnect_at: Instant::now(),
        }
    }

    fn is_connected(&self) -> bool {
        self.events.is_some()
    }

    /// Not connected, and the backoff has passed.
    fn is_due(&self) -> bool {
        !self.is_connected() && Instant::now() >= self.reconnect_at
    }

    /// Lost (or never made): try again after the next backoff delay, returned.
    fn retry_later(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.events = None;
        self.reconnect_at = Instant::now() + delay;
        delay
    }
}

/// The loop's periodic work: the checkpoint tick and the re-listing.
struct Ticks {
    checkpoint: Interval,
    relist: Interval,
}

impl Ticks {
    fn new(checkpoint_every: Duration, relist_every: Duration) -> Ticks {
        let mut checkpoint = tokio::time::interval(checkpoint_every);
        checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut relist = tokio::time::interval_at(Instant::now() + relist_every, relist_every);
        relist.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ticks { checkpoint, relist }
    }
}

impl SourceActor<'_> {
    /// The loop, until `shutdown` (or a fatal error, left in `self.fatal`).
    pub(super) async fn discover(
        &mut self,
        ack_rx: &mut mpsc::UnboundedReceiver<Acknowledgement>,
        shutdown: &CancellationToken,
    ) {
        let mut connection = Connection::new();
        let mut ticks = Ticks::new(self.config.checkpoint_interval, self.config.relist_interval);
        let mut supervisor_rx = self.supervisor.subscribe();
        let mut settings_rx = self.reload.settings_rx.clone();
        let (mut settings_open, mut acks_open) = (true, true);
        loop {
            if connection.is_due() {
                let connected = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    connected = self.connect_and_list() => connected,
                };
                if self
                    .connected(connected, &mut connection, &mut ticks)
                    .await
                    .is_break()
                {
                    return;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    // Everything up to now was seen: the next start reads what comes after.
                    if connection.is_connected() {
                        self.see_daemon();
                    }
                    return;
                }
                ack = ack_rx.recv(), if acks_open => acks_open = self.on_ack(ack),
                changed = settings_rx.changed(), if settings_open => match changed {
                    Ok(()) => {
                        let next = settings_rx.borrow_and_update().clone();
                        self.apply_settings(next).await;
                    }
                    Err(_) => settings_open = false,
                },
                _ = ticks.checkpoint.tick() => self.checkpoint_tick(connection.is_connected()).await,
                _ = ticks.relist.tick(), if connection.is_connected() => self.relist().await,
                changed = supervisor_rx.changed(), if !self.pending_spawns.is_empty() => {
                    if changed.is_ok() {
                        self.retry_spawns();
                    }
                }
                event = next_event(&mut connection.events), if connection.is_connected() => {
                    match event {
                        Some(Ok(event)) => self.handle_event(event).await,
                        ended => self.events_lost(ended, &mut connection),
                    }
                }
                _ = tokio::time::sleep_until(connection.reconnect_at), if !connection.is_connected() => {}
            }
        }
    }

    /// The outcome of a connection attempt. `Break`: the source cannot run.
    async fn connected(
        &mut self,
        connected: Result<EventStream>,
        connection: &mut Connection,
        ticks: &mut Ticks,
    ) -> ControlFlow<()> {
        match connected {
            Ok(stream) => {
                connection.events = Some(stream);
                connection.backoff.reset();
                self.listed().await;
                ticks.relist.reset();
            }
            Err(error @ Error::FilesUnreadable { .. }) => {
                tracing::error!(error = %ErrorChain(&error), "the Docker source cannot run");
                self.fatal = Some(error);
                return ControlFlow::Break(());
            }
            Err(error) => {
                let delay = connection.retry_later();
                let error = ErrorChain(&error).to_string();
                warn!(error = %error, retry_in = ?delay, "cannot reach Docker");
                self.set_status(DockerState::Disconnected, Some(error));
            }
        }
        ControlFlow::Continue(())
    }

    /// An acknowledgement, or the channel's end. Returns whether the channel is still open.
    fn on_ack(&mut self, ack: Option<Acknowledgement>) -> bool {
        match ack {
            Some(ack) => {
                self.acknowledge(&ack);
                true
            }
            None => {
                warn!("the acknowledgement channel closed; cursors no longer move");
                false
            }
        }
    }

    /// The events stream failed or ended: reconnect (and list again) after a backoff.
    fn events_lost(
        &mut self,
        ended: Option<Result<EventMessage, bollard::errors::Error>>,
        connection: &mut Connection,
    ) {
        let delay = connection.retry_later();
        let error = match ended {
            Some(Err(error)) => ErrorChain(&error).to_string(),
            _ => "the events stream ended".to_owned(),
        };
        warn!(error = %error, retry_in = ?delay, "lost the Docker events stream; reconnecting");
        ::metrics::counter!(metric_names::DOCKER_RECONNECTS_TOTAL).increment(1);
        self.set_status(DockerState::Disconnected, Some(error));
        self.disconnected_at.get_or_insert_with(unix_seconds);
    }

    /// A listing succeeded: its decisions are saved at once, with the boundary.
    pub(super) async fn listed(&mut self) {
        self.see_daemon();
        self.checkpoints.mark_dirty();
        self.save_checkpoints().await;
    }

    pub(super) fn set_status(&self, state: DockerState, error: Option<String>) {
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
    pub(super) async fn connect_and_list(&mut self) -> Result<EventStream> {
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
            self.files.watch_root(&docker).await?;
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
}

async fn next_event(
    events: &mut Option<EventStream>,
) -> Option<Result<EventMessage, bollard::errors::Error>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}
