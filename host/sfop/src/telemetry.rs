//! The `[telemetry]` section: OpenTelemetry traces over OTLP/HTTP, off by
//! default (docs/adr/0028-opentelemetry.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sfop_telemetry::{Settings, Tracing};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// The collector's OTLP/HTTP (protobuf) URL, `http://host:4318` or
    /// `https://…` (`/v1/traces` is added to a URL without a path). Absent:
    /// tracing off.
    pub endpoint: Option<String>,
    /// More CAs (PEM file) to trust for an `https://` collector, beside the
    /// system's.
    pub ca: Option<std::path::PathBuf>,
    /// The share of new traces recorded, 0.0 to 1.0. A request whose
    /// `traceparent` says sampled is recorded whatever the ratio.
    pub sampling_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Finished spans waiting for the collector; past this they are dropped
    /// (and counted), never waited for.
    pub max_queue_spans: usize,
    /// How long a batch of spans waits to fill, milliseconds.
    pub batch_delay_ms: u64,
    /// Longest one export may take, milliseconds.
    pub export_timeout_ms: u64,
}

// The ratio is a float: compared by value, never NaN (validated).
impl Eq for TelemetrySection {}

impl Default for TelemetrySection {
    fn default() -> Self {
        let settings = Settings::default();
        Self {
            endpoint: None,
            ca: None,
            sampling_ratio: settings.sampling_ratio,
            service_name: settings.service_name,
            max_queue_spans: settings.max_queue_spans,
            batch_delay_ms: 500,
            export_timeout_ms: 5_000,
        }
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

impl TelemetrySection {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(invalid(
                "telemetry.sampling_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        if !(1..=1_000_000).contains(&self.max_queue_spans) {
            return Err(invalid(
                "telemetry.max_queue_spans",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=60_000).contains(&self.batch_delay_ms) {
            return Err(invalid(
                "telemetry.batch_delay_ms",
                "must be between 1 and 60000",
            ));
        }
        if !(10..=60_000).contains(&self.export_timeout_ms) {
            return Err(invalid(
                "telemetry.export_timeout_ms",
                "must be between 10 and 60000",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            sfop_telemetry::check_endpoint(endpoint).map_err(|e| match e {
                sfop_telemetry::Error::Endpoint(problem) => invalid("telemetry.endpoint", problem),
                other => invalid("telemetry.endpoint", other.to_string()),
            })?;
        }
        Ok(())
    }

    /// The platform's tracing: off without an endpoint. Inside the tokio
    /// runtime (the exporter is a task on it).
    pub(crate) fn tracing(&self) -> Result<Tracing, ConfigError> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(Tracing::off());
        };
        Tracing::start(&Settings {
            endpoint: endpoint.clone(),
            ca: self.ca.clone(),
            sampling_ratio: self.sampling_ratio,
            service_name: self.service_name.clone(),
            max_queue_spans: self.max_queue_spans,
            max_batch_spans: self.max_queue_spans.min(512),
            batch_delay: Duration::from_millis(self.batch_delay_ms),
            export_timeout: Duration::from_millis(self.export_timeout_ms),
        })
        .map_err(|e| invalid("telemetry", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelemetrySection, String> {
        toml::from_str::<TelemetrySection>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_each_bad_key_is_named() {
        let off = TelemetrySection::default();
        assert_eq!(off.endpoint, None);
        assert!(off.validate().is_ok());
        for (text, key) in [
            ("sampling_ratio = 1.5", "telemetry.sampling_ratio"),
            ("sampling_ratio = -0.1", "telemetry.sampling_ratio"),
            ("sampling_ratio = nan", "telemetry.sampling_ratio"),
            ("endpoint = \"c:4318\"", "telemetry.endpoint"),
            ("max_queue_spans = 0", "telemetry.max_queue_spans"),
            ("service_name = \" \"", "telemetry.service_name"),
        ] {
            let section = parse(text).unwrap_or_default();
            let e = section.validate().err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(key)),
                "{text}: {e:?}"
            );
        }
        assert!(parse("endpoit = \"http://c:4318\"").is_err());
    }
}
