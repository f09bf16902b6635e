//! Compatibility with the live version: the documented contract's diff
//! checked against the semver bump, and a replay of the live version's
//! example and cases against both versions with a field-level diff.

use std::collections::BTreeMap;

use semver::Version;
use serde_json::Value;
use sfop_core::{Docs, Manifest};

use crate::answer::json_type;
use crate::bench::{Bench, HttpReply, send};
use crate::call::Call;
use crate::cases::Case;
use crate::package::Package;
use crate::report::{CheckResult, FieldDiff, Outcome, Phase};
use crate::{Log, TestbedError};

const PH: Phase = Phase::Compatibility;

/// How big a change or a version bump is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patch,
    Minor,
    Major,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Patch => "patch",
            Level::Minor => "minor",
            Level::Major => "major",
        }
    }
}

/// What a version bump allows: for `0.y.z`, a `y` bump may break and a `z`
/// bump may add (Cargo's reading of semver).
pub fn bump(live: &Version, candidate: &Version) -> Level {
    if live.major != candidate.major {
        Level::Major
    } else if live.major == 0 {
        if live.minor != candidate.minor {
            Level::Major
        } else if live.patch != candidate.patch {
            Level::Minor
        } else {
            Level::Patch
        }
    } else if live.minor != candidate.minor {
        Level::Minor
    } else {
        Level::Patch
    }
}

/// One change of the documented contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractChange {
    pub diff: FieldDiff,
    pub level: Level,
}

fn change(
    path: String,
    what: &str,
    live: Option<String>,
    candidate: Option<String>,
    level: Level,
) -> ContractChange {
    ContractChange {
        diff: FieldDiff {
            path,
            change: what.into(),
            live,
            candidate,
        },
        level,
    }
}

/// The contract diff between two manifests: scope, routes, documented
/// request and response fields, response codes.
pub fn contract_diff(live: &Manifest, candidate: &Manifest) -> Vec<ContractChange> {
    let mut out = Vec::new();
    if live.scope != candidate.scope {
        out.push(change(
            "(scope)".into(),
            "changed",
            Some(live.scope.clone()),
            Some(candidate.scope.clone()),
            Level::Major,
        ));
    }
    for r in &live.routes {
        if !candidate.routes.contains(r) {
            out.push(change(
                format!("(route) {r}"),
                "removed",
                Some(r.to_string()),
                None,
                Level::Major,
            ));
        }
    }
    for r in &candidate.routes {
        if !live.routes.contains(r) {
            out.push(change(
                format!("(route) {r}"),
                "added",
                None,
                Some(r.to_string()),
                Level::Minor,
            ));
        }
    }
    let empty = Docs::default();
    let (ld, cd) = (
        live.docs.as_ref().unwrap_or(&empty),
        candidate.docs.as_ref().unwrap_or(&empty),
    );
    let describe =
        |kind: &str, required: bool| format!("{kind}{}", if required { ", required" } else { "" });
    // Request fields: clients send these.
    let lreq: BTreeMap<&str, _> = ld.request.iter().map(|f| (f.name.as_str(), f)).collect();
    let creq: BTreeMap<&str, _> = cd.request.iter().map(|f| (f.name.as_str(), f)).collect();
    for (name, l) in &lreq {
        let lt = Some(describe(&l.kind, l.required));
        match creq.get(name) {
            // The API ignores what callers still send: not breaking.
            None => out.push(change(
                format!("request {name}"),
                "removed",
                lt,
                None,
                Level::Minor,
            )),
            Some(c) => {
                let ct = Some(describe(&c.kind, c.required));
                if c.kind != l.kind {
                    out.push(change(
                        format!("request {name}"),
                        "type",
                        lt,
                        ct,
                        Level::Major,
                    ));
                } else if c.required && !l.required {
                    out.push(change(
                        format!("request {name}"),
                        "now required",
                        lt,
                        ct,
                        Level::Major,
                    ));
                } else if !c.required && l.required {
                    out.push(change(
                        format!("request {name}"),
                        "now optional",
                        lt,
                        ct,
                        Level::Minor,
                    ));
                }
            }
        }
    }
    for (name, c) in &creq {
        if !lreq.contains_key(name) {
            let level = if c.required {
                Level::Major
            } else {
                Level::Minor
            };
            out.push(change(
                format!("request {name}"),
                "added",
                None,
                Some(describe(&c.kind, c.required)),
                level,
            ));
        }
    }
    // Response fields: clients read these.
    let lres: BTreeMap<&str, &str> = ld
        .response
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    let cres: BTreeMap<&str, &str> = cd
        .response
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    for (name, lk) in &lres {
        match cres.get(name) {
            None => out.push(change(
                format!("response {name}"),
                "removed",
                Some((*lk).into()),
                None,
                Level::Major,
            )),
            Some(ck) if ck != lk => out.push(change(
                format!("response {name}"),
                "type",
                Some((*lk).into()),
                Some((*ck).into()),
                Level::Major,
            )),
            Some(_) => {}
        }
    }
    for (name, ck) in &cres {
        if !lres.contains_key(name) {
            out.push(change(
                format!("response {name}"),
                "added",
                None,
                Some((*ck).into()),
                Level::Minor,
            ));
        }
    }
    for c in &cd.codes {
        if !ld.codes.iter().any(|l| l.code == c.code) {
            out.push(change(
                format!("code {}", c.code),
                "added",
                None,
                Some(c.meaning.clone()),
                Level::Minor,
            ));
        }
    }
    for l in &ld.codes {
        if !cd.codes.iter().any(|c| c.code == l.code) {
            out.push(change(
                format!("code {}", l.code),
                "removed",
                Some(l.meaning.clone()),
                None,
                Level::Minor,
            ));
        }
    }
    out
}

