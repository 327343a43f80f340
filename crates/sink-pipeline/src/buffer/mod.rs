//! A sink's disk buffer: deliveries waiting for a sink that is down, in segment files.
//!
//! Layout under `<data_dir>/buffer/<sink name>/`:
//!
//! - `00000000000000000001.seg`, ...: append-only segment files of records
//!   `u32 payload length | u32 events | u32 crc32(events, payload) | payload` (little-endian;
//!   the payload is a delivery encoded by [`codec`]). A segment is closed at `segment_bytes` and
//!   deleted once read to its end.
//! - `reader.pos`: where the next unread record starts (segment id, offset, crc32), rewritten in
//!   place after each record is delivered, so a restart resumes there and delivers nothing
//!   twice (a crash between a delivery and this write can repeat that one record).
//!
//! Records are written by one process at a time and appended only; a crash can leave a torn
//! record at the end of the last segment. At open, headers are checked against the file size and
//! the unread events counted; a torn or implausible header ends its segment there. When
//! replayed, a record whose checksum or decoding fails is skipped. Both losses are counted as
//! dropped events and logged, never a panic. `open.rs` reads what the last run left; this file
//! appends, reads and consumes.

pub(crate) mod codec;
mod open;
mod pending_sync;

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::PathBuf,
};

use capture_core::EventBatch;
use tracing::warn;

use self::pending_sync::PendingSync;

use crate::config::{BufferConfig, FsyncPolicy, WhenFull};

const HEADER_BYTES: u64 = 12;
/// Larger lengths are corruption: deliveries are a few MiB.
const MAX_RECORD_BYTES: u64 = 1 << 30;
/// The smallest encoding of one line (stream, timestamp, ordinal, message length).
const MIN_LINE_BYTES: u64 = 17;
const POSITION_FILE: &str = "reader.pos";

/// Where a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes on disk (what `max_bytes` limits).
    size: u64,
    /// Where the readable records end (before a torn tail, if any).
    end: u64,
    unread_events: u64,
    unread_records: u64,
}

/// A record read from the buffer, to deliver and then [`DiskBuffer::consume`].
#[derive(Debug)]
pub(crate) struct ReplayRecord {
    pub(crate) batches: Vec<EventBatch>,
    pub(crate) events: u64,
    start: Cursor,
    next: Cursor,
}

/// Why an append did not happen.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The buffer is at `max_bytes` and its policy is `block`.
    Full,
    /// The file system failed.
    Io(io::Error),
}

/// The segment files of one sink.
#[derive(Debug)]
pub(crate) struct DiskBuffer {
    dir: PathBuf,
    config: BufferConfig,
    /// Oldest first. The reader's segment is the front one; the writer appends to the back one.
    segments: VecDeque<Segment>,
    /// Appends to `segments.back()`; `None` when the next append starts a new segment.
    writer: Option<File>,
    /// Appends not yet synced, in `writer` and in segments closed by a roll-over.
    pending_sync: PendingSync,
    /// The segment being read, by id.
    reader: Option<(u64, File)>,
    cursor: Cursor,
    position_file: File,
    next_segment_id: u64,
    total_bytes: u64,
    unread_events: u64,
    unread_records: u64,
    /// The record handed out by `read_next` and not yet consumed: if its segment is dropped
    /// meanwhile, its events are not counted as dropped, since they are still delivered.
    in_flight: Option<(Cursor, u64)>,
    /// Events lost (dropped by policy, corrupt) and not yet taken by the worker.
    dropped_events: u64,
    /// Reused for encoding and reading records.
    scratch: Vec<u8>,
}

impl DiskBuffer {
    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// New limits and policies (a reload): they apply to the next appends.
    pub(crate) fn set_config(&mut self, config: &BufferConfig) {
        self.config = config.clone();
    }

    /// Events waiting in the buffer (including one being delivered).
    pub(crate) fn unread_events(&self) -> u64 {
        self.unread_events
    }

