//! The receiver's server: its thread's runtime, the accept loop (TLS handshakes included) and
//! one task per keep-alive connection.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use super::{Push, Reply, ServerTls, loki, otlp};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server shares with the [`Receiver`](super::Receiver).
pub(super) struct Shared {
    pub(super) script: Arc<Mutex<VecDeque<Reply>>>,
    pub(super) handshake_errors: watch::Sender<Vec<String>>,
    pub(super) push_tx: mpsc::UnboundedSender<Push>,
    pub(super) control: Arc<Control>,
}

/// How the server answers once its script is done: switchable down (503) and slow, as a Loki
/// behind a failing ingester or an overloaded one is.
#[derive(Debug, Default)]
pub(super) struct Control {
    pub(super) down: AtomicBool,
    /// Milliseconds every answer waits.
    pub(super) delay_ms: AtomicU64,
}

/// The thread's body: serves until `stop_rx` fires or its sender is dropped.
pub(super) fn run(
    tls: Option<ServerTls>,
    shared: Shared,
    addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    stop_rx: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the receiver's runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _ = addr_tx.send(listener.local_addr().expect("local address"));
        let acceptor = tls.map(|tls| TlsAcceptor::from(Arc::new(server_config(&tls))));
        tokio::select! {
            () = accept_loop(listener, acceptor, Arc::new(shared)) => {}
            _ = stop_rx => {}
        }
    });
}

fn server_config(tls: &ServerTls) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .expect("the server certificate file")
        .collect::<Result<_, _>>()
        .expect("PEM certificates");
    let key = PrivateKeyDer::from_pem_file(&tls.key).expect("the server key");
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).expect("the client CA file") {
                roots.add(cert.expect("a PEM certificate")).expect("a CA");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .expect("the server certificate and key")
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { return };
                let shared = Arc::clone(&shared);
                match acceptor.clone() {
                    None => {
                        connections.spawn(serve(socket, shared));
                    }
                    Some(acceptor) => {
                        connections.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                                Ok(Ok(stream)) => serve(stream, shared).await,
                                Ok(Err(error)) => shared.handshake_errors.send_modify(|errors| errors.push(error.to_string())),
                                Err(_) => shared.handshake_errors.send_modify(|errors| errors.push("handshake timed out".into())),
                            }
                        });
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves requests on one keep-alive connection until the client closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    loop {
        let Some((method, path, headers, body)) = read_request(&mut socket, &mut buffer).await
        else {
            return;
        };
        let is_otlp = path.ends_with("/v1/logs");
        let (streams, logs) = if is_otlp {
            (Vec::new(), Some(otlp::decode(&headers, &body)))
        } else {
            (loki::decode(&headers, &body), None)
        };
        let reply = shared
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| default_reply(is_otlp, &shared.control));
        let status = match &reply {
            Reply::Status(status, _) | Reply::Full { status, .. } => *status,
            Reply::Garbage(_) => 0,
        };
        let _ = shared.push_tx.send(Push {
            method,
            path,
            headers,
            streams,
            logs,
            status,
        });
        let delay = shared.control.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            // A slow server: the answer (and so the client's next request) waits.
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if !write_reply(&mut socket, reply).await {
            return;
        }
    }
}

fn default_reply(is_otlp: bool, control: &Control) -> Reply {
    if control.down.load(Ordering::SeqCst) {
        Reply::Status(503, "down".to_owned())
    } else if is_otlp {
        otlp::success()
    } else {
        Reply::Status(204, String::new())
    }
}

type Request = (String, String, BTreeMap<String, String>, Vec<u8>);

/// Reads one request (head and `Content-Length` body); `None` once the client is gone.
async fn read_request<S: AsyncRead + Unpin>(
    socket: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<Request> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 8192];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .expect("the sink sends a Content-Length");
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 65536];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    let body: Vec<u8> = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some((method, path, headers, body))
}

/// Writes `reply`; `false` if the connection is to be closed.
async fn write_reply<S: AsyncWrite + Unpin>(socket: &mut S, reply: Reply) -> bool {
    let (status, headers, content_type, body) = match reply {
        Reply::Status(status, text) => (
            status,
            Vec::new(),
            "text/plain".to_owned(),
            text.into_bytes(),
        ),
        Reply::Full {
            status,
            headers,
            content_type,
            body,
        } => (status, headers, content_type, body),
        Reply::Garbage(bytes) => {
            let _ = socket.write_all(bytes).await;
            let _ = socket.shutdown().await;
            return false;
        }
    };
    let mut answer = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    let mut bytes = answer.into_bytes();
    bytes.extend_from_slice(&body);
    socket.write_all(&bytes).await.is_ok() && socket.flush().await.is_ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
