//! A source against the real daemon, a fake pipeline that records and acknowledges every batch,
//! and helpers to wait for what the pipeline received.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use capture_core::{LogStream, Position, status::TaskState};
use docker_source::{DockerConfig, DockerSource, ReadFrom, ReadMode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use task_supervisor::{Supervisor, SupervisorConfig};
use test_support::checker::{LineChecker, Report};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// The longest any wait in these tests may take.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A label value unique to this call, so concurrent tests (and test processes) only ever see
/// their own containers.
pub(crate) use test_support::docker::unique_name as unique;

/// The process-wide metrics recorder (installed once), to read counters.
pub(crate) fn metrics() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other metrics recorder in the test binary");
        snapshotter
    })
}

/// The total of counter `name` with label `label` = `value` (0 if never incremented).
///
/// The debugging recorder's snapshots drain its counters, so totals accumulate here.
pub(crate) fn counter(name: &str, label: Option<(&str, &str)>) -> u64 {
    type Totals = HashMap<(String, Vec<(String, String)>), u64>;
    static TOTALS: OnceLock<Mutex<Totals>> = OnceLock::new();
    let mut totals = TOTALS.get_or_init(Mutex::default).lock().unwrap();
    for (key, _, _, value) in metrics().snapshot().into_vec() {
        if let DebugValue::Counter(value) = value {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            *totals
                .entry((key.key().name().to_owned(), labels))
                .or_default() += value;
        }
    }
    totals
        .iter()
        .filter(|((n, labels), _)| {
            n == name && label.is_none_or(|(l, v)| labels.iter().any(|(k, x)| k == l && x == v))
        })
        .map(|(_, total)| *total)
        .sum()
}

/// Tests hold this lock shared; the leak test holds it exclusively, so the process's open file
/// descriptors are its own while it counts them.
pub(crate) fn process_lock() -> &'static tokio::sync::RwLock<()> {
    static LOCK: OnceLock<tokio::sync::RwLock<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::RwLock::new(()))
}

/// One captured line.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) stream: LogStream,
    pub(crate) position: Position,
    /// The message (for lines over 4 KiB: its head and length).
    pub(crate) message: String,
    /// The message's length in bytes.
    pub(crate) len: usize,
}

/// Everything the fake pipeline received.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) checker: LineChecker,
    pub(crate) lines: HashMap<String, Vec<Captured>>,
    /// Lines whose position was not strictly after the previous line of their stream.
    pub(crate) out_of_order_positions: u64,
    last: HashMap<(String, LogStream), Position>,
    pub(crate) names: HashMap<String, String>,
}

impl Collected {
    pub(crate) fn count(&self, container: &str) -> usize {
        self.lines.get(container).map_or(0, Vec::len)
    }

    pub(crate) fn report(&self) -> Report {
        self.checker.report()
    }

    fn record(&mut self, batch: &capture_core::EventBatch) {
        let id = batch.container().id.as_str().to_owned();
        self.names
            .insert(id.clone(), batch.container().name.clone());
        for line in batch.lines() {
            self.checker.record(&id, line.stream.as_str(), line.message);
            let key = (id.clone(), line.stream);
            if let Some(last) = self.last.get(&key)
                && line.position <= *last
            {
                self.out_of_order_positions += 1;
            }
            self.last.insert(key, line.position);
            let message = if line.message.len() > 4096 {
                // Long lines: keep their head and length only.
                format!("{}…[{}]", &line.message[..64], line.message.len())
            } else {
                line.message.to_owned()
            };
            self.lines.entry(id.clone()).or_default().push(Captured {
                stream: line.stream,
                position: line.position,
                message,
                len: line.message.len(),
            });
        }
    }
}

/// What the fake pipeline shares with the test.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    pub(crate) collected: Arc<Mutex<Collected>>,
    changed_tx: Arc<watch::Sender<u64>>,
    /// How long the fake pipeline takes per batch (a slow sink).
    delay: Duration,
    /// While `false`, the fake pipeline takes no batch: the source falls behind.
    open_tx: Arc<watch::Sender<bool>>,
}

impl Default for Sink {
    fn default() -> Self {
        Sink {
            collected: Arc::default(),
            changed_tx: Arc::new(watch::channel(0).0),
            delay: Duration::ZERO,
            open_tx: Arc::new(watch::channel(true).0),
        }
    }
}

impl Sink {
    /// A pipeline that takes `delay` per batch.
    pub(crate) fn slow(delay: Duration) -> Sink {
        Sink {
            delay,
            ..Sink::default()
        }
    }

    /// Stops taking batches (backpressure reaches the source).
    pub(crate) fn hold(&self) {
        self.open_tx.send_replace(false);
    }

    /// Takes batches again.
    pub(crate) fn release(&self) {
        self.open_tx.send_replace(true);
    }

    /// Waits (bounded by [`WAIT`]) until `condition` holds for what was received; panics with
    /// `what` otherwise.
    pub(crate) async fn wait_until(&self, what: &str, condition: impl Fn(&Collected) -> bool) {
        let mut changed_rx = self.changed_tx.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if condition(&self.collected.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed_rx.changed())
                .await
                .is_err()
            {
                let collected = self.collected.lock().unwrap();
                let counts: Vec<_> = collected
                    .lines
                    .iter()
                    .map(|(k, v)| (&k[..12], v.len()))
                    .collect();
                panic!("timed out waiting for: {what}; received {counts:?}");
            }
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&Collected) -> T) -> T {
        f(&self.collected.lock().unwrap())
    }
}

