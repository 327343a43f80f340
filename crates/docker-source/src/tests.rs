//! Unit tests of the decoder (scripted byte streams, split at every boundary) and the stream
//! helpers.

use capture_core::{LogStream, Position};

use crate::checkpoint::StreamPositions;
use crate::{
    decoder::{DOCKER_PIECE_BYTES, DecodeCounters, Decoder, LineSink},
    stream::since_seconds,
};

/// 2026-11-24T14:26:08Z in nanoseconds.
pub(crate) const BASE_NANOS: i64 = 1_795_530_368_000_000_000;

#[derive(Debug, Default)]
pub(crate) struct Collected(
    pub(crate) Vec<(LogStream, Position, String)>,
    pub(crate) Vec<bool>,
);

impl LineSink for Collected {
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8], replay: bool) {
        self.0.push((
            stream,
            position,
            String::from_utf8_lossy(message).into_owned(),
        ));
        self.1.push(replay);
    }
}

impl Collected {
    pub(crate) fn texts(&self) -> Vec<&str> {
        self.0.iter().map(|line| line.2.as_str()).collect()
    }
}

pub(crate) fn stamp(nanos: i64) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap();
    // Docker 20.10 writes nine digits; newer daemons trim zeros: alternate both.
    if nanos % 2 == 0 {
        format!("{ts:.9} ")
    } else {
        format!("{ts} ")
    }
}

/// A frame payload as the daemon writes it.
pub(crate) fn frame(nanos: i64, text: &str, newline: bool) -> Vec<u8> {
    let mut payload = stamp(nanos).into_bytes();
    payload.extend_from_slice(text.as_bytes());
    if newline {
        payload.push(b'\n');
    }
    payload
}

/// A TTY stream as the daemon writes it: each line's text is split by Docker's copier into
/// pieces of [`DOCKER_PIECE_BYTES`], every piece with the line's timestamp prefix.
fn tty_stream(lines: &[(i64, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (nanos, text) in lines {
        let raw = format!("{text}\r");
        let bytes = raw.as_bytes();
        let mut start = 0;
        loop {
            let end = (start + DOCKER_PIECE_BYTES).min(bytes.len());
            out.extend_from_slice(stamp(*nanos).as_bytes());
            out.extend_from_slice(&bytes[start..end]);
            start = end;
            if start == bytes.len() {
                break;
            }
        }
        out.push(b'\n');
    }
    out
}

pub(crate) fn decoder() -> Decoder {
    Decoder::new(1024 * 1024)
}

#[test]
fn frames_become_lines_with_positions_and_ordinals() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.frame(LogStream::Stdout, &frame(BASE_NANOS, "a", true), &mut out);
    decoder.frame(LogStream::Stderr, &frame(BASE_NANOS, "e", true), &mut out);
    decoder.frame(LogStream::Stdout, &frame(BASE_NANOS, "b", true), &mut out);
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS + 1, "", true),
        &mut out,
    );
    assert_eq!(
        out.0,
        [
            (LogStream::Stdout, Position::new(BASE_NANOS, 0), "a".into()),
            (LogStream::Stderr, Position::new(BASE_NANOS, 0), "e".into()),
            (LogStream::Stdout, Position::new(BASE_NANOS, 1), "b".into()),
            (
                LogStream::Stdout,
                Position::new(BASE_NANOS + 1, 0),
                "".into()
            ),
        ]
    );
    assert_eq!(decoder.take_counters(), DecodeCounters::default());
}

#[test]
fn split_frames_merge_per_stream_even_when_interleaved() {
    let long: String = (0..40 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut decoder = decoder();
    let mut out = Collected::default();
    let pieces: Vec<&str> = long
        .as_bytes()
        .chunks(DOCKER_PIECE_BYTES)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        decoder.frame(LogStream::Stdout, &frame(BASE_NANOS, piece, last), &mut out);
        // Another stream's lines in between do not disturb the merge.
        decoder.frame(
            LogStream::Stderr,
            &frame(BASE_NANOS + 5 + i as i64, "x", true),
            &mut out,
        );
    }
    let stdout: Vec<_> = out.0.iter().filter(|l| l.0 == LogStream::Stdout).collect();
    assert_eq!(stdout.len(), 1);
    assert_eq!(stdout[0].1, Position::new(BASE_NANOS, 0));
    assert_eq!(stdout[0].2, long);
    assert_eq!(out.0.len(), 1 + pieces.len());
    assert!(!decoder.has_partial());
}

