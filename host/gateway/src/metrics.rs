//! Request metrics per API and version, exposed in the OpenMetrics text
//! format through prometheus-client (ADR 0026).
//!
//! Counters are plain atomics held by each route target, so counting costs a
//! few relaxed increments and no lock on the request path. prometheus-client
//! owns the exposition (names, `_total`, escaping, number formatting,
//! `# EOF`): a [`Collector`] reads the atomics at scrape time. Its own
//! `Histogram` takes a lock per observation and its `Family` one per
//! lookup, which is why the request path keeps its atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sfop_core::Outcome;

/// The media type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency histogram bounds, seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters of one API version.
#[derive(Debug, Default)]
pub struct ApiStats {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
    /// Calls of this version running now, and their bound (0: none; see
    /// [`ApiStats::try_enter`]).
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl ApiStats {
    pub(crate) fn record(&self, outcome: Outcome, elapsed: Duration) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests routed to this API version.
    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Bounds the calls of this version running at once (0: no bound).
    pub(crate) fn set_max_in_flight(&self, max: usize) {
        self.max_in_flight.store(max, Ordering::Relaxed);
    }

    /// A place for one more call of this version, unless it has as many
    /// running as its bound: two relaxed atomics, no lock, no queue.
    pub(crate) fn try_enter(&self) -> Option<ApiPermit<'_>> {
        let max = self.max_in_flight.load(Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::Relaxed) < max || max == 0 {
            Some(ApiPermit(&self.in_flight))
        } else {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    /// Calls of this version running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests of this API version that ended with `outcome`.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    /// Requests of this API version that ended with the release's own
    /// fault ([`Outcome::is_release_fault`]): a canary's errors.
    pub fn release_faults(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| o.is_release_fault())
            .map(|o| self.outcome(*o))
            .sum()
    }
}

/// A running call of one API version; given back when dropped.
pub(crate) struct ApiPermit<'a>(&'a AtomicUsize);

impl Drop for ApiPermit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All metrics of one gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    apis: Mutex<BTreeMap<(String, String), Arc<ApiStats>>>,
    route_not_found: AtomicU64,
    method_not_allowed: AtomicU64,
    retired: AtomicU64,
    /// The runtime's component loads, once wired ([`Metrics::count_loads`]).
    loads: std::sync::OnceLock<Arc<sfop_runtime::Loads>>,
}

impl Metrics {
    /// The counters of `api` at `version`, created on first use; the same
    /// counters across route-table swaps.
    pub fn api(&self, api: &str, version: &str) -> Arc<ApiStats> {
        let mut apis = self
            .apis
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        apis.entry((api.to_owned(), version.to_owned()))
            .or_default()
            .clone()
    }

