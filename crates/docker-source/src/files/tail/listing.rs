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
    pub(super) fn of(metadata: &std::fs::Metadata) -> FileId {
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// Where a container's log files are: the live file's directory and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFiles {
    dir: PathBuf,
    base: String,
}

/// One file found by [`LogFiles::list`].
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) path: PathBuf,
    pub(super) id: FileId,
    pub(super) size: u64,
    pub(super) compressed: bool,
    /// The last write (nanoseconds): generations are written one after the other, so this
    /// orders them even when a listing mixes two moments of a rotation.
    pub(super) modified: i128,
}

impl LogFiles {
    /// The files of the live file `live` (rotated ones are beside it).
    pub(crate) fn new(live: &Path) -> LogFiles {
        LogFiles {
            dir: live.parent().unwrap_or(Path::new("/")).to_path_buf(),
            base: live
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// The directory that holds the files (the one to watch).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The live file.
    pub(crate) fn live(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    /// The rotation index of a file name: 0 for the live file, N for `.N` and `.N.gz`.
    fn index_of(&self, name: &str) -> Option<(u32, bool)> {
        let rest = name.strip_prefix(self.base.as_str())?;
        if rest.is_empty() {
            return Some((0, false));
        }
        let rest = rest.strip_prefix('.')?;
        let (number, compressed) = match rest.strip_suffix(".gz") {
            Some(number) => (number, true),
            None => (rest, false),
        };
        let index: u32 = number.parse().ok().filter(|&n| n > 0)?;
        Some((index, compressed))
    }

    /// Every file, oldest first (the live one last). Where both `.N` and `.N.gz` exist (Docker
    /// is compressing), the complete uncompressed one is listed.
    ///
    /// A directory read while Docker renames may miss a file or see one twice (POSIX leaves it
    /// unspecified): a listing with a hole in its indices or an inode under two names is read
    /// again, a few times.
    ///
    /// Each file is looked at (its inode) a little after its name was read, so a listing taken
    /// while Docker rotates can mix two moments: it is trusted only when a second listing agrees.
    pub(super) fn list(&self) -> io::Result<Vec<Listed>> {
        let mut listed = self.list_once()?;
        for _ in 0..LIST_RETRIES {
            let again = self.list_once()?;
            let agree = again.len() == listed.len()
                && again
                    .iter()
                    .zip(&listed)
                    .all(|((i, a), (j, b))| i == j && a.id == b.id);
            listed = again;
            if agree && is_consistent(&listed) {
                break;
            }
            std::thread::yield_now();
        }
        Ok(listed.into_iter().map(|(_, listed)| listed).collect())
    }

    fn list_once(&self) -> io::Result<Vec<(u32, Listed)>> {
        let mut found: Vec<(u32, Listed)> = Vec::new();
        for dir_entry in std::fs::read_dir(&self.dir)? {
            let dir_entry = dir_entry?;
            let name = dir_entry.file_name();
            let Some((index, compressed)) = self.index_of(&name.to_string_lossy()) else {
                continue;
            };
            // A file that vanished between the listing and here is simply not listed.
            let Ok(metadata) = dir_entry.metadata() else {
                continue;
            };
            let listed = Listed {
                path: dir_entry.path(),
                id: FileId::of(&metadata),
                size: metadata.len(),
                compressed,
                modified: i128::from(metadata.mtime()) * 1_000_000_000
                    + i128::from(metadata.mtime_nsec()),
            };
            match found.iter_mut().find(|(i, _)| *i == index) {
                Some((_, existing)) if existing.compressed && !compressed => *existing = listed,
                Some(_) => {}
                None => found.push((index, listed)),
            }
        }
        found.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
        Ok(found)
    }
}

/// Listings read again when inconsistent, at most.
const LIST_RETRIES: usize = 8;

/// Whether a listing (oldest first) has every index from its oldest to the live file and no
/// inode twice.
fn is_consistent(listed: &[(u32, Listed)]) -> bool {
    let contiguous = listed
        .iter()
        .rev()
        .enumerate()
        .all(|(expected, (index, _))| *index as usize == expected);
    let mut ids: Vec<FileId> = listed.iter().map(|(_, l)| l.id).collect();
    ids.sort_by_key(|id| (id.dev, id.ino));
    ids.dedup();
    contiguous && ids.len() == listed.len()
}
