//! A loopback HTTP receiver for the HTTP sinks' tests: a small HTTP/1.1 responder on
//! `127.0.0.1:0`, plain or TLS (optionally verifying client certificates), that answers from a
//! script, decodes each request independently of the sinks' encoders (Loki's JSON and
//! protobuf pushes in `loki.rs`; OTLP `ExportLogsServiceRequest` with the published message
//! definitions in `otlp.rs`) and reports every request on a channel, so tests wait for real
//! events and never sleep.
//!
//! The server runs on a thread of its own with its own runtime, so synchronous tests (the
//! end-to-end ones) and async tests of any runtime flavour use it alike. Dropping the
//! [`Receiver`] stops the thread and every connection.

mod loki;
mod otlp;
mod server;

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::{mpsc, oneshot, watch};

pub use loki::Stream;
pub use opentelemetry_proto::tonic as otlp_proto;
pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use otlp::{attribute, partial_success, string_value};

/// How long `next_push` waits before failing the test.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with a text body.
    Status(u16, String),
    /// A status with extra headers and a body.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        content_type: String,
        body: Vec<u8>,
    },
    /// Bytes that are not HTTP, then the connection is closed.
    Garbage(&'static [u8]),
}

/// TLS for the receiver: its certificate and key, and the CA its clients' certificates must
/// chain to (mTLS) if any.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// One request as the server received and decoded it.
#[derive(Debug, Clone)]
pub struct Push {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// Loki streams, for a push to `/loki/api/v1/push`.
    pub streams: Vec<Stream>,
    /// The OTLP request, for a request to a path ending in `/v1/logs`.
    pub logs: Option<ExportLogsServiceRequest>,
    /// The status the server answered (0 for garbage).
    pub status: u16,
}

impl Push {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Loki entries in the push.
    pub fn entry_count(&self) -> usize {
        self.streams.iter().map(|stream| stream.entries.len()).sum()
    }
}

/// The running receiver. Dropping it stops the server.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    tls: bool,
    script: Arc<Mutex<VecDeque<Reply>>>,
    control: Arc<server::Control>,
    handshake_errors: watch::Receiver<Vec<String>>,
    push_rx: mpsc::UnboundedReceiver<Push>,
    /// Dropped (or sent) to stop the server; the thread is joined in `Drop`.
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.stop_tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Receiver {
    /// Starts a plain HTTP server that answers `script` in order, then 204 (Loki) or 200
    /// with an empty `ExportLogsServiceResponse` (OTLP) to everything, or 503 while it is set
    /// down ([`Receiver::set_up`]).
    pub fn start(script: Vec<Reply>) -> Receiver {
        Receiver::spawn(script, None)
    }

    /// Starts a TLS server.
    pub fn start_tls(script: Vec<Reply>, tls: ServerTls) -> Receiver {
        Receiver::spawn(script, Some(tls))
    }

    fn spawn(script: Vec<Reply>, tls: Option<ServerTls>) -> Receiver {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (errors_tx, handshake_errors) = watch::channel(Vec::new());
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let is_tls = tls.is_some();
        let control = Arc::new(server::Control::default());
        let shared = server::Shared {
            script: Arc::clone(&script),
            control: Arc::clone(&control),
            handshake_errors: errors_tx,
            push_tx,
        };
        let thread = std::thread::spawn(move || server::run(tls, shared, addr_tx, stop_rx));
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiver did not start");
        Receiver {
            addr,
            tls: is_tls,
            script,
            control,
            handshake_errors,
            push_rx,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a TLS receiver.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Adds replies to the end of the script.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Makes the answers after the script 503 (`false`) or the default success (`true`).
    pub fn set_up(&self, up: bool) {
        self.control.down.store(!up, Ordering::SeqCst);
    }

    /// Makes every answer wait `delay` (a slow but healthy server).
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.control.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// The next request received; fails the test if none comes within 30 s.
    pub async fn next_push(&mut self) -> Push {
        tokio::time::timeout(PUSH_TIMEOUT, self.push_rx.recv())
            .await
            .expect("no push within 30 s")
            .expect("the receiver stopped")
    }

    /// The next request received, waiting at most `timeout`, from synchronous code.
    pub fn next_push_blocking(&mut self, timeout: Duration) -> Option<Push> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime to wait on");
        // The timer must be made inside the runtime.
        runtime
            .block_on(async { tokio::time::timeout(timeout, self.push_rx.recv()).await })
            .ok()
            .flatten()
    }

    /// Every request received so far, without waiting.
    pub fn received(&mut self) -> Vec<Push> {
        let mut pushes = Vec::new();
        while let Ok(push) = self.push_rx.try_recv() {
            pushes.push(push);
        }
        pushes
    }

    /// Why TLS handshakes failed so far (a client without an acceptable certificate, ...).
    pub fn handshake_errors(&self) -> Vec<String> {
        self.handshake_errors.borrow().clone()
    }

    /// Waits until a TLS handshake has failed (the server records it after the client has
    /// seen the alert) and returns every failure so far; fails the test after 30 s.
    pub async fn wait_for_handshake_errors(&mut self) -> Vec<String> {
        let seen = self.handshake_errors.wait_for(|errors| !errors.is_empty());
        tokio::time::timeout(PUSH_TIMEOUT, seen)
            .await
            .expect("no failed handshake within 30 s")
            .expect("the receiver stopped")
            .clone()
    }
}
