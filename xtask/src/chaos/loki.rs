//! A tiny Loki-compatible receiver: the push API on 127.0.0.1, switchable between up and down.
//!
//! While up it answers `POST /loki/api/v1/push` with 204 and records every entry of the (gzip or
//! plain) JSON body in a [`Ledger`] under its `container_id` and `stream` labels; while down it
//! answers 503 without reading the entries, as a Loki behind a failing ingester does. It also
//! counts what real Loki would deduplicate: an entry identical to one already accepted (same
//! stream labels, timestamp and line) is a resend, not a new line.
//!
//! One thread accepts connections and one thread serves each (one request per connection,
//! `Connection: close`): the capturer sends a few requests per second, so simplicity wins.

use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use test_support::ledger::Ledger;

/// How long the accept loop sleeps when no connection waits (it also checks for shutdown).
const ACCEPT_IDLE: Duration = Duration::from_millis(20);
/// How long one connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head or body accepted (the capturer's requests are about 1 MiB).
const MAX_BODY: usize = 64 << 20;

/// What the receiver has seen.
#[derive(Debug)]
pub(crate) struct LokiState {
    /// Accepted entries, by container and stream.
    pub(crate) ledger: Ledger,
    /// Hashes of accepted (labels, timestamp, line), to count what Loki would deduplicate.
    distinct: HashSet<u64>,
    /// Accepted entries identical to one accepted before.
    pub(crate) identical_resends: u64,
    pub(crate) accepted_requests: u64,
    pub(crate) refused_requests: u64,
    /// Requests that could not be read or decoded (answered 400).
    pub(crate) bad_requests: u64,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub(crate) struct LokiReceiver {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Milliseconds every answer waits (a slow Loki).
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<LokiState>>,
    acceptor: Option<JoinHandle<()>>,
}

impl LokiReceiver {
    /// Binds 127.0.0.1 on a free port and starts serving, up.
    pub(crate) fn start() -> Result<LokiReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the Loki receiver")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(LokiState {
            ledger: Ledger::new(),
            distinct: HashSet::new(),
            identical_resends: 0,
            accepted_requests: 0,
            refused_requests: 0,
            bad_requests: 0,
        }));
        let acceptor = {
            let answer = Answer {
                up: up.clone(),
                delay_ms: delay_ms.clone(),
                state: state.clone(),
            };
            let stop = stop.clone();
            std::thread::spawn(move || accept_loop(&listener, &answer, &stop))
        };
        Ok(LokiReceiver {
            addr,
            up,
            delay_ms,
            stop,
            state,
            acceptor: Some(acceptor),
        })
    }

    /// The base URL for the sink's `endpoint`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes the receiver answer 204 (`true`) or 503 (`false`).
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Makes every answer wait `delay` (a slow but healthy Loki).
    pub(crate) fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// What it has seen so far.
    pub(crate) fn state(&self) -> MutexGuard<'_, LokiState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for LokiReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// How the receiver answers; shared with every connection thread.
#[derive(Debug, Clone)]
struct Answer {
    up: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    state: Arc<Mutex<LokiState>>,
}

fn accept_loop(listener: &TcpListener, answer: &Answer, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let answer = answer.clone();
                // Connection threads end with their request (bounded by READ_TIMEOUT).
                std::thread::spawn(move || {
                    let _ = serve(stream, &answer);
                });
            }
            // Non-blocking accept: nothing waits; check for shutdown again shortly.
            Err(_) => std::thread::sleep(ACCEPT_IDLE),
        }
    }
}

fn serve(stream: TcpStream, answer: &Answer) -> Result<()> {
    let Answer {
        up,
        delay_ms,
        state,
    } = answer;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let request = read_request(&mut reader)?;
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let status = if !request.path.starts_with("/loki/api/v1/push") {
        "404 Not Found"
    } else if !up.load(Ordering::SeqCst) {
        lock().refused_requests += 1;
        "503 Service Unavailable"
    } else {
        match decode_push(&request) {
            Ok(entries) => {
                let mut state = lock();
                state.accepted_requests += 1;
                for entry in entries {
                    let mut hasher = DefaultHasher::new();
                    (&entry.labels, &entry.timestamp, &entry.line).hash(&mut hasher);
                    if !state.distinct.insert(hasher.finish()) {
                        state.identical_resends += 1;
                    }
                    state
                        .ledger
                        .record(&entry.container, &entry.stream, &entry.line);
                }
                "204 No Content"
            }
            Err(_) => {
                lock().bad_requests += 1;
                "400 Bad Request"
            }
        }
    };
    // A slow Loki: the answer (and so the sink's next push) waits.
    std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
    write!(
        writer,
        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    writer.flush()?;
    Ok(())
}

#[derive(Debug)]
struct Request {
    path: String,
    gzip: bool,
    body: Vec<u8>,
}

fn read_request(reader: &mut impl BufRead) -> Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let (mut length, mut chunked, mut gzip) = (0usize, false, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed inside the request head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = value.parse().context("content-length")?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-encoding" => gzip = value.eq_ignore_ascii_case("gzip"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .context("chunk size")?;
            if size == 0 || body.len() + size > MAX_BODY {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else {
        if length > MAX_BODY {
            bail!("a body of {length} bytes");
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Request { path, gzip, body })
}

#[derive(Debug)]
struct Entry {
    labels: String,
    container: String,
    stream: String,
    timestamp: String,
    line: String,
}

fn decode_push(request: &Request) -> Result<Vec<Entry>> {
    let json = if request.gzip {
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&request.body[..])
            .take(MAX_BODY as u64 * 4)
            .read_to_end(&mut decoded)
            .context("gunzip")?;
        decoded
    } else {
        request.body.clone()
    };
    let push: Value = serde_json::from_slice(&json).context("the push body is not JSON")?;
    let mut entries = Vec::new();
    for stream in push["streams"].as_array().context("no streams")? {
        let labels = stream["stream"].to_string();
        let container = stream["stream"]["container_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let stream_name = stream["stream"]["stream"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for value in stream["values"].as_array().context("no values")? {
            entries.push(Entry {
                labels: labels.clone(),
                container: container.clone(),
                stream: stream_name.clone(),
                timestamp: value[0].as_str().unwrap_or_default().to_owned(),
                line: value[1].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::LokiReceiver;

    fn push(receiver: &LokiReceiver, body: &[u8]) -> String {
        let mut gzipped = Vec::new();
        let mut encoder =
            flate2::write::GzEncoder::new(&mut gzipped, flate2::Compression::default());
        encoder.write_all(body).unwrap();
        encoder.finish().unwrap();
        let addr = receiver.endpoint().trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /loki/api/v1/push HTTP/1.1\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
            gzipped.len()
        )
        .unwrap();
        stream.write_all(&gzipped).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn entries_are_counted_while_up_and_refused_while_down() {
        let receiver = LokiReceiver::start().unwrap();
        let body = br#"{"streams":[{"stream":{"container_id":"c","stream":"stdout"},"values":[["1","t r out 0"],["2","t r out 1"]]}]}"#;
        assert!(push(&receiver, body).starts_with("HTTP/1.1 204"));
        receiver.set_up(false);
        assert!(push(&receiver, body).starts_with("HTTP/1.1 503"));
        receiver.set_up(true);
        assert!(push(&receiver, body).starts_with("HTTP/1.1 204"));
        let state = receiver.state();
        assert_eq!(state.ledger.records, 4);
        assert_eq!(state.identical_resends, 2);
        assert_eq!(state.refused_requests, 1);
    }
}
