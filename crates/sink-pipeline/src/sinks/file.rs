//! The file sink: JSON lines with size-based rotation, exactly-once over at-least-once input.
//!
//! Idempotency: the sink keeps, per container and stream, the [`Position`] of the last line it
//! wrote (its high-water mark). Lines of a batch the source marks as a *replay*
//! ([`EventBatch::is_replay`]: read again after an agent restart or a reopen, or read back from
//! the disk buffer) are skipped when at or below the mark, and counted in
//! `log_capturer_sink_lines_skipped_total{sink}`. Live lines are always written, also when their
//! timestamp is older than the mark (the wall clock stepped back: NTP, a leap second), and the
//! mark follows them: it is the last line written, not the largest. At open the marks are
//! recovered from the files themselves: the last record of each stream, and the ordinal as the
//! number of consecutive records of that stream carrying its timestamp (counted across rotated
//! files when the run of equal timestamps crosses a rotation). Positions are assigned in read
//! order, so this reproduces the source's positions exactly.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use capture_core::{ContainerId, EventBatch, LogStream, Position};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::mark_retention::MarkRetention;
use crate::{
    config::FileSinkConfig,
    metric_names::SINK_LINES_SKIPPED_TOTAL,
    record::{RecordEncoder, parse_record_key},
    sink::{Sink, SinkError},
};

/// An I/O failure of the file sink, with what it was doing and where.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub(crate) struct FileSinkError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl FileSinkError {
    fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        FileSinkError {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

impl From<FileSinkError> for SinkError {
    fn from(error: FileSinkError) -> Self {
        // Classified by the I/O error: disk full is transient, permission denied permanent.
        if crate::sink::io_error_is_permanent(&error.source) {
            SinkError::permanent(error)
        } else {
            SinkError::transient(error)
        }
    }
}

/// High-water marks of one container, one per stream (indexed by [`LogStream::index`]).
type StreamMarks = [Option<Position>; 3];

/// Writes records to `path`, rotating it into `path.1`, `path.2`, ... by size.
#[derive(Debug)]
pub(crate) struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    compress: bool,
    fsync: bool,
    /// The active file, opened for appending; `None` after a failed reopen.
    file: Option<File>,
    /// Device and inode of `file`, to notice when the path is removed or replaced under us.
    identity: (u64, u64),
    /// Bytes in the active file.
    size: u64,
    high_water: HashMap<ContainerId, StreamMarks>,
    /// Forgets the marks of containers gone for `high_water_retention`.
    retention: MarkRetention,
    /// The marks as they were before the current delivery, restored if its write fails.
    undo: Vec<(ContainerId, Option<StreamMarks>)>,
    encoder: RecordEncoder,
    /// Reused for every delivery: all its records, written with one `write` call.
    buffer: Vec<u8>,
    /// `log_capturer_sink_lines_skipped_total{sink}`: replayed lines already in the file.
    skipped_lines: metrics::Counter,
    /// The thread gzipping the last rotated file. Joined before the next rotation and on drop,
    /// so two compressions never race on the same names.
    compressor: Option<JoinHandle<()>>,
}

