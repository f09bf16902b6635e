//! The `http` and `config` capabilities (`sfop:platform@0.2.0`): outbound
//! requests to the origins a manifest allows, through the platform's shared
//! client, and the plugin's variables
//! (docs/adr/0027-outbound-http-and-variables.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sfop_core::origin::AllowedHosts;
use sfop_core::outbound::{
    Outbound, OutboundError, OutboundRequest, Secret, SetValues, VariableValues,
};
use sfop_core::{Capability, Manifest};

use crate::LoadError;
use crate::bindings::platform::{config, http};
use crate::host::{HostOutcome, HostState, end_otel, finish, start};

/// Headers only the host may set on an outbound request.
const HOST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
];

/// What one API version is granted beyond its interfaces: resolved once, at
/// load.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    pub(crate) allowed: AllowedHosts,
    /// Every declared variable, with its value (the operator's, else the
    /// default) or `None`.
    pub(crate) variables: BTreeMap<String, Option<Secret>>,
    pub(crate) outbound: Option<Arc<dyn Outbound>>,
}

impl Grants {
    /// The grants of `manifest`: refused when a required variable has no
    /// value, or `http` is declared and the platform has no outbound client.
    /// A variable's value is the one set through the admin API (`set`), else
    /// the operator's environment or config file (`values`), else the
    /// manifest's default.
    pub(crate) fn resolve(
        manifest: &Manifest,
        set: &SetValues,
        values: &dyn VariableValues,
        outbound: Option<&Arc<dyn Outbound>>,
    ) -> Result<Self, LoadError> {
        let allowed = AllowedHosts::parse(&manifest.allowed_hosts)
            .map_err(|problem| LoadError::Grant(format!("allowed_hosts: {problem}")))?;
        let mut variables = BTreeMap::new();
        for (name, declared) in &manifest.variables {
            let value = set
                .get(name)
                .map(|v| v.0.clone())
                .or_else(|| values.value(&manifest.name, name))
                .or_else(|| declared.default.clone());
            if declared.required && value.is_none() {
                return Err(LoadError::MissingVariable {
                    api: manifest.name.clone(),
                    name: name.clone(),
                });
            }
            variables.insert(name.clone(), value.map(Secret));
        }
        let outbound = if manifest.capabilities.contains(&Capability::Http) {
            Some(outbound.cloned().ok_or_else(|| {
                LoadError::Grant("capability `http`: this platform has no outbound client".into())
            })?)
        } else {
            None
        };
        Ok(Self {
            allowed,
            variables,
            outbound,
        })
    }
}

impl config::Host for HostState {
    async fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        let span = self.span("config.get");
        let started = start(&span);
        let result = match self.grants.variables.get(&name) {
            Some(value) => Ok(value.as_ref().map(|v| v.0.clone())),
            None => Err(config::Error::Undeclared(format!(
                "variable {name:?} is not declared in the manifest's [variables]"
            ))),
        };
        let outcome = if result.is_ok() {
            HostOutcome::Ok
        } else {
            HostOutcome::Denied
        };
        finish(&span, started, outcome);
        Ok(result)
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let span = self.span("http.send");
        let started = start(&span);
        let mut otel = self.otel_span("http.send", sfop_telemetry::Kind::Client);
        if otel.is_recording() {
            client_attributes(&mut otel, &req);
        }
        let result = self.send_outbound(req, &span, otel.parent()).await;
        let outcome = match &result {
            Ok(_) => HostOutcome::Ok,
            Err(http::Error::DeniedHost(_)) => HostOutcome::Denied,
            Err(http::Error::Timeout) => HostOutcome::UpstreamTimeout,
            Err(http::Error::TooLarge(_)) => HostOutcome::TooLarge,
            Err(_) => HostOutcome::UpstreamError,
        };
        finish(&span, started, outcome);
        if let Ok(response) = &result {
            otel.set("http.response.status_code", i64::from(response.status));
        }
        end_otel(otel, outcome);
        Ok(result)
    }
}

