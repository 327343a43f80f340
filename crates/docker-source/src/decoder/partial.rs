//! A line being assembled from the pieces Docker split it into, and the record of a line sent
//! in parts (see the [decoder](super)'s documentation).

use capture_core::Position;

use super::DOCKER_PIECE_BYTES;

/// A line sent in parts whose rest has not been delivered yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct SentPart {
    /// The position of the line (its first part).
    pub(super) first: Position,
    /// The position of its last part sent.
    pub(super) last: Position,
    /// How many bytes of its text were sent (before truncation).
    pub(super) bytes: usize,
}

/// A line being assembled from pieces.
#[derive(Debug, Default)]
pub(super) struct Partial {
    /// Whether a line is open.
    pub(super) open: bool,
    /// The open line's timestamp (its first piece's).
    pub(super) timestamp: i64,
    pub(super) position: Position,
    /// Whether the open line is delivered (not at or before the cursor).
    pub(super) deliver: bool,
    /// Whether text beyond `max_line_bytes` was cut.
    pub(super) truncated: bool,
    /// Whether the line continues one sent early by
    /// [`Decoder::flush_partials`](super::Decoder::flush_partials): if nothing but its end
    /// comes, there is no line to send.
    pub(super) continuation: bool,
    /// Whether the line is flagged as a replay.
    pub(super) replay: bool,
    /// A TTY line with the timestamp of a recent line: whether it is a copy is decided once its
    /// text is known.
    pub(super) suspect: bool,
    /// The position of the line's first part (this one, unless it continues a part sent).
    pub(super) first: Position,
    /// Bytes of the line's text seen so far, parts sent before included.
    pub(super) seen: usize,
    /// Bytes at the start of the text still to be dropped: a part sent before a reopen.
    pub(super) skip: usize,
    pub(super) buffer: Vec<u8>,
}

impl Partial {
    pub(super) fn open(&mut self, timestamp: i64, position: Position, deliver: bool, replay: bool) {
        self.open = true;
        self.timestamp = timestamp;
        self.position = position;
        self.deliver = deliver;
        self.truncated = false;
        self.continuation = false;
        self.replay = replay;
        self.suspect = false;
        self.first = position;
        self.seen = 0;
        self.skip = 0;
        self.buffer.clear();
    }

    /// Makes the open line the rest of `sent`: `seen` bytes of it are delivered already, and
    /// `skip` of them come again (a reopen).
    pub(super) fn continue_from(&mut self, sent: SentPart, skip: usize) {
        self.continuation = true;
        self.first = sent.first;
        self.seen = sent.bytes - skip;
        self.skip = skip;
    }

    /// Where the line stands once this part is sent.
    pub(super) fn sent_part(&self) -> SentPart {
        SentPart {
            first: self.first,
            last: self.position,
            bytes: self.seen,
        }
    }

    /// Whether, this being the rest of a line sent in parts, nothing is left to send.
    pub(super) fn is_empty_rest(&self) -> bool {
        self.continuation && self.buffer.is_empty() && !self.truncated
    }

    pub(super) fn append(&mut self, text: &[u8], max_line_bytes: usize) {
        self.seen += text.len();
        if !self.deliver {
            return;
        }
        let dropped = self.skip.min(text.len());
        self.skip -= dropped;
        let text = &text[dropped..];
        let room = max_line_bytes.saturating_sub(self.buffer.len());
        if text.len() > room {
            self.truncated = true;
        }
        self.buffer.extend_from_slice(&text[..text.len().min(room)]);
    }

    pub(super) fn close(&mut self) {
        self.open = false;
        // A huge line's buffer is not kept around for the stream's life.
        if self.buffer.capacity() > 4 * DOCKER_PIECE_BYTES {
            self.buffer = Vec::new();
        } else {
            self.buffer.clear();
        }
    }
}
