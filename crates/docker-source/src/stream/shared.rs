//! What the source and a container's task share, outliving the task's attempts: the metadata,
//! the read position of each stream (the resume point of an in-process reopen), whether the task
//! is meant to run, the removal and release signals, and the stops the task saw.

use std::sync::{Arc, Mutex, PoisonError};

use capture_core::{ContainerId, ContainerInfo};
use tokio::sync::watch;

use crate::{checkpoint::StreamPositions, read_through::ReadThrough, removal::Removal};

/// What the source and a container's task share; outlives the task's attempts.
#[derive(Debug)]
pub(crate) struct ContainerShared {
    pub(crate) id: ContainerId,
    /// The current metadata: replaced (a new `Arc`) on rename. Batches started afterwards use it.
    info: Mutex<Arc<ContainerInfo>>,
    /// The last line sent into the pipeline, per stream: the resume point of an in-process
    /// reopen.
    read: Mutex<StreamPositions>,
    /// Where reading started (checkpoint or `read_from`): a stream whose read position is still
    /// this has sent nothing.
    initial_resume: StreamPositions,
    pub(super) lifecycle: Mutex<Lifecycle>,
    /// Set when the container is removed: the task drains its stream, then ends.
    pub(crate) removal: Removal,
    /// Whether the filters released the container (a `watch`, so a following task wakes at
    /// once). Changed only under the `lifecycle` lock; see `stream/release.rs`.
    pub(super) released_tx: watch::Sender<bool>,
    /// Through when every line, whatever its stream, was sent (see `read_through.rs`).
    read_through: Mutex<ReadThrough>,
    /// What the task saw of the container's stops (see [`Stops`]).
    stops: Mutex<Stops>,
}

/// The container's `State.FinishedAt` as the task saw it, in nanoseconds.
#[derive(Debug, Default, Clone, Copy)]
struct Stops {
    /// At the task's last inspection.
    observed: Option<i64>,
    /// When the task last completed: it read everything up to this stop.
    completed: Option<i64>,
}

/// Whether the container's task is meant to be running, and whether it was asked to look at the
/// container again before ending.
#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    pub(super) active: bool,
    pub(super) rerun: bool,
}

impl ContainerShared {
    pub(crate) fn new(
        info: Arc<ContainerInfo>,
        resume: StreamPositions,
        read_through_nanos: Option<i64>,
    ) -> ContainerShared {
        ContainerShared {
            id: info.id.clone(),
            info: Mutex::new(info),
            read: Mutex::new(resume),
            initial_resume: resume,
            lifecycle: Mutex::new(Lifecycle::default()),
            removal: Removal::default(),
            released_tx: watch::Sender::new(false),
            read_through: Mutex::new(ReadThrough::new(read_through_nanos)),
            stops: Mutex::new(Stops::default()),
        }
    }

    /// The read-through times (see `read_through.rs`).
    pub(crate) fn read_through(&self) -> ReadThrough {
        *self
            .read_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything decoded was sent and no partial line is held.
    pub(crate) fn caught_up(&self) {
        let read = self.read_positions();
        self.read_through
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .caught_up(&read);
    }

    /// The task inspected the container and saw this `State.FinishedAt`.
    pub(crate) fn observe_finished_at(&self, finished_at_nanos: Option<i64>) {
        self.stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observed = finished_at_nanos;
    }

    /// The `State.FinishedAt` of the stop the task last read to its end, if it completed since
    /// it was last started.
    pub(crate) fn completed_stop(&self) -> Option<i64> {
        self.stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .completed
    }

    pub(crate) fn info(&self) -> Arc<ContainerInfo> {
        self.info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the metadata if it changed; returns whether it did.
    pub(crate) fn set_info(&self, info: ContainerInfo) -> bool {
        let mut current = self.info.lock().unwrap_or_else(PoisonError::into_inner);
        if **current == info {
            return false;
        }
        *current = Arc::new(info);
        true
    }

    pub(crate) fn initial_resume(&self) -> &StreamPositions {
        &self.initial_resume
    }

    /// Whether the container's task is meant to be running.
    pub(crate) fn is_active(&self) -> bool {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .active
    }

    pub(crate) fn read_positions(&self) -> StreamPositions {
        *self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn advance_read(&self, sent: &StreamPositions) {
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, sent) in read.values_mut().zip(sent.values()) {
            if let Some(sent) = sent
                && slot.is_none_or(|current| *sent > current)
            {
                *slot = Some(*sent);
            }
        }
    }

    /// The source asks for the container's logs to be followed (it started, or was found
    /// running). Returns `true` if the caller must spawn the task; `false` if the task is
    /// active and will look at the container again before it ends.
    pub(crate) fn request_run(&self) -> bool {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.stops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .completed = None;
        if lifecycle.active {
            lifecycle.rerun = true;
            false
        } else {
            lifecycle.active = true;
            lifecycle.rerun = false;
            true
        }
    }

    /// The task was stopped or removed by the source, or failed for good.
    pub(crate) fn mark_inactive(&self) {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        lifecycle.active = false;
        lifecycle.rerun = false;
    }

    pub(crate) fn mark_active(&self) {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .active = true;
    }

    /// The task wants to end: it may unless a run was requested since it last looked.
    pub(crate) fn try_finish(&self) -> bool {
        let mut lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if lifecycle.rerun {
            lifecycle.rerun = false;
            false
        } else {
            lifecycle.active = false;
            let mut stops = self.stops.lock().unwrap_or_else(PoisonError::into_inner);
            stops.completed = stops.observed;
            true
        }
    }
}
