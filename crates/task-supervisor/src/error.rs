//! Errors: [`Error`] for the supervisor's own API, [`TaskError`] for what a task body returns.

use std::error::Error as StdError;
use std::fmt;

use capture_core::BoxError;

/// The supervisor's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the supervisor refused a request.
///
/// Both variants are permanent for the request as made: retrying the same call at once gives the
/// same answer. [`Error::AlreadyRunning`] clears once the live task ends or is stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A task with this id is running or restarting.
    #[error("task {0} is already running")]
    AlreadyRunning(String),
    /// [`Supervisor::shutdown`](crate::Supervisor::shutdown) has begun: no new tasks are accepted.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

/// The error a task body returns, classified as transient (restarted by the default policy) or
/// permanent (never restarted: the task ends `failed`).
///
/// `TaskError` deliberately does not implement [`std::error::Error`], so that any error (and any
/// `String` or `&str`) converts into it with `?`, as transient.
#[derive(Debug)]
pub struct TaskError {
    error: BoxError,
    permanent: bool,
}

impl TaskError {
    /// An error worth retrying: the restart policy applies.
    pub fn transient(error: impl Into<BoxError>) -> TaskError {
        TaskError {
            error: error.into(),
            permanent: false,
        }
    }

    /// An error that a restart cannot fix (bad configuration, a container that no longer
    /// exists): the task ends `failed` whatever its restart policy.
    pub fn permanent(error: impl Into<BoxError>) -> TaskError {
        TaskError {
            error: error.into(),
            permanent: true,
        }
    }

    /// Whether the error is permanent.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// Unwraps the underlying error.
    pub fn into_error(self) -> BoxError {
        self.error
    }
}

impl<E: Into<BoxError>> From<E> for TaskError {
    fn from(error: E) -> TaskError {
        TaskError::transient(error)
    }
}

/// Shows the whole chain, `outer: cause: root cause`, because `last_error` in `/health` is often
/// the only place an operator sees it.
impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", capture_core::ErrorChain(&*self.error))
    }
}
