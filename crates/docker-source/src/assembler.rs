//! Collects a container task's decoded lines into the batches it sends.
//!
//! A batch is finished when it is full (lines or bytes), when the task sends it, and where a
//! stream's replay ends or begins: the replay flag is one bit per stream of a batch
//! ([`capture_core::EventBatch::is_replay`]), so a batch never mixes replayed and live lines of a
//! stream. The check costs a bit test per line.

use std::{collections::VecDeque, sync::Arc};

use capture_core::{ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position};

use crate::{checkpoint::StreamPositions, decoder::LineSink, stream::ContainerShared};

/// A batch taken from the [`Assembler`].
pub(crate) struct Assembled {
    pub(crate) batch: EventBatch,
    /// Lines per stream (indexed by [`LogStream::index`]).
    pub(crate) lines: [u64; 3],
    /// The last position per stream.
    pub(crate) last: StreamPositions,
}

/// Collects decoded lines into the batch being built.
pub(crate) struct Assembler {
    pub(crate) info: Arc<ContainerInfo>,
    builder: Option<EventBatchBuilder>,
    lines: [u64; 3],
    last: StreamPositions,
    /// Batches finished where a stream's replay flag changed, to be sent before the builder.
    finished: VecDeque<Assembled>,
    max_lines: usize,
    max_bytes: usize,
    /// The size of the last batch, to allocate the next one at once.
    hint: (usize, usize),
}

impl Assembler {
    pub(crate) fn new(info: Arc<ContainerInfo>, max_lines: usize, max_bytes: usize) -> Assembler {
        Assembler {
            info,
            builder: None,
            lines: [0; 3],
            last: [None; 3],
            finished: VecDeque::new(),
            max_lines,
            max_bytes,
            hint: (16, 2048),
        }
    }

    /// Lines assembled and not taken yet.
    pub(crate) fn pending_lines(&self) -> usize {
        let finished: usize = self.finished.iter().map(|a| a.batch.len()).sum();
        finished + self.builder.as_ref().map_or(0, EventBatchBuilder::len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending_lines() == 0
    }

    /// Whether a batch is ready to go: the builder is full, or a batch was finished early.
    pub(crate) fn is_full(&self) -> bool {
        !self.finished.is_empty()
            || self
                .builder
                .as_ref()
                .is_some_and(|b| b.len() >= self.max_lines || b.message_bytes() >= self.max_bytes)
    }

    /// Drops what was assembled (a reopen reads it again).
    pub(crate) fn discard(&mut self) {
        self.builder = None;
        self.lines = [0; 3];
        self.last = [None; 3];
        self.finished.clear();
    }

    fn finish_builder(&mut self) -> Option<Assembled> {
        let builder = self.builder.take()?;
        self.hint = (
            builder.len().next_power_of_two().min(self.max_lines),
            builder
                .message_bytes()
                .next_power_of_two()
                .min(self.max_bytes),
        );
        Some(Assembled {
            batch: builder.finish(),
            lines: std::mem::take(&mut self.lines),
            last: std::mem::take(&mut self.last),
        })
    }

    /// The oldest batch, if any; picks up a renamed container's metadata for the next one.
    pub(crate) fn take(&mut self, shared: &ContainerShared) -> Option<Assembled> {
        if let Some(finished) = self.finished.pop_front() {
            return Some(finished);
        }
        self.info = shared.info();
        self.finish_builder()
    }
}

impl LineSink for Assembler {
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8], replay: bool) {
        let index = stream.index();
        if self.lines[index] > 0
            && self
                .builder
                .as_ref()
                .is_some_and(|builder| builder.is_replay(stream) != replay)
            && let Some(finished) = self.finish_builder()
        {
            self.finished.push_back(finished);
        }
        let builder = self.builder.get_or_insert_with(|| {
            EventBatchBuilder::with_capacity(self.info.clone(), self.hint.0, self.hint.1)
        });
        if replay {
            builder.set_replay(stream, true);
        }
        builder.push(stream, position, message);
        self.lines[index] += 1;
        self.last[index] = Some(position);
    }
}
