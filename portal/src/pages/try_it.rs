//! "Try it": a form on each API page, prefilled from the example and the
//! developer's test token, sent to the API through the platform.

use maud::{Markup, html};

use super::*;

/// What "try it" showed after a call.
pub(super) struct TryResult {
    request_line: String,
    request_body: String,
    status: u16,
    response: String,
}

/// Example request values, with what must be fresh or the caller's own
/// filled in from the developer's test token.
pub(super) fn prefill(field: &str, example: Option<&Value>, token: &TestToken) -> String {
    match field {
        "bank_tran_id" => {
            let n = random_hex(8)
                .ok()
                .and_then(|h| u64::from_str_radix(&h, 16).ok())
                .unwrap_or_default()
                % 1_000_000_000;
            format!("{}U{n:09}", token.client_use_code)
        }
        "tran_dtime" => {
            let d = sfop_core::time::format_dtm(
                sfop_core::time::now_millis(),
                sfop_core::time::KST_OFFSET_MINUTES,
            );
            d[..14].to_owned()
        }
        "fintech_use_num" if !token.accounts.is_empty() => token.accounts[0].clone(),
        "cntr_account_num" if token.contract_account.is_some() => {
            token.contract_account.clone().unwrap_or_default()
        }
        "user_seq_no" if token.user_seq_no.is_some() => {
            token.user_seq_no.clone().unwrap_or_default()
        }
        _ => match example {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        },
    }
}

/// Fields that must be new on every call: a second send with the same
/// `bank_tran_id` would be refused as a duplicate.
const FRESH: &[&str] = &["bank_tran_id", "tran_dtime"];

/// The sent body again, with a fresh `bank_tran_id` and `tran_dtime`, for
/// the next send; as it was when it is not JSON.
pub(super) fn refresh_body(sent: &str, token: &TestToken) -> String {
    fn refresh(value: &mut Value, token: &TestToken) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if v.is_string() && FRESH.contains(&k.as_str()) {
                        *v = Value::String(prefill(k, Some(v), token));
                    } else {
                        refresh(v, token);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| refresh(v, token)),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(sent) {
        Ok(mut value) => {
            refresh(&mut value, token);
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| sent.to_owned())
        }
        Err(_) => sent.to_owned(),
    }
}

/// How "try it" reads an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// HTTP 2xx and, when it carries one, `rsp_code` `A0000`.
    Success,
    /// HTTP 4xx or 5xx, with the envelope's code and message when it has one.
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// A KFTC business refusal: HTTP 200 with another `rsp_code`.
    BusinessFailure { code: String, message: String },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Success => f.write_str("success"),
            Verdict::Refused {
                status,
                code: Some(code),
                message,
            } => write!(f, "HTTP {status}: {code} {message}"),
            Verdict::Refused { status, .. } => write!(f, "HTTP {status}"),
            Verdict::BusinessFailure { code, message } => {
                write!(f, "business failure {code}: {message}")
            }
        }
    }
}

/// The verdict on an answer of `status` with body `response`.
pub(super) fn outcome(status: u16, response: &str) -> Verdict {
    let json: Option<Value> = serde_json::from_str(response).ok();
    let code = json.as_ref().and_then(|j| j["rsp_code"].as_str());
    let message = json
        .as_ref()
        .and_then(|j| j["rsp_message"].as_str())
        .unwrap_or_default()
        .to_owned();
    match code {
        _ if !(200..300).contains(&status) => Verdict::Refused {
            status,
            code: code.map(str::to_owned),
            message,
        },
        Some("A0000") | None => Verdict::Success,
        Some(code) => Verdict::BusinessFailure {
            code: code.to_owned(),
            message,
        },
    }
}

pub(super) fn prefill_json(value: &mut Value, token: &TestToken) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if v.is_string()
                    && matches!(
                        k.as_str(),
                        "bank_tran_id"
                            | "tran_dtime"
                            | "fintech_use_num"
                            | "user_seq_no"
                            | "cntr_account_num"
                    )
                {
                    *v = Value::String(prefill(k, Some(v), token));
                } else {
                    prefill_json(v, token);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| prefill_json(v, token)),
        _ => {}
    }
}

/// The token "try it" uses for an API of `scope`.
pub(super) fn token_for<'a>(session: &'a Session, scope: &str) -> Option<&'a TestToken> {
    if scope == "oob" {
        session.oob_token.as_ref()
    } else {
        session
            .user_token
            .as_ref()
            .filter(|t| t.scope.split_whitespace().any(|s| s == scope))
    }
}

