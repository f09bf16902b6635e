//! Conformance: the package's own cases and the documented example, plus
//! the platform-wide cases its kind implies (format errors, `bank_tran_id`
//! rules, consents, outages), each through the real gateway; then every
//! answer is held to the common envelope, the documented fields and digit
//! strings.

use std::time::Duration;

use serde_json::Value;
use sfop_core::ledger::{ResultQuery, TransferKind};
use sfop_core::{BankCall, Claims, FieldRef, Outcome};
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, USERS};

use crate::Log;
use crate::answer;
use crate::bench::{Bench, HttpReply, Served, send};
use crate::call::Call;
use crate::cases::{Expect, lookup};
use crate::faults::{FaultKind, FaultRule};
use crate::package::Package;
use crate::report::{CheckResult, Phase};

const PH: Phase = Phase::Conformance;

/// How one call ended, from the gateway's counters around it.
pub(crate) enum Fate {
    /// The plugin answered (any status it chose).
    Answered(HttpReply),
    /// The gateway answered for the plugin: trap, memory, bad response.
    Fault(String, HttpReply),
    /// The call ran into the CPU deadline or the wall clock.
    Runaway(HttpReply),
    /// The gateway refused before the plugin ran (body too large, ...).
    Gateway(HttpReply),
    /// No HTTP answer at all.
    NoAnswer(String),
}

/// The plugin's faults, told apart from runaways (sfop_core::Outcome).
const FAULTS: &[Outcome] = &[
    Outcome::Trap,
    Outcome::Memory,
    Outcome::BadResponse,
    Outcome::Overloaded,
];
const RUNAWAYS: &[Outcome] = &[Outcome::Deadline, Outcome::Timeout];

/// Sends one call and tells how it ended. Calls must not overlap on the
/// same API for the attribution to hold.
pub(crate) async fn fate(served: &Served, call: &Call) -> Fate {
    let limit = Duration::from_millis(u64::from(served.api.manifest().limits.timeout_ms) + 5_000);
    let before = outcomes(served);
    let reply = match send(served.addr, &call.to_http(), limit).await {
        Ok(r) => r,
        Err(e) => return Fate::NoAnswer(e),
    };
    let after = outcomes(served);
    let grew = |outcome: Outcome| after[outcome.index()] > before[outcome.index()];
    if RUNAWAYS.iter().any(|o| grew(*o)) {
        Fate::Runaway(reply)
    } else if let Some(fault) = FAULTS.iter().find(|o| grew(**o)) {
        Fate::Fault(fault.as_str().to_owned(), reply)
    } else if grew(Outcome::Ok) || grew(Outcome::ServerError) {
        // The plugin answered (a 5xx answer is its own, counted apart).
        Fate::Answered(reply)
    } else {
        Fate::Gateway(reply)
    }
}

fn outcomes(served: &Served) -> Vec<u64> {
    let m = served.api.manifest();
    let stats = served
        .gateway
        .metrics()
        .api(&m.name, &m.version.to_string());
    Outcome::ALL.iter().map(|o| stats.outcome(*o)).collect()
}