impl FileSink {
    /// Opens (or creates) the active file and recovers the high-water marks from the files.
    /// `name` is the sink's name, the label of its metrics.
    pub(crate) fn open(config: &FileSinkConfig, name: &str) -> Result<FileSink, SinkError> {
        let path = config.path.clone();
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::create_dir_all(parent)
                .map_err(|error| FileSinkError::new("create the directory", parent, error))?;
        }
        let mut sink = FileSink {
            path,
            max_bytes: config.max_bytes,
            max_files: config.max_files,
            compress: config.compress,
            fsync: config.fsync,
            file: None,
            identity: (0, 0),
            size: 0,
            high_water: HashMap::new(),
            retention: MarkRetention::new(config.high_water_retention, Instant::now()),
            undo: Vec::new(),
            encoder: RecordEncoder::default(),
            buffer: Vec::new(),
            skipped_lines: metrics::counter!(SINK_LINES_SKIPPED_TOTAL, "sink" => name.to_owned()),
            compressor: None,
        };
        // Published at zero, so the series exists before the first skip.
        sink.skipped_lines.increment(0);
        sink.high_water = sink.recover()?;
        let now = Instant::now();
        for id in sink.high_water.keys() {
            sink.retention.seen(id, now);
        }
        sink.reopen()?;
        info!(
            path = %sink.path.display(),
            streams = sink.high_water.len(),
            "file sink opened"
        );
        Ok(sink)
    }

    fn rotated_path(&self, index: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    fn compressed_path(&self, index: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}.gz"));
        PathBuf::from(name)
    }

    /// Reads the active file and every rotated one, newest first, into high-water marks.
    fn recover(&self) -> Result<HashMap<ContainerId, StreamMarks>, FileSinkError> {
        let mut marks: HashMap<String, [Option<RecoveredMark>; 3]> = HashMap::new();
        self.truncate_partial_line()?;
        let mut files = vec![(self.path.clone(), false)];
        for index in 1..=self.max_files {
            files.push((self.rotated_path(index), false));
            files.push((self.compressed_path(index), true));
        }
        for (path, gzipped) in files {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(FileSinkError::new("read", &path, error)),
            };
            let stats = if gzipped {
                scan_records(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
            } else {
                scan_records(file)
            }
            .map_err(|error| FileSinkError::new("read", &path, error))?;
            merge_older_file(&mut marks, stats);
        }
        let mut high_water = HashMap::with_capacity(marks.len());
        for (id, streams) in marks {
            let Ok(id) = ContainerId::new(&id) else {
                continue;
            };
            let streams = streams.map(|mark| {
                mark.map(|mark| Position::new(mark.timestamp_nanos, mark.count.saturating_sub(1)))
            });
            high_water.insert(id, streams);
        }
        Ok(high_water)
    }

    /// Cuts an unfinished last line (a write interrupted by a crash) off the active file. It
    /// was never accepted, so the source sends it again.
    fn truncate_partial_line(&self) -> Result<(), FileSinkError> {
        let mut file = match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(FileSinkError::new("open", &self.path, error)),
        };
        let read_error = |error| FileSinkError::new("read", &self.path, error);
        let length = file.metadata().map_err(read_error)?.len();
        if length == 0 {
            return Ok(());
        }
        // Search backwards in blocks for the last newline.
        let mut end = length;
        let mut block = vec![0u8; 64 * 1024];
        let keep = loop {
            let start = end.saturating_sub(block.len() as u64);
            let chunk = &mut block[..(end - start) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, chunk, start).map_err(read_error)?;
            if let Some(position) = chunk.iter().rposition(|&byte| byte == b'\n') {
                break start + position as u64 + 1;
            }
            if start == 0 {
                break 0;
            }
            end = start;
        };
        if keep < length {
            warn!(
                path = %self.path.display(),
                bytes = length - keep,
                "removing an unfinished last line"
            );
            file.set_len(keep)
                .map_err(|error| FileSinkError::new("truncate", &self.path, error))?;
            file.flush().map_err(read_error)?;
        }
        Ok(())
    }

    /// Opens the active file at `path`, creating it if needed (and syncing its directory when
    /// `fsync`).
    fn reopen(&mut self) -> Result<(), FileSinkError> {
        self.file = None;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|error| FileSinkError::new("open", &self.path, error))?;
        let metadata = file
            .metadata()
            .map_err(|error| FileSinkError::new("inspect", &self.path, error))?;
        if self.fsync {
            // The file may have just been created (or renamed away by a rotation): its name must
            // be as durable as the records written to it.
            sync_parent_dir(&self.path)
                .map_err(|error| FileSinkError::new("sync the directory of", &self.path, error))?;
        }
        self.identity = (metadata.dev(), metadata.ino());
        self.size = metadata.len();
        self.file = Some(file);
        Ok(())
    }

    /// Reopens the file if it was removed or replaced since we opened it.
    fn ensure_open(&mut self) -> Result<(), FileSinkError> {
        let current = match fs::metadata(&self.path) {
            Ok(metadata) => Some((metadata.dev(), metadata.ino())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(FileSinkError::new("inspect", &self.path, error)),
        };
        if self.file.is_none() || current != Some(self.identity) {
            if self.file.is_some() {
                warn!(path = %self.path.display(), "log file removed or replaced; reopening it");
            }
            self.reopen()?;
        }
        Ok(())
    }

    /// Shifts `path.N` to `path.N+1` (dropping the oldest), moves the active file to `path.1`
    /// and starts a new one; gzips `path.1` on a thread if configured.
    fn rotate(&mut self) -> Result<(), FileSinkError> {
        self.join_compressor();
        for path in [
            self.rotated_path(self.max_files),
            self.compressed_path(self.max_files),
        ] {
            remove_if_exists(&path).map_err(|error| FileSinkError::new("remove", &path, error))?;
        }
        for index in (1..self.max_files).rev() {
            for (from, to) in [
                (self.rotated_path(index), self.rotated_path(index + 1)),
                (self.compressed_path(index), self.compressed_path(index + 1)),
            ] {
                match fs::rename(&from, &to) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => {
                        return Err(FileSinkError::new("rotate", &from, error));
                    }
                    _ => {}
                }
            }
        }
        let first = self.rotated_path(1);
        fs::rename(&self.path, &first)
            .map_err(|error| FileSinkError::new("rotate", &self.path, error))?;
        // With `fsync`, this also syncs the directory: the renames and the new active file
        // survive a power loss like the records.
        self.reopen()?;
        debug!(path = %self.path.display(), "log file rotated");
        if self.compress {
            let target = self.compressed_path(1);
            let fsync = self.fsync;
            let spawned = std::thread::Builder::new()
                .name("log-compress".into())
                .spawn(move || {
                    if let Err(error) = compress_file(&first, &target, fsync) {
                        warn!(path = %first.display(), error = %error, "cannot compress rotated log file");
                    }
                });
            match spawned {
                Ok(handle) => self.compressor = Some(handle),
                Err(error) => warn!(error = %error, "cannot start the compression thread"),
            }
        }
        Ok(())
    }

    fn join_compressor(&mut self) {
        if let Some(handle) = self.compressor.take()
            && handle.join().is_err()
        {
            warn!("the compression thread panicked");
        }
    }

    /// Writes the rendered buffer with one call, rotating first if it would not fit.
    fn write_buffer(&mut self) -> Result<(), FileSinkError> {
        self.ensure_open()?;
        let length = self.buffer.len() as u64;
        if self.size > 0 && self.size + length > self.max_bytes {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(FileSinkError::new(
                "open",
                &self.path,
                io::Error::other("no open file"),
            ));
        };
        let written = file
            .write_all(&self.buffer)
            .map_err(|error| ("write", error))
            .and_then(|()| match self.fsync {
                true => file.sync_data().map_err(|error| ("sync", error)),
                false => Ok(()),
            });
        if let Err((action, error)) = written {
            // Remove a partial write so the retry leaves exactly one copy of every record.
            if let Err(truncate_error) = file.set_len(self.size) {
                warn!(path = %self.path.display(), error = %truncate_error, "cannot remove a partial write");
            }
            return Err(FileSinkError::new(action, &self.path, error));
        }
        self.size += length;
        Ok(())
    }
}

