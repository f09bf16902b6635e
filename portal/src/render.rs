//! Small pieces every page uses: the shared layout, escaping, forms, cookies
//! and times.

use maud::{Markup, PreEscaped, html};
use sfop_core::html::{Chrome, PAGE_HEADERS, layout, page_headers_with_csp};

use crate::PortalResponse;

/// The portal's top bar.
pub(crate) const NAV: &[(&str, &str)] = &[
    ("/portal", "APIs"),
    ("/portal/permissions", "Permissions"),
    ("/portal/keys", "Keys"),
    ("/portal/changes", "Changes"),
    ("/portal/status", "Status"),
    ("/portal/reference", "Reference"),
    ("/portal/apps", "My apps"),
    ("/portal/openapi.json", "OpenAPI"),
];

/// What the portal adds to the shared stylesheet: the search box in the top
/// bar, copy buttons, and what keeps every page within a 390 px wide screen
/// (wide tables scroll inside their box; long tokens and numbers outside
/// tables wrap; `break-word`, not `anywhere`, so table columns keep their
/// words whole).
const PORTAL_CSS: &str = "\
form.search{display:flex;gap:.3rem;margin:0}\
form.search input{padding:.3rem .5rem;border:1px solid #b8c0ca;border-radius:4px;font:inherit;width:13rem;max-width:100%}\
form.search button{margin:0;padding:.3rem .6rem}\
.table-wrap{overflow-x:auto;max-width:100%}\
main code,main a,main label{overflow-wrap:break-word}\
.sample-head{display:flex;justify-content:space-between;align-items:center;gap:.5rem;margin-top:.8rem}\
.sample-head h3{margin:0}button.copy{margin:0;padding:.2rem .7rem;font-size:.85rem}\
select{font:inherit;padding:.3rem;max-width:100%}\
.hit{margin:.6rem 0}.hit p{margin:.15rem 0}mark{background:#fff1a8}\
main.wide{max-width:80rem;padding:0}\
section.report .pass{color:#060}section.report .fail{color:#b00;font-weight:bold}section.report .skip{color:#777}\
@media(max-width:40rem){main{margin:.5rem;padding:1rem}header.top{padding:.6rem 1rem;gap:.5rem .9rem}footer{padding:0 1rem}form.search input{width:100%}}";

/// The alert line of a form that was refused, or nothing.
pub(crate) use sfop_core::html::error_line;

/// The name of the session cookie.
pub(crate) const COOKIE: &str = "sfop_portal";

/// Who is looking at a page, for its top bar.
#[derive(Debug, Clone, Default)]
pub(crate) struct Viewer {
    pub email: Option<String>,
    pub csrf: String,
    /// The page being looked at (path and query), where "Sign in" returns
    /// to; empty for none.
    pub next: String,
}

impl Viewer {
    fn account_html(&self) -> Markup {
        html! {
            form.search method="get" action="/portal/search" role="search" {
                input type="search" name="q" id="nav-search" placeholder="Search APIs and fields"
                    aria-label="Search APIs and fields";
                button type="submit" { "Search" }
            }
            @match &self.email {
                Some(email) => {
                    span { (email) }
                    form method="post" action="/portal/signout" style="display:inline" {
                        input type="hidden" name="csrf" value=(self.csrf);
                        button type="submit" style="margin:0;padding:.2rem .6rem" { "Sign out" }
                    }
                }
                None => {
                    @let next = safe_next(&self.next).map(|n| format!("?next={}", encode(n))).unwrap_or_default();
                    a href={ "/portal/signin" (next) } { "Sign in" }
                    a href={ "/portal/signup" (next) } { "Sign up" }
                }
            }
        }
    }
}

/// `next` if it is a path on the portal to return to after signing in:
/// `/portal` or below it, printable ASCII without backslashes, so a browser
/// cannot read it as another origin (`//host`, `/\host`, `https:…`). Any
/// other value is ignored: never an open redirect.
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let rest = next.strip_prefix(crate::PREFIX)?;
    let below = rest.is_empty() || rest.starts_with(['/', '?', '#']);
    let plain = next.len() <= 1024
        && next
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'\\');
    (below && plain && !rest.starts_with("//")).then_some(next)
}

/// The portal's stylesheet and `body`. A wide table scrolls inside its
/// box instead of widening the page: each page's template puts it in a
/// `div.table-wrap`.
fn portal_main(body: Markup) -> Markup {
    html! {
        style { (PreEscaped(PORTAL_CSS)) }
        (body)
    }
}

/// A portal page with status `status`.
pub(crate) fn page(
    status: u16,
    title: &str,
    current: &str,
    viewer: &Viewer,
    body: Markup,
) -> PortalResponse {
    html_response(status, page_html(title, current, viewer, body))
}

fn page_html(title: &str, current: &str, viewer: &Viewer, body: Markup) -> String {
    let account = viewer.account_html();
    let chrome = Chrome {
        nav: NAV,
        current,
        account: Some(&account),
        narrow: false,
    };
    layout(title, &chrome, portal_main(body)).into_string()
}

