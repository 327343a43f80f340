//! The crate's one error type, classified transient or permanent.

use std::{io, path::PathBuf};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the Docker source.
///
/// [`Error::is_transient`] tells a caller whether retrying the same operation later may succeed
/// (a daemon that is restarting) or not (a bad configuration, a container that is gone).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[docker]` setting is invalid.
    #[error("invalid setting docker.{key}: {reason}")]
    Config {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A name or image glob does not compile.
    #[error("invalid glob {pattern:?} in docker.{key}")]
    Glob {
        /// The key the glob belongs to.
        key: &'static str,
        /// The glob as written.
        pattern: String,
        /// Why it does not compile.
        #[source]
        source: globset::Error,
    },
    /// A `[[docker.multiline]]` rule is invalid.
    #[error("invalid setting docker.multiline[{index}].{key}: {reason}")]
    Multiline {
        /// The rule's index in the `[[docker.multiline]]` array.
        index: usize,
        /// The offending key of the rule.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
        /// The underlying error (a regular expression or a glob that does not compile).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The Docker client could not be built from the configured host (bad address, TLS files).
    #[error("cannot set up a Docker client for {host}")]
    Client {
        /// The configured host.
        host: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The daemon could not be reached over TLS: a CA that did not sign the daemon's
    /// certificate, a client certificate the daemon does not trust, a daemon that is down.
    /// Names the files in use, so the operator knows which one to check.
    #[error("Docker request failed: {operation} over TLS to {files}")]
    Tls {
        /// What was asked (`negotiate the API version`).
        operation: &'static str,
        /// The host and the files in use: `HOST (trusting the CA CA, presenting the client
        /// certificate CERT)`.
        files: String,
        /// The client's error (the TLS alert or verification failure is in its chain).
        #[source]
        source: bollard::errors::Error,
    },
    /// A TLS file of an `https://` daemon (CA, certificate, key) cannot be read or used.
    #[error("cannot use the TLS file {path} for {host}")]
    TlsFile {
        /// The configured host.
        host: String,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request to the Docker daemon failed.
    #[error("Docker request failed: {operation}")]
    Docker {
        /// What was asked (`list containers`, `inspect container`, ...).
        operation: &'static str,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A container's logs cannot be read at all: it is gone (404) or its log driver cannot be
    /// read back (501, e.g. `--log-driver none`).
    #[error("the logs of container {container} cannot be read ({status})")]
    Unreadable {
        /// The container's short id.
        container: String,
        /// The HTTP status Docker answered.
        status: u16,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The pipeline's batch channel closed while the source still had lines to send.
    #[error("the pipeline's batch channel is closed")]
    PipelineClosed,
    /// The checkpoint file could not be written.
    #[error("cannot write the checkpoint file {path}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A container's log files could not be read (file mode).
    #[error("cannot read the log files in {path}")]
    LogFiles {
        /// The directory of the container's log files.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// File mode cannot read Docker's containers directory (`read_mode = "files"`) or a
    /// container's log files.
    #[error(
        "cannot read {path} in file mode: the agent needs read access to Docker's containers directory (run it as root or with CAP_DAC_READ_SEARCH, and mount the directory read-only into its container)"
    )]
    FilesUnreadable {
        /// Docker's `containers` directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A stream-worker thread or its runtime could not be started.
    #[error("cannot start a stream worker thread")]
    Worker(#[source] io::Error),
}

impl Error {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Docker { .. }
            | Error::Tls { .. }
            | Error::Checkpoint { .. }
            | Error::Worker(_)
            | Error::LogFiles { .. } => true,
            Error::Config { .. }
            | Error::Glob { .. }
            | Error::Multiline { .. }
            | Error::Client { .. }
            | Error::TlsFile { .. }
            | Error::Unreadable { .. }
            | Error::FilesUnreadable { .. }
            | Error::PipelineClosed => false,
        }
    }

    pub(crate) fn config(key: &'static str, reason: impl Into<String>) -> Error {
        Error::Config {
            key,
            reason: reason.into(),
        }
    }
}

/// The HTTP status of a Docker error answer, if the daemon answered with one.
pub(crate) fn docker_status(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// 404 (the container is gone) and 501 (its log driver cannot be read) end a container's
/// monitoring: retrying cannot help.
pub(crate) fn is_permanent_status(status: Option<u16>) -> bool {
    matches!(status, Some(404 | 501))
}
