//! `/portal/status`: whether the sandbox's participant banks answer, every
//! API's served versions (live, canary, deprecated with its sunset), and
//! the incidents in force: banks the operator switched off and the
//! sandbox's scripted outages and timeouts (`testbed/README.md`), for every
//! app, and for the signed-in developer's own apps.

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

pub(super) fn status_page(ctx: &Ctx<'_>) -> PortalResponse {
    let sandbox = ctx.portal.sandbox.as_ref();
    let banks = sandbox.map(|s| s.banks()).unwrap_or_default();
    let platform_rules: Vec<Value> = sandbox
        .map(|s| s.platform_rules())
        .unwrap_or_default()
        .into_iter()
        .filter(is_incident)
        .collect();
    let mut body = String::from(
        "<h1>Status</h1><p class=\"muted\">The sandbox's banks, the APIs this platform serves, and the incidents in force, read now.</p>\
         <h2>Banks</h2>",
    );
    if banks.is_empty() {
        body.push_str("<p class=\"muted\" id=\"status-banks\">No participant bank is known.</p>");
    } else {
        body.push_str("<table id=\"status-banks\"><thead><tr><th>Bank</th><th>Code</th><th>Status</th></tr></thead><tbody>");
        for b in &banks {
            let affecting: Vec<&Value> = platform_rules
                .iter()
                .filter(|r| names_bank(r, &b.code))
                .collect();
            let down_for_status = affecting
                .iter()
                .any(|r| r["operation"].as_str().is_none_or(|o| o == "bank-status"));
            let status = if !b.available || down_for_status {
                "<span class=\"badge deprecated\">outage</span>".to_owned()
            } else if !affecting.is_empty() {
                let ops: Vec<String> = affecting
                    .iter()
                    .filter_map(|r| r["operation"].as_str())
                    .map(escape)
                    .collect();
                format!(
                    "<span class=\"badge canary\">degraded</span> <small>{}</small>",
                    ops.join(", ")
                )
            } else {
                "<span class=\"badge live\">available</span>".to_owned()
            };
            let _ = write!(
                body,
                "<tr class=\"bank\" data-code=\"{code}\"><td>{name}</td><td><code>{code}</code></td><td>{status}</td></tr>",
                code = escape(&b.code),
                name = escape(&b.name),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>APIs</h2><table id=\"status-apis\"><thead><tr><th>API</th><th>Status</th><th>Sunset</th></tr></thead><tbody>");
    for api in ctx.portal.catalog.apis() {
        let served: Vec<&VersionEntry> = api
            .versions
            .iter()
            .filter(|v| v.state.is_served())
            .collect();
        let states = if served.is_empty() {
            "<span class=\"badge retired\">not served</span>".to_owned()
        } else {
            served
                .iter()
                .map(|v| {
                    format!(
                        "{} <small>{}</small>",
                        badge(&v.state),
                        escape(&v.manifest.version.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let sunset: Vec<String> = served
            .iter()
            .filter_map(|v| match &v.state {
                VersionState::Deprecated { sunset } => Some(format!(
                    "{} on <b>{}</b>",
                    escape(&v.manifest.version.to_string()),
                    escape(sunset)
                )),
                _ => None,
            })
            .collect();
        let _ = write!(
            body,
            "<tr><td><a href=\"/portal/apis/{href}\">{name}</a></td><td>{states}</td><td>{sunset}</td></tr>",
            href = encode(&api.name),
            name = escape(&api.name),
            sunset = if sunset.is_empty() {
                "—".to_owned()
            } else {
                sunset.join("<br>")
            },
        );
    }
    body.push_str("</tbody></table><h2>Incidents</h2><ul id=\"status-incidents\">");
    let mut incidents = 0;
    for b in banks.iter().filter(|b| !b.available) {
        incidents += 1;
        let _ = write!(
            body,
            "<li class=\"incident\"><b>{name} ({code})</b>: outage — switched off by the operator; every call to it answers A0017.</li>",
            name = escape(&b.name),
            code = escape(&b.code),
        );
    }
    for rule in &platform_rules {
        incidents += 1;
        let _ = write!(
            body,
            "<li class=\"incident\"><b>Every app</b>: {}</li>",
            escape(&rule_text(rule))
        );
    }
    // The signed-in developer's own scripted outages, per app.
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
                incidents += 1;
                let _ = write!(
                    body,
                    "<li class=\"incident\"><b>Your app <a href=\"/portal/apps/{href}\"><code>{id}</code></a></b> (scripted by you): {text}</li>",
                    href = encode(&app),
                    id = escape(&app),
                    text = escape(&rule_text(rule)),
                );
            }
        }
    }
    body.push_str("</ul>");
    if incidents == 0 {
        body.push_str("<p class=\"ok\" id=\"no-incidents\">No incident: every bank answers.</p>");
    }
    ctx.page("Status", "/portal/status", &body)
}
