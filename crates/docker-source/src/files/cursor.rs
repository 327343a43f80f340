//! File mode's resume hint: where in which file the acknowledged lines end.
//!
//! The cursor of record stays the [`Position`] of each stream, the same as on the API path, so
//! a container moves between modes without loss or duplicate. A file follower also remembers,
//! per batch it sends, the file (device, inode) and byte offset its reading had reached, and the
//! position of the last line of each stream before that offset. Once every stream of a batch is
//! acknowledged, that mark becomes the container's [`FileHint`], saved with the checkpoints. On
//! reopen the follower seeks straight to the hint's offset, after checking that the entry ending
//! there is still the one the hint saw (same start, same length, same timestamp); if not (the
//! file was rotated, compressed, deleted or is another one), it reads from the oldest file and
//! skips by position, as the API path does.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
};

use capture_core::Position;
use serde::{Deserialize, Serialize};

use super::{EntryFormat, Step, tail::FileId, tail::Tail};
use crate::checkpoint::StreamPositions;

/// Marks kept per container while their batches await acknowledgement (older ones are dropped
/// first: only the newest acknowledged mark matters).
const MAX_MARKS: usize = 256;

/// Where a file follower can resume without reading again what is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileHint {
    /// The file.
    #[serde(flatten)]
    pub(crate) file: FileId,
    /// The byte offset where reading resumes (the end of an entry).
    pub(crate) offset: u64,
    /// Where the entry that ends at `offset` starts.
    pub(crate) entry_start: u64,
    /// That entry's timestamp.
    pub(crate) entry_timestamp: i64,
    /// The last line of each stream before `offset` (seen, delivered or skipped), so the
    /// ordinals of equal timestamps continue across the resume.
    pub(crate) last: StreamPositions,
}

impl FileHint {
    /// Whether the entry ending at the hint's offset in `tail`'s current file (opened at the
    /// hint) is still the one the hint describes.
    pub(crate) fn holds(&self, tail: &Tail, format: &mut dyn EntryFormat) -> bool {
        let Some(len) = self.offset.checked_sub(self.entry_start) else {
            return false;
        };
        if len == 0 || len > format.max_entry_bytes() as u64 || !tail.is_plain() {
            return false;
        }
        let Ok(bytes) = tail.read_range(self.entry_start, self.offset) else {
            return false;
        };
        if bytes.len() as u64 != len {
            return false;
        }
        matches!(
            format.next(&bytes),
            Step::Entry { entry, len } if len == bytes.len() && entry.timestamp_nanos == self.entry_timestamp
        )
    }
}

/// The marks of one container's batches in flight, oldest first.
#[derive(Debug)]
pub(crate) struct HintLedger {
    /// Where the container's reading started: a stream still there has sent nothing, and
    /// needs no acknowledgement.
    initial: StreamPositions,
    marks: VecDeque<(StreamPositions, FileHint)>,
}

impl HintLedger {
    pub(crate) fn new(initial: StreamPositions) -> HintLedger {
        HintLedger {
            initial,
            marks: VecDeque::new(),
        }
    }

    /// A batch was sent: once `sent` (every stream's read position after it) is acknowledged,
    /// `hint` is safe.
    pub(crate) fn record(&mut self, sent: StreamPositions, hint: FileHint) {
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back((sent, hint));
    }

    /// The newest hint whose batches `acked` covers, removing it and the older ones.
    pub(crate) fn commit(&mut self, acked: &StreamPositions) -> Option<FileHint> {
        let mut committed = None;
        while let Some((sent, hint)) = self.marks.front() {
            if !self.covers(sent, acked) {
                break;
            }
            committed = Some(*hint);
            self.marks.pop_front();
        }
        committed
    }

    fn covers(&self, sent: &StreamPositions, acked: &StreamPositions) -> bool {
        sent.values()
            .zip(self.initial.values())
            .zip(acked.values())
            .all(|((sent, initial), acked)| sent == initial || at_or_after(acked, sent))
    }
}

/// One container's file cursor, shared by its follower (which records) and the source (which
/// commits on acknowledgements); outlives the follower's attempts.
#[derive(Debug)]
pub(crate) struct FileCursor {
    inner: Mutex<CursorState>,
}

#[derive(Debug)]
struct CursorState {
    ledger: HintLedger,
    /// The hint of the last batch sent (acknowledged or not): where an in-process reopen
    /// resumes, like the read positions it goes with.
    resume: Option<FileHint>,
}

