//! One sink's worker: its queue, retries, health, metrics and disk buffer.
//!
//! The worker takes deliveries from its bounded queue and passes them to its sink, one at a
//! time and in order. While the sink is healthy and nothing is buffered, deliveries wait in
//! memory (at most [`MEMORY_DELIVERIES`], then the queue fills and the dispatcher waits:
//! backpressure). Once a delivery fails, the worker *spills*: every delivery it holds or
//! receives is appended to the disk buffer (and then counts as done for acknowledgement), and
//! deliveries are replayed from the buffer's head, oldest first, after a single backoff timer.
//! When the buffer is empty again the worker returns to memory.
//!
//! When the disk buffer itself cannot be written (disk full), what cannot be spilled stays in
//! memory, still bounded by [`MEMORY_DELIVERIES`] (so the input pushes back), the sink's retries go
//! on with their backoff (so it turns `failing` with an error naming both causes), and the
//! error is logged once per episode, not once per attempt.
//!
//! A reload that changes the sink's settings puts a replacement in the worker's mailbox; the
//! worker swaps it in between two deliveries (`worker/swap.rs`). `worker/health.rs` keeps the
//! sink's state, snapshot, metrics and retry timer.

mod health;
mod swap;

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use capture_core::{
    ErrorChain, EventBatch,
    status::{SinkSnapshot, SinkState},
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use self::health::SinkMetrics;
use self::swap::SinkSlot;
pub(crate) use self::swap::{Mailbox, Replacement, ReplacementSink};
use crate::{
    buffer::{AppendError, DiskBuffer, ReplayRecord},
    config::{BufferConfig, RetryConfig},
    sink::{DynSink, SinkError},
};

/// Capacity, in deliveries, of each sink's queue from the dispatcher.
pub(crate) const SINK_QUEUE_CAPACITY: usize = 4;
/// Deliveries a healthy sink's worker holds in memory beyond the one being delivered.
pub(crate) const MEMORY_DELIVERIES: usize = 8;
/// How long a sink may flush at a hard stop.
const HARD_STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A delivery: batches collected by the dispatcher, shared by every sink's worker.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) batches: Vec<EventBatch>,
    pub(crate) events: u64,
    /// Sinks that have neither accepted nor durably buffered this delivery yet.
    remaining: AtomicUsize,
    /// Cancelled when `remaining` reaches zero: the delivery may be acknowledged.
    pub(crate) done: CancellationToken,
}

impl Delivery {
    pub(crate) fn new(batches: Vec<EventBatch>, events: u64, sinks: usize) -> Delivery {
        Delivery {
            batches,
            events,
            remaining: AtomicUsize::new(sinks),
            done: CancellationToken::new(),
        }
    }

    /// Called exactly once by each sink's worker when the delivery is accepted, durably
    /// buffered, or rejected (and counted as dropped).
    pub(crate) fn complete(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.cancel();
        }
    }
}

/// How a sink is named and how it buffers and retries; for [`Pipeline::add_sink`](crate::Pipeline::add_sink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Unique name: the `sink` metric label and the disk buffer's directory name.
    pub name: String,
    /// The type reported in `/health` (`file`, `loki`, ...).
    pub kind: String,
    /// Disk buffer settings.
    pub buffer: BufferConfig,
    /// Retry settings.
    pub retry: RetryConfig,
}

