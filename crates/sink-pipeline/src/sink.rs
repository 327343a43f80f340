//! The [`Sink`] trait every destination implements, and its error classification.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use capture_core::{BoxError, EventBatch};

/// Why a delivery failed, classified so the pipeline knows what to do with the batches.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination is unavailable for now (network, disk full, 5xx, 429): the pipeline
    /// keeps the batches (in its disk buffer) and retries with exponential backoff.
    #[error("delivery failed (will retry)")]
    Transient(#[source] BoxError),
    /// The destination cannot work as configured (permission denied, unsupported, 401): the
    /// sink is reported `failing` at once, the batches are kept, and retries continue at the
    /// longest backoff in case an operator fixes the cause.
    #[error("the sink cannot work as configured")]
    Permanent(#[source] BoxError),
    /// The destination refused these events themselves (for example too old or too large):
    /// retrying cannot help, so the pipeline drops them, counts and logs the drop, and goes on.
    #[error("the sink rejected the events (dropped)")]
    Rejected(#[source] BoxError),
}

impl SinkError {
    /// A [`SinkError::Transient`] from any error.
    pub fn transient(error: impl Into<BoxError>) -> Self {
        SinkError::Transient(error.into())
    }

    /// A [`SinkError::Transient`] whose destination asked to be retried no sooner than
    /// `delay` (HTTP `Retry-After`). The pipeline waits at least that long, at most its
    /// `retry.max_backoff`.
    pub fn transient_after(error: impl Into<BoxError>, delay: Duration) -> Self {
        SinkError::Transient(Box::new(RetryAfter {
            delay,
            source: error.into(),
        }))
    }

    /// The destination's retry hint of a transient error made by [`SinkError::transient_after`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Transient(source) => source
                .downcast_ref::<RetryAfter>()
                .map(|retry_after| retry_after.delay),
            _ => None,
        }
    }

    /// A [`SinkError::Permanent`] from any error.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        SinkError::Permanent(error.into())
    }

    /// A [`SinkError::Rejected`] from any error.
    pub fn rejected(error: impl Into<BoxError>) -> Self {
        SinkError::Rejected(error.into())
    }

    /// Classifies an I/O error: permission and read-only errors are permanent (an operator
    /// must act), everything else (disk full, interrupted, ...) transient.
    pub fn from_io(error: std::io::Error) -> Self {
        if io_error_is_permanent(&error) {
            SinkError::Permanent(Box::new(error))
        } else {
            SinkError::Transient(Box::new(error))
        }
    }

    /// Whether retrying the same delivery may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// A destination's request to wait before retrying, around the error it answered.
#[derive(Debug, thiserror::Error)]
#[error("the destination asked to wait {delay:?} before retrying")]
pub struct RetryAfter {
    delay: Duration,
    #[source]
    source: BoxError,
}

/// Whether an I/O error needs an operator (permissions, read-only file system) rather than time.
pub(crate) fn io_error_is_permanent(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem | ErrorKind::Unsupported
    )
}

/// A destination of log batches. See the crate documentation for the contract.
///
/// Implement it with `async fn`; the returned futures must be `Send`.
pub trait Sink: Send + fmt::Debug + 'static {
    /// Delivers `batches` (lines of one or more containers, in input order).
    ///
    /// `Ok` means the sink has *accepted* every line: it will not be lost if the process dies
    /// now (a file sink has written it to the kernel, or synced it if so configured; a network
    /// sink got a success answer). The pipeline then never passes these batches again, and may
    /// acknowledge them to the source. On `Err` the pipeline passes the *same* batches again
    /// later (possibly after a restart, from its disk buffer), so a failed call must leave no
    /// partial effect, or an effect the sink recognises and skips on the retry.
    ///
    /// The future may be dropped at the shutdown deadline; the batches then count as not
    /// delivered.
    fn deliver(
        &mut self,
        batches: &[EventBatch],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Pushes out anything the sink buffers internally. Called when the input goes idle and
    /// before the pipeline returns.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// The future of a boxed sink call.
pub(crate) type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// The object-safe form of [`Sink`], so the pipeline can hold sinks of different types.
pub(crate) trait DynSink: Send + fmt::Debug {
    fn deliver_boxed<'a>(&'a mut self, batches: &'a [EventBatch]) -> SinkFuture<'a>;
    fn flush_boxed(&mut self) -> SinkFuture<'_>;
}

impl<S: Sink> DynSink for S {
    fn deliver_boxed<'a>(&'a mut self, batches: &'a [EventBatch]) -> SinkFuture<'a> {
        Box::pin(self.deliver(batches))
    }

    fn flush_boxed(&mut self) -> SinkFuture<'_> {
        Box::pin(self.flush())
    }
}