/// Runs the conformance phase.
pub(crate) async fn run(
    bench: &Bench,
    candidate: usize,
    package: &Package,
    ledger_functions: &std::collections::BTreeSet<String>,
    log: &mut Log,
) {
    let touches_banks = ledger_functions
        .iter()
        .any(|f| crate::statics::BANK_FUNCTIONS.contains(&f.as_str()));
    let Some(served) = bench.served(candidate) else {
        return;
    };
    let manifest = &package.manifest;
    let mut prober = Prober {
        served,
        answers: Vec::new(),
    };

    // The documented example, which is also the base of derived cases.
    let base = match Call::example(manifest) {
        Some(mut call) => {
            call.refresh_tran_ids(bench);
            let expected = manifest
                .docs
                .as_ref()
                .and_then(|d| d.example.as_ref())
                .and_then(|e| serde_json::from_str::<Value>(&e.response).ok())
                .and_then(|v| v.get("rsp_code")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "A0000".into());
            let expect = Expect {
                rsp_code: Some(expected),
                ..Expect::default()
            };
            prober
                .probe(
                    log,
                    "CONF-CASE",
                    "documented example",
                    &call,
                    &expect,
                    false,
                )
                .await;
            call
        }
        None => {
            log.push(CheckResult::skip(
                "CONF-CASE",
                PH,
                "documented example",
                "the manifest has no [docs.example]",
            ));
            Call::on_route(manifest)
        }
    };

    // The package's own cases.
    for case in crate::package::cases(package).unwrap_or_default().cases {
        let call = Call::from_case(manifest, &case, bench);
        for rule in &case.faults {
            let _ = bench.faults.add(rule.clone());
        }
        if let Err(e) = bench.set_banks(&case.banks_down, false) {
            log.push(CheckResult::fail(
                "CONF-CASE",
                PH,
                format!("case: {}", case.name),
                e,
            ));
            continue;
        }
        prober
            .probe(
                log,
                "CONF-CASE",
                &format!("case: {}", case.name),
                &call,
                &case.expect,
                case.send_twice,
            )
            .await;
        let _ = bench.set_banks(&case.banks_down, true);
        bench.faults.clear();
    }

    // Business failures are HTTP 200: each required field left out.
    let docs = manifest.docs.clone().unwrap_or_default();
    let required: Vec<&str> = docs
        .request
        .iter()
        .filter(|f| f.required && !f.name.contains('[') && base.field(&f.name).is_some())
        .map(|f| f.name.as_str())
        .take(8)
        .collect();
    if required.is_empty() {
        log.push(CheckResult::skip(
            "CONF-BIZ-200",
            PH,
            "required field missing",
            "the API documents no required top-level request field",
        ));
    }
    for field in required {
        let mut call = base.clone();
        call.refresh_tran_ids(bench);
        call.remove_field(field);
        let expect = Expect {
            rsp_code: Some("A0004".into()),
            ..Expect::default()
        };
        prober
            .probe(
                log,
                "CONF-BIZ-200",
                &format!("required field {field} missing"),
                &call,
                &expect,
                false,
            )
            .await;
    }

    // bank_tran_id: another institution's prefix, and a repeat.
    let in_list = docs
        .request
        .iter()
        .find_map(|f| f.name.strip_suffix("[].bank_tran_id"));
    let top_level = base.field("bank_tran_id").is_some();
    if top_level || in_list.is_some() {
        let mut foreign = base.clone();
        foreign.refresh_tran_ids(bench);
        let other = Value::String(format!("M999999999U{:09}", 1));
        match in_list {
            Some(list) if !top_level => foreign.set_list_field(list, "bank_tran_id", other),
            _ => foreign.set_field("bank_tran_id", other),
        }
        let expect = |code: &str| Expect {
            rsp_code: Some(code.into()),
            ..Expect::default()
        };
        prober
            .probe(
                log,
                "CONF-TRAN-ID",
                "bank_tran_id of another institution",
                &foreign,
                &expect("A0004"),
                false,
            )
            .await;
        if touches_banks {
            let mut repeat = base.clone();
            repeat.refresh_tran_ids(bench);
            prober
                .probe(
                    log,
                    "CONF-TRAN-ID",
                    "bank_tran_id repeated",
                    &repeat,
                    &expect("A0326"),
                    true,
                )
                .await;
        } else {
            log.push(CheckResult::skip(
                "CONF-TRAN-ID",
                PH,
                "bank_tran_id repeated",
                "the API reaches no participant bank, where a repeat is decided",
            ));
        }
    } else {
        log.push(CheckResult::skip(
            "CONF-TRAN-ID",
            PH,
            "bank_tran_id rules",
            "the API takes no bank_tran_id",
        ));
    }

    // Consents: another user's account; an account without transfer consent.
    match (&manifest.access.account, base.persona.as_str()) {
        (Some(reference), persona) if persona != "institution" && persona != "none" => {
            let targets = consent_targets(bench, persona, &manifest.scope);
            for (name, number, code) in targets {
                let mut call = base.clone();
                call.refresh_tran_ids(bench);
                set_reference(&mut call, reference, &number);
                let expect = Expect {
                    rsp_code: Some(code.into()),
                    ..Expect::default()
                };
                prober
                    .probe(log, "CONF-CONSENT", &name, &call, &expect, false)
                    .await;
            }
        }
        _ => log.push(CheckResult::skip(
            "CONF-CONSENT",
            PH,
            "account consents",
            "the API names no user account (manifest [access] account)",
        )),
    }

    // A bank outage, where the API calls a participant bank.
    if touches_banks {
        let all: Vec<String> = sfop_vbank::SEED_BANKS
            .iter()
            .map(|(code, _)| (*code).to_owned())
            .collect();
        let mut call = base.clone();
        call.refresh_tran_ids(bench);
        match bench.set_banks(&all, false) {
            Ok(()) => {
                let expect = Expect {
                    rsp_code: Some("A0017".into()),
                    ..Expect::default()
                };
                prober
                    .probe(
                        log,
                        "CONF-OUTAGE",
                        "participant banks down",
                        &call,
                        &expect,
                        false,
                    )
                    .await;
            }
            Err(e) => log.push(CheckResult::fail(
                "CONF-OUTAGE",
                PH,
                "participant banks down",
                e,
            )),
        }
        let _ = bench.set_banks(&all, true);
        for (function, kind) in [
            ("withdraw", TransferKind::Withdraw),
            ("deposit", TransferKind::Deposit),
        ] {
            if ledger_functions.contains(function) {
                lost_answer(bench, &mut prober, &base, function, kind, log).await;
            }
        }
    } else {
        log.push(CheckResult::skip(
            "CONF-OUTAGE",
            PH,
            "participant banks down",
            "the API imports no ledger function that reaches a participant bank",
        ));
    }

    paging(bench, &mut prober, &base, &docs, log).await;

    judge_answers(package, &prober.answers, log);
}

