//! The pipeline: dispatcher, sink workers and acknowledger.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use capture_core::{
    Acknowledgement, ContainerId, EventBatch, LogStream,
    status::{SinkSnapshot, SinkState},
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{
    batcher::Batcher,
    buffer::DiskBuffer,
    config::{BatchConfig, PipelineConfig, SinkConfig, resolve_sink_names, validate_sink_name},
    error::{Error, Result},
    sink::{DynSink, Sink},
    sinks::{file::FileSink, loki::LokiSink, otlp::OtlpSink, stdout::StdoutSink},
    worker::{Chunk, PreparedSink, SINK_QUEUE_CAPACITY, SinkOptions, SinkWorker},
};

/// Capacity of the channel from the dispatcher to the acknowledger. The acknowledger never
/// waits on anything but completions, so this only smooths bursts.
const IN_FLIGHT_CAPACITY: usize = 1024;

/// Batches log lines and delivers them to every sink; see the crate documentation.
#[derive(Debug)]
pub struct Pipeline {
    batch: BatchConfig,
    data_dir: PathBuf,
    sinks: Vec<PreparedSink>,
    /// One snapshot per sink, in sink order; each worker updates its own entry.
    status_tx: Arc<watch::Sender<Vec<SinkSnapshot>>>,
}

impl Pipeline {
    /// Validates `config`, opens its sinks (the file sink recovers its high-water marks from
    /// its files) and their disk buffers under `data_dir/buffer/<sink name>/`.
    ///
    /// With no sink configured the pipeline has none: add some with [`Pipeline::add_sink`], or
    /// configure [`FileSinkConfig::default_for`](crate::FileSinkConfig::default_for).
    pub fn new(config: PipelineConfig, data_dir: &Path) -> Result<Pipeline> {
        config.batch.validate()?;
        let names = resolve_sink_names(&config.sinks)?;
        let mut pipeline = Pipeline {
            batch: config.batch,
            data_dir: data_dir.to_owned(),
            sinks: Vec::new(),
            status_tx: Arc::new(watch::Sender::new(Vec::new())),
        };
        for (sink_config, name) in config.sinks.into_iter().zip(names) {
            let options = SinkOptions {
                name: name.clone(),
                kind: sink_config.kind().to_owned(),
                buffer: sink_config.buffer().clone(),
                retry: sink_config.retry().clone(),
            };
            options.buffer.validate(&name)?;
            options.retry.validate(&name)?;
            let open_error = |source| Error::SinkOpen {
                sink: name.clone(),
                source,
            };
            let sink: Box<dyn DynSink> = match sink_config {
                SinkConfig::File(file) => {
                    file.validate(&name)?;
                    Box::new(FileSink::open(&file).map_err(open_error)?)
                }
                SinkConfig::Stdout(stdout) => Box::new(StdoutSink::new(&stdout)),
                SinkConfig::Loki(loki) => Box::new(LokiSink::new(loki).map_err(open_error)?),
                SinkConfig::Otlp(otlp) => Box::new(OtlpSink::new(otlp).map_err(open_error)?),
            };
            pipeline.push_sink(options, sink)?;
        }
        Ok(pipeline)
    }

    /// Adds a sink of your own (or a test double), with its own queue and disk buffer.
    pub fn add_sink(&mut self, options: SinkOptions, sink: impl Sink) -> Result<()> {
        validate_sink_name(&options.name)?;
        if self
            .sinks
            .iter()
            .any(|sink| sink.options.name == options.name)
        {
            return Err(Error::Config {
                reason: format!("two sinks are named {:?}", options.name),
            });
        }
        options.buffer.validate(&options.name)?;
        options.retry.validate(&options.name)?;
        self.push_sink(options, Box::new(sink))
    }

    fn push_sink(&mut self, options: SinkOptions, sink: Box<dyn DynSink>) -> Result<()> {
        let path = self.data_dir.join("buffer").join(&options.name);
        let mut buffer =
            DiskBuffer::open(&path, &options.buffer).map_err(|source| Error::BufferOpen {
                sink: options.name.clone(),
                path: path.clone(),
                source,
            })?;
        let dropped = buffer.take_dropped_events();
        if dropped > 0 {
            metrics::counter!("log_capturer_sink_events_total", "sink" => options.name.clone(), "result" => "dropped")
                .increment(dropped);
        }
        if buffer.unread_events() > 0 {
            info!(sink = %options.name, events = buffer.unread_events(), "disk buffer holds events from a previous run");
        }
        let snapshot = SinkSnapshot {
            name: options.name.clone(),
            kind: options.kind.clone(),
            state: SinkState::Ok,
            last_success: None,
            last_error: None,
            failing_since: None,
            buffered_events: buffer.unread_events(),
            dropped_events: dropped,
        };
        self.status_tx.send_modify(|sinks| sinks.push(snapshot));
        self.sinks.push(PreparedSink {
            options,
            sink,
            buffer,
        });
        Ok(())
    }

    /// The sinks' health, one snapshot per sink, updated as deliveries succeed or fail.
    pub fn status(&self) -> watch::Receiver<Vec<SinkSnapshot>> {
        self.status_tx.subscribe()
    }

