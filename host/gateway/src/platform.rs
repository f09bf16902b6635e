//! The platform's own endpoints (OAuth, admin API, portal, sandbox, keys) as
//! one axum [`Router`], and what its handlers share: the caller's
//! connection ([`Caller`]), bodies read within a bound ([`Body`], [`Json`]),
//! JSON answers in the common envelope ([`Enveloped`]) and one error type
//! ([`PlatformError`]) whose status and `rsp_code` come from the gateway's
//! one mapping ([`Fault::status_and_code`], ADR 0021).
//!
//! The route table stays the first stop of every request (ADR 0024): an
//! API route is served by its plugin without the router being consulted;
//! the paths the platform reserves ([`RouteTable::add_platform`]) lead here.
//! The router's own misses answer as the table's do (404 `A0004`, 405
//! `O0010` with `Allow`), through the same mapping.
//!
//! [`RouteTable::add_platform`]: crate::RouteTable::add_platform

use std::net::IpAddr;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::authz::{Denial, UNAUTHENTICATED_MAX_BODY};
use crate::fault::Fault;

/// The platform's endpoints, ready to serve: the router built by the
/// binary, with the gateway's answer for a path or method it lacks.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    router: Router,
}

impl Endpoints {
    /// Serves `router`'s routes; anything it does not route is answered as
    /// an unknown route of the gateway.
    pub fn new(router: Router) -> Self {
        Self {
            router: router.fallback(not_found),
        }
    }

    /// The router itself, e.g. for tests that call it without TCP
    /// (`tower::ServiceExt::oneshot`, with a [`Caller`] in the request's
    /// extensions).
    pub fn router(&self) -> &Router {
        &self.router
    }

    pub(crate) fn clone_router(&self) -> Router {
        self.router.clone()
    }
}

/// `router`'s routes answered within `limit` (tower-http's `TimeoutLayer`):
/// past it the caller gets the platform's 503 `A0013` with `Retry-After` in
/// the envelope rather than a connection held open. A backstop for routes
/// whose work is bounded below already (the OAuth pages' blocking pool and
/// bank calls, the portal's in-process calls); not for the admin API, whose
/// push and testbed runs take long.
pub fn within(router: Router, limit: std::time::Duration) -> Router {
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            limit,
        ))
        .layer(axum::middleware::map_response(timed_out))
}

/// The timeout layer's bare 504 (no body, no content type), as the
/// platform answers: its failure, to retry, in the envelope.
async fn timed_out(response: Response) -> Response {
    if response.status() != StatusCode::GATEWAY_TIMEOUT
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let mut answer = PlatformError::refused(
        503,
        sfop_core::rsp::UNAVAILABLE,
        "the platform did not answer in time; retry shortly",
    )
    .into_response();
    answer.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::RETRY_AFTER_SECS),
    );
    answer
}

async fn not_found(method: Method, uri: Uri) -> PlatformError {
    PlatformError::Fault(Fault::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    })
}

/// Who is calling, as the gateway saw the connection: put in every
/// platform request's extensions by the gateway.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The request's `api_tran_id` (logs, the envelope).
    pub api_tran_id: String,
    /// The TCP peer, e.g. for sign-in throttling.
    pub peer: IpAddr,
    /// SHA-256 fingerprint of a verified client certificate (mutual TLS).
    pub client_cert: Option<String>,
    /// The `host[:port]` the client addressed: the URI's authority (HTTP/2)
    /// or the `Host` header (HTTP/1.1).
    pub authority: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = PlatformError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| PlatformError::internal("reading the caller", "no Caller extension"))
    }
}

/// The most body bytes a route's extractors read: a request extension
/// set by a layer (`axum::Extension(BodyLimit(n))`) once the route has
/// admitted its caller from the request head. Without one, a body is read
/// up to [`UNAUTHENTICATED_MAX_BODY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// The request body, read up to the route's [`BodyLimit`]. Over it: 413
/// `A0004` (the gateway's `BodyTooLarge`), nothing more read.
#[derive(Debug, Clone)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = PlatformError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(UNAUTHENTICATED_MAX_BODY, |l| l.0);
        let limit_kib = u32::try_from(limit.div_ceil(1024)).unwrap_or(u32::MAX);
        Limited::new(req.into_body(), limit)
            .collect()
            .await
            .map(|b| Body(b.to_bytes()))
            .map_err(|e| {
                PlatformError::Fault(if e.downcast_ref::<LengthLimitError>().is_some() {
                    Fault::BodyTooLarge { limit_kib }
                } else {
                    Fault::BodyUnreadable
                })
            })
    }
}

