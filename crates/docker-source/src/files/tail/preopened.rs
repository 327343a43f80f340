//! The live files the watcher opened as Docker created them (`watch/births.rs`), and the
//! removed container, whose files only these descriptors and the tail's own still hold.
//!
//! Each comes with the count of creations that made it, which a look ties to the numbers
//! (`look.rs`). Two things can make that label wrong, and neither may read a generation twice,
//! skip one held, or count a loss wrongly:
//!
//! - **One too low.** The kernel makes a new file visible a moment before it queues its
//!   creation, so a file opened in that moment is the generation *after* the one its count
//!   names (never further: Docker creates one file at a time, after a rename). Inodes settle
//!   it: a generation held is recognised by its inode whatever the label; a file whose label
//!   names a generation held under another inode is the next one; and a file pre-opened
//!   twice (the second time for the next creation) is the generation of its higher count.
//! - **None.** An overflow of the kernel's queue loses creations: a count taken across one is
//!   not comparable with the numbers until a look ties the new counts to them again (until
//!   then the file is *unanchored*), and a file whose creation was counted before one carries
//!   no count at all. Such files keep the order of their creations, and are newer than every
//!   generation the tail holds (they were opened after the last look, whose live file is the
//!   newest generation held: one that is that file has its inode). A look numbers them or
//!   lists them; one it neither numbers nor lists was deleted since and fills a number
//!   between the newest held and the oldest listed. Without a look (the container was
//!   removed), the first of each run of one overflow count is placed one number after the
//!   previous, the generation in between counted as *possibly* lost (logged as inexact, as an
//!   unnumbered look does), and the next ones of the run by their counts, exactly.
//!
//! A removed container's follower that holds no tail yet (its files were never opened: Docker
//! rotated throughout, or removed the container first) builds one from these files alone
//! ([`Tail::of_removed`]), numbered by their counts from the oldest.

use std::{collections::BTreeMap, io};

use super::{Ahead, Generation, MAX_OPEN_AHEAD, Slot, Tail, WantedFile, listing::LogFiles, look};
use crate::files::watch::{BirthCount, Births};

/// A pre-opened file whose count no look has tied to the numbers (see the module docs).
#[derive(Debug)]
pub(super) struct Unanchored {
    /// `None`: counted across an overflow of the kernel's queue.
    count: Option<BirthCount>,
    generation: Generation,
}

impl Tail {
    /// A tail of a removed container whose follower never held its files: the live files the
    /// watcher opened as Docker created them, numbered by their counts from the oldest (which
    /// is read first). `None`: the watcher opened none. What was written before the oldest is
    /// not held: the caller counts it, unless the flag is `true`: the oldest is the container's
    /// first live file (its directory was watched from its creation, `watch/early.rs`). Call
    /// [`Tail::removed`] (after configuring the tail) to queue the others.
    pub(crate) fn of_removed(
        files: LogFiles,
        births: Option<Births>,
    ) -> io::Result<Option<(Tail, bool)>> {
        let Some(births) = births else {
            return Ok(None);
        };
        let mut taken = births.take_preopened().into_iter();
        let Some(oldest) = taken.next() else {
            return Ok(None);
        };
        let first = births.is_first(oldest.count);
        let number = oldest.count.map_or(0, look::created);
        let current = Generation::from_file(oldest.file, files.live(), number)?;
        let mut looker = look::Looker::new(files, Some(births));
        if let Some(count) = oldest.count {
            looker.anchor_at(number, count);
        }
        let mut tail = Tail::with_current(looker, current, MAX_OPEN_AHEAD);
        for preopened in taken {
            let live = tail.looker.files().live();
            let generation = Generation::from_file(preopened.file, live, 0)?;
            tail.hold_preopened(preopened.count, generation);
        }
        Ok(Some((tail, first)))
    }

    /// The container was removed: Docker deleted its directory, so no look will list its files
    /// again. The live files the watcher opened as they were created, newer than every
    /// generation known, are queued by their count of creations; the numbers between them,
    /// and after the last of them up to the last creation counted, that no descriptor holds
    /// are generations Docker deleted unread, counted as lost. Unanchored ones follow (see
    /// the module docs).
    pub(crate) fn removed(&mut self) -> io::Result<()> {
        // Every creation so far counted, and every file opened for one handed over.
        let last_created = self.looker.births().and_then(Births::count);
        self.take_preopened()?;
        let (newest, _) = self.newest();
        let mut queue = Queue {
            files: Vec::new(),
            expected: newest + 1,
            unanchored: false,
            previous: None,
        };
        for (label, generation) in std::mem::take(&mut self.preopened) {
            if label >= queue.expected {
                self.push_removed(&mut queue, label, true, generation);
            }
        }
        for Unanchored { count, generation } in std::mem::take(&mut self.unanchored) {
            let step = queue.previous.zip(count).and_then(counted_step);
            // Unknown: one generation may have been deleted unseen in between.
            let number = queue.expected - 1 + step.unwrap_or(2);
            self.push_removed(&mut queue, number, step.is_some(), generation);
            queue.unanchored = true;
            queue.previous = count;
        }
        self.count_after(&queue, last_created);
        self.queue(queue.files);
        Ok(())
    }

