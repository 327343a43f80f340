//! Counts what the capturer delivered against what Docker has, per loggen sequence.
//!
//! Captured lines come from the file sink (followed with [`FileTail`] across restarts and
//! rotations) or from the Loki receiver (fed with [`Ledger::record`]). The truth is each
//! container's own log as Docker kept it (`docker logs`, taken before the container is removed):
//! for every container, loggen run and stream, the capture must hold each sequence number Docker
//! has exactly once. A line missing at the tail of a sequence counts as lost, because the truth
//! says how long each sequence is.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::Value;
use test_support::checker::{LineChecker, SequenceKey};

use test_support::{docker::logs_bytes, parallel::parallel_map, tail::FileTail};

/// How many `docker logs` run at once when taking the truth of many containers.
const PARALLEL_LOGS: usize = 8;

/// How often a drain looks at the capture again.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// Captured lines and the truth they are compared with.
#[derive(Debug)]
pub(crate) struct Ledger {
    tail: Option<FileTail>,
    checker: LineChecker,
    /// Records read (duplicates included).
    pub(crate) records: u64,
    /// File records that are not JSON objects with `container_id`, `stream` and `message`.
    pub(crate) malformed: u64,
    /// Sequence lengths Docker has, by container, tag, run and stream.
    truth: BTreeMap<SequenceKey, u64>,
}

/// The comparison of the capture with the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Lines Docker has.
    pub(crate) expected: u64,
    /// Distinct lines of the truth that were captured.
    pub(crate) received: u64,
    pub(crate) lost: u64,
    /// Extra copies of captured lines.
    pub(crate) dup: u64,
    pub(crate) out_of_order: u64,
}

impl Ledger {
    /// A ledger fed by hand ([`Ledger::record`]).
    pub(crate) fn new() -> Ledger {
        Ledger {
            tail: None,
            checker: LineChecker::default(),
            records: 0,
            malformed: 0,
            truth: BTreeMap::new(),
        }
    }

    /// A ledger that follows the file sink's active file at `path`.
    pub(crate) fn follow(path: PathBuf) -> Ledger {
        Ledger {
            tail: Some(FileTail::new(path)),
            ..Ledger::new()
        }
    }

    /// Records one captured line.
    pub(crate) fn record(&mut self, container: &str, stream: &str, message: &str) {
        self.records += 1;
        self.checker.record(container, stream, message);
    }

    /// Reads the file records written since the last call; returns how many.
    pub(crate) fn poll(&mut self) -> Result<u64> {
        let Some(tail) = self.tail.as_mut() else {
            return Ok(0);
        };
        let checker = &mut self.checker;
        let malformed = &mut self.malformed;
        let read = tail.poll(|line| {
            let Ok(record) = serde_json::from_slice::<Value>(line) else {
                *malformed += 1;
                return;
            };
            match (
                record["container_id"].as_str(),
                record["stream"].as_str(),
                record["message"].as_str(),
            ) {
                (Some(id), Some(stream), Some(message)) => checker.record(id, stream, message),
                _ => *malformed += 1,
            }
        })?;
        self.records += read;
        Ok(read)
    }

    /// Distinct and duplicated lines captured from loggen runs whose tag passes `tags`, with or
    /// without a truth (for generators whose Docker copy is gone).
    pub(crate) fn captured(&self, tags: impl Fn(&str) -> bool) -> (u64, u64) {
        self.checker
            .report()
            .sequences
            .iter()
            .filter(|sequence| tags(&sequence.key.tag))
            .fold((0, 0), |(distinct, dup), sequence| {
                (distinct + sequence.received, dup + sequence.duplicated)
            })
    }

    /// Partial lines left at the ends of rotated files.
    pub(crate) fn truncated(&self) -> u64 {
        self.tail.as_ref().map_or(0, FileTail::truncated_lines)
    }

    /// Takes the truth of these containers from Docker (they must still exist).
    pub(crate) fn add_truth(&mut self, ids: &[String]) -> Result<()> {
        for group in ids.chunks(PARALLEL_LOGS) {
            let outputs = parallel_map(group, "docker logs", |id| logs_bytes(id))?;
            for (id, (stdout, stderr)) in group.iter().zip(outputs) {
                self.add_truth_from(id, &stdout, &stderr);
            }
        }
        Ok(())
    }

