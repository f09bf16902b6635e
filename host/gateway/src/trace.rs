//! The server span of a request (docs/adr/0028-opentelemetry.md): named
//! `{method} {route}`, with the HTTP semantic-convention attributes, the
//! API's name and version and the `api_tran_id`. Everything here runs only
//! for a span that records (tracing on and the request sampled); the route
//! table is consulted again then, so the lookup of every request stays as
//! it is.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, Version};
use sfop_core::ApiTranId;
use sfop_telemetry::Span;

use crate::routes::{RouteTable, Target};
use crate::{API_VERSION_HEADER, ConnInfo};

/// What the end of the span needs from the request, which has moved on by then.
pub(crate) struct Traced {
    method: String,
    path: String,
}

/// The request's attributes; `None` when the span records nothing.
pub(crate) fn begin<B>(span: &mut Span, req: &Request<B>, conn: &ConnInfo) -> Option<Traced> {
    if !span.is_recording() {
        return None;
    }
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    span.set("http.request.method", method.clone());
    span.set("url.path", path.clone());
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
    Some(Traced { method, path })
}

/// The answer's attributes, and the span's name once the route is known.
pub(crate) fn end(
    span: &mut Span,
    traced: &Traced,
    routes: &RouteTable,
    response: &Response<Full<Bytes>>,
    id: &ApiTranId,
) {
    let status = response.status();
    span.set("http.response.status_code", i64::from(status.as_u16()));
    span.set("sfop.api_tran_id", id.as_str().to_owned());
    match routes.lookup(&traced.method, &traced.path) {
        Ok(Target::Api(route)) => {
            // Routes are exact paths: the path is the route.
            span.set_name(format!("{} {}", traced.method, traced.path));
            span.set("http.route", traced.path.clone());
            span.set("sfop.api.name", route.stable.api.manifest().name.clone());
        }
        Ok(Target::Platform { name, .. }) => {
            span.set("sfop.api.name", name.clone());
        }
        Ok(Target::Closed { api, .. } | Target::Retired { api, .. }) => {
            span.set("sfop.api.name", api.clone());
        }
        Err(_) => {}
    }
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
