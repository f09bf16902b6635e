//! The platform's outbound HTTP client, behind the plugins' `http`
//! capability: it sends a request only to an origin the plugin's manifest
//! allows (every redirect too), refuses names that resolve to private,
//! loopback or link-local addresses (SSRF), speaks HTTPS with the system
//! roots plus the operator's CA bundle (and a client certificate per origin
//! when the operator sets one), keeps one connection pool for all plugins,
//! and bounds every exchange by its deadline and its response by a size cap
//! (docs/adr/0027-outbound-http-and-variables.md).

mod connect;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sfop_core::origin::AllowedHosts;
use sfop_core::outbound::{Outbound, OutboundError, OutboundRequest, OutboundResponse};
use url::Url;

use crate::connect::{ConnectFailure, Connector};

/// Headers dropped when a redirect leaves the origin the plugin chose.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// Why the client could not be built (bad operator settings). Each names
/// what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("outbound TLS: {0}")]
    Tls(String),
    #[error("outbound client certificate for {origin:?}: {problem}")]
    ClientCert { origin: String, problem: String },
}

/// A client certificate the platform presents to one origin.
#[derive(Debug)]
pub struct ClientCert {
    /// `https://host:port`, as in a manifest's `allowed_hosts`.
    pub origin: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The operator's settings.
#[derive(Debug)]
pub struct ClientConfig {
    /// Trust the system's roots (rustls-native-certs).
    pub system_roots: bool,
    /// More roots: the operator's CA bundle.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub client_certs: Vec<ClientCert>,
    /// The largest response body passed to a plugin, bytes.
    pub max_response_bytes: u64,
    /// How long one connection attempt may take (within the deadline).
    pub connect_timeout: Duration,
    /// Redirects followed per request, each to an allowed origin only.
    pub max_redirects: u8,
    /// Idle pooled connections are closed after this long.
    pub pool_idle: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            system_roots: true,
            extra_roots: Vec::new(),
            client_certs: Vec::new(),
            max_response_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(5),
            max_redirects: 5,
            pool_idle: Duration::from_secs(30),
        }
    }
}

