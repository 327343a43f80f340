//! The container tasks' life cycle: monitoring a container that passes the filters, spawning
//! its task (file or API mode) on its worker, and forgetting it when it is destroyed (its task
//! drains what Docker still serves first).

use std::sync::Arc;

use capture_core::{ContainerId, ContainerInfo, ErrorChain};
use task_supervisor::TaskSpec;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{CONTAINER_TASK_KIND, Destroyed, Monitored, SourceActor};
use crate::{
    checkpoint::ContainerCheckpoint,
    files::follower::file_task,
    metric_names,
    stream::{ContainerShared, TaskEnv, container_task},
};

impl SourceActor<'_> {
    /// Monitors a container that passes the filters and, if `running`, runs its task. A
    /// container seen for the first time starts from its checkpoint entry, else from `start`
    /// (the start-up decision), else from its first line; its entry is saved at once.
    pub(super) async fn monitor(
        &mut self,
        info: ContainerInfo,
        running: bool,
        start: Option<ContainerCheckpoint>,
    ) {
        let id = info.id.clone();
        if self.self_container.is(id.as_str()) {
            debug!(container_id = %id, "not capturing the agent's own container");
            self.files.release_early(&id);
            return;
        }
        if !self.filter.accepts(&info) {
            self.files.release_early(&id);
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

    pub(super) fn spawn(&mut self, id: &ContainerId) {
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
            None => {
                self.files.release_early(id);
                self.supervisor.spawn(spec.with_mode("api"), move |ctx| {
                    container_task(ctx, env.clone())
                })
            }
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

    pub(super) fn retry_spawns(&mut self) {
        let ids: Vec<ContainerId> = self.pending_spawns.drain().collect();
        for id in ids {
            self.spawn(&id);
        }
    }

    /// Stops monitoring a container that is gone. Its task is not stopped: it reads what Docker
    /// still serves (within the `removed_drain_*` bounds) and ends; it is then removed from the
    /// supervisor, and the checkpoint is dropped once its last batch is acknowledged.
    pub(super) async fn forget(&mut self, id: &ContainerId) {
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
    pub(super) fn reap_destroyed(&mut self) {
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
    pub(super) async fn unmonitor(&mut self, monitored: Monitored) {
        self.files.forget(&monitored.shared.id);
        self.supervisor.stop(&monitored.task_id).await;
        self.supervisor.remove(&monitored.task_id);
        monitored.shared.mark_inactive();
        self.pending_spawns.remove(&monitored.shared.id);
        self.update_gauge();
    }

    pub(super) fn update_gauge(&self) {
        let monitored = self
            .containers
            .values()
            .filter(|m| m.shared.is_active())
            .count();
        ::metrics::gauge!(metric_names::CONTAINERS_MONITORED).set(monitored as f64);
    }
}
