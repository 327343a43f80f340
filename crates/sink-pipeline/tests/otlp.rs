//! The OTLP sink against the loopback receiver, which decodes every request with the published
//! OTLP message definitions (`opentelemetry-proto`), never with the sink's code: resource
//! attributes, timestamps and bodies line by line, headers, severity, and every class of
//! answer, called directly as the pipeline would and through the whole pipeline.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use capture_core::{
    ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position,
};
use sink_pipeline::{
    INPUT_CHANNEL_CAPACITY, OtlpSink, Pipeline, Sink, SinkError,
    config::{BatchConfig, OtlpSinkConfig, PipelineConfig, RetryConfig, Severity, SinkConfig},
};
use test_support::receiver::{
    ExportLogsServiceRequest, Push, Receiver, Reply, attribute, otlp_proto, partial_success,
    string_value,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use otlp_proto::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    resource::v1::Resource,
};

fn container(n: u8, name: &str, image: &str) -> Arc<ContainerInfo> {
    let id = ContainerId::new(format!("{n:02x}").repeat(32)).unwrap();
    let mut info = ContainerInfo::new(id, name, image);
    info.labels = BTreeMap::from([
        ("com.example.team".to_owned(), "web".to_owned()),
        ("com.example.secret".to_owned(), "not exported".to_owned()),
    ]);
    Arc::new(info)
}

fn batch(container: &Arc<ContainerInfo>, lines: &[(LogStream, i64, &str)]) -> EventBatch {
    let mut builder = EventBatchBuilder::new(Arc::clone(container));
    for &(stream, timestamp, message) in lines {
        builder.push(stream, Position::new(timestamp, 0), message.as_bytes());
    }
    builder.finish()
}

fn numbered(container: &Arc<ContainerInfo>, first: i64, count: i64) -> EventBatch {
    let lines: Vec<(LogStream, i64, String)> = (first..first + count)
        .map(|timestamp| {
            (
                LogStream::Stdout,
                timestamp,
                format!("{} {timestamp}", container.name),
            )
        })
        .collect();
    let borrowed: Vec<(LogStream, i64, &str)> = lines
        .iter()
        .map(|(stream, timestamp, line)| (*stream, *timestamp, line.as_str()))
        .collect();
    batch(container, &borrowed)
}

fn text(value: Option<&AnyValue>) -> &str {
    value
        .and_then(string_value)
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn logs(push: &Push) -> &ExportLogsServiceRequest {
    push.logs.as_ref().expect("an OTLP request")
}

/// (container.name, time_unix_nano, body, log.iostream) of every record, in request order.
fn records(push: &Push) -> Vec<(String, u64, String, String)> {
    let mut out = Vec::new();
    for resource_logs in &logs(push).resource_logs {
        let resource = resource_logs.resource.as_ref().unwrap();
        let name = text(attribute(&resource.attributes, "container.name")).to_owned();
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                out.push((
                    name.clone(),
                    record.time_unix_nano,
                    text(record.body.as_ref()).to_owned(),
                    text(attribute(&record.attributes, "log.iostream")).to_owned(),
                ));
            }
        }
    }
    out
}

fn only_records(push: &Push) -> Vec<&LogRecord> {
    logs(push)
        .resource_logs
        .iter()
        .flat_map(|logs| &logs.scope_logs)
        .flat_map(|scope| &scope.log_records)
        .collect()
}

#[tokio::test]
async fn records_carry_container_resources_docker_timestamps_bodies_and_streams() {
    let mut receiver = Receiver::start(vec![]);
    let mut sink = OtlpSink::new(resources_config(receiver.endpoint() + "/")).unwrap();
    let web = container(1, "web-1", "registry.local:5000/shop/web:1.27");
    let db = container(2, "db", "postgres");
    sink.deliver(&web_and_db_batches(&web, &db)).await.unwrap();

    let push = receiver.next_push().await;
    assert_eq!(push.method, "POST");
    assert_eq!(push.path, "/v1/logs");
    assert_eq!(push.header("content-encoding"), Some("gzip"));
    assert_eq!(push.header("authorization"), Some("Bearer otlp-token"));
    assert_eq!(push.header("x-scope-orgid"), Some("tenant-a"));
    assert_web_and_db_records(&push);
    let request = logs(&push);
    assert_eq!(
        request.resource_logs.len(),
        2,
        "one ResourceLogs per container"
    );
    assert_web_resource(request.resource_logs[0].resource.as_ref().unwrap());
    let db_resource = request.resource_logs[1].resource.as_ref().unwrap();
    assert!(attribute(&db_resource.attributes, "container.image.tags").is_none());
    assert_scope_and_no_severity(&push);
    assert!(receiver.received().is_empty());
}