/// A JSON request body of type `T` within the route's [`BodyLimit`]; a
/// body that is not a `T` is refused naming the field (400 `A0004`).
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = PlatformError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| PlatformError::invalid("request body", e))
    }
}

/// A form body (`application/x-www-form-urlencoded`) read as `T` within
/// the route's [`BodyLimit`], through [`sfop_core::form::decode`]: a name
/// given twice is refused (serde_urlencoded, axum's `Form`, would keep one
/// of the values), unknown names are `T`'s to decide.
#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

/// The query string read as `T` the same way as [`Form`].
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

/// Why a [`Form`] or [`Query`] was not read: the body (too large,
/// unreadable: answered as the gateway answers it), or the fields. A
/// handler that answers in its own protocol's shape (OAuth, RFC 6749 §5.2)
/// takes `Result<Form<T>, FormRejection>` and maps [`FormRejection::Fields`]
/// itself; otherwise it is 400 `A0004` naming the field.
#[derive(Debug, thiserror::Error)]
pub enum FormRejection {
    #[error(transparent)]
    Body(PlatformError),
    /// A form body's fields.
    #[error("{0}")]
    Fields(sfop_core::form::FormError),
    /// A query string's fields.
    #[error("{0}")]
    QueryFields(sfop_core::form::FormError),
}

impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Body(e) => e.into_response(),
            Self::Fields(e) => PlatformError::invalid("form", e).into_response(),
            Self::QueryFields(e) => PlatformError::invalid("query", e).into_response(),
        }
    }
}

impl<S: Send + Sync, T: sfop_core::form::Fields> FromRequest<S> for Form<T> {
    type Rejection = FormRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state)
            .await
            .map_err(FormRejection::Body)?;
        sfop_core::form::decode(&bytes)
            .map(Form)
            .map_err(FormRejection::Fields)
    }
}

impl<S: Send + Sync, T: sfop_core::form::Fields> FromRequestParts<S> for Query<T> {
    type Rejection = FormRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        sfop_core::form::decode(query.as_bytes())
            .map(Query)
            .map_err(FormRejection::QueryFields)
    }
}

/// Response extension: the gateway puts `api_tran_id` and `api_tran_dtm`
/// first in this JSON answer, as it does for a plugin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope;

/// A JSON answer with `status`, in the common envelope.
#[derive(Debug, Clone)]
pub struct Enveloped<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for Enveloped<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.1) {
            Ok(body) => {
                let mut response = (
                    self.0,
                    [(header::CONTENT_TYPE, HeaderValue::from_static(crate::JSON))],
                    body,
                )
                    .into_response();
                response.extensions_mut().insert(Envelope);
                response
            }
            Err(e) => PlatformError::internal("writing an answer", e).into_response(),
        }
    }
}

