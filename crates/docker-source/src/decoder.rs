//! Turns a container's log stream into lines with exact positions.
//!
//! The daemon sends, with `timestamps=1`:
//!
//! - for a container without a TTY, one multiplexed frame per log message (bollard strips the
//!   8-byte header and hands over the stream and the payload): `<timestamp> <text>\n`. A line
//!   longer than Docker's 16 KiB copy buffer arrives as several frames, each with its own
//!   timestamp prefix, all but the last without the trailing newline; they are merged back per
//!   stream.
//! - for a TTY container, one raw byte stream: `<timestamp> <text>\r\n` back to back, chunked
//!   anyhow. A line split by Docker carries the next piece's timestamp prefix in the middle of
//!   the text, exactly [`DOCKER_PIECE_BYTES`] after the previous one; it is detected there and
//!   removed.
//!
//! Each line gets the [`Position`] `(timestamp, ordinal)` (ordinal: earlier lines of the stream
//! with the same timestamp). Lines at or before a stream's resume cursor are skipped, so a
//! reopened stream (asked from the cursor's whole second) delivers no duplicate. Lines beyond
//! `max_line_bytes` are truncated and counted; bad frames are counted and skipped. The decoder
//! never allocates per line: complete lines go straight from the frame to the [`LineSink`];
//! only lines Docker split are buffered.

use capture_core::{LogStream, Position};

use crate::timestamp::{MAX_PREFIX_BYTES, Prefix, scan_prefix};

/// The size of the pieces Docker splits long lines into (its log copier's buffer).
pub(crate) const DOCKER_PIECE_BYTES: usize = 16 * 1024;

/// Where decoded lines go.
pub(crate) trait LineSink {
    /// One complete line: its stream, position and message (no timestamp, no newline).
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8]);
}

/// Per-stream position bookkeeping.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// The position of the last line seen (skipped or not), for ordinals.
    last: Option<Position>,
    /// Lines up to this position were delivered before: skip them. Cleared by the first line
    /// past it, so a wall clock that steps back later cannot make the decoder drop live lines.
    skip_through: Option<Position>,
}

impl Cursor {
    /// The position of a new line with `timestamp`, and whether it is to be delivered.
    fn next(&mut self, timestamp: i64) -> (Position, bool) {
        let position = match self.last {
            Some(last) => last.next_for(timestamp),
            None => Position::new(timestamp, 0),
        };
        self.last = Some(position);
        if let Some(skip) = self.skip_through {
            if position <= skip {
                return (position, false);
            }
            self.skip_through = None;
        }
        (position, true)
    }
}

/// A line being assembled from pieces.
#[derive(Debug, Default)]
struct Partial {
    /// Whether a line is open.
    open: bool,
    /// The open line's timestamp (its first piece's).
    timestamp: i64,
    position: Position,
    /// Whether the open line is delivered (not at or before the cursor).
    deliver: bool,
    /// Whether text beyond `max_line_bytes` was cut.
    truncated: bool,
    /// Whether the line continues one sent early by [`Decoder::flush_partials`]: if nothing but
    /// its end comes, there is no line to send.
    continuation: bool,
    buffer: Vec<u8>,
}

impl Partial {
    fn open(&mut self, timestamp: i64, position: Position, deliver: bool) {
        self.open = true;
        self.timestamp = timestamp;
        self.position = position;
        self.deliver = deliver;
        self.truncated = false;
        self.continuation = false;
        self.buffer.clear();
    }

    fn append(&mut self, text: &[u8], max_line_bytes: usize) {
        if !self.deliver {
            return;
        }
        let room = max_line_bytes.saturating_sub(self.buffer.len());
        if text.len() > room {
            self.truncated = true;
        }
        self.buffer.extend_from_slice(&text[..text.len().min(room)]);
    }

    fn close(&mut self) {
        self.open = false;
        // A huge line's buffer is not kept around for the stream's life.
        if self.buffer.capacity() > 4 * DOCKER_PIECE_BYTES {
            self.buffer = Vec::new();
        } else {
            self.buffer.clear();
        }
    }
}

