//! Per-stream position bookkeeping of the decoder: ordinals, the resume skip, the replay flag,
//! and the filter of lines Docker sends again around a log rotation.
//!
//! # Why lines come twice
//!
//! dockerd 20.10 follows a json-file (or `local`) log with `followLogs`: at end of file it
//! `stat`s the file and, if it is smaller than at the previous end of file, takes it for a file
//! truncated by `max-file=1` and seeks back to its start. After every rotation the new file is
//! smaller than the old one, so the follower sends the lines it already read from the new file
//! again, from its first line: a few lines when the reader keeps up, up to the whole file when
//! it was behind. The copies carry the very same timestamps. A copy of the one line read just
//! before would get the next ordinal (same timestamp) and pass as a new line; longer runs go
//! back in time.
//!
//! # The filter
//!
//! Docker stamps each write with a nanosecond timestamp, and the pieces of one long line share
//! their first piece's. So a line whose timestamp is not after the last line delivered is either
//! a copy (its timestamp and a fingerprint of its text match a line delivered recently) or a
//! line written after the wall clock stepped back (NTP, a leap second: its timestamp is new).
//! [`RecentLines`] remembers the last [`RECENT_LINES`] delivered lines of the stream, in order,
//! so a copy is recognised exactly and a clock step is delivered. A run of copies longer than
//! that (the reader was that far behind) cannot be told from a clock step until it reaches the
//! remembered lines: its lines are delivered flagged as a replay, so a sink that deduplicates
//! (the file sink) drops those it already holds. Nothing is added per line but a comparison and
//! two stores; the search runs only for lines that go back.
//!
//! # Files the follower skipped
//!
//! A follower that is more than one file behind when Docker rotates moves from the file it
//! finished to the newest one, skipping those in between (their lines are still on disk while
//! `max-file` keeps them). The run of copies that follows every file switch starts at the new
//! file's first line; the line delivered just before that one (remembered in [`Jumps`] when the
//! time between them is over [`SWITCH_GAP_NANOS`]) is the last line of the file it left. The
//! cursor reports such a [`FileSwitch`], and the task asks Docker for the lines between the two
//! (`crate::recovery`).

use std::collections::VecDeque;

use capture_core::{LogStream, Position};

/// How many delivered lines each stream remembers (12 bytes each, allocated as lines come).
pub(crate) const RECENT_LINES: usize = 4096;

/// Two consecutive lines further apart than this may straddle files the follower skipped: at
/// least a rotated file's worth of writes lies between them. Closer lines are written too fast
/// for a file (of the sizes rotation is used with) to fit between them.
pub(crate) const SWITCH_GAP_NANOS: i64 = 1_000_000;

/// How many such jumps each stream remembers.
const JUMPS: usize = 256;

/// A place where Docker's follower moved to another file: it delivered `first` right after
/// `after` (timestamps); lines of `stream` strictly between them may be in files it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSwitch {
    pub(crate) stream: LogStream,
    pub(crate) after: i64,
    pub(crate) first: i64,
}

/// Recent jumps in a stream: `(timestamp before, timestamp after)` of consecutive delivered
/// lines more than [`SWITCH_GAP_NANOS`] apart, oldest first.
#[derive(Debug, Default)]
struct Jumps(VecDeque<(i64, i64)>);

impl Jumps {
    fn note(&mut self, before: i64, after: i64) {
        if after - before > SWITCH_GAP_NANOS {
            if self.0.len() == JUMPS {
                self.0.pop_front();
            }
            self.0.push_back((before, after));
        }
    }

    /// The line delivered just before the one at `first`, if they were a jump apart.
    fn before(&self, first: i64) -> Option<i64> {
        self.0
            .iter()
            .rev()
            .find(|(_, after)| *after == first)
            .map(|(before, _)| *before)
    }
}

/// The ordinal of a resume cursor that is a boundary (`read_from = "end"`, a start time), not
/// the position of a line: it is never looked for among the lines.
pub(crate) const BOUNDARY_ORDINAL: u32 = u32::MAX;

/// What to do with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// At or before the resume cursor: delivered before the stream was (re)opened.
    Replayed,
    /// A copy Docker sent again of a line delivered recently.
    Repeated,
    /// To be delivered; `replay`: an earlier run of the agent may have delivered it.
    Deliver { replay: bool },
    /// A line whose text is not known yet (TTY) with the timestamp of a recent line: a copy or
    /// not, [`Cursor::settle`] decides once its text is known.
    Suspect { replay: bool },
}

