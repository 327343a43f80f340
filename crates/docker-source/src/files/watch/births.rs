//! A directory's live-file creations, as the watcher reports them to a follower: how many
//! (so the follower can number generations it never saw), and each new live file opened the
//! moment its creation is read (so a follower that is slow to look still holds it).
//!
//! A file opened after its creation event was read is the generation that event created
//! unless Docker created another one before the open: the next read of the events tells
//! (another creation for the same directory was queued, or not). Only a file that read
//! confirms is handed to the follower, numbered by the count of creations. Two things can still
//! make that number wrong, and the follower allows for both (`tail/preopened.rs`):
//!
//! - the kernel makes a new file visible a moment before it queues its creation, so a file
//!   opened in that moment is the generation *after* the one its count names (never before,
//!   never further: Docker creates one file at a time, each after a rename);
//! - an overflow of the kernel's queue loses creations: a file whose creation was counted, or
//!   that was opened, across one carries no count ([`Preopened::count`] is `None`).

use std::{
    collections::VecDeque,
    fs::File,
    sync::{Arc, Mutex, PoisonError, atomic::Ordering},
};

use super::{Events, Interest, Shared};

/// Files opened ahead for a follower, at most (older ones are closed first: the follower
/// finds their generations by listing, or counts them lost).
const PREOPENED_KEPT: usize = 8;

/// How many live files Docker created in a directory since it was registered, and the ones
/// opened as they were created.
#[derive(Debug, Clone)]
pub(crate) struct Births {
    pub(super) events: Arc<Events>,
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) interest: Arc<Interest>,
}

/// A count of creations, valid to compare with another of the same `overflows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BirthCount {
    /// Live files created since the registration.
    pub(crate) created: u64,
    /// The kernel's queue overflows so far: a count taken across one may have missed some.
    pub(crate) overflows: u64,
}

/// A live file opened as it was created: the generation `count` created (or the one after it,
/// see the module documentation); `None` if the kernel's queue overflowed meanwhile.
#[derive(Debug)]
pub(crate) struct Preopened {
    pub(crate) count: Option<BirthCount>,
    pub(crate) file: File,
}

impl Births {
    /// Dispatches every event queued so far and returns the count of creations: every live
    /// file created before this call is counted. `None` if events can no longer be read.
    pub(crate) fn count(&self) -> Option<BirthCount> {
        if !self.events.drain(&self.shared) {
            return None;
        }
        Some(BirthCount {
            created: self.interest.created.load(Ordering::Acquire),
            overflows: self.events.overflows.load(Ordering::Acquire),
        })
    }

    /// The count of the container's first live file, if the count of creations starts there
    /// (registered when its directory was created, `early.rs`).
    pub(crate) fn first_count(&self) -> Option<BirthCount> {
        self.interest.first
    }

    /// Whether `count` is the container's first live file (see [`Births::first_count`]).
    pub(crate) fn is_first(&self, count: Option<BirthCount>) -> bool {
        count.is_some() && count == self.first_count()
    }

    /// Takes the live files opened as they were created (oldest first).
    pub(crate) fn take_preopened(&self) -> Vec<Preopened> {
        self.interest.preopened.take()
    }
}

#[cfg(test)]
impl Births {
    /// Hands the follower a file as the watcher does, under `count` (a test's stand-in for a
    /// creation the kernel reported late).
    pub(crate) fn push_preopened(&self, count: Option<BirthCount>, file: File) {
        self.interest.preopened.push(Preopened { count, file });
    }

    /// Counts an overflow of the kernel's queue, as reading one does.
    pub(crate) fn overflow(&self) {
        self.events.overflows.fetch_add(1, Ordering::AcqRel);
    }
}

/// The files opened ahead for one interest.
#[derive(Debug, Default)]
pub(super) struct PreopenQueue(Mutex<VecDeque<Preopened>>);

impl PreopenQueue {
    pub(super) fn push(&self, preopened: Preopened) {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() == PREOPENED_KEPT {
            queue.pop_front();
        }
        queue.push_back(preopened);
    }

    fn take(&self) -> Vec<Preopened> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        queue.drain(..).collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// The live files opened during one drain, awaiting the read that confirms them.
#[derive(Debug, Default)]
pub(super) struct Opening {
    pending: Vec<(Arc<Interest>, Preopened)>,
}

impl Opening {
    /// A batch of events was dispatched, creating a live file for each of `created`: a file
    /// opened before for one of them may be this newer one, or the one before (it was opened
    /// after its creation was read, and the next creation may have come before the open or
    /// after): its number is unknown, so it is dropped (the follower's next look lists it, or
    /// counts it lost), and each is opened now. `overflows`: the kernel's queue overflows
    /// counted before the batch was dispatched.
    pub(super) fn created(&mut self, mut created: Vec<Arc<Interest>>, overflows: u64) {
        if created.is_empty() {
            return;
        }
        self.pending
            .retain(|(interest, _)| !created.iter().any(|c| c.id == interest.id));
        created.sort_by_key(|interest| interest.id);
        created.dedup_by_key(|interest| interest.id);
        for interest in created {
            let count = Some(BirthCount {
                created: interest.created.load(Ordering::Acquire),
                overflows,
            });
            // Gone already (rotated again, or the container removed): the follower lists.
            if let Ok(file) = File::open(&interest.live) {
                self.pending.push((interest, Preopened { count, file }));
            }
        }
    }

    /// The kernel had no further event: every file opened is the one its creation made, unless
    /// the kernel's queue overflowed since its creation was counted (`overflows` now): a
    /// creation may have been lost before or after it, so its count says nothing.
    pub(super) fn confirm(self, overflows: u64) {
        for (interest, mut preopened) in self.pending {
            if preopened
                .count
                .is_some_and(|count| count.overflows != overflows)
            {
                preopened.count = None;
            }
            interest.preopened.push(preopened);
        }
    }
}
