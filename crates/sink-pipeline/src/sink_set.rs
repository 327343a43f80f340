//! The sinks a running pipeline delivers to, and the changes a reload makes to them.
//!
//! Every sink has one worker task (owned by the set's `JoinSet`), a bounded queue from the
//! dispatcher, a mailbox for a replacement sink, and a stop token (a child of the pipeline's hard
//! stop). A reload:
//!
//! - *adds* a sink: the dispatcher hands it every delivery from the next one on (a delivery that
//!   was already collected counted only the sinks of its time, so none waits for the newcomer);
//! - *replaces* a sink whose settings changed: the new one goes into the worker's mailbox and the
//!   worker swaps it in between two deliveries, keeping its queue and disk buffer, so nothing is
//!   skipped or passed twice (`worker/swap.rs`);
//! - *retires* a removed sink: its queue is closed, so its worker delivers what it holds (or
//!   spills it to its disk buffer while the sink fails), flushes and returns. A worker still
//!   running [`RETIRE_GRACE`] later is hard-stopped: what it holds goes to its disk buffer. So a
//!   removed sink holds acknowledgements for at most that long. Its disk buffer directory stays;
//!   a sink of the same name added later replays it first.

use std::{collections::HashMap, sync::Arc, time::Duration};

use capture_core::status::SinkSnapshot;
use tokio::{
    sync::{mpsc, watch},
    task::{self, JoinError, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    error::Error,
    pipeline::sleep_until,
    worker::{Delivery, Mailbox, PreparedSink, Replacement, SINK_QUEUE_CAPACITY, SinkWorker},
};

/// How long a removed sink may take to deliver what it holds before it is hard-stopped.
pub(crate) const RETIRE_GRACE: Duration = Duration::from_secs(10);

/// A sink the dispatcher delivers to.
#[derive(Debug)]
struct Destination {
    /// Stable for the set's life, unlike positions in the list.
    id: u64,
    name: String,
    /// Dropping it closes the worker's input: that is how a sink is retired.
    queue_tx: mpsc::Sender<Arc<Delivery>>,
    mailbox: Arc<Mailbox>,
    stop: CancellationToken,
    /// Set when retired, so the worker's snapshot leaves `/health` when it returns.
    retired: CancellationToken,
    /// Cancelled when the worker has returned (or panicked).
    done: CancellationToken,
}

/// A removed sink whose worker may still be finishing.
#[derive(Debug)]
struct Retiree {
    name: String,
    stop: CancellationToken,
    done: CancellationToken,
    deadline: Instant,
}

/// The running sinks; see the module documentation.
#[derive(Debug)]
pub(crate) struct SinkSet {
    destinations: Vec<Destination>,
    retiring: Vec<Retiree>,
    workers: JoinSet<()>,
    task_names: HashMap<task::Id, String>,
    /// The first worker panic, reported when the pipeline returns.
    panicked: Option<Error>,
    status_tx: Arc<watch::Sender<Vec<SinkSnapshot>>>,
    hard_stop: CancellationToken,
    next_id: u64,
}

impl SinkSet {
    pub(crate) fn new(
        status_tx: Arc<watch::Sender<Vec<SinkSnapshot>>>,
        hard_stop: CancellationToken,
    ) -> SinkSet {
        SinkSet {
            destinations: Vec::new(),
            retiring: Vec::new(),
            workers: JoinSet::new(),
            task_names: HashMap::new(),
            panicked: None,
            status_tx,
            hard_stop,
            next_id: 0,
        }
    }

    /// How many sinks a delivery goes to.
    pub(crate) fn len(&self) -> usize {
        self.destinations.len()
    }

    /// The sinks a delivery made now goes to.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.destinations.iter().map(|d| d.id).collect()
    }

    /// A sink's queue and name, unless it was retired.
    pub(crate) fn queue(&self, id: u64) -> Option<(&mpsc::Sender<Arc<Delivery>>, &str)> {
        self.destinations
            .iter()
            .find(|d| d.id == id)
            .map(|d| (&d.queue_tx, d.name.as_str()))
    }

    /// Starts a sink's worker. `publish`: add its snapshot to the status list (a sink added by a
    /// reload; those of [`Pipeline::new`](crate::Pipeline::new) are listed already).
    pub(crate) fn start(&mut self, prepared: PreparedSink, publish: bool) {
        if publish {
            let snapshot = prepared.snapshot.clone();
            self.status_tx.send_modify(|sinks| sinks.push(snapshot));
        }
        let (queue_tx, queue_rx) = mpsc::channel(SINK_QUEUE_CAPACITY);
        let mailbox = Arc::new(Mailbox::default());
        let (stop, retired, done) = (
            self.hard_stop.child_token(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let name = prepared.options.name.clone();
        let worker = SinkWorker::new(
            prepared,
            queue_rx,
            Arc::clone(&mailbox),
            Arc::clone(&self.status_tx),
        );
        let status_tx = Arc::clone(&self.status_tx);
        let (worker_stop, worker_retired, done_guard) =
            (stop.clone(), retired.clone(), done.clone().drop_guard());
        let worker_name = name.clone();
        let handle = self.workers.spawn(async move {
            // Cancels `done` however the worker ends, a panic included.
            let _done = done_guard;
            worker.run(worker_stop).await;
            if worker_retired.is_cancelled() {
                status_tx.send_modify(|sinks| sinks.retain(|sink| sink.name != worker_name));
            }
        });
        self.task_names.insert(handle.id(), name.clone());
        self.next_id += 1;
        self.destinations.push(Destination {
            id: self.next_id,
            name,
            queue_tx,
            mailbox,
            stop,
            retired,
            done,
        });
    }

    /// Retires a sink (see the module documentation); returns the token its end cancels.
    pub(crate) fn retire(&mut self, name: &str) -> Option<CancellationToken> {
        let at = self.destinations.iter().position(|d| d.name == name)?;
        let destination = self.destinations.remove(at);
        destination.retired.cancel();
        info!(sink = %name, "sink removed by a reload; it delivers what it holds, then stops");
        // Dropping `queue_tx` here closes the worker's input.
        let Destination {
            name, stop, done, ..
        } = destination;
        self.retiring.push(Retiree {
            name,
            stop,
            done: done.clone(),
            deadline: Instant::now() + RETIRE_GRACE,
        });
        Some(done)
    }

    /// Hands a sink its replacement; returns `false` if there is no such sink.
    pub(crate) fn replace(&mut self, name: &str, replacement: Replacement) -> bool {
        match self.destinations.iter().find(|d| d.name == name) {
            Some(destination) => {
                destination.mailbox.put(replacement);
                true
            }
            None => false,
        }
    }

    /// The next hard-stop deadline of a retiring sink.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.retiring
            .iter()
            .filter(|retiree| !retiree.stop.is_cancelled())
            .map(|retiree| retiree.deadline)
            .min()
    }

    /// Hard-stops the retiring sinks past their deadline and forgets those that have ended.
    pub(crate) fn stop_overdue(&mut self) {
        let now = Instant::now();
        self.retiring.retain(|retiree| !retiree.done.is_cancelled());
        for retiree in &self.retiring {
            if now >= retiree.deadline && !retiree.stop.is_cancelled() {
                warn!(
                    sink = %retiree.name,
                    grace = ?RETIRE_GRACE,
                    "removed sink still busy; persisting what it holds to its disk buffer"
                );
                retiree.stop.cancel();
            }
        }
    }

    /// The next worker to end, while the pipeline runs (retired ones, or one that panicked).
    pub(crate) async fn next_exit(&mut self) -> Option<Result<(task::Id, ()), JoinError>> {
        self.workers.join_next_with_id().await
    }

    /// Records how a worker ended.
    pub(crate) fn on_exit(&mut self, exit: Result<(task::Id, ()), JoinError>) {
        match exit {
            Ok((id, ())) => {
                self.task_names.remove(&id);
            }
            Err(source) => {
                let sink = self.task_names.remove(&source.id()).unwrap_or_default();
                error!(sink = %sink, error = %source, "sink worker panicked");
                self.panicked
                    .get_or_insert(Error::WorkerPanicked { sink, source });
            }
        }
        self.retiring.retain(|retiree| !retiree.done.is_cancelled());
    }

    /// Closes every queue and waits for every worker (hard-stopping retiring ones at their
    /// deadline, as while running); returns the first panic.
    pub(crate) async fn join_all(mut self) -> Option<Error> {
        self.destinations.clear();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                exit = self.workers.join_next_with_id() => match exit {
                    Some(exit) => self.on_exit(exit),
                    None => break,
                },
                () = sleep_until(deadline), if deadline.is_some() => self.stop_overdue(),
            }
        }
        self.panicked
    }
}
