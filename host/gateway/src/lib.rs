//! The sfop API gateway: accepts HTTP, routes `METHOD path` to the live release
//! of an API, runs it in the Wasm runtime, and writes the common response
//! envelope (`api_tran_id`, `api_tran_dtm`, `rsp_code`, `rsp_message`).

mod admission;
mod authz;
mod coalesce;
mod envelope;
mod fault;
mod metrics;
pub mod platform;
mod routes;
pub mod tls;
mod trace;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sfop_core::envelope::ErrorBody;
use sfop_core::{ApiTranId, Outcome, time};
use sfop_runtime::{Api, Call};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::admission::Admission;
use crate::coalesce::Coalesce;

pub use admission::{AdmissionLimits, RETRY_AFTER_SECS, Shed};
pub use authz::{AuthRequest, Authorizer, Denial, DenialKind, NoAuth, UNAUTHENTICATED_MAX_BODY};
pub use fault::{ErrorSource, Fault};
pub use metrics::{ApiStats, Metrics};
pub use platform::{Caller, Endpoints, PlatformError};
pub use routes::{ApiRoute, Canary, Release, RouteConflict, RouteTable, StickyKey, Target};

/// The header that carries `api_tran_id` on every response, JSON or not.
pub const API_TRAN_ID_HEADER: &str = "x-api-tran-id";

/// On a response: the version of the API that answered. On a request: the
/// version a tester wants (the stable release or the canary candidate).
pub const API_VERSION_HEADER: &str = "x-sfop-api-version";

const JSON: &str = "application/json; charset=UTF-8";

const NO_STORE: &str = "no-store";

/// HSTS on every HTTPS answer: a year, subdomains included (RFC 6797).
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The headers every answer of the gateway carries, errors included: no
/// content sniffing, no caching unless the endpoint chose a policy (a portal
/// page may), and HSTS when the answer went over TLS.
fn harden(headers: &mut header::HeaderMap, tls: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static(NO_STORE));
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Business time zone for `api_tran_dtm`, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// How long a connection may be slow or idle.
    pub conn: ConnLimits,
    /// How many connections, handshakes and requests the API listener
    /// takes at once.
    pub admission: AdmissionLimits,
    /// OpenTelemetry: off, or a server span per request (ADR 0028).
    pub telemetry: sfop_telemetry::Tracing,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            utc_offset_minutes: time::KST_OFFSET_MINUTES,
            conn: ConnLimits::default(),
            admission: AdmissionLimits::default(),
            telemetry: sfop_telemetry::Tracing::off(),
        }
    }
}

/// What the gateway knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The request came over TLS.
    pub tls: bool,
    /// The institution's identity when it presented a verified client
    /// certificate (mutual TLS): the certificate's SHA-256 fingerprint.
    pub client_cert: Option<String>,
    activity: Arc<Activity>,
    /// The listener is draining: HTTP/1.x answers carry `Connection: close`.
    draining: Arc<AtomicBool>,
}

impl ConnInfo {
    /// A request made inside the process, on no connection (the portal's
    /// calls of the platform, ADR 0024): `peer` is who it is made for,
    /// `tls` whether the platform's listener speaks TLS (so the answer's
    /// headers are the ones a network client gets).
    pub fn in_process(peer: SocketAddr, tls: bool) -> Self {
        Self {
            peer,
            tls,
            client_cert: None,
            activity: Arc::default(),
            draining: Arc::default(),
        }
    }
}

/// The data plane: a swappable route table and the request path.
#[derive(Debug)]
pub struct Gateway {
    routes: ArcSwap<RouteTable>,
    metrics: Metrics,
    authorizer: Arc<dyn Authorizer>,
    config: GatewayConfig,
    ready: std::sync::atomic::AtomicBool,
    /// What else must hold for this node to take traffic.
    ready_checks: std::sync::RwLock<Vec<Arc<dyn ReadyCheck>>>,
    admission: Arc<Admission>,
}

/// A condition outside the gateway that must hold for this node to take
/// traffic, such as a cluster node's bank having applied the cluster's
/// changes: while it does not, `/readyz` answers 503 and names it (so a
/// load balancer sends the traffic to the other nodes), and `/metrics`
/// shows it as `sfop_ready_check{check="<name>"} 0`.
pub trait ReadyCheck: Send + Sync + std::fmt::Debug {
    /// A short, stable name: the metric's label and `/readyz`'s list.
    fn name(&self) -> &'static str;
    /// Whether it holds now; read on every `/readyz` and scrape, so cheap.
    fn holds(&self) -> bool;
}

impl Gateway {
    /// A gateway with an empty route table that asks `authorizer` about
    /// every routed request.
    pub fn new(config: GatewayConfig, authorizer: Arc<dyn Authorizer>) -> Self {
        Self {
            routes: ArcSwap::from_pointee(RouteTable::default()),
            metrics: Metrics::default(),
            authorizer,
            admission: Arc::new(Admission::new(config.admission)),
            config,
            ready: std::sync::atomic::AtomicBool::new(false),
            ready_checks: std::sync::RwLock::default(),
        }
    }

    /// Adds `check` to what `/readyz` requires.
    pub fn add_ready_check(&self, check: Arc<dyn ReadyCheck>) {
        self.ready_checks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(check);
    }

