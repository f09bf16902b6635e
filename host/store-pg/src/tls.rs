//! TLS to the cluster database (ADR 0029, "TLS to the database"): libpq's
//! `sslmode` and `sslrootcert` read from `store.url`, the CA named by
//! `store.ca`, and the rustls client every connection of a node (pool, feed)
//! makes with them. Every TLS connection verifies the server's certificate;
//! `sslmode` only decides whether plaintext is acceptable and whether the
//! host name is checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Error, UrlError};

/// What `sslmode` asks for, as sfop reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Plaintext: no `sslmode` and no CA (loopback only), or `disable`.
    Disable,
    /// TLS when the server offers it (certificate verified), plaintext when
    /// it does not.
    Prefer,
    /// TLS or nothing; chain and host name verified (libpq's `require`
    /// would accept any certificate: sfop reads it as `verify-full`).
    Require,
    /// TLS or nothing; chain verified, host name not.
    VerifyCa,
    /// TLS or nothing; chain and host name verified.
    VerifyFull,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection may go without TLS.
    fn plaintext_allowed(self) -> bool {
        matches!(self, Mode::Disable | Mode::Prefer)
    }
}

/// Whose certificates a node trusts for the database server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// A PEM file (`store.ca` or `sslrootcert=<path>`).
    File(PathBuf),
    /// The system's trust store (`sslrootcert=system`, or a verifying mode
    /// without a CA).
    System,
}

/// `store.url` and `store.ca` read: the URL tokio-postgres is given (without
/// the keys sfop reads itself) and what TLS it asks for.
#[derive(Debug)]
pub(crate) struct Settings {
    /// `store.url` less `sslmode` and `sslrootcert`.
    pub url: String,
    /// The `sslmode` and `sslrootcert` pairs as written (for a URL derived
    /// from this one).
    pub tls_query: Vec<String>,
    pub mode: Mode,
    roots: Option<Roots>,
}

/// Keys of libpq's for client certificates: not supported (refused rather
/// than ignored, and tokio-postgres would call them unknown).
const CLIENT_CERT_KEYS: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

/// Reads the TLS settings of `url` and `ca`. Reads no file.
pub(crate) fn settings(url: &str, ca: Option<&Path>) -> Result<Settings, UrlError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut tls_query = Vec::new();
    let (mut sslmode, mut rootcert) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8_lossy();
        let decoded = || percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key.as_ref() {
            "sslmode" => {
                sslmode = Some(decoded());
                tls_query.push(pair.to_owned());
            }
            "sslrootcert" => {
                rootcert = Some(decoded());
                tls_query.push(pair.to_owned());
            }
            k if CLIENT_CERT_KEYS.contains(&k) => {
                return Err(UrlError::ClientCertificate(k.to_owned()));
            }
            _ => kept.push(pair),
        }
    }
    let roots = match (rootcert, ca) {
        (Some(_), Some(_)) => return Err(UrlError::TwoCas),
        (Some(r), None) if r == "system" => Some(Roots::System),
        (Some(r), None) => Some(Roots::File(PathBuf::from(r))),
        (None, Some(ca)) => Some(Roots::File(ca.to_owned())),
        (None, None) => None,
    };
    let mode = match sslmode.as_deref() {
        None if roots.is_some() => Mode::VerifyFull,
        None | Some("disable") => Mode::Disable,
        Some("prefer") => Mode::Prefer,
        Some("require") => Mode::Require,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some(other) => return Err(UrlError::SslMode(other.to_owned())),
    };
    if roots.is_some() && mode.plaintext_allowed() {
        return Err(UrlError::CaWithPlaintext(mode.name()));
    }
    let roots = match mode {
        Mode::Disable => None,
        _ => Some(roots.unwrap_or(Roots::System)),
    };
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Settings {
        url,
        tls_query,
        mode,
        roots,
    })
}

