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

use std::{collections::VecDeque, io, os::unix::fs::FileExt};

use tracing::{debug, warn};

use generation::{Generation, Reader, file_head, is_copy};
use listing::Listed;
pub(crate) use listing::{FileId, LogFiles};

/// Generations opened ahead of the one being read, at most (their descriptors keep their
/// content on disk until read, even after Docker deleted them).
pub(crate) const MAX_OPEN_AHEAD: usize = 32;
/// The bytes of a generation's start kept to recognise it (truncation, its compressed copy, an
/// inode Docker reused for a new file): enough to hold a whole first line and its timestamp.
const HEAD_BYTES: usize = 1024;
/// Generations read to their end that are remembered (by inode and first bytes), so a file
/// still listed after it was read is not read again.
const FINISHED_KEPT: usize = 64;

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

mod generation;
mod listing;

#[cfg(test)]
mod tests;