    /// Each ready check's name, and whether it holds now.
    fn ready_checks(&self) -> Vec<(&'static str, bool)> {
        self.ready_checks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|check| (check.name(), check.holds()))
            .collect()
    }

    /// Marks the gateway ready (packages loaded) or not (starting, draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready
            .store(ready, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this node takes traffic: its packages are loaded, it is not
    /// draining, and every [`ReadyCheck`] holds.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// [`Self::is_ready`], with the names of the ready checks that fail
    /// when not (none: starting or draining). Each check is read once.
    fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let failing: Vec<&'static str> = self
            .ready_checks()
            .into_iter()
            .filter_map(|(name, holds)| (!holds).then_some(name))
            .collect();
        if self.ready.load(std::sync::atomic::Ordering::Relaxed) && failing.is_empty() {
            Ok(())
        } else {
            Err(failing)
        }
    }

    /// A loaded release of `api`, counted under its name and version, with
    /// its bound on calls at once: the manifest's `limits.max_concurrency`,
    /// never above the platform's per-API bound.
    pub fn release(&self, api: Arc<Api>) -> Release {
        let manifest = api.manifest();
        let stats = self
            .metrics
            .api(&manifest.name, &manifest.version.to_string());
        let platform = self.config.admission.api_max_in_flight;
        let max = match usize::try_from(manifest.limits.max_concurrency) {
            Ok(0) | Err(_) => platform,
            Ok(own) => own.min(platform),
        };
        stats.set_max_in_flight(max);
        Release { api, stats }
    }

    /// Connections and requests refused by admission control, by bound.
    pub fn shed(&self, bound: Shed) -> u64 {
        self.admission.shed(bound)
    }

    /// A route target serving `api` alone.
    pub fn live(&self, api: Arc<Api>) -> Target {
        Target::Api(Arc::new(ApiRoute::single(self.release(api))))
    }

    /// A route target served by the platform's router ([`Endpoints`]),
    /// counted under `name`.
    pub fn platform(&self, name: &str) -> Target {
        Target::Platform {
            name: name.to_owned(),
            stats: self.metrics.api(name, "platform"),
        }
    }

    /// A closed route target for a package of `api` at `version` that failed to load.
    pub fn closed(&self, api: &str, version: &str) -> Target {
        Target::Closed {
            api: api.to_owned(),
            stats: self.metrics.api(api, version),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The platform's tracing (off, or exporting spans: ADR 0028).
    pub fn telemetry(&self) -> &sfop_telemetry::Tracing {
        &self.config.telemetry
    }

    /// `/metrics` in the OpenMetrics text format ([`metrics::CONTENT_TYPE`]).
    pub fn render_metrics(&self) -> String {
        let routes = self.routes.load();
        let (live, closed) = routes.counts();
        self.metrics
            .scrape(live, closed)
            .with_releases(routes.releases())
            .with_admission(self.admission.clone())
            .with_telemetry(self.config.telemetry.stats())
            .with_ready_checks(self.ready_checks())
            .render()
    }

    /// Replaces the route table atomically. Requests already routed finish on
    /// the release they started on; releases no longer referenced are dropped
    /// when their last request ends.
    ///
    /// Releases that enter the table start keeping instances ready; releases
    /// that leave it (a rolled-back or superseded version the management
    /// center keeps compiled) give theirs back to the pool.
    ///
    /// A release that replaces another version of the same API starts with
    /// as many instances ready as the one it replaces had: a promotion or
    /// rollback under load does not make the first requests after it pay
    /// for instantiation. This runs on the caller's thread (the management
    /// center's blocking thread), before the swap.
    pub fn swap_routes(&self, routes: RouteTable) {
        let serving = routes.releases();
        let before = self.routes.load().releases();
        let mut heat = Vec::new();
        for api in &before {
            if !serving.iter().any(|s| Arc::ptr_eq(s, api)) {
                heat.push((api.manifest().name.clone(), api.instances().ready));
                api.set_serving(false);
            }
        }
        for api in &serving {
            api.set_serving(true);
            if !before.iter().any(|b| Arc::ptr_eq(b, api)) {
                let inherited = heat
                    .iter()
                    .filter(|(name, _)| *name == api.manifest().name)
                    .map(|(_, ready)| *ready)
                    .max()
                    .unwrap_or(0);
                api.prepare_instances(inherited.min(16));
            }
        }
        self.routes.store(Arc::new(routes));
    }

    /// The current route table.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Serves one request if the listener has room for it (fewer than
    /// `max_in_flight` in progress); otherwise answers `503 A0013` with
    /// `Retry-After` at once, before routing or reading the body.
    async fn admit(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        endpoints: &Endpoints,
    ) -> Response<Full<Bytes>> {
        match self.admission.in_flight.try_enter() {
            Some(_permit) => self.handle(req, conn, endpoints).await,
            None => {
                self.admission.count(Shed::InFlight);
                let id = ApiTranId::generate();
                let mut response = self.fault_response(&id, &Fault::Shed(Shed::InFlight));
                harden(response.headers_mut(), conn.tls);
                response
            }
        }
    }

    /// Serves one request: an API's through its plugin, one of the
    /// platform's own through `endpoints`. Never fails: every outcome is a
    /// response. The body is hyper's off the network, or any other (an
    /// in-memory request made in process, [`ConnInfo::in_process`]): both
    /// take the same route table, authorisation, limits and envelope.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
        endpoints: &Endpoints,
    ) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let id = ApiTranId::generate();
        let telemetry = &self.config.telemetry;
        let mut server = telemetry.server_span(req.headers(), req.method().as_str());
        let span = tracing::info_span!(
            "request",
            api_tran_id = %id,
            method = %req.method(),
            path = req.uri().path(),
            api = tracing::field::Empty,
            version = tracing::field::Empty,
            institution = conn.client_cert.as_deref(),
            trace_id = tracing::field::Empty,
        );
        trace::begin(&mut server, &req, conn);
        if let Some(trace_id) = server.parent().trace_id() {
            span.record("trace_id", tracing::field::display(&trace_id));
        }
        async {
            let started = Instant::now();
            let (result, routed) = if telemetry.is_on() {
                let parent = server.parent().clone();
                let call = self.route_and_call(&id, req, conn, endpoints, &mut server);
                sfop_telemetry::scope(parent, call).await
            } else {
                self.route_and_call(&id, req, conn, endpoints, &mut server)
                    .await
            };
            let mut response = match result {
                Ok(response) => {
                    if let Some(routed) = &routed {
                        let outcome = if response.status().is_server_error() {
                            Outcome::ServerError
                        } else {
                            Outcome::Ok
                        };
                        routed.stats.record(outcome, started.elapsed());
                    }
                    response
                }
                Err(fault) => {
                    match &routed {
                        Some(routed) => routed.stats.record(fault.outcome(), started.elapsed()),
                        None => self.metrics.unrouted(fault.outcome()),
                    }
                    server.set("sfop.outcome", fault.label());
                    self.fault_response(&id, &fault)
                }
            };
            if let Some(routed) = routed {
                routed.stamp(&mut response);
            }
            harden(response.headers_mut(), conn.tls);
            trace::end(&mut server, &response, &id);
            tracing::debug!(status = response.status().as_u16(), "answered");
            response
        }
        .instrument(span)
        .await
    }

    fn fault_response(&self, id: &ApiTranId, fault: &Fault) -> Response<Full<Bytes>> {
        let (status, code) = fault.status_and_code();
        match fault.source() {
            // Shed under overload: one line each would flood the log; the
            // counters say it (sfop_shed_total).
            _ if fault.retry_later() || fault.logged_by_runtime() => {
                tracing::debug!(fault = fault.label(), "{fault}")
            }
            ErrorSource::Client => tracing::debug!(fault = fault.label(), "{fault}"),
            source => tracing::warn!(fault = fault.label(), source = source.as_str(), "{fault}"),
        }
        let mut response = self.error_response(id, status, code, &fault.public_message());
        if let Fault::MethodNotAllowed { allowed, .. } = fault
            && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
        {
            response.headers_mut().insert(header::ALLOW, v);
        }
        if fault.retry_later() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        // RFC 6750 §3: a bearer-token refusal names its scheme; a missing
        // token (O0001) gets no error code.
        if let Fault::Denied(denial) = fault
            && denial.kind == DenialKind::Unauthenticated
        {
            let challenge = match denial.rsp_code {
                "O0001" => r#"Bearer realm="sfop""#,
                _ => r#"Bearer realm="sfop", error="invalid_token""#,
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }

    /// Routes and runs a request; also says which API version (if any) the
    /// outcome belongs to. The route found names the server span.
    async fn route_and_call<B>(
        &self,
        id: &ApiTranId,
        req: Request<B>,
        conn: &ConnInfo,
        endpoints: &Endpoints,
        server: &mut sfop_telemetry::Span,
    ) -> (Result<Response<Full<Bytes>>, Fault>, Option<Routed>)
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let route = {
            let routes = self.routes.load();
            let target = routes.lookup(&method, &path);
            if let Ok(target) = &target {
                trace::route(server, &method, &path, target);
            }
            match target {
                Ok(Target::Api(route)) => route.clone(),
                Ok(Target::Platform { stats, .. }) => {
                    let stats = stats.clone();
                    drop(routes);
                    let result = self.call_platform(id, endpoints, req, conn).await;
                    return (result, Some(Routed::platform(stats)));
                }
                Ok(Target::Closed { api, stats, .. }) => {
                    let fault = Fault::RouteClosed { api: api.clone() };
                    return (Err(fault), Some(Routed::platform(stats.clone())));
                }
                Ok(Target::Retired { api, sunset }) => {
                    let fault = Fault::Retired {
                        api: api.clone(),
                        sunset: sunset.clone(),
                    };
                    return (Err(fault), None);
                }
                Err(allowed) if allowed.is_empty() => {
                    return (Err(Fault::RouteNotFound { method, path }), None);
                }
                Err(allowed) => {
                    return (
                        Err(Fault::MethodNotAllowed {
                            method,
                            path,
                            allowed,
                        }),
                        None,
                    );
                }
            }
        };
        self.call(id, &route, method, path, req, conn).await
    }

    /// Runs a request on the release of `route` that serves it: the version
    /// the caller pinned with `x-sfop-api-version`, else the canary candidate
    /// for its share of sticky keys, else the stable release.
    async fn call<B>(
        &self,
        id: &ApiTranId,
        route: &ApiRoute,
        method: String,
        path: String,
        req: Request<B>,
        conn: &ConnInfo,
    ) -> (Result<Response<Full<Bytes>>, Fault>, Option<Routed>)
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<axum::BoxError>,
    {
        let span = tracing::Span::current();
        span.record("api", route.stable.api.manifest().name.as_str());
        let (parts, body) = req.into_parts();
        let limit_kib = std::iter::once(&route.stable)
            .chain(route.canary.as_ref().map(|c| &c.release))
            .map(|r| r.api.manifest().limits.max_body_kib)
            .max()
            .unwrap_or_default();
        let body = match read_body(body, limit_kib).await {
            Ok(body) => body,
            Err(fault) => return (Err(fault), Some(Routed::api(route, &route.stable))),
        };
        let query = parts.uri.query().unwrap_or_default();
        // One reading of the request for the authoriser and the plugin: a
        // field given twice could be authorised on one value and served on
        // the other, so it is refused before anyone reads it.
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Some(repeated) = sfop_core::access::repeated(query, content_type, &body) {
            return (
                Err(Fault::Repeated(repeated)),
                Some(Routed::api(route, &route.stable)),
            );
        }
        let auth = |manifest| AuthRequest {
            manifest,
            method: &method,
            path: &path,
            query,
            headers: &parts.headers,
            body: &body,
            client_cert: conn.client_cert.as_deref(),
        };

        let pinned = match parts.headers.get(API_VERSION_HEADER) {
            None => None,
            Some(value) => match value
                .to_str()
                .ok()
                .and_then(|v| semver::Version::parse(v.trim()).ok())
                .and_then(|v| route.version(&v))
            {
                Some(release) => Some(release),
                None => {
                    let fault = Fault::VersionNotServed {
                        api: route.stable.api.manifest().name.clone(),
                        asked: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    };
                    return (Err(fault), Some(Routed::api(route, &route.stable)));
                }
            },
        };
        let first = pinned.unwrap_or(&route.stable);
        let caller = match self.authorizer.authorize(&auth(first.api.manifest())) {
            Ok(caller) => caller,
            Err(denial) => return (Err(Fault::Denied(denial)), Some(Routed::api(route, first))),
        };
        let (release, caller) = match (pinned, &route.canary) {
            (None, Some(canary)) => {
                let key = match canary.sticky {
                    StickyKey::Account => sfop_core::access::extract(
                        &route.stable.api.manifest().access,
                        query,
                        &body,
                    )
                    .accounts
                    .into_iter()
                    .next(),
                    StickyKey::Client => None,
                }
                .or_else(|| caller.as_ref().map(|c| c.client_id.clone()))
                // No caller and no account: nothing to stick to; split per request.
                .unwrap_or_else(|| id.to_string());
                let release = route.pick(&key);
                let (a, b) = (release.api.manifest(), route.stable.api.manifest());
                // The candidate is authorised against its own manifest when it
                // asks for something else than the stable release.
                if a.scope != b.scope || a.access != b.access {
                    match self.authorizer.authorize(&auth(a)) {
                        Ok(caller) => (release, caller),
                        Err(denial) => {
                            return (
                                Err(Fault::Denied(denial)),
                                Some(Routed::api(route, release)),
                            );
                        }
                    }
                } else {
                    (release, caller)
                }
            }
            _ => (first, caller),
        };
        let routed = Routed::api(route, release);
        // One API cannot take every place of the listener: over its own
        // bound it is answered at once, before an instance is taken.
        let Some(_running) = release.stats.try_enter() else {
            self.admission.count(Shed::ApiInFlight);
            return (Err(Fault::Shed(Shed::ApiInFlight)), Some(routed));
        };
        let result = self
            .run(id, &release.api, method, path, &parts, body, caller)
            .await;
        (result, Some(routed))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        id: &ApiTranId,
        api: &Api,
        method: String,
        path: String,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        caller: Option<sfop_core::Claims>,
    ) -> Result<Response<Full<Bytes>>, Fault> {
        let manifest = api.manifest();
        tracing::Span::current().record("version", tracing::field::display(&manifest.version));
        let limit_kib = manifest.limits.max_body_kib;
        if body.len() > limit_kib as usize * 1024 {
            return Err(Fault::BodyTooLarge { limit_kib });
        }
        let call = Call {
            api_tran_id: id.as_str().to_owned(),
            method,
            path,
            query: parts.uri.query().unwrap_or_default().to_owned(),
            // The bearer token stays at the gateway: plugins get the verified
            // claims through auth-context, never a credential they could replay.
            headers: parts
                .headers
                .iter()
                .filter(|(k, _)| *k != header::AUTHORIZATION)
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: body.to_vec(),
            caller,
        };
        let timeout = Duration::from_millis(u64::from(manifest.limits.timeout_ms));
        let reply = within(timeout, api.call(call))
            .await
            .ok_or(Fault::Timeout {
                limit_ms: manifest.limits.timeout_ms,
            })??;

        let is_json = reply.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v.starts_with("application/json")
        });
        let body = if is_json {
            self.stamp_envelope(id, &reply.body)
                .ok_or(Fault::BadPluginBody)?
        } else {
            reply.body
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::from_u16(reply.status)
            .map_err(|_| Fault::Call(sfop_runtime::CallError::BadStatus(reply.status)))?;
        for (name, value) in &reply.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        // An API answer is about one caller's accounts: no cache keeps it,
        // whatever the plugin said.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        self.tag(id, &mut response);
        Ok(response)
    }

    /// A request to the platform's own endpoints: through their router,
    /// with the caller's connection in the request's extensions.
    async fn call_platform<B>(
        &self,
        id: &ApiTranId,
        endpoints: &Endpoints,
        req: Request<B>,
        conn: &ConnInfo,
    ) -> Result<Response<Full<Bytes>>, Fault>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| Some(parts.headers.get(header::HOST)?.to_str().ok()?.to_owned()));
        parts.extensions.insert(Caller {
            api_tran_id: id.as_str().to_owned(),
            peer: conn.peer.ip(),
            client_cert: conn.client_cert.clone(),
            authority,
        });
        let (parts, body, envelope) =
            platform::call(endpoints, Request::from_parts(parts, body)).await?;
        let body = if envelope {
            self.stamp_envelope(id, &body).map_or(body, Bytes::from)
        } else {
            body
        };
        let mut response = Response::from_parts(parts, Full::new(body));
        // The router's length was of its body; hyper writes the stamped one's.
        response.headers_mut().remove(header::CONTENT_LENGTH);
        self.tag(id, &mut response);
        Ok(response)
    }

    /// Puts `api_tran_id` and `api_tran_dtm` first in a plugin's JSON object;
    /// values a plugin wrote under those keys are replaced. `None` when the
    /// body is not a JSON object.
    fn stamp_envelope(&self, id: &ApiTranId, body: &[u8]) -> Option<Vec<u8>> {
        envelope::stamp(body, id.as_str(), &self.dtm())
    }

    fn dtm(&self) -> String {
        time::format_dtm(time::now_millis(), self.config.utc_offset_minutes)
    }

    fn error_response(
        &self,
        id: &ApiTranId,
        status: u16,
        code: &str,
        message: &str,
    ) -> Response<Full<Bytes>> {
        let dtm = self.dtm();
        let body = ErrorBody {
            api_tran_id: id.as_str(),
            api_tran_dtm: &dtm,
            rsp_code: code,
            rsp_message: message,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        self.tag(id, &mut response);
        response
    }

    fn tag(&self, id: &ApiTranId, response: &mut Response<Full<Bytes>>) {
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert(API_TRAN_ID_HEADER, v);
        }
    }
}

