//! Releasing a container the filters no longer accept (a configuration reload), and taking it
//! back when they accept it again.
//!
//! The source calls [`ContainerShared::release`]. A following task wakes at once (its pump
//! watches [`ContainerShared::released`]), sends the lines it has assembled, reads what Docker
//! has from its read position without `follow` (everything written up to now), sends that and
//! completes ([`Follower::finish_release`]). Its read position, and so the cursor once the
//! pipeline acknowledges, ends exactly after the last line it sent.
//!
//! If the filters accept the container again before the task has completed,
//! [`ContainerShared::revive`] clears the flag and the task goes on following from its read
//! position: nothing is lost or read twice. Once it has completed, the source starts a new task
//! instead. "Complete" and "revive" are both decided under the lifecycle lock, so exactly one of
//! them wins.

use std::sync::PoisonError;

use tracing::info;

use super::{ContainerShared, Follower};
use crate::Error;

impl ContainerShared {
    /// The filters no longer accept the container. Returns whether its task is active (it then
    /// drains and completes); an inactive container has nothing to drain.
    pub(crate) fn release(&self) -> bool {
        let lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.released_tx.send_replace(true);
        lifecycle.active
    }

    /// The filters accept the container again. Returns whether its task is still active (it
    /// then goes on following from its read position); `false` means it has completed and a new
    /// one must be started.
    pub(crate) fn revive(&self) -> bool {
        let lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.released_tx.send_replace(false);
        lifecycle.active
    }

    /// Whether the container is released.
    pub(crate) fn is_released(&self) -> bool {
        *self.released_tx.borrow()
    }

    /// Resolves once the container is released (at once if it is).
    pub(crate) async fn released(&self) {
        let mut released_rx = self.released_tx.subscribe();
        // The sender lives as long as `self`, so this only returns once the flag is set.
        let _ = released_rx.wait_for(|released| *released).await;
    }

    /// The task has drained a released container: it may complete unless the container was
    /// revived meanwhile.
    pub(crate) fn try_finish_release(&self) -> bool {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*self.released_tx.borrow() {
            return false;
        }
        lifecycle.active = false;
        lifecycle.rerun = false;
        true
    }
}

impl Follower {
    /// Called after a drain (a read without `follow`). If the container is released, flushes the
    /// partial lines, sends what is assembled and returns `true`: the task completes. Returns
    /// `false` when it is not released (or was revived meanwhile): the task goes on.
    pub(super) async fn finish_release(&mut self) -> Result<bool, Error> {
        if !self.env.shared.is_released() {
            return Ok(false);
        }
        self.finish_lines().await?;
        if !self.env.shared.try_finish_release() {
            return Ok(false);
        }
        info!(
            container_id = %self.env.shared.id,
            "container released by the filters; its log task read what Docker had and completed"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use capture_core::{ContainerId, ContainerInfo};

    use super::*;
    use crate::checkpoint::StreamPositions;

    fn shared() -> ContainerShared {
        let id = ContainerId::new("ab".repeat(32)).unwrap();
        ContainerShared::new(
            Arc::new(ContainerInfo::new(id, "web", "nginx")),
            StreamPositions::default(),
            None,
        )
    }

    #[test]
    fn an_inactive_container_has_nothing_to_drain() {
        let shared = shared();
        assert!(!shared.release());
        assert!(shared.is_released());
        assert!(!shared.revive());
        assert!(!shared.is_released());
    }

    #[test]
    fn a_released_task_completes_unless_revived_first() {
        let shared = shared();
        assert!(shared.request_run());
        assert!(shared.release(), "an active task drains");
        assert!(shared.try_finish_release());
        assert!(!shared.is_active());
        assert!(!shared.revive(), "a completed task must be started anew");

        let shared = self::shared();
        assert!(shared.request_run());
        assert!(shared.release());
        assert!(shared.revive(), "a task still draining goes on following");
        assert!(!shared.try_finish_release(), "the revival wins");
        assert!(shared.is_active());
    }

    #[tokio::test(start_paused = true)]
    async fn released_wakes_a_waiting_task() {
        let shared = Arc::new(shared());
        let waiter = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { shared.released().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        shared.release();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
