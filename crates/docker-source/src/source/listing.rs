//! The source's listings of every container: the first one of a run, which decides what to read
//! of what happened while the agent was away (`startup.rs`); the one after each reconnection of
//! the events stream; and the periodic one, which makes up for an events connection that went
//! silent without failing (a half-open TCP connection, a daemon that stopped sending).
//!
//! Every listing also forgets what no longer exists: monitored and released containers, the
//! unreadable list, the reload's record of excluded containers, and (first listing) the
//! checkpoint entries of containers destroyed while the agent was away.

use std::collections::HashSet;

use bollard::{
    models::{ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum},
    query_parameters::{InspectContainerOptions, ListContainersOptions},
};
use capture_core::{ContainerId, ContainerInfo, ErrorChain, status::TaskState};
use tracing::{debug, info, warn};

use super::{EVENTS_OVERLAP_SECONDS, SourceActor, container_info, unix_seconds};
use crate::{
    error::docker_status,
    filter::ContainerFilter,
    log_driver,
    startup::{Observed, StartPlan, plan},
    timestamp::api_time_nanos,
};

/// A listed container, as far as the listing tells.
struct Listed {
    id: ContainerId,
    running: bool,
    /// Unix seconds.
    created: i64,
    /// Name, image and labels from the listing (enough for the name and label filters).
    info: ContainerInfo,
}

fn listed(summaries: Vec<ContainerSummary>) -> Vec<Listed> {
    summaries
        .into_iter()
        .filter_map(|summary| {
            let id = ContainerId::new(summary.id.as_deref()?).ok()?;
            Some(Listed {
                running: summary.state == Some(ContainerSummaryStateEnum::RUNNING),
                created: summary.created.unwrap_or(0),
                info: summary_info(id.clone(), &summary),
                id,
            })
        })
        .collect()
}

/// What a listing says about a container: name, image (not trusted for the filters, see
/// [`ContainerFilter::names_and_labels`]) and labels.
pub(super) fn summary_info(id: ContainerId, summary: &ContainerSummary) -> ContainerInfo {
    let name = summary
        .names
        .as_ref()
        .and_then(|names| names.first())
        .cloned()
        .unwrap_or_default();
    let mut info = ContainerInfo::new(id, name, summary.image.clone().unwrap_or_default());
    info.labels = summary
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    info
}

/// What an inspection says about a container's life, in nanoseconds since the epoch.
fn observed(response: &ContainerInspectResponse) -> Observed {
    let state = response.state.clone().unwrap_or_default();
    Observed {
        running: state.running.unwrap_or(false),
        created_nanos: api_time_nanos(response.created.as_deref()),
        started_nanos: api_time_nanos(state.started_at.as_deref()),
        finished_nanos: api_time_nanos(state.finished_at.as_deref()),
    }
}