/// Most pages a paging walk follows.
const MAX_PAGES: usize = 20;

/// Paging, for APIs that document `next_page_yn` and the cursor
/// `befor_inquiry_trace_info`: follow the cursor from the example's first
/// page to the last; every `Y` page carries a cursor, no item repeats, and
/// the items add up to `total_record_cnt` when the API documents it.
async fn paging(
    bench: &Bench,
    prober: &mut Prober<'_>,
    base: &Call,
    docs: &sfop_core::Docs,
    log: &mut Log,
) {
    const CURSOR: &str = "befor_inquiry_trace_info";
    let documents =
        |list: &[sfop_core::manifest::FieldDoc], name: &str| list.iter().any(|f| f.name == name);
    if !(documents(&docs.response, "next_page_yn")
        && documents(&docs.response, CURSOR)
        && documents(&docs.request, CURSOR))
    {
        log.push(CheckResult::skip(
            "CONF-PAGING",
            PH,
            "paging",
            "the API documents no next_page_yn / befor_inquiry_trace_info paging",
        ));
        return;
    }
    let mut call = base.clone();
    let mut seen: Vec<String> = Vec::new();
    let mut total: Option<String> = None;
    let mut problems = Vec::new();
    let mut pages = 0;
    loop {
        call.refresh_tran_ids(bench);
        pages += 1;
        let name = format!("paging: page {pages}");
        let reply = match fate(prober.served, &call).await {
            Fate::Answered(reply) => reply,
            other => {
                if let Some(c) = misfortune(PH, "CONF-PAGING", &name, &call, other, prober.served) {
                    log.push(c);
                }
                return;
            }
        };
        prober.answers.push((name, reply.clone()));
        let body = reply.json().unwrap_or(Value::Null);
        if body.get("rsp_code").and_then(Value::as_str) != Some("A0000") {
            if pages == 1 {
                log.push(CheckResult::skip(
                    "CONF-PAGING",
                    PH,
                    "paging",
                    format!("the example's first page answered {}", reply.brief()),
                ));
            } else {
                problems.push(format!("page {pages} answered {}", reply.brief()));
            }
            break;
        }
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(t) = text("total_record_cnt") {
            if total.as_ref().is_some_and(|prev| *prev != t) {
                problems.push(format!("total_record_cnt changed between pages to {t}"));
            }
            total = Some(t);
        }
        let items = body
            .get("res_list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(n) = text("page_record_cnt")
            && n != items.len().to_string()
        {
            problems.push(format!(
                "page {pages}: page_record_cnt {n} but {} items",
                items.len()
            ));
        }
        for item in items {
            let key = item.to_string();
            if seen.contains(&key) {
                problems.push(format!("page {pages} repeats an item of an earlier page"));
                break;
            }
            seen.push(key);
        }
        match (text("next_page_yn").as_deref(), text(CURSOR)) {
            (Some("N"), _) => break,
            (Some("Y"), Some(cursor)) if !cursor.is_empty() => {
                if pages >= MAX_PAGES {
                    problems.push(format!("still next_page_yn Y after {MAX_PAGES} pages"));
                    break;
                }
                call.set_field(CURSOR, Value::String(cursor));
            }
            (Some("Y"), _) => {
                problems.push(format!("page {pages}: next_page_yn Y without a cursor"));
                break;
            }
            (other, _) => {
                problems.push(format!(
                    "page {pages}: next_page_yn is {other:?}, not Y or N"
                ));
                break;
            }
        }
    }
    if let Some(t) = &total
        && problems.is_empty()
        && *t != seen.len().to_string()
    {
        problems.push(format!(
            "total_record_cnt {t}, but the pages held {} items",
            seen.len()
        ));
    }
    if log.checks.iter().any(|c| c.rule == "CONF-PAGING") {
        return; // skipped or a misfortune already reported
    }
    log.push(if problems.is_empty() {
        CheckResult::pass(
            "CONF-PAGING",
            PH,
            "paging",
            format!("{pages} pages, {} items, none repeated", seen.len()),
        )
    } else {
        CheckResult::fail("CONF-PAGING", PH, "paging", problems.join("; "))
    });
}

/// A transfer the bank booked but whose answer was lost (a scripted
/// `timeout`): the plugin must answer `A0017` with the request's
/// `bank_tran_id`, and the transfer must be found by `transfer-result`
/// under that id, so the client can reconcile.
async fn lost_answer(
    bench: &Bench,
    prober: &mut Prober<'_>,
    base: &Call,
    function: &str,
    kind: TransferKind,
    log: &mut Log,
) {
    let name = format!("{function} booked but its answer lost");
    let mut call = base.clone();
    call.refresh_tran_ids(bench);
    let (Some(id), Some(amount)) = (call.tran_id(), call.amount()) else {
        log.push(CheckResult::skip(
            "CONF-OUTAGE",
            PH,
            name,
            "the documented example names no bank_tran_id and tran_amt",
        ));
        return;
    };
    let _ = bench.faults.add(FaultRule {
        client_id: None,
        operation: Some(function.into()),
        fault: FaultKind::Timeout,
        bank_code: None,
        rsp_code: None,
        bank_rsp_code: None,
        rsp_message: None,
        fixture: None,
        times: Some(1),
    });
    let fate = fate(prober.served, &call).await;
    bench.faults.clear();
    let reply = match fate {
        Fate::Answered(reply) => reply,
        other => {
            if let Some(c) = misfortune(PH, "CONF-OUTAGE", &name, &call, other, prober.served) {
                log.push(c);
            }
            return;
        }
    };
    let expect = Expect {
        rsp_code: Some("A0017".into()),
        fields: std::collections::BTreeMap::from([("bank_tran_id".to_owned(), id.clone())]),
        ..Expect::default()
    };
    let judged = judge("CONF-OUTAGE", &name, &call, &reply, &expect);
    prober.answers.push((name.clone(), reply));
    if judged.outcome != crate::Outcome::Pass {
        log.push(judged);
        return;
    }
    let institution = Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: None,
        scopes: vec!["oob".into()],
        fintech_use_nums: Vec::new(),
    };
    let now = sfop_core::time::now_millis();
    let date = sfop_core::time::format_dtm(now, sfop_core::time::KST_OFFSET_MINUTES);
    let found = bench.bank.transfer_result(
        &BankCall {
            caller: Some(&institution),
            now_millis: now,
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        },
        &[ResultQuery {
            kind,
            org_bank_tran_id: id.clone(),
            org_bank_tran_date: date.get(..8).unwrap_or_default().into(),
            org_tran_amt: amount,
        }],
    );
    log.push(match found.as_deref() {
        Ok([Ok(_)]) => CheckResult::pass(
            "CONF-OUTAGE",
            PH,
            name,
            format!("A0017 with bank_tran_id {id}; transfer-result finds the booked transfer"),
        ),
        other => CheckResult::fail(
            "CONF-OUTAGE",
            PH,
            name,
            format!(
                "A0017 with bank_tran_id {id}, but transfer-result does not find it \
                 (the plugin asked the bank under another id?): {other:?}"
            ),
        ),
    });
}

