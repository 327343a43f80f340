//! Acknowledgements and the checkpoint file: cursors move only on acknowledgement; the file is
//! saved atomically on every checkpoint tick when dirty, and a destroyed container's entry is
//! dropped once its last batch is acknowledged (or after `DESTROYED_CHECKPOINT_GRACE`).

use capture_core::{Acknowledgement, ErrorChain};
use tokio::time::Instant;
use tracing::warn;

use super::{DESTROYED_CHECKPOINT_GRACE, SourceActor, fully_acknowledged, unix_nanos};
use crate::checkpoint::write_atomically;

impl SourceActor<'_> {
    /// Every `checkpoint_interval`: retries, bookkeeping, and the checkpoint file's save (its
    /// boundary moves only while the events stream is `connected`).
    pub(super) async fn checkpoint_tick(&mut self, connected: bool) {
        self.files.reap(&self.supervisor).await;
        self.reap_destroyed();
        self.retry_inspections().await;
        self.reload_tick().await;
        self.forget_acknowledged_destroyed(false);
        self.record_progress();
        if connected {
            self.see_daemon();
        }
        self.save_checkpoints().await;
    }

    /// The daemon is seen now: the checkpoint file's boundary may move here, unless a container
    /// is still waiting for its inspection (it is not monitored yet, so it has no entry).
    pub(super) fn see_daemon(&mut self) {
        if self.retry_inspect.is_empty() && self.retry_start.is_empty() {
            self.checkpoints.see_daemon(unix_nanos());
        }
    }

    pub(super) fn acknowledge(&mut self, ack: &Acknowledgement) {
        let id = &ack.container_id;
        if self.containers.contains_key(id)
            || self.destroyed.contains_key(id)
            || self.reload.is_released(id)
            || self.checkpoints.get(id).is_some()
        {
            self.checkpoints.acknowledge(ack);
            let acked = self.checkpoints.get(id).unwrap_or_default();
            if let Some(hint) = self.files.acknowledged(id, &acked) {
                self.checkpoints.set_file_hint(id, hint);
            }
        }
    }

    /// Drops the checkpoints of destroyed containers whose task has ended and whose last batch
    /// is acknowledged (or after a grace period: a batch a sink dropped is never acknowledged).
    pub(super) fn forget_acknowledged_destroyed(&mut self, all: bool) {
        let checkpoints = &mut self.checkpoints;
        self.destroyed.retain(|id, destroyed| {
            let Some(reaped_at) = destroyed.reaped_at.or(all.then(Instant::now)) else {
                return true;
            };
            let done = fully_acknowledged(&destroyed.monitored.shared, checkpoints.get(id));
            if done || all || reaped_at.elapsed() >= DESTROYED_CHECKPOINT_GRACE {
                checkpoints.remove(id);
                false
            } else {
                true
            }
        });
    }

    pub(super) async fn save_checkpoints(&mut self) {
        if !self.checkpoints.is_dirty() {
            return;
        }
        let (path, bytes) = self.checkpoints.snapshot();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(error = %ErrorChain(&error), "cannot save the checkpoints; will retry");
                self.checkpoints.mark_dirty();
            }
            Err(error) => {
                warn!(error = %ErrorChain(&error), "the checkpoint writer failed; will retry");
                self.checkpoints.mark_dirty();
            }
        }
    }
}
