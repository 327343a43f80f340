//! A file follower whose container the filters no longer accept (a configuration reload), as
//! the API path does it (`stream/release.rs`): it reads the files to the end of what is written
//! at the moment of the release, sends that with the lines it holds (the partial line, the open
//! multiline events), and completes. Its read position, and so the cursor once the pipeline
//! acknowledges, ends exactly after the last line it sent.
//!
//! If the filters accept the container again before the follower completes
//! ([`ContainerShared::revive`](crate::stream::ContainerShared::revive)), it goes on following
//! from where it is: nothing is lost or read twice. "Complete" and "revive" are decided under
//! the container's lifecycle lock, so exactly one of them wins.

use std::io;

use tracing::info;

use super::{End, FileFollower};
use crate::files::tail::FileId;

/// Where a release's drain stops: the live file and its size at the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DrainMark {
    file: FileId,
    len: u64,
}

impl FileFollower {
    /// Whether the filters released the container.
    pub(super) fn is_released(&self) -> bool {
        self.env.task.shared.is_released()
    }

    /// Whether a drain has read to its mark: the task is in the file that was live at the
    /// release, at or past the size it had.
    pub(super) fn reached_drain_mark(&self) -> bool {
        let (Some(mark), Some(tail)) = (self.drain_mark, &self.tail) else {
            return false;
        };
        let (file, offset) = tail.position();
        file == mark.file && offset >= mark.len
    }

    /// The container is released: reads what is written now, sends it and completes
    /// (`Some(End::Released)`); `None` when it was taken back meanwhile (following goes on).
    pub(super) async fn drain_release(&mut self) -> io::Result<Option<End>> {
        self.drain_mark = std::fs::metadata(self.env.target.files.live())
            .ok()
            .map(|metadata| DrainMark {
                file: FileId::of(&metadata),
                len: metadata.len(),
            });
        let read = self.read_available().await;
        self.drain_mark = None;
        if let Some(end) = read? {
            return Ok(Some(end));
        }
        if !self.is_released() {
            return Ok(None);
        }
        self.flush_all_lines();
        if let Err(end) = self.send_batch().await {
            return Ok(Some(end));
        }
        Ok(self.complete_release())
    }

    /// Completes a released task unless it was taken back meanwhile.
    pub(super) fn complete_release(&self) -> Option<End> {
        if !self.env.task.shared.try_finish_release() {
            return None;
        }
        info!(
            container_id = %self.env.task.shared.id,
            "container released by the filters; its log task read what its files had and completed"
        );
        Some(End::Released)
    }
}