    /// Runs until `batch_rx` is closed and every delivery is accepted by its sinks or
    /// persisted to their disk buffers. Acknowledgements go to `ack_tx` in input order.
    ///
    /// `shutdown` is the hard stop (the grace deadline): retries stop, what memory holds is
    /// persisted to the disk buffers where possible, and the pipeline returns.
    pub async fn run(
        self,
        batch_rx: mpsc::Receiver<EventBatch>,
        ack_tx: mpsc::UnboundedSender<Acknowledgement>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        if self.sinks.is_empty() {
            return Err(Error::NoSinks);
        }
        let mut workers = JoinSet::new();
        let mut names = Vec::with_capacity(self.sinks.len());
        let mut task_names = HashMap::new();
        let mut queue_txs = Vec::with_capacity(self.sinks.len());
        for (index, prepared) in self.sinks.into_iter().enumerate() {
            let (queue_tx, queue_rx) = mpsc::channel(SINK_QUEUE_CAPACITY);
            names.push(prepared.options.name.clone());
            let worker = SinkWorker::new(index, prepared, queue_rx, Arc::clone(&self.status_tx));
            let handle = workers.spawn(worker.run(shutdown.clone()));
            task_names.insert(handle.id(), names[index].clone());
            queue_txs.push(queue_tx);
        }
        let (in_flight_tx, in_flight_rx) = mpsc::channel(IN_FLIGHT_CAPACITY);
        let workers_done = CancellationToken::new();
        let dispatcher = Dispatcher {
            batcher: Batcher::new(self.batch),
            queue_txs,
            names,
            in_flight_tx,
        };
        let dispatch_and_join = async {
            let dispatched = dispatcher.run(batch_rx, &shutdown).await;
            // The dispatcher has dropped the queues: workers drain and return.
            let mut panicked = None;
            while let Some(joined) = workers.join_next().await {
                if let Err(source) = joined {
                    let sink = task_names.get(&source.id()).cloned().unwrap_or_default();
                    panicked.get_or_insert(Error::WorkerPanicked { sink, source });
                }
            }
            workers_done.cancel();
            match panicked {
                Some(error) => Err(error),
                None => dispatched,
            }
        };
        let (result, ()) = tokio::join!(
            dispatch_and_join,
            acknowledge(in_flight_rx, ack_tx, workers_done.clone())
        );
        info!("pipeline stopped");
        result
    }
}

/// Collects input into deliveries and hands each to every sink's queue and the acknowledger.
struct Dispatcher {
    batcher: Batcher,
    queue_txs: Vec<mpsc::Sender<Arc<Chunk>>>,
    names: Vec<String>,
    in_flight_tx: mpsc::Sender<Arc<Chunk>>,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut batch_rx: mpsc::Receiver<EventBatch>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        loop {
            let deadline = self.batcher.deadline();
            let full = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                () = sleep_until(deadline), if deadline.is_some() => true,
                batch = batch_rx.recv() => match batch {
                    Some(batch) => self.batcher.push(batch),
                    None => {
                        debug!("input closed; draining");
                        self.send(shutdown).await?;
                        return Ok(());
                    }
                },
            };
            if full {
                self.send(shutdown).await?;
            }
        }
    }

    /// Sends the collected delivery, waiting for queue space (backpressure) unless stopped.
    async fn send(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let Some((batches, events)) = self.batcher.take() else {
            return Ok(());
        };
        let chunk = Arc::new(Chunk::new(batches, events, self.queue_txs.len()));
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            // The acknowledger outlives the dispatcher, so this send only fails if it panicked;
            // then nothing is acknowledged, which is safe.
            _ = self.in_flight_tx.send(Arc::clone(&chunk)) => {}
        }
        for (queue_tx, name) in self.queue_txs.iter().zip(&self.names) {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                sent = queue_tx.send(Arc::clone(&chunk)) => {
                    if sent.is_err() {
                        return Err(Error::WorkerGone { sink: name.clone() });
                    }
                }
            }
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends the acknowledgements of each delivery once every sink is done with it, in input
/// order: a delivery is acknowledged only after all earlier ones. Returns when the dispatcher
/// is done and everything is acknowledged, or when the workers are gone and the next delivery
/// can no longer complete.
async fn acknowledge(
    mut in_flight_rx: mpsc::Receiver<Arc<Chunk>>,
    ack_tx: mpsc::UnboundedSender<Acknowledgement>,
    workers_done: CancellationToken,
) {
    // Per delivery only the last position of each container's stream is sent: it implies the
    // earlier ones. Both are reused across deliveries.
    let mut acks: Vec<Acknowledgement> = Vec::new();
    let mut index: HashMap<(ContainerId, LogStream), usize> = HashMap::new();
    let mut source_gone = false;
    while let Some(chunk) = in_flight_rx.recv().await {
        tokio::select! {
            biased;
            () = chunk.done.cancelled() => {}
            () = workers_done.cancelled() => {
                if !chunk.done.is_cancelled() {
                    debug!("stopping acknowledgements at a delivery that will not complete");
                    return;
                }
            }
        }
        acks.clear();
        index.clear();
        for batch in &chunk.batches {
            for ack in batch.acknowledgements() {
                match index.get(&(ack.container_id.clone(), ack.stream)) {
                    Some(&at) => acks[at].position = ack.position,
                    None => {
                        index.insert((ack.container_id.clone(), ack.stream), acks.len());
                        acks.push(ack);
                    }
                }
            }
        }
        for ack in acks.drain(..) {
            if ack_tx.send(ack).is_err() && !source_gone {
                source_gone = true;
                debug!("the acknowledgement receiver is gone");
            }
        }
    }
}