/// A portal page that loads the script files `scripts` (URLs on this
/// origin, from [`crate::assets::url`]) at its end, sent with `csp`: one
/// that allows `script-src 'self'` and never inline scripts.
pub(crate) fn scripted_page(
    title: &str,
    current: &str,
    viewer: &Viewer,
    body: Markup,
    scripts: &[String],
    csp: &str,
) -> PortalResponse {
    let body = html! {
        (body)
        @for src in scripts {
            script src=(src) {}
        }
    };
    let html = page_html(title, current, viewer, body);
    PortalResponse {
        status: 200,
        headers: page_headers_with_csp(csp),
        body: html.into_bytes(),
    }
}

/// A narrow page (sign-in, sign-up), like the OAuth pages.
pub(crate) fn narrow_page(status: u16, title: &str, body: Markup) -> PortalResponse {
    let chrome = Chrome {
        nav: NAV,
        current: "",
        account: None,
        narrow: true,
    };
    html_response(
        status,
        layout(title, &chrome, portal_main(body)).into_string(),
    )
}

pub(crate) fn html_response(status: u16, html: String) -> PortalResponse {
    PortalResponse {
        status,
        headers: PAGE_HEADERS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: html.into_bytes(),
    }
}

pub(crate) fn error_page(status: u16, title: &str, message: &str) -> PortalResponse {
    page(
        status,
        title,
        "",
        &Viewer::default(),
        html! {
            h1 { (title) }
            p.error { (message) }
            p { a href="/portal" { "Back to the APIs" } }
        },
    )
}

pub(crate) fn redirect(location: &str) -> PortalResponse {
    PortalResponse {
        status: 303,
        headers: vec![
            ("location".into(), location.to_owned()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}

pub(crate) fn with_header(mut r: PortalResponse, name: &str, value: String) -> PortalResponse {
    r.headers.push((name.to_owned(), value));
    r
}

/// `Set-Cookie` for a session: not readable by script, sent only over HTTPS
/// (browsers treat `localhost` as secure too) and only with same-site requests.
pub(crate) fn session_cookie(id: &str, max_age_secs: u64) -> String {
    format!(
        "{COOKIE}={id}; Path=/portal; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    )
}

pub(crate) fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

pub(crate) fn json_response(status: u16, content_type: &str, body: Vec<u8>) -> PortalResponse {
    PortalResponse {
        status,
        headers: vec![
            ("content-type".into(), content_type.to_owned()),
            ("cache-control".into(), "no-cache".into()),
            ("x-content-type-options".into(), "nosniff".into()),
            ("access-control-allow-origin".into(), "*".into()),
        ],
        body,
    }
}

/// `application/x-www-form-urlencoded` (or a query string) as pairs, in
/// order, read by the platform's one decoder ([`sfop_core::form`]), the one
/// the gateway's authorisation and the plugin SDK use.
pub(crate) fn parse_form(input: &[u8]) -> Vec<(String, String)> {
    sfop_core::form::parse(input).into_pairs()
}

/// Percent-encodes for a query string or form body.
pub(crate) use sfop_core::form::encode;

pub(crate) fn form_get<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

pub(crate) fn form_all<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// What a scope lets an app do.
pub(crate) fn scope_text(scope: &str) -> &'static str {
    match scope {
        "login" => {
            "See the user's name and which accounts they registered (user info, account list)"
        }
        "inquiry" => "See balances and transactions of the accounts the user picked",
        "transfer" => "Withdraw from the accounts the user picked (payments)",
        "oob" => "Act as the institution itself: bank status, deposits, real-name checks",
        _ => "Other access",
    }
}

/// `2026-11-22T13:05:09Z`.
pub(crate) fn rfc3339(ms: u64) -> String {
    sfop_core::time::rfc3339(ms)
}

/// `2026-11-22 22:05 KST`.
pub(crate) fn kst(ms: u64) -> String {
    let minute = sfop_core::time::date_and_minute(ms, sfop_core::time::KST_OFFSET_MINUTES);
    format!("{minute} KST")
}

/// A JSON text pretty-printed, or as it is when it is not JSON.
pub(crate) fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_round_trip() {
        let text = format!("a={}&b=x+y&c=%ZZ&d", encode("홍 <&>="));
        let form = parse_form(text.as_bytes());
        assert_eq!(form_get(&form, "a"), "홍 <&>=");
        assert_eq!(form_get(&form, "b"), "x y");
        assert_eq!(form_get(&form, "c"), "%ZZ");
        assert_eq!(form_get(&form, "d"), "");
        assert_eq!(form_get(&form, "e"), "");
        assert_eq!(parse_form(b"x=%4"), vec![("x".into(), "%4".into())]);
        // A `+` is no hex digit: `%+f` stays as it is (and its `+` a space).
        assert_eq!(parse_form(b"x=%+f"), vec![("x".into(), "% f".into())]);
        assert_eq!(parse_form(b"x=%41"), vec![("x".into(), "A".into())]);
    }

    #[test]
    fn next_stays_on_the_portal() {
        for ok in [
            "/portal",
            "/portal/apis/x?version=1.0.0",
            "/portal/apps#try",
            "/portal?q=a",
        ] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in [
            "",
            "https://evil.example/portal",
            "//evil.example/portal",
            "/portal//evil.example",
            "/\\evil.example",
            "/portal\\..\\x",
            "/portalx",
            "portal",
            "/portal/ x",
            "/portal/\nx",
            "javascript:alert(1)",
            "/other",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cookies_and_times() {
        assert_eq!(
            cookie_value(Some("a=1; sfop_portal=abc; b=2"), COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value(None, COOKIE), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(kst(0), "1970-01-01 09:00 KST");
    }
}
