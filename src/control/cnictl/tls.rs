//! Mutual TLS for the gRPC links between the daemon and cni-ctl (rustls through tonic).
//!
//! One identity per process: a certificate chain and its key, plus the CA that the peer's
//! certificate must chain to. The daemon uses the same files both ways: as a client of cni-ctl's
//! `RouteService` (it verifies cni-ctl's certificate against the CA and shows its own) and as the
//! server of `ControllerService` (it shows its certificate and *requires* a client certificate
//! chaining to the CA). The reference cni-ctl (`shardflow cnictl`) does the same as a server.
//!
//! The files are read and parsed once, at start, before any port is bound: a missing file, a
//! file with no certificate or no key, or a key that does not fit the certificate is a
//! configuration error naming the key, not a handshake failure later.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A TLS handshake that has not finished by then is dropped (the server spawns one task per
/// handshake; this keeps a silent peer from holding one for ever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A TLS file that cannot be used; `key` names the setting (`policy.tls_cert`, `--tls-key` ...).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {reason}")]
    Read { key: String, path: PathBuf, reason: String },
    #[error("{key}: {path}: {reason}")]
    Pem { key: String, path: PathBuf, reason: String },
    /// The files parse but do not make a usable TLS configuration (key not matching the
    /// certificate, CA not a CA ...).
    #[error("{key}: {reason}")]
    Unusable { key: String, reason: String },
}

impl TlsError {
    /// The setting at fault.
    pub fn key(&self) -> &str {
        match self {
            TlsError::Read { key, .. } | TlsError::Pem { key, .. } | TlsError::Unusable { key, .. } => key,
        }
    }
}

/// Where the three PEM files are: configuration, so it lives in `config` (which must not import
/// this transport module).
pub use crate::config::TlsPaths;

/// The PEM contents, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("TlsFiles").field("cert_bytes", &self.cert.len()).field("ca_bytes", &self.ca.len()).finish()
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { key: key.into(), path: path.into(), reason: e.to_string() })
}

fn certs(key: &str, path: &Path, pem: &[u8]) -> Result<usize, TlsError> {
    let bad = |reason: String| TlsError::Pem { key: key.into(), path: path.into(), reason };
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        c.map_err(|e| bad(format!("bad PEM: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(bad("no CERTIFICATE block".into()));
    }
    Ok(n)
}

impl TlsFiles {
    /// Reads and checks the three files: each is there, the certificate and CA files hold at
    /// least one certificate, the key file a private key, and rustls accepts them together.
    pub fn load(p: &TlsPaths) -> Result<TlsFiles, TlsError> {
        let [cert_name, key_name, ca_name] = p.names;
        let cert = read(cert_name, &p.cert)?;
        let key = read(key_name, &p.key)?;
        let ca = read(ca_name, &p.ca)?;
        certs(cert_name, &p.cert, &cert)?;
        certs(ca_name, &p.ca, &ca)?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsError::Pem {
            key: key_name.into(),
            path: p.key.clone(),
            reason: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        })?;
        let files = TlsFiles { cert, key, ca };
        // Building the acceptor parses everything the way the server will, and checks that the
        // key fits the certificate and that the CA can verify client certificates.
        tonic::transport::Server::builder()
            .tls_config(files.server_config())
            .map_err(|e| TlsError::Unusable { key: key_name.into(), reason: error_chain(&e) })?;
        Ok(files)
    }

    /// The server side: this identity, client certificates required and verified against the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side: the server's certificate verified against the CA (and its name against
    /// `server_name`, else the endpoint's host), this identity shown.
    pub fn client_config(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(HANDSHAKE_TIMEOUT);
        match server_name {
            Some(n) => c.domain_name(n),
            None => c,
        }
    }
}

/// An error and its sources on one line (tonic's transport errors hide the cause in `source`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether plaintext to or from `host` stays on this machine (worth no warning).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> TlsPaths {
        TlsPaths {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
            names: ["t.tls_cert", "t.tls_key", "t.tls_ca"],
        }
    }

    #[test]
    fn missing_file_names_the_setting() {
        let dir = std::env::temp_dir().join(format!("sf-tls-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let e = TlsFiles::load(&paths(&dir)).expect_err("no files");
        assert_eq!(e.key(), "t.tls_cert");
        std::fs::write(dir.join("cert.pem"), "not a pem\n").expect("write");
        std::fs::write(dir.join("key.pem"), "").expect("write");
        std::fs::write(dir.join("ca.pem"), "").expect("write");
        let e = TlsFiles::load(&paths(&dir)).expect_err("no certificate");
        assert_eq!(e.key(), "t.tls_cert", "{e}");
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("10.0.0.1"));
        assert!(!is_loopback_host("cnictl.example"));
    }
}
