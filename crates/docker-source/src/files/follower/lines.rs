//! The file follower's line path: decoded entries go through the multiline stage (see
//! `multiline`) to the batch assembler, a TTY container's lines first to its one stream.
//!
//! The stage holds the lines of an open event; they are in no batch, so the read position (the
//! last line sent) stays before them and no resume hint is recorded while the stage holds any
//! (`hint_here`): a reopen or a restart reads them again and rebuilds the event whole.

use capture_core::{LogStream, Position};
use tokio::time::Instant;

use super::FileFollower;
use crate::{
    assembler::Assembler,
    decoder::{Decoder, LineSink},
    files::Entry,
    multiline::Multiline,
};

/// Routes a TTY container's lines (stored by Docker as stdout, ending in `\r`) to its one
/// stream, as the API path decodes them.
pub(super) struct TtyLines<'a, S>(pub(super) &'a mut S);

impl<S: LineSink> LineSink for TtyLines<'_, S> {
    fn line(&mut self, _stream: LogStream, position: Position, message: &[u8], replay: bool) {
        let message = message.strip_suffix(b"\r").unwrap_or(message);
        self.0.line(LogStream::Tty, position, message, replay);
    }
}

/// Decodes one entry through the multiline stage into the assembler (the follower's fields,
/// apart from the parser that still borrows the entry).
pub(super) fn decode(
    tty: bool,
    decoder: &mut Decoder,
    multiline: &mut Multiline,
    assembler: &mut Assembler,
    entry: Entry<'_>,
) {
    let mut joining = multiline.sink(assembler);
    let (stream, timestamp, text) = (entry.stream, entry.timestamp_nanos, entry.text);
    if tty {
        let sink = &mut TtyLines(&mut joining);
        decoder.entry(LogStream::Stdout, timestamp, text, entry.complete, sink);
    } else {
        decoder.entry(stream, timestamp, text, entry.complete, &mut joining);
    }
}

impl FileFollower {
    /// Ends the partial lines (their stream went quiet, or ended) into the multiline stage.
    pub(super) fn flush_partials(&mut self) {
        let mut joining = self.multiline.sink(&mut self.assembler);
        if self.tty {
            self.decoder.flush_partials(&mut TtyLines(&mut joining));
        } else {
            self.decoder.flush_partials(&mut joining);
        }
        self.partial_since = None;
    }

    /// The stream ended for good (the container stopped, was removed or released): the partial
    /// lines and the open events are complete.
    pub(super) fn flush_all_lines(&mut self) {
        self.flush_partials();
        self.multiline.flush_all(&mut self.assembler);
    }

    /// Emits the events whose `flush_timeout` passed; returns whether any was.
    pub(super) fn flush_expired_events(&mut self, now: Instant) -> bool {
        self.multiline.flush_expired(now, &mut self.assembler)
    }

    /// Whether decoded lines are held back (a partial line, an open multiline event): lines
    /// before the newest one sent may then still be unsent.
    pub(super) fn holds_lines(&self) -> bool {
        self.decoder.has_partial() || self.multiline.holds_lines()
    }

    /// Drops what the decoder's side holds: the files are reopened from the read position,
    /// which is before those lines, so they are read again.
    pub(super) fn discard_held(&mut self) {
        self.multiline.discard();
        self.assembler.discard();
    }
}
