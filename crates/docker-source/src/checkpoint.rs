//! Acknowledged cursors and what the source knew, persisted to `<data_dir>/checkpoints.json`.
//!
//! The file (format version 2) holds, for each container the source monitors, the position of
//! the last acknowledged line of each of its streams, the time through which every line of the
//! container is acknowledged whatever its stream (`read_through_nanos`), and the daemon's
//! `State.FinishedAt` of the stop after which its task read everything and completed
//! (`drained_finished_at_nanos`). It also holds `daemon_seen_at_nanos`: the last time the agent
//! saw the daemon (the time of a checkpoint write while the events stream was connected), the
//! boundary between what the agent saw and what happened while it was away (see
//! `startup.rs`). A container gets its entry as soon as it is monitored, so a container without
//! one was never monitored.
//!
//! Version 1 files (cursors only) are still read: the file's modification time, its last write,
//! stands for the boundary, so an upgrade loses no cursor. The file is replaced atomically
//! (temporary file, fsync, rename, fsync of the directory), so a crash leaves either the old or
//! the new version. A file that cannot be read or parsed is set aside as
//! `checkpoints.json.corrupt` with a warning, and the source starts as on a first start:
//! losing checkpoints means re-reading (or skipping, with `read_from = "end"`), never refusing to
//! start.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use capture_core::{Acknowledgement, ContainerId, LogStream, PerStream, Position};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{Error, Result, files::cursor::FileHint};

/// The checkpoint file's name under the data directory.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoints.json";

/// The file format's version, bumped on incompatible changes.
const FORMAT_VERSION: u32 = 2;
/// The first version: `containers` maps ids to cursors only.
const FORMAT_VERSION_1: u32 = 1;

/// While the daemon is seen, the file is rewritten at least this often, so the boundary it
/// records trails the agent's life by at most this much (a `kill -9` included).
pub(crate) const BOUNDARY_REFRESH: Duration = Duration::from_secs(5);

/// The acknowledged position of each stream of a container.
pub(crate) type StreamPositions = PerStream<Option<Position>>;

/// What the file holds about one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ContainerCheckpoint {
    /// The last acknowledged line of each stream (or the floor the source started it from).
    pub(crate) streams: StreamPositions,
    /// Every line of the container whose timestamp is at or before this (nanoseconds) is
    /// acknowledged, whatever its stream: a stream without a cursor need not be asked for
    /// anything older.
    pub(crate) read_through_nanos: Option<i64>,
    /// `State.FinishedAt` (nanoseconds) of the stop after which the container's task read
    /// everything and every line it read was acknowledged: while the container is still stopped
    /// with that `FinishedAt`, there is nothing more to read.
    pub(crate) drained_finished_at_nanos: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct VersionOnly {
    version: u32,
}

#[derive(Debug, Deserialize)]
struct FileV1 {
    containers: BTreeMap<String, BTreeMap<LogStream, Position>>,
    /// File mode's resume hints (`files/cursor.rs`), by container; absent when none is read
    /// from files.
    #[serde(default)]
    files: BTreeMap<String, FileHint>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileV2 {
    version: u32,
    /// The last time (nanoseconds) the agent saw the daemon; `None` if it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daemon_seen_at_nanos: Option<i64>,
    containers: BTreeMap<String, EntryV2>,
    /// File mode's resume hints (`files/cursor.rs`), by container, as in version 1; absent when
    /// none is read from files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, FileHint>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct EntryV2 {
    #[serde(default)]
    streams: BTreeMap<LogStream, Position>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_through_nanos: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drained_finished_at_nanos: Option<i64>,
}

/// The checkpoint state, in memory, with a dirty flag for the periodic save.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    path: PathBuf,
    entries: HashMap<ContainerId, ContainerCheckpoint>,
    /// File mode's resume hints, each covered by the acknowledged cursors.
    hints: HashMap<ContainerId, FileHint>,
    /// Whether a usable checkpoint file was found: without one, the agent starts as on its very
    /// first start (`read_from` applies).
    found: bool,
    /// The boundary loaded from the file: the last time the previous run saw the daemon.
    previous_boundary_nanos: Option<i64>,
    /// The boundary to write: advanced while the daemon is seen.
    daemon_seen_at_nanos: Option<i64>,
    /// When the file was last written (or loaded), for [`BOUNDARY_REFRESH`].
    last_written: Instant,
    dirty: bool,
}

