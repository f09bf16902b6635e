//! What the platform serves, read from the catalogue: the catalogue page,
//! API pages, permissions, change notices and their Atom feed, testbed reports.

use maud::{Markup, PreEscaped, html};

use super::*;

pub(super) fn badge(state: &VersionState) -> Markup {
    html! { span class={ "badge " (state.class()) } { (state.label()) } }
}

pub(super) fn scope_badge(scope: &str) -> Markup {
    html! { span.badge.scope { (scope) } }
}

pub(super) fn routes_html(v: &VersionEntry) -> Markup {
    html! {
        @for (i, r) in v.manifest.routes.iter().enumerate() {
            @if i > 0 { br; }
            code { (r.method) " " (r.path) }
        }
    }
}

/// The states of every served version, e.g. `live 1.0.0 · canary 1.1.0 10%`.
pub(super) fn status_html(api: &ApiEntry) -> Markup {
    let current = api.current().map(|v| &v.manifest.version);
    html! {
        @for (i, v) in api.versions.iter().filter(|v| v.state.is_served()).enumerate() {
            @if i > 0 { " " }
            (badge(&v.state))
            @if Some(&v.manifest.version) != current {
                " " small { (v.manifest.version.to_string()) }
            }
        }
    }
}

pub(super) fn catalogue(ctx: &Ctx<'_>) -> PortalResponse {
    let apis = ctx.portal.catalog.apis();
    let served: Vec<(&ApiEntry, &VersionEntry)> = apis
        .iter()
        .filter_map(|api| Some((api, api.current()?)))
        .collect();
    let body = html! {
        h1 { "APIs" }
        p.muted {
            "The " (served.len()) " APIs this platform serves right now, read from what is live. \
             Also as " a href="/portal/openapi.json" { "OpenAPI 3.1" } "; what changed is in the "
            a href="/portal/changes" { "change notices" } " (" a href="/portal/changes.atom" { "Atom feed" } "). \
             Every call needs an access token with the API's scope: see "
            a href="/portal/permissions" { "permissions" } "."
        }
        div.table-wrap { table {
            thead { tr { th { "API" } th { "Version" } th { "Call" } th { "Scope" } th { "Description" } th { "Status" } } }
            tbody {
                @for (api, v) in &served {
                    tr {
                        td.nowrap { a href={ "/portal/apis/" (encode(&api.name)) } { (api.name) } }
                        td { (v.manifest.version.to_string()) }
                        td { (routes_html(v)) }
                        td { (scope_badge(&v.manifest.scope)) }
                        td { (v.manifest.description) }
                        td { (status_html(api)) }
                    }
                }
            }
        } }
    };
    ctx.page("APIs", "/portal", body)
}

