//! Docker's container events and inspections: a `start` (re)runs a task, `die` tells a file task
//! to look, `destroy` forgets the container; an inspection that fails is retried on the next
//! checkpoint tick.

use std::collections::HashMap;

use bollard::{models::EventMessage, query_parameters::InspectContainerOptions};
use capture_core::{ContainerId, ContainerInfo, ErrorChain};
use tracing::{debug, warn};

use super::{SourceActor, container_info};
use crate::{error::docker_status, log_driver, removal, timestamp::api_time_nanos};

impl SourceActor<'_> {
    pub(super) async fn handle_event(&mut self, event: EventMessage) {
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
                    let attributes = actor.attributes.unwrap_or_default();
                    self.removed_before_read(&id, attributes).await;
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
    /// `--rm` job on a busy host). If the filters would have taken it (judged on the event's
    /// name, image and labels), the log file the watcher opened when Docker created it is read
    /// to its end (`files/watch/early.rs`); without one, its logs are gone, and the loss is
    /// counted and logged.
    pub(super) async fn removed_before_read(
        &mut self,
        id: &ContainerId,
        attributes: HashMap<String, String>,
    ) {
        let mut info = ContainerInfo::new(
            id.clone(),
            attributes.get("name").cloned().unwrap_or_default(),
            attributes.get("image").cloned().unwrap_or_default(),
        );
        info.labels = attributes
            .into_iter()
            .filter(|(key, _)| key != "name" && key != "image")
            .collect();
        if self.self_container.is(id.as_str()) || !self.filter.accepts(&info) {
            self.files.release_early(id);
            return;
        }
        if self.files.removed_early(id) {
            debug!(container_id = %id, "container removed before it was inspected; reading the log file held since its creation");
            self.monitor(info, true, None).await;
            self.forget(id).await;
            return;
        }
        removal::report_loss(id.as_str(), &info.name, 0, true);
    }

    /// Inspects a container and monitors it (or stops monitoring it) accordingly.
    ///
    /// `started`: the container is known to have started since it was last read (a `start`
    /// event, or found stopped by a re-listing after it started while the source was not
    /// looking), so its task runs even if the container has already exited again: what it
    /// wrote is still to be read. Returns `false` if the container no longer exists.
    pub(super) async fn refresh(&mut self, id: &ContainerId, started: bool) -> bool {
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

    pub(super) async fn retry_inspections(&mut self) {
        let ids: Vec<ContainerId> = self.retry_inspect.iter().cloned().collect();
        for id in ids {
            self.refresh(&id, false).await;
        }
        let ids: Vec<ContainerId> = self.retry_start.iter().cloned().collect();
        for id in ids {
            self.refresh_at_start(&id).await;
        }
    }
}
