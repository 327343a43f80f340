//! The health API's one error type.

use std::io;
use std::net::SocketAddr;

/// A `Result` whose error defaults to the health API's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while binding or serving the health API.
///
/// Errors inside one connection (a client that hangs up, sends garbage or oversized headers) never
/// surface here: they end that connection only and are logged at `debug`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound (in use, not permitted, not a local address).
    #[error("cannot bind the health API to {addr}")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// Why the bind failed.
        #[source]
        source: io::Error,
    },
    /// The bound socket's local address could not be read.
    #[error("cannot read the local address of the health API's listener")]
    LocalAddr(#[source] io::Error),
    /// A `[health]` setting is invalid.
    #[error("invalid setting health.{key}: {reason}")]
    Config {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    ///
    /// An address in use may be freed by a process that is shutting down; every other bind error
    /// (permission, address not available) needs a configuration change, so it is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Bind { source, .. } => source.kind() == io::ErrorKind::AddrInUse,
            Error::LocalAddr(_) | Error::Config { .. } => false,
        }
    }
}
