//! The pipeline: dispatcher, sink workers (`sink_set.rs`) and acknowledger.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use capture_core::{Acknowledgement, ContainerId, EventBatch, LogStream, status::SinkSnapshot};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    batcher::Batcher,
    config::{BatchConfig, PipelineConfig, SinkConfig, validate_sink_name, validate_sinks},
    error::{Error, Result},
    open::{open_configured, prepare},
    reload::{Command, PipelineReloader},
    sink::Sink,
    sink_set::SinkSet,
    worker::{Delivery, PreparedSink, SinkOptions},
};

/// Capacity, in batches, of the channel from the source to the pipeline.
///
/// When it is full the source's sends wait, so backpressure reaches the Docker streams.
pub const INPUT_CHANNEL_CAPACITY: usize = 64;
/// Capacity of the channel from the dispatcher to the acknowledger. The acknowledger never
/// waits on anything but completions, so this only smooths bursts.
const IN_FLIGHT_CAPACITY: usize = 1024;
/// Capacity of the reload command channel: reloads are rare and a reloader waits for each.
const CONTROL_CAPACITY: usize = 4;

/// Batches log lines and delivers them to every sink; see the crate documentation.
#[derive(Debug)]
pub struct Pipeline {
    batch: BatchConfig,
    data_dir: PathBuf,
    sinks: Vec<PreparedSink>,
    /// The sinks built from a configuration, by name: what a reload compares with.
    configured: Vec<(String, SinkConfig)>,
    /// One snapshot per sink; each worker updates its own entry (found by name).
    status_tx: Arc<watch::Sender<Vec<SinkSnapshot>>>,
    /// Reload commands from [`PipelineReloader`]s, read by the dispatcher.
    control_tx: mpsc::Sender<Command>,
    control_rx: mpsc::Receiver<Command>,
}

