//! File entries go through the same decoder as the API's frames: the same lines, positions,
//! merges, caps and counters; and a resume after a hint continues the ordinals.

use std::path::PathBuf;

use capture_core::{LogStream, Position};

use super::{EntryFormat, Step, json_file::JsonFile, watch::Watcher};
use crate::decoder::{DOCKER_PIECE_BYTES, Decoder, LineSink};

/// A temporary stand-in for Docker's containers directory, watched for new containers (no
/// loop reads the events: `Watcher::holds_early` and `Births::count` dispatch them).
pub(super) struct ContainersRoot {
    pub(super) dir: tempfile::TempDir,
    pub(super) watcher: Watcher,
}

impl ContainersRoot {
    pub(super) fn new() -> ContainersRoot {
        let dir = tempfile::tempdir().unwrap();
        let (watcher, _no_loop) = Watcher::new();
        watcher
            .watch_containers(dir.path())
            .expect("inotify works here");
        ContainersRoot { dir, watcher }
    }

    /// Container `id`'s directory.
    pub(super) fn container(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// Its json-file log.
    pub(super) fn live(&self, id: &str) -> PathBuf {
        self.container(id).join(format!("{id}-json.log"))
    }
}

#[derive(Debug, Default)]
struct Collected(Vec<(LogStream, Position, String)>);

impl LineSink for Collected {
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8], _replay: bool) {
        self.0.push((
            stream,
            position,
            String::from_utf8_lossy(message).into_owned(),
        ));
    }
}

/// Each step a format takes through `input`, one string per entry (`stream@nanos text`, with
/// `render` showing the text), `malformed`, and `skip` unless `skips` is false.
pub(super) fn steps(
    format: &mut dyn EntryFormat,
    input: &[u8],
    render: impl Fn(&[u8]) -> String,
    skips: bool,
) -> Vec<String> {
    let mut rest = input;
    let mut out = Vec::new();
    loop {
        let (len, text) = match format.next(rest) {
            Step::Entry { entry, len } => (
                len,
                format!(
                    "{}@{} {}{}",
                    entry.stream,
                    entry.timestamp_nanos,
                    render(entry.text),
                    if entry.complete { "" } else { " (partial)" }
                ),
            ),
            Step::Malformed { len } => (len, "malformed".to_owned()),
            Step::Skip { len } => (len, "skip".to_owned()),
            Step::NeedMore => break,
        };
        if skips || text != "skip" {
            out.push(text);
        }
        rest = &rest[len..];
    }
    out
}

/// A json-file line as Docker writes it.
pub(super) fn json_line(stream: &str, nanos: i64, text: &str, newline: bool) -> String {
    let time = jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap();
    let log = serde_json::to_string(&format!("{text}{}", if newline { "\n" } else { "" })).unwrap();
    format!("{{\"log\":{log},\"stream\":\"{stream}\",\"time\":\"{time:.9}\"}}\n")
}

/// Feeds a whole file's content to the decoder through the json-file parser.
fn decode(decoder: &mut Decoder, content: &str, out: &mut Collected) -> u64 {
    let mut format = JsonFile::default();
    let mut rest = content.as_bytes();
    let mut malformed = 0;
    loop {
        let len = match format.next(rest) {
            Step::Entry { entry, len } => {
                decoder.entry(
                    entry.stream,
                    entry.timestamp_nanos,
                    entry.text,
                    entry.complete,
                    out,
                );
                len
            }
            Step::Malformed { len } => {
                malformed += 1;
                len
            }
            Step::Skip { len } => len,
            Step::NeedMore => return malformed,
        };
        rest = &rest[len..];
    }
}

#[test]
fn pieces_merge_per_stream_and_long_lines_are_cut_and_counted_as_on_the_api_path() {
    let piece = "p".repeat(DOCKER_PIECE_BYTES);
    let mut content = String::new();
    // A 5-piece stdout line interleaved with a whole stderr line, then a short one.
    for i in 0..5 {
        content += &json_line("stdout", 10 + i, &piece, i == 4);
        if i == 1 {
            content += &json_line("stderr", 11, "between", true);
        }
    }
    content += &json_line("stdout", 20, "short", true);
    content += &json_line("stdout", 20, "same time", true);
    let mut decoder = Decoder::new(DOCKER_PIECE_BYTES * 2);
    let mut out = Collected::default();
    assert_eq!(decode(&mut decoder, &content, &mut out), 0);
    let lines: Vec<_> = out
        .0
        .iter()
        .map(|(stream, position, text)| (*stream, *position, text.len()))
        .collect();
    assert_eq!(
        lines,
        [
            (LogStream::Stderr, Position::new(11, 0), 7),
            (
                LogStream::Stdout,
                Position::new(10, 0),
                DOCKER_PIECE_BYTES * 2
            ),
            (LogStream::Stdout, Position::new(20, 0), 5),
            (LogStream::Stdout, Position::new(20, 1), 9),
        ]
    );
    assert_eq!(decoder.take_counters().truncated, 1);
}

#[test]
fn a_resume_after_a_hint_skips_what_was_acknowledged_and_continues_ordinals() {
    let lines = [
        json_line("stdout", 5, "a", true),
        json_line("stdout", 5, "b", true),
        json_line("stdout", 5, "c", true),
        json_line("stdout", 6, "d", true),
    ];
    // Read from the start: the reference positions.
    let mut decoder = Decoder::new(1 << 20);
    let mut all = Collected::default();
    decode(&mut decoder, &lines.concat(), &mut all);
    // Resume at the offset after "b" (the hint), acknowledged through "c".
    let mut resumed = Decoder::new(1 << 20);
    resumed.reset_after(
        [Some(Position::new(5, 1)), None, None].into(),
        [Some(Position::new(5, 2)), None, None].into(),
    );
    let mut out = Collected::default();
    decode(&mut resumed, &lines[2..].concat(), &mut out);
    assert_eq!(out.0, all.0[3..]);
    assert_eq!(
        resumed.last_positions()[LogStream::Stdout],
        Some(Position::new(6, 0))
    );
}

#[test]
fn a_tty_entry_is_not_a_file_stream_and_is_counted() {
    let mut decoder = Decoder::new(1 << 20);
    let mut out = Collected::default();
    decoder.entry(LogStream::Tty, 1, b"x", true, &mut out);
    assert!(out.0.is_empty());
    assert_eq!(decoder.take_counters().malformed, 1);
}
