//! New filters from a configuration reload, applied by the discovery loop.
//!
//! - A monitored container the new filters reject is *released*: its task sends what it has,
//!   reads what Docker has without `follow` (everything written up to now) and completes
//!   (`stream/release.rs`). It stays here, its acknowledgements still moving its checkpoint,
//!   until its task has completed and its last batch is acknowledged (or
//!   `DESTROYED_CHECKPOINT_GRACE` after that, for a batch a sink dropped). Its checkpoint is
//!   kept, so a later start that includes it again resumes after its last line.
//! - A running container the new filters accept is monitored from the moment the filters
//!   changed (like `read_from = "end"`), or from its cursor when that is later: lines it wrote
//!   while the filters excluded it are not captured. SourceActor lists the running containers to
//!   find them (and inspects the unreadable ones again, whose listing follows the filters too).
//!   The same holds for every container the filters had rejected and accept later (a rename, a
//!   re-listing after Docker was unreachable during the reload).
//! - A released container the filters accept again before its task has completed is simply
//!   followed on by that task, from its read position: nothing is lost or doubled.
//!
//! The floor is the agent's clock at the reload against Docker's line timestamps, as for
//! `read_from = "end"`: with a remote daemon whose clock is off, lines near the moment may fall
//! on the other side.

use std::collections::{HashMap, HashSet};

use bollard::query_parameters::ListContainersOptions;
use capture_core::{ContainerId, ErrorChain, Position};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use super::{
    DESTROYED_CHECKPOINT_GRACE, Monitored, SourceActor, fully_acknowledged, listing::summary_info,
    unix_nanos,
};
use crate::{
    DockerConfig,
    checkpoint::{ContainerCheckpoint, StreamPositions},
    filter::ContainerFilter,
};

/// The discovery loop's state for reloads.
#[derive(Debug)]
pub(super) struct ReloadState {
    /// The live settings; the discovery loop applies every change.
    pub(super) settings_rx: watch::Receiver<DockerConfig>,
    /// Containers the filters released, until their task has completed and its last batch is
    /// acknowledged.
    released: HashMap<ContainerId, Released>,
    /// Containers the filters rejected when they were last looked at (and that exist).
    excluded: HashSet<ContainerId>,
    /// When a reload last changed the filters (unix nanoseconds): where a container they newly
    /// accept starts.
    filters_changed_at: Option<i64>,
    /// A listing after a filter change failed: retried on the next checkpoint tick.
    relist: bool,
}

/// A container the filters released.
#[derive(Debug)]
struct Released {
    monitored: Monitored,
    /// When its task was found ended.
    ended_at: Option<Instant>,
}

impl ReloadState {
    pub(super) fn new(settings_rx: watch::Receiver<DockerConfig>) -> ReloadState {
        ReloadState {
            settings_rx,
            released: HashMap::new(),
            excluded: HashSet::new(),
            filters_changed_at: None,
            relist: false,
        }
    }

    /// Whether a released container may still be acknowledged.
    pub(super) fn is_released(&self, id: &ContainerId) -> bool {
        self.released.contains_key(id)
    }

    /// Whether the filters rejected the container when it was last inspected.
    pub(super) fn is_excluded(&self, id: &ContainerId) -> bool {
        self.excluded.contains(id)
    }

    pub(super) fn released_ids(&self) -> impl Iterator<Item = &ContainerId> {
        self.released.keys()
    }

    pub(super) fn released_tasks(&self) -> impl Iterator<Item = &Monitored> {
        self.released.values().map(|released| &released.monitored)
    }

    /// The container is gone: forgets it, returning its released entry if it had one.
    pub(super) fn forget(&mut self, id: &ContainerId) -> Option<Monitored> {
        self.excluded.remove(id);
        self.released.remove(id).map(|released| released.monitored)
    }

    /// A re-listing found the containers that exist: forgets the others.
    pub(super) fn retain_existing(&mut self, existing: &HashSet<ContainerId>) {
        self.excluded.retain(|id| existing.contains(id));
    }
}

