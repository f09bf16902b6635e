//! What the platform serves, read from the catalogue: the catalogue page,
//! API pages, permissions, change notices and their Atom feed, testbed reports.

use super::*;

pub(super) fn badge(state: &VersionState) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        state.class(),
        escape(&state.label())
    )
}

pub(super) fn scope_badge(scope: &str) -> String {
    format!("<span class=\"badge scope\">{}</span>", escape(scope))
}

pub(super) fn routes_html(v: &VersionEntry) -> String {
    v.manifest
        .routes
        .iter()
        .map(|r| format!("<code>{} {}</code>", escape(&r.method), escape(&r.path)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// The states of every served version, e.g. `live 1.0.0 · canary 1.1.0 10%`.
pub(super) fn status_html(api: &ApiEntry) -> String {
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

pub(super) fn catalogue(ctx: &Ctx<'_>) -> PortalResponse {
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
pub(super) fn fields_table(
    fields: &[sfop_core::manifest::FieldDoc],
    with_required: bool,
    anchor: &str,
) -> String {
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
            "<tr id=\"{anchor}-{}\"><td><code>{}</code></td><td>{}</td><td>{}</td>{required}<td>{}</td></tr>",
            escape(&field_anchor(&f.name)),
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

/// A field's name as part of an element id: `res_list[].bank_name` →
/// `res_list-bank_name`.
pub(super) fn field_anchor(name: &str) -> String {
    name.replace("[].", "-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect()
}

/// The version selector: every version the registry knows, newest first,
/// with its state; choosing one shows that version's page. A plain GET
/// form (the portal's script submits it on change; without the script the
/// button does).
fn version_selector(api: &ApiEntry, shown: &VersionEntry) -> String {
    let options: String = api
        .versions
        .iter()
        .map(|h| {
            let version = h.manifest.version.to_string();
            format!(
                "<option value=\"{v}\"{selected}>{v} — {state}</option>",
                v = escape(&version),
                selected = if h.manifest.version == shown.manifest.version {
                    " selected"
                } else {
                    ""
                },
                state = escape(&h.state.label()),
            )
        })
        .collect();
    format!(
        "<form method=\"get\" action=\"/portal/apis/{href}\" class=\"versions\">\
         <label for=\"version-select\">Version</label>\
         <select id=\"version-select\" name=\"version\" data-autosubmit>{options}</select> \
         <button type=\"submit\" id=\"version-show\">Show</button></form>",
        href = encode(&api.name),
    )
}

pub(super) fn find_api(ctx: &Ctx<'_>, name: &str) -> Option<ApiEntry> {
    ctx.portal
        .catalog
        .apis()
        .into_iter()
        .find(|a| a.name == name)
}

pub(super) fn api_page(
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
    body.push_str(&version_selector(&api, v));
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
        fields_table(&docs.request, true, "req"),
        fields_table(&docs.response, false, "res"),
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
        body.push_str(&samples_html(&ctx.base_url(), v));
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
    ctx.scripted_page(&api.name, "/portal", &body)
}

// ---------- permissions ----------

pub(super) fn permissions(ctx: &Ctx<'_>) -> PortalResponse {
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
         <code>examples/cross-domain</code> in the sfop repository runs all of this end to end. \
         To check a token's signatures yourself, use the platform's public keys on <a href=\"/portal/keys\">Keys</a>.</p>",
        sample = escape(ATTENUATION_SAMPLE),
    );
    ctx.page("Permissions", "/portal/permissions", &body)
}

/// Sample 03 of `host/auth/samples`, abridged.
pub(super) const ATTENUATION_SAMPLE: &str = "// authority block, signed by the platform root key
client(\"sfop-demo-client\");
client_use_code(\"M202300001\");
user(\"1100000001\");
scope(\"inquiry\"); scope(\"login\"); scope(\"transfer\");
account(\"120230000100000000000001\");
check if time($t), $t <= 2100-01-01T00:00:00Z;

// block 1, appended offline by the app for its partner
check if operation(\"read\") or amount($a), $a <= 30000;";

// ---------- change notices ----------

/// A notice as HTML. In the feed (`feed`) without the version's state now,
/// so an entry's text stays what it was when it was published.
pub(super) fn notice_html(n: &Notice, feed: bool) -> String {
    let badge = if feed {
        String::new()
    } else {
        format!(" {}", badge(&n.state))
    };
    let event = match &n.event {
        crate::changes::Event::Published => String::new(),
        crate::changes::Event::Deprecated { .. } => {
            " <span class=\"badge deprecated\">deprecation</span>".into()
        }
        crate::changes::Event::Retired => " <span class=\"badge retired\">retirement</span>".into(),
    };
    let mut out = format!(
        "<h3><a href=\"/portal/apis/{href}?version={v}\">{api} {version}</a>{event}{badge} <small>{at}</small></h3>",
        href = encode(&n.api),
        v = encode(&n.version),
        api = escape(&n.api),
        version = escape(&n.version),
        at = kst(n.at_ms),
    );
    let move_to = |what: &str| match &n.successor {
        Some(s) => format!(
            " {what} Move to the live version, <a href=\"/portal/apis/{}?version={}\">{}</a>.",
            encode(&n.api),
            encode(s),
            escape(s)
        ),
        None => String::new(),
    };
    match &n.event {
        crate::changes::Event::Deprecated { sunset } => {
            let _ = write!(
                out,
                "<p class=\"notice\">Deprecated: stops serving on <b>{}</b>.{}</p>",
                escape(sunset),
                move_to("")
            );
            return out;
        }
        crate::changes::Event::Retired => {
            let _ = write!(
                out,
                "<p class=\"notice\">Retired: out of service; calls are refused.{}</p>",
                move_to("")
            );
            return out;
        }
        crate::changes::Event::Published => {}
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
                    match c.detail() {
                        d if d.is_empty() => String::new(),
                        d => format!(": {}", escape(&d)),
                    },
                    if c.is_breaking() {
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

pub(super) fn changes_page(ctx: &Ctx<'_>) -> PortalResponse {
    let list = notices(&ctx.portal.catalog.apis());
    let mut body = String::from(
        "<h1>Change notices</h1><p class=\"muted\">Each version against the one before it: documented fields, response codes, routes and scope; deprecations with their sunset dates. \
         Subscribe: <a href=\"/portal/changes.atom\">Atom feed</a>.</p>",
    );
    for n in &list {
        let _ = write!(
            body,
            "<section class=\"entry\">{}</section>",
            notice_html(n, false)
        );
    }
    if list.is_empty() {
        body.push_str("<p class=\"muted\">Nothing published yet.</p>");
    }
    ctx.page("Change notices", "/portal/changes", &body)
}

pub(super) fn atom(ctx: &Ctx<'_>) -> PortalResponse {
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
        let _ = writeln!(
            xml,
            "<entry><title>{title}</title><id>{id}</id>\
             <link href=\"{base}/portal/apis/{href}?version={v}\"/><updated>{at}</updated>\
             <content type=\"html\">{content}</content></entry>",
            title = escape(&n.title()),
            id = escape(&n.id()),
            base = escape(&base),
            href = escape(&encode(&n.api)),
            v = escape(&encode(&n.version)),
            at = rfc3339(n.at_ms),
            // The HTML of the notice, escaped once more as XML text.
            content = escape(&notice_html(n, true)),
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

pub(super) fn report(ctx: &Ctx<'_>, name: &str, version: &str) -> PortalResponse {
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