/// A sink with headers, container labels and resource attributes, some from templates.
fn resources_config(endpoint: String) -> OtlpSinkConfig {
    let mut config = OtlpSinkConfig::new(endpoint);
    config.headers.0 = BTreeMap::from([
        ("Authorization".to_owned(), "Bearer otlp-token".to_owned()),
        ("X-Scope-OrgID".to_owned(), "tenant-a".to_owned()),
    ]);
    config.container_labels = vec!["com.example.team".into(), "com.example.absent".into()];
    config.resource_attributes = BTreeMap::from([
        ("service.name".to_owned(), "{container_name}".to_owned()),
        ("deployment.environment".to_owned(), "prod".to_owned()),
        ("empty".to_owned(), "{label.absent}".to_owned()),
    ]);
    config
}

/// Two lines of `web`, one of `db`, then an empty line of `web` again.
fn web_and_db_batches(web: &Arc<ContainerInfo>, db: &Arc<ContainerInfo>) -> [EventBatch; 3] {
    [
        batch(
            web,
            &[
                (LogStream::Stdout, 1_795_460_400_123_456_789, "GET / 200"),
                (
                    LogStream::Stderr,
                    1_795_460_400_123_456_790,
                    "warn \"quoted\" ☃",
                ),
            ],
        ),
        batch(db, &[(LogStream::Stdout, 5, "ready")]),
        batch(web, &[(LogStream::Stdout, 1_795_460_400_200_000_000, "")]),
    ]
}

/// The records of [`web_and_db_batches`], grouped by container, each in input order.
fn assert_web_and_db_records(push: &Push) {
    assert_eq!(
        records(push),
        [
            (
                "web-1".into(),
                1_795_460_400_123_456_789,
                "GET / 200".into(),
                "stdout".into()
            ),
            (
                "web-1".into(),
                1_795_460_400_123_456_790,
                "warn \"quoted\" ☃".into(),
                "stderr".into()
            ),
            (
                "web-1".into(),
                1_795_460_400_200_000_000,
                String::new(),
                "stdout".into()
            ),
            ("db".into(), 5, "ready".into(), "stdout".into()),
        ]
    );
}

/// `web`'s resource: its container attributes, the label and templates, the image's tags.
fn assert_web_resource(web_resource: &Resource) {
    let attributes: BTreeMap<&str, &str> = web_resource
        .attributes
        .iter()
        .filter_map(|KeyValue { key, value, .. }| {
            Some((key.as_str(), value.as_ref().and_then(string_value)?))
        })
        .collect();
    assert_eq!(
        attributes,
        BTreeMap::from([
            ("container.id", "01".repeat(32).as_str()),
            ("container.name", "web-1"),
            ("container.image.name", "registry.local:5000/shop/web"),
            ("container.label.com.example.team", "web"),
            ("service.name", "web-1"),
            ("deployment.environment", "prod"),
        ])
    );
    let tags = attribute(&web_resource.attributes, "container.image.tags").unwrap();
    let Some(Value::ArrayValue(tags)) = &tags.value else {
        panic!("tags are an array: {tags:?}")
    };
    assert_eq!(
        tags.values
            .iter()
            .filter_map(string_value)
            .collect::<Vec<_>>(),
        ["1.27"]
    );
}

/// One scope named `log-capturer` per resource; no severity nor observed time by default.
fn assert_scope_and_no_severity(push: &Push) {
    for resource_logs in &logs(push).resource_logs {
        assert_eq!(resource_logs.scope_logs.len(), 1);
        assert_eq!(
            resource_logs.scope_logs[0].scope.as_ref().unwrap().name,
            "log-capturer"
        );
    }
    for record in only_records(push) {
        assert_eq!(
            (record.severity_number, record.severity_text.as_str()),
            (0, "")
        );
        assert_eq!(record.observed_time_unix_nano, 0);
    }
}

#[tokio::test]
async fn severity_is_set_per_stream_when_configured_and_compression_can_be_off() {
    let mut receiver = Receiver::start(vec![]);
    let mut config: OtlpSinkConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\ncompression = \"none\"\nseverity = {{ stderr = \"error\" }}\n",
        receiver.endpoint()
    ))
    .unwrap();
    config.max_records = 1_000;
    assert_eq!(config.severity.stderr, Some(Severity::Error));
    let mut sink = OtlpSink::new(config).unwrap();
    let web = container(1, "web", "nginx");
    sink.deliver(&[batch(
        &web,
        &[(LogStream::Stdout, 1, "out"), (LogStream::Stderr, 2, "err")],
    )])
    .await
    .unwrap();
    let push = receiver.next_push().await;
    assert_eq!(push.header("content-encoding"), None);
    let severities: Vec<(i32, &str)> = only_records(&push)
        .iter()
        .map(|record| (record.severity_number, record.severity_text.as_str()))
        .collect();
    assert_eq!(severities, [(0, ""), (17, "ERROR")]);
}

