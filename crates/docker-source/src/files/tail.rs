//! Follows one container's log files across rotation, truncation and removal.
//!
//! Docker writes to one live file (`<id>-json.log`, `local-logs/container.log`). When it
//! reaches `max-size`, Docker closes it, renames it to `.1` (older ones to `.2`, …, the oldest
//! deleted at `max-file`), opens a new live file, and for `compress=true` (the `local` driver's
//! default) replaces `.1` by `.1.gz` — a new file with a new inode. With `max-file=1` there is
//! no rename: the live file is truncated in place.
//!
//! A [`Tail`] reads one *generation* (one file's content, identified by device and inode) at a
//! time, from the oldest it needs to the live one. It keeps each generation's descriptor until it
//! has read it to its end, so a generation Docker renames or deletes meanwhile (rotation, or the
//! container's removal) is still read whole. New generations are found by [`Tail::check`]
//! (the live path names a new inode) and opened at once, up to [`MAX_OPEN_AHEAD`]; beyond that
//! they are only remembered, and one deleted before it is reached is counted as lost. A
//! generation that was renamed is read once more to its end before the next one starts
//! (Docker closes a file before renaming it, so that read sees everything).

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

/// Generations opened ahead of the one being read, at most (their descriptors keep their
/// content on disk until read, even after Docker deleted them).
pub(crate) const MAX_OPEN_AHEAD: usize = 32;
/// The bytes of a generation's start kept to recognise it (truncation, its compressed copy, an
/// inode Docker reused for a new file): enough to hold a whole first line and its timestamp.
const HEAD_BYTES: usize = 1024;
/// Generations read to their end that are remembered (by inode and first bytes), so a file
/// still listed after it was read is not read again.
const FINISHED_KEPT: usize = 64;

/// A file's identity: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    fn of(metadata: &std::fs::Metadata) -> FileId {
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
struct Listed {
    path: PathBuf,
    id: FileId,
    size: u64,
    compressed: bool,
    /// The last write (nanoseconds): generations are written one after the other, so this
    /// orders them even when a listing mixes two moments of a rotation.
    modified: i128,
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
    fn list(&self) -> io::Result<Vec<Listed>> {
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

/// A generation's content.
enum Reader {
    Plain(File),
    Gzip(Box<GzDecoder<File>>),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reader::Plain(_) => "Plain",
            Reader::Gzip(_) => "Gzip",
        })
    }
}

/// One file's content, being read.
#[derive(Debug)]
struct Generation {
    id: FileId,
    path: PathBuf,
    reader: Reader,
    /// Bytes of content read so far (decompressed, for a compressed file).
    offset: u64,
    /// Docker no longer writes it (renamed, compressed or deleted): its end is final.
    sealed: bool,
    /// Its first bytes, to recognise it.
    head: Vec<u8>,
}

