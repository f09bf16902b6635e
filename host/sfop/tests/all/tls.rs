//! Issue 3: HTTPS with the generated certificate (HTTP/2 and HTTP/1.1), and
//! mutual TLS for institution clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use sfop::TlsMode;
use tokio_rustls::TlsConnector;

use crate::harness::{Package, TestPlatform};

/// A client identity: certificate chain and key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// GET `path` over TLS trusting `ca_pem`, offering `alpn`; returns the
/// negotiated protocol, the status and the JSON body.
async fn tls_get(
    addr: SocketAddr,
    ca_pem: &Path,
    identity: Option<Identity>,
    alpn: &[u8],
    path: &str,
) -> Result<(Vec<u8>, u16, Value)> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let negotiated = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let io = TokioIo::new(tls);
    let req = Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(Empty::<Bytes>::new())?;
    let res = if negotiated == b"h2" {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((negotiated, status, serde_json::from_slice(&body)?))
}

#[tokio::test]
async fn https_with_the_generated_certificate_speaks_h2_and_http1() -> Result<()> {
    let t = TestPlatform::start_with(vec![Package::built("api/bank-status")], |c| {
        c.tls.mode = TlsMode::SelfSigned;
        c.auth.mode = sfop::AuthMode::Off;
    })
    .await?;
    assert!(t.platform.url().starts_with("https://"));
    let cert = t.platform.tls_cert.clone().context("no certificate path")?;
    assert!(
        cert.starts_with(t.data_dir()),
        "certificate kept in the data dir"
    );

    for alpn in [&b"h2"[..], b"http/1.1"] {
        let (negotiated, status, body) =
            tls_get(t.addr(), &cert, None, alpn, "/v2.0/bank/status").await?;
        assert_eq!(negotiated, alpn);
        assert_eq!(status, 200);
        assert_eq!(body["rsp_code"], "A0000");
    }

    // A cleartext client gets no HTTP answer from the TLS port.
    let plain = crate::harness::send(t.addr(), "GET", "/v2.0/bank/status", &[], Vec::new()).await;
    assert!(plain.is_err(), "cleartext request was answered: {plain:?}");

    // The certificate survives a restart: clients keep trusting it.
    let pem = std::fs::read(&cert)?;
    let dirs = t.stop_keeping_dirs().await?;
    let again = sfop::start(sfop::Config {
        listen: "127.0.0.1:0".parse()?,
        ops_listen: "127.0.0.1:0".parse()?,
        plugins: dirs.0.path().to_owned(),
        data_dir: dirs.1.path().to_owned(),
        auth: sfop::config::AuthSection {
            mode: sfop::AuthMode::Off,
            ..Default::default()
        },
        ..sfop::Config::default()
    })
    .await?;
    assert_eq!(
        std::fs::read(again.tls_cert.as_ref().context("cert")?)?,
        pem
    );
    again.stop().await
}

/// A CA for institution clients and one client certificate it signed.
fn institution_pki(dir: &Path) -> Result<(std::path::PathBuf, Identity)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sfop test institutions CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_path = dir.join("institutions-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;

    let client_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "M202200382");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&client_key, &Issuer::new(ca_params, ca_key))?;
    let key = PrivateKeyDer::try_from(client_key.serialize_der()).map_err(anyhow::Error::msg)?;
    Ok((ca_path, (vec![client_cert.der().clone()], key)))
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_an_institution_certificate() -> Result<()> {
    let pki = tempfile::tempdir()?;
    let (ca, identity) = institution_pki(pki.path())?;
    let t = TestPlatform::start_with(vec![Package::built("api/bank-status")], |c| {
        c.tls.mode = TlsMode::SelfSigned;
        c.tls.client_ca = Some(ca.clone());
        c.auth.mode = sfop::AuthMode::Off;
    })
    .await?;
    let cert = t.platform.tls_cert.clone().context("no certificate path")?;

    let anonymous = tls_get(t.addr(), &cert, None, b"http/1.1", "/v2.0/bank/status").await;
    assert!(
        anonymous.is_err(),
        "client without certificate was served: {anonymous:?}"
    );

    // A certificate from another CA is refused too.
    let other = tempfile::tempdir()?;
    let (_, stranger) = institution_pki(other.path())?;
    let refused = tls_get(
        t.addr(),
        &cert,
        Some(stranger),
        b"http/1.1",
        "/v2.0/bank/status",
    )
    .await;
    assert!(
        refused.is_err(),
        "client with a foreign certificate was served: {refused:?}"
    );

    let (_, status, body) =
        tls_get(t.addr(), &cert, Some(identity), b"h2", "/v2.0/bank/status").await?;
    assert_eq!(status, 200);
    assert_eq!(body["rsp_code"], "A0000");
    t.platform.stop().await
}
