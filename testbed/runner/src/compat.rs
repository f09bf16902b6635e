//! Compatibility with the live version: the documented contract's diff
//! checked against the semver bump, and a replay of the live version's
//! example and cases against both versions with a field-level diff.

use semver::Version;
use serde_json::Value;
use sfop_core::contract::{Bump, Change, diff};

use crate::answer::json_type;
use crate::bench::{Bench, HttpReply, send};
use crate::call::Call;
use crate::cases::Case;
use crate::package::Package;
use crate::report::{CheckResult, FieldDiff, Outcome, Phase};
use crate::{Log, TestbedError};

const PH: Phase = Phase::Compatibility;

/// The step from the live version to the candidate; an equal or lower
/// version (refused by `COMPAT-VERSION`) counts as a patch.
fn bump(live: &Version, candidate: &Version) -> Bump {
    Bump::between(live, candidate).unwrap_or(Bump::Patch)
}

/// The documented contract's changes (`sfop_core::contract`, the one
/// definition the management center and the portal use too), as report rows.
fn contract_rows(changes: &[Change]) -> Vec<FieldDiff> {
    changes
        .iter()
        .map(|c| FieldDiff {
            path: c.subject.clone(),
            change: format!("{} ({} change)", c.kind.label(), c.needs),
            live: c.before.clone(),
            candidate: c.after.clone(),
        })
        .collect()
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

    let changes = diff(lm, cm);
    let needed = Bump::required(&changes);
    let breaking: Vec<String> = changes
        .iter()
        .filter(|c| c.is_breaking())
        .map(ToString::to_string)
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
    row.diff = contract_rows(&changes);
    log.push(row);

    // Replay the live version's requests against both.
    let live_api = match bench.load(live) {
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
    for case in crate::package::cases(live).unwrap_or_default().cases {
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
        let outcome = if broken > 0 && allowed < Bump::Major {
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
        assert_eq!(bump(&v("1.0.0"), &v("2.0.0")), Bump::Major);
        assert_eq!(bump(&v("1.0.0"), &v("1.1.0")), Bump::Minor);
        assert_eq!(bump(&v("1.0.0"), &v("1.0.1")), Bump::Patch);
        assert_eq!(bump(&v("0.1.0"), &v("0.2.0")), Bump::Major);
        assert_eq!(bump(&v("0.1.0"), &v("0.1.1")), Bump::Minor);
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
