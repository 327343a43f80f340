//! The health API behind a real socket: HTTP/1.1 over raw `TcpStream`s, limits and shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use capture_core::status::{DockerSnapshot, DockerState, SinkSnapshot, TaskSnapshot, TaskState};
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

/// Docker connected and `tasks` running tasks: a `/health` body of about 250 bytes per task.
struct Busy {
    tasks: Vec<TaskSnapshot>,
}

impl Busy {
    fn new(tasks: usize) -> Busy {
        let now = std::time::SystemTime::now();
        let tasks = (0..tasks)
            .map(|i| TaskSnapshot {
                id: format!("container_{i:064x}"),
                kind: "container".to_owned(),
                name: format!("busy-{i}"),
                state: TaskState::Running,
                started_at: now,
                last_heartbeat: now,
                restarts: 0,
                last_error: None,
                mode: Some("api".to_owned()),
            })
            .collect();
        Busy { tasks }
    }
}

impl StatusSource for Busy {
    fn tasks(&self) -> Vec<TaskSnapshot> {
        self.tasks.clone()
    }

    fn sinks(&self) -> Vec<SinkSnapshot> {
        Vec::new()
    }

    fn docker(&self) -> DockerSnapshot {
        Connected.docker()
    }
}

/// A server on 127.0.0.1:0, its address, readiness latch, shutdown token and task.
struct Server {
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
    task: JoinHandle<health_api::Result<()>>,
}

/// A server with `max_connections` general slots and no reserved probe slots.
async fn start(max_connections: usize) -> Server {
    start_with(
        HealthConfig {
            max_connections,
            probe_connections: 0,
            ..HealthConfig::default()
        },
        Arc::new(Connected),
    )
    .await
}

/// A server with `config` (its listen address replaced by 127.0.0.1:0) over `status`.
async fn start_with(config: HealthConfig, status: Arc<dyn StatusSource>) -> Server {
    let config = HealthConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let readiness = Readiness::default();
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let api = HealthApi::new(config, status, readiness.clone(), prometheus);
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

/// Whether the server closed `stream` without answering a `GET path` sent on it.
async fn closed_without_answer(stream: &mut TcpStream, path: &str) -> bool {
    // The write may already fail if the close arrived first; either way no answer comes.
    if send_get(stream, path).await.is_err() {
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
    assert!(closed_without_answer(&mut third, "/health").await);

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

// ---- Hostile clients: slots for probes, write timeout, request cap, idle connections. ----

/// Polls `attempt` (a real round trip each time) every 10 ms until it returns `Some`, for at most
/// `limit`; panics with `what` otherwise.
async fn retry_until<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One `GET path` on a new connection: the status, or `None` if the server closed it unanswered.
async fn try_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    send_get(&mut stream, path).await.ok()?;
    read_response(&mut stream)
        .await
        .ok()?
        .map(|response| response.status)
}

fn has_connection_close(response: &HttpResponse) -> bool {
    response
        .head
        .to_ascii_lowercase()
        .contains("connection: close")
}

#[tokio::test]
async fn probe_slots_are_kept_for_live_and_ready() {
    let config = HealthConfig {
        max_connections: 1,
        probe_connections: 1,
        ..HealthConfig::default()
    };
    let server = start_with(config, Arc::new(Connected)).await;

    // The general slot is taken; another /metrics client is refused.
    let mut general = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut general, "/health").await.status, 200);
    let mut metrics = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_without_answer(&mut metrics, "/metrics").await);

    // A probe still gets in, and keeps its connection for further probes.
    let mut probe = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut probe, "/live").await.status, 200);
    assert_eq!(get(&mut probe, "/ready").await.status, 503);
    // With every slot taken, the next probe is refused too.
    let mut late = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_without_answer(&mut late, "/live").await);

    // Anything else on a probe slot is answered once, then the connection ends.
    let answer = get(&mut probe, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(has_connection_close(&answer), "{}", answer.head);
    assert!(read_response(&mut probe).await.unwrap_or(None).is_none());

    // The freed probe slot serves the next probe.
    let status = retry_until(PROMPT, "a probe on the freed slot", || {
        try_get(server.addr, "/live")
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(&mut general, "/health").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_pipelining_client_gets_at_most_the_request_cap_then_a_close() {
    let config = HealthConfig {
        max_requests_per_connection: 3,
        ..HealthConfig::default()
    };
    let server = start_with(config, Arc::new(Connected)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let pipelined = "GET /live HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(5);
    stream.write_all(pipelined.as_bytes()).await.unwrap();
    // The server answers three, then closes: everything it sent arrives before the end.
    let mut received = Vec::new();
    tokio::time::timeout(PROMPT, stream.read_to_end(&mut received))
        .await
        .expect("closed promptly")
        .expect("a clean close");
    let received = String::from_utf8(received).unwrap().to_ascii_lowercase();
    let answers: Vec<&str> = received.split("http/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{received}");
    for (index, answer) in answers.iter().enumerate() {
        assert!(answer.starts_with("200 ok"), "{answer}");
        assert_eq!(answer.contains("connection: close"), index == 2, "{answer}");
    }
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let server = start(1).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut idle, "/live").await.status, 200);
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    // Paused time advances only while every task waits, so this measures the server's timer.
    idle.read_to_end(&mut rest).await.unwrap();
    let waited = started.elapsed();
    assert!(rest.is_empty());
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&waited),
        "closed after {waited:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_loses_its_slot_after_the_write_timeout() {
    let write_timeout = Duration::from_secs(1);
    let config = HealthConfig {
        max_connections: 1,
        probe_connections: 0,
        write_timeout,
        max_requests_per_connection: 1_000_000,
        ..HealthConfig::default()
    };
    // About 500 KB per answer: a few answers fill the socket buffers.
    let server = start_with(config, Arc::new(Busy::new(2000))).await;
    let mut hog = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        get(&mut hog, "/health").await.status,
        200,
        "the hog holds the slot"
    );
    let pipelined = "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(1000);
    hog.write_all(pipelined.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut other = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_without_answer(&mut other, "/live").await,
        "the slot is held"
    );

    // The hog never reads: once its answers fill the buffers, the write timeout frees the slot.
    let status = retry_until(
        Duration::from_secs(15),
        "the slot freed by the write timeout",
        || try_get(server.addr, "/live"),
    )
    .await;
    let freed_after = started.elapsed();
    assert_eq!(status, 200);
    assert!(freed_after >= write_timeout, "freed after {freed_after:?}");
    // What the hog can still read ends: the server closed the connection, far short of 1000
    // answers of 500 KB.
    let mut received = Vec::new();
    let end = tokio::time::timeout(PROMPT, hog.read_to_end(&mut received)).await;
    assert!(end.is_ok(), "the hog's connection is closed");
    assert!(received.len() < 100 * 500_000, "{} bytes", received.len());
    server.stop().await;
}

