//! Turns a container's log stream into lines with exact positions.
//!
//! The daemon sends, with `timestamps=1`:
//!
//! - for a container without a TTY, one multiplexed frame per log message (the reader strips
//!   the 8-byte header and hands over a [`Frame`](crate::frame::Frame): stream and payload): `<timestamp> <text>\n`. A line
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
//! reopened stream (asked from the cursor's whole second) delivers no duplicate; copies Docker
//! sends again around a log rotation are skipped too, and lines an earlier run of the agent may
//! have delivered are flagged as a replay (see [`crate::cursor`]). Lines beyond `max_line_bytes`
//! are truncated and counted; bad frames are counted and skipped. The decoder never allocates
//! per line: complete lines go straight from the frame to the [`LineSink`]; only lines Docker
//! split are buffered.
//!
//! A line whose end is late is sent in parts ([`Decoder::flush_partials`]): the head, then the
//! rest with the next ordinal of the same timestamp. If the stream is reopened in between, the
//! reopened stream brings the whole line again: its head is skipped by length and the rest is
//! delivered as that next part, so nothing is lost or sent twice.

use capture_core::{LogStream, PerStream, Position};

mod partial;

use partial::{Partial, SentPart};

use crate::checkpoint::StreamPositions;
use crate::{
    cursor::{Cursor, FileSwitch, Verdict, fingerprint},
    timestamp::{MAX_PREFIX_BYTES, Prefix, scan_prefix},
};

/// The size of the pieces Docker splits long lines into (its log copier's buffer).
pub(crate) const DOCKER_PIECE_BYTES: usize = 16 * 1024;

/// Where decoded lines go.
pub(crate) trait LineSink {
    /// One complete line: its stream, position and message (no timestamp, no newline);
    /// `replay`: an earlier run of the agent may have delivered it.
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8], replay: bool);
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
    /// Copies of recent lines Docker sent again (around a log rotation), skipped.
    pub(crate) repeated: u64,
    /// Reopened streams whose cursor line Docker no longer had (rotated away): lines after it
    /// may be lost.
    pub(crate) cursor_gone: u64,
}

/// The decoder of one container's log stream (see the module documentation).
#[derive(Debug)]
pub(crate) struct Decoder {
    max_line_bytes: usize,
    cursors: PerStream<Cursor>,
    /// Stdout and stderr lines split into frames.
    partials: [Partial; 2],
    /// Whether stdout's (stderr's) last line was sent early by [`Decoder::flush_partials`]: the
    /// next piece is its rest, and a final empty piece is its end, not a line.
    flushed: [bool; 2],
    /// Per stream, a line sent in parts whose rest is not delivered yet; kept across a reopen.
    sent_parts: PerStream<Option<SentPart>>,
    tty_phase: TtyPhase,
    tty_line: Partial,
    /// A timestamp prefix (or piece-boundary look-ahead) cut by a chunk boundary.
    tty_carry: Vec<u8>,
    counters: DecodeCounters,
    /// Lines up to this timestamp are flagged as a replay (see [`Decoder::replays_through`]).
    replay_through: Option<i64>,
}

impl Decoder {
    /// A decoder cutting lines at `max_line_bytes`.
    pub(crate) fn new(max_line_bytes: usize) -> Decoder {
        Decoder {
            max_line_bytes,
            cursors: Default::default(),
            partials: [Partial::default(), Partial::default()],
            flushed: [false; 2],
            sent_parts: PerStream::default(),
            tty_phase: TtyPhase::Prefix,
            tty_line: Partial::default(),
            tty_carry: Vec::new(),
            counters: DecodeCounters::default(),
            replay_through: None,
        }
    }

    /// Flags as a replay, after every reset, the lines up to `nanos` (a timestamp: the agent's
    /// start; an earlier run of the agent may have delivered them).
    pub(crate) fn replays_through(mut self, nanos: i64) -> Decoder {
        self.replay_through = Some(nanos);
        self
    }

    /// Prepares for a new stream that starts at or before `resume` (per stream, indexed by
    /// [`LogStream::index`]): lines at or before it are skipped, lines up to the replay boundary
    /// (see [`Decoder::replays_through`]) are flagged as a replay. Open partial lines are dropped
    /// (they were not delivered, so the new stream delivers them whole); a line whose head was
    /// sent and is the last line sent (`resume`) is continued where it was left.
    pub(crate) fn reset(&mut self, resume: StreamPositions) {
        let replay_through = self.replay_through;
        for ((cursor, resume), sent) in self
            .cursors
            .values_mut()
            .zip(resume.into_array())
            .zip(self.sent_parts.values_mut())
        {
            cursor.reset(resume, replay_through);
            *sent = sent.filter(|sent| resume == Some(sent.last));
        }
        for partial in &mut self.partials {
            partial.close();
        }
        self.flushed = [false; 2];
        self.tty_line.close();
        self.tty_phase = TtyPhase::Prefix;
        self.tty_carry.clear();
    }

