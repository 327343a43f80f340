//! Opening the files of a look while no rotation completes, so that each descriptor is the
//! generation its number says.
//!
//! Docker deletes the oldest file at every rotation and creates a new live file, which the
//! file system may give the inode just freed. A file looked up by name and opened a moment
//! later may therefore be a newer generation than the one listed, even when its inode
//! matches. The count of creations settles it: files opened before a count that is still the
//! one taken with the listing were opened before any new file was created, so each is the
//! file listed. A look that Docker's rotation overtakes is taken again.

use std::io;

use super::{
    generation::Generation,
    listing::Listed,
    look::{Held, Look, Looker, Numbering},
};

/// Looks taken again when Docker rotated while files were being opened.
const OPEN_RETRIES: usize = 8;

/// One wanted file of a look.
#[derive(Debug)]
pub(super) enum Slot {
    /// Opened: its content is safe from now on.
    Open(Generation),
    /// Not opened (the budget of descriptors was spent, or, without a count of creations,
    /// it could not be opened): only its number and name are known.
    Listed(Listed),
}

impl Slot {
    pub(super) fn id(&self) -> super::FileId {
        match self {
            Slot::Open(generation) => generation.id,
            Slot::Listed(listed) => listed.id,
        }
    }

    pub(super) fn path(&self) -> &std::path::Path {
        match self {
            Slot::Open(generation) => &generation.path,
            Slot::Listed(listed) => &listed.path,
        }
    }
}

/// A wanted file and its number.
pub(super) type WantedFile = (i64, Slot);

/// The wanted files of one look, oldest first.
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) numbering: Numbering,
    pub(super) files: Vec<WantedFile>,
}

/// What to open.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted<F> {
    /// Which numbers.
    pub(super) numbers: F,
    /// At most this many descriptors; further wanted files are only listed.
    pub(super) budget: usize,
    /// The number given to the oldest file of a look whose numbers nothing tells
    /// ([`Numbering::Unknown`]: every file listed is newer than every file held).
    pub(super) unknown_from: i64,
}

/// Looks and opens the wanted files, again while Docker rotates meanwhile. With a count of
/// creations, an answer is either confirmed or [`Numbering::Later`] (nothing opened).
pub(super) fn look_and_open<F: Fn(i64) -> bool>(
    looker: &mut Looker,
    held: &mut impl Held,
    wanted: &Wanted<F>,
) -> io::Result<Opened> {
    for attempt in 0..OPEN_RETRIES {
        let look = looker.look(held)?;
        let live = match look.numbering {
            Numbering::Live(live) => live,
            Numbering::Later => break,
            Numbering::Unknown => wanted.unknown_from + look.files.len() as i64 - 1,
        };
        let (files, complete) = open_wanted(&look, live, wanted)?;
        let last = attempt + 1 == OPEN_RETRIES;
        if complete && looker.unchanged_since(&look) || (last && looker.uncounted()) {
            if look.numbering == Numbering::Unknown {
                looker.numbered_as(live);
            }
            return Ok(Opened {
                numbering: look.numbering,
                files,
            });
        }
        std::thread::yield_now();
    }
    Ok(Opened {
        numbering: Numbering::Later,
        files: Vec::new(),
    })
}

/// Opens the wanted files of `look` (its live file numbered `live`). `false`: one of them
/// could not be opened (renamed or deleted since it was listed: the look is stale).
fn open_wanted<F: Fn(i64) -> bool>(
    look: &Look,
    live: i64,
    wanted: &Wanted<F>,
) -> io::Result<(Vec<WantedFile>, bool)> {
    let mut files = Vec::new();
    let mut budget = wanted.budget;
    let mut complete = true;
    for listed in &look.files {
        let number = live - i64::from(listed.index);
        if !(wanted.numbers)(number) {
            continue;
        }
        let slot = if budget > 0 {
            budget -= 1;
            match Generation::open(listed, number, 0)? {
                Some(generation) => Slot::Open(generation),
                None => {
                    complete = false;
                    Slot::Listed(listed.clone())
                }
            }
        } else {
            Slot::Listed(listed.clone())
        };
        files.push((number, slot));
    }
    Ok((files, complete))
}
