//! Acknowledged cursors, persisted to `<data_dir>/checkpoints.json`.
//!
//! The file maps each container's full id to the position of the last acknowledged line of each
//! of its streams. It is replaced atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new version. A file that cannot be read
//! or parsed is set aside as `checkpoints.json.corrupt` with a warning, and the source starts
//! without cursors: losing checkpoints means re-reading (or skipping, with `read_from = "end"`),
//! never refusing to start.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use capture_core::{Acknowledgement, ContainerId, LogStream, Position};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{Error, Result, files::cursor::FileHint};

/// The checkpoint file's name under the data directory.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoints.json";

/// The file format's version, bumped on incompatible changes.
const FORMAT_VERSION: u32 = 1;

/// The acknowledged position of each stream of a container (indexed by [`LogStream::index`]).
pub(crate) type StreamPositions = [Option<Position>; 3];

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    containers: BTreeMap<String, BTreeMap<LogStream, Position>>,
    /// File mode's resume hints (`files/cursor.rs`), by container; absent when none is read
    /// from files. Older agents ignore it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, FileHint>,
}

/// The cursors, in memory, with a dirty flag for the periodic save.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    path: PathBuf,
    cursors: HashMap<ContainerId, StreamPositions>,
    /// File mode's resume hints, each covered by the acknowledged cursors.
    hints: HashMap<ContainerId, FileHint>,
    dirty: bool,
}