impl SinkOptions {
    /// Options with default buffer and retry settings.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> SinkOptions {
        SinkOptions {
            name: name.into(),
            kind: kind.into(),
            buffer: BufferConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

/// A sink ready to run: built and with its disk buffer open.
#[derive(Debug)]
pub(crate) struct PreparedSink {
    pub(crate) options: SinkOptions,
    pub(crate) sink: Box<dyn DynSink>,
    pub(crate) buffer: DiskBuffer,
    /// Its first snapshot (what the buffer holds from a previous run).
    pub(crate) snapshot: SinkSnapshot,
}

/// What is being delivered.
#[derive(Debug)]
enum Head {
    /// The front of `pending`, still in it.
    Memory(Arc<Delivery>),
    /// The record at the disk buffer's read position.
    Disk(ReplayRecord),
}

impl Head {
    fn batches(&self) -> &[EventBatch] {
        match self {
            Head::Memory(delivery) => &delivery.batches,
            Head::Disk(record) => &record.batches,
        }
    }

    fn events(&self) -> u64 {
        match self {
            Head::Memory(delivery) => delivery.events,
            Head::Disk(record) => record.events,
        }
    }
}

/// Runs one sink. See the module documentation.
#[derive(Debug)]
pub(crate) struct SinkWorker {
    /// Kept apart from `state` so a delivery's future can borrow it while the state takes
    /// input.
    sink: SinkSlot,
    /// Where a reload puts a replacement sink.
    mailbox: Arc<Mailbox>,
    state: WorkerState,
}

#[derive(Debug)]
struct WorkerState {
    name: String,
    retry: RetryConfig,
    queue_rx: mpsc::Receiver<Arc<Delivery>>,
    input_closed: bool,
    /// Received deliveries neither delivered nor appended to the buffer, oldest first.
    pending: VecDeque<Arc<Delivery>>,
    pending_events: u64,
    buffer: DiskBuffer,
    /// The buffer's head record, read and kept across retries.
    replay: Option<ReplayRecord>,
    /// Appended to the buffer but not yet synced: completed once a sync succeeds.
    unsynced: Vec<Arc<Delivery>>,
    /// Why the disk buffer last refused a write or sync (disk full, ...), until one succeeds.
    /// While set, what cannot be spilled stays in memory (bounded by [`MEMORY_DELIVERIES`], then
    /// the queue fills: backpressure) and the sink's own retries go on.
    buffer_error: Option<String>,
    /// Whether the front of `pending` is being delivered (it must not be spilled meanwhile).
    memory_in_flight: bool,
    /// Whether a buffer record is being delivered.
    disk_in_flight: bool,
    attempt: u32,
    retry_at: Option<Instant>,
    failing_since: Option<Instant>,
    needs_flush: bool,
    snapshot: SinkSnapshot,
    status_tx: Arc<watch::Sender<Vec<SinkSnapshot>>>,
    metrics: SinkMetrics,
}

impl SinkWorker {
    pub(crate) fn new(
        prepared: PreparedSink,
        queue_rx: mpsc::Receiver<Arc<Delivery>>,
        mailbox: Arc<Mailbox>,
        status_tx: Arc<watch::Sender<Vec<SinkSnapshot>>>,
    ) -> SinkWorker {
        SinkWorker {
            sink: SinkSlot::open(prepared.sink),
            mailbox,
            state: WorkerState {
                snapshot: prepared.snapshot,
                metrics: SinkMetrics::new(&prepared.options.name),
                name: prepared.options.name,
                retry: prepared.options.retry,
                queue_rx,
                input_closed: false,
                pending: VecDeque::new(),
                pending_events: 0,
                buffer: prepared.buffer,
                replay: None,
                unsynced: Vec::new(),
                buffer_error: None,
                memory_in_flight: false,
                disk_in_flight: false,
                attempt: 0,
                retry_at: None,
                failing_since: None,
                needs_flush: false,
                status_tx,
            },
        }
    }

    /// Delivers until the queue is closed and every delivery is accepted or buffered, or until
    /// `shutdown` (then persists what it holds and returns).
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if let Some(replacement) = self.mailbox.take() {
                self.replace(replacement).await;
            }
            self.state.absorb_buffer_drops();
            self.state.publish();
            if self.state.drained() {
                break;
            }
            if let Some(retry_at) = self.state.retry_at {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return self.hard_stop().await,
                    // Taken at the top of the loop: a new sink is tried at once.
                    () = self.mailbox.ready() => {}
                    () = tokio::time::sleep_until(retry_at) => {
                        self.state.retry_at = None;
                        self.state.sync_buffer();
                        self.state.persist_pending(false);
                    }
                    delivery = self.state.queue_rx.recv(), if self.state.can_accept() => {
                        self.state.on_input(delivery);
                    }
                }
                continue;
            }
            let Some(head) = self.state.next_head() else {
                if self.state.needs_flush {
                    self.flush(&shutdown).await;
                    continue;
                }
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return self.hard_stop().await,
                    () = self.mailbox.ready() => {}
                    delivery = self.state.queue_rx.recv(), if self.state.can_accept() => {
                        self.state.on_input(delivery);
                    }
                }
                continue;
            };
            match head {
                Head::Memory(_) => self.state.memory_in_flight = true,
                Head::Disk(_) => self.state.disk_in_flight = true,
            }
            let started = Instant::now();
            let outcome = {
                let mut attempt = self.sink.deliver_boxed(head.batches());
                loop {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break None,
                        result = &mut attempt => break Some(result),
                        delivery = self.state.queue_rx.recv(), if self.state.can_accept() => {
                            self.state.on_input(delivery);
                        }
                    }
                }
            };
            self.state.memory_in_flight = false;
            self.state.disk_in_flight = false;
            match outcome {
                Some(result) => self.state.on_result(head, result, started.elapsed()),
                None => {
                    if let Head::Disk(record) = head {
                        self.state.replay = Some(record);
                    }
                    return self.hard_stop().await;
                }
            }
        }
        if self.state.needs_flush {
            self.flush(&shutdown).await;
        }
        self.state.publish();
    }

    async fn flush(&mut self, shutdown: &CancellationToken) {
        self.state.needs_flush = false;
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            result = self.sink.flush_boxed() => result,
        };
        if let Err(error) = result {
            warn!(sink = %self.state.name, error = %ErrorChain(&error), "sink flush failed");
        }
    }

    /// The grace deadline passed: stop retrying, persist what is held in memory, return.
    async fn hard_stop(mut self) {
        if !self.state.pending.is_empty() {
            warn!(
                sink = %self.state.name,
                events = self.state.pending_events,
                "hard stop: persisting undelivered events to the disk buffer"
            );
        }
        self.state.persist_pending(true);
        self.state.sync_buffer();
        match tokio::time::timeout(HARD_STOP_FLUSH_TIMEOUT, self.sink.flush_boxed()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(sink = %self.state.name, error = %ErrorChain(&error), "sink flush failed");
            }
            Err(_) => warn!(sink = %self.state.name, "sink flush timed out at the hard stop"),
        }
        self.state.absorb_buffer_drops();
        self.state.publish();
    }
}

