//! Wiring the developer portal into the platform: a [`Catalog`] over the
//! live route table (until the management center's registry implements it),
//! the loopback HTTPS client the portal's "try it" and code exchange go
//! through, and the native endpoint mounted under `/portal`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sfop_core::Manifest;
use sfop_gateway::{
    Endpoint, Gateway, NativeFuture, NativeRequest, NativeResponse, OwnedNativeRequest,
};
use sfop_portal::{
    ApiEntry, Catalog, Portal, PortalRequest, Upstream, UpstreamFuture, UpstreamRequest,
    UpstreamResponse, VersionEntry, VersionState,
};

/// One release the catalogue has seen live.
#[derive(Debug, Clone)]
struct Seen {
    manifest: Manifest,
    sha256: String,
    first_seen_ms: u64,
}

/// The interim catalogue: the releases the gateway's route table serves now
/// are live; releases seen live before (since this process started) and no
/// longer routed are retired. Reads the route table on every call, so a swap
/// shows at once.
#[derive(Debug)]
pub struct LiveCatalog {
    gateway: Weak<Gateway>,
    seen: Mutex<BTreeMap<String, Vec<Seen>>>,
}

impl LiveCatalog {
    pub fn new(gateway: Weak<Gateway>) -> Self {
        Self {
            gateway,
            seen: Mutex::default(),
        }
    }
}

impl Catalog for LiveCatalog {
    fn apis(&self) -> Vec<ApiEntry> {
        let Some(gateway) = self.gateway.upgrade() else {
            return Vec::new();
        };
        let routes = gateway.routes();
        let live: Vec<(&Manifest, &str)> = routes
            .releases()
            .into_iter()
            .map(|r| (r.api.manifest(), r.api.sha256()))
            .collect();
        let now = sfop_core::time::now_millis();
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (manifest, sha) in &live {
            let versions = seen.entry(manifest.name.clone()).or_default();
            // A release is a manifest and a component: the same component
            // under a new version is a new release.
            let known = versions
                .iter()
                .any(|s| s.sha256 == *sha && s.manifest.version == manifest.version);
            if !known {
                versions.push(Seen {
                    manifest: (*manifest).clone(),
                    sha256: (*sha).to_owned(),
                    first_seen_ms: now,
                });
            }
        }
        seen.iter()
            .map(|(name, versions)| {
                let mut versions: Vec<VersionEntry> = versions
                    .iter()
                    .map(|s| VersionEntry {
                        state: if live
                            .iter()
                            .any(|(m, sha)| *sha == s.sha256 && m.version == s.manifest.version)
                        {
                            VersionState::Live
                        } else {
                            VersionState::Retired
                        },
                        manifest: s.manifest.clone(),
                        sha256: s.sha256.clone(),
                        uploaded_at_ms: s.first_seen_ms,
                        report_html: None,
                    })
                    .collect();
                versions.sort_by(|a, b| {
                    (&b.manifest.version, b.uploaded_at_ms)
                        .cmp(&(&a.manifest.version, a.uploaded_at_ms))
                });
                ApiEntry {
                    name: name.clone(),
                    versions,
                }
            })
            .collect()
    }
}

/// An HTTPS (or, with TLS off, HTTP) client of the platform's own API
/// listener, trusting the platform's certificate. Its address is set once
/// the listener is bound.
#[derive(Debug)]
pub struct Loopback {
    addr: OnceLock<SocketAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Loopback {
    /// A client trusting the certificates in `cert` (PEM), or cleartext
    /// when `cert` is `None`.
    pub fn new(cert: Option<&Path>) -> anyhow::Result<Self> {
        let tls = match cert {
            None => None,
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("reading {}", path.display()))?
                {
                    roots.add(c.with_context(|| format!("reading {}", path.display()))?)?;
                }
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        Ok(Self {
            addr: OnceLock::new(),
            tls,
        })
    }

    /// Where the API listener is bound (an unspecified address is reached
    /// over loopback).
    pub fn set_addr(&self, addr: SocketAddr) {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = self.addr.set(SocketAddr::new(ip, addr.port()));
    }
}

async fn send(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    request: UpstreamRequest,
) -> anyhow::Result<UpstreamResponse> {
    let authority = request.authority.unwrap_or_else(|| addr.to_string());
    let mut builder = Request::builder()
        .method(request.method.as_str())
        .uri(request.path_and_query.as_str())
        .header("host", authority.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder.body(Full::new(Bytes::from(request.body)))?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let res = match tls {
        Some(config) => {
            // The name the browser used, so the certificate check is the one
            // it passed.
            let host = match authority.rsplit_once(':') {
                Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                _ => authority.as_str(),
            };
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .context("TLS handshake with the platform")?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        }
        None => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        }
    };
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes().to_vec();
    Ok(UpstreamResponse { status, body })
}

impl Upstream for Loopback {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture {
        let addr = self.addr.get().copied();
        let tls = self.tls.clone();
        Box::pin(async move {
            let addr = addr.ok_or_else(|| "the platform is not listening yet".to_owned())?;
            send(addr, tls, request).await.map_err(|e| format!("{e:#}"))
        })
    }
}

/// `/portal` and everything below it, mounted on the gateway.
#[derive(Debug)]
pub struct PortalEndpoint(pub Arc<Portal>);

impl Endpoint for PortalEndpoint {
    fn name(&self) -> &str {
        "portal"
    }

    fn handle(&self, _request: &NativeRequest<'_>) -> NativeResponse {
        // The gateway calls `handle_async`; this is only reached by a caller
        // that cannot wait, and the portal's pages may have to.
        NativeResponse {
            status: 500,
            headers: vec![("content-type".into(), "text/plain; charset=UTF-8".into())],
            body: b"the portal answers asynchronously".to_vec(),
            envelope: false,
        }
    }

    fn handle_async(self: Arc<Self>, request: OwnedNativeRequest) -> NativeFuture {
        Box::pin(async move {
            let header = |name: &str| {
                request
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let cookie = header("cookie");
            let answer = self
                .0
                .handle(PortalRequest {
                    method: request.method.clone(),
                    path: request.path.clone(),
                    query: request.query.clone(),
                    authority: request.authority.clone(),
                    cookie: (!cookie.is_empty()).then_some(cookie),
                    body: request.body.to_vec(),
                })
                .await;
            NativeResponse {
                status: answer.status,
                headers: answer.headers,
                body: answer.body,
                envelope: false,
            }
        })
    }
}
