//! What `/health` reports, read from the supervisor and the status watches of the pipeline and
//! the Docker source (its connection and its unreadable containers). Reading never waits on the
//! data path.

use capture_core::status::{DockerSnapshot, SinkSnapshot, TaskSnapshot, UnreadableContainer};
use task_supervisor::Supervisor;
use tokio::sync::watch;

/// The binary's [`health_api::StatusSource`].
#[derive(Debug)]
pub(crate) struct AgentStatus {
    pub(crate) supervisor: Supervisor,
    pub(crate) sinks_rx: watch::Receiver<Vec<SinkSnapshot>>,
    pub(crate) docker_rx: watch::Receiver<DockerSnapshot>,
    pub(crate) unreadable_rx: watch::Receiver<Vec<UnreadableContainer>>,
}

impl health_api::StatusSource for AgentStatus {
    fn tasks(&self) -> Vec<TaskSnapshot> {
        self.supervisor.snapshot()
    }

    fn sinks(&self) -> Vec<SinkSnapshot> {
        self.sinks_rx.borrow().clone()
    }

    fn docker(&self) -> DockerSnapshot {
        self.docker_rx.borrow().clone()
    }

    fn unreadable(&self) -> Vec<UnreadableContainer> {
        self.unreadable_rx.borrow().clone()
    }
}
