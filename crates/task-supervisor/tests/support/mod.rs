//! Helpers shared by the integration tests: a metrics probe, waiting on supervisor changes, and
//! a drop signal that proves a task's future was dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capture_core::status::TaskSnapshot;
use metrics_util::debugging::{DebugValue, Snapshotter};
use task_supervisor::Supervisor;
use tokio::sync::oneshot;

/// Reads a `DebuggingRecorder`. Its snapshots reset counters and gauges to zero, so counters are
/// accumulated here; a gauge read is only meaningful right after the supervisor set it (every
/// watchdog tick sets them all).
pub(crate) struct MetricsProbe {
    snapshotter: Snapshotter,
    counters: HashMap<String, u64>,
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl MetricsProbe {
    pub(crate) fn new(snapshotter: Snapshotter) -> MetricsProbe {
        MetricsProbe {
            snapshotter,
            counters: HashMap::new(),
        }
    }

    /// Takes a snapshot: accumulates counters and returns the gauges it holds.
    fn refresh(&mut self) -> HashMap<String, f64> {
        let mut gauges = HashMap::new();
        for (composite, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, metric) = composite.into_parts();
            let labels: Vec<(&str, &str)> = metric.labels().map(|l| (l.key(), l.value())).collect();
            let key = key(metric.name(), &labels);
            match value {
                DebugValue::Counter(delta) => *self.counters.entry(key).or_default() += delta,
                DebugValue::Gauge(value) => {
                    gauges.insert(key, value.into_inner());
                }
                DebugValue::Histogram(_) => {}
            }
        }
        gauges
    }

    pub(crate) fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.refresh();
        self.counters.get(&key(name, labels)).copied().unwrap_or(0)
    }

    /// Whether a counter has been registered (even at zero) since the previous snapshot.
    pub(crate) fn has_counter(&mut self, name: &str, labels: &[(&str, &str)]) -> bool {
        let wanted = key(name, labels);
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .any(|(composite, _, _, _)| {
                let (_, metric) = composite.into_parts();
                let labels: Vec<(&str, &str)> =
                    metric.labels().map(|l| (l.key(), l.value())).collect();
                key(metric.name(), &labels) == wanted
            })
    }

    /// All gauges set since the previous snapshot.
    pub(crate) fn gauges(&mut self) -> Gauges {
        Gauges(self.refresh())
    }
}

pub(crate) struct Gauges(HashMap<String, f64>);

impl Gauges {
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = key(name, labels);
        *self
            .0
            .get(&key)
            .unwrap_or_else(|| panic!("gauge {key} not set; have {:?}", self.0.keys()))
    }
}

/// Waits (bounded by `limit` of possibly simulated time) until `predicate` holds for the task's
/// snapshot, waking only on supervisor state changes.
pub(crate) async fn wait_for_task(
    supervisor: &Supervisor,
    id: &str,
    limit: Duration,
    predicate: impl Fn(&TaskSnapshot) -> bool,
) -> TaskSnapshot {
    let mut changes = supervisor.subscribe();
    let wait = async {
        loop {
            if let Some(task) = supervisor.task(id)
                && predicate(&task)
            {
                return task;
            }
            changes.changed().await.expect("supervisor alive");
        }
    };
    within(limit, wait).await
}

/// Runs `future` with a time limit, failing the test with the snapshot if it takes longer.
pub(crate) async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("not done within {limit:?}"))
}

/// Sends on a oneshot when dropped: held by a task body, it proves the body's future was dropped.
pub(crate) struct DropSignal(Option<oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A one-use drop signal a `Fn` body can take on its first attempt.
#[derive(Clone)]
pub(crate) struct DropSignalSlot(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl DropSignalSlot {
    pub(crate) fn new() -> (DropSignalSlot, oneshot::Receiver<()>) {
        let (dropped_tx, dropped_rx) = oneshot::channel();
        (
            DropSignalSlot(Arc::new(Mutex::new(Some(dropped_tx)))),
            dropped_rx,
        )
    }

    pub(crate) fn take(&self) -> DropSignal {
        DropSignal(self.0.lock().unwrap().take())
    }
}

pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}
