//! What the disk buffer has appended but not yet made durable, under `fsync = "always"`.
//!
//! A delivery counts as done (and may be acknowledged) once it is durably in the buffer. Appends
//! go to the newest segment; when it fills, a new one is started while the full one may still hold
//! appends that were never synced. Those segments are kept here until the next sync, which syncs
//! them before the current one: no record counts as durable while the segment it was written to
//! is only in the page cache.

use std::{fs::File, io};

/// Appends not yet synced: segments closed by a roll-over, and whether the current one has any.
#[derive(Debug, Default)]
pub(super) struct PendingSync {
    /// Segments (id, file) closed while holding unsynced appends, oldest first.
    rolled: Vec<(u64, File)>,
    /// Whether the segment being written holds unsynced appends.
    writer_dirty: bool,
}

impl PendingSync {
    /// The segment being written got an append.
    pub(super) fn appended(&mut self) {
        self.writer_dirty = true;
    }

    /// The segment `id` is closed for appends; its file is kept for the next sync if it holds
    /// unsynced appends and `keep` (the policy syncs at all).
    pub(super) fn retire(&mut self, id: u64, file: File, keep: bool) {
        if std::mem::take(&mut self.writer_dirty) && keep {
            self.rolled.push((id, file));
        }
    }

    /// The segment being written was deleted: nothing in it needs syncing.
    pub(super) fn forget_writer(&mut self) {
        self.writer_dirty = false;
    }

    /// Syncs the closed segments, oldest first, then `writer` if it holds unsynced appends. A
    /// failure keeps what is still unsynced for the next call.
    pub(super) fn sync(&mut self, writer: Option<&File>) -> io::Result<()> {
        while let Some((_, file)) = self.rolled.first() {
            file.sync_data()?;
            self.rolled.remove(0);
        }
        if let (Some(writer), true) = (writer, self.writer_dirty) {
            writer.sync_data()?;
        }
        self.writer_dirty = false;
        Ok(())
    }

    /// The ids of the segments with unsynced appends; `writer_id` is the segment being written.
    #[cfg(test)]
    pub(super) fn segments(&self, writer_id: Option<u64>) -> Vec<u64> {
        let mut ids: Vec<u64> = self.rolled.iter().map(|(id, _)| *id).collect();
        if self.writer_dirty {
            ids.extend(writer_id);
        }
        ids
    }
}
