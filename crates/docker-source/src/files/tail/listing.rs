//! A container's log files as Docker names them: the live file and its rotated generations
//! (`.1`, `.2`, … and their `.gz` copies), listed oldest first.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub(crate) fn of(metadata: &std::fs::Metadata) -> FileId {
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// Where a container's log files are: the live file's directory and name, and how many files
/// Docker keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFiles {
    dir: PathBuf,
    base: String,
    /// The highest rotation index Docker uses (`max-file - 1`, at least 1: Docker 20.10
    /// renames the live file to `.1` even with `max-file=1`).
    last_index: u32,
}

/// One file found by [`LogFiles::list`].
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) path: PathBuf,
    pub(super) id: FileId,
    pub(super) size: u64,
    pub(super) compressed: bool,
    /// Its rotation index: 0 for the live file, N for `.N` (and `.N.gz`).
    pub(super) index: u32,
}

/// What one look at the directory found.
#[derive(Debug, Clone, Default)]
pub(super) struct Listing {
    /// Every file, oldest first (the live one last).
    pub(super) files: Vec<Listed>,
    /// Whether the files are those of one moment: every index from the oldest to the live
    /// file, and no inode under two names (see [`LogFiles::list`]).
    pub(super) consistent: bool,
}

impl LogFiles {
    /// The files of the live file `live` (rotated ones are beside it), Docker keeping
    /// `max_files` of them (`max-file`).
    pub(crate) fn new(live: &Path, max_files: u32) -> LogFiles {
        LogFiles {
            dir: live.parent().unwrap_or(Path::new("/")).to_path_buf(),
            base: live
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            last_index: max_files.saturating_sub(1).max(1),
        }
    }

    /// The directory that holds the files (the one to watch).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The live file's name (its creations are counted).
    pub(crate) fn live_name(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::new(&self.base)
    }

    /// The live file.
    pub(crate) fn live(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    fn path_of(&self, index: u32, compressed: bool) -> PathBuf {
        let mut name = self.base.clone();
        if index > 0 {
            name.push_str(&format!(".{index}"));
        }
        if compressed {
            name.push_str(".gz");
        }
        self.dir.join(name)
    }

    /// Every file, oldest first (the live one last). Where both `.N` and `.N.gz` exist (Docker
    /// is compressing), the complete uncompressed one is listed. A directory that is gone (the
    /// container was removed) lists nothing.
    ///
    /// Docker's names are known, so each is looked up (no directory read, which may miss a
    /// file renamed while it is read), from the live file up. A rotation renames the other
    /// way, from the oldest down, each file to the next index: a file looked at that moves on
    /// shows up again at the next index (an inode twice), and one that moved on before it was
    /// looked at leaves a hole. So a listing with neither is
    /// [`consistent`](Listing::consistent): it is what the directory held at one moment.
    pub(super) fn list(&self) -> io::Result<Listing> {
        let mut found: Vec<Listed> = Vec::new();
        for index in 0..=self.last_index {
            let listed = match self.look_up(index, false)? {
                Some(listed) => Some(listed),
                None => self.look_up(index, true)?,
            };
            found.extend(listed);
        }
        found.reverse();
        let consistent = is_consistent(&found);
        Ok(Listing {
            files: found,
            consistent,
        })
    }

    fn look_up(&self, index: u32, compressed: bool) -> io::Result<Option<Listed>> {
        let path = self.path_of(index, compressed);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        Ok(Some(Listed {
            path,
            id: FileId::of(&metadata),
            size: metadata.len(),
            compressed,
            index,
        }))
    }
}

/// Whether a listing (oldest first) has every index from its oldest to the live file and no
/// inode twice.
fn is_consistent(listed: &[Listed]) -> bool {
    let contiguous = listed
        .iter()
        .rev()
        .enumerate()
        .all(|(expected, l)| l.index as usize == expected);
    let mut ids: Vec<FileId> = listed.iter().map(|l| l.id).collect();
    ids.sort_by_key(|id| (id.dev, id.ino));
    ids.dedup();
    contiguous && ids.len() == listed.len()
}
