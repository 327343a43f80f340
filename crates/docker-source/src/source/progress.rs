//! What the container tasks learned that the checkpoint file must keep beyond the cursors: the
//! time through which a container is read (`read_through.rs`), and the stop after which a
//! container was read to its end. Both are recorded only once the pipeline acknowledged every
//! line they rely on, so a crash never makes the next start skip a line that was merely read.

use super::{SourceActor, fully_acknowledged};

impl SourceActor<'_> {
    /// Copies into the checkpoints what every monitored (or released, still draining)
    /// container's task read through and completed, as far as the acknowledged cursors cover
    /// it.
    pub(super) fn record_progress(&mut self) {
        let tasks = self.containers.values().chain(self.reload.released_tasks());
        for monitored in tasks {
            let shared = &monitored.shared;
            let id = &shared.id;
            let acked = self.checkpoints.get(id);
            if let Some(through) = shared
                .read_through()
                .acknowledged(&acked.unwrap_or_default())
            {
                self.checkpoints.advance_read_through(id, through);
            }
            // A completed task: the container stopped and its log was read to the end.
            if let Some(stop) = shared.completed_stop()
                && !shared.is_active()
                && fully_acknowledged(shared, acked)
            {
                self.checkpoints.set_drained(id, Some(stop));
            }
        }
    }
}
