//! Groups input batches into deliveries by count, bytes and age.

use capture_core::EventBatch;
use tokio::time::Instant;

use crate::config::BatchConfig;

/// Collects batches until one of [`BatchConfig`]'s limits is reached.
#[derive(Debug)]
pub(crate) struct Batcher {
    config: BatchConfig,
    batches: Vec<EventBatch>,
    events: usize,
    bytes: usize,
    /// When the oldest collected batch has waited `max_age`.
    deadline: Option<Instant>,
}

impl Batcher {
    pub(crate) fn new(config: BatchConfig) -> Batcher {
        Batcher {
            config,
            batches: Vec::new(),
            events: 0,
            bytes: 0,
            deadline: None,
        }
    }

    /// Adds a batch; returns whether the delivery is full and should be taken now.
    pub(crate) fn push(&mut self, batch: EventBatch) -> bool {
        if batch.is_empty() {
            return false;
        }
        if self.batches.is_empty() {
            self.deadline = Some(Instant::now() + self.config.max_age);
        }
        self.events += batch.len();
        self.bytes += batch.message_bytes();
        self.batches.push(batch);
        self.events >= self.config.max_events || self.bytes >= self.config.max_bytes
    }

    /// When the collected batches must be delivered even if no limit is reached.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes the collected batches and their line count, if any.
    pub(crate) fn take(&mut self) -> Option<(Vec<EventBatch>, u64)> {
        if self.batches.is_empty() {
            return None;
        }
        let events = self.events as u64;
        self.events = 0;
        self.bytes = 0;
        self.deadline = None;
        let capacity = self.batches.len();
        Some((
            std::mem::replace(&mut self.batches, Vec::with_capacity(capacity)),
            events,
        ))
    }
}
