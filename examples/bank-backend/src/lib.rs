//! A small HTTPS service standing in for a bank's core-banking system: it
//! answers `GET /v1/accounts/{account_num}` with the account's balance to
//! callers presenting `authorization: Bearer {api_key}`, and `401`
//! otherwise. The `core-balance` plugin (`plugins/tests/core-balance`)
//! reaches it through the platform's `http` capability; the test in
//! `host/sfop/tests/all/outbound.rs` runs the two together.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A running backend.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// The PEM certificate it serves (self-signed, for `localhost` and
    /// `127.0.0.1`): the platform's operator trusts it with `[outbound] ca`.
    pub cert_pem: String,
}

/// The balance the backend reports for `account_num`: a stand-in ledger.
pub fn balance_of(account_num: &str) -> Option<u64> {
    (account_num.len() == 12 && account_num.bytes().all(|b| b.is_ascii_digit())).then(|| {
        account_num
            .bytes()
            .map(|b| u64::from(b - b'0'))
            .sum::<u64>()
            * 10_000
    })
}

fn json(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn answer(req: &Request<hyper::body::Incoming>, api_key: &str) -> Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(api_key);
    if !authorized {
        return json(401, serde_json::json!({ "error": "unauthorized" }));
    }
    let account = req.uri().path().strip_prefix("/v1/accounts/");
    match (
        req.method() == hyper::Method::GET,
        account.map(|a| (a, balance_of(a))),
    ) {
        (true, Some((account, Some(balance)))) => json(
            200,
            serde_json::json!({ "account_num": account, "balance_amt": balance.to_string() }),
        ),
        (true, Some((_, None))) => json(404, serde_json::json!({ "error": "no such account" })),
        _ => json(404, serde_json::json!({ "error": "not found" })),
    }
}

/// Serves on `listen` (port 0: any) until the task is dropped; HTTP/1.1 and
/// HTTP/2 over TLS with a fresh self-signed certificate.
pub async fn start(listen: SocketAddr, api_key: String) -> Result<Backend> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
        .self_signed(&key)?;
    let cert_pem = cert.pem();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes())?],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
    )?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let api_key = Arc::new(api_key);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, api_key) = (acceptor.clone(), api_key.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let response = answer(&req, &api_key);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(Backend { addr, cert_pem })
}