/// Runs `future` for at most `limit` of wall-clock time; `None` when the
/// limit passed first. The timer is armed only if the first poll does not
/// finish the future: a plugin that needs no host I/O answers in that poll
/// (its CPU is bounded by the epoch deadline), and registering and removing
/// a timer per request is measurable at gateway rates.
async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Some(output),
        Poll::Pending => tokio::time::timeout_at(deadline, future).await.ok(),
    }
}

/// Reads a request body of at most `limit_kib` KiB.
async fn read_body<B>(body: B, limit_kib: u32) -> Result<Bytes, Fault>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    Limited::new(body, limit_kib as usize * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Fault::BodyTooLarge { limit_kib }
            } else {
                Fault::BodyUnreadable
            }
        })
}

/// The API version an answer belongs to: its counters, and the headers
/// that tell the client which version answered.
struct Routed {
    stats: Arc<ApiStats>,
    version: Option<HeaderValue>,
    sunset: Option<HeaderValue>,
}

impl Routed {
    fn api(route: &ApiRoute, release: &Release) -> Self {
        Self {
            stats: release.stats.clone(),
            version: HeaderValue::from_str(&release.version().to_string()).ok(),
            sunset: route
                .sunset
                .as_deref()
                .and_then(sfop_core::time::Date::parse)
                .and_then(|d| HeaderValue::from_str(&d.http_date()).ok()),
        }
    }