/// A field's type and length in separate columns: `AN(20)` → (`AN`, `20`).
pub(super) fn fields_table(
    fields: &[sfop_core::manifest::FieldDoc],
    with_required: bool,
    anchor: &str,
) -> Markup {
    if fields.is_empty() {
        return html! { p.muted { "None documented." } };
    }
    html! {
        div.table-wrap { table {
            thead {
                tr {
                    th { "Field" } th { "Type" } th { "Length" }
                    @if with_required { th { "Required" } }
                    th { "Description" }
                }
            }
            tbody {
                @for f in fields {
                    @let (kind, len) = parse_kind(&f.kind);
                    tr id={ (anchor) "-" (field_anchor(&f.name)) } {
                        td { code { (f.name) } }
                        td { (kind) }
                        td { @if let Some(n) = len { (n) } }
                        @if with_required { td { (if f.required { "yes" } else { "no" }) } }
                        td { (f.description) }
                    }
                }
            }
        } }
    }
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
fn version_selector(api: &ApiEntry, shown: &VersionEntry) -> Markup {
    html! {
        form method="get" action={ "/portal/apis/" (encode(&api.name)) } class="versions" {
            label for="version-select" { "Version" }
            select id="version-select" name="version" data-autosubmit {
                @for h in &api.versions {
                    @let version = h.manifest.version.to_string();
                    option value=(version) selected[h.manifest.version == shown.manifest.version] {
                        (version) " — " (h.state.label())
                    }
                }
            }
            " "
            button type="submit" id="version-show" { "Show" }
        }
    }
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
    let example = docs.example.as_ref().map(|example| {
        let request = match m.routes.first() {
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
        (request, pretty_json(&example.response))
    });
    let base = ctx.base_url();
    let body = html! {
        h1 { (api.name) " " small { (m.version.to_string()) } " " (badge(&v.state)) }
        p { (m.description) }
        (version_selector(&api, v))
        @if let VersionState::Deprecated { sunset } = &v.state {
            p.notice {
                "Deprecated: this version stops serving on " b { (sunset) } ". See the "
                a href="/portal/changes" { "change notices" } "."
            }
        }
        @if !v.state.is_served() {
            p.notice { "This version is not served; calls reach the live one." }
        }
        h2 { "Call" }
        div.table-wrap { table {
            tbody {
                tr { th { "Route" } td { (routes_html(v)) } }
                tr { th { "Base URL" } td { code { (base) } } }
                tr { th { "Scope" } td { (scope_badge(&m.scope)) " — " (scope_text(&m.scope)) } }
                tr {
                    th { "Request" }
                    td {
                        @if get_like { "query parameters" } @else {
                            "JSON body (" code { "content-type: application/json" } ")"
                        }
                    }
                }
                tr {
                    th { "Limits" }
                    td { "body up to " (m.limits.max_body_kib) " KiB, answer within " (m.limits.timeout_ms) " ms" }
                }
            }
        } }
        h2 { "Request fields" }
        (fields_table(&docs.request, true, "req"))
        h2 { "Response fields" }
        p.muted {
            "After the common header: " code { "api_tran_id" } ", " code { "api_tran_dtm" } ", "
            code { "rsp_code" } ", " code { "rsp_message" } "."
        }
        (fields_table(&docs.response, false, "res"))
        @if let Some((request, response)) = &example {
            h2 { "Example" }
            div.cols {
                div { h3 { "Request" } pre { (request) } }
                div { h3 { "Response" } pre { (response) } }
            }
            (samples_html(&base, v))
        }
        h2 { "Response codes" }
        @if docs.codes.is_empty() {
            p.muted { "Only " code { "A0000" } " (success) is documented." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "rsp_code" } th { "Meaning" } } }
                tbody {
                    tr { td { code { "A0000" } } td { "Success" } }
                    @for c in &docs.codes {
                        tr { td { code { (c.code) } } td { (c.meaning) } }
                    }
                }
            } }
        }
        (try_it_section(ctx, &api, v, tried))
        h2 { "Version history" }
        div.table-wrap { table {
            thead {
                tr { th { "Version" } th { "Status" } th { "Uploaded" } th { "Component SHA-256" } th { "Testbed report" } }
            }
            tbody {
                @for h in &api.versions {
                    @let version = h.manifest.version.to_string();
                    tr {
                        td { a href={ "/portal/apis/" (encode(&api.name)) "?version=" (encode(&version)) } { (version) } }
                        td { (badge(&h.state)) }
                        td { (kst(h.uploaded_at_ms)) }
                        td { code title=(h.sha256) { (h.sha256.get(..12).unwrap_or(&h.sha256)) "…" } }
                        td {
                            @if h.report_html.is_some() {
                                a href={ "/portal/reports/" (encode(&api.name)) "/" (encode(&version)) } { "report" }
                            } @else {
                                span.muted { "none yet" }
                            }
                        }
                    }
                }
            }
        } }
    };
    ctx.scripted_page(&api.name, "/portal", body)
}

// ---------- permissions ----------

