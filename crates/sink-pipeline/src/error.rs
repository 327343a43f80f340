//! The crate's error type.

use std::path::PathBuf;

use crate::sink::SinkError;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the pipeline could not be built or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (permanent: fix the configuration).
    #[error("invalid pipeline configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A sink could not be opened.
    #[error("cannot open sink {sink:?}")]
    SinkOpen {
        /// The sink's name.
        sink: String,
        /// Why.
        #[source]
        source: SinkError,
    },
    /// A sink's disk buffer could not be opened.
    #[error("cannot open the disk buffer of sink {sink:?} at {}", path.display())]
    BufferOpen {
        /// The sink's name.
        sink: String,
        /// The buffer's directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `run` was called on a pipeline without any sink, which would acknowledge lines that
    /// nothing delivered.
    #[error("the pipeline has no sink")]
    NoSinks,
    /// A sink's worker task panicked.
    #[error("the worker of sink {sink:?} panicked")]
    WorkerPanicked {
        /// The sink's name.
        sink: String,
        /// The join error carrying the panic.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A reload could not be applied because the pipeline has stopped.
    #[error("the pipeline is not running")]
    NotRunning,
    /// A reload adds a sink in the place (name or file) of one an earlier reload removed, and
    /// that one has not finished yet.
    #[error("sink {sink:?}, removed by an earlier reload, is still finishing; try again")]
    SinkStopping {
        /// The removed sink's name.
        sink: String,
    },
    /// A sink's worker stopped taking batches while the input was still open.
    #[error("the worker of sink {sink:?} stopped while the input was open")]
    WorkerGone {
        /// The sink's name.
        sink: String,
    },
}

impl Error {
    /// Whether running the pipeline again (a supervisor restart) may succeed.
    ///
    /// Configuration errors are permanent; opening a sink or buffer, and a worker's failure,
    /// may be fixed by the environment (a directory created, a disk freed).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Config { .. } | Error::NoSinks => false,
            Error::SinkOpen { source, .. } => source.is_transient(),
            Error::BufferOpen { .. }
            | Error::WorkerPanicked { .. }
            | Error::WorkerGone { .. }
            | Error::NotRunning
            | Error::SinkStopping { .. } => true,
        }
    }
}