impl Generation {
    /// Opens `listed` and moves to `offset`; `None` if the path no longer names that file.
    fn open(listed: &Listed, offset: u64) -> io::Result<Option<Generation>> {
        let file = match File::open(&listed.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        if FileId::of(&file.metadata()?) != listed.id {
            return Ok(None);
        }
        let reader = if listed.compressed {
            Reader::Gzip(Box::new(GzDecoder::new(file)))
        } else {
            Reader::Plain(file)
        };
        let mut generation = Generation {
            id: listed.id,
            path: listed.path.clone(),
            reader,
            offset: 0,
            sealed: listed.compressed,
            head: Vec::new(),
        };
        generation.skip_to(offset)?;
        Ok(Some(generation))
    }

    /// Moves to `offset` (seeks a plain file; decompresses and discards for a compressed one),
    /// keeping the head.
    fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        match &mut self.reader {
            Reader::Plain(_) if offset == 0 => {}
            Reader::Plain(file) => {
                let mut head = vec![0; HEAD_BYTES];
                let read = file.read_at(&mut head, 0)?;
                head.truncate(read);
                self.head = head;
                file.seek(SeekFrom::Start(offset))?;
                self.offset = offset;
            }
            Reader::Gzip(_) => {
                let mut scratch = vec![0; 64 * 1024];
                while self.offset < offset {
                    let want = (offset - self.offset).min(scratch.len() as u64) as usize;
                    let read = self.read(&mut scratch[..want])?;
                    if read == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads into `out`; keeps the head while it is being read.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let read = match &mut self.reader {
            Reader::Plain(file) => file.read(out)?,
            Reader::Gzip(decoder) => decoder.read(out)?,
        };
        if self.head.len() < HEAD_BYTES && self.offset == self.head.len() as u64 {
            let take = read.min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&out[..take]);
        }
        self.offset += read as u64;
        Ok(read)
    }

    /// For the live file: whether Docker truncated it (it is shorter than what was read, or
    /// starts with other bytes).
    fn is_truncated(&self) -> io::Result<bool> {
        let Reader::Plain(file) = &self.reader else {
            return Ok(false);
        };
        if file.metadata()?.len() < self.offset {
            return Ok(true);
        }
        let mut head = vec![0; self.head.len()];
        let read = file.read_at(&mut head, 0)?;
        Ok(read < head.len() || head != self.head)
    }

    /// Its first bytes as they are now (read again from a plain file: the head kept while
    /// reading may be shorter).
    fn current_head(&self) -> Vec<u8> {
        match &self.reader {
            Reader::Plain(file) if self.head.len() < HEAD_BYTES => {
                let mut head = vec![0; HEAD_BYTES];
                let read = file.read_at(&mut head, 0).unwrap_or(0);
                head.truncate(read);
                head
            }
            _ => self.head.clone(),
        }
    }

    /// Starts over at the beginning (after a truncation).
    fn rewind(&mut self) -> io::Result<()> {
        if let Reader::Plain(file) = &mut self.reader {
            file.seek(SeekFrom::Start(0))?;
        }
        self.offset = 0;
        self.head.clear();
        Ok(())
    }
}

/// A generation found newer than the one being read.
#[derive(Debug)]
enum Ahead {
    /// Opened: its content is safe.
    Open(Generation),
    /// Only seen (too many open): lost if Docker deletes it before it is reached.
    Seen(Listed),
}

impl Ahead {
    fn id(&self) -> FileId {
        match self {
            Ahead::Open(generation) => generation.id,
            Ahead::Seen(listed) => listed.id,
        }
    }
}

/// Lines that Docker deleted or overwrote before they were read (counted, never silent).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Losses {
    /// Rotated generations deleted before they were read.
    pub(crate) rotated_files: u64,
    /// Their size when last seen (0 when unknown).
    pub(crate) rotated_bytes: u64,
    /// Truncations of the live file in place (`max-file=1`): what Docker wrote after the last
    /// read and before the truncation is gone, its size unknown.
    pub(crate) truncations: u64,
}

/// What [`Tail::read`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Appended this many bytes of the current generation.
    Data(usize),
    /// Moved to the next generation: bytes left over from the previous one are an entry it
    /// never finished (malformed).
    NextFile,
    /// The live file was truncated and is read again from its start (same rules as
    /// `NextFile` for left-over bytes).
    Truncated,
    /// At the end of the live file (or of the last generation, if no live file exists now).
    Idle,
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At the oldest file Docker kept.
    Oldest,
    /// At `offset` of the file `id`, if Docker still has it.
    At { id: FileId, offset: u64 },
}

/// One container's log files, followed (see the module documentation).
#[derive(Debug)]
pub(crate) struct Tail {
    files: LogFiles,
    current: Generation,
    ahead: VecDeque<Ahead>,
    losses: Losses,
    max_open_ahead: usize,
    /// Generations read to their end: their inode (which Docker may reuse once it deleted
    /// them) and first bytes.
    finished: VecDeque<(FileId, Vec<u8>)>,
    /// Whether Docker may truncate the live file in place (see [`Tail::without_truncation`]).
    may_truncate: bool,
}

impl Tail {
    /// Opens the files at `start`. `Ok(None)`: there is no log file (yet), or `start` names a
    /// file Docker no longer has.
    pub(crate) fn open(files: LogFiles, start: Start) -> io::Result<Option<Tail>> {
        Self::open_with(files, start, MAX_OPEN_AHEAD)
    }

