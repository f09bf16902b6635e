//! The portal's pages and their routes. Every page reads the catalogue
//! afresh. Every page is a maud template: every string that came from a
//! package, a developer or an API answer is escaped by the template
//! (docs/adr/0025); the only `PreEscaped` are the testbed's report (escaped
//! by the testbed), the stylesheet and the feed's XML declaration.

mod apps;
mod docs;
mod keys;
mod reference;
mod samples;
mod search;
mod status;
mod try_it;

use std::fmt::Write as _;

use serde_json::Value;
use sfop_auth::ClientSpec;

use crate::changes::{Notice, notices};
use crate::developers::{PendingAuthorization, Session, SignUpError, TestToken, TokenAccount};
use crate::openapi::parse_kind;
use crate::render::{
    COOKIE, Viewer, cookie_value, encode, error_page, form_all, form_get, json_response, kst,
    narrow_page, page, parse_form, pretty_json, redirect, rfc3339, scope_text, session_cookie,
    with_header,
};
use crate::{
    ApiEntry, Error, Portal, PortalRequest, PortalResponse, Result, ServiceError, UpstreamRequest,
    VersionEntry, VersionState, random_hex,
};

use apps::*;
use docs::*;
use keys::*;
use reference::*;
use samples::*;
use search::*;
use status::*;
use try_it::*;

const SCOPES: &[&str] = &["login", "inquiry", "transfer", "oob"];

/// The fields of the portal's forms that may repeat (checkboxes).
const FORM_LISTS: &[&str] = &["scope"];

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

    fn page(&self, title: &str, current: &str, body: maud::Markup) -> PortalResponse {
        page(200, title, current, &self.viewer, body)
    }

    /// A page with the portal's script (copy buttons, version selector),
    /// sent with a policy that allows scripts from this origin only.
    fn scripted_page(&self, title: &str, current: &str, body: maud::Markup) -> PortalResponse {
        crate::render::scripted_page(
            title,
            current,
            &self.viewer,
            body,
            &[crate::assets::url(crate::assets::PORTAL_JS)],
            sfop_core::html::CSP_SELF_SCRIPTS,
        )
    }

    /// Sends a request to the platform on this developer's behalf: with the
    /// `Host` their browser used and their address, so the platform's
    /// throttles count them, not the portal.
    async fn call_platform(
        &self,
        method: &str,
        path_and_query: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> std::result::Result<crate::UpstreamResponse, crate::UpstreamError> {
        self.portal
            .call(UpstreamRequest {
                method: method.to_owned(),
                path_and_query,
                headers,
                body,
                authority: self.req.authority.clone(),
                peer: self.req.peer,
            })
            .await
    }

    /// The hidden CSRF field of a form.
    fn csrf(&self) -> maud::Markup {
        maud::html! { input type="hidden" name="csrf" value=(self.viewer.csrf); }
    }
}

/// The path and query of a GET request, to come back to.
fn page_path(req: &PortalRequest) -> String {
    if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    }
}

/// The validated `next` of a sign-in or sign-up page's query; empty when
/// there is none or it is not a portal path.
fn query_next(req: &PortalRequest) -> String {
    let q = parse_form(req.query.as_bytes());
    crate::render::safe_next(form_get(&q, "next"))
        .unwrap_or_default()
        .to_owned()
}

/// Whether a browser sent `req` from another site than the portal at
/// `base` (`scheme://authority`): by Fetch Metadata (`Sec-Fetch-Site`,
/// which every current browser sends), else by `Origin` (an opaque `null`
/// included). A client that sends neither (curl, a script) is no browser
/// acting for someone else.
fn cross_site(req: &PortalRequest, base: &str) -> bool {
    match req.fetch_site.as_deref() {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => req
            .origin
            .as_deref()
            .is_some_and(|origin| !origin.eq_ignore_ascii_case(base)),
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
        next: if req.method == "GET" && !matches!(sub, "/signin" | "/signup") {
            page_path(req)
        } else {
            String::new()
        },
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
    // A browser's post from another site is refused before anything else.
    // The session cookie (SameSite=Strict) already keeps a signed-in
    // browser's posts to this site; this also covers the sign-in and
    // sign-up forms, which have no session yet (login CSRF: another site
    // signing the browser in to an account of its choosing).
    if req.method == "POST" && cross_site(req, &ctx.base_url()) {
        return Ok(error_page(
            403,
            "Form refused",
            "This form was sent from another site. Open the portal and try again.",
        ));
    }
    // Every post of a signed-in browser carries the session's CSRF token.
    if req.method == "POST"
        && let Some((_, s)) = &ctx.session
        && !sfop_auth::constant_time_eq(form_get(&form, "csrf").as_bytes(), s.csrf.as_bytes())
        && !matches!(sub, "/signin" | "/signup")
    {
        return Ok(error_page(
            403,
            "Form expired",
            "This form is no longer valid. Reload the page and try again.",
        ));
    }
    // A field given twice is refused before any handler reads one of its
    // values, by the rule the platform holds every form to: which of two
    // `name`s or `client_secret`s counts is no handler's choice. Only the
    // scope checkboxes repeat.
    if req.method == "POST"
        && let Some(name) = sfop_core::form::repeated_name_except(&req.body, FORM_LISTS)
    {
        return Ok(error_page(
            400,
            "Invalid form",
            &format!("{name}: given more than once. Reload the page and try again."),
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
        ("GET", ["keys"]) => Ok(keys_page(&ctx)),
        ("GET", ["changes"]) => Ok(changes_page(&ctx)),
        ("GET", ["changes.atom"]) => Ok(atom(&ctx)),
        ("GET", ["reports", name, version]) => Ok(report(&ctx, name, version)),
        ("GET", ["search"]) => Ok(search_page(&ctx)),
        ("GET", ["status"]) => Ok(status_page(&ctx)),
        ("GET", ["reference"]) => Ok(reference_page(&ctx)),
        ("GET", ["assets", ..]) => Ok(sub
            .strip_prefix("/assets/")
            .and_then(crate::assets::serve)
            .unwrap_or_else(|| error_page(404, "Not found", "There is no such file."))),
        ("GET", ["signup"]) => Ok(sign_up_page(None, "", &query_next(req))),
        ("POST", ["signup"]) => sign_up(&ctx, &form).await,
        ("GET", ["signin"]) => Ok(sign_in_page(None, "", &query_next(req))),
        ("POST", ["signin"]) => sign_in(&ctx, &form).await,
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
            // Back to the page that asked, once signed in.
            let next = match segments.as_slice() {
                ["try", name] => format!("/portal/apis/{}#try", encode(name)),
                _ if req.method == "GET" && segments.first() == Some(&"apps") => page_path(req),
                _ => "/portal/apps".to_owned(),
            };
            Ok(redirect(&format!("/portal/signin?next={}", encode(&next))))
        }
        ("GET", ["apps"]) => apps_page(&ctx, None).await,
        ("POST", ["apps"]) => register_app(&ctx, &form).await,
        ("GET", ["apps", id]) => app_page(&ctx, id, None).await,
        ("POST", ["apps", id, "authorize"]) => start_authorization(&mut ctx, id, &form).await,
        ("POST", ["apps", id, "oob-token"]) => oob_token(&mut ctx, id, &form).await,
        ("POST", ["apps", id, "faults"]) => add_fault(&ctx, id, &form).await,
        ("POST", ["apps", id, "institution"]) => request_institution(&ctx, id, &form).await,
        ("POST", ["apps", id, "secret"]) => rotate_secret(&ctx, id).await,
        ("POST", ["apps", id, "faults", "remove"]) => remove_fault(&ctx, id, &form).await,
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
