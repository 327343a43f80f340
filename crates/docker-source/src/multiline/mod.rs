//! The multiline stage: joins the lines of one event (a stack trace) into one line, per stream.
//!
//! It sits between the [`Decoder`](crate::decoder::Decoder) and the batch assembler as a
//! [`LineSink`] adapter ([`Multiline::sink`]): each container task has one [`Multiline`], with
//! the rule chosen for its container ([`MultilineRules::for_container`]) or none (every line
//! passes straight through). Each stream (stdout, stderr, TTY) has its own open event, so a
//! trace on stderr is never joined with stdout lines.
//!
//! A rule tells, for each line, one [`Step`]: it starts an event, joins the open one, joins it
//! tentatively (a blank line that belongs to the event only if the event goes on after it), or
//! stands alone. An event is emitted as one line, its lines joined with `\n`, when a line that
//! does not join comes, when it reaches `max_lines` or `max_bytes` (the next line then starts a
//! new event, counted in `log_capturer_multiline_splits_total`), when nothing came for
//! `flush_timeout`, or when the stream ends for good. Tentative lines not confirmed are emitted
//! after it, each alone.
//!
//! # Positions
//!
//! An event carries the [`Position`] of its last line, and its replay flag (see
//! [`crate::cursor`]). Lines held in an open event are not
//! passed on, so they are not in any batch and the task's read position (the last line *sent*)
//! stays before them: a reopen or a restart reads them again and rebuilds the event whole, and
//! resuming after an event's position never splits it nor sends it twice. The task therefore
//! [`discard`](Multiline::discard)s the stage whenever it discards the decoder's state (a reopen),
//! and [`flush_all`](Multiline::flush_all)s it only when the stream has ended for good.
//!
//! # Cost
//!
//! With no event open, a line that does not start one is passed on at once: no copy, no
//! allocation, and for the presets a few byte comparisons (see `presets.rs`). Held lines are
//! copied once into the stream's buffer, which is reused.

mod presets;
mod rules;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use capture_core::{LogStream, PerStream, Position};
use tokio::time::Instant;

use crate::{decoder::LineSink, metric_names};

pub use presets::MultilinePreset;
pub(crate) use rules::MultilineRules;
pub use rules::{MULTILINE_LABEL, MultilineConfig};

use presets::Phase;
use rules::Rule;

/// What a line does to its stream's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Starts an event (the open one, if any, is emitted first).
    Start,
    /// Joins the open event.
    Join,
    /// Joins the open event if a later line joins it too (a blank line inside a goroutine dump
    /// or between chained Python exceptions); otherwise it is emitted alone after the event.
    Tentative,
    /// Belongs to no event: the open one, if any, is emitted, then this line alone.
    Alone,
}

/// What the stage did since the last [`Multiline::take_counters`] (turned into metrics per
/// batch, not per line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MultilineCounters {
    /// Events of two lines or more emitted.
    pub(crate) events: u64,
    /// The lines those events joined.
    pub(crate) lines: u64,
    /// Events emitted because the next line would have passed `max_lines`.
    pub(crate) split_max_lines: u64,
    /// Events emitted because the next line would have passed `max_bytes`.
    pub(crate) split_max_bytes: u64,
}

impl MultilineCounters {
    /// Adds the counters to `log_capturer_multiline_*`.
    pub(crate) fn record(self) {
        if self.events > 0 {
            ::metrics::counter!(metric_names::MULTILINE_EVENTS_TOTAL).increment(self.events);
            ::metrics::counter!(metric_names::MULTILINE_LINES_TOTAL).increment(self.lines);
        }
        for (reason, count) in [
            ("max_lines", self.split_max_lines),
            ("max_bytes", self.split_max_bytes),
        ] {
            if count > 0 {
                ::metrics::counter!(metric_names::MULTILINE_SPLITS_TOTAL, "reason" => reason)
                    .increment(count);
            }
        }
    }
}

