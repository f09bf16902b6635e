//! The operator CLI's client for the admin API: HTTPS to the running gateway,
//! trusting its certificate, authorised by the admin token.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// Where and how to reach the admin API.
#[derive(Debug, Clone)]
pub struct AdminTarget<'a> {
    /// `https://host:port` or `http://host:port`.
    pub url: &'a str,
    /// The gateway's certificate (or its CA), PEM.
    pub cacert: &'a Path,
    /// The admin token file.
    pub token_file: &'a Path,
}

/// Sends one admin request; returns the status and the JSON answer.
pub async fn call(
    target: &AdminTarget<'_>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let token = std::fs::read_to_string(target.token_file)
        .with_context(|| format!("reading the admin token {}", target.token_file.display()))?;
    let (tls, authority) = match (
        target.url.strip_prefix("https://"),
        target.url.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest.trim_end_matches('/')),
        (None, Some(rest)) => (false, rest.trim_end_matches('/')),
        _ => bail!("--url {:?} must start with https:// or http://", target.url),
    };
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))?;
    let res = if tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(target.cacert)
            .with_context(|| format!("reading --cacert {}", target.cacert.display()))?
        {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    let json = serde_json::from_slice(&body).with_context(|| {
        format!(
            "the admin API answered {status} with {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok((status, json))
}
