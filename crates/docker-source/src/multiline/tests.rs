//! Unit tests of the multiline stage: the presets on traces printed by real programs, streams
//! kept apart, limits, the flush deadline under paused time, and positions.

use std::time::Duration;

use capture_core::{ContainerId, ContainerInfo, LogStream, Position};

use super::{MULTILINE_LABEL, Multiline, MultilineConfig, MultilineCounters, MultilinePreset};
use crate::{decoder::LineSink, multiline::MultilineRules};

const JAVA_UNCAUGHT: &str = include_str!("fixtures/java_uncaught.txt");
const JAVA_LOGBACK: &str = include_str!("fixtures/java_logback.txt");
const PYTHON_LOGGED_CHAINED: &str = include_str!("fixtures/python_logged_chained.txt");
const GO_NIL_POINTER: &str = include_str!("fixtures/go_nil_pointer.txt");
const GO_DEADLOCK: &str = include_str!("fixtures/go_deadlock.txt");

pub(super) const INACTIVITY: Duration = Duration::from_secs(60);
/// 2026-11-24T14:26:08Z in nanoseconds.
const BASE_NANOS: i64 = 1_795_530_368_000_000_000;

/// A container named `web-1` from `registry.local/shop/orders:1.4` with `labels`.
pub(super) fn container(labels: &[(&str, &str)]) -> ContainerInfo {
    let mut info = ContainerInfo::new(
        ContainerId::new("ab".repeat(32)).unwrap(),
        "web-1",
        "registry.local/shop/orders:1.4",
    );
    info.labels = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    info
}

/// A stage with the rule or preset that a container labelled `name` gets.
fn stage_named(configs: &[MultilineConfig], name: &str) -> Multiline {
    let rules = MultilineRules::new(configs, INACTIVITY).unwrap();
    let rule = rules.for_container(&container(&[(MULTILINE_LABEL, name)]));
    assert!(rule.is_some(), "no rule named {name}");
    Multiline::new(rule)
}

fn preset(preset: MultilinePreset) -> Multiline {
    stage_named(&[], preset.as_str())
}

fn custom(edit: impl FnOnce(&mut MultilineConfig)) -> Multiline {
    let mut config = MultilineConfig {
        name: "custom".to_owned(),
        ..MultilineConfig::default()
    };
    edit(&mut config);
    stage_named(&[config], "custom")
}

/// What came out of the stage.
#[derive(Debug, Default)]
struct Collected(Vec<(LogStream, Position, String)>);

impl LineSink for Collected {
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8]) {
        self.0.push((
            stream,
            position,
            String::from_utf8(message.to_vec()).unwrap(),
        ));
    }
}

impl Collected {
    fn messages(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|(_, _, message)| message.as_str())
            .collect()
    }
}

/// Feeds lines with increasing positions (a microsecond apart) and remembers them.
#[derive(Debug)]
struct Feed {
    stage: Multiline,
    out: Collected,
    fed: Vec<(LogStream, Position, String)>,
}

impl Feed {
    fn new(stage: Multiline) -> Feed {
        Feed {
            stage,
            out: Collected::default(),
            fed: Vec::new(),
        }
    }

    /// Every line of `text` (a trailing newline ends the last one).
    fn text(&mut self, stream: LogStream, text: &str) -> &mut Feed {
        for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
            self.line(stream, line);
        }
        self
    }

    fn line(&mut self, stream: LogStream, line: &str) -> &mut Feed {
        let position = Position::new(BASE_NANOS + 1000 * self.fed.len() as i64, 0);
        self.fed.push((stream, position, line.to_owned()));
        self.stage
            .sink(&mut self.out)
            .line(stream, position, line.as_bytes());
        self
    }

    fn flush_all(&mut self) -> &mut Feed {
        self.stage.flush_all(&mut self.out);
        self
    }

    /// The position of the last line fed that equals `line`.
    fn position_of(&self, line: &str) -> Position {
        self.fed
            .iter()
            .rev()
            .find(|(_, _, fed)| fed == line)
            .map(|(_, position, _)| *position)
            .unwrap_or_else(|| panic!("{line:?} was not fed"))
    }
}