/// The outbound client: one per platform, shared by every plugin instance.
#[derive(Debug)]
pub struct Client {
    pooled: Pooled<Connector, Full<Bytes>>,
    max_response_bytes: u64,
    max_redirects: u8,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        if config.system_roots {
            // A store that fails to load some certificates still offers the rest.
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
        for cert in config.extra_roots {
            roots
                .add(cert)
                .map_err(|e| ConfigError::Tls(format!("CA bundle: {e}")))?;
        }
        let roots = Arc::new(roots);
        let tls = |identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>| {
            let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone());
            let mut tls = match identity {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?,
                None => builder.with_no_client_auth(),
            };
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok::<_, String>(Arc::new(tls))
        };
        let default_tls = tls(None).map_err(ConfigError::Tls)?;
        let mut by_authority = HashMap::new();
        for cert in config.client_certs {
            let origin = sfop_core::origin::AllowedOrigin::parse(&cert.origin).map_err(|p| {
                ConfigError::ClientCert {
                    origin: cert.origin.clone(),
                    problem: p.to_string(),
                }
            })?;
            let sfop_core::origin::HostPattern::Name(host) = &origin.host else {
                return Err(ConfigError::ClientCert {
                    origin: cert.origin,
                    problem: "must name one host (no wildcard, no address)".into(),
                });
            };
            if origin.scheme != "https" {
                return Err(ConfigError::ClientCert {
                    origin: cert.origin,
                    problem: "must be https://".into(),
                });
            }
            let config =
                tls(Some((cert.chain, cert.key))).map_err(|problem| ConfigError::ClientCert {
                    origin: cert.origin.clone(),
                    problem,
                })?;
            by_authority.insert(format!("{host}:{}", origin.port), config);
        }
        let connector = Connector::new(default_tls, by_authority, config.connect_timeout);
        let pooled = Pooled::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle)
            .build(connector);
        Ok(Self {
            pooled,
            max_response_bytes: config.max_response_bytes,
            max_redirects: config.max_redirects,
        })
    }

    /// One exchange, redirects followed (each to an allowed origin).
    async fn exchange(
        &self,
        allowed: &AllowedHosts,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError> {
        let OutboundRequest {
            mut method,
            url,
            mut headers,
            mut body,
            api,
            ..
        } = request;
        let mut url =
            Url::parse(&url).map_err(|e| OutboundError::Invalid(format!("url {url:?}: {e}")))?;
        let first_origin = url.origin();
        let mut hop = 0u8;
        loop {
            if allowed.allowing(&url).is_none() {
                let what = if hop == 0 { "" } else { "a redirect to " };
                tracing::info!(target: "sfop::outbound", api, origin = %url.origin().ascii_serialization(), hop, "outbound request denied: origin not allowed");
                return Err(OutboundError::DeniedHost(format!(
                    "{what}{} is not in the manifest's allowed_hosts",
                    url.origin().ascii_serialization()
                )));
            }
            let mut builder = hyper::Request::builder()
                .method(method.as_str())
                .uri(url.as_str());
            for (name, value) in &headers {
                let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| OutboundError::Invalid(format!("header name {name:?}")))?;
                let value = hyper::header::HeaderValue::from_str(value)
                    .map_err(|_| OutboundError::Invalid(format!("value of header {name}")))?;
                builder = builder.header(name, value);
            }
            let http_request = builder
                .body(Full::new(Bytes::from(body.clone())))
                .map_err(|e| OutboundError::Invalid(format!("request: {e}")))?;
            let response = self
                .pooled
                .request(http_request)
                .await
                .map_err(|e| failure(&e))?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            if let (true, Some(location)) =
                (matches!(status, 301 | 302 | 303 | 307 | 308), location)
            {
                if hop >= self.max_redirects {
                    return Err(OutboundError::Invalid(format!(
                        "more than {} redirects",
                        self.max_redirects
                    )));
                }
                hop += 1;
                let next = url.join(&location).map_err(|e| {
                    OutboundError::Invalid(format!("redirect location {location:?}: {e}"))
                })?;
                // As browsers do: 303, and 301/302 after a POST, become a GET without a body.
                if status == 303 && method != "HEAD"
                    || matches!(status, 301 | 302) && method == "POST"
                {
                    method = "GET".into();
                    body.clear();
                    headers.retain(|(n, _)| n != "content-type");
                }
                if next.origin() != first_origin {
                    headers.retain(|(n, _)| !CREDENTIAL_HEADERS.contains(&n.as_str()));
                }
                url = next;
                continue;
            }
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            if let Some(length) = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.parse::<u64>().ok())
                && length > self.max_response_bytes
            {
                return Err(OutboundError::TooLarge(self.max_response_bytes));
            }
            let mut body = response.into_body();
            let mut collected = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame
                    .map_err(|e| OutboundError::Connect(format!("reading the answer: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    if (collected.len() + data.len()) as u64 > self.max_response_bytes {
                        return Err(OutboundError::TooLarge(self.max_response_bytes));
                    }
                    collected.extend_from_slice(&data);
                }
            }
            return Ok(OutboundResponse {
                status,
                headers,
                body: collected,
            });
        }
    }
}

#[async_trait::async_trait]
impl Outbound for Client {
    async fn send(
        &self,
        allowed: &AllowedHosts,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError> {
        let deadline = request.deadline;
        if deadline <= std::time::Instant::now() {
            return Err(OutboundError::Timeout);
        }
        tokio::time::timeout_at(deadline.into(), self.exchange(allowed, request))
            .await
            .unwrap_or(Err(OutboundError::Timeout))
    }
}

/// What a failed exchange tells the plugin: a refusal or failure of the
/// connector as it was decided, anything else as `connect`.
fn failure(e: &hyper_util::client::legacy::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(decided) = cause.downcast_ref::<ConnectFailure>() {
            return decided.0.clone();
        }
        source = cause.source();
    }
    let mut text = e.to_string();
    if let Some(cause) = std::error::Error::source(e) {
        text = format!("{text}: {cause}");
    }
    OutboundError::Connect(text)
}
