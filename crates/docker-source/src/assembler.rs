//! Collects a container task's decoded lines into the batches it sends.
//!
//! A batch is finished when it is full (lines or bytes), when the task sends it, and where a
//! stream's replay ends or begins: the replay flag is one bit per stream of a batch
//! ([`capture_core::EventBatch::is_replay`]), so a batch never mixes replayed and live lines of a
//! stream. The check costs a bit test per line.

use std::{collections::VecDeque, sync::Arc};

use capture_core::{ContainerInfo, EventBatch, EventBatchBuilder, LogStream, PerStream, Position};

use crate::{checkpoint::StreamPositions, decoder::LineSink, stream::ContainerShared};

/// A batch taken from the [`Assembler`].
pub(crate) struct Assembled {
    pub(crate) batch: EventBatch,
    /// Lines per stream.
    pub(crate) lines: PerStream<u64>,
    /// The last position per stream.
    pub(crate) last: StreamPositions,
}

/// Collects decoded lines into the batch being built.
pub(crate) struct Assembler {
    pub(crate) info: Arc<ContainerInfo>,
    builder: Option<EventBatchBuilder>,
    lines: PerStream<u64>,
    last: StreamPositions,
    /// Batches finished where a stream's replay flag changed, to be sent before the builder.
    finished: VecDeque<Assembled>,
    max_lines: usize,
    max_bytes: usize,
    /// The size of the last batch, to allocate the next one at once.
    next_capacity: Capacity,
}

/// What a new batch is allocated for.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    lines: usize,
    message_bytes: usize,
}

impl Assembler {
    pub(crate) fn new(info: Arc<ContainerInfo>, max_lines: usize, max_bytes: usize) -> Assembler {
        Assembler {
            info,
            builder: None,
            lines: PerStream::default(),
            last: StreamPositions::default(),
            finished: VecDeque::new(),
            max_lines,
            max_bytes,
            next_capacity: Capacity {
                lines: 16,
                message_bytes: 2048,
            },
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
        self.lines = PerStream::default();
        self.last = StreamPositions::default();
        self.finished.clear();
    }

    fn finish_builder(&mut self) -> Option<Assembled> {
        let builder = self.builder.take()?;
        self.next_capacity = Capacity {
            lines: builder.len().next_power_of_two().min(self.max_lines),
            message_bytes: builder
                .message_bytes()
                .next_power_of_two()
                .min(self.max_bytes),
        };
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
        if self.lines[stream] > 0
            && self
                .builder
                .as_ref()
                .is_some_and(|builder| builder.is_replay(stream) != replay)
            && let Some(finished) = self.finish_builder()
        {
            self.finished.push_back(finished);
        }
        let builder = self.builder.get_or_insert_with(|| {
            let Capacity {
                lines,
                message_bytes,
            } = self.next_capacity;
            EventBatchBuilder::with_capacity(self.info.clone(), lines, message_bytes)
        });
        if replay {
            builder.set_replay(stream, true);
        }
        builder.push(stream, position, message);
        self.lines[stream] += 1;
        self.last[stream] = Some(position);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use capture_core::{ContainerId, ContainerInfo, LogStream, Position};

    use super::Assembler;
    use crate::{checkpoint::StreamPositions, decoder::LineSink, stream::ContainerShared};

    #[test]
    fn a_batch_is_cut_where_a_streams_replay_ends() {
        let info = Arc::new(ContainerInfo::new(
            ContainerId::new("a".repeat(64)).unwrap(),
            "web",
            "nginx",
        ));
        let shared = ContainerShared::new(info.clone(), StreamPositions::default(), None);
        let mut assembler = Assembler::new(info, 100, 1 << 20);
        let at = |n| Position::new(n, 0);
        assembler.line(LogStream::Stdout, at(1), b"replayed", true);
        assembler.line(LogStream::Stderr, at(2), b"live err", false);
        assembler.line(LogStream::Stdout, at(3), b"replayed too", true);
        // Stdout's replay ends: the batch so far is finished.
        assembler.line(LogStream::Stdout, at(4), b"live", false);
        assembler.line(LogStream::Stderr, at(5), b"live err too", false);
        assert!(assembler.is_full(), "a finished batch waits to be sent");
        assert_eq!(assembler.pending_lines(), 5);
        let first = assembler.take(&shared).unwrap();
        assert_eq!(first.batch.len(), 3);
        assert!(first.batch.is_replay(LogStream::Stdout));
        assert!(!first.batch.is_replay(LogStream::Stderr));
        let second = assembler.take(&shared).unwrap();
        assert_eq!(second.batch.len(), 2);
        assert!(!second.batch.is_replay(LogStream::Stdout));
        assert_eq!(second.last[LogStream::Stdout], Some(at(4)));
        assert!(assembler.take(&shared).is_none());
    }
}
