//! The portal's pages and their routes. Every page reads the catalogue
//! afresh; every string that came from a package, a developer or an API
//! answer goes through `escape`.

use std::fmt::Write as _;

use serde_json::Value;
use sfop_auth::ClientSpec;

use crate::changes::{Notice, notices};
use crate::developers::{PendingAuthorization, Session, SignUpError, TestToken};
use crate::openapi::parse_kind;
use crate::render::{
    COOKIE, Viewer, cookie_value, encode, error_page, escape, form_all, form_get, json_response,
    kst, narrow_page, page, parse_form, pretty_json, redirect, rfc3339, scope_text, session_cookie,
    with_header,
};
use crate::{
    ApiEntry, Portal, PortalRequest, PortalResponse, Result, UpstreamRequest, VersionEntry,
    VersionState, random_hex,
};

const SCOPES: &[&str] = &["login", "inquiry", "transfer", "oob"];

/// The request in the portal's terms.
struct Ctx<'a> {
    portal: &'a Portal,
    req: &'a PortalRequest,
    /// The session cookie's value and the session, when signed in.
    session: Option<(String, Session)>,
    viewer: Viewer,
}

impl Ctx<'_> {
    fn base_url(&self) -> String {
        let authority = self.req.authority.as_deref().unwrap_or("localhost");
        format!("{}://{authority}", self.portal.config.scheme)
    }

    fn callback_url(&self) -> String {
        format!("{}/portal/callback", self.base_url())
    }

    fn page(&self, title: &str, current: &str, body: &str) -> PortalResponse {
        page(200, title, current, &self.viewer, body)
    }

    fn csrf_field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            escape(&self.viewer.csrf)
        )
    }
}

pub(crate) async fn route(portal: &Portal, req: &PortalRequest) -> Result<PortalResponse> {
    let sub = req
        .path
        .strip_prefix(crate::PREFIX)
        .unwrap_or(&req.path)
        .trim_end_matches('/');
    let session = match cookie_value(req.cookie.as_deref(), COOKIE) {
        Some(id) => portal.developers.session(id)?.map(|s| (id.to_owned(), s)),
        None => None,
    };
    let viewer = Viewer {
        email: session.as_ref().map(|(_, s)| s.email.clone()),
        csrf: session
            .as_ref()
            .map(|(_, s)| s.csrf.clone())
            .unwrap_or_default(),
    };
    let mut ctx = Ctx {
        portal,
        req,
        session,
        viewer,
    };
    let form = if req.method == "POST" {
        parse_form(&req.body)
    } else {
        Vec::new()
    };
    // Every post of a signed-in browser carries the session's CSRF token.
    if req.method == "POST"
        && let Some((_, s)) = &ctx.session
        && form_get(&form, "csrf") != s.csrf
        && !matches!(sub, "/signin" | "/signup")
    {
        return Ok(error_page(
            403,
            "Form expired",
            "This form is no longer valid. Reload the page and try again.",
        ));
    }
    let segments: Vec<&str> = sub.split('/').skip(1).collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", []) => Ok(catalogue(&ctx)),
        ("GET", ["apis", name]) => Ok(api_page(&ctx, name, None)),
        ("GET", ["openapi.json"]) => {
            let doc = crate::openapi(&portal.catalog.apis(), &ctx.base_url());
            let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            Ok(json_response(200, "application/json; charset=UTF-8", body))
        }
        ("GET", ["permissions"]) => Ok(permissions(&ctx)),
        ("GET", ["changes"]) => Ok(changes_page(&ctx)),
        ("GET", ["changes.atom"]) => Ok(atom(&ctx)),
        ("GET", ["reports", name, version]) => Ok(report(&ctx, name, version)),
        ("GET", ["signup"]) => Ok(sign_up_page(None, "")),
        ("POST", ["signup"]) => sign_up(&ctx, &form),
        ("GET", ["signin"]) => Ok(sign_in_page(None, "")),
        ("POST", ["signin"]) => sign_in(&ctx, &form),
        ("POST", ["signout"]) => {
            if let Some((id, _)) = &ctx.session {
                portal.developers.end_session(id)?;
            }
            Ok(with_header(
                redirect("/portal"),
                "set-cookie",
                session_cookie("", 0),
            ))
        }
        (_, ["apps", ..]) | (_, ["callback"]) | ("POST", ["try", _]) if ctx.session.is_none() => {
            Ok(redirect("/portal/signin"))
        }
        ("GET", ["apps"]) => apps_page(&ctx, None),
        ("POST", ["apps"]) => register_app(&ctx, &form),
        ("GET", ["apps", id]) => app_page(&ctx, id, None),
        ("POST", ["apps", id, "authorize"]) => start_authorization(&mut ctx, id, &form),
        ("POST", ["apps", id, "oob-token"]) => oob_token(&mut ctx, id, &form).await,
        ("GET", ["callback"]) => Ok(callback_page(&ctx)),
        ("POST", ["callback"]) => exchange_code(&mut ctx, &form).await,
        ("POST", ["try", name]) => try_it(&ctx, name, &form).await,
        _ => Ok(error_page(
            404,
            "Not found",
            "There is no such page on the developer portal.",
        )),
    }
}

// ---------- catalogue and API pages ----------

fn badge(state: &VersionState) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        state.class(),
        escape(&state.label())
    )
}

fn scope_badge(scope: &str) -> String {
    format!("<span class=\"badge scope\">{}</span>", escape(scope))
}

