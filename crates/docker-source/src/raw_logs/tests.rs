//! The raw log reader against a scripted server on a Unix socket: framing, errors, bad input.
//! (Against the real daemon it is exercised by every integration test of the crate.)

use std::time::Duration;

use bollard::errors::Error as DockerError;
use capture_core::LogStream;
use futures_util::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixListener,
    task::JoinHandle,
};

use super::{LogsRequest, RawEndpoint, RawLogs, State, logs};
use crate::frame::Frame;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A server that answers one request with `pieces`, written one by one, then closes (or, with
/// `hold`, keeps the connection open). Returns the request head it received.
struct Server {
    _dir: tempfile::TempDir,
    endpoint: RawEndpoint,
    task: JoinHandle<String>,
}

fn serve(pieces: Vec<Vec<u8>>, hold: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        for piece in pieces {
            if stream.write_all(&piece).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        if hold {
            std::future::pending::<()>().await;
        }
        String::from_utf8(head).unwrap()
    });
    Server {
        _dir: dir,
        endpoint: RawEndpoint::Unix(path),
        task,
    }
}

fn request(tty: bool) -> LogsRequest<'static> {
    LogsRequest {
        api_version: "1.41",
        container_id: "abc123",
        follow: true,
        since: 12,
        until: 0,
        tail: None,
        tty,
    }
}

fn open(server: &Server, tty: bool) -> RawLogs {
    logs(&server.endpoint, &request(tty), TIMEOUT)
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![kind, 0, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

const CHUNKED_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Every item until the end, or the first error.
async fn collect(mut stream: RawLogs) -> (Vec<Frame>, Option<DockerError>) {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(item) => items.push(item),
            Err(error) => return (items, Some(error)),
        }
    }
    (items, None)
}

fn describe(items: &[Frame]) -> Vec<String> {
    items
        .iter()
        .map(|Frame { stream, bytes }| {
            let kind = match stream {
                Some(LogStream::Stdout) => "out",
                Some(LogStream::Stderr) => "err",
                Some(LogStream::Tty) => "tty",
                None => "other",
            };
            format!("{kind}:{}", String::from_utf8_lossy(bytes))
        })
        .collect()
}

fn io_kind(error: &DockerError) -> std::io::ErrorKind {
    match error {
        DockerError::IOError { err } => err.kind(),
        other => panic!("not an I/O error: {other:?}"),
    }
}

