//! The look every platform web page shares: the OAuth sign-in and consent
//! pages (sfop-auth) and the developer portal (sfop-portal). It lives here,
//! in the one crate both already depend on, because sfop-auth is data plane
//! and may not depend on the portal (ADR 0008). Plain server-rendered HTML
//! with one inline stylesheet and no script, written as maud templates:
//! every value put into a page is escaped unless it is marked `PreEscaped`
//! (docs/adr/0025).

use maud::{DOCTYPE, Markup, PreEscaped, Render, html};

/// The platform stylesheet. System fonts (with Korean fallbacks), one accent
/// colour, readable line length; no external resources.
pub const STYLESHEET: &str = "\
:root{--accent:#1a5fb4;--ink:#1d2430;--muted:#5b6573;--line:#dde2e8;--bg:#f4f6f8}\
*{box-sizing:border-box}\
body{font-family:system-ui,-apple-system,'Segoe UI','Noto Sans KR','Noto Sans CJK KR','Apple SD Gothic Neo',sans-serif;\
background:var(--bg);color:var(--ink);margin:0;line-height:1.5}\
header.top{background:#13233a;color:#fff;padding:.7rem 1.5rem;display:flex;flex-wrap:wrap;align-items:center;gap:1.2rem}\
header.top .brand{font-weight:700;color:#fff;text-decoration:none;margin-right:auto}\
header.top a{color:#cfe0ff;text-decoration:none}header.top a:hover{text-decoration:underline}\
header.top a.current{color:#fff;font-weight:600}\
main{max-width:64rem;margin:1.5rem auto;background:#fff;padding:1.5rem 2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
main.narrow{max-width:28rem;margin-top:3rem}\
h1{font-size:1.45rem;margin-top:0}h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}\
h3{font-size:1rem}a{color:var(--accent)}\
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.92rem}\
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}\
th{background:#f0f3f6;font-weight:600}\
code,pre{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:.88rem}\
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:.7rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
label{display:block;margin:.7rem 0 .2rem;font-weight:500}\
input[type=text],input[type=password],input[type=email],input[type=url],textarea{width:100%;padding:.5rem;border:1px solid #b8c0ca;border-radius:4px;font:inherit}\
textarea{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}\
fieldset{border:1px solid var(--line);border-radius:6px;margin:1rem 0}\
.row{margin:.4rem 0}.row label{display:inline;margin:0;font-weight:400}\
.error{color:#b00020;background:#fde8eb;padding:.5rem .7rem;border-radius:4px}\
.notice{background:#fff8e1;border:1px solid #f0d890;padding:.5rem .7rem;border-radius:4px}\
.ok{background:#e7f6ec;border:1px solid #a6d8b5;padding:.5rem .7rem;border-radius:4px}\
button,.button{display:inline-block;padding:.55rem 1.1rem;margin:.2rem .5rem .2rem 0;border-radius:4px;border:1px solid var(--accent);\
background:#fff;color:var(--accent);cursor:pointer;font:inherit;text-decoration:none}\
button.primary,.button.primary{background:var(--accent);color:#fff}\
small,.muted{color:var(--muted)}.nowrap{white-space:nowrap}\
.badge{display:inline-block;padding:.05rem .45rem;border-radius:999px;font-size:.8rem;font-weight:600;background:#e8eef7;color:#1a4a8a}\
.badge.live{background:#e3f4e8;color:#17692f}.badge.canary{background:#fff1d6;color:#8a5a00}\
.badge.deprecated{background:#fde8eb;color:#9b1c2c}.badge.retired{background:#eceff2;color:#5b6573}\
.badge.scope{background:#efe9fb;color:#5a3a9a}\
.entry{border-bottom:1px solid var(--line);padding:.3rem 0 .5rem}.entry h3{margin:.3rem 0}.entry p,.entry ul{margin:.25rem 0}\
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1rem}@media(max-width:50rem){.cols{grid-template-columns:1fr}}\
footer{max-width:64rem;margin:0 auto 2rem;padding:0 2rem;color:var(--muted);font-size:.85rem}";

/// What surrounds a page's content.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chrome<'a> {
    /// Links of the top bar as (href, label); `current` marks one.
    pub nav: &'a [(&'a str, &'a str)],
    pub current: &'a str,
    /// What the top bar shows at its right (the portal's search box and
    /// the signed-in developer): a template's markup, so nothing in it was
    /// escaped by hand.
    pub account: Option<&'a Markup>,
    /// A narrow card (sign-in and consent forms).
    pub narrow: bool,
}

/// A complete page around a template's `body`; `title` and the top bar's
/// links are escaped like everything a template writes.
pub fn layout(title: &str, chrome: &Chrome<'_>, body: impl Render) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · sfop" }
                style { (PreEscaped(STYLESHEET)) }
            }
            body {
                header.top {
                    a.brand href="/portal" { "sfop open banking" }
                    @for (href, label) in chrome.nav {
                        @if *href == chrome.current {
                            a.current href=(href) aria-current="page" { (label) }
                        } @else {
                            a href=(href) { (label) }
                        }
                    }
                    @if let Some(account) = chrome.account { (account) }
                }
                main class=[chrome.narrow.then_some("narrow")] { (body) }
                footer { "sfop — secure open platform for fintech services (ITU-T X.1149)" }
            }
        }
    }
}

/// The alert line of a form that was refused, or nothing.
pub fn error_line(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message {
            p.error role="alert" { (m) }
        }
    }
}

/// The content-security-policy of every platform page: no script, no
/// framing, forms only to this origin.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`CSP`] for a page that runs the platform's own script files (the
/// portal's copy buttons): `script-src 'self'` and nothing else is added, so
/// inline scripts, event-handler attributes and other origins stay refused.
pub const CSP_SELF_SCRIPTS: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`PAGE_HEADERS`] with another content-security-policy (one of this
/// module's, or a page's own that it documents where it is built).
pub fn page_headers_with_csp(csp: &str) -> Vec<(String, String)> {
    PAGE_HEADERS
        .iter()
        .map(|(k, v)| {
            let v = if *k == "content-security-policy" {
                csp
            } else {
                v
            };
            ((*k).to_owned(), v.to_owned())
        })
        .collect()
}

/// The security headers every platform page is sent with.
pub const PAGE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=UTF-8"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("content-security-policy", CSP),
];

/// `scheme://host[:port]` of an absolute URI, if it is a plain one.
pub fn origin_of(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let plain = matches!(scheme, "https" | "http")
        && !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    plain.then(|| &uri[..scheme.len() + 3 + end])
}

/// [`PAGE_HEADERS`] for a page whose form ends in a redirect to another
/// origin (the OAuth consent page redirects to the app): browsers apply
/// `form-action` to the redirect too, so the origins of `redirect_uris` are
/// allowed besides this one.
pub fn page_headers_redirecting_to(redirect_uris: &[String]) -> Vec<(String, String)> {
    let mut origins: Vec<&str> = redirect_uris.iter().filter_map(|u| origin_of(u)).collect();
    origins.sort_unstable();
    origins.dedup();
    let form_action = std::iter::once("'self'")
        .chain(origins)
        .collect::<Vec<_>>()
        .join(" ");
    PAGE_HEADERS
        .iter()
        .map(|(k, v)| {
            let v = if *k == "content-security-policy" {
                CSP.replace("form-action 'self'", &format!("form-action {form_action}"))
            } else {
                (*v).to_owned()
            };
            ((*k).to_owned(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_origins_join_form_action() {
        assert_eq!(
            origin_of("https://pay.example:8443/cb?x=1"),
            Some("https://pay.example:8443")
        );
        assert_eq!(origin_of("http://[::1]:8000/cb"), Some("http://[::1]:8000"));
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a b/"), None);
        let headers = page_headers_redirecting_to(&[
            "https://pay.example/cb".into(),
            "https://pay.example/other".into(),
            "http://localhost:8000/callback".into(),
            "https://x;script-src *".into(),
        ]);
        let csp = headers
            .iter()
            .find(|(k, _)| k == "content-security-policy")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        assert!(
            csp.contains("form-action 'self' http://localhost:8000 https://pay.example;"),
            "{csp}"
        );
        assert!(!csp.contains("script-src"), "{csp}");
    }

    #[test]
    fn the_script_policy_adds_only_self_scripts() {
        assert_eq!(
            CSP_SELF_SCRIPTS.replace(" script-src 'self';", ""),
            CSP,
            "only script-src 'self' differs"
        );
        let headers = page_headers_with_csp(CSP_SELF_SCRIPTS);
        assert_eq!(headers.len(), PAGE_HEADERS.len());
        assert!(headers.contains(&("content-security-policy".into(), CSP_SELF_SCRIPTS.into())));
        assert!(headers.contains(&("cache-control".into(), "no-store".into())));
    }

    #[test]
    fn layout_escapes_title_and_nav() {
        let page = layout(
            "<b>",
            &Chrome {
                nav: &[("/portal?a=\"", "<i>")],
                current: "",
                account: None,
                narrow: true,
            },
            html! { p { "ok" } },
        )
        .into_string();
        assert!(page.contains("<title>&lt;b&gt; · sfop</title>"), "{page}");
        assert!(
            page.contains("href=\"/portal?a=&quot;\">&lt;i&gt;</a>"),
            "{page}"
        );
        assert!(page.contains("<main class=\"narrow\"><p>ok</p></main>"));
    }
}
