//! Stream-worker threads: each one a current-thread tokio runtime that container tasks run on.
//!
//! A followed log stream delivers one frame per line. On a multi-thread runtime every frame
//! costs a cross-thread wake-up (hyper's connection task on one worker, the body's reader on
//! another), which dominates the CPU cost. Here the container's task, the connection it opens
//! and the decoder all live on one thread, and only whole batches cross threads.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{Error, Result};

/// One stream-worker thread.
#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Containers assigned to this worker, for least-loaded assignment.
    load: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// The stream-worker threads, joined when dropped (or by [`StreamWorkers::shutdown`]).
#[derive(Debug)]
pub(crate) struct StreamWorkers {
    workers: Vec<Worker>,
    /// Cancelling it ends every worker's `block_on`, which drops the tasks still on it.
    stop: CancellationToken,
}

/// A container's place on a worker; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    handle: Handle,
    load: Arc<AtomicUsize>,
}

impl WorkerSlot {
    /// The worker's runtime.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StreamWorkers {
    /// Starts `count` worker threads.
    pub(crate) fn start(count: usize) -> Result<StreamWorkers> {
        let stop = CancellationToken::new();
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("docker-stream-{index}"))
                .build()
                .map_err(Error::Worker)?;
            let handle = runtime.handle().clone();
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("docker-stream-{index}"))
                .spawn(move || {
                    runtime.block_on(stop.cancelled());
                    // Dropping the runtime here drops whatever tasks are left on it (none after
                    // an orderly shutdown: the source stops its container tasks first).
                    drop(runtime);
                })
                .map_err(Error::Worker)?;
            workers.push(Worker {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                thread: Some(thread),
            });
        }
        Ok(StreamWorkers { workers, stop })
    }

    /// The workers' runtimes (for runtime metrics).
    pub(crate) fn handles(&self) -> Vec<Handle> {
        self.workers.iter().map(|w| w.handle.clone()).collect()
    }

    /// A place on the least-loaded worker.
    pub(crate) fn assign(&self) -> WorkerSlot {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("at least one stream worker (validated)");
        worker.load.fetch_add(1, Ordering::Relaxed);
        WorkerSlot {
            handle: worker.handle.clone(),
            load: worker.load.clone(),
        }
    }

    /// Stops the runtimes and joins the threads (blocking: call it off the async threads or at
    /// the very end).
    pub(crate) fn shutdown(&mut self) {
        self.stop.cancel();
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take()
                && thread.join().is_err()
            {
                warn!("a stream worker thread panicked");
            }
        }
    }
}

impl Drop for StreamWorkers {
    fn drop(&mut self) {
        self.shutdown();
    }
}