    /// Records the truth of one container from its `docker logs` output.
    pub(crate) fn add_truth_from(&mut self, id: &str, stdout: &[u8], stderr: &[u8]) {
        let mut truth = LineChecker::default();
        for text in [stdout, stderr] {
            for line in String::from_utf8_lossy(text).lines() {
                // The stream argument only feeds the wrong-stream count, unused for the truth.
                truth.record(id, "stdout", line);
            }
        }
        for sequence in truth.report().sequences {
            let length = sequence.received + sequence.lost;
            let entry = self.truth.entry(sequence.key).or_default();
            *entry = (*entry).max(length);
        }
    }

    /// Records the truth of a generator whose copy Docker no longer has (a `--rm` job, rotated
    /// logs): `lines` per stream of loggen run `run` with `tag` in `container`.
    pub(crate) fn add_generated_truth(
        &mut self,
        container: &str,
        tag: &str,
        run: &str,
        streams: &[&str],
        lines: u64,
    ) {
        for stream in streams {
            let key = SequenceKey {
                container: container.to_owned(),
                tag: tag.to_owned(),
                run: run.to_owned(),
                stream: (*stream).to_owned(),
            };
            self.truth.insert(key, lines);
        }
    }

    /// The capture against the truth, over the containers that have a truth.
    pub(crate) fn tally(&self) -> Tally {
        self.tally_where(|_| true)
    }

    /// [`Ledger::tally`] over the containers in `containers` only.
    pub(crate) fn tally_of(&self, containers: &[String]) -> Tally {
        self.tally_where(|container| containers.iter().any(|id| id == container))
    }

    fn tally_where(&self, wanted: impl Fn(&str) -> bool) -> Tally {
        let report = self.checker.report();
        let mut tally = Tally {
            expected: self
                .truth
                .iter()
                .filter(|(key, _)| wanted(&key.container))
                .map(|(_, length)| length)
                .sum(),
            ..Tally::default()
        };
        let captured: BTreeMap<&SequenceKey, _> = report
            .sequences
            .iter()
            .filter(|sequence| wanted(&sequence.key.container))
            .map(|sequence| (&sequence.key, sequence))
            .collect();
        for (key, &length) in self.truth.iter().filter(|(key, _)| wanted(&key.container)) {
            let Some(sequence) = captured.get(key) else {
                tally.lost += length;
                continue;
            };
            tally.received += sequence.received.min(length);
            tally.lost += sequence.lost;
            tally.dup += sequence.duplicated;
            tally.out_of_order += sequence.out_of_order;
            let span = sequence.received + sequence.lost;
            tally.lost += length.saturating_sub(span);
        }
        // Copies of lines of containers whose truth was not taken still count as duplicates.
        for (key, sequence) in &captured {
            if !self.truth.contains_key(*key) {
                tally.dup += sequence.duplicated;
            }
        }
        tally
    }

    /// Polls until every line of the truth is captured, no record arrived for `stall`, or
    /// `timeout` passed; returns how long that took and whether the capture is complete.
    pub(crate) fn drain(&mut self, timeout: Duration, stall: Duration) -> Result<(Duration, bool)> {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            if self.poll()? > 0 {
                last_progress = Instant::now();
            }
            if self.tally().lost == 0 {
                return Ok((started.elapsed(), true));
            }
            if started.elapsed() > timeout || last_progress.elapsed() > stall {
                return Ok((started.elapsed(), false));
            }
            // Waiting for another process to write a file; there is nothing to subscribe to.
            std::thread::sleep(DRAIN_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn loss_at_the_tail_and_duplicates_are_counted() {
        let mut ledger = Ledger::new();
        for seq in [0, 1, 1, 2] {
            ledger.record("c", "stdout", &format!("t r1 out {seq}"));
        }
        let truth: String = (0..5).map(|seq| format!("t r1 out {seq}\n")).collect();
        ledger.add_truth_from("c", truth.as_bytes(), b"t r2 err 0\n");
        let tally = ledger.tally();
        assert_eq!(tally.expected, 6);
        assert_eq!(tally.received, 3);
        assert_eq!(tally.lost, 3);
        assert_eq!(tally.dup, 1);
    }
}
