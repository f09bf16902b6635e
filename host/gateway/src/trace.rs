//! The server span of a request (docs/adr/0028-opentelemetry.md): named
//! `{method} {route}`, with the HTTP semantic-convention attributes, the
//! API's name and version and the `api_tran_id`. Everything here runs only
//! for a span that records (tracing on and the request sampled); the route
//! is named from the request's own lookup ([`route`]), never a second one.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, Version};
use sfop_core::ApiTranId;
use sfop_telemetry::Span;

use crate::routes::Target;
use crate::{API_VERSION_HEADER, ConnInfo};

/// The request's attributes.
pub(crate) fn begin<B>(span: &mut Span, req: &Request<B>, conn: &ConnInfo) {
    if !span.is_recording() {
        return;
    }
    span.set("http.request.method", req.method().as_str().to_owned());
    span.set("url.path", req.uri().path().to_owned());
    span.set("url.scheme", if conn.tls { "https" } else { "http" });
    let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    if let Some(authority) = authority.and_then(|a| a.parse::<hyper::http::uri::Authority>().ok()) {
        span.set("server.address", authority.host().to_owned());
        if let Some(port) = authority.port_u16() {
            span.set("server.port", i64::from(port));
        }
    }
    span.set("client.address", conn.peer.ip().to_string());
    let version = match req.version() {
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "0.9",
    };
    span.set("network.protocol.version", version);
}

/// The span's name and API once the request's lookup found its route: in
/// the table that served the request (one swapped in meanwhile may not
/// have the route, or give it to another API).
pub(crate) fn route(span: &mut Span, method: &str, path: &str, target: &Target) {
    if !span.is_recording() {
        return;
    }
    match target {
        Target::Api(route) => {
            // Routes are exact paths: the path is the route.
            span.set_name(format!("{method} {path}"));
            span.set("http.route", path.to_owned());
            span.set("sfop.api.name", route.stable.api.manifest().name.clone());
        }
        Target::Platform { name, .. } => span.set("sfop.api.name", name.clone()),
        Target::Closed { api, .. } | Target::Retired { api, .. } => {
            span.set("sfop.api.name", api.clone());
        }
    }
}

/// The answer's attributes.
pub(crate) fn end(span: &mut Span, response: &Response<Full<Bytes>>, id: &ApiTranId) {
    if !span.is_recording() {
        return;
    }
    let status = response.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    span.set("sfop.api_tran_id", id.as_str().to_owned());
    if let Some(version) = response
        .headers()
        .get(API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        span.set("sfop.api.version", version.to_owned());
    }
    if status.is_server_error() {
        span.set("error.type", status.as_u16().to_string());
        span.fail(status.canonical_reason().unwrap_or("server error"));
    }
}
