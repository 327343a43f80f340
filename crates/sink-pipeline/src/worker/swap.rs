//! Replacing a worker's sink when a reload changes its settings.
//!
//! The reload puts a [`Replacement`] in the worker's [`Mailbox`] (a newer one supersedes one not
//! taken yet). The worker takes it between two deliveries, never during one: it flushes the old
//! sink, drops it, and installs the new one with the new buffer and retry settings. Its queue,
//! the deliveries it holds and its disk buffer stay as they are, so every delivery goes to
//! exactly one of the two sinks, in order: the old one has every delivery it accepted, the new
//! one gets the rest.
//!
//! A file sink that keeps its path is built here, after the old one is closed, so the file never
//! has two writers and the new one recovers its high-water marks from the complete file. If it
//! cannot be built, the sink turns `retrying` and tries again at its backoff, like a failed
//! delivery, while its deliveries wait in its disk buffer.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use capture_core::{ErrorChain, EventBatch, status::SinkState};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{SinkOptions, SinkWorker, WorkerState};
use crate::{
    config::SinkConfig,
    open::build_sink,
    sink::{DynSink, SinkError, SinkFuture},
};

/// How long the old sink may take to flush when it is replaced.
const REPLACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A sink's new settings, and the sink built from them (or to build).
#[derive(Debug)]
pub(crate) struct Replacement {
    pub(crate) options: SinkOptions,
    pub(crate) sink: ReplacementSink,
}

/// The new sink of a [`Replacement`].
#[derive(Debug)]
pub(crate) enum ReplacementSink {
    /// Built by the reload.
    Opened(Box<dyn DynSink>),
    /// Built by the worker once the old sink is closed (a file sink keeping its path).
    Deferred(Box<SinkConfig>),
}

/// Where a reload leaves a replacement for a worker: the latest wins.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    slot: Mutex<Option<Replacement>>,
    notify: Notify,
}

impl Mailbox {
    /// Leaves a replacement (dropping one the worker has not taken yet) and wakes the worker.
    pub(crate) fn put(&self, replacement: Replacement) {
        let superseded = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(replacement);
        // Dropped outside the lock: a sink's drop may take a moment (a file sink joins its
        // compression thread).
        drop(superseded);
        self.notify.notify_one();
    }

    /// The replacement waiting, if any.
    pub(crate) fn take(&self) -> Option<Replacement> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Resolves when a replacement may have arrived (possibly spuriously: check with `take`).
    pub(crate) async fn ready(&self) {
        self.notify.notified().await;
    }
}

/// The worker's sink: open, or to be built from its configuration at the next use.
#[derive(Debug)]
pub(crate) struct SinkSlot {
    sink: Option<Box<dyn DynSink>>,
    /// The configuration and the sink's name.
    config: Option<(SinkConfig, String)>,
}

/// A sink slot with neither a sink nor a configuration (never built; reported, not a panic).
#[derive(Debug, thiserror::Error)]
#[error("the sink has no configuration to be built from")]
struct NoSink;

impl SinkSlot {
    pub(crate) fn open(sink: Box<dyn DynSink>) -> SinkSlot {
        SinkSlot {
            sink: Some(sink),
            config: None,
        }
    }

    fn deferred(config: SinkConfig, name: String) -> SinkSlot {
        SinkSlot {
            sink: None,
            config: Some((config, name)),
        }
    }

    /// Builds the sink if it is not built yet.
    fn ensure_open(&mut self) -> Result<&mut Box<dyn DynSink>, SinkError> {
        if self.sink.is_none() {
            let (config, name) = self
                .config
                .as_ref()
                .ok_or_else(|| SinkError::permanent(NoSink))?;
            self.sink = Some(build_sink(config, name)?);
        }
        self.sink
            .as_mut()
            .ok_or_else(|| SinkError::permanent(NoSink))
    }

    /// Delivers through the sink, building it first if needed (a failure to build is a failed
    /// delivery).
    pub(crate) fn deliver_boxed<'a>(&'a mut self, batches: &'a [EventBatch]) -> SinkFuture<'a> {
        Box::pin(async move { self.ensure_open()?.deliver_boxed(batches).await })
    }

    /// Flushes the sink; nothing to do if it was never built.
    pub(crate) fn flush_boxed(&mut self) -> SinkFuture<'_> {
        match &mut self.sink {
            Some(sink) => sink.flush_boxed(),
            None => Box::pin(async { Ok(()) }),
        }
    }
}

impl SinkWorker {
    /// Swaps in a replacement (see the module documentation).
    pub(super) async fn replace(&mut self, replacement: Replacement) {
        let Replacement { options, sink } = replacement;
        match tokio::time::timeout(REPLACE_FLUSH_TIMEOUT, self.sink.flush_boxed()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(sink = %self.state.name, error = %ErrorChain(&error), "replaced sink failed to flush");
            }
            Err(_) => warn!(sink = %self.state.name, "replaced sink did not flush in time"),
        }
        // The old sink is dropped here, before the new one is built.
        self.sink = match sink {
            ReplacementSink::Opened(sink) => SinkSlot::open(sink),
            ReplacementSink::Deferred(config) => SinkSlot::deferred(*config, options.name.clone()),
        };
        self.state.reconfigure(&options);
        info!(sink = %self.state.name, kind = %options.kind, "sink replaced with its new settings");
        if let Err(error) = self.sink.ensure_open() {
            self.state.mark_failure(&error);
        }
    }
}

impl WorkerState {
    /// Takes a replacement's settings; its predecessor's failures say nothing about it.
    fn reconfigure(&mut self, options: &SinkOptions) {
        self.retry = options.retry.clone();
        self.buffer.set_config(&options.buffer);
        self.snapshot.kind = options.kind.clone();
        self.attempt = 0;
        self.retry_at = None;
        self.failing_since = None;
        self.snapshot.state = SinkState::Ok;
        self.snapshot.failing_since = None;
        self.snapshot.last_error = None;
    }
}
