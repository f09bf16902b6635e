//! Robustness (generated malformed and boundary inputs: every answer a
//! well-formed error, never a trap) and the resource budget (a short load:
//! p99 latency and peak memory against the manifest's budget; runaway calls).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::answer;
use crate::bench::{Bench, send};
use crate::call::Call;
use crate::conformance::{Fate, fate, misfortune};
use crate::package::Package;
use crate::report::{CheckResult, Phase};
use crate::{Log, RunOptions};

const PH: Phase = Phase::Robustness;

/// Stop sending inputs after this many runaway calls: the verdict is clear.
const MAX_RUNAWAYS: usize = 3;

/// Generated inputs: a name and the call.
fn inputs(package: &Package, base: &Call) -> Vec<(String, Call)> {
    let manifest = &package.manifest;
    let mut out: Vec<(String, Call)> = Vec::new();
    let max_body = manifest.limits.max_body_kib as usize * 1024;
    let docs = manifest.docs.clone().unwrap_or_default();
    let top_fields: Vec<String> = docs
        .request
        .iter()
        .filter(|f| !f.name.contains('[') && base.field(&f.name).is_some())
        .map(|f| f.name.clone())
        .collect();
    let list_fields: Vec<(String, String)> = docs
        .request
        .iter()
        .filter_map(|f| {
            let (list, field) = f.name.split_once("[].")?;
            Some((list.to_owned(), field.to_owned()))
        })
        .collect();
    let long = "A".repeat(10_000);
    let unicode = "홍길동😀\u{202e}\u{0000}\u{feff}ｔｅｓｔ";

    let with = |name: String, f: &dyn Fn(&mut Call)| {
        let mut call = base.clone();
        f(&mut call);
        (name, call)
    };

    if base.uses_body() {
        let raw = |name: &str, bytes: Vec<u8>, ct: Option<&str>| {
            let mut call = base.clone();
            call.body = None;
            call.raw_body = Some(bytes);
            call.content_type = ct.map(str::to_owned);
            (name.to_owned(), call)
        };
        let json_ct = Some("application/json");
        out.push(raw("empty body", Vec::new(), json_ct));
        out.push(raw(
            "body is not JSON",
            b"{\"bank_tran_id\":".to_vec(),
            json_ct,
        ));
        out.push(raw("body is JSON null", b"null".to_vec(), json_ct));
        out.push(raw("body is a JSON array", b"[1,2,3]".to_vec(), json_ct));
        out.push(raw("body is a JSON string", b"\"x\"".to_vec(), json_ct));
        out.push(raw(
            "body is not UTF-8",
            vec![0x7b, 0xff, 0xfe, 0x00, 0x80, 0x7d],
            json_ct,
        ));
        out.push(raw(
            "deeply nested body",
            format!("{}{}", "[".repeat(4000), "]".repeat(4000)).into_bytes(),
            json_ct,
        ));
        let base_bytes = base.to_http().body;
        out.push(raw(
            "JSON body sent as text/plain",
            base_bytes,
            Some("text/plain"),
        ));
        for field in &top_fields {
            for (what, value) in [
                ("a number", json!(12345)),
                ("null", Value::Null),
                ("a boolean", json!(true)),
                ("a list", json!(["x"])),
                ("an object", json!({"x": "y"})),
                ("empty", json!("")),
                ("10,000 characters", json!(long)),
                ("unicode and control characters", json!(unicode)),
            ] {
                out.push(with(format!("{field} is {what}"), &|c: &mut Call| {
                    c.set_field(field, value.clone())
                }));
            }
        }
        let mut lists: Vec<&str> = list_fields.iter().map(|(l, _)| l.as_str()).collect();
        lists.dedup();
        for list in lists {
            for (what, value) in [
                ("an empty list", json!([])),
                ("an object", json!({})),
                ("a string", json!("x")),
                (
                    "a list of 1,000 empty objects",
                    Value::Array(vec![json!({}); 1000]),
                ),
            ] {
                out.push(with(format!("{list} is {what}"), &|c: &mut Call| {
                    c.set_field(list, value.clone())
                }));
            }
        }
        for (list, field) in &list_fields {
            for (what, value) in [
                ("a number", json!(12345)),
                ("null", Value::Null),
                ("unicode and control characters", json!(unicode)),
            ] {
                out.push(with(
                    format!("{list}[].{field} is {what}"),
                    &|c: &mut Call| c.set_list_field(list, field, value.clone()),
                ));
            }
        }
    } else {
        let mut bare = base.clone();
        bare.query.clear();
        out.push(("no query at all".into(), bare));
        for (name, raw) in [
            ("garbage query", "&&==&=&%"),
            ("broken percent-encoding", "bank_tran_id=%ZZ%&x=%"),
        ] {
            let mut call = base.clone();
            call.raw_query = Some(raw.into());
            out.push((name.into(), call));
        }
        for field in &top_fields {
            for (what, value) in [
                ("empty", ""),
                ("10,000 characters", long.as_str()),
                ("unicode and control characters", unicode),
                ("-1", "-1"),
            ] {
                out.push(with(format!("{field} is {what}"), &|c: &mut Call| {
                    c.set_field(field, Value::String(value.into()))
                }));
            }
            out.push(with(format!("{field} given twice"), &|c: &mut Call| {
                let v = c.field(field).unwrap_or_default();
                c.query.push((field.clone(), format!("{v}9")));
            }));
        }
    }

    // Amounts: negative, zero, huge, fractional, full-width digits, a float.
    let amounts: Vec<(Option<String>, String)> = docs
        .request
        .iter()
        .filter(|f| f.name.ends_with("_amt"))
        .map(|f| match f.name.split_once("[].") {
            Some((list, field)) => (Some(list.to_owned()), field.to_owned()),
            None => (None, f.name.clone()),
        })
        .collect();
    for (list, field) in &amounts {
        for (what, value) in [
            ("negative", json!("-1")),
            ("zero", json!("0")),
            ("huge", json!("99999999999999999999999999")),
            ("fractional", json!("1.5")),
            ("full-width digits", json!("１０００")),
            ("a float number", json!(1e30)),
        ] {
            let name = match list {
                Some(l) => format!("{l}[].{field} {what}"),
                None => format!("{field} {what}"),
            };
            out.push(with(name, &|c: &mut Call| match list {
                Some(l) => c.set_list_field(l, field, value.clone()),
                None => c.set_field(field, value.clone()),
            }));
        }
    }

    // Body sizes: just under the API's cap, and over it (the gateway's 413).
    let pad = |size: usize| {
        let mut call = base.clone();
        let filler = "x".repeat(size.saturating_sub(64));
        match &mut call.body {
            Some(Value::Object(map)) => {
                map.insert("zz_padding".into(), Value::String(filler));
            }
            _ => {
                call.raw_body = Some(format!("{{\"zz_padding\":\"{filler}\"}}").into_bytes());
                call.content_type = Some("application/json".into());
            }
        }
        call
    };
    out.push(("body just under the size cap".into(), pad(max_body - 512)));
    out.push(("body over the size cap".into(), pad(max_body + 1024)));
    out
}