/// The part of an open event that is surely in it.
#[derive(Debug, Default, Clone, Copy)]
struct Committed {
    /// Its length in the event's text.
    len: usize,
    lines: u32,
    /// The position of its last line: the event's position.
    position: Position,
    /// Whether its last line is flagged as a replay: the event's flag.
    replay: bool,
}

/// One stream's open event.
#[derive(Debug, Default)]
struct Event {
    open: bool,
    phase: Phase,
    /// The lines, joined with `\n`.
    text: Vec<u8>,
    /// Every line in `text`, tentative ones included.
    lines: u32,
    committed: Committed,
    /// The tentative lines after the committed part: where each ends in `text`, its position,
    /// its replay flag.
    tentative: Vec<(usize, Position, bool)>,
    /// When its last line came (the flush deadline is `flush_timeout` after it).
    last_line_at: Option<Instant>,
}

/// A buffer grown beyond this by a huge event is released when the event is emitted.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

impl Event {
    fn begin(&mut self, phase: Phase, position: Position, line: &[u8], replay: bool) {
        self.open = true;
        self.phase = phase;
        self.text.clear();
        self.text.extend_from_slice(line);
        self.lines = 1;
        self.tentative.clear();
        self.commit(position, replay);
    }

    /// Whether `line` fits in the event under the rule's limits.
    fn fits(&self, rule: &Rule, line: &[u8]) -> bool {
        self.lines < rule.max_lines && self.text.len() + 1 + line.len() <= rule.max_bytes
    }

    fn append(&mut self, step: Step, phase: Phase, position: Position, line: &[u8], replay: bool) {
        self.phase = phase;
        self.text.push(b'\n');
        self.text.extend_from_slice(line);
        self.lines += 1;
        if step == Step::Tentative {
            self.tentative.push((self.text.len(), position, replay));
        } else {
            self.commit(position, replay);
        }
    }

    /// Everything in the event so far is surely in it (its last line at `position`).
    fn commit(&mut self, position: Position, replay: bool) {
        self.committed = Committed {
            len: self.text.len(),
            lines: self.lines,
            position,
            replay,
        };
        self.tentative.clear();
    }

    /// Passes on the committed part as one line, then each tentative line alone; closes.
    fn emit(
        &mut self,
        stream: LogStream,
        next: &mut impl LineSink,
        counters: &mut MultilineCounters,
    ) {
        let committed = self.committed;
        next.line(
            stream,
            committed.position,
            &self.text[..committed.len],
            committed.replay,
        );
        if committed.lines > 1 {
            counters.events += 1;
            counters.lines += u64::from(committed.lines);
        }
        let mut start = committed.len + 1;
        for &(end, position, replay) in &self.tentative {
            next.line(stream, position, &self.text[start..end], replay);
            start = end + 1;
        }
        self.close();
    }

    fn close(&mut self) {
        self.open = false;
        self.lines = 0;
        self.tentative.clear();
        self.last_line_at = None;
        if self.text.capacity() > KEEP_BUFFER_BYTES {
            self.text = Vec::new();
        } else {
            self.text.clear();
        }
    }
}

/// The multiline stage of one container task (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Multiline {
    /// `None`: every line passes straight through.
    rule: Option<Arc<Rule>>,
    /// Indexed by [`LogStream::index`].
    events: PerStream<Event>,
    counters: MultilineCounters,
}

impl Multiline {
    /// A stage applying `rule` (none: lines pass through).
    pub(crate) fn new(rule: Option<Arc<Rule>>) -> Multiline {
        Multiline {
            rule,
            ..Multiline::default()
        }
    }

    /// The [`LineSink`] that joins lines on their way to `next`.
    pub(crate) fn sink<'a, S: LineSink>(&'a mut self, next: &'a mut S) -> Joining<'a, S> {
        Joining { stage: self, next }
    }

