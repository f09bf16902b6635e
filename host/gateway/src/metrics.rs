//! Request metrics per API and version, rendered as Prometheus text.
//!
//! Counters are plain atomics held by each route target, so counting costs a
//! few relaxed increments and no lock on the request path.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sfop_core::Outcome;

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

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, live_routes: usize, closed_routes: usize) -> String {
        let apis: Vec<((String, String), Arc<ApiStats>)> = {
            let apis = self
                .apis
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            apis.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        out.push_str("# HELP sfop_requests_total Routed requests by API, version and outcome.\n");
        out.push_str("# TYPE sfop_requests_total counter\n");
        for ((api, version), stats) in &apis {
            for outcome in Outcome::ALL {
                let n = stats.outcome(outcome);
                if n == 0 && Outcome::UNROUTED.contains(&outcome) {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "sfop_requests_total{{api=\"{api}\",version=\"{version}\",outcome=\"{outcome}\"}} {n}",
                );
            }
        }
        for (name, help, outcomes) in [
            (
                "sfop_plugin_traps_total",
                "Calls ended by a plugin trap (including memory exhaustion).",
                &[Outcome::Trap, Outcome::Memory][..],
            ),
            (
                "sfop_plugin_deadline_hits_total",
                "Calls ended by the CPU deadline or the wall-clock timeout.",
                &[Outcome::Deadline, Outcome::Timeout][..],
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((api, version), stats) in &apis {
                let n: u64 = outcomes.iter().map(|o| stats.outcome(*o)).sum();
                let _ = writeln!(out, "{name}{{api=\"{api}\",version=\"{version}\"}} {n}");
            }
        }

        out.push_str("# HELP sfop_request_duration_seconds Time from routing to response, by API and version.\n");
        out.push_str("# TYPE sfop_request_duration_seconds histogram\n");
        for ((api, version), stats) in &apis {
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += load(&stats.buckets[i]);
                let _ = writeln!(
                    out,
                    "sfop_request_duration_seconds_bucket{{api=\"{api}\",version=\"{version}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = load(&stats.count);
            let _ = writeln!(
                out,
                "sfop_request_duration_seconds_bucket{{api=\"{api}\",version=\"{version}\",le=\"+Inf\"}} {count}\n\
                 sfop_request_duration_seconds_sum{{api=\"{api}\",version=\"{version}\"}} {}\n\
                 sfop_request_duration_seconds_count{{api=\"{api}\",version=\"{version}\"}} {count}",
                load(&stats.sum_micros) as f64 / 1e6
            );
        }

        out.push_str("# HELP sfop_api_in_flight Calls running now, by API and version.\n");
        out.push_str("# TYPE sfop_api_in_flight gauge\n");
        for ((api, version), stats) in &apis {
            let _ = writeln!(
                out,
                "sfop_api_in_flight{{api=\"{api}\",version=\"{version}\"}} {}",
                stats.in_flight()
            );
        }

        let _ = writeln!(
            out,
            "# HELP sfop_unrouted_requests_total Requests that matched no route.\n\
             # TYPE sfop_unrouted_requests_total counter\n\
             sfop_unrouted_requests_total{{reason=\"route_not_found\"}} {}\n\
             sfop_unrouted_requests_total{{reason=\"method_not_allowed\"}} {}\n\
             sfop_unrouted_requests_total{{reason=\"retired\"}} {}\n\
             # HELP sfop_routes Routes in the live table, by state.\n\
             # TYPE sfop_routes gauge\n\
             sfop_routes{{state=\"live\"}} {live_routes}\n\
             sfop_routes{{state=\"closed\"}} {closed_routes}",
            load(&self.route_not_found),
            load(&self.method_not_allowed),
            load(&self.retired),
        );
        if let Some(loads) = self.loads.get() {
            let _ = writeln!(
                out,
                "# HELP sfop_component_loads_total Components loaded by the runtime, by where their native code came from (a warm release is not loaded again).\n\
                 # TYPE sfop_component_loads_total counter\n\
                 sfop_component_loads_total{{source=\"compiled\"}} {}\n\
                 sfop_component_loads_total{{source=\"compile_cache\"}} {}",
                loads.compiled(),
                loads.from_cache(),
            );
        }
        out
    }
}

/// What admission control holds and what it refused (see `crate::admission`).
pub(crate) fn render_admission(out: &mut String, admission: &crate::admission::Admission) {
    out.push_str(
        "# HELP sfop_shed_total Connections closed and requests answered 503 at once because a bound was reached, by bound.\n\
         # TYPE sfop_shed_total counter\n",
    );
    for shed in crate::admission::Shed::ALL {
        let _ = writeln!(
            out,
            "sfop_shed_total{{reason=\"{}\"}} {}",
            shed.as_str(),
            admission.shed(shed)
        );
    }
    let limits = &admission.limits;
    let _ = writeln!(
        out,
        "# HELP sfop_open Connections open, TLS handshakes and requests in progress on the API listener.\n\
         # TYPE sfop_open gauge\n\
         sfop_open{{what=\"connections\"}} {}\n\
         sfop_open{{what=\"handshakes\"}} {}\n\
         sfop_open{{what=\"in_flight\"}} {}\n\
         # HELP sfop_open_max The bounds of sfop_open (gateway.max_connections, max_handshakes, max_in_flight).\n\
         # TYPE sfop_open_max gauge\n\
         sfop_open_max{{what=\"connections\"}} {}\n\
         sfop_open_max{{what=\"handshakes\"}} {}\n\
         sfop_open_max{{what=\"in_flight\"}} {}",
        admission.connections.now(),
        admission.handshakes.now(),
        admission.in_flight.now(),
        limits.max_connections,
        limits.max_handshakes,
        limits.max_in_flight,
    );
}

/// How the served releases' calls got their instances (see
/// `sfop_runtime::InstanceCounts`).
pub(crate) fn render_instances(out: &mut String, releases: &[Arc<sfop_runtime::Api>]) {
    // One look at each shelf, so both families agree.
    let counts: Vec<_> = releases
        .iter()
        .map(|api| (api.manifest(), api.instances()))
        .collect();
    out.push_str(
        "# HELP sfop_instances_total Calls by how their fresh instance was made: ahead of the call (prepared) or when it came (on_request).\n\
         # TYPE sfop_instances_total counter\n",
    );
    for (m, n) in &counts {
        let (name, version) = (&m.name, &m.version);
        let _ = writeln!(
            out,
            "sfop_instances_total{{api=\"{name}\",version=\"{version}\",source=\"prepared\"}} {}\n\
             sfop_instances_total{{api=\"{name}\",version=\"{version}\",source=\"on_request\"}} {}",
            n.prepared, n.on_request
        );
    }
    out.push_str(
        "# HELP sfop_instances_ready Fresh instances made and waiting for a call.\n\
         # TYPE sfop_instances_ready gauge\n",
    );
    for (m, n) in &counts {
        let _ = writeln!(
            out,
            "sfop_instances_ready{{api=\"{}\",version=\"{}\"}} {}",
            m.name, m.version, n.ready
        );
    }
}

/// Isolation (ADR 0020): the guest memory budget, what each served
/// version holds of it, quarantine, suppressed fault log lines, and calls
/// that moved to the execution pool.
pub(crate) fn render_isolation(out: &mut String, releases: &[Arc<sfop_runtime::Api>]) {
    let Some(first) = releases.first() else {
        return;
    };
    let memory = first.guest_memory();
    let _ = write!(
        out,
        "# HELP sfop_guest_memory_bytes Linear memory of all live plugin instances.\n\
         # TYPE sfop_guest_memory_bytes gauge\n\
         sfop_guest_memory_bytes {}\n\
         # HELP sfop_guest_memory_budget_bytes The platform's guest memory budget, and one API version's share of it.\n\
         # TYPE sfop_guest_memory_budget_bytes gauge\n\
         sfop_guest_memory_budget_bytes{{scope=\"platform\"}} {}\n\
         sfop_guest_memory_budget_bytes{{scope=\"api\"}} {}\n\
         # HELP sfop_guest_memory_refused_total Calls refused and memory growths failed because the budget or a share was full.\n\
         # TYPE sfop_guest_memory_refused_total counter\n\
         sfop_guest_memory_refused_total {}\n",
        memory.live_bytes, memory.limit_bytes, memory.api_share_bytes, memory.refused
    );
    /// Name, type, help, and the value of one release.
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&sfop_runtime::Api) -> u64,
    );
    let families: [Family; 4] = [
        (
            "sfop_api_guest_memory_bytes",
            "gauge",
            "Linear memory this version's live instances hold.",
            |a| a.memory_bytes(),
        ),
        (
            "sfop_api_quarantines_total",
            "counter",
            "Times this version was quarantined for repeated plugin faults.",
            |a| a.health().quarantines,
        ),
        (
            "sfop_plugin_fault_logs_suppressed_total",
            "counter",
            "Plugin fault log lines left out by the per-version rate limit.",
            |a| a.health().suppressed_logs,
        ),
        (
            "sfop_calls_moved_total",
            "counter",
            "Calls that ran past their first tick and finished on the execution pool.",
            |a| a.moved_calls(),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for api in releases {
            let m = api.manifest();
            let _ = writeln!(
                out,
                "{name}{{api=\"{}\",version=\"{}\"}} {}",
                m.name,
                m.version,
                value(api)
            );
        }
    }
    out.push_str(
        "# HELP sfop_api_quarantined 1 while the version is throttled for repeated plugin faults, by the fault most of them were.\n\
         # TYPE sfop_api_quarantined gauge\n",
    );
    for api in releases {
        if let Some(kind) = api.health().quarantined {
            let m = api.manifest();
            let _ = writeln!(
                out,
                "sfop_api_quarantined{{api=\"{}\",version=\"{}\",reason=\"{}\"}} 1",
                m.name,
                m.version,
                kind.as_str()
            );
        }
    }
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
        assert!(text.contains(r#"le="0.0005"} 1"#));
        assert!(text.contains(r#"le="0.005"} 2"#));
        assert!(text.contains(r#"le="+Inf"} 2"#));
        assert!(text.contains(
            r#"sfop_request_duration_seconds_count{api="bank-status",version="1.0.0"} 2"#
        ));
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