pub(super) fn try_it_section(
    ctx: &Ctx<'_>,
    api: &ApiEntry,
    v: &VersionEntry,
    tried: Option<(TryResult, Vec<(String, String)>)>,
) -> Markup {
    let m = &v.manifest;
    let heading = html! { h2 #try { "Try it" } };
    let Some((_, session)) = &ctx.session else {
        let next = format!("/portal/apis/{}#try", encode(&api.name));
        return html! {
            (heading)
            p.muted {
                a href={ "/portal/signin?next=" (encode(&next)) } { "Sign in" }
                ", register an app and get a test token to call this API from here against the virtual bank."
            }
        };
    };
    let Some(token) = token_for(session, &m.scope) else {
        return html! {
            (heading)
            p.muted {
                "You need a test token with scope " (scope_badge(&m.scope)) " first: open one of "
                a href="/portal/apps" { "your apps" } " and get one."
            }
        };
    };
    let Some(route) = m.routes.first() else {
        return heading;
    };
    let result = tried.as_ref().map(|(result, _)| {
        let verdict = outcome(result.status, &result.response);
        let ok = verdict == Verdict::Success;
        let sent = if result.request_body.is_empty() {
            String::new()
        } else {
            format!("\n\n{}", pretty_json(&result.request_body))
        };
        html! {
            div class=(if ok { "ok" } else { "error" }) id="try-result" role="status"
                data-outcome=(if ok { "success" } else { "failure" }) {
                b { "HTTP " (result.status) } " from " code { (result.request_line) } ": "
                span #try-verdict {
                    @if ok { "success" } @else { "failed — " (verdict) }
                }
            }
            div.cols {
                div {
                    h3 { "Sent" }
                    pre {
                        (result.request_line) "\nauthorization: Bearer "
                        (token.access_token.get(..16).unwrap_or_default()) "…" (sent)
                    }
                }
                div { h3 { "Answer" } pre #try-response { (pretty_json(&result.response)) } }
            }
        }
    });
    let docs = m.docs.clone().unwrap_or_default();
    let example_text = docs
        .example
        .as_ref()
        .map(|e| e.request.clone())
        .unwrap_or_default();
    let sent = tried.as_ref().map(|(_, form)| form);
    let get_like = route.method == "GET" || route.method == "DELETE";
    // GET-like: one input per documented top-level field, with what was
    // sent, else a fresh or example value.
    let examples: Vec<(String, String)> = parse_form(example_text.as_bytes());
    let inputs: Vec<(&sfop_core::manifest::FieldDoc, String)> = if get_like {
        docs.request
            .iter()
            .filter(|f| !f.name.contains("[]"))
            .map(|f| {
                let example = examples
                    .iter()
                    .find(|(k, _)| *k == f.name)
                    .map(|(_, v)| Value::String(v.clone()));
                let value = match sent {
                    Some(form) if !FRESH.contains(&f.name.as_str()) => {
                        form_get(form, &f.name).to_owned()
                    }
                    _ => prefill(&f.name, example.as_ref(), token),
                };
                (f, value)
            })
            .collect()
    } else {
        Vec::new()
    };
    let body = (!get_like).then(|| match sent {
        Some(form) => refresh_body(form_get(form, "body"), token),
        None => {
            let mut value: Value =
                serde_json::from_str(&example_text).unwrap_or(Value::Object(Default::default()));
            prefill_json(&mut value, token);
            serde_json::to_string_pretty(&value).unwrap_or_default()
        }
    });
    html! {
        (heading)
        @if let Some(result) = result { (result) }
        p.muted {
            "Calls " code { (route.method) " " (route.path) } " with your test token for app "
            code { (token.client_id) } " (" (token.scope) ") against the virtual bank."
        }
        form method="post" action={ "/portal/try/" (encode(&api.name)) "#try" } {
            (ctx.csrf())
            @for (f, value) in &inputs {
                label for={ "f-" (f.name) } {
                    code { (f.name) } " "
                    small { (f.kind) @if f.required { ", required" } " — " (f.description) }
                }
                input type="text" id={ "f-" (f.name) } name=(f.name) value=(value);
            }
            @if let Some(body) = &body {
                label for="f-body" { "JSON body" }
                textarea id="f-body" name="body" rows="14" { (body) }
            }
            @if tried.is_some() {
                p.muted {
                    "The form keeps what you sent, with a new " code { "bank_tran_id" } " and "
                    code { "tran_dtime" } ": send again for a second call."
                }
            }
            p { button.primary type="submit" #try-send { "Send" } }
        }
    }
}

pub(super) async fn try_it(
    ctx: &Ctx<'_>,
    name: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some(api) = find_api(ctx, name) else {
        return Ok(error_page(
            404,
            "No such API",
            "The platform does not know this API.",
        ));
    };
    let Some(v) = api.current() else {
        return Ok(error_page(
            404,
            "Not served",
            "This API has no version serving calls.",
        ));
    };
    let m = &v.manifest;
    let (Some(route), Some((_, session))) = (m.routes.first(), &ctx.session) else {
        return Ok(redirect("/portal/signin"));
    };
    let Some(token) = token_for(session, &m.scope) else {
        return Ok(redirect(&format!("/portal/apis/{}#try", encode(name))));
    };
    let docs = m.docs.clone().unwrap_or_default();
    let get_like = route.method == "GET" || route.method == "DELETE";
    let (path_and_query, body, headers) = if get_like {
        let query: Vec<String> = docs
            .request
            .iter()
            .filter(|f| !f.name.contains("[]"))
            .filter_map(|f| {
                let value = form_get(form, &f.name);
                (!value.is_empty()).then(|| format!("{}={}", f.name, encode(value)))
            })
            .collect();
        let pq = if query.is_empty() {
            route.path.clone()
        } else {
            format!("{}?{}", route.path, query.join("&"))
        };
        (pq, String::new(), Vec::new())
    } else {
        (
            route.path.clone(),
            form_get(form, "body").to_owned(),
            vec![(
                "content-type".to_owned(),
                "application/json; charset=UTF-8".to_owned(),
            )],
        )
    };
    let mut headers = headers;
    headers.push((
        "authorization".into(),
        format!("Bearer {}", token.access_token),
    ));
    let request_line = format!("{} {}", route.method, path_and_query);
    // The platform could not be asked: its failure, a 503 page.
    let answer = ctx
        .call_platform(
            &route.method,
            path_and_query,
            headers,
            body.clone().into_bytes(),
        )
        .await?;
    let (status, response) = (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    );
    let result = TryResult {
        request_line,
        request_body: body,
        status,
        response,
    };
    Ok(api_page(ctx, name, Some((result, form.to_vec()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TestToken {
        TestToken {
            client_id: "c".into(),
            client_use_code: "M202300001".into(),
            access_token: "t".into(),
            scope: "oob".into(),
            user_seq_no: None,
            accounts: Vec::new(),
            account_details: Vec::new(),
            expires_at_ms: 0,
            contract_account: None,
        }
    }

    /// A body or answer nested past serde_json's recursion limit is shown
    /// as it was sent; nothing recurses into it.
    #[test]
    fn deeply_nested_json_is_kept_as_it_is() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(refresh_body(&deep, &token()), deep);
        assert_eq!(pretty_json(&deep), deep);
        assert_eq!(outcome(200, &deep), Verdict::Success);
        let object = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
        assert_eq!(refresh_body(&object, &token()), object);
    }

    #[test]
    fn business_refusals_are_failures() {
        assert_eq!(outcome(200, r#"{"rsp_code":"A0000"}"#), Verdict::Success);
        assert_eq!(outcome(200, "not json"), Verdict::Success);
        let refused = outcome(
            200,
            r#"{"rsp_code":"A0322","rsp_message":"no contract account"}"#,
        );
        assert_eq!(
            refused.to_string(),
            "business failure A0322: no contract account"
        );
        assert_eq!(
            outcome(401, r#"{"rsp_code":"O0001","rsp_message":"token"}"#).to_string(),
            "HTTP 401: O0001 token"
        );
        assert_eq!(outcome(502, "down").to_string(), "HTTP 502");
    }

    #[test]
    fn a_second_send_gets_a_fresh_bank_tran_id() -> serde_json::Result<()> {
        let sent = r#"{"bank_tran_id":"M202300001U000000001","tran_dtime":"20200101000000","req_list":[{"bank_tran_id":"M202300001U000000002","x":"y"}],"tran_amt":"1000"}"#;
        let next: Value = serde_json::from_str(&refresh_body(sent, &token()))?;
        let first = next["bank_tran_id"].as_str().unwrap_or_default();
        assert!(
            first.starts_with("M202300001U") && first.len() == 20,
            "{first}"
        );
        assert_ne!(first, "M202300001U000000001");
        assert_ne!(next["req_list"][0]["bank_tran_id"], "M202300001U000000002");
        assert_ne!(next["tran_dtime"], "20200101000000");
        assert_eq!(next["tran_amt"], "1000");
        assert_eq!(next["req_list"][0]["x"], "y");
        assert_eq!(refresh_body("not json", &token()), "not json");
        Ok(())
    }
}