#[tokio::test]
async fn the_request_asks_for_the_container_s_logs_with_timestamps() {
    let server = serve(vec![CHUNKED_OK.to_vec(), LAST_CHUNK.to_vec()], false);
    let (items, error) = collect(open(&server, false)).await;
    assert!(items.is_empty() && error.is_none(), "{error:?}");
    let head = server.task.await.unwrap();
    assert!(
        head.starts_with(
            "GET /v1.41/containers/abc123/logs?follow=1&stdout=1&stderr=1&since=12&timestamps=1&tail=all HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert!(head.contains("\r\nHost: docker\r\n"), "{head}");
}

#[tokio::test]
async fn frames_split_across_chunks_and_reads_come_out_whole_and_in_order() {
    let mut body = Vec::new();
    body.extend(frame(1, b"2024-01-01T00:00:00Z first\n"));
    body.extend(frame(2, b"2024-01-01T00:00:01Z second\n"));
    body.extend(frame(1, b"2024-01-01T00:00:02Z third\n"));
    // Chunks of 7 bytes, each written on its own, cut frame headers and chunk lines apart.
    let mut pieces = vec![CHUNKED_OK.to_vec()];
    for data in body.chunks(7) {
        let chunk = chunk(data);
        pieces.extend(chunk.chunks(3).map(<[u8]>::to_vec));
    }
    pieces.push(b"0\r\nX-Trailer: yes\r\n\r\n".to_vec());
    let server = serve(pieces, false);
    let (items, error) = collect(open(&server, false)).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        describe(&items),
        [
            "out:2024-01-01T00:00:00Z first\n",
            "err:2024-01-01T00:00:01Z second\n",
            "out:2024-01-01T00:00:02Z third\n",
        ]
    );
}

#[tokio::test]
async fn content_length_and_close_delimited_bodies_are_read_to_their_end() {
    let body = [frame(1, b"a\n"), frame(2, b"b\n")].concat();
    let with_length = [
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes(),
        body.clone(),
        // Past the announced length: not part of the body.
        frame(1, b"ignored\n"),
    ];
    let until_close = [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec(),
        body,
    ];
    for (pieces, hold) in [(with_length.to_vec(), true), (until_close.to_vec(), false)] {
        let server = serve(pieces, hold);
        let (items, error) = collect(open(&server, false)).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(describe(&items), ["out:a\n", "err:b\n"]);
    }
}

#[tokio::test]
async fn a_tty_stream_is_passed_on_as_raw_bytes() {
    let text = b"2024-01-01T00:00:00Z one\r\n2024-01-01T00:00:01Z two\r\n";
    let mut pieces = vec![CHUNKED_OK.to_vec()];
    pieces.extend(text.chunks(10).map(chunk));
    pieces.push(LAST_CHUNK.to_vec());
    let server = serve(pieces, false);
    let (items, error) = collect(open(&server, true)).await;
    assert!(error.is_none(), "{error:?}");
    let mut joined = Vec::new();
    for item in items {
        assert_eq!(item.stream, Some(LogStream::Tty), "{item:?}");
        joined.extend_from_slice(&item.bytes);
    }
    assert_eq!(joined, text);
}

#[tokio::test]
async fn an_error_answer_carries_docker_s_status_and_message() {
    for (status, reason) in [(404, "Not Found"), (501, "Not Implemented")] {
        let body = r#"{"message":"No such container: abc123"}"#;
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let server = serve(vec![answer.into_bytes()], true);
        let (items, error) = collect(open(&server, false)).await;
        assert!(items.is_empty());
        match error {
            Some(DockerError::DockerResponseServerError {
                status_code,
                message,
            }) => {
                assert_eq!(status_code, status);
                assert_eq!(message, "No such container: abc123");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_answers_are_errors_not_panics() {
    let oversized = {
        let mut header = vec![1, 0, 0, 0];
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        header
    };
    let cases: Vec<(&str, Vec<Vec<u8>>, std::io::ErrorKind)> = vec![
        (
            "bad chunk size",
            vec![CHUNKED_OK.to_vec(), b"zz\r\nhello\r\n".to_vec()],
            std::io::ErrorKind::InvalidData,
        ),
        (
            "chunk data not followed by CRLF",
            vec![CHUNKED_OK.to_vec(), b"2\r\nabXY".to_vec()],
            std::io::ErrorKind::InvalidData,
        ),
        (
            "endless chunk size line",
            vec![CHUNKED_OK.to_vec(), vec![b'1'; 10_000]],
            std::io::ErrorKind::InvalidData,
        ),
        (
            "frame header announcing 4 GiB",
            vec![CHUNKED_OK.to_vec(), chunk(&oversized)],
            std::io::ErrorKind::InvalidData,
        ),
        (
            "body ends inside a frame",
            vec![
                CHUNKED_OK.to_vec(),
                chunk(&frame(1, b"cut")[..9]),
                LAST_CHUNK.to_vec(),
            ],
            std::io::ErrorKind::InvalidData,
        ),
        (
            "connection closed inside a chunked body",
            vec![CHUNKED_OK.to_vec(), chunk(&frame(1, b"whole\n"))],
            std::io::ErrorKind::UnexpectedEof,
        ),
        (
            "closed before answering",
            vec![],
            std::io::ErrorKind::UnexpectedEof,
        ),
        (
            "not HTTP",
            vec![b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()],
            std::io::ErrorKind::InvalidData,
        ),
        (
            "unknown transfer coding",
            vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec()],
            std::io::ErrorKind::InvalidData,
        ),
    ];
    for (what, pieces, kind) in cases {
        let server = serve(pieces, false);
        let (_, error) = collect(open(&server, false)).await;
        let error = error.unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(io_kind(&error), kind, "{what}: {error:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_never_answers_times_out() {
    let server = serve(vec![], true);
    let (_, error) = collect(logs(&server.endpoint, &request(false), TIMEOUT)).await;
    assert!(
        matches!(error, Some(DockerError::RequestTimeoutError)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_missing_socket_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = RawEndpoint::Unix(dir.path().join("none.sock"));
    let (_, error) = collect(logs(&endpoint, &request(false), TIMEOUT)).await;
    assert_eq!(
        io_kind(&error.expect("an error")),
        std::io::ErrorKind::NotFound
    );
}

/// Frames written one by one (a wake-up each) make the stream hot: its socket is parked (read
/// on a timer, not on every write); a writer that then outpaces the timer puts it back under
/// the reactor; every frame arrives once, in order, and a late one after a quiet spell too.
/// Paused time: the policy's clock is tokio's, so the test does not depend on the machine.
#[tokio::test(start_paused = true)]
async fn a_hot_stream_is_read_on_a_timer_without_losing_a_frame() {
    const FRAMES: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (late_tx, late_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head).await.unwrap();
        stream.write_all(CHUNKED_OK).await.unwrap();
        for n in 0..FRAMES {
            let line = format!("2024-01-01T00:00:00Z line {n}\n");
            stream
                .write_all(&chunk(&frame(1, line.as_bytes())))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        late_rx.await.unwrap();
        stream
            .write_all(&chunk(&frame(2, b"late\n")))
            .await
            .unwrap();
        stream.write_all(LAST_CHUNK).await.unwrap();
    });
    let mut stream = logs(&RawEndpoint::Unix(path), &request(false), TIMEOUT);
    let mut parked_seen = false;
    let mut unparked_after = false;
    for n in 0..FRAMES {
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(
            describe(&[item]),
            [format!("out:2024-01-01T00:00:00Z line {n}\n")]
        );
        if let State::Reading(body) = &stream.state {
            let parked = matches!(body.socket, super::socket::Socket::Parked(_));
            unparked_after |= parked_seen && !parked;
            parked_seen |= parked;
        }
    }
    assert!(parked_seen, "the socket was never parked");
    assert!(
        unparked_after,
        "the socket never went back under the reactor"
    );
    late_tx.send(()).unwrap();
    let late = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("the late frame is read")
        .unwrap()
        .unwrap();
    assert_eq!(describe(&[late]), ["err:late\n"]);
    assert!(stream.next().await.is_none());
    server.await.unwrap();
}
