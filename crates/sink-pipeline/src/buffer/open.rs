//! Opening a disk buffer: the saved read position, the segment files left by the last run
//! (scanned for their unread records and a torn tail), and where reading resumes.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::Path,
};

use tracing::warn;

use super::{
    Cursor, DiskBuffer, HEADER_BYTES, MAX_RECORD_BYTES, MIN_LINE_BYTES, POSITION_FILE, Segment,
    parse_header, pending_sync::PendingSync,
};
use crate::config::BufferConfig;

impl DiskBuffer {
    /// Opens the buffer in `dir`, creating it, and counts what is left to read.
    pub(crate) fn open(dir: &Path, config: &BufferConfig) -> io::Result<DiskBuffer> {
        fs::create_dir_all(dir)?;
        let position_file = open_position_file(dir)?;
        let saved = read_position(&position_file, dir)?;
        let ids = segment_ids(dir)?;
        let cursor = saved.unwrap_or(Cursor {
            segment: ids.first().copied().unwrap_or(1),
            offset: 0,
        });
        let mut buffer = DiskBuffer {
            dir: dir.to_owned(),
            config: config.clone(),
            segments: VecDeque::new(),
            writer: None,
            pending_sync: PendingSync::default(),
            reader: None,
            cursor,
            position_file,
            next_segment_id: ids
                .last()
                .map_or(1, |last| last + 1)
                .max(cursor.segment + 1),
            total_bytes: 0,
            unread_events: 0,
            unread_records: 0,
            in_flight: None,
            dropped_events: 0,
            scratch: Vec::new(),
        };
        buffer.load_segments(ids)?;
        buffer.settle_cursor();
        buffer.save_position();
        Ok(buffer)
    }

    /// Counts the unread records of the segments from the cursor's on; deletes those before it
    /// (fully read before the last stop, only their deletion was missed) and those left empty.
    fn load_segments(&mut self, ids: Vec<u64>) -> io::Result<()> {
        for id in ids {
            let path = self.segment_path(id);
            if id < self.cursor.segment {
                fs::remove_file(&path)?;
                continue;
            }
            let start = if id == self.cursor.segment {
                self.cursor.offset
            } else {
                0
            };
            let segment = self.scan_segment(id, &path, start)?;
            if segment.unread_records == 0 {
                fs::remove_file(&path)?;
                continue;
            }
            self.total_bytes += segment.size;
            self.unread_events += segment.unread_events;
            self.unread_records += segment.unread_records;
            self.segments.push_back(segment);
        }
        Ok(())
    }

    /// Moves the cursor to the start of the oldest segment kept when its own segment is gone,
    /// or to the next segment to write when none is left.
    fn settle_cursor(&mut self) {
        let segment = match self.segments.front() {
            Some(front) if front.id == self.cursor.segment => return,
            Some(front) => front.id,
            None => self.next_segment_id,
        };
        self.cursor = Cursor { segment, offset: 0 };
    }

    /// Walks the record headers of a segment from `start`, counting unread events and finding
    /// where readable records end.
    fn scan_segment(&mut self, id: u64, path: &Path, start: u64) -> io::Result<Segment> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut segment = Segment {
            id,
            size,
            end: start.min(size),
            unread_events: 0,
            unread_records: 0,
        };
        let mut offset = start;
        while offset < size {
            let mut header = [0u8; HEADER_BYTES as usize];
            if offset + HEADER_BYTES > size {
                warn!(
                    segment = id,
                    bytes = size - offset,
                    "disk buffer: skipping a torn record header"
                );
                break;
            }
            file.read_exact_at(&mut header, offset)?;
            let (length, events, _) = parse_header(&header);
            if length > MAX_RECORD_BYTES || offset + HEADER_BYTES + length > size {
                let lost = if events * MIN_LINE_BYTES <= length {
                    events
                } else {
                    0
                };
                warn!(
                    segment = id,
                    bytes = size - offset,
                    events = lost,
                    "disk buffer: skipping a torn or corrupt record at the end of a segment"
                );
                self.dropped_events += lost;
                break;
            }
            offset += HEADER_BYTES + length;
            segment.end = offset;
            segment.unread_events += events;
            segment.unread_records += 1;
        }
        Ok(segment)
    }
}

/// `reader.pos`, created empty on a first start.
fn open_position_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(POSITION_FILE))
}

/// The ids of the segment files in `dir`, oldest first.
fn segment_ids(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".seg"))
            .and_then(|id| id.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn read_position(file: &File, dir: &Path) -> io::Result<Option<Cursor>> {
    let mut bytes = [0u8; 20];
    if file.metadata()?.len() < 20 {
        return Ok(None);
    }
    file.read_exact_at(&mut bytes, 0)?;
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32fast::hash(&bytes[0..16]) != crc {
        warn!(dir = %dir.display(), "disk buffer: corrupt read position; replaying from the oldest segment");
        return Ok(None);
    }
    let mut segment = [0u8; 8];
    segment.copy_from_slice(&bytes[0..8]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[8..16]);
    Ok(Some(Cursor {
        segment: u64::from_le_bytes(segment),
        offset: u64::from_le_bytes(offset),
    }))
}
