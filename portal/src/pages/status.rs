//! `/portal/status`: whether the sandbox's participant banks answer, every
//! API's served versions (live, canary, deprecated with its sunset), and
//! the incidents in force: banks the operator switched off and the
//! sandbox's scripted outages and timeouts (`testbed/README.md`), for every
//! app, and for the signed-in developer's own apps.

use maud::html;

use super::*;

/// Faults that make a bank look down to the caller.
fn is_incident(rule: &Value) -> bool {
    matches!(rule["fault"].as_str(), Some("outage" | "timeout" | "hang"))
}

/// Whether `rule` concerns bank `code` (a rule naming no bank concerns all).
fn names_bank(rule: &Value, code: &str) -> bool {
    rule["bank_code"].as_str().is_none_or(|b| b == code)
}

fn rule_text(rule: &Value) -> String {
    let fault = rule["fault"].as_str().unwrap_or("fault");
    let what = match fault {
        "outage" => "Outage: the bank is not reached (A0017), nothing happens",
        "timeout" => {
            "Timeout: the bank books the call but its answer is lost (A0017; find it with transfer result)"
        }
        "hang" => {
            "Hang: the bank never answers; the call ends at the API's deadline (A0017), nothing happens"
        }
        _ => "Fault",
    };
    let bank = rule["bank_code"]
        .as_str()
        .map_or("every bank".to_owned(), |b| format!("bank {b}"));
    let operation = rule["operation"]
        .as_str()
        .map_or("every operation".to_owned(), str::to_owned);
    let times = rule["times"]
        .as_u64()
        .map_or("until lifted".to_owned(), |n| format!("{n} more calls"));
    format!("{what} — {bank}, {operation}, {times}")
}

/// How one bank looks to callers now.
enum BankState {
    Outage,
    /// Degraded for these operations.
    Degraded(Vec<String>),
    Available,
}

pub(super) fn status_page(ctx: &Ctx<'_>) -> PortalResponse {
    let sandbox = ctx.portal.sandbox.as_ref();
    let banks = sandbox.map(|s| s.banks()).unwrap_or_default();
    let platform_rules: Vec<Value> = sandbox
        .map(|s| s.platform_rules())
        .unwrap_or_default()
        .into_iter()
        .filter(is_incident)
        .collect();
    let bank_states: Vec<BankState> = banks
        .iter()
        .map(|b| {
            let affecting: Vec<&Value> = platform_rules
                .iter()
                .filter(|r| names_bank(r, &b.code))
                .collect();
            let down_for_status = affecting
                .iter()
                .any(|r| r["operation"].as_str().is_none_or(|o| o == "bank-status"));
            if !b.available || down_for_status {
                BankState::Outage
            } else if !affecting.is_empty() {
                BankState::Degraded(
                    affecting
                        .iter()
                        .filter_map(|r| r["operation"].as_str())
                        .map(str::to_owned)
                        .collect(),
                )
            } else {
                BankState::Available
            }
        })
        .collect();
    // The signed-in developer's own scripted outages: (app, rule text).
    let mut own: Vec<(String, String)> = Vec::new();
    if let (Some((_, session)), Some(sandbox)) = (&ctx.session, sandbox) {
        let apps = ctx
            .portal
            .developers
            .get(&session.email)
            .ok()
            .flatten()
            .map(|d| d.apps)
            .unwrap_or_default();
        for app in apps {
            for rule in sandbox.rules(&app).iter().filter(|r| is_incident(r)) {
                own.push((app.clone(), rule_text(rule)));
            }
        }
    }
    let switched_off: Vec<_> = banks.iter().filter(|b| !b.available).collect();
    let incidents = switched_off.len() + platform_rules.len() + own.len();
    let apis = ctx.portal.catalog.apis();
    let body = html! {
        h1 { "Status" }
        p.muted { "The sandbox's banks, the APIs this platform serves, and the incidents in force, read now." }
        h2 { "Banks" }
        @if banks.is_empty() {
            p.muted #status-banks { "No participant bank is known." }
        } @else {
            div.table-wrap { table #status-banks {
                thead { tr { th { "Bank" } th { "Code" } th { "Status" } } }
                tbody {
                    @for (b, state) in banks.iter().zip(&bank_states) {
                        tr.bank data-code=(b.code) {
                            td { (b.name) }
                            td { code { (b.code) } }
                            td {
                                @match state {
                                    BankState::Outage => { span.badge.deprecated { "outage" } }
                                    BankState::Degraded(ops) => {
                                        span.badge.canary { "degraded" } " " small { (ops.join(", ")) }
                                    }
                                    BankState::Available => { span.badge.live { "available" } }
                                }
                            }
                        }
                    }
                }
            } }
        }
        h2 { "APIs" }
        div.table-wrap { table #status-apis {
            thead { tr { th { "API" } th { "Status" } th { "Sunset" } } }
            tbody {
                @for api in &apis {
                    @let served: Vec<&VersionEntry> = api.versions.iter().filter(|v| v.state.is_served()).collect();
                    @let sunsets: Vec<(String, &str)> = served
                        .iter()
                        .filter_map(|v| match &v.state {
                            VersionState::Deprecated { sunset } => Some((v.manifest.version.to_string(), sunset.as_str())),
                            _ => None,
                        })
                        .collect();
                    tr {
                        td { a href={ "/portal/apis/" (encode(&api.name)) } { (api.name) } }
                        td {
                            @if served.is_empty() {
                                span.badge.retired { "not served" }
                            }
                            @for (i, v) in served.iter().enumerate() {
                                @if i > 0 { " " }
                                (badge(&v.state)) " " small { (v.manifest.version.to_string()) }
                            }
                        }
                        td {
                            @if sunsets.is_empty() { "—" }
                            @for (i, (version, sunset)) in sunsets.iter().enumerate() {
                                @if i > 0 { br; }
                                (version) " on " b { (sunset) }
                            }
                        }
                    }
                }
            }
        } }
        h2 { "Incidents" }
        ul #status-incidents {
            @for b in &switched_off {
                li.incident {
                    b { (b.name) " (" (b.code) ")" }
                    ": outage — switched off by the operator; every call to it answers A0017."
                }
            }
            @for rule in &platform_rules {
                li.incident { b { "Every app" } ": " (rule_text(rule)) }
            }
            @for (app, text) in &own {
                li.incident {
                    b { "Your app " a href={ "/portal/apps/" (encode(app)) } { code { (app) } } }
                    " (scripted by you): " (text)
                }
            }
        }
        @if incidents == 0 {
            p.ok #no-incidents { "No incident: every bank answers." }
        }
    };
    ctx.page("Status", "/portal/status", body)
}