impl HostState {
    async fn send_outbound(
        &self,
        req: http::Request,
        span: &tracing::Span,
        here: &sfop_telemetry::Parent,
    ) -> Result<http::Response, http::Error> {
        use tracing::Instrument;
        let Some(client) = self.grants.outbound.clone() else {
            return Err(http::Error::DeniedHost(
                "capability `http` is not granted".into(),
            ));
        };
        let now = Instant::now();
        let call_deadline = self
            .host_deadline()
            .unwrap_or_else(|| now + Duration::from_millis(5_000));
        if call_deadline <= now {
            return Err(http::Error::Timeout);
        }
        let deadline = match req.timeout_ms {
            Some(0) => return Err(http::Error::Invalid("timeout-ms must be at least 1".into())),
            Some(ms) => call_deadline.min(now + Duration::from_millis(u64::from(ms))),
            None => call_deadline,
        };
        let method = req.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(http::Error::Invalid(format!(
                "method {:?} is not an HTTP method",
                req.method
            )));
        }
        let mut headers = Vec::with_capacity(req.headers.len() + 1);
        let mut traceparent_set = false;
        for (name, value) in req.headers {
            let lower = name.to_ascii_lowercase();
            if HOST_HEADERS.contains(&lower.as_str()) {
                return Err(http::Error::Invalid(format!(
                    "header {name:?} is set by the host, not the plugin"
                )));
            }
            traceparent_set |= lower == "traceparent";
            headers.push((lower, value));
        }
        if !traceparent_set {
            // Tracing on: this call's own span (or, unsampled, the request's
            // place in its trace). Off: the caller's header as it came.
            let here = if here.traceparent().is_some() {
                here
            } else {
                &self.trace
            };
            match here.traceparent() {
                Some(parent) => {
                    headers.push(("traceparent".to_owned(), parent));
                    if let Some(state) = here.tracestate() {
                        headers.push(("tracestate".to_owned(), state));
                    }
                }
                None => {
                    if let Some(parent) = &self.traceparent {
                        headers.push(("traceparent".to_owned(), parent.clone()));
                    }
                }
            }
        }
        let request = OutboundRequest {
            method,
            url: req.url,
            headers,
            body: req.body,
            deadline,
            api: self.manifest().name.clone(),
        };
        let sending = client
            .send(&self.grants.allowed, request)
            .instrument(span.clone());
        // The client bounds itself by the deadline; this is the backstop.
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::time::timeout_at(deadline.into(), sending)
                .await
                .unwrap_or(Err(OutboundError::Timeout)),
            Err(_) => sending.await,
        };
        answer
            .map(|r| http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(|e| match e {
                OutboundError::DeniedHost(m) => http::Error::DeniedHost(m),
                OutboundError::Timeout => http::Error::Timeout,
                OutboundError::TooLarge(n) => http::Error::TooLarge(n),
                OutboundError::Connect(m) => http::Error::Connect(m),
                OutboundError::Tls(m) => http::Error::Tls(m),
                OutboundError::Invalid(m) => http::Error::Invalid(m),
            })
    }
}

/// The semantic-convention attributes of an outbound request's span: method,
/// scheme, host and port (never the path or query, which may carry what a
/// plugin should not leak into traces). A URL that does not parse gets the
/// method alone (the request itself is refused for it).
fn client_attributes(span: &mut sfop_telemetry::Span, req: &http::Request) {
    span.set("http.request.method", req.method.to_ascii_uppercase());
    let Ok(url) = url::Url::parse(&req.url) else {
        return;
    };
    span.set("url.scheme", url.scheme().to_owned());
    match url.host() {
        Some(url::Host::Ipv6(ip)) => span.set("server.address", ip.to_string()),
        Some(host) => span.set("server.address", host.to_string()),
        None => {}
    }
    if let Some(port) = url.port_or_known_default() {
        span.set("server.port", i64::from(port));
    }
}
