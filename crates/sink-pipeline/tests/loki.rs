//! The Loki sink against a fake Loki on loopback: both encodings, labels, headers, and every
//! class of answer, called directly as the pipeline would and through the whole pipeline.

mod loki {
    mod tls;
}

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use capture_core::{
    ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position,
};
use sink_pipeline::{
    INPUT_CHANNEL_CAPACITY, LokiSink, Pipeline, Sink, SinkError,
    config::{
        BatchConfig, LokiAuth, LokiCompression, LokiOutOfOrder, LokiSinkConfig, PipelineConfig,
        RetryConfig, SinkConfig,
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use test_support::receiver::{Push, Receiver, Reply};

fn container(n: u8, name: &str) -> Arc<ContainerInfo> {
    let id = ContainerId::new(format!("{n:02x}").repeat(32)).unwrap();
    let mut info = ContainerInfo::new(id, name, "nginx:1.27");
    info.labels = BTreeMap::from([("com.example.team".to_owned(), "web".to_owned())]);
    Arc::new(info)
}

fn batch(container: &Arc<ContainerInfo>, lines: &[(LogStream, i64, &str)]) -> EventBatch {
    let mut builder = EventBatchBuilder::new(Arc::clone(container));
    for &(stream, timestamp, message) in lines {
        builder.push(stream, Position::new(timestamp, 0), message.as_bytes());
    }
    builder.finish()
}

/// `count` stdout lines `"<name> <i>"` with timestamps `first + i`.
fn numbered(container: &Arc<ContainerInfo>, first: i64, count: i64) -> EventBatch {
    let mut builder = EventBatchBuilder::new(Arc::clone(container));
    for timestamp in first..first + count {
        let line = format!("{} {timestamp}", container.name);
        builder.push(
            LogStream::Stdout,
            Position::new(timestamp, 0),
            line.as_bytes(),
        );
    }
    builder.finish()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn lines_of(push: &Push) -> Vec<&str> {
    push.streams
        .iter()
        .flat_map(|stream| stream.entries.iter().map(|(_, line)| line.as_str()))
        .collect()
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test]
async fn gzip_json_push_carries_templated_labels_sorted_entries_tenant_and_basic_auth() {
    let mut loki = Receiver::start(vec![]);
    let mut password_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(password_file, "s3cret").unwrap();
    let mut config = LokiSinkConfig::new(loki.endpoint() + "/");
    config.labels = labels(&[
        ("job", "capturer"),
        ("app.name", "{container_name}"),
        ("team", "{label.com.example.team}"),
        ("origin", "{image} on {stream}"),
        ("empty", "{label.absent}"),
    ]);
    config.tenant_id = Some("tenant-a".into());
    config.auth = Some(LokiAuth::Basic {
        username: "loki-user".into(),
        password: None,
        password_file: Some(password_file.path().to_owned()),
        password_env: None,
    });
    let mut sink = LokiSink::new(config).unwrap();

    let web = container(1, "web-1");
    let batches = [
        batch(
            &web,
            &[
                (LogStream::Stdout, 3_000, "third"),
                (LogStream::Stderr, 2_500, "err \"quoted\"\n"),
                (LogStream::Stdout, 1_000, "first"),
            ],
        ),
        batch(&web, &[(LogStream::Stdout, 2_000, "second ☃")]),
    ];
    sink.deliver(&batches).await.unwrap();

    let push = loki.next_push().await;
    assert_eq!(push.method, "POST");
    assert_eq!(push.path, "/loki/api/v1/push");
    assert_eq!(push.header("content-type"), Some("application/json"));
    assert_eq!(push.header("content-encoding"), Some("gzip"));
    assert_eq!(push.header("x-scope-orgid"), Some("tenant-a"));
    assert_eq!(
        push.header("authorization"),
        Some("Basic bG9raS11c2VyOnMzY3JldA==")
    );
    assert_eq!(push.streams.len(), 2);
    let stdout = &push.streams[0];
    assert_eq!(
        stdout.labels,
        labels(&[
            ("job", "capturer"),
            ("app_name", "web-1"),
            ("team", "web"),
            ("origin", "nginx:1.27 on stdout"),
        ])
    );
    assert_eq!(
        stdout.entries,
        [
            (1_000, "first".to_owned()),
            (2_000, "second ☃".to_owned()),
            (3_000, "third".to_owned()),
        ]
    );
    assert_eq!(push.streams[1].labels["origin"], "nginx:1.27 on stderr");
    assert_eq!(
        push.streams[1].entries,
        [(2_500, "err \"quoted\"\n".to_owned())]
    );
}

#[tokio::test]
async fn snappy_protobuf_push_carries_the_same_streams_and_a_bearer_token() {
    let mut loki = Receiver::start(vec![]);
    let mut config = LokiSinkConfig::new(loki.endpoint());
    config.compression = LokiCompression::Snappy;
    config.labels = labels(&[
        ("container", "{container_name}"),
        ("id", "{container_id}"),
        ("stream", "{stream}"),
    ]);
    let mut token_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(token_file, "t0ken").unwrap();
    config.auth = Some(LokiAuth::Bearer {
        token: None,
        token_file: Some(token_file.path().to_owned()),
        token_env: None,
    });
    let mut sink = LokiSink::new(config).unwrap();

    let (web, db) = (container(1, "web-1"), container(2, "db"));
    let before_epoch = -1_500_000_000;
    let batches = [
        batch(
            &web,
            &[(LogStream::Stdout, 1_700_000_000_123_456_789, "GET / 200")],
        ),
        batch(
            &db,
            &[
                (LogStream::Stdout, 1_700_000_001_000_000_000, "ready"),
                (LogStream::Stdout, before_epoch, "from the past"),
            ],
        ),
    ];
    sink.deliver(&batches).await.unwrap();

    let push = loki.next_push().await;
    assert_eq!(push.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(push.header("content-encoding"), None);
    assert_eq!(push.header("x-scope-orgid"), None);
    assert_eq!(push.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(push.streams.len(), 2);
    assert_eq!(
        push.streams[0].labels,
        labels(&[
            ("container", "web-1"),
            ("id", web.id.as_str()),
            ("stream", "stdout"),
        ])
    );
    assert_eq!(
        push.streams[0].entries,
        [(1_700_000_000_123_456_789, "GET / 200".to_owned())]
    );
    assert_eq!(push.streams[1].labels["container"], "db");
    assert_eq!(
        push.streams[1].entries,
        [
            (before_epoch, "from the past".to_owned()),
            (1_700_000_001_000_000_000, "ready".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_429_is_transient_and_the_retry_delivers_once() {
    let mut loki = Receiver::start(vec![Reply::Status(429, "slow down".into())]);
    let mut sink = LokiSink::new(LokiSinkConfig::new(loki.endpoint())).unwrap();
    let batches = [numbered(&container(1, "web"), 0, 3)];

    // What the pipeline does: the same batches again after a transient error.
    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient(_)), "{error:?}");
    sink.deliver(&batches).await.unwrap();

    let (refused, accepted) = (loki.next_push().await, loki.next_push().await);
    assert_eq!(refused.status, 429);
    assert!(accepted.accepted());
    assert_eq!(lines_of(&accepted), ["web 0", "web 1", "web 2"]);
    assert!(loki.received().is_empty());
}

#[tokio::test]
async fn a_split_delivery_resumes_after_the_requests_loki_already_took() {
    let mut loki = Receiver::start(vec![
        Reply::Status(204, String::new()),
        Reply::Status(503, "ingester unavailable".into()),
    ]);
    let mut config = LokiSinkConfig::new(loki.endpoint());
    config.max_entries = 2;
    let mut sink = LokiSink::new(config).unwrap();
    let batches = [numbered(&container(1, "web"), 0, 6)];

    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    sink.deliver(&batches).await.unwrap();

    let pushes: Vec<Push> = [
        loki.next_push().await,
        loki.next_push().await,
        loki.next_push().await,
        loki.next_push().await,
    ]
    .into();
    let statuses: Vec<u16> = pushes.iter().map(|push| push.status).collect();
    assert_eq!(statuses, [204, 503, 204, 204]);
    let accepted: Vec<&str> = pushes
        .iter()
        .filter(|push| push.accepted())
        .flat_map(lines_of)
        .collect();
    assert_eq!(
        accepted,
        ["web 0", "web 1", "web 2", "web 3", "web 4", "web 5"]
    );
    assert!(loki.received().is_empty());
}

#[tokio::test]
async fn a_413_splits_the_request_in_halves() {
    let mut loki = Receiver::start(vec![Reply::Status(413, "too large".into())]);
    let mut sink = LokiSink::new(LokiSinkConfig::new(loki.endpoint())).unwrap();
    sink.deliver(&[numbered(&container(1, "web"), 0, 4)])
        .await
        .unwrap();

    assert_eq!(loki.next_push().await.entry_count(), 4);
    let (first, second) = (loki.next_push().await, loki.next_push().await);
    assert_eq!(lines_of(&first), ["web 0", "web 1"]);
    assert_eq!(lines_of(&second), ["web 2", "web 3"]);
}

const OUT_OF_ORDER: &str = "entry with timestamp 1970-01-01 00:00:00.000000001 +0000 UTC ignored, \
     reason: 'entry out of order' for stream: {container_name=\"web\", job=\"log-capturer\", stream=\"stdout\"},\n\
     total ignored: 2 out of 3";

#[tokio::test]
async fn an_out_of_order_refusal_is_rejected_with_the_drop_policy() {
    let mut loki = Receiver::start(vec![Reply::Status(400, OUT_OF_ORDER.into())]);
    let mut sink = LokiSink::new(LokiSinkConfig::new(loki.endpoint())).unwrap();
    let error = sink
        .deliver(&[numbered(&container(1, "web"), 1, 3)])
        .await
        .unwrap_err();
    assert!(matches!(error, SinkError::Rejected(_)), "{error:?}");
    assert_eq!(loki.next_push().await.status, 400);
    // Dropped: nothing is sent again, and the next delivery starts afresh.
    sink.deliver(&[numbered(&container(1, "web"), 10, 1)])
        .await
        .unwrap();
    assert_eq!(lines_of(&loki.next_push().await), ["web 10"]);
}

#[tokio::test]
async fn an_out_of_order_refusal_is_resent_stamped_now_with_rewrite_timestamp() {
    let mut loki = Receiver::start(vec![Reply::Status(400, OUT_OF_ORDER.into())]);
    let mut config = LokiSinkConfig::new(loki.endpoint());
    config.out_of_order = LokiOutOfOrder::RewriteTimestamp;
    let mut sink = LokiSink::new(config).unwrap();
    let web = container(1, "web");
    let batches = [batch(
        &web,
        &[
            (LogStream::Stdout, 1, "a"),
            (LogStream::Stderr, 2, "err"),
            (LogStream::Stdout, 3, "b"),
            (LogStream::Stdout, 5, "c"),
        ],
    )];
    let before = now_nanos();
    sink.deliver(&batches).await.unwrap();

    let refused = loki.next_push().await;
    assert_eq!(refused.streams.len(), 2);
    // Only the stream Loki named is sent again, in order, with increasing current timestamps.
    let resent = loki.next_push().await;
    assert!(resent.accepted());
    assert_eq!(resent.streams.len(), 1);
    assert_eq!(resent.streams[0].labels["stream"], "stdout");
    let entries = &resent.streams[0].entries;
    let lines: Vec<&str> = entries.iter().map(|(_, line)| line.as_str()).collect();
    assert_eq!(lines, ["a", "b", "c"]);
    assert!(entries[0].0 >= before, "{entries:?} not stamped now");
    assert!(
        entries.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "{entries:?}"
    );

    // Refused again: dropped, not retried a third time.
    loki.then([
        Reply::Status(400, OUT_OF_ORDER.into()),
        Reply::Status(400, OUT_OF_ORDER.into()),
    ]);
    let error = sink.deliver(&[numbered(&web, 1, 1)]).await.unwrap_err();
    assert!(matches!(error, SinkError::Rejected(_)), "{error:?}");
    assert_eq!(loki.next_push().await.status, 400);
    assert_eq!(loki.next_push().await.status, 400);
    assert!(loki.received().is_empty());
}

#[tokio::test]
async fn a_garbage_answer_is_a_transient_error_and_the_sink_recovers() {
    let mut loki = Receiver::start(vec![Reply::Garbage(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")]);
    let mut sink = LokiSink::new(LokiSinkConfig::new(loki.endpoint())).unwrap();
    let batches = [numbered(&container(1, "web"), 0, 2)];
    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient(_)), "{error:?}");
    sink.deliver(&batches).await.unwrap();
    assert_eq!(loki.next_push().await.status, 0);
    assert!(loki.next_push().await.accepted());
}

#[tokio::test]
async fn unauthorised_is_permanent_and_a_closed_port_transient() {
    let mut loki = Receiver::start(vec![Reply::Status(401, "no org id".into())]);
    let mut sink = LokiSink::new(LokiSinkConfig::new(loki.endpoint())).unwrap();
    let batches = [numbered(&container(1, "web"), 0, 1)];
    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(matches!(error, SinkError::Permanent(_)), "{error:?}");
    assert_eq!(loki.next_push().await.status, 401);

    let endpoint = loki.endpoint();
    drop(loki);
    // The listener is closed with the server: connecting is refused.
    let mut sink = LokiSink::new(LokiSinkConfig::new(endpoint)).unwrap();
    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient(_)), "{error:?}");
}

/// A pipeline of one Loki sink at `endpoint` with small requests, retrying every few
/// milliseconds and never `failing`.
fn quickly_retrying_pipeline(endpoint: String, data_dir: &Path) -> Pipeline {
    let mut config = LokiSinkConfig::new(endpoint);
    config.max_entries = 7;
    config.retry = RetryConfig {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        failing_after: Duration::from_secs(60),
    };
    let config = PipelineConfig {
        batch: BatchConfig {
            max_events: 20,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(5),
        },
        sinks: vec![SinkConfig::Loki(config)],
    };
    Pipeline::new(config, data_dir).unwrap()
}

/// Receives pushes until Loki accepted `total` entries: the accepted entries by container
/// name, in arrival order, and how many pushes were refused meanwhile.
async fn receive_entries(
    loki: &mut Receiver,
    total: usize,
) -> (HashMap<String, Vec<(i64, String)>>, usize) {
    let mut accepted: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut accepted_count = 0;
    let mut refused = 0;
    while accepted_count < total {
        let push = loki.next_push().await;
        if !push.accepted() {
            refused += 1;
            continue;
        }
        for stream in push.streams {
            accepted_count += stream.entries.len();
            accepted
                .entry(stream.labels["container_name"].clone())
                .or_default()
                .extend(stream.entries);
        }
    }
    (accepted, refused)
}

#[tokio::test]
async fn the_pipeline_delivers_every_line_once_in_order_after_loki_was_unavailable() {
    const UNAVAILABLE_ANSWERS: usize = 6;
    let mut loki = Receiver::start(
        (0..UNAVAILABLE_ANSWERS)
            .map(|_| Reply::Status(503, "starting".into()))
            .collect(),
    );
    let data_dir = tempfile::tempdir().unwrap();
    let pipeline = quickly_retrying_pipeline(loki.endpoint(), data_dir.path());
    let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));

    let containers = [
        container(1, "web"),
        container(2, "db"),
        container(3, "cache"),
    ];
    const BATCHES: i64 = 10;
    const LINES: i64 = 5;
    for round in 0..BATCHES {
        for container in &containers {
            batch_tx
                .send(numbered(container, round * LINES, LINES))
                .await
                .unwrap();
        }
    }

    // The input stays open until Loki has everything: a pipeline whose input closes returns
    // once every delivery is accepted *or persisted* to the disk buffer, for the next run.
    let total = containers.len() * (BATCHES * LINES) as usize;
    let (accepted, refused) = receive_entries(&mut loki, total).await;
    drop(batch_tx);
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the pipeline stops once its input is closed and delivered")
        .unwrap()
        .unwrap();
    assert_eq!(refused, UNAVAILABLE_ANSWERS);
    assert!(loki.received().is_empty(), "nothing is sent twice");
    for container in &containers {
        let expected: Vec<(i64, String)> = (0..BATCHES * LINES)
            .map(|timestamp| (timestamp, format!("{} {timestamp}", container.name)))
            .collect();
        assert_eq!(accepted[&container.name], expected, "{}", container.name);
    }
    let mut acknowledged = 0;
    while let Ok(ack) = ack_rx.try_recv() {
        assert_eq!(ack.stream, LogStream::Stdout);
        acknowledged += 1;
    }
    assert!(acknowledged >= containers.len());
}

#[tokio::test]
async fn the_pipeline_counts_an_out_of_order_refusal_as_dropped() {
    let mut loki = Receiver::start(vec![Reply::Status(400, OUT_OF_ORDER.into())]);
    let data_dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::new(
        PipelineConfig {
            batch: BatchConfig::default(),
            sinks: vec![SinkConfig::Loki(LokiSinkConfig::new(loki.endpoint()))],
        },
        data_dir.path(),
    )
    .unwrap();
    let mut status_rx = pipeline.status();
    let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));
    batch_tx
        .send(numbered(&container(1, "web"), 0, 3))
        .await
        .unwrap();

    // A rejected delivery is still acknowledged: the source must not wait for it forever.
    let ack = tokio::time::timeout(Duration::from_secs(30), ack_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack.position, Position::new(2, 0));
    let snapshot = status_rx
        .wait_for(|sinks| sinks[0].dropped_events == 3)
        .await
        .unwrap()
        .clone();
    assert!(
        snapshot[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("out of order")
    );
    assert_eq!(loki.next_push().await.status, 400);
    drop(batch_tx);
    running.await.unwrap().unwrap();
    assert!(loki.received().is_empty());
}

/// A multiline event (a stack trace joined by the source) is one Loki entry, byte for byte, in
/// both encodings.
#[tokio::test]
async fn a_joined_stack_trace_is_one_entry_in_both_encodings() {
    let trace = "java.lang.IllegalStateException: order 42 has no customer\n\
                 \tat com.example.orders.OrderService.load(OrderService.java:57) ~[classes/:na]\n\
                 Caused by: java.sql.SQLException: connection is closed \"db-1\"\n\
                 \t... 4 common frames omitted";
    let web = container(1, "web-1");
    let batches = [batch(
        &web,
        &[
            (LogStream::Stderr, 1_000, "before"),
            (LogStream::Stderr, 2_000, trace),
            (LogStream::Stderr, 3_000, "after"),
        ],
    )];
    for compression in [LokiCompression::Gzip, LokiCompression::Snappy] {
        let mut loki = Receiver::start(vec![]);
        let mut config = LokiSinkConfig::new(loki.endpoint());
        config.compression = compression;
        let mut sink = LokiSink::new(config).unwrap();
        sink.deliver(&batches).await.unwrap();
        let push = loki.next_push().await;
        assert_eq!(push.entry_count(), 3, "{compression:?}");
        assert_eq!(
            lines_of(&push),
            ["before", trace, "after"],
            "{compression:?}"
        );
    }
}
