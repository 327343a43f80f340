//! Docker over TLS with client certificates, through the binary: the daemon's socket (the
//! docker CLI's: `test_support::docker::socket_path`; the daemon itself is never touched) behind a TLS-terminating HAProxy that requires a client certificate of the test's own CA
//! (`test_support::pki`, made with Debian's openssl). The capturer reads the logs through the TLS path (bollard's
//! `logs()`; `raw_logs` serves only `unix://` and `http://`), once configured the docker CLI's
//! way (`tcp://` with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`) and once with `https://` and
//! `docker.tls_*`. A wrong CA, and a client certificate the daemon's side does not trust, are
//! clear errors that keep the agent out of `/ready`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use end_to_end::{
    Capturer, check_records, container_tasks, file_sink_records, unique_label, wait_records,
};
use test_support::{
    checker::LineChecker,
    docker::{self, Container},
    haproxy::Haproxy,
    pki::TestPki,
};

/// Lines per stream the generator writes.
const LINES_PER_STREAM: u64 = 500;

/// How long a capture or an error may take to show.
const TIMEOUT: Duration = Duration::from_secs(60);

/// An HAProxy that terminates TLS with the test PKI's server certificate, requires a client
/// certificate signed by `client_ca`, and passes the bytes on to the Docker socket.
fn tls_proxy(dir: &Path, pki: &TestPki, client_ca: &Path) -> Haproxy {
    // HAProxy's `crt` is the certificate followed by its key.
    std::fs::create_dir_all(dir).expect("create the proxy's dir");
    let bundle = dir.join("server-bundle.pem");
    let read = |path: &Path| std::fs::read_to_string(path).expect("read a PEM file");
    std::fs::write(&bundle, read(&pki.server_cert) + &read(&pki.server_key))
        .expect("write the server bundle");
    Haproxy::start(&dir.join("haproxy"), |addr: SocketAddr| {
        format!(
            "global\n  log stdout format raw local0 info\n\
             defaults\n  mode tcp\n  log global\n  option tcplog\n  timeout connect 5s\n  \
             timeout client 1h\n  timeout server 1h\n\
             frontend docker_tls\n  bind {addr} ssl crt {} ca-file {} verify required\n  \
             default_backend dockerd\n\
             backend dockerd\n  server dockerd {}\n",
            bundle.display(),
            client_ca.display(),
            docker::socket_path().display()
        )
    })
}

/// A directory in the docker CLI's layout (`ca.pem`, `cert.pem`, `key.pem`, as
/// `$DOCKER_CERT_PATH` expects) trusting `ca` and presenting the test PKI's client certificate.
fn docker_cert_path(dir: &Path, pki: &TestPki, ca: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the cert dir");
    for (from, name) in [
        (ca, "ca.pem"),
        (pki.client_cert.as_path(), "cert.pem"),
        (pki.client_key.as_path(), "key.pem"),
    ] {
        std::fs::copy(from, dir.join(name)).expect("copy a PEM file");
    }
    dir.to_owned()
}

/// A loggen container with `label`, `LINES_PER_STREAM` lines on each stream, then idle.
fn generator(label: &str, tag: &str) -> Container {
    let lines = LINES_PER_STREAM.to_string();
    Container::run(&[
        "--label",
        label,
        docker::loggen_image(),
        "--tag",
        tag,
        "--lines",
        &lines,
        "--stream",
        "both",
        "--hold-secs",
        "-1",
    ])
}

/// Waits for every line of `container` in the file sink under `data_dir`, then checks them.
fn assert_captured_exactly_once(data_dir: &Path, container: &Container, tag: &str) {
    wait_records(data_dir, 2 * LINES_PER_STREAM as usize, TIMEOUT);
    let mut checker = LineChecker::default();
    checker.expect(container.id(), tag, LINES_PER_STREAM);
    check_records(&file_sink_records(data_dir), &mut checker);
    let report = checker.report();
    report.assert_perfect();
    assert_eq!(report.total_lines(), 2 * LINES_PER_STREAM);
}