    fn open_with(files: LogFiles, start: Start, max_open_ahead: usize) -> io::Result<Option<Tail>> {
        let listed = files.list()?;
        let mut candidates = listed.clone().into_iter();
        let current = match start {
            Start::Oldest => Self::first_generation(&mut candidates)?,
            Start::At { id, offset } => match listed.iter().position(|l| l.id == id) {
                Some(index) => {
                    // `nth` leaves the newer files in `candidates`.
                    candidates.nth(index);
                    Generation::open(&listed[index], offset)?
                }
                None => None,
            },
        };
        let Some(current) = current else {
            return Ok(None);
        };
        let mut tail = Tail {
            files,
            current,
            ahead: VecDeque::new(),
            losses: Losses::default(),
            max_open_ahead,
            finished: VecDeque::new(),
            may_truncate: true,
        };
        for listed in candidates {
            tail.push_ahead(listed)?;
        }
        Ok(Some(tail))
    }

    /// The oldest candidate that can still be opened (older ones vanished meanwhile: they
    /// were rotated away before anything was promised about them).
    fn first_generation(
        candidates: &mut impl Iterator<Item = Listed>,
    ) -> io::Result<Option<Generation>> {
        for listed in candidates.by_ref() {
            if let Some(generation) = Generation::open(&listed, 0)? {
                return Ok(Some(generation));
            }
        }
        Ok(None)
    }

    /// Docker never truncates these files in place (they rotate, or have no size limit): the
    /// start of the live file need not be compared before each read.
    pub(crate) fn without_truncation(mut self) -> Tail {
        self.may_truncate = false;
        self
    }

    /// The generation being read and the bytes of content read from it.
    pub(crate) fn position(&self) -> (FileId, u64) {
        (self.current.id, self.current.offset)
    }

