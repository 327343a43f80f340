//! Follows one container's log files across rotation, truncation and removal.
//!
//! Docker writes to one live file (`<id>-json.log`, `local-logs/container.log`). When it
//! reaches `max-size`, Docker closes it, deletes the oldest rotated file, renames the others
//! up (`.1` → `.2`, …), renames the live file to `.1`, and creates a new live file; for
//! `compress=true` (the `local` driver's default) it then replaces `.1` by `.1.gz`, a new file
//! with a new inode. With `max-file=1` and a daemon that truncates instead of renaming, the
//! live file is truncated in place.
//!
//! A [`Tail`] reads one *generation* (one file's content) at a time, from the oldest it needs to
//! the live one. Each generation has a birth number (`look.rs`): the tail never compares
//! contents or timestamps to know which file is which, and reads generations in the order
//! Docker created them. It keeps each generation's descriptor until it has read it to its end,
//! so a generation Docker renames or deletes meanwhile (rotation, or the container's removal)
//! is still read whole. New generations are found by [`Tail::check`] (the live path names a
//! new inode) and opened at once, up to [`MAX_OPEN_AHEAD`]; beyond that they are only
//! remembered. A generation deleted before the tail opened it is counted as lost, exactly:
//! numbers tell how many are missing between the newest one held and the oldest one listed. A
//! generation that was renamed is read once more to its end before the next one starts
//! (Docker closes a file before renaming it, so that read sees everything).

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    os::unix::fs::FileExt,
};

use tracing::{debug, warn};

use generation::{Generation, Reader, file_head, is_copy};
use listing::Listed;
pub(crate) use listing::{FileId, LogFiles};
use look::{Looker, Numbering};
use opening::{Opened, Slot, Wanted, WantedFile, look_and_open};
use preopened::Unanchored;

use super::watch::Births;

/// Generations opened ahead of the one being read, at most (their descriptors keep their
/// content on disk until read, even after Docker deleted them).
pub(crate) const MAX_OPEN_AHEAD: usize = 32;
/// The bytes of a generation's start kept to recognise it (truncation, its compressed copy):
/// enough to hold a whole first line and its timestamp.
const HEAD_BYTES: usize = 1024;

/// A generation found newer than the one being read.
#[derive(Debug)]
enum Ahead {
    /// Opened: its content is safe.
    Open(Generation),
    /// Only seen (too many open): lost if Docker deletes it before it is reached.
    Seen { listed: Listed, number: i64 },
}

