//! Batches of log lines and their acknowledgements.

use std::sync::Arc;

use crate::{ContainerId, ContainerInfo, LogStream, PerStream, Position};

/// Lines of one container, in the order they were read, in one contiguous UTF-8 buffer.
///
/// This is the unit that crosses threads and channels: the source builds a batch on its stream
/// thread and sends it whole, so the cost of a channel send and a wake-up is paid per batch,
/// not per line. Within a batch the lines of each stream are in stream order.
///
/// # Replay
///
/// A batch says, per stream, whether its lines are a *replay*: lines the source read again after
/// opening a stream (an agent restart, a reopen) that an earlier run may already have delivered,
/// which the source cannot tell apart. A sink that deduplicates (the file sink) skips replayed
/// lines at or below what it already holds; every other line is *live* and is written even if
/// its timestamp goes back (a clock step). The flag costs nothing per line: the source cuts its
/// batches where a stream's replay ends, so it is one bit per stream of the batch.
#[derive(Debug, Clone)]
pub struct EventBatch {
    container: Arc<ContainerInfo>,
    /// Every message, back to back; `lines[i].end` is where message `i` ends.
    text: String,
    lines: Vec<LineEntry>,
    invalid_utf8_lines: u32,
    /// Bit `stream.index()` set: the lines of that stream are a replay (see the type's docs).
    replay: u8,
}

#[derive(Debug, Clone, Copy)]
struct LineEntry {
    stream: LogStream,
    position: Position,
    end: u32,
}

/// One line of an [`EventBatch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The stream the line was written to.
    pub stream: LogStream,
    /// Docker's timestamp and the ordinal among equal timestamps.
    pub position: Position,
    /// The message, without Docker's timestamp and without the trailing newline.
    pub message: &'a str,
}

/// Sent back to the source once a batch is delivered to every sink (or durably buffered for it):
/// the source may resume `stream` of `container_id` after `position`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acknowledgement {
    /// The container whose cursor moves.
    pub container_id: ContainerId,
    /// The stream whose cursor moves.
    pub stream: LogStream,
    /// The position of the last delivered line of that stream.
    pub position: Position,
}

impl EventBatch {
    /// The container every line of this batch came from.
    pub fn container(&self) -> &Arc<ContainerInfo> {
        &self.container
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the batch has no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The total size of the messages in bytes (what `log_capturer_bytes_total` counts).
    pub fn message_bytes(&self) -> usize {
        self.text.len()
    }

    /// How many lines had invalid UTF-8 replaced by U+FFFD when the batch was built.
    pub fn invalid_utf8_lines(&self) -> u32 {
        self.invalid_utf8_lines
    }

    /// Whether the lines of `stream` in this batch are a replay: they may have been delivered
    /// before (see the type's documentation).
    pub fn is_replay(&self, stream: LogStream) -> bool {
        self.replay & (1 << stream.index()) != 0
    }

    /// Marks the lines of every stream of this batch as a replay (for example when a batch is
    /// read back from a disk buffer after a restart: a sink may already have taken it).
    pub fn mark_replay(&mut self) {
        self.replay = (1 << LogStream::ALL.len()) - 1;
    }

    /// The line at `index`, if any.
    pub fn line(&self, index: usize) -> Option<LogLine<'_>> {
        let entry = self.lines.get(index)?;
        let start = match index {
            0 => 0,
            _ => self.lines[index - 1].end as usize,
        };
        Some(LogLine {
            stream: entry.stream,
            position: entry.position,
            message: &self.text[start..entry.end as usize],
        })
    }

    /// The lines in the order they were read.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = LogLine<'_>> + '_ {
        let mut start = 0usize;
        self.lines.iter().map(move |entry| {
            let end = entry.end as usize;
            let message = &self.text[start..end];
            start = end;
            LogLine {
                stream: entry.stream,
                position: entry.position,
                message,
            }
        })
    }

    /// The acknowledgements that delivering this batch earns: the last position of each stream
    /// present in it.
    pub fn acknowledgements(&self) -> impl Iterator<Item = Acknowledgement> + '_ {
        let mut last = PerStream::<Option<Position>>::default();
        for entry in &self.lines {
            last[entry.stream] = Some(entry.position);
        }
        LogStream::ALL.into_iter().filter_map(move |stream| {
            last[stream].map(|position| Acknowledgement {
                container_id: self.container.id.clone(),
                stream,
                position,
            })
        })
    }
}

/// Builds an [`EventBatch`] line by line, copying each message once into the batch's buffer.
#[derive(Debug)]
pub struct EventBatchBuilder {
    batch: EventBatch,
}

impl EventBatchBuilder {
    /// An empty batch for lines of `container`.
    pub fn new(container: Arc<ContainerInfo>) -> Self {
        Self::with_capacity(container, 0, 0)
    }

    /// An empty batch with room for `lines` lines and `bytes` bytes of messages.
    pub fn with_capacity(container: Arc<ContainerInfo>, lines: usize, bytes: usize) -> Self {
        EventBatchBuilder {
            batch: EventBatch {
                container,
                text: String::with_capacity(bytes),
                lines: Vec::with_capacity(lines),
                invalid_utf8_lines: 0,
                replay: 0,
            },
        }
    }

    /// Appends a line. Invalid UTF-8 is replaced by U+FFFD and counted; returns whether the
    /// message was valid UTF-8.
    ///
    /// Batches are meant to stay far below 4 GiB of text (the source flushes them by size);
    /// beyond that the offsets saturate rather than panic.
    pub fn push(&mut self, stream: LogStream, position: Position, message: &[u8]) -> bool {
        let valid = match std::str::from_utf8(message) {
            Ok(text) => {
                self.batch.text.push_str(text);
                true
            }
            Err(_) => {
                self.batch.text.push_str(&String::from_utf8_lossy(message));
                self.batch.invalid_utf8_lines += 1;
                false
            }
        };
        let end = u32::try_from(self.batch.text.len()).unwrap_or(u32::MAX);
        self.batch.lines.push(LineEntry {
            stream,
            position,
            end,
        });
        valid
    }

    /// Marks the lines of `stream` as a replay, or as live (the default). It applies to the
    /// stream's lines of the whole batch: a source cuts its batch where a stream's replay ends.
    pub fn set_replay(&mut self, stream: LogStream, replay: bool) {
        let bit = 1 << stream.index();
        if replay {
            self.batch.replay |= bit;
        } else {
            self.batch.replay &= !bit;
        }
    }

    /// Whether the lines of `stream` are marked as a replay.
    pub fn is_replay(&self, stream: LogStream) -> bool {
        self.batch.is_replay(stream)
    }

    /// The container the batch is for. A rename needs a new builder (and a new batch).
    pub fn container(&self) -> &Arc<ContainerInfo> {
        &self.batch.container
    }

    /// The number of lines pushed so far.
    pub fn len(&self) -> usize {
        self.batch.lines.len()
    }

    /// Whether no line has been pushed.
    pub fn is_empty(&self) -> bool {
        self.batch.lines.is_empty()
    }

    /// The bytes of message text pushed so far.
    pub fn message_bytes(&self) -> usize {
        self.batch.text.len()
    }

    /// The finished batch.
    pub fn finish(self) -> EventBatch {
        self.batch
    }
}