impl SourceActor<'_> {
    /// Applies new live settings: releases the containers the filters now reject and monitors
    /// the running ones they now accept.
    pub(super) async fn apply_settings(&mut self, next: DockerConfig) {
        let config = self.config.with_live_settings(&next);
        if config == self.config {
            return;
        }
        let filter = match ContainerFilter::new(&config) {
            Ok(filter) => filter,
            Err(error) => {
                // The reloader checks filters before sending them; this is a second line.
                warn!(error = %ErrorChain(&error), "ignoring new filters that do not compile");
                return;
            }
        };
        self.config = config;
        self.filter = filter;
        self.reload.filters_changed_at = Some(unix_nanos());
        info!("container filters reloaded");
        let unmatched: Vec<ContainerId> = self
            .containers
            .iter()
            .filter(|(_, monitored)| !self.filter.accepts(&monitored.shared.info()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in unmatched {
            self.release(&id);
        }
        self.monitor_newly_accepted().await;
    }

    /// Stops following a monitored container the filters no longer accept: its task reads what
    /// Docker has and completes.
    pub(super) fn release(&mut self, id: &ContainerId) {
        self.reload.excluded.insert(id.clone());
        let Some(monitored) = self.containers.remove(id) else {
            return;
        };
        self.pending_spawns.remove(id);
        let draining = monitored.shared.release();
        info!(
            container_id = %id,
            name = %monitored.shared.info().name,
            draining,
            "container no longer matches the filters; its log task reads what Docker has and completes"
        );
        let released = Released {
            monitored,
            ended_at: None,
        };
        self.reload.released.insert(id.clone(), released);
        self.update_gauge();
    }

    /// Takes back a released container whose task has not completed yet: it goes on following.
    pub(super) fn revive(&mut self, id: &ContainerId) -> Option<Monitored> {
        let released = self.reload.released.get(id)?;
        if !released.monitored.shared.revive() {
            // Completed: `reload_resume` starts a new task after it.
            return None;
        }
        self.reload.excluded.remove(id);
        let released = self.reload.released.remove(id)?;
        info!(container_id = %id, "container matches the filters again; its log task goes on following");
        Some(released.monitored)
    }

    /// Where a container the filters accept is read from, given its checkpoint entry or start-up
    /// decision: after what an earlier (released, completed) task of it read, and not before the
    /// filter change that made it match.
    pub(super) fn reload_start(
        &mut self,
        id: &ContainerId,
        mut start: ContainerCheckpoint,
    ) -> ContainerCheckpoint {
        let was_excluded = self.reload.excluded.remove(id);
        if let Some(released) = self.reload.released.remove(id) {
            let shared = &released.monitored.shared;
            raise(&mut start.streams, &shared.read_positions());
            raise_time(&mut start.read_through_nanos, shared.read_through().sent());
            self.supervisor.remove(&released.monitored.task_id);
        }
        if was_excluded && let Some(changed_at) = self.reload.filters_changed_at {
            let floor = changed_at.saturating_sub(1);
            raise(
                &mut start.streams,
                &[Some(Position::new(floor, u32::MAX)); 3].into(),
            );
            raise_time(&mut start.read_through_nanos, Some(floor));
        }
        start
    }

    /// Lists the running containers and inspects those that are not monitored, and the
    /// unreadable ones, so the new filters decide about them.
    async fn monitor_newly_accepted(&mut self) {
        let Some(docker) = self.docker.clone() else {
            // Not connected: the listing at the next connection applies the filters.
            return;
        };
        let options = ListContainersOptions {
            all: false,
            ..Default::default()
        };
        let listed = match docker.list_containers(Some(options)).await {
            Ok(listed) => listed,
            Err(error) => {
                warn!(error = %ErrorChain(&error), "cannot list containers after a filter change; will retry");
                self.reload.relist = true;
                return;
            }
        };
        self.reload.relist = false;
        let prefilter = self.filter.names_and_labels();
        let mut ids = Vec::new();
        for summary in listed {
            let Some(id) = summary
                .id
                .as_deref()
                .and_then(|id| ContainerId::new(id).ok())
            else {
                continue;
            };
            if self.containers.contains_key(&id) {
                continue;
            }
            let info = summary_info(id.clone(), &summary);
            if !prefilter.accepts(&info) {
                self.reload.excluded.insert(id);
                continue;
            }
            ids.push(id);
        }
        ids.extend(self.unreadable.ids());
        for id in ids {
            self.refresh(&id, false).await;
        }
        self.update_gauge();
    }

    /// On the checkpoint tick: forgets released containers that are done, retries a failed
    /// listing.
    pub(super) async fn reload_tick(&mut self) {
        self.settle_released();
        if self.reload.relist {
            self.monitor_newly_accepted().await;
        }
    }

    /// Forgets the released containers whose task has ended and whose last batch is
    /// acknowledged (or `DESTROYED_CHECKPOINT_GRACE` after the end, for batches a sink dropped).
    fn settle_released(&mut self) {
        let now = Instant::now();
        let (supervisor, checkpoints) = (&self.supervisor, &self.checkpoints);
        self.reload.released.retain(|id, released| {
            let monitored = &released.monitored;
            if monitored.shared.is_active() {
                return true;
            }
            // Not monitored any more: its ended task leaves `/health` (it is kept while the
            // supervisor has not recorded its end yet).
            if !supervisor.remove(&monitored.task_id)
                && supervisor.task(&monitored.task_id).is_some()
            {
                return true;
            }
            let ended = *released.ended_at.get_or_insert(now);
            let done = fully_acknowledged(&monitored.shared, checkpoints.get(id));
            !done && now.duration_since(ended) < DESTROYED_CHECKPOINT_GRACE
        });
    }
}

/// Raises a read-through time to at least `floor`.
fn raise_time(time: &mut Option<i64>, floor: Option<i64>) {
    if floor > *time {
        *time = floor;
    }
}

/// Raises each stream's position to at least `floor`'s.
fn raise(positions: &mut StreamPositions, floor: &StreamPositions) {
    for (position, floor) in positions.values_mut().zip(floor.values()) {
        if floor.is_some() && *position < *floor {
            *position = *floor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_keeps_the_later_position_of_each_stream() {
        let early = Some(Position::new(10, 0));
        let late = Some(Position::new(20, 3));
        let mut positions = StreamPositions::new([None, early, late]);
        raise(&mut positions, &[early, late, early].into());
        assert_eq!(positions.into_array(), [early, late, late]);
        raise(&mut positions, &StreamPositions::default());
        assert_eq!(
            positions.into_array(),
            [early, late, late],
            "no floor keeps the position"
        );
    }
}
