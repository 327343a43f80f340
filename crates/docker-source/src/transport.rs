//! The bollard client's connections to a `tcp://` or `https://` daemon, with TCP keepalive.
//!
//! A TCP connection whose peer vanished without a word (a host that lost power, a NAT or
//! firewall that forgot the flow) stays "established" on our side forever: a read just waits.
//! The events stream is such a read, so a half-open events connection would hide every new
//! container. bollard builds its TCP connectors itself, without keepalive, so this module builds
//! the same hyper client (`hyper-util`'s legacy client, one connection per request, HTTP/1.1),
//! with keepalive on every socket, and hands it to bollard as a custom transport. Over TLS it
//! uses `hyper-rustls` with the daemon's CA (beside the system's roots) and the client
//! certificate and key, as `docker --tlsverify` does. Unix sockets need none of this: the
//! kernel knows both ends.

use std::{path::Path, sync::Arc, time::Duration};

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{Connect, HttpConnector},
    },
    rt::TokioExecutor,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{Error, Result};

/// How long a connection may be idle before the first keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// The interval between unanswered probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel closes the connection: a dead peer is noticed within
/// `KEEPALIVE_IDLE + KEEPALIVE_RETRIES * KEEPALIVE_INTERVAL` (one minute).
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;

/// Turns TCP keepalive on for `stream` (the raw log reader's connections).
pub(crate) fn set_tcp_keepalive(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// An HTTP connector whose sockets use keepalive.
fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_keepalive(Some(KEEPALIVE_IDLE));
    connector.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    connector.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    connector.set_nodelay(true);
    connector
}

/// A client for a plain HTTP daemon at `address` (`host:port`).
pub(crate) fn http(address: &str, timeout: u64, version: &ClientVersion) -> Result<Docker> {
    connect(connector(), format!("http://{address}"), timeout, version).map_err(|source| {
        Error::Client {
            host: format!("tcp://{address}"),
            source,
        }
    })
}

/// A bollard client whose requests go through hyper's client over `connector`, one
/// connection per request as bollard's own (a stream's connection is its own).
fn connect<C>(
    connector: C,
    host: String,
    timeout: u64,
    version: &ClientVersion,
) -> std::result::Result<Docker, bollard::errors::Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(connector));
    let transport = move |request: BollardRequest| {
        let client = Arc::clone(&client);
        async move {
            client
                .request(request)
                .await
                .map_err(bollard::errors::Error::from)
        }
    };
    Docker::connect_with_custom_transport(transport, Some(host), timeout, version)
}

/// The files of a TLS client: the daemon's CA, our certificate and our key (PEM).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    pub(crate) ca: &'a Path,
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
}

/// A client for a TLS daemon at `address` (`host:port`).
pub(crate) fn https(
    address: &str,
    files: TlsFiles<'_>,
    timeout: u64,
    version: &ClientVersion,
) -> Result<Docker> {
    let host = format!("https://{address}");
    let tls = tls_config(files).map_err(|(path, source)| Error::TlsFile {
        host: host.clone(),
        path: path.to_owned(),
        source,
    })?;
    let mut http = connector();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    connect(connector, host.clone(), timeout, version)
        .map_err(|source| Error::Client { host, source })
}

/// Why a TLS file cannot be used: the file and the cause.
type TlsFileError<'a> = (&'a Path, Box<dyn std::error::Error + Send + Sync>);

/// Attaches a file to an error.
fn at<'a, E>(path: &'a Path) -> impl FnOnce(E) -> TlsFileError<'a> + 'a
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |error| (path, Box::new(error))
}

/// The rustls configuration: trust the daemon's CA (and the system's roots, as the docker CLI
/// and bollard do), present our certificate.
fn tls_config(files: TlsFiles<'_>) -> Result<rustls::ClientConfig, TlsFileError<'_>> {
    let mut roots = rustls::RootCertStore::empty();
    // A system store that cannot be read leaves the CA file, which is what a daemon's
    // certificate is normally signed by.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    for certificate in CertificateDer::pem_file_iter(files.ca).map_err(at(files.ca))? {
        roots
            .add(certificate.map_err(at(files.ca))?)
            .map_err(at(files.ca))?;
    }
    let chain = CertificateDer::pem_file_iter(files.cert)
        .map_err(at(files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(at(files.cert))?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(at(files.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(at(files.key))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(at(files.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raw_connections_get_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(!socket.keepalive().unwrap());
        set_tcp_keepalive(&stream).unwrap();
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
    }

    #[test]
    fn missing_tls_files_are_a_clear_error() {
        let missing = Path::new("/nonexistent/ca.pem");
        let error = tls_config(TlsFiles {
            ca: missing,
            cert: missing,
            key: missing,
        })
        .unwrap_err();
        assert_eq!(error.0, missing);
        assert!(error.1.to_string().contains("No such file"), "{}", error.1);
    }
}
