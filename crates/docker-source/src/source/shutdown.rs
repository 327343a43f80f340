//! Shutdown: stop every container task, keep consuming acknowledgements until the pipeline
//! closes the channel, and save the checkpoints one last time.

use capture_core::Acknowledgement;
use futures_util::future::join_all;
use tokio::{sync::mpsc, time::MissedTickBehavior};
use tracing::info;

use super::{Monitored, SourceActor};
use crate::{Error, Result, checkpoint::write_atomically};

impl SourceActor<'_> {
    /// Stops every container task, drains the acknowledgements until the pipeline closes the
    /// channel, and saves the checkpoints.
    pub(super) async fn shut_down(
        &mut self,
        ack_rx: &mut mpsc::UnboundedReceiver<Acknowledgement>,
    ) -> Result<()> {
        // Destroyed containers' tasks that still drain are stopped too.
        let monitored: Vec<&Monitored> = self
            .containers
            .values()
            .chain(self.destroyed.values().map(|d| &d.monitored))
            .chain(self.reload.released_tasks())
            .collect();
        // A draining file task is among the destroyed ones; listed again in case.
        let mut task_ids: Vec<String> = monitored
            .iter()
            .map(|m| m.task_id.clone())
            .chain(self.files.draining_task_ids().map(str::to_owned))
            .collect();
        task_ids.sort_unstable();
        task_ids.dedup();
        let supervisor = self.supervisor.clone();
        join_all(task_ids.iter().map(|id| supervisor.stop(id))).await;
        for monitored in monitored {
            self.supervisor.remove(&monitored.task_id);
            monitored.shared.mark_inactive();
        }
        self.update_gauge();
        // With every task stopped, this was the last sender the source holds: the pipeline sees
        // the channel close once it has drained it.
        self.batch_tx = None;
        info!(
            containers = task_ids.len(),
            "log tasks stopped; waiting for the pipeline's last acknowledgements"
        );
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ack = ack_rx.recv() => match ack {
                    Some(ack) => self.acknowledge(&ack),
                    None => break,
                },
                _ = checkpoint_tick.tick() => self.save_checkpoints().await,
            }
        }
        self.forget_acknowledged_destroyed(false);
        self.record_progress();
        if self.checkpoints.is_dirty() {
            let (path, bytes) = self.checkpoints.snapshot();
            tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
                .await
                .map_err(|e| Error::Checkpoint {
                    path: self.checkpoints.path().to_owned(),
                    source: std::io::Error::other(e),
                })??;
        }
        info!("Docker source stopped; checkpoints saved");
        Ok(())
    }
}
