//! A container's "read through" time: every line of the container whose timestamp is at or
//! before it has been read, whatever its stream.
//!
//! A stream's cursor says where to resume that stream, but a stream that never wrote a line
//! (stderr, for most containers) has no cursor, and a reopen that asks Docker for everything
//! since 0 makes the daemon send the container's whole history again. The read-through time
//! tells what is safe to skip for such a stream.
//!
//! It is taken when the task has sent everything it decoded and holds no partial line: Docker's
//! follow stream delivers a container's log in file order, so every line written before the
//! newest line read has been read; lines of another stream written just after it may carry a
//! slightly older timestamp (each stream's copier stamps its lines before they are serialised
//! into the one file), which [`STREAM_REORDER_MARGIN`] covers. A reopen in the same process
//! uses the time of what was *sent*; the checkpoint file persists it only once the cursors
//! acknowledged by the pipeline cover the read positions it was taken at.

use std::time::Duration;

use crate::checkpoint::StreamPositions;

/// How much older than the newest line read a line of another stream, written after it, may be.
pub(crate) const STREAM_REORDER_MARGIN: Duration = Duration::from_secs(2);

/// The read-through times of one container (kept in its `ContainerShared`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadThrough {
    /// Every line at or before this (nanoseconds) was sent into the pipeline.
    sent: Option<i64>,
    /// The latest `sent` value and the read positions that must be acknowledged before it can be
    /// persisted.
    pending: Option<(StreamPositions, i64)>,
}

impl ReadThrough {
    /// Starts from the persisted (or floor) read-through time.
    pub(crate) fn new(initial: Option<i64>) -> ReadThrough {
        ReadThrough {
            sent: initial,
            pending: None,
        }
    }

    /// The task sent everything it decoded and holds no partial line; `read` are the read
    /// positions after that send.
    pub(crate) fn caught_up(&mut self, read: &StreamPositions) {
        let Some(newest) = read.values().flatten().map(|p| p.timestamp_nanos).max() else {
            return;
        };
        let margin = i64::try_from(STREAM_REORDER_MARGIN.as_nanos()).unwrap_or(i64::MAX);
        let through = newest.saturating_sub(margin);
        if self.sent.is_none_or(|sent| through > sent) {
            self.sent = Some(through);
            self.pending = Some((*read, through));
        }
    }

    /// What a reopen in this process may rely on.
    pub(crate) fn sent(&self) -> Option<i64> {
        self.sent
    }

    /// The read-through time that the acknowledged cursors `acked` now cover, if any: every
    /// read position it was taken at is acknowledged.
    pub(crate) fn acknowledged(&self, acked: &StreamPositions) -> Option<i64> {
        let (read, through) = self.pending?;
        let covered = read
            .values()
            .zip(acked.values())
            .all(|(read, acked)| match (read, acked) {
                (None, _) => true,
                (Some(read), Some(acked)) => acked >= read,
                (Some(_), None) => false,
            });
        covered.then_some(through)
    }
}

#[cfg(test)]
mod tests {
    use capture_core::Position;

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn caught_up_reads_trail_the_newest_line_by_the_reorder_margin_and_never_move_back() {
        let mut through = ReadThrough::new(None);
        through.caught_up(&StreamPositions::default());
        assert_eq!(through.sent(), None, "nothing read yet");
        let stdout_only: StreamPositions =
            [Some(Position::new(100 * SECOND, 4)), None, None].into();
        through.caught_up(&stdout_only);
        assert_eq!(through.sent(), Some(98 * SECOND));
        let older: StreamPositions = [Some(Position::new(50 * SECOND, 0)), None, None].into();
        through.caught_up(&older);
        assert_eq!(through.sent(), Some(98 * SECOND));
    }

    #[test]
    fn it_is_persisted_only_once_every_read_position_it_needs_is_acknowledged() {
        let mut through = ReadThrough::new(Some(10 * SECOND));
        assert_eq!(
            through.acknowledged(&StreamPositions::default()),
            None,
            "nothing pending"
        );
        let read: StreamPositions = [
            Some(Position::new(100 * SECOND, 0)),
            Some(Position::new(90 * SECOND, 2)),
            None,
        ]
        .into();
        through.caught_up(&read);
        let behind: StreamPositions = [
            Some(Position::new(100 * SECOND, 0)),
            Some(Position::new(90 * SECOND, 1)),
            None,
        ]
        .into();
        assert_eq!(through.acknowledged(&behind), None);
        assert_eq!(
            through.acknowledged(&[read[capture_core::LogStream::Stdout], None, None].into()),
            None,
            "stderr was read but nothing of it is acknowledged"
        );
        assert_eq!(through.acknowledged(&read), Some(98 * SECOND));
    }
}