/// Accounts to try for consent refusals, with the code each must get.
fn consent_targets(
    bench: &Bench,
    persona: &str,
    scope: &str,
) -> Vec<(String, String, &'static str)> {
    let now = sfop_core::time::now_millis();
    let Some(me) = USERS.iter().find(|u| u.login_id == persona) else {
        return Vec::new();
    };
    let mut targets = Vec::new();
    if let Some(other) = USERS.iter().find(|u| u.login_id != persona)
        && let Ok(nums) = bench
            .bank
            .fintech_use_nums(other.user_seq_no, DEMO_CLIENT_ID, now)
        && let Some(num) = nums.into_iter().next()
    {
        targets.push((
            format!("another user's account ({})", other.login_id),
            num,
            "A0304",
        ));
    }
    if scope == "transfer" {
        let claims = Claims {
            client_id: DEMO_CLIENT_ID.into(),
            client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
            user_seq_no: Some(me.user_seq_no.into()),
            scopes: vec!["login".into()],
            fintech_use_nums: Vec::new(),
        };
        let call = BankCall {
            caller: Some(&claims),
            now_millis: now,
            utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
        };
        if let Ok(accounts) = bench.bank.registered_accounts(&call, me.user_seq_no, false)
            && let Some(a) = accounts
                .into_iter()
                .find(|a| a.transfer_agree_dtime.is_none() && !a.cancelled)
        {
            targets.push((
                "own account without transfer consent".into(),
                a.fintech_use_num,
                "A0306",
            ));
        }
    }
    targets
}