impl Checkpoints {
    /// Loads `<data_dir>/checkpoints.json`; a missing file means no state, a corrupt one is
    /// set aside with a warning.
    pub(crate) fn load(data_dir: &Path) -> Checkpoints {
        let path = data_dir.join(CHECKPOINT_FILE);
        let mut checkpoints = Checkpoints {
            path,
            entries: HashMap::new(),
            hints: HashMap::new(),
            found: false,
            previous_boundary_nanos: None,
            daemon_seen_at_nanos: None,
            last_written: Instant::now(),
            dirty: false,
        };
        let bytes = match fs::read(&checkpoints.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return checkpoints,
            Err(e) => {
                warn!(path = %checkpoints.path.display(), error = %e, "cannot read the checkpoint file; starting without cursors");
                return checkpoints;
            }
        };
        match checkpoints.parse(&bytes) {
            Ok(()) => checkpoints.found = true,
            Err(reason) => {
                warn!(path = %checkpoints.path.display(), error = %reason, "checkpoint file is corrupt; setting it aside and starting without cursors");
                checkpoints.entries.clear();
                checkpoints.hints.clear();
                checkpoints.set_aside();
            }
        }
        checkpoints
    }

    /// Fills the state from the file's bytes (either version).
    fn parse(&mut self, bytes: &[u8]) -> Result<(), String> {
        let version = serde_json::from_slice::<VersionOnly>(bytes)
            .map_err(|e| e.to_string())?
            .version;
        match version {
            FORMAT_VERSION => {
                let file: FileV2 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                self.previous_boundary_nanos = file.daemon_seen_at_nanos;
                for (id, entry) in file.containers {
                    self.insert_entry(&id, entry);
                }
                self.insert_hints(file.files);
            }
            FORMAT_VERSION_1 => {
                let file: FileV1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                // Version 1 rewrote the file on every acknowledgement batch and at shutdown: its
                // last write is the best boundary there is.
                self.previous_boundary_nanos = modified_nanos(&self.path);
                for (id, streams) in file.containers {
                    let entry = EntryV2 {
                        streams,
                        ..EntryV2::default()
                    };
                    self.insert_entry(&id, entry);
                }
                self.insert_hints(file.files);
                info!(path = %self.path.display(), containers = self.entries.len(), "upgrading the checkpoint file from version 1");
                self.dirty = true;
            }
            other => return Err(format!("unknown version {other}")),
        }
        self.daemon_seen_at_nanos = self.previous_boundary_nanos;
        Ok(())
    }

    fn insert_entry(&mut self, id: &str, entry: EntryV2) {
        let Ok(id) = ContainerId::new(id) else {
            warn!(container_id = %id, "ignoring a checkpoint entry that is not a container id");
            return;
        };
        let mut streams: StreamPositions = StreamPositions::default();
        for (stream, position) in entry.streams {
            streams[stream] = Some(position);
        }
        self.entries.insert(
            id,
            ContainerCheckpoint {
                streams,
                read_through_nanos: entry.read_through_nanos,
                drained_finished_at_nanos: entry.drained_finished_at_nanos,
            },
        );
    }

    fn insert_hints(&mut self, hints: BTreeMap<String, FileHint>) {
        for (id, hint) in hints {
            if let Ok(id) = ContainerId::new(&id) {
                self.hints.insert(id, hint);
            }
        }
    }

    fn set_aside(&self) {
        let aside = self.path.with_extension("json.corrupt");
        if let Err(e) = fs::rename(&self.path, &aside) {
            warn!(path = %self.path.display(), error = %e, "cannot set the corrupt checkpoint file aside");
        }
    }

    /// The checkpoint file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the agent starts with no state at all (no usable checkpoint file).
    pub(crate) fn is_first_start(&self) -> bool {
        !self.found
    }

    /// The last time the previous run saw the daemon (nanoseconds), if it ever did.
    pub(crate) fn previous_boundary_nanos(&self) -> Option<i64> {
        self.previous_boundary_nanos
    }

    /// The acknowledged positions of a container, if it has an entry.
    pub(crate) fn get(&self, id: &ContainerId) -> Option<StreamPositions> {
        self.entries.get(id).map(|entry| entry.streams)
    }

    /// A container's whole entry.
    pub(crate) fn entry(&self, id: &ContainerId) -> Option<ContainerCheckpoint> {
        self.entries.get(id).copied()
    }

    /// The containers that have an entry.
    pub(crate) fn containers(&self) -> impl Iterator<Item = &ContainerId> {
        self.entries.keys()
    }

    /// Records that the source monitors a container from `start` (its floor or its first line),
    /// unless it already has an entry: from now on, "no entry" means "never monitored".
    pub(crate) fn monitor(&mut self, id: &ContainerId, start: ContainerCheckpoint) {
        if !self.entries.contains_key(id) {
            self.entries.insert(id.clone(), start);
            self.dirty = true;
        }
    }