impl FileSink {
    /// Drops the marks of containers with no batch for `high_water_retention`.
    fn forget_gone_containers(&mut self, now: Instant) {
        let forgotten = self.retention.sweep(now, &mut self.high_water);
        if forgotten > 0 {
            debug!(
                containers = forgotten,
                kept = self.high_water.len(),
                "forgot the high-water marks of containers gone for high_water_retention"
            );
        }
    }

    /// Containers whose marks are in memory.
    #[cfg(test)]
    pub(crate) fn containers_with_marks(&self) -> usize {
        self.high_water.len()
    }
}

impl Sink for FileSink {
    async fn deliver(&mut self, batches: &[EventBatch]) -> Result<(), SinkError> {
        self.buffer.clear();
        self.undo.clear();
        let now = Instant::now();
        self.forget_gone_containers(now);
        let mut skipped = 0usize;
        for batch in batches {
            let container = batch.container();
            self.retention.seen(&container.id, now);
            let previous = self.high_water.get(&container.id).copied();
            self.undo.push((container.id.clone(), previous));
            let mut marks = previous.unwrap_or_default();
            let replay = LogStream::ALL.map(|stream| batch.is_replay(stream));
            for line in batch.lines() {
                let index = line.stream.index();
                let mark = &mut marks[index];
                // Only a replay can hold lines already written; a live line older than the mark
                // was written after a clock step and is new.
                if replay[index] && mark.is_some_and(|mark| line.position <= mark) {
                    skipped += 1;
                    continue;
                }
                *mark = Some(line.position);
                self.encoder.json_line(&mut self.buffer, container, &line);
            }
            match self.high_water.get_mut(&container.id) {
                Some(slot) => *slot = marks,
                None => {
                    self.high_water.insert(container.id.clone(), marks);
                }
            }
        }
        if !self.buffer.is_empty()
            && let Err(error) = self.write_buffer()
        {
            for (id, marks) in self.undo.drain(..).rev() {
                match marks {
                    Some(marks) => self.high_water.insert(id, marks),
                    None => self.high_water.remove(&id),
                };
            }
            return Err(error.into());
        }
        if skipped > 0 {
            // Counted once the delivery is done, so a retried delivery is not counted twice.
            debug!(
                lines = skipped,
                "skipped replayed lines already in the file"
            );
            self.skipped_lines.increment(skipped as u64);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if let (Some(file), true) = (&self.file, self.fsync) {
            file.sync_data()
                .map_err(|error| FileSinkError::new("sync", &self.path, error))?;
        }
        Ok(())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.join_compressor();
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Syncs the directory that holds `path`, so renames and new files in it are durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Gzips `from` into `to` through a temporary file, then removes `from` (and syncs the
/// directory when `fsync`).
fn compress_file(from: &Path, to: &Path, fsync: bool) -> io::Result<()> {
    let mut temporary = to.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut input = File::open(from)?;
    let output = File::create(&temporary)?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
    io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    fs::rename(&temporary, to)?;
    fs::remove_file(from)?;
    if fsync {
        sync_parent_dir(to)?;
    }
    Ok(())
}

/// What one file says about one stream of one container.
#[derive(Debug, Clone, Copy)]
struct FileStreamStat {
    /// The timestamp of the stream's last record in the file (the largest, unless the clock
    /// stepped back).
    last_timestamp: i64,
    /// How many records of the stream carry `last_timestamp`.
    trailing: u32,
    /// Whether every record of the stream in the file carries `last_timestamp`: the run of
    /// equal timestamps may then continue in the next older file.
    uniform: bool,
}

/// The mark being recovered for one stream, merged from the newest file backwards.
#[derive(Debug, Clone, Copy)]
struct RecoveredMark {
    timestamp_nanos: i64,
    /// Records with `timestamp_nanos` seen so far.
    count: u32,
    /// Whether older files may hold more records with `timestamp_nanos`.
    open: bool,
}

fn scan_records(reader: impl Read) -> io::Result<HashMap<String, [Option<FileStreamStat>; 3]>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut stats: HashMap<String, [Option<FileStreamStat>; 3]> = HashMap::new();
    let mut line = Vec::with_capacity(1024);
    let mut unreadable = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let Some(key) = parse_record_key(&line) else {
            unreadable += 1;
            continue;
        };
        let streams = match stats.get_mut(key.container_id) {
            Some(streams) => streams,
            None => stats.entry(key.container_id.to_owned()).or_default(),
        };
        let stat = &mut streams[key.stream.index()];
        match stat {
            None => {
                *stat = Some(FileStreamStat {
                    last_timestamp: key.timestamp_nanos,
                    trailing: 1,
                    uniform: true,
                });
            }
            Some(stat) if key.timestamp_nanos == stat.last_timestamp => stat.trailing += 1,
            // The last record wins, as the mark is the last line written.
            Some(stat) => {
                stat.uniform = false;
                stat.last_timestamp = key.timestamp_nanos;
                stat.trailing = 1;
            }
        }
    }
    if unreadable > 0 {
        warn!(
            lines = unreadable,
            "lines of the log file are not records of ours"
        );
    }
    Ok(stats)
}

/// Merges the stats of a file older than every file merged so far.
fn merge_older_file(
    marks: &mut HashMap<String, [Option<RecoveredMark>; 3]>,
    stats: HashMap<String, [Option<FileStreamStat>; 3]>,
) {
    for (id, streams) in stats {
        let known = marks.entry(id).or_default();
        for stream in LogStream::ALL {
            let Some(stat) = streams[stream.index()] else {
                continue;
            };
            let mark = &mut known[stream.index()];
            match mark {
                None => {
                    *mark = Some(RecoveredMark {
                        timestamp_nanos: stat.last_timestamp,
                        count: stat.trailing,
                        open: stat.uniform,
                    });
                }
                Some(mark) if mark.open => {
                    if stat.last_timestamp == mark.timestamp_nanos {
                        mark.count += stat.trailing;
                        mark.open = stat.uniform;
                    } else {
                        mark.open = false;
                    }
                }
                Some(_) => {}
            }
        }
    }
}
