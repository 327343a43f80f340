//! One connection's life: pending (its first request head is read), admitted by path, then
//! served by hyper under a write timeout and a request cap.

use std::convert::Infallible;
use std::io::Cursor;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderValue;
use http::header::CONNECTION;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_io_timeout::TimeoutWriter;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::HealthApi;
use crate::admission::{Admission, Class, classify, is_probe_path};

/// What every connection of one server shares.
#[derive(Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) api: Arc<HealthApi>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) builder: http1::Builder,
    /// How long a client may take to send a request head; also ends idle keep-alive connections.
    pub(crate) header_read_timeout: Duration,
    /// The largest request head accepted (hyper answers 431 beyond it).
    pub(crate) max_header_bytes: usize,
    /// How long a write may stay blocked (the client does not read) before the connection ends.
    pub(crate) write_timeout: Duration,
    /// Requests answered on one connection; the last answer carries `Connection: close`.
    pub(crate) max_requests: usize,
}

/// The bytes read from the socket per call while waiting for the first head.
const HEAD_READ_CHUNK: usize = 4096;

/// Serves one accepted connection until the client closes it, a limit ends it, or `shutdown`
/// asks it to finish.
pub(crate) async fn serve(
    settings: Arc<ConnectionSettings>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let pending = settings.admission.enter();
    let first_head = tokio::time::timeout(
        settings.header_read_timeout,
        read_first_head(&mut stream, settings.max_header_bytes),
    );
    let head = tokio::select! {
        biased;
        () = shutdown.cancelled() => return,
        () = pending.shed.cancelled() => {
            debug!(peer = %peer, "health API connection shed while waiting for its request");
            return;
        }
        head = first_head => head,
    };
    drop(pending);
    let head = match head {
        Ok(Ok(head)) if !head.is_empty() => head,
        Ok(Ok(_)) => return,
        Ok(Err(error)) => {
            debug!(peer = %peer, error = %error, "health API connection failed before its request");
            return;
        }
        Err(_) => {
            debug!(peer = %peer, "health API client sent no request head in time, closing");
            return;
        }
    };
    let class = classify(&head);
    let Some(permit) = settings.admission.admit(class) else {
        debug!(peer = %peer, ?class, "health API connection limit reached, closing connection");
        return;
    };
    serve_admitted(settings, stream, head, class, permit, peer, shutdown).await;
}

/// Reads until the first request head is complete (an empty line), the client closes, or more
/// than `max_bytes` arrived (hyper then answers 431). Returns everything read.
async fn read_first_head(
    stream: &mut (impl AsyncRead + Unpin),
    max_bytes: usize,
) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        head.reserve(HEAD_READ_CHUNK);
        let searched_from = head.len().saturating_sub(2);
        if stream.read_buf(&mut head).await? == 0 {
            // Closed: hyper judges whatever came (a partial head is an error it logs).
            return Ok(head);
        }
        if head_complete(&head[searched_from..]) || head.len() > max_bytes {
            return Ok(head);
        }
    }
}

fn head_complete(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| pair == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// Serves an admitted connection with hyper: the bytes already read come first, writes are under
/// the write timeout, and the request cap (or a non-probe request on a probe slot) closes it.
async fn serve_admitted(
    settings: Arc<ConnectionSettings>,
    stream: TcpStream,
    head: Vec<u8>,
    class: Class,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _permit = permit;
    let (read_half, write_half) = stream.into_split();
    let mut writer = TimeoutWriter::new(write_half);
    writer.set_timeout(Some(settings.write_timeout));
    let io = tokio::io::join(Cursor::new(head).chain(read_half), Box::pin(writer));
    let answered = AtomicUsize::new(0);
    let api = Arc::clone(&settings.api);
    let max_requests = settings.max_requests;
    // The handler answers synchronously from status snapshots and never reads the request body.
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let count = answered.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.uri().path();
        let probe = is_probe_path(path);
        let mut response = api.handle(request.method(), path).map(Full::new);
        // A probe slot stays a probe slot: anything else on it is answered, then the connection
        // ends.
        if count >= max_requests || (class == Class::Probe && !probe) {
            let close = HeaderValue::from_static("close");
            response.headers_mut().insert(CONNECTION, close);
        }
        async move {
            // hyper answers pipelined requests in one poll until its budget runs out, so a flood
            // of pipelining clients would make a probe wait behind many renders per client; one
            // rendered answer per poll keeps the wait to about one render per busy connection.
            if !probe {
                tokio::task::yield_now().await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = settings.builder.serve_connection(TokioIo::new(io), service);
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