    /// Whether no record waits to be read.
    pub(crate) fn is_empty(&self) -> bool {
        self.unread_records == 0
    }

    /// Events dropped (by `drop_oldest` or as corrupt) since the last call.
    pub(crate) fn take_dropped_events(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_events)
    }

    /// Appends a delivery; it is durable after [`DiskBuffer::sync`].
    ///
    /// With `ignore_limit` the size limit is not enforced: for the last batches persisted at a
    /// hard stop.
    pub(crate) fn append(
        &mut self,
        batches: &[EventBatch],
        events: u64,
        ignore_limit: bool,
    ) -> Result<(), AppendError> {
        self.scratch.clear();
        self.scratch.resize(HEADER_BYTES as usize, 0);
        codec::encode(&mut self.scratch, batches);
        let payload = &self.scratch[HEADER_BYTES as usize..];
        let length = payload.len() as u64;
        let events32 = u32::try_from(events).unwrap_or(u32::MAX);
        if length > MAX_RECORD_BYTES {
            return Err(AppendError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "delivery too large for the disk buffer",
            )));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&events32.to_le_bytes());
        hasher.update(payload);
        let crc = hasher.finalize();
        self.scratch[0..4].copy_from_slice(&(length as u32).to_le_bytes());
        self.scratch[4..8].copy_from_slice(&events32.to_le_bytes());
        self.scratch[8..12].copy_from_slice(&crc.to_le_bytes());
        let record_bytes = self.scratch.len() as u64;

        if !ignore_limit
            && self.unread_records > 0
            && self.total_bytes + record_bytes > self.config.max_bytes
        {
            match self.config.when_full {
                WhenFull::Block => return Err(AppendError::Full),
                WhenFull::DropOldest => {
                    while self.total_bytes + record_bytes > self.config.max_bytes
                        && !self.segments.is_empty()
                    {
                        self.drop_oldest_segment();
                    }
                }
            }
        }
        let roll = match (&self.writer, self.segments.back()) {
            (Some(_), Some(back)) => back.size >= self.config.segment_bytes,
            _ => true,
        };
        if roll {
            self.start_segment().map_err(AppendError::Io)?;
        }
        let (Some(writer), Some(back)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(AppendError::Io(io::Error::other("no open segment")));
        };
        if let Err(error) = writer.write_all(&self.scratch) {
            // Leave no torn record behind a failed write: the next append starts clean.
            if writer.set_len(back.size).is_err() {
                // Its earlier appends still need their sync.
                self.retire_writer();
            }
            return Err(AppendError::Io(error));
        }
        self.pending_sync.appended();
        back.size += record_bytes;
        back.end += record_bytes;
        back.unread_events += events;
        back.unread_records += 1;
        self.total_bytes += record_bytes;
        self.unread_events += events;
        self.unread_records += 1;
        Ok(())
    }

    /// Makes the appended records durable, as the fsync policy asks: the segments that filled
    /// since the last sync first, then the one being written.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        match self.config.fsync {
            FsyncPolicy::Always => self.pending_sync.sync(self.writer.as_ref()),
            FsyncPolicy::Never => Ok(()),
        }
    }

    /// The segments holding appends that [`DiskBuffer::sync`] has yet to make durable.
    #[cfg(test)]
    pub(crate) fn unsynced_segments(&self) -> Vec<u64> {
        let writer = self.writer.as_ref().and(self.segments.back());
        self.pending_sync.segments(writer.map(|segment| segment.id))
    }

    /// Stops appending to the current segment; its unsynced appends wait for the next sync.
    fn retire_writer(&mut self) {
        if let (Some(writer), Some(back)) = (self.writer.take(), self.segments.back()) {
            let keep = self.config.fsync == FsyncPolicy::Always;
            self.pending_sync.retire(back.id, writer, keep);
        }
    }

    /// Stops appending to a segment that is being deleted: nothing in it needs syncing.
    fn drop_writer(&mut self) {
        self.writer = None;
        self.pending_sync.forget_writer();
    }

    fn start_segment(&mut self) -> io::Result<()> {
        self.retire_writer();
        let id = self.next_segment_id;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(self.segment_path(id))?;
        if self.config.fsync == FsyncPolicy::Always {
            // The new name must survive a power loss too.
            File::open(&self.dir)?.sync_all()?;
        }
        self.next_segment_id += 1;
        self.segments.push_back(Segment {
            id,
            size: 0,
            end: 0,
            unread_events: 0,
            unread_records: 0,
        });
        self.writer = Some(file);
        Ok(())
    }

    fn is_write_segment(&self, index: usize) -> bool {
        self.writer.is_some() && index + 1 == self.segments.len()
    }

    /// Deletes the oldest segment under `drop_oldest`, counting its unread events as dropped.
    fn drop_oldest_segment(&mut self) {
        let Some(segment) = self.segments.pop_front() else {
            return;
        };
        if self.segments.is_empty() {
            self.drop_writer();
        }
        let in_flight = match self.in_flight {
            Some((cursor, events)) if cursor.segment == segment.id => events,
            _ => 0,
        };
        let lost = segment.unread_events.saturating_sub(in_flight);
        self.dropped_events += lost;
        warn!(
            segment = segment.id,
            events = lost,
            "disk buffer full: dropping its oldest segment"
        );
        self.total_bytes -= segment.size;
        self.unread_events -= segment.unread_events;
        self.unread_records -= segment.unread_records;
        self.remove_segment_file(segment.id);
        if self.cursor.segment == segment.id {
            self.move_cursor_past_front();
        }
    }

    fn remove_segment_file(&mut self, id: u64) {
        if self
            .reader
            .as_ref()
            .is_some_and(|(reader_id, _)| *reader_id == id)
        {
            self.reader = None;
        }
        if let Err(error) = fs::remove_file(self.segment_path(id)) {
            warn!(segment = id, error = %error, "disk buffer: cannot remove a segment");
        }
    }

    /// Points the cursor at the start of the oldest segment, or of the next one to be created.
    fn move_cursor_past_front(&mut self) {
        self.cursor = Cursor {
            segment: self
                .segments
                .front()
                .map_or(self.next_segment_id, |segment| segment.id),
            offset: 0,
        };
        self.save_position();
    }

    /// Reads the next unread record, skipping (and counting) corrupt ones.
    pub(crate) fn read_next(&mut self) -> Option<ReplayRecord> {
        loop {
            let front = self.segments.front()?;
            if front.id != self.cursor.segment {
                self.move_cursor_past_front();
                continue;
            }
            if self.cursor.offset >= front.end {
                if self.is_write_segment(0) {
                    return None;
                }
                // Read to its end (or to a torn tail): it is done.
                self.discard_front_segment();
                continue;
            }
            let (id, end) = (front.id, front.end);
            match self.read_record_at(id) {
                Ok(Ok(record)) => {
                    self.in_flight = Some((record.start, record.events));
                    return Some(record);
                }
                Ok(Err((length, events, reason))) => {
                    warn!(
                        segment = id,
                        offset = self.cursor.offset,
                        events,
                        reason,
                        "disk buffer: skipping a corrupt record"
                    );
                    self.dropped_events += events;
                    self.account_read(events);
                    self.cursor.offset += HEADER_BYTES + length;
                    self.save_position();
                }
                Err(error) => {
                    let lost = self
                        .segments
                        .front()
                        .map_or(0, |segment| segment.unread_events);
                    warn!(segment = id, error = %error, events = lost, "disk buffer: cannot read a segment; skipping it");
                    self.dropped_events += lost;
                    self.cursor.offset = end;
                    if let Some(front) = self.segments.front_mut() {
                        front.end = front.end.min(end);
                    }
                    // Force the segment out, even if it is the one being written.
                    self.drop_writer();
                    self.discard_front_segment();
                }
            }
        }
    }

    /// Reads the record at the cursor of segment `id`: the record, or what to skip and why.
    #[allow(clippy::type_complexity)]
    fn read_record_at(
        &mut self,
        id: u64,
    ) -> io::Result<Result<ReplayRecord, (u64, u64, &'static str)>> {
        if self
            .reader
            .as_ref()
            .is_none_or(|(reader_id, _)| *reader_id != id)
        {
            self.reader = Some((id, File::open(self.segment_path(id))?));
        }
        let Some((_, file)) = &self.reader else {
            return Err(io::Error::other("no reader"));
        };
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut header, self.cursor.offset)?;
        let (length, events, crc) = parse_header(&header);
        self.scratch.clear();
        self.scratch.resize(length as usize, 0);
        file.read_exact_at(&mut self.scratch, self.cursor.offset + HEADER_BYTES)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[4..8]);
        hasher.update(&self.scratch);
        if hasher.finalize() != crc {
            return Ok(Err((length, events, "checksum mismatch")));
        }
        let mut batches = match codec::decode(&self.scratch) {
            Ok(batches) => batches,
            Err(_) => return Ok(Err((length, events, "undecodable payload"))),
        };
        // A record read back may be the one a sink was taking when the agent died: a sink
        // that deduplicates (the file sink) may skip what it already holds.
        for batch in &mut batches {
            batch.mark_replay();
        }
        let start = self.cursor;
        Ok(Ok(ReplayRecord {
            batches,
            events,
            start,
            next: Cursor {
                segment: start.segment,
                offset: start.offset + HEADER_BYTES + length,
            },
        }))
    }

    fn account_read(&mut self, events: u64) {
        if let Some(front) = self.segments.front_mut() {
            front.unread_events = front.unread_events.saturating_sub(events);
            front.unread_records = front.unread_records.saturating_sub(1);
        }
        self.unread_events = self.unread_events.saturating_sub(events);
        self.unread_records = self.unread_records.saturating_sub(1);
    }

    /// Deletes the front segment once nothing in it is left to read.
    fn discard_front_segment(&mut self) {
        let Some(segment) = self.segments.pop_front() else {
            return;
        };
        if self.segments.is_empty() {
            self.drop_writer();
        }
        // Whatever was still counted as unread in it is lost (a corrupt remainder).
        self.unread_events -= segment.unread_events;
        self.unread_records -= segment.unread_records;
        self.total_bytes -= segment.size;
        self.remove_segment_file(segment.id);
        self.move_cursor_past_front();
    }

    /// Marks `record` (from [`DiskBuffer::read_next`]) as delivered.
    pub(crate) fn consume(&mut self, record: &ReplayRecord) {
        self.in_flight = None;
        if self.cursor != record.start {
            // Its segment was dropped while it was being delivered; nothing left to account.
            return;
        }
        self.account_read(record.events);
        self.cursor = record.next;
        let exhausted = self
            .segments
            .front()
            .is_some_and(|front| self.cursor.offset >= front.end);
        if exhausted && (!self.is_write_segment(0) || self.unread_records == 0) {
            // Everything read: a write segment is retired too, so the buffer shrinks to nothing
            // and the next spill starts a fresh segment.
            self.drop_writer();
            self.discard_front_segment();
        } else {
            self.save_position();
        }
    }

    /// Rewrites `reader.pos` in place. A failure only risks repeating records after a restart.
    fn save_position(&mut self) {
        let mut bytes = [0u8; 20];
        bytes[0..8].copy_from_slice(&self.cursor.segment.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.cursor.offset.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..16]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        let result =
            self.position_file
                .write_all_at(&bytes, 0)
                .and_then(|()| match self.config.fsync {
                    FsyncPolicy::Always => self.position_file.sync_data(),
                    FsyncPolicy::Never => Ok(()),
                });
        if let Err(error) = result {
            warn!(dir = %self.dir.display(), error = %error, "disk buffer: cannot save the read position");
        }
    }
}

fn parse_header(header: &[u8; HEADER_BYTES as usize]) -> (u64, u64, u32) {
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    (u64::from(word(0)), u64::from(word(4)), word(8))
}
