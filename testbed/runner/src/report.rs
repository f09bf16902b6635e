//! The testbed's report: every check with its rule id, outcome and detail,
//! as JSON (what the attestation hashes and the management center stores)
//! and as an HTML page the portal shows.

use std::collections::BTreeSet;
use std::fmt::Write;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::{Deserialize, Serialize};

/// `format` of the report JSON.
pub const REPORT_FORMAT: &str = "sfop-testbed-report/1";

/// Every rule the testbed checks: stable id and what it demands. Ids never
/// change meaning; a new rule gets a new id.
pub const RULES: &[(&str, &str)] = &[
    (
        "STATIC-SIZE",
        "component and manifest within the platform's size limits",
    ),
    (
        "STATIC-CASES",
        "the package's testbed.toml, when it has one, parses",
    ),
    (
        "STATIC-COMPONENT",
        "api.wasm is a valid WebAssembly component",
    ),
    (
        "STATIC-WORLD",
        "exports sfop:platform/handler (handle) at a supported version",
    ),
    (
        "STATIC-IMPORTS",
        "imports only sfop:platform capabilities at a supported version, each declared in the manifest",
    ),
    (
        "STATIC-KIND",
        "declared capabilities and imported ledger functions are allowed for the API's scope",
    ),
    (
        "STATIC-LOAD",
        "the runtime compiles and links the component with the manifest's grants",
    ),
    (
        "CONF-ENVELOPE",
        "every answer is a JSON object with the common header: api_tran_id, 17-digit api_tran_dtm, 5-character rsp_code, rsp_message",
    ),
    (
        "CONF-FIELDS",
        "a success answer has exactly the documented response fields (list items too)",
    ),
    (
        "CONF-AMOUNTS",
        "documented digit fields (N(..)) are JSON strings of digits",
    ),
    (
        "CONF-BIZ-200",
        "business failures are HTTP 200 with a non-A0000 rsp_code, never an HTTP error",
    ),
    (
        "CONF-TRAN-ID",
        "bank_tran_id: another institution's prefix is A0004, a repeat is A0326",
    ),
    (
        "CONF-CONSENT",
        "accounts are the caller's and consented: another user's number is A0304, no transfer consent is A0306",
    ),
    (
        "CONF-PAGING",
        "paging follows befor_inquiry_trace_info to the last page without repeats, and the items add up to total_record_cnt",
    ),
    (
        "CONF-OUTAGE",
        "a participant bank outage is answered HTTP 200 with A0017; a transfer booked whose answer was lost is A0017 with its bank_tran_id, and transfer-result finds it",
    ),
    (
        "CONF-CASE",
        "the package's own cases (testbed.toml) and documented example answer as expected",
    ),
    (
        "ROB-NO-FAULT",
        "malformed and boundary inputs never make the plugin trap, time out or answer 5xx",
    ),
    (
        "ROB-ENVELOPE",
        "answers to malformed and boundary inputs are well-formed error envelopes",
    ),
    (
        "RES-LATENCY",
        "p99 latency under the short load within the budget",
    ),
    ("RES-MEMORY", "peak linear memory within the budget"),
    (
        "RES-RUNAWAY",
        "no call runs into the CPU deadline (busy loops)",
    ),
    (
        "COMPAT-VERSION",
        "the candidate is the live API's name with a higher version",
    ),
    (
        "COMPAT-SEMVER",
        "the documented contract's changes fit the version bump (breaking needs a major)",
    ),
    (
        "COMPAT-REPLAY",
        "the live version's requests answer alike on the candidate (field-level diff), unless a major bump",
    ),
];

/// What a rule id means, for reports.
pub fn rule_description(rule: &str) -> &'static str {
    RULES
        .iter()
        .find(|(id, _)| *id == rule)
        .map_or("", |(_, d)| d)
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// The group a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Static,
    Conformance,
    Robustness,
    Budget,
    Compatibility,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Static => "static",
            Phase::Conformance => "conformance",
            Phase::Robustness => "robustness",
            Phase::Budget => "budget",
            Phase::Compatibility => "compatibility",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run (an earlier failure made it meaningless, or it does not apply).
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// A difference between the live version's answer and the candidate's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// JSON path, e.g. `res_list[0].bank_status`.
    pub path: String,
    /// `removed`, `added`, `type` (changed JSON type) or `value`.
    pub change: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable rule id, e.g. `CONF-FIELDS`.
    pub rule: String,
    pub phase: Phase,
    /// What exactly was checked, e.g. the case name.
    pub name: String,
    pub outcome: Outcome,
    /// Why it failed, or what was measured.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldDiff>,
}

