//! OpenTelemetry tracing for the platform (docs/adr/0028-opentelemetry.md):
//! off by default, when nothing is created and nothing is exported; on, a
//! ratio sampler that follows the caller's W3C `traceparent`, a server span
//! per request, child spans for plugin and host calls, and an exporter over
//! OTLP/HTTP (protobuf) fed from a bounded queue that drops, and counts,
//! rather than slows a request.

mod export;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub use export::ExportStats;

/// Checks a collector URL as [`Tracing::start`] will take it.
pub fn check_endpoint(url: &str) -> Result<(), Error> {
    export::endpoint(url).map(|_| ())
}
pub use opentelemetry::trace::SpanKind as Kind;

/// What the operator sets (`[telemetry]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The collector's OTLP/HTTP traces URL (`http://collector:4318/v1/traces`,
    /// or `https://`: verified against the system's roots and `ca`).
    pub endpoint: String,
    /// More CAs (PEM) to trust for an `https://` collector.
    pub ca: Option<std::path::PathBuf>,
    /// The share of new traces recorded, 0.0 to 1.0. A caller's sampled
    /// `traceparent` is followed whatever the ratio (parent-based sampling).
    pub sampling_ratio: f64,
    /// `service.name` of every span.
    pub service_name: String,
    /// Finished spans waiting for export; past this they are dropped and counted.
    pub max_queue_spans: usize,
    /// Spans sent per export request.
    pub max_batch_spans: usize,
    /// How long a batch waits to fill before it is sent.
    pub batch_delay: Duration,
    /// Longest one export may take (connect, send, answer).
    pub export_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            ca: None,
            sampling_ratio: 0.01,
            service_name: "sfop".into(),
            max_queue_spans: 2048,
            max_batch_spans: 512,
            batch_delay: Duration::from_millis(500),
            export_timeout: Duration::from_secs(5),
        }
    }
}

/// Why tracing could not start. Each names the setting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("telemetry.endpoint: {0}")]
    Endpoint(String),
    #[error("telemetry.sampling_ratio: must be between 0.0 and 1.0, not {0}")]
    Ratio(f64),
    #[error("telemetry: the exporter could not be built: {0}")]
    Exporter(String),
    #[error("telemetry.ca: {0}")]
    Ca(String),
}

/// The platform's tracing: [`Tracing::off`] (the default) or exporting.
/// Cloning is cheap; every clone feeds the same exporter.
#[derive(Clone, Default)]
pub struct Tracing(Option<Arc<Active>>);

struct Active {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    exporter: export::Handle,
    propagator: TraceContextPropagator,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Tracing(off)"),
            Some(_) => f.write_str("Tracing(on)"),
        }
    }
}

impl Tracing {
    /// No spans, no exporter, no task.
    pub fn off() -> Self {
        Self(None)
    }

    /// Tracing that exports to `settings.endpoint`. Must be called inside a
    /// tokio runtime: the exporter is a task on it.
    pub fn start(settings: &Settings) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&settings.sampling_ratio) {
            return Err(Error::Ratio(settings.sampling_ratio));
        }
        let (processor, exporter) = export::start(settings)?;
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sampling_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("sfop");
        Ok(Self(Some(Arc::new(Active {
            tracer,
            provider,
            exporter,
            propagator: TraceContextPropagator::new(),
        }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The server span of one request, named `method` until its route is
    /// known ([`Span::set_name`]), child of the caller's `traceparent` when
    /// it sent a valid one. Off: a span that records nothing.
    pub fn server_span(&self, headers: &hyper::HeaderMap, method: &str) -> Span {
        let Some(active) = &self.0 else {
            return Span::none();
        };
        let parent = if headers.contains_key("traceparent") {
            active.propagator.extract(&Headers(headers))
        } else {
            Context::new()
        };
        let span = active
            .tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Server)
            .start_with_context(&active.tracer, &parent);
        Span::started(active, span)
    }

    /// Spans exported, dropped (queue full) and lost (the collector failed).
    pub fn stats(&self) -> Option<ExportStats> {
        self.0.as_ref().map(|a| a.exporter.stats())
    }

    /// Sends every span ended so far, waiting at most `limit`.
    pub async fn flush(&self, limit: Duration) {
        if let Some(active) = &self.0 {
            active.exporter.flush(limit).await;
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // Ends the processor; spans still queued go with the export task.
        let _ = self
            .provider
            .shutdown_with_timeout(Duration::from_millis(100));
    }
}

/// The span's first name: no allocation for the usual methods (most
/// requests are not sampled, and their span is dropped at once).
fn method_name(method: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    match KNOWN.iter().find(|known| **known == method) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(method.to_owned()),
    }
}

struct Headers<'a>(&'a hyper::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent" {
            return traceparent(self.0);
        }
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's `traceparent` when it has the W3C form, else `None` (the
/// request starts a trace of its own). The SDK's parser is lenient where
/// the form is not (one-digit flags, short ids, a sign), and takes the
/// first of repeated headers, which W3C says to ignore.
fn traceparent(headers: &hyper::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all("traceparent").iter();
    let value = values.next()?.to_str().ok()?.trim();
    if values.next().is_some() {
        return None;
    }
    // version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex;
    // a later version may add fields after a "-", version 00 may not.
    let (head, rest) = (value.get(..55)?.as_bytes(), value.get(55..)?);
    let shaped = head.iter().enumerate().all(|(i, b)| match i {
        2 | 35 | 52 => *b == b'-',
        _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
    });
    let fits = match head.get(..2)? {
        b"00" => rest.is_empty(),
        b"ff" => false,
        _ => rest.is_empty() || rest.starts_with('-'),
    };
    (shaped && fits).then_some(value)
}

/// Where work sits in a trace: the span that child spans and outbound
/// requests are parented to. The default is no trace (tracing off).
#[derive(Clone, Default)]
pub struct Parent {
    active: Option<Arc<Active>>,
    cx: Option<SpanContext>,
}

impl std::fmt::Debug for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Parent").field(&self.traceparent()).finish()
    }
}