#[test]
fn lines_beyond_the_limit_are_truncated_and_counted_once() {
    let mut decoder = Decoder::new(DOCKER_PIECE_BYTES * 2);
    let mut out = Collected::default();
    let piece = "p".repeat(DOCKER_PIECE_BYTES);
    // A 3 MiB line: 192 pieces.
    for i in 0..192 {
        decoder.frame(
            LogStream::Stdout,
            &frame(BASE_NANOS, &piece, i == 191),
            &mut out,
        );
    }
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS + 1, "next", true),
        &mut out,
    );
    assert_eq!(out.0.len(), 2);
    assert_eq!(out.0[0].2.len(), DOCKER_PIECE_BYTES * 2);
    assert_eq!(out.0[1].2, "next");
    // A single frame beyond the limit too.
    let huge = "h".repeat(DOCKER_PIECE_BYTES * 3);
    decoder.frame(
        LogStream::Stderr,
        &frame(BASE_NANOS + 2, &huge, true),
        &mut out,
    );
    assert_eq!(out.0[2].2.len(), DOCKER_PIECE_BYTES * 2);
    assert_eq!(decoder.take_counters().truncated, 2);
}

#[test]
fn malformed_frames_are_counted_and_skipped() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.frame(LogStream::Stdout, b"no timestamp here\n", &mut out);
    decoder.frame(LogStream::Stdout, b"2026-99-24T14:26:08Z x\n", &mut out);
    decoder.frame(LogStream::Stdout, b"", &mut out);
    decoder.malformed_frame();
    decoder.frame(LogStream::Stdout, &frame(BASE_NANOS, "ok", true), &mut out);
    assert_eq!(out.0.len(), 1);
    assert_eq!(decoder.take_counters().malformed, 4);
}

#[test]
fn resume_skips_exactly_what_was_delivered() {
    let lines = [
        (BASE_NANOS, "a"),
        (BASE_NANOS, "b"),
        (BASE_NANOS, "c"),
        (BASE_NANOS + 7, "d"),
    ];
    for delivered in 0..=lines.len() {
        let mut decoder = decoder();
        let mut out = Collected::default();
        // What a first stream delivered, by position.
        let mut first = Collected::default();
        for (nanos, text) in &lines[..delivered] {
            decoder.frame(LogStream::Stdout, &frame(*nanos, text, true), &mut first);
        }
        let cursor = first.0.last().map(|line| line.1);
        decoder.reset([cursor, None, None].into());
        for (nanos, text) in &lines {
            decoder.frame(LogStream::Stdout, &frame(*nanos, text, true), &mut out);
        }
        let texts: Vec<&str> = out.0.iter().map(|l| l.2.as_str()).collect();
        let expected: Vec<&str> = lines[delivered..].iter().map(|l| l.1).collect();
        assert_eq!(texts, expected, "after {delivered} delivered");
        assert_eq!(decoder.take_counters().skipped, delivered as u64);
    }
}

#[test]
fn a_clock_stepping_back_after_the_resume_point_drops_nothing() {
    let mut decoder = decoder();
    decoder.reset([Some(Position::new(BASE_NANOS, 0)), None, None].into());
    let mut out = Collected::default();
    decoder.frame(LogStream::Stdout, &frame(BASE_NANOS, "old", true), &mut out);
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS + 10, "new", true),
        &mut out,
    );
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS - 10, "stepped back", true),
        &mut out,
    );
    let texts: Vec<&str> = out.0.iter().map(|l| l.2.as_str()).collect();
    assert_eq!(texts, ["new", "stepped back"]);
}