/// Why a platform endpoint did not do what it was asked, and who is to
/// blame: the client (a field it got wrong, a refusal), or the platform
/// (an internal failure, logged here and never shown: the client quotes
/// the `api_tran_id`).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// One of the gateway's own faults (unknown route, body too large...),
    /// answered as the gateway answers it.
    #[error(transparent)]
    Fault(Fault),
    /// A field of the request is wrong: 400 `A0004`, the message names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// What was named does not exist: 404 `A0004`.
    #[error("{field}: {message}")]
    NotFound { field: String, message: String },
    /// A refusal with its own HTTP status and `rsp_code` (the admin check's
    /// 401/403 and the like).
    #[error("{rsp_code}: {message}")]
    Refused {
        status: StatusCode,
        rsp_code: &'static str,
        message: String,
    },
    /// The platform failed at `what`: 500 `A0003`.
    #[error("{what} failed: {source}")]
    Internal {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl PlatformError {
    pub fn invalid(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub fn not_found(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::NotFound {
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub fn internal(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            what,
            source: source.into(),
        }
    }

    /// A refusal by an authoriser, with the status it chose.
    pub fn refused(status: u16, rsp_code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            rsp_code,
            message: message.into(),
        }
    }

    /// A denial of the gateway's authoriser, answered as on the API path.
    pub fn denied(denial: Denial) -> Self {
        Self::Fault(Fault::Denied(denial))
    }

    /// The one table of status and `rsp_code` for platform endpoints: the
    /// gateway's faults through [`Fault::status_and_code`], the rest here.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use sfop_core::rsp;
        match self {
            Self::Fault(fault) => {
                let (status, code) = fault.status_and_code();
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    code,
                )
            }
            Self::Invalid { .. } => (StatusCode::BAD_REQUEST, rsp::FORMAT),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, rsp::FORMAT),
            Self::Refused {
                status, rsp_code, ..
            } => (*status, rsp_code),
            Self::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, rsp::INTERNAL),
        }
    }

    /// What the client is told: never an internal failure's cause.
    pub fn public_message(&self) -> String {
        match self {
            Self::Fault(fault) => fault.public_message(),
            Self::Internal { .. } => "platform internal error".to_owned(),
            Self::Refused { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for PlatformError {
    fn into_response(self) -> Response {
        let (status, rsp_code) = self.status_and_code();
        if let Self::Internal { what, source } = &self {
            tracing::error!(error = %source, "{what} failed");
        }
        let body = serde_json::json!({
            "rsp_code": rsp_code,
            "rsp_message": self.public_message(),
        });
        let mut response = Enveloped(status, body).into_response();
        if let Self::Fault(fault) = &self
            && fault.retry_later()
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Runs a platform request through `endpoints` and reads its answer.
/// `Err`: a method the router's route lacks (the gateway answers it as its
/// table does, with `Allow`), or an answer body that could not be read.
pub(crate) async fn call<B>(
    endpoints: &Endpoints,
    request: axum::http::Request<B>,
) -> Result<(axum::http::response::Parts, Bytes, bool), Fault>
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    use tower::ServiceExt;
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let Ok(response) = endpoints.clone_router().oneshot(request).await;
    let (parts, body) = response.into_parts();
    let envelope = parts.extensions.get::<Envelope>().is_some();
    if parts.status == StatusCode::METHOD_NOT_ALLOWED && !envelope {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        return Err(Fault::MethodNotAllowed {
            method,
            path,
            allowed,
        });
    }
    let body = body.collect().await.map_err(|e| {
        tracing::error!(error = %e, "reading a platform endpoint's answer failed");
        Fault::Denied(Denial::internal("platform internal error"))
    })?;
    Ok((parts, body.to_bytes(), envelope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tower::ServiceExt;

    fn endpoints() -> Endpoints {
        async fn echo(Body(body): Body) -> Enveloped<serde_json::Value> {
            Enveloped(StatusCode::OK, serde_json::json!({ "len": body.len() }))
        }
        async fn typed(Json(n): Json<u32>) -> Enveloped<u32> {
            Enveloped(StatusCode::CREATED, n)
        }
        async fn broken() -> Result<(), PlatformError> {
            Err(PlatformError::internal("the test", "secret cause"))
        }
        async fn query(_: Query<serde::de::IgnoredAny>) -> Enveloped<u32> {
            Enveloped(StatusCode::OK, 0)
        }
        async fn form(_: Form<serde::de::IgnoredAny>) -> Enveloped<u32> {
            Enveloped(StatusCode::OK, 0)
        }
        async fn slow() -> Enveloped<u32> {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Enveloped(StatusCode::OK, 0)
        }
        async fn gone() -> Result<(), PlatformError> {
            Err(PlatformError::refused(
                504,
                "A0017",
                "the bank did not answer",
            ))
        }
        let bounded = within(
            Router::new()
                .route("/slow", axum::routing::get(slow))
                .route(
                    "/quick",
                    axum::routing::get(|| async { Enveloped(StatusCode::OK, 1) }),
                )
                .route("/gone", axum::routing::get(gone)),
            std::time::Duration::from_millis(50),
        );
        Endpoints::new(
            Router::new()
                .route("/small", post(echo).layer(axum::Extension(BodyLimit(4))))
                .route("/echo", post(echo))
                .route("/typed", post(typed))
                .route("/broken", post(broken))
                .route("/query", axum::routing::get(query))
                .route("/form", post(form))
                .merge(bounded),
        )
    }

    async fn send(
        path: &str,
        method: &str,
        body: &'static [u8],
    ) -> Result<(StatusCode, serde_json::Value), Box<dyn std::error::Error>> {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body))?;
        let response = endpoints().router().clone().oneshot(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes)?))
    }

    #[tokio::test]
    async fn bodies_are_read_within_the_route_limit_or_the_anonymous_one()
    -> Result<(), Box<dyn std::error::Error>> {
        let (status, body) = send("/small", "POST", b"1234").await?;
        assert_eq!((status, body["len"].as_u64()), (StatusCode::OK, Some(4)));
        let (status, body) = send("/small", "POST", b"12345").await?;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["rsp_code"], "A0004");
        static BIG: [u8; UNAUTHENTICATED_MAX_BODY + 1] = [b' '; UNAUTHENTICATED_MAX_BODY + 1];
        let (status, _) = send("/echo", "POST", &BIG).await?;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        Ok(())
    }

    #[tokio::test]
    async fn errors_name_the_field_and_hide_internals() -> Result<(), Box<dyn std::error::Error>> {
        let (status, body) = send("/typed", "POST", b"7").await?;
        assert_eq!((status, body.as_u64()), (StatusCode::CREATED, Some(7)));
        let (status, body) = send("/typed", "POST", b"\"x\"").await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["rsp_code"], "A0004");
        assert!(
            body["rsp_message"]
                .as_str()
                .is_some_and(|m| m.starts_with("request body: ")),
            "{body}"
        );
        // A repeated name is refused naming where it was: the query or the
        // form.
        let (status, body) = send("/query?a=1&a=2", "GET", b"").await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["rsp_message"], "query: a: given more than once",
            "{body}"
        );
        let (status, body) = send("/form", "POST", b"a=1&a=2").await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["rsp_message"], "form: a: given more than once",
            "{body}"
        );
        let (status, body) = send("/broken", "POST", b"").await?;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["rsp_code"], "A0003");
        assert!(!body.to_string().contains("secret"), "{body}");
        let (status, body) = send("/nowhere", "GET", b"").await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["rsp_code"], "A0004");
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_method_is_the_gateways_405_with_allow()
    -> Result<(), Box<dyn std::error::Error>> {
        let request = axum::http::Request::builder()
            .method("GET")
            .uri("/typed")
            .body(axum::body::Body::empty())?;
        match call(&endpoints(), request).await {
            Err(Fault::MethodNotAllowed { allowed, .. }) => assert_eq!(allowed, ["POST"]),
            other => return Err(format!("{other:?}").into()),
        }
        Ok(())
    }

    /// Past the limit, the platform's 503 A0013 with Retry-After in the
    /// envelope; within it, the route's own answer, a 504 of its own
    /// included.
    #[tokio::test]
    async fn a_bounded_route_past_its_limit_is_the_platforms_503()
    -> Result<(), Box<dyn std::error::Error>> {
        let started = std::time::Instant::now();
        let request = axum::http::Request::builder()
            .uri("/slow")
            .body(axum::body::Body::empty())?;
        let response = endpoints().router().clone().oneshot(request).await?;
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let bytes = response.into_body().collect().await?.to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes)?;
        assert_eq!(body["rsp_code"], "A0013", "{body}");
        let (status, body) = send("/quick", "GET", b"").await?;
        assert_eq!((status, body.as_u64()), (StatusCode::OK, Some(1)));
        let (status, body) = send("/gone", "GET", b"").await?;
        assert_eq!(
            (status, body["rsp_code"].as_str()),
            (StatusCode::GATEWAY_TIMEOUT, Some("A0017"))
        );
        Ok(())
    }
}