impl Parent {
    /// A trace is being recorded here: children are worth creating.
    pub fn is_sampled(&self) -> bool {
        self.active.is_some() && self.cx.as_ref().is_some_and(SpanContext::is_sampled)
    }

    /// The W3C `traceparent` of this place (version 00), for an outbound
    /// request; `None` without a trace.
    pub fn traceparent(&self) -> Option<String> {
        let cx = self.cx.as_ref().filter(|cx| cx.is_valid())?;
        Some(format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        ))
    }

    /// The W3C `tracestate` the caller sent, passed on unchanged.
    pub fn tracestate(&self) -> Option<String> {
        let state = self.cx.as_ref()?.trace_state().header();
        (!state.is_empty()).then_some(state)
    }

    /// The trace id in hex, for log lines.
    pub fn trace_id(&self) -> Option<String> {
        let cx = self.cx.as_ref().filter(|cx| cx.is_valid())?;
        Some(cx.trace_id().to_string())
    }

    /// A child span; records nothing unless this place is sampled.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        let (Some(active), Some(cx)) = (&self.active, &self.cx) else {
            return Span::none();
        };
        if !cx.is_sampled() {
            // Unsampled: no span, but the trace (and its decision) goes on.
            return Span {
                span: None,
                parent: self.clone(),
            };
        }
        let parent = Context::new().with_remote_span_context(cx.clone());
        let span = active
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&active.tracer, &parent);
        Span::started(active, span)
    }
}

/// One span. Ends when dropped (or at [`Span::end`]); every setter is a
/// no-op on a span that records nothing, so callers need not check.
pub struct Span {
    span: Option<opentelemetry_sdk::trace::Span>,
    /// This span as the parent of others.
    parent: Parent,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("recording", &self.is_recording())
            .field("parent", &self.parent)
            .finish()
    }
}

impl Default for Span {
    fn default() -> Self {
        Self::none()
    }
}

impl Span {
    /// A span that records nothing and has no trace.
    pub fn none() -> Self {
        Self {
            span: None,
            parent: Parent::default(),
        }
    }

    fn started(active: &Arc<Active>, span: opentelemetry_sdk::trace::Span) -> Self {
        let cx = span.span_context().clone();
        let parent = Parent {
            active: Some(active.clone()),
            cx: Some(cx),
        };
        // An unsampled span records nothing: dropped now, its context kept.
        let span = span.is_recording().then_some(span);
        Self { span, parent }
    }

    pub fn is_recording(&self) -> bool {
        self.span.is_some()
    }

    /// This span as the parent of child spans and outbound requests.
    pub fn parent(&self) -> &Parent {
        &self.parent
    }

    pub fn set_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.span {
            span.update_name(name);
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(description));
        }
    }

    pub fn end(mut self) {
        if let Some(span) = &mut self.span {
            span.end();
        }
    }
}

tokio::task_local! {
    /// The span a request is served under, for the code it reaches
    /// without a parameter (the runtime, through the gateway).
    static CURRENT: Parent;
}

/// Runs `future` with `parent` as [`current`].
pub async fn scope<F: std::future::Future>(parent: Parent, future: F) -> F::Output {
    CURRENT.scope(parent, future).await
}

/// The parent set by the enclosing [`scope`]; none outside one.
pub fn current() -> Parent {
    CURRENT.try_with(Parent::clone).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_w3c_shaped_traceparent_is_taken() {
        const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        const SPAN: &str = "00f067aa0ba902b7";
        let one = |value: &str| {
            let mut headers = hyper::HeaderMap::new();
            headers.insert("traceparent", value.parse().ok()?);
            traceparent(&headers).map(str::to_owned)
        };
        let good = format!("00-{ID}-{SPAN}-01");
        assert_eq!(one(&good), Some(good.clone()));
        let later = format!("01-{ID}-{SPAN}-01-more");
        assert_eq!(one(&later), Some(later.clone()));
        for bad in [
            format!("00-{ID}-{SPAN}-1"),
            format!("00-{ID}-{SPAN}-01-00"),
            format!("0-{ID}-{SPAN}-01"),
            format!("+0-{ID}-{SPAN}-01"),
            format!("00-{}-{SPAN}-01", &ID[1..]),
            format!("00-{}-{SPAN}-01", ID.to_uppercase()),
            format!("ff-{ID}-{SPAN}-01"),
            format!("01-{ID}-{SPAN}-01x"),
            String::new(),
        ] {
            assert_eq!(one(&bad), None, "{bad:?}");
        }
        // Repeated: ignored, whichever is valid.
        let mut headers = hyper::HeaderMap::new();
        for value in [&good, &good] {
            if let Ok(value) = value.parse() {
                headers.append("traceparent", value);
            }
        }
        assert_eq!(traceparent(&headers), None);
    }
}