/// A running source, its supervisor and its fake pipeline.
pub(crate) struct Harness {
    pub(crate) sink: Sink,
    pub(crate) supervisor: Supervisor,
    pub(crate) runtime_handles: Vec<tokio::runtime::Handle>,
    pub(crate) status_rx: watch::Receiver<capture_core::status::DockerSnapshot>,
    pub(crate) unreadable_rx: watch::Receiver<Vec<capture_core::status::UnreadableContainer>>,
    /// Changes the running source's filters.
    pub(crate) reloader: docker_source::SourceReloader,
    shutdown: CancellationToken,
    source_task: JoinHandle<docker_source::Result<()>>,
    pipeline_task: JoinHandle<()>,
}

/// The test configuration: only containers labelled `lc-test=<label>`, read through the API.
pub(crate) fn config(label: &str) -> DockerConfig {
    DockerConfig {
        include_labels: vec![format!("lc-test={label}")],
        read_from: ReadFrom::Beginning,
        read_mode: ReadMode::Api,
        ..DockerConfig::default()
    }
}

/// The same, read from the log files.
pub(crate) fn config_files(label: &str) -> DockerConfig {
    DockerConfig {
        read_mode: ReadMode::Files,
        ..config(label)
    }
}

impl Harness {
    /// Starts a source with `config` and `data_dir`, recording into `sink`.
    pub(crate) fn start(config: DockerConfig, data_dir: &Path, sink: Sink) -> Harness {
        metrics();
        if std::env::var_os("LC_TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_test_writer()
                .try_init();
        }
        let supervisor = Supervisor::new(SupervisorConfig {
            heartbeat_interval: Duration::from_secs(1),
            task_timeout: Duration::from_secs(90),
            stop_timeout: Duration::from_secs(5),
            ..SupervisorConfig::default()
        });
        config.validate(Duration::from_secs(90)).unwrap();
        let source = DockerSource::new(config, data_dir).unwrap();
        let runtime_handles = source.runtime_handles();
        let status_rx = source.status();
        let unreadable_rx = source.unreadable();
        let reloader = source.reloader();
        let (batch_tx, mut batch_rx) = mpsc::channel(16);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let source_task =
            tokio::spawn(source.run(supervisor.clone(), batch_tx, ack_rx, shutdown.clone()));
        let pipeline_sink = sink.clone();
        let mut open_rx = sink.open_tx.subscribe();
        let pipeline_task = tokio::spawn(async move {
            while let Some(batch) = batch_rx.recv().await {
                // Held: keep the batch until released (the source's channel fills meanwhile).
                let _ = open_rx.wait_for(|open| *open).await;
                if !pipeline_sink.delay.is_zero() {
                    tokio::time::sleep(pipeline_sink.delay).await;
                }
                pipeline_sink.collected.lock().unwrap().record(&batch);
                for ack in batch.acknowledgements() {
                    let _ = ack_tx.send(ack);
                }
                pipeline_sink.changed_tx.send_modify(|n| *n += 1);
            }
            // The source closed its channel: dropping `ack_tx` lets it finish.
        });
        Harness {
            sink,
            supervisor,
            runtime_handles,
            status_rx,
            unreadable_rx,
            reloader,
            shutdown,
            source_task,
            pipeline_task,
        }
    }

    /// Shuts the source down and waits for it (and the pipeline) to finish.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.source_task)
            .await
            .expect("the source stops in time")
            .expect("the source does not panic")
            .expect("the source saves its checkpoints");
        tokio::time::timeout(WAIT, self.pipeline_task)
            .await
            .expect("the pipeline ends once the source closed its channel")
            .unwrap();
    }

    /// Ends the source as `kill -9` would, as far as its state goes: no last acknowledgement is
    /// applied and no last checkpoint is written; what the periodic saves wrote is what the
    /// next start finds. Its tasks are then stopped.
    pub(crate) async fn crash(self) {
        self.source_task.abort();
        let _ = self.source_task.await;
        self.supervisor.shutdown(Duration::from_secs(5)).await;
        self.pipeline_task.abort();
        let _ = self.pipeline_task.await;
    }

    /// The state of a container's task.
    pub(crate) fn task_state(&self, container_id: &str) -> Option<TaskState> {
        self.supervisor
            .task(&format!("container_{container_id}"))
            .map(|task| task.state)
    }

    /// How the container's task reads (`api` or `files`), as `/health` shows it.
    pub(crate) fn task_mode(&self, container_id: &str) -> Option<String> {
        self.supervisor
            .task(&format!("container_{container_id}"))
            .and_then(|task| task.mode)
    }

    /// Waits (bounded) until the container's task state satisfies `condition`.
    pub(crate) async fn wait_task(
        &self,
        container_id: &str,
        what: &str,
        condition: impl Fn(Option<TaskState>) -> bool,
    ) {
        let mut changes = self.supervisor.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if condition(self.task_state(container_id)) {
                return;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for the task of {}: {what} (state {:?})",
                    &container_id[..12],
                    self.task_state(container_id)
                );
            }
        }
    }
}

/// `docker run` of the loggen image with the test label and a unique name.
pub(crate) fn loggen(
    label: &str,
    docker_args: &[&str],
    loggen_args: &[&str],
) -> test_support::docker::Container {
    let image = test_support::docker::loggen_image();
    let name = unique("lc-ds");
    let label_arg = format!("lc-test={label}");
    let mut args = vec!["--name", name.as_str(), "--label", label_arg.as_str()];
    args.extend_from_slice(docker_args);
    args.push(image);
    args.extend_from_slice(loggen_args);
    test_support::docker::Container::run(&args)
}

/// How many lines Docker kept for the container (stdout and stderr).
pub(crate) fn docker_line_count(id: &str) -> usize {
    test_support::docker::logs(id).len()
}