fn tty_lines() -> Vec<(i64, String)> {
    vec![
        (BASE_NANOS, "first".to_owned()),
        (BASE_NANOS, "same timestamp".to_owned()),
        (BASE_NANOS + 1, String::new()),
        (BASE_NANOS + 2, "x".repeat(DOCKER_PIECE_BYTES)),
        (
            BASE_NANOS + 3,
            (0..DOCKER_PIECE_BYTES * 2 + 100)
                .map(|i| (b'0' + (i % 10) as u8) as char)
                .collect(),
        ),
        (
            BASE_NANOS + 4,
            "2026-11-24T14:26:08Z looks like a prefix".to_owned(),
        ),
        (BASE_NANOS + 5, "last".to_owned()),
    ]
}

fn expected_tty(lines: &[(i64, String)]) -> Vec<(LogStream, Position, String)> {
    let mut last: Option<Position> = None;
    lines
        .iter()
        .map(|(nanos, text)| {
            let position = last.map_or(Position::new(*nanos, 0), |p| p.next_for(*nanos));
            last = Some(position);
            (LogStream::Tty, position, text.clone())
        })
        .collect()
}

#[test]
fn tty_stream_decodes_the_same_at_every_split_point() {
    let lines = tty_lines();
    let bytes = tty_stream(&lines);
    let expected = expected_tty(&lines);
    // Every split point of the short lines and around each prefix inside a long line, plus a
    // stride through the rest (every point would be ~50k decodes of 50 KiB).
    let short_lines_end = bytes
        .windows(3)
        .position(|w| w == b"xxx")
        .expect("the long lines follow the short ones");
    let mut points: Vec<usize> = (0..short_lines_end).collect();
    for boundary in
        (1..bytes.len() - 5).filter(|&i| &bytes[i..i + 5] == b"2026-" && bytes[i - 1] != b'\n')
    {
        points.extend(boundary.saturating_sub(40)..(boundary + 40).min(bytes.len()));
    }
    points.extend((0..bytes.len()).step_by(997));
    for split in points {
        let mut decoder = decoder();
        let mut out = Collected::default();
        decoder.tty(&bytes[..split], &mut out);
        decoder.tty(&bytes[split..], &mut out);
        assert_eq!(out.0, expected, "split at {split}");
        assert_eq!(
            decoder.take_counters(),
            DecodeCounters::default(),
            "split at {split}"
        );
    }
}

#[test]
fn tty_stream_decodes_the_same_in_chunks_of_every_small_size() {
    let lines = tty_lines();
    let bytes = tty_stream(&lines);
    let expected = expected_tty(&lines);
    for size in (1..=64).chain([1000, 4096, 16 * 1024, 16 * 1024 + 1, 65536]) {
        let mut decoder = decoder();
        let mut out = Collected::default();
        for chunk in bytes.chunks(size) {
            decoder.tty(chunk, &mut out);
        }
        assert_eq!(out.0, expected, "chunks of {size}");
    }
}

#[test]
fn tty_garbage_is_counted_and_skipped_to_the_next_line() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    let mut bytes = b"garbage without a timestamp\r\n".to_vec();
    bytes.extend_from_slice(&tty_stream(&[(BASE_NANOS, "ok".into())]));
    for byte in bytes.chunks(1) {
        decoder.tty(byte, &mut out);
    }
    assert_eq!(out.0.len(), 1);
    assert_eq!(out.0[0].2, "ok");
    assert_eq!(decoder.take_counters().malformed, 1);
}

#[test]
fn tty_lines_are_truncated_at_the_limit() {
    let mut decoder = Decoder::new(DOCKER_PIECE_BYTES);
    let mut out = Collected::default();
    let lines = vec![
        (BASE_NANOS, "y".repeat(DOCKER_PIECE_BYTES * 3)),
        (BASE_NANOS + 1, "after".to_owned()),
    ];
    decoder.tty(&tty_stream(&lines), &mut out);
    assert_eq!(out.0.len(), 2);
    assert_eq!(out.0[0].2.len(), DOCKER_PIECE_BYTES);
    assert_eq!(out.0[1].2, "after");
    assert_eq!(decoder.take_counters().truncated, 1);
}

