//! Certificate authorities and certificates for TLS tests, made by Debian's `openssl` (never
//! checked in, never reused between runs).
//!
//! Keys are P-256 EC keys in PKCS#8 PEM (what rustls, reqwest, HAProxy and dockerd all read);
//! certificates are valid for two days.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// Validity of every certificate, in days.
const DAYS: &str = "2";

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy)]
pub enum Usage<'a> {
    /// A TLS server reachable under these subject alternative names (`IP:127.0.0.1`,
    /// `DNS:localhost`).
    Server(&'a [&'a str]),
    /// A TLS client (client certificate authentication).
    Client,
}

/// A key and its certificate, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl Issued {
    /// Writes the certificate followed by its key into one file at `path` (HAProxy's `crt`).
    pub fn write_bundle(&self, path: &Path) -> PathBuf {
        let mut bundle = read(&self.cert);
        bundle.push_str(&read(&self.key));
        std::fs::write(path, bundle).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_owned()
    }
}

/// A self-signed certificate authority whose files live in a directory of the test.
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    dir: PathBuf,
    name: String,
    authority: Issued,
}

impl CertificateAuthority {
    /// Creates the authority `name` (`<dir>/<name>-ca.pem` and its key).
    pub fn create(dir: &Path, name: &str) -> CertificateAuthority {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let authority = Issued {
            cert: dir.join(format!("{name}-ca.pem")),
            key: dir.join(format!("{name}-ca-key.pem")),
        };
        // `req -x509` gives a v3 CA certificate (basicConstraints CA:TRUE) from openssl.cnf.
        run_openssl(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(new_key_args(&authority.key, &format!("/CN={name} test CA")))
                .args(["-days", DAYS, "-out"])
                .arg(&authority.cert),
        );
        CertificateAuthority {
            dir: dir.to_owned(),
            name: name.to_owned(),
            authority,
        }
    }

    /// The authority's certificate (what a peer trusts).
    pub fn cert(&self) -> &Path {
        &self.authority.cert
    }

    /// Issues a certificate for `subject` (`<dir>/<ca>-<subject>.pem` and its key).
    pub fn issue(&self, subject: &str, usage: Usage<'_>) -> Issued {
        let stem = self.dir.join(format!("{}-{subject}", self.name));
        let issued = Issued {
            cert: stem.with_extension("pem"),
            key: self.dir.join(format!("{}-{subject}-key.pem", self.name)),
        };
        let request = stem.with_extension("csr");
        let extensions = stem.with_extension("ext");
        std::fs::write(&extensions, extensions_text(usage))
            .unwrap_or_else(|e| panic!("write {}: {e}", extensions.display()));
        run_openssl(
            Command::new("openssl")
                .args(["req", "-new"])
                .args(new_key_args(&issued.key, &format!("/CN={subject}")))
                .arg("-out")
                .arg(&request),
        );
        run_openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&request)
                .arg("-CA")
                .arg(&self.authority.cert)
                .arg("-CAkey")
                .arg(&self.authority.key)
                .args(["-CAcreateserial", "-CAserial"])
                .arg(self.dir.join(format!("{}-ca.srl", self.name)))
                .args(["-days", DAYS, "-extfile"])
                .arg(&extensions)
                .arg("-out")
                .arg(&issued.cert),
        );
        issued
    }

    /// A directory in Docker's client layout (`ca.pem`, `cert.pem`, `key.pem`, as
    /// `$DOCKER_CERT_PATH` expects) trusting this authority and presenting `client`.
    pub fn docker_cert_path(&self, dir: &Path, client: &Issued) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for (from, name) in [
            (self.cert(), "ca.pem"),
            (client.cert.as_path(), "cert.pem"),
            (client.key.as_path(), "key.pem"),
        ] {
            std::fs::copy(from, dir.join(name))
                .unwrap_or_else(|e| panic!("copy {} into {}: {e}", from.display(), dir.display()));
        }
        dir.to_owned()
    }
}

/// `-newkey` arguments: a fresh P-256 key, unencrypted, written to `key`.
fn new_key_args(key: &Path, subject: &str) -> Vec<String> {
    [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key.to_string_lossy(),
        "-subj",
        subject,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The X.509 v3 extensions of a leaf certificate.
fn extensions_text(usage: Usage<'_>) -> String {
    let mut text = String::from(
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n",
    );
    match usage {
        Usage::Server(names) => {
            text.push_str("extendedKeyUsage = serverAuth\n");
            text.push_str(&format!("subjectAltName = {}\n", names.join(", ")));
        }
        Usage::Client => text.push_str("extendedKeyUsage = clientAuth\n"),
    }
    text
}

/// Runs `openssl ...`, panicking with its output when it fails.
fn run_openssl(command: &mut Command) {
    let rendered = format!("{command:?}");
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run openssl ({e}); `cargo xtask test` installs Debian's openssl")
    });
    assert!(
        output.status.success(),
        "{rendered} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
