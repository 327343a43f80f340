//! Certificates for TLS tests, made with Debian's `openssl` command: a CA, a server
//! certificate it signs (for `127.0.0.1`, `localhost` and `loki.test`), a client certificate it
//! signs, and a second, unrelated CA that trusts neither.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The host names the server certificate is valid for, besides `IP:127.0.0.1`.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "loki.test"];

/// PEM files in one directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server certificate (for `127.0.0.1` and [`SERVER_NAMES`]) and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A server certificate for `elsewhere.test` only, signed by the same CA.
    pub other_name_cert: PathBuf,
    pub other_name_key: PathBuf,
    /// The client certificate and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub wrong_ca: PathBuf,
}

impl TestPki {
    /// Generates every file under `dir` (which must exist). Panics if `openssl` fails.
    pub fn generate(dir: &Path) -> TestPki {
        let file = |name: &str| dir.join(name);
        make_ca(dir, "ca", "log-capturer test CA");
        make_ca(dir, "wrong-ca", "an unrelated CA");
        let san = format!(
            "subjectAltName=IP:127.0.0.1,{}",
            SERVER_NAMES.map(|name| format!("DNS:{name}")).join(",")
        );
        make_leaf(dir, "server", "localhost", &san, "serverAuth");
        make_leaf(
            dir,
            "other-name",
            "elsewhere.test",
            "subjectAltName=DNS:elsewhere.test",
            "serverAuth",
        );
        make_leaf(
            dir,
            "client",
            "log-capturer",
            "subjectAltName=DNS:log-capturer.test",
            "clientAuth",
        );
        TestPki {
            ca: file("ca.pem"),
            server_cert: file("server.pem"),
            server_key: file("server.key"),
            other_name_cert: file("other-name.pem"),
            other_name_key: file("other-name.key"),
            client_cert: file("client.pem"),
            client_key: file("client.key"),
            wrong_ca: file("wrong-ca.pem"),
        }
    }
}

fn make_ca(dir: &Path, name: &str, common_name: &str) {
    new_key_and_request(
        dir,
        name,
        common_name,
        &[
            "-x509",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `openssl req` with a new P-256 key in `<name>.key`, subject `/CN=<common_name>` and `args`
/// (`-x509 ...` for a self-signed certificate, `-out <name>.csr` for a request).
fn new_key_and_request(dir: &Path, name: &str, common_name: &str, args: &[&str]) {
    let key = format!("{name}.key");
    let subject = format!("/CN={common_name}");
    let mut all = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        &subject,
    ];
    all.extend_from_slice(args);
    openssl(dir, &all);
}

fn make_leaf(dir: &Path, name: &str, common_name: &str, san: &str, usage: &str) {
    new_key_and_request(dir, name, common_name, &["-out", &format!("{name}.csr")]);
    let extensions = format!(
        "{san}\nextendedKeyUsage={usage}\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n"
    );
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write the extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package `openssl`)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