#[tokio::test]
async fn a_large_delivery_is_split_by_max_records_and_resumes_after_the_requests_taken() {
    let mut receiver = Receiver::start(vec![
        Reply::Full {
            status: 200,
            headers: vec![],
            content_type: "application/x-protobuf".into(),
            body: vec![],
        },
        Reply::Status(503, "busy".into()),
    ]);
    let mut config = OtlpSinkConfig::new(receiver.endpoint());
    config.max_records = 4;
    let mut sink = OtlpSink::new(config).unwrap();
    let web = container(1, "web", "nginx");
    let batches = [numbered(&web, 0, 6), numbered(&web, 6, 4)];

    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient(_)), "{error:?}");
    assert!(error.retry_after().is_none());
    sink.deliver(&batches).await.unwrap();

    let bodies =
        |push: &Push| -> Vec<String> { records(push).into_iter().map(|record| record.2).collect() };
    let first = receiver.next_push().await;
    let refused = receiver.next_push().await;
    let resumed = [receiver.next_push().await, receiver.next_push().await];
    assert_eq!(bodies(&first), ["web 0", "web 1", "web 2", "web 3"]);
    assert_eq!(refused.status, 503);
    assert_eq!(bodies(&resumed[0]), ["web 4", "web 5", "web 6", "web 7"]);
    assert_eq!(bodies(&resumed[1]), ["web 8", "web 9"]);
    assert!(
        receiver.received().is_empty(),
        "the first request is not sent twice"
    );
}

#[tokio::test]
async fn answers_are_classified_and_retry_after_is_carried() {
    let mut receiver = Receiver::start(vec![
        Reply::Full {
            status: 429,
            headers: vec![("Retry-After".into(), "7".into())],
            content_type: "text/plain".into(),
            body: b"slow down".to_vec(),
        },
        Reply::Status(401, "who are you".into()),
        Reply::Status(413, "too large".into()),
        Reply::Status(400, "bad record".into()),
        partial_success(1, "record 2 is bad"),
    ]);
    let mut sink = OtlpSink::new(OtlpSinkConfig::new(receiver.endpoint())).unwrap();
    let web = container(1, "web", "nginx");
    let two = [numbered(&web, 0, 2)];

    let error = sink.deliver(&two).await.unwrap_err();
    assert!(matches!(error, SinkError::Transient(_)), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let error = sink.deliver(&two).await.unwrap_err();
    assert!(matches!(error, SinkError::Permanent(_)), "{error:?}");
    // 413: halves, the first refused with 400 and the second partially.
    let error = sink.deliver(&two).await.unwrap_err();
    assert!(matches!(error, SinkError::Rejected(_)), "{error:?}");
    let text = capture_core::ErrorChain(&error).to_string();
    assert!(text.contains("refused 1 of 1 requests"), "{text}");
    assert!(text.contains("bad record"), "{text}");
    let statuses: Vec<(u16, usize)> = receiver
        .received()
        .iter()
        .map(|push| (push.status, only_records(push).len()))
        .collect();
    assert_eq!(statuses, [(429, 2), (401, 2), (413, 2), (400, 1), (200, 1)]);
}

#[tokio::test]
async fn the_pipeline_waits_as_asked_by_retry_after_then_delivers_everything_once() {
    let mut receiver = Receiver::start(vec![Reply::Full {
        status: 503,
        headers: vec![("Retry-After".into(), "1".into())],
        content_type: "text/plain".into(),
        body: b"starting".to_vec(),
    }]);
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = OtlpSinkConfig::new(receiver.endpoint());
    config.retry = RetryConfig {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_secs(5),
        failing_after: Duration::from_secs(60),
    };
    let pipeline = Pipeline::new(
        PipelineConfig {
            batch: BatchConfig {
                max_events: 100,
                max_bytes: 1 << 20,
                max_age: Duration::from_millis(5),
            },
            sinks: vec![SinkConfig::Otlp(config)],
        },
        data_dir.path(),
    )
    .unwrap();
    let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (ack_tx, _ack_rx) = mpsc::unbounded_channel();
    let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));
    let web = container(1, "web", "nginx");
    batch_tx.send(numbered(&web, 0, 5)).await.unwrap();

    let refused = receiver.next_push().await;
    let refused_at = Instant::now();
    assert_eq!(refused.status, 503);
    let accepted = receiver.next_push().await;
    let waited = refused_at.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "retried after {waited:?}, not the 1 s asked"
    );
    assert!(accepted.accepted());
    let bodies: Vec<String> = records(&accepted)
        .into_iter()
        .map(|record| record.2)
        .collect();
    assert_eq!(bodies, ["web 0", "web 1", "web 2", "web 3", "web 4"]);
    drop(batch_tx);
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(receiver.received().is_empty());
}
