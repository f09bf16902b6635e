//! Wiring the developer portal into the platform: a [`Catalog`] over the
//! management center's registry, the loopback HTTPS client the portal's "try it" and code exchange go
//! through, and the native endpoint mounted under `/portal`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sfop_core::Manifest;
use sfop_gateway::platform::{Body, Caller};
use sfop_management::VersionState as Registered;
use sfop_management::registry::state_of;
use sfop_portal::{
    ApiEntry, Catalog, Milestone, MilestoneKind, Portal, PortalRequest, Upstream, UpstreamFuture,
    UpstreamRequest, UpstreamResponse, VersionEntry, VersionState,
};

use crate::manage::Center;

/// The catalogue as the management center's registry has it: every API
/// with every version and its state, read on each call, so a promotion,
/// canary or deprecation shows at once.
#[derive(Debug)]
pub struct RegistryCatalog {
    management: Center,
}

impl RegistryCatalog {
    pub fn new(management: Center) -> Self {
        Self { management }
    }
}

impl Catalog for RegistryCatalog {
    fn apis(&self) -> Vec<ApiEntry> {
        let management = &self.management;
        let records = match management.apis() {
            Ok(records) => records,
            Err(e) => {
                tracing::error!("portal catalogue: {e}");
                return Vec::new();
            }
        };
        // Deprecations and retirements, dated, for the change notices.
        let audit = management.audit().unwrap_or_else(|e| {
            tracing::error!("portal catalogue: audit log: {e}");
            Vec::new()
        });
        let mut names: Vec<String> = records.iter().map(|a| a.name.clone()).collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let api = records.iter().find(|a| a.name == name);
                let versions = management
                    .versions(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .filter_map(|record| {
                        let state = match state_of(api, &record) {
                            Registered::Uploaded => VersionState::Uploaded,
                            Registered::Failed => VersionState::Tested { passed: false },
                            Registered::Tested => VersionState::Tested { passed: true },
                            Registered::Live => VersionState::Live,
                            Registered::Canary => VersionState::Canary {
                                percent: api
                                    .and_then(|a| a.canary.as_ref())
                                    .map_or(0, |c| c.percent),
                            },
                            Registered::Deprecated => VersionState::Deprecated {
                                sunset: api.and_then(|a| a.sunset.clone()).unwrap_or_default(),
                            },
                            Registered::Previous => VersionState::Superseded,
                            Registered::Retired => VersionState::Retired,
                        };
                        let version = record.version.to_string();
                        let milestones = audit
                            .iter()
                            .filter(|e| e.api == name && e.version.as_deref() == Some(&version))
                            .filter_map(|e| {
                                let kind = match e.action.as_str() {
                                    "deprecate" => MilestoneKind::Deprecated {
                                        sunset: e
                                            .detail
                                            .strip_prefix("sunset ")
                                            .unwrap_or(&e.detail)
                                            .to_owned(),
                                    },
                                    "retire" => MilestoneKind::Retired,
                                    _ => return None,
                                };
                                Some(Milestone {
                                    at_ms: e.at_ms,
                                    kind,
                                })
                            })
                            .collect();
                        Some(VersionEntry {
                            milestones,
                            manifest: Manifest::parse(&record.manifest).ok()?,
                            sha256: record.component_sha256,
                            state,
                            uploaded_at_ms: record.uploaded_at_ms,
                            report_html: record.test.map(|t| t.report_html),
                        })
                    })
                    .collect();
                ApiEntry { name, versions }
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

/// `/portal` and everything below it, on the platform router; bodies up
/// to the gateway's `UNAUTHENTICATED_MAX_BODY` (a form).
pub fn routes(portal: Arc<Portal>) -> Router {
    Router::new()
        .route(sfop_portal::PREFIX, any(page))
        .route(&format!("{}/{{*rest}}", sfop_portal::PREFIX), any(page))
        .with_state(portal)
}

async fn page(
    State(portal): State<Arc<Portal>>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let cookie = headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let answer = portal
        .handle(PortalRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            authority: caller.authority,
            cookie: (!cookie.is_empty()).then_some(cookie),
            body: body.to_vec(),
            peer: Some(caller.peer),
        })
        .await;
    let mut response = Response::new(axum::body::Body::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The sandbox's fault script as the portal shows it: a developer sees and
/// changes only the rules of their own app (the portal checks ownership;
/// this checks the rule's client on removal too). The status page reads the
/// virtual bank's outage switches and the rules for every app.
#[derive(Debug)]
pub struct PortalSandbox(
    pub sfop_vbank::faults::FaultScript,
    pub Option<sfop_vbank::VirtualBank>,
);

impl PortalSandbox {
    pub fn new(faults: sfop_vbank::faults::FaultScript, bank: sfop_vbank::VirtualBank) -> Self {
        Self(faults, Some(bank))
    }
}

impl sfop_portal::Sandbox for PortalSandbox {
    fn rules(&self, client_id: &str) -> Vec<serde_json::Value> {
        self.0
            .rules()
            .iter()
            .filter(|s| s.rule.client_id.as_deref() == Some(client_id))
            .filter_map(|s| serde_json::to_value(s).ok())
            .collect()
    }

    fn add(&self, client_id: &str, rule: serde_json::Value) -> Result<u64, String> {
        let mut rule = rule;
        if let Some(obj) = rule.as_object_mut() {
            obj.insert("client_id".into(), client_id.into());
        }
        let rule = sfop_vbank::faults::FaultRule::from_json(&rule).map_err(|e| e.to_string())?;
        self.0.add(rule).map_err(|e| match e {
            sfop_vbank::faults::FaultError::Invalid(e) => e.to_string(),
            other => {
                tracing::error!(error = %other, "portal: adding a sandbox fault");
                "the fault could not be stored; try again".to_owned()
            }
        })
    }

    fn banks(&self) -> Vec<sfop_portal::BankState> {
        let Some(bank) = &self.1 else {
            return Vec::new();
        };
        match bank.banks() {
            Ok(banks) => banks
                .into_iter()
                .map(|b| sfop_portal::BankState {
                    code: b.code,
                    name: b.name,
                    available: b.available,
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "portal status: reading the banks");
                Vec::new()
            }
        }
    }

    fn platform_rules(&self) -> Vec<serde_json::Value> {
        self.0
            .rules()
            .iter()
            .filter(|s| s.rule.client_id.is_none())
            .filter_map(|s| serde_json::to_value(s).ok())
            .collect()
    }

    fn remove(&self, client_id: &str, id: u64) -> Result<bool, String> {
        let theirs = self
            .0
            .rules()
            .iter()
            .any(|s| s.id == id && s.rule.client_id.as_deref() == Some(client_id));
        if !theirs {
            return Ok(false);
        }
        self.0.remove(id).map_err(|e| {
            tracing::error!(error = %e, "portal: removing a sandbox fault");
            "the fault could not be removed; try again".to_owned()
        })
    }
}