/// Runs the robustness phase.
pub(crate) async fn run(bench: &Bench, candidate: usize, package: &Package, log: &mut Log) {
    let Some(served) = bench.served(candidate) else {
        return;
    };
    let mut base =
        Call::example(&package.manifest).unwrap_or_else(|| Call::on_route(&package.manifest));
    base.refresh_tran_ids(bench);
    let inputs = inputs(package, &base);
    let total = inputs.len();
    let (mut faults, mut envelope, mut statuses) = (Vec::new(), Vec::new(), Vec::new());
    let mut runaways = 0;
    let mut sent = 0;
    for (name, mut call) in inputs {
        if runaways >= MAX_RUNAWAYS {
            break;
        }
        call.refresh_tran_ids(bench);
        sent += 1;
        let reply = match fate(served, &call).await {
            Fate::Answered(reply) => {
                if reply.status != 200 {
                    statuses.push(format!("{name}: the plugin answered {}", reply.brief()));
                }
                reply
            }
            Fate::Gateway(reply) => reply,
            Fate::Runaway(reply) => {
                runaways += 1;
                if let Some(c) = misfortune(
                    PH,
                    "RES-RUNAWAY",
                    &format!("input: {name}"),
                    &call,
                    Fate::Runaway(reply),
                    served,
                ) {
                    log.push(c);
                }
                continue;
            }
            Fate::Fault(label, reply) => {
                faults.push(format!("{name}: {label} ({})", reply.brief()));
                continue;
            }
            Fate::NoAnswer(e) => {
                faults.push(format!("{name}: no answer ({e})"));
                continue;
            }
        };
        for p in answer::envelope_problems(&reply) {
            envelope.push(format!("{name}: {p}"));
        }
    }
    let summary = |problems: Vec<String>, ok: String| {
        if problems.is_empty() {
            (true, ok)
        } else {
            let n = problems.len();
            let mut shown: Vec<String> = problems.into_iter().take(12).collect();
            if n > shown.len() {
                shown.push(format!("… and {} more", n - shown.len()));
            }
            (false, format!("{n} of {sent} inputs: {}", shown.join("; ")))
        }
    };
    let stopped = if sent < total {
        format!(" (stopped after {sent} of {total}: the plugin runs away)")
    } else {
        String::new()
    };
    let (ok, detail) = summary(
        faults,
        format!("{sent} malformed and boundary inputs, no trap or 5xx from the plugin{stopped}"),
    );
    log.push(CheckResult::new(
        "ROB-NO-FAULT",
        PH,
        "malformed inputs: no plugin fault",
        if ok {
            crate::Outcome::Pass
        } else {
            crate::Outcome::Fail
        },
        detail,
    ));
    let (ok, detail) = summary(
        envelope,
        format!("{sent} answers are well-formed envelopes"),
    );
    log.push(CheckResult::new(
        "ROB-ENVELOPE",
        PH,
        "malformed inputs: error envelopes",
        if ok {
            crate::Outcome::Pass
        } else {
            crate::Outcome::Fail
        },
        detail,
    ));
    if !statuses.is_empty() {
        let (_, detail) = summary(statuses, String::new());
        log.push(CheckResult::fail(
            "CONF-BIZ-200",
            PH,
            "malformed inputs: HTTP 200 for business failures",
            detail,
        ));
    }
}