impl WorkerState {
    /// Whether new deliveries go to the disk buffer rather than memory.
    fn spilling(&self) -> bool {
        self.snapshot.state != SinkState::Ok
            || !self.buffer.is_empty()
            || self.replay.is_some()
            || self.disk_in_flight
    }

    fn can_accept(&self) -> bool {
        !self.input_closed && self.pending.len() < MEMORY_DELIVERIES
    }

    fn drained(&self) -> bool {
        self.input_closed && self.pending.is_empty()
    }

    fn on_input(&mut self, delivery: Option<Arc<Delivery>>) {
        let Some(delivery) = delivery else {
            self.input_closed = true;
            return;
        };
        self.pending_events += delivery.events;
        self.pending.push_back(delivery);
        if self.spilling() && !self.memory_in_flight {
            self.persist_pending(false);
        }
    }

    /// The next delivery: the buffer's head if anything is buffered, else memory's.
    fn next_head(&mut self) -> Option<Head> {
        if self.replay.is_none() && !self.buffer.is_empty() {
            self.replay = self.buffer.read_next();
            self.absorb_buffer_drops();
        }
        if let Some(record) = self.replay.take() {
            return Some(Head::Disk(record));
        }
        self.pending.front().cloned().map(Head::Memory)
    }

    /// Appends pending deliveries to the disk buffer, oldest first, until it is full or fails.
    fn persist_pending(&mut self, ignore_limit: bool) {
        let mut appended = false;
        while let Some(delivery) = self.pending.front() {
            match self
                .buffer
                .append(&delivery.batches, delivery.events, ignore_limit)
            {
                Ok(()) => {
                    appended = true;
                    self.pending_events -= delivery.events;
                    if let Some(delivery) = self.pending.pop_front() {
                        self.unsynced.push(delivery);
                    }
                }
                // Blocked: the worker holds these until a replay frees space; once `pending`
                // is full its queue fills and the dispatcher waits.
                Err(AppendError::Full) => break,
                // Not retried on a timer of its own: the next input, retry or replay tries
                // again, and the sink's retries are not held up by it.
                Err(AppendError::Io(error)) => {
                    self.on_buffer_error("cannot write to the disk buffer", &error);
                    break;
                }
            }
        }
        if appended {
            self.sync_buffer();
        }
        self.absorb_buffer_drops();
    }

