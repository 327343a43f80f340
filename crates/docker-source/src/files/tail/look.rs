//! A look at a container's log directory that tells which generation each file is: its *birth
//! number*, the count of live files Docker created before it (and it).
//!
//! Docker rotates by renaming: at every rotation each file's index goes up by one (`.1` →
//! `.2`, the live file → `.1`), the oldest is deleted and a new live file is created. So in a
//! listing taken at one moment, the file at index `i` was born `i` generations before the live
//! one, and the live file's number is all that is needed. It comes from either
//!
//! - a generation the tail holds, found in the listing (by inode, or as its compressed copy):
//!   its number plus its index; or
//! - the count of creations of the live file that inotify reported ([`Births`]), taken just
//!   before and just after the listing: when both counts agree, no rotation completed while
//!   the directory was read, and, once Docker wrote to the live file (its creation is counted
//!   by then, see [`settled`]), the live file is the one that count created.
//!
//! The second needs nothing held, so it numbers the files even when Docker rotated through
//! every file the tail knew between two looks: the generations between the newest one held and
//! the oldest one listed are then known to be lost, and how many. A listing that mixes two
//! moments of a rotation (a hole in the indices, an inode twice) is read again.

use std::io;

use super::{
    listing::{Listed, LogFiles},
    torn,
};
use crate::files::watch::{BirthCount, Births};

/// Looks taken again while Docker rotated during the listing.
const LOOK_RETRIES: usize = 16;

/// How the live file's number relates to the count of creations: `created + offset`, valid
/// while the kernel's queue did not overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    offset: i64,
    overflows: u64,
}

/// A numbered listing.
#[derive(Debug)]
pub(super) struct Look {
    /// Every file, oldest first.
    pub(super) files: Vec<Listed>,
    pub(super) numbering: Numbering,
    /// The count of creations, if no rotation completed during the look: files opened
    /// before [`Looker::unchanged_since`] confirms it are the ones listed (Docker reuses the
    /// inode of a file it deleted only for a file it creates).
    count: Option<BirthCount>,
}

/// What a look knows of the files' numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Numbering {
    /// The live file's number (a file at index `i` is `live - i`).
    Live(i64),
    /// Docker kept rotating while the directory was read, or its new live file is still empty
    /// and nothing held numbers the files: look again later (the count of creations will
    /// number the files then, exactly).
    Later,
    /// Nothing tells: no count of creations (polling, or the kernel's queue overflowed) and no
    /// file held is listed any more. Every file listed is newer than every file held.
    Unknown,
}

/// Takes numbered looks at one container's files.
#[derive(Debug)]
pub(super) struct Looker {
    files: LogFiles,
    births: Option<Births>,
    anchor: Option<Anchor>,
    /// The count taken with the last look, if no rotation completed during it.
    last_count: Option<BirthCount>,
    /// Whether a look was taken: the first one numbers the live file by the count (or 0).
    started: bool,
}

/// What identifies a listed file as a generation held: `by_inode` only (cheap), or also as a
/// compressed copy (reads the file's first bytes).
pub(super) trait Held {
    fn number(&mut self, listed: &Listed, by_copy: bool) -> io::Result<Option<i64>>;
}

impl<F: FnMut(&Listed, bool) -> io::Result<Option<i64>>> Held for F {
    fn number(&mut self, listed: &Listed, by_copy: bool) -> io::Result<Option<i64>> {
        self(listed, by_copy)
    }
}

impl Looker {
    pub(super) fn new(files: LogFiles, births: Option<Births>) -> Looker {
        Looker {
            files,
            births,
            anchor: None,
            last_count: None,
            started: false,
        }
    }

    pub(super) fn files(&self) -> &LogFiles {
        &self.files
    }

    fn count(&self) -> Option<BirthCount> {
        self.births.as_ref()?.count()
    }

    /// Lists the files and numbers them (see [`Numbering`]); `held` tells which listed file is
    /// a generation the tail holds.
    pub(super) fn look(&mut self, held: &mut impl Held) -> io::Result<Look> {
        let mut files = Vec::new();
        let mut last_count = None;
        let mut stable = None;
        for _ in 0..LOOK_RETRIES {
            let before = self.count();
            let listing = self.files.list()?;
            let after = self.count();
            files = listing.files;
            last_count = after;
            stable = (before == after).then_some(after).flatten();
            if !listing.consistent {
                std::thread::yield_now();
                continue;
            }
            self.last_count = stable;
            if let Some(live) = self.live_number(&files, stable, held)? {
                return Ok(self.numbered(files, Numbering::Live(live), stable));
            }
            // Counted but not tied to the numbers (or never counted): reading again will not
            // help. Tied, the count numbers the files once Docker wrote to the live file
            // (see `settled`): look again.
            if (stable.is_some() && !self.is_tied(stable)) || self.births.is_none() {
                return Ok(self.numbered(files, Numbering::Unknown, stable));
            }
            std::thread::yield_now();
        }
        self.last_count = None;
        self.torn(files, last_count, stable, held)
    }