/// Keys whose values differ between any two calls (ids, times, balances).
fn volatile(key: &str) -> bool {
    matches!(
        key,
        "api_tran_id"
            | "api_tran_dtm"
            | "bank_tran_id"
            | "bank_tran_date"
            | "befor_inquiry_trace_info"
    ) || key.ends_with("_dtime")
        || key.ends_with("_dtm")
        || key.ends_with("balance_amt")
        || key == "available_amt"
        || key == "wd_limit_remain_amt"
        || key == "rsp_message"
}

/// Field-level diff of two JSON answers.
pub fn json_diff(path: &str, live: &Value, candidate: &Value, out: &mut Vec<FieldDiff>) {
    let brief = |v: &Value| {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(80).collect::<String>())
        } else {
            s
        }
    };
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (live, candidate) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, lv) in l {
                match c.get(k) {
                    None => out.push(FieldDiff {
                        path: join(k),
                        change: "removed".into(),
                        live: Some(brief(lv)),
                        candidate: None,
                    }),
                    Some(cv) => json_diff(&join(k), lv, cv, out),
                }
            }
            for (k, cv) in c {
                if !l.contains_key(k) {
                    out.push(FieldDiff {
                        path: join(k),
                        change: "added".into(),
                        live: None,
                        candidate: Some(brief(cv)),
                    });
                }
            }
        }
        (Value::Array(l), Value::Array(c)) => {
            for (i, (lv, cv)) in l.iter().zip(c.iter()).take(3).enumerate() {
                json_diff(&format!("{path}[{i}]"), lv, cv, out);
            }
            if l.len() != c.len() {
                out.push(FieldDiff {
                    path: format!("{path}[]"),
                    change: "value".into(),
                    live: Some(format!("{} items", l.len())),
                    candidate: Some(format!("{} items", c.len())),
                });
            }
        }
        (l, c) if json_type(l) != json_type(c) => out.push(FieldDiff {
            path: path.to_owned(),
            change: "type".into(),
            live: Some(format!("{} {}", json_type(l), brief(l))),
            candidate: Some(format!("{} {}", json_type(c), brief(c))),
        }),
        (l, c) => {
            let key = path.rsplit('.').next().unwrap_or(path);
            let key = key.split('[').next().unwrap_or(key);
            if l != c && !volatile(key) {
                out.push(FieldDiff {
                    path: path.to_owned(),
                    change: "value".into(),
                    live: Some(brief(l)),
                    candidate: Some(brief(c)),
                });
            }
        }
    }
}