pub(super) fn permissions(ctx: &Ctx<'_>) -> PortalResponse {
    let apis = ctx.portal.catalog.apis();
    let body = html! {
        h1 { "Permissions" }
        p {
            "Every API needs an OAuth 2.0 access token carrying its " b { "scope" } ". Tokens are "
            a href="https://www.biscuitsec.org/" { "biscuits" }
            ": signed capability tokens the gateway checks with Datalog on every call."
        }
        div.table-wrap { table {
            thead { tr { th { "Scope" } th { "What it allows" } th { "Granted by" } th { "APIs that need it" } } }
            tbody {
                @for scope in SCOPES {
                    @let users: Vec<&ApiEntry> = apis
                        .iter()
                        .filter(|a| a.current().is_some_and(|v| v.manifest.scope == *scope))
                        .collect();
                    tr {
                        td { (scope_badge(scope)) }
                        td { (scope_text(scope)) }
                        td {
                            @if *scope == "oob" {
                                "the platform, to the institution (client credentials)"
                            } @else {
                                "the account holder, on the consent page"
                            }
                        }
                        td {
                            @if users.is_empty() { span.muted { "none live" } }
                            @for (i, a) in users.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href={ "/portal/apis/" (encode(&a.name)) } { (a.name) }
                            }
                        }
                    }
                }
            }
        } }
        h2 { "How consent works" }
        ol {
            li {
                "Your app sends the user to " code { "/oauth/2.0/authorize" }
                " with the scopes it needs (authorization code flow, PKCE recommended)."
            }
            li {
                "The user signs in with their bank credentials (your app never sees them), picks the accounts \
                 and the permissions to grant, and agrees."
            }
            li {
                "Your server exchanges the code at " code { "/oauth/2.0/token" }
                " for an access token naming the user, your app, the granted scopes and the consented accounts ("
                code { "fintech_use_num" } ")."
            }
            li {
                "On every call the gateway checks the scope, that each account the request names is consented, \
                 that the user is the token's, and every check of every block. The user can withdraw consent at \
                 any time (" code { "/v2.0/user/unlink" } "); the tokens die at once."
            }
        }
        h2 { "Attenuation: narrowing a token offline" }
        p {
            "A holder can append a block of checks to a token without asking the platform, and pass the \
             narrower token on, for example to a partner. Blocks can only restrict: facts a later block \
             declares are not trusted. This is a token issued to " code { "sfop-demo-client" } " for user "
            code { "1100000001" } ", with a block its holder appended so the partner may read but move at \
             most ₩30,000:"
        }
        pre { (ATTENUATION_SAMPLE) }
        p {
            "A withdrawal of ₩30,001 with this token is refused (" code { "A0301" } "); a balance inquiry \
             passes. A bank can also co-sign consent in a third-party block, which the gateway requires for \
             the scopes the operator configures. " code { "examples/cross-domain" }
            " in the sfop repository runs all of this end to end. To check a token's signatures yourself, \
             use the platform's public keys on " a href="/portal/keys" { "Keys" } "."
        }
    };
    ctx.page("Permissions", "/portal/permissions", body)
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
pub(super) fn notice_html(n: &Notice, feed: bool) -> Markup {
    use crate::changes::Event;
    let move_to = html! {
        @if let Some(s) = &n.successor {
            " Move to the live version, "
            a href={ "/portal/apis/" (encode(&n.api)) "?version=" (encode(s)) } { (s) } "."
        }
    };
    html! {
        h3 {
            a href={ "/portal/apis/" (encode(&n.api)) "?version=" (encode(&n.version)) } {
                (n.api) " " (n.version)
            }
            @match &n.event {
                Event::Published => {}
                Event::Deprecated { .. } => { " " span.badge.deprecated { "deprecation" } }
                Event::Retired => { " " span.badge.retired { "retirement" } }
            }
            @if !feed { " " (badge(&n.state)) }
            " " small { (kst(n.at_ms)) }
        }
        @match (&n.event, &n.previous) {
            (Event::Deprecated { sunset }, _) => {
                p.notice { "Deprecated: stops serving on " b { (sunset) } "." (move_to) }
            }
            (Event::Retired, _) => {
                p.notice { "Retired: out of service; calls are refused." (move_to) }
            }
            (Event::Published, None) => { p.muted { "First version." } }
            (Event::Published, Some(prev)) if n.changes.is_empty() => {
                p.muted { "No contract change since " (prev) "." }
            }
            (Event::Published, Some(prev)) => {
                p { "Changes since " (prev) ":" }
                ul {
                    @for c in &n.changes {
                        @let detail = c.detail();
                        li {
                            b { (c.kind.label()) } " " (c.subject)
                            @if !detail.is_empty() { ": " (detail) }
                            @if c.is_breaking() { " " span.badge.deprecated { "breaking" } }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn changes_page(ctx: &Ctx<'_>) -> PortalResponse {
    let list = notices(&ctx.portal.catalog.apis());
    let body = html! {
        h1 { "Change notices" }
        p.muted {
            "Each version against the one before it: documented fields, response codes, routes and scope; \
             deprecations with their sunset dates. Subscribe: "
            a href="/portal/changes.atom" { "Atom feed" } "."
        }
        @for n in &list {
            section.entry { (notice_html(n, false)) }
        }
        @if list.is_empty() {
            p.muted { "Nothing published yet." }
        }
    };
    ctx.page("Change notices", "/portal/changes", body)
}

/// The change notices as an Atom feed (RFC 4287), written with the same
/// templates: maud escapes text and attributes for XML as for HTML; every
/// element is closed (`link {}`), as XML wants.
pub(super) fn atom(ctx: &Ctx<'_>) -> PortalResponse {
    let list = notices(&ctx.portal.catalog.apis());
    let base = ctx.base_url();
    let updated = list.iter().map(|n| n.at_ms).max().unwrap_or_default();
    let feed = html! {
        (PreEscaped("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"))
        feed xmlns="http://www.w3.org/2005/Atom" {
            title { "sfop API change notices" }
            id { (base) "/portal/changes.atom" }
            link rel="self" href={ (base) "/portal/changes.atom" } {}
            link href={ (base) "/portal/changes" } {}
            updated { (rfc3339(updated)) }
            author { name { "sfop platform" } }
            "\n"
            @for n in &list {
                entry {
                    title { (n.title()) }
                    id { (n.id()) }
                    link href={ (base) "/portal/apis/" (encode(&n.api)) "?version=" (encode(&n.version)) } {}
                    updated { (rfc3339(n.at_ms)) }
                    // The notice's HTML, escaped once more as XML text.
                    content type="html" { (notice_html(n, true).into_string()) }
                }
                "\n"
            }
        }
        "\n"
    };
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
        body: feed.into_string().into_bytes(),
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
    // The testbed renders and escapes its report, as a fragment without a
    // document of its own; the page's policy allows no script in any case.
    let body = html! {
        h1 { "Testbed report: " (name) " " (version) }
        p.muted {
            "Component " code { (v.sha256) } ", " (badge(&v.state)) ". "
            a href={ "/portal/apis/" (encode(name)) "?version=" (encode(version)) } { "API page" }
        }
        section.report.table-wrap { (PreEscaped(report)) }
    };
    ctx.page("Testbed report", "/portal/changes", body)
}
