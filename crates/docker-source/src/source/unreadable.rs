//! Containers whose logs cannot be read by design (see `log_driver.rs`): not tasks, listed.
//!
//! The list follows each container's life: discovery adds a container when an inspection finds
//! it unreadable and it passes the filters, and removes it when it is destroyed, found gone by a
//! re-listing, or no longer passes the filters. Every change is published on a `watch` channel
//! (read by `/health`) and in the gauge `log_capturer_containers_unreadable{reason}`.
//!
//! Filters are applied whenever a container is inspected (listing, `start`, `rename`,
//! `unpause`). A configuration reload that changes the filters inspects the listed containers
//! again (`source/reload.rs`), so the list follows the new filters.

use std::collections::BTreeMap;

use capture_core::{
    ContainerId, ContainerInfo,
    status::{UnreadableContainer, UnreadableReason},
};
use tokio::sync::watch;
use tracing::{debug, info};

use super::SourceActor;
use crate::{log_driver::Unreadable, metric_names};

/// The unreadable containers and the channel that publishes them.
#[derive(Debug)]
pub(crate) struct UnreadableContainers {
    /// Ordered by id, so `/health` lists them in a stable order.
    entries: BTreeMap<ContainerId, UnreadableContainer>,
    list_tx: watch::Sender<Vec<UnreadableContainer>>,
}

impl Default for UnreadableContainers {
    fn default() -> Self {
        UnreadableContainers {
            entries: BTreeMap::new(),
            list_tx: watch::Sender::new(Vec::new()),
        }
    }
}

impl UnreadableContainers {
    /// The current list, updated on every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Vec<UnreadableContainer>> {
        self.list_tx.subscribe()
    }

    /// Adds (or renames) a container; returns whether it was not listed before.
    fn insert(&mut self, info: &ContainerInfo, unreadable: Unreadable) -> bool {
        let entry = UnreadableContainer {
            id: info.id.as_str().to_owned(),
            name: info.name.clone(),
            driver: unreadable.driver,
            reason: unreadable.reason,
        };
        let previous = self.entries.insert(info.id.clone(), entry.clone());
        if previous.as_ref() != Some(&entry) {
            self.publish();
        }
        previous.is_none()
    }

    /// The listed containers (a filter change inspects them again).
    pub(crate) fn ids(&self) -> Vec<ContainerId> {
        self.entries.keys().cloned().collect()
    }

    /// Whether a container is listed.
    pub(crate) fn contains(&self, id: &ContainerId) -> bool {
        self.entries.contains_key(id)
    }

    /// Removes a container; returns whether it was listed.
    pub(crate) fn remove(&mut self, id: &ContainerId) -> bool {
        let removed = self.entries.remove(id).is_some();
        if removed {
            self.publish();
        }
        removed
    }

    /// Keeps only the containers `keep` accepts (a re-listing drops those that are gone).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&ContainerId) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|id, _| keep(id));
        if self.entries.len() != before {
            self.publish();
        }
    }

    fn publish(&self) {
        for reason in UnreadableReason::ALL {
            let count = self
                .entries
                .values()
                .filter(|entry| entry.reason == reason)
                .count();
            ::metrics::gauge!(metric_names::CONTAINERS_UNREADABLE, "reason" => reason.as_str())
                .set(count as f64);
        }
        self.list_tx
            .send_replace(self.entries.values().cloned().collect());
    }
}

impl SourceActor<'_> {
    /// Lists a container whose logs cannot be read by design instead of monitoring it, if it is
    /// one the agent would capture.
    pub(super) async fn list_unreadable(&mut self, info: ContainerInfo, unreadable: Unreadable) {
        let id = info.id.clone();
        if self.self_container.is(id.as_str()) {
            return;
        }
        // A log driver is fixed when a container is created, so a monitored container cannot
        // become unreadable; should Docker ever allow it, its task must not stay behind.
        if let Some(monitored) = self.containers.remove(&id) {
            self.unmonitor(monitored).await;
        }
        if !self.filter.accepts(&info) {
            if self.unreadable.remove(&id) {
                debug!(container_id = %id, "unreadable container no longer matches the filters");
            }
            return;
        }
        let (driver, reason) = (unreadable.driver.clone(), unreadable.reason.as_str());
        if self.unreadable.insert(&info, unreadable) {
            info!(
                container_id = %id,
                name = %info.name,
                driver = %driver,
                reason,
                "container logs cannot be read by design (log driver); listed as unreadable, not captured"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::*;

    fn info(hex: &str, name: &str) -> ContainerInfo {
        ContainerInfo::new(ContainerId::new(hex.repeat(32)).unwrap(), name, "img")
    }

    fn driver(driver: &str, reason: UnreadableReason) -> Unreadable {
        Unreadable {
            driver: driver.to_owned(),
            reason,
        }
    }

    /// The gauge per reason as last set (the debugging recorder drains on every snapshot, so
    /// call this once after each change).
    fn gauges(snapshotter: &Snapshotter) -> HashMap<String, f64> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == metric_names::CONTAINERS_UNREADABLE)
            .filter_map(|(key, _, _, value)| {
                let reason = key.key().labels().next()?.value().to_owned();
                match value {
                    DebugValue::Gauge(value) => Some((reason, value.0)),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn the_list_and_the_gauge_follow_inserts_renames_and_removals() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let mut unreadable = UnreadableContainers::default();
            let list_rx = unreadable.subscribe();
            let quiet = info("aa", "quiet");
            let remote = info("bb", "remote");

            assert!(unreadable.insert(&quiet, driver("none", UnreadableReason::LogDriverNone)));
            let expected = HashMap::from([
                ("log_driver_none".to_owned(), 1.0),
                ("dual_logging_disabled".to_owned(), 0.0),
            ]);
            assert_eq!(gauges(&snapshotter), expected);
            assert!(
                !unreadable.insert(&quiet, driver("none", UnreadableReason::LogDriverNone)),
                "listed once"
            );
            let reason = UnreadableReason::DualLoggingDisabled;
            assert!(unreadable.insert(&remote, driver("gelf", reason)));
            assert_eq!(gauges(&snapshotter)["dual_logging_disabled"], 1.0);

            // A rename shows in the list, still once.
            let renamed = info("aa", "renamed");
            assert!(!unreadable.insert(&renamed, driver("none", UnreadableReason::LogDriverNone)));
            let names: Vec<String> = list_rx.borrow().iter().map(|e| e.name.clone()).collect();
            assert_eq!(names, ["renamed", "remote"]);

            assert!(unreadable.remove(&quiet.id));
            assert!(!unreadable.remove(&quiet.id));
            assert_eq!(gauges(&snapshotter)["log_driver_none"], 0.0);
            unreadable.retain(|id| *id != remote.id);
            assert!(list_rx.borrow().is_empty());
            assert_eq!(gauges(&snapshotter)["dual_logging_disabled"], 0.0);
        });
    }
}