/// Puts `value` where a manifest field reference points.
fn set_reference(call: &mut Call, reference: &str, value: &str) {
    match FieldRef::parse(reference) {
        Some(FieldRef::Query(name) | FieldRef::Body(name)) => {
            call.set_field(name, Value::String(value.into()));
        }
        Some(FieldRef::BodyList { list, field }) => {
            call.set_list_field(list, field, Value::String(value.into()));
        }
        None => {}
    }
}

/// Sends probes and judges them, keeping every plugin answer.
struct Prober<'a> {
    served: &'a Served,
    answers: Vec<(String, HttpReply)>,
}

impl Prober<'_> {
    async fn probe(
        &mut self,
        log: &mut Log,
        rule: &str,
        name: &str,
        call: &Call,
        expect: &Expect,
        twice: bool,
    ) {
        if twice {
            match fate(self.served, call).await {
                Fate::Answered(reply) => self.answers.push((name.to_owned(), reply)),
                other => {
                    if let Some(c) = misfortune(PH, rule, name, call, other, self.served) {
                        log.push(c);
                    }
                    return;
                }
            }
        }
        match fate(self.served, call).await {
            Fate::Answered(reply) => {
                log.push(judge(rule, name, call, &reply, expect));
                self.answers.push((name.to_owned(), reply));
            }
            other => {
                if let Some(c) = misfortune(PH, rule, name, call, other, self.served) {
                    log.push(c);
                }
            }
        }
    }
}

/// The check for a call the plugin did not answer itself.
pub(crate) fn misfortune(
    phase: Phase,
    rule: &str,
    name: &str,
    call: &Call,
    fate: Fate,
    served: &Served,
) -> Option<CheckResult> {
    let cpu_ms = served.api.manifest().limits.cpu_ms;
    Some(match fate {
        Fate::Answered(_) => return None,
        Fate::Runaway(reply) => CheckResult::fail(
            "RES-RUNAWAY",
            phase,
            name,
            format!(
                "ran into the CPU deadline ({cpu_ms} ms) or the wall clock: {} for {}",
                reply.brief(),
                call.describe()
            ),
        ),
        Fate::Fault(label, reply) => CheckResult::fail(
            "ROB-NO-FAULT",
            phase,
            name,
            format!(
                "the plugin failed ({label}): {} for {}",
                reply.brief(),
                call.describe()
            ),
        ),
        Fate::Gateway(reply) => CheckResult::fail(
            rule,
            phase,
            name,
            format!(
                "the gateway refused the call: {} for {}",
                reply.brief(),
                call.describe()
            ),
        ),
        Fate::NoAnswer(e) => CheckResult::fail(rule, phase, name, format!("no answer: {e}")),
    })
}