impl FileCursor {
    /// A cursor for a container whose reading starts at `initial` (its acknowledged or
    /// `read_from` positions), with the hint saved with them, if any.
    pub(crate) fn new(initial: StreamPositions, saved: Option<FileHint>) -> FileCursor {
        FileCursor {
            inner: Mutex::new(CursorState {
                ledger: HintLedger::new(initial),
                resume: saved,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CursorState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch was sent; `sent` is every stream's read position after it.
    pub(crate) fn sent(&self, sent: StreamPositions, hint: FileHint) {
        let mut state = self.state();
        state.ledger.record(sent, hint);
        state.resume = Some(hint);
    }

    /// Where a reopen resumes.
    pub(crate) fn resume_hint(&self) -> Option<FileHint> {
        self.state().resume
    }

    /// The newest hint `acked` covers (see [`HintLedger::commit`]).
    pub(crate) fn commit(&self, acked: &StreamPositions) -> Option<FileHint> {
        self.state().ledger.commit(acked)
    }
}

fn at_or_after(acked: &Option<Position>, sent: &Option<Position>) -> bool {
    match (acked, sent) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(acked), Some(sent)) => acked >= sent,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::files::{
        json_file::JsonFile,
        tail::{LogFiles, Start},
    };

    fn p(nanos: i64) -> Option<Position> {
        Some(Position::new(nanos, 0))
    }

    fn hint(offset: u64) -> FileHint {
        FileHint {
            file: FileId { dev: 1, ino: 2 },
            offset,
            entry_start: 0,
            entry_timestamp: 0,
            last: StreamPositions::default(),
        }
    }

    #[test]
    fn a_hint_is_committed_once_every_stream_of_its_batch_is_acknowledged() {
        let mut ledger = HintLedger::new([p(5), p(5), p(5)].into());
        ledger.record([p(10), p(5), p(5)].into(), hint(100));
        ledger.record([p(10), p(20), p(5)].into(), hint(200));
        ledger.record([p(30), p(20), p(5)].into(), hint(300));
        // Nothing acknowledged yet (the checkpoint has no cursor at all).
        assert_eq!(ledger.commit(&[None, None, None].into()), None);
        assert_eq!(ledger.commit(&[p(10), None, None].into()), Some(hint(100)));
        // stderr's batch is not acknowledged yet: the later marks wait.
        assert_eq!(ledger.commit(&[p(30), p(15), None].into()), None);
        assert_eq!(ledger.commit(&[p(30), p(20), None].into()), Some(hint(300)));
        assert_eq!(ledger.commit(&[p(30), p(20), None].into()), None);
    }

    #[test]
    fn the_ledger_stays_bounded() {
        let mut ledger = HintLedger::new(StreamPositions::default());
        for n in 0..(MAX_MARKS as i64 * 2) {
            ledger.record([p(n), None, None].into(), hint(n as u64));
        }
        assert_eq!(ledger.marks.len(), MAX_MARKS);
        let last = MAX_MARKS as i64 * 2 - 1;
        assert_eq!(
            ledger.commit(&[p(last), None, None].into()),
            Some(hint(last as u64))
        );
    }

    #[test]
    fn a_hint_holds_only_on_the_entry_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("c.log");
        let first = "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"1970-01-01T00:00:01Z\"}\n";
        let second = "{\"log\":\"b\\n\",\"stream\":\"stdout\",\"time\":\"1970-01-01T00:00:02Z\"}\n";
        let mut file = std::fs::File::create(&live).unwrap();
        file.write_all(first.as_bytes()).unwrap();
        file.write_all(second.as_bytes()).unwrap();
        let id = {
            use std::os::unix::fs::MetadataExt;
            let metadata = std::fs::metadata(&live).unwrap();
            FileId {
                dev: metadata.dev(),
                ino: metadata.ino(),
            }
        };
        let end = (first.len() + second.len()) as u64;
        let good = FileHint {
            file: id,
            offset: end,
            entry_start: first.len() as u64,
            entry_timestamp: 2_000_000_000,
            last: [p(2_000_000_000), None, None].into(),
        };
        let tail = Tail::open(LogFiles::new(&live, 1), Start::At { id, offset: end }, None)
            .unwrap()
            .unwrap();
        let mut format = JsonFile::default();
        assert!(good.holds(&tail, &mut format));
        for bad in [
            FileHint {
                entry_timestamp: 1,
                ..good
            },
            FileHint {
                entry_start: 0,
                ..good
            },
            FileHint {
                offset: end + 1,
                ..good
            },
            FileHint {
                entry_start: end,
                ..good
            },
        ] {
            assert!(!bad.holds(&tail, &mut format), "{bad:?}");
        }
    }
}