impl Ahead {
    fn number(&self) -> i64 {
        match self {
            Ahead::Open(generation) => generation.number,
            Ahead::Seen { number, .. } => *number,
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
    looker: Looker,
    current: Generation,
    /// Newer generations, oldest first (increasing numbers).
    ahead: VecDeque<Ahead>,
    /// Live files the watcher opened as they were created, numbered by the count of creations
    /// that made them (`preopened.rs`).
    preopened: BTreeMap<i64, Generation>,
    /// Those whose count no look has tied to the numbers yet (an overflow of the kernel's
    /// queue), in the order they were created.
    unanchored: Vec<Unanchored>,
    losses: Losses,
    max_open_ahead: usize,
    /// The size of a rotated file (Docker's `max-size`), counted for each generation lost
    /// unseen; 0 when unknown.
    rotated_size: u64,
    /// Whether Docker may truncate the live file in place (see [`Tail::without_truncation`]).
    may_truncate: bool,
}

impl Tail {
    /// Opens the files at `start`; `births` (when inotify counts the live file's creations)
    /// lets it number generations it never saw. `Ok(None)`: there is no log file (yet), or
    /// `start` names a file Docker no longer has.
    pub(crate) fn open(
        files: LogFiles,
        start: Start,
        births: Option<Births>,
    ) -> io::Result<Option<Tail>> {
        Self::open_with(files, start, births, MAX_OPEN_AHEAD)
    }

    fn open_with(
        files: LogFiles,
        start: Start,
        births: Option<Births>,
        max_open_ahead: usize,
    ) -> io::Result<Option<Tail>> {
        let mut looker = Looker::new(files, births);
        let wanted = Wanted {
            numbers: |_| true,
            budget: max_open_ahead + 1,
            unknown_from: 0,
        };
        let opened = look_and_open(&mut looker, &mut |_: &Listed, _| Ok(None), &wanted)?;
        let mut candidates = opened.files.into_iter();
        let current = match start {
            // The oldest file that could be opened (older ones vanished meanwhile: they were
            // rotated away before anything was promised about them).
            Start::Oldest => candidates.by_ref().find_map(|(_, slot)| match slot {
                Slot::Open(generation) => Some(generation),
                Slot::Listed(_) => None,
            }),
            Start::At { id, offset } => match candidates.by_ref().find(|(_, s)| s.id() == id) {
                Some((_, Slot::Open(mut generation))) => {
                    generation.skip_to(offset)?;
                    Some(generation)
                }
                _ => None,
            },
        };
        let Some(current) = current else {
            return Ok(None);
        };
        let mut tail = Tail::with_current(looker, current, max_open_ahead);
        tail.queue(candidates.collect());
        if start == Start::Oldest {
            tail.begin_with_older()?;
        }
        Ok(Some(tail))
    }

    fn with_current(looker: Looker, current: Generation, max_open_ahead: usize) -> Tail {
        Tail {
            looker,
            current,
            ahead: VecDeque::new(),
            preopened: BTreeMap::new(),
            unanchored: Vec::new(),
            losses: Losses::default(),
            max_open_ahead,
            rotated_size: 0,
            may_truncate: true,
        }
    }

    /// Docker never truncates these files in place (they rotate, or have no size limit): the
    /// start of the live file need not be compared before each read.
    pub(crate) fn without_truncation(mut self) -> Tail {
        self.may_truncate = false;
        self
    }

    /// Docker rotates the files at `bytes` (`max-size`): the size counted for a generation
    /// deleted before it was seen.
    pub(crate) fn with_rotated_size(mut self, bytes: u64) -> Tail {
        self.rotated_size = bytes;
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
        match std::fs::metadata(self.looker.files().live()) {
            Ok(metadata) => Ok(FileId::of(&metadata) != self.current.id),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// Moves to the next generation that can be read, counting those Docker deleted first.
    fn advance(&mut self) -> io::Result<Progress> {
        while let Some(next) = self.ahead.pop_front() {
            let generation = match next {
                Ahead::Open(generation) => generation,
                Ahead::Seen { listed, number } => match self.open_seen(number)? {
                    Found::Open(generation) => generation,
                    Found::Gone => {
                        self.count_lost(&listed);
                        continue;
                    }
                    Found::Later => {
                        self.ahead.push_front(Ahead::Seen { listed, number });
                        return Ok(Progress::Idle);
                    }
                },
            };
            debug!(finished = %self.current.path.display(), number = self.current.number, read = self.current.offset, next = %generation.path.display(), next_number = generation.number, "next log file");
            self.current = generation;
            self.fill_ahead()?;
            return Ok(Progress::NextFile);
        }
        Ok(Progress::Idle)
    }

    /// Opens a generation that was only seen, wherever rotation moved it.
    fn open_seen(&mut self, number: i64) -> io::Result<Found> {
        let wanted = Wanted {
            numbers: |n| n == number,
            budget: 1,
            unknown_from: self.newest().0 + 2,
        };
        let opened = self.look_and_open(&wanted)?;
        if opened.numbering == Numbering::Later {
            return Ok(Found::Later);
        }
        Ok(match opened.files.into_iter().next() {
            Some((_, Slot::Open(generation))) => Found::Open(generation),
            Some((_, Slot::Listed(_))) => Found::Later,
            None => Found::Gone,
        })
    }

    fn count_lost(&mut self, seen: &Listed) {
        self.losses.rotated_files += 1;
        self.losses.rotated_bytes += seen.size;
        warn!(file = %seen.path.display(), bytes = seen.size, "a rotated log file was deleted by Docker before it was read; its lines are lost");
    }

    /// Opens remembered generations while there is room.
    fn fill_ahead(&mut self) -> io::Result<()> {
        let open = self.open_ahead();
        if open >= self.max_open_ahead || open == self.ahead.len() {
            return Ok(());
        }
        let seen: Vec<i64> = self
            .ahead
            .iter()
            .filter_map(|a| match a {
                Ahead::Seen { number, .. } => Some(*number),
                Ahead::Open(_) => None,
            })
            .collect();
        let wanted = Wanted {
            numbers: |n| seen.contains(&n),
            budget: self.max_open_ahead - open,
            unknown_from: self.newest().0 + 2,
        };
        let opened = self.look_and_open(&wanted)?;
        if opened.numbering == Numbering::Later {
            return Ok(());
        }
        for (number, slot) in opened.files {
            if let Slot::Open(generation) = slot
                && let Some(entry) = self.ahead.iter_mut().find(|a| a.number() == number)
            {
                *entry = Ahead::Open(generation);
            }
        }
        Ok(())
    }

    fn open_ahead(&self) -> usize {
        self.ahead
            .iter()
            .filter(|a| matches!(a, Ahead::Open(_)))
            .count()
    }

    /// Queues newer generations (oldest first).
    fn queue(&mut self, files: Vec<WantedFile>) {
        for (number, slot) in files {
            debug!(ino = slot.id().ino, number, "newer log file");
            self.ahead.push_back(match slot {
                Slot::Open(generation) => Ahead::Open(generation),
                Slot::Listed(listed) => Ahead::Seen { listed, number },
            });
        }
    }

    /// The newest generation known (held, or only seen), and its inode if it is held.
    fn newest(&self) -> (i64, Option<FileId>) {
        match self.ahead.back() {
            None => (self.current.number, Some(self.current.id)),
            Some(Ahead::Open(generation)) => (generation.number, Some(generation.id)),
            Some(Ahead::Seen { number, .. }) => (*number, None),
        }
    }

    /// Looks for generations newer than the newest known one and opens them (up to the limit):
    /// call it often (on every wake-up and every read), so a rotation is seen while its files
    /// still exist.
    pub(crate) fn check(&mut self) -> io::Result<()> {
        self.take_preopened()?;
        let (newest, newest_id) = self.newest();
        // Counted at or before the newest generation known: that one, or one already read.
        self.preopened.retain(|label, _| *label > newest);
        match std::fs::metadata(self.looker.files().live()) {
            Ok(metadata) if Some(FileId::of(&metadata)) == newest_id => return Ok(()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        }
        let wanted = Wanted {
            numbers: |n| n > newest,
            budget: self.max_open_ahead.saturating_sub(self.open_ahead()),
            unknown_from: newest + 2,
        };
        let opened = self.look_and_open(&wanted)?;
        if opened.numbering == Numbering::Later {
            return Ok(());
        }
        self.number_unanchored();
        let exact = opened.numbering != Numbering::Unknown;
        let files = self.with_preopened(newest, opened.files);
        let mut expected = newest + 1;
        for (number, slot) in &files {
            if *number > expected {
                self.count_unseen(number - expected, exact, slot.path());
            }
            expected = number + 1;
        }
        self.queue(files);
        Ok(())
    }

    fn count_unseen(&mut self, unseen: i64, exact: bool, next: &std::path::Path) {
        let unseen = unseen.unsigned_abs();
        self.losses.rotated_files += unseen;
        self.losses.rotated_bytes += unseen * self.rotated_size;
        if exact {
            warn!(dir = %self.looker.files().dir().display(), files = unseen, next = %next.display(), "log files were rotated and deleted by Docker before they could be opened; their lines are lost");
        } else {
            warn!(dir = %self.looker.files().dir().display(), next = %next.display(), "log files were rotated faster than they were looked at; generations written between two looks may be lost");
        }
    }

    /// A look at the files (see `look.rs`) recognising the generations held, with the wanted
    /// ones opened (see `opening.rs`).
    fn look_and_open<F: Fn(i64) -> bool>(&mut self, wanted: &Wanted<F>) -> io::Result<Opened> {
        let current = &self.current;
        let ahead = &self.ahead;
        let mut held = |listed: &Listed, by_copy| held_number(current, ahead, listed, by_copy);
        look_and_open(&mut self.looker, &mut held, wanted)
    }
}

/// Whether a generation only seen could be opened.
#[derive(Debug)]
enum Found {
    Open(Generation),
    /// Docker deleted it before it was opened.
    Gone,
    /// Docker is rotating: look again later.
    Later,
}

/// The number of the generation held (or seen) that `listed` is: the same inode, or (with
/// `by_copy`, for a compressed file) a copy of its content.
fn held_number(
    current: &Generation,
    ahead: &VecDeque<Ahead>,
    listed: &Listed,
    by_copy: bool,
) -> io::Result<Option<i64>> {
    // Only a descriptor held keeps an inode from being reused: a generation only seen is
    // recognised by its number, never by its inode.
    let open = || {
        ahead.iter().filter_map(|a| match a {
            Ahead::Open(generation) => Some(generation),
            Ahead::Seen { .. } => None,
        })
    };
    if let Some(found) = std::iter::once(current)
        .chain(open())
        .find(|g| g.id == listed.id)
    {
        return Ok(Some(found.number));
    }
    if !by_copy || !listed.compressed {
        return Ok(None);
    }
    let Some(head) = file_head(listed)? else {
        return Ok(None);
    };
    for generation in std::iter::once(current).chain(open()) {
        if is_copy(&head, &generation.current_head()) {
            return Ok(Some(generation.number));
        }
    }
    Ok(None)
}

mod generation;
mod listing;
mod look;
mod opening;
mod preopened;
mod torn;

#[cfg(test)]
pub(super) mod tests;
