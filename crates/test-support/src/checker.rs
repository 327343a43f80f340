//! Counts `loggen` lines and reports loss, duplication and reordering.
//!
//! A `loggen` line is `<tag> <run> <stream> <seq> [padding]`. For every container, run and
//! stream the checker expects each sequence number once, in order, from 0 up to the highest seen
//! (or to an expected count given with [`LineChecker::expect`]).

use std::collections::BTreeMap;

/// Where a line sequence lives: container, loggen run and loggen stream label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceKey {
    /// The container id (or any name the caller uses for the source of the line).
    pub container: String,
    /// The `loggen` tag.
    pub tag: String,
    /// The `loggen` run id (unique per process start).
    pub run: String,
    /// The `loggen` stream label: `out`, `err` or `tty`.
    pub stream: String,
}

#[derive(Debug, Default, Clone)]
struct Sequence {
    /// How often each sequence number was seen (index = seq).
    seen: Vec<u32>,
    out_of_order: u64,
    last: Option<u64>,
    /// The capture stream (`stdout`/`stderr`/`tty`) the lines arrived on, and how many disagreed.
    captured_on: Option<String>,
    wrong_stream: u64,
}

/// Collects lines and reports per sequence.
#[derive(Debug, Default, Clone)]
pub struct LineChecker {
    sequences: BTreeMap<SequenceKey, Sequence>,
    expected: BTreeMap<(String, String), u64>,
    foreign: u64,
}

/// The outcome for one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceReport {
    /// Which sequence.
    pub key: SequenceKey,
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Sequence numbers missing below the highest seen (or the expected count).
    pub lost: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// Lines that arrived with a lower sequence number than the one before.
    pub out_of_order: u64,
    /// Lines captured on a stream other than the one `loggen` wrote them to.
    pub wrong_stream: u64,
}

/// The outcome for every sequence.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per container, run and stream.
    pub sequences: Vec<SequenceReport>,
    /// Lines that were not `loggen` lines.
    pub foreign_lines: u64,
}

impl Report {
    /// Distinct lines received over all sequences.
    pub fn total_lines(&self) -> u64 {
        self.sequences.iter().map(|s| s.received).sum()
    }

    /// Lines lost over all sequences.
    pub fn lost(&self) -> u64 {
        self.sequences.iter().map(|s| s.lost).sum()
    }

    /// Duplicates over all sequences.
    pub fn duplicated(&self) -> u64 {
        self.sequences.iter().map(|s| s.duplicated).sum()
    }

    /// Whether every sequence is complete, unique, in order and on the right stream.
    pub fn is_perfect(&self) -> bool {
        self.sequences
            .iter()
            .all(|s| s.lost == 0 && s.duplicated == 0 && s.out_of_order == 0 && s.wrong_stream == 0)
    }

    /// Panics with the imperfect sequences listed, unless the report is perfect.
    pub fn assert_perfect(&self) {
        let bad: Vec<_> = self
            .sequences
            .iter()
            .filter(|s| {
                s.lost != 0 || s.duplicated != 0 || s.out_of_order != 0 || s.wrong_stream != 0
            })
            .collect();
        assert!(bad.is_empty(), "imperfect capture: {bad:#?}");
    }
}

impl LineChecker {
    /// Expects `lines` lines per stream from every run of `tag` in `container`.
    pub fn expect(&mut self, container: &str, tag: &str, lines: u64) {
        self.expected
            .insert((container.to_owned(), tag.to_owned()), lines);
    }

    /// Records one captured line: `container` is where it came from, `stream` the stream it was
    /// captured on (`stdout`, `stderr`, `tty`), `message` the line without its newline.
    pub fn record(&mut self, container: &str, stream: &str, message: &str) {
        let mut fields = message.split(' ');
        let (Some(tag), Some(run), Some(label), Some(seq)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            self.foreign += 1;
            return;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            self.foreign += 1;
            return;
        };
        let key = SequenceKey {
            container: container.to_owned(),
            tag: tag.to_owned(),
            run: run.to_owned(),
            stream: label.to_owned(),
        };
        let sequence = self.sequences.entry(key).or_default();
        let index = seq as usize;
        if sequence.seen.len() <= index {
            sequence.seen.resize(index + 1, 0);
        }
        sequence.seen[index] += 1;
        if sequence.last.is_some_and(|last| seq < last) {
            sequence.out_of_order += 1;
        }
        sequence.last = Some(seq);
        let expected_stream = match label {
            "out" => "stdout",
            "err" => "stderr",
            _ => "tty",
        };
        if stream != expected_stream {
            sequence.wrong_stream += 1;
        }
        sequence
            .captured_on
            .get_or_insert_with(|| stream.to_owned());
    }

    /// The report so far.
    pub fn report(&self) -> Report {
        let sequences = self
            .sequences
            .iter()
            .map(|(key, sequence)| {
                let expected = self
                    .expected
                    .get(&(key.container.clone(), key.tag.clone()))
                    .copied()
                    .unwrap_or(sequence.seen.len() as u64);
                let span = expected.max(sequence.seen.len() as u64);
                let mut lost = 0;
                let mut duplicated = 0;
                let mut received = 0;
                for seq in 0..span {
                    match sequence.seen.get(seq as usize).copied().unwrap_or(0) {
                        0 => lost += 1,
                        count => {
                            received += 1;
                            duplicated += u64::from(count - 1);
                        }
                    }
                }
                SequenceReport {
                    key: key.clone(),
                    received,
                    lost,
                    duplicated,
                    out_of_order: sequence.out_of_order,
                    wrong_stream: sequence.wrong_stream,
                }
            })
            .collect();
        Report {
            sequences,
            foreign_lines: self.foreign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LineChecker;

    #[test]
    fn perfect_sequence_is_perfect() {
        let mut checker = LineChecker::default();
        checker.expect("c", "t", 3);
        for seq in 0..3 {
            checker.record("c", "stdout", &format!("t r out {seq} xx"));
        }
        let report = checker.report();
        assert!(report.is_perfect());
        assert_eq!(report.total_lines(), 3);
    }

    #[test]
    fn loss_duplicates_reordering_and_wrong_stream_are_reported() {
        let mut checker = LineChecker::default();
        checker.expect("c", "t", 5);
        for seq in [0, 2, 1, 1] {
            checker.record("c", "stdout", &format!("t r out {seq}"));
        }
        checker.record("c", "stdout", "t r err 0");
        checker.record("c", "stdout", "not a loggen line");
        let report = checker.report();
        let out = &report
            .sequences
            .iter()
            .find(|s| s.key.stream == "out")
            .unwrap();
        assert_eq!((out.received, out.lost, out.duplicated), (3, 2, 1));
        assert_eq!(out.out_of_order, 1);
        let err = &report
            .sequences
            .iter()
            .find(|s| s.key.stream == "err")
            .unwrap();
        assert_eq!(err.wrong_stream, 1);
        assert_eq!(report.foreign_lines, 1);
        assert!(!report.is_perfect());
    }
}