    /// Queues generation `number`, counting those missing before it.
    fn push_removed(&mut self, queue: &mut Queue, number: i64, exact: bool, held: Generation) {
        let generation = Generation { number, ..held };
        if number > queue.expected {
            self.count_unseen(number - queue.expected, exact, &generation.path);
        }
        queue.files.push((number, Slot::Open(generation)));
        queue.expected = number + 1;
    }

    /// Counts the generations created after the last one held: Docker deleted them with the
    /// directory (the watcher could not open them in time, or kept no more).
    fn count_after(&mut self, queue: &Queue, last_created: Option<BirthCount>) {
        let Some(last_created) = last_created else {
            return;
        };
        let last = if queue.unanchored {
            let previous = queue.previous.zip(Some(last_created));
            previous
                .and_then(counted_step)
                .map(|step| queue.expected - 1 + step)
        } else {
            self.looker.number_of(last_created)
        };
        if let Some(last) = last.filter(|last| *last >= queue.expected) {
            let live = self.looker.files().live();
            self.count_unseen(last - queue.expected + 1, true, &live);
        }
    }

    /// Takes the live files the watcher opened as they were created (see the module docs).
    pub(super) fn take_preopened(&mut self) -> io::Result<()> {
        let Some(births) = self.looker.births() else {
            return Ok(());
        };
        for preopened in births.take_preopened() {
            let live = self.looker.files().live();
            let generation = Generation::from_file(preopened.file, live, 0)?;
            self.hold_preopened(preopened.count, generation);
        }
        Ok(())
    }

    /// Keeps a pre-opened file, numbered if its count can be, unless the tail holds it already.
    fn hold_preopened(&mut self, count: Option<BirthCount>, mut generation: Generation) {
        let id = generation.id;
        if self.held_by_tail().any(|g| g.id == id) {
            return;
        }
        // Pre-opened before under a lower count, which named the generation before.
        self.preopened.retain(|_, g| g.id != id);
        self.unanchored.retain(|u| u.generation.id != id);
        let label = count.and_then(|count| self.label_of(count, id));
        // A generation only seen, held now (the same inode: the same file, see `label_of`).
        let seen = self.ahead.iter_mut().find(|a| {
            matches!(a, Ahead::Seen { listed, number } if Some(*number) == label && listed.id == id)
        });
        if let (Some(entry), Some(number)) = (seen, label) {
            *entry = Ahead::Open(Generation {
                number,
                ..generation
            });
            return;
        }
        if self.preopened.len() + self.unanchored.len() >= self.max_open_ahead {
            return;
        }
        match label {
            Some(label) => {
                generation.number = label;
                self.preopened.insert(label, generation);
            }
            None => self.unanchored.push(Unanchored { count, generation }),
        }
    }

    /// The number of the file `id` that creation `count` made, once a look tied the counts to
    /// the numbers: its count's, or the next one if the generation its count names is held
    /// under another inode (the count named the generation before).
    /// A generation only seen counts too: the look that listed it under its inode was
    /// confirmed, and a file keeps its inode for life (Docker deletes a generation only
    /// rotations after the next one was created, so the next one never reuses its inode).
    fn label_of(&self, count: BirthCount, id: super::FileId) -> Option<i64> {
        let label = self.looker.number_of(count)?;
        let seen = self.ahead.iter().filter_map(|a| match a {
            Ahead::Seen { listed, number } => Some((*number, listed.id)),
            Ahead::Open(_) => None,
        });
        let mut named = self.held().map(|g| (g.number, g.id)).chain(seen);
        let named_elsewhere = named.any(|(number, other)| number == label && other != id);
        Some(if named_elsewhere { label + 1 } else { label })
    }