fn trimmed(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

#[test]
fn an_uncaught_java_exception_is_one_event_between_the_lines_around_it() {
    let mut feed = Feed::new(preset(MultilinePreset::Java));
    feed.line(
        LogStream::Stderr,
        "2026-11-23 19:00:00.123 INFO  [main] App - starting",
    )
    .text(LogStream::Stderr, JAVA_UNCAUGHT)
    .line(
        LogStream::Stderr,
        "2026-11-23 19:00:01.000 INFO  [main] App - stopping",
    );
    assert_eq!(
        feed.out.messages(),
        [
            "2026-11-23 19:00:00.123 INFO  [main] App - starting",
            trimmed(JAVA_UNCAUGHT),
            "2026-11-23 19:00:01.000 INFO  [main] App - stopping",
        ]
    );
    assert_eq!(
        trimmed(JAVA_UNCAUGHT).lines().count(),
        21,
        "the fixture as printed"
    );
    // The event carries its last line's position.
    assert_eq!(feed.out.0[1].1, feed.position_of("\t... 2 more"));
    assert_eq!(
        feed.stage.take_counters(),
        MultilineCounters {
            events: 1,
            lines: 21,
            ..MultilineCounters::default()
        }
    );
}

#[test]
fn a_logged_java_exception_with_causes_and_omitted_frames_is_one_event() {
    let header = "2026-11-23 19:00:00.123 ERROR 1 --- [nio-8080-exec-3] o.a.c.c.C.[.[.[/].[dispatcherServlet] : Servlet.service() threw exception";
    let mut feed = Feed::new(preset(MultilinePreset::Java));
    feed.line(LogStream::Stdout, header)
        .text(LogStream::Stdout, JAVA_LOGBACK)
        .text(LogStream::Stdout, JAVA_LOGBACK)
        .line(
            LogStream::Stdout,
            "2026-11-23 19:00:02.000 INFO  next request",
        );
    assert_eq!(
        feed.out.messages(),
        [
            header,
            trimmed(JAVA_LOGBACK),
            trimmed(JAVA_LOGBACK),
            "2026-11-23 19:00:02.000 INFO  next request",
        ],
        "an exception line right after a trace starts a new event"
    );
}

#[test]
fn python_tracebacks_end_at_their_exception_line_and_chained_ones_stay_together() {
    let mut feed = Feed::new(preset(MultilinePreset::Python));
    feed.text(LogStream::Stderr, PYTHON_LOGGED_CHAINED)
        .line(LogStream::Stderr, "INFO: shutting down");
    let lines: Vec<&str> = trimmed(PYTHON_LOGGED_CHAINED).split('\n').collect();
    let second = lines
        .iter()
        .rposition(|line| line.starts_with("Traceback"))
        .unwrap();
    assert!(lines[0].contains("ERROR orders: request failed"));
    assert_eq!(
        feed.out.messages(),
        [
            lines[0].to_owned(),
            lines[1..second].join("\n"),
            lines[second..].join("\n"),
            "INFO: shutting down".to_owned(),
        ]
    );
    assert!(
        feed.out.0[1]
            .2
            .contains("The above exception was the direct cause")
    );
    assert!(
        feed.out.0[1]
            .2
            .ends_with("ValueError: order missing in '{\"id\": 1}'")
    );
    assert_eq!(
        feed.out.0[2].1,
        feed.position_of(lines.last().unwrap()),
        "the last line, not indented, ends the event and gives its position"
    );
}

#[test]
fn blank_lines_after_a_python_traceback_are_not_part_of_it() {
    let mut feed = Feed::new(preset(MultilinePreset::Python));
    feed.text(
        LogStream::Stderr,
        "Traceback (most recent call last):\n  File \"/app/x.py\", line 1, in <module>\n    f()\nKeyError: 'k'\n\n\nnext line\n",
    );
    assert_eq!(
        feed.out.messages(),
        [
            "Traceback (most recent call last):\n  File \"/app/x.py\", line 1, in <module>\n    f()\nKeyError: 'k'",
            "",
            "",
            "next line",
        ]
    );
    assert_eq!(feed.out.0[0].1, feed.position_of("KeyError: 'k'"));
    let positions: Vec<Position> = feed
        .out
        .0
        .iter()
        .map(|(_, position, _)| *position)
        .collect();
    assert!(
        positions.is_sorted(),
        "tentative lines keep their order: {positions:?}"
    );
}

#[test]
fn go_panics_and_goroutine_dumps_are_one_event_each() {
    let mut feed = Feed::new(preset(MultilinePreset::Go));
    feed.line(LogStream::Stderr, "2026/11/23 19:00:00 serving on :8080")
        .text(LogStream::Stderr, GO_NIL_POINTER)
        .text(LogStream::Stderr, GO_DEADLOCK)
        .line(LogStream::Stderr, "")
        .line(LogStream::Stderr, "2026/11/23 19:00:05 restarted");
    assert_eq!(
        feed.out.messages(),
        [
            "2026/11/23 19:00:00 serving on :8080",
            trimmed(GO_NIL_POINTER),
            trimmed(GO_DEADLOCK),
            "",
            "2026/11/23 19:00:05 restarted",
        ],
        "blank lines inside a dump join it; a blank line after it stands alone"
    );
}

#[test]
fn a_trace_on_stderr_is_never_joined_with_stdout_lines() {
    let mut feed = Feed::new(preset(MultilinePreset::Java));
    let trace: Vec<&str> = trimmed(JAVA_LOGBACK).split('\n').collect();
    for (index, line) in trace.iter().enumerate() {
        feed.line(LogStream::Stderr, line);
        feed.line(
            LogStream::Stdout,
            &format!("\tat an indented stdout line {index}"),
        );
    }
    feed.line(LogStream::Stderr, "done");
    let stdout: Vec<&str> = feed
        .out
        .0
        .iter()
        .filter(|(stream, _, _)| *stream == LogStream::Stdout)
        .map(|(_, _, message)| message.as_str())
        .collect();
    assert_eq!(
        stdout.len(),
        trace.len(),
        "stdout lines pass one by one: {stdout:?}"
    );
    let stderr: Vec<&str> = feed
        .out
        .0
        .iter()
        .filter(|(stream, _, _)| *stream == LogStream::Stderr)
        .map(|(_, _, message)| message.as_str())
        .collect();
    assert_eq!(stderr, [trimmed(JAVA_LOGBACK), "done"]);
}

#[test]
fn a_tty_stream_is_joined_on_its_own() {
    let mut feed = Feed::new(preset(MultilinePreset::Go));
    feed.text(LogStream::Tty, GO_NIL_POINTER).flush_all();
    assert_eq!(feed.out.0.len(), 1);
    assert_eq!(feed.out.0[0].0, LogStream::Tty);
    assert_eq!(feed.out.0[0].2, trimmed(GO_NIL_POINTER));
}

#[test]
fn max_lines_emits_the_event_and_the_rest_continues_as_a_new_one() {
    let mut feed = Feed::new(custom(|c| {
        c.preset = Some(MultilinePreset::Java);
        c.max_lines = 4;
    }));
    feed.text(LogStream::Stderr, JAVA_LOGBACK).flush_all();
    let lines: Vec<&str> = trimmed(JAVA_LOGBACK).split('\n').collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(
        feed.out.messages(),
        [
            lines[0..4].join("\n"),
            lines[4..8].join("\n"),
            lines[8..].join("\n")
        ]
    );
    let counters = feed.stage.take_counters();
    assert_eq!(counters.split_max_lines, 2);
    assert_eq!((counters.events, counters.lines), (3, 10));
}

#[test]
fn max_bytes_emits_the_event_before_it_would_grow_past_the_limit() {
    let mut feed = Feed::new(custom(|c| {
        c.start_pattern = Some("^START".to_owned());
        c.max_bytes = 21;
    }));
    feed.text(
        LogStream::Stdout,
        "START 1\n- aaaa\n- bbbb\n- cccc\n- dddd\nother\n",
    )
    .flush_all();
    assert_eq!(
        feed.out.messages(),
        ["START 1\n- aaaa\n- bbbb", "- cccc\n- dddd\nother"],
        "without continue_pattern, every line that does not start an event continues it"
    );
    assert_eq!(feed.stage.take_counters().split_max_bytes, 1);
    // A single line longer than max_bytes still passes whole: multiline never cuts a line.
    let long = format!("START {}", "x".repeat(100));
    feed.line(LogStream::Stdout, &long).flush_all();
    assert_eq!(feed.out.messages().last().copied(), Some(long.as_str()));
}

#[tokio::test(start_paused = true)]
async fn flush_timeout_emits_a_trace_that_ends_a_burst() {
    let mut feed = Feed::new(custom(|c| {
        c.preset = Some(MultilinePreset::Python);
        c.flush_timeout = Duration::from_millis(700);
    }));
    let started = tokio::time::Instant::now();
    feed.text(
        LogStream::Stderr,
        "Traceback (most recent call last):\n  File \"a.py\", line 1",
    );
    tokio::time::advance(Duration::from_millis(300)).await;
    feed.line(LogStream::Stderr, "ValueError: late");
    assert!(feed.out.0.is_empty(), "held while the event may go on");
    let deadline = feed.stage.deadline().expect("an open event has a deadline");
    assert_eq!(
        deadline,
        started + Duration::from_millis(1000),
        "700 ms after the last line"
    );
    tokio::time::advance(Duration::from_millis(699)).await;
    assert!(
        !feed
            .stage
            .flush_expired(tokio::time::Instant::now(), &mut feed.out)
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        feed.stage
            .flush_expired(tokio::time::Instant::now(), &mut feed.out)
    );
    assert_eq!(
        feed.out.messages(),
        ["Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: late"]
    );
    assert_eq!(feed.out.0[0].1, feed.position_of("ValueError: late"));
    assert_eq!(feed.stage.deadline(), None);
}

#[test]
fn lines_that_start_no_event_pass_at_once_and_hold_nothing() {
    let mut feed = Feed::new(preset(MultilinePreset::Java));
    feed.text(
        LogStream::Stdout,
        "GET / 200\n\tat not a trace\nCaused by: nothing\n",
    );
    assert_eq!(
        feed.out.messages(),
        ["GET / 200", "\tat not a trace", "Caused by: nothing"]
    );
    assert_eq!(feed.stage.deadline(), None);
    assert!(!feed.stage.holds_lines());
}

#[test]
fn an_open_event_holds_lines_until_it_is_emitted_or_discarded() {
    let mut feed = Feed::new(preset(MultilinePreset::Java));
    let lines: Vec<&str> = trimmed(JAVA_LOGBACK).split('\n').collect();
    feed.line(LogStream::Stderr, lines[0]);
    assert!(
        feed.stage.holds_lines(),
        "a line that may start an event is held"
    );
    feed.flush_all();
    assert!(!feed.stage.holds_lines());
    for line in &lines[..3] {
        feed.line(LogStream::Stderr, line);
    }
    assert!(feed.stage.holds_lines());
    feed.stage.discard();
    assert!(!feed.stage.holds_lines());
}

#[test]
fn without_a_rule_every_line_passes_through() {
    let mut feed = Feed::new(Multiline::new(None));
    feed.text(LogStream::Stderr, JAVA_UNCAUGHT);
    assert_eq!(feed.out.0, feed.fed);
    assert_eq!(feed.stage.deadline(), None);
}

#[test]
fn a_discarded_event_is_emitted_nowhere_and_rebuilt_whole_when_read_again() {
    let mut feed = Feed::new(preset(MultilinePreset::Java));
    let lines: Vec<&str> = trimmed(JAVA_LOGBACK).split('\n').collect();
    for line in &lines[..5] {
        feed.line(LogStream::Stderr, line);
    }
    // A reopen: what was held is dropped; the stream is read again from before it.
    feed.stage.discard();
    assert!(feed.out.0.is_empty());
    assert_eq!(feed.stage.deadline(), None);
    feed.text(LogStream::Stderr, JAVA_LOGBACK).flush_all();
    assert_eq!(feed.out.messages(), [trimmed(JAVA_LOGBACK)]);
}

#[test]
fn custom_rules_with_only_a_continue_pattern_start_at_any_other_line() {
    let mut feed = Feed::new(custom(|c| c.continue_pattern = Some(r"^\s".to_owned())));
    feed.text(
        LogStream::Stdout,
        "  orphan\nfirst\n  a\n  b\nsecond\nthird\n  c\n",
    )
    .flush_all();
    assert_eq!(
        feed.out.messages(),
        ["  orphan", "first\n  a\n  b", "second", "third\n  c"]
    );
}

#[test]
fn custom_rules_with_both_patterns_end_at_a_line_matching_neither() {
    let mut feed = Feed::new(custom(|c| {
        c.start_pattern = Some(r"^\d{4}-\d{2}-\d{2} .*ERROR".to_owned());
        c.continue_pattern = Some(r"^\s+|^Caused by:".to_owned());
    }));
    feed.text(
        LogStream::Stdout,
        "2026-11-23 INFO ok\n  indented but no event\n2026-11-23 ERROR boom\n  at x\nCaused by: y\n  at z\n2026-11-23 ERROR again\n  at w\nplain\n",
    );
    assert_eq!(
        feed.out.messages(),
        [
            "2026-11-23 INFO ok",
            "  indented but no event",
            "2026-11-23 ERROR boom\n  at x\nCaused by: y\n  at z",
            "2026-11-23 ERROR again\n  at w",
            "plain",
        ]
    );
}