    fn platform(stats: Arc<ApiStats>) -> Self {
        Self {
            stats,
            version: None,
            sunset: None,
        }
    }

    fn stamp(self, response: &mut Response<Full<Bytes>>) {
        let headers = response.headers_mut();
        if let Some(version) = self.version {
            headers.insert(API_VERSION_HEADER, version);
        }
        if let Some(sunset) = self.sunset {
            headers.insert("sunset", sunset);
            headers.insert("deprecation", HeaderValue::from_static("true"));
        }
    }
}

/// How a listener speaks.
#[derive(Debug, Clone)]
pub enum Transport {
    /// HTTP over TLS (HTTP/2 or HTTP/1.1 by ALPN).
    Tls(Arc<rustls::ServerConfig>),
    /// Cleartext HTTP/1.1 or HTTP/2 (prior knowledge); only when configured.
    Plain,
}

/// How long the gateway waits for a client: what keeps slow or idle
/// connections (slowloris) from holding sockets and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest an HTTP/1.1 client may take to send a request head, counted
    /// from the first byte read for it, or on a kept-alive connection from
    /// the end of the previous answer.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and none started for this
    /// long is closed gracefully (HTTP/2: `GOAWAY`); checked once per
    /// period, so it closes between one and two periods after its last
    /// request. This also ends a client that never sends a first request.
    pub idle_timeout: Duration,
    /// HTTP/2 pings to a connection that sent nothing for this long.
    pub h2_keep_alive_interval: Duration,
    /// An HTTP/2 ping unanswered for this long closes the connection.
    pub h2_keep_alive_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(10),
        }
    }
}

