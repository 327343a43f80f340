//! The `tls` table of the HTTP sinks, applied to a reqwest (rustls) client builder, and the
//! TLS failures that only an operator can fix.

use std::{
    error::Error as StdError,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use reqwest::{
    ClientBuilder, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    tls::{Certificate, Identity},
};
use rustls::AlertDescription;
use serde::{Deserialize, Serialize};

use super::error::HttpError;

/// `tls = { ca_file = ..., cert_file = ..., key_file = ..., server_name = ... }`: how an
/// `https://` endpoint is verified and how the sink proves who it is.
///
/// Without it, the server's certificate is checked against the system's root certificates.
/// Only paths are configured (and printed); the key's contents are read when the sink is built
/// and stay inside the TLS client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust instead of the system's roots (one or
    /// more certificates), for a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain), for servers that verify clients
    /// (mTLS). Needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry and that is sent in SNI, when it differs
    /// from the endpoint's host (for example an endpoint given by IP address). Connections
    /// still go to the endpoint's host, as if `server_name` resolved to it.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Whether any key is set.
    pub(crate) fn is_set(&self) -> bool {
        *self != TlsConfig::default()
    }

    /// Applies the configuration to `builder` for requests to `url`, and returns the URL to
    /// send requests to (its host replaced by `server_name`, if set).
    pub(crate) fn apply(
        &self,
        mut builder: ClientBuilder,
        mut url: Url,
    ) -> Result<(ClientBuilder, Url), HttpError> {
        if let Some(ca_file) = &self.ca_file {
            let pem = read("tls.ca_file", ca_file)?;
            let roots = Certificate::from_pem_bundle(&pem).map_err(|source| HttpError::Tls {
                what: "tls.ca_file",
                path: ca_file.clone(),
                source,
            })?;
            if roots.is_empty() {
                return Err(HttpError::config(format!(
                    "tls.ca_file {} holds no PEM certificate",
                    ca_file.display()
                )));
            }
            builder = builder.tls_built_in_root_certs(false);
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let mut pem = read("tls.cert_file", cert_file)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read("tls.key_file", key_file)?);
                let identity = Identity::from_pem(&pem).map_err(|source| HttpError::Tls {
                    what: "tls.cert_file and tls.key_file",
                    path: cert_file.clone(),
                    source,
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(HttpError::config(
                    "tls.cert_file and tls.key_file go together: set both or neither",
                ));
            }
        }
        if let Some(server_name) = &self.server_name {
            let resolver = ServerNameResolver::new(server_name, &url)?;
            url.set_host(Some(server_name)).map_err(|error| {
                HttpError::config(format!(
                    "tls.server_name {server_name:?} is not a host name: {error}"
                ))
            })?;
            builder = builder.dns_resolver(Arc::new(resolver));
        }
        Ok((builder, url))
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|source| HttpError::File {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Resolves `server_name` to the endpoint's own host, so the request is addressed (SNI,
/// certificate check, `Host`) to the name while it connects where the endpoint points.
#[derive(Debug)]
struct ServerNameResolver {
    server_name: String,
    host: String,
}

impl ServerNameResolver {
    fn new(server_name: &str, url: &Url) -> Result<ServerNameResolver, HttpError> {
        let Some(host) = url.host_str() else {
            return Err(HttpError::config("the endpoint has no host"));
        };
        // An IPv6 address is written in brackets in a URL, but looked up without.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(ServerNameResolver {
            server_name: server_name.to_ascii_lowercase(),
            host,
        })
    }
}

impl Resolve for ServerNameResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.server_name) {
            self.host.clone()
        } else {
            name.as_str().to_owned()
        };
        Box::pin(async move {
            // The port is set by the connector from the URL.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `error` (or a cause) is a TLS failure about certificates: the server's is not
/// trusted or does not match, or the server refused ours. Retrying cannot fix these.
pub(crate) fn is_certificate_error(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<rustls::Error>()
            .is_some_and(is_certificate_problem)
        {
            return true;
        }
        // An I/O error's `source()` skips the error it wraps (hyper wraps rustls's error in
        // two of them), so descend into it instead.
        next = match error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    false
}

fn is_certificate_problem(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied
                | AlertDescription::CertificateRequired
        ),
        _ => false,
    }
}