/// A cheap fingerprint of a line's text (its length and last eight bytes), told apart from a
/// copy's by nothing but chance: it only matters for lines with the same nanosecond timestamp.
pub(crate) fn fingerprint(text: &[u8]) -> u32 {
    let start = text.len().saturating_sub(8);
    let mut tail = [0u8; 8];
    tail[..text.len() - start].copy_from_slice(&text[start..]);
    let word = u64::from_le_bytes(tail) ^ (text.len() as u64).rotate_left(40);
    (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The last [`RECENT_LINES`] delivered lines of a stream (timestamp and fingerprint), oldest
/// first, in non-decreasing timestamp order (a clock step clears it).
#[derive(Debug, Default)]
pub(crate) struct RecentLines {
    timestamps: Vec<i64>,
    fingerprints: Vec<u32>,
    /// The physical index of the oldest entry once the ring is full.
    head: usize,
    /// Whether an entry was ever overwritten since the last clear: lines older than the oldest
    /// entry may then have been delivered.
    evicted: bool,
}

/// Whether a line is among the recent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    Found,
    Absent,
    /// Older than every remembered line, and older lines were forgotten.
    Unknown,
}

impl RecentLines {
    fn len(&self) -> usize {
        self.timestamps.len()
    }

    fn at(&self, logical: usize) -> (i64, u32) {
        let index = (self.head + logical) % self.len();
        (self.timestamps[index], self.fingerprints[index])
    }

    pub(crate) fn push(&mut self, timestamp: i64, fingerprint: u32) {
        if self.len() < RECENT_LINES {
            self.timestamps.push(timestamp);
            self.fingerprints.push(fingerprint);
        } else {
            self.timestamps[self.head] = timestamp;
            self.fingerprints[self.head] = fingerprint;
            self.head = (self.head + 1) % RECENT_LINES;
            self.evicted = true;
        }
    }

    /// Forgets everything; frees the memory of a ring that grew large.
    pub(crate) fn clear(&mut self) {
        if self.timestamps.capacity() > 256 {
            *self = RecentLines::default();
        } else {
            self.timestamps.clear();
            self.fingerprints.clear();
            self.head = 0;
            self.evicted = false;
        }
    }

    /// Whether a line with `timestamp` and `fingerprint` (any fingerprint if `None`) is among
    /// the recent ones.
    pub(crate) fn find(&self, timestamp: i64, fingerprint: Option<u32>) -> Lookup {
        let len = self.len();
        if len == 0 || timestamp < self.at(0).0 {
            return if self.evicted {
                Lookup::Unknown
            } else {
                Lookup::Absent
            };
        }
        // The first entry at or after `timestamp` (entries are in non-decreasing order).
        let (mut low, mut high) = (0, len);
        while low < high {
            let middle = (low + high) / 2;
            if self.at(middle).0 < timestamp {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        for logical in low..len {
            let (at, print) = self.at(logical);
            if at != timestamp {
                break;
            }
            if fingerprint.is_none_or(|fingerprint| print == fingerprint) {
                return Lookup::Found;
            }
        }
        Lookup::Absent
    }
}

/// One stream's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// The position of the last line seen (skipped or not), for ordinals.
    last: Option<Position>,
    /// Lines up to this position were delivered before: skip them. Cleared by the first line
    /// past it, so a wall clock that steps back later cannot make the decoder drop live lines.
    skip_through: Option<Position>,
    /// Whether a line with `skip_through`'s timestamp was seen while skipping.
    skip_seen: bool,
    /// Lines up to this timestamp may have been delivered by an earlier run of the agent: they
    /// are flagged as a replay. Cleared by the first delivered line past it.
    replay_through: Option<i64>,
    /// The last line delivered (in stream order, which a clock step makes non-monotonic).
    delivered: Option<Position>,
    recent: RecentLines,
    jumps: Jumps,
    /// Whether the stream is in a run of copies: its first line is reported once.
    rewinding: bool,
    /// A file switch seen and not taken yet.
    switch: Option<(i64, i64)>,
}

/// What [`Cursor::next`] noticed besides its verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Noticed {
    /// The line at the resume cursor was gone from Docker when the stream was reopened.
    pub(crate) cursor_gone: bool,
}

impl Cursor {
    /// A cursor for a new stream resuming after `resume`, flagging lines up to `replay_through`.
    pub(crate) fn reset(&mut self, resume: Option<Position>, replay_through: Option<i64>) {
        self.last = None;
        self.skip_through = resume;
        self.skip_seen = false;
        self.replay_through = replay_through;
        self.delivered = None;
        self.recent.clear();
        self.jumps.0.clear();
        self.rewinding = false;
        self.switch = None;
    }

    /// The position of the last line seen (skipped or not).
    pub(crate) fn last(&self) -> Option<Position> {
        self.last
    }

    /// The stream resumes right after a line at `last` (so ordinals continue).
    pub(crate) fn continue_after(&mut self, last: Option<Position>) {
        self.last = last;
    }

    fn position_for(&self, timestamp: i64) -> Position {
        match self.last {
            Some(last) => last.next_for(timestamp),
            None => Position::new(timestamp, 0),
        }
    }

    /// The position of a new line with `timestamp`, and what to do with it. `fingerprint` is its
    /// text's; `None` if the text is not known yet (a TTY line): the line is then remembered by
    /// [`Cursor::settle`] once complete.
    pub(crate) fn next(
        &mut self,
        timestamp: i64,
        fingerprint: Option<u32>,
    ) -> (Position, Verdict, Noticed) {
        let position = self.position_for(timestamp);
        let mut noticed = Noticed::default();
        if let Some(skip) = self.skip_through {
            if position <= skip {
                self.last = Some(position);
                self.skip_seen |= timestamp == skip.timestamp_nanos;
                return (position, Verdict::Replayed, noticed);
            }
            self.skip_through = None;
            noticed.cursor_gone = !self.skip_seen && skip.ordinal != BOUNDARY_ORDINAL;
        }
        if let Some(delivered) = self.delivered
            && timestamp <= delivered.timestamp_nanos
        {
            let found = self.recent.find(timestamp, fingerprint);
            if found != Lookup::Absent {
                self.note_rewind(timestamp);
            }
            match found {
                Lookup::Found if fingerprint.is_none() => {
                    self.last = Some(position);
                    let replay = self.replay_flag(timestamp);
                    return (position, Verdict::Suspect { replay }, noticed);
                }
                Lookup::Found => return (position, Verdict::Repeated, noticed),
                Lookup::Unknown => {
                    // A long run of copies or a clock step: undecided until the run reaches the
                    // remembered lines.
                    self.last = Some(position);
                    return (position, Verdict::Deliver { replay: true }, noticed);
                }
                // A clock step (or a second line with the same nanosecond timestamp).
                Lookup::Absent if timestamp < delivered.timestamp_nanos => self.recent.clear(),
                Lookup::Absent => {}
            }
        }
        self.last = Some(position);
        if let Some(fingerprint) = fingerprint {
            self.record(position, fingerprint);
        }
        let replay = self.replay_flag(timestamp);
        (position, Verdict::Deliver { replay }, noticed)
    }

    /// A run of copies (or of lines that may be copies) starts at `timestamp`: if the line
    /// delivered before its first delivery was a jump away, the follower switched files there.
    fn note_rewind(&mut self, timestamp: i64) {
        if std::mem::replace(&mut self.rewinding, true) {
            return;
        }
        if let Some(after) = self.jumps.before(timestamp) {
            self.switch = Some((after, timestamp));
        }
    }

    /// The file switch seen since the last call, if any: `(after, first)`, once the run of
    /// copies that revealed it has ended. Read back earlier, the skipped lines (older than the
    /// copies) would lower the file sink's mark below copies still to come as a replay.
    /// `ended`: the stream ended, so the run of copies did too.
    pub(crate) fn take_switch(&mut self, ended: bool) -> Option<(i64, i64)> {
        if self.rewinding && !ended {
            return None;
        }
        self.switch.take()
    }

    /// Whether a line delivered at `timestamp` is a replay; the first one past the boundary
    /// ends the replay.
    fn replay_flag(&mut self, timestamp: i64) -> bool {
        match self.replay_through {
            Some(through) if timestamp <= through => true,
            Some(_) => {
                self.replay_through = None;
                false
            }
            None => false,
        }
    }

    /// A TTY line at `position` is complete with text `fingerprint`: remembers it, unless it is
    /// `suspect` and a copy of a recent line. Returns whether it is to be delivered.
    pub(crate) fn settle(&mut self, position: Position, fingerprint: u32, suspect: bool) -> bool {
        if suspect
            && self
                .recent
                .find(position.timestamp_nanos, Some(fingerprint))
                == Lookup::Found
        {
            return false;
        }
        self.record(position, fingerprint);
        true
    }

    /// A part of a line whose earlier part was delivered already (sent early, or before a
    /// reopen): the next ordinal of the same timestamp, never a copy.
    pub(crate) fn continuation(&mut self, timestamp: i64) -> Position {
        let position = self.position_for(timestamp);
        self.last = Some(position);
        self.delivered = Some(position);
        position
    }

    /// The continuation of a line delivered in part before the stream was reopened, at
    /// `position`: remembered as delivered, so a copy of the line is recognised.
    pub(crate) fn resume_line(&mut self, position: Position, fingerprint: u32) {
        self.skip_seen = true;
        self.record(position, fingerprint);
    }

    fn record(&mut self, position: Position, fingerprint: u32) {
        if let Some(delivered) = self.delivered {
            self.jumps
                .note(delivered.timestamp_nanos, position.timestamp_nanos);
        }
        self.last = Some(position);
        self.delivered = Some(position);
        self.rewinding = false;
        self.recent.push(position.timestamp_nanos, fingerprint);
    }
}

#[cfg(test)]
mod tests;
