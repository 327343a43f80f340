//! Test doubles and helpers shared by the integration tests.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use capture_core::{
    Acknowledgement, ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream,
    Position, status::SinkSnapshot,
};
use sink_pipeline::{
    INPUT_CHANNEL_CAPACITY, Pipeline, Sink, SinkError, SinkOptions,
    config::{BatchConfig, BufferConfig, PipelineConfig, RetryConfig},
};
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

pub(crate) fn container(n: u8) -> Arc<ContainerInfo> {
    let id = ContainerId::new(format!("{n:02x}").repeat(32)).unwrap();
    let mut info = ContainerInfo::new(id, format!("web-{n}"), "nginx:1.27");
    info.labels = BTreeMap::from([("com.example.team".to_owned(), "web".to_owned())]);
    Arc::new(info)
}

/// `count` stdout lines of `container` with timestamps `first..first + count`, ordinal 0.
pub(crate) fn numbered(container: &Arc<ContainerInfo>, first: i64, count: i64) -> EventBatch {
    let mut builder = EventBatchBuilder::new(Arc::clone(container));
    for timestamp in first..first + count {
        builder.push(
            LogStream::Stdout,
            Position::new(timestamp, 0),
            format!("line {timestamp}").as_bytes(),
        );
    }
    builder.finish()
}

/// One line as the tests compare them.
pub(crate) type Line = (String, LogStream, Position, String);

pub(crate) fn flatten(batches: &[EventBatch]) -> Vec<Line> {
    batches
        .iter()
        .flat_map(|batch| {
            batch
                .lines()
                .map(|line| {
                    (
                        batch.container().id.to_string(),
                        line.stream,
                        line.position,
                        line.message.to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A sink that fails while `failures` is positive, may wait for a permit per delivery, and
/// reports what it accepted.
#[derive(Debug, Clone)]
pub(crate) struct ScriptedSink {
    pub(crate) failures: Arc<AtomicUsize>,
    pub(crate) gate: Option<Arc<Semaphore>>,
    pub(crate) delivered_tx: mpsc::UnboundedSender<Vec<EventBatch>>,
}

impl ScriptedSink {
    pub(crate) fn new(failures: usize) -> (ScriptedSink, mpsc::UnboundedReceiver<Vec<EventBatch>>) {
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        let sink = ScriptedSink {
            failures: Arc::new(AtomicUsize::new(failures)),
            gate: None,
            delivered_tx,
        };
        (sink, delivered_rx)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scripted failure")]
struct ScriptedFailure;

impl Sink for ScriptedSink {
    async fn deliver(&mut self, batches: &[EventBatch]) -> Result<(), SinkError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let failed = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failed {
            return Err(SinkError::transient(ScriptedFailure));
        }
        let _ = self.delivered_tx.send(batches.to_vec());
        Ok(())
    }
}

pub(crate) fn fast_retry() -> RetryConfig {
    RetryConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        failing_after: Duration::from_secs(3600),
    }
}

pub(crate) fn options(name: &str, buffer: BufferConfig) -> SinkOptions {
    SinkOptions {
        buffer,
        retry: fast_retry(),
        ..SinkOptions::new(name, "test")
    }
}

/// A pipeline with no configured sink (add them with `add_sink`).
pub(crate) fn empty_pipeline(data_dir: &Path, batch: BatchConfig) -> Pipeline {
    Pipeline::new(
        PipelineConfig {
            batch,
            sinks: Vec::new(),
        },
        data_dir,
    )
    .unwrap()
}

/// Deliveries of at most `max_events` lines, flushed quickly.
pub(crate) fn small_batches(max_events: usize) -> BatchConfig {
    BatchConfig {
        max_events,
        max_bytes: 1 << 20,
        max_age: Duration::from_millis(5),
    }
}

/// A running pipeline and the source's ends of its channels.
pub(crate) struct Running {
    pub(crate) batch_tx: mpsc::Sender<EventBatch>,
    pub(crate) ack_rx: mpsc::UnboundedReceiver<Acknowledgement>,
    pub(crate) status: watch::Receiver<Vec<SinkSnapshot>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<sink_pipeline::Result<()>>,
}

pub(crate) fn start(pipeline: Pipeline) -> Running {
    let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let status = pipeline.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(batch_rx, ack_tx, shutdown.clone()));
    Running {
        batch_tx,
        ack_rx,
        status,
        shutdown,
        task,
    }
}

impl Running {
    /// Closes the input and waits for the pipeline to drain and return.
    pub(crate) async fn finish(self) -> mpsc::UnboundedReceiver<Acknowledgement> {
        drop(self.batch_tx);
        self.task.await.unwrap().unwrap();
        self.ack_rx
    }
}

/// Receives deliveries until `count` lines have arrived.
pub(crate) async fn receive_lines(
    delivered_rx: &mut mpsc::UnboundedReceiver<Vec<EventBatch>>,
    count: usize,
) -> Vec<Line> {
    let mut lines = Vec::new();
    while lines.len() < count {
        let batches = delivered_rx
            .recv()
            .await
            .expect("the sink stopped delivering");
        lines.extend(flatten(&batches));
    }
    lines
}

/// Every acknowledgement still queued, without waiting.
pub(crate) fn drain_acks(
    ack_rx: &mut mpsc::UnboundedReceiver<Acknowledgement>,
) -> Vec<Acknowledgement> {
    let mut acks = Vec::new();
    while let Ok(ack) = ack_rx.try_recv() {
        acks.push(ack);
    }
    acks
}