impl Checkpoints {
    /// Loads `<data_dir>/checkpoints.json`; a missing file means no cursors, a corrupt one is
    /// set aside with a warning.
    pub(crate) fn load(data_dir: &Path) -> Checkpoints {
        let path = data_dir.join(CHECKPOINT_FILE);
        let mut checkpoints = Checkpoints {
            path,
            cursors: HashMap::new(),
            hints: HashMap::new(),
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
        let file: CheckpointFile = match serde_json::from_slice::<CheckpointFile>(&bytes) {
            Ok(file) if file.version == FORMAT_VERSION => file,
            Ok(file) => {
                warn!(path = %checkpoints.path.display(), version = file.version, "checkpoint file has an unknown version; starting without cursors");
                checkpoints.set_aside();
                return checkpoints;
            }
            Err(e) => {
                warn!(path = %checkpoints.path.display(), error = %e, "checkpoint file is corrupt; setting it aside and starting without cursors");
                checkpoints.set_aside();
                return checkpoints;
            }
        };
        for (id, streams) in file.containers {
            let Ok(id) = ContainerId::new(&id) else {
                warn!(container_id = %id, "ignoring a checkpoint entry that is not a container id");
                continue;
            };
            let mut positions: StreamPositions = [None; 3];
            for (stream, position) in streams {
                positions[stream.index()] = Some(position);
            }
            checkpoints.cursors.insert(id, positions);
        }
        for (id, hint) in file.files {
            if let Ok(id) = ContainerId::new(&id) {
                checkpoints.hints.insert(id, hint);
            }
        }
        checkpoints
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

    /// The acknowledged positions of a container, if it has any.
    pub(crate) fn get(&self, id: &ContainerId) -> Option<StreamPositions> {
        self.cursors.get(id).copied()
    }

    /// The containers that have cursors.
    pub(crate) fn containers(&self) -> impl Iterator<Item = &ContainerId> {
        self.cursors.keys()
    }

    /// Moves a cursor forward (never back: acknowledgements of one stream may arrive out of
    /// order when sinks complete out of order).
    pub(crate) fn acknowledge(&mut self, ack: &Acknowledgement) {
        let positions = self
            .cursors
            .entry(ack.container_id.clone())
            .or_insert([None; 3]);
        let slot = &mut positions[ack.stream.index()];
        if slot.is_none_or(|current| ack.position > current) {
            *slot = Some(ack.position);
            self.dirty = true;
        }
    }

    /// Forgets a container (it was destroyed and its last batch acknowledged).
    pub(crate) fn remove(&mut self, id: &ContainerId) {
        let hint = self.hints.remove(id);
        if self.cursors.remove(id).is_some() || hint.is_some() {
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

    /// Whether there are changes not yet saved.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The file's content and path, clearing the dirty flag; [`write_atomically`] writes it
    /// (off the async threads). On failure the caller calls [`Checkpoints::mark_dirty`].
    pub(crate) fn snapshot(&mut self) -> (PathBuf, Vec<u8>) {
        self.dirty = false;
        let containers = self
            .cursors
            .iter()
            .map(|(id, positions)| {
                let streams = LogStream::ALL
                    .into_iter()
                    .filter_map(|stream| positions[stream.index()].map(|p| (stream, p)))
                    .collect();
                (id.as_str().to_owned(), streams)
            })
            .collect();
        let files = self
            .hints
            .iter()
            .map(|(id, hint)| (id.as_str().to_owned(), *hint))
            .collect();
        let file = CheckpointFile {
            version: FORMAT_VERSION,
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
mod tests {
    use super::*;

    fn id(n: u8) -> ContainerId {
        ContainerId::new(format!("{n:02x}").repeat(32)).unwrap()
    }

    #[test]
    fn cursors_round_trip_through_the_file_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoints = Checkpoints::load(dir.path());
        assert!(checkpoints.get(&id(1)).is_none());
        let ack = |stream, nanos, ordinal| Acknowledgement {
            container_id: id(1),
            stream,
            position: Position::new(nanos, ordinal),
        };
        checkpoints.acknowledge(&ack(LogStream::Stdout, 10, 1));
        checkpoints.acknowledge(&ack(LogStream::Stdout, 10, 0));
        checkpoints.acknowledge(&ack(LogStream::Stderr, 7, 0));
        assert!(checkpoints.is_dirty());
        let (path, bytes) = checkpoints.snapshot();
        write_atomically(&path, &bytes).unwrap();
        assert!(!checkpoints.is_dirty());

        let loaded = Checkpoints::load(dir.path());
        assert_eq!(
            loaded.get(&id(1)),
            Some([Some(Position::new(10, 1)), Some(Position::new(7, 0)), None])
        );
    }

    #[test]
    fn file_hints_round_trip_and_leave_the_format_unchanged_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoints = Checkpoints::load(dir.path());
        checkpoints.acknowledge(&Acknowledgement {
            container_id: id(3),
            stream: LogStream::Stdout,
            position: Position::new(10, 0),
        });
        let (path, bytes) = checkpoints.snapshot();
        assert!(!String::from_utf8_lossy(&bytes).contains("\"files\""));
        let hint = FileHint {
            file: crate::files::tail::FileId { dev: 7, ino: 8 },
            offset: 120,
            entry_start: 60,
            entry_timestamp: 10,
            last: [Some(Position::new(10, 0)), None, None],
        };
        checkpoints.set_file_hint(&id(3), hint);
        assert!(checkpoints.is_dirty());
        let (_, bytes) = checkpoints.snapshot();
        write_atomically(&path, &bytes).unwrap();
        let mut loaded = Checkpoints::load(dir.path());
        assert_eq!(loaded.file_hint(&id(3)), Some(hint));
        loaded.remove(&id(3));
        assert_eq!(loaded.file_hint(&id(3)), None);
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_the_source_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHECKPOINT_FILE), b"{not json").unwrap();
        let checkpoints = Checkpoints::load(dir.path());
        assert_eq!(checkpoints.containers().count(), 0);
        assert!(dir.path().join("checkpoints.json.corrupt").exists());
        assert!(!dir.path().join(CHECKPOINT_FILE).exists());
    }

    #[test]
    fn removed_containers_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut checkpoints = Checkpoints::load(dir.path());
        checkpoints.acknowledge(&Acknowledgement {
            container_id: id(2),
            stream: LogStream::Tty,
            position: Position::new(1, 0),
        });
        checkpoints.remove(&id(2));
        assert!(checkpoints.get(&id(2)).is_none());
    }
}
