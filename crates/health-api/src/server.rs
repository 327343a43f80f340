//! The HTTP/1.1 server in front of [`HealthApi::handle`]: accept loop, limits and shutdown.
//! Each connection's life (admission by path, write timeout, request cap) is in `connection.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admission::Admission;
use crate::connection::{self, ConnectionSettings};
use crate::{Error, HealthApi, Result};

/// How long a client may take to send a request's headers, and how long an idle keep-alive
/// connection stays open. It bounds how long a silent client can stay pending or hold a slot.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) accepted; larger ones get a 431.
/// Probes and scrapers send a few hundred bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The per-connection read buffer bound (hyper's minimum is 8 KiB).
const MAX_BUF_BYTES: usize = 32 * 1024;
/// How long open connections get to finish their current response once shutdown starts; after
/// it, they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The pause after a failed `accept` (such as too many open files), so a lasting error does not
/// spin the loop.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

impl HealthApi {
    /// Binds the configured listen address, so errors such as an address in use surface before
    /// serving starts.
    pub async fn bind(mut self) -> Result<BoundHealthApi> {
        self.count_current_runtime();
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(Error::LocalAddr)?;
        Ok(BoundHealthApi {
            api: Arc::new(self),
            listener,
            local_addr,
        })
    }
}

/// A health API bound to its address and ready to [`serve`](BoundHealthApi::serve).
#[derive(Debug)]
pub struct BoundHealthApi {
    api: Arc<HealthApi>,
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl BoundHealthApi {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then closes the listener, marks the agent not ready,
    /// lets open connections finish their current response (within a bounded grace) and returns.
    ///
    /// Every connection is accepted and reads its first request head without holding a slot;
    /// it is then admitted by path (see `admission.rs`): `max_connections` slots for any path and
    /// `probe_connections` more for connections that open with `/live` or `/ready`, so a flood
    /// of `/metrics` clients cannot starve the probes. A connection that finds no slot is closed.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let BoundHealthApi {
            api,
            listener,
            local_addr,
        } = self;
        let config = &api.config;
        let (max_connections, probe_connections) =
            (config.max_connections, config.probe_connections);
        let settings = Arc::new(ConnectionSettings {
            admission: Admission::new(max_connections, probe_connections),
            builder: http1_builder(),
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
            write_timeout: config.write_timeout,
            max_requests: config.max_requests_per_connection.max(1),
            api: Arc::clone(&api),
        });
        // Every connection task lives in this set, so none outlives `serve`.
        let mut connections = JoinSet::new();
        info!(listen = %local_addr, max_connections, probe_connections, "health API serving");

        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = joined {
                        warn!(error = %error, "health API connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let settings = Arc::clone(&settings);
                        connections.spawn(connection::serve(settings, stream, peer, shutdown.clone()));
                    }
                    Err(error) => {
                        warn!(error = %error, "health API accept failed");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                        }
                    }
                },
            }
        }

        // Stop accepting first, so no connection starts during the drain.
        drop(listener);
        api.readiness.set_ready(false);
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!(
                remaining = connections.len(),
                grace = ?SHUTDOWN_GRACE,
                "health API connections did not finish in time, dropping them"
            );
            connections.shutdown().await;
        }
        info!(listen = %local_addr, "health API stopped");
        Ok(())
    }
}

/// hyper's HTTP/1.1 settings: bounded heads and buffers, a header read timeout that also ends
/// idle keep-alive connections.
fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(true);
    builder
}
