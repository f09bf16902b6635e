//! The sfop API gateway: accepts HTTP, routes `METHOD path` to the live release
//! of an API, runs it in the Wasm runtime, and writes the common response
//! envelope (`api_tran_id`, `api_tran_dtm`, `rsp_code`, `rsp_message`).

mod fault;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Map, Value};
use sfop_core::envelope::ErrorBody;
use sfop_core::{ApiTranId, time};
use sfop_runtime::{Api, Call};
use tokio::net::TcpListener;
use tracing::Instrument;

pub use fault::{ErrorSource, Fault};
pub use routes::{RouteConflict, RouteTable, Target};

/// The header that carries `api_tran_id` on every response, JSON or not.
pub const API_TRAN_ID_HEADER: &str = "x-api-tran-id";

const JSON: &str = "application/json; charset=UTF-8";

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Business time zone for `api_tran_dtm`, minutes east of UTC.
    pub utc_offset_minutes: i32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            utc_offset_minutes: time::KST_OFFSET_MINUTES,
        }
    }
}

/// The data plane: a swappable route table and the request path.
#[derive(Debug)]
pub struct Gateway {
    routes: ArcSwap<RouteTable>,
    config: GatewayConfig,
}

impl Gateway {
    pub fn new(routes: RouteTable, config: GatewayConfig) -> Self {
        Self {
            routes: ArcSwap::from_pointee(routes),
            config,
        }
    }

    /// Replaces the route table atomically. Requests already routed finish on
    /// the release they started on; releases no longer referenced are dropped
    /// when their last request ends.
    pub fn swap_routes(&self, routes: RouteTable) {
        self.routes.store(Arc::new(routes));
    }

    /// The current route table.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Serves one request. Never fails: every outcome is a response.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let id = ApiTranId::generate();
        let span = tracing::info_span!(
            "request",
            api_tran_id = %id,
            method = %req.method(),
            path = req.uri().path(),
            api = tracing::field::Empty,
        );
        async {
            let response = match self.route_and_call(&id, req).await {
                Ok(response) => response,
                Err(fault) => {
                    let (status, code) = fault.status_and_code();
                    match fault.source() {
                        ErrorSource::Client => tracing::debug!(fault = fault.label(), "{fault}"),
                        source => tracing::warn!(
                            fault = fault.label(),
                            source = source.as_str(),
                            "{fault}"
                        ),
                    }
                    let mut response =
                        self.error_response(&id, status, code, &fault.public_message());
                    if let Fault::MethodNotAllowed { allowed, .. } = &fault
                        && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
                    {
                        response.headers_mut().insert(header::ALLOW, v);
                    }
                    response
                }
            };
            tracing::debug!(status = response.status().as_u16(), "answered");
            response
        }
        .instrument(span)
        .await
    }

    async fn route_and_call(
        &self,
        id: &ApiTranId,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Fault> {
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let api: Arc<Api> = {
            let routes = self.routes.load();
            match routes.lookup(&method, &path) {
                Ok(Target::Live(api)) => api.clone(),
                Ok(Target::Closed { api, .. }) => {
                    return Err(Fault::RouteClosed { api: api.clone() });
                }
                Err(allowed) if allowed.is_empty() => {
                    return Err(Fault::RouteNotFound { method, path });
                }
                Err(allowed) => {
                    return Err(Fault::MethodNotAllowed {
                        method,
                        path,
                        allowed,
                    });
                }
            }
        };
        let manifest = api.manifest();
        tracing::Span::current().record("api", manifest.name.as_str());

        let (parts, body) = req.into_parts();
        let limit_kib = manifest.limits.max_body_kib;
        let body = Limited::new(body, limit_kib as usize * 1024)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Fault::BodyTooLarge { limit_kib }
                } else {
                    Fault::BodyUnreadable
                }
            })?
            .to_bytes();
        let call = Call {
            api_tran_id: id.to_string(),
            method,
            path,
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body: body.to_vec(),
            caller: None,
        };
        let reply = api.call(call).await?;

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
        self.tag(id, &mut response);
        Ok(response)
    }

    /// Puts `api_tran_id` and `api_tran_dtm` first in a plugin's JSON object;
    /// values a plugin wrote under those keys are replaced. `None` when the
    /// body is not a JSON object.
    fn stamp_envelope(&self, id: &ApiTranId, body: &[u8]) -> Option<Vec<u8>> {
        let fields: Map<String, Value> = serde_json::from_slice(body).ok()?;
        let mut stamped = Map::with_capacity(fields.len() + 2);
        stamped.insert("api_tran_id".into(), Value::String(id.to_string()));
        stamped.insert("api_tran_dtm".into(), Value::String(self.dtm()));
        for (k, v) in fields {
            if k != "api_tran_id" && k != "api_tran_dtm" {
                stamped.insert(k, v);
            }
        }
        serde_json::to_vec(&stamped).ok()
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

/// Accepts connections on `listener` until `shutdown` resolves, then lets
/// open connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let gateway = gateway.clone();
                let service = service_fn(move |req| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.handle(req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    graceful.shutdown().await;
    Ok(())
}

/// Address helper for logs and tests.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