impl Pipeline {
    /// Validates `config`, opens its sinks (the file sink recovers its high-water marks from
    /// its files) and their disk buffers under `data_dir/buffer/<sink name>/`.
    ///
    /// With no sink configured the pipeline has none: add some with [`Pipeline::add_sink`], or
    /// configure [`FileSinkConfig::default_for`](crate::config::FileSinkConfig::default_for).
    pub fn new(config: PipelineConfig, data_dir: &Path) -> Result<Pipeline> {
        config.batch.validate()?;
        let names = validate_sinks(&config.sinks)?;
        let (control_tx, control_rx) = mpsc::channel(CONTROL_CAPACITY);
        let mut pipeline = Pipeline {
            batch: config.batch,
            data_dir: data_dir.to_owned(),
            sinks: Vec::new(),
            configured: Vec::new(),
            status_tx: Arc::new(watch::Sender::new(Vec::new())),
            control_tx,
            control_rx,
        };
        for (sink_config, name) in config.sinks.into_iter().zip(names) {
            let prepared = open_configured(data_dir, &sink_config, &name)?;
            pipeline.push_sink(prepared);
            pipeline.configured.push((name, sink_config));
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
        let prepared = prepare(&self.data_dir, options, Box::new(sink))?;
        self.push_sink(prepared);
        Ok(())
    }

    fn push_sink(&mut self, prepared: PreparedSink) {
        let snapshot = prepared.snapshot.clone();
        self.status_tx.send_modify(|sinks| sinks.push(snapshot));
        self.sinks.push(prepared);
    }

    /// The sinks' health, one snapshot per sink, updated as deliveries succeed or fail.
    pub fn status(&self) -> watch::Receiver<Vec<SinkSnapshot>> {
        self.status_tx.subscribe()
    }

    /// The handle a configuration reload uses to change the sinks of the running pipeline.
    /// Take it once every [`add_sink`](Pipeline::add_sink) is done: those sinks are kept by
    /// every reload.
    pub fn reloader(&self) -> PipelineReloader {
        let custom = self
            .sinks
            .iter()
            .map(|sink| sink.options.name.clone())
            .filter(|name| {
                !self
                    .configured
                    .iter()
                    .any(|(configured, _)| configured == name)
            })
            .collect();
        PipelineReloader::new(
            self.control_tx.clone(),
            self.data_dir.clone(),
            self.configured.clone(),
            custom,
        )
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
        let mut sinks = SinkSet::new(Arc::clone(&self.status_tx), shutdown.clone());
        for prepared in self.sinks {
            sinks.start(prepared, false);
        }
        // Only the reloaders' senders keep the control channel open.
        drop(self.control_tx);
        let (in_flight_tx, in_flight_rx) = mpsc::channel(IN_FLIGHT_CAPACITY);
        let workers_done = CancellationToken::new();
        let dispatcher = Dispatcher {
            batcher: Batcher::new(self.batch),
            sinks,
            in_flight_tx,
            control_rx: Some(self.control_rx),
        };
        let dispatch_and_join = async {
            let (dispatched, sinks) = dispatcher.run(batch_rx, &shutdown).await;
            // Closing the queues lets the workers drain and return.
            let panicked = sinks.join_all().await;
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

/// Collects input into deliveries and hands each to every sink's queue and the acknowledger;
/// applies reload commands between deliveries (and while it waits for a full queue).
struct Dispatcher {
    batcher: Batcher,
    sinks: SinkSet,
    in_flight_tx: mpsc::Sender<Arc<Delivery>>,
    /// `None` once every reloader is gone.
    control_rx: Option<mpsc::Receiver<Command>>,
}

impl Dispatcher {
    /// Returns how the dispatch ended, and the sinks to join.
    async fn run(
        mut self,
        mut batch_rx: mpsc::Receiver<EventBatch>,
        shutdown: &CancellationToken,
    ) -> (Result<()>, SinkSet) {
        let result = loop {
            let deadline = self.batcher.deadline();
            let full = tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ok(()),
                () = self.housekeeping() => false,
                () = sleep_until(deadline), if deadline.is_some() => true,
                batch = batch_rx.recv() => match batch {
                    Some(batch) => self.batcher.push(batch),
                    None => {
                        debug!("input closed; draining");
                        break self.send(shutdown).await;
                    }
                },
            };
            if full && let Err(error) = self.send(shutdown).await {
                break Err(error);
            }
        };
        (result, self.sinks)
    }

    /// Waits for a reload command, a retiring sink's deadline or a worker's end, and handles
    /// it. Never resolves while none comes.
    async fn housekeeping(&mut self) {
        let retire_deadline = self.sinks.next_deadline();
        let Dispatcher {
            sinks, control_rx, ..
        } = self;
        tokio::select! {
            command = next_command(control_rx) => match command {
                Some(command) => self.apply(command),
                None => self.control_rx = None,
            },
            () = sleep_until(retire_deadline), if retire_deadline.is_some() => {
                self.sinks.stop_overdue();
            }
            Some(exit) = sinks.next_exit() => self.sinks.on_exit(exit),
        }
    }

    fn apply(&mut self, command: Command) {
        let Command::Apply { plan, reply_tx } = command;
        let mut retired = Vec::new();
        for name in plan.removed {
            if let Some(done) = self.sinks.retire(&name) {
                retired.push(done);
            }
        }
        for (name, replacement) in plan.replaced {
            if !self.sinks.replace(&name, replacement) {
                warn!(sink = %name, "a reload replaced a sink that is not running");
            }
        }
        for prepared in plan.added {
            info!(sink = %prepared.options.name, "sink added by a reload; it takes the next delivery");
            self.sinks.start(prepared, true);
        }
        // The reloader may have given up waiting; the change stands either way.
        let _ = reply_tx.send(retired);
    }

    /// Sends the collected delivery to every sink of the moment, waiting for queue space
    /// (backpressure) unless stopped. A sink retired meanwhile no longer counts for it.
    async fn send(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let Some((batches, events)) = self.batcher.take() else {
            return Ok(());
        };
        let delivery = Arc::new(Delivery::new(batches, events, self.sinks.len()));
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            // The acknowledger outlives the dispatcher, so this send only fails if it panicked;
            // then nothing is acknowledged, which is safe.
            _ = self.in_flight_tx.send(Arc::clone(&delivery)) => {}
        }
        for id in self.sinks.ids() {
            loop {
                let Some((queue_tx, name)) = self.sinks.queue(id) else {
                    // Retired by a reload while this delivery waited: not its delivery any more.
                    delivery.complete();
                    break;
                };
                let (queue_tx, name) = (queue_tx.clone(), name.to_owned());
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ok(()),
                    () = self.housekeeping() => continue,
                    sent = queue_tx.send(Arc::clone(&delivery)) => {
                        if sent.is_err() {
                            return Err(Error::WorkerGone { sink: name });
                        }
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

async fn next_command(control_rx: &mut Option<mpsc::Receiver<Command>>) -> Option<Command> {
    match control_rx {
        Some(control_rx) => control_rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one (a disabled timer in a `select!`).
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
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
    mut in_flight_rx: mpsc::Receiver<Arc<Delivery>>,
    ack_tx: mpsc::UnboundedSender<Acknowledgement>,
    workers_done: CancellationToken,
) {
    // Per delivery only the last position of each container's stream is sent: it implies the
    // earlier ones. Both are reused across deliveries.
    let mut acks: Vec<Acknowledgement> = Vec::new();
    let mut index: HashMap<(ContainerId, LogStream), usize> = HashMap::new();
    let mut source_gone = false;
    while let Some(delivery) = in_flight_rx.recv().await {
        tokio::select! {
            biased;
            () = delivery.done.cancelled() => {}
            () = workers_done.cancelled() => {
                if !delivery.done.is_cancelled() {
                    debug!("stopping acknowledgements at a delivery that will not complete");
                    return;
                }
            }
        }
        acks.clear();
        index.clear();
        for batch in &delivery.batches {
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