    /// The places where Docker's follower switched files since the last call (see
    /// [`crate::cursor`]): what lies between may be in files it skipped. `ended`: the stream
    /// ended (a switch is otherwise reported once the copies after it end).
    pub(crate) fn take_file_switches(&mut self, ended: bool) -> Vec<FileSwitch> {
        let mut switches = Vec::new();
        for stream in LogStream::ALL {
            if let Some((after, first)) = self.cursors[stream].take_switch(ended) {
                switches.push(FileSwitch {
                    stream,
                    after,
                    first,
                });
            }
        }
        switches
    }

    /// Takes the counters accumulated since the last call.
    pub(crate) fn take_counters(&mut self) -> DecodeCounters {
        std::mem::take(&mut self.counters)
    }

    /// Whether a line is waiting for its remaining pieces.
    pub(crate) fn has_partial(&self) -> bool {
        self.partials.iter().any(|p| p.open) || self.tty_line.open
    }

    /// A frame of neither stdout nor stderr (a bad stream byte, or the daemon's own error
    /// stream): counted and dropped.
    pub(crate) fn malformed_frame(&mut self) {
        self.counters.malformed += 1;
    }

    /// Opens a new line of `stream` at `timestamp` in `partial`: asks the cursor what to do with
    /// it, or continues a line sent in parts before a reopen. Returns whether it is delivered.
    fn start_line(
        cursor: &mut Cursor,
        sent: &mut Option<SentPart>,
        counters: &mut DecodeCounters,
        partial: &mut Partial,
        timestamp: i64,
        print: Option<u32>,
    ) -> bool {
        let (position, verdict, noticed) = cursor.next(timestamp, print);
        counters.cursor_gone += u64::from(noticed.cursor_gone);
        match verdict {
            Verdict::Replayed => match sent.take() {
                Some(part) if part.first == position => {
                    // The head of this line was sent before the reopen: deliver the rest.
                    let rest = part.last.next_for(timestamp);
                    cursor.resume_line(rest, print.unwrap_or_default());
                    partial.open(timestamp, rest, true, false);
                    partial.continue_from(part, part.bytes);
                    true
                }
                other => {
                    *sent = other;
                    counters.skipped += 1;
                    partial.open(timestamp, position, false, false);
                    false
                }
            },
            Verdict::Repeated => {
                counters.repeated += 1;
                partial.open(timestamp, position, false, false);
                false
            }
            Verdict::Deliver { replay } => {
                partial.open(timestamp, position, true, replay);
                true
            }
            Verdict::Suspect { replay } => {
                partial.open(timestamp, position, true, replay);
                partial.suspect = true;
                true
            }
        }
    }

