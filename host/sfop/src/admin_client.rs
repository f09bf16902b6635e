//! The operator CLI's client for the admin API: one reqwest client per
//! command (HTTPS trusting the gateway's certificate, rustls with the ring
//! provider the workspace uses, or cleartext HTTP), authorised by the admin
//! token, speaking the request and answer types of `sfop-admin-api`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sfop_admin_api::Status;

/// The CLI's one HTTP client for the platform at `url`: HTTPS trusting
/// `cacert` (rustls with the workspace's ring provider), or cleartext HTTP.
/// Redirects are not followed: they are answers the caller reads (the
/// OAuth pages' 302 to the app), and a bearer token never follows one to
/// another host.
pub fn platform_client(url: &str, cacert: &Path) -> Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    if url.starts_with("https://") {
        for cert in CertificateDer::pem_file_iter(cacert)
            .with_context(|| format!("reading --cacert {}", cacert.display()))?
        {
            roots.add(cert.with_context(|| format!("--cacert {}", cacert.display()))?)?;
        }
    } else if !url.starts_with("http://") {
        bail!("--url {url:?} must start with https:// or http://");
    }
    // reqwest is built without a crypto provider of its own: it always
    // gets this ring configuration (even for cleartext, it needs one).
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .user_agent(concat!("sfop-cli/", env!("CARGO_PKG_VERSION")))
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

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

/// A refusal of the admin API: its status, `rsp_code` and message.
#[derive(Debug, thiserror::Error)]
#[error("refused ({status} {rsp_code}): {rsp_message}")]
pub struct Refused {
    pub status: u16,
    pub rsp_code: String,
    pub rsp_message: String,
}

/// One admin API client: the connection pool, the base URL and the token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// Reads the token and (for HTTPS) the certificate to trust.
    pub fn new(target: &AdminTarget<'_>) -> Result<Self> {
        let token = std::fs::read_to_string(target.token_file)
            .with_context(|| format!("reading the admin token {}", target.token_file.display()))?
            .trim()
            .to_owned();
        let base = target.url.trim_end_matches('/').to_owned();
        let http = platform_client(&base, target.cacert)?;
        Ok(Self { http, base, token })
    }

    /// Sends one request; the status and the answer's bytes, whatever the
    /// status.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, bytes::Bytes)> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = res.status().as_u16();
        let bytes = res
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        Ok((status, bytes))
    }

    /// Sends one request and reads a typed answer; a refusal (non-2xx)
    /// becomes a [`Refused`] error.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let (status, bytes) = self.send(method, path, body).await?;
        if !(200..300).contains(&status) {
            let refusal: Status = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(Refused {
                status,
                rsp_code: refusal.rsp_code,
                rsp_message: if refusal.rsp_message.is_empty() {
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    refusal.rsp_message
                },
            }
            .into());
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the admin API's answer to {path} ({status}) is not what this CLI reads: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// `GET path`, typed.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, typed.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }
}
