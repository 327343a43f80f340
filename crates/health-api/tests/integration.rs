//! The health API behind a real socket: HTTP/1.1 over raw `TcpStream`s, limits and shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use capture_core::status::{DockerSnapshot, DockerState, SinkSnapshot, TaskSnapshot};
use health_api::{HealthApi, HealthConfig, Readiness, StatusSource};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An upper bound for things that should take milliseconds; far below the server's 5 s shutdown
/// grace and 10 s header timeout, so passing proves neither of those was waited out.
const PROMPT: Duration = Duration::from_secs(2);

struct Connected;

impl StatusSource for Connected {
    fn tasks(&self) -> Vec<TaskSnapshot> {
        Vec::new()
    }

    fn sinks(&self) -> Vec<SinkSnapshot> {
        Vec::new()
    }

    fn docker(&self) -> DockerSnapshot {
        DockerSnapshot {
            state: DockerState::Connected,
            api_version: Some("1.41".to_owned()),
            ..DockerSnapshot::default()
        }
    }
}

/// A server on 127.0.0.1:0, its address, readiness latch, shutdown token and task.
struct Server {
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
    task: JoinHandle<health_api::Result<()>>,
}

async fn start(max_connections: usize) -> Server {
    let config = HealthConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections,
        ..HealthConfig::default()
    };
    let readiness = Readiness::default();
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let api = HealthApi::new(config, Arc::new(Connected), readiness.clone(), prometheus);
    let bound = api.bind().await.expect("binds 127.0.0.1:0");
    let addr = bound.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bound.serve(shutdown.clone()));
    Server {
        addr,
        readiness,
        shutdown,
        task,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PROMPT, self.task)
            .await
            .expect("serve returns promptly")
            .expect("serve does not panic")
            .expect("serve returns Ok");
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends one keep-alive GET on `stream`.
async fn send_get(stream: &mut TcpStream, path: &str) -> io::Result<()> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await
}

/// Reads one response (head plus `content-length` body) from `stream`; `None` if the server
/// closed the connection before sending any byte of it.
async fn read_response(stream: &mut TcpStream) -> io::Result<Option<HttpResponse>> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).expect("ASCII head");
    let status: u16 = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("numeric content-length"))
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(Some(HttpResponse { status, head, body }))
}

async fn get(stream: &mut TcpStream, path: &str) -> HttpResponse {
    send_get(stream, path).await.expect("request sent");
    read_response(stream)
        .await
        .expect("response read")
        .expect("a response, not a close")
}

/// Whether the server closed `stream` without answering a request sent on it.
async fn closed_without_answer(stream: &mut TcpStream) -> bool {
    // The write may already fail if the close arrived first; either way no answer comes.
    if send_get(stream, "/live").await.is_err() {
        return true;
    }
    match read_response(stream).await {
        Ok(None) => true,
        Err(error) => matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
        ),
        Ok(Some(_)) => false,
    }
}

#[tokio::test]
async fn serves_health_live_and_ready_over_keep_alive() {
    let server = start(4).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();

    let health = get(&mut stream, "/health").await;
    assert_eq!(health.status, 200, "{}", health.head);
    let json: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["docker"]["state"], "connected");

    // The same connection serves the next requests.
    assert_eq!(get(&mut stream, "/live").await.status, 200);
    assert_eq!(get(&mut stream, "/ready").await.status, 503);
    server.readiness.set_ready(true);
    assert_eq!(get(&mut stream, "/ready").await.status, 200);
    assert_eq!(get(&mut stream, "/nope").await.status, 404);
    assert_eq!(get(&mut stream, "/live?probe=1").await.status, 200);

    server.stop().await;
}

#[tokio::test]
async fn head_sends_the_length_but_no_body() {
    let server = start(4).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Read byte by byte up to the end of the head, so nothing after it is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("content-length")
        .parse()
        .unwrap();
    assert!(length > 100, "the length a GET would have: {head}");
    // Had a body followed the head, this response would start with it.
    let live = get(&mut stream, "/live").await;
    assert_eq!(live.status, 200);
    assert_eq!(live.body, b"live\n");
    server.stop().await;
}

#[tokio::test]
async fn a_request_body_is_not_read_and_405_carries_allow() {
    let server = start(4).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The declared body never arrives: the answer must not wait for it.
    stream
        .write_all(b"POST /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let response = tokio::time::timeout(PROMPT, read_response(&mut stream))
        .await
        .expect("answered without the body")
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 405);
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("allow: get, head"),
        "{}",
        response.head
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let server = start(2).await;

    // Two connections take both slots; answered requests prove the server accepted them.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut first, "/live").await.status, 200);
    assert_eq!(get(&mut second, "/live").await.status, 200);

    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_without_answer(&mut third).await);

    // Once a slot frees, connections are served again. The server frees it when it sees the
    // close, which the client cannot observe, so retry a bounded number of real round trips.
    drop(first);
    let mut served = false;
    for _ in 0..1000 {
        let mut next = TcpStream::connect(server.addr).await.unwrap();
        if send_get(&mut next, "/live").await.is_ok()
            && let Ok(Some(response)) = read_response(&mut next).await
        {
            assert_eq!(response.status, 200);
            served = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(served, "a freed slot is reused");
    // The held connection is still served.
    assert_eq!(get(&mut second, "/live").await.status, 200);

    server.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431_or_a_close_and_the_server_goes_on() {
    let server = start(4).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let huge = "x".repeat(64 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Huge: {huge}\r\n\r\n");
    // The server may close while the request is still being written.
    let written = stream.write_all(request.as_bytes()).await;
    if written.is_ok() {
        match read_response(&mut stream).await {
            Ok(Some(response)) => assert_eq!(response.status, 431, "{}", response.head),
            Ok(None) => {}
            Err(error) => assert!(
                matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                ),
                "{error}"
            ),
        }
    }

    let mut next = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut next, "/live").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_is_prompt_with_an_idle_keep_alive_connection() {
    let server = start(4).await;
    server.readiness.set_ready(true);
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut idle, "/live").await.status, 200);
    let readiness = server.readiness.clone();
    let addr = server.addr;

    // `stop` fails unless serve returns within PROMPT, well under the header read timeout that
    // would otherwise end the idle connection.
    server.stop().await;
    assert!(!readiness.is_ready(), "shutdown clears readiness");

    // The idle connection was closed, and nothing listens any more.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PROMPT, idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed");
    assert!(read.is_err() || rest.is_empty(), "no stray bytes: {rest:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn binding_an_address_in_use_fails_before_serving() {
    let server = start(1).await;
    let config = HealthConfig {
        listen: server.addr,
        ..HealthConfig::default()
    };
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let api = HealthApi::new(
        config,
        Arc::new(Connected),
        Readiness::default(),
        prometheus,
    );
    let error = api.bind().await.expect_err("the address is taken");
    assert!(matches!(error, health_api::Error::Bind { .. }), "{error}");
    assert!(error.is_transient());
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_after_the_header_read_timeout() {
    let server = start(1).await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut rest = Vec::new();
    // Paused time advances only while every task waits, so this measures the server's timer.
    silent.read_to_end(&mut rest).await.unwrap();
    let waited = started.elapsed();
    assert!(rest.is_empty(), "no answer to a request never sent");
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&waited),
        "closed after {waited:?}"
    );
    server.stop().await;
}
