//! The Loki sink over TLS against the loopback receiver with certificates made by `openssl` in
//! the test: a private CA, `server_name`, mutual TLS, and a wrong CA (a permanent failure that
//! names the cause; the sink turns `failing` and nothing reaches the server).

use std::{path::Path, time::Duration};

use capture_core::status::SinkState;
use sink_pipeline::{
    INPUT_CHANNEL_CAPACITY, LokiSink, Pipeline, Sink, SinkError,
    config::{BatchConfig, LokiSinkConfig, PipelineConfig, RetryConfig, SinkConfig, TlsConfig},
};
use test_support::{
    pki::TestPki,
    receiver::{Receiver, ServerTls},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{container, lines_of, numbered};

fn pki() -> (tempfile::TempDir, TestPki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    (dir, pki)
}

fn server(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Receiver {
    Receiver::start_tls(
        vec![],
        ServerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: client_ca.map(Path::to_owned),
        },
    )
}

fn tls_config(endpoint: String, tls: TlsConfig) -> LokiSinkConfig {
    let mut config = LokiSinkConfig::new(endpoint);
    config.tls = tls;
    config
}

fn trusting(ca: &Path) -> TlsConfig {
    TlsConfig {
        ca_file: Some(ca.to_owned()),
        ..TlsConfig::default()
    }
}

#[tokio::test]
async fn a_private_ca_is_trusted_and_server_name_checks_another_name() {
    let (_dir, pki) = pki();
    let batches = [numbered(&container(1, "web"), 0, 2)];

    let mut loki = server(&pki.server_cert, &pki.server_key, None);
    let mut sink = LokiSink::new(tls_config(loki.endpoint(), trusting(&pki.ca))).unwrap();
    sink.deliver(&batches).await.unwrap();
    assert_eq!(lines_of(&loki.next_push().await), ["web 0", "web 1"]);

    // A certificate for another name: refused as it is, accepted with that name configured.
    let mut elsewhere = server(&pki.other_name_cert, &pki.other_name_key, None);
    let mut sink = LokiSink::new(tls_config(elsewhere.endpoint(), trusting(&pki.ca))).unwrap();
    let error = sink.deliver(&batches).await.unwrap_err();
    assert!(matches!(error, SinkError::Permanent(_)), "{error:?}");
    let named = TlsConfig {
        server_name: Some("elsewhere.test".into()),
        ..trusting(&pki.ca)
    };
    let mut sink = LokiSink::new(tls_config(elsewhere.endpoint(), named)).unwrap();
    sink.deliver(&batches).await.unwrap();
    let push = elsewhere.next_push().await;
    assert_eq!(lines_of(&push), ["web 0", "web 1"]);
    assert!(push.header("host").unwrap().starts_with("elsewhere.test:"));
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate_the_server_requires() {
    let (_dir, pki) = pki();
    let batches = [numbered(&container(1, "web"), 0, 1)];
    let mut loki = server(&pki.server_cert, &pki.server_key, Some(pki.ca.as_path()));

    let mut without = LokiSink::new(tls_config(loki.endpoint(), trusting(&pki.ca))).unwrap();
    let error = without.deliver(&batches).await.unwrap_err();
    let text = capture_core::ErrorChain(&error).to_string();
    assert!(matches!(error, SinkError::Permanent(_)), "{text}");
    assert!(text.contains("CertificateRequired"), "{text}");
    assert!(loki.received().is_empty());
    let refused = loki.wait_for_handshake_errors().await;
    assert!(
        refused
            .iter()
            .any(|e| e.contains("CertificateRequired") || e.contains("certificate")),
        "{refused:?} ({text})"
    );

    let with = TlsConfig {
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
        ..trusting(&pki.ca)
    };
    let mut sink = LokiSink::new(tls_config(loki.endpoint(), with)).unwrap();
    sink.deliver(&batches).await.unwrap();
    assert_eq!(lines_of(&loki.next_push().await), ["web 0"]);
}

#[test]
fn unusable_tls_settings_are_refused_when_the_sink_is_built() {
    let (_dir, pki) = pki();
    let cases = [
        (
            TlsConfig {
                cert_file: Some(pki.client_cert.clone()),
                ..TlsConfig::default()
            },
            "go together",
        ),
        (
            TlsConfig {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..TlsConfig::default()
            },
            "/nonexistent/ca.pem",
        ),
        (
            TlsConfig {
                ca_file: Some(pki.client_key.clone()),
                ..TlsConfig::default()
            },
            "holds no PEM certificate",
        ),
    ];
    for (tls, expected) in cases {
        let error =
            LokiSink::new(tls_config("https://127.0.0.1:1".into(), tls.clone())).unwrap_err();
        let text = capture_core::ErrorChain(&error).to_string();
        assert!(matches!(error, SinkError::Permanent(_)), "{tls:?}: {text}");
        assert!(text.contains(expected), "{tls:?}: {text}");
    }
    let plain =
        LokiSink::new(tls_config("http://127.0.0.1:1".into(), trusting(&pki.ca))).unwrap_err();
    assert!(
        capture_core::ErrorChain(&plain)
            .to_string()
            .contains("not https://")
    );
}

#[tokio::test]
async fn a_wrong_ca_makes_the_sink_failing_with_the_cause_and_nothing_is_sent() {
    let (_dir, pki) = pki();
    let mut loki = server(&pki.server_cert, &pki.server_key, None);
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = tls_config(loki.endpoint(), trusting(&pki.wrong_ca));
    config.retry = RetryConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        failing_after: Duration::from_secs(60),
    };
    let pipeline = Pipeline::new(
        PipelineConfig {
            batch: BatchConfig::default(),
            sinks: vec![SinkConfig::Loki(config)],
        },
        data_dir.path(),
    )
    .unwrap();
    let mut status = pipeline.status();
    let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (ack_tx, _ack_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, shutdown.clone()));
    batch_tx
        .send(numbered(&container(1, "web"), 0, 3))
        .await
        .unwrap();

    // Failing at once (a permanent error), long before `failing_after`.
    let snapshot = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|sinks| sinks[0].state == SinkState::Failing),
    )
    .await
    .expect("the sink turns failing")
    .unwrap()[0]
        .clone();
    let error = snapshot.last_error.unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("tls.ca_file"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    // Kept (in the disk buffer) for when the CA is fixed, never counted as sent.
    assert_eq!(snapshot.buffered_events, 3);
    assert!(snapshot.last_success.is_none());
    assert!(loki.received().is_empty());
    assert!(!loki.wait_for_handshake_errors().await.is_empty());

    shutdown.cancel();
    drop(batch_tx);
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