    /// The counters of `api` at `version` if it was ever counted; unlike
    /// [`Metrics::api`], a lookup creates nothing.
    pub fn existing(&self, api: &str, version: &str) -> Option<Arc<ApiStats>> {
        self.apis
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(api.to_owned(), version.to_owned()))
            .cloned()
    }

    /// Reports the runtime's component loads (compiled or from the compile
    /// cache) in `/metrics`; the first runtime wired stays.
    pub fn count_loads(&self, loads: Arc<sfop_runtime::Loads>) {
        let _ = self.loads.set(loads);
    }

    /// Counts a request that found no API version; other outcomes than
    /// [`Outcome::UNROUTED`] cannot happen before routing and count as
    /// `route_not_found`.
    pub(crate) fn unrouted(&self, outcome: Outcome) {
        match outcome {
            Outcome::MethodNotAllowed => &self.method_not_allowed,
            Outcome::Retired => &self.retired,
            _ => &self.route_not_found,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// What a scrape reads of these metrics, with the route table's counts;
    /// [`Scrape::with_releases`] and [`Scrape::with_admission`] add the rest.
    pub(crate) fn scrape(&self, live_routes: usize, closed_routes: usize) -> Scrape {
        let apis = self
            .apis
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Scrape {
            apis,
            unrouted: [
                ("route_not_found", load(&self.route_not_found)),
                ("method_not_allowed", load(&self.method_not_allowed)),
                ("retired", load(&self.retired)),
            ],
            routes: [("live", live_routes), ("closed", closed_routes)],
            loads: self.loads.get().cloned(),
            releases: Vec::new(),
            admission: None,
            telemetry: None,
            ready_checks: Vec::new(),
        }
    }

    /// These metrics alone in the OpenMetrics text format.
    pub fn render(&self, live_routes: usize, closed_routes: usize) -> String {
        self.scrape(live_routes, closed_routes).render()
    }
}

/// One scrape of `/metrics`: what it reads, taken when it starts, and
/// encoded by prometheus-client as a [`Collector`].
pub(crate) struct Scrape {
    apis: Vec<((String, String), Arc<ApiStats>)>,
    unrouted: [(&'static str, u64); 3],
    routes: [(&'static str, usize); 2],
    loads: Option<Arc<sfop_runtime::Loads>>,
    releases: Vec<Arc<sfop_runtime::Api>>,
    admission: Option<Arc<crate::admission::Admission>>,
    /// What became of the spans of the platform's traces (tracing on).
    telemetry: Option<sfop_telemetry::ExportStats>,
    /// Each ready check's name and whether it holds.
    ready_checks: Vec<(&'static str, bool)>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("apis", &self.apis.len())
            .field("releases", &self.releases.len())
            .finish_non_exhaustive()
    }
}

impl Scrape {
    /// Adds the served releases' instance, memory and quarantine figures.
    pub(crate) fn with_releases(mut self, releases: Vec<Arc<sfop_runtime::Api>>) -> Self {
        self.releases = releases;
        self
    }

    /// Adds the listener's admission control.
    pub(crate) fn with_admission(mut self, admission: Arc<crate::admission::Admission>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Adds the trace exporter's counts (none when tracing is off).
    pub(crate) fn with_telemetry(mut self, stats: Option<sfop_telemetry::ExportStats>) -> Self {
        self.telemetry = stats;
        self
    }

    /// Adds the ready checks (`crate::ReadyCheck`) and whether each holds.
    pub(crate) fn with_ready_checks(mut self, checks: Vec<(&'static str, bool)>) -> Self {
        self.ready_checks = checks;
        self
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub(crate) fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail, and every value is a number or a
        // label this process made.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "/metrics could not be encoded");
        }
        out
    }
}

/// `[("api", name), ("version", version)]` and more labels.
type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

fn labels<'a>(api: &'a str, version: &'a str) -> Labels<'a, 2> {
    [("api", api), ("version", version)]
}

/// One family of samples, each a label set and a value.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One sample without labels.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: M,
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, value.metric_type())?;
    value.encode(metric)
}

fn count(n: u64) -> ConstCounter<u64> {
    ConstCounter::new(n)
}

fn gauge(n: u64) -> ConstGauge<u64> {
    ConstGauge::new(n)
}

fn gauge_usize(n: usize) -> ConstGauge<u64> {
    ConstGauge::new(u64::try_from(n).unwrap_or(u64::MAX))
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let e = &mut encoder;
        self.encode_requests(e)?;
        self.encode_releases(e)?;
        if let Some(admission) = &self.admission {
            encode_admission(e, admission)?;
        }
        if let Some(stats) = &self.telemetry {
            family(
                e,
                "sfop_trace_spans",
                "Spans of sampled traces: accepted by the collector, dropped because the export queue was full, or lost because the collector failed (ADR 0028).",
                MetricType::Counter,
                [
                    ("exported", stats.exported),
                    ("dropped", stats.dropped),
                    ("failed", stats.failed),
                ]
                .map(|(outcome, n)| ([("outcome", outcome)], count(n))),
            )?;
        }
        if !self.ready_checks.is_empty() {
            family(
                e,
                "sfop_ready_check",
                "Conditions this node needs to take traffic, 1 while each holds; while one is 0, /readyz answers 503 and names it.",
                MetricType::Gauge,
                self.ready_checks
                    .iter()
                    .map(|(check, holds)| ([("check", *check)], gauge(u64::from(*holds)))),
            )?;
        }
        self.encode_isolation(e)
    }
}

impl Scrape {
    fn encode_requests(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let apis = &self.apis;
        family(
            e,
            "sfop_requests",
            "Routed requests by API, version and outcome.",
            MetricType::Counter,
            apis.iter().flat_map(|((api, version), stats)| {
                Outcome::ALL.into_iter().filter_map(move |outcome| {
                    let n = stats.outcome(outcome);
                    (n > 0 || !Outcome::UNROUTED.contains(&outcome)).then(|| {
                        let [a, v] = labels(api, version);
                        ([a, v, ("outcome", outcome.as_str())], count(n))
                    })
                })
            }),
        )?;
        for (name, help, outcomes) in [
            (
                "sfop_plugin_traps",
                "Calls ended by a plugin trap (including memory exhaustion).",
                &[Outcome::Trap, Outcome::Memory][..],
            ),
            (
                "sfop_plugin_deadline_hits",
                "Calls ended by the CPU deadline or the wall-clock timeout.",
                &[Outcome::Deadline, Outcome::Timeout][..],
            ),
        ] {
            family(
                e,
                name,
                help,
                MetricType::Counter,
                apis.iter().map(|((api, version), stats)| {
                    let n: u64 = outcomes.iter().map(|o| stats.outcome(*o)).sum();
                    (labels(api, version), count(n))
                }),
            )?;
        }
        {
            let mut metric = e.encode_descriptor(
                "sfop_request_duration_seconds",
                "Time from routing to response, by API and version.",
                None,
                MetricType::Histogram,
            )?;
            for ((api, version), stats) in apis {
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let count = load(&stats.count);
                let mut buckets: Vec<(f64, u64)> = BUCKETS
                    .iter()
                    .zip(&stats.buckets)
                    .map(|(le, n)| (*le, load(n)))
                    .collect();
                let within: u64 = buckets.iter().map(|(_, n)| n).sum();
                // The encoder's +Inf bucket.
                buckets.push((f64::MAX, count.saturating_sub(within)));
                let sum = load(&stats.sum_micros) as f64 / 1e6;
                metric
                    .encode_family(&labels(api, version))?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        family(
            e,
            "sfop_api_in_flight",
            "Calls running now, by API and version.",
            MetricType::Gauge,
            apis.iter().map(|((api, version), stats)| {
                (labels(api, version), gauge_usize(stats.in_flight()))
            }),
        )?;
        family(
            e,
            "sfop_unrouted_requests",
            "Requests that matched no route.",
            MetricType::Counter,
            self.unrouted
                .iter()
                .map(|(reason, n)| ([("reason", *reason)], count(*n))),
        )?;
        family(
            e,
            "sfop_routes",
            "Routes in the live table, by state.",
            MetricType::Gauge,
            self.routes
                .iter()
                .map(|(state, n)| ([("state", *state)], gauge_usize(*n))),
        )?;
        if let Some(loads) = &self.loads {
            family(
                e,
                "sfop_component_loads",
                "Components loaded by the runtime, by where their native code came from (a warm release is not loaded again).",
                MetricType::Counter,
                [
                    ([("source", "compiled")], count(loads.compiled())),
                    ([("source", "compile_cache")], count(loads.from_cache())),
                ],
            )?;
        }
        Ok(())
    }

    /// How the served releases' calls got their instances (see
    /// `sfop_runtime::InstanceCounts`).
    fn encode_releases(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        // One look at each shelf, so both families agree.
        let counts: Vec<_> = self
            .releases
            .iter()
            .map(|api| {
                let m = api.manifest();
                (m.name.clone(), m.version.to_string(), api.instances())
            })
            .collect();
        family(
            e,
            "sfop_instances",
            "Calls by how their fresh instance was made: ahead of the call (prepared) or when it came (on_request).",
            MetricType::Counter,
            counts.iter().flat_map(|(name, version, n)| {
                let [a, v] = labels(name, version);
                [
                    ([a, v, ("source", "prepared")], count(n.prepared)),
                    ([a, v, ("source", "on_request")], count(n.on_request)),
                ]
            }),
        )?;
        family(
            e,
            "sfop_instances_ready",
            "Fresh instances made and waiting for a call.",
            MetricType::Gauge,
            counts
                .iter()
                .map(|(name, version, n)| (labels(name, version), gauge_usize(n.ready))),
        )
    }

    /// Isolation (ADR 0020): the guest memory budget, what each served
    /// version holds of it, quarantine, suppressed fault log lines, and
    /// calls that moved to the execution pool.
    fn encode_isolation(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let Some(first) = self.releases.first() else {
            return Ok(());
        };
        let memory = first.guest_memory();
        single(
            e,
            "sfop_guest_memory_bytes",
            "Linear memory of all live plugin instances.",
            gauge(memory.live_bytes),
        )?;
        family(
            e,
            "sfop_guest_memory_budget_bytes",
            "The platform's guest memory budget, and one API version's share of it.",
            MetricType::Gauge,
            [
                ([("scope", "platform")], gauge(memory.limit_bytes)),
                ([("scope", "api")], gauge(memory.api_share_bytes)),
            ],
        )?;
        single(
            e,
            "sfop_guest_memory_refused",
            "Calls refused and memory growths failed because the budget or a share was full.",
            count(memory.refused),
        )?;
        let releases: Vec<_> = self
            .releases
            .iter()
            .map(|api| {
                let m = api.manifest();
                (m.name.clone(), m.version.to_string(), api)
            })
            .collect();
        /// Name, type, help, and the value of one release.
        type Family = (
            &'static str,
            MetricType,
            &'static str,
            fn(&sfop_runtime::Api) -> u64,
        );
        let families: [Family; 4] = [
            (
                "sfop_api_guest_memory_bytes",
                MetricType::Gauge,
                "Linear memory this version's live instances hold.",
                |a| a.memory_bytes(),
            ),
            (
                "sfop_api_quarantines",
                MetricType::Counter,
                "Times this version was quarantined for repeated plugin faults.",
                |a| a.health().quarantines,
            ),
            (
                "sfop_plugin_fault_logs_suppressed",
                MetricType::Counter,
                "Plugin fault log lines left out by the per-version rate limit.",
                |a| a.health().suppressed_logs,
            ),
            (
                "sfop_calls_moved",
                MetricType::Counter,
                "Calls that ran past their first tick and finished on the execution pool.",
                |a| a.moved_calls(),
            ),
        ];
        for (name, kind, help, value) in families {
            let mut metric = e.encode_descriptor(name, help, None, kind)?;
            for (api, version, release) in &releases {
                let n = value(release);
                let labels = labels(api, version);
                let sample = metric.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => count(n).encode(sample)?,
                    _ => gauge(n).encode(sample)?,
                }
            }
        }
        let quarantined: Vec<_> = releases
            .iter()
            .filter_map(|(api, version, release)| {
                let kind = release.health().quarantined?;
                Some((api, version, kind.as_str()))
            })
            .collect();
        family(
            e,
            "sfop_api_quarantined",
            "1 while the version is throttled for repeated plugin faults, by the fault most of them were.",
            MetricType::Gauge,
            quarantined.iter().map(|(api, version, reason)| {
                let [a, v] = labels(api, version);
                ([a, v, ("reason", *reason)], gauge(1))
            }),
        )
    }
}

/// What admission control holds and what it refused (see `crate::admission`).
fn encode_admission(
    e: &mut DescriptorEncoder,
    admission: &crate::admission::Admission,
) -> std::fmt::Result {
    family(
        e,
        "sfop_shed",
        "Connections closed and requests answered 503 at once because a bound was reached, by bound.",
        MetricType::Counter,
        crate::admission::Shed::ALL
            .iter()
            .map(|shed| ([("reason", shed.as_str())], count(admission.shed(*shed)))),
    )?;
    let limits = &admission.limits;
    family(
        e,
        "sfop_open",
        "Connections open, TLS handshakes and requests in progress on the API listener.",
        MetricType::Gauge,
        [
            ("connections", admission.connections.now()),
            ("handshakes", admission.handshakes.now()),
            ("in_flight", admission.in_flight.now()),
        ]
        .map(|(what, n)| ([("what", what)], gauge_usize(n))),
    )?;
    family(
        e,
        "sfop_open_max",
        "The bounds of sfop_open (gateway.max_connections, max_handshakes, max_in_flight).",
        MetricType::Gauge,
        [
            ("connections", limits.max_connections),
            ("handshakes", limits.max_handshakes),
            ("in_flight", limits.max_in_flight),
        ]
        .map(|(what, n)| ([("what", what)], gauge_usize(n))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outcomes_and_cumulative_buckets() {
        let metrics = Metrics::default();
        let stats = metrics.api("bank-status", "1.0.0");
        stats.record(Outcome::Ok, Duration::from_micros(300));
        stats.record(Outcome::Trap, Duration::from_millis(3));
        // The same counters come back for the same API version.
        assert_eq!(metrics.api("bank-status", "1.0.0").outcome(Outcome::Ok), 1);
        let text = metrics.render(1, 0);
        assert!(text.contains(
            r#"sfop_requests_total{api="bank-status",version="1.0.0",outcome="trap"} 1"#
        ));
        assert!(text.contains(r#"sfop_plugin_traps_total{api="bank-status",version="1.0.0"} 1"#));
        // The encoder writes `le` first; buckets are cumulative.
        let bucket = |le: &str| {
            format!(
                r#"sfop_request_duration_seconds_bucket{{le="{le}",api="bank-status",version="1.0.0"}}"#
            )
        };
        assert!(
            text.contains(&format!("{} 1\n", bucket("0.0005"))),
            "{text}"
        );
        assert!(text.contains(&format!("{} 2\n", bucket("0.005"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains(
            r#"sfop_request_duration_seconds_count{api="bank-status",version="1.0.0"} 2"#
        ));
        assert!(text.contains(
            r#"sfop_request_duration_seconds_sum{api="bank-status",version="1.0.0"} 0.0033"#
        ));
        // OpenMetrics: a counter family is named without `_total`, its
        // samples with it, and the exposition ends in `# EOF`.
        assert!(text.contains("# TYPE sfop_requests counter\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// A request slower than the last bound counts in `+Inf` only.
    #[test]
    fn a_request_past_the_last_bucket_counts_in_inf() {
        let metrics = Metrics::default();
        let stats = metrics.api("a", "1.0.0");
        stats.record(Outcome::Ok, Duration::from_secs(30));
        let text = metrics.render(1, 0);
        assert!(
            text.contains(r#"{le="10.0",api="a",version="1.0.0"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{le="+Inf",api="a",version="1.0.0"} 1"#),
            "{text}"
        );
    }

    /// The canary's error count reads the enum, not labels: a candidate
    /// that cannot be instantiated (`overloaded`) counts against it, a
    /// caller's refusal or the platform's own shedding does not.
    #[test]
    fn release_faults_count_overloaded_and_not_the_callers_refusals() {
        let stats = ApiStats::default();
        for outcome in [
            Outcome::Ok,
            Outcome::Overloaded,
            Outcome::Trap,
            Outcome::Denied,
            Outcome::Shed,
        ] {
            stats.record(outcome, Duration::from_micros(10));
        }
        assert_eq!(stats.requests(), 5);
        assert_eq!(stats.release_faults(), 2);
    }

    #[test]
    fn unrouted_outcomes_are_listed_only_once_counted() {
        let metrics = Metrics::default();
        let stats = metrics.api("a", "1.0.0");
        stats.record(Outcome::Ok, Duration::from_micros(10));
        let text = metrics.render(1, 0);
        assert!(text.contains(r#"outcome="overloaded"} 0"#));
        assert!(!text.contains(r#"outcome="route_not_found""#));
        metrics.unrouted(Outcome::MethodNotAllowed);
        let text = metrics.render(1, 0);
        assert!(text.contains(r#"sfop_unrouted_requests_total{reason="method_not_allowed"} 1"#));
    }
}
