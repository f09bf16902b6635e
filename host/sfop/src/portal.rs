//! Wiring the developer portal into the platform: a [`Catalog`] over the
//! management center's registry, the in-process client the portal's "try
//! it" and code exchange go through, and its routes under `/portal`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};

use axum::Router;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use sfop_core::Manifest;
use sfop_gateway::platform::{Body, Caller};
use sfop_gateway::{ConnInfo, Endpoints, Gateway};
use sfop_management::VersionState as Registered;
use sfop_management::registry::state_of;
use sfop_portal::{
    ApiEntry, Catalog, Milestone, MilestoneKind, Portal, PortalRequest, ServiceError, Upstream,
    UpstreamError, UpstreamFuture, UpstreamRequest, UpstreamResponse, VersionEntry, VersionState,
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

/// The portal's way into the platform: a request built in memory and
/// served by the gateway's own request path ([`Gateway::handle`]: route
/// table, authorisation, limits, envelope, metrics), as a client's request
/// is, with no socket and no TLS (docs/adr/0024-platform-router.md).
#[derive(Debug)]
pub struct InProcess {
    gateway: Arc<Gateway>,
    /// The router the portal is mounted on. Weak: it holds the portal.
    endpoints: Weak<Endpoints>,
    /// Whether the API listener speaks TLS (its answers' headers).
    tls: bool,
}

impl InProcess {
    pub fn new(gateway: Arc<Gateway>, endpoints: Weak<Endpoints>, tls: bool) -> Self {
        Self {
            gateway,
            endpoints,
            tls,
        }
    }
}

impl Upstream for InProcess {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture {
        let gateway = self.gateway.clone();
        let endpoints = self.endpoints.upgrade();
        let tls = self.tls;
        Box::pin(async move {
            let endpoints = endpoints.ok_or(UpstreamError::Stopped)?;
            let mut builder = Request::builder()
                .method(request.method.as_str())
                .uri(request.path_and_query.as_str());
            if let Some(authority) = &request.authority {
                builder = builder.header(hyper::header::HOST, authority.as_str());
            }
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            let req = builder
                .body(Full::new(Bytes::from(request.body)))
                .map_err(|e| UpstreamError::InvalidRequest(e.to_string()))?;
            // The developer's address: the platform's throttles count them.
            let peer = request.peer.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let conn = ConnInfo::in_process(SocketAddr::new(peer, 0), tls);
            let response = gateway.handle(req, &conn, &endpoints).await;
            let status = response.status().as_u16();
            let body = match response.into_body().collect().await {
                Ok(body) => body.to_bytes().to_vec(),
                Err(never) => match never {},
            };
            Ok(UpstreamResponse { status, body })
        })
    }
}

/// `/portal` and everything below it, on the platform router: one route per
/// page and method, its path parameters read (and percent-decoded) by the
/// router; a method a page lacks is the router's 405, any other path under
/// `/portal` the portal's own 404 page. Bodies up to the gateway's
/// `UNAUTHENTICATED_MAX_BODY` (a form).
pub fn routes(portal: Arc<Portal>) -> Router {
    use sfop_portal::Page as P;
    let page = |filter: MethodFilter, make: MakePage| {
        on(filter, serve).with_state(Pages {
            portal: portal.clone(),
            make,
        })
    };
    let (get, post) = (MethodFilter::GET, MethodFilter::POST);
    let at = |path: &str| format!("{}{path}", sfop_portal::PREFIX);
    Router::new()
        .route(sfop_portal::PREFIX, page(get, |_| P::Catalogue))
        .route(&at("/"), page(get, |_| P::Catalogue))
        .route(
            &at("/apis/{name}"),
            page(get, |p| P::Api { name: first(p) }),
        )
        .route(&at("/openapi.json"), page(get, |_| P::OpenApi))
        .route(&at("/permissions"), page(get, |_| P::Permissions))
        .route(&at("/keys"), page(get, |_| P::Keys))
        .route(&at("/changes"), page(get, |_| P::Changes))
        .route(&at("/changes.atom"), page(get, |_| P::ChangesFeed))
        .route(
            &at("/reports/{name}/{version}"),
            page(get, |p| P::Report {
                name: first(p),
                version: second(p),
            }),
        )
        .route(&at("/search"), page(get, |_| P::Search))
        .route(&at("/status"), page(get, |_| P::Status))
        .route(&at("/reference"), page(get, |_| P::Reference))
        .route(
            &at("/assets/{*file}"),
            page(get, |p| P::Asset { file: first(p) }),
        )
        .route(
            &at("/signup"),
            page(get, |_| P::SignUpForm).merge(page(post, |_| P::SignUp)),
        )
        .route(
            &at("/signin"),
            page(get, |_| P::SignInForm).merge(page(post, |_| P::SignIn)),
        )
        .route(&at("/signout"), page(post, |_| P::SignOut))
        .route(
            &at("/apps"),
            page(get, |_| P::Apps).merge(page(post, |_| P::RegisterApp)),
        )
        .route(&at("/apps/{id}"), page(get, |p| P::App { id: first(p) }))
        .route(
            &at("/apps/{id}/authorize"),
            page(post, |p| P::Authorize { id: first(p) }),
        )
        .route(
            &at("/apps/{id}/oob-token"),
            page(post, |p| P::OobToken { id: first(p) }),
        )
        .route(
            &at("/apps/{id}/faults"),
            page(post, |p| P::AddFault { id: first(p) }),
        )
        .route(
            &at("/apps/{id}/faults/remove"),
            page(post, |p| P::RemoveFault { id: first(p) }),
        )
        .route(
            &at("/apps/{id}/institution"),
            page(post, |p| P::RequestInstitution { id: first(p) }),
        )
        .route(
            &at("/apps/{id}/secret"),
            page(post, |p| P::RotateSecret { id: first(p) }),
        )
        .route(
            &at("/callback"),
            page(get, |_| P::Callback).merge(page(post, |_| P::ExchangeCode)),
        )
        .route(
            &at("/try/{name}"),
            page(post, |p| P::TryIt { name: first(p) }),
        )
        .route(
            &at("/{*rest}"),
            page(MethodFilter::GET.or(MethodFilter::POST), |_| P::NotFound),
        )
}

/// A page from the route's path parameters, in the order of the path.
type MakePage = fn(&[String]) -> sfop_portal::Page;

fn first(params: &[String]) -> String {
    params.first().cloned().unwrap_or_default()
}

fn second(params: &[String]) -> String {
    params.get(1).cloned().unwrap_or_default()
}

/// One route's state: the portal and the page the route leads to.
#[derive(Clone)]
struct Pages {
    portal: Arc<Portal>,
    make: MakePage,
}

async fn serve(
    State(pages): State<Pages>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    // A parameter that is not UTF-8 once decoded names no page.
    let page = match params {
        Ok(params) => {
            let values: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
            (pages.make)(&values)
        }
        Err(_) => sfop_portal::Page::NotFound,
    };
    let cookie = headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let answer = pages
        .portal
        .handle(
            &page,
            PortalRequest {
                method: method.to_string(),
                path: uri.path().to_owned(),
                query: uri.query().unwrap_or_default().to_owned(),
                authority: caller.authority,
                cookie: (!cookie.is_empty()).then_some(cookie),
                body: body.to_vec(),
                peer: Some(caller.peer),
                origin: header_text(&headers, hyper::header::ORIGIN),
                fetch_site: header_text(&headers, "sec-fetch-site"),
            },
        )
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

    fn add(&self, client_id: &str, rule: serde_json::Value) -> Result<u64, ServiceError> {
        let mut rule = rule;
        if let Some(obj) = rule.as_object_mut() {
            obj.insert("client_id".into(), client_id.into());
        }
        let rule = sfop_vbank::faults::FaultRule::from_json(&rule)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        self.0.add(rule).map_err(|e| match e {
            sfop_vbank::faults::FaultError::Invalid(e) => ServiceError::Invalid(e.to_string()),
            store => ServiceError::failed(store),
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

    fn remove(&self, client_id: &str, id: u64) -> Result<bool, ServiceError> {
        let theirs = self
            .0
            .rules()
            .iter()
            .any(|s| s.id == id && s.rule.client_id.as_deref() == Some(client_id));
        if !theirs {
            return Ok(false);
        }
        self.0.remove(id).map_err(ServiceError::failed)
    }
}

/// A header's value as text, when it is there once and is text.
fn header_text(headers: &HeaderMap, name: impl hyper::header::AsHeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok().map(str::to_owned),
        // Given twice: which counts is no one's choice; taken as foreign.
        (Some(_), Some(_)) => Some("cross-site".to_owned()),
        (None, _) => None,
    }
}
