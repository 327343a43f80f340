//! Reads back the lines Docker's follower skipped when it moved to another log file.
//!
//! A follow stream that is more than one file behind when the json-file (or `local`) driver
//! rotates is moved by dockerd 20.10 to the newest file: the files in between are never read by
//! that stream, although Docker keeps them (up to `max-file`). The decoder finds where the
//! follower switched files (see [`crate::cursor`]): the last line it delivered from the old file
//! and the first from the new one, when they are more than a millisecond apart. This module then
//! asks Docker for that stream's lines between the two, without `follow`: Docker reads every
//! file it still keeps, in order. The lines found were never delivered; they go to the pipeline
//! as live lines (older than the ones around them) and are counted in
//! `log_capturer_rotation_recovered_lines_total`. Lines in files Docker has already deleted
//! cannot be read back, and nothing tells how many there were; but when Docker no longer serves
//! the last line the follower read before the switch, the file holding it (and what followed it)
//! was deleted: that is counted in `log_capturer_stream_gaps_total{reason="rotated"}` (see
//! `docs/guarantees.md`).

use std::pin::pin;

use capture_core::{LogStream, Position};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::checkpoint::StreamPositions;
use crate::{
    assembler::Assembler,
    cursor::{BOUNDARY_ORDINAL, FileSwitch},
    decoder::{Decoder, LineSink},
    frame::{Frames, LogsQuery, open_logs},
    metric_names,
    multiline::Multiline,
    output::decode_frame,
    stream::TaskEnv,
};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Reads the lines of `switch.stream` strictly between `switch.after` and `switch.first` into
/// `assembler`; returns how many it found. Bounded by the request timeout; an error is logged
/// and ends the attempt (the follow stream goes on).
pub(crate) async fn read_skipped(
    env: &TaskEnv,
    cancel: &CancellationToken,
    assembler: &mut Assembler,
    switch: FileSwitch,
) -> u64 {
    let tty = assembler.info.tty;
    let since = seconds(switch.after.div_euclid(NANOS_PER_SECOND));
    let until = seconds(switch.first.div_euclid(NANOS_PER_SECOND) + 1);
    let query = LogsQuery {
        follow: false,
        since,
        until,
        tail: None,
        tty,
    };
    let stream = open_logs(env, query);
    let mut decoder = Decoder::new(env.settings.max_line_bytes);
    // Only this stream's lines after `after` (the line itself is looked for: if Docker no
    // longer has it, its file was deleted); the other streams' are skipped whole.
    let mut resume = StreamPositions::new([Some(Position::new(i64::MAX, 0)); 3]);
    resume[switch.stream] = Some(Position::new(switch.after, BOUNDARY_ORDINAL - 1));
    decoder.reset(resume);
    // The lines read back are older than the ones the stream's multiline stage holds: they are
    // joined by a stage of their own, with the same rule, flushed at the end of the read.
    let multiline = Multiline::new(env.settings.multiline.for_container(&assembler.info));
    let mut between = Between {
        stream: switch.stream,
        before: switch.first,
        next: assembler,
        multiline,
        lines: 0,
    };
    let stream = pin!(stream);
    let read = read_all(stream, &mut decoder, &mut between, env);
    let read = tokio::time::timeout(env.settings.request_timeout, read);
    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => return between.lines,
        outcome = read => outcome,
    };
    between.finish();
    let id = &env.shared.id;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            warn!(container_id = %id, error = %capture_core::ErrorChain(&error), "cannot read back what Docker's follower skipped");
        }
        Err(_) => {
            warn!(container_id = %id, "reading back what Docker's follower skipped timed out")
        }
    }
    if decoder.take_counters().cursor_gone > 0 {
        ::metrics::counter!(metric_names::STREAM_GAPS_TOTAL, "reason" => "rotated").increment(1);
        warn!(
            container_id = %id,
            name = %env.shared.info().name,
            stream = %switch.stream,
            "Docker deleted a rotated log file its follower had skipped before it could be read \
             back: lines are lost, their number unknown"
        );
    }
    if between.lines > 0 {
        ::metrics::counter!(metric_names::ROTATION_RECOVERED_LINES_TOTAL).increment(between.lines);
        warn!(
            container_id = %id,
            name = %env.shared.info().name,
            stream = %switch.stream,
            lines = between.lines,
            "Docker's log follower skipped a rotated file; its lines were read back"
        );
    } else {
        debug!(container_id = %id, stream = %switch.stream, "no line skipped at a file switch");
    }
    between.lines
}