/// Whether an observed diff breaks clients: a field gone, a type changed,
/// another status or `rsp_code`.
fn breaks(d: &FieldDiff) -> bool {
    d.change == "removed" || d.change == "type" || d.path == "rsp_code" || d.path == "(HTTP status)"
}

/// Runs the compatibility phase.
pub(crate) async fn run(
    bench: &mut Bench,
    candidate: usize,
    package: &Package,
    live: &Package,
    log: &mut Log,
) -> Result<(), TestbedError> {
    let (lm, cm) = (&live.manifest, &package.manifest);
    let allowed = bump(&lm.version, &cm.version);
    let version_ok = lm.name == cm.name && cm.version > lm.version;
    log.push(if version_ok {
        CheckResult::pass(
            "COMPAT-VERSION",
            PH,
            "successor of the live version",
            format!(
                "{} → {} ({} bump)",
                live.label(),
                package.label(),
                allowed.as_str()
            ),
        )
    } else {
        CheckResult::fail(
            "COMPAT-VERSION",
            PH,
            "successor of the live version",
            format!(
                "{} cannot replace {}: same name and a higher version needed",
                package.label(),
                live.label()
            ),
        )
    });

    let changes = contract_diff(lm, cm);
    let needed = changes
        .iter()
        .map(|c| c.level)
        .max()
        .unwrap_or(Level::Patch);
    let breaking: Vec<String> = changes
        .iter()
        .filter(|c| c.level == Level::Major)
        .map(|c| format!("{} {}", c.diff.path, c.diff.change))
        .collect();
    let documented = lm.docs.is_some() && cm.docs.is_some();
    let mut row = if allowed >= needed {
        CheckResult::pass(
            "COMPAT-SEMVER",
            PH,
            "contract diff against the version bump",
            format!(
                "{} contract changes need a {} bump; {} → {} is a {} bump{}",
                changes.len(),
                needed.as_str(),
                lm.version,
                cm.version,
                allowed.as_str(),
                if documented {
                    ""
                } else {
                    " (one side documents no fields: routes and scope only)"
                }
            ),
        )
    } else {
        CheckResult::fail(
            "COMPAT-SEMVER",
            PH,
            "contract diff against the version bump",
            format!(
                "{} → {} is a {} bump, but the contract changes need a {} bump: {}",
                lm.version,
                cm.version,
                allowed.as_str(),
                needed.as_str(),
                if breaking.is_empty() {
                    "additions need at least a minor bump".to_owned()
                } else {
                    format!("breaking: {}", breaking.join(", "))
                }
            ),
        )
    };
    row.diff = changes.into_iter().map(|c| c.diff).collect();
    log.push(row);

    // Replay the live version's requests against both.
    let live_api = match bench.load(lm, &live.component) {
        Ok(api) => api,
        Err(e) => {
            log.push(CheckResult::skip(
                "COMPAT-REPLAY",
                PH,
                "replay of the live version's requests",
                format!("the live package does not load here: {e}"),
            ));
            return Ok(());
        }
    };
    let live_index = bench.serve(live_api).await?;
    let bench: &Bench = bench;
    let (Some(live_served), Some(cand_served)) =
        (bench.served(live_index), bench.served(candidate))
    else {
        return Ok(());
    };
    let mut replays: Vec<(String, Call, Call, Option<Case>)> = Vec::new();
    if let Some(call) = Call::example(lm) {
        let (mut a, mut b) = (call.clone(), call);
        a.refresh_tran_ids(bench);
        b.refresh_tran_ids(bench);
        replays.push(("documented example of the live version".into(), a, b, None));
    }
    for case in live.cases().cases {
        replays.push((
            format!("live case: {}", case.name),
            Call::from_case(lm, &case, bench),
            Call::from_case(lm, &case, bench),
            Some(case),
        ));
    }
    if replays.is_empty() {
        log.push(CheckResult::skip(
            "COMPAT-REPLAY",
            PH,
            "replay of the live version's requests",
            "the live version documents no example and has no cases",
        ));
    }
    let limit = std::time::Duration::from_millis(
        u64::from(cm.limits.timeout_ms.max(lm.limits.timeout_ms)) + 5_000,
    );
    for (name, live_call, cand_call, case) in replays {
        // Each side sees the case's conditions (outages, faults, a repeat).
        let exchange = |addr, call: Call| {
            let case = case.clone();
            async move {
                let case = case.unwrap_or_else(|| Case {
                    name: String::new(),
                    persona: None,
                    method: None,
                    path: None,
                    query: None,
                    body: None,
                    banks_down: Vec::new(),
                    faults: Vec::new(),
                    send_twice: false,
                    expect: Default::default(),
                });
                for rule in &case.faults {
                    let _ = bench.faults.add(rule.clone());
                }
                let _ = bench.set_banks(&case.banks_down, false);
                let request = call.to_http();
                let mut reply = send(addr, &request, limit).await;
                if case.send_twice && reply.is_ok() {
                    reply = send(addr, &request, limit).await;
                }
                let _ = bench.set_banks(&case.banks_down, true);
                bench.faults.clear();
                reply
            }
        };
        let lr = exchange(live_served.addr, live_call).await;
        let cr = exchange(cand_served.addr, cand_call).await;
        let (lr, cr) = match (lr, cr) {
            (Ok(l), Ok(c)) => (l, c),
            (l, c) => {
                log.push(CheckResult::fail(
                    "COMPAT-REPLAY",
                    PH,
                    name,
                    format!("no answer: live {:?}, candidate {:?}", l.err(), c.err()),
                ));
                continue;
            }
        };
        let diff = replay_diff(&lr, &cr);
        let broken = diff.iter().filter(|d| breaks(d)).count();
        let outcome = if broken > 0 && allowed < Level::Major {
            Outcome::Fail
        } else {
            Outcome::Pass
        };
        let detail = format!(
            "live {}; candidate {}; {} differences, {broken} breaking{}",
            lr.brief(),
            cr.brief(),
            diff.len(),
            if outcome == Outcome::Fail {
                format!(
                    " under a {} bump (breaking needs a major)",
                    allowed.as_str()
                )
            } else {
                String::new()
            }
        );
        let mut row = CheckResult::new("COMPAT-REPLAY", PH, name, outcome, detail);
        row.diff = diff;
        log.push(row);
    }
    Ok(())
}