    /// When the oldest open event is due to be emitted (`flush_timeout` after its last line).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let rule = self.rule.as_deref()?;
        self.events
            .values()
            .filter_map(|event| event.last_line_at)
            .min()
            .map(|last| last + rule.flush_timeout)
    }

    /// Whether an open event holds lines not passed on yet (they come before nothing the task
    /// sent, so the task is not caught up with what it decoded).
    pub(crate) fn holds_lines(&self) -> bool {
        self.events.values().any(|event| event.open)
    }

    /// Emits the events whose deadline is at or before `now` into `next`; returns whether any
    /// was.
    pub(crate) fn flush_expired(&mut self, now: Instant, next: &mut impl LineSink) -> bool {
        let Some(rule) = self.rule.as_deref() else {
            return false;
        };
        let mut flushed = false;
        for (stream, event) in LogStream::ALL.into_iter().zip(self.events.values_mut()) {
            if event
                .last_line_at
                .is_some_and(|last| last + rule.flush_timeout <= now)
            {
                event.emit(stream, next, &mut self.counters);
                flushed = true;
            }
        }
        flushed
    }

    /// Emits every open event into `next`: the stream ended for good (the container stopped).
    pub(crate) fn flush_all(&mut self, next: &mut impl LineSink) {
        for (stream, event) in LogStream::ALL.into_iter().zip(self.events.values_mut()) {
            if event.open {
                event.emit(stream, next, &mut self.counters);
            }
        }
    }

    /// Drops the open events without emitting them: the stream is reopened from the read
    /// position, which is before their lines, so they are read again.
    pub(crate) fn discard(&mut self) {
        for event in self.events.values_mut() {
            event.close();
        }
    }

    /// Takes the counters accumulated since the last call.
    pub(crate) fn take_counters(&mut self) -> MultilineCounters {
        std::mem::take(&mut self.counters)
    }

    fn line(
        &mut self,
        stream: LogStream,
        (position, replay): (Position, bool),
        message: &[u8],
        next: &mut impl LineSink,
    ) {
        let Some(rule) = self.rule.as_deref() else {
            return next.line(stream, position, message, replay);
        };
        let event = &mut self.events[stream];
        let (step, phase) = rule.step(event.open.then_some(event.phase), message);
        match step {
            Step::Alone => {
                if event.open {
                    event.emit(stream, next, &mut self.counters);
                }
                return next.line(stream, position, message, replay);
            }
            Step::Join | Step::Tentative if event.open => {
                if event.fits(rule, message) {
                    event.append(step, phase, position, message, replay);
                } else {
                    Self::split(event, rule, stream, next, &mut self.counters);
                    event.begin(phase, position, message, replay);
                }
            }
            // A rule only joins an open event; `Start` otherwise.
            Step::Start | Step::Join | Step::Tentative => {
                if event.open {
                    event.emit(stream, next, &mut self.counters);
                }
                event.begin(phase, position, message, replay);
            }
        }
        event.last_line_at = Some(Instant::now());
    }

    /// The event is full: it is emitted as it is, tentative lines included, and counted.
    fn split(
        event: &mut Event,
        rule: &Rule,
        stream: LogStream,
        next: &mut impl LineSink,
        counters: &mut MultilineCounters,
    ) {
        if event.lines >= rule.max_lines {
            counters.split_max_lines += 1;
        } else {
            counters.split_max_bytes += 1;
        }
        if let Some(&(_, position, replay)) = event.tentative.last() {
            event.commit(position, replay);
        }
        event.emit(stream, next, counters);
    }
}

/// The [`LineSink`] of [`Multiline::sink`]: lines go through the stage to `next`.
#[derive(Debug)]
pub(crate) struct Joining<'a, S> {
    stage: &'a mut Multiline,
    next: &'a mut S,
}

impl<S: LineSink> LineSink for Joining<'_, S> {
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8], replay: bool) {
        self.stage
            .line(stream, (position, replay), message, self.next);
    }
}
