//! A removed container: Docker deleted its directory, so only the descriptors held still have
//! its lines. The follower reads every generation its tail holds, and the live files the watcher
//! opened as Docker created them (`tail/preopened.rs`), to their end, then finishes.
//!
//! A follower that holds no tail yet (it never opened the files: the container was removed
//! before its task could look, or Docker rotated throughout its looks) builds one from the
//! files the watcher opened, if any. What Docker wrote before the oldest of them (everything,
//! if there is none) was never held: how much is unknown, so it is counted as one removal gap
//! (`stream_gaps_total{reason="removed"}`) and logged, as the source does for a container
//! removed before it could be inspected. Nothing was, if the oldest is the container's first
//! live file, opened by the watcher since its directory was created (`watch/early.rs`).

use std::io;

use super::{End, FileFollower};
use crate::{files::tail::Tail, removal};

impl FileFollower {
    /// The container was removed: read everything held to its end, then finish.
    pub(super) async fn drain_removed(&mut self) -> io::Result<End> {
        match &mut self.tail {
            Some(tail) => tail.removed()?,
            None => self.adopt_removed()?,
        }
        self.drain_and_finish().await
    }

    /// No tail: one of the files the watcher opened (see the module docs).
    fn adopt_removed(&mut self) -> io::Result<()> {
        let files = self.env.target.files.clone();
        let adopted = Tail::of_removed(files, self.births())?;
        if !adopted.as_ref().is_some_and(|(_, first)| *first) {
            let info = self.env.task.shared.info();
            removal::report_loss(info.id.as_str(), &info.name, 0, true);
        }
        let Some((tail, _)) = adopted else {
            return Ok(());
        };
        let read = self.reset_reading();
        self.decoder.reset(read);
        let mut tail = self.configure(tail);
        tail.removed()?;
        self.tail = Some(tail);
        Ok(())
    }
}