    /// Sends the open line of `stream` in `partial` (complete, or its end is late) and closes
    /// it; remembers a line sent early, so its rest continues it.
    fn send_line(
        partial: &mut Partial,
        stream: LogStream,
        early: bool,
        sent: &mut Option<SentPart>,
        counters: &mut DecodeCounters,
        sink: &mut impl LineSink,
    ) {
        let delivered = partial.deliver && !partial.is_empty_rest();
        if delivered {
            counters.truncated += u64::from(partial.truncated);
            sink.line(stream, partial.position, &partial.buffer, partial.replay);
        }
        if !early {
            *sent = None;
        } else if delivered {
            *sent = Some(partial.sent_part());
        }
        partial.close();
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
    pub(crate) fn last_positions(&self) -> StreamPositions {
        PerStream::new(LogStream::ALL.map(|stream| self.cursors[stream].last()))
    }

    /// Like [`Decoder::reset`], for a stream that resumes right after lines whose positions
    /// were `last` (so ordinals continue), skipping lines at or before `resume`.
    pub(crate) fn reset_after(&mut self, last: StreamPositions, resume: StreamPositions) {
        self.reset(resume);
        for (cursor, last) in self.cursors.values_mut().zip(last.into_array()) {
            cursor.continue_after(last);
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
        let partial = &mut self.partials[index];
        let cursor = &mut self.cursors[stream];
        let sent = &mut self.sent_parts[stream];
        if std::mem::take(&mut self.flushed[index]) {
            // The rest of the line sent early.
            if complete && text.is_empty() {
                *sent = None;
                return;
            }
            match *sent {
                Some(part) => {
                    let replay = partial.replay;
                    partial.open(timestamp, cursor.continuation(timestamp), true, replay);
                    partial.continue_from(part, 0);
                }
                // The rest of a line that is not delivered (skipped, or a copy).
                None => partial.open(timestamp, Position::new(timestamp, 0), false, false),
            }
        }
        if !partial.open {
            if complete {
                // The common case, without copying the text.
                let (position, verdict, noticed) = cursor.next(timestamp, Some(fingerprint(text)));
                self.counters.cursor_gone += u64::from(noticed.cursor_gone);
                match verdict {
                    Verdict::Deliver { replay } | Verdict::Suspect { replay } => {
                        let cut = text.len().min(max);
                        self.counters.truncated += u64::from(cut < text.len());
                        sink.line(stream, position, &text[..cut], replay);
                    }
                    Verdict::Replayed => self.counters.skipped += 1,
                    Verdict::Repeated => self.counters.repeated += 1,
                }
                return;
            }
            let print = Some(fingerprint(text));
            Self::start_line(cursor, sent, &mut self.counters, partial, timestamp, print);
        }
        partial.append(text, max);
        if complete {
            Self::send_line(partial, stream, false, sent, &mut self.counters, sink);
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
                            // The text is not known yet: the line is remembered once complete.
                            let tty = LogStream::Tty;
                            Self::start_line(
                                &mut self.cursors[tty],
                                &mut self.sent_parts[tty],
                                &mut self.counters,
                                &mut self.tty_line,
                                timestamp,
                                None,
                            );
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
        let cursor = &mut self.cursors[LogStream::Tty];
        let sent = &mut self.sent_parts[LogStream::Tty];
        if line.buffer.is_empty() && !line.truncated && line.skip == 0 {
            // The whole line is in this chunk: no copy.
            let text = last_text.strip_suffix(b"\r").unwrap_or(last_text);
            if line.deliver && !line.continuation {
                line.deliver = cursor.settle(line.position, fingerprint(text), line.suspect);
                self.counters.repeated += u64::from(!line.deliver);
            }
            if line.deliver && !(line.continuation && text.is_empty()) {
                let cut = text.len().min(self.max_line_bytes);
                self.counters.truncated += u64::from(cut < text.len());
                sink.line(LogStream::Tty, line.position, &text[..cut], line.replay);
            }
            *sent = None;
            line.close();
            return;
        }
        line.append(last_text, self.max_line_bytes);
        if line.buffer.last() == Some(&b'\r') {
            line.buffer.pop();
        }
        Self::settle_tty(line, cursor, &mut self.counters);
        Self::send_line(line, LogStream::Tty, false, sent, &mut self.counters, sink);
    }

    /// Remembers a complete (or flushed) TTY line, or finds it is a copy and does not send it.
    fn settle_tty(line: &mut Partial, cursor: &mut Cursor, counters: &mut DecodeCounters) {
        if line.deliver && !line.continuation {
            line.deliver = cursor.settle(line.position, fingerprint(&line.buffer), line.suspect);
            counters.repeated += u64::from(!line.deliver);
        }
    }

    /// Sends the lines still waiting for pieces as they are: their end did not come in time, or
    /// the stream ended for good (the container stopped). Pieces that still come are the rest of
    /// the line, sent as a line of its own with the next ordinal.
    pub(crate) fn flush_partials(&mut self, sink: &mut impl LineSink) {
        for (index, stream) in [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .enumerate()
        {
            let partial = &mut self.partials[index];
            if partial.open {
                let sent = &mut self.sent_parts[stream];
                Self::send_line(partial, stream, true, sent, &mut self.counters, sink);
                self.flushed[index] = true;
            }
        }
        if self.tty_line.open {
            let tty = LogStream::Tty;
            let line = &mut self.tty_line;
            let sent = &mut self.sent_parts[tty];
            Self::settle_tty(line, &mut self.cursors[tty], &mut self.counters);
            let (timestamp, deliver, replay) = (line.timestamp, line.deliver, line.replay);
            Self::send_line(line, LogStream::Tty, true, sent, &mut self.counters, sink);
            // The TTY phase stays as it is: more text of the line (and Docker's piece
            // boundaries) may follow, as a line of its own with the next ordinal.
            match *sent {
                Some(part) => {
                    let position = self.cursors[tty].continuation(timestamp);
                    line.open(timestamp, position, deliver, replay);
                    line.continue_from(part, 0);
                }
                None => {
                    line.open(timestamp, Position::new(timestamp, 0), false, false);
                    line.continuation = true;
                }
            }
        }
    }
}