    /// Numbers a listing that stayed inconsistent: Docker kept rotating, or is stopped in the
    /// middle of a rotation, or a file is missing in the middle (deleted by hand). With the
    /// count of creations, exactly (see `torn.rs`) or at a later look; without it, by a held
    /// generation listed if there is one (a missing file taken for a hole: a generation may
    /// be counted lost that was not, never the reverse), else not at all.
    fn torn(
        &mut self,
        files: Vec<Listed>,
        last_count: Option<BirthCount>,
        stable: Option<BirthCount>,
        held: &mut impl Held,
    ) -> io::Result<Look> {
        let anchored = self.births.is_some()
            && matches!((self.anchor, last_count), (Some(anchor), Some(count)) if anchor.overflows == count.overflows);
        if anchored {
            let by_count = settled(&files, stable).and_then(|count| self.number_of(count));
            return Ok(match torn::place(&files, by_count, held)? {
                Some((placed, live)) => self.numbered(placed, Numbering::Live(live), stable),
                None => self.numbered(files, Numbering::Later, stable),
            });
        }
        let numbering = match held_live_number(&files, held, false)? {
            Some(live) => Numbering::Live(live),
            None => Numbering::Unknown,
        };
        Ok(self.numbered(files, numbering, stable))
    }

    fn numbered(
        &mut self,
        files: Vec<Listed>,
        numbering: Numbering,
        count: Option<BirthCount>,
    ) -> Look {
        self.started = true;
        Look {
            files,
            numbering,
            count,
        }
    }

    /// The count of creations, if inotify reports them.
    pub(super) fn births(&self) -> Option<&Births> {
        self.births.as_ref()
    }

    /// The number of the generation that creation `count` made, once numbers are tied to the
    /// count.
    pub(super) fn number_of(&self, count: BirthCount) -> Option<i64> {
        let anchor = self.anchor.filter(|a| a.overflows == count.overflows)?;
        Some(created(count) + anchor.offset)
    }

    /// Whether the numbers are tied to `count` (its overflows are the anchor's).
    fn is_tied(&self, count: Option<BirthCount>) -> bool {
        count.and_then(|count| self.number_of(count)).is_some()
    }

    /// Whether there is no count of creations (polling): nothing can confirm a look then.
    pub(super) fn uncounted(&self) -> bool {
        self.births.is_none()
    }

    /// Whether no rotation completed since `look` (always, without a count of creations:
    /// nothing can tell then).
    pub(super) fn unchanged_since(&self, look: &Look) -> bool {
        if self.births.is_none() {
            return true;
        }
        look.count.is_some() && self.count() == look.count
    }

    /// The live file's number in `files` (a consistent listing): from a held generation
    /// listed, else from a `stable` count once the live file was written to (see [`settled`]),
    /// else from a compressed copy of a held generation, else (the first look) the count
    /// itself or 0. The numbers are tied to the count again only by a settled count (or when
    /// nothing ties them yet: then they may be one too high until a settled look, which
    /// counts a generation lost that was not, never the reverse).
    fn live_number(
        &mut self,
        files: &[Listed],
        stable: Option<BirthCount>,
        held: &mut impl Held,
    ) -> io::Result<Option<i64>> {
        let settled = settled(files, stable);
        let from_count = settled.and_then(|count| self.number_of(count));
        let mut live = held_live_number(files, held, false)?.or(from_count);
        if live.is_none() {
            live = held_live_number(files, held, true)?;
        }
        if live.is_none() && !self.started {
            live = Some(stable.map_or(0, created));
        }
        let untied = stable.filter(|_| !self.is_tied(stable));
        if let (Some(live), Some(count)) = (live, settled.or(untied)) {
            self.anchor_at(live, count);
        }
        Ok(live)
    }

    /// Ties the count of creations to the numbers: the live file, numbered `live`, was
    /// created by the `count`th creation.
    pub(super) fn anchor_at(&mut self, live: i64, count: BirthCount) {
        self.anchor = Some(Anchor {
            offset: live - created(count),
            overflows: count.overflows,
        });
    }

    /// The tail numbered an [`Numbering::Unknown`] look itself: later looks continue from
    /// there (if the count taken with it was stable).
    pub(super) fn numbered_as(&mut self, live: i64) {
        if let Some(count) = self.last_count {
            self.anchor_at(live, count);
        }
    }
}

/// The `stable` count of a listing whose live file Docker wrote to: that file's creation
/// (Docker writes to a file it created once the creation returned, and the kernel queues the
/// creation before it returns). The kernel makes a new file visible a moment before it
/// queues its creation, so a count taken while the live file is empty may be one behind: it
/// would number the files one too low (a generation deleted unread not counted) or tie the
/// numbers to the count one too high (one counted lost that was read). Docker writes the
/// message that made it rotate at once, so a look finds the live file written soon.
fn settled(files: &[Listed], stable: Option<BirthCount>) -> Option<BirthCount> {
    let written = files
        .last()
        .is_some_and(|live| live.index == 0 && live.size > 0);
    stable.filter(|_| written)
}

fn held_live_number(
    files: &[Listed],
    held: &mut impl Held,
    by_copy: bool,
) -> io::Result<Option<i64>> {
    for listed in files.iter().rev() {
        if by_copy && !listed.compressed {
            continue;
        }
        if let Some(number) = held.number(listed, by_copy)? {
            return Ok(Some(number + i64::from(listed.index)));
        }
    }
    Ok(None)
}

pub(super) fn created(count: BirthCount) -> i64 {
    i64::try_from(count.created).unwrap_or(i64::MAX)
}