/// Judges a plugin's answer against what was expected.
fn judge(rule: &str, name: &str, call: &Call, reply: &HttpReply, expect: &Expect) -> CheckResult {
    let fail = |r: &str, why: String| {
        CheckResult::fail(r, PH, name, format!("{why}; request: {}", call.describe()))
    };
    let business_failure =
        expect.status == 200 && expect.rsp_code.as_deref().is_some_and(|c| c != "A0000");
    if business_failure && reply.status != 200 {
        return fail(
            "CONF-BIZ-200",
            format!(
                "a business failure ({}) must be HTTP 200, got {}",
                expect.rsp_code.as_deref().unwrap_or_default(),
                reply.brief()
            ),
        );
    }
    if reply.status != expect.status {
        return fail(
            rule,
            format!("expected HTTP {}, got {}", expect.status, reply.brief()),
        );
    }
    let body = reply.json().unwrap_or(Value::Null);
    if let Some(code) = &expect.rsp_code
        && body.get("rsp_code").and_then(Value::as_str) != Some(code.as_str())
    {
        return fail(
            rule,
            format!("expected rsp_code {code}, got {}", reply.brief()),
        );
    }
    let mut problems = Vec::new();
    for (path, want) in &expect.fields {
        match lookup(&body, path) {
            Some(Value::String(s)) if s == want => {}
            Some(other) => problems.push(format!("{path} is {other}, expected {want:?}")),
            None => problems.push(format!("{path} is missing, expected {want:?}")),
        }
    }
    for path in &expect.present {
        if lookup(&body, path).is_none() {
            problems.push(format!("{path} is missing"));
        }
    }
    for path in &expect.absent {
        if lookup(&body, path).is_some() {
            problems.push(format!("{path} should be absent"));
        }
    }
    if let Some(text) = &expect.message_contains {
        let message = body
            .get("rsp_message")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !message.contains(text.as_str()) {
            problems.push(format!("rsp_message {message:?} does not contain {text:?}"));
        }
    }
    if problems.is_empty() {
        CheckResult::pass(rule, PH, name, reply.brief())
    } else {
        fail(rule, problems.join("; "))
    }
}

/// The envelope, documented fields and digit strings of every answer.
fn judge_answers(package: &Package, answers: &[(String, HttpReply)], log: &mut Log) {
    let docs = package.manifest.docs.as_ref();
    let mut envelope = Vec::new();
    let mut fields = Vec::new();
    let mut amounts = Vec::new();
    let mut successes = 0;
    for (name, reply) in answers {
        for p in answer::envelope_problems(reply) {
            envelope.push(format!("{name}: {p}"));
        }
        let Some(Value::Object(body)) = reply.json() else {
            continue;
        };
        if reply.status != 200 || body.get("rsp_code").and_then(Value::as_str) != Some("A0000") {
            continue;
        }
        successes += 1;
        if let Some(d) = docs.filter(|d| !d.response.is_empty()) {
            for p in answer::field_problems(d, &body) {
                fields.push(format!("{name}: {p}"));
            }
        }
        for p in answer::amount_problems(docs, &body) {
            amounts.push(format!("{name}: {p}"));
        }
    }
    let row = |rule: &str, what: &str, problems: Vec<String>, checked: usize| {
        if problems.is_empty() {
            CheckResult::pass(rule, PH, what, format!("{checked} answers checked"))
        } else {
            let n = problems.len();
            let mut shown: Vec<String> = problems.into_iter().take(12).collect();
            if n > shown.len() {
                shown.push(format!("… and {} more", n - shown.len()));
            }
            CheckResult::fail(rule, PH, what, shown.join("; "))
        }
    };
    log.push(row(
        "CONF-ENVELOPE",
        "common header on every answer",
        envelope,
        answers.len(),
    ));
    if successes == 0 {
        log.push(CheckResult::skip(
            "CONF-FIELDS",
            PH,
            "documented response fields",
            "no success answer to check",
        ));
    } else if docs.is_none_or(|d| d.response.is_empty()) {
        log.push(CheckResult::skip(
            "CONF-FIELDS",
            PH,
            "documented response fields",
            "the manifest documents no response fields",
        ));
    } else {
        log.push(row(
            "CONF-FIELDS",
            "documented response fields",
            fields,
            successes,
        ));
    }
    log.push(row(
        "CONF-AMOUNTS",
        "amounts and counts as digit strings",
        amounts,
        successes,
    ));
}