    /// Syncs the buffer and completes what it made durable.
    fn sync_buffer(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        match self.buffer.sync() {
            Ok(()) => {
                if let Some(error) = self.buffer_error.take() {
                    info!(sink = %self.name, previous_error = %error, "disk buffer writable again");
                }
                for delivery in self.unsynced.drain(..) {
                    delivery.complete();
                }
            }
            Err(error) => self.on_buffer_error("cannot sync the disk buffer", &error),
        }
    }

    /// Logs a disk buffer failure once per episode (not once per attempt) and keeps it for
    /// `/health`: the sink's `last_error` names it until a write succeeds.
    fn on_buffer_error(&mut self, what: &str, error: &std::io::Error) {
        let text = format!("{what}: {error}");
        if self.buffer_error.is_none() {
            error!(
                sink = %self.name,
                error = %text,
                held_events = self.pending_events,
                "disk buffer unavailable; holding at most {MEMORY_DELIVERIES} deliveries in memory, then pushing back"
            );
        }
        if let Some(last_error) = &mut self.snapshot.last_error
            && !last_error.contains(&text)
        {
            last_error.push_str("; ");
            last_error.push_str(&text);
        }
        self.buffer_error = Some(text);
    }

    fn on_result(&mut self, head: Head, result: Result<(), SinkError>, elapsed: Duration) {
        self.metrics.duration.record(elapsed.as_secs_f64());
        let events = head.events();
        match result {
            Ok(()) => {
                self.metrics.sent.increment(events);
                self.mark_success();
                self.finish_head(head);
            }
            Err(SinkError::Rejected(source)) => {
                let error = SinkError::Rejected(source);
                let text = ErrorChain(&error).to_string();
                warn!(sink = %self.name, events, error = %text, "sink rejected events; dropping them");
                self.metrics.dropped.increment(events);
                self.snapshot.dropped_events += events;
                self.snapshot.last_error = Some(text);
                self.finish_head(head);
            }
            Err(error) => {
                self.metrics.failed.increment(events);
                self.mark_failure(&error);
                if let Head::Disk(record) = head {
                    self.replay = Some(record);
                }
                // Spill what memory holds, the failed delivery first, so it is acknowledged
                // and survives a restart while the sink is down.
                self.persist_pending(false);
            }
        }
    }

    /// The head is done with (accepted or dropped): remove it from where it waited.
    fn finish_head(&mut self, head: Head) {
        self.needs_flush = true;
        match head {
            Head::Memory(delivery) => {
                if let Some(front) = self.pending.pop_front() {
                    debug_assert!(Arc::ptr_eq(&front, &delivery));
                    self.pending_events -= front.events;
                }
                delivery.complete();
            }
            Head::Disk(record) => {
                self.buffer.consume(&record);
                self.absorb_buffer_drops();
                if self.buffer.is_empty() && !self.unsynced.is_empty() {
                    // Delivered before their sync succeeded: they are done either way.
                    for delivery in self.unsynced.drain(..) {
                        delivery.complete();
                    }
                }
                // Space was freed: a blocked spill may proceed.
                if !self.pending.is_empty() {
                    self.persist_pending(false);
                }
            }
        }
    }
}