    /// Moves a cursor forward (never back: acknowledgements of one stream may arrive out of
    /// order when sinks complete out of order).
    pub(crate) fn acknowledge(&mut self, ack: &Acknowledgement) {
        let entry = self.entries.entry(ack.container_id.clone()).or_default();
        let slot = &mut entry.streams[ack.stream];
        if slot.is_none_or(|current| ack.position > current) {
            *slot = Some(ack.position);
            self.dirty = true;
        }
    }

    /// Moves a container's read-through time forward.
    pub(crate) fn advance_read_through(&mut self, id: &ContainerId, nanos: i64) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry
                .read_through_nanos
                .is_none_or(|current| nanos > current)
        {
            entry.read_through_nanos = Some(nanos);
            self.dirty = true;
        }
    }

    /// Records (`Some`) or clears (`None`) the stop after which a container was read to its end.
    pub(crate) fn set_drained(&mut self, id: &ContainerId, finished_at_nanos: Option<i64>) {
        if let Some(entry) = self.entries.get_mut(id)
            && entry.drained_finished_at_nanos != finished_at_nanos
        {
            entry.drained_finished_at_nanos = finished_at_nanos;
            self.dirty = true;
        }
    }

    /// Forgets a container (it was destroyed and its last batch acknowledged).
    pub(crate) fn remove(&mut self, id: &ContainerId) {
        let hint = self.hints.remove(id);
        if self.entries.remove(id).is_some() || hint.is_some() {
            self.dirty = true;
        }
    }

    /// The container's file-mode resume hint, if it has one.
    pub(crate) fn file_hint(&self, id: &ContainerId) -> Option<FileHint> {
        self.hints.get(id).copied()
    }

    /// Records a file-mode resume hint that the acknowledged cursors cover.
    pub(crate) fn set_file_hint(&mut self, id: &ContainerId, hint: FileHint) {
        if self.hints.insert(id.clone(), hint) != Some(hint) {
            self.dirty = true;
        }
    }

    /// The daemon is seen at `now_nanos`: the boundary moves there, and the file is due for a
    /// rewrite once its last write is [`BOUNDARY_REFRESH`] old, even if no cursor moved.
    pub(crate) fn see_daemon(&mut self, now_nanos: i64) {
        if self
            .daemon_seen_at_nanos
            .is_none_or(|seen| now_nanos > seen)
        {
            self.daemon_seen_at_nanos = Some(now_nanos);
            if self.last_written.elapsed() >= BOUNDARY_REFRESH {
                self.dirty = true;
            }
        }
    }

    /// Whether there are changes not yet saved.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The file's content and path, clearing the dirty flag; [`write_atomically`] writes it
    /// (off the async threads). On failure the caller calls [`Checkpoints::mark_dirty`].
    pub(crate) fn snapshot(&mut self) -> (PathBuf, Vec<u8>) {
        self.dirty = false;
        self.last_written = Instant::now();
        let containers = self
            .entries
            .iter()
            .map(|(id, entry)| {
                let streams = LogStream::ALL
                    .into_iter()
                    .filter_map(|stream| entry.streams[stream].map(|p| (stream, p)))
                    .collect();
                let entry = EntryV2 {
                    streams,
                    read_through_nanos: entry.read_through_nanos,
                    drained_finished_at_nanos: entry.drained_finished_at_nanos,
                };
                (id.as_str().to_owned(), entry)
            })
            .collect();
        let files = self
            .hints
            .iter()
            .map(|(id, hint)| (id.as_str().to_owned(), *hint))
            .collect();
        let file = FileV2 {
            version: FORMAT_VERSION,
            daemon_seen_at_nanos: self.daemon_seen_at_nanos,
            containers,
            files,
        };
        // Serialising maps of strings and integers cannot fail.
        let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        (self.path.clone(), bytes)
    }

    /// Marks the cursors as needing a save again (after a failed write).
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

/// A file's modification time in nanoseconds since the epoch.
fn modified_nanos(path: &Path) -> Option<i64> {
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let since_epoch = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_nanos()).ok()
}

/// Replaces `path` with `bytes`: temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let error = |source| Error::Checkpoint {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(error)?;
    let temporary = path.with_extension("json.tmp");
    let mut file = fs::File::create(&temporary).map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
    fs::rename(&temporary, path).map_err(error)?;
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(error)?;
    Ok(())
}

#[cfg(test)]
mod tests;
