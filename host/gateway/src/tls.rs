//! TLS for the gateway: rustls with TLS 1.2/1.3 and ALPN for HTTP/2 and
//! HTTP/1.1; a self-signed certificate generated on first run for the
//! embedded default; optional mutual TLS for institution clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why TLS could not be set up. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path}: {problem}")]
    ClientCa { path: PathBuf, problem: String },
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the server's certificate comes from, and whether clients must
/// present one.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that sign institution client certificates. When
    /// set, every client must present a certificate they signed.
    pub client_ca: Option<PathBuf>,
}

/// Writes a self-signed certificate for `localhost`/`127.0.0.1`/`::1` into
/// `dir` unless one is there, and returns its settings.
pub fn ensure_self_signed(dir: &Path) -> Result<TlsSettings, TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if !(cert.is_file() && key.is_file()) {
        let io = |path: &Path, e: std::io::Error| TlsError::File {
            path: path.to_owned(),
            problem: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        std::fs::write(&cert, generated.cert.pem()).map_err(|e| io(&cert, e))?;
        sfop_core::files::write_private(&key, generated.signing_key.serialize_pem().as_bytes())
            .map_err(|e| io(&key, e))?;
        tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    }
    Ok(TlsSettings {
        cert,
        key,
        client_ca: None,
    })
}

/// Builds the rustls server configuration.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let file_error = |path: &Path, problem: String| TlsError::File {
        path: path.to_owned(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| file_error(&settings.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(&settings.cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| file_error(&settings.key, format!("not a PEM private key: {e}")))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_error = |problem: String| TlsError::ClientCa {
                path: ca.clone(),
                problem,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| ca_error(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| ca_error(e.to_string()))?)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("holds no certificate".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity of an institution client: the hex SHA-256 fingerprint of its
/// verified leaf certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}