    /// Whether the current generation is a plain (not compressed) file, whose offsets can be
    /// resumed from.
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self.current.reader, Reader::Plain(_))
    }

    /// Reads the bytes `[start, end)` of the current generation (a plain file), to check a
    /// resume hint.
    pub(crate) fn read_range(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let Reader::Plain(file) = &self.current.reader else {
            return Err(io::Error::other("not a plain file"));
        };
        let len = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        let mut bytes = vec![0; len];
        let read = file.read_at(&mut bytes, start)?;
        bytes.truncate(read);
        Ok(bytes)
    }

    /// Takes the losses counted since the last call.
    pub(crate) fn take_losses(&mut self) -> Losses {
        std::mem::take(&mut self.losses)
    }

    /// Appends up to `max` bytes of content to `buffer`, or moves on (see [`Progress`]).
    pub(crate) fn read(&mut self, buffer: &mut Vec<u8>, max: usize) -> io::Result<Progress> {
        // Checked before every read of the live file: reading at the old offset of a file
        // truncated and written again would yield the middle of other lines.
        if self.may_truncate && !self.current.sealed && self.current.is_truncated()? {
            self.current.rewind()?;
            self.losses.truncations += 1;
            warn!(file = %self.current.path.display(), "log file truncated in place (max-file=1): lines written since the last read are lost");
            return Ok(Progress::Truncated);
        }
        let read = self.read_current(buffer, max)?;
        if read > 0 {
            return Ok(Progress::Data(read));
        }
        if !self.current.sealed {
            if !self.live_changed()? {
                return Ok(Progress::Idle);
            }
            // Renamed away: what was written before the rename is still to be read.
            self.current.sealed = true;
            self.check()?;
            let read = self.read_current(buffer, max)?;
            if read > 0 {
                return Ok(Progress::Data(read));
            }
        }
        if self.ahead.is_empty() {
            self.check()?;
        }
        self.advance()
    }

    fn read_current(&mut self, buffer: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let start = buffer.len();
        buffer.resize(start + max, 0);
        let read = self.current.read(&mut buffer[start..]);
        buffer.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Whether the live path no longer names the current generation.
    fn live_changed(&self) -> io::Result<bool> {
        match std::fs::metadata(self.files.live()) {
            Ok(metadata) => Ok(FileId::of(&metadata) != self.current.id),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// Moves to the next generation that can be read, counting those Docker deleted first.
    fn advance(&mut self) -> io::Result<Progress> {
        while let Some(next) = self.ahead.pop_front() {
            let generation = match next {
                Ahead::Open(generation) => Some(generation),
                Ahead::Seen(listed) => self.open_seen(&listed)?,
            };
            if let Some(generation) = generation {
                if self.finished.len() == FINISHED_KEPT {
                    self.finished.pop_front();
                }
                let head = self.current.current_head();
                self.finished.push_back((self.current.id, head));
                debug!(finished = %self.current.path.display(), ino = self.current.id.ino, read = self.current.offset, next = %generation.path.display(), next_ino = generation.id.ino, "next log file");
                self.current = generation;
                self.fill_ahead()?;
                return Ok(Progress::NextFile);
            }
        }
        Ok(Progress::Idle)
    }

    /// Opens a generation that was only seen, wherever rotation moved it; counts it lost if it
    /// is gone.
    fn open_seen(&mut self, seen: &Listed) -> io::Result<Option<Generation>> {
        let now = self.files.list()?;
        if let Some(listed) = now.iter().find(|l| l.id == seen.id)
            && let Some(generation) = Generation::open(listed, 0)?
        {
            return Ok(Some(generation));
        }
        self.losses.rotated_files += 1;
        self.losses.rotated_bytes += seen.size;
        warn!(file = %seen.path.display(), bytes = seen.size, "a rotated log file was deleted by Docker before it was read; its lines are lost");
        Ok(None)
    }

    /// Opens remembered generations while there is room.
    fn fill_ahead(&mut self) -> io::Result<()> {
        let open = self.open_ahead();
        if open >= self.max_open_ahead {
            return Ok(());
        }
        let mut budget = self.max_open_ahead - open;
        for index in 0..self.ahead.len() {
            if budget == 0 {
                break;
            }
            if let Ahead::Seen(listed) = &self.ahead[index] {
                let listed = listed.clone();
                if let Some(generation) = self.open_seen_quietly(&listed)? {
                    self.ahead[index] = Ahead::Open(generation);
                    budget -= 1;
                }
            }
        }
        Ok(())
    }

    fn open_seen_quietly(&self, seen: &Listed) -> io::Result<Option<Generation>> {
        let now = self.files.list()?;
        match now.iter().find(|l| l.id == seen.id) {
            Some(listed) => Generation::open(listed, 0),
            None => Ok(None),
        }
    }

    fn open_ahead(&self) -> usize {
        self.ahead
            .iter()
            .filter(|a| matches!(a, Ahead::Open(_)))
            .count()
    }

    fn push_ahead(&mut self, listed: Listed) -> io::Result<()> {
        if self.open_ahead() < self.max_open_ahead {
            // Rotated between the listing and the opening: it is `.1` now.
            let generation = match Generation::open(&listed, 0)? {
                Some(generation) => Some(generation),
                None => self.open_seen_quietly(&listed)?,
            };
            if let Some(generation) = generation {
                self.ahead.push_back(Ahead::Open(generation));
                return Ok(());
            }
        }
        self.ahead.push_back(Ahead::Seen(listed));
        Ok(())
    }

    /// Looks for generations newer than the newest known one and opens them (up to the limit):
    /// call it often (on every wake-up and every read), so a rotation is seen while its files
    /// still exist.
    pub(crate) fn check(&mut self) -> io::Result<()> {
        let newest = self.ahead.back().map_or(self.current.id, Ahead::id);
        match std::fs::metadata(self.files.live()) {
            Ok(metadata) if FileId::of(&metadata) == newest => return Ok(()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        }
        // Every file not read, being read or queued is newer than those that are: Docker only
        // adds files at the live end.
        let listed = self.files.list()?;
        self.count_possible_gap(newest, &listed)?;
        let mut newer = Vec::new();
        for listed in listed {
            if !self.is_known(&listed)? {
                newer.push(listed);
            }
        }
        // Oldest first by last write (a stable sort keeps the listing's order for equal times).
        newer.sort_by_key(|listed| listed.modified);
        for listed in newer {
            debug!(path = %listed.path.display(), ino = listed.id.ino, "newer log file");
            self.push_ahead(listed)?;
        }
        Ok(())
    }

    /// The newest generation known is no longer listed (nor its compressed copy): Docker
    /// rotated through `max-file` files since it was the live one, and the generations between
    /// it and the oldest listed may be gone unseen. Counted as one possible loss (it may
    /// over-count when exactly `max-file` rotations happened) and logged.
    fn count_possible_gap(&mut self, newest: FileId, listed: &[Listed]) -> io::Result<()> {
        if listed.is_empty() || listed.iter().any(|l| l.id == newest) {
            return Ok(());
        }
        let newest_head = match self.ahead.back() {
            Some(Ahead::Open(generation)) => generation.current_head(),
            Some(Ahead::Seen(_)) => return Ok(()),
            None => self.current.current_head(),
        };
        for candidate in listed.iter().filter(|l| l.compressed) {
            if let Some(head) = file_head(candidate)?
                && is_copy(&head, &newest_head)
            {
                return Ok(());
            }
        }
        self.losses.rotated_files += 1;
        warn!(dir = %self.files.dir().display(), "log files rotated faster than they were read: generations written between two looks may be lost");
        Ok(())
    }

    /// Whether a listed file is one already read, being read or queued: the same inode while
    /// its descriptor is held; the same inode and first bytes once it is not (Docker may reuse
    /// the inode of a file it deleted); for a compressed file, the first bytes of one of them
    /// (Docker's compressed copy).
    fn is_known(&self, listed: &Listed) -> io::Result<bool> {
        if self.current.id == listed.id || self.ahead.iter().any(|a| a.id() == listed.id) {
            return Ok(true);
        }
        let reused = self.finished.iter().any(|(id, _)| *id == listed.id);
        if !listed.compressed && !reused {
            return Ok(false);
        }
        // Read from the file of that inode: the path may name another one by now.
        let Some(head) = self.head_of(listed)? else {
            // Gone already: a file this tail read (whose inode it remembers), or a copy.
            return Ok(true);
        };
        let mut known = self
            .finished
            .iter()
            .filter(|(id, _)| listed.compressed || *id == listed.id)
            .map(|(_, head)| head.clone());
        if known.any(|known| is_copy(&head, &known)) {
            return Ok(true);
        }
        if !listed.compressed {
            return Ok(false);
        }
        let held =
            std::iter::once(&self.current).chain(self.ahead.iter().filter_map(|a| match a {
                Ahead::Open(generation) => Some(generation),
                Ahead::Seen(_) => None,
            }));
        for generation in held {
            if is_copy(&head, &generation.current_head()) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Tail {
    /// The first bytes of the file `listed` names, wherever rotation moved it; `None` if it is
    /// gone.
    fn head_of(&self, listed: &Listed) -> io::Result<Option<Vec<u8>>> {
        if let Some(head) = file_head(listed)? {
            return Ok(Some(head));
        }
        let moved = self.files.list()?.into_iter().find(|l| l.id == listed.id);
        match moved {
            Some(moved) => file_head(&moved),
            None => Ok(None),
        }
    }
}

/// Whether `head` starts with `known` (a file's first bytes): the same content.
fn is_copy(head: &[u8], known: &[u8]) -> bool {
    !known.is_empty() && head.len() >= known.len() && head[..known.len()] == *known
}

/// The first [`HEAD_BYTES`] of a listed file's content (decompressed for a compressed file;
/// fewer if it is shorter); `None` if its path no longer names that file.
fn file_head(listed: &Listed) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(&listed.path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if FileId::of(&file.metadata()?) != listed.id {
        return Ok(None);
    }
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let reader: Box<dyn Read> = if listed.compressed {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    // A file still being written may end early: what was read is enough to compare.
    let _ = reader.take(HEAD_BYTES as u64).read_to_end(&mut head);
    Ok(Some(head))
}

#[cfg(test)]
mod tests;