/// Where the TTY parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TtyPhase {
    /// At the start of a line: a timestamp prefix comes.
    Prefix,
    /// In a line's text; `piece` bytes since the last timestamp prefix.
    Text { piece: usize },
    /// At a piece boundary: a timestamp prefix may come (a line Docker split) or more text.
    Boundary,
    /// In a malformed line: skip to its end.
    Skip,
}

/// Counters the owner turns into metrics (per batch, not per line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeCounters {
    /// Lines cut at `max_line_bytes`.
    pub(crate) truncated: u64,
    /// Frames or lines dropped as malformed (bad stream byte, bad timestamp).
    pub(crate) malformed: u64,
    /// Lines skipped as at or before the resume cursor.
    pub(crate) skipped: u64,
}

/// The decoder of one container's log stream (see the module documentation).
#[derive(Debug)]
pub(crate) struct Decoder {
    max_line_bytes: usize,
    cursors: [Cursor; 3],
    /// Stdout and stderr lines split into frames.
    partials: [Partial; 2],
    /// Whether stdout's (stderr's) last line was sent early by [`Decoder::flush_partials`]: a
    /// final empty piece that still comes is its end, not a line.
    flushed: [bool; 2],
    tty_phase: TtyPhase,
    tty_line: Partial,
    /// A timestamp prefix (or piece-boundary look-ahead) cut by a chunk boundary.
    tty_carry: Vec<u8>,
    counters: DecodeCounters,
}

impl Decoder {
    /// A decoder cutting lines at `max_line_bytes`.
    pub(crate) fn new(max_line_bytes: usize) -> Decoder {
        Decoder {
            max_line_bytes,
            cursors: [Cursor::default(); 3],
            partials: [Partial::default(), Partial::default()],
            flushed: [false; 2],
            tty_phase: TtyPhase::Prefix,
            tty_line: Partial::default(),
            tty_carry: Vec::new(),
            counters: DecodeCounters::default(),
        }
    }

    /// Prepares for a new stream that starts at or before `resume` (per stream, indexed by
    /// [`LogStream::index`]): lines at or before it are skipped. Open partial lines are dropped
    /// (they were not delivered, so the new stream delivers them whole).
    pub(crate) fn reset(&mut self, resume: [Option<Position>; 3]) {
        for (cursor, resume) in self.cursors.iter_mut().zip(resume) {
            *cursor = Cursor {
                last: None,
                skip_through: resume,
            };
        }
        for partial in &mut self.partials {
            partial.close();
        }
        self.flushed = [false; 2];
        self.tty_line.close();
        self.tty_phase = TtyPhase::Prefix;
        self.tty_carry.clear();
    }

    /// Takes the counters accumulated since the last call.
    pub(crate) fn take_counters(&mut self) -> DecodeCounters {
        std::mem::take(&mut self.counters)
    }

    /// Whether a line is waiting for its remaining pieces.
    pub(crate) fn has_partial(&self) -> bool {
        self.partials.iter().any(|p| p.open) || self.tty_line.open
    }

    /// A frame that bollard could not attribute to stdout or stderr (a bad stream byte, or the
    /// daemon's own error stream): counted and dropped.
    pub(crate) fn malformed_frame(&mut self) {
        self.counters.malformed += 1;
    }

