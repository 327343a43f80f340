//! The HTTP/1.1 server in front of [`HealthApi::handle`]: accept loop, limits and shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{Error, HealthApi, Result};

/// How long a client may take to send a request's headers, and how long an idle keep-alive
/// connection stays open. It bounds how long a silent client can hold a connection slot.
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
    /// At most `max_connections` connections are served at once; a connection beyond that is
    /// closed as soon as it is accepted, so an overloaded agent answers quickly with a refusal
    /// rather than queueing probes.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let BoundHealthApi {
            api,
            listener,
            local_addr,
        } = self;
        let max_connections = api.config.max_connections;
        let permits = Arc::new(Semaphore::new(max_connections));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(MAX_BUF_BYTES)
            .keep_alive(true);
        // Every connection task lives in this set, so none outlives `serve`.
        let mut connections = JoinSet::new();
        info!(listen = %local_addr, max_connections, "health API serving");

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
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            debug!(peer = %peer, max_connections, "health API connection limit reached, closing connection");
                            drop(stream);
                            continue;
                        };
                        let connection = serve_connection(
                            &builder,
                            Arc::clone(&api),
                            stream,
                            peer,
                            permit,
                            shutdown.clone(),
                        );
                        connections.spawn(connection);
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

/// Serves one connection until the client closes it or `shutdown` asks it to finish.
///
/// The permit is held for the connection's whole life, so the connection limit counts
/// connections, not requests.
fn serve_connection(
    builder: &http1::Builder,
    api: Arc<HealthApi>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    // The handler answers synchronously from status snapshots and never reads the request body.
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let response = api
            .handle(request.method(), request.uri().path())
            .map(Full::new);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    async move {
        let _permit = permit;
        let mut connection = pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = shutdown.cancelled() => {
                // An idle connection closes at once; one mid-request finishes that response first.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            debug!(peer = %peer, error = %error, "health API connection ended with an error");
        }
    }
}