    /// Reading starts at the oldest file listed: the files the watcher opened as Docker created
    /// them, older than that one (Docker deleted them, or is about to), are read first, in
    /// birth order. When the count of creations starts at the container's first file
    /// (`watch/early.rs`), the generations missing before the one being read are counted lost:
    /// Docker deleted them before anything opened them. (Registered later, nothing was
    /// promised about generations older than the first look.)
    pub(super) fn begin_with_older(&mut self) -> io::Result<()> {
        let Some(births) = self.looker.births().cloned() else {
            return Ok(());
        };
        let mut older = BTreeMap::new();
        for preopened in births.take_preopened() {
            let live = self.looker.files().live();
            let generation = Generation::from_file(preopened.file, live, 0)?;
            let id = generation.id;
            let label = preopened.count.and_then(|count| self.label_of(count, id));
            match label {
                Some(label)
                    if label < self.current.number && !self.held_by_tail().any(|g| g.id == id) =>
                {
                    older.insert(
                        label,
                        Generation {
                            number: label,
                            ..generation
                        },
                    );
                }
                _ => self.hold_preopened(preopened.count, generation),
            }
        }
        let first = births
            .first_count()
            .and_then(|count| self.looker.number_of(count));
        let held: Vec<(i64, std::path::PathBuf)> = older
            .values()
            .chain(std::iter::once(&self.current))
            .map(|generation| (generation.number, generation.path.clone()))
            .collect();
        let mut expected = first;
        for (number, path) in held {
            if let Some(expected) = expected.filter(|expected| number > *expected) {
                self.count_unseen(number - expected, true, &path);
            }
            expected = Some(number + 1);
        }
        let mut older = older.into_values();
        if let Some(oldest) = older.next() {
            let listed_oldest = std::mem::replace(&mut self.current, oldest);
            self.ahead.push_front(Ahead::Open(listed_oldest));
            for generation in older.rev() {
                self.ahead.push_front(Ahead::Open(generation));
            }
        }
        Ok(())
    }

    /// After a look: numbers the unanchored files whose counts it tied to the numbers.
    pub(super) fn number_unanchored(&mut self) {
        for Unanchored { count, generation } in std::mem::take(&mut self.unanchored) {
            self.hold_preopened(count, generation);
        }
    }

    /// The generations the tail itself holds (the one being read and those opened ahead).
    fn held_by_tail(&self) -> impl Iterator<Item = &Generation> {
        let ahead = self.ahead.iter().filter_map(|a| match a {
            Ahead::Open(generation) => Some(generation),
            Ahead::Seen { .. } => None,
        });
        std::iter::once(&self.current).chain(ahead)
    }

    /// Every generation whose descriptor is held.
    fn held(&self) -> impl Iterator<Item = &Generation> {
        self.held_by_tail()
            .chain(self.preopened.values())
            .chain(self.unanchored.iter().map(|u| &u.generation))
    }

    /// The files of a look (newer than `newest`) and the live files the watcher opened as
    /// they were created, in order. A pre-opened file the look listed is that file (the same
    /// inode, held all along). One it did not list was deleted since, so it is older than
    /// every file listed; its count of creations is above `newest` only if it is newer than
    /// every generation known (a count may name the generation before, never after, and
    /// [`Tail::label_of`] has corrected that), and then it fills one of the numbers between, as
    /// does an unanchored one (newer than every generation held, see the module docs; unless
    /// a generation is only seen, whose place it might take). Pre-opened files newer than
    /// the look wait; unanchored ones it did not place are dropped (listed, or no number is
    /// missing).
    pub(super) fn with_preopened(
        &mut self,
        newest: i64,
        files: Vec<WantedFile>,
    ) -> Vec<WantedFile> {
        let unanchored = std::mem::take(&mut self.unanchored);
        let Some(&(oldest, _)) = files.first() else {
            return files;
        };
        let listed_newest = files.last().map_or(newest, |(number, _)| *number);
        let later = self.preopened.split_off(&(listed_newest + 1));
        let earlier = std::mem::replace(&mut self.preopened, later);
        let only_seen = self.ahead.iter().any(|a| matches!(a, Ahead::Seen { .. }));
        let unanchored = unanchored
            .into_iter()
            .filter(|_| !only_seen)
            .map(|u| (newest + 1, u.generation));
        let mut merged = Vec::new();
        let mut next = newest + 1;
        for (label, generation) in earlier.into_iter().chain(unanchored) {
            let listed = files.iter().any(|(_, slot)| slot.id() == generation.id);
            if listed || label <= newest || next >= oldest {
                continue;
            }
            merged.push((
                next,
                Slot::Open(Generation {
                    number: next,
                    ..generation
                }),
            ));
            next += 1;
        }
        merged.extend(files);
        merged
    }
}

/// The generations a removed container's tail queues, and where numbering stands.
#[derive(Debug)]
struct Queue {
    files: Vec<WantedFile>,
    /// The number the next generation should have.
    expected: i64,
    /// Whether unanchored generations were queued (numbered from the previous one's count).
    unanchored: bool,
    /// The count of creations of the last unanchored generation queued.
    previous: Option<BirthCount>,
}

/// How many creations apart two counts are, if nothing can have been missed between them.
fn counted_step((before, now): (BirthCount, BirthCount)) -> Option<i64> {
    if before.overflows != now.overflows || now.created <= before.created {
        return None;
    }
    i64::try_from(now.created - before.created).ok()
}