/// Runs the resource budget phase: a short load, peak memory, runaways.
pub(crate) async fn budget(
    bench: &Bench,
    candidate: usize,
    package: &Package,
    options: &RunOptions,
    log: &mut Log,
) {
    let Some(served) = bench.served(candidate) else {
        return;
    };
    let manifest = &package.manifest;
    let ph = Phase::Budget;
    let p99_budget = manifest
        .budget
        .and_then(|b| b.p99_ms)
        // Undeclared, the call's own wall-clock limit is the bound: a
        // latency the package never promised is measured and reported, not
        // judged against a number a loaded machine can miss.
        .unwrap_or(manifest.limits.timeout_ms);
    let memory_budget = manifest
        .budget
        .and_then(|b| b.memory_mib)
        .unwrap_or(manifest.limits.memory_mib);

    if log.failed("RES-RUNAWAY") {
        log.push(CheckResult::skip(
            "RES-LATENCY",
            ph,
            "p99 latency under load",
            "calls already ran into the CPU deadline",
        ));
    } else {
        let mut base = Call::example(manifest).unwrap_or_else(|| Call::on_route(manifest));
        base.refresh_tran_ids(bench);
        let limit = Duration::from_millis(u64::from(manifest.limits.timeout_ms) + 5_000);
        let deadline = Instant::now() + options.load_time;
        let per_worker = options
            .load_requests
            .div_ceil(options.load_concurrency.max(1));
        let calls: Vec<Vec<crate::bench::HttpRequest>> = (0..options.load_concurrency.max(1))
            .map(|_| {
                (0..per_worker)
                    .map(|_| {
                        let mut c = base.clone();
                        c.refresh_tran_ids(bench);
                        c.to_http()
                    })
                    .collect()
            })
            .collect();
        let addr = served.addr;
        let started = Instant::now();
        let mut workers = Vec::new();
        for batch in calls {
            workers.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for req in batch {
                    if Instant::now() >= deadline {
                        break;
                    }
                    out.push(send(addr, &req, limit).await);
                }
                out
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = Vec::new();
        for w in workers {
            for r in w.await.unwrap_or_default() {
                match r {
                    Ok(reply) => {
                        if reply.status >= 500 {
                            errors.push(reply.brief());
                        }
                        latencies.push(reply.elapsed);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        let wall = started.elapsed();
        latencies.sort();
        let n = latencies.len();
        let at = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
            latencies.get(i).copied().unwrap_or_default()
        };
        let (p50, p99) = (at(0.50), at(0.99));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let detail = format!(
            "{n} calls in {:.0} ms by {} callers: p50 {:.1} ms, p99 {:.1} ms (budget {p99_budget} ms){}",
            ms(wall),
            options.load_concurrency,
            ms(p50),
            ms(p99),
            if errors.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} calls failed (judged by ROB-NO-FAULT and RES-RUNAWAY), first: {}",
                    errors.len(),
                    errors.first().cloned().unwrap_or_default()
                )
            }
        );
        let within = n > 0 && p99 <= Duration::from_millis(u64::from(p99_budget));
        log.push(if within {
            CheckResult::pass("RES-LATENCY", ph, "p99 latency under load", detail)
        } else {
            CheckResult::fail("RES-LATENCY", ph, "p99 latency under load", detail)
        });
    }

    let peak = served.api.peak_memory_bytes();
    let detail = format!(
        "peak linear memory {:.2} MiB of one instance (budget {memory_budget} MiB)",
        peak as f64 / f64::from(1u32 << 20)
    );
    log.push(if peak <= u64::from(memory_budget) << 20 {
        CheckResult::pass("RES-MEMORY", ph, "peak memory", detail)
    } else {
        CheckResult::fail("RES-MEMORY", ph, "peak memory", detail)
    });

    let runaways = served.runaways();
    log.push(if runaways == 0 {
        CheckResult::pass(
            "RES-RUNAWAY",
            ph,
            "no runaway calls",
            format!(
                "no call ran into the CPU deadline ({} ms) in the whole run",
                manifest.limits.cpu_ms
            ),
        )
    } else {
        CheckResult::fail(
            "RES-RUNAWAY",
            ph,
            "no runaway calls",
            format!(
                "{runaways} calls ran into the CPU deadline ({} ms) or the wall clock: a busy loop",
                manifest.limits.cpu_ms
            ),
        )
    });
}