    /// One multiplexed frame of `stream` (stdout or stderr).
    pub(crate) fn frame(&mut self, stream: LogStream, payload: &[u8], sink: &mut impl LineSink) {
        let index = match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
            LogStream::Tty => return self.tty(payload, sink),
        };
        let Prefix::Found(timestamp, prefix_len) = scan_prefix(payload) else {
            self.counters.malformed += 1;
            return;
        };
        let text = &payload[prefix_len..];
        let (text, complete) = match text.split_last() {
            Some((b'\n', rest)) => (rest, true),
            _ => (text, false),
        };
        self.piece(stream, index, timestamp, text, complete, sink);
    }

    /// One entry of a log file (stdout or stderr): its timestamp, its text without the newline,
    /// and whether it ends a line (`false` for the pieces Docker split a long line into).
    /// Merged, capped and skipped exactly like the frames of the API stream.
    pub(crate) fn entry(
        &mut self,
        stream: LogStream,
        timestamp: i64,
        text: &[u8],
        complete: bool,
        sink: &mut impl LineSink,
    ) {
        let index = match stream {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
            LogStream::Tty => {
                self.counters.malformed += 1;
                return;
            }
        };
        self.piece(stream, index, timestamp, text, complete, sink);
    }

    /// The position of the last line seen on each stream (delivered or skipped).
    pub(crate) fn last_positions(&self) -> [Option<Position>; 3] {
        self.cursors.map(|cursor| cursor.last)
    }

    /// Like [`Decoder::reset`], for a stream that resumes right after lines whose positions
    /// were `last` (so ordinals continue), skipping lines at or before `resume`.
    pub(crate) fn reset_after(
        &mut self,
        last: [Option<Position>; 3],
        resume: [Option<Position>; 3],
    ) {
        self.reset(resume);
        for (cursor, last) in self.cursors.iter_mut().zip(last) {
            cursor.last = last;
        }
    }

    /// A frame's or an entry's text, merged with the pieces before it.
    fn piece(
        &mut self,
        stream: LogStream,
        index: usize,
        timestamp: i64,
        text: &[u8],
        complete: bool,
        sink: &mut impl LineSink,
    ) {
        let max = self.max_line_bytes;
        if std::mem::take(&mut self.flushed[index]) && complete && text.is_empty() {
            return;
        }
        let partial = &mut self.partials[index];
        if partial.open {
            partial.append(text, max);
            if complete {
                if partial.deliver {
                    self.counters.truncated += u64::from(partial.truncated);
                    sink.line(stream, partial.position, &partial.buffer);
                }
                partial.close();
            }
            return;
        }
        let (position, deliver) = self.cursors[stream.index()].next(timestamp);
        if complete {
            if deliver {
                let cut = text.len().min(max);
                self.counters.truncated += u64::from(cut < text.len());
                sink.line(stream, position, &text[..cut]);
            } else {
                self.counters.skipped += 1;
            }
        } else {
            if !deliver {
                self.counters.skipped += 1;
            }
            partial.open(timestamp, position, deliver);
            partial.append(text, max);
        }
    }

    /// A chunk of a TTY container's raw stream.
    pub(crate) fn tty(&mut self, chunk: &[u8], sink: &mut impl LineSink) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match self.tty_phase {
                TtyPhase::Prefix => {
                    let (scan, _) = self.scan_tty_prefix(&mut rest);
                    match scan {
                        Prefix::Found(timestamp, _) => {
                            let (position, deliver) =
                                self.cursors[LogStream::Tty.index()].next(timestamp);
                            if !deliver {
                                self.counters.skipped += 1;
                            }
                            self.tty_line.open(timestamp, position, deliver);
                            self.tty_phase = TtyPhase::Text { piece: 0 };
                        }
                        Prefix::NeedMore => return,
                        Prefix::Invalid => {
                            self.counters.malformed += 1;
                            self.tty_phase = TtyPhase::Skip;
                        }
                    }
                }
                TtyPhase::Boundary => {
                    let (scan, carried) = self.scan_tty_prefix(&mut rest);
                    match scan {
                        // The next piece of a line Docker split: its prefix is not text.
                        Prefix::Found(..) => self.tty_phase = TtyPhase::Text { piece: 0 },
                        Prefix::NeedMore => return,
                        // Text that merely continues: what was held back (no newline, no
                        // space) belongs to the line.
                        Prefix::Invalid => {
                            self.tty_line.append(&carried, self.max_line_bytes);
                            self.tty_phase = TtyPhase::Text {
                                piece: carried.len(),
                            };
                        }
                    }
                }
                TtyPhase::Text { piece } => {
                    let limit = rest.len().min(DOCKER_PIECE_BYTES - piece);
                    match rest[..limit].iter().position(|&b| b == b'\n') {
                        Some(end) => {
                            self.finish_tty_line(&rest[..end], sink);
                            rest = &rest[end + 1..];
                            self.tty_phase = TtyPhase::Prefix;
                        }
                        None => {
                            self.tty_line.append(&rest[..limit], self.max_line_bytes);
                            rest = &rest[limit..];
                            let piece = piece + limit;
                            self.tty_phase = if piece == DOCKER_PIECE_BYTES {
                                TtyPhase::Boundary
                            } else {
                                TtyPhase::Text { piece }
                            };
                        }
                    }
                }
                TtyPhase::Skip => match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        rest = &rest[end + 1..];
                        self.tty_phase = TtyPhase::Prefix;
                    }
                    None => return,
                },
            }
        }
    }

    /// Scans a timestamp prefix at the start of `rest`, continuing one a previous chunk began.
    /// On `Found`, the prefix is consumed from `rest`. On `NeedMore`, all of `rest` is held back.
    /// On `Invalid`, `rest` is left untouched and the bytes held back from earlier chunks are
    /// returned (they hold no newline and no space, else the scan would have decided then).
    fn scan_tty_prefix(&mut self, rest: &mut &[u8]) -> (Prefix, Vec<u8>) {
        if self.tty_carry.is_empty() {
            let scan = scan_prefix(rest);
            match scan {
                Prefix::Found(_, len) => *rest = &rest[len..],
                Prefix::NeedMore => {
                    self.tty_carry.extend_from_slice(rest);
                    *rest = &[];
                }
                Prefix::Invalid => {}
            }
            return (scan, Vec::new());
        }
        let held = self.tty_carry.len();
        let take = rest.len().min(MAX_PREFIX_BYTES - held);
        self.tty_carry.extend_from_slice(&rest[..take]);
        let scan = scan_prefix(&self.tty_carry);
        match scan {
            Prefix::Found(_, len) => {
                *rest = &rest[len - held..];
                self.tty_carry.clear();
                (scan, Vec::new())
            }
            Prefix::NeedMore => {
                *rest = &rest[take..];
                (scan, Vec::new())
            }
            Prefix::Invalid => {
                self.tty_carry.truncate(held);
                (scan, std::mem::take(&mut self.tty_carry))
            }
        }
    }

    fn finish_tty_line(&mut self, last_text: &[u8], sink: &mut impl LineSink) {
        let line = &mut self.tty_line;
        let nothing = line.buffer.is_empty() && matches!(last_text, b"" | b"\r");
        if line.deliver && !(line.continuation && nothing) {
            let max = self.max_line_bytes;
            if line.buffer.is_empty() && !line.truncated {
                // The whole line is in this chunk: no copy.
                let text = last_text.strip_suffix(b"\r").unwrap_or(last_text);
                let cut = text.len().min(max);
                self.counters.truncated += u64::from(cut < text.len());
                sink.line(LogStream::Tty, line.position, &text[..cut]);
            } else {
                line.append(last_text, max);
                if line.buffer.last() == Some(&b'\r') {
                    line.buffer.pop();
                }
                self.counters.truncated += u64::from(line.truncated);
                sink.line(LogStream::Tty, line.position, &line.buffer);
            }
        }
        line.close();
    }

    /// Sends the lines still waiting for pieces as they are: their end did not come in time, or
    /// the stream ended for good (the container stopped). Pieces that still come start a new
    /// line with the next ordinal.
    pub(crate) fn flush_partials(&mut self, sink: &mut impl LineSink) {
        for (index, stream) in [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .enumerate()
        {
            let partial = &mut self.partials[index];
            if partial.open {
                if partial.deliver {
                    self.counters.truncated += u64::from(partial.truncated);
                    sink.line(stream, partial.position, &partial.buffer);
                }
                partial.close();
                self.flushed[index] = true;
            }
        }
        if self.tty_line.open {
            let line = &mut self.tty_line;
            if line.deliver && !(line.continuation && line.buffer.is_empty()) {
                self.counters.truncated += u64::from(line.truncated);
                sink.line(LogStream::Tty, line.position, &line.buffer);
            }
            // The TTY phase stays as it is: more text of the line (and Docker's piece
            // boundaries) may follow, as a line of its own with the next ordinal.
            let timestamp = line.timestamp;
            line.close();
            let (position, deliver) = self.cursors[LogStream::Tty.index()].next(timestamp);
            line.open(timestamp, position, deliver);
            line.continuation = true;
        }
    }
}
