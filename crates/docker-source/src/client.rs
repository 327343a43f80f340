//! The Docker client: which endpoint, which transport, which API version.
//!
//! One client (and its configuration) serves the whole source for listing, inspecting and
//! events. Log streams are read by [`raw_logs`](crate::raw_logs) straight from the socket
//! ([`Endpoint`] tells where), except over TLS, where bollard's `logs()` is used: bollard keeps
//! no idle connection and hyper spawns each connection's task on the runtime that issues the
//! request, so a stream requested from a stream-worker thread stays on that thread either way.

use std::path::{Path, PathBuf};

use bollard::{ClientVersion, Docker};

use crate::{DockerConfig, Error, Result, transport};

/// The local socket used when neither `docker.host` nor `$DOCKER_HOST` names one.
pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A parsed `docker.host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix socket path.
    Unix(String),
    /// Plain HTTP to `host:port`.
    Http(String),
    /// HTTP over TLS to `host:port`.
    Https(String),
}

impl Endpoint {
    /// Parses `unix://PATH` (or a bare absolute path), `tcp://`, `http://` or `https://`.
    /// `tcp://` means TLS when `$DOCKER_TLS_VERIFY` is set, as for the docker CLI.
    pub(crate) fn parse(host: &str) -> Result<Endpoint> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.to_owned()));
        }
        if host.starts_with('/') {
            return Ok(Endpoint::Unix(host.to_owned()));
        }
        if let Some(address) = host.strip_prefix("https://") {
            return Ok(Endpoint::Https(address.to_owned()));
        }
        if let Some(address) = host.strip_prefix("http://") {
            return Ok(Endpoint::Http(address.to_owned()));
        }
        if let Some(address) = host.strip_prefix("tcp://") {
            let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
            return Ok(if tls {
                Endpoint::Https(address.to_owned())
            } else {
                Endpoint::Http(address.to_owned())
            });
        }
        Err(Error::config(
            "host",
            format!("{host:?}: expected unix://, tcp://, http:// or https://"),
        ))
    }
}

/// The host the source connects to: the configured one, `$DOCKER_HOST`, or the local socket,
/// without any `user:password@` (Docker takes none, and it must appear in no log line).
pub(crate) fn effective_host(config: &DockerConfig) -> String {
    let host = config
        .host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    capture_core::url::strip_userinfo(&host).into_owned()
}

fn cert_file(explicit: &Option<PathBuf>, name: &str) -> PathBuf {
    explicit.clone().unwrap_or_else(|| {
        let dir = std::env::var_os("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(|home| Path::new(&home).join(".docker"))
                    .unwrap_or_default()
            });
        dir.join(name)
    })
}

/// Builds a client for `host` speaking `version` (no I/O, except checking that a Unix socket
/// exists and reading TLS files).
pub(crate) fn connect(
    config: &DockerConfig,
    host: &str,
    version: &ClientVersion,
) -> Result<Docker> {
    let timeout = config.request_timeout.as_secs().max(1);
    match Endpoint::parse(host)? {
        Endpoint::Unix(path) => {
            Docker::connect_with_unix(&path, timeout, version).map_err(|source| Error::Client {
                host: host.to_owned(),
                source,
            })
        }
        // Over TCP, the connections need keepalive, which bollard's own connectors lack.
        Endpoint::Http(address) => transport::http(&address, timeout, version),
        Endpoint::Https(address) => {
            let (ca, cert, key) = (
                cert_file(&config.tls_ca, "ca.pem"),
                cert_file(&config.tls_cert, "cert.pem"),
                cert_file(&config.tls_key, "key.pem"),
            );
            let files = transport::TlsFiles {
                ca: &ca,
                cert: &cert,
                key: &key,
            };
            transport::https(&address, files, timeout, version)
        }
    }
}

/// The error of the first request to `host`: over TLS, a failure without an answer from the
/// daemon names the CA and client certificate files in use.
pub(crate) fn first_request_error(
    config: &DockerConfig,
    host: &str,
    operation: &'static str,
    source: bollard::errors::Error,
) -> Error {
    let tls = matches!(Endpoint::parse(host), Ok(Endpoint::Https(_)));
    if tls && crate::error::docker_status(&source).is_none() {
        let files = format!(
            "{host} (trusting the CA {}, presenting the client certificate {})",
            cert_file(&config.tls_ca, "ca.pem").display(),
            cert_file(&config.tls_cert, "cert.pem").display()
        );
        return Error::Tls {
            operation,
            files,
            source,
        };
    }
    Error::Docker { operation, source }
}

/// The version string `/health` shows: `1.41`.
pub(crate) fn version_string(docker: &Docker) -> String {
    let version = docker.client_version();
    format!("{}.{}", version.major_version, version.minor_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/run/docker.sock").unwrap(),
            Endpoint::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("https://10.0.0.1:2376").unwrap(),
            Endpoint::Https("10.0.0.1:2376".into())
        );
        assert_eq!(
            Endpoint::parse("http://10.0.0.1:2375").unwrap(),
            Endpoint::Http("10.0.0.1:2375".into())
        );
        assert!(Endpoint::parse("ssh://host").is_err());
    }

    #[test]
    fn a_tls_failure_names_the_files_in_use() {
        let config = DockerConfig {
            tls_ca: Some("/etc/agent/ca.pem".into()),
            tls_cert: Some("/etc/agent/cert.pem".into()),
            ..DockerConfig::default()
        };
        let refused = || bollard::errors::Error::RequestTimeoutError;
        let error = first_request_error(&config, "https://10.0.0.1:2376", "ping", refused());
        assert_eq!(
            error.to_string(),
            "Docker request failed: ping over TLS to https://10.0.0.1:2376 (trusting the CA \
             /etc/agent/ca.pem, presenting the client certificate /etc/agent/cert.pem)"
        );
        assert!(error.is_transient());
        let plain = first_request_error(&config, "unix:///run/docker.sock", "ping", refused());
        assert_eq!(plain.to_string(), "Docker request failed: ping");
        let answered = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "oops".into(),
        };
        let answered = first_request_error(&config, "https://10.0.0.1:2376", "ping", answered);
        assert!(matches!(answered, Error::Docker { .. }), "{answered:?}");
    }
}