impl SourceActor<'_> {
    /// Whether a listed container may be captured at all (the agent itself, the name and label
    /// filters; the image filters are checked after the inspection).
    fn wanted(&self, prefilter: &ContainerFilter, listed: &Listed) -> bool {
        !self.self_container.is(listed.id.as_str()) && prefilter.accepts(&listed.info)
    }

    /// Forgets what the listing no longer shows.
    async fn forget_missing(&mut self, existing: &HashSet<ContainerId>) {
        // Containers destroyed while the source was not looking.
        let gone: Vec<ContainerId> = self
            .containers
            .keys()
            .chain(self.reload.released_ids())
            .filter(|id| !existing.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id).await;
        }
        self.unreadable.retain(|id| existing.contains(id));
        self.reload.retain_existing(existing);
    }

    /// The first listing of the run: drops the entries of containers that no longer exist,
    /// then decides for every other container what to read (see `startup.rs`).
    pub(super) async fn list_at_start(&mut self, summaries: Vec<ContainerSummary>) {
        let listed = listed(summaries);
        let existing: HashSet<ContainerId> = listed.iter().map(|l| l.id.clone()).collect();
        self.forget_missing(&existing).await;
        let stale: Vec<ContainerId> = self
            .checkpoints
            .containers()
            .filter(|id| !existing.contains(*id))
            .cloned()
            .collect();
        for id in stale {
            debug!(container_id = %id, "dropping the checkpoint of a container that no longer exists");
            self.checkpoints.remove(&id);
        }
        let prefilter = self.filter.names_and_labels();
        for container in &listed {
            // A stopped container matters only if it has an entry or, after downtime, if it
            // may have run meanwhile; the filters are checked again after the inspection.
            let consider = container.running
                || self.checkpoints.entry(&container.id).is_some()
                || (!self.start_state.first_start && self.wanted(&prefilter, container));
            if consider {
                self.refresh_at_start(&container.id).await;
            }
        }
    }

    /// Inspects a container of the first listing and monitors it as `startup::plan` decides.
    pub(super) async fn refresh_at_start(&mut self, id: &ContainerId) {
        let Some(docker) = self.docker.clone() else {
            return;
        };
        let response = match docker
            .inspect_container(id.as_str(), None::<InspectContainerOptions>)
            .await
        {
            Ok(response) => response,
            Err(error) if docker_status(&error) == Some(404) => {
                self.retry_start.remove(id);
                return;
            }
            Err(error) => {
                warn!(container_id = %id, error = %ErrorChain(&error), "cannot inspect container; will retry");
                self.retry_start.insert(id.clone());
                return;
            }
        };
        self.retry_start.remove(id);
        if let Some(unreadable) = log_driver::unreadable(&response) {
            self.list_unreadable(container_info(id, response), unreadable)
                .await;
            return;
        }
        let observed = observed(&response);
        self.files.inspected(id, &response);
        let info = container_info(id, response);
        if self.self_container.is(id.as_str()) {
            return;
        }
        if !self.filter.accepts(&info) {
            // Recorded as excluded: a reload that accepts it reads it from that moment.
            self.release(id);
            return;
        }
        match plan(&self.start_state, self.checkpoints.entry(id), &observed) {
            StartPlan::Read { start, why } => {
                if observed.running {
                    debug!(container_id = %id, name = %info.name, reason = why, "following container");
                } else {
                    info!(container_id = %id, name = %info.name, reason = why, "reading what a stopped container wrote while the agent was away");
                }
                self.monitor(info, true, Some(start)).await;
                if !observed.running {
                    // A file follower reads what is written and completes at once.
                    self.files.died(id);
                }
            }
            StartPlan::Skip { why } => {
                debug!(container_id = %id, name = %info.name, reason = why, "nothing to read");
            }
        }
    }

    /// A listing after the first: forgets containers that are gone and looks again at those the
    /// events stream may not have told about. After a reconnection (`periodic` false) every
    /// running container is inspected again (renames, restarts) and every stopped container the
    /// source knows is read to its end; the periodic listing only looks at what it does not
    /// know (a running container without an active task, a stopped one created since the last
    /// listing), so it costs one list request when nothing was missed.
    pub(super) async fn reconcile(
        &mut self,
        summaries: Vec<ContainerSummary>,
        unseen_since: Option<i64>,
        periodic: bool,
    ) {
        let listed = listed(summaries);
        let existing: HashSet<ContainerId> = listed.iter().map(|l| l.id.clone()).collect();
        self.forget_missing(&existing).await;
        let prefilter = self.filter.names_and_labels();
        let mut running = Vec::new();
        let mut stopped = Vec::new();
        for container in &listed {
            let known = self.containers.get(&container.id);
            // Unreadable by design (its log driver cannot change) or rejected by the filters
            // when last inspected: nothing for a periodic listing to look at again.
            let settled =
                self.unreadable.contains(&container.id) || self.reload.is_excluded(&container.id);
            if container.running {
                // A task that ended for good (unreadable logs) is not restarted by a listing.
                let handled = settled
                    || known.is_some_and(|m| {
                        m.shared.is_active()
                            || self
                                .supervisor
                                .task(&m.task_id)
                                .is_some_and(|task| task.state == TaskState::Failed)
                    });
                if !periodic || (!handled && self.wanted(&prefilter, container)) {
                    running.push(container.id.clone());
                }
            } else {
                if periodic && known.is_some_and(|m| m.shared.is_active()) {
                    // Stopped, and its task still follows: the `die` event was missed, or the
                    // task is still reading. A file task looks at the container again (it has
                    // no other way to learn; an API stream ends by itself).
                    self.files.died(&container.id);
                }
                if (known.is_some() && !periodic)
                    || (unseen_since.is_some_and(|since| container.created >= since)
                        && (!periodic
                            || (known.is_none() && !settled && self.wanted(&prefilter, container))))
                {
                    stopped.push(container.id.clone());
                }
            }
        }
        if periodic && !(running.is_empty() && stopped.is_empty()) {
            info!(
                running = running.len(),
                stopped = stopped.len(),
                "the periodic listing found containers the events stream did not announce"
            );
        }
        for id in running {
            self.refresh(&id, periodic).await;
        }
        // A known container's task reads what is left and completes; one that started unseen
        // is read from its first line.
        for id in stopped {
            self.refresh(&id, true).await;
        }
    }

    /// The periodic listing (every `relist_interval` while the events stream is connected).
    pub(super) async fn relist(&mut self) {
        let Some(docker) = self.docker.clone() else {
            return;
        };
        let asked_at = unix_seconds();
        let listed = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await;
        match listed {
            Ok(listed) => {
                let unseen_since = self.listed_at.map(|at| at - EVENTS_OVERLAP_SECONDS);
                self.reconcile(listed, unseen_since, true).await;
                self.listed_at = Some(asked_at);
                self.update_gauge();
            }
            Err(error) => {
                warn!(error = %ErrorChain(&error), "the periodic container listing failed; the events stream goes on");
            }
        }
    }
}