fn routes_html(v: &VersionEntry) -> String {
    v.manifest
        .routes
        .iter()
        .map(|r| format!("<code>{} {}</code>", escape(&r.method), escape(&r.path)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// The states of every served version, e.g. `live 1.0.0 · canary 1.1.0 10%`.
fn status_html(api: &ApiEntry) -> String {
    let current = api.current().map(|v| &v.manifest.version);
    api.versions
        .iter()
        .filter(|v| v.state.is_served())
        .map(|v| {
            if Some(&v.manifest.version) == current {
                badge(&v.state)
            } else {
                format!(
                    "{} <small>{}</small>",
                    badge(&v.state),
                    escape(&v.manifest.version.to_string())
                )
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn catalogue(ctx: &Ctx<'_>) -> PortalResponse {
    let apis = ctx.portal.catalog.apis();
    let mut rows = String::new();
    let mut served = 0;
    for api in &apis {
        let Some(v) = api.current() else {
            continue;
        };
        served += 1;
        let m = &v.manifest;
        let _ = write!(
            rows,
            "<tr><td class=\"nowrap\"><a href=\"/portal/apis/{href}\">{name}</a></td><td>{version}</td><td>{routes}</td>\
             <td>{scope}</td><td>{description}</td><td>{status}</td></tr>",
            href = encode(&api.name),
            name = escape(&api.name),
            version = escape(&m.version.to_string()),
            routes = routes_html(v),
            scope = scope_badge(&m.scope),
            description = escape(&m.description),
            status = status_html(api),
        );
    }
    let body = format!(
        "<h1>APIs</h1>\
         <p class=\"muted\">The {served} APIs this platform serves right now, read from what is live. \
         Also as <a href=\"/portal/openapi.json\">OpenAPI 3.1</a>; what changed is in the \
         <a href=\"/portal/changes\">change notices</a> (<a href=\"/portal/changes.atom\">Atom feed</a>). \
         Every call needs an access token with the API's scope: see <a href=\"/portal/permissions\">permissions</a>.</p>\
         <table><thead><tr><th>API</th><th>Version</th><th>Call</th><th>Scope</th><th>Description</th><th>Status</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    );
    ctx.page("APIs", "/portal", &body)
}

/// A field's type and length in separate columns: `AN(20)` → (`AN`, `20`).
fn fields_table(fields: &[sfop_core::manifest::FieldDoc], with_required: bool) -> String {
    if fields.is_empty() {
        return "<p class=\"muted\">None documented.</p>".into();
    }
    let mut rows = String::new();
    for f in fields {
        let (kind, len) = parse_kind(&f.kind);
        let required = if with_required {
            format!("<td>{}</td>", if f.required { "yes" } else { "no" })
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td>{required}<td>{}</td></tr>",
            escape(&f.name),
            escape(kind),
            len.map(|n| n.to_string()).unwrap_or_default(),
            escape(&f.description),
        );
    }
    let required_head = if with_required {
        "<th>Required</th>"
    } else {
        ""
    };
    format!(
        "<table><thead><tr><th>Field</th><th>Type</th><th>Length</th>{required_head}<th>Description</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

fn find_api(ctx: &Ctx<'_>, name: &str) -> Option<ApiEntry> {
    ctx.portal
        .catalog
        .apis()
        .into_iter()
        .find(|a| a.name == name)
}

/// What "try it" showed after a call.
struct TryResult {
    request_line: String,
    request_body: String,
    status: u16,
    response: String,
}

fn api_page(
    ctx: &Ctx<'_>,
    name: &str,
    tried: Option<(TryResult, Vec<(String, String)>)>,
) -> PortalResponse {
    let Some(api) = find_api(ctx, name) else {
        return error_page(404, "No such API", "The platform does not know this API.");
    };
    let wanted = parse_form(ctx.req.query.as_bytes())
        .into_iter()
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v);
    let version = match &wanted {
        Some(w) => api
            .versions
            .iter()
            .find(|v| v.manifest.version.to_string() == *w),
        None => api.current().or(api.versions.first()),
    };
    let Some(v) = version else {
        return error_page(404, "No such version", "This API has no such version.");
    };
    let m = &v.manifest;
    let docs = m.docs.clone().unwrap_or_default();
    let get_like = m
        .routes
        .iter()
        .all(|r| r.method == "GET" || r.method == "DELETE");
    let mut body = format!(
        "<h1>{name} <small>{version}</small> {badge}</h1><p>{description}</p>",
        name = escape(&api.name),
        version = escape(&m.version.to_string()),
        badge = badge(&v.state),
        description = escape(&m.description),
    );
    if let VersionState::Deprecated { sunset } = &v.state {
        let _ = write!(
            body,
            "<p class=\"notice\">Deprecated: this version stops serving on <b>{}</b>. See the <a href=\"/portal/changes\">change notices</a>.</p>",
            escape(sunset)
        );
    }
    if !v.state.is_served() {
        body.push_str(
            "<p class=\"notice\">This version is not served; calls reach the live one.</p>",
        );
    }
    let _ = write!(
        body,
        "<h2>Call</h2><table><tbody>\
         <tr><th>Route</th><td>{routes}</td></tr>\
         <tr><th>Base URL</th><td><code>{base}</code></td></tr>\
         <tr><th>Scope</th><td>{scope} — {permission}</td></tr>\
         <tr><th>Request</th><td>{request_kind}</td></tr>\
         <tr><th>Limits</th><td>body up to {body_kib} KiB, answer within {timeout} ms</td></tr>\
         </tbody></table>",
        routes = routes_html(v),
        base = escape(&ctx.base_url()),
        scope = scope_badge(&m.scope),
        permission = escape(scope_text(&m.scope)),
        request_kind = if get_like {
            "query parameters"
        } else {
            "JSON body (<code>content-type: application/json</code>)"
        },
        body_kib = m.limits.max_body_kib,
        timeout = m.limits.timeout_ms,
    );
    let _ = write!(
        body,
        "<h2>Request fields</h2>{}<h2>Response fields</h2>\
         <p class=\"muted\">After the common header: <code>api_tran_id</code>, <code>api_tran_dtm</code>, <code>rsp_code</code>, <code>rsp_message</code>.</p>{}",
        fields_table(&docs.request, true),
        fields_table(&docs.response, false),
    );
    if let Some(example) = &docs.example {
        let route = m.routes.first();
        let request = match route {
            Some(r) if get_like => format!(
                "{} {}{}{}",
                r.method,
                r.path,
                if example.request.is_empty() { "" } else { "?" },
                example.request
            ),
            Some(r) => format!(
                "{} {}\n\n{}",
                r.method,
                r.path,
                pretty_json(&example.request)
            ),
            None => example.request.clone(),
        };
        let _ = write!(
            body,
            "<h2>Example</h2><div class=\"cols\"><div><h3>Request</h3><pre>{}</pre></div>\
             <div><h3>Response</h3><pre>{}</pre></div></div>",
            escape(&request),
            escape(&pretty_json(&example.response)),
        );
    }
    body.push_str("<h2>Response codes</h2>");
    if docs.codes.is_empty() {
        body.push_str("<p class=\"muted\">Only <code>A0000</code> (success) is documented.</p>");
    } else {
        body.push_str("<table><thead><tr><th>rsp_code</th><th>Meaning</th></tr></thead><tbody><tr><td><code>A0000</code></td><td>Success</td></tr>");
        for c in &docs.codes {
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(&c.code),
                escape(&c.meaning)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&try_it_section(ctx, &api, v, tried));
    body.push_str("<h2>Version history</h2><table><thead><tr><th>Version</th><th>Status</th><th>Uploaded</th><th>Component SHA-256</th><th>Testbed report</th></tr></thead><tbody>");
    for h in &api.versions {
        let version = h.manifest.version.to_string();
        let report = if h.report_html.is_some() {
            format!(
                "<a href=\"/portal/reports/{}/{}\">report</a>",
                encode(&api.name),
                encode(&version)
            )
        } else {
            "<span class=\"muted\">none yet</span>".into()
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/portal/apis/{href}?version={v}\">{version_text}</a></td><td>{badge}</td><td>{at}</td>\
             <td><code title=\"{sha}\">{short}…</code></td><td>{report}</td></tr>",
            href = encode(&api.name),
            v = encode(&version),
            version_text = escape(&version),
            badge = badge(&h.state),
            at = kst(h.uploaded_at_ms),
            sha = escape(&h.sha256),
            short = escape(h.sha256.get(..12).unwrap_or(&h.sha256)),
        );
    }
    body.push_str("</tbody></table>");
    ctx.page(&api.name, "/portal", &body)
}

/// Example request values, with what must be fresh or the caller's own
/// filled in from the developer's test token.
fn prefill(field: &str, example: Option<&Value>, token: &TestToken) -> String {
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

fn prefill_json(value: &mut Value, token: &TestToken) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if v.is_string()
                    && matches!(
                        k.as_str(),
                        "bank_tran_id" | "tran_dtime" | "fintech_use_num" | "user_seq_no"
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
fn token_for<'a>(session: &'a Session, scope: &str) -> Option<&'a TestToken> {
    if scope == "oob" {
        session.oob_token.as_ref()
    } else {
        session
            .user_token
            .as_ref()
            .filter(|t| t.scope.split_whitespace().any(|s| s == scope))
    }
}

fn try_it_section(
    ctx: &Ctx<'_>,
    api: &ApiEntry,
    v: &VersionEntry,
    tried: Option<(TryResult, Vec<(String, String)>)>,
) -> String {
    let m = &v.manifest;
    let mut out = String::from("<h2 id=\"try\">Try it</h2>");
    let Some((_, session)) = &ctx.session else {
        out.push_str("<p class=\"muted\"><a href=\"/portal/signin\">Sign in</a>, register an app and get a test token to call this API from here against the virtual bank.</p>");
        return out;
    };
    let Some(token) = token_for(session, &m.scope) else {
        let _ = write!(
            out,
            "<p class=\"muted\">You need a test token with scope {} first: open one of <a href=\"/portal/apps\">your apps</a> and get one.</p>",
            scope_badge(&m.scope)
        );
        return out;
    };
    let Some(route) = m.routes.first() else {
        return out;
    };
    if let Some((result, _)) = &tried {
        let class = if (200..300).contains(&result.status) {
            "ok"
        } else {
            "error"
        };
        let _ = write!(
            out,
            "<div class=\"{class}\" id=\"try-result\"><b>HTTP {status}</b> from <code>{line}</code></div>\
             <div class=\"cols\"><div><h3>Sent</h3><pre>{line}\nauthorization: Bearer {token_start}…{sent}</pre></div>\
             <div><h3>Answer</h3><pre id=\"try-response\">{response}</pre></div></div>",
            status = result.status,
            line = escape(&result.request_line),
            token_start = escape(token.access_token.get(..16).unwrap_or_default()),
            sent = if result.request_body.is_empty() {
                String::new()
            } else {
                format!("\n\n{}", escape(&pretty_json(&result.request_body)))
            },
            response = escape(&pretty_json(&result.response)),
        );
    }
    let docs = m.docs.clone().unwrap_or_default();
    let example_text = docs
        .example
        .as_ref()
        .map(|e| e.request.clone())
        .unwrap_or_default();
    let sent = tried.as_ref().map(|(_, form)| form);
    let _ = write!(
        out,
        "<p class=\"muted\">Calls <code>{method} {path}</code> with your test token for app <code>{client}</code> ({scope}) against the virtual bank.</p>\
         <form method=\"post\" action=\"/portal/try/{href}#try\">{csrf}",
        method = escape(&route.method),
        path = escape(&route.path),
        client = escape(&token.client_id),
        scope = escape(&token.scope),
        href = encode(&api.name),
        csrf = ctx.csrf_field(),
    );
    if route.method == "GET" || route.method == "DELETE" {
        let examples: Vec<(String, String)> = parse_form(example_text.as_bytes());
        for f in docs.request.iter().filter(|f| !f.name.contains("[]")) {
            let example = examples
                .iter()
                .find(|(k, _)| *k == f.name)
                .map(|(_, v)| Value::String(v.clone()));
            let value = match sent {
                Some(form) => form_get(form, &f.name).to_owned(),
                None => prefill(&f.name, example.as_ref(), token),
            };
            let _ = write!(
                out,
                "<label for=\"f-{name}\"><code>{name}</code> <small>{kind}{required} — {description}</small></label>\
                 <input type=\"text\" id=\"f-{name}\" name=\"{name}\" value=\"{value}\">",
                name = escape(&f.name),
                kind = escape(&f.kind),
                required = if f.required { ", required" } else { "" },
                description = escape(&f.description),
                value = escape(&value),
            );
        }
    } else {
        let body = match sent {
            Some(form) => form_get(form, "body").to_owned(),
            None => {
                let mut value: Value = serde_json::from_str(&example_text)
                    .unwrap_or(Value::Object(Default::default()));
                prefill_json(&mut value, token);
                serde_json::to_string_pretty(&value).unwrap_or_default()
            }
        };
        let _ = write!(
            out,
            "<label for=\"f-body\">JSON body</label><textarea id=\"f-body\" name=\"body\" rows=\"14\">{}</textarea>",
            escape(&body)
        );
    }
    out.push_str(
        "<p><button class=\"primary\" type=\"submit\" id=\"try-send\">Send</button></p></form>",
    );
    out
}

async fn try_it(ctx: &Ctx<'_>, name: &str, form: &[(String, String)]) -> Result<PortalResponse> {
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
    let answer = ctx
        .portal
        .upstream
        .send(UpstreamRequest {
            method: route.method.clone(),
            path_and_query,
            headers,
            body: body.clone().into_bytes(),
            authority: ctx.req.authority.clone(),
        })
        .await;
    let (status, response) = match answer {
        Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        Err(e) => (502, format!("The platform could not be reached: {e}")),
    };
    let result = TryResult {
        request_line,
        request_body: body,
        status,
        response,
    };
    Ok(api_page(ctx, name, Some((result, form.to_vec()))))
}

// ---------- permissions ----------

fn permissions(ctx: &Ctx<'_>) -> PortalResponse {
    let apis = ctx.portal.catalog.apis();
    let mut rows = String::new();
    for scope in SCOPES {
        let users: Vec<String> = apis
            .iter()
            .filter_map(|a| {
                a.current()
                    .filter(|v| v.manifest.scope == *scope)
                    .map(|_| a)
            })
            .map(|a| {
                format!(
                    "<a href=\"/portal/apis/{}\">{}</a>",
                    encode(&a.name),
                    escape(&a.name)
                )
            })
            .collect();
        let granted = if *scope == "oob" {
            "the platform, to the institution (client credentials)"
        } else {
            "the account holder, on the consent page"
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            scope_badge(scope),
            escape(scope_text(scope)),
            granted,
            if users.is_empty() {
                "<span class=\"muted\">none live</span>".into()
            } else {
                users.join(", ")
            }
        );
    }
    let body = format!(
        "<h1>Permissions</h1>\
         <p>Every API needs an OAuth 2.0 access token carrying its <b>scope</b>. Tokens are \
         <a href=\"https://www.biscuitsec.org/\">biscuits</a>: signed capability tokens the gateway checks with Datalog on every call.</p>\
         <table><thead><tr><th>Scope</th><th>What it allows</th><th>Granted by</th><th>APIs that need it</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>How consent works</h2>\
         <ol><li>Your app sends the user to <code>/oauth/2.0/authorize</code> with the scopes it needs (authorization code flow, PKCE recommended).</li>\
         <li>The user signs in with their bank credentials (your app never sees them), picks the accounts and the permissions to grant, and agrees.</li>\
         <li>Your server exchanges the code at <code>/oauth/2.0/token</code> for an access token naming the user, your app, the granted scopes and the consented accounts (<code>fintech_use_num</code>).</li>\
         <li>On every call the gateway checks the scope, that each account the request names is consented, that the user is the token's, and every check of every block. The user can withdraw consent at any time (<code>/v2.0/user/unlink</code>); the tokens die at once.</li></ol>\
         <h2>Attenuation: narrowing a token offline</h2>\
         <p>A holder can append a block of checks to a token without asking the platform, and pass the narrower token on, \
         for example to a partner. Blocks can only restrict: facts a later block declares are not trusted. \
         This is a token issued to <code>sfop-demo-client</code> for user <code>1100000001</code>, with a block its holder appended \
         so the partner may read but move at most ₩30,000:</p>\
         <pre>{sample}</pre>\
         <p>A withdrawal of ₩30,001 with this token is refused (<code>A0301</code>); a balance inquiry passes. \
         A bank can also co-sign consent in a third-party block, which the gateway requires for the scopes the operator configures. \
         <code>examples/cross-domain</code> in the sfop repository runs all of this end to end.</p>",
        sample = escape(ATTENUATION_SAMPLE),
    );
    ctx.page("Permissions", "/portal/permissions", &body)
}

/// Sample 03 of `host/auth/samples`, abridged.
const ATTENUATION_SAMPLE: &str = "// authority block, signed by the platform root key
client(\"sfop-demo-client\");
client_use_code(\"M202300001\");
user(\"1100000001\");
scope(\"inquiry\"); scope(\"login\"); scope(\"transfer\");
account(\"120230000100000000000001\");
check if time($t), $t <= 2100-01-01T00:00:00Z;

// block 1, appended offline by the app for its partner
check if operation(\"read\") or amount($a), $a <= 30000;";

// ---------- change notices ----------

fn notice_html(n: &Notice) -> String {
    let mut out = format!(
        "<h3><a href=\"/portal/apis/{href}?version={v}\">{api} {version}</a> {badge} <small>{at}</small></h3>",
        href = encode(&n.api),
        v = encode(&n.version),
        api = escape(&n.api),
        version = escape(&n.version),
        badge = badge(&n.state),
        at = kst(n.at_ms),
    );
    if let VersionState::Deprecated { sunset } = &n.state {
        let _ = write!(
            out,
            "<p class=\"notice\">Deprecated: stops serving on <b>{}</b>. Move to the live version before then.</p>",
            escape(sunset)
        );
    }
    match &n.previous {
        None => out.push_str("<p class=\"muted\">First version.</p>"),
        Some(prev) if n.changes.is_empty() => {
            let _ = write!(
                out,
                "<p class=\"muted\">No contract change since {}.</p>",
                escape(prev)
            );
        }
        Some(prev) => {
            let _ = write!(out, "<p>Changes since {}:</p><ul>", escape(prev));
            for c in &n.changes {
                let _ = write!(
                    out,
                    "<li><b>{}</b> {}{}{}</li>",
                    c.kind.label(),
                    escape(&c.subject),
                    if c.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", escape(&c.detail))
                    },
                    if c.breaking {
                        " <span class=\"badge deprecated\">breaking</span>"
                    } else {
                        ""
                    }
                );
            }
            out.push_str("</ul>");
        }
    }
    out
}

fn changes_page(ctx: &Ctx<'_>) -> PortalResponse {
    let list = notices(&ctx.portal.catalog.apis());
    let mut body = String::from(
        "<h1>Change notices</h1><p class=\"muted\">Each version against the one before it: documented fields, response codes, routes and scope; deprecations with their sunset dates. \
         Subscribe: <a href=\"/portal/changes.atom\">Atom feed</a>.</p>",
    );
    for n in &list {
        body.push_str(&notice_html(n));
    }
    ctx.page("Change notices", "/portal/changes", &body)
}

fn atom(ctx: &Ctx<'_>) -> PortalResponse {
    let list = notices(&ctx.portal.catalog.apis());
    let base = ctx.base_url();
    let updated = list.iter().map(|n| n.at_ms).max().unwrap_or_default();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <title>sfop API change notices</title><id>{base}/portal/changes.atom</id>\
         <link rel=\"self\" href=\"{base}/portal/changes.atom\"/><link href=\"{base}/portal/changes\"/>\
         <updated>{updated}</updated><author><name>sfop platform</name></author>\n",
        base = escape(&base),
        updated = rfc3339(updated),
    );
    for n in &list {
        let title = match (&n.state, &n.previous) {
            (VersionState::Deprecated { sunset }, _) => {
                format!("{} {} deprecated, sunset {sunset}", n.api, n.version)
            }
            (_, None) => format!("{} {}: first version", n.api, n.version),
            (_, Some(prev)) => format!(
                "{} {}: {} change(s) since {prev}",
                n.api,
                n.version,
                n.changes.len()
            ),
        };
        let _ = writeln!(
            xml,
            "<entry><title>{title}</title><id>urn:sfop:change:{id_api}:{id_version}:{state}</id>\
             <link href=\"{base}/portal/apis/{href}?version={v}\"/><updated>{at}</updated>\
             <content type=\"html\">{content}</content></entry>",
            title = escape(&title),
            id_api = escape(&encode(&n.api)),
            id_version = escape(&encode(&n.version)),
            state = escape(&encode(&n.state.label())),
            base = escape(&base),
            href = escape(&encode(&n.api)),
            v = escape(&encode(&n.version)),
            at = rfc3339(n.at_ms),
            // The HTML of the notice, escaped once more as XML text.
            content = escape(&notice_html(n)),
        );
    }
    xml.push_str("</feed>\n");
    PortalResponse {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                "application/atom+xml; charset=UTF-8".into(),
            ),
            ("cache-control".into(), "no-cache".into()),
            ("x-content-type-options".into(), "nosniff".into()),
        ],
        body: xml.into_bytes(),
    }
}

// ---------- testbed reports ----------

fn report(ctx: &Ctx<'_>, name: &str, version: &str) -> PortalResponse {
    let entry = find_api(ctx, name).and_then(|a| {
        a.versions
            .into_iter()
            .find(|v| v.manifest.version.to_string() == version)
    });
    let Some(v) = entry else {
        return error_page(
            404,
            "No such version",
            "The platform does not know this API version.",
        );
    };
    let Some(report) = &v.report_html else {
        return error_page(
            404,
            "No report",
            "The testbed has not reported on this version yet.",
        );
    };
    // The testbed renders and escapes its report; the page's policy allows no
    // script in any case.
    let body = format!(
        "<h1>Testbed report: {name} {version}</h1>\
         <p class=\"muted\">Component <code>{sha}</code>, {badge}. <a href=\"/portal/apis/{href}?version={v}\">API page</a></p>\
         <section class=\"report\">{report}</section>",
        name = escape(name),
        version = escape(version),
        sha = escape(&v.sha256),
        badge = badge(&v.state),
        href = encode(name),
        v = encode(version),
    );
    ctx.page("Testbed report", "/portal/changes", &body)
}

// ---------- developers ----------

fn sign_up_page(message: Option<&str>, email: &str) -> PortalResponse {
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    narrow_page(
        if message.is_some() { 400 } else { 200 },
        "Sign up",
        &format!(
            "<h1>Create a developer account</h1>{error}\
             <form method=\"post\" action=\"/portal/signup\">\
             <label for=\"email\">E-mail</label><input type=\"email\" id=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"email\" required>\
             <label for=\"password\">Password <small>(10 characters or more)</small></label>\
             <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" required>\
             <p><button class=\"primary\" type=\"submit\">Sign up</button></p></form>\
             <p><small>Already registered? <a href=\"/portal/signin\">Sign in</a>.</small></p>",
            email = escape(email),
        ),
    )
}

fn sign_in_page(message: Option<&str>, email: &str) -> PortalResponse {
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    narrow_page(
        if message.is_some() { 401 } else { 200 },
        "Sign in",
        &format!(
            "<h1>Sign in to the developer portal</h1>{error}\
             <form method=\"post\" action=\"/portal/signin\">\
             <label for=\"email\">E-mail</label><input type=\"email\" id=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"username\" required>\
             <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
             <p><button class=\"primary\" type=\"submit\">Sign in</button></p></form>\
             <p><small>New here? <a href=\"/portal/signup\">Create an account</a>.</small></p>",
            email = escape(email),
        ),
    )
}

fn signed_in(ctx: &Ctx<'_>, email: &str) -> Result<PortalResponse> {
    let id = ctx.portal.developers.start_session(email)?;
    Ok(with_header(
        redirect("/portal/apps"),
        "set-cookie",
        session_cookie(&id, ctx.portal.config.session_ttl_secs),
    ))
}

fn sign_up(ctx: &Ctx<'_>, form: &[(String, String)]) -> Result<PortalResponse> {
    let email = form_get(form, "email");
    match ctx
        .portal
        .developers
        .sign_up(email, form_get(form, "password"))?
    {
        Ok(dev) => signed_in(ctx, &dev.email),
        Err(e @ (SignUpError::BadEmail | SignUpError::WeakPassword | SignUpError::Taken)) => {
            Ok(sign_up_page(Some(&e.to_string()), email))
        }
    }
}

fn sign_in(ctx: &Ctx<'_>, form: &[(String, String)]) -> Result<PortalResponse> {
    let email = form_get(form, "email");
    match ctx
        .portal
        .developers
        .authenticate(email, form_get(form, "password"))?
    {
        Some(dev) => signed_in(ctx, &dev.email),
        None => Ok(sign_in_page(
            Some("The e-mail address or password is not correct."),
            email,
        )),
    }
}

// ---------- apps ----------

fn owned_app(ctx: &Ctx<'_>, client_id: &str) -> Result<Option<sfop_auth::Client>> {
    let Some((_, session)) = &ctx.session else {
        return Ok(None);
    };
    let owns = ctx
        .portal
        .developers
        .get(&session.email)?
        .is_some_and(|d| d.apps.iter().any(|a| a == client_id));
    if !owns {
        return Ok(None);
    }
    Ok(ctx.portal.clients.get(client_id)?)
}

fn apps_page(ctx: &Ctx<'_>, message: Option<&str>) -> Result<PortalResponse> {
    let Some((_, session)) = &ctx.session else {
        return Ok(redirect("/portal/signin"));
    };
    let developer = ctx.portal.developers.get(&session.email)?;
    let mut rows = String::new();
    for id in developer.map(|d| d.apps).unwrap_or_default() {
        if let Some(c) = ctx.portal.clients.get(&id)? {
            let _ = write!(
                rows,
                "<tr><td><a href=\"/portal/apps/{href}\">{name}</a></td><td><code>{id}</code></td><td>{code}</td><td>{scopes}</td></tr>",
                href = encode(&c.client_id),
                name = escape(&c.name),
                id = escape(&c.client_id),
                code = escape(&c.client_use_code),
                scopes = c
                    .scopes
                    .iter()
                    .map(|s| scope_badge(s))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    let list = if rows.is_empty() {
        "<p class=\"muted\">No apps yet.</p>".to_owned()
    } else {
        format!(
            "<table><thead><tr><th>App</th><th>client_id</th><th>client_use_code</th><th>Scopes</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let scope_boxes: String = SCOPES
        .iter()
        .map(|s| {
            format!(
                "<div class=\"row\"><input type=\"checkbox\" id=\"scope-{s}\" name=\"scope\" value=\"{s}\"> \
                 <label for=\"scope-{s}\"><b>{s}</b>: {}</label></div>",
                escape(scope_text(s))
            )
        })
        .collect();
    let body = format!(
        "<h1>My apps</h1>{list}<h2>Register an app</h2>{error}\
         <form method=\"post\" action=\"/portal/apps\">{csrf}\
         <label for=\"name\">App name <small>(users see it on the consent page)</small></label>\
         <input type=\"text\" id=\"name\" name=\"name\" maxlength=\"100\" required>\
         <label for=\"redirect_uris\">Redirect URIs <small>(one per line; https://, or http:// on localhost)</small></label>\
         <textarea id=\"redirect_uris\" name=\"redirect_uris\" rows=\"3\"></textarea>\
         <p><small>The portal's own callback <code>{callback}</code> is added, so you can get test tokens here.</small></p>\
         <fieldset><legend>Scopes</legend>{scope_boxes}</fieldset>\
         <p><button class=\"primary\" type=\"submit\" id=\"register\">Register</button></p></form>",
        csrf = ctx.csrf_field(),
        callback = escape(&ctx.callback_url()),
    );
    Ok(ctx.page("My apps", "/portal/apps", &body))
}

fn register_app(ctx: &Ctx<'_>, form: &[(String, String)]) -> Result<PortalResponse> {
    let Some((_, session)) = &ctx.session else {
        return Ok(redirect("/portal/signin"));
    };
    let mut redirect_uris: Vec<String> = form_get(form, "redirect_uris")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    redirect_uris.push(ctx.callback_url());
    let spec = ClientSpec {
        name: form_get(form, "name").trim().to_owned(),
        redirect_uris,
        scopes: form_all(form, "scope")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        client_use_code: None,
        public: false,
    };
    let (client, secret) = match ctx.portal.clients.register(spec) {
        Ok(registered) => registered,
        Err(sfop_auth::Error::Invalid(message)) => return apps_page(ctx, Some(&message)),
        Err(e) => return Err(e.into()),
    };
    ctx.portal
        .developers
        .add_app(&session.email, &client.client_id)?;
    tracing::info!(developer = %session.email, client_id = %client.client_id, "app registered on the portal");
    let body = format!(
        "<h1>{name} is registered</h1>\
         <p class=\"notice\"><b>Copy the client secret now.</b> It is shown this once and stored only hashed; if you lose it, register the app again.</p>\
         <table><tbody>\
         <tr><th>client_id</th><td><code id=\"client-id\">{id}</code></td></tr>\
         <tr><th>client_secret</th><td><code id=\"client-secret\">{secret}</code></td></tr>\
         <tr><th>client_use_code</th><td><code>{code}</code></td></tr>\
         <tr><th>Scopes</th><td>{scopes}</td></tr>\
         <tr><th>Redirect URIs</th><td>{uris}</td></tr></tbody></table>\
         <p><a class=\"button primary\" href=\"/portal/apps/{href}\" id=\"continue\">Continue to the app</a></p>",
        name = escape(&client.name),
        id = escape(&client.client_id),
        secret = escape(secret.as_deref().unwrap_or_default()),
        code = escape(&client.client_use_code),
        scopes = client
            .scopes
            .iter()
            .map(|s| scope_badge(s))
            .collect::<Vec<_>>()
            .join(" "),
        uris = client
            .redirect_uris
            .iter()
            .map(|u| format!("<code>{}</code>", escape(u)))
            .collect::<Vec<_>>()
            .join("<br>"),
        href = encode(&client.client_id),
    );
    let mut r = ctx.page("App registered", "/portal/apps", &body);
    r.status = 201;
    Ok(r)
}

fn token_html(label: &str, t: &TestToken) -> String {
    format!(
        "<h3>{label}</h3><table><tbody>\
         <tr><th>Scope</th><td>{scope}</td></tr>\
         <tr><th>User</th><td>{user}</td></tr>\
         <tr><th>Accounts (fintech_use_num)</th><td id=\"token-accounts\">{accounts}</td></tr>\
         <tr><th>Expires</th><td>{expires}</td></tr></tbody></table>\
         <label>Access token <small>(send as <code>Authorization: Bearer …</code>)</small></label>\
         <textarea readonly rows=\"3\">{token}</textarea>",
        scope = escape(&t.scope),
        user = escape(t.user_seq_no.as_deref().unwrap_or("— (institution)")),
        accounts = if t.accounts.is_empty() {
            "—".to_owned()
        } else {
            t.accounts
                .iter()
                .map(|a| format!("<code>{}</code>", escape(a)))
                .collect::<Vec<_>>()
                .join("<br>")
        },
        expires = kst(t.expires_at_ms),
        token = escape(&t.access_token),
    )
}

fn app_page(ctx: &Ctx<'_>, client_id: &str, message: Option<&str>) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id)? else {
        return Ok(error_page(
            404,
            "No such app",
            "You have no app with this client_id.",
        ));
    };
    let Some((_, session)) = &ctx.session else {
        return Ok(redirect("/portal/signin"));
    };
    let href = encode(&client.client_id);
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let mut body = format!(
        "<h1>{name}</h1>{error}<table><tbody>\
         <tr><th>client_id</th><td><code>{id}</code></td></tr>\
         <tr><th>client_use_code</th><td><code>{code}</code></td></tr>\
         <tr><th>Scopes</th><td>{scopes}</td></tr>\
         <tr><th>Redirect URIs</th><td>{uris}</td></tr></tbody></table>\
         <h2>Test tokens</h2><p class=\"muted\">Tokens for calling the APIs from their pages (\"try it\") against the virtual bank. \
         Its users sign in on the consent page, e.g. <code>hong</code> / <code>hong1234</code>.</p>",
        name = escape(&client.name),
        id = escape(&client.client_id),
        code = escape(&client.client_use_code),
        scopes = client
            .scopes
            .iter()
            .map(|s| scope_badge(s))
            .collect::<Vec<_>>()
            .join(" "),
        uris = client
            .redirect_uris
            .iter()
            .map(|u| format!("<code>{}</code>", escape(u)))
            .collect::<Vec<_>>()
            .join("<br>"),
    );
    let user_scopes: Vec<&String> = client
        .scopes
        .iter()
        .filter(|s| sfop_auth::oauth::USER_SCOPES.contains(&s.as_str()))
        .collect();
    if let Some(t) = session
        .user_token
        .as_ref()
        .filter(|t| t.client_id == client.client_id)
    {
        body.push_str(&token_html("User token", t));
    }
    if !user_scopes.is_empty() {
        let boxes: String = user_scopes
            .iter()
            .map(|s| {
                format!(
                    "<div class=\"row\"><input type=\"checkbox\" id=\"ts-{s}\" name=\"scope\" value=\"{s}\" checked> \
                     <label for=\"ts-{s}\"><b>{s}</b></label></div>",
                    s = escape(s)
                )
            })
            .collect();
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/portal/apps/{href}/authorize\">{csrf}\
             <fieldset><legend>Get a user token through the consent page</legend>{boxes}\
             <p><button class=\"primary\" type=\"submit\" id=\"get-user-token\">Get a user token</button></p></fieldset></form>",
            csrf = ctx.csrf_field(),
        );
    }
    if let Some(t) = session
        .oob_token
        .as_ref()
        .filter(|t| t.client_id == client.client_id)
    {
        body.push_str(&token_html("Institution (oob) token", t));
    }
    if client.allows_scope("oob") {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/portal/apps/{href}/oob-token\">{csrf}\
             <fieldset><legend>Get an institution (oob) token: client credentials</legend>\
             <label for=\"oob-secret\">client_secret</label><input type=\"password\" id=\"oob-secret\" name=\"client_secret\" autocomplete=\"off\" required>\
             <p><button type=\"submit\">Get an oob token</button></p></fieldset></form>",
            csrf = ctx.csrf_field(),
        );
    }
    Ok(ctx.page(&client.name, "/portal/apps", &body))
}

fn start_authorization(
    ctx: &mut Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id)? else {
        return Ok(error_page(
            404,
            "No such app",
            "You have no app with this client_id.",
        ));
    };
    let scopes: Vec<&str> = form_all(form, "scope")
        .into_iter()
        .filter(|s| client.allows_scope(s) && sfop_auth::oauth::USER_SCOPES.contains(s))
        .collect();
    if scopes.is_empty() {
        return app_page(ctx, client_id, Some("Pick at least one scope."));
    }
    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        state: random_hex(16)?,
        code_verifier: random_hex(32)?,
    };
    let challenge = sfop_auth::oauth::pkce_s256(&pending.code_verifier);
    let location = format!(
        "/oauth/2.0/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={}&code_challenge_method=S256",
        encode(&client.client_id),
        encode(&ctx.callback_url()),
        encode(&scopes.join(" ")),
        encode(&pending.state),
        encode(&challenge),
    );
    if let Some((id, session)) = &mut ctx.session {
        session.pending = Some(pending);
        ctx.portal.developers.save_session(id, session)?;
    }
    Ok(redirect(&location))
}

fn callback_page(ctx: &Ctx<'_>) -> PortalResponse {
    let q = parse_form(ctx.req.query.as_bytes());
    let pending = ctx.session.as_ref().and_then(|(_, s)| s.pending.as_ref());
    let Some(pending) = pending.filter(|p| p.state == form_get(&q, "state")) else {
        return error_page(
            400,
            "Authorization not recognised",
            "This callback does not match an authorization you started here. Start again from your app's page.",
        );
    };
    if !form_get(&q, "error").is_empty() {
        return error_page(
            400,
            "Authorization refused",
            &format!(
                "{} ({})",
                form_get(&q, "error_description"),
                form_get(&q, "error")
            ),
        );
    }
    let body = format!(
        "<h1>Exchange the code for a token</h1>\
         <p>The user agreed; the platform sent back an authorization code for <code>{client}</code> with scope <code>{scope}</code>. \
         Your server would now call <code>POST /oauth/2.0/token</code> with the code, the PKCE verifier and its client secret. \
         The portal does it for you: enter the secret you were shown at registration.</p>\
         <form method=\"post\" action=\"/portal/callback\">{csrf}\
         <input type=\"hidden\" name=\"code\" value=\"{code}\">\
         <label for=\"client_secret\">client_secret</label>\
         <input type=\"password\" id=\"client_secret\" name=\"client_secret\" autocomplete=\"off\" required>\
         <p><button class=\"primary\" type=\"submit\" id=\"exchange\">Get the token</button></p></form>",
        client = escape(&pending.client_id),
        scope = escape(form_get(&q, "scope")),
        csrf = ctx.csrf_field(),
        code = escape(form_get(&q, "code")),
    );
    ctx.page("Exchange the code", "/portal/apps", &body)
}

/// POSTs a form to the token endpoint; the JSON answer or the reason.
async fn token_request(
    ctx: &Ctx<'_>,
    fields: &[(&str, &str)],
) -> std::result::Result<Value, String> {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let answer = ctx
        .portal
        .upstream
        .send(UpstreamRequest {
            method: "POST".into(),
            path_and_query: "/oauth/2.0/token".into(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: body.into_bytes(),
            authority: ctx.req.authority.clone(),
        })
        .await?;
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| format!("the token endpoint answered {}", answer.status))?;
    if answer.status != 200 {
        return Err(format!(
            "{} ({})",
            json["rsp_message"].as_str().unwrap_or("refused"),
            json["rsp_code"].as_str().unwrap_or_default()
        ));
    }
    Ok(json)
}

fn test_token(client: &sfop_auth::Client, json: &Value) -> Option<TestToken> {
    Some(TestToken {
        client_id: client.client_id.clone(),
        client_use_code: client.client_use_code.clone(),
        access_token: json["access_token"].as_str()?.to_owned(),
        scope: json["scope"].as_str().unwrap_or_default().to_owned(),
        user_seq_no: json["user_seq_no"].as_str().map(str::to_owned),
        accounts: Vec::new(),
        expires_at_ms: sfop_core::time::now_millis()
            + json["expires_in"].as_u64().unwrap_or_default() * 1000,
    })
}

/// The fintech_use_nums the token may use, from the account list API (when
/// it is live and the token has `login`).
async fn accounts_of(ctx: &Ctx<'_>, token: &TestToken) -> Vec<String> {
    let Some(user) = &token.user_seq_no else {
        return Vec::new();
    };
    if !token.scope.split_whitespace().any(|s| s == "login") {
        return Vec::new();
    }
    let answer = ctx
        .portal
        .upstream
        .send(UpstreamRequest {
            method: "GET".into(),
            path_and_query: format!(
                "/v2.0/account/list?user_seq_no={}&include_cancel_yn=N&sort_order=D",
                encode(user)
            ),
            headers: vec![(
                "authorization".into(),
                format!("Bearer {}", token.access_token),
            )],
            body: Vec::new(),
            authority: ctx.req.authority.clone(),
        })
        .await;
    let Ok(answer) = answer else {
        return Vec::new();
    };
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    json["res_list"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| a["fintech_use_num"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn exchange_code(ctx: &mut Ctx<'_>, form: &[(String, String)]) -> Result<PortalResponse> {
    let Some(pending) = ctx.session.as_ref().and_then(|(_, s)| s.pending.clone()) else {
        return Ok(error_page(
            400,
            "Authorization not recognised",
            "Start again from your app's page.",
        ));
    };
    let Some(client) = owned_app(ctx, &pending.client_id)? else {
        return Ok(error_page(
            404,
            "No such app",
            "You have no app with this client_id.",
        ));
    };
    let callback = ctx.callback_url();
    let answer = token_request(
        ctx,
        &[
            ("grant_type", "authorization_code"),
            ("code", form_get(form, "code")),
            ("client_id", &client.client_id),
            ("client_secret", form_get(form, "client_secret")),
            ("redirect_uri", &callback),
            ("code_verifier", &pending.code_verifier),
        ],
    )
    .await;
    let token = match answer.map(|json| test_token(&client, &json)) {
        Ok(Some(token)) => token,
        Ok(None) => {
            return Ok(error_page(
                502,
                "No token",
                "The token endpoint sent no access_token.",
            ));
        }
        Err(message) => {
            return Ok(error_page(
                400,
                "The token endpoint refused",
                &format!("{message}. Start again from your app's page."),
            ));
        }
    };
    let accounts = accounts_of(ctx, &token).await;
    let token = TestToken { accounts, ..token };
    if let Some((id, session)) = &mut ctx.session {
        session.pending = None;
        session.user_token = Some(token);
        ctx.portal.developers.save_session(id, session)?;
    }
    Ok(redirect(&format!(
        "/portal/apps/{}",
        encode(&client.client_id)
    )))
}

async fn oob_token(
    ctx: &mut Ctx<'_>,
    client_id: &str,
    form: &[(String, String)],
) -> Result<PortalResponse> {
    let Some(client) = owned_app(ctx, client_id)? else {
        return Ok(error_page(
            404,
            "No such app",
            "You have no app with this client_id.",
        ));
    };
    let answer = token_request(
        ctx,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "oob"),
            ("client_id", &client.client_id),
            ("client_secret", form_get(form, "client_secret")),
        ],
    )
    .await;
    let token = match answer.map(|json| test_token(&client, &json)) {
        Ok(Some(token)) => token,
        Ok(None) => {
            return app_page(
                ctx,
                client_id,
                Some("The token endpoint sent no access_token."),
            );
        }
        Err(message) => return app_page(ctx, client_id, Some(&message)),
    };
    if let Some((id, session)) = &mut ctx.session {
        session.oob_token = Some(token);
        ctx.portal.developers.save_session(id, session)?;
    }
    Ok(redirect(&format!("/portal/apps/{}", encode(client_id))))
}
