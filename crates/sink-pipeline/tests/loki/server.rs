//! A fake Loki: a small HTTP/1.1 responder on 127.0.0.1:0 that answers pushes from a script,
//! decodes both encodings independently of the sink (gunzip + JSON, snappy + prost) and reports
//! every push on a channel, so tests wait for real events and never sleep.

use std::{
    collections::{BTreeMap, VecDeque},
    io::Read as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use prost::Message as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::{JoinHandle, JoinSet},
};

/// How the server answers one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A status with a text body.
    Status(u16, String),
    /// Bytes that are not HTTP, then the connection is closed.
    Garbage(&'static [u8]),
}

/// One push as the server received and decoded it.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Header names in lower case.
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) streams: Vec<Stream>,
    /// The status the server answered (0 for garbage).
    pub(crate) status: u16,
}

impl Push {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub(crate) fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn entry_count(&self) -> usize {
        self.streams.iter().map(|stream| stream.entries.len()).sum()
    }
}

/// One decoded stream of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stream {
    pub(crate) labels: BTreeMap<String, String>,
    /// (nanoseconds since the epoch, line), in the order sent.
    pub(crate) entries: Vec<(i64, String)>,
}

/// The running fake. Dropping it stops the server and every connection.
#[derive(Debug)]
pub(crate) struct FakeLoki {
    pub(crate) addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Reply>>>,
    push_rx: mpsc::UnboundedReceiver<Push>,
    server: JoinHandle<()>,
}

impl Drop for FakeLoki {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.server.abort();
    }
}

impl FakeLoki {
    /// Starts a server that answers `script` in order, then 204 to everything.
    pub(crate) async fn start(script: Vec<Reply>) -> FakeLoki {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&script), push_tx));
        FakeLoki {
            addr,
            script,
            push_rx,
            server,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds replies to the end of the script.
    pub(crate) fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// The next push received; fails the test if none comes within 30 s.
    pub(crate) async fn next_push(&mut self) -> Push {
        tokio::time::timeout(Duration::from_secs(30), self.push_rx.recv())
            .await
            .expect("no push within 30 s")
            .expect("the fake loki stopped")
    }

    /// Every push received so far, without waiting.
    pub(crate) fn received(&mut self) -> Vec<Push> {
        let mut pushes = Vec::new();
        while let Ok(push) = self.push_rx.try_recv() {
            pushes.push(push);
        }
        pushes
    }
}

async fn accept_loop(
    listener: TcpListener,
    script: Arc<Mutex<VecDeque<Reply>>>,
    push_tx: mpsc::UnboundedSender<Push>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { return };
                connections.spawn(serve(socket, Arc::clone(&script), push_tx.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves requests on one keep-alive connection until the client closes it.
async fn serve(
    mut socket: TcpStream,
    script: Arc<Mutex<VecDeque<Reply>>>,
    push_tx: mpsc::UnboundedSender<Push>,
) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 8192];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
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
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let body: Vec<u8> = buffer[body_start..body_start + length].to_vec();
        buffer.drain(..body_start + length);

        let streams = decode(&headers, &body);
        let reply = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Status(204, String::new()));
        let status = match &reply {
            Reply::Status(status, _) => *status,
            Reply::Garbage(_) => 0,
        };
        let _ = push_tx.send(Push {
            method,
            path,
            headers,
            streams,
            status,
        });
        match reply {
            Reply::Status(status, text) => {
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Garbage(bytes) => {
                let _ = socket.write_all(bytes).await;
                let _ = socket.shutdown().await;
                return;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Decodes a push body by its framing headers, as Loki does.
fn decode(headers: &BTreeMap<String, String>, body: &[u8]) -> Vec<Stream> {
    let content_type = headers.get("content-type").map(String::as_str);
    let encoding = headers.get("content-encoding").map(String::as_str);
    match (content_type, encoding) {
        (Some("application/json"), Some("gzip")) => {
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut json)
                .expect("a gzip body");
            decode_json(&json)
        }
        (Some("application/x-protobuf"), None) => {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .expect("a snappy block-format body");
            let request = proto::PushRequest::decode(raw.as_slice()).expect("a PushRequest");
            request
                .streams
                .into_iter()
                .map(|stream| Stream {
                    labels: parse_prometheus_labels(&stream.labels),
                    entries: stream
                        .entries
                        .into_iter()
                        .map(|entry| {
                            let timestamp = entry.timestamp.expect("every entry has a timestamp");
                            (
                                timestamp.seconds * 1_000_000_000 + i64::from(timestamp.nanos),
                                entry.line,
                            )
                        })
                        .collect(),
                })
                .collect()
        }
        other => panic!("unexpected framing {other:?}"),
    }
}

fn decode_json(json: &[u8]) -> Vec<Stream> {
    let value: serde_json::Value = serde_json::from_slice(json).expect("a JSON body");
    value["streams"]
        .as_array()
        .expect("a streams array")
        .iter()
        .map(|stream| Stream {
            labels: stream["stream"]
                .as_object()
                .expect("a stream object")
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
                .collect(),
            entries: stream["values"]
                .as_array()
                .expect("a values array")
                .iter()
                .map(|pair| {
                    let timestamp = pair[0].as_str().expect("a timestamp string");
                    (
                        timestamp.parse().expect("decimal nanoseconds"),
                        pair[1].as_str().expect("a line string").to_owned(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// Parses `{a="b", c="d\"e"}`.
fn parse_prometheus_labels(text: &str) -> BTreeMap<String, String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .expect("labels in braces");
    let mut labels = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape in {text}"),
                },
                c => value.push(c),
            }
        }
        labels.insert(name, value);
    }
}

/// Loki's `logproto` messages, declared independently of the sink's encoder.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub(crate) streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub(crate) labels: String,
        #[prost(message, repeated, tag = "2")]
        pub(crate) entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub(crate) hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub(crate) timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub(crate) line: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Timestamp {
        #[prost(int64, tag = "1")]
        pub(crate) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(crate) nanos: i32,
    }
}