fn replay_diff(live: &HttpReply, candidate: &HttpReply) -> Vec<FieldDiff> {
    let mut diff = Vec::new();
    if live.status != candidate.status {
        diff.push(FieldDiff {
            path: "(HTTP status)".into(),
            change: "value".into(),
            live: Some(live.status.to_string()),
            candidate: Some(candidate.status.to_string()),
        });
    }
    json_diff(
        "",
        &live.json().unwrap_or(Value::Null),
        &candidate.json().unwrap_or(Value::Null),
        &mut diff,
    );
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bumps_read_semver_like_cargo() {
        let v = |s: &str| Version::parse(s).unwrap_or_else(|_| Version::new(0, 0, 0));
        assert_eq!(bump(&v("1.0.0"), &v("2.0.0")), Level::Major);
        assert_eq!(bump(&v("1.0.0"), &v("1.1.0")), Level::Minor);
        assert_eq!(bump(&v("1.0.0"), &v("1.0.1")), Level::Patch);
        assert_eq!(bump(&v("0.1.0"), &v("0.2.0")), Level::Major);
        assert_eq!(bump(&v("0.1.0"), &v("0.1.1")), Level::Minor);
    }

    #[test]
    fn a_removed_field_is_a_breaking_diff_and_ids_are_ignored() {
        let live = json!({"api_tran_id": "a", "rsp_code": "A0000", "res_list": [{"bank_name": "x", "bank_status": "Y"}]});
        let cand = json!({"api_tran_id": "b", "rsp_code": "A0000", "res_list": [{"bank_name": "x", "status": "Y"}]});
        let mut d = Vec::new();
        json_diff("", &live, &cand, &mut d);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].path, "res_list[0].bank_status");
        assert!(breaks(&d[0]));
        assert_eq!(d[1].change, "added");
        assert!(!breaks(&d[1]));
    }
}