#[test]
fn partial_lines_are_flushed_and_their_end_is_not_a_line() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS, "no newline yet", false),
        &mut out,
    );
    assert!(decoder.has_partial());
    decoder.flush_partials(&mut out);
    assert!(!decoder.has_partial());
    // Docker's final empty piece ends the flushed line; it is not a line of its own.
    decoder.frame(LogStream::Stdout, &frame(BASE_NANOS, "", true), &mut out);
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS + 1, "next", true),
        &mut out,
    );
    let texts: Vec<&str> = out.0.iter().map(|l| l.2.as_str()).collect();
    assert_eq!(texts, ["no newline yet", "next"]);

    // The same for a TTY: the rest of a flushed line is a line with the next ordinal.
    let mut decoder = decoder_tty_partial();
    let mut out = Collected::default();
    decoder.tty(b"2026-11-24T14:26:08Z half", &mut out);
    decoder.flush_partials(&mut out);
    decoder.tty(b" rest\r\n", &mut out);
    decoder.tty(b"2026-11-24T14:26:09Z whole\r\n", &mut out);
    assert_eq!(
        out.0,
        [
            (LogStream::Tty, Position::new(BASE_NANOS, 0), "half".into()),
            (LogStream::Tty, Position::new(BASE_NANOS, 1), " rest".into()),
            (
                LogStream::Tty,
                Position::new(BASE_NANOS + 1_000_000_000, 0),
                "whole".into()
            ),
        ]
    );
}

fn decoder_tty_partial() -> Decoder {
    decoder()
}

#[test]
fn reset_drops_partial_lines_so_a_reopen_reads_them_whole() {
    let mut decoder = decoder();
    let mut out = Collected::default();
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS, "head ", false),
        &mut out,
    );
    decoder.reset(StreamPositions::default());
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS, "head ", false),
        &mut out,
    );
    decoder.frame(
        LogStream::Stdout,
        &frame(BASE_NANOS, "tail", true),
        &mut out,
    );
    assert_eq!(out.0.len(), 1);
    assert_eq!(out.0[0].2, "head tail");
}

#[test]
fn since_is_the_earliest_relevant_cursor_second() {
    let p = |nanos| Some(Position::new(nanos, 3));
    assert_eq!(since_seconds(&StreamPositions::default(), None, false), 0);
    assert_eq!(
        since_seconds(
            &[p(BASE_NANOS + 999_999_999), None, None].into(),
            None,
            false
        ),
        0
    );
    assert_eq!(
        since_seconds(
            &[
                p(BASE_NANOS + 999_999_999),
                p(BASE_NANOS + 5_000_000_000),
                None
            ]
            .into(),
            None,
            false
        ),
        (BASE_NANOS / 1_000_000_000) as i32
    );
    assert_eq!(
        since_seconds(
            &[None, None, p(BASE_NANOS + 1_500_000_000)].into(),
            None,
            true
        ),
        (BASE_NANOS / 1_000_000_000) as i32 + 1
    );
    assert_eq!(since_seconds(&[p(-5), p(-5), None].into(), None, false), 0);
}

#[test]
fn a_stream_without_a_cursor_is_asked_from_the_read_through_time_not_from_zero() {
    let p = |nanos| Some(Position::new(nanos, 0));
    let second = (BASE_NANOS / 1_000_000_000) as i32;
    // A stdout-only container: stderr has no cursor, but everything up to the read-through
    // time was read.
    assert_eq!(
        since_seconds(
            &[p(BASE_NANOS + 3_000_000_000), None, None].into(),
            Some(BASE_NANOS + 1_000_000_000),
            false
        ),
        second + 1
    );
    // An old cursor of a stream that has been silent since: nothing of it exists between its
    // cursor and the read-through time.
    assert_eq!(
        since_seconds(
            &[
                p(BASE_NANOS + 9_000_000_000),
                p(BASE_NANOS - 3_600_000_000_000),
                None
            ]
            .into(),
            Some(BASE_NANOS + 7_000_000_000),
            false
        ),
        second + 7
    );
    // A cursor beyond the read-through time is the earliest point of its stream.
    assert_eq!(
        since_seconds(
            &[
                p(BASE_NANOS + 8_000_000_000),
                p(BASE_NANOS + 6_000_000_000),
                None
            ]
            .into(),
            Some(BASE_NANOS + 2_000_000_000),
            false
        ),
        second + 6
    );
}