/// Clients of the flood, each on its own connection.
const FLOOD_CLIENTS: usize = 200;
/// How long the flood runs before `/live` is asked.
const FLOOD_LEAD: Duration = Duration::from_secs(5);
/// How fast `/live` must answer during the flood.
const PROBE_BOUND: Duration = Duration::from_secs(1);

/// One hostile client: connects, pipelines `GET /metrics` requests and never reads an answer;
/// when the server closes the connection, it connects again. Ends when `stop` is cancelled.
async fn flood_client(
    addr: SocketAddr,
    stop: CancellationToken,
    connections: Arc<std::sync::atomic::AtomicUsize>,
) {
    let pipelined = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(64);
    while !stop.is_cancelled() {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            connected = TcpStream::connect(addr) => connected,
        };
        let Ok(mut stream) = connected else {
            tokio::task::yield_now().await;
            continue;
        };
        connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Writes block once the server stops reading (it cannot write its answers); an error
        // means the server closed the connection.
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                written = stream.write_all(pipelined.as_bytes()) => if written.is_err() { break },
            }
        }
    }
}

/// Runs `future` on a runtime of its own, on a thread of its own, until it returns.
fn on_own_runtime<F>(threads: usize, future: F) -> std::thread::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    })
}

#[tokio::test]
async fn live_answers_within_a_second_five_seconds_into_a_flood_of_pipelining_clients() {
    // The server runs apart from the flood, as the agent runs apart from its clients.
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server_stop = CancellationToken::new();
    let server = on_own_runtime(2, {
        let server_stop = server_stop.clone();
        async move {
            // The flood holds its slots for the whole test: no connection reaches its request
            // cap or its write timeout, so no slot frees up between two flood connections (with
            // the defaults one can, and a scrape slips in, which proves nothing).
            let config = HealthConfig {
                max_requests_per_connection: usize::MAX,
                write_timeout: Duration::from_secs(600),
                ..HealthConfig::default()
            };
            let server = start_with(config, Arc::new(Connected)).await;
            let _ = addr_tx.send(server.addr);
            server_stop.cancelled().await;
            server.stop().await;
        }
    });
    let addr = addr_rx.await.expect("the server starts");

    let flood_stop = CancellationToken::new();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = on_own_runtime(1, {
        let flood_stop = flood_stop.clone();
        let connections = Arc::clone(&connections);
        async move {
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..FLOOD_CLIENTS {
                clients.spawn(flood_client(
                    addr,
                    flood_stop.clone(),
                    Arc::clone(&connections),
                ));
            }
            while clients.join_next().await.is_some() {}
        }
    });
    tokio::time::sleep(FLOOD_LEAD).await;

    // The flood holds the general slots: a /metrics scrape on a new connection gets no answer.
    let client = reqwest::Client::builder()
        .timeout(PROBE_BOUND)
        .build()
        .expect("an HTTP client");
    let url = |path: &str| format!("http://{addr}{path}");
    let scrape = client.get(url("/metrics")).send().await;
    // A probe is answered, promptly, again and again.
    let mut probe_times = Vec::new();
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let live = client.get(url("/live")).send().await;
        let elapsed = asked.elapsed();
        let status = live.map(|response| response.status().as_u16());
        assert!(
            matches!(status, Ok(200)) && elapsed < PROBE_BOUND,
            "/live during the flood: {status:?} after {elapsed:?} (earlier: {probe_times:?}; \
             {connections:?} flood connections so far)"
        );
        probe_times.push(elapsed);
    }
    let ready = client
        .get(url("/ready"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    flood_stop.cancel();
    flood.join().expect("the flood ends");
    server_stop.cancel();
    server.join().expect("the server stops");

    assert!(
        scrape.is_err(),
        "the flood did not hold the general slots (a /metrics scrape was answered), so it proves nothing"
    );
    assert!(matches!(ready, Ok(503)), "/ready answers too: {ready:?}");
}