fn seconds(seconds: i64) -> i32 {
    i32::try_from(seconds.max(0)).unwrap_or(i32::MAX)
}

async fn read_all(
    mut stream: std::pin::Pin<&mut impl Frames>,
    decoder: &mut Decoder,
    between: &mut Between<'_, Assembler>,
    env: &TaskEnv,
) -> Result<(), bollard::errors::Error> {
    while let Some(item) = stream.next().await {
        decode_frame(decoder, between, item?, &env.shared.id);
    }
    decoder.flush_partials(between);
    Ok(())
}

/// Passes on the lines of one stream older than `before` (the rest was delivered) to `next`,
/// through the container's multiline rule.
struct Between<'a, S> {
    stream: LogStream,
    before: i64,
    next: &'a mut S,
    multiline: Multiline,
    lines: u64,
}

impl<S: LineSink> Between<'_, S> {
    /// The read ended: the events still open are complete (nothing older follows).
    fn finish(&mut self) {
        self.multiline.flush_all(self.next);
        self.multiline.take_counters().record();
    }
}

impl<S: LineSink> LineSink for Between<'_, S> {
    fn line(&mut self, stream: LogStream, position: Position, message: &[u8], _replay: bool) {
        if stream == self.stream && position.timestamp_nanos < self.before {
            self.lines += 1;
            self.multiline
                .sink(self.next)
                .line(stream, position, message, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use capture_core::{ContainerId, ContainerInfo};

    use super::*;
    use crate::multiline::{MultilineConfig, MultilineRules};

    #[derive(Debug, Default)]
    struct Collected(Vec<(LogStream, i64, String)>);

    impl LineSink for Collected {
        fn line(&mut self, stream: LogStream, position: Position, message: &[u8], _: bool) {
            let message = String::from_utf8(message.to_vec()).unwrap();
            self.0.push((stream, position.timestamp_nanos, message));
        }
    }

    /// Lines read back after a rotation go through the container's multiline rule, like the
    /// lines of the follow stream: a trace in the skipped file arrives as one event.
    #[test]
    fn lines_read_back_are_joined_by_the_containers_multiline_rule() {
        let config = MultilineConfig {
            name: "indented".to_owned(),
            match_names: vec!["web-*".to_owned()],
            continue_pattern: Some("^\\s".to_owned()),
            ..MultilineConfig::default()
        };
        let rules = MultilineRules::new(&[config], Duration::from_secs(60)).unwrap();
        let info = ContainerInfo::new(ContainerId::new("ab".repeat(32)).unwrap(), "web-1", "x");
        let mut next = Collected::default();
        let mut between = Between {
            stream: LogStream::Stdout,
            before: 100,
            next: &mut next,
            multiline: Multiline::new(rules.for_container(&info)),
            lines: 0,
        };
        let lines: [(LogStream, i64, &str); 6] = [
            (LogStream::Stdout, 10, "Exception in main"),
            (LogStream::Stdout, 11, "    at a.b(C.java:1)"),
            (LogStream::Stderr, 12, "another stream: delivered"),
            (LogStream::Stdout, 13, "    at d.e(F.java:2)"),
            (LogStream::Stdout, 20, "next line"),
            (
                LogStream::Stdout,
                100,
                "the first line after the switch: delivered",
            ),
        ];
        for (stream, nanos, message) in lines {
            between.line(stream, Position::new(nanos, 0), message.as_bytes(), false);
        }
        between.finish();
        assert_eq!(between.lines, 4);
        assert_eq!(
            next.0,
            [
                (
                    LogStream::Stdout,
                    13,
                    "Exception in main\n    at a.b(C.java:1)\n    at d.e(F.java:2)".to_owned()
                ),
                (LogStream::Stdout, 20, "next line".to_owned()),
            ]
        );
    }
}