impl CheckResult {
    pub fn new(
        rule: &str,
        phase: Phase,
        name: impl Into<String>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            rule: rule.to_owned(),
            phase,
            name: name.into(),
            outcome,
            detail: detail.into(),
            diff: Vec::new(),
        }
    }

    pub fn pass(
        rule: &str,
        phase: Phase,
        name: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(rule, phase, name, Outcome::Pass, detail)
    }

    pub fn fail(
        rule: &str,
        phase: Phase,
        name: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(rule, phase, name, Outcome::Fail, detail)
    }

    pub fn skip(
        rule: &str,
        phase: Phase,
        name: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(rule, phase, name, Outcome::Skip, detail)
    }
}

/// The report of one testbed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: String,
    pub api: String,
    pub version: String,
    pub component_sha256: String,
    pub manifest_sha256: String,
    pub testbed_version: String,
    /// `name@version` of the live package compared against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    /// Unix milliseconds when the run started.
    pub started_at: u64,
    pub duration_ms: u64,
    pub verdict: Verdict,
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// `pass` when no check failed.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// The ids of the rules with at least one failed check.
    pub fn failed_rules(&self) -> BTreeSet<&str> {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.rule.as_str())
            .collect()
    }

    /// Sets the verdict from the checks.
    pub(crate) fn decide(&mut self) {
        self.verdict = if self.checks.iter().any(|c| c.outcome == Outcome::Fail) {
            Verdict::Fail
        } else {
            Verdict::Pass
        };
    }

    /// The report as pretty JSON: the exact bytes `report.json` holds and
    /// the attestation's `report_sha256` hashes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Lower-case hex SHA-256 of [`Report::to_json`]: what an attestation's
    /// `report_sha256` names. A report stored as a `serde_json::Value` and
    /// read back with [`Report::from_json`] hashes the same.
    pub fn sha256(&self) -> String {
        crate::package::sha256_hex(&self.to_json())
    }

    /// Parses a report JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Per rule: how many checks passed, failed and were skipped, in the
    /// order of [`RULES`].
    pub fn by_rule(&self) -> Vec<(&'static str, usize, usize, usize)> {
        RULES
            .iter()
            .filter_map(|(rule, _)| {
                let count = |o: Outcome| {
                    self.checks
                        .iter()
                        .filter(|c| c.rule == *rule && c.outcome == o)
                        .count()
                };
                let (p, f, s) = (
                    count(Outcome::Pass),
                    count(Outcome::Fail),
                    count(Outcome::Skip),
                );
                (p + f + s > 0).then_some((*rule, p, f, s))
            })
            .collect()
    }

    /// A plain-text summary table, one line per rule.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<17} {:>5} {:>5} {:>5}  result",
            "rule", "pass", "fail", "skip"
        );
        for (rule, p, f, s) in self.by_rule() {
            let result = if f > 0 {
                "FAIL"
            } else if p > 0 {
                "ok"
            } else {
                "skipped"
            };
            let _ = writeln!(out, "{rule:<17} {p:>5} {f:>5} {s:>5}  {result}");
        }
        let _ = writeln!(
            out,
            "verdict: {} ({} checks, {} ms)",
            self.verdict.as_str().to_uppercase(),
            self.checks.len(),
            self.duration_ms
        );
        out
    }

    /// A self-contained HTML page, a maud template: every value from the
    /// package is escaped (docs/adr/0025).
    pub fn to_html(&self) -> String {
        const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}\
             table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}\
             .pass{color:#060}.fail{color:#b00;font-weight:bold}.skip{color:#777}\
             code{font-size:.9em}";
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Testbed report: " (self.api) " " (self.version) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { "Testbed report: " code { (self.api) } " " (self.version) }
                    (self.fragment())
                }
            }
        }
        .into_string()
    }

    /// The report's content alone (no document, heading or style), for a
    /// page of its own to show: the platform stores this, so that the
    /// portal can put it in its page without a second document's `<html>`,
    /// `<head>` and `<style>` restyling it. Escaped like [`Report::to_html`].
    pub fn to_html_fragment(&self) -> String {
        self.fragment().into_string()
    }

    fn fragment(&self) -> Markup {
        let verdict = self.verdict.as_str();
        html! {
            p class=(verdict) { "Verdict: " (verdict.to_uppercase()) }
            dl {
                dt { "component sha256" } dd { code { (self.component_sha256) } }
                dt { "manifest sha256" } dd { code { (self.manifest_sha256) } }
                dt { "testbed" } dd { (self.testbed_version) }
                @if let Some(live) = &self.live {
                    dt { "compared with live" } dd { code { (live) } }
                }
                dt { "duration" } dd { (self.duration_ms) " ms" }
            }
            h2 { "Summary" }
            table {
                tr { th { "rule" } th { "meaning" } th { "pass" } th { "fail" } th { "skip" } }
                @for (rule, p, f, s) in self.by_rule() {
                    @let class = if f > 0 { "fail" } else if p > 0 { "pass" } else { "skip" };
                    tr class=(class) {
                        td { code { (rule) } }
                        td { (rule_description(rule)) }
                        td { (p) } td { (f) } td { (s) }
                    }
                }
            }
            h2 { "Checks" }
            table {
                tr { th { "phase" } th { "rule" } th { "check" } th { "result" } th { "detail" } }
                @for c in &self.checks {
                    tr {
                        td { (c.phase.as_str()) }
                        td { code { (c.rule) } }
                        td { (c.name) }
                        td class=(c.outcome.as_str()) { (c.outcome.as_str()) }
                        td {
                            (c.detail)
                            @if !c.diff.is_empty() {
                                table {
                                    tr { th { "field" } th { "change" } th { "live" } th { "candidate" } }
                                    @for d in &c.diff {
                                        tr {
                                            td { code { (d.path) } }
                                            td { (d.change) }
                                            td { (d.live.as_deref().unwrap_or_default()) }
                                            td { (d.candidate.as_deref().unwrap_or_default()) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report {
            format: REPORT_FORMAT.into(),
            api: "x<script>".into(),
            version: "1.0.0".into(),
            component_sha256: "ab".into(),
            manifest_sha256: "cd".into(),
            testbed_version: "0.1.0".into(),
            live: None,
            started_at: 0,
            duration_ms: 1,
            verdict: Verdict::Pass,
            checks: vec![
                CheckResult::pass("STATIC-SIZE", Phase::Static, "size", "ok"),
                CheckResult::fail(
                    "CONF-FIELDS",
                    Phase::Conformance,
                    "case <b>",
                    "bank_nm & co",
                ),
            ],
        };
        r.decide();
        r
    }

    #[test]
    fn verdict_and_failed_rules_follow_the_checks() {
        let r = report();
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(
            r.failed_rules().into_iter().collect::<Vec<_>>(),
            ["CONF-FIELDS"]
        );
        assert!(r.summary_table().contains("CONF-FIELDS"));
    }

    #[test]
    fn html_escapes_everything_from_the_package() {
        let html = report().to_html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("x&lt;script&gt;"));
        assert!(html.contains("bank_nm &amp; co"));
        assert!(html.contains("case &lt;b&gt;"));
        // The fragment a page shows: escaped the same, and no document of
        // its own (no html, head or style to restyle the page around it).
        let fragment = report().to_html_fragment();
        assert!(fragment.contains("bank_nm &amp; co") && fragment.contains("case &lt;b&gt;"));
        for tag in [
            "<html",
            "<head",
            "<style",
            "<body",
            "<!DOCTYPE",
            "<h1",
            "<b>",
        ] {
            assert!(!fragment.contains(tag), "{tag} in {fragment}");
        }
        assert!(html.contains(&fragment));
    }

    #[test]
    fn a_report_stored_as_a_json_value_hashes_the_same() -> Result<(), serde_json::Error> {
        let r = report();
        let stored = serde_json::to_value(&r)?;
        let back: Report = serde_json::from_value(stored)?;
        assert_eq!(back.sha256(), r.sha256());
        assert_eq!(Report::from_json(&r.to_json())?, r);
        Ok(())
    }

    #[test]
    fn every_rule_has_a_description() {
        for (rule, d) in RULES {
            assert!(!d.is_empty(), "{rule}");
            assert_eq!(rule_description(rule), *d);
        }
    }
}