#[test]
fn docker_over_tls_with_client_certificates_captures_every_line() {
    docker::require_daemon();
    let work = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(work.path());
    let proxy = tls_proxy(work.path(), &pki, &pki.ca);
    let cert_path = docker_cert_path(&work.path().join("docker-certs"), &pki, &pki.ca);

    let label = format!("log-capturer-e2e={}", unique_label("docker-tls"));
    let tag = "tls";
    // The docker CLI's way: tcp:// means TLS when DOCKER_TLS_VERIFY is set.
    let tcp_host = format!("tcp://{}", proxy.addr());
    let cert_dir = cert_path.to_string_lossy().into_owned();
    let data = tempfile::tempdir().expect("temp dir");
    let capturer = Capturer::start_with_env(
        data.path(),
        &["--include-label", &label],
        &[
            ("DOCKER_HOST", &tcp_host),
            ("DOCKER_TLS_VERIFY", "1"),
            // The lines must come through the TLS connection, not from the log files.
            ("LOG_CAPTURER_DOCKER_READ_MODE", "api"),
            ("DOCKER_CERT_PATH", &cert_dir),
        ],
    );
    capturer.wait_health(TIMEOUT, "Docker connected over TLS", |health| {
        health["docker"]["state"] == "connected"
    });
    let container = generator(&label, tag);
    assert_captured_exactly_once(data.path(), &container, tag);
    let health = capturer.health();
    let running = container_tasks(&health, "running");
    assert_eq!(running.len(), 1, "{health:#}");
    assert_eq!(running[0]["mode"], "api", "{health:#}");

    // `https://` with the `docker.tls_*` keys, reading the same container from its first line.
    let data = tempfile::tempdir().expect("temp dir");
    let https_host = format!("https://{}", proxy.addr());
    let files = |name: &str| cert_path.join(name).to_string_lossy().into_owned();
    let (ca_file, cert_file, key_file) = (files("ca.pem"), files("cert.pem"), files("key.pem"));
    let capturer = Capturer::start_with_env(
        data.path(),
        &["--include-label", &label, "--docker-host", &https_host],
        &[
            ("LOG_CAPTURER_DOCKER_READ_FROM", "beginning"),
            ("LOG_CAPTURER_DOCKER_READ_MODE", "api"),
            ("LOG_CAPTURER_DOCKER_TLS_CA", &ca_file),
            ("LOG_CAPTURER_DOCKER_TLS_CERT", &cert_file),
            ("LOG_CAPTURER_DOCKER_TLS_KEY", &key_file),
        ],
    );
    assert_captured_exactly_once(data.path(), &container, tag);
    let health = capturer.health();
    assert_eq!(health["docker"]["state"], "connected", "{health:#}");
    // Every connection went through the proxy's TLS frontend.
    assert!(
        proxy.log_text().contains("docker_tls"),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn docker_over_tls_with_a_wrong_ca_or_an_untrusted_client_is_a_clear_error() {
    docker::require_daemon();
    let work = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(work.path());

    // A CA that did not sign the daemon's certificate: the agent refuses the daemon, and says
    // which CA file it trusted.
    let proxy = tls_proxy(&work.path().join("trusting"), &pki, &pki.ca);
    let host = format!("tcp://{}", proxy.addr());
    let wrong_ca = docker_cert_path(&work.path().join("wrong-ca"), &pki, &pki.wrong_ca);
    let error = docker_error(&host, &wrong_ca);
    let ca_file = wrong_ca.join("ca.pem").display().to_string();
    assert!(
        error.contains(&format!("over TLS to {host} (trusting the CA {ca_file}"))
            && error.contains("invalid peer certificate"),
        "not a clear error for a wrong CA: {error}"
    );

    // A daemon's side that trusts another CA for its clients: it refuses the agent's client
    // certificate, which the error names.
    let refusing = tls_proxy(&work.path().join("refusing"), &pki, &pki.wrong_ca);
    let host = format!("tcp://{}", refusing.addr());
    let cert_path = docker_cert_path(&work.path().join("untrusted-client"), &pki, &pki.ca);
    let error = docker_error(&host, &cert_path);
    let cert_file = cert_path.join("cert.pem").display().to_string();
    assert!(
        error.contains(&format!("presenting the client certificate {cert_file}"))
            && error.contains("alert"),
        "not a clear error for an untrusted client certificate: {error}"
    );
}

/// Starts a capturer on `host` with `cert_path`, waits for its Docker error and returns it,
/// after checking it is also logged and keeps the agent unready with no container task.
fn docker_error(host: &str, cert_path: &Path) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    let cert_dir = cert_path.to_string_lossy().into_owned();
    let capturer = Capturer::start_with_env(
        data.path(),
        // No container carries this label: only the connection is under test.
        &["--include-label", "log-capturer-e2e=docker-tls-refused"],
        &[
            ("DOCKER_HOST", host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &cert_dir),
        ],
    );
    let health = capturer.wait_health(TIMEOUT, "a Docker error", |health| {
        health["docker"]["last_error"].is_string()
    });
    let error = health["docker"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(health["docker"]["state"], "connected", "{health:#}");
    assert!(container_tasks(&health, "running").is_empty(), "{health:#}");
    assert_eq!(capturer.get("/ready").0, 503);
    let log = capturer.log_text();
    assert!(
        log.contains("cannot reach Docker") && log.contains(&error),
        "the error is not in the log: {error}\n{log}"
    );
    error
}