/// Requests of one connection, for its idle timeout and its drain: three
/// relaxed counters, no timer.
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// Reads that brought bytes (under TLS: raw bytes), so a draining
    /// connection knows a request may be arriving that hyper has not
    /// parsed yet.
    reads: AtomicU64,
}

/// A request in progress on a connection; ends when dropped.
struct Busy(Arc<ConnInfo>);

impl Busy {
    fn new(conn: Arc<ConnInfo>) -> Self {
        conn.activity.started.fetch_add(1, Ordering::Relaxed);
        conn.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket, counting the reads that brought bytes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where a listener is in its stop, sent by its owner on a watch channel.
/// A sender dropped counts as [`Phase::Stopped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// Still accepting and serving (a load balancer may still send while
    /// it notices `/readyz`), but every HTTP/1.x answer carries
    /// `Connection: close` and HTTP/2 connections get `GOAWAY`, so clients
    /// move away.
    Draining,
    /// The listener is closed. Requests already read are answered (with
    /// `Connection: close`); a connection closes once it is quiet.
    Stopped,
}

/// Once the listener is closed, a connection with no request in progress
/// is closed after it has read nothing for a whole period this long. A
/// request the client wrote before the listener closed is in the socket by
/// then and is read, answered and only then followed by the close; hyper
/// alone would close an idle HTTP/1.1 connection at once and lose it.
pub const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// After a failed `accept` (out of file descriptors and the like), the
/// loop waits this long instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What a cleartext connection over `gateway.max_connections` is told
/// before it is closed. (Over TLS the connection is closed at once: a
/// handshake only to refuse would spend what the bound protects.)
const SHED_CONNECTION: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json; charset=UTF-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 94\r\n\
\r\n\
{\"rsp_code\":\"A0013\",\"rsp_message\":\"the platform is busy; retry after the time in Retry-After\"}";

/// Accepts connections on `listener` until `shutdown` resolves, then lets
/// open connections finish their requests for at most `drain`: a stop
/// with no grace period ([`serve_phased`] has one).
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let (phase, phased) = watch::channel(Phase::Serving);
    let stop = async move {
        shutdown.await;
        drop(phase); // counts as Phase::Stopped
        std::future::pending::<std::io::Result<()>>().await
    };
    tokio::select! {
        served = serve_phased(listener, transport, gateway, phased, drain) => served,
        never = stop => never,
    }
}

/// Accepts connections on `listener` until `phase` says [`Phase::Stopped`],
/// then lets open connections finish their requests for at most `drain`.
/// Over the bounds of `gateway.max_*` connections are closed and requests
/// answered `503` at once (see `admission`).
pub async fn serve_phased(
    listener: TcpListener,
    transport: Transport,
    gateway: Arc<Gateway>,
    phase: watch::Receiver<Phase>,
    drain: Duration,
) -> std::io::Result<()> {
    let endpoints = Arc::new(Endpoints::default());
    serve_platform(listener, transport, gateway, endpoints, phase, drain).await
}

/// [`serve_phased`] with the platform's own endpoints: the paths the route
/// table gives to the platform ([`Target::Platform`]) are answered by
/// `endpoints`' router.
pub async fn serve_platform(
    listener: TcpListener,
    transport: Transport,
    gateway: Arc<Gateway>,
    endpoints: Arc<Endpoints>,
    phase: watch::Receiver<Phase>,
    drain: Duration,
) -> std::io::Result<()> {
    let limits = gateway.config.conn;
    let admission = gateway.admission.clone();
    let handler = move |req: Request<Incoming>, conn: Arc<ConnInfo>| {
        let (gateway, endpoints) = (gateway.clone(), endpoints.clone());
        async move { gateway.admit(req, &conn, &endpoints).await }
    };
    accept_loop(
        listener, transport, limits, admission, handler, phase, drain,
    )
    .await
}

/// The accept loop shared by the API listener and the ops listener.
async fn accept_loop<H, F>(
    listener: TcpListener,
    transport: Transport,
    limits: ConnLimits,
    admission: Arc<Admission>,
    handler: H,
    mut phase: watch::Receiver<Phase>,
    drain: Duration,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    // Every connection task holds a receiver: the sender passes the phase
    // on, and learns when the last one ended, which is the end of the drain.
    let (stage, staged) = watch::channel(Phase::Serving);
    let draining = Arc::new(AtomicBool::new(false));
    let config = match &transport {
        Transport::Tls(config) => Some(config.clone()),
        Transport::Plain => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.h2_keep_alive_timeout);
    // The phase it starts in counts as a change.
    phase.mark_changed();
    loop {
        let (stream, peer) = tokio::select! {
            changed = phase.changed() => {
                let now = match changed {
                    Ok(()) => *phase.borrow_and_update(),
                    Err(_) => Phase::Stopped,
                };
                if now >= Phase::Draining {
                    draining.store(true, Ordering::Relaxed);
                }
                stage.send_replace(now);
                if now == Phase::Stopped {
                    break;
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(slot) = admission.try_connection() else {
            admission.count(Shed::Connections);
            if config.is_none() {
                // A fresh socket's send buffer is empty: this never blocks.
                let _ = stream.try_write(SHED_CONNECTION);
            }
            continue; // dropped: closed
        };
        let (handler, config, builder) = (handler.clone(), config.clone(), builder.clone());
        let (admission, draining) = (admission.clone(), draining.clone());
        // Taken now, so a connection still in its TLS handshake when the
        // listener stops is drained like the others.
        let mut stopping = staged.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::default());
            let io = Coalesce::new(Watched {
                inner: stream,
                activity: activity.clone(),
            });
            let service = |conn: Arc<ConnInfo>| {
                service_fn(move |req: Request<Incoming>| {
                    let busy = Busy::new(conn.clone());
                    let handler = handler.clone();
                    async move {
                        let http1 = req.version() < Version::HTTP_2;
                        let mut response = handler(req, busy.0.clone()).await;
                        // Draining: the client is told to take its next
                        // request elsewhere; hyper closes after this answer.
                        if http1 && busy.0.draining.load(Ordering::Relaxed) {
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        drop(busy);
                        Ok::<_, Infallible>(response)
                    }
                })
            };
            let result = match config {
                None => {
                    let conn = Arc::new(ConnInfo {
                        peer,
                        tls: false,
                        client_cert: None,
                        activity,
                        draining,
                    });
                    let connection =
                        builder.serve_connection(TokioIo::new(io), service(conn.clone()));
                    drive(
                        connection,
                        |c| c.graceful_shutdown(),
                        &conn.activity,
                        limits.idle_timeout,
                        false,
                        &mut stopping,
                    )
                    .await
                }
                Some(config) => {
                    let Some(tls) =
                        handshake(io, config, &admission, peer, limits.handshake_timeout).await
                    else {
                        return;
                    };
                    let session = tls.get_ref().1;
                    let client_cert = session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(tls::fingerprint);
                    // ALPN already chose the protocol: no sniffing of the
                    // first bytes (which a silent client would never send).
                    let (builder, h2) = match session.alpn_protocol() {
                        Some(b"h2") => (builder.http2_only(), true),
                        Some(b"http/1.1") => (builder.http1_only(), false),
                        _ => (builder, false),
                    };
                    let conn = Arc::new(ConnInfo {
                        peer,
                        tls: true,
                        client_cert,
                        activity,
                        draining,
                    });
                    let connection =
                        builder.serve_connection(TokioIo::new(tls), service(conn.clone()));
                    drive(
                        connection,
                        |c| c.graceful_shutdown(),
                        &conn.activity,
                        limits.idle_timeout,
                        h2,
                        &mut stopping,
                    )
                    .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(staged);
    if tokio::time::timeout(drain, stage.closed()).await.is_err() {
        tracing::warn!(?drain, "drain bound reached; closing remaining connections");
    }
    Ok(())
}

/// The TLS handshake of one connection, within `timeout`. The client's
/// hello is awaited without holding a place; the work of the handshake
/// (key exchange, signature) takes one of `gateway.max_handshakes`, and
/// when none is free the connection is closed at once instead of queueing
/// behind the others. `None`: closed.
async fn handshake<S>(
    io: S,
    config: Arc<rustls::ServerConfig>,
    admission: &Admission,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let accept = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let Some(_place) = admission.handshakes.try_enter() else {
            admission.count(Shed::Handshakes);
            return Err(std::io::Error::other("too many TLS handshakes in progress"));
        };
        start.into_stream(config).await
    };
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Runs one connection to its end, asking it to close gracefully when it
/// has been idle (no request in progress, none started) for a whole `idle`
/// period, and as the listener stops: an HTTP/2 connection (`h2`) at once
/// when draining starts (`GOAWAY`; its streams finish), any connection
/// once the listener is closed and it has read nothing and had no request
/// in progress for [`DRAIN_QUIET`].
async fn drive<C, E>(
    connection: C,
    graceful_shutdown: impl Fn(std::pin::Pin<&mut C>),
    activity: &Activity,
    idle: Duration,
    h2: bool,
    stage: &mut watch::Receiver<Phase>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = || activity.started.load(Ordering::Relaxed);
    let reads = || activity.reads.load(Ordering::Relaxed);
    let mut seen = (started(), 0);
    let mut closing = false;
    let mut stopped = false;
    loop {
        tokio::select! {
            // The connection first: bytes already in the socket are read
            // (and a request in them started) before a tick can find the
            // connection quiet.
            biased;
            result = connection.as_mut() => return result,
            changed = stage.changed(), if !stopped => {
                let phase = match changed {
                    Ok(()) => *stage.borrow_and_update(),
                    Err(_) => Phase::Stopped,
                };
                if h2 && phase >= Phase::Draining && !closing {
                    graceful_shutdown(connection.as_mut());
                    closing = true;
                }
                if phase == Phase::Stopped {
                    stopped = true;
                    ticks = tokio::time::interval_at(
                        tokio::time::Instant::now() + DRAIN_QUIET,
                        DRAIN_QUIET,
                    );
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    seen = (started(), reads());
                }
            }
            _ = ticks.tick(), if !closing => {
                // Idle: no request started (an HTTP/2 ping's answer does
                // not count). Stopped: nothing read either.
                let now = (started(), if stopped { reads() } else { 0 });
                if now == seen && activity.in_flight.load(Ordering::Relaxed) == 0 {
                    if stopped {
                        tracing::trace!("closing a quiet connection of a stopped listener");
                    } else {
                        tracing::debug!(?idle, "closing an idle connection");
                    }
                    graceful_shutdown(connection.as_mut());
                    closing = true;
                }
                seen = now;
            }
        }
    }
}

/// Serves the operator endpoints on their own (cleartext, local by default)
/// listener: `/metrics` (Prometheus text), `/healthz` (the process answers)
/// and `/readyz` (packages loaded and not draining). No admission bound:
/// they keep answering when the API listener sheds.
pub async fn serve_ops(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    phase: watch::Receiver<Phase>,
) -> std::io::Result<()> {
    let ops = gateway.clone();
    let handler = move |req: Request<Incoming>, _conn: Arc<ConnInfo>| {
        let gateway = ops.clone();
        async move { ops_response(&gateway, req.uri().path()) }
    };
    let limits = gateway.config.conn;
    accept_loop(
        listener,
        Transport::Plain,
        limits,
        Arc::new(Admission::new(AdmissionLimits::UNBOUNDED)),
        handler,
        phase,
        Duration::from_secs(1),
    )
    .await
}

/// `/readyz`: 200 when the node takes traffic; 503 otherwise, naming the
/// ready checks that fail (none named: starting or draining).
fn readyz(gateway: &Gateway) -> (StatusCode, &'static str, String) {
    match gateway.readiness() {
        Ok(()) => (StatusCode::OK, JSON, r#"{"status":"ready"}"#.to_owned()),
        Err(failing) => {
            let body = serde_json::json!({ "status": "not ready", "failing": failing });
            (StatusCode::SERVICE_UNAVAILABLE, JSON, body.to_string())
        }
    }
}

fn ops_response(gateway: &Gateway, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            gateway.render_metrics(),
        ),
        "/healthz" => (StatusCode::OK, JSON, r#"{"status":"ok"}"#.to_owned()),
        "/readyz" => readyz(gateway),
        _ => (
            StatusCode::NOT_FOUND,
            JSON,
            r#"{"status":"no such endpoint"}"#.to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    harden(response.headers_mut(), false);
    response
}

/// Address helper for logs and tests.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(10);

    /// Polled outside any tokio runtime: arming a timer here would panic
    /// ("there is no reactor running"), so this passes only if none is.
    #[test]
    fn a_call_that_finishes_in_its_first_poll_arms_no_timer() {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut call = std::pin::pin!(within(LIMIT, async { 7 }));
        assert_eq!(call.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
    }

    #[test]
    fn a_refused_connection_gets_one_complete_answer() -> Result<(), Box<dyn std::error::Error>> {
        let text = std::str::from_utf8(SHED_CONNECTION)?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no head")?;
        assert!(head.starts_with("HTTP/1.1 503 "));
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert!(lines.contains(&format!("content-length: {}", body.len()).as_str()));
        assert!(lines.contains(&format!("retry-after: {RETRY_AFTER_SECS}").as_str()));
        let body: serde_json::Value = serde_json::from_str(body)?;
        assert_eq!(body["rsp_code"], "A0013");
        Ok(())
    }

    /// A check that holds while its flag is set.
    #[derive(Debug, Default)]
    struct Flag(AtomicBool);

    impl ReadyCheck for Flag {
        fn name(&self) -> &'static str {
            "bank_changes"
        }
        fn holds(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// `/readyz` needs every ready check to hold, names the ones that do
    /// not, and says ready again once they hold; `/metrics` shows each.
    #[test]
    fn a_failing_ready_check_takes_the_node_out_and_is_named()
    -> Result<(), Box<dyn std::error::Error>> {
        let gateway = Gateway::new(GatewayConfig::default(), Arc::new(NoAuth));
        let applied = Arc::new(Flag(AtomicBool::new(true)));
        gateway.add_ready_check(applied.clone());
        let readyz = |gateway: &Gateway| {
            let (status, _, body) = readyz(gateway);
            serde_json::from_str::<serde_json::Value>(&body).map(|body| (status, body))
        };
        // Starting: not ready, and no check to blame.
        let (status, body) = readyz(&gateway)?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["failing"], serde_json::json!([]));
        gateway.set_ready(true);
        assert_eq!(readyz(&gateway)?.0, StatusCode::OK);
        assert!(
            gateway
                .render_metrics()
                .contains("sfop_ready_check{check=\"bank_changes\"} 1"),
            "{}",
            gateway.render_metrics()
        );
        applied.0.store(false, Ordering::Relaxed);
        let (status, body) = readyz(&gateway)?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["failing"], serde_json::json!(["bank_changes"]));
        assert!(!gateway.is_ready());
        assert!(
            gateway
                .render_metrics()
                .contains("sfop_ready_check{check=\"bank_changes\"} 0")
        );
        applied.0.store(true, Ordering::Relaxed);
        assert_eq!(readyz(&gateway)?.0, StatusCode::OK);
        Ok(())
    }

    /// A plain listener answering `ok` to everything, with its phase sender.
    async fn listener() -> std::io::Result<(SocketAddr, watch::Sender<Phase>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (phase, phased) = watch::channel(Phase::Serving);
        let handler = |_req: Request<Incoming>, _conn: Arc<ConnInfo>| async {
            Response::new(Full::new(Bytes::from_static(b"ok")))
        };
        tokio::spawn(accept_loop(
            listener,
            Transport::Plain,
            ConnLimits::default(),
            Arc::new(Admission::new(AdmissionLimits::UNBOUNDED)),
            handler,
            phased,
            Duration::from_secs(5),
        ));
        Ok((addr, phase))
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    /// Reads one answer (its head and the 2-byte body).
    async fn answer(conn: &mut tokio::net::TcpStream) -> std::io::Result<String> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    #[tokio::test]
    async fn a_request_in_the_socket_when_the_listener_stops_is_answered()
    -> Result<(), Box<dyn std::error::Error>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, phase) = listener().await?;
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(GET).await?;
        let first = answer(&mut conn).await?;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(!first.contains("connection: close"), "{first}");
        // Idle and kept alive. The next request is written, and at once,
        // before the server had a chance to read it, the listener stops:
        // hyper's own graceful shutdown would close the idle connection
        // and lose it.
        conn.write_all(GET).await?;
        phase.send(Phase::Stopped)?;
        let second = answer(&mut conn).await?;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        assert!(second.contains("connection: close"), "{second}");
        // Then the connection closes, and the listener is gone.
        assert_eq!(conn.read(&mut [0u8; 16]).await?, 0);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn draining_answers_carry_connection_close_and_new_connections_are_served()
    -> Result<(), Box<dyn std::error::Error>> {
        use tokio::io::AsyncWriteExt;
        let (addr, phase) = listener().await?;
        let mut idle = tokio::net::TcpStream::connect(addr).await?;
        phase.send(Phase::Draining)?;
        // Accepted and served during the grace period, told to go away.
        let mut fresh = tokio::net::TcpStream::connect(addr).await?;
        fresh.write_all(GET).await?;
        let reply = answer(&mut fresh).await?;
        assert!(reply.contains("connection: close"), "{reply}");
        // A connection opened before the drain is served the same way.
        idle.write_all(GET).await?;
        let reply = answer(&mut idle).await?;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("connection: close"), "{reply}");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_finishes_ends_at_the_limit() {
        let started = tokio::time::Instant::now();
        assert_eq!(within(LIMIT, std::future::pending::<u8>()).await, None);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_waits_answers_in_time_or_ends_at_the_limit() {
        let started = tokio::time::Instant::now();
        let late = async {
            tokio::time::sleep(LIMIT / 2).await;
            tokio::time::sleep(LIMIT).await;
            3
        };
        assert_eq!(within(LIMIT, late).await, None);
        assert_eq!(started.elapsed(), LIMIT);

        let in_time = async {
            tokio::time::sleep(LIMIT / 2).await;
            4
        };
        assert_eq!(within(LIMIT, in_time).await, Some(4));
    }
}