impl Settings {
    /// tokio-postgres's `sslmode` for this mode: the connector below is
    /// used only when it asks for TLS.
    pub(crate) fn ssl_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            Mode::Disable => tokio_postgres::config::SslMode::Disable,
            Mode::Prefer => tokio_postgres::config::SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    /// The connector: reads the CA file or the system's trust store.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("the TLS client: {e}")))?;
        let config = match &self.roots {
            // Never used: tokio-postgres is told `sslmode=disable`.
            None => builder
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
            Some(roots) => {
                let store = Arc::new(root_store(roots)?);
                if self.mode == Mode::VerifyCa {
                    let verifier = WebPkiServerVerifier::builder_with_provider(store, provider)
                        .build()
                        .map_err(|e| Error::Tls(format!("the CA: {e}")))?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                        .with_no_client_auth()
                } else {
                    builder.with_root_certificates(store).with_no_client_auth()
                }
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

/// The certificates a node trusts, read now.
fn root_store(roots: &Roots) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let shown = path.display();
            let bytes =
                std::fs::read(path).map_err(|e| Error::Tls(format!("the CA file {shown}: {e}")))?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert =
                    cert.map_err(|e| Error::Tls(format!("the CA file {shown}: not PEM: {e}")))?;
                store.add(cert).map_err(|e| {
                    Error::Tls(format!(
                        "the CA file {shown}: not a usable CA certificate: {e}"
                    ))
                })?;
            }
            if store.is_empty() {
                return Err(Error::Tls(format!(
                    "the CA file {shown} holds no PEM certificate"
                )));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::Tls(
                    "no CA to verify the database server with: the system's trust store is \
                     empty; name the CA that signed the server's certificate with [store] ca"
                        .into(),
                ));
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not
/// checked (for servers reached by an address their certificate does not
/// name). Name errors come last in webpki's checks, so only they are
/// forgiven.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The cause, in words, when `e` is a refusal of the TLS handshake (a
/// certificate not trusted or for another name, a server without TLS):
/// not a database that is away, but a setting to fix.
pub(crate) fn refusal(e: &tokio_postgres::Error) -> Option<String> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(rustls) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(describe(rustls));
        }
        if let Some(rustls) = c.downcast_ref::<rustls::Error>() {
            return Some(describe(rustls));
        }
        // tokio-postgres's words when the server answers `N` to SSLRequest.
        if c.to_string() == "server does not support TLS" {
            return Some(
                "the database server does not do TLS and this node requires it (sslmode in \
                 store.url, or store.ca): refused, never sent in plaintext"
                    .into(),
            );
        }
        cause = c.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the database server's certificate is not signed by a CA this node trusts \
             (store.ca, sslrootcert in store.url, or the system's): {e}"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the database server's certificate is for another host name than store.url \
             names (sslmode=verify-ca skips this check): {e}"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the database server's certificate is refused: {e}")
        }
        other => format!("the TLS handshake with the database server failed: {other}"),
    }
}

/// Whether `host` is this machine (where plaintext is acceptable).
pub(crate) fn is_local(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        tokio_postgres::config::Host::Unix(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(url: &str, ca: Option<&str>) -> Result<Settings, UrlError> {
        settings(url, ca.map(Path::new))
    }

    #[test]
    fn sslmode_and_a_ca_decide_the_mode() {
        let base = "postgres://u@db:5432/sfop";
        let cases: [(&str, Option<&str>, Mode); 7] = [
            ("", None, Mode::Disable),
            ("?sslmode=disable", None, Mode::Disable),
            ("?sslmode=prefer", None, Mode::Prefer),
            ("?sslmode=require", None, Mode::Require),
            ("?sslmode=verify-ca", Some("ca.pem"), Mode::VerifyCa),
            ("", Some("ca.pem"), Mode::VerifyFull),
            ("?sslrootcert=%2Fetc%2Fca.pem", None, Mode::VerifyFull),
        ];
        for (query, ca, mode) in cases {
            let read = read(&format!("{base}{query}"), ca);
            assert_eq!(
                read.as_ref().map(|s| s.mode).ok(),
                Some(mode),
                "{query} {ca:?}"
            );
        }
        let s = read(&format!("{base}?sslrootcert=%2Fetc%2Fca.pem"), None);
        assert_eq!(
            s.map(|s| s.roots).ok(),
            Some(Some(Roots::File("/etc/ca.pem".into())))
        );
        let s = read(&format!("{base}?sslmode=require"), None);
        assert_eq!(s.map(|s| s.roots).ok(), Some(Some(Roots::System)));
    }

    #[test]
    fn the_keys_sfop_reads_are_taken_out_and_the_rest_kept_as_written() {
        let s = read(
            "postgres://u@db/sfop?application_name=a%20b&sslmode=verify-full&sslrootcert=ca.pem&connect_timeout=3",
            None,
        );
        let s = s.ok();
        assert_eq!(
            s.as_ref().map(|s| s.url.as_str()),
            Some("postgres://u@db/sfop?application_name=a%20b&connect_timeout=3")
        );
        assert_eq!(
            s.map(|s| s.tls_query),
            Some(vec![
                "sslmode=verify-full".to_owned(),
                "sslrootcert=ca.pem".to_owned()
            ])
        );
    }

    #[test]
    fn contradictions_and_unknown_values_are_refused() {
        let base = "postgres://u@db/sfop";
        assert_eq!(
            read(&format!("{base}?sslmode=allow"), None).err(),
            Some(UrlError::SslMode("allow".into()))
        );
        assert_eq!(
            read(&format!("{base}?sslmode=disable"), Some("ca.pem")).err(),
            Some(UrlError::CaWithPlaintext("disable"))
        );
        assert_eq!(
            read(&format!("{base}?sslmode=prefer&sslrootcert=ca.pem"), None).err(),
            Some(UrlError::CaWithPlaintext("prefer"))
        );
        assert_eq!(
            read(&format!("{base}?sslrootcert=a.pem"), Some("b.pem")).err(),
            Some(UrlError::TwoCas)
        );
        assert_eq!(
            read(&format!("{base}?sslkey=k.pem"), None).err(),
            Some(UrlError::ClientCertificate("sslkey".into()))
        );
    }

    #[test]
    fn loopback_hosts_are_local() {
        use tokio_postgres::config::Host;
        for (host, local) in [
            ("localhost", true),
            ("127.0.0.1", true),
            ("::1", true),
            ("db.internal", false),
            ("10.0.0.5", false),
        ] {
            assert_eq!(is_local(&Host::Tcp(host.into())), local, "{host}");
        }
    }
}
